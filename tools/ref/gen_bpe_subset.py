#!/usr/bin/python3
"""The part of OpenAI's CLIP BPE vocabulary (MIT licence, (c) 2021 OpenAI)
that the tests' prompts use, so that the tests run on a clone without
../shared/data/clip-bpe.

The fixture models of the method tests were generated with OpenAI's
vocabulary: their embedding tables have its 49408 rows and the references
tokenized their prompts with it. This writes a vocab.json + merges.txt pair
that tokenizes every piece in WORDS exactly as the full vocabulary does,
with the same ids:

- merges.txt keeps only the merges that fire on those pieces, in their
  original order. At each step BPE merges the lowest-ranked pair present;
  that pair fires, so it is kept, and every other kept pair present ranks
  above it in the subset as in the full list: the subset picks the same pair
  at every step, hence the same tokens.
- vocab.json keeps the 512 byte tokens, the tokens those merges form and the
  two special tokens at their original ids; every other id holds a
  placeholder "<ID>" (no kept merge forms it, so no text can produce it)
  so that ids still index the 49408-row tables.

WORDS (tests/fixtures/bpe/clip_subset/words.txt) lists the pieces, one per
line as hex of their UTF-8 bytes: what the tokenizer's regex splits the
tests' texts into (collected by running the tests with the full
vocabulary). The BPE below is simple_tokenizer.bpe's.

usage: /usr/bin/python3 tools/ref/gen_bpe_subset.py ../shared/data/clip-bpe/hf \\
           tests/fixtures/bpe/clip_subset/words.txt tests/fixtures/bpe/clip_subset
"""
import json
import os
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word, word[1:]))


def bpe(token, ranks, fired):
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    pairs = get_pairs(word)
    if not pairs:
        return [token + "</w>"]
    while True:
        bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if bigram not in ranks:
            break
        fired.add(bigram)
        first, second = bigram
        new_word = []
        i = 0
        while i < len(word):
            try:
                j = word.index(first, i)
                new_word.extend(word[i:j])
                i = j
            except ValueError:
                new_word.extend(word[i:])
                break
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    return list(word)


def main(full_dir, words_path, out_dir):
    vocab = json.load(open(os.path.join(full_dir, "vocab.json"), encoding="utf-8"))
    lines = open(os.path.join(full_dir, "merges.txt"), encoding="utf-8").read().split("\n")
    header, merges = lines[0], [tuple(m.split()) for m in lines[1:] if m.strip()]
    ranks = {m: i for i, m in enumerate(merges)}
    enc = bytes_to_unicode()
    fired = set()
    for line in open(words_path, encoding="ascii"):
        line = line.strip()
        if line:
            piece = "".join(enc[b] for b in bytes.fromhex(line))
            for tok in bpe(piece, ranks, fired):
                assert tok in vocab, tok
    keep = {v: k for k, v in vocab.items() if v < 512 or k.startswith("<|")}
    for a, b in fired:
        keep[vocab[a + b]] = a + b
    n = max(vocab.values()) + 1
    out = {keep.get(i, "<%d>" % i): i for i in range(n)}
    assert len(out) == n
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    kept = [m for m in merges if m in fired]
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(header + "\n" + "".join("%s %s\n" % m for m in kept))
    print("%d pieces, %d of %d merges, %d real tokens" % (
        sum(1 for _ in open(words_path)), len(kept), len(merges), len(keep)))


if __name__ == "__main__":
    main(*sys.argv[1:4])
