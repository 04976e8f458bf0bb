/* libFuzzer target: the XML reader (src/base/xml.c) and the PASCAL VOC
 * annotation parser on it (voc.c), on arbitrary bytes. Every node's name and
 * text is read back, so a bad offset shows under ASan. */
#include "fuzz_util.h"

#include "base/xml.h"
#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    ct_xml x;
    if (ct_xml_parse("fuzz.xml", text, size, &x) != CT_OK) {
        fz_failed_with_message();
    } else {
        size_t sum = 0;
        for (int k = 0; k < x.n; k++) {
            const ct_xml_node *nd = &x.nodes[k];
            if (nd->parent >= k || nd->next == k || nd->first_child == k || nd->line < 1) abort();
            sum += strlen(ct_xml_name(&x, k)) + strlen(ct_xml_text(&x, k));
            if (!ct_xml_name(&x, k)[0]) abort();
        }
        if (x.n < 1 || sum > 2 * size + 1) abort();
        if (ct_xml_child(&x, 0, "size") >= x.n || ct_xml_next(&x, 0, NULL) != -1) abort();
        ct_xml_free(&x);
    }
    ct_voc_ann a;
    if (ct_voc_parse_annotation("fuzz.xml", text, size, &a) != CT_OK) {
        fz_failed_with_message();
        return 0;
    }
    if (a.width < 1 || a.height < 1 || a.n_objects < 0) abort();
    for (int k = 0; k < a.n_objects; k++)
        if (!a.objects[k].name || !a.objects[k].name[0]) abort();
    ct_voc_ann_free(&a);
    return 0;
}
