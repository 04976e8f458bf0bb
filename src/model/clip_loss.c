/* CLIP's contrastive pretraining objective (Radford et al. 2021, Figure 3;
 * open_clip's ClipLoss on a single device: src/open_clip/loss.py). */
#include "autograd/graph.h"
#include "model/clip.h"

ct_tensor *ct_clip_contrastive_loss(ct_graph *g, const ct_clip *m, ct_tensor *img,
                                    ct_tensor *txt) {
    if (!img || !txt) return NULL;
    if (img->ndim != 2 || txt->ndim != 2 || img->shape[0] != txt->shape[0] ||
        img->shape[1] != txt->shape[1]) {
        return ct_op_fail(g, CT_ERR_ARG, "clip contrastive loss: image (%lld x %lld) and text "
                     "(%lld x %lld) embeddings must both be (B, E)",
                     (long long)img->shape[0], (long long)(img->ndim > 1 ? img->shape[1] : 0),
                     (long long)txt->shape[0], (long long)(txt->ndim > 1 ? txt->shape[1] : 0));
    }
    int64_t B = img->shape[0];
    int64_t *labels = ct_graph_alloc(g, (size_t)B * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < B; i++) labels[i] = i;
    /* logits_per_image (B, B); logits_per_text is its transpose */
    ct_tensor *per_img = ct_clip_logits(g, m, img, txt);
    ct_tensor *per_txt = ct_transpose(g, per_img, 0, 1);
    ct_tensor *a = ct_cross_entropy(g, per_img, labels, 0.0f);
    ct_tensor *b = ct_cross_entropy(g, per_txt, labels, 0.0f);
    return ct_scale(g, ct_add(g, a, b), 0.5f);
}
