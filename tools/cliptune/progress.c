#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p) {
    memset(p, 0, sizeof *p);
    p->tty = isatty(2);
    /* CLIPTUNE_PROGRESS_SECONDS: the interval of the plain lines (logs) */
    const char *e = getenv("CLIPTUNE_PROGRESS_SECONDS");
    char *end = NULL;
    double v = e ? strtod(e, &end) : NAN;
    p->log_every = e && end != e && !*end && v >= 0 && v < 1e6 ? v : CLI_PROGRESS_LOG_S;
}

void cli_progress_clear(cli_progress *p) {
    if (p && p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = false;
    }
}

void cli_progress_cb(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr) {
    cli_progress *p = ctx;
    if (total <= 0) return;
    double t = now();
    if (strcmp(p->stage, stage)) {
        snprintf(p->stage, sizeof p->stage, "%s", stage);
        p->t0 = t;
        p->last = t;
    }
    if (!p->tty) {
        /* logs: a plain line every log_every seconds of a long stage
         * (an hour of feature extraction is not silent), none for short ones */
        if (t - p->last < p->log_every) return;
        p->last = t;
        double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
        fprintf(stderr, "progress: %s %lld/%lld (%d%%) %.1f/s ETA %.0fs", stage,
                (long long)done, (long long)total, (int)(100 * done / total), rate,
                rate > 0 ? (double)(total - done) / rate : 0.0);
        if (!isnan(loss)) fprintf(stderr, " loss %.4f lr %.3g", loss, lr);
        fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    /* redraw at most 10 times a second, and always at the end */
    if (done < total && t - p->last < 0.1) return;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 24, fill = (int)(width * done / total);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K%-22.22s [%s] %3d%% %lld/%lld  %.1f/s  ETA %.0fs", stage, bar,
            (int)(100 * done / total), (long long)done, (long long)total, rate, eta);
    if (!isnan(loss)) fprintf(stderr, "  loss %.4f  lr %.3g", loss, lr);
    p->shown = true;
    if (done >= total) cli_progress_clear(p);
    fflush(stderr);
}
