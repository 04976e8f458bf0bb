#!/usr/bin/python3
"""CPL's reference outputs (tests/fixtures/methods/cpl_ref.h) on the shared
tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_cpl_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

CPL (He et al., EMNLP 2022) re-implemented from the math of eric-ai-lab/CPL
trainers/cocoopcf.py, utils/solver.py and Dassl.pytorch/dassl/utils/tools.py
(not their code), on gen_cocoop_ref.py's CoCoOp forward (ctx_init
"a photo of a", whole 77-token prompts pooled at argmax(ids)):
  - raw class-name text features t_k = encode_text(tokenize(name)) (no
    template, '_' read as ' ', unnormalised); negative class of c = argmax
    over k != c of cos(t_c, t_k) (the BERTScore substitute); distractor of
    c = the training feature of its negative class (one per class here);
  - solver.py's greedy branch, literally: src = x; S = []; up to E times:
    for every i not in S, put nx[i] into src, l = ls * normalize(src) . t_neg
    (ls = the logit_scale parameter, not its exp), keep the largest l above
    0.0 (edit -1 when none: Python's last index); S += [edit];
    src[edit] = nx[edit]; stop when ls cos(src, t_neg) > ls cos(src, t_pos).
    ust = -1 everywhere, +1 on S (for the first image of each class);
  - u = clamp(0.999 ust + 0.001 U[:, c], 0, 1) (mupdate); cf = normalize((1
    - u) xn + u nxn) per dimension (cf_mix=dims) or with u[0] for every
    dimension (cf_mix=row0: cfgen's broadcast at batch 1, row 0);
  - per image: CE of exp(logit_scale) xn . txt_k, xloss = mean_k -log
    softmax([cos(txt_k, xn), cos(txt_k, cf)])[0], ||u||_2; the loss is the
    CE over the batch + lam * mean_i xloss_i + 0.07 * mean_i ||u_i|| (the
    code at batch 1, averaged over the batch's images).
Three SGD steps (momentum 0.9, weight decay 5e-4) on one batch. Float64
throughout; starting values rounded to float32. The seed is chosen so that
every greedy choice, the stopping tests and the negative classes are away
from ties (MARGIN), so float32 C makes the same choices, and so that the
mask's first dimension is set for one image and not for another (row0
case meaningful).
"""
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "methods")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ccref = load_module("gen_cocoop_ref", os.path.join(HERE, "gen_cocoop_ref.py"))
coopref = ccref.coopref
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
CLASSNAMES = coopref.CLASSNAMES
B, DIV = 3, 4
LAM, CONTROL, MOM = 1.0, 0.07, 0.999
LR = 0.01
MARGIN = 2e-4


def name_features(P, tok):
    ids = torch.tensor([tok.row(c.replace("_", " ")) for c in CLASSNAMES])
    E = P["token_embedding.weight"][ids]
    t, _ = clipref.encode_text_from_embeds(P, TINY, E, ids.argmax(dim=-1))
    return t


def negatives(t):
    tn = F.normalize(t, dim=-1)
    cs = tn @ tn.t()
    neg, gap = [], 1e9
    for c in range(len(t)):
        row = [(float(cs[c, k]), k) for k in range(len(t)) if k != c]
        row.sort(reverse=True)
        neg.append(row[0][1])
        gap = min(gap, row[0][0] - row[1][0])
    return neg, gap


def solver(x, nx, tp, tn, ls):
    """solver.py's greedy loop for one image; the mask and the smallest gap
    between a decision and its alternative."""
    src, S, gap, D = x.clone(), [], 1e9, x.shape[0]
    for _ in range(D):
        vals = []
        for i in range(D):
            if any(s == i for s in S):
                continue
            tmp = src[i].clone()
            src[i] = nx[i]
            vals.append((float(ls * (src / src.norm()) @ tn), i))
            src[i] = tmp
        highest, edit = 0.0, -1
        for l, i in vals:
            if l > highest:
                highest, edit = l, i
        ls_sorted = sorted([l for l, _ in vals] + [0.0], reverse=True)
        gap = min(gap, abs(ls_sorted[0] - ls_sorted[1]) if len(ls_sorted) > 1 else 1e9)
        S.append(edit)
        src[edit] = nx[edit]
        f = src / src.norm()
        lp, ln = float(ls * f @ tp), float(ls * f @ tn)
        gap = min(gap, abs(ln - lp))
        if ln > lp:
            break
    u = -torch.ones(D)
    u[S] = 1
    return u, gap


def loss_fn(P, pr, ctx, w1, b1, w2, b2, U, img, labels, ust, nfeat, row0):
    logits, xls, norms = [], [], []
    ls = P["logit_scale"]
    x = F.normalize(img, dim=-1)
    pi = F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2)
    for i in range(img.shape[0]):
        c = int(labels[i])
        E = pr.assemble(ctx + pi[i])
        txt, _ = clipref.encode_text_from_embeds(P, TINY, E, pr.eot)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits.append(ls.exp() * x[i] @ txt.t())
        u = torch.clamp(ust[c] * MOM + U[:, c] * (1.0 - MOM), min=0, max=1)
        nxn = F.normalize(nfeat[c], dim=-1)
        m = u[0] if row0 else u
        cf = F.normalize((1 - m) * x[i] + m * nxn, dim=-1)
        pos = torch.cosine_similarity(txt, x[i].unsqueeze(0), dim=1)
        neg = torch.cosine_similarity(txt, cf.unsqueeze(0), dim=1)
        xl = -torch.log(F.softmax(torch.stack((pos, neg), 1), 1)[:, 0])
        xls.append(xl.mean())
        norms.append(torch.norm(u, dim=0))
    logits = torch.stack(logits)
    loss = (F.cross_entropy(logits, labels) + LAM * torch.stack(xls).mean()
            + CONTROL * torch.stack(norms).mean())
    return logits, loss


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = ccref.load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    K, Ed, W = len(CLASSNAMES), TINY["embed"], TINY["t_width"]
    tname = name_features(P, tok)
    neg, ngap = negatives(tname)
    assert ngap > MARGIN, ngap
    ls = float(P["logit_scale"])
    labels = torch.tensor([1, 3, 0])
    for seed in range(1, 500):
        g = torch.Generator().manual_seed(seed)
        img = torch.randn(B, Ed, generator=g, dtype=torch.float32).double()
        train = torch.randn(K, Ed, generator=g, dtype=torch.float32).double()
        nfeat = train[neg]                       # distractor feature of each class
        ust, gap, first = {}, 1e9, []
        for i in range(B):
            c = int(labels[i])
            if c not in ust:
                ust[c], gp = solver(img[i], nfeat[c], tname[c], tname[neg[c]], ls)
                gap = min(gap, gp)
                first.append(float(ust[c][0]))
        if gap > MARGIN and 1.0 in first and -1.0 in first:
            break
    else:
        sys.exit("no seed away from ties")
    print("seed", seed, "solver gap %.3g" % gap, "negatives", neg,
          "mask sizes", [int((ust[c] > 0).sum()) for c in sorted(ust)], file=sys.stderr)
    pr = coopref.Prompts(tok, P, 4, "a_photo_of_a", False, "end")
    h = Ed // DIV

    def f32(*shape, scale):
        return ((torch.rand(*shape, generator=g, dtype=torch.float32) * 2 - 1) * scale).double()

    ctx0 = pr.init.float().double() + f32(4, W, scale=0.01)
    w1, b1 = f32(h, Ed, scale=0.5), f32(h, scale=0.5)
    w2, b2 = f32(W, h, scale=0.5), f32(W, scale=0.1)
    # U away from 1 so that clamp's side is the same in float32 and float64
    U0 = 1 + torch.sign(f32(Ed, K, scale=1)) * (0.02 + f32(Ed, K, scale=0.3).abs())
    fmt, carray = coopref.fmt, coopref.carray
    out = ["/* Generated by tools/ref/gen_cpl_ref.py (torch %s, seed %d) -- do not edit. */"
           % (torch.__version__, seed), "#ifndef CT_TEST_CPL_REF_H", "#define CT_TEST_CPL_REF_H",
           "", "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*) */",
           "#define CPLREF_B %d" % B, "#define CPLREF_H %d" % h, "#define CPLREF_DIV %d" % DIV,
           "static const float cplref_lr = %.9gf;" % LR,
           carray("cplref_img", img, "float"), carray("cplref_train", train, "float"),
           "static const int cplref_labels[CPLREF_B] = {%s};" % ", ".join(str(int(v)) for v in labels),
           "static const int cplref_neg[%d] = {%s};" % (K, ", ".join(str(v) for v in neg)),
           "/* the solver's masks (+1 edited) of the batch's classes, row c */",
           carray("cplref_ust", torch.stack([ust.get(c, torch.zeros(Ed)) for c in range(K)]),
                  "float")]
    names = ("ctx", "w1", "b1", "w2", "b2", "u")
    for nm, t in zip(names, (ctx0, w1, b1, w2, b2, U0)):
        out.append(carray("cplref_%s" % nm, t, "float"))
    for case, row0 in (("dims", False), ("row0", True)):
        ps = [t.clone().requires_grad_(True) for t in (ctx0, w1, b1, w2, b2, U0)]
        logits, loss = loss_fn(P, pr, *ps, img, labels, ust, nfeat, row0)
        loss.backward()
        pre = "cplref_" + case
        out.append(carray(pre + "_logits", logits))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        for nm, p in zip(names, ps):
            out.append(carray("%s_grad_%s" % (pre, nm), p.grad))
        print(case, "loss %.6f" % loss.item(), "max|grad|",
              ["%.3g" % p.grad.abs().max().item() for p in ps], file=sys.stderr)
        ps = [t.clone().requires_grad_(True) for t in (ctx0, w1, b1, w2, b2, U0)]
        opt = torch.optim.SGD(ps, lr=LR, momentum=0.9, weight_decay=5e-4)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            _, l = loss_fn(P, pr, *ps, img, labels, ust, nfeat, row0)
            l.backward()
            losses.append(l.item())
            opt.step()
        with torch.no_grad():
            logits, _ = loss_fn(P, pr, *ps, img, labels, ust, nfeat, row0)
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, fmt(losses)))
        for nm, p in zip(names, ps):
            out.append(carray("%s_sgd_%s" % (pre, nm), p))
        out.append(carray(pre + "_sgd_logits", logits))
        print(case, "losses", losses, file=sys.stderr)
    out.append("#endif")
    path = os.path.join(OUT_DIR, "cpl_ref.h")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
