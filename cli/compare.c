/* compare.c — `krongrad compare`: the trade-off report. Adapter configurations × seeds on one
 * model and task, each from a fresh model; per configuration trainable parameters, peak memory,
 * step time and accuracy as mean ± std (also with the trained adapter in int8 / int4 when
 * --adapter-bits asks), with a LoRA matched to the Kron-LoRA's parameter count; the table as
 * JSON and a picture (SVG) of accuracy against parameters and the loss curves.
 */
#include "finetune.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct compare_opts {
    finetune_opts ft;
    kg_cli_list config;
    const char *adapter_bits;
    int64_t seeds;
    double target_acc;
    bool no_matched;
} compare_opts;

static const kg_flag flags[] = {
    FINETUNE_FLAGS(compare_opts),
    {"config", KG_FLAG_LIST, offsetof(compare_opts, config), "KIND[:rR][:AxB][:alphaX]",
     "a configuration (repeatable), e.g. kronlora:r8:2x4, lora:r16, full; alpha defaults to "
     "R·(--alpha/--rank). Default: --adapter's and lora with --rank"},
    {"adapter-bits", KG_FLAG_STRING, offsetof(compare_opts, adapter_bits), "8,4",
     "also score each trained adapter with its factors in int8 and/or int4 (per output row): "
     "columns beside the f32 accuracy"},
    {"seeds", KG_FLAG_INT, offsetof(compare_opts, seeds), "N", "seeds per configuration (default 3)"},
    {"target-acc", KG_FLAG_FLOAT, offsetof(compare_opts, target_acc), "ACC",
     "with --eval-every: the accuracy of the steps-to-accuracy column (default: halfway from the "
     "accuracy before training to the best final one)"},
    {"no-matched", KG_FLAG_BOOL, offsetof(compare_opts, no_matched), NULL,
     "leave out the LoRA row matched to the Kron-LoRA's parameter count"},
    {"out", KG_FLAG_STRING, offsetof(compare_opts, ft.out), "DIR",
     "compare.json and compare.svg go here (default: the current directory)"},
};

static void defaults(void *p)
{
    compare_opts *o = p;
    finetune_defaults(&o->ft);
    o->seeds = 3;
}

static int usage_error(const char *msg, const char *what)
{
    fprintf(stderr, "krongrad compare: %s%s\n(see krongrad compare --help)\n", msg, what);
    return 2;
}

/* "kronlora:r8:2x4:alpha16" over base (the flags' adapter); false on a malformed item. */
static bool parse_config(const char *text, const kg_adapter_config *base, kg_adapter_config *a)
{
    char buf[128];
    if (strlen(text) >= sizeof buf)
        return false;
    strcpy(buf, text);
    kg_ctx *tmp = kg_ctx_new(KG_BACKEND_CPU);
    char *save = NULL, *tok = strtok_r(buf, ":", &save);
    *a = *base;
    bool ok = tmp && tok && kg_adapter_kind_parse(tmp, tok, &a->kind) &&
              a->kind != KG_ADAPTER_NONE;
    bool alpha_given = false;
    while (ok && (tok = strtok_r(NULL, ":", &save))) {
        char *end;
        if (tok[0] == 'r' && tok[1] >= '0' && tok[1] <= '9') {
            a->rank = strtoll(tok + 1, &end, 10);
            ok = *end == 0 && a->rank > 0;
        } else if (strncmp(tok, "alpha", 5) == 0) {
            a->alpha = strtod(tok + 5, &end);
            ok = end != tok + 5 && *end == 0 && a->alpha > 0;
            alpha_given = true;
        } else {
            ok = kg_adapter_parse_kron_a(tmp, tok, a);
        }
    }
    if (ok && !alpha_given) /* keep the flags' scale alpha / R */
        a->alpha = base->alpha / (double)base->rank * (double)a->rank;
    kg_ctx_free(tmp);
    return ok;
}

/* "8,4" → bits (at most KG_COMPARE_MAX_BITS of 8 or 4, no repeats); false when malformed. */
static bool parse_bits(const char *text, int *bits, int *n)
{
    *n = 0;
    for (const char *c = text; c && *c;) {
        if ((*c != '8' && *c != '4') || *n == KG_COMPARE_MAX_BITS || (c[1] && c[1] != ','))
            return false;
        bits[(*n)++] = *c - '0';
        if (*n == 2 && bits[0] == bits[1])
            return false;
        c += c[1] ? 2 : 1;
    }
    return !text || *n > 0;
}

static void print_table(const kg_compare_result *r, const char *model, int64_t steps)
{
    char b[32];
    bool norm = r->n_rows > 0 && !isnan(r->rows[0].acc_norm_mean);
    printf("\n%s, %lld steps; accuracy before training %.4f\n", model, (long long)steps,
           r->base_acc);
    if (r->eval_every)
        printf("steps to accuracy %.4f (mean over seeds; scored every %lld steps)\n",
               r->target_acc, (long long)r->eval_every);
    printf("  %-24s %12s %8s %10s %18s %18s", "configuration", "params", "lr", "peak MiB",
           "step s (±std)", "accuracy (±std)");
    if (norm)
        printf(" %18s", "acc_norm (±std)");
    if (r->eval_every)
        printf(" %9s", "steps to");
    for (int k = 0; k < r->n_bits; k++) {
        char head[32];
        snprintf(head, sizeof head, "int%d acc (±std)", r->bits[k]);
        printf(" %18s", head);
    }
    printf("\n");
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        char step[32], acc[32];
        snprintf(step, sizeof step, "%.3f ± %.3f", w->step_seconds_mean, w->step_seconds_std);
        snprintf(acc, sizeof acc, "%.4f ± %.4f", w->acc_mean, w->acc_std);
        printf("  %-24s %12s %8.2g %10.1f %18s %18s", w->label,
               finetune_count(w->trainable, b, sizeof b), w->lr, w->peak_mb_mean, step, acc);
        if (norm) {
            snprintf(acc, sizeof acc, "%.4f ± %.4f", w->acc_norm_mean, w->acc_norm_std);
            printf(" %18s", acc);
        }
        if (r->eval_every && w->steps_to_target >= 0)
            printf(" %9lld", (long long)w->steps_to_target);
        else if (r->eval_every)
            printf(" %9s", "not seen");
        for (int k = 0; k < r->n_bits; k++) {
            snprintf(acc, sizeof acc, "%.4f ± %.4f", w->acc_q_mean[k], w->acc_q_std[k]);
            printf(" %18s", acc);
        }
        printf("\n");
    }
}

static void progress(void *user, const char *label, uint64_t seed, const kg_step_stats *s,
                     int64_t total)
{
    (void)user;
    char head[128];
    snprintf(head, sizeof head, "%s seed %llu", label, (unsigned long long)seed);
    finetune_progress(head, s, total);
}

static int run_compare(void *p)
{
    const compare_opts *o = p;
    if (!o->ft.model || !o->ft.task)
        return usage_error("--model PATH and --task NAME are required", "");
    if (o->seeds < 1 || o->seeds > 100)
        return usage_error("--seeds takes 1 to 100", "");
    if (o->ft.data.n > 1 || o->ft.eval_data.n > 1)
        return usage_error("one --data and one --eval-data", "");
    if (!o->ft.eval_data.n && strncmp(o->ft.task, "synthetic-", 10) != 0)
        return usage_error("--eval-data FILE is required (accuracy is what is compared)", "");
    int bits[KG_COMPARE_MAX_BITS], n_bits;
    if (!parse_bits(o->adapter_bits, bits, &n_bits))
        return usage_error("--adapter-bits takes 8, 4, 8,4 or 4,8; got ", o->adapter_bits);
    kg_train_config cfg;
    if (!finetune_config("compare", &o->ft, &cfg))
        return 2;
    if (o->ft.lr < 0)
        cfg.lr = 0; /* no --lr: each configuration trains at its adapter's default rate */
    kg_adapter_config configs[16];
    int n = 0;
    for (int i = 0; i < o->config.n; i++) {
        if (n == 16)
            return usage_error("at most 16 --config", "");
        if (!parse_config(o->config.item[i], &cfg.adapter, &configs[n++]))
            return usage_error("--config takes KIND[:rR][:AxB][:alphaX]; got ", o->config.item[i]);
    }
    if (n == 0) {
        configs[n++] = cfg.adapter;
        if (cfg.adapter.kind != KG_ADAPTER_LORA) {
            configs[n] = cfg.adapter;
            configs[n++].kind = KG_ADAPTER_LORA;
        }
    }
    const char *why = NULL;
    kg_ctx *ctx = kg_cli_context(o->ft.backend, &why);
    if (!ctx)
        return 1;
    fprintf(stderr, "krongrad compare: backend %s\n", why);
    kg_task *train = finetune_task(ctx, o->ft.task, o->ft.data.n ? o->ft.data.item[0] : NULL,
                                   KG_SPLIT_TRAIN);
    kg_task *eval = train ? finetune_task(ctx, o->ft.task,
                                          o->ft.eval_data.n ? o->ft.eval_data.item[0] : NULL,
                                          KG_SPLIT_TEST)
                          : NULL;
    bool ok = eval != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = finetune_validate(ctx, o->ft.model, &configs[i]);
    kg_compare_result r = {0};
    ok = ok && kg_compare_run(ctx, o->ft.model, train, eval, &cfg, configs, n, (int)o->seeds,
                              !o->no_matched, o->ft.eval_limit, bits, n_bits,
                              &(kg_compare_curves){o->ft.eval_every, o->target_acc}, progress,
                              NULL, &r);
    finetune_progress_end();
    char json[4096], svg[4096];
    const char *dir = o->ft.out ? o->ft.out : ".";
    snprintf(json, sizeof json, "%s/compare.json", dir);
    snprintf(svg, sizeof svg, "%s/compare.svg", dir);
    /* The directory itself (its parent must exist). */
    if (ok && o->ft.out && mkdir(o->ft.out, 0755) != 0 && errno != EEXIST)
        ok = kg_set_error(ctx, KG_ERR_ARG, "cannot make %s: %s", o->ft.out, strerror(errno));
    ok = ok && kg_compare_write_json(ctx, &r, json) && kg_compare_write_svg(ctx, &r, svg);
    int rc = 0;
    if (ok) {
        print_table(&r, o->ft.model, cfg.steps);
        printf("\nwritten: %s, %s\n", json, svg);
    } else {
        rc = kg_cli_fail("compare", ctx);
    }
    kg_compare_result_free(&r);
    kg_task_free(train);
    kg_task_free(eval);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_compare = {
    .name = "compare",
    .summary = "Adapter configurations x seeds on one model and task: params, memory, time, "
               "accuracy.",
    .usage = "--model PATH --task NAME [--data FILE] [--eval-data FILE] [--config C ...] "
             "[options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(compare_opts),
    .defaults = defaults,
    .run = run_compare,
};
