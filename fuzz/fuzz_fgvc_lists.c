/* libFuzzer target: FGVC-Aircraft's text files (fgvc_aircraft.c): the input
 * split as fz_split into variants.txt and one images_variant_<split>.txt,
 * parsed as ct_data_open("fgvc-aircraft:ROOT") parses them; and the input
 * whole as a CoOp ImageNet classnames.txt ("wnid name" lines, read by the
 * imagenet: family's loaders). */
#include "fuzz_util.h"

#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data, size, &a, &na, &b, &nb);
    char *va = malloc(na + 1), *lb = malloc(nb + 1);
    if (!va || !lb) abort();
    memcpy(va, a, na), va[na] = 0;
    memcpy(lb, b, nb), lb[nb] = 0;
    char **variants = NULL;
    int n = 0;
    if (ct_fgvc_parse_variants("variants.txt", va, na, &variants, &n) != CT_OK) {
        fz_failed_with_message();
    } else {
        if (n < 1 || !variants) abort();
        ct_item_vec items = {0};
        if (ct_fgvc_parse_list("images_variant_train.txt", lb, nb, variants, n, &items) != CT_OK)
            fz_failed_with_message();
        for (int64_t i = 0; i < items.n; i++)
            if (items.items[i].label < 0 || items.items[i].label >= n ||
                strncmp(items.items[i].path, "images/", 7) ||
                strchr(items.items[i].path + 7, '/'))
                abort();
        ct_item_vec_free(&items);
        ct_strv_free(variants, n);
    }
    free(va), free(lb);
    char **wnids = NULL, **names = NULL;
    const char *p = fz_write("classnames.txt", data, size);
    if (ct_classnames_read_wnids(p, "fuzz", &wnids, &names, &n) != CT_OK) {
        fz_failed_with_message();
    } else {
        if (n < 1) abort();
        for (int i = 0; i < n; i++)
            if (strlen(wnids[i]) != 9 || !names[i][0]) abort();
        ct_strv_free(wnids, n);
        ct_strv_free(names, n);
    }
    return 0;
}
