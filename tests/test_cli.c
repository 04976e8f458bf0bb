/* End-to-end tests of the cliptune binary: info / tokenize / embed / classify
 * on a small random CLIP written as a Hugging Face folder with the real CLIP
 * BPE vocabulary's ids (tests/fixtures/bpe/clip_subset), and the error
 * contract (message "cliptune: error: ...", non-zero exit). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cJSON.h>

#include "cliptune.h"
#include "harness.h"

static char out_buf[1 << 16];

/* Run a shell command line, capture stdout+stderr, return the exit code. */
static int run(const char *cmdline) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out_buf, 1, sizeof out_buf - 1, p);
    out_buf[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *model_dir(void) {
    static char dir[4096];
    if (dir[0]) return dir;
    const char *bpe = ct_test_clip_bpe();
    snprintf(dir, sizeof dir, "%s/tinyclip", ct_test_tmpdir());
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 32, c.patch_size = 8, c.vision_width = 32, c.vision_layers = 1;
    c.vision_heads = 2, c.vision_mlp = 64, c.context_length = 77, c.vocab_size = 49408;
    c.text_width = 32, c.text_layers = 1, c.text_heads = 2, c.text_mlp = 64, c.embed_dim = 16;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_FIRST_ID, c.eot_id = 49407;
    ct_clip *m = ct_clip_create(&c, 7);
    CHECK_OK(ct_clip_save_hf(m, dir));
    ct_clip_free(m);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp %s/vocab.json %s/merges.txt %s/",
             bpe, bpe, dir);
    CHECK(system(cmd) == 0);
    return dir;
}

static void test_help_and_errors(void) {
    CHECK(run(CT_CLI_PATH " help") == 0 && strstr(out_buf, "classify"));
    CHECK(run(CT_CLI_PATH) == 2);
    CHECK(run(CT_CLI_PATH " frobnicate") == 2 && strstr(out_buf, "cliptune: error: unknown command"));
    const char *cmds[4] = {"info", "tokenize", "embed", "classify"};
    for (int i = 0; i < 4; i++) {
        char c[512];
        snprintf(c, sizeof c, CT_CLI_PATH " %s --help", cmds[i]);
        CHECK_MSG(run(c) == 0 && strstr(out_buf, "usage: cliptune"), "%s --help", cmds[i]);
        snprintf(c, sizeof c, CT_CLI_PATH " %s --bogus", cmds[i]);
        CHECK_MSG(run(c) == 2 && strstr(out_buf, "cliptune: error:"), "%s --bogus: %s", cmds[i],
                  out_buf);
    }
    CHECK(run(CT_CLI_PATH " info /nonexistent/model") == 1 &&
          strstr(out_buf, "cliptune: error: info: /nonexistent/model"));
    CHECK(run(CT_CLI_PATH " info " CT_SOURCE_DIR "/tests/fixtures/clip/b_hf") == 0 &&
          strstr(out_buf, "24x24") && strstr(out_buf, "gelu"));
    /* a ModifiedResNet tower (tests/fixtures/resnet, gen_resnet_ref.py) */
    CHECK_MSG(run(CT_CLI_PATH " info " CT_SOURCE_DIR "/tests/fixtures/resnet/rn_openai.safetensors")
                  == 0 && strstr(out_buf, "ModifiedResNet, 64x64 input, layers (2, 1, 1, 1), "
                                          "width 4 (features 128), attention pooling 2 heads"),
              "info on a ResNet: %s", out_buf);
}

static void test_tokenize(void) {
    const char *dir = model_dir();
    if (!dir) return;
    char c[8192];
    snprintf(c, sizeof c, CT_CLI_PATH " tokenize --model %s 'a photo of a cat.' 'Hello!!'", dir);
    CHECK(run(c) == 0);
    CHECK_MSG(!strncmp(out_buf, "49406 320 1125 539 320 2368 269 49407\n", 38), "got: %s", out_buf);
    snprintf(c, sizeof c, CT_CLI_PATH " tokenize --model %s --pad 'x' | head -1 | wc -w", dir);
    CHECK(run(c) == 0 && atoi(out_buf) == 77);
    /* too long without --truncate */
    char longtext[4096] = "";
    for (int i = 0; i < 100; i++) strcat(longtext, "word ");
    snprintf(c, sizeof c, CT_CLI_PATH " tokenize --model %s '%s'", dir, longtext);
    CHECK(run(c) == 1 && strstr(out_buf, "--truncate"));
    snprintf(c, sizeof c, CT_CLI_PATH " tokenize --model %s --truncate '%s'", dir, longtext);
    CHECK(run(c) == 0 && strstr(out_buf, " 49407\n"));
}

static void test_embed_and_classify(void) {
    const char *dir = model_dir();
    if (!dir) return;
    char c[8192], npy[4096];
    const char *img1 = CT_SOURCE_DIR "/tests/fixtures/images/rgb.png";
    const char *img2 = CT_SOURCE_DIR "/tests/fixtures/images/grey.jpg";
    snprintf(npy, sizeof npy, "%s/t.npy", ct_test_tmpdir());
    snprintf(c, sizeof c, CT_CLI_PATH " embed --model %s --texts 'a photo of a cat.' 'a dog' "
             "--out %s", dir, npy);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    ct_npy a = {0};
    CHECK_OK(ct_npy_read(npy, &a));
    CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 16 && a.dtype == CT_F32);
    /* the same numbers as the library computes directly */
    ct_clip *m = ct_clip_load(dir, NULL);
    ct_graph *g = ct_graph_create(0);
    int64_t ids[77] = {49406, 320, 1125, 539, 320, 2368, 269, 49407};
    ct_tensor *t = ct_clip_encode_text(g, m, ids, 1, 77, NULL);
    if (t && a.data) CHECK_CLOSE_F("embed --texts row 0", (float *)a.data, t->data, 16, 1e-6, 1e-5);
    ct_npy_free(&a);
    ct_graph_free(g);
    ct_clip_free(m);
    snprintf(c, sizeof c, CT_CLI_PATH " embed --model %s --images %s %s --out %s", dir, img1, img2,
             npy);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    CHECK_OK(ct_npy_read(npy, &a));
    CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 16);
    ct_npy_free(&a);
    snprintf(c, sizeof c, CT_CLI_PATH " embed --model %s --images /nonexistent.png --out %s", dir,
             npy);
    CHECK(run(c) == 1 && strstr(out_buf, "cliptune: error: embed: /nonexistent.png"));
    snprintf(c, sizeof c, CT_CLI_PATH " classify --model %s --labels 'cat, dog,bird' %s %s", dir,
             img1, img2);
    CHECK_MSG(run(c) == 0, "%s", out_buf);
    /* two lines, each: path, label, three label=prob entries summing to 1 */
    int lines = 0;
    for (char *line = strtok(out_buf, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        double sum = 0;
        for (char *e = strchr(line, '='); e; e = strchr(e + 1, '=')) sum += atof(e + 1);
        CHECK_NEAR("probabilities sum", sum, 1.0, 2e-3, 0);
    }
    CHECK(lines == 2);
}

/* protocol --base-to-novel on the shipped model: base and novel columns
 * and their harmonic mean; a method whose learned tensors are per class is
 * refused with a clear error. */
static void test_protocol_base_to_novel(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cmd[8192], path[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --methods zeroshot,coop,maple "
             "--shots 2 --seeds 1 --base-to-novel --max-test 100 --out %s/b2n --cache %s/b2n_cache "
             "--set coop.epochs=2 --set maple.epochs=1", tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    CHECK_MSG(strstr(out_buf, "maple 2-shot seed 1: base "), "%s", out_buf);
    snprintf(path, sizeof path, "%s/b2n/results.md", tmp);
    char *md = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &md, &n));
    CHECK(md && strstr(md, "## Base-to-novel") && strstr(md, "| maple | 2 |") &&
          strstr(md, "| zeroshot | 2 |"));
    free(md);
    snprintf(path, sizeof path, "%s/b2n/maple/2shot/seed1/novel.json", tmp);
    CHECK_OK(ct_read_file(path, &md, &n));
    CHECK(md && strstr(md, "\"top1\""));
    free(md);
    /* re-running reads the finished cells back */
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "skipped: done"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --methods linear-probe --shots 1 "
             "--seeds 1 --base-to-novel --max-test 50 --out %s/b2n_lp --cache %s/b2n_cache",
             tmp, tmp);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "cliptune: error:") &&
                  strstr(out_buf, "cannot be evaluated on novel classes"),
              "%s", out_buf);
}

/* export: a CLIP-LoRA run merged into a plain CLIP folder; zero-shot with
 * the run's template on the exported model predicts every test image as the
 * run did. A method that has no merge is refused. */
static void test_export_clip_lora(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cmd[8192], p1[4200], p2[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method clip-lora --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --shots 2 --max-test 200 --out "
             "%s/lora_run --cache none --set iters_per_shot=8 --set lr=1e-3", tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " export --run %s/lora_run --out %s/lora_model", tmp,
             tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "merged into"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " zeroshot --model %s/lora_model --data fashion-mnist "
             "--max-test 200 --out %s/lora_zs --cache none --set 'templates=a photo of a {}.'",
             tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(p1, sizeof p1, "%s/lora_run/predictions.csv", tmp);
    snprintf(p2, sizeof p2, "%s/lora_zs/predictions.csv", tmp);
    char *csv = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK_OK(ct_read_file(p1, &csv, &n1));
    free(csv), csv = NULL;
    CHECK_OK(ct_read_file(p2, &csv, &n2));
    free(csv);
    CHECK_MSG(n1 > 1000 && n2 > 1000, "predictions %zu and %zu bytes", n1, n2);
    snprintf(cmd, sizeof cmd, "cmp <(cut -d, -f1-3 %s) <(cut -d, -f1-3 %s) >/dev/null", p1, p2);
    char bash[8400];
    snprintf(bash, sizeof bash, "bash -c '%s'", cmd);
    CHECK_MSG(system(bash) == 0, "the exported model predicts otherwise than the run (%s, %s)",
              p1, p2);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " export --run %s/lora_zs --out %s/zs_model", tmp, tmp);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "cliptune: error: export: zeroshot"), "%s",
              out_buf);
}

/* make-scenes: usage errors exit 2, a missing Fashion-MNIST folder 1 with
 * the file named; a tiny set equals the library's for the same options. */
static void test_make_scenes(void) {
    char cmd[8192], out[4200], lib[4200];
    const char *tmp = ct_test_tmpdir();
    CHECK(run(CT_CLI_PATH " help make-scenes") == 0 &&
          strstr(out_buf, "usage: cliptune make-scenes OUT"));
    CHECK(run(CT_CLI_PATH " help") == 0 && strstr(out_buf, "make-scenes"));
    CHECK_MSG(run(CT_CLI_PATH " make-scenes") == 2 && strstr(out_buf, "cliptune: error: "),
              "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/s --train -1", tmp);
    CHECK_MSG(run(cmd) == 2 && strstr(out_buf, "--train"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/s --canvas 40", tmp);
    CHECK_MSG(run(cmd) == 2 && strstr(out_buf, "--canvas"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/s --bogus", tmp);
    CHECK_MSG(run(cmd) == 2 && strstr(out_buf, "unknown option --bogus"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/s --fashion-mnist /nonexistent", tmp);
    CHECK_MSG(run(cmd) == 1 &&
                  strstr(out_buf, "cliptune: error: make-scenes: /nonexistent: no "
                                  "train-images-idx3-ubyte.gz"),
              "%s", out_buf);
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    snprintf(out, sizeof out, "%s/scenes_cli", tmp);
    snprintf(lib, sizeof lib, "%s/scenes_lib", tmp);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s --train 3 --val=1 --test 2 --seed 5",
             out);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "wrote 3 train, 1 val and 2 test scenes"), "%s",
              out_buf);
    ct_scenes_cfg c = ct_scenes_cfg_default();
    c.n_train = 3, c.n_val = 1, c.n_test = 2, c.seed = 5;
    CHECK_OK(ct_data_make_scenes(&c, lib));
    const char *files[] = {"labels_test.csv", "annotations/instances_train.json",
                           "JPEGImages/000006.jpg", "SegmentationClass/000004.png",
                           "ImageSets/Main/bag_trainval.txt", "README.txt"};
    for (int i = 0; i < 6; i++) {
        snprintf(cmd, sizeof cmd, "cmp -s %s/%s %s/%s", out, files[i], lib, files[i]);
        CHECK_MSG(system(cmd) == 0, "make-scenes: %s differs from the library's", files[i]);
    }
    snprintf(cmd, sizeof cmd, "wc -l < %s/labels_test.csv", out);
    CHECK(run(cmd) == 0 && atoi(out_buf) == 3);
}

/* Multi-label through the CLI on a small scenes set: train (partial labels)
 * prints mAP, eval --json gives the run's mAP back, predict prints the
 * classes at p >= 0.5 and a probability per class, a protocol cell scores
 * mAP, and --partial-labels on single-label data is an error. */
static void test_multilabel_cli(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cmd[8192], path[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/ml --train 60 --val 20 --test 30", tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method dualcoop --model " CT_SOURCE_DIR
             "/models/cliptune-small --data voc:%s/ml --shots 0 --partial-labels 0.5 --set "
             "epochs=2 --set out_scale=1 --out %s/ml_run --cache %s/ml_cache", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "test: mAP "), "%s", out_buf);
    const char *at = strstr(out_buf, "test: mAP ");
    double map = at ? atof(at + 10) : -1;
    snprintf(path, sizeof path, "%s/ml_run/config.json", tmp);
    char *txt = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &txt, &n));
    CHECK(txt && strstr(txt, "\"multi-label\"") && strstr(txt, "\"partial_labels\":\t0.5"));
    free(txt);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/ml_run --cache %s/ml_cache --json",
             tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    cJSON *j = cJSON_Parse(out_buf);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "map");
    CHECK_MSG(cJSON_IsNumber(m) && fabs(100 * m->valuedouble - map) < 0.006,
              "eval mAP vs train's %.2f%%: %s", map, out_buf);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " predict --run %s/ml_run %s/ml/JPEGImages/000081.jpg "
             "--top 10", tmp, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "000081.jpg\t"), "%s",
              out_buf);
    int cols = 0;
    for (const char *p = out_buf; *p && *p != '\n'; p++) cols += *p == '=';
    CHECK_MSG(cols == 10, "predict --top 10 printed %d probabilities: %s", cols, out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data voc:%s/ml --methods zeroshot --shots 0 --seeds 1 "
             "--out %s/ml_proto --cache %s/ml_cache", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/ml_proto/results.json", tmp);
    CHECK_OK(ct_read_file(path, &txt, &n));
    CHECK(txt && strstr(txt, "\"metric\":\t\"map\"") && strstr(txt, "\"map\":\t0."));
    free(txt);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method coop --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --partial-labels 0.5 --max-test 10 "
             "--out %s/ml_bad --cache %s/ml_cache", tmp, tmp);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "cliptune: error:") &&
                  strstr(out_buf, "multi-label"), "%s", out_buf);
}

/* Segmentation through the CLI: train prints mIoU and writes label maps,
 * eval --json gives it back, predict writes a label map per image into
 * --out and prints its path, a protocol cell scores mIoU, --force clears
 * the label maps, and the wrong kind of method is an error. */
static void test_segmentation_cli(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cmd[8192], path[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " make-scenes %s/sg --train 8 --val 2 --test 12", tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method maskclip --model " CT_SOURCE_DIR
             "/models/cliptune-small --data vocseg:%s/sg --out %s/sg_run --cache %s/sg_cache "
             "--set templates=dataset", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "test: mIoU "), "%s", out_buf);
    const char *at = strstr(out_buf, "test: mIoU ");
    double miou = at ? atof(at + 11) : -1;
    snprintf(path, sizeof path, "test -f %s/sg_run/overlays.png && test $(ls %s/sg_run/predictions"
             " | wc -l) -eq 12", tmp, tmp);
    CHECK_MSG(system(path) == 0, "no overlays.png or not 12 label maps in %s/sg_run", tmp);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " eval --run %s/sg_run --cache %s/sg_cache --json",
             tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    cJSON *j = cJSON_Parse(out_buf);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "miou");
    CHECK_MSG(cJSON_IsNumber(m) && fabs(100 * m->valuedouble - miou) < 0.006,
              "eval mIoU vs train's %.2f%%: %s", miou, out_buf);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " predict --run %s/sg_run --out %s/sg_labels "
             "%s/sg/JPEGImages/000011.jpg --top 2", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "sg_labels/000011.png\t"), "%s", out_buf);
    snprintf(path, sizeof path, "test -f %s/sg_labels/000011.png", tmp);
    CHECK_MSG(system(path) == 0, "predict wrote no %s/sg_labels/000011.png", tmp);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data vocseg:%s/sg --methods maskclip --shots 0 --seeds 1 "
             "--set templates=dataset --out %s/sg_proto --cache %s/sg_cache", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    char *txt = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/sg_proto/results.json", tmp);
    CHECK_OK(ct_read_file(path, &txt, &n));
    CHECK(txt && strstr(txt, "\"metric\":\t\"miou\"") && strstr(txt, "\"miou\":\t0."));
    free(txt);
    snprintf(path, sizeof path, "%s/sg_proto/results.md", tmp);
    CHECK_OK(ct_read_file(path, &txt, &n));
    CHECK(txt && strstr(txt, "mIoU (%)"));
    free(txt);
    /* --force starts over: the old label maps go too */
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method maskclip --model " CT_SOURCE_DIR
             "/models/cliptune-small --data vocseg:%s/sg --out %s/sg_run --cache %s/sg_cache "
             "--set templates=dataset --max-test 3 --force", tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "test $(ls %s/sg_run/predictions | wc -l) -eq 3", tmp);
    CHECK_MSG(system(path) == 0, "--force left old label maps in %s/sg_run/predictions", tmp);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " train --method zeroshot --model " CT_SOURCE_DIR
             "/models/cliptune-small --data vocseg:%s/sg --out %s/sg_bad --cache %s/sg_cache",
             tmp, tmp, tmp);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "cliptune: error:") &&
                  strstr(out_buf, "labels pixels"), "%s", out_buf);
}

/* protocol --taxonomy: every cell carries ProTeCt's metrics (results.json
 * leaf_acc / hca / mta, results.md HCA and MTA tables); a finished cell run
 * without the tree is refused. */
static void test_protocol_hierarchy(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cmd[8192], path[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --taxonomy " CT_SOURCE_DIR
             "/data/taxonomies/fashion-mnist.txt --methods zeroshot,protect --shots 2 "
             "--seeds 1,2 --max-test 100 --out %s/ph --cache %s/ph_cache --set "
             "protect.epochs=1 --set protect.aug_views=0 --set protect.n_ctx=4", tmp, tmp);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(path, sizeof path, "%s/ph/results.md", tmp);
    char *md = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &md, &n));
    CHECK_MSG(md && strstr(md, "## Hierarchical consistency accuracy") &&
                  strstr(md, "## Mean tree-cut accuracy") && strstr(md, "HCA (%), mean ± std") &&
                  strstr(md, "](hca_vs_shots.svg)") && strstr(md, "| protect |"),
              "%s", md ? md : "");
    free(md);
    snprintf(path, sizeof path, "%s/ph/results.json", tmp);
    cJSON *j = NULL;
    CHECK_OK(ct_read_file(path, &md, &n));
    if (md) j = cJSON_Parse(md);
    free(md);
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(j, "cells"), *c;
    int seen = 0;
    cJSON_ArrayForEach(c, cells) {
        const char *keys[4] = {"top1", "leaf_acc", "hca", "mta"};
        double v[4];
        for (int k = 0; k < 4; k++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, keys[k]);
            v[k] = cJSON_IsNumber(x) ? x->valuedouble : -1;
        }
        /* leaf accuracy is top-1; HCA never exceeds it */
        CHECK_MSG(v[0] > 0 && fabs(v[1] - v[0]) < 1e-9 && v[2] >= 0 && v[2] <= v[1] &&
                      v[3] > 0 && v[3] <= 1,
                  "top1 %g leaf %g hca %g mta %g", v[0], v[1], v[2], v[3]);
        seen++;
    }
    CHECK(seen == 3);
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(j, "summary");
    const cJSON *hca = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(sum, 1), "hca");
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(hca, "mean")) &&
          cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(hca, "std")));
    cJSON_Delete(j);
    /* read back on a re-run; the same cells without --taxonomy are refused */
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "skipped: done"), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --methods zeroshot --shots 2 "
             "--seeds 1 --max-test 100 --out %s/ph --cache %s/ph_cache", tmp, tmp);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "--taxonomy: a tree there, none now"), "%s",
              out_buf);
}

/* Multi-task runs in protocol (several --data: mean and per-task top-1
 * tables) and predict --task (a task's own classes). */
static void test_multitask_cli(void) {
    if (system("test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") != 0 ||
        system("test -f /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz") != 0) {
        ct_test_skip("Fashion-MNIST or digits not installed");
        return;
    }
    char cmd[8192], path[4200];
    const char *tmp = ct_test_tmpdir();
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --data digits --methods "
             "zeroshot,softcpt --shots 2 --seeds 1 --max-test 60 --out %s/pm --cache "
             "%s/pm_cache --set softcpt.epochs=2 --set softcpt.aug_views=0", tmp, tmp);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "on fashion-mnist+digits"), "%s", out_buf);
    snprintf(path, sizeof path, "%s/pm/results.md", tmp);
    char *md = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &md, &n));
    CHECK_MSG(md && strstr(md, "Mean top-1 accuracy over the tasks") &&
                  strstr(md, "## Task fashion-mnist") && strstr(md, "## Task digits") &&
                  strstr(md, "| softcpt |"),
              "%s", md ? md : "");
    free(md);
    snprintf(path, sizeof path, "%s/pm/results.json", tmp);
    CHECK_OK(ct_read_file(path, &md, &n));
    cJSON *j = md ? cJSON_Parse(md) : NULL;
    free(md);
    const cJSON *cell = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "cells"), 1);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(cell, "tasks");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(cell, "mean_top1");
    double t0 = cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ts, 0), "top1"));
    double t1 = cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ts, 1), "top1"));
    CHECK_MSG(cJSON_GetArraySize(ts) == 2 && cJSON_IsNumber(mean) &&
                  fabs(mean->valuedouble - (t0 + t1) / 2) < 1e-9,
              "mean %g tasks %g %g", cJSON_GetNumberValue(mean), t0, t1);
    cJSON_Delete(j);
    CHECK_MSG(run(cmd) == 0 && strstr(out_buf, "skipped: done"), "%s", out_buf);
    /* single-task learners are refused before any work */
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " protocol --model " CT_SOURCE_DIR
             "/models/cliptune-small --data fashion-mnist --data digits --methods coop "
             "--out %s/pm_bad", tmp);
    CHECK_MSG(run(cmd) == 2 && strstr(out_buf, "coop is not a multi-task method"), "%s",
              out_buf);
    /* predict: a task's own classes, by name or index; the same numbers */
    snprintf(path, sizeof path, "%s/pm_imgs", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", path);
    CHECK(system(cmd) == 0);
    for (int i = 0; i < 2; i++) {
        char f[4300];
        snprintf(f, sizeof f, "%s/x%d.pgm", path, i);
        FILE *o = fopen(f, "wb");
        CHECK(o != NULL);
        if (!o) return;
        fprintf(o, "P5\n28 28\n255\n");
        for (int k = 0; k < 28 * 28; k++) fputc((k * (7 + i) + i * 31) & 255, o);
        fclose(o);
    }
    char a[1 << 14];
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " predict --run %s/pm/softcpt/2shot/seed1 --task "
             "digits --top 10 --json %s", tmp, path);
    CHECK_MSG(run(cmd) == 0, "%s", out_buf);
    snprintf(a, sizeof a, "%s", out_buf);
    j = cJSON_Parse(a);
    CHECK_MSG(cJSON_GetArraySize(j) == 2, "%s", a);
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(it, "top"), *e;
        double sum = 0;
        int n_top = 0;
        cJSON_ArrayForEach(e, top) {
            const char *l = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "label"));
            CHECK_MSG(l && strlen(l) == 1 && l[0] >= '0' && l[0] <= '9', "%s", l ? l : "");
            sum += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "prob"));
            n_top++;
        }
        CHECK_MSG(n_top == 10 && fabs(sum - 1) < 1e-4, "%d classes, sum %g", n_top, sum);
    }
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " predict --run %s/pm/softcpt/2shot/seed1 --task 1 "
             "--top 10 --json %s", tmp, path);
    CHECK_MSG(run(cmd) == 0 && !strcmp(out_buf, a), "%s", out_buf);
    snprintf(cmd, sizeof cmd, CT_CLI_PATH " predict --run %s/pm/softcpt/2shot/seed1 %s", tmp,
             path);
    CHECK_MSG(run(cmd) == 1 && strstr(out_buf, "is a multi-task run") &&
                  strstr(out_buf, "fashion-mnist, digits"),
              "%s", out_buf);
}

int main(void) {
    RUN(test_help_and_errors);
    RUN(test_make_scenes);
    RUN(test_multilabel_cli);
    RUN(test_segmentation_cli);
    RUN(test_tokenize);
    RUN(test_embed_and_classify);
    RUN(test_protocol_base_to_novel);
    RUN(test_export_clip_lora);
    RUN(test_protocol_hierarchy);
    RUN(test_multitask_cli);
    return ct_test_summary();
}
