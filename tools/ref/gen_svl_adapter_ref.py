#!/usr/bin/python3
"""Write tests/fixtures/svl_adapter_ref.h: reference outputs of SVL-Adapter's
pieces on a tiny encoder and fixed random inputs.

    /usr/bin/python3 tools/ref/gen_svl_adapter_ref.py [out.h]

Needs Debian's python3-torch. Deterministic (seeded). Inputs are rounded to
float32 (what the C side holds); references are computed in float64.

Re-implemented from the official omipan/svl_adapter math (not its code):
  - utils.py nt_xent: x = normalize(cat(x1, x2)); s = x x^T / T - 1e5 I;
    targets i + B for the first half, i - B for the second; CE mean;
  - ssl_pretraining.py: EmbModel = encoder then projector Linear ReLU
    Linear; SGD(momentum, weight_decay) with CosineAnnealingLR over the
    steps (lr_t = base (1 + cos(pi t / T)) / 2), three steps on fixed views
    (the encoder here: Linear ReLU Linear ReLU, cliptune's small one);
  - low_shot_adapt.py: AdapterMLP Linear ReLU Linear on the encoder's
    features, CrossEntropyLoss, Adam at torch's defaults (three steps);
    fusion alpha * adapter + (1 - alpha) * scale cos(f, W); tune_alpha over
    al / 20, al = 0..20, the first strictly best accuracy; confidence_alpha
    1 - mean max softmax(scale cos(f, W)).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

IN, H, FD, PH, PD, B = 12, 6, 5, 7, 4, 3
K, HID, N, E, NV, NC = 4, 8, 5, 6, 12, 7
TEMP, LR, MOM, WD, STEPS = 0.5, 0.3, 0.9, 0.05, 3
ALPHA, SCALE, CSCALE = 0.35, 100.0, 10.0


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def nt_xent(x1, x2, temp):
    x = F.normalize(torch.cat((x1, x2), 0), dim=1)
    s = x @ x.t() / temp
    s = s - torch.eye(s.size(0)) * 1e5
    t = torch.arange(s.size(0))
    t[: s.size(0) // 2] += s.size(0) // 2
    t[s.size(0) // 2:] -= s.size(0) // 2
    return F.cross_entropy(s, t)


def mlp2(x, p, last_relu):
    h = F.linear(F.relu(F.linear(x, p[0], p[1])), p[2], p[3])
    return F.relu(h) if last_relu else h


def arr(name, a, ctype="double", fmt="%.17g"):
    a = np.asarray(a).reshape(-1)
    body = ", ".join(fmt % v for v in a)
    return f"static const {ctype} {name}[{a.size}] = {{{body}}};\n"


def farr(name, a):
    return arr(name, np.asarray(a, dtype=np.float32), "float", "%.9g")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "fixtures", "svl_adapter_ref.h")
    rng = np.random.default_rng(7)
    shapes = [(H, IN), (H,), (FD, H), (FD,), (PH, FD), (PH,), (PD, PH), (PD,)]
    ssl0 = [f32(rng.normal(0, 0.5, s)) for s in shapes]
    px = f32(rng.normal(0, 1, (2 * B, IN)))
    p = [torch.tensor(a, requires_grad=True) for a in ssl0]
    opt = torch.optim.SGD(p, lr=LR, momentum=MOM, weight_decay=WD)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    losses, grads0, lrs = [], None, []
    for t in range(STEPS):
        opt.zero_grad()
        emb = mlp2(mlp2(torch.tensor(px), p[:4], True), p[4:], False)
        loss = nt_xent(emb[:B], emb[B:], TEMP)
        loss.backward()
        losses.append(loss.item())
        lrs.append(opt.param_groups[0]["lr"])
        if t == 0:
            grads0 = [q.grad.detach().numpy().copy() for q in p]
        opt.step()
        sched.step()
    ssl3 = [q.detach().numpy() for q in p]

    # the adapter on the initial encoder
    mshapes = [(HID, FD), (HID,), (K, HID), (K,)]
    mlp0 = [f32(rng.normal(0, 0.5, s)) for s in mshapes]
    xb = f32(rng.normal(0, 1, (N, IN)))
    yb = rng.integers(0, K, N)
    fb = f32(rng.normal(0, 1, (N, E)))
    zs = rng.normal(0, 1, (K, E))
    zs = f32(zs / np.linalg.norm(zs, axis=1, keepdims=True))
    enc = [torch.tensor(a) for a in ssl0[:4]]
    m = [torch.tensor(a, requires_grad=True) for a in mlp0]
    adam = torch.optim.Adam(m)
    feats = mlp2(torch.tensor(xb), enc, True)
    alosses, agrads = [], None
    for t in range(STEPS):
        adam.zero_grad()
        lg = mlp2(feats, m, False)
        loss = F.cross_entropy(lg, torch.tensor(yb))
        loss.backward()
        alosses.append(loss.item())
        if t == 0:
            agrads = [q.grad.detach().numpy().copy() for q in m]
            logits0 = lg.detach()
        adam.step()
    mlp3 = [q.detach().numpy() for q in m]
    clip = SCALE * F.normalize(torch.tensor(fb), dim=1) @ torch.tensor(zs).t()
    fused = (ALPHA * logits0 + (1 - ALPHA) * clip).numpy()

    # tune_alpha and confidence_alpha, redrawn until robust to rounding
    while True:
        A = f32(rng.normal(0, 2, (NV, K)))
        Z = f32(rng.normal(0, 2, (NV, K)))
        yv = rng.integers(0, K, NV)
        ok, best, best_acc = True, 0, -1.0
        for a in range(21):
            al = a / 20
            mix = al * A + (1 - al) * Z
            srt = np.sort(mix, axis=1)
            if np.min(srt[:, -1] - srt[:, -2]) < 1e-3:
                ok = False
            acc = float(np.mean(mix.argmax(1) == yv))
            if acc > best_acc:
                best_acc, best = acc, a
        if ok:
            break
    xc = f32(rng.normal(0, 1, (NC, E)))
    pc = (CSCALE * F.normalize(torch.tensor(xc), dim=1) @ torch.tensor(zs).t()).softmax(-1)
    conf_alpha = 1 - pc.max(-1).values.mean().item()

    out = [f"/* Generated by tools/ref/gen_svl_adapter_ref.py (torch {torch.__version__}) "
           "-- do not edit. */\n#ifndef CT_TEST_SVL_ADAPTER_REF_H\n#define CT_TEST_SVL_ADAPTER_REF_H\n\n"]
    for k, v in dict(IN=IN, H=H, FD=FD, PH=PH, PD=PD, B=B, K=K, HID=HID, N=N, E=E, NV=NV,
                     NC=NC, STEPS=STEPS).items():
        out.append(f"#define VREF_{k} {v}\n")
    for k, v in dict(TEMP=TEMP, LR=LR, MOM=MOM, WD=WD, ALPHA=ALPHA, SCALE=SCALE,
                     CSCALE=CSCALE).items():
        out.append(f"#define VREF_{k} {v}\n")
    out.append("\n/* SimCLR: encoder + projector (fc1 w, b, fc2 w, b each), views */\n")
    for i, a in enumerate(ssl0):
        out.append(farr(f"vref_ssl0_{i}", a))
    out.append(farr("vref_px", px))
    out.append(arr("vref_losses", losses))
    out.append(arr("vref_lrs", lrs))
    for i, a in enumerate(grads0):
        out.append(arr(f"vref_grad0_{i}", a))
    for i, a in enumerate(ssl3):
        out.append(arr(f"vref_ssl3_{i}", a))
    out.append("\n/* the adapter on the initial encoder, the fusion */\n")
    for i, a in enumerate(mlp0):
        out.append(farr(f"vref_mlp0_{i}", a))
    out.append(farr("vref_xb", xb))
    out.append(arr("vref_yb", yb, "int", "%d"))
    out.append(farr("vref_fb", fb))
    out.append(farr("vref_zs", zs))
    out.append(arr("vref_alosses", alosses))
    for i, a in enumerate(agrads):
        out.append(arr(f"vref_agrad0_{i}", a))
    for i, a in enumerate(mlp3):
        out.append(arr(f"vref_mlp3_{i}", a))
    out.append(arr("vref_logits0", logits0.numpy()))
    out.append(arr("vref_fused", fused))
    out.append("\n/* tune_alpha, confidence_alpha */\n")
    out.append(farr("vref_A", A))
    out.append(farr("vref_Z", Z))
    out.append(arr("vref_yv", yv, "int", "%d"))
    out.append(f"#define VREF_BEST {best}\n#define VREF_BEST_ACC {best_acc!r}\n")
    out.append(farr("vref_xc", xc))
    out.append(f"#define VREF_CONF_ALPHA {conf_alpha!r}\n")
    out.append("\n#endif\n")
    with open(path, "w") as fh:
        fh.write("".join(out))


if __name__ == "__main__":
    main()
