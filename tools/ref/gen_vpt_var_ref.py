#!/usr/bin/python3
"""Variational prompt tuning's reference outputs (tests/fixtures/methods/
vpt_var_ref.h) on the shared tiny CLIP written by gen_coop_ref.py (read back,
not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_vpt_var_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Re-implemented from the math of saic-fi/Bayesian-Prompt-Learning
trainers/vpt.py (PromptLearner.sample / forward, Amortized, InferenceBlock,
CustomCLIP.forward / kl_divergence; not its code), reusing gen_coop_ref.py's
prompt assembly (class token at the end, whole 77-token sequences pooled at
argmax(ids)):
  - residual r_l = mu + eps_l * exp(logvar).sqrt(), l < L, eps given (the
    fixture holds the draws; the C test feeds them through
    ct_vpt_var_set_noise); prompts with context ctx + r_l;
  - global: mu = mean_posterior, logvar = std_posterior, (1, W), one set of
    L draws for the batch (vpt.py's coopvpt);
  - image: mu, logvar = two InferenceBlocks (Linear E->E/2, ELU,
    Linear E/2->E/2, ELU, Linear E/2->W) of the normalised image feature;
    vpt.py runs batch 1 only: each image is computed as its own batch of
    one with its own L draws, and the losses are averaged over the images;
  - log p = log_softmax(s * f . normalize(text_l)); task loss
    -mean_b (logsumexp_l log p_l(y_b) - log L); KL(N(mu, exp(logvar)) ||
    N(0, 1)) by torch.distributions, mean over W; loss = task + kl_w KL;
  - scores (evaluation) = logsumexp_l log p_l - log L, with the same draws.
Three SGD steps on every learned tensor (momentum 0.9, weight decay 5e-4:
Dassl's build_optimizer), the draws kept fixed. Float64 throughout; inputs
rounded to float32.
"""
import importlib.util
import math
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
B = 3
SGD_LR = 0.2
CASES = [  # name, type, n_ctx, ctx_init, L, kl_w
    ("global_init", "global", 4, "a_photo_of_a", 3, 0.001),
    ("global_l1", "global", 2, "", 1, 0.5),
    ("image", "image", 4, "a_photo_of_a", 2, 0.3),
]


def f32(t):
    return t.to(torch.float32).double()


def text(Pm, pr, ctx):
    E = pr.assemble(ctx)
    t, _ = clipref.encode_text_from_embeds(Pm, TINY, E, pr.eot)
    return t / t.norm(dim=-1, keepdim=True)


def block(x, ws):
    x = F.elu(x @ ws[0].t() + ws[1])
    x = F.elu(x @ ws[2].t() + ws[3])
    return x @ ws[4].t() + ws[5]


def kl(mu, logvar):
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(logvar))
    post = torch.distributions.Normal(mu, logvar.exp().sqrt())
    return torch.distributions.kl_divergence(post, prior).mean(dim=-1)


def one_batch(Pm, pr, ctx, f, labels, mu, logvar, eps, kl_w):
    """vpt.py's CustomCLIP.forward on one batch; eps (L, 1, W)."""
    L = eps.shape[0]
    s = Pm["logit_scale"].exp()
    bias = mu.unsqueeze(0) + eps * logvar.exp().sqrt().unsqueeze(0)  # (L, 1, W)
    txt = torch.stack([text(Pm, pr, ctx + bias[l]) for l in range(L)])  # (L, K, D)
    logits = s * torch.einsum("bd,lcd->lbc", f, txt)
    log_p = torch.log_softmax(logits, dim=-1)
    scores = torch.logsumexp(log_p, dim=0) - math.log(L)
    onehot = F.one_hot(labels, num_classes=logits.shape[-1]).double()
    task_log_py = (log_p * onehot.unsqueeze(0)).sum(dim=-1)  # (L, b)
    task_score = torch.logsumexp(task_log_py, dim=0) - math.log(L)
    loss = -task_score.mean(dim=-1) + kl_w * kl(mu, logvar)
    return scores, loss.reshape(())


def forward(Pm, pr, kind, params, img, labels, eps, kl_w):
    f = img / img.norm(dim=-1, keepdim=True)
    ctx = params[0]
    if kind == "global":
        return one_batch(Pm, pr, ctx, f, labels, params[1], params[2], eps.unsqueeze(1), kl_w)
    mu_all, lv_all = block(f, params[1:7]), block(f, params[7:13])
    scores, losses = [], []
    for i in range(f.shape[0]):
        sc, ls = one_batch(Pm, pr, ctx, f[i:i + 1], labels[i:i + 1], mu_all[i:i + 1],
                           lv_all[i:i + 1], eps[:, i:i + 1], kl_w)
        scores.append(sc)
        losses.append(ls)
    return torch.cat(scores), torch.stack(losses).mean()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Pm = plotref.load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(41)
    Ed, W = TINY["embed"], TINY["t_width"]
    H = Ed // 2
    K = len(coopref.CLASSNAMES)
    img = f32(torch.randn(B, Ed, generator=g))
    labels = torch.randint(0, K, (B,), generator=g)

    def carray(name, t, ctype="double"):
        flat = t.detach().reshape(-1).tolist()
        rows = ["    " + ", ".join("%.9g" % v for v in flat[i:i + 8]) + ","
                for i in range(0, len(flat), 8)]
        return "static const %s %s[%d] = {\n%s\n};" % (ctype, name, len(flat), "\n".join(rows))

    def flat(ts):
        return torch.cat([t.detach().reshape(-1) for t in ts])

    out = ["/* Generated by tools/ref/gen_vpt_var_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_VPT_VAR_REF_H", "#define CT_TEST_VPT_VAR_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "#define VREF_B %d" % B,
           carray("vref_img", img, "float"),
           "static const int vref_labels[VREF_B] = {%s};" % ", ".join(str(int(v)) for v in labels),
           ""]
    for name, kind, n_ctx, init, L, kl_w in CASES:
        pr = coopref.Prompts(tok, Pm, n_ctx, init, False, "end")
        ctx = pr.init.clone() if pr.init is not None else f32(torch.randn(pr.n_ctx, W, generator=g) * 0.02)
        if kind == "global":
            params = [ctx, f32(torch.randn(1, W, generator=g) * 0.1),
                      f32(torch.rand(1, W, generator=g) - 1.0)]
            eps = f32(torch.randn(L, W, generator=g))
        else:
            params = [ctx]
            for _ in range(2):
                for fin, fout in ((Ed, H), (H, H), (H, W)):
                    a = 1.0 / math.sqrt(fin)
                    params.append(f32((torch.rand(fout, fin, generator=g) * 2 - 1) * a))
                    params.append(f32((torch.rand(fout, generator=g) * 2 - 1) * a))
            eps = f32(torch.randn(L, B, W, generator=g))
        p0 = [p.clone() for p in params]
        ps = [p.clone().requires_grad_(True) for p in p0]
        scores, loss = forward(Pm, pr, kind, ps, img, labels, eps, kl_w)
        loss.backward()
        pre = "vref_" + name
        hp = "type=%s n_ctx=%d ctx_init=%s mc_samples=%d kl_w=%g" % (kind, n_ctx, init, L, kl_w)
        out.append("/* %s: %s; %d learned tensors */" % (name, hp, len(ps)))
        out.append('static const char %s_hp[] = "%s";' % (pre, hp))
        out.append(carray(pre + "_params", flat(p0)))
        out.append(carray(pre + "_eps", eps, "float"))
        out.append(carray(pre + "_scores", scores))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad", flat([p.grad for p in ps])))
        print("%s: loss %.6f, |grad| max %.3g" % (name, loss.item(),
                                                   flat([p.grad for p in ps]).abs().max()))
        ps = [p.clone().requires_grad_(True) for p in p0]
        opt = torch.optim.SGD(ps, lr=SGD_LR, momentum=0.9, weight_decay=5e-4, dampening=0,
                              nesterov=False)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            _, loss = forward(Pm, pr, kind, ps, img, labels, eps, kl_w)
            loss.backward()
            losses.append(loss.item())
            opt.step()
        scores, _ = forward(Pm, pr, kind, ps, img, labels, eps, kl_w)
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, coopref.fmt(losses)))
        out.append(carray(pre + "_sgd_params", flat(ps)))
        out.append(carray(pre + "_sgd_scores", scores))
        out.append("")
        print("  after 3 SGD steps (lr %g): losses %s, largest move %.3g"
              % (SGD_LR, " ".join("%.6f" % v for v in losses), (flat(ps) - flat(p0)).abs().max()))
    out.append("#define VREF_SGD_LR %.17gf" % SGD_LR)
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "vpt_var_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(OUT_DIR, "vpt_var_ref.h"))


if __name__ == "__main__":
    main()
