/* cliptune — adapt CLIP-style vision-language models on a CPU, in C11.
 *
 * This is the one public header. Conventions:
 *   - every fallible call returns ct_status (CT_OK == 0) or NULL; on failure
 *     ct_last_error() returns a thread-local message naming what and where;
 *   - create/free pairs; every *_free(NULL) is a no-op;
 *   - the library never prints and never exits;
 *   - tensors are row-major, PyTorch (B, T, C) order, up to 4 dims.
 *
 * Compute type: ct_real is float. The engine is also compiled with
 * CT_REAL_DOUBLE (tests only) so that gradient checks run in double precision
 * through exactly the same kernels.
 */
#ifndef CLIPTUNE_H
#define CLIPTUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version (CMakeLists.txt reads it from here). ct_version()
 * gives the library's own, which may differ from the header's when an
 * application runs against another build of the shared library. */
#define CLIPTUNE_VERSION_MAJOR 0
#define CLIPTUNE_VERSION_MINOR 1
#define CLIPTUNE_VERSION_PATCH 0
#define CLIPTUNE_VERSION "0.1.0"

/* Everything declared in this header is the shared library's interface;
 * the library is built with -fvisibility=hidden, so nothing else is
 * exported. */
#if defined(__GNUC__) && !defined(CT_NO_VISIBILITY)
#pragma GCC visibility push(default)
#endif

/* "MAJOR.MINOR.PATCH" of the library linked. */
const char *ct_version(void);
/* sizeof the named public struct ("ct_run_cfg", "ct_run_info", "ct_metrics",
 * "ct_dataset", ...; 0 for an unknown name): bindings that lay the structs
 * out themselves (python/cliptune) check their copies against the library
 * they load. */
size_t ct_struct_size(const char *name);

#ifdef CT_REAL_DOUBLE
typedef double ct_real;
#else
typedef float ct_real;
#endif

/* ------------------------------------------------------------------------ */
/* Status and errors                                                         */
/* ------------------------------------------------------------------------ */

typedef enum ct_status {
    CT_OK = 0,
    CT_ERR_ARG,         /* invalid argument or shape (caller's mistake)       */
    CT_ERR_IO,          /* open/read/write/rename failed                      */
    CT_ERR_FORMAT,      /* a file's contents are malformed or out of bounds   */
    CT_ERR_NOMEM,       /* allocation failed                                  */
    CT_ERR_UNSUPPORTED, /* valid but not supported (dtype, rank, ...)         */
    CT_ERR_STATE        /* call not valid in the current state                */
} ct_status;

/* Message for the last failure on this thread ("" if none). Never NULL. */
const char *ct_last_error(void);
/* Short name of a status code ("ok", "invalid argument", ...). */
const char *ct_status_str(ct_status s);
/* Clear this thread's error message. */
void ct_clear_error(void);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Number of threads the engine uses (OpenMP and BLAS). Initialised from
 * CLIPTUNE_THREADS if set, else the OpenMP default. n <= 0 restores that. */
void ct_set_num_threads(int n);
int ct_get_num_threads(void);
/* The code path the engine's kernels run on, chosen at run time from the
 * CPU: "avx512", "avx2" or "generic" (x86-64 baseline); "blas" when
 * CLIPTUNE_GEMM=blas sends GEMMs to the BLAS library. CLIPTUNE_ISA=avx2 (or
 * generic, avx512) forces a path the CPU supports. */
const char *ct_cpu_path(void);

/* ------------------------------------------------------------------------ */
/* Distributed runs                                                          */
/* ------------------------------------------------------------------------ */

/* A library built with -DCT_MPI=ON (Open MPI) and started by an MPI launcher
 * (mpirun -n N, srun) runs as N ranks: the feature cache shards the images
 * over the ranks, training of the pixel-path methods shards every batch
 * (gradients summed in rank order), and rank 0 alone writes files. In the
 * default build, or a process no launcher started, there is one rank
 * (rank 0 of 1) and these calls cost nothing. docs/distributed.md. */
int ct_dist_rank(void);
int ct_dist_size(void);
/* A dynamic work queue over independent jobs 0 .. n_jobs-1 (protocol
 * cells): every rank calls begin (collective), then next until it returns
 * -1, then end (collective). Each job goes to whichever rank asks first, so
 * a slow job does not idle the others. Between begin and end the library
 * runs single-rank: a job is one rank's alone, and each rank writes its own
 * jobs' files. */
ct_status ct_dist_queue_begin(int64_t n_jobs);
int64_t ct_dist_queue_next(void);
ct_status ct_dist_queue_end(void);
/* v summed element-wise over the ranks, the result on every rank
 * (collective): for results each rank set for its own jobs, zero elsewhere. */
ct_status ct_dist_merge(double *v, int64_t n);
/* The end of a distributed program: failed != 0 ends every rank of the job
 * at once (MPI_Abort with that code; call it after printing the error, so
 * that a failing rank never leaves the others waiting), else the ranks shut
 * down together (MPI_Finalize). Nothing with one rank. */
void ct_dist_finish(int failed);

/* ------------------------------------------------------------------------ */
/* Random numbers                                                            */
/* ------------------------------------------------------------------------ */

/* Counter-based generator: value i of a stream is a pure function of
 * (seed, stream, i), so parallel fills give the same numbers whatever the
 * thread count. */
typedef struct ct_rng {
    uint64_t seed;
    uint64_t counter;
} ct_rng;

void ct_rng_init(ct_rng *r, uint64_t seed);
/* An independent generator derived from r (e.g. one per data worker). */
ct_rng ct_rng_split(const ct_rng *r, uint64_t stream);
uint64_t ct_rng_u64(ct_rng *r);
/* Uniform in [0, 1), 24 random bits (exactly representable as float). */
float ct_rng_uniform(ct_rng *r);
/* Standard normal (Box-Muller). */
float ct_rng_normal(ct_rng *r);
/* Uniform integer in [0, n). n > 0. Unbiased. */
uint64_t ct_rng_below(ct_rng *r, uint64_t n);
void ct_rng_fill_uniform(ct_rng *r, ct_real *out, size_t n, float lo, float hi);
void ct_rng_fill_normal(ct_rng *r, ct_real *out, size_t n, float mean, float std);
/* out[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void ct_rng_permutation(ct_rng *r, int64_t *out, size_t n);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

#define CT_MAX_DIMS 4

struct ct_node;

typedef struct ct_tensor {
    ct_real *data;          /* numel values, row-major                         */
    ct_real *grad;          /* same size; NULL when no gradient is kept        */
    int64_t shape[CT_MAX_DIMS];
    int ndim;
    int64_t numel;
    bool requires_grad;     /* a leaf that wants .grad, or depends on one      */
    bool owns;              /* data/grad malloc'ed by ct_tensor_new            */
    struct ct_node *node;   /* producing op on the tape; NULL for leaves       */
    const char *name;       /* optional, for error messages                    */
    struct ct_wpack *lowp;  /* engine-owned: a bf16 copy packed for inference
                               GEMMs (ct_clip_set_precision), or NULL          */
} ct_tensor;

/* A standalone (leaf) tensor, zero-filled, malloc'ed. With requires_grad the
 * gradient buffer is allocated (zeroed) too. Use for parameters. */
ct_tensor *ct_tensor_new(int ndim, const int64_t *shape, bool requires_grad);
ct_tensor *ct_tensor_new2(int64_t d0, int64_t d1, bool requires_grad);
void ct_tensor_free(ct_tensor *t);
/* Zero the gradient buffer (no-op if none). */
void ct_tensor_zero_grad(ct_tensor *t);
/* Size of dim d (negative d counts from the end). */
int64_t ct_tensor_dim(const ct_tensor *t, int d);
bool ct_tensor_same_shape(const ct_tensor *a, const ct_tensor *b);
/* "(2, 3, 4)" into buf. Returns buf. */
const char *ct_shape_str(const ct_tensor *t, char *buf, size_t n);

/* ------------------------------------------------------------------------ */
/* Graph (arena + tape)                                                      */
/* ------------------------------------------------------------------------ */

/* One graph per step: every op allocates its output from the graph's arena
 * and, when an input requires grad (and grad mode is on), records a backward
 * node on the tape. ct_graph_reset frees the whole step in O(1) and keeps the
 * memory, so a steady-state training step does no malloc. */
typedef struct ct_graph ct_graph;

ct_graph *ct_graph_create(size_t arena_bytes_hint);
void ct_graph_free(ct_graph *g);
void ct_graph_reset(ct_graph *g);
/* Grad mode (default on). Off: ops record nothing (inference). Returns the
 * previous mode. */
bool ct_graph_set_grad(ct_graph *g, bool enabled);
/* Gradient-buffer reuse in backward (default off): once a node's backward
 * has run, its output's gradient is handed to nodes still to come, so a
 * pass holds a few layers' gradients at a time instead of all of them. The
 * gradients of intermediate tensors are then not readable after backward
 * (leaves' are, as always). Returns the previous setting. */
bool ct_graph_set_reuse_grads(ct_graph *g, bool enabled);
/* Sticky error: the first failing op's status (ops after it return NULL). */
ct_status ct_graph_status(const ct_graph *g);
/* Bytes of arena in use / reserved, and the number of tape nodes. */
size_t ct_graph_arena_used(const ct_graph *g);
size_t ct_graph_arena_reserved(const ct_graph *g);
int ct_graph_num_nodes(const ct_graph *g);
/* Number of times the graph has called malloc/realloc for its arena or tape
 * since creation (used to prove steady-state steps allocate nothing). */
uint64_t ct_graph_malloc_count(const ct_graph *g);

/* Tensors owned by the graph (freed on reset). Zero-filled. */
ct_tensor *ct_graph_tensor(ct_graph *g, int ndim, const int64_t *shape);
/* A graph tensor viewing caller memory (not copied; not freed). */
ct_tensor *ct_graph_wrap(ct_graph *g, ct_real *data, int ndim, const int64_t *shape);
/* Raw scratch memory from the arena, 64-byte aligned, freed on reset. */
void *ct_graph_alloc(ct_graph *g, size_t bytes);

/* Reverse-mode pass from a scalar (numel == 1) loss: d loss / d loss = 1.
 * Gradients are accumulated (+=) into every leaf with requires_grad; call
 * ct_tensor_zero_grad between steps. Graph intermediates get gradient buffers
 * from the arena. */
ct_status ct_backward(ct_graph *g, ct_tensor *loss);
/* Same, seeded with dloss (same shape as out) instead of 1. */
ct_status ct_backward_from(ct_graph *g, ct_tensor *out, const ct_real *dout);

/* ------------------------------------------------------------------------ */
/* Ops. Each returns a new graph tensor, or NULL on error (sets the graph's   */
/* sticky status and ct_last_error). A NULL input yields NULL, so a chain of  */
/* ops can be checked once at the end.                                        */
/* ------------------------------------------------------------------------ */

/* y = x W^T + b. x (..., C), w (OC, C) [PyTorch layout], b (OC) or NULL. */
ct_tensor *ct_linear(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b);
/* LoRA on a frozen linear layer (w, b must not require grad), fused:
 * y = x wᵀ + b + scale · ((x ⊙ m) aᵀ) bmᵀ with a (r, C), bm (OC, r) and m an
 * inverted-dropout mask of rate p (0: none) drawn per element from seed and
 * regenerated in backward, so nothing of x's size is stored beyond x. No
 * gradient of w is computed. */
ct_tensor *ct_lora_linear(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, ct_tensor *a,
                          ct_tensor *bm, float scale, float p, uint64_t seed);
/* Batched matmul. a (..., M, K) [or (..., K, M) if ta], b (K, N) [or (N, K)
 * if tb] or (..., K, N) with the same leading dims as a. */
ct_tensor *ct_matmul(ct_graph *g, ct_tensor *a, ct_tensor *b, bool ta, bool tb);

/* Elementwise with broadcasting of rows: b has a's shape, or a's trailing
 * shape (e.g. (C) against (B, T, C)), or is a scalar (numel 1). */
ct_tensor *ct_add(ct_graph *g, ct_tensor *a, ct_tensor *b);
ct_tensor *ct_sub(ct_graph *g, ct_tensor *a, ct_tensor *b);
ct_tensor *ct_mul(ct_graph *g, ct_tensor *a, ct_tensor *b);
ct_tensor *ct_scale(ct_graph *g, ct_tensor *x, float s);
/* y = x (copied); with a new shape of the same numel (view semantics). */
ct_tensor *ct_reshape(ct_graph *g, ct_tensor *x, int ndim, const int64_t *shape);
/* x's values as a tensor no gradient flows back through (torch .detach();
 * a view: no op writes its input in place). */
ct_tensor *ct_detach(ct_graph *g, ct_tensor *x);
/* Swap dims d0 and d1 (materialised copy). */
ct_tensor *ct_transpose(ct_graph *g, ct_tensor *x, int d0, int d1);

ct_tensor *ct_concat(ct_graph *g, ct_tensor *const *xs, int n, int dim);
/* x[..., start:start+len, ...] along dim. */
ct_tensor *ct_slice(ct_graph *g, ct_tensor *x, int dim, int64_t start, int64_t len);
/* Rows of table (V, C) picked by ids[0..n): out has shape (shape of ids, C);
 * ids_ndim/ids_shape give that shape (n = product). Ids are bounds-checked. */
ct_tensor *ct_gather_rows(ct_graph *g, ct_tensor *table, const int64_t *ids, int ids_ndim,
                          const int64_t *ids_shape);

/* Over the last dim. w, b (C) or NULL. eps as in torch (1e-5 in CLIP). */
ct_tensor *ct_layernorm(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, float eps);
ct_tensor *ct_softmax(ct_graph *g, ct_tensor *x);
ct_tensor *ct_log_softmax(ct_graph *g, ct_tensor *x);
/* Mean cross-entropy of logits (N, K) against labels[0..N) in [0, K). With
 * label smoothing ls the target is (1-ls)*onehot + ls/K (torch semantics).
 * Scalar output. */
ct_tensor *ct_cross_entropy(ct_graph *g, ct_tensor *logits, const int64_t *labels, float ls);
/* Mean over all elements of BCE-with-logits against targets (same numel). */
ct_tensor *ct_bce_with_logits(ct_graph *g, ct_tensor *logits, const ct_real *targets);

/* Asymmetric loss (Ridnik et al., ICCV 2021) as DualCoOp's
 * utils/asymmetric_loss.py AsymmetricLoss computes it for two-way (negative,
 * positive) logits, given here as their difference d = pos - neg (any
 * shape): softmax over the pair is (sigma(-d), sigma(d)); per element with a
 * known target (targets, same numel: 1, 0, or -1 = unknown, skipped),
 * p+ = sigma(d), p- = min(sigma(-d) + clip, 1), the log-likelihood
 * y log(max(p+, eps)) + (1 - y) log(max(p-, eps)) weighted by the constant
 * (focusing without gradient) (1 - pt)^(y gamma_pos + (1 - y) gamma_neg),
 * pt = y p+ + (1 - y) p-. Scalar: minus the SUM over known elements. */
ct_tensor *ct_asymmetric_loss(ct_graph *g, ct_tensor *d, const int8_t *targets, float gamma_neg,
                              float gamma_pos, float clip, float eps);

ct_tensor *ct_gelu(ct_graph *g, ct_tensor *x);       /* exact, erf      */
ct_tensor *ct_quick_gelu(ct_graph *g, ct_tensor *x); /* x*sigmoid(1.702x) */
ct_tensor *ct_relu(ct_graph *g, ct_tensor *x);
ct_tensor *ct_sigmoid(ct_graph *g, ct_tensor *x);
ct_tensor *ct_tanh(ct_graph *g, ct_tensor *x);
ct_tensor *ct_exp(ct_graph *g, ct_tensor *x);
ct_tensor *ct_log(ct_graph *g, ct_tensor *x);

/* x / max(||x||_2, eps) over the last dim (torch F.normalize, eps 1e-12). */
ct_tensor *ct_l2_normalize(ct_graph *g, ct_tensor *x, float eps);
/* Reduce over dim (removed from the shape; a full reduction of a 1-D tensor
 * gives shape (1)). */
ct_tensor *ct_sum(ct_graph *g, ct_tensor *x, int dim);
ct_tensor *ct_mean(ct_graph *g, ct_tensor *x, int dim);
/* Sum of all elements, shape (1). */
ct_tensor *ct_sum_all(ct_graph *g, ct_tensor *x);

/* Fused multi-head attention on already-projected q (B, Tq, C), k and v
 * (B, Tk, C), n_head heads of C/n_head, scale 1/sqrt(C/n_head). Optional
 * extra key/value tokens ek, ev (P, C), shared across the batch, are placed
 * before k/v (prefix tuning). With causal, query i sees the P extra tokens
 * and keys j <= i + (Tk - Tq). Output (B, Tq, C). */
ct_tensor *ct_attention(ct_graph *g, ct_tensor *q, ct_tensor *k, ct_tensor *v, ct_tensor *ek,
                        ct_tensor *ev, int n_head, bool causal);

/* Patch embedding: conv with kernel = stride = p, no bias, no padding.
 * x (B, Cin, H, W), w (D, Cin, p, p). Out (B, (H/p)*(W/p), D), patches in
 * row-major order (the layout CLIP's ViT flattens to). */
ct_tensor *ct_patch_embed(ct_graph *g, ct_tensor *x, ct_tensor *w, int p);
/* General 2-D convolution. x (B, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout)
 * or NULL. Out (B, Cout, Ho, Wo). */
ct_tensor *ct_conv2d(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, int stride,
                     int pad);
/* Frozen (eval-mode) batch norm over dim 1 of (B, C, H, W) with running
 * statistics; gamma/beta (C) may require grad. */
ct_tensor *ct_batchnorm_frozen(ct_graph *g, ct_tensor *x, const ct_real *running_mean,
                               const ct_real *running_var, ct_tensor *gamma, ct_tensor *beta,
                               float eps);
/* Average pooling (B, C, H, W), kernel k, stride s, no padding. */
ct_tensor *ct_avg_pool2d(ct_graph *g, ct_tensor *x, int k, int s);
/* Dense-prediction layers (segmentation necks and heads), torch semantics:
 * ConvTranspose2d without padding: x (B, Cin, H, W), w (Cin, Cout, k, k), b
 * (Cout) or NULL; out (B, Cout, (H-1)·stride + k, (W-1)·stride + k). */
ct_tensor *ct_conv_transpose2d(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b,
                               int stride);
/* Training-mode BatchNorm2d over dim 1 of (B, C, ...): normalised with the
 * batch's mean and biased variance; running_mean / running_var (C, or NULL)
 * are updated in place as torch does (momentum, unbiased variance). Eval
 * mode is ct_batchnorm_frozen with the running statistics. */
ct_tensor *ct_batchnorm_train(ct_graph *g, ct_tensor *x, ct_tensor *gamma, ct_tensor *beta,
                              ct_real *running_mean, ct_real *running_var, float momentum,
                              float eps);
/* MaxPool2d(k, s), no padding, floor mode; the gradient goes to the first
 * maximum of each window. */
ct_tensor *ct_max_pool2d(ct_graph *g, ct_tensor *x, int k, int s);
/* F.interpolate(x, size=(Ho, Wo), mode="nearest" or "bilinear",
 * align_corners=False) over the last two dims of a 2- to 4-D tensor. */
ct_tensor *ct_resize2d(ct_graph *g, ct_tensor *x, int64_t Ho, int64_t Wo, bool bilinear);
/* Per-pixel cross-entropy of logits (B, K, H, W) against labels (B, H, W) in
 * [0, K) or ignore_index (contributes nothing): the sum over pixels divided
 * by the count of non-ignored pixels (avg_non_ignore, mmseg's
 * avg_non_ignore=True) or by all B·H·W pixels (mmseg's CrossEntropyLoss
 * default: F.cross_entropy(reduction="none", ignore_index) then .mean()).
 * Scalar output. */
ct_tensor *ct_pixel_cross_entropy(ct_graph *g, ct_tensor *logits, const uint8_t *labels,
                                  int ignore_index, bool avg_non_ignore);

/* KL(p || q) with p given as probabilities and q as log-probabilities, both
 * (N, K): sum_k p (log p - log_q) summed over k, mean over rows ("batchmean",
 * as torch F.kl_div(log_q, p, reduction='batchmean')). Terms with p == 0
 * contribute 0. Scalar output. */
ct_tensor *ct_kl_div(ct_graph *g, ct_tensor *log_q, ct_tensor *p);
/* Entropy of softmax(logits) per row, mean over rows. Scalar output. */
ct_tensor *ct_entropy(ct_graph *g, ct_tensor *logits);

/* Sinkhorn-Knopp, forward only (no gradient): for each batch element, the
 * transport plan T (M, N) = diag(u) K diag(v), K = exp(-C / eps), marginals
 * r (M) and c (N) (uniform when NULL), at most iters iterations, stopping
 * early when the u update changes by < tol (mean abs). cost (B, M, N). */
ct_tensor *ct_sinkhorn(ct_graph *g, ct_tensor *cost, const ct_real *r, const ct_real *c,
                       float eps, int iters, float tol);

/* ------------------------------------------------------------------------ */
/* Optimizers and schedules (PyTorch semantics)                              */
/* ------------------------------------------------------------------------ */

typedef enum ct_optim_kind { CT_OPTIM_SGD, CT_OPTIM_ADAM, CT_OPTIM_ADAMW } ct_optim_kind;

typedef struct ct_optim_config {
    ct_optim_kind kind;
    float lr;
    float momentum;     /* SGD                                           */
    float dampening;    /* SGD (torch default 0)                         */
    bool nesterov;      /* SGD                                           */
    float weight_decay; /* SGD/Adam: L2 added to grad; AdamW: decoupled  */
    float beta1, beta2, eps; /* Adam/AdamW                               */
} ct_optim_config;

/* torch defaults for the kind at learning rate lr: SGD momentum 0, wd 0;
 * Adam betas (0.9, 0.999), eps 1e-8, wd 0; AdamW the same with wd 0.01. */
ct_optim_config ct_optim_default(ct_optim_kind kind, float lr);

typedef struct ct_optim ct_optim;
/* Optimizes params[0..n) (leaves with requires_grad; not owned). Allocates
 * all state up front. */
ct_optim *ct_optim_create(const ct_optim_config *cfg, ct_tensor *const *params, int n);
void ct_optim_free(ct_optim *o);
/* One update with the current .grad of every param, at learning rate lr. */
ct_status ct_optim_step(ct_optim *o, float lr);
/* The same with a learning rate per param (lrs[0..n), in the order given to
 * ct_optim_create), or lrs[0] for all when same: one optimiser over several
 * torch param groups / Dassl optimisers that differ only in their schedule. */
ct_status ct_optim_step_each(ct_optim *o, const float *lrs, bool same);
void ct_optim_zero_grad(ct_optim *o);
/* Writable views of the optimiser's state, for checkpoints: n values in each
 * of buf1 (SGD momentum / Adam first moment; NULL when unused) and buf2 (Adam
 * second moment; NULL for SGD), laid out as the params concatenated, and
 * steps[n_params] updates applied per param. Valid while o lives. */
typedef struct ct_optim_state {
    size_t n;
    ct_real *buf1, *buf2;
    int n_params;
    int64_t *steps;
} ct_optim_state;
ct_optim_state ct_optim_get_state(ct_optim *o);
/* Global L2 norm of all grads; when max_norm / (norm + 1e-6) < 1, scale
 * every grad by that factor (torch clip_grad_norm_). Grads that are NULL are
 * skipped; a non-finite norm leaves the grads as they are. Returns the norm
 * before clipping. */
double ct_clip_grad_norm(ct_tensor *const *params, int n, double max_norm);

typedef enum ct_sched_kind {
    CT_SCHED_CONSTANT,
    CT_SCHED_COSINE  /* torch CosineAnnealingLR(T_max = total, eta_min) */
} ct_sched_kind;

typedef enum ct_warmup_kind {
    CT_WARMUP_NONE,
    CT_WARMUP_CONSTANT, /* Dassl ConstantWarmupScheduler: lr = warmup_lr   */
    CT_WARMUP_LINEAR    /* Dassl LinearWarmupScheduler: warmup_lr -> base  */
} ct_warmup_kind;

typedef struct ct_sched_config {
    ct_sched_kind kind;
    float base_lr;
    float min_lr;        /* eta_min of the cosine                         */
    int total;           /* T_max: the whole run's epochs, warmup included */
    ct_warmup_kind warmup;
    int warmup_len;      /* epochs of warmup                              */
    float warmup_lr;     /* constant lr, or the linear start              */
} ct_sched_config;

/* Learning rate for epoch (0-based) under Dassl's semantics with its default
 * WARMUP_RECOUNT = True (its
 * ConstantWarmupScheduler / LinearWarmupScheduler wrapping the successor):
 * epochs e < warmup_len use the warmup rule (constant: warmup_lr; linear:
 * warmup_lr at e == 0, else base_lr * e / warmup_len); later epochs use the
 * main schedule at t = e - warmup_len, with T_max = total (the successor only
 * starts stepping after warmup). */
float ct_sched_lr(const ct_sched_config *s, int epoch);
/* open_clip's per-step cosine_lr (also WiSE-FT's): step < warmup gives
 * base * (step + 1) / warmup, later steps min + (1 + cos(pi * (step - warmup)
 * / (total - warmup))) / 2 * (base - min); base when no step is left after
 * the warmup. */
double ct_sched_step_cosine(double base, double min, int64_t step, int64_t warmup,
                            int64_t total);

/* ------------------------------------------------------------------------ */
/* Transformer blocks (src/nn)                                               */
/* ------------------------------------------------------------------------ */

typedef enum ct_activation { CT_QUICK_GELU, CT_GELU } ct_activation;

/* Called before block `layer` (0-based) with the current tokens (B, T, C),
 * and once with layer == -1 right after the embeddings; returns the tokens
 * to continue with (x itself, or a replacement with the same B and C: deep
 * prompts insert or replace tokens here). NULL aborts (error set). */
typedef ct_tensor *(*ct_layer_hook)(ct_graph *g, int layer, ct_tensor *x, void *ctx);

/* LoRA deltas on a block's attention projections (CLIP-LoRA,
 * MaxZanella/CLIP-LoRA loralib/layers.py LinearLoRA):
 *   y = x Wᵀ + b + scale · (drop(x) Aᵀ) Bᵀ,   A (r, in), B (out, r)
 * for q, k, v and the output projection o (its input is the attention
 * output). drop is inverted dropout on the LoRA branch's input only, an
 * independent mask per projection per call, applied when train is set. */
typedef struct ct_block_lora {
    ct_tensor *a[4], *b[4]; /* q, k, v, o; a NULL: no delta on that projection */
} ct_block_lora;
typedef struct ct_lora {
    const ct_block_lora *layers; /* [n_layers]: block l's deltas            */
    int n_layers;
    float scale;                 /* alpha / sqrt(r) in CLIP-LoRA           */
    float dropout;               /* probability of dropping an input value  */
    bool train;                  /* apply the dropout                       */
    uint64_t seed;               /* masks: a stream of (seed, layer, proj)   */
} ct_lora;

/* Inverted dropout: x with each value zeroed with probability p and the
 * rest scaled by 1 / (1 - p), the mask drawn from the stream seed. p 0 is
 * x itself. Gradients flow through the kept values. */
ct_tensor *ct_dropout(ct_graph *g, ct_tensor *x, float p, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* Images and preprocessing (src/model/image.c, preprocess.c)               */
/* ------------------------------------------------------------------------ */

/* Image decoding into 8-bit RGB with Pillow's Image.open(f).convert("RGB")
 * semantics, which is what both torchvision- and HF-style CLIP preprocessing
 * start from. See docs/preprocessing.md for what is matched exactly.
 *
 * Formats (recognised by their first bytes, never by the file name):
 *   JPEG  libjpeg-turbo with Pillow's settings (islow IDCT, fancy chroma
 *         upsampling); grey -> 3 equal channels; CMYK/YCCK as Pillow does it
 *         (Adobe-inverted CMYK, then its cmyk2rgb). EXIF orientation is
 *         ignored, as Pillow's open() ignores it.
 *   PNG   stb_image after Pillow's integrity checks (chunk CRCs before
 *         the image data, zlib data and checksum); alpha dropped (not
 *         composited), palette expanded, 16-bit colour keeps the high byte;
 *         16-bit grey saturates at 255 (Pillow opens it as mode "I" and
 *         convert() clips).
 *   BMP   stb_image (1/4/8/16/24/32-bit, RLE4/RLE8), truncation checked.
 *   GIF   first frame, own decoder following Pillow's canvas rules.
 *   PNM   P1-P6 own decoder with Pillow's maxval scaling.
 *   TIFF  libtiff from memory, first page, the layouts Pillow opens: grey
 *         1-16 bit (16-bit clipped at 255), palette, RGB(A) 8/16-bit
 *         (unassociated alpha dropped, premultiplied alpha undone as Pillow
 *         does), CMYK, JPEG-compressed YCbCr; strips or tiles, any
 *         compression libtiff decodes. Float, signed, 12/32-bit samples and
 *         LAB are refused (CT_ERR_UNSUPPORTED).
 *   WebP  libwebp (the decoder Pillow uses): lossy or lossless, alpha
 *         dropped; animated files give their first frame.
 * Decoded sizes are checked (both sides >= 1, <= CT_IMAGE_MAX_SIDE, and at
 * most CT_IMAGE_MAX_PIXELS) before anything is allocated for the pixels. */

#define CT_IMAGE_MAX_SIDE 16384
/* Pillow's decompression-bomb error threshold, 2 x Image.MAX_IMAGE_PIXELS
 * (1024 * 1024 * 1024 // 4 // 3): a small file that declares more pixels is
 * refused before anything is decoded (Pillow warns from MAX_IMAGE_PIXELS; the
 * library does not print, so it decodes those). */
#define CT_IMAGE_MAX_PIXELS ((int64_t)2 * (1024 * 1024 * 1024 / 4 / 3))

typedef struct ct_image {
    int w, h;
    uint8_t *rgb; /* h * w * 3 bytes, row-major, R G B; malloc'ed */
} ct_image;

/* Decode the file at path. On failure *out is zeroed and the error names
 * the path and the problem. */
ct_status ct_image_load(const char *path, ct_image *out);
/* The same from bytes in memory; name is used in error messages only (e.g.
 * "shard-0003.tar:cat/001.jpg"; NULL reads as "<memory>"). */
ct_status ct_image_decode(const uint8_t *data, size_t size, const char *name, ct_image *out);
/* Copy a raw, tightly packed buffer (h rows of w pixels) into a new image:
 * channels 1 (grey, replicated), 2 (grey + alpha, alpha dropped), 3 (RGB)
 * or 4 (RGBA, alpha dropped). */
ct_status ct_image_from_pixels(const uint8_t *pixels, int w, int h, int channels,
                               ct_image *out);
/* ct_image_decode / ct_image_load (same RGB, same errors), plus the file's
 * alpha channel: *alpha is a malloc'ed h * w plane (0 transparent .. 255
 * opaque) for a PNG with an alpha channel (grey+alpha, RGBA) or a tRNS chunk
 * (colour key or palette alpha; 16-bit alpha keeps the high byte), else
 * NULL. Other formats (GIF transparency included) give NULL, as does a PNG
 * Pillow decodes only after repair (cut-off or junk-trailed files): treat
 * NULL as opaque. For pretraining augmentation (src/data/pretrain_aug.h). */
ct_status ct_image_decode_alpha(const uint8_t *data, size_t size, const char *name,
                                ct_image *out, uint8_t **alpha);
ct_status ct_image_load_alpha(const char *path, ct_image *out, uint8_t **alpha);
/* Free the pixels and zero *img (NULL and zeroed images are fine). */
void ct_image_free(ct_image *img);


/* CLIP image preprocessing, bit-exact with the Python pipelines the
 * checkpoints were trained with (see docs/preprocessing.md):
 *
 *   OpenAI / open_clip (torchvision on PIL images):
 *     Resize(n, BICUBIC) -> CenterCrop(n) -> ToTensor() -> Normalize(mean, std)
 *   HF CLIPImageProcessor:
 *     convert_rgb -> resize(shortest_edge, BICUBIC) -> center_crop -> rescale
 *     -> normalize
 *
 * Both resize with Pillow (8-bit, separable, antialiased: the filter support
 * grows with the downscale factor), ported here operation for operation. They
 * differ only in the crop offset when the margin is odd: torchvision rounds
 * half the margin (half to even), HF floors it; and when the crop is larger
 * than the image, torchvision pads floor(d/2) before, HF ceil(d/2).
 *
 * Thread-safe; no global state. Large images use OpenMP over rows. */

typedef enum ct_crop_rounding {
    CT_CROP_ROUND = 0, /* torchvision CenterCrop: int(round((h - th) / 2.0)) */
    CT_CROP_FLOOR = 1  /* HF center_crop: (h - th) // 2                       */
} ct_crop_rounding;

/* Pillow's filters (HF's "resample" numbers 3 and 2). */
typedef enum ct_resample {
    CT_RESAMPLE_BICUBIC = 0, /* a = -0.5, support 2 */
    CT_RESAMPLE_BILINEAR = 1 /* triangle, support 1 */
} ct_resample;

typedef struct ct_preprocess_cfg {
    /* Resize: resize_short > 0 scales the shorter side to it and the longer
     * to int(resize_short * long / short) (torchvision Resize(int), HF
     * shortest_edge). Else resize_h, resize_w > 0 resize to exactly that
     * (HF size {"height", "width"}). All 0: no resize. */
    int resize_short;
    int resize_h, resize_w;
    /* Center crop to crop_h x crop_w (zero-padded if larger than the image);
     * both 0: no crop. */
    int crop_h, crop_w;
    ct_crop_rounding crop_rounding;
    ct_resample resample;
    /* out = ((float)(pixel * rescale) - mean[c]) / std[c], in float like
     * torch and numpy. rescale 1/255 is ToTensor's division exactly. */
    double rescale;
    float mean[3], std[3];
} ct_preprocess_cfg;

/* OpenAI CLIP's transform for an n-pixel model (n = 224, 336, ...): resize
 * shorter side to n, crop n x n with torchvision rounding, bicubic, OpenAI
 * mean/std. */
void ct_preprocess_cfg_openai(ct_preprocess_cfg *cfg, int n);

/* Read an HF preprocessor_config.json (CLIPImageProcessor, or the older
 * CLIPFeatureExtractor schema): size as an int, {"shortest_edge": n} or
 * {"height": h, "width": w}; crop_size as an int or {"height", "width"};
 * do_resize / do_center_crop / do_rescale / do_normalize; rescale_factor;
 * image_mean / image_std (3 numbers, or one for all); resample 2 or 3. Keys
 * left out take CLIPImageProcessor's defaults. Crop rounding is
 * CT_CROP_FLOOR. */
ct_status ct_preprocess_cfg_from_hf(const char *path, ct_preprocess_cfg *cfg);

/* Output size (after resize and crop) for a w x h input. */
ct_status ct_preprocess_out_size(const ct_preprocess_cfg *cfg, int w, int h, int *out_h,
                                 int *out_w);

/* out: float (3, out_h, out_w), channel-major, sizes as ct_preprocess_out_size
 * (crop_h x crop_w whenever a crop is set). */
ct_status ct_preprocess(const ct_image *img, const ct_preprocess_cfg *cfg, float *out);
/* A label map (w x h, one class index per pixel) through the same geometry
 * as ct_preprocess gives its image: resized with nearest neighbour (Pillow's
 * NEAREST, pixel centres), centre-cropped with the same offsets, the padding
 * filled with pad (255: ignored). out (out_h, out_w). */
ct_status ct_preprocess_label_map(const uint8_t *map, int w, int h, const ct_preprocess_cfg *cfg,
                                  uint8_t pad, uint8_t *out);
/* The nearest-neighbour resize it uses: src (sw x sh) to dst (dw x dh),
 * source pixel floor((d + 0.5) * s / d) per axis (Pillow's NEAREST). */
void ct_label_map_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

/* Pillow's Image.resize((w, h), filter) on an RGB image, bit-exact. */
ct_status ct_image_resize(const ct_image *src, int w, int h, ct_resample filter, ct_image *dst);


/* ------------------------------------------------------------------------ */
/* Tokenizer (src/model/tokenizer.c)                                         */
/* ------------------------------------------------------------------------ */

/* CLIP's byte-level BPE tokenizer. Reproduces OpenAI's simple_tokenizer.py and
 * clip.tokenize() id for id, with one documented gap: ftfy.fix_text (mojibake
 * repair) is not applied (docs/tokenizer.md). A loaded tokenizer is immutable
 * and may be used from many threads at once. */
typedef struct ct_tokenizer ct_tokenizer;

/* The context length of every CLIP model. */
#define CT_CLIP_CONTEXT_LENGTH 77

/* Load OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip, UTF-8). The vocabulary is
 * built as simple_tokenizer.py builds it: the 256 byte symbols, the same with
 * "</w>", one token per merge (lines 2..48895 of the file, i.e. at most 48,894
 * merges; later lines are ignored), then <|startoftext|> and <|endoftext|>:
 * 49,408 ids for the released file. (A shorter file that ends with a newline
 * gets, as in Python, an extra "" token before the special ones.)
 * NULL on failure: unreadable file, truncated or corrupt gzip data, invalid
 * UTF-8, a merge line without exactly two whitespace-separated symbols, a
 * merge symbol that is neither a byte symbol nor a merge result, or a
 * duplicate token (the message names the file and line). */
ct_tokenizer *ct_tokenizer_load_openai(const char *bpe_txt_gz);

/* Load a Hugging Face CLIP tokenizer folder's vocab.json ({"token": id, ...})
 * and merges.txt. As transformers' CLIPTokenizer does, the merges file is
 * stripped of surrounding whitespace, its first line (the "#version" header)
 * is skipped and at most the next 48,894 lines are used. Text is cleaned and
 * split with OpenAI's rules (as ct_tokenizer_load_openai), so the released
 * files give the same ids as the .gz. Ids need not be dense (at most 1,024
 * unused below the largest). NULL on failure: bad JSON, a value that is not
 * an integer id in [0, 2^24), duplicate tokens or ids, a byte symbol
 * or <|startoftext|>/<|endoftext|> missing, a merge line without exactly two
 * symbols, a merge symbol or merge result missing from the vocabulary (the
 * message names the file and line or key). */
ct_tokenizer *ct_tokenizer_load_hf(const char *vocab_json, const char *merges_txt);

void ct_tokenizer_free(ct_tokenizer *t);

/* 1 + the largest id (49,408 for CLIP). */
int ct_tokenizer_vocab_size(const ct_tokenizer *t);
/* Ids of <|startoftext|> and <|endoftext|> (49406 and 49407 for CLIP). */
int64_t ct_tokenizer_sot(const ct_tokenizer *t);
int64_t ct_tokenizer_eot(const ct_tokenizer *t);

/* The vocabulary string of id (byte-level symbols, e.g. "photo</w>"), valid
 * while t lives; NULL if id is out of range or unused. For debugging. */
const char *ct_tokenizer_token_str(const ct_tokenizer *t, int64_t id);

/* The BPE ids of text (UTF-8, NUL-terminated, so U+0000 cannot be passed),
 * without <|startoftext|> and <|endoftext|>: text is cleaned as
 * simple_tokenizer.encode does (HTML entities unescaped twice, whitespace
 * runs collapsed to one space and trimmed, Python's str.lower()), split by
 * CLIP's pattern, and each piece is byte-pair encoded. The literal strings "<|startoftext|>" and
 * "<|endoftext|>" inside text become those tokens, as in Python.
 * Invalid UTF-8 is not an error: each maximal invalid subsequence becomes
 * U+FFFD, exactly as Python's bytes.decode("utf-8", "replace") would (the
 * Python tokenizer only ever sees decoded text).
 * On return *n is the number of ids the text encodes to. If it exceeds cap,
 * the first cap ids are written and CT_ERR_ARG is returned (so cap == 0 with
 * ids == NULL asks for the count). */
ct_status ct_tokenizer_encode(const ct_tokenizer *t, const char *text, int64_t *ids, int cap,
                              int *n);

/* One row of clip.tokenize(text, context_length, truncate): <|startoftext|>,
 * the ids of text, <|endoftext|>, then zeros up to context_length. If that is
 * longer than context_length: with truncate the first context_length tokens
 * are kept and the last is replaced by <|endoftext|>; without, CT_ERR_ARG
 * names the text's token count (row is then all zeros). context_length >= 1. */
ct_status ct_tokenizer_tokenize(const ct_tokenizer *t, const char *text, int context_length,
                                bool truncate, int64_t *row);

/* Inverse of encode as simple_tokenizer.decode: the tokens' strings joined,
 * mapped back to bytes, decoded as UTF-8 with invalid sequences replaced by
 * U+FFFD, and every "</w>" replaced by a space. Writes a NUL-terminated
 * string to out; CT_ERR_ARG if an id is out of range or cap is too small
 * (the message gives the size needed). */
ct_status ct_tokenizer_decode(const ct_tokenizer *t, const int64_t *ids, int n, char *out,
                              size_t cap);

/* ---- Training a vocabulary (src/model/bpe_train.c) ---- */

typedef struct ct_bpe_stats {
    int vocab_size;           /* ids written: 512 byte symbols + new tokens + 2  */
    int n_merges;             /* lines of merges.txt after the header            */
    int64_t n_words;          /* pieces counted (special-token literals skipped) */
    int64_t n_distinct_words;
    bool stopped_early;       /* no pair reached min_frequency before vocab_size */
} ct_bpe_stats;

/* Train a CLIP BPE vocabulary on texts[0..n_texts) and write a Hugging Face
 * tokenizer folder to out_dir (created if needed; every file atomically):
 * vocab.json, merges.txt ("#version: 0.2" header), tokenizer_config.json and
 * special_tokens_map.json, loadable by ct_tokenizer_load_hf. Texts are split
 * exactly as ct_tokenizer_encode splits them; each distinct piece is a word
 * of byte symbols with "</w>" on the last; the most frequent adjacent pair
 * is merged until the vocabulary has vocab_size ids or no pair occurs
 * min_frequency times. Ties go to the lexicographically smallest pair (first
 * symbol, then second, bytewise), so the result does not depend on the order
 * of texts. Ids: the 256 byte symbols in bytes_to_unicode order, their
 * "</w>" forms, one per new token in merge order, then <|startoftext|> and
 * <|endoftext|>. A merge whose result is already a token reuses it (all
 * merges are listed). vocab_size in [514, 49408] (at most 48,894 merges, what
 * CLIP tokenizers read), min_frequency >= 1. stats may be NULL.
 * CT_ERR_ARG for bad arguments, no texts or texts without a single word;
 * CT_ERR_IO when out_dir cannot be written. */
ct_status ct_bpe_train(const char *const *texts, int64_t n_texts, int vocab_size,
                       int min_frequency, const char *out_dir, ct_bpe_stats *stats);


/* ------------------------------------------------------------------------ */
/* CLIP (src/model)                                                          */
/* ------------------------------------------------------------------------ */

typedef enum ct_clip_format {
    CT_CLIP_HF,     /* Hugging Face folder: config.json + model.safetensors     */
    CT_CLIP_OPENAI  /* one .safetensors with OpenAI / open_clip state-dict names */
} ct_clip_format;

typedef enum ct_eot_rule {
    CT_EOT_ARGMAX,  /* position of the largest id (OpenAI; HF legacy eos 2)    */
    CT_EOT_FIRST_ID /* first position holding eot_id (HF)                       */
} ct_eot_rule;

typedef struct ct_clip_config {
    ct_clip_format format;
    int image_size, patch_size, vision_width, vision_layers, vision_heads, vision_mlp;
    int context_length, vocab_size, text_width, text_layers, text_heads, text_mlp;
    int embed_dim;
    ct_activation vision_act, text_act;
    float vision_ln_eps, text_ln_eps;
    ct_eot_rule eot_rule;
    int64_t eot_id;
    /* A ModifiedResNet image tower (OpenAI's RN50 family, clip/model.py)
     * when vision_resnet_layers[0] > 0: the bottleneck counts of layer1..4
     * (RN50: 3, 4, 6, 3). Then vision_width is the stem width (64 for RN50;
     * features are vision_width * 32 wide), vision_heads the attention
     * pooling's heads (vision_width * 32 / 64), patch_size 32 (the tower's
     * total stride: image_size / 32 spatial tokens a side), vision_layers
     * and vision_mlp 0, batch norm eps 1e-5. All 0: a ViT. */
    int vision_resnet_layers[4];
} ct_clip_config;

typedef struct ct_clip_load_opts {
    /* OpenAI layout only (its file has no config): the activation (OpenAI's
     * own models use QuickGELU; most open_clip LAION models use GELU) and the
     * head width used to infer head counts (64, as OpenAI's build_model). */
    ct_activation openai_act;
    int openai_head_width;
} ct_clip_load_opts;

typedef struct ct_clip ct_clip;

/* Load a checkpoint: a directory is read as a Hugging Face CLIP folder, a
 * file as OpenAI-named safetensors (a ViT or a ModifiedResNet image tower,
 * RN50 / RN101 / RN50x4 / x16 / x64, told apart and sized from the tensor
 * names and shapes as OpenAI's build_model does; batch norm's
 * num_batches_tracked buffers are ignored). F32/F16/BF16 weights are widened to
 * float. Missing, unexpected or misshaped tensors are errors naming the
 * tensor. opts may be NULL (QuickGELU, head width 64). All weights are
 * frozen (requires_grad false); set requires_grad on the ones to train. */
ct_clip *ct_clip_load(const char *path, const ct_clip_load_opts *opts);
/* A randomly initialised model of the given architecture (LayerNorm 1/0,
 * other weights N(0, 0.02), logit_scale ln(1/0.07); a ResNet tower's
 * batch norms weight 1, bias 0, running mean 0, var 1, its convolutions
 * He-normal): for benchmarks, tests and pretraining from scratch. */
ct_clip *ct_clip_create(const ct_clip_config *cfg, uint64_t seed);
void ct_clip_free(ct_clip *m);
/* Write m as a Hugging Face CLIP folder (config.json, preprocessor_config.json
 * with OpenAI's normalisation, model.safetensors in F32), creating dir if
 * needed; each file is written atomically. Tokenizer files are the
 * caller's to add. CT_ERR_UNSUPPORTED for a ResNet tower (Hugging Face's
 * CLIPModel has no such layout). */
ct_status ct_clip_save_hf(const ct_clip *m, const char *dir);
const ct_clip_config *ct_clip_get_config(const ct_clip *m);
/* CT_OK when m's image tower is a ViT; otherwise CT_ERR_UNSUPPORTED with
 * "<who> needs a ViT image tower (this model's is a ModifiedResNet, layers
 * ...)": for methods that insert tokens into the vision transformer. */
ct_status ct_clip_need_vit(const ct_clip *m, const char *who);
/* The precision of inference (no tape): CT_PRECISION_BF16 rounds the
 * weights of every transformer block and both projections once to bf16 and
 * runs their GEMMs on AVX512_BF16 (activations rounded to bf16 as they
 * enter a GEMM, sums in fp32; attention, LayerNorm and everything else stay
 * fp32): about twice the speed, embeddings within cosine 0.9999 of fp32
 * (docs/model.md). CT_ERR_UNSUPPORTED where the CPU lacks AVX512_BF16 (or
 * CLIPTUNE_ISA caps the path below AVX-512). Anything recorded on a tape
 * (training) uses the fp32 weights, and an optimizer step drops the bf16
 * copy of each weight it changes; weights written otherwise after this call
 * are seen only after calling it again. The model's hash (feature caches)
 * includes the precision. */
typedef enum { CT_PRECISION_F32 = 0, CT_PRECISION_BF16 = 1 } ct_precision;
ct_status ct_clip_set_precision(ct_clip *m, ct_precision p);
ct_precision ct_clip_get_precision(const ct_clip *m);
/* A content hash of the model: its configuration (activation included), every
 * weight and the precision. Feature caches key on it; a run records it and
 * refuses to be reloaded onto another model. */
uint64_t ct_clip_hash(const ct_clip *m);
/* Weights (batch norm running statistics, buffers, not counted). */
int64_t ct_clip_num_params(const ct_clip *m);
/* Every weight, by canonical name (OpenAI's names; q/k/v of a block as
 * "...attn.q_proj.weight" etc.). */
int ct_clip_num_tensors(const ct_clip *m);
ct_tensor *ct_clip_tensor_at(const ct_clip *m, int i, const char **name);
ct_tensor *ct_clip_find_tensor(const ct_clip *m, const char *name);
/* Fold LoRA deltas into m's weights: W += scale · B A for every projection
 * with a delta (loralib's merge; the dropout does not apply). vision / text
 * may be NULL. The merged model computes what the deltas computed at
 * evaluation, as a plain CLIP (ct_clip_save_hf writes it out). */
ct_status ct_clip_merge_lora(ct_clip *m, const ct_lora *vision, const ct_lora *text);

/* Deep prompts (VPT-deep, IVLP, MaPLe; the layout of MaPLe's clip/model.py):
 * tokens[l] (P, W) for l = 0 .. depth-1, any graph tensors (leaves, or
 * computed from other learnables as MaPLe's coupling functions do).
 *   vision: tokens[0] is appended after the class and patch tokens once the
 *     positional embedding is added (the prompts get none), before ln_pre;
 *     before block l = 1 .. depth-1 the last P tokens are replaced by
 *     tokens[l]; later blocks carry the last ones through;
 *   text: the layer-0 prompt is the caller's learned context in the token
 *     embeddings (positions 1 .. P); before block l = 1 .. depth-1 positions
 *     1 .. P are replaced by tokens[l] (tokens[0] is not read). */
typedef struct ct_deep_prompts {
    int depth;                /* 0: none                                  */
    ct_tensor *const *tokens; /* [depth], each (P, W), the same P          */
    /* vision only, VPT's layout (VPT-deep's and MVLPT's / UPT's code):
     * tokens[0] goes right after the class token once ln_pre has run, and
     * positions 1..P are replaced before blocks 1..depth-1 */
    bool after_cls;
    /* vision only, DPT's layout (fanrena/DPT trainers/DPT.py): tokens[0]
     * appended after the class and patch tokens once ln_pre has run (so
     * they skip ln_pre), the last P replaced before blocks 1..depth-1 */
    bool after_ln_pre;
} ct_deep_prompts;

typedef struct ct_clip_hooks {
    ct_layer_hook vision; /* layer -1: after positional embedding, before ln_pre */
    ct_layer_hook text;   /* layer -1: after positional embedding               */
    void *ctx;
    /* deep prompts, applied before the function hooks (NULL: none) */
    const ct_deep_prompts *vision_deep, *text_deep;
    /* LoRA deltas per block of each tower (NULL: none) */
    const ct_lora *vision_lora, *text_lora;
    /* Masked image modelling on a ViT tower (MUST's VisionTransformer_MIM,
     * SimMIM): the patch tokens of image b whose patch_mask[b * grid^2 + t]
     * is 1 are replaced by mask_token, x = x (1 - w) + mask_token w, after
     * the patch embedding and before the class token and the positional
     * embedding. Both set, or both NULL (none). mask_token (W) may require
     * grad; patch_mask (B, grid^2) holds 0 / 1, row-major over the grid. */
    ct_tensor *mask_token;
    const float *patch_mask;
} ct_clip_hooks;

/* With a ModifiedResNet tower (ct_clip_config.vision_resnet_layers) T is
 * grid^2 + 1 (the mean of the final feature map's vectors at 0, then the
 * grid row-major, as AttentionPool2d orders them) and W = 32 vision_width:
 * tokens is the attention pooling's input (positional embedding added),
 * dense and keys as ct_dense_kind says. Vision hooks, deep prompts and LoRA
 * need a ViT tower (an error otherwise). */
typedef struct ct_clip_image_out {
    ct_tensor *tokens; /* (B, T, W): last block's output, before ln_post            */
    ct_tensor *dense;  /* (B, T, E): ln_post + projection of every token (if asked) */
    ct_tensor *keys;   /* (B, T, W): CT_DENSE_VALUE only: the last block's keys     */
} ct_clip_image_out;

/* Which per-token features out->dense / ct_features.dense hold. ResNet
 * towers: CT_DENSE_TOKENS is the attention pooling with every token as a
 * query (PLOT's and CALIP's AttentionPool2d; token 0 is the pooled
 * embedding); CT_DENSE_VALUE is MaskCLIP's ResNet path (maskclip_head.py):
 * c_proj(v_proj(x)) of each token without the positional embedding, keys
 * k_proj(x). */
typedef enum ct_dense_kind {
    CT_DENSE_TOKENS = 0, /* ln_post + projection of the last block's output tokens */
    /* MaskCLIP's value path (Zhou et al., ECCV 2022; the official
     * mmseg/models/backbones/vit.py TransformerEncoderLayer.forward with
     * return_qkv): the last block run with every token attending to itself
     * only, h = ln_1 x, v' = x + out_proj(v_proj h), v'' = v' + mlp(ln_2 v'),
     * then ln_post + projection; keys = out_proj(k_proj h), as the official
     * passes q, k and v alike through out_proj (key smoothing reads them) */
    CT_DENSE_VALUE = 1,
    /* ResNet towers: the attention pool's value and output projections of
     * every token once the positional embedding is added, c_proj(v_proj(x +
     * pos)), the mean token at 0 (DualCoOp's AttentionConv, sunxm2357/
     * DualCoOp clip/model.py). A ViT has no attention pool: there it is
     * CT_DENSE_TOKENS. */
    CT_DENSE_POOL_VALUE = 2,
} ct_dense_kind;

/* pixels (B, 3, S, S) normalised; returns the projected embedding (B, E),
 * not normalised. out (may be NULL) receives token features; dense ones
 * only when want_dense. hooks may be NULL. */
ct_tensor *ct_clip_encode_image(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                                const ct_clip_hooks *hooks, bool want_dense,
                                ct_clip_image_out *out);
/* ct_clip_encode_image with out->dense (out required) of the given kind:
 * CT_DENSE_TOKENS as want_dense; CT_DENSE_VALUE MaskCLIP's value-path
 * features (B, T, E) and out->keys (B, T, W), every token (the class token
 * at 0; patches 1..grid^2 row-major), hooks and LoRA deltas applied as in
 * the ordinary pass. The pooled embedding returned is the ordinary one. */
ct_tensor *ct_clip_encode_image_kind(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                                     const ct_clip_hooks *hooks, ct_dense_kind kind,
                                     ct_clip_image_out *out);
/* Token embeddings (n, T, W) for ids (n, T), bounds-checked. */
ct_tensor *ct_clip_embed_tokens(ct_graph *g, const ct_clip *m, const int64_t *ids, int64_t n,
                                int64_t T);
/* EOT position of each row under the checkpoint's rule. */
ct_status ct_clip_eot_positions(const ct_clip *m, const int64_t *ids, int64_t n, int64_t T,
                                int64_t *pos);
/* From token embeddings (n, T, W) (T <= context_length) and EOT positions:
 * the projected text embedding (n, E), not normalised. Learnable vectors may
 * stand in for words (CoOp family). */
ct_tensor *ct_clip_encode_text_embeds(ct_graph *g, const ct_clip *m, ct_tensor *embeds,
                                      const int64_t *eot_pos, const ct_clip_hooks *hooks);
/* Many causal sequences that share their first P positions (the CoOp
 * family's prompts: [SOT, context] before each class name): the prefix
 * (1, P, W) token embeddings is encoded once and every tail attends to its
 * keys and values at each layer, which gives exactly the full sequences'
 * features at a fraction of the cost. Tail b holds n_b sequences of L_b
 * positions after the prefix (P + L_b <= context_length); last[i] is the
 * row of sequence i's EOT among the tail's n_b * L_b flattened positions.
 * Positional embeddings are added here. hooks->text_deep replaces prefix
 * positions 1 .. P' (P' + 1 <= P) before each deeper block; function hooks
 * are not supported. Returns the projected features (sum n_b, E), not
 * normalised, tails in order. */
typedef struct ct_text_tail {
    ct_tensor *embeds;    /* (n_b, L_b, W) */
    const int64_t *last;  /* (n_b)         */
} ct_text_tail;
ct_tensor *ct_clip_encode_text_shared(ct_graph *g, const ct_clip *m, ct_tensor *prefix,
                                      const ct_text_tail *tails, int n_tails,
                                      const ct_clip_hooks *hooks);
/* ids (n, T) -> (n, E). */
ct_tensor *ct_clip_encode_text(ct_graph *g, const ct_clip *m, const int64_t *ids, int64_t n,
                               int64_t T, const ct_clip_hooks *hooks);
/* ct_clip_encode_text with every position's features too: *tokens
 * receives ln_final + the text projection of each of the T positions
 * (n, T, E), not normalised (OpenAI's text tower up to the projection with
 * no EOT pooling: TaI-DPT's if_sequence=True, a caption's local features);
 * the return is the pooled embedding (n, E), row EOT of *tokens, equal to
 * ct_clip_encode_text's. NULL (error set) on failure, *tokens then NULL. */
ct_tensor *ct_clip_encode_text_tokens(ct_graph *g, const ct_clip *m, const int64_t *ids,
                                      int64_t n, int64_t T, const ct_clip_hooks *hooks,
                                      ct_tensor **tokens);
/* logit_scale.exp() * normalize(img) normalize(txt)^T: (B, K). */
ct_tensor *ct_clip_logits(ct_graph *g, const ct_clip *m, ct_tensor *img, ct_tensor *txt);
/* CLIP's pretraining objective for a batch of B matching pairs (img[i] is
 * described by txt[i]): logits = ct_clip_logits (B, B), loss =
 * (CE(logits, arange(B)) + CE(logitsᵀ, arange(B))) / 2 — the paper's
 * symmetric cross-entropy, open_clip's ClipLoss on one device. Gradients
 * reach img, txt and logit_scale. (Clamping logit_scale to ln 100 after each
 * optimiser step is the caller's, as in open_clip.) Scalar. */
ct_tensor *ct_clip_contrastive_loss(ct_graph *g, const ct_clip *m, ct_tensor *img,
                                    ct_tensor *txt);

/* ------------------------------------------------------------------------ */
/* A model for raw inputs                                                    */
/* ------------------------------------------------------------------------ */

/* CLIP with its tokenizer and image preprocessing: what the CLI's --model
 * loads. The simplest way in (and what the Python binding wraps). */
typedef struct ct_model ct_model;
/* path: a Hugging Face CLIP folder (its vocab.json + merges.txt and
 * preprocessor_config.json are used) or an OpenAI-named .safetensors (then
 * bpe names the tokenizer: bpe_simple_vocab_16e6.txt.gz, or a vocab.json
 * with merges.txt beside it; OpenAI's preprocessing). bpe may be NULL for an
 * HF folder; given, it overrides the folder's. gelu: the OpenAI layout's
 * activation (false: QuickGELU, as OpenAI's models; HF folders say theirs).
 * NULL on failure (ct_last_error()). */
ct_model *ct_model_load(const char *path, const char *bpe, bool gelu);
/* How to load: bpe as above (NULL: the folder's own); act NULL (the
 * checkpoint's: an HF folder's config.json, QuickGELU for OpenAI-layout
 * files), "quick_gelu" or "gelu" (for an HF folder only its own is
 * accepted: another would be silently ignored); need_tokenizer: fail when
 * there is none; precision: as ct_clip_set_precision. */
typedef struct ct_model_opts {
    const char *bpe, *act;
    bool need_tokenizer;
    ct_precision precision;
} ct_model_opts;
ct_model *ct_model_load_ex(const char *path, const ct_model_opts *opts);
void ct_model_free(ct_model *m);
/* The model's parts (owned by m): its CLIP (e.g. for ct_clip_set_precision),
 * its tokenizer (NULL when it has none) and its image preprocessing. */
ct_clip *ct_model_clip(ct_model *m);
ct_tokenizer *ct_model_tokenizer(ct_model *m);
const ct_preprocess_cfg *ct_model_preprocess(const ct_model *m);
/* What a run records to load it again: the absolute path, the tokenizer
 * override (NULL: the model's own), the activation ("quick_gelu" | "gelu")
 * and the content hash (ct_clip_hash). */
const char *ct_model_path(const ct_model *m);
const char *ct_model_bpe(const ct_model *m);
const char *ct_model_act(const ct_model *m);
uint64_t ct_model_hash(const ct_model *m);
/* The size of an embedding (E) and of the square input image. */
int ct_model_embed_dim(const ct_model *m);
int ct_model_image_size(const ct_model *m);
/* out (n, E): the projected, unnormalised embeddings of n image files
 * (decoded and preprocessed as the checkpoint's own library does), in
 * batches, without a tape. An unreadable image is an error naming it. */
ct_status ct_model_encode_images(ct_model *m, const char *const *paths, int n, float *out);
/* The same from preprocessed pixels (n, 3, S, S), S = ct_model_image_size. */
ct_status ct_model_encode_pixels(ct_model *m, const float *pixels, int n, float *out);
/* out (n, E) for n texts; a text longer than the context is an error unless
 * truncate (then its first tokens are kept and the last is <|endoftext|>). */
ct_status ct_model_encode_texts(ct_model *m, const char *const *texts, int n, bool truncate,
                                float *out);
/* Zero-shot: probs (n, k), the softmax over the k labels of logit_scale ·
 * cosine between each image and the label put in tmpl ("{}" replaced by the
 * label; NULL: "a photo of a {}."). */
ct_status ct_model_classify(ct_model *m, const char *const *paths, int n,
                            const char *const *labels, int k, const char *tmpl, float *probs);

/* ------------------------------------------------------------------------ */
/* Datasets (src/data)                                                       */
/* ------------------------------------------------------------------------ */

/* One labelled example: an image file (path relative to the dataset root, or
 * absolute) or, for in-memory datasets, an index into the pixel store. */
typedef struct ct_item {
    char *path;    /* NULL for in-memory items               */
    int64_t index; /* row of the pixel store (in-memory only) */
    int label;     /* 0 .. n_classes-1                        */
} ct_item;

typedef struct ct_pixel_store ct_pixel_store; /* shared, reference-counted */

/* A list of items over a class list. Datasets own their items and class
 * names; views made by the sampler and splitter are independent copies
 * (sharing the pixel store). */
typedef struct ct_dataset {
    char *name;          /* e.g. "fashion-mnist", "OxfordPets"             */
    char *root;          /* image root for relative paths ("" if none)      */
    int n_classes;
    char **classnames;   /* n_classes, human-readable ("t-shirt/top")       */
    int64_t n_items;
    ct_item *items;
    ct_pixel_store *pixels; /* in-memory images, or NULL                     */
    /* Multi-label datasets (voc:, coco:, mlcsv:, mljson:): (n_items,
     * n_classes) row-major, 1 present, 0 absent, -1 unknown (partial labels,
     * excluded from losses and metrics); NULL for single-label datasets.
     * Each item's label is then its lowest present class (0 when none is
     * present), used only to stratify splits and few-shot draws. */
    int8_t *targets;
    /* Semantic segmentation datasets (vocseg:, adeseg:, pcontextseg:,
     * pcontext60seg:): per item the label-map PNG path (relative to root like
     * item paths; ct_label_map_load_for reads it as metrics must), else
     * NULL. Mask values (after reduce_zero_label) are class indices, 255
     * void (ignored); items' labels are 0 and unused, targets NULL. Every
     * view carries the masks. */
    char **masks;
    /* Segmentation label maps whose value 0 is "other" and not a class
     * (adeseg:, pcontextseg:): mmsegmentation's reduce_zero_label. Read
     * through ct_label_map_load_for, value 0 becomes 255 (void) and every
     * other value v becomes v - 1 (255 stays void). Views carry it. */
    bool reduce_zero_label;
    /* Merged datasets (ct_dataset_merge): item i is item items[i].index of
     * source item_source[i] (items[i].path NULL); decoding, keys and views
     * go through the source. NULL for every other dataset. */
    struct ct_data_sources *sources;
    int *item_source;
} ct_dataset;

typedef struct ct_splits {
    ct_dataset *train, *val, *test; /* val may be NULL when the source has none */
} ct_splits;

/* Open a dataset from a spec string:
 *   folder:DIR            DIR/<class>/<images>; class names from folder names
 *                         ('_' and '-' -> ' ') unless DIR/classnames.txt;
 *                         split 80/10/10 per class by a fixed hash of the path
 *   coop:SPLIT.json@IMAGES  Dassl/CoOp split_zhou_*.json, paths under IMAGES
 *   csv:FILE@ROOT         lines "path,label" (label an integer or a class name;
 *                         optional header); FILE.val.csv / FILE.test.csv if present
 *   fashion-mnist[:DIR]   IDX files (default /usr/share/datasets/fashion-mnist);
 *                         val = a per-class, path-hash-chosen 10% of train
 *   digits[:FILE]         scikit-learn's 8x8 digits (digits.csv.gz, default where
 *                         python3-sklearn installs it); per class a fixed 50%
 *                         test, 10% val, the rest train
 *   npy:X.npy,Y.npy[,...] images as float32 in [0, 255] (or int64) shaped
 *                         (N, H, W[, C]) and int64 labels (N); 2, 4 or 6
 *                         files (split 80/10/10; train+test; train+val+test)
 * Multi-label forms (ct_dataset.targets set; paths relative to the root):
 *   voc:ROOT              PASCAL VOC 2007/2012: ImageSets/Main/{train,val,
 *                         test}.txt ids, Annotations/<id>.xml object names
 *                         (lowercased; <difficult>1 objects skipped, as
 *                         DualCoOp), JPEGImages/<id>.jpg; classes the sorted
 *                         <class> of ImageSets/Main/<class>_train.txt (else
 *                         the sorted object names); no test.txt: val.txt is
 *                         test and 10% of train is held out as val
 *   coco:ROOT             annotations/instances_{train,val[,test]}<YEAR>.json,
 *                         images in ROOT/<split><YEAR>, ROOT/images/<split><YEAR>
 *                         or ROOT/JPEGImages; classes the categories by id;
 *                         images without annotations left out (DualCoOp); no
 *                         test file: val is test, 10% of train held out as val
 *   mlcsv:TRAIN.csv[,VAL.csv],TEST.csv[@ROOT]  lines "path,labels", labels
 *                         ';'-separated class names, "?name" unknown (-1);
 *                         1 file: 80/10/10, 2: train+test, 3: train/val/test;
 *                         classes the sorted union of all names; ROOT
 *                         default: the first file's folder
 *   mljson:FILE[@ROOT]    {"classes": [...], "train": [{"path", "labels",
 *                         "unknown"}, ...], "val" (optional), "test"}
 * Semantic segmentation (ct_dataset.masks set, targets NULL):
 *   vocseg:ROOT           PASCAL VOC 2012 segmentation (or the scenes set):
 *                         ImageSets/Segmentation/{train,val,test}.txt ids,
 *                         JPEGImages/<id>.jpg, SegmentationClass/<id>.png;
 *                         classes "background" + the voc: class list
 *                         (ImageSets/Main/<class>_train.txt, else the lines
 *                         of classnames.txt): class c is mask value c, 255
 *                         void; no test.txt: val.txt is test and 10% of
 *                         train is held out as val
 *   adeseg:ROOT           ADE20K as mmsegmentation's ADE20KDataset reads
 *                         ADEChallengeData2016: images/{training,validation}/
 *                         *.jpg (every .jpg below, sorted), annotations/<same
 *                         path>.png; 150 classes (mmseg's names), map value 0
 *                         "other" (reduce_zero_label: void, v -> v - 1);
 *                         validation is test, 10% of training held out as val
 *   pcontextseg:ROOT      Pascal Context, 59 classes (PascalContextDataset59,
 *                         reduce_zero_label: 0 background is void), from a
 *                         VOCdevkit/VOC2010 folder as mmseg's converter writes
 *                         it: ImageSets/SegmentationContext/{train,val}.txt,
 *                         JPEGImages/<id>.jpg, SegmentationClassContext/<id>.png
 *                         (greyscale, 0 background, 1..59 the classes); val
 *                         is test, 10% of train held out as val
 *   pcontext60seg:ROOT    the same folder with 60 classes, background class 0
 *                         (PascalContextDataset; no reduction)
 * CoOp's folders as downloaded (docs/datasets.md, "CoOp's benchmark datasets";
 * ROOT holds classnames.txt, ImageNet's "wnid name" lines, for the first five):
 *   imagenet:ROOT         images/train/<wnid>/ (train), images/val/<wnid>/ (test),
 *                         no val; classes the train folders in byte order
 *   imagenetv2:ROOT       imagenetv2-matched-frequency-format-val/<i>/: folder i
 *                         is class i of classnames.txt (not string order)
 *   imagenet-sketch:ROOT  images/<wnid>/
 *   imagenet-a:ROOT       imagenet-a/<wnid>/ (200 of ImageNet's classes)
 *   imagenet-r:ROOT       imagenet-r/<wnid>/ (200 of ImageNet's classes)
 *                         (the four variants are test sets: train = test, as CoOp)
 *   fgvc-aircraft:ROOT    variants.txt (the classes), images_variant_{train,val,
 *                         test}.txt ("<id> <variant>" lines), images/<id>.jpg
 * voc, vocseg, mlcsv and mljson read '_' in class names as a space unless a
 * classnames.txt (ROOT; beside the first CSV; beside FILE) names them.
 * Sources without a val split hold out a fixed, hash-chosen 10% per class
 * (docs/datasets.md). An optional classnames.txt ("wnid name" or one name
 * per line) overrides folder names. Every failure names the file and
 * line/field. */
ct_status ct_data_open(const char *spec, ct_splits *out);
/* spec with every relative path in it made absolute (resolved against the
 * working directory), for records such as config.json that are read again
 * from elsewhere; named datasets and unknown specs are copied as they are. */
ct_status ct_data_spec_absolute(const char *spec, char *out, size_t n);
/* A dataset from arrays in memory (bindings: numpy in): n images of h x w
 * pixels with c channels (1 grey or 3 RGB), uint8, row-major (n, h, w, c);
 * labels in [0, n_classes); classnames NULL (or an entry NULL): "0", "1",
 * ... Split as the npy spec: a fixed, hash-chosen 10% val and 10% test per
 * class. The pixels are copied. */
ct_status ct_data_from_arrays(const char *name, const uint8_t *images, int64_t n, int h, int w,
                              int c, const int *labels, int n_classes,
                              const char *const *classnames, ct_splits *out);
void ct_splits_free(ct_splits *s);
void ct_dataset_free(ct_dataset *d);
/* A semantic segmentation label map: an 8-bit (or 1/2/4-bit) palette PNG,
 * whose palette indices are the labels (VOC, the scenes set), or a
 * greyscale PNG of up to 8 bits, whose raw values are (ADE20K, Pascal
 * Context). The palette is never applied. *out is a malloc'ed (h, w)
 * row-major plane of labels (free() it). Refused with the file named: not
 * a PNG, truncated or corrupt, 16-bit, RGB or RGBA ("an RGB label map:
 * convert it to palette indices"), grey + alpha, sides above
 * CT_IMAGE_MAX_SIDE or more than CT_IMAGE_MAX_PIXELS pixels. On failure
 * *out is NULL and *w = *h = 0. */
ct_status ct_label_map_load(const char *path, int *w, int *h, uint8_t **out);
/* Item i's label map as metrics must read it: ct_label_map_load of
 * d->masks[i] (relative to d->root), d->reduce_zero_label applied, then
 * checked against the dataset, with the files named: its size must be the
 * image's (img_w x img_h when both > 0, e.g. from ct_dataset_image;
 * otherwise item i's image is decoded here to learn it), and every value
 * must be a class (< d->n_classes) or 255 (void, CT_SEG_IGNORE_DEFAULT).
 * *out is (h, w) row-major, malloc'ed (free() it); on failure NULL. */
ct_status ct_label_map_load_for(const ct_dataset *d, int64_t i, int img_w, int img_h, int *w,
                                int *h, uint8_t **out);
/* True if name ends in an image extension the decoders read and folder
 * datasets pick up (.jpg .jpeg .png .bmp .gif .ppm .pgm .pbm .pnm .tif
 * .tiff .webp, any case; torchvision's list plus the other PNM kinds). */
bool ct_data_is_image_name(const char *name);
/* Decode item i as RGB (files through ct_image semantics; in-memory grey
 * images expanded to RGB). out is a ct_image (src/model/image.h). */
ct_status ct_dataset_image(const ct_dataset *d, int64_t i, ct_image *out);
/* Items i0 .. i0 + n - 1 of d as model input: decoded and transformed by
 * the model's preprocessing (evaluation transform) into px (n, 3, size,
 * size), in parallel; the first failing item's error (naming its file) is
 * returned. */
ct_status ct_dataset_pixels(const ct_dataset *d, const ct_preprocess_cfg *pre, int size,
                            int64_t i0, int64_t n, float *px);
/* A stable identity of item i for caches: path relative to root, or
 * "<pixel store>#<row>" (e.g. "fashion-mnist/test#5") for in-memory items.
 * NULL (error set) when it does not fit in buf. */
const char *ct_dataset_item_key(const ct_dataset *d, int64_t i, char *buf, size_t n);

/* Few-shot subset: k items per class drawn without replacement (all when a
 * class has fewer), deterministic in (dataset, k, seed) as Dassl's
 * generate_fewshot_dataset. For val, Dassl uses min(k, 4). */
ct_dataset *ct_dataset_fewshot(const ct_dataset *d, int k, uint64_t seed);
/* A copy of d's first n items in order (n <= 0 or >= n_items: all): the
 * evaluation subsets of --max-test. */
ct_dataset *ct_dataset_head(const ct_dataset *d, int64_t n);
/* n items drawn at random without replacement, whatever their class, kept
 * in d's order; deterministic in (d, n, seed). n <= 0 or >= n_items: all. */
ct_dataset *ct_dataset_sample(const ct_dataset *d, int64_t n, uint64_t seed);
/* Partial labels (DualCoOp's -pp setting): a copy of the multi-label
 * dataset d in which each known (image, class) label stays known with
 * probability portion and becomes unknown (-1) otherwise, independently,
 * deterministic in (d, portion, seed). portion >= 1 keeps every label. An
 * error for a single-label dataset or portion <= 0. */
ct_dataset *ct_dataset_partial_labels(const ct_dataset *d, double portion, uint64_t seed);
/* One single-label dataset over several (multi-task runs of pixel methods,
 * ct_mt_run): parts[t]'s classes follow parts[t-1]'s (part t owns classes
 * off[t] .. off[t + 1] - 1, off[t] the sum of the earlier parts' class
 * counts), its items follow in order with labels shifted by off[t], and each
 * item decodes (ct_dataset_image) to the very image of its part. The parts
 * are copied (their pixel stores shared); views of the result (few-shot,
 * head) stay merged. name NULL: the parts' names joined by '+'. An error for
 * multi-label or segmentation parts. */
ct_dataset *ct_dataset_merge(const ct_dataset *const *parts, int n, const char *name);
/* Base-to-novel: classes sorted by label, the first ceil(n/2) are base;
 * which = 0 keeps base, 1 keeps novel; labels renumbered from 0. */
ct_dataset *ct_dataset_subsample_classes(const ct_dataset *d, int which);

/* The scenes demonstration set (src/data/scenes.c; docs/datasets.md, "The
 * scenes demonstration set"): multi-label classification and semantic
 * segmentation scenes built from Fashion-MNIST and written in the real
 * PASCAL VOC and COCO formats. A scene is canvas x canvas RGB on black with
 * a 2x2 grid of cells; 1-3 items (uniform), each a random Fashion-MNIST
 * image of a uniformly random class (classes may repeat), tinted with a
 * random colour, in distinct random cells. Train scenes draw their items
 * from Fashion-MNIST's train split less the fashion-mnist spec's 10% val
 * holdout, val scenes from that holdout, test scenes from t10k: no image is
 * in two splits. Scene k of a split depends only on (seed, split, k). */
typedef struct ct_scenes_cfg {
    const char *fashion_mnist_dir; /* IDX files; NULL: /usr/share/datasets/fashion-mnist */
    int n_train, n_val, n_test;    /* scenes per split (>= 0; at most 999999 in all)      */
    uint64_t seed;
    int canvas;                    /* side in pixels, 56 .. 1024 (cells canvas/2 wide)   */
} ct_scenes_cfg;

/* Defaults: Fashion-MNIST's default folder, 2000 / 200 / 1000 scenes, seed
 * 0, canvas 56. */
ct_scenes_cfg ct_scenes_cfg_default(void);
/* Generate the set into out_dir (created if needed; every file written
 * atomically; nothing written outside it): JPEGImages/, Annotations/,
 * ImageSets/{Main,Segmentation}/, SegmentationClass/ (VOC2007/2012 layout),
 * annotations/instances_{train,val,test}.json (COCO), labels_{train,val,
 * test}.csv, classnames.txt and README.txt. The same cfg gives
 * byte-identical files. Files of an earlier, larger run in out_dir are not
 * removed (the split lists and COCO files name only this run's). Bad sizes
 * or canvas, and missing or malformed Fashion-MNIST files, are errors
 * naming the value or the file. */
ct_status ct_data_make_scenes(const ct_scenes_cfg *cfg, const char *out_dir);

/* ------------------------------------------------------------------------ */
/* Features, methods and the trainer (src/train, src/methods)                */
/* ------------------------------------------------------------------------ */


/* Image features of a dataset under one view (view 0: the evaluation
 * transform; views 1..: augmented training views), cached on disk. */
typedef struct ct_features {
    int64_t n;
    int dim;
    float *x;      /* (n, dim) projected image embeddings, not normalised      */
    int *labels;   /* (n)                                                     */
    int n_tokens;  /* T when dense features were asked for, else 0             */
    float *dense;  /* (n, T, dim): ln_post + projection of every token, or NULL */
    int8_t *targets; /* (n, K) multi-label targets (ct_dataset.targets), or NULL */
    /* dense_kind CT_DENSE_VALUE: dense holds MaskCLIP's value-path features
     * and dense_keys (n, T, key_dim) the last block's keys; else NULL, 0 */
    ct_dense_kind dense_kind;
    int key_dim;
    float *dense_keys;
} ct_features;

/* Everything a method may use: the frozen model, its tokenizer and
 * preprocessing, the class names, and the data it trains/selects on. */
typedef struct ct_task {
    ct_clip *clip;
    ct_tokenizer *tok;
    const ct_preprocess_cfg *pre;
    const char *dataset_name;      /* for per-dataset templates      */
    int n_classes;
    char *const *classnames;
    const ct_dataset *train;       /* few-shot training set          */
    const ct_dataset *val;         /* model selection only; may be NULL */
    const ct_features *train_feats;/* view-0 features of train        */
    const ct_features *val_feats;  /* view-0 features of val, or NULL  */
    const ct_features *aug_feats;  /* augmented views of train, or NULL (n = views * train) */
    /* The whole training split as unlabelled data, for methods that set
     * wants_unlabelled (else NULL): its view-0 features, with .labels NULL;
     * the dataset's item labels must not be read either (UPL's setting). */
    const ct_dataset *unlabelled;
    const ct_features *unlabelled_feats;
    const char *cache_dir;
    uint64_t seed;
    /* For methods that work on pixels, slowly (per-image test-time tuning,
     * end-to-end fine-tuning): stage progress (same as ct_train_cfg.progress;
     * loss and lr NaN when they mean nothing), log lines, and the run
     * directory for extra outputs (NULL when the caller keeps none; it
     * exists by the time fit runs). Each may be NULL. */
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    const char *run_dir;
    /* Multi-task runs (ct_mt_run): the classes are the tasks' class lists
     * one after another; task t is named task_names[t] (its dataset's name)
     * and owns classes task_offsets[t] .. task_offsets[t + 1] - 1
     * (task_offsets[n_tasks] = n_classes). n_tasks 0: a single task (a
     * multi-task method then treats all classes as one task named
     * dataset_name). */
    int n_tasks;
    char *const *task_names;
    const int *task_offsets;
    /* the class taxonomy of a hierarchy run (ct_run_cfg.taxonomy; its leaves
     * are classnames, in order), borrowed: it outlives the state; NULL for
     * a flat run. Methods with .taxonomy train with it (ProTeCt). */
    const struct ct_taxonomy *taxonomy;
} ct_task;

/* A mini-batch: features (frozen-feature methods) or preprocessed images
 * (pixel methods), and labels (NULL when scoring). */
typedef struct ct_batch {
    int64_t n;
    const float *x;      /* (n, dim) features; NULL for pixel methods          */
    const int *labels;
    const float *pixels; /* (n, 3, S, S) normalised images (pixel methods), else NULL */
    uint64_t seed;       /* training: a stream for the step's randomness (dropout),
                          * a function of (run seed, epoch, batch); 0 when scoring */
    int epoch;           /* training: the epoch (0-based), for losses that change
                          * with it (DPT's guidance phase); -1 when scoring */
    const float *frozen; /* (n, E): the frozen model's image embeddings of these
                          * pixels (not normalised) when already known — the
                          * evaluation transform's, computed once through the
                          * feature cache (methods with frozen_features); NULL:
                          * the method computes them */
    const int8_t *targets; /* (n, K) multi-label targets (1, 0, -1 unknown) when
                          * the task is multi-label, else NULL */
    const float *dense;  /* (n, T, dim): the per-token features of these images
                          * (ct_features.dense) for methods with dense_features
                          * when the features carry them (ct_train, ct_predict);
                          * else NULL */
    int n_tokens;        /* T when dense is set, else 0 */
    const int *tasks;    /* (n) multi-task training (ct_task.n_tasks > 0): each
                          * item's task, the one owning its label (ct_train
                          * sets it); else NULL */
    const uint8_t *masks; /* (n, S, S) segmentation training (the task's train
                          * set has label maps, a pixel method): each image's
                          * label map through the same geometry as its pixels
                          * (resize, crop, flip), class indices or 255 where
                          * ignored (void, padding); else NULL */
    const float *pixels_plain; /* (n, 3, S, S): training, methods with plain_view:
                          * the same images under the evaluation transform
                          * (the weak view of self-training teachers); else
                          * NULL */
} ct_batch;

/* Hyper-parameters as "key=value" text, parsed by the method (unknown keys
 * are errors naming the key). */
typedef struct ct_kv {
    int n;
    char **keys, **vals;
    bool *used; /* read by a getter */
} ct_kv;

typedef struct ct_method {
    const char *name, *category, *setup, *paper;
    /* default hyper-parameters, "key=value" separated by spaces */
    const char *defaults;
    ct_status (*create)(const ct_task *task, const ct_kv *hp, void **state);
    void (*destroy)(void *state);
    /* learnable tensors (leaves with requires_grad); 0 for training-free */
    int (*params)(void *state, ct_tensor **out, int cap);
    /* scalar training loss of a batch (NULL if the method does not train
     * by gradient descent) */
    ct_tensor *(*loss)(void *state, ct_graph *g, const ct_batch *b);
    /* class scores (n, K) of a batch */
    ct_tensor *(*logits)(void *state, ct_graph *g, const ct_batch *b);
    /* optional: training-free fitting or a special loop, run instead of
     * (or before) gradient training */
    ct_status (*fit)(void *state, const ct_task *task);
    /* optional: after backward, before the optimiser step (gradient
     * surgery) */
    ct_status (*before_step)(void *state, ct_graph *g, const ct_batch *b);
    /* optional: after gradient training and epoch selection (e.g. a final
     * hyper-parameter search on val) */
    ct_status (*finish)(void *state, const ct_task *task);
    /* the task's features carry dense per-token features too (ct_features
     * .dense: MaskCLIP, CALIP, PLOT-style methods); ct_train and ct_predict
     * hand each batch its rows of them (ct_batch.dense) */
    bool dense_features;
    /* optional: class scores (n, K) of whole features, used by ct_predict
     * instead of logits: methods that need more than the pooled features
     * (f->dense for CALIP) */
    ct_status (*predict_features)(void *state, const ct_features *f, float *scores);
    /* learned tensors whose size depends on the training data (a cache of
     * training features): reloading a run takes their shapes from the saved
     * file instead of requiring create() to have sized them */
    bool learned_shapes_from_file;
    /* the features are the images' pixels after the evaluation transform,
     * flattened (3*S*S), not CLIP embeddings: model-free baselines */
    bool raw_pixels;
    /* the task needs unlabelled / unlabelled_feats (ct_run computes the
     * features of the whole training split); a pixel method that also sets
     * trains_unlabelled trains on those images instead of train's */
    bool wants_unlabelled;
    /* optional: the labelled set gradient training iterates instead of the
     * task's train / augmented features (pseudo-labelled methods); called
     * after fit, owned by the state and valid until the next fit; its
     * labels are used, and its dense features when it has them and the
     * method has dense_features */
    const ct_features *(*train_set)(void *state);
    /* optional: score the images of d directly into scores (d->n_items, K),
     * for test-time methods and methods that change the image tower, whose
     * predictions cached features cannot give; ct_run and `cliptune eval` /
     * `predict` call it instead of ct_predict on features. task is the one
     * the state was created with (its progress/log callbacks may be set). */
    ct_status (*predict_images)(void *state, const ct_task *task, const ct_dataset *d,
                                float *scores);
    /* the method trains and scores on pixels (visual prompts, LoRA in the
     * image tower, deep vision prompts): ct_train iterates batches of
     * task->train's images under the training transform (hyper-parameters
     * train_aug, aug_scale_min) with ct_batch.pixels set and .x NULL, and
     * selects on val's images; ct_predict_images scores a dataset's images
     * through logits. Cached features are not used. */
    bool pixels;
    /* a pixel method that also runs the frozen tower on its pixels (DPT's
     * class selection, PromptSRC's regularisers): ct_predict_images, and
     * ct_train when the training transform is the evaluation one
     * (train_aug=none), hand it ct_batch.frozen from the feature cache, so
     * that work is done once per image instead of once per step and cell */
    bool frozen_features;
    /* optional: fold the learned weights into clip (a fresh copy of the
     * task's model), so that the plain model predicts as the method does up
     * to a positive logit scale (CLIP-LoRA's merged weights; `cliptune
     * export`). NULL: the method cannot be expressed as plain weights. */
    ct_status (*merge)(void *state, ct_clip *clip);
    /* optional: after the steps of epoch (0-based) of epochs, before
     * validation and the checkpoint (epoch-level averaging such as
     * PromptSRC's Gaussian prompt aggregation; state it keeps across epochs
     * belongs in params() as frozen tensors, so checkpoints carry it) */
    ct_status (*end_epoch)(void *state, int epoch, int epochs);
    /* optional: the names of params()'s tensors, in the same order and
     * unique: the keys of a run's learned.safetensors, the official repos'
     * own state-dict names where they exist, relative to the module the
     * official trainer saves ("ctx", "meta_net.linear1.weight", CLIP-Adapter's
     * "fc.0.weight", MaPLe's "prompt_learner.ctx"). Returns the count
     * (params()'s). NULL: "param.<i>". Runs saved under "param.<i>" still
     * load. */
    int (*param_names)(void *state, const char **out, int cap);
    /* the method learns from multi-label targets (ct_batch.targets; DualCoOp):
     * ct_run gives multi-label datasets only to these and to methods that
     * neither fit nor train (zero-shot), never a single "lowest class" label */
    bool multi_label;
    /* with dense_features: which per-token features (CT_DENSE_VALUE:
     * MaskCLIP's value path, with ct_features.dense_keys) */
    ct_dense_kind dense_kind;
    /* optional, segmentation: class scores of every patch of f's images
     * into scores (f->n, P, K), P = f->n_tokens - 1 patches (the class
     * token first, then the g x g grid row-major). The method labels
     * pixels: ct_run and saved runs give it segmentation datasets, computing
     * f with the segmentation geometry (ct_seg_preprocess: the whole image
     * resized to the model's input, so the grid covers it) and upsampling
     * the scores bilinearly to each label map (ct_seg_upsample_argmax). */
    ct_status (*predict_patches)(void *state, const ct_features *f, float *scores);
    /* the method learns several tasks jointly (SoftCPT): it reads
     * ct_task.n_tasks / task_names / task_offsets and ct_batch.tasks, and
     * ct_mt_run trains only these (it scores training-free methods without
     * a fit step too, as baselines) */
    bool multi_task;
    /* the method trains with the task's class taxonomy (ct_task.taxonomy):
     * ct_run refuses to train it without one (ProTeCt). A state created
     * without one scores the task's classes as flat (that is how a run's
     * node scores and base-to-novel states are made). */
    bool taxonomy;
    /* the method labels pixels from images (DenseCLIP): a pixel method whose
     * logits on a batch of images are per-pixel class scores (n, K, H, W)
     * on its own output grid. ct_run trains it on segmentation datasets
     * through the trainer's pixel path (ct_batch.masks), and segmentation
     * evaluation feeds it the images under ct_seg_preprocess's geometry,
     * upsampling the (H, W) scores bilinearly to each label map, instead of
     * predict_patches on features. */
    bool seg_pixels;
    /* pixel methods: ct_train hands each batch its images under the
     * evaluation transform too (ct_batch.pixels_plain) next to the training
     * transform's (MUST: the EMA teacher's weak view) */
    bool plain_view;
    /* optional: after each optimiser step of ct_train (an EMA teacher's
     * update, MUST); state it keeps belongs in params() as frozen tensors,
     * so checkpoints carry it */
    ct_status (*after_step)(void *state, const ct_batch *b);
    /* pixel methods with wants_unlabelled that learn without labels (MUST):
     * ct_train iterates task->unlabelled's images instead of train's, their
     * labels hidden (ct_batch.labels all -1). Without it a method that wants
     * unlabelled images (SVL-Adapter's self-supervised stage in fit) still
     * trains on the labelled training split. */
    bool trains_unlabelled;
} ct_method;

/* Hyper-parameters: parse "k=v k2=v2" (later keys override earlier ones);
 * typed getters mark a key used and fail naming the key and value when it
 * does not parse; ct_kv_check_used fails naming the first key nobody read. */
ct_status ct_kv_parse(ct_kv *kv, const char *text);
/* A value holding spaces, commas or quotes is written key="...", with \" and
 * \\ inside: ct_kv_append(&text, "key=value") appends " key=value" to a
 * malloc'd (or NULL) *text, quoting the value when it needs it, so that
 * ct_kv_parse gives back exactly that value. ct_kv_item steps over one item
 * ("key=value" with its quotes) from p, setting *end past it; NULL when no
 * item is left. */
ct_status ct_kv_append(char **text, const char *key_value);
/* kv as "k=v k2=v2" text (values quoted as ct_kv_append quotes them) into a
 * malloc'd *out ("" for no keys); what config.json and learned files record. */
ct_status ct_kv_to_text(const ct_kv *kv, char **out);
const char *ct_kv_item(const char *p, const char **end);
ct_status ct_kv_set(ct_kv *kv, const char *key, const char *val);
void ct_kv_free(ct_kv *kv);
ct_status ct_kv_double(ct_kv *kv, const char *key, double def, double *out);
ct_status ct_kv_int(ct_kv *kv, const char *key, int def, int *out);
ct_status ct_kv_str(ct_kv *kv, const char *key, const char *def, const char **out);
ct_status ct_kv_check_used(const ct_kv *kv, const char *ctx);

/* Generic training over frozen image features. */
#define CT_MAX_PARAM_GROUPS 4
typedef struct ct_train_cfg {
    int epochs, batch_size;
    int64_t iters;          /* > 0: stop after this many steps in total (the last
                             * epoch may be partial; the schedule still steps per
                             * epoch, over the epochs the steps span)          */
    ct_optim_config optim;
    ct_sched_config sched;
    double max_grad_norm;   /* 0: no clipping                                    */
    bool select_best_val;   /* keep the epoch with the best val accuracy (else last) */
    bool cycle_views;       /* with augmented views: epoch e trains on view e mod V
                             * only (a fresh augmentation per epoch, as the
                             * official codes do); else every view every epoch */
    int checkpoint_every;   /* epochs between checkpoints (the last one always)  */
    /* sched=cosine_step: the learning rate per step instead of per epoch,
     * open_clip's cosine_lr (ct_sched_step_cosine) with warmup_steps linear
     * warmup steps over the run's steps (VP, CLIP-LoRA, WiSE-FT) */
    bool step_sched;
    int64_t warmup_steps;
    /* > 0: iters = iters_per_shot x shots (the training images per class,
     * rounded up), CLIP-LoRA's 500 x shots */
    int iters_per_shot;
    /* > 0: warmup_steps = round(warmup_fraction x the run's steps) (WiSE-FT) */
    double warmup_fraction;
    /* pixel methods: the training transform (train_aug rrc_flip | rrc | none,
     * random-resized-crop scale from aug_scale_min; src/data/pixels.h) */
    const char *train_aug;
    double aug_scale_min;
    /* parameter groups (keys "<prefix>.lr", "<prefix>.warmup_epochs",
     * "<prefix>.warmup_lr", "<prefix>.warmup_type"): the learnable tensors
     * named prefix or "prefix.*" follow their own schedule, the others the
     * main one; as Dassl trainers that build one optimiser per module (DPT:
     * the CoOp context at lr 0.002 with 1 warmup epoch, the visual prompts at
     * 0.01 with 10). The optimiser's kind, momentum and decay are shared. */
    int n_groups;
    struct ct_param_group {
        char prefix[48];
        ct_sched_config sched;
    } groups[CT_MAX_PARAM_GROUPS];
    uint64_t seed;
    const char *run_dir;    /* checkpoint.safetensors + checkpoint.json; NULL: none */
    bool resume;            /* continue from run_dir's checkpoint                  */
    int stop_after;         /* > 0: stop (checkpointed) once this many epochs are
                             * done, to train in resumable chunks; 0: to the end */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* per step: step (1-based) of total in this run, its loss and lr */
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} ct_train_cfg;

/* Trainer keys read from hp (method defaults + user overrides): epochs,
 * batch_size, optim (sgd|adam|adamw), lr, momentum, weight_decay, eps (Adam),
 * sched (cosine|constant|cosine_step), warmup_epochs, warmup_type
 * (constant|linear), warmup_lr, warmup_steps or warmup_fraction (cosine_step), min_lr (the
 * cosine's floor), max_grad_norm, select (last|best_val), views (all|cycle),
 * checkpoint_every, iters (train by steps instead of epochs), iters_per_shot,
 * train_aug and aug_scale_min (pixel methods), and per parameter group
 * "<prefix>.lr" / ".warmup_epochs" / ".warmup_lr" / ".warmup_type". */
ct_status ct_train_cfg_from_kv(ct_kv *hp, ct_train_cfg *cfg);
/* Run m's fit (if any) and its gradient training (if it has a loss). Each
 * epoch visits the features of train (or of the augmented views when the
 * task has them, or m->train_set's set when m has that hook; fit runs
 * again on resume) in a seeded order; the state after every epoch is
 * checkpointed atomically, and resume continues bit-for-bit. */
ct_status ct_train(const ct_method *m, void *state, const ct_task *task,
                   const ct_train_cfg *cfg, ct_kv *hp);
/* Class scores (n, K) for features f. */
ct_status ct_predict(const ct_method *m, void *state, const ct_features *f, float *scores);
/* Whether m scores images rather than cached features (it has
 * predict_images, or is a pixel method). */
bool ct_method_scores_images(const ct_method *m);
/* Class scores (d->n_items, K) of d's images for such a method: its
 * predict_images, or, for a pixel method, logits over batches of the
 * images under the evaluation transform. */
ct_status ct_predict_images(const ct_method *m, void *state, const ct_task *task,
                            const ct_dataset *d, float *scores);

/* Registry: every method, by name. */
int ct_method_count(void);
const ct_method *ct_method_at(int i);
const ct_method *ct_method_find(const char *name);

/* ------------------------------------------------------------------------ */
/* Metrics (src/train/metrics.c)                                             */
/* ------------------------------------------------------------------------ */

/* Single-label classification metrics with the semantics of the references
 * the papers report against: top-1 / top-k as torch.argmax / torch.topk
 * (ties go to the lower class index); macro-F1 as sklearn's
 * f1_score(average='macro', zero_division=0); ECE as Guo et al. 2017 (B
 * equal-width bins over the max softmax probability); NLL the mean
 * -log p(label). Rates are fractions in [0, 1]. */
#define CT_ECE_BINS_DEFAULT 15

typedef struct ct_metrics {
    int n_classes;
    int64_t n;
    double top1, top5; /* top5 is top-min(5, K) */
    double macro_f1;
    double ece;
    int ece_bins;      /* the bin count the ECE was computed with */
    double nll;        /* +inf if a given probability of a label is 0 */
    double *per_class_acc; /* K; NaN for a class with no samples */
    /* K; NaN for a class with neither samples nor predictions (excluded from
     * macro_f1, as in sklearn); 0 for a class never predicted. */
    double *per_class_f1;
    int64_t *confusion; /* K*K, row-major [true][pred] */
    /* hierarchy runs: ProTeCt's metrics (ct_hier_metrics), filled by ct_run
     * and ct_saved_run_evaluate when the run has a taxonomy and written to
     * metrics.json ("hierarchy") and the report; ct_metrics_compute leaves
     * hierarchy false and these zero */
    bool hierarchy;
    double leaf_acc, hca, mta;
    int n_cuts;
    const char *node_scores_from; /* "prompts" or "class probabilities" (static) */
} ct_metrics;

/* Metrics of scores (n, K), row-major: logits (softmax is taken in double) or
 * probabilities (used as given; each row must lie in [0, 1] and sum to 1
 * within 1e-3, which catches logits passed as probabilities). Scores must be
 * finite; labels in [0, K). n >= 1, K >= 1; ece_bins <= 0: the default. On
 * failure *out is left zeroed (ct_metrics_free-safe). */
ct_status ct_metrics_compute(const float *scores, bool are_probs, const int *labels, int64_t n,
                             int K, int ece_bins, ct_metrics *out);
/* Free the arrays and zero *m (NULL ok). */
void ct_metrics_free(ct_metrics *m);
/* CoOp's base-to-novel harmonic mean 2bn / (b + n); 0 when both are 0. */
double ct_harmonic_mean(double base, double novel);
/* Mean and population standard deviation (ddof = 0, as CoOp's
 * parse_test_res.py reports over seeds). NaN entries are missing runs and
 * are skipped; with no values both results are NaN. */
void ct_mean_std(const double *v, int n, double *mean, double *std);

/* Multi-label classification metrics. Scores (n, K) are logits or
 * probabilities; only their order matters, and for the threshold metrics a
 * class is predicted when sigmoid(score) >= thresh (logits, sigmoid in
 * double) or score >= thresh (probabilities). Targets (n, K): 1 present, 0
 * absent, -1 unknown; an unknown (image, class) pair is left out of every
 * metric (the AP ranking of that class, every count below). The class means
 * (map, map_voc07, cp..., cp3...) are over the classes with at least one
 * known positive; n_pos_classes counts them. Rates are fractions in [0, 1]
 * (the references print percent). Each metric follows:
 *
 *   ap, map    sklearn average_precision_score: sum_t (R_t - R_{t-1}) P_t
 *              over the distinct scores t, so tied scores are one threshold
 *              and the value does not depend on the order of the images.
 *              DualCoOp (utils/helper.py mAP, ASL's average_precision)
 *              reports mean_i precision@rank(i) over the positives of a
 *              sorted column: the same number when a class's scores have no
 *              ties, times P/(P + 1e-8) for its epsilon, with ties broken by
 *              numpy's unstable argsort; it also averages over every class
 *              (a class without positives counts 0). ML-GCN's
 *              AveragePrecisionMeter (difficult_examples=True) is that sum
 *              without the epsilon, difficult (0) targets left out.
 *   map_voc07  VOC devkit VOCevalcls / py-faster-rcnn voc_ap(use_07_metric):
 *              the mean over t = 0, 0.1, ..., 1 (k * 0.1, as np.arange) of
 *              the highest precision at recall >= t (0 if none), the curve
 *              taken at the distinct scores as above (VOCevalcls steps
 *              through tied scores one image at a time).
 *   cp cr cf1  ML-GCN util.py evaluation(): per class Nc (true positives),
 *   op or_ of1 Np (predicted), Ng (positives); CP = mean Nc/Np (0 for a
 *              class never predicted), CR = mean Nc/Ng, CF1 = 2 CP CR /
 *              (CP + CR); OP = sum Nc / sum Np (0 when nothing is
 *              predicted; ML-GCN divides by sum max(Np, 1)), OR = sum Nc /
 *              sum Ng, OF1 = 2 OP OR / (OP + OR). An F1 of P = R = 0 is 0.
 *              DualCoOp's validations.py validate() reports the same OP, OR
 *              and OF1 (it thresholds with sigmoid > thre, strictly) but
 *              its F_C is the mean of per-class F1s, not CF1.
 *   ...3       the same counts with the top_k = min(3, K) highest-scoring
 *              classes of each image as its predictions (torch.topk order:
 *              ties go to the lower class index), no threshold: op3, or3
 *              and of13 are DualCoOp's calc_F1(k = 3) (utils/helper.py). A
 *              top-k class whose target is unknown counts nowhere.
 *
 * On success every headline field is finite: at least one known positive
 * is required (otherwise nothing here is defined). */
#define CT_ML_THRESH_DEFAULT 0.5

typedef struct ct_ml_metrics {
    int n_classes;
    int64_t n;
    int n_pos_classes; /* classes with >= 1 known positive: the class means' set */
    double map;        /* mean of ap over those classes */
    double map_voc07;  /* VOC2007 11-point interpolated AP, mean over the same */
    double cp, cr, cf1, op, or_, of1;      /* at thresh */
    double cp3, cr3, cf13, op3, or3, of13; /* top-k, k = top_k */
    int top_k;         /* min(3, K) */
    double thresh;     /* the threshold used, in probability */
    double *ap;        /* K: per-class AP, NaN for a class with no known positive */
} ct_ml_metrics;

/* Multi-label metrics of scores (n, K) row-major and targets (n, K) in
 * {-1, 0, 1}, at threshold thresh in (0, 1) (CT_ML_THRESH_DEFAULT: DualCoOp's
 * and ML-GCN's 0.5). Scores must be finite, and in [0, 1] when are_probs.
 * n >= 1, K >= 1. On failure *out is left zeroed (ct_ml_metrics_free-safe). */
ct_status ct_ml_metrics_compute(const float *scores, bool are_probs, const int8_t *targets,
                                int64_t n, int K, double thresh, ct_ml_metrics *out);
/* Free ap and zero *m (NULL ok). */
void ct_ml_metrics_free(ct_ml_metrics *m);
/* Semantic segmentation metrics with mmsegmentation's semantics (0.x
 * mmseg/core/evaluation/metrics.py intersect_and_union and
 * total_area_to_metrics, mmseg/datasets/custom.py evaluate; MaskCLIP and
 * DenseCLIP report through it; 1.x IoUMetric is the same), over a pixel
 * confusion accumulated image by image:
 *
 *   pixels whose ground truth is ignore_index are dropped (with their
 *   prediction); per class c: intersect = pixels with gt = pred = c,
 *   area_label = gt c, area_pred = pred c, union = area_pred + area_label -
 *   intersect, summed over images;
 *   iou[c] = intersect / union (NaN when union = 0: the class is in
 *   neither); acc[c] = intersect / area_label (NaN when no gt pixel);
 *   miou, macc = np.nanmean of iou, acc; aacc = sum intersect / sum
 *   area_label.
 *
 * A ground-truth value that is neither ignore_index nor a class (>= K) is
 * kept as mmseg keeps it: torch.histc leaves it out of area_label and of
 * every intersect, but its pixel's prediction still counts in area_pred,
 * hence in a union. The confusion has a row for those pixels. Rates are
 * fractions (mmseg prints percent, rounded to 2 decimals). */
#define CT_SEG_IGNORE_DEFAULT 255

typedef struct ct_seg_metrics {
    int n_classes;
    int64_t n_pixels;    /* sum area_label: pixels with a class as ground truth */
    int n_iou_classes;   /* classes with union > 0: miou's set */
    double miou, macc, aacc;
    double *iou;         /* K; NaN when union = 0 */
    double *acc;         /* K; NaN when area_label = 0 */
    int64_t *area_label; /* K: ground-truth pixels per class */
    int64_t *area_pred;  /* K: predicted pixels per class (over non-ignored gt) */
} ct_seg_metrics;

/* Add one image of n_pixels to conf, (K + 1, K) row-major int64 [gt][pred]
 * (zeroed by the caller before the first image): row K counts the pixels
 * whose gt is >= K and not ignore_index. pred and gt are label maps (same
 * layout, e.g. (h, w)); ignore_index: the gt value to drop
 * (CT_SEG_IGNORE_DEFAULT; outside 0..255: none). Every pred must be < K
 * (an error naming the first pixel otherwise, conf untouched); 1 <= K <=
 * 256. */
ct_status ct_seg_confusion_add(int64_t *conf, int K, const uint8_t *pred, const uint8_t *gt,
                               int64_t n_pixels, int ignore_index);
/* The metrics of conf ((K + 1, K), as ct_seg_confusion_add fills it). An
 * error when a count is negative or no pixel has a class as ground truth
 * (then nothing is defined); on success miou, macc and aacc are finite. On
 * failure *out is left zeroed (ct_seg_metrics_free-safe). */
ct_status ct_seg_metrics_compute(const int64_t *conf, int K, ct_seg_metrics *out);
/* Free the arrays and zero *m (NULL ok). */
void ct_seg_metrics_free(ct_seg_metrics *m);

/* The segmentation geometry of a model's preprocessing: the same
 * resampling and normalisation, the whole image resized to size x size
 * (no centre crop), so the patch grid covers every pixel of the label map
 * (mmseg's whole-image inference at the model's input size). */
void ct_seg_preprocess(const ct_preprocess_cfg *pre, int size, ct_preprocess_cfg *out);
/* scores (gh * gw, K), row-major over the grid, class scores contiguous,
 * resized to (H, W) as torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False) does (mmseg's resize), into out (H, W, K). */
ct_status ct_seg_upsample(const float *scores, int gh, int gw, int K, int H, int W, float *out);
/* The same, then the arg-max class of every pixel (the first on ties) into
 * pred (H, W), without holding the (H, W, K) scores. */
ct_status ct_seg_upsample_argmax(const float *scores, int gh, int gw, int K, int H, int W,
                                 uint8_t *pred);
/* ------------------------------------------------------------------------ */
/* Hierarchy: a taxonomy over a single-label dataset (src/data/taxonomy.c)   */
/* ------------------------------------------------------------------------ */

/* A class taxonomy: a tree whose leaves are exactly a dataset's classes.
 *
 * File format (UTF-8 text, docs/training.md "Hierarchy runs"): one edge
 * per line, "parent<TAB>child" (one TAB; spaces around each name are
 * trimmed, so names may hold inner spaces: "ankle boot"); '#' starts a
 * comment line; blank lines are skipped; CRLF is accepted. Nodes are named
 * by their text; a leaf (a node with no child) must be one of the
 * dataset's class names (exact, case-sensitive) and every class must be a
 * leaf. The root is the one node that is nobody's child; when several are,
 * a root named "root" is implied above them. Errors name file:line: an
 * unknown leaf, a class missing from the tree, a class used as an internal
 * node, a node with two parents, a duplicate edge, a cycle, an empty or
 * over-long name, a line without exactly one TAB.
 *
 * Nodes are numbered 0 .. n_nodes-1 in depth-first preorder from the root
 * (children in the order their edges appear), the root excluded: the order
 * of ProTeCt's param_names (loader/treelibs.py Tree node ids less one). */
#define CT_TAXONOMY_MAX_NODES 65536
#define CT_TAXONOMY_MAX_NAME 512

typedef struct ct_taxonomy {
    char *path;        /* the file read ("(text)" for ct_taxonomy_parse)          */
    char *root;        /* the root's name                                        */
    int n_nodes;       /* N: every node but the root                             */
    int n_classes;     /* K: leaves, = the dataset's classes                     */
    char **names;      /* (N) node names                                         */
    int *parent;       /* (N) parent node, -1: a child of the root               */
    int *depth;        /* (N) 1 for a child of the root                          */
    int *leaf_class;   /* (N) the class of a leaf, -1 for an internal node       */
    int *class_node;   /* (K) the leaf node of class k                           */
    int n_internal;    /* internal nodes, the root included (ProTeCt's intnl_nodes) */
    int *internal;     /* (n_internal) internal[0] = -1 (root), then internal nodes in preorder */
} ct_taxonomy;

/* Read a taxonomy file over classes (the dataset's class names, K of them,
 * in label order). NULL-safe outputs: *out is NULL on failure. */
ct_status ct_taxonomy_load(const char *path, const char *const *classnames, int n_classes,
                           ct_taxonomy **out);
/* The same from text in memory (len bytes; name for messages). */
ct_status ct_taxonomy_parse(const char *text, size_t len, const char *name,
                            const char *const *classnames, int n_classes, ct_taxonomy **out);
void ct_taxonomy_free(ct_taxonomy *t);
/* Write t in the file format (edges in node order; the root named), to a
 * temp file renamed into path; names that cannot be written as a line are
 * an error. What a run directory keeps as taxonomy.txt. */
ct_status ct_taxonomy_save(const ct_taxonomy *t, const char *path);
/* 1 when node a is node n or one of its ancestors (a = -1: the root). */
bool ct_taxonomy_is_ancestor(const ct_taxonomy *t, int a, int n);

/* Tree cuts as ProTeCt makes them (models/treecut_generator.py): every
 * internal node but the root is kept with probability 1 - rate (the root
 * always), a node counts as kept when it and all its ancestors are, and
 * the cut is the set of nodes whose strict ancestors are all kept and which
 * are leaves or not kept themselves. cut (N bytes) gets 1 for its nodes. */
void ct_taxonomy_sample_cut(const ct_taxonomy *t, float rate, ct_rng *rng, uint8_t *cut);
/* How many distinct cuts the tree has (saturating at INT32_MAX). */
int64_t ct_taxonomy_count_cuts(const ct_taxonomy *t);
/* The evaluation cuts (sample_treecuts.py --multi, test.py --ntree): with
 * more than n_tree distinct cuts, n_tree / 5 distinct ones sampled at each
 * rate of 0.9, 0.7, 0.5, 0.3, 0.1 (in that order; none sampled twice) from
 * ct_rng(seed); with n_tree or fewer, every cut once (ProTeCt's sampler
 * would never finish). cuts: (n_tree, N) bytes; *n_out: how many were made.
 * A rate that finds no new cut in 10000 draws stops early. */
ct_status ct_taxonomy_eval_cuts(const ct_taxonomy *t, int n_tree, uint64_t seed, uint8_t *cuts,
                                int *n_out);
/* Node scores (n, N) from class scores (n, K) for methods whose scores
 * cannot be asked for other names: softmax of each row, a leaf's
 * probability, an internal node the sum of its leaves'. */
ct_status ct_taxonomy_node_scores_from_leaves(const ct_taxonomy *t, const float *scores,
                                              int64_t n, float *node_scores);

/* ProTeCt's metrics (engine.py eval_one_epoch, metrics.py hierConsistency,
 * test.py) from node scores (n, N) (each node's logit as a class: argmax
 * only, so logits or probabilities) and leaf labels:
 *   leaf_acc  argmax over the leaves (class order) is the label;
 *   hca       hierarchical consistency: the leaf is right and, at every
 *             internal node on the label's path (root included), the
 *             argmax over its children is the child on the path;
 *   mta       mean over the evaluation cuts (ct_taxonomy_eval_cuts(t,
 *             n_tree, seed)) of the accuracy over a cut's nodes, the target
 *             being the cut node above (or at) the label.
 * Fractions in [0, 1]; node_acc (n_internal, may be NULL): accuracy at each
 * internal node over the items below it (NaN when none). */
typedef struct ct_hier_metrics {
    int64_t n;
    int n_cuts;
    double leaf_acc, hca, mta;
} ct_hier_metrics;
#define CT_HIER_NTREE_DEFAULT 25
#define CT_HIER_CUT_SEED_DEFAULT 100
ct_status ct_hier_metrics_compute(const ct_taxonomy *t, const float *node_scores,
                                  const int *labels, int64_t n, int n_tree, uint64_t seed,
                                  ct_hier_metrics *out, double *node_acc);

/* A protocol's report: path_md gets a methods x shots table of "mean ± std"
 * in percent (mean and std are fractions, n_methods x n_shots, row-major;
 * NaN mean: missing; std NULL or n_seeds <= 1: the mean alone) and, when
 * svg_path is not NULL, the accuracy-vs-shots plot there, linked from it. */
ct_status ct_report_protocol(const char *path_md, const char *svg_path, const char *title,
                             const char *const *methods, int n_methods, const int *shots,
                             int n_shots, const double *mean, const double *std, int n_seeds);
/* The same for another metric than top-1 accuracy: metric names it in the
 * table's caption and the plot's axis ("mAP", "mIoU"; NULL: "Top-1
 * accuracy"). */
ct_status ct_report_protocol_metric(const char *path_md, const char *svg_path, const char *title,
                                    const char *metric, const char *const *methods,
                                    int n_methods, const int *shots, int n_shots,
                                    const double *mean, const double *std, int n_seeds);

/* ------------------------------------------------------------------------ */
/* Runs: one experiment end to end, and using it again (src/train)           */
/* ------------------------------------------------------------------------ */

/* Model + dataset + method + shots + seed -> a run directory with
 * config.json (everything needed to reload the run exactly: the model's
 * absolute path, tokenizer override, activation and content hash, the
 * dataset, method, resolved hyper-parameters and class names),
 * metrics.json, predictions.csv, log.txt, report.md, confusion.svg and the
 * learned tensors (learned.safetensors, named, with the method, its
 * hyper-parameters and the model hash in its metadata). Initialise with
 * ct_run_cfg_default() and set what you need. */
typedef struct ct_run_cfg {
    ct_model *model;
    const ct_splits *data;
    const char *data_spec;   /* recorded in config.json (made absolute)      */
    const ct_method *method;
    const char *set;         /* "k=v ..." overrides of the method's defaults  */
    int shots;               /* k per class; 0: the whole training set        */
    uint64_t seed;
    const char *run_dir;     /* created if missing; NULL: nothing written      */
    const char *cache_dir;   /* feature cache; NULL: none                     */
    bool resume;             /* continue a checkpointed training run          */
    int64_t max_test;        /* evaluate on the first max_test test items (0: all) */
    const char *subsample;   /* recorded in config.json: all | base | novel     */
    /* base-to-novel: after testing on the (base) test split, the learned
     * tensors are moved into a state made for these classes and scored on
     * this test set (CoOp / CoCoOp / MaPLe's novel column); NULL: none.
     * novel.json in the run directory holds its top-1. */
    const ct_dataset *novel_test;
    /* instead of training: the learned tensors from a checkpoint of the
     * official code (a PyTorch .pth / .pth.tar as torch.save wrote it, e.g.
     * CoOp's released prompt_learner/model.pth.tar-50, or a safetensors file
     * with the official keys); the run evaluates and saves them. NULL: train.
     * The hyper-parameters must be the ones it was trained with (n_ctx,
     * csc, ...): a shape that differs is an error naming them. */
    const char *import_from;
    /* multi-label datasets: the portion of the training labels kept known,
     * each (image, class) label independently (DualCoOp's partial-label
     * setting, ct_dataset_partial_labels); 0 or >= 1: all of them */
    double partial_labels;
    /* log lines (as log.txt gets them); each callback may be NULL */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* stages "features: <split>" (images) and "train" (steps, with loss/lr) */
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
    /* Hierarchy runs (single-label datasets): the class taxonomy, a file
     * (ct_taxonomy_load against the training split's classes; config.json
     * records its absolute path so `eval` reads it again) or a loaded one
     * (borrowed; its leaves must be the dataset's classes; taxonomy_path,
     * when also given, is only recorded). Both NULL: a flat run. The test
     * split is then also scored on the tree's nodes: by naming every node
     * to a state of the method made for the node names (the learned tensors
     * moved over, as base-to-novel does) where the method allows it, else
     * from the class probabilities (an internal node: the sum over its
     * leaves); ProTeCt's leaf accuracy, HCA and MTA go to ct_run_result,
     * metrics.json, the report and the log. Methods with .taxonomy train
     * with it (ct_task.taxonomy). */
    const char *taxonomy_path;
    const ct_taxonomy *taxonomy;
} ct_run_cfg;

/* shots 16, seed 1, subsample "all", everything else zero / NULL */
ct_run_cfg ct_run_cfg_default(void);

typedef struct ct_run_result {
    double top1, top5, macro_f1, ece;
    double val_top1;          /* NaN without val */
    double novel_top1;        /* NaN without novel_test */
    /* multi-label datasets (the single-label metrics above are then NaN):
     * test mAP (sklearn's AP), VOC07 11-point mAP, CF1 / OF1 at probability
     * 0.5 and at top-3, and val mAP (NaN without val); NaN otherwise */
    bool multi_label;
    double map, map_voc07, cf1, of1, cf1_top3, of1_top3, val_map;
    /* segmentation datasets (the metrics above are then NaN): mIoU, mean
     * class accuracy and pixel accuracy over the test label maps as
     * ct_seg_metrics defines them; NaN otherwise */
    bool segmentation;
    double miou, macc, aacc;
    /* hierarchy runs (ct_run_cfg.taxonomy*): ProTeCt's metrics on the test
     * split (ct_hier_metrics), over n_cuts tree cuts; node_scores_from:
     * "prompts" (the method scored the node names) or "class probabilities"
     * (summed over leaves). NaN / 0 / NULL otherwise. */
    bool hierarchy;
    double leaf_acc, hca, mta;
    int n_cuts;
    const char *node_scores_from;
} ct_run_result;

ct_status ct_run(const ct_run_cfg *cfg, ct_run_result *res);

/* Multi-task runs (docs/training.md, "Multi-task runs"): several
 * single-label datasets ("tasks") learned jointly by one multi-task method
 * (ct_method.multi_task: softcpt, mvlpt), each keeping its own classes. Each
 * task's training set is its k-shot draw (val min(k, 4) per class, as
 * ct_run); the trainer iterates the union of them, batches mixing the
 * tasks at random as the official data manager does, and hands the method
 * each item's task. Each task is tested over its own classes (top-1 of the
 * argmax among them); the result is per task and the mean over tasks. The
 * run directory holds config.json (the tasks' data specs and class names,
 * "multi_task": true), metrics.json, report.md, log.txt and
 * learned.safetensors; ct_mt_evaluate reproduces its metrics. Training-free
 * methods without a fit step (zeroshot) run too, scored the same way: the
 * baseline. Pixel methods (mvlpt) train on the tasks' images merged into one
 * dataset (ct_dataset_merge). */
#define CT_MT_MAX_TASKS 16
typedef struct ct_mt_run_cfg {
    ct_model *model;
    int n_tasks;                    /* 1 .. CT_MT_MAX_TASKS                     */
    const ct_splits *const *data;   /* (n_tasks) each task's splits              */
    const char *const *data_specs;  /* (n_tasks) recorded in config.json (made
                                     * absolute); NULL entries: ""            */
    const ct_method *method;
    const char *set;                /* "k=v ..." overrides of the defaults       */
    int shots;                      /* k per class of every task; 0: all         */
    uint64_t seed;
    const char *run_dir;            /* created if missing; NULL: nothing written  */
    const char *cache_dir;          /* feature cache; NULL: none                 */
    bool resume;                    /* continue a checkpointed run               */
    int64_t max_test;               /* per task: its first max_test test items (0: all) */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} ct_mt_run_cfg;

/* shots 16, seed 1, everything else zero / NULL */
ct_mt_run_cfg ct_mt_run_cfg_default(void);

typedef struct ct_mt_run_result {
    int n_tasks;
    double top1[CT_MT_MAX_TASKS];     /* test top-1 of each task over its own classes */
    double val_top1[CT_MT_MAX_TASKS]; /* the same on val; NaN without val / training   */
    double mean_top1, mean_val_top1;  /* the means over the tasks                      */
    char task_names[CT_MT_MAX_TASKS][64]; /* each task's dataset name (truncated)     */
} ct_mt_run_result;

ct_status ct_mt_run(const ct_mt_run_cfg *cfg, ct_mt_run_result *res);
/* Whether dir/config.json records a multi-task run (false when it records
 * a single-task run or cannot be read). */
bool ct_run_is_multitask(const char *dir);
/* A finished multi-task run evaluated again: the method rebuilt from
 * config.json's hyper-parameters and the learned tensors, scored on the
 * test splits of the recorded data specs (the recorded max_test). model:
 * NULL loads the recorded one; either way a model whose content hash
 * differs from the recorded one is refused. out_dir (created) receives
 * metrics.json and report.md when not NULL. */
ct_status ct_mt_evaluate(const char *run_dir, ct_model *model, const char *cache_dir,
                         const char *out_dir, ct_mt_run_result *res);
/* A finished multi-task run's predictions for n image files of one of its
 * tasks (the images are that task's: a multi-task method scores every
 * task's classes, and the task's own columns are the ones its test split
 * was scored on). task: the task's dataset name as config.json records it
 * (ct_mt_run_result.task_names) or its index ("0", "1", ...); an unknown
 * one is an error listing the tasks. model: NULL loads the recorded one;
 * either way a model whose content hash differs is refused. out gets the
 * softmax over the task's classes (in the task's class order) and their
 * names; free it with ct_mt_prediction_free. */
typedef struct ct_mt_prediction {
    int n, n_classes;  /* images; the task's classes                 */
    float *probs;      /* (n, n_classes)                              */
    char **classnames; /* (n_classes) the task's class names          */
    int task;          /* the task's index in the run                 */
    char task_name[64];
} ct_mt_prediction;
ct_status ct_mt_predict_files(const char *run_dir, ct_model *model, const char *task,
                              const char *const *paths, int n, ct_mt_prediction *out);
void ct_mt_prediction_free(ct_mt_prediction *p);

/* A finished run directory, opened to predict or evaluate with it again.
 * Opening reads config.json only; the model is loaded (or checked) by
 * ct_saved_run_attach, and the method's state rebuilt from the run's
 * hyper-parameters and learned tensors. */
typedef struct ct_saved_run ct_saved_run;

/* What config.json records (strings owned by the run). */
typedef struct ct_run_info {
    const char *dir, *method, *model, *bpe, *act, *model_hash, *data, *dataset, *subsample;
    const char *hyper_parameters; /* "k=v ..." */
    int64_t shots, seed, max_test;
    int n_classes;
    const char *const *classnames;
    double top1;                  /* metrics.json's, NaN when absent */
    bool multi_label;             /* trained on a multi-label dataset: its scores are
                                   * per-class sigmoid probabilities, its metrics mAP */
    bool segmentation;            /* trained on a segmentation dataset: it labels
                                   * pixels (ct_saved_run_evaluate_seg) */
    const char *taxonomy;         /* a hierarchy run's taxonomy file (DIR/taxonomy.txt,
                                   * or ct_saved_run_set_taxonomy's), NULL: flat */
} ct_run_info;

/* NULL on failure (ct_last_error names the file and field). */
ct_saved_run *ct_saved_run_open(const char *dir);
void ct_saved_run_free(ct_saved_run *r);
const ct_run_info *ct_saved_run_info(const ct_saved_run *r);
/* Score other classes than the run's (base-to-novel: a run trained on base
 * classes scored on novel ones; cross-dataset transfer): the method is
 * rebuilt for these names; only class-agnostic learned tensors (CoOp's
 * unified context, CoCoOp's meta-net, MaPLe's prompts) load. Attach then
 * refuses (CT_ERR_UNSUPPORTED, naming the tensor) a method whose learned
 * tensors are per class (a linear probe, class-specific CoOp, Tip-Adapter's
 * cache), even when the class counts agree. Before attach. */
ct_status ct_saved_run_set_classes(ct_saved_run *r, const char *const *names, int n);
/* Evaluate with this class taxonomy (the file format of ct_taxonomy_load,
 * over the run's classes) instead of the one the run recorded; NULL: none
 * (flat). Before attach. ct_saved_run_evaluate then adds ProTeCt's metrics
 * (ct_metrics.hierarchy ...), as ct_run computed them for the run. A run
 * rebuilt for other classes (ct_saved_run_set_classes) drops its recorded
 * taxonomy. */
ct_status ct_saved_run_set_taxonomy(ct_saved_run *r, const char *path);
/* Attach the frozen model: model (borrowed; it must outlive r) or, when
 * NULL, the one config.json records, loaded with the recorded tokenizer and
 * activation. A model whose content hash differs from the recorded one is
 * refused (CT_ERR_ARG, naming both), since the learned tensors were
 * fitted to that model. Then rebuilds the method's state. */
ct_status ct_saved_run_attach(ct_saved_run *r, ct_model *model);
ct_model *ct_saved_run_model(ct_saved_run *r);
/* Progress of methods that score images slowly (test-time tuning, a changed
 * image tower): the ct_run_cfg callback's signature. Before attach. */
void ct_saved_run_set_progress(ct_saved_run *r,
                               void (*progress)(void *ctx, const char *stage, int64_t done,
                                                int64_t total, double loss, double lr),
                               void *ctx);
/* probs (n, K): softmax probabilities of the run's classes for n image
 * files, in the run's class order. */
ct_status ct_saved_run_predict_files(ct_saved_run *r, const char *const *paths, int n,
                                     float *probs);
/* probs (n, K) for the images of d (its labels are not read); cache_dir: the
 * feature cache (NULL: none). */
ct_status ct_saved_run_predict(ct_saved_run *r, const ct_dataset *d, const char *cache_dir,
                               float *probs);
/* How test's classes stand to the run's (by name): 0 the same, in order;
 * 1 each is exactly one of the run's (a subset, e.g. ImageNet-A/-R's 200 of
 * an ImageNet run's 1000, or another order): ct_saved_run_evaluate scores
 * them by restricting the run's logits to them, for every method; 2 others
 * (give them to ct_saved_run_set_classes before attach); -1 NULL. */
int ct_saved_run_class_relation(const ct_saved_run *r, const ct_dataset *test);
/* Score the run on another dataset as that dataset: methods that key on the
 * dataset's name (the per-dataset prompt template of zero-shot CLIP,
 * Tip-Adapter's and CLIP-Adapter's zero-shot classifier) use this name's,
 * as CoOp's evaluation on another dataset uses the target's (cross-dataset
 * transfer, with ct_saved_run_set_classes). Default: the training dataset's
 * name, as config.json records it. Before attach. */
ct_status ct_saved_run_set_dataset_name(ct_saved_run *r, const char *name);
/* Evaluate on test: its classes are the run's, in order, or each one of the
 * run's by name (relation 1 above: the run's logits restricted to test's
 * classes, in test's order, as CoOp scores ImageNet-A/-R with an ImageNet
 * model). Metrics into *m and, when out_dir is not NULL, metrics.json,
 * predictions.csv, report.md and confusion.svg (test's classes) written
 * there (created). */
ct_status ct_saved_run_evaluate(ct_saved_run *r, const ct_dataset *test, const char *data_spec,
                                const char *cache_dir, const char *out_dir, ct_metrics *m);
/* The same for a multi-label run (ct_run_info.multi_label) on a
 * multi-label test set (same classes): mAP, VOC07 mAP, CF1 / OF1 at
 * probability 0.5 and top-3 into *m; metrics.json, predictions.csv (per-class
 * probabilities) and report.md in out_dir when not NULL. For multi-label runs
 * ct_saved_run_predict gives per-class sigmoid probabilities (rows do not
 * sum to 1) and ct_saved_run_evaluate refuses. */
ct_status ct_saved_run_evaluate_ml(ct_saved_run *r, const ct_dataset *test, const char *data_spec,
                                   const char *cache_dir, const char *out_dir, ct_ml_metrics *m);
/* The same for a segmentation run (ct_run_info.segmentation) on a
 * segmentation test set with the run's classes: mIoU, mAcc, aAcc and the
 * per-class IoU / accuracy into *m; in out_dir when not NULL metrics.json,
 * report.md, overlays.png and predictions/ (one palette PNG label map per
 * test image, named after the image). ct_saved_run_evaluate and
 * ct_saved_run_predict refuse segmentation runs. */
ct_status ct_saved_run_evaluate_seg(ct_saved_run *r, const ct_dataset *test,
                                    const char *data_spec, const char *cache_dir,
                                    const char *out_dir, ct_seg_metrics *m);
/* Label the images at paths with a segmentation run: a palette PNG label
 * map (VOC's colours, the run's class indices) per image in out_dir
 * (created), named after the image (its base name, extension replaced by
 * .png; two images with the same base name are refused) and, when class_pixels
 * is not NULL, each image's predicted pixels per class there (n, K). */
ct_status ct_saved_run_segment_files(ct_saved_run *r, const char *const *paths, int n,
                                     const char *out_dir, int64_t *class_pixels);
/* Methods whose learning folds into plain CLIP weights (clip-lora): the
 * adapted model as a Hugging Face folder in out_dir, with the frozen model's
 * tokenizer files and preprocessor_config.json. CT_ERR_UNSUPPORTED for
 * others. */
ct_status ct_saved_run_export_merged(ct_saved_run *r, const char *out_dir);
/* The learned tensors as the official repository's checkpoint holds them:
 * a safetensors file whose keys are its state-dict keys (CoOp's "ctx",
 * CoCoOp's "meta_net.linear1.weight", MaPLe's "prompt_learner.ctx", ...)
 * and shapes, with the method, the repository, the module whose state dict
 * it is, the hyper-parameters and the model hash in its metadata
 * (docs/export.md shows how to load it into the official PyTorch model).
 * CT_ERR_UNSUPPORTED for methods without a known layout;
 * ct_saved_run_official_repo names the repository (NULL: none). */
ct_status ct_saved_run_export_official(ct_saved_run *r, const char *path);
const char *ct_saved_run_official_repo(const ct_saved_run *r);
/* vcd runs: the n descriptors of class k that score the image file highest
 * (score = exp(logit_scale) x cosine; the class's logit is their mean over
 * all its descriptors): indices (-1 past the class's count) and scores;
 * ct_saved_run_descriptor gives descriptor j of class k as written. */
ct_status ct_saved_run_explain(ct_saved_run *r, const char *path, int k, int n, int *idx,
                               float *score);
const char *ct_saved_run_descriptor(ct_saved_run *r, int k, int j);

/* ------------------------------------------------------------------------ */
/* Pretraining from scratch (src/train/pretrain.c, src/data/captions.c)      */
/* ------------------------------------------------------------------------ */

/* An architecture from a Hugging Face config.json (for pretraining a model
 * of that shape). */
ct_status ct_clip_config_from_hf(const char *config_json, ct_clip_config *cfg);

/* Image-caption corpora: "[csv:]FILE" (header path,caption; RFC 4180; several
 * records per image are several captions) or "[folder:]DIR" (each image with
 * a caption file of the same stem, one caption per line). Errors name the
 * file and line. Images are sorted by path. */
typedef struct ct_caption_set {
    int64_t n_images;
    char **paths;      /* (n_images) resolved: ready to open                    */
    int64_t *cap_off;  /* (n_images + 1): image i has captions[cap_off[i] ..    *
                        * cap_off[i+1]); cap_off[n_images] is the caption count  */
    char **captions;   /* (cap_off[n_images]) grouped by image                  */
    char *root;        /* the CSV's folder or DIR; relative paths start with it */
} ct_caption_set;

/* Read a corpus (see above). On failure *out is zeroed. */
ct_status ct_captions_open(const char *spec, ct_caption_set *out);
/* Free everything and zero *s (NULL and zeroed sets are fine). */
void ct_captions_free(ct_caption_set *s);

/* The pretraining augmentation (docs/pretraining.md): random resized crop,
 * flip, and the silhouette / background / downscale / grey / invert views
 * that bring pictures and icons closer to small grey downstream images. */
typedef struct ct_pretrain_aug_cfg {
    int size;                     /* output size x size                        */
    double scale_min, scale_max;  /* crop area / image area: 0.5, 1.0          */
    double ratio_min, ratio_max;  /* crop width / height: 3/4, 4/3             */
    ct_resample resample;         /* CT_RESAMPLE_BICUBIC                       */
    float flip_p;                 /* 0.5                                       */
    float silhouette_p;           /* 0.1                                       */
    float background_p;           /* 0.3                                       */
    float downscale_p;            /* 0.2                                       */
    int downscale_min, downscale_max; /* 8, 28 (px, inclusive)                 */
    float grey_p;                 /* 0.2                                       */
    float invert_p;               /* 0.1                                       */
    int bg_tolerance;             /* 0..255: 24 (absorbs JPEG noise)           */
    float border_frac;            /* (0, 1]: 0.9                               */
    uint8_t matte[3];             /* alpha images' default background: white   */
} ct_pretrain_aug_cfg;

/* The defaults above for an output of size x size. */
void ct_pretrain_aug_cfg_default(ct_pretrain_aug_cfg *cfg, int size);

/* CLIP's contrastive pretraining from scratch (Radford et al. 2021, open_clip's
 * loop for the details): AdamW, warmup then cosine per step, logit_scale
 * clamped to [0, ln 100]. The result is a Hugging Face CLIP folder; the
 * training state is checkpointed atomically, and resume continues bit for
 * bit. */
typedef struct ct_pretrain_cfg {
    const char *corpus;        /* captions: CSV path,caption or a folder with .txt  */
    const char *tokenizer_dir; /* vocab.json + merges.txt (copied into out_dir)     */
    ct_clip_config arch;       /* vocab_size must equal the tokenizer's              */
    const char *out_dir;
    int epochs, batch_size;
    double lr, min_lr, weight_decay, beta1, beta2, eps;
    int64_t warmup_steps;
    double max_grad_norm;      /* 0: no clipping                                    */
    double heldout_frac;       /* images held out for retrieval metrics             */
    int64_t checkpoint_every;  /* steps between checkpoints (and at the end)        */
    int64_t eval_every;        /* steps between held-out evaluations (0: at the end) */
    int64_t stop_after;        /* > 0: stop, checkpointed, after this many steps of
                                * this call (resumable chunks)                      */
    bool resume;
    uint64_t seed;
    ct_pretrain_aug_cfg aug;   /* training views; output size is arch.image_size    */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} ct_pretrain_cfg;

/* The paper-like defaults scaled for small models: batch 256, AdamW lr 1e-3
 * (betas 0.9/0.98, eps 1e-6, wd 0.2), warmup 200 steps, 5% held out. */
void ct_pretrain_cfg_default(ct_pretrain_cfg *cfg);

typedef struct ct_retrieval {
    int64_t n_images, n_captions;
    double i2t_r1, i2t_r5, t2i_r1, t2i_r5; /* image->text: hit if any of its captions */
} ct_retrieval;

typedef struct ct_pretrain_result {
    int64_t step, total_steps;  /* steps done so far / in the whole run          */
    bool finished;
    double loss;                /* mean loss of the last logged interval         */
    double logit_scale;         /* exp(logit_scale)                              */
    ct_retrieval heldout;       /* at the last evaluation (n_images 0: none yet) */
} ct_pretrain_result;

ct_status ct_pretrain(const ct_pretrain_cfg *cfg, ct_pretrain_result *res);

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/* Write bytes atomically: to "<path>.tmp.<pid>.<n>" then fsync + rename. */
ct_status ct_write_file_atomic(const char *path, const void *data, size_t n);

/* Whole file into a malloc'ed, NUL-terminated buffer (*size excludes NUL). */
ct_status ct_read_file(const char *path, char **out, size_t *size);
/* mkdir -p: create dir and its missing parents (existing ones are fine). */
ct_status ct_mkdir_p(const char *dir);

/* ---- safetensors ---- */

typedef enum ct_dtype { CT_F32, CT_F16, CT_BF16, CT_I64, CT_I32, CT_U8 } ct_dtype;
size_t ct_dtype_size(ct_dtype d);
const char *ct_dtype_name(ct_dtype d);

typedef struct ct_st_tensor {
    char *name;
    ct_dtype dtype;
    int ndim;
    int64_t shape[8];
    const uint8_t *data; /* into the mapping */
    size_t nbytes;
} ct_st_tensor;

typedef struct ct_safetensors ct_safetensors;

/* mmap and validate: header length, JSON, dtypes, shapes, offsets in range,
 * shape x dtype == byte length, no overlaps. */
ct_safetensors *ct_safetensors_open(const char *path);
void ct_safetensors_close(ct_safetensors *st);
int ct_safetensors_count(const ct_safetensors *st);
const ct_st_tensor *ct_safetensors_at(const ct_safetensors *st, int i);
/* NULL if absent (no error set). */
const ct_st_tensor *ct_safetensors_find(const ct_safetensors *st, const char *name);
/* The "__metadata__" string value for key, or NULL. */
const char *ct_safetensors_meta(const ct_safetensors *st, const char *key);
/* Convert a float tensor (F32/F16/BF16) to ct_real; n must equal numel. */
ct_status ct_st_to_real(const ct_st_tensor *t, ct_real *out, size_t n);

typedef struct ct_st_entry {
    const char *name;
    ct_dtype dtype; /* data is given in this dtype */
    int ndim;
    const int64_t *shape;
    const void *data;
} ct_st_entry;

/* Write entries (and optional metadata key/value pairs) atomically. */
ct_status ct_safetensors_write(const char *path, const ct_st_entry *entries, int n,
                               const char *const *meta_kv, int n_meta);

/* ---- .npy (version 1.0/2.0, little-endian, C order) ---- */

typedef struct ct_npy {
    ct_dtype dtype; /* CT_F32 or CT_I64 */
    int ndim;
    int64_t shape[8];
    void *data;     /* malloc'ed */
    size_t numel;
} ct_npy;

ct_status ct_npy_read(const char *path, ct_npy *out);
void ct_npy_free(ct_npy *a);
ct_status ct_npy_write(const char *path, ct_dtype dtype, int ndim, const int64_t *shape,
                       const void *data);

#if defined(__GNUC__) && !defined(CT_NO_VISIBILITY)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* CLIPTUNE_H */
