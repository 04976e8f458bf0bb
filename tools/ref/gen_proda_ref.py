#!/usr/bin/python3
"""ProDA's reference outputs (tests/fixtures/methods/proda_ref.h) on the shared
tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_proda_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

ProDA (Lu et al., CVPR 2022; no official code) re-implemented from the
paper's math as 0-ml/flip flcore/models/clip/ProDA.py (ProDACLIP.forward)
computes it (not its code), reusing gen_coop_ref.py's prompt assembly
(whole 77-token sequences pooled at argmax(ids)):
  - P contexts v_p (n_ctx, W); prompt p puts the class token at the front
    for p < P//4, in the middle for P//4 <= p < 2 (P//4), at the end for the
    rest (positions "mixed"; "end": every prompt at the end);
  - text features t (n_cls, P, D), each L2-normalised; mu = mean over P;
    logits = s * f @ mu.T with f = normalize(image), s = exp(logit_scale);
  - c = t - mu; Sigma (D, n_cls, n_cls) = c.permute(2,0,1) @ c.permute(2,1,0)
    / (P + 1); R[b,i,k] = sum_d f[b,d]^2 Sigma[d,i,k];
    sigma[b,j] = R[b,y,y] + R[b,j,j] - 2 R[b,y,j]; logits += 0.5 s^2 sigma;
  - diversity: class-free prompts "X ... X." with each context (end), their
    normalised features nc (P, D); mean |nc @ nc.T| over off-diagonal pairs
    (0 when P = 1), weight div_w;
  - loss = CE(logits, y) + div_w * diversity; test logits s * f @ mu.T.
Three SGD steps (momentum 0.9, weight decay 5e-4: Dassl's build_optimizer).
Float64 throughout; inputs rounded to float32.
"""
import importlib.util
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


coopref = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
plotref = load_module("gen_plot_ref", os.path.join(HERE, "gen_plot_ref.py"))
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
OUT_DIR = coopref.OUT_DIR
B = 6
SGD_LR = 0.05
CASES = [  # name, P, n_ctx, positions, div_w
    ("p6_mixed", 6, 2, "mixed", 1.0),
    ("p5_mixed", 5, 3, "mixed", 0.5),
    ("p3_end", 3, 1, "end", 1.0),
    ("p1", 1, 2, "mixed", 1.0),
]


class ClassFree:
    """flip's nc_prompts: "X ... X." (no class name), context at the end."""

    def __init__(self, tok, P, n_ctx):
        self.n_ctx = n_ctx
        ids = torch.tensor([tok.row(" ".join(["X"] * n_ctx) + ".")])
        self.emb = P["token_embedding.weight"][ids]
        self.eot = ids.argmax(dim=-1)

    def assemble(self, ctx):
        return torch.cat([self.emb[0, :1], ctx, self.emb[0, 1 + self.n_ctx:]], 0).unsqueeze(0)


def positions(P, mode):
    q = P // 4 if mode == "mixed" else 0
    return ["front"] * q + ["middle"] * q + ["end"] * (P - 2 * q)


def forward(Pm, prompts, nc, ctx, img, labels, div_w):
    n_prm = ctx.shape[0]
    feats = []
    for p in range(n_prm):
        E = prompts[p].assemble(ctx[p])                       # (K, 77, W)
        t, _ = clipref.encode_text_from_embeds(Pm, TINY, E, prompts[p].eot)
        feats.append(t / t.norm(dim=-1, keepdim=True))
    text = torch.stack(feats, dim=1)                          # (K, P, D), flip's view(n_class, n_prompt, -1)
    mean = text.mean(dim=1)
    f = img / img.norm(dim=-1, keepdim=True)
    s = Pm["logit_scale"].exp()
    logits = s * f @ mean.t()
    test_logits = logits.clone()
    n_class = text.shape[0]
    c = text - mean.unsqueeze(1)
    cov = c.permute(2, 0, 1) @ c.permute(2, 1, 0) / (n_prm + 1)
    R = torch.einsum("bd,dik->bik", f ** 2, cov)
    b = torch.arange(f.shape[0])
    sigma = R[b, labels, labels].unsqueeze(-1) + R[:, torch.arange(n_class), torch.arange(n_class)] \
        - 2 * R[b, labels, :]
    logits = logits + 0.5 * s ** 2 * sigma
    loss = F.cross_entropy(logits, labels)
    if n_prm > 1:
        nf = []
        for p in range(n_prm):
            t, _ = clipref.encode_text_from_embeds(Pm, TINY, nc.assemble(ctx[p]), nc.eot)
            nf.append(t[0] / t[0].norm())
        nf = torch.stack(nf)
        dis = nf @ nf.t()
        loss = loss + div_w * dis[~torch.eye(n_prm, dtype=torch.bool)].abs().mean()
    return test_logits, loss


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Pm = plotref.load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(31)
    Ed, W = TINY["embed"], TINY["t_width"]
    K = len(coopref.CLASSNAMES)
    img = torch.randn(B, Ed, generator=g, dtype=torch.float32).double()
    labels = torch.randint(0, K, (B,), generator=g)
    fmt = coopref.fmt

    def carray(name, t, ctype="double"):
        # 9 significant digits: float32-exact inputs, references far inside the tolerances
        flat = t.detach().reshape(-1).tolist()
        rows = ["    " + ", ".join("%.9g" % v for v in flat[i:i + 8]) + ","
                for i in range(0, len(flat), 8)]
        return "static const %s %s[%d] = {\n%s\n};" % (ctype, name, len(flat), "\n".join(rows))
    out = ["/* Generated by tools/ref/gen_proda_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_PRODA_REF_H", "#define CT_TEST_PRODA_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "#define DREF_B %d" % B,
           carray("dref_img", img, "float"),
           "static const int dref_labels[DREF_B] = {%s};" % ", ".join(str(int(v)) for v in labels),
           ""]
    for name, n_prm, n_ctx, mode, div_w in CASES:
        prompts = [coopref.Prompts(tok, Pm, n_ctx, "", False, pos) for pos in positions(n_prm, mode)]
        nc = ClassFree(tok, Pm, n_ctx)
        ctx0 = (torch.randn(n_prm, n_ctx, W, generator=g, dtype=torch.float32) * 0.02).double()
        ctx = ctx0.clone().requires_grad_(True)
        logits, loss = forward(Pm, prompts, nc, ctx, img, labels, div_w)
        loss.backward()
        pre = "dref_" + name
        hp = "n_prompts=%d n_ctx=%d positions=%s div_w=%g" % (n_prm, n_ctx, mode, div_w)
        out.append("/* %s: %s */" % (name, hp))
        out.append('static const char %s_hp[] = "%s";' % (pre, hp))
        out.append(carray(pre + "_ctx", ctx0))
        out.append(carray(pre + "_logits", logits))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad", ctx.grad))
        print("%s: loss %.6f, |grad| max %.3g" % (name, loss.item(), ctx.grad.abs().max()))
        ctx = ctx0.clone().requires_grad_(True)
        opt = torch.optim.SGD([ctx], lr=SGD_LR, momentum=0.9, weight_decay=5e-4, dampening=0,
                              nesterov=False)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            _, loss = forward(Pm, prompts, nc, ctx, img, labels, div_w)
            loss.backward()
            losses.append(loss.item())
            opt.step()
        logits, _ = forward(Pm, prompts, nc, ctx, img, labels, div_w)
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, fmt(losses)))
        out.append(carray(pre + "_sgd_ctx", ctx))
        out.append(carray(pre + "_sgd_logits", logits))
        out.append("")
        print("  after 3 SGD steps (lr %g): losses %s, largest move %.3g"
              % (SGD_LR, " ".join("%.6f" % v for v in losses), (ctx - ctx0).abs().max()))
    out.append("#define DREF_SGD_LR %.17gf" % SGD_LR)
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "proda_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(OUT_DIR, "proda_ref.h"))


if __name__ == "__main__":
    main()
