/* Every method the library knows, in the order `cliptune methods` lists them. */
#include <string.h>

#include "cliptune.h"

extern const ct_method ct_method_zeroshot;
extern const ct_method ct_method_linear_probe;
extern const ct_method ct_method_lp_plusplus;
extern const ct_method ct_method_pixel_probe;
extern const ct_method ct_method_coop;
extern const ct_method ct_method_cocoop;
extern const ct_method ct_method_clip_adapter;
extern const ct_method ct_method_tip_adapter;
extern const ct_method ct_method_tip_adapter_f;
extern const ct_method ct_method_sus_x;
extern const ct_method ct_method_svl_adapter;
extern const ct_method ct_method_taskres;
extern const ct_method ct_method_cupl;
extern const ct_method ct_method_vcd;
extern const ct_method ct_method_kgcoop;
extern const ct_method ct_method_prograd;
extern const ct_method ct_method_subpt;
extern const ct_method ct_method_lasp;
extern const ct_method ct_method_upl;
extern const ct_method ct_method_clippr;
extern const ct_method ct_method_calip;
extern const ct_method ct_method_plot;
extern const ct_method ct_method_proda;
extern const ct_method ct_method_vpt_var;
extern const ct_method ct_method_dualcoop;
extern const ct_method ct_method_maskclip;
extern const ct_method ct_method_denseclip;
extern const ct_method ct_method_taidpt;
extern const ct_method ct_method_protect;
extern const ct_method ct_method_protect_maple;
extern const ct_method ct_method_tpt;
extern const ct_method ct_method_wise_ft;
extern const ct_method ct_method_must;
extern const ct_method ct_method_vp;
extern const ct_method ct_method_vpt_deep;
extern const ct_method ct_method_ivlp;
extern const ct_method ct_method_maple;
extern const ct_method ct_method_clip_lora;
extern const ct_method ct_method_promptsrc;
extern const ct_method ct_method_upt;
extern const ct_method ct_method_dpt;
extern const ct_method ct_method_softcpt;
extern const ct_method ct_method_mvlpt;
extern const ct_method ct_method_vt_clip;
extern const ct_method ct_method_cpl;

static const ct_method *const METHODS[] = {
    &ct_method_zeroshot,
    &ct_method_linear_probe,
    &ct_method_pixel_probe,
    &ct_method_lp_plusplus,
    &ct_method_coop,
    &ct_method_cocoop,
    &ct_method_cpl,
    &ct_method_clip_adapter,
    &ct_method_tip_adapter,
    &ct_method_tip_adapter_f,
    &ct_method_sus_x,
    &ct_method_svl_adapter,
    &ct_method_taskres,
    &ct_method_vt_clip,
    &ct_method_cupl,
    &ct_method_vcd,
    &ct_method_kgcoop,
    &ct_method_prograd,
    &ct_method_subpt,
    &ct_method_lasp,
    &ct_method_upl,
    &ct_method_clippr,
    &ct_method_plot,
    &ct_method_proda,
    &ct_method_vpt_var,
    &ct_method_dualcoop,
    &ct_method_taidpt,
    &ct_method_maskclip,
    &ct_method_denseclip,
    &ct_method_protect,
    &ct_method_calip,
    &ct_method_tpt,
    &ct_method_wise_ft,
    &ct_method_must,
    &ct_method_vp,
    &ct_method_vpt_deep,
    &ct_method_ivlp,
    &ct_method_maple,
    &ct_method_protect_maple,
    &ct_method_clip_lora,
    &ct_method_promptsrc,
    &ct_method_upt,
    &ct_method_dpt,
    &ct_method_softcpt,
    &ct_method_mvlpt,
};

int ct_method_count(void) { return (int)(sizeof METHODS / sizeof *METHODS); }

const ct_method *ct_method_at(int i) {
    return i >= 0 && i < ct_method_count() ? METHODS[i] : NULL;
}

const ct_method *ct_method_find(const char *name) {
    for (int i = 0; i < ct_method_count(); i++)
        if (!strcmp(METHODS[i]->name, name)) return METHODS[i];
    return NULL;
}
