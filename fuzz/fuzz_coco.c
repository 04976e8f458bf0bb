/* libFuzzer target: a COCO instances file through the coco: loader
 * (coco.c: categories, images, annotations, boxes, target rows, the split
 * rules). The bytes are the train and the val file; image paths resolve in
 * the scratch folder, so a file_name "instances_train.json" names an image
 * that exists and the whole path to a dataset is reachable. */
#include "fuzz_util.h"

#include "data/dataset.h"

static void check_split(const ct_dataset *d) {
    if (!d) return;
    if (!d->targets || d->n_classes < 1) abort();
    for (int64_t i = 0; i < d->n_items; i++) {
        const int8_t *row = d->targets + i * d->n_classes;
        int lowest = -1;
        for (int c = 0; c < d->n_classes; c++) {
            if (row[c] < -1 || row[c] > 1) abort();
            if (row[c] == 1 && lowest < 0) lowest = c;
        }
        if (d->items[i].label != (lowest < 0 ? 0 : lowest) || !d->items[i].path) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write("instances_train.json", data, size);
    const char *files[3] = {p, p, NULL}, *dirs[3] = {"", "", NULL};
    ct_splits sp;
    if (ct_data_open_coco_files(files, dirs, fz_dir(), "fuzz", &sp) != CT_OK) {
        fz_failed_with_message();
        return 0;
    }
    if (!sp.train || !sp.test || sp.train->n_items < 1) abort();
    check_split(sp.train);
    check_split(sp.val);
    check_split(sp.test);
    ct_splits_free(&sp);
    return 0;
}
