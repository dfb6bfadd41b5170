/* main.c — the krongrad command: a table of commands, each in its own file under cli/ with its
 * own table of flags (cli.h). Exit status: 0 success, 1 the work failed, 2 the command line was
 * wrong.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const kg_command *const commands[] = {
    &kg_cmd_info,
    &kg_cmd_tokenize,
    &kg_cmd_generate,
    &kg_cmd_embed,
    &kg_cmd_eval,
    &kg_cmd_quantize,
    &kg_cmd_export,
    &kg_cmd_train,
    &kg_cmd_compare,
    &kg_cmd_demo,
    &kg_cmd_bench,
    &kg_cmd_bench_generate, /* a two-word name: `krongrad bench generate` */
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *out)
{
    fprintf(out, "usage: krongrad [--help] [--version] <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-16s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n`krongrad <command> --help` shows a command's options.\n"
                 "\nenvironment:\n"
                 "  KG_THREADS   CPU threads (default: all cores)\n"
                 "  KG_BLAS      'none' to use the portable GEMM instead of OpenBLAS / BLIS\n"
                 "  KG_DEVICE    the Vulkan device, by index or name\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("krongrad %s\n", KRONGRAD_VERSION);
        return 0;
    }
    /* A command named by two words ("bench generate") before the one-word one ("bench"). */
    const kg_command *cmd = NULL;
    for (int i = 0; i < N_COMMANDS && !cmd && argc > 2; i++) {
        const char *n = commands[i]->name, *space = strchr(n, ' ');
        if (space && strncmp(n, name, (size_t)(space - n)) == 0 && !name[space - n] &&
            strcmp(space + 1, argv[2]) == 0)
            cmd = commands[i];
    }
    if (cmd)
        argc--, argv++; /* the second word is the command's argv[0] */
    for (int i = 0; i < N_COMMANDS && !cmd; i++)
        if (strcmp(name, commands[i]->name) == 0)
            cmd = commands[i];
    if (cmd) {
        void *opts = calloc(1, cmd->opts_size);
        if (!opts) {
            fprintf(stderr, "krongrad: out of memory\n");
            return 1;
        }
        int rc = kg_cli_parse(cmd, argc - 1, argv + 1, opts);
        if (rc == 0)
            rc = cmd->run(opts);
        else if (rc < 0)
            rc = 0; /* --help */
        free(opts);
        return rc;
    }
    fprintf(stderr, "krongrad: unknown %s '%s'\n", name[0] == '-' ? "option" : "command", name);
    usage(stderr);
    return 2;
}
