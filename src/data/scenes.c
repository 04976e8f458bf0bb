/* The scenes demonstration set: multi-label classification and semantic
 * segmentation scenes made of Fashion-MNIST items, written in the real
 * PASCAL VOC (2007/2012 layout) and COCO formats so that a VOC or COCO
 * reader takes it as it takes a user's folder (docs/datasets.md, "The
 * scenes demonstration set").
 *
 * A scene: canvas x canvas RGB, black; a 2x2 grid of cells canvas/2 wide;
 * n ~ U{1,2,3} items in n distinct random cells, each a random image of a
 * uniformly random class (repeats allowed), at a random offset inside its
 * cell (none at canvas 56), multiplied by a random colour (hue uniform,
 * saturation 1 - s/255 with s ~ U{0..160}, value 1: the colour says nothing
 * about the class). An item's mask is its pixels with intensity > 30;
 * images whose mask has under 16 pixels are redrawn. Cells are disjoint,
 * so items never overlap.
 *
 * Everything is integer arithmetic on ct_rng draws: scene k of a split uses
 * the stream split(split(seed, split + 1), k) and nothing else, so a scene
 * is the same whatever the sizes of the splits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "base/dist.h"
#include "base/error.h"
#include "base/file.h"
#include "data/dataset.h"
#include "data/png_write.h"

#define PATH_BUF 4096
#define FM_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define ITEM 28            /* Fashion-MNIST side */
#define MASK_THRESHOLD 30  /* mask: intensity > this */
#define MIN_MASK 16        /* fewer mask pixels: draw another image */
#define MAX_REDRAWS 1000
#define JPEG_QUALITY 95
#define CANVAS_MIN (2 * ITEM)
#define CANVAS_MAX 1024
#define MAX_SCENES 999999  /* six-digit VOC ids */
#define N_CLASSES 10
#define VOID 255           /* VOC's "void" label: the border around objects */

/* Identifiers (XML <name>, ImageSets/Main/<name>_*.txt, the CSV labels) in
 * byte order, which is the class order everywhere (mask value c + 1, COCO
 * category c + 1, classnames.txt line c + 1): a VOC reader that derives
 * its classes from the ImageSets/Main file names sorts them the same way. */
static const struct {
    const char *id;
    int fm;                 /* Fashion-MNIST label */
    const char *super;      /* COCO supercategory */
} CLASSES[N_CLASSES] = {
    {"ankle_boot", 9, "footwear"}, {"bag", 8, "accessory"},     {"coat", 4, "clothing"},
    {"dress", 3, "clothing"},      {"pullover", 2, "clothing"}, {"sandal", 5, "footwear"},
    {"shirt", 6, "clothing"},      {"sneaker", 7, "footwear"},  {"trouser", 1, "clothing"},
    {"tshirt", 0, "clothing"},
};

static const char *const SPLIT_NAMES[3] = {"train", "val", "test"};

/* The nouns the train split's captions use for each class (CLASSES order),
 * the first one the class's own; annotations/synonyms.txt lists them in
 * TaI-DPT's suppl/synonyms_*.txt form, which is how a caption-trained method
 * labels the captions. PLURAL: the word is used as "a pair of <word>". */
#define N_WORDS 3
static const struct {
    const char *w[N_WORDS];
    bool plural;
} WORDS[N_CLASSES] = {
    {{"ankle boot", "boot", "bootee"}, false},  {{"bag", "handbag", "purse"}, false},
    {{"coat", "jacket", "overcoat"}, false},    {{"dress", "gown", "frock"}, false},
    {{"pullover", "sweater", "jumper"}, false}, {{"sandal", "flip-flop", "slide"}, false},
    {{"shirt", "blouse", "button-up"}, false},  {{"sneaker", "running shoe", "trainer"}, false},
    {{"trousers", "pants", "jeans"}, true},     {{"t-shirt", "tee", "top"}, false},
};

/* Caption templates; %s is the list of items ("a red bag and a boot"). */
static const char *const CAPTION_TEMPLATES[] = {
    "a photo of %s.",           "a dark photo with %s.",  "%s on a black background.",
    "a picture of %s.",         "there is %s in the picture.", "a close-up photo of %s.",
    "an image showing %s.",     "%s lying in the dark.",
};
#define N_CAPTION_TEMPLATES (int)(sizeof CAPTION_TEMPLATES / sizeof CAPTION_TEMPLATES[0])
#define CAPTIONS_PER_SCENE 2

/* ------------------------------------------------------------------------ */
/* A growing text buffer; one allocation failure sticks until written.       */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n <= (size_t)k) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
}

static void sb_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static ct_status out_path(char *buf, const char *out,
                                                                 const char *fmt, ...) {
    size_t k = (size_t)snprintf(buf, PATH_BUF, "%s/", out);
    va_list ap;
    va_start(ap, fmt);
    int m = k < PATH_BUF ? vsnprintf(buf + k, PATH_BUF - k, fmt, ap) : -1;
    va_end(ap);
    if (m < 0 || k + (size_t)m >= PATH_BUF)
        return ct_set_error(CT_ERR_ARG, "%s: output path too long", out);
    return CT_OK;
}

static ct_status write_sbuf(const char *path, const sbuf *b) {
    if (b->failed) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory building it", path);
    return ct_write_file_atomic_nosync(path, b->p ? b->p : "", b->n);
}

/* ------------------------------------------------------------------------ */
/* JPEG (libjpeg) into memory                                              */
/* ------------------------------------------------------------------------ */

typedef struct jpeg_enc {
    struct jpeg_error_mgr err; /* first: libjpeg hands callbacks only cinfo->err */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    struct jpeg_compress_struct ci;
    unsigned char *buf;
    unsigned long size;
} jpeg_enc;

static void jpeg_fail(j_common_ptr ci) {
    jpeg_enc *e = (jpeg_enc *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_quiet(j_common_ptr ci) { (void)ci; }

ct_status ct_data_write_jpeg(const char *path, const uint8_t *rgb, int w, int h) {
    jpeg_enc *e = calloc(1, sizeof *e);
    if (!e) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    ct_status s = CT_OK;
    e->ci.err = jpeg_std_error(&e->err);
    e->err.error_exit = jpeg_fail;
    e->err.output_message = jpeg_quiet;
    if (setjmp(e->jb)) {
        s = ct_set_error(CT_ERR_IO, "%s: JPEG encoding failed: %s", path, e->msg);
    } else {
        jpeg_create_compress(&e->ci);
        jpeg_mem_dest(&e->ci, &e->buf, &e->size);
        e->ci.image_width = (JDIMENSION)w;
        e->ci.image_height = (JDIMENSION)h;
        e->ci.input_components = 3;
        e->ci.in_color_space = JCS_RGB;
        jpeg_set_defaults(&e->ci);
        jpeg_set_quality(&e->ci, JPEG_QUALITY, TRUE);
        jpeg_start_compress(&e->ci, TRUE);
        while (e->ci.next_scanline < e->ci.image_height) {
            JSAMPROW row = (JSAMPROW)(rgb + (size_t)e->ci.next_scanline * (size_t)w * 3);
            jpeg_write_scanlines(&e->ci, &row, 1);
        }
        jpeg_finish_compress(&e->ci);
        s = ct_write_file_atomic_nosync(path, e->buf, e->size);
    }
    jpeg_destroy_compress(&e->ci);
    free(e->buf);
    free(e);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Scenes                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct item {
    int cls;                /* index into CLASSES */
    int64_t row;            /* pixel-store row of the Fashion-MNIST image */
    int x0, y0;             /* top-left of the 28x28 image on the canvas */
    uint8_t colour[3];
    int bx0, by0, bx1, by1; /* mask bounding box, 0-based inclusive */
    int64_t area;           /* mask pixels */
} item;

typedef struct scene {
    int n;
    item it[3];
} scene;

/* The images of one source split, by class. */
typedef struct pool {
    const ct_dataset *d;
    int64_t *rows[N_CLASSES];
    int64_t n[N_CLASSES];
} pool;

static void pool_free(pool *p) {
    for (int c = 0; c < N_CLASSES; c++) free(p->rows[c]);
    memset(p, 0, sizeof *p);
}

static ct_status pool_build(pool *p, const ct_dataset *d, const char *what) {
    memset(p, 0, sizeof *p);
    p->d = d;
    int cls_of_fm[N_CLASSES];
    for (int c = 0; c < N_CLASSES; c++) cls_of_fm[CLASSES[c].fm] = c;
    for (int c = 0; c < N_CLASSES; c++)
        if (!(p->rows[c] = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof(int64_t)))) {
            pool_free(p);
            return ct_set_error(CT_ERR_NOMEM, "scenes: out of memory");
        }
    for (int64_t i = 0; i < d->n_items; i++) {
        int c = cls_of_fm[d->items[i].label];
        p->rows[c][p->n[c]++] = d->items[i].index;
    }
    for (int c = 0; c < N_CLASSES; c++)
        if (!p->n[c]) {
            pool_free(p);
            return ct_set_error(CT_ERR_FORMAT, "scenes: Fashion-MNIST's %s has no image of "
                                "class %d (%s)", what, CLASSES[c].fm, CLASSES[c].id);
        }
    return CT_OK;
}

static int64_t mask_pixels(const uint8_t *img) {
    int64_t n = 0;
    for (int i = 0; i < ITEM * ITEM; i++) n += img[i] > MASK_THRESHOLD;
    return n;
}

/* A fully saturated hue (0..1535, six 256-step sectors) whitened by s/255. */
static void hue_colour(int hue, int s, uint8_t rgb[3]) {
    int f = hue & 255, c[3];
    switch (hue >> 8) {
    case 0: c[0] = 255, c[1] = f, c[2] = 0; break;
    case 1: c[0] = 255 - f, c[1] = 255, c[2] = 0; break;
    case 2: c[0] = 0, c[1] = 255, c[2] = f; break;
    case 3: c[0] = 0, c[1] = 255 - f, c[2] = 255; break;
    case 4: c[0] = f, c[1] = 0, c[2] = 255; break;
    default: c[0] = 255, c[1] = 0, c[2] = 255 - f; break;
    }
    for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)(c[k] + ((255 - c[k]) * s + 127) / 255);
}

/* Draw scene k's layout; the rendering fills the boxes and areas. */
static ct_status draw_scene(const pool *p, const ct_rng *split_rng, int64_t k, int canvas,
                            scene *sc) {
    ct_rng r = ct_rng_split(split_rng, (uint64_t)k);
    const ct_pixel_store *px = p->d->pixels;
    int cell = canvas / 2;
    int64_t cells[4];
    sc->n = 1 + (int)ct_rng_below(&r, 3);
    ct_rng_permutation(&r, cells, 4);
    for (int i = 0; i < sc->n; i++) {
        item *it = &sc->it[i];
        memset(it, 0, sizeof *it);
        it->cls = (int)ct_rng_below(&r, N_CLASSES);
        int tries = 0;
        do {
            if (++tries > MAX_REDRAWS)
                return ct_set_error(CT_ERR_FORMAT, "scenes: no %s image of Fashion-MNIST's %s "
                                    "has %d pixels above %d in %d draws", CLASSES[it->cls].id,
                                    px->name, MIN_MASK, MASK_THRESHOLD, MAX_REDRAWS);
            it->row = p->rows[it->cls][ct_rng_below(&r, (uint64_t)p->n[it->cls])];
        } while (mask_pixels(px->data + (size_t)it->row * ct_pixel_store_stride(px)) < MIN_MASK);
        int cx = (int)(cells[i] % 2) * cell, cy = (int)(cells[i] / 2) * cell;
        it->x0 = cx + (int)ct_rng_below(&r, (uint64_t)(cell - ITEM + 1));
        it->y0 = cy + (int)ct_rng_below(&r, (uint64_t)(cell - ITEM + 1));
        int hue = (int)ct_rng_below(&r, 1536), sat = (int)ct_rng_below(&r, 161);
        hue_colour(hue, sat, it->colour);
    }
    return CT_OK;
}

/* rgb (S, S, 3), label (S, S): 0 background, c + 1, VOID on the 8-connected
 * ring of background pixels around the masks; owner (S, S): item + 1 on
 * its mask. Fills the items' boxes and areas. */
static void render_scene(const pool *p, scene *sc, int S, uint8_t *rgb, uint8_t *label,
                         uint8_t *owner) {
    const ct_pixel_store *px = p->d->pixels;
    memset(rgb, 0, (size_t)S * S * 3);
    memset(label, 0, (size_t)S * S);
    memset(owner, 0, (size_t)S * S);
    for (int i = 0; i < sc->n; i++) {
        item *it = &sc->it[i];
        const uint8_t *img = px->data + (size_t)it->row * ct_pixel_store_stride(px);
        it->bx0 = it->by0 = S, it->bx1 = it->by1 = -1, it->area = 0;
        for (int y = 0; y < ITEM; y++)
            for (int x = 0; x < ITEM; x++) {
                int v = img[y * ITEM + x];
                size_t o = (size_t)(it->y0 + y) * S + (size_t)(it->x0 + x);
                for (int c = 0; c < 3; c++)
                    rgb[3 * o + c] = (uint8_t)((v * it->colour[c] + 127) / 255);
                if (v <= MASK_THRESHOLD) continue;
                label[o] = (uint8_t)(it->cls + 1);
                owner[o] = (uint8_t)(i + 1);
                int gx = it->x0 + x, gy = it->y0 + y;
                if (gx < it->bx0) it->bx0 = gx;
                if (gx > it->bx1) it->bx1 = gx;
                if (gy < it->by0) it->by0 = gy;
                if (gy > it->by1) it->by1 = gy;
                it->area++;
            }
    }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            if (owner[(size_t)y * S + x]) continue;
            bool near = false;
            for (int dy = -1; dy <= 1 && !near; dy++)
                for (int dx = -1; dx <= 1 && !near; dx++) {
                    int yy = y + dy, xx = x + dx;
                    near = yy >= 0 && yy < S && xx >= 0 && xx < S && owner[(size_t)yy * S + xx];
                }
            if (near) label[(size_t)y * S + x] = VOID;
        }
}

static void append_xml(sbuf *b, const char *id, const scene *sc, int S) {
    sb_printf(b, "<annotation>\n\t<folder>scenes</folder>\n\t<filename>%s.jpg</filename>\n"
                 "\t<source>\n\t\t<database>cliptune scenes (Fashion-MNIST)</database>\n"
                 "\t\t<annotation>cliptune make-scenes</annotation>\n"
                 "\t\t<image>Fashion-MNIST</image>\n\t</source>\n"
                 "\t<size>\n\t\t<width>%d</width>\n\t\t<height>%d</height>\n"
                 "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>1</segmented>\n", id, S, S);
    for (int i = 0; i < sc->n; i++) {
        const item *it = &sc->it[i];
        /* VOC boxes: 1-based, inclusive */
        sb_printf(b, "\t<object>\n\t\t<name>%s</name>\n\t\t<pose>Unspecified</pose>\n"
                     "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
                     "\t\t<bndbox>\n\t\t\t<xmin>%d</xmin>\n\t\t\t<ymin>%d</ymin>\n"
                     "\t\t\t<xmax>%d</xmax>\n\t\t\t<ymax>%d</ymax>\n\t\t</bndbox>\n"
                     "\t</object>\n", CLASSES[it->cls].id, it->bx0 + 1, it->by0 + 1,
                  it->bx1 + 1, it->by1 + 1);
    }
    sb_printf(b, "</annotation>\n");
}

/* One COCO annotation per item (appended to b after a ",\n" when b is not
 * empty): bbox [x, y, w, h] of the mask (0-based pixel edges), area = mask
 * pixels, segmentation = the mask as COCO's uncompressed RLE (column-major
 * runs, starting with background), and an extra field "fashion_mnist":
 * "<idx>#<row>", the source image (idx "train" or "t10k", row 0-based in
 * that IDX file). */
static void append_coco_annotations(sbuf *b, int64_t *ann_id, int64_t image_id,
                                    const scene *sc, const uint8_t *owner, int S,
                                    const char *idx) {
    for (int i = 0; i < sc->n; i++) {
        const item *it = &sc->it[i];
        sb_printf(b, "%s{\"id\": %lld, \"image_id\": %lld, \"category_id\": %d, "
                     "\"bbox\": [%d.0, %d.0, %d.0, %d.0], \"area\": %lld, \"iscrowd\": 0, "
                     "\"fashion_mnist\": \"%s#%lld\", "
                     "\"segmentation\": {\"size\": [%d, %d], \"counts\": [",
                  b->n ? ",\n" : "", (long long)*ann_id, (long long)image_id,
                  it->cls + 1, it->bx0, it->by0, it->bx1 - it->bx0 + 1, it->by1 - it->by0 + 1,
                  (long long)it->area, idx, (long long)it->row, S, S);
        uint8_t want = 0; /* runs alternate: background first */
        int64_t run = 0;
        bool first = true;
        for (int x = 0; x < S; x++)
            for (int y = 0; y < S; y++) {
                uint8_t in = owner[(size_t)y * S + x] == i + 1;
                if (in != want) {
                    sb_printf(b, first ? "%lld" : ", %lld", (long long)run);
                    first = false;
                    want = in, run = 0;
                }
                run++;
            }
        sb_printf(b, first ? "%lld]}}" : ", %lld]}}", (long long)run);
        (*ann_id)++;
    }
}

/* A colour word for an item's tint (hue sectors of its RGB; "pale" when
 * whitened by more than 110/255). */
static const char *colour_word(const uint8_t c[3], bool *pale) {
    int mx = c[0] > c[1] ? c[0] : c[1], mn = c[0] < c[1] ? c[0] : c[1];
    mx = mx > c[2] ? mx : c[2], mn = mn < c[2] ? mn : c[2];
    *pale = mn > 110;
    int d = mx - mn;
    if (d == 0) return "white";
    double h;
    if (mx == c[0]) h = 60.0 * (double)(c[1] - c[2]) / d;
    else if (mx == c[1]) h = 60.0 * (2.0 + (double)(c[2] - c[0]) / d);
    else h = 60.0 * (4.0 + (double)(c[0] - c[1]) / d);
    if (h < 0) h += 360;
    return h < 20    ? "red"
           : h < 45  ? "orange"
           : h < 70  ? "yellow"
           : h < 160 ? "green"
           : h < 200 ? "cyan"
           : h < 255 ? "blue"
           : h < 290 ? "purple"
           : h < 335 ? "pink"
                     : "red";
}

/* CAPTIONS_PER_SCENE COCO caption annotations of scene sc (appended to b
 * after ",\n" when b is not empty): a template, the items in a random
 * order, each named by a random one of its class's words, with its colour
 * half of the time. r: the scene's own caption stream. */
static void append_captions(sbuf *b, int64_t *cap_id, int64_t image_id, const scene *sc,
                            ct_rng *r) {
    for (int c = 0; c < CAPTIONS_PER_SCENE; c++) {
        int64_t order[3];
        ct_rng_permutation(r, order, (size_t)sc->n);
        char list[256];
        size_t n = 0;
        for (int i = 0; i < sc->n; i++) {
            const item *it = &sc->it[order[i]];
            const char *w = WORDS[it->cls].w[ct_rng_below(r, N_WORDS)];
            bool pale, col = ct_rng_below(r, 2) == 1;
            const char *cw = colour_word(it->colour, &pale);
            char adj[32] = "";
            if (col) snprintf(adj, sizeof adj, "%s%s ", pale ? "pale " : "", cw);
            const char *sep = i == 0 ? "" : i + 1 == sc->n ? " and " : ", ";
            const char *art = WORDS[it->cls].plural           ? "a pair of "
                              : strchr("aeiou", (adj[0] ? adj : w)[0]) ? "an "
                                                                      : "a ";
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s%s%s", sep, art, adj, w);
        }
        char text[320];
        snprintf(text, sizeof text, CAPTION_TEMPLATES[ct_rng_below(r, N_CAPTION_TEMPLATES)],
                 list);
        text[0] = (char)(text[0] >= 'a' && text[0] <= 'z' ? text[0] - 32 : text[0]);
        sb_printf(b, "%s{\"image_id\": %lld, \"id\": %lld, \"caption\": \"%s\"}",
                  b->n ? ",\n" : "", (long long)image_id, (long long)*cap_id, text);
        (*cap_id)++;
    }
}

/* annotations/synonyms.txt: WORDS in TaI-DPT's {'a','b'} form. */
static ct_status write_synonyms(const char *out) {
    char path[PATH_BUF];
    ct_status s = out_path(path, out, "annotations/synonyms.txt");
    if (s != CT_OK) return s;
    sbuf b = {0};
    for (int c = 0; c < N_CLASSES; c++) {
        sb_printf(&b, "{");
        for (int j = 0; j < N_WORDS; j++) sb_printf(&b, "%s'%s'", j ? "," : "", WORDS[c].w[j]);
        sb_printf(&b, "}\n");
    }
    s = write_sbuf(path, &b);
    sb_free(&b);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                    */
/* ------------------------------------------------------------------------ */

ct_scenes_cfg ct_scenes_cfg_default(void) {
    ct_scenes_cfg c = {NULL, 2000, 200, 1000, 0, CANVAS_MIN};
    return c;
}

static ct_status check_cfg(const ct_scenes_cfg *cfg, const char *out_dir) {
    if (!cfg) return ct_set_error(CT_ERR_ARG, "scenes: no configuration given");
    if (!out_dir || !*out_dir) return ct_set_error(CT_ERR_ARG, "scenes: no output folder given");
    const int n[3] = {cfg->n_train, cfg->n_val, cfg->n_test};
    for (int s = 0; s < 3; s++)
        if (n[s] < 0)
            return ct_set_error(CT_ERR_ARG, "scenes: n_%s is %d (a number of scenes, 0 or more)",
                                SPLIT_NAMES[s], n[s]);
    if ((int64_t)n[0] + n[1] + n[2] > MAX_SCENES)
        return ct_set_error(CT_ERR_ARG, "scenes: %lld scenes in all; at most %d (six-digit ids)",
                            (long long)n[0] + n[1] + n[2], MAX_SCENES);
    if (cfg->canvas < CANVAS_MIN || cfg->canvas > CANVAS_MAX)
        return ct_set_error(CT_ERR_ARG, "scenes: canvas %d outside %d..%d (a 2x2 grid of cells "
                            "that hold a %dx%d Fashion-MNIST image)", cfg->canvas, CANVAS_MIN,
                            CANVAS_MAX, ITEM, ITEM);
    return CT_OK;
}

static ct_status write_readme(const char *out, const ct_scenes_cfg *cfg, const char *fm_dir,
                              char *const *names) {
    char path[PATH_BUF];
    ct_status s = out_path(path, out, "README.txt");
    if (s != CT_OK) return s;
    sbuf b = {0};
    sb_printf(&b,
        "Fashion-MNIST scenes: a demonstration set for multi-label classification and\n"
        "semantic segmentation, in the PASCAL VOC (2007/2012) and COCO formats.\n"
        "\n"
        "Generator: cliptune %s, ct_data_make_scenes (cliptune make-scenes)\n"
        "Source:    Fashion-MNIST IDX files in %s\n"
        "Seed:      %llu\n"
        "Scenes:    train %d, val %d, test %d (ids 000001.. numbered across the splits)\n"
        "Canvas:    %dx%d RGB, black, a 2x2 grid of %dx%d cells\n"
        "\n"
        "Each scene holds 1-3 items (uniform), each a random Fashion-MNIST image of a\n"
        "uniformly random class (classes may repeat), in distinct random cells at a\n"
        "random offset inside the cell, multiplied by a random colour (random hue,\n"
        "random saturation, full value; independent of the class). Train scenes take\n"
        "their images from Fashion-MNIST's train file less the held-out 10%% per class\n"
        "that cliptune's fashion-mnist spec calls val; val scenes from that 10%%; test\n"
        "scenes from the t10k file. No image is used by two splits.\n"
        "\n"
        "An item's mask is its pixels with intensity > %d (images with fewer than %d\n"
        "such pixels are redrawn); its box is the mask's bounding box.\n"
        "\n"
        "Files:\n"
        "  JPEGImages/<id>.jpg               the scene, JPEG quality %d (libjpeg, 4:2:0)\n"
        "  Annotations/<id>.xml              VOC XML: one <object> per item, <name> the\n"
        "                                    class identifier, <bndbox> 1-based inclusive\n"
        "  SegmentationClass/<id>.png        8-bit palette PNG, VOC's colour map: 0\n"
        "                                    background, c+1 for class c, 255 (void) on\n"
        "                                    the 1-pixel ring around each object\n"
        "  ImageSets/Main/{train,val,trainval,test}.txt          ids\n"
        "  ImageSets/Main/<class>_{train,val,trainval,test}.txt   '<id>  1' or '<id> -1'\n"
        "  ImageSets/Segmentation/{train,val,trainval,test}.txt  ids (all are segmented)\n"
        "  annotations/instances_{train,val,test}.json  COCO: bbox [x,y,w,h] 0-based,\n"
        "                                    area = mask pixels, segmentation = the mask\n"
        "                                    as uncompressed RLE, iscrowd 0, and\n"
        "                                    \"fashion_mnist\": \"train#ROW\" or \"t10k#ROW\",\n"
        "                                    the source image (0-based row in the IDX file)\n"
        "  labels_{train,val,test}.csv       'path,labels': JPEGImages/<id>.jpg and the\n"
        "                                    scene's distinct class identifiers joined by ';'\n"
        "  classnames.txt                    readable class names, in class order\n"
        "\n"
        "Classes (index: identifier, readable name, Fashion-MNIST label):\n",
        ct_version(), fm_dir, (unsigned long long)cfg->seed, cfg->n_train, cfg->n_val,
        cfg->n_test, cfg->canvas, cfg->canvas, cfg->canvas / 2, cfg->canvas / 2, MASK_THRESHOLD,
        MIN_MASK, JPEG_QUALITY);
    for (int c = 0; c < N_CLASSES; c++)
        sb_printf(&b, "  %d: %s, %s, %d\n", c, CLASSES[c].id, names[c], CLASSES[c].fm);
    s = write_sbuf(path, &b);
    sb_free(&b);
    return s;
}

typedef struct scenes_run {
    const ct_scenes_cfg *cfg;
    const char *out;
    char *const *names;       /* readable, in CLASSES order */
    uint16_t *present[3];     /* per split, per scene: bit c = class c present */
    int first_id[3];          /* id of each split's first scene */
    int64_t ann_id;           /* next COCO annotation id (unique across splits) */
    uint8_t *rgb, *label, *owner;
} scenes_run;

static ct_status make_split(scenes_run *R, int split, const pool *p, const ct_rng *root) {
    const int n[3] = {R->cfg->n_train, R->cfg->n_val, R->cfg->n_test};
    const int S = R->cfg->canvas;
    ct_rng split_rng = ct_rng_split(root, (uint64_t)split + 1);
    sbuf xml = {0}, images = {0}, anns = {0}, csv = {0}, json = {0}, caps = {0};
    /* the train split's captions: a stream of their own, so that the
     * scenes are those of a run without captions */
    ct_rng cap_rng = ct_rng_split(root, 0x63617074696f6eULL);
    int64_t cap_id = 1;
    char path[PATH_BUF], id[16];
    ct_status s = CT_OK;
    sb_printf(&csv, "path,labels\n");
    for (int k = 0; k < n[split] && s == CT_OK; k++) {
        int num = R->first_id[split] + k;
        snprintf(id, sizeof id, "%06d", num);
        scene sc;
        s = draw_scene(p, &split_rng, k, S, &sc);
        if (s != CT_OK) break;
        render_scene(p, &sc, S, R->rgb, R->label, R->owner);
        if ((s = out_path(path, R->out, "JPEGImages/%s.jpg", id)) == CT_OK)
            s = ct_data_write_jpeg(path, R->rgb, S, S);
        if (s == CT_OK && (s = out_path(path, R->out, "SegmentationClass/%s.png", id)) == CT_OK)
            s = ct_png_write_palette(path, R->label, S, S);
        xml.n = 0;
        append_xml(&xml, id, &sc, S);
        if (s == CT_OK && (s = out_path(path, R->out, "Annotations/%s.xml", id)) == CT_OK)
            s = write_sbuf(path, &xml);
        uint16_t bits = 0;
        for (int i = 0; i < sc.n; i++) bits |= (uint16_t)(1u << sc.it[i].cls);
        R->present[split][k] = bits;
        sb_printf(&csv, "JPEGImages/%s.jpg,", id);
        for (int c = 0, first = 1; c < N_CLASSES; c++)
            if (bits >> c & 1) sb_printf(&csv, "%s%s", first ? "" : ";", CLASSES[c].id), first = 0;
        sb_printf(&csv, "\n");
        sb_printf(&images, "%s{\"id\": %d, \"file_name\": \"%s.jpg\", \"width\": %d, "
                           "\"height\": %d, \"license\": 1}", k ? ",\n" : "", num, id, S, S);
        append_coco_annotations(&anns, &R->ann_id, num, &sc, R->owner, S,
                                split == 2 ? "t10k" : "train");
        if (split == 0) {
            ct_rng r = ct_rng_split(&cap_rng, (uint64_t)k);
            append_captions(&caps, &cap_id, num, &sc, &r);
        }
    }
    if (s == CT_OK && split == 0) {
        json.n = 0;
        sb_printf(&json, "{\"info\": {\"description\": \"cliptune scenes (Fashion-MNIST), "
                         "train captions\", \"version\": \"1.0\", \"contributor\": \"cliptune "
                         "make-scenes\", \"seed\": %llu},\n\"licenses\": [{\"id\": 1, \"name\": "
                         "\"MIT License (Fashion-MNIST)\", \"url\": "
                         "\"https://opensource.org/licenses/MIT\"}],\n\"images\": [\n",
                  (unsigned long long)R->cfg->seed);
        sb_printf(&json, "%.*s%s\"annotations\": [\n", (int)images.n, images.p ? images.p : "",
                  images.n ? "\n],\n" : "],\n");
        sb_printf(&json, "%.*s%s}\n", (int)caps.n, caps.p ? caps.p : "", caps.n ? "\n]" : "]");
        if ((s = out_path(path, R->out, "annotations/captions_train.json")) == CT_OK)
            s = write_sbuf(path, &json);
        json.n = 0;
    }
    if (s == CT_OK) {
        sb_printf(&json, "{\"info\": {\"description\": \"cliptune scenes (Fashion-MNIST), %s\", "
                         "\"version\": \"1.0\", \"contributor\": \"cliptune make-scenes\", "
                         "\"seed\": %llu},\n\"licenses\": [{\"id\": 1, \"name\": \"MIT License "
                         "(Fashion-MNIST)\", \"url\": \"https://opensource.org/licenses/MIT\"}],\n"
                         "\"images\": [\n",
                  SPLIT_NAMES[split], (unsigned long long)R->cfg->seed);
        sb_printf(&json, "%.*s%s\"annotations\": [\n", (int)images.n, images.p ? images.p : "",
                  images.n ? "\n],\n" : "],\n");
        sb_printf(&json, "%.*s%s\"categories\": [\n", (int)anns.n, anns.p ? anns.p : "",
                  anns.n ? "\n],\n" : "],\n");
        for (int c = 0; c < N_CLASSES; c++)
            sb_printf(&json, "{\"id\": %d, \"name\": \"%s\", \"supercategory\": \"%s\"}%s\n",
                      c + 1, R->names[c], CLASSES[c].super, c + 1 < N_CLASSES ? "," : "");
        sb_printf(&json, "]}\n");
        if ((s = out_path(path, R->out, "annotations/instances_%s.json", SPLIT_NAMES[split])) ==
            CT_OK)
            s = write_sbuf(path, &json);
    }
    if (s == CT_OK && (s = out_path(path, R->out, "labels_%s.csv", SPLIT_NAMES[split])) == CT_OK)
        s = write_sbuf(path, &csv);
    sb_free(&xml), sb_free(&images), sb_free(&anns), sb_free(&csv), sb_free(&json);
    sb_free(&caps);
    return s;
}

/* ImageSets: {split}.txt and <cls>_{split}.txt for train, val, trainval
 * (train then val) and test. */
static ct_status write_image_sets(scenes_run *R) {
    const int n[3] = {R->cfg->n_train, R->cfg->n_val, R->cfg->n_test};
    static const char *const SETS[4] = {"train", "val", "trainval", "test"};
    static const int FROM[4][2] = {{0, 0}, {1, 1}, {0, 1}, {2, 2}};
    char path[PATH_BUF];
    ct_status s = CT_OK;
    for (int set = 0; set < 4 && s == CT_OK; set++) {
        for (int c = -1; c < N_CLASSES && s == CT_OK; c++) {
            sbuf b = {0};
            for (int sp = FROM[set][0]; sp <= FROM[set][1]; sp++)
                for (int k = 0; k < n[sp]; k++) {
                    int num = R->first_id[sp] + k;
                    if (c < 0)
                        sb_printf(&b, "%06d\n", num);
                    else /* VOC's layout: the label right-aligned in two columns */
                        sb_printf(&b, "%06d %2d\n", num, R->present[sp][k] >> c & 1 ? 1 : -1);
                }
            if (c < 0) {
                s = out_path(path, R->out, "ImageSets/Segmentation/%s.txt", SETS[set]);
                if (s == CT_OK) s = write_sbuf(path, &b);
                if (s == CT_OK) s = out_path(path, R->out, "ImageSets/Main/%s.txt", SETS[set]);
            } else {
                s = out_path(path, R->out, "ImageSets/Main/%s_%s.txt", CLASSES[c].id, SETS[set]);
            }
            if (s == CT_OK) s = write_sbuf(path, &b);
            sb_free(&b);
        }
    }
    return s;
}

ct_status ct_data_make_scenes(const ct_scenes_cfg *cfg, const char *out_dir) {
    ct_status s = check_cfg(cfg, out_dir);
    if (s != CT_OK) return s;
    const char *fm_dir = cfg->fashion_mnist_dir ? cfg->fashion_mnist_dir : FM_DEFAULT_DIR;
    ct_splits fm = {0};
    s = ct_data_open_fashion_mnist(fm_dir, &fm);
    if (s != CT_OK) return s;
    const ct_dataset *src[3] = {fm.train, fm.val, fm.test};
    const ct_pixel_store *px = fm.train ? fm.train->pixels : NULL;
    const ct_pixel_store *pt = fm.test ? fm.test->pixels : NULL;
    if (!fm.val || !px || !pt || px->h != ITEM || px->w != ITEM || px->c != 1 || pt->h != ITEM ||
        pt->w != ITEM || pt->c != 1) {
        ct_splits_free(&fm);
        return ct_set_error(CT_ERR_FORMAT, "scenes: %s: expected Fashion-MNIST's 28x28 grey "
                            "images in train and t10k", fm_dir);
    }

    scenes_run R = {0};
    R.cfg = cfg;
    R.out = out_dir;
    pool pools[3] = {{0}};
    const int n[3] = {cfg->n_train, cfg->n_val, cfg->n_test};
    char *names[N_CLASSES]; /* readable, in CLASSES order */
    for (int c = 0; c < N_CLASSES; c++) names[c] = fm.train->classnames[CLASSES[c].fm];
    R.names = names;
    R.first_id[0] = 1, R.first_id[1] = 1 + n[0], R.first_id[2] = 1 + n[0] + n[1];
    R.ann_id = 1;
    size_t px_n = (size_t)cfg->canvas * (size_t)cfg->canvas;
    R.rgb = malloc(3 * px_n), R.label = malloc(px_n), R.owner = malloc(px_n);
    for (int sp = 0; sp < 3; sp++) R.present[sp] = calloc((size_t)n[sp] + 1, sizeof(uint16_t));
    if (!R.rgb || !R.label || !R.owner || !R.present[0] || !R.present[1] || !R.present[2])
        s = ct_set_error(CT_ERR_NOMEM, "scenes: out of memory");
    static const char *const WHAT[3] = {"train split (less the val holdout)", "val holdout",
                                        "t10k (test) split"};
    for (int sp = 0; sp < 3 && s == CT_OK; sp++)
        if (n[sp]) s = pool_build(&pools[sp], src[sp], WHAT[sp]);

    static const char *const DIRS[6] = {"JPEGImages", "Annotations", "ImageSets/Main",
                                        "ImageSets/Segmentation", "SegmentationClass",
                                        "annotations"};
    char path[PATH_BUF];
    for (int i = 0; i < 6 && s == CT_OK; i++)
        if ((s = out_path(path, out_dir, "%s", DIRS[i])) == CT_OK) s = ct_mkdir_p(path);

    ct_rng root;
    ct_rng_init(&root, cfg->seed);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) s = make_split(&R, sp, &pools[sp], &root);
    if (s == CT_OK) s = write_image_sets(&R);
    if (s == CT_OK && (s = out_path(path, out_dir, "classnames.txt")) == CT_OK) {
        sbuf b = {0};
        for (int c = 0; c < N_CLASSES; c++) sb_printf(&b, "%s\n", names[c]);
        s = write_sbuf(path, &b);
        sb_free(&b);
    }
    if (s == CT_OK) s = write_readme(out_dir, cfg, fm_dir, names);
    if (s == CT_OK) s = write_synonyms(out_dir);
    /* every file above was renamed into place without an fsync: one sync
     * for them all */
    if (s == CT_OK) s = ct_sync_fs(out_dir);
    /* several ranks: rank 0 wrote the set; the others read it only after */
    if (s == CT_OK) s = ct_dist_barrier();

    for (int sp = 0; sp < 3; sp++) pool_free(&pools[sp]), free(R.present[sp]);
    free(R.rgb), free(R.label), free(R.owner);
    ct_splits_free(&fm);
    return s;
}
