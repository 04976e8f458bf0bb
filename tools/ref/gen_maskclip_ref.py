#!/usr/bin/python3
"""MaskCLIP's reference outputs (tests/fixtures/methods/maskclip_ref.h), for
tests/test_maskclip.c.

    /usr/bin/python3 tools/ref/gen_maskclip_ref.py [out.h]

Needs Debian's python3-torch. Deterministic; float64 from the weights as
stored (F16 tiny fixture, F32 shipped model).

An independent re-implementation of the official chongzhou96/MaskCLIP math
(not of the C code):
  - mmseg/models/backbones/vit.py, VisionTransformer.forward with
    pre_norm=True, final_norm=True, return_qkv=True (configs/_base_/models/
    maskclip_vit16.py) and TransformerEncoderLayer.forward(return_qkv=True),
    written with the same tensor operations: the last layer's
        y = F.linear(norm1(x), in_proj_weight, in_proj_bias)
        y = y.view(N, L, 3, C).permute(2, 0, 1, 3).reshape(3N, L, C)
        y = F.linear(y, out_proj.weight, out_proj.bias)
        q, k, v = y.tensor_split(3, dim=0)
        v += x;  v = v + ffn(norm2(v))          # FFN with its identity
    then v = norm1(v) (ln_post) and the head's 1x1 conv with proj^T
    (tools/maskclip_utils/convert_clip_weights.py stores proj.t()); the
    ordinary layers run torch.nn.MultiheadAttention with CLIP's weights (not
    gen_clip_ref.py's attention). The model's own activation and LayerNorm
    eps are used (the official config's GELU and eps 1e-6 are those of
    mmseg's ViT, not of CLIP's QuickGELU / 1e-5 towers it loads);
  - mmseg/models/decode_heads/maskclip_head.py, MaskClipHead.cls_seg and
    refine_output, op for op: feat / feat.norm(dim=1), conv2d with the text
    embeddings; prompt denoising (softmax(100 x) over classes, max over
    positions < pd_thresh -> -100); key smoothing (softmax(100 x),
    F.normalize(k, p=2) -- dim=1 of (N, HW, C), the patch axis -- weight =
    k k^T, positions whose max < ks_thresh take weight @ output). The
    "cosine" case normalises each key instead (dim=-1).

Images are the closed formula of gen_calip_ref.py: image b, flat index i
over (3, S, S), pixel = float32(sin(0.1 i + 0.7 b) cos(0.013 i (b + 1))).
The classifier is drawn (seeded) near the patches' mean direction (so that
softmax(100 cos) is not saturated) and rounded to float32; thresholds are chosen so that no class maximum or patch
maximum lies within MARGIN of them (float32 rounding cannot flip a choice),
and each refinement changes some but not all of what it could.
The shipped model models/cliptune-small (4 blocks) gives one formula image's
value features and keys too, so the C side's capture of the last block's
input is checked on a tower deeper than the tiny one-block fixture.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cr = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = cr.clipref
torch.set_default_dtype(torch.float64)

N, K = 3, 5
MARGIN = 2e-3


def read_model(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}, cfg


def pixels(b0, n, S):
    i = np.arange(3 * S * S, dtype=np.float64)
    rows = [np.sin(0.1 * i + 0.7 * b) * np.cos(0.013 * i * (b + 1)) for b in range(b0, b0 + n)]
    px = np.stack(rows).astype(np.float32).astype(np.float64)
    return torch.tensor(px).reshape(n, 3, S, S)


def act_of(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    return lambda x: F.gelu(x)


def maskclip_vit(P, cfg, px):
    """vit.py's forward for MaskCLIP: returns (v, k, x) over all tokens:
    v (N, L, E) after norm1 (ln_post) and the head's proj; k (N, L, W) the
    last layer's keys; x (N, L, E) the ordinary tokens after ln_post + proj."""
    vc = cfg["vision_config"]
    eps, heads, layers = vc["layer_norm_eps"], vc["num_attention_heads"], vc["num_hidden_layers"]
    act = act_of(vc["hidden_act"])
    W = P["visual.conv1.weight"].shape[0]
    ln = lambda t, n: F.layer_norm(t, (W,), P[n + ".weight"], P[n + ".bias"], eps)
    x = F.conv2d(px, P["visual.conv1.weight"], stride=vc["patch_size"])   # patch_embed
    B = x.shape[0]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([P["visual.class_embedding"].reshape(1, 1, W).expand(B, -1, -1), x], dim=1)
    x = x + P["visual.positional_embedding"][None]
    x = ln(x, "visual.ln_pre")                                              # norm0
    q = k = v = None
    for i in range(layers):
        pre = "visual.transformer.resblocks.%d." % i
        mha = torch.nn.MultiheadAttention(W, heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(P[pre + "attn.in_proj_weight"])
            mha.in_proj_bias.copy_(P[pre + "attn.in_proj_bias"])
            mha.out_proj.weight.copy_(P[pre + "attn.out_proj.weight"])
            mha.out_proj.bias.copy_(P[pre + "attn.out_proj.bias"])

        def ffn(t, identity):
            h = act(F.linear(t, P[pre + "mlp.c_fc.weight"], P[pre + "mlp.c_fc.bias"]))
            return identity + F.linear(h, P[pre + "mlp.c_proj.weight"], P[pre + "mlp.c_proj.bias"])

        if i == layers - 1:  # return_qkv
            y = ln(x, pre + "ln_1")
            y = F.linear(y, P[pre + "attn.in_proj_weight"], P[pre + "attn.in_proj_bias"])
            Nn, L, C = y.shape
            y = y.view(Nn, L, 3, C // 3).permute(2, 0, 1, 3).reshape(3 * Nn, L, C // 3)
            y = F.linear(y, P[pre + "attn.out_proj.weight"], P[pre + "attn.out_proj.bias"])
            q, k, v = y.tensor_split(3, dim=0)
            v += x
            v = ffn(ln(v, pre + "ln_2"), identity=v)
        h = ln(x, pre + "ln_1")
        x = x + mha(h, h, h, need_weights=False)[0]
        x = ffn(ln(x, pre + "ln_2"), identity=x)
    x = ln(x, "visual.ln_post")                                             # final_norm
    v = ln(v, "visual.ln_post")
    proj_w = P["visual.proj"].t()  # (E, W), the 1x1 conv weight the official loads
    vfeat = F.conv2d(v.transpose(1, 2)[..., None], proj_w[:, :, None, None])[..., 0].transpose(1, 2)
    return vfeat, k, x @ P["visual.proj"]


def maskclip_head(v, k, text, pd_thresh, ks_thresh, cosine=False):
    """maskclip_head.py forward (vit) + cls_seg + refine_output on the
    patches: v (N, L, E), k (N, L, W) with the class token at 0. Returns
    (N, HW, K)."""
    Nn, L, E = v.shape
    hw = int(round((L - 1) ** 0.5))
    feat = v[:, 1:].reshape(Nn, hw, hw, E).permute(0, 3, 1, 2)
    k = k[:, 1:]
    feat = feat / feat.norm(dim=1, keepdim=True)
    output = F.conv2d(feat, text[:, :, None, None])
    if pd_thresh > 0:
        N_, C, H, W_ = output.shape
        _output = F.softmax(output * 100, dim=1)
        max_cls_conf = _output.view(N_, C, -1).max(dim=-1)[0]
        selected_cls = (max_cls_conf < pd_thresh)[:, :, None, None].expand(N_, C, H, W_)
        output[selected_cls] = -100
    if k is not None and ks_thresh > 0:
        output = F.softmax(output * 100, dim=1)
        N_, C, H, W_ = output.shape
        output = output.view(N_, C, -1).transpose(-2, -1)
        kk = F.normalize(k, p=2, dim=-1) if cosine else F.normalize(k, p=2)
        weight = kk @ kk.transpose(-2, -1)
        selected_pos = (output.max(dim=-1, keepdim=True)[0] < ks_thresh)
        selected_pos = selected_pos.expand(-1, -1, C)
        weighted_output = weight @ output
        output[selected_pos] = weighted_output[selected_pos]
        output = output.transpose(-2, -1).view(N_, C, H, W_)
    return output.permute(0, 2, 3, 1).reshape(Nn, -1, output.shape[1])


def cos_logits(v, text):
    f = v[:, 1:] / v[:, 1:].norm(dim=-1, keepdim=True)
    return f @ text.t()


def gap_threshold(values, lo, hi):
    """A threshold in (lo, hi) at the middle of the widest gap between the
    sorted values, MARGIN away from every value, with some on each side."""
    s = sorted(float(x) for x in values)
    best = None
    for a, b in zip(s, s[1:]):
        m = 0.5 * (a + b)
        if lo < m < hi and b - a > 2 * MARGIN and (best is None or b - a > best[0]):
            best = (b - a, m)
    return None if best is None else best[1]


def carray9(name, t):
    """Doubles to 9 significant digits (float32 precision; the C side is
    float32): the shipped model's arrays are large."""
    flat = t.detach().reshape(-1).tolist()
    rows = ["    " + ", ".join("%.9g" % x for x in flat[i:i + 10]) + ","
            for i in range(0, len(flat), 10)]
    return "static const double %s[%d] = {\n%s\n};" % (name, len(flat), "\n".join(rows))


def far_from(values, t):
    return all(abs(float(x) - t) > MARGIN for x in values)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(cr.OUT_DIR, "maskclip_ref.h")
    P, cfg = read_model(os.path.join(cr.OUT_DIR, "tiny"))
    S = cfg["vision_config"]["image_size"]
    v, k, tok = maskclip_vit(P, cfg, pixels(0, N, S))
    # the ordinary dense features agree with gen_clip_ref.py's encoder
    _, dense, _ = clipref.encode_image(P, cr.TINY, pixels(0, N, S))
    assert (dense - tok).abs().max() < 1e-10
    Nn, T, E = v.shape
    Wk = k.shape[2]
    pf = v[:, 1:].reshape(-1, E)
    for seed in range(500):
        rng = np.random.default_rng(seed)
        # near one another (a shared direction plus some of one patch each),
        # so that softmax(100 cos) is not saturated everywhere
        rows = pf[torch.tensor(rng.choice(pf.shape[0], K, replace=False))]
        spread = (0.05, 0.1, 0.15, 0.2)[seed % 4]
        base = pf.mean(0) / pf.mean(0).norm()
        text = (base + spread * rows / rows.norm(dim=-1, keepdim=True)
                + torch.tensor(rng.normal(0, spread / 2, (K, E))))
        text = text / text.norm(dim=-1, keepdim=True)
        text = torch.tensor(text.numpy().astype(np.float32).astype(np.float64))
        lg = cos_logits(v, text)
        pr = F.softmax(100 * lg, dim=-1)
        cmax = pr.max(dim=1).values.reshape(-1)        # (N K) class maxima over patches
        pd = gap_threshold(cmax, 0.05, 0.95)
        pmax = pr.max(dim=-1).values.reshape(-1)       # (N P) patch maxima over classes
        ks = gap_threshold(pmax, 0.3, 0.999)
        if pd is None or ks is None:
            continue
        # after denoising, the patch maxima KS compares move: keep them off ks
        pr_pd = F.softmax(100 * maskclip_head(v, k, text, pd, 0.0), dim=-1)
        if not far_from(pr_pd.max(dim=-1).values.reshape(-1), ks):
            continue
        # the official thresholds: 0.5 for PD, 1.0 for KS (every patch not
        # saturated; here none is)
        if not (far_from(cmax, 0.5) and float(pmax.max()) < 1.0 - MARGIN):
            continue
        break
    else:
        sys.exit("no robust draw")
    cases = [  # name, pd, ks, cosine
        ("plain", 0.0, 0.0, False),
        ("pd", pd, 0.0, False),
        ("pd_official", 0.5, 0.0, False),
        ("ks_official", 0.0, 1.0, False),
        ("ks", 0.0, ks, False),
        ("kspd", pd, ks, False),
        ("ks_cosine", 0.0, ks, True),
    ]
    lines = ["/* Generated by tools/ref/gen_maskclip_ref.py (torch %s) -- do not edit. */"
             % torch.__version__,
             "#ifndef CT_TEST_MASKCLIP_REF_H", "#define CT_TEST_MASKCLIP_REF_H", "",
             "/* Model: tests/fixtures/methods/tiny (F16). Images 0..N-1: the closed",
             " * formula in gen_maskclip_ref.py (gen_calip_ref.py's). */",
             "#define MCREF_N %d" % N, "#define MCREF_K %d" % K, "#define MCREF_T %d" % T,
             "#define MCREF_E %d" % E, "#define MCREF_W %d" % Wk,
             "#define MCREF_P %d" % (T - 1), "#define MCREF_SEED %d /* the text draw */" % seed,
             "/* value path: ln_post + proj of every token (N, T, E) */",
             cr.carray("mcref_value", v),
             "/* the last block's keys through out_proj (N, T, W) */",
             cr.carray("mcref_keys", k),
             "/* the ordinary dense features, ln_post + proj of the tokens (N, T, E) */",
             cr.carray("mcref_tokens", tok),
             "/* the class embeddings (K, E), unit rows (float32 values) */",
             cr.carray("mcref_text", text, "float"), ""]
    lines.append("static const struct { const char *name; float pd, ks; int cosine; } "
                 "mcref_cases[%d] = {" % len(cases))
    for name, a, b, c in cases:
        lines.append('    {"%s", %.9g, %.9g, %d},' % (name, a, b, int(c)))
    lines.append("};")
    outs = []
    summary = []
    for name, a, b, c in cases:
        o = maskclip_head(v, k, text, a, b, c)
        outs.append(o)
        base = cos_logits(v, text)
        changed = (o - base).abs().gt(1e-9).double().mean().item() if b == 0 else float("nan")
        summary.append("%s: pd %.4g ks %.4g cosine %d, |out| max %.3g%s" % (
            name, a, b, c, o.abs().max(), "" if b else ", changed %.2f" % changed))
    lines.append("/* per case, (N, P, K): cosines, -100 for denoised classes; with key")
    lines.append(" * smoothing, the refined probabilities */")
    lines.append(cr.carray("mcref_out", torch.stack(outs)))
    lines.append("")
    # the shipped model: one formula image, every token
    Ps, cfgs = read_model(os.path.join(ROOT, "models", "cliptune-small"))
    Ss = cfgs["vision_config"]["image_size"]
    vs, ks_, toks = maskclip_vit(Ps, cfgs, pixels(0, 1, Ss))
    lines += ["/* models/cliptune-small, formula image 0: value path (1, T, E) and keys",
              " * (1, T, W) */",
              "#define MCREF_SMALL_T %d" % vs.shape[1], "#define MCREF_SMALL_E %d" % vs.shape[2],
              "#define MCREF_SMALL_W %d" % ks_.shape[2],
              carray9("mcref_small_value", vs), carray9("mcref_small_keys", ks_),
              "", "#endif", ""]
    with open(out_path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(summary))
    print("seed %d: pd %.6g ks %.6g; value vs tokens max |diff| %.3g; shipped |value| max %.3g"
          % (seed, pd, ks, (v - tok).abs().max(), vs.abs().max()))


if __name__ == "__main__":
    main()
