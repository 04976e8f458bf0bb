/* Internal error helpers: set the thread-local message and return a status. */
#ifndef CT_BASE_ERROR_H
#define CT_BASE_ERROR_H

#include <stdio.h>
#include <stdlib.h>

#include "cliptune.h"

/* Record "fmt..." as this thread's last error and return s. */
ct_status ct_set_error(ct_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first failure of a parallel loop, by item index, with its message:
 * the message is thread-local, so a worker's would be lost to the caller.
 * note() from any thread (it takes a lock); raise() on the caller's thread
 * sets the message there and returns the status (CT_OK if none). */
typedef struct ct_first_error {
    int64_t index;
    ct_status status;
    char msg[1024];
} ct_first_error;
void ct_first_error_init(ct_first_error *e);
void ct_first_error_note(ct_first_error *e, int64_t index, ct_status s);
ct_status ct_first_error_raise(const ct_first_error *e);

/* Programmer errors only (broken invariants inside the library): abort with
 * file:line. Never for bad input. */
#define CT_ASSERT(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "cliptune: internal error: %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                               \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool ct_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ct_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

#endif
