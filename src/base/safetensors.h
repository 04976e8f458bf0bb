/* Internal extras for safetensors files (the public API is in cliptune.h). */
#ifndef CT_BASE_SAFETENSORS_H
#define CT_BASE_SAFETENSORS_H

#include "cliptune.h"

/* Restore a checkpoint tensor: copy the bytes of st's tensor name into dst
 * when it exists with exactly this dtype and nbytes; otherwise CT_ERR_FORMAT
 * "<path>: tensor <name> is missing or does not match the run". */
ct_status ct_st_copy_exact(const ct_safetensors *st, const char *name, ct_dtype dtype,
                           void *dst, size_t nbytes, const char *path);

#endif
