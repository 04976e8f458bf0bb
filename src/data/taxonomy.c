/* Class taxonomies (the format in cliptune.h, ct_taxonomy) and ProTeCt's
 * tree cuts. The parser reads untrusted text: every name is length-checked,
 * the node count is bounded before it grows a table, and the structure
 * (one parent per node, no cycle, leaves = the classes) is checked before
 * anything walks it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"

#define TAX_MAX_FILE (16u << 20)

typedef struct {
    const char *s;
    size_t n;
} span;

/* open-addressing name -> index table */
typedef struct {
    int *slot; /* cap entries, -1 empty */
    size_t cap;
} name_table;

static uint64_t hash_span(span a) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a.n; i++) h = (h ^ (uint8_t)a.s[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    const char *src;        /* file name for messages */
    int n, cap;
    char **name;            /* (n) */
    int *parent;            /* (n) -1: none yet */
    int *line;              /* (n) the first line naming the node */
    int *parent_line;       /* (n) the line of the edge into it */
    int *n_children;        /* (n) */
    int n_edges, edge_cap;
    int *edge_p, *edge_c;   /* edges in file order */
    name_table tab;
} builder;

static int table_find(const builder *b, span a, size_t *slot_out) {
    size_t m = b->tab.cap - 1, i = (size_t)hash_span(a) & m;
    for (;;) {
        int k = b->tab.slot[i];
        if (k < 0) {
            if (slot_out) *slot_out = i;
            return -1;
        }
        if (strlen(b->name[k]) == a.n && memcmp(b->name[k], a.s, a.n) == 0) return k;
        i = (i + 1) & m;
    }
}

static ct_status node_of(builder *b, span a, int line, int *out) {
    size_t slot = 0;
    int k = table_find(b, a, &slot);
    if (k >= 0) {
        *out = k;
        return CT_OK;
    }
    if (b->n >= CT_TAXONOMY_MAX_NODES)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: more than %d nodes", b->src, line,
                            CT_TAXONOMY_MAX_NODES);
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        char **nm = realloc(b->name, (size_t)cap * sizeof *nm);
        if (nm) b->name = nm;
        int *p = realloc(b->parent, (size_t)cap * sizeof *p);
        if (p) b->parent = p;
        int *l = realloc(b->line, (size_t)cap * sizeof *l);
        if (l) b->line = l;
        int *pl = realloc(b->parent_line, (size_t)cap * sizeof *pl);
        if (pl) b->parent_line = pl;
        int *nc = realloc(b->n_children, (size_t)cap * sizeof *nc);
        if (nc) b->n_children = nc;
        if (!nm || !p || !l || !pl || !nc) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
        b->cap = cap;
    }
    char *s = malloc(a.n + 1);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
    memcpy(s, a.s, a.n);
    s[a.n] = 0;
    k = b->n++;
    b->name[k] = s, b->parent[k] = -1, b->line[k] = line, b->parent_line[k] = 0;
    b->n_children[k] = 0;
    b->tab.slot[slot] = k;
    *out = k;
    return CT_OK;
}

static void builder_free(builder *b) {
    for (int i = 0; i < b->n; i++) free(b->name[i]);
    free(b->name), free(b->parent), free(b->line), free(b->parent_line), free(b->n_children);
    free(b->edge_p), free(b->edge_c), free(b->tab.slot);
}

static span trim(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r')) n--;
    return (span){s, n};
}

static ct_status check_name(const builder *b, span a, int line, const char *which) {
    if (a.n == 0) return ct_set_error(CT_ERR_FORMAT, "%s:%d: empty %s name", b->src, line, which);
    if (a.n > CT_TAXONOMY_MAX_NAME)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: %s name longer than %d bytes", b->src, line,
                            which, CT_TAXONOMY_MAX_NAME);
    if (memchr(a.s, 0, a.n))
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: NUL byte in the %s name", b->src, line, which);
    return CT_OK;
}

static ct_status add_edge(builder *b, span ps, span cs, int line) {
    ct_status s;
    if ((s = check_name(b, ps, line, "parent")) != CT_OK ||
        (s = check_name(b, cs, line, "child")) != CT_OK)
        return s;
    int p, c;
    if ((s = node_of(b, ps, line, &p)) != CT_OK || (s = node_of(b, cs, line, &c)) != CT_OK)
        return s;
    if (p == c)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: cycle: '%s' is its own parent", b->src, line,
                            b->name[p]);
    if (b->parent[c] == p)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: duplicate edge '%s' -> '%s' (first on line %d)",
                            b->src, line, b->name[p], b->name[c], b->parent_line[c]);
    if (b->parent[c] >= 0)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: '%s' has two parents: '%s' (line %d) and '%s'",
                            b->src, line, b->name[c], b->name[b->parent[c]], b->parent_line[c],
                            b->name[p]);
    b->parent[c] = p, b->parent_line[c] = line;
    b->n_children[p]++;
    if (b->n_edges == b->edge_cap) {
        int cap = b->edge_cap ? b->edge_cap * 2 : 64;
        int *ep = realloc(b->edge_p, (size_t)cap * sizeof *ep);
        if (ep) b->edge_p = ep;
        int *ec = realloc(b->edge_c, (size_t)cap * sizeof *ec);
        if (ec) b->edge_c = ec;
        if (!ep || !ec) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
        b->edge_cap = cap;
    }
    b->edge_p[b->n_edges] = p, b->edge_c[b->n_edges] = c;
    b->n_edges++;
    return CT_OK;
}

void ct_taxonomy_free(ct_taxonomy *t) {
    if (!t) return;
    for (int i = 0; t->names && i < t->n_nodes; i++) free(t->names[i]);
    free(t->names), free(t->parent), free(t->depth), free(t->leaf_class), free(t->class_node);
    free(t->internal), free(t->path), free(t->root);
    free(t);
}

/* Every node reaches a parentless one by its parents, else a cycle: the
 * message names the line of an edge on it. */
static ct_status check_acyclic(const builder *b) {
    uint8_t *st = calloc((size_t)b->n + 1, 1); /* 0 new, 1 on the current walk, 2 reaches a top */
    if (!st) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
    ct_status s = CT_OK;
    for (int i = 0; i < b->n && s == CT_OK; i++) {
        int k = i;
        while (k >= 0 && st[k] == 0) st[k] = 1, k = b->parent[k];
        if (k >= 0 && st[k] == 1)
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: cycle through '%s'", b->src,
                             b->parent_line[k], b->name[k]);
        for (k = i; k >= 0 && st[k] == 1; k = b->parent[k]) st[k] = 2;
    }
    free(st);
    return s;
}

static ct_status build(builder *b, const char *const *classnames, int K, ct_taxonomy **out) {
    if (b->n_edges == 0) return ct_set_error(CT_ERR_FORMAT, "%s: no edges", b->src);
    ct_status s = check_acyclic(b);
    if (s != CT_OK) return s;
    int n_top = 0, top = -1;
    for (int i = 0; i < b->n; i++)
        if (b->parent[i] < 0) n_top++, top = i;
    if (n_top > 1 && table_find(b, (span){"root", 4}, NULL) >= 0)
        return ct_set_error(CT_ERR_FORMAT, "%s: %d top nodes and a node named 'root': name the "
                            "root (one top node) or rename that node", b->src, n_top);
    /* classes: names unique, each a leaf */
    int *cls_of = malloc((size_t)b->n * sizeof *cls_of);
    if (!cls_of) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
    for (int i = 0; i < b->n; i++) cls_of[i] = -1;
    for (int k = 0; k < K && s == CT_OK; k++) {
        const char *c = classnames[k] ? classnames[k] : "";
        int i = table_find(b, (span){c, strlen(c)}, NULL);
        if (i < 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s: class '%s' is missing from the tree", b->src, c);
        else if (cls_of[i] >= 0)
            s = ct_set_error(CT_ERR_ARG, "%s: the dataset names class '%s' twice", b->src, c);
        else if (b->n_children[i] > 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: class '%s' is an internal node (classes are "
                             "the leaves)", b->src, b->line[i], c);
        else if (n_top == 1 && i == top)
            s = ct_set_error(CT_ERR_FORMAT, "%s: class '%s' is the root", b->src, c);
        else
            cls_of[i] = k;
    }
    for (int i = 0; i < b->n && s == CT_OK; i++)
        if (b->n_children[i] == 0 && cls_of[i] < 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: unknown leaf '%s': not one of the dataset's "
                             "%d classes", b->src, b->parent_line[i], b->name[i], K);
    if (s != CT_OK) {
        free(cls_of);
        return s;
    }
    /* children lists in edge order (CSR), then preorder from the root */
    int n = b->n, N = n_top == 1 ? n - 1 : n;
    int *off = calloc((size_t)n + 2, sizeof *off), *kids = malloc((size_t)n * sizeof *kids + 1);
    int *fill = calloc((size_t)n + 1, sizeof *fill), *stack = malloc((size_t)(n + 1) * sizeof *stack);
    int *num = malloc((size_t)n * sizeof *num + 1);
    ct_taxonomy *t = calloc(1, sizeof *t);
    if (!off || !kids || !fill || !stack || !num || !t) {
        s = ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
        goto out;
    }
    for (int e = 0; e < b->n_edges; e++) off[b->edge_p[e] + 1]++;
    for (int i = 0; i < n; i++) off[i + 1] += off[i];
    for (int e = 0; e < b->n_edges; e++) {
        int p = b->edge_p[e];
        kids[off[p] + fill[p]++] = b->edge_c[e];
    }
    t->n_nodes = N, t->n_classes = K;
    t->root = strdup(n_top == 1 ? b->name[top] : "root");
    t->path = strdup(b->src);
    t->names = calloc((size_t)N + 1, sizeof *t->names);
    t->parent = malloc((size_t)(N + 1) * sizeof(int));
    t->depth = malloc((size_t)(N + 1) * sizeof(int));
    t->leaf_class = malloc((size_t)(N + 1) * sizeof(int));
    t->class_node = malloc((size_t)(K + 1) * sizeof(int));
    t->internal = malloc((size_t)(N + 1) * sizeof(int));
    if (!t->root || !t->path || !t->names || !t->parent || !t->depth || !t->leaf_class ||
        !t->class_node || !t->internal) {
        s = ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
        goto out;
    }
    /* the root's children: its edges (one top) or the top nodes (implied) */
    int sp = 0, next = 0;
    for (int i = 0; i < n; i++) num[i] = -1;
    if (n_top == 1) {
        for (int j = off[top + 1] - 1; j >= off[top]; j--) stack[sp++] = kids[j];
    } else {
        for (int i = n - 1; i >= 0; i--)
            if (b->parent[i] < 0) stack[sp++] = i;
    }
    t->internal[0] = -1, t->n_internal = 1;
    while (sp > 0) {
        int i = stack[--sp];
        int me = next++;
        num[i] = me;
        t->names[me] = b->name[i];
        int bp = b->parent[i];
        t->parent[me] = (bp < 0 || (n_top == 1 && bp == top)) ? -1 : num[bp];
        t->depth[me] = t->parent[me] < 0 ? 1 : t->depth[t->parent[me]] + 1;
        t->leaf_class[me] = cls_of[i];
        if (cls_of[i] >= 0) t->class_node[cls_of[i]] = me;
        if (b->n_children[i] > 0) t->internal[t->n_internal++] = me;
        for (int j = off[i + 1] - 1; j >= off[i]; j--) stack[sp++] = kids[j];
    }
    CT_ASSERT(next == N);
    /* the names moved into t */
    for (int i = 0; i < n; i++)
        if (num[i] >= 0) b->name[i] = NULL;
    *out = t;
    t = NULL;
out:
    ct_taxonomy_free(t);
    free(off), free(kids), free(fill), free(stack), free(num), free(cls_of);
    return s;
}

ct_status ct_taxonomy_parse(const char *text, size_t len, const char *name,
                            const char *const *classnames, int n_classes, ct_taxonomy **out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "taxonomy: NULL output");
    *out = NULL;
    if (!name) name = "(text)";
    if ((!text && len) || n_classes < 1 || !classnames)
        return ct_set_error(CT_ERR_ARG, "taxonomy %s: no text or no classes", name);
    if (len > TAX_MAX_FILE)
        return ct_set_error(CT_ERR_FORMAT, "%s: larger than %u bytes", name, TAX_MAX_FILE);
    builder b = {.src = name};
    /* at most one new node per name on a line: two per line */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    size_t want = lines * 2 + 2;
    if (want > (size_t)CT_TAXONOMY_MAX_NODES + 2) want = (size_t)CT_TAXONOMY_MAX_NODES + 2;
    b.tab.cap = 64;
    while (b.tab.cap < want * 2) b.tab.cap *= 2;
    b.tab.slot = malloc(b.tab.cap * sizeof *b.tab.slot);
    if (!b.tab.slot) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
    for (size_t i = 0; i < b.tab.cap; i++) b.tab.slot[i] = -1;
    ct_status s = CT_OK;
    size_t pos = 0;
    int line = 0;
    while (pos < len && s == CT_OK) {
        const char *ls = text + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        pos += ll + (nl ? 1 : 0);
        line++;
        span whole = trim(ls, ll);
        if (whole.n == 0 || whole.s[0] == '#') continue;
        const char *tab = memchr(whole.s, '\t', whole.n);
        if (!tab) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: expected 'parent<TAB>child'", name, line);
            break;
        }
        size_t a = (size_t)(tab - whole.s);
        if (memchr(tab + 1, '\t', whole.n - a - 1)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: more than one TAB (expected "
                             "'parent<TAB>child')", name, line);
            break;
        }
        s = add_edge(&b, trim(whole.s, a), trim(tab + 1, whole.n - a - 1), line);
    }
    if (s == CT_OK) s = build(&b, classnames, n_classes, out);
    builder_free(&b);
    return s;
}

ct_status ct_taxonomy_load(const char *path, const char *const *classnames, int n_classes,
                           ct_taxonomy **out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "taxonomy: NULL output");
    *out = NULL;
    if (!path) return ct_set_error(CT_ERR_ARG, "taxonomy: NULL path");
    ct_mmap m;
    ct_status s = ct_mmap_open(&m, path);
    if (s != CT_OK) return s;
    s = ct_taxonomy_parse((const char *)m.data, m.size, path, classnames, n_classes, out);
    ct_mmap_close(&m);
    return s;
}

bool ct_taxonomy_is_ancestor(const ct_taxonomy *t, int a, int n) {
    if (a < 0) return true;
    for (int k = n; k >= 0; k = t->parent[k])
        if (k == a) return true;
    return false;
}

/* ---------------------------------------------------------------- cuts */

void ct_taxonomy_sample_cut(const ct_taxonomy *t, float rate, ct_rng *rng, uint8_t *cut) {
    int N = t->n_nodes;
    /* kept[i] for internal nodes in preorder: parents come first */
    uint8_t *kept = cut; /* reuse: first kept flags, then the cut, in one pass each */
    for (int j = 1; j < t->n_internal; j++) {
        int i = t->internal[j];
        /* F.dropout(ones, p) * (1 - p): 1 with probability 1 - p */
        bool keep = ct_rng_uniform(rng) >= rate;
        int p = t->parent[i];
        kept[i] = keep && (p < 0 || kept[p] == 2) ? 2 : 0;
    }
    /* in preorder a parent's flag is final before its children are read;
     * 2: expanded (kept, as are all its ancestors) */
    for (int i = 0; i < N; i++) {
        int p = t->parent[i];
        bool above = p < 0 || kept[p] == 2;
        bool leaf = t->leaf_class[i] >= 0;
        bool expanded = !leaf && kept[i] == 2;
        /* write the cut bit in bit 0, keep the kept flag in bit 1 */
        kept[i] = (uint8_t)((expanded ? 2 : 0) | (above && !expanded ? 1 : 0));
    }
    for (int i = 0; i < N; i++) cut[i] &= 1;
}

int64_t ct_taxonomy_count_cuts(const ct_taxonomy *t) {
    /* cuts of a subtree: 1 for a leaf, 1 + the product over the children
     * for an internal node (itself, or expanded), the product alone at the
     * root; in reverse preorder every child is done before its parent */
    int N = t->n_nodes;
    int64_t *prod = malloc((size_t)(N + 1) * sizeof *prod), root = 1;
    if (!prod) return -1;
    for (int i = 0; i < N; i++) prod[i] = 1;
    for (int i = N - 1; i >= 0; i--) {
        int64_t c = t->leaf_class[i] >= 0 ? 1 : prod[i] + 1;
        if (c > INT32_MAX) c = INT32_MAX;
        int64_t *dst = t->parent[i] < 0 ? &root : &prod[t->parent[i]];
        *dst = *dst > INT32_MAX / c ? INT32_MAX : *dst * c;
    }
    free(prod);
    return root;
}

/* Every cut, from the set of expanded internal nodes (closed under
 * ancestors, the root always): a branch per internal node whose parent is
 * expanded, in preorder. A tree with at most n_tree cuts has fewer than
 * n_tree internal nodes (expanding each node's ancestors and itself alone
 * gives distinct cuts), so the recursion is shallow. */
typedef struct {
    const ct_taxonomy *t;
    uint8_t *exp; /* (N) expanded flags */
    uint8_t *cuts;
    int n, cap;
} enum_ctx;

static void enum_rec(enum_ctx *e, int j) {
    const ct_taxonomy *t = e->t;
    if (e->n >= e->cap) return;
    if (j == t->n_internal) {
        uint8_t *c = e->cuts + (size_t)e->n++ * t->n_nodes;
        for (int i = 0; i < t->n_nodes; i++) {
            int p = t->parent[i];
            c[i] = (p < 0 || e->exp[p]) && !e->exp[i];
        }
        return;
    }
    int i = t->internal[j], p = t->parent[i];
    e->exp[i] = 0;
    enum_rec(e, j + 1);
    if (p < 0 || e->exp[p]) {
        e->exp[i] = 1;
        enum_rec(e, j + 1);
        e->exp[i] = 0;
    }
}

ct_status ct_taxonomy_eval_cuts(const ct_taxonomy *t, int n_tree, uint64_t seed, uint8_t *cuts,
                                int *n_out) {
    if (!t || !cuts || !n_out || n_tree < 1)
        return ct_set_error(CT_ERR_ARG, "taxonomy: eval cuts: NULL argument or n_tree < 1");
    int N = t->n_nodes;
    *n_out = 0;
    int64_t total = ct_taxonomy_count_cuts(t);
    if (total < 0) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
    if (total <= n_tree) {
        uint8_t *exp = calloc((size_t)N + 1, 1);
        if (!exp) return ct_set_error(CT_ERR_NOMEM, "taxonomy: out of memory");
        enum_ctx e = {t, exp, cuts, 0, n_tree};
        enum_rec(&e, 1);
        *n_out = e.n;
        free(exp);
        return CT_OK;
    }
    static const float rates[5] = {0.9f, 0.7f, 0.5f, 0.3f, 0.1f};
    double per = (double)n_tree / 5.0; /* ntree_per_dp, a float in the official script */
    ct_rng rng;
    ct_rng_init(&rng, seed);
    int n = 0;
    for (int r = 0; r < 5; r++) {
        int got = 0, tries = 0;
        while (got < per && n < n_tree && tries < 10000) {
            uint8_t *c = cuts + (size_t)n * N;
            ct_taxonomy_sample_cut(t, rates[r], &rng, c);
            tries++;
            bool seen = false;
            for (int j = 0; j < n && !seen; j++) seen = !memcmp(cuts + (size_t)j * N, c, (size_t)N);
            if (!seen) n++, got++, tries = 0;
        }
    }
    *n_out = n;
    return CT_OK;
}

/* ------------------------------------------------------------- metrics */

ct_status ct_taxonomy_node_scores_from_leaves(const ct_taxonomy *t, const float *scores,
                                              int64_t n, float *node_scores) {
    if (!t || !scores || !node_scores || n < 0)
        return ct_set_error(CT_ERR_ARG, "taxonomy: node scores: NULL argument");
    int K = t->n_classes, N = t->n_nodes;
    for (int64_t r = 0; r < n; r++) {
        const float *x = scores + r * K;
        float *y = node_scores + r * N;
        double mx = x[0], sum = 0;
        for (int k = 1; k < K; k++) mx = x[k] > mx ? x[k] : mx;
        for (int k = 0; k < K; k++) sum += exp((double)x[k] - mx);
        for (int i = 0; i < N; i++) y[i] = 0;
        for (int k = 0; k < K; k++) {
            float p = (float)(exp((double)x[k] - mx) / sum);
            for (int i = t->class_node[k]; i >= 0; i = t->parent[i]) y[i] += p;
        }
    }
    return CT_OK;
}

ct_status ct_hier_metrics_compute(const ct_taxonomy *t, const float *node_scores,
                                  const int *labels, int64_t n, int n_tree, uint64_t seed,
                                  ct_hier_metrics *out, double *node_acc) {
    if (!t || !node_scores || !labels || !out || n < 1)
        return ct_set_error(CT_ERR_ARG, "hierarchy metrics: NULL argument or no items");
    memset(out, 0, sizeof *out);
    int N = t->n_nodes, K = t->n_classes, NI = t->n_internal;
    for (int64_t r = 0; r < n; r++)
        if (labels[r] < 0 || labels[r] >= K)
            return ct_set_error(CT_ERR_ARG, "hierarchy metrics: label %d of item %lld outside "
                                "[0, %d)", labels[r], (long long)r, K);
    for (int64_t j = 0; j < n * N; j++)
        if (!isfinite(node_scores[j]))
            return ct_set_error(CT_ERR_ARG, "hierarchy metrics: score %lld is not finite",
                                (long long)j);
    if (n_tree < 1) n_tree = CT_HIER_NTREE_DEFAULT;
    uint8_t *cuts = malloc((size_t)n_tree * N + 1);
    int64_t *nc = calloc((size_t)NI, sizeof *nc), *nt = calloc((size_t)NI, sizeof *nt);
    int64_t *cut_ok = calloc((size_t)n_tree, sizeof *cut_ok);
    int *slot = malloc((size_t)(N + 1) * sizeof *slot); /* node -> internal index */
    if (!cuts || !nc || !nt || !slot || !cut_ok) {
        free(cuts), free(nc), free(nt), free(slot), free(cut_ok);
        return ct_set_error(CT_ERR_NOMEM, "hierarchy metrics: out of memory");
    }
    int n_cuts = 0;
    ct_status s = ct_taxonomy_eval_cuts(t, n_tree, seed, cuts, &n_cuts);
    for (int i = 0; i < N; i++) slot[i] = -1;
    for (int j = 1; j < NI; j++) slot[t->internal[j]] = j;
    /* children lists (first child, next sibling; -1 ends) and each cut's
     * target for each class: the cut node above (or at) its leaf */
    int *first = malloc((size_t)(N + 1) * sizeof *first), *nxt = malloc((size_t)(N + 1) * sizeof *nxt);
    int *tgt = malloc(((size_t)n_cuts * K + 1) * sizeof *tgt);
    if (!first || !nxt || !tgt) s = ct_set_error(CT_ERR_NOMEM, "hierarchy metrics: out of memory");
    for (int i = 0; s == CT_OK && i <= N; i++) first[i] = -1;
    for (int i = N - 1; s == CT_OK && i >= 0; i--) {
        nxt[i] = first[t->parent[i] + 1];
        first[t->parent[i] + 1] = i;
    }
    for (int q = 0; s == CT_OK && q < n_cuts; q++)
        for (int k = 0; k < K; k++) {
            int a = t->class_node[k];
            while (a >= 0 && !cuts[(size_t)q * N + a]) a = t->parent[a];
            tgt[(size_t)q * K + k] = a;
        }
    int64_t leaf_ok = 0, cons_ok = 0;
    for (int64_t r = 0; r < n && s == CT_OK; r++) {
        const float *x = node_scores + r * N;
        int y = labels[r], yl = t->class_node[y];
        /* leaves, in class order (ties: the first, as torch's max) */
        int best = 0;
        for (int k = 1; k < K; k++)
            if (x[t->class_node[k]] > x[t->class_node[best]]) best = k;
        bool ok = best == y;
        leaf_ok += ok;
        /* every internal node on the path: argmax over its children */
        bool cons = ok;
        for (int c = yl;;) {
            int a = t->parent[c]; /* the internal node deciding c */
            int ai = a < 0 ? 0 : slot[a];
            int bc = -1;
            for (int i = first[a + 1]; i >= 0; i = nxt[i])
                if (bc < 0 || x[i] > x[bc]) bc = i;
            bool right = bc == c;
            nt[ai]++, nc[ai] += right;
            cons = cons && right;
            if (a < 0) break;
            c = a;
        }
        cons_ok += cons;
        for (int q = 0; q < n_cuts; q++) {
            const uint8_t *cut = cuts + (size_t)q * N;
            int bi = -1;
            for (int i = 0; i < N; i++)
                if (cut[i] && (bi < 0 || x[i] > x[bi])) bi = i;
            cut_ok[q] += bi == tgt[(size_t)q * K + y];
        }
    }
    if (s == CT_OK) {
        out->n = n, out->n_cuts = n_cuts;
        out->leaf_acc = (double)leaf_ok / n;
        out->hca = (double)cons_ok / n;
        /* test.py: the mean of the cuts' accuracies */
        double sum = 0;
        for (int q = 0; q < n_cuts; q++) sum += (double)cut_ok[q] / n;
        out->mta = n_cuts ? sum / n_cuts : NAN;
        for (int j = 0; node_acc && j < NI; j++) node_acc[j] = nt[j] ? (double)nc[j] / nt[j] : NAN;
    }
    free(cuts), free(nc), free(nt), free(slot), free(cut_ok), free(first), free(nxt), free(tgt);
    return s;
}
