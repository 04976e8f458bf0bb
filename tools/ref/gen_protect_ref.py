#!/usr/bin/python3
"""ProTeCt's reference outputs on the tiny method fixture
(tests/fixtures/methods/protect_ref.h).

    /usr/bin/python3 tools/ref/gen_protect_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

(simple_tokenizer.py as in gen_coop_ref.py.) Reads the model written by
gen_coop_ref.py (tests/fixtures/methods/tiny) and reuses its CoOp prompt
assembly (Prompts: "X x 16 {name}.", the learned context at positions
1..16) and gen_hier_ref.py's port of ProTeCt's tree structures
(loader/treelibs.py, loader/hierdata.py: param_names, intnl_nodes'
parameter lists, sublabels, masks, codewords, dependence) and of
models/treecut_generator.py get_randomcut for a given keep vector P.

The loss is engine.py train_one_epoch's, written here from the official
file (cfg loss "ce", lambda 0.5, a treecut generator):
  - node loss: for every internal node i (root first) with items below it
    (sublabels[target, i] >= 0), logits = model(image[idx], names of i's
    children) and CE against the child index; loss_node = the mean of those;
  - tree-cut loss: label_set, tgt_mapping = get_randomcut(); logits =
    model(image, names in label_set); CE against tgt_mapping[target];
  - loss = tree-cut CE + lambda * loss_node.
model(image, text) is CoOp's CustomCLIP on the given names: the shared
context, each name's prompt through the text tower, exp(logit_scale) *
cos. Targets in the official code are leaf ids (leaves in node order); the
batch labels here are class indices in the task's order, mapped by name.

The cut is fixed (the C test feeds it through ct_protect_fix_cut): P keeps
the root, "object" and "garment" and drops "toy" (so the cut is toy, crane
(bird), T-shirt/top). A second loss/gradient uses P = all ones (the cut = the
leaves). Three SGD steps (lr 0.02, no momentum, no weight decay: the
official configs and optim/optimizer.py's defaults) with the first cut."""
import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cr = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
hr = load_module("gen_hier_ref", os.path.join(HERE, "gen_hier_ref.py"))
clipref = cr.clipref
torch.set_default_dtype(torch.float64)

CLASSES = list(cr.CLASSNAMES)  # the task's classes, in label order
# internal node names are words of the tests' BPE subset (tests/fixtures/bpe/
# clip_subset), so the C side tokenizes them as OpenAI's vocabulary does
EDGES = [("root", "object"), ("object", "toy"), ("toy", "golden_retriever"),
         ("toy", "sea lion"), ("toy", "cat"), ("object", "crane (bird)"),
         ("root", "garment"), ("garment", "T-shirt/top")]
LAMBDA, LR = 0.5, 0.02


def read_model():
    d = os.path.join(cr.OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def text_features(P, pr, ctx):
    txt, _ = clipref.encode_text_from_embeds(P, cr.TINY, pr.assemble(ctx), pr.eot)
    return txt


def model(P, img, txt_all, params):
    """CustomCLIP(image, text) on the names param_names[params]."""
    return clipref.clip_logits(P, img, txt_all[params])


def protect_loss(P, pr, tree, ctx, img, target, keep):
    txt = text_features(P, pr, ctx)
    losses = []
    for i, x in enumerate(tree.intnl_params):
        nt = torch.tensor(tree.sublabels[:, i])[target].long()
        idx = nt >= 0
        if idx.sum() > 0:
            nlogits = model(P, img[idx], txt, x)
            losses.append(F.cross_entropy(nlogits, nt[idx]))
    loss_node = torch.stack(losses).mean()
    mask, tgt = tree.randomcut(np.array(keep))
    params = np.nonzero(mask)[0].tolist()
    logits = model(P, img, txt, params)
    loss = F.cross_entropy(logits, torch.tensor(tgt)[target]) + LAMBDA * loss_node
    leaf_logits = model(P, img, txt, [tree.param_names.index(c) for c in CLASSES])
    return loss, leaf_logits, mask


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = read_model()
    tok = cr.Tokenizer(sys.argv[1], sys.argv[2])
    tree = hr.Tree(EDGES, "root")
    assert tree.intnl == ["root", "object", "toy", "garment"]
    cr.CLASSNAMES = tree.param_names  # the prompt learner's "classes": every node
    pr = cr.Prompts(tok, P, 16, "", False, "end")
    g = torch.Generator().manual_seed(15)
    B = 10
    img = torch.randn(B, cr.TINY["embed"], generator=g, dtype=torch.float32).double()
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 3, 4, 2, 1])
    target = torch.tensor([tree.leaves.index(CLASSES[int(y)]) for y in labels])
    ctx0 = (torch.randn(16, cr.TINY["t_width"], generator=g, dtype=torch.float32) * 0.02).double()
    keep_a, keep_b = [1, 1, 0, 1], [1, 1, 1, 1]
    out = ["/* Generated by tools/ref/gen_protect_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_PROTECT_REF_H", "#define CT_TEST_PROTECT_REF_H",
           "", "/* Model: tests/fixtures/methods/tiny (F16). */",
           "#define PREF_K %d" % len(CLASSES), "#define PREF_N %d" % len(tree.param_names),
           "#define PREF_B %d" % B,
           "static const char *const pref_classes[PREF_K] = {%s};"
           % ", ".join('"%s"' % c for c in CLASSES),
           "static const char *const pref_nodes[PREF_N] = {%s};"
           % ", ".join('"%s"' % c for c in tree.param_names),
           "static const char pref_taxonomy[] = \"%s\";"
           % "".join("%s\\t%s\\n" % e for e in EDGES),
           cr.carray("pref_img", img, "float"),
           "static const int pref_labels[PREF_B] = {%s};" % ", ".join(str(int(y)) for y in labels),
           cr.carray("pref_ctx", ctx0)]
    for tag, keep in (("a", keep_a), ("b", keep_b)):
        ctx = ctx0.clone().requires_grad_(True)
        loss, leaf_logits, mask = protect_loss(P, pr, tree, ctx, img, target, keep)
        loss.backward()
        out.append("/* cut %s: keep %s over %s */" % (tag, keep, tree.intnl))
        out.append("static const unsigned char pref_cut_%s[PREF_N] = {%s};"
                   % (tag, ", ".join(str(int(v)) for v in mask)))
        out.append("static const double pref_loss_%s = %.17g;" % (tag, loss.item()))
        out.append(cr.carray("pref_grad_%s" % tag, ctx.grad))
        if tag == "a":
            out.append(cr.carray("pref_leaf_logits", leaf_logits))
        print("cut %s: %s loss %.6f |grad| max %.3g" % (
            tag, [n for n, m in zip(tree.param_names, mask) if m], loss.item(),
            ctx.grad.abs().max()))
    ctx = ctx0.clone().requires_grad_(True)
    opt = torch.optim.SGD([ctx], lr=LR, momentum=0, weight_decay=0)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss, _, _ = protect_loss(P, pr, tree, ctx, img, target, keep_a)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    _, leaf_logits, _ = protect_loss(P, pr, tree, ctx, img, target, keep_a)
    out.append("/* after 3 SGD steps (lr 0.02, no momentum, no weight decay) with cut a */")
    out.append("static const double pref_sgd_losses[3] = {%s};" % cr.fmt(losses))
    out.append(cr.carray("pref_sgd_ctx", ctx))
    out.append(cr.carray("pref_sgd_leaf_logits", leaf_logits))
    out += ["", "#endif", ""]
    with open(os.path.join(cr.OUT_DIR, "protect_ref.h"), "w") as f:
        f.write("\n".join(out))
    print("sgd losses", losses)


if __name__ == "__main__":
    main()
