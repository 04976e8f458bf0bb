/* End-to-end tests of experiments: the feature cache (library), and the
 * cliptune binary's zeroshot / train / protocol / eval / predict on a tiny
 * generated folder dataset (3 classes of 12 small PPM images: 8 train, 4
 * test) with a small random CLIP written as a Hugging Face folder with the
 * CLIP BPE vocabulary's ids (tests/fixtures/bpe/clip_subset). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "base/json.h"
#include "cliptune.h"
#include "harness.h"
#include "train/features.h"

static char out_buf[1 << 18];

/* Run a shell command line, capture stdout+stderr, return the exit code. */
static int run(const char *cmdline) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out_buf, 1, sizeof out_buf - 1, p);
    out_buf[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool exists(const char *dir, const char *name) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && st.st_size > 0;
}

/* ---- fixtures ---- */

static const char *const CLASSES[3] = {"blue_checks", "green_stripes", "red_bars"};

/* One image of class c, variant v (flip: a different picture of the same
 * kind), as binary PPM. The class is a pattern (checks, stripes, bars) with a
 * colour leaning per class, over a random colour per image, so that the
 * random model separates the classes only partly: accuracies land strictly
 * between chance and 100% and the checks below compare non-trivial numbers. */
static void write_ppm(const char *path, int c, int v, bool flip) {
    enum { W = 40, H = 36 };
    static unsigned char px[W * H * 3];
    uint32_t lcg = 12345u + 977u * (uint32_t)(c * 100 + v) + (flip ? 55u : 0u);
    int col[3];
    for (int k = 0; k < 3; k++) {
        lcg = lcg * 1664525u + 1013904223u;
        col[k] = 70 + (int)(lcg >> 25) + (k == c ? 25 : 0);
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int on = c == 0   ? (x / 5 + y / 5 + v) & 1
                     : c == 1 ? ((x + v) / 3) & 1
                              : ((y + v) / 4) & 1;
            if (flip) on = !on;
            for (int k = 0; k < 3; k++) {
                lcg = lcg * 1664525u + 1013904223u;
                int val = col[k] * (on ? 6 : 5) / 5 + (int)(lcg >> 26);
                px[(y * W + x) * 3 + k] = (unsigned char)(val > 255 ? 255 : val);
            }
        }
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    fprintf(f, "P6\n%d %d\n255\n", W, H);
    fwrite(px, 1, sizeof px, f);
    fclose(f);
}

/* DIR/{train,test}/<class>/img_NN.ppm: 8 + 4 per class, n_classes classes. */
static void make_dataset(const char *dir, int n_classes) {
    char p[4200];
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < n_classes; c++) {
            snprintf(p, sizeof p, "mkdir -p '%s/%s/%s'", dir, s ? "test" : "train", CLASSES[c]);
            CHECK(system(p) == 0);
            for (int i = 0; i < (s ? 4 : 8); i++) {
                snprintf(p, sizeof p, "%s/%s/%s/img_%02d.ppm", dir, s ? "test" : "train",
                         CLASSES[c], s * 8 + i);
                write_ppm(p, c, s * 8 + i, false);
            }
        }
}

static ct_clip_config tiny_config(void) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 32, c.patch_size = 8, c.vision_width = 32, c.vision_layers = 1;
    c.vision_heads = 2, c.vision_mlp = 64, c.context_length = 77, c.vocab_size = 49408;
    c.text_width = 32, c.text_layers = 1, c.text_heads = 2, c.text_mlp = 64, c.embed_dim = 16;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_FIRST_ID, c.eot_id = 49407;
    return c;
}

/* The tiny CLIP as an HF folder with the tests' part of the real
 * vocabulary. */
static const char *model_dir(void) {
    static char dir[4096];
    if (dir[0]) return dir;
    const char *bpe = ct_test_clip_bpe();
    snprintf(dir, sizeof dir, "%s/tinyclip", ct_test_tmpdir());
    ct_clip_config c = tiny_config();
    ct_clip *m = ct_clip_create(&c, 7);
    CHECK_OK(ct_clip_save_hf(m, dir));
    ct_clip_free(m);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cp %s/vocab.json %s/merges.txt %s/", bpe,
             bpe, dir);
    CHECK(system(cmd) == 0);
    return dir;
}

static const char *data_dir(void) {
    static char dir[4096];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/shapes", ct_test_tmpdir());
        make_dataset(dir, 3);
    }
    return dir;
}

/* "--model M --data folder:D --cache C" for the CLI calls. */
static const char *common(void) {
    static char s[8192];
    snprintf(s, sizeof s, "--model %s --data folder:%s --cache %s/cache", model_dir(),
             data_dir(), ct_test_tmpdir());
    return s;
}

static double json_top1(const char *path) {
    cJSON *j = ct_json_load(path);
    double v = NAN;
    CHECK_MSG(j && ct_json_get_double(j, "top1", &v, path) == CT_OK, "%s: %s", path,
              ct_last_error());
    cJSON_Delete(j);
    return v;
}

/* Rows of predictions.csv and the fraction whose label equals pred. */
static int64_t csv_rows(const char *path, double *acc) {
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &text, &n));
    if (!text) return -1;
    int64_t rows = 0, ok = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    CHECK(line && !strcmp(line, "item,label,pred,confidence,label_name,pred_name"));
    while ((line = strtok_r(NULL, "\n", &save))) {
        char item[1024];
        int label = -1, pred = -2;
        CHECK_MSG(sscanf(line, "%1023[^,],%d,%d,", item, &label, &pred) == 3, "%s: bad row %s",
                  path, line);
        rows++;
        ok += label == pred;
    }
    free(text);
    *acc = rows ? (double)ok / (double)rows : NAN;
    return rows;
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool same = ct_read_file(a, &x, &nx) == CT_OK && ct_read_file(b, &y, &ny) == CT_OK &&
                nx == ny && !memcmp(x, y, nx);
    free(x), free(y);
    return same;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* ---- library: the feature cache ---- */

static void test_feature_cache(void) {
    char dir[4200], cache[4200], spec[4300], cmd[8700];
    snprintf(dir, sizeof dir, "%s/cachedata", ct_test_tmpdir());
    snprintf(cache, sizeof cache, "%s/featcache", ct_test_tmpdir());
    make_dataset(dir, 3);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", cache);
    CHECK(system(cmd) == 0);
    snprintf(spec, sizeof spec, "folder:%s", dir);
    ct_splits sp;
    CHECK_OK(ct_data_open(spec, &sp));
    if (!sp.test) return;
    ct_clip_config c = tiny_config();
    ct_clip *m = ct_clip_create(&c, 3);
    ct_preprocess_cfg pre;
    ct_preprocess_cfg_openai(&pre, c.image_size);
    ct_feature_req req = {.clip = m, .pre = &pre, .data = sp.test, .seed = 1, .cache_dir = cache,
                          .batch = 5};
    ct_features a = {0}, b = {0}, x = {0};
    CHECK_OK(ct_features_get(&req, &a));
    CHECK(a.n == 12 && a.dim == 16);
    CHECK(count_files(cache) == 1);
    /* the one entry, to see whether the second call rewrites it */
    char entry[4500] = "";
    DIR *d = opendir(cache);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') snprintf(entry, sizeof entry, "%s/%s", cache, e->d_name);
    if (d) closedir(d);
    struct stat s1, s2;
    CHECK(stat(entry, &s1) == 0);
    CHECK_OK(ct_features_get(&req, &b));
    CHECK(stat(entry, &s2) == 0);
    CHECK_MSG(b.n == a.n && !memcmp(a.x, b.x, (size_t)a.n * a.dim * sizeof(float)) &&
                  !memcmp(a.labels, b.labels, (size_t)a.n * sizeof(int)),
              "cached features differ from computed ones");
    /* read, not recomputed: an atomic rewrite would be a new inode */
    CHECK(count_files(cache) == 1);
    CHECK(s1.st_ino == s2.st_ino && s1.st_mtim.tv_sec == s2.st_mtim.tv_sec &&
          s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec);
    /* the same file, other bytes: a new key, new features for it alone */
    int64_t changed = -1;
    for (int64_t i = 0; i < sp.test->n_items; i++)
        if (strstr(sp.test->items[i].path, "green_stripes/img_09.ppm")) changed = i;
    CHECK(changed >= 0);
    char path[4500];
    snprintf(path, sizeof path, "%s/test/green_stripes/img_09.ppm", dir);
    write_ppm(path, 1, 9, true);
    CHECK_OK(ct_features_get(&req, &x));
    CHECK(count_files(cache) == 2);
    for (int64_t i = 0; x.n == a.n && changed >= 0 && i < a.n; i++) {
        bool same = !memcmp(a.x + i * a.dim, x.x + i * a.dim, (size_t)a.dim * sizeof(float));
        CHECK_MSG(same == (i != changed), "item %lld: features %s", (long long)i,
                  same ? "unchanged by a new image" : "changed by another item's image");
    }
    ct_features_free(&a), ct_features_free(&b), ct_features_free(&x);
    ct_clip_free(m);
    ct_splits_free(&sp);
}

/* ---- CLI: runs ---- */

static char zs_dir[4200], lp_dir[4200];

static void test_zeroshot_and_train(void) {
    if (!model_dir()) return;
    const char *files[7] = {"config.json", "metrics.json", "predictions.csv", "log.txt",
                            "report.md", "confusion.svg", "learned.safetensors"};
    char c[16384], dir2[4200], path[4400], path2[4400];
    snprintf(zs_dir, sizeof zs_dir, "%s/runs/zs", ct_test_tmpdir());
    snprintf(lp_dir, sizeof lp_dir, "%s/runs/lp", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " zeroshot %s --out %s", common(), zs_dir);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " train --method linear-probe --shots 4 %s --out %s",
             common(), lp_dir);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    const char *dirs[2] = {zs_dir, lp_dir};
    for (int r = 0; r < 2; r++) {
        for (int f = 0; f < 7; f++)
            CHECK_MSG(exists(dirs[r], files[f]), "%s: no %s", dirs[r], files[f]);
        double acc = NAN;
        snprintf(path, sizeof path, "%s/predictions.csv", dirs[r]);
        CHECK(csv_rows(path, &acc) == 12); /* one per test image */
        snprintf(path, sizeof path, "%s/metrics.json", dirs[r]);
        CHECK_NEAR("top1 = correct rows / rows", json_top1(path), acc, 1e-12, 0);
        /* the class names eval and predict rely on */
        snprintf(path, sizeof path, "%s/config.json", dirs[r]);
        cJSON *cfg = ct_json_load(path);
        const cJSON *cn = cJSON_GetObjectItemCaseSensitive(cfg, "classnames");
        CHECK(cJSON_GetArraySize(cn) == 3 &&
              !strcmp(cJSON_GetArrayItem(cn, 2)->valuestring, "red bars"));
        cJSON_Delete(cfg);
    }
    /* determinism: the same run again, features recomputed (no cache) */
    snprintf(dir2, sizeof dir2, "%s/runs/lp2", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " train --method linear-probe --shots 4 %s --cache none "
             "--out %s", common(), dir2);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/metrics.json", lp_dir);
    snprintf(path2, sizeof path2, "%s/metrics.json", dir2);
    CHECK_MSG(same_file(path, path2), "metrics.json differs between identical runs");
    snprintf(path, sizeof path, "%s/predictions.csv", lp_dir);
    snprintf(path2, sizeof path2, "%s/predictions.csv", dir2);
    CHECK_MSG(same_file(path, path2), "predictions.csv differs between identical runs");
    /* a literal template: spaces, a comma and quotes reach the method whole */
    snprintf(dir2, sizeof dir2, "%s/runs/zs-literal", ct_test_tmpdir());
    snprintf(c, sizeof c,
             CT_CLI_PATH " zeroshot %s --set 'templates=a photo, of \"{}\".' --out %s",
             common(), dir2);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/config.json", dir2);
    cJSON *lit = ct_json_load(path);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(lit, "hyper_parameters");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(hp, "templates");
    CHECK(cJSON_IsString(tm) && !strcmp(tm->valuestring, "a photo, of \"{}\"."));
    cJSON_Delete(lit);
    /* errors */
    snprintf(c, sizeof c, CT_CLI_PATH " train --method linear-probe --shots 4 %s --set bogus=1 "
             "--out %s/runs/bad", common(), ct_test_tmpdir());
    CHECK_MSG(run(c) != 0 && strstr(out_buf, "cliptune: error:") && strstr(out_buf, "bogus"),
              "%s", out_buf);
    /* ... before any image is encoded, and range errors name their key */
    CHECK_MSG(!strstr(out_buf, "features"), "keys checked after the features: %s", out_buf);
    const char *bad_sets[3][2] = {{"batch_size=2e9", "batch_size"}, {"aug_views=100000000",
                                  "aug_views=100000000"}, {"n_ctx=0", "n_ctx"}};
    for (int k = 0; k < 3; k++) {
        snprintf(c, sizeof c, CT_CLI_PATH " train --method coop --shots 4 %s --set %s "
                 "--cache none --out %s/runs/bad%d", common(), bad_sets[k][0], ct_test_tmpdir(), k);
        CHECK_MSG(run(c) != 0 && strstr(out_buf, bad_sets[k][1]) && !strstr(out_buf, "features"),
                  "%s: %s", bad_sets[k][0], out_buf);
    }
    /* a finished run is not replaced unless asked (--force), nor are eval
     * folders of the old run left behind then */
    snprintf(c, sizeof c, CT_CLI_PATH " train --method linear-probe --shots 4 %s --out %s",
             common(), lp_dir);
    CHECK_MSG(run(c) != 0 && strstr(out_buf, "cliptune: error:") &&
                  strstr(out_buf, "holds a finished run"), "%s", out_buf);
    snprintf(path, sizeof path, "%s/eval-old", lp_dir);
    mkdir(path, 0777);
    snprintf(path2, sizeof path2, "%s/eval-old/metrics.json", lp_dir);
    FILE *fo = fopen(path2, "w");
    if (fo) fputs("{}\n", fo), fclose(fo);
    snprintf(c, sizeof c, CT_CLI_PATH " train --method linear-probe --shots 4 %s --out %s --force",
             common(), lp_dir);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    CHECK_MSG(!exists(lp_dir, "eval-old") && exists(lp_dir, "metrics.json"),
              "--force left the old run's eval folder");
    snprintf(c, sizeof c, CT_CLI_PATH " train --method nope %s", common());
    CHECK_MSG(run(c) != 0 && strstr(out_buf, "cliptune: error:") && strstr(out_buf, "nope"),
              "%s", out_buf);
}

static void test_protocol(void) {
    if (!model_dir()) return;
    char c[16384], out[4200], path[4400];
    snprintf(out, sizeof out, "%s/proto", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " protocol %s --methods zeroshot,linear-probe --shots 1,2 "
             "--seeds 1,2 --out %s", common(), out);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    /* zeroshot once + linear-probe 2 x 2 */
    CHECK_MSG(strstr(out_buf, "[5/5] linear-probe 2-shot seed 2: ") && !strstr(out_buf, "[6/"),
              "%s", out_buf);
    char *md = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/results.md", out);
    CHECK_OK(ct_read_file(path, &md, &n));
    CHECK_MSG(md && strstr(md, "| zeroshot |") && strstr(md, "| linear-probe |") &&
                  strstr(md, "| 1 shot |") && strstr(md, "| 2 shots |") &&
                  strstr(md, "training-free"),
              "results.md:\n%s", md ? md : "");
    free(md);
    CHECK(exists(out, "accuracy_vs_shots.svg") && exists(out, "results.json"));
    CHECK(exists(out, "zeroshot/0shot/seed1/metrics.json"));
    CHECK(exists(out, "linear-probe/2shot/seed2/learned.safetensors"));
    /* results.json: the summary's mean is the mean of its cells */
    snprintf(path, sizeof path, "%s/results.json", out);
    cJSON *j = ct_json_load(path);
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(j, "cells");
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(j, "summary");
    CHECK(cJSON_GetArraySize(cells) == 5 && cJSON_GetArraySize(sum) == 4);
    double lp2 = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cells) {
        if (!strcmp(cJSON_GetObjectItem(e, "method")->valuestring, "linear-probe") &&
            cJSON_GetObjectItem(e, "shots")->valuedouble == 2)
            lp2 += cJSON_GetObjectItem(e, "top1")->valuedouble / 2;
    }
    CHECK_NEAR("linear-probe 2-shot mean",
               cJSON_GetObjectItem(cJSON_GetArrayItem(sum, 3), "mean")->valuedouble, lp2, 1e-12,
               0);
    cJSON_Delete(j);
    /* a re-run finds every cell done and changes none of them */
    struct stat s1, s2;
    snprintf(path, sizeof path, "%s/linear-probe/1shot/seed2/metrics.json", out);
    CHECK(stat(path, &s1) == 0);
    double t0 = now_s();
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    double dt = now_s() - t0;
    int lines = 0, skipped = 0;
    for (char *p = strstr(out_buf, "\n["); p; p = strstr(p + 1, "\n[")) lines++;
    for (char *p = strstr(out_buf, "(skipped: done)"); p; p = strstr(p + 1, "(skipped: done)"))
        skipped++;
    CHECK_MSG(lines == 5 && skipped == 5, "re-run:\n%s", out_buf);
    CHECK(stat(path, &s2) == 0 && s1.st_ino == s2.st_ino &&
          s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec);
    CHECK_MSG(dt < 5.0, "re-run took %.1f s", dt);
    /* other settings into the same directory are refused, not mixed in */
    snprintf(c, sizeof c, CT_CLI_PATH " protocol %s --methods linear-probe --shots 1 --seeds 1 "
             "--set linear-probe.C=0.5 --out %s", common(), out);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "other settings") && strstr(out_buf, "C: 0 there"),
              "%s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " protocol %s --out %s", common(), out);
    CHECK_MSG(run(c) == 2 && strstr(out_buf, "cliptune: error: protocol: no --methods"), "%s",
              out_buf);
}

/* ---- CLI: using a finished run ---- */

static void test_eval(void) {
    if (!model_dir()) return;
    char c[16384], path[4400], path2[4400];
    const char *dirs[2] = {lp_dir, zs_dir};
    for (int r = 0; r < 2; r++) {
        snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --cache %s/cache", dirs[r],
                 ct_test_tmpdir());
        CHECK_MSG(run(c) == 0 && strstr(out_buf, "top-1"), "%s", out_buf);
        snprintf(path, sizeof path, "%s/metrics.json", dirs[r]);
        snprintf(path2, sizeof path2, "%s/eval-shapes/metrics.json", dirs[r]);
        double want = json_top1(path), got = json_top1(path2);
        CHECK_MSG(got == want, "%s: eval top-1 %.17g, the run's %.17g", dirs[r], got, want);
        /* the same predictions, to the last digit */
        snprintf(path, sizeof path, "%s/predictions.csv", dirs[r]);
        snprintf(path2, sizeof path2, "%s/eval-shapes/predictions.csv", dirs[r]);
        CHECK_MSG(same_file(path, path2), "%s: eval predictions differ from the run's", dirs[r]);
        CHECK(exists(dirs[r], "eval-shapes/report.md"));
    }
    /* a dataset with two of the run's classes: scored by restricting the
     * logits to them; with other class names: refused for the linear probe,
     * whose learned tensors are per class */
    char other[4200];
    snprintf(other, sizeof other, "%s/two", ct_test_tmpdir());
    make_dataset(other, 2);
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --data folder:%s --cache none", lp_dir,
             other);
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "classes: 2 of the run's 3"), "%s", out_buf);
    snprintf(c, sizeof c, "printf 'cyan\\nmagenta\\n' > %s/classnames.txt", other);
    CHECK(system(c) == 0);
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --data folder:%s --cache none", lp_dir,
             other);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "cliptune: error: eval:") &&
                  strstr(out_buf, "per class"),
              "%s", out_buf);
    /* a run made with relative paths is evaluated from another directory:
     * config.json records them absolute (and the model's hash) */
    data_dir();
    snprintf(c, sizeof c, "cd %s && " CT_CLI_PATH " train --method linear-probe --shots 4 "
             "--model tinyclip --data folder:shapes --cache none --out relrun", ct_test_tmpdir());
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/relrun/config.json", ct_test_tmpdir());
    cJSON *cj = ct_json_load(path);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(cj, "model");
    const cJSON *dd = cJSON_GetObjectItemCaseSensitive(cj, "data");
    const cJSON *mh = cJSON_GetObjectItemCaseSensitive(cj, "model_hash");
    CHECK(cJSON_IsString(md) && md->valuestring[0] == '/' && cJSON_IsString(dd) &&
          !strncmp(dd->valuestring, "folder:/", 8) && cJSON_IsString(mh) &&
          strlen(mh->valuestring) == 16);
    cJSON_Delete(cj);
    snprintf(c, sizeof c, "cd / && " CT_CLI_PATH " eval --run %s/relrun --cache none",
             ct_test_tmpdir());
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "top-1"), "%s", out_buf);
    /* a recorded path that is gone: the error says where it came from */
    snprintf(c, sizeof c, "(cd %s && mv shapes shapes_moved && " CT_CLI_PATH " eval --run relrun "
             "--cache none; r=$?; mv shapes_moved shapes; exit $r)", ct_test_tmpdir());
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "config.json") && strstr(out_buf, "--data"),
              "%s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s/nowhere", ct_test_tmpdir());
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "cliptune: error: eval:") &&
                  strstr(out_buf, "nowhere/config.json"),
              "%s", out_buf);
}

static void test_predict(void) {
    if (!model_dir()) return;
    char c[16384], img[2][4300], path[4400];
    snprintf(img[0], sizeof img[0], "%s/test/blue_checks/img_08.ppm", data_dir());
    snprintf(img[1], sizeof img[1], "%s/test/red_bars/img_11.ppm", data_dir());
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s %s %s", lp_dir, img[0], img[1]);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    /* the run's prediction for each image, from its predictions.csv */
    char *csv = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/predictions.csv", lp_dir);
    CHECK_OK(ct_read_file(path, &csv, &n));
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(out_buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (lines >= 2) {
            CHECK_MSG(false, "more lines than images: %s", line);
            break;
        }
        CHECK_MSG(!strncmp(line, img[lines], strlen(img[lines])) &&
                      line[strlen(img[lines])] == '\t',
                  "line %d: %s", lines, line);
        const char *label = line + strlen(img[lines]) + 1;
        double sum = 0;
        int entries = 0;
        for (char *e = strchr(line, '='); e; e = strchr(e + 1, '=')) sum += atof(e + 1), entries++;
        CHECK(entries == 3);
        CHECK_NEAR("probabilities sum", sum, 1.0, 2e-3, 0);
        /* "test/<class>/img_NN.ppm,label,pred,conf,label_name,pred_name" */
        const char *rel = img[lines] + strlen(data_dir()) + 1;
        const char *row = csv ? strstr(csv, rel) : NULL;
        char pred_name[256] = "";
        if (row) sscanf(row, "%*[^,],%*d,%*d,%*[^,],%*[^,],%255[^\n]", pred_name);
        CHECK_MSG(row && !strncmp(label, pred_name, strlen(pred_name)) &&
                      label[strlen(pred_name)] == '\t',
                  "predict says %s, the run's predictions.csv %s", label, pred_name);
        lines++;
    }
    CHECK(lines == 2);
    free(csv);
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s --top 1 %s", zs_dir, img[0]);
    CHECK_MSG(run(c) == 0 && strchr(out_buf, '=') == strrchr(out_buf, '='), "%s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s", lp_dir);
    CHECK_MSG(run(c) == 2 && strstr(out_buf, "cliptune: error: predict: no images"), "%s",
              out_buf);
    /* a run whose learned tensors give NaN: refused, not printed as "nan" */
    char nan_dir[4200], cmd2[9000];
    snprintf(nan_dir, sizeof nan_dir, "%s/runs/lp_nan", ct_test_tmpdir());
    snprintf(cmd2, sizeof cmd2, "rm -rf '%s' && cp -r '%s' '%s'", nan_dir, lp_dir, nan_dir);
    CHECK(system(cmd2) == 0);
    snprintf(path, sizeof path, "%s/learned.safetensors", nan_dir);
    ct_safetensors *lst = ct_safetensors_open(path);
    CHECK(lst != NULL);
    int nt = lst ? ct_safetensors_count(lst) : 0;
    ct_st_entry ents[16];
    char tnames[16][128];
    float *bufs[16] = {0};
    int ne = 0;
    for (int i = 0; i < nt && ne < 16; i++) {
        const ct_st_tensor *t = ct_safetensors_at(lst, i);
        if (t->dtype != CT_F32) continue;
        size_t numel = t->nbytes / 4;
        bufs[ne] = malloc((numel ? numel : 1) * sizeof(float));
        for (size_t k = 0; k < numel; k++) bufs[ne][k] = NAN;
        snprintf(tnames[ne], sizeof tnames[ne], "%s", t->name);
        ents[ne] = (ct_st_entry){tnames[ne], CT_F32, t->ndim, t->shape, bufs[ne]};
        ne++;
    }
    CHECK(ne > 0);
    const char *meta[2] = {"method", "linear-probe"};
    CHECK_OK(ct_safetensors_write(path, ents, ne, meta, 1));
    ct_safetensors_close(lst);
    for (int i = 0; i < ne; i++) free(bufs[i]);
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s %s", nan_dir, img[0]);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "cliptune: error: predict") &&
                  strstr(out_buf, "non-finite") && !strstr(out_buf, "nan\t"), "%s", out_buf);
}


/* Reloading a run exactly, and the CLI's habits: the model is loaded as
 * config.json records it (tokenizer override, activation) and another model
 * is refused; --opt=value, help CMD, exit status 2 for usage errors, --json,
 * predict over a folder and a list, progress lines on a non-terminal. */
static void test_reload_and_habits(void) {
    if (!model_dir()) return;
    char c[16384], path[4400], run2[4300];
    const char *bpe = ct_test_clip_bpe();
    /* trained with the tokenizer given explicitly (--bpe over the folder's) */
    snprintf(run2, sizeof run2, "%s/bperun", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " train --method=linear-probe --shots=4 %s --bpe=%s/vocab.json "
             "--out=%s", common(), bpe, run2);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/config.json", run2);
    cJSON *cj = ct_json_load(path);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(cj, "bpe");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cj, "act");
    CHECK(cJSON_IsString(b) && b->valuestring[0] == '/' && strstr(b->valuestring, "vocab.json"));
    CHECK(cJSON_IsString(a) && !strcmp(a->valuestring, "quick_gelu"));
    cJSON_Delete(cj);
    /* the learned tensors are named and carry what they mean */
    snprintf(path, sizeof path, "%s/learned.safetensors", run2);
    ct_safetensors *st = ct_safetensors_open(path);
    CHECK(st != NULL);
    if (st) {
        CHECK(ct_safetensors_meta(st, "model_hash") && ct_safetensors_meta(st, "hyper_parameters"));
        CHECK(ct_safetensors_count(st) > 0 &&
              strncmp(ct_safetensors_at(st, 0)->name, "param.", 6) != 0);
        ct_safetensors_close(st);
    }
    /* eval reloads it as recorded: the run's own top-1, as JSON */
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --cache none --json", run2);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    cJSON *ej = cJSON_Parse(out_buf);
    const cJSON *t1 = ej ? cJSON_GetObjectItemCaseSensitive(ej, "top1") : NULL;
    snprintf(path, sizeof path, "%s/metrics.json", run2);
    CHECK_MSG(cJSON_IsNumber(t1) && t1->valuedouble == json_top1(path), "%s", out_buf);
    cJSON_Delete(ej);
    /* --act for an HF folder that says otherwise: refused, not ignored */
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --cache none --act gelu", run2);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "config.json says quick_gelu"), "%s", out_buf);
    /* another model (same shapes, other weights): refused, naming both */
    char other[4300];
    snprintf(other, sizeof other, "%s/tinyclip_other", ct_test_tmpdir());
    ct_clip_config cc = tiny_config();
    ct_clip *m = ct_clip_create(&cc, 8);
    CHECK_OK(ct_clip_save_hf(m, other));
    ct_clip_free(m);
    snprintf(c, sizeof c, "cp %s/vocab.json %s/merges.txt %s/", bpe, bpe, other);
    CHECK(system(c) == 0);
    snprintf(c, sizeof c, CT_CLI_PATH " eval --run %s --cache none --model %s", run2, other);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "is not the one the run") &&
                  strstr(out_buf, "tinyclip_other"), "%s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s --model %s %s", run2, other,
             data_dir());
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "is not the one the run"), "%s", out_buf);
    /* the same weights with another preprocessing: refused too */
    char repre[4300];
    snprintf(repre, sizeof repre, "%s/tinyclip_repre", ct_test_tmpdir());
    snprintf(c, sizeof c, "rm -rf %s && cp -r %s %s && sed -i 's/0.48145466/0.5/' "
             "%s/preprocessor_config.json && grep -q '0.5,' %s/preprocessor_config.json",
             repre, model_dir(), repre, repre, repre);
    CHECK_MSG(system(c) == 0, "%s", c);
    snprintf(c, sizeof c, CT_CLI_PATH " eval -r %s --cache none -m %s", run2, repre);
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "image preprocessing"), "%s", out_buf);
    /* short options */
    snprintf(c, sizeof c, CT_CLI_PATH " eval -r %s --cache=none -m%s", run2, model_dir());
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "top-1"), "%s", out_buf);
    /* predict over a folder (sorted, recursive) and a list, as JSON */
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s --json --top=2 %s/test", run2,
             data_dir());
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    cJSON *pj = cJSON_Parse(out_buf);
    int np = cJSON_GetArraySize(pj);
    CHECK_MSG(cJSON_IsArray(pj) && np > 3, "%s", out_buf);
    const cJSON *first = cJSON_GetArrayItem(pj, 0);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(first, "top");
    CHECK(cJSON_GetArraySize(top) == 2);
    const cJSON *p0 = cJSON_GetObjectItemCaseSensitive(first, "path");
    char listf[4400];
    snprintf(listf, sizeof listf, "%s/list.txt", ct_test_tmpdir());
    FILE *f = fopen(listf, "w");
    if (f && cJSON_IsString(p0)) fprintf(f, "%s\n", p0->valuestring), fclose(f);
    else if (f) fclose(f);
    snprintf(c, sizeof c, CT_CLI_PATH " predict --run %s --list %s", run2, listf);
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(first, "label");
    CHECK_MSG(run(c) == 0 && cJSON_IsString(lab) && strstr(out_buf, lab->valuestring) &&
                  strchr(out_buf, '\n') == strrchr(out_buf, '\n'), "%s", out_buf);
    cJSON_Delete(pj);
    /* help CMD, usage errors exit 2, runtime failures 1 */
    CHECK(run(CT_CLI_PATH " help eval") == 0 && strstr(out_buf, "usage: cliptune eval"));
    CHECK(run(CT_CLI_PATH " help nonsense") == 2);
    CHECK(run(CT_CLI_PATH " eval --run") == 2);
    CHECK(run(CT_CLI_PATH " predict --run x --top=zero y") == 2);
    CHECK(run(CT_CLI_PATH " eval --run /nonexistent") == 1);
    /* export in the official layout: CoOp's prompt_learner state dict */
    char coop_dir[4300], coop_st[4400];
    snprintf(coop_dir, sizeof coop_dir, "%s/cooprun", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " train --method coop --shots 2 --set epochs=1 "
             "--set n_ctx=4 %s --out %s", common(), coop_dir);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(coop_st, sizeof coop_st, "%s/coop.safetensors", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " export --run %s --out %s", coop_dir, coop_st);
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "KaiyangZhou/CoOp"), "%s", out_buf);
    st = ct_safetensors_open(coop_st);
    CHECK(st != NULL);
    if (st) {
        const ct_st_tensor *ctx = ct_safetensors_find(st, "ctx");
        /* coop.py: ctx_vectors = torch.empty(n_ctx, ctx_dim) (unified context) */
        CHECK(ct_safetensors_count(st) == 1 && ctx && ctx->ndim == 2 && ctx->shape[0] == 4 &&
              ctx->shape[1] == 32);
        const char *sd = ct_safetensors_meta(st, "state_dict_of");
        CHECK(sd && !strcmp(sd, "prompt_learner"));
        /* the same numbers as the run's learned tensor */
        snprintf(path, sizeof path, "%s/learned.safetensors", coop_dir);
        ct_safetensors *ls = ct_safetensors_open(path);
        const ct_st_tensor *lc = ls ? ct_safetensors_find(ls, "ctx") : NULL;
        CHECK(lc && ctx && lc->nbytes == ctx->nbytes && !memcmp(lc->data, ctx->data, lc->nbytes));
        ct_safetensors_close(ls);
        ct_safetensors_close(st);
    }
    /* import, the reverse: the exported file gives the same run back */
    char imp_dir[4300];
    snprintf(imp_dir, sizeof imp_dir, "%s/imported", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " import --from %s --method coop --set n_ctx=4 %s --out %s",
             coop_st, common(), imp_dir);
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "imported 1 learned tensor"), "%s", out_buf);
    char p1[4400], p2[4400];
    snprintf(p1, sizeof p1, "%s/predictions.csv", coop_dir);
    snprintf(p2, sizeof p2, "%s/predictions.csv", imp_dir);
    CHECK_MSG(same_file(p1, p2), "imported run's predictions differ from the trained run's");
    /* a released-style Dassl checkpoint written by torch.save (zip format) */
    snprintf(imp_dir, sizeof imp_dir, "%s/imported_pth", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " import --from " CT_SOURCE_DIR "/tests/fixtures/torch/"
             "coop.pth --method coop --set n_ctx=4 %s --out %s", common(), imp_dir);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/learned.safetensors", imp_dir);
    st = ct_safetensors_open(path);
    const ct_st_tensor *ictx = st ? ct_safetensors_find(st, "ctx") : NULL;
    /* the fixture's ctx (tools/ref/gen_torch_ckpt.py; tests/fixtures/torch/
     * torch_ckpt_ref.h has its values: first -0x1.22a1ap-9, last 0x1.3b4fb4p-7) */
    CHECK(ictx && ictx->ndim == 2 && ictx->shape[0] == 4 && ictx->shape[1] == 32);
    float iv[128] = {0};
    CHECK(ictx && ct_st_to_real(ictx, iv, 128) == CT_OK && iv[0] == -0x1.22a1ap-9f &&
          iv[127] == 0x1.3b4fb4p-7f);
    if (st) ct_safetensors_close(st);
    snprintf(path, sizeof path, "%s/config.json", imp_dir);
    cj = ct_json_load(path);
    const cJSON *ifrom = cJSON_GetObjectItemCaseSensitive(cj, "imported_from");
    CHECK(cJSON_IsString(ifrom) && strstr(ifrom->valuestring, "coop.pth"));
    cJSON_Delete(cj);
    /* other hyper-parameters than the checkpoint's: refused, naming the shapes */
    snprintf(c, sizeof c, CT_CLI_PATH " import --from " CT_SOURCE_DIR "/tests/fixtures/torch/"
             "coop.pth --method coop --set n_ctx=16 %s --out %s/imp_bad", common(),
             ct_test_tmpdir());
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "(4, 32)") && strstr(out_buf, "n_ctx"), "%s",
              out_buf);
    /* a method without an official layout: refused, naming those that have one */
    snprintf(c, sizeof c, CT_CLI_PATH " export --run %s --out %s/lp.safetensors", run2,
             ct_test_tmpdir());
    CHECK_MSG(run(c) == 1 && strstr(out_buf, "no official checkpoint layout"), "%s", out_buf);
    /* a non-terminal gets plain progress lines */
    snprintf(c, sizeof c, "CLIPTUNE_PROGRESS_SECONDS=0 " CT_CLI_PATH " eval --run %s "
             "--cache none", run2);
    CHECK_MSG(run(c) == 0 && strstr(out_buf, "progress: features"), "%s", out_buf);
}

int main(void) {
    RUN(test_feature_cache);
    RUN(test_zeroshot_and_train);
    RUN(test_protocol);
    RUN(test_eval);
    RUN(test_predict);
    RUN(test_reload_and_habits);
    return ct_test_summary();
}
