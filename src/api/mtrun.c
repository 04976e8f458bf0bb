/* Multi-task runs (ct_mt_run, ct_mt_evaluate; cliptune.h): several
 * single-label datasets learned jointly by one multi-task method, each task
 * keeping its own classes. The tasks' classes are laid one after another
 * (task t owns off[t] .. off[t + 1] - 1) and their few-shot training
 * features merged into one set with labels shifted by off[t]: SoftCPT's
 * data manager (datasets/general10.py merge_tasks + Dassl's RandomSampler
 * over the merged train_x), so that batches mix the tasks. The generic
 * trainer hands the method each item's task (ct_batch.tasks). Each task is
 * scored over its own classes.
 *
 * Methods that train on pixels (m->pixels: MVLPT) get the same merge on
 * images: one dataset over the tasks' few-shot items (ct_dataset_merge,
 * labels shifted by off[t], each item decoding to its task's image), which
 * the trainer's pixel path batches like any training set; the tasks' test
 * sets are merged likewise and scored in one pass, task by task (MVLPT's
 * MVLPTCOOPDataManager and its test(), which evaluates each task over its
 * own classes). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api/run.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "train/features.h"


/* What one run (training, or a saved run evaluated again) works on. */
typedef struct {
    ct_model *model;
    int n;                          /* tasks */
    const ct_splits *const *data;
    const char *const *specs;
    const ct_method *method;
    ct_kv hp;
    int shots;
    uint64_t seed;
    int64_t max_test;
    const char *cache_dir;
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} mt_job;

typedef struct {
    const mt_job *job;
    char stage[96];
} feat_progress;

static void on_features(void *ctx, int64_t done, int64_t total) {
    feat_progress *fp = ctx;
    fp->job->progress(fp->job->progress_ctx, fp->stage, done, total, NAN, NAN);
}

static ct_status features(const mt_job *J, const ct_dataset *d, int view, const char *what,
                          ct_run_log *L, ct_features *out) {
    feat_progress fp = {J, ""};
    snprintf(fp.stage, sizeof fp.stage, "features: %s %s", d->name, what);
    ct_feature_req r = {.clip = ct_model_bundle(J->model)->clip,
                        .pre = &ct_model_bundle(J->model)->pre, .data = d, .view = view,
                        .seed = J->seed, .cache_dir = J->cache_dir, .batch = 32,
                        .progress = J->progress ? on_features : NULL, .progress_ctx = &fp};
    ct_status s = ct_features_get(&r, out);
    if (s == CT_OK) ct_run_logf(L, "features: %s %s, %lld images", d->name, what, (long long)d->n_items);
    return s;
}

/* dst += src's rows with labels shifted by off (dst grown; dim checked). */
static ct_status append_rows(ct_features *dst, const ct_features *src, int off) {
    if (dst->n && dst->dim != src->dim)
        return ct_set_error(CT_ERR_ARG, "mt_run: feature widths %d and %d", dst->dim, src->dim);
    int64_t n = dst->n + src->n;
    float *x = realloc(dst->x, (size_t)(n ? n : 1) * (size_t)src->dim * sizeof *x);
    if (x) dst->x = x;
    int *y = realloc(dst->labels, (size_t)(n ? n : 1) * sizeof *y);
    if (y) dst->labels = y;
    if (!x || !y) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    memcpy(x + dst->n * src->dim, src->x, (size_t)src->n * (size_t)src->dim * sizeof *x);
    for (int64_t i = 0; i < src->n; i++) y[dst->n + i] = src->labels[i] + off;
    dst->dim = src->dim, dst->n = n;
    return CT_OK;
}

/* Per-task metrics of the merged scores (n, K): task t's columns only. */
static ct_status task_metrics(const float *scores, int64_t n, int K, int k0, int Kt,
                              const int *labels, ct_metrics *m) {
    float *sub = malloc((size_t)(n ? n : 1) * (size_t)Kt * sizeof *sub);
    if (!sub) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    for (int64_t i = 0; i < n; i++)
        memcpy(sub + i * Kt, scores + i * K + k0, (size_t)Kt * sizeof *sub);
    ct_status s = ct_metrics_compute(sub, false, labels, n, Kt, 15, m);
    free(sub);
    return s;
}

static ct_status write_metrics(const char *dir, const mt_job *J, char *const *names,
                               const ct_metrics *m, const ct_mt_run_result *res) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    cJSON_AddBoolToObject(j, "multi_task", true);
    cJSON_AddNumberToObject(j, "mean_top1", res->mean_top1);
    cJSON *ts = cJSON_AddArrayToObject(j, "tasks");
    for (int t = 0; ts && t < J->n; t++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", names[t]);
        cJSON_AddNumberToObject(o, "n", (double)m[t].n);
        cJSON_AddNumberToObject(o, "classes", m[t].n_classes);
        cJSON_AddNumberToObject(o, "top1", m[t].top1);
        cJSON_AddNumberToObject(o, "top5", m[t].top5);
        cJSON_AddNumberToObject(o, "macro_f1", m[t].macro_f1);
        cJSON_AddNumberToObject(o, "ece", m[t].ece);
        cJSON_AddItemToArray(ts, o);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    ct_status s = ct_json_save(path, j);
    cJSON_Delete(j);
    return s;
}

static ct_status write_report(const char *dir, const mt_job *J, char *const *names,
                              const ct_metrics *m, const ct_mt_run_result *res, const char *log) {
    size_t cap = 8192 + (log ? strlen(log) : 0) + (size_t)J->hp.n * 256;
    char *r = malloc(cap);
    if (!r) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(r + n, n < cap ? cap - n : 0, __VA_ARGS__)
    PUT("# %s, multi-task: ", J->method->name);
    for (int t = 0; t < J->n; t++) PUT("%s%s", t ? " + " : "", names[t]);
    PUT(" (%d-shot, seed %llu)\n\n", J->shots, (unsigned long long)J->seed);
    PUT("| task | classes | test items | top-1 | top-5 | macro-F1 | ECE |\n");
    PUT("|---|---:|---:|---:|---:|---:|---:|\n");
    for (int t = 0; t < J->n; t++)
        PUT("| %s | %d | %lld | %.2f%% | %.2f%% | %.2f%% | %.2f%% |\n", names[t],
            m[t].n_classes, (long long)m[t].n, 100 * m[t].top1, 100 * m[t].top5,
            100 * m[t].macro_f1, 100 * m[t].ece);
    PUT("| **mean** | | | **%.2f%%** | | | |\n\n", 100 * res->mean_top1);
    PUT("Each task is scored over its own classes (the argmax among them).\n\n");
    PUT("## Configuration\n\n| key | value |\n|---|---|\n");
    PUT("| model | %s |\n| method | %s |\n", ct_model_path(J->model) ? ct_model_path(J->model)
                                                                    : "", J->method->name);
    for (int t = 0; t < J->n; t++)
        PUT("| data (task %d) | %s |\n", t, J->specs && J->specs[t] ? J->specs[t] : "");
    PUT("| shots | %d |\n| seed | %llu |\n", J->shots, (unsigned long long)J->seed);
    for (int i = 0; i < J->hp.n && n < cap - 512; i++)
        PUT("| %s | %s |\n", J->hp.keys[i], J->hp.vals[i]);
    if (log && n < cap) PUT("\n## Log\n\n```\n%s```\n", log);
#undef PUT
    char path[4200];
    snprintf(path, sizeof path, "%s/report.md", dir);
    ct_status s = n < cap ? ct_write_file_atomic(path, r, n)
                          : ct_set_error(CT_ERR_STATE, "mt_run: report.md overflow");
    free(r);
    return s;
}

static ct_status write_config(const char *dir, const mt_job *J) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    cJSON_AddBoolToObject(j, "multi_task", true);
    cJSON_AddStringToObject(j, "task", "multi-task");
    ct_run_config_model(j, J->model);
    cJSON_AddStringToObject(j, "method", J->method->name);
    cJSON_AddNumberToObject(j, "shots", J->shots);
    cJSON_AddNumberToObject(j, "seed", (double)J->seed);
    cJSON_AddNumberToObject(j, "max_test", (double)J->max_test);
    cJSON *h = cJSON_AddObjectToObject(j, "hyper_parameters");
    for (int i = 0; i < J->hp.n; i++) cJSON_AddStringToObject(h, J->hp.keys[i], J->hp.vals[i]);
    cJSON *ts = cJSON_AddArrayToObject(j, "tasks");
    for (int t = 0; ts && t < J->n; t++) {
        cJSON *o = cJSON_CreateObject();
        char abs_[8192];
        const char *ds = J->specs && J->specs[t] ? J->specs[t] : "";
        if (*ds && ct_data_spec_absolute(ds, abs_, sizeof abs_) == CT_OK) ds = abs_;
        const ct_dataset *tr = J->data[t]->train;
        cJSON_AddStringToObject(o, "data", ds);
        cJSON_AddStringToObject(o, "dataset", tr->name);
        cJSON *cn = cJSON_AddArrayToObject(o, "classnames");
        for (int k = 0; cn && k < tr->n_classes; k++)
            cJSON_AddItemToArray(cn, cJSON_CreateString(tr->classnames[k]));
        cJSON_AddItemToArray(ts, o);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ct_status s = ct_json_save(path, j);
    cJSON_Delete(j);
    return s;
}

/* Train (learned_dir NULL) or load learned_dir's tensors, then score every
 * task's test split; writes the run files into out_dir when not NULL
 * (config.json, learned.safetensors and log.txt only when training). */
static ct_status mt_execute(mt_job *J, bool train, bool resume, const char *learned_dir,
                            const char *out_dir, ct_run_log *L, ct_mt_run_result *res) {
    const ct_method *m = J->method;
    if (J->n < 1 || J->n > CT_MT_MAX_TASKS)
        return ct_set_error(CT_ERR_ARG, "mt_run: %d tasks (1 .. %d)", J->n, CT_MT_MAX_TASKS);
    bool trains = m->loss != NULL;
    if (!m->multi_task && (trains || m->fit))
        return ct_set_error(CT_ERR_UNSUPPORTED, "mt_run: %s is not a multi-task method (one "
                            "that learns several tasks jointly: softcpt, mvlpt); training-free ones "
                            "(zeroshot) are scored as baselines", m->name);
    bool px = m->pixels && !m->predict_images && !m->frozen_features;
    if ((!px && (m->pixels || ct_method_scores_images(m))) || m->wants_unlabelled ||
        m->dense_features || m->multi_label)
        return ct_set_error(CT_ERR_UNSUPPORTED, "mt_run: %s needs more than cached image "
                            "features", m->name);
    for (int t = 0; t < J->n; t++) {
        const ct_splits *sp = J->data[t];
        if (!sp || !sp->train || !sp->test)
            return ct_set_error(CT_ERR_ARG, "mt_run: task %d has no train or test split", t);
        if (sp->train->targets || sp->train->masks || sp->test->targets || sp->test->masks)
            return ct_set_error(CT_ERR_UNSUPPORTED, "mt_run: task %d (%s) is not single-label "
                                "classification", t, sp->train->name);
    }
    int views = 0;
    ct_train_cfg tc;
    ct_status s = ct_kv_int(&J->hp, "aug_views", 0, &views);
    if (s == CT_OK && px && views)
        s = ct_set_error(CT_ERR_ARG, "mt_run: aug_views=%d: %s draws its augmentations on the "
                         "fly", views, m->name);
    if (s == CT_OK && (views < 0 || views > 1000))
        s = ct_set_error(CT_ERR_ARG, "mt_run: aug_views=%d (0 .. 1000)", views);
    if (s == CT_OK) s = ct_train_cfg_from_kv(&J->hp, &tc);
    if (s != CT_OK) return s;
    if (!train) views = 0;
    int n = J->n, off[CT_MT_MAX_TASKS + 1];
    off[0] = 0;
    for (int t = 0; t < n; t++) off[t + 1] = off[t] + J->data[t]->train->n_classes;
    int K = off[n];
    char **cn = malloc((size_t)K * sizeof *cn);
    char *names[CT_MT_MAX_TASKS];
    ct_dataset *tr[CT_MT_MAX_TASKS] = {0}, *va[CT_MT_MAX_TASKS] = {0}, *te[CT_MT_MAX_TASKS] = {0};
    ct_features fte[CT_MT_MAX_TASKS] = {0}, fva[CT_MT_MAX_TASKS] = {0};
    ct_features ftr = {0}, fval = {0}, faug = {0};
    ct_dataset *mtr = NULL, *mva = NULL, *mte = NULL; /* pixel methods: the merged sets */
    ct_metrics mt[CT_MT_MAX_TASKS] = {0};
    void *state = NULL;
    float *scores = NULL;
    if (!cn) return ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    for (int t = 0; t < n; t++) {
        names[t] = J->data[t]->train->name;
        for (int k = 0; k < J->data[t]->train->n_classes; k++)
            cn[off[t] + k] = J->data[t]->train->classnames[k];
    }
    /* each task's draws as ct_run makes them (Dassl: k shots per class of
     * train, min(k, 4) of val) */
    for (int t = 0; t < n && s == CT_OK; t++) {
        const ct_splits *sp = J->data[t];
        int vk = J->shots > 0 ? (J->shots < 4 ? J->shots : 4) : 0;
        if (train) tr[t] = ct_dataset_fewshot(sp->train, J->shots > 0 ? J->shots : 0, J->seed);
        if (train && sp->val) va[t] = ct_dataset_fewshot(sp->val, vk, J->seed);
        te[t] = ct_dataset_head(sp->test, J->max_test);
        if ((train && !tr[t]) || (train && sp->val && !va[t]) || !te[t])
            s = ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
    }
    if (s == CT_OK)
        ct_run_logf(L, "%s on %d tasks, %d classes in all, %d-shot", m->name, n, K, J->shots);
    for (int t = 0; t < n && s == CT_OK; t++)
        ct_run_logf(L, "task %d: %s, classes %d .. %d, %lld train, %lld val, %lld test", t, names[t],
             off[t], off[t + 1] - 1, (long long)(tr[t] ? tr[t]->n_items : 0),
             (long long)(va[t] ? va[t]->n_items : 0), (long long)te[t]->n_items);
    bool any_val = false;
    if (px && s == CT_OK) {
        bool all_val = true;
        for (int t = 0; t < n; t++) all_val = all_val && va[t];
        if (train && trains && !(mtr = ct_dataset_merge((const ct_dataset *const *)tr, n, NULL)))
            s = CT_ERR_NOMEM;
        if (s == CT_OK && train && trains && all_val &&
            !(mva = ct_dataset_merge((const ct_dataset *const *)va, n, NULL)))
            s = CT_ERR_NOMEM;
        if (s == CT_OK && !(mte = ct_dataset_merge((const ct_dataset *const *)te, n, NULL)))
            s = CT_ERR_NOMEM;
        any_val = mva != NULL;
        if (s == CT_OK && train && trains)
            ct_run_logf(L, "merged images: %lld train, %lld val, %lld test", (long long)mtr->n_items,
                 (long long)(mva ? mva->n_items : 0), (long long)mte->n_items);
    }
    for (int t = 0; t < n && s == CT_OK && train && trains && !px; t++) {
        ct_features f = {0};
        if ((s = features(J, tr[t], 0, "train", L, &f)) == CT_OK) s = append_rows(&ftr, &f, off[t]);
        ct_features_free(&f);
        if (s == CT_OK && va[t]) {
            any_val = true;
            if ((s = features(J, va[t], 0, "val", L, &fva[t])) == CT_OK)
                s = append_rows(&fval, &fva[t], off[t]);
        }
    }
    /* augmented views: view v's rows (every task's, in task order) follow
     * view v-1's, as the trainer's view cycling reads them */
    for (int v = 1; v <= views && s == CT_OK && trains; v++) {
        for (int t = 0; t < n && s == CT_OK; t++) {
            ct_features f = {0};
            char what[64];
            snprintf(what, sizeof what, "train view %d/%d", v, views);
            if ((s = features(J, tr[t], v, what, L, &f)) == CT_OK) s = append_rows(&faug, &f, off[t]);
            ct_features_free(&f);
        }
    }
    for (int t = 0; t < n && s == CT_OK && !px; t++) s = features(J, te[t], 0, "test", L, &fte[t]);
    if (s != CT_OK) goto out;
    const ct_bundle *bu = ct_model_bundle(J->model);
    ct_task task = {.clip = bu->clip, .tok = bu->tok, .pre = &bu->pre,
                    .dataset_name = "multi-task", .n_classes = K, .classnames = cn,
                    .train_feats = trains && train && !px ? &ftr : NULL,
                    .val_feats = any_val && !px ? &fval : NULL, .train = mtr, .val = mva,
                    .aug_feats = views > 0 && trains ? &faug : NULL, .cache_dir = J->cache_dir,
                    .seed = J->seed, .n_tasks = n, .task_names = names, .task_offsets = off};
    task.progress = J->progress, task.progress_ctx = J->progress_ctx;
    task.log = ct_run_log_line, task.log_ctx = L, task.run_dir = out_dir;
    if ((s = m->create(&task, &J->hp, &state)) != CT_OK) goto out;
    if ((s = ct_kv_check_used(&J->hp, m->name)) != CT_OK) goto out;
    if (out_dir && (s = ct_mkdir_p(out_dir)) != CT_OK) goto out;
    if (train) {
        tc.seed = J->seed;
        tc.run_dir = trains ? out_dir : NULL;
        tc.resume = resume;
        tc.log = ct_run_log_line, tc.log_ctx = L;
        tc.progress = J->progress, tc.progress_ctx = J->progress_ctx;
        if (trains && (s = ct_train(m, state, &task, &tc, &J->hp)) != CT_OK) goto out;
    } else if (trains && (s = ct_run_load_learned(m, state, learned_dir)) != CT_OK) {
        goto out;
    }
    *res = (ct_mt_run_result){.n_tasks = n, .mean_top1 = 0, .mean_val_top1 = NAN};
    double vsum = 0;
    int vn = 0;
    if (px) { /* every task's test images in one pass, then task by task */
        if (!(scores = malloc((size_t)(mte->n_items ? mte->n_items : 1) * (size_t)K *
                              sizeof *scores)))
            s = ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
        if (s == CT_OK) s = ct_predict_images(m, state, &task, mte, scores);
        int64_t i0 = 0;
        for (int t = 0; t < n && s == CT_OK; t++) {
            int64_t nt = te[t]->n_items;
            int *lab = malloc((size_t)(nt ? nt : 1) * sizeof *lab);
            if (!lab) {
                s = ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
                break;
            }
            for (int64_t i = 0; i < nt; i++) lab[i] = mte->items[i0 + i].label - off[t];
            s = task_metrics(scores + i0 * K, nt, K, off[t], off[t + 1] - off[t], lab, &mt[t]);
            free(lab);
            i0 += nt;
            if (s != CT_OK) break;
            res->val_top1[t] = NAN;
            res->top1[t] = mt[t].top1;
            snprintf(res->task_names[t], sizeof res->task_names[t], "%s", names[t]);
            res->mean_top1 += mt[t].top1 / n;
            ct_run_logf(L, "test %s: top-1 %.2f%%  top-5 %.2f%%  macro-F1 %.2f%%  (%lld images, %d "
                 "classes)", names[t], 100 * mt[t].top1, 100 * mt[t].top5, 100 * mt[t].macro_f1,
                 (long long)mt[t].n, mt[t].n_classes);
        }
    }
    for (int t = 0; t < n && s == CT_OK && !px; t++) {
        res->val_top1[t] = NAN;
        const ct_features *sets[2] = {&fte[t], va[t] && trains ? &fva[t] : NULL};
        for (int k = 0; k < 2 && s == CT_OK; k++) {
            const ct_features *f = sets[k];
            if (!f) continue;
            free(scores);
            scores = malloc((size_t)(f->n ? f->n : 1) * (size_t)K * sizeof *scores);
            if (!scores) {
                s = ct_set_error(CT_ERR_NOMEM, "mt_run: out of memory");
                break;
            }
            ct_metrics vm = {0};
            if ((s = ct_predict(m, state, f, scores)) != CT_OK) break;
            s = task_metrics(scores, f->n, K, off[t], off[t + 1] - off[t], f->labels,
                             k == 0 ? &mt[t] : &vm);
            if (s == CT_OK && k == 1) res->val_top1[t] = vm.top1, vsum += vm.top1, vn++;
            ct_metrics_free(&vm);
        }
        if (s != CT_OK) break;
        res->top1[t] = mt[t].top1;
        snprintf(res->task_names[t], sizeof res->task_names[t], "%s", names[t]);
        res->mean_top1 += mt[t].top1 / n;
        ct_run_logf(L, "test %s: top-1 %.2f%%  top-5 %.2f%%  macro-F1 %.2f%%  (%lld images, %d classes)",
             names[t], 100 * mt[t].top1, 100 * mt[t].top5, 100 * mt[t].macro_f1,
             (long long)mt[t].n, mt[t].n_classes);
    }
    if (s != CT_OK) goto out;
    if (vn == n) res->mean_val_top1 = vsum / n;
    ct_run_logf(L, "test mean top-1 over %d tasks: %.2f%%", n, 100 * res->mean_top1);
    if (out_dir) {
        char path[4200], mh[17], *hptext = NULL;
        if (train) {
            if ((s = write_config(out_dir, J)) != CT_OK) goto out;
            snprintf(mh, sizeof mh, "%016llx", (unsigned long long)ct_model_hash(J->model));
            s = ct_kv_to_text(&J->hp, &hptext);
            const char *meta[] = {"hyper_parameters", hptext, "model_hash", mh,
                                  "format", "cliptune-learned-1"};
            if (s == CT_OK && trains) s = ct_run_save_learned_meta(m, state, out_dir, meta, 3);
            free(hptext);
            snprintf(path, sizeof path, "%s/log.txt", out_dir);
            if (s == CT_OK) s = ct_write_file_atomic(path, L->text ? L->text : "", L->len);
        }
        if (s == CT_OK) s = write_report(out_dir, J, names, mt, res, L->text);
        /* last: a run directory with metrics.json is a finished run */
        if (s == CT_OK) s = write_metrics(out_dir, J, names, mt, res);
    }
out:
    if (state) m->destroy(state);
    free(scores), free(cn);
    ct_dataset_free(mtr), ct_dataset_free(mva), ct_dataset_free(mte);
    for (int t = 0; t < n; t++) {
        ct_dataset_free(tr[t]), ct_dataset_free(va[t]), ct_dataset_free(te[t]);
        ct_features_free(&fte[t]), ct_features_free(&fva[t]);
        ct_metrics_free(&mt[t]);
    }
    ct_features_free(&ftr), ct_features_free(&fval), ct_features_free(&faug);
    return s;
}

ct_mt_run_cfg ct_mt_run_cfg_default(void) { return (ct_mt_run_cfg){.shots = 16, .seed = 1}; }

ct_status ct_mt_run(const ct_mt_run_cfg *cfg, ct_mt_run_result *res) {
    if (!cfg || !res || !cfg->model || !cfg->data || !cfg->method)
        return ct_set_error(CT_ERR_ARG, "mt_run: NULL model, data, method or result");
    mt_job J = {.model = cfg->model, .n = cfg->n_tasks, .data = cfg->data,
                .specs = cfg->data_specs, .method = cfg->method, .shots = cfg->shots,
                .seed = cfg->seed, .max_test = cfg->max_test, .cache_dir = cfg->cache_dir,
                .progress = cfg->progress, .progress_ctx = cfg->progress_ctx};
    ct_run_log L = {cfg->log, cfg->log_ctx, NULL, 0, 0};
    ct_status s = ct_kv_parse(&J.hp, cfg->method->defaults);
    if (s == CT_OK) s = ct_kv_parse(&J.hp, cfg->set);
    if (s == CT_OK && cfg->cache_dir) s = ct_mkdir_p(cfg->cache_dir);
    /* what killed runs left half-written (temp files of dead processes) */
    const char *dirs[2] = {cfg->cache_dir, cfg->run_dir};
    for (int k = 0; s == CT_OK && k < 2; k++) {
        int gone = dirs[k] ? ct_clean_stale_temps(dirs[k]) : 0;
        if (gone) ct_run_logf(&L, "removed %d temp file%s that killed runs left in %s", gone,
                       gone > 1 ? "s" : "", dirs[k]);
    }
    if (s == CT_OK) s = mt_execute(&J, true, cfg->resume, NULL, cfg->run_dir, &L, res);
    ct_kv_free(&J.hp);
    free(L.text);
    return s;
}

bool ct_run_is_multitask(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir ? dir : "");
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    cJSON *j = ct_json_load(path);
    bool mt = j && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "multi_task"));
    cJSON_Delete(j);
    ct_clear_error();
    return mt;
}

static const char *opt_str(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* What ct_mt_evaluate and ct_mt_predict_files read of a multi-task run's
 * config.json (c, parsed from path): the method and its hyper-parameters,
 * shots, seed and max_test into J, and the tasks array (1 .. CT_MT_MAX_TASKS
 * objects, each with "data" and "classnames") into *tasks. */
static ct_status mt_read_config(const cJSON *c, const char *path, mt_job *J,
                                const cJSON **tasks) {
    const char *method = NULL;
    int64_t shots = 0, seed = 0, max_test = 0;
    ct_status s = CT_OK;
    *tasks = cJSON_GetObjectItemCaseSensitive(c, "tasks");
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(c, "hyper_parameters");
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "multi_task")))
        s = ct_set_error(CT_ERR_FORMAT, "%s: not a multi-task run (no \"multi_task\": true)", path);
    if (s == CT_OK) s = ct_json_get_string(c, "method", &method, path);
    if (s == CT_OK) s = ct_json_get_int(c, "shots", &shots, path);
    if (s == CT_OK) s = ct_json_get_int(c, "seed", &seed, path);
    if (s == CT_OK) s = ct_json_get_int(c, "max_test", &max_test, path);
    if (s == CT_OK && (!cJSON_IsArray(*tasks) || cJSON_GetArraySize(*tasks) < 1 ||
                       cJSON_GetArraySize(*tasks) > CT_MT_MAX_TASKS || !cJSON_IsObject(hp)))
        s = ct_set_error(CT_ERR_FORMAT, "%s: \"tasks\" (1 .. %d) or \"hyper_parameters\" "
                         "missing or malformed", path, CT_MT_MAX_TASKS);
    if (s == CT_OK && shots < 0) s = ct_set_error(CT_ERR_FORMAT, "%s: shots %lld", path,
                                                  (long long)shots);
    if (s == CT_OK && !(J->method = ct_method_find(method)))
        s = ct_set_error(CT_ERR_FORMAT, "%s: unknown method \"%s\"", path, method);
    for (const cJSON *h = hp ? hp->child : NULL; s == CT_OK && h; h = h->next) {
        if (!cJSON_IsString(h) || !h->string)
            s = ct_set_error(CT_ERR_FORMAT, "%s: hyper_parameters.%s is not a string", path,
                             h->string ? h->string : "?");
        else
            s = ct_kv_set(&J->hp, h->string, h->valuestring);
    }
    for (int t = 0; s == CT_OK && t < cJSON_GetArraySize(*tasks); t++) {
        const cJSON *o = cJSON_GetArrayItem(*tasks, t);
        const char *d = opt_str(o, "data");
        if (!d || !*d || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "classnames")))
            s = ct_set_error(CT_ERR_FORMAT, "%s: tasks[%d]: \"data\" or \"classnames\" missing",
                             path, t);
    }
    J->n = s == CT_OK ? cJSON_GetArraySize(*tasks) : 0;
    J->shots = (int)shots, J->seed = (uint64_t)seed, J->max_test = max_test;
    return s;
}

/* The run's model: model when given, else the recorded one loaded into
 * *own; either way its content hash must be the recorded one. */
static ct_status mt_model(const cJSON *c, const char *path, const char *run_dir,
                          ct_model *model, ct_model **own, ct_model **out) {
    const char *mpath = NULL;
    ct_status s = ct_json_get_string(c, "model", &mpath, path);
    if (s == CT_OK && !model) {
        ct_model_opts o = {.bpe = opt_str(c, "bpe"), .act = opt_str(c, "act"),
                           .need_tokenizer = true};
        if (!(model = *own = ct_model_load_ex(mpath, &o))) s = CT_ERR_FORMAT;
    }
    if (s == CT_OK) {
        char mh[17];
        const char *rh = opt_str(c, "model_hash");
        snprintf(mh, sizeof mh, "%016llx", (unsigned long long)ct_model_hash(model));
        if (rh && strcmp(mh, rh))
            s = ct_set_error(CT_ERR_ARG, "the model %s (hash %s) is not the one the run %s was "
                             "trained with (%s, hash %s)", ct_model_path(model), mh, run_dir,
                             mpath, rh);
    }
    *out = model;
    return s;
}

ct_status ct_mt_evaluate(const char *run_dir, ct_model *model, const char *cache_dir,
                         const char *out_dir, ct_mt_run_result *res) {
    if (!run_dir || !res) return ct_set_error(CT_ERR_ARG, "mt_evaluate: NULL run or result");
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    cJSON *c = ct_json_load(path);
    if (!c) return CT_ERR_FORMAT;
    mt_job J = {.cache_dir = cache_dir};
    ct_run_log L = {0};
    ct_splits sp[CT_MT_MAX_TASKS] = {0};
    const ct_splits *spp[CT_MT_MAX_TASKS];
    const char *specs[CT_MT_MAX_TASKS];
    ct_model *own = NULL;
    const cJSON *tasks = NULL;
    ct_status s = mt_read_config(c, path, &J, &tasks);
    /* each task's data, its class names checked against the recorded ones */
    for (int t = 0; t < J.n && s == CT_OK; t++) {
        const cJSON *o = cJSON_GetArrayItem(tasks, t);
        const cJSON *cn = cJSON_GetObjectItemCaseSensitive(o, "classnames");
        specs[t] = opt_str(o, "data");
        if ((s = ct_data_open(specs[t], &sp[t])) != CT_OK) break;
        spp[t] = &sp[t];
        const ct_dataset *d = sp[t].train;
        bool same = cJSON_GetArraySize(cn) == d->n_classes;
        for (int k = 0; same && k < d->n_classes; k++) {
            const cJSON *e = cJSON_GetArrayItem(cn, k);
            same = cJSON_IsString(e) && !strcmp(e->valuestring, d->classnames[k]);
        }
        if (!same)
            s = ct_set_error(CT_ERR_FORMAT, "%s: tasks[%d]: the classes of %s are not the ones "
                             "the run recorded", path, t, specs[t]);
    }
    if (s == CT_OK) s = mt_model(c, path, run_dir, model, &own, &model);
    if (s == CT_OK) {
        J.model = model, J.data = spp, J.specs = specs;
        if (cache_dir) s = ct_mkdir_p(cache_dir);
        if (s == CT_OK) s = mt_execute(&J, false, false, run_dir, out_dir, &L, res);
    }
    for (int t = 0; t < CT_MT_MAX_TASKS; t++) ct_splits_free(&sp[t]);
    ct_model_free(own);
    ct_kv_free(&J.hp);
    free(L.text);
    cJSON_Delete(c);
    return s;
}

void ct_mt_prediction_free(ct_mt_prediction *p) {
    if (!p) return;
    for (int k = 0; p->classnames && k < p->n_classes; k++) free(p->classnames[k]);
    free(p->classnames);
    free(p->probs);
    memset(p, 0, sizeof *p);
}

ct_status ct_mt_predict_files(const char *run_dir, ct_model *model, const char *task,
                              const char *const *paths, int n, ct_mt_prediction *out) {
    if (!run_dir || !out || n < 0 || (n > 0 && !paths))
        return ct_set_error(CT_ERR_ARG, "mt_predict_files: NULL run, paths or output");
    memset(out, 0, sizeof *out);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    cJSON *c = ct_json_load(path);
    if (!c) return CT_ERR_FORMAT;
    mt_job J = {0};
    ct_model *own = NULL;
    const cJSON *tasks = NULL;
    char *names[CT_MT_MAX_TASKS] = {0}, **cn = NULL;
    int off[CT_MT_MAX_TASKS + 1] = {0}, which = -1;
    void *state = NULL;
    float *scores = NULL;
    ct_item *items = NULL;
    ct_features f = {0};
    ct_status s = mt_read_config(c, path, &J, &tasks);
    /* the tasks' class lists laid one after another, as the run trained */
    for (int t = 0; t < J.n && s == CT_OK; t++) {
        const cJSON *o = cJSON_GetArrayItem(tasks, t);
        const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "dataset");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(o, "classnames");
        names[t] = (char *)(cJSON_IsString(ds) ? ds->valuestring : opt_str(o, "data"));
        off[t + 1] = off[t] + cJSON_GetArraySize(cl);
        if (cJSON_GetArraySize(cl) < 1 || off[t + 1] > 1000000)
            s = ct_set_error(CT_ERR_FORMAT, "%s: tasks[%d]: %d classnames", path, t,
                             cJSON_GetArraySize(cl));
        char idx[16];
        snprintf(idx, sizeof idx, "%d", t);
        if (task && (!strcmp(task, names[t]) || !strcmp(task, idx)) && which < 0) which = t;
    }
    if (s == CT_OK && which < 0) {
        char list[1024] = "";
        for (int t = 0; t < J.n; t++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", t ? ", " : "", names[t]);
        }
        s = ct_set_error(CT_ERR_ARG, "%s is a multi-task run: %s%s%s is not one of its tasks "
                         "(%s; or their index from 0)", run_dir, task ? "\"" : "",
                         task ? task : "no task given", task ? "\"" : "", list);
    }
    int K = J.n ? off[J.n] : 0;
    if (s == CT_OK && !(cn = calloc((size_t)K, sizeof *cn)))
        s = ct_set_error(CT_ERR_NOMEM, "mt_predict_files: out of memory");
    for (int t = 0; t < J.n && s == CT_OK; t++) {
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tasks, t),
                                                           "classnames");
        for (int k = 0; k < off[t + 1] - off[t] && s == CT_OK; k++) {
            const cJSON *e = cJSON_GetArrayItem(cl, k);
            if (!cJSON_IsString(e))
                s = ct_set_error(CT_ERR_FORMAT, "%s: tasks[%d].classnames[%d] is not a string",
                                 path, t, k);
            else
                cn[off[t] + k] = e->valuestring;
        }
    }
    if (s == CT_OK) s = mt_model(c, path, run_dir, model, &own, &model);
    const ct_method *m = J.method;
    if (s == CT_OK && (m->pixels || ct_method_scores_images(m)))
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: %s does not score cached features", run_dir,
                         m->name);
    int Kt = which >= 0 ? off[which + 1] - off[which] : 0;
    if (s == CT_OK && !(items = calloc((size_t)(n ? n : 1), sizeof *items)))
        s = ct_set_error(CT_ERR_NOMEM, "mt_predict_files: out of memory");
    for (int i = 0; i < n && s == CT_OK; i++) {
        if (!paths[i]) s = ct_set_error(CT_ERR_ARG, "mt_predict_files: path %d NULL", i);
        else items[i].path = (char *)paths[i];
    }
    if (s == CT_OK && n > 0) {
        ct_dataset files = {.name = "predict", .root = "", .n_classes = Kt,
                            .classnames = cn + off[which], .n_items = n, .items = items};
        J.model = model;
        ct_run_log L = {0};
        s = features(&J, &files, 0, "images", &L, &f);
        free(L.text);
    }
    const ct_bundle *bu = s == CT_OK ? ct_model_bundle(model) : NULL;
    ct_task tk = {0};
    if (bu)
        tk = (ct_task){.clip = bu->clip, .tok = bu->tok, .pre = &bu->pre,
                       .dataset_name = "multi-task", .n_classes = K, .classnames = cn,
                       .seed = J.seed, .n_tasks = J.n, .task_names = names, .task_offsets = off};
    if (s == CT_OK) s = m->create(&tk, &J.hp, &state);
    if (s == CT_OK && m->loss) s = ct_run_load_learned(m, state, run_dir);
    if (s == CT_OK && !(scores = malloc((size_t)(n ? n : 1) * (size_t)K * sizeof *scores)))
        s = ct_set_error(CT_ERR_NOMEM, "mt_predict_files: out of memory");
    if (s == CT_OK && n > 0) s = ct_predict(m, state, &f, scores);
    if (s == CT_OK) {
        out->n = n, out->n_classes = Kt, out->task = which;
        snprintf(out->task_name, sizeof out->task_name, "%s", names[which]);
        out->probs = malloc((size_t)(n ? n : 1) * (size_t)Kt * sizeof *out->probs);
        out->classnames = calloc((size_t)Kt, sizeof *out->classnames);
        if (!out->probs || !out->classnames)
            s = ct_set_error(CT_ERR_NOMEM, "mt_predict_files: out of memory");
        for (int k = 0; k < Kt && s == CT_OK; k++)
            if (!(out->classnames[k] = strdup(cn[off[which] + k])))
                s = ct_set_error(CT_ERR_NOMEM, "mt_predict_files: out of memory");
        /* the softmax over the task's own columns (in double) */
        for (int i = 0; i < n && s == CT_OK; i++) {
            const float *row = scores + (size_t)i * (size_t)K + off[which];
            double mx = -INFINITY, sum = 0;
            for (int k = 0; k < Kt; k++) mx = row[k] > mx ? row[k] : mx;
            for (int k = 0; k < Kt; k++) sum += exp((double)row[k] - mx);
            for (int k = 0; k < Kt; k++)
                out->probs[(size_t)i * Kt + k] = (float)(exp((double)row[k] - mx) / sum);
        }
        if (s != CT_OK) ct_mt_prediction_free(out);
    }
    if (state) m->destroy(state);
    ct_features_free(&f);
    free(items), free(scores), free(cn);
    ct_model_free(own);
    ct_kv_free(&J.hp);
    cJSON_Delete(c);
    return s;
}
