/* A one-line progress bar on a terminal (stderr); when stderr is not a TTY
 * (logs, CI), a plain "progress: ..." line every CLI_PROGRESS_LOG_S seconds
 * (or CLIPTUNE_PROGRESS_SECONDS) of a stage that lasts longer than that. */
#ifndef CT_CLI_PROGRESS_H
#define CT_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#define CLI_PROGRESS_LOG_S 10.0

typedef struct cli_progress {
    bool tty, shown;
    char stage[96];
    double t0, last;
    double log_every; /* seconds between plain lines (CLIPTUNE_PROGRESS_SECONDS) */
} cli_progress;

void cli_progress_init(cli_progress *p);
/* ct_run_cfg / ct_train_cfg progress callback (ctx = cli_progress *). */
void cli_progress_cb(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
/* Erase the bar before printing a normal line. */
void cli_progress_clear(cli_progress *p);

#endif
