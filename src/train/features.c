#include "base/file.h"
#include "train/features.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dist.h"
#include "base/error.h"
#include "base/hash.h"
#include "data/pixels.h"
#include "model/bundle.h"


static void item_path(const ct_dataset *d, int64_t i, char *buf, size_t n) {
    const char *p = d->items[i].path;
    if (p[0] == '/' || !d->root || !d->root[0])
        snprintf(buf, n, "%s", p);
    else
        snprintf(buf, n, "%s/%s", d->root, p);
}

/* Identity + content of item i. */
static ct_status item_hash(const ct_dataset *d, int64_t i, uint64_t *h) {
    char key[4096];
    ct_dataset_item_key(d, i, key, sizeof key);
    uint64_t v = ct_hash_str(CT_HASH_INIT, key);
    if (d->items[i].path) {
        char path[4096];
        item_path(d, i, path, sizeof path);
        ct_mmap mm;
        ct_status s = ct_mmap_open(&mm, path);
        if (s != CT_OK) return s;
        v = ct_hash_bytes(v, mm.data, mm.size);
        ct_mmap_close(&mm);
    } else {
        ct_image img;
        ct_status s = ct_dataset_image(d, i, &img);
        if (s != CT_OK) return s;
        v = ct_hash_bytes(v, img.rgb, (size_t)img.w * (size_t)img.h * 3);
        ct_image_free(&img);
    }
    *h = ct_hash_u64(v, (uint64_t)d->items[i].label);
    return CT_OK;
}

static ct_status cache_key(const ct_feature_req *r, uint64_t *key) {
    const ct_dataset *d = r->data;
    uint64_t *hs = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *hs);
    if (!hs) return ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    ct_first_error fe;
    ct_first_error_init(&fe);
    /* with several ranks each hashes its share of the files, then all
     * exchange the hashes */
    int64_t lo = 0, hi = d->n_items;
    if (ct_dist_parallel())
        ct_dist_range(d->n_items, 1, ct_dist_rank(), ct_dist_size(), &lo, &hi);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = lo; i < hi; i++) ct_first_error_note(&fe, i, item_hash(d, i, &hs[i]));
    ct_status st = ct_first_error_raise(&fe);
    if (st == CT_OK) st = ct_dist_allgather_rows(hs, d->n_items, 1, sizeof *hs);
    uint64_t h = ct_hash_u64(ct_clip_hash(r->clip), 0xFEA7);
    h = ct_preprocess_hash(h, r->pre);
    h = ct_hash_u64(h, (uint64_t)r->view);
    h = ct_hash_u64(h, (uint64_t)r->dense);
    /* the tokens kind hashes as before, so existing caches stay valid */
    if (r->dense && r->dense_kind != CT_DENSE_TOKENS)
        h = ct_hash_u64(h, 0xDE45E000ull + (uint64_t)r->dense_kind);
    if (r->raw_pixels) h = ct_hash_u64(h, 0x9126E15ull);
    if (r->view > 0) h = ct_hash_u64(h, r->seed);
    h = ct_hash_bytes(h, hs, (size_t)d->n_items * sizeof *hs);
    free(hs);
    *key = h;
    return st;
}

static ct_status cache_read(const char *path, const ct_dataset *d, int dim, bool dense,
                            ct_dense_kind kind, ct_features *out) {
    ct_safetensors *st = ct_safetensors_open(path);
    if (!st) return CT_ERR_IO;
    const ct_st_tensor *x = ct_safetensors_find(st, "x"), *y = ct_safetensors_find(st, "labels");
    ct_status s = CT_OK;
    if (!x || !y || x->dtype != CT_F32 || x->ndim != 2 || x->shape[0] != d->n_items ||
        x->shape[1] != dim || y->dtype != CT_I64 || y->ndim != 1 || y->shape[0] != d->n_items)
        s = ct_set_error(CT_ERR_FORMAT, "%s: not a feature cache for this dataset", path);
    if (s == CT_OK) {
        out->n = d->n_items, out->dim = dim;
        out->x = malloc((size_t)x->nbytes + 1);
        out->labels = malloc((size_t)d->n_items * sizeof(int) + 1);
        if (!out->x || !out->labels) s = ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    }
    const ct_st_tensor *dn = ct_safetensors_find(st, "dense");
    if (s == CT_OK && dense) {
        if (!dn || dn->dtype != CT_F32 || dn->ndim != 3 || dn->shape[0] != d->n_items ||
            dn->shape[2] != dim)
            s = ct_set_error(CT_ERR_FORMAT, "%s: no dense features for this dataset", path);
        else if (!(out->dense = malloc(dn->nbytes + 1)))
            s = ct_set_error(CT_ERR_NOMEM, "features: out of memory");
        else {
            memcpy(out->dense, dn->data, dn->nbytes);
            out->n_tokens = (int)dn->shape[1];
        }
    }
    const ct_st_tensor *dk = ct_safetensors_find(st, "dense_keys");
    if (s == CT_OK && dense && kind == CT_DENSE_VALUE) {
        if (!dk || dk->dtype != CT_F32 || dk->ndim != 3 || dk->shape[0] != d->n_items ||
            dk->shape[1] != out->n_tokens || dk->shape[2] < 1 || dk->shape[2] > (1 << 20))
            s = ct_set_error(CT_ERR_FORMAT, "%s: no value-path keys for this dataset", path);
        else if (!(out->dense_keys = malloc(dk->nbytes + 1)))
            s = ct_set_error(CT_ERR_NOMEM, "features: out of memory");
        else {
            memcpy(out->dense_keys, dk->data, dk->nbytes);
            out->key_dim = (int)dk->shape[2];
            out->dense_kind = kind;
        }
    }
    if (s == CT_OK) {
        memcpy(out->x, x->data, x->nbytes);
        for (int64_t i = 0; i < d->n_items; i++) {
            int64_t l;
            memcpy(&l, y->data + 8 * i, 8);
            out->labels[i] = (int)l;
        }
    }
    ct_safetensors_close(st);
    return s;
}

static ct_status cache_write(const char *path, const ct_features *f, uint64_t key) {
    int64_t *lab = malloc((size_t)(f->n ? f->n : 1) * sizeof *lab);
    if (!lab) return ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    for (int64_t i = 0; i < f->n; i++) lab[i] = f->labels[i];
    int64_t xs[2] = {f->n, f->dim}, ys[1] = {f->n}, ds[3] = {f->n, f->n_tokens, f->dim},
            ks[3] = {f->n, f->n_tokens, f->key_dim};
    ct_st_entry e[4] = {{"x", CT_F32, 2, xs, f->x}, {"labels", CT_I64, 1, ys, lab},
                        {"dense", CT_F32, 3, ds, f->dense},
                        {"dense_keys", CT_F32, 3, ks, f->dense_keys}};
    char keybuf[32];
    snprintf(keybuf, sizeof keybuf, "%016llx", (unsigned long long)key);
    const char *meta[4] = {"cliptune", "features", "key", keybuf};
    ct_status s = ct_safetensors_write(path, e, f->dense ? (f->dense_keys ? 4 : 3) : 2, meta, 2);
    free(lab);
    return s;
}

/* Values per image: the projected embedding, or the transformed pixels. */
static int feature_dim(const ct_feature_req *r) {
    const ct_clip_config *c = ct_clip_get_config(r->clip);
    return r->raw_pixels ? 3 * c->image_size * c->image_size : c->embed_dim;
}

/* Every rank's share of the rows to every rank: the embeddings and (dense
 * requests) the per-token features and keys, whose sizes rank 0 (never
 * without a share) announces to ranks that had nothing to encode. */
static ct_status gather_shares(const ct_feature_req *r, ct_features *out, int B) {
    int64_t n = r->data->n_items;
    ct_status st = ct_dist_allgather_rows(out->x, n, B, (size_t)out->dim * sizeof(float));
    if (st != CT_OK || !r->dense || n == 0) return st;
    double sz[2] = {0, 0};
    if (ct_dist_rank() == 0) sz[0] = out->n_tokens, sz[1] = out->dense_keys ? out->key_dim : 0;
    if ((st = ct_dist_merge(sz, 2)) != CT_OK) return st;
    int64_t T = (int64_t)sz[0], Wk = (int64_t)sz[1];
    size_t row = (size_t)T * (size_t)out->dim, krow = (size_t)T * (size_t)Wk;
    if (!out->dense) {
        out->n_tokens = (int)T;
        if (!(out->dense = malloc((size_t)n * row * sizeof(float) + 1)))
            return ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    }
    if (Wk > 0 && !out->dense_keys) {
        out->key_dim = (int)Wk, out->dense_kind = r->dense_kind;
        if (!(out->dense_keys = malloc((size_t)n * krow * sizeof(float) + 1)))
            return ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    }
    st = ct_dist_allgather_rows(out->dense, n, B, row * sizeof(float));
    if (st == CT_OK && Wk > 0)
        st = ct_dist_allgather_rows(out->dense_keys, n, B, krow * sizeof(float));
    return st;
}

static ct_status compute(const ct_feature_req *r, ct_features *out) {
    const ct_dataset *d = r->data;
    const ct_clip_config *c = ct_clip_get_config(r->clip);
    int S = c->image_size, B = r->batch > 0 ? r->batch : 32;
    size_t per = (size_t)3 * S * S;
    int dim = feature_dim(r);
    out->n = d->n_items, out->dim = dim;
    out->x = malloc((size_t)(d->n_items ? d->n_items : 1) * (size_t)dim * sizeof(float));
    out->labels = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof(int));
    float *px = malloc((size_t)B * per * sizeof *px);
    ct_graph *g = ct_graph_create(0);
    ct_status st = (out->x && out->labels && px && g) ? CT_OK
                                                     : ct_set_error(CT_ERR_NOMEM, "features: "
                                                                    "out of memory");
    for (int64_t i = 0; i < d->n_items && st == CT_OK; i++) out->labels[i] = d->items[i].label;
    /* view 0: the evaluation transform; view k: CoOp's augmentation, item i
     * drawn from (seed, k, i) */
    ct_augment_cfg aug;
    ct_augment_cfg_coop(&aug, S);
    ct_pixel_src src = {d, r->pre, S, r->view > 0 ? &aug : NULL, r->seed, "features", NULL};
    /* several ranks: each encodes its share, whole batches of B from the
     * same offsets as one process, so every row has the same bits; then
     * the ranks exchange their rows */
    int64_t lo = 0, hi = d->n_items;
    bool shared = ct_dist_parallel();
    if (shared) ct_dist_range(d->n_items, B, ct_dist_rank(), ct_dist_size(), &lo, &hi);
    for (int64_t i0 = lo; i0 < hi && st == CT_OK; i0 += B) {
        int64_t nb = hi - i0 < B ? hi - i0 : B;
        if ((st = ct_pixels_range(&src, i0, nb, (uint64_t)r->view, px)) != CT_OK) break;
        if (r->raw_pixels) {
            memcpy(out->x + i0 * dim, px, (size_t)nb * per * sizeof(float));
            if (r->progress) r->progress(r->progress_ctx, i0 + nb - lo, hi - lo);
            continue;
        }
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        int64_t shape[4] = {nb, 3, S, S};
        ct_clip_image_out io = {0};
        ct_tensor *pxt = ct_graph_wrap(g, px, 4, shape);
        ct_tensor *e = r->dense ? ct_clip_encode_image_kind(g, r->clip, pxt, NULL, r->dense_kind,
                                                            &io)
                                : ct_clip_encode_image(g, r->clip, pxt, NULL, false, &io);
        if (!e) {
            st = ct_graph_status(g);
            break;
        }
        memcpy(out->x + i0 * c->embed_dim, e->data, (size_t)e->numel * sizeof(float));
        if (r->dense) {
            int64_t T = io.dense->shape[1];
            if (!out->dense) {
                out->n_tokens = (int)T;
                out->dense = malloc((size_t)d->n_items * (size_t)T * (size_t)c->embed_dim *
                                        sizeof(float) + 1);
                if (!out->dense) {
                    st = ct_set_error(CT_ERR_NOMEM, "features: out of memory");
                    break;
                }
            }
            memcpy(out->dense + i0 * T * c->embed_dim, io.dense->data,
                   (size_t)io.dense->numel * sizeof(float));
            if (io.keys) {
                int64_t Wk = io.keys->shape[2];
                if (!out->dense_keys) {
                    out->key_dim = (int)Wk;
                    out->dense_kind = r->dense_kind;
                    out->dense_keys = malloc((size_t)d->n_items * (size_t)T * (size_t)Wk *
                                                 sizeof(float) + 1);
                    if (!out->dense_keys) {
                        st = ct_set_error(CT_ERR_NOMEM, "features: out of memory");
                        break;
                    }
                }
                memcpy(out->dense_keys + i0 * T * Wk, io.keys->data,
                       (size_t)io.keys->numel * sizeof(float));
            }
        }
        if (r->progress) r->progress(r->progress_ctx, i0 + nb - lo, hi - lo);
    }
    ct_graph_free(g);
    free(px);
    if (st == CT_OK && shared) st = gather_shares(r, out, B);
    return st;
}

/* Multi-label targets are the dataset's, not the cache's: the same images
 * may carry other (partial) labels. */
static ct_status copy_targets(const ct_dataset *d, ct_features *out) {
    if (!d->targets) return CT_OK;
    size_t m = (size_t)d->n_items * (size_t)d->n_classes;
    if (!(out->targets = malloc(m ? m : 1)))
        return ct_set_error(CT_ERR_NOMEM, "features: out of memory");
    memcpy(out->targets, d->targets, m);
    return CT_OK;
}

ct_status ct_features_get(const ct_feature_req *r, ct_features *out) {
    memset(out, 0, sizeof *out);
    if (!r || !r->clip || !r->pre || !r->data)
        return ct_set_error(CT_ERR_ARG, "ct_features_get: missing model, preprocessing or data");
    char path[4096] = "";
    uint64_t key = 0;
    int dim = feature_dim(r);
    if (r->dense && r->dense_kind != CT_DENSE_TOKENS && r->dense_kind != CT_DENSE_VALUE &&
        r->dense_kind != CT_DENSE_POOL_VALUE)
        return ct_set_error(CT_ERR_ARG, "ct_features_get: unknown dense feature kind %d",
                            (int)r->dense_kind);
    if (r->dense && r->raw_pixels)
        return ct_set_error(CT_ERR_ARG, "ct_features_get: raw pixels have no dense features");
    if (r->cache_dir) {
        ct_status s = cache_key(r, &key);
        if (s != CT_OK) return s;
        snprintf(path, sizeof path, "%s/features-%016llx.safetensors", r->cache_dir,
                 (unsigned long long)key);
        FILE *f = fopen(path, "rb");
        bool hit = false;
        if (f) {
            fclose(f);
            hit = cache_read(path, r->data, dim, r->dense, r->dense_kind, out) == CT_OK &&
                  copy_targets(r->data, out) == CT_OK;
        }
        /* several ranks compute together, so they agree first: the entry is
         * used only where every rank could read it */
        if ((s = ct_dist_all(&hit)) != CT_OK) {
            ct_features_free(out);
            return s;
        }
        if (hit) {
            if (r->progress) r->progress(r->progress_ctx, out->n, out->n);
            return CT_OK;
        }
        ct_features_free(out); /* missing or unreadable entry: compute and replace */
        ct_clear_error();
    }
    ct_status s = compute(r, out);
    /* one writer: rank 0 (the others hold the same rows) */
    if (s == CT_OK && r->cache_dir && (!ct_dist_parallel() || ct_dist_rank() == 0))
        s = cache_write(path, out, key);
    if (s == CT_OK) s = copy_targets(r->data, out);
    if (s != CT_OK) ct_features_free(out);
    return s;
}

void ct_features_free(ct_features *f) {
    if (!f) return;
    free(f->x);
    free(f->labels);
    free(f->dense);
    free(f->dense_keys);
    free(f->targets);
    memset(f, 0, sizeof *f);
}
