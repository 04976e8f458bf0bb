/* A vectorised float exp shared by the kernels written with GCC vector
 * extensions (base/isa/sgemm_isa.c's activations, tensor/smallgemm.c's
 * softmax). The includer first defines `vf` (a float vector) and `vi` (an
 * int32 vector of the same lane count), then includes this header. */
#ifndef CT_BASE_ISA_VEXP_H
#define CT_BASE_ISA_VEXP_H

#include <string.h>

static inline vf vsel(vi mask, vf a, vf b) { /* mask ? a : b, lane-wise */
    return (vf)(((vi)a & mask) | ((vi)b & ~mask));
}

/* exp(x) = 2^k p(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite in two
 * parts), p a degree-6 polynomial (Taylor coefficients; |r| <= ln2/2 keeps
 * the error near 1 ulp). Inputs are clamped to the float range. */
static inline vf vexp(vf x) {
    const vf hi = (vf){0} + 88.3762626647949f, lo = (vf){0} - 87.3365478515625f;
    x = vsel(x > hi, hi, x);
    x = vsel(x < lo, lo, x);
    /* round to nearest with the 1.5 * 2^23 trick (exact in IEEE float) */
    const vf magic = (vf){0} + 12582912.0f;
    vf kf = (x * 1.44269504088896341f + magic) - magic;
    vi k = __builtin_convertvector(kf, vi);
    vf r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    vf p = (vf){0} + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi bits = (k + 127) << 23;
    vf scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
