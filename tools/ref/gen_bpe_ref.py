#!/usr/bin/python3
"""Reference for ct_bpe_train (tests/test_bpe.c): an independent, plain
Python BPE trainer with the same definition, run on a committed caption set.

    /usr/bin/python3 tools/ref/gen_bpe_ref.py [--write-captions]

--write-captions regenerates the corpora tests/fixtures/bpe/captions.txt
(seeded, a few hundred short captions with the awkward cases mixed in) and
words.txt (random words over five letters); without it the committed files
are read (one text per line, blank lines skipped). For each configuration in CONFIGS it writes
tests/fixtures/bpe/<name>/vocab.json and merges.txt, which the C trainer must
reproduce byte for byte. Needs Debian's python3-regex.

The definition (docs/tokenizer.md, "Training a vocabulary"):
  - a text is cleaned as OpenAI's clip/simple_tokenizer.py cleans it
    (ftfy.fix_text skipped, as the C tokenizer skips it; html.unescape twice;
    strip; runs of regex \\s to one space; strip; str.lower()) and split with
    its pattern under IGNORECASE; pieces that are exactly <|startoftext|> or
    <|endoftext|> are not words;
  - a word is its UTF-8 bytes through bytes_to_unicode, "</w>" appended to
    the last symbol; words are counted;
  - each step recounts every adjacent pair (weighted by word frequency),
    takes the highest count, ties to the smallest (first, second) pair of
    strings, stops when that count is below min_frequency or the vocabulary
    (512 byte symbols + new tokens + 2 specials) has vocab_size ids or there
    are 48,894 merges; merges every non-overlapping occurrence left to right;
    a result string that is already a token adds no id (the merge is still
    listed);
  - vocab.json is json.dumps(ensure_ascii=False) of {token: id} in id order
    plus a newline; merges.txt is "#version: 0.2" and one "a b" line per merge.
This recounts all pairs at every step (the C code updates counts
incrementally), so the two share the definition, not the algorithm.
"""
import argparse
import collections
import html
import json
import os
import random

import regex

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "bpe")
MAX_MERGES = 49152 - 256 - 2
# name, corpus, vocab_size, min_frequency
CONFIGS = [
    ("v900_f1", "captions.txt", 900, 1),    # stops at vocab_size
    ("full_f3", "captions.txt", 49408, 3),  # stops when no pair occurs 3 times
    ("words_f2", "words.txt", 49408, 2),    # small alphabet: deep merges, many ties
]

PAT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def pieces(text):
    text = html.unescape(html.unescape(text)).strip()
    text = regex.sub(r"\s+", " ", text).strip().lower()
    return [p for p in PAT.findall(text) if p not in SPECIALS]


def merge_word(word, a, b):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train(texts, vocab_size, min_frequency):
    enc = bytes_to_unicode()
    counts = collections.Counter(p for t in texts for p in pieces(t))
    words = []
    for piece, f in counts.items():
        sym = [enc[b] for b in piece.encode("utf-8")]
        sym[-1] += "</w>"
        words.append((tuple(sym), f))
    vocab = list(enc.values())
    vocab += [v + "</w>" for v in vocab]
    known = set(vocab)
    merges = []
    while len(vocab) < vocab_size - 2 and len(merges) < MAX_MERGES:
        stats = collections.Counter()
        for w, f in words:
            for pair in zip(w, w[1:]):
                stats[pair] += f
        if not stats:
            break
        top = max(stats.values())
        if top < min_frequency:
            break
        a, b = min(p for p, c in stats.items() if c == top)
        merges.append((a, b))
        if a + b not in known:
            known.add(a + b)
            vocab.append(a + b)
        words = [(merge_word(w, a, b), f) for w, f in words]
    vocab += list(SPECIALS)
    return vocab, merges


def write_captions(path):
    rng = random.Random(20240607)
    adj = ["red", "small", "happy", "old", "wooden", "shiny", "blue", "fluffy", "tall",
           "sleepy", "striped", "tiny", "bright", "muddy", "golden", "quiet"]
    noun = ["dog", "cat", "bicycle", "house", "tree", "car", "bird", "horse", "boat", "child",
            "woman", "man", "train", "apple", "mountain", "bridge", "flower", "table"]
    verb = ["sitting on", "running across", "standing next to", "jumping over", "lying under",
            "looking at", "parked near", "flying above", "walking along", "resting beside"]
    place = ["the street", "a field", "the beach", "a kitchen", "the park", "a river",
             "the snow", "a garden", "the city", "a forest"]
    odd = [
        "A photo of a dog &amp; a cat.", "it's a dog's life", "They're here, we've left.",
        "I'm sure you'll see it'd rain", "3 dogs and 12 cats", "café au lait, naïve résumé",
        "ΣΊΣΥΦΟΣ in ΑΘΗΝΑ", "東京の夜景", "emoji 🐶🐱 party 🎉", "  lots   of\tspace  ",
        "<|endoftext|> after the end", "<|startoftext|>start", "&lt;b&gt;bold&lt;/b&gt;",
        "UPPER lower MiXeD", "price: $19.99 (50% off!)",
        "e-mail me@example.com",
        "Ünïcödé ŞŤŘÍÑĜ", "the &#x263a; smile", "straße grün", "x" * 40,
    ]
    lines = []
    for _ in range(320):
        a, n, v, p = rng.choice(adj), rng.choice(noun), rng.choice(verb), rng.choice(place)
        form = rng.randrange(4)
        if form == 0:
            s = f"a {a} {n} {v} {p}"
        elif form == 1:
            s = f"A {a.capitalize()} {n} {v} {p}."
        elif form == 2:
            s = f"two {n}s {v} {rng.choice(noun)}s in {p}"
        else:
            s = f"{n} {v} a {a} {rng.choice(noun)}, {rng.randrange(100)} photos"
        lines.append(s)
    lines += odd
    rng.shuffle(lines)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def write_words(path):
    """Random words over a five-letter alphabet, Zipf-distributed: long
    merge chains and many equal counts (the tie-break decides often)."""
    rng = random.Random(7)
    pool = ["".join(rng.choice("abcde") for _ in range(rng.randrange(1, 9)))
            for _ in range(400)]
    weights = [1.0 / (k + 1) for k in range(len(pool))]
    lines = [" ".join(rng.choices(pool, weights)[0] for _ in range(rng.randrange(1, 5)))
             for _ in range(1500)]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-captions", action="store_true")
    args = ap.parse_args()
    if args.write_captions:
        write_captions(os.path.join(FIX, "captions.txt"))
        write_words(os.path.join(FIX, "words.txt"))
    for name, corpus, vocab_size, min_frequency in CONFIGS:
        with open(os.path.join(FIX, corpus), "rb") as f:
            texts = [ln.decode("utf-8", "replace") for ln in f.read().split(b"\n")
                     if ln.strip()]
        vocab, merges = train(texts, vocab_size, min_frequency)
        out = os.path.join(FIX, name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False) + "\n")
        with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        print(f"{name}: {len(texts)} texts, {len(vocab)} ids, {len(merges)} merges")


if __name__ == "__main__":
    main()
