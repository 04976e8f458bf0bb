#!/usr/bin/python3
"""Write tests/fixtures/hier_ref.h: ProTeCt's hierarchy metrics (leaf
accuracy, hierarchical consistency, tree-cut accuracies) of fixed node
scores on two taxonomies, computed as gina9726/ProTeCt computes them.

Run with the system interpreter (numpy only):
    /usr/bin/python3 tools/ref/gen_hier_ref.py [out.h]

A numpy port of the official structures and metrics:
  - loader/treelibs.py Tree: node ids in depth-first preorder (children in
    edge order here, os.listdir order there), leaf_nodes / intnl_nodes
    sorted by node id, sublabels[leaf, intnl] = child index on the path;
    gen_param_lists (an internal node's children as parameter indices =
    node id - 1), gen_codewords('class'), gen_dependence;
  - loader/hierdata.py: param_names (every node but the root), leaf_nodes,
    masks (passed / blocked parameters of each internal node, the root's
    -1 index included as written), codewords;
  - models/treecut_generator.py get_randomcut for a given keep vector P
    (P[0] = 1; P *= dependence @ P == dependence_cnt; the label set mask;
    tgt_mapping = torch.where(codewords[mask, :])[0]);
  - engine.py eval_one_epoch + metrics.py hierConsistency: a sample is
    consistent when the argmax over every internal node's children (the
    nodes on its path, root included) and over the leaves is right;
  - test.py inference: top-1 accuracy over a cut's label set with targets
    tgt_mapping[target].
Every cut is enumerated here (every P over the internal nodes, duplicates
dropped); the C test checks that its cuts are among them and that its MTA
is the mean of these accuracies over its cuts.

The scores are random normal (n, N) in this script's node order; the C test
maps them to its own by node name. Labels are the dataset's class indices
(class order, not leaf order): the port maps them to leaf ids by name."""
import itertools
import sys

import numpy as np


class Tree:
    def __init__(self, edges, root):
        self.children = {}
        self.parent = {}
        for p, c in edges:
            self.children.setdefault(p, []).append(c)
            self.parent[c] = p
        self.root = root
        order = []

        def dfs(x):
            order.append(x)
            for c in self.children.get(x, []):
                dfs(c)
        dfs(root)
        self.node_id = {x: i for i, x in enumerate(order)}
        self.order = order
        self.leaves = [x for x in order if x not in self.children]
        self.intnl = [x for x in order if x in self.children]
        # sublabels (treelibs _gen_sublabels)
        L, I = len(self.leaves), len(self.intnl)
        self.sublabels = -np.ones([L, I])
        inid = {x: i for i, x in enumerate(self.intnl)}
        for li, x in enumerate(self.leaves):
            node = x
            while node != root:
                par = self.parent[node]
                self.sublabels[li, inid[par]] = self.children[par].index(node)
                node = par
        # dependence (gen_dependence)
        self.dependence = np.eye(I)
        for i, x in enumerate(self.intnl):
            node = x
            while node != root:
                par = self.parent[node]
                self.dependence[i, inid[par]] = 1
                node = par
        self.param_names = order[1:]
        self.intnl_params = [[self.node_id[c] - 1 for c in self.children[x]] for x in self.intnl]
        self.leaf_nodes = np.array([self.node_id[x] - 1 for x in self.leaves])
        # codewords('class')
        cw = {}
        for li, x in enumerate(self.leaves):
            v = np.zeros(L, dtype=int); v[li] = 1; cw[x] = v
        for i, x in enumerate(self.intnl):
            cw[x] = (self.sublabels[:, i] >= 0).astype(int)
        self.codewords = np.array([cw[x] for x in order[1:]])
        # masks (hierdata.py)
        P = len(self.param_names)
        masks = -np.ones((I, P))
        ip = np.array([self.node_id[x] - 1 for x in self.intnl])
        for i in range(I):
            leaf_idx = self.sublabels[:, i] >= 0
            masks[i, self.leaf_nodes[leaf_idx]] = 1
            idx = self.dependence[:, i] == 1
            masks[i, ip[idx]] = 1  # ip[0] = -1: the last column, as written
            idx = self.dependence[i, 1:] == 1
            masks[i, ip[1:][idx]] = 0
        m = masks[None]
        self.masks = np.concatenate(((1 - m).astype(bool), m.astype(bool)))

    def randomcut(self, P):
        P = P.astype(float).copy()
        P[0] = 1
        cond = self.dependence @ P == self.dependence.sum(1)
        P *= cond
        I = len(self.intnl)
        mask = 1 - self.masks[P.astype(int), range(I)].astype(int)
        mask = (1 - mask.sum(0).astype(bool).astype(int)).astype(bool)
        tgt = np.nonzero(self.codewords[mask, :])[0]
        return mask, tgt


def metrics(tree, classes, scores, labels):
    leaf_of_class = [tree.leaves.index(c) for c in classes]
    target = np.array([leaf_of_class[y] for y in labels])
    n = len(labels)
    incorrect = np.zeros(n, dtype=bool)
    for i, x in enumerate(tree.intnl_params):
        nt = tree.sublabels[:, i][target]
        idx = nt >= 0
        if idx.sum() == 0:
            continue
        pred = scores[idx][:, x].argmax(1)
        incorrect[np.nonzero(idx)[0]] |= pred != nt[idx]
    leaf_pred = scores[:, tree.leaf_nodes].argmax(1)
    leaf_ok = leaf_pred == target
    incorrect |= ~leaf_ok
    cuts, accs = [], []
    seen = set()
    I = len(tree.intnl)
    for bits in itertools.product([0, 1], repeat=I - 1):
        P = np.array((1,) + bits)
        mask, tgt = tree.randomcut(P)
        key = tuple(np.nonzero(mask)[0])
        if key in seen:
            continue
        seen.add(key)
        logits = scores[:, mask]
        acc = float((logits.argmax(1) == tgt[target]).mean())
        cuts.append(mask.astype(int))
        accs.append(acc)
    return float(leaf_ok.mean()), float((~incorrect).mean()), cuts, accs


def fmt_f(v):
    return "%.9g" % v


def emit_case(out, name, text, classes, tree, n, rng):
    N = len(tree.param_names)
    scores = rng.standard_normal((n, N)).astype(np.float32)
    labels = rng.integers(0, len(classes), size=n)
    # make some items right at every level, so HCA is not trivially 0
    for r in range(0, n, 3):
        leaf = tree.node_id[classes[labels[r]]]
        node = tree.order[leaf]
        while node != tree.root:
            scores[r, tree.node_id[node] - 1] += 3.0
            node = tree.parent[node]
    la, hca, cuts, accs = metrics(tree, classes, scores.astype(np.float64), labels)
    out.append("static const char hier_%s_text[] =" % name)
    for line in text.splitlines():
        out.append('    "%s\\n"' % line.replace("\t", "\\t"))
    out.append(";")
    out.append("static const char *const hier_%s_classes[] = {%s};" % (
        name, ", ".join('"%s"' % c for c in classes)))
    out.append("static const char *const hier_%s_nodes[] = {%s};" % (
        name, ", ".join('"%s"' % c for c in tree.param_names)))
    out.append("static const float hier_%s_scores[] = {%s};" % (
        name, ", ".join(fmt_f(v) for v in scores.ravel())))
    out.append("static const int hier_%s_labels[] = {%s};" % (
        name, ", ".join(str(int(v)) for v in labels)))
    out.append("static const unsigned char hier_%s_cuts[] = {%s};" % (
        name, ", ".join(str(int(v)) for c in cuts for v in c)))
    out.append("static const double hier_%s_cut_acc[] = {%s};" % (
        name, ", ".join(repr(a) for a in accs)))
    out.append("static const hier_ref_case hier_%s = {\"%s\", hier_%s_text, %d, hier_%s_classes, "
               "%d, hier_%s_nodes, %d, hier_%s_scores, hier_%s_labels, %r, %r, %d, hier_%s_cuts, "
               "hier_%s_cut_acc, %r};" % (
                   name, name, name, len(classes), name, N, name, n, name, name, la, hca,
                   len(cuts), name, name, float(np.mean(accs))))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hier_ref.h"
    rng = np.random.default_rng(15)
    out = ["/* Generated by tools/ref/gen_hier_ref.py (numpy %s, the script's port of "
           "gina9726/ProTeCt treelibs.py / hierdata.py / treecut_generator.py / engine.py / "
           "test.py) -- do not edit. */" % np.__version__,
           "#ifndef CT_TEST_HIER_REF_H", "#define CT_TEST_HIER_REF_H", "",
           "typedef struct hier_ref_case {",
           "    const char *name, *text;",
           "    int K;",
           "    const char *const *classes;",
           "    int N;",
           "    const char *const *nodes; /* the reference's node order (preorder) */",
           "    int n;",
           "    const float *scores;      /* (n, N) in that order */",
           "    const int *labels;        /* class indices */",
           "    double leaf_acc, hca;",
           "    int n_cuts;               /* every distinct cut */",
           "    const unsigned char *cuts;/* (n_cuts, N) in the reference's order */",
           "    const double *cut_acc;    /* (n_cuts) */",
           "    double mta_all;           /* mean over every cut */",
           "} hier_ref_case;", ""]
    # 1. the shipped Fashion-MNIST taxonomy (20 cuts: every cut is evaluated)
    text = open("data/taxonomies/fashion-mnist.txt").read()
    edges = [tuple(s.strip() for s in l.split("\t")) for l in text.splitlines()
             if l.strip() and not l.startswith("#")]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
    emit_case(out, "fmnist", "\n".join("%s\t%s" % e for e in edges), classes,
              Tree(edges, "root"), 60, rng)
    # 2. a deeper tree with more than 25 cuts (the sampled set), an implied
    # root over three tops, a single-child chain, classes in another order
    edges = [("animal", "mammal"), ("animal", "bird"), ("mammal", "cat"), ("mammal", "dog"),
             ("mammal", "rodent"), ("rodent", "mouse"), ("rodent", "rat"), ("bird", "sparrow"),
             ("bird", "raptor"), ("raptor", "hawk"), ("raptor", "eagle"),
             ("vehicle", "car"), ("vehicle", "boat"), ("car", "sedan"), ("car", "truck"),
             ("boat", "ship"), ("ship", "tanker"), ("plant", "tree"), ("tree", "oak"),
             ("plant", "flower"), ("flower", "rose"), ("flower", "tulip")]
    classes = ["truck", "rose", "cat", "tanker", "mouse", "hawk", "oak", "dog", "sedan", "rat",
               "sparrow", "eagle", "tulip"]
    tree = Tree([("root", "animal"), ("root", "vehicle"), ("root", "plant")] + edges, "root")
    emit_case(out, "deep", "# implied root\n" + "\n".join("%s\t%s" % e for e in edges), classes,
              tree, 80, rng)
    out += ["", "#endif", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
