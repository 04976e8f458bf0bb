/* cliptune pretrain: CLIP's contrastive pretraining from scratch
 * (src/train/pretrain.h) into a Hugging Face CLIP folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

static const char *HELP =
    "usage: cliptune pretrain --corpus SPEC --config FILE --tokenizer DIR --out DIR [options]\n"
    "\n"
    "Train a CLIP from scratch with its contrastive objective (symmetric cross-entropy\n"
    "over the batch, learnable temperature clamped at 100, AdamW with open_clip's\n"
    "weight-decay groups, linear warmup then cosine per step) and write DIR as a\n"
    "Hugging Face CLIP folder (config.json, model.safetensors, preprocessor_config.json,\n"
    "the tokenizer's files) plus curve.csv and the training state, checkpointed\n"
    "atomically: --resume continues bit for bit, --stop-after trains in chunks.\n"
    "\n"
    "  --corpus SPEC        CSV with header path,caption (several lines per image =\n"
    "                       several captions, one drawn per step) or a folder of\n"
    "                       images with same-stem .txt captions (docs/pretraining.md)\n"
    "  --config FILE        architecture as an HF CLIP config.json (vocab_size is\n"
    "                       taken from the tokenizer); e.g. data/arch/*.json\n"
    "  --tokenizer DIR      vocab.json + merges.txt; with --vocab-size N and no\n"
    "                       DIR/vocab.json, a BPE vocabulary of N ids is first\n"
    "                       trained on the corpus captions into DIR\n"
    "  --out DIR            output folder\n"
    "  --epochs N           passes over the training images (default 10)\n"
    "  --batch N            pairs per step (default 256)\n"
    "  --lr X --min-lr X    peak and final learning rate (1e-3, 0)\n"
    "  --wd X               AdamW weight decay (0.2); betas 0.9/0.98, eps 1e-6\n"
    "  --warmup N           linear warmup steps (200)\n"
    "  --max-grad-norm X    clip the global gradient norm (0: off)\n"
    "  --heldout F          fraction of images held out for retrieval metrics (0.05)\n"
    "  --eval-every N       held-out retrieval every N steps (0: at the end only)\n"
    "  --checkpoint-every N steps between checkpoints (200; and at the end)\n"
    "  --stop-after N       stop (checkpointed) after N steps of this call\n"
    "  --resume             continue the run in --out\n"
    "  --seed N             initialisation, order and augmentation seed (1)\n"
    "  --aug KEY=VALUE      augmentation (repeatable): scale_min, scale_max, flip,\n"
    "                       silhouette, background, downscale, downscale_min,\n"
    "                       downscale_max, grey, invert (probabilities in [0, 1])\n";

static void print_line(void *ctx, const char *line) {
    cli_progress_clear(ctx);
    printf("%s\n", line);
    fflush(stdout);
}

static bool set_aug(ct_pretrain_aug_cfg *a, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq) {
        cli_error("--aug: expected KEY=VALUE, got '%s'", kv);
        return false;
    }
    char key[64];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof key) n = sizeof key - 1;
    memcpy(key, kv, n), key[n] = 0;
    const char *v = eq + 1;
    double x;
    long long i;
    struct {
        const char *name;
        float *f;
    } probs[] = {{"flip", &a->flip_p},         {"silhouette", &a->silhouette_p},
                 {"background", &a->background_p}, {"downscale", &a->downscale_p},
                 {"grey", &a->grey_p},         {"invert", &a->invert_p}};
    for (size_t k = 0; k < sizeof probs / sizeof *probs; k++)
        if (!strcmp(key, probs[k].name)) {
            if (!cli_parse_double(v, kv, 0, 1, &x)) return false;
            *probs[k].f = (float)x;
            return true;
        }
    if (!strcmp(key, "scale_min") || !strcmp(key, "scale_max")) {
        if (!cli_parse_double(v, kv, 1e-3, 1, &x)) return false;
        *(!strcmp(key, "scale_min") ? &a->scale_min : &a->scale_max) = x;
        return true;
    }
    if (!strcmp(key, "downscale_min") || !strcmp(key, "downscale_max")) {
        if (!cli_parse_ll(v, kv, 1, 4096, &i)) return false;
        *(!strcmp(key, "downscale_min") ? &a->downscale_min : &a->downscale_max) = (int)i;
        return true;
    }
    cli_error("--aug: unknown key '%s' (see cliptune pretrain --help)", key);
    return false;
}

/* DIR/vocab.json from the corpus captions when missing and --vocab-size given. */
static bool ensure_tokenizer(const char *dir, const char *corpus, long long vocab) {
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if (access(path, F_OK) == 0) return true;
    if (!vocab) {
        cli_error("pretrain: %s does not exist (give --vocab-size N to train a vocabulary on "
                  "the corpus captions first)", path);
        return false;
    }
    ct_caption_set cs;
    if (ct_captions_open(corpus, &cs) != CT_OK) return !cli_lib_error("pretrain: corpus");
    ct_bpe_stats st;
    int64_t nc = cs.cap_off[cs.n_images];
    ct_status s = ct_bpe_train((const char *const *)cs.captions, nc, (int)vocab, 2, dir, &st);
    ct_captions_free(&cs);
    if (s != CT_OK) return !cli_lib_error("pretrain: training the BPE vocabulary");
    printf("trained a BPE vocabulary on %lld captions into %s\n", (long long)nc, dir);
    return true;
}

int cmd_pretrain(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    ct_pretrain_cfg cfg;
    ct_pretrain_cfg_default(&cfg);
    const char *config = NULL, *v = NULL;
    long long vocab = 0, x;
    double d;
    bool bad = false;
    const char *augs[32];
    int n_aug = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_opt(argc, argv, &i, "--corpus", &cfg.corpus, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--config", &config, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--tokenizer", &cfg.tokenizer_dir, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &cfg.out_dir, &bad)) continue;
        if (!strcmp(argv[i], "--resume")) {
            cfg.resume = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--aug", &v, &bad)) {
            if (!bad && n_aug == 32) bad = !cli_error("--aug: at most 32");
            else if (!bad) augs[n_aug++] = v;
            continue;
        }
        struct {
            const char *name;
            long long lo, hi;
            void *out;
            int kind; /* 0 int, 1 int64, 2 u64 */
        } ints[] = {{"--epochs", 1, 1000000, &cfg.epochs, 0},
                    {"--batch", 2, 65536, &cfg.batch_size, 0},
                    {"--warmup", 0, 1LL << 40, &cfg.warmup_steps, 1},
                    {"--eval-every", 0, 1LL << 40, &cfg.eval_every, 1},
                    {"--checkpoint-every", 1, 1LL << 40, &cfg.checkpoint_every, 1},
                    {"--stop-after", 1, 1LL << 40, &cfg.stop_after, 1},
                    {"--seed", 0, 1LL << 62, &cfg.seed, 2},
                    {"--vocab-size", 514, 49408, &vocab, 3}};
        bool hit = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !hit; k++)
            if (cli_opt(argc, argv, &i, ints[k].name, &v, &bad)) {
                hit = true;
                if (bad || !cli_parse_ll(v, ints[k].name, ints[k].lo, ints[k].hi, &x)) {
                    bad = true;
                } else if (ints[k].kind == 0) {
                    *(int *)ints[k].out = (int)x;
                } else if (ints[k].kind == 1) {
                    *(int64_t *)ints[k].out = x;
                } else if (ints[k].kind == 2) {
                    *(uint64_t *)ints[k].out = (uint64_t)x;
                } else {
                    *(long long *)ints[k].out = x;
                }
            }
        if (hit) continue;
        struct {
            const char *name;
            double lo, hi, *out;
        } dbl[] = {{"--lr", 1e-12, 10, &cfg.lr},           {"--min-lr", 0, 10, &cfg.min_lr},
                   {"--wd", 0, 10, &cfg.weight_decay},    {"--max-grad-norm", 0, 1e9, &cfg.max_grad_norm},
                   {"--heldout", 0, 0.9, &cfg.heldout_frac}};
        for (size_t k = 0; k < sizeof dbl / sizeof *dbl && !hit; k++)
            if (cli_opt(argc, argv, &i, dbl[k].name, &v, &bad)) {
                hit = true;
                if (bad || !cli_parse_double(v, dbl[k].name, dbl[k].lo, dbl[k].hi, &d)) bad = true;
                else *dbl[k].out = d;
            }
        if (!hit && !bad) bad = !cli_usage("pretrain: unknown option '%s' (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!cfg.corpus || !config || !cfg.tokenizer_dir || !cfg.out_dir)
        return cli_usage("pretrain: --corpus, --config, --tokenizer and --out are required "
                         "(see --help)");
    if (ct_clip_config_from_hf(config, &cfg.arch) != CT_OK)
        return cli_lib_error("pretrain: --config");
    ct_pretrain_aug_cfg_default(&cfg.aug, cfg.arch.image_size);
    for (int k = 0; k < n_aug; k++)
        if (!set_aug(&cfg.aug, augs[k])) return 1;
    if (!ensure_tokenizer(cfg.tokenizer_dir, cfg.corpus, vocab)) return 1;
    char vp[4096], mp[4096];
    snprintf(vp, sizeof vp, "%s/vocab.json", cfg.tokenizer_dir);
    snprintf(mp, sizeof mp, "%s/merges.txt", cfg.tokenizer_dir);
    ct_tokenizer *tok = ct_tokenizer_load_hf(vp, mp);
    if (!tok) return cli_lib_error("pretrain: --tokenizer");
    /* the model's vocabulary is the tokenizer's; its EOT id is the largest */
    cfg.arch.vocab_size = ct_tokenizer_vocab_size(tok);
    cfg.arch.eot_rule = CT_EOT_ARGMAX;
    cfg.arch.eot_id = ct_tokenizer_eot(tok);
    ct_tokenizer_free(tok);
    cli_progress prog;
    cli_progress_init(&prog);
    cfg.log = print_line, cfg.log_ctx = &prog;
    cfg.progress = cli_progress_cb, cfg.progress_ctx = &prog;
    ct_pretrain_result res;
    ct_status s = ct_pretrain(&cfg, &res);
    cli_progress_clear(&prog);
    if (s != CT_OK) return cli_lib_error("pretrain");
    printf("%s: step %lld of %lld%s; loss %.4f, logit scale %.1f\n", cfg.out_dir,
           (long long)res.step, (long long)res.total_steps,
           res.finished ? " (finished)" : " (resume with --resume)", res.loss, res.logit_scale);
    if (res.heldout.n_images)
        printf("held-out retrieval: image->text R@1 %.1f%% R@5 %.1f%%, text->image R@1 %.1f%% "
               "R@5 %.1f%%\n", 100 * res.heldout.i2t_r1, 100 * res.heldout.i2t_r5,
               100 * res.heldout.t2i_r1, 100 * res.heldout.t2i_r5);
    return 0;
}
