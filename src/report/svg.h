/* Small, dependency-free SVG charts for run reports: a line plot with error
 * bars (accuracy vs shots) and a confusion-matrix heatmap. Files are written
 * atomically. All text (titles, labels, class names) is XML-escaped; bytes
 * that are not valid UTF-8 or not allowed in XML 1.0 become U+FFFD, so the
 * output is always well-formed XML whatever the class names hold. */
#ifndef CT_REPORT_SVG_H
#define CT_REPORT_SVG_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

/* One line per series over shared x values (nx >= 1, finite; > 0 with
 * log2_x, whose ticks are then the x values themselves, e.g. 1 2 4 8 16).
 * y is n_series x nx, row-major; NaN marks a missing point (the line breaks
 * there). yerr (same shape, or NULL) draws +-yerr bars where finite and > 0.
 * title/xlabel/ylabel may be NULL; series_names NULL or an entry NULL:
 * "series <i>". n_series >= 1. */
ct_status ct_svg_line_plot(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const double *x, int nx,
                           const char *const *series_names, const double *y,
                           const double *yerr, int n_series, bool log2_x);

/* Row-normalised confusion heatmap (K x K counts, [true][pred]); rows with
 * no samples stay blank. Cells show percentages for K <= 30; axis labels are
 * drawn for K <= 100 (truncated to 24 characters). classnames may be NULL. */
ct_status ct_svg_confusion(const char *path, const char *title, const int64_t *confusion, int K,
                           const char *const *classnames);

#endif
