#!/usr/bin/python3
"""Write the image fixtures of tests/test_preprocess.c and their references.

Run with Debian's interpreter (python3-pil, python3-numpy, python3-skimage;
python3-torch and python3-torchvision are used to cross-check when present):
    /usr/bin/python3 tools/ref/gen_preprocess_ref.py [fixture_dir]

Writes under tests/fixtures/images/ (or fixture_dir):
  *.jpg *.png *.bmp *.gif *.ppm *.pgm *.pbm   small test images, cut from
      scikit-image's sample photos and written by Pillow (plus a few files
      written byte by byte below, for cases Pillow cannot write: 16-bit RGB
      PNGs, plain-text PNM, GIFs whose frame is offset or has indices past the
      palette);
  bad/*                                       malformed files for error tests;
  hf/*.json                                   HF preprocessor_config.json
                                              files in both schemas;
  ref/<name>.rgb                              Image.open(f).convert("RGB") as
                                              raw uint8 rows (h*w*3);
  ref/<name>.<case>.npy                       float32 (3, crop_h, crop_w)
                                              preprocessed tensors;
  ref/manifest.json                           what is where.

The references are what cliptune promises to match:
  - "oa" cases: OpenAI CLIP / open_clip's transform, Resize(n, BICUBIC) on the
    PIL image, CenterCrop(n), ToTensor(), Normalize(mean, std), as torchvision
    computes it (torchvision 0.14 source: transforms/functional.py resize,
    _compute_resized_output_size, center_crop; functional_pil.pad), applied
    to the image after convert("RGB");
  - "hf" cases: transformers' CLIPImageProcessor (image_processing_clip.py
    and image_transforms.py: convert_rgb, get_resize_output_image_size with
    default_to_square=False, PIL resize, center_crop with floor offsets,
    rescale in float64 then float32, normalize in float32).
Both are re-implemented here with PIL + numpy (transformers is not packaged
in Debian); the "oa" ones are checked against torchvision itself when it is
installed. OpenAI's own order converts to RGB after resizing; for the inputs
where that differs (alpha, palette, 16-bit) the script prints how much, and
docs/preprocessing.md records it.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

try:
    import torchvision
    import torchvision.transforms as T
    from torchvision.transforms import InterpolationMode
except Exception:  # noqa: BLE001 - cross-check is optional
    torchvision = None
    T = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "images")
SK = "/usr/lib/python3/dist-packages/skimage/data"

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

os.makedirs(os.path.join(OUT, "ref"), exist_ok=True)
os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)
os.makedirs(os.path.join(OUT, "hf"), exist_ok=True)
for _f in os.listdir(os.path.join(OUT, "ref")):   # stale references
    if _f.endswith((".npy", ".rgb")):
        os.remove(os.path.join(OUT, "ref", _f))


def sk(name):
    im = Image.open(os.path.join(SK, name))
    im.load()
    return im


def small(im, box, size):
    """Crop box from a sample photo and shrink it (Pillow's LANCZOS)."""
    return im.crop(box).resize(size, Image.LANCZOS)


# --------------------------------------------------------------------------
# Hand-written encoders for what Pillow cannot write
# --------------------------------------------------------------------------

def png_bytes(w, h, bit_depth, color_type, rows, plte=None, trns=None):
    """A PNG with filter type 0 on every row; rows are bytes per scanline."""
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    out += chunk(b"IEND", b"")
    return out


def lzw_encode(indices, min_code_size):
    """GIF LZW: variable-width codes, LSB first, clear at start and when the
    table fills, end code last. Returns the packed bytes."""
    clear = 1 << min_code_size
    end = clear + 1
    codes = []
    width = min_code_size + 1
    widths = []

    def emit(c):
        codes.append(c)
        widths.append(width)

    table = {(i,): i for i in range(clear)}
    nxt = end + 1
    emit(clear)
    cur = ()
    for px in indices:
        cand = cur + (px,)
        if cand in table:
            cur = cand
            continue
        emit(table[cur])
        if nxt < 4096:
            table[cand] = nxt
            nxt += 1
            if nxt > (1 << width) and width < 12:
                width += 1
        else:
            emit(clear)
            table = {(i,): i for i in range(clear)}
            nxt = end + 1
            width = min_code_size + 1
        cur = (px,)
    if cur:
        emit(table[cur])
    emit(end)
    acc = 0
    nbits = 0
    out = bytearray()
    for c, wd in zip(codes, widths):
        acc |= c << nbits
        nbits += wd
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def gif_bytes(screen_w, screen_h, gpal, bg, frame, trans=None, lpal=None, min_code=None,
              cut_after=None, early_end=False):
    """One-frame GIF89a. frame = (x0, y0, w, h, indices)."""
    x0, y0, w, h, idx = frame

    def pal_bits(p):
        n = len(p) // 3
        b = 0
        while (2 << b) < n:
            b += 1
        return b, p + b"\0" * (3 * (2 << b) - len(p))

    out = bytearray(b"GIF89a")
    flags = 0
    gp = b""
    if gpal is not None:
        b, gp = pal_bits(gpal)
        flags = 0x80 | (b << 4) | b
    out += struct.pack("<HHBBB", screen_w, screen_h, flags, bg, 0) + gp
    if trans is not None:
        out += b"\x21\xf9\x04" + struct.pack("<BHB", 1, 0, trans) + b"\x00"
    lflags = 0
    lp = b""
    if lpal is not None:
        b, lp = pal_bits(lpal)
        lflags = 0x80 | b
    out += b"\x2c" + struct.pack("<HHHHB", x0, y0, w, h, lflags) + lp
    if min_code is None:
        min_code = max(2, max(idx).bit_length())
    if early_end:
        idx = idx[: len(idx) // 2]
    data = lzw_encode(idx, min_code)
    out.append(min_code)
    for i in range(0, len(data), 255):
        blk = data[i:i + 255]
        out.append(len(blk))
        out += blk
    out += b"\x00;"
    if cut_after is not None:
        out = out[:cut_after]
    return bytes(out)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

fixtures = []   # (file name, kind) in manifest order


def save(name, im, kind, **kw):
    im.save(os.path.join(OUT, name), **kw)
    fixtures.append((name, kind))


def write(name, data, kind):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    fixtures.append((name, kind))


astro = sk("astronaut.png")
chelsea = sk("chelsea.png")
coffee = sk("coffee.png")
rocket = sk("rocket.jpg").convert("RGB")
camera = sk("camera.png")
green = sk("green_palette.png")

# JPEG: Pillow's encoder (libjpeg-turbo), odd sizes so MCUs are partial.
save("photo_420.jpg", small(astro, (130, 20, 370, 240), (97, 89)), "jpeg",
     quality=90, subsampling=2)
save("photo_444.jpg", small(chelsea, (60, 20, 411, 290), (90, 69)), "jpeg",
     quality=90, subsampling=0)
save("photo_422.jpg", small(coffee, (50, 20, 550, 380), (83, 60)), "jpeg",
     quality=90, subsampling=1)
save("photo_prog.jpg", small(rocket, (0, 0, 640, 427), (120, 80)), "jpeg",
     quality=90, progressive=True)
save("grey.jpg", small(camera, (100, 40, 420, 360), (64, 64)), "jpeg", quality=90)
save("cmyk.jpg", small(coffee, (0, 0, 600, 400), (72, 48)).convert("CMYK"), "jpeg",
     quality=90)
save("tall_1x40.jpg", small(chelsea, (200, 0, 203, 300), (1, 40)), "jpeg", quality=90)
save("wide_41x1.jpg", small(chelsea, (0, 150, 451, 153), (41, 1)), "jpeg", quality=90)
save("tiny_3x2.jpg", small(astro, (200, 200, 260, 240), (3, 2)), "jpeg", quality=90)
save("photo_q75.jpg", small(rocket, (200, 100, 520, 400), (66, 62)), "jpeg", quality=75)

# PNG
save("rgb.png", small(chelsea, (60, 20, 411, 290), (61, 47)), "exact")
# Alpha from 0 to 255 over colour that stays in the file: convert("RGB")
# must drop it, not composite.
rgba = small(chelsea, (100, 0, 400, 300), (50, 50))
rgba.putalpha(Image.linear_gradient("L").rotate(90).resize((50, 50)))
save("rgba.png", rgba, "exact")
la = small(camera, (0, 0, 512, 512), (40, 30))
alpha = Image.linear_gradient("L").resize((40, 30))
save("la.png", Image.merge("LA", (la, alpha)), "exact")
save("grey.png", small(camera, (0, 0, 512, 512), (45, 37)), "exact")
save("bilevel.png", small(camera, (0, 0, 512, 512), (33, 21)).convert("1"), "exact")
pal = small(green, (0, 0, 320, 240), (48, 36))
save("palette.png", pal, "exact")
pal_q = small(astro, (100, 0, 400, 300), (40, 40)).quantize(colors=16)
pal_q.info["transparency"] = 3
save("palette_trns.png", pal_q, "exact", transparency=3)
g16 = (np.asarray(small(camera, (0, 0, 512, 512), (30, 20)), dtype=np.uint16) * 4).astype(np.uint16)
im16 = Image.fromarray(g16.astype(np.int32), "I")    # values 0..1020: half saturate
save("grey16.png", im16, "exact")
save("tall_17x301.png", small(coffee, (250, 0, 280, 400), (17, 301)), "exact")
save("strip_1x37.png", small(coffee, (300, 0, 302, 400), (1, 37)), "exact")
save("tiny_3x2.png", small(astro, (200, 200, 260, 240), (3, 2)), "exact")
save("square_224.png", small(astro, (0, 0, 512, 512), (224, 224)), "exact")

# 16-bit colour PNGs (Pillow cannot write them): RGB, RGBA, grey+alpha.
rng = np.random.default_rng(7)
a16 = rng.integers(0, 65536, size=(9, 11, 4), dtype=np.uint16)
write("rgb16.png", png_bytes(11, 9, 16, 2, [a16[y, :, :3].astype(">u2").tobytes()
                                            for y in range(9)]), "exact")
write("rgba16.png", png_bytes(11, 9, 16, 6, [a16[y].astype(">u2").tobytes()
                                             for y in range(9)]), "exact")
write("la16.png", png_bytes(11, 9, 16, 4, [a16[y, :, :2].astype(">u2").tobytes()
                                           for y in range(9)]), "exact")
# 2-bit grey and grey with a tRNS colour key.
g2 = rng.integers(0, 4, size=(7, 13), dtype=np.uint8)
rows2 = []
for y in range(7):
    bits = 0
    row = bytearray()
    for x in range(13):
        bits = (bits << 2) | int(g2[y, x])
        if x % 4 == 3:
            row.append(bits)
            bits = 0
    row.append(bits << (2 * (4 - 13 % 4)))
    rows2.append(bytes(row))
write("grey2.png", png_bytes(13, 7, 2, 0, rows2), "exact")
# Palette indices past the end of a 4-entry PLTE (invalid, but such files
# exist): Pillow shows index i as (i, i, i), its palette's initial grey ramp.
pidx = rng.integers(0, 10, size=(6, 9), dtype=np.uint8)
plte4 = bytes([200, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 0])
write("palette_short.png",
      png_bytes(9, 6, 8, 3, [pidx[y].tobytes() for y in range(6)], plte=plte4), "exact")
# Cut off after the image data: no IEND (Pillow decodes it).
with open(os.path.join(OUT, "rgb.png"), "rb") as f:
    write("no_iend.png", f.read()[:-12], "exact")

# BMP
save("rgb.bmp", small(coffee, (0, 0, 600, 400), (39, 26)), "exact")
save("palette.bmp", small(green, (0, 0, 320, 240), (30, 22)), "exact")
save("grey.bmp", small(camera, (0, 0, 512, 512), (31, 23)), "exact")
save("rgba.bmp", rgba.resize((25, 25)), "exact")
save("bilevel.bmp", small(camera, (0, 0, 512, 512), (29, 19)).convert("1"), "exact")

# GIF (Pillow writes interlaced frames by default)
save("palette.gif", small(astro, (100, 0, 400, 300), (44, 40)).quantize(colors=64), "exact")
fr1 = small(chelsea, (60, 20, 411, 290), (36, 28)).quantize(colors=32)
fr2 = small(coffee, (60, 20, 411, 290), (36, 28)).quantize(colors=32)
fr1.save(os.path.join(OUT, "anim.gif"), save_all=True, append_images=[fr2], duration=100,
         loop=0)
fixtures.append(("anim.gif", "exact"))
save("grey.gif", small(camera, (0, 0, 512, 512), (26, 19)), "exact")
# Crafted: frame offset inside a larger screen, transparency index, background
# index, local palette, and indices past the palette's end.
gpal = bytes([10, 20, 30, 200, 100, 50, 0, 255, 0, 250, 250, 250])
idx = [int(v) for v in rng.integers(0, 4, size=10 * 9)]
write("offset_trns.gif", gif_bytes(20, 16, gpal, 2, (3, 2, 10, 9, idx), trans=1), "exact")
idx = [int(v) for v in rng.integers(0, 8, size=8 * 6)]
write("beyond_palette.gif",
      gif_bytes(8, 6, gpal, 0, (2, 1, 8, 6, idx), lpal=bytes([1, 2, 3, 90, 80, 70]),
                min_code=3), "exact")
idx = [int(v) for v in rng.integers(0, 4, size=12 * 7)]
write("no_palette.gif", gif_bytes(12, 7, None, 0, (0, 0, 12, 7, idx)), "exact")

# PNM
save("rgb.ppm", small(chelsea, (60, 20, 411, 290), (29, 21)), "exact")
save("grey.pgm", small(camera, (0, 0, 512, 512), (27, 20)), "exact")
save("bilevel.pbm", small(camera, (0, 0, 512, 512), (19, 13)).convert("1"), "exact")
save("grey16.pgm", im16, "exact")
v = rng.integers(0, 101, size=(5, 7, 3))
write("maxval100.ppm", b"P6\n# maxval 100\n7 5\n100\n" + v.astype(np.uint8).tobytes(), "exact")
v = rng.integers(0, 1001, size=(4, 6))
write("maxval1000.pgm", b"P5 6 4 1000\n" + v.astype(">u2").tobytes(), "exact")
v = rng.integers(0, 4001, size=(3, 5, 3))
write("maxval4000.ppm", b"P6 5 3 4000\n" + v.astype(">u2").tobytes(), "exact")
v = rng.integers(0, 16, size=(4, 5, 3))
txt = "P3\n# plain\n5 4\n15\n" + "\n".join(
    " ".join(str(int(c)) for c in v[y].ravel()) + (" # row\n" if y == 1 else "")
    for y in range(4)) + "\n"
write("plain.ppm", txt.encode(), "exact")
v = rng.integers(0, 300, size=(3, 4))
write("plain.pgm", ("P2 4 3 299\n" + " ".join(str(int(c)) for c in v.ravel()) + "\n").encode(),
      "exact")
bits = rng.integers(0, 2, size=(3, 9))
write("plain.pbm", ("P1\n9 3\n" + "\n".join("".join(str(int(b)) for b in r) for r in bits)
                    + "\n").encode(), "exact")

# --------------------------------------------------------------------------
# Malformed files (error tests)
# --------------------------------------------------------------------------

def bad(name, data):
    with open(os.path.join(OUT, "bad", name), "wb") as f:
        f.write(data)


src = open(os.path.join(OUT, "rgb.png"), "rb").read()
bad("truncated.png", src[: len(src) // 2])
src = open(os.path.join(OUT, "photo_420.jpg"), "rb").read()
bad("truncated.jpg", src[: len(src) // 2])
src = open(os.path.join(OUT, "photo_prog.jpg"), "rb").read()
bad("truncated_prog.jpg", src[: len(src) * 2 // 3])
src = bytearray(open(os.path.join(OUT, "rgb.png"), "rb").read())
src[29] ^= 0xFF   # IHDR CRC
bad("bad_crc.png", bytes(src))
src = bytearray(open(os.path.join(OUT, "grey.png"), "rb").read())
iend = src.rfind(b"IEND")
src[iend - 4 - 6] ^= 0x55   # last byte of the zlib stream's Adler-32
bad("bad_adler.png", bytes(src))
src = open(os.path.join(OUT, "rgb.bmp"), "rb").read()
bad("truncated.bmp", src[: len(src) - 100])
bad("not_an_image.png", b"this is not an image, whatever its name says\n" * 3)
bad("empty.jpg", b"")
# IHDR claiming 100000 x 100000 (valid CRC, so only the size is wrong).
bad("huge.png", png_bytes(100000, 100000, 8, 2, []))
bad("zero_width.png", png_bytes(0, 5, 8, 2, []))
# A JPEG whose SOF claims 60000 x 60000.
src = bytearray(open(os.path.join(OUT, "photo_444.jpg"), "rb").read())
i = 2
while i < len(src):
    marker = src[i + 1]
    seglen = struct.unpack(">H", src[i + 2:i + 4])[0]
    if marker in (0xC0, 0xC1, 0xC2):
        src[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
        break
    i += 2 + seglen
bad("huge.jpg", bytes(src))
bad("huge.gif", gif_bytes(40000, 40000, gpal, 0, (0, 0, 2, 2, [0, 1, 2, 3])))
idx = [int(v) for v in rng.integers(0, 4, size=10 * 9)]
bad("truncated.gif", gif_bytes(20, 16, gpal, 2, (3, 2, 10, 9, idx), cut_after=60))
bad("early_end.gif", gif_bytes(20, 16, gpal, 2, (0, 0, 20, 16, [2] * 320), early_end=True))
bad("huge.ppm", b"P6\n20000 20000\n255\n")
bad("truncated.ppm", b"P6\n4 4\n255\n" + b"\x01" * 20)
bad("badtoken.pgm", b"P2 2 2 255\n1 2 x 4\n")
bad("bigvalue.pgm", b"P2 2 2 10\n1 2 30 4\n")
hdr = bytearray(open(os.path.join(OUT, "rgb.bmp"), "rb").read())
struct.pack_into("<ii", hdr, 18, 50000, 50000)
bad("huge.bmp", bytes(hdr))

# --------------------------------------------------------------------------
# HF preprocessor_config.json, both schemas
# --------------------------------------------------------------------------

hf_configs = {
    # transformers >= 4.27 (CLIPImageProcessor)
    "new_schema.json": {
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True,
        "image_mean": list(OPENAI_MEAN), "image_processor_type": "CLIPImageProcessor",
        "image_std": list(OPENAI_STD), "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224},
    },
    # CLIPFeatureExtractor era (openai/clip-vit-base-patch32 as first published)
    "old_schema.json": {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": list(OPENAI_MEAN), "image_std": list(OPENAI_STD),
        "resample": 3, "size": 224,
    },
    # A small one for preprocessing fixtures: bilinear, odd crop.
    "small_bilinear.json": {
        "crop_size": {"height": 30, "width": 32}, "do_center_crop": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 35},
    },
    # SigLIP style: fixed (height, width), no crop.
    "fixed_size.json": {
        "do_center_crop": False, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"height": 24, "width": 40},
    },
    # Flags off.
    "no_resize_no_norm.json": {
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
        "do_normalize": False, "do_resize": False, "size": {"shortest_edge": 224},
    },
}
for fname, cfg in hf_configs.items():
    with open(os.path.join(OUT, "hf", fname), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
with open(os.path.join(OUT, "bad", "hf_bad_size.json"), "w") as f:
    json.dump({"size": {"longest_edge": 10}, "crop_size": 224}, f)
    f.write("\n")
with open(os.path.join(OUT, "bad", "hf_bad_mean.json"), "w") as f:
    json.dump({"size": 224, "crop_size": 224, "image_mean": [0.5, 0.5]}, f)
    f.write("\n")

# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------

BICUBIC, BILINEAR = Image.BICUBIC, Image.BILINEAR


def out_size(h, w, short):
    """torchvision _compute_resized_output_size == HF
    get_resize_output_image_size(default_to_square=False)."""
    s, l = (w, h) if w <= h else (h, w)
    new_s, new_l = short, int(short * l / s)
    return (new_l, new_s) if w <= h else (new_s, new_l)   # (h, w)


def tv_center_crop(im, th, tw):
    """torchvision.transforms.functional.center_crop on a PIL image."""
    w, h = im.size
    if tw > w or th > h:
        pad = [(tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0,
               (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0]
        im = ImageOps.expand(im, border=tuple(pad), fill=0)
        w, h = im.size
        if (tw, th) == (w, h):
            return im
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return im.crop((left, top, left + tw, top + th))


def oa_ref(im, short, th, tw, resample=BICUBIC, mean=OPENAI_MEAN, std=OPENAI_STD):
    w, h = im.size
    oh, ow = out_size(h, w, short)
    if (oh, ow) != (h, w):
        im = im.resize((ow, oh), resample)
    im = tv_center_crop(im, th, tw)
    t = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255)
    t = (t - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(t.transpose(2, 0, 1))


def tv_ref(im, short, th, tw, mean=OPENAI_MEAN, std=OPENAI_STD, convert_first=True):
    """The same with torchvision itself (None if not installed)."""
    if T is None:
        return None
    steps = [T.Resize(short, interpolation=InterpolationMode.BICUBIC), T.CenterCrop((th, tw))]
    steps += [lambda x: x.convert("RGB"), T.ToTensor(), T.Normalize(mean, std)]
    if convert_first:
        im = im.convert("RGB")
    return T.Compose(steps)(im).numpy()


def hf_ref(im, size, crop, resample=BICUBIC, mean=OPENAI_MEAN, std=OPENAI_STD,
           rescale=1 / 255, do_resize=True, do_crop=True, do_norm=True):
    """CLIPImageProcessor.preprocess, one image. size: int (shortest_edge) or
    (h, w); crop: (h, w)."""
    a = np.asarray(im.convert("RGB"))
    if do_resize:
        h, w = a.shape[:2]
        oh, ow = out_size(h, w, size) if isinstance(size, int) else size
        a = np.array(Image.fromarray(a).resize((ow, oh), resample=resample, reducing_gap=None))
    if do_crop:
        th, tw = crop
        h, w = a.shape[:2]
        top, left = (h - th) // 2, (w - tw) // 2
        if top >= 0 and left >= 0 and top + th <= h and left + tw <= w:
            a = a[top:top + th, left:left + tw]
        else:
            nh, nw = max(th, h), max(tw, w)
            b = np.zeros((nh, nw, 3), a.dtype)
            tp, lp = -(-(nh - h) // 2), -(-(nw - w) // 2)   # ceil
            b[tp:tp + h, lp:lp + w] = a
            top, left = top + tp, left + lp
            a = b[max(0, top):min(nh, top + th), max(0, left):min(nw, left + tw)]
    t = (a.astype(np.float64) * rescale).astype(np.float32)
    if do_norm:
        t = (t - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(t.transpose(2, 0, 1))


manifest = {"mean_openai": OPENAI_MEAN, "std_openai": OPENAI_STD, "images": [], "cases": []}

# Cases: (name, family, resize_short, crop_h, crop_w, resample, applies-to)
#   r25c22: the short side loses 3 px: (3)/2 = 1.5 rounds to 2 (torchvision)
#           but floors to 1 (HF); r33c32: 0.5 rounds to 0 (half to even);
#   r23c32: the crop is larger than the resized image: zero padding, floor(d/2)
#           before (torchvision) vs ceil(d/2) (HF).
SMALL_CASES = [("oa_r25c22", "oa", 25, 22, 22), ("hf_r25c22", "hf", 25, 22, 22)]
SUBSET = {"photo_420.jpg", "photo_444.jpg", "tall_17x301.png", "strip_1x37.png", "tiny_3x2.png",
          "rgb.png", "wide_41x1.jpg", "rgba.png"}
SUBSET_CASES = [("oa_r33c32", "oa", 33, 32, 32), ("oa_r23c32", "oa", 23, 32, 32),
                ("hf_r23c32", "hf", 23, 32, 32), ("oa_r40c24x36", "oa", 40, 24, 36),
                ("hf_r40c24x36", "hf", 40, 24, 36)]
BIG_CASES = {"photo_420.jpg": [("oa_r224c224", "oa", 224, 224, 224)],
             "square_224.png": [("oa_r224c224", "oa", 224, 224, 224)]}

max_tv = 0.0
order_diffs = []
for name, kind in fixtures:
    im = Image.open(os.path.join(OUT, name))
    mode = im.mode
    rgb = im.convert("RGB")
    a = np.asarray(rgb)
    base = name.replace(".", "_")
    a.tofile(os.path.join(OUT, "ref", base + ".rgb"))
    manifest["images"].append({"file": name, "kind": kind, "mode": mode,
                               "width": rgb.size[0], "height": rgb.size[1],
                               "rgb": "ref/" + base + ".rgb"})
    cases = list(SMALL_CASES)
    if name in SUBSET:
        cases += SUBSET_CASES
    cases += BIG_CASES.get(name, [])
    for cname, fam, short, th, tw in cases:
        if fam == "oa":
            t = oa_ref(rgb, short, th, tw)
            tv = tv_ref(rgb, short, th, tw)
            if tv is not None:
                d = float(np.abs(tv - t).max())
                max_tv = max(max_tv, d)
                assert d == 0.0, (name, cname, d)
            if mode not in ("RGB", "L") and T is not None:
                # OpenAI's order: resize in the file's mode, then convert.
                tv2 = tv_ref(im, short, th, tw, convert_first=False)
                std = np.array(OPENAI_STD, np.float32)[:, None, None]
                order_diffs.append((name, mode, cname, float(np.abs((tv2 - t) * std).max())))
        else:
            t = hf_ref(rgb, short, (th, tw))
        npy = "ref/%s.%s.npy" % (base, cname)
        np.save(os.path.join(OUT, npy), t.astype(np.float32))
        manifest["cases"].append({"image": name, "case": cname, "family": fam,
                                  "resize_short": short, "crop_h": th, "crop_w": tw,
                                  "resample": "bicubic", "npy": npy})

# HF configuration files as whole pipelines.
for fname, img, kw in [
        ("small_bilinear.json", "photo_444.jpg",
         dict(size=35, crop=(30, 32), resample=BILINEAR, mean=(0.5,) * 3, std=(0.5,) * 3)),
        ("fixed_size.json", "photo_422.jpg",
         dict(size=(24, 40), crop=None, do_crop=False, mean=(0.5,) * 3, std=(0.5,) * 3)),
        ("no_resize_no_norm.json", "rgb.png",
         dict(size=None, crop=(32, 32), do_resize=False, do_norm=False)),
        ("no_resize_no_norm.json", "tiny_3x2.png",
         dict(size=None, crop=(32, 32), do_resize=False, do_norm=False))]:
    t = hf_ref(Image.open(os.path.join(OUT, img)), **kw)
    base = img.replace(".", "_")
    npy = "ref/%s.hfcfg_%s.npy" % (base, fname[:-5])
    np.save(os.path.join(OUT, npy), t.astype(np.float32))
    manifest["cases"].append({"image": img, "config": "hf/" + fname, "npy": npy,
                              "shape": list(t.shape)})

with open(os.path.join(OUT, "ref", "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")

total = 0
for dp, _, fns in os.walk(OUT):
    total += sum(os.path.getsize(os.path.join(dp, f)) for f in fns)
print("fixtures: %d images, %d cases, %.1f KiB in %s" % (len(fixtures), len(manifest["cases"]),
                                                         total / 1024, OUT))
if T is not None:
    print("torchvision %s cross-check: max |manual - torchvision| = %g"
          % (torchvision.__version__, max_tv))
else:
    print("torchvision not installed: no cross-check")
# Pillow must reject every malformed file too (the C test expects errors).
for f in sorted(os.listdir(os.path.join(OUT, "bad"))):
    if f.endswith(".json"):
        continue
    try:
        Image.open(os.path.join(OUT, "bad", f)).convert("RGB")
        print("Pillow ACCEPTS bad/%s" % f)
    except Exception as e:  # noqa: BLE001
        print("Pillow rejects bad/%-20s %s: %s" % (f, type(e).__name__, str(e)[:60]))
for name, mode, cname, d in order_diffs:
    print("OpenAI order (resize in mode %-4s then convert) vs convert first: %-18s %-12s"
          " max |d*std| = %.4f (%.1f/255)" % (mode, name, cname, d, d * 255))
