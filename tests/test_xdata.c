/* CoOp's datasets as they sit on disk (imagenet:, imagenetv2:,
 * imagenet-sketch:, imagenet-a:, imagenet-r:, fgvc-aircraft:) on small
 * generated folders in exactly those layouts, with the malformed cases; and,
 * on the shipped model with Fashion-MNIST images written into those layouts,
 * evaluating a run on other class sets (a subset by restricted logits, other
 * names re-encoded, per-class tensors refused) and `cliptune protocol
 * --targets` (the cross-dataset / domain-generalisation tables, resumed). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cJSON.h>

#include "cliptune.h"
#include "data/dataset.h"
#include "data/png_write.h"
#include "harness.h"

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* dir/rel with every level created; the full path in buf. */
static const char *mkpath(char *buf, size_t n, const char *dir, const char *rel) {
    mkdir(dir, 0777);
    snprintf(buf, n, "%s/%s", dir, rel);
    for (char *p = buf + strlen(dir) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0777);
            *p = '/';
        }
    return buf;
}

static void write_text(const char *dir, const char *rel, const char *text) {
    char p[4096];
    FILE *f = fopen(mkpath(p, sizeof p, dir, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Image source: Fashion-MNIST test images of a class when fm is set, else
 * an 8x8 image whose colour encodes (class, k). */
static const ct_dataset *fm;

static void write_image(const char *dir, const char *rel, int cls, int k) {
    char p[4096];
    mkpath(p, sizeof p, dir, rel);
    if (fm) {
        int seen = 0;
        for (int64_t i = 0; i < fm->n_items; i++) {
            if (fm->items[i].label != cls || seen++ != k) continue;
            ct_image img = {0};
            CHECK_OK(ct_dataset_image(fm, i, &img));
            CHECK_OK(ct_png_write_rgb(p, img.rgb, img.w, img.h));
            ct_image_free(&img);
            return;
        }
        CHECK_MSG(false, "no Fashion-MNIST image %d of class %d", k, cls);
        return;
    }
    uint8_t rgb[8 * 8 * 3];
    for (int i = 0; i < 64; i++)
        rgb[3 * i] = (uint8_t)(20 * cls), rgb[3 * i + 1] = (uint8_t)k, rgb[3 * i + 2] = (uint8_t)i;
    CHECK_OK(ct_png_write_rgb(p, rgb, 8, 8));
}

static void wnid(char *buf, int c) { snprintf(buf, 16, "n%08d", 1000 + 7 * c); }

/* The five ImageNet folders of CoOp's DATA/ under root, for n classes named
 * names (classnames.txt in wnid order, as CoOp's): per class n_tr train and
 * n_te test images; -A holds the odd classes, -R the even ones. */
static void make_imagenet_family(const char *root, int n, char *const *names, int n_tr,
                                 int n_te) {
    char *cn = calloc((size_t)n, 80), *line = cn, rel[512], w[16];
    for (int c = 0; c < n; c++) {
        wnid(w, c);
        line += sprintf(line, "%s %s\n", w, names[c]);
    }
    static const char *const dirs[] = {"imagenet", "imagenetv2", "imagenet-sketch",
                                       "imagenet-adversarial", "imagenet-rendition"};
    for (int d = 0; d < 5; d++) {
        snprintf(rel, sizeof rel, "%s/classnames.txt", dirs[d]);
        write_text(root, rel, cn);
    }
    write_text(root, "imagenet-adversarial/imagenet-a/README.txt", "not a class\n");
    for (int c = 0; c < n; c++) {
        wnid(w, c);
        for (int k = 0; k < n_tr; k++) {
            snprintf(rel, sizeof rel, "imagenet/images/train/%s/%s_%d.JPEG", w, w, k);
            write_image(root, rel, c, k);
        }
        for (int k = 0; k < n_te; k++) {
            int at = n_tr + k;
            snprintf(rel, sizeof rel, "imagenet/images/val/%s/val_%d.png", w, k);
            write_image(root, rel, c, at);
            snprintf(rel, sizeof rel, "imagenetv2/imagenetv2-matched-frequency-format-val/%d/"
                     "%d.jpeg", c, k);
            write_image(root, rel, c, at + n_te);
            snprintf(rel, sizeof rel, "imagenet-sketch/images/%s/sketch_%d.jpg", w, k);
            write_image(root, rel, c, at + 2 * n_te);
            snprintf(rel, sizeof rel, "imagenet-%s/imagenet-%c/%s/%d.png",
                     c % 2 ? "adversarial" : "rendition", c % 2 ? 'a' : 'r', w, k);
            write_image(root, rel, c, at + 3 * n_te);
        }
    }
    free(cn);
}

/* FGVC-Aircraft's data/ folder: variants named vnames, drawn from classes
 * cls (n_v of them); ids 1000000 + .... */
static void make_fgvc(const char *root, int n_v, const char *const *vnames, const int *cls,
                      int per_split) {
    char *v = calloc(4096, 1), *lists[3] = {calloc(1 << 16, 1), calloc(1 << 16, 1),
                                            calloc(1 << 16, 1)};
    static const char *const split[3] = {"train", "val", "test"};
    char rel[256];
    int id = 1000000;
    for (int i = 0; i < n_v; i++) {
        strcat(strcat(v, vnames[i]), "\n");
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < per_split; k++, id++) {
                sprintf(lists[s] + strlen(lists[s]), "%07d %s\n", id, vnames[i]);
                snprintf(rel, sizeof rel, "fgvc_aircraft/images/%07d.jpg", id);
                write_image(root, rel, cls[i], 40 + s * per_split + k);
            }
    }
    write_text(root, "fgvc_aircraft/variants.txt", v);
    for (int s = 0; s < 3; s++) {
        snprintf(rel, sizeof rel, "fgvc_aircraft/images_variant_%s.txt", split[s]);
        write_text(root, rel, lists[s]);
        free(lists[s]);
    }
    free(v);
}

static bool open_spec(const char *form, const char *root, const char *sub, ct_splits *sp) {
    char spec[4200];
    snprintf(spec, sizeof spec, "%s:%s/%s", form, root, sub);
    ct_status s = ct_data_open(spec, sp);
    CHECK_MSG(s == CT_OK, "%s: %s", spec, ct_last_error());
    return s == CT_OK;
}

static ct_status open_fail(const char *form, const char *root, const char *sub) {
    char spec[4200];
    snprintf(spec, sizeof spec, "%s:%s/%s", form, root, sub);
    ct_splits sp;
    ct_status s = ct_data_open(spec, &sp);
    CHECK_MSG(s != CT_OK, "%s opened though malformed", spec);
    if (s == CT_OK) ct_splits_free(&sp);
    return s;
}

/* ---- the layouts -------------------------------------------------------- */

static void test_imagenet_family(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/inet", ct_test_tmpdir());
    /* 12 classes: V2's folders 10 and 11 sort before 2 as strings */
    char *names[12];
    for (int c = 0; c < 12; c++) {
        names[c] = malloc(32);
        snprintf(names[c], 32, c == 3 ? "great white shark" : "class %c", 'a' + c);
    }
    make_imagenet_family(root, 12, names, 3, 2);
    ct_splits sp;
    if (open_spec("imagenet", root, "imagenet", &sp)) {
        CHECK(!strcmp(sp.train->name, "ImageNet") && sp.train->n_classes == 12 && !sp.val);
        CHECK(sp.train->n_items == 36 && sp.test->n_items == 24);
        CHECK(!strcmp(sp.train->classnames[3], "great white shark"));
        /* train and test labels both follow the (sorted) train folders */
        for (int64_t i = 0; i < sp.test->n_items; i++) {
            char w[16];
            wnid(w, sp.test->items[i].label);
            CHECK_MSG(strstr(sp.test->items[i].path, w), "%s has label %d",
                      sp.test->items[i].path, sp.test->items[i].label);
        }
        CHECK(strncmp(sp.train->items[0].path, "images/train/", 13) == 0);
        ct_splits_free(&sp);
    }
    if (open_spec("imagenetv2", root, "imagenetv2", &sp)) {
        CHECK(!strcmp(sp.test->name, "ImageNetV2") && sp.test->n_classes == 12);
        CHECK(sp.test->n_items == 24 && sp.train->n_items == 24 && !sp.val);
        /* the folder number is the class index, not its string order */
        for (int64_t i = 0; i < sp.test->n_items; i++) {
            const char *p = strstr(sp.test->items[i].path, "format-val/");
            CHECK(p && atoi(p + 11) == sp.test->items[i].label);
        }
        ct_splits_free(&sp);
    }
    if (open_spec("imagenet-sketch", root, "imagenet-sketch", &sp)) {
        CHECK(!strcmp(sp.test->name, "ImageNetSketch") && sp.test->n_classes == 12 &&
              sp.test->n_items == 24);
        ct_splits_free(&sp);
    }
    /* -A: the 6 odd classes, labelled in folder order, named by classnames.txt;
     * README.txt is no class */
    if (open_spec("imagenet-a", root, "imagenet-adversarial", &sp)) {
        CHECK(!strcmp(sp.test->name, "ImageNetA") && sp.test->n_classes == 6 &&
              sp.test->n_items == 12);
        CHECK(!strcmp(sp.test->classnames[1], "great white shark"));
        ct_splits_free(&sp);
    }
    if (open_spec("imagenet-r", root, "imagenet-rendition", &sp)) {
        CHECK(!strcmp(sp.test->name, "ImageNetR") && sp.test->n_classes == 6 &&
              !strcmp(sp.test->classnames[1], "class c"));
        ct_splits_free(&sp);
    }
    /* the spec made absolute keeps its form */
    char abs_[4400];
    CHECK_OK(ct_data_spec_absolute("imagenet-a:rel/dir", abs_, sizeof abs_));
    CHECK(!strncmp(abs_, "imagenet-a:/", 12));

    /* ---- malformed ---- */
    char p[4200];
    /* no classnames.txt */
    snprintf(p, sizeof p, "%s/imagenet-sketch/classnames.txt", root);
    char moved[4200];
    snprintf(moved, sizeof moved, "%s.bak", p);
    CHECK(rename(p, moved) == 0);
    CHECK(open_fail("imagenet-sketch", root, "imagenet-sketch") == CT_ERR_IO);
    CHECK_ERR_HAS("imagenet-sketch/classnames.txt");
    CHECK_ERR_HAS("wnid name");
    /* classnames.txt of another form */
    write_text(root, "imagenet-sketch/classnames.txt", "tench\ngoldfish\n");
    CHECK(open_fail("imagenet-sketch", root, "imagenet-sketch") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt:1");
    /* a wnid folder classnames.txt lacks */
    write_text(root, "imagenet-sketch/classnames.txt", "n00001000 class a\n");
    CHECK(open_fail("imagenet-sketch", root, "imagenet-sketch") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("n00001007");
    CHECK_ERR_HAS("imagenet-sketch/classnames.txt");
    CHECK(rename(moved, p) == 0);
    /* a repeated wnid */
    write_text(root, "imagenet-r2/classnames.txt", "n00001000 a\nn00001000 b\n");
    CHECK(open_fail("imagenet-r", root, "imagenet-r2") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt:2");
    /* an empty class folder */
    mkpath(p, sizeof p, root, "imagenet-rendition/imagenet-r/n00001000/x");
    mkpath(p, sizeof p, root, "imagenet-rendition/imagenet-r/n00001077/x");
    CHECK(open_fail("imagenet-r", root, "imagenet-rendition") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("imagenet-r/n00001077");
    CHECK_ERR_HAS("no images");
    /* V2: a missing class folder, a folder that is no class index */
    snprintf(p, sizeof p, "%s/imagenetv2/imagenetv2-matched-frequency-format-val/11", root);
    snprintf(moved, sizeof moved, "%s/imagenetv2/eleven", root);
    CHECK(rename(p, moved) == 0);
    CHECK(open_fail("imagenetv2", root, "imagenetv2") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("format-val/11: missing");
    CHECK(rename(moved, p) == 0);
    mkpath(p, sizeof p, root, "imagenetv2/imagenetv2-matched-frequency-format-val/012/x");
    CHECK(open_fail("imagenetv2", root, "imagenetv2") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("'012' is not a class index 0..11");
    /* ImageNet: val's classes must be train's; no val folder */
    mkpath(p, sizeof p, root, "imagenet/images/val/n00009999/x");
    CHECK(open_fail("imagenet", root, "imagenet") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("images/val/n00009999");
    write_text(root, "inet-noval/classnames.txt", "n00001000 a\n");
    write_image(root, "inet-noval/images/train/n00001000/a.png", 0, 0);
    CHECK(open_fail("imagenet", root, "inet-noval") == CT_ERR_IO);
    CHECK_ERR_HAS("inet-noval/images/val: missing");
    for (int c = 0; c < 12; c++) free(names[c]);
}

static void test_fgvc_aircraft(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/fgvc", ct_test_tmpdir());
    static const char *const v[3] = {"707-320", "Cessna 172", "F-16A/B"};
    static const int cls[3] = {0, 1, 2};
    make_fgvc(root, 3, v, cls, 2);
    ct_splits sp;
    if (open_spec("fgvc-aircraft", root, "fgvc_aircraft", &sp)) {
        CHECK(!strcmp(sp.train->name, "FGVCAircraft") && sp.train->n_classes == 3);
        CHECK(sp.train->n_items == 6 && sp.val && sp.val->n_items == 6 &&
              sp.test->n_items == 6);
        CHECK(!strcmp(sp.train->classnames[1], "Cessna 172") &&
              !strcmp(sp.train->classnames[2], "F-16A/B"));
        CHECK(!strcmp(sp.train->items[2].path, "images/1000006.jpg") &&
              sp.train->items[2].label == 1);
        ct_splits_free(&sp);
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/fgvc_aircraft", root);
    /* a variant not in variants.txt, a line without a variant */
    write_text(p, "images_variant_val.txt", "1000002 707-320\n1000003 Boeing 999\n");
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("images_variant_val.txt:2");
    CHECK_ERR_HAS("Boeing 999");
    write_text(p, "images_variant_val.txt", "1000002\n");
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("images_variant_val.txt:1");
    /* a missing image */
    write_text(p, "images_variant_val.txt", "1000002 707-320\n1234567 707-320\n");
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_IO);
    CHECK_ERR_HAS("images/1234567.jpg");
    CHECK_ERR_HAS("images_variant_val.txt");
    write_text(p, "images_variant_val.txt", "1000002 707-320\n");
    /* a variant without training images */
    write_text(p, "variants.txt", "707-320\nCessna 172\nF-16A/B\nA340-500\n");
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("A340-500");
    /* a repeated variant; no variants.txt */
    write_text(p, "variants.txt", "707-320\nCessna 172\n707-320\n");
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("variants.txt:3");
    snprintf(p, sizeof p, "%s/fgvc_aircraft/variants.txt", root);
    CHECK(remove(p) == 0);
    CHECK(open_fail("fgvc-aircraft", root, "fgvc_aircraft") == CT_ERR_IO);
    CHECK_ERR_HAS("variants.txt: missing");
}

/* ---- other class sets and the transfer protocols on the shipped model ---- */

static char out_buf[1 << 16];

static int run(const char *cmdline) {
    char full[16384];
    snprintf(full, sizeof full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out_buf, 1, sizeof out_buf - 1, p);
    out_buf[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
    char *t = NULL;
    size_t n = 0;
    if (ct_read_file(path, &t, &n) == CT_OK) return t;
    CHECK_MSG(false, "%s", ct_last_error());
    return NULL;
}

static void test_transfer(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    ct_splits fsp;
    CHECK_OK(ct_data_open("fashion-mnist", &fsp));
    if (!fsp.test) return;
    fm = fsp.test;
    char root[4096], cmd[16384], path[4400];
    const char *tmp = ct_test_tmpdir();
    snprintf(root, sizeof root, "%s/fm", tmp);
    make_imagenet_family(root, 10, fsp.test->classnames, 4, 8);
    /* a target with other class names (FGVC-Aircraft's layout) */
    static const char *const v[4] = {"trousers", "dress", "sneakers", "handbag"};
    static const int cls[4] = {1, 3, 7, 8};
    make_fgvc(root, 4, v, cls, 6);
    fm = NULL;
    ct_splits_free(&fsp);

    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data imagenet:%s/imagenet --methods zeroshot,coop,"
             "linear-probe --shots 2 --seeds 1,2 --out %s/xd --cache %s/xd_cache --set "
             "coop.epochs=2 --targets imagenetv2:%s/imagenetv2,imagenet-sketch:%s/"
             "imagenet-sketch,imagenet-a:%s/imagenet-adversarial,imagenet-r:%s/"
             "imagenet-rendition --target fgvc-aircraft:%s/fgvc_aircraft",
             root, tmp, tmp, root, root, root, root, root);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    CHECK_MSG(strstr(out_buf, "-> ImageNetA: ") && strstr(out_buf, "-> FGVCAircraft: n/a"),
              "%s", out_buf);
    snprintf(path, sizeof path, "%s/xd/results.md", tmp);
    char *md = slurp(path);
    CHECK_MSG(md && strstr(md, "## Cross-dataset transfer") &&
                  strstr(md, "| method | shots | source | ImageNetV2 | ImageNetSketch | "
                         "ImageNetA | ImageNetR | FGVCAircraft | average |") &&
                  strstr(md, "| coop | 2 |") && strstr(md, "| zeroshot | 2 |") &&
                  strstr(md, "linear-probe on FGVCAircraft: ") && strstr(md, "per class"),
              "%s", md ? md : "");
    /* linear-probe: scored on -A/-R by restricted logits, n/a on other names */
    const char *lp = md ? strstr(md, "| linear-probe | 2 |") : NULL;
    CHECK_MSG(lp && strstr(lp, "n/a | n/a |\n"), "%s", lp ? lp : "");
    free(md);
    snprintf(path, sizeof path, "%s/xd/results.json", tmp);
    char *js = slurp(path);
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    free(js);
    const cJSON *tr = j ? cJSON_GetObjectItemCaseSensitive(j, "transfer") : NULL;
    CHECK(cJSON_IsArray(tr) && cJSON_GetArraySize(tr) == 3);
    const cJSON *row = cJSON_GetArrayItem(tr, 1); /* coop */
    const cJSON *tg = row ? cJSON_GetObjectItemCaseSensitive(row, "targets") : NULL;
    CHECK(cJSON_IsArray(tg) && cJSON_GetArraySize(tg) == 5);
    double avg = 0;
    for (int i = 0; i < 5 && cJSON_IsArray(tg); i++) {
        const cJSON *x = cJSON_GetArrayItem(tg, i);
        CHECK(cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= 1);
        avg += cJSON_IsNumber(x) ? x->valuedouble / 5 : 0;
    }
    const cJSON *av = row ? cJSON_GetObjectItemCaseSensitive(row, "average") : NULL;
    CHECK(cJSON_IsNumber(av) && fabs(av->valuedouble - avg) < 1e-9);
    cJSON_Delete(j);
    /* zero-shot on another dataset is zero-shot CLIP there, with the
     * target's prompt template (FGVCAircraft's "a type of aircraft"), as
     * CoOp's cross-dataset evaluation: the number a zero-shot run on it gets */
    char zcmd[8192];
    snprintf(zcmd, sizeof zcmd, CT_CLI_PATH " zeroshot --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fgvc-aircraft:%s/fgvc_aircraft --out %s/zs_fgvc "
             "--cache %s/xd_cache", root, tmp, tmp);
    CHECK_MSG(run(zcmd) == 0, "%s", out_buf);
    double want = NAN, got = NAN;
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, k ? "%s/xd/zeroshot/0shot/seed1/target5-FGVCAircraft/"
                 "target.json" : "%s/zs_fgvc/metrics.json", tmp);
        char *t = slurp(path);
        cJSON *x = t ? cJSON_Parse(t) : NULL;
        const cJSON *val = x ? cJSON_GetObjectItemCaseSensitive(x, "top1") : NULL;
        if (cJSON_IsNumber(val)) *(k ? &got : &want) = val->valuedouble;
        cJSON_Delete(x);
        free(t);
    }
    CHECK_MSG(want == got, "zero-shot on FGVCAircraft: %g in the protocol, %g as a run", got,
              want);

    /* resumed: every cell and every target read back */
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "skipped: done") && !strstr(out_buf, "(0."),
              "%s", out_buf);
    /* the four ImageNet variants alone: CoOp's domain-generalisation table,
     * from the same (finished) target evaluations */
    char *dg = strstr(cmd, " --target fgvc");
    if (dg) *dg = 0;
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/xd/results.md", tmp);
    md = slurp(path);
    CHECK_MSG(md && strstr(md, "## Domain generalisation") && !strstr(md, "FGVCAircraft"), "%s",
              md ? md : "");
    free(md);

    /* eval --data: a subset of the classes (restricted logits), other names */
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/xd/linear-probe/2shot/seed1 --data "
             "imagenet-a:%s/imagenet-adversarial --cache none", tmp, root);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "classes: 5 of the run's 10"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/xd/coop/2shot/seed1 --data "
             "fgvc-aircraft:%s/fgvc_aircraft --cache none", tmp, root);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "classes: 4 others"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/xd/linear-probe/2shot/seed1 --data "
             "fgvc-aircraft:%s/fgvc_aircraft --cache none", tmp, root);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "cliptune: error:") &&
                  strstr(out_buf, "per class"), "%s", out_buf);

    /* the library: restricted evaluation is the argmax of the run's own
     * probabilities over the subset's classes */
    snprintf(path, sizeof path, "%s/xd/linear-probe/2shot/seed1", tmp);
    ct_saved_run *r = ct_saved_run_open(path);
    CHECK(r != NULL);
    if (!r) return;
    char spec[4200];
    snprintf(spec, sizeof spec, "imagenet-a:%s/imagenet-adversarial", root);
    ct_splits a;
    CHECK_OK(ct_data_open(spec, &a));
    CHECK(ct_saved_run_class_relation(r, a.test) == 1);
    CHECK_OK(ct_saved_run_attach(r, NULL));
    ct_metrics m = {0};
    CHECK_OK(ct_saved_run_evaluate(r, a.test, spec, NULL, NULL, &m));
    int64_t n = a.test->n_items;
    float *pr = malloc((size_t)n * 10 * sizeof *pr);
    CHECK_OK(ct_saved_run_predict(r, a.test, NULL, pr));
    int right = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = -1;
        for (int c = 0; c < a.test->n_classes; c++) {
            int k = 2 * c + 1; /* -A holds the odd classes */
            if (best < 0 || pr[i * 10 + k] > pr[i * 10 + 2 * best + 1]) best = c;
        }
        right += best == a.test->items[i].label;
    }
    CHECK_NEAR("restricted top-1", m.top1, (double)right / (double)n, 1e-12, 0);
    CHECK(m.n_classes == 5);
    ct_metrics_free(&m);
    free(pr);
    ct_saved_run_free(r);
    /* set_classes with other names: a per-class method is refused even when
     * the class count is the run's */
    r = ct_saved_run_open(path);
    const char *ten[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    CHECK_OK(ct_saved_run_set_classes(r, ten, 10));
    CHECK(ct_saved_run_attach(r, NULL) == CT_ERR_UNSUPPORTED);
    CHECK_ERR_HAS("per class");
    ct_saved_run_free(r);
    /* Tip-Adapter's cache: its labels are the run's classes, whatever the
     * shapes (refused too); -A by restricted logits works */
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method tip-adapter --model " CT_SOURCE_DIR
             "/models/cliptune-small --data imagenet:%s/imagenet --shots 2 --out %s/tip "
             "--cache %s/xd_cache", root, tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/tip", tmp);
    r = ct_saved_run_open(path);
    CHECK_OK(ct_saved_run_set_classes(r, ten, 10));
    CHECK(ct_saved_run_attach(r, NULL) == CT_ERR_UNSUPPORTED);
    CHECK_ERR_HAS("labelled with the run's classes");
    ct_saved_run_free(r);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/tip --data imagenet-r:%s/"
             "imagenet-rendition --cache %s/xd_cache", tmp, root, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "classes: 5 of the run's 10"), "%s", out_buf);
    ct_splits_free(&a);
}

/* Arguments name the tests to run (e.g. the loaders alone under valgrind);
 * none: all. */
int main(int argc, char **argv) {
    static const struct {
        const char *name;
        ct_test_fn fn;
    } tests[] = {{"imagenet_family", test_imagenet_family},
                 {"fgvc_aircraft", test_fgvc_aircraft},
                 {"transfer", test_transfer}};
    for (size_t t = 0; t < sizeof tests / sizeof *tests; t++) {
        bool want = argc < 2;
        for (int i = 1; i < argc; i++) want = want || !strcmp(argv[i], tests[t].name);
        if (want) ct_test_run(tests[t].name, tests[t].fn);
    }
    return ct_test_summary();
}
