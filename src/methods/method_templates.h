/* Hand-crafted prompt templates for zero-shot CLIP and the methods built on
 * its text classifier.
 *
 * A template is a string with exactly one "{}" where the class name goes and
 * no other brace (so it means the same to Python's str.format, which the
 * references use). Sources:
 *   - data/templates/imagenet80.txt: the 80 ImageNet templates of OpenAI's
 *     notebooks/Prompt_Engineering_for_ImageNet.ipynb (also CoOp's
 *     IMAGENET_TEMPLATES), built in here as well so zero-shot works without
 *     the data directory; tests check the two are identical;
 *   - CoOp's IMAGENET_TEMPLATES_SELECT (7 of them, its ZeroshotCLIP2
 *     ensemble), built in;
 *   - data/templates/coop.json: one template per dataset, CoOp's
 *     trainers/zsclip.py CUSTOM_TEMPLATES keyed by its DATASET.NAME, plus
 *     "fashion-mnist" and "digits" (ours, see templates.c); also built in. */
#ifndef CT_METHODS_TEMPLATES_H
#define CT_METHODS_TEMPLATES_H

#include <stdbool.h>

#include "cliptune.h"

/* The fallback for a dataset with no entry: CoOp's generic prompt. */
#define CT_TEMPLATE_DEFAULT "a photo of a {}."

/* Built-in template lists: "imagenet80", "imagenet60" (PromptSRC's 60 of
 * them), "imagenet-select" or "maskclip85" (MaskCLIP's: the 80 and five
 * "there is a {} in the scene." ones). NULL (and
 * *n = 0) for any other name. The arrays are static: do not free. */
const char *const *ct_templates_builtin(const char *name, int *n);

/* CT_OK when tmpl has exactly one "{}" and no other '{' or '}'; otherwise
 * CT_ERR_FORMAT with a message that starts with ctx (e.g. "file:3"). */
ct_status ct_template_check(const char *tmpl, const char *ctx);

/* Read a text file of templates, one per line. Surrounding spaces, tabs and
 * a CR (CRLF files) are stripped; blank lines are skipped. Every template is
 * checked (error naming the file and line). *out is a NULL-terminated array
 * of *n strings; free it with ct_templates_free. On failure *out = NULL and
 * *n = 0. An empty file is CT_ERR_FORMAT. */
ct_status ct_templates_load(const char *path, char ***out, int *n);
void ct_templates_free(char **templates);

/* The one template for a dataset, as a malloc'ed string in *out: looked up
 * in coop_json_path (NULL: the built-in copy of data/templates/coop.json),
 * by exact name first, then ignoring ASCII case. A dataset with no entry
 * gets CT_TEMPLATE_DEFAULT and *found = false (found may be NULL). Errors:
 * unreadable or malformed JSON, a non-string or invalid template (naming
 * the file and key), NOMEM. */
ct_status ct_template_for_dataset(const char *coop_json_path, const char *dataset, char **out,
                                  bool *found);

/* tmpl with "{}" replaced by classname, in which every '_' becomes ' ' (as
 * CoOp's trainers do with c.replace("_", " ") before str.format: zsclip.py
 * ZeroshotCLIP/ZeroshotCLIP2, coop.py and cocoop.py PromptLearner; its
 * dataset readers keep underscores, e.g. OxfordPets' "american_bulldog" from
 * the file names). malloc'ed; NULL with an error for an invalid template
 * or NOMEM. */
char *ct_template_fill(const char *tmpl, const char *classname);

#endif
