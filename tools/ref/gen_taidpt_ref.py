#!/usr/bin/python3
"""TaI-DPT's reference outputs (tests/fixtures/methods/taidpt_ref.h) on the
shared tiny CLIP written by gen_coop_ref.py (read back, not rewritten).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git --git-dir=$M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_taidpt_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

TaI-DPT (Guo et al., CVPR 2023) re-implemented from the math of the official
guozix/TaI-DPT trainers/Caption_distill_double.py (PromptLearner,
TextEncoder with if_sequence, DenseCLIP.forward for captions and images),
trainers/utils.py (ranking_loss) and datasets/coco2014_distill.py (the
word-based caption labels), not from cliptune:
  - caption labels: lower-cased words, each lemmatised by the plural rules
    cliptune documents in place of NLTK's lemmatiser, then multi-word names
    found as " name " (and blanked), then single names and multi-word names
    with their spaces removed; captions that name no class are dropped;
  - caption features: clip.tokenize rows (77 positions) through the text
    tower, ln_final and the text projection at EVERY position
    (if_sequence=True); global = the EOT row, locals = all 77 rows, the
    padding (token id 0) masked by adding -10000 to its similarities;
  - two generic contexts (ctx global, ctx_double local) in "X ... X
    {name}." prompts, pooled at argmax(ids), normalised;
  - global = 4 g.t, local = sum_l softmax_l(s sim) 4 sim with s = 50 over a
    caption's positions and 40 over an image's patch tokens (token 0, the
    class token, left out unless cls_token=1); scores = merge global +
    (1 - merge) local, merge 0.5 (GL_merge_rate);
  - loss = ranking_loss(global) + ranking_loss(local), scale 1, margin 1.
Three SGD steps (momentum 0.9, weight decay 5e-4: Dassl's build_optimizer
over the prompt learner) on the caption batch. Float64 throughout; inputs
rounded to float32. The C test writes CAPTIONS and SYNONYMS to files and
runs the method's fit on them, so the labels and the caption features are
checked too.
"""
import importlib.util
import json
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "methods")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


coopref = load_module("gen_coop_ref", os.path.join(HERE, "gen_coop_ref.py"))
clipref = coopref.clipref
torch.set_default_dtype(torch.float64)
TINY = coopref.TINY
BI, M = 5, 6  # images, patch tokens per image (plus the class token)
SGD_LR = 1e-3
CAPTIONS = [
    "Two golden retrievers playing with a cat.",
    "A kitten sleeping on a T-shirt.",
    "A red car parked on the street.",           # no class: dropped
    "Sea lions resting under a crane.",
    "Cranes flying over the water.",
    "A retriever wearing a tee, next to a sea lion and a kitten.",
    "A photo of a sea-lion.",                     # one word: not "sea lion"
    "The goldenretriever and the sealion.",       # squeezed multi-word names
]
SYNONYMS = [["golden retriever", "retriever"], ["t-shirt", "tee"], ["sea lion"],
            ["cat", "kitten"], ["crane"]]
CASES = [  # name, hp (cliptune's keys)
    ("base", dict(n_ctx=4)),
    ("other", dict(n_ctx=3, cls_token=1, merge=0.3, margin=0.5, spatial_text=20,
                   spatial_image=10, logit_scale=6)),
]
DEFAULTS = dict(cls_token=0, merge=0.5, margin=1, spatial_text=50, spatial_image=40,
                logit_scale=4)


def load_tiny():
    d = os.path.join(OUT_DIR, "tiny")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    back = clipref.st_read(os.path.join(d, "model.safetensors"))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


# ---- the word-based labels -------------------------------------------------

def lemma(w):
    n = len(w)
    if n >= 5 and w.endswith("ies"):
        return w[:-3] + "y"
    if n >= 5 and (w.endswith("sses") or w.endswith("xes") or w.endswith("ches")
                   or w.endswith("shes") or w.endswith("zes")):
        return w[:-2]
    if n >= 4 and w.endswith("s") and not (w.endswith("ss") or w.endswith("us")
                                           or w.endswith("is")):
        return w[:-1]
    return w


def words(text):
    return [lemma(w) for w in re.findall(r"[a-z0-9\-\x80-\uffff]+", text.lower())]


def label(caption, synonyms):
    cap = " " + " ".join(words(caption)) + " "
    names = [(" ".join(words(n)), k) for k, syn in enumerate(synonyms) for n in syn]
    L = [0] * len(synonyms)
    for name, k in names:                       # nameset_compound
        if " " in name and (" " + name + " ") in cap:
            L[k] = 1
            cap = cap.replace(" " + name + " ", " ")
    for name, k in names:                       # nameset (compounds squeezed)
        m = name.replace(" ", "")
        if (" " + m + " ") in cap:
            L[k] = 1
            cap = cap.replace(" " + m + " ", " ")
    return L if any(L) else None


# ---- the model -------------------------------------------------------------

def caption_features(P, ids):
    """(B, 77) ids -> global (B, E) and per-position (B, 77, E) features."""
    E = P["token_embedding.weight"][ids]
    eot = ids.argmax(dim=-1)
    _, tokens = clipref.encode_text_from_embeds(P, TINY, E, eot)
    seq = clipref.layer_norm(tokens, P["ln_final.weight"], P["ln_final.bias"]) \
        @ P["text_projection"]
    return seq[torch.arange(ids.shape[0]), eot], seq


def ranking_loss(y_pred, y_true, scale_=1.0, margin_=1):
    y_pred = y_pred * scale_
    y_true_ = y_true.double()
    tmp = margin_ - y_pred[:, None, :] + y_pred[:, :, None]
    partial_losses = torch.maximum(torch.zeros_like(tmp), tmp)
    loss = partial_losses * y_true_[:, None, :] * (1 - y_true_[:, :, None])
    return torch.mean(torch.sum(torch.sum(loss, dim=-1), dim=-1))


def prompt_features(P, pr_g, pr_l, ctx, ctx_d):
    tg, _ = clipref.encode_text_from_embeds(P, TINY, pr_g.assemble(ctx), pr_g.eot)
    tl, _ = clipref.encode_text_from_embeds(P, TINY, pr_l.assemble(ctx_d), pr_l.eot)
    return tg / tg.norm(dim=-1, keepdim=True), tl / tl.norm(dim=-1, keepdim=True)


def text_forward(P, pr_g, pr_l, ctx, ctx_d, cap_ids, g_feat, seq, y, hp):
    tg, tl = prompt_features(P, pr_g, pr_l, ctx, ctx_d)
    gf = g_feat / g_feat.norm(dim=-1, keepdim=True)
    lf = seq.permute(1, 0, 2)                               # LBD
    lf = lf / lf.norm(dim=-1, keepdim=True)
    text_mask = (cap_ids == 0).long() * (-10000)            # BL
    s = hp["logit_scale"]
    logits_ = s * gf @ tg.t()
    logits_neg = lf @ tl.t()                                # L B K
    logits_neg = logits_neg.permute(2, 1, 0) + text_mask[None, :, :]
    logits_neg = logits_neg.permute(2, 1, 0)
    prob = torch.softmax(logits_neg * hp["spatial_text"], dim=0)
    logits_local = torch.sum(s * logits_neg * prob, dim=0)
    return ranking_loss(logits_, y, 1.0, hp["margin"]) + \
        ranking_loss(logits_local, y, 1.0, hp["margin"])


def image_forward(P, pr_g, pr_l, ctx, ctx_d, img_x, img_dense, hp):
    tg, tl = prompt_features(P, pr_g, pr_l, ctx, ctx_d)
    t0 = 0 if hp["cls_token"] else 1
    lf = img_dense[:, t0:].permute(1, 0, 2)                 # HW B D
    lf = lf / lf.norm(dim=-1, keepdim=True)
    gf = img_x / img_x.norm(dim=-1, keepdim=True)
    s = hp["logit_scale"]
    glob = s * gf @ tg.t()
    logits_neg = lf @ tl.t()
    prob = torch.softmax(logits_neg * hp["spatial_image"], dim=0)
    local = torch.sum(s * logits_neg * prob, dim=0)
    return glob, local, hp["merge"] * glob + (1 - hp["merge"]) * local


def carray9(name, t, ctype="double"):
    """carray with 9 significant digits: inputs and features compared at 1e-4."""
    flat = t.detach().reshape(-1).tolist()
    lines = ["    " + ", ".join("%.9g" % float(v) for v in flat[i:i + 8]) + ","
             for i in range(0, len(flat), 8)]
    return "static const %s %s[%d] = {\n%s\n};" % (ctype, name, len(flat), "\n".join(lines))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    P = load_tiny()
    tok = coopref.Tokenizer(sys.argv[1], sys.argv[2])
    g = torch.Generator().manual_seed(53)
    Ed, W = TINY["embed"], TINY["t_width"]
    K = len(coopref.CLASSNAMES)
    assert K == len(SYNONYMS)
    kept, targets = [], []
    for c in CAPTIONS:
        L = label(c, SYNONYMS)
        if L is not None:
            kept.append(c)
            targets.append(L)
    y = torch.tensor(targets)
    ids = torch.tensor([tok.row(c) for c in kept])
    B = len(kept)
    eot = ids.argmax(dim=-1)
    T = int(eot.max()) + 1
    gfeat, seq = caption_features(P, ids)
    # what a caption batch holds: the first T positions, zero past each EOT
    dense = seq[:, :T].clone()
    for b in range(B):
        dense[b, int(eot[b]) + 1:] = 0
    img_dense = torch.randn(BI, 1 + M, Ed, generator=g, dtype=torch.float32).double()
    img_x = torch.randn(BI, Ed, generator=g, dtype=torch.float32).double()
    fmt, carray = coopref.fmt, coopref.carray
    out = ["/* Generated by tools/ref/gen_taidpt_ref.py (torch %s) -- do not edit. */"
           % torch.__version__, "#ifndef CT_TEST_TAIDPT_REF_H", "#define CT_TEST_TAIDPT_REF_H",
           "", "#include <stdint.h>", "",
           "/* Model: tests/fixtures/methods/tiny; classes as coop_ref.h (CREF_*). */",
           "static const char *const tref_captions[] = {%s};"
           % ", ".join(json.dumps(c) for c in CAPTIONS),
           "#define TREF_N_CAPTIONS %d" % len(CAPTIONS),
           "/* one line per class, suppl/synonyms_*.txt's form */",
           "static const char tref_synonyms[] = %s;"
           % json.dumps("".join("{%s}\n" % ",".join("'%s'" % n for n in s) for s in SYNONYMS)),
           "#define TREF_B %d  /* the captions that name a class */" % B,
           "#define TREF_T %d  /* positions up to the longest EOT */" % T,
           "static const int8_t tref_targets[TREF_B * CREF_K] = {%s};"
           % ", ".join(str(int(v)) for v in y.reshape(-1)),
           "/* caption features: global (B, E) and per position (B, T, E), zero past EOT */",
           carray9("tref_cap_x", gfeat), carray9("tref_cap_dense", dense),
           "#define TREF_BI %d" % BI, "#define TREF_TI %d  /* class token + patches */" % (1 + M),
           carray9("tref_img_x", img_x, "float"), carray9("tref_img_dense", img_dense, "float"),
           ""]
    # the C batch reads float32 caption features: the reference uses them too
    # (positions past EOT are masked: the batch's zero rows there and these
    # pad-token features give the same scores)
    gfeat32, seq32 = gfeat.float().double(), seq.float().double()
    for name, hp_case in CASES:
        hp = dict(DEFAULTS, **hp_case)
        n = hp["n_ctx"]
        pr_g = coopref.Prompts(tok, P, n, "", False, "end")
        pr_l = coopref.Prompts(tok, P, n, "", False, "end")
        c0 = (torch.randn(n, W, generator=g, dtype=torch.float32) * 0.02).double()
        d0 = (torch.randn(n, W, generator=g, dtype=torch.float32) * 0.02).double()
        ctx, ctx_d = c0.clone().requires_grad_(True), d0.clone().requires_grad_(True)
        loss = text_forward(P, pr_g, pr_l, ctx, ctx_d, ids, gfeat32, seq32, y, hp)
        loss.backward()
        with torch.no_grad():
            glob, local, fused = image_forward(P, pr_g, pr_l, c0, d0, img_x, img_dense, hp)
        pre = "tref_" + name
        hp_text = " ".join("%s=%s" % (k, v) for k, v in hp_case.items())
        out.append("/* %s: %s */" % (name, hp_text))
        out.append('static const char %s_hp[] = "%s";' % (pre, hp_text))
        out.append(carray(pre + "_ctx", c0))
        out.append(carray(pre + "_ctx_double", d0))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad", ctx.grad))
        out.append(carray(pre + "_grad_double", ctx_d.grad))
        out.append(carray(pre + "_global", glob))
        out.append(carray(pre + "_local", local))
        out.append(carray(pre + "_scores", fused))
        print("%s: loss %.6f, |grad| max %.3g / %.3g, |score| max %.3g"
              % (name, loss.item(), ctx.grad.abs().max(), ctx_d.grad.abs().max(),
                 fused.abs().max()))
        ctx, ctx_d = c0.clone().requires_grad_(True), d0.clone().requires_grad_(True)
        opt = torch.optim.SGD([ctx, ctx_d], lr=SGD_LR, momentum=0.9, weight_decay=5e-4,
                              dampening=0, nesterov=False)
        losses = []
        for s in range(3):
            opt.zero_grad()
            loss = text_forward(P, pr_g, pr_l, ctx, ctx_d, ids, gfeat32, seq32, y, hp)
            loss.backward()
            losses.append(loss.item())
            opt.step()
        with torch.no_grad():
            _, _, fused = image_forward(P, pr_g, pr_l, ctx, ctx_d, img_x, img_dense, hp)
        out.append("static const double %s_sgd_losses[3] = {%s};" % (pre, fmt(losses)))
        out.append(carray(pre + "_sgd_ctx", ctx))
        out.append(carray(pre + "_sgd_ctx_double", ctx_d))
        out.append(carray(pre + "_sgd_scores", fused))
        out.append("")
        move = max((ctx - c0).abs().max().item(), (ctx_d - d0).abs().max().item())
        print("  after 3 SGD steps (lr %g): losses %s, largest move %.3g"
              % (SGD_LR, " ".join("%.6f" % v for v in losses), move))
    out.append("#define TREF_SGD_LR %.17gf" % SGD_LR)
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "taidpt_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("kept %d of %d captions, T %d; targets %s" % (B, len(CAPTIONS), T, targets))
    print("wrote", os.path.join(OUT_DIR, "taidpt_ref.h"))


if __name__ == "__main__":
    main()
