#include "model_args.h"

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

ct_model *model_load(const model_args *a, bool need_tokenizer, const char *cmd) {
    if (!a->model) {
        cli_usage("%s: no --model given (see --help)", cmd);
        return NULL;
    }
    ct_model_opts o = {.bpe = a->bpe, .act = a->act, .need_tokenizer = need_tokenizer};
    if (a->precision && !strcmp(a->precision, "bf16")) {
        o.precision = CT_PRECISION_BF16;
    } else if (a->precision && strcmp(a->precision, "f32")) {
        cli_usage("%s: --precision %s: expected f32 or bf16", cmd, a->precision);
        return NULL;
    }
    if (a->act && strcmp(a->act, "gelu") && strcmp(a->act, "quick_gelu")) {
        cli_usage("%s: --act %s: expected quick_gelu or gelu", cmd, a->act);
        return NULL;
    }
    ct_model *m = ct_model_load_ex(a->model, &o);
    if (!m) cli_lib_error(cmd);
    return m;
}
