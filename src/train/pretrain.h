/* CLIP's contrastive pretraining from scratch on an image–caption corpus
 * (Radford et al. 2021; open_clip's training loop as the reference for the
 * details the paper leaves open): every weight of both towers and the
 * temperature are trained with AdamW (no weight decay on gains, biases,
 * 1-D embeddings and logit_scale, as open_clip), linear warmup then cosine
 * decay per step, logit_scale clamped to [0, ln 100] after each step.
 *
 * The result is a Hugging Face CLIP folder (config.json, model.safetensors,
 * preprocessor_config.json, the tokenizer's files) that loads like any real
 * checkpoint. The same directory holds the training state
 * (pretrain-state.safetensors + pretrain.json), written atomically at every
 * checkpoint, so a long run can be done in resumable chunks that continue
 * bit for bit, and curve.csv (step, epoch, loss, lr, logit scale, held-out
 * recall when evaluated). */
#ifndef CT_TRAIN_PRETRAIN_H
#define CT_TRAIN_PRETRAIN_H

#include "cliptune.h"
#include "data/pretrain_aug.h"

typedef struct ct_pretrain_cfg {
    const char *corpus;        /* captions: CSV path,caption or a folder with .txt  */
    const char *tokenizer_dir; /* vocab.json + merges.txt (copied into out_dir)     */
    ct_clip_config arch;       /* vocab_size must equal the tokenizer's              */
    const char *out_dir;
    int epochs, batch_size;
    double lr, min_lr, weight_decay, beta1, beta2, eps;
    int64_t warmup_steps;
    double max_grad_norm;      /* 0: no clipping                                    */
    double heldout_frac;       /* images held out for retrieval metrics             */
    int64_t checkpoint_every;  /* steps between checkpoints (and at the end)        */
    int64_t eval_every;        /* steps between held-out evaluations (0: at the end) */
    int64_t stop_after;        /* > 0: stop, checkpointed, after this many steps of
                                * this call (resumable chunks)                      */
    bool resume;
    uint64_t seed;
    ct_pretrain_aug_cfg aug;   /* training views; output size is arch.image_size    */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} ct_pretrain_cfg;

/* The paper-like defaults scaled for small models: batch 256, AdamW lr 1e-3
 * (betas 0.9/0.98, eps 1e-6, wd 0.2), warmup 200 steps, 5% held out. */
void ct_pretrain_cfg_default(ct_pretrain_cfg *cfg);

typedef struct ct_retrieval {
    int64_t n_images, n_captions;
    double i2t_r1, i2t_r5, t2i_r1, t2i_r5; /* image->text: hit if any of its captions */
} ct_retrieval;

typedef struct ct_pretrain_result {
    int64_t step, total_steps;  /* steps done so far / in the whole run          */
    bool finished;
    double loss;                /* mean loss of the last logged interval         */
    double logit_scale;         /* exp(logit_scale)                              */
    ct_retrieval heldout;       /* at the last evaluation (n_images 0: none yet) */
} ct_pretrain_result;

ct_status ct_pretrain(const ct_pretrain_cfg *cfg, ct_pretrain_result *res);

/* Held-out retrieval of a model: images through the evaluation transform,
 * every caption of every image as a query. */
ct_status ct_retrieval_eval(const ct_clip *m, const ct_tokenizer *tok, const ct_image *images,
                            int64_t n_images, const int64_t *cap_off, char *const *captions,
                            ct_retrieval *out);

#endif
