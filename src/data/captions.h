/* Image-caption corpora for contrastive pretraining (cliptune pretrain).
 *
 * A spec is one of
 *
 *   [csv:]FILE      a CSV file (RFC 4180) whose first record is the header
 *                   "path,caption" (case-insensitive; "image"/"file"/
 *                   "filename"/"filepath"/"image_path" for path, "text"/
 *                   "title" for caption), then one record per caption. Fields
 *                   may be double-quoted, with "" for a quote and commas and
 *                   line breaks inside; unquoted fields lose surrounding
 *                   blanks (so do captions, quoted or not); a record must
 *                   have exactly 2 fields (quote captions that contain
 *                   commas); blank lines are skipped; CRLF and a UTF-8 BOM
 *                   are accepted. Several records for one path are several
 *                   captions of that image, kept in file order. Relative paths
 *                   are under the CSV's folder.
 *   [folder:]DIR    images found recursively under DIR (hidden entries
 *                   skipped, images recognised by extension .jpg .jpeg .png
 *                   .bmp .gif .ppm .pgm .pbm .pnm, at most 16 levels deep),
 *                   each with a caption file of the same stem beside it
 *                   ("a/cat.png" -> "a/cat.txt") holding one caption per
 *                   non-empty line (blanks trimmed). Images with the same stem
 *                   ("x.png", "x.jpg") share x.txt; .txt files without an image
 *                   are ignored.
 *
 * (a spec without a prefix is a folder when it names a directory.)
 *
 * Errors (CT_ERR_FORMAT unless said) name the file and, for CSV, the line the
 * record starts on: a missing header, a record with 1 or more than 2 fields,
 * an empty path or caption, an unterminated quoted field (the line it opens
 * on), text after a closing quote, a NUL byte, no captions at all; an image
 * that does not exist (CT_ERR_IO; checked eagerly, at open, naming its first
 * record and the number missing); in folder mode an image without its .txt
 * (CT_ERR_IO) or a .txt with no non-empty line.
 *
 * Paths are resolved (root + "/" + path unless absolute) and normalised
 * ("./" components and repeated slashes dropped; ".." kept as written);
 * records whose normalised paths are equal are one image. Images are sorted
 * by path (byte order), so the order does not depend on the file's. */
#ifndef CT_DATA_CAPTIONS_H
#define CT_DATA_CAPTIONS_H

#include <stdint.h>

#include "cliptune.h"


/* Deterministic held-out split by a fixed hash of each image's path relative
 * to root (ct_data_path_hash, the one the dataset holdout uses): image i is
 * held out when (hash >> 11) * 2^-53 < heldout_frac. Each image is decided
 * on its own, so the split does not change across runs or machines and an
 * image keeps its side when others are added or removed. One exception for
 * tiny corpora: if 0 < heldout_frac and at least 2 images but none was
 * chosen, the image with the smallest hash is held out (and if all were
 * chosen with heldout_frac < 1, the one with the largest stays in train).
 * Both outputs are independent copies (captions included, order kept);
 * either may have 0 images. heldout_frac in [0, 1]. */
ct_status ct_captions_split(const ct_caption_set *all, double heldout_frac,
                            ct_caption_set *train, ct_caption_set *heldout);

#endif
