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


# ---- training and saved runs, against the CLI ----
import json
import time

t0 = time.time()
K_SHOTS = 4


def cli_json(*args):
    return json.loads(cli(*args))


def write_ppm(path, px):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (px.shape[1], px.shape[0]) + px.tobytes())


# a folder of tiny images in three colour classes, and the same pixels as arrays
rng = np.random.default_rng(0)
colours = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 180, 40)}
folder = os.path.join(TMP, "colours")
arr_x, arr_y, arr_paths = [], [], []
for k, (name, col) in enumerate(sorted(colours.items())):
    os.makedirs(os.path.join(folder, name))
    for i in range(20):
        px = np.clip(np.array(col) + rng.integers(-50, 51, (16, 16, 3)), 0, 255).astype(np.uint8)
        path = os.path.join(folder, name, "img_%02d.ppm" % i)
        write_ppm(path, px)
        arr_x.append(px), arr_y.append(k), arr_paths.append(path)
arr_x, arr_y = np.stack(arr_x), np.array(arr_y)
spec = "folder:" + folder
probe = [os.path.join(folder, c, "img_%02d.ppm" % i) for c in ("blue", "red", "green")
         for i in (0, 7)]

ms = {d["name"]: d for d in cliptune.methods()}
check({"zeroshot", "linear-probe", "coop"} <= set(ms), "methods(): %s" % sorted(ms))
check(ms["coop"]["defaults"].get("epochs") == "50" and ms["coop"]["setup"], "coop's defaults")

m = cliptune.Model(MODEL, need_tokenizer=True)
check(m.path == os.path.abspath(MODEL) and m.act in ("quick_gelu", "gelu") and m.bpe is None
      and len(m.hash) == 16 and m.precision == "f32", "model accessors")
check(raises(lambda: cliptune.Model(MODEL, act="gelu" if m.act == "quick_gelu" else "quick_gelu"),
             "activation"), "a contradicting act is refused")

ds = cliptune.Dataset.open(spec)
check(ds.classnames == ["blue", "green", "red"] and ds.n_classes == 3 and len(ds) == 60,
      "Dataset.open: %r" % ds)
check(all(os.path.exists(p) for p in ds.paths("test")) and
      len(ds.labels("test")) == ds.size("test") > 0, "Dataset paths / labels")
check(raises(lambda: cliptune.Dataset.open("folder:/nonexistent/x"), "/nonexistent/x"),
      "Dataset.open error")


def compare_with_cli(run_dir, run, what):
    """Run.predict against `cliptune predict --json`, Run.evaluate against
    `cliptune eval --json` (the run's own data and test split)."""
    p = run.predict(probe)
    K = len(run.classnames)
    check(p.shape == (len(probe), K) and np.allclose(p.sum(1), 1, atol=1e-5), what + ": probs")
    ref = cli_json("predict", "--run", run_dir, "--json", "--top", str(K), *probe)
    for row, r in zip(p, ref):
        check(run.classnames[int(row.argmax())] == r["label"],
              "%s: label %s vs the CLI's %s" % (what, run.classnames[int(row.argmax())], r["label"]))
        for t in r["top"]:
            got = row[run.classnames.index(t["label"])]
            check(abs(got - t["prob"]) <= 1e-4, "%s: p(%s) %g vs the CLI's %g" %
                  (what, t["label"], got, t["prob"]))
    return p


results = {}
for method, sets in (("linear-probe", None), ("coop", {"epochs": 2})):
    run_dir = os.path.join(TMP, "run-" + method)
    lines = []
    res = m.train(method, ds, run_dir, shots=K_SHOTS, seed=1, set=sets, log=lines.append)
    results[method] = res
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    check(abs(res["top1"] - metrics["top1"]) < 1e-12 and res["novel_top1"] is None,
          "%s: result %s vs metrics.json" % (method, res))
    check(any("test" in l for l in lines), "%s: no log lines" % method)
    # the CLI trains the same run
    cli_dir = os.path.join(TMP, "cli-" + method)
    cli("train", "--method", method, "--model", MODEL, "--data", spec, "--shots", str(K_SHOTS),
        "--seed", "1", "--cache", "none", "--out", cli_dir,
        *(["--set", "epochs=2"] if sets else []))
    cm = json.load(open(os.path.join(cli_dir, "metrics.json")))
    check(cm["top1"] == metrics["top1"], "%s: top-1 %s vs the CLI-trained run's %s" %
          (method, metrics["top1"], cm["top1"]))
    with cliptune.Run(run_dir, model=m) as run:
        check(run.method == method and run.classnames == ds.classnames and
              run.info["shots"] == K_SHOTS and run.info["model_hash"] == m.hash and
              run.info["data"] == spec and abs(run.info["top1"] - res["top1"]) < 1e-12,
              "%s: run info %s" % (method, run.info))
        if sets:
            check(run.info["hyper_parameters"]["epochs"] == "2", "coop: recorded epochs")
        p = compare_with_cli(run_dir, run, method)
        ev = run.evaluate()
        ref = cli_json("eval", "--run", run_dir, "--json", "--cache", "none")
        check(ev["top1"] == ref["top1"] and ev["n"] == ref["test_images"] and
              abs(ev["ece"] - ref["ece"]) < 1e-12, "%s: eval %s vs the CLI's %s" % (method, ev, ref))
        check(abs(ev["top1"] - res["top1"]) < 1e-12 and ev["confusion"].sum() == ev["n"],
              "%s: evaluate vs the training result" % method)
        ev2 = run.evaluate(ds)
        check(ev2["top1"] == ev["top1"] and np.array_equal(ev2["confusion"], ev["confusion"]),
              "%s: evaluate(Dataset) vs evaluate(spec)" % method)
        pd = run.predict_dataset(ds)
        check(pd.shape == (ds.size("test"), 3) and
              abs(np.mean(pd.argmax(1) == ds.labels("test")) - ev["top1"]) < 1e-12,
              "%s: predict_dataset vs evaluate" % method)
    # the run loading its recorded model itself
    run = cliptune.Run(run_dir)
    check(run.model.hash == m.hash and np.array_equal(run.predict(probe), p),
          "%s: the run's own model" % method)
    del run

# errors and refusals
check(raises(lambda: m.train("linear-probe", ds, os.path.join(TMP, "run-coop")),
             "finished run"), "a finished run dir is refused")
check(raises(lambda: m.train("no-such-method", ds), "no-such-method"), "unknown method")
check(raises(lambda: m.train("coop", ds, None, set={"epochz": 2}), "epochz"), "unknown key")
check(raises(lambda: cliptune.Run(os.path.join(TMP, "nowhere")), "nowhere"), "Run error")
try:
    m.train("linear-probe", ds, None, shots=2, log=lambda line: 1 / 0)
    check(False, "an exception in log is lost")
except ZeroDivisionError:
    pass
res = m.train("coop", spec, os.path.join(TMP, "run-coop"), shots=K_SHOTS, set="epochs=2",
              force=True)
check(res["top1"] == results["coop"]["top1"], "force=True retrains the same run")
# other class sets: a subset of the run's classes is scored by restricting
# its logits; other names need classes=..., refused for per-class tensors
import shutil
sub = os.path.join(TMP, "colours-sub")
for c in ("red", "blue"):
    shutil.copytree(os.path.join(folder, c), os.path.join(sub, c))
with cliptune.Run(os.path.join(TMP, "run-linear-probe"), model=m) as run:
    check(run.class_relation(spec) == "same" and run.class_relation("folder:" + sub) == "subset",
          "class_relation")
    full = run.predict_dataset("folder:" + sub)
    sds = cliptune.Dataset.open("folder:" + sub)
    ev = run.evaluate(sds)
    cols = [run.classnames.index(c) for c in sds.classnames]
    want = np.mean(full[:, cols].argmax(1) == sds.labels("test"))
    check(abs(ev["top1"] - want) < 1e-12 and ev["confusion"].shape == (2, 2),
          "subset evaluate %s vs restricted predict %s" % (ev["top1"], want))
check(raises(lambda: cliptune.Run(os.path.join(TMP, "run-linear-probe"), model=m,
                                  classes=["cyan", "magenta", "yellow"]), "per class"),
      "per-class tensors refused for other classes")
with cliptune.Run(os.path.join(TMP, "run-coop"), model=m, classes=["cyan", "magenta"],
                  dataset_name="OxfordPets") as run:
    check(run.predict(probe).shape == (len(probe), 2), "coop re-encodes other classes")
# the CoOp run exported in the official layout and imported back: the same run
ctx_file = os.path.join(TMP, "coop_ctx.safetensors")
cli("export", "--run", os.path.join(TMP, "run-coop"), "--out", ctx_file)
imp = m.train("coop", spec, os.path.join(TMP, "run-imported"), shots=K_SHOTS,
              set="epochs=2", import_from=ctx_file)
check(imp["top1"] == results["coop"]["top1"], "import_from: %r vs %r" % (imp, results["coop"]))
with cliptune.Run(os.path.join(TMP, "run-imported"), model=m) as run:
    check(run.info["method"] == "coop", "imported run info")

# a run trained from arrays predicts the same from arrays, files and the CLI
ad = cliptune.Dataset.from_arrays(arr_x, arr_y, classnames=sorted(colours), name="colours-arr")
check(ad.classnames == sorted(colours) and len(ad) == 60 and
      all(isinstance(i, int) for i in ad.paths("test")), "from_arrays: %r" % ad)
arr_dir = os.path.join(TMP, "run-arrays")
ares = m.train("linear-probe", ad, arr_dir, shots=K_SHOTS)
with cliptune.Run(arr_dir, model=m) as run:
    check(run.info["dataset"] == "colours-arr" and not run.info["data"], "arrays run info")
    pf = compare_with_cli(arr_dir, run, "arrays run")
    rows = [arr_paths.index(p) for p in probe]
    pa = run.predict_arrays(arr_x[rows])
    check(pa.shape == pf.shape and np.abs(pa - pf).max() <= 1e-5,
          "predict_arrays vs predict files: %g" % np.abs(pa - pf).max())
    pall = run.predict_arrays(arr_x)
    check(np.abs(pall[rows] - pf).max() <= 1e-5, "predict_arrays on every row")
    ev = run.evaluate(ad)
    check(abs(ev["top1"] - ares["top1"]) < 1e-12, "arrays: evaluate vs training")
    check(raises(lambda: run.evaluate(), "arrays"), "arrays run: evaluate() needs a Dataset")
    grey = run.predict_arrays(arr_x[rows].mean(3).astype(np.uint8))
    check(grey.shape == pf.shape, "grey arrays")
try:
    cliptune.Dataset.from_arrays(arr_x[:, :, :, :2], arr_y)
    check(False, "two channels accepted")
except ValueError:
    pass
try:
    cliptune.Dataset.from_arrays(arr_x.astype(np.float32), arr_y)
    check(False, "float images accepted")
except TypeError:
    pass
check(raises(lambda: cliptune.Dataset.from_arrays(arr_x, arr_y, classnames=["a", "b"]),
             "label"), "labels beyond the class names")

# multi-label: a DualCoOp run on a small scenes set, with partial labels, against the CLI
if os.path.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"):
    sc = os.path.join(TMP, "scenes")
    cli("make-scenes", sc, "--train", "40", "--val", "10", "--test", "20")
    ml_dir = os.path.join(TMP, "run-dualcoop")
    mres = m.train("dualcoop", "voc:" + sc, ml_dir, shots=0, set={"epochs": 1, "out_scale": 1},
                   partial_labels=0.5)
    check(mres["multi_label"] and mres["top1"] is None and 0 < mres["map"] <= 1,
          "multi-label result %s" % mres)
    with cliptune.Run(ml_dir, model=m) as run:
        check(run.info["multi_label"], "multi-label run info")
        ev = run.evaluate(cache_dir=os.path.join(TMP, "ml-cache"))
        ref = cli_json("eval", "--run", ml_dir, "--json", "--cache", "none")
        check(abs(ev["map"] - mres["map"]) < 1e-12 and abs(ev["map"] - ref["map"]) < 1e-12 and
              ev["ap"].shape == (10,), "multi-label evaluate %s vs the run / CLI %s" %
              (ev["map"], ref["map"]))
        img = os.path.join(sc, "JPEGImages", "000051.jpg")
        pm = run.predict([img])
        check(pm.shape == (1, 10) and (pm >= 0).all() and (pm <= 1).all() and
              abs(pm.sum() - 1) > 1e-3, "multi-label predict: per-class sigmoid probabilities")
    check(raises(lambda: m.train("zeroshot", spec, None, shots=0, partial_labels=0.5),
                 "multi-label"), "partial labels on single-label data")
    # segmentation: MaskCLIP on the same scenes' label maps, against the CLI
    sg_dir = os.path.join(TMP, "run-maskclip")
    sres = m.train("maskclip", "vocseg:" + sc, sg_dir, shots=0, set={"templates": "dataset"})
    check(sres["segmentation"] and sres["top1"] is None and sres["map"] is None and
          0 < sres["miou"] <= 1, "segmentation result %s" % sres)
    with cliptune.Run(sg_dir, model=m) as run:
        check(run.info["segmentation"] and not run.info["multi_label"], "segmentation run info")
        ev = run.evaluate(cache_dir=os.path.join(TMP, "sg-cache"))
        ref = cli_json("eval", "--run", sg_dir, "--json", "--cache", "none")
        check(abs(ev["miou"] - sres["miou"]) < 1e-12 and abs(ev["miou"] - ref["miou"]) < 1e-12
              and ev["iou"].shape == (11,), "segmentation evaluate %s vs the run / CLI %s" %
              (ev["miou"], ref["miou"]))
        check(raises(lambda: run.predict([os.path.join(sc, "JPEGImages", "000051.jpg")]),
                     "labels pixels"), "predict on a segmentation run")

# multi-task: SoftCPT over Fashion-MNIST + digits (one epoch), against the CLI's eval
if os.path.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") and \
        os.path.exists("/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"):
    mt_dir = os.path.join(TMP, "run-softcpt")
    mt = m.train_multitask("softcpt", ["fashion-mnist", "digits"], mt_dir, shots=1,
                           set={"epochs": 1, "aug_views": 0}, max_test=40)
    check(mt["tasks"] == ["fashion-mnist", "digits"] and len(mt["top1"]) == 2 and
          abs(mt["mean_top1"] - sum(mt["top1"]) / 2) < 1e-12, "multi-task result %s" % mt)
    ev = cliptune.evaluate_multitask(mt_dir, model=m)
    ref = cli_json("eval", "--run", mt_dir, "--json", "--cache", "none")
    check(ev["top1"] == mt["top1"] and abs(ref["mean_top1"] - mt["mean_top1"]) < 1e-6,
          "multi-task evaluate %s / CLI %s vs the run %s" % (ev, ref, mt))
    names, pm = cliptune.predict_multitask(mt_dir, "digits", probe[:2], model=m)
    ref = cli_json("predict", "--run", mt_dir, "--task", "1", "--json", "--top", "10",
                   *probe[:2])
    check(names == [str(d) for d in range(10)] and pm.shape == (2, 10) and
          all(abs(pm[i, names.index(e["label"])] - e["prob"]) < 1e-6
              for i in range(2) for e in ref[i]["top"]),
          "predict_multitask vs `cliptune predict --task`")

# lifetimes: the run keeps a borrowed model alive
m2 = cliptune.Model(MODEL)
run = cliptune.Run(os.path.join(TMP, "run-coop"), model=m2)
m2.close()
del m2
check(run.predict(probe[:2]).shape == (2, 3), "a run outlives its model's close()")
run.close()
check(raises(lambda: run.predict(probe[:1]), "closed"), "a closed run")
m.close()
check(raises(lambda: m.encode_texts(["x"]), "closed"), "a closed model")
print("  training and runs: %.1f s" % (time.time() - t0))
print("python binding: %s" % ("OK" if not failed else "%d FAILED" % failed))
if not failed:
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(1 if failed else 0)
