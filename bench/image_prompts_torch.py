#!/usr/bin/python3
"""The same training steps as bench_image_prompts, in PyTorch (Debian's
python3-torch), written after the official codes: an OpenAI-layout CLIP
(ViT-B/16 shape, random weights, frozen), and
  maple:     multimodal-prompt-learning trainers/maple.py's prompt learner
             and clip/model.py's prompt insertion (n_ctx 2, depth 9), the
             100 class prompts through the whole 77-token text tower every
             step, batch 4, SGD (lr 0.0035, momentum 0.9, weight decay 5e-4);
  clip-lora: CLIP-LoRA's LinearLoRA on q, k, v of all 12 blocks of both
             towers (r 2, alpha 1, dropout 0.25 on the LoRA input), 100
             class prompts of 77 tokens with gradients every step, batch 32,
             logits 100 cos, AdamW (lr 2e-4, weight decay 1e-2);
  tower:     the image tower alone, forward and backward to the input
             pixels (batch 8, frozen weights, no optimiser);
  coop:      CoOp's step as coop.py runs it: 16 context vectors between
             SOT and each of the 100 class names' tokens, all 100 prompts of
             77 tokens through the text tower, logits against 32 cached image
             features, cross-entropy, backward to the context (no optimiser
             step; bench_coop's "full" variant is the same work).
A step: forward, backward, optimiser update. Random normalised pixels and
token ids; 2 threads (CLIPTUNE_THREADS or 2). Prints the median step time
and the peak RSS:
    /usr/bin/python3 bench/image_prompts_torch.py maple|clip-lora|tower|coop [steps]
"""
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

W_V, L_V, H_V, W_T, L_T, H_T, E, CTX, VOCAB, K = 768, 12, 12, 512, 12, 8, 512, 77, 49408, 100


class LoRALinear(nn.Module):
    """CLIP-LoRA's LinearLoRA: y = x W^T + b + s (drop(x) A^T) B^T."""

    def __init__(self, w, r=0, alpha=1, p=0.0):
        super().__init__()
        self.lin = nn.Linear(w, w)
        self.lin.requires_grad_(False)
        self.r = r
        if r:
            self.A = nn.Parameter(torch.empty(r, w).uniform_(-1 / math.sqrt(w), 1 / math.sqrt(w)))
            self.B = nn.Parameter(torch.zeros(w, r))
            self.s = alpha / math.sqrt(r)
            self.drop = nn.Dropout(p)

    def forward(self, x):
        y = self.lin(x)
        if self.r:
            y = y + self.s * (self.drop(x) @ self.A.t()) @ self.B.t()
        return y


class Block(nn.Module):
    def __init__(self, w, heads, lora_r=0):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.q, self.k, self.v = (LoRALinear(w, lora_r, 1, 0.25) for _ in range(3))
        self.o = nn.Linear(w, w)
        self.fc, self.proj = nn.Linear(w, 4 * w), nn.Linear(4 * w, w)
        for m in (self.ln_1, self.ln_2, self.o, self.fc, self.proj):
            m.requires_grad_(False)

    def attn(self, x, causal):
        B, T, C = x.shape
        h = self.heads
        q, k, v = (t(x).reshape(B, T, h, C // h).transpose(1, 2) for t in (self.q, self.k, self.v))
        s = q @ k.transpose(-1, -2) / math.sqrt(C // h)
        if causal:
            s = s + torch.full((T, T), float("-inf")).triu(1)
        return self.o((s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))

    def forward(self, x, causal=False):
        x = x + self.attn(self.ln_1(x), causal)
        h = self.fc(self.ln_2(x))
        return x + self.proj(h * torch.sigmoid(1.702 * h))


class CLIP(nn.Module):
    def __init__(self, lora_r=0):
        super().__init__()
        g = 224 // 16
        self.conv1 = nn.Conv2d(3, W_V, 16, 16, bias=False)
        self.cls = nn.Parameter(torch.randn(W_V) * 0.02)
        self.vpos = nn.Parameter(torch.randn(g * g + 1, W_V) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(W_V), nn.LayerNorm(W_V)
        self.vblocks = nn.ModuleList(Block(W_V, H_V, lora_r) for _ in range(L_V))
        self.vproj = nn.Parameter(torch.randn(W_V, E) * 0.02)
        self.tok = nn.Embedding(VOCAB, W_T)
        self.tpos = nn.Parameter(torch.randn(CTX, W_T) * 0.01)
        self.tblocks = nn.ModuleList(Block(W_T, H_T, lora_r) for _ in range(L_T))
        self.ln_final = nn.LayerNorm(W_T)
        self.tproj = nn.Parameter(torch.randn(W_T, E) * 0.02)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))
        for n, p in self.named_parameters():
            if not (n.endswith(".A") or n.endswith(".B")):
                p.requires_grad_(False)

    def image(self, px, V=None):
        x = self.conv1(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, W_V), x], 1) + self.vpos
        if V is not None:
            x = torch.cat([x, V[0].expand(x.shape[0], -1, -1)], 1)
        x = self.ln_pre(x)
        for i, b in enumerate(self.vblocks):
            if V is not None and 1 <= i < len(V):
                n = V[i].shape[0]
                x = torch.cat([x[:, :-n], V[i].expand(x.shape[0], -1, -1)], 1)
            x = b(x)
        return self.ln_post(x[:, 0]) @ self.vproj

    def text(self, emb, eot, T=None):
        x = emb + self.tpos
        for i, b in enumerate(self.tblocks):
            if T is not None and 1 <= i < len(T) + 1:
                n = T[i - 1].shape[0]
                x = torch.cat([x[:, :1], T[i - 1].expand(x.shape[0], -1, -1), x[:, 1 + n:]], 1)
            x = b(x, causal=True)
        return self.ln_final(x[torch.arange(x.shape[0]), eot]) @ self.tproj


def prompt_ids():
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(K, CTX, dtype=torch.long)
    for k in range(K):
        n = 7 + k % 3  # SOT, "a photo of a", the name, ".", EOT
        ids[k, 0] = 49406
        ids[k, 1:n - 1] = torch.randint(1, 49000, (n - 2,), generator=g)
        ids[k, n - 1] = 49407
    return ids


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "maple"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(int(os.environ.get("CLIPTUNE_THREADS", "2")))
    torch.manual_seed(0)
    ids = prompt_ids()
    eot = ids.argmax(-1)
    lora = which == "clip-lora"
    B = 32 if lora or which == "coop" else 8 if which == "tower" else 4
    model = CLIP(lora_r=2 if lora else 0)
    px = torch.randn(B, 3, 224, 224)
    y = torch.arange(B) * 7 % K
    if which == "tower":
        px.requires_grad_(True)
        opt = None

        def loss_fn():
            px.grad = None
            return model.image(px).sum()
    elif which == "coop":
        n = 16
        with torch.no_grad():  # SOT, n placeholders, the prompt's tokens, EOT, padding
            emb = model.tok(torch.cat([ids[:, :1], torch.zeros(K, n, dtype=torch.long),
                                       ids[:, 1:CTX - n]], 1))
        ctx = nn.Parameter(torch.randn(n, W_T) * 0.02)
        prefix, suffix = emb[:, :1], emb[:, 1 + n:]
        img = F.normalize(torch.randn(B, E), dim=-1)
        eot = (eot + n).clamp(max=CTX - 1)
        opt = None

        def loss_fn():
            ctx.grad = None
            prompts = torch.cat([prefix, ctx.expand(K, -1, -1), suffix], 1)
            t = F.normalize(model.text(prompts, eot), dim=-1)
            return F.cross_entropy(model.logit_scale.exp() * img @ t.t(), y)
    elif lora:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-2)

        def loss_fn():
            t = F.normalize(model.text(model.tok(ids), eot), dim=-1)
            f = F.normalize(model.image(px), dim=-1)
            return F.cross_entropy(100 * f @ t.t(), y)
    else:
        n, J = 2, 9
        with torch.no_grad():
            emb = model.tok(ids)
        ctx = nn.Parameter(emb[0, 1:1 + n].clone())
        proj = nn.Linear(W_T, W_V)
        deep_t = nn.ParameterList(nn.Parameter(torch.randn(n, W_T) * 0.02) for _ in range(J - 1))
        one = nn.Linear(W_T, W_V)
        deep_p = nn.ModuleList(nn.Linear(W_T, W_V) for _ in range(J - 1))
        for m in deep_p:
            m.load_state_dict(one.state_dict())
        params = [ctx, *proj.parameters(), *deep_t.parameters(), *deep_p.parameters()]
        opt = torch.optim.SGD(params, lr=0.0035, momentum=0.9, weight_decay=5e-4)
        prefix, suffix = emb[:, :1], emb[:, 1 + n:]

        def loss_fn():
            prompts = torch.cat([prefix, ctx.expand(K, -1, -1), suffix], 1)
            t = F.normalize(model.text(prompts, eot, list(deep_t)), dim=-1)
            V = [proj(ctx)] + [m(p) for m, p in zip(deep_p, deep_t)]
            f = F.normalize(model.image(px, V), dim=-1)
            return F.cross_entropy(model.logit_scale.exp() * f @ t.t(), y)
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        if opt:
            opt.zero_grad()
        loss_fn().backward()
        if opt:
            opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("pytorch  %-9s step (batch %d, %d classes, ViT-B/16 shape): %.3f s (median of %d), "
          "peak RSS %.0f MB, %d threads, torch %s"
          % (which, B, K, statistics.median(times), steps, rss, torch.get_num_threads(),
             torch.__version__))


if __name__ == "__main__":
    main()
