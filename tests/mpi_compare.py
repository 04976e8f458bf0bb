"""Compare the float32 tensors of two safetensors files (tests/mpi_check.sh).

usage: mpi_compare.py A B [ATOL]
Prints the largest absolute difference over all tensors; exits 1 when the
tensor names or shapes differ or the difference exceeds ATOL (default 0:
bit-identical)."""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, t in head.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
    return out


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    atol = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    if sorted(a) != sorted(b):
        print("tensors differ: %s vs %s" % (sorted(a), sorted(b)))
        return 1
    worst, where = 0.0, ""
    for k in a:
        if a[k].shape != b[k].shape:
            print("%s: shape %s vs %s" % (k, a[k].shape, b[k].shape))
            return 1
        d = float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0
        if d > worst or not where:
            worst, where = d, k
    print("max |a - b| = %.3g (%s; %d tensors, tolerance %.3g)" % (worst, where, len(a), atol))
    return 0 if worst <= atol else 1


sys.exit(main())
