/* File layer: mmap, atomic writes, safetensors, .npy and JSON helpers. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "cliptune.h"
#include "harness.h"

/* ---- helpers ------------------------------------------------------------ */

/* A fresh directory under the test tmpdir, so listings see only one test's
 * files. Returns a static buffer (one per call site is enough here). */
static const char *subdir(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), name);
    mkdir(buf, 0777);
    return buf;
}

static const char *join(char *buf, size_t n, const char *dir, const char *file) {
    snprintf(buf, n, "%s/%s", dir, file);
    return buf;
}

/* Written with stdio, independently of the code under test. */
static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static bool file_equals(const char *path, const void *want, size_t n) {
    char *got;
    size_t size;
    if (ct_read_file(path, &got, &size) != CT_OK) return false;
    bool eq = size == n && memcmp(got, want, n) == 0;
    free(got);
    return eq;
}

/* Number of entries in dir other than . and ..; also whether any looks like
 * a leftover temp file. */
static int count_entries(const char *dir, bool *has_tmp) {
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot list %s", dir);
    if (!d) return -1;
    int n = 0;
    *has_tmp = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (strstr(e->d_name, ".tmp.")) *has_tmp = true;
        n++;
    }
    closedir(d);
    return n;
}

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* ---- raw files ---------------------------------------------------------- */

static void test_mmap(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("mmap", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "hello.bin");
    CHECK_OK(ct_write_file_atomic(path, "hello\0world", 11));

    ct_mmap m;
    CHECK_OK(ct_mmap_open(&m, path));
    CHECK(m.size == 11);
    CHECK(m.data && memcmp(m.data, "hello\0world", 11) == 0);
    ct_mmap_close(&m);
    CHECK(m.data == NULL && m.size == 0);
    ct_mmap_close(&m); /* twice is harmless */
    ct_mmap_close(NULL);

    join(pbuf, sizeof pbuf, dir, "empty.bin");
    write_raw(pbuf, "", 0);
    CHECK_OK(ct_mmap_open(&m, pbuf));
    CHECK(m.data == NULL && m.size == 0);
    ct_mmap_close(&m);

    CHECK(ct_mmap_open(&m, dir) == CT_ERR_IO);
    CHECK_ERR_HAS("directory");
    CHECK_ERR_HAS(dir);

    join(pbuf, sizeof pbuf, dir, "missing.bin");
    CHECK(ct_mmap_open(&m, pbuf) == CT_ERR_IO);
    CHECK_ERR_HAS("missing.bin");
    CHECK_ERR_HAS("No such file");
    CHECK(m.data == NULL && m.size == 0);
}

static void test_read_file(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("read", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "a.txt");
    /* Larger than any initial guess, to exercise growth. */
    size_t n = 200000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    write_raw(path, big, n);
    char *got = NULL;
    size_t size = 0;
    CHECK_OK(ct_read_file(path, &got, &size));
    CHECK(size == n);
    CHECK(got && memcmp(got, big, n) == 0 && got[n] == '\0');
    free(got);
    free(big);

    join(pbuf, sizeof pbuf, dir, "empty.txt");
    write_raw(pbuf, "", 0);
    CHECK_OK(ct_read_file(pbuf, &got, &size));
    CHECK(size == 0 && got && got[0] == '\0');
    free(got);

    CHECK(ct_read_file(dir, &got, &size) == CT_ERR_IO);
    CHECK(got == NULL);
}

static void test_atomic_replace(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("atomic", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "out.txt");
    CHECK_OK(ct_write_file_atomic(path, "old content, rather long", 24));
    CHECK_OK(ct_write_file_atomic(path, "new", 3));
    CHECK(file_equals(path, "new", 3));
    CHECK_OK(ct_write_file_atomic(path, NULL, 0));
    CHECK(file_equals(path, "", 0));

    /* Incremental: many small writes and writes larger than any buffer. */
    size_t n = 300000;
    uint8_t *want = malloc(n);
    for (size_t i = 0; i < n; i++) want[i] = (uint8_t)(i * 7 + i / 251);
    ct_atomic_file *f = ct_atomic_open(path);
    CHECK(f != NULL);
    size_t off = 0;
    for (int i = 0; i < 1000; i++, off += 3) CHECK_OK(ct_atomic_write(f, want + off, 3));
    CHECK_OK(ct_atomic_write(f, want + off, 150000));
    off += 150000;
    CHECK_OK(ct_atomic_write(f, want + off, 0));
    CHECK_OK(ct_atomic_write(f, want + off, n - off));
    /* Before commit the destination still holds the previous content. */
    CHECK(file_equals(path, "", 0));
    CHECK_OK(ct_atomic_commit(f));
    CHECK(file_equals(path, want, n));
    free(want);

    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 1);
    CHECK(!has_tmp);

    /* A directory that does not exist: IO error naming the path and errno. */
    join(pbuf, sizeof pbuf, dir, "no/such/dir/x.bin");
    CHECK(ct_write_file_atomic(pbuf, "x", 1) == CT_ERR_IO);
    CHECK_ERR_HAS("no/such/dir/x.bin");
    CHECK_ERR_HAS("No such file");
    CHECK(ct_atomic_open(pbuf) == NULL);
    CHECK(count_entries(dir, &has_tmp) == 1 && !has_tmp);
}

static void test_atomic_abort(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("abort", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "keep.txt");
    CHECK_OK(ct_write_file_atomic(path, "original", 8));
    ct_atomic_file *f = ct_atomic_open(path);
    CHECK(f != NULL);
    CHECK_OK(ct_atomic_write(f, "replacement", 11));
    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 2 && has_tmp); /* temp exists meanwhile */
    ct_atomic_abort(f);
    ct_atomic_abort(NULL);
    CHECK(file_equals(path, "original", 8));
    CHECK(count_entries(dir, &has_tmp) == 1);
    CHECK(!has_tmp);

    /* Abort of a file that never existed leaves nothing behind. */
    join(pbuf, sizeof pbuf, dir, "never.txt");
    f = ct_atomic_open(pbuf);
    CHECK(f != NULL);
    ct_atomic_abort(f);
    CHECK(count_entries(dir, &has_tmp) == 1 && !has_tmp);
}

/* A write that fails part-way (file size limit -> EFBIG) must report the
 * path and errno, keep the old content and leave no temp file. */
static void test_atomic_write_failure(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("efbig", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "ckpt.bin");
    CHECK_OK(ct_write_file_atomic(path, "old", 3));

    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) != 0) {
        ct_test_skip("getrlimit failed");
        return;
    }
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 100000;
    if (setrlimit(RLIMIT_FSIZE, &small) != 0) {
        signal(SIGXFSZ, old_handler);
        ct_test_skip("setrlimit failed");
        return;
    }
    size_t n = 300000;
    char *big = calloc(1, n);
    ct_status s1 = ct_write_file_atomic(path, big, n);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", ct_last_error());

    /* Incremental writer: the failing write reports; commit then refuses. */
    ct_atomic_file *f = ct_atomic_open(path);
    ct_status s2 = CT_OK;
    for (int i = 0; i < 10 && s2 == CT_OK; i++) s2 = ct_atomic_write(f, big, n / 10);
    ct_status s3 = ct_atomic_commit(f);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    free(big);

    CHECK(s1 == CT_ERR_IO);
    CHECK_MSG(strstr(msg1, "ckpt.bin") && strstr(msg1, "File too large"), "message: %s", msg1);
    CHECK(s2 == CT_ERR_IO);
    CHECK(s3 == CT_ERR_IO);
    CHECK_ERR_HAS("earlier write");
    CHECK(file_equals(path, "old", 3));
    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 1);
    CHECK(!has_tmp);
}

/* ---- safetensors -------------------------------------------------------- */

static uint16_t f32_to_bf16_trunc(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)(b >> 16);
}

static void test_st_roundtrip(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("st", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "model.safetensors");

    float w[6] = {1.5f, -2.25f, 3.0f, 0.1f, -1e-20f, 65536.0f};
    int64_t w_shape[2] = {2, 3};
    uint8_t odd[3] = {7, 8, 9}; /* pushes later tensors off alignment */
    int64_t odd_shape[1] = {3};
    uint16_t h[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001}; /* 1, -2, 65504, 2^-24 */
    int64_t h_shape[1] = {4};
    float bsrc[4] = {1.0f, -3.0f, 0.5f, 1024.0f};
    uint16_t bf[4];
    for (int i = 0; i < 4; i++) bf[i] = f32_to_bf16_trunc(bsrc[i]);
    int64_t bf_shape[2] = {2, 2};
    int64_t scalar = -1234567890123LL;
    int64_t empty_shape[2] = {0, 5};
    int32_t i32[2] = {-7, 1 << 30};
    int64_t i32_shape[1] = {2};

    ct_st_entry e[] = {
        {"vision.proj.weight", CT_F32, 2, w_shape, w},
        {"odd_bytes", CT_U8, 1, odd_shape, odd},
        {"half", CT_F16, 1, h_shape, h},
        {"brain", CT_BF16, 2, bf_shape, bf},
        {"step", CT_I64, 0, NULL, &scalar},
        {"empty", CT_F32, 2, empty_shape, NULL},
        {"ints", CT_I32, 1, i32_shape, i32},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    const char *meta[] = {"format", "pt", "note", "quote \" and \\ and\nnewline"};
    CHECK_OK(ct_safetensors_write(path, e, n, meta, 2));

    /* The data section starts 8-aligned, and the header is plain JSON. */
    ct_mmap m;
    CHECK_OK(ct_mmap_open(&m, path));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && m.size >= 8; i--) hlen = hlen << 8 | m.data[i];
    CHECK((8 + hlen) % 8 == 0);
    CHECK(m.size >= 8 && m.data[8] == '{');
    ct_mmap_close(&m);

    ct_safetensors *st = ct_safetensors_open(path);
    CHECK_MSG(st != NULL, "open: %s", ct_last_error());
    if (!st) return;
    CHECK(ct_safetensors_count(st) == n);
    for (int i = 0; i < n && i < ct_safetensors_count(st); i++) {
        const ct_st_tensor *t = ct_safetensors_at(st, i);
        CHECK_MSG(strcmp(t->name, e[i].name) == 0, "tensor %d is %s, expected %s", i, t->name,
                  e[i].name);
        CHECK(t->dtype == e[i].dtype);
        CHECK(t->ndim == e[i].ndim);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == e[i].shape[d]);
            numel *= (size_t)t->shape[d];
        }
        CHECK(t->nbytes == numel * ct_dtype_size(t->dtype));
        CHECK(t->nbytes == 0 || memcmp(t->data, e[i].data, t->nbytes) == 0);
        CHECK(ct_safetensors_find(st, e[i].name) == t);
    }
    CHECK(ct_safetensors_at(st, n) == NULL);
    CHECK(ct_safetensors_at(st, -1) == NULL);
    CHECK(ct_safetensors_find(st, "nope") == NULL);
    CHECK(ct_safetensors_find(st, "") == NULL);
    const char *v = ct_safetensors_meta(st, "format");
    CHECK(v && strcmp(v, "pt") == 0);
    v = ct_safetensors_meta(st, "note");
    CHECK(v && strcmp(v, meta[3]) == 0);
    CHECK(ct_safetensors_meta(st, "missing") == NULL);

    ct_real out[6];
    const ct_st_tensor *t = ct_safetensors_find(st, "vision.proj.weight");
    CHECK_OK(ct_st_to_real(t, out, 6));
    for (int i = 0; i < 6; i++) CHECK(out[i] == (ct_real)w[i]);
    t = ct_safetensors_find(st, "half");
    CHECK_OK(ct_st_to_real(t, out, 4));
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 65504 && out[3] == (ct_real)0x1p-24);
    t = ct_safetensors_find(st, "brain");
    CHECK_OK(ct_st_to_real(t, out, 4));
    for (int i = 0; i < 4; i++) CHECK(out[i] == (ct_real)bsrc[i]);
    t = ct_safetensors_find(st, "empty");
    CHECK_OK(ct_st_to_real(t, NULL, 0));

    t = ct_safetensors_find(st, "step");
    CHECK(ct_st_to_real(t, out, 1) == CT_ERR_UNSUPPORTED);
    CHECK_ERR_HAS("step");
    t = ct_safetensors_find(st, "half");
    CHECK(ct_st_to_real(t, out, 3) == CT_ERR_ARG);
    CHECK_ERR_HAS("half");
    ct_safetensors_close(st);
    ct_safetensors_close(NULL);
    CHECK(ct_safetensors_count(NULL) == 0);

    /* No tensors, no metadata: still a valid file. */
    join(pbuf, sizeof pbuf, dir, "nothing.safetensors");
    CHECK_OK(ct_safetensors_write(pbuf, NULL, 0, NULL, 0));
    st = ct_safetensors_open(pbuf);
    CHECK_MSG(st != NULL, "open: %s", ct_last_error());
    CHECK(ct_safetensors_count(st) == 0);
    CHECK(ct_safetensors_find(st, "x") == NULL);
    ct_safetensors_close(st);

    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 2 && !has_tmp);
}

static void test_st_write_errors(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("stw", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "bad.safetensors");
    float x[2] = {1, 2};
    int64_t shape[1] = {2}, neg[1] = {-2};
    ct_st_entry dup[] = {{"a", CT_F32, 1, shape, x}, {"b", CT_F32, 1, shape, x},
                         {"a", CT_F32, 1, shape, x}};
    CHECK(ct_safetensors_write(path, dup, 3, NULL, 0) == CT_ERR_ARG);
    CHECK_ERR_HAS("duplicate");
    ct_st_entry empty[] = {{"", CT_F32, 1, shape, x}};
    CHECK(ct_safetensors_write(path, empty, 1, NULL, 0) == CT_ERR_ARG);
    CHECK_ERR_HAS("empty name");
    ct_st_entry nodata[] = {{"a", CT_F32, 1, shape, NULL}};
    CHECK(ct_safetensors_write(path, nodata, 1, NULL, 0) == CT_ERR_ARG);
    CHECK_ERR_HAS("NULL data");
    ct_st_entry negshape[] = {{"a", CT_F32, 1, neg, x}};
    CHECK(ct_safetensors_write(path, negshape, 1, NULL, 0) == CT_ERR_ARG);
    ct_st_entry reserved[] = {{"__metadata__", CT_F32, 1, shape, x}};
    CHECK(ct_safetensors_write(path, reserved, 1, NULL, 0) == CT_ERR_ARG);
    const char *meta[] = {"k", "1", "k", "2"};
    CHECK(ct_safetensors_write(path, dup, 2, meta, 2) == CT_ERR_ARG);
    CHECK_ERR_HAS("duplicate metadata key");
    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 0);
}

/* Reference binary16 decoding written independently of the library's
 * bit manipulation, via ldexp. */
static double half_ref(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v;
    if (exp == 0x1f) {
        v = mant ? NAN : INFINITY;
    } else if (exp == 0) {
        v = ldexp(mant, -24);
    } else {
        v = ldexp(1024 + mant, exp - 25);
    }
    return sign ? -v : v;
}

static void test_half_values(void) {
    struct {
        uint16_t bits;
        double want;
    } cases[] = {
        {0x3C00, 1.0},          {0xC000, -2.0},           {0x7BFF, 65504.0},
        {0x0001, 0x1p-24},      {0x03FF, 1023 * 0x1p-24}, {0x0400, 0x1p-14},
        {0x3555, 0.333251953125}, {0x7C00, INFINITY},     {0xFC00, -INFINITY},
        {0x0000, 0.0},          {0x8001, -0x1p-24},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    /* An odd start offset: conversion must not assume alignment. */
    uint8_t buf[2 * 16 + 1];
    for (int i = 0; i < nc; i++) {
        buf[1 + 2 * i] = (uint8_t)(cases[i].bits & 0xff);
        buf[2 + 2 * i] = (uint8_t)(cases[i].bits >> 8);
    }
    ct_st_tensor t = {.name = "h", .dtype = CT_F16, .ndim = 1, .shape = {nc}, .data = buf + 1,
                      .nbytes = 2 * (size_t)nc};
    ct_real out[16];
    CHECK_OK(ct_st_to_real(&t, out, (size_t)nc));
    for (int i = 0; i < nc; i++)
        CHECK_MSG(out[i] == (ct_real)cases[i].want, "half 0x%04x -> %.9g, expected %.9g",
                  cases[i].bits, (double)out[i], cases[i].want);
    CHECK(signbit(out[9]) == 0);

    /* Negative zero and NaN keep their sign / NaN-ness. */
    uint8_t special[4] = {0x00, 0x80, 0x00, 0x7E}; /* -0.0, nan */
    t.shape[0] = 2;
    t.nbytes = 4;
    t.data = special;
    CHECK_OK(ct_st_to_real(&t, out, 2));
    CHECK(out[0] == 0 && signbit(out[0]));
    CHECK(isnan(out[1]));

    /* Every one of the 65536 half values against the reference. */
    uint8_t *all = malloc(2 * 65536);
    ct_real *res = malloc(65536 * sizeof *res);
    for (int i = 0; i < 65536; i++) {
        all[2 * i] = (uint8_t)(i & 0xff);
        all[2 * i + 1] = (uint8_t)(i >> 8);
    }
    t.shape[0] = 65536;
    t.nbytes = 2 * 65536;
    t.data = all;
    CHECK_OK(ct_st_to_real(&t, res, 65536));
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        double want = half_ref((uint16_t)i);
        bool ok = isnan(want) ? isnan(res[i])
                              : res[i] == want && !signbit(res[i]) == !signbit(want);
        if (!ok && bad++ < 5)
            CHECK_MSG(ok, "half 0x%04x -> %.9g, expected %.9g", i, (double)res[i], want);
    }
    CHECK(bad == 0);
    free(all);
    free(res);

    /* bfloat16 is the top half of a float32. */
    uint8_t bfb[] = {0x80, 0x3F, 0x40, 0xC0, 0x80, 0x7F, 0x01, 0x00};
    ct_st_tensor b = {.name = "b", .dtype = CT_BF16, .ndim = 1, .shape = {4}, .data = bfb,
                      .nbytes = 8};
    CHECK_OK(ct_st_to_real(&b, out, 4));
    CHECK(out[0] == 1.0f);       /* 0x3F80 */
    CHECK(out[1] == -3.0f);      /* 0xC040 */
    CHECK(isinf(out[2]) && out[2] > 0);
    CHECK(out[3] == (ct_real)0x1p-133); /* smallest bf16 subnormal */

    /* Inconsistent hand-built descriptor is refused, not trusted. */
    b.nbytes = 6;
    CHECK(ct_st_to_real(&b, out, 4) == CT_ERR_ARG);
}

/* u64 length field (possibly lying), header text, then data_len bytes. */
static void write_st(const char *path, uint64_t len_field, const char *json, size_t data_len) {
    size_t jl = strlen(json);
    size_t n = 8 + jl + data_len;
    uint8_t *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len_field >> (8 * i));
    memcpy(buf + 8, json, jl);
    write_raw(path, buf, n);
    free(buf);
}

static void expect_st_fail(const char *dir, const char *tag, uint64_t len_field, const char *json,
                           size_t data_len, const char *word) {
    char pbuf[1100];
    join(pbuf, sizeof pbuf, dir, tag);
    write_st(pbuf, len_field, json, data_len);
    ct_clear_error();
    ct_safetensors *st = ct_safetensors_open(pbuf);
    CHECK_MSG(st == NULL, "%s: opened a malformed file", tag);
    ct_safetensors_close(st);
    CHECK_MSG(strstr(ct_last_error(), word) != NULL, "%s: error \"%s\" lacks \"%s\"", tag,
              ct_last_error(), word);
    CHECK_MSG(strstr(ct_last_error(), tag) != NULL, "%s: error \"%s\" does not name the file",
              tag, ct_last_error());
}

#define ST_FAIL(tag, json, data_len, word) \
    expect_st_fail(dir, tag, strlen(json), json, data_len, word)

static void test_st_malformed(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("stbad", dbuf, sizeof dbuf);

    join(pbuf, sizeof pbuf, dir, "short.st");
    write_raw(pbuf, "\x05\0\0\0\0", 5);
    CHECK(ct_safetensors_open(pbuf) == NULL);
    CHECK_ERR_HAS("too short");
    CHECK_ERR_HAS("short.st");
    join(pbuf, sizeof pbuf, dir, "empty.st");
    write_raw(pbuf, "", 0);
    CHECK(ct_safetensors_open(pbuf) == NULL);
    CHECK_ERR_HAS("too short");
    join(pbuf, sizeof pbuf, dir, "missing.st");
    CHECK(ct_safetensors_open(pbuf) == NULL);
    CHECK_ERR_HAS("No such file");

    expect_st_fail(dir, "biglen.st", 1000, "{}", 10, "exceeds the 12 bytes");
    expect_st_fail(dir, "hugelen.st", (uint64_t)1 << 62, "{}", 10, "100 MB");
    expect_st_fail(dir, "zerolen.st", 0, "{}", 0, "header length is 0");

    ST_FAIL("badjson.st", "{\"a\": {\"dtype\": ", 0, "not valid JSON");
    ST_FAIL("array.st", "[1, 2]", 0, "not a JSON object");
    ST_FAIL("trailing.st", "{} x", 0, "unexpected bytes");
    ST_FAIL("notobj.st", "{\"w\": 3}", 0, "not an object");
    ST_FAIL("dtype.st", "{\"w\": {\"dtype\": \"F8X\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
            1, "unknown dtype \"F8X\"");
    ST_FAIL("dtype2.st", "{\"wq\": {\"dtype\": \"F8X\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
            1, "\"wq\"");
    ST_FAIL("f64.st", "{\"w\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
            8, "not supported");
    ST_FAIL("nodtype.st", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype");
    ST_FAIL("mismatch.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16,
            "does not match");
    ST_FAIL("range.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
            8, "beyond the data section");
    ST_FAIL("overlap.st",
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
            " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
            12, "overlap");
    /* Overlap found even when the later-starting range is listed first and
     * a third range sits in between. */
    ST_FAIL("overlap2.st",
            "{\"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [6, 8]},"
            " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]},"
            " \"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]}}",
            8, "overlap");
    ST_FAIL("negshape.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
            "shape[0] is not a non-negative integer");
    ST_FAIL("fracshape.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
            "non-negative integer");
    ST_FAIL("shapetype.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16,
            "shape missing or not an array");
    ST_FAIL("rank.st",
            "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1],"
            " \"data_offsets\": [0, 1]}}",
            1, "rank 9");
    ST_FAIL("order.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}",
            8, "begin 8 > end 4");
    ST_FAIL("nooffs.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "data_offsets");
    ST_FAIL("offs3.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
            "data_offsets");
    ST_FAIL("negoffs.st",
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8,
            "data_offsets");
    ST_FAIL("overflow.st",
            "{\"w\": {\"dtype\": \"I64\", \"shape\": [4294967296, 4294967296],"
            " \"data_offsets\": [0, 0]}}",
            0, "overflows");
    ST_FAIL("dup.st",
            "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
            " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
            2, "duplicate tensor name");
    ST_FAIL("meta.st", "{\"__metadata__\": {\"epoch\": 3}}", 0, "__metadata__");

    /* Valid edge cases: empty tensors at any offset inside others, gaps,
     * space padding, no tensors at all. */
    const char *ok_json =
        "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
        " \"z\": {\"dtype\": \"F32\", \"shape\": [3, 0], \"data_offsets\": [2, 2]},"
        " \"s\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [6, 8]}}   ";
    join(pbuf, sizeof pbuf, dir, "ok.st");
    write_st(pbuf, strlen(ok_json), ok_json, 9);
    ct_safetensors *st = ct_safetensors_open(pbuf);
    CHECK_MSG(st != NULL, "ok.st: %s", ct_last_error());
    CHECK(ct_safetensors_count(st) == 3);
    const ct_st_tensor *s = ct_safetensors_find(st, "s");
    CHECK(s && s->ndim == 0 && s->nbytes == 2);
    ct_safetensors_close(st);
    join(pbuf, sizeof pbuf, dir, "none.st");
    write_st(pbuf, 2, "{}", 0);
    st = ct_safetensors_open(pbuf);
    CHECK_MSG(st != NULL, "none.st: %s", ct_last_error());
    CHECK(ct_safetensors_count(st) == 0);
    ct_safetensors_close(st);
}

/* ---- npy ---------------------------------------------------------------- */

static void check_npy_layout(const char *path, const char *shape_text) {
    ct_mmap m;
    CHECK_OK(ct_mmap_open(&m, path));
    if (m.size < 10) {
        CHECK(m.size >= 10);
        ct_mmap_close(&m);
        return;
    }
    CHECK(memcmp(m.data, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (size_t)m.data[8] | (size_t)m.data[9] << 8;
    CHECK((10 + hlen) % 64 == 0);
    CHECK(10 + hlen <= m.size && m.data[10 + hlen - 1] == '\n');
    /* Search only the header: the data may contain anything. */
    char hdr[512] = {0};
    memcpy(hdr, m.data + 10, hlen < sizeof hdr - 1 ? hlen : sizeof hdr - 1);
    CHECK_MSG(strstr(hdr, shape_text) != NULL, "header %s lacks %s", hdr, shape_text);
    ct_mmap_close(&m);
}

static void test_npy_roundtrip(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("npy", dbuf, sizeof dbuf);
    float f[24];
    int64_t l[24];
    for (int i = 0; i < 24; i++) {
        f[i] = (float)i * 0.25f - 3.0f;
        l[i] = (int64_t)i * 1000000007LL - 5;
    }
    struct {
        const char *file;
        ct_dtype dtype;
        int ndim;
        int64_t shape[3];
        const char *text;
    } cases[] = {
        {"f1.npy", CT_F32, 1, {5}, "'shape': (5,)"},
        {"f3.npy", CT_F32, 3, {2, 3, 4}, "'shape': (2, 3, 4)"},
        {"f0.npy", CT_F32, 0, {0}, "'shape': ()"},
        {"l1.npy", CT_I64, 1, {24}, "'descr': '<i8'"},
        {"l3.npy", CT_I64, 3, {4, 1, 6}, "'shape': (4, 1, 6)"},
        {"l0.npy", CT_I64, 0, {0}, "'fortran_order': False"},
        {"fz.npy", CT_F32, 2, {0, 3}, "'shape': (0, 3)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = join(pbuf, sizeof pbuf, dir, cases[c].file);
        const void *src = cases[c].dtype == CT_F32 ? (const void *)f : (const void *)l;
        CHECK_OK(ct_npy_write(path, cases[c].dtype, cases[c].ndim, cases[c].shape, src));
        check_npy_layout(path, cases[c].text);
        ct_npy a;
        CHECK_OK(ct_npy_read(path, &a));
        size_t numel = 1;
        for (int d = 0; d < cases[c].ndim; d++) numel *= (size_t)cases[c].shape[d];
        CHECK_MSG(a.dtype == cases[c].dtype && a.ndim == cases[c].ndim && a.numel == numel,
                  "%s: dtype %d ndim %d numel %zu", cases[c].file, (int)a.dtype, a.ndim, a.numel);
        for (int d = 0; d < a.ndim && d < cases[c].ndim; d++)
            CHECK(a.shape[d] == cases[c].shape[d]);
        CHECK(a.data != NULL);
        CHECK(numel == 0 || memcmp(a.data, src, numel * ct_dtype_size(a.dtype)) == 0);
        ct_npy_free(&a);
        CHECK(a.data == NULL);
    }
    ct_npy_free(NULL);
    CHECK(ct_npy_write(join(pbuf, sizeof pbuf, dir, "x.npy"), CT_F16, 0, NULL, f) ==
          CT_ERR_UNSUPPORTED);
    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 7 && !has_tmp);
}

/* A preamble for version major.0 with the given header text, padded with
 * spaces + '\n' to 64 bytes, then data. */
static void write_npy_raw(const char *path, int major, const char *header, const void *data,
                          size_t n) {
    size_t pre = major == 1 ? 10 : 12, hl = strlen(header);
    size_t total = (pre + hl + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    uint8_t *buf = malloc(total + n);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)major;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + pre, header, hl);
    memset(buf + pre + hl, ' ', total - pre - hl - 1);
    buf[total - 1] = '\n';
    if (n) memcpy(buf + total, data, n);
    write_raw(path, buf, total + n);
    free(buf);
}

static void test_npy_handwritten(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("npyraw", dbuf, sizeof dbuf);
    int64_t v[3] = {1, -2, 3000000000LL};
    const char *path = join(pbuf, sizeof pbuf, dir, "v2.npy");
    write_npy_raw(path, 2, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", v, 24);
    ct_npy a;
    CHECK_OK(ct_npy_read(path, &a));
    CHECK(a.dtype == CT_I64 && a.ndim == 1 && a.shape[0] == 3 && a.numel == 3);
    CHECK(a.data && memcmp(a.data, v, 24) == 0);
    ct_npy_free(&a);

    /* 3.0 (UTF-8 header), double quotes, key order and spacing as a
     * hand-written or foreign writer might produce, Python 2 long dims. */
    float f[4] = {1, 2, 3, 4};
    path = join(pbuf, sizeof pbuf, dir, "v3.npy");
    write_npy_raw(path, 3, "{\"shape\":(2L,2L,),\"fortran_order\":False,\"descr\":\"<f4\"}", f,
                  16);
    CHECK_OK(ct_npy_read(path, &a));
    CHECK(a.dtype == CT_F32 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 2);
    CHECK(a.data && memcmp(a.data, f, 16) == 0);
    ct_npy_free(&a);
}

static void expect_npy_fail(const char *dir, const char *tag, int major, const char *header,
                            size_t data_len, ct_status want, const char *word) {
    char pbuf[1100];
    join(pbuf, sizeof pbuf, dir, tag);
    uint8_t *data = calloc(1, data_len + 1);
    write_npy_raw(pbuf, major, header, data, data_len);
    free(data);
    ct_npy a;
    ct_status s = ct_npy_read(pbuf, &a);
    CHECK_MSG(s == want, "%s: status %s, expected %s (%s)", tag, ct_status_str(s),
              ct_status_str(want), ct_last_error());
    CHECK(a.data == NULL);
    CHECK_MSG(strstr(ct_last_error(), word) != NULL, "%s: error \"%s\" lacks \"%s\"", tag,
              ct_last_error(), word);
    CHECK_MSG(strstr(ct_last_error(), tag) != NULL, "%s: error \"%s\" does not name the file",
              tag, ct_last_error());
}

static void test_npy_errors(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("npybad", dbuf, sizeof dbuf);
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";

    join(pbuf, sizeof pbuf, dir, "magic.npy");
    write_raw(pbuf, "\x93NUMPZ\x01\x00\x10\x00{}", 12);
    ct_npy a;
    CHECK(ct_npy_read(pbuf, &a) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("magic");
    CHECK_ERR_HAS("magic.npy");
    join(pbuf, sizeof pbuf, dir, "tiny.npy");
    write_raw(pbuf, "\x93N", 2);
    CHECK(ct_npy_read(pbuf, &a) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("magic");
    join(pbuf, sizeof pbuf, dir, "hlen.npy");
    write_raw(pbuf, "\x93NUMPY\x01\x00\xff\x00{}", 12);
    CHECK(ct_npy_read(pbuf, &a) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("exceeds");

    expect_npy_fail(dir, "fortran.npy", 1,
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16,
                    CT_ERR_UNSUPPORTED, "fortran_order True");
    expect_npy_fail(dir, "f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                    16, CT_ERR_UNSUPPORTED, "'<f8'");
    expect_npy_fail(dir, "struct.npy", 1,
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
                    CT_ERR_UNSUPPORTED, "structured");
    expect_npy_fail(dir, "trunc.npy", 1, good, 7, CT_ERR_FORMAT, "expected 8");
    expect_npy_fail(dir, "long.npy", 1, good, 9, CT_ERR_FORMAT, "expected 8");
    expect_npy_fail(dir, "v4.npy", 4, good, 8, CT_ERR_UNSUPPORTED, "version 4.0");
    expect_npy_fail(dir, "key.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
                    CT_ERR_FORMAT, "unexpected key 'x'");
    expect_npy_fail(dir, "noshape.npy", 1, "{'descr': '<f4', 'fortran_order': False}", 8,
                    CT_ERR_FORMAT, "missing key 'shape'");
    expect_npy_fail(dir, "dupkey.npy", 1,
                    "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
                    CT_ERR_FORMAT, "duplicate key 'descr'");
    expect_npy_fail(dir, "negdim.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8,
                    CT_ERR_FORMAT, "shape[0]");
    expect_npy_fail(dir, "bigdim.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                    8, CT_ERR_FORMAT, "overflows");
    expect_npy_fail(dir, "prodovf.npy", 1,
                    "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
                    8, CT_ERR_FORMAT, "overflows");
    expect_npy_fail(dir, "rank9.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
                    CT_ERR_UNSUPPORTED, "rank");
    expect_npy_fail(dir, "unclosed.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,", 8, CT_ERR_FORMAT,
                    "')' closing the shape");
    expect_npy_fail(dir, "bool.npy", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8,
                    CT_ERR_FORMAT, "True or False");
    expect_npy_fail(dir, "after.npy", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, CT_ERR_FORMAT,
                    "padding");
}

/* ---- JSON --------------------------------------------------------------- */

static void test_json(void) {
    char dbuf[1024], pbuf[1100];
    const char *dir = subdir("json", dbuf, sizeof dbuf);
    const char *path = join(pbuf, sizeof pbuf, dir, "cfg.json");

    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "epochs", 50);
    cJSON_AddNumberToObject(root, "lr", 0.002);
    cJSON_AddStringToObject(root, "name", "coop \"ViT-B/16\"");
    cJSON_AddBoolToObject(root, "fp16", true);
    cJSON *arr = cJSON_AddArrayToObject(root, "seeds");
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(2));
    CHECK_OK(ct_json_save(path, root));

    char *text;
    size_t size;
    CHECK_OK(ct_read_file(path, &text, &size));
    CHECK(size > 0 && text[size - 1] == '\n');
    free(text);

    cJSON *back = ct_json_load(path);
    CHECK_MSG(back != NULL, "load: %s", ct_last_error());
    CHECK(cJSON_Compare(root, back, true));
    int64_t i = 0;
    double d = 0;
    const char *s = NULL;
    bool b = false;
    CHECK_OK(ct_json_get_int(back, "epochs", &i, path));
    CHECK(i == 50);
    CHECK_OK(ct_json_get_double(back, "lr", &d, path));
    CHECK(d == 0.002);
    CHECK_OK(ct_json_get_string(back, "name", &s, path));
    CHECK(s && strcmp(s, "coop \"ViT-B/16\"") == 0);
    CHECK_OK(ct_json_get_bool(back, "fp16", &b, path));
    CHECK(b);

    CHECK(ct_json_get_int(back, "missing", &i, "cfg: optim") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("cfg: optim");
    CHECK_ERR_HAS("missing field \"missing\"");
    CHECK(ct_json_get_int(back, "lr", &i, "cfg") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("\"lr\" must be an integer");
    CHECK(i == 50); /* untouched on error */
    CHECK(ct_json_get_string(back, "epochs", &s, "cfg") == CT_ERR_FORMAT);
    CHECK_ERR_HAS("\"epochs\" must be a string");
    CHECK(ct_json_get_bool(back, "name", &b, "cfg") == CT_ERR_FORMAT);
    CHECK(ct_json_get_double(back, "fp16", &d, "cfg") == CT_ERR_FORMAT);
    CHECK(ct_json_get_int(arr, "x", &i, "cfg") == CT_ERR_FORMAT);
    cJSON_Delete(back);
    cJSON_Delete(root);

    bool has_tmp;
    CHECK(count_entries(dir, &has_tmp) == 1 && !has_tmp);

    const char *bad = join(pbuf, sizeof pbuf, dir, "bad.json");
    write_raw(bad, "{\n  \"a\": 1,\n  \"b\": ]\n}\n", 23);
    CHECK(ct_json_load(bad) == NULL);
    CHECK_ERR_HAS("bad.json");
    CHECK_ERR_HAS("line 3");
    bad = join(pbuf, sizeof pbuf, dir, "two.json");
    write_raw(bad, "{} {}", 5);
    CHECK(ct_json_load(bad) == NULL);
    CHECK_ERR_HAS("two.json");
    CHECK_ERR_HAS("byte 3");
    CHECK(ct_json_load(join(pbuf, sizeof pbuf, dir, "absent.json")) == NULL);
    CHECK_ERR_HAS("absent.json");
}

/* Temp files of killed writers: removed when their process is gone, kept
 * when it lives (this one, or pid 1); other names are never touched. */
static void test_clean_stale_temps(void) {
    char dir[4096], p[4300];
    snprintf(dir, sizeof dir, "%s/stale", ct_test_tmpdir());
    CHECK_OK(ct_mkdir_p(dir));
    pid_t child = fork();
    if (child == 0) _exit(0);
    int wst;
    waitpid(child, &wst, 0); /* a pid that no longer runs */
    const char *keep[] = {"features-1.safetensors", "a.tmp.x.1", "b.tmp.12.", "plain.tmp"};
    char dead[2][128], live[2][128];
    snprintf(dead[0], sizeof dead[0], "features-ab.safetensors.tmp.%ld.0", (long)child);
    snprintf(dead[1], sizeof dead[1], "checkpoint.safetensors.tmp.%ld.17", (long)child);
    snprintf(live[0], sizeof live[0], "metrics.json.tmp.%ld.2", (long)getpid());
    snprintf(live[1], sizeof live[1], "x.tmp.1.5");
    const char *all[8] = {keep[0], keep[1], keep[2], keep[3], dead[0], dead[1], live[0], live[1]};
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, all[i]);
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        if (f) fclose(f);
    }
    CHECK_MSG(ct_clean_stale_temps(dir) == 2, "removed a different number");
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, all[i]);
        CHECK_MSG((access(p, F_OK) == 0) == (i < 4 || i >= 6), "%s", all[i]);
    }
    CHECK(ct_clean_stale_temps("/nonexistent/dir") == 0);
}

int main(void) {
    RUN(test_mmap);
    RUN(test_read_file);
    RUN(test_atomic_replace);
    RUN(test_atomic_abort);
    RUN(test_clean_stale_temps);
    RUN(test_atomic_write_failure);
    RUN(test_st_roundtrip);
    RUN(test_st_write_errors);
    RUN(test_half_values);
    RUN(test_st_malformed);
    RUN(test_npy_roundtrip);
    RUN(test_npy_handwritten);
    RUN(test_npy_errors);
    RUN(test_json);
    return ct_test_summary();
}
