"""Emoji names and keywords from Debian's Unicode and CLDR packages.

  emoji-test.txt (unicode-data): every emoji sequence with its status, CLDR
    short name, group and subgroup; we take the fully-qualified ones.
  annotations/en.xml + annotationsDerived/en.xml (unicode-cldr-core):
    '<annotation cp="X">kw | kw | ...</annotation>' keywords, and the
    type="tts" short name. Keys there drop U+FE0F, so we look up without it.
  UnicodeData.txt (unicode-data): character names for single code points.
"""
import re

EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
UNICODE_DATA = "/usr/share/unicode/UnicodeData.txt"
CLDR_FILES = ["/usr/share/unicode/cldr/common/annotations/en.xml",
              "/usr/share/unicode/cldr/common/annotationsDerived/en.xml"]

_ANN = re.compile(r'<annotation cp="([^"]+)"( type="tts")?>([^<]*)</annotation>')


def strip_vs(s):
    return s.replace("\ufe0f", "")


def _unescape(s):
    return (s.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
            .replace("&quot;", '"').replace("&apos;", "'"))


def load_emoji_test(path=EMOJI_TEST):
    """[(codepoints tuple, string, name, group, subgroup)] fully-qualified, in file order."""
    out = []
    group = subgroup = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line.strip() and not line.startswith("#"):
                cps_part, rest = line.split(";", 1)
                status, comment = rest.split("#", 1)
                if status.strip() != "fully-qualified":
                    continue
                cps = tuple(int(c, 16) for c in cps_part.split())
                # comment: " 😀 E1.0 grinning face"
                m = re.match(r"\s*\S+\s+E\d+\.\d+\s+(.*)$", comment.strip("\n"))
                name = m.group(1).strip() if m else ""
                out.append((cps, "".join(chr(c) for c in cps), name, group, subgroup))
    return out


def load_cldr(paths=CLDR_FILES):
    """{string without FE0F: (tts name or None, [keywords])}; later files add
    entries the earlier ones lack (derived = skin-tone/gender variants)."""
    out = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        cur = {}
        for cp, tts, body in _ANN.findall(text):
            key = strip_vs(_unescape(cp))
            name, kws = cur.get(key, (None, []))
            if tts:
                name = _unescape(body).strip()
            else:
                kws = [_unescape(k).strip() for k in body.split("|") if k.strip()]
            cur[key] = (name, kws)
        for k, v in cur.items():
            out.setdefault(k, v)
    return out


def load_unicode_names(path=UNICODE_DATA):
    """{code point: lower-case character name} (ranges and controls skipped)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split(";")
            if len(fields) < 2 or fields[1].startswith("<"):
                continue
            out[int(fields[0], 16)] = fields[1].lower()
    return out


def caption_name(name):
    """CLDR short name as caption text: 'flag: Germany' -> 'flag of Germany',
    'waving hand: medium skin tone' -> 'waving hand, medium skin tone'."""
    name = name.replace("\u2019", "'")
    if name.startswith("flag: "):
        return "flag of " + name[6:]
    if name.startswith("keycap: "):
        return "keycap " + name[8:]
    return name.replace(": ", ", ")
