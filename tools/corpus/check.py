"""Validate a built corpus (standard library only: runs without the Debian
packages the build needs).

Checks: captions.csv has the header "path,caption" and two fields a row;
every caption is non-empty after trimming; every path is relative, inside
OUT_DIR, and names an existing PNG that is 8-bit RGB and square, all of one
size; every PNG under images/ is captioned at least once; SOURCES.md exists.
"""
import csv
import os
import struct
import sys

PNG_SIG = b"\x89PNG\r\n\x1a\n"
MAX_REPORT = 20


def png_info(path):
    """(width, height, bit depth, colour type) from the IHDR chunk, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError:
        return None
    if len(head) < 33 or head[:8] != PNG_SIG or head[12:16] != b"IHDR":
        return None
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, ctype


def check(out_dir):
    """List of error strings (empty when the corpus is valid) and counts."""
    errors = []
    counts = {"rows": 0, "images": 0}
    csv_path = os.path.join(out_dir, "captions.csv")
    if not os.path.isfile(os.path.join(out_dir, "SOURCES.md")):
        errors.append("SOURCES.md: missing")
    try:
        f = open(csv_path, encoding="utf-8", newline="")
    except OSError as e:
        return ["captions.csv: %s" % e.strerror], counts
    root = os.path.realpath(out_dir)
    seen = {}
    size = None
    with f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header != ["path", "caption"]:
                errors.append("captions.csv:1: header must be 'path,caption', got %r" % (header,))
            for row in reader:
                line = reader.line_num
                counts["rows"] += 1
                if len(row) != 2:
                    errors.append("captions.csv:%d: expected 2 fields, got %d" % (line, len(row)))
                    continue
                rel, cap = row
                if not cap.strip():
                    errors.append("captions.csv:%d: empty caption for %s" % (line, rel))
                if rel in seen:
                    continue
                full = os.path.realpath(os.path.join(out_dir, rel))
                if os.path.isabs(rel) or not full.startswith(root + os.sep):
                    errors.append("captions.csv:%d: path outside OUT_DIR: %s" % (line, rel))
                    seen[rel] = False
                    continue
                info = png_info(full)
                seen[rel] = info is not None
                if info is None:
                    errors.append("captions.csv:%d: missing or not a PNG: %s" % (line, rel))
                    continue
                w, h, depth, ctype = info
                if w != h or depth != 8 or ctype != 2:
                    errors.append("captions.csv:%d: %s is %dx%d depth %d colour type %d, "
                                  "want square 8-bit RGB (type 2)" % (line, rel, w, h, depth, ctype))
                elif size is None:
                    size = w
                elif w != size:
                    errors.append("captions.csv:%d: %s is %dx%d, others are %dx%d"
                                  % (line, rel, w, h, size, size))
        except csv.Error as e:
            errors.append("captions.csv:%d: %s" % (reader.line_num, e))
    counts["images"] = sum(1 for ok in seen.values() if ok)
    img_root = os.path.join(out_dir, "images")
    for d, dirs, files in os.walk(img_root):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(d, name), out_dir)
            if rel not in seen:
                errors.append("%s: image has no caption" % rel)
    if counts["rows"] == 0:
        errors.append("captions.csv: no captions")
    counts["size"] = size
    return errors, counts


def main(out_dir):
    errors, counts = check(out_dir)
    for e in errors[:MAX_REPORT]:
        print("corpus: error: %s" % e, file=sys.stderr)
    if len(errors) > MAX_REPORT:
        print("corpus: error: ... and %d more" % (len(errors) - MAX_REPORT), file=sys.stderr)
    if errors:
        return 1
    print("corpus: ok: %d images (%dx%d), %d captions"
          % (counts["images"], counts["size"], counts["size"], counts["rows"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: check.py OUT_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
