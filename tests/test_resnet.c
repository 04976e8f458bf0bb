/* OpenAI's ModifiedResNet image tower (RN50 family) in the shared encoder:
 *
 *   - parity with tools/ref/gen_resnet_ref.py (an independent float64
 *     PyTorch re-implementation of openai/CLIP clip/model.py's
 *     ModifiedResNet, PLOT/CALIP's all-query attention pooling and MaskCLIP's
 *     ResNet value path, DualCoOp's AttentionConv) on tests/fixtures/resnet/rn_openai.safetensors
 *     (F32, with num_batches_tracked buffers) and rn_openai_f16.safetensors:
 *     the shapes build_model infers, image embeddings, the three dense kinds
 *     and the keys, logits against two texts, gradients of two scalar functions
 *     w.r.t. the pixels and four weights (a conv, two batch norms, q_proj);
 *   - a private vision copy (WiSE-FT's) of the tower computes the same,
 *     trains every weight but batch norm's running statistics;
 *   - ct_clip_create builds RN50's real shapes (parameter count as OpenAI's
 *     RN50 visual) and refuses inconsistent ResNet configurations;
 *   - what a ResNet cannot do is refused by name: vision deep prompts, LoRA
 *     and hooks in the encoder, ct_clip_need_vit, the Hugging Face writer;
 *   - every registered method on a tiny random ResNet CLIP: defaults parse
 *     and a run through ct_run trains/fits and evaluates with finite scores,
 *     or (the methods that insert tokens into the vision transformer) is
 *     refused with "needs a ViT image tower". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/model.h"
#include "cliptune.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "model/vision_copy.h"

#define FX CT_SOURCE_DIR "/tests/fixtures/resnet"
#define ATOL 2e-4
#define RTOL 2e-4

static ct_safetensors *g_ref;

static bool ref_open(void) {
    if (!g_ref) g_ref = ct_safetensors_open(FX "/ref.safetensors");
    CHECK_MSG(g_ref != NULL, "ref: %s", ct_last_error());
    return g_ref != NULL;
}

/* a reference array as floats (malloc'ed), its element count in *n */
static float *ref(const char *name, size_t *n) {
    const ct_st_tensor *t = ct_safetensors_find(g_ref, name);
    CHECK_MSG(t != NULL, "ref: no %s", name);
    if (!t) return NULL;
    size_t k = 1;
    for (int d = 0; d < t->ndim; d++) k *= (size_t)t->shape[d];
    float *v = malloc(k * sizeof *v);
    CHECK_OK(ct_st_to_real(t, v, k));
    *n = k;
    return v;
}

static void compare_ref(const char *tag, const char *what, const float *got, size_t n,
                        double atol, double rtol) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", tag, what);
    size_t m = 0;
    float *want = ref(name, &m);
    if (!want) return;
    CHECK_MSG(m == n, "%s: %zu values, reference %zu", name, n, m);
    if (m == n) CHECK_CLOSE_F(name, got, want, n, atol, rtol);
    free(want);
}

static void test_config(void) {
    ct_clip *m = ct_clip_load(FX "/rn_openai.safetensors", NULL);
    CHECK_MSG(m != NULL, "load: %s", ct_last_error());
    if (!m) return;
    const ct_clip_config *c = ct_clip_get_config(m);
    CHECK(c->vision_resnet_layers[0] == 2 && c->vision_resnet_layers[1] == 1 &&
          c->vision_resnet_layers[2] == 1 && c->vision_resnet_layers[3] == 1);
    CHECK(c->vision_width == 4 && c->image_size == 64 && c->patch_size == 32);
    CHECK(c->vision_heads == 2 && c->vision_layers == 0 && c->embed_dim == 16);
    CHECK(c->text_width == 64 && c->text_layers == 1 && c->vocab_size == 16);
    CHECK(ct_clip_find_tensor(m, "visual.layer1.1.conv2.weight") != NULL);
    CHECK(ct_clip_find_tensor(m, "visual.layer1.1.downsample.0.weight") == NULL);
    CHECK(ct_clip_find_tensor(m, "visual.layer2.0.downsample.1.running_var") != NULL);
    CHECK(ct_clip_find_tensor(m, "visual.attnpool.c_proj.bias") != NULL);
    /* a ViT's hash does not depend on the new config field; a ResNet's does */
    CHECK(ct_clip_hash(m) != 0);
    ct_clip_free(m);
}

/* L1 = <emb, R1> + <dense tokens, R2> and L2 = <value, R3> + <keys, R4>
 * with their gradients, against the reference of tag. */
static void parity(const char *file, const char *tag, bool grads, double atol, double rtol) {
    if (!ref_open()) return;
    ct_clip *m = ct_clip_load(file, NULL);
    CHECK_MSG(m != NULL, "%s: %s", file, ct_last_error());
    if (!m) return;
    size_t npx = 0, nr[4] = {0}, nids = 0;
    float *px = ref("input.pixels", &npx);
    const char *rn[4] = {"input.R1", "input.R2", "input.R3", "input.R4"};
    float *R[4];
    for (int i = 0; i < 4; i++) R[i] = ref(rn[i], &nr[i]);
    const ct_st_tensor *ti = ct_safetensors_find(g_ref, "input.ids");
    CHECK(ti && ti->dtype == CT_I64 && ti->ndim == 2);
    if (!px || !R[0] || !R[1] || !R[2] || !R[3] || !ti) goto done;
    int64_t ids[64];
    nids = (size_t)(ti->shape[0] * ti->shape[1]);
    CHECK(nids <= 64);
    memcpy(ids, ti->data, nids * sizeof *ids);
    const char *wn[4] = {"visual.layer2.0.conv2.weight", "visual.bn1.weight",
                         "visual.layer1.0.downsample.1.bias", "visual.attnpool.q_proj.bias"};
    ct_tensor *w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = ct_clip_find_tensor(m, wn[i]);
        CHECK_MSG(w[i] != NULL, "no %s", wn[i]);
        if (!w[i]) goto done;
        w[i]->requires_grad = grads;
    }
    int64_t shape[4] = {2, 3, 64, 64};
    ct_tensor *pix = ct_tensor_new(4, shape, true);
    memcpy(pix->data, px, npx * sizeof *px);
    ct_graph *g = ct_graph_create(0);
    ct_clip_image_out o = {0};
    ct_tensor *emb = ct_clip_encode_image_kind(g, m, pix, NULL, CT_DENSE_TOKENS, &o);
    CHECK_MSG(emb && o.dense && !o.keys, "encode: %s", ct_last_error());
    if (emb && o.dense) {
        CHECK(o.dense->ndim == 3 && o.dense->shape[1] == 5 && o.dense->shape[2] == 16);
        CHECK(o.tokens && o.tokens->shape[2] == 128);
        compare_ref(tag, "image_embeds", emb->data, (size_t)emb->numel, atol, rtol);
        compare_ref(tag, "dense_tokens", o.dense->data, (size_t)o.dense->numel, atol, rtol);
        /* the pooled embedding is token 0 of the dense tokens */
        for (int b = 0; b < 2; b++)
            CHECK_CLOSE_F("emb vs dense[:, 0]", emb->data + b * 16, o.dense->data + b * 5 * 16,
                          16, 1e-6, 1e-6);
        /* the plain encoder gives the same embedding */
        ct_tensor *e2 = ct_clip_encode_image(g, m, pix, NULL, false, NULL);
        if (e2) CHECK_CLOSE_F("plain vs dense-pass embedding", e2->data, emb->data, 32, 1e-6, 1e-6);
        ct_tensor *l1 = ct_add(g, ct_sum_all(g, ct_mul(g, emb, ct_graph_wrap(g, R[0], 2,
                                                                           emb->shape))),
                               ct_sum_all(g, ct_mul(g, o.dense, ct_graph_wrap(g, R[1], 3,
                                                                             o.dense->shape))));
        if (grads) {
            CHECK_OK(ct_backward(g, l1));
            compare_ref(tag, "grad_pixels", pix->grad, (size_t)pix->numel, atol, rtol);
            for (int i = 0; i < 4; i++) {
                char name[128];
                snprintf(name, sizeof name, "grad.%s", wn[i]);
                CHECK_MSG(w[i]->grad != NULL, "no gradient on %s", wn[i]);
                if (w[i]->grad) compare_ref(tag, name, w[i]->grad, (size_t)w[i]->numel, atol, rtol);
            }
        }
        /* logits against the two texts */
        ct_tensor *txt = ct_clip_encode_text(g, m, ids, ti->shape[0], ti->shape[1], NULL);
        ct_tensor *lg = ct_clip_logits(g, m, emb, txt);
        CHECK_MSG(lg != NULL, "logits: %s", ct_last_error());
        if (lg) {
            compare_ref(tag, "text_embeds", txt->data, (size_t)txt->numel, atol, rtol);
            compare_ref(tag, "logits_per_image", lg->data, 4, 1e-3, 1e-4);
        }
    }
    ct_graph_reset(g);
    ct_tensor_zero_grad(pix);
    for (int i = 0; i < 4; i++) w[i]->requires_grad = false;
    /* MaskCLIP's value path */
    ct_clip_image_out v = {0};
    emb = ct_clip_encode_image_kind(g, m, pix, NULL, CT_DENSE_VALUE, &v);
    CHECK_MSG(emb && v.dense && v.keys, "value path: %s", ct_last_error());
    if (emb && v.dense && v.keys) {
        CHECK(v.keys->shape[1] == 5 && v.keys->shape[2] == 128);
        compare_ref(tag, "image_embeds", emb->data, (size_t)emb->numel, atol, rtol);
        compare_ref(tag, "dense_value", v.dense->data, (size_t)v.dense->numel, atol, rtol);
        compare_ref(tag, "dense_keys", v.keys->data, (size_t)v.keys->numel, atol, rtol);
        if (grads) {
            ct_tensor *l2 = ct_add(
                g, ct_sum_all(g, ct_mul(g, v.dense, ct_graph_wrap(g, R[2], 3, v.dense->shape))),
                ct_sum_all(g, ct_mul(g, v.keys, ct_graph_wrap(g, R[3], 3, v.keys->shape))));
            CHECK_OK(ct_backward(g, l2));
            compare_ref(tag, "grad_pixels_value", pix->grad, (size_t)pix->numel, atol, rtol);
        }
    }
    /* DualCoOp's AttentionConv: c_proj(v_proj(x + pos)) of every token */
    ct_graph_reset(g);
    ct_clip_image_out pv = {0};
    emb = ct_clip_encode_image_kind(g, m, pix, NULL, CT_DENSE_POOL_VALUE, &pv);
    CHECK_MSG(emb && pv.dense && !pv.keys, "pool value: %s", ct_last_error());
    if (emb && pv.dense)
        compare_ref(tag, "dense_pool_value", pv.dense->data, (size_t)pv.dense->numel, atol, rtol);
    ct_graph_free(g);
    ct_tensor_free(pix);
done:
    free(px);
    for (int i = 0; i < 4; i++) free(R[i]);
    ct_clip_free(m);
}

static void test_parity_f32(void) { parity(FX "/rn_openai.safetensors", "f32", true, ATOL, RTOL); }

static void test_parity_f16(void) {
    parity(FX "/rn_openai_f16.safetensors", "f16", false, ATOL, RTOL);
}

/* WiSE-FT's private copy: the same outputs; batch norm's running stats are
 * buffers (not in the flat weight vector); gradients reach the copy only. */
static void test_vision_copy(void) {
    ct_clip *m = ct_clip_load(FX "/rn_openai.safetensors", NULL);
    if (!m) return;
    ct_vision_copy vc;
    CHECK_OK(ct_vision_copy_create(m, true, &vc));
    int n_stats = 0, n_vis = 0;
    for (int i = 0; i < ct_clip_num_tensors(m); i++) {
        const char *name;
        ct_clip_tensor_at(m, i, &name);
        if (strncmp(name, "visual.", 7)) continue;
        n_vis++;
        n_stats += strstr(name, ".running_") != NULL;
    }
    CHECK_MSG(vc.n_weights == n_vis - n_stats && n_stats > 0, "copy has %d weights; %d visual "
              "tensors, %d running stats", vc.n_weights, n_vis, n_stats);
    float px[2 * 3 * 64 * 64];
    for (size_t i = 0; i < sizeof px / sizeof *px; i++) px[i] = (float)sin(0.01 * (double)i);
    int64_t shape[4] = {2, 3, 64, 64};
    ct_graph *g = ct_graph_create(0);
    ct_tensor *a = ct_clip_encode_image(g, m, ct_graph_wrap(g, px, 4, shape), NULL, false, NULL);
    ct_tensor *b = ct_clip_encode_image(g, vc.clip, ct_graph_wrap(g, px, 4, shape), NULL, false,
                                        NULL);
    CHECK(a && b);
    if (a && b) {
        CHECK_CLOSE_F("copy vs source", b->data, a->data, 32, 0, 0);
        CHECK_OK(ct_backward(g, ct_sum_all(g, ct_mul(g, b, b))));
        double norm = 0;
        for (int64_t i = 0; i < vc.flat->numel; i++)
            norm += (double)vc.flat->grad[i] * vc.flat->grad[i];
        CHECK_MSG(norm > 0 && isfinite(norm), "copy gradient norm %g", norm);
        for (int i = 0; i < ct_clip_num_tensors(m); i++)
            CHECK(ct_clip_tensor_at(m, i, NULL)->grad == NULL);
    }
    ct_graph_free(g);
    ct_vision_copy_free(&vc);
    ct_clip_free(m);
}

static ct_clip_config rn_config(int l0, int l1, int l2, int l3, int width, int image) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_OPENAI;
    c.vision_resnet_layers[0] = l0, c.vision_resnet_layers[1] = l1;
    c.vision_resnet_layers[2] = l2, c.vision_resnet_layers[3] = l3;
    c.vision_width = width, c.vision_heads = width * 32 / 64, c.patch_size = 32;
    c.image_size = image, c.embed_dim = 1024;
    c.context_length = 77, c.vocab_size = 49408, c.text_width = 512, c.text_layers = 12;
    c.text_heads = 8, c.text_mlp = 2048;
    c.vision_act = c.text_act = CT_QUICK_GELU;
    c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX, c.eot_id = 49407;
    return c;
}

static void test_create(void) {
    /* RN50: OpenAI's ModifiedResNet((3, 4, 6, 3), 1024, 32, 224, 64) has
     * 38,316,896 parameters and 53,248 running-statistic values (counted
     * with torch from clip/model.py) */
    ct_clip_config c = rn_config(3, 4, 6, 3, 64, 224);
    ct_clip *m = ct_clip_create(&c, 1);
    CHECK_MSG(m != NULL, "create RN50: %s", ct_last_error());
    if (m) {
        int64_t vis = 0, stats = 0;
        for (int i = 0; i < ct_clip_num_tensors(m); i++) {
            const char *name;
            ct_tensor *t = ct_clip_tensor_at(m, i, &name);
            if (strncmp(name, "visual.", 7)) continue;
            if (strstr(name, ".running_")) stats += t->numel;
            else vis += t->numel;
        }
        printf("    RN50 visual: %lld weights, %lld running-stat values\n", (long long)vis,
               (long long)stats);
        CHECK(vis == 38316896 && stats == 53248);
        ct_clip_free(m);
    }
    ct_clip_config bad = rn_config(3, 4, 6, 3, 64, 224);
    bad.patch_size = 16;
    CHECK(ct_clip_create(&bad, 1) == NULL);
    bad = rn_config(3, 0, 6, 3, 64, 224);
    CHECK(ct_clip_create(&bad, 1) == NULL);
}

static ct_tensor *noop_hook(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    (void)g, (void)layer, (void)ctx;
    return x;
}

static void test_refusals(void) {
    ct_clip *m = ct_clip_load(FX "/rn_openai.safetensors", NULL);
    if (!m) return;
    ct_status s = ct_clip_need_vit(m, "vpt-deep");
    CHECK(s == CT_ERR_UNSUPPORTED && strstr(ct_last_error(), "vpt-deep needs a ViT image tower") &&
          strstr(ct_last_error(), "ModifiedResNet"));
    float px[3 * 64 * 64] = {0};
    int64_t shape[4] = {1, 3, 64, 64};
    ct_graph *g = ct_graph_create(0);
    ct_clip_hooks h = {0};
    h.vision = noop_hook;
    CHECK(ct_clip_encode_image(g, m, ct_graph_wrap(g, px, 4, shape), &h, false, NULL) == NULL);
    CHECK(strstr(ct_last_error(), "ViT image tower") != NULL);
    ct_graph_free(g);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rn_hf", ct_test_tmpdir());
    CHECK(ct_clip_save_hf(m, dir) == CT_ERR_UNSUPPORTED);
    ct_clip_free(m);
    /* broken towers are errors naming the tensor: one missing, one misshaped */
    ct_safetensors *st = ct_safetensors_open(FX "/rn_openai.safetensors");
    CHECK(st != NULL);
    for (int variant = 0; st && variant < 2; variant++) {
        const char *victim = "visual.layer2.0.downsample.1.running_var";
        int n = ct_safetensors_count(st), k = 0;
        ct_st_entry *e = calloc((size_t)n, sizeof *e);
        int64_t bad_shape[1] = {3};
        for (int i = 0; i < n; i++) {
            const ct_st_tensor *t = ct_safetensors_at(st, i);
            bool hit = !strcmp(t->name, victim);
            if (hit && variant == 0) continue;
            e[k++] = (ct_st_entry){t->name, t->dtype, hit ? 1 : t->ndim,
                                   hit ? bad_shape : t->shape, t->data};
        }
        char path[4300];
        snprintf(path, sizeof path, "%s/rn_broken%d.safetensors", ct_test_tmpdir(), variant);
        CHECK_OK(ct_safetensors_write(path, e, k, NULL, 0));
        ct_clip *b = ct_clip_load(path, NULL);
        CHECK_MSG(!b && strstr(ct_last_error(), victim), "broken %d: %s", variant,
                  b ? "loaded" : ct_last_error());
        ct_clip_free(b);
        free(e);
    }
    ct_safetensors_close(st);
    ct_clip *v = ct_clip_load(TINY_DIR, NULL);
    if (v) {
        CHECK_OK(ct_clip_need_vit(v, "x"));
        ct_clip_free(v);
    }
}

/* ---- every registered method on a tiny random ResNet CLIP ---- */

/* methods that put tokens into the vision transformer (or LoRA on its
 * attention) with their defaults: refused by name on a ResNet */
static const char *const NEEDS_VIT[] = {"vpt-deep", "ivlp", "maple", "clip-lora", "promptsrc",
                                        "upt", "dpt", "mvlpt", "protect-maple",
                                        "denseclip", "must"};

static bool needs_vit(const char *name) {
    for (size_t i = 0; i < sizeof NEEDS_VIT / sizeof *NEEDS_VIT; i++)
        if (!strcmp(NEEDS_VIT[i], name)) return true;
    return false;
}

static bool fm_installed(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &st) == 0;
}

/* {"name": ["a photo of a name.", "a name."], ...} for the class names */
static void write_texts(const char *path, const ct_dataset *d) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("{", f);
    for (int k = 0; k < d->n_classes; k++)
        fprintf(f, "%s\"%s\": [\"a photo of a %s.\", \"a %s.\"]", k ? ", " : "",
                d->classnames[k], d->classnames[k], d->classnames[k]);
    fputs("}\n", f);
    fclose(f);
}

static double main_metric(const ct_run_result *r) {
    return r->segmentation ? r->miou : r->multi_label ? r->map : r->top1;
}

static void test_every_method(void) {
    if (!fm_installed()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    /* layers (1, 1, 1, 1), width 8 (features 256, 4 heads), 64 px (2x2 grid);
     * a small text tower over the real vocabulary size */
    ct_clip_config c = rn_config(1, 1, 1, 1, 8, 64);
    c.embed_dim = 32, c.text_width = 64, c.text_layers = 1, c.text_heads = 1, c.text_mlp = 128;
    ct_bundle b = {0};
    b.clip = ct_clip_create(&c, 7);
    char v[4096], mg[4096];
    snprintf(v, sizeof v, "%s/vocab.json", ct_test_clip_bpe());
    snprintf(mg, sizeof mg, "%s/merges.txt", ct_test_clip_bpe());
    b.tok = ct_tokenizer_load_hf(v, mg);
    ct_preprocess_cfg_openai(&b.pre, c.image_size);
    CHECK_MSG(b.clip && b.tok, "model: %s", ct_last_error());
    /* data: Fashion-MNIST; the scenes (multi-label VOC / COCO captions,
     * segmentation) for the methods of those tasks */
    char scenes[4200], voc[4300], coco[4300], seg[4300], cache[4200], texts[4300], caps[4400];
    snprintf(scenes, sizeof scenes, "%s/rn_scenes", ct_test_tmpdir());
    snprintf(cache, sizeof cache, "%s/rn_cache", ct_test_tmpdir());
    mkdir(cache, 0777);
    ct_scenes_cfg sc = ct_scenes_cfg_default();
    sc.n_train = 24, sc.n_val = 4, sc.n_test = 12, sc.seed = 4;
    CHECK_OK(ct_data_make_scenes(&sc, scenes));
    snprintf(voc, sizeof voc, "voc:%s", scenes);
    snprintf(coco, sizeof coco, "coco:%s", scenes);
    snprintf(seg, sizeof seg, "vocseg:%s", scenes);
    snprintf(caps, sizeof caps, "%s/annotations/captions_train.json", scenes);
    ct_splits fm = {0}, ml = {0}, cc = {0}, sg = {0};
    ct_splits full = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &full));
    /* 100 training images (UPL reads them all as unlabelled), 20 val */
    fm.train = full.train ? ct_dataset_head(full.train, 100) : NULL;
    fm.val = full.val ? ct_dataset_head(full.val, 20) : NULL;
    fm.test = full.test;
    CHECK_OK(ct_data_open(voc, &ml));
    CHECK_OK(ct_data_open(coco, &cc));
    CHECK_OK(ct_data_open(seg, &sg));
    if (!b.clip || !b.tok || !fm.train || !ml.train || !cc.train || !sg.train) goto done;
    snprintf(texts, sizeof texts, "%s/rn_texts.json", ct_test_tmpdir());
    write_texts(texts, fm.train);
    int ran = 0, refused = 0;
    for (int i = 0; i < ct_method_count(); i++) {
        const ct_method *m = ct_method_at(i);
        const ct_splits *sp = &fm;
        const char *spec = "fashion-mnist";
        if (m->predict_patches || m->seg_pixels) sp = &sg, spec = seg;
        else if (!strcmp(m->name, "taidpt")) sp = &cc, spec = coco;
        else if (m->multi_label) sp = &ml, spec = voc;
        /* short: one epoch, few TPT views, the class texts for CuPL / VCD */
        char set[4600] = "";
        if (strstr(m->defaults, "epochs=")) strcat(set, "epochs=1 ");
        if (!strcmp(m->name, "tpt")) strcat(set, "n_views=8 ");
        if (!strcmp(m->name, "calip")) strcat(set, "steps=4 ");
        if (!strcmp(m->name, "svl-adapter")) strcat(set, "ssl_steps=4 unlabelled=64 ");
        if (!strcmp(m->name, "cupl")) snprintf(set, sizeof set, "descriptions=%s", texts);
        if (!strcmp(m->name, "vcd")) snprintf(set, sizeof set, "descriptors=%s", texts);
        if (!strcmp(m->name, "taidpt")) snprintf(set, sizeof set, "epochs=1 captions=%s", caps);
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/rn_%s", ct_test_tmpdir(), m->name);
        ct_run_cfg rc = ct_run_cfg_default();
        rc.model = ct_model_borrow(&b, "(random RN)"), rc.data = sp, rc.data_spec = spec;
        rc.method = m, rc.set = set, rc.shots = m->multi_label || m->predict_patches || m->seg_pixels ? 0 : 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = 12;
        /* ProTeCt trains on the class taxonomy */
        if (m->taxonomy) rc.taxonomy_path = CT_SOURCE_DIR "/data/taxonomies/fashion-mnist.txt";
        ct_run_result res;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ct_status s = ct_run(&rc, &res);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (getenv("RN_TIMES"))
            printf("    %-14s %.2f s\n", m->name,
                   (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        ct_model_free(rc.model);
        if (needs_vit(m->name)) {
            CHECK_MSG(s == CT_ERR_UNSUPPORTED && strstr(ct_last_error(), "needs a ViT image tower"),
                      "%s: expected a refusal, got status %d: %s", m->name, (int)s,
                      s == CT_OK ? "(ran)" : ct_last_error());
            refused++;
            continue;
        }
        CHECK_MSG(s == CT_OK, "%s on a ResNet: %s", m->name, ct_last_error());
        if (s != CT_OK) continue;
        double r = main_metric(&res);
        CHECK_MSG(isfinite(r) && r >= 0 && r <= 1, "%s: metric %g", m->name, r);
        ran++;
    }
    printf("    %d methods ran on the ResNet, %d refused (need a ViT tower)\n", ran, refused);
    CHECK(ran + refused == ct_method_count());
    /* the text-only forms of the refused families work */
    const char *alt[3][2] = {{"clip-lora", "encoder=text iters_per_shot=2"},
                             {"ivlp", "vision_depth=0 text_depth=1 epochs=1"},
                             {"promptsrc", "vision_depth=0 text_depth=1 epochs=1"}};
    for (int k = 0; k < 3; k++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/rn_alt_%s", ct_test_tmpdir(), alt[k][0]);
        ct_run_cfg rc = ct_run_cfg_default();
        rc.model = ct_model_borrow(&b, "(random RN)"), rc.data = &fm;
        rc.data_spec = "fashion-mnist";
        rc.method = ct_method_find(alt[k][0]), rc.set = alt[k][1], rc.shots = 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = 12;
        ct_run_result res;
        ct_status s = ct_run(&rc, &res);
        ct_model_free(rc.model);
        CHECK_MSG(s == CT_OK && isfinite(res.top1), "%s %s on a ResNet: %s", alt[k][0], alt[k][1],
                  s == CT_OK ? "" : ct_last_error());
    }
done:
    ct_dataset_free(fm.train), ct_dataset_free(fm.val);
    ct_splits_free(&full), ct_splits_free(&ml), ct_splits_free(&cc), ct_splits_free(&sg);
    ct_tokenizer_free(b.tok);
    ct_clip_free(b.clip);
}

int main(void) {
    ct_set_num_threads(2);
    RUN(test_config);
    RUN(test_parity_f32);
    RUN(test_parity_f16);
    RUN(test_vision_copy);
    RUN(test_create);
    RUN(test_refusals);
    RUN(test_every_method);
    ct_safetensors_close(g_ref);
    return ct_test_summary();
}
