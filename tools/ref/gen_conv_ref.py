#!/usr/bin/python3
"""Write tests/fixtures/conv_ref.h: reference values for the convolution
family and PLOT's Sinkhorn, computed by PyTorch.

Run with the interpreter that has torch (Debian's python3-torch):
    /usr/bin/python3 tools/ref/gen_conv_ref.py [out.h]

What is computed (all in float64, so the values are the exact algorithm's):
  - F.conv2d, stride 2, padding 1, with bias;
  - CLIP's ViT patch embedding: conv1 (kernel = stride = p, no bias), then
    reshape to (B, width, grid*grid) and permute to (B, grid*grid, width),
    here on an image whose sides are not multiples of p (torch floors);
  - F.batch_norm in eval mode (running statistics, affine);
  - F.avg_pool2d (kernel 3 stride 2, and kernel 2 stride 2);
  - Sinkhorn as PLOT runs it (CHENGY12/PLOT, plot-coop/trainers/plot.py,
    CustomCLIP.forward / CustomCLIP.Sinkhorn): cost = 1 - sim,
    K = exp(-cost / eps), scalings start at ones, up to max_iter rounds of
    r = u / (K c); c = v / (K^T r), stopping once mean |r - r_prev| over the
    whole batch is below thresh; T = (r c^T) * K. Re-implemented below from
    that description.

Inputs come from closed-form formulas whose values are multiples of powers of
two (exact in float32), or are rounded to float32 before use, so the C float
test feeds its kernels exactly the numbers used here.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def f32(x):
    return float(np.float32(x))


def pattern(shape, mul, mod, off, scale):
    """Deterministic values ((i*mul) % mod - off) / scale, exact in float32."""
    n = int(np.prod(shape))
    v = [((i * mul) % mod - off) / scale for i in range(n)]
    return torch.tensor(v).reshape(shape)


def fmt(values):
    return "{" + ", ".join("%.9g" % v for v in values) + "}"


def flat(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def emit_array(o, name, t):
    vals = flat(t)
    o.append("static const double %s[%d] = %s;" % (name, len(vals), fmt(vals)))


# ---- convolution -------------------------------------------------------------

def conv_case(o):
    B, Cin, H, W, Cout, k, stride, pad = 2, 3, 5, 6, 4, 3, 2, 1
    x = pattern((B, Cin, H, W), 37, 23, 11, 8.0)
    w = pattern((Cout, Cin, k, k), 17, 13, 6, 16.0)
    b = torch.tensor([0.25, -0.5, 0.125, 0.75])
    y = F.conv2d(x, w, b, stride=stride, padding=pad)
    o.append("/* F.conv2d(x, w, b, stride=%d, padding=%d) */" % (stride, pad))
    for name, v in (("B", B), ("CIN", Cin), ("H", H), ("W", W), ("COUT", Cout), ("K", k),
                    ("STRIDE", stride), ("PAD", pad), ("HO", y.shape[2]), ("WO", y.shape[3])):
        o.append("#define CREF_CONV_%s %d" % (name, v))
    emit_array(o, "cref_conv_x", x)
    emit_array(o, "cref_conv_w", w)
    emit_array(o, "cref_conv_b", b)
    emit_array(o, "cref_conv_y", y)
    o.append("")


def patch_case(o):
    # A CLIP-like stem in miniature: width 5, patch 4, a 10x9 image (grid 2x2,
    # with 2 rows and 1 column past the last full patch that torch drops).
    B, Cin, H, W, D, p = 2, 3, 10, 9, 5, 4
    x = pattern((B, Cin, H, W), 29, 31, 15, 16.0)
    w = pattern((D, Cin, p, p), 11, 19, 9, 32.0)
    conv1 = torch.nn.Conv2d(Cin, D, kernel_size=p, stride=p, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(w)
        y = conv1(x)                          # (B, D, grid_h, grid_w)
        y = y.reshape(y.shape[0], y.shape[1], -1)  # (B, D, grid_h*grid_w)
        y = y.permute(0, 2, 1)                # (B, grid_h*grid_w, D)
    o.append("/* CLIP ViT stem: conv1 (kernel = stride = p, no bias), reshape, permute */")
    for name, v in (("B", B), ("CIN", Cin), ("H", H), ("W", W), ("D", D), ("P", p),
                    ("NP", y.shape[1])):
        o.append("#define CREF_PATCH_%s %d" % (name, v))
    emit_array(o, "cref_patch_x", x)
    emit_array(o, "cref_patch_w", w)
    emit_array(o, "cref_patch_y", y.contiguous())
    o.append("")


def bn_case(o):
    B, C, H, W = 2, 3, 2, 3
    eps = f32(1e-5)
    x = pattern((B, C, H, W), 7, 17, 8, 4.0)
    rm = torch.tensor([0.5, -0.25, 1.0])
    rv = torch.tensor([0.75, 2.0, 0.0625])
    gamma = torch.tensor([1.5, -0.5, 0.25])
    beta = torch.tensor([0.125, 0.0, -1.0])
    y = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
    o.append("/* F.batch_norm(x, running_mean, running_var, weight, bias, training=False, "
             "eps) */")
    for name, v in (("B", B), ("C", C), ("H", H), ("W", W)):
        o.append("#define CREF_BN_%s %d" % (name, v))
    o.append("#define CREF_BN_EPS %.9g" % eps)
    emit_array(o, "cref_bn_x", x)
    emit_array(o, "cref_bn_rm", rm)
    emit_array(o, "cref_bn_rv", rv)
    emit_array(o, "cref_bn_gamma", gamma)
    emit_array(o, "cref_bn_beta", beta)
    emit_array(o, "cref_bn_y", y)
    o.append("")


def pool_case(o):
    B, C, H, W = 1, 2, 5, 7
    x = pattern((B, C, H, W), 13, 29, 14, 8.0)
    o.append("/* F.avg_pool2d(x, k, s): no padding, floor mode */")
    for name, v in (("B", B), ("C", C), ("H", H), ("W", W)):
        o.append("#define CREF_POOL_%s %d" % (name, v))
    emit_array(o, "cref_pool_x", x)
    for k, s in ((3, 2), (2, 2)):
        y = F.avg_pool2d(x, k, s)
        o.append("#define CREF_POOL_K%dS%d_HO %d" % (k, s, y.shape[2]))
        o.append("#define CREF_POOL_K%dS%d_WO %d" % (k, s, y.shape[3]))
        emit_array(o, "cref_pool_k%ds%d" % (k, s), y)
    o.append("")


# ---- Sinkhorn (PLOT) ---------------------------------------------------------

def plot_sinkhorn(K, u, v, max_iter, thresh):
    """PLOT's loop on a batched kernel K (B, M, N) with marginals u (B, M),
    v (B, N). Returns the plan, the iterations run and every err value."""
    r = torch.ones_like(u)
    c = torch.ones_like(v)
    errs = []
    it = 0
    while it < max_iter:
        it += 1
        r_prev = r
        r = u / torch.bmm(K, c.unsqueeze(-1)).squeeze(-1)
        c = v / torch.bmm(K.transpose(1, 2), r.unsqueeze(-1)).squeeze(-1)
        err = (r - r_prev).abs().mean().item()
        errs.append(err)
        if err < thresh:
            break
    return (r.unsqueeze(-1) @ c.unsqueeze(-2)) * K, it, errs


def sinkhorn_case(o):
    B, M, N = 2, 6, 4
    eps, max_iter, thresh = f32(0.1), 100, f32(1e-2)
    # Cosine similarities in [-1, 1] from a formula, then PLOT's cost 1 - sim,
    # rounded to float32 (the C test's input).
    sim = [math.sin(0.37 * i + 0.2) * math.cos(0.11 * i) for i in range(B * M * N)]
    cost = torch.tensor([f32(1.0 - s) for s in sim]).reshape(B, M, N)
    K = torch.exp(-cost / eps)
    o.append("/* PLOT's Sinkhorn: K = exp(-cost / eps), cost = 1 - sim */")
    for name, v in (("B", B), ("M", M), ("N", N), ("ITERS", max_iter)):
        o.append("#define CREF_SK_%s %d" % (name, v))
    o.append("#define CREF_SK_EPS %.9g" % eps)
    o.append("#define CREF_SK_TOL %.9g" % thresh)
    emit_array(o, "cref_sk_cost", cost)
    # Uniform marginals (PLOT's 1/M, 1/N), and given non-uniform ones.
    a = torch.tensor([0.125, 0.25, 0.125, 0.1875, 0.1875, 0.125])
    b = torch.tensor([0.375, 0.125, 0.25, 0.25])
    emit_array(o, "cref_sk_a", a)
    emit_array(o, "cref_sk_b", b)
    for tag, (mu, mv) in (("uniform", (torch.full((M,), 1.0 / M), torch.full((N,), 1.0 / N))),
                          ("given", (a, b))):
        T, it, errs = plot_sinkhorn(K, mu.expand(B, M), mv.expand(B, N), max_iter, thresh)
        # The float C run must make the same stop decisions: no err may sit
        # within 5% of the threshold.
        for e in errs:
            if abs(e - thresh) < 0.05 * thresh:
                sys.exit("sinkhorn %s: err %.6g too close to thresh; pick another cost" % (tag, e))
        if it >= max_iter:
            sys.exit("sinkhorn %s: no early stop; pick another cost" % tag)
        o.append("#define CREF_SK_%s_ITERS %d /* errs: %s */" % (
            tag.upper(), it, ", ".join("%.3g" % e for e in errs)))
        emit_array(o, "cref_sk_%s_plan" % tag, T)
    o.append("")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
        "conv_ref.h")
    o = ["/* Generated by tools/ref/gen_conv_ref.py (torch %s) -- do not edit. */"
         % torch.__version__,
         "#ifndef CT_TEST_CONV_REF_H",
         "#define CT_TEST_CONV_REF_H",
         ""]
    conv_case(o)
    patch_case(o)
    bn_case(o)
    pool_case(o)
    sinkhorn_case(o)
    o.append("#endif")
    with open(out, "w") as f:
        f.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
