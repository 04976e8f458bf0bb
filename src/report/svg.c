/* SVG line plots and confusion heatmaps (see svg.h). The document is printed
 * into an in-memory stream and written atomically in one piece, so a reader
 * never sees half a chart. Coordinates are pixels with two decimals. */
#include "report/svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Qualitative palette (Tableau 10): distinct hues that stay apart for the
 * usual handful of methods; past ten the colours repeat with a new dash. */
static const char *const k_colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                       "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
#define N_COLORS ((int)(sizeof k_colors / sizeof k_colors[0]))
static const char *const k_dashes[] = {"", "6,3", "2,2", "8,3,2,3"};
#define N_DASHES ((int)(sizeof k_dashes / sizeof k_dashes[0]))

#define FONT_W 0.6        /* average glyph width / font size (sans-serif)   */
#define MAX_LEGEND_CHARS 32
#define MAX_CLASS_CHARS 24

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct svg_out {
    FILE *f;
    char *buf;
    size_t size;
} svg_out;

static ct_status out_open(svg_out *o, const char *path) {
    o->buf = NULL;
    o->size = 0;
    o->f = open_memstream(&o->buf, &o->size);
    if (!o->f) return ct_set_error(CT_ERR_NOMEM, "%s: cannot open a memory stream", path);
    return CT_OK;
}

/* Close the stream and, if every print succeeded, write it atomically. */
static ct_status out_commit(svg_out *o, const char *path) {
    bool bad = ferror(o->f) != 0;
    if (fclose(o->f) != 0) bad = true;
    ct_status s = bad ? ct_set_error(CT_ERR_NOMEM, "%s: cannot format the SVG", path)
                      : ct_write_file_atomic(path, o->buf, o->size);
    free(o->buf);
    return s;
}

/* Decode one UTF-8 sequence at s (NUL-terminated). Returns its length and
 * sets *cp; an invalid or overlong sequence, a surrogate or a character XML
 * 1.0 forbids yields U+FFFD for its first byte only. */
static int utf8_next(const unsigned char *s, unsigned *cp) {
    unsigned c = s[0];
    int len;
    unsigned v, min;
    if (c < 0x80) {
        len = 1, v = c, min = 0;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { /* also stops at the NUL */
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    bool xml_char = v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
                    (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
    if (v < min || !xml_char) {
        *cp = 0xFFFD;
        return v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ? 1 : len;
    }
    *cp = v;
    return len;
}

/* Print s as XML character data: escaped, whitespace controls as spaces (SVG
 * text is one line), at most max_chars characters (0: no limit) with an
 * ellipsis when cut. */
static void put_text(FILE *f, const char *s, int max_chars) {
    if (!s) return;
    const unsigned char *p = (const unsigned char *)s;
    for (int count = 0; *p; count++) {
        if (max_chars > 0 && count == max_chars) {
            fputs("\xE2\x80\xA6", f); /* U+2026 */
            return;
        }
        unsigned cp;
        int len = utf8_next(p, &cp);
        switch (cp) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\t':
        case '\n':
        case '\r': fputc(' ', f); break;
        case 0xFFFD: fputs("\xEF\xBF\xBD", f); break; /* also for a literal U+FFFD */
        default: fwrite(p, 1, (size_t)len, f); break;
        }
        p += len;
    }
}

/* Characters put_text would print (for layout estimates). */
static int text_chars(const char *s, int max_chars) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; n++) {
        unsigned cp;
        p += utf8_next(p, &cp);
    }
    return max_chars > 0 && n > max_chars ? max_chars + 1 : n;
}

static void svg_begin(FILE *f, double w, double h, const char *title) {
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            w, h, w, h);
    if (title) {
        fputs("<title>", f);
        put_text(f, title, 0);
        fputs("</title>\n", f);
    }
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", f);
    if (title) {
        fprintf(f, "<text x=\"%.2f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" "
                "font-weight=\"bold\">", w / 2);
        put_text(f, title, 0);
        fputs("</text>\n", f);
    }
}

/* ------------------------------------------------------------------------ */
/* Axes                                                                      */
/* ------------------------------------------------------------------------ */

/* A "nice" axis: [lo, hi] widened to multiples of step, step one of 1, 2, 5
 * times a power of ten, about `target` intervals. */
typedef struct nice_axis {
    double lo, hi, step;
    int decimals;
} nice_axis;

static nice_axis make_axis(double lo, double hi, int target) {
    if (!(hi - lo > 1e-12 * fmax(fabs(lo), fabs(hi)))) { /* one value: give it room */
        double pad = lo != 0.0 ? 0.05 * fabs(lo) : 1.0;
        lo -= pad;
        hi += pad;
    }
    double rough = (hi - lo) / target;
    double mag = pow(10.0, floor(log10(rough)));
    double fr = rough / mag;
    double step = (fr < 1.5 ? 1.0 : fr < 3.0 ? 2.0 : fr < 7.0 ? 5.0 : 10.0) * mag;
    nice_axis a;
    a.step = step;
    a.lo = floor(lo / step + 1e-9) * step;
    a.hi = ceil(hi / step - 1e-9) * step;
    int d = -(int)floor(log10(step) + 1e-9);
    a.decimals = d > 0 ? d : 0;
    return a;
}

/* A tick label: the value to the axis's decimals ("-0.0" printed as "0.0"). */
static void fmt_tick(char *buf, size_t n, double v, int decimals) {
    snprintf(buf, n, "%.*f", decimals, v);
    if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1))
        memmove(buf, buf + 1, strlen(buf));
}

/* ------------------------------------------------------------------------ */
/* Line plot                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct frame {
    double left, top, right, bottom; /* plot area in pixels */
    double x0, x1, y0, y1;           /* data range mapped onto it */
} frame;

static double px(const frame *fr, double v) {
    return fr->left + (v - fr->x0) / (fr->x1 - fr->x0) * (fr->right - fr->left);
}
static double py(const frame *fr, double v) {
    return fr->bottom - (v - fr->y0) / (fr->y1 - fr->y0) * (fr->bottom - fr->top);
}

static void series_name(char *buf, size_t n, const char *const *names, int i, const char **out) {
    snprintf(buf, n, "series %d", i);
    *out = names && names[i] ? names[i] : buf;
}

ct_status ct_svg_line_plot(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const double *x, int nx,
                           const char *const *series_names, const double *y,
                           const double *yerr, int n_series, bool log2_x) {
    if (!path || !x || !y || nx < 1 || n_series < 1)
        return ct_set_error(CT_ERR_ARG, "ct_svg_line_plot: %s: need a path, x, y, nx >= 1 and "
                            "n_series >= 1", path ? path : "(null)");
    double xmin = INFINITY, xmax = -INFINITY;
    for (int j = 0; j < nx; j++) {
        if (!isfinite(x[j]) || (log2_x && !(x[j] > 0)))
            return ct_set_error(CT_ERR_ARG, "%s: x[%d] = %g is not %s", path, j, x[j],
                                log2_x ? "finite and > 0 (log2 axis)" : "finite");
        double t = log2_x ? log2(x[j]) : x[j];
        xmin = fmin(xmin, t);
        xmax = fmax(xmax, t);
    }
    double ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n_series * nx; i++) {
        if (!isfinite(y[i])) continue;
        double e = yerr && isfinite(yerr[i]) ? fabs(yerr[i]) : 0.0;
        ymin = fmin(ymin, y[i] - e);
        ymax = fmax(ymax, y[i] + e);
    }
    if (ymin > ymax) { /* nothing to draw: an empty unit frame */
        ymin = 0.0;
        ymax = 1.0;
    }

    int legend_chars = 0;
    for (int i = 0; i < n_series; i++) {
        char b[32];
        const char *nm;
        series_name(b, sizeof b, series_names, i, &nm);
        int c = text_chars(nm, MAX_LEGEND_CHARS);
        if (c > legend_chars) legend_chars = c;
    }
    double legend_w = 56 + legend_chars * 12 * FONT_W;
    double W = 560 + legend_w, H = 420;
    frame fr = {.left = 72, .top = 44, .right = W - legend_w - 16, .bottom = H - 56};

    /* x: a little margin so end markers and error caps clear the frame. */
    double xpad = xmax > xmin ? 0.05 * (xmax - xmin) : 1.0;
    fr.x0 = xmin - xpad;
    fr.x1 = xmax + xpad;
    nice_axis xa = {0};
    if (!log2_x) {
        xa = make_axis(xmin, xmax, 6);
        fr.x0 = fmin(fr.x0, xa.lo);
        fr.x1 = fmax(fr.x1, xa.hi);
    }
    /* a little headroom so that points do not sit on the frame */
    double ypad = 0.04 * (ymax - ymin);
    nice_axis ya = make_axis(ymin - ypad, ymax + ypad, 6);
    fr.y0 = ya.lo;
    fr.y1 = ya.hi;

    svg_out o;
    ct_status s = out_open(&o, path);
    if (s != CT_OK) return s;
    FILE *f = o.f;
    svg_begin(f, W, H, title);

    /* y grid and ticks */
    char buf[64];
    fputs("<g font-size=\"11\" fill=\"#333\">\n", f);
    for (long long k = llround(ya.lo / ya.step); k <= llround(ya.hi / ya.step); k++) {
        double v = (double)k * ya.step, yy = py(&fr, v);
        fmt_tick(buf, sizeof buf, v, ya.decimals);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e4e4e4\"/>\n",
                fr.left, yy, fr.right, yy);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", fr.left - 6,
                yy + 4, buf);
    }
    /* x ticks: the x values themselves on a log2 axis (skipping any that
     * would crowd the previous label), nice values otherwise. */
    if (log2_x) {
        double last = -INFINITY;
        double *xs = malloc((size_t)nx * sizeof *xs);
        if (!xs) {
            fclose(f);
            free(o.buf);
            return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate ticks", path);
        }
        memcpy(xs, x, (size_t)nx * sizeof *xs);
        for (int a = 1; a < nx; a++) /* insertion sort: nx is tiny */
            for (int b = a; b > 0 && xs[b - 1] > xs[b]; b--) {
                double t = xs[b];
                xs[b] = xs[b - 1];
                xs[b - 1] = t;
            }
        for (int j = 0; j < nx; j++) {
            double xx = px(&fr, log2(xs[j]));
            if (xx - last < 28) continue;
            last = xx;
            snprintf(buf, sizeof buf, "%g", xs[j]);
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/>\n",
                    xx, fr.bottom, xx, fr.bottom + 5);
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", xx,
                    fr.bottom + 18, buf);
        }
        free(xs);
    } else {
        for (long long k = llround(xa.lo / xa.step); k <= llround(xa.hi / xa.step); k++) {
            double v = (double)k * xa.step, xx = px(&fr, v);
            if (xx < fr.left - 0.5 || xx > fr.right + 0.5) continue;
            fmt_tick(buf, sizeof buf, v, xa.decimals);
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/>\n",
                    xx, fr.bottom, xx, fr.bottom + 5);
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", xx,
                    fr.bottom + 18, buf);
        }
    }
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#333\"/>\n", fr.left, fr.top, fr.right - fr.left, fr.bottom - fr.top);
    if (xlabel) {
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">",
                (fr.left + fr.right) / 2, H - 16);
        put_text(f, xlabel, 0);
        fputs("</text>\n", f);
    }
    if (ylabel) {
        fprintf(f, "<text transform=\"translate(20,%.2f) rotate(-90)\" text-anchor=\"middle\">",
                (fr.top + fr.bottom) / 2);
        put_text(f, ylabel, 0);
        fputs("</text>\n", f);
    }

    /* series: error bars, then lines broken at missing points, then markers */
    for (int i = 0; i < n_series; i++) {
        const double *yi = y + (size_t)i * (size_t)nx;
        const double *ei = yerr ? yerr + (size_t)i * (size_t)nx : NULL;
        const char *color = k_colors[i % N_COLORS];
        const char *dash = k_dashes[(i / N_COLORS) % N_DASHES];
        char nb[32];
        const char *nm;
        series_name(nb, sizeof nb, series_names, i, &nm);
        fprintf(f, "<g stroke=\"%s\" fill=\"%s\">\n<title>", color, color);
        put_text(f, nm, 0);
        fputs("</title>\n", f);
        for (int j = 0; ei && j < nx; j++) {
            if (!isfinite(yi[j]) || !isfinite(ei[j]) || !(fabs(ei[j]) > 0)) continue;
            double xx = px(&fr, log2_x ? log2(x[j]) : x[j]);
            double ya0 = py(&fr, yi[j] - fabs(ei[j])), ya1 = py(&fr, yi[j] + fabs(ei[j]));
            fprintf(f, "<path d=\"M%.2f %.2fV%.2fM%.2f %.2fH%.2fM%.2f %.2fH%.2f\" "
                    "fill=\"none\"/>\n", xx, ya0, ya1, xx - 4, ya0, xx + 4, xx - 4, ya1, xx + 4);
        }
        bool open = false;
        for (int j = 0; j < nx; j++) {
            if (!isfinite(yi[j])) {
                if (open) fputs("\"/>\n", f);
                open = false;
                continue;
            }
            if (!open)
                fprintf(f, "<polyline fill=\"none\" stroke-width=\"2\"%s%s%s points=\"",
                        dash[0] ? " stroke-dasharray=\"" : "", dash, dash[0] ? "\"" : "");
            fprintf(f, "%s%.2f,%.2f", open ? " " : "", px(&fr, log2_x ? log2(x[j]) : x[j]),
                    py(&fr, yi[j]));
            open = true;
        }
        if (open) fputs("\"/>\n", f);
        for (int j = 0; j < nx; j++) {
            if (!isfinite(yi[j])) continue;
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\"/>\n",
                    px(&fr, log2_x ? log2(x[j]) : x[j]), py(&fr, yi[j]));
        }
        fputs("</g>\n", f);
    }

    /* legend */
    double lx = fr.right + 16, ly = fr.top + 8;
    for (int i = 0; i < n_series; i++) {
        const char *color = k_colors[i % N_COLORS];
        const char *dash = k_dashes[(i / N_COLORS) % N_DASHES];
        char nb[32];
        const char *nm;
        series_name(nb, sizeof nb, series_names, i, &nm);
        double yy = ly + 18.0 * i;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"2\"%s%s%s/>\n", lx, yy, lx + 24, yy, color,
                dash[0] ? " stroke-dasharray=\"" : "", dash, dash[0] ? "\"" : "");
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\"/>\n", lx + 12, yy,
                color);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">", lx + 30, yy + 4);
        put_text(f, nm, MAX_LEGEND_CHARS);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    return out_commit(&o, path);
}

/* ------------------------------------------------------------------------ */
/* Confusion matrix                                                          */
/* ------------------------------------------------------------------------ */

/* White to dark blue, linear in v in [0, 1]. */
static void heat_color(char *buf, size_t n, double v) {
    static const double lo[3] = {255, 255, 255}, hi[3] = {8, 48, 107};
    int c[3];
    for (int k = 0; k < 3; k++) c[k] = (int)lround(lo[k] + (hi[k] - lo[k]) * v);
    snprintf(buf, n, "#%02x%02x%02x", c[0], c[1], c[2]);
}

static void class_name(char *buf, size_t n, const char *const *names, int i, const char **out) {
    snprintf(buf, n, "%d", i);
    *out = names && names[i] ? names[i] : buf;
}

ct_status ct_svg_confusion(const char *path, const char *title, const int64_t *confusion, int K,
                           const char *const *classnames) {
    if (!path || !confusion || K < 1)
        return ct_set_error(CT_ERR_ARG, "ct_svg_confusion: %s: need a path, counts and K >= 1",
                            path ? path : "(null)");
    for (size_t i = 0; i < (size_t)K * (size_t)K; i++)
        if (confusion[i] < 0)
            return ct_set_error(CT_ERR_ARG, "%s: confusion[%zu][%zu] = %lld is negative", path,
                                i / (size_t)K, i % (size_t)K, (long long)confusion[i]);
    bool numbers = K <= 30, labels = K <= 100;
    /* Readable cells up to 30 classes; past that the matrix keeps ~800 px. */
    double cell = K <= 30 ? 28.0 : fmax(800.0 / K, 0.5);
    double fs = labels ? fmin(11.0, fmax(5.0, cell * 0.85)) : 0.0;
    int max_chars = 0;
    for (int c = 0; labels && c < K; c++) {
        char b[24];
        const char *nm;
        class_name(b, sizeof b, classnames, c, &nm);
        int n = text_chars(nm, MAX_CLASS_CHARS);
        if (n > max_chars) max_chars = n;
    }
    double label_w = labels ? max_chars * fs * FONT_W + 8 : 0.0;
    double side = cell * K;
    double left = 36 + label_w, top = 48, bar_w = 70;
    double W = left + side + 24 + bar_w, H = top + side + label_w + 40;

    svg_out o;
    ct_status s = out_open(&o, path);
    if (s != CT_OK) return s;
    FILE *f = o.f;
    svg_begin(f, fmax(W, 320), H, title);
    fputs("<defs><linearGradient id=\"heat\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
          "<stop offset=\"0\" stop-color=\"#ffffff\"/><stop offset=\"1\" stop-color=\"#08306b\"/>"
          "</linearGradient></defs>\n", f);

    /* Only non-zero cells are drawn: a K = 1000 matrix is mostly white. */
    char color[16];
    fputs("<g stroke=\"none\">\n", f);
    for (int t = 0; t < K; t++) {
        const int64_t *row = confusion + (size_t)t * (size_t)K;
        int64_t total = 0;
        for (int p = 0; p < K; p++) total += row[p];
        for (int p = 0; total > 0 && p < K; p++) {
            if (row[p] == 0) continue;
            double v = (double)row[p] / (double)total;
            heat_color(color, sizeof color, v);
            fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                    left + p * cell, top + t * cell, cell, cell, color);
            if (numbers)
                fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"9\" "
                        "fill=\"%s\">%.0f</text>\n", left + (p + 0.5) * cell,
                        top + (t + 0.5) * cell + 3, v > 0.5 ? "white" : "#222", 100 * v);
        }
    }
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#333\"/>\n", left, top, side, side);

    if (labels) {
        fprintf(f, "<g font-size=\"%.1f\" fill=\"#333\">\n", fs);
        for (int c = 0; c < K; c++) {
            char b[24];
            const char *nm;
            class_name(b, sizeof b, classnames, c, &nm);
            double mid = (c + 0.5) * cell + fs * 0.35;
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">", left - 4, top + mid);
            put_text(f, nm, MAX_CLASS_CHARS);
            fprintf(f, "</text>\n<text transform=\"translate(%.2f,%.2f) rotate(-90)\" "
                    "text-anchor=\"end\">", left + mid, top + side + 4);
            put_text(f, nm, MAX_CLASS_CHARS);
            fputs("</text>\n", f);
        }
        fputs("</g>\n", f);
    }
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">predicted class</text>\n",
            left + side / 2, H - 12);
    fprintf(f, "<text transform=\"translate(16,%.2f) rotate(-90)\" text-anchor=\"middle\">"
            "true class</text>\n", top + side / 2);

    /* colour bar: row-normalised share, 0 to 100 % */
    double bx = left + side + 24, bh = fmin(side, 200);
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"%.2f\" fill=\"url(#heat)\" "
            "stroke=\"#333\"/>\n", bx, top, bh);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\">100%%</text>\n", bx + 18, top + 8);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\">0%%</text>\n", bx + 18, top + bh);
    fputs("</svg>\n", f);
    return out_commit(&o, path);
}
