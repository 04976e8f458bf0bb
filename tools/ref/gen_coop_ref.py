#!/usr/bin/python3
"""Write the shared tiny CLIP for method tests (tests/fixtures/methods/tiny/)
and CoOp's reference outputs (tests/fixtures/methods/coop_ref.h).

    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    /usr/bin/python3 tools/ref/gen_coop_ref.py /tmp/simple_tokenizer.py ../shared/data/clip-bpe

Needs Debian's python3-torch and python3-regex. Deterministic (seeded).

The tiny model (see tests/fixtures/methods/README.md) is a Hugging Face CLIP
folder with the real vocabulary size (49408), so the real BPE ids index it;
no tokenizer files are written (tests load ../shared/data/clip-bpe/hf). Its
weights are drawn with gen_clip_ref.py's make_openai_state (imported, not
copied; logit_scale ln(1/0.07), CLIP's initial temperature), stored in F16; every reference below is computed in float64 from the weights
as read back from the written file.

CoOp is re-implemented here from the paper's math and KaiyangZhou/CoOp
trainers/coop.py's behaviour (not its code):
  - prompts "X X ... X {name}." (or "{ctx_init} {name}."), class names and
    ctx_init with "_" -> " ", tokenized by OpenAI's own simple_tokenizer.py
    (imported from a CLIP checkout with ftfy stubbed, as gen_tokenizer_ref.py
    does) and padded to 77 as clip.tokenize does;
  - ctx_init: n_ctx = number of space-separated words, context vectors =
    token embeddings at positions 1..n_ctx of the tokenized ctx_init;
  - class token positions end / middle / front, name_len = the number of BPE
    tokens of the class name alone (as coop.py's name_lens);
  - text features through the whole 77-token sequence (the C side truncates
    after the last EOT; equality of the two is part of what is tested),
    pooled at argmax(ids);
  - logits = exp(logit_scale) * normalize(img) @ normalize(txt).T, loss = CE.
The three SGD steps use torch.optim.SGD (the optimiser CoOp builds through
Dassl's build_optimizer: momentum 0.9, weight decay 5e-4, dampening 0, no
Nesterov) at lr 0.002 on one fixed batch.
"""
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "methods")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


clipref = load_module("gen_clip_ref", os.path.join(HERE, "gen_clip_ref.py"))
tokref = load_module("gen_tokenizer_ref", os.path.join(HERE, "gen_tokenizer_ref.py"))
torch.set_default_dtype(torch.float64)

TINY = dict(
    name="tiny", embed=16,
    image=32, patch=8, v_width=32, v_layers=1, v_heads=2, v_mlp=128,
    ctx=77, vocab=49408, t_width=32, t_layers=2, t_heads=2, t_mlp=128,
    act="quick_gelu", sot=49406, eot=49407,
    hf_bos=49406, hf_eos=49407, hf_pad=1,
)
TINY_SEED = 20240607
SOT, EOT, CONTEXT = 49406, 49407, 77

CLASSNAMES = ["golden_retriever", "T-shirt/top", "sea lion", "cat", "crane (bird)"]
B = 8  # image features in the batch


# --------------------------------------------------------------------------
# the shared model

def write_tiny_model(out):
    os.makedirs(out, exist_ok=True)
    sd = clipref.make_openai_state(TINY, TINY_SEED)
    hf = clipref.openai_to_hf(sd, TINY, with_position_ids=False)
    hf = {k: v.to(torch.float16) for k, v in hf.items()}
    cfg = clipref.hf_config(TINY, legacy_verbose=False, torch_dtype="float16")
    path = os.path.join(out, "model.safetensors")
    clipref.st_write(path, hf)
    back = clipref.check_roundtrip(path, hf)
    clipref.write_json(os.path.join(out, "config.json"), cfg)
    clipref.write_json(os.path.join(out, "preprocessor_config.json"),
                       clipref.preprocessor_config(TINY, dict_schema=True))
    P = clipref.hf_to_openai(back, cfg)
    return {k: v.double() for k, v in P.items()}


# --------------------------------------------------------------------------
# CoOp's prompt learner, written from the math

class Tokenizer:
    def __init__(self, simple_tokenizer_py, bpe_dir):
        st = tokref.load_simple_tokenizer(simple_tokenizer_py)
        self.t = st.SimpleTokenizer(os.path.join(bpe_dir, "bpe_simple_vocab_16e6.txt.gz"))

    def encode(self, text):
        return self.t.encode(text)

    def row(self, text):
        ids = [SOT] + self.encode(text) + [EOT]
        assert len(ids) <= CONTEXT, text
        return ids + [0] * (CONTEXT - len(ids))


class Prompts:
    """The frozen parts of CoOp's prompts for one configuration."""

    def __init__(self, tok, P, n_ctx, ctx_init, csc, position):
        names = [c.replace("_", " ") for c in CLASSNAMES]
        if ctx_init:
            words = ctx_init.replace("_", " ")
            n_ctx = len(words.split(" "))
            init_ids = torch.tensor(tok.row(words))
            self.init = P["token_embedding.weight"][init_ids][1:1 + n_ctx].clone()
            prefix_text, csc = words, False  # coop.py: an initialised context is generic
        else:
            self.init = None
            prefix_text = " ".join(["X"] * n_ctx)
        self.n_ctx, self.csc, self.position = n_ctx, csc, position
        self.ids = torch.tensor([tok.row(prefix_text + " " + n + ".") for n in names])
        self.name_lens = [len(tok.encode(n)) for n in names]
        self.emb = P["token_embedding.weight"][self.ids]  # (K, 77, W)
        self.eot = self.ids.argmax(dim=-1)

    def assemble(self, ctx):
        """ctx (n_ctx, W) or (K, n_ctx, W) -> prompt embeddings (K, 77, W)."""
        K, n = self.emb.shape[0], self.n_ctx
        rows = []
        for k in range(K):
            c = ctx[k] if ctx.dim() == 3 else ctx
            sot, rest = self.emb[k, :1], self.emb[k, 1 + n:]   # rest: name, '.', EOT, pad
            name, tail = rest[:self.name_lens[k]], rest[self.name_lens[k]:]
            if self.position == "end":
                parts = [sot, c, rest]
            elif self.position == "middle":
                h = n // 2
                parts = [sot, c[:h], name, c[h:], tail]
            elif self.position == "front":
                parts = [sot, name, c, tail]
            else:
                raise ValueError(self.position)
            rows.append(torch.cat(parts, dim=0))
        return torch.stack(rows)


def coop_forward(P, pr, ctx, img, labels):
    E = pr.assemble(ctx)
    txt, _ = clipref.encode_text_from_embeds(P, TINY, E, pr.eot)
    logits = clipref.clip_logits(P, img, txt)
    return logits, F.cross_entropy(logits, labels)


# --------------------------------------------------------------------------
# output

def fmt(values):
    return ", ".join("%.17g" % float(v) for v in values)


def carray(name, t, ctype="double"):
    flat = t.detach().reshape(-1).tolist()
    lines = []
    for i in range(0, len(flat), 8):
        lines.append("    " + fmt(flat[i:i + 8]) + ",")
    return "static const %s %s[%d] = {\n%s\n};" % (ctype, name, len(flat), "\n".join(lines))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    st_py, bpe_dir = sys.argv[1], sys.argv[2]
    P = write_tiny_model(os.path.join(OUT_DIR, "tiny"))
    tok = Tokenizer(st_py, bpe_dir)
    g = torch.Generator().manual_seed(7)
    W = TINY["t_width"]
    img = torch.randn(B, TINY["embed"], generator=g, dtype=torch.float32).double()
    labels = torch.randint(0, len(CLASSNAMES), (B,), generator=g)

    def rand_ctx(*shape):
        # N(0, 0.02) as coop.py's nn.init.normal_, rounded to float32 so the
        # C side starts from the same values
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * 0.02).double()

    K = len(CLASSNAMES)
    cases = [  # name, n_ctx, ctx_init, csc, position
        ("generic_end", 16, "", False, "end"),
        ("init_end", 16, "a_photo_of_a", False, "end"),
        ("csc_end", 4, "", True, "end"),
        ("generic_middle", 5, "", False, "middle"),
        ("csc_front", 3, "", True, "front"),
    ]
    out = ["/* Generated by tools/ref/gen_coop_ref.py (torch %s) -- do not edit. */" % torch.__version__,
           "#ifndef CT_TEST_COOP_REF_H", "#define CT_TEST_COOP_REF_H", "",
           "/* Model: tests/fixtures/methods/tiny (F16). Class names as the task gives them. */",
           "#define CREF_K %d" % K, "#define CREF_B %d" % B, "#define CREF_E %d" % TINY["embed"],
           "#define CREF_W %d" % W,
           "static const char *const cref_classnames[CREF_K] = {%s};"
           % ", ".join('"%s"' % c for c in CLASSNAMES),
           carray("cref_img", img, "float"),
           "static const int cref_labels[CREF_B] = {%s};" % ", ".join(str(int(x)) for x in labels),
           ""]
    summary, start = [], {}
    for name, n_ctx, init, csc, pos in cases:
        pr = Prompts(tok, P, n_ctx, init, csc, pos)
        if pr.init is not None:
            ctx0 = pr.init.clone()
        else:
            ctx0 = rand_ctx(K, pr.n_ctx, W) if csc else rand_ctx(pr.n_ctx, W)
        start[name] = ctx0
        ctx = ctx0.clone().requires_grad_(True)
        logits, loss = coop_forward(P, pr, ctx, img, labels)
        loss.backward()
        pre = "cref_" + name
        out.append("/* %s: n_ctx=%d ctx_init=\"%s\" csc=%d class_token_position=%s; EOT at %s */"
                   % (name, pr.n_ctx, init, int(csc), pos, pr.eot.tolist()))
        out.append("static const char %s_hp[] = \"n_ctx=%d ctx_init=%s csc=%d "
                   "class_token_position=%s\";" % (pre, n_ctx, init, int(csc), pos))
        out.append(carray(pre + "_ctx", ctx0))
        out.append(carray(pre + "_logits", logits))
        out.append("static const double %s_loss = %.17g;" % (pre, loss.item()))
        out.append(carray(pre + "_grad", ctx.grad))
        out.append("")
        summary.append("%s: loss %.6f, |grad| max %.3g" % (name, loss.item(), ctx.grad.abs().max()))

    # three SGD steps of the generic/end case from its initial context
    pr = Prompts(tok, P, 16, "", False, "end")
    ctx = start["generic_end"].clone().requires_grad_(True)
    opt = torch.optim.SGD([ctx], lr=0.002, momentum=0.9, weight_decay=5e-4, dampening=0,
                          nesterov=False)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, loss = coop_forward(P, pr, ctx, img, labels)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    logits, loss = coop_forward(P, pr, ctx, img, labels)
    out.append("/* generic_end after 3 SGD steps (lr 0.002, momentum 0.9, weight decay 5e-4) on "
               "the same batch */")
    out.append("static const double cref_sgd_losses[3] = {%s};" % fmt(losses))
    out.append(carray("cref_sgd_ctx", ctx))
    out.append(carray("cref_sgd_logits", logits))
    out.append("")
    out.append("#endif")
    with open(os.path.join(OUT_DIR, "coop_ref.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    for s in summary:
        print(s)
    print("sgd losses", losses)
    size = sum(os.path.getsize(os.path.join(OUT_DIR, "tiny", f))
               for f in os.listdir(os.path.join(OUT_DIR, "tiny")))
    print("wrote %s (model %.2f MiB)" % (OUT_DIR, size / 2 ** 20))


if __name__ == "__main__":
    main()
