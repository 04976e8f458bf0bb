/* Internal error helpers: set the thread-local message and return a status. */
#ifndef CT_BASE_ERROR_H
#define CT_BASE_ERROR_H

#include <stdio.h>
#include <stdlib.h>

#include "cliptune.h"

/* Record "fmt..." as this thread's last error and return s. */
ct_status ct_set_error(ct_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
