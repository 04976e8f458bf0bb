#include "base/error.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_msg[1024];

ct_status ct_set_error(ct_status s, const char *fmt, ...) {
    /* Format into a scratch buffer first: callers often pass ct_last_error()
     * itself as an argument (to wrap the message with context). */
    char tmp[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(g_msg, tmp, sizeof g_msg);
    return s;
}

const char *ct_last_error(void) { return g_msg; }

void ct_clear_error(void) { g_msg[0] = 0; }

const char *ct_status_str(ct_status s) {
    switch (s) {
    case CT_OK: return "ok";
    case CT_ERR_ARG: return "invalid argument";
    case CT_ERR_IO: return "i/o error";
    case CT_ERR_FORMAT: return "malformed input";
    case CT_ERR_NOMEM: return "out of memory";
    case CT_ERR_UNSUPPORTED: return "unsupported";
    case CT_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}

void ct_first_error_init(ct_first_error *e) {
    e->index = INT64_MAX, e->status = CT_OK, e->msg[0] = 0;
}

void ct_first_error_note(ct_first_error *e, int64_t index, ct_status s) {
    if (s == CT_OK) return;
#pragma omp critical(ct_first_error)
    if (index < e->index) {
        e->index = index, e->status = s;
        snprintf(e->msg, sizeof e->msg, "%s", ct_last_error());
    }
}

ct_status ct_first_error_raise(const ct_first_error *e) {
    return e->status == CT_OK ? CT_OK : ct_set_error(e->status, "%s", e->msg);
}
