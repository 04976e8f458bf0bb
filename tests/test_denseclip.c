/* DenseCLIP against tools/ref/gen_denseclip_ref.py on the tiny CLIP fixture
 * (tests/fixtures/methods/denseclip_ref.{h,safetensors}): the parameters
 * (other than the copied image tower) start from the reference's formula;
 * then
 *   - the tensor names are the official state-dict names, in order;
 *   - evaluation-mode logits (every 29th value) and the score map;
 *   - the training loss (decode CE + 0.4 identity CE, batch norms on batch
 *     statistics) and the gradients of every learned tensor (8 samples and
 *     the norm each, image-tower weights by name), the running statistics
 *     after that step;
 *   - three AdamW steps (backbone.* at a tenth of the rate): losses, every
 *     tensor's samples after them, the logits under the stepped weights. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/denseclip_ref.h"
#include "method_fixture.h"
#include "methods/denseclip.h"

#define REF_PATH CT_SOURCE_DIR "/tests/fixtures/methods/denseclip_ref.safetensors"
#define CAP 256

static const char *const VIS[5] = {"visual.conv1.weight", "visual.class_embedding",
                                   "visual.proj",
                                   "visual.transformer.resblocks.0.attn.q_proj.weight",
                                   "visual.ln_post.weight"};

static bool norm_weight(const char *n) {
    static const char *const keys[] = {"fpn1.0.", "fpn2.0.", "backbone.fpn3.", "fpn4.0.",
                                       "fpn1.2.", ".bn.", "memory_proj.0.", "memory_proj.2.",
                                       "text_proj.0.", "out_proj.0.", ".norm1.", ".norm2.",
                                       ".norm3."};
    size_t l = strlen(n);
    if (l < 7 || strcmp(n + l - 7, ".weight")) return false;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        if (strstr(n, keys[k])) return true;
    return false;
}

static bool ends(const char *n, const char *suf) {
    size_t a = strlen(n), b = strlen(suf);
    return a >= b && !strcmp(n + a - b, suf);
}

/* the reference's init_value, in float32 */
static void init_params(ct_tensor **p, const char **names, int np) {
    for (int j = 0; j < np; j++) {
        if (!strcmp(names[j], "backbone.visual")) continue;
        double base = 0, amp = 0.2;
        if (ends(names[j], "running_var")) base = 1, amp = 0.3;
        else if (ends(names[j], "running_mean")) amp = 0.1;
        else if (!strcmp(names[j], "contexts")) amp = 1;
        else if (!strcmp(names[j], "gamma")) amp = 0.5;
        else if (norm_weight(names[j])) base = 1, amp = 0.1;
        for (int64_t i = 0; i < p[j]->numel; i++)
            p[j]->data[i] = (float)(base + amp * sin(0.37 * (double)i + 0.91 * j));
    }
}

static void *make(void) {
    static char *cn[CREF_K];
    for (int k = 0; k < CREF_K; k++) cn[k] = (char *)cref_classnames[k];
    const ct_method *m = ct_method_find("denseclip");
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K, t.classnames = cn, t.seed = 1;
    t.dataset_name = "test";
    ct_kv hp = {0};
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, DREF_SET));
    CHECK_OK(m->create(&t, &hp, &st));
    ct_kv_free(&hp);
    if (!st) return NULL;
    ct_tensor *p[CAP];
    const char *names[CAP];
    int np = m->params(st, p, CAP);
    CHECK(m->param_names(st, names, CAP) == np);
    init_params(p, names, np);
    return st;
}

static const ct_safetensors *g_ref;

/* got[idx] against the reference array key (float32) */
static void cmp_samples(const char *key, const float *got, int64_t n, int64_t stride,
                        double atol, double rtol) {
    const ct_st_tensor *t = ct_safetensors_find(g_ref, key);
    CHECK_MSG(t != NULL, "reference has no %s", key);
    if (!t) return;
    size_t m = t->nbytes / 4;
    float *want = malloc(m * sizeof *want);
    double *wd = malloc(m * sizeof *wd), *gd = malloc(m * sizeof *gd);
    CHECK_OK(ct_st_to_real(t, want, m));
    for (size_t j = 0; j < m; j++) {
        int64_t i = stride > 0 ? (int64_t)j * stride : ((int64_t)j * 131) % n;
        wd[j] = want[j];
        gd[j] = i < n ? got[i] : NAN;
    }
    CHECK_CLOSE_D(key, gd, wd, m, atol, rtol);
    free(want), free(wd), free(gd);
}

static void cmp_norm(const char *key, const float *g, int64_t n, double rtol) {
    const ct_st_tensor *t = ct_safetensors_find(g_ref, key);
    CHECK_MSG(t != NULL, "reference has no %s", key);
    if (!t) return;
    float want;
    CHECK_OK(ct_st_to_real(t, &want, 1));
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    CHECK_NEAR(key, sqrt(s), want, 1e-7, rtol);
}

static float g_px[DREF_B * 3 * 32 * 32];
static uint8_t g_mask[DREF_B * 32 * 32];

static ct_batch batch(void) {
    const int S = 32;
    for (int b = 0; b < DREF_B; b++) {
        for (int i = 0; i < 3 * S * S; i++)
            g_px[b * 3 * S * S + i] = (float)(1.5 * sin(0.1 * i + 0.7 * b));
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int v = (b + y + x) % 6;
                g_mask[(b * S + y) * S + x] = (uint8_t)(v == 5 ? 255 : v);
            }
    }
    return (ct_batch){.n = DREF_B, .pixels = g_px, .masks = g_mask, .seed = 7, .epoch = 0};
}

static void test_forward_and_grads(void) {
    const ct_method *m = ct_method_find("denseclip");
    void *st = make();
    if (!st) return;
    ct_tensor *p[CAP];
    const char *names[CAP];
    int np = m->params(st, p, CAP);
    m->param_names(st, names, CAP);
    CHECK_MSG(np == (int)(sizeof dref_names / sizeof *dref_names), "%d tensors, reference %d", np,
              (int)(sizeof dref_names / sizeof *dref_names));
    for (int i = 0; i < np && i < (int)(sizeof dref_names / sizeof *dref_names); i++)
        CHECK_MSG(!strcmp(names[i], dref_names[i]), "tensor %d: %s, reference %s", i, names[i],
                  dref_names[i]);
    ct_batch b = batch();
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    ct_tensor *lg = m->logits(st, g, &b);
    CHECK_MSG(lg && lg->ndim == 4 && lg->shape[1] == CREF_K && lg->shape[2] == 32, "logits: %s",
              ct_last_error());
    if (lg) cmp_samples("logits0", lg->data, lg->numel, DREF_LSTRIDE, 2e-4, 1e-3);
    ct_graph_reset(g);
    ct_tensor *sc = ct_denseclip_score_map(st, g, &b);
    CHECK(sc && sc->numel == DREF_B * CREF_K * 16);
    if (sc) cmp_samples("score0", sc->data, sc->numel, 1, 2e-5, 1e-4);
    ct_graph_reset(g);
    ct_graph_set_grad(g, true);
    for (int i = 0; i < np; i++) ct_tensor_zero_grad(p[i]);
    ct_tensor *loss = m->loss(st, g, &b);
    CHECK_MSG(loss != NULL, "loss: %s", ct_last_error());
    if (loss) {
        CHECK_NEAR("loss0", loss->data[0], dref_loss0, 1e-5, 1e-5);
        CHECK_OK(ct_backward(g, loss));
        char key[160];
        for (int i = 0; i < np; i++) {
            if (!strcmp(names[i], "backbone.visual")) continue;
            if (p[i]->requires_grad) {
                snprintf(key, sizeof key, "grad/%s", names[i]);
                cmp_samples(key, p[i]->grad, p[i]->numel, 0, 2e-5, 2e-3);
                snprintf(key, sizeof key, "gnorm/%s", names[i]);
                cmp_norm(key, p[i]->grad, p[i]->numel, 2e-3);
            } else {
                snprintf(key, sizeof key, "stats1/%s", names[i]);
                cmp_samples(key, p[i]->data, p[i]->numel, 0, 1e-5, 1e-4);
            }
        }
        for (int k = 0; k < 5; k++) {
            ct_tensor *w = ct_denseclip_weight(st, VIS[k]);
            CHECK_MSG(w && w->grad, "no image-tower weight %s", VIS[k]);
            if (!w || !w->grad) continue;
            snprintf(key, sizeof key, "vgrad/%s", VIS[k]);
            cmp_samples(key, w->grad, w->numel, 0, 2e-5, 2e-3);
            snprintf(key, sizeof key, "vgnorm/%s", VIS[k]);
            cmp_norm(key, w->grad, w->numel, 2e-3);
        }
    }
    ct_graph_free(g);
    m->destroy(st);
}

static void test_three_steps(void) {
    const ct_method *m = ct_method_find("denseclip");
    void *st = make();
    if (!st) return;
    ct_tensor *p[CAP], *tp[CAP];
    const char *names[CAP];
    float lrs[CAP];
    int np = m->params(st, p, CAP), nt = 0;
    m->param_names(st, names, CAP);
    for (int i = 0; i < np; i++)
        if (p[i]->requires_grad) {
            lrs[nt] = !strncmp(names[i], "backbone.", 9) ? (float)DREF_LR_BB : (float)DREF_LR;
            tp[nt++] = p[i];
        }
    ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, (float)DREF_LR);
    oc.weight_decay = (float)DREF_WD;
    ct_optim *opt = ct_optim_create(&oc, tp, nt);
    CHECK(opt != NULL);
    ct_batch b = batch();
    ct_graph *g = ct_graph_create(0);
    for (int s = 0; s < 3 && opt; s++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(opt);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss != NULL, "step %d: %s", s, ct_last_error());
        if (!loss) break;
        char nm[32];
        snprintf(nm, sizeof nm, "loss at step %d", s);
        CHECK_NEAR(nm, loss->data[0], dref_losses[s], 2e-5, 2e-5);
        CHECK_OK(ct_backward(g, loss));
        CHECK_OK(ct_optim_step_each(opt, lrs, false));
    }
    char key[160];
    for (int i = 0; i < np; i++) {
        if (!strcmp(names[i], "backbone.visual")) continue;
        snprintf(key, sizeof key, "step3/%s", names[i]);
        cmp_samples(key, p[i]->data, p[i]->numel, 0, 2e-5, 2e-4);
    }
    for (int k = 0; k < 5; k++) {
        ct_tensor *w = ct_denseclip_weight(st, VIS[k]);
        if (!w) continue;
        snprintf(key, sizeof key, "vstep3/%s", VIS[k]);
        cmp_samples(key, w->data, w->numel, 0, 2e-5, 2e-4);
    }
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_tensor *lg = m->logits(st, g, &b);
    if (lg) cmp_samples("logits3", lg->data, lg->numel, DREF_LSTRIDE, 2e-4, 1e-3);
    ct_graph_free(g);
    ct_optim_free(opt);
    m->destroy(st);
}

int main(void) {
    ct_set_num_threads(2);
    if (!load_fixture()) return ct_test_summary();
    g_ref = ct_safetensors_open(REF_PATH);
    CHECK_MSG(g_ref != NULL, "%s: %s", REF_PATH, ct_last_error());
    if (g_ref) {
        RUN(test_forward_and_grads);
        RUN(test_three_steps);
        ct_safetensors_close((ct_safetensors *)g_ref);
    }
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
