/* LASP, language-aware soft prompting (Bulat & Tzimiropoulos, "LASP:
 * Text-to-Text Optimization for Language-Aware Soft Prompting of Vision &
 * Language Models", CVPR 2023). The official repository
 * (github.com/AdrianBulat/LASP) has no stored copy here. Followed: its
 * trainer as redistributed, unchanged but for a dataset attribute name, by
 * two projects built on it, xytian1008/ArGue trainers/lasp.py + losses.py +
 * lasp_train.py (extend_cfg) at ea80f71 (its README: "builds upon ...
 * LASP") and RTSAK8/FruitCLIP trainers/lasp.py at 9d2936f; their
 * configs/trainers/LASP/ (the yaml files); the paper's abstract and
 * introduction (its method section is in no stored copy).
 *
 * CoOp's prompt learner (method_prompt.c) gives each class an embedding t_k
 * from learned context vectors. LASP adds a text-to-text cross-entropy: the
 * frozen text tower's normalised features h_{l,j} of the hand-crafted prompts
 * template_l(name_j) are the inputs and the t_k are the classifier,
 *     L_tt = mean_{l,j} -log softmax_k(exp(logit_scale) <h_{l,j}, t_k>)[j]
 *     loss = CE(exp(logit_scale) <normalize(f), t_k>, y) + w * L_tt
 * (lasp.py forward_text_to_text: contrastive_loss on (1, K, E) learned
 * against (L, K, E) template features, i.e. logits (L, K_learned, K_tmpl)
 * and torch's cross_entropy over dim 1 with target j at position j: a mean
 * over all L * K template prompts, temperature CLIP's logit scale).
 *
 * As lasp.py:
 *   - template features are normalised, then, with probability tt_noise_p
 *     per step, 0.05 N(0, 1) noise is added to all of them (not
 *     renormalised); the draw here is seeded by the run seed, the learned
 *     tensors and the batch, so a resumed run draws what an uninterrupted
 *     one would;
 *   - bias=1 (ENABLE_CORRECTION, TRAIN_W: the paper's class-agnostic bias
 *     of the re-calibration) learns a vector b added to every class's text
 *     feature before normalisation, in both losses and at test time; lasp.py
 *     sizes it by the text width, which equals the embedding dimension for
 *     ViT-B/16; here it is (E), zero-initialised;
 *   - virtual= (INCLUDE_ALL_CLASSES: the paper's virtual classes) appends
 *     class names with no images after the task's, dropping any already
 *     present (after '_' -> ' '); they take part in both losses (the image
 *     cross-entropy runs over all classes, as lasp.py's n_cls does), and
 *     predictions score the task's classes only;
 *   - the text temperature is exp(logit_scale) (lasp.py's t=self.logit_scale).
 * Not done: FINETUNE_VIT_LN (the LayerNorm re-calibration of the vision
 * tower: features here are cached from the frozen tower) and the paper's
 * grouped prompts (not in the trainer). See docs/methods/lasp.md.
 *
 * Learned tensor names: the keys of the state dict lasp.py saves (ArGue's
 * trainers/lasp.py registers the whole CustomCLIP as "prompt_learner"):
 * "prompt_learner.ctx" and, with bias=1, "prompt_learner.w" (PromptLearner.w,
 * (1, W) there, (E) here). */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"
#include "methods/method_templates.h"

/* LASP_PROMPTS of the configs in configs/trainers/LASP/, in order: five of CoOp's
 * per-dataset templates and 30 of CLIP's ImageNet ones ("a bad photo of the
 * {}." twice, as there) */
static const char *const k_lasp_templates[] = {
    "a photo of a {}, a type of flower.",
    "a photo of a person doing {}.",
    "a centered satellite photo of {}.",
    "a photo of a {}, a type of aircraft.",
    "{} texture.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
    "a photo of a {}.",
    "a photo of many {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a pixelated photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a close-up photo of the {}.",
    "a low resolution photo of a {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
};

typedef struct {
    ct_prompt *p;           /* over all Ka classes (the task's, then virtual) */
    ct_tensor *logit_scale; /* the model's (frozen) scalar                   */
    ct_tensor *bias;        /* (E) class-agnostic bias, or NULL (bias=0)     */
    float *tmpl;            /* (L * Ka, E) normalised template features      */
    int64_t *tmpl_labels;   /* (L * Ka): row l * Ka + j is class j           */
    int K, Ka, E, L;
    float w, noise, noise_p;
    uint64_t seed;
    char **names;           /* Ka names given to the prompt learner          */
    /* evaluation cache: (K, E) class embeddings and the tensors they came from */
    float *txt, *key;
    size_t key_n;
    bool txt_ok;
} lasp_state;

static void lasp_destroy(void *st) {
    lasp_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->p);
    ct_tensor_free(s->bias);
    free(s->tmpl), free(s->tmpl_labels), free(s->txt), free(s->key);
    for (int k = s->K; s->names && k < s->Ka; k++) free(s->names[k]);
    free(s->names);
    free(s);
}

static bool same_name(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if ((*a == '_' ? ' ' : *a) != (*b == '_' ? ' ' : *b)) return false;
    return *a == *b;
}

/* s->names: the task's classes, then the ';'-separated virtual ones that are
 * new (lasp.py's classes_delta) */
static ct_status build_names(lasp_state *s, const ct_task *task, const char *virt) {
    size_t cap = (size_t)task->n_classes + 1;
    for (const char *c = virt; *c; c++) cap += *c == ';';
    s->names = calloc(cap, sizeof *s->names);
    if (!s->names) return ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
    s->K = s->Ka = task->n_classes;
    for (int k = 0; k < s->K; k++) s->names[k] = task->classnames[k];
    for (const char *c = virt; *c;) {
        const char *e = strchr(c, ';');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        char *name = strndup(c, n);
        if (!name) return ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
        bool dup = n == 0;
        for (int k = 0; !dup && k < s->Ka; k++) dup = same_name(name, s->names[k]);
        if (dup) free(name);
        else s->names[s->Ka++] = name;
        c += n + (e != NULL);
    }
    return CT_OK;
}

/* Normalised frozen-tower features of every template for the Ka classes;
 * `which` is lasp (the configs' 35), a built-in list (imagenet80,
 * imagenet-select), "dataset" (CoOp's one per dataset) or a file of
 * templates, one a line. */
static ct_status build_template_features(lasp_state *s, const ct_task *all, const char *which) {
    char **file = NULL, *one = NULL;
    const char *const *list = NULL;
    int L = 0;
    ct_status st = CT_OK;
    if (!strcmp(which, "lasp"))
        list = k_lasp_templates, L = (int)(sizeof k_lasp_templates / sizeof *k_lasp_templates);
    else if (!strcmp(which, "dataset")) {
        st = ct_template_for_dataset(NULL, all->dataset_name ? all->dataset_name : "", &one,
                                     NULL);
        list = (const char *const *)&one, L = 1;
    } else if (!(list = ct_templates_builtin(which, &L))) {
        st = ct_templates_load(which, &file, &L);
        list = (const char *const *)file;
    }
    size_t rows = (size_t)L * s->Ka;
    if (st == CT_OK) {
        s->L = L;
        s->tmpl = malloc(rows * s->E * sizeof *s->tmpl);
        s->tmpl_labels = malloc(rows * sizeof *s->tmpl_labels);
        if (!s->tmpl || !s->tmpl_labels) st = ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
    }
    for (int l = 0; st == CT_OK && l < L; l++) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "lasp: template %d", l);
        st = ct_template_check(list[l], ctx);
        if (st == CT_OK)
            st = ct_prompt_zeroshot_text(all, list[l], s->tmpl + (size_t)l * s->Ka * s->E);
        for (int j = 0; j < s->Ka; j++) s->tmpl_labels[(size_t)l * s->Ka + j] = j;
    }
    ct_templates_free(file);
    free(one);
    return st;
}

static ct_status lasp_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    double w, noise, noise_p;
    int bias;
    const char *which, *virt;
    ct_status st = ct_kv_double(hp, "w", 5.0, &w);
    if (st == CT_OK) st = ct_kv_str(hp, "templates", "lasp", &which);
    if (st == CT_OK) st = ct_kv_double(hp, "tt_noise", 0.05, &noise);
    if (st == CT_OK) st = ct_kv_double(hp, "tt_noise_p", 0.5, &noise_p);
    if (st == CT_OK) st = ct_kv_int(hp, "bias", 0, &bias);
    if (st == CT_OK) st = ct_kv_str(hp, "virtual", "", &virt);
    if (st != CT_OK) return st;
    if (!(w >= 0)) return ct_set_error(CT_ERR_ARG, "lasp: w=%g (>= 0)", w);
    if (!(noise >= 0)) return ct_set_error(CT_ERR_ARG, "lasp: tt_noise=%g (>= 0)", noise);
    if (!(noise_p >= 0 && noise_p <= 1))
        return ct_set_error(CT_ERR_ARG, "lasp: tt_noise_p=%g (0 .. 1)", noise_p);
    if (bias != 0 && bias != 1) return ct_set_error(CT_ERR_ARG, "lasp: bias=%d (0 or 1)", bias);
    if (task->n_classes < 1) return ct_set_error(CT_ERR_ARG, "lasp: the task has no classes");
    lasp_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
    s->w = (float)w, s->noise = (float)noise, s->noise_p = (float)noise_p, s->seed = task->seed;
    s->E = ct_clip_get_config(task->clip)->embed_dim;
    s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
    if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "lasp: the model has no logit_scale");
    if (st == CT_OK) st = build_names(s, task, virt);
    ct_task all = *task;
    all.n_classes = s->Ka, all.classnames = s->names;
    if (st == CT_OK) st = ct_prompt_create(&all, hp, 0, (void **)&s->p);
    if (st == CT_OK && bias) {
        int64_t shape[1] = {s->E};
        s->bias = ct_tensor_new(1, shape, true); /* zeros, as lasp.py's w */
        if (!s->bias) st = ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
        else s->bias->name = "lasp.bias";
    }
    if (st == CT_OK) {
        s->key_n = (size_t)ct_prompt_ctx(s->p)->numel + (s->bias ? (size_t)s->E : 0);
        s->txt = malloc((size_t)s->K * s->E * sizeof *s->txt);
        s->key = malloc(s->key_n * sizeof *s->key);
        if (!s->txt || !s->key) st = ct_set_error(CT_ERR_NOMEM, "lasp: out of memory");
    }
    if (st == CT_OK) st = build_template_features(s, &all, which);
    if (st != CT_OK) {
        lasp_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int lasp_params(void *st, ct_tensor **out, int cap) {
    lasp_state *s = st;
    int n = ct_prompt_params(s->p, out, cap);
    if (s->bias && n < cap) out[n++] = s->bias;
    return n;
}

static int lasp_param_names(void *st, const char **out, int cap) {
    lasp_state *s = st;
    int n = 0;
    if (n < cap) out[n++] = "prompt_learner.ctx";
    if (s->bias && n < cap) out[n++] = "prompt_learner.w";
    return n;
}

/* normalize(t_k + b): (Ka, E) */
static ct_tensor *class_embeddings(lasp_state *s, ct_graph *g) {
    if (!s->bias) return ct_prompt_text_features(s->p, g);
    return ct_l2_normalize(g, ct_add(g, ct_prompt_text_features_raw(s->p, g), s->bias), 1e-12f);
}

/* The template features of this step: with probability noise_p, plus
 * noise * N(0, 1); the draw depends on the seed, the learned tensors and
 * the batch only. */
static ct_tensor *template_inputs(lasp_state *s, ct_graph *g, const ct_batch *b) {
    int64_t shape[2] = {(int64_t)s->L * s->Ka, s->E};
    if (s->noise == 0 || s->noise_p == 0) return ct_graph_wrap(g, s->tmpl, 2, shape);
    uint64_t h = ct_hash_str(ct_hash_u64(CT_HASH_INIT, s->seed), "lasp.noise");
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    h = ct_hash_bytes(h, ctx->data, (size_t)ctx->numel * sizeof(float));
    if (s->bias) h = ct_hash_bytes(h, s->bias->data, (size_t)s->E * sizeof(float));
    h = ct_hash_bytes(h, b->x, (size_t)b->n * s->E * sizeof(float));
    h = ct_hash_bytes(h, b->labels, (size_t)b->n * sizeof *b->labels);
    ct_rng r;
    ct_rng_init(&r, h);
    if (!(ct_rng_uniform(&r) < s->noise_p)) return ct_graph_wrap(g, s->tmpl, 2, shape);
    ct_tensor *x = ct_graph_tensor(g, 2, shape);
    if (!x) return NULL;
    ct_rng_fill_normal(&r, x->data, (size_t)x->numel, 0.0f, s->noise);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] += s->tmpl[i];
    return x;
}

static ct_tensor *lasp_loss(void *st, ct_graph *g, const ct_batch *b) {
    lasp_state *s = st;
    int64_t *labels = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) labels[i] = b->labels[i];
    ct_tensor *txt = class_embeddings(s, g);
    ct_tensor *loss = ct_cross_entropy(g, ct_prompt_scores(s->p, g, b, txt), labels, 0.0f);
    if (s->w == 0) return loss;
    /* rows are the template prompts, columns the learned class embeddings */
    ct_tensor *tt = ct_mul(g, ct_matmul(g, template_inputs(s, g, b), txt, false, true),
                           ct_exp(g, s->logit_scale));
    tt = ct_cross_entropy(g, tt, s->tmpl_labels, 0.0f);
    return ct_add(g, loss, ct_scale(g, tt, s->w));
}

static ct_tensor *lasp_logits(void *st, ct_graph *g, const ct_batch *b) {
    lasp_state *s = st;
    /* with grad mode on the caller may want gradients: no cache then */
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) return ct_slice(g, ct_prompt_scores(s->p, g, b, class_embeddings(s, g)), 1, 0, s->K);
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    size_t nc = (size_t)ctx->numel;
    bool same = s->txt_ok && !memcmp(s->key, ctx->data, nc * sizeof(float)) &&
                (!s->bias || !memcmp(s->key + nc, s->bias->data, (size_t)s->E * sizeof(float)));
    if (!same) {
        ct_tensor *t = class_embeddings(s, g);
        if (!t) return NULL;
        memcpy(s->txt, t->data, (size_t)s->K * s->E * sizeof(float)); /* the task's classes */
        memcpy(s->key, ctx->data, nc * sizeof(float));
        if (s->bias) memcpy(s->key + nc, s->bias->data, (size_t)s->E * sizeof(float));
        s->txt_ok = true;
    }
    int64_t shape[2] = {s->K, s->E};
    return ct_prompt_scores(s->p, g, b, ct_graph_wrap(g, s->txt, 2, shape));
}

const ct_method ct_method_lasp = {
    .name = "lasp",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Bulat & Tzimiropoulos, LASP: Text-to-Text Optimization for Language-Aware Soft "
             "Prompting of Vision & Language Models, CVPR 2023",
    /* configs/trainers/LASP/vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b.yaml (ArGue's
     * copy; FruitCLIP's vit_b16.yaml has the same optimiser, warmup and weight, 50
     * epochs); Dassl's SGD defaults momentum 0.9, weight decay 5e-4 (the configs leave
     * WEIGHT_DECAY commented out); PREC amp, whose branch in lasp.py clips the gradient
     * norm at 1. bias=0: the configs turn ENABLE_CORRECTION on (docs/methods/lasp.md). */
    .defaults = "w=5 templates=lasp tt_noise=0.05 tt_noise_p=0.5 bias=0 virtual= n_ctx=4 "
                "ctx_init=a_photo_of_a csc=0 class_token_position=end prec=amp optim=sgd "
                "lr=0.032 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=3 "
                "warmup_type=constant warmup_lr=1e-5 max_grad_norm=1 batch_size=32 epochs=25 "
                "select=last aug_views=10 views=cycle",
    .create = lasp_create,
    .destroy = lasp_destroy,
    .params = lasp_params,
    .param_names = lasp_param_names,
    .loss = lasp_loss,
    .logits = lasp_logits,
};
