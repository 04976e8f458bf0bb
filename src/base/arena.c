#include "base/arena.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "base/error.h"

#define CT_ARENA_ALIGN 64
/* Chunks of at least 4 huge pages are huge-page aligned and advised as such:
 * a training step's activations are hundreds of MB (2.4 GB for the shipped
 * model's pretraining), reused every step, and with 4 KiB pages the first
 * step faults every one of them in (20 pretraining steps: 86k page faults
 * instead of 646k; bit-identical results). Where the kernel does not do
 * transparent huge pages the advice is ignored. */
#define CT_HUGE_PAGE ((size_t)2 << 20)

struct ct_arena_chunk {
    ct_arena_chunk *next;
    size_t cap;  /* usable bytes after the header */
    size_t off;  /* bytes used                    */
    /* followed by the data, 64-byte aligned */
};

static size_t header_size(void) {
    return (sizeof(ct_arena_chunk) + CT_ARENA_ALIGN - 1) & ~(size_t)(CT_ARENA_ALIGN - 1);
}
static uint8_t *chunk_data(ct_arena_chunk *c) { return (uint8_t *)c + header_size(); }

static ct_arena_chunk *chunk_alloc(size_t total) {
    size_t align = CT_ARENA_ALIGN;
#ifdef MADV_HUGEPAGE
    if (total >= 4 * CT_HUGE_PAGE) align = CT_HUGE_PAGE;
#endif
    size_t size = (total + align - 1) & ~(align - 1);
    if (size < total) return NULL;
    ct_arena_chunk *c = aligned_alloc(align, size);
#ifdef MADV_HUGEPAGE
    if (c && align == CT_HUGE_PAGE) (void)madvise(c, size, MADV_HUGEPAGE); /* a hint only */
#endif
    return c;
}

void ct_arena_init(ct_arena *a, size_t min_chunk) {
    a->head = a->cur = NULL;
    a->used = a->reserved = 0;
    a->min_chunk = min_chunk < (1u << 16) ? (1u << 16) : min_chunk;
    a->n_malloc = 0;
}

void ct_arena_destroy(ct_arena *a) {
    ct_arena_chunk *c = a->head;
    while (c) {
        ct_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = a->cur = NULL;
    a->used = a->reserved = 0;
}

void *ct_arena_alloc(ct_arena *a, size_t bytes) {
    size_t need;
    if (!ct_add_size(bytes, CT_ARENA_ALIGN - 1, &need)) return NULL;
    need &= ~(size_t)(CT_ARENA_ALIGN - 1);
    if (need == 0) need = CT_ARENA_ALIGN;
    /* Walk forward through chunks kept from earlier steps before growing. */
    while (a->cur && a->cur->cap - a->cur->off < need) {
        if (!a->cur->next) break;
        a->cur = a->cur->next;
        a->cur->off = 0;
    }
    if (!a->cur || a->cur->cap - a->cur->off < need) {
        size_t cap = need > a->min_chunk ? need : a->min_chunk;
        /* Grow geometrically so a step needs O(log) chunks. */
        if (cap < a->reserved) cap = a->reserved;
        size_t total;
        if (!ct_add_size(cap, header_size(), &total)) return NULL;
        ct_arena_chunk *c = chunk_alloc(total);
        if (!c) return NULL;
        a->n_malloc++;
        c->next = NULL;
        c->cap = cap;
        c->off = 0;
        if (a->cur) {
            /* Insert after cur so remaining (too small) chunks stay reusable. */
            c->next = a->cur->next;
            a->cur->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
        a->cur = c;
        a->reserved += cap;
    }
    void *p = chunk_data(a->cur) + a->cur->off;
    a->cur->off += need;
    a->used += need;
    return p;
}

void ct_arena_reset(ct_arena *a) {
    a->cur = a->head;
    if (a->cur) a->cur->off = 0;
    a->used = 0;
}

ct_arena_mark ct_arena_get_mark(const ct_arena *a) {
    return (ct_arena_mark){a->cur, a->cur ? a->cur->off : 0, a->used};
}

void ct_arena_release(ct_arena *a, ct_arena_mark m) {
    if (m.chunk) {
        a->cur = m.chunk;
        a->cur->off = m.off;
    } else {
        a->cur = a->head;
        if (a->cur) a->cur->off = 0;
    }
    a->used = m.used;
}
