/* libFuzzer target: a COCO captions file and a synonyms file through the
 * TaI-DPT caption reader (coco_captions.c: images, annotations, captions;
 * the synonyms' lines and names; the word-based labels). The bytes are split
 * (fz_split) into the synonyms file (3 classes) and the captions file. */
#include "fuzz_util.h"

#include "data/coco_captions.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data, size, &a, &na, &b, &nb);
    const char *syn_path = fz_write("synonyms.txt", a, na);
    const char *cap_path = fz_write("captions.json", b, nb);
    char *names[3] = {"cat", "sea_lion", "t-shirt"};
    ct_synonyms syn;
    if (ct_synonyms_load(na ? syn_path : NULL, 3, names, &syn) != CT_OK) {
        fz_failed_with_message();
        if (ct_synonyms_load(NULL, 3, names, &syn) != CT_OK) abort();
    }
    if (syn.K != 3 || syn.off[0] != 0 || syn.off[3] < 3) abort();
    ct_coco_captions c;
    if (ct_coco_captions_load(cap_path, &c) != CT_OK) {
        fz_failed_with_message();
        if (c.n != 0 || c.captions) abort();
        ct_synonyms_free(&syn);
        return 0;
    }
    for (int64_t i = 0; i < c.n; i++) {
        if (!c.captions[i] || !c.captions[i][0]) abort();
        int8_t row[3];
        bool any = ct_caption_labels(&syn, c.captions[i], row);
        bool some = false;
        for (int k = 0; k < 3; k++) {
            if (row[k] != 0 && row[k] != 1) abort();
            some = some || row[k];
        }
        if (any != some) abort();
    }
    ct_coco_captions_free(&c);
    ct_synonyms_free(&syn);
    return 0;
}
