#!/usr/bin/python3
"""Write tests/fixtures/clip/: tiny random CLIP checkpoints in the real file
formats (OpenAI/open_clip state-dict names and Hugging Face CLIPModel folders,
both as .safetensors), plus reference inputs and outputs computed by PyTorch.

Run with the interpreter that has torch (Debian's python3-torch; there is no
`transformers` or `safetensors` package, both layouts and the file format are
written here by hand):
    /usr/bin/python3 tools/ref/gen_clip_ref.py [out_dir]

Behaviour matched (read from the sources, re-implemented here):
  - openai/CLIP clip/model.py: VisionTransformer.forward (conv1 without bias,
    stride = patch; reshape/permute to (B, grid*grid, width) row-major; class
    embedding prepended; + positional_embedding; ln_pre; resblocks; ln_post on
    token 0; @ proj), ResidualAttentionBlock (x + attn(ln_1(x)), x +
    mlp(ln_2(x)), nn.MultiheadAttention with packed in_proj (3w, w) + bias,
    scale head_dim**-0.5, QuickGELU x*sigmoid(1.702x)), CLIP.encode_text
    (token_embedding + positional_embedding, causal mask = -inf above the
    diagonal, ln_final, pooled at text.argmax(-1), @ text_projection),
    CLIP.forward (logit_scale.exp() * normalised image @ normalised text.T),
    build_model (architecture from shapes; heads = width // 64).
  - huggingface/transformers models/clip/modeling_clip.py + configuration_clip.py:
    CLIPModel key names, q/k/v/out_proj split, fc1/fc2, pre_layrnorm (sic),
    post_layernorm, visual_projection / text_projection as bias-free Linear
    (weight = (projection_dim, hidden)), logit_scale a 0-d parameter,
    hidden_act "quick_gelu" or "gelu" (exact erf GELU), and the pooling rule
    of CLIPTextTransformer.forward: for transformers 4.31 .. 4.5x (PR #24777)
    `eos_token_id == 2` (legacy configs) -> argmax of the ids, otherwise the
    first position whose id == eos_token_id. (Newer transformers, after the
    MetaCLIP-2 PR #39821, instead test "every row's max id == 49407"; model B
    below also gets outputs for that rule, see *_first_eos.)
  - muzairkhattak/multimodal-prompt-learning clip/model.py (MaPLe): vision
    prompts appended at the END of the sequence after the positional embedding
    and before ln_pre; before block i (1 <= i < J) the last n tokens are
    replaced by the layer-i prompts; text prompts replace positions 1..n of the
    token embeddings (CoOp "X X" context, before the positional embedding) and
    before block i (1 <= i < J) positions 1..n of the stream are replaced.

Every reference is computed in float64 from the weights as read back from the
written files (so rounded weights for the F16/BF16 copies), and stored as
float32 .npy. The script asserts: its MHA == torch.nn.functional.
multi_head_attention_forward == nn.MultiheadAttention; the OpenAI-layout and
HF-layout files of model A give identical outputs through two separately
written forwards (OpenAI-style packed attention vs HF-style split q/k/v with an
additive finfo.min causal mask); the OpenAI file's shapes give back the
configuration under build_model's rules; the safetensors files read back
bit-exactly.
"""
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "clip")

# Model A's widths are 64 (1 head each, what build_model's width // 64 gives)
# rather than 128: the four A checkpoints are ~3.4 MB at these sizes already,
# dominated by the 1000 x 64 token embedding and the 2+2 blocks.
# Weight scales deviate on purpose from "std 0.02 everywhere": fan_in**-0.5 for
# the attention/MLP/projection matrices gives non-uniform attention and O(1)
# MLP pre-activations, so QuickGELU vs GELU, the causal mask, the head split
# and LayerNorm eps all change the outputs measurably.
LN_EPS = 1e-5
N_PROMPT = 2      # MaPLe n_ctx (vision and text)
PROMPT_DEPTH = 2  # MaPLe J: prompts at the input and replaced before block 1

# --------------------------------------------------------------------------
# model configurations

MODEL_A = dict(
    name="a", embed=32,
    image=32, patch=8, v_width=64, v_layers=2, v_heads=1, v_mlp=256,
    ctx=16, vocab=1000, t_width=64, t_layers=2, t_heads=1, t_mlp=256,
    act="quick_gelu", sot=998, eot=999,
    hf_bos=998, hf_eos=999, hf_pad=1,
)
MODEL_B = dict(
    name="b", embed=24,
    image=24, patch=6, v_width=30, v_layers=3, v_heads=3, v_mlp=120,
    ctx=12, vocab=256, t_width=40, t_layers=1, t_heads=2, t_mlp=120,
    act="gelu", sot=254, eot=255,
    hf_bos=0, hf_eos=2, hf_pad=1,  # the legacy values real openai/* configs carry
)
# Model C: "mid-size", OpenAI layout only, stored F16. Widths 128 so that
# build_model's width // 64 gives 2 heads of 64 from the shapes alone; a
# 16-pixel patch on a 96-pixel image (grid 6, 37 tokens) as in ViT-B/16.
# Vocab 512 (not 2000): the token embedding is the only size knob that leaves
# the architecture alone; the blocks alone are ~3 MB in F16.
MODEL_C = dict(
    name="c", embed=64,
    image=96, patch=16, v_width=128, v_layers=4, v_heads=2, v_mlp=512,
    ctx=24, vocab=512, t_width=128, t_layers=3, t_heads=2, t_mlp=512,
    act="quick_gelu", sot=510, eot=511,
)

# --------------------------------------------------------------------------
# safetensors, written and read by hand

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
ST_TORCH = {v: k for k, v in ST_DTYPE.items()}
ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def st_write(path, tensors):
    """8-byte LE header length, JSON header padded with spaces to a multiple
    of 8, then the raw little-endian data. Tensors are laid out largest
    element size first, then by name, as the reference writer does, so every
    tensor starts at an offset aligned to its element size."""
    assert sys.byteorder == "little"
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for name, t in items:
        b = tensor_bytes(t)
        assert len(b) == t.numel() * t.element_size()
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert header.pop("__metadata__") == {"format": "pt"}
    data = raw[8 + n:]
    out = {}
    end = 0
    for name, h in header.items():
        a, b = h["data_offsets"]
        end = max(end, b)
        buf = data[a:b]
        if h["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.dtype(ST_NP[h["dtype"]]).newbyteorder("<")).copy())
        out[name] = t.reshape(h["shape"])
        assert out[name].dtype == ST_TORCH[h["dtype"]]
    assert end == len(data)
    return out


def check_roundtrip(path, tensors):
    back = st_read(path)
    assert set(back) == set(tensors), path
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and tuple(back[k].shape) == tuple(t.shape), (path, k)
        assert tensor_bytes(back[k]) == tensor_bytes(t), (path, k)
    return back


# --------------------------------------------------------------------------
# random weights, OpenAI/open_clip names (the canonical form used here)

def make_openai_state(c, seed):
    g = torch.Generator().manual_seed(seed)

    def n(*shape, std):
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * std)

    def ln(w):
        return (1.0 + n(w, std=0.1)), n(w, std=0.1)

    sd = {}

    def blocks(prefix, w, layers, mlp):
        for i in range(layers):
            p = "%s.resblocks.%d." % (prefix, i)
            sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = ln(w)
            sd[p + "attn.in_proj_weight"] = n(3 * w, w, std=w ** -0.5)
            sd[p + "attn.in_proj_bias"] = n(3 * w, std=0.1)
            sd[p + "attn.out_proj.weight"] = n(w, w, std=w ** -0.5)
            sd[p + "attn.out_proj.bias"] = n(w, std=0.1)
            sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = ln(w)
            sd[p + "mlp.c_fc.weight"] = n(mlp, w, std=w ** -0.5)
            sd[p + "mlp.c_fc.bias"] = n(mlp, std=0.1)
            sd[p + "mlp.c_proj.weight"] = n(w, mlp, std=mlp ** -0.5)
            sd[p + "mlp.c_proj.bias"] = n(w, std=0.1)

    vw, p, grid = c["v_width"], c["patch"], c["image"] // c["patch"]
    sd["visual.conv1.weight"] = n(vw, 3, p, p, std=(3 * p * p) ** -0.5)
    sd["visual.class_embedding"] = n(vw, std=vw ** -0.5)
    sd["visual.positional_embedding"] = n(grid * grid + 1, vw, std=vw ** -0.5)
    sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"] = ln(vw)
    blocks("visual.transformer", vw, c["v_layers"], c["v_mlp"])
    sd["visual.ln_post.weight"], sd["visual.ln_post.bias"] = ln(vw)
    sd["visual.proj"] = n(vw, c["embed"], std=vw ** -0.5)

    tw = c["t_width"]
    sd["token_embedding.weight"] = n(c["vocab"], tw, std=0.02)
    sd["positional_embedding"] = n(c["ctx"], tw, std=0.01)
    blocks("transformer", tw, c["t_layers"], c["t_mlp"])
    sd["ln_final.weight"], sd["ln_final.bias"] = ln(tw)
    sd["text_projection"] = n(tw, c["embed"], std=tw ** -0.5)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=torch.float32)  # 0-d, as torch.ones([]) * log(1/0.07)
    return sd


def openai_to_hf(sd, c, with_position_ids):
    hf = {}

    def blocks(src, dst, w, layers):
        for i in range(layers):
            s = "%s.resblocks.%d." % (src, i)
            d = "%s.encoder.layers.%d." % (dst, i)
            qkv_w = sd[s + "attn.in_proj_weight"]
            qkv_b = sd[s + "attn.in_proj_bias"]
            for j, nm in enumerate(("q", "k", "v")):
                hf[d + "self_attn.%s_proj.weight" % nm] = qkv_w[j * w:(j + 1) * w].clone()
                hf[d + "self_attn.%s_proj.bias" % nm] = qkv_b[j * w:(j + 1) * w].clone()
            hf[d + "self_attn.out_proj.weight"] = sd[s + "attn.out_proj.weight"]
            hf[d + "self_attn.out_proj.bias"] = sd[s + "attn.out_proj.bias"]
            hf[d + "layer_norm1.weight"] = sd[s + "ln_1.weight"]
            hf[d + "layer_norm1.bias"] = sd[s + "ln_1.bias"]
            hf[d + "layer_norm2.weight"] = sd[s + "ln_2.weight"]
            hf[d + "layer_norm2.bias"] = sd[s + "ln_2.bias"]
            hf[d + "mlp.fc1.weight"] = sd[s + "mlp.c_fc.weight"]
            hf[d + "mlp.fc1.bias"] = sd[s + "mlp.c_fc.bias"]
            hf[d + "mlp.fc2.weight"] = sd[s + "mlp.c_proj.weight"]
            hf[d + "mlp.fc2.bias"] = sd[s + "mlp.c_proj.bias"]

    v = "vision_model."
    hf[v + "embeddings.class_embedding"] = sd["visual.class_embedding"]
    hf[v + "embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    hf[v + "embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    hf[v + "pre_layrnorm.weight"] = sd["visual.ln_pre.weight"]
    hf[v + "pre_layrnorm.bias"] = sd["visual.ln_pre.bias"]
    blocks("visual.transformer", "vision_model", c["v_width"], c["v_layers"])
    hf[v + "post_layernorm.weight"] = sd["visual.ln_post.weight"]
    hf[v + "post_layernorm.bias"] = sd["visual.ln_post.bias"]
    hf["visual_projection.weight"] = sd["visual.proj"].t().contiguous()

    t = "text_model."
    hf[t + "embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    hf[t + "embeddings.position_embedding.weight"] = sd["positional_embedding"]
    blocks("transformer", "text_model", c["t_width"], c["t_layers"])
    hf[t + "final_layer_norm.weight"] = sd["ln_final.weight"]
    hf[t + "final_layer_norm.bias"] = sd["ln_final.bias"]
    hf["text_projection.weight"] = sd["text_projection"].t().contiguous()
    hf["logit_scale"] = sd["logit_scale"]
    if with_position_ids:
        grid = c["image"] // c["patch"]
        hf[t + "embeddings.position_ids"] = torch.arange(c["ctx"], dtype=torch.int64).reshape(1, -1)
        hf[v + "embeddings.position_ids"] = torch.arange(grid * grid + 1, dtype=torch.int64).reshape(1, -1)
    return hf


def hf_to_openai(hf, cfg):
    """Inverse mapping, driven only by the HF file + config.json."""
    tc, vc = cfg["text_config"], cfg["vision_config"]
    sd = {}

    def blocks(src, dst, layers):
        for i in range(layers):
            s = "%s.encoder.layers.%d." % (src, i)
            d = "%s.resblocks.%d." % (dst, i)
            sd[d + "attn.in_proj_weight"] = torch.cat([hf[s + "self_attn.%s_proj.weight" % x] for x in "qkv"], 0)
            sd[d + "attn.in_proj_bias"] = torch.cat([hf[s + "self_attn.%s_proj.bias" % x] for x in "qkv"], 0)
            sd[d + "attn.out_proj.weight"] = hf[s + "self_attn.out_proj.weight"]
            sd[d + "attn.out_proj.bias"] = hf[s + "self_attn.out_proj.bias"]
            sd[d + "ln_1.weight"] = hf[s + "layer_norm1.weight"]
            sd[d + "ln_1.bias"] = hf[s + "layer_norm1.bias"]
            sd[d + "ln_2.weight"] = hf[s + "layer_norm2.weight"]
            sd[d + "ln_2.bias"] = hf[s + "layer_norm2.bias"]
            sd[d + "mlp.c_fc.weight"] = hf[s + "mlp.fc1.weight"]
            sd[d + "mlp.c_fc.bias"] = hf[s + "mlp.fc1.bias"]
            sd[d + "mlp.c_proj.weight"] = hf[s + "mlp.fc2.weight"]
            sd[d + "mlp.c_proj.bias"] = hf[s + "mlp.fc2.bias"]

    v = "vision_model."
    sd["visual.class_embedding"] = hf[v + "embeddings.class_embedding"]
    sd["visual.conv1.weight"] = hf[v + "embeddings.patch_embedding.weight"]
    sd["visual.positional_embedding"] = hf[v + "embeddings.position_embedding.weight"]
    sd["visual.ln_pre.weight"] = hf[v + "pre_layrnorm.weight"]
    sd["visual.ln_pre.bias"] = hf[v + "pre_layrnorm.bias"]
    blocks("vision_model", "visual.transformer", vc["num_hidden_layers"])
    sd["visual.ln_post.weight"] = hf[v + "post_layernorm.weight"]
    sd["visual.ln_post.bias"] = hf[v + "post_layernorm.bias"]
    sd["visual.proj"] = hf["visual_projection.weight"].t()
    t = "text_model."
    sd["token_embedding.weight"] = hf[t + "embeddings.token_embedding.weight"]
    sd["positional_embedding"] = hf[t + "embeddings.position_embedding.weight"]
    blocks("text_model", "transformer", tc["num_hidden_layers"])
    sd["ln_final.weight"] = hf[t + "final_layer_norm.weight"]
    sd["ln_final.bias"] = hf[t + "final_layer_norm.bias"]
    sd["text_projection"] = hf["text_projection.weight"].t()
    sd["logit_scale"] = hf["logit_scale"]
    return sd


def arch_from_openai_shapes(sd):
    """What openai/CLIP build_model infers from a ViT state dict."""
    vw = sd["visual.conv1.weight"].shape[0]
    tw = sd["ln_final.weight"].shape[0]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return dict(
        v_width=vw,
        v_layers=len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        patch=sd["visual.conv1.weight"].shape[-1],
        image=sd["visual.conv1.weight"].shape[-1] * grid,
        embed=sd["text_projection"].shape[1],
        ctx=sd["positional_embedding"].shape[0],
        vocab=sd["token_embedding.weight"].shape[0],
        t_width=tw,
        t_heads=tw // 64,
        v_heads=vw // 64,
        t_layers=len(set(k.split(".")[2] for k in sd if k.startswith("transformer.resblocks"))),
    )


# --------------------------------------------------------------------------
# HF config.json / preprocessor_config.json

def hf_config(c, legacy_verbose, torch_dtype):
    text = dict(
        vocab_size=c["vocab"], hidden_size=c["t_width"], intermediate_size=c["t_mlp"],
        projection_dim=c["embed"], num_hidden_layers=c["t_layers"],
        num_attention_heads=c["t_heads"], max_position_embeddings=c["ctx"],
        hidden_act=c["act"], layer_norm_eps=LN_EPS, attention_dropout=0.0, dropout=0.0,
        initializer_range=0.02, initializer_factor=1.0,
        bos_token_id=c["hf_bos"], eos_token_id=c["hf_eos"], pad_token_id=c["hf_pad"],
        model_type="clip_text_model",
    )
    vision = dict(
        hidden_size=c["v_width"], intermediate_size=c["v_mlp"], projection_dim=c["embed"],
        num_hidden_layers=c["v_layers"], num_attention_heads=c["v_heads"], num_channels=3,
        image_size=c["image"], patch_size=c["patch"], hidden_act=c["act"],
        layer_norm_eps=LN_EPS, attention_dropout=0.0, dropout=0.0,
        initializer_range=0.02, initializer_factor=1.0, model_type="clip_vision_model",
    )
    if legacy_verbose:
        # The shape of the early (transformers 4.1x) openai/clip-* configs:
        # every PretrainedConfig field of the sub-configs spelled out.
        common = dict(
            _name_or_path="", add_cross_attention=False, architectures=None, bad_words_ids=None,
            chunk_size_feed_forward=0, cross_attention_hidden_size=None,
            decoder_start_token_id=None, diversity_penalty=0.0, do_sample=False,
            early_stopping=False, encoder_no_repeat_ngram_size=0, finetuning_task=None,
            forced_bos_token_id=None, forced_eos_token_id=None,
            id2label={"0": "LABEL_0", "1": "LABEL_1"}, is_decoder=False,
            is_encoder_decoder=False, label2id={"LABEL_0": 0, "LABEL_1": 1},
            length_penalty=1.0, max_length=20, min_length=0, no_repeat_ngram_size=0,
            num_beam_groups=1, num_beams=1, num_return_sequences=1, output_attentions=False,
            output_hidden_states=False, output_scores=False, prefix=None, problem_type=None,
            pruned_heads={}, remove_invalid_values=False, repetition_penalty=1.0,
            return_dict=True, return_dict_in_generate=False, sep_token_id=None,
            task_specific_params=None, temperature=1.0, tie_encoder_decoder=False,
            tie_word_embeddings=True, tokenizer_class=None, top_k=50, top_p=1.0,
            torch_dtype=None, torchscript=False, transformers_version="4.16.0.dev0",
            use_bfloat16=False,
        )
        vision.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
        text = dict(sorted({**common, **text}.items()))
        vision = dict(sorted({**common, **vision}.items()))
        cfg = {
            "_name_or_path": "cliptune/tiny-clip-b", "architectures": ["CLIPModel"],
            "initializer_factor": 1.0, "logit_scale_init_value": 2.6592, "model_type": "clip",
            "projection_dim": c["embed"], "text_config": text, "text_config_dict": None,
            "torch_dtype": torch_dtype, "transformers_version": None,
            "vision_config": vision, "vision_config_dict": None,
        }
    else:
        cfg = {
            "architectures": ["CLIPModel"], "initializer_factor": 1.0,
            "logit_scale_init_value": 2.6592, "model_type": "clip",
            "projection_dim": c["embed"], "text_config": dict(sorted(text.items())),
            "torch_dtype": torch_dtype, "transformers_version": "4.44.2",
            "vision_config": dict(sorted(vision.items())),
        }
    return cfg


MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def preprocessor_config(c, dict_schema):
    if dict_schema:  # CLIPImageProcessor, size/crop_size as dicts
        return {
            "crop_size": {"height": c["image"], "width": c["image"]},
            "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
            "do_rescale": True, "do_resize": True, "image_mean": MEAN,
            "image_processor_type": "CLIPImageProcessor", "image_std": STD,
            "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": c["image"]},
        }
    return {  # the older CLIPFeatureExtractor schema: plain ints
        "crop_size": c["image"], "do_center_crop": True, "do_normalize": True,
        "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": MEAN, "image_std": STD, "resample": 3, "size": c["image"],
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------
# reference forward (OpenAI-style; float64; canonical state dict)

def act_fn(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: F.gelu(x)  # exact, erf
    raise ValueError(name)


def layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, LN_EPS)


def causal_mask(L):
    return torch.full((L, L), float("-inf")).triu(1)


def my_mha(x, in_w, in_b, out_w, out_b, heads, causal):
    """x: (B, L, D). Packed in_proj like nn.MultiheadAttention."""
    B, L, D = x.shape
    hd = D // heads
    assert hd * heads == D
    qkv = x @ in_w.t() + in_b
    q, k, v = qkv.split(D, dim=-1)
    q = q.reshape(B, L, heads, hd).transpose(1, 2)
    k = k.reshape(B, L, heads, hd).transpose(1, 2)
    v = v.reshape(B, L, heads, hd).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
    if causal:
        s = s + causal_mask(L)
    a = torch.softmax(s, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(B, L, D)
    return o @ out_w.t() + out_b


def resblock(x, P, pre, heads, act, causal):
    h = layer_norm(x, P[pre + "ln_1.weight"], P[pre + "ln_1.bias"])
    x = x + my_mha(h, P[pre + "attn.in_proj_weight"], P[pre + "attn.in_proj_bias"],
                   P[pre + "attn.out_proj.weight"], P[pre + "attn.out_proj.bias"], heads, causal)
    h = layer_norm(x, P[pre + "ln_2.weight"], P[pre + "ln_2.bias"])
    h = act(h @ P[pre + "mlp.c_fc.weight"].t() + P[pre + "mlp.c_fc.bias"])
    return x + (h @ P[pre + "mlp.c_proj.weight"].t() + P[pre + "mlp.c_proj.bias"])


def encode_image(P, c, pixels, V=None):
    """Returns (embeds (B,E), dense (B,N,E), tokens (B,N,w)). V: MaPLe vision
    prompts [V0, V1, ...], each (n, w)."""
    act = act_fn(c["act"])
    p = c["patch"]
    x = F.conv2d(pixels, P["visual.conv1.weight"], stride=p)  # (B, w, g, g)
    B, w = x.shape[0], x.shape[1]
    x = x.reshape(B, w, -1).permute(0, 2, 1)                   # (B, g*g, w)
    cls = P["visual.class_embedding"].reshape(1, 1, w).expand(B, 1, w)
    x = torch.cat([cls, x], dim=1) + P["visual.positional_embedding"]
    if V is not None:
        n = V[0].shape[0]
        x = torch.cat([x, V[0].unsqueeze(0).expand(B, n, w)], dim=1)
    x = layer_norm(x, P["visual.ln_pre.weight"], P["visual.ln_pre.bias"])
    for i in range(c["v_layers"]):
        if V is not None and 1 <= i < len(V):
            x = torch.cat([x[:, :x.shape[1] - n], V[i].unsqueeze(0).expand(B, n, w)], dim=1)
        x = resblock(x, P, "visual.transformer.resblocks.%d." % i, c["v_heads"], act, False)
    tokens = x
    dense = layer_norm(x, P["visual.ln_post.weight"], P["visual.ln_post.bias"]) @ P["visual.proj"]
    embeds = layer_norm(x[:, 0, :], P["visual.ln_post.weight"], P["visual.ln_post.bias"]) @ P["visual.proj"]
    return embeds, dense, tokens


def substitute_text_prompt(E, T0):
    B, L, w = E.shape
    n = T0.shape[0]
    return torch.cat([E[:, :1], T0.unsqueeze(0).expand(B, n, w), E[:, 1 + n:]], dim=1)


def encode_text_from_embeds(P, c, E, eot, T=None):
    """E: (B, L, w) token embeddings BEFORE the positional embedding (with T0
    already substituted when prompted). eot: (B,) pooling positions.
    Returns (embeds (B,E), tokens (B,L,w) = last block output)."""
    act = act_fn(c["act"])
    B, L, w = E.shape
    x = E + P["positional_embedding"][:L]
    for i in range(c["t_layers"]):
        if T is not None and 1 <= i < len(T):
            x = substitute_text_prompt(x, T[i])
        x = resblock(x, P, "transformer.resblocks.%d." % i, c["t_heads"], act, True)
    tokens = x
    x = layer_norm(x, P["ln_final.weight"], P["ln_final.bias"])
    embeds = x[torch.arange(B), eot] @ P["text_projection"]
    return embeds, tokens


def clip_logits(P, img, txt):
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return P["logit_scale"].exp() * img @ txt.t()


# --------------------------------------------------------------------------
# an independent HF-style forward (modeling_clip.py's structure), for checks

def hf_forward(hf, cfg, pixels, ids):
    tc, vc = cfg["text_config"], cfg["vision_config"]

    def lin(x, name, bias=True):
        return F.linear(x, hf[name + ".weight"], hf[name + ".bias"] if bias else None)

    def ln(x, name, eps):
        return F.layer_norm(x, (x.shape[-1],), hf[name + ".weight"], hf[name + ".bias"], eps)

    def layer(h, pre, conf, mask):
        act = act_fn(conf["hidden_act"])
        B, L, D = h.shape
        nh = conf["num_attention_heads"]
        hd = D // nh
        r = h
        h = ln(h, pre + "layer_norm1", conf["layer_norm_eps"])
        q = lin(h, pre + "self_attn.q_proj").view(B, L, nh, hd).transpose(1, 2)
        k = lin(h, pre + "self_attn.k_proj").view(B, L, nh, hd).transpose(1, 2)
        v = lin(h, pre + "self_attn.v_proj").view(B, L, nh, hd).transpose(1, 2)
        w = torch.matmul(q, k.transpose(-1, -2)) * hd ** -0.5
        if mask is not None:
            w = w + mask
        w = torch.softmax(w, dim=-1)
        o = torch.matmul(w, v).transpose(1, 2).reshape(B, L, D)
        h = r + lin(o, pre + "self_attn.out_proj")
        r = h
        h = ln(h, pre + "layer_norm2", conf["layer_norm_eps"])
        h = lin(act(lin(h, pre + "mlp.fc1")), pre + "mlp.fc2")
        return r + h

    # vision
    B = pixels.shape[0]
    pe = F.conv2d(pixels, hf["vision_model.embeddings.patch_embedding.weight"], stride=vc["patch_size"])
    pe = pe.flatten(2).transpose(1, 2)
    cls = hf["vision_model.embeddings.class_embedding"].expand(B, 1, -1)
    h = torch.cat([cls, pe], dim=1)
    pos_ids = torch.arange(h.shape[1])
    h = h + F.embedding(pos_ids, hf["vision_model.embeddings.position_embedding.weight"])
    h = ln(h, "vision_model.pre_layrnorm", vc["layer_norm_eps"])
    for i in range(vc["num_hidden_layers"]):
        h = layer(h, "vision_model.encoder.layers.%d." % i, vc, None)
    pooled = ln(h[:, 0, :], "vision_model.post_layernorm", vc["layer_norm_eps"])
    image_embeds = lin(pooled, "visual_projection", bias=False)

    # text
    Bt, L = ids.shape
    h = F.embedding(ids, hf["text_model.embeddings.token_embedding.weight"])
    h = h + F.embedding(torch.arange(L), hf["text_model.embeddings.position_embedding.weight"])
    mask = torch.full((L, L), torch.finfo(h.dtype).min).triu(1)  # HF: additive finfo.min
    for i in range(tc["num_hidden_layers"]):
        h = layer(h, "text_model.encoder.layers.%d." % i, tc, mask)
    h = ln(h, "text_model.final_layer_norm", tc["layer_norm_eps"])
    if tc["eos_token_id"] == 2:  # legacy configs (transformers 4.31 .. 4.5x rule)
        pos = ids.to(torch.int).argmax(dim=-1)
    else:
        pos = (ids.to(torch.int) == tc["eos_token_id"]).int().argmax(dim=-1)
    text_embeds = lin(h[torch.arange(Bt), pos], "text_projection", bias=False)

    ie = image_embeds / image_embeds.pow(2).sum(-1, keepdim=True).pow(0.5)
    te = text_embeds / text_embeds.pow(2).sum(-1, keepdim=True).pow(0.5)
    logits_per_text = torch.matmul(te, ie.t()) * hf["logit_scale"].exp()
    return image_embeds, text_embeds, logits_per_text.t(), pos


# --------------------------------------------------------------------------
# checks of the attention against torch

def check_mha_against_torch():
    g = torch.Generator().manual_seed(7)
    for D, H in ((64, 1), (64, 2), (48, 3), (40, 2)):
        for causal in (False, True):
            L, B = 7, 3
            x = torch.randn(B, L, D, generator=g)
            in_w = torch.randn(3 * D, D, generator=g) * D ** -0.5
            in_b = torch.randn(3 * D, generator=g) * 0.1
            out_w = torch.randn(D, D, generator=g) * D ** -0.5
            out_b = torch.randn(D, generator=g) * 0.1
            mask = causal_mask(L) if causal else None
            mine = my_mha(x, in_w, in_b, out_w, out_b, H, causal)
            xl = x.transpose(0, 1)  # (L, B, D), batch_first=False as CLIP uses
            ref, _ = F.multi_head_attention_forward(
                xl, xl, xl, D, H, in_w, in_b, None, None, False, 0.0, out_w, out_b,
                training=False, need_weights=False, attn_mask=mask)
            assert torch.allclose(mine, ref.transpose(0, 1), rtol=1e-12, atol=1e-12), (D, H, causal)
            m = torch.nn.MultiheadAttention(D, H).double().eval()
            with torch.no_grad():
                m.in_proj_weight.copy_(in_w)
                m.in_proj_bias.copy_(in_b)
                m.out_proj.weight.copy_(out_w)
                m.out_proj.bias.copy_(out_b)
                ref2 = m(xl, xl, xl, need_weights=False, attn_mask=mask)[0]
            assert torch.allclose(mine, ref2.transpose(0, 1), rtol=1e-12, atol=1e-12), (D, H, causal)
    print("MHA matches F.multi_head_attention_forward and nn.MultiheadAttention")


# --------------------------------------------------------------------------
# inputs

def first_max_positions(ids):
    out = []
    for row in ids.tolist():
        m = max(row)
        out.append(row.index(m))
    return torch.tensor(out, dtype=torch.int64)


def first_eq_positions(ids, value):
    out = []
    for row in ids.tolist():
        out.append(row.index(value) if value in row else 0)  # argmax of all-zero -> 0
    return torch.tensor(out, dtype=torch.int64)


def token_rows(c, g):
    L, sot, eot = c["ctx"], c["sot"], c["eot"]

    def words(k, lo, hi):
        return torch.randint(lo, hi, (k,), generator=g).tolist()

    if c["name"] == "a":
        r0 = [sot] + words(3, 1, sot) + [eot]
        r0 += [0] * (L - len(r0))                       # OpenAI tokenizer: pad 0
        r1 = [sot] + words(7, 1, sot) + [eot]
        r1 += [eot] * (L - len(r1))                     # HF CLIPTokenizer padding: pad = EOT id
        r2 = [sot] + words(L - 2, 1, sot) + [eot]       # fills the whole context
    elif c["name"] == "c":                              # as A, other lengths
        r0 = [sot] + words(5, 1, sot) + [eot]
        r0 += [0] * (L - len(r0))
        r1 = [sot] + words(12, 1, sot) + [eot]
        r1 += [eot] * (L - len(r1))
        r2 = [sot] + words(L - 2, 1, sot) + [eot]
    else:
        # legacy config, eos_token_id = 2 but EOT id = vocab-1: argmax pooling.
        r0 = [sot, 17, 2, 99, eot]
        r0 += [0] * (L - len(r0))
        r1 = [sot, 2, 2, 200, 31, 5, 8, eot]
        r1 += [eot] * (L - len(r1))
        w = words(L - 2, 3, sot)
        w[5] = 2
        r2 = [sot] + w + [eot]
    ids = torch.tensor([r0, r1, r2], dtype=torch.int64)
    assert ids.shape == (3, L)
    return ids


# --------------------------------------------------------------------------
# reference computation for one model/weights

def f64(d):
    return {k: (v.double() if v.is_floating_point() else v) for k, v in d.items()}


def npsave(d, name, t, dtype=np.float32):
    np.save(os.path.join(d, name + ".npy"), t.detach().cpu().numpy().astype(dtype))


def compute_reference(P, c, inputs, eot, ref_dir, alt_eot=None):
    """P: canonical (OpenAI-name) float64 state dict."""
    os.makedirs(ref_dir, exist_ok=True)
    pixels32, ids, R32, prompts = inputs["pixels"], inputs["ids"], inputs["R"], inputs["prompts"]
    R = R32.double()
    tok = P["token_embedding.weight"]
    files = []

    def save(name, t, dtype=np.float32):
        npsave(ref_dir, name, t, dtype)
        files.append(name + ".npy")

    save("pixels", pixels32)
    save("input_ids", ids, np.int64)
    save("eot_positions", eot, np.int64)
    save("R", R32)
    for k in ("V0", "V1", "T0", "T1"):
        if k in prompts:
            save("prompt_" + k, prompts[k])

    # ---- plain forward + gradients
    pixels = pixels32.double().requires_grad_(True)
    E = tok[ids].detach().clone().requires_grad_(True)
    img, dense, itok = encode_image(P, c, pixels)
    txt, ttok = encode_text_from_embeds(P, c, E, eot)
    logits = clip_logits(P, img, txt)
    loss = (logits * R).sum()
    loss.backward()
    assert torch.allclose(dense[:, 0], img, rtol=1e-12, atol=1e-12)
    save("image_embeds", img)
    save("image_dense", dense)
    save("image_tokens", itok)
    save("text_embeds", txt)
    save("text_tokens", ttok)
    save("logits_per_image", logits)
    save("loss", loss.reshape(1))
    save("grad_pixels", pixels.grad)
    save("grad_text_input_embeds", E.grad)
    plain = dict(img=img.detach(), txt=txt.detach(), logits=logits.detach())

    if alt_eot is not None:
        with torch.no_grad():
            txt2, _ = encode_text_from_embeds(P, c, tok[ids], alt_eot)
            save("eot_positions_first_eos", alt_eot, np.int64)
            save("text_embeds_first_eos", txt2)
            save("logits_per_image_first_eos", clip_logits(P, img.detach(), txt2))

    # ---- MaPLe-style deep prompts
    pixels = pixels32.double().requires_grad_(True)
    V = [prompts["V0"].double().requires_grad_(True), prompts["V1"].double().requires_grad_(True)]
    T = [prompts["T0"].double().requires_grad_(True)]
    if "T1" in prompts:
        T.append(prompts["T1"].double().requires_grad_(True))
    Ein = substitute_text_prompt(tok[ids].detach(), T[0])
    Ein.retain_grad()
    img, dense, itok = encode_image(P, c, pixels, V)
    txt, ttok = encode_text_from_embeds(P, c, Ein, eot, T)
    logits = clip_logits(P, img, txt)
    loss = (logits * R).sum()
    loss.backward()
    assert torch.allclose(Ein.grad[:, 1:1 + N_PROMPT].sum(0), T[0].grad, rtol=1e-10, atol=1e-14)
    save("prompted_image_embeds", img)
    save("prompted_image_dense", dense)
    save("prompted_image_tokens", itok)
    save("prompted_text_embeds", txt)
    save("prompted_text_tokens", ttok)
    save("prompted_logits_per_image", logits)
    save("prompted_loss", loss.reshape(1))
    save("prompted_grad_pixels", pixels.grad)
    save("prompted_grad_V0", V[0].grad)
    save("prompted_grad_V1", V[1].grad)
    save("prompted_grad_T0", T[0].grad)
    if len(T) > 1:
        save("prompted_grad_T1", T[1].grad)
    save("prompted_grad_text_input_embeds", Ein.grad)
    return plain, files


def make_inputs(c, seed):
    g = torch.Generator().manual_seed(seed)
    H = c["image"]
    pixels = torch.randn(2, 3, H, H, generator=g, dtype=torch.float32)
    ids = token_rows(c, g)
    R = torch.randn(2, 3, generator=g, dtype=torch.float32)
    prompts = {
        "V0": torch.randn(N_PROMPT, c["v_width"], generator=g, dtype=torch.float32) * c["v_width"] ** -0.5,
        "V1": torch.randn(N_PROMPT, c["v_width"], generator=g, dtype=torch.float32),
        "T0": torch.randn(N_PROMPT, c["t_width"], generator=g, dtype=torch.float32) * 0.02,
    }
    if c["t_layers"] >= PROMPT_DEPTH:
        prompts["T1"] = torch.randn(N_PROMPT, c["t_width"], generator=g, dtype=torch.float32)
    return dict(pixels=pixels, ids=ids, R=R, prompts=prompts)


def write_meta(ref_dir, c, weights, rule, eot, files, extra=None):
    grid = c["image"] // c["patch"]
    meta = dict(
        model=c["name"], weights=weights,
        config={k: v for k, v in c.items() if k != "name"},
        grid=grid, image_tokens=grid * grid + 1,
        eot_rule=rule, eot_positions=eot.tolist(),
        prompts=dict(n_vision=N_PROMPT, n_text=N_PROMPT, depth=PROMPT_DEPTH,
                     vision_replaced_before_blocks=list(range(1, min(PROMPT_DEPTH, c["v_layers"]))),
                     text_replaced_before_blocks=list(range(1, min(PROMPT_DEPTH, c["t_layers"])))),
        layer_norm_eps=LN_EPS, files=sorted(files),
    )
    if extra:
        meta.update(extra)
    write_json(os.path.join(ref_dir, "meta.json"), meta)


def assert_close_outputs(a, b, what):
    for k in ("img", "txt", "logits"):
        assert torch.allclose(a[k], b[k], rtol=1e-10, atol=1e-12), (what, k, (a[k] - b[k]).abs().max())


# --------------------------------------------------------------------------

def main():
    check_mha_against_torch()

    generated = ["a_openai.safetensors", "a_openai_f16.safetensors", "a_hf", "a_hf_bf16", "b_hf",
                 "a_ref", "a_f16_ref", "a_bf16_ref", "b_ref", "c_openai_f16.safetensors", "c_ref"]
    os.makedirs(OUT, exist_ok=True)
    for nm in generated:
        p = os.path.join(OUT, nm)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)

    # ================= model A
    c = MODEL_A
    sd32 = make_openai_state(c, seed=1234)
    inputs = make_inputs(c, seed=99)
    ids = inputs["ids"]

    # OpenAI layout, F32
    path = os.path.join(OUT, "a_openai.safetensors")
    st_write(path, sd32)
    oa = check_roundtrip(path, sd32)
    assert oa["logit_scale"].dim() == 0
    arch = arch_from_openai_shapes(oa)
    for k, v in arch.items():
        assert v == c[k], ("build_model would infer", k, v, c[k])

    # HF layout, F32, with the (old) persistent position_ids buffers
    cfg_a = hf_config(c, legacy_verbose=False, torch_dtype="float32")
    d = os.path.join(OUT, "a_hf")
    os.makedirs(d)
    write_json(os.path.join(d, "config.json"), cfg_a)
    write_json(os.path.join(d, "preprocessor_config.json"), preprocessor_config(c, dict_schema=True))
    hf32 = openai_to_hf(sd32, c, with_position_ids=True)
    st_write(os.path.join(d, "model.safetensors"), hf32)
    ha = check_roundtrip(os.path.join(d, "model.safetensors"), hf32)

    eot_openai = first_max_positions(ids)
    assert torch.equal(eot_openai, ids.argmax(-1))
    eot_hf = first_eq_positions(ids, cfg_a["text_config"]["eos_token_id"])
    assert torch.equal(eot_openai, eot_hf)

    P = f64(oa)
    plain, files = compute_reference(P, c, inputs, eot_openai, os.path.join(OUT, "a_ref"))
    write_meta(os.path.join(OUT, "a_ref"), c, ["a_openai.safetensors", "a_hf/model.safetensors"],
               "openai: argmax(ids); hf (eos_token_id 999, non-legacy): first id == 999 -- identical here",
               eot_openai, files)
    # the HF file through the HF-style forward, and through the HF->OpenAI mapping
    with torch.no_grad():
        hi, ht, hl, hpos = hf_forward(f64(ha), cfg_a, inputs["pixels"].double(), ids)
        assert torch.equal(hpos.long(), eot_openai)
        assert_close_outputs(plain, dict(img=hi, txt=ht, logits=hl), "A openai vs hf")
        P2 = f64(hf_to_openai(ha, cfg_a))
        for k in P:
            assert torch.equal(P[k], P2[k]), k
    print("model A: OpenAI and HF layouts agree")

    # F16 copy of the OpenAI file
    sd16 = {k: v.half() for k, v in sd32.items()}
    path = os.path.join(OUT, "a_openai_f16.safetensors")
    st_write(path, sd16)
    o16 = check_roundtrip(path, sd16)
    _, files = compute_reference(f64(o16), c, inputs, eot_openai, os.path.join(OUT, "a_f16_ref"))
    write_meta(os.path.join(OUT, "a_f16_ref"), c, ["a_openai_f16.safetensors"],
               "argmax(ids)", eot_openai, files)

    # BF16 copy of the HF folder (no position_ids, as newer saves)
    cfg_bf = hf_config(c, legacy_verbose=False, torch_dtype="bfloat16")
    d = os.path.join(OUT, "a_hf_bf16")
    os.makedirs(d)
    write_json(os.path.join(d, "config.json"), cfg_bf)
    write_json(os.path.join(d, "preprocessor_config.json"), preprocessor_config(c, dict_schema=True))
    hfbf = {k: v.bfloat16() for k, v in openai_to_hf(sd32, c, with_position_ids=False).items()}
    st_write(os.path.join(d, "model.safetensors"), hfbf)
    hbf = check_roundtrip(os.path.join(d, "model.safetensors"), hfbf)
    Pbf = f64(hf_to_openai(hbf, cfg_bf))
    plain_bf, files = compute_reference(Pbf, c, inputs, eot_hf, os.path.join(OUT, "a_bf16_ref"))
    write_meta(os.path.join(OUT, "a_bf16_ref"), c, ["a_hf_bf16/model.safetensors"],
               "hf non-legacy: first position with id == eos_token_id (999)", eot_hf, files)
    with torch.no_grad():
        hi, ht, hl, _ = hf_forward(f64(hbf), cfg_bf, inputs["pixels"].double(), ids)
        assert_close_outputs(plain_bf, dict(img=hi, txt=ht, logits=hl), "A bf16 hf")

    # ================= model B (HF only, legacy eos 2, exact GELU)
    c = MODEL_B
    sdb = make_openai_state(c, seed=4321)
    inputs = make_inputs(c, seed=77)
    ids = inputs["ids"]
    cfg_b = hf_config(c, legacy_verbose=True, torch_dtype="float32")
    d = os.path.join(OUT, "b_hf")
    os.makedirs(d)
    write_json(os.path.join(d, "config.json"), cfg_b)
    write_json(os.path.join(d, "preprocessor_config.json"), preprocessor_config(c, dict_schema=False))
    hfb = openai_to_hf(sdb, c, with_position_ids=False)
    st_write(os.path.join(d, "model.safetensors"), hfb)
    hb = check_roundtrip(os.path.join(d, "model.safetensors"), hfb)
    eot_b = first_max_positions(ids)                 # legacy (eos_token_id == 2): argmax
    alt_b = first_eq_positions(ids, c["hf_eos"])     # newer transformers on these ids
    assert not torch.equal(eot_b, alt_b)
    Pb = f64(hf_to_openai(hb, cfg_b))
    plain_b, files = compute_reference(Pb, c, inputs, eot_b, os.path.join(OUT, "b_ref"), alt_eot=alt_b)
    write_meta(os.path.join(OUT, "b_ref"), c, ["b_hf/model.safetensors"],
               "hf legacy (eos_token_id == 2): argmax(ids), first maximum", eot_b, files,
               extra=dict(eot_positions_first_eos=alt_b.tolist(),
                          eot_rule_first_eos="transformers after PR #39821: rows' max != 49407, "
                                             "so first position with id == 2"))
    with torch.no_grad():
        hi, ht, hl, hpos = hf_forward(f64(hb), cfg_b, inputs["pixels"].double(), ids)
        assert torch.equal(hpos.long(), eot_b)
        assert_close_outputs(plain_b, dict(img=hi, txt=ht, logits=hl), "B hf")
    print("model B: reference agrees with the HF-style forward")

    # ================= model C (mid-size, OpenAI layout, F16 only)
    c = MODEL_C
    sdc = make_openai_state(c, seed=2468)
    inputs = make_inputs(c, seed=55)
    ids = inputs["ids"]
    sdc16 = {k: v.half() for k, v in sdc.items()}  # every tensor, as convert_weights + save
    path = os.path.join(OUT, "c_openai_f16.safetensors")
    st_write(path, sdc16)
    oc = check_roundtrip(path, sdc16)
    assert oc["logit_scale"].dim() == 0
    arch = arch_from_openai_shapes(oc)
    for k, v in arch.items():
        assert v == c[k], ("build_model would infer", k, v, c[k])
    eot_c = first_max_positions(ids)
    assert torch.equal(eot_c, ids.argmax(-1))
    assert torch.equal(eot_c, first_eq_positions(ids, c["eot"]))
    _, files = compute_reference(f64(oc), c, inputs, eot_c, os.path.join(OUT, "c_ref"))
    write_meta(os.path.join(OUT, "c_ref"), c, ["c_openai_f16.safetensors"],
               "argmax(ids)", eot_c, files)
    # the same weights through the HF-style forward (split q/k/v, 2 heads)
    cfg_c = hf_config(dict(c, hf_bos=c["sot"], hf_eos=c["eot"], hf_pad=1),
                      legacy_verbose=False, torch_dtype="float16")
    with torch.no_grad():
        Pc = f64(oc)
        img, _, _ = encode_image(Pc, c, inputs["pixels"].double())
        txt, _ = encode_text_from_embeds(Pc, c, Pc["token_embedding.weight"][ids], eot_c)
        plain_c = dict(img=img, txt=txt, logits=clip_logits(Pc, img, txt))
        hi, ht, hl, hpos = hf_forward(f64(openai_to_hf(oc, c, with_position_ids=False)), cfg_c,
                                      inputs["pixels"].double(), ids)
        assert torch.equal(hpos.long(), eot_c)
        assert_close_outputs(plain_c, dict(img=hi, txt=ht, logits=hl), "C hf-style")
    print("model C: reference agrees with the HF-style forward")

    total = 0
    for root, _, fs in os.walk(OUT):
        for f in fs:
            total += os.path.getsize(os.path.join(root, f))
    print("wrote %s (%.1f KiB)" % (OUT, total / 1024))


if __name__ == "__main__":
    main()
