/* Multi-label datasets: the voc:, coco:, mlcsv: and mljson: loaders on
 * fixtures written here in the real formats (labels, targets, classes and
 * splits checked exactly), the XML reader under them, their error
 * messages, the scenes set read through three loaders, and partial labels
 * on a loaded set. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/xml.h"
#include "cliptune.h"
#include "data/dataset.h"
#include "harness.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* ---- fixtures ------------------------------------------------------------ */

/* tmpdir/rel with every level created, into buf. */
static const char *path_in(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    for (char *p = buf + strlen(ct_test_tmpdir()) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0777);
            *p = '/';
        }
    return buf;
}

static void write_text(const char *rel, const char *text) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void writef(const char *rel, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void writef(const char *rel, const char *fmt, ...) {
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    write_text(rel, text);
}

static const char *tmp(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    return buf;
}

/* The loaders check that images exist; they never decode them here. */
static void touch(const char *rel) { write_text(rel, "not decoded"); }

static int64_t n_items(const ct_dataset *d) { return d ? d->n_items : 0; }

/* Item i of d: path and target row (as "1 0 -1"), and label. */
static void check_item(const ct_dataset *d, int64_t i, const char *path, const char *row,
                       int label, int line) {
    if (!d || i >= d->n_items) {
        ct_test_fail(__FILE__, line, "item %lld missing (n %lld)", (long long)i,
                     (long long)n_items(d));
        return;
    }
    char got[256] = "";
    for (int c = 0; c < d->n_classes && d->targets; c++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", c ? " " : "",
                 d->targets[i * d->n_classes + c]);
    const char *p = d->items[i].path ? d->items[i].path : "(null)";
    if (strcmp(p, path) != 0 || strcmp(got, row) != 0 || d->items[i].label != label)
        ct_test_fail(__FILE__, line, "%s item %lld: got %s [%s] label %d, want %s [%s] label %d",
                     d->name, (long long)i, p, got, d->items[i].label, path, row, label);
}
#define CHECK_ITEM(d, i, path, row, label) check_item(d, i, path, row, label, __LINE__)

static void check_classes(const ct_dataset *d, const char *const *names, int n, int line) {
    if (!d || d->n_classes != n) {
        ct_test_fail(__FILE__, line, "%d classes, want %d", d ? d->n_classes : -1, n);
        return;
    }
    for (int c = 0; c < n; c++)
        if (strcmp(d->classnames[c], names[c]) != 0)
            ct_test_fail(__FILE__, line, "class %d is '%s', want '%s'", c, d->classnames[c],
                         names[c]);
}
#define CHECK_CLASSES(d, ...)                                                  \
    do {                                                                       \
        const char *const want_[] = {__VA_ARGS__};                             \
        check_classes(d, want_, (int)(sizeof want_ / sizeof *want_), __LINE__); \
    } while (0)

/* An item of d with this path, or -1. */
static int64_t find_path(const ct_dataset *d, const char *path) {
    for (int64_t i = 0; d && i < d->n_items; i++)
        if (d->items[i].path && strcmp(d->items[i].path, path) == 0) return i;
    return -1;
}

/* ---- the XML reader ---------------------------------------------------- */

static void test_xml_reader(void) {
    const char *doc = "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                      "<!DOCTYPE annotation>\n"
                      "<!-- a comment with <tags> -->\n"
                      "<root a=\"1\" b='x>y'>\n"
                      "  <name>R&amp;D &lt;1&gt; &quot;q&quot; &apos;s&apos; &#65;&#x42;</name>\n"
                      "  <empty/>\n"
                      "  <split>do<!-- c -->g<![CDATA[<&>]]></split>\n"
                      "  <outer>\n    <inner>t</inner>\n  </outer>\n"
                      "  <name>second</name>\n"
                      "</root>\n<!-- trailing -->\n";
    ct_xml x;
    CHECK_OK(ct_xml_parse("doc.xml", doc, strlen(doc), &x));
    if (x.n != 7) {
        CHECK_MSG(x.n == 7, "%d nodes", x.n);
        ct_xml_free(&x);
        return;
    }
    CHECK(strcmp(ct_xml_name(&x, 0), "root") == 0 && x.nodes[0].line == 4);
    int name = ct_xml_child(&x, 0, "name");
    CHECK(name == 1 && strcmp(ct_xml_text(&x, name), "R&D <1> \"q\" 's' AB") == 0);
    CHECK(strcmp(ct_xml_text(&x, ct_xml_child(&x, 0, "empty")), "") == 0);
    CHECK(strcmp(ct_xml_text(&x, ct_xml_child(&x, 0, "split")), "dog<&>") == 0);
    int outer = ct_xml_child(&x, 0, "outer");
    CHECK(strcmp(ct_xml_text(&x, outer), "") == 0); /* has a child: no text */
    CHECK(strcmp(ct_xml_text(&x, ct_xml_child(&x, outer, "inner")), "t") == 0);
    CHECK(x.nodes[ct_xml_child(&x, outer, "inner")].line == 9);
    int second = ct_xml_next(&x, name, "name");
    CHECK(second == 6 && strcmp(ct_xml_text(&x, second), "second") == 0);
    CHECK(ct_xml_next(&x, second, "name") == -1 && ct_xml_child(&x, 0, "nope") == -1);
    ct_xml_free(&x);
    ct_xml_free(&x); /* twice: a no-op */

    static const struct { const char *doc, *err; } bad[] = {
        {"<a>\n<b>\n</a>", "bad.xml:3: </a> closes <b> (line 2)"},
        {"<a>&foo;</a>", "bad.xml:1: unknown entity '&foo;'"},
        {"<a>a & b</a>", "'&' that does not start an entity"},
        {"<a>&#0;</a>", "bad character reference"},
        {"<a>&#xD800;</a>", "bad character reference"},
        {"<a></a>\n<b/>", "bad.xml:2: a second root element <b>"},
        {"text<a/>", "text outside the root element"},
        {"<a/>tail", "text outside the root element"},
        {"<a>\n<b>", "<b> (line 2) is not closed"},
        {"", "no root element"},
        {"<!-- only -->", "no root element"},
        {"<a x=1></a>", "attribute value not quoted"},
        {"<a x></a>", "attribute without '=value'"},
        {"<a x=\"1></a>", "unterminated attribute value"},
        {"<a", "unterminated tag <a"},
        {"<a>< b</a>", "'<' not followed by an element name"},
        {"<a><!-- x </a>", "unterminated comment"},
        {"<a><![CDATA[ x </a>", "unterminated CDATA"},
        {"<?xml version='1.0'", "unterminated processing instruction"},
        {"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", "internal subsets are not supported"},
        {"</a>", "</a> closes no element"},
        {"<a></ a>", "malformed end tag"},
        {"<a/ >", "'/' not followed by '>'"},
        {"<a>x</a><!x>", "unexpected '<!'"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        ct_status s = ct_xml_parse("bad.xml", bad[k].doc, strlen(bad[k].doc), &x);
        CHECK_MSG(s == CT_ERR_FORMAT, "'%s' parsed (%d)", bad[k].doc, s);
        CHECK_MSG(strstr(ct_last_error(), bad[k].err) && strstr(ct_last_error(), "bad.xml"),
                  "'%s': error \"%s\" lacks \"%s\"", bad[k].doc, ct_last_error(), bad[k].err);
        CHECK(x.n == 0 && x.nodes == NULL);
    }
    /* a NUL byte inside, and deep nesting */
    CHECK(ct_xml_parse("nul.xml", "<a>\n\0</a>", 9, &x) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("nul.xml:2: NUL byte");
    char deep[4 * (CT_XML_MAX_DEPTH + 2) + 8] = "";
    for (int k = 0; k <= CT_XML_MAX_DEPTH; k++) strcat(deep, "<a>");
    CHECK(ct_xml_parse("deep.xml", deep, strlen(deep), &x) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("nested more than");
}

/* ---- voc: ---------------------------------------------------------------- */

/* One VOC annotation with objects given as "name:difficult:box" lines. */
static void write_voc_ann(const char *root, const char *id, int w, int h, const char *objects) {
    char rel[512], text[8192];
    int n = snprintf(text, sizeof text,
                     "<?xml version=\"1.0\"?>\n<annotation>\n\t<folder>VOC2007</folder>\n"
                     "\t<filename>%s.jpg</filename>\n\t<size>\n\t\t<width>%d</width>\n"
                     "\t\t<height>%d</height>\n\t\t<depth>3</depth>\n\t</size>\n%s</annotation>\n",
                     id, w, h, objects);
    CHECK(n > 0 && (size_t)n < sizeof text);
    snprintf(rel, sizeof rel, "%s/Annotations/%s.xml", root, id);
    write_text(rel, text);
    snprintf(rel, sizeof rel, "%s/JPEGImages/%s.jpg", root, id);
    touch(rel);
}

#define OBJ(name, difficult, x0, y0, x1, y1)                                               \
    "\t<object>\n\t\t<name>" name "</name>\n\t\t<pose>Left</pose>\n\t\t<truncated>0"       \
    "</truncated>\n\t\t<difficult>" #difficult "</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>" #x0 \
    "</xmin>\n\t\t\t<ymin>" #y0 "</ymin>\n\t\t\t<xmax>" #x1 "</xmax>\n\t\t\t<ymax>" #y1       \
    "</ymax>\n\t\t</bndbox>\n\t</object>\n"

static void make_voc(const char *root, bool class_lists, bool test_list) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/ImageSets/Main/train.txt", root);
    write_text(rel, "a1\na2\n\na3\n");
    snprintf(rel, sizeof rel, "%s/ImageSets/Main/val.txt", root);
    write_text(rel, "a4\n");
    if (test_list) {
        snprintf(rel, sizeof rel, "%s/ImageSets/Main/test.txt", root);
        write_text(rel, "a5\r\na6\r\n");
    }
    if (class_lists) {
        /* only <class>_train.txt names classes: trainval/val lists and the
         * split lists themselves do not */
        static const char *const lists[] = {"dog_train.txt", "cat_train.txt",
                                            "dining_table_train.txt", "cat_val.txt",
                                            "dog_trainval.txt"};
        for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
            snprintf(rel, sizeof rel, "%s/ImageSets/Main/%s", root, lists[k]);
            write_text(rel, "a1  1\na2 -1\n");
        }
    }
    /* a1: cat and dog, the dog with a <part> whose name is not a class */
    write_voc_ann(root, "a1", 500, 375,
                  OBJ("cat", 0, 1, 1, 500, 375)
                  "\t<object>\n\t\t<name>dog</name>\n\t\t<difficult>0</difficult>\n"
                  "\t\t<bndbox><xmin>10.5</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax>"
                  "</bndbox>\n\t\t<part>\n\t\t\t<name>head</name>\n\t\t\t<bndbox><xmin>1</xmin>"
                  "<ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>\n\t\t</part>\n"
                  "\t</object>\n");
    /* a2: only a difficult dog (skipped, as DualCoOp), name in odd case */
    write_voc_ann(root, "a2", 100, 80, OBJ(" Dog ", 1, 3, 4, 50, 60));
    /* a3: no objects */
    write_voc_ann(root, "a3", 64, 64, "");
    /* a4: a comment, attributes, no <difficult> */
    write_voc_ann(root, "a4", 64, 64,
                  "\t<!-- <object><name>cat</name></object> -->\n"
                  "\t<object id=\"7\">\n\t\t<name>dining_table</name>\n\t</object>\n");
    write_voc_ann(root, "a5", 64, 64, OBJ("cat", 1, 1, 1, 2, 2) OBJ("cat", 0, 1, 1, 64, 64));
    write_voc_ann(root, "a6", 64, 64, OBJ("dining_table", 0, 0, 0, 64, 64));
}

static void test_voc(void) {
    char root[2048], spec[2100];
    tmp(root, sizeof root, "voc1");
    make_voc("voc1", true, true);
    snprintf(spec, sizeof spec, "voc:%s", root);
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    CHECK(strcmp(s.train->name, "voc1") == 0 && strcmp(s.train->root, root) == 0);
    CHECK_CLASSES(s.train, "cat", "dining table", "dog");
    CHECK_CLASSES(s.test, "cat", "dining table", "dog");
    CHECK(n_items(s.train) == 3 && n_items(s.val) == 1 && n_items(s.test) == 2);
    CHECK_ITEM(s.train, 0, "JPEGImages/a1.jpg", "1 0 1", 0);
    CHECK_ITEM(s.train, 1, "JPEGImages/a2.jpg", "0 0 0", 0);
    CHECK_ITEM(s.train, 2, "JPEGImages/a3.jpg", "0 0 0", 0);
    CHECK_ITEM(s.val, 0, "JPEGImages/a4.jpg", "0 1 0", 1);
    CHECK_ITEM(s.test, 0, "JPEGImages/a5.jpg", "1 0 0", 0);
    CHECK_ITEM(s.test, 1, "JPEGImages/a6.jpg", "0 1 0", 1);
    ct_splits_free(&s);

    /* classnames.txt in ROOT names the classes (positional or by key) */
    char rel[512];
    snprintf(rel, sizeof rel, "voc1/classnames.txt");
    write_text(rel, "kitty\ntable\npuppy\n");
    CHECK_OK(ct_data_open(spec, &s));
    CHECK_CLASSES(s.train, "kitty", "table", "puppy");
    ct_splits_free(&s);
    unlink(tmp(root, sizeof root, "voc1/classnames.txt"));
}

static void test_voc_without_lists(void) {
    /* no <class>_train.txt: classes are the object names; no test.txt: val
     * is the test split and val is held out of train */
    char root[2048], spec[2100], rel[512], ids[4096] = "a2\n";
    make_voc("voc2", false, false);
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "b%02d", i);
        write_voc_ann("voc2", id, 64, 64, i % 2 ? OBJ("horse", 0, 1, 1, 9, 9)
                                                : OBJ("cat", 0, 1, 1, 9, 9));
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s\n", id);
    }
    snprintf(rel, sizeof rel, "voc2/ImageSets/Main/train.txt");
    write_text(rel, ids);
    snprintf(spec, sizeof spec, "voc:%s", tmp(root, sizeof root, "voc2"));
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    /* a2's difficult " Dog " still names a class (lowercased, trimmed) */
    CHECK_CLASSES(s.train, "cat", "dining table", "dog", "horse");
    CHECK(n_items(s.test) == 1);
    CHECK_ITEM(s.test, 0, "JPEGImages/a4.jpg", "0 1 0 0", 1);
    /* held out per lowest present class: 2 of cat's 21 (a2 has none: 0),
     * 2 of horse's 20 */
    CHECK_MSG(n_items(s.train) == 37 && n_items(s.val) == 4, "train %lld val %lld",
              (long long)n_items(s.train), (long long)n_items(s.val));
    int64_t seen = 0;
    for (int i = 0; i < 40; i++) {
        char p[64];
        snprintf(p, sizeof p, "JPEGImages/b%02d.jpg", i);
        int64_t a = find_path(s.train, p), b = find_path(s.val, p);
        CHECK_MSG((a >= 0) != (b >= 0), "%s in train %lld, val %lld", p, (long long)a,
                  (long long)b);
        const ct_dataset *d = a >= 0 ? s.train : s.val;
        int64_t k = a >= 0 ? a : b;
        if (k >= 0) {
            seen++;
            CHECK(d->targets[k * 4 + (i % 2 ? 3 : 0)] == 1 && d->items[k].label == (i % 2 ? 3 : 0));
        }
    }
    CHECK(seen == 40);
    ct_splits_free(&s);
}

/* A one-image VOC set whose annotation is xml; the error must name the
 * annotation file and contain want. */
static void voc_error(const char *dir, const char *xml, const char *want) {
    char rel[512], root[2048], spec[2100], file[2100];
    snprintf(rel, sizeof rel, "%s/ImageSets/Main/train.txt", dir);
    write_text(rel, "x1\n");
    snprintf(rel, sizeof rel, "%s/ImageSets/Main/test.txt", dir);
    write_text(rel, "x1\n");
    snprintf(rel, sizeof rel, "%s/ImageSets/Main/cat_train.txt", dir);
    write_text(rel, "x1 1\n");
    snprintf(rel, sizeof rel, "%s/Annotations/x1.xml", dir);
    write_text(rel, xml);
    snprintf(rel, sizeof rel, "%s/JPEGImages/x1.jpg", dir);
    touch(rel);
    tmp(root, sizeof root, dir);
    snprintf(spec, sizeof spec, "voc:%s", root);
    snprintf(file, sizeof file, "%s/Annotations/x1.xml", root);
    ct_splits s;
    ct_status st = ct_data_open(spec, &s);
    CHECK_MSG(st == CT_ERR_FORMAT, "%s: status %d (%s)", want, st, ct_last_error());
    CHECK_ERR_HAS(file);
    CHECK_ERR_HAS(want);
    CHECK(s.train == NULL && s.test == NULL);
}

static void test_voc_errors(void) {
    const char *head = "<annotation><size><width>50</width><height>40</height></size>\n";
    char xml[2048];
    voc_error("vocbad", "<annotation>\n<size><width>5</width></height></size></annotation>",
              "x1.xml:2: </height> closes <size> (line 2)");
    snprintf(xml, sizeof xml, "%s<object><name>zebra</name></object></annotation>", head);
    voc_error("vocbad", xml, "object name 'zebra' is not a class");
    snprintf(xml, sizeof xml, "%s" OBJ("cat", 0, 1, 1, 51, 40) "</annotation>", head);
    voc_error("vocbad", xml, "x1.xml:7: box outside the image");
    snprintf(xml, sizeof xml, "%s" OBJ("cat", 0, -1, 1, 5, 5) "</annotation>", head);
    voc_error("vocbad", xml, "box outside the image");
    snprintf(xml, sizeof xml, "%s" OBJ("cat", 0, 9, 1, 5, 5) "</annotation>", head);
    voc_error("vocbad", xml, "empty box");
    snprintf(xml, sizeof xml, "%s" OBJ("cat", 2, 1, 1, 5, 5) "</annotation>", head);
    voc_error("vocbad", xml, "<difficult> '2' is not an integer in [0, 1]");
    snprintf(xml, sizeof xml, "%s" OBJ("cat", 0, 1, 1, 5, x) "</annotation>", head);
    voc_error("vocbad", xml, "<ymax> 'x' is not a number");
    snprintf(xml, sizeof xml, "%s<object><difficult>0</difficult></object></annotation>", head);
    voc_error("vocbad", xml, "x1.xml:2: <object> without a <name>");
    voc_error("vocbad", "<annotation><object><name>cat</name></object></annotation>",
              "<annotation> has no <size>");
    voc_error("vocbad", "<annotation><size><width>0</width><height>4</height></size>"
              "</annotation>", "<width> '0' is not an integer");
    voc_error("vocbad", "<annotation><size><width>5</width></size></annotation>",
              "<size> has no <height>");
    voc_error("vocbad", "<annotation><size><width>5</width><height>4</height></size>\n"
              "<size><width>5</width><height>4</height></size></annotation>",
              "x1.xml:2: a second <size>");
    voc_error("vocbad", "<voc/>", "the root element is <voc>");
    voc_error("vocbad", "<annotation><name>&bad;</name></annotation>", "unknown entity");

    /* folder-level problems name the list or the missing file */
    char root[2048], spec[2100];
    ct_splits s;
    tmp(root, sizeof root, "vocbad");
    snprintf(spec, sizeof spec, "voc:%s", root);
    write_text("vocbad/Annotations/x1.xml", "<annotation><size><width>5</width><height>4"
               "</height></size></annotation>");
    write_text("vocbad/ImageSets/Main/test.txt", "x1\nx2\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("x2.xml");
    CHECK_ERR_HAS("test.txt:2");
    write_text("vocbad/ImageSets/Main/test.txt", "x1 1\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("test.txt:1: expected one image id");
    write_text("vocbad/ImageSets/Main/test.txt", "x1\n");
    unlink(tmp(root, sizeof root, "vocbad/JPEGImages/x1.jpg"));
    tmp(root, sizeof root, "vocbad");
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("JPEGImages/x1.jpg' does not exist");
    touch("vocbad/JPEGImages/x1.jpg");
    write_text("vocbad/ImageSets/Main/train.txt", "\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train.txt: no image ids");
    unlink(tmp(root, sizeof root, "vocbad/ImageSets/Main/train.txt"));
    tmp(root, sizeof root, "vocbad");
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("train.txt: no such file");
    CHECK(ct_data_open("voc:/nonexistent/voc", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("/nonexistent/voc");
    CHECK(ct_data_open("voc:", &s) == CT_ERR_ARG);
}

/* ---- coco: --------------------------------------------------------------- */

static const char *COCO_CATS =
    "\"categories\": [{\"supercategory\": \"animal\", \"id\": 5, \"name\": \"dog\"},"
    " {\"id\": 2, \"name\": \"cat\"}, {\"id\": 9, \"name\": \"traffic light\"}]";

static void test_coco(void) {
    /* 2014 layout: images in ROOT/<split><year>; no test file */
    writef("coco1/annotations/instances_train2014.json",
           "{\"info\": {}, \"images\": ["
           "{\"id\": 10, \"file_name\": \"t10.jpg\", \"width\": 640, \"height\": 480},"
           "{\"id\": 3, \"file_name\": \"t3.jpg\", \"width\": 100, \"height\": 100},"
           "{\"id\": 7, \"file_name\": \"t7.jpg\", \"width\": 100, \"height\": 100},"
           "{\"id\": 4, \"file_name\": \"t4.jpg\", \"width\": 100, \"height\": 100}],"
           "\"annotations\": ["
           "{\"id\": 1, \"image_id\": 3, \"category_id\": 9, \"bbox\": [0, 0, 100, 100],"
           " \"area\": 1, \"iscrowd\": 0},"
           "{\"id\": 2, \"image_id\": 10, \"category_id\": 5, \"bbox\": [600.5, 400, 39.5, 80]},"
           "{\"id\": 3, \"image_id\": 10, \"category_id\": 2, \"iscrowd\": 1},"
           "{\"id\": 4, \"image_id\": 3, \"category_id\": 9, \"bbox\": [1, 1, 2, 2]},"
           "{\"id\": 5, \"image_id\": 4, \"category_id\": 5, \"bbox\": [1, 1, 2, 2]}],"
           "%s}", COCO_CATS);
    writef("coco1/annotations/instances_val2014.json",
           "{\"images\": [{\"id\": 1, \"file_name\": \"v1.jpg\", \"width\": 9, \"height\": 9}],"
           " \"annotations\": [{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 9, 9]}],"
           " %s}", COCO_CATS);
    write_text("coco1/annotations/instances_val2014.txt", "ignored");
    static const char *const imgs[] = {"coco1/train2014/t10.jpg", "coco1/train2014/t3.jpg",
                                       "coco1/train2014/t4.jpg", "coco1/val2014/v1.jpg",
                                       "coco1/images/val2014/decoy.jpg"};
    for (size_t k = 0; k < sizeof imgs / sizeof *imgs; k++) touch(imgs[k]);
    char root[2048], spec[2100];
    snprintf(spec, sizeof spec, "coco:%s", tmp(root, sizeof root, "coco1"));
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    CHECK(strcmp(s.train->name, "coco1") == 0 && strcmp(s.train->root, root) == 0);
    CHECK_CLASSES(s.train, "cat", "dog", "traffic light");
    /* images order; t7 (no annotation) left out as DualCoOp's ids */
    CHECK(n_items(s.train) == 3 && s.val == NULL && n_items(s.test) == 1);
    CHECK_ITEM(s.train, 0, "train2014/t10.jpg", "1 1 0", 0);
    CHECK_ITEM(s.train, 1, "train2014/t3.jpg", "0 0 1", 2);
    CHECK_ITEM(s.train, 2, "train2014/t4.jpg", "0 1 0", 1);
    CHECK_ITEM(s.test, 0, "val2014/v1.jpg", "1 0 0", 0);
    ct_splits_free(&s);

    /* images/<split><year>, a test file, val given */
    const char *img1 = "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 9, "
                       "\"height\": 9}], \"annotations\": [{\"image_id\": 1, \"category_id\": %d}],"
                       " %s}";
    writef("coco2/annotations/instances_train2017.json", img1, 5, COCO_CATS);
    writef("coco2/annotations/instances_val2017.json", img1, 9, COCO_CATS);
    writef("coco2/annotations/instances_test2017.json", img1, 2, COCO_CATS);
    touch("coco2/images/train2017/a.jpg");
    touch("coco2/images/val2017/a.jpg");
    touch("coco2/images/test2017/a.jpg");
    snprintf(spec, sizeof spec, "coco:%s", tmp(root, sizeof root, "coco2"));
    CHECK_OK(ct_data_open(spec, &s));
    CHECK_ITEM(s.train, 0, "images/train2017/a.jpg", "0 1 0", 1);
    CHECK_ITEM(s.val, 0, "images/val2017/a.jpg", "0 0 1", 2);
    CHECK_ITEM(s.test, 0, "images/test2017/a.jpg", "1 0 0", 0);
    ct_splits_free(&s);
}

/* coco3's train file is json (val is fine); the error names it and has want. */
static void coco_error(const char *json, const char *want) {
    writef("coco3/annotations/instances_val.json",
           "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 9, \"height\": 9}],"
           " \"annotations\": [{\"image_id\": 1, \"category_id\": 2}], %s}", COCO_CATS);
    write_text("coco3/annotations/instances_train.json", json);
    touch("coco3/JPEGImages/a.jpg");
    char root[2048], spec[2100];
    snprintf(spec, sizeof spec, "coco:%s", tmp(root, sizeof root, "coco3"));
    ct_splits s;
    ct_status st = ct_data_open(spec, &s);
    CHECK_MSG(st == CT_ERR_FORMAT, "%s: status %d (%s)", want, st, ct_last_error());
    CHECK_ERR_HAS("coco3/annotations/instances_train.json");
    CHECK_ERR_HAS(want);
}

static void test_coco_errors(void) {
    char j[4096];
    const char *im = "\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 9, "
                     "\"height\": 9}]";
    snprintf(j, sizeof j, "{%s, \"annotations\": [{\"image_id\": 1, \"category_id\": 3}], %s}",
             im, COCO_CATS);
    coco_error(j, "annotations[0]: category_id 3 is not in \"categories\"");
    snprintf(j, sizeof j, "{%s, \"annotations\": [{\"image_id\": 1, \"category_id\": 2},"
             " {\"image_id\": 8, \"category_id\": 2}], %s}", im, COCO_CATS);
    coco_error(j, "annotations[1]: image_id 8 is not in \"images\"");
    snprintf(j, sizeof j, "{%s, \"annotations\": [{\"image_id\": 1, \"category_id\": 2, "
             "\"bbox\": [5, 5, 5, 2]}], %s}", im, COCO_CATS);
    coco_error(j, "annotations[0]: bbox [5, 5, 5, 2] is outside image 1 (9x9)");
    snprintf(j, sizeof j, "{%s, \"annotations\": [{\"image_id\": 1, \"category_id\": 2, "
             "\"bbox\": [1, 1, 2]}], %s}", im, COCO_CATS);
    coco_error(j, "\"bbox\" must be [x, y, width, height]");
    coco_error("{\"images\": [", "JSON parse error");
    snprintf(j, sizeof j, "{%s, \"annotations\": [], \"categories\": [{\"id\": 2, \"name\": "
             "\"cat\"}]}", im);
    coco_error(j, "3 categories, ");
    snprintf(j, sizeof j, "{%s, \"annotations\": [], \"categories\": [{\"id\": 2, \"name\": "
             "\"cat\"}, {\"id\": 2, \"name\": \"dog\"}]}", im);
    coco_error(j, "category id 2 repeats");
    snprintf(j, sizeof j, "{%s, \"annotations\": [], \"categories\": [{\"id\": 2, \"name\": "
             "\"cat\"}, {\"id\": 3, \"name\": \"cat\"}]}", im);
    coco_error(j, "category name 'cat' repeats");
    snprintf(j, sizeof j, "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 9, "
             "\"height\": 9}, {\"id\": 1, \"file_name\": \"b.jpg\", \"width\": 9, \"height\": "
             "9}], \"annotations\": [], %s}", COCO_CATS);
    coco_error(j, "image id 1 repeats");
    snprintf(j, sizeof j, "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 0, "
             "\"height\": 9}], \"annotations\": [], %s}", COCO_CATS);
    coco_error(j, "images[0] (id 1): \"width\" and \"height\"");
    snprintf(j, sizeof j, "{%s, %s}", im, COCO_CATS);
    coco_error(j, "missing the \"annotations\" array");
    /* the val file's categories differ from train's */
    snprintf(j, sizeof j, "{%s, \"annotations\": [], \"categories\": [{\"id\": 2, \"name\": "
             "\"cat\"}, {\"id\": 5, \"name\": \"wolf\"}, {\"id\": 9, \"name\": \"traffic light\"}"
             "]}", im);
    write_text("coco3/annotations/instances_val.json", j);
    snprintf(j, sizeof j, "{%s, \"annotations\": [{\"image_id\": 1, \"category_id\": 2}], %s}",
             im, COCO_CATS);
    write_text("coco3/annotations/instances_train.json", j);
    char root[2048], spec[2100];
    snprintf(spec, sizeof spec, "coco:%s", tmp(root, sizeof root, "coco3"));
    ct_splits s;
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("instances_val.json: categories differ from ");
    CHECK_ERR_HAS("'wolf'");
    /* two train files, no train file, no image folder */
    write_text("coco3/annotations/instances_train2014.json", "{}");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("are train files; keep one");
    write_text("coco4/annotations/instances_val.json", "{}");
    snprintf(spec, sizeof spec, "coco:%s", tmp(root, sizeof root, "coco4"));
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("no instances_train<YEAR>.json");
    write_text("coco4/annotations/instances_train.json", "{}");
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("JPEGImages exists");
}

/* ---- mlcsv: / mljson: ---------------------------------------------------- */

static void test_mlcsv(void) {
    write_text("ml1/train.csv", "path,labels\n"
                                "img/a.jpg,cat;dog\n"
                                "\"img/b,c.jpg\",\"dog ; ?cat\"\n"
                                "img/c.jpg,\n"
                                "\n"
                                "img/d.jpg,?hot_dog\r\n");
    write_text("ml1/val.csv", "img/e.jpg,bird\n");
    write_text("ml1/test.csv", "img/f.jpg,cat;cat;hot_dog\nimg/a.jpg,dog\n");
    static const char *const imgs[] = {"ml1/img/a.jpg", "ml1/img/b,c.jpg", "ml1/img/c.jpg",
                                       "ml1/img/d.jpg", "ml1/img/e.jpg", "ml1/img/f.jpg"};
    for (size_t k = 0; k < sizeof imgs / sizeof *imgs; k++) touch(imgs[k]);
    char d[2048], spec[4200];
    tmp(d, sizeof d, "ml1");
    snprintf(spec, sizeof spec, "mlcsv:%s/train.csv,%s/val.csv,%s/test.csv", d, d, d);
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    CHECK(strcmp(s.train->name, "train") == 0 && strcmp(s.train->root, d) == 0);
    /* the union of every file's names, sorted; '_' read as a space */
    CHECK_CLASSES(s.train, "bird", "cat", "dog", "hot dog");
    CHECK(n_items(s.train) == 4 && n_items(s.val) == 1 && n_items(s.test) == 2);
    CHECK_ITEM(s.train, 0, "img/a.jpg", "0 1 1 0", 1);
    CHECK_ITEM(s.train, 1, "img/b,c.jpg", "0 -1 1 0", 2);
    CHECK_ITEM(s.train, 2, "img/c.jpg", "0 0 0 0", 0);
    CHECK_ITEM(s.train, 3, "img/d.jpg", "0 0 0 -1", 0);
    CHECK_ITEM(s.val, 0, "img/e.jpg", "1 0 0 0", 0);
    CHECK_ITEM(s.test, 0, "img/f.jpg", "0 1 0 1", 1);
    ct_splits_free(&s);

    /* @ROOT, and classnames.txt beside the first file (by identifier) */
    write_text("ml1/classnames.txt", "n00000001 x\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT); /* keyed: no line for 'bird' */
    CHECK_ERR_HAS("classnames.txt");
    write_text("ml1/classnames.txt", "Bird\nCat\nDog\nHot dog\n");
    write_text("ml1/sub/train.csv", "a.jpg,cat\n");
    write_text("ml1/sub/test.csv", "a.jpg,dog\n");
    snprintf(spec, sizeof spec, "mlcsv:%s/train.csv,%s/sub/test.csv@%s/img", d, d, d);
    write_text("ml1/train.csv", "a.jpg,cat;dog\nb,c.jpg,dog\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train.csv:2: expected 2 fields \"path,labels\", got more");
    write_text("ml1/train.csv", "a.jpg,cat;dog\nc.jpg,\n");
    write_text("ml1/classnames.txt", "Cat\nDog\n");
    CHECK_OK(ct_data_open(spec, &s));
    CHECK_CLASSES(s.train, "Cat", "Dog");
    /* two files: train and test, 10% of train held out (none of 2 here) */
    CHECK(n_items(s.train) == 2 && s.val == NULL && n_items(s.test) == 1);
    CHECK_ITEM(s.train, 0, "a.jpg", "1 1", 0);
    CHECK_ITEM(s.test, 0, "a.jpg", "0 1", 1);
    ct_splits_free(&s);
    unlink(tmp(d, sizeof d, "ml1/classnames.txt"));

    /* one file: 80/10/10 */
    char rows[8192] = "";
    for (int i = 0; i < 50; i++) {
        char img[64];
        snprintf(img, sizeof img, "ml2/i%02d.jpg", i);
        touch(img);
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows), "i%02d.jpg,%s\n", i,
                 i % 2 ? "a;b" : "b");
    }
    write_text("ml2/all.csv", rows);
    snprintf(spec, sizeof spec, "mlcsv:%s", tmp(d, sizeof d, "ml2/all.csv"));
    CHECK_OK(ct_data_open(spec, &s));
    /* two strata of 25 (lowest present class a or b): 3 + 3 val, 3 + 3 test */
    CHECK_MSG(n_items(s.train) == 38 && n_items(s.val) == 6 && n_items(s.test) == 6,
              "%lld/%lld/%lld", (long long)n_items(s.train), (long long)n_items(s.val),
              (long long)n_items(s.test));
    ct_splits_free(&s);
}

static void mlcsv_error(const char *text, const char *want) {
    write_text("ml3/bad.csv", text);
    write_text("ml3/test.csv", "a.jpg,cat\n");
    touch("ml3/a.jpg");
    char d[2048], spec[4200];
    tmp(d, sizeof d, "ml3");
    snprintf(spec, sizeof spec, "mlcsv:%s/bad.csv,%s/test.csv", d, d);
    ct_splits s;
    ct_status st = ct_data_open(spec, &s);
    CHECK_MSG(st != CT_OK, "%s: opened", want);
    CHECK_ERR_HAS("ml3/bad.csv");
    CHECK_ERR_HAS(want);
}

static void test_mlcsv_errors(void) {
    mlcsv_error("a.jpg,cat;;dog\n", "bad.csv:1: an empty label");
    mlcsv_error("a.jpg,cat\na.jpg,?\n", "bad.csv:2: an empty label after '?'");
    mlcsv_error("a.jpg,cat;?cat\n", "bad.csv:1: 'cat' is both present and unknown");
    mlcsv_error("path,labels\na.jpg\n", "bad.csv:2: expected 2 fields");
    mlcsv_error("\"a.jpg,cat\n", "bad.csv:1: unterminated quoted field");
    mlcsv_error(",cat\n", "bad.csv:1: empty path");
    mlcsv_error("a.jpg,cat\nnope.jpg,cat\n", "bad.csv:2: image file");
    mlcsv_error("path,labels\n", "no training items");
    char d[2048], spec[4200];
    ct_splits s;
    snprintf(spec, sizeof spec, "mlcsv:%s/nope.csv", tmp(d, sizeof d, "ml3"));
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("nope.csv");
    CHECK(ct_data_open("mlcsv:a.csv,b.csv,c.csv,d.csv", &s) == CT_ERR_ARG);
    CHECK(ct_data_open("mlcsv:a.csv,,c.csv", &s) == CT_ERR_ARG);
    CHECK(ct_data_open("mlcsv:a.csv@", &s) == CT_ERR_ARG);
}

static void test_mljson(void) {
    touch("mj/img/a.jpg");
    touch("mj/img/b.jpg");
    write_text("mj/set.json",
               "{\"classes\": [\"zebra\", \"cat\", \"hot_dog\"],\n"
               " \"train\": [{\"path\": \"img/a.jpg\", \"labels\": [\"cat\", \"zebra\"]},\n"
               "            {\"path\": \"img/b.jpg\", \"labels\": [\"hot_dog\"], "
               "\"unknown\": [\"zebra\"]},\n"
               "            {\"path\": \"img/a.jpg\"}],\n"
               " \"val\": [{\"path\": \"img/b.jpg\", \"labels\": []}],\n"
               " \"test\": [{\"path\": \"img/b.jpg\", \"unknown\": [\"cat\", \"hot_dog\"]}]}\n");
    char f[2048], spec[2200];
    snprintf(spec, sizeof spec, "mljson:%s", tmp(f, sizeof f, "mj/set.json"));
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    CHECK(strcmp(s.train->name, "set") == 0);
    CHECK_CLASSES(s.train, "zebra", "cat", "hot dog"); /* the file's order */
    CHECK(n_items(s.train) == 3 && n_items(s.val) == 1 && n_items(s.test) == 1);
    CHECK_ITEM(s.train, 0, "img/a.jpg", "1 1 0", 0);
    CHECK_ITEM(s.train, 1, "img/b.jpg", "-1 0 1", 2);
    CHECK_ITEM(s.train, 2, "img/a.jpg", "0 0 0", 0);
    CHECK_ITEM(s.val, 0, "img/b.jpg", "0 0 0", 0);
    CHECK_ITEM(s.test, 0, "img/b.jpg", "0 -1 -1", 0);
    ct_splits_free(&s);

    static const struct { const char *json, *err; } bad[] = {
        {"{\"classes\": [\"a\"], \"train\": [{\"path\": \"img/a.jpg\", \"labels\": [\"b\"]}], "
         "\"test\": []}", "train[0].labels[0]: 'b' is not in \"classes\""},
        {"{\"classes\": [\"a\"], \"train\": [{\"path\": \"img/a.jpg\", \"labels\": [\"a\"], "
         "\"unknown\": [\"a\"]}], \"test\": []}", "train[0]: 'a' is in both"},
        {"{\"classes\": [\"a\"], \"train\": [{\"path\": \"img/a.jpg\"}]}",
         "missing the \"test\" array"},
        {"{\"classes\": [\"a\", \"a\"], \"train\": [], \"test\": []}",
         "classes[1]: 'a' repeats classes[0]"},
        {"{\"classes\": [], \"train\": [], \"test\": []}", "\"classes\" is empty"},
        {"{\"classes\": [\"a\"], \"train\": [], \"test\": []}", "no training items"},
        {"{\"classes\": [\"a\"], \"train\": [{\"labels\": []}], \"test\": []}",
         "train[0]: expected an object with a non-empty \"path\""},
        {"{\"classes\": [\"a\"], \"train\": [{\"path\": \"img/none.jpg\"}], \"test\": []}",
         "train[0].path: image file"},
        {"{\"classes\": [\"a\"], \"train\": [{\"path\": \"img/a.jpg\", \"labels\": \"a\"}], "
         "\"test\": []}", "train[0].labels: expected an array"},
        {"{\"classes\": [\"a\"], ", "JSON parse error"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        write_text("mj/bad.json", bad[k].json);
        snprintf(spec, sizeof spec, "mljson:%s", tmp(f, sizeof f, "mj/bad.json"));
        CHECK_MSG(ct_data_open(spec, &s) != CT_OK, "bad[%zu] opened", k);
        CHECK_ERR_HAS("mj/bad.json");
        CHECK_ERR_HAS(bad[k].err);
    }
    /* @ROOT; val absent: 10% of train held out */
    char rows[16384] = "{\"classes\": [\"a\", \"b\"], \"test\": [], \"train\": [";
    for (int i = 0; i < 30; i++)
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows),
                 "%s{\"path\": \"a.jpg\", \"labels\": [\"%s\"]}", i ? "," : "", i < 10 ? "a" : "b");
    strcat(rows, "]}");
    write_text("mj/noval.json", rows);
    char root[2048];
    snprintf(spec, sizeof spec, "mljson:%s@%s", tmp(f, sizeof f, "mj/noval.json"),
             tmp(root, sizeof root, "mj/img"));
    CHECK_OK(ct_data_open(spec, &s));
    CHECK_MSG(n_items(s.train) == 27 && n_items(s.val) == 3 && n_items(s.test) == 0,
              "%lld/%lld/%lld", (long long)n_items(s.train), (long long)n_items(s.val),
              (long long)n_items(s.test));
    CHECK(s.test && s.test->targets != NULL); /* empty, still multi-label */
    ct_splits_free(&s);
}

static void test_spec_absolute(void) {
    char out[8192], cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    char want[8192];
    CHECK_OK(ct_data_spec_absolute("voc:/abs/VOC2007", out, sizeof out));
    CHECK(strcmp(out, "voc:/abs/VOC2007") == 0);
    CHECK_OK(ct_data_spec_absolute("coco:rel/coco", out, sizeof out));
    snprintf(want, sizeof want, "coco:%s/rel/coco", cwd);
    CHECK_MSG(strcmp(out, want) == 0, "%s", out);
    CHECK_OK(ct_data_spec_absolute("mljson:x/set.json@img", out, sizeof out));
    snprintf(want, sizeof want, "mljson:%s/x/set.json@%s/img", cwd, cwd);
    CHECK_MSG(strcmp(out, want) == 0, "%s", out);
    CHECK_OK(ct_data_spec_absolute("mlcsv:a.csv,/b.csv,c.csv@r,oot", out, sizeof out));
    snprintf(want, sizeof want, "mlcsv:%s/a.csv,/b.csv,%s/c.csv@%s/r,oot", cwd, cwd, cwd);
    CHECK_MSG(strcmp(out, want) == 0, "%s", out);
    CHECK_OK(ct_data_spec_absolute("mlcsv:a.csv,b.csv", out, sizeof out));
    snprintf(want, sizeof want, "mlcsv:%s/a.csv,%s/b.csv", cwd, cwd);
    CHECK_MSG(strcmp(out, want) == 0, "%s", out);
}

/* ---- the scenes set through three loaders ------------------------------- */

static bool have_fm(void) {
    struct stat st;
    return stat(FM_DIR "/t10k-labels-idx1-ubyte.gz", &st) == 0 &&
           stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) == 0;
}

static void same_split(const char *what, const ct_dataset *a, const ct_dataset *b) {
    if (!a || !b) {
        CHECK_MSG(a == b, "%s: one split missing", what);
        return;
    }
    CHECK_MSG(a->n_classes == b->n_classes && a->n_items == b->n_items,
              "%s: %d classes %lld items vs %d, %lld", what, a->n_classes, (long long)a->n_items,
              b->n_classes, (long long)b->n_items);
    if (a->n_classes != b->n_classes || a->n_items != b->n_items) return;
    for (int c = 0; c < a->n_classes; c++)
        CHECK_MSG(strcmp(a->classnames[c], b->classnames[c]) == 0, "%s: class %d '%s' vs '%s'",
                  what, c, a->classnames[c], b->classnames[c]);
    for (int64_t i = 0; i < a->n_items; i++) {
        CHECK_MSG(strcmp(a->items[i].path, b->items[i].path) == 0 &&
                      a->items[i].label == b->items[i].label,
                  "%s: item %lld %s/%d vs %s/%d", what, (long long)i, a->items[i].path,
                  a->items[i].label, b->items[i].path, b->items[i].label);
        CHECK_MSG(memcmp(a->targets + i * a->n_classes, b->targets + i * b->n_classes,
                         (size_t)a->n_classes) == 0, "%s: item %lld targets differ", what,
                  (long long)i);
    }
}

static void test_scenes_three_loaders(void) {
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    char dir[2048], spec[3][6500];
    tmp(dir, sizeof dir, "scenes");
    ct_scenes_cfg cfg = ct_scenes_cfg_default();
    cfg.n_train = 12, cfg.n_val = 4, cfg.n_test = 6, cfg.seed = 5;
    CHECK_OK(ct_data_make_scenes(&cfg, dir));
    snprintf(spec[0], sizeof spec[0], "voc:%s", dir);
    snprintf(spec[1], sizeof spec[1], "coco:%s", dir);
    snprintf(spec[2], sizeof spec[2], "mlcsv:%s/labels_train.csv,%s/labels_val.csv,"
             "%s/labels_test.csv", dir, dir, dir);
    ct_splits s[3];
    for (int k = 0; k < 3; k++) {
        ct_status st = ct_data_open(spec[k], &s[k]);
        CHECK_MSG(st == CT_OK, "%s: %s", spec[k], ct_last_error());
        if (st != CT_OK) {
            for (int j = 0; j < k; j++) ct_splits_free(&s[j]);
            return;
        }
    }
    CHECK(n_items(s[0].train) == 12 && n_items(s[0].val) == 4 && n_items(s[0].test) == 6);
    CHECK_CLASSES(s[0].train, "Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal",
                  "Shirt", "Sneaker", "Trouser", "T-shirt/top");
    CHECK(strcmp(s[0].train->items[0].path, "JPEGImages/000001.jpg") == 0);
    CHECK(strcmp(s[0].test->items[5].path, "JPEGImages/000022.jpg") == 0);
    for (int k = 1; k < 3; k++) {
        char what[64];
        snprintf(what, sizeof what, "voc vs %s train", k == 1 ? "coco" : "mlcsv");
        same_split(what, s[0].train, s[k].train);
        snprintf(what, sizeof what, "voc vs %s val", k == 1 ? "coco" : "mlcsv");
        same_split(what, s[0].val, s[k].val);
        snprintf(what, sizeof what, "voc vs %s test", k == 1 ? "coco" : "mlcsv");
        same_split(what, s[0].test, s[k].test);
    }
    /* scenes have 1 to 3 items: at least one present class each, and some
     * have several */
    int multi = 0;
    for (int64_t i = 0; i < s[0].train->n_items; i++) {
        int present = 0;
        for (int c = 0; c < 10; c++) present += s[0].train->targets[i * 10 + c] == 1;
        CHECK(present >= 1 && present <= 3);
        multi += present > 1;
    }
    CHECK(multi > 0);
    for (int k = 0; k < 3; k++) ct_splits_free(&s[k]);
}

/* ---- partial labels on a loaded set ------------------------------------- */

static void test_partial_labels(void) {
    enum { N = 300, K = 5 };
    char rows[32768] = "path,labels\n";
    for (int i = 0; i < N; i++) {
        char lab[64] = "";
        for (int c = 0; c < K; c++) {
            /* every tenth image's c4 is unknown already: it must stay so */
            const char *q = c == K - 1 && i % 10 == 0 ? "?" : "";
            if (*q || (i * 7 + c * 3) % 4 == 0)
                snprintf(lab + strlen(lab), sizeof lab - strlen(lab), "%s%sc%d",
                         *lab ? ";" : "", q, c);
        }
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows), "p.jpg,%s\n", lab);
    }
    touch("pl/p.jpg");
    write_text("pl/train.csv", rows);
    write_text("pl/test.csv", "p.jpg,c0\n");
    char d[2048], spec[4200];
    tmp(d, sizeof d, "pl");
    snprintf(spec, sizeof spec, "mlcsv:%s/train.csv,%s/test.csv@%s", d, d, d);
    ct_splits s;
    ct_status st = ct_data_open(spec, &s);
    CHECK_MSG(st == CT_OK, "%s", ct_last_error());
    if (st != CT_OK) return;
    /* the pool: every target of train and val together */
    const ct_dataset *tr = s.train;
    int64_t m = tr->n_items * tr->n_classes, known = 0, unknown0 = 0;
    for (int64_t i = 0; i < m; i++) {
        known += tr->targets[i] >= 0;
        unknown0 += tr->targets[i] < 0;
    }
    CHECK(unknown0 > 0);
    ct_dataset *a = ct_dataset_partial_labels(tr, 0.3, 42);
    ct_dataset *b = ct_dataset_partial_labels(tr, 0.3, 42);
    ct_dataset *c = ct_dataset_partial_labels(tr, 0.3, 43);
    CHECK(a && b && c);
    if (a && b && c) {
        int64_t kept = 0, differ = 0;
        for (int64_t i = 0; i < m; i++) {
            kept += a->targets[i] >= 0;
            /* a known label keeps its value or becomes unknown; unknowns stay */
            CHECK(a->targets[i] == tr->targets[i] || (a->targets[i] == -1 && tr->targets[i] >= 0));
            differ += a->targets[i] != c->targets[i];
        }
        CHECK(memcmp(a->targets, b->targets, (size_t)m) == 0); /* deterministic */
        CHECK(differ > 0);
        /* kept ~ Binomial(known, 0.3): within 5 standard deviations */
        double mean = 0.3 * (double)known, sd = sqrt(known * 0.3 * 0.7);
        CHECK_MSG(fabs((double)kept - mean) <= 5 * sd, "kept %lld of %lld known (mean %.1f, sd "
                  "%.1f)", (long long)kept, (long long)known, mean, sd);
        for (int64_t i = 0; i < a->n_items; i++)
            CHECK(strcmp(a->items[i].path, tr->items[i].path) == 0 &&
                  a->items[i].label == tr->items[i].label);
    }
    ct_dataset_free(a);
    ct_dataset_free(b);
    ct_dataset_free(c);
    ct_splits_free(&s);
}

int main(void) {
    RUN(test_xml_reader);
    RUN(test_voc);
    RUN(test_voc_without_lists);
    RUN(test_voc_errors);
    RUN(test_coco);
    RUN(test_coco_errors);
    RUN(test_mlcsv);
    RUN(test_mlcsv_errors);
    RUN(test_mljson);
    RUN(test_spec_absolute);
    RUN(test_scenes_three_loaders);
    RUN(test_partial_labels);
    return ct_test_summary();
}
