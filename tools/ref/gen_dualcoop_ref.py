#!/usr/bin/python3
"""DualCoOp's reference outputs (tests/fixtures/methods/dualcoop_ref.h) on the
shared tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git --git-dir=$M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_dualcoop_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

DualCoOp (Sun et al., NeurIPS 2022) re-implemented from the math of the
official sunxm2357/DualCoOp models/dualcoop.py (MLCPromptLearner,
DualCoop.forward) and utils/asymmetric_loss.py (AsymmetricLoss), not from
cliptune, reusing gen_coop_ref.py's prompt assembly (generic context, class
token at the end, "X ... X {name}.", pooled at argmax(ids)):
  - text features of the negative prompts (context ctx_neg, n_ctx_neg) and
    the positive ones (ctx_pos, n_ctx_pos), concatenated [neg; pos] (2K, E)
    as MLCPromptLearner.forward does, L2-normalised;
  - regions f[i, m] = normalize(dense[i, t0 + m]), t0 = 1 (patch tokens) or
    0 (cls_token=1: token 0 among them);
  - output = agg_scale * conv1d(f, txt) (B, 2K, M); w = softmax over m of the
    positive half, used for both halves; logits = out_scale * sum_m output w,
    resized to (B, 2, K): [:, 0] negative, [:, 1] positive;
  - AsymmetricLoss as the official computes it: softmax over dim 1, unknown
    (-1) targets dropped, xs_neg = (xs_neg + clip).clamp(max=1) when clip > 0,
    log of clamp(min=eps), the focusing weight (1 - pt)^gamma computed with
    gradients disabled, -sum; times loss_w (train_coop's args.loss_w);
  - single-label data (no targets): one-hot labels;
  - the class scores cliptune reports: logits[:, 1] - logits[:, 0].
Three SGD steps (momentum 0.9, weight decay 5e-4: Dassl's build_optimizer
over both contexts) on one batch. Float64 throughout; inputs rounded to
float32. Every clamped probability (the clipped negative one at 1, both at
eps) is checked to be away from its bound (MARGIN, relative) so float32 and
float64 take the same branch.
"""
import importlib.util
import json
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


coopref = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
B, T = 6, 9            # images, tokens per image
MARGIN = 1e-3          # relative distance of every clamped probability from its bound
SGD_LR = 1e-4          # below DualCoOp's 0.002: this summed loss's gradients are O(100)
CASES = [  # name, hp (cliptune's keys), multi-label targets
    ("ml", dict(n_ctx_pos=4, n_ctx_neg=3), True),
    ("single_cls", dict(n_ctx_pos=2, n_ctx_neg=5, cls_token=1, gamma_neg=3, gamma_pos=0.5,
                        asl_clip=0.1), False),
    ("plain_lossw", dict(n_ctx_pos=3, n_ctx_neg=3, gamma_neg=0, gamma_pos=0, asl_clip=0,
                         loss_w=0.5, agg_scale=10, out_scale=8), True),
]
DEFAULTS = dict(cls_token=0, gamma_neg=2, gamma_pos=1, asl_clip=0.05, asl_eps=1e-6, loss_w=1,
                agg_scale=20, out_scale=5)


def load_tiny():
    d = os.path.join(OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


class AsymmetricLoss:
    """utils/asymmetric_loss.py AsymmetricLoss (disable_torch_grad_focal_loss)."""

    def __init__(self, gamma_neg, gamma_pos, clip, eps):
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def __call__(self, x, y, check):
        x_softmax = torch.softmax(x, dim=1)
        xs_pos = x_softmax[:, 1, :].reshape(-1)
        xs_neg = x_softmax[:, 0, :].reshape(-1)
        y = y.reshape(-1)
        xs_pos, xs_neg, y = xs_pos[y != -1], xs_neg[y != -1], y[y != -1].to(x.dtype)
        if self.clip is not None and self.clip > 0:
            check((xs_neg + self.clip).detach()[y == 0], 1.0)
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        check(xs_pos.detach()[y == 1], self.eps)
        check(xs_neg.detach()[y == 0], self.eps)
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.no_grad():
                pt = xs_pos * y + xs_neg * (1 - y)
                w = torch.pow(1 - pt, self.gamma_pos * y + self.gamma_neg * (1 - y))
            loss = loss * w
        return -loss.sum()


def forward(P, pr_pos, pr_neg, ctx_pos, ctx_neg, dense, y, hp, check):
    tf = []
    for pr, ctx in ((pr_neg, ctx_neg), (pr_pos, ctx_pos)):
        t, _ = clipref.encode_text_from_embeds(P, TINY, pr.assemble(ctx), pr.eot)
        tf.append(t)
    txt = torch.cat(tf, dim=0)                                   # (2K, E): [neg; pos]
    txt = txt / txt.norm(dim=-1, keepdim=True)
    t0 = 0 if hp["cls_token"] else 1
    img = dense[:, t0:].transpose(1, 2)                          # (B, E, M) as the RN's
    img = img / img.norm(dim=1, keepdim=True)
    output = hp["agg_scale"] * F.conv1d(img, txt[:, :, None])     # (B, 2K, M)
    b, c, _ = output.shape
    w_half = F.softmax(output[:, c // 2:], dim=-1)
    w = torch.cat([w_half, w_half], dim=1)
    output = hp["out_scale"] * (output * w).sum(-1)              # (B, 2K)
    logits = output.reshape(b, 2, c // 2)
    asl = AsymmetricLoss(hp["gamma_neg"], hp["gamma_pos"], hp["asl_clip"], hp["asl_eps"])
    loss = hp["loss_w"] * asl(logits, y, check)
    return logits[:, 1] - logits[:, 0], loss


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(31)
    Ed, W = TINY["embed"], TINY["t_width"]
    K = len(coopref.CLASSNAMES)
    dense = torch.randn(B, T, Ed, generator=g, dtype=torch.float32).double()
    labels = torch.randint(0, K, (B,), generator=g)
    # multi-label targets: present with probability 0.4, a quarter unknown
    targets = (torch.rand(B, K, generator=g) < 0.4).long()
    targets[torch.rand(B, K, generator=g) < 0.25] = -1
    fmt, carray = coopref.fmt, coopref.carray
    onehot = F.one_hot(labels, K)

    out = ["/* Generated by tools/ref/gen_dualcoop_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_DUALCOOP_REF_H", "#define CT_TEST_DUALCOOP_REF_H",
           "", "#include <stdint.h>", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "#define DREF_B %d" % B, "#define DREF_T %d" % T,
           "/* per-token features (B, T, E); the pooled features are token 0 */",
           carray("dref_dense", dense, "float"),
           "static const int dref_labels[DREF_B] = {%s};" % ", ".join(str(int(v)) for v in labels),
           "/* (B, K): 1 present, 0 absent, -1 unknown */",
           "static const int8_t dref_targets[DREF_B * CREF_K] = {%s};"
           % ", ".join(str(int(v)) for v in targets.reshape(-1)),
           ""]
    for name, hp_case, multi in CASES:
        hp = dict(DEFAULTS, **hp_case)
        y = targets if multi else onehot
        pr_pos = coopref.Prompts(tok, P, hp["n_ctx_pos"], "", False, "end")
        pr_neg = coopref.Prompts(tok, P, hp["n_ctx_neg"], "", False, "end")
        pos0 = (torch.randn(hp["n_ctx_pos"], W, generator=g, dtype=torch.float32) * 0.02).double()
        neg0 = (torch.randn(hp["n_ctx_neg"], W, generator=g, dtype=torch.float32) * 0.02).double()
        closest = [1.0]

        def check(q, bound, where):
            if q.numel():
                d = ((q - bound).abs() / bound).min().item()
                closest[0] = min(closest[0], d)
                if d < MARGIN:
                    sys.exit("%s %s: a probability at %.9g of the clamp at %g (relative)"
                             % (name, where, d, bound))

        cp, cn = pos0.clone().requires_grad_(True), neg0.clone().requires_grad_(True)
        scores, loss = forward(P, pr_pos, pr_neg, cp, cn, dense, y, hp,
                               lambda q, bd: check(q, bd, "start"))
        loss.backward()
        pre = "dref_" + name
        hp_text = " ".join("%s=%s" % (k, v) for k, v in hp_case.items())
        out.append("/* %s: %s; %s targets */" % (name, hp_text,
                                                 "multi-label" if multi else "one-hot label"))
        out.append('static const char %s_hp[] = "%s";' % (pre, hp_text))
        out.append("static const int %s_multi = %d;" % (pre, int(multi)))
        out.append(carray(pre + "_ctx_pos", pos0))
        out.append(carray(pre + "_ctx_neg", neg0))
        out.append(carray(pre + "_scores", scores))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad_pos", cp.grad))
        out.append(carray(pre + "_grad_neg", cn.grad))
        print("%s: loss %.6f, |grad| max pos %.3g neg %.3g, |score| max %.3g"
              % (name, loss.item(), cp.grad.abs().max(), cn.grad.abs().max(),
                 scores.abs().max()))
        # three SGD steps from the same start, both contexts in one optimiser
        cp, cn = pos0.clone().requires_grad_(True), neg0.clone().requires_grad_(True)
        opt = torch.optim.SGD([cp, cn], lr=SGD_LR, momentum=0.9, weight_decay=5e-4,
                              dampening=0, nesterov=False)
        losses = []
        for s in range(3):
            opt.zero_grad()
            _, loss = forward(P, pr_pos, pr_neg, cp, cn, dense, y, hp,
                              lambda q, bd: check(q, bd, "step %d" % s))
            loss.backward()
            losses.append(loss.item())
            opt.step()
        scores, _ = forward(P, pr_pos, pr_neg, cp, cn, dense, y, hp,
                            lambda q, bd: check(q, bd, "after steps"))
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, fmt(losses)))
        out.append(carray(pre + "_sgd_ctx_pos", cp))
        out.append(carray(pre + "_sgd_ctx_neg", cn))
        out.append(carray(pre + "_sgd_scores", scores))
        out.append("")
        move = max((cp - pos0).abs().max().item(), (cn - neg0).abs().max().item())
        print("  after 3 SGD steps (lr %g): losses %s, largest move %.3g, |score| max %.3g, "
              "closest (relative) to a clamp: %.3g"
              % (SGD_LR, " ".join("%.6f" % v for v in losses), move, scores.abs().max(),
                 closest[0]))
    out.append("#define DREF_SGD_LR %.17gf" % SGD_LR)
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "dualcoop_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(OUT_DIR, "dualcoop_ref.h"))


if __name__ == "__main__":
    main()
