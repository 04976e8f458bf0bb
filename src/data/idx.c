/* fashion-mnist[:DIR] — the IDX files of Fashion-MNIST (default DIR:
 * /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist):
 *
 *   train-images-idx3-ubyte.gz  magic 0x00000803, n, rows, cols, then pixels
 *   train-labels-idx1-ubyte.gz  magic 0x00000801, n, then one byte per label
 *   t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz   the test set
 *
 * Integers are big-endian u32. Files without .gz are read when the .gz one
 * is absent (zlib reads plain files transparently). Header sizes are checked
 * against what the file can possibly hold before anything is allocated, so
 * a forged header cannot make us reserve memory the data never fills.
 *
 * The source has no validation split: val is 10% of each class of train,
 * held out by a fixed hash of the row index (ct_dataset_holdout), so train
 * has 54000 rows, val 6000 (600 per class), test 10000. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096
#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
/* Deflate's best case is about 1032:1; nothing larger can come out of a
 * gzip file of a given size. */
#define DEFLATE_MAX_RATIO 1032u
/* gzread takes an unsigned count; read in bounded chunks. */
#define GZ_CHUNK (1u << 30)

/* torchvision's FashionMNIST.classes, in label order. */
static const char *const FMNIST_CLASSES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                               "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                               "Bag",         "Ankle boot"};

typedef struct idx_file {
    const char *path;
    gzFile gz;
    uint64_t max_bytes; /* most bytes the file can decompress to */
} idx_file;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static ct_status gz_fail(const idx_file *f, const char *what) {
    int err = 0;
    const char *msg = gzerror(f->gz, &err);
    return ct_set_error(err == Z_ERRNO ? CT_ERR_IO : CT_ERR_FORMAT, "%s: %s: %s", f->path, what,
                        err == Z_ERRNO ? strerror(errno) : msg);
}

/* Read exactly n bytes; *got says how many came before EOF or an error. */
static ct_status read_exact(idx_file *f, uint8_t *buf, size_t n, size_t *got, const char *what) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < GZ_CHUNK ? n - *got : GZ_CHUNK;
        int k = gzread(f->gz, buf + *got, (unsigned)want);
        if (k < 0) return gz_fail(f, what);
        if (k == 0) break;
        *got += (size_t)k;
    }
    int err = 0;
    gzerror(f->gz, &err);
    /* A cut-off gzip stream reads as EOF with Z_BUF_ERROR set. */
    if (err != Z_OK && err != Z_BUF_ERROR) return gz_fail(f, what);
    return CT_OK;
}

static ct_status idx_open(idx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    struct stat st;
    if (stat(path, &st) != 0)
        return ct_set_error(CT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ct_set_error(CT_ERR_IO, "%s: not a regular file", path);
    uint8_t magic[2] = {0, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return ct_set_error(CT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t nm = fread(magic, 1, 2, fp);
    fclose(fp);
    bool gzip = nm == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    f->max_bytes = gzip ? (uint64_t)st.st_size * DEFLATE_MAX_RATIO + 1024 : (uint64_t)st.st_size;
    if (!(f->gz = gzopen(path, "rb")))
        return ct_set_error(CT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return CT_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Header: magic and ndim big-endian dims. */
static ct_status read_header(idx_file *f, uint32_t magic, int ndim, uint32_t *dims) {
    uint8_t h[16];
    size_t want = 4 + 4 * (size_t)ndim, got;
    ct_status s = read_exact(f, h, want, &got, "reading the header");
    if (s != CT_OK) return s;
    if (got < want)
        return ct_set_error(CT_ERR_FORMAT, "%s: truncated header (%zu of %zu bytes)", f->path,
                            got, want);
    uint32_t m = be32(h);
    if (m != magic)
        return ct_set_error(CT_ERR_FORMAT, "%s: bad magic 0x%08x (expected 0x%08x, IDX %s)",
                            f->path, m, magic, magic == IDX_IMAGES ? "images" : "labels");
    for (int i = 0; i < ndim; i++) dims[i] = be32(h + 4 + 4 * i);
    return CT_OK;
}

/* The data after the header: exactly n bytes, nothing after them. */
static ct_status read_body(idx_file *f, uint8_t *buf, size_t n) {
    size_t got;
    ct_status s = read_exact(f, buf, n, &got, "reading the data");
    if (s != CT_OK) return s;
    if (got < n)
        return ct_set_error(CT_ERR_FORMAT, "%s: truncated: %zu of %zu data bytes", f->path, got, n);
    uint8_t extra;
    s = read_exact(f, &extra, 1, &got, "reading the data");
    if (s != CT_OK) return s;
    if (got)
        return ct_set_error(CT_ERR_FORMAT, "%s: trailing bytes after the %zu data bytes the "
                            "header declares", f->path, n);
    return CT_OK;
}

/* DIR/NAME.gz, else DIR/NAME. */
static ct_status find_file(const char *dir, const char *name, char *buf, size_t n) {
    char gz[PATH_BUF];
    if (snprintf(gz, sizeof gz, "%s.gz", name) >= (int)sizeof gz || !ct_data_join(buf, n, dir, gz))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", dir);
    if (ct_data_is_file(buf)) return CT_OK;
    if (!ct_data_join(buf, n, dir, name)) return ct_set_error(CT_ERR_ARG, "%s: path too long", dir);
    if (ct_data_is_file(buf)) return CT_OK;
    return ct_set_error(CT_ERR_IO, "%s: no %s.gz or %s (install the Debian package "
                        "dataset-fashion-mnist, or give fashion-mnist:DIR)", dir, name, name);
}

/* One half (train or t10k): a pixel store and its items. */
static ct_status read_half(const char *dir, const char *prefix, const char *store_name,
                           ct_pixel_store **store, ct_item_vec *items) {
    char ipath[PATH_BUF], lpath[PATH_BUF], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    ct_status s = find_file(dir, name, ipath, sizeof ipath);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if (s == CT_OK) s = find_file(dir, name, lpath, sizeof lpath);
    if (s != CT_OK) return s;

    idx_file fi, fl;
    uint32_t idims[3] = {0, 0, 0}, ldims[1] = {0};
    uint8_t *labels = NULL;
    s = idx_open(&fi, ipath);
    if (s == CT_OK) s = read_header(&fi, IDX_IMAGES, 3, idims);
    if (s == CT_OK && (idims[1] < 1 || idims[2] < 1 || idims[1] > 4096 || idims[2] > 4096))
        s = ct_set_error(CT_ERR_FORMAT, "%s: image size %ux%u outside 1..4096", ipath, idims[1],
                         idims[2]);
    /* n * rows * cols < 2^56: no overflow in 64 bits. */
    uint64_t ibytes = (uint64_t)idims[0] * idims[1] * idims[2];
    if (s == CT_OK && ibytes > fi.max_bytes)
        s = ct_set_error(CT_ERR_FORMAT, "%s: header declares %u images of %ux%u (%llu bytes), "
                         "more than the file can hold", ipath, idims[0], idims[1], idims[2],
                         (unsigned long long)ibytes);
    if (s == CT_OK) s = idx_open(&fl, lpath);
    else fl.gz = NULL;
    if (s == CT_OK) s = read_header(&fl, IDX_LABELS, 1, ldims);
    if (s == CT_OK && ldims[0] != idims[0])
        s = ct_set_error(CT_ERR_FORMAT, "%s holds %u labels but %s holds %u images", lpath,
                         ldims[0], ipath, idims[0]);
    if (s == CT_OK && ldims[0] > fl.max_bytes)
        s = ct_set_error(CT_ERR_FORMAT, "%s: header declares %u labels, more than the file can "
                         "hold", lpath, ldims[0]);
    if (s == CT_OK && !(labels = malloc(ldims[0] ? ldims[0] : 1)))
        s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %u labels", lpath, ldims[0]);
    if (s == CT_OK) s = read_body(&fl, labels, ldims[0]);
    for (uint32_t i = 0; s == CT_OK && i < ldims[0]; i++)
        if (labels[i] >= 10)
            s = ct_set_error(CT_ERR_FORMAT, "%s: label %u at index %u is outside 0..9", lpath,
                             labels[i], i);
    if (s == CT_OK) {
        *store = ct_pixel_store_new(store_name, idims[0], (int)idims[1], (int)idims[2], 1);
        if (!*store) s = CT_ERR_NOMEM;
    }
    if (s == CT_OK) s = read_body(&fi, (*store)->data, (size_t)ibytes);
    for (uint32_t i = 0; s == CT_OK && i < ldims[0]; i++)
        s = ct_item_vec_push(items, NULL, i, labels[i]);
    idx_close(&fi);
    idx_close(&fl);
    free(labels);
    return s;
}

ct_status ct_data_open_fashion_mnist(const char *dir, ct_splits *out) {
    memset(out, 0, sizeof *out);
    char *names[10];
    for (int c = 0; c < 10; c++) names[c] = NULL;
    ct_status s = CT_OK;
    for (int c = 0; c < 10 && s == CT_OK; c++)
        if (!(names[c] = strdup(FMNIST_CLASSES[c])))
            s = ct_set_error(CT_ERR_NOMEM, "fashion-mnist: no memory");
    if (s == CT_OK) s = ct_classnames_apply(dir, 10, names, NULL);

    ct_pixel_store *ptrain = NULL, *ptest = NULL;
    ct_item_vec itrain = {0}, itest = {0};
    ct_dataset *all = NULL;
    if (s == CT_OK) s = read_half(dir, "train", "fashion-mnist/train", &ptrain, &itrain);
    if (s == CT_OK) s = read_half(dir, "t10k", "fashion-mnist/test", &ptest, &itest);
    if (s == CT_OK && !(all = ct_dataset_build("fashion-mnist", "", 10, names, ptrain, &itrain)))
        s = CT_ERR_NOMEM;
    if (s == CT_OK) s = ct_dataset_check_nonempty(all, dir);
    if (s == CT_OK) s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
    if (s == CT_OK &&
        !(out->test = ct_dataset_build("fashion-mnist", "", 10, names, ptest, &itest)))
        s = CT_ERR_NOMEM;
    ct_dataset_free(all);
    ct_pixel_store_release(ptrain);
    ct_pixel_store_release(ptest);
    ct_item_vec_free(&itrain);
    ct_item_vec_free(&itest);
    for (int c = 0; c < 10; c++) free(names[c]);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
