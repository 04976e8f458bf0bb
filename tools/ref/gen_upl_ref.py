#!/usr/bin/python3
"""UPL's reference outputs on the tiny method fixture
(tests/fixtures/methods/upl_ref.h), for tests/test_upl.c.

    /usr/bin/python3 tools/ref/gen_upl_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

(simple_tokenizer.py as in gen_coop_ref.py.) Reads the model written by
gen_coop_ref.py (it is not rewritten) and reuses that script's prompt
assembly; everything in float64. Deterministic (seeded).

Re-implemented from the paper's math and tonyhuang2022/UPL's behaviour
(trainers/upltrainer.py, trainers/utils.py select_top_k_similarity_per_class,
datasets/datasetbase.py read_sstrain_data), not its code:
  - zero-shot logits exp(logit_scale) cos(img, t_k), t_k CLIP's text features
    of "a photo of a {name}." (the task's dataset "test" has no template);
  - confidence = max softmax probability, pseudo-label = argmax;
  - images by decreasing confidence; for every predicted class its first
    TOPK; the kept rows in their original order. The features are drawn so
    that no confidence at a class's cut and no top-two logit pair is within
    1e-3 of each other: the float32 C side must make the same choices;
  - on the pseudo-labelled set, an ensemble of M = 2 generic contexts
    (n_ctx 4, class token at the end): loss = sum of the members' CE,
    logits = mean of the members' logits;
  - three full-batch SGD steps (lr 0.002, momentum 0.9, weight decay 5e-4)
    on the whole pseudo-labelled set (the C test runs them through ct_train
    with one batch per epoch, so the order of the rows does not matter).
"""
import importlib.util
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cr = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = cr.clipref
torch.set_default_dtype(torch.float64)
TEMPLATE = "a photo of a {}."
N, TOPK, M, N_CTX = 48, 8, 2, 4
# how often each class is the source of an unlabelled feature: the last one
# rarely, so that it gets fewer than TOPK pseudo-labels
CLASS_P = [0.3, 0.25, 0.2, 0.2, 0.05]


def read_model():
    d = os.path.join(cr.OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def zeroshot_text(P, tok):
    ids = torch.tensor([tok.row(TEMPLATE.format(c.replace("_", " "))) for c in cr.CLASSNAMES])
    txt, _ = clipref.encode_text_from_embeds(P, cr.TINY, P["token_embedding.weight"][ids],
                                             ids.argmax(dim=-1))
    return txt / txt.norm(dim=-1, keepdim=True)


def select(P, t0, x, topk):
    """(kept rows in order, their pseudo-labels, smallest decision margin)"""
    logits = clipref.clip_logits(P, x, t0)
    prob = F.softmax(logits, dim=-1)
    conf, pred = prob.max(dim=-1)
    order = sorted(range(len(x)), key=lambda i: (-conf[i].item(), i))
    taken, keep = {}, set()
    margin = float("inf")
    top2 = logits.topk(2, dim=-1).values
    margin = min(margin, (top2[:, 0] - top2[:, 1]).min().item())
    by_class = {}
    for i in order:
        c = int(pred[i])
        by_class.setdefault(c, []).append(i)
        if taken.get(c, 0) < topk:
            taken[c] = taken.get(c, 0) + 1
            keep.add(i)
    for c, rows in by_class.items():
        if len(rows) > topk:
            margin = min(margin, (conf[rows[topk - 1]] - conf[rows[topk]]).item())
    rows = sorted(keep)
    counts = [len(by_class.get(c, [])) for c in range(t0.shape[0])]
    return rows, [int(pred[i]) for i in rows], margin, counts


def forward(P, pr, ctxs, img, labels):
    """ensemble logits (mean) and loss (sum of CE)"""
    logits, loss = [], 0
    for c in ctxs:
        txt, _ = clipref.encode_text_from_embeds(P, cr.TINY, pr.assemble(c), pr.eot)
        z = clipref.clip_logits(P, img, txt)
        logits.append(z)
        loss = loss + F.cross_entropy(z, labels)
    return sum(logits) / len(logits), loss


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = read_model()
    tok = cr.Tokenizer(sys.argv[1], sys.argv[2])
    t0 = zeroshot_text(P, tok)
    E, W, K = cr.TINY["embed"], cr.TINY["t_width"], len(cr.CLASSNAMES)
    g = torch.Generator().manual_seed(23)
    # features near the class text features, noisy enough that zero-shot errs
    for trial in range(100):
        src = torch.multinomial(torch.tensor(CLASS_P), N, replacement=True, generator=g)
        x = (t0[src] + 0.15 * torch.randn(N, E, generator=g)).float().double()
        rows, labels, margin, counts = select(P, t0, x, TOPK)
        if margin > 1e-3 and min(counts) < TOPK and sum(c > TOPK for c in counts) >= 3:
            break
    else:
        sys.exit("no feature draw with clear margins")
    print("trial %d: predicted per class %s, kept %d rows, smallest margin %.3g"
          % (trial, counts, len(rows), margin))
    sx = x[rows]
    sy = torch.tensor(labels)
    pr = cr.Prompts(tok, P, N_CTX, "", False, "end")
    ctx0 = [(torch.randn(N_CTX, W, generator=g, dtype=torch.float32) * 0.02).double()
            for _ in range(M)]
    ctxs = [c.clone().requires_grad_(True) for c in ctx0]
    logits, loss = forward(P, pr, ctxs, sx, sy)
    loss.backward()
    grads = torch.stack([c.grad for c in ctxs])

    ctxs = [c.clone().requires_grad_(True) for c in ctx0]
    opt = torch.optim.SGD(ctxs, lr=0.002, momentum=0.9, weight_decay=5e-4, dampening=0,
                          nesterov=False)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, l = forward(P, pr, ctxs, sx, sy)
        l.backward()
        losses.append(l.item())
        opt.step()
    sgd_logits, _ = forward(P, pr, ctxs, sx, sy)
    print("loss %.6f, |grad| max %.3g, sgd losses %s" % (loss.item(), grads.abs().max(), losses))

    out = ["/* Generated by tools/ref/gen_upl_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_UPL_REF_H", "#define CT_TEST_UPL_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; class names: coop_ref.h's cref_classnames. */",
           "#define UREF_N %d" % N, "#define UREF_K %d" % K, "#define UREF_E %d" % E,
           "#define UREF_W %d" % W, "#define UREF_TOPK %d" % TOPK, "#define UREF_M %d" % M,
           "#define UREF_NCTX %d" % N_CTX, "#define UREF_NSEL %d" % len(rows), "",
           "/* the unlabelled features; zero-shot predicts %s of them per class */" % counts,
           cr.carray("uref_x", x, "float"),
           "/* the pseudo-labelled set: rows of uref_x (in order) and their labels */",
           "static const int uref_sel_rows[UREF_NSEL] = {%s};" % ", ".join(map(str, rows)),
           "static const int uref_sel_labels[UREF_NSEL] = {%s};" % ", ".join(map(str, labels)),
           "/* ensemble of %d generic contexts (n_ctx %d, end) on the whole pseudo-labelled set */"
           % (M, N_CTX),
           cr.carray("uref_ctx", torch.stack(ctx0)),
           cr.carray("uref_logits", logits),
           "static const double uref_loss = %.17g;" % loss.item(),
           cr.carray("uref_grad", grads),
           "/* after 3 full-batch SGD steps (lr 0.002, momentum 0.9, weight decay 5e-4) */",
           "static const double uref_sgd_losses[3] = {%s};" % cr.fmt(losses),
           cr.carray("uref_sgd_ctx", torch.stack([c.detach() for c in ctxs])),
           cr.carray("uref_sgd_logits", sgd_logits),
           "", "#endif"]
    path = os.path.join(cr.OUT_DIR, "upl_ref.h")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
