/* A finished run directory used again: predict, evaluate, export.
 *
 * A run directory holds what it takes to rebuild the adapted model: the
 * method and its resolved hyper-parameters and class names, and how the
 * frozen model was loaded (path, tokenizer, activation, content hash) in
 * config.json; the learned tensors in learned.safetensors. The method is
 * created afresh on the frozen model, as ct_run created it, and the learned
 * tensors are loaded into it; training-free methods have none and are
 * rebuilt from the text side alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "methods/vcd.h"
#include "api/model.h"
#include "report/report.h"
#include "train/features.h"
#include "train/metrics.h"
#include "api/official.h"
#include "api/run.h"
#include "api/segment.h"

struct ct_saved_run {
    ct_run_info info;
    cJSON *config;
    char *dir, *hp_text, *dname;
    char **classnames;
    int n_classes;
    ct_kv hp;
    const ct_method *method;
    ct_model *model;
    bool owns_model;
    /* the rebuilt state: created on a task with the run's classes and
     * hyper-parameters and no training data (an empty set and features) */
    ct_dataset none;
    ct_features no_feats;
    ct_task task;
    void *state;
    void (*progress)(void *, const char *, int64_t, int64_t, double, double);
    void *progress_ctx;
    /* a hierarchy run: its taxonomy file and, once attached, the tree */
    char *tax_path;
    ct_taxonomy *tax;
    bool classes_set; /* ct_saved_run_set_classes: other classes than the run's */
    char *target_name; /* ct_saved_run_set_dataset_name, or NULL */
};

static void free_names(ct_saved_run *r) {
    for (int k = 0; r->classnames && k < r->n_classes; k++) free(r->classnames[k]);
    free(r->classnames);
    r->classnames = NULL, r->n_classes = 0;
}

void ct_saved_run_free(ct_saved_run *r) {
    if (!r) return;
    if (r->state) r->method->destroy(r->state);
    if (r->owns_model) ct_model_free(r->model);
    free_names(r);
    ct_kv_free(&r->hp);
    cJSON_Delete(r->config);
    free(r->dir), free(r->hp_text), free(r->dname), free(r->target_name);
    ct_taxonomy_free(r->tax);
    free(r->tax_path);
    free(r);
}

/* Class names from a JSON array of strings, or of objects' "name" (the
 * "per_class" entries of metrics.json). */
static ct_status names_from(ct_saved_run *r, const cJSON *arr, const char *key,
                            const char *path) {
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return ct_set_error(CT_ERR_FORMAT, "%s: \"%s\" is empty", path, key);
    if (!(r->classnames = calloc((size_t)n, sizeof *r->classnames)))
        return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    r->n_classes = n;
    for (int k = 0; k < n; k++) {
        const cJSON *e = cJSON_GetArrayItem(arr, k);
        if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(e))
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%d] is not a class name", path, key, k);
        if (!(r->classnames[k] = strdup(e->valuestring)))
            return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    }
    return CT_OK;
}

static const char *opt_string(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static ct_status read_config(ct_saved_run *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", r->dir);
    if (!(r->config = ct_json_load(path))) return CT_ERR_FORMAT;
    const cJSON *c = r->config;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "multi_task")))
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: a multi-task run: ct_mt_evaluate (cliptune "
                            "eval) evaluates it; predict, export and the other saved-run "
                            "calls handle single-task runs only", path);
    ct_run_info *ri = &r->info;
    ct_status s;
    if ((s = ct_json_get_string(c, "method", &ri->method, path)) != CT_OK ||
        (s = ct_json_get_string(c, "model", &ri->model, path)) != CT_OK ||
        (s = ct_json_get_string(c, "data", &ri->data, path)) != CT_OK ||
        (s = ct_json_get_int(c, "shots", &ri->shots, path)) != CT_OK ||
        (s = ct_json_get_int(c, "seed", &ri->seed, path)) != CT_OK ||
        (s = ct_json_get_int(c, "max_test", &ri->max_test, path)) != CT_OK)
        return s;
    if (!(r->method = ct_method_find(ri->method)))
        return ct_set_error(CT_ERR_FORMAT, "%s: method \"%s\" is not in this build", path,
                            ri->method);
    ri->model_hash = opt_string(c, "model_hash"); /* older runs: none */
    ri->dataset = opt_string(c, "dataset");
    ri->bpe = opt_string(c, "bpe");
    ri->act = opt_string(c, "act");
    ri->subsample = opt_string(c, "subsample");
    if (!ri->subsample) ri->subsample = "all";
    const char *task = opt_string(c, "task");
    ri->multi_label = task && !strcmp(task, "multi-label");
    ri->segmentation = task && !strcmp(task, "segmentation");
    const char *tx = opt_string(c, "taxonomy");
    if (tx) {
        size_t n = strlen(r->dir) + strlen(tx) + 2;
        if (!(r->tax_path = malloc(n))) return ct_set_error(CT_ERR_NOMEM, "out of memory");
        if (tx[0] == '/')
            snprintf(r->tax_path, n, "%s", tx);
        else
            snprintf(r->tax_path, n, "%s/%s", r->dir, tx);
        ri->taxonomy = r->tax_path;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "hyper_parameters"), *e;
    if (!cJSON_IsObject(h))
        return ct_set_error(CT_ERR_FORMAT, "%s: no \"hyper_parameters\" object", path);
    cJSON_ArrayForEach(e, h) {
        if (!cJSON_IsString(e))
            return ct_set_error(CT_ERR_FORMAT, "%s: hyper_parameters.%s is not a string", path,
                                e->string);
        if ((s = ct_kv_set(&r->hp, e->string, e->valuestring)) != CT_OK) return s;
    }
    if ((s = ct_kv_to_text(&r->hp, &r->hp_text)) != CT_OK) return s;
    ri->hyper_parameters = r->hp_text;
    ri->top1 = NAN;
    snprintf(path, sizeof path, "%s/metrics.json", r->dir);
    cJSON *m = access(path, F_OK) == 0 ? ct_json_load(path) : NULL;
    const cJSON *t1 = m ? cJSON_GetObjectItemCaseSensitive(m, "top1") : NULL;
    if (cJSON_IsNumber(t1)) ri->top1 = t1->valuedouble;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(c, "classnames");
    if (names) {
        cJSON_Delete(m);
        snprintf(path, sizeof path, "%s/config.json", r->dir);
        if (!cJSON_IsArray(names))
            return ct_set_error(CT_ERR_FORMAT, "%s: \"classnames\" is not an array", path);
        return names_from(r, names, "classnames", path);
    }
    /* a run written before config.json recorded its class names */
    if (!m) return ct_set_error(CT_ERR_FORMAT, "%s: missing, and config.json has no "
                                "\"classnames\"", path);
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(m, "per_class");
    s = cJSON_IsArray(per) ? names_from(r, per, "per_class", path)
                           : ct_set_error(CT_ERR_FORMAT, "%s: no \"per_class\" array (and "
                                          "config.json no \"classnames\")", path);
    cJSON_Delete(m);
    return s;
}

static void sync_info(ct_saved_run *r) {
    r->info.dir = r->dir;
    r->info.n_classes = r->n_classes;
    r->info.classnames = (const char *const *)r->classnames;
}

ct_saved_run *ct_saved_run_open(const char *dir) {
    if (!dir) {
        ct_set_error(CT_ERR_ARG, "saved_run_open: NULL directory");
        return NULL;
    }
    ct_saved_run *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir))) {
        free(r);
        ct_set_error(CT_ERR_NOMEM, "saved_run_open: out of memory");
        return NULL;
    }
    if (read_config(r) != CT_OK) {
        ct_saved_run_free(r);
        return NULL;
    }
    sync_info(r);
    return r;
}

const ct_run_info *ct_saved_run_info(const ct_saved_run *r) { return r ? &r->info : NULL; }
ct_model *ct_saved_run_model(ct_saved_run *r) { return r ? r->model : NULL; }

void ct_saved_run_set_progress(ct_saved_run *r,
                               void (*progress)(void *, const char *, int64_t, int64_t, double,
                                                double),
                               void *ctx) {
    if (!r) return;
    r->progress = progress, r->progress_ctx = ctx;
    r->task.progress = progress, r->task.progress_ctx = ctx;
}

ct_status ct_saved_run_set_classes(ct_saved_run *r, const char *const *names, int n) {
    if (!r || !names || n < 1)
        return ct_set_error(CT_ERR_ARG, "saved_run_set_classes: no class names");
    if (r->state)
        return ct_set_error(CT_ERR_STATE, "saved_run_set_classes: the run is attached already");
    free_names(r);
    /* the recorded tree is over the run's classes, not these */
    free(r->tax_path);
    r->tax_path = NULL, r->info.taxonomy = NULL;
    if (!(r->classnames = calloc((size_t)n, sizeof *r->classnames)))
        return ct_set_error(CT_ERR_NOMEM, "saved_run_set_classes: out of memory");
    r->n_classes = n;
    for (int k = 0; k < n; k++)
        if (!names[k] || !(r->classnames[k] = strdup(names[k])))
            return ct_set_error(names[k] ? CT_ERR_NOMEM : CT_ERR_ARG,
                                "saved_run_set_classes: class %d", k);
    sync_info(r);
    r->classes_set = true;
    return CT_OK;
}

ct_status ct_saved_run_set_taxonomy(ct_saved_run *r, const char *path) {
    if (!r) return ct_set_error(CT_ERR_ARG, "saved_run_set_taxonomy: NULL run");
    if (r->state)
        return ct_set_error(CT_ERR_STATE, "saved_run_set_taxonomy: the run is attached already");
    char *p = path ? strdup(path) : NULL;
    if (path && !p) return ct_set_error(CT_ERR_NOMEM, "saved_run_set_taxonomy: out of memory");
    free(r->tax_path);
    r->tax_path = p, r->info.taxonomy = p;
    return CT_OK;
}

ct_status ct_saved_run_set_dataset_name(ct_saved_run *r, const char *name) {
    if (!r || !name) return ct_set_error(CT_ERR_ARG, "saved_run_set_dataset_name: NULL");
    if (r->state)
        return ct_set_error(CT_ERR_STATE, "saved_run_set_dataset_name: the run is attached "
                            "already");
    char *copy = strdup(name);
    if (!copy) return ct_set_error(CT_ERR_NOMEM, "saved_run_set_dataset_name: out of memory");
    free(r->target_name);
    r->target_name = copy;
    return CT_OK;
}

/* Other classes than the run's (ct_saved_run_set_classes): the learned
 * tensors must not be sized by the number of classes (a linear head,
 * class-specific contexts, a cache of labels), even when the counts happen
 * to agree. As ct_run's base-to-novel check: states for K and K + 1
 * classes must have learned tensors of the same shapes. */
static ct_status check_class_agnostic(ct_saved_run *r) {
    const ct_method *m = r->method;
    if (!m->params) return CT_OK;
    /* learned tensors sized by the training set are a cache of labelled
     * training features (Tip-Adapter): its labels are the run's classes,
     * whatever the shapes say */
    if (m->learned_shapes_from_file)
        return ct_set_error(CT_ERR_UNSUPPORTED, "the %s run %s cannot score other classes than "
                            "its own: its learned tensors are per class (a cache of training "
                            "features labelled with the run's classes); evaluate it on its own "
                            "classes or a subset of them", m->name, r->dir);
    char **names = malloc((size_t)(r->n_classes + 1) * sizeof *names);
    if (!names) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    memcpy(names, r->classnames, (size_t)r->n_classes * sizeof *names);
    names[r->n_classes] = "object";
    ct_task t = r->task;
    t.n_classes = r->n_classes + 1, t.classnames = names;
    r->none.n_classes = t.n_classes, r->none.classnames = names;
    void *probe = NULL;
    ct_status s = m->create(&t, &r->hp, &probe);
    r->none.n_classes = r->n_classes, r->none.classnames = r->classnames;
    free(names);
    if (s != CT_OK) return s;
    ct_tensor *a[256], *b[256];
    int na = m->params(r->state, a, 256), nb = m->params(probe, b, 256), bad = -1;
    for (int i = 0; bad < 0 && i < na && i < nb; i++)
        if (!ct_tensor_same_shape(a[i], b[i])) bad = i;
    if (na != nb && bad < 0) bad = na < nb ? na : nb;
    m->destroy(probe);
    if (bad < 0) return CT_OK;
    const char *names_[256];
    int nn = m->param_names ? m->param_names(r->state, names_, 256) : 0;
    char pn[64];
    snprintf(pn, sizeof pn, "param.%d", bad);
    return ct_set_error(CT_ERR_UNSUPPORTED, "the %s run %s cannot score other classes than its "
                        "own: its learned tensors are per class (%s grows with the number of "
                        "classes), so they mean nothing for other class names; evaluate it on "
                        "its own classes or a subset of them, or use a method whose learned "
                        "tensors are class-agnostic (coop with csc=false, cocoop, maple, ...)",
                        m->name, r->dir, bad < nn ? names_[bad] : pn);
}

/* The name of the dataset the run was trained on: methods may key on it
 * (CoOp's per-dataset prompt template), so it must be the training one even
 * when testing elsewhere. Runs that predate its record open their data. */
static char *trained_name(const ct_saved_run *r) {
    if (r->target_name) return strdup(r->target_name);
    if (r->info.dataset) return strdup(r->info.dataset);
    ct_splits sp;
    if (ct_data_open(r->info.data, &sp) == CT_OK) {
        char *name = strdup(sp.train->name);
        ct_splits_free(&sp);
        return name;
    }
    return strdup("");
}

ct_status ct_saved_run_attach(ct_saved_run *r, ct_model *model) {
    if (!r) return ct_set_error(CT_ERR_ARG, "saved_run_attach: NULL run");
    if (r->state) return ct_set_error(CT_ERR_STATE, "saved_run_attach: attached already");
    const ct_run_info *ri = &r->info;
    if (!model) {
        ct_model_opts o = {.bpe = ri->bpe, .act = ri->act, .need_tokenizer = true};
        if (!(model = ct_model_load_ex(ri->model, &o))) {
            char why[1024];
            snprintf(why, sizeof why, "%s", ct_last_error());
            return ct_set_error(CT_ERR_FORMAT, "%s (the model recorded in %s/config.json)", why,
                                r->dir);
        }
        r->owns_model = true;
    }
    r->model = model;
    char mh[17];
    snprintf(mh, sizeof mh, "%016llx", (unsigned long long)ct_model_hash(model));
    if (ri->model_hash && strcmp(mh, ri->model_hash))
        return ct_set_error(CT_ERR_ARG, "the model %s (hash %s) is not the one the run %s was "
                            "trained with (%s, hash %s): its weights, activation or precision "
                            "differ, and the learned tensors were fitted to that one",
                            ct_model_path(model), mh, r->dir, ri->model, ri->model_hash);
    /* the tokenizer and preprocessing shape the features and prompts as much
     * as the weights do (runs recorded before these hashes: not checked) */
    char th[17], ph[17];
    ct_model_part_hashes(model, th, ph);
    const char *rth = opt_string(r->config, "tokenizer_hash");
    const char *rph = opt_string(r->config, "preprocess_hash");
    if (rth && strcmp(rth, th))
        return ct_set_error(CT_ERR_ARG, "the tokenizer of %s (hash %s) is not the one the run %s "
                            "was trained with (hash %s%s%s): give the same --bpe", ct_model_path(model),
                            th, r->dir, rth, ri->bpe ? ", " : "", ri->bpe ? ri->bpe : "");
    if (rph && strcmp(rph, ph))
        return ct_set_error(CT_ERR_ARG, "the image preprocessing of %s (hash %s) is not the one "
                            "the run %s was trained with (hash %s): its "
                            "preprocessor_config.json differs", ct_model_path(model), ph, r->dir,
                            rph);
    const ct_bundle *b = ct_model_bundle(model);
    if (!b->tok)
        return ct_set_error(CT_ERR_ARG, "%s has no tokenizer (give its BPE vocabulary)",
                            ct_model_path(model));
    if (!(r->dname = trained_name(r))) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    r->none = (ct_dataset){.name = r->dname, .root = "", .n_classes = r->n_classes,
                           .classnames = r->classnames};
    r->no_feats.dim = ct_clip_get_config(b->clip)->embed_dim;
    r->task = (ct_task){.clip = b->clip, .tok = b->tok, .pre = &b->pre,
                        .dataset_name = r->dname, .n_classes = r->n_classes,
                        .classnames = r->classnames, .train = &r->none,
                        .train_feats = &r->no_feats, .seed = (uint64_t)ri->seed,
                        .progress = r->progress, .progress_ctx = r->progress_ctx};
    ct_status s;
    if (r->tax_path && !r->tax &&
        (s = ct_taxonomy_load(r->tax_path, (const char *const *)r->classnames, r->n_classes,
                              &r->tax)) != CT_OK)
        return s;
    r->task.taxonomy = r->tax;
    /* config.json holds the trainer's keys too; only create() reads here,
     * so unread keys are expected and not checked */
    s = r->method->create(&r->task, &r->hp, &r->state);
    if (s != CT_OK) {
        r->state = NULL;
        return s;
    }
    if (r->classes_set && (s = check_class_agnostic(r)) != CT_OK) {
        r->method->destroy(r->state);
        r->state = NULL;
        return s;
    }
    if (r->method->params && (s = ct_run_load_learned(r->method, r->state, r->dir)) != CT_OK) {
        r->method->destroy(r->state);
        r->state = NULL;
    }
    return s;
}

static ct_status need_state(const ct_saved_run *r, const char *fn) {
    if (!r) return ct_set_error(CT_ERR_ARG, "%s: NULL run", fn);
    if (!r->state) return ct_set_error(CT_ERR_STATE, "%s: attach a model first", fn);
    return CT_OK;
}

/* A non-finite score (a damaged or diverged learned file) is an error
 * naming the item, not a "nan" prediction. */
static ct_status check_finite(const ct_saved_run *r, const float *s, int64_t n,
                              const ct_dataset *d) {
    int K = r->n_classes;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++)
            if (!isfinite(s[i * K + k])) {
                char kb[4096];
                const char *key = d ? ct_dataset_item_key(d, i, kb, sizeof kb) : NULL;
                return ct_set_error(CT_ERR_FORMAT, "the run %s gives a non-finite score for "
                                    "%s (class %s): its learned tensors are damaged or "
                                    "diverged", r->dir, key ? key : "an image",
                                    r->classnames[k]);
            }
    return CT_OK;
}

/* Rows of finite logits to softmax probabilities, in place. */
static void softmax_rows(float *s, int64_t n, int K) {
    for (int64_t i = 0; i < n; i++) {
        float *row = s + i * K, mx = row[0], sum = 0;
        for (int k = 1; k < K; k++) mx = row[k] > mx ? row[k] : mx;
        for (int k = 0; k < K; k++) sum += (row[k] = expf(row[k] - mx));
        for (int k = 0; k < K; k++) row[k] /= sum;
    }
}

static void sigmoid_all(float *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) s[i] = 1 / (1 + expf(-s[i]));
}

static void on_features(void *ctx, int64_t done, int64_t total) {
    const ct_saved_run *r = ctx;
    r->progress(r->progress_ctx, "features: test", done, total, NAN, NAN);
}

/* Logits (d->n_items, K) of d's images; with labels, the items' labels too
 * (malloc'ed). */
static ct_status scores_of(ct_saved_run *r, const ct_dataset *d, const char *cache,
                           float *scores, int **labels, ct_features *keep) {
    ct_status s;
    if (cache && (s = ct_mkdir_p(cache)) != CT_OK) return s;
    /* pixel methods with frozen_features take the frozen tower's embeddings
     * from the cache, as in the run (ct_predict_images reads task->cache_dir) */
    r->task.cache_dir = cache;
    if (ct_method_scores_images(r->method)) {
        /* the method reads the images itself: the labels come from the items */
        if ((s = ct_predict_images(r->method, r->state, &r->task, d, scores)) != CT_OK || !labels)
            return s;
        if (!(*labels = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof **labels)))
            return ct_set_error(CT_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < d->n_items; i++) (*labels)[i] = d->items[i].label;
        return CT_OK;
    }
    const ct_bundle *b = ct_model_bundle(r->model);
    ct_feature_req req = {.clip = b->clip, .pre = &b->pre, .data = d,
                          .seed = (uint64_t)r->info.seed, .cache_dir = cache, .batch = 32,
                          .dense = r->method->dense_features,
                          .dense_kind = r->method->dense_kind,
                          .raw_pixels = r->method->raw_pixels,
                          .progress = r->progress ? on_features : NULL,
                          .progress_ctx = r};
    ct_features f = {0};
    if ((s = ct_features_get(&req, &f)) != CT_OK) return s;
    s = ct_predict(r->method, r->state, &f, scores);
    if (s == CT_OK && labels) *labels = f.labels, f.labels = NULL;
    if (s == CT_OK && keep) {
        *keep = f; /* the caller frees them */
        return s;
    }
    ct_features_free(&f);
    return s;
}

ct_status ct_saved_run_predict(ct_saved_run *r, const ct_dataset *d, const char *cache_dir,
                               float *probs) {
    ct_status s = need_state(r, "saved_run_predict");
    if (s != CT_OK) return s;
    if (!d || !probs) return ct_set_error(CT_ERR_ARG, "saved_run_predict: NULL data or output");
    if (r->info.segmentation)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s is a segmentation run: it labels pixels "
                            "(ct_saved_run_evaluate_seg, `cliptune eval`), not whole images",
                            r->dir);
    if (d->n_items == 0) return CT_OK;
    if ((s = scores_of(r, d, cache_dir, probs, NULL, NULL)) != CT_OK ||
        (s = check_finite(r, probs, d->n_items, d)) != CT_OK)
        return s;
    if (r->info.multi_label) sigmoid_all(probs, d->n_items * r->n_classes);
    else softmax_rows(probs, d->n_items, r->n_classes);
    return CT_OK;
}

ct_status ct_saved_run_predict_files(ct_saved_run *r, const char *const *paths, int n,
                                     float *probs) {
    ct_status s = need_state(r, "saved_run_predict_files");
    if (s != CT_OK) return s;
    if (n < 0 || (n > 0 && (!paths || !probs)))
        return ct_set_error(CT_ERR_ARG, "saved_run_predict_files: NULL paths or output");
    if (r->method->raw_pixels)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s is a %s run (a pixel baseline): it scores "
                            "a dataset's test split (evaluate) only", r->dir, r->method->name);
    ct_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    if (!items) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && s == CT_OK; i++) {
        if (!paths[i]) s = ct_set_error(CT_ERR_ARG, "saved_run_predict_files: path %d NULL", i);
        items[i].path = (char *)paths[i];
    }
    ct_dataset files = {.name = "predict", .root = "", .n_classes = r->n_classes,
                        .classnames = r->classnames, .n_items = n, .items = items};
    if (s == CT_OK) s = ct_saved_run_predict(r, &files, NULL, probs);
    free(items);
    return s;
}

/* The cache keys of test's items (predictions.csv's first column), malloc'd;
 * an item whose key does not fit is an error. */
static ct_status item_keys(const ct_dataset *test, char ***out) {
    int64_t n = test->n_items;
    char **keys = calloc((size_t)(n ? n : 1), sizeof *keys);
    if (!keys) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    *out = keys;
    for (int64_t i = 0; i < n; i++) {
        char kb[4096];
        const char *k = ct_dataset_item_key(test, i, kb, sizeof kb);
        if (!k) return CT_ERR_ARG;
        if (!(keys[i] = strdup(k))) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    }
    return CT_OK;
}

static void free_keys(char **keys, int64_t n) {
    for (int64_t i = 0; keys && i < n; i++) free(keys[i]);
    free(keys);
}

/* An evaluation report's title and configuration table. */
#define EVAL_KV_N 8
typedef struct {
    char shots[32], seed[32], nt[32], title[512];
    const char *kv[2 * EVAL_KV_N];
} eval_kv;

static void eval_kv_make(const ct_saved_run *r, const char *spec, const ct_dataset *test,
                         eval_kv *e) {
    snprintf(e->shots, sizeof e->shots, "%lld", (long long)r->info.shots);
    snprintf(e->seed, sizeof e->seed, "%lld", (long long)r->info.seed);
    snprintf(e->nt, sizeof e->nt, "%lld", (long long)test->n_items);
    const char *kv[2 * EVAL_KV_N] = {"run", r->dir, "method", r->method->name, "model",
                                     ct_model_path(r->model), "trained on", r->info.data,
                                     "shots", e->shots, "seed", e->seed, "evaluated on",
                                     spec ? spec : test->name, "test images", e->nt};
    memcpy(e->kv, kv, sizeof kv);
    snprintf(e->title, sizeof e->title, "%s (%s-shot) evaluated on %s", r->method->name,
             e->shots, test->name);
}

/* out_dir: metrics.json, predictions.csv (probabilities), report.md +
 * confusion.svg. */
static ct_status write_eval(const ct_saved_run *r, const char *spec, const ct_dataset *test,
                            const ct_metrics *m, const float *probs, const int *labels,
                            const char *dir) {
    char path[4200];
    ct_status s = ct_mkdir_p(dir);
    if (s != CT_OK) return s;
    /* the test set's classes: the run's, or the subset scored */
    const char *const *cn = (const char *const *)test->classnames;
    int K = test->n_classes;
    int64_t n = test->n_items;
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    if ((s = ct_metrics_save_json(m, cn, path)) != CT_OK) return s;
    char **keys = NULL;
    s = item_keys(test, &keys);
    snprintf(path, sizeof path, "%s/predictions.csv", dir);
    if (s == CT_OK)
        s = ct_predictions_save_csv(path, (const char *const *)keys, labels, probs, n, K, cn);
    free_keys(keys, n);
    if (s != CT_OK) return s;
    eval_kv ek;
    eval_kv_make(r, spec, test, &ek);
    return ct_report_run(dir, ek.title, ek.kv, EVAL_KV_N, m, cn, NULL);
}

/* test has the run's classes, in order, and items. */
static ct_status same_classes(const ct_saved_run *r, const ct_dataset *test,
                              const char *data_spec) {
    if (!test->masks != !r->info.segmentation)
        return ct_set_error(CT_ERR_ARG, "%s is %s dataset but the run %s %s",
                            data_spec ? data_spec : test->name,
                            test->masks ? "a segmentation" : "a classification", r->dir,
                            r->info.segmentation ? "labels pixels (a segmentation run)"
                                                 : "labels whole images");
    if (test->n_classes != r->n_classes)
        return ct_set_error(CT_ERR_ARG, "%s has %d classes, the run %s has %d",
                            data_spec ? data_spec : test->name, test->n_classes, r->dir,
                            r->n_classes);
    for (int k = 0; k < r->n_classes; k++)
        if (strcmp(test->classnames[k], r->classnames[k]))
            return ct_set_error(CT_ERR_ARG, "class %d is \"%s\" in %s but \"%s\" in the run %s",
                                k, test->classnames[k], data_spec ? data_spec : test->name,
                                r->classnames[k], r->dir);
    if (test->n_items == 0)
        return ct_set_error(CT_ERR_ARG, "%s: no test images", data_spec ? data_spec : test->name);
    return CT_OK;
}

/* Where each of test's classes is among the run's, by name (*map malloc'ed,
 * test->n_classes entries). A class the run does not have, or has twice, is
 * an error saying how to score other classes. */
static ct_status class_map(const ct_saved_run *r, const ct_dataset *test, const char *data_spec,
                           int **map) {
    const char *what = data_spec ? data_spec : test->name;
    int Kt = test->n_classes;
    int *mp = malloc((size_t)(Kt > 0 ? Kt : 1) * sizeof *mp);
    if (!mp) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    for (int c = 0; c < Kt; c++) {
        mp[c] = -1;
        for (int k = 0; k < r->n_classes; k++) {
            if (strcmp(test->classnames[c], r->classnames[k])) continue;
            if (mp[c] >= 0) {
                int first = mp[c];
                free(mp);
                return ct_set_error(CT_ERR_ARG, "class \"%s\" of %s is classes %d and %d of the "
                                    "run %s: which one to score is ambiguous",
                                    test->classnames[c], what, first, k, r->dir);
            }
            mp[c] = k;
        }
        if (mp[c] < 0) {
            free(mp);
            return ct_set_error(CT_ERR_ARG, "class %d of %s (\"%s\") is not one of the %d classes "
                                "of the run %s: to score other classes, give them to "
                                "ct_saved_run_set_classes before attaching (`cliptune eval` does "
                                "it), which methods with class-agnostic learned tensors allow",
                                c, what, test->classnames[c], r->n_classes, r->dir);
        }
    }
    *map = mp;
    return CT_OK;
}

int ct_saved_run_class_relation(const ct_saved_run *r, const ct_dataset *test) {
    if (!r || !test || !test->classnames) return -1;
    int K = r->n_classes, Kt = test->n_classes;
    bool same = K == Kt;
    for (int k = 0; same && k < K; k++) same = !strcmp(r->classnames[k], test->classnames[k]);
    if (same) return 0;
    for (int c = 0; c < Kt; c++) {
        int hits = 0;
        for (int k = 0; k < K; k++) hits += !strcmp(r->classnames[k], test->classnames[c]);
        if (hits != 1) return 2;
    }
    return 1;
}

ct_status ct_saved_run_evaluate(ct_saved_run *r, const ct_dataset *test, const char *data_spec,
                                const char *cache_dir, const char *out_dir, ct_metrics *m) {
    ct_status s = need_state(r, "saved_run_evaluate");
    if (s != CT_OK) return s;
    if (!test || !m) return ct_set_error(CT_ERR_ARG, "saved_run_evaluate: NULL data or metrics");
    memset(m, 0, sizeof *m);
    if (r->info.multi_label || r->info.segmentation)
        return ct_set_error(CT_ERR_ARG, "%s is a %s run: evaluate it with %s", r->dir,
                            r->info.multi_label ? "multi-label" : "segmentation",
                            r->info.multi_label ? "ct_saved_run_evaluate_ml (mAP)"
                                                : "ct_saved_run_evaluate_seg (mIoU)");
    /* a test set with other classes: each must be one of the run's (by
     * name), and the run's scores are restricted to them, as CoOp scores
     * ImageNet-A/-R's 200 classes with an ImageNet model */
    int *map = NULL;
    if (ct_saved_run_class_relation(r, test) == 0 || test->masks)
        s = same_classes(r, test, data_spec);
    else if ((s = class_map(r, test, data_spec, &map)) == CT_OK && test->n_items == 0)
        s = ct_set_error(CT_ERR_ARG, "%s: no test images", data_spec ? data_spec : test->name);
    if (s != CT_OK) {
        free(map);
        return s;
    }
    int Kr = r->n_classes, K = map ? test->n_classes : Kr;
    float *p = malloc((size_t)test->n_items * (size_t)Kr * sizeof *p);
    int *labels = NULL;
    if (!p) {
        free(map);
        return ct_set_error(CT_ERR_NOMEM, "out of memory");
    }
    if (map && r->tax) {
        free(map), free(p);
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s is a hierarchy run: its taxonomy is over the "
                            "run's classes, so it is evaluated on those classes only, not on "
                            "the subset in %s", r->dir, data_spec ? data_spec : test->name);
    }
    ct_features f = {0};
    s = scores_of(r, test, cache_dir, p, &labels, r->tax ? &f : NULL);
    if (s == CT_OK) s = check_finite(r, p, test->n_items, test);
    if (s == CT_OK && map) { /* the run's scores of the test classes only */
        float *q = malloc((size_t)test->n_items * (size_t)K * sizeof *q);
        if (!q) s = ct_set_error(CT_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; q && i < test->n_items; i++)
            for (int c = 0; c < K; c++) q[i * K + c] = p[i * Kr + map[c]];
        if (q) free(p), p = q;
    }
    free(map);
    /* from the logits, as ct_run computes a run's metrics: the same numbers */
    if (s == CT_OK) s = ct_metrics_compute(p, false, labels, test->n_items, K, 0, m);
    /* a hierarchy run: its node scores and ProTeCt's metrics, as ct_run's */
    if (s == CT_OK && r->tax)
        s = ct_run_hierarchy(r->method, r->state, &r->task, &r->hp, r->tax,
                             f.x ? &f : NULL, test, p, labels, test->n_items, m);
    ct_features_free(&f);
    if (s == CT_OK) softmax_rows(p, test->n_items, K);
    if (s == CT_OK && out_dir) s = write_eval(r, data_spec, test, m, p, labels, out_dir);
    if (s != CT_OK) ct_metrics_free(m);
    free(p), free(labels);
    return s;
}

ct_status ct_saved_run_evaluate_ml(ct_saved_run *r, const ct_dataset *test, const char *data_spec,
                                   const char *cache_dir, const char *out_dir, ct_ml_metrics *m) {
    ct_status s = need_state(r, "saved_run_evaluate_ml");
    if (s != CT_OK) return s;
    if (!test || !m)
        return ct_set_error(CT_ERR_ARG, "saved_run_evaluate_ml: NULL data or metrics");
    memset(m, 0, sizeof *m);
    if (!r->info.multi_label || !test->targets)
        return ct_set_error(CT_ERR_ARG, "%s: multi-label evaluation needs a multi-label run and "
                            "test set (the run is %s, %s is %s)", r->dir,
                            r->info.multi_label ? "multi-label" : "single-label",
                            data_spec ? data_spec : test->name,
                            test->targets ? "multi-label" : "single-label");
    if ((s = same_classes(r, test, data_spec)) != CT_OK) return s;
    int K = r->n_classes;
    int64_t n = test->n_items;
    float *p = malloc((size_t)n * (size_t)K * sizeof *p);
    if (!p) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    s = scores_of(r, test, cache_dir, p, NULL, NULL);
    if (s == CT_OK) s = check_finite(r, p, n, test);
    /* from the logits, as ct_run computes a run's metrics */
    if (s == CT_OK)
        s = ct_ml_metrics_compute(p, false, test->targets, n, K, CT_ML_THRESH_DEFAULT, m);
    if (s == CT_OK && out_dir) {
        sigmoid_all(p, n * K);
        char path[4200];
        const char *const *cn = (const char *const *)r->classnames;
        char **keys = NULL;
        s = item_keys(test, &keys);
        if (s == CT_OK) s = ct_mkdir_p(out_dir);
        snprintf(path, sizeof path, "%s/metrics.json", out_dir);
        if (s == CT_OK) s = ct_ml_metrics_save_json(m, cn, path);
        snprintf(path, sizeof path, "%s/predictions.csv", out_dir);
        if (s == CT_OK)
            s = ct_ml_predictions_save_csv(path, (const char *const *)keys, test->targets, p, n,
                                           K, m->thresh, cn);
        free_keys(keys, n);
        eval_kv ek;
        eval_kv_make(r, data_spec, test, &ek);
        if (s == CT_OK)
            s = ct_report_run_ml(out_dir, ek.title, ek.kv, EVAL_KV_N, m, cn, NULL);
    }
    if (s != CT_OK) ct_ml_metrics_free(m);
    free(p);
    return s;
}

/* The dense features of d in the segmentation geometry. */
static ct_status seg_features(ct_saved_run *r, const ct_dataset *d, const char *cache_dir,
                              ct_features *f) {
    ct_status s;
    memset(f, 0, sizeof *f);
    if (r->method->seg_pixels) return CT_OK; /* it reads the images */
    if (cache_dir && (s = ct_mkdir_p(cache_dir)) != CT_OK) return s;
    const ct_bundle *b = ct_model_bundle(r->model);
    ct_preprocess_cfg pre;
    ct_seg_preprocess(&b->pre, ct_clip_get_config(b->clip)->image_size, &pre);
    ct_feature_req req = {.clip = b->clip, .pre = &pre, .data = d,
                          .seed = (uint64_t)r->info.seed, .cache_dir = cache_dir, .batch = 32,
                          .dense = true, .dense_kind = r->method->dense_kind,
                          .progress = r->progress ? on_features : NULL, .progress_ctx = r};
    return ct_features_get(&req, f);
}

/* a path's base name without its extension */
static void stem(const char *p, const char **b, size_t *len) {
    const char *s = strrchr(p, '/');
    *b = s ? s + 1 : p;
    const char *dot = strrchr(*b, '.');
    *len = dot && dot > *b ? (size_t)(dot - *b) : strlen(*b);
}

static bool same_stem(const char *p, const char *q) {
    const char *a, *b;
    size_t la, lb;
    stem(p, &a, &la);
    stem(q, &b, &lb);
    return la == lb && !memcmp(a, b, la);
}

ct_status ct_saved_run_segment_files(ct_saved_run *r, const char *const *paths, int n,
                                     const char *out_dir, int64_t *class_pixels) {
    ct_status s = need_state(r, "saved_run_segment_files");
    if (s != CT_OK) return s;
    if (n < 0 || (n > 0 && !paths) || !out_dir)
        return ct_set_error(CT_ERR_ARG, "saved_run_segment_files: NULL paths or output folder");
    if (!r->info.segmentation)
        return ct_set_error(CT_ERR_ARG, "%s is not a segmentation run: it labels whole images "
                            "(ct_saved_run_predict_files)", r->dir);
    ct_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    if (!items) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && s == CT_OK; i++) {
        if (!paths[i]) s = ct_set_error(CT_ERR_ARG, "saved_run_segment_files: path %d NULL", i);
        items[i].path = (char *)paths[i];
    }
    /* one label map per base name: two images named alike would overwrite */
    for (int i = 0; i < n && s == CT_OK; i++)
        for (int j = 0; j < i && s == CT_OK; j++)
            if (same_stem(paths[i], paths[j]))
                s = ct_set_error(CT_ERR_ARG, "%s and %s would both be labelled as %s/%s.png: "
                                 "label them in separate calls or folders", paths[j], paths[i],
                                 out_dir, "<name>");
    ct_dataset files = {.name = "predict", .root = "", .n_classes = r->n_classes,
                        .classnames = r->classnames, .n_items = n, .items = items};
    ct_features f = {0};
    const ct_bundle *mb = ct_model_bundle(r->model);
    ct_seg_model sg = {mb->clip, &mb->pre};
    if (s == CT_OK && n > 0) s = seg_features(r, &files, NULL, &f);
    if (s == CT_OK) s = ct_mkdir_p(out_dir);
    if (s == CT_OK && n > 0)
        s = ct_seg_label(r->method, r->state, &files, &f, &sg, r->n_classes, out_dir,
                         class_pixels);
    ct_features_free(&f);
    free(items);
    return s;
}

ct_status ct_saved_run_evaluate_seg(ct_saved_run *r, const ct_dataset *test,
                                    const char *data_spec, const char *cache_dir,
                                    const char *out_dir, ct_seg_metrics *m) {
    ct_status s = need_state(r, "saved_run_evaluate_seg");
    if (s != CT_OK) return s;
    if (!test || !m)
        return ct_set_error(CT_ERR_ARG, "saved_run_evaluate_seg: NULL data or metrics");
    memset(m, 0, sizeof *m);
    if (!r->info.segmentation)
        return ct_set_error(CT_ERR_ARG, "%s is not a segmentation run", r->dir);
    if ((s = same_classes(r, test, data_spec)) != CT_OK) return s;
    ct_features f = {0};
    if ((s = seg_features(r, test, cache_dir, &f)) != CT_OK) return s;
    if (out_dir) s = ct_mkdir_p(out_dir);
    const ct_bundle *mb = ct_model_bundle(r->model);
    ct_seg_model sg = {mb->clip, &mb->pre};
    if (s == CT_OK)
        s = ct_seg_evaluate(r->method, r->state, test, &f, &sg, r->n_classes, out_dir, m);
    ct_features_free(&f);
    if (s == CT_OK && out_dir) {
        char path[4200];
        const char *const *cn = (const char *const *)r->classnames;
        snprintf(path, sizeof path, "%s/metrics.json", out_dir);
        s = ct_seg_metrics_save_json(m, cn, path);
        eval_kv ek;
        eval_kv_make(r, data_spec, test, &ek);
        if (s == CT_OK) s = ct_report_run_seg(out_dir, ek.title, ek.kv, EVAL_KV_N, m, cn, NULL);
    }
    if (s != CT_OK) ct_seg_metrics_free(m);
    return s;
}

/* src_dir/name into dir (optional files skipped when absent). */
static ct_status copy_into(const char *src_dir, const char *name, const char *dir,
                           bool optional) {
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    if (optional && access(src, F_OK) != 0) return CT_OK;
    return ct_copy_file(src, dst);
}

ct_status ct_saved_run_export_merged(ct_saved_run *r, const char *out_dir) {
    ct_status s = need_state(r, "saved_run_export_merged");
    if (s != CT_OK) return s;
    if (!out_dir) return ct_set_error(CT_ERR_ARG, "saved_run_export_merged: NULL directory");
    if (!r->method->merge)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s learns nothing a plain CLIP can hold "
                            "(merged export supports clip-lora)", r->method->name);
    /* the tokenizer's vocab.json + merges.txt: the model folder's, or the
     * vocab.json the model was loaded with */
    const char *mp = ct_model_path(r->model), *bpe = ct_model_bpe(r->model);
    char tok_dir[4096];
    struct stat sb;
    bool folder = stat(mp, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (bpe) {
        size_t n = strlen(bpe);
        if (n < 10 || strcmp(bpe + n - 10, "vocab.json"))
            return ct_set_error(CT_ERR_UNSUPPORTED, "the tokenizer %s is not an HF vocab.json + "
                                "merges.txt (load the model with a vocab.json)", bpe);
        const char *slash = strrchr(bpe, '/');
        snprintf(tok_dir, sizeof tok_dir, "%.*s", slash ? (int)(slash - bpe) : 1,
                 slash ? bpe : ".");
    } else if (folder) {
        snprintf(tok_dir, sizeof tok_dir, "%s", mp);
    } else {
        return ct_set_error(CT_ERR_UNSUPPORTED, "the tokenizer of %s is not an HF vocab.json + "
                            "merges.txt (give a model folder, or a vocab.json)", mp);
    }
    /* a second copy of the frozen model takes the merged weights */
    ct_model_opts o = {.bpe = bpe, .act = ct_model_act(r->model), .need_tokenizer = true};
    ct_model *merged = ct_model_load_ex(mp, &o);
    if (!merged) return CT_ERR_FORMAT;
    s = r->method->merge(r->state, ct_model_clip(merged));
    if (s == CT_OK) s = ct_mkdir_p(out_dir);
    if (s == CT_OK) s = ct_clip_save_hf(ct_model_clip(merged), out_dir);
    if (s == CT_OK) s = copy_into(tok_dir, "vocab.json", out_dir, false);
    if (s == CT_OK) s = copy_into(tok_dir, "merges.txt", out_dir, false);
    if (s == CT_OK) s = copy_into(tok_dir, "tokenizer_config.json", out_dir, true);
    if (s == CT_OK) s = copy_into(tok_dir, "special_tokens_map.json", out_dir, true);
    if (s == CT_OK && folder) s = copy_into(mp, "preprocessor_config.json", out_dir, true);
    ct_model_free(merged);
    return s;
}

ct_status ct_saved_run_explain(ct_saved_run *r, const char *path, int k, int n, int *idx,
                               float *score) {
    ct_status s = need_state(r, "saved_run_explain");
    if (s != CT_OK) return s;
    if (strcmp(r->method->name, "vcd"))
        return ct_set_error(CT_ERR_UNSUPPORTED, "explanations need a vcd run; %s is a %s run",
                            r->dir, r->method->name);
    if (!path || k < 0 || k >= r->n_classes || n < 1 || !idx || !score)
        return ct_set_error(CT_ERR_ARG, "saved_run_explain: bad path, class or output");
    float *x = malloc((size_t)ct_model_embed_dim(r->model) * sizeof *x);
    if (!x) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    s = ct_model_encode_images(r->model, &path, 1, x);
    if (s == CT_OK) s = ct_vcd_explain(r->state, x, k, n, idx, score);
    free(x);
    return s;
}

const char *ct_saved_run_descriptor(ct_saved_run *r, int k, int j) {
    if (!r || !r->state || strcmp(r->method->name, "vcd")) return NULL;
    return ct_vcd_descriptor(r->state, k, j);
}

/* ---- the official repositories' layout ---- */

const char *ct_saved_run_official_repo(const ct_saved_run *r) {
    const ct_official_layout *o = r ? ct_official_layout_of(r->info.method) : NULL;
    return o ? o->repo : NULL;
}

ct_status ct_saved_run_export_official(ct_saved_run *r, const char *path) {
    ct_status s = need_state(r, "saved_run_export_official");
    if (s != CT_OK) return s;
    if (!path) return ct_set_error(CT_ERR_ARG, "saved_run_export_official: NULL path");
    return ct_official_export(r->method, r->state, path, r->info.hyper_parameters,
                              ct_model_hash(r->model));
}
