#!/usr/bin/python3
"""Write tests/fixtures/lpp_ref.h: reference outputs of LP++ on fixed random
inputs.

    /usr/bin/python3 tools/ref/gen_lpp_ref.py [out.h]

Needs Debian's python3-torch (and numpy). Deterministic (seeded). Inputs are
rounded to float32 (what the C side holds); the references are computed in
float64 from those values.

LP++ is re-implemented here from the math of FereshteShakeri/
FewShot-CLIP-Strong-Baseline methods/linear_probe_p2.py and methods/utils.py
(not their code):
  - f = L2-normalised image features (N, E), T = text classifier (E, K) with
    unit columns;
  - classifier nn.Linear(E, K): weight = per-class SUM of f (compute_centroids
    is one_hot^T f, no division), bias given (nn.Linear leaves it random);
  - lr_w = 4 N / max eigenvalue of f^T f (scipy eigh there, numpy eigh here);
  - alpha0 = mean over classes k of 250 / shots * shots * mean_{i: y_i = k}
    (f_i . t_k), the same for every class;
  - lr_alpha = N / (4 max_k sum_i (f_i . t_k)^2);
  - logits = f W^T + b + alpha * (f T), CE over the whole set each epoch;
  - torch SGD(lr_w, momentum 0.9) on (W, b); alpha's grad is never zeroed,
    and every 10th epoch alpha -= lr_alpha * alpha.grad (the running sum).
The references: the init, logits/loss/gradients at it (with the given bias),
the state after 3 epochs and after 20 (two alpha steps).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

K, SHOTS, E, NB = 3, 4, 8, 5
N = K * SHOTS


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def arr(name, a, ctype="double", fmt="%.17g"):
    a = np.asarray(a).reshape(-1)
    body = ", ".join(fmt % v for v in a)
    return f"static const {ctype} {name}[{a.size}] = {{{body}}};\n"


def make_inputs(seed):
    g = np.random.default_rng(seed)
    common = g.normal(size=E) * 1.5          # CLIP features share a direction
    means = g.normal(size=(K, E))
    y = np.repeat(np.arange(K), SHOTS)
    g.shuffle(y)
    train = f32(common + means[y] + 0.8 * g.normal(size=(N, E)))
    t = means + 0.5 * g.normal(size=(K, E)) + 0.3 * common
    t = f32(t / np.linalg.norm(t, axis=1, keepdims=True))
    xb = f32(common + means[g.integers(0, K, NB)] + g.normal(size=(NB, E)))
    yb = g.integers(0, K, NB)
    b0 = f32(g.uniform(-1, 1, K) / np.sqrt(E))
    return dict(train=train, y=y, t=t, xb=xb, yb=yb, b0=b0)


def compute(d):
    feats = torch.tensor(d["train"])
    feats = feats / feats.norm(dim=-1, keepdim=True)
    labels = torch.tensor(d["y"])
    tw = torch.tensor(d["t"]).T                       # (E, K) as clip_classifier
    onehot = F.one_hot(labels, K).double()            # (N, K)
    centroids = onehot.T @ feats                      # sum per class
    lam = np.linalg.eigh((feats.T @ feats).numpy())[0].max()
    lr_w = 4 * N / lam
    ft = feats @ tw                                   # (N, K)
    alpha_tilde = ((onehot * ft) / onehot.sum(0, keepdim=True)).sum(0) * SHOTS
    alpha0 = float((250 / SHOTS * alpha_tilde).mean())
    lr_alpha = float(N / ((ft ** 2).sum(0).max() * 4))

    W = centroids.clone().requires_grad_(True)
    b = torch.tensor(d["b0"]).requires_grad_(True)
    alpha = (alpha0 * torch.ones(1, K)).requires_grad_(True)

    def logits_of(x):
        return x @ W.T + b + torch.ones(x.shape[0], 1) @ alpha * (x @ tw)

    xb = torch.tensor(d["xb"])
    xb = xb / xb.norm(dim=-1, keepdim=True)
    r = dict(lr_w=lr_w, lr_alpha=lr_alpha, alpha0=alpha0, W0=centroids.numpy().copy())
    r["logits_b"] = logits_of(xb).detach().numpy().copy()
    loss = F.cross_entropy(logits_of(feats), labels)
    loss.backward()
    r["loss"] = loss.item()
    r["dW"], r["db"] = W.grad.numpy().copy(), b.grad.numpy().copy()
    r["dalpha"] = alpha.grad.numpy().reshape(-1).copy()
    W.grad = None
    b.grad = None
    alpha.grad = None

    opt = torch.optim.SGD([W, b], lr_w, momentum=0.9)
    for epoch in range(20):
        lg = logits_of(feats)
        loss = F.cross_entropy(lg, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (epoch + 1) % 10 == 0:
            alpha.data -= lr_alpha * alpha.grad.data
        if epoch + 1 == 3:
            r["W3"], r["b3"] = W.detach().numpy().copy(), b.detach().numpy().copy()
            r["alpha3"] = alpha.detach().numpy().reshape(-1).copy()
            r["agrad3"] = alpha.grad.numpy().reshape(-1).copy()
    r["W20"], r["b20"] = W.detach().numpy().copy(), b.detach().numpy().copy()
    r["alpha20"] = alpha.detach().numpy().reshape(-1).copy()
    r["agrad20"] = alpha.grad.numpy().reshape(-1).copy()
    return r


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "fixtures", "lpp_ref.h")
    seed = 5
    d = make_inputs(seed)
    r = compute(d)
    print(f"lr_w {r['lr_w']:.5g} lr_alpha {r['lr_alpha']:.5g} alpha0 {r['alpha0']:.5g} "
          f"loss {r['loss']:.5g}; alpha after 20: {r['alpha20']}", file=sys.stderr)
    s = [f"/* Generated by tools/ref/gen_lpp_ref.py (torch {torch.__version__}, seed {seed})"
         " -- do not edit. */\n",
         "#ifndef CT_TEST_LPP_REF_H\n#define CT_TEST_LPP_REF_H\n\n",
         f"#define LREF_K {K}\n#define LREF_SHOTS {SHOTS}\n#define LREF_E {E}\n"
         f"#define LREF_N {N}\n#define LREF_NB {NB}\n\n",
         "/* inputs (float32 values): raw train features and labels, text classifier\n"
         " * (K, E) unit rows, a scoring batch, the bias init */\n",
         arr("lref_train", d["train"], "float", "%.9g"), arr("lref_y", d["y"], "int", "%d"),
         arr("lref_t", d["t"], "float", "%.9g"), arr("lref_xb", d["xb"], "float", "%.9g"),
         arr("lref_yb", d["yb"], "int", "%d"), arr("lref_b0", d["b0"], "float", "%.9g"),
         "\n/* the init and step sizes */\n",
         f"static const double lref_lr_w = {r['lr_w']!r}, lref_lr_alpha = "
         f"{r['lr_alpha']!r}, lref_alpha0 = {r['alpha0']!r};\n",
         arr("lref_W0", r["W0"]),
         "\n/* at the init: logits of the batch; loss and gradients over the train set */\n",
         arr("lref_logits_b", r["logits_b"]),
         f"static const double lref_loss = {r['loss']!r};\n",
         arr("lref_dW", r["dW"]), arr("lref_db", r["db"]), arr("lref_dalpha", r["dalpha"]),
         "\n/* after 3 and 20 full-batch epochs */\n",
         arr("lref_W3", r["W3"]), arr("lref_b3", r["b3"]), arr("lref_alpha3", r["alpha3"]),
         arr("lref_agrad3", r["agrad3"]), arr("lref_W20", r["W20"]), arr("lref_b20", r["b20"]),
         arr("lref_alpha20", r["alpha20"]), arr("lref_agrad20", r["agrad20"]),
         "\n#endif\n"]
    with open(path, "w") as fh:
        fh.write("".join(s))


if __name__ == "__main__":
    main()
