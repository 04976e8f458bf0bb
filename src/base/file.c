/* Whole-file reading (mmap or malloc) and crash-safe writing.
 *
 * Writers never touch the destination until the new content is complete and
 * on disk: a reader (or a crash) sees either the old file or the new one,
 * never a torn mix. That matters for checkpoints that are overwritten every
 * epoch. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"

#include "base/error.h"

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

/* Open for reading and require a regular file: mapping or slurping a
 * directory or FIFO gives confusing errors (or blocks) much later. */
static ct_status open_regular(const char *path, int *fd_out, size_t *size_out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ct_set_error(CT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ct_set_error(CT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ct_set_error(CT_ERR_IO, "%s: is a directory, expected a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ct_set_error(CT_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return ct_set_error(CT_ERR_IO, "%s: file size %lld does not fit in memory", path,
                            (long long)st.st_size);
    }
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return CT_OK;
}

ct_status ct_mmap_open(ct_mmap *m, const char *path) {
    if (!m) return ct_set_error(CT_ERR_ARG, "ct_mmap_open: NULL mapping");
    m->data = NULL;
    m->size = 0;
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_mmap_open: NULL path");
    int fd;
    size_t size;
    ct_status s = open_regular(path, &fd, &size);
    if (s != CT_OK) return s;
    if (size == 0) {
        /* mmap of length 0 is EINVAL; an empty file is still a valid input. */
        close(fd);
        return CT_OK;
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps its own reference to the file */
    if (p == MAP_FAILED)
        return ct_set_error(CT_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
    m->data = p;
    m->size = size;
    return CT_OK;
}

void ct_mmap_close(ct_mmap *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

ct_status ct_read_file(const char *path, char **out, size_t *size) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_read_file: NULL output");
    *out = NULL;
    if (size) *size = 0;
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_read_file: NULL path");
    int fd;
    size_t hint;
    ct_status s = open_regular(path, &fd, &hint);
    if (s != CT_OK) return s;

    /* The stat size is only a hint: the file may grow or shrink while we read
     * (or report 0, like procfs), so read until EOF and grow as needed. */
    size_t cap;
    if (!ct_add_size(hint, 1, &cap)) cap = hint;
    if (cap < 64) cap = 64;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
    }
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) {
            size_t ncap;
            if (!ct_mul_size(cap, 2, &ncap)) {
                free(buf);
                close(fd);
                return ct_set_error(CT_ERR_NOMEM, "%s: file too large", path);
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, ncap);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return ct_set_error(CT_ERR_IO, "%s: read failed at offset %zu: %s", path, len,
                                strerror(e));
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    if (size) *size = len;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Atomic writing                                                            */
/* ------------------------------------------------------------------------ */

struct ct_atomic_file {
    int fd;
    bool discard; /* ct_file_set_discard was on: nothing is written */
    char *path;
    char *tmp;
    /* A small buffer so that many small writes (headers, per-row output) do
     * not each become a syscall. */
    size_t fill;
    uint8_t buf[1 << 16];
};

/* Distinguishes temp files of concurrent writers in one process (the pid
 * separates processes). */
static atomic_ulong g_tmp_counter;

/* Set by the distributed layer (base/dist.h) on the ranks other than 0 of
 * a data-parallel job: they compute what rank 0 computes, and rank 0 alone
 * writes it. */
static atomic_bool g_discard;

void ct_file_set_discard(bool on) { atomic_store(&g_discard, on); }

/* Several processes, maybe on several hosts, write into the same folders:
 * a temp file's pid says nothing about whether its writer lives. */
static atomic_bool g_shared;

void ct_file_set_shared(bool on) { atomic_store(&g_shared, on); }

ct_status ct_atomic_create(const char *path, ct_atomic_file **out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_atomic_create: NULL output");
    *out = NULL;
    if (!path || !*path) return ct_set_error(CT_ERR_ARG, "ct_atomic_open: empty path");
    ct_atomic_file *f = malloc(sizeof *f);
    size_t plen = strlen(path);
    size_t tlen = plen + 64;
    char *p = malloc(plen + 1);
    char *t = malloc(tlen);
    if (!f || !p || !t) {
        free(f);
        free(p);
        free(t);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the atomic writer", path);
    }
    memcpy(p, path, plen + 1);
    if (atomic_load(&g_discard)) {
        snprintf(t, tlen, "%s", path);
        *f = (ct_atomic_file){.fd = -1, .discard = true, .path = p, .tmp = t};
        *out = f;
        return CT_OK;
    }
    unsigned long n = atomic_fetch_add(&g_tmp_counter, 1);
    snprintf(t, tlen, "%s.tmp.%ld.%lu", path, (long)getpid(), n);
    /* Same directory as the target, so the final rename cannot cross
     * filesystems; O_EXCL so a stale temp of a dead process is never
     * silently shared. */
    int fd = open(t, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        ct_status s = ct_set_error(CT_ERR_IO, "%s: cannot create temp file %s: %s", path, t,
                                   strerror(errno));
        free(f);
        free(p);
        free(t);
        return s;
    }
    f->fd = fd;
    f->discard = false;
    f->path = p;
    f->tmp = t;
    f->fill = 0;
    *out = f;
    return CT_OK;
}

ct_atomic_file *ct_atomic_open(const char *path) {
    ct_atomic_file *f;
    ct_atomic_create(path, &f);
    return f;
}

static void atomic_free(ct_atomic_file *f) {
    free(f->path);
    free(f->tmp);
    free(f);
}

static ct_status write_all(ct_atomic_file *f, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return ct_set_error(CT_ERR_IO, "%s: write to %s failed: %s", f->path, f->tmp,
                                strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return CT_OK;
}

static ct_status flush_buf(ct_atomic_file *f) {
    ct_status s = write_all(f, f->buf, f->fill);
    f->fill = 0;
    return s;
}

ct_status ct_atomic_write(ct_atomic_file *f, const void *data, size_t n) {
    if (!f) return ct_set_error(CT_ERR_ARG, "ct_atomic_write: NULL writer");
    if (n == 0) return CT_OK;
    if (!data) return ct_set_error(CT_ERR_ARG, "%s: ct_atomic_write: NULL data", f->path);
    if (f->discard) return CT_OK;
    if (f->fd < 0) return ct_set_error(CT_ERR_STATE, "%s: writer already failed", f->path);
    const uint8_t *p = data;
    if (n < sizeof f->buf - f->fill) {
        memcpy(f->buf + f->fill, p, n);
        f->fill += n;
        return CT_OK;
    }
    ct_status s = flush_buf(f);
    if (s == CT_OK) {
        if (n < sizeof f->buf) {
            memcpy(f->buf, p, n);
            f->fill = n;
        } else {
            s = write_all(f, p, n);
        }
    }
    if (s != CT_OK) {
        /* The temp file now has a hole of unknown size; later writes must
         * not pretend otherwise, and commit must fail. */
        close(f->fd);
        f->fd = -1;
    }
    return s;
}

void ct_atomic_abort(ct_atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (!f->discard) unlink(f->tmp);
    atomic_free(f);
}

/* Make the rename itself durable. Some filesystems refuse fsync on a
 * directory (EINVAL); the data is already safe then, so this is best effort. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        dir = strndup(path, (size_t)(slash - path));
    }
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

static ct_status commit(ct_atomic_file *f, bool durable) {
    if (!f) return ct_set_error(CT_ERR_ARG, "ct_atomic_commit: NULL writer");
    if (f->discard) {
        atomic_free(f);
        return CT_OK;
    }
    if (f->fd < 0) {
        ct_status s = ct_set_error(CT_ERR_IO, "%s: not committed: an earlier write to %s "
                                   "failed", f->path, f->tmp);
        ct_atomic_abort(f);
        return s;
    }
    ct_status s = flush_buf(f);
    if (s == CT_OK && durable && fsync(f->fd) != 0)
        s = ct_set_error(CT_ERR_IO, "%s: fsync of %s failed: %s", f->path, f->tmp,
                         strerror(errno));
    /* close can report deferred write errors (NFS), so it is checked. */
    int rc = close(f->fd);
    f->fd = -1;
    if (s == CT_OK && rc != 0)
        s = ct_set_error(CT_ERR_IO, "%s: close of %s failed: %s", f->path, f->tmp,
                         strerror(errno));
    if (s == CT_OK && rename(f->tmp, f->path) != 0)
        s = ct_set_error(CT_ERR_IO, "%s: rename from %s failed: %s", f->path, f->tmp,
                         strerror(errno));
    if (s != CT_OK) {
        ct_atomic_abort(f);
        return s;
    }
    if (durable) sync_parent_dir(f->path);
    atomic_free(f);
    return CT_OK;
}

ct_status ct_atomic_commit(ct_atomic_file *f) { return commit(f, true); }

static ct_status write_file(const char *path, const void *data, size_t n, bool durable) {
    if (n > 0 && !data)
        return ct_set_error(CT_ERR_ARG, "%s: ct_write_file_atomic: NULL data",
                            path ? path : "(null)");
    ct_atomic_file *f;
    ct_status s = ct_atomic_create(path, &f);
    if (s != CT_OK) return s;
    s = ct_atomic_write(f, data, n);
    if (s != CT_OK) {
        ct_atomic_abort(f);
        return s;
    }
    return commit(f, durable);
}

ct_status ct_write_file_atomic(const char *path, const void *data, size_t n) {
    return write_file(path, data, n, true);
}

ct_status ct_write_file_atomic_nosync(const char *path, const void *data, size_t n) {
    return write_file(path, data, n, false);
}

ct_status ct_sync_fs(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ct_set_error(CT_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
#ifdef __linux__
    int rc = syncfs(fd);
#else
    sync();
    int rc = 0;
#endif
    ct_status s = CT_OK;
    if (rc != 0) s = ct_set_error(CT_ERR_IO, "%s: syncfs failed: %s", dir, strerror(errno));
    close(fd);
    return s;
}

ct_status ct_mkdir_p(const char *dir) {
    char buf[4096];
    if (!dir || !*dir || strlen(dir) >= sizeof buf)
        return ct_set_error(CT_ERR_ARG, "mkdir: bad path \"%s\"", dir ? dir : "(null)");
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return ct_set_error(CT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = c;
        if (!c) break;
    }
    return CT_OK;
}

/* "NAME.tmp.PID.N" with PID and N decimal: the writer's pid, or 0. */
static long temp_owner(const char *name) {
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p;
    if (!t || t == name) return 0;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    if (pid <= 0 || *end != '.' || !end[1]) return 0;
    const char *n = end + 1;
    for (; *n; n++)
        if (*n < '0' || *n > '9') return 0;
    return pid;
}

int ct_clean_stale_temps(const char *dir) {
    /* a rank that writes nothing leaves the cleaning to the one that does
     * (another host's pids are not this one's) */
    if (atomic_load(&g_discard) || atomic_load(&g_shared)) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = temp_owner(e->d_name);
        /* a pid that no longer exists (ESRCH); EPERM means it exists */
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}

ct_status ct_copy_file(const char *src, const char *dst) {
    char *buf = NULL;
    size_t n = 0;
    ct_status s = ct_read_file(src, &buf, &n);
    if (s != CT_OK) return s;
    s = ct_write_file_atomic(dst, buf, n);
    free(buf);
    return s;
}
