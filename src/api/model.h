/* ct_model's library-internal side (src/api/model.c): the bundle inside it
 * and a handle over a bundle a caller keeps. */
#ifndef CT_API_MODEL_H
#define CT_API_MODEL_H

#include "cliptune.h"
#include "model/bundle.h"

/* m's tokenizer and preprocessing hashes as 16 hex digits each (the
 * tokenizer's "0" when it has none). */
void ct_model_part_hashes(const ct_model *m, char tok[17], char pre[17]);

/* The bundle inside a ct_model (library-internal). */
const ct_bundle *ct_model_bundle(const ct_model *m);
/* A ct_model over a bundle the caller keeps (tests, benches on a random
 * model): freeing it leaves b alone. path is what runs record. */
ct_model *ct_model_borrow(ct_bundle *b, const char *path);

#endif
