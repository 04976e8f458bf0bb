/* Segmentation runs' shared core (segment.h) and the public geometry and
 * upsampling helpers (cliptune.h). */
#include "api/segment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "data/pixels.h"
#include "data/png_write.h"

void ct_seg_preprocess(const ct_preprocess_cfg *pre, int size, ct_preprocess_cfg *out) {
    *out = *pre;
    out->resize_short = 0;
    out->resize_h = out->resize_w = size;
    out->crop_h = out->crop_w = 0;
}

/* torch's upsample_bilinear2d source indices and weights along one axis
 * (aten/src/ATen/native/UpSample.h area_pixel_compute_source_index with
 * align_corners false, in float as the CPU kernel computes them) */
typedef struct {
    int i0, i1;
    float l0, l1;
} lin_w;

static void axis_weights(int in, int out, lin_w *w) {
    float scale = (float)in / (float)out;
    for (int d = 0; d < out; d++) {
        float src = scale * ((float)d + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        int i0 = (int)src;
        if (i0 > in - 1) i0 = in - 1;
        float l1 = src - (float)i0;
        l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
        w[d].i0 = i0;
        w[d].i1 = i0 < in - 1 ? i0 + 1 : i0;
        w[d].l1 = l1;
        w[d].l0 = 1.0f - l1;
    }
}

static ct_status upsample_args(const float *scores, int gh, int gw, int K, int H, int W,
                               const void *out, const char *fn) {
    if (!scores || !out || gh < 1 || gw < 1 || K < 1 || H < 1 || W < 1)
        return ct_set_error(CT_ERR_ARG, "%s: need scores, an output and positive sizes (grid "
                            "%dx%d, %d classes, %dx%d)", fn, gh, gw, K, H, W);
    return CT_OK;
}

/* row y of the upsampled scores, (W, K), into row */
static void upsample_row(const float *sc, int gw, int K, int W, const lin_w *wy, const lin_w *wx,
                         float *row) {
    const float *r0 = sc + (size_t)wy->i0 * (size_t)gw * (size_t)K;
    const float *r1 = sc + (size_t)wy->i1 * (size_t)gw * (size_t)K;
    for (int x = 0; x < W; x++) {
        const lin_w *w = wx + x;
        const float *a = r0 + (size_t)w->i0 * K, *b = r0 + (size_t)w->i1 * K;
        const float *c = r1 + (size_t)w->i0 * K, *d = r1 + (size_t)w->i1 * K;
        float *o = row + (size_t)x * K;
        for (int k = 0; k < K; k++)
            o[k] = wy->l0 * (w->l0 * a[k] + w->l1 * b[k]) + wy->l1 * (w->l0 * c[k] + w->l1 * d[k]);
    }
}

static ct_status upsample(const float *scores, int gh, int gw, int K, int H, int W, float *out,
                          uint8_t *pred) {
    lin_w *wy = malloc((size_t)H * sizeof *wy), *wx = malloc((size_t)W * sizeof *wx);
    float *row = pred ? malloc((size_t)W * (size_t)K * sizeof *row) : NULL;
    if (!wy || !wx || (pred && !row)) {
        free(wy), free(wx), free(row);
        return ct_set_error(CT_ERR_NOMEM, "segmentation: out of memory upsampling to %dx%d", H,
                            W);
    }
    axis_weights(gh, H, wy);
    axis_weights(gw, W, wx);
    for (int y = 0; y < H; y++) {
        float *r = pred ? row : out + (size_t)y * (size_t)W * (size_t)K;
        upsample_row(scores, gw, K, W, wy + y, wx, r);
        if (!pred) continue;
        for (int x = 0; x < W; x++) {
            const float *p = r + (size_t)x * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (p[k] > p[best]) best = k;
            pred[(size_t)y * (size_t)W + (size_t)x] = (uint8_t)best;
        }
    }
    free(wy), free(wx), free(row);
    return CT_OK;
}

ct_status ct_seg_upsample(const float *scores, int gh, int gw, int K, int H, int W, float *out) {
    ct_status s = upsample_args(scores, gh, gw, K, H, W, out, "ct_seg_upsample");
    return s != CT_OK ? s : upsample(scores, gh, gw, K, H, W, out, NULL);
}

ct_status ct_seg_upsample_argmax(const float *scores, int gh, int gw, int K, int H, int W,
                                 uint8_t *pred) {
    ct_status s = upsample_args(scores, gh, gw, K, H, W, pred, "ct_seg_upsample_argmax");
    if (s == CT_OK && K > 256)
        s = ct_set_error(CT_ERR_ARG, "ct_seg_upsample_argmax: %d classes (8-bit maps: at most "
                         "256)", K);
    return s != CT_OK ? s : upsample(scores, gh, gw, K, H, W, NULL, pred);
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **nm, int64_t n) {
    for (int64_t i = 0; nm && i < n; i++) free(nm[i]);
    free(nm);
}

/* predictions/<name>.png for every item: the image's base name with .png,
 * or (when two base names collide) its whole key with '/' as '_' */
static char **prediction_names(const ct_dataset *d) {
    int64_t n = d->n_items;
    char **nm = calloc((size_t)(n ? n : 1), sizeof *nm);
    char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!nm || !sorted) goto fail;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            char key[4096];
            const char *k = ct_dataset_item_key(d, i, key, sizeof key);
            if (!k) goto fail;
            const char *slash = strrchr(k, '/');
            const char *base = pass == 0 && slash ? slash + 1 : k;
            size_t len = strlen(base);
            const char *dot = strrchr(base, '.');
            if (dot && dot > base && !strchr(dot, '/')) len = (size_t)(dot - base);
            free(nm[i]);
            if (!(nm[i] = malloc(len + 5))) goto fail;
            for (size_t j = 0; j < len; j++) {
                char c = base[j];
                nm[i][j] = (c == '/' || c == '#' || c == '\\' || c == ':') ? '_' : c;
            }
            memcpy(nm[i] + len, ".png", 5);
        }
        memcpy(sorted, nm, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
        bool dup = false;
        for (int64_t i = 1; i < n && !dup; i++) dup = !strcmp(sorted[i - 1], sorted[i]);
        if (!dup || pass == 1) {
            free(sorted);
            return nm;
        }
    }
fail:
    free(sorted);
    free_names(nm, n);
    ct_set_error(CT_ERR_NOMEM, "segmentation: cannot name the predictions of %s", d->name);
    return NULL;
}

/* the first images, their predictions and label maps, for overlays.png */
typedef struct {
    ct_image img;
    uint8_t *pred, *gt;
    int w, h;
} overlay;

#define OVERLAY_H 128
#define OVERLAY_GAP 4

static ct_status write_overlays(const char *path, overlay *ov, int n) {
    uint8_t pal[768];
    ct_voc_palette(pal);
    int pw[CT_SEG_OVERLAYS], W = 0, H = 0;
    for (int i = 0; i < n; i++) {
        long w = lround((double)ov[i].w * OVERLAY_H / ov[i].h);
        pw[i] = w < 1 ? 1 : w > 1024 ? 1024 : (int)w;
        int rw = 3 * pw[i] + 2 * OVERLAY_GAP;
        W = rw > W ? rw : W;
        H += OVERLAY_H + (i ? OVERLAY_GAP : 0);
    }
    uint8_t *c = malloc((size_t)W * (size_t)H * 3);
    if (!c) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    memset(c, 255, (size_t)W * (size_t)H * 3);
    for (int i = 0, y0 = 0; i < n; y0 += OVERLAY_H + OVERLAY_GAP, i++) {
        const overlay *o = ov + i;
        for (int y = 0; y < OVERLAY_H; y++) {
            int sy = (int)((int64_t)y * o->h / OVERLAY_H);
            for (int x = 0; x < pw[i]; x++) {
                int sx = (int)((int64_t)x * o->w / pw[i]);
                size_t si = (size_t)sy * (size_t)o->w + (size_t)sx;
                const uint8_t *im = o->img.rgb + 3 * si;
                const uint8_t *pc = pal + 3 * o->pred[si], *gc = pal + 3 * o->gt[si];
                uint8_t *row = c + ((size_t)(y0 + y) * (size_t)W) * 3;
                for (int ch = 0; ch < 3; ch++) {
                    row[3 * x + ch] = im[ch];
                    row[3 * (pw[i] + OVERLAY_GAP + x) + ch] = (uint8_t)((im[ch] + pc[ch] + 1) / 2);
                    row[3 * (2 * pw[i] + 2 * OVERLAY_GAP + x) + ch] = gc[ch];
                }
            }
        }
    }
    ct_status s = ct_png_write_rgb(path, c, W, H);
    free(c);
    return s;
}

static ct_status seg_label(const ct_method *m, void *state, const ct_dataset *d,
                           const ct_features *f, const ct_seg_model *sm, int K,
                           const char *out_dir, const char *sub, ct_seg_metrics *out,
                           int64_t *class_pixels);

static bool finite_all(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

ct_status ct_seg_evaluate(const ct_method *m, void *state, const ct_dataset *d,
                          const ct_features *f, const ct_seg_model *sm, int K,
                          const char *out_dir, ct_seg_metrics *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!out)
        return ct_set_error(CT_ERR_ARG, "segmentation: NULL metrics");
    if (d && !d->masks)
        return ct_set_error(CT_ERR_ARG, "segmentation: %s has no label maps", d->name);
    return seg_label(m, state, d, f, sm, K, out_dir, "predictions", out, NULL);
}

ct_status ct_seg_label(const ct_method *m, void *state, const ct_dataset *d,
                       const ct_features *f, const ct_seg_model *sm, int K, const char *out_dir,
                       int64_t *class_pixels) {
    if (!out_dir)
        return ct_set_error(CT_ERR_ARG, "segmentation: no output folder for the label maps");
    return seg_label(m, state, d, f, sm, K, out_dir, NULL, NULL, class_pixels);
}

/* Where a chunk's scores come from: predict_patches on features (the ViT's
 * patch grid), or, for methods that label pixels from images
 * (seg_pixels), their logits (nb, K, gh, gw) on the images under the
 * segmentation geometry, transposed to (nb, gh, gw, K). */
enum { CHUNK = 16 };

typedef struct chunk_src {
    const ct_method *m;
    void *state;
    const ct_features *f; /* predict_patches                               */
    ct_pixel_src px;      /* seg_pixels: the images                        */
    ct_graph *g;
    float *pix;           /* (CHUNK, 3, S, S)                              */
    int gh, gw;           /* the score grid                                */
} chunk_src;

static ct_status chunk_scores(chunk_src *cs, int64_t i0, int64_t nb, int K, float *sc) {
    if (!cs->m->seg_pixels) {
        const ct_features *f = cs->f;
        int T = f->n_tokens;
        ct_features v = *f;
        v.n = nb;
        v.x = f->x ? f->x + i0 * f->dim : NULL;
        v.labels = f->labels ? f->labels + i0 : NULL;
        v.targets = NULL;
        v.dense = f->dense + i0 * T * f->dim;
        v.dense_keys = f->dense_keys ? f->dense_keys + i0 * T * f->key_dim : NULL;
        return cs->m->predict_patches(cs->state, &v, sc);
    }
    ct_status s = ct_pixels_range(&cs->px, i0, nb, 0, cs->pix);
    if (s != CT_OK) return s;
    ct_graph_reset(cs->g);
    ct_graph_set_grad(cs->g, false);
    ct_batch b = {.n = nb, .pixels = cs->pix, .epoch = -1};
    ct_tensor *lg = cs->m->logits(cs->state, cs->g, &b);
    if (!lg)
        return ct_graph_status(cs->g) != CT_OK ? ct_graph_status(cs->g)
                                               : ct_set_error(CT_ERR_STATE, "segmentation: %s "
                                                              "gave no scores", cs->m->name);
    if (lg->ndim != 4 || lg->shape[0] != nb || lg->shape[1] != K ||
        (cs->gh && (lg->shape[2] != cs->gh || lg->shape[3] != cs->gw)))
        return ct_set_error(CT_ERR_STATE, "segmentation: %s gave scores that are not (%lld, %d, "
                            "H, W) on one grid", cs->m->name, (long long)nb, K);
    int64_t gh = lg->shape[2], gw = lg->shape[3], G = gh * gw;
    for (int64_t j = 0; j < nb; j++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t q = 0; q < G; q++)
                sc[(j * G + q) * K + k] = lg->data[(j * K + k) * G + q];
    return CT_OK;
}

/* out_dir/sub (sub NULL: out_dir itself) gets the label maps; with out,
 * d's label maps score them and out_dir gets overlays.png; class_pixels
 * (d->n_items, K) counts each image's predicted pixels per class */
static ct_status label_chunks(chunk_src *cs, const ct_dataset *d, int K, const char *out_dir,
                              const char *sub, ct_seg_metrics *out, int64_t *class_pixels) {
    int64_t n = d->n_items, P = (int64_t)cs->gh * cs->gw;
    int64_t *conf = calloc((size_t)(K + 1) * (size_t)K, sizeof *conf);
    float *sc = malloc((size_t)CHUNK * (size_t)P * (size_t)K * sizeof *sc);
    overlay ov[CT_SEG_OVERLAYS];
    memset(ov, 0, sizeof ov);
    int n_ov = 0;
    char **names = NULL;
    char dir[4200];
    ct_status s = conf && sc ? CT_OK : ct_set_error(CT_ERR_NOMEM, "segmentation: out of memory");
    if (s == CT_OK && out_dir) {
        if (sub) snprintf(dir, sizeof dir, "%s/%s", out_dir, sub);
        else snprintf(dir, sizeof dir, "%s", out_dir);
        s = ct_mkdir_p(dir);
        if (s == CT_OK && !(names = prediction_names(d))) s = CT_ERR_NOMEM;
    }
    int g = cs->gh, gw = cs->gw;
    for (int64_t i0 = 0; s == CT_OK && i0 < n; i0 += CHUNK) {
        int64_t nb = n - i0 < CHUNK ? n - i0 : CHUNK;
        if ((s = chunk_scores(cs, i0, nb, K, sc)) != CT_OK) break;
        if (!finite_all(sc, (size_t)nb * (size_t)P * (size_t)K)) {
            s = ct_set_error(CT_ERR_STATE, "segmentation: %s gave non-finite scores for images "
                             "%lld..%lld of %s", cs->m->name, (long long)i0,
                             (long long)(i0 + nb - 1), d->name);
            break;
        }
        for (int64_t j = 0; j < nb && s == CT_OK; j++) {
            int64_t i = i0 + j;
            int w = 0, h = 0;
            uint8_t *gt = NULL, *pred = NULL;
            ct_image img = {0};
            if (out) {
                /* as metrics must read it: reduce_zero_label, the size checked
                 * against the image, values in range */
                s = ct_label_map_load_for(d, i, 0, 0, &w, &h, &gt);
            } else if ((s = ct_dataset_image(d, i, &img)) == CT_OK) {
                w = img.w, h = img.h;
                ct_image_free(&img);
            }
            if (s == CT_OK && !(pred = malloc((size_t)w * (size_t)h)))
                s = ct_set_error(CT_ERR_NOMEM, "segmentation: out of memory");
            if (s == CT_OK)
                s = ct_seg_upsample_argmax(sc + (size_t)j * (size_t)P * (size_t)K, g, gw, K, h, w,
                                           pred);
            if (s == CT_OK && out)
                s = ct_seg_confusion_add(conf, K, pred, gt, (int64_t)w * h, CT_SEG_IGNORE_DEFAULT);
            if (s == CT_OK && class_pixels) {
                int64_t *cp = class_pixels + i * K;
                memset(cp, 0, (size_t)K * sizeof *cp);
                for (int64_t q = 0; q < (int64_t)w * h; q++) cp[pred[q]]++;
            }
            if (s == CT_OK && names) {
                char path[8400];
                snprintf(path, sizeof path, "%s/%s", dir, names[i]);
                s = ct_png_write_palette(path, pred, w, h);
            }
            if (s == CT_OK && out && out_dir && n_ov < CT_SEG_OVERLAYS) {
                overlay *o = ov + n_ov;
                /* (ct_label_map_load_for checked the map's size against it) */
                s = ct_dataset_image(d, i, &o->img);
                if (s == CT_OK) {
                    o->pred = pred, o->gt = gt, o->w = w, o->h = h;
                    pred = gt = NULL;
                }
                n_ov++;
            }
            free(gt), free(pred);
        }
    }
    if (s == CT_OK && out) s = ct_seg_metrics_compute(conf, K, out);
    if (s == CT_OK && out_dir && n_ov) {
        char path[4300];
        snprintf(path, sizeof path, "%s/overlays.png", out_dir);
        s = write_overlays(path, ov, n_ov);
    }
    for (int i = 0; i < n_ov; i++) ct_image_free(&ov[i].img), free(ov[i].pred), free(ov[i].gt);
    free_names(names, d->n_items);
    free(conf), free(sc);
    if (s != CT_OK && out) ct_seg_metrics_free(out);
    return s;
}

static ct_status seg_label(const ct_method *m, void *state, const ct_dataset *d,
                           const ct_features *f, const ct_seg_model *sm, int K,
                           const char *out_dir, const char *sub, ct_seg_metrics *out,
                           int64_t *class_pixels) {
    if (!m || !d || (!f && !m->seg_pixels))
        return ct_set_error(CT_ERR_ARG, "segmentation: NULL method, dataset or features");
    if (!m->predict_patches && !m->seg_pixels)
        return ct_set_error(CT_ERR_UNSUPPORTED, "segmentation: %s does not label pixels",
                            m->name);
    if (K < 1 || K > 256)
        return ct_set_error(CT_ERR_ARG, "segmentation: %d classes (8-bit label maps: 1 to 256)",
                            K);
    chunk_src cs = {.m = m, .state = state, .f = f};
    if (!m->seg_pixels) {
        if (f->n != d->n_items || !f->dense || f->n_tokens < 2)
            return ct_set_error(CT_ERR_ARG, "segmentation: the features of %s (%lld images) "
                                "have no per-token features for its %lld images", d->name,
                                (long long)f->n, (long long)d->n_items);
        int P = f->n_tokens - 1, g = (int)lround(sqrt((double)P));
        if (g * g != P)
            return ct_set_error(CT_ERR_UNSUPPORTED, "segmentation: %d patch tokens are not a "
                                "square grid", P);
        cs.gh = cs.gw = g;
        return label_chunks(&cs, d, K, out_dir, sub, out, class_pixels);
    }
    if (!sm || !sm->clip || !sm->pre)
        return ct_set_error(CT_ERR_ARG, "segmentation: %s labels images and needs the model",
                            m->name);
    /* the score grid from the first image */
    int S = ct_clip_get_config(sm->clip)->image_size;
    ct_preprocess_cfg pre;
    ct_seg_preprocess(sm->pre, S, &pre);
    cs.px = (ct_pixel_src){d, &pre, S, NULL, 0, m->name, NULL};
    cs.g = ct_graph_create(0);
    cs.pix = malloc((size_t)CHUNK * 3 * (size_t)S * (size_t)S * sizeof *cs.pix);
    ct_status s = cs.g && cs.pix ? CT_OK
                                 : ct_set_error(CT_ERR_NOMEM, "segmentation: out of memory");
    if (s == CT_OK && d->n_items > 0) {
        cs.gh = 0;
        ct_batch b = {.n = 1, .pixels = cs.pix, .epoch = -1};
        s = ct_pixels_range(&cs.px, 0, 1, 0, cs.pix);
        ct_graph_reset(cs.g);
        ct_graph_set_grad(cs.g, false);
        ct_tensor *lg = s == CT_OK ? m->logits(state, cs.g, &b) : NULL;
        if (s == CT_OK && (!lg || lg->ndim != 4))
            s = lg ? ct_set_error(CT_ERR_STATE, "segmentation: %s gave no (1, K, H, W) scores",
                                  m->name)
                   : ct_graph_status(cs.g) != CT_OK ? ct_graph_status(cs.g) : CT_ERR_STATE;
        if (s == CT_OK) cs.gh = (int)lg->shape[2], cs.gw = (int)lg->shape[3];
    }
    if (s == CT_OK) s = label_chunks(&cs, d, K, out_dir, sub, out, class_pixels);
    free(cs.pix);
    ct_graph_free(cs.g);
    return s;
}
