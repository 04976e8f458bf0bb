/* Writing a model as a Hugging Face CLIP folder (config.json,
 * preprocessor_config.json, model.safetensors), so that what cliptune trains
 * loads like any real checkpoint — in cliptune or in transformers. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/json.h"
#include "model/clip.h"

ct_status ct_clip_save_weights_hf(const ct_clip *m, const char *path);

static const char *act_str(ct_activation a) { return a == CT_GELU ? "gelu" : "quick_gelu"; }

static cJSON *tower(const ct_clip_config *c, bool vision) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "hidden_size", vision ? c->vision_width : c->text_width);
    cJSON_AddNumberToObject(o, "intermediate_size", vision ? c->vision_mlp : c->text_mlp);
    cJSON_AddNumberToObject(o, "num_attention_heads", vision ? c->vision_heads : c->text_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", vision ? c->vision_layers : c->text_layers);
    cJSON_AddStringToObject(o, "hidden_act", act_str(vision ? c->vision_act : c->text_act));
    cJSON_AddNumberToObject(o, "layer_norm_eps", vision ? c->vision_ln_eps : c->text_ln_eps);
    cJSON_AddNumberToObject(o, "projection_dim", c->embed_dim);
    if (vision) {
        cJSON_AddNumberToObject(o, "image_size", c->image_size);
        cJSON_AddNumberToObject(o, "patch_size", c->patch_size);
        cJSON_AddNumberToObject(o, "num_channels", 3);
        cJSON_AddStringToObject(o, "model_type", "clip_vision_model");
    } else {
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(o, "max_position_embeddings", c->context_length);
        /* argmax pooling is what legacy eos 2 selects in transformers */
        int64_t eos = c->eot_rule == CT_EOT_ARGMAX ? 2 : c->eot_id;
        cJSON_AddNumberToObject(o, "eos_token_id", (double)eos);
        cJSON_AddNumberToObject(o, "bos_token_id", (double)(c->vocab_size - 2));
        cJSON_AddNumberToObject(o, "pad_token_id", 1);
        cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    }
    return o;
}

static ct_status save_json(const char *path, cJSON *root) {
    ct_status s = root ? ct_json_save(path, root) : ct_set_error(CT_ERR_NOMEM, "out of memory");
    cJSON_Delete(root);
    return s;
}

ct_status ct_clip_save_hf(const ct_clip *m, const char *dir) {
    if (ct_clip_is_resnet(m))
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: a ModifiedResNet image tower has no Hugging "
                            "Face CLIP layout (transformers' CLIPModel is ViT-only)", dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ct_set_error(CT_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    const ct_clip_config *c = &m->cfg;
    char path[4096];
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("CLIPModel"));
    cJSON_AddStringToObject(root, "model_type", "clip");
    cJSON_AddNumberToObject(root, "projection_dim", c->embed_dim);
    cJSON_AddNumberToObject(root, "logit_scale_init_value", 2.6592);
    cJSON_AddStringToObject(root, "torch_dtype", "float32");
    cJSON_AddItemToObject(root, "text_config", tower(c, false));
    cJSON_AddItemToObject(root, "vision_config", tower(c, true));
    snprintf(path, sizeof path, "%s/config.json", dir);
    ct_status s = save_json(path, root);
    if (s != CT_OK) return s;
    /* CLIPImageProcessor with OpenAI's constants, sized for this model */
    cJSON *pp = cJSON_CreateObject();
    cJSON_AddStringToObject(pp, "image_processor_type", "CLIPImageProcessor");
    cJSON_AddBoolToObject(pp, "do_resize", 1);
    cJSON *size = cJSON_AddObjectToObject(pp, "size");
    cJSON_AddNumberToObject(size, "shortest_edge", c->image_size);
    cJSON_AddBoolToObject(pp, "do_center_crop", 1);
    cJSON *crop = cJSON_AddObjectToObject(pp, "crop_size");
    cJSON_AddNumberToObject(crop, "height", c->image_size);
    cJSON_AddNumberToObject(crop, "width", c->image_size);
    cJSON_AddBoolToObject(pp, "do_rescale", 1);
    cJSON_AddNumberToObject(pp, "rescale_factor", 1.0 / 255);
    cJSON_AddBoolToObject(pp, "do_normalize", 1);
    cJSON_AddBoolToObject(pp, "do_convert_rgb", 1);
    cJSON_AddNumberToObject(pp, "resample", 3);
    const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    cJSON_AddItemToObject(pp, "image_mean", cJSON_CreateDoubleArray(mean, 3));
    cJSON_AddItemToObject(pp, "image_std", cJSON_CreateDoubleArray(std, 3));
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if ((s = save_json(path, pp)) != CT_OK) return s;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return ct_clip_save_weights_hf(m, path);
}
