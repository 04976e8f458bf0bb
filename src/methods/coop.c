/* CoOp, context optimization (Zhou et al., "Learning to Prompt for
 * Vision-Language Models", IJCV 2022). Followed: KaiyangZhou/CoOp
 * trainers/coop.py (PromptLearner, TextEncoder, CustomCLIP, CoOp.build_model /
 * forward_backward) at ff61507c, its configs/trainers/CoOp/ (*.yaml) and
 * COOP.md, and Dassl.pytorch's build_optimizer / build_lr_scheduler (the
 * trainer keys in the defaults).
 *
 * The class prompt is "[SOT] v_1 ... v_M {classname}. [EOT]" where the M
 * context vectors v are learned and everything else is CLIP's frozen token
 * embeddings. Logits are CLIP's, exp(logit_scale) * cos(image, text_k), over
 * all K classes; the loss is their cross-entropy. Only the context is
 * trained: gradients reach it through the frozen text tower.
 *
 * As coop.py:
 *   - prompts are tokenized as "X X ... X {name}." (M "X"s), or as
 *     "{ctx_init} {name}." with ctx_init's '_' read as ' ' and M = its number
 *     of space-separated words, the context then starting from the token
 *     embeddings at positions 1..M of the tokenized ctx_init (a given
 *     ctx_init makes the context generic even with csc=1, as in coop.py);
 *   - class names have '_' replaced by ' ';
 *   - generic context (M, W) shared by all classes, or class-specific
 *     (K, M, W) with csc=1, N(0, 0.02) when not initialised from words;
 *   - class token position end: [SOT][ctx][name . EOT ...]; middle:
 *     [SOT][ctx[:M/2]][name][ctx[M/2:]][. EOT ...]; front:
 *     [SOT][name][ctx][. EOT ...], where name is the first name_len tokens
 *     after the context, name_len = the BPE length of the class name alone;
 *   - text features pooled at the EOT position of the tokenized prompt
 *     (ct_clip_eot_positions: argmax of the ids for OpenAI checkpoints).
 *
 * Speed. The text features depend on the context only, not on the images,
 * so a step encodes the K prompts once for the whole batch, and evaluation
 * reuses them while the context is unchanged. The text tower is causal: the
 * state at a position depends only on the positions up to it. So, exactly:
 *   - the pooled EOT output does not depend on the padding after the EOT:
 *     no prompt is run past its EOT (the plain path, shared_prefix=0, runs
 *     all prompts to the last EOT, T = max EOT + 1, not 77);
 *   - the first P positions, SOT and the leading context vectors (P = 1 +
 *     n_ctx for a generic context at the end, 1 + n_ctx/2 in the middle, 1
 *     otherwise), are the same in every prompt, so their states are the
 *     same in every prompt at every layer. They are computed once, as one
 *     sequence, and each layer's keys and values at those positions are
 *     given to the class tails as shared attention keys/values
 *     (ct_attention's ek/ev). The tails (positions P .. EOT) are run in
 *     buckets of equal length, so none carries padding.
 * For 100 ImageNet class names and 16 context vectors that is 17 + 451
 * token positions per step instead of 100 x 77 = 7700 (coop.py) or
 * 100 x 26 (truncation alone); shared_prefix=0 selects the plain encoder,
 * which gives the same features up to float rounding (tested).
 *
 * Learned tensor name (learned.safetensors): "ctx", the key of the
 * prompt_learner state dict coop.py saves (PromptLearner.ctx; CoOp.build_model
 * registers model.prompt_learner). */
#include "methods/method_prompt.h"

static ct_status coop_create(const ct_task *task, const ct_kv *hp, void **state) {
    return ct_prompt_create(task, hp, 0, state);
}

const ct_method ct_method_coop = {
    .name = "coop",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Zhou et al., Learning to Prompt for Vision-Language Models (CoOp), IJCV 2022",
    /* CoOp's defaults (train.py extend_cfg) and configs/trainers/CoOp/vit_b16_ep50.yaml;
     * COOP.md uses 50 / 100 / 100 / 200 / 200 epochs for 1 / 2 / 4 / 8 / 16 shots (50
     * for all on ImageNet): pass epochs=N. CoOp augments every epoch afresh; here epoch
     * e trains on cached augmented view e mod 10 (docs/methods/coop.md). */
    .defaults = "n_ctx=16 ctx_init= csc=0 class_token_position=end prec=fp16 optim=sgd "
                "lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 select=last "
                "aug_views=10 views=cycle",
    .create = coop_create,
    .destroy = ct_prompt_destroy,
    .params = ct_prompt_params,
    .loss = ct_prompt_loss,
    .logits = ct_prompt_logits,
    .param_names = ct_prompt_param_names,
};
