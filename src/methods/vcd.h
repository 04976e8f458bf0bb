/* VCD, classification by description (src/methods/vcd.c): explanations and
 * the internal entry points tests use to inject descriptor embeddings. */
#ifndef CT_METHODS_VCD_H
#define CT_METHODS_VCD_H

#include <stdbool.h>

#include "cliptune.h"

/* Where the class name goes in a descriptor's prompt (the official
 * hparams['category_name_inclusion']). */
typedef enum ct_vcd_naming {
    CT_VCD_PREPEND, /* "{class}, {descriptor}{suffix}" (the official default) */
    CT_VCD_APPEND,  /* "{descriptor}, {class}"                                */
    CT_VCD_NONE     /* "{descriptor}"                                         */
} ct_vcd_naming;

/* The prompt the official load_gpt_descriptions builds for one descriptor:
 * with modify, the descriptor becomes make_descriptor_sentence's "which is
 * ...", "which ..." or "which has ..."; the class name has '_' read as ' '
 * (wordify). malloc'ed; NULL (error set) when out of memory. */
char *ct_vcd_prompt(const char *classname, const char *descriptor, ct_vcd_naming naming,
                    bool modify, const char *suffix);

/* A "vcd" state from descriptor embeddings emb (n, E), not normalised, with
 * class k's rows at [off[k], off[k+1]) (off has K + 1 entries, off[0] = 0,
 * every class at least one row), names (n) the descriptors as written
 * (copied; NULL: none kept) and scale = exp(logit_scale). What create()
 * does after encoding. Use with ct_method_vcd's logits and destroy. */
ct_status ct_vcd_state_new(int K, int E, const float *emb, const int *off,
                           const char *const *names, float scale, void **state);

/* The descriptors behind class cls's score for one image: image_feature (E)
 * (the projected embedding, normalised here), the min(top, n) best of the
 * class's n descriptors by score = exp(logit_scale) cos(image, descriptor),
 * best first (ties: lower index first), into idx[0..top) and scores[0..top);
 * entries past n get idx -1 and score NAN. The class's logit is the mean of
 * all n scores. */
ct_status ct_vcd_explain(void *state, const float *image_feature, int cls, int top, int *idx,
                         float *scores);
/* Descriptor i of class cls as written in the file (the official prints the
 * unmodified descriptor); NULL if out of range or names were not kept. */
const char *ct_vcd_descriptor(void *state, int cls, int i);
/* Number of descriptors of class cls (0 if out of range). */
int ct_vcd_num_descriptors(void *state, int cls);

#endif
