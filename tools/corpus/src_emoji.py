"""Noto Color Emoji: every fully-qualified emoji of emoji-test.txt.

Rendered with Pillow's FreeType (CBDT colour bitmaps need size 109 and
embedded_color) through libraqm/HarfBuzz, which forms ZWJ sequences, flags,
keycaps and skin-tone modifiers into one glyph. A sequence the font does not
form into one glyph (advance wider than 1.25 glyphs) is skipped and counted.

Captions: "an emoji of {a/an name}", "{name}", and each CLDR keyword as it
stands ("clothing", "running shoe"): an article would be wrong as often as
right on keywords that are adjectives or mass nouns.
"""
from PIL import Image, ImageDraw, ImageFont, features

import emoji_data
from common import article, safe_name
from emoji_data import caption_name
from items import emit

NAME = "emoji"
FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
PACKAGES = ["fonts-noto-color-emoji", "unicode-data", "unicode-cldr-core"]

_font = None


def _get_font():
    global _font
    if _font is None:
        layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
        _font = ImageFont.truetype(FONT, 109, layout_engine=layout)
    return _font


def captions_for(name, keywords, kind="an emoji of"):
    cn = caption_name(name)
    caps = ["%s %s" % (kind, article(cn)), cn]
    caps += [k.replace("\u2019", "'") for k in keywords
             if k.lower() != name.lower()]
    return caps


def plan(opts):
    cldr = emoji_data.load_cldr()
    tasks = []
    for cps, s, name, group, subgroup in emoji_data.load_emoji_test():
        _, kws = cldr.get(emoji_data.strip_vs(s), (None, []))
        stem = safe_name("-".join("%x" % c for c in cps if c != 0xFE0F))
        tasks.append((stem, s, name, kws, subgroup))
    notes = {"raqm": features.check("raqm")}
    return tasks, notes


def render(task, opts):
    stem, s, name, kws, subgroup = task
    font = _get_font()
    single = font.getlength("\U0001F600")
    if font.getlength(s) > 1.25 * single:
        return "sequence not formed into one glyph"
    im = Image.new("RGBA", (int(single) + 40, 170), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((20, 20), s, font=font, embedded_color=True)
    caps = captions_for(name, kws)
    # Only the clothing subgroup is classified: "dress" or "boot" elsewhere in
    # emoji names are not garments.
    class_texts = [caption_name(name)] if subgroup == "clothing" else []
    return emit(opts.out, NAME, stem, im, opts.size, caps, class_texts)
