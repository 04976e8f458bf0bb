#!/usr/bin/python3
"""PLOT's reference outputs (tests/fixtures/methods/plot_ref.h) on the shared
tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_plot_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

PLOT (Chen et al., ICLR 2023) re-implemented from the math of the official
CHENGY12/PLOT plot-coop/trainers/plot.py (CustomCLIP.forward / Sinkhorn;
not its code), reusing gen_coop_ref.py's prompt assembly (generic context,
class token at the end, whole 77-token sequence pooled at argmax(ids)):
  - N contexts v_n (n_ctx, W); t[n, k] = text features of class k's prompt
    with context v_n, L2-normalised; pool[k] = normalize(mean_n raw t[n, k]);
  - local features f[i, m] = normalize(dense[i, 1 + m]), m < M = T - 1
    (the pooled / class token 0 left out); g[i] = normalize(dense[i, 0]);
  - sim[i, k, m, n] = f[i, m] . t[n, k]; with no gradient,
    K = exp(-(1 - sim) / eps), r = c = ones, up to max_iter times:
    r' = (1/M) / (K c), c = (1/N) / (K^T r'), err = mean |r' - r| over every
    (i, k, m) of the batch, stop when err < thresh; plan = r K c (outer);
  - logits[i, k] = exp(logit_scale) sum_{m,n} plan sim (+ exp(logit_scale)
    g[i] . pool[k] with global logits); loss = cross-entropy (mean).
Three SGD steps (momentum 0.9, weight decay 5e-4, Dassl's build_optimizer)
on one batch. Float64 throughout; inputs rounded to float32. The Sinkhorn
stopping test compares a float64 mean with 0.01 here and a float32 one in
C: every iteration's err is checked to be away from the threshold (MARGIN)
so both stop at the same iteration.

The per-token features are random float32 normals (the method takes them
as given; their layout is the feature cache's, ln_post + proj of every
token, token 0 = the pooled embedding), so the batch's pooled features are
dense[:, 0].
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
B, T = 6, 9            # images, tokens per image (M = 8 local features)
EPS, MAX_ITER, THRESH = 0.1, 100, 1e-2
MARGIN = 1e-3          # relative distance of every err from THRESH
SGD_LR = 0.05          # larger than PLOT's 0.002 so three steps move the context well past the tolerance
CASES = [  # name, N, n_ctx, global logits
    ("n4", 4, 4, False),
    ("n2_global", 2, 3, True),
    ("n1", 1, 2, False),
]


def load_tiny():
    d = os.path.join(OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def sinkhorn(Kmat, M, N, errs):
    """Kmat (P, M, N); uniform marginals; returns (plan, iterations)."""
    r = torch.ones(Kmat.shape[0], M)
    c = torch.ones(Kmat.shape[0], N)
    it = 0
    for it in range(1, MAX_ITER + 1):
        r_prev = r
        r = (1.0 / M) / (Kmat @ c.unsqueeze(-1)).squeeze(-1)
        c = (1.0 / N) / (Kmat.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        err = (r - r_prev).abs().mean().item()
        errs.append(err)
        if err < THRESH:
            break
    return r.unsqueeze(-1) * Kmat * c.unsqueeze(-2), it


def forward(P, pr, ctx, dense, labels, use_global, info):
    N = ctx.shape[0]
    raw = []
    for n in range(N):
        E = pr.assemble(ctx[n])                                  # (K, 77, W)
        t, _ = clipref.encode_text_from_embeds(P, TINY, E, pr.eot)
        raw.append(t)
    raw = torch.stack(raw)                                       # (N, K, E)
    txt = unit(raw)
    f = unit(dense[:, 1:])                                       # (B, M, E)
    Bn, M, K = f.shape[0], f.shape[1], txt.shape[1]
    sim = torch.einsum("bme,nke->bkmn", f, txt)                  # (B, K, M, N)
    with torch.no_grad():
        Kmat = torch.exp(-(1.0 - sim.detach()) / EPS).reshape(Bn * K, M, N)
        plan, its = sinkhorn(Kmat, M, N, info.setdefault("errs", []))
        plan = plan.reshape(Bn, K, M, N)
    info["iters"] = its
    scale = P["logit_scale"].exp()
    logits = scale * (plan * sim).sum(dim=(2, 3))
    if use_global:
        pool = unit(raw.mean(dim=0))
        logits = logits + scale * unit(dense[:, 0]) @ pool.t()
    return logits, F.cross_entropy(logits, labels)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(23)
    Ed, W = TINY["embed"], TINY["t_width"]
    K = len(coopref.CLASSNAMES)
    dense = torch.randn(B, T, Ed, generator=g, dtype=torch.float32).double()
    labels = torch.randint(0, K, (B,), generator=g)
    fmt, carray = coopref.fmt, coopref.carray

    def check_errs(name, errs):
        for e in errs:
            if abs(e - THRESH) < MARGIN * THRESH:
                sys.exit("%s: Sinkhorn err %.9g too close to the threshold" % (name, e))

    out = ["/* Generated by tools/ref/gen_plot_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_PLOT_REF_H", "#define CT_TEST_PLOT_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "#define PREF_B %d" % B, "#define PREF_T %d" % T,
           "/* per-token features (B, T, E); the pooled features are token 0 */",
           carray("pref_dense", dense, "float"),
           "static const int pref_labels[PREF_B] = {%s};" % ", ".join(str(int(v)) for v in labels),
           ""]
    for name, N, n_ctx, use_global in CASES:
        pr = coopref.Prompts(tok, P, n_ctx, "", False, "end")
        ctx0 = (torch.randn(N, n_ctx, W, generator=g, dtype=torch.float32) * 0.02).double()
        ctx = ctx0.clone().requires_grad_(True)
        info = {}
        logits, loss = forward(P, pr, ctx, dense, labels, use_global, info)
        loss.backward()
        check_errs(name, info["errs"])
        pre = "pref_" + name
        out.append("/* %s: n_prompts=%d n_ctx=%d global_logits=%d; Sinkhorn stopped after %d "
                   "iterations (err %.4g) */" % (name, N, n_ctx, int(use_global), info["iters"],
                                                 info["errs"][-1]))
        out.append('static const char %s_hp[] = "n_prompts=%d n_ctx=%d global_logits=%d";'
                   % (pre, N, n_ctx, int(use_global)))
        out.append(carray(pre + "_ctx", ctx0))
        out.append(carray(pre + "_logits", logits))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad", ctx.grad))
        print("%s: loss %.6f, |grad| max %.3g, Sinkhorn %d iterations, errs %s"
              % (name, loss.item(), ctx.grad.abs().max(), info["iters"],
                 " ".join("%.3g" % e for e in info["errs"])))
        # three SGD steps from the same start
        ctx = ctx0.clone().requires_grad_(True)
        opt = torch.optim.SGD([ctx], lr=SGD_LR, momentum=0.9, weight_decay=5e-4, dampening=0,
                              nesterov=False)
        losses = []
        for s in range(3):
            opt.zero_grad()
            info = {}
            _, loss = forward(P, pr, ctx, dense, labels, use_global, info)
            check_errs("%s step %d" % (name, s), info["errs"])
            loss.backward()
            losses.append(loss.item())
            opt.step()
        info = {}
        logits, _ = forward(P, pr, ctx, dense, labels, use_global, info)
        check_errs(name + " after steps", info["errs"])
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, fmt(losses)))
        out.append(carray(pre + "_sgd_ctx", ctx))
        out.append(carray(pre + "_sgd_logits", logits))
        out.append("")
        print("  after 3 SGD steps (lr %g): losses %s, largest move %.3g"
              % (SGD_LR, " ".join("%.6f" % v for v in losses), (ctx - ctx0).abs().max()))
    out.append("#define PREF_SGD_LR %.17gf" % SGD_LR)
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "plot_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(OUT_DIR, "plot_ref.h"))


if __name__ == "__main__":
    main()
