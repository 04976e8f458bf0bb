#!/usr/bin/python3
"""Write tests/fixtures/tokenizer_ref.h: token ids computed by OpenAI's own
clip/simple_tokenizer.py and clip.tokenize(), for tests/test_tokenizer.c.

OpenAI's files are read from a checkout, not copied into this project:
    M=/work/.mirror/openai+CLIP/repo        # e.g. from the fetch tool
    git -C $M show HEAD:clip/simple_tokenizer.py > /tmp/simple_tokenizer.py
    git -C $M show HEAD:clip/clip.py > /tmp/clip_clip.py
    git -C $M show HEAD:notebooks/Prompt_Engineering_for_ImageNet.ipynb > /tmp/pe.ipynb
    /usr/bin/python3 tools/ref/gen_tokenizer_ref.py /tmp/simple_tokenizer.py \\
        /tmp/clip_clip.py /tmp/pe.ipynb ../shared/data/clip-bpe [-o out.h]
Needs Debian's python3-regex (simple_tokenizer imports `regex`) and
python3-torch (clip.tokenize builds a tensor).

--ftfy-src DIR (a python-ftfy source tree, e.g. from rspeer/python-ftfy, plus
Debian's python3-wcwidth) only reports how many reference strings the real
ftfy.fix_text would tokenize differently; the fixture never depends on it.

How the reference runs:
  - simple_tokenizer.py is imported as is, except that `ftfy` (not packaged
    by Debian) is a stub module whose fix_text returns its argument. The C
    tokenizer does the same (see docs/tokenizer.md), so the references test
    everything else exactly; strings that ftfy would change (mojibake such
    as "cafÃ©", some control characters, ...) are where the two may differ
    from a real CLIP install.
  - clip.tokenize is the function's own source, cut out of clip.py with ast
    and run with torch and the tokenizer above (clip.py's other imports,
    torchvision and PIL, are not needed).
  - The C API takes UTF-8 bytes; for byte strings that are not valid UTF-8
    the reference input is bytes.decode("utf-8", "replace"), the behaviour the
    C side documents.
  - The HF files in <clip-bpe>/hf are checked here to be the same vocabulary
    (every vocab.json entry and merges.txt line), and a few vocabulary facts
    are recorded for the C test to check with both loaders.
"""
import argparse
import ast
import hashlib
import importlib.util
import json
import os
import random
import sys
import types
from typing import List, Union

import torch
from packaging import version

CONTEXT = 77


def load_simple_tokenizer(path):
    stub = types.ModuleType("ftfy")
    stub.fix_text = lambda text: text  # ftfy is not in Debian: identity
    sys.modules["ftfy"] = stub
    spec = importlib.util.spec_from_file_location("simple_tokenizer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_clip_tokenize(clip_py, tokenizer):
    tree = ast.parse(open(clip_py, encoding="utf-8").read())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "tokenize"]
    assert len(fn) == 1, "clip.py has no top-level tokenize()"
    mod = ast.Module(body=fn, type_ignores=[])
    ns = {"torch": torch, "version": version, "Union": Union, "List": List,
          "_tokenizer": tokenizer}
    exec(compile(mod, clip_py, "exec"), ns)
    return ns["tokenize"]


def imagenet_lists(notebook):
    nb = json.load(open(notebook, encoding="utf-8"))
    found = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name) and \
                    node.targets[0].id in ("imagenet_classes", "imagenet_templates"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["imagenet_classes"], found["imagenet_templates"]


def handwritten():
    s = []
    # ASCII sentences
    s += [
        "a photo of a dog.", "A photo of a cat", "Hello, world!", "The quick brown fox jumps "
        "over the lazy dog.", "CLIP: Connecting Text and Images", "a diagram", "a dog",
        "a cat", "This is a test sentence with punctuation; commas, and (parentheses).",
        "e-mail me at someone@example.com or visit https://example.com/path?q=1&x=2",
        "snake_case and camelCase and PascalCase and kebab-case", "C++ and C# and F#",
        "The year 2023 was hot", "version 1.2.3-beta+build.4", "multiple!!! exclamation???",
        "ALL CAPS SENTENCE", "MiXeD CaSe TeXt", "tabs\tand\nnewlines\r\nand\x0bvertical\x0c",
        "  leading and trailing spaces  ", "several     inner     spaces", "a", "I", "x y z",
        "hyphen-ated words-are-common", "quotes \"double\" and 'single'", "back`tick`",
        "slash/separated/words", "pipes | and <angles> and {braces}", "~tilde~ ^caret^",
        "underscores__double__", "dots...ellipsis", "a.b.c.d", "50/50 chance",
        "itemA itemB itemC", "zzzzzzzzzz", "qwertyuiopasdfghjklzxcvbnm",
        "supercalifragilisticexpialidocious", "antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis", "photo", "photograph", "photos",
        "a centered satellite photo of a forest.", "a photo of a big airplane.",
        "itap of a dog.", "art of the car.", "a black and white photo of the cat.",
    ]
    # numbers
    s += [
        "3.14", "1,000", "1,000,000", "2024-01-01", "12:30pm", "$5.99", "100%", "1e-5",
        "0x1F", "007", "-42", "+7", "3/4", "1st 2nd 3rd 4th", "\u00bd cup", "x\u00b2 + y\u00b2",
        "\u0663\u0664\u0665", "\u216b", "\u2460\u2461\u2462", "\uff11\uff12\uff13",
        "\u0968\u0966\u0968\u0969", "room 101", "1234567890", "9" * 30, "3.14159265358979",
        "MMXXIV", "\u00b9\u00b2\u00b3", "\u2155", "\U0001d7d8\U0001d7d9",
    ]
    # contractions (the pattern's literal alternatives, under re.IGNORECASE)
    s += [
        "don't", "DON'T", "Don't", "I'M", "I'm", "i'm", "you're", "YOU'RE", "we've",
        "WE'VE", "she'll", "SHE'LL", "he'd", "HE'D", "it's", "IT'S", "It'S", "they're",
        "'s", "''s", "'", "''", "'''", "rock'n'roll", "o'clock", "y'all", "ma'am",
        "the dog's bone", "dogs' bones", "\u2019s curly", "it\u2019s", "'re'", "'ll'll",
        "'d'm't's", "'x", "'S", "'T", "'RE", "'Ve", "'lL", "'\u017f", "'\u017ftart",
        "it'\u017f", "'st", "'tis", "'\u212a", "'r", "'v", "'l", "'re",
    ]
    # Latin accents, German, Turkish, Greek (final sigma), Cyrillic, ...
    s += [
        "caf\u00e9", "CAF\u00c9", "na\u00efve", "pi\u00f1ata", "PI\u00d1ATA", "\u00fcber",
        "\u00dcBER", "Stra\u00dfe", "STRASSE", "\u00df", "\u1e9e", "GROSSE \u1e9e",
        "\u0130stanbul", "\u0130STANBUL", "\u0131\u0130iI", "D\u0130YARBAKIR",
        "\u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2",
        "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
        "\u03a3\u0391\u03a3", "\u03a3", "a\u03a3", "A\u03a3b", "A\u03a3.", "A'\u03a3",
        "A\u03a3'", "A\u03a3'B", "\u03a3\u03a3\u03a3", "A.\u03a3", "A\u00ad\u03a3",
        "A\u03a3\u00adb", "\u1f08\u03a3", "\u0391\u0398\u0397\u039d\u0391",
        "\u03b1\u03b8\u03ae\u03bd\u03b1", "\u041c\u043e\u0441\u043a\u0432\u0430",
        "\u041f\u0420\u0418\u0412\u0415\u0422 \u041c\u0418\u0420", "\u0401\u0436",
        "\u0141\u00f3d\u017a", "\u017b\u00d3\u0141W", "\u010ce\u0161tina", "\u00c5ngstr\u00f6m",
        "\u212bngstr\u00f6m", "\u212a", "\u2126", "\u0130", "\u01c5", "\u01c4\u01c6",
        "\u1e9b", "\u017f", "\ufb01", "\ufb00ord", "\u0149", "\u0345", "\u03b1\u0345",
        "\u1fbc", "\u1fb3", "\u0345abc", "abc\u0345def", "\u03b9\u0345\u0399",
        "e\u0301", "a\u0308o\u0308", "\u00c0\u00c1\u00c2\u00c3\u00c4\u00c5\u00c6\u00c7",
        "\u0100\u0101\u0102\u0103", "\u023a\u023e", "\u2c6f\u2c70", "\u10a0\u10a1",
        "\u13a0\u13a1", "\uab70", "\U00010400\U00010401", "\U0001e900", "\u24b6\u24b7",
        "\u2160\u2161", "\uff21\uff22\uff23", "\u1e9e\u00df",
    ]
    # scripts
    s += [
        "\u6771\u4eac\u30bf\u30ef\u30fc", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "\u3072\u3089\u304c\u306a \u30ab\u30bf\u30ab\u30ca", "\uff76\uff80\uff76\uff85",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u1100\u1161\u11a8",
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "\u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627",
        "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0928\u092e\u0938\u094d\u0924\u0947",
        "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22", "\u05e2\u05d1\u05e8\u05d9\u05ea",
        "\u4e2d\u6587\u5b57\u7b26", "\u732b\u306e\u5199\u771f", "\U00020000\U0002a6d6",
        "\u1780\u17d2\u1798\u17c2\u179a", "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8",
        "\u0531\u0532\u0533", "\u1200\u1201", "\u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02",
        "\u0b95\u0bbe\u0b9f\u0bcd\u0b9a\u0bbf", "\u0f56\u0f7c\u0f51", "\u1000\u103c\u1014\u103a",
        "\U00011f04\U00011f05", "\U0001e030", "\u2ebf0", "\U0002ebf0", "\U00010d50",
        "mixed \u65e5\u672c English \u0440\u0443\u0441\u0441\u043a\u0438\u0439 "
        "\u0639\u0631\u0628\u064a",
    ]
    # emoji
    s += [
        "\U0001f642", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d"
        "\U0001f466", "\U0001f3f3\ufe0f\u200d\U0001f308",
        "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5",
        "\u2764\ufe0f", "a\U0001f642b", "I \u2764\ufe0f NY", "\U0001f600\U0001f603\U0001f604",
        "\U0001f9d1\U0001f3ff\u200d\U0001f4bb", "\U0001f3f4\U000e0067\U000e0062\U000e0073"
        "\U000e0063\U000e0074\U000e007f", "#\ufe0f\u20e3", "\u263a", "\u2603 snowman",
        "a photo of a \U0001f415.", "\U0001f525\U0001f525\U0001f525 fire",
        "\U0001f44b\U0001f3fb\U0001f44b\U0001f3fc\U0001f44b\U0001f3fd"
        "\U0001f44b\U0001f3fe\U0001f44b\U0001f3ff",
        "\u00a9 2024 \u00ae \u2122",
    ]
    # HTML entities (html.unescape twice)
    s += [
        "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;", "&#x27;", "don&#39;t", "don&#x27;t",
        "&nbsp;", "a&nbsp;b", "&eacute;", "caf&eacute;", "&amp;amp;", "&amp;lt;", "&AMP;",
        "&AMP", "&amp", "&ampfoo", "&ampfoo;", "&notit;", "&notin;", "&not", "&noti",
        "&#0;", "&#x110000;", "&#xD800;", "&#xDFFF;", "&#1114111;", "&#128;", "&#150;",
        "&#x80;", "&#x9F;", "&#1;", "&#65", "&#x41", "&#X41;", "&#", "&#x", "&#xZ", "&#;",
        "&;", "& amp;", "&&amp;", "&&&", "&abcdefghijklmnopqrstuvwxyz0123456789;",
        "&abcdefghijklmnopqrstuvwxyz0123456789amp;", "&nGt;", "&acE;", "&ThickSpace;",
        "&NewLine;", "&Tab;", "a&Tab;b", "&#9;", "&#10;", "&#12288;", "&#x1c;", "&#133;",
        "&amp;#39;", "&amp;amp;amp;", "&lt;|endoftext|&gt;", "&lt;|startoftext|&gt;",
        "&lt", "&lt;", "&LT;", "&Lt;", "&gt=", "&quot;quoted&quot;", "&copy; 2024",
        "&euro;100", "&hellip;", "&mdash;", "&frac12;", "&sup2;", "&Sigma;&Alpha;",
        "A&Sigma;", "&szlig;", "&#x130;", "&#304;", "&#0000065;", "&#x0000041;",
        "&#99999999999999999999;", "&#x0;", "&#13;", "&#x0D;", "&#127;", "&#xFFFE;",
        "&#xFDD0;", "&#x1FFFF;", "&#x10FFFE;", "&#55296;", "&ampamp;", "&amp;ampamp;",
        "&am", "&a", "&ZZZ;", "&\u00e9acute;", "&eacute\u00e9", "&lt\u00e9",
        "&\u00e9", "&frac12", "&frac1", "&fjlig;", "&ngE;", "&b.prime;", "&#8482;",
        "&#x1F600;", "&#128512;", "&#x1f600", "&amp;#x1F600;", "&nbsp&nbsp;",
        "text with &amp; in the middle &amp; again", "&\t;", "&\n", "&<", "&#&#39;",
        "&" + "a" * 40 + ";", "&" + "a" * 31 + "mp;", "&NotNestedGreaterGreater;",
        "&CounterClockwiseContourIntegral;", "&CounterClockwiseContourIntegral",
        "&Aacute", "&Aacutex", "&aacute;&Aacute;", "&iexcl;&iquest;",
    ]
    # whitespace
    s += [
        "a\tb", "a\nb", "a\r\nb", "  lots   of   spaces  ", "\u00a0nbsp\u00a0", "x\u00a0y",
        "\u3000ideographic\u3000space\u3000", "\x1cfoo\x1c", "a\x1cb", "a\x1c b", "\x1c",
        "\x1f\x1e\x1d", "a\u2028b\u2029c", "a\x85b", "\x85", "a\u200bb", "\ufeffbom",
        "a\u180eb", "a\u2000\u2001\u2002\u200ab", "a\u202fb\u205fc", "a\u1680b", "\t\n\r ",
        " ", "\n", "a\x0bb\x0cc", "trailing\t", "\u200d", "a\u00adb", "a\u034fb",
        "a\x01b", "\x7f", "\x1b[31mred\x1b[0m", "a\u0085\u00a0\u2028b",
    ]
    # empty, punctuation, special-token literals
    s += [
        "", "!!!", "...", "?!", "-_-", "()[]{}", "@#$%^&*", "!", ".", ",", "\"", "''", "<>",
        "<|", "|>", "<|>", "!" * 100, "?" * 90, "-" * 80,
        "<|startoftext|>", "<|endoftext|>", "hello <|endoftext|> world", "<|ENDOFTEXT|>",
        "<|StartOfText|>", "x<|endoftext|>y", "!<|endoftext|>", "<|endoftext|",
        "<|startoftext|><|endoftext|>", "<|endoftext|><|endoftext|>", "<|endoftext|>!",
        "<<|endoftext|>", "<|\u017ftartoftext|>", "<|\u017fTARTOFTEXT|>", "<|endoftext|>s",
        "<| endoftext |>", "<|end of text|>", "<|startoftext", "a<|startoftext|>b",
        "\u00ab\u00bb\u201c\u201d\u2018\u2019", "\u2014\u2013\u2026", "\u00bf\u00a1",
        "\u3002\u3001\u300c\u300d", "\uff01\uff1f", "\u2022\u00b7", "\u2190\u2192\u2191\u2193",
        "\u221e\u2211\u222b", "\u00a7\u00b6\u2020\u2021", "\u20ac\u00a3\u00a5\u20b9",
        "\U0001d400\U0001d401", "\u2603\u2604", "\u00b4`\u02dc\u02c6",
    ]
    # ftfy would change these (mojibake, HTML in a BOM...); the stub does not
    s += ["caf\u00c3\u00a9", "\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d", "\u00c3\u00bc"]
    # long texts (> 77 tokens)
    para = ("CLIP (Contrastive Language-Image Pre-Training) is a neural network trained on a "
            "variety of (image, text) pairs. It can be instructed in natural language to "
            "predict the most relevant text snippet, given an image, without directly "
            "optimizing for the task, similarly to the zero-shot capabilities of GPT-2 and 3. ")
    s += [para, para * 3, "a " * 80, "a " * 75, "a " * 76, "a " * 74, "word " * 200,
          "a" * 500, "ab" * 300, "!" * 400, "1234567890" * 20, "\u00e9" * 100,
          "\u65e5\u672c" * 60, "\U0001f642" * 50, "&amp;" * 100, "x " * 1000,
          "abc" * 100 + " " + "def " * 100]
    return s


def invalid_utf8():
    return [b"\xff", b"a\x80b", b"\xc3", b"caf\xc3", b"\xe2\x82", b"\xe2\x82x",
            b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xc1\xbf",
            b"\xf0\x9f\x98x", b"caf\xe9", b"\xf5\x80", b"\xfe\xfe\xff", b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80", b"a\xc3\xa9\xff\xc3", b"\x80\x80\x80", b"\xef\xbf\xbd",
            b"&amp;\xff&lt;", b"\xf8\x88\x80\x80\x80", b"\xe2\x28\xa1", b"\xf0\x90\x28\xbc"]


def random_strings(n, seed):
    rng = random.Random(seed)
    pools = [
        (30, lambda: chr(rng.randint(0x20, 0x7E))),
        (10, lambda: chr(rng.randint(0xA0, 0x24F))),
        (10, lambda: chr(rng.choice([0x391, 0x3A3, 0x3C3, 0x3C2, 0x410, 0x44F, 0x130, 0x131,
                                      0x17F, 0x345, 0x212A, 0x1E9E, 0x2126, 0x212B, 0xDF]))),
        (15, lambda: chr(rng.choice([rng.randint(0x250, 0xD7FF), rng.randint(0xE000, 0xFFFD)]))),
        (8, lambda: chr(rng.randint(0x10000, 0x10FFFF))),
        (8, lambda: rng.choice([" ", "\t", "\n", "\u00a0", "\u3000", "\x1c", "\x85", "  "])),
        (6, lambda: rng.choice(["&amp;", "&lt;", "&#39;", "&#x27;", "&nbsp;", "&eacute;",
                                "&", "&#", "&amp", "&Sigma;", "&#1234;"])),
        (6, lambda: rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "<|",
                                "|>", "<|endoftext|>", "'S", "'LL"])),
        (5, lambda: rng.choice(["\U0001f642", "\U0001f44d\U0001f3fd", "\u200d", "\ufe0f",
                                "\U0001f1fa", "\u2764"])),
    ]
    total = sum(w for w, _ in pools)
    out = []
    for _ in range(n):
        length = rng.randint(1, 30)
        chars = []
        for _ in range(length):
            r = rng.uniform(0, total)
            for w, f in pools:
                r -= w
                if r <= 0:
                    chars.append(f())
                    break
            else:
                chars.append(pools[-1][1]())
        t = "".join(chars).replace("\x00", "")
        out.append(t)
    return out


def c_bytes(b):
    out = []
    for x in b:
        c = chr(x)
        if c in '"\\?' or x < 0x20 or x >= 0x7F:
            out.append("\\%03o" % x)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def ftfy_gap(ftfy_src, st, tok, rows):
    """How many reference strings the real ftfy would tokenize differently:
    simple_tokenizer's basic_clean calls its module global `ftfy`, so swapping
    that module is all it takes."""
    stub = sys.modules.pop("ftfy")
    sys.path.insert(0, ftfy_src)
    import ftfy
    texts = [text for text, _ in rows]
    st.ftfy = stub
    plain = [tok.encode(t) for t in texts]
    st.ftfy = ftfy
    differ = [t for t, ids in zip(texts, plain) if tok.encode(t) != ids]
    st.ftfy = stub
    prompts = [t for t in texts if t.startswith("a photo of a ")]
    print("ftfy %s: %d of %d strings tokenize differently (%d of %d 'a photo of a ...')"
          % (getattr(ftfy, "__version__", "?"), len(differ), len(texts),
             sum(t in differ for t in prompts), len(prompts)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("simple_tokenizer_py")
    ap.add_argument("clip_py")
    ap.add_argument("notebook", help="notebooks/Prompt_Engineering_for_ImageNet.ipynb")
    ap.add_argument("clip_bpe_dir", help="folder with bpe_simple_vocab_16e6.txt.gz and hf/")
    ap.add_argument("-o", "--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
        "tokenizer_ref.h"))
    ap.add_argument("--ftfy-src", help="python-ftfy source tree: report the ftfy gap")
    args = ap.parse_args()
    st_path, clip_py, notebook, bpe_dir = (args.simple_tokenizer_py, args.clip_py,
                                           args.notebook, args.clip_bpe_dir)
    out_path = args.out
    gz = os.path.join(bpe_dir, "bpe_simple_vocab_16e6.txt.gz")
    st = load_simple_tokenizer(st_path)
    tok = st.SimpleTokenizer(gz)
    tokenize = load_clip_tokenize(clip_py, tok)
    classes, templates = imagenet_lists(notebook)

    # The HF folder must be the same vocabulary, line for line.
    hf_vocab = json.load(open(os.path.join(bpe_dir, "hf", "vocab.json"), encoding="utf-8"))
    assert hf_vocab == tok.encoder, "hf/vocab.json differs from the .gz vocabulary"
    hf_merges = open(os.path.join(bpe_dir, "hf", "merges.txt"), encoding="utf-8") \
        .read().strip().split("\n")[1:49152 - 256 - 2 + 1]
    assert dict(zip([tuple(m.split()) for m in hf_merges], range(len(hf_merges)))) == \
        tok.bpe_ranks, "hf/merges.txt differs from the .gz merges"

    cases = []  # (utf8 bytes, python text)
    seen = set()

    def add(b, text):
        assert b"\0" not in b  # the C API takes NUL-terminated strings
        if b in seen:
            return
        seen.add(b)
        cases.append((b, text))

    for t in handwritten():
        add(t.encode("utf-8"), t)
    for c in classes:
        add(("a photo of a %s." % c).encode("utf-8"), "a photo of a %s." % c)
    for c in ["St. Bernard", "potter's wheel"]:
        for tpl in templates:
            add(tpl.format(c).encode("utf-8"), tpl.format(c))
    for c in classes[::10]:
        add(c.encode("utf-8"), c)
    for b in invalid_utf8():
        add(b, b.decode("utf-8", "replace"))
    for t in random_strings(200, 20240601):
        add(t.encode("utf-8"), t)

    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    data = []
    rows = []
    n_trunc = 0
    for b, text in cases:
        ids = tok.encode(text)
        row = tokenize(text, context_length=CONTEXT, truncate=True)[0].tolist()
        n_row = min(len(ids) + 2, CONTEXT)
        assert all(v == 0 for v in row[n_row:])
        n_trunc += len(ids) + 2 > CONTEXT
        if len(ids) + 2 > CONTEXT:
            try:
                tokenize(text, context_length=CONTEXT, truncate=False)
                raise AssertionError("expected a RuntimeError")
            except RuntimeError:
                pass
        rows.append((b, ids, row[:n_row], not _valid(b)))

    # decode() references: id lists, incl. ones that are not valid UTF-8
    byte_sym = {v: k for k, v in tok.byte_encoder.items()}
    enc = tok.encoder
    dec_cases = []
    for t in ["a photo of a dog.", "Hello, world!", "caf\u00e9 \u00fcber", "\U0001f642 ok",
              "<|endoftext|>", "don't stop", "\u6771\u4eac"]:
        dec_cases.append(tok.encode(t))
    dec_cases.append(tokenize("a photo of a cat.", context_length=12)[0].tolist())
    dec_cases.append([enc[tok.byte_encoder[0xE2]], enc[tok.byte_encoder[0x82]],
                      enc["a</w>"]])
    dec_cases.append([enc[tok.byte_encoder[0xFF] + "</w>"], enc["x</w>"]])
    dec_cases.append([enc[tok.byte_encoder[0xED]], enc[tok.byte_encoder[0xA0]],
                      enc[tok.byte_encoder[0x80] + "</w>"]])
    dec_cases.append([enc["<"], enc["/"], enc["w"], enc["></w>"]])
    dec_cases.append([])
    del byte_sym
    decs = [(ids, tok.decode(ids)) for ids in dec_cases]

    facts = [0, 1, 187, 188, 255, 256, 320, 511, 512, 513, 1000, 10000, 49405, sot, eot]

    L = []
    w = L.append
    sha = hashlib.sha256(open(st_path, "rb").read()).hexdigest()
    w("/* Generated by tools/ref/gen_tokenizer_ref.py -- do not edit.")
    w(" * Reference ids from OpenAI's clip/simple_tokenizer.py (sha256 %s...)" % sha[:16])
    w(" * run with a stub ftfy (fix_text = identity) and clip.tokenize(context_length=%d,"
      % CONTEXT)
    w(" * truncate=True); regex %s, Python %s. %d strings, %d longer than the context."
      % (_regex_version(), sys.version.split()[0], len(rows), n_trunc))
    w(" * Strings that are not valid UTF-8 were given to Python decoded with")
    w(" * errors=\"replace\". */")
    w("#ifndef CT_TEST_TOKENIZER_REF_H")
    w("#define CT_TEST_TOKENIZER_REF_H")
    w("")
    w("#include <stdint.h>")
    w("")
    w("#define TREF_CONTEXT %d" % CONTEXT)
    w("#define TREF_VOCAB_SIZE %d" % len(tok.encoder))
    w("#define TREF_SOT %d" % sot)
    w("#define TREF_EOT %d" % eot)
    w("")
    w("typedef struct tref_case {")
    w("    const char *text;   /* UTF-8 (or not: see invalid_utf8)          */")
    w("    int invalid_utf8;   /* text is not valid UTF-8                    */")
    w("    int n_ids, n_row;   /* len(encode(text)), tokens before padding   */")
    w("    int ids_off, row_off; /* into tref_data                          */")
    w("} tref_case;")
    w("")
    data = []
    lines = []
    for b, ids, row, bad in rows:
        io = len(data)
        data += ids
        ro = len(data)
        data += row
        lines.append("    {%s, %d, %d, %d, %d, %d}," % (c_bytes(b), int(bad), len(ids), len(row),
                                                     io, ro))
    w("static const int32_t tref_data[%d] = {" % len(data))
    line = "   "
    for v in data:
        item = " %d," % v
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w("")
    w("static const tref_case tref_cases[%d] = {" % len(lines))
    L += lines
    w("};")
    w("")
    w("/* simple_tokenizer.decode(ids) */")
    w("typedef struct tref_decode {")
    w("    int n;")
    w("    int64_t ids[%d];" % max(1, max(len(i) for i, _ in decs)))
    w("    const char *text;")
    w("} tref_decode;")
    w("static const tref_decode tref_decodes[%d] = {" % len(decs))
    for ids, t in decs:
        w("    {%d, {%s}, %s}," % (len(ids), ", ".join(str(i) for i in ids) or "0",
                                  c_bytes(t.encode("utf-8"))))
    w("};")
    w("")
    w("/* tokenizer.decoder[id]: the vocabulary string of a few ids */")
    w("typedef struct tref_token {")
    w("    int id;")
    w("    const char *str;")
    w("} tref_token;")
    w("static const tref_token tref_tokens[%d] = {" % len(facts))
    for i in facts:
        w("    {%d, %s}," % (i, c_bytes(tok.decoder[i].encode("utf-8"))))
    w("};")
    w("")
    w("#endif")
    text = "\n".join(L) + "\n"
    with open(out_path, "w", encoding="ascii") as f:
        f.write(text)
    print("wrote %s: %d strings (%d truncated), %d bytes"
          % (out_path, len(rows), n_trunc, len(text)))
    if args.ftfy_src:
        ftfy_gap(args.ftfy_src, st, tok, [(text, None) for _, text in cases])


def _valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _regex_version():
    import importlib.metadata
    return importlib.metadata.version("regex")


if __name__ == "__main__":
    main()
