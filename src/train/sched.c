/* Learning-rate schedules as Dassl builds them (dassl/optim/lr_scheduler.py,
 * WARMUP_RECOUNT = True, the default), in closed form.
 *
 * Dassl wraps the main scheduler (torch CosineAnnealingLR(T_max = MAX_EPOCH),
 * eta_min 0 there) in a warmup scheduler and calls step() once after each
 * epoch; each constructor also steps once. Tracing that:
 *   - epochs e < warmup_len get the warmup rule: the wrapper's own
 *     last_epoch is e (constant: cons_lr; linear: min_lr at e == 0, else
 *     base_lr * e / warmup_len);
 *   - at e == warmup_len the wrapper returns the successor's last lr, which
 *     is its value after construction (t = 0, i.e. base_lr);
 *   - from then on every step advances the successor by one, so epoch e
 *     gets the successor at t = e - warmup_len, with T_max = MAX_EPOCH (the
 *     whole run, warmup included; the cosine never quite reaches eta_min).
 * torch's recursive cosine update equals the closed form used here (it is
 * multiplicative in lr - eta_min and the warmup leaves lr at the successor's
 * value before the successor's first real step). */
#include <math.h>

#include "cliptune.h"

static double main_lr(const ct_sched_config *s, int t) {
    double base = s->base_lr;
    if (s->kind != CT_SCHED_COSINE || s->total <= 0) return base;
    double eta_min = s->min_lr;
    /* M_PI is not ISO C. */
    const double pi = 3.14159265358979323846;
    return eta_min + (base - eta_min) * (1.0 + cos(pi * (double)t / (double)s->total)) / 2.0;
}

float ct_sched_lr(const ct_sched_config *s, int epoch) {
    if (!s) return 0.0f;
    if (epoch < 0) epoch = 0;
    int w = s->warmup == CT_WARMUP_NONE ? 0 : s->warmup_len;
    if (w <= 0) return (float)main_lr(s, epoch); /* Dassl: WARMUP_EPOCH > 0 enables it */
    if (epoch < w) {
        if (s->warmup == CT_WARMUP_CONSTANT || epoch == 0) return s->warmup_lr;
        return (float)((double)s->base_lr * epoch / w);
    }
    return (float)main_lr(s, epoch - w);
}

double ct_sched_step_cosine(double base, double min, int64_t step, int64_t warmup,
                            int64_t total) {
    if (step < warmup) return base * (double)(step + 1) / (double)warmup;
    double e = (double)(step - warmup), es = (double)(total - warmup);
    if (es <= 0) return base;
    return min + 0.5 * (1 + cos(M_PI * e / es)) * (base - min);
}
