/* Small helpers over cJSON for config and manifest files: loading and saving
 * with errors that name the file, and typed getters whose errors name the
 * missing or mistyped field. */
#ifndef CT_BASE_JSON_H
#define CT_BASE_JSON_H

#include <cJSON.h>
#include <stdint.h>

#include "cliptune.h"

/* Parse a whole file. NULL on failure (error names the path and the byte
 * offset, line and column of the parse error). Free with cJSON_Delete. */
cJSON *ct_json_load(const char *path);
/* Pretty-print root to path atomically (with a trailing newline). */
ct_status ct_json_save(const char *path, const cJSON *root);

/* obj[key] as a typed value. Missing key or wrong type -> CT_ERR_FORMAT
 * naming ctx (e.g. "config.json: model") and key; *out is left unchanged. */
/* An integral number, exactly representable (|v| <= 2^53). */
ct_status ct_json_get_int(const cJSON *obj, const char *key, int64_t *out, const char *ctx);
ct_status ct_json_get_double(const cJSON *obj, const char *key, double *out, const char *ctx);
/* *out points into the tree (valid until it is freed). */
ct_status ct_json_get_string(const cJSON *obj, const char *key, const char **out,
                             const char *ctx);
ct_status ct_json_get_bool(const cJSON *obj, const char *key, bool *out, const char *ctx);

#endif
