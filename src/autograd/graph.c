/* ct_graph: an arena for one step's tensors and a tape of backward nodes. */
#include "autograd/graph.h"

#include <stdlib.h>
#include <string.h>

#include "base/arena.h"

bool ct_tensor_set_shape(ct_tensor *t, int ndim, const int64_t *shape);

struct ct_graph {
    ct_arena arena;
    ct_node **tape;
    int n_nodes, cap_nodes;
    bool grad_enabled;
    ct_status status;
    uint64_t n_malloc_tape;
    /* reuse_grads: gradient buffers of processed nodes, free for reuse in
     * the same backward pass (arena memory, n_pool entries) */
    bool reuse_grads;
    struct grad_buf {
        ct_real *p;
        size_t bytes;
    } *pool;
    int n_pool;
};

ct_graph *ct_graph_create(size_t arena_bytes_hint) {
    ct_get_num_threads(); /* initialise thread settings once */
    ct_graph *g = calloc(1, sizeof *g);
    if (!g) {
        ct_set_error(CT_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    ct_arena_init(&g->arena, arena_bytes_hint ? arena_bytes_hint : (size_t)1 << 20);
    g->grad_enabled = true;
    return g;
}

void ct_graph_free(ct_graph *g) {
    if (!g) return;
    ct_arena_destroy(&g->arena);
    free(g->tape);
    free(g);
}

void ct_graph_reset(ct_graph *g) {
    ct_arena_reset(&g->arena);
    g->n_nodes = 0;
    g->status = CT_OK;
    g->pool = NULL, g->n_pool = 0;
}

bool ct_graph_set_reuse_grads(ct_graph *g, bool enabled) {
    bool old = g->reuse_grads;
    g->reuse_grads = enabled;
    return old;
}

bool ct_graph_set_grad(ct_graph *g, bool enabled) {
    bool old = g->grad_enabled;
    g->grad_enabled = enabled;
    return old;
}

ct_status ct_graph_status(const ct_graph *g) { return g->status; }
size_t ct_graph_arena_used(const ct_graph *g) { return g->arena.used; }
size_t ct_graph_arena_reserved(const ct_graph *g) { return g->arena.reserved; }
int ct_graph_num_nodes(const ct_graph *g) { return g->n_nodes; }
uint64_t ct_graph_malloc_count(const ct_graph *g) { return g->arena.n_malloc + g->n_malloc_tape; }

ct_tensor *ct_op_fail(ct_graph *g, ct_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ct_set_error(s, "%s", msg);
    if (g && g->status == CT_OK) g->status = s;
    return NULL;
}

void *ct_op_alloc(ct_graph *g, size_t bytes) {
    void *p = ct_arena_alloc(&g->arena, bytes);
    if (!p) ct_op_fail(g, CT_ERR_NOMEM, "graph arena: out of memory allocating %zu bytes", bytes);
    return p;
}

void *ct_graph_alloc(ct_graph *g, size_t bytes) { return ct_op_alloc(g, bytes); }

static ct_tensor *new_tensor(ct_graph *g, ct_real *data, int ndim, const int64_t *shape,
                             bool zero) {
    ct_tensor *t = ct_op_alloc(g, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    if (!ct_tensor_set_shape(t, ndim, shape))
        return ct_op_fail(g, CT_ERR_ARG, "tensor: invalid shape (ndim %d)", ndim);
    if (!data) {
        size_t bytes;
        if (!ct_mul_size((size_t)t->numel, sizeof(ct_real), &bytes))
            return ct_op_fail(g, CT_ERR_ARG, "tensor: size overflow");
        data = ct_op_alloc(g, bytes);
        if (!data) return NULL;
        if (zero) memset(data, 0, bytes);
    }
    t->data = data;
    return t;
}

ct_tensor *ct_op_out(ct_graph *g, int ndim, const int64_t *shape) {
    return new_tensor(g, NULL, ndim, shape, false);
}

ct_tensor *ct_graph_tensor(ct_graph *g, int ndim, const int64_t *shape) {
    return new_tensor(g, NULL, ndim, shape, true);
}

ct_tensor *ct_graph_wrap(ct_graph *g, ct_real *data, int ndim, const int64_t *shape) {
    if (!data) return ct_op_fail(g, CT_ERR_ARG, "ct_graph_wrap: NULL data");
    return new_tensor(g, data, ndim, shape, false);
}

bool ct_op_inputs_ok(ct_graph *g, ct_tensor *const *in, int n) {
    if (!g || g->status != CT_OK) return false;
    for (int i = 0; i < n; i++)
        if (!in[i]) return false;
    return true;
}

bool ct_op_needs_grad(const ct_graph *g, ct_tensor *const *in, int n) {
    if (!g->grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

ct_graph_mark ct_graph_get_mark(const ct_graph *g) {
    return (ct_graph_mark){ct_arena_get_mark(&g->arena), g->n_nodes};
}

ct_tensor *ct_graph_keep(ct_graph *g, const ct_graph_mark *m, ct_tensor *y) {
    if (!y || g->status != CT_OK || g->n_nodes != m->n_nodes || y->owns || y->requires_grad)
        return y;
    ct_tensor t = *y; /* y's struct may lie in the released stretch */
    size_t bytes = (size_t)t.numel * sizeof(ct_real);
    ct_arena_release(&g->arena, m->arena);
    /* The first allocation after the mark lies at or before y's data in the
     * arena's order (or in other memory): memmove is safe. */
    ct_real *d = ct_op_alloc(g, bytes ? bytes : sizeof(ct_real));
    if (!d) return NULL;
    memmove(d, t.data, bytes);
    return ct_graph_wrap(g, d, t.ndim, t.shape);
}

ct_node *ct_op_record(ct_graph *g, ct_tensor *out, const char *op, ct_backward_fn fn,
                      ct_tensor *const *in, int n) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        ct_node **t = realloc(g->tape, (size_t)cap * sizeof *t);
        if (!t) {
            ct_op_fail(g, CT_ERR_NOMEM, "graph: out of memory growing the tape");
            return NULL;
        }
        g->n_malloc_tape++;
        g->tape = t;
        g->cap_nodes = cap;
    }
    ct_node *nd = ct_op_alloc(g, sizeof *nd + (size_t)n * sizeof(ct_tensor *));
    if (!nd) return NULL;
    memset(nd, 0, sizeof *nd);
    nd->in = (ct_tensor **)(nd + 1);
    memcpy(nd->in, in, (size_t)n * sizeof *in);
    nd->n_in = n;
    nd->backward = fn;
    nd->op = op;
    nd->out = out;
    out->node = nd;
    out->requires_grad = true;
    g->tape[g->n_nodes++] = nd;
    return nd;
}

ct_real *ct_op_grad(ct_graph *g, ct_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad && t->owns) {
        /* A leaf whose requires_grad was switched on after creation: its
         * gradient must outlive the step, so it is not arena memory. */
        t->grad = calloc((size_t)t->numel ? (size_t)t->numel : 1, sizeof(ct_real));
        if (!t->grad) ct_op_fail(g, CT_ERR_NOMEM, "out of memory for a leaf gradient");
    } else if (!t->grad) {
        size_t bytes = (size_t)t->numel * sizeof(ct_real);
        for (int i = g->n_pool - 1; i >= 0 && !t->grad; i--)
            if (g->pool[i].bytes == bytes) {
                t->grad = g->pool[i].p;
                g->pool[i] = g->pool[--g->n_pool];
            }
        if (!t->grad) t->grad = ct_op_alloc(g, bytes ? bytes : sizeof(ct_real));
        if (t->grad) memset(t->grad, 0, bytes);
    }
    return t->grad;
}

ct_status ct_backward_from(ct_graph *g, ct_tensor *out, const ct_real *dout) {
    if (!out) return ct_set_error(CT_ERR_ARG, "backward: NULL tensor (an op before it failed: %s)",
                                  ct_last_error());
    if (g->status != CT_OK)
        return ct_set_error(g->status, "backward: the graph has a failed op: %s", ct_last_error());
    if (!out->requires_grad || !out->node)
        return ct_set_error(CT_ERR_STATE,
                            "backward: the output does not depend on anything that requires "
                            "grad (or grad mode was off)");
    /* Fresh intermediate gradients, so backward can run more than once on one
     * graph (e.g. two losses, as gradient-surgery methods need). */
    for (int i = 0; i < g->n_nodes; i++) g->tape[i]->out->grad = NULL;
    ct_real *d = ct_op_grad(g, out);
    if (!d) return g->status;
    memcpy(d, dout, (size_t)out->numel * sizeof(ct_real));
    int last = -1;
    for (int i = g->n_nodes - 1; i >= 0; i--)
        if (g->tape[i] == out->node) {
            last = i;
            break;
        }
    CT_ASSERT(last >= 0);
    g->n_pool = 0;
    g->pool = g->reuse_grads ? ct_op_alloc(g, (size_t)(last + 1) * sizeof *g->pool) : NULL;
    for (int i = last; i >= 0; i--) {
        ct_node *nd = g->tape[i];
        if (!nd->out->grad) continue; /* no gradient reached this node */
        nd->backward(g, nd);
        if (g->status != CT_OK)
            return ct_set_error(g->status, "backward of %s: %s", nd->op, ct_last_error());
        /* every consumer of nd's output came later on the tape and is done:
         * its gradient buffer can serve the nodes still to come */
        if (g->pool && !nd->out->owns) {
            g->pool[g->n_pool++] = (struct grad_buf){nd->out->grad,
                                                     (size_t)nd->out->numel * sizeof(ct_real)};
            nd->out->grad = NULL;
        }
    }
    g->pool = NULL, g->n_pool = 0;
    return CT_OK;
}

ct_status ct_backward(ct_graph *g, ct_tensor *loss) {
    if (loss && loss->numel != 1)
        return ct_set_error(CT_ERR_ARG, "backward: loss must be a scalar (has %lld values)",
                            (long long)loss->numel);
    ct_real one = 1;
    return ct_backward_from(g, loss, &one);
}
