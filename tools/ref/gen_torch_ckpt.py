#!/usr/bin/python3
"""Write the PyTorch checkpoint fixtures of tests/test_torch_ckpt.c
(tests/fixtures/torch/*.pth) and their expected contents
(tests/fixtures/torch/torch_ckpt_ref.h).

    /usr/bin/python3 tools/ref/gen_torch_ckpt.py

Needs Debian's python3-torch (1.13). Deterministic (seeded); the .pth files
are written by torch.save itself:

  coop.pth         a Dassl checkpoint as CoOp's prompt learner saves it:
                   {'state_dict': the module's state_dict (an OrderedDict
                   with _metadata, so the pickle BUILDs it), 'epoch': 50,
                   'optimizer': SGD (momentum 0.9) state_dict after two steps
                   (momentum buffers), 'scheduler': the state_dict of a
                   Dassl-like constant-warmup scheduler, whose 'successor' is
                   a CosineAnnealingLR *object* (so the pickle holds class
                   GLOBALs the reader must pass over without listing them),
                   'val_result': 0.75}
  coop_p4.pth      the same object pickled with protocol 4 (FRAME, MEMOIZE,
                   SHORT_BINUNICODE, STACK_GLOBAL)
  coop_zip64.pth   coop.pth with its central directory rewritten to zip64
                   form (sizes and offsets in zip64 extra fields, the zip64
                   end record authoritative), as torch's writer does for
                   archives past 4 GiB
  views.pth        dtypes (F16, BF16, F64, I64, I32, U8, bool), a transposed
                   tensor, views with storage offsets (two sharing a
                   storage), an expanded (stride 0) tensor, a 0-d and an
                   empty tensor, nested lists/tuples and scalars
  views_legacy.pth views.pth's object in the pre-1.6 format
                   (_use_new_zipfile_serialization=False; its storage keys
                   are object addresses, so its bytes differ per run)
  coop_deflated.pth coop.pth re-zipped with deflate (to be refused)

For the byte-flip test the header also lists, per zip fixture, where the
bytes of data.pkl and of each storage entry lie (the reader checks their
CRC-32, so any flip there must be caught).

The expected listing walks the object as the reader does: dict items with
str or int keys and list/tuple items by index, joined with '.'; tensors of
supported dtypes are listed (bool ones counted as skipped), ints and bools
and floats are scalars, anything else (strings, None, objects) is not listed.
"""
import os
import struct
import sys
import zipfile

import torch
from torch.optim.lr_scheduler import _LRScheduler

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "torch")


class ConstantWarmupScheduler(_LRScheduler):
    """The shape of Dassl's warmup scheduler (its state_dict carries the
    successor scheduler object), written from its documented behaviour."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        self.cons_lr = cons_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


# so that the pickle names the class as Dassl's module would
ConstantWarmupScheduler.__module__ = "dassl.optim.lr_scheduler"
sys.modules.setdefault("dassl.optim.lr_scheduler", sys.modules[__name__])


class PromptLearner(torch.nn.Module):
    def __init__(self, n_cls, n_ctx, dim, seq):
        super().__init__()
        self.ctx = torch.nn.Parameter(torch.randn(n_ctx, dim) * 0.02)
        self.register_buffer("token_prefix", torch.randn(n_cls, 1, dim))
        self.register_buffer("token_suffix", torch.randn(n_cls, seq - 1 - n_ctx, dim))


def coop_object():
    torch.manual_seed(1234)
    pl = PromptLearner(n_cls=2, n_ctx=4, dim=32, seq=8)
    opt = torch.optim.SGD(pl.parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4)
    sched = ConstantWarmupScheduler(
        opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 50), 1, 1e-5)
    for _ in range(2):
        opt.zero_grad()
        (pl.ctx ** 2).sum().backward()
        opt.step()
        sched.step()
    return {
        "state_dict": pl.state_dict(),
        "epoch": 50,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "val_result": 0.75,
    }


def views_object():
    torch.manual_seed(99)
    base = torch.arange(20, dtype=torch.float32) * 0.5 - 3
    return {
        "half": torch.randn(3, 5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "long": torch.arange(-2, 3, dtype=torch.int64) * 1000003,
        "int": torch.tensor([7, -8, 9], dtype=torch.int32),
        "byte": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False]),
        "transposed": torch.randn(3, 4).t(),
        "view": base[5:11].view(2, 3),
        "view_col": base.view(4, 5)[1:, 2],
        "expanded": torch.randn(3, 1).expand(3, 4),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "nested": [{"w": torch.randn(2, 2)}, (1, 2.5, "x", None, True, -(2 ** 40))],
        "neg": -7,
        "lr": 0.01,
        "name": "views",
    }


def walk(obj, path, tensors, scalars, skipped):
    def sub(k):
        return k if path is None else path + "." + k

    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.bool:
            skipped[0] += 1
        else:
            tensors.append((path or "", obj))
    elif isinstance(obj, bool):
        scalars.append((path, "int", int(obj)))
    elif isinstance(obj, int):
        scalars.append((path, "int", obj))
    elif isinstance(obj, float):
        scalars.append((path, "float", obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, bool):
                continue
            if isinstance(k, (str, int)):
                walk(v, sub(str(k)), tensors, scalars, skipped)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            walk(v, sub(str(i)), tensors, scalars, skipped)


DTYPE = {torch.float32: ("CT_F32", 0), torch.float16: ("CT_F16", 0),
         torch.bfloat16: ("CT_BF16", 0), torch.float64: ("CT_F32", 1),
         torch.int64: ("CT_I64", 0), torch.int32: ("CT_I32", 0), torch.uint8: ("CT_U8", 0)}


def to_zip64(src, dst):
    """Rewrite the central directory and end records of a stored zip with
    every size and offset in zip64 extra fields (0xFFFFFFFF in the fixed
    fields) and a zip64 end record, leaving the entries' bytes as they are."""
    d = open(src, "rb").read()
    eocd = d.rfind(b"PK\x05\x06")
    n_entries, _cd_size, cd_off = struct.unpack("<HII", d[eocd + 10:eocd + 20])
    cd = []
    p = cd_off
    for _ in range(n_entries):
        fixed = bytearray(d[p:p + 46])
        nlen, xlen, clen = struct.unpack("<HHH", fixed[28:34])
        csize, usize = struct.unpack("<II", fixed[20:28])
        lho = struct.unpack("<I", fixed[42:46])[0]
        name = d[p + 46:p + 46 + nlen]
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, lho)
        fixed[20:28] = struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)
        fixed[42:46] = struct.pack("<I", 0xFFFFFFFF)
        fixed[30:32] = struct.pack("<H", len(extra))
        fixed[32:34] = struct.pack("<H", 0)
        cd.append(bytes(fixed) + name + extra)
        p += 46 + nlen + xlen + clen
    body = d[:cd_off]
    cdb = b"".join(cd)
    z64_off = len(body) + len(cdb)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n_entries, n_entries,
                      len(cdb), len(body))
    loc = struct.pack("<IIQI", 0x07064B50, 0, z64_off, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    open(dst, "wb").write(body + cdb + z64 + loc + end)


def crc_ranges(path):
    """(offset, length) of data.pkl's and the storages' bytes in a stored zip."""
    d = open(path, "rb").read()
    out = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename.split("/", 1)[1]
            if name != "data.pkl" and not name.startswith("data/"):
                continue
            h = info.header_offset
            nlen, xlen = struct.unpack("<HH", d[h + 26:h + 30])
            out.append((h + 30 + nlen + xlen, info.file_size))
    return out


def deflated_copy(src, dst):
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zo.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                        zi.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)


def cfloat(x):
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("non-finite fixture value")
    return x.hex() if x != 0 else ("-0.0" if str(x).startswith("-") else "0.0")


def emit_set(out, tag, obj):
    tensors, scalars, skipped = [], [], [0]
    walk(obj, None, tensors, scalars, skipped)
    for i, (name, t) in enumerate(tensors):
        vals = t.detach().to(torch.float64).contiguous().view(-1).tolist()
        if t.dtype == torch.float64:
            vals = t.detach().float().double().contiguous().view(-1).tolist()
        out.append("static const float %s_v%d[] = {%s};" % (
            tag, i, ", ".join(cfloat(v) for v in vals) if vals else "0"))
    out.append("static const tc_ref_tensor %s_tensors[] = {" % tag)
    for i, (name, t) in enumerate(tensors):
        dt, f64 = DTYPE[t.dtype]
        shape = list(t.shape)
        out.append('    {"%s", %s, %d, %d, {%s}, {%s}, %d, %d, %s_v%d},' % (
            name, dt, f64, len(shape), ", ".join(str(s) for s in shape) or "0",
            ", ".join(str(s) for s in t.stride()) or "0", t.storage_offset(),
            t.numel(), tag, i))
    out.append("};")
    out.append("static const tc_ref_scalar %s_scalars[] = {" % tag)
    for name, kind, v in scalars:
        if kind == "int":
            out.append('    {"%s", 0, %dLL, 0.0},' % (name, v))
        else:
            out.append('    {"%s", 1, 0, %s},' % (name, cfloat(v)))
    out.append("};")
    out.append("#define %s_NTENSORS %d" % (tag.upper(), len(tensors)))
    out.append("#define %s_NSCALARS %d" % (tag.upper(), len(scalars)))
    out.append("#define %s_SKIPPED %d" % (tag.upper(), skipped[0]))


def main():
    os.makedirs(OUT, exist_ok=True)
    coop = coop_object()
    views = views_object()
    p = lambda f: os.path.join(OUT, f)
    torch.save(coop, p("coop.pth"))
    torch.save(coop, p("coop_p4.pth"), pickle_protocol=4)
    to_zip64(p("coop.pth"), p("coop_zip64.pth"))
    torch.save(views, p("views.pth"))
    torch.save(views, p("views_legacy.pth"), _use_new_zipfile_serialization=False)
    deflated_copy(p("coop.pth"), p("coop_deflated.pth"))
    # the files must read back as written
    for f, o in (("coop.pth", coop), ("coop_p4.pth", coop), ("coop_zip64.pth", coop),
                 ("views.pth", views), ("views_legacy.pth", views)):
        back = torch.load(p(f))
        if o is coop:
            assert torch.equal(back["state_dict"]["ctx"], o["state_dict"]["ctx"]), f
        else:
            assert torch.equal(back["view"], o["view"]), f

    out = ["/* Generated by tools/ref/gen_torch_ckpt.py (torch %s) -- do not edit. */"
           % torch.__version__,
           "#ifndef CT_TEST_TORCH_CKPT_REF_H", "#define CT_TEST_TORCH_CKPT_REF_H", "",
           "#include <stdint.h>", '#include "cliptune.h"', "",
           "typedef struct tc_ref_tensor {",
           "    const char *name;",
           "    ct_dtype dtype;",
           "    int f64; /* float64 in the file */",
           "    int ndim;",
           "    int64_t shape[8], stride[8], offset;",
           "    size_t numel;",
           "    const float *values; /* contiguous, row-major */",
           "} tc_ref_tensor;",
           "typedef struct tc_ref_scalar {",
           "    const char *name;",
           "    int is_float;",
           "    long long i;",
           "    double f;",
           "} tc_ref_scalar;", ""]
    emit_set(out, "coop", coop)
    out.append("")
    emit_set(out, "views", views)
    for tag, f in (("coop", "coop.pth"), ("views", "views.pth")):
        r = crc_ranges(p(f))
        out.append("")
        out.append("/* %s: (offset, length) of data.pkl's and the storages' bytes */" % f)
        out.append("static const long %s_crc_ranges[][2] = {%s};" % (
            tag, ", ".join("{%d, %d}" % x for x in r)))
        out.append("#define %s_NCRC %d" % (tag.upper(), len(r)))
    out += ["", "#endif", ""]
    open(p("torch_ckpt_ref.h"), "w").write("\n".join(out))
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(p(f)))


if __name__ == "__main__":
    main()
