/* 64-bit content hashing for cache keys (not cryptographic: the inputs are
 * the user's own files; the goal is to notice that something changed). */
#ifndef CT_BASE_HASH_H
#define CT_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CT_HASH_INIT 0x6A09E667F3BCC909ull

/* Fold n bytes into h (word-wise multiply-xorshift mixing). */
uint64_t ct_hash_bytes(uint64_t h, const void *data, size_t n);
uint64_t ct_hash_u64(uint64_t h, uint64_t v);
uint64_t ct_hash_str(uint64_t h, const char *s);

#endif
