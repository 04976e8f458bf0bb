#!/usr/bin/python3
"""CLIP encoder inference in PyTorch (Debian's python3-torch), the peer of
bench_clip's one-workload mode: OpenAI's clip/model.py architecture
(ResidualAttentionBlock with nn.MultiheadAttention, QuickGELU, pre-LN, class
token + positional embeddings, ln_post + proj; the text tower causal with
argmax-EOT pooling) at ViT-B/32 and ViT-B/16 shape, random weights, eval
mode, torch.no_grad(), 2 threads (CLIPTUNE_THREADS or 2).

    /usr/bin/python3 bench/clip_torch.py b32|b16|text [REPS]
        one line: items/s of each timed repetition (one untimed warm-up
        first) and the process's peak RSS
    /usr/bin/python3 bench/clip_torch.py --export DIR
        writes DIR/b32.onnx, b16.onnx, text.onnx (opset 14, dynamic batch)
        for bench/clip_ort.mjs (ONNX Runtime runs the same graph)
"""
import os
import resource
import sys
import time

import torch
import torch.nn as nn

BATCH = {"b32": 32, "b16": 32, "text": 100}


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, w, heads, mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_1, self.ln_2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, 4 * w), QuickGELU(), nn.Linear(4 * w, w))
        self.mask = mask

    def forward(self, x):  # (T, B, W), as clip/model.py
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class Vision(nn.Module):
    def __init__(self, patch, w=768, layers=12, heads=12, out=512, size=224):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, w) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
        self.blocks = nn.Sequential(*[Block(w, heads) for _ in range(layers)])
        self.proj = nn.Parameter(torch.randn(w, out) * w ** -0.5)

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.blocks(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class Text(nn.Module):
    def __init__(self, w=512, layers=12, heads=8, ctx=77, vocab=49408, out=512):
        super().__init__()
        mask = torch.empty(ctx, ctx).fill_(float("-inf")).triu_(1)
        self.token_embedding = nn.Embedding(vocab, w)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, w) * 0.01)
        self.blocks = nn.Sequential(*[Block(w, heads, mask) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, out) * w ** -0.5)

    def forward(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.blocks(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection


def build(workload):
    torch.manual_seed(0)
    if workload == "text":
        m = Text()
        ids = torch.zeros(BATCH["text"], 77, dtype=torch.long)
        for i in range(ids.shape[0]):  # the same prompts as bench_clip
            ids[i, 0] = 49406
            ids[i, 1:12] = torch.arange(321, 332) + i
            ids[i, 12] = 49407
        return m.eval(), ids
    m = Vision(32 if workload == "b32" else 16)
    return m.eval(), torch.randn(BATCH[workload], 3, 224, 224)


def main():
    torch.set_num_threads(int(os.environ.get("CLIPTUNE_THREADS", "2")))
    if sys.argv[1] == "--export":
        out = sys.argv[2]
        os.makedirs(out, exist_ok=True)
        for w in BATCH:
            m, x = build(w)
            tmp = os.path.join(out, w + ".onnx.tmp")
            with torch.no_grad():
                torch.onnx.export(m, (x,), tmp, input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}}, opset_version=14)
            os.replace(tmp, os.path.join(out, w + ".onnx"))
        return
    workload = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    m, x = build(workload)
    rates = []
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            m(x)
            if r:
                rates.append(x.shape[0] / (time.perf_counter() - t0))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("result engine=pytorch workload=%s batch=%d rss_mb=%.0f per_s=%s"
          % (workload, x.shape[0], rss, ",".join("%.3f" % r for r in rates)))


if __name__ == "__main__":
    main()
