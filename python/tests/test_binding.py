"""The Python binding against the CLI on the shipped model (ctest:
test_python). Environment: CLIPTUNE_LIB (libcliptune.so), CLIPTUNE_CLI (the
cliptune program), CT_SOURCE_DIR (the checkout), CT_TEST_TMP (scratch)."""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

import cliptune

SRC = os.environ["CT_SOURCE_DIR"]
CLI = os.environ["CLIPTUNE_CLI"]
MODEL = os.path.join(SRC, "models", "cliptune-small")
TMP = tempfile.mkdtemp(dir=os.environ.get("CT_TEST_TMP") or None)
failed = 0


def check(cond, what):
    global failed
    if not cond:
        failed += 1
        print("  FAIL: " + what)


def cli(*args):
    r = subprocess.run([CLI] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("cliptune %s: %s" % (args[0], r.stderr))
    return r.stdout


def raises(fn, needle):
    try:
        fn()
    except cliptune.Error as e:
        return needle in str(e)
    return False


imgs = sorted(p for p in glob.glob(os.path.join(SRC, "tests/fixtures/images/*"))
              if p.endswith((".png", ".jpg")))[:6]
texts = ["a photo of a sneaker.", "a photo of a bag.", "an ankle boot", "the digit 7"]

header = open(os.path.join(SRC, "include/cliptune.h")).read()
check('#define CLIPTUNE_VERSION "%s"' % cliptune.version() in header, "version")

with cliptune.Model(MODEL) as m:
    check(m.embed_dim == 128 or m.embed_dim > 0, "embed_dim")
    # embeddings equal the CLI's (the same library code)
    e = m.encode_images(imgs)
    cli("embed", "--model", MODEL, "--images", *imgs, "--out", os.path.join(TMP, "i.npy"))
    ref = np.load(os.path.join(TMP, "i.npy"))
    check(e.shape == ref.shape and np.array_equal(e, ref),
          "image embeddings differ from the CLI's: %s" % np.abs(e - ref).max())
    t = m.encode_texts(texts)
    cli("embed", "--model", MODEL, "--texts", *texts, "--out", os.path.join(TMP, "t.npy"))
    ref = np.load(os.path.join(TMP, "t.npy"))
    check(np.array_equal(t, ref), "text embeddings differ from the CLI's")
    # zero-shot: the CLI's labels and probabilities
    labels = ["t-shirt", "trouser", "sneaker", "bag", "ankle boot"]
    p = m.classify(imgs, labels)
    check(p.shape == (len(imgs), 5) and np.allclose(p.sum(1), 1, atol=1e-5), "probabilities")
    out = cli("classify", "--model", MODEL, "--labels", ",".join(labels), "--top", "1", *imgs)
    for row, line in zip(p, out.strip().split("\n")):
        f = line.split("\t")
        check(labels[int(row.argmax())] == f[1], "label %s vs CLI %s" % (row.argmax(), f[1]))
        check(abs(float(f[2].split("=")[1]) - row.max()) < 1e-3, "probability vs CLI")
    # preprocessed pixels: shape checked in Python, values through the tower
    S = m.image_size
    z = m.encode_pixels(np.zeros((2, 3, S, S)))
    check(z.shape == (2, m.embed_dim) and np.array_equal(z[0], z[1]), "encode_pixels")
    try:
        m.encode_pixels(np.zeros((1, 3, S + 1, S)))
        check(False, "encode_pixels accepted a wrong size")
    except ValueError:
        pass
    # errors carry the library's message
    bad = os.path.join(SRC, "tests/fixtures/images/bad/not_an_image.png")
    check(raises(lambda: m.encode_images([bad]), "not_an_image.png"), "bad image error")
    check(raises(lambda: m.encode_texts(["word " * 100]), "--truncate") or
          raises(lambda: m.encode_texts(["word " * 100]), "too long") or
          raises(lambda: m.encode_texts(["word " * 100]), "tokens"), "long text error")
    check(m.encode_texts(["word " * 100], truncate=True).shape == (1, m.embed_dim), "truncate")
    # bf16 where the CPU has it, a clear refusal where not
    try:
        m.set_precision("bf16")
        b = m.encode_images(imgs)
        cos = (b * e).sum(1) / np.linalg.norm(b, axis=1) / np.linalg.norm(e, axis=1)
        check(cos.min() >= 0.9999 and not np.array_equal(b, e), "bf16 cosine %s" % cos.min())
        m.set_precision("f32")
        check(np.array_equal(m.encode_images(imgs), e), "back to f32")
        print("  bf16: min cosine to f32 %.7f" % cos.min())
    except cliptune.Error as err:
        check("AVX512_BF16" in str(err), "bf16 refusal: %s" % err)
        print("  bf16: refused (%s)" % err)

check(raises(lambda: cliptune.Model("/nonexistent/model"), "/nonexistent/model"), "load error")
print("python binding: %s" % ("OK" if not failed else "%d FAILED" % failed))
sys.exit(1 if failed else 0)
