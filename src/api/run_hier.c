/* Hierarchy runs (ct_run_cfg.taxonomy*): the run's taxonomy, the node
 * scores of its test split and ProTeCt's metrics, shared by ct_run and the
 * evaluation of a saved run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/run.h"
#include "base/error.h"
#include "base/file.h"

ct_status ct_run_taxonomy(const ct_run_cfg *cfg, bool ml, const ct_taxonomy **tax,
                          ct_taxonomy **owned) {
    *tax = NULL, *owned = NULL;
    const ct_dataset *tr = cfg->data->train;
    if (!cfg->taxonomy && !cfg->taxonomy_path) {
        if (cfg->method->taxonomy && !cfg->import_from)
            return ct_set_error(CT_ERR_ARG, "run: %s trains with a class taxonomy: give one "
                                "(ct_run_cfg.taxonomy_path, --taxonomy FILE; "
                                "docs/training.md, \"Hierarchy runs\")", cfg->method->name);
        return CT_OK;
    }
    if (ml)
        return ct_set_error(CT_ERR_UNSUPPORTED, "run: a taxonomy needs a single-label dataset; "
                            "%s is multi-label", tr->name);
    ct_status s;
    if (cfg->taxonomy) {
        const ct_taxonomy *t = cfg->taxonomy;
        bool same = t->n_classes == tr->n_classes;
        for (int k = 0; same && k < tr->n_classes; k++)
            same = !strcmp(t->names[t->class_node[k]], tr->classnames[k]);
        if (!same)
            return ct_set_error(CT_ERR_ARG, "run: the taxonomy %s has other leaves than %s's %d "
                                "classes", t->path ? t->path : "", tr->name, tr->n_classes);
        *tax = t;
        return CT_OK;
    }
    if ((s = ct_taxonomy_load(cfg->taxonomy_path, (const char *const *)tr->classnames,
                              tr->n_classes, owned)) != CT_OK)
        return s;
    *tax = *owned;
    return CT_OK;
}

ct_status ct_taxonomy_save(const ct_taxonomy *t, const char *path) {
    if (!t || !path) return ct_set_error(CT_ERR_ARG, "taxonomy save: NULL argument");
    /* a root that is a node's parent must not clash with a node name */
    const char *root = t->root && *t->root ? t->root : "root";
    for (int i = 0; i < t->n_nodes; i++)
        if (!strcmp(t->names[i], root) || strpbrk(t->names[i], "\t\r\n") ||
            t->names[i][0] == ' ' || t->names[i][0] == 0 ||
            t->names[i][strlen(t->names[i]) - 1] == ' ')
            return ct_set_error(CT_ERR_ARG, "taxonomy save %s: node name '%s' cannot be written "
                                "as a taxonomy line", path, t->names[i]);
    if (strpbrk(root, "\t\r\n") || root[0] == '#')
        return ct_set_error(CT_ERR_ARG, "taxonomy save %s: root name '%s'", path, root);
    size_t cap = 64, len = 0;
    for (int i = 0; i < t->n_nodes; i++) cap += strlen(t->names[i]) * 2 + strlen(root) + 4;
    char *buf = malloc(cap);
    if (!buf) return ct_set_error(CT_ERR_NOMEM, "taxonomy save: out of memory");
    len += (size_t)snprintf(buf, cap, "# the run's class taxonomy (parent<TAB>child)\n");
    for (int i = 0; i < t->n_nodes; i++) {
        const char *p = t->parent[i] < 0 ? root : t->names[t->parent[i]];
        if (p[0] == '#') {
            free(buf);
            return ct_set_error(CT_ERR_ARG, "taxonomy save %s: parent name '%s' starts with '#'",
                                path, p);
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s\t%s\n", p, t->names[i]);
    }
    ct_status s = ct_write_file_atomic(path, buf, len);
    free(buf);
    return s;
}

/* A state of m for the node names with trained's learned tensors, when
 * they do not depend on the classes (as the run's base-to-novel check). */
static void *node_state(const ct_method *m, void *trained, const ct_task *task, ct_kv *hp,
                        const ct_taxonomy *tax) {
    if (m->fit || m->multi_label) return NULL;
    ct_task nt = *task;
    nt.n_classes = tax->n_nodes, nt.classnames = tax->names, nt.taxonomy = NULL;
    void *st = NULL, *probe = NULL;
    if (m->create(&nt, hp, &st) != CT_OK) return NULL;
    ct_tensor *a[256], *b[256], *c[256];
    int na = m->params ? m->params(trained, a, 256) : 0;
    int nb = m->params ? m->params(st, b, 256) : 0;
    bool same = na == nb;
    for (int i = 0; same && i < na; i++) same = ct_tensor_same_shape(a[i], b[i]);
    if (same && na > 0) {
        /* tensors sized by the class count would match by chance only */
        char **names = malloc((size_t)(tax->n_nodes + 1) * sizeof *names);
        ct_task t3 = nt;
        if (names) {
            memcpy(names, tax->names, (size_t)tax->n_nodes * sizeof *names);
            names[tax->n_nodes] = "object";
            t3.n_classes = tax->n_nodes + 1, t3.classnames = names;
        }
        same = names && m->create(&t3, hp, &probe) == CT_OK;
        int nc = same ? m->params(probe, c, 256) : 0;
        same = same && nc == na;
        for (int i = 0; same && i < na; i++) same = ct_tensor_same_shape(c[i], b[i]);
        if (probe) m->destroy(probe);
        free(names);
    }
    if (!same) {
        m->destroy(st);
        return NULL;
    }
    for (int i = 0; i < na; i++) memcpy(b[i]->data, a[i]->data, (size_t)a[i]->numel * sizeof(float));
    return st;
}

ct_status ct_run_hierarchy(const ct_method *m, void *trained, const ct_task *task, ct_kv *hp,
                           const ct_taxonomy *tax, const ct_features *f,
                           const ct_dataset *images, const float *leaf_scores, const int *labels,
                           int64_t n, ct_metrics *out) {
    int N = tax->n_nodes;
    float *ns = malloc((size_t)(n ? n : 1) * (size_t)N * sizeof *ns);
    if (!ns) return ct_set_error(CT_ERR_NOMEM, "run: out of memory");
    bool by_image = ct_method_scores_images(m);
    bool can = by_image ? images && images->n_items == n : f != NULL;
    void *st = can ? node_state(m, trained, task, hp, tax) : NULL;
    ct_status s;
    if (st) {
        s = by_image ? ct_predict_images(m, st, task, images, ns) : ct_predict(m, st, f, ns);
        m->destroy(st);
        out->node_scores_from = "prompts";
    } else {
        s = ct_taxonomy_node_scores_from_leaves(tax, leaf_scores, n, ns);
        out->node_scores_from = "class probabilities";
    }
    ct_hier_metrics hm;
    if (s == CT_OK)
        s = ct_hier_metrics_compute(tax, ns, labels, n, CT_HIER_NTREE_DEFAULT,
                                    CT_HIER_CUT_SEED_DEFAULT, &hm, NULL);
    if (s == CT_OK) {
        out->hierarchy = true;
        out->leaf_acc = hm.leaf_acc, out->hca = hm.hca, out->mta = hm.mta;
        out->n_cuts = hm.n_cuts;
    }
    free(ns);
    return s;
}
