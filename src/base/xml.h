/* A small, bounds-checked XML reader for annotation files (PASCAL VOC's
 * Annotations/<id>.xml): elements and their text, nothing more.
 *
 *   - Elements nest as a tree; node 0 is the root element. Attributes are
 *     checked for form (name="value" or name='value') and skipped.
 *   - Text: an element's text is its character data (entities &amp; &lt;
 *     &gt; &quot; &apos; and &#N; / &#xN; decoded, CDATA sections taken as
 *     they are) when it has no child elements, and "" when it has (the
 *     indentation between children is not text anyone wants).
 *   - Skipped: the <?xml ...?> declaration and other processing
 *     instructions, comments, and a <!DOCTYPE ...> without an internal
 *     subset.
 *   - Anything malformed is an error naming the file and line: a bad or
 *     mismatched tag, an unknown entity, text outside the root, a second
 *     root, an unclosed element, a NUL byte, nesting deeper than
 *     CT_XML_MAX_DEPTH. */
#ifndef CT_BASE_XML_H
#define CT_BASE_XML_H

#include <stddef.h>

#include "cliptune.h"

#define CT_XML_MAX_DEPTH 256

typedef struct ct_xml_node {
    int parent, first_child, last_child, next; /* node indices, -1 for none */
    int line;                                  /* of the start tag (1-based) */
    size_t name, text;                         /* offsets into ct_xml.strs  */
} ct_xml_node;

typedef struct ct_xml {
    ct_xml_node *nodes; /* n, in document order; nodes[0] is the root */
    int n, cap;
    char *strs;         /* NUL-terminated names and texts               */
    size_t n_strs, cap_strs;
} ct_xml;

/* Parse size bytes of text (need not be NUL-terminated); file names the
 * input in messages. On failure *out is empty and the error is set. */
ct_status ct_xml_parse(const char *file, const char *text, size_t size, ct_xml *out);
/* NULL-safe; leaves *x empty. */
void ct_xml_free(ct_xml *x);

static inline const char *ct_xml_name(const ct_xml *x, int node) {
    return x->strs + x->nodes[node].name;
}
static inline const char *ct_xml_text(const ct_xml *x, int node) {
    return x->strs + x->nodes[node].text;
}
/* The first child element of node named name (NULL: any), or -1. */
int ct_xml_child(const ct_xml *x, int node, const char *name);
/* The next sibling of node named name (NULL: any), or -1. */
int ct_xml_next(const ct_xml *x, int node, const char *name);

#endif
