"""cliptune from Python: CLIP models on the CPU through libcliptune (ctypes,
nothing to compile), numpy in and out.

    import cliptune
    m = cliptune.Model("path/to/hf-clip-folder")
    img = m.encode_images(["a.jpg", "b.png"])        # (2, E) float32
    txt = m.encode_texts(["a photo of a cat."])      # (1, E) float32
    p = m.classify(["a.jpg"], ["cat", "dog"])        # (1, 2) probabilities

The library is found as $CLIPTUNE_LIB, else beside the installed package
(cmake --install puts both under PREFIX/lib), else libcliptune.so.0 on the
loader's path. Errors raise
cliptune.Error with the library's message.
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Model", "Error", "version"]


class Error(RuntimeError):
    """A failed cliptune call; the message names what and where."""


def _load():
    # $CLIPTUNE_LIB; the library installed beside this package (cmake
    # --install puts it in PREFIX/lib/python3/dist-packages, the library in
    # PREFIX/lib); the loader's search path
    here = os.path.dirname(os.path.abspath(__file__))
    beside = os.path.normpath(os.path.join(here, "..", "..", "..", "libcliptune.so.0"))
    name = os.environ.get("CLIPTUNE_LIB") or (beside if os.path.exists(beside) else None) or \
        ctypes.util.find_library("cliptune") or "libcliptune.so.0"
    lib = ctypes.CDLL(name)
    c_str_p = ctypes.POINTER(ctypes.c_char_p)
    f32 = ctypes.POINTER(ctypes.c_float)
    sig = {
        "ct_version": (ctypes.c_char_p, []),
        "ct_last_error": (ctypes.c_char_p, []),
        "ct_model_load": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]),
        "ct_model_free": (None, [ctypes.c_void_p]),
        "ct_model_clip": (ctypes.c_void_p, [ctypes.c_void_p]),
        "ct_model_embed_dim": (ctypes.c_int, [ctypes.c_void_p]),
        "ct_model_image_size": (ctypes.c_int, [ctypes.c_void_p]),
        "ct_model_encode_images": (ctypes.c_int, [ctypes.c_void_p, c_str_p, ctypes.c_int, f32]),
        "ct_model_encode_pixels": (ctypes.c_int, [ctypes.c_void_p, f32, ctypes.c_int, f32]),
        "ct_model_encode_texts": (ctypes.c_int, [ctypes.c_void_p, c_str_p, ctypes.c_int,
                                                 ctypes.c_bool, f32]),
        "ct_model_classify": (ctypes.c_int, [ctypes.c_void_p, c_str_p, ctypes.c_int, c_str_p,
                                             ctypes.c_int, ctypes.c_char_p, f32]),
        "ct_clip_set_precision": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
        "ct_set_num_threads": (None, [ctypes.c_int]),
        "ct_get_num_threads": (ctypes.c_int, []),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()


def version():
    """The linked library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.ct_version().decode()


def set_num_threads(n):
    _lib.ct_set_num_threads(int(n))


def _check(status):
    if status != 0:
        raise Error(_lib.ct_last_error().decode(errors="replace"))


def _strings(items):
    items = [os.fsencode(x) if isinstance(x, os.PathLike) else
             (x.encode() if isinstance(x, str) else bytes(x)) for x in items]
    return (ctypes.c_char_p * max(len(items), 1))(*items), len(items)


def _f32_ptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class Model:
    """CLIP with its tokenizer and preprocessing (ct_model).

    path: a Hugging Face CLIP folder, or an OpenAI-named .safetensors file
    (then bpe: bpe_simple_vocab_16e6.txt.gz or a vocab.json with merges.txt
    beside it; gelu=True for open_clip models trained with GELU)."""

    def __init__(self, path, bpe=None, gelu=False):
        self._m = _lib.ct_model_load(os.fsencode(path), os.fsencode(bpe) if bpe else None,
                                     bool(gelu))
        if not self._m:
            raise Error(_lib.ct_last_error().decode(errors="replace"))
        self.embed_dim = _lib.ct_model_embed_dim(self._m)
        self.image_size = _lib.ct_model_image_size(self._m)

    def close(self):
        if getattr(self, "_m", None):
            _lib.ct_model_free(self._m)
            self._m = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_precision(self, precision):
        """"f32" (default) or "bf16" (GEMMs in bf16 weights; CPUs with
        AVX512_BF16 only, else Error)."""
        codes = {"f32": 0, "bf16": 1}
        if precision not in codes:
            raise ValueError("precision must be 'f32' or 'bf16'")
        _check(_lib.ct_clip_set_precision(_lib.ct_model_clip(self._m), codes[precision]))

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
