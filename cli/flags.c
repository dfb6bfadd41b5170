/* flags.c — the one command-line parser: each command's flag table gives the names, kinds and
 * the fields they set, so parsing and --help cannot disagree.
 */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void kg_cli_help(const kg_command *cmd, FILE *out)
{
    fprintf(out, "usage: krongrad %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->n_flags)
        fprintf(out, "\noptions:\n");
    for (int i = 0; i < cmd->n_flags; i++) {
        const kg_flag *f = &cmd->flags[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        fprintf(out, "  %-24s %s\n", left, f->help);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

static int bad(const kg_command *cmd, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "krongrad %s: ", cmd->name);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see krongrad %s --help)\n", cmd->name);
    return 2;
}

int kg_cli_parse(const kg_command *cmd, int argc, char **argv, void *opts)
{
    memset(opts, 0, cmd->opts_size);
    if (cmd->defaults)
        cmd->defaults(opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            kg_cli_help(cmd, stdout);
            return -1;
        }
        if (cmd->positional && a[0] != '-' && !*(const char **)opts) {
            *(const char **)opts = a;
            continue;
        }
        const kg_flag *f = NULL;
        for (int k = 0; a[0] == '-' && a[1] == '-' && k < cmd->n_flags; k++)
            if (strcmp(a + 2, cmd->flags[k].name) == 0)
                f = &cmd->flags[k];
        if (!f)
            return bad(cmd, "unknown %s '%s'", a[0] == '-' ? "option" : "argument", a);
        char *field = (char *)opts + f->offset;
        if (f->kind == KG_FLAG_BOOL) {
            *(bool *)field = true;
            continue;
        }
        if (i + 1 >= argc)
            return bad(cmd, "%s needs a value (%s)", a, f->arg ? f->arg : "value");
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        switch (f->kind) {
        case KG_FLAG_INT: {
            long long x = strtoll(v, &end, 10);
            if (errno || end == v || *end)
                return bad(cmd, "%s takes an integer; got '%s'", a, v);
            *(int64_t *)field = x;
            break;
        }
        case KG_FLAG_FLOAT: {
            double x = strtod(v, &end);
            if (errno || end == v || *end)
                return bad(cmd, "%s takes a number; got '%s'", a, v);
            *(double *)field = x;
            break;
        }
        case KG_FLAG_STRING:
            *(const char **)field = v;
            break;
        case KG_FLAG_LIST: {
            kg_cli_list *l = (kg_cli_list *)field;
            if (l->n == (int)(sizeof l->item / sizeof l->item[0]))
                return bad(cmd, "%s given too many times (at most 64)%s", a, "");
            l->item[l->n++] = v;
            break;
        }
        case KG_FLAG_BOOL:
            break;
        }
    }
    return 0;
}

int kg_cli_fail(const char *cmd, kg_ctx *ctx)
{
    fprintf(stderr, "krongrad %s: %s\n", cmd, kg_error(ctx));
    return 1;
}

kg_ctx *kg_cli_context(const char *backend, const char **why)
{
    const char *reason = NULL;
    kg_ctx *ctx = NULL;
    if (!backend) { /* the default: a real GPU when Vulkan finds one, else the CPU backend */
        ctx = kg_ctx_new(KG_BACKEND_VULKAN);
        if (ctx && !kg_ctx_status(ctx) && kg_device_is_gpu(ctx)) {
            reason = "vulkan: a GPU was found (--backend cpu overrides)";
        } else {
            kg_ctx_free(ctx);
            ctx = kg_ctx_new(KG_BACKEND_CPU);
            reason = "cpu: Vulkan found no GPU (a CPU Vulkan device such as lavapipe is slower "
                     "than the CPU backend; --backend vulkan uses it anyway)";
        }
    } else if (strcmp(backend, "cpu") == 0) {
        ctx = kg_ctx_new(KG_BACKEND_CPU);
        reason = "cpu: asked for with --backend";
    } else if (strcmp(backend, "vulkan") == 0) {
        ctx = kg_ctx_new(KG_BACKEND_VULKAN);
        reason = "vulkan: asked for with --backend";
    } else {
        fprintf(stderr, "krongrad: --backend '%s'; expected cpu or vulkan\n", backend);
        return NULL;
    }
    if (!ctx || kg_ctx_status(ctx)) {
        fprintf(stderr, "krongrad: the %s backend cannot start: %s\n", backend ? backend : "cpu",
                kg_error(ctx));
        kg_ctx_free(ctx);
        return NULL;
    }
    if (why)
        *why = reason;
    return ctx;
}
