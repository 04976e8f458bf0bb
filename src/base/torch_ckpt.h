/* Reading PyTorch checkpoints as torch.save writes them (data only).
 *
 * Both formats: the zip archive of torch >= 1.6 ("<archive>/data.pkl" plus
 * one stored entry per storage, "<archive>/data/<key>") and the legacy
 * stream of torch < 1.6 (magic, protocol and system-info pickles, the main
 * pickle, the storage-key pickle, then the raw storages).
 *
 * The pickle is run by a restricted interpreter that builds values and never
 * calls anything: dicts (OrderedDict and defaultdict included), lists,
 * tuples, ints, floats, bools, None, strings, bytes, and tensors rebuilt
 * through torch._utils._rebuild_tensor_v2 / _rebuild_parameter on a storage
 * named by the persistent id ('storage', torch.<Type>Storage, key, location,
 * numel). Every other class the pickle names (a scheduler object inside a
 * Dassl checkpoint's 'scheduler' entry, say) becomes an inert placeholder:
 * nothing is imported or run, and nothing inside it is listed.
 *
 * After a successful open, every listed tensor's strided extent lies inside
 * its storage and every storage inside the mapped file; zip entries that
 * are read (data.pkl, the storages used, byteorder) have their CRC-32
 * checked.
 *
 * What is listed: the values reachable from the root through dict items
 * with str or int keys and list/tuple items (by index), named by the keys
 * joined with '.': "state_dict.ctx", "optimizer.state.0.momentum_buffer",
 * "epoch". Tensors of dtypes F32, F16, BF16, F64 (read as F32), I64, I32
 * and U8 are listed; tensors of other dtypes (bool, int8, int16, complex)
 * are checked but left out (ct_torch_ckpt_skipped counts them). ints and
 * bools (as 0/1) and floats are the scalars. */
#ifndef CT_BASE_TORCH_CKPT_H
#define CT_BASE_TORCH_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cliptune.h"

#define CT_TORCH_MAX_RANK 8

typedef struct ct_torch_tensor {
    const char *name;  /* dotted key path ("" for a tensor saved alone) */
    ct_dtype dtype;    /* CT_F32 also for float64 tensors (see from_f64) */
    bool from_f64;     /* stored as float64 in the file                 */
    bool requires_grad;
    int ndim;
    int64_t shape[CT_TORCH_MAX_RANK];
    int64_t stride[CT_TORCH_MAX_RANK]; /* in elements, >= 0            */
    int64_t offset;                    /* storage offset, in elements   */
    size_t numel;
    size_t elem_size;        /* bytes per element in the file (8 for F64) */
    const uint8_t *storage;  /* the storage's first byte (in the mapping) */
    size_t storage_bytes;    /* the storage's size in bytes               */
} ct_torch_tensor;

typedef struct ct_torch_ckpt ct_torch_ckpt;

/* Open and fully validate path. On failure *out is NULL and the status is
 * CT_ERR_IO (cannot read), CT_ERR_FORMAT (malformed, truncated, corrupt:
 * the message names the file and what is wrong), CT_ERR_UNSUPPORTED (valid
 * but not read here: compressed or encrypted zip entries, big-endian
 * files, protocol-0/1 pickles, legacy storage views) or CT_ERR_NOMEM. */
ct_status ct_torch_ckpt_open(const char *path, ct_torch_ckpt **out);
void ct_torch_ckpt_close(ct_torch_ckpt *ck); /* NULL ok */

/* The listed tensors in the order of the pickle's items. */
int ct_torch_ckpt_count(const ct_torch_ckpt *ck);
const ct_torch_tensor *ct_torch_ckpt_at(const ct_torch_ckpt *ck, int i); /* NULL if out of range */
const ct_torch_tensor *ct_torch_ckpt_find(const ct_torch_ckpt *ck, const char *name);
/* Tensors that were valid but of a dtype that is not listed. */
int ct_torch_ckpt_skipped(const ct_torch_ckpt *ck);

/* Scalars: an int or bool (true = 1) at name; ct_torch_ckpt_real also
 * takes ints. false if name is not such a scalar. */
bool ct_torch_ckpt_int(const ct_torch_ckpt *ck, const char *name, int64_t *out);
bool ct_torch_ckpt_real(const ct_torch_ckpt *ck, const char *name, double *out);

/* Copy t's elements out as contiguous row-major float32 (n must be
 * t->numel; else CT_ERR_ARG), following its strides and offset; F16, BF16,
 * F64 and the integer dtypes are converted (F64 rounded to nearest, I64
 * beyond 2^24 rounded). */
ct_status ct_torch_tensor_to_f32(const ct_torch_tensor *t, float *out, size_t n);

#endif
