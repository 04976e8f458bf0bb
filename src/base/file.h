/* Internal extras for the file layer (the public API is in cliptune.h). */
#ifndef CT_BASE_FILE_H
#define CT_BASE_FILE_H

#include "cliptune.h"

/* Read-only memory map of a whole file (empty files allowed: data NULL). */
typedef struct ct_mmap {
    const uint8_t *data;
    size_t size;
} ct_mmap;

ct_status ct_mmap_open(ct_mmap *m, const char *path);
void ct_mmap_close(ct_mmap *m);

/* Incremental atomic writer for large outputs. */
typedef struct ct_atomic_file ct_atomic_file;
ct_atomic_file *ct_atomic_open(const char *path);
ct_status ct_atomic_write(ct_atomic_file *f, const void *data, size_t n);
/* Flush, fsync, rename into place and free. */
ct_status ct_atomic_commit(ct_atomic_file *f);
/* Remove the temp file and free (NULL ok). */
void ct_atomic_abort(ct_atomic_file *f);


/* ct_atomic_open, but returning the status (ARG, NOMEM or IO) so that a
 * caller can pass it on instead of guessing from a NULL. */
ct_status ct_atomic_create(const char *path, ct_atomic_file **out);


/* ct_write_file_atomic without its fsyncs (temp file + rename only): an
 * interrupted process still never leaves a half-written file, but a power
 * cut may lose or empty it. For many small files that are made durable
 * together afterwards with one ct_sync_fs (the scenes set: three files a
 * scene, where two fsyncs each cost 20x the encoding). */
ct_status ct_write_file_atomic_nosync(const char *path, const void *data, size_t n);
/* Flush everything written to the filesystem holding dir (syncfs; sync
 * elsewhere than Linux). */
ct_status ct_sync_fs(const char *dir);

/* dst (written atomically) with src's bytes. */
ct_status ct_copy_file(const char *src, const char *dst);

/* Remove the temp files ("NAME.tmp.PID.N", what the atomic writers make)
 * that processes which no longer exist left in dir when they were killed
 * mid-write; a live process's are kept. Returns how many were removed (0
 * when dir cannot be read). */
int ct_clean_stale_temps(const char *dir);

/* While on, the atomic writers (ct_atomic_*, ct_write_file_atomic*,
 * ct_copy_file) succeed without writing anything and ct_clean_stale_temps
 * removes nothing: the ranks other than 0 of a data-parallel job
 * (base/dist.h) compute what rank 0 writes. Off by default. */
void ct_file_set_discard(bool on);
/* While on, ct_clean_stale_temps removes nothing: the processes of a
 * distributed job (several hosts, one file system) write into the same
 * folders, and another host's writer is not a pid here. */
void ct_file_set_shared(bool on);

#endif
