/* CLIP contrastive pretraining: the loss and the optimisation step against
 * tools/ref/gen_pretrain_ref.py (PyTorch, open_clip's rules), and short
 * pretraining runs on a synthetic corpus: the loss falls, held-out retrieval
 * beats chance, the output loads as a checkpoint, resume is bit-identical,
 * and bad set-ups fail with clear errors. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"
#include "model/clip.h"
#include "train/clip_trainer.h"
#include "train/pretrain.h"

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

/* ---- short pretraining runs on a synthetic corpus ---- */

static const char *const COLORS[] = {"red", "green", "blue", "yellow"};
static const uint8_t RGB[4][3] = {{230, 30, 30}, {30, 200, 40}, {40, 60, 230}, {240, 220, 30}};
static const char *const SHAPES[] = {"square", "circle", "bar"};

/* 24x24 PPM: a coloured shape at a jittered place on a grey background. */
static void write_ppm(const char *path, int color, int shape, int jitter) {
    uint8_t px[24 * 24 * 3];
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 24; x++) {
            int cx = 12 + jitter % 5 - 2, cy = 12 + (jitter / 5) % 5 - 2, dx = x - cx, dy = y - cy;
            bool in = shape == 0   ? abs(dx) <= 6 && abs(dy) <= 6
                      : shape == 1 ? dx * dx + dy * dy <= 49
                                   : abs(dx) <= 9 && abs(dy) <= 2;
            for (int c = 0; c < 3; c++) px[(y * 24 + x) * 3 + c] = in ? RGB[color][c] : 120;
        }
    FILE *f = fopen(path, "wb");
    fprintf(f, "P6\n24 24\n255\n");
    fwrite(px, 1, sizeof px, f);
    fclose(f);
}

/* dir/corpus.csv over 4 colours x 3 shapes x 6 placements; dir/tok: a BPE
 * vocabulary trained on the captions. Returns the vocabulary size. */
static int make_corpus(const char *dir) {
    char path[1024], csv[1024];
    snprintf(csv, sizeof csv, "%s/corpus.csv", dir);
    FILE *f = fopen(csv, "w");
    fprintf(f, "path,caption\n");
    const char *texts[4 * 3 * 6 * 2];
    static char buf[4 * 3 * 6 * 2][64];
    int nt = 0;
    for (int c = 0; c < 4; c++)
        for (int s = 0; s < 3; s++)
            for (int j = 0; j < 6; j++) {
                snprintf(path, sizeof path, "%s/img_%d_%d_%d.ppm", dir, c, s, j);
                write_ppm(path, c, s, j * 7 + c + s);
                snprintf(buf[nt], sizeof buf[nt], "a %s %s", COLORS[c], SHAPES[s]);
                fprintf(f, "img_%d_%d_%d.ppm,%s\n", c, s, j, buf[nt]);
                texts[nt] = buf[nt], nt++;
                snprintf(buf[nt], sizeof buf[nt], "\"the %s is %s\"", SHAPES[s], COLORS[c]);
                fprintf(f, "img_%d_%d_%d.ppm,%s\n", c, s, j, buf[nt]);
                texts[nt] = buf[nt], nt++;
            }
    fclose(f);
    snprintf(path, sizeof path, "%s/tok", dir);
    CHECK_OK(ct_bpe_train(texts, nt, 560, 1, path, NULL));
    char v[1100], m[1100];
    snprintf(v, sizeof v, "%s/vocab.json", path), snprintf(m, sizeof m, "%s/merges.txt", path);
    ct_tokenizer *tok = ct_tokenizer_load_hf(v, m);
    int n = tok ? ct_tokenizer_vocab_size(tok) : 0;
    ct_tokenizer_free(tok);
    return n;
}

static void run_cfg(ct_pretrain_cfg *cfg, const char *dir, const char *out, int vocab) {
    static char corpus[1024], tok[1024];
    snprintf(corpus, sizeof corpus, "%s/corpus.csv", dir);
    snprintf(tok, sizeof tok, "%s/tok", dir);
    ct_pretrain_cfg_default(cfg);
    cfg->corpus = corpus, cfg->tokenizer_dir = tok, cfg->out_dir = out;
    cfg->arch = tiny_arch(vocab);
    cfg->epochs = 40, cfg->batch_size = 8, cfg->lr = 5e-3, cfg->warmup_steps = 10;
    cfg->weight_decay = 0.05, cfg->heldout_frac = 0.15, cfg->checkpoint_every = 25;
    ct_pretrain_aug_cfg_default(&cfg->aug, 16);
    cfg->aug.flip_p = 0.5, cfg->aug.grey_p = 0, cfg->aug.invert_p = 0;
    cfg->aug.silhouette_p = 0, cfg->aug.background_p = 0;
}

static double curve_loss(const char *out, bool last) {
    char path[1100], line[512];
    snprintf(path, sizeof path, "%s/curve.csv", out);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "no %s", path);
    if (!f) return NAN;
    double v = NAN;
    int row = 0;
    while (fgets(line, sizeof line, f)) {
        double step, ep, loss;
        if (row++ == 0 || sscanf(line, "%lf,%lf,%lf", &step, &ep, &loss) != 3) continue;
        if (isnan(v) || last) v = loss;
    }
    fclose(f);
    return v;
}

static bool same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (ct_read_file(a, &x, &nx) != CT_OK) return false;
    if (ct_read_file(b, &y, &ny) != CT_OK) {
        free(x);
        return false;
    }
    bool same = nx == ny && !memcmp(x, y, nx);
    free(x), free(y);
    return same;
}

static void test_pretrain_run(void) {
    const char *dir = ct_test_tmpdir();
    int vocab = make_corpus(dir);
    CHECK(vocab > 514);
    if (vocab <= 514) return;
    char out[1024], out2[1024], path[1100], path2[1100];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(out2, sizeof out2, "%s/run2", dir);
    ct_pretrain_cfg cfg;
    ct_pretrain_result res;
    run_cfg(&cfg, dir, out, vocab);
    CHECK_OK(ct_pretrain(&cfg, &res));
    CHECK(res.finished && res.step == res.total_steps && res.total_steps > 100);
    double first = curve_loss(out, false), last = curve_loss(out, true);
    printf("    loss %.3f -> %.3f; held-out (%lld images): i2t R@1 %.2f R@5 %.2f, t2i R@1 %.2f\n",
           first, last, (long long)res.heldout.n_images, res.heldout.i2t_r1, res.heldout.i2t_r5,
           res.heldout.t2i_r1);
    /* chance is ln 8 = 2.08; identical captions of different images in one
     * batch keep the floor well above 0 */
    CHECK_MSG(last < 0.75 * first && last < log(8.0) - 0.4, "loss did not fall: %.3f -> %.3f",
              first, last);
    CHECK(res.heldout.n_images > 0);
    CHECK(res.heldout.t2i_r1 > 1.5 / (double)res.heldout.n_images);
    /* the output folder is a checkpoint like any other */
    ct_clip *m = ct_clip_load(out, NULL);
    CHECK(m != NULL);
    if (m) CHECK(ct_clip_get_config(m)->vocab_size == vocab);
    ct_clip_free(m);
    snprintf(path, sizeof path, "%s/vocab.json", out), snprintf(path2, sizeof path2, "%s/merges.txt", out);
    ct_tokenizer *tok = ct_tokenizer_load_hf(path, path2);
    CHECK(tok != NULL);
    ct_tokenizer_free(tok);
    /* in resumable chunks: bit-identical to the uninterrupted run */
    run_cfg(&cfg, dir, out2, vocab);
    cfg.stop_after = 123;
    CHECK_OK(ct_pretrain(&cfg, &res));
    CHECK(!res.finished && res.step == 123);
    cfg.resume = true, cfg.stop_after = 0;
    CHECK_OK(ct_pretrain(&cfg, &res));
    CHECK(res.finished);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    snprintf(path2, sizeof path2, "%s/model.safetensors", out2);
    CHECK_MSG(same_file(path, path2), "resumed run differs from the uninterrupted one");
    snprintf(path, sizeof path, "%s/curve.csv", out), snprintf(path2, sizeof path2, "%s/curve.csv", out2);
    CHECK(same_file(path, path2));
    /* resuming with other hyper-parameters is refused */
    cfg.lr = 1e-3;
    CHECK(ct_pretrain(&cfg, &res) == CT_ERR_STATE);
    CHECK(strstr(ct_last_error(), "--resume needs the same") != NULL);
}

static void test_pretrain_errors(void) {
    const char *dir = ct_test_tmpdir();
    int vocab = make_corpus(dir);
    char out[1024];
    snprintf(out, sizeof out, "%s/bad", dir);
    ct_pretrain_cfg cfg;
    ct_pretrain_result res;
    run_cfg(&cfg, dir, out, vocab + 1);
    CHECK(ct_pretrain(&cfg, &res) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "vocab_size") != NULL);
    run_cfg(&cfg, dir, out, vocab);
    cfg.batch_size = 1000;
    CHECK(ct_pretrain(&cfg, &res) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "fewer than one batch") != NULL);
    run_cfg(&cfg, dir, out, vocab);
    cfg.resume = true;
    CHECK(ct_pretrain(&cfg, &res) != CT_OK); /* nothing to resume */
    run_cfg(&cfg, dir, out, vocab);
    cfg.corpus = "/nonexistent/corpus.csv";
    CHECK(ct_pretrain(&cfg, &res) != CT_OK);
    CHECK(strstr(ct_last_error(), "/nonexistent/corpus.csv") != NULL);
}

int main(void) {
    RUN(test_loss_matches_reference);
    RUN(test_step_matches_reference);
    RUN(test_pretrain_run);
    RUN(test_pretrain_errors);
    return ct_test_summary();
}
