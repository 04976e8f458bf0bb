/* Internal pieces of the CLIP tokenizer (tokenizer.c) shared with the BPE
 * trainer (bpe_train.c), so that training sees text exactly as encode does. */
#ifndef CT_MODEL_TOKENIZER_H
#define CT_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "cliptune.h"

/* What a piece is: an ordinary word, or exactly one of the special literals
 * (which encode maps to their ids instead of byte-pair encoding them). */
enum { CT_TOK_WORD, CT_TOK_SOT, CT_TOK_EOT };

/* Called once per piece with its UTF-8 bytes (bytes[0..n), n >= 1, valid
 * only during the call) and its kind. A status other than CT_OK stops the
 * split and is returned. */
typedef ct_status (*ct_tok_piece_fn)(void *ctx, const uint8_t *bytes, size_t n, int kind);

/* Steps 1-5 of encode (docs/tokenizer.md): UTF-8 with U+FFFD for invalid
 * bytes, html.unescape twice, strip, whitespace_clean, str.lower(), then
 * CLIP's pattern; fn gets each piece in order. */
ct_status ct_tok_split(const char *text, ct_tok_piece_fn fn, void *ctx);

/* bytes_to_unicode(): enc[b] is the codepoint standing for byte b; order
 * (optional) lists the bytes in vocabulary order (the printable ones first),
 * so byte order[k] is symbol k and its "</w>" form is symbol 256 + k. */
void ct_tok_byte_alphabet(uint32_t enc[256], int order[256]);

/* UTF-8 encoding of codepoint c (< 0x110000) into o; returns its length. */
int ct_tok_utf8_put(uint32_t c, uint8_t *o);

#endif
