#!/usr/bin/python3
"""Write tests/fixtures/llm_prompts_ref.h: reference outputs of CuPL and VCD
for fixed sentence embeddings and image features (no text encoder involved).

    /usr/bin/python3 tools/ref/gen_llm_prompts_ref.py [out.h]

Needs Debian's python3-torch. Deterministic (seeded). Inputs are rounded to
float32 (what the C side holds); references are computed in float64 from
those values.

The math is re-implemented here from the official code (not copied):
  - CuPL, sarahpratt/CuPL classify_imagenet.py zeroshot_classifier_gpt:
    per class, the sentence embeddings are L2-normalised, averaged and the
    mean renormalised; with use_both the template sentences join the same
    list (templates first), so the mean is over all sentences with equal
    weight. Logits here: exp(logit_scale) * normalize(f) @ W.T (the official
    omits the scale; same argmax).
  - VCD, sachit-menon/classify_by_description_release load.py / main.py:
    descriptor encodings F.normalize(encode_text(...)), image encodings
    normalised, per class the mean over its descriptors of the dot products
    (aggregate_similarity 'mean'); here times exp(logit_scale). The
    explanation is that class's descriptors sorted by similarity, best first
    (print_descriptor_similarity).
  - VCD prompts, loading_helpers.py load_gpt_descriptions /
    make_descriptor_sentence / wordify with load.py's defaults
    (before_text '', between_text ', ', after_text '' or '.').

Inputs are redrawn until every ranking the C side reproduces (argmax per
image, descriptor order within the explained classes) has gaps > MARGIN, so
float32 rounding cannot reorder them.
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

K, E, N = 4, 16, 6
CUPL_COUNTS = [3, 1, 5, 2]
N_TMPL = 3
VCD_COUNTS = [2, 4, 1, 3]
EXPLAIN_CLASS, EXPLAIN_TOP = 1, 3
SCALE = float(np.float32(math.exp(2.6592)))
MARGIN = 1e-4


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def rows(rng, n):
    """n random embeddings with norms spread over [0.3, 4]: normalising each
    before the mean must matter."""
    x = rng.standard_normal((n, E)) * rng.uniform(0.3, 4.0, size=(n, 1))
    return f32(x)


# ---- VCD's prompt building (load_gpt_descriptions semantics) ----

def descriptor_sentence(d):
    if d.startswith("a"):  # the official also tests 'an', which 'a' already covers
        return "which is " + d
    for lead in ("has", "often", "typically", "may", "can"):
        if d.startswith(lead):
            return "which " + d
    if d.startswith("used"):
        return "which is " + d
    return "which has " + d


def vcd_prompt(classname, d, naming, modify, suffix):
    word = classname.replace("_", " ")
    item = descriptor_sentence(d) if modify else d
    if naming == "prepend":
        return word + ", " + item + suffix
    if naming == "append":
        return item + ", " + word
    return item


PROMPT_CASES = [
    ("Ankle boot", "a low heel", "prepend", True, ""),
    ("Ankle boot", "an elastic side panel", "prepend", True, ""),
    ("Ankle boot", "antennae", "prepend", True, ""),
    ("Ankle boot", "has laces", "prepend", True, ""),
    ("Ankle boot", "often made of leather", "prepend", True, ""),
    ("Ankle boot", "typically black", "prepend", True, ""),
    ("Ankle boot", "may have a zip", "prepend", True, ""),
    ("Ankle boot", "can be worn in winter", "prepend", True, ""),
    ("Ankle boot", "used for walking", "prepend", True, ""),
    ("Ankle boot", "a shaft covering the ankle", "prepend", True, "."),
    ("Ankle boot", "black stripes", "prepend", True, ""),
    ("Ankle boot", "Has a sole", "prepend", True, ""),
    ("Ankle boot", "", "prepend", True, ""),
    ("great_white_shark", "sharp teeth", "prepend", True, ""),
    ("great_white_shark", "sharp teeth", "append", True, "."),
    ("great_white_shark", "sharp teeth", "none", True, ""),
    ("great_white_shark", "sharp teeth", "prepend", False, ""),
    ("great_white_shark", "a grey back", "append", False, ""),
]


def make_inputs(seed):
    rng = np.random.default_rng(seed)
    d = {"x": rows(rng, N)}
    d["cupl"] = [rows(rng, c) for c in CUPL_COUNTS]
    d["tmpl"] = [rows(rng, N_TMPL) for _ in range(K)]
    d["vcd"] = [rows(rng, c) for c in VCD_COUNTS]
    return d


def class_weight(emb):
    e = F.normalize(torch.tensor(emb), dim=-1)
    return F.normalize(e.mean(dim=0), dim=0)


def gaps_ok(v):
    s = sorted(v, reverse=True)
    return all(s[i] - s[i + 1] > MARGIN * max(1.0, abs(s[i])) for i in range(len(s) - 1))


def compute(d):
    x = F.normalize(torch.tensor(d["x"]), dim=-1)
    r = {}
    w = torch.stack([class_weight(e) for e in d["cupl"]])
    r["cupl_w"] = w.numpy()
    r["cupl_logits"] = (SCALE * x @ w.T).numpy()
    wb = torch.stack([class_weight(np.concatenate([t, e])) for t, e in zip(d["tmpl"], d["cupl"])])
    r["cuplb_w"] = wb.numpy()
    r["cuplb_logits"] = (SCALE * x @ wb.T).numpy()
    desc = [F.normalize(torch.tensor(e), dim=-1) for e in d["vcd"]]
    sims = [x @ de.T for de in desc]  # per class (N, n_k)
    r["vcd_logits"] = torch.stack([SCALE * s.mean(dim=1) for s in sims], dim=1).numpy()
    ok = all(gaps_ok(row) for row in r["cupl_logits"])
    ok = ok and all(gaps_ok(row) for row in r["cuplb_logits"])
    ok = ok and all(gaps_ok(row) for row in r["vcd_logits"])
    pred = r["vcd_logits"].argmax(axis=1)
    r["vcd_pred"] = pred
    # the predicted class's descriptors, best first (all of them), per image
    order, score = [], []
    for i in range(N):
        s = (SCALE * sims[pred[i]][i]).numpy()
        ok = ok and gaps_ok(s)
        o = sorted(range(len(s)), key=lambda j: -s[j])
        o += [-1] * (max(VCD_COUNTS) - len(o))
        order.append(o)
        score.append([s[j] if j >= 0 else float("nan") for j in o])
    r["vcd_order"], r["vcd_order_scores"] = order, score
    # a fixed class, top EXPLAIN_TOP, per image
    fo, fs = [], []
    for i in range(N):
        s = (SCALE * sims[EXPLAIN_CLASS][i]).numpy()
        ok = ok and gaps_ok(s)
        o = sorted(range(len(s)), key=lambda j: -s[j])[:EXPLAIN_TOP]
        fo.append(o)
        fs.append([s[j] for j in o])
    r["fix_order"], r["fix_scores"] = fo, fs
    return r, ok


def arr(name, a, ctype="double", fmt="%.17g"):
    v = np.asarray(a).reshape(-1)
    body = ", ".join((fmt % x) if not (isinstance(x, float) and math.isnan(x)) else "NAN"
                     for x in v.tolist())
    return f"static const {ctype} {name}[{len(v)}] = {{{body}}};\n"


def cstr(s):
    return json.dumps(s)  # ASCII, so JSON's escapes are C's


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llm_prompts_ref.h"
    seed = 5
    while True:
        d = make_inputs(seed)
        r, ok = compute(d)
        if ok:
            break
        seed += 1
    cat = lambda lst: np.concatenate(lst)
    s = [f"/* Generated by tools/ref/gen_llm_prompts_ref.py (torch {torch.__version__}, seed "
         f"{seed}) -- do not edit. */\n",
         "#ifndef CT_TEST_LLM_PROMPTS_REF_H\n#define CT_TEST_LLM_PROMPTS_REF_H\n\n",
         "#include <math.h>\n\n",
         f"#define LREF_K {K}\n#define LREF_E {E}\n#define LREF_N {N}\n",
         f"#define LREF_NTMPL {N_TMPL}\n#define LREF_VCD_MAXD {max(VCD_COUNTS)}\n",
         f"#define LREF_EXPLAIN_CLASS {EXPLAIN_CLASS}\n#define LREF_EXPLAIN_TOP {EXPLAIN_TOP}\n\n",
         f"static const float lref_scale = {SCALE!r}f;\n",
         "/* inputs (float32 values): image features; per class the raw embeddings of\n"
         " * CuPL's sentences, of its templates, and of VCD's descriptor prompts,\n"
         " * class by class */\n",
         arr("lref_x", d["x"], "float", "%.9g"),
         arr("lref_cupl_counts", CUPL_COUNTS, "int", "%d"),
         arr("lref_cupl_emb", cat(d["cupl"]), "float", "%.9g"),
         arr("lref_tmpl_emb", cat(d["tmpl"]), "float", "%.9g"),
         arr("lref_vcd_counts", VCD_COUNTS, "int", "%d"),
         arr("lref_vcd_emb", cat(d["vcd"]), "float", "%.9g"),
         "\n/* CuPL: class weights and logits; the same with the templates */\n",
         arr("lref_cupl_w", r["cupl_w"]), arr("lref_cupl_logits", r["cupl_logits"]),
         arr("lref_cuplb_w", r["cuplb_w"]), arr("lref_cuplb_logits", r["cuplb_logits"]),
         "\n/* VCD: logits; per image the predicted class and all its descriptors best\n"
         " * first (-1/NAN past the class's count); class LREF_EXPLAIN_CLASS's top\n"
         " * LREF_EXPLAIN_TOP per image */\n",
         arr("lref_vcd_logits", r["vcd_logits"]),
         arr("lref_vcd_pred", r["vcd_pred"], "int", "%d"),
         arr("lref_vcd_order", r["vcd_order"], "int", "%d"),
         arr("lref_vcd_order_scores", r["vcd_order_scores"]),
         arr("lref_fix_order", r["fix_order"], "int", "%d"),
         arr("lref_fix_scores", r["fix_scores"]),
         "\n/* VCD prompts: class, descriptor, naming (0 prepend, 1 append, 2 none),\n"
         " * modify, suffix, expected prompt */\n",
         "static const struct {\n    const char *cls, *desc;\n    int naming, modify;\n"
         "    const char *suffix, *want;\n} lref_prompts[] = {\n"]
    nm = {"prepend": 0, "append": 1, "none": 2}
    for c, de, naming, mod, suf in PROMPT_CASES:
        s.append(f"    {{{cstr(c)}, {cstr(de)}, {nm[naming]}, {int(mod)}, {cstr(suf)}, "
                 f"{cstr(vcd_prompt(c, de, naming, mod, suf))}}},\n")
    s.append("};\n\n#endif\n")
    with open(path, "w") as fh:
        fh.write("".join(s))


if __name__ == "__main__":
    main()
