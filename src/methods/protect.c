/* ProTeCt, prompt tuning for taxonomic open-set classification (Wu et al.,
 * "ProTeCt: Prompt Tuning for Taxonomic Open Set Classification", CVPR
 * 2024), on CoOp. Followed: gina9726/ProTeCt engine.py train_one_epoch,
 * models/treecut_generator.py (TreecutGenerator.get_randomcut),
 * loader/hierdata.py / loader/treelibs.py (the node structures) and
 * configs/<dataset>/few_shot/16_shot/CoOp+ProTeCt.yml.
 *
 * Every node of the taxonomy but the root (leaves = the classes, internal
 * nodes = their groups) is a "class" of CoOp's prompt learner: the prompt
 * "[SOT] v_1 .. v_M {node name}. [EOT]" with the shared learned context v
 * (method_prompt.c, as coop.c; ProTeCt's param_names). A node's logit is
 * CLIP's exp(logit_scale) * cos(image, text_node). The loss of a batch is
 *
 *   L = CE(logits over a random tree cut, the cut node above the label)
 *       + lambda * mean over internal nodes v (root included) with items
 *         below them of CE(logits over v's children, the child on the path)
 *
 * the dynamic tree-cut loss (DTL) and the node-centric loss (NCL). The cut
 * is drawn per batch as get_randomcut does: every internal node but the
 * root is dropped with probability dropout_rate, a node counts as kept when
 * its ancestors are, and the cut is the frontier (ct_taxonomy_sample_cut),
 * from the batch's seed here. Scores for evaluation are the leaves' logits
 * in class order (test.py's leaf accuracy); ct_run scores the internal
 * nodes by naming them to a state made for the node names (the learned
 * context is class-agnostic), which is what ProTeCt's model(image, text)
 * does at every node and cut.
 *
 * ProTeCt on MaPLe ("protect-maple"; models/maple.py and
 * configs/<dataset>/few_shot/16_shot/MaPLe+ProTeCt.yml): the node names are
 * MaPLe's classes ("a photo of a {node}." with its first n_ctx tokens and
 * the deep prompts learned, maple.c), images through MaPLe's prompted image
 * tower on the trainer's pixel path. engine.py calls model(image[idx],
 * text) once per label set; the image features do not depend on the text,
 * so they are computed once per batch here and shared by the cut's and
 * every node's logits (the same numbers).
 *
 * Learned tensor names: "ctx" (the prompt learner's, as coop.c); on MaPLe,
 * maple.c's (maple.py's state-dict keys). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/maple.h"
#include "methods/method_image.h"
#include "methods/method_prompt.h"
#include "methods/protect.h"

typedef struct {
    ct_prompt *p;           /* CoOp's prompt learner over the N node names     */
    void *mp;               /* or MaPLe's (protect-maple)                       */
    const ct_clip *clip;
    const ct_taxonomy *tax; /* the task's, or flat                              */
    ct_taxonomy *flat;      /* owned: the classes under a root, when no taxonomy */
    int N, K, NI, E;
    int64_t *leaf_ids;      /* (K) node of class k                              */
    int *slot;              /* (N) internal index of a node (root: 0), -1 leaf   */
    int *child_pos;         /* (N) a node's index among its parent's children    */
    int64_t *child_off;     /* (NI + 1) offsets into child_ids                   */
    int64_t *child_ids;     /* children of each internal node, in node order     */
    float lambda, rate;
    uint8_t *cut;           /* (N) the fixed cut                                */
    bool fixed;
    /* evaluation cache: the leaves' normalised text features and their context */
    float *txt, *txt_ctx;   /* (K, E), (ctx numel) */
    bool txt_ok;
} protect_state;

void ct_protect_fix_cut(void *state, const uint8_t *cut) {
    protect_state *s = state;
    s->fixed = cut != NULL;
    if (cut) memcpy(s->cut, cut, (size_t)s->N);
}

static void protect_destroy(void *st) {
    protect_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->p);
    ct_maple_destroy(s->mp);
    ct_taxonomy_free(s->flat);
    free(s->leaf_ids), free(s->slot), free(s->child_pos), free(s->child_off), free(s->child_ids);
    free(s->cut), free(s->txt), free(s->txt_ctx);
    free(s);
}

/* The classes as leaves under one root. */
static ct_status flat_taxonomy(const ct_task *task, ct_taxonomy **out) {
    int K = task->n_classes;
    ct_taxonomy *t = calloc(1, sizeof *t);
    if (!t) return ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
    t->n_nodes = K, t->n_classes = K, t->n_internal = 1;
    t->path = strdup("(flat)"), t->root = strdup("root");
    t->names = calloc((size_t)K, sizeof *t->names);
    t->parent = malloc((size_t)K * sizeof(int)), t->depth = malloc((size_t)K * sizeof(int));
    t->leaf_class = malloc((size_t)K * sizeof(int)), t->class_node = malloc((size_t)K * sizeof(int));
    t->internal = malloc(sizeof(int));
    bool ok = t->path && t->root && t->names && t->parent && t->depth && t->leaf_class &&
              t->class_node && t->internal;
    for (int k = 0; ok && k < K; k++) {
        ok = (t->names[k] = strdup(task->classnames[k])) != NULL;
        t->parent[k] = -1, t->depth[k] = 1, t->leaf_class[k] = k, t->class_node[k] = k;
    }
    if (!ok) {
        ct_taxonomy_free(t);
        return ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
    }
    t->internal[0] = -1;
    *out = t;
    return CT_OK;
}

static ct_status create_on(const ct_task *task, const ct_kv *hp, bool maple, void **state) {
    ct_kv *kv = (ct_kv *)hp;
    double lambda = 0.5, rate = 0.1;
    ct_status st = ct_kv_double(kv, "lambda", 0.5, &lambda);
    if (st == CT_OK) st = ct_kv_double(kv, "dropout_rate", 0.1, &rate);
    if (st != CT_OK) return st;
    if (!(lambda >= 0) || !isfinite(lambda))
        return ct_set_error(CT_ERR_ARG, "protect: lambda=%g (the node loss weight, >= 0)", lambda);
    if (!(rate >= 0 && rate < 1))
        return ct_set_error(CT_ERR_ARG, "protect: dropout_rate=%g (a node's drop probability "
                            "in [0, 1))", rate);
    if (task->n_classes < 1) return ct_set_error(CT_ERR_ARG, "protect: the task has no classes");
    protect_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
    s->lambda = (float)lambda, s->rate = (float)rate, s->clip = task->clip;
    s->E = ct_clip_get_config(task->clip)->embed_dim;
    const ct_taxonomy *t = task->taxonomy;
    if (t) {
        bool same = t->n_classes == task->n_classes;
        for (int k = 0; same && k < t->n_classes; k++)
            same = !strcmp(t->names[t->class_node[k]], task->classnames[k]);
        if (!same) {
            protect_destroy(s);
            return ct_set_error(CT_ERR_ARG, "protect: the taxonomy %s has other leaves than the "
                                "task's %d classes", t->path ? t->path : "", task->n_classes);
        }
    } else if ((st = flat_taxonomy(task, &s->flat)) != CT_OK) {
        protect_destroy(s);
        return st;
    } else {
        t = s->flat;
    }
    s->tax = t;
    int N = s->N = t->n_nodes, K = s->K = t->n_classes, NI = s->NI = t->n_internal;
    s->leaf_ids = malloc((size_t)K * sizeof *s->leaf_ids);
    s->slot = malloc((size_t)N * sizeof *s->slot);
    s->child_pos = calloc((size_t)N, sizeof *s->child_pos);
    s->child_off = calloc((size_t)NI + 1, sizeof *s->child_off);
    s->child_ids = malloc((size_t)N * sizeof *s->child_ids);
    s->cut = calloc((size_t)N, 1);
    if (!s->leaf_ids || !s->slot || !s->child_pos || !s->child_off || !s->child_ids || !s->cut) {
        protect_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
    }
    for (int k = 0; k < K; k++) s->leaf_ids[k] = t->class_node[k];
    for (int i = 0; i < N; i++) s->slot[i] = -1;
    for (int j = 1; j < NI; j++) s->slot[t->internal[j]] = j;
    /* children grouped by parent (CSR), each group in node order */
    for (int i = 0; i < N; i++) s->child_off[(t->parent[i] < 0 ? 0 : s->slot[t->parent[i]]) + 1]++;
    for (int j = 0; j < NI; j++) s->child_off[j + 1] += s->child_off[j];
    int *fill = calloc((size_t)NI, sizeof *fill);
    if (!fill) {
        protect_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
    }
    for (int i = 0; i < N; i++) {
        int j = t->parent[i] < 0 ? 0 : s->slot[t->parent[i]];
        s->child_pos[i] = fill[j];
        s->child_ids[s->child_off[j] + fill[j]++] = i;
    }
    free(fill);
    /* the prompt learner over the node names */
    ct_task nt = *task;
    nt.n_classes = N, nt.classnames = t->names;
    void *p = NULL;
    st = maple ? ct_maple_create(&nt, hp, &p) : ct_prompt_create(&nt, hp, 0, &p);
    if (st != CT_OK) {
        protect_destroy(s);
        return st;
    }
    if (maple)
        s->mp = p;
    else
        s->p = p;
    *state = s;
    return CT_OK;
}

static ct_status protect_create(const ct_task *task, const ct_kv *hp, void **state) {
    return create_on(task, hp, false, state);
}

static ct_status protect_maple_create(const ct_task *task, const ct_kv *hp, void **state) {
    return create_on(task, hp, true, state);
}

static int protect_params(void *st, ct_tensor **out, int cap) {
    protect_state *s = st;
    return s->mp ? ct_maple_params(s->mp, out, cap) : ct_prompt_params(s->p, out, cap);
}

static int protect_param_names(void *st, const char **out, int cap) {
    protect_state *s = st;
    return s->mp ? ct_maple_param_names(s->mp, out, cap) : ct_prompt_param_names(s->p, out, cap);
}

/* Every node's normalised text features (N, E). */
static ct_tensor *node_text(protect_state *s, ct_graph *g) {
    return s->mp ? ct_maple_text_features(s->mp, g) : ct_prompt_text_features(s->p, g);
}

/* CE over the rows of b listed in rows[0..m) against the nodes ids[0..c)
 * with targets tgt[0..m) (indices into ids); img: the batch's image
 * embeddings on MaPLe (NULL: b's features). */
static ct_tensor *ce_over(protect_state *s, ct_graph *g, const ct_batch *b, ct_tensor *img,
                          ct_tensor *txt, const int64_t *rows, int64_t m, const int64_t *ids,
                          int64_t c, const int64_t *tgt) {
    if (img) {
        ct_tensor *x = rows ? ct_gather_rows(g, img, rows, 1, &m) : img;
        ct_tensor *sc = ct_image_text_scores(g, s->clip, x, ct_gather_rows(g, txt, ids, 1, &c));
        return ct_cross_entropy(g, sc, tgt, 0.0f);
    }
    int E = (int)txt->shape[1];
    ct_batch sub = *b;
    if (rows) {
        float *x = ct_graph_alloc(g, (size_t)m * E * sizeof *x);
        if (!x) return NULL;
        for (int64_t r = 0; r < m; r++) memcpy(x + r * E, b->x + rows[r] * E, (size_t)E * sizeof *x);
        sub.x = x, sub.n = m;
    }
    ct_tensor *sc = ct_prompt_scores(s->p, g, &sub, ct_gather_rows(g, txt, ids, 1, &c));
    return ct_cross_entropy(g, sc, tgt, 0.0f);
}

static ct_tensor *protect_loss(void *st, ct_graph *g, const ct_batch *b) {
    protect_state *s = st;
    const ct_taxonomy *t = s->tax;
    int N = s->N, NI = s->NI;
    int64_t n = b->n;
    ct_tensor *img = s->mp ? ct_maple_image_features(s->mp, g, b) : NULL;
    ct_tensor *txt = node_text(s, g); /* (N, E) */
    if (!txt || (s->mp && !img)) return NULL;
    uint8_t *cut = ct_graph_alloc(g, (size_t)N);
    int64_t *ids = ct_graph_alloc(g, (size_t)N * sizeof *ids);
    int64_t *col = ct_graph_alloc(g, (size_t)N * sizeof *col);
    int64_t *tgt = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *tgt);
    if (!cut || !ids || !col || !tgt) return NULL;
    /* DTL: the batch's tree cut and each label's node in it */
    if (s->fixed) {
        memcpy(cut, s->cut, (size_t)N);
    } else {
        ct_rng r;
        ct_rng_init(&r, b->seed);
        ct_taxonomy_sample_cut(t, s->rate, &r, cut);
    }
    int64_t c = 0;
    for (int i = 0; i < N; i++) {
        col[i] = cut[i] ? c : -1;
        if (cut[i]) ids[c++] = i;
    }
    for (int64_t r = 0; r < n; r++) {
        int a = t->class_node[b->labels[r]];
        while (a >= 0 && col[a] < 0) a = t->parent[a];
        if (a < 0) {
            ct_set_error(CT_ERR_ARG, "protect: the cut covers no node above class %d", b->labels[r]);
            return NULL;
        }
        tgt[r] = col[a];
    }
    ct_tensor *loss = ce_over(s, g, b, img, txt, NULL, n, ids, c, tgt);
    if (s->lambda == 0 || !loss) return loss;
    /* NCL: at every internal node with items below it, CE over its children */
    int64_t *cnt = ct_graph_alloc(g, (size_t)NI * sizeof *cnt);
    if (!cnt) return NULL;
    memset(cnt, 0, (size_t)NI * sizeof *cnt);
    for (int64_t r = 0; r < n; r++)
        for (int a = t->parent[t->class_node[b->labels[r]]];; a = t->parent[a]) {
            cnt[a < 0 ? 0 : s->slot[a]]++;
            if (a < 0) break;
        }
    ct_tensor *ncl = NULL;
    int used = 0;
    for (int j = 0; j < NI; j++) {
        if (!cnt[j]) continue;
        int node = t->internal[j];
        int64_t *rows = ct_graph_alloc(g, (size_t)cnt[j] * sizeof *rows);
        int64_t *lab = ct_graph_alloc(g, (size_t)cnt[j] * sizeof *lab);
        if (!rows || !lab) return NULL;
        int64_t m = 0;
        for (int64_t r = 0; r < n; r++) {
            int ch = t->class_node[b->labels[r]];
            while (ch >= 0 && t->parent[ch] != node) ch = t->parent[ch];
            if (ch < 0) continue;
            rows[m] = r, lab[m] = s->child_pos[ch], m++;
        }
        ct_tensor *l = ce_over(s, g, b, img, txt, rows, m, s->child_ids + s->child_off[j],
                               s->child_off[j + 1] - s->child_off[j], lab);
        ncl = ncl ? ct_add(g, ncl, l) : l;
        used++;
    }
    return ct_add(g, loss, ct_scale(g, ncl, s->lambda / (float)used));
}

static ct_tensor *protect_logits(void *st, ct_graph *g, const ct_batch *b) {
    protect_state *s = st;
    int64_t K = s->K;
    if (s->mp) {
        ct_tensor *img = ct_maple_image_features(s->mp, g, b);
        ct_tensor *txt = ct_maple_text_features(s->mp, g);
        return ct_image_text_scores(g, s->clip, img, ct_gather_rows(g, txt, s->leaf_ids, 1, &K));
    }
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) {
        ct_tensor *txt = ct_prompt_text_features(s->p, g);
        return ct_prompt_scores(s->p, g, b, ct_gather_rows(g, txt, s->leaf_ids, 1, &K));
    }
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    size_t nctx = (size_t)ctx->numel * sizeof(float);
    if (!s->txt) {
        s->txt_ctx = malloc(nctx);
        if (!s->txt_ctx) {
            ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
            return NULL;
        }
    }
    if (!s->txt_ok || memcmp(s->txt_ctx, ctx->data, nctx)) {
        ct_tensor *txt = ct_prompt_text_features(s->p, g);
        if (!txt) return NULL;
        int64_t E = txt->shape[1];
        if (!s->txt && !(s->txt = malloc((size_t)(K * E) * sizeof *s->txt))) {
            ct_set_error(CT_ERR_NOMEM, "protect: out of memory");
            return NULL;
        }
        for (int64_t k = 0; k < K; k++)
            memcpy(s->txt + k * E, txt->data + s->leaf_ids[k] * E, (size_t)E * sizeof *s->txt);
        memcpy(s->txt_ctx, ctx->data, nctx);
        s->txt_ok = true;
    }
    int64_t shape[2] = {K, s->E};
    return ct_prompt_scores(s->p, g, b, ct_graph_wrap(g, s->txt, 2, shape));
}

const ct_method ct_method_protect = {
    .name = "protect",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Wu et al., ProTeCt: Prompt Tuning for Taxonomic Open Set Classification, CVPR 2024",
    /* configs/<dataset>/few_shot/16_shot/CoOp+ProTeCt.yml: CoOp's prompt
     * learner (n_ctx 16, generic, end), SGD lr 0.02 without momentum or
     * weight decay (optim/optimizer.py's defaults), cosine, one constant
     * warmup epoch at 1e-3, batch 128, 200 epochs, the last model
     * (eval_freq -1), loss lambda 0.5, treecut dropout_rate 0.1 */
    .defaults = "n_ctx=16 ctx_init= csc=0 class_token_position=end prec=fp16 optim=sgd "
                "lr=0.02 momentum=0 weight_decay=0 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=0.001 batch_size=128 epochs=200 select=last "
                "aug_views=10 views=cycle lambda=0.5 dropout_rate=0.1",
    .create = protect_create,
    .destroy = protect_destroy,
    .params = protect_params,
    .loss = protect_loss,
    .logits = protect_logits,
    .param_names = protect_param_names,
    .taxonomy = true,
};

const ct_method ct_method_protect_maple = {
    .name = "protect-maple",
    .category = "multimodal prompt learning",
    .setup = "few-shot",
    .paper = "Wu et al., ProTeCt: Prompt Tuning for Taxonomic Open Set Classification, CVPR 2024",
    /* configs/<dataset>/few_shot/16_shot/MaPLe+ProTeCt.yml: MaPLe's prompts
     * (n_ctx 2 from "a photo of a", prompt_depth 3), SGD lr 0.02 without
     * momentum or weight decay, cosine, one constant warmup epoch at 1e-3,
     * batch 8, 200 epochs, the last model, lambda 0.5, dropout_rate 0.1;
     * the "clip" transform (resize + centre crop: no augmentation) */
    .defaults = "n_ctx=2 ctx_init=a_photo_of_a depth=3 shared_prefix=1 prec=fp16 optim=sgd "
                "lr=0.02 momentum=0 weight_decay=0 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=0.001 batch_size=8 epochs=200 select=last "
                "train_aug=none lambda=0.5 dropout_rate=0.1",
    .create = protect_maple_create,
    .destroy = protect_destroy,
    .params = protect_params,
    .loss = protect_loss,
    .logits = protect_logits,
    .param_names = protect_param_names,
    .taxonomy = true,
    .pixels = true,
};
