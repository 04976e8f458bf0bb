/* Small XML reader (see xml.h): one forward pass over the bytes, a node
 * array and one string buffer, every read bounded by the input's size. */
#include "base/xml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Inputs above this are not annotation files. */
#define XML_MAX_BYTES ((size_t)1 << 30)

typedef struct px {
    const char *file;
    const char *s; /* input, n bytes */
    size_t n, i;
    size_t line_pos; /* lines are counted up to here */
    int line;
    ct_xml *x;
    ct_status oom;   /* CT_OK, or the status of a failed allocation */
} px;

/* Line of byte pos (counting forward from the last call; from the start
 * when pos is behind it, which only error paths do). */
static int line_at(px *p, size_t pos) {
    if (pos < p->line_pos) p->line_pos = 0, p->line = 1;
    for (; p->line_pos < pos && p->line_pos < p->n; p->line_pos++)
        p->line += p->s[p->line_pos] == '\n';
    return p->line;
}

static ct_status fail(px *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ct_status fail(px *p, size_t pos, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ct_set_error(CT_ERR_FORMAT, "%s:%d: %s", p->file, line_at(p, pos), msg);
}

static bool put(px *p, const char *b, size_t k) {
    ct_xml *x = p->x;
    if (x->n_strs + k + 1 > x->cap_strs) {
        size_t cap = x->cap_strs ? x->cap_strs : 256;
        while (cap < x->n_strs + k + 1) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        char *s = realloc(x->strs, cap);
        if (!s) return false;
        x->strs = s;
        x->cap_strs = cap;
    }
    memcpy(x->strs + x->n_strs, b, k);
    x->n_strs += k;
    x->strs[x->n_strs] = 0; /* not counted: the next put overwrites it */
    return true;
}

static ct_status no_memory(px *p) {
    return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the XML tree", p->file);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static bool name_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}
static bool name_char(unsigned char c) {
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* Offset of needle at or after from, or n when absent. */
static size_t find(const px *p, size_t from, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= p->n; i++)
        if (p->s[i] == needle[0] && memcmp(p->s + i, needle, k) == 0) return i;
    return p->n;
}

static bool at(const px *p, const char *lit) {
    size_t k = strlen(lit);
    return p->n - p->i >= k && memcmp(p->s + p->i, lit, k) == 0;
}

/* A new element named s[a, b) under parent. */
static int new_node(px *p, int parent, size_t a, size_t b, int line) {
    ct_xml *x = p->x;
    if (x->n == x->cap) {
        int cap = x->cap ? x->cap * 2 : 32;
        ct_xml_node *nodes = x->cap > INT32_MAX / 2 ? NULL
                             : realloc(x->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return -1;
        x->nodes = nodes;
        x->cap = cap;
    }
    size_t name = x->n_strs + 1; /* after the NUL that ends what is there */
    x->n_strs++;                 /* keep that NUL */
    if (!put(p, p->s + a, b - a)) return -1;
    int k = x->n++;
    x->nodes[k] = (ct_xml_node){.parent = parent, .first_child = -1, .last_child = -1,
                                .next = -1, .line = line, .name = name, .text = 0};
    if (parent >= 0) {
        ct_xml_node *par = &x->nodes[parent];
        if (par->last_child < 0) par->first_child = k;
        else x->nodes[par->last_child].next = k;
        par->last_child = k;
        par->text = 0; /* an element with children has no text */
    }
    return k;
}

/* Append decoded bytes to the text of element cur (dropped when it has
 * children). A leaf's text pieces are contiguous in strs: nothing else is
 * appended between them (a child would end the leaf). */
static bool add_text(px *p, int cur, const char *b, size_t k) {
    ct_xml_node *e = &p->x->nodes[cur];
    if (k == 0 || e->first_child >= 0) return true;
    if (e->text == 0) {
        p->x->n_strs++; /* keep the NUL ending what is there */
        e->text = p->x->n_strs;
    }
    return put(p, b, k);
}

static size_t utf8_encode(unsigned long cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode the entity at s[a] ('&') into out; its length through ';' in *len. */
static ct_status entity(px *p, size_t a, char *out, size_t *out_n, size_t *len) {
    size_t e = a + 1;
    while (e < p->n && e - a < 12 && p->s[e] != ';' && p->s[e] != '&' && p->s[e] != '<') e++;
    if (e >= p->n || p->s[e] != ';')
        return fail(p, a, "'&' that does not start an entity (write &amp;)");
    const char *name = p->s + a + 1;
    size_t k = e - a - 1;
    static const struct { const char *name; char c; } named[] = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    *len = e - a + 1;
    for (size_t t = 0; t < sizeof named / sizeof *named; t++)
        if (strlen(named[t].name) == k && memcmp(name, named[t].name, k) == 0) {
            out[0] = named[t].c;
            *out_n = 1;
            return CT_OK;
        }
    if (k >= 2 && name[0] == '#') {
        bool hex = name[1] == 'x';
        size_t d0 = hex ? 2 : 1;
        unsigned long cp = 0;
        bool ok = k > d0 && k - d0 <= (hex ? 6 : 7);
        for (size_t t = d0; ok && t < k; t++) {
            char c = name[t];
            int v = c >= '0' && c <= '9' ? c - '0'
                    : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0) ok = false;
            else cp = cp * (hex ? 16 : 10) + (unsigned long)v;
        }
        if (ok && cp >= 1 && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF)) {
            *out_n = utf8_encode(cp, out);
            return CT_OK;
        }
        return fail(p, a, "bad character reference '&%.*s;'", (int)k, name);
    }
    return fail(p, a, "unknown entity '&%.*s;' (XML has &amp; &lt; &gt; &quot; &apos;)", (int)k,
                name);
}

/* Character data s[a, b) inside element cur (or outside the root: cur < 0). */
static ct_status text(px *p, int cur, size_t a, size_t b) {
    if (cur < 0) {
        for (size_t i = a; i < b; i++)
            if (!is_ws(p->s[i]))
                return fail(p, i, "text outside the root element");
        return CT_OK;
    }
    size_t run = a;
    for (size_t i = a; i < b;) {
        if (p->s[i] != '&') {
            i++;
            continue;
        }
        if (!add_text(p, cur, p->s + run, i - run)) return no_memory(p);
        char dec[4];
        size_t nd = 0, len = 1;
        ct_status s = entity(p, i, dec, &nd, &len);
        if (s != CT_OK) return s;
        if (!add_text(p, cur, dec, nd)) return no_memory(p);
        i += len;
        run = i;
    }
    return add_text(p, cur, p->s + run, b - run) ? CT_OK : no_memory(p);
}

/* The tag at p->i ('<' already seen, p->i after it). */
static ct_status start_tag(px *p, int *cur, int *depth, bool *root_done) {
    size_t lt = p->i - 1, a = p->i;
    if (a >= p->n || !name_start((unsigned char)p->s[a]))
        return fail(p, lt, "'<' not followed by an element name (write &lt; in text)");
    while (p->i < p->n && name_char((unsigned char)p->s[p->i])) p->i++;
    size_t b = p->i;
    if (*root_done) return fail(p, lt, "a second root element <%.*s>", (int)(b - a), p->s + a);
    if (*depth >= CT_XML_MAX_DEPTH)
        return fail(p, lt, "elements nested more than %d deep", CT_XML_MAX_DEPTH);
    int line = line_at(p, lt);
    bool self_close = false;
    for (;;) {
        size_t ws = p->i;
        while (p->i < p->n && is_ws(p->s[p->i])) p->i++;
        if (p->i >= p->n) return fail(p, lt, "unterminated tag <%.*s", (int)(b - a), p->s + a);
        char c = p->s[p->i];
        if (c == '>') {
            p->i++;
            break;
        }
        if (c == '/') {
            if (p->i + 1 >= p->n || p->s[p->i + 1] != '>')
                return fail(p, p->i, "'/' not followed by '>' in <%.*s>", (int)(b - a),
                            p->s + a);
            p->i += 2;
            self_close = true;
            break;
        }
        if (p->i == ws || !name_start((unsigned char)c))
            return fail(p, p->i, "unexpected '%c' in <%.*s>", c, (int)(b - a), p->s + a);
        while (p->i < p->n && name_char((unsigned char)p->s[p->i])) p->i++;
        while (p->i < p->n && is_ws(p->s[p->i])) p->i++;
        if (p->i >= p->n || p->s[p->i] != '=')
            return fail(p, p->i, "attribute without '=value' in <%.*s>", (int)(b - a), p->s + a);
        p->i++;
        while (p->i < p->n && is_ws(p->s[p->i])) p->i++;
        if (p->i >= p->n || (p->s[p->i] != '"' && p->s[p->i] != '\''))
            return fail(p, p->i, "attribute value not quoted in <%.*s>", (int)(b - a), p->s + a);
        char q = p->s[p->i++];
        while (p->i < p->n && p->s[p->i] != q && p->s[p->i] != '<') p->i++;
        if (p->i >= p->n || p->s[p->i] != q)
            return fail(p, lt, "unterminated attribute value in <%.*s>", (int)(b - a), p->s + a);
        p->i++;
    }
    int k = new_node(p, *cur, a, b, line);
    if (k < 0) return no_memory(p);
    if (self_close) {
        if (*cur < 0) *root_done = true;
    } else {
        *cur = k;
        ++*depth;
    }
    return CT_OK;
}

static ct_status end_tag(px *p, int *cur, int *depth, bool *root_done) {
    size_t lt = p->i - 2, a = p->i;
    while (p->i < p->n && name_char((unsigned char)p->s[p->i])) p->i++;
    size_t b = p->i;
    while (p->i < p->n && is_ws(p->s[p->i])) p->i++;
    if (a == b || p->i >= p->n || p->s[p->i] != '>')
        return fail(p, lt, "malformed end tag");
    p->i++;
    if (*cur < 0) return fail(p, lt, "</%.*s> closes no element", (int)(b - a), p->s + a);
    const char *open = ct_xml_name(p->x, *cur);
    if (strlen(open) != b - a || memcmp(open, p->s + a, b - a) != 0)
        return fail(p, lt, "</%.*s> closes <%s> (line %d)", (int)(b - a), p->s + a, open,
                    p->x->nodes[*cur].line);
    *cur = p->x->nodes[*cur].parent;
    --*depth;
    if (*cur < 0) *root_done = true;
    return CT_OK;
}

static ct_status parse(px *p) {
    int cur = -1, depth = 0;
    bool root_done = false;
    const char *nul = memchr(p->s, 0, p->n);
    if (nul) return fail(p, (size_t)(nul - p->s), "NUL byte");
    if (p->n >= 3 && memcmp(p->s, "\xEF\xBB\xBF", 3) == 0) p->i = 3;
    if (!put(p, "", 0)) return no_memory(p); /* offset 0: the empty string */
    while (p->i < p->n) {
        size_t lt = p->i;
        if (p->s[p->i] != '<') {
            while (p->i < p->n && p->s[p->i] != '<') p->i++;
            ct_status s = text(p, cur, lt, p->i);
            if (s != CT_OK) return s;
            continue;
        }
        ct_status s = CT_OK;
        if (at(p, "<?")) {
            size_t e = find(p, p->i + 2, "?>");
            if (e >= p->n) return fail(p, lt, "unterminated processing instruction");
            p->i = e + 2;
        } else if (at(p, "<!--")) {
            size_t e = find(p, p->i + 4, "-->");
            if (e >= p->n) return fail(p, lt, "unterminated comment");
            p->i = e + 3;
        } else if (at(p, "<![CDATA[")) {
            if (cur < 0) return fail(p, lt, "CDATA outside the root element");
            size_t e = find(p, p->i + 9, "]]>");
            if (e >= p->n) return fail(p, lt, "unterminated CDATA section");
            if (!add_text(p, cur, p->s + p->i + 9, e - p->i - 9)) return no_memory(p);
            p->i = e + 3;
        } else if (at(p, "<!DOCTYPE")) {
            if (cur >= 0 || root_done) return fail(p, lt, "DOCTYPE after the root element");
            size_t e = p->i;
            while (e < p->n && p->s[e] != '>' && p->s[e] != '[') e++;
            if (e >= p->n) return fail(p, lt, "unterminated DOCTYPE");
            if (p->s[e] == '[') return fail(p, e, "DOCTYPE internal subsets are not supported");
            p->i = e + 1;
        } else if (at(p, "<!")) {
            return fail(p, lt, "unexpected '<!'");
        } else if (at(p, "</")) {
            p->i += 2;
            s = end_tag(p, &cur, &depth, &root_done);
        } else {
            p->i++;
            s = start_tag(p, &cur, &depth, &root_done);
        }
        if (s != CT_OK) return s;
    }
    if (cur >= 0)
        return fail(p, p->n, "<%s> (line %d) is not closed", ct_xml_name(p->x, cur),
                    p->x->nodes[cur].line);
    if (!root_done) return fail(p, p->n, "no root element");
    return CT_OK;
}

ct_status ct_xml_parse(const char *file, const char *text_, size_t size, ct_xml *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_xml_parse: NULL output");
    memset(out, 0, sizeof *out);
    if (!file) file = "xml";
    if (!text_ && size) return ct_set_error(CT_ERR_ARG, "ct_xml_parse: NULL text");
    if (size > XML_MAX_BYTES)
        return ct_set_error(CT_ERR_FORMAT, "%s: %zu bytes is too large for an XML annotation",
                            file, size);
    px p = {.file = file, .s = text_ ? text_ : "", .n = size, .line = 1, .x = out};
    ct_status s = parse(&p);
    if (s != CT_OK) ct_xml_free(out);
    return s;
}

void ct_xml_free(ct_xml *x) {
    if (!x) return;
    free(x->nodes);
    free(x->strs);
    memset(x, 0, sizeof *x);
}

static bool named(const ct_xml *x, int k, const char *name) {
    return !name || strcmp(ct_xml_name(x, k), name) == 0;
}

int ct_xml_child(const ct_xml *x, int node, const char *name) {
    if (!x || node < 0 || node >= x->n) return -1;
    int k = x->nodes[node].first_child;
    while (k >= 0 && !named(x, k, name)) k = x->nodes[k].next;
    return k;
}

int ct_xml_next(const ct_xml *x, int node, const char *name) {
    if (!x || node < 0 || node >= x->n) return -1;
    int k = x->nodes[node].next;
    while (k >= 0 && !named(x, k, name)) k = x->nodes[k].next;
    return k;
}
