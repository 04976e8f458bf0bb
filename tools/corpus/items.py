"""Writing one corpus item: the image, its captions, and for clothing the
extra views (see clothing.py).

A record is (path relative to OUT_DIR, [captions], class or None); build.py
turns records into captions.csv rows and counts.
"""
from PIL import ImageOps

import clothing
from common import centre_square, fm_view, over, save_png, silhouette_view, uniq

# Extra images of a clothing item: suffix -> view of the centred RGBA image.
CLOTHING_VIEWS = {
    "fm": fm_view,
    "fmflip": lambda im: fm_view(ImageOps.mirror(im)),
    "sil": silhouette_view,
}


def emit(out_dir, source, stem, rgba, size, captions, class_texts=(), bg=(255, 255, 255)):
    """Centre rgba, write images/<source>/<stem>.png (+ clothing views).
    Returns the records, or [] when the image has no visible object."""
    sq = centre_square(rgba, size)
    if sq is None:
        return []
    cls = clothing.classify(*class_texts) if class_texts else None
    caps = uniq(list(captions) + clothing.extra_captions(cls))
    rel = "images/%s/%s.png" % (source, stem)
    save_png(over(sq, bg), out_dir, rel)
    recs = [(rel, caps, cls)]
    if cls is not None:
        for suffix, view in CLOTHING_VIEWS.items():
            vrel = "images/%s/%s__%s.png" % (source, stem, suffix)
            save_png(view(sq), out_dir, vrel)
            recs.append((vrel, caps, cls))
    return recs
