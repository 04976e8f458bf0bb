"""Procedural garments: parametric outline drawings of the ten kinds of thing
Fashion-MNIST shows, one seeded random variant per rendering.

The Debian sources hold few clothing images and no pullover at all (see
docs/corpus.md); these fill every class with simple flat shapes: a T-shirt
(short sleeves), pullover (long sleeves, ribbed hem), shirt (long sleeves,
collar, button placket), coat (long body, opening, lapels), dress (bodice,
flared skirt), trousers (two legs), bag (body, handle), and side views of a
sandal (sole, straps), sneaker (low upper, thick sole) and ankle boot (shaft,
heel). Proportions, angles, grey level and texture are drawn from a seeded
generator; shoes face left or right. They are drawn grey on black at 4x and
reduced like every other image. No Fashion-MNIST image is used or imitated
pixel by pixel; the shapes are written from the garments' common outlines.

Captions: the clothing synonyms of the class (clothing.py) plus
"a drawing of {synonym}".
"""
import math

from PIL import Image, ImageDraw, ImageFilter, ImageOps

import clothing
from common import rng_of
from items import emit

NAME = "garments"
PACKAGES = []
S = 4  # supersampling: design space is 100 x 100, drawn at 400 x 400

# class -> (file slug, a trigger phrase clothing.classify maps to the class)
KINDS = {
    "T-shirt/top": ("tshirt", "t-shirt"), "Trouser": ("trousers", "trousers"),
    "Pullover": ("pullover", "pullover"), "Dress": ("dress", "dress"),
    "Coat": ("coat", "coat"), "Sandal": ("sandal", "sandal"), "Shirt": ("shirt", "shirt"),
    "Sneaker": ("sneaker", "sneaker"), "Bag": ("bag", "handbag"),
    "Ankle boot": ("ankleboot", "ankle boot"),
}


def _top(rng, sleeve, body_len):
    """Upper garment outline, symmetric about x = 50; sleeve 'short'/'long'."""
    cx, y0 = 50.0, rng.uniform(8, 14)
    sw = rng.uniform(17, 23)                # shoulder half-width
    bw = sw + rng.uniform(-2, 3)            # hem half-width
    nw, nd = rng.uniform(5, 9), rng.uniform(3, 9)
    aw = rng.uniform(14, 20)                # armhole depth
    if sleeve == "short":
        a, L, cw = math.radians(rng.uniform(25, 45)), rng.uniform(13, 20), rng.uniform(10, 14)
    else:
        a, L, cw = math.radians(rng.uniform(58, 72)), rng.uniform(52, 66), rng.uniform(9, 13)
    y1 = min(98.0, y0 + body_len)
    d, perp = (math.cos(a), math.sin(a)), (-math.sin(a), math.cos(a))
    sh = (cx + sw, y0 + 3)
    out = (sh[0] + L * d[0], sh[1] + L * d[1])
    inn = (out[0] + cw * perp[0], out[1] + cw * perp[1])
    pit = (cx + sw - 1.5, y0 + 3 + aw)
    right = [(cx + nw, y0), sh, out, inn, pit, (cx + bw, y1)]
    left = [(2 * cx - x, y) for x, y in reversed(right)]
    poly = right + left + [(cx - nw * 0.6, y0 + nd * 0.8), (cx, y0 + nd),
                           (cx + nw * 0.6, y0 + nd * 0.8)]
    return poly, (cx, y0, y1, nw, nd, bw, out, inn)


def _shape(cls, rng):
    """([polygons], [detail polylines]) in the 100 x 100 design space."""
    lines = []
    if cls == "T-shirt/top":
        poly, _ = _top(rng, "short", rng.uniform(68, 80))
        return [poly], lines
    if cls == "Pullover":
        poly, (cx, y0, y1, nw, nd, bw, out, inn) = _top(rng, "long", rng.uniform(70, 80))
        rib = y1 - rng.uniform(4, 7)
        lines += [[(cx - bw, rib), (cx + bw, rib)],
                  [out, inn], [(2 * cx - out[0], out[1]), (2 * cx - inn[0], inn[1])]]
        return [poly], lines
    if cls == "Shirt":
        poly, (cx, y0, y1, nw, nd, bw, out, inn) = _top(rng, "long", rng.uniform(72, 84))
        lines += [[(cx - nw, y0), (cx - 2, y0 + nd + 6), (cx, y0 + nd)],
                  [(cx + nw, y0), (cx + 2, y0 + nd + 6), (cx, y0 + nd)],
                  [(cx, y0 + nd), (cx, y1)]]
        return [poly], lines
    if cls == "Coat":
        poly, (cx, y0, y1, nw, nd, bw, out, inn) = _top(rng, "long", rng.uniform(80, 88))
        lap = y0 + nd + rng.uniform(12, 22)
        lines += [[(cx - nw, y0), (cx - nw - 3, y0 + 10), (cx, lap)],
                  [(cx + nw, y0), (cx + nw + 3, y0 + 10), (cx, lap)], [(cx, lap), (cx, y1)]]
        return [poly], lines
    if cls == "Dress":
        cx, y0 = 50.0, rng.uniform(4, 10)
        sw, nw, nd = rng.uniform(10, 15), rng.uniform(4, 8), rng.uniform(3, 10)
        waist, ww = y0 + rng.uniform(26, 36), rng.uniform(8, 12)
        hem, hw = rng.uniform(92, 98), rng.uniform(24, 42)
        right = [(cx + nw, y0), (cx + sw, y0 + 2), (cx + sw + rng.uniform(0, 4), y0 + 12),
                 (cx + ww, waist), (cx + hw, hem)]
        left = [(2 * cx - x, y) for x, y in reversed(right)]
        lines.append([(cx - ww, waist), (cx + ww, waist)])
        return [right + left + [(cx, y0 + nd)]], lines
    if cls == "Trouser":
        cx, yw, yh = 50.0, rng.uniform(2, 6), rng.uniform(94, 98)
        wb, flare, lw = rng.uniform(15, 21), rng.uniform(-3, 5), rng.uniform(13, 19)
        ho = wb + flare
        lw = min(lw, ho - 1.5)
        yc = yw + rng.uniform(26, 36)
        poly = [(cx - wb, yw), (cx + wb, yw), (cx + ho, yh), (cx + ho - lw, yh), (cx, yc),
                (cx - ho + lw, yh), (cx - ho, yh)]
        lines += [[(cx - wb, yw + 5), (cx + wb, yw + 5)], [(cx, yw + 5), (cx, yc - 4)]]
        return [poly], lines
    if cls == "Bag":
        cx, top, bot = 50.0, rng.uniform(35, 50), rng.uniform(88, 96)
        tw, bw = rng.uniform(24, 38), rng.uniform(28, 46)
        body = [(cx - tw, top), (cx + tw, top), (cx + bw, bot), (cx - bw, bot)]
        hx, hy = tw * rng.uniform(0.35, 0.7), rng.uniform(8, top - 12)
        handle = [(cx - hx + 2 * hx * t / 16.0,
                   top - (top - hy) * math.sin(math.pi * t / 16.0)) for t in range(17)]
        if rng.random() < 0.5:
            lines.append([(cx - tw, top + 12), (cx + tw, top + 12)])
        return [body], lines + [("handle", handle)]
    # Footwear, side view, toe to the right (mirrored at random later).
    j = lambda v: v + rng.uniform(-2.5, 2.5)  # noqa: E731
    if cls == "Sneaker":
        h = rng.uniform(0, 12)
        poly = [(j(5), 86), (j(7), j(52 + h)), (j(22), j(48 + h)), (j(38), j(55 + h)),
                (j(47), j(44 + h)), (j(55), j(50 + h)), (j(72), j(60 + h / 2)), (j(88), 67),
                (96, j(78)), (j(94), 88), (20, 89)]
        lines += [[(6, 80), (95, 80)], [(48, 52 + h), (70, 62 + h / 2)]]
        return [poly], lines
    if cls == "Ankle boot":
        heel = rng.uniform(0, 12)
        shaft = rng.uniform(8, 28)
        poly = [(j(10), 94), (j(10), shaft), (j(40), shaft), (j(44), j(55)), (j(70), j(64)),
                (j(90), j(72)), (96, j(84)), (j(93), 94), (42, 94), (36, 94 - heel),
                (28, 94 - heel), (27, 94)]
        lines.append([(12, 88), (93, 88)])
        return [poly], lines
    # Sandal: a sole with straps over an open foot.
    heel = rng.uniform(0, 22)
    sole = [(4, 92 - heel), (30, 92 - heel * 0.9), (60, 90), (96, 88), (96, 94), (60, 96),
            (30, 96 - heel * 0.8), (26, 96), (20, 96), (18, 96 - heel * 0.5), (4, 96 - heel)]
    straps = []
    for x0, x1, top in ((rng.uniform(50, 60), rng.uniform(78, 90), rng.uniform(58, 72)),
                        (rng.uniform(30, 40), rng.uniform(50, 58), rng.uniform(50, 66)),
                        (rng.uniform(6, 12), rng.uniform(22, 30), rng.uniform(30, 50))):
        straps.append(("strap", [(x0 + (x1 - x0) * t / 12.0,
                                  92 - (92 - top) * math.sin(math.pi * t / 12.0))
                                 for t in range(13)]))
    return [sole], straps


def plan(opts):
    return [(cls, r) for cls in clothing.CLASSES for r in range(opts.garment_reps)], {}


def render(task, opts):
    cls, r = task
    slug, trigger = KINDS[cls]
    rng = rng_of("garment", cls, r)
    polys, lines = _shape(cls, rng)
    px = 100 * S
    mask = Image.new("L", (px, px), 0)
    detail = Image.new("L", (px, px), 0)
    dm, dd = ImageDraw.Draw(mask), ImageDraw.Draw(detail)
    for p in polys:
        dm.polygon([(x * S, y * S) for x, y in p], fill=255)
    for ln in lines:
        if isinstance(ln, tuple):  # handle / strap: part of the object's shape
            dm.line([(x * S, y * S) for x, y in ln[1]], fill=255,
                    width=int(rng.uniform(3, 6) * S), joint="curve")
        else:
            dd.line([(x * S, y * S) for x, y in ln], fill=255, width=max(2, S), joint="curve")
    grey = rng.randint(90, 235)
    # Fabric texture from the seeded generator (Image.effect_noise uses the C
    # library's rand(), which would make the output depend on the worker).
    n = int(rng.uniform(25, 100))
    amp = rng.uniform(0.1, 0.35)
    noise = Image.frombytes("L", (n, n), rng.randbytes(n * n)).resize(
        (px, px), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    tone = Image.eval(noise, lambda v: max(0, min(255, grey + int((v - 128) * amp))))
    # Seams, collars and soles: 40% darker lines on the garment.
    tone = Image.composite(Image.eval(tone, lambda v: v * 6 // 10), tone, detail)
    im = Image.merge("RGBA", (tone, tone, tone, mask))
    if cls in ("Sandal", "Sneaker", "Ankle boot") and r % 2 == 1:
        im = ImageOps.mirror(im)
    syn = clothing.SYNONYMS[cls]
    caps = ["a drawing of %s" % syn[0], "a grey drawing of %s on black" % syn[0]]
    return emit(opts.out, NAME, "%s_%02d" % (slug, r), im, opts.size, caps, [trigger],
                bg=(0, 0, 0))
