#include "api/run.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "report/report.h"
#include "train/features.h"
#include "api/official.h"
#include "api/segment.h"

void ct_run_logf(ct_run_log *L, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (L->len + n + 2 > L->cap) {
        size_t cap = (L->cap + n + 2) * 2;
        char *p = realloc(L->text, cap);
        if (!p) return;
        L->text = p, L->cap = cap;
    }
    memcpy(L->text + L->len, line, n);
    L->len += n;
    L->text[L->len++] = '\n';
    L->text[L->len] = 0;
    if (L->log) L->log(L->log_ctx, line);
}

void ct_run_log_line(void *ctx, const char *line) { ct_run_logf(ctx, "%s", line); }


typedef struct {
    const ct_run_cfg *cfg;
    char stage[80];
} feat_progress;

static void on_features(void *ctx, int64_t done, int64_t total) {
    feat_progress *fp = ctx;
    fp->cfg->progress(fp->cfg->progress_ctx, fp->stage, done, total, NAN, NAN);
}

/* The features of d (view 0: the evaluation transform; segmentation
 * datasets: ct_seg_preprocess's whole-image geometry). */
static ct_status features(const ct_run_cfg *cfg, const ct_dataset *d, int view, ct_run_log *L,
                          const char *what, ct_features *out) {
    feat_progress fp = {cfg, ""};
    snprintf(fp.stage, sizeof fp.stage, "features: %s", what);
    ct_preprocess_cfg seg_pre;
    const ct_preprocess_cfg *pre = &ct_model_bundle(cfg->model)->pre;
    if (d->masks) {
        ct_seg_preprocess(pre, ct_clip_get_config(ct_model_bundle(cfg->model)->clip)->image_size,
                          &seg_pre);
        pre = &seg_pre;
    }
    ct_feature_req r = {.clip = ct_model_bundle(cfg->model)->clip, .pre = pre, .data = d,
                        .view = view, .seed = cfg->seed, .cache_dir = cfg->cache_dir, .batch = 32,
                        .progress = cfg->progress ? on_features : NULL, .progress_ctx = &fp,
                        .dense = cfg->method->dense_features,
                        .dense_kind = cfg->method->dense_kind,
                        .raw_pixels = cfg->method->raw_pixels};
    ct_status s = ct_features_get(&r, out);
    if (s == CT_OK) ct_run_logf(L, "features: %s, %lld images", what, (long long)d->n_items);
    return s;
}

/* The labels of d as features without values (pixel methods). */
static ct_status labels_only(const ct_dataset *d, ct_features *out) {
    memset(out, 0, sizeof *out);
    out->labels = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *out->labels);
    if (!out->labels) return ct_set_error(CT_ERR_NOMEM, "run: out of memory");
    for (int64_t i = 0; i < d->n_items; i++) out->labels[i] = d->items[i].label;
    out->n = d->n_items;
    return CT_OK;
}

void ct_run_config_model(cJSON *j, const ct_model *model) {
    /* absolute paths: eval / predict read them again from anywhere; the
     * model's content hash tells whether the model there is still the one */
    char model_abs[4096], mh[17];
    const char *mp = ct_model_path(model) ? ct_model_path(model) : "";
    if (*mp && mp[0] != '/' && realpath(mp, model_abs)) mp = model_abs;
    cJSON_AddStringToObject(j, "model", mp);
    snprintf(mh, sizeof mh, "%016llx", (unsigned long long)ct_clip_hash(ct_model_bundle(model)->clip));
    cJSON_AddStringToObject(j, "model_hash", mh);
    /* how it was loaded: reloading the path alone could give another model */
    if (ct_model_bpe(model))
        cJSON_AddStringToObject(j, "bpe", ct_model_bpe(model));
    else
        cJSON_AddNullToObject(j, "bpe");
    cJSON_AddStringToObject(j, "act", ct_model_act(model));
    char th[17], ph[17];
    ct_model_part_hashes(model, th, ph);
    cJSON_AddStringToObject(j, "tokenizer_hash", th);
    cJSON_AddStringToObject(j, "preprocess_hash", ph);
}

static ct_status write_config(const ct_run_cfg *cfg, const ct_kv *hp, const char *path) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return ct_set_error(CT_ERR_NOMEM, "run: out of memory");
    cJSON_AddStringToObject(j, "dataset", cfg->data->train->name);
    char data_abs[8192];
    const char *ds = cfg->data_spec ? cfg->data_spec : "";
    if (*ds && ct_data_spec_absolute(ds, data_abs, sizeof data_abs) == CT_OK) ds = data_abs;
    ct_run_config_model(j, cfg->model);
    if (cfg->import_from) {
        char imp[4096];
        const char *ip = cfg->import_from;
        if (ip[0] != '/' && realpath(ip, imp)) ip = imp;
        cJSON_AddStringToObject(j, "imported_from", ip);
    }
    cJSON_AddStringToObject(j, "data", ds);
    cJSON_AddStringToObject(j, "method", cfg->method->name);
    cJSON_AddNumberToObject(j, "shots", cfg->shots);
    cJSON_AddNumberToObject(j, "seed", (double)cfg->seed);
    cJSON_AddNumberToObject(j, "max_test", (double)cfg->max_test);
    cJSON_AddStringToObject(j, "subsample", cfg->subsample ? cfg->subsample : "all");
    cJSON_AddStringToObject(j, "task", cfg->data->train->masks     ? "segmentation"
                                       : cfg->data->train->targets ? "multi-label"
                                                                   : "single-label");
    /* a hierarchy run keeps its taxonomy in the run directory */
    if (cfg->taxonomy || cfg->taxonomy_path) {
        cJSON_AddStringToObject(j, "taxonomy", "taxonomy.txt");
        char tabs[4096];
        const char *tp = cfg->taxonomy_path;
        if (tp && tp[0] != '/' && realpath(tp, tabs)) tp = tabs;
        if (tp) cJSON_AddStringToObject(j, "taxonomy_source", tp);
    }
    if (cfg->partial_labels > 0 && cfg->partial_labels < 1)
        cJSON_AddNumberToObject(j, "partial_labels", cfg->partial_labels);
    cJSON *h = cJSON_AddObjectToObject(j, "hyper_parameters");
    for (int i = 0; i < hp->n; i++) cJSON_AddStringToObject(h, hp->keys[i], hp->vals[i]);
    /* eval and predict need the label order without reopening the dataset */
    const ct_dataset *tr = cfg->data->train;
    cJSON *cn = cJSON_AddArrayToObject(j, "classnames");
    for (int k = 0; cn && k < tr->n_classes; k++)
        cJSON_AddItemToArray(cn, cJSON_CreateString(tr->classnames[k]));
    ct_status s = ct_json_save(path, j);
    cJSON_Delete(j);
    return s;
}

/* The saved name of params()'s tensor i: the method's own (param_names), or
 * "param.<i>". */
static const char *param_name(const char **names, int nn, int i, char *buf, size_t n) {
    if (i < nn && names[i] && *names[i]) return names[i];
    snprintf(buf, n, "param.%d", i);
    return buf;
}

static int learned_names(const ct_method *m, void *state, const char **names, int cap) {
    if (!m->param_names) return 0;
    for (int i = 0; i < cap; i++) names[i] = NULL;
    return m->param_names(state, names, cap);
}

ct_status ct_run_save_learned_meta(const ct_method *m, void *state, const char *run_dir,
                                   const char *const *meta, int n_meta) {
    enum { CAP = 256, META = 16 };
    ct_tensor *p[CAP];
    const char *names[CAP];
    int np = m->params ? m->params(state, p, CAP) : 0;
    int nn = learned_names(m, state, names, CAP);
    if (nn && nn != np)
        return ct_set_error(CT_ERR_STATE, "run: %s names %d learned tensors but has %d",
                            m->name, nn, np);
    ct_st_entry e[CAP];
    char bufs[CAP][32];
    for (int i = 0; i < np; i++) {
        const char *name = param_name(names, nn, i, bufs[i], sizeof bufs[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(e[j].name, name))
                return ct_set_error(CT_ERR_STATE, "run: %s names two learned tensors %s",
                                    m->name, name);
        e[i] = (ct_st_entry){name, CT_F32, p[i]->ndim, p[i]->shape, p[i]->data};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/learned.safetensors", run_dir);
    const char *kv[2 + 2 * META] = {"method", m->name};
    int nkv = 1;
    for (int i = 0; i < n_meta && i < META; i++, nkv++)
        kv[2 * nkv] = meta[2 * i], kv[2 * nkv + 1] = meta[2 * i + 1];
    return ct_safetensors_write(path, e, np, kv, nkv);
}

ct_status ct_run_save_learned(const ct_method *m, void *state, const char *run_dir) {
    return ct_run_save_learned_meta(m, state, run_dir, NULL, 0);
}

/* Give an owned tensor the saved tensor's shape (same rank), in place, so
 * that the method's pointers to it stay valid. */
static ct_status resize_to(ct_tensor *p, const ct_st_tensor *t, const char *path) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    float *data = calloc((size_t)(n ? n : 1), sizeof *data);
    float *grad = p->grad ? calloc((size_t)(n ? n : 1), sizeof *grad) : NULL;
    if (!data || (p->grad && !grad)) {
        free(data), free(grad);
        return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    }
    free(p->data), free(p->grad);
    p->data = data, p->grad = grad, p->numel = n;
    for (int d = 0; d < t->ndim; d++) p->shape[d] = t->shape[d];
    return CT_OK;
}

ct_status ct_run_load_learned(const ct_method *m, void *state, const char *run_dir) {
    ct_tensor *p[256];
    int np = m->params ? m->params(state, p, 256) : 0;
    char path[4096], name[128];
    snprintf(path, sizeof path, "%s/learned.safetensors", run_dir);
    ct_safetensors *st = ct_safetensors_open(path);
    if (!st) return CT_ERR_FORMAT;
    ct_status s = CT_OK;
    const char *meth = ct_safetensors_meta(st, "method");
    if (!meth || strcmp(meth, m->name))
        s = ct_set_error(CT_ERR_FORMAT, "%s: saved by method %s, not %s", path,
                         meth ? meth : "(unknown)", m->name);
    if (s == CT_OK && ct_safetensors_count(st) != np)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %d tensors, the method has %d", path,
                         ct_safetensors_count(st), np);
    const char *names[256];
    int nn = s == CT_OK ? learned_names(m, state, names, 256) : 0;
    for (int i = 0; s == CT_OK && i < np; i++) {
        /* runs saved before the method named its tensors say "param.<i>" */
        char buf[32];
        const char *want = param_name(names, nn, i, buf, sizeof buf);
        snprintf(name, sizeof name, "param.%d", i);
        const ct_st_tensor *t = ct_safetensors_find(st, want);
        if (!t) t = ct_safetensors_find(st, name);
        if (t || nn) snprintf(name, sizeof name, "%s", want);
        if (t && m->learned_shapes_from_file && t->dtype == CT_F32 && p[i]->owns &&
            t->ndim == p[i]->ndim && t->nbytes != (size_t)p[i]->numel * sizeof(float))
            s = resize_to(p[i], t, path);
        if (s != CT_OK) break;
        if (!t || t->dtype != CT_F32 || t->nbytes != (size_t)p[i]->numel * sizeof(float))
            s = ct_set_error(CT_ERR_FORMAT, "%s: tensor %s is missing or has the wrong size",
                             path, name);
        else
            memcpy(p[i]->data, t->data, t->nbytes);
    }
    ct_safetensors_close(st);
    return s;
}

/* Class scores (d->n_items, K) of d: from its images for methods that score
 * images (pixel and test-time methods; f then gives only the labels), else
 * from its cached features f. */
static ct_status score(const ct_method *m, void *st, const ct_task *task, const ct_dataset *d,
                       const ct_features *f, float *out) {
    return ct_method_scores_images(m) ? ct_predict_images(m, st, task, d, out)
                                      : ct_predict(m, st, f, out);
}

/* Base-to-novel: a state of the same method for the novel classes, given
 * the learned tensors of the trained one, scored on cfg->novel_test;
 * novel.json records it. */
static ct_status eval_novel(const ct_run_cfg *cfg, const ct_task *base, ct_kv *hp, void *trained,
                            ct_run_log *L, double *top1) {
    const ct_method *m = cfg->method;
    const ct_dataset *d = cfg->novel_test;
    ct_features f = {0};
    ct_status s = m->pixels ? labels_only(d, &f) : features(cfg, d, 0, L, "novel test", &f);
    if (s != CT_OK) return s;
    ct_task task = *base;
    task.n_classes = d->n_classes, task.classnames = d->classnames;
    void *st = NULL;
    float *sc = NULL;
    ct_metrics mt = {0};
    if ((s = m->create(&task, hp, &st)) != CT_OK) goto out;
    ct_tensor *a[256], *b[256], *c[256];
    int na = m->params ? m->params(trained, a, 256) : 0;
    int nb = m->params ? m->params(st, b, 256) : 0;
    bool same = na == nb;
    for (int i = 0; same && i < na; i++) same = ct_tensor_same_shape(a[i], b[i]);
    /* learned tensors sized by the number of classes (a linear head, a
     * cache of labels) mean nothing for other classes, even when the two
     * halves have as many: probe with one class more */
    if (same && na > 0) {
        char **names = malloc((size_t)(d->n_classes + 1) * sizeof *names);
        void *probe = NULL;
        ct_task t3 = task;
        if (!names) {
            s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
            goto out;
        }
        memcpy(names, d->classnames, (size_t)d->n_classes * sizeof *names);
        names[d->n_classes] = "object";
        t3.n_classes = d->n_classes + 1, t3.classnames = names;
        if (m->create(&t3, hp, &probe) == CT_OK) {
            int nc = m->params(probe, c, 256);
            same = nc == na;
            for (int i = 0; same && i < na; i++) same = ct_tensor_same_shape(c[i], b[i]);
            m->destroy(probe);
        }
        free(names);
    }
    if (!same) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "run: %s's learned tensors depend on the classes: "
                         "it cannot be evaluated on novel classes", m->name);
        goto out;
    }
    for (int i = 0; i < na; i++)
        memcpy(b[i]->data, a[i]->data, (size_t)a[i]->numel * sizeof(float));
    int K = d->n_classes;
    sc = malloc((size_t)(f.n ? f.n : 1) * (size_t)K * sizeof *sc);
    if (!sc) {
        s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
        goto out;
    }
    s = score(m, st, &task, d, &f, sc);
    if (s == CT_OK) s = ct_metrics_compute(sc, false, f.labels, f.n, K, 15, &mt);
    if (s != CT_OK) goto out;
    *top1 = mt.top1;
    ct_run_logf(L, "novel test (%d classes, %lld images): top-1 %.2f%%  top-5 %.2f%%", K,
            (long long)f.n, 100 * mt.top1, 100 * mt.top5);
    if (cfg->run_dir) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "top1", mt.top1);
        cJSON_AddNumberToObject(j, "top5", mt.top5);
        cJSON_AddNumberToObject(j, "n", (double)f.n);
        cJSON *cn = cJSON_AddArrayToObject(j, "classnames");
        for (int k = 0; k < K; k++) cJSON_AddItemToArray(cn, cJSON_CreateString(d->classnames[k]));
        char path[4200];
        snprintf(path, sizeof path, "%s/novel.json", cfg->run_dir);
        s = ct_json_save(path, j);
        cJSON_Delete(j);
    }
out:
    if (st) m->destroy(st);
    ct_metrics_free(&mt);
    free(sc);
    ct_features_free(&f);
    return s;
}

static ct_status dry_create(const ct_run_cfg *cfg, ct_kv *hp) {
    const ct_dataset *tr = cfg->data ? cfg->data->train : NULL;
    if (!tr || !cfg->model) return CT_OK; /* ct_run reports these */
    ct_dataset none = {.name = tr->name, .root = "", .n_classes = tr->n_classes,
                       .classnames = tr->classnames};
    ct_features nof = {.dim = ct_clip_get_config(ct_model_bundle(cfg->model)->clip)->embed_dim};
    ct_task t = {.clip = ct_model_bundle(cfg->model)->clip, .tok = ct_model_bundle(cfg->model)->tok, .pre = &ct_model_bundle(cfg->model)->pre,
                 .dataset_name = tr->name, .n_classes = tr->n_classes,
                 .classnames = tr->classnames, .train = &none, .train_feats = &nof,
                 .seed = cfg->seed};
    void *st = NULL;
    ct_status s = cfg->method->create(&t, hp, &st);
    if (st) cfg->method->destroy(st);
    return s == CT_OK ? ct_kv_check_used(hp, cfg->method->name) : s;
}

/* Cache keys of d's first n items (malloc'd strings); NULL on OOM. */
static char **item_keys(const ct_dataset *d, int64_t n) {
    char **keys = calloc(n > 0 ? (size_t)n : 1, sizeof *keys);
    for (int64_t i = 0; keys && i < n; i++) {
        char kb[4096];
        const char *k = ct_dataset_item_key(d, i, kb, sizeof kb);
        keys[i] = strdup(k ? k : "?");
    }
    return keys;
}

static void free_keys(char **keys, int64_t n) {
    for (int64_t i = 0; keys && i < n; i++) free(keys[i]);
    free(keys);
}

/* learned.safetensors (the tensors carry what they mean: method,
 * hyper-parameters and the frozen model they were trained on) and log.txt */
static ct_status save_learned_and_log(const ct_run_cfg *cfg, const ct_kv *hp, void *state,
                                      const ct_run_log *L) {
    char *hptext = NULL, mh[17], path[4200];
    ct_status s = ct_kv_to_text(hp, &hptext);
    snprintf(mh, sizeof mh, "%016llx",
             (unsigned long long)ct_clip_hash(ct_model_bundle(cfg->model)->clip));
    const char *meta[] = {"hyper_parameters", hptext, "model_hash", mh,
                          "format", "cliptune-learned-1"};
    if (s == CT_OK) s = ct_run_save_learned_meta(cfg->method, state, cfg->run_dir, meta, 3);
    free(hptext);
    if (s != CT_OK) return s;
    snprintf(path, sizeof path, "%s/log.txt", cfg->run_dir);
    return ct_write_file_atomic(path, L->text ? L->text : "", L->len);
}

/* The report's configuration table: (key, value) pairs pointing into cfg,
 * hp and the struct's own buffers. */
typedef struct {
    const char **kv;
    int n;
    char shots[32], seed[32], partial[32];
} report_cfg;

static ct_status report_cfg_make(const ct_run_cfg *cfg, const ct_kv *hp, report_cfg *r) {
    r->n = 0;
    if (!(r->kv = calloc((size_t)(2 * hp->n + 12), sizeof *r->kv)))
        return ct_set_error(CT_ERR_NOMEM, "run: out of memory");
    snprintf(r->shots, sizeof r->shots, "%d", cfg->shots);
    snprintf(r->seed, sizeof r->seed, "%llu", (unsigned long long)cfg->seed);
    snprintf(r->partial, sizeof r->partial, "%g", cfg->partial_labels);
    const char **kv = r->kv;
    int nk = 0;
    kv[nk++] = "model", kv[nk++] = ct_model_path(cfg->model);
    kv[nk++] = "data", kv[nk++] = cfg->data_spec;
    kv[nk++] = "method", kv[nk++] = cfg->method->name;
    kv[nk++] = "shots", kv[nk++] = r->shots;
    kv[nk++] = "seed", kv[nk++] = r->seed;
    if (cfg->partial_labels > 0 && cfg->partial_labels < 1)
        kv[nk++] = "partial labels", kv[nk++] = r->partial;
    for (int i = 0; i < hp->n; i++) kv[nk++] = hp->keys[i], kv[nk++] = hp->vals[i];
    r->n = nk / 2;
    return CT_OK;
}

static void run_title(const ct_run_cfg *cfg, char *buf, size_t n) {
    snprintf(buf, n, "%s on %s (%d-shot, seed %llu)", cfg->method->name, cfg->data->train->name,
             cfg->shots, (unsigned long long)cfg->seed);
}

/* Multi-label: metrics (test, and val for the record), the log line and,
 * with a run directory, the run's files with the multi-label metrics.json,
 * predictions.csv (sigmoid probabilities) and report. scores are test's
 * logits; they become probabilities. */
static ct_status run_ml(const ct_run_cfg *cfg, const ct_task *task, void *state,
                        const ct_dataset *test, const ct_features *fte, const ct_dataset *val,
                        const ct_features *fval, bool trains, float *scores, const ct_kv *hp,
                        ct_run_log *L, ct_run_result *res) {
    const ct_method *me = cfg->method;
    int K = task->n_classes;
    ct_ml_metrics mm = {0};
    ct_status s = ct_ml_metrics_compute(scores, false, test->targets, fte->n, K,
                                        CT_ML_THRESH_DEFAULT, &mm);
    if (s != CT_OK) return s;
    res->map = mm.map, res->map_voc07 = mm.map_voc07, res->cf1 = mm.cf1, res->of1 = mm.of1;
    res->cf1_top3 = mm.cf13, res->of1_top3 = mm.of13;
    if (trains && val && fval->n) {
        float *vs = malloc((size_t)fval->n * (size_t)K * sizeof *vs);
        ct_ml_metrics vm = {0};
        if (vs &&
            score(me, state, task, val, fval, vs) == CT_OK &&
            ct_ml_metrics_compute(vs, false, val->targets, fval->n, K, CT_ML_THRESH_DEFAULT,
                                  &vm) == CT_OK)
            res->val_map = vm.map;
        ct_ml_metrics_free(&vm);
        free(vs);
    }
    ct_run_logf(L, "test: mAP %.2f%%  mAP(VOC07) %.2f%%  CF1 %.2f%%  OF1 %.2f%% (p >= %.2g)  "
            "CF1 %.2f%%  OF1 %.2f%% (top-%d)", 100 * mm.map, 100 * mm.map_voc07, 100 * mm.cf1,
            100 * mm.of1, mm.thresh, 100 * mm.cf13, 100 * mm.of13, mm.top_k);
    if (cfg->run_dir) {
        const char *const *cn = (const char *const *)task->classnames;
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", cfg->run_dir);
        s = write_config(cfg, hp, path);
        for (int64_t i = 0; i < fte->n * K; i++) scores[i] = 1 / (1 + expf(-scores[i]));
        char **keys = s == CT_OK ? item_keys(test, fte->n) : NULL;
        snprintf(path, sizeof path, "%s/predictions.csv", cfg->run_dir);
        if (s == CT_OK)
            s = keys ? ct_ml_predictions_save_csv(path, (const char *const *)keys, test->targets,
                                                  scores, fte->n, K, mm.thresh, cn)
                     : CT_ERR_NOMEM;
        free_keys(keys, fte->n);
        if (s == CT_OK) s = save_learned_and_log(cfg, hp, state, L);
        report_cfg rc = {0};
        char title[256];
        run_title(cfg, title, sizeof title);
        if (s == CT_OK) s = report_cfg_make(cfg, hp, &rc);
        if (s == CT_OK) s = ct_report_run_ml(cfg->run_dir, title, rc.kv, rc.n, &mm, cn, L->text);
        free(rc.kv);
        /* last: a run directory with metrics.json is a finished run */
        snprintf(path, sizeof path, "%s/metrics.json", cfg->run_dir);
        if (s == CT_OK) s = ct_ml_metrics_save_json(&mm, cn, path);
    }
    ct_ml_metrics_free(&mm);
    return s;
}

/* Segmentation: label the test images, score them against their label
 * maps and, with a run directory, write the run's files (predictions/,
 * overlays.png, metrics.json, report.md). */
static ct_status run_seg(const ct_run_cfg *cfg, void *state, const ct_dataset *test,
                         const ct_features *fte, const ct_kv *hp, ct_run_log *L,
                         ct_run_result *res) {
    const ct_method *me = cfg->method;
    int K = cfg->data->train->n_classes;
    ct_seg_metrics sm = {0};
    ct_status s = CT_OK;
    if (cfg->run_dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", cfg->run_dir);
        s = write_config(cfg, hp, path);
    }
    const ct_bundle *mb = ct_model_bundle(cfg->model);
    ct_seg_model sg = {mb->clip, &mb->pre};
    if (s == CT_OK) s = ct_seg_evaluate(me, state, test, fte, &sg, K, cfg->run_dir, &sm);
    if (s != CT_OK) return s;
    *res = (ct_run_result){.top1 = NAN, .top5 = NAN, .macro_f1 = NAN, .ece = NAN,
                           .val_top1 = NAN, .novel_top1 = NAN, .map = NAN, .map_voc07 = NAN,
                           .cf1 = NAN, .of1 = NAN, .cf1_top3 = NAN, .of1_top3 = NAN,
                           .val_map = NAN, .segmentation = true, .miou = sm.miou,
                           .macc = sm.macc, .aacc = sm.aacc, .leaf_acc = NAN, .hca = NAN,
                           .mta = NAN};
    ct_run_logf(L, "test: mIoU %.2f%%  mAcc %.2f%%  aAcc %.2f%% (%lld labelled pixels, %d of %d "
            "classes present)", 100 * sm.miou, 100 * sm.macc, 100 * sm.aacc,
            (long long)sm.n_pixels, sm.n_iou_classes, K);
    if (cfg->run_dir) {
        const char *const *cn = (const char *const *)cfg->data->train->classnames;
        char path[4200];
        s = save_learned_and_log(cfg, hp, state, L);
        report_cfg rc = {0};
        char title[256];
        run_title(cfg, title, sizeof title);
        if (s == CT_OK) s = report_cfg_make(cfg, hp, &rc);
        if (s == CT_OK) s = ct_report_run_seg(cfg->run_dir, title, rc.kv, rc.n, &sm, cn, L->text);
        free(rc.kv);
        /* last: a run directory with metrics.json is a finished run */
        snprintf(path, sizeof path, "%s/metrics.json", cfg->run_dir);
        if (s == CT_OK) s = ct_seg_metrics_save_json(&sm, cn, path);
    }
    ct_seg_metrics_free(&sm);
    return s;
}

/* A hierarchy run's metrics (run_hier.c) into m and res, its log line and
 * run_dir/taxonomy.txt. */
static ct_status run_hier_metrics(const ct_run_cfg *cfg, const ct_task *task, ct_kv *hp,
                                  void *state, const ct_taxonomy *tax, const ct_dataset *test,
                                  const ct_features *fte,
                                  const float *scores, ct_metrics *m, ct_run_log *L,
                                  ct_run_result *res) {
    const ct_method *me = cfg->method;
    ct_status s = ct_run_hierarchy(me, state, task, hp, tax, me->pixels ? NULL : fte, test,
                                   scores, fte->labels, fte->n, m);
    if (s != CT_OK) return s;
    res->hierarchy = true, res->leaf_acc = m->leaf_acc, res->hca = m->hca, res->mta = m->mta;
    res->n_cuts = m->n_cuts, res->node_scores_from = m->node_scores_from;
    ct_run_logf(L, "hierarchy (%d nodes, %d cuts, nodes scored from %s): leaf %.2f%%  HCA %.2f%%  "
            "MTA %.2f%%", tax->n_nodes, m->n_cuts, m->node_scores_from, 100 * m->leaf_acc,
            100 * m->hca, 100 * m->mta);
    if (!cfg->run_dir) return CT_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/taxonomy.txt", cfg->run_dir);
    return ct_taxonomy_save(tax, path);
}

ct_run_cfg ct_run_cfg_default(void) {
    return (ct_run_cfg){.shots = 16, .seed = 1, .subsample = "all"};
}

ct_status ct_run(const ct_run_cfg *cfg, ct_run_result *res) {
    if (!cfg || !res || !cfg->model || !cfg->data || !cfg->data->train || !cfg->data->test ||
        !cfg->method)
        return ct_set_error(CT_ERR_ARG, "run: NULL model, data, method or result");
    const bool seg = cfg->data->train->masks || cfg->data->test->masks;
    if (seg && (!cfg->data->train->masks || !cfg->data->test->masks))
        return ct_set_error(CT_ERR_ARG, "run: %s: the training split is %s but the test split "
                            "is not", cfg->data->train->name, cfg->data->train->masks ?
                            "a segmentation set" : "a classification set");
    if (seg && !cfg->method->predict_patches && !cfg->method->seg_pixels)
        return ct_set_error(CT_ERR_UNSUPPORTED, "run: %s labels whole images; %s is a "
                            "segmentation dataset: use a method that labels pixels (maskclip)",
                            cfg->method->name, cfg->data->train->name);
    if (seg && !cfg->method->seg_pixels && (cfg->method->loss || cfg->method->fit))
        return ct_set_error(CT_ERR_UNSUPPORTED, "run: %s: training on label maps is not "
                            "supported for it (it scores patch features; denseclip trains "
                            "on label maps; training-free methods: "
                            "maskclip)", cfg->method->name);
    if (!seg && ((cfg->method->predict_patches && !cfg->method->logits) ||
                 cfg->method->seg_pixels))
        return ct_set_error(CT_ERR_UNSUPPORTED, "run: %s labels pixels; %s is not a segmentation "
                            "dataset (vocseg:)", cfg->method->name, cfg->data->train->name);
    if (seg && (cfg->novel_test || cfg->partial_labels > 0 || cfg->taxonomy ||
                cfg->taxonomy_path))
        return ct_set_error(CT_ERR_UNSUPPORTED, "run: base-to-novel evaluation, partial labels "
                            "and taxonomies are for classification datasets, not %s",
                            cfg->data->train->name);
    ct_run_log L = {cfg->log, cfg->log_ctx, NULL, 0, 0};
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, cfg->method->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, cfg->set);
    int views = 0, unl_max = 0;
    if (s == CT_OK) s = ct_kv_int(&hp, "aug_views", 0, &views);
    /* the unlabelled pool: the whole training split, or a random part of it */
    if (s == CT_OK) s = ct_kv_int(&hp, "unlabelled", 0, &unl_max);
    if (s == CT_OK && (unl_max < 0 || (unl_max > 0 && !cfg->method->wants_unlabelled)))
        s = ct_set_error(CT_ERR_ARG, "run: unlabelled=%d: a count >= 0 (0: the whole training "
                         "split) for methods that read unlabelled images (upl, sus-x, "
                         "svl-adapter)", unl_max);
    /* pool=SPEC: the unlabelled images are another dataset's training split
     * (its labels dropped) instead of this one's */
    const char *pool_spec = "";
    if (s == CT_OK) s = ct_kv_str(&hp, "pool", "", &pool_spec);
    if (s == CT_OK && *pool_spec && !cfg->method->wants_unlabelled)
        s = ct_set_error(CT_ERR_ARG, "run: pool=%s: an unlabelled image pool is for methods "
                         "that read unlabelled images (upl, sus-x, svl-adapter)", pool_spec);
    if (s == CT_OK && (views < 0 || views > 1000))
        s = ct_set_error(CT_ERR_ARG, "run: aug_views=%d (0 .. 1000)", views);
    ct_train_cfg tc;
    if (s == CT_OK) s = ct_train_cfg_from_kv(&hp, &tc);
    /* every key is checked before any image is read or encoded: the method
     * is created once on a task without data (as `cliptune eval` rebuilds
     * it), so an unknown key or a bad value fails in a moment, not after the
     * features of a large dataset */
    if (s == CT_OK) s = dry_create(cfg, &hp);
    if (s != CT_OK) {
        ct_kv_free(&hp);
        return s;
    }
    if (cfg->cache_dir && (s = ct_mkdir_p(cfg->cache_dir)) != CT_OK) {
        ct_kv_free(&hp);
        return s;
    }
    const ct_splits *sp = cfg->data;
    ct_dataset *train = NULL, *val = NULL, *test = NULL, *pool = NULL;
    ct_splits pool_sp = {0};
    ct_features ftr = {0}, fval = {0}, fte = {0}, faug = {0}, funl = {0};
    void *state = NULL;
    float *scores = NULL;
    ct_metrics m = {0};
    const ct_taxonomy *tax = NULL;
    ct_taxonomy *owned_tax = NULL;
    char path[4096];
    /* Dassl: k shots per class from train, min(k, 4) from val */
    train = cfg->shots > 0 ? ct_dataset_fewshot(sp->train, cfg->shots, cfg->seed)
                           : ct_dataset_fewshot(sp->train, 0, cfg->seed);
    if (sp->val)
        val = ct_dataset_fewshot(sp->val, cfg->shots > 0 ? (cfg->shots < 4 ? cfg->shots : 4) : 0,
                                 cfg->seed);
    test = ct_dataset_head(sp->test, cfg->max_test);
    if (!train || !test || (sp->val && !val)) {
        s = CT_ERR_NOMEM;
        goto out;
    }
    const bool ml = sp->train->targets != NULL;
    if ((ml && !test->targets) || (!ml && test->targets)) {
        s = ct_set_error(CT_ERR_ARG, "run: the training split is %s but the test split is not",
                         ml ? "multi-label" : "single-label");
        goto out;
    }
    if (cfg->partial_labels > 0 && cfg->partial_labels < 1) {
        if (!ml) {
            s = ct_set_error(CT_ERR_ARG, "run: partial labels (%g) need a multi-label dataset "
                             "(voc:, coco:, mlcsv:, mljson:)", cfg->partial_labels);
            goto out;
        }
        ct_dataset *pl = ct_dataset_partial_labels(train, cfg->partial_labels, cfg->seed);
        if (!pl) {
            s = CT_ERR_NOMEM;
            goto out;
        }
        ct_dataset_free(train);
        train = pl;
    } else if (cfg->partial_labels < 0 || cfg->partial_labels != cfg->partial_labels) {
        s = ct_set_error(CT_ERR_ARG, "run: partial_labels=%g (a portion in (0, 1])",
                         cfg->partial_labels);
        goto out;
    }
    if (ml && !cfg->method->multi_label && (cfg->method->loss || cfg->method->fit) &&
        !cfg->import_from) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "run: %s learns from one label per image; %s is "
                         "multi-label: use a multi-label method (dualcoop) or a training-free "
                         "one (zeroshot)", cfg->method->name, sp->train->name);
        goto out;
    }
    if ((s = ct_run_taxonomy(cfg, ml, &tax, &owned_tax)) != CT_OK) goto out;
    if (ml && cfg->novel_test) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "run: base-to-novel evaluation is single-label "
                         "only");
        goto out;
    }
    /* what killed runs left half-written (temp files of dead processes) */
    const char *dirs[2] = {cfg->cache_dir, cfg->run_dir};
    for (int k = 0; k < 2; k++) {
        int gone = dirs[k] ? ct_clean_stale_temps(dirs[k]) : 0;
        if (gone)
            ct_run_logf(&L, "removed %d temp file%s that killed runs left in %s", gone,
                    gone > 1 ? "s" : "", dirs[k]);
    }
    ct_run_logf(&L, "%s on %s: %d classes, %lld train (%d-shot), %lld val, %lld test", cfg->method->name,
            sp->train->name, sp->train->n_classes, (long long)train->n_items, cfg->shots,
            (long long)(val ? val->n_items : 0), (long long)test->n_items);
    /* training-free methods without a fit step never look at train/val */
    bool trains = (cfg->method->fit || cfg->method->loss) && !cfg->import_from;
    if (cfg->method->pixels) {
        /* pixel methods read images, never cached features: only labels */
        if ((s = labels_only(train, &ftr)) != CT_OK || (val && (s = labels_only(val, &fval))) ||
            (s = labels_only(test, &fte)) != CT_OK)
            goto out;
    } else {
        if (trains && (s = features(cfg, train, 0, &L, "train", &ftr)) != CT_OK) goto out;
        if (trains && val && (s = features(cfg, val, 0, &L, "val", &fval)) != CT_OK) goto out;
        if ((s = features(cfg, test, 0, &L, "test", &fte)) != CT_OK) goto out;
    }
    if (views > 0 && trains && !cfg->method->pixels) {
        /* augmented views stacked: view v's rows follow view v-1's */
        faug.dim = ftr.dim;
        faug.n = (int64_t)views * ftr.n;
        faug.x = malloc((size_t)faug.n * (size_t)faug.dim * sizeof(float) + 1);
        faug.labels = malloc((size_t)faug.n * sizeof(int) + 1);
        size_t tK = ftr.targets ? (size_t)ftr.n * (size_t)sp->train->n_classes : 0;
        if (tK) faug.targets = malloc((size_t)views * tK);
        if (!faug.x || !faug.labels || (tK && !faug.targets)) {
            s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
            goto out;
        }
        for (int v = 0; v < views && tK; v++) memcpy(faug.targets + (size_t)v * tK, ftr.targets, tK);
        for (int v = 1; v <= views && s == CT_OK; v++) {
            ct_features f;
            char what[64];
            snprintf(what, sizeof what, "train view %d/%d", v, views);
            if ((s = features(cfg, train, v, &L, what, &f)) != CT_OK) break;
            memcpy(faug.x + (size_t)(v - 1) * f.n * f.dim, f.x, (size_t)f.n * f.dim * sizeof(float));
            memcpy(faug.labels + (size_t)(v - 1) * f.n, f.labels, (size_t)f.n * sizeof(int));
            /* the per-token features of every view, for dense methods (PLOT, DualCoOp) */
            if (f.dense) {
                size_t per = (size_t)f.n * (size_t)f.n_tokens * (size_t)f.dim;
                if (!faug.dense) {
                    faug.n_tokens = f.n_tokens;
                    faug.dense = malloc((size_t)views * per * sizeof(float) + 1);
                }
                if (!faug.dense || faug.n_tokens != f.n_tokens)
                    s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
                else
                    memcpy(faug.dense + (size_t)(v - 1) * per, f.dense, per * sizeof(float));
            }
            /* and their value-path keys (methods with dense_kind value) */
            if (f.dense_keys && s == CT_OK) {
                size_t per = (size_t)f.n * (size_t)f.n_tokens * (size_t)f.key_dim;
                if (!faug.dense_keys) {
                    faug.key_dim = f.key_dim;
                    faug.dense_kind = f.dense_kind;
                    faug.dense_keys = malloc((size_t)views * per * sizeof(float) + 1);
                }
                if (!faug.dense_keys || faug.key_dim != f.key_dim)
                    s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
                else
                    memcpy(faug.dense_keys + (size_t)(v - 1) * per, f.dense_keys,
                           per * sizeof(float));
            }
            ct_features_free(&f);
        }
        if (s != CT_OK) goto out;
    }
    /* the whole training split, unlabelled: the method sees its features
     * without the labels ct_features_get loads */
    bool unlabelled = trains && cfg->method->wants_unlabelled;
    const ct_dataset *pool_src = sp->train;
    if (unlabelled && *pool_spec) {
        if ((s = ct_data_open(pool_spec, &pool_sp)) != CT_OK) goto out;
        if (!pool_sp.train || pool_sp.train->masks) {
            s = ct_set_error(CT_ERR_ARG, "run: pool=%s has no training split of whole images",
                             pool_spec);
            goto out;
        }
        pool_src = pool_sp.train;
    }
    if (unlabelled && !(pool = ct_dataset_sample(pool_src, unl_max, cfg->seed))) {
        s = CT_ERR_NOMEM;
        goto out;
    }
    if (unlabelled) {
        char what[4200];
        snprintf(what, sizeof what, "unlabelled (%s%s%s)",
                 unl_max > 0 && unl_max < pool_src->n_items ? "part of the train split"
                                                            : "train split",
                 *pool_spec ? " of pool " : "", pool_spec);
        if ((s = features(cfg, pool, 0, &L, what, &funl)) != CT_OK) goto out;
    }
    ct_features unl = funl;
    unl.labels = NULL;
    ct_task task = {
        .clip = ct_model_bundle(cfg->model)->clip, .tok = ct_model_bundle(cfg->model)->tok, .pre = &ct_model_bundle(cfg->model)->pre,
        .dataset_name = sp->train->name, .n_classes = sp->train->n_classes,
        .classnames = sp->train->classnames, .train = train, .val = val,
        .train_feats = &ftr, .val_feats = val ? &fval : NULL, .aug_feats = views ? &faug : NULL,
        .unlabelled = unlabelled ? pool : NULL, .unlabelled_feats = unlabelled ? &unl : NULL,
        .cache_dir = cfg->cache_dir, .seed = cfg->seed};
    task.progress = cfg->progress, task.progress_ctx = cfg->progress_ctx;
    task.log = ct_run_log_line, task.log_ctx = &L, task.run_dir = cfg->run_dir;
    task.taxonomy = tax;
    if ((s = cfg->method->create(&task, &hp, &state)) != CT_OK) goto out;
    if ((s = ct_kv_check_used(&hp, cfg->method->name)) != CT_OK) goto out;
    if (cfg->run_dir && (s = ct_mkdir_p(cfg->run_dir)) != CT_OK) goto out;
    tc.seed = cfg->seed;
    tc.run_dir = cfg->method->loss ? cfg->run_dir : NULL;
    tc.resume = cfg->resume;
    tc.log = ct_run_log_line, tc.log_ctx = &L;
    tc.progress = cfg->progress, tc.progress_ctx = cfg->progress_ctx;
    if (cfg->import_from) {
        int n = 0;
        if ((s = ct_official_import(cfg->method, state, cfg->import_from, &n)) != CT_OK) goto out;
        ct_run_logf(&L, "imported %d learned tensor%s from %s (no training)", n, n == 1 ? "" : "s",
                cfg->import_from);
    } else if ((s = ct_train(cfg->method, state, &task, &tc, &hp)) != CT_OK) {
        goto out;
    }
    if (seg) {
        s = run_seg(cfg, state, test, &fte, &hp, &L, res);
        goto out;
    }
    int K = sp->train->n_classes;
    scores = malloc((size_t)(fte.n ? fte.n : 1) * (size_t)K * sizeof *scores);
    if (!scores) {
        s = ct_set_error(CT_ERR_NOMEM, "run: out of memory");
        goto out;
    }
    /* pixel methods score the images themselves (fte still gives the labels) */
    s = score(cfg->method, state, &task, test, &fte, scores);
    if (s != CT_OK) goto out;
    *res = (ct_run_result){.top1 = NAN, .top5 = NAN, .macro_f1 = NAN, .ece = NAN,
                           .val_top1 = NAN, .novel_top1 = NAN, .multi_label = ml, .map = NAN,
                           .map_voc07 = NAN, .cf1 = NAN, .of1 = NAN, .cf1_top3 = NAN,
                           .of1_top3 = NAN, .val_map = NAN, .miou = NAN, .macc = NAN,
                           .aacc = NAN, .leaf_acc = NAN, .hca = NAN, .mta = NAN};
    if (ml) {
        s = run_ml(cfg, &task, state, test, &fte, val, &fval, trains, scores, &hp, &L, res);
        goto out;
    }
    if ((s = ct_metrics_compute(scores, false, fte.labels, fte.n, K, 15, &m)) != CT_OK) goto out;
    res->top1 = m.top1, res->top5 = m.top5, res->macro_f1 = m.macro_f1, res->ece = m.ece;
    if (trains && val && fval.n) {
        float *vs = malloc((size_t)fval.n * (size_t)K * sizeof *vs);
        ct_metrics vm = {0};
        if (vs &&
            score(cfg->method, state, &task, val, &fval, vs) == CT_OK &&
            ct_metrics_compute(vs, false, fval.labels, fval.n, K, 15, &vm) == CT_OK)
            res->val_top1 = vm.top1;
        ct_metrics_free(&vm);
        free(vs);
    }
    ct_run_logf(&L, "test: top-1 %.2f%%  top-5 %.2f%%  macro-F1 %.2f%%  ECE %.2f%%", 100 * m.top1,
            100 * m.top5, 100 * m.macro_f1, 100 * m.ece);
    if (tax && (s = run_hier_metrics(cfg, &task, &hp, state, tax, test, &fte, scores, &m, &L, res)) != CT_OK)
        goto out;
    if (cfg->novel_test &&
        (s = eval_novel(cfg, &task, &hp, state, &L, &res->novel_top1)) != CT_OK)
        goto out;
    if (cfg->run_dir) {
        const char *const *cn = (const char *const *)sp->train->classnames;
        snprintf(path, sizeof path, "%s/config.json", cfg->run_dir);
        if ((s = write_config(cfg, &hp, path)) != CT_OK) goto out;
        /* softmax probabilities for the CSV */
        for (int64_t i = 0; i < fte.n; i++) {
            float *r = scores + i * K, mx = r[0], sum = 0;
            for (int k = 1; k < K; k++) mx = r[k] > mx ? r[k] : mx;
            for (int k = 0; k < K; k++) sum += (r[k] = expf(r[k] - mx));
            for (int k = 0; k < K; k++) r[k] /= sum;
        }
        char **keys = item_keys(test, fte.n);
        snprintf(path, sizeof path, "%s/predictions.csv", cfg->run_dir);
        s = keys ? ct_predictions_save_csv(path, (const char *const *)keys, fte.labels, scores,
                                           fte.n, K, cn)
                 : CT_ERR_NOMEM;
        free_keys(keys, fte.n);
        if (s == CT_OK) s = save_learned_and_log(cfg, &hp, state, &L);
        if (s != CT_OK) goto out;
        report_cfg rc;
        char title[256];
        run_title(cfg, title, sizeof title);
        s = report_cfg_make(cfg, &hp, &rc);
        if (s == CT_OK) s = ct_report_run(cfg->run_dir, title, rc.kv, rc.n, &m, cn, L.text);
        free(rc.kv);
        /* last: a run directory with metrics.json is a finished run */
        snprintf(path, sizeof path, "%s/metrics.json", cfg->run_dir);
        if (s == CT_OK) s = ct_metrics_save_json(&m, cn, path);
    }
out:
    if (state) cfg->method->destroy(state);
    ct_metrics_free(&m);
    free(scores);
    ct_features_free(&ftr), ct_features_free(&fval), ct_features_free(&fte);
    ct_features_free(&faug), ct_features_free(&funl);
    ct_dataset_free(train), ct_dataset_free(val), ct_dataset_free(test);
    ct_dataset_free(pool);
    ct_splits_free(&pool_sp);
    ct_taxonomy_free(owned_tax);
    ct_kv_free(&hp);
    free(L.text);
    return s;
}
