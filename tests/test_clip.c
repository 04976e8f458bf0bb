/* CLIP parity with an independent PyTorch reference (tools/ref/gen_clip_ref.py):
 * tiny random checkpoints in the real Hugging Face and OpenAI layouts, F32,
 * F16 and BF16; embeddings, dense features and logits within
 * 1e-4 + 1e-4 |ref|; gradients (pixels, text input embeddings, deep prompt
 * tokens) within 1e-3 of the largest reference magnitude of each array
 * (the references are float64; we compute in float32). Plus loader errors. */
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "cliptune.h"
#include "harness.h"

#define FIX "tests/fixtures/clip/"

static char root[4096];

static const char *fx(const char *rel) {
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/" FIX "%s", root, rel);
    return buf[k];
}

static ct_npy load_npy(const char *ref, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s.npy", ref, name);
    ct_npy a = {0};
    if (ct_npy_read(fx(rel), &a) != CT_OK) ct_test_fail(__FILE__, __LINE__, "%s", ct_last_error());
    return a;
}

/* Compare a float tensor against a reference .npy. */
/* zero_tokens: zero positions 1..2 of each (T, W) row block of the reference
 * first (their gradient belongs to the prompt that replaced them). */
static void cmp_ex(const char *what, const ct_real *got, int64_t n, const char *ref,
                   const char *name, bool grad, bool zero_tokens) {
    ct_npy r = load_npy(ref, name);
    if (!r.data) return;
    if (zero_tokens && r.ndim == 3)
        for (int64_t b = 0; b < r.shape[0]; b++)
            memset((float *)r.data + (b * r.shape[1] + 1) * r.shape[2], 0,
                   2 * (size_t)r.shape[2] * sizeof(float));
    CHECK_MSG((int64_t)r.numel == n, "%s: %lld values, reference %s has %zu", what, (long long)n,
              name, r.numel);
    if ((int64_t)r.numel == n) {
        const float *w = r.data;
        double mx = 0;
        for (int64_t i = 0; i < n; i++) mx = fabs(w[i]) > mx ? fabs(w[i]) : mx;
        char label[256];
        snprintf(label, sizeof label, "%s (%s/%s)", what, ref, name);
        if (grad)
            CHECK_CLOSE_F(label, got, w, (size_t)n, 1e-3 * mx, 1e-3);
        else
            CHECK_CLOSE_F(label, got, w, (size_t)n, 1e-4, 1e-4);
    }
    ct_npy_free(&r);
}

static void cmp(const char *what, const ct_real *got, int64_t n, const char *ref, const char *name,
                bool grad) {
    cmp_ex(what, got, n, ref, name, grad, false);
}

typedef struct {
    ct_tensor *T0, *T1, *V0, *V1;
} prompts;

static ct_tensor *repeat(ct_graph *g, ct_tensor *p, int64_t B) {
    int64_t s[3] = {B, p->shape[0], p->shape[1]};
    return ct_add(g, ct_graph_tensor(g, 3, s), p);
}

/* MaPLe: vision prompts appended after the embeddings, the last two replaced
 * before block 1; text prompts replace positions 1..2 before block 1. */
static ct_tensor *vision_hook(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    prompts *p = ctx;
    int64_t B = x->shape[0], T = x->shape[1];
    if (layer == -1) {
        ct_tensor *parts[2] = {x, repeat(g, p->V0, B)};
        return ct_concat(g, parts, 2, 1);
    }
    if (layer == 1 && p->V1) {
        ct_tensor *parts[2] = {ct_slice(g, x, 1, 0, T - 2), repeat(g, p->V1, B)};
        return ct_concat(g, parts, 2, 1);
    }
    return x;
}

static ct_tensor *replace_12(ct_graph *g, ct_tensor *x, ct_tensor *p) {
    int64_t B = x->shape[0], T = x->shape[1];
    ct_tensor *parts[3] = {ct_slice(g, x, 1, 0, 1), repeat(g, p, B), ct_slice(g, x, 1, 3, T - 3)};
    return ct_concat(g, parts, 3, 1);
}

static ct_tensor *text_hook(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    prompts *p = ctx;
    return layer == 1 && p->T1 ? replace_12(g, x, p->T1) : x;
}

static ct_tensor *leaf_from(const ct_npy *a, bool grad) {
    int64_t shape[4];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    ct_tensor *t = ct_tensor_new(a->ndim, shape, grad);
    memcpy(t->data, a->data, a->numel * sizeof(float));
    return t;
}

static void run_parity(const char *model_path, const char *ref, bool prompted) {
    ct_clip *m = ct_clip_load(fx(model_path), NULL);
    CHECK_MSG(m != NULL, "load %s: %s", model_path, ct_last_error());
    if (!m) return;
    ct_npy px = load_npy(ref, "pixels"), ids = load_npy(ref, "input_ids"), R = load_npy(ref, "R");
    ct_npy eot = load_npy(ref, "eot_positions");
    if (!px.data || !ids.data || !R.data || !eot.data) goto done;
    int64_t n = (int64_t)ids.shape[0], T = (int64_t)ids.shape[1];
    int64_t pos[16];
    CHECK_OK(ct_clip_eot_positions(m, ids.data, n, T, pos));
    for (int64_t i = 0; i < n; i++)
        CHECK_MSG(pos[i] == ((int64_t *)eot.data)[i], "%s: EOT position of row %lld: %lld vs %lld",
                  model_path, (long long)i, (long long)pos[i], (long long)((int64_t *)eot.data)[i]);
    prompts P = {0};
    ct_npy pn[4] = {{0}};
    const char *pnames[4] = {"prompt_T0", "prompt_T1", "prompt_V0", "prompt_V1"};
    ct_tensor **pt[4] = {&P.T0, &P.T1, &P.V0, &P.V1};
    if (prompted)
        for (int k = 0; k < 4; k++) {
            char rel[256];
            snprintf(rel, sizeof rel, "%s/%s.npy", ref, pnames[k]);
            if (ct_npy_read(fx(rel), &pn[k]) == CT_OK) *pt[k] = leaf_from(&pn[k], true);
        }
    ct_graph *g = ct_graph_create(0);
    ct_tensor *pix = leaf_from(&px, true);
    /* token embeddings as a leaf, so their gradient is observable */
    ct_graph_set_grad(g, false);
    ct_tensor *e0 = ct_clip_embed_tokens(g, m, ids.data, n, T);
    ct_tensor *emb = ct_tensor_new(3, e0->shape, true);
    memcpy(emb->data, e0->data, (size_t)e0->numel * sizeof(ct_real));
    ct_graph_reset(g);
    ct_graph_set_grad(g, true);
    ct_clip_hooks hooks = {prompted ? vision_hook : NULL, prompted ? text_hook : NULL, &P,
                           NULL, NULL, NULL, NULL, NULL, NULL};
    ct_clip_image_out io = {0};
    ct_tensor *img = ct_clip_encode_image(g, m, pix, &hooks, true, &io);
    ct_tensor *tin = prompted ? replace_12(g, emb, P.T0) : emb;
    ct_tensor *txt = ct_clip_encode_text_embeds(g, m, tin, pos, &hooks);
    ct_tensor *logits = ct_clip_logits(g, m, img, txt);
    CHECK_MSG(logits != NULL, "%s: forward failed: %s", model_path, ct_last_error());
    if (!logits) goto free_graph;
    const char *pre = prompted ? "prompted_" : "";
    char nm[128];
#define NM(s) (snprintf(nm, sizeof nm, "%s%s", pre, s), nm)
    cmp("image embeddings", img->data, img->numel, ref, NM("image_embeds"), false);
    cmp("dense image features", io.dense->data, io.dense->numel, ref, NM("image_dense"), false);
    cmp("image tokens", io.tokens->data, io.tokens->numel, ref, NM("image_tokens"), false);
    cmp("text embeddings", txt->data, txt->numel, ref, NM("text_embeds"), false);
    cmp("logits", logits->data, logits->numel, ref, NM("logits_per_image"), false);
    CHECK_OK(ct_backward_from(g, logits, R.data));
    cmp("d/d pixels", pix->grad, pix->numel, ref, NM("grad_pixels"), true);
    cmp_ex("d/d text input embeddings", emb->grad, emb->numel, ref, NM("grad_text_input_embeds"),
           true, prompted);
    if (prompted) {
        const char *gnames[4] = {"prompted_grad_T0", "prompted_grad_T1", "prompted_grad_V0",
                                 "prompted_grad_V1"};
        for (int k = 0; k < 4; k++)
            if (*pt[k]) cmp(gnames[k], (*pt[k])->grad, (*pt[k])->numel, ref, gnames[k], true);
    }
    /* frozen weights received nothing */
    CHECK(ct_clip_find_tensor(m, "visual.conv1.weight")->grad == NULL);
free_graph:
    ct_graph_free(g);
    ct_tensor_free(pix);
    ct_tensor_free(emb);
    for (int k = 0; k < 4; k++) {
        ct_tensor_free(*pt[k]);
        ct_npy_free(&pn[k]);
    }
done:
    ct_npy_free(&px), ct_npy_free(&ids), ct_npy_free(&R), ct_npy_free(&eot);
    ct_clip_free(m);
}

static void test_openai_f32(void) { run_parity("a_openai.safetensors", "a_ref", false); }
static void test_hf_f32(void) { run_parity("a_hf", "a_ref", false); }
static void test_openai_f16(void) { run_parity("a_openai_f16.safetensors", "a_f16_ref", false); }
static void test_hf_bf16(void) { run_parity("a_hf_bf16", "a_bf16_ref", false); }
static void test_hf_gelu_legacy_eos(void) { run_parity("b_hf", "b_ref", false); }
static void test_prompts_openai(void) { run_parity("a_openai.safetensors", "a_ref", true); }
static void test_prompts_hf(void) { run_parity("b_hf", "b_ref", true); }
static void test_mid_openai_f16(void) { run_parity("c_openai_f16.safetensors", "c_ref", false); }
static void test_mid_prompts(void) { run_parity("c_openai_f16.safetensors", "c_ref", true); }

/* Inference in bf16 weights (ct_clip_set_precision): the embeddings within
 * cosine 0.9999 of PyTorch's fp32 ones, not equal to ours in fp32 (the bf16
 * path ran), equal again after going back to fp32; a tape uses the fp32
 * weights. Where the CPU lacks AVX512_BF16, a clear refusal. */
static double min_cosine(const float *a, const float *b, int64_t rows, int64_t cols) {
    double worst = 1;
    for (int64_t r = 0; r < rows; r++) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t c = 0; c < cols; c++) {
            double x = a[r * cols + c], y = b[r * cols + c];
            ab += x * y, aa += x * x, bb += y * y;
        }
        double cs = ab / sqrt(aa * bb);
        if (cs < worst) worst = cs;
    }
    return worst;
}

static void bf16_case(const char *model_path, const char *ref) {
    ct_clip *m = ct_clip_load(fx(model_path), NULL);
    CHECK_MSG(m != NULL, "load %s: %s", model_path, ct_last_error());
    if (!m) return;
    ct_npy px = load_npy(ref, "pixels"), ids = load_npy(ref, "input_ids");
    ct_npy ri = load_npy(ref, "image_embeds"), rt = load_npy(ref, "text_embeds");
    int64_t n = (int64_t)ids.shape[0], T = (int64_t)ids.shape[1], E = (int64_t)ri.shape[1];
    ct_graph *g = ct_graph_create(0);
    ct_tensor *pix = leaf_from(&px, false);
    float *f32[1] = {malloc((size_t)(px.shape[0] + n) * E * sizeof(float))};
    for (int pass = 0; pass < 3; pass++) { /* fp32, bf16, fp32 again */
        ct_precision p = pass == 1 ? CT_PRECISION_BF16 : CT_PRECISION_F32;
        ct_status st = ct_clip_set_precision(m, p);
        if (p == CT_PRECISION_BF16 && !ct_cpu_has_bf16()) {
            CHECK(st == CT_ERR_UNSUPPORTED && strstr(ct_last_error(), "AVX512_BF16"));
            printf("  %s: no AVX512_BF16 on this path: refused (%s)\n", model_path,
                   ct_last_error());
            continue;
        }
        CHECK_OK(st);
        CHECK(ct_clip_get_precision(m) == p);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *img = ct_clip_encode_image(g, m, pix, NULL, false, NULL);
        ct_tensor *txt = ct_clip_encode_text(g, m, ids.data, n, T, NULL);
        CHECK(img && txt);
        if (!img || !txt) break;
        double ci = min_cosine(img->data, ri.data, img->shape[0], E);
        double ct = min_cosine(txt->data, rt.data, n, E);
        if (pass == 0) {
            memcpy(f32[0], img->data, (size_t)img->numel * sizeof(float));
            memcpy(f32[0] + img->numel, txt->data, (size_t)txt->numel * sizeof(float));
            continue;
        }
        bool same = !memcmp(f32[0], img->data, (size_t)img->numel * sizeof(float)) &&
                    !memcmp(f32[0] + img->numel, txt->data, (size_t)txt->numel * sizeof(float));
        if (pass == 2) {
            CHECK_MSG(same, "%s: fp32 again differs from the first fp32 pass", model_path);
            continue;
        }
        printf("  %s bf16: min cosine to PyTorch fp32: image %.7f, text %.7f\n", model_path, ci,
               ct);
        CHECK_MSG(!same, "%s: bf16 gave the fp32 embeddings bit for bit", model_path);
        CHECK_MSG(ci >= 0.9999 && ct >= 0.9999, "%s: bf16 cosine image %.6f text %.6f < 0.9999",
                  model_path, ci, ct);
        /* a tape runs on the fp32 weights: PyTorch's embeddings at fp32's
         * tolerance */
        ct_graph_reset(g);
        ct_graph_set_grad(g, true);
        ct_tensor *pg = leaf_from(&px, true);
        ct_tensor *ig = ct_clip_encode_image(g, m, pg, NULL, false, NULL);
        CHECK(ig != NULL);
        if (ig) cmp("image embeddings on a tape, bf16 set", ig->data, ig->numel, ref, "image_embeds", false);
        ct_tensor_free(pg);
    }
    free(f32[0]);
    ct_tensor_free(pix);
    ct_graph_free(g);
    ct_npy_free(&px), ct_npy_free(&ids), ct_npy_free(&ri), ct_npy_free(&rt);
    ct_clip_free(m);
}

static void test_bf16_precision(void) {
    bf16_case("a_openai.safetensors", "a_ref");
    bf16_case("c_openai_f16.safetensors", "c_ref");
}

static void test_config(void) {
    ct_clip *a = ct_clip_load(fx("a_openai.safetensors"), NULL), *b = ct_clip_load(fx("b_hf"), NULL);
    CHECK(a && b);
    if (!a || !b) goto out;
    const ct_clip_config *ca = ct_clip_get_config(a), *cb = ct_clip_get_config(b);
    CHECK(ca->format == CT_CLIP_OPENAI && ca->image_size == 32 && ca->patch_size == 8);
    CHECK(ca->vision_width == 64 && ca->vision_heads == 1 && ca->vision_layers == 2);
    CHECK(ca->context_length == 16 && ca->vocab_size == 1000 && ca->embed_dim == 32);
    CHECK(ca->eot_rule == CT_EOT_ARGMAX && ca->text_act == CT_QUICK_GELU);
    CHECK(cb->format == CT_CLIP_HF && cb->vision_heads == 3 && cb->text_heads == 2);
    CHECK(cb->vision_act == CT_GELU && cb->eot_rule == CT_EOT_ARGMAX && cb->text_mlp == 120);
    CHECK(ct_clip_num_params(a) > 0 && ct_clip_num_tensors(a) == 14 + 16 * 4);
    const char *name;
    CHECK(ct_clip_tensor_at(a, 0, &name) != NULL && !strcmp(name, "visual.conv1.weight"));
    CHECK(ct_clip_find_tensor(b, "transformer.resblocks.0.attn.q_proj.weight") != NULL);
out:
    ct_clip_free(a);
    ct_clip_free(b);
}

/* A copy of a fixture with one tensor renamed, dropped or reshaped. */
static void write_variant(const char *src, const char *dst, const char *drop, const char *rename,
                          const char *to, bool add_extra) {
    ct_safetensors *st = ct_safetensors_open(src);
    CHECK(st != NULL);
    if (!st) return;
    int n = ct_safetensors_count(st), k = 0;
    ct_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    for (int i = 0; i < n; i++) {
        const ct_st_tensor *t = ct_safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        e[k].name = rename && !strcmp(t->name, rename) ? to : t->name;
        e[k].dtype = t->dtype, e[k].ndim = t->ndim, e[k].shape = t->shape, e[k].data = t->data;
        k++;
    }
    static const float one = 1;
    static const int64_t shp[1] = {1};
    if (add_extra) e[k++] = (ct_st_entry){"visual.extra_head.weight", CT_F32, 1, shp, &one};
    CHECK_OK(ct_safetensors_write(dst, e, k, NULL, 0));
    free(e);
    ct_safetensors_close(st);
}

static void expect_load_error(const char *path, const char *word) {
    ct_clip *m = ct_clip_load(path, NULL);
    CHECK_MSG(m == NULL, "loading %s should fail", path);
    CHECK_MSG(strstr(ct_last_error(), word) != NULL, "message \"%s\" lacks \"%s\"",
              ct_last_error(), word);
    ct_clip_free(m);
}

static void test_load_errors(void) {
    char p[4096];
    const char *tmp = ct_test_tmpdir();
    const char *src = fx("a_openai.safetensors");
    snprintf(p, sizeof p, "%s/missing.safetensors", tmp);
    write_variant(src, p, "ln_final.bias", NULL, NULL, false);
    expect_load_error(p, "missing tensor ln_final.bias");
    snprintf(p, sizeof p, "%s/extra.safetensors", tmp);
    write_variant(src, p, NULL, NULL, NULL, true);
    expect_load_error(p, "unexpected tensor visual.extra_head.weight");
    /* a misshaped tensor: give ln_final.bias the shape of something else */
    snprintf(p, sizeof p, "%s/shape.safetensors", tmp);
    write_variant(src, p, "ln_final.bias", "visual.class_embedding", "ln_final.bias", false);
    ct_clip *m = ct_clip_load(p, NULL);
    CHECK(m == NULL); /* class_embedding now missing, or shape mismatch: either names a tensor */
    CHECK(strstr(ct_last_error(), "tensor") != NULL);
    ct_clip_free(m);
    expect_load_error(fx("no_such_model"), "no_such_model");
    /* a truncated file */
    snprintf(p, sizeof p, "%s/trunc.safetensors", tmp);
    FILE *f = fopen(src, "rb"), *o = fopen(p, "wb");
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf, f);
    fwrite(buf, 1, got, o);
    fclose(f), fclose(o);
    expect_load_error(p, "trunc.safetensors");
    /* an HF folder whose config disagrees with the weights */
    snprintf(p, sizeof p, "%s/hfbad", tmp);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/model.safetensors %s/ && sed "
             "'s/\"num_hidden_layers\": 2/\"num_hidden_layers\": 3/' %s/config.json > "
             "%s/config.json", p, fx("a_hf"), p, fx("a_hf"), p);
    CHECK(system(cmd) == 0);
    expect_load_error(p, "missing tensor");
}

static void test_pixel_shape_error(void) {
    ct_clip *m = ct_clip_load(fx("a_openai.safetensors"), NULL);
    if (!m) return;
    ct_graph *g = ct_graph_create(0);
    int64_t s[4] = {1, 3, 31, 32};
    CHECK(ct_clip_encode_image(g, m, ct_graph_tensor(g, 4, s), NULL, false, NULL) == NULL);
    CHECK(strstr(ct_last_error(), "(B, 3, 32, 32)") != NULL);
    ct_graph_reset(g);
    int64_t ids[2] = {5, 1000};
    CHECK(ct_clip_encode_text(g, m, ids, 1, 2, NULL) == NULL);
    CHECK(strstr(ct_last_error(), "1000") != NULL);
    ct_graph_free(g);
    ct_clip_free(m);
}

/* OpenAI layout -> our HF writer -> load: identical weights and config. */
static void test_save_hf_round_trip(void) {
    ct_clip *a = ct_clip_load(fx("a_openai.safetensors"), NULL);
    CHECK(a != NULL);
    if (!a) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/saved_hf", ct_test_tmpdir());
    CHECK_OK(ct_clip_save_hf(a, dir));
    ct_clip *b = ct_clip_load(dir, NULL);
    CHECK_MSG(b != NULL, "reload: %s", ct_last_error());
    if (b) {
        CHECK(ct_clip_num_tensors(a) == ct_clip_num_tensors(b));
        for (int i = 0; i < ct_clip_num_tensors(a); i++) {
            const char *name;
            ct_tensor *ta = ct_clip_tensor_at(a, i, &name), *tb = ct_clip_find_tensor(b, name);
            CHECK_MSG(tb && tb->numel == ta->numel &&
                          !memcmp(ta->data, tb->data, (size_t)ta->numel * sizeof(ct_real)),
                      "tensor %s differs after the round trip", name);
        }
        const ct_clip_config *ca = ct_clip_get_config(a), *cb = ct_clip_get_config(b);
        CHECK(cb->format == CT_CLIP_HF && cb->vision_layers == ca->vision_layers &&
              cb->text_heads == ca->text_heads && cb->vision_act == ca->vision_act &&
              cb->eot_rule == CT_EOT_ARGMAX && cb->image_size == ca->image_size);
    }
    ct_clip_free(a);
    ct_clip_free(b);
}

int main(void) {
    snprintf(root, sizeof root, "%s", CT_SOURCE_DIR);
    RUN(test_config);
    RUN(test_openai_f32);
    RUN(test_hf_f32);
    RUN(test_openai_f16);
    RUN(test_hf_bf16);
    RUN(test_hf_gelu_legacy_eos);
    RUN(test_prompts_openai);
    RUN(test_prompts_hf);
    RUN(test_mid_openai_f16);
    RUN(test_mid_prompts);
    RUN(test_bf16_precision);
    RUN(test_load_errors);
    RUN(test_pixel_shape_error);
    RUN(test_save_hf_round_trip);
    return ct_test_summary();
}
