/* Image decoding to RGB with Pillow's open().convert("RGB") semantics (see
 * image.h and docs/preprocessing.md).
 *
 * Why not stb_image for everything: its JPEG decoder uses its own IDCT and
 * chroma upsampling and differs from libjpeg-turbo (what Pillow uses) by up
 * to 4/255 on real photos; its GIF loader composites transparent pixels to
 * black where Pillow keeps the palette colour; and it reads PNM samples
 * without Pillow's maxval scaling. So JPEG goes through libjpeg-turbo, GIF
 * and PNM through small decoders here, PNG and BMP through stb_image.
 * TIFF and WebP go through libtiff and libwebp, the libraries Pillow itself
 * uses for them, from memory. */
#include "cliptune.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stb_image.h>
#include <stdarg.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <tiffio.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <zlib.h>

#include "base/error.h"

static const char *name_or_memory(const char *name) { return name ? name : "<memory>"; }

/* Both sides in [1, CT_IMAGE_MAX_SIDE] and at most CT_IMAGE_MAX_PIXELS, checked
 * before any pixel buffer is sized from them. */
static ct_status check_size(const char *name, const char *fmt, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0)
        return ct_set_error(CT_ERR_FORMAT, "%s: %s: image size %lldx%lld is empty", name, fmt,
                            (long long)w, (long long)h);
    if (w > CT_IMAGE_MAX_SIDE || h > CT_IMAGE_MAX_SIDE || w * h > CT_IMAGE_MAX_PIXELS)
        return ct_set_error(CT_ERR_FORMAT,
                            "%s: %s: image size %lldx%lld exceeds the limit (%d px per side, "
                            "%lld pixels: Pillow's decompression-bomb threshold)",
                            name, fmt, (long long)w, (long long)h, CT_IMAGE_MAX_SIDE,
                            (long long)CT_IMAGE_MAX_PIXELS);
    return CT_OK;
}

/* Sizes must have passed check_size (so w * h * 3 cannot overflow). */
static ct_status alloc_image(const char *name, int w, int h, ct_image *out) {
    size_t n = (size_t)w * (size_t)h * 3;
    out->rgb = malloc(n);
    if (!out->rgb) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, n);
    out->w = w;
    out->h = h;
    return CT_OK;
}

void ct_image_free(ct_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

ct_status ct_image_from_pixels(const uint8_t *pixels, int w, int h, int channels,
                               ct_image *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_image_from_pixels: NULL output");
    memset(out, 0, sizeof *out);
    if (!pixels) return ct_set_error(CT_ERR_ARG, "ct_image_from_pixels: NULL pixels");
    if (channels < 1 || channels > 4)
        return ct_set_error(CT_ERR_ARG, "ct_image_from_pixels: %d channels (want 1, 2, 3 or 4)",
                            channels);
    ct_status s = check_size("ct_image_from_pixels", "raw pixels", w, h);
    if (s != CT_OK) return s;
    s = alloc_image("ct_image_from_pixels", w, h, out);
    if (s != CT_OK) return s;
    size_t n = (size_t)w * (size_t)h;
    uint8_t *d = out->rgb;
    for (size_t i = 0; i < n; i++, d += 3) {
        const uint8_t *p = pixels + i * (size_t)channels;
        if (channels <= 2) {
            d[0] = d[1] = d[2] = p[0];
        } else {
            d[0] = p[0];
            d[1] = p[1];
            d[2] = p[2];
        }
    }
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* JPEG (libjpeg-turbo)                                                      */
/* ------------------------------------------------------------------------ */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr err; /* first: libjpeg hands callbacks only cinfo->err */
    jmp_buf jump;
    struct jpeg_decompress_struct cinfo;
    struct jpeg_source_mgr src;
    ct_status status;   /* what decode_jpeg returns after a longjmp */
    bool all_rows_read; /* after this, a missing EOI is tolerated (as Pillow) */
    bool truncated;
    const char *name;
    uint8_t *row;       /* grey / CMYK scanline buffer */
} jpeg_ctx;

static void jpeg_error_exit(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    c->status = ct_set_error(CT_ERR_FORMAT, "%s: JPEG: %s%s", c->name, msg,
                             c->truncated ? " (the file is truncated)" : "");
    longjmp(c->jump, 1);
}

/* libjpeg warns about recoverable corruption and decodes on; Pillow ignores
 * those warnings too, so say nothing (the library never prints). */
static void jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

/* The whole file is in the buffer from the start, so this runs only at the
 * end of the data. Pillow's decoder then asks for more and fails with "image
 * file is truncated" unless every row was already decoded (a missing EOI
 * after complete data passes); do the same rather than libjpeg's default of
 * padding the image with grey. */
static boolean src_fill(j_decompress_ptr cinfo) {
    static const JOCTET eoi[2] = {0xFF, JPEG_EOI};
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (!c->all_rows_read) {
        c->truncated = true;
        cinfo->err->msg_code = JERR_INPUT_EOF;
        (*cinfo->err->error_exit)((j_common_ptr)cinfo);
    }
    cinfo->src->next_input_byte = eoi;
    cinfo->src->bytes_in_buffer = 2;
    return TRUE;
}

static void src_skip(j_decompress_ptr cinfo, long n) {
    struct jpeg_source_mgr *s = cinfo->src;
    if (n <= 0) return;
    while ((size_t)n > s->bytes_in_buffer) {
        n -= (long)s->bytes_in_buffer;
        s->bytes_in_buffer = 0;
        (*s->fill_input_buffer)(cinfo); /* errors out unless all rows are read */
    }
    s->next_input_byte += n;
    s->bytes_in_buffer -= (size_t)n;
}

/* Pillow's "CMYK;I" unpacking (inverts: Adobe writes inverted CMYK) then its
 * cmyk2rgb: channel = clip(nk - nk * c / 255), rounded its way. */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int w) {
    for (int x = 0; x < w; x++, cmyk += 4, rgb += 3) {
        int nk = cmyk[3]; /* 255 - (255 - k) */
        for (int k = 0; k < 3; k++) {
            int v = nk - muldiv255(255 - cmyk[k], nk);
            rgb[k] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

/* Runs under setjmp in decode_jpeg; everything that must survive a longjmp
 * lives in *c or *cinfo (not in this frame's locals). */
static ct_status decode_jpeg_body(struct jpeg_decompress_struct *cinfo, jpeg_ctx *c,
                                  ct_image *out) {
    jpeg_read_header(cinfo, TRUE);
    int ncomp = cinfo->num_components;
    ct_status s = check_size(c->name, "JPEG", cinfo->image_width, cinfo->image_height);
    if (s != CT_OK) return s;
    /* Pillow maps 1/3/4 components to L/RGB/CMYK and rejects the rest. */
    if (ncomp == 1) {
        cinfo->out_color_space = JCS_GRAYSCALE;
    } else if (ncomp == 3) {
        cinfo->out_color_space = JCS_RGB;
    } else if (ncomp == 4) {
        cinfo->out_color_space = JCS_CMYK; /* libjpeg turns YCCK into CMYK */
    } else {
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: JPEG: %d colour components (want 1, 3 or 4)",
                            c->name, ncomp);
    }
    /* libjpeg's defaults, which Pillow keeps (it changes them only in draft
     * mode, which torchvision and HF never use); set here so a different
     * libjpeg default cannot change the pixels silently. */
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    cinfo->do_block_smoothing = TRUE;
    cinfo->scale_num = cinfo->scale_denom = 1;

    jpeg_start_decompress(cinfo);
    int w = (int)cinfo->output_width, h = (int)cinfo->output_height;
    s = check_size(c->name, "JPEG", w, h);
    if (s != CT_OK) return s;
    s = alloc_image(c->name, w, h, out);
    if (s != CT_OK) return s;
    if (ncomp != 3) {
        c->row = malloc((size_t)w * 4);
        if (!c->row) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a JPEG row", c->name);
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *dst = out->rgb + (size_t)cinfo->output_scanline * (size_t)w * 3;
        JSAMPROW row = ncomp == 3 ? dst : c->row;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return ct_set_error(CT_ERR_FORMAT, "%s: JPEG: no data for row %u", c->name,
                                cinfo->output_scanline);
        if (ncomp == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = c->row[x];
        } else if (ncomp == 4) {
            cmyk_row_to_rgb(c->row, dst, w);
        }
    }
    c->all_rows_read = true;
    jpeg_finish_decompress(cinfo);
    return CT_OK;
}

static ct_status decode_jpeg(const uint8_t *data, size_t size, const char *name,
                             ct_image *out) {
    /* Heap, not this frame: what setjmp's caller reads after a longjmp must
     * not be a non-volatile local changed in between. */
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a JPEG decoder", name);
    c->name = name;
    c->cinfo.err = jpeg_std_error(&c->err);
    c->err.error_exit = jpeg_error_exit;
    c->err.output_message = jpeg_output_message;
    if (!setjmp(c->jump)) {
        jpeg_create_decompress(&c->cinfo);
        c->src.init_source = src_init;
        c->src.fill_input_buffer = src_fill;
        c->src.skip_input_data = src_skip;
        c->src.resync_to_restart = jpeg_resync_to_restart;
        c->src.term_source = src_term;
        c->src.next_input_byte = data;
        c->src.bytes_in_buffer = size;
        c->cinfo.src = &c->src;
        c->status = decode_jpeg_body(&c->cinfo, c, out);
    }
    jpeg_destroy_decompress(&c->cinfo);
    ct_status s = c->status;
    free(c->row);
    free(c);
    return s;
}

/* ------------------------------------------------------------------------ */
/* PNG and BMP (stb_image)                                                   */
/* ------------------------------------------------------------------------ */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static unsigned le16(const uint8_t *p) { return (unsigned)p[1] << 8 | p[0]; }

static ct_status stb_failed(const char *name, const char *fmt) {
    /* stb's reasons are terse tags; name the common one. (They live in a
     * thread-local in stb builds with STBI_THREAD_LOCAL, Debian's included.) */
    const char *why = stbi_failure_reason();
    if (!why) why = "corrupt data";
    return ct_set_error(CT_ERR_FORMAT, "%s: %s: cannot decode (%s%s)", name, fmt, why,
                        strcmp(why, "outofdata") == 0 ? ": the file is truncated" : "");
}

/* stb's output for an accepted file, converted: 3 channels (stb's conversion
 * replicates grey and drops alpha, which is Pillow's convert("RGB") for L, LA,
 * P, RGB, RGBA: no compositing), or for 16-bit greyscale PNG the 16-bit value
 * clipped at 255 (Pillow opens it as mode "I"; convert() clips rather than
 * keeping the high byte). */
static ct_status stb_decode_rgb(const uint8_t *data, size_t size, const char *name,
                                const char *fmt, int64_t w, int64_t h, bool grey16,
                                ct_image *out) {
    if (size > INT_MAX)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: %s: file larger than 2 GiB", name, fmt);
    int sw, sh, comp;
    void *p = grey16 ? (void *)stbi_load_16_from_memory(data, (int)size, &sw, &sh, &comp, 1)
                     : (void *)stbi_load_from_memory(data, (int)size, &sw, &sh, &comp, 3);
    if (!p) return stb_failed(name, fmt);
    ct_status s = CT_OK;
    if (sw != w || sh != h) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: %s: decoded size %dx%d differs from the header",
                         name, fmt, sw, sh);
    } else {
        s = alloc_image(name, sw, sh, out);
    }
    if (s == CT_OK) {
        size_t n = (size_t)sw * (size_t)sh;
        if (grey16) {
            const stbi_us *g = p;
            for (size_t i = 0; i < n; i++) {
                uint8_t v = g[i] > 255 ? 255 : (uint8_t)g[i];
                out->rgb[3 * i] = out->rgb[3 * i + 1] = out->rgb[3 * i + 2] = v;
            }
        } else {
            memcpy(out->rgb, p, n * 3);
        }
    }
    stbi_image_free(p);
    return s;
}

/* Write a PNG chunk (length, type, body, CRC) at q; returns its end. */
static uint8_t *png_put_chunk(uint8_t *q, const char *type, const uint8_t *body, size_t len) {
    q[0] = (uint8_t)(len >> 24), q[1] = (uint8_t)(len >> 16);
    q[2] = (uint8_t)(len >> 8), q[3] = (uint8_t)len;
    memcpy(q + 4, type, 4);
    if (len) memcpy(q + 8, body, len);
    uint32_t crc = (uint32_t)crc32(0L, q + 4, (uInt)(4 + len));
    q += 8 + len;
    q[0] = (uint8_t)(crc >> 24), q[1] = (uint8_t)(crc >> 16);
    q[2] = (uint8_t)(crc >> 8), q[3] = (uint8_t)crc;
    return q + 4;
}

/* PNG: stb_image decodes, after checks that make it reject what Pillow
 * rejects and decode deterministically what Pillow decodes:
 *   - chunk types must be letters; chunks before the first IDAT must have
 *     good CRCs (Pillow checks those; like Pillow, IDAT CRCs are not);
 *   - the IDAT zlib stream is inflated once here to check its data and
 *     Adler-32 (stb checks neither; Pillow's zlib does);
 *   - a palette shorter than the bit depth allows is extended with Pillow's
 *     grey ramp (index i -> (i, i, i)), so out-of-range indices read what
 *     Pillow shows instead of stb's uninitialised palette entries;
 *   - a file cut off after its image data (no IEND) decodes, as in Pillow.
 * One difference remains: a bad Adler-32 is always an error here, while
 * Pillow misses it when the last row completes before zlib reaches it. */
static ct_status decode_png(const uint8_t *data, size_t size, const char *name,
                            ct_image *out) {
    /* signature (8), IHDR length + type (8), width, height, depth, type ... */
    if (size < 33 || memcmp(data + 12, "IHDR", 4) != 0)
        return ct_set_error(CT_ERR_FORMAT, "%s: PNG: missing or short IHDR chunk", name);
    int64_t w = be32(data + 16), h = be32(data + 20);
    int depth = data[24], ctype = data[25];
    ct_status s = check_size(name, "PNG", w, h);
    if (s != CT_OK) return s;

    size_t pos = 8, plte_at = 0, plte_len = 0;
    size_t cut_at = 0, cut_len = 0; /* a last IDAT cut short, its bytes present */
    bool seen_idat = false, idat_done = false, z_end = false, ended = false, tail_ok = false;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK)
        return ct_set_error(CT_ERR_NOMEM, "%s: PNG: cannot start zlib", name);
    uint8_t scratch[16384];
    while (s == CT_OK && !idat_done) {
        if (size - pos < 12) {
            ended = true; /* file ends (maybe inside a chunk header) */
            break;
        }
        uint32_t len = be32(data + pos);
        const uint8_t *type = data + pos + 4;
        bool is_idat = memcmp(type, "IDAT", 4) == 0;
        if (seen_idat && !is_idat) {
            /* Pillow reads nothing after the IDAT run (it skips what follows,
             * broken or not); stb would parse on, so unless a plain IEND
             * follows, end stb's copy here. */
            idat_done = true;
            tail_ok = len == 0 && memcmp(type, "IEND", 4) == 0;
            break;
        }
        for (int i = 0; i < 4; i++) {
            uint8_t c = type[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                s = ct_set_error(CT_ERR_FORMAT, "%s: PNG: broken chunk type at byte %zu", name,
                                 pos + 4);
        }
        if (s != CT_OK) break;
        /* An IDAT longer than the file is read up to the end, as Pillow
         * does (it decodes whatever image data is there). */
        if (len > 0x7FFFFFFFu && !is_idat)
            s = ct_set_error(CT_ERR_FORMAT, "%s: PNG: chunk length %u too large", name, len);
        if (s != CT_OK) break;
        bool cut = size - pos - 12 < len;
        if (cut && !is_idat) {
            ended = true;
            break;
        }
        const uint8_t *body = data + pos + 8;
        if (is_idat) {
            seen_idat = true;
            z.next_in = (Bytef *)body;
            z.avail_in = cut ? (uInt)(size - pos - 8 < len ? size - pos - 8 : len) : len;
            if (cut) {
                cut_at = pos;
                cut_len = z.avail_in;
            }
            while (z.avail_in > 0 && !z_end) {
                z.next_out = scratch;
                z.avail_out = sizeof scratch;
                int r = inflate(&z, Z_NO_FLUSH);
                if (r == Z_STREAM_END) {
                    z_end = true;
                } else if (r == Z_MEM_ERROR) {
                    s = ct_set_error(CT_ERR_NOMEM, "%s: PNG: zlib out of memory", name);
                    break;
                } else if (r != Z_OK && r != Z_BUF_ERROR) {
                    s = ct_set_error(CT_ERR_FORMAT, "%s: PNG: corrupt image data (zlib: %s)",
                                     name, z.msg ? z.msg : "error");
                    break;
                }
            }
            if (cut) {
                ended = true;
                break;
            }
        } else {
            uint32_t crc = (uint32_t)crc32(0L, type, 4);
            crc = (uint32_t)crc32(crc, body, len);
            if (crc != be32(body + len))
                s = ct_set_error(CT_ERR_FORMAT, "%s: PNG: bad checksum in chunk '%.4s'", name,
                                 (const char *)type);
            if (memcmp(type, "PLTE", 4) == 0) {
                plte_at = pos;
                plte_len = len;
            }
        }
        pos += 12 + (size_t)len;
    }
    inflateEnd(&z);
    if (s != CT_OK) return s;

    /* The file may end after the image data is complete but before IEND (or
     * inside the last IDAT's checksum), or carry junk after the IDAT run:
     * Pillow decodes such files, stb does not, so hand stb a copy that ends
     * properly. Truncated image data stays an error (stb reports it). */
    bool reterminate = (ended && z_end) || (idat_done && !tail_ok);
    bool repalette = ctype == 3 && plte_at && plte_len % 3 == 0 && plte_len < 768 &&
                     depth <= 8 && plte_len / 3 < (1u << depth);
    uint8_t *patched = NULL;
    if (reterminate || repalette) {
        size_t keep = reterminate ? (cut_len ? cut_at : pos) : size;
        size_t nsize = keep + (repalette ? 768 - plte_len : 0) + (reterminate ? 12 : 0) +
                       (reterminate && cut_len ? 12 + cut_len : 0);
        patched = malloc(nsize);
        if (!patched)
            return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, nsize);
        uint8_t *q = patched;
        if (repalette) {
            /* Extend a short palette with the grey ramp (see above). */
            size_t n = plte_len / 3;
            uint8_t pal[768];
            memcpy(pal, data + plte_at + 8, plte_len);
            for (size_t i = n; i < 256; i++)
                pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
            memcpy(q, data, plte_at);
            q = png_put_chunk(q + plte_at, "PLTE", pal, 768);
            size_t from = plte_at + 12 + plte_len;
            memcpy(q, data + from, keep - from);
            q += keep - from;
        } else {
            memcpy(q, data, keep);
            q += keep;
        }
        if (reterminate) {
            if (cut_len) q = png_put_chunk(q, "IDAT", data + cut_at + 8, cut_len);
            q = png_put_chunk(q, "IEND", NULL, 0);
        }
        data = patched;
        size = (size_t)(q - patched);
    }
    s = stb_decode_rgb(data, size, name, "PNG", w, h, depth == 16 && ctype == 0, out);
    free(patched);
    return s;
}

/* BMP: stb_image (uncompressed 1/4/8/16/24/32-bit, RLE4/RLE8), after a size
 * check: stb reads past the end of the data as zeros, where Pillow reports a
 * truncated file. */
static ct_status decode_bmp(const uint8_t *data, size_t size, const char *name,
                            ct_image *out) {
    if (size < 30)
        return ct_set_error(CT_ERR_FORMAT, "%s: BMP: file too short for its header", name);
    uint32_t offset = le32(data + 10), hsize = le32(data + 14);
    int64_t w, h;
    unsigned bpp, compression = 0;
    if (hsize == 12) { /* OS/2 BITMAPCOREHEADER: 16-bit sizes */
        w = le16(data + 18);
        h = le16(data + 20);
        bpp = le16(data + 24);
    } else {
        if (size < 34)
            return ct_set_error(CT_ERR_FORMAT, "%s: BMP: file too short for its header", name);
        w = (int32_t)le32(data + 18);
        h = (int32_t)le32(data + 22);
        if (h < 0) h = -h; /* negative: rows stored top-down */
        bpp = le16(data + 28);
        compression = le32(data + 30);
    }
    ct_status s = check_size(name, "BMP", w, h);
    if (s != CT_OK) return s;
    /* RGB, RLE8, RLE4, BITFIELDS, ALPHABITFIELDS: what Pillow reads (stb
     * ignores the field for some depths). */
    if (compression > 3 && compression != 6)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: BMP: unsupported compression %u", name,
                            compression);
    if ((compression == 0 || compression == 3 || compression == 6) && bpp >= 1 && bpp <= 32) {
        /* Rows are padded to 4 bytes; w, h <= 16384 so this cannot overflow. */
        uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4;
        if ((uint64_t)offset + row * (uint64_t)h > size)
            return ct_set_error(CT_ERR_FORMAT,
                                "%s: BMP: pixel data needs %llu bytes at offset %u, the file "
                                "has %zu (truncated)",
                                name, (unsigned long long)(row * (uint64_t)h), offset, size);
    }
    return stb_decode_rgb(data, size, name, "BMP", w, h, false, out);
}

/* ------------------------------------------------------------------------ */
/* GIF, first frame                                                          */
/* ------------------------------------------------------------------------ */

/* Pillow's rules for frame 0 (GifImagePlugin + GifDecode.c, 9.x):
 *   - the canvas is the logical screen, grown to hold the frame if needed;
 *   - it starts filled with the frame's transparent index if it has one,
 *     else with index 0, and the frame's pixels are all written (frame 0
 *     writes transparent pixels too);
 *   - colours come from the local palette, else the global one; indices past
 *     the palette's end, and all indices when there is no palette, read as
 *     grey (i, i, i) (Pillow's palette starts as a grey ramp);
 *   - transparency is dropped by convert("RGB");
 *   - LZW: codes past the next free entry are an error, the table stops
 *     growing at 4096 entries, decoding stops once the frame is full, and
 *     an end code before that leaves Pillow waiting for data: truncated. */

#define GIF_TABLE 4096

typedef struct gif_reader {
    const uint8_t *p, *end;
} gif_reader;

static ct_status gif_short(const char *name) {
    return ct_set_error(CT_ERR_FORMAT, "%s: GIF: the file is truncated", name);
}

/* LZW-decode idx (fw * fh indices, rows in file order, de-interlaced into
 * place). Returns FORMAT errors naming name. */
static ct_status gif_lzw(const char *name, const uint8_t *code, size_t ncode, bool eof,
                         int min_bits, bool interlace, int fw, int fh, uint8_t *idx) {
    if (min_bits > 12)
        return ct_set_error(CT_ERR_FORMAT, "%s: GIF: LZW code size %d (at most 12)", name,
                            min_bits);
    uint16_t *link = malloc(GIF_TABLE * sizeof *link);
    uint8_t *first = malloc(GIF_TABLE), *last = malloc(GIF_TABLE);
    uint8_t *stack = malloc(GIF_TABLE + 1);
    if (!link || !first || !last || !stack) {
        free(link);
        free(first);
        free(last);
        free(stack);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the GIF decoder", name);
    }
    const int clear = 1 << min_bits, end = clear + 1;
    for (int i = 0; i < clear && i < GIF_TABLE; i++) {
        link[i] = 0xFFFF;
        first[i] = last[i] = (uint8_t)i;
    }
    int codesize = min_bits + 1, mask = (1 << codesize) - 1, next = clear + 2;
    int prev = -1;             /* -1: first code after a clear */
    uint32_t acc = 0;
    int nbits = 0;
    size_t pos = 0;
    static const int starts[4] = {0, 4, 2, 1}, steps[4] = {8, 8, 4, 2};
    int x = 0, y = 0, pass = 0, step = interlace ? 8 : 1;
    bool done = false;
    ct_status s = CT_OK;
    while (!done) {
        while (nbits < codesize && pos < ncode) {
            acc |= (uint32_t)code[pos++] << nbits;
            nbits += 8;
        }
        if (nbits < codesize) {
            s = eof ? gif_short(name)
                    : ct_set_error(CT_ERR_FORMAT, "%s: GIF: image data ends before the frame is "
                                                  "complete", name);
            break;
        }
        int c = (int)(acc & (uint32_t)mask);
        acc >>= codesize;
        nbits -= codesize;
        if (c == clear) {
            codesize = min_bits + 1;
            mask = (1 << codesize) - 1;
            next = clear + 2;
            prev = -1;
            continue;
        }
        if (c == end) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: GIF: end code before the frame is complete "
                                            "(truncated image data)", name);
            break;
        }
        int n = 0; /* string length, written reversed into stack */
        if (prev < 0) {
            if (c > clear) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: GIF: bad first LZW code %d", name, c);
                break;
            }
            stack[n++] = (uint8_t)c;
        } else {
            if (c > next) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: GIF: LZW code %d past the table (%d)",
                                 name, c, next);
                break;
            }
            int cur = c;
            if (c == next) { /* KwKwK: previous string + its first symbol */
                cur = prev;
                if (cur < GIF_TABLE) stack[n++] = first[cur];
            }
            /* Codes past the table happen only with 12-bit literals (13-bit
             * codes); Pillow rejects them, like any overlong string. */
            while (cur >= clear) {
                if (n >= GIF_TABLE || cur >= GIF_TABLE) {
                    cur = -1;
                    break;
                }
                stack[n++] = last[cur];
                cur = link[cur];
            }
            if (cur < 0) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: GIF: corrupt LZW table", name);
                break;
            }
            stack[n++] = (uint8_t)cur;
            if (next < GIF_TABLE) {
                link[next] = (uint16_t)prev;
                first[next] = first[prev];
                last[next] = (uint8_t)cur;
                if (next == mask && codesize < 12) {
                    codesize++;
                    mask = (1 << codesize) - 1;
                }
                next++;
            }
        }
        prev = c;
        /* Emit the string (reversed on the stack). */
        while (n > 0) {
            idx[(size_t)y * (size_t)fw + (size_t)x] = stack[--n];
            if (++x < fw) continue;
            x = 0;
            y += step;
            while (y >= fh) {
                if (!interlace || pass == 3) {
                    done = true;
                    break;
                }
                pass++;
                y = starts[pass];
                step = steps[pass];
            }
            if (done) break;
        }
    }
    free(link);
    free(first);
    free(last);
    free(stack);
    return s;
}

static ct_status decode_gif(const uint8_t *data, size_t size, const char *name,
                            ct_image *out) {
    if (size < 13) return gif_short(name);
    int sw = (int)le16(data + 6), sh = (int)le16(data + 8);
    uint8_t flags = data[10];
    const uint8_t *gpal = NULL, *lpal = NULL;
    int gn = 0, ln = 0;
    size_t pos = 13;
    if (flags & 0x80) {
        gn = 2 << (flags & 7);
        if (size - pos < (size_t)gn * 3) return gif_short(name);
        gpal = data + pos;
        pos += (size_t)gn * 3;
    }
    int trans = -1;
    /* Blocks up to the first image descriptor. */
    for (;;) {
        if (pos >= size || data[pos] == 0x3B)
            return ct_set_error(CT_ERR_FORMAT, "%s: GIF: no image in the file", name);
        uint8_t b = data[pos++];
        if (b == 0x21) { /* extension: label, then sub-blocks */
            if (pos >= size) return gif_short(name);
            uint8_t label = data[pos++];
            bool first_block = true;
            for (;;) {
                if (pos >= size) return gif_short(name);
                size_t n = data[pos++];
                if (n == 0) break;
                if (size - pos < n) return gif_short(name);
                if (label == 0xF9 && first_block) {
                    if (n < 4)
                        return ct_set_error(CT_ERR_FORMAT,
                                            "%s: GIF: graphic control block too short", name);
                    /* Pillow only ever sets it: a later block without the
                     * flag keeps an earlier index. */
                    if (data[pos] & 1) trans = data[pos + 3];
                }
                first_block = false;
                pos += n;
            }
        } else if (b == 0x2C) {
            break;
        }
        /* Anything else is skipped one byte at a time, as Pillow does. */
    }
    if (size - pos < 9) return gif_short(name);
    int x0 = (int)le16(data + pos), y0 = (int)le16(data + pos + 2);
    int fw = (int)le16(data + pos + 4), fh = (int)le16(data + pos + 6);
    uint8_t lflags = data[pos + 8];
    pos += 9;
    if (lflags & 0x80) {
        ln = 2 << (lflags & 7);
        if (size - pos < (size_t)ln * 3) return gif_short(name);
        lpal = data + pos;
        pos += (size_t)ln * 3;
    }
    int cw = x0 + fw > sw ? x0 + fw : sw, ch = y0 + fh > sh ? y0 + fh : sh;
    ct_status s = check_size(name, "GIF", cw, ch);
    if (s != CT_OK) return s;
    s = check_size(name, "GIF frame", fw, fh);
    if (s != CT_OK) return s;
    if (pos >= size) return gif_short(name);
    int min_bits = data[pos++];

    /* Gather the data sub-blocks. A sub-block cut off by the end of the file
     * is not used (Pillow waits for whole sub-blocks). */
    size_t ncode = 0, scan = pos;
    bool eof = false;
    for (;;) {
        if (scan >= size) {
            eof = true;
            break;
        }
        size_t n = data[scan];
        if (n == 0) break;
        if (size - scan - 1 < n) {
            eof = true;
            break;
        }
        ncode += n;
        scan += 1 + n;
    }
    uint8_t *code = malloc(ncode ? ncode : 1);
    uint8_t *idx = malloc((size_t)fw * (size_t)fh);
    if (!code || !idx) {
        free(code);
        free(idx);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate GIF buffers", name);
    }
    for (size_t o = 0, q = pos; o < ncode;) {
        size_t n = data[q];
        memcpy(code + o, data + q + 1, n);
        o += n;
        q += 1 + n;
    }
    s = gif_lzw(name, code, ncode, eof, min_bits, (lflags & 0x40) != 0, fw, fh, idx);
    free(code);
    if (s == CT_OK) s = alloc_image(name, cw, ch, out);
    if (s == CT_OK) {
        const uint8_t *pal = lpal ? lpal : gpal;
        int npal = lpal ? ln : gn;
        uint8_t lut[256][3];
        for (int i = 0; i < 256; i++) {
            for (int k = 0; k < 3; k++) lut[i][k] = i < npal ? pal[3 * i + k] : (uint8_t)i;
        }
        const uint8_t *fill = lut[trans >= 0 ? trans : 0];
        for (int yy = 0; yy < ch; yy++) {
            uint8_t *d = out->rgb + (size_t)yy * (size_t)cw * 3;
            for (int xx = 0; xx < cw; xx++, d += 3) {
                const uint8_t *c = fill;
                if (yy >= y0 && yy < y0 + fh && xx >= x0 && xx < x0 + fw)
                    c = lut[idx[(size_t)(yy - y0) * (size_t)fw + (size_t)(xx - x0)]];
                d[0] = c[0];
                d[1] = c[1];
                d[2] = c[2];
            }
        }
    }
    free(idx);
    return s;
}

/* ------------------------------------------------------------------------ */
/* PNM (P1-P6)                                                               */
/* ------------------------------------------------------------------------ */

/* Pillow (PpmImagePlugin, 9.x) semantics:
 *   - header tokens are separated by whitespace; '#' starts a comment up to
 *     CR or LF (and may sit inside a token); tokens longer than 10 bytes are
 *     rejected; one whitespace byte ends the header;
 *   - maxval in [1, 65535]; P5/P6 with maxval 255 are raw bytes, P5 with
 *     65535 is raw 16-bit (mode "I"); otherwise each sample becomes
 *     min(out_max, round(v / maxval * out_max)) with round half to even,
 *     out_max = 65535 for grey with maxval > 255 (mode "I"), else 255;
 *   - mode "I" clips at 255 in convert("RGB");
 *   - plain formats: comments are cut out of the data (up to and including
 *     the line end); P1 digits need no separators; a value over maxval is an
 *     error; P1/P4 1 = black. */

static bool pnm_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static ct_status pnm_token(const char *name, const uint8_t *data, size_t size, size_t *pos,
                           int64_t *out) {
    char tok[12];
    size_t n = 0;
    while (n <= 10) {
        if (*pos >= size) break;
        uint8_t c = data[(*pos)++];
        if (pnm_space(c)) {
            if (n == 0) continue;
            break;
        }
        if (c == '#') {
            while (*pos < size && data[*pos] != '\r' && data[*pos] != '\n') (*pos)++;
            if (*pos < size) (*pos)++;
            continue;
        }
        tok[n++] = (char)c;
    }
    if (n == 0) return ct_set_error(CT_ERR_FORMAT, "%s: PNM: header ends early", name);
    if (n > 10) return ct_set_error(CT_ERR_FORMAT, "%s: PNM: header token too long", name);
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return ct_set_error(CT_ERR_FORMAT, "%s: PNM: bad header number '%.*s'", name, (int)n,
                                tok);
        v = v * 10 + (tok[i] - '0');
    }
    *out = v;
    return CT_OK;
}

/* Python's round(v / maxval * out_max) on doubles (ties to even), capped. */
static int pnm_scale(int64_t v, int64_t maxval, int out_max) {
    double r = nearbyint((double)v / (double)maxval * (double)out_max);
    return r > out_max ? out_max : (int)r;
}

static uint8_t clip255(int v) { return v > 255 ? 255 : (uint8_t)v; }

/* Plain-format data with comments removed; *n bytes. */
static uint8_t *pnm_strip_comments(const uint8_t *p, size_t size, size_t *n) {
    uint8_t *d = malloc(size ? size : 1);
    if (!d) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < size; i++) {
        if (p[i] == '#') {
            while (i < size && p[i] != '\r' && p[i] != '\n') i++;
            continue; /* the line end goes with the comment */
        }
        d[k++] = p[i];
    }
    *n = k;
    return d;
}

static ct_status decode_pnm(const uint8_t *data, size_t size, const char *name,
                            ct_image *out) {
    int kind = data[1] - '0'; /* 1..6, checked by the caller */
    size_t pos = 2;
    bool bitmap = kind == 1 || kind == 4, plain = kind <= 3;
    int bands = (kind == 3 || kind == 6) ? 3 : 1;
    int64_t w, h, maxval = 1;
    ct_status s = pnm_token(name, data, size, &pos, &w);
    if (s == CT_OK) s = pnm_token(name, data, size, &pos, &h);
    if (s == CT_OK && !bitmap) s = pnm_token(name, data, size, &pos, &maxval);
    if (s != CT_OK) return s;
    if (!bitmap && (maxval < 1 || maxval > 65535))
        return ct_set_error(CT_ERR_FORMAT, "%s: PNM: maxval %lld not in [1, 65535]", name,
                            (long long)maxval);
    s = check_size(name, "PNM", w, h);
    if (s != CT_OK) return s;
    /* Grey with maxval > 255 is Pillow's mode "I" (values up to 65535). */
    int out_max = (bands == 1 && maxval > 255) ? 65535 : 255;
    size_t npx = (size_t)w * (size_t)h, nsamp = npx * (size_t)bands;
    s = alloc_image(name, (int)w, (int)h, out);
    if (s != CT_OK) return s;
    uint8_t *px = out->rgb;
    const uint8_t *p = data + pos;
    size_t avail = size - pos;

    if (kind == 4) {
        size_t row = ((size_t)w + 7) / 8;
        if (avail / row < (size_t)h) goto truncated;
        for (int64_t y = 0; y < h; y++) {
            for (int64_t x = 0; x < w; x++) {
                int bit = (p[(size_t)y * row + (size_t)x / 8] >> (7 - x % 8)) & 1;
                uint8_t *d = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
                d[0] = d[1] = d[2] = bit ? 0 : 255;
            }
        }
        return CT_OK;
    }
    if (!plain) {
        size_t bytes = maxval > 255 ? 2 : 1;
        if (avail / bytes < nsamp) goto truncated;
        for (size_t i = 0; i < nsamp; i++) {
            int v = bytes == 1 ? p[i] : (p[2 * i] << 8 | p[2 * i + 1]);
            if (maxval == 255 || (maxval == 65535 && bands == 1)) {
                /* raw: no scaling */
            } else {
                v = pnm_scale(v, maxval, out_max);
            }
            uint8_t c = clip255(v);
            if (bands == 3) {
                px[i] = c;
            } else {
                px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = c;
            }
        }
        return CT_OK;
    }
    /* Plain (ASCII) formats. */
    size_t n;
    uint8_t *t = pnm_strip_comments(p, avail, &n);
    if (!t) {
        ct_image_free(out);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate PNM text", name);
    }
    size_t got = 0, i = 0;
    if (kind == 1) {
        for (; i < n && got < npx; i++) {
            if (pnm_space(t[i])) continue;
            if (t[i] != '0' && t[i] != '1') {
                s = ct_set_error(CT_ERR_FORMAT, "%s: PNM: bad P1 data byte 0x%02x", name, t[i]);
                break;
            }
            uint8_t v = t[i] == '1' ? 0 : 255;
            px[3 * got] = px[3 * got + 1] = px[3 * got + 2] = v;
            got++;
        }
        /* Pillow checks every digit it read, and it reads on to the end of
         * its block (1 MiB) even once the image is full. */
        for (; s == CT_OK && i < n; i++) {
            if (!pnm_space(t[i]) && t[i] != '0' && t[i] != '1')
                s = ct_set_error(CT_ERR_FORMAT, "%s: PNM: bad P1 data byte 0x%02x", name, t[i]);
        }
    } else {
        while (got < nsamp) {
            while (i < n && pnm_space(t[i])) i++;
            if (i >= n) break;
            size_t b = i;
            int64_t v = 0;
            while (i < n && !pnm_space(t[i])) {
                if (i - b >= 10 || t[i] < '0' || t[i] > '9') {
                    s = ct_set_error(CT_ERR_FORMAT, "%s: PNM: bad sample '%.*s'", name,
                                     (int)(i - b + 1 > 11 ? 11 : i - b + 1), (const char *)t + b);
                    break;
                }
                v = v * 10 + (t[i] - '0');
                i++;
            }
            if (s != CT_OK) break;
            if (v > maxval) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: PNM: sample %lld over maxval %lld", name,
                                 (long long)v, (long long)maxval);
                break;
            }
            uint8_t c = clip255(pnm_scale(v, maxval, out_max));
            if (bands == 3) {
                px[got] = c;
            } else {
                px[3 * got] = px[3 * got + 1] = px[3 * got + 2] = c;
            }
            got++;
        }
    }
    free(t);
    if (s != CT_OK) {
        ct_image_free(out);
        return s;
    }
    if (got < (kind == 1 ? npx : nsamp)) goto truncated;
    return CT_OK;

truncated:
    ct_image_free(out);
    return ct_set_error(CT_ERR_FORMAT, "%s: PNM: not enough image data (the file is truncated)",
                        name);
}

/* ------------------------------------------------------------------------ */
/* TIFF (libtiff), first page                                                */
/* ------------------------------------------------------------------------ */

/* Pillow (TiffImagePlugin OPEN_INFO, 9.x) reads the first directory's
 * samples (libtiff for compressed data, its own unpackers for raw) and
 * converts them by layout; the layouts accepted here, with what
 * convert("RGB") then gives:
 *   grey (min-is-black / min-is-white), 1/2/4/8 bits: scaled to 0..255
 *       (v * 255 / (2^bits - 1)), min-is-white inverted; grey + alpha
 *       (8-bit, ExtraSamples = unassociated alpha): alpha dropped;
 *   16-bit min-is-black grey: Pillow's mode "I;16", which convert() clips
 *       at 255 (as for 16-bit PNG);
 *   palette, 1/2/4/8 bits (+ unassociated alpha at 8 bits): colour map
 *       entries v // 256;
 *   RGB, 8 or 16 bits (16: the high byte), plus up to three extra samples:
 *       the first unassociated (or unspecified, or missing ExtraSamples on
 *       4 samples) is dropped, associated alpha is first un-premultiplied
 *       as Pillow's "RGBa" unpacker does (v * 255 / a, truncated; a = 0
 *       gives black), further ones must be unspecified;
 *   CMYK, 8 bits (+ up to two unspecified extras): Pillow's cmyk2rgb;
 *   YCbCr with JPEG compression (contiguous): libjpeg converts to RGB, as
 *       Pillow asks libtiff to (JPEGCOLORMODE_RGB).
 * Strips or tiles, contiguous or separate planes, any compression libtiff
 * decodes, either byte order. Refused (CT_ERR_UNSUPPORTED): signed, float
 * and 12/32-bit samples (Pillow's modes I and F), 16-bit min-is-white grey
 * and 16-bit CMYK (byte-order dependent in Pillow), YCbCr without JPEG
 * compression, LAB and other colour spaces. A strip or tile that libtiff
 * cannot decode completely is an error, where Pillow may keep the part it
 * got (with a warning only). */

/* Largest strip or tile buffer (one plane); libtiff's own allocations are
 * capped a little above it. */
#define TIFF_MAX_BLOCK ((uint64_t)1 << 30)

typedef struct tiff_mem {
    const uint8_t *data;
    uint64_t size, pos;
    char msg[200]; /* libtiff's first error message for this file */
} tiff_mem;

static tmsize_t tiff_read(thandle_t h, void *buf, tmsize_t n) {
    tiff_mem *m = (tiff_mem *)h;
    if (n <= 0 || m->pos >= m->size) return 0;
    uint64_t k = m->size - m->pos;
    if ((uint64_t)n < k) k = (uint64_t)n;
    memcpy(buf, m->data + m->pos, (size_t)k);
    m->pos += k;
    return (tmsize_t)k;
}

static tmsize_t tiff_write(thandle_t h, void *buf, tmsize_t n) {
    (void)h, (void)buf, (void)n;
    return -1;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
    tiff_mem *m = (tiff_mem *)h;
    if (whence == SEEK_SET) {
        m->pos = off;
        return m->pos;
    }
    /* Relative seeks carry negative offsets in two's complement. */
    int64_t base = whence == SEEK_CUR ? (int64_t)m->pos : whence == SEEK_END ? (int64_t)m->size : -1;
    int64_t d = (int64_t)off;
    if (base < 0 || (d < 0 && -d > base) || (d > 0 && d > INT64_MAX - base)) return (toff_t)-1;
    m->pos = (uint64_t)(base + d);
    return m->pos;
}

static int tiff_close(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t tiff_size(thandle_t h) { return ((tiff_mem *)h)->size; }

static int tiff_map(thandle_t h, void **base, toff_t *size) {
    (void)h, (void)base, (void)size;
    return 0;
}

static void tiff_unmap(thandle_t h, void *base, toff_t size) { (void)h, (void)base, (void)size; }

/* Per-file handlers: keep the first error, drop warnings (Pillow ignores
 * them too); returning 1 stops libtiff from calling the global ones. */
static int tiff_on_error(TIFF *tif, void *user, const char *module, const char *fmt,
                         va_list ap) {
    (void)tif, (void)module;
    tiff_mem *m = user;
    if (m && !m->msg[0]) vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    return 1;
}

static int tiff_on_warning(TIFF *tif, void *user, const char *module, const char *fmt,
                           va_list ap) {
    (void)tif, (void)user, (void)module, (void)fmt, (void)ap;
    return 1;
}

/* Some messages (before a TIFF handle exists, or from older code paths) go
 * to the process-wide handlers, which print to stderr by default: silence
 * them once. This is global libtiff state, shared with any other libtiff
 * user in the process. */
static pthread_once_t tiff_once = PTHREAD_ONCE_INIT;
static void tiff_silence(void) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

enum { TIFF_GREY, TIFF_PALETTE, TIFF_RGB, TIFF_CMYK };

typedef struct tiff_layout {
    uint32_t w, h;
    int kind, bits, spp, planes; /* planes: 1 (contiguous) or spp (separate) */
    bool invert;                 /* min-is-white grey */
    bool premultiplied;          /* RGB + associated alpha (sample 3) */
    uint8_t pal[256][3];
} tiff_layout;

/* Whether strip / tile data lies past the end of the file. */
static bool tiff_cut_short(TIFF *tif, uint64_t size) {
    uint32_t n = TIFFNumberOfStrips(tif); /* tiles too */
    for (uint32_t i = 0; i < n; i++) {
        int err = 0;
        uint64_t off = TIFFGetStrileOffsetWithErr(tif, i, &err);
        uint64_t cnt = err ? 0 : TIFFGetStrileByteCountWithErr(tif, i, &err);
        if (!err && (off > size || cnt > size - off)) return true;
    }
    return false;
}

static ct_status tiff_failed(const char *name, const tiff_mem *m, const char *what, bool cut) {
    return ct_set_error(CT_ERR_FORMAT, "%s: TIFF: %s%s%s%s%s", name, what,
                        m->msg[0] ? " (libtiff: " : "", m->msg, m->msg[0] ? ")" : "",
                        cut ? " (the file is truncated)" : "");
}

/* Check the first directory against the layouts above. */
static ct_status tiff_layout_of(TIFF *tif, const tiff_mem *m, const char *name, tiff_layout *L) {
    uint16_t bits = 1, spp = 1, fmt = 1, planar = 1, photo = 0, comp = 1, nx = 0;
    uint16_t *x = NULL;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &L->w) ||
        !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &L->h))
        return tiff_failed(name, m, "no image size in the first directory", false);
    ct_status s = check_size(name, "TIFF", L->w, L->h);
    if (s != CT_OK) return s;
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &nx, &x);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo))
        return tiff_failed(name, m, "no PhotometricInterpretation", false);
    if (nx && !x) nx = 0;
    L->bits = bits;
    L->spp = spp;
    L->planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
    bool ok = false;
    /* Extra samples beyond the colour ones: the first may be alpha, the
     * rest must be unspecified. */
    int base = photo == PHOTOMETRIC_RGB || photo == PHOTOMETRIC_YCBCR ? 3
               : photo == PHOTOMETRIC_SEPARATED                       ? 4
                                                                      : 1;
    bool extras_ok = nx == spp - base;
    for (int i = 1; extras_ok && i < nx; i++) extras_ok = x[i] == EXTRASAMPLE_UNSPECIFIED;
    int first = nx ? x[0] : -1;
    if (fmt == SAMPLEFORMAT_UINT) {
        switch (photo) {
        case PHOTOMETRIC_MINISWHITE:
        case PHOTOMETRIC_MINISBLACK:
            L->kind = TIFF_GREY;
            L->invert = photo == PHOTOMETRIC_MINISWHITE;
            ok = (spp == 1 && (bits == 1 || bits == 2 || bits == 4 || bits == 8 ||
                               (bits == 16 && !L->invert))) ||
                 (spp == 2 && bits == 8 && !L->invert && extras_ok &&
                  first == EXTRASAMPLE_UNASSALPHA);
            break;
        case PHOTOMETRIC_PALETTE:
            L->kind = TIFF_PALETTE;
            ok = (spp == 1 && (bits == 1 || bits == 2 || bits == 4 || bits == 8)) ||
                 (spp == 2 && bits == 8 && extras_ok && first == EXTRASAMPLE_UNASSALPHA);
            break;
        case PHOTOMETRIC_RGB:
            L->kind = TIFF_RGB;
            if (spp == 4 && nx == 0) { /* missing ExtraSamples: Pillow's RGBA */
                ok = bits == 8 || bits == 16;
            } else {
                ok = extras_ok && (bits == 8 ? spp <= 6 : bits == 16 && spp <= 4);
            }
            L->premultiplied = ok && first == EXTRASAMPLE_ASSOCALPHA;
            break;
        case PHOTOMETRIC_SEPARATED:
            L->kind = TIFF_CMYK;
            ok = bits == 8 && spp <= 6 && extras_ok && (nx == 0 || first == 0);
            break;
        case PHOTOMETRIC_YCBCR:
            L->kind = TIFF_RGB;
            ok = bits == 8 && spp == 3 && comp == COMPRESSION_JPEG &&
                 planar == PLANARCONFIG_CONTIG;
            /* libjpeg converts (and upsamples) to RGB; strip sizes follow. */
            if (ok && !TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB)) ok = false;
            break;
        default:
            break;
        }
    }
    if (!ok)
        return ct_set_error(CT_ERR_UNSUPPORTED,
                            "%s: TIFF: unsupported layout (photometric %u, %u samples of %u "
                            "bits, sample format %u, %u extra samples, compression %u); "
                            "supported: 1/2/4/8-bit grey and palette, 16-bit grey, 8/16-bit "
                            "RGB(A), 8-bit CMYK, JPEG-compressed YCbCr",
                            name, photo, spp, bits, fmt, nx, comp);
    if (L->kind == TIFF_PALETTE) {
        uint16_t *r = NULL, *g = NULL, *b = NULL;
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &r, &g, &b) || !r || !g || !b)
            return tiff_failed(name, m, "palette image without a colour map", false);
        for (int i = 0; i < (1 << bits); i++) { /* libtiff has 2^bits entries */
            L->pal[i][0] = (uint8_t)(r[i] >> 8);
            L->pal[i][1] = (uint8_t)(g[i] >> 8);
            L->pal[i][2] = (uint8_t)(b[i] >> 8);
        }
    }
    return CT_OK;
}

/* Sample i of a row of bits-wide samples (16-bit ones in host order, as
 * libtiff returns them; sub-byte ones most significant first). */
static inline unsigned tiff_sample(const uint8_t *row, size_t i, int bits) {
    if (bits == 8) return row[i];
    if (bits == 16) {
        uint16_t v;
        memcpy(&v, row + 2 * i, 2);
        return v;
    }
    size_t bit = i * (size_t)bits;
    return (unsigned)(row[bit >> 3] >> (8 - bits - (int)(bit & 7))) & ((1u << bits) - 1);
}

/* Pillow's "RGBa" unpacker. */
static inline uint8_t unpremultiply(unsigned v, unsigned a) {
    if (a == 255) return (uint8_t)v;
    unsigned u = v * 255 / a;
    return (uint8_t)(u > 255 ? 255 : u);
}

/* Convert rows [0, rows) x columns [0, cols) of a decoded block whose
 * top-left pixel is (x0, y0); row k of plane p starts at buf[p] + k * stride. */
static void tiff_convert(const tiff_layout *L, uint8_t *const *buf, size_t stride, uint32_t x0,
                         uint32_t y0, uint32_t cols, uint32_t rows, ct_image *out) {
    const int bits = L->bits, spp = L->spp;
    const bool sep = L->planes > 1;
    for (uint32_t r = 0; r < rows; r++) {
        const uint8_t *row[6];
        for (int p = 0; p < L->planes; p++) row[p] = buf[p] + (size_t)r * stride;
        uint8_t *d = out->rgb + ((size_t)(y0 + r) * (size_t)L->w + x0) * 3;
        for (uint32_t c = 0; c < cols; c++, d += 3) {
            unsigned v[6];
            int need = L->kind == TIFF_CMYK ? 4 : L->kind == TIFF_RGB ? (L->premultiplied ? 4 : 3) : 1;
            for (int k = 0; k < need; k++)
                v[k] = sep ? tiff_sample(row[k], c, bits)
                           : tiff_sample(row[0], (size_t)c * (size_t)spp + (size_t)k, bits);
            switch (L->kind) {
            case TIFF_GREY: {
                unsigned g = v[0];
                if (bits == 16) {
                    g = g > 255 ? 255 : g;
                } else if (bits < 8) {
                    g = g * 255 / ((1u << bits) - 1);
                }
                if (L->invert) g = 255 - g;
                d[0] = d[1] = d[2] = (uint8_t)g;
                break;
            }
            case TIFF_PALETTE:
                memcpy(d, L->pal[v[0]], 3);
                break;
            case TIFF_RGB:
                if (bits == 16)
                    for (int k = 0; k < need; k++) v[k] >>= 8;
                if (L->premultiplied && v[3] == 0) {
                    d[0] = d[1] = d[2] = 0;
                } else {
                    for (int k = 0; k < 3; k++)
                        d[k] = L->premultiplied ? unpremultiply(v[k], v[3]) : (uint8_t)v[k];
                }
                break;
            default: { /* CMYK: cmyk_row_to_rgb wants Adobe's inverted samples */
                uint8_t inv[4];
                for (int k = 0; k < 4; k++) inv[k] = (uint8_t)(255 - v[k]);
                cmyk_row_to_rgb(inv, d, 1);
                break;
            }
            }
        }
    }
}

static ct_status tiff_body(TIFF *tif, const tiff_mem *m, const char *name, ct_image *out) {
    tiff_layout *L = calloc(1, sizeof *L);
    if (!L) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a TIFF decoder", name);
    ct_status s = tiff_layout_of(tif, m, name, L);
    uint8_t *buf[6] = {0};
    if (s != CT_OK) goto done;
    const bool tiled = TIFFIsTiled(tif) != 0;
    uint32_t bw = L->w, bh = L->h;
    if (tiled) {
        if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &bw) || !TIFFGetField(tif, TIFFTAG_TILELENGTH, &bh) ||
            bw == 0 || bh == 0) {
            s = tiff_failed(name, m, "tiled image without a tile size", false);
            goto done;
        }
    } else {
        uint32_t rps = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps > 0 && rps < bh) bh = rps;
    }
    /* Bytes per block row and per block (one plane), as libtiff sizes them. */
    uint64_t per_px = (uint64_t)(L->planes > 1 ? 1 : L->spp) * (uint64_t)L->bits;
    uint64_t stride = ((uint64_t)bw * per_px + 7) / 8;
    uint64_t bsize = stride * bh;
    uint64_t raw = ((uint64_t)L->w * per_px + 7) / 8 * L->h;
    uint64_t limit = raw > ((uint64_t)64 << 20) ? raw : ((uint64_t)64 << 20);
    if (limit > TIFF_MAX_BLOCK) limit = TIFF_MAX_BLOCK;
    if (bsize > limit) {
        s = ct_set_error(CT_ERR_UNSUPPORTED,
                         "%s: TIFF: a %s of %llu bytes (%ux%u pixels) is over the limit of %llu",
                         name, tiled ? "tile" : "strip", (unsigned long long)bsize, bw, bh,
                         (unsigned long long)limit);
        goto done;
    }
    for (int p = 0; p < L->planes; p++) {
        if (!(buf[p] = malloc((size_t)bsize))) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a TIFF %s of %llu bytes", name,
                             tiled ? "tile" : "strip", (unsigned long long)bsize);
            goto done;
        }
    }
    s = alloc_image(name, (int)L->w, (int)L->h, out);
    if (s != CT_OK) goto done;
    for (uint32_t y0 = 0; y0 < L->h; y0 += bh) {
        uint32_t rows = L->h - y0 < bh ? L->h - y0 : bh;
        for (uint32_t x0 = 0; x0 < L->w; x0 += bw) {
            uint32_t cols = L->w - x0 < bw ? L->w - x0 : bw;
            for (int p = 0; p < L->planes; p++) {
                tmsize_t got;
                uint32_t idx;
                if (tiled) {
                    idx = TIFFComputeTile(tif, x0, y0, 0, (uint16_t)p);
                    got = TIFFReadEncodedTile(tif, idx, buf[p], (tmsize_t)bsize);
                } else {
                    idx = TIFFComputeStrip(tif, y0, (uint16_t)p);
                    got = TIFFReadEncodedStrip(tif, idx, buf[p], (tmsize_t)bsize);
                }
                if (got < 0 || (uint64_t)got < stride * rows) {
                    char what[96];
                    snprintf(what, sizeof what, "cannot decode %s %u%s", tiled ? "tile" : "strip",
                             idx, got >= 0 ? " completely" : "");
                    s = tiff_failed(name, m, what, tiff_cut_short(tif, m->size));
                    goto done;
                }
            }
            tiff_convert(L, buf, (size_t)stride, x0, y0, cols, rows, out);
        }
    }
done:
    for (int p = 0; p < 6; p++) free(buf[p]);
    free(L);
    return s;
}

static ct_status decode_tiff(const uint8_t *data, size_t size, const char *name,
                             ct_image *out) {
    pthread_once(&tiff_once, tiff_silence);
    tiff_mem *m = calloc(1, sizeof *m);
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!m || !opts) {
        free(m);
        if (opts) TIFFOpenOptionsFree(opts);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate a TIFF decoder", name);
    }
    m->data = data;
    m->size = size;
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)(TIFF_MAX_BLOCK + ((uint64_t)1 << 24)));
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, m);
    /* "m": no memory mapping; reads go through tiff_read. */
    TIFF *tif = TIFFClientOpenExt(name, "rm", (thandle_t)m, tiff_read, tiff_write, tiff_seek,
                                  tiff_close, tiff_size, tiff_map, tiff_unmap, opts);
    TIFFOpenOptionsFree(opts);
    ct_status s;
    if (!tif) {
        s = tiff_failed(name, m, "cannot read the header or the first directory", false);
    } else {
        s = tiff_body(tif, m, name, out);
        TIFFClose(tif);
    }
    free(m);
    return s;
}

/* ------------------------------------------------------------------------ */
/* WebP (libwebp)                                                            */
/* ------------------------------------------------------------------------ */

/* Pillow (WebPImagePlugin with libwebp's animation decoder, 9.x) decodes
 * every WebP through WebPAnimDecoder to non-premultiplied RGBA and
 * convert("RGB") drops the alpha. A still image is that frame decoded with
 * libwebp's default options, which WebPDecode gives here straight into RGB
 * (the same colour values: alpha is a separate plane, not applied); an
 * animation goes through WebPAnimDecoder like Pillow's, and its first frame
 * is composed on a canvas that starts transparent black. */

static const char *webp_status(VP8StatusCode c) {
    switch (c) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data: the file is truncated";
    default: return "error";
    }
}

static ct_status webp_failed(const char *name, const char *what, VP8StatusCode c) {
    return ct_set_error(c == VP8_STATUS_OUT_OF_MEMORY ? CT_ERR_NOMEM : CT_ERR_FORMAT,
                        "%s: WebP: %s (%s)", name, what, webp_status(c));
}

static ct_status webp_first_frame(const uint8_t *data, size_t size, const char *name, int w,
                                  int h, ct_image *out) {
    WebPAnimDecoderOptions o;
    if (!WebPAnimDecoderOptionsInit(&o))
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: WebP: libwebpdemux version mismatch", name);
    o.color_mode = MODE_RGBA;
    o.use_threads = 0;
    WebPData wd = {data, size};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &o);
    if (!dec)
        return ct_set_error(CT_ERR_FORMAT, "%s: WebP: cannot read the animation (corrupt or "
                                           "truncated file)", name);
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int ts = 0;
    ct_status s = CT_OK;
    if (!WebPAnimDecoderGetInfo(dec, &info) || (int64_t)info.canvas_width != w ||
        (int64_t)info.canvas_height != h) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: WebP: animation canvas differs from the header",
                         name);
    } else if (!WebPAnimDecoderGetNext(dec, &rgba, &ts) || !rgba) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: WebP: cannot decode the first frame (corrupt or "
                                        "truncated file)", name);
    } else {
        s = alloc_image(name, w, h, out);
        if (s == CT_OK) {
            size_t n = (size_t)w * (size_t)h;
            for (size_t i = 0; i < n; i++) memcpy(out->rgb + 3 * i, rgba + 4 * i, 3);
        }
    }
    WebPAnimDecoderDelete(dec);
    return s;
}

static ct_status decode_webp(const uint8_t *data, size_t size, const char *name,
                             ct_image *out) {
    WebPBitstreamFeatures f;
    VP8StatusCode c = WebPGetFeatures(data, size, &f);
    if (c != VP8_STATUS_OK) return webp_failed(name, "cannot read the header", c);
    ct_status s = check_size(name, "WebP", f.width, f.height);
    if (s != CT_OK) return s;
    if (f.has_animation) return webp_first_frame(data, size, name, f.width, f.height, out);
    s = alloc_image(name, f.width, f.height, out);
    if (s != CT_OK) return s;
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg))
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: WebP: libwebp version mismatch", name);
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = out->rgb;
    cfg.output.u.RGBA.stride = f.width * 3;
    cfg.output.u.RGBA.size = (size_t)f.width * (size_t)f.height * 3;
    c = WebPDecode(data, size, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (c != VP8_STATUS_OK) return webp_failed(name, "cannot decode", c);
    if (cfg.output.width != f.width || cfg.output.height != f.height)
        return ct_set_error(CT_ERR_FORMAT, "%s: WebP: decoded size %dx%d differs from the header",
                            name, cfg.output.width, cfg.output.height);
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

ct_status ct_image_decode(const uint8_t *data, size_t size, const char *name, ct_image *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_image_decode: NULL output");
    memset(out, 0, sizeof *out);
    name = name_or_memory(name);
    if (!data && size) return ct_set_error(CT_ERR_ARG, "%s: NULL data", name);
    if (size == 0) return ct_set_error(CT_ERR_FORMAT, "%s: empty file, not an image", name);
    ct_status s;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
        s = decode_jpeg(data, size, name, out);
    } else if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) {
        s = decode_png(data, size, name, out);
    } else if (size >= 2 && data[0] == 'B' && data[1] == 'M') {
        s = decode_bmp(data, size, name, out);
    } else if (size >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0)) {
        s = decode_gif(data, size, name, out);
    } else if (size >= 3 && data[0] == 'P' && data[1] >= '1' && data[1] <= '6' &&
               pnm_space(data[2])) {
        s = decode_pnm(data, size, name, out);
    } else if (size >= 4 && (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "MM\0*", 4) == 0 ||
                             memcmp(data, "II+\0", 4) == 0 || memcmp(data, "MM\0+", 4) == 0)) {
        s = decode_tiff(data, size, name, out); /* classic TIFF or BigTIFF */
    } else if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) {
        s = decode_webp(data, size, name, out);
    } else {
        return ct_set_error(CT_ERR_FORMAT,
                            "%s: not a recognised image (JPEG, PNG, BMP, GIF, PNM, TIFF or "
                            "WebP expected; "
                            "first bytes %02x %02x %02x %02x)",
                            name, data[0], size > 1 ? data[1] : 0, size > 2 ? data[2] : 0,
                            size > 3 ? data[3] : 0);
    }
    if (s != CT_OK) ct_image_free(out);
    return s;
}

ct_status ct_image_load(const char *path, ct_image *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_image_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_image_load: NULL path");
    char *data;
    size_t size;
    ct_status s = ct_read_file(path, &data, &size);
    if (s != CT_OK) return s;
    s = ct_image_decode((const uint8_t *)data, size, path, out);
    free(data);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Alpha (pretraining augmentation composites transparent images)            */
/* ------------------------------------------------------------------------ */

/* The alpha plane of a PNG that ct_image_decode accepted as w x h. stb
 * decodes it to RGBA; a palette shorter than the bit depth allows is first
 * padded (as decode_png pads it) so that out-of-range indices read a
 * defined, opaque entry instead of stb's uninitialised ones. When stb cannot
 * decode the file as given (Pillow-tolerated damage that decode_png repairs),
 * *alpha stays NULL. */
static ct_status png_alpha(const uint8_t *data, size_t size, const char *name, int w, int h,
                           uint8_t **alpha) {
    int depth = data[24], ctype = data[25];
    bool trns = false;
    size_t plte_at = 0, plte_len = 0;
    for (size_t pos = 8; size - pos >= 12;) {
        uint32_t len = be32(data + pos);
        const uint8_t *type = data + pos + 4;
        if (memcmp(type, "IDAT", 4) == 0 || len > size - pos - 12) break;
        if (memcmp(type, "tRNS", 4) == 0) trns = true;
        if (memcmp(type, "PLTE", 4) == 0) {
            plte_at = pos;
            plte_len = len;
        }
        pos += 12 + (size_t)len;
    }
    if (ctype != 4 && ctype != 6 && !trns) return CT_OK;
    uint8_t *patched = NULL;
    if (ctype == 3 && plte_at && plte_len % 3 == 0 && plte_len < 768 && depth <= 8 &&
        plte_len / 3 < (1u << depth)) {
        size_t nsize = size + 768 - plte_len;
        if (!(patched = malloc(nsize)))
            return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, nsize);
        uint8_t pal[768];
        memcpy(pal, data + plte_at + 8, plte_len);
        for (size_t i = plte_len / 3; i < 256; i++)
            pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
        memcpy(patched, data, plte_at);
        uint8_t *q = png_put_chunk(patched + plte_at, "PLTE", pal, 768);
        size_t from = plte_at + 12 + plte_len;
        memcpy(q, data + from, size - from);
        data = patched;
        size = nsize;
    }
    int sw = 0, sh = 0, comp;
    uint8_t *p = size <= INT_MAX ? stbi_load_from_memory(data, (int)size, &sw, &sh, &comp, 4)
                                 : NULL;
    free(patched);
    ct_status s = CT_OK;
    if (p && sw == w && sh == h) {
        size_t n = (size_t)w * (size_t)h;
        if (!(*alpha = malloc(n))) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the alpha plane", name);
        } else {
            for (size_t i = 0; i < n; i++) (*alpha)[i] = p[4 * i + 3];
        }
    }
    stbi_image_free(p);
    return s;
}

ct_status ct_image_decode_alpha(const uint8_t *data, size_t size, const char *name,
                                ct_image *out, uint8_t **alpha) {
    if (alpha) *alpha = NULL;
    if (!alpha) {
        if (out) memset(out, 0, sizeof *out);
        return ct_set_error(CT_ERR_ARG, "ct_image_decode_alpha: NULL alpha output");
    }
    ct_status s = ct_image_decode(data, size, name, out);
    if (s == CT_OK && size >= 33 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        s = png_alpha(data, size, name_or_memory(name), out->w, out->h, alpha);
    if (s != CT_OK) ct_image_free(out);
    return s;
}

ct_status ct_image_load_alpha(const char *path, ct_image *out, uint8_t **alpha) {
    if (alpha) *alpha = NULL;
    if (!out || !alpha) {
        if (out) memset(out, 0, sizeof *out);
        return ct_set_error(CT_ERR_ARG, "ct_image_load_alpha: NULL output");
    }
    memset(out, 0, sizeof *out);
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_image_load_alpha: NULL path");
    char *data;
    size_t size;
    ct_status s = ct_read_file(path, &data, &size);
    if (s != CT_OK) return s;
    s = ct_image_decode_alpha((const uint8_t *)data, size, path, out, alpha);
    free(data);
    return s;
}
