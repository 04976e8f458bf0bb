#!/usr/bin/python3
"""MUST's reference outputs on the shared tiny CLIP (gen_coop_ref.py's):
tests/fixtures/methods/must_ref.h (small arrays) and must_ref.safetensors
(initial decoder / mask token, per-weight gradients and weights after three
steps, F32, in cliptune's canonical layout: Linear weights (out, in), q/k/v
split).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_must_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Written from salesforce/MUST's behaviour (engine_self_training.py,
clip/model.py VisionTransformer_MIM, model.py init_classifier_weights,
ema.py), not its code, float64:
  - classifier (E, K): per class, every template encoded, normalised,
    averaged, renormalised; column k;
  - teacher = an EMA copy (tower + classifier), on the weak view:
    p = softmax(100 normalize(f) C); confident where max p > tau;
  - student on the strong view with the masked patch tokens replaced by the
    mask token before the class token and positional embedding;
    logits = 100 normalize(ln_post(cls) proj) C;
  - loss = CE(logits[conf], argmax p[conf]) + w_fair * -mean(log(mean_b
    softmax(logits))) + L1 of Conv2d(W, 3p^2, 1) + PixelShuffle(p) of
    ln_patch(patch tokens) against the strong view over the masked pixels
    / mask.sum() / 3 + w_align * mean over masked patches of
    ||normalize(ln_patch(z) proj) - normalize(ln_post(cls) proj)||^2;
  - gradients of every vision weight, the classifier, the mask token,
    ln_patch and the decoder; then three steps of torch.optim.AdamW (one
    group, weight decay WD: cliptune's documented departure from the
    official's per-layer groups), each followed by the EMA update of the
    tower and classifier at decay d0 + (d1 - d0) min(1, it / warm).
The same batch and mask at every step. Pixels are formulas both sides
compute, rounded to float32: weak 1.5 sin(0.1 i + 0.7 b), strong
1.2 cos(0.13 i + 0.5 b).
"""
import importlib.util
import math
import os
import sys

import numpy as np
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


wft = load_module("gen_wise_ft_ref", os.path.join(HERE, "gen_wise_ft_ref.py"))
coopref, clipref = wft.coopref, wft.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
CLASSNAMES = coopref.CLASSNAMES
TEMPLATES = ["a photo of a {}.", "a drawing of the {}."]
B, LR, WD = 4, 1e-3, 0.05
W_FAIR, W_ALIGN = 1.0, 0.2
D0, D1, WARM = 0.5, 0.9, 2
SCALE = 100.0
# masked patch tokens of each image on the 4 x 4 grid (blocks of 2 x 2
# patches, as mask_patch=auto gives on an even grid)
BLOCKS = [[0], [3], [1, 2], [2]]


def pixel_formula(kind):
    S = TINY["image"]
    n = 3 * S * S
    px = np.empty((B, n), dtype=np.float32)
    for b in range(B):
        for i in range(n):
            if kind == "weak":
                px[b, i] = np.float32(1.5 * math.sin(0.1 * i + 0.7 * b))
            else:
                px[b, i] = np.float32(1.2 * math.cos(0.13 * i + 0.5 * b))
    return torch.from_numpy(px).double().reshape(B, 3, S, S)


def patch_mask():
    g = TINY["image"] // TINY["patch"]
    m = torch.zeros(B, g, g)
    for b, blocks in enumerate(BLOCKS):
        for q in blocks:
            by, bx = divmod(q, g // 2)
            m[b, 2 * by:2 * by + 2, 2 * bx:2 * bx + 2] = 1
    return m  # (B, g, g)


def vit(P, px, tok=None, mask=None):
    """VisionTransformer_MIM's trunk: (x_cls normalised (B, E), tokens (B, T, W))."""
    act = clipref.act_fn(TINY["act"])
    p = TINY["patch"]
    x = F.conv2d(px, P["visual.conv1.weight"], stride=p)
    Bn, w = x.shape[0], x.shape[1]
    x = x.reshape(Bn, w, -1).permute(0, 2, 1)
    if mask is not None:
        wm = mask.flatten(1).unsqueeze(-1)
        x = x * (1 - wm) + tok.reshape(1, 1, w).expand(Bn, x.shape[1], w) * wm
    cls = P["visual.class_embedding"].reshape(1, 1, w).expand(Bn, 1, w)
    x = torch.cat([cls, x], dim=1) + P["visual.positional_embedding"]
    x = clipref.layer_norm(x, P["visual.ln_pre.weight"], P["visual.ln_pre.bias"])
    for i in range(TINY["v_layers"]):
        x = clipref.resblock(x, P, "visual.transformer.resblocks.%d." % i, TINY["v_heads"], act,
                             False)
    xc = clipref.layer_norm(x[:, 0, :], P["visual.ln_post.weight"], P["visual.ln_post.bias"])
    return F.normalize(xc @ P["visual.proj"], dim=-1), x


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P0 = wft.load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    fmt, carray = coopref.fmt, coopref.carray
    W = TINY["v_width"]
    p = TINY["patch"]

    cls = []
    for name in CLASSNAMES:
        ids = torch.tensor([tok.row(t.format(name.replace("_", " "))) for t in TEMPLATES])
        e, _ = clipref.encode_text_from_embeds(P0, TINY, P0["token_embedding.weight"][ids],
                                               ids.argmax(dim=-1))
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(dim=0)
        cls.append(e / e.norm())
    C0 = torch.stack(cls, dim=1)  # (E, K)

    g = torch.Generator().manual_seed(17)
    tok0 = (0.02 * torch.randn(W, generator=g)).float().double()
    bound = 1 / math.sqrt(W)
    dec_w0 = ((torch.rand(3 * p * p, W, generator=g) * 2 - 1) * bound).float().double()
    dec_b0 = ((torch.rand(3 * p * p, generator=g) * 2 - 1) * bound).float().double()

    weak, strong, mask = pixel_formula("weak"), pixel_formula("strong"), patch_mask()
    vis = [k for k in P0 if k.startswith("visual.")]

    # the threshold: between the 2nd and 3rd confidences of the first teacher
    with torch.no_grad():
        xc, _ = vit(P0, weak)
        conf0 = F.softmax(SCALE * xc @ C0, dim=-1).max(-1)[0]
    srt = sorted(conf0.tolist(), reverse=True)
    TAU = 0.5 * (srt[1] + srt[2])

    def loss_fn(P, C, tok_e, lnw, lnb, dw, db, Pe, Ce, parts=None):
        with torch.no_grad():
            xt, _ = vit(Pe, weak)
            lt = SCALE * xt @ Ce
            score, pseudo = F.softmax(lt, dim=-1).max(-1)
            confm = score > TAU
        xcl, x = vit(P, strong, tok_e, mask)
        logits = SCALE * xcl @ C
        l_st = F.cross_entropy(logits[confm], pseudo[confm])
        probs_avg = F.softmax(logits, dim=-1).mean(0)
        l_fair = -(torch.log(probs_avg)).mean()
        xp = F.layer_norm(x[:, 1:, :], (W,), lnw, lnb, clipref.LN_EPS)
        Bn, L, Cc = xp.shape
        H = int(L ** 0.5)
        rec = F.pixel_shuffle(F.conv2d(xp.permute(0, 2, 1).reshape(Bn, Cc, H, H),
                                       dw.reshape(3 * p * p, W, 1, 1), db), p)
        m = mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1)
        l_mim = (F.l1_loss(rec, strong, reduction="none") * m).sum() / m.sum() / strong.size(1)
        xm = F.normalize(xp @ P["visual.proj"], dim=-1)
        la = torch.sum((xm - xcl.unsqueeze(1)).pow(2), dim=-1, keepdim=True)
        la = la[mask.flatten(1).unsqueeze(-1).bool()].view(Bn, -1)
        l_align = la.mean()
        loss = l_st + W_FAIR * l_fair + l_mim + W_ALIGN * l_align
        if parts is not None:
            parts.extend([l_st.item(), l_fair.item(), l_mim.item(), l_align.item(),
                          int(confm.sum().item())])
            parts.append(lt.detach())
            parts.append(logits.detach())
        return loss

    def fresh():
        P = {k: (v.clone().requires_grad_(True) if k in vis else v) for k, v in P0.items()}
        ex = [C0.clone(), tok0.clone(), torch.ones(W), torch.zeros(W), dec_w0.clone(),
              dec_b0.clone()]
        return P, [t.requires_grad_(True) for t in ex]

    P, ex = fresh()
    parts = []
    loss0 = loss_fn(P, *ex, P0, C0, parts=parts)
    loss0.backward()
    lt0, lg0 = parts[5], parts[6]
    g_vis = wft.ours({k: P[k].grad for k in vis})
    g_ex = [t.grad.clone() for t in ex]

    P, ex = fresh()
    Pe = {k: v.clone() for k, v in P0.items()}
    Ce = C0.clone()
    params = [P[k] for k in vis] + ex
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    losses, nconf = [], []
    for it in range(3):
        opt.zero_grad()
        pr = []
        loss = loss_fn(P, *ex, Pe, Ce, parts=pr)
        loss.backward()
        losses.append(loss.item())
        nconf.append(pr[4])
        opt.step()
        d = D0 + (D1 - D0) * min(1, it / WARM)
        with torch.no_grad():
            for k in vis:
                Pe[k] = Pe[k] * d + (1 - d) * P[k].detach()
            Ce = Ce * d + (1 - d) * ex[0].detach()
    with torch.no_grad():
        xs, _ = vit({k: v.detach() for k, v in P.items()}, weak)
        lg3 = SCALE * xs @ ex[0].detach()
        xe, _ = vit(Pe, weak)
        lg3e = SCALE * xe @ Ce
    s_vis = wft.ours({k: v.detach() for k, v in P.items()})
    e_vis = wft.ours(Pe)

    names = ["classifier", "mask_token", "ln_patch.weight", "ln_patch.bias", "decoder.weight",
             "decoder.bias"]
    st = {"init/mask_token": tok0.float(), "init/decoder.weight": dec_w0.float(),
          "init/decoder.bias": dec_b0.float()}
    for k, v in g_vis.items():
        st["grad/" + k] = v.detach().float().contiguous()
    for k, v in s_vis.items():
        st["step3/" + k] = v.detach().float().contiguous()
    for k in ("visual.proj", "visual.conv1.weight", "visual.ln_post.weight"):
        st["ema3/" + k] = e_vis[k].detach().float().contiguous()
    for n, gt, t in zip(names, g_ex, ex):
        st["grad/" + n] = gt.float().contiguous()
        st["step3/" + n] = t.detach().float().contiguous()
    st["ema3/classifier"] = Ce.float().contiguous()
    path = os.path.join(OUT_DIR, "must_ref.safetensors")
    clipref.st_write(path, st)

    out = ["/* Generated by tools/ref/gen_must_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_MUST_REF_H", "#define CT_TEST_MUST_REF_H",
           "", "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*); tensors",
           " * in must_ref.safetensors (init/, grad/, step3/, ema3/ <name>). */",
           "#define MREF_B %d" % B, "#define MREF_LR %r" % LR, "#define MREF_WD %r" % WD,
           "#define MREF_W_FAIR %r" % W_FAIR, "#define MREF_W_ALIGN %r" % W_ALIGN,
           "#define MREF_D0 %r" % D0, "#define MREF_D1 %r" % D1, "#define MREF_WARM %d" % WARM,
           "static const double mref_tau = %.17g;" % TAU,
           "/* confidences of the first teacher: %s */" % fmt(conf0.tolist()),
           'static const char *const mref_templates[%d] = {%s};'
           % (len(TEMPLATES), ", ".join('"%s"' % t for t in TEMPLATES)),
           carray("mref_mask", mask.flatten(1)),
           carray("mref_teacher_logits0", lt0),
           carray("mref_logits0", lg0),
           "static const double mref_parts0[5] = {%s};" % fmt(parts[:5]),
           "static const double mref_loss0 = %.17g;" % loss0.item(),
           "static const double mref_losses[3] = {%s};" % fmt(losses),
           "static const int mref_nconf[3] = {%s};" % ", ".join(map(str, nconf)),
           carray("mref_logits3", lg3),
           carray("mref_logits3_ema", lg3e),
           "", "#endif"]
    with open(os.path.join(OUT_DIR, "must_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("tau %.4f conf0" % TAU, [round(c, 4) for c in conf0.tolist()])
    print("loss0 %.6f parts" % loss0.item(), parts[:5], "losses", losses, "nconf", nconf)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
