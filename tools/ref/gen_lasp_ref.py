#!/usr/bin/python3
"""LASP's reference outputs on the tiny method fixture
(tests/fixtures/methods/lasp_ref.h), for tests/test_lasp.c.

    /usr/bin/python3 tools/ref/gen_lasp_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

(simple_tokenizer.py as in gen_coop_ref.py.) Reads the model written by
gen_coop_ref.py (it is not rewritten); everything in float64.

Re-implemented from the math and the behaviour of LASP's trainer
(trainers/lasp.py and losses.py as redistributed by xytian1008/ArGue and
RTSAK8/FruitCLIP; the official AdrianBulat/LASP is not stored), not its code:
  - learned class embeddings t_j: CoOp's prompt "a photo of a {name}." with
    the 4 words replaced by learned vectors (ctx_init "a photo of a"),
    through the frozen text tower, plus (bias case) a learned vector b
    before normalisation;
  - template features h_{l,j}: the frozen tower on template_l(name_j) for the
    35 templates of the LASP configs, normalised (noise off: tt_noise=0);
  - L_tt written as lasp.py lays it out: logits (L, K, K) =
    exp(logit_scale) * t[None] @ h.transpose(1, 2), torch's cross_entropy
    over dim 1 against target j at position (l, j);
  - loss = CE(exp(logit_scale) normalize(img) t^T, y) + 5 L_tt;
  - virtual classes: names appended after the task's, those already present
    (after "_" -> " ") dropped; both losses run over all of them.
Two cases: the defaults (no bias, no virtual classes), and bias=1 with
virtual="zebra;red_panda;cat" and a nonzero bias. The context is "a photo
of a" plus seeded noise. For each: logits over the task's classes, the two
terms, the loss, the gradients, and three SGD steps (lr 0.032, momentum 0.9,
weight decay 5e-4: LASP's optimiser through Dassl).
"""
import importlib.util
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cr = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = cr.clipref
torch.set_default_dtype(torch.float64)

# LASP_PROMPTS of configs/trainers/LASP/*.yaml
TEMPLATES = [
    "a photo of a {}, a type of flower.", "a photo of a person doing {}.",
    "a centered satellite photo of {}.", "a photo of a {}, a type of aircraft.",
    "{} texture.", "itap of a {}.", "a bad photo of the {}.", "a origami {}.",
    "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
    "a photo of the small {}.", "a photo of a {}.", "a photo of many {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.",
    "a rendering of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a pixelated photo of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a close-up photo of the {}.", "a low resolution photo of a {}.",
    "a rendition of the {}.", "a photo of the clean {}.", "a photo of a large {}.",
    "a blurry photo of a {}.", "a pixelated photo of a {}.", "itap of the {}.",
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
]
W_TT = 5.0
WORDS = "a photo of a"
VIRTUAL = "zebra;red_panda;cat"
LR = 0.032


def read_model():
    d = os.path.join(cr.OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


def class_list(virtual):
    names = [c.replace("_", " ") for c in cr.CLASSNAMES]
    for v in virtual.split(";") if virtual else []:
        v = v.replace("_", " ")
        if v and v not in names:
            names.append(v)
    return names


def encode(P, ids, emb):
    txt, _ = clipref.encode_text_from_embeds(P, cr.TINY, emb, ids.argmax(dim=-1))
    return txt


def template_features(P, tok, names):
    hs = []
    for t in TEMPLATES:
        ids = torch.tensor([tok.row(t.format(n)) for n in names])
        h = encode(P, ids, P["token_embedding.weight"][ids])
        hs.append(h / h.norm(dim=-1, keepdim=True))
    return torch.stack(hs)  # (L, Ka, E)


class Learner:
    def __init__(self, P, tok, names):
        self.P = P
        n = len(WORDS.split(" "))
        self.n = n
        self.ids = torch.tensor([tok.row(WORDS + " " + c + ".") for c in names])
        self.emb = P["token_embedding.weight"][self.ids]
        self.init = P["token_embedding.weight"][torch.tensor(tok.row(WORDS))][1:1 + n].clone()

    def embeddings(self, ctx, bias):
        K = self.emb.shape[0]
        x = torch.cat([self.emb[:, :1], ctx.unsqueeze(0).expand(K, -1, -1),
                       self.emb[:, 1 + self.n:]], dim=1)
        t = encode(self.P, self.ids, x)
        if bias is not None:
            t = t + bias
        return t / t.norm(dim=-1, keepdim=True)


def lasp_terms(P, lr, H, ctx, bias, img, labels, K):
    t = lr.embeddings(ctx, bias)                            # (Ka, E)
    scale = P["logit_scale"].exp()
    f = img / img.norm(dim=-1, keepdim=True)
    z = scale * f @ t.t()                                   # (B, Ka)
    ce = F.cross_entropy(z, labels)
    L, Ka = H.shape[0], H.shape[1]
    zt = scale * t.unsqueeze(0) @ H.transpose(1, 2)          # (L, Ka learned, Ka templates)
    target = torch.arange(Ka).unsqueeze(0).expand(L, -1)
    tt = F.cross_entropy(zt, target)
    return z[:, :K], ce, tt, ce + W_TT * tt


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = read_model()
    tok = cr.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(23)
    E, K = cr.TINY["embed"], len(cr.CLASSNAMES)
    img = torch.randn(cr.B, E, generator=g, dtype=torch.float32).double()
    labels = torch.randint(0, K, (cr.B,), generator=g)

    def noise(shape, std):
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * std).double()

    out = ["/* Generated by tools/ref/gen_lasp_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_LASP_REF_H", "#define CT_TEST_LASP_REF_H", "",
           "/* the task: gen_coop_ref.py's 5 class names; %d templates */" % len(TEMPLATES),
           "#define LREF_B %d" % cr.B, "#define LREF_E %d" % E, "#define LREF_L %d" % len(TEMPLATES),
           cr.carray("lref_img", img, "float"),
           "static const int lref_labels[LREF_B] = {%s};" % ", ".join(str(int(x)) for x in labels),
           ""]

    base = Learner(P, tok, class_list(""))
    ctx0 = (base.init + noise(base.init.shape, 0.05)).float().double()
    bias0 = noise((E,), 0.1).float().double()
    out.append(cr.carray("lref_init", base.init))
    out.append(cr.carray("lref_ctx", ctx0))
    out.append(cr.carray("lref_bias", bias0))
    out.append("")
    cases = [("core", "", False), ("bv", VIRTUAL, True)]
    for name, virtual, use_bias in cases:
        names = class_list(virtual)
        lr = Learner(P, tok, names)
        H = template_features(P, tok, names)
        ctx = ctx0.clone().requires_grad_(True)
        bias = bias0.clone().requires_grad_(True) if use_bias else None
        z, ce, tt, loss = lasp_terms(P, lr, H, ctx, bias, img, labels, K)
        loss.backward()
        pre = "lref_" + name
        hp = "tt_noise=0" + (" bias=1 virtual=%s" % virtual if use_bias else "")
        out.append("/* %s: %d classes (%s) */" % (name, len(names), ", ".join(names)))
        out.append("static const char %s_hp[] = \"%s\";" % (pre, hp))
        out.append("#define %s_KA %d" % (pre.upper(), len(names)))
        out.append(cr.carray(pre + "_logits", z))
        out.append("static const double %s_ce = %.17g;" % (pre, ce.item()))
        out.append("static const double %s_tt = %.17g;" % (pre, tt.item()))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(cr.carray(pre + "_grad_ctx", ctx.grad))
        if use_bias:
            out.append(cr.carray(pre + "_grad_bias", bias.grad))
        print("%s: ce %.6f tt %.6f loss %.6f |grad ctx| max %.3g" % (
            name, ce.item(), tt.item(), loss.item(), ctx.grad.abs().max()))

        ctx = ctx0.clone().requires_grad_(True)
        bias = bias0.clone().requires_grad_(True) if use_bias else None
        params = [ctx] + ([bias] if use_bias else [])
        opt = torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=5e-4)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = lasp_terms(P, lr, H, ctx, bias, img, labels, K)[3]
            loss.backward()
            losses.append(loss.item())
            opt.step()
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, cr.fmt(losses)))
        out.append(cr.carray(pre + "_sgd_ctx", ctx))
        if use_bias:
            out.append(cr.carray(pre + "_sgd_bias", bias))
        out.append("")
        print("  sgd losses", losses)
    out += ["#endif"]
    path = os.path.join(cr.OUT_DIR, "lasp_ref.h")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
