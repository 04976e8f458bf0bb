#!/usr/bin/python3
"""Write tests/fixtures/special_tokens_ref.h: what OpenAI's CLIP tokenizer
makes of texts that contain its special-token strings, <|startoftext|> and
<|endoftext|> (any case, any position), for tests/test_special_tokens.c
(runs everywhere, on the subset vocabulary tests/fixtures/bpe/clip_subset)
and tests/test_tokenizer.c (OpenAI's full vocabulary, both loaders).

    /usr/bin/python3 tools/ref/gen_special_tokens.py ../shared/data/clip-bpe \\
        [--openai simple_tokenizer.py] [-o tests/fixtures/special_tokens_ref.h]

The reference is a plain re-implementation of clip/simple_tokenizer.py
(OpenAI, MIT licence) and clip.tokenize, written from their logic; it needs
neither the `clip` package nor ftfy (Debian's python3-regex and
python3-torch only):
  - encode(text): html.unescape twice and strip (basic_clean, with
    ftfy.fix_text as the identity, as the C tokenizer has it), runs of \\s to
    one space and strip (whitespace_clean), str.lower(), then
        <\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|
        [\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+          (re.IGNORECASE)
    each piece's UTF-8 through bytes_to_unicode, then bpe(piece), whose cache
    starts as {'<|startoftext|>': '<|startoftext|>', '<|endoftext|>':
    '<|endoftext|>'}: a piece that is exactly one of them (after the
    lower-casing: so in any case) is that token, id 49406 / 49407, anywhere
    in the text. A run of punctuation before one takes its "<|" ("dog.<|..."
    splits as ".<|", "endoftext", "|>"): the pattern's third class matches
    first.
  - clip.tokenize(text, 77, truncate=True): [sot] + encode(text) + [eot],
    zero-padded; when longer, the first 77 with the last set to eot. An
    embedded <|endoftext|> stays where it is.
  - the EOT positions that pool the text features, from the row with torch:
    OpenAI's model (and transformers' with the legacy eos_token_id 2) take
    text.argmax(dim=-1), the first maximum; newer transformers take
    (ids == eos_token_id).int().argmax(-1), the first <|endoftext|>. Both are
    the embedded one when there is one.
  - decode(encode(text)).
--openai also runs OpenAI's own simple_tokenizer.py (e.g. from
`git -C <openai/CLIP checkout> show HEAD:clip/simple_tokenizer.py`, with a
stub ftfy) and asserts the same ids. Every text is also encoded with the
subset vocabulary, which must give the same ids: the pieces it lacks are
printed (hex, for tests/fixtures/bpe/clip_subset/words.txt; then rerun
tools/ref/gen_bpe_subset.py) and nothing is written.
"""
import argparse
import gzip
import html
import importlib.util
import json
import os
import sys
import types

import regex
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SUBSET = os.path.join(ROOT, "tests", "fixtures", "bpe", "clip_subset")
CONTEXT = 77
N_MERGES = 49152 - 256 - 2
SPECIALS = ("<|startoftext|>", "<|endoftext|>")
PAT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)

DOG = "a photo of a dog "  # 5 tokens

TEXTS = [
    # alone, in any case
    "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|>", "<|eNdOfTeXt|>",
    # among words: before, after, between, glued to letters
    "a photo of a dog<|endoftext|>", "<|endoftext|>a photo of a dog",
    "a photo<|endoftext|>of a dog", "a photo <|endoftext|> of a dog",
    "a photo of a <|startoftext|> cat", "dog<|startoftext|>cat", "A PHOTO OF A DOG<|ENDOFTEXT|>",
    # next to punctuation: a run before it takes its "<|"
    "a dog.<|endoftext|>", "a dog. <|endoftext|>", "<|endoftext|>.", "<|endoftext|>!!",
    "(<|endoftext|>)", "\"<|startoftext|>\"", "<<|endoftext|>>", "a-<|endoftext|>-a",
    # contractions and digits
    "dog's<|endoftext|>", "<|endoftext|>'s", "it'<|endoftext|>", "1<|endoftext|>2",
    # several
    "<|endoftext|><|endoftext|>", "<|startoftext|><|endoftext|>",
    "<|endoftext|><|startoftext|>a cat", "<|endoftext|> " * 3,
    # near misses: not the token
    "<|endoftext|", "|endoftext|>", "<| endoftext |>", "< |endoftext|>", "<|end oftext|>",
    "<|endoftext||>", "<|\u017ftartoftext|>",  # long s: matched as one piece, not the token
    # made by cleaning: html entities (unescaped twice), whitespace
    "&lt;|endoftext|&gt;", "&amp;lt;|startoftext|&amp;gt;", "  <|endoftext|>  ",
    "a\t<|endoftext|>\nx", "photo\u00a0<|endoftext|>\u3000photo",
    # against the context length (77 with sot and eot)
    DOG * 2 + "<|endoftext|> " + DOG * 16,       # embedded one kept, then truncated
    DOG * 16 + "<|endoftext|>",                   # the embedded one is cut off
    DOG * 14 + "a photo of a <|endoftext|>",      # 74 + 1 tokens: fits exactly
    DOG * 15 + "<|endoftext|>",                   # 75 + 1: the embedded one is the last kept
    "<|endoftext|>" * 80,
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {v: k for k, v in BYTE_ENC.items()}


class Tok:
    """simple_tokenizer.SimpleTokenizer's encode/decode over a vocabulary."""

    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {s: s for s in SPECIALS}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token].split(" ")
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if (first, second) not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):  # every non-overlapping occurrence, left to right
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        self.cache[token] = " ".join(word)
        return list(word)

    @staticmethod
    def pieces(text):
        text = html.unescape(html.unescape(text)).strip()
        text = regex.sub(r"\s+", " ", text).strip().lower()
        return regex.findall(PAT, text)

    def encode(self, text):
        ids = []
        for p in self.pieces(text):
            p = "".join(BYTE_ENC[b] for b in p.encode("utf-8"))
            ids += [self.encoder[t] for t in self.bpe(p)]
        return ids

    def decode(self, ids):
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(BYTE_DEC[c] for c in text).decode("utf-8", "replace") \
            .replace("</w>", " ")


def load_gz(path):
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:N_MERGES + 1]]
    vocab = list(BYTE_ENC.values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(SPECIALS)
    return Tok({v: i for i, v in enumerate(vocab)}, merges)


def load_hf(folder):
    encoder = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
    lines = open(os.path.join(folder, "merges.txt"), encoding="utf-8").read().strip().split("\n")
    return Tok(encoder, [tuple(m.split()) for m in lines[1:N_MERGES + 1]])


def clip_tokenize_row(ids, sot, eot):
    tokens = [sot] + ids + [eot]
    too_long = len(tokens) > CONTEXT
    if too_long:
        tokens = tokens[:CONTEXT]
        tokens[-1] = eot
    row = torch.zeros(CONTEXT, dtype=torch.int)
    row[:len(tokens)] = torch.tensor(tokens)
    return row, len(tokens), too_long


def openai_ids(path, gz):
    stub = types.ModuleType("ftfy")
    stub.fix_text = lambda text: text
    sys.modules["ftfy"] = stub
    spec = importlib.util.spec_from_file_location("simple_tokenizer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tok = mod.SimpleTokenizer(gz)
    return lambda text: tok.encode(text)


def c_bytes(b):
    out = []
    for x in b:
        c = chr(x)
        out.append("\\%03o" % x if c in '"\\?' or x < 0x20 or x >= 0x7F else c)
    return '"' + "".join(out) + '"'


def c_ints(vals, indent="    ", width=96):
    lines, cur = [], indent
    for v in vals:
        s = "%d, " % v
        if len(cur) + len(s) > width:
            lines.append(cur.rstrip())
            cur = indent
        cur += s
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip_bpe_dir", help="folder with bpe_simple_vocab_16e6.txt.gz and hf/")
    ap.add_argument("--openai", help="OpenAI's clip/simple_tokenizer.py: check the ids with it")
    ap.add_argument("-o", "--out", default=os.path.join(ROOT, "tests", "fixtures",
                                                        "special_tokens_ref.h"))
    args = ap.parse_args()
    gz = os.path.join(args.clip_bpe_dir, "bpe_simple_vocab_16e6.txt.gz")
    full = load_gz(gz)
    hf = load_hf(os.path.join(args.clip_bpe_dir, "hf"))
    assert hf.encoder == full.encoder and hf.ranks == full.ranks, "hf/ is another vocabulary"
    sub = load_hf(SUBSET)
    sot, eot = full.encoder[SPECIALS[0]], full.encoder[SPECIALS[1]]
    assert (sot, eot) == (49406, 49407) and sub.encoder[SPECIALS[0]] == sot and \
        sub.encoder[SPECIALS[1]] == eot
    ref = openai_ids(args.openai, gz) if args.openai else None

    assert len(set(TEXTS)) == len(TEXTS)
    missing = set()
    cases = []
    n_embedded = 0
    for text in TEXTS:
        ids = full.encode(text)
        if ref:
            assert ref(text) == ids, text
        if sub.encode(text) != ids:
            for p in full.pieces(text):
                pb = "".join(BYTE_ENC[b] for b in p.encode("utf-8"))
                if pb not in SPECIALS and sub.bpe(pb) != full.bpe(pb):
                    missing.add(p.encode("utf-8").hex())
        row, n_row, too_long = clip_tokenize_row(ids, sot, eot)
        first_max = int(row.argmax(dim=-1))
        first_eos = int((row == eot).int().argmax(dim=-1))
        assert first_max == first_eos == row.tolist().index(eot)
        n_embedded += eot in ids[:CONTEXT - 2]
        cases.append((text, ids, row[:n_row].tolist(), too_long, first_max, first_eos,
                      full.decode(ids)))
    if missing:
        print("the subset vocabulary lacks these pieces; add them to "
              "tests/fixtures/bpe/clip_subset/words.txt and rerun tools/ref/gen_bpe_subset.py:")
        print("\n".join(sorted(missing)))
        sys.exit(1)

    data = []
    L = []
    w = L.append
    w("/* Generated by tools/ref/gen_special_tokens.py -- do not edit.")
    w(" * Texts with CLIP's special-token strings: ids of OpenAI's simple_tokenizer.encode")
    w(" * (re-implemented; ftfy.fix_text as the identity), rows of clip.tokenize(context_length=%d,"
      % CONTEXT)
    w(" * truncate=True) and the EOT position torch gives for them (text.argmax(-1), and")
    w(" * (ids == eot).int().argmax(-1)). %d texts, %d with an <|endoftext|> kept inside the"
      % (len(cases), n_embedded))
    w(" * row; the subset vocabulary gives the same ids for all.%s */"
      % ("\n * Checked against OpenAI's own clip/simple_tokenizer.py." if ref else ""))
    w("#ifndef CT_TEST_SPECIAL_TOKENS_REF_H")
    w("#define CT_TEST_SPECIAL_TOKENS_REF_H")
    w("")
    w("#include <stdint.h>")
    w("")
    w("#define SPT_CONTEXT %d" % CONTEXT)
    w("#define SPT_SOT %d" % sot)
    w("#define SPT_EOT %d" % eot)
    w("")
    w("typedef struct spt_case {")
    w("    const char *text;")
    w("    int n_ids, ids_off;   /* encode(text): spt_data[ids_off ..]            */")
    w("    int n_row, row_off;   /* the row before its zero padding                */")
    w("    int too_long;         /* clip.tokenize raises without truncate          */")
    w("    int eot_argmax;       /* row.argmax(-1): the first maximum              */")
    w("    int eot_first;        /* (row == eot).int().argmax(-1)                  */")
    w("    const char *decoded;  /* decode(encode(text))                           */")
    w("} spt_case;")
    w("")
    lines = []
    for text, ids, row, too_long, fm, fe, dec in cases:
        off = len(data)
        data += ids
        roff = len(data)
        data += row
        lines.append("    {%s, %d, %d, %d, %d, %d, %d, %d, %s}," % (
            c_bytes(text.encode("utf-8")), len(ids), off, len(row), roff, int(too_long), fm, fe,
            c_bytes(dec.encode("utf-8"))))
    w("static const int32_t spt_data[%d] = {" % len(data))
    w(c_ints(data))
    w("};")
    w("")
    w("static const spt_case spt_cases[%d] = {" % len(cases))
    L += lines
    w("};")
    w("")
    w("#endif")
    with open(args.out, "w", encoding="ascii") as f:
        f.write("\n".join(L) + "\n")
    print("%d texts (%d with an embedded <|endoftext|> in the row, %d too long), %d ids -> %s"
          % (len(cases), n_embedded, sum(c[3] for c in cases), len(data), args.out))


if __name__ == "__main__":
    main()
