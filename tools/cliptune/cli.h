/* Shared by the subcommands: error reporting and small argument helpers. */
#ifndef CT_CLI_H
#define CT_CLI_H

#include <stdbool.h>

#include "cliptune.h"

/* Prints "cliptune: error: <fmt...>" and returns 1 (the exit status). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error (unknown option, missing or malformed value): printed as
 * cli_error; the command then exits with status 2 instead of 1. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern bool cli_usage_failed;
/* cli_error with the library's last message appended. */
int cli_lib_error(const char *what);
/* True if argv[*i] is `name` (then *val is the next argument; error if
 * missing: *val stays NULL and *bad is set) or `name=VALUE`. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val, bool *bad);
bool cli_help_requested(int argc, char **argv);
/* Strict numbers for option opt: the whole string, within [lo, hi];
 * otherwise print the error naming opt and return false. */
bool cli_parse_ll(const char *v, const char *opt, long long lo, long long hi, long long *out);
bool cli_parse_double(const char *v, const char *opt, double lo, double hi, double *out);

/* JSON files the CLI itself writes and reads back (results.json): parsed
 * with cJSON; NULL (error printed, naming the file) on failure. Saving is
 * atomic. */
struct cJSON;
struct cJSON *cli_json_load(const char *path, const char *cmd);
bool cli_json_save(const char *path, const struct cJSON *j, const char *cmd);

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bpe_train(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_zeroshot(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_methods(int argc, char **argv);
int cmd_protocol(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_make_scenes(int argc, char **argv);

#endif
