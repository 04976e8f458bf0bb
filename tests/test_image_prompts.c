/* The image-side prompt methods (VP, VPT-deep, IVLP, MaPLe, CLIP-LoRA,
 * PromptSRC, UPT, DPT) on the shipped
 * model: logits, loss, the gradient of every learnable tensor and three SGD
 * steps against tools/ref/gen_image_prompts_ref.py (float64 PyTorch, the
 * official codes' math); the pixel path of the trainer; and on Fashion-MNIST
 * at 16 shots each beats zero-shot on held-out test images, and a reloaded
 * run predicts the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cliptune.h"
#include "harness.h"
#include "model/bundle.h"
#include "api/run.h"
#include "methods/protect.h"

#define MODEL CT_SOURCE_DIR "/models/cliptune-small"
#define REF CT_SOURCE_DIR "/tests/fixtures/methods/image_prompts_ref.safetensors"
#define REF_PM CT_SOURCE_DIR "/tests/fixtures/methods/protect_maple_ref.safetensors"
#define NB 3

static char *NAMES[3] = {"shirt", "ankle_boot", "bag"};
static const int LABELS[NB] = {0, 2, 1};

static ct_bundle g_b;
static ct_safetensors *g_ref, *g_ref_pm;
/* the task's taxonomy and the method's fixed tree cut (ProTeCt), when set */
static const ct_taxonomy *g_tax;
static const uint8_t *g_cut;

static bool setup(void) {
    if (g_b.clip) return true;
    CHECK_OK(ct_bundle_load(MODEL, NULL, NULL, true, &g_b));
    g_ref = ct_safetensors_open(REF);
    CHECK_MSG(g_ref, "%s", ct_last_error());
    g_ref_pm = ct_safetensors_open(REF_PM);
    CHECK_MSG(g_ref_pm, "%s", ct_last_error());
    return g_b.clip && g_ref && g_ref_pm;
}

static const ct_st_tensor *find_ref(const char *name) {
    const ct_st_tensor *t = ct_safetensors_find(g_ref, name);
    return t ? t : ct_safetensors_find(g_ref_pm, name);
}

static float *ref(const char *name, size_t n) {
    const ct_st_tensor *t = find_ref(name);
    CHECK_MSG(t, "reference %s missing", name);
    if (!t) return NULL;
    float *v = malloc(n * sizeof *v);
    CHECK_OK(ct_st_to_real(t, v, n));
    return v;
}

/* got (n values) against the reference; a large reference holds every
 * stride-th value (refname.stride beside it). */
static void compare(const char *what, const float *got, size_t n, const char *refname) {
    char sname[160];
    snprintf(sname, sizeof sname, "%s.stride", refname);
    size_t stride = 1;
    const ct_st_tensor *st = find_ref(sname);
    if (st) {
        float v;
        CHECK_OK(ct_st_to_real(st, &v, 1));
        stride = (size_t)v;
    }
    size_t m = (n + stride - 1) / stride;
    float *want = ref(refname, m), *sub = malloc(m * sizeof *sub);
    if (!want || !sub) {
        free(want), free(sub);
        return;
    }
    for (size_t i = 0; i < m; i++) sub[i] = got[i * stride];
    CHECK_CLOSE_F(what, sub, want, m, 1e-4, 1e-4);
    free(want), free(sub);
}

/* 1.5 sin(0.1 i + 0.7 b), rounded to float */
static float *pixels(int S) {
    size_t n = (size_t)3 * S * S;
    float *px = malloc(NB * n * sizeof *px);
    for (int b = 0; b < NB; b++)
        for (size_t i = 0; i < n; i++) px[b * n + i] = (float)(1.5 * sin(0.1 * (double)i + 0.7 * b));
    return px;
}

static void set_formula(ct_tensor *t, int k, double amp) {
    for (int64_t j = 0; j < t->numel; j++) t->data[j] = (float)(amp * sin(0.37 * (double)j + 1.3 * k));
}

static void train_collect(const char *method, const char *set, const ct_dataset *train,
                          const ct_dataset *val, const char *dir, int stop_after, bool resume,
                          uint64_t seed, float *out, size_t *n_out);

/* The shipped model and Fashion-MNIST's splits; false (skipped or failed)
 * when the dataset is not installed. */
static bool open_fashion_mnist(ct_splits *sp) {
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &sb) != 0) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return false;
    }
    if (!setup()) return false;
    CHECK_OK(ct_data_open("fashion-mnist", sp));
    return sp->train && sp->test;
}

static ct_task task_of(void) {
    ct_task t = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre, .dataset_name = "parity",
                 .n_classes = 3, .classnames = NAMES, .seed = 1, .taxonomy = g_tax};
    return t;
}

/* One method against its reference: params set by formula, then logits,
 * loss, gradients and three SGD steps on the fixed batch. */
static void parity_opt(const char *method, const char *set, const char *tag, double amp,
                       ct_optim_kind kind, float lr, float wd) {
    if (!setup()) return;
    const ct_method *m = ct_method_find(method);
    CHECK_MSG(m && m->pixels, "%s is not a registered pixel method", method);
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, set));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    if (st && g_cut) ct_protect_fix_cut(st, g_cut);
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc)); /* the trainer's keys */
    CHECK_OK(ct_kv_check_used(&hp, method));
    if (!st) return;
    ct_tensor *all[64], *p[64];
    int na = m->params(st, all, 64), np = 0;
    for (int k = 0; k < na; k++) /* the learnables (frozen sums, e.g. PromptSRC's, aside) */
        if (all[k]->requires_grad) p[np++] = all[k];
    char name[96], what[96];
    if (!strcmp(tag, "ivlp")) /* the context starts as the embeddings of "a photo" */
        compare("ivlp initial context", p[0]->data, (size_t)p[0]->numel, "ctx_init");
    for (int k = 0; k < np; k++) set_formula(p[k], k, amp);
    int S = ct_clip_get_config(g_b.clip)->image_size;
    float *px = pixels(S);
    ct_batch b = {.n = NB, .labels = LABELS, .pixels = px};
    ct_graph *g = ct_graph_create(0);
    ct_tensor *loss = m->loss(st, g, &b);
    CHECK_MSG(loss, "%s loss: %s", method, ct_last_error());
    if (loss) {
        CHECK_OK(ct_backward(g, loss));
        snprintf(name, sizeof name, "%s.loss", tag);
        compare(name, loss->data, 1, name);
        ct_graph *g2 = ct_graph_create(0);
        ct_graph_set_grad(g2, false);
        ct_tensor *lg = m->logits(st, g2, &b);
        snprintf(name, sizeof name, "%s.logits", tag);
        if (lg) compare(name, lg->data, (size_t)lg->numel, name);
        ct_graph_free(g2);
        for (int k = 0; k < np; k++) {
            snprintf(name, sizeof name, "%s.grad.%d", tag, k);
            snprintf(what, sizeof what, "%s d/d %s (%d)", tag, p[k]->name ? p[k]->name : "?", k);
            CHECK_MSG(p[k]->grad, "%s has no gradient", what);
            if (p[k]->grad) compare(what, p[k]->grad, (size_t)p[k]->numel, name);
        }
    }
    ct_optim_config oc = ct_optim_default(kind, lr);
    if (kind == CT_OPTIM_SGD) oc.momentum = 0.9f;
    oc.weight_decay = wd;
    ct_optim *o = ct_optim_create(&oc, p, np);
    for (int step = 0; o && step < 3; step++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(o);
        ct_tensor *l = m->loss(st, g, &b);
        if (!l || ct_backward(g, l) != CT_OK) break;
        CHECK_OK(ct_optim_step(o, lr));
    }
    for (int k = 0; k < np; k++) {
        snprintf(name, sizeof name, "%s.after.%d", tag, k);
        snprintf(what, sizeof what, "%s after 3 steps: %s (%d)", tag, p[k]->name ? p[k]->name : "?", k);
        compare(what, p[k]->data, (size_t)p[k]->numel, name);
    }
    ct_optim_free(o);
    ct_graph_free(g);
    free(px);
    m->destroy(st);
    ct_kv_free(&hp);
}

static void parity(const char *method, const char *set, const char *tag, double amp, float lr,
                   float wd) {
    parity_opt(method, set, tag, amp, CT_OPTIM_SGD, lr, wd);
}

static void test_vp_parity(void) { parity("vp", "", "vp", 0.5, 0.5f, 0.0f); }
static void test_vpt_deep_parity(void) {
    parity("vpt-deep", "vision_depth=3 n_ctx_vision=2", "vpt", 0.05, 0.01f, 5e-4f);
}
static void test_ivlp_parity(void) {
    parity("ivlp", "n_ctx=2 n_ctx_vision=2 text_depth=3 vision_depth=3", "ivlp", 0.05, 0.01f,
           5e-4f);
}
static void test_maple_parity(void) { parity("maple", "depth=2", "maple", 0.05, 0.01f, 5e-4f); }

/* ProTeCt on MaPLe (tools/ref/gen_protect_maple_ref.py): the tree-cut and
 * node losses through MaPLe's prompts at depth 2, on the reference's cut a;
 * then cut b (the leaves) gives the reference's second loss. */
static void test_protect_maple_parity(void) {
    if (!setup()) return;
    static const char tax_text[] = "root\tclothes\nclothes\tshirt\nroot\tgear\n"
                                   "gear\tankle_boot\ngear\tbag\n";
    ct_taxonomy *tax = NULL;
    CHECK_OK(ct_taxonomy_parse(tax_text, strlen(tax_text), "pm", (const char *const *)NAMES, 3,
                               &tax));
    uint8_t cut[2][5];
    float *a = ref("pm.cut_a", 5), *b = ref("pm.cut_b", 5);
    if (!tax || !a || !b) {
        ct_taxonomy_free(tax), free(a), free(b);
        return;
    }
    const char *order[5] = {"clothes", "shirt", "gear", "ankle_boot", "bag"};
    for (int i = 0; i < 5; i++) {
        CHECK(tax->n_nodes == 5 && !strcmp(tax->names[i], order[i]));
        cut[0][i] = a[i] != 0, cut[1][i] = b[i] != 0;
    }
    free(a), free(b);
    g_tax = tax, g_cut = cut[0];
    parity("protect-maple", "depth=2", "pm", 0.05, 0.01f, 5e-4f);
    /* cut b's loss, from the same formula values */
    const ct_method *m = ct_method_find("protect-maple");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, "depth=2"));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    if (st) {
        ct_tensor *p[16];
        int np = m->params(st, p, 16);
        for (int k = 0; k < np; k++) set_formula(p[k], k, 0.05);
        ct_protect_fix_cut(st, cut[1]);
        int S = ct_clip_get_config(g_b.clip)->image_size;
        float *px = pixels(S);
        ct_batch bt = {.n = NB, .labels = LABELS, .pixels = px};
        ct_graph *g = ct_graph_create(0);
        ct_tensor *loss = m->loss(st, g, &bt);
        CHECK_MSG(loss, "%s", ct_last_error());
        if (loss) compare("protect-maple loss on cut b", loss->data, 1, "pm.loss_b");
        ct_graph_free(g);
        free(px);
        m->destroy(st);
    }
    ct_kv_free(&hp);
    g_tax = NULL, g_cut = NULL;
    ct_taxonomy_free(tax);
}

static void test_promptsrc_parity(void) {
    parity("promptsrc", "n_ctx=2 n_ctx_vision=2 text_depth=3 vision_depth=3", "src", 0.05, 0.01f,
           5e-4f);
}

/* Gaussian prompt aggregation: the prompts after the last epoch are the
 * weighted sum of each epoch's (training itself is unchanged by it): with
 * weights (0, 1) the last epoch's, with (0.5, 0.5) their mean. */
static void test_promptsrc_gpa(void) {
    ct_splits sp = {0};
    if (!open_fashion_mnist(&sp)) return;
    ct_dataset *train = ct_dataset_fewshot(sp.train, 2, 3);
    size_t cap = 200000, n1 = 0, n2 = 0, n3 = 0;
    float *e1 = malloc(cap * sizeof *e1), *e2 = malloc(cap * sizeof *e2);
    float *mix = malloc(cap * sizeof *mix);
    const char *base = "epochs=2 text_depth=2 vision_depth=2 batch_size=8 warmup_epochs=0 lr=0.01 ";
    char set[3][256];
    snprintf(set[0], sizeof set[0], "%sgpa_mean=1 gpa_std=1", base);      /* after epoch 1 */
    snprintf(set[1], sizeof set[1], "%sgpa_mean=2 gpa_std=0.01", base);   /* weights (0, 1) */
    snprintf(set[2], sizeof set[2], "%sgpa_mean=1.5 gpa_std=1", base);    /* (1/2, 1/2) */
    train_collect("promptsrc", set[0], train, NULL, NULL, 1, false, 3, e1, &n1);
    train_collect("promptsrc", set[1], train, NULL, NULL, 0, false, 3, e2, &n2);
    train_collect("promptsrc", set[2], train, NULL, NULL, 0, false, 3, mix, &n3);
    CHECK(n1 == n2 && n2 == n3 && n1 > 0);
    double worst = 0, moved = 0;
    for (size_t i = 0; n1 == n3 && i < n1; i++) {
        double want = 0.5 * ((double)e1[i] + (double)e2[i]);
        worst = fmax(worst, fabs(mix[i] - want));
        moved = fmax(moved, fabs(e1[i] - e2[i]));
    }
    CHECK_MSG(moved > 1e-4, "the prompts did not change in the second epoch");
    CHECK_MSG(worst < 1e-6, "aggregated prompts differ from the mean by %g", worst);
    free(e1), free(e2), free(mix);
    ct_dataset_free(train);
    ct_splits_free(&sp);
}

/* DPT (tools/ref/gen_dpt_ref.py): VPT-deep in blocks 0-1, CAVPT before
 * blocks 2-3 over the top 2 of 3 classes; the loss of the guidance phase
 * (epoch 0 < guide_epochs 1) and of the later one, their gradients, and
 * three SGD steps with the CoOp context in its own parameter group. */
static void test_dpt_parity(void) {
    if (!setup()) return;
    ct_safetensors *dref = ct_safetensors_open(CT_SOURCE_DIR "/tests/fixtures/methods/dpt_ref.safetensors");
    CHECK_MSG(dref, "%s", ct_last_error());
    if (!dref) return;
    ct_safetensors *main_ref = g_ref;
    g_ref = dref; /* compare() reads this fixture */
    const ct_method *m = ct_method_find("dpt");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, "n_ctx=2 n_ctx_vision=2 cavpt_layers=2 top_k=2 cavpt_tokens=3 "
                              "attn_dim=8 guide_epochs=1"));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    if (st && g_cut) ct_protect_fix_cut(st, g_cut);
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK_OK(ct_kv_check_used(&hp, "dpt"));
    CHECK(tc.n_groups == 1 && !strcmp(tc.groups[0].prefix, "coop") &&
          tc.groups[0].sched.base_lr == 0.002f && tc.groups[0].sched.warmup_len == 1 &&
          tc.sched.base_lr == 0.01f && tc.sched.warmup_len == 10);
    ct_tensor *p[64];
    int np = st ? m->params(st, p, 64) : 0;
    CHECK_MSG(np == 23, "%d learnable tensors", np);
    for (int k = 0; k < np; k++) set_formula(p[k], k, 0.05);
    float *px = pixels(ct_clip_get_config(g_b.clip)->image_size);
    ct_graph *g = ct_graph_create(0);
    char name[96], what[128];
    for (int phase = 0; np == 23 && phase < 2; phase++) {
        const char *ph = phase ? "late" : "guide";
        for (int k = 0; k < np; k++) ct_tensor_zero_grad(p[k]);
        ct_graph_reset(g);
        ct_batch b = {.n = NB, .labels = LABELS, .pixels = px, .epoch = phase};
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss, "dpt loss: %s", ct_last_error());
        if (!loss) break;
        CHECK_OK(ct_backward(g, loss));
        snprintf(name, sizeof name, "dpt.%s.loss", ph);
        compare(name, loss->data, 1, name);
        for (int k = 0; k < np; k++) {
            snprintf(name, sizeof name, "dpt.%s.grad.%d", ph, k);
            snprintf(what, sizeof what, "dpt %s d/d %s (%d)", ph, p[k]->name, k);
            CHECK_MSG(p[k]->grad, "%s has no gradient", what);
            if (p[k]->grad) compare(what, p[k]->grad, (size_t)p[k]->numel, name);
        }
    }
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_batch b = {.n = NB, .pixels = px, .epoch = -1};
    ct_tensor *lg = np == 23 ? m->logits(st, g, &b) : NULL;
    if (lg) compare("dpt.logits", lg->data, (size_t)lg->numel, "dpt.logits");
    ct_graph_set_grad(g, true);
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.01f);
    oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
    ct_optim *o = np == 23 ? ct_optim_create(&oc, p, np) : NULL;
    float lrs[64];
    for (int k = 0; k < np; k++) lrs[k] = !strcmp(p[k]->name, "coop.ctx") ? 0.002f : 0.01f;
    for (int step = 0; o && step < 3; step++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(o);
        ct_batch bt = {.n = NB, .labels = LABELS, .pixels = px, .epoch = 0};
        ct_tensor *l = m->loss(st, g, &bt);
        if (!l || ct_backward(g, l) != CT_OK) break;
        CHECK_OK(ct_optim_step_each(o, lrs, false));
    }
    for (int k = 0; o && k < np; k++) {
        snprintf(name, sizeof name, "dpt.after.%d", k);
        snprintf(what, sizeof what, "dpt after 3 steps: %s (%d)", p[k]->name, k);
        compare(what, p[k]->data, (size_t)p[k]->numel, name);
    }
    ct_optim_free(o);
    ct_graph_free(g);
    free(px);
    if (st) m->destroy(st);
    ct_kv_free(&hp);
    g_ref = main_ref;
    ct_safetensors_close(dref);
}

/* ct_batch.frozen: DPT given the frozen tower's embeddings of its pixels
 * scores as when it computes them, and reads them (zeros pick other
 * classes and change the logits). */
static void test_dpt_frozen_given(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("dpt");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, "n_ctx=2 n_ctx_vision=2 cavpt_layers=2 top_k=2 cavpt_tokens=3"));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    int S = ct_clip_get_config(g_b.clip)->image_size, E = ct_clip_get_config(g_b.clip)->embed_dim;
    float *px = pixels(S), *zeros = calloc((size_t)NB * E, sizeof *zeros);
    float lg[3][NB * 3];
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    int64_t psh[4] = {NB, 3, S, S};
    ct_tensor *f = ct_clip_encode_image(g, g_b.clip, ct_graph_wrap(g, px, 4, psh), NULL, false,
                                        NULL);
    float *fz = malloc((size_t)NB * E * sizeof *fz);
    if (f) memcpy(fz, f->data, (size_t)NB * E * sizeof *fz);
    const float *given[3] = {NULL, fz, zeros};
    for (int k = 0; st && f && k < 3; k++) {
        ct_graph_reset(g);
        ct_batch b = {.n = NB, .pixels = px, .epoch = -1, .frozen = given[k]};
        ct_tensor *t = m->logits(st, g, &b);
        CHECK(t != NULL);
        if (t) memcpy(lg[k], t->data, sizeof lg[k]);
    }
    CHECK_CLOSE_F("dpt logits, frozen embeddings given vs computed", lg[1], lg[0], NB * 3, 1e-5,
                  1e-5);
    double d = 0;
    for (int i = 0; i < NB * 3; i++) d = fmax(d, fabs(lg[2][i] - lg[0][i]));
    CHECK_MSG(d > 1e-3, "DPT ignores ct_batch.frozen (max change %g)", d);
    ct_graph_free(g);
    free(px), free(zeros), free(fz);
    if (st) m->destroy(st);
    ct_kv_free(&hp);
}

static void test_upt_parity(void) {
    parity("upt", "n_ctx=2", "upt", 0.05, 0.01f, 5e-4f);
}

static void test_clip_lora_parity(void) {
    /* the fixture uses main.py's constant 100 */
    parity_opt("clip-lora", "dropout=0 logit_scale=100", "lora", 0.05, CT_OPTIM_ADAMW, 1e-3f,
               1e-2f);
}

/* CLIP-LoRA's merge: a second copy of the model with W += s B A gives, as a
 * plain CLIP (text of the template, 100 cos with logit_scale=100), the
 * method's logits. */
static void test_clip_lora_merge(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("clip-lora");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, "params=qkvo logit_scale=100"));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    ct_bundle copy = {0};
    CHECK_OK(ct_bundle_load(MODEL, NULL, NULL, true, &copy));
    if (!st || !copy.clip) return;
    ct_tensor *p[256];
    int np = m->params(st, p, 256);
    for (int k = 0; k < np; k++) set_formula(p[k], k, 0.05);
    int S = ct_clip_get_config(g_b.clip)->image_size;
    float *px = pixels(S);
    ct_batch b = {.n = NB, .pixels = px, .epoch = -1};
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    ct_tensor *want = m->logits(st, g, &b);
    CHECK_OK(m->merge(st, copy.clip));
    int64_t psh[4] = {NB, 3, S, S};
    ct_tensor *img = ct_clip_encode_image(g, copy.clip, ct_graph_wrap(g, px, 4, psh), NULL,
                                          false, NULL);
    int T = ct_clip_get_config(g_b.clip)->context_length;
    int64_t *ids = malloc((size_t)3 * T * sizeof *ids);
    const char *prompts[3] = {"a photo of a shirt.", "a photo of a ankle boot.",
                              "a photo of a bag."};
    for (int k = 0; k < 3; k++)
        CHECK_OK(ct_tokenizer_tokenize(copy.tok, prompts[k], T, false, ids + k * T));
    ct_tensor *got = NULL, *plain = NULL;
    for (int merged = 0; merged < 2; merged++) { /* the frozen model, then the merged one */
        const ct_clip *cm = merged ? copy.clip : g_b.clip;
        ct_tensor *im = merged ? img : ct_clip_encode_image(g, cm, ct_graph_wrap(g, px, 4, psh),
                                                            NULL, false, NULL);
        ct_tensor *txt = ct_l2_normalize(g, ct_clip_encode_text(g, cm, ids, 3, T, NULL), 1e-12f);
        ct_tensor *lg = ct_scale(g, ct_matmul(g, ct_l2_normalize(g, im, 1e-12f), txt, false, true),
                                 100.0f);
        *(merged ? &got : &plain) = lg;
    }
    CHECK(want && got && plain);
    if (want && got) CHECK_CLOSE_F("merged model vs LoRA deltas", got->data, want->data,
                                   NB * 3, 1e-4, 1e-4);
    /* the deltas moved the logits: the merge is not a no-op */
    double moved = 0;
    for (int i = 0; want && plain && i < NB * 3; i++)
        moved = fmax(moved, fabs(plain->data[i] - want->data[i]));
    CHECK_MSG(moved > 1e-2, "the deltas moved the logits by %g only", moved);
    free(ids);
    ct_graph_free(g);
    free(px);
    m->destroy(st);
    ct_bundle_free(&copy);
    ct_kv_free(&hp);
}

/* Inverted dropout keeps about 1 - p of the values, scaled by 1 / (1 - p),
 * the same for the same seed, another mask for another seed. */
static void test_dropout(void) {
    ct_graph *g = ct_graph_create(0);
    int64_t n = 100000;
    ct_tensor *x = ct_graph_tensor(g, 1, &n);
    for (int64_t i = 0; i < n; i++) x->data[i] = 1.0f;
    ct_tensor *a = ct_dropout(g, x, 0.25f, 7), *b = ct_dropout(g, x, 0.25f, 7);
    ct_tensor *c = ct_dropout(g, x, 0.25f, 8);
    CHECK(a && b && c && ct_dropout(g, x, 0.0f, 7) == x);
    CHECK(ct_dropout(g, x, 1.0f, 7) == NULL);
    int64_t kept = 0, same = 0;
    for (int64_t i = 0; a && b && c && i < n; i++) {
        CHECK(a->data[i] == 0.0f || fabsf(a->data[i] - 4.0f / 3.0f) < 1e-6f);
        kept += a->data[i] != 0;
        CHECK(a->data[i] == b->data[i]);
        same += a->data[i] == c->data[i];
    }
    CHECK_MSG(fabs((double)kept / (double)n - 0.75) < 0.01, "kept %.4f", (double)kept / (double)n);
    CHECK_MSG(same < n * 0.7, "another seed gives another mask (%lld equal)", (long long)same);
    ct_graph_free(g);
}

/* The shared-prefix encoder with deep text prompts equals the plain one. */
static void test_ivlp_shared_prefix_exact(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("ivlp");
    float lg[2][NB * 3];
    for (int shared = 0; shared < 2; shared++) {
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, m->defaults));
        CHECK_OK(ct_kv_set(&hp, "shared_prefix", shared ? "1" : "0"));
        ct_task task = task_of();
        void *st = NULL;
        CHECK_OK(m->create(&task, &hp, &st));
        if (!st) return;
        ct_tensor *p[16];
        int np = m->params(st, p, 16);
        for (int k = 0; k < np; k++) set_formula(p[k], k, 0.05);
        float *px = pixels(ct_clip_get_config(g_b.clip)->image_size);
        ct_batch b = {.n = NB, .labels = LABELS, .pixels = px};
        ct_graph *g = ct_graph_create(0);
        ct_graph_set_grad(g, false);
        ct_tensor *t = m->logits(st, g, &b);
        CHECK(t != NULL);
        if (t) memcpy(lg[shared], t->data, sizeof lg[shared]);
        ct_graph_free(g);
        free(px);
        m->destroy(st);
        ct_kv_free(&hp);
    }
    CHECK_CLOSE_F("ivlp logits, shared prefix vs plain", lg[1], lg[0], NB * 3, 1e-4, 1e-4);
}

/* Every registered pixel method, with its defaults on the shipped model:
 * the defaults parse and are all read, an unknown key is refused by name,
 * a training step gives a finite loss whose gradients land on its learnable
 * tensors and on none of the model's weights. */
static void test_every_pixel_method(void) {
    if (!setup()) return;
    int S = ct_clip_get_config(g_b.clip)->image_size, seen = 0;
    float *px = pixels(S);
    for (int i = 0; i < ct_method_count(); i++) {
        const ct_method *m = ct_method_at(i);
        if (!m->pixels) continue;
        seen++;
        for (int bogus = 0; bogus < 2; bogus++) {
            ct_kv hp = {0};
            CHECK_OK(ct_kv_parse(&hp, m->defaults));
            if (bogus) CHECK_OK(ct_kv_set(&hp, "bogus_key", "1"));
            ct_task task = task_of();
            void *st = NULL;
            ct_train_cfg tc;
            CHECK_OK(m->create(&task, &hp, &st));
            CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
            ct_status u = ct_kv_check_used(&hp, m->name);
            if (bogus)
                CHECK_MSG(u != CT_OK && strstr(ct_last_error(), "bogus_key"), "%s: %s", m->name,
                          ct_last_error());
            else
                CHECK_MSG(u == CT_OK, "%s: %s", m->name, ct_last_error());
            if (st && !bogus) {
                ct_tensor *p[256];
                int np = m->params(st, p, 256), nt = 0;
                for (int k = 0; k < np; k++) {
                    nt += p[k]->requires_grad;
                    ct_tensor_zero_grad(p[k]);
                }
                CHECK_MSG(nt > 0, "%s has no learnable tensor", m->name);
                ct_batch b = {.n = NB, .labels = LABELS, .pixels = px, .seed = 1};
                /* methods that label pixels train on label maps: stripes of
                 * the batch's classes, a band ignored */
                uint8_t *mk = m->seg_pixels ? malloc((size_t)NB * S * S) : NULL;
                for (int64_t q = 0; mk && q < (int64_t)NB * S * S; q++)
                    mk[q] = (uint8_t)((q / S) % S < 2 ? 255 : LABELS[q / ((int64_t)S * S)]);
                b.masks = mk;
                ct_graph *g = ct_graph_create(0);
                ct_tensor *loss = m->loss(st, g, &b);
                CHECK_MSG(loss && isfinite(loss->data[0]), "%s: loss %s", m->name,
                          ct_last_error());
                if (loss) CHECK_OK(ct_backward(g, loss));
                double norm = 0;
                for (int k = 0; k < np; k++)
                    for (int64_t j = 0; p[k]->requires_grad && p[k]->grad && j < p[k]->numel; j++)
                        norm += (double)p[k]->grad[j] * p[k]->grad[j];
                CHECK_MSG(norm > 0 && isfinite(norm), "%s: gradient norm %g", m->name, norm);
                for (int k = 0; k < ct_clip_num_tensors(g_b.clip); k++) {
                    const char *name;
                    ct_tensor *w = ct_clip_tensor_at(g_b.clip, k, &name);
                    CHECK_MSG(!w->grad && !w->requires_grad, "%s: model weight %s got a "
                              "gradient", m->name, name);
                }
                ct_graph_free(g);
                free(mk);
            }
            if (st) m->destroy(st);
            ct_kv_free(&hp);
        }
    }
    CHECK_MSG(seen >= 8, "%d pixel methods registered", seen);
    free(px);
}

/* A pixel method scores cached features: a clear error, not a crash. */
static void test_needs_pixels(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("maple");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_task task = task_of();
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    float x[128] = {0};
    int y = 0;
    ct_batch b = {.n = 1, .x = x, .labels = &y};
    ct_graph *g = ct_graph_create(0);
    CHECK(m->logits(st, g, &b) == NULL);
    CHECK_MSG(strstr(ct_last_error(), "no pixels"), "message: %s", ct_last_error());
    ct_graph_free(g);
    m->destroy(st);
    ct_kv_free(&hp);
}

/* Fashion-MNIST, 16 shots, seed 1, the first 500 test images: each method
 * (short schedules) beats zero-shot; a reloaded run predicts the same.
 * Methods first..last of the list (zero-shot, 0, always). */
static void learns(int first, int last);
/* in two halves, one per ctest entry */
static void test_learns_a(void) { learns(1, 4); }
static void test_learns_b(void) { learns(5, 8); }

static void learns(int first, int last) {
    ct_splits sp = {0};
    if (!open_fashion_mnist(&sp)) return;
    const char *methods[] = {"zeroshot", "vp", "vpt-deep", "ivlp", "maple", "clip-lora",
                             "promptsrc", "upt", "dpt"};
    const char *sets[] = {"", "epochs=10 batch_size=32 warmup_steps=5",
                          "epochs=10 lr=0.02", "epochs=5", "epochs=5",
                          "iters_per_shot=5 lr=1e-3", "epochs=5 gpa_mean=4 gpa_std=1",
                          "epochs=6", "epochs=10 guide_epochs=5 warmup_epochs=2"};
    enum { NM = sizeof methods / sizeof *methods };
    double top1[NM];
    for (int r = 0; r < NM; r++) {
        if (r > 0 && (r < first || r > last)) continue;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/imgprompt_%s", ct_test_tmpdir(), methods[r]);
        ct_run_cfg rc = {0};
        rc.model = ct_model_borrow(&g_b, MODEL), rc.data = &sp, rc.data_spec = "fashion-mnist";
        rc.method = ct_method_find(methods[r]), rc.set = sets[r], rc.shots = 16, rc.seed = 1;
        rc.run_dir = dir, rc.max_test = 500;
        ct_run_result res = {0};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(ct_run(&rc, &res));
        ct_model_free(rc.model);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        top1[r] = res.top1;
        printf("  %-9s top-1 %.2f%%  (%.1f s)\n", methods[r], 100 * res.top1,
               (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        if (r == 0) continue;
        CHECK_MSG(res.top1 > top1[0] + 0.02, "%s: top-1 %.2f%% does not beat zero-shot %.2f%%",
                  methods[r], 100 * res.top1, 100 * top1[0]);
        /* reload the learned tensors into a fresh state: the same top-1 */
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, rc.method->defaults));
        CHECK_OK(ct_kv_parse(&hp, sets[r]));
        ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre,
                        .dataset_name = sp.train->name, .n_classes = sp.train->n_classes,
                        .classnames = sp.train->classnames, .seed = 1};
        void *st = NULL;
        CHECK_OK(rc.method->create(&task, &hp, &st));
        CHECK_OK(ct_run_load_learned(rc.method, st, dir));
        ct_dataset *test = ct_dataset_head(sp.test, 500);
        int K = sp.train->n_classes;
        float *sc = malloc((size_t)test->n_items * K * sizeof *sc);
        CHECK_OK(ct_predict_images(rc.method, st, &task, test, sc));
        int64_t ok = 0;
        for (int64_t i = 0; i < test->n_items; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (sc[i * K + k] > sc[i * K + best]) best = k;
            ok += best == test->items[i].label;
        }
        CHECK_NEAR("reloaded top-1", (double)ok / (double)test->n_items, res.top1, 0, 0);
        free(sc);
        ct_dataset_free(test);
        rc.method->destroy(st);
        ct_kv_free(&hp);
    }
    ct_splits_free(&sp);
}

/* Train `method` (its defaults + set) with ct_train on train (val may be
 * NULL) into dir (NULL: no checkpoints), then copy the learnables (the
 * tensors requiring grad, in params() order) into out. */
static void train_collect(const char *method, const char *set, const ct_dataset *train,
                          const ct_dataset *val, const char *dir, int stop_after, bool resume,
                          uint64_t seed, float *out, size_t *n_out) {
    const ct_method *m = ct_method_find(method);
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, set));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    tc.seed = seed, tc.run_dir = dir, tc.resume = resume, tc.stop_after = stop_after;
    ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre,
                    .dataset_name = train->name, .n_classes = train->n_classes,
                    .classnames = train->classnames, .train = train, .val = val, .seed = seed};
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    if (!st) return;
    CHECK_OK(ct_train(m, st, &task, &tc, &hp));
    ct_tensor *p[64];
    int np = m->params(st, p, 64);
    size_t off = 0;
    for (int k = 0; k < np; k++)
        if (p[k]->requires_grad) {
            memcpy(out + off, p[k]->data, (size_t)p[k]->numel * sizeof(float));
            off += (size_t)p[k]->numel;
        }
    *n_out = off;
    m->destroy(st);
    ct_kv_free(&hp);
}

/* Frozen work done once: DPT trained without augmentation gets the frozen
 * tower's embeddings from the feature cache (ct_batch.frozen, the rows of
 * each batch's images) and ends where it ends when it computes them every
 * step. */
static void test_frozen_features_once(void) {
    ct_splits sp = {0};
    if (!open_fashion_mnist(&sp)) return;
    ct_dataset *train = ct_dataset_fewshot(sp.train, 2, 5);
    const ct_method *m = ct_method_find("dpt");
    ct_method plain = *m;
    plain.frozen_features = false;
    float *out[2];
    size_t n[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, m->defaults));
        CHECK_OK(ct_kv_parse(&hp, "epochs=2 batch_size=8 warmup_epochs=0 coop.warmup_epochs=0 "
                                  "train_aug=none guide_epochs=1 n_ctx=4"));
        ct_train_cfg tc;
        CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
        tc.seed = 5;
        char cache[4200];
        snprintf(cache, sizeof cache, "%s/frozen_cache%d", ct_test_tmpdir(), k);
        mkdir(cache, 0777);
        ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre,
                        .dataset_name = train->name, .n_classes = train->n_classes,
                        .classnames = train->classnames, .train = train, .seed = 5,
                        .cache_dir = cache};
        const ct_method *use = k ? &plain : m;
        void *st = NULL;
        CHECK_OK(use->create(&task, &hp, &st));
        CHECK_OK(ct_train(use, st, &task, &tc, &hp));
        ct_tensor *p[64];
        int np = st ? use->params(st, p, 64) : 0;
        out[k] = malloc(400000 * sizeof(float));
        for (int i = 0; i < np; i++) {
            memcpy(out[k] + n[k], p[i]->data, (size_t)p[i]->numel * sizeof(float));
            n[k] += (size_t)p[i]->numel;
        }
        if (st) use->destroy(st);
        ct_kv_free(&hp);
        /* the frozen embeddings went through the feature cache, and only
         * for the method that asks for them */
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "ls %s/features-*.safetensors >/dev/null 2>&1", cache);
        CHECK_MSG((system(cmd) == 0) == (k == 0), "feature cache %s used by the %s run", cache,
                  k ? "plain" : "frozen_features");
    }
    CHECK(n[0] == n[1] && n[0] > 0);
    if (n[0] == n[1]) CHECK_CLOSE_F("dpt trained with cached frozen embeddings vs computed",
                                    out[0], out[1], n[0], 1e-4, 1e-3);
    free(out[0]), free(out[1]);
    ct_dataset_free(train);
    ct_splits_free(&sp);
}

/* Which images a pixel method that wants unlabelled images trains on: the
 * labelled split, unless it also sets trains_unlabelled (MUST) — then the
 * unlabelled pool, its labels hidden. A spy around VP records the batches. */
static int64_t g_spy_n, g_spy_bad;
static ct_tensor *spy_loss(void *st, ct_graph *g, const ct_batch *b) {
    const ct_method *vp = ct_method_find("vp");
    for (int64_t i = 0; i < b->n; i++) g_spy_bad += b->labels[i] < 0;
    g_spy_n += b->n;
    return ct_scale(g, ct_sum_all(g, vp->logits(st, g, b)), 1e-3f);
}

static void test_unlabelled_pool(void) {
    ct_splits sp = {0};
    if (!open_fashion_mnist(&sp)) return;
    ct_dataset *train = ct_dataset_fewshot(sp.train, 1, 5);  /* 10 images */
    ct_dataset *pool = ct_dataset_head(sp.test, 24);         /* 24 other ones */
    for (int k = 0; k < 2; k++) {
        ct_method spy = *ct_method_find("vp");
        spy.loss = spy_loss, spy.wants_unlabelled = true, spy.trains_unlabelled = k == 1;
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, spy.defaults));
        CHECK_OK(ct_kv_parse(&hp, "epochs=1 batch_size=2 warmup_steps=0 train_aug=none"));
        ct_train_cfg tc;
        CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
        ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre,
                        .dataset_name = train->name, .n_classes = train->n_classes,
                        .classnames = train->classnames, .train = train, .unlabelled = pool,
                        .seed = 5};
        void *st = NULL;
        CHECK_OK(spy.create(&task, &hp, &st));
        g_spy_n = 0, g_spy_bad = 0;
        CHECK_OK(ct_train(&spy, st, &task, &tc, &hp));
        /* k 0: the 10 labelled images, labels read; k 1: the pool's 24, none */
        CHECK_MSG(g_spy_n == (k ? 24 : 10) && g_spy_bad == (k ? 24 : 0),
                  "trains_unlabelled=%d: %lld images, %lld hidden labels", k,
                  (long long)g_spy_n, (long long)g_spy_bad);
        if (st) spy.destroy(st);
        ct_kv_free(&hp);
    }
    ct_dataset_free(train), ct_dataset_free(pool);
    ct_splits_free(&sp);
}

/* The trainer's pixel path: a run stopped after one epoch and resumed
 * ends bit-identical to an uninterrupted one (augmentation, order and
 * schedule are functions of (seed, epoch, item)). */
static void test_pixel_path_resume(void) {
    ct_splits sp = {0};
    if (!open_fashion_mnist(&sp)) return;
    ct_dataset *train = ct_dataset_fewshot(sp.train, 2, 5);
    ct_dataset *val = ct_dataset_fewshot(sp.val, 1, 5);
    size_t cap = 400000, n1 = 0, n2 = 0;
    float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    char d1[4200], d2[4200];
    snprintf(d1, sizeof d1, "%s/maple_full", ct_test_tmpdir());
    snprintf(d2, sizeof d2, "%s/maple_resumed", ct_test_tmpdir());
    mkdir(d1, 0777), mkdir(d2, 0777);
    const char *set = "epochs=3 depth=2 batch_size=8 lr=0.01";
    train_collect("maple", set, train, val, d1, 0, false, 5, a, &n1);
    train_collect("maple", set, train, val, d2, 1, false, 5, b, &n2);
    train_collect("maple", set, train, val, d2, 0, true, 5, b, &n2);
    CHECK(n1 == n2 && n1 > 0 && n1 <= cap);
    CHECK_MSG(n1 == n2 && !memcmp(a, b, n1 * sizeof *a),
              "a resumed pixel-path run differs from an uninterrupted one");
    free(a), free(b);
    ct_dataset_free(train), ct_dataset_free(val);
    ct_splits_free(&sp);
}

/* Three groups, three ctest entries (each well within the time limit under
 * the sanitizers): the parity checks (no argument) and the training runs on
 * Fashion-MNIST in two halves ("learns-a", "learns-b"). */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "learns-a")) {
        ct_test_run("pixel_path_resume", test_pixel_path_resume);
        ct_test_run("frozen_features_once", test_frozen_features_once);
        ct_test_run("learns_on_shipped_model (vp, vpt-deep, ivlp, maple)", test_learns_a);
    } else if (argc > 1 && !strcmp(argv[1], "learns-b")) {
        ct_test_run("promptsrc_gpa", test_promptsrc_gpa);
        ct_test_run("learns_on_shipped_model (clip-lora, promptsrc, upt, dpt)", test_learns_b);
    } else {
        ct_test_run("vp_parity", test_vp_parity);
        ct_test_run("vpt_deep_parity", test_vpt_deep_parity);
        ct_test_run("ivlp_parity", test_ivlp_parity);
        ct_test_run("maple_parity", test_maple_parity);
        ct_test_run("protect_maple_parity", test_protect_maple_parity);
        ct_test_run("clip_lora_parity", test_clip_lora_parity);
        ct_test_run("upt_parity", test_upt_parity);
        ct_test_run("promptsrc_parity", test_promptsrc_parity);
        ct_test_run("dpt_parity", test_dpt_parity);
        ct_test_run("clip_lora_merge", test_clip_lora_merge);
        ct_test_run("dpt_frozen_given", test_dpt_frozen_given);
        ct_test_run("dropout", test_dropout);
        ct_test_run("ivlp_shared_prefix_exact", test_ivlp_shared_prefix_exact);
        ct_test_run("needs_pixels", test_needs_pixels);
        ct_test_run("every_pixel_method", test_every_pixel_method);
        ct_test_run("unlabelled_pool", test_unlabelled_pool);
    }
    ct_bundle_free(&g_b);
    ct_safetensors_close(g_ref);
    ct_safetensors_close(g_ref_pm);
    return ct_test_summary();
}
