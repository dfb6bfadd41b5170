/* cli.h — what the krongrad command's files share: a command is a function plus a table of
 * flags, and the one parser below turns argv into the fields the rows name, so `--help` and
 * parsing come from the same rows.
 *
 * Exit status of every command: 0 success, 1 the work failed (the message names the file, the
 * field and what was expected), 2 the command line was wrong.
 */
#ifndef KG_CLI_H
#define KG_CLI_H

#include "krongrad.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum kg_flag_kind {
    KG_FLAG_BOOL,   /* --name: sets a bool to true */
    KG_FLAG_INT,    /* --name N: an int64_t */
    KG_FLAG_FLOAT,  /* --name X: a double */
    KG_FLAG_STRING, /* --name TEXT: a const char * into argv */
    KG_FLAG_LIST,   /* --name TEXT, repeatable: appended to a kg_cli_list */
} kg_flag_kind;

typedef struct kg_cli_list {
    const char *item[64];
    int n;
} kg_cli_list;

typedef struct kg_flag {
    const char *name; /* without the leading "--" */
    kg_flag_kind kind;
    size_t offset;    /* of the field in the command's options struct (offsetof) */
    const char *arg;  /* the value's name in --help ("N", "PATH"), NULL for bool flags */
    const char *help; /* one line */
} kg_flag;

typedef struct kg_command {
    const char *name;
    const char *summary; /* one line, for `krongrad --help` */
    const char *usage;   /* the positional part, e.g. "--model PATH [options]" */
    const kg_flag *flags;
    int n_flags;
    size_t opts_size;                      /* sizeof the options struct */
    void (*defaults)(void *opts);          /* fill defaults before parsing; may be NULL */
    bool positional; /* one argument without "--" is allowed (`bench train`): it sets the
                        const char * that opens the options struct */
    int (*run)(void *opts);                /* the work: 0, or 1 when it failed */
} kg_command;

/* Parse argv (argv[0] is the command name) into opts by the command's flag table. Returns 0 when
 * parsed, 2 after printing what was wrong, or -1 after printing --help (exit 0). */
int kg_cli_parse(const kg_command *cmd, int argc, char **argv, void *opts);
void kg_cli_help(const kg_command *cmd, FILE *out);

/* The context every command computes in: `--backend cpu|vulkan`, or NULL for the default (a real
 * GPU when Vulkan finds one, else the CPU backend; lavapipe only when asked for). On failure
 * prints why and returns NULL. `why`, when not NULL, receives one line saying what was chosen. */
kg_ctx *kg_cli_context(const char *backend, const char **why);

/* Print the context's error as "krongrad CMD: message" and return 1 (for `return kg_cli_fail`). */
int kg_cli_fail(const char *cmd, kg_ctx *ctx);

/* The command table (main.c) and the commands, one file each under cli/. */
extern const kg_command kg_cmd_info;
extern const kg_command kg_cmd_tokenize;
extern const kg_command kg_cmd_generate;
extern const kg_command kg_cmd_embed;
extern const kg_command kg_cmd_eval;
extern const kg_command kg_cmd_train;
extern const kg_command kg_cmd_compare;
extern const kg_command kg_cmd_demo;
extern const kg_command kg_cmd_bench;
extern const kg_command kg_cmd_bench_generate;
extern const kg_command kg_cmd_quantize;
extern const kg_command kg_cmd_export;

#endif
