/* Internal extras for the file layer (the public API is in cliptune.h). */
#ifndef CT_BASE_FILE_H
#define CT_BASE_FILE_H

#include "cliptune.h"

/* ct_atomic_open, but returning the status (ARG, NOMEM or IO) so that a
 * caller can pass it on instead of guessing from a NULL. */
ct_status ct_atomic_create(const char *path, ct_atomic_file **out);


/* dst (written atomically) with src's bytes. */
ct_status ct_copy_file(const char *src, const char *dst);

/* Remove the temp files ("NAME.tmp.PID.N", what the atomic writers make)
 * that processes which no longer exist left in dir when they were killed
 * mid-write; a live process's are kept. Returns how many were removed (0
 * when dir cannot be read). */
int ct_clean_stale_temps(const char *dir);

#endif
