#include "model_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool model_args_parse(int argc, char **argv, int *i, model_args *a, bool *bad) {
    return cli_opt(argc, argv, i, "--model", &a->model, bad) ||
           cli_opt(argc, argv, i, "--bpe", &a->bpe, bad) ||
           cli_opt(argc, argv, i, "--act", &a->act, bad);
}

bool model_args_parse_inference(int argc, char **argv, int *i, model_args *a, bool *bad) {
    return model_args_parse(argc, argv, i, a, bad) ||
           cli_opt(argc, argv, i, "--precision", &a->precision, bad);
}

bool model_load(const model_args *a, bool need_tokenizer, loaded_model *m, const char *cmd) {
    memset(m, 0, sizeof *m);
    if (!a->model) {
        cli_error("%s: no --model given (see --help)", cmd);
        return false;
    }
    ct_clip_load_opts opts = {CT_QUICK_GELU, 64};
    if (a->act && !strcmp(a->act, "gelu")) {
        opts.openai_act = CT_GELU;
    } else if (a->act && strcmp(a->act, "quick_gelu")) {
        cli_error("%s: --act %s: expected quick_gelu or gelu", cmd, a->act);
        return false;
    }
    ct_precision prec = CT_PRECISION_F32;
    if (a->precision && !strcmp(a->precision, "bf16")) {
        prec = CT_PRECISION_BF16;
    } else if (a->precision && strcmp(a->precision, "f32")) {
        cli_error("%s: --precision %s: expected f32 or bf16", cmd, a->precision);
        return false;
    }
    if (ct_bundle_load(a->model, a->bpe, &opts, need_tokenizer, m) != CT_OK) {
        cli_lib_error(cmd);
        return false;
    }
    if (prec != CT_PRECISION_F32 && ct_clip_set_precision(m->clip, prec) != CT_OK) {
        cli_lib_error(cmd);
        ct_bundle_free(m);
        return false;
    }
    return true;
}

void model_unload(loaded_model *m) { ct_bundle_free(m); }

ct_tensor *model_encode_texts(ct_graph *g, loaded_model *m, char *const *texts, int n,
                              bool truncate, const char *cmd) {
    int ctx = ct_clip_get_config(m->clip)->context_length;
    int64_t *ids = malloc((size_t)n * (size_t)ctx * sizeof *ids);
    if (!ids) {
        cli_error("%s: out of memory", cmd);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (ct_tokenizer_tokenize(m->tok, texts[i], ctx, truncate, ids + (size_t)i * ctx) != CT_OK) {
            cli_error("%s: text %d (\"%.60s\"): %s%s", cmd, i + 1, texts[i], ct_last_error(),
                      truncate ? "" : " (--truncate keeps the first tokens)");
            free(ids);
            return NULL;
        }
    ct_tensor *t = ct_clip_encode_text(g, m->clip, ids, n, ctx, NULL);
    free(ids);
    if (!t) cli_lib_error(cmd);
    return t;
}

bool model_encode_images(loaded_model *m, char *const *paths, int n, float *out, const char *cmd) {
    const ct_clip_config *c = ct_clip_get_config(m->clip);
    const int batch = 16;
    int S = c->image_size;
    size_t per = (size_t)3 * S * S;
    float *px = malloc((size_t)batch * per * sizeof *px);
    ct_graph *g = ct_graph_create(0);
    bool ok = px && g;
    if (!ok) cli_error("%s: out of memory", cmd);
    /* the files as a dataset, read through the library's pixel source */
    ct_item *items = calloc((size_t)(n > 0 ? n : 1), sizeof *items);
    for (int i = 0; items && i < n; i++) items[i].path = paths[i];
    ct_dataset files = {.name = "images", .root = "", .n_items = n, .items = items};
    if (ok && !items) {
        cli_error("%s: out of memory", cmd);
        ok = false;
    }
    for (int i0 = 0; ok && i0 < n; i0 += batch) {
        int nb = n - i0 < batch ? n - i0 : batch;
        if (ct_dataset_pixels(&files, &m->pre, S, i0, nb, px) != CT_OK) {
            cli_lib_error(cmd);
            ok = false;
            break;
        }
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        int64_t shape[4] = {nb, 3, S, S};
        ct_tensor *emb = ct_clip_encode_image(g, m->clip, ct_graph_wrap(g, px, 4, shape), NULL,
                                              false, NULL);
        if (!emb) {
            cli_lib_error(cmd);
            ok = false;
            break;
        }
        memcpy(out + (size_t)i0 * (size_t)emb->shape[1], emb->data,
               (size_t)emb->numel * sizeof(float));
    }
    ct_graph_free(g);
    free(px);
    free(items);
    return ok;
}
