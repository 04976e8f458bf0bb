#!/usr/bin/python3
"""Write tests/fixtures/optim_ref.h: expected optimizer, gradient-clipping and
learning-rate-schedule values computed by PyTorch itself.

Run with the interpreter that has torch (Debian's python3-torch):
    /usr/bin/python3 tools/ref/gen_optim_ref.py [out.h]

Everything runs in float64 so the expected values are the exact algorithm's.
Initial parameters and gradients are multiples of 1/16 or 1/8 and every
hyperparameter is first rounded to float32, so the C test (whose config
fields are float) feeds the optimizers exactly the numbers used here; the C
float build then differs only by its own float32 rounding.

The schedules follow Dassl.pytorch (dassl/optim/lr_scheduler.py): torch's
CosineAnnealingLR(T_max = max_epoch) wrapped in a warmup scheduler that
delegates to it once warmup is over; the trainer calls step() once after
every epoch. The warmup wrappers are re-implemented below from Dassl's
documented behaviour.
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, _LRScheduler

torch.set_default_dtype(torch.float64)
warnings.simplefilter("ignore")  # scheduler-before-optimizer notices

NSTEP = 5
SIZES = [7, 5, 3]  # the last param has no gradient at step 0 ("late")
LATE = 2


def f32(x):
    return float(np.float32(x))


def initial_params():
    return [[((i * 5 + k * 3) % 13 - 6) / 8.0 for i in range(n)] for k, n in enumerate(SIZES)]


def grad(step, k, i):
    return ((i * 7 + step * 3 + k * 5) % 11 - 5) / 16.0


def step_lrs(base):
    # A decaying lr exercises the per-step lr argument (AdamW's decay uses it).
    return [f32(base * (1.0 - 0.125 * s)) for s in range(NSTEP)]


# name, C kind, constructor, hyperparameters (float32-rounded), base lr
def optim_cases():
    cases = []

    def add(name, kind, ctor, base, **hp):
        hp = {k: (f32(v) if isinstance(v, float) else v) for k, v in hp.items()}
        cases.append((name, kind, ctor, step_lrs(base), hp))

    add("sgd_plain", "CT_OPTIM_SGD", torch.optim.SGD, 0.1)
    add("sgd_momentum", "CT_OPTIM_SGD", torch.optim.SGD, 0.1, momentum=0.9, weight_decay=5e-4)
    add("sgd_nesterov", "CT_OPTIM_SGD", torch.optim.SGD, 0.1, momentum=0.9, weight_decay=5e-4,
        nesterov=True)
    # torch rejects nesterov with dampening != 0, so dampening gets its own case.
    add("sgd_dampening", "CT_OPTIM_SGD", torch.optim.SGD, 0.1, momentum=0.9, dampening=0.5,
        weight_decay=5e-4)
    add("adam", "CT_OPTIM_ADAM", torch.optim.Adam, 0.01, betas=(f32(0.9), f32(0.999)),
        eps=1e-8, weight_decay=0.0)
    add("adam_wd", "CT_OPTIM_ADAM", torch.optim.Adam, 0.01, betas=(f32(0.9), f32(0.999)),
        eps=1e-8, weight_decay=0.1)
    add("adamw", "CT_OPTIM_ADAMW", torch.optim.AdamW, 0.01, betas=(f32(0.9), f32(0.999)),
        eps=1e-8, weight_decay=0.01)
    return cases


def run_optim(ctor, lrs, hp):
    params = [torch.tensor(v, requires_grad=True) for v in initial_params()]
    opt = ctor(params, lr=lrs[0], **hp)
    history = []
    for s in range(NSTEP):
        for k, p in enumerate(params):
            if k == LATE and s == 0:
                p.grad = None  # torch skips it and creates no state
            else:
                p.grad = torch.tensor([grad(s, k, i) for i in range(SIZES[k])])
        for group in opt.param_groups:
            group["lr"] = lrs[s]
        opt.step()
        history.append([x for p in params for x in p.detach().tolist()])
    return history


# ---- Dassl warmup schedulers (WARMUP_RECOUNT = True) ----
class WarmupWrapper(_LRScheduler):
    """Own rule while last_epoch < warmup; then steps the successor instead."""

    def __init__(self, optimizer, successor, warmup, rule):
        self.successor = successor
        self.warmup = warmup
        self.rule = rule  # (base_lr, last_epoch) -> lr during warmup
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch >= self.warmup:
            return self.successor.get_last_lr()
        return [self.rule(b, self.last_epoch) for b in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch < self.warmup:
            super().step(epoch)
        else:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()


def dassl_lrs(base, max_epoch, warmup_type, warmup_epoch, warmup_lr):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = CosineAnnealingLR(opt, float(max_epoch))
    if warmup_type == "constant":
        sched = WarmupWrapper(opt, sched, warmup_epoch, lambda b, e: warmup_lr)
    elif warmup_type == "linear":
        sched = WarmupWrapper(opt, sched, warmup_epoch,
                              lambda b, e: warmup_lr if e == 0 else b * e / warmup_epoch)
    lrs = []
    for _ in range(max_epoch):
        lrs.append(opt.param_groups[0]["lr"])  # the lr this epoch trains with
        opt.step()
        sched.step()  # Dassl: once at the end of each epoch
    return lrs


def fmt(values):
    return "{" + ", ".join("%.9g" % v for v in values) + "}"


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "tests", "fixtures", "optim_ref.h")
    total = sum(SIZES)
    o = []
    o.append("/* Generated by tools/ref/gen_optim_ref.py (torch %s) -- do not edit. */"
             % torch.__version__)
    o.append("#ifndef CT_TEST_OPTIM_REF_H")
    o.append("#define CT_TEST_OPTIM_REF_H")
    o.append("")
    o.append("#include \"cliptune.h\"")
    o.append("")
    o.append("#define OREF_NSTEP %d" % NSTEP)
    o.append("#define OREF_NPARAM %d" % len(SIZES))
    o.append("#define OREF_TOTAL %d" % total)
    o.append("/* Param OREF_LATE has grad None at step 0 (skipped by torch). */")
    o.append("#define OREF_LATE %d" % LATE)
    o.append("static const int oref_sizes[OREF_NPARAM] = {%s};" % ", ".join(map(str, SIZES)))
    o.append("/* All params concatenated. */")
    o.append("static const double oref_p0[OREF_TOTAL] = %s;"
             % fmt([x for v in initial_params() for x in v]))
    o.append("static const double oref_grad[OREF_NSTEP][OREF_TOTAL] = {")
    for s in range(NSTEP):
        o.append("    %s," % fmt([grad(s, k, i) for k, n in enumerate(SIZES) for i in range(n)]))
    o.append("};")
    o.append("")
    o.append("typedef struct oref_optim_case {")
    o.append("    const char *name;")
    o.append("    ct_optim_kind kind;")
    o.append("    double momentum, dampening;")
    o.append("    bool nesterov;")
    o.append("    double weight_decay, beta1, beta2, eps;")
    o.append("    double lr[OREF_NSTEP];                 /* lr passed to step s */")
    o.append("    double after[OREF_NSTEP][OREF_TOTAL];  /* params after step s */")
    o.append("} oref_optim_case;")
    o.append("")
    o.append("static const oref_optim_case oref_optim_cases[] = {")
    for name, kind, ctor, lrs, hp in optim_cases():
        hist = run_optim(ctor, lrs, hp)
        betas = hp.get("betas", (0.0, 0.0))
        o.append("    {\"%s\", %s, %.9g, %.9g, %s, %.9g, %.9g, %.9g, %.9g," % (
            name, kind, hp.get("momentum", 0.0), hp.get("dampening", 0.0),
            "true" if hp.get("nesterov", False) else "false", hp.get("weight_decay", 0.0),
            betas[0], betas[1], hp.get("eps", 0.0)))
        o.append("     %s," % fmt(lrs))
        o.append("     {")
        for row in hist:
            o.append("         %s," % fmt(row))
        o.append("     }},")
    o.append("};")
    o.append("")

    # ---- clip_grad_norm_ on two tensors ----
    ga = [((i * 3) % 7 - 3) / 4.0 for i in range(6)]
    gb = [((i * 5) % 9 - 4) / 8.0 for i in range(4)]
    o.append("/* clip_grad_norm_ on two tensors (sizes 6 and 4). */")
    o.append("static const double oref_clip_grad[10] = %s;" % fmt(ga + gb))
    for tag, max_norm in (("small", 1.0), ("large", 100.0)):
        a = torch.zeros(6, requires_grad=True)
        b = torch.zeros(4, requires_grad=True)
        a.grad = torch.tensor(ga)
        b.grad = torch.tensor(gb)
        total_norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
        o.append("#define OREF_CLIP_MAX_%s %.9g" % (tag.upper(), max_norm))
        o.append("static const double oref_clip_total_%s = %.9g;" % (tag, total_norm.item()))
        o.append("static const double oref_clip_after_%s[10] = %s;"
                 % (tag, fmt(a.grad.tolist() + b.grad.tolist())))
    o.append("")

    # ---- Dassl schedules ----
    max_epoch, base = 10, 0.002
    o.append("/* Dassl: cosine over MAX_EPOCH %d, base lr %g; lr of each epoch. */"
             % (max_epoch, base))
    o.append("#define OREF_SCHED_EPOCHS %d" % max_epoch)
    o.append("#define OREF_SCHED_BASE %.9g" % base)
    o.append("static const double oref_sched_cosine[%d] = %s;"
             % (max_epoch, fmt(dassl_lrs(base, max_epoch, None, 0, 0.0))))
    o.append("/* WARMUP_EPOCH 1, constant, WARMUP_CONS_LR 1e-5 */")
    o.append("static const double oref_sched_warm_const[%d] = %s;"
             % (max_epoch, fmt(dassl_lrs(base, max_epoch, "constant", 1, 1e-5))))
    o.append("/* WARMUP_EPOCH 2, linear, WARMUP_MIN_LR 1e-5 */")
    o.append("static const double oref_sched_warm_linear[%d] = %s;"
             % (max_epoch, fmt(dassl_lrs(base, max_epoch, "linear", 2, 1e-5))))
    o.append("")
    o.append("#endif")

    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        f.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
