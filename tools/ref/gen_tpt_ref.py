#!/usr/bin/python3
"""TPT's reference outputs (tests/fixtures/methods/tpt_ref.h) on the shared
tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_tpt_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Two parts, both written from the official behaviour (azshue/TPT), not its
code:

1. AugMix's ops (data/augmix_ops.py) as it calls Pillow, on a fixed 32 x 32
   RGB image: autocontrast, equalize, posterize, rotate (BILINEAR), solarize,
   shear x/y and translate x/y (Image.transform AFFINE, BILINEAR), with fixed
   magnitudes, some chained. The outputs are stored as hex so the C ports can
   be compared byte for byte. These 15 outputs plus the image itself are the
   16 "views" of part 2.

2. One image's test-time step, float64 on the tiny model: views normalised
   as ToTensor + Normalize (float32, OpenAI mean/std); image features by the
   frozen tower; CoOp prompts with ctx_init "a_photo_of_a" (4 context
   vectors, gen_coop_ref.Prompts); logits = exp(logit_scale) cos; per-view
   softmax entropy; the int(16 * 0.25) = 4 lowest-entropy views
   (select_confident_samples); loss = entropy of their mean prediction in
   avg_entropy's logsumexp form; its gradient; torch.optim.AdamW([ctx],
   lr=5e-3) (defaults: weight decay 0.01) for one and for two steps (the
   selection of the first kept); view 0's logits under the tuned context.
"""
import importlib.util
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageOps

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
S = TINY["image"]
SELECT = 0.25
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# op numbers as src/data/augmix.h's ct_augmix_op
AUTOCONTRAST, EQUALIZE, POSTERIZE, ROTATE, SOLARIZE = 0, 1, 2, 3, 4
SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y = 5, 6, 7, 8


def apply_op(img, op, v):
    """As augmix_ops.py calls Pillow once the magnitude v is drawn."""
    if op == AUTOCONTRAST:
        return ImageOps.autocontrast(img)
    if op == EQUALIZE:
        return ImageOps.equalize(img)
    if op == POSTERIZE:
        return ImageOps.posterize(img, int(v))
    if op == ROTATE:
        return img.rotate(v, resample=Image.BILINEAR)
    if op == SOLARIZE:
        return ImageOps.solarize(img, int(v))
    data = {SHEAR_X: (1, v, 0, 0, 1, 0), SHEAR_Y: (1, 0, 0, v, 1, 0),
            TRANSLATE_X: (1, 0, v, 0, 1, 0), TRANSLATE_Y: (1, 0, 0, 0, 1, v)}[op]
    return img.transform((S, S), Image.AFFINE, data, resample=Image.BILINEAR)


VIEW_OPS = [
    [(AUTOCONTRAST, 0)],
    [(EQUALIZE, 0)],
    [(POSTERIZE, 4)],
    [(POSTERIZE, 2)],
    [(ROTATE, 2)],
    [(ROTATE, -1)],
    [(ROTATE, 17)],
    [(SOLARIZE, 230)],
    [(SOLARIZE, 128)],
    [(SHEAR_X, 0.03)],
    [(SHEAR_Y, -0.025)],
    [(TRANSLATE_X, 7)],
    [(TRANSLATE_Y, -5)],
    [(ROTATE, -2), (SHEAR_X, -0.0123), (EQUALIZE, 0)],
    [(TRANSLATE_X, -3), (SOLARIZE, 200), (AUTOCONTRAST, 0)],
]


def base_image():
    """A smooth colour pattern with edges and noise, values inside [18, 236]
    so that autocontrast and equalize have work to do."""
    rs = np.random.RandomState(5)
    y, x = np.mgrid[0:S, 0:S].astype(np.float64)
    r = 120 + 80 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 60 + 3.5 * x + 2.0 * y
    b = 200 - 4.0 * np.hypot(x - 12, y - 18)
    img = np.stack([r, g, b], axis=-1)
    img[8:20, 10:24] = [210, 40, 90]
    img += rs.normal(0, 6, img.shape)
    return np.clip(np.round(img), 18, 236).astype(np.uint8)


def normalise(arr):
    """ToTensor + Normalize in float32, as torchvision."""
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return (t - mean) / std


def avg_entropy(logits):
    """TPT's average-prediction entropy, from its math: log of the mean
    probability as logsumexp(log_softmax) - log n, clamped at float min."""
    lp = logits - logits.logsumexp(dim=-1, keepdim=True)
    avg = lp.logsumexp(dim=0) - math.log(lp.shape[0])
    avg = torch.clamp(avg, min=torch.finfo(avg.dtype).min)
    return -(avg * torch.exp(avg)).sum(dim=-1)


def load_tiny():
    d = os.path.join(OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    fmt, carray = coopref.fmt, coopref.carray

    base = base_image()
    views = [base]
    for chain in VIEW_OPS:
        im = Image.fromarray(base, "RGB")
        for op, v in chain:
            im = apply_op(im, op, v)
        views.append(np.asarray(im.convert("RGB")))
    V = len(views)
    px = torch.stack([normalise(v) for v in views]).double()        # (V, 3, S, S)

    pr = coopref.Prompts(tok, P, 4, "a_photo_of_a", False, "end")
    ctx0 = pr.init.clone()
    feats = clipref.encode_image(P, TINY, px)[0]                     # (V, E)
    scale = P["logit_scale"].exp()

    def logits_of(ctx, f):
        txt, _ = clipref.encode_text_from_embeds(P, TINY, pr.assemble(ctx), pr.eot)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        f = f / f.norm(dim=-1, keepdim=True)
        return scale * f @ txt.t()

    n_sel = int(V * SELECT)
    results = {}
    for steps in (1, 2):
        ctx = ctx0.clone().requires_grad_(True)
        opt = torch.optim.AdamW([ctx], lr=5e-3)
        sel, losses, grad1 = None, [], None
        for _ in range(steps):
            opt.zero_grad()
            lg = logits_of(ctx, feats)
            if sel is None:
                ent = -(lg.softmax(1) * lg.log_softmax(1)).sum(1).detach()
                order = torch.argsort(ent, descending=False)
                sel = order[:n_sel]
                gap = (ent[order[n_sel]] - ent[order[n_sel - 1]]).item()
                entropy = ent
            loss = avg_entropy(lg[sel])
            loss.backward()
            losses.append(loss.item())
            if grad1 is None:
                grad1 = ctx.grad.clone()
            opt.step()
        with torch.no_grad():
            final = logits_of(ctx, feats[:1])[0]
        results[steps] = (ctx.detach().clone(), final, losses, grad1)
    with torch.no_grad():
        zs = logits_of(ctx0, feats[:1])[0]
    # the selection must not hinge on float32 rounding on the C side
    assert gap > 1e-4, "entropy gap %g at the selection boundary is too small" % gap

    out = ["/* Generated by tools/ref/gen_tpt_ref.py (torch %s, Pillow %s) -- do not edit. */"
           % (torch.__version__, Image.__version__),
           "#ifndef CT_TEST_TPT_REF_H", "#define CT_TEST_TPT_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "#define TREF_S %d" % S, "#define TREF_V %d" % V, "#define TREF_NSEL %d" % n_sel,
           "#define TREF_SELECT %r" % SELECT, "#define TREF_NCTX 4",
           "/* the original view (S x S x 3, RGB) */",
           "static const unsigned char tref_base[%d] = {%s};"
           % (base.size, ",".join(str(int(b)) for b in base.reshape(-1))),
           "/* views 1..: Pillow ops (ct_augmix_op numbers, magnitude) applied in order */",
           "static const struct { int n; int op[3]; double v[3]; } tref_ops[%d] = {" % len(VIEW_OPS)]
    for chain in VIEW_OPS:
        ops = [c[0] for c in chain] + [0] * (3 - len(chain))
        vs = [c[1] for c in chain] + [0] * (3 - len(chain))
        out.append("    {%d, {%s}, {%s}}," % (len(chain), ", ".join(map(str, ops)),
                                               ", ".join("%.17g" % v for v in vs)))
    out.append("};")
    out.append("/* Pillow's output of each chain, hex */")
    out.append("static const char *const tref_views_hex[%d] = {" % len(VIEW_OPS))
    for v in views[1:]:
        out.append('    "%s",' % v.tobytes().hex())
    out.append("};")
    out.append(carray("tref_ctx0", ctx0))
    out.append(carray("tref_entropy", entropy))
    out.append("static const int tref_selected[TREF_NSEL] = {%s};"
               % ", ".join(str(int(i)) for i in sel))
    out.append(carray("tref_scores_zs", zs))
    for steps in (1, 2):
        ctx, final, losses, grad1 = results[steps]
        pre = "tref_s%d" % steps
        out.append("/* %d AdamW step(s), lr 5e-3, weight decay 0.01 */" % steps)
        out.append("static const double %s_losses[%d] = {%s};" % (pre, steps, fmt(losses)))
        out.append(carray(pre + "_grad", grad1))
        out.append(carray(pre + "_ctx", ctx))
        out.append(carray(pre + "_scores", final))
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "tpt_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("entropy", [round(e, 6) for e in entropy.tolist()])
    print("selected", sel.tolist(), "gap %.3g" % gap)
    for steps in (1, 2):
        ctx, final, losses, grad1 = results[steps]
        print("steps", steps, "losses", losses, "|grad| max %.3g" % grad1.abs().max().item(),
              "moved %.3g" % (ctx - ctx0).abs().max().item(), "scores", final.tolist())
    print("zero-shot scores", zs.tolist())
    print("wrote", os.path.join(OUT_DIR, "tpt_ref.h"))


if __name__ == "__main__":
    main()
