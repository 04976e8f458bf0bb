#!/usr/bin/python3
"""CLIP encoder inference in PyTorch (Debian's python3-torch), the peer of
bench_clip's one-workload mode: OpenAI's clip/model.py architecture
(ResidualAttentionBlock with nn.MultiheadAttention, QuickGELU, pre-LN, class
token + positional embeddings, ln_post + proj; the text tower causal with
argmax-EOT pooling) at ViT-B/32 and ViT-B/16 shape, and the ModifiedResNet
RN50 image tower (three-conv stem, avg-pool anti-aliased bottlenecks, batch
norm, attention pooling), random weights, eval mode, torch.no_grad(), 2
threads (CLIPTUNE_THREADS or 2).

    /usr/bin/python3 bench/clip_torch.py b32|b16|text|rn50 [REPS]
        one line: items/s of each timed repetition (one untimed warm-up
        first) and the process's peak RSS
    /usr/bin/python3 bench/clip_torch.py --export DIR
        writes DIR/b32.onnx, b16.onnx, text.onnx, rn50.onnx (opset 14, dynamic batch)
        for bench/clip_ort.mjs (ONNX Runtime runs the same graph)
"""
import os
import resource
import sys
import time

import torch
import torch.nn as nn

BATCH = {"b32": 32, "b16": 32, "text": 100, "rn50": 32}


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


def conv_bn(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> [AvgPool(stride)] -> 1x1 (4x), every conv stride 1; the
    shortcut AvgPool(stride) -> 1x1 -> BN where the shape changes."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.a, self.b, self.c = conv_bn(cin, planes, 1), conv_bn(planes, planes, 3), conv_bn(planes, 4 * planes, 1)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.short = None
        if stride > 1 or cin != 4 * planes:
            self.short = nn.Sequential(nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                                       conv_bn(cin, 4 * planes, 1))

    def forward(self, x):
        y = self.c(self.pool(torch.relu(self.b(torch.relu(self.a(x))))))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResNetCLIP(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), w=64, out=1024, size=224):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU(),
                                  conv_bn(w // 2, w // 2, 3), nn.ReLU(), conv_bn(w // 2, w, 3), nn.ReLU(),
                                  nn.AvgPool2d(2))
        blocks, cin = [], w
        for i, n in enumerate(layers):
            for j in range(n):
                blocks.append(Bottleneck(cin, w << i, 2 if i > 0 and j == 0 else 1))
                cin = 4 * (w << i)
        self.blocks = nn.Sequential(*blocks)
        self.pos = nn.Parameter(torch.randn((size // 32) ** 2 + 1, cin) * cin ** -0.5)
        self.attn = nn.MultiheadAttention(cin, cin // 64)
        self.c_proj = nn.Linear(cin, out)

    def forward(self, x):  # (nn.MultiheadAttention's out_proj before c_proj: one extra
        # C x C product per image for the single query, negligible)
        x = self.blocks(self.stem(x)).flatten(2).permute(2, 0, 1)  # (HW, B, C)
        x = torch.cat([x.mean(0, keepdim=True), x]) + self.pos[:, None, :]
        return self.c_proj(self.attn(x[:1], x, x, need_weights=False)[0][0])


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
    m = ResNetCLIP() if workload == "rn50" else Vision(32 if workload == "b32" else 16)
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
