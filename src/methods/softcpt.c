/* SoftCPT, soft context sharing for prompt tuning (Ding et al., "Prompt
 * Tuning with Soft Context Sharing for Vision-Language Models", 2022/2024).
 * Followed: kding1225/softcpt trainers/mtcoop.py (TaskPromptLearner,
 * PromptLearner, PromptGen, CustomCLIP.forward / compute_text_features_full,
 * MTCoOp.mutitask_loss), train.py's TRAINER.MTCOOP defaults,
 * configs/trainers/MTCoOp/vit_b16_ep50.yaml and README.md's SoftCPT-NATA /
 * -NATS command lines (scripts/main_mtcoop.sh: CLASS_N_CTX 0, TASK_N_CTX 4,
 * N_CTX 16, CSC False, PG_TYPE lin).
 *
 * Several few-shot tasks (datasets) are learned jointly. Each task has a
 * name (here its dataset's name). A task prompt "[SOT] u_1 .. u_m {task
 * name}. [EOT]" with m learned task-context vectors (shared by all tasks,
 * or one set per task with task_csc=1) goes through CLIP's frozen text
 * tower; its pooled (unnormalised) feature f_t (E) goes through the meta
 * network, a linear map (pg_type=lin: f_t @ proj, proj (E, n_ctx * W),
 * N(0, 0.02)), giving task t's context c_t (n_ctx, W). Task t's classes are
 * prompted CoOp-style with that context, "[SOT] c_t {class}. [EOT]", and
 * encoded by the frozen text tower. Logits are CLIP's over the classes of
 * every task, one after another (mtcoop.py's torch.cat over the tasks'
 * text features); the loss of an image is the cross-entropy over its own
 * task's classes only, summed over the batch and divided by the batch size
 * (mutitask_loss: cur_output[mask][:, st:ed], reduction sum, / batch_size),
 * written here as the cross-entropy of the logits with every other task's
 * columns pushed to -1e30 (exp underflows to 0 exactly: the same value and
 * gradient). Learned: the task context and proj; the class prompts carry no
 * learned vectors of their own.
 *
 * Batches mix the tasks: the official data manager merges every task's
 * few-shot training set into one and samples it at random (Dassl's
 * RandomSampler over the merged train_x); ct_mt_run gives the trainer that
 * merged set and ct_train hands the loss each item's task (ct_batch.tasks).
 * At test time each task is scored over its own classes (its columns of
 * the logits).
 *
 * Not carried over: class-specific contexts (CSC True, "CATA": per-class
 * features concatenated to the task feature, ClassPromptLearner), the
 * pg_type linmean / lincls that need them, and class sub-sampling
 * (CLS_SAMPLE_RATE, a memory saving): asked for, they are errors. On a
 * single-task run (ct_run) the method is one task named after the dataset.
 *
 * Learned tensor names: "task_prompt_learner.ctx" and "prompt_gen.proj",
 * the modules MTCoOp.build_model registers and the keys of their state
 * dicts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"

typedef struct {
    int n_tasks, K, E, W, n_ctx;
    int *off;            /* (n_tasks + 1) first class of each task                */
    int *task_of;        /* (K) task of each class                               */
    ct_prompt *task_pl;  /* the task prompts; its context is learned             */
    ct_prompt **cls_pl;  /* (n_tasks) the class prompts of each task (context given) */
    ct_tensor *proj;     /* (E, n_ctx * W): PromptGen's linear map                */
    ct_tensor *ctx_pre;  /* the task context (a view of task_pl's)                */
    /* evaluation cache: normalised text features (K, E) and the values of
     * the learned tensors they came from */
    float *txt, *key;
    bool txt_ok;
} softcpt_state;

static void softcpt_destroy(void *st) {
    softcpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->task_pl);
    for (int t = 0; s->cls_pl && t < s->n_tasks; t++) ct_prompt_destroy(s->cls_pl[t]);
    free(s->cls_pl);
    ct_tensor_free(s->proj);
    free(s->off), free(s->task_of), free(s->txt), free(s->key);
    free(s);
}

/* A CoOp prompt learner (method_prompt.c) from explicit keys. */
static ct_status prompt_with(const ct_task *task, int n_ctx, const char *init, int csc,
                             const char *pos, const char *prec, int shared, ct_prompt **out) {
    ct_kv kv = {0};
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%d", n_ctx), snprintf(b, sizeof b, "%d", csc);
    snprintf(c, sizeof c, "%d", shared);
    ct_status s = ct_kv_set(&kv, "n_ctx", a);
    if (s == CT_OK) s = ct_kv_set(&kv, "ctx_init", init);
    if (s == CT_OK) s = ct_kv_set(&kv, "csc", b);
    if (s == CT_OK) s = ct_kv_set(&kv, "class_token_position", pos);
    if (s == CT_OK) s = ct_kv_set(&kv, "prec", prec);
    if (s == CT_OK) s = ct_kv_set(&kv, "shared_prefix", c);
    void *p = NULL;
    if (s == CT_OK) s = ct_prompt_create(task, &kv, 0, &p);
    ct_kv_free(&kv);
    *out = p;
    return s;
}

static ct_status softcpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int n_ctx, csc, task_n_ctx, task_csc, shared;
    double cls_rate;
    const char *init, *pos, *tinit, *tpos, *pg, *prec;
    ct_status st = ct_kv_int(hp, "n_ctx", 16, &n_ctx);
    if (st == CT_OK) st = ct_kv_str(hp, "ctx_init", "", &init);
    if (st == CT_OK) st = ct_kv_int(hp, "csc", 0, &csc);
    if (st == CT_OK) st = ct_kv_str(hp, "class_token_position", "end", &pos);
    if (st == CT_OK) st = ct_kv_int(hp, "task_n_ctx", 4, &task_n_ctx);
    if (st == CT_OK) st = ct_kv_str(hp, "task_ctx_init", "", &tinit);
    if (st == CT_OK) st = ct_kv_int(hp, "task_csc", 0, &task_csc);
    if (st == CT_OK) st = ct_kv_str(hp, "task_token_position", "end", &tpos);
    if (st == CT_OK) st = ct_kv_str(hp, "pg_type", "lin", &pg);
    if (st == CT_OK) st = ct_kv_double(hp, "cls_sample_rate", 0, &cls_rate);
    if (st == CT_OK) st = ct_kv_str(hp, "prec", "fp16", &prec);
    if (st == CT_OK) st = ct_kv_int(hp, "shared_prefix", 1, &shared);
    if (st != CT_OK) return st;
    if (csc != 0)
        return ct_set_error(CT_ERR_UNSUPPORTED, "softcpt: csc=%d: class-specific contexts "
                            "(SoftCPT-CATA) are not implemented; csc=0", csc);
    if (strcmp(pg, "lin"))
        return ct_set_error(CT_ERR_UNSUPPORTED, "softcpt: pg_type=%s: only lin (linmean and "
                            "lincls need class-specific contexts)", pg);
    if (cls_rate != 0)
        return ct_set_error(CT_ERR_UNSUPPORTED, "softcpt: cls_sample_rate=%g: class "
                            "sub-sampling is not implemented (0)", cls_rate);
    if (task_csc != 0 && task_csc != 1)
        return ct_set_error(CT_ERR_ARG, "softcpt: task_csc=%d (0 or 1)", task_csc);
    if (!task->tok || !task->clip) return ct_set_error(CT_ERR_ARG, "softcpt: no model");
    int nt = task->n_tasks > 0 ? task->n_tasks : 1;
    if (task->n_tasks > 0 && (!task->task_names || !task->task_offsets ||
                              task->task_offsets[0] != 0 ||
                              task->task_offsets[nt] != task->n_classes))
        return ct_set_error(CT_ERR_ARG, "softcpt: the task's multi-task class ranges do not "
                            "cover its %d classes", task->n_classes);
    softcpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "softcpt: out of memory");
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    s->n_tasks = nt, s->K = task->n_classes, s->E = c->embed_dim, s->W = c->text_width;
    s->off = malloc((size_t)(nt + 1) * sizeof *s->off);
    s->task_of = malloc((size_t)(s->K ? s->K : 1) * sizeof *s->task_of);
    s->cls_pl = calloc((size_t)nt, sizeof *s->cls_pl);
    s->txt = malloc((size_t)(s->K ? s->K : 1) * s->E * sizeof *s->txt);
    if (!s->off || !s->task_of || !s->cls_pl || !s->txt) {
        softcpt_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "softcpt: out of memory");
    }
    for (int t = 0; t <= nt; t++)
        s->off[t] = task->n_tasks > 0 ? task->task_offsets[t] : t == 0 ? 0 : task->n_classes;
    for (int t = 0; t < nt && st == CT_OK; t++) {
        if (s->off[t + 1] <= s->off[t])
            st = ct_set_error(CT_ERR_ARG, "softcpt: task %d has no classes", t);
        for (int k = s->off[t]; st == CT_OK && k < s->off[t + 1]; k++) s->task_of[k] = t;
    }
    /* the task prompts: one "class" per task, named after it */
    const char *one_name = task->dataset_name ? task->dataset_name : "task";
    ct_task tt = *task;
    tt.n_classes = nt;
    tt.classnames = task->n_tasks > 0 ? task->task_names : (char *const *)&one_name;
    tt.n_tasks = 0;
    if (st == CT_OK) st = prompt_with(&tt, task_n_ctx, tinit, task_csc, tpos, prec, shared,
                                      &s->task_pl);
    /* each task's class prompts, with the context the meta network gives */
    for (int t = 0; t < nt && st == CT_OK; t++) {
        ct_task ct = *task;
        ct.n_classes = s->off[t + 1] - s->off[t];
        ct.classnames = task->classnames + s->off[t];
        ct.n_tasks = 0;
        st = prompt_with(&ct, n_ctx, init, 0, pos, prec, shared, &s->cls_pl[t]);
    }
    if (st == CT_OK) {
        /* ctx_init fixes the class context's length to its word count */
        s->n_ctx = (int)(ct_prompt_ctx(s->cls_pl[0])->numel / s->W);
        s->ctx_pre = ct_prompt_ctx(s->task_pl);
        s->ctx_pre->name = "task_prompt_learner.ctx";
        s->proj = ct_tensor_new2(s->E, (int64_t)s->n_ctx * s->W, true);
        size_t nk = (size_t)(s->ctx_pre->numel + (s->proj ? s->proj->numel : 0));
        s->key = malloc(nk * sizeof *s->key);
        if (!s->proj || !s->key) st = ct_set_error(CT_ERR_NOMEM, "softcpt: out of memory");
    }
    if (st == CT_OK) {
        s->proj->name = "prompt_gen.proj";
        ct_rng r; /* PromptGen: nn.init.normal_(self.proj, std=0.02) */
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "softcpt.proj"));
        ct_rng_fill_normal(&r, s->proj->data, (size_t)s->proj->numel, 0.0f, 0.02f);
    }
    if (st != CT_OK) {
        softcpt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int softcpt_params(void *st, ct_tensor **out, int cap) {
    softcpt_state *s = st;
    if (cap < 2) return 0;
    out[0] = s->ctx_pre, out[1] = s->proj;
    return 2;
}

static int softcpt_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "task_prompt_learner.ctx", out[1] = "prompt_gen.proj";
    return 2;
}

/* Normalised text features (K, E) of every task's classes: task features
 * -> contexts -> class prompts (CustomCLIP.forward). */
static ct_tensor *text_features(softcpt_state *s, ct_graph *g) {
    ct_tensor *tf = ct_prompt_text_features_raw(s->task_pl, g);  /* (n_tasks, E) */
    ct_tensor *ctx = ct_matmul(g, tf, s->proj, false, false);    /* (n_tasks, n_ctx * W) */
    ct_tensor **parts = ct_graph_alloc(g, (size_t)s->n_tasks * sizeof *parts);
    if (!ctx || !parts) return NULL;
    for (int t = 0; t < s->n_tasks; t++) {
        parts[t] = ct_prompt_text_features_with(s->cls_pl[t], g, ct_slice(g, ctx, 0, t, 1), NULL);
        if (!parts[t]) return NULL;
    }
    ct_tensor *txt = s->n_tasks == 1 ? parts[0] : ct_concat(g, parts, s->n_tasks, 0);
    return ct_l2_normalize(g, txt, 1e-12f);
}

static ct_tensor *softcpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    softcpt_state *s = st;
    int64_t n = b->n, K = s->K;
    int64_t *labels = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *labels);
    ct_real *mask = ct_graph_alloc(g, (size_t)(n ? n : 1) * (size_t)K * sizeof *mask);
    if (!labels || !mask) return NULL;
    for (int64_t i = 0; i < n; i++) {
        int y = b->labels[i];
        if (y < 0 || y >= K) {
            ct_set_error(CT_ERR_ARG, "softcpt: label %d of item %lld outside 0 .. %lld", y,
                         (long long)i, (long long)K - 1);
            return NULL;
        }
        int t = b->tasks ? b->tasks[i] : s->task_of[y];
        if (t < 0 || t >= s->n_tasks || s->task_of[y] != t) {
            ct_set_error(CT_ERR_ARG, "softcpt: item %lld of task %d has label %d of task %d",
                         (long long)i, t, y, s->task_of[y]);
            return NULL;
        }
        labels[i] = y;
        /* mutitask_loss: only the item's own task's columns take part */
        for (int64_t k = 0; k < K; k++)
            mask[i * K + k] = k >= s->off[t] && k < s->off[t + 1] ? 0.0f : -1e30f;
    }
    int64_t shape[2] = {n, K};
    ct_tensor *lg = ct_prompt_scores(s->cls_pl[0], g, b, text_features(s, g));
    if (!lg) return NULL;
    return ct_cross_entropy(g, ct_add(g, lg, ct_graph_wrap(g, mask, 2, shape)), labels, 0.0f);
}

/* Scores (n, K) over every task's classes; a task's own are its columns
 * off[t] .. off[t + 1] - 1. */
static ct_tensor *softcpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    softcpt_state *s = st;
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) return ct_prompt_scores(s->cls_pl[0], g, b, text_features(s, g));
    size_t n0 = (size_t)s->ctx_pre->numel, n1 = (size_t)s->proj->numel;
    if (!s->txt_ok || memcmp(s->key, s->ctx_pre->data, n0 * sizeof(float)) ||
        memcmp(s->key + n0, s->proj->data, n1 * sizeof(float))) {
        ct_tensor *t = text_features(s, g);
        if (!t) return NULL;
        memcpy(s->txt, t->data, (size_t)s->K * s->E * sizeof(float));
        memcpy(s->key, s->ctx_pre->data, n0 * sizeof(float));
        memcpy(s->key + n0, s->proj->data, n1 * sizeof(float));
        s->txt_ok = true;
    }
    int64_t shape[2] = {s->K, s->E};
    return ct_prompt_scores(s->cls_pl[0], g, b, ct_graph_wrap(g, s->txt, 2, shape));
}

const ct_method ct_method_softcpt = {
    .name = "softcpt",
    .category = "prompt learning",
    .setup = "multi-task",
    .paper = "Ding et al., Prompt Tuning with Soft Context Sharing for Vision-Language Models "
             "(SoftCPT), 2022",
    /* train.py's TRAINER.MTCOOP defaults with README's SoftCPT-NATA line
     * (task_n_ctx 4, n_ctx 16, pg_type lin) and MTCoOp/vit_b16_ep50.yaml's
     * optimiser; FINAL_MODEL last_step (select=last). Augmented views as
     * CoOp's (docs/methods/softcpt.md). */
    .defaults = "n_ctx=16 ctx_init= csc=0 class_token_position=end task_n_ctx=4 "
                "task_ctx_init= task_csc=0 task_token_position=end pg_type=lin "
                "cls_sample_rate=0 prec=fp16 optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 "
                "sched=cosine warmup_epochs=1 warmup_type=constant warmup_lr=1e-5 batch_size=32 "
                "epochs=50 select=last aug_views=10 views=cycle",
    .create = softcpt_create,
    .destroy = softcpt_destroy,
    .params = softcpt_params,
    .loss = softcpt_loss,
    .logits = softcpt_logits,
    .param_names = softcpt_param_names,
    .multi_task = true,
};
