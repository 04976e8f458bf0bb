/* Semantic segmentation label maps: PNGs whose pixel values are class
 * indices. VOC's SegmentationClass (and the scenes set's) are 8-bit palette
 * PNGs where the index is the label and the palette only colours it for
 * viewing; ADE20K's and Pascal Context's are 8-bit greyscale. Both are read
 * with libpng without any colour conversion (never png_set_palette_to_rgb),
 * the way PIL's Image.open(...) + np.array gives them to mmsegmentation. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "cliptune.h"
#include "data/dataset.h"

/* A PNG of the largest allowed map compresses to well under this (zlib's
 * worst case is ~0.1% above the raw bytes). */
#define LM_MAX_FILE_BYTES ((int64_t)CT_IMAGE_MAX_PIXELS + ((int64_t)64 << 20))

typedef struct lm_src {
    const uint8_t *data;
    size_t size, at;
    char msg[256];
} lm_src;

static void lm_error(png_structp png, png_const_charp msg) {
    lm_src *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg ? msg : "PNG error");
    png_longjmp(png, 1);
}

static void lm_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void lm_read(png_structp png, png_bytep out, size_t n) {
    lm_src *src = png_get_io_ptr(png);
    if (n > src->size - src->at) png_error(png, "truncated file");
    memcpy(out, src->data + src->at, n);
    src->at += n;
}

/* Decode; on failure returns the status with the error set. The volatile
 * locals survive the longjmp. */
static ct_status decode(const char *path, const uint8_t *data, size_t size, int *w_out,
                        int *h_out, uint8_t **out) {
    lm_src src = {.data = data, .size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, lm_error, lm_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a PNG reader", path);
    }
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    volatile ct_status s = CT_OK;
    if (setjmp(png_jmpbuf(png))) {
        if (s == CT_OK)
            s = ct_set_error(CT_ERR_FORMAT, "%s: corrupt PNG label map: %s", path, src.msg);
        free(px);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return s;
    }
    png_set_read_fn(png, &src, lm_read);
    png_set_user_limits(png, CT_IMAGE_MAX_SIDE, CT_IMAGE_MAX_SIDE);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20); /* ancillary chunks */
    /* indices are labels, not colours: one past the palette is not an error */
    png_set_check_for_invalid_index(png, 0);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth == 16) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: a 16-bit PNG label map (colour type %d): "
                         "label maps are 8-bit palette or greyscale PNGs", path, type);
    } else if (type == PNG_COLOR_TYPE_RGB || type == PNG_COLOR_TYPE_RGB_ALPHA) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: an RGB%s label map: convert it to palette "
                         "indices (an 8-bit palette or greyscale PNG whose values are the "
                         "classes)", path, type == PNG_COLOR_TYPE_RGB_ALPHA ? "A" : "");
    } else if (type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: a greyscale + alpha PNG label map: save it "
                         "without alpha (8-bit palette or greyscale)", path);
    } else if (type != PNG_COLOR_TYPE_PALETTE && type != PNG_COLOR_TYPE_GRAY) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: PNG colour type %d is not a label map", path, type);
    } else if (w < 1 || h < 1 || w > CT_IMAGE_MAX_SIDE || h > CT_IMAGE_MAX_SIDE ||
               (int64_t)w * h > CT_IMAGE_MAX_PIXELS) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: label map of %ux%u pixels exceeds the limits "
                         "(sides <= %d, %lld pixels)", path, (unsigned)w, (unsigned)h,
                         CT_IMAGE_MAX_SIDE, (long long)CT_IMAGE_MAX_PIXELS);
    }
    /* deflate expands at most ~1032:1: a short file declaring a large map is
     * cut off (or a bomb); refuse it before allocating the map */
    if (s == CT_OK && (double)w * h * depth / 8 > (double)size * 1100 + 4096)
        s = ct_set_error(CT_ERR_FORMAT, "%s: truncated: %zu bytes cannot hold the %ux%u label map "
                         "it declares", path, size, (unsigned)w, (unsigned)h);
    if (s != CT_OK) png_longjmp(png, 1);
    if (depth < 8) png_set_packing(png); /* one byte per value, not scaled */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: unexpected PNG row size %zu for width %u", path,
                         (size_t)png_get_rowbytes(png, info), (unsigned)w);
        png_longjmp(png, 1);
    }
    px = malloc((size_t)w * h);
    rows = malloc((size_t)h * sizeof *rows);
    if (!px || !rows) {
        s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a %ux%u label map", path,
                         (unsigned)w, (unsigned)h);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = px + (size_t)y * w;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *w_out = (int)w;
    *h_out = (int)h;
    *out = px;
    return CT_OK;
}

ct_status ct_label_map_load(const char *path, int *w, int *h, uint8_t **out) {
    if (w) *w = 0;
    if (h) *h = 0;
    if (out) *out = NULL;
    if (!path || !w || !h || !out) return ct_set_error(CT_ERR_ARG, "ct_label_map_load: NULL");
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return ct_set_error(CT_ERR_IO, "%s: no such label map file", path);
    if (st.st_size > LM_MAX_FILE_BYTES)
        return ct_set_error(CT_ERR_FORMAT, "%s: %lld bytes is too large for a label map", path,
                            (long long)st.st_size);
    char *data;
    size_t size;
    ct_status s = ct_read_file(path, &data, &size);
    if (s != CT_OK) return s;
    if (size < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: not a PNG file (label maps are 8-bit palette or "
                         "greyscale PNGs)", path);
    else
        s = decode(path, (const uint8_t *)data, size, w, h, out);
    free(data);
    return s;
}

/* mmseg's LoadAnnotations / intersect_and_union with reduce_zero_label: 0 ->
 * 255, then - 1, then 254 -> 255 (so 255 stays void). */
static void reduce_zero(uint8_t *px, size_t n) {
    for (size_t j = 0; j < n; j++) px[j] = px[j] == 0 || px[j] == 255 ? 255 : px[j] - 1;
}

ct_status ct_label_map_load_for(const ct_dataset *d, int64_t i, int img_w, int img_h, int *w,
                                int *h, uint8_t **out) {
    if (w) *w = 0;
    if (h) *h = 0;
    if (out) *out = NULL;
    if (!d || !w || !h || !out) return ct_set_error(CT_ERR_ARG, "ct_label_map_load_for: NULL");
    if (!d->masks)
        return ct_set_error(CT_ERR_ARG, "%s: not a segmentation dataset (no label maps)",
                            d->name);
    if (i < 0 || i >= d->n_items)
        return ct_set_error(CT_ERR_ARG, "%s: item %lld out of range [0, %lld)", d->name,
                            (long long)i, (long long)d->n_items);
    if (d->n_classes < 1 || d->n_classes > 255)
        return ct_set_error(CT_ERR_ARG, "%s: %d classes do not fit 8-bit label maps", d->name,
                            d->n_classes);
    char path[4096], img_path[4096];
    const char *ip = d->items[i].path ? d->items[i].path : "(in memory)";
    if (!d->masks[i] || !ct_data_join(path, sizeof path, d->root, d->masks[i]))
        return ct_set_error(CT_ERR_ARG, "%s: item %lld (%s): no label map, or its path is too "
                            "long", d->name, (long long)i, ip);
    if (!d->items[i].path || !ct_data_join(img_path, sizeof img_path, d->root, ip))
        snprintf(img_path, sizeof img_path, "%s", ip);
    if (img_w <= 0 || img_h <= 0) {
        ct_image img;
        ct_status s = ct_dataset_image(d, i, &img);
        if (s != CT_OK) return s;
        img_w = img.w, img_h = img.h;
        ct_image_free(&img);
    }
    uint8_t *px;
    ct_status s = ct_label_map_load(path, w, h, &px);
    if (s != CT_OK) return s;
    if (*w != img_w || *h != img_h) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: label map of %dx%d pixels, its image %s is %dx%d",
                         path, *w, *h, img_path, img_w, img_h);
    } else {
        size_t n = (size_t)*w * (size_t)*h;
        if (d->reduce_zero_label) reduce_zero(px, n);
        for (size_t j = 0; j < n && s == CT_OK; j++) {
            if (px[j] < d->n_classes || px[j] == 255) continue;
            size_t x = j % (size_t)*w, y = j / (size_t)*w;
            if (d->reduce_zero_label)
                s = ct_set_error(CT_ERR_FORMAT, "%s: pixel (x %zu, y %zu) has value %d: the "
                                 "maps of %s hold 0 (other: void), 1..%d for its %d classes "
                                 "and 255 (void)", path, x, y, px[j] + 1, d->name,
                                 d->n_classes, d->n_classes);
            else
                s = ct_set_error(CT_ERR_FORMAT, "%s: pixel (x %zu, y %zu) has value %d: %s has "
                                 "%d classes (values 0..%d) and 255 (void)", path, x, y, px[j],
                                 d->name, d->n_classes, d->n_classes - 1);
        }
    }
    if (s != CT_OK) {
        free(px);
        *w = *h = 0;
        return s;
    }
    *out = px;
    return CT_OK;
}
