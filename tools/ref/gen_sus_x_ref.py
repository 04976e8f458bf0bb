#!/usr/bin/python3
"""Write tests/fixtures/sus_x_ref.h: reference outputs of SuS-X (the SuS-LC
retrieval on an unlabelled pool, then TIP-X) on fixed random inputs.

    /usr/bin/python3 tools/ref/gen_sus_x_ref.py [out.h]

Needs Debian's python3-torch. Deterministic (seeded). Inputs are rounded to
float32 (what the C side holds); references are computed in float64.

Re-implemented from the official vishaal27/SuS-X math (not its code):
  - SuS-LC (retrieve_urls_lc_sus.py: one text query per class, the top
    num_images images by CLIP similarity) on a pool of unlabelled features
    instead of LAION-5B: per class k the M pool rows of largest cosine to
    the class text feature W_k (highest first), labelled k; keys are the
    normalised rows (encode_sus_lc.py: mean over augment passes of the
    deterministic preprocess, normalised; stored (E, N), one-hot (N, C));
  - TIP-X (tipx.py): signatures softmax(f W^T / T), T = 0.5; KL(p_i || q_j)
    = sum p (log p - log q) for every query row (the official leaves the
    rows of a last partial batch of 100 at 0: not reproduced);
    scale_(kl, aff) = min-max of the whole KL matrix onto the range of the
    whole affinity matrix; logits = 100 f W^T + gamma (-scale_ @ L) +
    alpha exp(-(beta - beta aff)) @ L;
  - hparam_search: alpha outer over i (50 - 0.1) / 20 + 0.1, beta over
    i (50 - 1) / 200 + 1, gamma inner over i (30 - 0.1) / 50 + 0.1, the first
    strictly best val accuracy kept.
Logits of a test batch use val's KL and affinity ranges (cliptune's
documented choice: the official scales test KL by test's own min/max onto
val's affinity range); the val logits at the searched values are exactly
the official's.

The inputs are redrawn until the results are robust to float32 rounding:
no support choice within 1e-4 of the next pool image, and no val prediction
at a grid point whose count could change (top-2 margin below 1e-3) can
change which grid point wins.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

K, E, NP, M, NV, NT = 4, 16, 40, 3, 24, 10
TEMP = 0.5
GIVEN = (7.5, 3.25, 2.5)  # alpha, beta, gamma
MARGIN = 1e-3
ALPHAS = [i * (50 - 0.1) / 20 + 0.1 for i in range(20)]
BETAS = [i * (50 - 1) / 200 + 1 for i in range(200)]
GAMMAS = [i * (30 - 0.1) / 50 + 0.1 for i in range(50)]


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64))


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def retrieve(pool, w):
    """SuS-LC: per class the M most text-similar pool rows; returns keys
    (N, E), labels (N), the pool rows chosen, and the smallest gap at the
    top-M boundary."""
    sim = unit(pool) @ w.t()  # (NP, K)
    rows, gap = [], 1e9
    for k in range(K):
        order = torch.argsort(sim[:, k], descending=True)
        rows += order[:M].tolist()
        gap = min(gap, float(sim[order[M - 1], k] - sim[order[M], k]))
        gap = min(gap, float((sim[order[:M], k][:-1] - sim[order[:M], k][1:]).min()))
    keys = unit(pool[rows])
    labels = torch.arange(K).repeat_interleave(M)
    return keys, labels, rows, gap


def distributions(feats, w):
    return F.softmax(feats @ w.t() / TEMP, dim=-1)


def kl_sims(p_rows, q_rows):
    # kl[i, j] = sum_c p_ic (log p_ic - log q_jc), every row
    return (p_rows[:, None, :] * (p_rows[:, None, :].log() - q_rows[None, :, :].log())).sum(-1)


def scale_(x, target, xr=None, tr=None):
    xlo, xhi = (x.min(), x.max()) if xr is None else xr
    tlo, thi = (target.min(), target.max()) if tr is None else tr
    y = (x - xlo) / (xhi - xlo)
    return y * (thi - tlo) + tlo


def tipx_logits(f, keys, onehot, w, alpha, beta, gamma, kl_rng=None, aff_rng=None):
    aff = f @ keys.t()
    kl = kl_sims(distributions(f, w), distributions(keys, w))
    cache = (-1 * (beta - beta * aff)).exp() @ onehot
    kl_logits = -scale_(kl, aff, kl_rng, aff_rng) @ onehot
    return 100.0 * f @ w.t() + kl_logits * gamma + cache * alpha


def search(fv, yv, keys, onehot, w):
    aff = fv @ keys.t()
    kl = kl_sims(distributions(fv, w), distributions(keys, w))
    zs = 100.0 * fv @ w.t()
    kll = -scale_(kl, aff) @ onehot
    g = torch.tensor(GAMMAS)[:, None, None]
    hits, fragile = [], []
    for a in ALPHAS:
        for b in BETAS:
            cache = (-1 * (b - b * aff)).exp() @ onehot
            lg = zs[None] + kll[None] * g + cache[None] * a  # (G, NV, K)
            top2 = lg.topk(2, dim=-1).values
            hits += (lg.argmax(-1) == yv[None]).sum(-1).tolist()
            fragile += ((top2[..., 0] - top2[..., 1]) < MARGIN).sum(-1).tolist()
    best, bi = -1, -1
    for i, h in enumerate(hits):
        if h > best:
            best, bi = h, i
    robust = fragile[bi] == 0 and all(
        (hits[i] + fragile[i] < best) if i < bi else (hits[i] + fragile[i] <= best)
        for i in range(len(hits)) if i != bi)
    ng, nb = len(GAMMAS), len(BETAS)
    ai, bj, gk = bi // (nb * ng), bi // ng % nb, bi % ng
    robust = robust and bj > 0 and gk > 0 and best > hits[0]
    return ALPHAS[ai], BETAS[bj], GAMMAS[gk], best, robust


def make_inputs(seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (K, E))
    yp = rng.integers(0, K, NP)  # hidden: the pool is unlabelled
    pool = f32(centers[yp] * 0.9 + rng.normal(0, 1, (NP, E)))
    tzs = f32(centers * 0.3 + rng.normal(0, 0.6, (K, E)))
    yv = rng.integers(0, K, NV)
    fv = f32(centers[yv] * 0.8 + rng.normal(0, 1, (NV, E)))
    yt = rng.integers(0, K, NT)
    x = f32(centers[yt] * 0.8 + rng.normal(0, 1, (NT, E)))
    return dict(pool=pool, tzs=tzs, yv=yv, fv=fv, x=x)


def compute(d):
    w = unit(t64(d["tzs"]))
    keys, labels, rows, gap = retrieve(t64(d["pool"]), w)
    onehot = F.one_hot(labels, K).double()
    fv, yv = unit(t64(d["fv"])), torch.tensor(d["yv"])
    x = unit(t64(d["x"]))
    aff_v = fv @ keys.t()
    kl_v = kl_sims(distributions(fv, w), distributions(keys, w))
    kl_rng, aff_rng = (kl_v.min(), kl_v.max()), (aff_v.min(), aff_v.max())
    aff_s = keys @ keys.t()
    kl_s = kl_sims(distributions(keys, w), distributions(keys, w))
    a, b, g, hits, robust = search(fv, yv, keys, onehot, w)
    out = dict(keys=keys, labels=labels, rows=rows, kl_rng=[float(v) for v in kl_rng],
               aff_rng=[float(v) for v in aff_rng], kl_rng_s=[float(kl_s.min()), float(kl_s.max())],
               aff_rng_s=[float(aff_s.min()), float(aff_s.max())], alpha=a, beta=b, gamma=g,
               hits=hits, robust=robust and gap > 1e-4)
    out["val_logits"] = tipx_logits(fv, keys, onehot, w, a, b, g)
    out["test_logits"] = tipx_logits(x, keys, onehot, w, *GIVEN, kl_rng, aff_rng)
    return out


def arr(name, a, ctype="double", fmt="%.17g"):
    a = np.asarray(a).reshape(-1)
    body = ", ".join(fmt % v for v in a)
    return f"static const {ctype} {name}[{a.size}] = {{{body}}};\n"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "fixtures", "sus_x_ref.h")
    for seed in range(1, 200):
        d = make_inputs(seed)
        r = compute(d)
        if r["robust"]:
            break
    else:
        sys.exit("no robust seed found")
    print(f"seed {seed}: support rows {r['rows']}, search a={r['alpha']:.3f} b={r['beta']:.3f} "
          f"g={r['gamma']:.3f} hits {r['hits']}/{NV}", file=sys.stderr)
    s = [f"/* Generated by tools/ref/gen_sus_x_ref.py (torch {torch.__version__}, seed "
         f"{seed}) -- do not edit. */\n",
         "#ifndef CT_TEST_SUS_X_REF_H\n#define CT_TEST_SUS_X_REF_H\n\n",
         f"#define SREF_K {K}\n#define SREF_E {E}\n#define SREF_NP {NP}\n#define SREF_M {M}\n",
         f"#define SREF_NV {NV}\n#define SREF_NT {NT}\n\n",
         "/* inputs (float32 values): the pool (no labels), the zero-shot weights,\n"
         " * val with labels, a test batch */\n",
         arr("sref_pool", d["pool"], "float", "%.9g"), arr("sref_tzs", d["tzs"], "float", "%.9g"),
         arr("sref_val", d["fv"], "float", "%.9g"), arr("sref_yv", d["yv"], "int", "%d"),
         arr("sref_x", d["x"], "float", "%.9g"),
         "\n/* the support set: pool rows, keys, labels */\n",
         arr("sref_rows", r["rows"], "int", "%d"), arr("sref_keys", r["keys"]),
         arr("sref_labels", r["labels"], "int", "%d"),
         "\n/* scale_'s ranges (min, max): val's, and the support's against itself */\n",
         arr("sref_kl_range", r["kl_rng"]), arr("sref_aff_range", r["aff_rng"]),
         arr("sref_kl_range_s", r["kl_rng_s"]), arr("sref_aff_range_s", r["aff_rng_s"]),
         "\n/* the search on val, val logits there; test logits at GIVEN */\n",
         f"static const double sref_alpha = {r['alpha']!r}, sref_beta = {r['beta']!r}, "
         f"sref_gamma = {r['gamma']!r};\nstatic const int sref_hits = {r['hits']};\n",
         arr("sref_val_logits", r["val_logits"]),
         f"static const float sref_given[3] = {{{GIVEN[0]!r}f, {GIVEN[1]!r}f, {GIVEN[2]!r}f}};\n",
         arr("sref_test_logits", r["test_logits"]),
         "\n#endif\n"]
    with open(path, "w") as fh:
        fh.write("".join(s))


if __name__ == "__main__":
    main()
