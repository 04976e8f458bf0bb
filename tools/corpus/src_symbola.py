"""Symbola: outline (black-and-white) drawings of the single-code-point
emoji the font covers.

Taken: fully-qualified emoji of emoji-test.txt that are one code point (plus
an optional U+FE0F) and present in Symbola's cmap, without the keycap bases,
regional indicators and skin-tone components. Drawn black on white.

Captions: "a black and white drawing of {name}", "{name}" with the
UnicodeData.txt character name and the CLDR short name when they differ,
plus the CLDR keywords.
"""
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

import emoji_data
from common import article, safe_name
from emoji_data import caption_name
from items import emit

NAME = "symbola"
FONT = "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"
PACKAGES = ["fonts-symbola", "unicode-data", "unicode-cldr-core"]
PX = 160

_font = None


def plan(opts):
    cmap = TTFont(FONT, lazy=True).getBestCmap()
    names = emoji_data.load_unicode_names()
    cldr = emoji_data.load_cldr()
    tasks, seen = [], set()
    missing = 0
    for cps, s, name, group, subgroup in emoji_data.load_emoji_test():
        core = [c for c in cps if c != 0xFE0F]
        if len(core) != 1 or core[0] < 0xA9 or subgroup == "skin-tone":
            continue
        cp = core[0]
        if cp in seen:
            continue
        seen.add(cp)
        if cp not in cmap:
            missing += 1
            continue
        _, kws = cldr.get(chr(cp), (None, []))
        tasks.append(("u%04x" % cp, chr(cp), name, names.get(cp, ""), kws, subgroup))
    return tasks, {"not in font": missing}


def render(task, opts):
    global _font
    stem, ch, name, uname, kws, subgroup = task
    if _font is None:
        _font = ImageFont.truetype(FONT, PX)
    im = Image.new("RGBA", (PX * 2, PX * 2), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((PX // 2, PX // 2), ch, font=_font, fill=(0, 0, 0, 255))
    cn = caption_name(name)
    caps = ["a black and white drawing of %s" % article(cn), cn]
    if uname and uname != cn.lower():
        caps.append(uname)
    caps += [k.replace("\u2019", "'") for k in kws if k.lower() != name.lower()]
    class_texts = [cn] if subgroup == "clothing" else []
    return emit(opts.out, NAME, safe_name(stem), im, opts.size, caps, class_texts)
