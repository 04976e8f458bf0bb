#!/usr/bin/python3
"""Reference for CLIP's contrastive pretraining step (tests/test_pretrain.c).

    /usr/bin/python3 tools/ref/gen_pretrain_ref.py

Written from the CLIP paper (Figure 3: symmetric cross-entropy over the
batch's scaled cosine-similarity matrix) and open_clip (src/open_clip/loss.py
ClipLoss; src/training/main.py: AdamW with two parameter groups, no weight
decay where p.ndim < 2 or the name contains "bn", "ln", "bias" or
"logit_scale"; src/training/train.py: logit_scale.clamp_(0, ln 100) after
every optimiser step). The towers are gen_clip_ref.py's independent forward
of the fixture model A (tests/fixtures/clip/a_openai.safetensors).

Writes tests/fixtures/pretrain/*.npy:
  loss_img, loss_txt, loss_scale   random embeddings (5, 8) and a scale
  loss_value, loss_grad_img, loss_grad_txt, loss_grad_scale
  pixels (4, 3, 32, 32), ids (4, 16)   a batch for model A
  step_loss (2)                     the loss before each of two AdamW steps
  grad_<name>                       gradients of the first step
  after_<name>                      weights after the two steps
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gen_clip_ref as R  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = os.path.join(ROOT, "tests", "fixtures", "pretrain")
CHECK = ["logit_scale", "visual.class_embedding", "visual.conv1.weight", "visual.proj",
         "visual.ln_pre.weight", "visual.transformer.resblocks.1.mlp.c_fc.bias",
         "ln_final.weight", "text_projection", "positional_embedding",
         "transformer.resblocks.0.mlp.c_proj.weight"]
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.98), 1e-6, 0.2


def clip_loss(img, txt, scale):
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    logits = scale.exp() * img @ txt.t()
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def save(name, t, dtype=np.float32):
    np.save(os.path.join(OUT, name + ".npy"), t.detach().cpu().numpy().astype(dtype))


def exclude(name, p):
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    # ---- the loss alone
    img = torch.randn(5, 8, generator=g, dtype=torch.float32).double().requires_grad_(True)
    txt = torch.randn(5, 8, generator=g, dtype=torch.float32).double().requires_grad_(True)
    scale = torch.tensor([2.3]).requires_grad_(True)
    loss = clip_loss(img, txt, scale)
    loss.backward()
    save("loss_img", img), save("loss_txt", txt), save("loss_scale", scale)
    save("loss_value", loss.reshape(1))
    save("loss_grad_img", img.grad), save("loss_grad_txt", txt.grad)
    save("loss_grad_scale", scale.grad)

    # ---- two pretraining steps of model A
    meta = json.load(open(os.path.join(ROOT, "tests/fixtures/clip/a_ref/meta.json")))
    c = dict(meta["config"], name="a")
    sd = R.f64(R.st_read(os.path.join(ROOT, "tests/fixtures/clip/a_openai.safetensors")))
    P = {k: v.clone().requires_grad_(True) for k, v in sd.items() if v.is_floating_point()}
    B, H, L = 4, c["image"], c["ctx"]
    pixels = torch.randn(B, 3, H, H, generator=g, dtype=torch.float32)
    rows = []
    for n in (3, 5, 7, L - 2):
        r = [c["sot"]] + torch.randint(1, c["sot"], (n,), generator=g).tolist() + [c["eot"]]
        rows.append(r + [0] * (L - len(r)))
    ids = torch.tensor(rows, dtype=torch.int64)
    eot = ids.argmax(-1)
    save("pixels", pixels), save("ids", ids, np.int64)
    decay = [p for k, p in P.items() if not exclude(k, p)]
    nodecay = [p for k, p in P.items() if exclude(k, p)]
    opt = torch.optim.AdamW([{"params": nodecay, "weight_decay": 0.0},
                             {"params": decay, "weight_decay": WD}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for step in range(2):
        opt.zero_grad()
        ie, _, _ = R.encode_image(P, c, pixels.double())
        te, _ = R.encode_text_from_embeds(P, c, P["token_embedding.weight"][ids], eot)
        loss = clip_loss(ie, te, P["logit_scale"])
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            for k in CHECK:
                save("grad_" + k, P[k].grad)
            used = torch.unique(ids)
            save("grad_token_embedding_rows", P["token_embedding.weight"].grad[used])
            save("used_ids", used, np.int64)
        opt.step()
        with torch.no_grad():
            P["logit_scale"].clamp_(0, math.log(100))
    save("step_loss", torch.tensor(losses))
    for k in CHECK:
        save("after_" + k, P[k])
    print("loss", loss.item(), "steps", losses)


if __name__ == "__main__":
    main()
