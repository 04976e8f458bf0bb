"""Build the pretraining corpus from Debian packages (entry point:
scripts/corpus.sh; see docs/corpus.md).

  build.py OUT_DIR [--size 64] [--jobs N] [--only emoji,symbola,...]
           [--digit-reps 6] [--letter-reps 2] [--garment-reps 30]
  build.py --check OUT_DIR

Writes OUT_DIR/images/<source>/<name>.png, OUT_DIR/captions.csv
("path,caption", one row per caption, RFC 4180 quoting, LF line ends),
OUT_DIR/clothing.csv ("path,class": images of Fashion-MNIST kinds of thing)
and OUT_DIR/SOURCES.md. The same packages and options give byte-identical
files: sources and items are visited in sorted order, random choices are
seeded per item, and workers' results are collected in task order.
"""
import argparse
import csv
import io
import multiprocessing
import os
import shutil
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check  # noqa: E402

MARKER = ".cliptune-corpus"
SOURCE_NAMES = ["emoji", "symbola", "tuxpaint", "openclipart", "hershey", "fonts", "garments"]


def _sources():
    """name -> (packages, plan(opts), render(task, opts)); imported lazily so
    --check needs nothing outside the standard library."""
    import src_emoji
    import src_garments
    import src_glyphs
    import src_openclipart
    import src_symbola
    import src_tuxpaint
    return {
        "emoji": (src_emoji.PACKAGES, src_emoji.plan, src_emoji.render),
        "symbola": (src_symbola.PACKAGES, src_symbola.plan, src_symbola.render),
        "tuxpaint": (src_tuxpaint.PACKAGES, src_tuxpaint.plan, src_tuxpaint.render),
        "openclipart": (src_openclipart.PACKAGES, src_openclipart.plan, src_openclipart.render),
        "hershey": (src_glyphs.HERSHEY_PACKAGES,
                    lambda o: src_glyphs.plan_for("hershey", o), src_glyphs.render),
        "fonts": (src_glyphs.TTF_PACKAGES,
                  lambda o: src_glyphs.plan_for("fonts", o), src_glyphs.render),
        "garments": (src_garments.PACKAGES, src_garments.plan, src_garments.render),
    }


_opts = None
_render = None


def _init(opts):
    global _opts, _render
    _opts = opts
    _render = {k: v[2] for k, v in _sources().items()}


def _work(job):
    name, task = job
    try:
        return _render[name](task, _opts)
    except Exception as e:  # a bug, not a bad input file: reported, build fails
        return "error: %s: %s (task %r)" % (type(e).__name__, e, task[:3])


def prepare_out(out):
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise SystemExit("corpus: error: %s is not empty and not a corpus built here "
                         "(no %s); refusing to overwrite" % (out, MARKER))
    os.makedirs(out, exist_ok=True)
    for name in ("images",):
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    for name in ("captions.csv", "clothing.csv", "SOURCES.md"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    with open(os.path.join(out, MARKER), "w") as f:
        f.write("made by tools/corpus/build.py; the whole folder is rebuilt on each run\n")


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def csv_text(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def sources_md(opts, stats, clothing_counts):
    import clothing
    from common import pkg_licence, pkg_version
    lines = ["# Corpus sources", "",
             "Built by `scripts/corpus.sh` (tools/corpus/build.py) with --size %d, "
             "--digit-reps %d, --letter-reps %d, --garment-reps %d. Rebuild and caption "
             "scheme: docs/corpus.md."
             % (opts.size, opts.digit_reps, opts.letter_reps, opts.garment_reps), "",
             "| source | images | captions | skipped |", "| --- | ---: | ---: | --- |"]
    tot_i = tot_c = 0
    for name, st in stats.items():
        skipped = ", ".join("%s: %d" % kv for kv in sorted(st["skipped"].items())) or "-"
        lines.append("| %s | %d | %d | %s |" % (name, st["images"], st["captions"], skipped))
        tot_i += st["images"]
        tot_c += st["captions"]
    lines += ["| total | %d | %d | |" % (tot_i, tot_c), "", "## Packages", "",
              "| source | Debian package | version | upstream licence "
              "(/usr/share/doc/PKG/copyright) |", "| --- | --- | --- | --- |"]
    for name, st in stats.items():
        for p in st["packages"]:
            lines.append("| %s | %s | %s | %s |"
                         % (name, p, pkg_version(p) or "not installed", pkg_licence(p)))
        if not st["packages"]:
            lines.append("| %s | none: drawn by tools/corpus/src_%s.py | - | the repository's |"
                         % (name, name))
    lines += ["", "## Fashion-MNIST kinds of thing", "",
              "Images (originals + Fashion-MNIST-look, mirrored and silhouette views) "
              "whose item is classified by tools/corpus/clothing.py; listed in clothing.csv.",
              "", "| class | Debian items | Debian images | procedural items "
              "| procedural images |", "| --- | ---: | ---: | ---: | ---: |"]
    for cls in clothing.CLASSES + ["shoe"]:
        deb = clothing_counts.get((cls, False), (0, 0))
        proc = clothing_counts.get((cls, True), (0, 0))
        label = cls if cls != "shoe" else "other shoes (no class)"
        lines.append("| %s | %d | %d | %d | %d |" % ((label,) + deb + proc))
    lines += ["", "## Acknowledgements", "",
              "- The Hershey Fonts were originally created by Dr. A. V. Hershey while "
              "working at the U. S. National Bureau of Standards.",
              "- The format of the Font data in this distribution was originally created by "
              "James Hurt, Cognition, Inc., 900 Technology Park Drive, Billerica, MA 01821.",
              "- Tux Paint stamps: New Breed Software and contributors (GPL-2).",
              "- Emoji: Noto Color Emoji (Google, Apache-2.0 / OFL-1.1); Symbola by "
              "George Douros.",
              "- Names and keywords: Unicode emoji data and CLDR annotations, "
              "(c) Unicode, Inc.", ""]
    return "\n".join(lines)


def build(opts):
    t_all = time.time()
    prepare_out(opts.out)
    srcs = _sources()
    stats = {}
    rows, cloth_rows = [], []
    clothing_counts = {}
    paths = set()
    failed = 0
    with multiprocessing.Pool(opts.jobs, initializer=_init, initargs=(opts,)) as pool:
        for name in opts.only:
            packages, plan, _ = srcs[name]
            t0 = time.time()
            tasks, notes = plan(opts)
            st = {"packages": packages, "images": 0, "captions": 0,
                  "skipped": {k: v for k, v in notes.items() if isinstance(v, int) and
                              not isinstance(v, bool) and v}}
            print("corpus: %-11s %d items" % (name, len(tasks)), flush=True)
            errors = []
            step = max(1, len(tasks) // 4)
            jobs = ((name, t) for t in tasks)
            for i, res in enumerate(pool.imap(_work, jobs, chunksize=8)):
                if isinstance(res, str):
                    reason = "error" if res.startswith("error:") else res
                    if reason == "error":
                        errors.append(res)
                    st["skipped"][reason] = st["skipped"].get(reason, 0) + 1
                elif not res:
                    st["skipped"]["empty image"] = st["skipped"].get("empty image", 0) + 1
                else:
                    seen_cls = set()
                    for rel, caps, cls in res:
                        if rel in paths:
                            errors.append("error: two items write %s" % rel)
                            continue
                        paths.add(rel)
                        st["images"] += 1
                        st["captions"] += len(caps)
                        rows += [(rel, c) for c in caps]
                        if cls is not None:
                            cloth_rows.append((rel, cls))
                            key = (cls, name == "garments")
                            n_items, n_images = clothing_counts.get(key, (0, 0))
                            clothing_counts[key] = (n_items + (cls not in seen_cls),
                                                    n_images + 1)
                            seen_cls.add(cls)
                if (i + 1) % step == 0 and i + 1 < len(tasks):
                    print("corpus: %-11s %d/%d" % (name, i + 1, len(tasks)), flush=True)
            for e in errors[:3]:
                print("corpus: %s" % e, file=sys.stderr)
            failed += len(errors)
            if "raqm" in notes and not notes["raqm"]:
                print("corpus: warning: Pillow has no raqm; emoji sequences are skipped",
                      file=sys.stderr)
            stats[name] = st
            print("corpus: %-11s %d images, %d captions, skipped %s (%.0f s)"
                  % (name, st["images"], st["captions"], st["skipped"] or "none",
                     time.time() - t0), flush=True)
    write_atomic(os.path.join(opts.out, "captions.csv"), csv_text(["path", "caption"], rows))
    write_atomic(os.path.join(opts.out, "clothing.csv"), csv_text(["path", "class"], cloth_rows))
    write_atomic(os.path.join(opts.out, "SOURCES.md"), sources_md(opts, stats, clothing_counts))
    n_img = sum(s["images"] for s in stats.values())
    print("corpus: done: %d images, %d captions in %s (%.0f s)"
          % (n_img, len(rows), opts.out, time.time() - t_all), flush=True)
    if failed:
        print("corpus: error: %d items failed with an exception (first ones above)" % failed,
              file=sys.stderr)
        return 1
    return 0


def main(argv):
    ap = argparse.ArgumentParser(prog="corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("--check", action="store_true", help="validate OUT_DIR and exit")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default=",".join(SOURCE_NAMES),
                    help="comma-separated sources (default: all): " + ",".join(SOURCE_NAMES))
    ap.add_argument("--digit-reps", type=int, default=6, help="renderings per digit and font")
    ap.add_argument("--letter-reps", type=int, default=2, help="renderings per letter and font")
    ap.add_argument("--garment-reps", type=int, default=30,
                    help="procedural variants per Fashion-MNIST kind of garment")
    opts = ap.parse_args(argv)
    if opts.check:
        return check.main(opts.out)
    opts.only = [s for s in opts.only.split(",") if s]
    bad = [s for s in opts.only if s not in SOURCE_NAMES]
    if bad:
        ap.error("unknown source %s (known: %s)" % (", ".join(bad), ", ".join(SOURCE_NAMES)))
    if not 8 <= opts.size <= 1024:
        ap.error("--size must be in [8, 1024]")
    if min(opts.jobs, opts.digit_reps) < 1 or min(opts.letter_reps, opts.garment_reps) < 0:
        ap.error("--jobs, --digit-reps must be >= 1; --letter-reps, --garment-reps >= 0")
    opts.out = os.path.abspath(opts.out)
    return build(opts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
