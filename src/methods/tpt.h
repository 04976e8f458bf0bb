/* TPT's per-image step on given views (tpt.c), for the reference tests. */
#ifndef CT_METHODS_TPT_H
#define CT_METHODS_TPT_H

#include "cliptune.h"

/* What one image's tuning did; every pointer is the caller's (may be NULL). */
typedef struct ct_tpt_trace {
    float *entropy;   /* (n_views): entropy of each view's prediction, first step  */
    int *selected;    /* (n_views): the kept views by rising entropy; n_selected set */
    int n_selected;
    double loss;      /* the first step's average-prediction entropy               */
    float *grad;      /* (ctx numel): d loss / d ctx of the first step              */
    float *ctx;       /* (ctx numel): the context after the last step               */
} ct_tpt_trace;

/* Tune a "tpt" state's context on views (n_views, 3, S, S), view 0 the
 * original image (normalised pixels), and write view 0's class scores under
 * the tuned context into scores (K). The context and the optimiser are reset
 * before and the context restored after, as between TPT's test images. */
ct_status ct_tpt_adapt(void *state, const float *views, int n_views, float *scores,
                       ct_tpt_trace *trace);

#endif
