/* Training on label maps through the trainer's pixel path:
 *   - the masks go through the same geometry as the images: a picture whose
 *     grey level encodes each block's class, its label map, through the
 *     evaluation transform (resize + centre crop, the segmentation geometry)
 *     and the training transform (random resized crop + flip) for many
 *     seeds: the class read back from the transformed pixels is the
 *     transformed mask's away from block edges; padding is 255;
 *   - DenseCLIP learns: on the scenes set with the shipped model it beats
 *     MaskCLIP (training-free, at chance here) by a clear mIoU margin in a
 *     short run, and its run directory holds a segmentation run's files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "data/pixels.h"
#include "data/png_write.h"
#include "harness.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define MODEL_DIR CT_SOURCE_DIR "/models/cliptune-small"
/* the short run: larger steps than the official 1e-4 for a few hundred steps */
#define DENSECLIP_LEARNS_SET "iters=50 batch_size=8 lr=1e-3 backbone.lr=1e-4 text_length=8"

/* ---- masks through the pixel geometry ---- */

enum { IW = 60, IH = 44, BLK = 11, NCLS = 5 };

static int block_class(int x, int y) { return (x / BLK + 2 * (y / BLK)) % NCLS; }

static void write_pair(const char *root) {
    static uint8_t rgb[IW * IH * 3], map[IW * IH];
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            int c = block_class(x, y);
            for (int k = 0; k < 3; k++) rgb[(y * IW + x) * 3 + k] = (uint8_t)(40 * c + 30);
            map[y * IW + x] = (uint8_t)c;
        }
    char p[2200];
    snprintf(p, sizeof p, "%s/img.png", root);
    CHECK_OK(ct_png_write_rgb(p, rgb, IW, IH));
    snprintf(p, sizeof p, "%s/map.png", root);
    CHECK_OK(ct_png_write_palette(p, map, IW, IH));
}

/* the fraction of mask pixels (not 255) whose 3x3 neighbourhood is one
 * class and whose pixel's grey level reads back as that class; *pad the
 * count of 255 pixels */
static double agreement(const float *px, const uint8_t *m, int S, const ct_preprocess_cfg *pre,
                        int *pad) {
    int n = 0, ok = 0;
    *pad = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int c = m[y * S + x];
            if (c == 255) {
                (*pad)++;
                continue;
            }
            bool inner = true;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy >= 0 && yy < S && xx >= 0 && xx < S && m[yy * S + xx] != c)
                        inner = false;
                }
            if (!inner) continue;
            double v = ((double)px[y * S + x] * pre->std[0] + pre->mean[0]) * 255.0;
            int got = (int)lround((v - 30) / 40);
            n++;
            ok += got == c;
        }
    return n ? (double)ok / n : 0;
}

static void test_mask_geometry(void) {
    char root[2048];
    snprintf(root, sizeof root, "%s/maskgeo", ct_test_tmpdir());
    mkdir(root, 0777);
    write_pair(root);
    char *cn[NCLS] = {"a", "b", "c", "d", "e"};
    char *masks[1] = {"map.png"};
    ct_item it = {.path = "img.png"};
    ct_dataset d = {.name = "maskgeo", .root = root, .n_classes = NCLS, .classnames = cn,
                    .n_items = 1, .items = &it, .masks = masks};
    const int S = 28;
    float px[3 * S * S];
    uint8_t m[S * S];
    int pad;
    /* the model's evaluation transform (short side to S, centre crop) and
     * the segmentation geometry (whole image to S x S) */
    ct_preprocess_cfg pre, seg;
    ct_preprocess_cfg_openai(&pre, S);
    ct_seg_preprocess(&pre, S, &seg);
    const ct_preprocess_cfg *pres[2] = {&pre, &seg};
    for (int k = 0; k < 2; k++) {
        ct_pixel_src src = {&d, pres[k], S, NULL, 0, "maskgeo", NULL};
        CHECK_OK(ct_pixels_range_masks(&src, 0, 1, 0, px, m));
        double a = agreement(px, m, S, &pre, &pad);
        CHECK_MSG(a > 0.97 && pad == 0, "evaluation transform %d: agreement %.3f, %d padded", k,
                  a, pad);
    }
    /* a crop larger than the resized image pads with 255 */
    ct_preprocess_cfg wide = seg;
    wide.resize_h = 20, wide.resize_w = 28, wide.crop_h = S, wide.crop_w = S;
    ct_pixel_src src = {&d, &wide, S, NULL, 0, "maskgeo", NULL};
    CHECK_OK(ct_pixels_range_masks(&src, 0, 1, 0, px, m));
    (void)agreement(px, m, S, &pre, &pad);
    CHECK_MSG(pad == 8 * S, "padding: %d pixels of 255, expected %d", pad, 8 * S);
    /* the training transform: crops and flips of many seeds */
    ct_augment_cfg aug;
    bool use = false;
    CHECK_OK(ct_pixels_aug_from_name("rrc_flip", 0.25, S, &aug, &use));
    double worst = 1;
    for (uint64_t seed = 1; seed <= 24; seed++) {
        ct_pixel_src a = {&d, &seg, S, &aug, seed, "maskgeo", NULL};
        int64_t idx = 0;
        CHECK_OK(ct_pixels_batch_masks(&a, &idx, 1, seed, px, m));
        double ag = agreement(px, m, S, &pre, &pad);
        worst = ag < worst ? ag : worst;
        CHECK_MSG(pad == 0, "seed %llu: %d padded pixels", (unsigned long long)seed, pad);
    }
    CHECK_MSG(worst > 0.95, "training transform: worst agreement %.3f", worst);
    /* a dataset without label maps is refused */
    ct_dataset nomask = d;
    nomask.masks = NULL;
    ct_pixel_src nm = {&nomask, &seg, S, NULL, 0, "maskgeo", NULL};
    CHECK(ct_pixels_range_masks(&nm, 0, 1, 0, px, m) == CT_ERR_ARG);
}

/* ---- DenseCLIP learns on the scenes ---- */

static ct_status run(ct_model *model, const ct_splits *sp, const char *spec, const char *method,
                     const char *set, const char *dir, ct_run_result *res) {
    char cache[2100];
    snprintf(cache, sizeof cache, "%s/cache", ct_test_tmpdir());
    ct_run_cfg cfg = ct_run_cfg_default();
    cfg.model = model;
    cfg.data = sp;
    cfg.data_spec = spec;
    cfg.method = ct_method_find(method);
    cfg.set = set;
    cfg.run_dir = dir;
    cfg.cache_dir = cache;
    cfg.shots = 0;
    return ct_run(&cfg, res);
}

static bool exists(const char *dir, const char *name) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static void test_denseclip_learns(void) {
    struct stat st;
    if (stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        ct_test_skip("no Fashion-MNIST at " FM_DIR);
        return;
    }
    char root[2048], spec[2100];
    snprintf(root, sizeof root, "%s/scenes-dc", ct_test_tmpdir());
    snprintf(spec, sizeof spec, "vocseg:%s", root);
    ct_scenes_cfg sc = ct_scenes_cfg_default();
    sc.n_train = 400, sc.n_val = 0, sc.n_test = 40, sc.seed = 5;
    CHECK_OK(ct_data_make_scenes(&sc, root));
    ct_splits sp = {0};
    CHECK_OK(ct_data_open(spec, &sp));
    ct_model_opts o = {.need_tokenizer = true};
    ct_model *model = ct_model_load_ex(MODEL_DIR, &o);
    CHECK_MSG(model != NULL, "model: %s", ct_last_error());
    if (!model || !sp.train) {
        ct_model_free(model);
        ct_splits_free(&sp);
        return;
    }
    char d0[2100], d1[2100];
    snprintf(d0, sizeof d0, "%s/run-dc-maskclip", ct_test_tmpdir());
    snprintf(d1, sizeof d1, "%s/run-dc", ct_test_tmpdir());
    ct_run_result base, dc;
    CHECK_OK(run(model, &sp, spec, "maskclip", NULL, d0, &base));
    CHECK_OK(run(model, &sp, spec, "denseclip", DENSECLIP_LEARNS_SET, d1, &dc));
    printf("    scenes (%lld train, %lld test): maskclip mIoU %.2f%%, denseclip mIoU %.2f%% "
           "(mAcc %.2f%%, aAcc %.2f%%)\n", (long long)sp.train->n_items,
           (long long)sp.test->n_items, 100 * base.miou, 100 * dc.miou, 100 * dc.macc,
           100 * dc.aacc);
    CHECK_MSG(dc.segmentation && dc.miou > base.miou + 0.05, "denseclip mIoU %.4f vs maskclip "
              "%.4f", dc.miou, base.miou);
    static const char *const files[] = {"config.json", "metrics.json", "report.md",
                                        "overlays.png", "learned.safetensors"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++)
        CHECK_MSG(exists(d1, files[f]), "%s/%s missing", d1, files[f]);
    /* the saved run labels the test set again with the same metrics */
    ct_saved_run *r = ct_saved_run_open(d1);
    CHECK_MSG(r != NULL, "open %s: %s", d1, ct_last_error());
    if (r) {
        CHECK_OK(ct_saved_run_attach(r, model));
        ct_seg_metrics m = {0};
        CHECK_OK(ct_saved_run_evaluate_seg(r, sp.test, spec, NULL, NULL, &m));
        CHECK_NEAR("saved run mIoU", m.miou, dc.miou, 1e-9, 0);
        ct_seg_metrics_free(&m);
        ct_saved_run_free(r);
    }
    ct_model_free(model);
    ct_splits_free(&sp);
}

int main(int argc, char **argv) {
    ct_set_num_threads(2);
    bool learns = argc > 1 && !strcmp(argv[1], "learns");
    if (!learns) RUN(test_mask_geometry);
    if (learns || argc == 1) RUN(test_denseclip_learns);
    return ct_test_summary();
}
