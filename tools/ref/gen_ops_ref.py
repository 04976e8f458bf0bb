#!/usr/bin/python3
"""Write tests/fixtures/ops_ref.h: float32 forward outputs and input gradients
of the dense ops, computed by PyTorch itself, for tests/test_ops_ref.c.

Run with the interpreter that has torch (Debian's python3-torch):
    /usr/bin/python3 tools/ref/gen_ops_ref.py [out.h]

Every case: deterministic float32 inputs (fixed seed per case), out = op(inputs)
in float32, a fixed float32 cotangent R of out's shape, and the gradient of
every input that requires grad from out.backward(R). The C test rebuilds each
case from the same input arrays, seeds ct_backward_from with the same R and
compares.

Attention is written out explicitly (split heads, q k^T / sqrt(hs), causal
mask, softmax, @ v, extra key/value tokens placed before k/v) and, in float64,
cross-checked here against torch.nn.functional.multi_head_attention_forward
with identity projections (torch 1.13 has no scaled_dot_product_attention):
forward and input gradients must agree, or the script fails.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)

CASES = []  # dicts, in emission order


def randn(seed, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).float()


def uniform(seed, lo, hi, *shape):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).float()


def add_case(name, op, inputs, fn, seed, grad_mask=None, ip=(), fp=(), ids=None, aux=None):
    """inputs: list of float32 tensors; fn(*leaves) -> float32 output.
    grad_mask: which inputs require grad (default all). ip/fp: integer/float
    parameters for the C builder; ids: int64 list (labels, row ids); aux:
    float list (BCE targets)."""
    if grad_mask is None:
        grad_mask = [True] * len(inputs)
    leaves = [x.detach().clone().float().requires_grad_(m) for x, m in zip(inputs, grad_mask)]
    out = fn(*leaves)
    assert out.dtype == torch.float32, (name, out.dtype)
    cot = randn(seed + 7919, *out.shape) if out.dim() > 0 else torch.tensor(0.75)
    out.backward(cot)
    grads = [l.grad.detach().clone() if m else None for l, m in zip(leaves, grad_mask)]
    for gr in grads:
        assert gr is None or torch.isfinite(gr).all(), name
    assert torch.isfinite(out).all(), name
    CASES.append(dict(name=name, op=op, inputs=[x.detach() for x in leaves],
                      out=out.detach(), dout=cot, grads=grads, ip=list(ip), fp=list(fp),
                      ids=ids, aux=aux))


# ---------------------------------------------------------------------------
# Attention: explicit reference and its cross-check against torch's MHA.
# ---------------------------------------------------------------------------

def attention_ref(q, k, v, ek, ev, nh, causal):
    """q (B, Tq, C), k/v (B, Tk, C), ek/ev (P, C) or None. Output (B, Tq, C)."""
    B, Tq, C = q.shape
    Tk = k.shape[1]
    hs = C // nh
    if ek is not None:
        P = ek.shape[0]
        k = torch.cat([ek.unsqueeze(0).expand(B, P, C), k], dim=1)
        v = torch.cat([ev.unsqueeze(0).expand(B, P, C), v], dim=1)
    else:
        P = 0
    L = P + Tk
    qh = q.view(B, Tq, nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
    kh = k.reshape(B, L, nh, hs).transpose(1, 2)
    vh = v.reshape(B, L, nh, hs).transpose(1, 2)
    s = (qh @ kh.transpose(-1, -2)) / math.sqrt(hs)  # (B, nh, Tq, L)
    if causal:
        s = s.masked_fill(causal_mask(Tq, Tk, P), float("-inf"))
    a = torch.softmax(s, dim=-1)
    y = a @ vh  # (B, nh, Tq, hs)
    return y.transpose(1, 2).reshape(B, Tq, C)


def causal_mask(Tq, Tk, P):
    """True where masked: query i sees the P extras and keys j <= i + (Tk - Tq)."""
    i = torch.arange(Tq).unsqueeze(1)
    j = torch.arange(P + Tk).unsqueeze(0)
    return (j >= P) & (j - P > i + (Tk - Tq))


def attention_mha(q, k, v, ek, ev, nh, causal):
    """The same attention through torch's own multi-head attention, with
    identity in/out projections and the extras concatenated in front."""
    B, Tq, C = q.shape
    Tk = k.shape[1]
    P = 0
    if ek is not None:
        P = ek.shape[0]
        k = torch.cat([ek.unsqueeze(0).expand(B, P, C), k], dim=1)
        v = torch.cat([ev.unsqueeze(0).expand(B, P, C), v], dim=1)
    eye = torch.eye(C, dtype=q.dtype)
    y, _ = F.multi_head_attention_forward(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), C, nh,
        torch.cat([eye, eye, eye]), torch.zeros(3 * C, dtype=q.dtype), None, None, False, 0.0,
        eye, torch.zeros(C, dtype=q.dtype), training=False, need_weights=False,
        attn_mask=causal_mask(Tq, Tk, P) if causal else None)
    return y.transpose(0, 1)


def cross_check_attention(ins, nh, causal):
    ins64 = [x.double().requires_grad_() if x is not None else None for x in ins]
    live = [x for x in ins64 if x is not None]
    ya = attention_ref(*ins64, nh, causal)
    R = torch.randn(ya.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ga = torch.autograd.grad(ya, live, R)
    ins64b = [x.detach().clone().requires_grad_() if x is not None else None for x in ins64]
    liveb = [x for x in ins64b if x is not None]
    yb = attention_mha(*ins64b, nh, causal)
    gb = torch.autograd.grad(yb, liveb, R)
    assert torch.allclose(ya, yb, rtol=1e-10, atol=1e-12), "attention forward != torch MHA"
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), "attention grad != torch MHA"


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def build_cases():
    # linear: y = x W^T + b (PyTorch layout)
    add_case("linear", "linear", [randn(1, 2, 3, 8), randn(2, 5, 8, scale=0.5), randn(3, 5)],
             F.linear, 1)
    add_case("linear_nobias", "linear", [randn(4, 4, 8), randn(5, 6, 8, scale=0.5)],
             lambda x, w: F.linear(x, w), 4)

    # matmul: ip = (ta, tb)
    def mm(ta, tb):
        def f(a, b):
            return (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
        return f
    add_case("matmul_batched", "matmul", [randn(10, 2, 3, 4), randn(11, 2, 4, 5)], mm(0, 0), 10,
             ip=[0, 0])
    add_case("matmul_ta_sharedB_tb", "matmul", [randn(12, 2, 4, 3), randn(13, 5, 4)], mm(1, 1),
             12, ip=[1, 1])
    add_case("matmul_batched_tb", "matmul", [randn(14, 2, 3, 4), randn(15, 2, 5, 4)], mm(0, 1),
             14, ip=[0, 1])
    add_case("matmul_2d_ta", "matmul", [randn(16, 4, 3), randn(17, 4, 5)], mm(1, 0), 16,
             ip=[1, 0])

    # add / sub / mul with every supported broadcast of b
    bshapes = [("same", (2, 3, 4)), ("row", (4,)), ("trailing", (1, 3, 4)), ("scalar", (1,))]
    fns = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}
    seed = 20
    for opn, f in fns.items():
        for kind, shp in bshapes:
            add_case(f"{opn}_{kind}", opn, [randn(seed, 2, 3, 4), randn(seed + 1, *shp)], f, seed)
            seed += 2
    add_case("scale", "scale", [randn(40, 3, 5)], lambda x: x * -2.5, 40, fp=[-2.5])

    # layout
    add_case("transpose_0_2", "transpose", [randn(41, 2, 3, 4)], lambda x: x.transpose(0, 2)
             .contiguous(), 41, ip=[0, 2])
    add_case("concat_dim1", "concat", [randn(42, 2, 1, 4), randn(43, 2, 3, 4), randn(44, 2, 2, 4)],
             lambda a, b, c: torch.cat([a, b, c], 1), 42, ip=[1])
    add_case("concat_dim_last", "concat", [randn(45, 2, 3, 2), randn(46, 2, 3, 3),
                                           randn(47, 2, 3, 1)],
             lambda a, b, c: torch.cat([a, b, c], -1), 45, ip=[-1])
    add_case("slice_dim1", "slice", [randn(48, 2, 5, 4)], lambda x: x[:, 1:4, :], 48,
             ip=[1, 1, 3])
    add_case("slice_dim_last", "slice", [randn(49, 2, 3, 6)], lambda x: x[..., 2:6], 49,
             ip=[-1, 2, 4])
    ids = [3, 0, 3, 1, 5, 0]  # shape (2, 3), repeated ids accumulate
    add_case("gather_rows", "gather_rows", [randn(50, 6, 4)],
             lambda t: t[torch.tensor(ids).view(2, 3)], 50, ip=[2, 2, 3], ids=ids)

    # reductions: ip = (dim,)
    add_case("sum_dim0", "sum", [randn(51, 2, 3, 4)], lambda x: x.sum(0), 51, ip=[0])
    add_case("sum_dim_last", "sum", [randn(52, 2, 3, 4)], lambda x: x.sum(-1), 52, ip=[-1])
    add_case("mean_dim1", "mean", [randn(53, 2, 3, 4)], lambda x: x.mean(1), 53, ip=[1])
    add_case("mean_dim_last", "mean", [randn(54, 2, 3, 4)], lambda x: x.mean(-1), 54, ip=[-1])

    # normalisation
    add_case("layernorm", "layernorm",
             [randn(60, 2, 3, 8, scale=2) + 0.5, 1 + randn(61, 8, scale=0.2), randn(62, 8, scale=0.2)],
             lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5), 60, fp=[1e-5])
    add_case("layernorm_noaffine", "layernorm", [randn(63, 4, 8, scale=3) - 1.0],
             lambda x: F.layer_norm(x, (8,), None, None, 1e-5), 63, fp=[1e-5])
    add_case("l2_normalize", "l2_normalize", [randn(64, 2, 3, 8)],
             lambda x: F.normalize(x, dim=-1), 64, fp=[1e-12])

    # softmax family
    add_case("softmax", "softmax", [randn(70, 2, 3, 8, scale=2)], lambda x: torch.softmax(x, -1), 70)
    add_case("log_softmax", "log_softmax", [randn(71, 2, 3, 8, scale=2)],
             lambda x: F.log_softmax(x, -1), 71)
    labels = [2, 0, 5, 5, 1]
    add_case("cross_entropy", "cross_entropy", [randn(72, 5, 6, scale=2)],
             lambda x: F.cross_entropy(x, torch.tensor(labels)), 72, fp=[0.0], ids=labels)
    add_case("cross_entropy_ls0.1", "cross_entropy", [randn(73, 5, 6, scale=2)],
             lambda x: F.cross_entropy(x, torch.tensor(labels), label_smoothing=0.1), 73,
             fp=[0.1], ids=labels)
    targets = [0.0, 1.0, 0.25, 1.0, 0.0, 0.5, 0.75, 1.0, 0.0, 0.125, 1.0, 0.0, 0.5, 0.0, 1.0]
    add_case("bce_with_logits", "bce_with_logits", [randn(74, 3, 5, scale=3)],
             lambda x: F.binary_cross_entropy_with_logits(x, torch.tensor(targets).view(3, 5)),
             74, aux=targets)
    # KL(p || q): p strictly positive so d/dp is finite in torch too
    add_case("kl_div", "kl_div",
             [F.log_softmax(randn(75, 4, 6, scale=2), -1), torch.softmax(randn(76, 4, 6), -1)],
             lambda lq, p: F.kl_div(lq, p, reduction="batchmean"), 75)
    # p with exact zeros (xlogy convention: 0 log 0 = 0). torch's d/dp is NaN
    # there (0/0 in xlogy's backward), so p is frozen and only d/dlog_q and
    # the forward are compared.
    pz = torch.softmax(randn(78, 4, 6), -1)
    pz[0, 1] = 0
    pz[2, 0] = 0
    pz[2, 5] = 0
    pz = pz / pz.sum(-1, keepdim=True)
    add_case("kl_div_p_zeros", "kl_div", [F.log_softmax(randn(77, 4, 6, scale=2), -1), pz],
             lambda lq, p: F.kl_div(lq, p, reduction="batchmean"), 77, grad_mask=[True, False])
    add_case("entropy", "entropy", [randn(79, 4, 6, scale=2)],
             lambda x: -(torch.softmax(x, -1) * F.log_softmax(x, -1)).sum(-1).mean(), 79)

    # activations
    x = randn(80, 2, 3, 8, scale=2)
    add_case("gelu", "gelu", [x], lambda t: F.gelu(t, approximate="none"), 80)
    add_case("quick_gelu", "quick_gelu", [randn(81, 2, 3, 8, scale=2)],
             lambda t: t * torch.sigmoid(1.702 * t), 81)
    xr = randn(82, 2, 3, 8)
    xr[xr.abs() < 1e-2] = 0.5  # away from the kink
    add_case("relu", "relu", [xr], torch.relu, 82)
    add_case("sigmoid", "sigmoid", [randn(83, 2, 3, 8, scale=3)], torch.sigmoid, 83)
    add_case("tanh", "tanh", [randn(84, 2, 3, 8, scale=2)], torch.tanh, 84)
    add_case("exp", "exp", [randn(85, 2, 3, 8)], torch.exp, 85)
    add_case("log", "log", [uniform(86, 0.05, 4.0, 2, 3, 8)], torch.log, 86)

    # attention: ip = (n_head, causal)
    B, T, C, NH, P = 2, 7, 16, 4, 3
    for name, causal, extra, Tq, Tk in [
            ("attention", 0, 0, T, T),
            ("attention_causal", 1, 0, T, T),
            ("attention_extra", 0, 1, T, T),
            ("attention_causal_extra", 1, 1, T, T),
            ("attention_causal_extra_cross", 1, 1, 4, T)]:
        s = 90 + 10 * len([c for c in CASES if c["op"] == "attention"])
        ins = [randn(s, B, Tq, C), randn(s + 1, B, Tk, C), randn(s + 2, B, Tk, C)]
        if extra:
            ins += [randn(s + 3, P, C), randn(s + 4, P, C)]
        full = ins + [None, None] if not extra else ins
        cross_check_attention(full, NH, bool(causal))

        def f(*t, causal=causal, extra=extra):
            t = list(t) + ([None, None] if not extra else [])
            return attention_ref(*t, NH, bool(causal))
        add_case(name, "attention", ins, f, s, ip=[NH, causal])


# ---------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------

def cname(case, suffix):
    return "oref_" + case["name"].replace(".", "_") + "_" + suffix


def c_shape(t):
    # scalar outputs are shape (1) in cliptune
    return list(t.shape) if t.dim() > 0 else [1]


def farr(name, t, comment):
    vals = t.reshape(-1).tolist()
    body = ", ".join("%.9g" % v for v in vals)
    return f"/* {comment} */\nstatic const float {name}[{len(vals)}] = {{{body}}};\n"


def emit(path):
    lines = []
    w = lines.append
    w("/* Generated by tools/ref/gen_ops_ref.py (torch %s) -- do not edit.\n" % torch.__version__)
    w(" * Float32 forward outputs and input gradients of the dense ops from PyTorch;\n")
    w(" * see the script for the definition of every case. */\n")
    w("#ifndef CT_TEST_OPS_REF_H\n#define CT_TEST_OPS_REF_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n")
    w("#define OREF_MAX_IN 5\n\n")
    w("typedef struct oref_arr {\n    int ndim;\n    int64_t shape[4];\n"
      "    const float *data; /* numel values */\n} oref_arr;\n\n")
    w("typedef struct oref_case {\n"
      "    const char *name;\n"
      "    const char *op;          /* which ct_ op rebuilds it            */\n"
      "    int n_in;\n"
      "    oref_arr in[OREF_MAX_IN];\n"
      "    const float *grad[OREF_MAX_IN]; /* d<out, dout>/d in[i]; NULL: frozen */\n"
      "    oref_arr out;\n"
      "    const float *dout;       /* cotangent, out's shape              */\n"
      "    int ip[4];               /* integer parameters (per op)         */\n"
      "    float fp[2];             /* float parameters (per op)           */\n"
      "    const int64_t *ids;      /* labels / row ids, or NULL           */\n"
      "    int n_ids;\n"
      "    const float *aux;        /* BCE targets, or NULL                */\n"
      "} oref_case;\n\n")
    for c in CASES:
        w(f"/* ---- {c['name']} ({c['op']}) ---- */\n")
        for i, x in enumerate(c["inputs"]):
            w(farr(cname(c, f"in{i}"), x, f"input {i} {tuple(x.shape)}"))
        w(farr(cname(c, "out"), c["out"], f"output {tuple(c_shape(c['out']))}"))
        w(farr(cname(c, "dout"), c["dout"].reshape(c_shape(c["out"])), "cotangent"))
        for i, gr in enumerate(c["grads"]):
            if gr is not None:
                w(farr(cname(c, f"grad{i}"), gr, f"gradient of input {i}"))
        if c["ids"] is not None:
            w("static const int64_t %s[%d] = {%s};\n" % (
                cname(c, "ids"), len(c["ids"]), ", ".join(str(i) for i in c["ids"])))
        if c["aux"] is not None:
            w(farr(cname(c, "aux"), torch.tensor(c["aux"]), "targets"))
        w("\n")

    def arr(shape, data):
        s = ", ".join(str(d) for d in shape)
        return "{%d, {%s}, %s}" % (len(shape), s, data)

    w("static const oref_case oref_cases[] = {\n")
    for c in CASES:
        ins = ", ".join(arr(list(x.shape), cname(c, f"in{i}")) for i, x in enumerate(c["inputs"]))
        grads = ", ".join(cname(c, f"grad{i}") if g is not None else "NULL"
                          for i, g in enumerate(c["grads"]))
        ip = ", ".join(str(v) for v in c["ip"]) or "0"
        fp = ", ".join("%.9g" % v for v in c["fp"]) or "0"
        ids = cname(c, "ids") if c["ids"] is not None else "NULL"
        nids = len(c["ids"]) if c["ids"] is not None else 0
        aux = cname(c, "aux") if c["aux"] is not None else "NULL"
        w(f"    {{\"{c['name']}\", \"{c['op']}\", {len(c['inputs'])},\n"
          f"     {{{ins}}},\n"
          f"     {{{grads}}},\n"
          f"     {arr(c_shape(c['out']), cname(c, 'out'))}, {cname(c, 'dout')},\n"
          f"     {{{ip}}}, {{{fp}}}, {ids}, {nids}, {aux}}},\n")
    w("};\n#define OREF_NCASES ((int)(sizeof oref_cases / sizeof oref_cases[0]))\n\n")
    w("#endif\n")
    text = "".join(lines)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return len(text)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "tests", "fixtures", "ops_ref.h")
    build_cases()
    n = emit(out_path)
    print(f"wrote {out_path}: {len(CASES)} cases, {n} bytes")


if __name__ == "__main__":
    main()
