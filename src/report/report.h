/* Markdown reports: one per run (config, metrics, per-class table, confusion
 * heatmap) and one per protocol (methods x shots table with the
 * accuracy-vs-shots plot). Files are written atomically; table cells are
 * markdown-escaped so class names and config values cannot break the
 * layout. */
#ifndef CT_REPORT_REPORT_H
#define CT_REPORT_REPORT_H

#include "cliptune.h"
#include "train/metrics.h"

/* Write run_dir/report.md and, beside it, run_dir/confusion.svg (linked from
 * the report). kv holds n_kv (key, value) pairs for the config table (kv may
 * be NULL when n_kv is 0; a NULL value prints empty). title, classnames and
 * log_tail (the end of the training log, shown verbatim) may be NULL. */
ct_status ct_report_run(const char *run_dir, const char *title, const char *const *kv, int n_kv,
                        const ct_metrics *m, const char *const *classnames,
                        const char *log_tail);

/* Write path_md: a methods x shots table whose cells are "mean ± std" in
 * percent with one decimal (mean and std are fractions, n_methods x n_shots,
 * row-major; NaN mean: missing "–"; std NULL, NaN or n_seeds <= 1: the mean
 * alone), and, when svg_path is not NULL, the accuracy-vs-shots plot there
 * (log2 x axis when all shots are > 0), linked from the markdown relative to
 * its directory when the plot lies in or below it, else by svg_path as
 * given. */
ct_status ct_report_protocol(const char *path_md, const char *svg_path, const char *title,
                             const char *const *methods, int n_methods, const int *shots,
                             int n_shots, const double *mean, const double *std, int n_seeds);

#endif
