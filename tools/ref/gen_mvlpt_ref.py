#!/usr/bin/python3
"""Reference outputs of MVLPT (sIncerass/MVLPT trainers/mvlpt.py, UPT mode
with DATASET.MULTITASK) on the shipped model, models/cliptune-small:
tests/fixtures/methods/mvlpt_ref.safetensors (F32).

    /usr/bin/python3 tools/ref/gen_mvlpt_ref.py

Needs Debian's python3-torch, python3-numpy and python3-regex; reuses the
model loader, tokenizer and pixels of gen_image_prompts_ref.py. Written from
the official code's math (not its code), float64:
  - two tasks: task 0 "shirt", "ankle boot", "bag" (classes 0..2), task 1
    "zero", "one" (classes 3..4), laid one after another as the multi-task
    data manager does (label offset per task);
  - UPT's prompts (n 2): context c (2, W_t) and vision prompts v (L 2, W_v)
    through the pre linears, CLIP's residual attention block on tokens that
    each attend only to themselves (the code's batch-first tensor read
    sequence-first), the post linears; text "X X {name}." with the class
    name in the middle; VPT-deep inserted after the class token once ln_pre
    has run, positions 1..2 replaced before blocks 1..L-1;
  - logits exp(logit_scale) cos(image, text) over all 5 classes
    ("mvlpt": MULTITASK_LABEL_PERTASK off, the scripts' setting), and
    ("mvlpt_pt": MULTITASK_LABEL_PERTASK on) multiplied by the 0/1 float
    select_index of each item's task, so the other task's logits are 0 (not
    -inf) inside the softmax;
  - mean cross-entropy over the 5 classes, gradients, three SGD steps (lr
    0.01, momentum 0.9, weight decay 5e-4).
Learnables: A sin(0.37 j + 1.3 k) (A 0.05, k the tensor's place in UPT's
params() order). Pixels 1.5 sin(0.1 i + 0.7 b) (3 images) of tasks
(0, 1, 0), labels (2, 3, 1). Large tensors are stored as every stride-th
value (at most 96) to keep the fixture small.
"""
import importlib.util
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "methods", "mvlpt_ref.safetensors")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ip = load_module("gen_image_prompts_ref", os.path.join(HERE, "gen_image_prompts_ref.py"))
clipref = ip.clipref
torch.set_default_dtype(torch.float64)

CLASSNAMES = ["shirt", "ankle_boot", "bag", "zero", "one"]
OFFSETS = [0, 3, 5]
TASKS = [0, 1, 0]
LABELS = [2, 3, 1]
B = 3
CAP = 96


def put(out, key, t):
    flat = t.detach().reshape(-1)
    stride = max(1, -(-flat.numel() // CAP))
    out[key] = flat[::stride].clone()
    if stride > 1:
        out[key + ".stride"] = torch.tensor([float(stride)])


def main():
    P, c = ip.load_model()
    tok = ip.Tok(ip.MODEL)
    S, Wv, Wt = c["image"], c["v_width"], c["t_width"]
    px = ip.pixels(S)
    n, D, L = 2, 128, c["v_layers"]
    K = len(CLASSNAMES)
    xids = torch.tensor([tok.row("X X %s." % nm.replace("_", " "), c["ctx"])
                         for nm in CLASSNAMES])
    name_lens = [len(tok.encode(nm.replace("_", " "))) for nm in CLASSNAMES]
    E = P["token_embedding.weight"][xids]
    select = torch.zeros(B, K)
    for i, t in enumerate(TASKS):
        select[i, OFFSETS[t]:OFFSETS[t + 1]] = 1.0

    def forward(q, pertask):
        (ctx, v, tiw, tib, tow, tob, viw, vib, vow, vob, l1w, l1b, qw, qb, kw, kb, vw, vb, ow, ob,
         l2w, l2b, f1w, f1b, f2w, f2b) = q
        z = torch.cat([ctx @ tiw.t() + tib, v @ viw.t() + vib], 0)
        # one token per sequence: softmax over itself is 1, attention = value path
        h = F.layer_norm(z, (D,), l1w, l1b, 1e-5)
        z = z + ((h @ vw.t() + vb) @ ow.t() + ob)
        h = F.layer_norm(z, (D,), l2w, l2b, 1e-5) @ f1w.t() + f1b
        z = z + (h * torch.sigmoid(1.702 * h)) @ f2w.t() + f2b
        cp = z[:n] @ tow.t() + tob
        vp = (z[n:] @ vow.t() + vob).reshape(L, n, Wv)
        rows = []
        for k in range(K):
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
        img = img / img.norm(dim=-1, keepdim=True)
        lg = P["logit_scale"].exp() * img @ t.t()
        return lg * select if pertask else lg

    shapes = [(n, Wt), (L * n, Wv), (D, Wt), (D,), (Wt, D), (Wt,), (D, Wv), (D,), (Wv, D), (Wv,),
              (D,), (D,), (D, D), (D,), (D, D), (D,), (D, D), (D,), (D, D), (D,), (D,), (D,),
              (4 * D, D), (4 * D,), (D, 4 * D), (D,)]
    y = torch.tensor(LABELS)
    out = {}
    for name, pertask in (("mvlpt", False), ("mvlpt_pt", True)):
        q = [ip.formula(sh, k, 0.05) for k, sh in enumerate(shapes)]
        lg = forward(q, pertask)
        loss = F.cross_entropy(lg, y)
        grads = torch.autograd.grad(loss, q, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, q)]
        out[name + ".logits"] = lg.detach()
        out[name + ".loss"] = loss.detach().reshape(1)
        for k, g in enumerate(grads):
            put(out, "%s.grad.%d" % (name, k), g)
        opt = torch.optim.SGD(q, lr=0.01, momentum=0.9, weight_decay=5e-4)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(forward(q, pertask), y).backward()
            opt.step()
        for k, p in enumerate(q):
            put(out, "%s.after.%d" % (name, k), p)
        print(name, "loss", float(loss), "logits", lg.detach().numpy().round(4).tolist())
    clipref.st_write(OUT, {k: v.detach().float().contiguous() for k, v in out.items()})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
