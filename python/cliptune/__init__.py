"""cliptune from Python: CLIP models and their few-shot adaptation on the CPU
through libcliptune (ctypes, nothing to compile), numpy in and out.

Encode and classify zero-shot:

    import cliptune
    m = cliptune.Model("path/to/hf-clip-folder")     # bpe=, act=, precision=
    img = m.encode_images(["a.jpg", "b.png"])        # (2, E) float32
    txt = m.encode_texts(["a photo of a cat."])      # (1, E) float32
    p = m.classify(["a.jpg"], ["cat", "dog"])        # (1, 2) probabilities

Train a method (cliptune.methods() lists them) on a dataset spec, a
cliptune.Dataset or arrays, into a run directory, as `cliptune train` does:

    data = cliptune.Dataset.open("folder:images")    # or any --data spec
    res = m.train("coop", data, "runs/coop", shots=16, seed=1,
                  set={"epochs": 10}, log=print)     # {"top1": ..., ...}
    arr = cliptune.Dataset.from_arrays(x, y, classnames=["cat", "dog"])
    m.train("linear-probe", arr, "runs/lp")          # x: uint8 (N, H, W[, 3])
    data.classnames, data.size("test")               # its splits: train, val, test
    data.paths("test"), data.labels("test")          # files (rows for arrays), labels

Use a finished run again, as `cliptune predict` / `cliptune eval` do:

    run = cliptune.Run("runs/coop")                  # or Run(dir, model=m)
    run.info["method"], run.classnames               # config.json's record
    p = run.predict(["a.jpg", "b.png"])              # (2, K) probabilities
    p = run.predict_arrays(x)                        # the same from uint8 arrays
    p = run.predict_dataset(data, "test")            # a split, in data.paths() order
    met = run.evaluate()                             # the run's own test split;
    met = run.evaluate("folder:other")               # or a spec / Dataset
    met["top1"], met["confusion"]                    # (K, K) int64

A Run borrows the model it is given (Run(dir, model=m)): the binding keeps the
model alive while the run is, so closing or dropping m first is safe. Without
a model the run loads the one its config.json records (run.model).

Feature caches (cache_dir=) key in-memory images by dataset name and row:
give each distinct array dataset its own name when you cache.

The library is found as $CLIPTUNE_LIB, else beside the installed package
(cmake --install puts both under PREFIX/lib), else libcliptune.so.0 on the
loader's path. Errors raise cliptune.Error with the library's message.
"""
import ctypes
import ctypes.util
import math
import os
import shutil

import numpy as np

__all__ = ["Model", "Dataset", "Run", "Error", "version", "methods", "set_num_threads",
           "get_num_threads"]


class Error(RuntimeError):
    """A failed cliptune call; the message names what and where."""


# ---- the C structures (as in include/cliptune.h, field for field) ----

_c_str_p = ctypes.POINTER(ctypes.c_char_p)
_f32 = ctypes.POINTER(ctypes.c_float)
_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                                ctypes.c_int64, ctypes.c_double, ctypes.c_double)


class _ModelOpts(ctypes.Structure):
    _fields_ = [("bpe", ctypes.c_char_p), ("act", ctypes.c_char_p),
                ("need_tokenizer", ctypes.c_bool), ("precision", ctypes.c_int)]


class _Item(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("index", ctypes.c_int64), ("label", ctypes.c_int)]


class _Dataset(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("root", ctypes.c_char_p),
                ("n_classes", ctypes.c_int), ("classnames", _c_str_p),
                ("n_items", ctypes.c_int64), ("items", ctypes.POINTER(_Item)),
                ("pixels", ctypes.c_void_p), ("targets", ctypes.POINTER(ctypes.c_int8)),
                ("masks", ctypes.POINTER(ctypes.c_char_p)),
                ("reduce_zero_label", ctypes.c_bool), ("sources", ctypes.c_void_p),
                ("item_source", ctypes.POINTER(ctypes.c_int))]


class _Splits(ctypes.Structure):
    _fields_ = [("train", ctypes.POINTER(_Dataset)), ("val", ctypes.POINTER(_Dataset)),
                ("test", ctypes.POINTER(_Dataset))]


class _MethodHead(ctypes.Structure):
    # the first fields of ct_method (the rest are function pointers)
    _fields_ = [("name", ctypes.c_char_p), ("category", ctypes.c_char_p),
                ("setup", ctypes.c_char_p), ("paper", ctypes.c_char_p),
                ("defaults", ctypes.c_char_p)]


class _RunCfg(ctypes.Structure):
    _fields_ = [("model", ctypes.c_void_p), ("data", ctypes.POINTER(_Splits)),
                ("data_spec", ctypes.c_char_p), ("method", ctypes.c_void_p),
                ("set", ctypes.c_char_p), ("shots", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("run_dir", ctypes.c_char_p), ("cache_dir", ctypes.c_char_p),
                ("resume", ctypes.c_bool), ("max_test", ctypes.c_int64),
                ("subsample", ctypes.c_char_p), ("novel_test", ctypes.POINTER(_Dataset)),
                ("import_from", ctypes.c_char_p), ("partial_labels", ctypes.c_double),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p),
                ("progress", _PROGRESS_FN), ("progress_ctx", ctypes.c_void_p),
                ("taxonomy_path", ctypes.c_char_p), ("taxonomy", ctypes.c_void_p)]


class _RunResult(ctypes.Structure):
    _fields_ = [("top1", ctypes.c_double), ("top5", ctypes.c_double),
                ("macro_f1", ctypes.c_double), ("ece", ctypes.c_double),
                ("val_top1", ctypes.c_double), ("novel_top1", ctypes.c_double),
                ("multi_label", ctypes.c_bool)] + \
               [(k, ctypes.c_double) for k in ("map", "map_voc07", "cf1", "of1", "cf1_top3",
                                                 "of1_top3", "val_map")] + \
               [("segmentation", ctypes.c_bool)] + \
               [(k, ctypes.c_double) for k in ("miou", "macc", "aacc")] + \
               [("hierarchy", ctypes.c_bool), ("leaf_acc", ctypes.c_double),
                ("hca", ctypes.c_double), ("mta", ctypes.c_double), ("n_cuts", ctypes.c_int),
                ("node_scores_from", ctypes.c_char_p)]


_MT_MAX_TASKS = 16  # CT_MT_MAX_TASKS


class _MTRunCfg(ctypes.Structure):
    _fields_ = [("model", ctypes.c_void_p), ("n_tasks", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.POINTER(_Splits))), ("data_specs", _c_str_p),
                ("method", ctypes.c_void_p), ("set", ctypes.c_char_p), ("shots", ctypes.c_int),
                ("seed", ctypes.c_uint64), ("run_dir", ctypes.c_char_p),
                ("cache_dir", ctypes.c_char_p), ("resume", ctypes.c_bool),
                ("max_test", ctypes.c_int64),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p),
                ("progress", _PROGRESS_FN), ("progress_ctx", ctypes.c_void_p)]


class _MTRunResult(ctypes.Structure):
    _fields_ = [("n_tasks", ctypes.c_int), ("top1", ctypes.c_double * _MT_MAX_TASKS),
                ("val_top1", ctypes.c_double * _MT_MAX_TASKS), ("mean_top1", ctypes.c_double),
                ("mean_val_top1", ctypes.c_double),
                ("task_names", (ctypes.c_char * 64) * _MT_MAX_TASKS)]


class _MTPrediction(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("n_classes", ctypes.c_int),
                ("probs", ctypes.POINTER(ctypes.c_float)), ("classnames", _c_str_p),
                ("task", ctypes.c_int), ("task_name", ctypes.c_char * 64)]


class _RunInfo(ctypes.Structure):
    _fields_ = [(k, ctypes.c_char_p) for k in
                ("dir", "method", "model", "bpe", "act", "model_hash", "data", "dataset",
                 "subsample", "hyper_parameters")] + \
               [("shots", ctypes.c_int64), ("seed", ctypes.c_int64), ("max_test", ctypes.c_int64),
                ("n_classes", ctypes.c_int), ("classnames", _c_str_p), ("top1", ctypes.c_double),
                ("multi_label", ctypes.c_bool), ("segmentation", ctypes.c_bool),
                ("taxonomy", ctypes.c_char_p)]


class _Metrics(ctypes.Structure):
    _fields_ = [("n_classes", ctypes.c_int), ("n", ctypes.c_int64), ("top1", ctypes.c_double),
                ("top5", ctypes.c_double), ("macro_f1", ctypes.c_double),
                ("ece", ctypes.c_double), ("ece_bins", ctypes.c_int), ("nll", ctypes.c_double),
                ("per_class_acc", ctypes.POINTER(ctypes.c_double)),
                ("per_class_f1", ctypes.POINTER(ctypes.c_double)),
                ("confusion", ctypes.POINTER(ctypes.c_int64)),
                ("hierarchy", ctypes.c_bool), ("leaf_acc", ctypes.c_double),
                ("hca", ctypes.c_double), ("mta", ctypes.c_double), ("n_cuts", ctypes.c_int),
                ("node_scores_from", ctypes.c_char_p)]


class _MLMetrics(ctypes.Structure):
    # Run.evaluate of a multi-label run (ct_saved_run_evaluate_ml)
    _fields_ = [("n_classes", ctypes.c_int), ("n", ctypes.c_int64),
                ("n_pos_classes", ctypes.c_int)] + \
               [(f, ctypes.c_double) for f in ("map", "map_voc07", "cp", "cr", "cf1", "op",
                                               "or_", "of1", "cp3", "cr3", "cf13", "op3",
                                               "or3", "of13")] + \
               [("top_k", ctypes.c_int), ("thresh", ctypes.c_double),
                ("ap", ctypes.POINTER(ctypes.c_double))]


class _SegMetrics(ctypes.Structure):
    # no function here takes it yet: laid out so that _check_layouts keeps it
    # in step with cliptune.h
    _fields_ = [("n_classes", ctypes.c_int), ("n_pixels", ctypes.c_int64),
                ("n_iou_classes", ctypes.c_int)] + \
               [(f, ctypes.c_double) for f in ("miou", "macc", "aacc")] + \
               [("iou", ctypes.POINTER(ctypes.c_double)), ("acc", ctypes.POINTER(ctypes.c_double)),
                ("area_label", ctypes.POINTER(ctypes.c_int64)),
                ("area_pred", ctypes.POINTER(ctypes.c_int64))]


class _KV(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("keys", _c_str_p), ("vals", _c_str_p),
                ("used", ctypes.POINTER(ctypes.c_bool))]


def _load():
    # $CLIPTUNE_LIB; the library installed beside this package (cmake
    # --install puts it in PREFIX/lib/python3/dist-packages, the library in
    # PREFIX/lib); the loader's search path
    here = os.path.dirname(os.path.abspath(__file__))
    beside = os.path.normpath(os.path.join(here, "..", "..", "..", "libcliptune.so.0"))
    name = os.environ.get("CLIPTUNE_LIB") or (beside if os.path.exists(beside) else None) or \
        ctypes.util.find_library("cliptune") or "libcliptune.so.0"
    lib = ctypes.CDLL(name)
    vp, i32, i64, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_char_p
    splits_p, ds_p = ctypes.POINTER(_Splits), ctypes.POINTER(_Dataset)
    sig = {
        "ct_version": (cs, []),
        "ct_struct_size": (ctypes.c_size_t, [ctypes.c_char_p]),
        "ct_last_error": (cs, []),
        "ct_model_load": (vp, [cs, cs, ctypes.c_bool]),
        "ct_model_load_ex": (vp, [cs, ctypes.POINTER(_ModelOpts)]),
        "ct_model_free": (None, [vp]),
        "ct_model_clip": (vp, [vp]),
        "ct_model_path": (cs, [vp]),
        "ct_model_bpe": (cs, [vp]),
        "ct_model_act": (cs, [vp]),
        "ct_model_hash": (ctypes.c_uint64, [vp]),
        "ct_model_embed_dim": (i32, [vp]),
        "ct_model_image_size": (i32, [vp]),
        "ct_model_encode_images": (i32, [vp, _c_str_p, i32, _f32]),
        "ct_model_encode_pixels": (i32, [vp, _f32, i32, _f32]),
        "ct_model_encode_texts": (i32, [vp, _c_str_p, i32, ctypes.c_bool, _f32]),
        "ct_model_classify": (i32, [vp, _c_str_p, i32, _c_str_p, i32, cs, _f32]),
        "ct_clip_set_precision": (i32, [vp, i32]),
        "ct_clip_get_precision": (i32, [vp]),
        "ct_set_num_threads": (None, [i32]),
        "ct_get_num_threads": (i32, []),
        "ct_data_open": (i32, [cs, splits_p]),
        "ct_data_spec_absolute": (i32, [cs, ctypes.c_char_p, ctypes.c_size_t]),
        "ct_data_from_arrays": (i32, [cs, ctypes.POINTER(ctypes.c_uint8), i64, i32, i32, i32,
                                      ctypes.POINTER(ctypes.c_int), i32, _c_str_p, splits_p]),
        "ct_splits_free": (None, [splits_p]),
        "ct_dataset_free": (None, [ds_p]),
        "ct_dataset_head": (ds_p, [ds_p, i64]),
        "ct_method_count": (i32, []),
        "ct_method_at": (vp, [i32]),
        "ct_method_find": (vp, [cs]),
        "ct_kv_parse": (i32, [ctypes.POINTER(_KV), cs]),
        "ct_kv_free": (None, [ctypes.POINTER(_KV)]),
        "ct_kv_append": (i32, [ctypes.POINTER(ctypes.c_void_p), cs]),
        "ct_run_cfg_default": (_RunCfg, []),
        "ct_run": (i32, [ctypes.POINTER(_RunCfg), ctypes.POINTER(_RunResult)]),
        "ct_mt_run_cfg_default": (_MTRunCfg, []),
        "ct_mt_run": (i32, [ctypes.POINTER(_MTRunCfg), ctypes.POINTER(_MTRunResult)]),
        "ct_mt_evaluate": (i32, [cs, vp, cs, cs, ctypes.POINTER(_MTRunResult)]),
        "ct_mt_predict_files": (i32, [cs, vp, cs, _c_str_p, i32, ctypes.POINTER(_MTPrediction)]),
        "ct_mt_prediction_free": (None, [ctypes.POINTER(_MTPrediction)]),
        "ct_saved_run_open": (vp, [cs]),
        "ct_saved_run_free": (None, [vp]),
        "ct_saved_run_info": (ctypes.POINTER(_RunInfo), [vp]),
        "ct_saved_run_set_classes": (i32, [vp, _c_str_p, i32]),
        "ct_saved_run_class_relation": (i32, [vp, ds_p]),
        "ct_saved_run_set_dataset_name": (i32, [vp, cs]),
        "ct_saved_run_attach": (i32, [vp, vp]),
        "ct_saved_run_model": (vp, [vp]),
        "ct_saved_run_set_progress": (None, [vp, _PROGRESS_FN, vp]),
        "ct_saved_run_predict_files": (i32, [vp, _c_str_p, i32, _f32]),
        "ct_saved_run_predict": (i32, [vp, ds_p, cs, _f32]),
        "ct_saved_run_evaluate": (i32, [vp, ds_p, cs, cs, cs, ctypes.POINTER(_Metrics)]),
        "ct_metrics_free": (None, [ctypes.POINTER(_Metrics)]),
        "ct_saved_run_evaluate_ml": (i32, [vp, ds_p, cs, cs, cs, ctypes.POINTER(_MLMetrics)]),
        "ct_saved_run_evaluate_seg": (i32, [vp, ds_p, cs, cs, cs, ctypes.POINTER(_SegMetrics)]),
        "ct_ml_metrics_free": (None, [ctypes.POINTER(_MLMetrics)]),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()


def _check_layouts():
    # the structs this module lays out itself must be the library's, byte for
    # byte: a library built from another header would otherwise be misread
    for cname, py in (("ct_run_cfg", _RunCfg), ("ct_run_result", _RunResult),
                      ("ct_run_info", _RunInfo), ("ct_metrics", _Metrics),
                      ("ct_ml_metrics", _MLMetrics), ("ct_seg_metrics", _SegMetrics),
                      ("ct_model_opts", _ModelOpts), ("ct_dataset", _Dataset),
                      ("ct_splits", _Splits), ("ct_item", _Item), ("ct_kv", _KV),
                      ("ct_mt_run_cfg", _MTRunCfg), ("ct_mt_run_result", _MTRunResult),
                      ("ct_mt_prediction", _MTPrediction)):
        want = _lib.ct_struct_size(cname.encode())
        if want != ctypes.sizeof(py):
            raise ImportError("cliptune: %s is %d bytes in %s but %d in this binding: the "
                              "library and the Python package are from different versions"
                              % (cname, want, _lib._name, ctypes.sizeof(py)))


_check_layouts()


def version():
    """The linked library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.ct_version().decode()


def set_num_threads(n):
    """Threads the engine uses (OpenMP and BLAS); n <= 0 restores the default."""
    _lib.ct_set_num_threads(int(n))


def get_num_threads():
    return _lib.ct_get_num_threads()


def _error():
    return Error(_lib.ct_last_error().decode(errors="replace"))


def _check(status):
    if status != 0:
        raise _error()


def _b(x):
    """str / PathLike / bytes to bytes (None stays None)."""
    if x is None:
        return None
    if isinstance(x, os.PathLike):
        x = os.fspath(x)
    return os.fsencode(x) if isinstance(x, str) else bytes(x)


def _s(b):
    return None if b is None else b.decode(errors="replace")


def _strings(items):
    if isinstance(items, (str, bytes, os.PathLike)):
        raise TypeError("expected a list of strings or paths, not one %s" % type(items).__name__)
    items = [_b(x) for x in items]
    return (ctypes.c_char_p * max(len(items), 1))(*items), len(items)


def _f32_ptr(a):
    return a.ctypes.data_as(_f32)


def _nan_none(x):
    return None if math.isnan(x) else float(x)


def _kv_dict(text):
    """"k=v k2=\"v 2\"" (the library's hyper-parameter text) as a dict."""
    kv = _KV()
    try:
        _check(_lib.ct_kv_parse(ctypes.byref(kv), _b(text or "")))
        return {_s(kv.keys[i]): _s(kv.vals[i]) for i in range(kv.n)}
    finally:
        _lib.ct_kv_free(ctypes.byref(kv))


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


def _kv_text(d):
    """Overrides (a dict, "k=v ..." text, or a list of "k=v") as the library's
    hyper-parameter text, each item through ct_kv_append (which quotes values
    holding spaces, commas or quotes)."""
    if d is None:
        return None
    if isinstance(d, (str, bytes)):
        return _b(d)
    items = list(d.items()) if isinstance(d, dict) else [str(x).split("=", 1) for x in d]
    text = ctypes.c_void_p()
    try:
        for kv in items:
            if len(kv) != 2 or not str(kv[0]):
                raise ValueError("hyper-parameter %r is not key=value" % ("=".join(map(str, kv)),))
            k, v = kv
            v = ("1" if v else "0") if isinstance(v, bool) else str(v)
            if _lib.ct_kv_append(ctypes.byref(text), ("%s=%s" % (k, v)).encode()) != 0:
                raise ValueError(_lib.ct_last_error().decode(errors="replace"))
        return ctypes.string_at(text.value) if text.value else b""
    finally:
        _libc.free(text)


class _Handle:
    """Owns one C object: frees it (free(ptr)) when the last Python reference
    goes; keep holds what it must outlive (a borrowed model, a parent)."""

    def __init__(self, ptr, free, keep=None):
        self.ptr, self._free, self.keep = ptr, free, keep

    def __del__(self):
        if self.ptr and self._free:
            self._free(self.ptr)
        self.ptr = None


def methods():
    """Every method in the library: a list of dicts with name, category,
    setup, paper and defaults (its default hyper-parameters, a dict)."""
    out = []
    for i in range(_lib.ct_method_count()):
        h = _MethodHead.from_address(_lib.ct_method_at(i))
        out.append({"name": _s(h.name), "category": _s(h.category), "setup": _s(h.setup),
                    "paper": _s(h.paper), "defaults": _kv_dict(_s(h.defaults))})
    return out


_PRECISIONS = {"f32": 0, "bf16": 1}


class Model:
    """CLIP with its tokenizer and preprocessing (ct_model).

    path: a Hugging Face CLIP folder, or an OpenAI-named .safetensors file
    (then bpe: bpe_simple_vocab_16e6.txt.gz or a vocab.json with merges.txt
    beside it). act: None (the checkpoint's own), "quick_gelu" or "gelu"
    (OpenAI-layout files; an HF folder accepts only its own); gelu=True is
    act="gelu". precision: "f32" or "bf16" (CPUs with AVX512_BF16).
    need_tokenizer: fail at load when there is none (training needs one)."""

    def __init__(self, path, bpe=None, gelu=False, *, act=None, precision="f32",
                 need_tokenizer=False):
        if precision not in _PRECISIONS:
            raise ValueError("precision must be 'f32' or 'bf16'")
        if gelu and act not in (None, "gelu"):
            raise ValueError("gelu=True contradicts act=%r" % (act,))
        opts = _ModelOpts(_b(bpe), _b(act or ("gelu" if gelu else None)), bool(need_tokenizer),
                          _PRECISIONS[precision])
        p = _lib.ct_model_load_ex(_b(path), ctypes.byref(opts))
        if not p:
            raise _error()
        self._h = _Handle(p, _lib.ct_model_free)
        self._init()

    @classmethod
    def _borrowed(cls, ptr, owner):
        # a model owned by another object (a run's recorded model)
        m = cls.__new__(cls)
        m._h = _Handle(ptr, None, keep=owner)
        m._init()
        return m

    def _init(self):
        self.embed_dim = _lib.ct_model_embed_dim(self._m)
        self.image_size = _lib.ct_model_image_size(self._m)

    @property
    def _m(self):
        h = getattr(self, "_h", None)
        if h is None:
            raise Error("the model is closed")
        return h.ptr

    def close(self):
        """Release the model (runs still using it keep it until they close)."""
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def path(self):
        """The absolute path a run records."""
        return _s(_lib.ct_model_path(self._m))

    @property
    def bpe(self):
        """The tokenizer override, or None (the model's own)."""
        return _s(_lib.ct_model_bpe(self._m))

    @property
    def act(self):
        """"quick_gelu" or "gelu"."""
        return _s(_lib.ct_model_act(self._m))

    @property
    def hash(self):
        """The content hash, as config.json's "model_hash" (16 hex digits)."""
        return "%016x" % _lib.ct_model_hash(self._m)

    @property
    def precision(self):
        return {v: k for k, v in _PRECISIONS.items()}[
            _lib.ct_clip_get_precision(_lib.ct_model_clip(self._m))]

    def set_precision(self, precision):
        """"f32" (default) or "bf16" (GEMMs in bf16 weights; CPUs with
        AVX512_BF16 only, else Error)."""
        if precision not in _PRECISIONS:
            raise ValueError("precision must be 'f32' or 'bf16'")
        _check(_lib.ct_clip_set_precision(_lib.ct_model_clip(self._m), _PRECISIONS[precision]))

    def encode_images(self, paths):
        """(n, E) float32: projected, unnormalised embeddings of image files."""
        arr, n = _strings(paths)
        out = np.empty((n, self.embed_dim), np.float32)
        _check(_lib.ct_model_encode_images(self._m, arr, n, _f32_ptr(out)))
        return out

    def encode_pixels(self, pixels):
        """(n, E) float32 from preprocessed pixels (n, 3, S, S)."""
        px = np.ascontiguousarray(pixels, dtype=np.float32)
        S = self.image_size
        if px.ndim != 4 or px.shape[1:] != (3, S, S):
            raise ValueError("pixels must be (n, 3, %d, %d), got %s" % (S, S, px.shape))
        out = np.empty((px.shape[0], self.embed_dim), np.float32)
        _check(_lib.ct_model_encode_pixels(self._m, _f32_ptr(px), px.shape[0], _f32_ptr(out)))
        return out

    def encode_texts(self, texts, truncate=False):
        """(n, E) float32 for a list of strings."""
        arr, n = _strings(texts)
        out = np.empty((n, self.embed_dim), np.float32)
        _check(_lib.ct_model_encode_texts(self._m, arr, n, bool(truncate), _f32_ptr(out)))
        return out

    def classify(self, paths, labels, template="a photo of a {}."):
        """Zero-shot: (n, k) softmax probabilities over the labels."""
        parr, n = _strings(paths)
        larr, k = _strings(labels)
        out = np.empty((n, k), np.float32)
        _check(_lib.ct_model_classify(self._m, parr, n, larr, k, template.encode(),
                                      _f32_ptr(out)))
        return out

    def train(self, method, data, run_dir=None, shots=16, seed=1, set=None, cache_dir=None,
              max_test=0, resume=False, force=False, log=None, progress=None,
              import_from=None, partial_labels=None, taxonomy=None):
        """Adapt (or, for "zeroshot" with shots=0, apply) a method and test it,
        as `cliptune train`: writes config.json, metrics.json, predictions.csv,
        log.txt, report.md and learned.safetensors to run_dir (None: nothing
        written). data: a cliptune.Dataset or a data spec string. set: the
        method's hyper-parameter overrides, a dict ({"epochs": 2}), "k=v ..."
        text or a list of "k=v". A run_dir that holds a finished or
        interrupted run is refused unless resume (continue it) or force
        (replace it). log(line) gets the log lines; progress(stage, done,
        total, loss, lr) the progress. import_from: a checkpoint of the
        method's official code (a torch.save .pth, or an exported
        safetensors) whose learned tensors replace training, as `cliptune
        import`. partial_labels: for a multi-label dataset, the portion of
        training labels kept known (DualCoOp's partial-label setting).
        taxonomy: a class taxonomy file over the dataset's classes (a
        hierarchy run, `--taxonomy`; docs/training.md).
        Returns a dict: top1, top5, macro_f1, ece, val_top1 and novel_top1,
        and for multi-label datasets multi_label, map, map_voc07, cf1, of1,
        cf1_top3, of1_top3 and val_map, for segmentation datasets
        segmentation, miou, macc and aacc, for hierarchy runs hierarchy,
        leaf_acc, hca, mta, n_cuts and node_scores_from (None when not
        measured)."""
        ds = data if isinstance(data, Dataset) else Dataset.open(data)
        mp = _lib.ct_method_find(_b(method))
        if not mp:
            raise Error("unknown method \"%s\" (cliptune.methods() lists them)" % method)
        if run_dir is not None and not resume:
            _prepare_run_dir(os.fspath(run_dir), force)
        cfg = _lib.ct_run_cfg_default()
        cfg.model = self._m
        cfg.data = ctypes.pointer(ds._splits)
        cfg.data_spec = _b(ds.spec)
        cfg.method = mp
        set_text = _kv_text(set)
        cfg.set = set_text
        cfg.shots = int(shots)
        cfg.seed = int(seed)
        cfg.run_dir = _b(run_dir)
        cfg.cache_dir = _b(cache_dir)
        cfg.resume = bool(resume)
        cfg.max_test = int(max_test)
        import_path = _b(os.fspath(import_from)) if import_from is not None else None
        cfg.import_from = import_path
        cfg.partial_labels = float(partial_labels) if partial_labels is not None else 0.0
        tax_path = _b(os.fspath(taxonomy)) if taxonomy is not None else None
        cfg.taxonomy_path = tax_path
        errors = []
        log_cb = progress_cb = None
        if log is not None:
            def log_cb(ctx, line):
                try:
                    log(line.decode(errors="replace"))
                except BaseException as e:  # noqa: B902 - re-raised after the call
                    errors.append(e)
            log_cb = _LOG_FN(log_cb)
            cfg.log = log_cb
        if progress is not None:
            progress_cb = _PROGRESS_FN(_progress_adapter(progress, errors))
            cfg.progress = progress_cb
        res = _RunResult()
        status = _lib.ct_run(ctypes.byref(cfg), ctypes.byref(res))
        del set_text, log_cb, progress_cb  # alive until here: cfg points at them
        if status != 0:
            raise _error()
        if errors:
            raise errors[0]
        out = {k: _nan_none(getattr(res, k)) for k, _ in _RunResult._fields_
               if k != "node_scores_from"}
        out["node_scores_from"] = _s(res.node_scores_from)
        out["hierarchy"], out["n_cuts"] = bool(res.hierarchy), int(res.n_cuts)
        return out

    def train_multitask(self, method, datas, run_dir=None, shots=16, seed=1, set=None,
                        cache_dir=None, max_test=0, resume=False, force=False, log=None):
        """A multi-task run (ct_mt_run, `cliptune train` with several --data):
        method (softcpt, mvlpt, or zeroshot as the baseline) learns the datasets
        datas (Dataset objects or data specs) jointly, each keeping its own
        classes. Returns a dict: tasks (names), top1 and val_top1 (per task),
        mean_top1, mean_val_top1."""
        dss = [d if isinstance(d, Dataset) else Dataset.open(d) for d in datas]
        if not 1 <= len(dss) <= _MT_MAX_TASKS:
            raise Error("train_multitask: 1 .. %d datasets" % _MT_MAX_TASKS)
        mp = _lib.ct_method_find(_b(method))
        if not mp:
            raise Error("unknown method \"%s\" (cliptune.methods() lists them)" % method)
        if run_dir is not None and not resume:
            _prepare_run_dir(os.fspath(run_dir), force)
        n = len(dss)
        sp = (ctypes.POINTER(_Splits) * n)(*[ctypes.pointer(d._splits) for d in dss])
        specs = (ctypes.c_char_p * n)(*[_b(d.spec) for d in dss])
        cfg = _lib.ct_mt_run_cfg_default()
        cfg.model, cfg.n_tasks, cfg.data, cfg.method = self._m, n, sp, mp
        cfg.data_specs = ctypes.cast(specs, _c_str_p)
        set_text = _kv_text(set)
        cfg.set = set_text
        cfg.shots, cfg.seed = int(shots), int(seed)
        cfg.run_dir, cfg.cache_dir = _b(run_dir), _b(cache_dir)
        cfg.resume, cfg.max_test = bool(resume), int(max_test)
        errors, log_cb = [], None
        if log is not None:
            def log_cb(ctx, line):
                try:
                    log(line.decode(errors="replace"))
                except BaseException as e:  # noqa: B902 - re-raised after the call
                    errors.append(e)
            log_cb = _LOG_FN(log_cb)
            cfg.log = log_cb
        res = _MTRunResult()
        status = _lib.ct_mt_run(ctypes.byref(cfg), ctypes.byref(res))
        del set_text, log_cb, sp, specs
        if status != 0:
            raise _error()
        if errors:
            raise errors[0]
        return _mt_result(res)


def _mt_result(res):
    n = res.n_tasks
    return {"tasks": [res.task_names[t].value.decode(errors="replace") for t in range(n)],
            "top1": [res.top1[t] for t in range(n)],
            "val_top1": [_nan_none(res.val_top1[t]) for t in range(n)],
            "mean_top1": res.mean_top1, "mean_val_top1": _nan_none(res.mean_val_top1)}


def predict_multitask(run_dir, task, paths, model=None):
    """A saved multi-task run's predictions for image files of one of its
    tasks (ct_mt_predict_files, `cliptune predict --task`): task is the
    task's dataset name or index. Returns (classnames, probs): the task's
    class names and the (n, K_task) float32 softmax over them."""
    arr, n = _strings(paths)
    p = _MTPrediction()
    _check(_lib.ct_mt_predict_files(_b(os.fspath(run_dir)),
                                    model._m if model is not None else None, _b(str(task)),
                                    arr, n, ctypes.byref(p)))
    try:
        K = p.n_classes
        names = [p.classnames[k].decode() for k in range(K)]
        probs = np.ctypeslib.as_array(p.probs, shape=(n, K)).copy() if n else \
            np.empty((0, K), np.float32)
    finally:
        _lib.ct_mt_prediction_free(ctypes.byref(p))
    return names, probs


def evaluate_multitask(run_dir, model=None, cache_dir=None, out_dir=None):
    """A saved multi-task run evaluated again on its recorded tasks
    (ct_mt_evaluate, `cliptune eval`): model None loads the recorded one.
    out_dir: metrics.json and report.md there. Returns train_multitask's dict."""
    res = _MTRunResult()
    _check(_lib.ct_mt_evaluate(_b(os.fspath(run_dir)), model._m if model is not None else None,
                               _b(cache_dir), _b(out_dir), ctypes.byref(res)))
    return _mt_result(res)


def _progress_adapter(fn, errors):
    def cb(ctx, stage, done, total, loss, lr):
        try:
            fn(stage.decode(errors="replace"), done, total, _nan_none(loss), _nan_none(lr))
        except BaseException as e:  # noqa: B902 - re-raised after the call
            errors.append(e)
    return cb


# what a run writes (as the CLI's --force removes it)
_RUN_FILES = ("config.json", "metrics.json", "predictions.csv", "log.txt", "report.md",
              "confusion.svg", "learned.safetensors", "checkpoint.safetensors",
              "checkpoint.json", "novel.json", "wise_ft_curve.csv", "wise_ft_curve.json",
              "overlays.png")


def _prepare_run_dir(d, force):
    if force:
        for f in _RUN_FILES:
            try:
                os.unlink(os.path.join(d, f))
            except FileNotFoundError:
                pass
        if os.path.isdir(d):
            for e in os.listdir(d):
                if e.startswith("eval-") or e == "predictions":
                    shutil.rmtree(os.path.join(d, e))
        return
    if os.path.exists(os.path.join(d, "metrics.json")):
        raise Error("%s holds a finished run (metrics.json): give another run_dir, or "
                    "force=True to replace it" % d)
    if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
        raise Error("%s holds an interrupted run (checkpoint.safetensors): resume=True "
                    "continues it, force=True starts over" % d)


_SPLITS = ("train", "val", "test")


class Dataset:
    """A labelled dataset with its train / val / test splits (ct_splits).

    Dataset.open(spec): a data spec as the CLI's --data takes it
    (folder:DIR, csv:FILE@ROOT, coop:SPLIT.json@IMAGES, npy:X.npy,Y.npy,
    fashion-mnist[:DIR], digits[:FILE]; docs/datasets.md).
    Dataset.from_arrays(images, labels, ...): numpy arrays in memory."""

    def __init__(self):
        raise TypeError("use Dataset.open(spec) or Dataset.from_arrays(images, labels)")

    @classmethod
    def _wrap(cls, splits, spec):
        d = cls.__new__(cls)
        d._splits = splits
        d._h = _Handle(ctypes.pointer(splits), _lib.ct_splits_free)
        d.spec = spec
        return d

    @classmethod
    def open(cls, spec):
        """The dataset a spec names (see the class docstring)."""
        sp = _Splits()
        _check(_lib.ct_data_open(_b(spec), ctypes.byref(sp)))
        return cls._wrap(sp, os.fspath(spec))

    @classmethod
    def from_arrays(cls, images, labels, classnames=None, name="arrays"):
        """images: uint8 (N, H, W) grey or (N, H, W, 1|3), row-major pixels
        (integer arrays in 0..255 are converted); labels: N ints in
        [0, K); classnames: K names (default "0", "1", ...; K = the largest
        label + 1). Split as the npy spec: a fixed, hash-chosen 10% val and
        10% test per class. The pixels are copied. A run trained on it
        records no data spec: evaluate it by passing a Dataset."""
        x = np.asarray(images)
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.integer):
                raise TypeError("images must be uint8 (or integers in 0..255), not %s" % x.dtype)
            if x.size and (x.min() < 0 or x.max() > 255):
                raise ValueError("images: values outside 0..255")
            x = x.astype(np.uint8)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[3] not in (1, 3):
            raise ValueError("images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got %s"
                             % (np.asarray(images).shape,))
        x = np.ascontiguousarray(x)
        y = np.asarray(labels)
        if y.ndim != 1 or len(y) != x.shape[0] or (y.size and not np.issubdtype(y.dtype, np.integer)):
            raise ValueError("labels must be %d integers, got %s %s" % (x.shape[0], y.dtype,
                                                                       y.shape))
        y = np.ascontiguousarray(y, dtype=np.intc)
        if classnames is not None:
            names = [str(c) for c in classnames]
        else:
            names = [str(k) for k in range(int(y.max()) + 1 if y.size else 1)]
        carr, k = _strings(names)
        sp = _Splits()
        _check(_lib.ct_data_from_arrays(
            _b(name), x.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), x.shape[0], x.shape[1],
            x.shape[2], x.shape[3], y.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), k, carr,
            ctypes.byref(sp)))
        return cls._wrap(sp, None)

    def _split(self, split):
        if split not in _SPLITS:
            raise ValueError("split must be one of %s" % (_SPLITS,))
        p = getattr(self._splits, split)
        return p.contents if p else None

    @property
    def name(self):
        return _s(self._splits.train.contents.name)

    @property
    def classnames(self):
        t = self._splits.train.contents
        return [_s(t.classnames[k]) for k in range(t.n_classes)]

    @property
    def n_classes(self):
        return self._splits.train.contents.n_classes

    def __len__(self):
        return sum(self.size(s) for s in _SPLITS)

    def size(self, split="test"):
        """Items in a split (0 for a missing val split)."""
        d = self._split(split)
        return d.n_items if d else 0

    def labels(self, split="test"):
        """A split's labels, int64 (n,)."""
        d = self._split(split)
        return np.array([d.items[i].label for i in range(d.n_items)] if d else [], np.int64)

    def paths(self, split="test"):
        """A split's image files (root joined; ready to open), or, for an
        in-memory dataset, its rows of the arrays (ints)."""
        d = self._split(split)
        if not d:
            return []
        root = _s(d.root) or ""
        out = []
        for i in range(d.n_items):
            it = d.items[i]
            out.append(os.path.join(root, _s(it.path)) if it.path is not None else int(it.index))
        return out

    def __repr__(self):
        return "<cliptune.Dataset %s: %d classes, train/val/test %d/%d/%d>" % (
            self.name, self.n_classes, self.size("train"), self.size("val"), self.size("test"))


class Run:
    """A finished run directory (ct_saved_run), to predict or evaluate with
    again, as `cliptune predict` / `cliptune eval` do.

    model: a cliptune.Model to use (borrowed; kept alive by the run); None
    loads the one config.json records with its recorded tokenizer and
    activation. A model whose content hash differs from the run's is
    refused. classes: score other class names than the run's (base-to-novel,
    cross-dataset transfer; only class-agnostic learned tensors load: a
    method with per-class ones raises). A dataset whose classes are each one
    of the run's (ImageNet-A/-R for an ImageNet run) needs no classes:
    evaluate restricts the run's logits to them (class_relation tells which
    case applies). dataset_name: score as that dataset (its prompt template,
    as CoOp's cross-dataset evaluation; default the training one's).
    progress(stage, done, total,
    loss, lr): for methods that score images slowly."""

    def __init__(self, run_dir, model=None, classes=None, progress=None, dataset_name=None):
        p = _lib.ct_saved_run_open(_b(run_dir))
        if not p:
            raise _error()
        self._model = model  # borrowed by the C run: alive as long as we are
        self._h = _Handle(p, _lib.ct_saved_run_free, keep=model._h if model else None)
        self._progress_cb = None
        self._errors = []
        if classes is not None:
            carr, n = _strings(classes)
            _check(_lib.ct_saved_run_set_classes(p, carr, n))
        if dataset_name is not None:
            _check(_lib.ct_saved_run_set_dataset_name(p, _b(dataset_name)))
        if progress is not None:
            self._progress_cb = _PROGRESS_FN(_progress_adapter(progress, self._errors))
            _lib.ct_saved_run_set_progress(p, self._progress_cb, None)
        _check(_lib.ct_saved_run_attach(p, model._m if model else None))
        if model is None:
            self._model = Model._borrowed(_lib.ct_saved_run_model(p), self._h)
        self.info = self._read_info()

    @property
    def _r(self):
        h = getattr(self, "_h", None)
        if h is None:
            raise Error("the run is closed")
        return h.ptr

    def close(self):
        self._h = None
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_info(self):
        ri = _lib.ct_saved_run_info(self._r).contents
        info = {k: _s(getattr(ri, k)) for k in
                ("dir", "method", "model", "bpe", "act", "model_hash", "data", "dataset",
                 "subsample")}
        info["hyper_parameters"] = _kv_dict(_s(ri.hyper_parameters))
        info.update(shots=ri.shots, seed=ri.seed, max_test=ri.max_test, n_classes=ri.n_classes,
                    classnames=[_s(ri.classnames[k]) for k in range(ri.n_classes)],
                    top1=_nan_none(ri.top1), multi_label=bool(ri.multi_label),
                    segmentation=bool(ri.segmentation), taxonomy=_s(ri.taxonomy))
        return info

    @property
    def model(self):
        """The cliptune.Model the run uses."""
        if self._model is None:
            raise Error("the run is closed")
        return self._model

    @property
    def classnames(self):
        return list(self.info["classnames"])

    def class_relation(self, data, split="test"):
        """How a dataset's classes (a Dataset or a spec) stand to the run's, by
        name: "same" (in order), "subset" (each one of the run's: evaluate
        restricts the logits to them) or "other" (open the run with
        classes=... to re-encode them)."""
        ds = data if isinstance(data, Dataset) else Dataset.open(os.fspath(data))
        d = ds._split(split)
        if d is None:
            raise Error("%s has no %s split" % (ds.name, split))
        r = _lib.ct_saved_run_class_relation(self._r, ctypes.byref(d))
        return {0: "same", 1: "subset", 2: "other"}.get(r, "unknown")

    @property
    def method(self):
        return self.info["method"]

    def _raise_callback_error(self):
        if self._errors:
            e = self._errors[0]
            del self._errors[:]
            raise e

    def predict(self, paths):
        """(n, K) float32 softmax probabilities of the run's classes for image
        files, in the run's class order (run.classnames)."""
        arr, n = _strings(paths)
        out = np.empty((n, self.info["n_classes"]), np.float32)
        _check(_lib.ct_saved_run_predict_files(self._r, arr, n, _f32_ptr(out)))
        self._raise_callback_error()
        return out

    def predict_dataset(self, data, split="test", cache_dir=None):
        """(n, K) probabilities for a split's images (a Dataset or a spec),
        in its order (data.paths(split))."""
        ds = data if isinstance(data, Dataset) else Dataset.open(data)
        d = ds._split(split)
        if d is None:
            raise Error("%s has no %s split" % (ds.name, split))
        out = np.empty((d.n_items, self.info["n_classes"]), np.float32)
        _check(_lib.ct_saved_run_predict(self._r, ctypes.byref(d), _b(cache_dir),
                                         _f32_ptr(out)))
        self._raise_callback_error()
        return out

    def predict_arrays(self, images):
        """(n, K) probabilities for uint8 images (N, H, W[, 1|3]) as
        Dataset.from_arrays takes them, in their order."""
        K = self.info["n_classes"]
        n = len(images)
        ds = Dataset.from_arrays(images, np.zeros(n, np.intc), self.classnames, name="predict")
        out = np.empty((n, K), np.float32)
        seen = 0
        # the library splits an array dataset three ways; every row lies in
        # exactly one split, whose items record it
        for split in _SPLITS:
            d = ds._split(split)
            if d is None or d.n_items == 0:
                continue
            p = np.empty((d.n_items, K), np.float32)
            _check(_lib.ct_saved_run_predict(self._r, ctypes.byref(d), None, _f32_ptr(p)))
            rows = np.array([d.items[i].index for i in range(d.n_items)], np.int64)
            out[rows] = p
            seen += d.n_items
        if seen != n:
            raise Error("predict_arrays: the library's splits hold %d of %d images" % (seen, n))
        self._raise_callback_error()
        return out

    def evaluate(self, data=None, split="test", max_test=None, cache_dir=None, out_dir=None):
        """Metrics on a test set with the run's classes, in order, or a subset
        of them by name (ImageNet-A/-R for an ImageNet run: the run's logits
        restricted to the set's classes, K its count): data a
        Dataset or a spec (None: the run's own spec); max_test: the first N
        items (None: the run's setting on its own data, all on other data, as
        `cliptune eval`); out_dir: also write metrics.json, predictions.csv,
        report.md and confusion.svg there. Returns a dict: n, top1, top5,
        macro_f1, ece, ece_bins, nll, per_class_acc and per_class_f1 (K,),
        confusion (K, K) [true][pred]; for a multi-label run (info
        ["multi_label"]): n, map, map_voc07, cp, cr, cf1, op, or, of1 (at
        probability threshold), their top-k versions (cp_topk, ..., top_k)
        and ap (K,), NaN for classes without a positive; for a segmentation
        run (info["segmentation"]): miou, macc, aacc, n_pixels, iou and acc
        (K,), NaN for classes absent from both label maps and predictions."""
        spec = None
        if data is None:
            spec = self.info["data"]
            if not spec:
                raise Error("the run %s records no data spec (trained on arrays): pass the "
                            "Dataset to evaluate on" % self.info["dir"])
            ds = Dataset.open(spec)
        elif isinstance(data, Dataset):
            ds, spec = data, data.spec
        else:
            spec = os.fspath(data)
            ds = Dataset.open(spec)
        if max_test is None:
            max_test = self.info["max_test"] if spec and self._same_data(spec) else 0
        d = ds._split(split)
        if d is None:
            raise Error("%s has no %s split" % (ds.name, split))
        head = _lib.ct_dataset_head(ctypes.byref(d), int(max_test))
        if not head:
            raise _error()
        if self.info["multi_label"]:
            return self._evaluate_ml(head, spec, cache_dir, out_dir)
        if self.info["segmentation"]:
            return self._evaluate_seg(head, spec, cache_dir, out_dir)
        m = _Metrics()
        try:
            status = _lib.ct_saved_run_evaluate(self._r, head, _b(spec), _b(cache_dir),
                                                _b(out_dir), ctypes.byref(m))
            if status != 0:
                raise _error()
            self._raise_callback_error()
            K = m.n_classes
            out = {"n": m.n, "top1": m.top1, "top5": m.top5, "macro_f1": m.macro_f1,
                   "ece": m.ece, "ece_bins": m.ece_bins, "nll": m.nll,
                   "per_class_acc": np.ctypeslib.as_array(m.per_class_acc, (K,)).copy(),
                   "per_class_f1": np.ctypeslib.as_array(m.per_class_f1, (K,)).copy(),
                   "confusion": np.ctypeslib.as_array(m.confusion, (K * K,)).reshape(K, K).copy()}
            if m.hierarchy:
                # a hierarchy run (info["taxonomy"]): ProTeCt's metrics
                out.update(leaf_acc=m.leaf_acc, hca=m.hca, mta=m.mta, n_cuts=m.n_cuts,
                           node_scores_from=_s(m.node_scores_from))
            return out
        finally:
            _lib.ct_metrics_free(ctypes.byref(m))
            _lib.ct_dataset_free(head)

    def _evaluate_seg(self, head, spec, cache_dir, out_dir):
        m = _SegMetrics()
        try:
            status = _lib.ct_saved_run_evaluate_seg(self._r, head, _b(spec), _b(cache_dir),
                                                    _b(out_dir), ctypes.byref(m))
            if status != 0:
                raise _error()
            self._raise_callback_error()
            K = m.n_classes
            return {"miou": m.miou, "macc": m.macc, "aacc": m.aacc, "n_pixels": m.n_pixels,
                    "iou": np.ctypeslib.as_array(m.iou, (K,)).copy(),
                    "acc": np.ctypeslib.as_array(m.acc, (K,)).copy()}
        finally:
            _lib.ct_seg_metrics_free(ctypes.byref(m))
            _lib.ct_dataset_free(head)

    def _evaluate_ml(self, head, spec, cache_dir, out_dir):
        m = _MLMetrics()
        try:
            status = _lib.ct_saved_run_evaluate_ml(self._r, head, _b(spec), _b(cache_dir),
                                                   _b(out_dir), ctypes.byref(m))
            if status != 0:
                raise _error()
            self._raise_callback_error()
            K = m.n_classes
            out = {"n": m.n, "map": m.map, "map_voc07": m.map_voc07, "threshold": m.thresh,
                   "top_k": m.top_k,
                   "ap": np.ctypeslib.as_array(m.ap, (K,)).copy()}
            for k in ("cp", "cr", "cf1", "op", "of1"):
                out[k] = getattr(m, k)
            out["or"] = m.or_
            for k, c in (("cp", "cp3"), ("cr", "cr3"), ("cf1", "cf13"), ("op", "op3"),
                         ("or", "or3"), ("of1", "of13")):
                out[k + "_topk"] = getattr(m, c)
            return out
        finally:
            _lib.ct_ml_metrics_free(ctypes.byref(m))
            _lib.ct_dataset_free(head)

    def _same_data(self, spec):
        rec = self.info["data"]
        if spec == rec:
            return True
        buf = ctypes.create_string_buffer(8192)
        return _lib.ct_data_spec_absolute(_b(spec), buf, len(buf)) == 0 and _s(buf.value) == rec

    def __repr__(self):
        return "<cliptune.Run %s: %s, %d classes>" % (self.info["dir"], self.info["method"],
                                                      self.info["n_classes"])
