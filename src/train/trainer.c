/* The generic trainer: mini-batch gradient descent on a method's loss over
 * frozen image features, with Dassl's schedules, atomic per-epoch
 * checkpoints (learned tensors + optimiser state + JSON metadata) and
 * bit-for-bit resume. The data order of epoch e is a pure function of
 * (seed, e), so a resumed run replays exactly what an uninterrupted run does. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/dist.h"
#include "base/safetensors.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/json.h"
#include "cliptune.h"
#include "data/pixels.h"
#include "train/features.h"

#define MAX_PARAMS 256

static const char *const GROUP_KEYS[] = {"lr", "warmup_epochs", "warmup_lr", "warmup_type"};

/* The parameter groups named by keys "<prefix>.<field>", each starting from
 * the main schedule. */
static ct_status groups_from_kv(ct_kv *hp, ct_train_cfg *cfg, const char *main_wtype) {
    for (int i = 0; i < hp->n; i++) {
        const char *key = hp->keys[i], *dot = strrchr(key, '.');
        bool field = false;
        for (size_t f = 0; dot && f < sizeof GROUP_KEYS / sizeof *GROUP_KEYS; f++)
            field |= !strcmp(dot + 1, GROUP_KEYS[f]);
        if (!field || dot == key) continue;
        size_t len = (size_t)(dot - key);
        int gi = 0;
        while (gi < cfg->n_groups && (strlen(cfg->groups[gi].prefix) != len ||
                                      strncmp(cfg->groups[gi].prefix, key, len)))
            gi++;
        if (gi < cfg->n_groups) continue;
        if (gi == CT_MAX_PARAM_GROUPS || len >= sizeof cfg->groups[gi].prefix)
            return ct_set_error(CT_ERR_ARG, "trainer: %s: at most %d parameter groups with "
                                "prefixes of < %d characters", key, CT_MAX_PARAM_GROUPS,
                                (int)sizeof cfg->groups[gi].prefix);
        memcpy(cfg->groups[gi].prefix, key, len);
        cfg->groups[gi].prefix[len] = 0;
        cfg->n_groups++;
    }
    for (int gi = 0; gi < cfg->n_groups; gi++) {
        struct ct_param_group *gr = &cfg->groups[gi];
        char k[4][80];
        for (int f = 0; f < 4; f++) snprintf(k[f], sizeof k[f], "%s.%s", gr->prefix, GROUP_KEYS[f]);
        double lr, wlr;
        int wep;
        const char *wtype;
        ct_status s = ct_kv_double(hp, k[0], cfg->sched.base_lr, &lr);
        if (s == CT_OK) s = ct_kv_int(hp, k[1], cfg->sched.warmup_len, &wep);
        if (s == CT_OK) s = ct_kv_double(hp, k[2], cfg->sched.warmup_lr, &wlr);
        if (s == CT_OK) s = ct_kv_str(hp, k[3], main_wtype, &wtype);
        if (s != CT_OK) return s;
        if (!(lr >= 0) || wep < 0 || !(wlr >= 0))
            return ct_set_error(CT_ERR_ARG, "trainer: parameter group %s: lr, warmup_epochs "
                                "or warmup_lr out of range", gr->prefix);
        if (cfg->step_sched && wep > 0)
            return ct_set_error(CT_ERR_ARG, "trainer: sched=cosine_step warms up by "
                                "warmup_steps, not %s", k[1]);
        gr->sched = cfg->sched;
        gr->sched.base_lr = (float)lr, gr->sched.warmup_len = wep;
        gr->sched.warmup_lr = (float)wlr;
        if (wep == 0) gr->sched.warmup = CT_WARMUP_NONE;
        else if (!strcmp(wtype, "constant")) gr->sched.warmup = CT_WARMUP_CONSTANT;
        else if (!strcmp(wtype, "linear")) gr->sched.warmup = CT_WARMUP_LINEAR;
        else return ct_set_error(CT_ERR_ARG, "trainer: %s=%s (constant, linear)", k[3], wtype);
    }
    return CT_OK;
}

/* The group of a learnable tensor: the longest prefix that names it
 * ("prefix" or "prefix.*"), -1 for the main schedule. */
static int group_of(const ct_train_cfg *cfg, const char *name) {
    int best = -1;
    size_t best_len = 0;
    for (int gi = 0; name && gi < cfg->n_groups; gi++) {
        size_t len = strlen(cfg->groups[gi].prefix);
        if (!strncmp(name, cfg->groups[gi].prefix, len) && (name[len] == 0 || name[len] == '.') &&
            len > best_len)
            best = gi, best_len = len;
    }
    return best;
}

ct_status ct_train_cfg_from_kv(ct_kv *hp, ct_train_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *optim, *sched, *wtype, *select;
    double lr, mom, wd, wlr, clip;
    int wep;
    ct_status s = CT_OK;
#define TRY(x) \
    if (s == CT_OK) s = (x)
    TRY(ct_kv_int(hp, "epochs", 1, &cfg->epochs));
    TRY(ct_kv_int(hp, "batch_size", 32, &cfg->batch_size));
    TRY(ct_kv_str(hp, "optim", "sgd", &optim));
    TRY(ct_kv_double(hp, "lr", 0.002, &lr));
    TRY(ct_kv_double(hp, "momentum", 0.9, &mom));
    TRY(ct_kv_double(hp, "weight_decay", 5e-4, &wd));
    TRY(ct_kv_str(hp, "sched", "cosine", &sched));
    TRY(ct_kv_int(hp, "warmup_epochs", 0, &wep));
    TRY(ct_kv_str(hp, "warmup_type", "constant", &wtype));
    TRY(ct_kv_double(hp, "warmup_lr", 1e-5, &wlr));
    TRY(ct_kv_double(hp, "max_grad_norm", 0, &clip));
    TRY(ct_kv_str(hp, "select", "last", &select));
    const char *views;
    double eps;
    TRY(ct_kv_str(hp, "views", "all", &views));
    TRY(ct_kv_double(hp, "eps", 1e-8, &eps));
    TRY(ct_kv_int(hp, "checkpoint_every", 1, &cfg->checkpoint_every));
    int iters, wsteps;
    TRY(ct_kv_int(hp, "iters", 0, &iters));
    TRY(ct_kv_int(hp, "warmup_steps", 0, &wsteps));
    TRY(ct_kv_int(hp, "iters_per_shot", 0, &cfg->iters_per_shot));
    double wfrac;
    TRY(ct_kv_double(hp, "warmup_fraction", 0, &wfrac));
    if (s == CT_OK && !(wfrac >= 0 && wfrac <= 1))
        s = ct_set_error(CT_ERR_ARG, "trainer: warmup_fraction=%g must be in [0, 1]", wfrac);
    cfg->warmup_fraction = wfrac;
    double min_lr;
    TRY(ct_kv_double(hp, "min_lr", 0, &min_lr));
    if (s == CT_OK && cfg->iters_per_shot < 0)
        s = ct_set_error(CT_ERR_ARG, "trainer: iters_per_shot=%d (>= 0)", cfg->iters_per_shot);
    if (s == CT_OK && !(min_lr >= 0))
        s = ct_set_error(CT_ERR_ARG, "trainer: min_lr=%g (>= 0)", min_lr);
    cfg->sched.min_lr = (float)min_lr;
    TRY(ct_kv_str(hp, "train_aug", "rrc_flip", &cfg->train_aug));
    TRY(ct_kv_double(hp, "aug_scale_min", 0.08, &cfg->aug_scale_min));
    if (s == CT_OK && wsteps < 0)
        s = ct_set_error(CT_ERR_ARG, "trainer: warmup_steps=%d (>= 0)", wsteps);
    cfg->warmup_steps = wsteps;
    if (s == CT_OK && iters < 0) s = ct_set_error(CT_ERR_ARG, "trainer: iters=%d (>= 0)", iters);
    cfg->iters = iters;
#undef TRY
    if (s != CT_OK) return s;
    /* each range error names its key; the caps keep a typo from asking for
     * terabytes (batch_size=2e9) */
    if (cfg->epochs < 0 || cfg->epochs > 1000000)
        return ct_set_error(CT_ERR_ARG, "trainer: epochs=%d (0 .. 1000000)", cfg->epochs);
    if (cfg->batch_size < 1 || cfg->batch_size > 65536)
        return ct_set_error(CT_ERR_ARG, "trainer: batch_size=%d (1 .. 65536)", cfg->batch_size);
    if (!(lr >= 0) || isinf(lr))
        return ct_set_error(CT_ERR_ARG, "trainer: lr=%g (a finite number >= 0)", lr);
    if (wep < 0) return ct_set_error(CT_ERR_ARG, "trainer: warmup_epochs=%d (>= 0)", wep);
    if (!(clip >= 0))
        return ct_set_error(CT_ERR_ARG, "trainer: max_grad_norm=%g (>= 0; 0: no clipping)", clip);
    if (!(mom >= 0 && mom < 1))
        return ct_set_error(CT_ERR_ARG, "trainer: momentum=%g (in [0, 1))", mom);
    if (!(wd >= 0)) return ct_set_error(CT_ERR_ARG, "trainer: weight_decay=%g (>= 0)", wd);
    ct_optim_kind kind;
    if (!strcmp(optim, "sgd")) kind = CT_OPTIM_SGD;
    else if (!strcmp(optim, "adam")) kind = CT_OPTIM_ADAM;
    else if (!strcmp(optim, "adamw")) kind = CT_OPTIM_ADAMW;
    else return ct_set_error(CT_ERR_ARG, "trainer: optim=%s (sgd, adam, adamw)", optim);
    cfg->optim = ct_optim_default(kind, (float)lr);
    if (kind == CT_OPTIM_SGD) cfg->optim.momentum = (float)mom;
    cfg->optim.weight_decay = (float)wd;
    cfg->sched.base_lr = (float)lr;
    cfg->sched.total = cfg->epochs;
    if (!strcmp(sched, "cosine")) cfg->sched.kind = CT_SCHED_COSINE;
    else if (!strcmp(sched, "constant")) cfg->sched.kind = CT_SCHED_CONSTANT;
    else if (!strcmp(sched, "cosine_step")) cfg->step_sched = true;
    else return ct_set_error(CT_ERR_ARG, "trainer: sched=%s (cosine, constant, cosine_step)",
                             sched);
    if (cfg->step_sched && wep > 0)
        return ct_set_error(CT_ERR_ARG, "trainer: sched=cosine_step warms up by warmup_steps, "
                            "not warmup_epochs");
    cfg->sched.warmup_len = wep;
    cfg->sched.warmup_lr = (float)wlr;
    if (wep == 0) cfg->sched.warmup = CT_WARMUP_NONE;
    else if (!strcmp(wtype, "constant")) cfg->sched.warmup = CT_WARMUP_CONSTANT;
    else if (!strcmp(wtype, "linear")) cfg->sched.warmup = CT_WARMUP_LINEAR;
    else return ct_set_error(CT_ERR_ARG, "trainer: warmup_type=%s (constant, linear)", wtype);
    cfg->max_grad_norm = clip;
    if (kind != CT_OPTIM_SGD) cfg->optim.eps = (float)eps;
    if (!strcmp(views, "cycle")) cfg->cycle_views = true;
    else if (strcmp(views, "all")) return ct_set_error(CT_ERR_ARG, "trainer: views=%s "
                                                       "(all, cycle)", views);
    if (cfg->checkpoint_every < 1)
        return ct_set_error(CT_ERR_ARG, "trainer: checkpoint_every must be >= 1");
    if (!strcmp(select, "best_val")) cfg->select_best_val = true;
    else if (strcmp(select, "last")) return ct_set_error(CT_ERR_ARG, "trainer: select=%s "
                                                         "(last, best_val)", select);
    return groups_from_kv(hp, cfg, wtype);
}

ct_status ct_predict(const ct_method *m, void *state, const ct_features *f, float *scores) {
    if (m->predict_features) return m->predict_features(state, f, scores);
    ct_graph *g = ct_graph_create(0);
    if (!g) return CT_ERR_NOMEM;
    const int64_t B = 256;
    ct_status s = CT_OK;
    for (int64_t i0 = 0; i0 < f->n && s == CT_OK; i0 += B) {
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        /* dense rows only for methods that asked for them */
        bool dense = m->dense_features && f->dense && f->n_tokens > 0;
        ct_batch b = {.n = f->n - i0 < B ? f->n - i0 : B, .x = f->x + i0 * f->dim,
                      .labels = f->labels ? f->labels + i0 : NULL, .epoch = -1,
                      .dense = dense ? f->dense + i0 * f->n_tokens * f->dim : NULL,
                      .n_tokens = dense ? f->n_tokens : 0};
        ct_tensor *lg = m->logits(state, g, &b);
        if (!lg) {
            s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_ARG;
            break;
        }
        memcpy(scores + i0 * lg->shape[1], lg->data, (size_t)lg->numel * sizeof(float));
    }
    ct_graph_free(g);
    return s;
}

bool ct_method_scores_images(const ct_method *m) { return m->predict_images || m->pixels; }

#define PIXEL_EVAL_BATCH 32

/* The frozen model's embeddings of d's images under the evaluation
 * transform, through the feature cache (task->cache_dir): computed once,
 * then read back by every cell, epoch and method that needs them. */
static ct_status frozen_of(const ct_task *task, const ct_dataset *d, ct_features *out) {
    ct_feature_req req = {.clip = task->clip, .pre = task->pre, .data = d, .seed = task->seed,
                          .cache_dir = task->cache_dir, .batch = PIXEL_EVAL_BATCH};
    return ct_features_get(&req, out);
}

static int task_of_class(const ct_task *task, int k);

ct_status ct_predict_images(const ct_method *m, void *state, const ct_task *task,
                            const ct_dataset *d, float *scores) {
    if (m->predict_images) return m->predict_images(state, task, d, scores);
    if (!m->pixels)
        return ct_set_error(CT_ERR_ARG, "%s scores cached features, not images", m->name);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int S = c->image_size;
    size_t per = (size_t)3 * S * S;
    float *px = malloc(PIXEL_EVAL_BATCH * per * sizeof *px);
    ct_graph *g = ct_graph_create(0);
    ct_status s = px && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "%s: out of memory", m->name);
    ct_pixel_src src = {d, task->pre, S, NULL, 0, m->name, NULL};
    ct_features fz = {0};
    /* multi-task runs: each item's task from its (shifted) label, as the
     * official test loaders carry it */
    int tk[PIXEL_EVAL_BATCH];
    if (s == CT_OK && m->frozen_features) s = frozen_of(task, d, &fz);
    /* several ranks holding the same learned tensors: each scores its share
     * (whole batches from the same offsets as one process), then all
     * exchange their rows */
    int64_t lo = 0, hi = d->n_items;
    bool shared = ct_dist_parallel();
    if (shared)
        ct_dist_range(d->n_items, PIXEL_EVAL_BATCH, ct_dist_rank(), ct_dist_size(), &lo, &hi);
    for (int64_t i0 = lo; i0 < hi && s == CT_OK; i0 += PIXEL_EVAL_BATCH) {
        int64_t nb = hi - i0 < PIXEL_EVAL_BATCH ? hi - i0 : PIXEL_EVAL_BATCH;
        if ((s = ct_pixels_range(&src, i0, nb, 0, px)) != CT_OK) break;
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_batch b = {.n = nb, .pixels = px, .epoch = -1,
                      .frozen = fz.x ? fz.x + i0 * fz.dim : NULL};
        if (task->n_tasks > 0) {
            for (int64_t j = 0; j < nb; j++) tk[j] = task_of_class(task, d->items[i0 + j].label);
            b.tasks = tk;
        }
        ct_tensor *lg = m->logits(state, g, &b);
        if (!lg) {
            s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_ARG;
            break;
        }
        if (lg->ndim != 2 || lg->shape[0] != nb || (shared && lg->shape[1] != task->n_classes)) {
            s = ct_set_error(CT_ERR_STATE, "%s: logits of the wrong shape", m->name);
            break;
        }
        memcpy(scores + i0 * lg->shape[1], lg->data, (size_t)lg->numel * sizeof(float));
        if (task->progress) {
            char stage[160];
            snprintf(stage, sizeof stage, "%s: %s", m->name, d->name ? d->name : "images");
            task->progress(task->progress_ctx, stage, i0 + nb - lo, hi - lo, NAN, NAN);
        }
    }
    if (s == CT_OK && shared)
        s = ct_dist_allgather_rows(scores, d->n_items, PIXEL_EVAL_BATCH,
                                   (size_t)task->n_classes * sizeof *scores);
    ct_graph_free(g);
    free(px);
    ct_features_free(&fz);
    return s;
}

/* The task owning class k in a multi-task run (ct_task.task_offsets). */
static int task_of_class(const ct_task *task, int k) {
    int t = 0;
    while (t + 1 < task->n_tasks && k >= task->task_offsets[t + 1]) t++;
    return t;
}

/* The selection metric on val: top-1 accuracy (single-label) or mAP
 * (multi-label), from its cached features, or its images for a pixel
 * method. */
static double accuracy(const ct_method *m, void *state, const ct_task *task, ct_status *st) {
    int K = task->n_classes;
    int64_t n = m->pixels ? task->val->n_items : task->val_feats->n;
    float *sc = malloc((size_t)(n ? n : 1) * (size_t)K * sizeof *sc);
    if (!sc) {
        *st = ct_set_error(CT_ERR_NOMEM, "trainer: out of memory");
        return 0;
    }
    *st = m->pixels ? ct_predict_images(m, state, task, task->val, sc)
                    : ct_predict(m, state, task->val_feats, sc);
    const int8_t *tg = m->pixels ? task->val->targets : task->val_feats->targets;
    if (tg) {
        ct_ml_metrics mm = {0};
        if (*st == CT_OK)
            *st = ct_ml_metrics_compute(sc, false, tg, n, K, CT_ML_THRESH_DEFAULT, &mm);
        double map = mm.map;
        ct_ml_metrics_free(&mm);
        free(sc);
        return *st == CT_OK ? map : 0;
    }
    int64_t ok = 0;
    for (int64_t i = 0; *st == CT_OK && i < n; i++) {
        int y = m->pixels ? task->val->items[i].label : task->val_feats->labels[i];
        /* multi-task: the argmax over the item's own task's classes */
        int t = task->n_tasks > 0 ? task_of_class(task, y) : 0;
        int k0 = task->n_tasks > 0 ? task->task_offsets[t] : 0;
        int k1 = task->n_tasks > 0 ? task->task_offsets[t + 1] : K;
        int best = k0;
        for (int k = k0 + 1; k < k1; k++)
            if (sc[i * K + k] > sc[i * K + best]) best = k;
        ok += best == y;
    }
    free(sc);
    return n ? (double)ok / (double)n : 0;
}

/* ---- checkpoints ----
 *
 * One file, renamed into place at once: checkpoint.safetensors holds the
 * learned tensors, the optimiser state, the best-val snapshot and, in its
 * metadata ("cliptune.checkpoint"), the JSON that says what run it belongs
 * to. Resume verifies all of it (method, seed, hyper-parameters key by key,
 * class names, the training data and the model) and refuses naming the
 * first difference, so a run cannot be continued as another one. */

#define CKPT_META "cliptune.checkpoint"

/* What defines the run besides the method and the hyper-parameters: the
 * training and validation items (identity and label) or features, and the
 * frozen model's weights. */
static uint64_t data_hash(const ct_task *task, const ct_features *data) {
    uint64_t h = CT_HASH_INIT;
    const ct_dataset *sets[2] = {task->train, task->val};
    for (int k = 0; k < 2; k++) {
        const ct_dataset *d = sets[k];
        h = ct_hash_u64(h, d ? (uint64_t)d->n_items : ~0ull);
        char kb[4096];
        for (int64_t i = 0; d && i < d->n_items; i++) {
            const char *key = ct_dataset_item_key(d, i, kb, sizeof kb);
            h = ct_hash_u64(ct_hash_str(h, key ? key : "?"), (uint64_t)d->items[i].label);
        }
    }
    if (!task->train && data) { /* features without their images (tests, the API) */
        h = ct_hash_u64(ct_hash_u64(h, (uint64_t)data->n), (uint64_t)data->dim);
        h = ct_hash_bytes(h, data->x, (size_t)data->n * (size_t)data->dim * sizeof(float));
        h = ct_hash_bytes(h, data->labels, (size_t)data->n * sizeof(int));
    }
    return h;
}

static void hex64(uint64_t v, char *out) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

typedef struct {
    uint64_t data, model; /* hashes of this run's data and frozen model (0: none) */
} run_identity;

static ct_status save_ckpt(const ct_train_cfg *cfg, const ct_method *m, ct_tensor **p, int np,
                           ct_optim *opt, int epoch, double best_acc, int best_epoch,
                           const float *best, size_t total, const ct_kv *hp,
                           const ct_task *task, const run_identity *id) {
    char path[4096];
    ct_optim_state os = ct_optim_get_state(opt);
    ct_st_entry e[2 * MAX_PARAMS + 3];
    char names[MAX_PARAMS][32];
    int n = 0;
    for (int i = 0; i < np; i++) {
        snprintf(names[i], sizeof names[i], "param.%d", i);
        e[n++] = (ct_st_entry){names[i], CT_F32, p[i]->ndim, p[i]->shape, p[i]->data};
    }
    int64_t sn[1] = {(int64_t)os.n}, ss[1] = {os.n_params};
    if (os.buf1) e[n++] = (ct_st_entry){"optim.buf1", CT_F32, 1, sn, os.buf1};
    if (os.buf2) e[n++] = (ct_st_entry){"optim.buf2", CT_F32, 1, sn, os.buf2};
    e[n++] = (ct_st_entry){"optim.steps", CT_I64, 1, ss, os.steps};
    int64_t bs[1] = {(int64_t)total};
    if (best) e[n++] = (ct_st_entry){"best", CT_F32, 1, bs, best};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", m->name);
    cJSON_AddNumberToObject(j, "epoch", epoch);
    cJSON_AddNumberToObject(j, "epochs", cfg->epochs);
    char seed[32], hx[17];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    hex64(id->data, hx);
    cJSON_AddStringToObject(j, "data_hash", hx);
    hex64(id->model, hx);
    cJSON_AddStringToObject(j, "model_hash", hx);
    cJSON *hpj = cJSON_AddObjectToObject(j, "hyper_parameters");
    for (int i = 0; i < hp->n; i++) cJSON_AddStringToObject(hpj, hp->keys[i], hp->vals[i]);
    cJSON *cn = cJSON_AddArrayToObject(j, "classnames");
    for (int k = 0; k < task->n_classes; k++)
        cJSON_AddItemToArray(cn, cJSON_CreateString(task->classnames[k]));
    cJSON_AddNumberToObject(j, "best_val_acc", best_acc);
    cJSON_AddNumberToObject(j, "best_epoch", best_epoch);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return ct_set_error(CT_ERR_NOMEM, "trainer: out of memory");
    const char *meta[2] = {CKPT_META, text};
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->run_dir);
    ct_status s = ct_safetensors_write(path, e, n, meta, 1);
    free(text);
    return s;
}

/* The checkpoint's record of the run against this one: the first
 * difference, named. */
static ct_status same_run(const cJSON *j, const char *path, const ct_method *m,
                          const ct_train_cfg *cfg, const ct_kv *hp, const ct_task *task,
                          const run_identity *id) {
    const char *method, *seed, *dh, *mh;
    ct_status s = ct_json_get_string(j, "method", &method, path);
    if (s == CT_OK) s = ct_json_get_string(j, "seed", &seed, path);
    if (s == CT_OK) s = ct_json_get_string(j, "data_hash", &dh, path);
    if (s == CT_OK) s = ct_json_get_string(j, "model_hash", &mh, path);
    if (s != CT_OK) return s;
    if (strcmp(method, m->name))
        return ct_set_error(CT_ERR_STATE, "%s: the checkpoint is of method %s, not %s", path,
                            method, m->name);
    char mine[32], hx[17];
    snprintf(mine, sizeof mine, "%llu", (unsigned long long)cfg->seed);
    if (strcmp(seed, mine))
        return ct_set_error(CT_ERR_STATE, "%s: the checkpoint was made with seed %s, this run "
                            "has seed %s; resume needs the same run", path, seed, mine);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "hyper_parameters"), *e;
    if (!cJSON_IsObject(h))
        return ct_set_error(CT_ERR_FORMAT, "%s: no hyper_parameters object", path);
    for (int i = 0; i < hp->n; i++) {
        e = cJSON_GetObjectItemCaseSensitive(h, hp->keys[i]);
        if (!cJSON_IsString(e) || strcmp(e->valuestring, hp->vals[i]))
            return ct_set_error(CT_ERR_STATE, "%s: the checkpoint was made with %s=%s, this run "
                                "has %s=%s; resume needs the same hyper-parameters", path,
                                hp->keys[i], cJSON_IsString(e) ? e->valuestring : "(unset)",
                                hp->keys[i], hp->vals[i]);
    }
    cJSON_ArrayForEach(e, h) {
        bool found = false;
        for (int i = 0; i < hp->n && !found; i++) found = !strcmp(hp->keys[i], e->string);
        if (!found)
            return ct_set_error(CT_ERR_STATE, "%s: the checkpoint was made with %s=%s, which "
                                "this run does not set; resume needs the same hyper-parameters",
                                path, e->string, cJSON_IsString(e) ? e->valuestring : "?");
    }
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "classnames");
    int nc = cJSON_GetArraySize(cn);
    if (!cJSON_IsArray(cn) || nc != task->n_classes)
        return ct_set_error(CT_ERR_STATE, "%s: the checkpoint has %d classes, this run %d", path,
                            nc, task->n_classes);
    for (int k = 0; k < nc; k++) {
        const cJSON *c = cJSON_GetArrayItem(cn, k);
        if (!cJSON_IsString(c) || strcmp(c->valuestring, task->classnames[k]))
            return ct_set_error(CT_ERR_STATE, "%s: class %d of the checkpoint is \"%s\", of this "
                                "run \"%s\"", path, k, cJSON_IsString(c) ? c->valuestring : "?",
                                task->classnames[k]);
    }
    hex64(id->data, hx);
    if (strcmp(dh, hx))
        return ct_set_error(CT_ERR_STATE, "%s: the checkpoint was trained on other data (another "
                            "dataset, --shots or --seed's sample); resume needs the same run",
                            path);
    hex64(id->model, hx);
    if (strcmp(mh, hx))
        return ct_set_error(CT_ERR_STATE, "%s: the checkpoint was made with another model "
                            "(its weights differ); resume needs the same model", path);
    return CT_OK;
}

static ct_status load_ckpt(const ct_train_cfg *cfg, const ct_method *m, ct_tensor **p, int np,
                           ct_optim *opt, const ct_kv *hp, const ct_task *task,
                           const run_identity *id, int *epoch, double *best_acc,
                           int *best_epoch, float *best, size_t total) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->run_dir);
    ct_safetensors *st = ct_safetensors_open(path);
    if (!st) return CT_ERR_FORMAT;
    const char *meta = ct_safetensors_meta(st, CKPT_META);
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    ct_status s = CT_OK;
    if (!j)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no readable \"%s\" record in its metadata (not a "
                         "checkpoint of this version?)", path, CKPT_META);
    int64_t ep = 0, be = 0;
    double ba = 0;
    if (s == CT_OK) s = same_run(j, path, m, cfg, hp, task, id);
    if (s == CT_OK) s = ct_json_get_int(j, "epoch", &ep, path);
    if (s == CT_OK) s = ct_json_get_double(j, "best_val_acc", &ba, path);
    if (s == CT_OK) s = ct_json_get_int(j, "best_epoch", &be, path);
    if (s == CT_OK && ep < 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: epoch %lld", path, (long long)ep);
    cJSON_Delete(j);
    ct_optim_state os = ct_optim_get_state(opt);
    char name[32];
    for (int i = 0; s == CT_OK && i < np; i++) {
        snprintf(name, sizeof name, "param.%d", i);
        s = ct_st_copy_exact(st, name, CT_F32, p[i]->data, (size_t)p[i]->numel * sizeof(float),
                             path);
    }
    if (s == CT_OK && os.buf1)
        s = ct_st_copy_exact(st, "optim.buf1", CT_F32, os.buf1, os.n * sizeof(float), path);
    if (s == CT_OK && os.buf2)
        s = ct_st_copy_exact(st, "optim.buf2", CT_F32, os.buf2, os.n * sizeof(float), path);
    if (s == CT_OK)
        s = ct_st_copy_exact(st, "optim.steps", CT_I64, os.steps,
                             (size_t)os.n_params * sizeof(int64_t), path);
    if (s == CT_OK && best)
        s = ct_st_copy_exact(st, "best", CT_F32, best, total * sizeof(float), path);
    ct_safetensors_close(st);
    *epoch = (int)ep, *best_acc = ba, *best_epoch = (int)be;
    return s;
}

/* ---- data-parallel steps (several ranks, pixel-path methods) ---- */

/* Each rank's loss is the mean over its slice of n_loc of the batch's
 * n_batch images: its gradients weighted by n_loc / n_batch and summed over
 * the ranks in rank order are the whole batch's mean-loss gradients (up to
 * float summation order), the same on every rank, so every rank takes the
 * same optimiser step. The loss travels in the same buffer. buf holds the
 * trainable tensors' numels + 1 floats. */
static ct_status dp_reduce(ct_tensor *const *tp, int nt, float *buf, float *loss, int64_t n_loc,
                           int64_t n_batch) {
    float w = (float)n_loc / (float)n_batch;
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        size_t k = (size_t)tp[i]->numel;
        if (!tp[i]->grad && !(tp[i]->grad = calloc(k ? k : 1, sizeof *tp[i]->grad)))
            return ct_set_error(CT_ERR_NOMEM, "trainer: out of memory");
        for (size_t j = 0; j < k; j++) buf[off + j] = w * tp[i]->grad[j];
        off += k;
    }
    buf[off] = n_loc > 0 ? w * *loss : 0;
    ct_status s = ct_dist_sum_f32(buf, off + 1);
    off = 0;
    for (int i = 0; s == CT_OK && i < nt; i++) {
        memcpy(tp[i]->grad, buf + off, (size_t)tp[i]->numel * sizeof *buf);
        off += (size_t)tp[i]->numel;
    }
    *loss = buf[off];
    return s;
}

/* The learned tensors' bits, which must be the same on every rank. */
static uint64_t params_hash(ct_tensor *const *p, int np) {
    uint64_t h = CT_HASH_INIT;
    for (int i = 0; i < np; i++)
        h = ct_hash_bytes(h, p[i]->data, (size_t)p[i]->numel * sizeof *p[i]->data);
    return h;
}

/* ---- the loop ---- */

static void logf_(const ct_train_cfg *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const ct_train_cfg *cfg, const char *fmt, ...) {
    if (!cfg->log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cfg->log(cfg->log_ctx, line);
}

ct_status ct_train(const ct_method *m, void *state, const ct_task *task,
                   const ct_train_cfg *cfg, ct_kv *hp) {
    ct_status s = CT_OK;
    if (m->fit && (s = m->fit(state, task)) != CT_OK) return s;
    if (!m->loss || cfg->epochs == 0) return CT_OK;
    ct_tensor *p[MAX_PARAMS];
    int np = m->params ? m->params(state, p, MAX_PARAMS) : 0;
    if (np <= 0 || np > MAX_PARAMS)
        return ct_set_error(CT_ERR_STATE, "trainer: method %s has %d learnable tensors", m->name,
                            np);
    /* a method's own labelled set (pseudo-labels made by fit) replaces the
     * task's; fit runs again on resume and rebuilds it the same */
    const ct_features *data = m->pixels ? NULL
                              : m->train_set ? m->train_set(state)
                              : task->aug_feats ? task->aug_feats : task->train_feats;
    /* pixel methods iterate the training split's images, or the unlabelled
     * pool's when they learn without labels (MUST: trains_unlabelled; the
     * pool's labels are hidden from the batches) */
    const bool pool = m->pixels && m->trains_unlabelled && task->unlabelled;
    const ct_dataset *ptrain = pool ? task->unlabelled : task->train;
    if (m->pixels ? !ptrain || ptrain->n_items == 0 : !data || data->n == 0)
        return ct_set_error(CT_ERR_ARG, "trainer: no training %s",
                            m->pixels ? "images" : "features");
    /* pixel methods: the training transform, item i of epoch e drawn from
     * (seed, e, i) so that a resumed run sees the same images */
    int S = m->pixels && task->clip ? ct_clip_get_config(task->clip)->image_size : 0;
    if (m->pixels && !task->clip)
        return ct_set_error(CT_ERR_ARG, "trainer: %s trains on pixels and needs the model",
                            m->name);
    ct_augment_cfg aug;
    bool use_aug = false;
    ct_pixel_src psrc = {0}, pplain = {0};
    /* segmentation: label maps travel with the pixels through the same
     * geometry; the evaluation transform is the whole image resized to the
     * input (ct_seg_preprocess), as segmentation evaluation reads it */
    const bool seg = m->pixels && task->train && task->train->masks;
    ct_preprocess_cfg seg_pre;
    if (seg) ct_seg_preprocess(task->pre, S, &seg_pre);
    if (seg && cfg->select_best_val)
        return ct_set_error(CT_ERR_ARG, "trainer: select=best_val selects on classification "
                            "accuracy; %s trains on label maps (select=last)", m->name);
    if (m->pixels) {
        s = ct_pixels_aug_from_name(cfg->train_aug ? cfg->train_aug : "rrc_flip",
                                    cfg->aug_scale_min > 0 ? cfg->aug_scale_min : 0.08, S, &aug,
                                    &use_aug);
        if (s != CT_OK) return s;
        psrc = (ct_pixel_src){ptrain, seg ? &seg_pre : task->pre, S, use_aug ? &aug : NULL,
                              ct_hash_str(cfg->seed, "trainer.pixels"), m->name, NULL};
        pplain = (ct_pixel_src){ptrain, task->pre, S, NULL, 0, m->name, NULL};
    }
    /* params() may list frozen tensors too (saved with the run, e.g. fitted
     * scalars); only those requiring grad are optimised and clipped */
    ct_tensor *train_p[MAX_PARAMS];
    int nt = 0;
    for (int i = 0; i < np; i++)
        if (p[i]->requires_grad) train_p[nt++] = p[i];
    if (nt == 0)
        return ct_set_error(CT_ERR_STATE, "trainer: method %s has a loss but nothing requires "
                            "grad", m->name);
    /* each learnable tensor's schedule: its parameter group's or the main one */
    int grp[MAX_PARAMS];
    float lrs[MAX_PARAMS];
    for (int gi = 0; gi < cfg->n_groups; gi++) {
        int hits = 0;
        for (int i = 0; i < nt; i++) hits += group_of(cfg, train_p[i]->name) == gi;
        if (!hits)
            return ct_set_error(CT_ERR_ARG, "trainer: parameter group %s.*: %s has no learnable "
                                "tensor of that name (its first is %s)", cfg->groups[gi].prefix,
                                m->name, train_p[0]->name ? train_p[0]->name : "unnamed");
    }
    for (int i = 0; i < nt; i++) grp[i] = group_of(cfg, train_p[i]->name);
    /* several ranks: pixel-path methods split each batch over them; others
     * (cheap steps on cached features) run the same steps on every rank */
    const bool dp = m->pixels && ct_dist_parallel();
    if (dp && m->before_step)
        return ct_set_error(CT_ERR_UNSUPPORTED, "trainer: %s edits the gradients of the whole "
                            "batch (before_step): train it with one rank", m->name);
    size_t n_train = 1;
    for (int i = 0; i < nt; i++) n_train += (size_t)train_p[i]->numel;
    ct_optim *opt = ct_optim_create(&cfg->optim, train_p, nt);
    if (!opt) return ct_last_error()[0] ? CT_ERR_ARG : CT_ERR_NOMEM;
    int start = 0, best_epoch = -1;
    double best_acc = -1;
    /* best-val snapshot of the learned tensors (checkpointed too) */
    size_t total = 0;
    for (int i = 0; i < np; i++) total += (size_t)p[i]->numel;
    float *best = cfg->select_best_val ? calloc(total ? total : 1, sizeof *best) : NULL;
    ct_features fz = {0}; /* frozen embeddings of train (frozen_features, no augmentation) */
    float *bz = NULL;
    /* what the checkpoints record and resume verifies (only with a run dir:
     * hashing a large model's weights takes a moment) */
    run_identity id = {0, 0};
    if (cfg->run_dir)
        id = (run_identity){data_hash(task, data), task->clip ? ct_clip_hash(task->clip) : 0};
    if (cfg->resume) {
        int done = -1;
        s = load_ckpt(cfg, m, p, np, opt, hp, task, &id, &done, &best_acc, &best_epoch, best,
                      total);
        if (s != CT_OK) {
            free(best);
            goto out;
        }
        start = done + 1;
        logf_(cfg, "resumed after epoch %d", done + 1);
    }
    /* with cycling, each epoch sees one augmented view: rows of view v */
    int64_t n_view = !m->train_set && task->train_feats && task->aug_feats && cfg->cycle_views
                         ? task->train_feats->n : 0;
    int64_t n_views = n_view > 0 ? data->n / n_view : 1;
    int64_t n = m->pixels ? ptrain->n_items : n_view > 0 ? n_view : data->n;
    /* a batch larger than the set is the whole set (full-batch methods such
     * as LP++ ask for batch_size=65536): buffers of n rows, not B */
    int64_t B = cfg->batch_size < n ? cfg->batch_size : n > 0 ? n : 1;
    size_t per = (size_t)3 * S * S, dim = m->pixels ? per : (size_t)data->dim;
    /* Dassl drops the last incomplete batch when there is a full one */
    int64_t nb = n >= B ? n / B : 1;
    ct_train_cfg eff = *cfg; /* iters: as many epochs as the steps span */
    if (cfg->iters_per_shot > 0) {
        int64_t K = task->n_classes > 0 ? task->n_classes : 1;
        eff.iters = (int64_t)cfg->iters_per_shot * ((n + K - 1) / K);
    }
    if (eff.iters > 0) {
        eff.epochs = (int)((eff.iters + nb - 1) / nb);
        eff.sched.total = eff.epochs;
        for (int gi = 0; gi < eff.n_groups; gi++) eff.groups[gi].sched.total = eff.epochs;
        cfg = &eff;
    }
    int64_t *order = malloc((size_t)n * sizeof *order);
    float *bx = malloc((size_t)B * dim * sizeof *bx);
    float *bw = m->pixels && m->plain_view ? malloc((size_t)B * dim * sizeof *bw) : NULL;
    int *by = malloc((size_t)B * sizeof *by);
    /* multi-task runs: each item's task travels with the batch */
    int *bk = task->n_tasks > 0 ? malloc((size_t)B * sizeof *bk) : NULL;
    /* the batch's rows of the per-token features (methods with dense_features) */
    int64_t T = !m->pixels && m->dense_features && data->dense ? data->n_tokens : 0;
    float *bd = T > 0 ? malloc((size_t)B * (size_t)T * dim * sizeof *bd) : NULL;
    ct_graph *g = ct_graph_create(0);
    float *gbuf = dp ? malloc(n_train * sizeof *gbuf) : NULL;
    /* multi-label targets travel with the batch */
    int nK = task->n_classes;
    const int8_t *all_t = m->pixels ? ptrain->targets : data->targets;
    int8_t *bt = all_t ? malloc((size_t)B * (size_t)nK) : NULL;
    uint8_t *bm = seg ? malloc((size_t)B * (size_t)S * (size_t)S) : NULL;
    if (!order || !bx || !by || !g || (cfg->select_best_val && !best) || (T > 0 && !bd) ||
        (dp && !gbuf) ||
        (all_t && !bt) || (task->n_tasks > 0 && !bk) || (seg && !bm) ||
        (m->pixels && m->plain_view && !bw)) {
        s = ct_set_error(CT_ERR_NOMEM, "trainer: out of memory");
        goto done;
    }
    /* the frozen tower's work on training images that are not augmented:
     * once, through the feature cache */
    if (m->pixels && m->frozen_features && !use_aug) {
        if ((s = frozen_of(task, ptrain, &fz)) != CT_OK) goto done;
        if (!(bz = malloc((size_t)B * (size_t)fz.dim * sizeof *bz))) {
            s = ct_set_error(CT_ERR_NOMEM, "trainer: out of memory");
            goto done;
        }
    }
    /* only the learned tensors' gradients are read after backward */
    ct_graph_set_reuse_grads(g, true);
    const char *val_name = (m->pixels ? task->val && task->val->targets
                                      : task->val_feats && task->val_feats->targets)
                               ? "mAP" : "acc";
    int end = cfg->stop_after > 0 && cfg->stop_after < cfg->epochs ? cfg->stop_after : cfg->epochs;
    for (int ep = start; ep < end && s == CT_OK; ep++) {
        float lr = ct_sched_lr(&cfg->sched, ep);
        ct_rng rng;
        ct_rng_init(&rng, ct_hash_u64(cfg->seed, (uint64_t)ep));
        ct_rng_permutation(&rng, order, (size_t)n);
        double loss_sum = 0;
        int64_t nb_ep = nb;
        if (cfg->iters > 0 && (int64_t)(ep + 1) * nb > cfg->iters) nb_ep = cfg->iters - ep * nb;
        for (int64_t bi = 0; bi < nb_ep && s == CT_OK; bi++) {
            int64_t nbatch = n - bi * B < B ? n - bi * B : B;
            int64_t base = n_view > 0 ? (ep % n_views) * n_view : 0;
            ct_batch b = {nbatch, bx, by, NULL,
                          ct_hash_u64(ct_hash_u64(cfg->seed, (uint64_t)ep), (uint64_t)bi + 1),
                          ep, NULL, bt, bd, (int)T, NULL, NULL, NULL};
            /* data-parallel: this rank's slice [lo, hi) of the batch */
            const int64_t n_all = nbatch;
            int64_t lo = 0, hi = nbatch;
            if (dp) ct_dist_range(nbatch, 1, ct_dist_rank(), ct_dist_size(), &lo, &hi);
            if (m->pixels) {
                const int64_t *idx = order + bi * B + lo;
                nbatch = hi - lo, b.n = nbatch;
                for (int64_t j = 0; j < nbatch; j++) by[j] = pool ? -1 : ptrain->items[idx[j]].label;
                for (int64_t j = 0; bt && j < nbatch; j++)
                    memcpy(bt + j * nK, all_t + idx[j] * nK, (size_t)nK);
                s = seg ? ct_pixels_batch_masks(&psrc, idx, nbatch, (uint64_t)ep, bx, bm)
                        : ct_pixels_batch(&psrc, idx, nbatch, (uint64_t)ep, bx);
                if (s != CT_OK) break;
                b.x = NULL, b.pixels = bx, b.masks = bm;
                if (bw && (s = ct_pixels_batch(&pplain, idx, nbatch, 0, bw)) != CT_OK) break;
                b.pixels_plain = bw;
                for (int64_t j = 0; bz && j < nbatch; j++)
                    memcpy(bz + j * fz.dim, fz.x + idx[j] * fz.dim, (size_t)fz.dim * sizeof *bz);
                b.frozen = bz;
            } else {
                for (int64_t j = 0; j < nbatch; j++) {
                    int64_t src = base + order[bi * B + j];
                    memcpy(bx + j * dim, data->x + src * dim, dim * sizeof *bx);
                    if (bd)
                        memcpy(bd + j * T * (int64_t)dim, data->dense + src * T * (int64_t)dim,
                               (size_t)T * dim * sizeof *bd);
                    by[j] = data->labels[src];
                    if (bt) memcpy(bt + j * nK, all_t + src * nK, (size_t)nK);
                }
            }
            for (int64_t j = 0; bk && j < nbatch; j++) bk[j] = task_of_class(task, by[j]);
            b.tasks = bk;
            /* open_clip's cosine_lr over the steps of the whole run */
            int64_t steps = cfg->iters > 0 ? cfg->iters : (int64_t)cfg->epochs * nb;
            int64_t warm = cfg->warmup_fraction > 0
                               ? (int64_t)llround(cfg->warmup_fraction * (double)steps)
                               : cfg->warmup_steps;
            if (cfg->step_sched)
                lr = (float)ct_sched_step_cosine(cfg->sched.base_lr, cfg->sched.min_lr,
                                                 (int64_t)ep * nb + bi, warm, steps);
            for (int i = 0; i < nt; i++) {
                const ct_sched_config *gs = grp[i] < 0 ? NULL : &cfg->groups[grp[i]].sched;
                lrs[i] = !gs ? lr
                         : cfg->step_sched
                             ? (float)ct_sched_step_cosine(gs->base_lr, gs->min_lr,
                                                           (int64_t)ep * nb + bi, warm, steps)
                             : ct_sched_lr(gs, ep);
            }
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            float lv = 0;
            if (nbatch > 0) { /* (a rank's slice of a batch smaller than the ranks: empty) */
                ct_tensor *loss = m->loss(state, g, &b);
                if (!loss || (s = ct_backward(g, loss)) != CT_OK) {
                    if (s == CT_OK)
                        s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_ARG;
                    break;
                }
                lv = loss->data[0];
            }
            if (dp && (s = dp_reduce(train_p, nt, gbuf, &lv, hi - lo, n_all)) != CT_OK) break;
            loss_sum += lv;
            if (cfg->progress)
                cfg->progress(cfg->progress_ctx, "train", (int64_t)(ep - start) * nb + bi + 1,
                              (int64_t)(end - start) * nb, lv, lr);
            if (m->before_step && (s = m->before_step(state, g, &b)) != CT_OK) break;
            if (cfg->max_grad_norm > 0) ct_clip_grad_norm(train_p, nt, cfg->max_grad_norm);
            s = ct_optim_step_each(opt, lrs, false);
            if (s == CT_OK && m->after_step) s = m->after_step(state, &b);
        }
        if (s != CT_OK) break;
        if (m->end_epoch && (s = m->end_epoch(state, ep, cfg->epochs)) != CT_OK) break;
        double acc = -1;
        /* (segmentation runs are scored by mIoU after training, not per epoch) */
        if (m->pixels ? task->val && task->val->n_items && !seg
                      : task->val_feats && task->val_feats->n) {
            acc = accuracy(m, state, task, &s);
            if (s != CT_OK) break;
            if (acc > best_acc) {
                best_acc = acc, best_epoch = ep;
                if (best) {
                    size_t off = 0;
                    for (int i = 0; i < np; i++) {
                        memcpy(best + off, p[i]->data, (size_t)p[i]->numel * sizeof(float));
                        off += (size_t)p[i]->numel;
                    }
                }
            }
        }
        if (acc >= 0)
            logf_(cfg, "epoch %d/%d  lr %.3g  loss %.4f  val %s %.2f%%", ep + 1, cfg->epochs,
                  (double)lr, loss_sum / (double)nb_ep, val_name, 100 * acc);
        else
            logf_(cfg, "epoch %d/%d  lr %.3g  loss %.4f", ep + 1, cfg->epochs, (double)lr,
                  loss_sum / (double)nb_ep);
        if (cfg->run_dir && ((ep + 1) % cfg->checkpoint_every == 0 || ep + 1 == end))
            s = save_ckpt(cfg, m, p, np, opt, ep, best_acc, best_epoch, best, total, hp, task,
                          &id);
    }
    if (s == CT_OK && best && best_epoch >= 0 && end == cfg->epochs) {
        size_t off = 0;
        for (int i = 0; i < np; i++) {
            memcpy(p[i]->data, best + off, (size_t)p[i]->numel * sizeof(float));
            off += (size_t)p[i]->numel;
        }
        logf_(cfg, "selected epoch %d (val %s %.2f%%)", best_epoch + 1, val_name, 100 * best_acc);
    }
    if (s == CT_OK && end == cfg->epochs && m->finish) s = m->finish(state, task);
    /* replicated training must leave every rank the same tensors */
    if (s == CT_OK && ct_dist_parallel()) s = ct_dist_same_u64(params_hash(p, np), "trainer: "
                                                               "the learned tensors");
done:
    free(gbuf);
    ct_graph_free(g);
    free(order), free(bx), free(bw), free(by), free(best), free(bt), free(bd), free(bk), free(bm);
out:
    free(bz);
    ct_features_free(&fz);
    ct_optim_free(opt);
    return s;
}
