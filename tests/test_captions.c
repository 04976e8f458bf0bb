/* Caption corpora (src/data/captions.c): CSV parsing (RFC 4180 quoting,
 * several captions per image, merging, sorting), folder mode with .txt
 * files, every error naming its file and line, and the held-out split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#include "cliptune.h"
#include "data/captions.h"

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* tmpdir/rel with every folder level created. */
static const char *path_in(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    for (char *p = buf + strlen(ct_test_tmpdir()) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0777);
            *p = '/';
        }
    return buf;
}

static void write_bytes(const char *rel, const char *data, size_t n) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *rel, const char *text) { write_bytes(rel, text, strlen(text)); }

/* Existence is all the reader checks; a tiny PPM keeps the files honest. */
static void write_image(const char *rel) { write_text(rel, "P6\n1 1\n255\n\x01\x02\x03"); }

static const char *tmp(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    return buf;
}

static int64_t n_caps(const ct_caption_set *s, int64_t i) {
    return s->cap_off[i + 1] - s->cap_off[i];
}

static const char *cap(const ct_caption_set *s, int64_t i, int64_t k) {
    return s->captions[s->cap_off[i] + k];
}

/* Path i ends with suffix. */
static bool path_ends(const ct_caption_set *s, int64_t i, const char *suffix) {
    size_t a = strlen(s->paths[i]), b = strlen(suffix);
    return a >= b && strcmp(s->paths[i] + a - b, suffix) == 0;
}

/* ---- CSV ---------------------------------------------------------------- */

static void test_csv_parse(void) {
    char p[2048], absimg[2048], csv[8192];
    write_image("csv/img/a.ppm");
    write_image("csv/img/b,1.ppm");
    write_image("csv/img/c.ppm");
    write_image("outside/z.ppm");
    tmp(absimg, sizeof absimg, "outside/z.ppm");
    snprintf(csv, sizeof csv,
             "\xEF\xBB\xBFpath,caption\r\n"
             "img/c.ppm,a cat\r\n"
             "\n"
             "   \n"
             "\"img/b,1.ppm\",\"a caption, with a comma\"\n"
             "img/a.ppm,first of a\n"
             "img/a.ppm,\"second of a, \"\"quoted\"\"\nover two lines\"\n"
             "./img//a.ppm ,   third of a   \n"
             "%s,  outside the root\n"
             "img/c.ppm,\"  a cat again  \"", absimg);
    write_text("csv/caps.csv", csv);
    ct_caption_set s;
    CHECK_OK(ct_captions_open(tmp(p, sizeof p, "csv/caps.csv"), &s));
    CHECK(s.n_images == 4);
    if (s.n_images != 4) {
        ct_captions_free(&s);
        return;
    }
    CHECK(s.cap_off[0] == 0 && s.cap_off[4] == 7);
    /* Sorted by resolved path: the absolute one is under tmpdir/outside, the
     * others under tmpdir/csv, so csv/... first. */
    CHECK(path_ends(&s, 0, "/csv/img/a.ppm"));
    CHECK(path_ends(&s, 1, "/csv/img/b,1.ppm"));
    CHECK(path_ends(&s, 2, "/csv/img/c.ppm"));
    CHECK(strcmp(s.paths[3], absimg) == 0);
    CHECK(strstr(s.paths[0], "/./") == NULL && strstr(s.paths[0], "//") == NULL);
    CHECK(n_caps(&s, 0) == 3);
    CHECK(strcmp(cap(&s, 0, 0), "first of a") == 0);
    CHECK_MSG(strcmp(cap(&s, 0, 1), "second of a, \"quoted\"\nover two lines") == 0, "got [%s]",
              cap(&s, 0, 1));
    CHECK(strcmp(cap(&s, 0, 2), "third of a") == 0);
    CHECK(n_caps(&s, 1) == 1 && strcmp(cap(&s, 1, 0), "a caption, with a comma") == 0);
    CHECK(n_caps(&s, 2) == 2 && strcmp(cap(&s, 2, 0), "a cat") == 0 &&
          strcmp(cap(&s, 2, 1), "a cat again") == 0);
    CHECK(n_caps(&s, 3) == 1 && strcmp(cap(&s, 3, 0), "outside the root") == 0);
    CHECK(strlen(s.root) > 4 && strcmp(s.root + strlen(s.root) - 4, "/csv") == 0);
    /* Every resolved path opens as is. */
    for (int64_t i = 0; i < s.n_images; i++) {
        ct_image img;
        CHECK_OK(ct_image_load(s.paths[i], &img));
        ct_image_free(&img);
    }
    ct_captions_free(&s);
    ct_captions_free(&s); /* zeroed: a no-op */
    ct_captions_free(NULL);

    /* Another header spelling and the csv: prefix. */
    write_text("csv/alt.csv", "Image,Text\nimg/a.ppm,x\n");
    char spec[2100];
    snprintf(spec, sizeof spec, "csv:%s", tmp(p, sizeof p, "csv/alt.csv"));
    CHECK_OK(ct_captions_open(spec, &s));
    CHECK(s.n_images == 1 && s.cap_off[1] == 1);
    ct_captions_free(&s);
}

/* One malformed CSV: the open fails with status st, naming file:line and
 * the given words. */
static void expect_csv_error(const char *name, const char *text, ct_status st, int line,
                             const char *word) {
    char rel[256], p[2048], where[2200];
    snprintf(rel, sizeof rel, "csv/%s.csv", name);
    write_text(rel, text);
    ct_caption_set s;
    ct_status got = ct_captions_open(tmp(p, sizeof p, rel), &s);
    CHECK_MSG(got == st, "%s: status %s, want %s (%s)", name, ct_status_str(got),
              ct_status_str(st), ct_last_error());
    CHECK(s.n_images == 0 && s.paths == NULL);
    if (line > 0)
        snprintf(where, sizeof where, "%s:%d:", p, line);
    else
        snprintf(where, sizeof where, "%s:", p);
    CHECK_ERR_HAS(where);
    CHECK_ERR_HAS(word);
}

static void test_csv_errors(void) {
    write_image("csv/img/a.ppm");
    expect_csv_error("noheader", "img/a.ppm,a cat\n", CT_ERR_FORMAT, 1, "header");
    expect_csv_error("badheader", "\n\nfile,label\nimg/a.ppm,x\n", CT_ERR_FORMAT, 3, "header");
    expect_csv_error("onefield", "path,caption\nimg/a.ppm,x\nimg/a.ppm\n", CT_ERR_FORMAT, 3,
                     "got 1");
    expect_csv_error("threefields", "path,caption\nimg/a.ppm,a cat, sitting\n", CT_ERR_FORMAT,
                     2, "quote captions");
    expect_csv_error("emptycap", "path,caption\nimg/a.ppm,x\n\nimg/a.ppm,   \n", CT_ERR_FORMAT,
                     4, "empty caption");
    expect_csv_error("emptyquoted", "path,caption\nimg/a.ppm,\"  \"\n", CT_ERR_FORMAT, 2,
                     "empty caption");
    expect_csv_error("emptypath", "path,caption\n,x\n", CT_ERR_FORMAT, 2, "empty path");
    expect_csv_error("unterminated",
                     "path,caption\nimg/a.ppm,x\nimg/a.ppm,\"y\"\nimg/a.ppm,\"open\nmore\n",
                     CT_ERR_FORMAT, 4, "unterminated");
    expect_csv_error("afterquote", "path,caption\nimg/a.ppm,\"multi\nline\" junk\n",
                     CT_ERR_FORMAT, 3, "after a closing quote");
    expect_csv_error("missing",
                     "path,caption\nimg/a.ppm,x\nimg/nope.ppm,y\nimg/nope2.ppm,z\n"
                     "img/nope.ppm,w\n",
                     CT_ERR_IO, 3, "2 images missing");
    expect_csv_error("headeronly", "path,caption\n", CT_ERR_FORMAT, 0, "no captions");
    expect_csv_error("empty", "", CT_ERR_FORMAT, 0, "empty file");
    {
        char p[2048];
        write_bytes("csv/nul.csv", "path,caption\nimg/a.ppm,x\0y\n", 25);
        ct_caption_set s;
        CHECK(ct_captions_open(tmp(p, sizeof p, "csv/nul.csv"), &s) == CT_ERR_FORMAT);
        CHECK_ERR_HAS("NUL");
        CHECK(ct_captions_open(tmp(p, sizeof p, "csv/absent.csv"), &s) == CT_ERR_IO);
        CHECK_ERR_HAS("absent.csv");
        CHECK(ct_captions_open("", &s) == CT_ERR_ARG);
        CHECK(ct_captions_open(NULL, &s) == CT_ERR_ARG);
        CHECK(ct_captions_open("x", NULL) == CT_ERR_ARG);
    }
}

/* ---- folder --------------------------------------------------------------- */

static void test_folder(void) {
    char p[2048];
    write_image("fold/b.png");
    write_text("fold/b.txt", "\xEF\xBB\xBF" "a blue thing\r\n\r\n  another caption  \r\n");
    write_image("fold/sub/a.jpg");
    write_text("fold/sub/a.txt", "one\n");
    write_image("fold/sub/deeper/c.PPM");
    write_text("fold/sub/deeper/c.txt", "\n\nlast line without newline");
    write_text("fold/README.txt", "not a caption file\n");
    write_image("fold/.hidden.png"); /* skipped, and has no .txt */
    write_image("fold/.hid/d.png");
    ct_caption_set s;
    CHECK_OK(ct_captions_open(tmp(p, sizeof p, "fold"), &s));
    CHECK(s.n_images == 3);
    if (s.n_images == 3) {
        CHECK(path_ends(&s, 0, "/fold/b.png"));
        CHECK(path_ends(&s, 1, "/fold/sub/a.jpg"));
        CHECK(path_ends(&s, 2, "/fold/sub/deeper/c.PPM"));
        CHECK(n_caps(&s, 0) == 2 && strcmp(cap(&s, 0, 0), "a blue thing") == 0 &&
              strcmp(cap(&s, 0, 1), "another caption") == 0);
        CHECK(n_caps(&s, 1) == 1 && strcmp(cap(&s, 1, 0), "one") == 0);
        CHECK(n_caps(&s, 2) == 1 && strcmp(cap(&s, 2, 0), "last line without newline") == 0);
    }
    ct_captions_free(&s);
    char spec[2100];
    snprintf(spec, sizeof spec, "folder:%s/", tmp(p, sizeof p, "fold"));
    CHECK_OK(ct_captions_open(spec, &s));
    CHECK(s.n_images == 3);
    ct_captions_free(&s);

    /* An image without its .txt; a .txt with only blank lines. */
    write_image("fold2/x.png");
    write_text("fold2/x.txt", "fine\n");
    write_image("fold2/y.bmp");
    CHECK(ct_captions_open(tmp(p, sizeof p, "fold2"), &s) == CT_ERR_IO);
    CHECK_ERR_HAS("fold2/y.bmp");
    CHECK_ERR_HAS("y.txt");
    write_text("fold2/y.txt", " \n\t\n");
    CHECK(ct_captions_open(tmp(p, sizeof p, "fold2"), &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("fold2/y.txt");
    CHECK_ERR_HAS("no captions");
    mkdir(path_in(p, sizeof p, "fold3/empty/x"), 0777);
    CHECK(ct_captions_open(tmp(p, sizeof p, "fold3"), &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("no images");
}

/* ---- split ------------------------------------------------------------------ */

/* n synthetic images "root/img%05d.png" (skip one index), 2 captions each. */
static void make_set(ct_caption_set *s, int n, int skip) {
    memset(s, 0, sizeof *s);
    s->root = strdup("/data/corpus");
    s->paths = calloc((size_t)n, sizeof *s->paths);
    s->cap_off = calloc((size_t)n + 1, sizeof *s->cap_off);
    s->captions = calloc((size_t)n * 2, sizeof *s->captions);
    char buf[128];
    for (int i = 0, k = 0; i < n + (skip >= 0); i++) {
        if (i == skip) continue;
        snprintf(buf, sizeof buf, "/data/corpus/img%05d.png", i);
        s->paths[k] = strdup(buf);
        snprintf(buf, sizeof buf, "caption %d a", i);
        s->captions[2 * k] = strdup(buf);
        snprintf(buf, sizeof buf, "caption %d b", i);
        s->captions[2 * k + 1] = strdup(buf);
        s->cap_off[k + 1] = 2 * (k + 1);
        s->n_images = ++k;
    }
}

static bool in_set(const ct_caption_set *s, const char *path) {
    for (int64_t i = 0; i < s->n_images; i++)
        if (strcmp(s->paths[i], path) == 0) return true;
    return false;
}

static void test_split(void) {
    const int n = 2000;
    ct_caption_set all, tr, ho, tr2, ho2;
    make_set(&all, n, -1);
    CHECK_OK(ct_captions_split(&all, 0.1, &tr, &ho));
    CHECK(tr.n_images + ho.n_images == n);
    CHECK_MSG(ho.n_images > 140 && ho.n_images < 260, "held out %lld of %d at 10%%",
              (long long)ho.n_images, n);
    /* Disjoint, covering, order kept, captions travel with their image. */
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < all.n_images; i++) {
        bool t = a < tr.n_images && strcmp(tr.paths[a], all.paths[i]) == 0;
        bool h = b < ho.n_images && strcmp(ho.paths[b], all.paths[i]) == 0;
        CHECK_MSG(t != h, "image %lld in %s", (long long)i, t ? "both" : "neither");
        const ct_caption_set *side = t ? &tr : &ho;
        int64_t j = t ? a++ : b++;
        if (t == h) break;
        CHECK(n_caps(side, j) == 2 && strcmp(cap(side, j, 1), all.captions[2 * i + 1]) == 0);
    }
    CHECK(strcmp(tr.root, all.root) == 0 && strcmp(ho.root, all.root) == 0);
    /* Stable: the same split again; and with one image removed, every other
     * image keeps its side. */
    CHECK_OK(ct_captions_split(&all, 0.1, &tr2, &ho2));
    CHECK(tr2.n_images == tr.n_images && ho2.n_images == ho.n_images);
    for (int64_t i = 0; i < ho.n_images && i < ho2.n_images; i++)
        CHECK(strcmp(ho.paths[i], ho2.paths[i]) == 0);
    ct_captions_free(&tr2);
    ct_captions_free(&ho2);
    ct_caption_set fewer;
    make_set(&fewer, n - 1, 17);
    CHECK_OK(ct_captions_split(&fewer, 0.1, &tr2, &ho2));
    for (int64_t i = 0; i < ho2.n_images; i++) CHECK(in_set(&ho, ho2.paths[i]));
    CHECK(ho2.n_images == ho.n_images || ho2.n_images == ho.n_images - 1);
    ct_captions_free(&tr2);
    ct_captions_free(&ho2);
    ct_captions_free(&fewer);
    /* The hash is of the path relative to root: moving the corpus keeps it. */
    {
        ct_caption_set moved;
        make_set(&moved, n, -1);
        for (int64_t i = 0; i < moved.n_images; i++) {
            char buf[128];
            snprintf(buf, sizeof buf, "/elsewhere/c2/img%05lld.png", (long long)i);
            free(moved.paths[i]);
            moved.paths[i] = strdup(buf);
        }
        free(moved.root);
        moved.root = strdup("/elsewhere/c2");
        CHECK_OK(ct_captions_split(&moved, 0.1, &tr2, &ho2));
        CHECK(ho2.n_images == ho.n_images);
        for (int64_t i = 0; i < ho.n_images && i < ho2.n_images; i++)
            CHECK(strcmp(strrchr(ho.paths[i], '/'), strrchr(ho2.paths[i], '/')) == 0);
        ct_captions_free(&tr2);
        ct_captions_free(&ho2);
        ct_captions_free(&moved);
    }
    ct_captions_free(&tr);
    ct_captions_free(&ho);

    /* Edges: 0 and 1, tiny corpora, bad fractions. */
    CHECK_OK(ct_captions_split(&all, 0.0, &tr, &ho));
    CHECK(tr.n_images == n && ho.n_images == 0);
    ct_captions_free(&tr);
    ct_captions_free(&ho);
    CHECK_OK(ct_captions_split(&all, 1.0, &tr, &ho));
    CHECK(tr.n_images == 0 && ho.n_images == n && ho.cap_off[n] == 2 * n);
    ct_captions_free(&tr);
    ct_captions_free(&ho);
    ct_caption_set two;
    make_set(&two, 2, -1);
    CHECK_OK(ct_captions_split(&two, 1e-6, &tr, &ho));
    CHECK(tr.n_images == 1 && ho.n_images == 1);
    ct_captions_free(&tr);
    ct_captions_free(&ho);
    CHECK_OK(ct_captions_split(&two, 0.999999, &tr, &ho));
    CHECK(tr.n_images == 1 && ho.n_images == 1);
    ct_captions_free(&tr);
    ct_captions_free(&ho);
    ct_captions_free(&two);
    CHECK(ct_captions_split(&all, 1.5, &tr, &ho) == CT_ERR_ARG);
    CHECK(ct_captions_split(&all, -0.1, &tr, &ho) == CT_ERR_ARG);
    CHECK(ct_captions_split(&all, 0.0 / 0.0, &tr, &ho) == CT_ERR_ARG);
    CHECK(tr.n_images == 0 && ho.n_images == 0);
    ct_captions_free(&all);
}

/* The split of a corpus read from disk: stable across two opens. */
static void test_split_from_disk(void) {
    char p[2048], rel[64];
    char csv[16384] = "path,caption\n";
    for (int i = 0; i < 60; i++) {
        snprintf(rel, sizeof rel, "disk/i%02d.ppm", i);
        write_image(rel);
        size_t len = strlen(csv);
        snprintf(csv + len, sizeof csv - len, "i%02d.ppm,image %d\n", i, i);
    }
    write_text("disk/caps.csv", csv);
    ct_caption_set a, b, tr[2], ho[2];
    CHECK_OK(ct_captions_open(tmp(p, sizeof p, "disk/caps.csv"), &a));
    CHECK_OK(ct_captions_open(tmp(p, sizeof p, "disk/caps.csv"), &b));
    CHECK_OK(ct_captions_split(&a, 0.25, &tr[0], &ho[0]));
    CHECK_OK(ct_captions_split(&b, 0.25, &tr[1], &ho[1]));
    CHECK(ho[0].n_images == ho[1].n_images && ho[0].n_images > 0 && tr[0].n_images > 0);
    for (int64_t i = 0; i < ho[0].n_images && i < ho[1].n_images; i++)
        CHECK(strcmp(ho[0].paths[i], ho[1].paths[i]) == 0);
    for (int k = 0; k < 2; k++) {
        ct_captions_free(&tr[k]);
        ct_captions_free(&ho[k]);
    }
    ct_captions_free(&a);
    ct_captions_free(&b);
}

int main(void) {
    RUN(test_csv_parse);
    RUN(test_csv_errors);
    RUN(test_folder);
    RUN(test_split);
    RUN(test_split_from_disk);
    return ct_test_summary();
}
