"""openclipart-svg: public-domain clip art (2005-era snapshot, noisy titles).

Captions come from the file's metadata and name:
  - the dc:title of the cc:Work (creator/publisher agent titles excluded),
    or the SVG <title>, when it describes this file: titles shared by more
    than SHARED_TITLE files are collection names ("gramastar", "Lemon SVG
    theme", "Part of the Flat Icon Collection ...") and are not used;
  - the file name with the numbering and the author's name (the trailing
    words that begin the dc:creator's words) removed:
    "tennis_shoe_jarno_vasama_.svg" by "Jarno Vasama" -> "tennis shoe".
Both become "a clip art of {text}" plus the bare text.

Left out: special/gradients and special/patterns (colour swatches, no
object), byte-identical copies filed under a second category, files over
MAX_BYTES, and all but every STAR_EVERY-th file of
shapes/stars (1,375 generated stars would be a sixth of this source).
Failed renders and empty drawings are counted.
"""
import collections
import hashlib
import os
import re

import svg
from common import clean_text, safe_name
from items import emit

NAME = "openclipart"
ROOT = "/usr/share/openclipart/svg"
PACKAGES = ["openclipart-svg"]  # data; the renderer (librsvg) is a tool, see corpus.sh
SVG_PX = 256
MAX_BYTES = 4 << 20
SHARED_TITLE = 5
STAR_EVERY = 10
SKIP_DIRS = ("special/gradients", "special/patterns")

_WORK = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
_AGENT = re.compile(r"<cc:Agent\b.*?</cc:Agent>", re.S)
_DCTITLE = re.compile(r"<dc:title>([^<]*)</dc:title>")
_CREATOR = re.compile(r"<dc:creator>.*?<dc:title>([^<]*)</dc:title>", re.S)
_SVGTITLE = re.compile(r"<title[^>]*>([^<]*)</title>")
_GENERIC = {"", "untitled", "image", "clipart", "clip art", "drawing", "svg", "title",
            "layer 1", "newdrawing", "new document 1"}


def read_meta(path):
    """(title, creator) from the first 256 KiB of an SVG file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(256 << 10)
    title = creator = ""
    m = _WORK.search(text)
    if m:
        mc = _CREATOR.search(m.group(0))
        creator = mc.group(1).strip() if mc else ""
        mt = _DCTITLE.search(_AGENT.sub("", m.group(0)))
        title = mt.group(1).strip() if mt else ""
    if not title:
        mt = _SVGTITLE.search(text)
        title = mt.group(1).strip() if mt else ""
    return clean_text(title.replace("&amp;", "&")), clean_text(creator)


def name_from_file(path, creator):
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    words = [w for w in re.split(r"[_\-\s]+", stem) if w]
    while words and re.fullmatch(r"\d+[a-z]?", words[-1]):
        words.pop()
    author = [w for w in re.split(r"[^a-z]+", creator.lower()) if w]
    while len(words) > 1 and any(a.startswith(words[-1]) for a in author):
        words.pop()
    words = [w for w in words if not re.fullmatch(r"\d+", w)]
    return " ".join(words)


def good_title(title):
    low = title.lower()
    if low in _GENERIC or low.startswith(("part of the", "clipart by")) or len(title) > 80:
        return False
    letters = sum(c.isalpha() for c in title)
    ascii_ = sum(ord(c) < 128 for c in title)
    return letters >= 3 and ascii_ >= 0.9 * len(title)


def plan(opts):
    files = []
    for d, dirs, fs in os.walk(ROOT):
        dirs.sort()
        rel_dir = os.path.relpath(d, ROOT)
        if rel_dir.startswith(SKIP_DIRS):
            continue
        svgs = sorted(f for f in fs if f.endswith(".svg"))
        if rel_dir.startswith("shapes/stars"):
            svgs = svgs[::STAR_EVERY]
        files += [os.path.join(d, f) for f in svgs]
    too_big = [f for f in files if os.path.getsize(f) > MAX_BYTES]
    files = [f for f in files if os.path.getsize(f) <= MAX_BYTES]
    # The same drawing is often filed under two categories: keep the first.
    seen, unique = set(), []
    for f in files:
        with open(f, "rb") as fh:
            digest = hashlib.sha256(fh.read()).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(f)
    duplicates = len(files) - len(unique)
    files = unique
    metas = [read_meta(f) for f in files]
    shared = collections.Counter(t.lower() for t, _ in metas)
    tasks = []
    for f, (title, creator) in zip(files, metas):
        texts = []
        if good_title(title) and shared[title.lower()] <= SHARED_TITLE:
            texts.append(title)
        fname = name_from_file(f, creator)
        if len(fname) >= 3 and (not texts or fname != texts[0].lower()):
            texts.append(fname)
        rel = os.path.relpath(f, ROOT)[:-4]
        tasks.append((safe_name(rel.replace(os.sep, "-")), f, texts))
    return tasks, {"over %d MiB" % (MAX_BYTES >> 20): len(too_big),
                   "duplicate files": duplicates}


def render(task, opts):
    stem, path, texts = task
    if not texts:
        return "no usable title or file name"
    im = svg.render(path, SVG_PX)
    if im is None:
        return "render failed or empty"
    caps = []
    for t in texts:
        caps += ["a clip art of %s" % t, t]
    return emit(opts.out, NAME, stem, im, opts.size, caps, texts)
