/* The tape, as seen by op implementations (src/autograd/ops_*.c).
 *
 * An op checks its inputs, allocates its output from the graph arena, runs the
 * forward kernel and, when grad mode is on and any input requires grad,
 * records a node with its backward function. ct_backward walks the tape in
 * reverse; a node's backward reads out->grad and accumulates (+=) into the
 * gradient of each input that requires grad (ct_op_grad gives NULL for the
 * others, and kernels skip NULL gradients: frozen weights cost nothing). */
#ifndef CT_AUTOGRAD_GRAPH_H
#define CT_AUTOGRAD_GRAPH_H

#include <stdarg.h>

#include "base/arena.h"
#include "base/error.h"
#include "cliptune.h"

typedef struct ct_node ct_node;
typedef void (*ct_backward_fn)(ct_graph *g, ct_node *n);

struct ct_node {
    ct_backward_fn backward;
    const char *op;     /* op name, for messages                     */
    ct_tensor *out;
    int n_in;
    ct_tensor **in;     /* n_in inputs (entries may be NULL: optional) */
    void *saved[4];     /* arena buffers kept by the forward pass      */
    int64_t i[8];       /* integer arguments                           */
    double f[4];        /* float arguments                             */
};

/* True when grad mode is on and some non-NULL input requires grad. */
bool ct_op_needs_grad(const ct_graph *g, ct_tensor *const *in, int n);
/* False (and no new error) if the graph already failed or an input is NULL. */
bool ct_op_inputs_ok(ct_graph *g, ct_tensor *const *in, int n);
/* Output tensor from the arena, contents uninitialised. NULL on OOM (sets the
 * sticky status). */
ct_tensor *ct_op_out(ct_graph *g, int ndim, const int64_t *shape);
/* Arena memory for saved state; NULL on OOM (sets the sticky status). */
void *ct_op_alloc(ct_graph *g, size_t bytes);
/* Record a node producing out from in[0..n) (copied). Marks out as requiring
 * grad. Returns NULL on OOM. */
ct_node *ct_op_record(ct_graph *g, ct_tensor *out, const char *op, ct_backward_fn fn,
                      ct_tensor *const *in, int n);
/* For backward: t's gradient buffer (allocated zeroed on first use), or NULL
 * when t is NULL or does not require grad. */
ct_real *ct_op_grad(ct_graph *g, ct_tensor *t);
/* Set the sticky status + message; returns NULL for "return ct_op_fail(...)". */
ct_tensor *ct_op_fail(ct_graph *g, ct_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Liveness in no-tape forward passes: a mark taken before a stretch of ops
 * whose intermediates nobody reads afterwards (a transformer block run
 * without recording), then ct_graph_keep(g, &m, y) moves y to the mark and
 * frees everything allocated after it for the next stretch, so inference
 * holds one block's activations instead of all of them. When the tape grew
 * since the mark (some op recorded a node: backward will read its saved
 * buffers) nothing is freed and y is returned as is. */
typedef struct ct_graph_mark {
    struct ct_arena_mark arena;
    int n_nodes;
} ct_graph_mark;
ct_graph_mark ct_graph_get_mark(const ct_graph *g);
ct_tensor *ct_graph_keep(ct_graph *g, const ct_graph_mark *m, ct_tensor *y);

/* Fused forms of common compositions, for the engine's own layers: one
 * pass of the GEMM where no tape records them, the plain ops otherwise
 * (same values up to rounding).
 *   ct_linear_act:      act(x wᵀ + b), act GELU (exact) or QuickGELU
 *   ct_linear_residual: res + x wᵀ + b */
ct_tensor *ct_linear_act(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, bool gelu);
ct_tensor *ct_linear_residual(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b,
                              ct_tensor *res);

/* Common shape helpers. */
static inline int64_t ct_rows(const ct_tensor *t) {
    return t->ndim ? t->numel / t->shape[t->ndim - 1] : 1;
}
static inline int64_t ct_cols(const ct_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

#endif
