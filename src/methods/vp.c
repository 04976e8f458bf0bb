/* VP, visual prompting (Bahng et al., "Exploring Visual Prompts for
 * Adapting Large-Scale Models", 2022). Followed: hjbahng/visual_prompting at
 * 679e71f, models/prompters.py (PadPrompter, FixedPatchPrompter,
 * RandomPatchPrompter), main_clip.py (frozen CLIP, text of "This is a photo
 * of a {}", SGD lr 40, momentum 0.9, no weight decay, cosine_lr with 1,000
 * warmup steps, 1,000 epochs) and utils.py (cosine_lr, refine_classname).
 *
 * A learned additive pattern in pixel space, added to the normalised image
 * (after CLIP's preprocessing, unclamped, as main_clip.py):
 *   padding:      a frame of p pixels (pad_up, pad_down (3, p, S), pad_left,
 *                 pad_right (3, S-2p, p)), zero inside;
 *   fixed_patch:  a p x p patch at the top-left corner;
 *   random_patch: a p x p patch at a random place (one per batch, rows and
 *                 columns drawn from [0, S-p) as np.random.choice(S - p));
 * x' = x + prompt, logits = exp(logit_scale) * cos(f(x'), text_k) with the
 * frozen text features of the template, cross-entropy. Prompts start
 * N(0, 1) (torch.randn). p is 30 at 224 pixels, scaled to the model's side
 * (prompt_size=auto), or set in pixels.
 *
 * Departures, said here: the random patch's place is drawn from a stream
 * keyed by the batch's pixels (the official draws from numpy's unseeded
 * global generator, also at test time), so runs, resumes and evaluations
 * repeat exactly; the template's class names are used as the dataset gives
 * them (refine_classname lower-cases and replaces '_' and '-').
 *
 * Learned tensor names: the keys of the prompter state dict main_clip.py
 * saves (models/prompters.py): "pad_up", "pad_down", "pad_left",
 * "pad_right" (PadPrompter), "patch" (Fixed/RandomPatchPrompter); the
 * official shapes are (1, 3, h, w), here (3 h, w). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_image.h"
#include "methods/method_prompt.h"

typedef enum { VP_PADDING, VP_FIXED, VP_RANDOM } vp_kind;

typedef struct {
    const ct_clip *clip;
    int K, E, S, p;
    vp_kind kind;
    ct_tensor *up, *down, *left, *right; /* padding                 */
    ct_tensor *patch;                    /* fixed / random patch    */
    float *txt;                          /* (K, E) normalised        */
} vp_state;

static void vp_destroy(void *st) {
    vp_state *s = st;
    if (!s) return;
    ct_tensor_free(s->up), ct_tensor_free(s->down), ct_tensor_free(s->left);
    ct_tensor_free(s->right), ct_tensor_free(s->patch);
    free(s->txt);
    free(s);
}

static ct_tensor *param3(int64_t c, int64_t h, int64_t w, uint64_t seed, int i, const char *name) {
    ct_tensor *t = ct_param_normal(c * h, w, 1.0f, seed, "vp.prompt", i, name);
    if (t) t->ndim = 3, t->shape[0] = c, t->shape[1] = h, t->shape[2] = w;
    return t;
}

static ct_status vp_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *method, *size, *tmpl;
    ct_status st = ct_kv_str(hp, "prompter", "padding", &method);
    if (st == CT_OK) st = ct_kv_str(hp, "prompt_size", "auto", &size);
    if (st == CT_OK) st = ct_kv_str(hp, "template", "This is a photo of a {}", &tmpl);
    if (st != CT_OK) return st;
    vp_kind kind;
    if (!strcmp(method, "padding")) kind = VP_PADDING;
    else if (!strcmp(method, "fixed_patch")) kind = VP_FIXED;
    else if (!strcmp(method, "random_patch")) kind = VP_RANDOM;
    else return ct_set_error(CT_ERR_ARG, "vp: prompter=%s (padding, fixed_patch, random_patch)",
                             method);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int S = c->image_size, p;
    if (!strcmp(size, "auto")) {
        p = (int)lround(30.0 * S / 224.0);
        if (p < 1) p = 1;
    } else {
        char *end;
        long v = strtol(size, &end, 10);
        if (end == size || *end || v < 1 || v > 4096)
            return ct_set_error(CT_ERR_ARG, "vp: prompt_size=%s (auto, or pixels)", size);
        p = (int)v;
    }
    if (kind == VP_PADDING ? 2 * p >= S : p > S)
        return ct_set_error(CT_ERR_ARG, "vp: prompt_size %d does not fit a %d-pixel image", p, S);
    vp_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "vp: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = S, s->p = p;
    s->kind = kind;
    /* prompters.py creates them in this order from torch.randn */
    if (kind == VP_PADDING) {
        s->up = param3(3, p, S, task->seed, 0, "vp.pad_up");
        s->down = param3(3, p, S, task->seed, 1, "vp.pad_down");
        s->left = param3(3, S - 2 * p, p, task->seed, 2, "vp.pad_left");
        s->right = param3(3, S - 2 * p, p, task->seed, 3, "vp.pad_right");
        if (!s->up || !s->down || !s->left || !s->right) st = CT_ERR_NOMEM;
    } else if (!(s->patch = param3(3, p, p, task->seed, 0, "vp.patch"))) {
        st = CT_ERR_NOMEM;
    }
    s->txt = malloc((size_t)s->K * s->E * sizeof *s->txt);
    if (st == CT_OK && !s->txt) st = ct_set_error(CT_ERR_NOMEM, "vp: out of memory");
    if (st == CT_OK) st = ct_prompt_zeroshot_text(task, tmpl, s->txt);
    if (st != CT_OK) {
        vp_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int vp_params(void *st, ct_tensor **out, int cap) {
    vp_state *s = st;
    ct_tensor *p[4] = {s->up, s->down, s->left, s->right};
    if (s->kind != VP_PADDING) p[0] = s->patch;
    int n = s->kind == VP_PADDING ? 4 : 1;
    n = n < cap ? n : cap;
    memcpy(out, p, (size_t)n * sizeof *out);
    return n;
}

static int vp_param_names(void *st, const char **out, int cap) {
    vp_state *s = st;
    static const char *const pad[4] = {"pad_up", "pad_down", "pad_left", "pad_right"};
    static const char *const patch[1] = {"patch"};
    const char *const *names = s->kind == VP_PADDING ? pad : patch;
    int n = s->kind == VP_PADDING ? 4 : 1;
    n = n < cap ? n : cap;
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

/* The prompt image (3, S, S): the learned pixels placed, zeros elsewhere. */
static ct_tensor *prompt_image(vp_state *s, ct_graph *g, const ct_batch *b) {
    int64_t S = s->S, p = s->p;
    if (s->kind == VP_PADDING) {
        int64_t zs[3] = {3, S - 2 * p, S - 2 * p};
        ct_tensor *row[3] = {s->left, ct_graph_tensor(g, 3, zs), s->right};
        ct_tensor *mid = ct_concat(g, row, 3, 2);              /* (3, S-2p, S) */
        ct_tensor *col[3] = {s->up, mid, s->down};
        return ct_concat(g, col, 3, 1);                         /* (3, S, S)    */
    }
    int64_t y = 0, x = 0;
    if (s->kind == VP_RANDOM) {
        /* one place per batch, from the batch's own pixels */
        size_t nb = (size_t)b->n * 3 * (size_t)(S * S) * sizeof(float);
        ct_rng r;
        ct_rng_init(&r, ct_hash_bytes(ct_hash_u64(CT_HASH_INIT, 0x5A7C4), b->pixels, nb));
        y = (int64_t)ct_rng_below(&r, (uint64_t)(S - p > 0 ? S - p : 1));
        x = (int64_t)ct_rng_below(&r, (uint64_t)(S - p > 0 ? S - p : 1));
    }
    /* rows: [zeros y][patch row band][zeros], the band [zeros x][patch][zeros] */
    ct_tensor *band[3];
    int nbd = 0;
    int64_t zl[3] = {3, p, x}, zr[3] = {3, p, S - x - p};
    if (x > 0) band[nbd++] = ct_graph_tensor(g, 3, zl);
    band[nbd++] = s->patch;
    if (S - x - p > 0) band[nbd++] = ct_graph_tensor(g, 3, zr);
    ct_tensor *mid = nbd == 1 ? band[0] : ct_concat(g, band, nbd, 2); /* (3, p, S) */
    ct_tensor *col[3];
    int nc = 0;
    int64_t zt[3] = {3, y, S}, zb[3] = {3, S - y - p, S};
    if (y > 0) col[nc++] = ct_graph_tensor(g, 3, zt);
    col[nc++] = mid;
    if (S - y - p > 0) col[nc++] = ct_graph_tensor(g, 3, zb);
    return nc == 1 ? col[0] : ct_concat(g, col, nc, 1);
}

static ct_tensor *vp_logits(void *st, ct_graph *g, const ct_batch *b) {
    vp_state *s = st;
    ct_tensor *px = ct_batch_pixels(g, s->S, b, "vp");
    if (!px) return NULL;
    ct_tensor *x = ct_add(g, px, prompt_image(s, g, b));
    ct_tensor *img = ct_clip_encode_image(g, s->clip, x, NULL, false, NULL);
    int64_t shape[2] = {s->K, s->E};
    ct_tensor *txt = ct_graph_wrap(g, s->txt, 2, shape);
    return ct_image_text_scores(g, s->clip, img, txt);
}

static ct_tensor *vp_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, vp_logits(st, g, b), b);
}

const ct_method ct_method_vp = {
    .name = "vp",
    .category = "visual prompt learning",
    .setup = "few-shot, full data",
    .paper = "Bahng et al., Exploring Visual Prompts for Adapting Large-Scale Models, 2022",
    /* main_clip.py's defaults: padding of 30 px at 224, SGD lr 40, momentum 0.9, wd 0,
     * 1,000 warmup steps, cosine per step, 1,000 epochs, batch 256; CLIP's
     * preprocessing only (no augmentation) */
    .defaults = "prompter=padding prompt_size=auto template=\"This is a photo of a {}\" "
                "optim=sgd lr=40 momentum=0.9 weight_decay=0 sched=cosine_step warmup_steps=1000 "
                "epochs=1000 batch_size=256 select=last train_aug=none aug_scale_min=0.08",
    .create = vp_create,
    .destroy = vp_destroy,
    .params = vp_params,
    .param_names = vp_param_names,
    .loss = vp_loss,
    .logits = vp_logits,
    .pixels = true,
};
