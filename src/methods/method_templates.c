/* Prompt templates: built-in lists, the template file reader and filling
 * (see method_templates.h). */
#include "methods/method_templates.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"

/* OpenAI CLIP, notebooks/Prompt_Engineering_for_ImageNet.ipynb, in its order
 * (= CoOp trainers/imagenet_templates.py IMAGENET_TEMPLATES). Must stay
 * identical to data/templates/imagenet80.txt (tests/test_logreg.c checks). */
static const char *const k_imagenet80[] = {
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
};

/* CoOp trainers/imagenet_templates.py IMAGENET_TEMPLATES_SELECT. */
static const char *const k_imagenet_select[] = {
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
};

/* data/templates/coop.json, in its order (tests check they agree). The first
 * 15 are CoOp's trainers/zsclip.py CUSTOM_TEMPLATES. Ours:
 *   fashion-mnist: the images are grayscale product shots of clothes, bags
 *     and shoes, so a domain word like CoOp's "a type of pet" would be wrong
 *     for some classes; "a black and white photo of a {}." is one of CLIP's
 *     80 templates and describes what every image is;
 *   digits: the domain word, as CoOp's per-dataset templates do. CLIP's
 *     own MNIST prompt, 'a photo of the number: "{}".' (openai/CLIP
 *     data/prompts.md), suits a model that saw web photos of numbers, not
 *     one pretrained on captions like "a handwritten digit seven": on the
 *     shipped model's mid-training snapshot it scored 16.0% zero-shot against
 *     32.3% for this one (docs/demo.md). */
static const struct {
    const char *dataset, *tmpl;
} k_coop[] = {
    {"OxfordPets", "a photo of a {}, a type of pet."},
    {"OxfordFlowers", "a photo of a {}, a type of flower."},
    {"FGVCAircraft", "a photo of a {}, a type of aircraft."},
    {"DescribableTextures", "{} texture."},
    {"EuroSAT", "a centered satellite photo of {}."},
    {"StanfordCars", "a photo of a {}."},
    {"Food101", "a photo of {}, a type of food."},
    {"SUN397", "a photo of a {}."},
    {"Caltech101", "a photo of a {}."},
    {"UCF101", "a photo of a person doing {}."},
    {"ImageNet", "a photo of a {}."},
    {"ImageNetSketch", "a photo of a {}."},
    {"ImageNetV2", "a photo of a {}."},
    {"ImageNetA", "a photo of a {}."},
    {"ImageNetR", "a photo of a {}."},
    {"fashion-mnist", "a black and white photo of a {}."},
    {"digits", "a handwritten digit {}."},
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* PromptSRC's IMAGENET_TEMPLATES (trainers/imagenet_templates.py): 60 of
 * the 80, i.e. the 80 without these 20 (its mean embedding does not depend
 * on the order). */
static const char *const k_not_in_60[] = {
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.",
    "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.",
    "the cartoon {}.", "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
    "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
};

static const char *k_imagenet60[60];

static void build_imagenet60(void) {
    int n = 0;
    for (int i = 0; i < COUNT(k_imagenet80); i++) {
        bool out = false;
        for (int j = 0; j < COUNT(k_not_in_60) && !out; j++)
            out = !strcmp(k_imagenet80[i], k_not_in_60[j]);
        if (!out && n < 60) k_imagenet60[n++] = k_imagenet80[i];
    }
}

/* MaskCLIP's prompt_templates (tools/maskclip_utils/prompt_engineering.py):
 * the 80 in the same order, then these 5. */
static const char *const k_scene5[] = {
    "there is a {} in the scene.", "there is the {} in the scene.", "this is a {} in the scene.",
    "this is the {} in the scene.", "this is one {} in the scene.",
};

static const char *k_maskclip85[85];

static void build_maskclip85(void) {
    for (int i = 0; i < COUNT(k_imagenet80); i++) k_maskclip85[i] = k_imagenet80[i];
    for (int i = 0; i < COUNT(k_scene5); i++) k_maskclip85[COUNT(k_imagenet80) + i] = k_scene5[i];
}

const char *const *ct_templates_builtin(const char *name, int *n) {
    int count = 0;
    const char *const *list = NULL;
    if (name && strcmp(name, "imagenet60") == 0) {
#pragma omp critical(ct_imagenet60)
        if (!k_imagenet60[59]) build_imagenet60();
        list = k_imagenet60;
        count = COUNT(k_imagenet60);
    } else if (name && strcmp(name, "maskclip85") == 0) {
#pragma omp critical(ct_maskclip85)
        if (!k_maskclip85[84]) build_maskclip85();
        list = k_maskclip85;
        count = COUNT(k_maskclip85);
    } else if (name && strcmp(name, "imagenet80") == 0) {
        list = k_imagenet80;
        count = COUNT(k_imagenet80);
    } else if (name && strcmp(name, "imagenet-select") == 0) {
        list = k_imagenet_select;
        count = COUNT(k_imagenet_select);
    }
    if (n) *n = count;
    return list;
}

ct_status ct_template_check(const char *tmpl, const char *ctx) {
    if (!tmpl) return ct_set_error(CT_ERR_ARG, "%s: NULL template", ctx);
    int holes = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] == '}') {
            holes++;
            p++;
        } else if (*p == '{' || *p == '}') {
            return ct_set_error(CT_ERR_FORMAT,
                                "%s: template \"%s\" has a '%c' that is not part of \"{}\"", ctx,
                                tmpl, *p);
        }
    }
    if (holes != 1)
        return ct_set_error(CT_ERR_FORMAT,
                            "%s: template \"%s\" must contain \"{}\" exactly once (found %d)", ctx,
                            tmpl, holes);
    return CT_OK;
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* The line at *p (up to '\n' or end) without surrounding blanks: [*b, *e).
 * Advances *p past the '\n'. */
static void next_line(char **p, char *end, char **b, char **e) {
    char *nl = memchr(*p, '\n', (size_t)(end - *p));
    char *stop = nl ? nl : end;
    *b = *p;
    *e = stop;
    while (*b < *e && is_blank(**b)) (*b)++;
    while (*e > *b && is_blank((*e)[-1])) (*e)--;
    *p = stop + 1;
}

ct_status ct_templates_load(const char *path, char ***out, int *n) {
    if (!out || !n) return ct_set_error(CT_ERR_ARG, "ct_templates_load: NULL output");
    *out = NULL;
    *n = 0;
    char *text;
    size_t size;
    ct_status st = ct_read_file(path, &text, &size);
    if (st) return st;
    char *end = text + size;
    if (memchr(text, 0, size)) {
        free(text);
        return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte (not a text file)", path);
    }
    /* Pass 1: check and count. Pass 2: copy the pointer array and the
     * strings into one block, so that one free releases everything. */
    int count = 0, line = 0;
    size_t chars = 0;
    char *b, *e;
    for (char *p = text; p < end;) {
        next_line(&p, end, &b, &e);
        line++;
        if (e == b) continue;
        char saved = *e, ctx[64];
        *e = 0;
        snprintf(ctx, sizeof ctx, "line %d", line);
        st = ct_template_check(b, ctx);
        *e = saved;
        if (st) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ct_last_error());
            free(text);
            return ct_set_error(st, "%s: %s", path, msg); /* "path: line N: ..." */
        }
        if (count == INT32_MAX - 1) {
            free(text);
            return ct_set_error(CT_ERR_FORMAT, "%s: too many templates", path);
        }
        count++;
        chars += (size_t)(e - b) + 1;
    }
    if (count == 0) {
        free(text);
        return ct_set_error(CT_ERR_FORMAT, "%s: no templates (the file is empty or blank)", path);
    }
    size_t ptrs = ((size_t)count + 1) * sizeof(char *);
    char **list = malloc(ptrs + chars);
    if (!list) {
        free(text);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %d templates", path, count);
    }
    char *dst = (char *)list + ptrs;
    int k = 0;
    for (char *p = text; p < end;) {
        next_line(&p, end, &b, &e);
        if (e == b) continue;
        size_t len = (size_t)(e - b);
        memcpy(dst, b, len);
        dst[len] = 0;
        list[k++] = dst;
        dst += len + 1;
    }
    list[k] = NULL;
    free(text);
    *out = list;
    *n = count;
    return CT_OK;
}

void ct_templates_free(char **templates) { free(templates); }

static bool same_ignoring_case(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char cb = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (ca != cb) return false;
    }
    return *a == *b;
}

static ct_status dup_out(const char *s, char **out, const char *who) {
    size_t len = strlen(s);
    *out = malloc(len + 1);
    if (!*out) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", who);
    memcpy(*out, s, len + 1);
    return CT_OK;
}

/* The entry of the JSON object root for dataset (exact, then ignoring case);
 * NULL if none. */
static const cJSON *json_entry(const cJSON *root, const char *dataset) {
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (it->string && strcmp(it->string, dataset) == 0) return it;
    }
    cJSON_ArrayForEach(it, root) {
        if (it->string && same_ignoring_case(it->string, dataset)) return it;
    }
    return NULL;
}

ct_status ct_template_for_dataset(const char *coop_json_path, const char *dataset, char **out,
                                  bool *found) {
    if (!out || !dataset)
        return ct_set_error(CT_ERR_ARG, "ct_template_for_dataset: NULL dataset or output");
    *out = NULL;
    if (found) *found = false;
    const char *tmpl = NULL;
    if (!coop_json_path) {
        for (int i = 0; i < COUNT(k_coop) && !tmpl; i++)
            if (strcmp(k_coop[i].dataset, dataset) == 0) tmpl = k_coop[i].tmpl;
        for (int i = 0; i < COUNT(k_coop) && !tmpl; i++)
            if (same_ignoring_case(k_coop[i].dataset, dataset)) tmpl = k_coop[i].tmpl;
        if (found) *found = tmpl != NULL;
        return dup_out(tmpl ? tmpl : CT_TEMPLATE_DEFAULT, out, "ct_template_for_dataset");
    }
    /* ct_json_load reports only NULL; reading first tells an unreadable file
     * (IO) from a malformed one (FORMAT). The file is small. */
    char *text;
    ct_status st = ct_read_file(coop_json_path, &text, NULL);
    if (st) return st;
    free(text);
    cJSON *root = ct_json_load(coop_json_path);
    if (!root) return CT_ERR_FORMAT; /* message set by ct_json_load */
    if (!cJSON_IsObject(root)) {
        st = ct_set_error(CT_ERR_FORMAT, "%s: expected a JSON object {\"dataset\": \"template\"}",
                          coop_json_path);
    } else {
        const cJSON *it = json_entry(root, dataset);
        if (it) {
            char ctx[512];
            snprintf(ctx, sizeof ctx, "%s: \"%s\"", coop_json_path, it->string);
            if (!cJSON_IsString(it))
                st = ct_set_error(CT_ERR_FORMAT, "%s: expected a string", ctx);
            else if (!(st = ct_template_check(it->valuestring, ctx)))
                tmpl = it->valuestring;
        }
        if (!st) {
            if (found) *found = tmpl != NULL;
            st = dup_out(tmpl ? tmpl : CT_TEMPLATE_DEFAULT, out, "ct_template_for_dataset");
        }
    }
    cJSON_Delete(root);
    return st;
}

char *ct_template_fill(const char *tmpl, const char *classname) {
    if (!classname) {
        ct_set_error(CT_ERR_ARG, "ct_template_fill: NULL class name");
        return NULL;
    }
    if (ct_template_check(tmpl, "ct_template_fill")) return NULL;
    const char *hole = strstr(tmpl, "{}");
    size_t pre = (size_t)(hole - tmpl), cl = strlen(classname), post = strlen(hole + 2);
    char *s = malloc(pre + cl + post + 1);
    if (!s) {
        ct_set_error(CT_ERR_NOMEM, "ct_template_fill: out of memory");
        return NULL;
    }
    memcpy(s, tmpl, pre);
    for (size_t i = 0; i < cl; i++) s[pre + i] = classname[i] == '_' ? ' ' : classname[i];
    memcpy(s + pre + cl, hole + 2, post + 1);
    return s;
}
