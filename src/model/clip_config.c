/* CLIP architecture from a Hugging Face config.json, or inferred from the
 * tensor shapes of an OpenAI-layout state dict as OpenAI's build_model does. */
#include <string.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/json.h"
#include "model/clip.h"

/* Optional integer field: keep *out when absent. */
static ct_status opt_int(const cJSON *o, const char *key, int *out, const char *ctx) {
    if (!o || !cJSON_GetObjectItemCaseSensitive(o, key)) return CT_OK;
    int64_t v;
    ct_status s = ct_json_get_int(o, key, &v, ctx);
    if (s != CT_OK) return s;
    if (v <= 0 || v > (1 << 24))
        return ct_set_error(CT_ERR_FORMAT, "%s: %s = %lld is out of range", ctx, key, (long long)v);
    *out = (int)v;
    return CT_OK;
}

static ct_status opt_eps(const cJSON *o, float *out, const char *ctx) {
    if (!o || !cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps")) return CT_OK;
    double v;
    ct_status s = ct_json_get_double(o, "layer_norm_eps", &v, ctx);
    if (s == CT_OK && !(v > 0 && v < 1))
        return ct_set_error(CT_ERR_FORMAT, "%s: layer_norm_eps %g out of range", ctx, v);
    if (s == CT_OK) *out = (float)v;
    return s;
}

static ct_status opt_act(const cJSON *o, ct_activation *out, const char *ctx) {
    if (!o || !cJSON_GetObjectItemCaseSensitive(o, "hidden_act")) return CT_OK;
    const char *a;
    ct_status s = ct_json_get_string(o, "hidden_act", &a, ctx);
    if (s != CT_OK) return s;
    if (!strcmp(a, "quick_gelu"))
        *out = CT_QUICK_GELU;
    else if (!strcmp(a, "gelu"))
        *out = CT_GELU;
    else
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported "
                            "(quick_gelu, gelu)", ctx, a);
    return CT_OK;
}

/* CLIPConfig merges the legacy "*_config_dict" over "*_config": the merged
 * view is read field by field, the dict first. */
static const cJSON *pick(const cJSON *dict, const cJSON *base, const char *key) {
    if (dict && cJSON_GetObjectItemCaseSensitive(dict, key)) return dict;
    return base;
}

ct_status ct_clip_config_from_hf(const char *path, ct_clip_config *cfg) {
    cJSON *root = ct_json_load(path);
    if (!root) return CT_ERR_FORMAT;
    ct_status s = CT_OK;
    char tctx[512], vctx[512];
    snprintf(tctx, sizeof tctx, "%s: text_config", path);
    snprintf(vctx, sizeof vctx, "%s: vision_config", path);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "text_config_dict");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *vd = cJSON_GetObjectItemCaseSensitive(root, "vision_config_dict");
    if (!cJSON_IsObject(t)) t = NULL;
    if (!cJSON_IsObject(td)) td = NULL;
    if (!cJSON_IsObject(v)) v = NULL;
    if (!cJSON_IsObject(vd)) vd = NULL;
    if (!cJSON_IsObject(root) || (!t && !td) || (!v && !vd)) {
        cJSON_Delete(root);
        return ct_set_error(CT_ERR_FORMAT, "%s: not a CLIP config (no text_config and "
                            "vision_config objects)", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "clip") != 0) {
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not \"clip\"", path,
                         mt->valuestring);
        cJSON_Delete(root);
        return s;
    }
    /* transformers' CLIPTextConfig / CLIPVisionConfig defaults */
    memset(cfg, 0, sizeof *cfg);
    cfg->format = CT_CLIP_HF;
    cfg->vocab_size = 49408, cfg->text_width = 512, cfg->text_mlp = 2048;
    cfg->text_layers = 12, cfg->text_heads = 8, cfg->context_length = 77;
    cfg->vision_width = 768, cfg->vision_mlp = 3072, cfg->vision_layers = 12;
    cfg->vision_heads = 12, cfg->image_size = 224, cfg->patch_size = 32;
    cfg->embed_dim = 512;
    cfg->text_act = cfg->vision_act = CT_QUICK_GELU;
    cfg->text_ln_eps = cfg->vision_ln_eps = 1e-5f;
    int eos = 49407;
    struct { const char *key; int *out; int tower; } ints[] = {
        {"vocab_size", &cfg->vocab_size, 0},       {"hidden_size", &cfg->text_width, 0},
        {"intermediate_size", &cfg->text_mlp, 0},  {"num_hidden_layers", &cfg->text_layers, 0},
        {"num_attention_heads", &cfg->text_heads, 0},
        {"max_position_embeddings", &cfg->context_length, 0},
        {"eos_token_id", &eos, 0},
        {"hidden_size", &cfg->vision_width, 1},    {"intermediate_size", &cfg->vision_mlp, 1},
        {"num_hidden_layers", &cfg->vision_layers, 1},
        {"num_attention_heads", &cfg->vision_heads, 1}, {"image_size", &cfg->image_size, 1},
        {"patch_size", &cfg->patch_size, 1},
    };
    for (size_t i = 0; s == CT_OK && i < sizeof ints / sizeof *ints; i++) {
        const cJSON *o = ints[i].tower ? pick(vd, v, ints[i].key) : pick(td, t, ints[i].key);
        s = opt_int(o, ints[i].key, ints[i].out, ints[i].tower ? vctx : tctx);
    }
    if (s == CT_OK) s = opt_int(root, "projection_dim", &cfg->embed_dim, path);
    if (s == CT_OK) s = opt_act(pick(td, t, "hidden_act"), &cfg->text_act, tctx);
    if (s == CT_OK) s = opt_act(pick(vd, v, "hidden_act"), &cfg->vision_act, vctx);
    if (s == CT_OK) s = opt_eps(pick(td, t, "layer_norm_eps"), &cfg->text_ln_eps, tctx);
    if (s == CT_OK) s = opt_eps(pick(vd, v, "layer_norm_eps"), &cfg->vision_ln_eps, vctx);
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(pick(vd, v, "num_channels"), "num_channels");
    if (s == CT_OK && nc && !(cJSON_IsNumber(nc) && nc->valuedouble == 3))
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: num_channels must be 3", vctx);
    cJSON_Delete(root);
    if (s != CT_OK) return s;
    /* transformers: eos_token_id == 2 marks configs from before the fix, which
     * pool at the argmax of the ids; otherwise the first eos. */
    cfg->eot_id = eos;
    cfg->eot_rule = eos == 2 ? CT_EOT_ARGMAX : CT_EOT_FIRST_ID;
    if (cfg->text_width % cfg->text_heads || cfg->vision_width % cfg->vision_heads)
        return ct_set_error(CT_ERR_FORMAT, "%s: hidden_size is not a multiple of "
                            "num_attention_heads", path);
    if (cfg->image_size % cfg->patch_size)
        return ct_set_error(CT_ERR_FORMAT, "%s: image_size %d is not a multiple of patch_size %d",
                            path, cfg->image_size, cfg->patch_size);
    return CT_OK;
}

static const ct_st_tensor *need(const ct_safetensors *st, const char *path, const char *name,
                                int ndim, ct_status *s) {
    const ct_st_tensor *t = ct_safetensors_find(st, name);
    if (*s != CT_OK) return t;
    if (!t)
        *s = ct_set_error(CT_ERR_FORMAT, "%s: missing tensor %s (is this an OpenAI-layout CLIP "
                          "checkpoint?)", path, name);
    else if (t->ndim != ndim)
        *s = ct_set_error(CT_ERR_FORMAT, "%s: tensor %s has %d dims, expected %d", path, name,
                          t->ndim, ndim);
    return t;
}

static int count_layers(const ct_safetensors *st, const char *fmt) {
    char name[256];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!ct_safetensors_find(st, name)) return n;
    }
}

/* The text tower's part of an OpenAI-layout state dict (both towers). */
static ct_status config_text(const ct_safetensors *st, const char *path,
                             const ct_clip_load_opts *opts, int hw, ct_clip_config *cfg) {
    ct_status s = CT_OK;
    const ct_st_tensor *tpos = need(st, path, "positional_embedding", 2, &s);
    const ct_st_tensor *tok = need(st, path, "token_embedding.weight", 2, &s);
    const ct_st_tensor *lnf = need(st, path, "ln_final.weight", 1, &s);
    const ct_st_tensor *tproj = need(st, path, "text_projection", 2, &s);
    const ct_st_tensor *tfc = need(st, path, "transformer.resblocks.0.mlp.c_fc.weight", 2, &s);
    if (s != CT_OK) return s;
    cfg->embed_dim = (int)tproj->shape[1];
    cfg->context_length = (int)tpos->shape[0];
    cfg->vocab_size = (int)tok->shape[0];
    cfg->text_width = (int)lnf->shape[0];
    cfg->text_heads = cfg->text_width / hw;
    cfg->text_layers = count_layers(st, "transformer.resblocks.%d.attn.in_proj_weight");
    cfg->text_mlp = (int)tfc->shape[0];
    cfg->text_act = opts ? opts->openai_act : CT_QUICK_GELU;
    cfg->text_ln_eps = 1e-5f;
    cfg->eot_rule = CT_EOT_ARGMAX;
    cfg->eot_id = cfg->vocab_size - 1;
    if (cfg->text_heads < 1 || cfg->text_width % hw)
        return ct_set_error(CT_ERR_FORMAT, "%s: text width %d is not a multiple of the head "
                            "width %d", path, cfg->text_width, hw);
    if (cfg->text_layers < 1)
        return ct_set_error(CT_ERR_FORMAT, "%s: no text transformer blocks found", path);
    return CT_OK;
}

/* A ModifiedResNet image tower, as build_model infers it: the bottleneck
 * counts from the visual.layer{1..4}.{i} keys, the width from
 * layer1.0.conv1, the input size from the attention pooling's positional
 * embedding (grid^2 + 1 rows, 32 pixels per grid cell), heads width*32/64
 * (ModifiedResNet's vision_heads; open_clip: width*32 / head_width). */
static ct_status config_resnet(const ct_safetensors *st, const char *path,
                               const ct_clip_load_opts *opts, ct_clip_config *cfg) {
    ct_status s = CT_OK;
    const ct_st_tensor *c1 = need(st, path, "visual.layer1.0.conv1.weight", 4, &s);
    const ct_st_tensor *pos = need(st, path, "visual.attnpool.positional_embedding", 2, &s);
    if (s != CT_OK) return s;
    memset(cfg, 0, sizeof *cfg);
    int hw = opts && opts->openai_head_width > 0 ? opts->openai_head_width : 64;
    cfg->format = CT_CLIP_OPENAI;
    for (int b = 0; b < 4; b++) {
        char fmt[64];
        snprintf(fmt, sizeof fmt, "visual.layer%d.%%d.conv1.weight", b + 1);
        cfg->vision_resnet_layers[b] = count_layers(st, fmt);
        if (cfg->vision_resnet_layers[b] < 1)
            return ct_set_error(CT_ERR_FORMAT, "%s: missing tensor visual.layer%d.0.conv1.weight "
                                "(a ModifiedResNet has four stages)", path, b + 1);
    }
    if (c1->shape[0] < 2 || c1->shape[0] > (1 << 16))
        return ct_set_error(CT_ERR_FORMAT, "%s: visual.layer1.0.conv1.weight has %lld output "
                            "channels", path, (long long)c1->shape[0]);
    cfg->vision_width = (int)c1->shape[0];
    int64_t ntok = pos->shape[0] - 1, grid = 0;
    while ((grid + 1) * (grid + 1) <= ntok) grid++;
    if (grid < 1 || grid * grid != ntok || grid > 4096)
        return ct_set_error(CT_ERR_FORMAT, "%s: visual.attnpool.positional_embedding has %lld "
                            "rows, not a square grid + 1", path, (long long)pos->shape[0]);
    cfg->image_size = (int)grid * 32;
    cfg->patch_size = 32;
    int C = cfg->vision_width * 32;
    if (C % hw)
        return ct_set_error(CT_ERR_FORMAT, "%s: ResNet feature width %d is not a multiple of the "
                            "head width %d", path, C, hw);
    cfg->vision_heads = C / hw;
    cfg->vision_act = opts ? opts->openai_act : CT_QUICK_GELU;
    cfg->vision_ln_eps = 1e-5f;
    return config_text(st, path, opts, hw, cfg);
}

ct_status ct_clip_config_from_openai(const ct_safetensors *st, const char *path,
                                     const ct_clip_load_opts *opts, ct_clip_config *cfg) {
    ct_status s = CT_OK;
    if (ct_safetensors_find(st, "visual.layer1.0.conv1.weight"))
        return config_resnet(st, path, opts, cfg);
    const ct_st_tensor *conv = need(st, path, "visual.conv1.weight", 4, &s);
    const ct_st_tensor *vpos = need(st, path, "visual.positional_embedding", 2, &s);
    const ct_st_tensor *tpos = need(st, path, "positional_embedding", 2, &s);
    const ct_st_tensor *tok = need(st, path, "token_embedding.weight", 2, &s);
    const ct_st_tensor *lnf = need(st, path, "ln_final.weight", 1, &s);
    const ct_st_tensor *tproj = need(st, path, "text_projection", 2, &s);
    const ct_st_tensor *fc = need(st, path, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, &s);
    const ct_st_tensor *tfc = need(st, path, "transformer.resblocks.0.mlp.c_fc.weight", 2, &s);
    if (s != CT_OK) return s;
    memset(cfg, 0, sizeof *cfg);
    int hw = opts && opts->openai_head_width > 0 ? opts->openai_head_width : 64;
    cfg->format = CT_CLIP_OPENAI;
    cfg->vision_width = (int)conv->shape[0];
    cfg->patch_size = (int)conv->shape[3];
    cfg->vision_layers = count_layers(st, "visual.transformer.resblocks.%d.attn.in_proj_weight");
    int64_t ntok = vpos->shape[0] - 1, grid = 0;
    while ((grid + 1) * (grid + 1) <= ntok) grid++;
    if (grid * grid != ntok)
        return ct_set_error(CT_ERR_FORMAT, "%s: visual.positional_embedding has %lld rows, not "
                            "a square grid + 1", path, (long long)vpos->shape[0]);
    cfg->image_size = (int)grid * cfg->patch_size;
    cfg->vision_heads = cfg->vision_width / hw;
    cfg->vision_mlp = (int)fc->shape[0];
    cfg->embed_dim = (int)tproj->shape[1];
    cfg->context_length = (int)tpos->shape[0];
    cfg->vocab_size = (int)tok->shape[0];
    cfg->text_width = (int)lnf->shape[0];
    cfg->text_heads = cfg->text_width / hw;
    cfg->text_layers = count_layers(st, "transformer.resblocks.%d.attn.in_proj_weight");
    cfg->text_mlp = (int)tfc->shape[0];
    cfg->vision_act = cfg->text_act = opts ? opts->openai_act : CT_QUICK_GELU;
    cfg->vision_ln_eps = cfg->text_ln_eps = 1e-5f;
    cfg->eot_rule = CT_EOT_ARGMAX;
    cfg->eot_id = cfg->vocab_size - 1;
    if (cfg->vision_heads < 1 || cfg->text_heads < 1 || cfg->vision_width % hw ||
        cfg->text_width % hw)
        return ct_set_error(CT_ERR_FORMAT, "%s: widths %d (vision) and %d (text) are not "
                            "multiples of the head width %d", path, cfg->vision_width,
                            cfg->text_width, hw);
    if (cfg->vision_layers < 1 || cfg->text_layers < 1)
        return ct_set_error(CT_ERR_FORMAT, "%s: no transformer blocks found", path);
    return CT_OK;
}
