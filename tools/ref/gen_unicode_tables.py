#!/usr/bin/python3
"""Write src/model/unicode_tables.inc: the Unicode and HTML tables that the C
CLIP tokenizer (src/model/tokenizer.c) needs to reproduce OpenAI's
clip/simple_tokenizer.py exactly.

Run with Debian's Python and its python3-regex (the `regex` module that
simple_tokenizer.py imports as `re`):
    /usr/bin/python3 tools/ref/gen_unicode_tables.py [out.inc]

Every table is measured from the very functions the Python tokenizer calls,
codepoint by codepoint, instead of being rebuilt from the Unicode data files,
so that quirks come along for free:
  - the three character classes of the pre-tokenizer pattern are tested with
    the pattern's own flag (re.IGNORECASE): under it U+0345 (combining
    ypogegrammeni, which case-folds to a letter) matches none of them;
  - `\\s` of the `regex` module (whitespace_clean) and str.isspace() (the
    str.strip() calls) differ on U+001C..U+001F;
  - the literal parts of the pattern are compared case-insensitively: U+017F
    (long s) matches 's';
  - str.lower() is tabulated per codepoint (U+0130 gives two codepoints); its
    one context-dependent rule, the final sigma, needs the Cased and
    Case_Ignorable properties, which are measured through str.lower() itself
    (see sigma_props below);
  - html.unescape's named entities, its remapped numeric references and the
    numeric references it drops come from the html module.
"""
import html
import html.entities
import importlib.metadata
import os
import sys
import unicodedata

import regex

MAX_CP = 0x110000

# Flag bits (keep in sync with tokenizer.c, which reads only these names).
F_LETTER = 0x01   # [\p{L}]          with re.IGNORECASE
F_NUMBER = 0x02   # [\p{N}]          with re.IGNORECASE
F_OTHER = 0x04    # [^\s\p{L}\p{N}]  with re.IGNORECASE
F_RE_SPACE = 0x08  # \s of the regex module (no flags): whitespace_clean
F_PY_SPACE = 0x10  # str.isspace(): str.strip()
F_CASED = 0x20     # Cased, as str.lower()'s final-sigma rule sees it
F_CASE_IGN = 0x40  # Case_Ignorable, likewise


def matcher(pattern, flags=0):
    r = regex.compile(pattern, flags)
    return lambda ch: r.fullmatch(ch) is not None


def sigma_props(ch):
    """(cased, case_ignorable) of ch as CPython's str.lower() final-sigma rule
    uses them: U+03A3 lowers to final U+03C2 when preceded by a cased
    character (skipping case-ignorable ones) and not followed by one.
      ch + S      is final  <=>  cased and not ignorable
      'A' + ch + S is final <=>  ignorable or cased
      'A' + S + ch is final <=>  ignorable or not cased
    A character that is both cased and ignorable is skipped like any other
    ignorable one, so it is reported as ignorable only (same behaviour)."""
    final = "\u03c2"
    x = (ch + "\u03a3").lower().endswith(final)
    y = ("A" + ch + "\u03a3").lower().endswith(final)
    z = ("A\u03a3" + ch).lower()[1] == final
    ignorable = y and z
    cased = x and not ignorable
    return cased, ignorable


def regex_unicode_version():
    """Newest Unicode version whose new letters the regex module knows."""
    letter = matcher(r"\p{L}")
    probes = [("16.0", "\U00010D50"), ("15.1", "\U0002EBF0"), ("15.0", "\U00011F04"),
              ("14.0", "\U00010570")]
    for ver, ch in probes:
        if letter(ch):
            return ver
    return "< 14.0"


def ranges_of(values):
    """Run-length form: [(start, value)] where value holds until next start."""
    out = []
    prev = None
    for cp, v in enumerate(values):
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def c_string(s):
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\?' or b < 0x20 or b >= 0x7F:
            out.append("\\%03o" % b)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "model",
        "unicode_tables.inc")

    is_letter = matcher(r"[\p{L}]", regex.IGNORECASE)
    is_number = matcher(r"[\p{N}]", regex.IGNORECASE)
    is_other = matcher(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    is_re_space = matcher(r"\s")

    flags = []
    lower1 = []
    lower_multi = []
    for cp in range(MAX_CP):
        ch = chr(cp)
        f = 0
        if is_letter(ch):
            f |= F_LETTER
        if is_number(ch):
            f |= F_NUMBER
        if is_other(ch):
            f |= F_OTHER
        if is_re_space(ch):
            f |= F_RE_SPACE
        if ch.isspace():
            f |= F_PY_SPACE
        cased, ign = sigma_props(ch)
        if cased:
            f |= F_CASED
        if ign:
            f |= F_CASE_IGN
        flags.append(f)
        if cp == 0x3A3:
            continue  # context-dependent; tokenizer.c applies the rule
        lo = ch.lower()
        if lo != ch:
            if len(lo) == 1:
                lower1.append((cp, ord(lo[0])))
            else:
                lower_multi.append((cp, [ord(c) for c in lo]))
    # The pre-tokenizer classes never overlap (tokenizer.c relies on it only
    # for speed; the alternatives are still tried in the pattern's order).
    for cp, f in enumerate(flags):
        n = bin(f & (F_LETTER | F_NUMBER | F_OTHER)).count("1")
        assert n <= 1, hex(cp)
    assert all(len(v) <= 3 for _, v in lower_multi)
    max_lower = max([1] + [len(v) for _, v in lower_multi])

    # Case-insensitive matches of the pattern's literal letters: any codepoint
    # other than the letter itself that re.IGNORECASE lets match it.
    fold = []
    for a in "abcdefghijklmnopqrstuvwxyz":
        m = matcher(regex.escape(a), regex.IGNORECASE)
        for cp in range(MAX_CP):
            if cp != ord(a) and m(chr(cp)):
                fold.append((cp, a))
    fold.sort()
    for punct in "<|'":
        m = matcher(regex.escape(punct), regex.IGNORECASE)
        assert [cp for cp in range(MAX_CP) if m(chr(cp))] == [ord(punct)]

    ents = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode("utf-8"))
    assert all(1 <= len(v) <= 2 for _, v in ents)
    assert all(len(k) <= 33 and k.isascii() for k, _ in ents)
    bad_refs = sorted(html._invalid_charrefs.items())
    assert all(len(v) == 1 for _, v in bad_refs)
    bad_cps = sorted(html._invalid_codepoints)

    fr = ranges_of(flags)
    L = []
    w = L.append
    w("/* Generated by tools/ref/gen_unicode_tables.py -- do not edit.")
    w(" * Python %s, unicodedata %s (str.lower, str.isspace, final sigma);"
      % (sys.version.split()[0], unicodedata.unidata_version))
    w(" * regex module %s (Unicode %s for \\p{L}, \\p{N}, \\s); html.entities.html5"
      % (importlib.metadata.version("regex"), regex_unicode_version()))
    w(" * (%d names). Included by tokenizer.c only. */" % len(ents))
    w("")
    w("#define CTU_LETTER 0x%02x   /* [\\p{L}] under re.IGNORECASE */" % F_LETTER)
    w("#define CTU_NUMBER 0x%02x   /* [\\p{N}] under re.IGNORECASE */" % F_NUMBER)
    w("#define CTU_OTHER 0x%02x    /* [^\\s\\p{L}\\p{N}] under re.IGNORECASE */" % F_OTHER)
    w("#define CTU_RE_SPACE 0x%02x /* \\s of the regex module */" % F_RE_SPACE)
    w("#define CTU_PY_SPACE 0x%02x /* str.isspace() */" % F_PY_SPACE)
    w("#define CTU_CASED 0x%02x    /* Cased (final-sigma rule) */" % F_CASED)
    w("#define CTU_CASE_IGN 0x%02x /* Case_Ignorable (final-sigma rule) */" % F_CASE_IGN)
    w("#define CTU_LOWER_MAX %d    /* most codepoints str.lower() makes of one */" % max_lower)
    w("")
    w("/* Flags of [lo, next lo); the first entry starts at 0. */")
    w("static const struct ctu_flag_range {")
    w("    uint32_t lo;")
    w("    uint8_t flags;")
    w("} ctu_flag_ranges[%d] = {" % len(fr))
    line = "   "
    for lo, f in fr:
        item = " {0x%x, 0x%02x}," % (lo, f)
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w("")
    w("/* str.lower() of codepoints that map to one other codepoint (sorted). */")
    w("static const struct ctu_lower1 {")
    w("    uint32_t cp, lower;")
    w("} ctu_lower1[%d] = {" % len(lower1))
    line = "   "
    for cp, lo in lower1:
        item = " {0x%x, 0x%x}," % (cp, lo)
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w("")
    w("/* str.lower() of codepoints that map to several (sorted). */")
    w("static const struct ctu_lower_multi {")
    w("    uint32_t cp;")
    w("    uint8_t n;")
    w("    uint32_t out[3];")
    w("} ctu_lower_multi[%d] = {" % len(lower_multi))
    for cp, v in lower_multi:
        w("    {0x%x, %d, {%s}}," % (cp, len(v), ", ".join("0x%x" % c for c in v)))
    w("};")
    w("")
    w("/* Codepoints other than the letter itself that match a literal ASCII")
    w(" * letter of the pattern under re.IGNORECASE (sorted). */")
    w("static const struct ctu_fold {")
    w("    uint32_t cp;")
    w("    char ascii;")
    w("} ctu_fold[%d] = {" % len(fold))
    line = "   "
    for cp, a in fold:
        item = " {0x%x, '%s'}," % (cp, a)
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w("")
    w("/* HTML5 named character references, sorted by name (strcmp order). */")
    w("static const struct ctu_entity {")
    w("    const char *name;")
    w("    uint32_t cp[2]; /* cp[1] == 0: one codepoint */")
    w("} ctu_entities[%d] = {" % len(ents))
    for k, v in ents:
        cps = [ord(c) for c in v] + [0]
        w("    {%s, {0x%x, 0x%x}}," % (c_string(k), cps[0], cps[1]))
    w("};")
    w("")
    w("/* html.unescape: numeric references replaced by another codepoint. */")
    w("static const struct ctu_charref {")
    w("    uint32_t num, cp;")
    w("} ctu_invalid_charrefs[%d] = {" % len(bad_refs))
    line = "   "
    for num, v in bad_refs:
        item = " {0x%x, 0x%x}," % (num, ord(v))
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w("")
    w("/* html.unescape: numeric references that are dropped (sorted). */")
    w("static const uint32_t ctu_invalid_codepoints[%d] = {" % len(bad_cps))
    line = "   "
    for cp in bad_cps:
        item = " 0x%x," % cp
        if len(line) + len(item) > 96:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    with open(out_path, "w", encoding="ascii") as f:
        f.write("\n".join(L) + "\n")
    print("wrote %s: %d flag ranges, %d+%d lowercase, %d fold, %d entities"
          % (out_path, len(fr), len(lower1), len(lower_multi), len(fold), len(ents)))


if __name__ == "__main__":
    main()
