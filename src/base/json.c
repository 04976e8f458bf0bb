/* JSON file helpers over cJSON (see json.h). */
#include "base/json.h"

#include <math.h>
#include <string.h>

#include "base/error.h"

/* Largest integer a double (cJSON's number type) holds exactly. */
#define JSON_MAX_EXACT 9007199254740992.0

cJSON *ct_json_load(const char *path) {
    char *text;
    size_t size;
    if (ct_read_file(path, &text, &size) != CT_OK) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, false);
    const char *bad = NULL;
    if (!root) {
        bad = end && end >= text && end <= text + size ? end : text;
    } else {
        /* cJSON stops after the first value; trailing text is a mistake
         * (e.g. two objects concatenated) that must not pass silently. */
        const char *p = end;
        while (p < text + size && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p < text + size) bad = p;
    }
    if (bad) {
        size_t line = 1, col = 1;
        for (const char *p = text; p < bad; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        ct_set_error(CT_ERR_FORMAT, "%s: %s at byte %zu (line %zu, column %zu)", path,
                     root ? "unexpected text after the JSON value" : "JSON parse error",
                     (size_t)(bad - text), line, col);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

ct_status ct_json_save(const char *path, const cJSON *root) {
    if (!path || !root) return ct_set_error(CT_ERR_ARG, "ct_json_save: NULL path or tree");
    char *text = cJSON_Print(root);
    if (!text) return ct_set_error(CT_ERR_NOMEM, "%s: cannot print JSON", path);
    size_t n = strlen(text);
    char *buf = realloc(text, n + 1);
    if (!buf) {
        free(text);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot print JSON", path);
    }
    buf[n] = '\n'; /* POSIX text file; the NUL is not written */
    ct_status s = ct_write_file_atomic(path, buf, n + 1);
    free(buf);
    return s;
}

/* obj[key], or NULL with the error set. */
static const cJSON *field(const cJSON *obj, const char *key, const char *ctx) {
    if (!cJSON_IsObject(obj)) {
        ct_set_error(CT_ERR_FORMAT, "%s: expected an object holding \"%s\"", ctx, key);
        return NULL;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) ct_set_error(CT_ERR_FORMAT, "%s: missing field \"%s\"", ctx, key);
    return v;
}

static ct_status wrong_type(const char *ctx, const char *key, const char *want) {
    return ct_set_error(CT_ERR_FORMAT, "%s: field \"%s\" must be %s", ctx, key, want);
}

#define CTX(ctx) ((ctx) ? (ctx) : "json")

ct_status ct_json_get_int(const cJSON *obj, const char *key, int64_t *out, const char *ctx) {
    const cJSON *v = field(obj, key, CTX(ctx));
    if (!v) return CT_ERR_FORMAT;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !(fabs(d) <= JSON_MAX_EXACT) || d != floor(d))
        return wrong_type(CTX(ctx), key, "an integer");
    *out = (int64_t)d;
    return CT_OK;
}

ct_status ct_json_get_double(const cJSON *obj, const char *key, double *out, const char *ctx) {
    const cJSON *v = field(obj, key, CTX(ctx));
    if (!v) return CT_ERR_FORMAT;
    if (!cJSON_IsNumber(v)) return wrong_type(CTX(ctx), key, "a number");
    *out = v->valuedouble;
    return CT_OK;
}

ct_status ct_json_get_string(const cJSON *obj, const char *key, const char **out,
                             const char *ctx) {
    const cJSON *v = field(obj, key, CTX(ctx));
    if (!v) return CT_ERR_FORMAT;
    if (!cJSON_IsString(v)) return wrong_type(CTX(ctx), key, "a string");
    *out = v->valuestring;
    return CT_OK;
}

ct_status ct_json_get_bool(const cJSON *obj, const char *key, bool *out, const char *ctx) {
    const cJSON *v = field(obj, key, CTX(ctx));
    if (!v) return CT_ERR_FORMAT;
    if (!cJSON_IsBool(v)) return wrong_type(CTX(ctx), key, "true or false");
    *out = cJSON_IsTrue(v);
    return CT_OK;
}
