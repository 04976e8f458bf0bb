/* Internal extras for the file layer (the public API is in cliptune.h). */
#ifndef CT_BASE_FILE_H
#define CT_BASE_FILE_H

#include "cliptune.h"

/* ct_atomic_open, but returning the status (ARG, NOMEM or IO) so that a
 * caller can pass it on instead of guessing from a NULL. */
ct_status ct_atomic_create(const char *path, ct_atomic_file **out);

/* mkdir -p: create dir and its missing parents (existing ones are fine). */
ct_status ct_mkdir_p(const char *dir);

#endif
