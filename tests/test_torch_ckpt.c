/* PyTorch checkpoint reader (src/base/torch_ckpt.c) on files torch.save
 * wrote (tests/fixtures/torch/, tools/ref/gen_torch_ckpt.py): keys, dtypes,
 * shapes, strides, values, scalars; every truncation and byte flips fail
 * cleanly; hand-made pickles for the interpreter's limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/torch_ckpt.h"
#include "cliptune.h"
#include "harness.h"
#include "../tests/fixtures/torch/torch_ckpt_ref.h"

#define FIX CT_SOURCE_DIR "/tests/fixtures/torch/"

/* ---- helpers ------------------------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    CHECK(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* A fresh file each time (unlinked first: rewriting a truncated file makes
 * ext4 flush it to disk on close, which makes thousands of rewrites slow). */
static void write_raw(const char *path, const void *data, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(n == 0 || fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static const char *tmp_path(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), name);
    return buf;
}

/* The error names the file. */
static bool names_file(const char *path) {
    return strncmp(ct_last_error(), path, strlen(path)) == 0;
}

/* Every listed tensor can be copied out (ASan watches the reads). */
static void copy_all(const ct_torch_ckpt *ck) {
    for (int i = 0; i < ct_torch_ckpt_count(ck); i++) {
        const ct_torch_tensor *t = ct_torch_ckpt_at(ck, i);
        CHECK(t != NULL);
        if (!t) continue;
        float *buf = malloc((t->numel ? t->numel : 1) * sizeof *buf);
        CHECK_OK(ct_torch_tensor_to_f32(t, buf, t->numel));
        free(buf);
    }
}

static void check_against(const char *file, const tc_ref_tensor *rt, int nt,
                          const tc_ref_scalar *rs, int ns, int skipped) {
    ct_torch_ckpt *ck = NULL;
    CHECK_OK(ct_torch_ckpt_open(file, &ck));
    if (!ck) return;
    CHECK_MSG(ct_torch_ckpt_count(ck) == nt, "%s: %d tensors, want %d", file,
              ct_torch_ckpt_count(ck), nt);
    CHECK(ct_torch_ckpt_skipped(ck) == skipped);
    for (int i = 0; i < nt && i < ct_torch_ckpt_count(ck); i++) {
        const ct_torch_tensor *t = ct_torch_ckpt_at(ck, i);
        const tc_ref_tensor *r = &rt[i];
        CHECK_MSG(strcmp(t->name, r->name) == 0, "%s: tensor %d is \"%s\", want \"%s\"", file, i,
                  t->name, r->name);
        CHECK(ct_torch_ckpt_find(ck, r->name) == t);
        CHECK_MSG(t->dtype == r->dtype && t->from_f64 == (r->f64 != 0), "%s: %s dtype %s", file,
                  r->name, ct_dtype_name(t->dtype));
        CHECK_MSG(t->ndim == r->ndim, "%s: %s rank %d, want %d", file, r->name, t->ndim, r->ndim);
        for (int d = 0; d < r->ndim && d < t->ndim; d++) {
            CHECK_MSG(t->shape[d] == r->shape[d] && t->stride[d] == r->stride[d],
                      "%s: %s dim %d: shape %lld stride %lld, want %lld %lld", file, r->name, d,
                      (long long)t->shape[d], (long long)t->stride[d], (long long)r->shape[d],
                      (long long)r->stride[d]);
        }
        CHECK_MSG(t->offset == r->offset, "%s: %s offset %lld, want %lld", file, r->name,
                  (long long)t->offset, (long long)r->offset);
        CHECK(t->numel == r->numel);
        CHECK(t->elem_size == (r->f64 ? 8 : ct_dtype_size(r->dtype)));
        float *got = malloc((r->numel ? r->numel : 1) * sizeof *got);
        CHECK_OK(ct_torch_tensor_to_f32(t, got, r->numel));
        size_t bad = 0;
        for (size_t k = 0; k < r->numel; k++) bad += got[k] != r->values[k];
        CHECK_MSG(bad == 0, "%s: %s: %zu of %zu values differ", file, r->name, bad, r->numel);
        if (r->numel) CHECK(ct_torch_tensor_to_f32(t, got, r->numel + 1) == CT_ERR_ARG);
        free(got);
    }
    for (int i = 0; i < ns; i++) {
        const tc_ref_scalar *s = &rs[i];
        int64_t iv = 0;
        double dv = 0;
        if (s->is_float) {
            CHECK_MSG(ct_torch_ckpt_real(ck, s->name, &dv) && dv == s->f, "%s: scalar %s = %g, "
                      "want %g", file, s->name, dv, s->f);
            CHECK(!ct_torch_ckpt_int(ck, s->name, &iv));
        } else {
            CHECK_MSG(ct_torch_ckpt_int(ck, s->name, &iv) && iv == s->i, "%s: scalar %s = %lld, "
                      "want %lld", file, s->name, (long long)iv, s->i);
            CHECK(ct_torch_ckpt_real(ck, s->name, &dv) && dv == (double)s->i);
        }
    }
    CHECK(ct_torch_ckpt_find(ck, "no.such.tensor") == NULL);
    CHECK(!ct_torch_ckpt_int(ck, "no.such.value", NULL));
    CHECK(ct_torch_ckpt_at(ck, -1) == NULL && ct_torch_ckpt_at(ck, nt) == NULL);
    ct_torch_ckpt_close(ck);
}

/* ---- torch.save's files ----------------------------------------------------- */

static void test_coop_checkpoint(void) {
    static const char *const files[] = {FIX "coop.pth", FIX "coop_p4.pth", FIX "coop_zip64.pth"};
    for (int f = 0; f < 3; f++)
        check_against(files[f], coop_tensors, COOP_NTENSORS, coop_scalars, COOP_NSCALARS,
                      COOP_SKIPPED);
    /* what an importer of CoOp's prompt learner reads */
    ct_torch_ckpt *ck = NULL;
    CHECK_OK(ct_torch_ckpt_open(FIX "coop.pth", &ck));
    if (!ck) return;
    int64_t epoch = 0;
    CHECK(ct_torch_ckpt_int(ck, "epoch", &epoch) && epoch == 50);
    const ct_torch_tensor *ctx = ct_torch_ckpt_find(ck, "state_dict.ctx");
    CHECK(ctx && ctx->dtype == CT_F32 && ctx->ndim == 2 && ctx->shape[0] == 4 &&
          ctx->shape[1] == 32 && !ctx->requires_grad); /* state_dict() detaches */
    const ct_torch_tensor *pre = ct_torch_ckpt_find(ck, "state_dict.token_prefix");
    CHECK(pre && !pre->requires_grad);
    CHECK(ct_torch_ckpt_find(ck, "optimizer.state.0.momentum_buffer") != NULL);
    /* the scheduler's successor is a class instance: passed over, not listed */
    CHECK(!ct_torch_ckpt_int(ck, "scheduler.successor", NULL));
    CHECK(!ct_torch_ckpt_int(ck, "scheduler.successor.T_max", NULL));
    CHECK(ct_torch_ckpt_find(ck, "state_dict._metadata") == NULL);
    ct_torch_ckpt_close(ck);
}

static void test_views_and_dtypes(void) {
    check_against(FIX "views.pth", views_tensors, VIEWS_NTENSORS, views_scalars, VIEWS_NSCALARS,
                  VIEWS_SKIPPED);
    check_against(FIX "views_legacy.pth", views_tensors, VIEWS_NTENSORS, views_scalars,
                  VIEWS_NSCALARS, VIEWS_SKIPPED);
}

static void test_refused(void) {
    ct_torch_ckpt *ck = (ct_torch_ckpt *)1;
    CHECK(ct_torch_ckpt_open(FIX "coop_deflated.pth", &ck) == CT_ERR_UNSUPPORTED && ck == NULL);
    CHECK_MSG(strstr(ct_last_error(), "compressed") != NULL, "%s", ct_last_error());
    CHECK(names_file(FIX "coop_deflated.pth"));
    CHECK(ct_torch_ckpt_open(FIX "no_such_file.pth", &ck) == CT_ERR_IO && ck == NULL);
    CHECK(ct_torch_ckpt_open(NULL, &ck) == CT_ERR_ARG);
    CHECK(ct_torch_ckpt_open(FIX "coop.pth", NULL) == CT_ERR_ARG);
    char p[512];
    tmp_path("text.pth", p, sizeof p);
    write_raw(p, "hello world\n", 12);
    CHECK(ct_torch_ckpt_open(p, &ck) == CT_ERR_FORMAT && names_file(p));
    CHECK(ct_torch_ckpt_count(NULL) == 0 && ct_torch_ckpt_find(NULL, "x") == NULL);
    ct_torch_ckpt_close(NULL);
}

/* Every prefix of a fixture is refused as malformed, naming the file. */
static void truncations_of(const char *fixture) {
    size_t n = 0;
    uint8_t *data = slurp(fixture, &n);
    if (!data) return;
    char p[512];
    tmp_path("truncated.pth", p, sizeof p);
    int wrong = 0;
    for (size_t len = 0; len < n; len++) {
        write_raw(p, data, len);
        ct_torch_ckpt *ck = NULL;
        ct_status s = ct_torch_ckpt_open(p, &ck);
        if (s != CT_ERR_FORMAT || ck != NULL || !names_file(p)) {
            if (wrong++ < 5)
                ct_test_fail(__FILE__, __LINE__, "%s cut to %zu bytes: %s (%s)", fixture, len,
                             ct_status_str(s), ct_last_error());
            ct_torch_ckpt_close(ck);
        }
    }
    free(data);
}

static void test_truncations(void) {
    truncations_of(FIX "coop.pth");
    truncations_of(FIX "views.pth");
    truncations_of(FIX "views_legacy.pth");
}

static bool in_ranges(size_t i, const long (*r)[2], int n) {
    for (int k = 0; k < n; k++)
        if ((long)i >= r[k][0] && (long)i < r[k][0] + r[k][1]) return true;
    return false;
}

/* Flip each byte in turn (two patterns): never a crash; a failure is
 * FORMAT or UNSUPPORTED and names the file; flips in CRC-checked bytes of
 * a zip always fail. */
static void flips_of(const char *fixture, const long (*ranges)[2], int nranges) {
    size_t n = 0;
    uint8_t *data = slurp(fixture, &n);
    if (!data) return;
    char p[512];
    tmp_path("flipped.pth", p, sizeof p);
    int wrong = 0, opened = 0;
    static const uint8_t pattern[] = {0xFF, 0x01};
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < n; i++) {
            data[i] ^= pattern[q];
            write_raw(p, data, n);
            data[i] ^= pattern[q];
            ct_torch_ckpt *ck = NULL;
            ct_status s = ct_torch_ckpt_open(p, &ck);
            bool ok;
            if (s == CT_OK) {
                opened++;
                copy_all(ck);
                ct_torch_ckpt_close(ck);
                ok = !in_ranges(i, ranges, nranges);
            } else {
                ok = (s == CT_ERR_FORMAT || s == CT_ERR_UNSUPPORTED) && ck == NULL && names_file(p);
            }
            if (!ok && wrong++ < 5)
                ct_test_fail(__FILE__, __LINE__, "%s byte %zu ^ 0x%02x: %s (%s)", fixture, i,
                             pattern[q], ct_status_str(s), ct_last_error());
        }
    printf("  %s: %d of %zu flipped files still open\n", fixture, opened, 2 * n);
    free(data);
}

static void test_byte_flips(void) {
    flips_of(FIX "coop.pth", coop_crc_ranges, COOP_NCRC);
    flips_of(FIX "views.pth", views_crc_ranges, VIEWS_NCRC);
    flips_of(FIX "views_legacy.pth", NULL, 0);
}

/* ---- hand-made legacy files: the interpreter's rules -------------------------- */

static const uint8_t MAGIC[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

/* A legacy file: magic, version 1001, empty system info, the main pickle,
 * the keys pickle, then raw storage bytes. */
static ct_status open_legacy(const void *main_pk, size_t nm, const void *keys_pk, size_t nk,
                             const void *raw, size_t nr, ct_torch_ckpt **ck, char *path,
                             size_t np) {
    uint8_t buf[4096];
    size_t k = 0;
    memcpy(buf + k, MAGIC, sizeof MAGIC), k += sizeof MAGIC;
    memcpy(buf + k, "\x80\x02M\xe9\x03.", 6), k += 6;
    memcpy(buf + k, "\x80\x02}.", 4), k += 4;
    CHECK(k + nm + nk + nr <= sizeof buf);
    memcpy(buf + k, main_pk, nm), k += nm;
    if (nk) memcpy(buf + k, keys_pk, nk), k += nk;
    if (nr) memcpy(buf + k, raw, nr), k += nr;
    tmp_path("handmade.pth", path, np);
    write_raw(path, buf, k);
    *ck = NULL;
    return ct_torch_ckpt_open(path, ck);
}

#define S(lit) lit, sizeof lit - 1
#define NO_KEYS S("\x80\x02].")
#define KEY0 S("\x80\x02](X\x01\x00\x00\x00" "0e.")

/* ('storage', torch.FloatStorage, '0', 'cpu', <numel>, None) then
 * _rebuild_tensor_v2(storage, 0, size, stride, False, {}) */
#define TENSOR_HEAD                                              \
    "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n"              \
    "((X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n"        \
    "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpu"

static void test_handmade(void) {
    char p[512];
    ct_torch_ckpt *ck;
    ct_status s;
    /* a GLOBAL that would run code is an inert object */
    s = open_legacy(S("\x80\x02}(X\x01\x00\x00\x00xcos\nsystem\nX\x04\x00\x00\x00" "echo\x85R"
                      "X\x05\x00\x00\x00" "epochK\x03u."),
                    NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK_OK(s);
    int64_t e = 0;
    CHECK(ck && ct_torch_ckpt_int(ck, "epoch", &e) && e == 3 && ct_torch_ckpt_count(ck) == 0);
    CHECK(!ct_torch_ckpt_int(ck, "x", NULL));
    ct_torch_ckpt_close(ck);

    /* a tensor saved alone; its extent against its storage */
    float raw[6] = {1, 2, 3, 4, 5, 6};
    uint8_t rec[8 + sizeof raw] = {6};
    memcpy(rec + 8, raw, sizeof raw);
    s = open_legacy(S(TENSOR_HEAD "K\x06NtQK\x00K\x02K\x03\x86K\x01K\x02\x86\x89}tR."), KEY0,
                    rec, sizeof rec, &ck, p, sizeof p);
    CHECK_OK(s);
    if (ck) {
        const ct_torch_tensor *t = ct_torch_ckpt_find(ck, "");
        float out[6];
        CHECK(t && t->stride[0] == 1 && t->stride[1] == 2);
        CHECK(t && ct_torch_tensor_to_f32(t, out, 6) == CT_OK && out[0] == 1 && out[1] == 3 &&
              out[2] == 5 && out[3] == 2 && out[4] == 4 && out[5] == 6);
        ct_torch_ckpt_close(ck);
    }
    /* (2, 3) with stride (3, 1) at offset 1 reaches element 6 of 6 */
    s = open_legacy(S(TENSOR_HEAD "K\x06NtQK\x01K\x02K\x03\x86K\x03K\x01\x86\x89}tR."), KEY0,
                    rec, sizeof rec, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_FORMAT && strstr(ct_last_error(), "reaches element 6"), "%s",
              ct_last_error());
    /* the storage declares 6 elements; the record holds 5 */
    rec[0] = 5;
    s = open_legacy(S(TENSOR_HEAD "K\x06NtQK\x00K\x02K\x03\x86K\x03K\x01\x86\x89}tR."), KEY0,
                    rec, sizeof rec - 4, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_FORMAT && names_file(p), "%s", ct_last_error());
    rec[0] = 6;
    /* huge numel: numel * element size overflows */
    s = open_legacy(S(TENSOR_HEAD "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3fNtQK\x00K\x02K\x03"
                      "\x86K\x03K\x01\x86\x89}tR."),
                    KEY0, rec, sizeof rec, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_FORMAT, "%s", ct_last_error());
    /* an unknown storage type */
    s = open_legacy(S("\x80\x02((X\x07\x00\x00\x00storagectorch\nQUInt8Storage\nX\x01\x00\x00"
                      "\x00" "0X\x03\x00\x00\x00" "cpuK\x06NtQ."),
                    KEY0, rec, sizeof rec, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_UNSUPPORTED && strstr(ct_last_error(), "QUInt8Storage"), "%s",
              ct_last_error());
    /* a list that contains itself */
    s = open_legacy(S("\x80\x02]q\x00h\x00" "a."), NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_FORMAT && strstr(ct_last_error(), "deeper"), "%s", ct_last_error());
    /* 2^40 paths through 40 shared tuples */
    char dag[128] = "\x80\x02]";
    for (int i = 0; i < 40; i++) strcat(dag, "2\x86");
    strcat(dag, ".");
    s = open_legacy(dag, strlen(dag), NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_UNSUPPORTED && names_file(p), "%s", ct_last_error());
    /* memo entry never stored; stack underflow; no STOP; text-protocol opcode */
    s = open_legacy(S("\x80\x02h\x05."), NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK(s == CT_ERR_FORMAT && strstr(ct_last_error(), "memo"));
    s = open_legacy(S("\x80\x02}s."), NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK(s == CT_ERR_FORMAT && strstr(ct_last_error(), "underflow"));
    s = open_legacy(S("\x80\x02}"), NULL, 0, NULL, 0, &ck, p, sizeof p);
    CHECK(s == CT_ERR_FORMAT && strstr(ct_last_error(), "STOP"));
    s = open_legacy(S("\x80\x02I12\n."), NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK(s == CT_ERR_UNSUPPORTED && names_file(p));
    /* duplicate names: {'a.b': 1, 'a': {'b': 2}} */
    s = open_legacy(S("\x80\x02}(X\x03\x00\x00\x00" "a.bK\x01X\x01\x00\x00\x00" "a}X\x01\x00\x00"
                      "\x00" "bK\x02su."),
                    NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK_MSG(s == CT_ERR_FORMAT && strstr(ct_last_error(), "a.b"), "%s", ct_last_error());
    /* big ints: LONG1 of 9 bytes that fits, and one that does not */
    s = open_legacy(S("\x80\x02}(X\x01\x00\x00\x00" "a\x8a\x09\xfe\xff\xff\xff\xff\xff\xff\xff\xff"
                      "X\x01\x00\x00\x00" "b\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01u."),
                    NO_KEYS, NULL, 0, &ck, p, sizeof p);
    CHECK_OK(s);
    CHECK(ck && ct_torch_ckpt_int(ck, "a", &e) && e == -2 && !ct_torch_ckpt_int(ck, "b", NULL));
    ct_torch_ckpt_close(ck);
}

int main(void) {
    RUN(test_coop_checkpoint);
    RUN(test_views_and_dtypes);
    RUN(test_refused);
    RUN(test_handmade);
    RUN(test_truncations);
    RUN(test_byte_flips);
    return ct_test_summary();
}
