/* PNG writers (png_write.h): libpng into memory, then one atomic write. */
#include "data/png_write.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "base/error.h"
#include "base/file.h"

typedef struct png_enc {
    char *p;
    size_t n, cap;
    char msg[256];
} png_enc;

static void png_fail(png_structp png, png_const_charp msg) {
    png_enc *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_put(png_structp png, png_bytep data, size_t n) {
    png_enc *e = png_get_io_ptr(png);
    if (e->cap - e->n < n) {
        size_t cap = e->cap ? e->cap : 4096;
        while (cap - e->n < n) cap *= 2;
        char *p = realloc(e->p, cap);
        if (!p) png_error(png, "out of memory");
        e->p = p, e->cap = cap;
    }
    memcpy(e->p + e->n, data, n);
    e->n += n;
}

static void png_flush_none(png_structp png) { (void)png; }

void ct_voc_palette(uint8_t rgb[768]) {
    for (int i = 0; i < 256; i++) {
        int r = 0, g = 0, b = 0, c = i;
        for (int j = 0; j < 8; j++) {
            r |= (c & 1) << (7 - j);
            g |= (c >> 1 & 1) << (7 - j);
            b |= (c >> 2 & 1) << (7 - j);
            c >>= 3;
        }
        rgb[3 * i] = (uint8_t)r, rgb[3 * i + 1] = (uint8_t)g, rgb[3 * i + 2] = (uint8_t)b;
    }
}

/* px (h, w, channels) with colour type ct (palette: VOC's map) */
static ct_status write_png(const char *path, const uint8_t *px, int w, int h, int channels,
                           int ct) {
    if (!path || !px || w < 1 || h < 1)
        return ct_set_error(CT_ERR_ARG, "%s: no pixels to write", path ? path : "PNG");
    png_enc *e = calloc(1, sizeof *e);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    png_structp png = NULL;
    png_infop info = NULL;
    ct_status s = CT_OK;
    if (e && rows) png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, png_fail, png_quiet);
    if (png) info = png_create_info_struct(png);
    if (!info) {
        s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    } else if (setjmp(png_jmpbuf(png))) {
        s = ct_set_error(CT_ERR_IO, "%s: PNG encoding failed: %s", path, e->msg);
    } else {
        png_set_write_fn(png, e, png_put, png_flush_none);
        png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, ct, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        if (ct == PNG_COLOR_TYPE_PALETTE) {
            uint8_t rgb[768];
            png_color pal[256];
            ct_voc_palette(rgb);
            for (int i = 0; i < 256; i++)
                pal[i].red = rgb[3 * i], pal[i].green = rgb[3 * i + 1], pal[i].blue = rgb[3 * i + 2];
            png_set_PLTE(png, info, pal, 256);
        }
        for (int y = 0; y < h; y++)
            rows[y] = (png_bytep)(px + (size_t)y * (size_t)w * (size_t)channels);
        png_write_info(png, info);
        png_write_image(png, rows);
        png_write_end(png, NULL);
        s = ct_write_file_atomic_nosync(path, e->p ? e->p : "", e->n);
    }
    if (png) png_destroy_write_struct(&png, info ? &info : NULL);
    if (e) free(e->p);
    free(e);
    free(rows);
    return s;
}

ct_status ct_png_write_palette(const char *path, const uint8_t *idx, int w, int h) {
    return write_png(path, idx, w, h, 1, PNG_COLOR_TYPE_PALETTE);
}

ct_status ct_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    return write_png(path, rgb, w, h, 3, PNG_COLOR_TYPE_RGB);
}
