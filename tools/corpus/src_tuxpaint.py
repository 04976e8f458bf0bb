"""Tux Paint stamps: clip art with an English sentence in a .txt beside it.

Every stamp STEM.txt with a STEM.png (preferred) or STEM.svg. The *_mirror
images are the program's pre-flipped variants of another stamp and are left
out. The English caption is the .txt's first line (the other lines are
"lang.utf8=..." translations).

Captions: the sentence as written, and "a clip art of {sentence}". Only
stamps under clothes/ are classified for the clothing emphasis.
"""
import os

from PIL import Image

import svg
from common import safe_name, to_rgba
from items import emit

NAME = "tuxpaint"
ROOT = "/usr/share/tuxpaint/stamps"
PACKAGES = ["tuxpaint-stamps-default"]
SVG_PX = 384


def plan(opts):
    tasks = []
    no_image = 0
    for d, dirs, files in os.walk(ROOT):
        dirs.sort()
        for f in sorted(files):
            if not f.endswith(".txt"):
                continue
            stem = f[:-4]
            base = os.path.join(d, stem)
            img = base + ".png" if os.path.exists(base + ".png") else base + ".svg"
            if not os.path.exists(img):
                no_image += 1
                continue
            rel = os.path.relpath(base, ROOT)
            tasks.append((safe_name(rel.replace(os.sep, "-")), img, base + ".txt", rel))
    return tasks, {"no image": no_image}


def english_line(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line and ".utf8=" not in line:
                return line
    return ""


def render(task, opts):
    stem, img, txt, rel = task
    sentence = english_line(txt)
    if not sentence:
        return "no English caption"
    if img.endswith(".svg"):
        im = svg.render(img, SVG_PX)
    else:
        with Image.open(img) as src:
            im = to_rgba(src)
    if im is None:
        return "render failed"
    bare = sentence.rstrip(".!")
    caps = [sentence, "a clip art of %s" % (bare[0].lower() + bare[1:])]
    # Classified only under clothes/: elsewhere a sentence naming a garment
    # describes a person or scene ("a woman in a dress dancing").
    class_texts = [sentence] if rel.startswith("clothes" + os.sep) else []
    return emit(opts.out, NAME, stem, im, opts.size, caps, class_texts)
