/* Bump allocator in chunks. Reset is O(1) and keeps the chunks, so after the
 * first step of a training loop no further malloc happens. */
#ifndef CT_BASE_ARENA_H
#define CT_BASE_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef struct ct_arena_chunk ct_arena_chunk;

typedef struct ct_arena {
    ct_arena_chunk *head;    /* first chunk (list in allocation order)  */
    ct_arena_chunk *cur;     /* chunk being filled                      */
    size_t used;             /* bytes handed out since reset            */
    size_t reserved;         /* sum of chunk capacities                 */
    size_t min_chunk;        /* size of a new chunk unless more needed  */
    uint64_t n_malloc;       /* chunk allocations since init            */
} ct_arena;

void ct_arena_init(ct_arena *a, size_t min_chunk);
void ct_arena_destroy(ct_arena *a);
/* 64-byte aligned; NULL only if malloc fails (or bytes overflows). */
void *ct_arena_alloc(ct_arena *a, size_t bytes);
void ct_arena_reset(ct_arena *a);

/* A position in the arena. Releasing to it makes everything allocated after
 * it free for reuse (the chunks stay), as a reset does to everything. */
typedef struct ct_arena_mark {
    ct_arena_chunk *chunk;
    size_t off, used;
} ct_arena_mark;
ct_arena_mark ct_arena_get_mark(const ct_arena *a);
void ct_arena_release(ct_arena *a, ct_arena_mark m);

#endif
