#!/usr/bin/python3
"""Write tests/fixtures/resnet/: a tiny random CLIP with OpenAI's
ModifiedResNet image tower in OpenAI / open_clip state-dict names, as F32
(with batch norm's num_batches_tracked buffers, as torch state dicts carry
them) and F16 .safetensors, and reference outputs computed by PyTorch in
float64 from the weights as read back from each file (ref.safetensors).

    /usr/bin/python3 tools/ref/gen_resnet_ref.py [out_dir]

Behaviour matched (read from the sources, re-implemented here with
torch.nn.functional, in float64):
  - openai/CLIP clip/model.py: ModifiedResNet (stem: conv 3x3 stride 2 pad 1,
    two 3x3 convs pad 1, each + BatchNorm2d + ReLU, AvgPool2d(2)), Bottleneck
    (1x1, 3x3 pad 1, AvgPool2d(stride) when stride > 1, 1x1 x4 channels; the
    shortcut AvgPool2d(stride) -> 1x1 conv -> BatchNorm2d when stride > 1 or
    the channels change; ReLU after the sum), BatchNorm2d in eval mode
    (running statistics, eps 1e-5), AttentionPool2d (flatten HW, mean token
    prepended, + positional_embedding, F.multi_head_attention_forward with
    query = the mean token, separate q/k/v weights, c_proj as out_proj),
    build_model's shape rules (layer counts from the keys, width from
    layer1.0.conv1, image size 32 * sqrt(rows - 1) of the attnpool positional
    embedding, heads = width * 32 // 64).
  - dense "tokens" features: AttentionPool2d with query = every token, as
    PLOT (CHENGY12/PLOT plot-coop/clip/model.py) and CALIP (ZiyuGuo99/CALIP
    clip/model.py) return the whole sequence (token 0 = the pooled output).
  - dense "value" features: MaskCLIP's ResNet head (chongzhou96/MaskCLIP
    mmseg/models/decode_heads/maskclip_head.py, attn_pooling False): v_proj
    and c_proj as 1x1 convolutions on the feature map (no positional
    embedding), keys k_proj as a 1x1 convolution; the mean token (position 0
    here) through the same projections.
  - dense "pool value" features: DualCoOp's AttentionConv (sunxm2357/DualCoOp
    clip/model.py, its RN path's local features): the mean token prepended,
    + positional_embedding, then F.linear with v_proj and with c_proj.
  - the text tower and logits as gen_clip_ref.py (its functions are reused).

Outputs: image embeddings, both dense kinds, the keys, the logits against
two texts, and gradients of two scalar functions w.r.t. the input pixels and
four weights (a 3x3 conv, a stem batch norm, a shortcut batch norm bias, the
attention pooling's q_proj bias), for the F32 file."""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_clip_ref as G  # noqa: E402  (st_write / st_read, text tower, logits)

torch.set_default_dtype(torch.float64)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "resnet")

BN_EPS = 1e-5
# layers (2, 1, 1, 1): layer1 has a second block with an identity shortcut;
# width 4 -> features 128, 2 heads of 64 (build_model's width * 32 // 64);
# image 64 -> a 2x2 grid (5 tokens)
C = dict(layers=(2, 1, 1, 1), width=4, image=64, embed=16,
         ctx=8, vocab=16, t_width=64, t_layers=1, t_heads=1, t_mlp=64,
         act="quick_gelu", sot=14, eot=15)
GRAD_WEIGHTS = ["visual.layer2.0.conv2.weight", "visual.bn1.weight",
                "visual.layer1.0.downsample.1.bias", "visual.attnpool.q_proj.bias"]


def make_state(c, seed):
    g = torch.Generator().manual_seed(seed)

    def n(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    sd = {}

    def conv(name, cout, cin, k):
        sd[name] = n(cout, cin, k, k, std=(2.0 / (cin * k * k)) ** 0.5)

    def bn(prefix, ch):
        sd[prefix + ".weight"] = 1.0 + n(ch, std=0.1)
        sd[prefix + ".bias"] = n(ch, std=0.1)
        sd[prefix + ".running_mean"] = n(ch, std=0.1)
        sd[prefix + ".running_var"] = 0.5 + torch.rand(ch, generator=g, dtype=torch.float32)
        sd[prefix + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)

    w = c["width"]
    conv("visual.conv1.weight", w // 2, 3, 3)
    bn("visual.bn1", w // 2)
    conv("visual.conv2.weight", w // 2, w // 2, 3)
    bn("visual.bn2", w // 2)
    conv("visual.conv3.weight", w, w // 2, 3)
    bn("visual.bn3", w)
    inplanes = w
    for li, nb in enumerate(c["layers"]):
        planes = w << li
        for j in range(nb):
            stride = 2 if li > 0 and j == 0 else 1
            p = "visual.layer%d.%d." % (li + 1, j)
            conv(p + "conv1.weight", planes, inplanes, 1)
            bn(p + "bn1", planes)
            conv(p + "conv2.weight", planes, planes, 3)
            bn(p + "bn2", planes)
            conv(p + "conv3.weight", planes * 4, planes, 1)
            bn(p + "bn3", planes * 4)
            if stride > 1 or inplanes != planes * 4:
                conv(p + "downsample.0.weight", planes * 4, inplanes, 1)
                bn(p + "downsample.1", planes * 4)
            inplanes = planes * 4
    ch, grid = w * 32, c["image"] // 32
    sd["visual.attnpool.positional_embedding"] = n(grid * grid + 1, ch, std=ch ** -0.5)
    for k in ("q", "k", "v"):
        sd["visual.attnpool.%s_proj.weight" % k] = n(ch, ch, std=ch ** -0.5)
        sd["visual.attnpool.%s_proj.bias" % k] = n(ch, std=0.1)
    sd["visual.attnpool.c_proj.weight"] = n(c["embed"], ch, std=ch ** -0.5)
    sd["visual.attnpool.c_proj.bias"] = n(c["embed"], std=0.1)

    tw = c["t_width"]
    sd["token_embedding.weight"] = n(c["vocab"], tw, std=0.02)
    sd["positional_embedding"] = n(c["ctx"], tw, std=0.01)
    for i in range(c["t_layers"]):
        p = "transformer.resblocks.%d." % i
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = 1.0 + n(tw, std=0.1), n(tw, std=0.1)
        sd[p + "attn.in_proj_weight"] = n(3 * tw, tw, std=tw ** -0.5)
        sd[p + "attn.in_proj_bias"] = n(3 * tw, std=0.1)
        sd[p + "attn.out_proj.weight"] = n(tw, tw, std=tw ** -0.5)
        sd[p + "attn.out_proj.bias"] = n(tw, std=0.1)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = 1.0 + n(tw, std=0.1), n(tw, std=0.1)
        sd[p + "mlp.c_fc.weight"] = n(c["t_mlp"], tw, std=tw ** -0.5)
        sd[p + "mlp.c_fc.bias"] = n(c["t_mlp"], std=0.1)
        sd[p + "mlp.c_proj.weight"] = n(tw, c["t_mlp"], std=c["t_mlp"] ** -0.5)
        sd[p + "mlp.c_proj.bias"] = n(tw, std=0.1)
    sd["ln_final.weight"], sd["ln_final.bias"] = 1.0 + n(tw, std=0.1), n(tw, std=0.1)
    sd["text_projection"] = n(tw, c["embed"], std=tw ** -0.5)
    sd["logit_scale"] = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    return sd


def arch_from_shapes(sd):
    """build_model's rules for a ModifiedResNet."""
    counts = tuple(len(set(k.split(".")[2] for k in sd if k.startswith("visual.layer%d" % b)))
                   for b in (1, 2, 3, 4))
    width = sd["visual.layer1.0.conv1.weight"].shape[0]
    rows = sd["visual.attnpool.positional_embedding"].shape[0]
    out_w = round((rows - 1) ** 0.5)
    assert out_w ** 2 + 1 == rows
    return dict(layers=counts, width=width, image=out_w * 32, heads=width * 32 // 64,
                embed=sd["text_projection"].shape[1])


def batch_norm(x, P, prefix):
    return F.batch_norm(x, P[prefix + ".running_mean"], P[prefix + ".running_var"],
                        P[prefix + ".weight"], P[prefix + ".bias"], training=False, eps=BN_EPS)


def resnet_features(P, c, x):
    for i in (1, 2, 3):
        x = F.conv2d(x, P["visual.conv%d.weight" % i], stride=2 if i == 1 else 1, padding=1)
        x = F.relu(batch_norm(x, P, "visual.bn%d" % i))
    x = F.avg_pool2d(x, 2)
    for li, nb in enumerate(c["layers"]):
        for j in range(nb):
            stride = 2 if li > 0 and j == 0 else 1
            p = "visual.layer%d.%d." % (li + 1, j)
            out = F.relu(batch_norm(F.conv2d(x, P[p + "conv1.weight"]), P, p + "bn1"))
            out = F.relu(batch_norm(F.conv2d(out, P[p + "conv2.weight"], padding=1), P, p + "bn2"))
            if stride > 1:
                out = F.avg_pool2d(out, stride)
            out = batch_norm(F.conv2d(out, P[p + "conv3.weight"]), P, p + "bn3")
            if (p + "downsample.0.weight") in P:
                idn = F.avg_pool2d(x, stride) if stride > 1 else x
                idn = batch_norm(F.conv2d(idn, P[p + "downsample.0.weight"]), P, p + "downsample.1")
            else:
                idn = x
            x = F.relu(out + idn)
    return x


def attnpool(P, feat, heads, all_queries):
    a = "visual.attnpool."
    x = feat.flatten(start_dim=2).permute(2, 0, 1)             # (HW, B, C)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)      # (HW+1, B, C)
    x = x + P[a + "positional_embedding"][:, None, :]
    y, _ = F.multi_head_attention_forward(
        query=x if all_queries else x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1],
        num_heads=heads, q_proj_weight=P[a + "q_proj.weight"], k_proj_weight=P[a + "k_proj.weight"],
        v_proj_weight=P[a + "v_proj.weight"], in_proj_weight=None,
        in_proj_bias=torch.cat([P[a + "q_proj.bias"], P[a + "k_proj.bias"], P[a + "v_proj.bias"]]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0,
        out_proj_weight=P[a + "c_proj.weight"], out_proj_bias=P[a + "c_proj.bias"],
        use_separate_proj_weight=True, training=False, need_weights=False)
    return y.permute(1, 0, 2)                                   # (B, Tq, E)


def maskclip_value(P, feat):
    """maskclip_head.py's ResNet path: 1x1 convs v_proj -> c_proj, k_proj."""
    a = "visual.attnpool."

    def conv1x1(x, name):
        return F.conv2d(x, P[a + name + ".weight"][:, :, None, None], P[a + name + ".bias"])

    B = feat.shape[0]
    mean = feat.mean(dim=(2, 3), keepdim=True)                  # the mean token, (B, C, 1, 1)
    val = [conv1x1(conv1x1(t, "v_proj"), "c_proj").flatten(2).transpose(1, 2) for t in (mean, feat)]
    key = [conv1x1(t, "k_proj").flatten(2).transpose(1, 2) for t in (mean, feat)]
    assert val[1].shape[0] == B
    return torch.cat(val, dim=1), torch.cat(key, dim=1)


def text_ids(c):
    ids = torch.zeros(2, c["ctx"], dtype=torch.int64)
    for r, words in enumerate(([3, 7, 2], [5, 1, 9, 4, 12])):
        row = [c["sot"]] + words + [c["eot"]]
        ids[r, :len(row)] = torch.tensor(row)
    return ids


def reference(P, c, heads, inputs):
    out = {}
    tc = dict(act=c["act"], t_layers=c["t_layers"], t_heads=c["t_heads"])
    # (1) embeddings + PLOT/CALIP dense tokens; L1 = <emb, R1> + <dense, R2>
    px = inputs["pixels"].double().requires_grad_(True)
    W = {k: P[k].clone().requires_grad_(True) for k in GRAD_WEIGHTS}
    Q = dict(P, **W)
    feat = resnet_features(Q, c, px)
    emb = attnpool(Q, feat, heads, False)[:, 0]
    dense = attnpool(Q, feat, heads, True)
    assert torch.allclose(dense[:, 0], emb, rtol=1e-12, atol=1e-12)
    L1 = (emb * inputs["R1"].double()).sum() + (dense * inputs["R2"].double()).sum()
    L1.backward()
    out["image_embeds"], out["dense_tokens"] = emb, dense
    out["grad_pixels"] = px.grad
    for k in GRAD_WEIGHTS:
        out["grad." + k] = W[k].grad
    # (2) MaskCLIP's value path; L2 = <value, R3> + <keys, R4>
    px = inputs["pixels"].double().requires_grad_(True)
    val, key = maskclip_value(P, resnet_features(P, c, px))
    L2 = (val * inputs["R3"].double()).sum() + (key * inputs["R4"].double()).sum()
    L2.backward()
    out["dense_value"], out["dense_keys"], out["grad_pixels_value"] = val, key, px.grad
    # (2b) DualCoOp's AttentionConv: c_proj(v_proj(x + pos)), every token
    with torch.no_grad():
        f = resnet_features(P, c, inputs["pixels"].double())
        x = f.flatten(start_dim=2).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + P["visual.attnpool.positional_embedding"][:, None, :]
        x = F.linear(x, P["visual.attnpool.v_proj.weight"], P["visual.attnpool.v_proj.bias"])
        x = F.linear(x, P["visual.attnpool.c_proj.weight"], P["visual.attnpool.c_proj.bias"])
        out["dense_pool_value"] = x.permute(1, 0, 2)
    # (3) logits against two texts
    ids = inputs["ids"]
    eot = ids.argmax(dim=-1)
    with torch.no_grad():
        txt, _ = G.encode_text_from_embeds(P, tc, P["token_embedding.weight"][ids], eot)
        out["text_embeds"] = txt
        out["logits_per_image"] = G.clip_logits(P, emb.detach(), txt)
    return {k: v.detach() for k, v in out.items()}


def main():
    os.makedirs(OUT, exist_ok=True)
    c = C
    sd = make_state(c, 16)
    a = arch_from_shapes(sd)
    assert a["layers"] == c["layers"] and a["width"] == c["width"] and a["image"] == c["image"]
    g = torch.Generator().manual_seed(17)
    T, ch, E = (c["image"] // 32) ** 2 + 1, c["width"] * 32, c["embed"]
    inputs = dict(pixels=torch.randn(2, 3, c["image"], c["image"], generator=g, dtype=torch.float32),
                  R1=torch.randn(2, E, generator=g, dtype=torch.float32),
                  R2=torch.randn(2, T, E, generator=g, dtype=torch.float32),
                  R3=torch.randn(2, T, E, generator=g, dtype=torch.float32),
                  R4=torch.randn(2, T, ch, generator=g, dtype=torch.float32) * 0.1,
                  ids=text_ids(c))
    files = {}
    for tag, dtype in (("f32", torch.float32), ("f16", torch.float16)):
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
        if tag == "f16":  # an F16 export without the step counters
            tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
        path = os.path.join(OUT, "rn_openai%s.safetensors" % ("" if tag == "f32" else "_f16"))
        G.st_write(path, tensors)
        back = G.check_roundtrip(path, tensors)
        P = {k: v.double() for k, v in back.items() if v.is_floating_point()}
        ref = reference(P, c, a["heads"], inputs)
        for k, v in ref.items():
            # gradients only for F32 (the F16 file checks the widening)
            if tag == "f32" or not k.startswith("grad"):
                files["%s.%s" % (tag, k)] = v.float()
    for k, v in inputs.items():
        files["input." + k] = v if k == "ids" else v.float()
    G.st_write(os.path.join(OUT, "ref.safetensors"), files)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %s (%.1f KiB)" % (OUT, total / 1024))


if __name__ == "__main__":
    main()
