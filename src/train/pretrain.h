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


/* Held-out retrieval of a model: images through the evaluation transform,
 * every caption of every image as a query. */
ct_status ct_retrieval_eval(const ct_clip *m, const ct_tokenizer *tok, const ct_image *images,
                            int64_t n_images, const int64_t *cap_off, char *const *captions,
                            ct_retrieval *out);

#endif
