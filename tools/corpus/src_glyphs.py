"""Digits and letters: Hershey stroke fonts drawn with pen jitter, and
handwriting / print TrueType fonts, several seeded renderings per glyph.

Each rendering draws one character with a random small rotation (+-12 deg),
shear (+-0.2), horizontal scale (0.8-1.15) and stroke thickness; Hershey
strokes also get per-vertex jitter. Even renderings are white on black (the
MNIST look), odd ones black on white. Seeds come from (font, character,
rendering index), so the output does not depend on the number of workers.

Captions (digit 7 in a handwriting font):
  "a handwritten digit seven", "a handwritten 7", "the number 7",
  "the number seven", "a digit 7"
Print fonts say "printed" for "handwritten". Letters: "the letter A",
"a capital letter A" / "a lowercase letter a", "a handwritten letter A".
"""
import math
import os

from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import hershey
from common import rng_of, safe_name
from items import emit

HERSHEY_DIR = "/usr/share/hershey-fonts"
# (file stem, kind): the script faces and single-stroke sans read as pen
# writing; the double-stroke serif faces as print.
HERSHEY = [("cursive", "hand"), ("scripts", "hand"), ("scriptc", "hand"),
           ("futural", "hand"), ("futuram", "hand"), ("rowmans", "hand"),
           ("rowmand", "print"), ("timesr", "print"), ("timesi", "print")]

# (package, font file, kind)
TTF = [
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeBuild-Regular.otf", "hand"),
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeConnect-Regular.otf", "hand"),
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeCreate-Regular.otf", "hand"),
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf", "hand"),
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeMentor-Regular.otf", "hand"),
    ("fonts-bwht", "/usr/share/fonts/opentype/bwht/BecauseWeOrganize-Regular.otf", "hand"),
    ("fonts-humor-sans", "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf", "hand"),
    ("fonts-dkg-handwriting", "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf", "hand"),
    ("fonts-dkg-handwriting", "/usr/share/fonts/truetype/fifthhorseman/dkgIt.ttf", "hand"),
    ("fonts-breip", "/usr/share/fonts/truetype/breip/Breip.ttf", "hand"),
    ("fonts-femkeklaver", "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf", "hand"),
    ("fonts-rufscript", "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf", "hand"),
    ("fonts-kristi", "/usr/share/fonts/truetype/kristi/Kristi.ttf", "hand"),
    ("fonts-sjfonts", "/usr/share/fonts/truetype/sjfonts/Delphine.ttf", "hand"),
    ("fonts-sjfonts", "/usr/share/fonts/truetype/sjfonts/SteveHand.ttf", "hand"),
    ("fonts-tomsontalks", "/usr/share/fonts/truetype/tomsontalks/TomsonTalks.ttf", "hand"),
    ("fonts-dancingscript", "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
     "hand"),
    ("fonts-kaushanscript", "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
     "hand"),
    ("fonts-comic-neue", "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf", "print"),
    ("fonts-opendyslexic", "/usr/share/fonts/opentype/opendyslexic/OpenDyslexic-Regular.otf",
     "print"),
    ("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "print"),
    ("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", "print"),
]

HERSHEY_PACKAGES = ["hershey-fonts-data"]
TTF_PACKAGES = sorted({p for p, _, _ in TTF})

DIGITS = "0123456789"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CANVAS = 256
PX = 160  # glyph height on the canvas

_fonts = {}
_hershey = {}


def captions(ch, kind):
    adj = "handwritten" if kind == "hand" else "printed"
    if ch in DIGITS:
        w = WORDS[int(ch)]
        return ["a %s digit %s" % (adj, w), "a %s %s" % (adj, ch), "the number %s" % ch,
                "the number %s" % w, "a digit %s" % ch]
    case = "a capital letter %s" % ch if ch.isupper() else "a lowercase letter %s" % ch
    return ["the letter %s" % ch, case, "a %s letter %s" % (adj, ch)]


def _reps(ch, opts):
    return opts.digit_reps if ch in DIGITS else opts.letter_reps


def plan_for(source, opts):
    tasks, notes = [], {}
    if source == "hershey":
        for stem, kind in HERSHEY:
            path = os.path.join(HERSHEY_DIR, stem + ".jhf")
            glyphs = hershey.parse(path)
            for ch in DIGITS + LETTERS:
                if hershey.ascii_glyph(glyphs, ch) is None:
                    notes["missing glyphs"] = notes.get("missing glyphs", 0) + 1
                    continue
                for r in range(_reps(ch, opts)):
                    tasks.append((source, path, kind, ch, r))
    else:
        for _, path, kind in TTF:
            if not os.path.exists(path):
                notes["font files absent"] = notes.get("font files absent", 0) + 1
                continue
            cmap = TTFont(path, lazy=True, fontNumber=0).getBestCmap()
            for ch in DIGITS + LETTERS:
                if ord(ch) not in cmap:
                    notes["missing glyphs"] = notes.get("missing glyphs", 0) + 1
                    continue
                for r in range(_reps(ch, opts)):
                    tasks.append((source, path, kind, ch, r))
    return tasks, notes


def _affine(rng):
    """2x2 matrix: rotation, shear and horizontal scale."""
    a = math.radians(rng.uniform(-12, 12))
    sh = rng.uniform(-0.2, 0.2)
    sx = rng.uniform(0.8, 1.15)
    c, s = math.cos(a), math.sin(a)
    # R @ Shear @ Scale
    m00, m01 = sx, sh
    m10, m11 = 0.0, 1.0
    return (c * m00 - s * m10, c * m01 - s * m11, s * m00 + c * m10, s * m01 + c * m11)


def _draw_hershey(strokes, rng):
    m = _affine(rng)
    jit = rng.uniform(0.15, 0.6)
    pts = [[(m[0] * x + m[1] * y + rng.gauss(0, jit), m[2] * x + m[3] * y + rng.gauss(0, jit))
            for x, y in st] for st in strokes]
    xs = [p[0] for st in pts for p in st]
    ys = [p[1] for st in pts for p in st]
    k = PX / max(max(ys) - min(ys), (max(xs) - min(xs)) * 0.8, 1.0)
    ox = CANVAS / 2 - k * (min(xs) + max(xs)) / 2
    oy = CANVAS / 2 - k * (min(ys) + max(ys)) / 2
    width = max(2, int(round(PX * rng.uniform(0.045, 0.13))))
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(mask)
    for st in pts:
        xy = [(ox + k * x, oy + k * y) for x, y in st]
        if len(xy) > 1:
            d.line(xy, fill=255, width=width, joint="curve")
        r = width / 2.0
        for x, y in (xy[0], xy[-1]):
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return mask


def _draw_ttf(path, ch, rng):
    font = _fonts.get(path)
    if font is None:
        font = _fonts[path] = ImageFont.truetype(path, PX)
    big = CANVAS * 3 // 2  # room for the rotation, shear and tall script glyphs
    mask = Image.new("L", (big, big), 0)
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")  # centre the ink, not the em box
    ImageDraw.Draw(mask).text((big // 2 - (x0 + x1) // 2, big // 2 - (y0 + y1) // 2), ch,
                              font=font, fill=255, anchor="ls")
    m = _affine(rng)
    # Image.transform maps output to input: pass the inverse about the centre.
    det = m[0] * m[3] - m[1] * m[2]
    inv = (m[3] / det, -m[1] / det, -m[2] / det, m[0] / det)
    c = big / 2.0
    coeffs = (inv[0], inv[1], c - inv[0] * c - inv[1] * c,
              inv[2], inv[3], c - inv[2] * c - inv[3] * c)
    mask = mask.transform((big, big), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    t = rng.choice([-1, 0, 0, 1, 2])  # thinner, as drawn, thicker
    if t < 0:
        mask = mask.filter(ImageFilter.MinFilter(3))
    elif t > 0:
        mask = mask.filter(ImageFilter.MaxFilter(2 * t + 1))
    return mask


def render(task, opts):
    source, path, kind, ch, r = task
    font_id = os.path.splitext(os.path.basename(path))[0]
    rng = rng_of(font_id, ch, r)
    if source == "hershey":
        glyphs = _hershey.get(path)
        if glyphs is None:
            glyphs = _hershey[path] = hershey.parse(path)
        mask = _draw_hershey(hershey.ascii_glyph(glyphs, ch), rng)
    else:
        mask = _draw_ttf(path, ch, rng)
    white_on_black = r % 2 == 0
    ink = (255, 255, 255) if white_on_black else (0, 0, 0)
    bg = (0, 0, 0) if white_on_black else (255, 255, 255)
    im = Image.new("RGBA", mask.size, ink + (0,))
    im.putalpha(mask)
    what = ("digit" if ch in DIGITS else "upper" if ch.isupper() else "lower") + ch.lower()
    stem = safe_name("%s_%s_%d" % (font_id, what, r))
    return emit(opts.out, source, stem, im, opts.size, captions(ch, kind), bg=bg)
