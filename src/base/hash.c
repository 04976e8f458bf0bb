#include "base/hash.h"

#include <string.h>

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t ct_hash_u64(uint64_t h, uint64_t v) { return mix(h ^ mix(v + 0x9E3779B97F4A7C15ull)); }

uint64_t ct_hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    /* four independent lanes keep the multiply latency off the critical path */
    uint64_t a = h, b = h ^ 0x1111, c = h ^ 0x2222, d = h ^ 0x3333;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = (a ^ w[0]) * 0x9E3779B97F4A7C15ull, a ^= a >> 29;
        b = (b ^ w[1]) * 0xC2B2AE3D27D4EB4Full, b ^= b >> 29;
        c = (c ^ w[2]) * 0x165667B19E3779F9ull, c ^= c >> 29;
        d = (d ^ w[3]) * 0x27D4EB2F165667C5ull, d ^= d >> 29;
    }
    uint64_t t = mix(a) ^ mix(b + 1) ^ mix(c + 2) ^ mix(d + 3);
    for (; i < n; i++) t = ct_hash_u64(t, p[i]);
    return ct_hash_u64(t, n);
}

uint64_t ct_hash_str(uint64_t h, const char *s) { return ct_hash_bytes(h, s, strlen(s)); }
