"""SVG to RGBA with librsvg (the library behind rsvg-convert), called in
process through GObject introspection: a process per file (rsvg-convert)
costs ~0.2 s of start-up on this machine against ~10 ms to render.

The drawing is rendered to fit PX x PX; when the object covers less than
ZOOM_BELOW of that side it is rendered again zoomed onto its bounding box,
so small objects on large pages keep their detail.
"""
import gi

gi.require_version("Rsvg", "2.0")
from gi.repository import Rsvg  # noqa: E402
import cairo  # noqa: E402
from PIL import Image  # noqa: E402

from common import object_bbox  # noqa: E402

ZOOM_BELOW = 0.6


def _draw(handle, px, x, y, side):
    surf = cairo.ImageSurface(cairo.FORMAT_ARGB32, px, px)
    vp = Rsvg.Rectangle()
    vp.x, vp.y, vp.width, vp.height = x, y, side, side
    handle.render_document(cairo.Context(surf), vp)
    surf.flush()
    # cairo ARGB32 is premultiplied, native (little-endian) byte order.
    return Image.frombuffer("RGBA", (px, px), bytes(surf.get_data()), "raw", "BGRa", 0, 1)


def render(path, px):
    """RGBA image (px, px), or None when librsvg cannot render the file or
    the drawing is empty."""
    try:
        handle = Rsvg.Handle.new_from_file(path)
        im = _draw(handle, px, 0.0, 0.0, float(px))
        bb = object_bbox(im)
        if bb is None:
            return None
        w, h = bb[2] - bb[0], bb[3] - bb[1]
        if max(w, h) < ZOOM_BELOW * px:
            k = px / float(max(w, h) + 2)
            cx, cy = (bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0
            im = _draw(handle, px, px / 2.0 - cx * k, px / 2.0 - cy * k, px * k)
        return im
    except Exception:  # GLib.Error, cairo.Error: a broken or unsupported file
        return None
