/* MVLPT, multitask vision-language prompt tuning (Shen et al., "Multitask
 * Vision-Language Prompt Tuning", 2022), as sIncerass/MVLPT at 6fa518b runs
 * it: trainers/mvlpt.py in its UPT mode (COOP.N_CTX = VPT.N_CTX = 4) with
 * DATASET.MULTITASK, scripts/mvlpt/main_mt_coopdata_cut.sh (the source
 * stage) and main_single_coopdata_cut.sh with --model-dir (the target
 * stage), configs/trainers/MVLPT/vit_b16.yaml.
 *
 * The prompts are UPT's (upt.c, whose machinery this reuses): one text
 * context and one set of VPT-deep vision prompts, coupled through a shared
 * block. MVLPT learns them on several source tasks at once (ct_mt_run: the
 * tasks' classes laid one after another, batches mixing the tasks), then
 * uses them to initialise the prompts of each target task, which is tuned
 * alone:
 *   - source stage: logits over all the tasks' classes (CustomCLIP.forward),
 *     cross-entropy over all of them; label_pertask=1 is the code's
 *     DATASET.MULTITASK_LABEL_PERTASK (--multi-task-label_pertask, off in the
 *     scripts): each item's logits outside its own task's classes are
 *     multiplied by 0 (select_index, a 0/1 float mask), not masked, so they
 *     stay in the softmax as logits of 0. Each task is scored over its own
 *     classes (MVLPTTrainer.test: out[class_start:class_end]).
 *   - target stage: init_from=RUN_DIR loads a saved MVLPT run's learned
 *     tensors (load_model with strict=False; every prompt tensor is
 *     class-independent, token_prefix/suffix are not learned), then trains
 *     on the target task as any single-task run.
 *
 * Learned tensor names: UPT's (mvlpt.py's prompt_learner state dict keys).
 * init_from is read when the state is created: a run trained from it
 * needs RUN_DIR readable when it is loaded again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/run.h"
#include "base/error.h"
#include "methods/method_image.h"
#include "methods/upt.h"

typedef struct {
    void *upt;
    int K, n_tasks;
    int off[CT_MT_MAX_TASKS + 1];
    bool pertask;
} mvlpt_state;

static void mvlpt_destroy(void *st) {
    mvlpt_state *s = st;
    if (!s) return;
    ct_upt_destroy(s->upt);
    free(s);
}

static int mvlpt_params(void *st, ct_tensor **out, int cap) {
    return ct_upt_params(((mvlpt_state *)st)->upt, out, cap);
}

static int mvlpt_param_names(void *st, const char **out, int cap) {
    return ct_upt_param_names(((mvlpt_state *)st)->upt, out, cap);
}

extern const ct_method ct_method_mvlpt;

static ct_status mvlpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int pertask = 0;
    const char *init = NULL;
    ct_status st = ct_kv_int(hp, "label_pertask", 0, &pertask);
    if (st == CT_OK) st = ct_kv_str(hp, "init_from", "", &init);
    if (st != CT_OK) return st;
    if (pertask != 0 && pertask != 1)
        return ct_set_error(CT_ERR_ARG, "mvlpt: label_pertask=%d (0 or 1)", pertask);
    if (task->n_tasks < 0 || task->n_tasks > CT_MT_MAX_TASKS)
        return ct_set_error(CT_ERR_ARG, "mvlpt: %d tasks", task->n_tasks);
    if (ct_clip_need_vit(task->clip, "mvlpt") != CT_OK) return CT_ERR_UNSUPPORTED;
    mvlpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "mvlpt: out of memory");
    s->K = task->n_classes, s->n_tasks = task->n_tasks, s->pertask = pertask;
    for (int t = 0; s->n_tasks > 0 && t <= s->n_tasks; t++) s->off[t] = task->task_offsets[t];
    st = ct_upt_create(task, hp, &s->upt);
    /* the target stage: the source run's prompts as the initial values */
    if (st == CT_OK && init && *init) st = ct_run_load_learned(&ct_method_mvlpt, s, init);
    if (st != CT_OK) {
        mvlpt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static ct_tensor *mvlpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    mvlpt_state *s = st;
    ct_tensor *lg = ct_upt_logits(s->upt, g, b);
    if (!lg || !s->pertask || s->n_tasks < 1 || !b->tasks) return lg;
    /* select_index: 1 on the item's own task's classes, 0 elsewhere, a
     * product (the other tasks' logits become 0, and stay in the softmax) */
    int64_t shape[2] = {b->n, s->K};
    ct_tensor *sel = ct_graph_tensor(g, 2, shape);
    if (!sel) return NULL;
    for (int64_t i = 0; i < b->n; i++) {
        int t = b->tasks[i];
        if (t < 0 || t >= s->n_tasks) {
            ct_set_error(CT_ERR_ARG, "mvlpt: item %lld of task %d (%d tasks)", (long long)i, t,
                         s->n_tasks);
            return NULL;
        }
        for (int k = s->off[t]; k < s->off[t + 1]; k++) sel->data[i * s->K + k] = 1;
    }
    return ct_mul(g, lg, sel);
}

static ct_tensor *mvlpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, mvlpt_logits(st, g, b), b);
}

const ct_method ct_method_mvlpt = {
    .name = "mvlpt",
    .category = "multimodal prompt learning",
    .setup = "multi-task few-shot",
    .paper = "Shen et al., Multitask Vision-Language Prompt Tuning (MVLPT), 2022",
    /* configs/trainers/MVLPT/vit_b16.yaml and the UPT branch of
     * scripts/mvlpt/main_mt_coopdata_cut.sh */
    .defaults = "n_ctx=4 ctx_init= csc=0 class_token_position=middle shared_prefix=1 prec=fp16 "
                "block_attention=token label_pertask=0 init_from= optim=sgd lr=0.002 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 epochs=200 batch_size=32 select=best_val "
                "train_aug=rrc_flip aug_scale_min=0.08",
    .create = mvlpt_create,
    .destroy = mvlpt_destroy,
    .params = mvlpt_params,
    .param_names = mvlpt_param_names,
    .loss = mvlpt_loss,
    .logits = mvlpt_logits,
    .pixels = true,
    .multi_task = true,
};
