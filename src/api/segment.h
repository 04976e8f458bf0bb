/* Segmentation runs' shared core (ct_run and saved runs): a segmentation
 * method's patch scores over a dataset's images, upsampled to every label
 * map, scored against it (ct_seg_metrics), and the run's files: a palette
 * PNG label map per image (predictions/), overlays.png (image, prediction
 * and ground truth side by side for the first images), metrics.json and
 * report.md. ct_seg_preprocess, ct_seg_upsample(_argmax): cliptune.h. */
#ifndef CT_API_SEGMENT_H
#define CT_API_SEGMENT_H

#include "cliptune.h"

/* Images with an overlay row in overlays.png. */
#define CT_SEG_OVERLAYS 8

/* Methods that label pixels from images (ct_method.seg_pixels) read d's
 * images instead of features (f is then unused and may be NULL): the model
 * and its preprocessing, whose segmentation geometry (ct_seg_preprocess)
 * gives the pixels. Feature methods pass NULL. */
typedef struct ct_seg_model {
    const ct_clip *clip;
    const ct_preprocess_cfg *pre;
} ct_seg_model;

/* Label every image of d (features f, computed with ct_seg_preprocess's
 * geometry and the method's dense kind) with method m's state and score
 * the labels against d's label maps (K classes; d->masks). With out_dir
 * (created), predictions/ and overlays.png are written there. */
ct_status ct_seg_evaluate(const ct_method *m, void *state, const ct_dataset *d,
                          const ct_features *f, const ct_seg_model *sm, int K,
                          const char *out_dir, ct_seg_metrics *out);

/* Label d's images (no label maps needed): a palette PNG per image in
 * out_dir (named as predictions/ names them) and, when class_pixels is not
 * NULL, each image's predicted pixels per class there (d->n_items, K). */
ct_status ct_seg_label(const ct_method *m, void *state, const ct_dataset *d,
                       const ct_features *f, const ct_seg_model *sm, int K, const char *out_dir,
                       int64_t *class_pixels);

#endif
