/* MUST, masked unsupervised self-training (Li, Savarese, Hoi, "Masked
 * Unsupervised Self-training for Label-Free Image Classification", ICLR
 * 2023). Followed: salesforce/MUST, engine_self_training.py
 * (train_one_epoch: the pseudo-labels, the four loss terms, the EMA decay
 * ramp), model.py (clip_classifier.init_classifier_weights), clip/model.py
 * (VisionTransformer_MIM: mask token, ln_patch, the 1x1-conv + PixelShuffle
 * decoder, the CLS-patch alignment), ema.py (ModelEma.update),
 * build_dataset.py (MaskGenerator, the weak and strong views), train.py
 * (defaults; lr = config lr x batch / 256) and train_configs.json
 * (imagenet_ViT-B/16: the defaults here).
 *
 * No label is read. The image tower (a private trainable copy,
 * src/model/vision_copy.h) and a linear classifier C (E, K), initialised
 * with the template-ensemble text embeddings (each template normalised,
 * averaged, renormalised), are trained on unlabelled images; an EMA copy of
 * the tower and C is the teacher:
 *   teacher:  p = softmax(s normalize(f_ema(weak)) C_ema) (s = 100), the weak view
 *             the evaluation transform; conf = max p > tau, y^ = argmax p
 *   student:  the strong view with a random set of patch tokens replaced by
 *             a learned mask token (the encoder's mask-token hook);
 *             logits = s normalize(f(strong, mask)) C
 *   L_st    = CE(logits[conf], y^[conf])       (mean over confident images)
 *   L_fair  = -mean_k log(mean_b softmax(logits)_bk)
 *             (K >= 512: the batch mean averaged with the previous step's,
 *             detached, and the loss / 0.5, reset each epoch, as the code)
 *   L_mim   = sum |dec(ln_patch(z_patch)) - strong| over masked pixels
 *             / (masked pixels) / 3, dec = Conv2d(W, 3 p^2, 1) + PixelShuffle(p)
 *   L_align = mean over masked patches of
 *             || normalize(ln_patch(z_patch) proj) - normalize(ln_post(z_cls) proj) ||^2
 *   L = L_st + w_fair L_fair + L_mim + w_align L_align
 * then, after each step, theta_ema = d theta_ema + (1 - d) theta with
 * d = d_init + (d_final - d_init) min(1, it / warm_it).
 * The mask (MaskGenerator): ceil(ratio x n) of the n = (grid / u)^2 blocks
 * of u x u patches, uniformly without replacement, per image.
 *
 * Departures, said here and in docs/methods/must.md:
 *   - weight decay on every tensor (the official exempts 1-D tensors);
 *     the layer-wise lr decay (optim_factory.py, 0.65^(L+1-id)) is done by
 *     scaling each weight's AdamW displacement after the step (exact:
 *     AdamW's step is linear in lr), see must_after_step;
 *   - the strong view is the trainer's random resized crop (scale 0.3-1)
 *     and flip: timm's RandAugment (rand-m9-mstd0.5-inc1) is not here;
 *   - the EMA covers the tower and the classifier (what the teacher's
 *     logits read); the official also averages the mask token, ln_patch
 *     and the decoder, which the teacher never uses;
 *   - no confident image in a batch: L_st is 0 (PyTorch gives NaN there);
 *   - mask_patch=auto: blocks of 2 patches a side (the official 32-pixel
 *     blocks of 16-pixel patches) when the grid is even, else 1;
 *   - logit_scale=model (an option; default the code's fixed 100) uses the
 *     checkpoint's exp(logit_scale) for teacher and student.
 * The official evaluates the student (acc1) and the EMA (ema_acc1) on the
 * test set every epoch and keeps the best by test accuracy; here the last
 * epoch's student scores (eval=ema: the teacher), and nothing is selected
 * on test.
 *
 * Learned tensor names, the keys of clip_classifier's state dict (model.*)
 * and of the ModelEma copy (model_ema.*): the tower is one flat tensor,
 * "model.visual.flat"; "model.visual.classifier" (E, K),
 * "model.visual.mask_token_embedding" (W), "model.visual.ln_patch.weight" /
 * ".bias", "model.visual.decoder.0.weight" (3 p^2, W: the 1x1 conv) /
 * ".bias", "model_ema.model.visual.flat", "model_ema.model.visual.classifier"
 * and the step count "ema_updates". */
#include "methods/must.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_common.h"
#include "methods/method_image.h"
#include "model/vision_copy.h"

#define MUST_NP 10
#define MUST_MAX_BLOCKS 4096 /* mask blocks per image (a 64 x 64 grid) */

typedef struct {
    ct_vision_copy st, ema;       /* student (trainable) and teacher towers    */
    ct_tensor *cls, *ema_cls;     /* (E, K)                                    */
    ct_tensor *mtok;              /* (1, W) the mask token                     */
    ct_tensor *lnp_w, *lnp_b;     /* (W) ln_patch                              */
    ct_tensor *dec_w, *dec_b;     /* (3 p^2, W), (3 p^2): the decoder's conv    */
    ct_tensor *updates;           /* (1) EMA updates done                      */
    ct_tensor *proj, *ema_proj;   /* views: visual.proj (E, W) of each tower    */
    float *prev_avg;              /* (K) K >= 512: the last step's mean probs   */
    int prev_epoch;
    int K, E, W, S, p, grid, unit, n_blocks, n_masked;
    float eps, scale;             /* the logit scale (the official's 100)       */
    double conf, w_fair, w_align, decay, decay_init;
    int warm_it;
    bool eval_ema;
    double layer_decay;           /* lr scale layer_decay^(L + 1 - layer id)      */
    float *lscale;                /* (n_weights) each tower weight's scale        */
    float *before;                /* (flat numel + W) the weights before a step   */
    bool stepping;                /* before_step saved them                       */
    int n_layers;
} must_state;

static void must_destroy(void *st) {
    must_state *s = st;
    if (!s) return;
    ct_vision_copy_free(&s->st), ct_vision_copy_free(&s->ema);
    ct_tensor_free(s->cls), ct_tensor_free(s->ema_cls), ct_tensor_free(s->mtok);
    ct_tensor_free(s->lnp_w), ct_tensor_free(s->lnp_b), ct_tensor_free(s->dec_w);
    ct_tensor_free(s->dec_b), ct_tensor_free(s->updates);
    free(s->prev_avg), free(s->lscale), free(s->before);
    free(s);
}

static ct_tensor *view_of(const ct_vision_copy *c, const char *name) {
    for (int i = 0; i < c->n_weights; i++)
        if (!strcmp(c->views[i].name, name)) return &c->views[i];
    return NULL;
}

ct_tensor *ct_must_weight(void *st, bool ema, const char *name) {
    must_state *s = st;
    return view_of(ema ? &s->ema : &s->st, name);
}

/* optim_factory.py get_num_layer_for_vit: embeddings, conv1 and ln_pre are
 * layer 0, block i is i + 1, the rest (ln_post, proj, the classifier, the
 * decoder) L + 1; the lr scale is layer_decay^(L + 1 - id) */
static float layer_scale(const must_state *s, const char *name) {
    int id = s->n_layers + 1;
    const char *rb = strstr(name, "resblocks.");
    if (strstr(name, "embedding") || strstr(name, "conv1") || strstr(name, "ln_pre")) id = 0;
    else if (rb) id = atoi(rb + 10) + 1;
    return (float)pow(s->layer_decay, s->n_layers + 1 - id);
}

static ct_status must_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *mpatch, *eval, *lscale;
    double conf, w_fair, w_align, ratio, decay, decay_init, ldecay;
    int warm_it;
    ct_status s = CT_OK;
#define TRY(x) \
    if (s == CT_OK) s = (x)
    TRY(ct_kv_str(hp, "templates", "dataset", &tmpl));
    TRY(ct_kv_double(hp, "conf_threshold", 0.7, &conf));
    TRY(ct_kv_double(hp, "w_fair", 1.0, &w_fair));
    TRY(ct_kv_double(hp, "w_align", 0.2, &w_align));
    TRY(ct_kv_double(hp, "mask_ratio", 0.3, &ratio));
    TRY(ct_kv_str(hp, "mask_patch", "auto", &mpatch));
    TRY(ct_kv_double(hp, "ema_decay", 0.9998, &decay));
    TRY(ct_kv_double(hp, "ema_decay_init", 0.999, &decay_init));
    TRY(ct_kv_int(hp, "ema_warm_it", 2000, &warm_it));
    TRY(ct_kv_str(hp, "eval", "student", &eval));
    TRY(ct_kv_str(hp, "logit_scale", "100", &lscale));
    TRY(ct_kv_double(hp, "layer_decay", 0.65, &ldecay));
#undef TRY
    if (s != CT_OK) return s;
    if (!(conf >= 0 && conf <= 1) || !(w_fair >= 0) || !(w_align >= 0) ||
        !(ratio >= 0 && ratio <= 1) || !(decay >= 0 && decay <= 1) ||
        !(decay_init >= 0 && decay_init <= 1) || warm_it < 1 || !(ldecay > 0 && ldecay <= 1))
        return ct_set_error(CT_ERR_ARG, "must: conf_threshold=%g w_fair=%g w_align=%g "
                            "mask_ratio=%g ema_decay=%g ema_decay_init=%g ema_warm_it=%d "
                            "layer_decay=%g out of range", conf, w_fair, w_align, ratio, decay,
                            decay_init, warm_it, ldecay);
    bool eval_ema = !strcmp(eval, "ema");
    if (!eval_ema && strcmp(eval, "student"))
        return ct_set_error(CT_ERR_ARG, "must: eval=%s (student, ema)", eval);
    if (!task->clip) return ct_set_error(CT_ERR_ARG, "must: needs the model");
    double scale = 0;
    if (!strcmp(lscale, "model")) {
        ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
        if (!ls) return ct_set_error(CT_ERR_ARG, "must: logit_scale=model: the model has none");
        scale = exp((double)ls->data[0]);
    } else {
        char *end = NULL;
        scale = strtod(lscale, &end);
        if (end == lscale || *end || !(scale > 0 && scale < 1e6))
            return ct_set_error(CT_ERR_ARG, "must: logit_scale=%s (a positive number, or model)",
                                lscale);
    }
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (c->vision_resnet_layers[0] > 0)
        return ct_set_error(CT_ERR_UNSUPPORTED, "must: masked image modelling needs a ViT image "
                            "tower (this model's is a ModifiedResNet)");
    int grid = c->image_size / c->patch_size, unit = 0;
    if (!strcmp(mpatch, "auto")) {
        unit = grid % 2 == 0 ? 2 : 1;
    } else {
        char *end = NULL;
        long u = strtol(mpatch, &end, 10);
        if (end == mpatch || *end || u < 1 || u > grid || grid % u)
            return ct_set_error(CT_ERR_ARG, "must: mask_patch=%s (auto, or a divisor of the "
                                "%d-patch grid side, in patches)", mpatch, grid);
        unit = (int)u;
    }
    must_state *m = calloc(1, sizeof *m);
    if (!m) return ct_set_error(CT_ERR_NOMEM, "must: out of memory");
    m->K = task->n_classes, m->E = c->embed_dim, m->W = c->vision_width, m->S = c->image_size;
    m->p = c->patch_size, m->grid = grid, m->unit = unit, m->eps = c->vision_ln_eps;
    m->n_blocks = (grid / unit) * (grid / unit);
    m->n_masked = (int)ceil((double)m->n_blocks * ratio);
    m->conf = conf, m->w_fair = w_fair, m->w_align = w_align, m->decay = decay;
    m->decay_init = decay_init, m->warm_it = warm_it, m->eval_ema = eval_ema;
    m->prev_epoch = -1, m->scale = (float)scale;
    m->layer_decay = ldecay, m->n_layers = c->vision_layers;
    int64_t EK[2] = {m->E, m->K}, W = m->W, P3 = 3LL * m->p * m->p, DW[2] = {P3, W}, one = 1;
    m->cls = ct_tensor_new(2, EK, true), m->ema_cls = ct_tensor_new(2, EK, false);
    m->mtok = ct_param_normal(1, W, 0.02f, task->seed, "must.mask_token", 0,
                              "must.mask_token");
    m->lnp_w = ct_tensor_new(1, &W, true), m->lnp_b = ct_tensor_new(1, &W, true);
    m->dec_w = ct_tensor_new(2, DW, true), m->dec_b = ct_tensor_new(1, &P3, true);
    m->updates = ct_tensor_new(1, &one, false);
    m->prev_avg = malloc((size_t)(m->K > 0 ? m->K : 1) * sizeof *m->prev_avg);
    float *zs = malloc((size_t)(m->K > 0 ? m->K : 1) * m->E * sizeof *zs);
    if (!m->cls || !m->ema_cls || !m->mtok || !m->lnp_w || !m->lnp_b || !m->dec_w ||
        !m->dec_b || !m->updates || !m->prev_avg || !zs)
        s = ct_set_error(CT_ERR_NOMEM, "must: out of memory");
    /* init_classifier_weights: (E, K), column k the class's embedding */
    if (s == CT_OK) s = ct_zeroshot_classifier(task, "", tmpl, true, zs);
    if (s == CT_OK) {
        for (int k = 0; k < m->K; k++)
            for (int e = 0; e < m->E; e++)
                m->cls->data[(size_t)e * m->K + k] = zs[(size_t)k * m->E + e];
        memcpy(m->ema_cls->data, m->cls->data, (size_t)m->cls->numel * sizeof(float));
        for (int i = 0; i < m->W; i++) m->lnp_w->data[i] = 1, m->lnp_b->data[i] = 0;
        s = ct_param_linear_init(m->dec_w, m->dec_b, task->seed, "must.decoder");
        m->cls->name = "must.classifier", m->ema_cls->name = "must.ema.classifier";
        m->lnp_w->name = "must.ln_patch.weight", m->lnp_b->name = "must.ln_patch.bias";
        m->dec_w->name = "must.decoder.weight", m->dec_b->name = "must.decoder.bias";
        m->updates->name = "must.ema_updates";
    }
    free(zs);
    if (s == CT_OK) s = ct_vision_copy_create(task->clip, true, &m->st);
    if (s == CT_OK) s = ct_vision_copy_create(task->clip, false, &m->ema);
    if (s == CT_OK) {
        m->st.flat->name = "must.visual", m->ema.flat->name = "must.ema.visual";
        m->proj = view_of(&m->st, "visual.proj"), m->ema_proj = view_of(&m->ema, "visual.proj");
        if (!m->proj || !m->ema_proj || m->proj->ndim != 2 || m->proj->shape[0] != m->E ||
            m->proj->shape[1] != m->W)
            s = ct_set_error(CT_ERR_FORMAT, "must: the tower has no visual.proj (%d, %d)", m->E,
                             m->W);
    }
    if (s == CT_OK) {
        m->lscale = malloc((size_t)m->st.n_weights * sizeof *m->lscale);
        m->before = malloc((size_t)(m->st.flat->numel + m->W) * sizeof *m->before);
        if (!m->lscale || !m->before) s = ct_set_error(CT_ERR_NOMEM, "must: out of memory");
        for (int i = 0; s == CT_OK && i < m->st.n_weights; i++)
            m->lscale[i] = layer_scale(m, m->st.views[i].name);
    }
    if (s != CT_OK) {
        must_destroy(m);
        return s;
    }
    *out = m;
    return CT_OK;
}

static int must_params(void *st, ct_tensor **out, int cap) {
    must_state *s = st;
    ct_tensor *p[MUST_NP] = {s->st.flat, s->cls,     s->mtok,     s->lnp_w,   s->lnp_b,
                             s->dec_w,   s->dec_b,   s->ema.flat, s->ema_cls, s->updates};
    int n = cap < MUST_NP ? cap : MUST_NP;
    for (int i = 0; i < n; i++) out[i] = p[i];
    return n;
}

static int must_param_names(void *st, const char **out, int cap) {
    (void)st;
    static const char *const names[MUST_NP] = {
        "model.visual.flat",           "model.visual.classifier",
        "model.visual.mask_token_embedding", "model.visual.ln_patch.weight",
        "model.visual.ln_patch.bias",  "model.visual.decoder.0.weight",
        "model.visual.decoder.0.bias", "model_ema.model.visual.flat",
        "model_ema.model.visual.classifier", "ema_updates"};
    int n = cap < MUST_NP ? cap : MUST_NP;
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

/* 100 normalize(f(x)) C: (B, K); *x_cls (may be NULL) the normalised
 * embedding, *tokens (may be NULL) the last block's tokens (B, T, W). */
static ct_tensor *head(ct_graph *g, const must_state *s, bool ema, const float *px, int64_t B,
                       const ct_clip_hooks *h, ct_tensor **x_cls, ct_tensor **tokens) {
    int64_t shape[4] = {B, 3, s->S, s->S};
    ct_clip_image_out o = {0};
    ct_tensor *f = ct_clip_encode_image(g, ema ? s->ema.clip : s->st.clip,
                                        ct_graph_wrap(g, (ct_real *)px, 4, shape), h, false,
                                        tokens ? &o : NULL);
    ct_tensor *xc = ct_l2_normalize(g, f, 1e-12f);
    if (x_cls) *x_cls = xc;
    if (tokens) *tokens = o.tokens;
    return ct_scale(g, ct_matmul(g, xc, ema ? s->ema_cls : s->cls, false, false), s->scale);
}

void ct_must_draw_mask(void *st, uint64_t seed, int64_t i, float *mask) {
    must_state *s = st;
    int64_t order[MUST_MAX_BLOCKS];
    ct_rng r;
    ct_rng_init(&r, ct_hash_u64(ct_hash_str(seed, "must.mask"), (uint64_t)i));
    ct_rng_permutation(&r, order, (size_t)s->n_blocks);
    int rs = s->grid / s->unit;
    memset(mask, 0, (size_t)s->grid * s->grid * sizeof *mask);
    for (int j = 0; j < s->n_masked; j++) {
        int by = (int)(order[j] / rs), bx = (int)(order[j] % rs);
        for (int a = 0; a < s->unit; a++)
            for (int b = 0; b < s->unit; b++)
                mask[(by * s->unit + a) * s->grid + bx * s->unit + b] = 1;
    }
}

static ct_tensor *loss_masked(must_state *s, ct_graph *g, const float *weak, const float *strong,
                              int64_t B, const float *mask, int epoch, double parts[5],
                              ct_tensor **logits_out) {
    int K = s->K, G = s->grid * s->grid, p = s->p, P3 = 3 * p * p;
    /* the teacher on the weak view: no weight of it requires grad */
    ct_tensor *lt = head(g, s, true, weak, B, NULL, NULL, NULL);
    if (!lt) return NULL;
    int64_t *conf_rows = ct_graph_alloc(g, (size_t)B * sizeof *conf_rows);
    int64_t *pseudo = ct_graph_alloc(g, (size_t)B * sizeof *pseudo);
    if (!conf_rows || !pseudo) return NULL;
    int64_t nc = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *r = lt->data + b * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (r[k] > r[best]) best = k;
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)r[k] - (double)r[best]);
        if (1.0 / z > s->conf) conf_rows[nc] = b, pseudo[nc++] = best;
    }
    /* the student on the masked strong view */
    ct_clip_hooks h = {0};
    h.mask_token = s->mtok, h.patch_mask = mask;
    ct_tensor *x_cls = NULL, *tok = NULL;
    ct_tensor *logits = head(g, s, false, strong, B, &h, &x_cls, &tok);
    if (!logits || !tok) return NULL;
    if (logits_out) *logits_out = logits;
    ct_tensor *l_st = NULL;
    if (nc > 0) {
        int64_t shp[1] = {nc};
        l_st = ct_cross_entropy(g, ct_gather_rows(g, logits, conf_rows, 1, shp), pseudo, 0);
    }
    /* fairness: the batch's mean prediction against the uniform */
    ct_tensor *avg = ct_mean(g, ct_softmax(g, logits), 0); /* (K) */
    bool moving = K >= 512;
    if (moving && epoch >= 0 && epoch == s->prev_epoch) {
        int64_t kk = K;
        ct_tensor *prev = ct_graph_tensor(g, 1, &kk);
        if (!prev) return NULL;
        memcpy(prev->data, s->prev_avg, (size_t)K * sizeof(float));
        avg = ct_scale(g, ct_add(g, avg, prev), 0.5f);
    }
    if (!avg) return NULL;
    if (moving) memcpy(s->prev_avg, avg->data, (size_t)K * sizeof(float)), s->prev_epoch = epoch;
    ct_tensor *l_fair = ct_scale(g, ct_mean(g, ct_log(g, avg), 0), moving ? -2.0f : -1.0f);
    /* masked patch prediction: the decoder's 3 p^2 outputs of patch (h, w)
     * are PixelShuffle's block of pixels (c, h p + i, w p + j), channel
     * c p^2 + i p + j; the target is the strong view laid out the same */
    int64_t npatch[3] = {B, G, s->W};
    ct_tensor *xp = ct_layernorm(g, ct_reshape(g, ct_slice(g, tok, 1, 1, G), 3, npatch),
                                 s->lnp_w, s->lnp_b, s->eps);
    ct_tensor *rec = ct_linear(g, xp, s->dec_w, s->dec_b); /* (B, G, 3 p^2) */
    int64_t rshape[3] = {B, G, P3};
    ct_tensor *tgt = ct_graph_tensor(g, 3, rshape), *sgn = ct_graph_tensor(g, 3, rshape);
    if (!rec || !tgt || !sgn) return NULL;
    int S = s->S, gr = s->grid;
    double n_m = 0;
    for (int64_t b = 0; b < B; b++)
        for (int t = 0; t < G; t++) {
            int hy = t / gr, wx = t % gr;
            float mk = mask[b * G + t];
            n_m += mk;
            float *tr = tgt->data + (b * G + t) * P3, *sr = sgn->data + (b * G + t) * P3;
            const float *rr = rec->data + (b * G + t) * P3;
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++) {
                        int q = c * p * p + i * p + j;
                        tr[q] = strong[((b * 3 + c) * S + hy * p + i) * S + wx * p + j];
                        float d = rr[q] - tr[q];
                        sr[q] = mk * (float)((d > 0) - (d < 0));
                    }
        }
    /* |d| = d sign(d), the sign (times the mask) held constant: torch's L1
     * gradient */
    ct_tensor *l_mim = n_m > 0 ? ct_scale(g, ct_sum_all(g, ct_mul(g, ct_sub(g, rec, tgt), sgn)),
                                          (float)(1.0 / (n_m * p * p * 3)))
                               : NULL;
    /* CLS-patch alignment over the masked patches */
    ct_tensor *xm = ct_l2_normalize(g, ct_linear(g, xp, s->proj, NULL), 1e-12f); /* (B, G, E) */
    int64_t *rows = ct_graph_alloc(g, (size_t)B * G * sizeof *rows);
    int64_t rsh[2] = {B, G};
    int64_t gsh[2] = {B, G};
    ct_tensor *wm = ct_graph_tensor(g, 2, gsh);
    if (!rows || !wm) return NULL;
    for (int64_t r = 0; r < B * G; r++) rows[r] = r / G, wm->data[r] = mask[r];
    ct_tensor *dlt = ct_sub(g, xm, ct_gather_rows(g, x_cls, rows, 2, rsh));
    ct_tensor *sq = ct_mul(g, ct_sum(g, ct_mul(g, dlt, dlt), 2), wm); /* (B, G) */
    ct_tensor *l_align = n_m > 0 ? ct_scale(g, ct_sum_all(g, sq), (float)(1.0 / n_m)) : NULL;
    ct_tensor *loss = ct_scale(g, l_fair, (float)s->w_fair);
    if (l_st) loss = ct_add(g, loss, l_st);
    if (l_mim) loss = ct_add(g, loss, l_mim);
    if (l_align) loss = ct_add(g, loss, ct_scale(g, l_align, (float)s->w_align));
    if (!loss) return NULL;
    if (parts) {
        parts[0] = l_st ? l_st->data[0] : 0, parts[1] = l_fair->data[0];
        parts[2] = l_mim ? l_mim->data[0] : 0, parts[3] = l_align ? l_align->data[0] : 0;
        parts[4] = (double)nc;
    }
    return loss;
}

ct_tensor *ct_must_loss_masked(void *st, ct_graph *g, const float *weak, const float *strong,
                               int64_t B, const float *mask, double parts[5], ct_tensor **logits) {
    return loss_masked(st, g, weak, strong, B, mask, -1, parts, logits);
}

static ct_tensor *must_loss(void *st, ct_graph *g, const ct_batch *b) {
    must_state *s = st;
    if (!b->pixels) {
        ct_set_error(CT_ERR_ARG, "must: trains on pixels, the batch has none");
        return NULL;
    }
    int64_t G = (int64_t)s->grid * s->grid;
    float *mask = ct_graph_alloc(g, (size_t)(b->n > 0 ? b->n : 1) * G * sizeof *mask);
    if (!mask) return NULL;
    for (int64_t i = 0; i < b->n; i++) ct_must_draw_mask(s, b->seed, i, mask + i * G);
    return loss_masked(s, g, b->pixels_plain ? b->pixels_plain : b->pixels, b->pixels, b->n,
                       mask, b->epoch, NULL, NULL);
}

/* the weights before the step, for the layer-wise lr scales */
static ct_status must_before_step(void *st, ct_graph *g, const ct_batch *b) {
    (void)g, (void)b;
    must_state *s = st;
    memcpy(s->before, s->st.flat->data, (size_t)s->st.flat->numel * sizeof(float));
    memcpy(s->before + s->st.flat->numel, s->mtok->data, (size_t)s->W * sizeof(float));
    s->stepping = true;
    return CT_OK;
}

/* Layer-wise lr decay, then ModelEma.update at the decay ramped over
 * warm_it steps. AdamW's step at lr * c is c times its step at lr (the
 * moments do not depend on lr), so scaling each weight's displacement by
 * its layer's c gives the official's per-group learning rates exactly. */
static ct_status must_after_step(void *st, const ct_batch *b) {
    (void)b;
    must_state *s = st;
    if (s->stepping) {
        s->stepping = false;
        for (int i = 0; i < s->st.n_weights; i++) {
            float c = s->lscale[i];
            if (c == 1.0f) continue;
            ct_tensor *w = &s->st.views[i];
            const float *old = s->before + (w->data - s->st.flat->data);
            for (int64_t k = 0; k < w->numel; k++) w->data[k] = old[k] + c * (w->data[k] - old[k]);
        }
        /* mask_token_embedding: an "embedding", layer 0 */
        float c = (float)pow(s->layer_decay, s->n_layers + 1);
        const float *old = s->before + s->st.flat->numel;
        if (c != 1.0f)
            for (int k = 0; k < s->W; k++)
                s->mtok->data[k] = old[k] + c * (s->mtok->data[k] - old[k]);
    }
    double it = s->updates->data[0];
    double r = it / s->warm_it;
    float d = (float)(s->decay_init + (s->decay - s->decay_init) * (r < 1 ? r : 1));
    float e = 1.0f - d;
    ct_tensor *pairs[2][2] = {{s->ema.flat, s->st.flat}, {s->ema_cls, s->cls}};
    for (int k = 0; k < 2; k++) {
        float *a = pairs[k][0]->data;
        const float *m = pairs[k][1]->data;
        for (int64_t i = 0; i < pairs[k][0]->numel; i++) a[i] = a[i] * d + e * m[i];
    }
    s->updates->data[0] = (float)(it + 1);
    return CT_OK;
}

static ct_tensor *must_logits(void *st, ct_graph *g, const ct_batch *b) {
    must_state *s = st;
    if (b->pixels) return head(g, s, s->eval_ema, b->pixels, b->n, NULL, NULL, NULL);
    int64_t shape[2] = {b->n, s->E};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_scale(g, ct_matmul(g, x, s->eval_ema ? s->ema_cls : s->cls, false, false),
                    s->scale);
}

const ct_method ct_method_must = {
    .name = "must",
    .category = "unsupervised fine-tuning",
    .setup = "unsupervised",
    .paper = "Li, Savarese, Hoi, Masked Unsupervised Self-training for Label-Free Image "
             "Classification (MUST), ICLR 2023",
    /* train_configs.json imagenet_ViT-B/16 (conf 0.7, w_fair 1, w_align 0.2, mask ratio
     * 0.3, EMA decay init 0.999 over 2000 steps, lr 2e-5, 30 epochs), train.py (batch 64,
     * lr x 64 / 256 = 5e-6, min_lr 1e-6 x 64 / 256, AdamW wd 0.05, ema decay 0.9998,
     * cosine per step without warmup, train_crop_min 0.3) */
    .defaults = "templates=dataset conf_threshold=0.7 w_fair=1 w_align=0.2 mask_ratio=0.3 "
                "mask_patch=auto ema_decay=0.9998 ema_decay_init=0.999 ema_warm_it=2000 "
                "eval=student logit_scale=100 layer_decay=0.65 optim=adamw lr=5e-6 "
                "min_lr=2.5e-7 weight_decay=0.05 sched=cosine_step batch_size=64 epochs=30 "
                "select=last train_aug=rrc_flip aug_scale_min=0.3",
    .create = must_create,
    .destroy = must_destroy,
    .params = must_params,
    .param_names = must_param_names,
    .loss = must_loss,
    .logits = must_logits,
    .wants_unlabelled = true,
    .trains_unlabelled = true,
    .pixels = true,
    .plain_view = true,
    .before_step = must_before_step,
    .after_step = must_after_step,
};
