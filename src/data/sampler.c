/* Views of a dataset: few-shot subsets (Dassl's generate_fewshot_dataset),
 * base/novel class halves (CoOp's subsample_classes) and the fixed per-class
 * holdout used where a source has no val (or no test) split of its own.
 *
 * Randomness comes from ct_rng, not Python's random module, so a k-shot
 * subset has Dassl's distribution but never the same items as a Dassl run
 * with the same seed: matching CPython's Mersenne Twister and random.sample's
 * set/pool switch is not a goal. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "data/dataset.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static ct_status check_labels(const ct_dataset *d, const char *what) {
    for (int64_t i = 0; i < d->n_items; i++)
        if (d->items[i].label < 0 || d->items[i].label >= d->n_classes)
            return ct_set_error(CT_ERR_ARG, "%s: %s: item %lld has label %d outside [0, %d)",
                                d->name, what, (long long)i, d->items[i].label, d->n_classes);
    return CT_OK;
}

/* Copy the items of d at pos[0..n) (relabelled by map when non-NULL) into a
 * new dataset over the given class list. */
static ct_dataset *build_view(const ct_dataset *d, const int64_t *pos, int64_t n,
                              const int *map, int n_classes, char *const *names) {
    ct_item_vec v = {0};
    for (int64_t t = 0; t < n; t++) {
        const ct_item *it = &d->items[pos[t]];
        int label = map ? map[it->label] : it->label;
        if (ct_item_vec_push(&v, it->path, it->index, label) != CT_OK) {
            ct_item_vec_free(&v);
            return NULL;
        }
    }
    ct_dataset *out = ct_dataset_build(d->name, d->root, n_classes, names, d->pixels, &v);
    ct_item_vec_free(&v);
    /* merged datasets: items keep their part */
    if (out && d->sources) {
        if (!(out->item_source = malloc((size_t)(n ? n : 1) * sizeof *out->item_source))) {
            ct_dataset_free(out);
            ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the item parts", d->name);
            return NULL;
        }
        for (int64_t t = 0; t < n; t++) out->item_source[t] = d->item_source[pos[t]];
        out->sources = ct_data_sources_retain(d->sources);
    }
    /* segmentation masks follow their items, read as the source reads them */
    if (out) out->reduce_zero_label = d->reduce_zero_label;
    if (out && d->masks) {
        if (!(out->masks = calloc((size_t)(n ? n : 1), sizeof *out->masks))) {
            ct_dataset_free(out);
            ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the masks", d->name);
            return NULL;
        }
        for (int64_t t = 0; t < n; t++)
            if (d->masks[pos[t]] && !(out->masks[t] = strdup(d->masks[pos[t]]))) {
                ct_dataset_free(out);
                ct_set_error(CT_ERR_NOMEM, "%s: cannot copy a mask path", d->name);
                return NULL;
            }
    }
    /* multi-label targets follow their items (and the kept classes) */
    if (out && d->targets) {
        out->targets = malloc((size_t)(n ? n : 1) * (size_t)n_classes);
        if (!out->targets) {
            ct_dataset_free(out);
            ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the labels", d->name);
            return NULL;
        }
        for (int64_t t = 0; t < n; t++) {
            const int8_t *src = d->targets + pos[t] * d->n_classes;
            int8_t *dst = out->targets + t * n_classes;
            if (!map) {
                memcpy(dst, src, (size_t)n_classes);
                continue;
            }
            for (int c = 0; c < d->n_classes; c++)
                if (map[c] >= 0) dst[map[c]] = src[c];
        }
    }
    return out;
}

/* Positions of the items of each class, in dataset order: class c's are
 * pos[start[c] .. start[c + 1]). */
static ct_status group_by_label(const ct_dataset *d, int64_t **pos_out, int64_t **start_out) {
    int64_t *start = calloc((size_t)d->n_classes + 1, sizeof *start);
    int64_t *pos = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *pos);
    int64_t *fill = calloc((size_t)d->n_classes + 1, sizeof *fill);
    if (!start || !pos || !fill) {
        free(start);
        free(pos);
        free(fill);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot group %lld items by class", d->name,
                            (long long)d->n_items);
    }
    for (int64_t i = 0; i < d->n_items; i++) start[d->items[i].label + 1]++;
    for (int c = 0; c < d->n_classes; c++) start[c + 1] += start[c];
    for (int64_t i = 0; i < d->n_items; i++) {
        int c = d->items[i].label;
        pos[start[c] + fill[c]++] = i;
    }
    free(fill);
    *pos_out = pos;
    *start_out = start;
    return CT_OK;
}

ct_status ct_dataset_check_nonempty(const ct_dataset *d, const char *src) {
    int64_t *pos, *start;
    ct_status s = group_by_label(d, &pos, &start);
    if (s != CT_OK) return s;
    for (int c = 0; c < d->n_classes && s == CT_OK; c++)
        if (start[c + 1] == start[c])
            s = ct_set_error(CT_ERR_FORMAT, "%s: class %d ('%s') has no training items", src, c,
                             d->classnames[c]);
    free(pos);
    free(start);
    return s;
}

int ct_fewshot_val_shots(int k) { return k < 4 ? k : 4; }

/* ------------------------------------------------------------------------ */
/* Few-shot                                                                  */
/* ------------------------------------------------------------------------ */

ct_dataset *ct_dataset_fewshot(const ct_dataset *d, int k, uint64_t seed) {
    if (!d) {
        ct_set_error(CT_ERR_ARG, "ct_dataset_fewshot: NULL dataset");
        return NULL;
    }
    if (check_labels(d, "few-shot") != CT_OK) return NULL;
    int64_t *all = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *all);
    if (!all) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", d->name);
        return NULL;
    }
    if (k < 1) {
        /* Dassl: num_shots < 1 means "the whole set, as it is". */
        for (int64_t i = 0; i < d->n_items; i++) all[i] = i;
        ct_dataset *out = build_view(d, all, d->n_items, NULL, d->n_classes, d->classnames);
        free(all);
        return out;
    }
    int64_t *pos, *start;
    int *order = malloc((size_t)(d->n_classes ? d->n_classes : 1) * sizeof *order);
    if (!order || group_by_label(d, &pos, &start) != CT_OK) {
        if (!order) ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", d->name);
        free(order);
        free(all);
        return NULL;
    }
    /* Classes in order of first appearance, as Dassl's defaultdict yields them. */
    int n_order = 0;
    for (int64_t i = 0; i < d->n_items; i++) {
        int c = d->items[i].label;
        if (pos[start[c]] == i) order[n_order++] = c;
    }
    ct_rng base;
    ct_rng_init(&base, seed);
    int64_t n_out = 0;
    for (int o = 0; o < n_order; o++) {
        int c = order[o];
        int64_t *p = pos + start[c], n = start[c + 1] - start[c];
        if (n < k) {
            /* repeat=False (CoOp): a short class keeps all its items, in order. */
            memcpy(all + n_out, p, (size_t)n * sizeof *p);
            n_out += n;
            continue;
        }
        /* random.sample's semantics by a partial Fisher-Yates: k distinct
         * items in the order drawn. One stream per class label keeps a
         * class's draw independent of the others, and the first k draws of a
         * stream are the same for every k, so smaller shot counts are subsets
         * of larger ones for a given seed. */
        ct_rng r = ct_rng_split(&base, (uint64_t)c);
        for (int64_t t = 0; t < k; t++) {
            int64_t j = t + (int64_t)ct_rng_below(&r, (uint64_t)(n - t));
            int64_t tmp = p[t];
            p[t] = p[j];
            p[j] = tmp;
            all[n_out++] = p[t];
        }
    }
    ct_dataset *out = build_view(d, all, n_out, NULL, d->n_classes, d->classnames);
    free(order);
    free(pos);
    free(start);
    free(all);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Base / novel                                                              */
/* ------------------------------------------------------------------------ */

ct_dataset *ct_dataset_subsample_classes(const ct_dataset *d, int which) {
    if (!d || (which != 0 && which != 1)) {
        ct_set_error(CT_ERR_ARG, "ct_dataset_subsample_classes: %s", !d ? "NULL dataset"
                     : "which must be 0 (base) or 1 (novel)");
        return NULL;
    }
    if (d->masks) { /* mask values are class indices: they would need renumbering */
        ct_set_error(CT_ERR_ARG, "%s: a segmentation dataset has no base/novel class split",
                     d->name);
        return NULL;
    }
    if (check_labels(d, "subsample classes") != CT_OK) return NULL;
    /* Dassl sorts the labels seen in train; ours are 0..n-1, every one of
     * them present in train (the loaders check), so the halves agree. */
    int n = d->n_classes, m = (n + 1) / 2;
    int lo = which == 0 ? 0 : m, hi = which == 0 ? m : n;
    if (hi <= lo) {
        ct_set_error(CT_ERR_ARG, "%s: %d class%s: no %s classes", d->name, n, n == 1 ? "" : "es",
                     which == 0 ? "base" : "novel");
        return NULL;
    }
    int *map = malloc((size_t)n * sizeof *map);
    int64_t *keep = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *keep);
    if (!map || !keep) {
        free(map);
        free(keep);
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", d->name);
        return NULL;
    }
    for (int c = 0; c < n; c++) map[c] = c >= lo && c < hi ? c - lo : -1;
    int64_t n_keep = 0;
    for (int64_t i = 0; i < d->n_items; i++)
        if (map[d->items[i].label] >= 0) keep[n_keep++] = i;
    ct_dataset *out = build_view(d, keep, n_keep, map, hi - lo, d->classnames + lo);
    free(map);
    free(keep);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Holdout                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct hkey {
    int label;
    uint64_t hash;
    int64_t pos;
} hkey;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fixed forever (documented in docs/datasets.md): changing it reshuffles
 * every split ever made. FNV-1a over the path, then a splitmix64 finaliser
 * so nearby paths spread; in-memory rows hash their index. */
static uint64_t item_hash(const ct_item *it) {
    if (!it->path) return mix64((uint64_t)it->index ^ 0x6A09E667F3BCC908ull);
    uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char *p = (const unsigned char *)it->path; *p; p++) {
        h ^= *p;
        h *= 0x100000001B3ull;
    }
    return mix64(h);
}

uint64_t ct_data_path_hash(const char *path) {
    return item_hash(&(ct_item){.path = (char *)path});
}

static int cmp_hkey(const void *a, const void *b) {
    const hkey *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

ct_status ct_dataset_holdout(const ct_dataset *all, int val_pct, int test_pct,
                             ct_dataset **train, ct_dataset **val, ct_dataset **test) {
    *train = *val = NULL;
    if (test) *test = NULL;
    if (val_pct < 0 || test_pct < 0 || val_pct + test_pct > 100 || (!test && test_pct))
        return ct_set_error(CT_ERR_ARG, "%s: invalid holdout %d%% val, %d%% test", all->name,
                            val_pct, test_pct);
    ct_status s = check_labels(all, "holdout");
    if (s != CT_OK) return s;
    size_t n = (size_t)all->n_items;
    hkey *keys = malloc((n ? n : 1) * sizeof *keys);
    int64_t *lists = malloc((n ? n : 1) * 3 * sizeof *lists);
    if (!keys || !lists) {
        free(keys);
        free(lists);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the holdout", all->name);
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (hkey){all->items[i].label, item_hash(&all->items[i]), (int64_t)i};
    qsort(keys, n, sizeof *keys, cmp_hkey);
    /* Mark each item's split (0 train, 1 val, 2 test), then emit each split in
     * the input's order. */
    uint8_t *where = calloc(n ? n : 1, 1);
    if (!where) {
        free(keys);
        free(lists);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the holdout", all->name);
    }
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b < n && keys[b].label == keys[a].label) b++;
        int64_t cnt = (int64_t)(b - a);
        int64_t nv = (cnt * val_pct + 50) / 100, nt = (cnt * test_pct + 50) / 100;
        /* Keep at least one training item per class. */
        while (nv + nt >= cnt && nt > 0) nt--;
        while (nv + nt >= cnt && nv > 0) nv--;
        for (int64_t t = 0; t < cnt; t++)
            where[keys[a + (size_t)t].pos] = t < nv ? 1 : t < nv + nt ? 2 : 0;
        a = b;
    }
    int64_t *lst[3] = {lists, lists + n, lists + 2 * n}, cnt[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) lst[where[i]][cnt[where[i]]++] = (int64_t)i;
    ct_dataset *out[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3 && s == CT_OK; k++) {
        if (k == 1 && cnt[1] == 0) continue; /* no val rather than an empty one */
        if (k == 2 && !test) continue;
        out[k] = build_view(all, lst[k], cnt[k], NULL, all->n_classes, all->classnames);
        if (!out[k]) s = CT_ERR_NOMEM;
    }
    free(where);
    free(keys);
    free(lists);
    if (s != CT_OK) {
        for (int k = 0; k < 3; k++) ct_dataset_free(out[k]);
        return s;
    }
    *train = out[0];
    *val = out[1];
    if (test) *test = out[2];
    return CT_OK;
}

static int cmp_pos(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

ct_dataset *ct_dataset_sample(const ct_dataset *d, int64_t n, uint64_t seed) {
    if (n <= 0 || n >= d->n_items) return ct_dataset_head(d, 0);
    int64_t *pos = malloc((size_t)d->n_items * sizeof *pos);
    if (!pos) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a sample", d->name);
        return NULL;
    }
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(seed, "dataset.sample"));
    ct_rng_permutation(&r, pos, (size_t)d->n_items);
    qsort(pos, (size_t)n, sizeof *pos, cmp_pos); /* the chosen ones, in d's order */
    ct_dataset *out = build_view(d, pos, n, NULL, d->n_classes, d->classnames);
    free(pos);
    return out;
}

ct_dataset *ct_dataset_head(const ct_dataset *d, int64_t n) {
    ct_dataset *h = ct_dataset_fewshot(d, 0, 0); /* k = 0: a full copy, in order */
    if (h && n > 0 && n < h->n_items) {
        for (int64_t i = n; i < h->n_items; i++) {
            free(h->items[i].path);
            if (h->masks) free(h->masks[i]);
        }
        h->n_items = n;
    }
    return h;
}

ct_dataset *ct_dataset_partial_labels(const ct_dataset *d, double portion, uint64_t seed) {
    if (!d || !d->targets || !(portion > 0)) {
        ct_set_error(CT_ERR_ARG, "partial labels: %s", !d || !d->targets
                     ? "the dataset is not multi-label" : "the portion must be in (0, 1]");
        return NULL;
    }
    ct_dataset *out = ct_dataset_head(d, 0);
    if (!out || portion >= 1) return out;
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(seed, "dataset.partial_labels"));
    int64_t m = out->n_items * (int64_t)out->n_classes;
    for (int64_t i = 0; i < m; i++) {
        double u = (double)(ct_rng_u64(&r) >> 11) * 0x1.0p-53;
        if (out->targets[i] >= 0 && !(u < portion)) out->targets[i] = -1;
    }
    return out;
}
