#!/usr/bin/python3
"""ProTeCt on MaPLe: reference outputs on the shipped model
(tests/fixtures/methods/protect_maple_ref.safetensors, F32).

    /usr/bin/python3 tools/ref/gen_protect_maple_ref.py

Written from gina9726/ProTeCt engine.py train_one_epoch (loss "ce",
lambda 0.5, a treecut generator) and models/maple.py (CustomCLIP.
forward_custom_label_set: MaPLe's prompts for a list of names, exp(
logit_scale) cos(image, text)), reusing gen_image_prompts_ref.py's MaPLe
encoders (depth 2: ctx, proj, T_1, F_1; learnables set by its formula),
pixels and tokenizer, and gen_hier_ref.py's port of ProTeCt's tree
structures and get_randomcut for a given keep vector.

Taxonomy: root -> clothes -> shirt; root -> gear -> ankle_boot, bag; the
task's classes (shirt, ankle_boot, bag), labels (0, 2, 1). Cut a keeps root
and clothes and drops gear (the cut: shirt, gear); cut b keeps every node
(the cut: the leaves). Loss, gradients and leaf logits with cut a and the
loss with cut b, then three SGD steps (lr 0.01, momentum 0.9, weight decay
5e-4, as the other image-prompt fixtures) with cut a."""
import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ip = load_module("gen_image_prompts_ref", os.path.join(HERE, "gen_image_prompts_ref.py"))
hr = load_module("gen_hier_ref", os.path.join(HERE, "gen_hier_ref.py"))
torch.set_default_dtype(torch.float64)
OUT = os.path.join(ip.ROOT, "tests", "fixtures", "methods", "protect_maple_ref.safetensors")
EDGES = [("root", "clothes"), ("clothes", "shirt"), ("root", "gear"), ("gear", "ankle_boot"),
         ("gear", "bag")]
LAMBDA = 0.5


def main():
    P, c = ip.load_model()
    tok = ip.Tok(ip.MODEL)
    S, Wv, Wt = c["image"], c["v_width"], c["t_width"]
    px = ip.pixels(S)
    tree = hr.Tree(EDGES, "root")
    names = tree.param_names
    assert names == ["clothes", "shirt", "gear", "ankle_boot", "bag"]
    ids = torch.tensor([tok.row("a photo of a %s." % n.replace("_", " "), c["ctx"]) for n in names])
    target = torch.tensor([tree.leaves.index(ip.CLASSNAMES[y]) for y in ip.LABELS])
    leaf_params = [names.index(k) for k in ip.CLASSNAMES]
    q = [ip.formula((2, Wt), 0, 0.05), ip.formula((Wv, Wt), 1, 0.05), ip.formula((Wv,), 2, 0.05),
         ip.formula((2, Wt), 3, 0.05), ip.formula((Wv, Wt), 4, 0.05), ip.formula((Wv,), 5, 0.05)]

    def forward(q):
        txt = ip.prompted_text(P, c, ids, q[0], [q[3]])
        V = [q[0] @ q[1].t() + q[2], q[3] @ q[4].t() + q[5]]
        img, _, _ = ip.clipref.encode_image(P, c, px, V)
        return img, txt

    def loss_of(q, keep):
        img, txt = forward(q)
        losses = []
        for i, x in enumerate(tree.intnl_params):
            nt = torch.tensor(tree.sublabels[:, i])[target].long()
            idx = nt >= 0
            if idx.sum() > 0:
                losses.append(F.cross_entropy(ip.logits_of(P, img[idx], txt[x]), nt[idx]))
        loss_node = torch.stack(losses).mean()
        mask, tgt = tree.randomcut(np.array(keep))
        cut = np.nonzero(mask)[0].tolist()
        loss = F.cross_entropy(ip.logits_of(P, img, txt[cut]), torch.tensor(tgt)[target])
        return loss + LAMBDA * loss_node, ip.logits_of(P, img, txt[leaf_params]), mask

    out = {}
    keep_a, keep_b = [1, 1, 0], [1, 1, 1]
    loss, leaf_logits, mask = loss_of(q, keep_a)
    assert mask.tolist() == [False, True, True, False, False]
    grads = torch.autograd.grad(loss, q)
    out["pm.cut_a"] = torch.tensor(mask.astype(float))
    out["pm.loss"] = loss.detach().reshape(1)
    out["pm.logits"] = leaf_logits.detach()
    for k, g in enumerate(grads):
        ip.put(out, "pm.grad.%d" % k, g)
    loss_b, _, mask_b = loss_of(q, keep_b)
    out["pm.cut_b"] = torch.tensor(mask_b.astype(float))
    out["pm.loss_b"] = loss_b.detach().reshape(1)
    opt = torch.optim.SGD(q, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        opt.zero_grad()
        loss_of(q, keep_a)[0].backward()
        opt.step()
    for k, p in enumerate(q):
        ip.put(out, "pm.after.%d" % k, p)
    print("protect-maple loss", float(loss), "loss b", float(loss_b),
          "leaf logits", leaf_logits.detach().numpy().round(4).tolist())
    ip.clipref.st_write(OUT, {k: v.detach().float().contiguous() for k, v in out.items()})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
