/* The scenes demonstration set (ct_data_make_scenes): every file read back
 * with independent readers (libpng for the palette masks, cJSON for COCO,
 * string search for the VOC XML) and checked against each other and
 * against the Fashion-MNIST images the COCO annotations name; determinism
 * (same cfg: byte-identical trees; another seed: different scenes; a
 * scene does not depend on the split sizes); bad configurations. */
#include <dirent.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "cliptune.h"
#include "data/dataset.h"
#include "harness.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define NC 10

/* The class order the format promises: identifiers in byte order. */
static const char *const IDS[NC] = {"ankle_boot", "bag",    "coat",    "dress",   "pullover",
                                    "sandal",     "shirt",  "sneaker", "trouser", "tshirt"};
static const int FM_OF[NC] = {9, 8, 4, 3, 2, 5, 6, 7, 1, 0}; /* Fashion-MNIST label */
static const char *const SPLITS[3] = {"train", "val", "test"};

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

static bool have_fm(void) {
    struct stat st;
    return stat(FM_DIR "/t10k-labels-idx1-ubyte.gz", &st) == 0 &&
           stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) == 0;
}

static char *slurp(const char *dir, const char *rel, size_t *n) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char *t = NULL;
    size_t k = 0;
    if (ct_read_file(p, &t, &k) != CT_OK) {
        ct_test_fail(__FILE__, __LINE__, "cannot read %s: %s", p, ct_last_error());
        return NULL;
    }
    if (n) *n = k;
    return t;
}

/* The file's text equals want (NUL-terminated). */
static void check_text(const char *dir, const char *rel, const char *want) {
    char *t = slurp(dir, rel, NULL);
    if (!t) return;
    CHECK_MSG(strcmp(t, want) == 0, "%s: got\n%.300s\nwant\n%.300s", rel, t, want);
    free(t);
}

/* ---- a palette PNG's indices through libpng's classic API ---- */

static uint8_t *read_png_indices(const char *path, int *w, int *h, png_color pal[256], int *npal) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(px), free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return NULL;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    CHECK_MSG(png_get_color_type(png, info) == PNG_COLOR_TYPE_PALETTE &&
                  png_get_bit_depth(png, info) == 8,
              "%s: colour type %d, depth %d (want an 8-bit palette)", path,
              png_get_color_type(png, info), png_get_bit_depth(png, info));
    png_colorp p = NULL;
    *npal = 0;
    png_get_PLTE(png, info, &p, npal);
    for (int i = 0; i < *npal && i < 256; i++) pal[i] = p[i];
    px = malloc((size_t)*w * *h);
    rows = malloc((size_t)*h * sizeof *rows);
    for (int y = 0; y < *h; y++) rows[y] = px + (size_t)y * *w;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    free(rows);
    return px;
}

/* ---- VOC XML by string search ---- */

typedef struct box {
    int cls, x0, y0, x1, y1; /* 0-based inclusive */
} box;

static int xml_int(const char *from, const char *tag) {
    char open[64];
    snprintf(open, sizeof open, "<%s>", tag);
    const char *p = strstr(from, open);
    return p ? atoi(p + strlen(open)) : -1;
}

static int class_of(const char *name, size_t len) {
    for (int c = 0; c < NC; c++)
        if (strlen(IDS[c]) == len && !strncmp(IDS[c], name, len)) return c;
    return -1;
}

static int parse_xml(const char *x, const char *id, int S, box *out, int max) {
    char want[64];
    snprintf(want, sizeof want, "<filename>%s.jpg</filename>", id);
    CHECK_MSG(strstr(x, want) != NULL, "%s.xml: no %s", id, want);
    CHECK_MSG(xml_int(x, "width") == S && xml_int(x, "height") == S && xml_int(x, "depth") == 3,
              "%s.xml: size", id);
    CHECK_MSG(strstr(x, "<segmented>1</segmented>") != NULL, "%s.xml: segmented", id);
    int n = 0;
    for (const char *o = strstr(x, "<object>"); o; o = strstr(o + 1, "<object>")) {
        if (n == max) return max + 1;
        const char *nm = strstr(o, "<name>"), *end = nm ? strstr(nm, "</name>") : NULL;
        CHECK_MSG(nm && end, "%s.xml: object without a name", id);
        if (!nm || !end) return n;
        box *b = &out[n++];
        b->cls = class_of(nm + 6, (size_t)(end - nm - 6));
        CHECK_MSG(b->cls >= 0, "%s.xml: unknown class %.*s", id, (int)(end - nm - 6), nm + 6);
        CHECK_MSG(strstr(o, "<pose>Unspecified</pose>") && strstr(o, "<truncated>0</truncated>") &&
                      strstr(o, "<difficult>0</difficult>"),
                  "%s.xml: object fields", id);
        b->x0 = xml_int(o, "xmin") - 1, b->y0 = xml_int(o, "ymin") - 1;
        b->x1 = xml_int(o, "xmax") - 1, b->y1 = xml_int(o, "ymax") - 1;
        CHECK_MSG(b->x0 >= 0 && b->y0 >= 0 && b->x1 >= b->x0 && b->y1 >= b->y0 && b->x1 < S &&
                      b->y1 < S,
                  "%s.xml: box %d %d %d %d", id, b->x0, b->y0, b->x1, b->y1);
    }
    return n;
}

/* ---- the whole check of one generated set ---- */

typedef struct fm_ctx {
    ct_splits s;
    bool *is_val; /* per train-file row: held out as the fashion-mnist spec's val */
} fm_ctx;

static bool fm_open(fm_ctx *f) {
    memset(f, 0, sizeof *f);
    if (ct_data_open("fashion-mnist", &f->s) != CT_OK || !f->s.val) {
        ct_test_fail(__FILE__, __LINE__, "fashion-mnist: %s", ct_last_error());
        return false;
    }
    f->is_val = calloc((size_t)f->s.train->pixels->n, sizeof(bool));
    for (int64_t i = 0; i < f->s.val->n_items; i++) f->is_val[f->s.val->items[i].index] = true;
    return true;
}

static void fm_close(fm_ctx *f) {
    free(f->is_val);
    ct_splits_free(&f->s);
}

/* One COCO annotation against the Fashion-MNIST image it names: the RLE
 * mask is that image's pixels > 30, shifted; bbox and area agree. Marks
 * the mask in own (S*S) with value cls + 1. */
static void check_annotation(const fm_ctx *F, const cJSON *a, int split, int S, int cls,
                             const box *xb, uint8_t *own, const char *id) {
    const cJSON *bbox = cJSON_GetObjectItem(a, "bbox"), *seg = cJSON_GetObjectItem(a, "segmentation");
    const cJSON *counts = seg ? cJSON_GetObjectItem(seg, "counts") : NULL;
    const cJSON *size = seg ? cJSON_GetObjectItem(seg, "size") : NULL;
    const cJSON *src = cJSON_GetObjectItem(a, "fashion_mnist");
    if (!cJSON_IsArray(bbox) || cJSON_GetArraySize(bbox) != 4 || !cJSON_IsArray(counts) ||
        !cJSON_IsArray(size) || !cJSON_IsString(src)) {
        ct_test_fail(__FILE__, __LINE__, "%s: malformed annotation", id);
        return;
    }
    int bx = (int)cJSON_GetArrayItem(bbox, 0)->valuedouble;
    int by = (int)cJSON_GetArrayItem(bbox, 1)->valuedouble;
    int bw = (int)cJSON_GetArrayItem(bbox, 2)->valuedouble;
    int bh = (int)cJSON_GetArrayItem(bbox, 3)->valuedouble;
    CHECK_MSG(bx == xb->x0 && by == xb->y0 && bw == xb->x1 - xb->x0 + 1 &&
                  bh == xb->y1 - xb->y0 + 1,
              "%s: COCO bbox [%d %d %d %d] vs VOC box %d %d %d %d", id, bx, by, bw, bh, xb->x0 + 1,
              xb->y0 + 1, xb->x1 + 1, xb->y1 + 1);
    CHECK(cJSON_GetObjectItem(a, "iscrowd") && cJSON_GetObjectItem(a, "iscrowd")->valueint == 0);
    CHECK(cJSON_GetArrayItem(size, 0)->valueint == S && cJSON_GetArrayItem(size, 1)->valueint == S);
    /* RLE -> mask (column-major, background first) */
    uint8_t *m = calloc((size_t)S * S, 1);
    int64_t pos = 0, ones = 0;
    int v = 0;
    for (const cJSON *c = counts->child; c; c = c->next, v ^= 1) {
        for (int k = 0; k < c->valueint && pos < (int64_t)S * S; k++, pos++) {
            int x = (int)(pos / S), y = (int)(pos % S);
            m[y * S + x] = (uint8_t)v;
            ones += v;
        }
    }
    CHECK_MSG(pos == (int64_t)S * S, "%s: RLE covers %lld of %d pixels", id, (long long)pos, S * S);
    CHECK_MSG(ones == (int64_t)cJSON_GetObjectItem(a, "area")->valuedouble,
              "%s: RLE has %lld pixels, area %g", id, (long long)ones,
              cJSON_GetObjectItem(a, "area")->valuedouble);
    int x0 = S, y0 = S, x1 = -1, y1 = -1;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (m[y * S + x]) {
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                CHECK_MSG(!own[y * S + x], "%s: masks overlap at (%d, %d)", id, x, y);
                own[y * S + x] = (uint8_t)(cls + 1);
            }
    CHECK_MSG(x0 == xb->x0 && y0 == xb->y0 && x1 == xb->x1 && y1 == xb->y1,
              "%s: mask box %d %d %d %d vs %d %d %d %d", id, x0, y0, x1, y1, xb->x0, xb->y0,
              xb->x1, xb->y1);
    /* the source image: the right file for the split, the right class, the
     * same mask */
    const char *want = split == 2 ? "t10k#" : "train#";
    CHECK_MSG(!strncmp(src->valuestring, want, strlen(want)), "%s: %s scene from %s", id,
              SPLITS[split], src->valuestring);
    const ct_pixel_store *px = split == 2 ? F->s.test->pixels : F->s.train->pixels;
    long row = strtol(strchr(src->valuestring, '#') ? strchr(src->valuestring, '#') + 1 : "-1",
                      NULL, 10);
    if (row < 0 || row >= px->n) {
        ct_test_fail(__FILE__, __LINE__, "%s: source row %ld", id, row);
        free(m);
        return;
    }
    if (split < 2)
        CHECK_MSG(F->is_val[row] == (split == 1), "%s: %s scene uses train row %ld (%s)", id,
                  SPLITS[split], row, F->is_val[row] ? "val holdout" : "train");
    const ct_dataset *d = split == 2 ? F->s.test : F->is_val[row] ? F->s.val : F->s.train;
    for (int64_t i = 0; i < d->n_items; i++)
        if (d->items[i].index == row)
            CHECK_MSG(d->items[i].label == FM_OF[cls], "%s: row %ld has label %d, class %s", id,
                      row, d->items[i].label, IDS[cls]);
    const uint8_t *img = px->data + (size_t)row * 784;
    int fx0 = 28, fy0 = 28;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            if (img[y * 28 + x] > 30) fx0 = x < fx0 ? x : fx0, fy0 = y < fy0 ? y : fy0;
    int ox = x0 - fx0, oy = y0 - fy0, bad = 0;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
            int X = x + ox, Y = y + oy;
            bool in = X >= 0 && Y >= 0 && X < S && Y < S && m[Y * S + X];
            bad += in != (img[y * 28 + x] > 30);
        }
    CHECK_MSG(bad == 0, "%s: %d mask pixels differ from %s > 30", id, bad, src->valuestring);
    free(m);
}

static void check_set(const char *dir, const ct_scenes_cfg *cfg) {
    fm_ctx F;
    if (!fm_open(&F)) return;
    const int S = cfg->canvas, n[3] = {cfg->n_train, cfg->n_val, cfg->n_test};
    const int first[3] = {1, 1 + n[0], 1 + n[0] + n[1]};
    char rel[256], id[16];
    /* classnames.txt: the loader's readable names in identifier order */
    size_t len = 0;
    for (int c = 0; c < NC; c++) len += strlen(F.s.train->classnames[FM_OF[c]]) + 1;
    char *names = calloc(len + 1, 1);
    for (int c = 0; c < NC; c++)
        strcat(strcat(names, F.s.train->classnames[FM_OF[c]]), "\n");
    CHECK(!strncmp(names, "Ankle boot\nBag\n", 15) && strstr(names, "\nT-shirt/top\n"));
    check_text(dir, "classnames.txt", names);
    free(names);
    png_color voc[256];
    for (int i = 0; i < 256; i++) {
        int r = 0, g = 0, b = 0, c = i;
        for (int j = 0; j < 8; j++, c >>= 3)
            r |= (c & 1) << (7 - j), g |= (c >> 1 & 1) << (7 - j), b |= (c >> 2 & 1) << (7 - j);
        voc[i].red = (png_byte)r, voc[i].green = (png_byte)g, voc[i].blue = (png_byte)b;
    }
    CHECK(voc[255].red == 224 && voc[255].green == 224 && voc[255].blue == 192);
    CHECK(voc[1].red == 128 && voc[1].green == 0 && voc[2].green == 128);

    uint16_t *present[3];
    uint8_t *own = malloc((size_t)S * S);
    for (int sp = 0; sp < 3; sp++) {
        present[sp] = calloc((size_t)n[sp] + 1, sizeof(uint16_t));
        /* the CSV: header, one line per scene, distinct classes in order */
        snprintf(rel, sizeof rel, "labels_%s.csv", SPLITS[sp]);
        char *csv = slurp(dir, rel, NULL);
        if (!csv) continue;
        CHECK(!strncmp(csv, "path,labels\n", 12));
        char *line = csv + 12;
        for (int k = 0; k < n[sp] && line && *line; k++) {
            char want[64];
            snprintf(want, sizeof want, "JPEGImages/%06d.jpg,", first[sp] + k);
            CHECK_MSG(!strncmp(line, want, strlen(want)), "%s line %d: %.40s", rel, k + 2, line);
            char *p = line + strlen(want), *eol = strchr(p, '\n');
            int last = -1;
            while (p && eol && p < eol) {
                size_t l = strcspn(p, ";\n");
                int c = class_of(p, l);
                CHECK_MSG(c > last, "%s line %d: class %.*s out of order or unknown", rel, k + 2,
                          (int)l, p);
                if (c >= 0) present[sp][k] |= (uint16_t)(1u << c), last = c;
                p += l + (p[l] == ';');
            }
            CHECK_MSG(present[sp][k] != 0, "%s line %d: no labels", rel, k + 2);
            line = eol ? eol + 1 : NULL;
        }
        CHECK_MSG(line && !*line, "%s: more lines than %d scenes", rel, n[sp]);
        free(csv);

        /* COCO */
        char path[4096];
        snprintf(path, sizeof path, "%s/annotations/instances_%s.json", dir, SPLITS[sp]);
        cJSON *j = ct_json_load(path);
        CHECK_MSG(j != NULL, "%s: %s", path, ct_last_error());
        if (!j) continue;
        const cJSON *imgs = cJSON_GetObjectItem(j, "images");
        const cJSON *anns = cJSON_GetObjectItem(j, "annotations");
        const cJSON *cats = cJSON_GetObjectItem(j, "categories");
        CHECK(cJSON_IsObject(cJSON_GetObjectItem(j, "info")) &&
              cJSON_IsArray(cJSON_GetObjectItem(j, "licenses")));
        CHECK(cJSON_GetArraySize(imgs) == n[sp] && cJSON_GetArraySize(cats) == NC);
        for (int c = 0; c < NC; c++) {
            const cJSON *cat = cJSON_GetArrayItem(cats, c);
            CHECK(cJSON_GetObjectItem(cat, "id")->valueint == c + 1 &&
                  !strcmp(cJSON_GetObjectItem(cat, "name")->valuestring,
                          F.s.train->classnames[FM_OF[c]]));
        }
        const cJSON *a = anns ? anns->child : NULL;
        for (int k = 0; k < n[sp]; k++) {
            int num = first[sp] + k;
            snprintf(id, sizeof id, "%06d", num);
            const cJSON *im = cJSON_GetArrayItem(imgs, k);
            char fname[32];
            snprintf(fname, sizeof fname, "%s.jpg", id);
            CHECK_MSG(im && cJSON_GetObjectItem(im, "id")->valueint == num &&
                          !strcmp(cJSON_GetObjectItem(im, "file_name")->valuestring, fname) &&
                          cJSON_GetObjectItem(im, "width")->valueint == S &&
                          cJSON_GetObjectItem(im, "height")->valueint == S,
                      "%s: COCO image entry", id);
            /* VOC XML: 1-3 objects, their classes those of the CSV */
            snprintf(rel, sizeof rel, "Annotations/%s.xml", id);
            char *x = slurp(dir, rel, NULL);
            box bx[4];
            int nb = x ? parse_xml(x, id, S, bx, 3) : 0;
            free(x);
            CHECK_MSG(nb >= 1 && nb <= 3, "%s: %d objects", id, nb);
            uint16_t bits = 0;
            for (int i = 0; i < nb && i < 3; i++) bits |= (uint16_t)(1u << bx[i].cls);
            CHECK_MSG(bits == present[sp][k], "%s: XML classes %#x, CSV %#x", id, bits,
                      present[sp][k]);
            /* COCO annotations of this image, in the XML's order */
            memset(own, 0, (size_t)S * S);
            int na = 0;
            for (; a && cJSON_GetObjectItem(a, "image_id")->valueint == num; a = a->next, na++) {
                int cls = cJSON_GetObjectItem(a, "category_id")->valueint - 1;
                if (na < nb) {
                    CHECK_MSG(cls == bx[na].cls, "%s: annotation %d class %d, XML %d", id, na,
                              cls, bx[na].cls);
                    check_annotation(&F, a, sp, S, bx[na].cls, &bx[na], own, id);
                }
            }
            CHECK_MSG(na == nb, "%s: %d COCO annotations, %d XML objects", id, na, nb);
            /* the PNG: class c + 1 exactly on the masks of class c, 255 on
             * the 8-connected ring around them, 0 elsewhere */
            snprintf(path, sizeof path, "%s/SegmentationClass/%s.png", dir, id);
            int w = 0, h = 0, npal = 0;
            png_color pal[256];
            uint8_t *lab = read_png_indices(path, &w, &h, pal, &npal);
            CHECK_MSG(lab && w == S && h == S && npal == 256, "%s: %dx%d, %d colours", path, w,
                      h, npal);
            if (lab && npal == 256)
                CHECK_MSG(!memcmp(pal, voc, sizeof voc), "%s: not VOC's palette", path);
            int bad = 0;
            uint16_t seen = 0;
            for (int y = 0; lab && w == S && h == S && y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    int want = own[y * S + xx];
                    if (!want)
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++) {
                                int yy = y + dy, x2 = xx + dx;
                                if (yy >= 0 && yy < S && x2 >= 0 && x2 < S && own[yy * S + x2])
                                    want = 255;
                            }
                    int got = lab[y * S + xx];
                    bad += got != want;
                    if (got >= 1 && got <= NC) seen |= (uint16_t)(1u << (got - 1));
                    CHECK_MSG(got <= NC || got == 255, "%s: value %d", path, got);
                }
            CHECK_MSG(bad == 0, "%s: %d pixels differ from the masks + void ring", path, bad);
            CHECK_MSG(seen == present[sp][k], "%s: classes %#x, CSV %#x", path, seen,
                      present[sp][k]);
            /* the JPEG: the scene, its items brighter than the background */
            snprintf(path, sizeof path, "%s/JPEGImages/%s.jpg", dir, id);
            ct_image im2 = {0};
            CHECK_OK(ct_image_load(path, &im2));
            if (im2.rgb && lab) {
                CHECK(im2.w == S && im2.h == S);
                double fg = 0, bg = 0;
                int nf = 0, nbg = 0;
                for (int i = 0; i < S * S; i++) {
                    const uint8_t *p = im2.rgb + 3 * i;
                    int mx = p[0] > p[1] ? p[0] : p[1];
                    mx = mx > p[2] ? mx : p[2];
                    if (own[i]) fg += mx, nf++;
                    else if (!lab[i]) bg += mx, nbg++;
                }
                /* mask pixels are > 30 in the brightest channel */
                CHECK_MSG(fg / nf > bg / nbg + 25, "%s: items %.1f, background %.1f", path,
                          fg / nf, bg / nbg);
            }
            ct_image_free(&im2);
            free(lab);
        }
        CHECK_MSG(a == NULL, "instances_%s.json: annotations of unknown images", SPLITS[sp]);
        cJSON_Delete(j);
    }

    /* ImageSets: ids, per-class +-1 as VOC pads them, trainval = train + val */
    static const char *const SETS[4] = {"train", "val", "trainval", "test"};
    static const int FROM[4][2] = {{0, 0}, {1, 1}, {0, 1}, {2, 2}};
    for (int set = 0; set < 4; set++)
        for (int c = -1; c < NC; c++) {
            size_t cap = 16 * (size_t)(n[0] + n[1] + n[2]) + 1, used = 0;
            char *want = calloc(cap, 1);
            for (int sp = FROM[set][0]; sp <= FROM[set][1]; sp++)
                for (int k = 0; k < n[sp]; k++) {
                    if (c < 0)
                        used += (size_t)snprintf(want + used, cap - used, "%06d\n", first[sp] + k);
                    else
                        used += (size_t)snprintf(want + used, cap - used, "%06d %s\n",
                                                 first[sp] + k,
                                                 present[sp][k] >> c & 1 ? " 1" : "-1");
                }
            if (c < 0) {
                snprintf(rel, sizeof rel, "ImageSets/Main/%s.txt", SETS[set]);
                check_text(dir, rel, want);
                snprintf(rel, sizeof rel, "ImageSets/Segmentation/%s.txt", SETS[set]);
            } else {
                snprintf(rel, sizeof rel, "ImageSets/Main/%s_%s.txt", IDS[c], SETS[set]);
            }
            check_text(dir, rel, want);
            free(want);
        }
    char *readme = slurp(dir, "README.txt", NULL);
    char seedline[64];
    snprintf(seedline, sizeof seedline, "Seed:      %llu\n", (unsigned long long)cfg->seed);
    CHECK(readme && strstr(readme, seedline) && strstr(readme, "intensity > 30"));
    free(readme);
    for (int sp = 0; sp < 3; sp++) free(present[sp]);
    free(own);
    fm_close(&F);
}

/* ---- comparing trees ---- */

/* Every file under a/rel equals the one under b/rel and the two trees hold
 * the same names; no temp file is left. Returns the number of files. */
static int compare_trees(const char *a, const char *b, const char *rel) {
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s%s%s", a, *rel ? "/" : "", rel);
    snprintf(pb, sizeof pb, "%s%s%s", b, *rel ? "/" : "", rel);
    DIR *da = opendir(pa);
    if (!da) {
        ct_test_fail(__FILE__, __LINE__, "cannot open %s", pa);
        return 0;
    }
    int files = 0, in_a = 0;
    struct dirent *e;
    while ((e = readdir(da))) {
        if (e->d_name[0] == '.') continue;
        in_a++;
        char r[4096];
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        CHECK_MSG(!strstr(e->d_name, ".tmp."), "temp file left: %s", r);
        char fa[4096];
        snprintf(fa, sizeof fa, "%s/%s", a, r);
        struct stat st;
        if (stat(fa, &st) == 0 && S_ISDIR(st.st_mode)) {
            files += compare_trees(a, b, r);
            continue;
        }
        size_t na = 0, nb = 0;
        char *ta = slurp(a, r, &na), *tb = slurp(b, r, &nb);
        CHECK_MSG(ta && tb && na == nb && !memcmp(ta, tb, na), "%s differs between runs", r);
        free(ta), free(tb);
        files++;
    }
    closedir(da);
    DIR *db = opendir(pb);
    int in_b = 0;
    while (db && (e = readdir(db)))
        if (e->d_name[0] != '.') in_b++;
    if (db) closedir(db);
    CHECK_MSG(in_a == in_b, "%s: %d entries vs %d", rel, in_a, in_b);
    return files;
}

static bool same_file(const char *a, const char *b, const char *rel_a, const char *rel_b) {
    size_t na = 0, nb = 0;
    char *ta = slurp(a, rel_a, &na), *tb = slurp(b, rel_b, &nb);
    bool same = ta && tb && na == nb && !memcmp(ta, tb, na);
    free(ta), free(tb);
    return same;
}

/* ---- tests ---- */

static ct_scenes_cfg small_cfg(uint64_t seed) {
    ct_scenes_cfg c = ct_scenes_cfg_default();
    c.n_train = 20, c.n_val = 5, c.n_test = 10, c.seed = seed;
    return c;
}

static void test_defaults(void) {
    ct_scenes_cfg c = ct_scenes_cfg_default();
    CHECK(c.fashion_mnist_dir == NULL && c.n_train == 2000 && c.n_val == 200 &&
          c.n_test == 1000 && c.canvas == 56);
}

static void test_formats_consistent(void) {
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/a", ct_test_tmpdir());
    ct_scenes_cfg c = small_cfg(7);
    CHECK_OK(ct_data_make_scenes(&c, dir));
    check_set(dir, &c);
    /* a larger canvas: items at random offsets inside their cells */
    snprintf(dir, sizeof dir, "%s/canvas80", ct_test_tmpdir());
    c.n_train = 6, c.n_val = 2, c.n_test = 4, c.canvas = 80;
    CHECK_OK(ct_data_make_scenes(&c, dir));
    check_set(dir, &c);
}

static void test_deterministic(void) {
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    const char *t = ct_test_tmpdir();
    char a[4096], b[4096], c2[4096], d[4096];
    snprintf(a, sizeof a, "%s/det_a", t);
    snprintf(b, sizeof b, "%s/det_b", t);
    snprintf(c2, sizeof c2, "%s/det_seed", t);
    snprintf(d, sizeof d, "%s/det_sizes", t);
    ct_scenes_cfg c = small_cfg(11);
    CHECK_OK(ct_data_make_scenes(&c, a));
    CHECK_OK(ct_data_make_scenes(&c, b));
    int files = compare_trees(a, b, "");
    /* 35 scenes x 3 files, 44 + 4 split lists, 3 COCO + the train captions,
     * 3 CSV, 2 text + the caption synonyms */
    CHECK_MSG(files == 35 * 3 + 48 + 4 + 3 + 3, "%d files", files);
    /* running again over a finished set rewrites the same bytes */
    CHECK_OK(ct_data_make_scenes(&c, b));
    compare_trees(a, b, "");

    ct_scenes_cfg other = small_cfg(12);
    CHECK_OK(ct_data_make_scenes(&other, c2));
    CHECK(!same_file(a, c2, "labels_train.csv", "labels_train.csv"));
    int differ = 0;
    for (int i = 1; i <= 35; i++) {
        char r[64];
        snprintf(r, sizeof r, "JPEGImages/%06d.jpg", i);
        differ += !same_file(a, c2, r, r);
    }
    CHECK_MSG(differ >= 33, "only %d of 35 scenes differ with another seed", differ);

    /* scene k of a split depends on (seed, split, k) only: other split
     * sizes renumber the ids but keep the scenes */
    ct_scenes_cfg sizes = small_cfg(11);
    sizes.n_train = 10, sizes.n_val = 6, sizes.n_test = 3;
    CHECK_OK(ct_data_make_scenes(&sizes, d));
    CHECK(same_file(a, d, "JPEGImages/000010.jpg", "JPEGImages/000010.jpg"));
    CHECK(same_file(a, d, "JPEGImages/000021.jpg", "JPEGImages/000011.jpg")); /* val 0 */
    CHECK(same_file(a, d, "SegmentationClass/000025.png", "SegmentationClass/000015.png"));
    CHECK(same_file(a, d, "JPEGImages/000026.jpg", "JPEGImages/000017.jpg")); /* test 0 */
}

static void test_bad_cfg(void) {
    char out[4096], fm[4096];
    snprintf(out, sizeof out, "%s/never", ct_test_tmpdir());
    ct_scenes_cfg c = small_cfg(1);
    c.n_val = -1;
    CHECK(ct_data_make_scenes(&c, out) == CT_ERR_ARG);
    CHECK_ERR_HAS("n_val is -1");
    c = small_cfg(1);
    c.canvas = 40;
    CHECK(ct_data_make_scenes(&c, out) == CT_ERR_ARG);
    CHECK_ERR_HAS("canvas 40");
    c = small_cfg(1);
    c.n_train = 999999;
    CHECK(ct_data_make_scenes(&c, out) == CT_ERR_ARG);
    CHECK_ERR_HAS("at most 999999");
    CHECK(ct_data_make_scenes(NULL, out) == CT_ERR_ARG);
    c = small_cfg(1);
    CHECK(ct_data_make_scenes(&c, "") == CT_ERR_ARG);
    snprintf(fm, sizeof fm, "%s/no_fashion_mnist", ct_test_tmpdir());
    c.fashion_mnist_dir = fm;
    CHECK(ct_data_make_scenes(&c, out) == CT_ERR_IO);
    CHECK_ERR_HAS("train-images-idx3-ubyte");
    CHECK_ERR_HAS(fm);
    struct stat st;
    CHECK_MSG(stat(out, &st) != 0, "%s was created by a failed call", out);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_bad_cfg);
    RUN(test_formats_consistent);
    RUN(test_deterministic);
    return ct_test_summary();
}
