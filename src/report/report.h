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

/* The multi-label run's report.md: config, mAP (and VOC07's), the
 * threshold and top-k precision/recall/F1 table, per-class AP, log tail. */
ct_status ct_report_run_ml(const char *run_dir, const char *title, const char *const *kv,
                           int n_kv, const ct_ml_metrics *m, const char *const *classnames,
                           const char *log_tail);

/* report.md of a segmentation run or evaluation in run_dir: its settings,
 * mIoU / mAcc / aAcc, per-class IoU and accuracy, overlays.png when run_dir
 * has one, the log tail. */
ct_status ct_report_run_seg(const char *run_dir, const char *title, const char *const *kv,
                            int n_kv, const ct_seg_metrics *m, const char *const *classnames,
                            const char *log_tail);

/* ct_report_protocol: cliptune.h */

#endif
