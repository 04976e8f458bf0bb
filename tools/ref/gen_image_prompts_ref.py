#!/usr/bin/python3
"""Reference outputs of the image-side prompt methods (VP, VPT-deep, IVLP,
MaPLe) on the shipped model, models/cliptune-small:
tests/fixtures/methods/image_prompts_ref.safetensors (F32).

    /usr/bin/python3 tools/ref/gen_image_prompts_ref.py

Needs Debian's python3-torch, python3-numpy and python3-regex. Written from
the official codes' math (not their code), float64, with the deep-prompt
encoders of gen_clip_ref.py (MaPLe's clip/model.py layout: vision prompts
appended after the positional embedding, before ln_pre, the last n tokens
replaced before blocks 1..J-1; text positions 1..n replaced likewise):
  - VP (hjbahng/visual_prompting prompters.py PadPrompter): a frame of p = 4
    pixels (30 at 224, scaled to 28) added to the normalised image; text of
    "This is a photo of a {}" (no period), frozen;
  - VPT-deep (multimodal-prompt-learning trainers/vpt.py): vision prompts of
    2 tokens at depth 3, fixed text "a photo of a {}.";
  - IVLP (trainers/independentVL.py): prompt "a photo of a {name}." with its
    first 2 tokens learned (initial value: their token embeddings, checked),
    deep text prompts at depth 3, vision prompts of 2 tokens at depth 3;
  - MaPLe (trainers/maple.py): the same text layout, depth 2: V_0 =
    proj(ctx), V_1 = F_1(T_1);
  - PromptSRC (muzairkhattak/PromptSRC trainers/promptsrc.py): IVLP's
    prompts as above, loss CE + KL(zero-shot || prompted) / (B K) + 25
    L1(text, frozen mean of the 60 template embeddings) + 10 L1(image,
    frozen image features of the same pixels);
  - UPT (sIncerass/MVLPT trainers/mvlpt.py, UPT mode): n 2, class name in
    the middle of "X X", the prompts through the 128-wide block token by
    token, VPT-deep after the class token once ln_pre has run.
  - CLIP-LoRA (MaxZanella/CLIP-LoRA loralib/layers.py, lora.py): A, B on q,
    k, v of every block of both towers, r 2, alpha 1, scale alpha/sqrt(r),
    dropout 0, computed as the merged weights W + s B A in nn.
    MultiheadAttention's packed in_proj (the official evaluation form);
    logits 100 cos(image, text) over "a photo of a {}."; three AdamW steps
    (lr 1e-3, weight decay 1e-2).
Logits exp(logit_scale) cos(image, text), mean cross-entropy (CLIP-LoRA: 100). Learnables
are set to a formula both sides compute (A sin(0.37 j + 1.3 k), j the flat
index, k the tensor's place in the method's params() order); then the
gradient of each and three torch.optim.SGD steps on the same batch (VP: lr
0.5, momentum 0.9, no weight decay; the others lr 0.01, momentum 0.9,
weight decay 5e-4, Dassl's). Tokens: a BPE encoder for the shipped HF
vocabulary (vocab.json + merges.txt) written here from CLIP's rules
(gen_bpe_ref.py's cleaning and split), EOT pooled at argmax(ids).
Pixels: 1.5 sin(0.1 i + 0.7 b) as float32, 3 images, labels (0, 2, 1).
"""
import importlib.util
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "models", "cliptune-small")
OUT = os.path.join(ROOT, "tests", "fixtures", "methods", "image_prompts_ref.safetensors")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


clipref = load_module("gen_clip_ref", os.path.join(HERE, "gen_clip_ref.py"))
bperef = load_module("gen_bpe_ref", os.path.join(HERE, "gen_bpe_ref.py"))
torch.set_default_dtype(torch.float64)

CLASSNAMES = ["shirt", "ankle_boot", "bag"]
LABELS = [0, 2, 1]
B = 3


class Tok:
    def __init__(self, d):
        self.vocab = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
        lines = open(os.path.join(d, "merges.txt"), encoding="utf-8").read().strip().split("\n")
        merges = [tuple(l.split()) for l in lines[1:]]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.b2u = bperef.bytes_to_unicode()
        self.sot, self.eot = self.vocab["<|startoftext|>"], self.vocab["<|endoftext|>"]

    def bpe(self, word):
        w = tuple(word[:-1]) + (word[-1] + "</w>",)
        while len(w) > 1:
            pairs = [(self.ranks.get((w[i], w[i + 1]), 1 << 30), i) for i in range(len(w) - 1)]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            a, b = w[i], w[i + 1]
            w = bperef.merge_word(w, a, b)
        return w

    def encode(self, text):
        ids = []
        for p in bperef.pieces(text):
            u = "".join(self.b2u[b] for b in p.encode("utf-8"))
            ids += [self.vocab[t] for t in self.bpe(u)]
        return ids

    def row(self, text, L):
        ids = [self.sot] + self.encode(text) + [self.eot]
        assert len(ids) <= L
        return ids + [0] * (L - len(ids))


def load_model():
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    back = clipref.st_read(os.path.join(MODEL, "model.safetensors"))
    P = {k: v.double() for k, v in clipref.hf_to_openai(back, cfg).items()}
    tc, vc = cfg["text_config"], cfg["vision_config"]
    c = dict(act=vc["hidden_act"], patch=vc["patch_size"], image=vc["image_size"],
             v_layers=vc["num_hidden_layers"], v_heads=vc["num_attention_heads"],
             v_width=vc["hidden_size"], t_layers=tc["num_hidden_layers"],
             t_heads=tc["num_attention_heads"], t_width=tc["hidden_size"],
             ctx=tc["max_position_embeddings"])
    return P, c


def pixels(S):
    n = 3 * S * S
    px = np.empty((B, n), dtype=np.float32)
    for b in range(B):
        for i in range(n):
            px[b, i] = np.float32(1.5 * math.sin(0.1 * i + 0.7 * b))
    return torch.from_numpy(px).double().reshape(B, 3, S, S)


def formula(shape, k, amp):
    n = int(np.prod(shape))
    j = torch.arange(n, dtype=torch.float64)
    return (amp * torch.sin(0.37 * j + 1.3 * k)).reshape(shape).clone().requires_grad_(True)


def text_ids(tok, c, template):
    return torch.tensor([tok.row(template.replace("{}", n.replace("_", " ")), c["ctx"])
                         for n in CLASSNAMES])


def fixed_text(P, c, ids):
    E = P["token_embedding.weight"][ids]
    t, _ = clipref.encode_text_from_embeds(P, c, E, ids.argmax(dim=1))
    return t / t.norm(dim=-1, keepdim=True)


def prompted_text(P, c, ids, ctx, deep):
    """ids of "a photo of a {name}." with positions 1..n replaced by ctx."""
    E = clipref.substitute_text_prompt(P["token_embedding.weight"][ids], ctx)
    T = [None] + list(deep) if deep else None
    t, _ = clipref.encode_text_from_embeds(P, c, E, ids.argmax(dim=1), T)
    return t / t.norm(dim=-1, keepdim=True)


def logits_of(P, img, txt):
    img = img / img.norm(dim=-1, keepdim=True)
    return P["logit_scale"].exp() * img @ txt.t()


def put(out, key, t):
    """Large tensors are stored as every stride-th value (at most 4096), the
    stride beside them (key.stride), to keep the fixture small."""
    flat = t.detach().reshape(-1)
    stride = max(1, -(-flat.numel() // 4096))
    out[key] = flat[::stride].clone()
    if stride > 1:
        out[key + ".stride"] = torch.tensor([float(stride)])


def run(name, params, forward, lr, wd, out):
    y = torch.tensor(LABELS)
    lg = forward(params)
    loss = F.cross_entropy(lg, y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    out[name + ".logits"] = lg.detach()
    out[name + ".loss"] = loss.detach().reshape(1)
    for k, g in enumerate(grads):
        put(out, "%s.grad.%d" % (name, k), g)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(forward(params), y).backward()
        opt.step()
    for k, p in enumerate(params):
        put(out, "%s.after.%d" % (name, k), p)
    print(name, "loss", float(loss), "logits", lg.detach().numpy().round(4).tolist())


def main():
    P, c = load_model()
    tok = Tok(MODEL)
    S, Wv, Wt = c["image"], c["v_width"], c["t_width"]
    px = pixels(S)
    out = {}

    # VP, padding prompter, p = round(30 * 28 / 224) = 4
    p = int(round(30 * S / 224))
    vp_txt = fixed_text(P, c, text_ids(tok, c, "This is a photo of a {}"))
    vp = [formula((3, p, S), 0, 0.5), formula((3, p, S), 1, 0.5),
          formula((3, S - 2 * p, p), 2, 0.5), formula((3, S - 2 * p, p), 3, 0.5)]

    def vp_fwd(q):
        up, down, left, right = q
        mid = torch.cat([left, torch.zeros(3, S - 2 * p, S - 2 * p), right], dim=2)
        prompt = torch.cat([up, mid, down], dim=1)
        img, _, _ = clipref.encode_image(P, c, px + prompt)
        return logits_of(P, img, vp_txt)
    run("vp", vp, vp_fwd, 0.5, 0.0, out)

    # VPT-deep: 2 vision tokens, depth 3, fixed text
    zs = fixed_text(P, c, text_ids(tok, c, "a photo of a {}."))
    vpt = [formula((2, Wv), k, 0.05) for k in range(3)]

    def vpt_fwd(q):
        img, _, _ = clipref.encode_image(P, c, px, list(q))
        return logits_of(P, img, zs)
    run("vpt", vpt, vpt_fwd, 0.01, 5e-4, out)

    # the prompt of IVLP and MaPLe, and the initial context (tokens 1..2)
    ids = text_ids(tok, c, "a photo of a {}.")
    out["ctx_init"] = P["token_embedding.weight"][ids[0, 1:3]].clone()

    # IVLP: ctx (2, Wt), text deep T_1, T_2, vision V_0, V_1, V_2
    iv = [formula((2, Wt), 0, 0.05), formula((2, Wt), 1, 0.05), formula((2, Wt), 2, 0.05),
          formula((2, Wv), 3, 0.05), formula((2, Wv), 4, 0.05), formula((2, Wv), 5, 0.05)]

    def ivlp_fwd(q):
        txt = prompted_text(P, c, ids, q[0], [q[1], q[2]])
        img, _, _ = clipref.encode_image(P, c, px, [q[3], q[4], q[5]])
        return logits_of(P, img, txt)
    run("ivlp", iv, ivlp_fwd, 0.01, 5e-4, out)

    # PromptSRC: IVLP's prompts (as above) with its regularisers; the frozen
    # text is the mean of the unnormalised embeddings of the 60 templates of
    # PromptSRC's imagenet_templates.py (= data/templates/imagenet80.txt
    # without the 20 below), normalised once
    not60 = {"a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.",
             "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.",
             "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
             "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
             "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
             "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
             "a tattoo of the {}."}
    t80 = [l.rstrip("\n") for l in open(os.path.join(ROOT, "data", "templates", "imagenet80.txt"),
                                         encoding="utf-8") if l.strip()]
    t60 = [t for t in t80 if t not in not60]
    assert len(t60) == 60
    acc = 0
    for t in t60:
        tid = text_ids(tok, c, t)
        e, _ = clipref.encode_text_from_embeds(P, c, P["token_embedding.weight"][tid],
                                               tid.argmax(dim=1))
        acc = acc + e
    fixed = acc / len(t60)
    fixed = fixed / fixed.norm(dim=-1, keepdim=True)
    zimg, _, _ = clipref.encode_image(P, c, px)
    zimg = zimg / zimg.norm(dim=-1, keepdim=True)
    zlog = P["logit_scale"].exp() * zimg @ fixed.t()
    src = [formula(tuple(t.shape), k, 0.05) for k, t in enumerate(iv)]
    y = torch.tensor(LABELS)

    def src_loss(q):
        txt = prompted_text(P, c, ids, q[0], [q[1], q[2]])
        img, _, _ = clipref.encode_image(P, c, px, [q[3], q[4], q[5]])
        img = img / img.norm(dim=-1, keepdim=True)
        lg = P["logit_scale"].exp() * img @ txt.t()
        kl = F.kl_div(F.log_softmax(lg, dim=1), F.log_softmax(zlog, dim=1), reduction="sum",
                      log_target=True) / lg.numel()
        return (F.cross_entropy(lg, y) + kl + 25 * F.l1_loss(txt, fixed) +
                10 * F.l1_loss(img, zimg)), lg
    loss, lg = src_loss(src)
    grads = torch.autograd.grad(loss, src)
    out["src.logits"], out["src.loss"] = lg.detach(), loss.detach().reshape(1)
    for k, g in enumerate(grads):
        put(out, "src.grad.%d" % k, g)
    opt = torch.optim.SGD(src, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        opt.zero_grad()
        src_loss(src)[0].backward()
        opt.step()
    for k, p_ in enumerate(src):
        put(out, "src.after.%d" % k, p_)
    print("src loss", float(loss))

    # UPT (MVLPT trainers/mvlpt.py, UPT mode): n 2, class name in the middle,
    # prompts through the 128-wide block token by token (the code's layout),
    # VPT-deep after the class token once ln_pre has run, all layers
    n, D, L = 2, 128, c["v_layers"]
    shapes = [(n, Wt), (L * n, Wv), (D, Wt), (D,), (Wt, D), (Wt,), (D, Wv), (D,), (Wv, D), (Wv,),
              (D,), (D,), (D, D), (D,), (D, D), (D,), (D, D), (D,), (D, D), (D,), (D,), (D,),
              (4 * D, D), (4 * D,), (D, 4 * D), (D,)]
    up = [formula(sh, k, 0.05) for k, sh in enumerate(shapes)]
    xids = text_ids(tok, c, "X X {}.")
    name_lens = [len(tok.encode(nm.replace("_", " "))) for nm in CLASSNAMES]

    def upt_fwd(q):
        (ctx, v, tiw, tib, tow, tob, viw, vib, vow, vob, l1w, l1b, qw, qb, kw, kb, vw, vb, ow, ob,
         l2w, l2b, f1w, f1b, f2w, f2b) = q
        z = torch.cat([ctx @ tiw.t() + tib, v @ viw.t() + vib], 0)       # (n + Ln, D)
        # CLIP's block on tokens that each attend only to themselves
        h = F.layer_norm(z, (D,), l1w, l1b, 1e-5)
        z = z + ((h @ vw.t() + vb) @ ow.t() + ob)
        h = F.layer_norm(z, (D,), l2w, l2b, 1e-5) @ f1w.t() + f1b
        z = z + (h * torch.sigmoid(1.702 * h)) @ f2w.t() + f2b
        cp = z[:n] @ tow.t() + tob
        vp = (z[n:] @ vow.t() + vob).reshape(L, n, Wv)
        E = P["token_embedding.weight"][xids]
        rows = []
        for k in range(len(CLASSNAMES)):
            nl = name_lens[k]
            rows.append(torch.cat([E[k, :1], cp[:n // 2], E[k, 1 + n:1 + n + nl], cp[n // 2:],
                                   E[k, 1 + n + nl:]], 0))
        t, _ = clipref.encode_text_from_embeds(P, c, torch.stack(rows), xids.argmax(dim=1))
        t = t / t.norm(dim=-1, keepdim=True)
        x = F.conv2d(px, P["visual.conv1.weight"], stride=c["patch"])
        x = x.reshape(B, Wv, -1).permute(0, 2, 1)
        x = torch.cat([P["visual.class_embedding"].reshape(1, 1, Wv).expand(B, 1, Wv), x], 1)
        x = x + P["visual.positional_embedding"]
        x = clipref.layer_norm(x, P["visual.ln_pre.weight"], P["visual.ln_pre.bias"])
        x = torch.cat([x[:, :1], vp[0].expand(B, n, Wv), x[:, 1:]], 1)
        for i in range(L):
            if i >= 1:
                x = torch.cat([x[:, :1], vp[i].expand(B, n, Wv), x[:, 1 + n:]], 1)
            x = clipref.resblock(x, P, "visual.transformer.resblocks.%d." % i, c["v_heads"],
                                 clipref.act_fn(c["act"]), False)
        img = clipref.layer_norm(x[:, 0], P["visual.ln_post.weight"],
                                 P["visual.ln_post.bias"]) @ P["visual.proj"]
        return logits_of(P, img, t)
    run("upt", up, upt_fwd, 0.01, 5e-4, out)

    # MaPLe, depth 2: ctx, proj (W, b), T_1, F_1 (W, b)
    mp = [formula((2, Wt), 0, 0.05), formula((Wv, Wt), 1, 0.05), formula((Wv,), 2, 0.05),
          formula((2, Wt), 3, 0.05), formula((Wv, Wt), 4, 0.05), formula((Wv,), 5, 0.05)]

    def maple_fwd(q):
        txt = prompted_text(P, c, ids, q[0], [q[3]])
        V = [q[0] @ q[1].t() + q[2], q[3] @ q[4].t() + q[5]]
        img, _, _ = clipref.encode_image(P, c, px, V)
        return logits_of(P, img, txt)
    run("maple", mp, maple_fwd, 0.01, 5e-4, out)

    # CLIP-LoRA: q, k, v of every block of both towers, r 2, alpha 1 (scale
    # 1/sqrt(2)), no dropout; written as the merged weights W + s B A (the
    # official eval form), text modules before vision ones, q, k, v per block
    s = 1.0 / math.sqrt(2.0)
    lora = []
    for tower, L, W in (("text", c["t_layers"], Wt), ("vision", c["v_layers"], Wv)):
        for l in range(L):
            for j in range(3):
                k = len(lora)
                lora += [formula((2, W), k, 0.05), formula((W, 2), k + 1, 0.05)]
    lora_ids = text_ids(tok, c, "a photo of a {}.")

    def lora_fwd(q):
        Q = dict(P)
        i = 0
        for tower, L in (("text", c["t_layers"]), ("vision", c["v_layers"])):
            for l in range(L):
                pre = ("transformer.resblocks.%d." if tower == "text"
                       else "visual.transformer.resblocks.%d.") % l
                d = torch.cat([s * (q[i + 2 * j + 1] @ q[i + 2 * j]) for j in range(3)], dim=0)
                Q[pre + "attn.in_proj_weight"] = P[pre + "attn.in_proj_weight"] + d
                i += 6
        E = Q["token_embedding.weight"][lora_ids]
        t, _ = clipref.encode_text_from_embeds(Q, c, E, lora_ids.argmax(dim=1))
        t = t / t.norm(dim=-1, keepdim=True)
        img, _, _ = clipref.encode_image(Q, c, px)
        img = img / img.norm(dim=-1, keepdim=True)
        return 100.0 * img @ t.t()

    y = torch.tensor(LABELS)
    lg = lora_fwd(lora)
    loss = F.cross_entropy(lg, y)
    grads = torch.autograd.grad(loss, lora)
    out["lora.logits"], out["lora.loss"] = lg.detach(), loss.detach().reshape(1)
    for k, g in enumerate(grads):
        put(out, "lora.grad.%d" % k, g)
    opt = torch.optim.AdamW(lora, lr=1e-3, weight_decay=1e-2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(lora_fwd(lora), y).backward()
        opt.step()
    for k, p_ in enumerate(lora):
        put(out, "lora.after.%d" % k, p_)
    print("lora loss", float(loss), "logits", lg.detach().numpy().round(4).tolist())

    clipref.st_write(OUT, {k: v.detach().float().contiguous() for k, v in out.items()})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
