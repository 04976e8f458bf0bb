#!/usr/bin/python3
"""Reference outputs of DPT (fanrena/DPT trainers/DPT.py) on the shipped
model, models/cliptune-small: tests/fixtures/methods/dpt_ref.safetensors (F32).

    /usr/bin/python3 tools/ref/gen_dpt_ref.py

Needs Debian's python3-torch, python3-numpy and python3-regex. Written from
the official code's math (not its code), float64, with the model, tokens,
pixels and the sin formula of gen_image_prompts_ref.py (3 images, labels
(0, 2, 1), classes shirt, ankle_boot, bag). The setting, small enough for
the 4-layer tower and exercising every branch:
  - CoOp text, 2 context vectors, "X X {name}." with positions 1..2 learned;
  - VPT-deep, 2 tokens in each of blocks 0 and 1 (BOTTOMLIMIT 3), appended
    after the patch tokens once ln_pre has run, dropped after the block;
  - CAVPT before blocks 2 and 3: top 2 of the 3 classes under zero-shot CLIP
    ("a photo of a {}."), queries meta(t) from the learned unnormalised text
    features of those classes, keys/values the detached block input plus 3
    learned tokens, q/k projected to 8 dims (the code: 32), scale 1/sqrt(8),
    values through Wv, LN1 -> classifier (auxiliary logits), LN2(o + q0) the
    appended tokens;
  - loss: guidance phase CE(zs img . learned text) + CE(prompted img . frozen
    text) + 0.1 CE(logits), later CE(logits); plus 0.3 x CE of the auxiliary
    logits over the (image, layer, k) rows whose class k is the label.
Learnables in the method's params() order are set to A sin(0.37 j + 1.3 k),
A 0.05; then the loss of each phase and its gradients, and three SGD steps
of the guidance-phase loss with two parameter groups (the CoOp context at lr
0.002, the rest at 0.01; momentum 0.9, weight decay 5e-4).
"""
import importlib.util
import math
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "methods", "dpt_ref.safetensors")

spec = importlib.util.spec_from_file_location("gipr", os.path.join(HERE, "gen_image_prompts_ref.py"))
ipr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ipr)
clipref = ipr.clipref
torch.set_default_dtype(torch.float64)

N_CTX, NV, N_CAV, TOP, NK, ADIM, ALPHA = 2, 2, 2, 2, 3, 8, 0.3


def main():
    P, c = ipr.load_model()
    tok = ipr.Tok(ipr.MODEL)
    S, Wv, Wt, L = c["image"], c["v_width"], c["t_width"], c["v_layers"]
    E = P["visual.proj"].shape[1]
    K, B = len(ipr.CLASSNAMES), ipr.B
    n_vpt = L - N_CAV
    px = ipr.pixels(S)
    y = torch.tensor(ipr.LABELS)
    scale = P["logit_scale"].exp()
    act = clipref.act_fn(c["act"])

    zs_text = ipr.fixed_text(P, c, ipr.text_ids(tok, c, "a photo of a {}."))
    zimg, _, _ = clipref.encode_image(P, c, px)
    zimg = zimg / zimg.norm(dim=-1, keepdim=True)
    _, order = torch.sort(scale * zimg @ zs_text.t(), descending=True)
    top = order[:, :TOP]
    print("top classes", top.tolist(), "labels", ipr.LABELS)
    xids = ipr.text_ids(tok, c, "X X {}.")

    shapes = [(N_CTX, Wt), (n_vpt * NV, Wv), (N_CAV * NK, Wv)]
    for _ in range(N_CAV):
        shapes += [(Wv, E), (Wv,), (ADIM, Wv), (ADIM, Wv), (Wv, Wv), (Wv,), (Wv,), (K, Wv),
                   (Wv,), (Wv,)]
    params = [ipr.formula(sh, k, 0.05) for k, sh in enumerate(shapes)]

    def forward(q):
        ctx, vpt, keys = q[0], q[1].reshape(n_vpt, NV, Wv), q[2].reshape(N_CAV, NK, Wv)
        emb = clipref.substitute_text_prompt(P["token_embedding.weight"][xids], ctx)
        raw, _ = clipref.encode_text_from_embeds(P, c, emb, xids.argmax(dim=1))
        txt = raw / raw.norm(dim=-1, keepdim=True)
        query = raw[top]                                               # (B, TOP, E)
        x = F.conv2d(px, P["visual.conv1.weight"], stride=c["patch"])
        x = x.reshape(B, Wv, -1).permute(0, 2, 1)
        x = torch.cat([P["visual.class_embedding"].reshape(1, 1, Wv).expand(B, 1, Wv), x], 1)
        x = x + P["visual.positional_embedding"]
        x = clipref.layer_norm(x, P["visual.ln_pre.weight"], P["visual.ln_pre.bias"])
        for i in range(n_vpt):                    # Transformer_VPTD, bottom blocks
            x = torch.cat([x, vpt[i].expand(B, NV, Wv)], 1)
            x = clipref.resblock(x, P, "visual.transformer.resblocks.%d." % i, c["v_heads"], act,
                                 False)
            x = x[:, :-NV]
        aux = []
        for i in range(N_CAV):                    # CAVPT before the top blocks
            mw, mb, qw, kw, vw, l1w, l1b, cw, l2w, l2b = q[3 + 10 * i: 13 + 10 * i]
            kv = torch.cat([x.detach(), keys[i].expand(B, NK, Wv)], 1)
            q0 = query @ mw.t() + mb
            u = (q0 @ qw.t()) @ (kv @ kw.t()).transpose(1, 2) / math.sqrt(ADIM)
            o = torch.softmax(u, dim=-1) @ kv @ vw.t()
            aux.append(F.layer_norm(o, (Wv,), l1w, l1b, 1e-5) @ cw.t())   # (B, TOP, K)
            p = F.layer_norm(o + q0, (Wv,), l2w, l2b, 1e-5)
            x = torch.cat([x, p], 1)
            x = clipref.resblock(x, P, "visual.transformer.resblocks.%d." % (n_vpt + i),
                                 c["v_heads"], act, False)
            x = x[:, :-TOP]
        img = clipref.layer_norm(x[:, 0], P["visual.ln_post.weight"],
                                 P["visual.ln_post.bias"]) @ P["visual.proj"]
        img = img / img.norm(dim=-1, keepdim=True)
        return dict(logits=scale * img @ txt.t(), logits1=scale * zimg @ txt.t(),
                    logits2=scale * img @ zs_text.t(), aux=aux)

    def loss_of(o, guide):
        if guide:
            loss = (F.cross_entropy(o["logits1"], y) + F.cross_entropy(o["logits2"], y) +
                    0.1 * F.cross_entropy(o["logits"], y))
        else:
            loss = F.cross_entropy(o["logits"], y)
        # forward_backward: rows (b, layer, k) whose class k is the label
        lg = torch.stack(o["aux"], 0).permute(1, 0, 2, 3).reshape(-1, K)
        sel = (y.reshape(-1, 1) == top).unsqueeze(1).expand(-1, N_CAV, -1).reshape(-1)
        lab = y.reshape(-1, 1, 1).expand(-1, N_CAV, TOP).reshape(-1)
        if sel.any():
            loss = loss + ALPHA * F.cross_entropy(lg[sel], F.one_hot(lab[sel], K).double())
        return loss

    out = {}
    o = forward(params)
    out["dpt.logits"] = o["logits"].detach()
    for phase, guide in (("guide", True), ("late", False)):
        loss = loss_of(forward(params), guide)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out["dpt.%s.loss" % phase] = loss.detach().reshape(1)
        for k, (g, p) in enumerate(zip(grads, params)):
            ipr.put(out, "dpt.%s.grad.%d" % (phase, k), torch.zeros_like(p) if g is None else g)
        print(phase, "loss", float(loss))
    opt = torch.optim.SGD([{"params": params[:1], "lr": 0.002}, {"params": params[1:]}], lr=0.01,
                          momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        opt.zero_grad()
        loss_of(forward(params), True).backward()
        opt.step()
    for k, p in enumerate(params):
        ipr.put(out, "dpt.after.%d" % k, p)
    print("logits", o["logits"].detach().numpy().round(4).tolist())
    clipref.st_write(OUT, {k: v.detach().float().contiguous() for k, v in out.items()})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
