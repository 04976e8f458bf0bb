/* "key=value" hyper-parameters with use tracking, so a misspelt --set key is
 * an error instead of being silently ignored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cliptune.h"

ct_status ct_kv_set(ct_kv *kv, const char *key, const char *val) {
    if (!key || !*key) return ct_set_error(CT_ERR_ARG, "hyper-parameters: empty key");
    char *v = strdup(val ? val : "");
    if (!v) return ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) {
            free(kv->vals[i]);
            kv->vals[i] = v;
            return CT_OK;
        }
    size_t n = (size_t)kv->n + 1;
    char **k = realloc(kv->keys, n * sizeof *k);
    if (k) kv->keys = k;
    char **vv = k ? realloc(kv->vals, n * sizeof *vv) : NULL;
    if (vv) kv->vals = vv;
    bool *u = vv ? realloc(kv->used, n * sizeof *u) : NULL;
    if (u) kv->used = u;
    char *kd = u ? strdup(key) : NULL;
    if (!kd) {
        free(v);
        return ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
    }
    kv->keys[kv->n] = kd, kv->vals[kv->n] = v, kv->used[kv->n] = false;
    kv->n++;
    return CT_OK;
}

static bool is_sep(char c) { return c == ' ' || c == '\t' || c == '\n' || c == ','; }

/* A value needs quotes when it holds a separator or starts with a quote. */
static bool needs_quotes(const char *v) {
    if (*v == '"') return true;
    for (; *v; v++)
        if (is_sep(*v)) return true;
    return false;
}

const char *ct_kv_item(const char *p, const char **end) {
    while (p && is_sep(*p)) p++;
    if (!p || !*p) return NULL;
    const char *e = p;
    while (*e && !is_sep(*e) && *e != '=') e++;
    if (e[0] == '=' && e[1] == '"') {
        for (e += 2; *e && *e != '"'; e++)
            if (*e == '\\' && e[1]) e++;
        if (*e) e++; /* the closing quote; unterminated: ct_kv_parse says so */
    }
    while (*e && !is_sep(*e)) e++;
    *end = e;
    return p;
}

ct_status ct_kv_parse(ct_kv *kv, const char *text) {
    const char *p = text ? text : "", *e;
    while ((p = ct_kv_item(p, &e)) != NULL) {
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq || eq == p)
            return ct_set_error(CT_ERR_ARG, "hyper-parameter \"%.*s\" is not key=value",
                                (int)(e - p), p);
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
        const char *v = eq + 1;
        size_t n = (size_t)(e - v);
        char *val = malloc(n + 1), *o = val;
        if (!val) return ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
        if (*v == '"') {
            const char *q = v + 1;
            for (; q < e && *q != '"'; q++) *o++ = (*q == '\\' && q + 1 < e) ? *++q : *q;
            if (q + 1 != e) {
                free(val);
                return ct_set_error(CT_ERR_ARG,
                                    "hyper-parameter %s: the quoted value %.*s does not end "
                                    "with its closing quote",
                                    key, (int)n, v);
            }
        } else {
            memcpy(o, v, n), o += n;
        }
        *o = 0;
        ct_status s = ct_kv_set(kv, key, val);
        free(val);
        if (s != CT_OK) return s;
        p = e;
    }
    return CT_OK;
}

ct_status ct_kv_append(char **text, const char *key_value) {
    const char *eq = key_value ? strchr(key_value, '=') : NULL;
    if (!eq || eq == key_value)
        return ct_set_error(CT_ERR_ARG, "hyper-parameter \"%s\" is not key=value",
                            key_value ? key_value : "(null)");
    size_t old = *text ? strlen(*text) : 0, n = strlen(key_value);
    char *t = realloc(*text, old + 2 * n + 4);
    if (!t) return ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
    *text = t;
    char *o = t + old;
    *o++ = ' ';
    memcpy(o, key_value, (size_t)(eq - key_value) + 1), o += eq - key_value + 1;
    if (needs_quotes(eq + 1)) {
        *o++ = '"';
        for (const char *v = eq + 1; *v; v++) {
            if (*v == '"' || *v == '\\') *o++ = '\\';
            *o++ = *v;
        }
        *o++ = '"';
    } else {
        strcpy(o, eq + 1), o += strlen(eq + 1);
    }
    *o = 0;
    return CT_OK;
}

ct_status ct_kv_to_text(const ct_kv *kv, char **out) {
    *out = NULL;
    char *text = NULL;
    ct_status s = CT_OK;
    for (int i = 0; s == CT_OK && i < kv->n; i++) {
        char *item = malloc(strlen(kv->keys[i]) + strlen(kv->vals[i]) + 2);
        if (!item) s = ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
        else sprintf(item, "%s=%s", kv->keys[i], kv->vals[i]), s = ct_kv_append(&text, item);
        free(item);
    }
    if (s == CT_OK && !text && !(text = calloc(1, 2)))
        s = ct_set_error(CT_ERR_NOMEM, "hyper-parameters: out of memory");
    if (s != CT_OK) {
        free(text);
        return s;
    }
    /* ct_kv_append leads every item with a space: the first one goes */
    if (text[0] == ' ') memmove(text, text + 1, strlen(text));
    *out = text;
    return CT_OK;
}

void ct_kv_free(ct_kv *kv) {
    if (!kv) return;
    for (int i = 0; i < kv->n; i++) free(kv->keys[i]), free(kv->vals[i]);
    free(kv->keys);
    free(kv->vals);
    free(kv->used);
    memset(kv, 0, sizeof *kv);
}

static const char *find(ct_kv *kv, const char *key) {
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) {
            kv->used[i] = true;
            return kv->vals[i];
        }
    return NULL;
}

ct_status ct_kv_double(ct_kv *kv, const char *key, double def, double *out) {
    const char *v = find(kv, key);
    if (!v) {
        *out = def;
        return CT_OK;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno)
        return ct_set_error(CT_ERR_ARG, "hyper-parameter %s=%s is not a number", key, v);
    *out = d;
    return CT_OK;
}

ct_status ct_kv_int(ct_kv *kv, const char *key, int def, int *out) {
    const char *v = find(kv, key);
    if (!v) {
        *out = def;
        return CT_OK;
    }
    char *end;
    errno = 0;
    long l = strtol(v, &end, 10);
    if (end == v || *end || errno || l < -2147483647L || l > 2147483647L)
        return ct_set_error(CT_ERR_ARG, "hyper-parameter %s=%s is not an integer", key, v);
    *out = (int)l;
    return CT_OK;
}

ct_status ct_kv_str(ct_kv *kv, const char *key, const char *def, const char **out) {
    const char *v = find(kv, key);
    *out = v ? v : def;
    return CT_OK;
}

ct_status ct_kv_check_used(const ct_kv *kv, const char *ctx) {
    for (int i = 0; i < kv->n; i++)
        if (!kv->used[i])
            return ct_set_error(CT_ERR_ARG, "%s: unknown hyper-parameter \"%s\"", ctx, kv->keys[i]);
    return CT_OK;
}
