#include "api/official.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/torch_ckpt.h"

static const ct_official_layout OFFICIAL[] = {
    {"coop", "KaiyangZhou/CoOp trainers/coop.py", "prompt_learner", NULL, {NULL}},
    {"cocoop", "KaiyangZhou/CoOp trainers/cocoop.py", "prompt_learner", NULL, {NULL}},
    {"kgcoop", "htyao89/KgCoOp trainers/kgcoop.py", "prompt_learner", NULL, {NULL}},
    {"prograd", "BeierZhu/Prompt-align trainers/prograd.py", "prompt_learner", NULL, {NULL}},
    {"maple", "muzairkhattak/multimodal-prompt-learning trainers/maple.py", "MultiModalPromptLearner (the whole model is registered)", NULL, {NULL}},
    {"ivlp", "muzairkhattak/multimodal-prompt-learning trainers/independentVL.py", "the whole model", NULL, {NULL}},
    {"vpt-deep", "muzairkhattak/multimodal-prompt-learning trainers/vpt.py", "the whole model", NULL, {NULL}},
    {"promptsrc", "muzairkhattak/PromptSRC trainers/promptsrc.py", "the whole model", "previous_model_gpa.", {NULL}},
    {"lasp", "LASP (its trainers/lasp.py, as xytian1008/ArGue keeps it)", "the whole model", NULL, {NULL}},
    {"upl", "tonyhuang2022/UPL trainers/upltrainer.py", "prompt_learner", NULL, {NULL}},
    {"tpt", "azshue/TPT (a CoOp checkpoint's ctx)", "prompt_learner", NULL, {NULL}},
    {"clip-adapter", "gaopengcuhk/CLIP-Adapter clip_adapter.py", "adapter", NULL, {NULL}},
    {"taskres", "geekyutao/TaskRes trainers/taskres.py", "prompt_learner", NULL, {NULL}},
    {"clip-lora", "MaxZanella/CLIP-LoRA loralib (save_lora)", "the LoRA matrices", NULL, {NULL}},
    {"vp", "hjbahng/visual_prompting models/prompters.py", "prompter",
     NULL, {"pad_up", "pad_down", "pad_left", "pad_right"}},
};

const ct_official_layout *ct_official_layout_of(const char *method) {
    for (size_t i = 0; i < sizeof OFFICIAL / sizeof *OFFICIAL; i++)
        if (!strcmp(OFFICIAL[i].method, method)) return &OFFICIAL[i];
    return NULL;
}


/* The method's learned tensors in the official layout: those the official
 * code saves (o->skip left out), each with whether it carries the official
 * leading axis of 1. n 0 with an error when the method has none named. */
typedef struct {
    ct_tensor *t;
    const char *name;
    bool unsqueeze;
} official_entry;

enum { CAP = 256 };

static ct_status official_entries(const ct_method *m, void *state, const ct_official_layout **lo,
                                  official_entry *out, int *n) {
    *n = 0;
    const ct_official_layout *o = *lo = ct_official_layout_of(m->name);
    if (!o)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: no official checkpoint layout is known for "
                            "its learned tensors (methods with one: " CT_OFFICIAL_METHODS ")",
                            m->name);
    ct_tensor *p[CAP];
    const char *names[CAP] = {0};
    int np = m->params ? m->params(state, p, CAP) : 0;
    int nn = m->param_names ? m->param_names(state, names, CAP) : 0;
    if (np == 0 || nn != np)
        return ct_set_error(CT_ERR_STATE, "%s has no named learned tensors", m->name);
    for (int i = 0; i < np; i++) {
        if (o->skip && !strncmp(names[i], o->skip, strlen(o->skip))) continue;
        bool unsq = false;
        for (int k = 0; k < 4 && o->unsqueeze[k]; k++) unsq |= !strcmp(o->unsqueeze[k], names[i]);
        out[(*n)++] = (official_entry){p[i], names[i], unsq};
    }
    return CT_OK;
}

ct_status ct_official_export(const ct_method *m, void *state, const char *path,
                             const char *hyper_parameters, uint64_t model_hash) {
    const ct_official_layout *o;
    official_entry en[CAP];
    int n = 0;
    ct_status s = official_entries(m, state, &o, en, &n);
    if (s != CT_OK) return s;
    ct_st_entry e[CAP];
    int64_t shapes[CAP][CT_TORCH_MAX_RANK + 1];
    for (int i = 0; i < n; i++) {
        const ct_tensor *t = en[i].t;
        int lead = en[i].unsqueeze ? 1 : 0;
        if (t->ndim + lead > CT_TORCH_MAX_RANK)
            return ct_set_error(CT_ERR_STATE, "%s: rank %d", en[i].name, t->ndim + lead);
        shapes[i][0] = 1;
        for (int d = 0; d < t->ndim; d++) shapes[i][d + lead] = t->shape[d];
        e[i] = (ct_st_entry){en[i].name, CT_F32, t->ndim + lead, shapes[i], t->data};
    }
    char mh[17];
    snprintf(mh, sizeof mh, "%016llx", (unsigned long long)model_hash);
    const char *meta[] = {"method", m->name, "official_repo", o->repo,
                          "state_dict_of", o->module, "hyper_parameters",
                          hyper_parameters ? hyper_parameters : "", "model_hash", mh,
                          "format", "official-state-dict"};
    return ct_safetensors_write(path, e, n, meta, 6);
}

/* One checkpoint, either kind. */
typedef struct {
    ct_torch_ckpt *torch;
    ct_safetensors *st;
} ckpt;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* name's tensor: the key itself, or inside a Dassl checkpoint's state_dict.
 * Its shape and, on success, its values into p. */
static ct_status fetch(const ckpt *c, const char *name, bool unsq, ct_tensor *p, const char *path,
                       bool *found) {
    char key[512];
    int ndim = 0;
    const int64_t *shape = NULL;
    const ct_torch_tensor *tt = NULL;
    const ct_st_tensor *st = NULL;
    *found = false;
    for (int attempt = 0; attempt < 2 && !tt && !st; attempt++) {
        snprintf(key, sizeof key, "%s%s", attempt ? "state_dict." : "", name);
        if (c->torch) tt = ct_torch_ckpt_find(c->torch, key);
        else st = ct_safetensors_find(c->st, key);
    }
    if (!tt && !st) return CT_OK;
    *found = true;
    ndim = tt ? tt->ndim : st->ndim;
    shape = tt ? tt->shape : st->shape;
    /* the official leading axis of 1 (VP's prompts) */
    if (unsq && ndim == p->ndim + 1 && shape[0] == 1) ndim--, shape++;
    bool same = ndim == p->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == p->shape[d];
    if (!same) {
        char want[128], got[128];
        int o = 0;
        for (int d = 0; d < p->ndim && o < 120; d++)
            o += snprintf(want + o, sizeof want - (size_t)o, "%s%lld", d ? ", " : "",
                          (long long)p->shape[d]);
        want[o < 128 ? o : 127] = 0;
        o = 0;
        got[0] = 0;
        for (int d = 0; d < ndim && o < 120; d++)
            o += snprintf(got + o, sizeof got - (size_t)o, "%s%lld", d ? ", " : "",
                          (long long)shape[d]);
        return ct_set_error(CT_ERR_ARG, "%s: %s is (%s), the method's is (%s): set the "
                            "hyper-parameters the checkpoint was trained with (n_ctx, csc, ...)",
                            path, key, got, want);
    }
    return tt ? ct_torch_tensor_to_f32(tt, p->data, (size_t)p->numel)
              : ct_st_to_real(st, p->data, (size_t)p->numel);
}

ct_status ct_official_import(const ct_method *m, void *state, const char *path, int *n_loaded) {
    *n_loaded = 0;
    const ct_official_layout *o;
    official_entry en[CAP];
    int n = 0;
    ct_status s = official_entries(m, state, &o, en, &n);
    if (s != CT_OK) return s;
    ckpt c = {0};
    if (ends_with(path, ".safetensors")) {
        if (!(c.st = ct_safetensors_open(path))) return CT_ERR_FORMAT;
    } else if ((s = ct_torch_ckpt_open(path, &c.torch)) != CT_OK) {
        return s;
    }
    for (int i = 0; s == CT_OK && i < n; i++) {
        bool found = false;
        s = fetch(&c, en[i].name, en[i].unsqueeze, en[i].t, path, &found);
        if (s == CT_OK && !found)
            s = ct_set_error(CT_ERR_FORMAT, "%s: no tensor %s (nor state_dict.%s): not a %s "
                             "checkpoint of %s, or trained with other options", path,
                             en[i].name, en[i].name, m->name, o->repo);
        if (s == CT_OK) ++*n_loaded;
    }
    ct_torch_ckpt_close(c.torch);
    if (c.st) ct_safetensors_close(c.st);
    return s;
}
