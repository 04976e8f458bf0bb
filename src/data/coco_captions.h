/* COCO caption files (captions_train2017.json and the like) and TaI-DPT's
 * labels of captions by class names and synonyms (guozix/TaI-DPT
 * datasets/coco2014_distill.py; docs/datasets.md, "COCO captions").
 *
 * A captions file is a JSON object with an "images" array (objects with an
 * integer "id") and an "annotations" array of objects {"id": int,
 * "image_id": int, "caption": string}, as the COCO captions_*.json files
 * are; other fields are ignored. Errors (CT_ERR_FORMAT; CT_ERR_IO for a
 * missing file) name the file and the offending entry: not an object,
 * missing or non-integer ids, an image id that repeats, an annotation whose
 * image_id is not among the images, a missing, empty or non-string caption,
 * a caption with a NUL byte or longer than 4096 bytes. */
#ifndef CT_DATA_COCO_CAPTIONS_H
#define CT_DATA_COCO_CAPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

typedef struct ct_coco_captions {
    int64_t n;         /* captions, in the file's annotation order */
    int64_t *ids;      /* (n) annotation ids                       */
    int64_t *image_ids;/* (n)                                      */
    char **captions;   /* (n) owned, NUL-terminated                */
} ct_coco_captions;

/* Read path. On failure *out is zeroed. */
ct_status ct_coco_captions_load(const char *path, ct_coco_captions *out);
void ct_coco_captions_free(ct_coco_captions *c);

/* Class names and their synonyms: class k is matched by any of names
 * [off[k] .. off[k+1]), each lower-case, words lemmatised as captions are
 * (see ct_caption_labels), words separated by one space. */
typedef struct ct_synonyms {
    int K;
    int *off;     /* (K + 1) */
    char **names; /* (off[K]) owned */
} ct_synonyms;

/* From a file (path non-empty): line k (1-based k-1) lists class k's names,
 * either the official suppl/synonyms_*.txt form {'person','human',...} or
 * plain comma-separated names; blank lines are skipped, and the number of
 * lines must be K. path NULL or "": each class's own name ('_' read as a
 * space). Errors name the file and line. */
ct_status ct_synonyms_load(const char *path, int K, char *const *classnames, ct_synonyms *out);
void ct_synonyms_free(ct_synonyms *s);

/* TaI-DPT's word-based label of one caption: the caption lower-cased and
 * split into words (runs of letters, digits, '-' and bytes >= 0x80), each
 * word lemmatised as a noun by English plural rules (a stand-in for NLTK's
 * POS tagger + WordNet lemmatiser: -ies -> -y, -sses/-xes/-ches/-shes/-zes
 * lose -es, other -s lose it unless -ss/-us/-is or under 4 letters); then,
 * as coco2014_distill.py, every multi-word name found as " name " in
 * " words " sets its class and is blanked out, then every single-word name
 * (and multi-word names with their spaces removed). row (K) gets 1/0;
 * returns whether any class matched. */
bool ct_caption_labels(const ct_synonyms *s, const char *caption, int8_t *row);

#endif
