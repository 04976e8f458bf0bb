#!/usr/bin/python3
"""Write the TIFF and WebP fixtures of tests/test_preprocess.c and what Pillow
decodes from them.

Run with Debian's interpreter (python3-pil built with libtiff and libwebp,
python3-numpy):
    /usr/bin/python3 tools/ref/gen_tiff_webp_ref.py [fixture_dir]

Sources are the small PNGs gen_preprocess_ref.py wrote (so this needs no
scikit-image). Writes under tests/fixtures/images/tiff_webp/ (or fixture_dir),
kept apart from gen_preprocess_ref.py's ref/ (which that script clears):
  *.tif *.webp        small images, written by Pillow (libtiff, libwebp) or,
                      for layouts Pillow cannot write (tiles, separate planes,
                      associated alpha, 16-bit RGB, 4-bit palette, big-endian),
                      byte by byte below;
  bad/*               malformed files for error tests;
  ref/<name>.rgb      Image.open(f).convert("RGB") as raw uint8 rows (h*w*3);
  manifest.json       file, Pillow mode, size and reference of each image.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SRC = os.path.join(ROOT, "tests", "fixtures", "images")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "tiff_webp")

assert features.check("libtiff") and features.check("webp"), "Pillow lacks libtiff or libwebp"
for sub in ("ref", "bad"):                          # stale files from an older run
    shutil.rmtree(os.path.join(OUT, sub), ignore_errors=True)
    os.makedirs(os.path.join(OUT, sub))
for _f in os.listdir(OUT):
    if _f.endswith((".tif", ".webp")):
        os.remove(os.path.join(OUT, _f))


def src(name):
    im = Image.open(os.path.join(SRC, name))
    im.load()
    out = im.copy()
    out.info = {}       # no ICC profile etc.: keep the files small
    return out


rgb = src("rgb.png").crop((10, 8, 30, 26))           # 20 x 18
rgba = src("rgba.png").crop((5, 10, 25, 26))         # 20 x 16, alpha 0..255
grey = src("grey.png").crop((3, 3, 26, 20))          # 23 x 17
pal = src("palette.png").crop((4, 4, 25, 19))        # 21 x 15, mode P
rng = np.random.default_rng(13)

fixtures = []


def save(name, im, **kw):
    im.save(os.path.join(OUT, name), **kw)
    fixtures.append(name)


def write(name, data, where=None):
    with open(os.path.join(where or OUT, name), "wb") as f:
        f.write(data)
    if where is None:
        fixtures.append(name)


# --------------------------------------------------------------------------
# TIFF by hand: one IFD right after the header, then its out-of-line values,
# then the strips or tiles (uncompressed).
# --------------------------------------------------------------------------

SHORT, LONG = 3, 4


def tiff_bytes(w, h, tags, blocks, big_endian=False, tiled=False):
    e = ">" if big_endian else "<"
    tags = dict(tags)
    tags[256] = (LONG, [w])
    tags[257] = (LONG, [h])
    off_tag, cnt_tag = (324, 325) if tiled else (273, 279)
    tags[cnt_tag] = (LONG, [len(b) for b in blocks])
    tags[off_tag] = (LONG, [0] * len(blocks))

    def packed(t, vals):
        return struct.pack(e + ("H" if t == SHORT else "I") * len(vals), *vals)

    ifd_at = 8
    ool_at = ifd_at + 2 + 12 * len(tags) + 4
    ool_size = sum((len(packed(t, v)) + 1) & ~1 for t, v in tags.values()
                   if len(packed(t, v)) > 4)
    data_at = ool_at + ool_size
    offs, o = [], data_at
    for b in blocks:
        offs.append(o)
        o += len(b)
    tags[off_tag] = (LONG, offs)
    out = bytearray((b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", ifd_at))
    out += struct.pack(e + "H", len(tags))
    ool = bytearray()
    for tag in sorted(tags):
        t, vals = tags[tag]
        p = packed(t, vals)
        if len(p) <= 4:
            field = p + b"\0" * (4 - len(p))
        else:
            field = struct.pack(e + "I", ool_at + len(ool))
            ool += p + (b"\0" if len(p) & 1 else b"")
        out += struct.pack(e + "HHI", tag, t, len(vals)) + field
    out += struct.pack(e + "I", 0)
    out += ool
    assert len(out) == data_at
    for b in blocks:
        out += b
    return bytes(out)


def base_tags(bps, spp, photometric, more=None):
    t = {258: (SHORT, [bps] * spp), 259: (SHORT, [1]), 262: (SHORT, [photometric]),
         277: (SHORT, [spp])}
    t.update(more or {})
    return t


# --------------------------------------------------------------------------
# TIFF written by Pillow (its libtiff for the compressed ones)
# --------------------------------------------------------------------------

save("rgb.tif", rgb)                                           # raw, one strip
save("rgb_lzw.tif", rgb, compression="tiff_lzw")
save("rgb_deflate.tif", rgb, compression="tiff_adobe_deflate")
save("rgb_jpeg.tif", rgb, compression="jpeg", quality=90)      # libjpeg via libtiff
# YCbCr JPEG: Pillow has libtiff/libjpeg convert it to RGB (JPEGCOLORMODE_RGB).
save("ycbcr_jpeg.tif", rgb.convert("YCbCr"), compression="jpeg", quality=90)
save("rgba.tif", rgba, compression="tiff_lzw")                 # unassociated alpha
save("grey.tif", grey, compression="packbits")
save("la.tif", Image.merge("LA", (grey, grey.point(lambda v: 255 - v))))
save("palette.tif", pal, compression="tiff_lzw")
save("bilevel_g4.tif", grey.convert("1"), compression="group4")
save("cmyk.tif", rgb.convert("CMYK"))
g16 = np.asarray(grey, dtype=np.uint16) * 3                    # 0..765: a third saturates
save("grey16.tif", Image.fromarray(g16, "I;16"))

# --------------------------------------------------------------------------
# TIFF layouts Pillow cannot write
# --------------------------------------------------------------------------

a = np.asarray(rgb)[:10, :13]                                   # 13 x 10
# Tiled (16 x 16 tiles over 20 x 18: partial tiles right and bottom).
big = np.asarray(rgb)[:18, :20]
tiles = []
for ty in range(0, 18, 16):
    for tx in range(0, 20, 16):
        t = np.zeros((16, 16, 3), np.uint8)
        part = big[ty:ty + 16, tx:tx + 16]
        t[:part.shape[0], :part.shape[1]] = part
        tiles.append(t.tobytes())
write("tiled.tif", tiff_bytes(20, 18, base_tags(8, 3, 2, {322: (LONG, [16]), 323: (LONG, [16])}),
                              tiles, tiled=True))
# Separate planes, two rows per strip, big-endian.
strips = []
for c in range(3):
    for y in range(0, 10, 2):
        strips.append(a[y:y + 2, :, c].tobytes())
write("planar.tif", tiff_bytes(13, 10, base_tags(8, 3, 2, {278: (LONG, [2]), 284: (SHORT, [2])}),
                               strips, big_endian=True))
# Associated (premultiplied) alpha: Pillow un-premultiplies ("RGBa").
al = rng.integers(0, 256, size=(10, 13, 1), dtype=np.uint16)
al[0, :4, 0] = [0, 255, 1, 128]
pm = (a.astype(np.uint16) * al // 255).astype(np.uint8)
rgba_pm = np.concatenate([pm, al.astype(np.uint8)], axis=2)
write("rgba_assoc.tif", tiff_bytes(13, 10, base_tags(8, 4, 2, {338: (SHORT, [1])}),
                                   [rgba_pm.tobytes()]))
# RGB plus an unspecified extra sample ("RGBX").
rgbx = np.concatenate([a, rng.integers(0, 256, size=(10, 13, 1), dtype=np.uint8)], axis=2)
write("rgbx.tif", tiff_bytes(13, 10, base_tags(8, 4, 2, {338: (SHORT, [0])}), [rgbx.tobytes()]))
# 16-bit RGB, big-endian (Pillow keeps the high byte).
c16 = rng.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
write("rgb16_be.tif", tiff_bytes(7, 5, base_tags(16, 3, 2), [c16.astype(">u2").tobytes()],
                                 big_endian=True))
# 4-bit palette (colour map values are 16-bit; Pillow keeps v // 256).
cmap = rng.integers(0, 65536, size=48, dtype=np.uint16)
idx4 = rng.integers(0, 16, size=(3, 7), dtype=np.uint8)
rows = b"".join(bytes((int(r[i]) << 4 | (int(r[i + 1]) if i + 1 < 7 else 0))
                      for i in range(0, 7, 2)) for r in idx4)
write("palette4.tif", tiff_bytes(7, 3, base_tags(4, 1, 3, {320: (SHORT, [int(v) for v in cmap])}),
                                 [rows]))
# 8-bit min-is-white grey (Pillow "L;I": inverted).
gw = rng.integers(0, 256, size=(4, 9), dtype=np.uint8)
write("grey_miniswhite.tif", tiff_bytes(9, 4, base_tags(8, 1, 0), [gw.tobytes()]))

# --------------------------------------------------------------------------
# WebP (libwebp through Pillow)
# --------------------------------------------------------------------------

save("lossless.webp", rgb, lossless=True)
save("lossy.webp", rgb, quality=80)
save("alpha_lossless.webp", rgba, lossless=True)
save("alpha_lossy.webp", rgba, quality=75)
save("grey.webp", grey, quality=90)                             # Pillow writes it as RGB
f1 = src("rgb.png").crop((0, 0, 16, 12))
f2 = src("rgb.png").crop((20, 20, 36, 32))
f1.save(os.path.join(OUT, "anim.webp"), save_all=True, append_images=[f2], duration=100,
        lossless=True)
fixtures.append("anim.webp")

# --------------------------------------------------------------------------
# Malformed files
# --------------------------------------------------------------------------

BAD = os.path.join(OUT, "bad")
d = open(os.path.join(OUT, "rgb.tif"), "rb").read()
# Pillow's raw TIFF: header, pixels, then the IFD. A hand-written one has the
# IFD first, so cutting it loses pixel data only.
t = open(os.path.join(OUT, "planar.tif"), "rb").read()
write("truncated.tif", t[: len(t) - 40], BAD)
d = open(os.path.join(OUT, "rgb_lzw.tif"), "rb").read()
# Pillow decodes what is there with a warning ("Truncated File Read") and
# keeps the rest of the image black; cliptune refuses it (see image.c).
write("truncated_lzw.tif", d[:len(d) * 2 // 3], BAD)
write("huge.tif", tiff_bytes(100000, 100000, base_tags(8, 3, 2), [b"\0" * 12]), BAD)
write("float.tif", tiff_bytes(2, 2, base_tags(32, 1, 1, {339: (SHORT, [3])}),
                              [struct.pack("<4f", 0.5, 1.5, 2.5, 300.0)]), BAD)
d = open(os.path.join(OUT, "lossy.webp"), "rb").read()
write("truncated.webp", d[: len(d) // 2], BAD)
d = bytearray(open(os.path.join(OUT, "lossless.webp"), "rb").read())
for i in range(30, len(d) - 4, 7):
    d[i] ^= 0xA5
write("corrupt.webp", bytes(d), BAD)
# A VP8X header declaring a 16384 x 16384 canvas (Pillow's bomb error).
vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0, 0, 0, 0]) + \
    (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
write("huge.webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x, BAD)

# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------

manifest = {"images": []}
for name in fixtures:
    im = Image.open(os.path.join(OUT, name))
    mode = im.mode
    r = im.convert("RGB")
    base = name.replace(".", "_")
    np.asarray(r).tofile(os.path.join(OUT, "ref", base + ".rgb"))
    manifest["images"].append({"file": name, "mode": mode, "format": im.format,
                               "width": r.size[0], "height": r.size[1],
                               "rgb": "ref/" + base + ".rgb"})
with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")

total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fns in os.walk(OUT) for f in fns)
print("fixtures: %d images, %.1f KiB in %s" % (len(fixtures), total / 1024, OUT))
for im in manifest["images"]:
    print("  %-22s %-5s %-4s %dx%d" % (im["file"], im["format"], im["mode"], im["width"],
                                       im["height"]))
# Pillow must reject every malformed file too (the C test expects errors).
for f in sorted(os.listdir(BAD)):
    try:
        with Image.open(os.path.join(BAD, f)) as im:
            im.convert("RGB")
        print("Pillow ACCEPTS bad/%s" % f)
    except Exception as e:  # noqa: BLE001
        print("Pillow rejects bad/%-18s %s: %s" % (f, type(e).__name__, str(e)[:60]))
