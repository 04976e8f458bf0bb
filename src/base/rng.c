/* Counter-based RNG: output i of a stream is splitmix64's finaliser applied
 * to key + (i + 1) * golden-gamma, i.e. the splitmix64 sequence addressed by
 * index. Parallel fills therefore produce the same values for any thread
 * count, and a fill of n values equals n single draws. */
#include <math.h>

#include "cliptune.h"

#define GAMMA 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t at(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * GAMMA); }

/* 24-bit uniform in [0, 1) and in (0, 1]. */
static double u01(uint64_t x) { return (double)(x >> 40) * (1.0 / 16777216.0); }
static double u01_open0(uint64_t x) { return ((double)(x >> 40) + 1.0) * (1.0 / 16777216.0); }

static double normal_at(uint64_t key, uint64_t i) {
    double u1 = u01_open0(at(key, i)), u2 = u01(at(key, i + 1));
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void ct_rng_init(ct_rng *r, uint64_t seed) {
    r->seed = mix64(seed ^ 0x5851F42D4C957F2Dull);
    r->counter = 0;
}

ct_rng ct_rng_split(const ct_rng *r, uint64_t stream) {
    ct_rng s;
    s.seed = mix64(r->seed ^ mix64(stream * GAMMA + 0x2545F4914F6CDD1Dull));
    s.counter = 0;
    return s;
}

uint64_t ct_rng_u64(ct_rng *r) { return at(r->seed, r->counter++); }

float ct_rng_uniform(ct_rng *r) { return (float)u01(ct_rng_u64(r)); }

float ct_rng_normal(ct_rng *r) {
    double z = normal_at(r->seed, r->counter);
    r->counter += 2;
    return (float)z;
}

uint64_t ct_rng_below(ct_rng *r, uint64_t n) {
    /* Rejection on the top of the range keeps it unbiased. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ct_rng_u64(r);
    while (x >= lim);
    return x % n;
}

void ct_rng_fill_uniform(ct_rng *r, ct_real *out, size_t n, float lo, float hi) {
    uint64_t key = r->seed, c0 = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float u = (float)u01(at(key, c0 + i));
        out[i] = (ct_real)(lo + (hi - lo) * u);
    }
    r->counter += n;
}

void ct_rng_fill_normal(ct_rng *r, ct_real *out, size_t n, float mean, float std) {
    uint64_t key = r->seed, c0 = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        out[i] = (ct_real)(mean + std * (float)normal_at(key, c0 + 2 * i));
    r->counter += 2 * n;
}

void ct_rng_permutation(ct_rng *r, int64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (int64_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ct_rng_below(r, i);
        int64_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
}
