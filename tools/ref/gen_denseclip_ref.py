#!/usr/bin/python3
"""DenseCLIP's reference outputs on the shared tiny CLIP:
tests/fixtures/methods/denseclip_ref.h (names, sizes, scalars) and
denseclip_ref.safetensors (F32 arrays).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_denseclip_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Written from raoyongming/DenseCLIP's segmentation/denseclip/{denseclip,models,
heads}.py and mmseg 0.x's FPN / FPNHead / CrossEntropyLoss (their behaviour,
not their code), float64, on the tiny model (1 vision block, grid 4x4):
  - backbone: the CLIP ViT's patch tokens after blocks out_indices (all 0 on
    one block), fpn1 GN-ConvT-BN-GELU-ConvT, fpn2 GN-ConvT, fpn3 GN,
    fpn4 GN-MaxPool; ln_post + proj of every token;
  - text: [SOT, contexts, name tokens, EOT, 0..] through the frozen text
    tower (positions 0 .. n_ctx + text_length - 1), EOT at argmax + n_ctx;
  - ContextDecoder (memory_proj, text_proj, TransformerDecoderLayer x L,
    out_proj), text + gamma * diff; score map of normalised embeddings,
    concatenated to level 2;
  - FPN (1x1 laterals, nearest top-down, 3x3 outputs), FPNHead (conv3x3-BN-
    ReLU [+ bilinear x2] per octave, sum, 1x1 conv_seg), logits resized
    bilinearly to the input;
  - loss: CE(resize(logits), masks, ignore 255, mean over all pixels)
    + 0.4 CE(resize(score / 0.07), masks) in training mode (batch norm with
    batch statistics, running statistics updated; dropout 0);
  - three torch.optim.AdamW steps (lr 1e-3, backbone.* 1e-4, weight decay
    1e-4), running statistics after them, evaluation-mode logits.
Parameters other than the copied image tower start from a formula both
sides compute (init_value); pixels 1.5 sin(0.1 i + 0.7 b) as float32;
masks ((b + y + x) mod 6, 6 = 255).
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


coopref = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
wftref = load_module("gen_wise_ft_ref", os.path.join(HERE, "gen_wise_ft_ref.py"))
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
CLASSNAMES = coopref.CLASSNAMES
K = len(CLASSNAMES)
B = 2
N_CTX, TEXT_LEN = 4, 8
S, PATCH = TINY["image"], TINY["patch"]
G = S // PATCH
W, E = TINY["v_width"], TINY["embed"]
C = (W + 2) // 3          # neck_channels default: round(W / 3)
D = E // 2                # decoder_width default
HEADS, LAYERS = 4, 3
TAU, AUX = 0.07, 0.4
LR, LR_BB, WD = 1e-3, 1e-4, 1e-4
SET = "n_ctx=%d text_length=%d dropout=0 lr=%g backbone.lr=%g" % (N_CTX, TEXT_LEN, LR, LR_BB)
NS = 8                    # samples per tensor


def norm_weight(name):
    keys = ("fpn1.0.", "fpn2.0.", "backbone.fpn3.", "fpn4.0.", "fpn1.2.", ".bn.",
            "memory_proj.0.", "memory_proj.2.", "text_proj.0.", "out_proj.0.", ".norm1.",
            ".norm2.", ".norm3.")
    return name.endswith(".weight") and any(k in name for k in keys)


def init_value(name, j, shape):
    """The formula both sides start from: base + amp sin(0.37 i + 0.91 j)."""
    if name.endswith("running_var"):
        base, amp = 1.0, 0.3
    elif name.endswith("running_mean"):
        base, amp = 0.0, 0.1
    elif name == "contexts":
        base, amp = 0.0, 1.0
    elif name == "gamma":
        base, amp = 0.0, 0.5
    elif norm_weight(name):
        base, amp = 1.0, 0.1
    else:
        base, amp = 0.0, 0.2
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    v = (base + amp * np.sin(0.37 * i + 0.91 * j)).astype(np.float32).astype(np.float64)
    return torch.from_numpy(v).reshape(shape)


def param_specs():
    """(name, shape, learnable) in cliptune's params() order."""
    sp = [("contexts", (1, N_CTX, TINY["t_width"]), True), ("gamma", (E,), True),
          ("backbone.visual", None, True)]
    for n in ("backbone.fpn1.0", "backbone.fpn2.0", "backbone.fpn3", "backbone.fpn4.0"):
        sp += [(n + ".weight", (W,), True), (n + ".bias", (W,), True)]

    def convt(n):
        return [(n + ".weight", (W, W, 2, 2), True), (n + ".bias", (W,), True)]

    def bn(n, c):
        return [(n + ".weight", (c,), True), (n + ".bias", (c,), True),
                (n + ".running_mean", (c,), False), (n + ".running_var", (c,), False)]

    def lin(n, o, i, bias=True):
        return [(n + ".weight", (o, i), True)] + ([(n + ".bias", (o,), True)] if bias else [])

    def ln(n, c):
        return [(n + ".weight", (c,), True), (n + ".bias", (c,), True)]

    sp += convt("backbone.fpn1.1") + bn("backbone.fpn1.2", W) + convt("backbone.fpn1.4")
    sp += convt("backbone.fpn2.1")
    cd = "context_decoder."
    sp += ln(cd + "memory_proj.0", E) + lin(cd + "memory_proj.1", D, E) + \
        ln(cd + "memory_proj.2", D) + ln(cd + "text_proj.0", E) + lin(cd + "text_proj.1", D, E)
    for l in range(LAYERS):
        p = cd + "decoder.%d." % l
        for a in ("self_attn", "cross_attn"):
            for q in ("q_proj", "k_proj", "v_proj"):
                sp += lin(p + a + "." + q, D, D, bias=False)
            sp += lin(p + a + ".proj", D, D)
        for k in (1, 2, 3):
            sp += ln(p + "norm%d" % k, D)
        sp += lin(p + "mlp.0", 4 * D, D) + lin(p + "mlp.3", D, 4 * D)
    sp += ln(cd + "out_proj.0", D) + lin(cd + "out_proj.1", E, D)
    for i in range(4):
        cin = W + (K if i == 2 else 0)
        sp += [("neck.lateral_convs.%d.conv.weight" % i, (C, cin, 1, 1), True),
               ("neck.lateral_convs.%d.conv.bias" % i, (C,), True),
               ("neck.fpn_convs.%d.conv.weight" % i, (C, C, 3, 3), True),
               ("neck.fpn_convs.%d.conv.bias" % i, (C,), True)]
    for i in range(4):
        for k in range(max(1, i)):
            pos = 2 * k if i > 0 else k
            p = "decode_head.scale_heads.%d.%d." % (i, pos)
            sp += [(p + "conv.weight", (C, C, 3, 3), True)] + bn(p + "bn", C)
    sp += [("decode_head.conv_seg.weight", (K, C, 1, 1), True),
           ("decode_head.conv_seg.bias", (K,), True)]
    return sp


def pixels():
    n = 3 * S * S
    px = np.empty((B, n), dtype=np.float32)
    for b in range(B):
        for i in range(n):
            px[b, i] = np.float32(1.5 * math.sin(0.1 * i + 0.7 * b))
    return torch.from_numpy(px).double().reshape(B, 3, S, S)


def masks():
    m = np.empty((B, S, S), dtype=np.int64)
    for b in range(B):
        for y in range(S):
            for x in range(S):
                v = (b + y + x) % 6
                m[b, y, x] = 255 if v == 5 else v
    return torch.from_numpy(m)


def group_norm(x, w, b):
    return F.group_norm(x, 1, w, b, 1e-5)


def attention(P, p, q, kv):
    Bq, N, Dd = q.shape
    M = kv.shape[1]
    h = HEADS
    qq = (q @ P[p + ".q_proj.weight"].t()).reshape(Bq, N, h, Dd // h)
    kk = (kv @ P[p + ".k_proj.weight"].t()).reshape(Bq, M, h, Dd // h)
    vv = (kv @ P[p + ".v_proj.weight"].t()).reshape(Bq, M, h, Dd // h)
    a = torch.einsum("bnkc,bmkc->bknm", qq, kk) * (Dd // h) ** -0.5
    a = a.softmax(dim=-1)
    x = torch.einsum("bknm,bmkc->bnkc", a, vv).reshape(Bq, N, Dd)
    return x @ P[p + ".proj.weight"].t() + P[p + ".proj.bias"]


def lin(P, x, n):
    y = x @ P[n + ".weight"].t()
    return y + P[n + ".bias"] if (n + ".bias") in P else y


def lnorm(P, x, n):
    return F.layer_norm(x, (x.shape[-1],), P[n + ".weight"], P[n + ".bias"], 1e-5)


def bnorm(P, x, n, train):
    return F.batch_norm(x, P[n + ".running_mean"], P[n + ".running_var"], P[n + ".weight"],
                        P[n + ".bias"], training=train, momentum=0.1, eps=1e-5)


def forward(P, V, text_ids, eot, px, train):
    """P: DenseCLIP's tensors; V: the model (OpenAI names) with the trained
    visual weights. Returns (logits at S x S, score map)."""
    act = clipref.act_fn(TINY["act"])
    x = F.conv2d(px, V["visual.conv1.weight"], stride=PATCH)
    x = x.reshape(B, W, -1).permute(0, 2, 1)
    cls = V["visual.class_embedding"].reshape(1, 1, W).expand(B, 1, W)
    x = torch.cat([cls, x], dim=1) + V["visual.positional_embedding"]
    x = clipref.layer_norm(x, V["visual.ln_pre.weight"], V["visual.ln_pre.bias"])
    out_indices = [0, 0, 0, 0]          # auto on one block
    feats = [None] * 4
    for i in range(TINY["v_layers"]):
        x = clipref.resblock(x, V, "visual.transformer.resblocks.%d." % i, TINY["v_heads"], act,
                             False)
        for j, oi in enumerate(out_indices):
            if oi == i:
                feats[j] = x[:, 1:, :].permute(0, 2, 1).reshape(B, W, G, G)
    f1 = group_norm(feats[0], P["backbone.fpn1.0.weight"], P["backbone.fpn1.0.bias"])
    f1 = F.conv_transpose2d(f1, P["backbone.fpn1.1.weight"], P["backbone.fpn1.1.bias"], stride=2)
    f1 = F.gelu(bnorm(P, f1, "backbone.fpn1.2", train))
    f1 = F.conv_transpose2d(f1, P["backbone.fpn1.4.weight"], P["backbone.fpn1.4.bias"], stride=2)
    f2 = group_norm(feats[1], P["backbone.fpn2.0.weight"], P["backbone.fpn2.0.bias"])
    f2 = F.conv_transpose2d(f2, P["backbone.fpn2.1.weight"], P["backbone.fpn2.1.bias"], stride=2)
    f3 = group_norm(feats[2], P["backbone.fpn3.weight"], P["backbone.fpn3.bias"])
    f4 = F.max_pool2d(group_norm(feats[3], P["backbone.fpn4.0.weight"],
                                 P["backbone.fpn4.0.bias"]), 2, 2)
    xe = clipref.layer_norm(x, V["visual.ln_post.weight"], V["visual.ln_post.bias"]) @ \
        V["visual.proj"]
    glob, vis = xe[:, 0], xe[:, 1:].reshape(B, G, G, E).permute(0, 3, 1, 2)
    # text: CLIPTextContextEncoder
    emb = V["token_embedding.weight"][text_ids]            # (K, tl, Wt)
    ctx = P["contexts"].expand(K, N_CTX, emb.shape[-1])
    xt = torch.cat([emb[:, :1], ctx, emb[:, 1:]], dim=1)
    txt, _ = clipref.encode_text_from_embeds(V, TINY, xt, eot)
    text = txt.unsqueeze(0).expand(B, K, E)
    # ContextDecoder on [global, patches]
    visual = torch.cat([glob.reshape(B, E, 1), vis.reshape(B, E, G * G)], dim=2).permute(0, 2, 1)
    cd = "context_decoder."
    mem = lnorm(P, lin(P, lnorm(P, visual, cd + "memory_proj.0"), cd + "memory_proj.1"),
                cd + "memory_proj.2")
    h = lin(P, lnorm(P, text, cd + "text_proj.0"), cd + "text_proj.1")
    for l in range(LAYERS):
        p = cd + "decoder.%d." % l
        q = lnorm(P, h, p + "norm1")
        h = h + attention(P, p + "self_attn", q, q)
        h = h + attention(P, p + "cross_attn", lnorm(P, h, p + "norm2"), mem)
        m = F.gelu(lin(P, lnorm(P, h, p + "norm3"), p + "mlp.0"))
        h = h + lin(P, m, p + "mlp.3")
    diff = lin(P, lnorm(P, h, cd + "out_proj.0"), cd + "out_proj.1")
    text = text + P["gamma"] * diff
    vn = F.normalize(vis, dim=1, p=2)
    tn = F.normalize(text, dim=2, p=2)
    score = torch.einsum("bchw,bkc->bkhw", vn, tn)
    levels = [f1, f2, torch.cat([f3, score], dim=1), f4]
    # FPN
    lat = [F.conv2d(levels[i], P["neck.lateral_convs.%d.conv.weight" % i],
                    P["neck.lateral_convs.%d.conv.bias" % i]) for i in range(4)]
    for i in range(3, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:],
                                                mode="nearest")
    outs = [F.conv2d(lat[i], P["neck.fpn_convs.%d.conv.weight" % i],
                     P["neck.fpn_convs.%d.conv.bias" % i], padding=1) for i in range(4)]
    # FPNHead
    acc = None
    for i in range(4):
        y = outs[i]
        for k in range(max(1, i)):
            pos = 2 * k if i > 0 else k
            p = "decode_head.scale_heads.%d.%d." % (i, pos)
            y = F.relu(bnorm(P, F.conv2d(y, P[p + "conv.weight"], padding=1), p + "bn", train))
            if i > 0:
                y = F.interpolate(y, size=(2 * y.shape[2], 2 * y.shape[3]), mode="bilinear",
                                  align_corners=False)
        if acc is not None and y.shape[2:] != acc.shape[2:]:
            y = F.interpolate(y, size=acc.shape[2:], mode="bilinear", align_corners=False)
        acc = y if acc is None else acc + y
    lg = F.conv2d(acc, P["decode_head.conv_seg.weight"], P["decode_head.conv_seg.bias"])
    lg = F.interpolate(lg, size=(S, S), mode="bilinear", align_corners=False)
    return lg, score


def seg_ce(lg, y):
    return F.cross_entropy(lg, y, reduction="none", ignore_index=255).mean()


def loss_fn(P, V, ids, eot, px, y):
    lg, score = forward(P, V, ids, eot, px, True)
    idl = F.interpolate(score / TAU, size=(S, S), mode="bilinear", align_corners=False)
    return seg_ce(lg, y) + AUX * seg_ce(idl, y)


def samples(t):
    flat = t.detach().reshape(-1)
    n = flat.numel()
    idx = [(j * 131) % n for j in range(min(n, NS))]
    return flat[idx]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    V0 = wftref.load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    rows = []
    for c in CLASSNAMES:
        ids = [coopref.SOT] + tok.encode(c.replace("_", " ")) + [coopref.EOT]
        assert len(ids) <= TEXT_LEN, c
        rows.append(ids + [0] * (TEXT_LEN - len(ids)))
    text_ids = torch.tensor(rows)
    eot = text_ids.argmax(dim=-1) + N_CTX
    specs = param_specs()
    vis = [k for k in V0 if k.startswith("visual.")]
    P0 = {}
    for j, (n, shape, learn) in enumerate(specs):
        if shape is not None:
            P0[n] = init_value(n, j, shape)
    px, y = pixels(), masks()

    def fresh():
        P = {n: (v.clone().requires_grad_(True) if dict((s[0], s[2]) for s in specs)[n]
                 else v.clone()) for n, v in P0.items()}
        V = {k: (v.clone().requires_grad_(True) if k in vis else v) for k, v in V0.items()}
        return P, V

    # evaluation-mode logits and score map at the start
    with torch.no_grad():
        Pe, Ve = fresh()
        lg0, sc0 = forward(Pe, Ve, text_ids, eot, px, False)
    # loss and gradients (training mode)
    P, V = fresh()
    loss0 = loss_fn(P, V, text_ids, eot, px, y)
    loss0.backward()
    grads = {n: P[n].grad for n in P if P[n].requires_grad}
    vgrads = wftref.ours({k: V[k].grad for k in vis})
    rstats1 = {n: P[n].detach().clone() for n in P if "running_" in n}
    # three AdamW steps, backbone.* at its own rate
    P, V = fresh()
    bb = [P[n] for n, _, l in specs if l and n in P and n.startswith("backbone.")] + \
        [V[k] for k in vis]
    rest = [P[n] for n, _, l in specs if l and n in P and not n.startswith("backbone.")]
    opt = torch.optim.AdamW([{"params": rest, "lr": LR}, {"params": bb, "lr": LR_BB}],
                            lr=LR, weight_decay=WD, eps=1e-8)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(P, V, text_ids, eot, px, y)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        lg3, _ = forward(P, V, text_ids, eot, px, False)
    vstep = wftref.ours({k: V[k].detach() for k in vis})

    # logits: every 29th value of (B, K, S, S)
    st = {"logits0": lg0.reshape(-1)[::29], "score0": sc0, "logits3": lg3.reshape(-1)[::29]}
    for n in P0:
        if n in grads:
            st["grad/" + n] = samples(grads[n])
            st["gnorm/" + n] = grads[n].norm().reshape(1)
        st["step3/" + n] = samples(P[n])
    for n, v in rstats1.items():
        st["stats1/" + n] = samples(v)
    for k in ("visual.conv1.weight", "visual.class_embedding", "visual.proj",
              "visual.transformer.resblocks.0.attn.q_proj.weight", "visual.ln_post.weight"):
        st["vgrad/" + k] = samples(vgrads[k])
        st["vgnorm/" + k] = vgrads[k].norm().reshape(1)
        st["vstep3/" + k] = samples(vstep[k])
    st = {k: v.detach().to(torch.float32).contiguous() for k, v in st.items()}
    path = os.path.join(OUT_DIR, "denseclip_ref.safetensors")
    clipref.st_write(path, st)

    names = [n for n, _, _ in specs]
    out = ["/* Generated by tools/ref/gen_denseclip_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_DENSECLIP_REF_H",
           "#define CT_TEST_DENSECLIP_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h; arrays in",
           " * denseclip_ref.safetensors (samples j*131 mod n, j < %d, of each tensor). */" % NS,
           "#define DREF_B %d" % B, "#define DREF_NS %d" % NS, "#define DREF_LSTRIDE 29",
           '#define DREF_SET "%s"' % SET,
           "#define DREF_LR %r" % LR, "#define DREF_LR_BB %r" % LR_BB, "#define DREF_WD %r" % WD,
           "static const char *const dref_names[%d] = {\n%s\n};"
           % (len(names), "\n".join('    "%s",' % n for n in names)),
           "static const double dref_loss0 = %.17g;" % loss0.item(),
           "static const double dref_losses[3] = {%s};" % coopref.fmt(losses),
           "", "#endif"]
    with open(os.path.join(OUT_DIR, "denseclip_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("loss0 %.6f losses %s" % (loss0.item(), losses))
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
