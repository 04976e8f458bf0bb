"""Shared helpers for the corpus builder: image normalisation, caption text,
deterministic seeds, and Debian package metadata for SOURCES.md.

Every image leaves here as an RGB square PNG of side `size` with the object
centred: the object's bounding box (alpha > ALPHA_T, or pixels unlike the
corner colour for images without alpha) is padded to a square with MARGIN of
the side free on each edge, resized with premultiplied alpha, and composited
over the background.
"""
import hashlib
import os
import random
import re
import subprocess

from PIL import Image, ImageChops, ImageDraw, ImageOps

MARGIN = 0.08
ALPHA_T = 8


def seed_of(*parts):
    """A stable 64-bit seed from strings (Python's hash() is salted per run)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


def rng_of(*parts):
    return random.Random(seed_of(*parts))


def object_bbox(im):
    """Bounding box of the object in an RGBA image, or None when empty."""
    a = im.getchannel("A").point(lambda v: 255 if v > ALPHA_T else 0)
    return a.getbbox()


def to_rgba(im):
    """RGBA with transparent background. Images without alpha get their
    corner colour made transparent (clip art stored on a flat background)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA")
    rgb = im.convert("RGB")
    corner = rgb.getpixel((0, 0))
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, corner)).convert("L")
    mask = diff.point(lambda v: 255 if v > 24 else 0)
    out = rgb.convert("RGBA")
    out.putalpha(mask)
    return out


def centre_square(im, size, margin=MARGIN):
    """RGBA -> RGBA (size, size), object centred. None when the image is empty."""
    bb = object_bbox(im)
    if bb is None:
        return None
    im = im.crop(bb)
    w, h = im.size
    side = max(1, int(round(max(w, h) / (1.0 - 2.0 * margin))))
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(im, ((side - w) // 2, (side - h) // 2))
    # Premultiplied resize: no dark or coloured fringe from transparent pixels.
    return canvas.convert("RGBa").resize((size, size), Image.LANCZOS).convert("RGBA")


def over(im, bg=(255, 255, 255)):
    """Composite RGBA over a flat background; returns RGB."""
    base = Image.new("RGBA", im.size, bg + (255,))
    return Image.alpha_composite(base, im).convert("RGB")


def fm_view(im):
    """Fashion-MNIST look: grey, product over white then inverted, so the
    background is black and dark garments are bright."""
    return ImageOps.invert(over(im).convert("L")).convert("RGB")


def silhouette_view(im, level=220):
    """Flat light-grey silhouette on black. Holes enclosed by the object are
    filled, so line drawings (Symbola, outline clip art) become solid shapes."""
    alpha = im.getchannel("A")
    w, h = alpha.size
    # Background = what a flood fill from the border reaches through
    # transparent pixels; everything else is the object.
    mask = Image.new("L", (w + 2, h + 2), 0)
    mask.paste(alpha.point(lambda v: 255 if v > 64 else 0), (1, 1))
    ImageDraw.floodfill(mask, (0, 0), 128)
    inside = mask.crop((1, 1, w + 1, h + 1)).point(lambda v: 0 if v == 128 else 255)
    a = ImageChops.lighter(alpha, inside).point(lambda v: v * level // 255)
    return Image.merge("RGB", (a, a, a))


def save_png(img, out_dir, rel):
    path = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    img.save(tmp, format="PNG", optimize=False, compress_level=6)
    os.replace(tmp, path)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(s):
    """File-name stem from an arbitrary string (ASCII, no separators). When
    characters had to be replaced or cut, a hash of the original keeps
    distinct names distinct ("viewmag+" and "viewmag-")."""
    t = _SAFE.sub("_", s).strip("._")[:100] or "x"
    if t != s:
        t += "_" + hashlib.sha256(s.encode()).hexdigest()[:6]
    return t


def clean_text(s):
    """One-line caption text: typographic quotes to ASCII, spaces collapsed."""
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    s = s.replace("\u201d", '"').replace("\u00a0", " ")
    return " ".join(s.split())


def article(phrase):
    """'a X' / 'an X', or bare X for plurals and proper-looking names."""
    p = phrase.strip()
    if not p:
        return p
    low = p.lower()
    last = low.split()[-1]
    if (last.endswith("s") and not last.endswith(("ss", "us", "is"))) or p[0].isupper():
        return p
    if low.startswith(("the ", "a ", "an ")):
        return p
    if low[0] in "aeiou" and not low.startswith(("uni", "use", "eu", "one")):
        return "an " + p
    return "a " + p


def uniq(items):
    seen = set()
    out = []
    for x in items:
        x = clean_text(x)
        if x and x.lower() not in seen:
            seen.add(x.lower())
            out.append(x)
    return out


# --- Debian package metadata -------------------------------------------------

def pkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           capture_output=True, text=True, check=False)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


# Licences of packages whose copyright file is not machine-readable (DEP-5):
# a phrase that must occur in the file, and the licence it names.
_FREEFORM = [
    ("Public Domain Dedication", "public domain (Creative Commons Public Domain Dedication)"),
    ("Fonts are free for any use", "Symbola licence: free for any use (George Douros)"),
    ("unicode.org/copyright", "Unicode License Agreement - Data Files and Software"),
    ("SIL Open Font License", "OFL-1.1"),
    ("GNU General Public License but with the", "GPL-2 with font exception"),
    ("GNU General Public License", "GPL"),
]


def pkg_licence(pkg):
    """Upstream licence from /usr/share/doc/PKG/copyright: the License fields
    of the DEP-5 Files paragraphs other than debian/*, else a known phrase."""
    path = "/usr/share/doc/%s/copyright" % pkg
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return "unknown (no %s)" % path
    if text.startswith("Format:"):
        found = []
        for para in re.split(r"\n\s*\n", text):
            m = re.search(r"^Files:\s*(.+)$", para, re.M)
            lic = re.search(r"^License:[ \t]*(\S[^\n]*)$", para, re.M)
            if not m or not lic or m.group(1).strip().startswith("debian/"):
                continue
            name = lic.group(1).strip()
            if name not in found:
                found.append(name)
        if found:
            return ", ".join(found)
    for phrase, name in _FREEFORM:
        if phrase in text:
            return name
    return "see %s" % path
