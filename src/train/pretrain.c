/* CLIP contrastive pretraining (see pretrain.h). Followed: the CLIP paper's
 * Figure 3 pseudo-code and section 2.5, and open_clip's training loop
 * (src/training/train.py: per-step cosine_lr with linear warmup, the
 * exclude-from-weight-decay rule of src/training/main.py, the logit_scale
 * clamp after each step; src/open_clip/loss.py ClipLoss). */
#include "base/safetensors.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "base/file.h"
#include "base/hash.h"
#include "base/json.h"
#include "data/captions.h"
#include "data/pixels.h"
#include "model/clip.h"
#include "report/svg.h"
#include "train/clip_trainer.h"

#define CURVE_COLS 7 /* step, epoch, loss, lr, scale, i2t_r1, t2i_r1 */

void ct_pretrain_cfg_default(ct_pretrain_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 10, cfg->batch_size = 256;
    cfg->lr = 1e-3, cfg->min_lr = 0, cfg->weight_decay = 0.2;
    cfg->beta1 = 0.9, cfg->beta2 = 0.98, cfg->eps = 1e-6;
    cfg->warmup_steps = 200;
    cfg->heldout_frac = 0.05;
    cfg->checkpoint_every = 200;
    cfg->seed = 1;
}

static void logf_(const ct_pretrain_cfg *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const ct_pretrain_cfg *cfg, const char *fmt, ...) {
    if (!cfg->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cfg->log(cfg->log_ctx, line);
}

static uint64_t config_hash(const ct_pretrain_cfg *cfg, int64_t n_train, int64_t n_caps) {
    uint64_t h = CT_HASH_INIT;
    char buf[512];
    const ct_clip_config *a = &cfg->arch;
    snprintf(buf, sizeof buf,
             "%d %d %d %d %d %d | %d %d %d %d %d %d | %d %d %d | %d %d %.17g %.17g %.17g %.17g "
             "%.17g %.17g %lld %.17g %.17g %llu %lld %lld",
             a->image_size, a->patch_size, a->vision_width, a->vision_layers, a->vision_heads,
             a->vision_mlp, a->context_length, a->vocab_size, a->text_width, a->text_layers,
             a->text_heads, a->text_mlp, a->embed_dim, (int)a->vision_act, (int)a->text_act,
             cfg->epochs, cfg->batch_size, cfg->lr, cfg->min_lr, cfg->weight_decay, cfg->beta1,
             cfg->beta2, cfg->eps, (long long)cfg->warmup_steps, cfg->max_grad_norm,
             cfg->heldout_frac, (unsigned long long)cfg->seed, (long long)n_train,
             (long long)n_caps);
    h = ct_hash_str(h, buf);
    const ct_pretrain_aug_cfg *g = &cfg->aug;
    snprintf(buf, sizeof buf, "%.17g %.17g %.17g %.17g %d %g %g %g %g %d %d %g %g %d %g %d %d %d",
             g->scale_min, g->scale_max, g->ratio_min, g->ratio_max, (int)g->resample, g->flip_p,
             g->silhouette_p, g->background_p, g->downscale_p, g->downscale_min,
             g->downscale_max, g->grey_p, g->invert_p, g->bg_tolerance, g->border_frac,
             g->matte[0], g->matte[1], g->matte[2]);
    return ct_hash_str(h, buf);
}

/* ---- images and captions in memory ---- */

typedef struct pt_data {
    ct_caption_set set;
    ct_image *img;   /* decoded once */
    uint8_t **alpha; /* per image: its alpha plane or NULL */
    int64_t *ids;    /* (n_captions, T) tokenized */
} pt_data;

static void pt_data_free(pt_data *d) {
    for (int64_t i = 0; d->img && i < d->set.n_images; i++) ct_image_free(&d->img[i]);
    for (int64_t i = 0; d->alpha && i < d->set.n_images; i++) free(d->alpha[i]);
    free(d->img), free(d->alpha);
    free(d->ids);
    ct_captions_free(&d->set);
    memset(d, 0, sizeof *d);
}

static ct_status pt_data_load(pt_data *d, const ct_tokenizer *tok, int T,
                              const ct_pretrain_cfg *cfg, const char *what) {
    int64_t n = d->set.n_images, nc = d->set.cap_off[n];
    d->img = calloc((size_t)(n ? n : 1), sizeof *d->img);
    d->alpha = calloc((size_t)(n ? n : 1), sizeof *d->alpha);
    d->ids = malloc((size_t)(nc ? nc : 1) * (size_t)T * sizeof *d->ids);
    if (!d->img || !d->alpha || !d->ids) return ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
    for (int64_t i = 0; i < n; i++) {
        ct_status s = ct_image_load_alpha(d->set.paths[i], &d->img[i], &d->alpha[i]);
        if (s != CT_OK) return s;
        if (cfg->progress && (i % 256 == 255 || i + 1 == n))
            cfg->progress(cfg->progress_ctx, what, i + 1, n, NAN, NAN);
    }
    for (int64_t c = 0; c < nc; c++) {
        ct_status s = ct_tokenizer_tokenize(tok, d->set.captions[c], T, true, d->ids + c * T);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

/* ---- held-out retrieval ---- */

static int64_t rank_of(const float *row, int64_t n, int64_t target) {
    int64_t r = 0;
    for (int64_t j = 0; j < n; j++)
        if (row[j] > row[target] || (row[j] == row[target] && j < target)) r++;
    return r;
}

ct_status ct_retrieval_eval(const ct_clip *m, const ct_tokenizer *tok, const ct_image *images,
                            int64_t n_images, const int64_t *cap_off, char *const *captions,
                            ct_retrieval *out) {
    memset(out, 0, sizeof *out);
    const ct_clip_config *a = ct_clip_get_config(m);
    int S = a->image_size, T = a->context_length, E = a->embed_dim;
    int64_t nc = cap_off[n_images];
    out->n_images = n_images, out->n_captions = nc;
    if (n_images == 0 || nc == 0) return CT_OK;
    ct_preprocess_cfg pre;
    ct_preprocess_cfg_openai(&pre, S);
    float *ie = malloc((size_t)n_images * E * sizeof *ie);
    float *te = malloc((size_t)nc * E * sizeof *te);
    float *sim = malloc((size_t)(n_images > nc ? n_images : nc) * sizeof *sim);
    const int64_t BS = 128;
    float *pix = malloc((size_t)BS * 3 * S * S * sizeof *pix);
    int64_t *ids = malloc((size_t)BS * T * sizeof *ids);
    int64_t *owner = malloc((size_t)nc * sizeof *owner);
    ct_graph *g = ct_graph_create(0);
    ct_status s = CT_OK;
    if (!ie || !te || !sim || !pix || !ids || !owner || !g) {
        s = ct_set_error(CT_ERR_NOMEM, "retrieval: out of memory");
        goto out;
    }
    ct_graph_set_grad(g, false);
    for (int64_t i0 = 0; i0 < n_images && s == CT_OK; i0 += BS) {
        int64_t b = n_images - i0 < BS ? n_images - i0 : BS;
        ct_pixel_src src = {NULL, &pre, S, NULL, 0, "retrieval", NULL};
        for (int64_t j = 0; j < b && s == CT_OK; j++)
            s = ct_pixels_from_image(&src, &images[i0 + j], i0 + j, 0, pix + j * 3 * S * S);
        if (s != CT_OK) break;
        ct_graph_reset(g);
        int64_t shp[4] = {b, 3, S, S};
        ct_tensor *e = ct_clip_encode_image(g, m, ct_graph_wrap(g, pix, 4, shp), NULL, false, NULL);
        e = ct_l2_normalize(g, e, 1e-12f);
        if (!e) {
            s = ct_graph_status(g);
            break;
        }
        memcpy(ie + i0 * E, e->data, (size_t)b * E * sizeof(float));
    }
    for (int64_t i = 0; i < n_images; i++)
        for (int64_t c = cap_off[i]; c < cap_off[i + 1]; c++) owner[c] = i;
    for (int64_t c0 = 0; c0 < nc && s == CT_OK; c0 += BS) {
        int64_t b = nc - c0 < BS ? nc - c0 : BS;
        for (int64_t j = 0; j < b && s == CT_OK; j++)
            s = ct_tokenizer_tokenize(tok, captions[c0 + j], T, true, ids + j * T);
        if (s != CT_OK) break;
        ct_graph_reset(g);
        ct_tensor *e = ct_l2_normalize(g, ct_clip_encode_text(g, m, ids, b, T, NULL), 1e-12f);
        if (!e) {
            s = ct_graph_status(g);
            break;
        }
        memcpy(te + c0 * E, e->data, (size_t)b * E * sizeof(float));
    }
    if (s != CT_OK) goto out;
    int64_t i1 = 0, i5 = 0, t1 = 0, t5 = 0;
    for (int64_t i = 0; i < n_images; i++) {
        for (int64_t c = 0; c < nc; c++) {
            double d = 0;
            for (int k = 0; k < E; k++) d += (double)ie[i * E + k] * te[c * E + k];
            sim[c] = (float)d;
        }
        int64_t best = nc; /* best rank among the image's own captions */
        for (int64_t c = cap_off[i]; c < cap_off[i + 1]; c++) {
            int64_t r = rank_of(sim, nc, c);
            best = r < best ? r : best;
        }
        i1 += best < 1, i5 += best < 5;
    }
    for (int64_t c = 0; c < nc; c++) {
        for (int64_t i = 0; i < n_images; i++) {
            double d = 0;
            for (int k = 0; k < E; k++) d += (double)ie[i * E + k] * te[c * E + k];
            sim[i] = (float)d;
        }
        int64_t r = rank_of(sim, n_images, owner[c]);
        t1 += r < 1, t5 += r < 5;
    }
    out->i2t_r1 = (double)i1 / (double)n_images, out->i2t_r5 = (double)i5 / (double)n_images;
    out->t2i_r1 = (double)t1 / (double)nc, out->t2i_r5 = (double)t5 / (double)nc;
out:
    ct_graph_free(g);
    free(ie), free(te), free(sim), free(pix), free(ids), free(owner);
    return s;
}

/* ---- state files ---- */

typedef struct pt_state {
    ct_clip *m;
    ct_clip_trainer *tr;
    ct_optim *od, *on; /* the trainer's, for checkpoints */
    float *curve;      /* (cap, CURVE_COLS) */
    int64_t n_curve, cap_curve;
} pt_state;

static ct_status curve_add(pt_state *st, const double *row) {
    if (st->n_curve == st->cap_curve) {
        int64_t cap = st->cap_curve ? 2 * st->cap_curve : 256;
        float *c = realloc(st->curve, (size_t)cap * CURVE_COLS * sizeof *c);
        if (!c) return ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
        st->curve = c, st->cap_curve = cap;
    }
    for (int k = 0; k < CURVE_COLS; k++) st->curve[st->n_curve * CURVE_COLS + k] = (float)row[k];
    st->n_curve++;
    return CT_OK;
}

static ct_status write_curve_csv(const pt_state *st, const char *dir) {
    size_t cap = (size_t)st->n_curve * 160 + 128, len = 0;
    char *buf = malloc(cap);
    if (!buf) return ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
    len += (size_t)snprintf(buf, cap, "step,epoch,loss,lr,logit_scale,heldout_i2t_r1,"
                                      "heldout_t2i_r1\n");
    for (int64_t i = 0; i < st->n_curve; i++) {
        const float *r = st->curve + i * CURVE_COLS;
        len += (size_t)snprintf(buf + len, cap - len, "%.0f,%.0f,%.6f,%.6g,%.4f,", r[0], r[1],
                                r[2], r[3], r[4]);
        for (int k = 5; k < 7; k++)
            len += (size_t)(isnan(r[k]) ? snprintf(buf + len, cap - len, "%s", k == 6 ? "\n" : ",")
                                        : snprintf(buf + len, cap - len, "%.4f%s", r[k],
                                                   k == 6 ? "\n" : ","));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/curve.csv", dir);
    ct_status s = ct_write_file_atomic(path, buf, len);
    free(buf);
    return s;
}

/* curve.svg: the training loss against the step. */
static ct_status write_curve_svg(const pt_state *st, const char *dir) {
    if (st->n_curve < 1) return CT_OK;
    double *x = malloc((size_t)st->n_curve * sizeof *x), *y = malloc((size_t)st->n_curve * sizeof *y);
    if (!x || !y) {
        free(x), free(y);
        return ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
    }
    for (int64_t i = 0; i < st->n_curve; i++)
        x[i] = st->curve[i * CURVE_COLS], y[i] = st->curve[i * CURVE_COLS + 2];
    char path[4096];
    snprintf(path, sizeof path, "%s/curve.svg", dir);
    const char *names[1] = {"contrastive loss (mean of 10 steps)"};
    ct_status s = ct_svg_line_plot(path, "Pretraining loss", "step", "loss", x, (int)st->n_curve,
                                   names, y, NULL, 1, false);
    free(x), free(y);
    return s;
}

static ct_status save_state(const ct_pretrain_cfg *cfg, pt_state *st, int64_t step,
                            int64_t total, uint64_t hash) {
    int nt = ct_clip_num_tensors(st->m);
    ct_st_entry *e = calloc((size_t)nt + 8, sizeof *e);
    char(*names)[160] = calloc((size_t)nt, sizeof *names);
    if (!e || !names) {
        free(e), free(names);
        return ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
    }
    int n = 0;
    for (int i = 0; i < nt; i++) {
        const char *name;
        ct_tensor *t = ct_clip_tensor_at(st->m, i, &name);
        snprintf(names[i], sizeof names[i], "w.%s", name);
        e[n++] = (ct_st_entry){names[i], CT_F32, t->ndim, t->shape, t->data};
    }
    ct_optim_state sd = ct_optim_get_state(st->od), sn = ct_optim_get_state(st->on);
    int64_t shd[1] = {(int64_t)sd.n}, shn[1] = {(int64_t)sn.n};
    int64_t sps[1] = {sd.n_params}, spn[1] = {sn.n_params};
    e[n++] = (ct_st_entry){"optim.decay.m", CT_F32, 1, shd, sd.buf1};
    e[n++] = (ct_st_entry){"optim.decay.v", CT_F32, 1, shd, sd.buf2};
    e[n++] = (ct_st_entry){"optim.decay.steps", CT_I64, 1, sps, sd.steps};
    e[n++] = (ct_st_entry){"optim.nodecay.m", CT_F32, 1, shn, sn.buf1};
    e[n++] = (ct_st_entry){"optim.nodecay.v", CT_F32, 1, shn, sn.buf2};
    e[n++] = (ct_st_entry){"optim.nodecay.steps", CT_I64, 1, spn, sn.steps};
    int64_t shc[2] = {st->n_curve, CURVE_COLS};
    float dummy[CURVE_COLS] = {0};
    e[n++] = (ct_st_entry){"curve", CT_F32, 2, shc, st->n_curve ? st->curve : dummy};
    char path[4096];
    snprintf(path, sizeof path, "%s/pretrain-state.safetensors", cfg->out_dir);
    ct_status s = ct_safetensors_write(path, e, n, NULL, 0);
    free(e), free(names);
    if (s != CT_OK) return s;
    cJSON *j = cJSON_CreateObject();
    char hs[32];
    snprintf(hs, sizeof hs, "%016llx", (unsigned long long)hash);
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "total_steps", (double)total);
    cJSON_AddStringToObject(j, "config_hash", hs);
    snprintf(path, sizeof path, "%s/pretrain.json", cfg->out_dir);
    s = ct_json_save(path, j);
    cJSON_Delete(j);
    return s;
}

static ct_status load_state(const ct_pretrain_cfg *cfg, pt_state *st, uint64_t hash,
                            int64_t *step) {
    char path[4096];
    snprintf(path, sizeof path, "%s/pretrain.json", cfg->out_dir);
    cJSON *j = ct_json_load(path);
    if (!j) return CT_ERR_IO;
    int64_t sp;
    const char *hs;
    ct_status s = ct_json_get_int(j, "step", &sp, path);
    if (s == CT_OK) s = ct_json_get_string(j, "config_hash", &hs, path);
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)hash);
    if (s == CT_OK && strcmp(hs, want))
        s = ct_set_error(CT_ERR_STATE, "%s: the run was started with another corpus, model or "
                         "hyper-parameters; --resume needs the same ones", path);
    cJSON_Delete(j);
    if (s != CT_OK) return s;
    snprintf(path, sizeof path, "%s/pretrain-state.safetensors", cfg->out_dir);
    ct_safetensors *f = ct_safetensors_open(path);
    if (!f) return CT_ERR_FORMAT;
    int nt = ct_clip_num_tensors(st->m);
    char name[200];
    for (int i = 0; s == CT_OK && i < nt; i++) {
        const char *tn;
        ct_tensor *t = ct_clip_tensor_at(st->m, i, &tn);
        snprintf(name, sizeof name, "w.%s", tn);
        s = ct_st_copy_exact(f, name, CT_F32, t->data, (size_t)t->numel * sizeof(float), path);
    }
    ct_optim_state sd = ct_optim_get_state(st->od), sn = ct_optim_get_state(st->on);
    size_t bd = sd.n * sizeof(float), bn = sn.n * sizeof(float);
    if (s == CT_OK) s = ct_st_copy_exact(f, "optim.decay.m", CT_F32, sd.buf1, bd, path);
    if (s == CT_OK) s = ct_st_copy_exact(f, "optim.decay.v", CT_F32, sd.buf2, bd, path);
    if (s == CT_OK)
        s = ct_st_copy_exact(f, "optim.decay.steps", CT_I64, sd.steps,
                             (size_t)sd.n_params * sizeof(int64_t), path);
    if (s == CT_OK) s = ct_st_copy_exact(f, "optim.nodecay.m", CT_F32, sn.buf1, bn, path);
    if (s == CT_OK) s = ct_st_copy_exact(f, "optim.nodecay.v", CT_F32, sn.buf2, bn, path);
    if (s == CT_OK)
        s = ct_st_copy_exact(f, "optim.nodecay.steps", CT_I64, sn.steps,
                             (size_t)sn.n_params * sizeof(int64_t), path);
    const ct_st_tensor *c = s == CT_OK ? ct_safetensors_find(f, "curve") : NULL;
    if (s == CT_OK && (!c || c->dtype != CT_F32 || c->ndim != 2 || c->shape[1] != CURVE_COLS))
        s = ct_set_error(CT_ERR_FORMAT, "%s: tensor curve is missing or malformed", path);
    for (int64_t i = 0; s == CT_OK && i < c->shape[0]; i++) {
        double row[CURVE_COLS];
        const float *r = (const float *)c->data + i * CURVE_COLS;
        for (int k = 0; k < CURVE_COLS; k++) row[k] = r[k];
        s = curve_add(st, row);
    }
    ct_safetensors_close(f);
    *step = sp;
    return s;
}

/* The HF folder: model + preprocessing + the tokenizer's files. */
static ct_status export_hf(const ct_pretrain_cfg *cfg, const ct_clip *m) {
    ct_status s = ct_clip_save_hf(m, cfg->out_dir);
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; s == CT_OK && i < sizeof files / sizeof *files; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/%s", cfg->tokenizer_dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", cfg->out_dir, files[i]);
        if (i >= 2 && access(src, F_OK) != 0) continue; /* optional */
        s = ct_copy_file(src, dst);
    }
    return s;
}

static ct_status evaluate(const ct_pretrain_cfg *cfg, pt_state *st, const ct_tokenizer *tok,
                          const pt_data *ho, ct_pretrain_result *res) {
    ct_status s = ct_retrieval_eval(st->m, tok, ho->img, ho->set.n_images, ho->set.cap_off,
                                    ho->set.captions, &res->heldout);
    if (s == CT_OK)
        logf_(cfg, "held-out retrieval (%lld images, %lld captions): image->text R@1 %.1f%% "
              "R@5 %.1f%%, text->image R@1 %.1f%% R@5 %.1f%%",
              (long long)res->heldout.n_images, (long long)res->heldout.n_captions,
              100 * res->heldout.i2t_r1, 100 * res->heldout.i2t_r5, 100 * res->heldout.t2i_r1,
              100 * res->heldout.t2i_r5);
    return s;
}

static ct_status check_cfg(const ct_pretrain_cfg *cfg) {
    if (!cfg->corpus || !cfg->tokenizer_dir || !cfg->out_dir)
        return ct_set_error(CT_ERR_ARG, "pretrain: corpus, tokenizer and output folder are required");
    if (cfg->epochs < 1 || cfg->batch_size < 2)
        return ct_set_error(CT_ERR_ARG, "pretrain: epochs must be >= 1 and batch size >= 2 "
                            "(got %d, %d)", cfg->epochs, cfg->batch_size);
    if (!(cfg->lr > 0) || cfg->min_lr < 0 || cfg->weight_decay < 0 || cfg->warmup_steps < 0 ||
        cfg->heldout_frac < 0 || cfg->heldout_frac >= 1 || cfg->checkpoint_every < 1 ||
        cfg->eval_every < 0 || cfg->stop_after < 0)
        return ct_set_error(CT_ERR_ARG, "pretrain: a hyper-parameter is out of range (lr > 0, "
                            "min_lr/wd/warmup >= 0, 0 <= heldout < 1, checkpoint_every >= 1)");
    return CT_OK;
}

ct_status ct_pretrain(const ct_pretrain_cfg *cfg, ct_pretrain_result *res) {
    memset(res, 0, sizeof *res);
    ct_status s = check_cfg(cfg);
    if (s != CT_OK) return s;
    pt_data all = {0}, tr = {0}, ho = {0};
    pt_state st = {0};
    ct_tokenizer *tok = NULL;
    ct_graph *g = NULL;
    float *pix = NULL;
    int64_t *ids = NULL, *perm = NULL;
    ct_image view = {0};
    char path[4096], mpath[4096];
    const ct_clip_config *a = &cfg->arch;
    int S = a->image_size, T = a->context_length, B = cfg->batch_size;

    snprintf(path, sizeof path, "%s/vocab.json", cfg->tokenizer_dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", cfg->tokenizer_dir);
    if (!(tok = ct_tokenizer_load_hf(path, mpath))) return CT_ERR_FORMAT;
    if (ct_tokenizer_vocab_size(tok) != a->vocab_size) {
        s = ct_set_error(CT_ERR_ARG, "pretrain: the model's vocab_size %d differs from the "
                         "tokenizer's %d (%s)", a->vocab_size, ct_tokenizer_vocab_size(tok),
                         cfg->tokenizer_dir);
        goto out;
    }
    if ((s = ct_captions_open(cfg->corpus, &all.set)) != CT_OK) goto out;
    if ((s = ct_captions_split(&all.set, cfg->heldout_frac, &tr.set, &ho.set)) != CT_OK) goto out;
    ct_captions_free(&all.set);
    int64_t n_train = tr.set.n_images;
    if (n_train < B) {
        s = ct_set_error(CT_ERR_ARG, "pretrain: %s has %lld training images, fewer than one "
                         "batch of %d", cfg->corpus, (long long)n_train, B);
        goto out;
    }
    if ((s = pt_data_load(&tr, tok, T, cfg, "load: train images")) != CT_OK) goto out;
    if ((s = pt_data_load(&ho, tok, T, cfg, "load: held-out images")) != CT_OK) goto out;
    int64_t n_caps = tr.set.cap_off[n_train];
    int64_t per_epoch = n_train / B, total = per_epoch * cfg->epochs;
    uint64_t hash = config_hash(cfg, n_train, n_caps);
    logf_(cfg, "corpus %s: %lld training images (%lld captions), %lld held out; %lld steps of "
          "%d (%d epochs)", cfg->corpus, (long long)n_train, (long long)n_caps,
          (long long)ho.set.n_images, (long long)total, B, cfg->epochs);

    if (!(st.m = ct_clip_create(a, cfg->seed))) {
        s = CT_ERR_NOMEM;
        goto out;
    }
    logf_(cfg, "model: %lld parameters", (long long)ct_clip_num_params(st.m));
    ct_clip_trainer_cfg tcfg = {cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay,
                                cfg->max_grad_norm};
    if (!(st.tr = ct_clip_trainer_create(st.m, &tcfg))) {
        s = CT_ERR_NOMEM;
        goto out;
    }
    ct_clip_trainer_optims(st.tr, &st.od, &st.on);
    g = ct_graph_create(0);
    pix = malloc((size_t)B * 3 * S * S * sizeof *pix);
    ids = malloc((size_t)B * T * sizeof *ids);
    perm = malloc((size_t)n_train * sizeof *perm);
    if (!g || !pix || !ids || !perm) {
        s = ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
        goto out;
    }
    if ((s = ct_mkdir_p(cfg->out_dir)) != CT_OK) goto out;
    int64_t step = 0;
    if (cfg->resume) {
        if ((s = load_state(cfg, &st, hash, &step)) != CT_OK) goto out;
        logf_(cfg, "resumed at step %lld of %lld", (long long)step, (long long)total);
    }
    ct_preprocess_cfg norm = {0};
    {
        ct_preprocess_cfg o;
        ct_preprocess_cfg_openai(&o, S);
        norm.rescale = o.rescale;
        memcpy(norm.mean, o.mean, sizeof o.mean), memcpy(norm.std, o.std, sizeof o.std);
    }
    ct_pretrain_aug_cfg aug = cfg->aug;
    aug.size = S;
    ct_rng root;
    ct_rng_init(&root, cfg->seed);
    int64_t start = step, perm_epoch = -1;
    double loss_sum = 0;
    int loss_n = 0;
    const int64_t log_every = per_epoch < 20 ? 1 : 10;
    while (step < total && (cfg->stop_after == 0 || step - start < cfg->stop_after)) {
        int64_t epoch = step / per_epoch, k = step % per_epoch;
        if (epoch != perm_epoch) {
            ct_rng pr = ct_rng_split(&root, 0x1000000ull + (uint64_t)epoch);
            ct_rng_permutation(&pr, perm, (size_t)n_train);
            perm_epoch = epoch;
        }
        for (int j = 0; j < B; j++) {
            int64_t i = perm[k * B + j];
            ct_rng r = ct_rng_split(&root, (uint64_t)step * (uint64_t)B + (uint64_t)j);
            int64_t c0 = tr.set.cap_off[i], nc = tr.set.cap_off[i + 1] - c0;
            int64_t c = c0 + (int64_t)ct_rng_below(&r, (uint64_t)nc);
            memcpy(ids + (int64_t)j * T, tr.ids + c * T, (size_t)T * sizeof *ids);
            s = ct_pretrain_augment(&tr.img[i], tr.alpha[i], &aug, &r, &view, NULL);
            if (s != CT_OK) goto out;
            s = ct_preprocess(&view, &norm, pix + (size_t)j * 3 * S * S);
            ct_image_free(&view);
            if (s != CT_OK) goto out;
        }
        double lv, lr = ct_sched_step_cosine(cfg->lr, cfg->min_lr, step, cfg->warmup_steps,
                                             total);
        if ((s = ct_clip_trainer_step(st.tr, g, pix, ids, B, lr, &lv)) != CT_OK) goto out;
        const ct_real *ls = st.m->logit_scale->data;
        step++;
        loss_sum += lv, loss_n++;
        res->loss = loss_sum / loss_n;
        if (cfg->progress)
            cfg->progress(cfg->progress_ctx, "pretrain", step, total, lv, lr);
        bool eval_now = (cfg->eval_every > 0 && step % cfg->eval_every == 0) || step == total;
        if (step % log_every == 0 || step == total || eval_now) {
            double row[CURVE_COLS] = {(double)step, (double)(step - 1) / (double)per_epoch,
                                      loss_sum / loss_n, lr, exp(ls[0]), NAN, NAN};
            loss_sum = 0, loss_n = 0;
            if (eval_now && ho.set.n_images > 0) {
                if ((s = evaluate(cfg, &st, tok, &ho, res)) != CT_OK) goto out;
                row[5] = res->heldout.i2t_r1, row[6] = res->heldout.t2i_r1;
            }
            if ((s = curve_add(&st, row)) != CT_OK) goto out;
        }
        bool last = step == total || (cfg->stop_after && step - start == cfg->stop_after);
        if (step % cfg->checkpoint_every == 0 || last) {
            if ((s = save_state(cfg, &st, step, total, hash)) != CT_OK) goto out;
            if ((s = write_curve_csv(&st, cfg->out_dir)) != CT_OK) goto out;
            if ((s = write_curve_svg(&st, cfg->out_dir)) != CT_OK) goto out;
            if ((s = export_hf(cfg, st.m)) != CT_OK) goto out;
            logf_(cfg, "step %lld/%lld: loss %.4f, lr %.3g, logit scale %.2f (checkpoint)",
                  (long long)step, (long long)total, res->loss, lr, exp(ls[0]));
        }
    }
    if (step == start && step > 0) {
        /* nothing left to train: make sure the export, curve and metrics exist */
        if ((s = export_hf(cfg, st.m)) != CT_OK) goto out;
        if ((s = write_curve_csv(&st, cfg->out_dir)) != CT_OK) goto out;
        if ((s = write_curve_svg(&st, cfg->out_dir)) != CT_OK) goto out;
        if (ho.set.n_images > 0 && (s = evaluate(cfg, &st, tok, &ho, res)) != CT_OK) goto out;
    }
    res->step = step, res->total_steps = total, res->finished = step == total;
    res->logit_scale = exp(st.m->logit_scale->data[0]);
out:
    ct_image_free(&view);
    free(pix), free(ids), free(perm), free(st.curve);
    ct_graph_free(g);
    ct_clip_trainer_free(st.tr);
    ct_clip_free(st.m);
    pt_data_free(&all), pt_data_free(&tr), pt_data_free(&ho);
    ct_tokenizer_free(tok);
    return s;
}
