/* Markdown run and protocol reports (see report.h). Each document is printed
 * into an in-memory stream and written atomically in one piece. */
#include "report/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "base/error.h"
#include "report/svg.h"

#define PLUS_MINUS "\xC2\xB1" /* U+00B1 */
#define EN_DASH "\xE2\x80\x93" /* U+2013, a missing value */

typedef struct md_out {
    FILE *f;
    char *buf;
    size_t size;
} md_out;

static ct_status md_open(md_out *o, const char *path) {
    o->buf = NULL;
    o->size = 0;
    o->f = open_memstream(&o->buf, &o->size);
    if (!o->f) return ct_set_error(CT_ERR_NOMEM, "%s: cannot open a memory stream", path);
    return CT_OK;
}

/* Close the stream and, if every print succeeded, write it atomically. */
static ct_status md_commit(md_out *o, const char *path) {
    bool bad = ferror(o->f) != 0;
    if (fclose(o->f) != 0) bad = true;
    ct_status s = bad ? ct_set_error(CT_ERR_NOMEM, "%s: cannot format the report", path)
                      : ct_write_file_atomic(path, o->buf, o->size);
    free(o->buf);
    return s;
}

/* Inline text: markdown's active punctuation backslash-escaped (GFM allows
 * escaping any ASCII punctuation) and line breaks as spaces, so a value can
 * neither end a table row nor start a heading, link or HTML tag. */
static void put_md(FILE *f, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            fputc(' ', f);
            continue;
        }
        if (strchr("\\`*_[]<>|~#!", *p)) fputc('\\', f);
        fputc(*p, f);
    }
}

/* "<dir>/<name>", malloc'ed; NULL with the error set. */
static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a path", dir);
        return NULL;
    }
    memcpy(p, dir, a);
    size_t k = a;
    if (k == 0 || p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static void put_pct(FILE *f, double v, int decimals) {
    if (isfinite(v))
        fprintf(f, "%.*f%%", decimals, 100.0 * v);
    else
        fputs(EN_DASH, f);
}

/* ------------------------------------------------------------------------ */
/* Run report                                                                */
/* ------------------------------------------------------------------------ */

/* The end of the training log, verbatim, in a code fence. */
static void put_log_tail(FILE *f, const char *log_tail) {
    if (log_tail) {
        /* A fence longer than any backtick run in the log, so the log cannot
         * close it early. */
        int run = 0, longest = 0;
        for (const char *p = log_tail; *p; p++) {
            run = *p == '`' ? run + 1 : 0;
            if (run > longest) longest = run;
        }
        int fence = longest >= 3 ? longest + 1 : 3;
        fputs("\n## Log (tail)\n\n", f);
        for (int i = 0; i < fence; i++) fputc('`', f);
        fputs("text\n", f);
        fputs(log_tail, f);
        size_t len = strlen(log_tail);
        if (len > 0 && log_tail[len - 1] != '\n') fputc('\n', f);
        for (int i = 0; i < fence; i++) fputc('`', f);
        fputc('\n', f);
    }
}

/* The configuration table: n_kv (key, value) pairs. */
static void put_config(FILE *f, const char *const *kv, int n_kv) {
    if (n_kv > 0) {
        fputs("## Configuration\n\n| key | value |\n|---|---|\n", f);
        for (int i = 0; i < n_kv; i++) {
            fputs("| ", f);
            put_md(f, kv[2 * i]);
            fputs(" | ", f);
            put_md(f, kv[2 * i + 1]);
            fputs(" |\n", f);
        }
        fputs("\n", f);
    }
}

ct_status ct_report_run(const char *run_dir, const char *title, const char *const *kv, int n_kv,
                        const ct_metrics *m, const char *const *classnames,
                        const char *log_tail) {
    if (!run_dir || !m || n_kv < 0 || (n_kv > 0 && !kv))
        return ct_set_error(CT_ERR_ARG, "ct_report_run: need a run directory, metrics and "
                            "n_kv >= 0 pairs");
    int K = m->n_classes;
    if (K < 1 || !m->per_class_acc || !m->per_class_f1 || !m->confusion)
        return ct_set_error(CT_ERR_ARG, "ct_report_run: %s: metrics were not computed", run_dir);

    char *svg_path = join(run_dir, "confusion.svg");
    if (!svg_path) return CT_ERR_NOMEM;
    ct_status s = ct_svg_confusion(svg_path, "Confusion matrix (row-normalised)", m->confusion,
                                   K, classnames);
    free(svg_path);
    if (s != CT_OK) return s;

    char *md_path = join(run_dir, "report.md");
    if (!md_path) return CT_ERR_NOMEM;
    md_out o;
    s = md_open(&o, md_path);
    if (s != CT_OK) {
        free(md_path);
        return s;
    }
    FILE *f = o.f;
    fputs("# ", f);
    put_md(f, title ? title : "cliptune run");
    fputs("\n\n", f);

    put_config(f, kv, n_kv);

    fputs("## Results\n\n| metric | value |\n|---|---:|\n", f);
    fputs("| top-1 accuracy | ", f);
    put_pct(f, m->top1, 2);
    fprintf(f, " |\n| top-%d accuracy | ", K < 5 ? K : 5);
    put_pct(f, m->top5, 2);
    fputs(" |\n| macro-F1 | ", f);
    put_pct(f, m->macro_f1, 2);
    fprintf(f, " |\n| ECE (%d bins) | ", m->ece_bins);
    put_pct(f, m->ece, 2);
    fprintf(f, " |\n| NLL | %.4f |\n| samples | %lld |\n| classes | %d |\n\n", m->nll,
            (long long)m->n, K);
    if (m->hierarchy) {
        /* ProTeCt's metrics (docs/training.md, "Hierarchy runs") */
        fputs("## Hierarchy\n\n| metric | value |\n|---|---:|\n| leaf accuracy | ", f);
        put_pct(f, m->leaf_acc, 2);
        fputs(" |\n| hierarchical consistency (HCA) | ", f);
        put_pct(f, m->hca, 2);
        fprintf(f, " |\n| mean tree-cut accuracy (MTA, %d cuts) | ", m->n_cuts);
        put_pct(f, m->mta, 2);
        fprintf(f, " |\n\nInternal nodes scored from %s.\n\n",
                m->node_scores_from ? m->node_scores_from : "?");
    }

    fputs("## Per-class accuracy\n\n| class | accuracy | F1 | samples |\n|---|---:|---:|---:|\n",
          f);
    for (int c = 0; c < K; c++) {
        int64_t support = 0;
        for (int j = 0; j < K; j++) support += m->confusion[(size_t)c * (size_t)K + (size_t)j];
        fputs("| ", f);
        if (classnames && classnames[c])
            put_md(f, classnames[c]);
        else
            fprintf(f, "%d", c);
        fputs(" | ", f);
        put_pct(f, m->per_class_acc[c], 2);
        fputs(" | ", f);
        put_pct(f, m->per_class_f1[c], 2);
        fprintf(f, " | %lld |\n", (long long)support);
    }
    fputs("\n## Confusion matrix\n\n![confusion matrix](confusion.svg)\n", f);

    put_log_tail(f, log_tail);
    s = md_commit(&o, md_path);
    free(md_path);
    return s;
}

ct_status ct_report_run_ml(const char *run_dir, const char *title, const char *const *kv,
                           int n_kv, const ct_ml_metrics *m, const char *const *classnames,
                           const char *log_tail) {
    if (!run_dir || !m || !m->ap || m->n_classes < 1 || n_kv < 0 || (n_kv > 0 && !kv))
        return ct_set_error(CT_ERR_ARG, "ct_report_run_ml: need a run directory, computed "
                            "metrics and n_kv >= 0 pairs");
    char *md_path = join(run_dir, "report.md");
    if (!md_path) return CT_ERR_NOMEM;
    md_out o;
    ct_status s = md_open(&o, md_path);
    if (s != CT_OK) {
        free(md_path);
        return s;
    }
    FILE *f = o.f;
    fputs("# ", f);
    put_md(f, title ? title : "cliptune run");
    fputs("\n\n", f);
    put_config(f, kv, n_kv);
    fputs("## Results (multi-label)\n\n| metric | value |\n|---|---:|\n| mAP | ", f);
    put_pct(f, m->map, 2);
    fputs(" |\n| mAP (VOC07 11-point) | ", f);
    put_pct(f, m->map_voc07, 2);
    const double at[2][6] = {{m->cp, m->cr, m->cf1, m->op, m->or_, m->of1},
                             {m->cp3, m->cr3, m->cf13, m->op3, m->or3, m->of13}};
    static const char *const nm[6] = {"CP", "CR", "CF1", "OP", "OR", "OF1"};
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 6; j++) {
            if (r == 0) fprintf(f, " |\n| %s (p >= %.2f) | ", nm[j], m->thresh);
            else fprintf(f, " |\n| %s (top-%d) | ", nm[j], m->top_k);
            put_pct(f, at[r][j], 2);
        }
    fprintf(f, " |\n| images | %lld |\n| classes | %d |\n\n", (long long)m->n, m->n_classes);
    fputs("## Per-class average precision\n\n| class | AP |\n|---|---:|\n", f);
    for (int c = 0; c < m->n_classes; c++) {
        fputs("| ", f);
        if (classnames && classnames[c]) put_md(f, classnames[c]);
        else fprintf(f, "%d", c);
        fputs(" | ", f);
        put_pct(f, m->ap[c], 2);
        fputs(" |\n", f);
    }
    put_log_tail(f, log_tail);
    s = md_commit(&o, md_path);
    free(md_path);
    return s;
}

ct_status ct_report_run_seg(const char *run_dir, const char *title, const char *const *kv,
                            int n_kv, const ct_seg_metrics *m, const char *const *classnames,
                            const char *log_tail) {
    if (!run_dir || !m || !m->iou || !m->acc || m->n_classes < 1 || n_kv < 0 || (n_kv > 0 && !kv))
        return ct_set_error(CT_ERR_ARG, "ct_report_run_seg: need a run directory, computed "
                            "metrics and n_kv >= 0 pairs");
    char *md_path = join(run_dir, "report.md");
    char *ov_path = join(run_dir, "overlays.png");
    if (!md_path || !ov_path) {
        free(md_path), free(ov_path);
        return CT_ERR_NOMEM;
    }
    struct stat st;
    bool overlays = stat(ov_path, &st) == 0;
    free(ov_path);
    md_out o;
    ct_status s = md_open(&o, md_path);
    if (s != CT_OK) {
        free(md_path);
        return s;
    }
    FILE *f = o.f;
    fputs("# ", f);
    put_md(f, title ? title : "cliptune run");
    fputs("\n\n", f);
    put_config(f, kv, n_kv);
    fputs("## Results (segmentation)\n\n| metric | value |\n|---|---:|\n| mIoU | ", f);
    put_pct(f, m->miou, 2);
    fputs(" |\n| mAcc | ", f);
    put_pct(f, m->macc, 2);
    fputs(" |\n| aAcc (pixel accuracy) | ", f);
    put_pct(f, m->aacc, 2);
    fprintf(f, " |\n| labelled pixels | %lld |\n| classes (with IoU) | %d (%d) |\n\n",
            (long long)m->n_pixels, m->n_classes, m->n_iou_classes);
    if (overlays)
        fputs("## Overlays\n\nImage, prediction over the image, ground truth (VOC's colours; "
              "ignored pixels cream), for the first test images.\n\n"
              "![overlays](overlays.png)\n\n", f);
    fputs("## Per-class IoU and accuracy\n\n| class | IoU | Acc | pixels (gt) |\n"
          "|---|---:|---:|---:|\n", f);
    for (int c = 0; c < m->n_classes; c++) {
        fputs("| ", f);
        if (classnames && classnames[c]) put_md(f, classnames[c]);
        else fprintf(f, "%d", c);
        fputs(" | ", f);
        put_pct(f, m->iou[c], 2);
        fputs(" | ", f);
        put_pct(f, m->acc[c], 2);
        fprintf(f, " | %lld |\n", m->area_label ? (long long)m->area_label[c] : 0LL);
    }
    put_log_tail(f, log_tail);
    s = md_commit(&o, md_path);
    free(md_path);
    return s;
}


/* ------------------------------------------------------------------------ */
/* Protocol report                                                           */
/* ------------------------------------------------------------------------ */

/* How the markdown at path_md should link to svg_path: relative when the plot
 * lies in the report's directory or below, else svg_path itself. */
static const char *svg_link(const char *path_md, const char *svg_path) {
    const char *slash = strrchr(path_md, '/');
    size_t dir_len = slash ? (size_t)(slash - path_md) + 1 : 0;
    if (dir_len > 0 && strncmp(svg_path, path_md, dir_len) == 0) return svg_path + dir_len;
    return svg_path;
}

ct_status ct_report_protocol(const char *path_md, const char *svg_path, const char *title,
                             const char *const *methods, int n_methods, const int *shots,
                             int n_shots, const double *mean, const double *std, int n_seeds) {
    return ct_report_protocol_metric(path_md, svg_path, title, "Top-1 accuracy", methods,
                                     n_methods, shots, n_shots, mean, std, n_seeds);
}

ct_status ct_report_protocol_metric(const char *path_md, const char *svg_path, const char *title,
                                    const char *metric, const char *const *methods,
                                    int n_methods, const int *shots, int n_shots,
                                    const double *mean, const double *std, int n_seeds) {
    if (!metric || !*metric) metric = "Top-1 accuracy";
    char axis[128];
    snprintf(axis, sizeof axis, "%s (%%)", metric);
    if (!path_md || !shots || !mean || n_methods < 1 || n_shots < 1)
        return ct_set_error(CT_ERR_ARG, "ct_report_protocol: %s: need a path, shots, means, "
                            "n_methods >= 1 and n_shots >= 1", path_md ? path_md : "(null)");
    size_t cells = (size_t)n_methods * (size_t)n_shots;
    ct_status s = CT_OK;
    if (svg_path) {
        double *x = malloc((size_t)n_shots * sizeof *x);
        double *y = malloc(cells * sizeof *y);
        double *e = std ? malloc(cells * sizeof *e) : NULL;
        if (!x || !y || (std && !e)) {
            free(x);
            free(y);
            free(e);
            return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the plot data", svg_path);
        }
        bool log2_x = true;
        for (int j = 0; j < n_shots; j++) {
            x[j] = shots[j];
            log2_x = log2_x && shots[j] > 0;
        }
        for (size_t i = 0; i < cells; i++) {
            y[i] = 100.0 * mean[i];
            if (e) e[i] = n_seeds > 1 ? 100.0 * std[i] : NAN;
        }
        s = ct_svg_line_plot(svg_path, title, "shots per class", axis, x,
                             n_shots, methods, y, e, n_methods, log2_x);
        free(x);
        free(y);
        free(e);
        if (s != CT_OK) return s;
    }

    md_out o;
    s = md_open(&o, path_md);
    if (s != CT_OK) return s;
    FILE *f = o.f;
    fputs("# ", f);
    put_md(f, title ? title : "Few-shot protocol");
    fputs("\n\n", f);
    bool with_std = std && n_seeds > 1;
    put_md(f, metric);
    if (with_std)
        fprintf(f, " (%%), mean " PLUS_MINUS " std over %d seeds (population std, "
                "ddof = 0, as CoOp's parse_test_res.py).\n\n", n_seeds);
    else if (n_seeds == 1)
        fputs(" (%), one seed.\n\n", f);
    else
        fputs(" (%), mean over seeds.\n\n", f);

    fputs("| method |", f);
    for (int j = 0; j < n_shots; j++)
        fprintf(f, " %d shot%s |", shots[j], shots[j] == 1 ? "" : "s");
    fputs("\n|---|", f);
    for (int j = 0; j < n_shots; j++) fputs("---:|", f);
    fputc('\n', f);
    for (int i = 0; i < n_methods; i++) {
        fputs("| ", f);
        if (methods && methods[i])
            put_md(f, methods[i]);
        else
            fprintf(f, "method %d", i);
        fputs(" |", f);
        for (int j = 0; j < n_shots; j++) {
            size_t k = (size_t)i * (size_t)n_shots + (size_t)j;
            if (!isfinite(mean[k]))
                fputs(" " EN_DASH " |", f);
            else if (with_std && isfinite(std[k]))
                fprintf(f, " %.1f " PLUS_MINUS " %.1f |", 100.0 * mean[k], 100.0 * std[k]);
            else
                fprintf(f, " %.1f |", 100.0 * mean[k]);
        }
        fputc('\n', f);
    }
    if (svg_path) {
        fputs("\n![accuracy vs shots](", f);
        /* A space or parenthesis would end the link target: percent-encode. */
        for (const char *p = svg_link(path_md, svg_path); *p; p++) {
            if (strchr(" ()<>%", *p))
                fprintf(f, "%%%02X", (unsigned)(unsigned char)*p);
            else
                fputc(*p, f);
        }
        fputs(")\n", f);
    }
    return md_commit(&o, path_md);
}
