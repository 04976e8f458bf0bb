#!/usr/bin/python3
"""WiSE-FT's reference outputs on the shared tiny CLIP (gen_coop_ref.py's,
read back, not rewritten): tests/fixtures/methods/wise_ft_ref.h (small
arrays) and wise_ft_ref.safetensors (per-weight gradients and weights, F32,
in cliptune's canonical layout: Linear weights (out, in), q/k/v split).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_wise_ft_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Written from mlfoundations/wise-ft's behaviour (not its code), float64:
  - zero-shot head (zeroshot.py): for each class, every template filled
    with the name ('_' -> ' ' as cliptune fills templates), encoded,
    normalised, averaged, renormalised; times logit_scale.exp(); bias 0;
  - ClassificationHead(normalize=True): logits = normalize(f) W^T + b, f the
    image tower's embedding; loss = label-smoothed cross-entropy
    (LabelSmoothing, here ls = 0.1);
  - end-to-end: the gradient of every vision weight and of W, b; then two
    steps of torch.optim.AdamW(lr=1e-3, weight_decay=0.1) after
    torch.nn.utils.clip_grad_norm_(params, 1.0), as finetune.py;
  - _merge: theta_a = (1 - a) theta_0 + a theta_1 over the tower and the
    head, a = 0.3, and the logits under it.
Pixels are a formula both sides compute (1.5 sin(0.1 i + 0.7 b), rounded to
float32), 4 images, labels (0, 3, 1, 4).
"""
import importlib.util
import json
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


coopref = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
CLASSNAMES = coopref.CLASSNAMES
TEMPLATES = ["a photo of a {}.", "a drawing of the {}."]
B, LS, LR, WD, ALPHA = 4, 0.1, 1e-3, 0.1, 0.3
LABELS = [0, 3, 1, 4]


def load_tiny():
    d = os.path.join(OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def pixels():
    S = TINY["image"]
    n = 3 * S * S
    px = np.empty((B, n), dtype=np.float32)
    for b in range(B):
        for i in range(n):
            px[b, i] = np.float32(1.5 * math.sin(0.1 * i + 0.7 * b))
    return torch.from_numpy(px).double().reshape(B, 3, S, S)


def ours(P):
    """cliptune's canonical vision weights (name -> tensor view of P)."""
    W = TINY["v_width"]
    out = {}
    for k in ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
              "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight",
              "visual.ln_post.bias"):
        out[k] = P[k]
    out["visual.proj"] = P["visual.proj"].t()
    for l in range(TINY["v_layers"]):
        p = "visual.transformer.resblocks.%d." % l
        for i, x in enumerate("qkv"):
            out[p + "attn.%s_proj.weight" % x] = P[p + "attn.in_proj_weight"][i * W:(i + 1) * W]
            out[p + "attn.%s_proj.bias" % x] = P[p + "attn.in_proj_bias"][i * W:(i + 1) * W]
        for k in ("attn.out_proj.weight", "attn.out_proj.bias", "ln_1.weight", "ln_1.bias",
                  "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                  "mlp.c_proj.weight", "mlp.c_proj.bias"):
            out[p + k] = P[p + k]
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P0 = load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    fmt, carray = coopref.fmt, coopref.carray

    # zero-shot head
    cls = []
    for name in CLASSNAMES:
        ids = torch.tensor([tok.row(t.format(name.replace("_", " "))) for t in TEMPLATES])
        e, _ = clipref.encode_text_from_embeds(P0, TINY, P0["token_embedding.weight"][ids],
                                               ids.argmax(dim=-1))
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(dim=0)
        cls.append(e / e.norm())
    W0 = torch.stack(cls) * P0["logit_scale"].exp()
    b0 = torch.zeros(len(CLASSNAMES))

    px = pixels()
    y = torch.tensor(LABELS)
    vis = [k for k in P0 if k.startswith("visual.")]

    def logits(P, W, b):
        f = clipref.encode_image(P, TINY, px)[0]
        return (f / f.norm(dim=-1, keepdim=True)) @ W.t() + b

    # gradient at theta_0
    P = {k: (v.clone().requires_grad_(True) if k in vis else v) for k, v in P0.items()}
    W, b = W0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    loss0 = F.cross_entropy(logits(P, W, b), y, label_smoothing=LS)
    loss0.backward()
    grads = {k: P[k].grad for k in vis}
    g_ours = ours(grads)
    g_W, g_b = W.grad.clone(), b.grad.clone()

    # two AdamW steps (clip_grad_norm_ 1.0 first, as finetune.py)
    P = {k: (v.clone().requires_grad_(True) if k in vis else v) for k, v in P0.items()}
    W, b = W0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    params = [P[k] for k in vis] + [W, b]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    losses, norms = [], []
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(logits(P, W, b), y, label_smoothing=LS)
        loss.backward()
        losses.append(loss.item())
        norms.append(torch.nn.utils.clip_grad_norm_(params, 1.0).item())
        opt.step()
    with torch.no_grad():
        lg2 = logits(P, W, b)
        P1 = {k: v.detach() for k, v in P.items()}
        W1, b1 = W.detach(), b.detach()
        # _merge at ALPHA, tower and head
        Pa = {k: ((1 - ALPHA) * P0[k] + ALPHA * P1[k]) if k in vis else P0[k] for k in P0}
        lga = logits(Pa, (1 - ALPHA) * W0 + ALPHA * W1, (1 - ALPHA) * b0 + ALPHA * b1)
        lg0 = logits(P0, W0, b0)
    s_ours = ours(P1)

    st = {}
    for k, v in g_ours.items():
        st["grad/" + k] = v.detach().to(torch.float32).contiguous()
    for k, v in s_ours.items():
        st["step2/" + k] = v.detach().to(torch.float32).contiguous()
    path = os.path.join(OUT_DIR, "wise_ft_ref.safetensors")
    clipref.st_write(path, st)

    out = ["/* Generated by tools/ref/gen_wise_ft_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_WISE_FT_REF_H", "#define CT_TEST_WISE_FT_REF_H",
           "", "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*); per-weight",
           " * gradients and weights in wise_ft_ref.safetensors (grad/<name>, step2/<name>). */",
           "#define WREF_B %d" % B, "#define WREF_LS %r" % LS, "#define WREF_LR %r" % LR,
           "#define WREF_WD %r" % WD, "#define WREF_ALPHA %r" % ALPHA,
           'static const char *const wref_templates[%d] = {%s};'
           % (len(TEMPLATES), ", ".join('"%s"' % t for t in TEMPLATES)),
           "static const int wref_labels[WREF_B] = {%s};" % ", ".join(map(str, LABELS)),
           carray("wref_head0", W0),
           carray("wref_logits0", lg0),
           "static const double wref_loss0 = %.17g;" % loss0.item(),
           carray("wref_grad_w", g_W), carray("wref_grad_b", g_b),
           "/* two AdamW steps (lr %g, weight decay %g) after clipping to norm 1 */" % (LR, WD),
           "static const double wref_losses[2] = {%s};" % fmt(losses),
           "static const double wref_grad_norms[2] = {%s};" % fmt(norms),
           carray("wref_step2_w", W1), carray("wref_step2_b", b1),
           carray("wref_logits2", lg2),
           carray("wref_logits_alpha", lga),
           "", "#endif"]
    with open(os.path.join(OUT_DIR, "wise_ft_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("loss0 %.6f" % loss0.item(), "losses", losses, "grad norms", norms)
    print("max |grad| vision %.3g head %.3g" % (max(v.abs().max().item() for v in g_ours.values()),
                                                g_W.abs().max().item()))
    print("moved vision %.3g" % max((s_ours[k] - ours(P0)[k]).abs().max().item() for k in s_ours))
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
