#!/usr/bin/python3
"""The same CLIP pretraining step as bench_pretrain, in PyTorch (Debian's
python3-torch), for the ratio in the README: both towers of the shipped model's
architecture (models/cliptune-small/config.json) (pre-LN transformer blocks, QuickGELU, CLS
pooling + projection for images, EOT pooling + projection for text), the
symmetric contrastive loss with a learned temperature, backward, AdamW in
open_clip's two groups, clamp. Random pixels and token ids; 2 threads.

    /usr/bin/python3 bench/pretrain_torch.py [steps] [batch] [arch.json]
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, w, heads, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(w)
        self.attn = nn.MultiheadAttention(w, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, mlp), QuickGELU(), nn.Linear(mlp, w))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class CLIP(nn.Module):
    def __init__(self, v, t, dim):
        super().__init__()
        w, p, s = v["hidden_size"], v["patch_size"], v["image_size"]
        self.conv1 = nn.Conv2d(3, w, p, p, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * 0.02)
        self.vpos = nn.Parameter(torch.randn((s // p) ** 2 + 1, w) * 0.02)
        self.ln_pre = nn.LayerNorm(w)
        self.vblocks = nn.ModuleList(Block(w, v["num_attention_heads"], v["intermediate_size"])
                                     for _ in range(v["num_hidden_layers"]))
        self.ln_post = nn.LayerNorm(w)
        self.vproj = nn.Parameter(torch.randn(w, dim) * 0.02)
        tw, ctx = t["hidden_size"], t["max_position_embeddings"]
        self.tok = nn.Embedding(t["vocab_size"], tw)
        self.tpos = nn.Parameter(torch.randn(ctx, tw) * 0.01)
        self.tblocks = nn.ModuleList(Block(tw, t["num_attention_heads"], t["intermediate_size"])
                                     for _ in range(t["num_hidden_layers"]))
        self.ln_final = nn.LayerNorm(tw)
        self.tproj = nn.Parameter(torch.randn(tw, dim) * 0.02)
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))
        self.register_buffer("mask", torch.full((ctx, ctx), float("-inf")).triu(1))

    def forward(self, px, ids):
        x = self.conv1(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.vpos
        x = self.ln_pre(x)
        for b in self.vblocks:
            x = b(x)
        img = self.ln_post(x[:, 0]) @ self.vproj
        y = self.tok(ids) + self.tpos
        for b in self.tblocks:
            y = b(y, self.mask)
        y = self.ln_final(y)
        txt = y[torch.arange(y.shape[0]), ids.argmax(-1)] @ self.tproj
        return F.normalize(img, dim=-1), F.normalize(txt, dim=-1)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    B = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    here = os.path.dirname(os.path.abspath(__file__))
    arch = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, "..", "models",
                                                               "cliptune-small", "config.json")
    cfg = json.load(open(arch))
    torch.set_num_threads(int(os.environ.get("CT_THREADS", "2")))
    torch.manual_seed(1)
    v, t = cfg["vision_config"], cfg["text_config"]
    vocab = t["vocab_size"]
    m = CLIP(v, t, cfg["projection_dim"])
    decay = [p for n, p in m.named_parameters()
             if p.ndim >= 2 and not any(k in n for k in ("ln", "bn", "bias", "logit_scale"))]
    rest = [p for n, p in m.named_parameters() if not any(p is q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    S, T = v["image_size"], t["max_position_embeddings"]
    px = torch.rand(B, 3, S, S) * 4 - 2
    ids = torch.zeros(B, T, dtype=torch.long)
    ids[:, 0] = vocab - 2
    ids[:, 1:11] = torch.randint(0, vocab - 2, (B, 10))
    ids[:, 11] = vocab - 1
    labels = torch.arange(B)
    sec = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        img, txt = m(px, ids)
        logits = m.logit_scale.exp() * img @ txt.t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            m.logit_scale.clamp_(0, 4.6052)
        if s > 0:
            sec.append(time.perf_counter() - t0)
    med = statistics.median(sec)
    n = sum(p.numel() for p in m.parameters())
    print(f"pytorch {torch.__version__} pretrain step: {n} params, batch {B}, {S} px, {T} tokens: "
          f"{med:.3f} s/step, {B / med:.0f} pairs/s (median of {steps}; loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
