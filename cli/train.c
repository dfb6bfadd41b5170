/* train.c — `krongrad train`: fine-tune a model with an adapter on a multiple-choice task (or,
 * with --tasks, on several in turn: continual fine-tuning with its accuracy matrix and
 * forgetting), with a progress line on a terminal, metrics as JSON lines, atomic checkpoints,
 * --resume, the PEFT adapter in --out and a summary table. Launched by `mpirun -np N`, the N
 * processes train one adapter data-parallel (docs/distributed.md); rank 0 prints and writes.
 */
#include "finetune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct train_opts {
    finetune_opts ft;
} train_opts;

static const kg_flag flags[] = {
    FINETUNE_FLAGS(train_opts),
    {"frozen", KG_FLAG_STRING, offsetof(train_opts, ft.frozen), "DTYPE", FROZEN_HELP},
    {"tasks", KG_FLAG_STRING, offsetof(train_opts, ft.tasks), "LIST",
     "continual: these tasks in turn, comma-separated (one --data / --eval-data each, in order)"},
    {"out", KG_FLAG_STRING, offsetof(train_opts, ft.out), "DIR",
     "metrics.jsonl, checkpoint.safetensors and the adapter go here (required)"},
    {"resume", KG_FLAG_BOOL, offsetof(train_opts, ft.resume), NULL,
     "continue from DIR/checkpoint.safetensors, bit for bit"},
    {"checkpoint-every", KG_FLAG_INT, offsetof(train_opts, ft.checkpoint_every), "N",
     "write the checkpoint every N steps (default 50; always at the end)"},
    {"stop-at", KG_FLAG_INT, offsetof(train_opts, ft.stop_at), "N",
     "stop after step N, as if interrupted (--resume continues)"},
};

static void defaults(void *p)
{
    train_opts *o = p;
    finetune_defaults(&o->ft);
    o->ft.checkpoint_every = 50;
}

/* An error of this process; in a job of several ranks the message names the rank. */
static int fail(kg_ctx *ctx)
{
    if (kg_dist_size() > 1)
        fprintf(stderr, "krongrad train: rank %d of %d: %s\n", kg_dist_rank(), kg_dist_size(),
                kg_error(ctx));
    else
        kg_cli_fail("train", ctx);
    return 1;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad train: %s\n(see krongrad train --help)\n", msg);
    return 2;
}

static void print_adapter(const kg_adapter_config *a, const char *targets)
{
    printf("  %-18s %s", "adapter", kg_adapter_kind_name(a->kind));
    if (a->kind == KG_ADAPTER_KRONLORA)
        printf(" r%lld A %lldx%lld", (long long)a->rank, (long long)a->kron_a2,
               (long long)a->kron_a1);
    else if (a->kind != KG_ADAPTER_FULL)
        printf(" r%lld", (long long)a->rank);
    if (a->kind != KG_ADAPTER_FULL)
        printf(", alpha %g", a->alpha);
    printf(", targets %s\n", targets ? targets : "all-linear");
}

static void print_summary(const train_opts *o, const kg_train_config *cfg, const kg_run_result *r,
                          const kg_task *eval)
{
    char b[32];
    printf("\n");
    print_adapter(&cfg->adapter, o->ft.targets);
    printf("  %-18s %s\n", "trainable params", finetune_count(r->trainable, b, sizeof b));
    printf("  %-18s %lld this run (of %lld; batch %lld x %lld)\n", "steps", (long long)r->steps,
           (long long)cfg->steps, (long long)cfg->batch, (long long)cfg->accumulate);
    if (r->steps > 0) {
        printf("  %-18s %.4f -> %.4f (first and last 10%% of steps)\n", "loss", r->first_loss,
               r->last_loss);
        printf("  %-18s %.1f MiB\n", "peak memory", (double)r->peak_bytes / (1024.0 * 1024.0));
        printf("  %-18s %.3f s (%.0f tokens/s)\n", "mean step time", r->mean_step_seconds,
               r->tokens_per_second);
    }
    if (r->evaluated) {
        printf("  %-18s %.4f", "accuracy", r->eval.acc);
        if (!isnan(r->eval.acc_norm))
            printf(" (acc_norm %.4f)", r->eval.acc_norm);
        printf(" on %lld items of %s\n", (long long)r->eval.labeled,
               eval->path ? eval->path : eval->name);
    } else if (!eval) {
        printf("  %-18s not measured (no --eval-data)\n", "accuracy");
    }
    printf("  %-18s %s\n", "saved in", o->ft.out);
}

static void print_matrix(char **names, int n, const kg_continual_result *r)
{
    printf("\naccuracy after each stage (rows: trained so far; columns: task scored)\n");
    printf("  %-16s", "");
    for (int j = 0; j < n; j++)
        printf(" %14s", names[j]);
    printf("\n  %-16s", "before");
    for (int j = 0; j < n; j++)
        printf(" %14.4f", r->before[j]);
    for (int i = 0; i < n; i++) {
        printf("\n  %-16s", names[i]);
        for (int j = 0; j < n; j++)
            printf(" %14.4f", r->acc[i * n + j]);
    }
    printf("\n  %-16s", "forgetting");
    for (int j = 0; j < n; j++)
        if (j + 1 < n)
            printf(" %14.4f", r->task_forgetting[j]);
        else
            printf(" %14s", "-");
    printf("\n  mean forgetting %.4f (best accuracy after an earlier stage minus the final one)\n",
           r->forgetting);
}

/* Split "a,b,c" into at most cap names (malloc'd copies); -1 when there are more. */
static int split_names(const char *list, char **out, int cap)
{
    int n = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            if (n == cap)
                return -1;
            out[n++] = strndup(p, len);
        }
        p += len + (e != NULL);
    }
    return n;
}

static int run_continual(const train_opts *o, kg_ctx *ctx, kg_train_config *cfg)
{
    char *names[16] = {0};
    kg_task *train[16] = {0}, *eval[16] = {0};
    int n = split_names(o->ft.tasks, names, 16), rc = 1;
    if (n < 1) {
        for (int i = 0; i < 16; i++)
            free(names[i]);
        return usage_error("--tasks takes 1 to 16 comma-separated task names");
    }
    bool synthetic = true;
    for (int i = 0; i < n; i++)
        synthetic = synthetic && strncmp(names[i], "synthetic-", 10) == 0;
    if ((!synthetic && o->ft.data.n != n) || (o->ft.data.n && o->ft.data.n != n) ||
        (!synthetic && o->ft.eval_data.n != n) || (o->ft.eval_data.n && o->ft.eval_data.n != n)) {
        for (int i = 0; i < n; i++)
            free(names[i]);
        return usage_error("--tasks needs one --data FILE and one --eval-data FILE per task, "
                           "in the same order");
    }
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        train[i] = finetune_task(ctx, names[i], o->ft.data.n ? o->ft.data.item[i] : NULL,
                                 KG_SPLIT_TRAIN);
        eval[i] = finetune_task(ctx, names[i], o->ft.eval_data.n ? o->ft.eval_data.item[i] : NULL,
                                KG_SPLIT_TEST);
        ok = train[i] && eval[i];
    }
    kg_tokenizer *tok = ok ? kg_tokenizer_load(ctx, o->ft.model) : NULL;
    kg_model *m = tok ? finetune_model(ctx, o->ft.model, o->ft.frozen, &cfg->adapter, cfg->seed)
                      : NULL;
    if (m) {
        kg_run_options ro = {.out_dir = o->ft.out, .resume = o->ft.resume,
                             .checkpoint_every = o->ft.checkpoint_every,
                             .eval_limit = o->ft.eval_limit, .progress = finetune_progress,
                             .base_model = o->ft.model};
        kg_continual_result r;
        ok = kg_continual_run(m, tok, (const kg_task *const *)train,
                              (const kg_task *const *)eval, n, cfg, &ro, &r);
        finetune_progress_end();
        if (ok && kg_dist_rank() == 0) {
            char b[32];
            print_adapter(&cfg->adapter, o->ft.targets);
            printf("  %-18s %s\n", "trainable params",
                   finetune_count(kg_model_trainable_count(m), b, sizeof b));
            print_matrix(names, n, &r);
        }
        rc = ok ? 0 : 1;
        kg_continual_result_free(&r);
    }
    if (rc)
        fail(ctx);
    kg_model_free(m);
    kg_tokenizer_free(tok);
    for (int i = 0; i < n; i++) {
        kg_task_free(train[i]);
        kg_task_free(eval[i]);
        free(names[i]);
    }
    return rc;
}

static int run_train(void *p)
{
    const train_opts *o = p;
    if (!o->ft.model || !o->ft.out)
        return usage_error("--model PATH and --out DIR are required");
    if (!o->ft.task == !o->ft.tasks)
        return usage_error("give exactly one of --task NAME and --tasks LIST");
    if (o->ft.task && (o->ft.data.n > 1 || o->ft.eval_data.n > 1))
        return usage_error("one --task takes one --data and one --eval-data (several: --tasks)");
    kg_train_config cfg;
    if (!finetune_config("train", &o->ft, &cfg))
        return 2;
    /* Join the MPI job (when mpirun launched this process), then each rank's device. */
    if (!kg_dist_begin()) {
        fprintf(stderr, "krongrad train: MPI_Init failed\n");
        return 1;
    }
    if (!o->ft.backend || strcmp(o->ft.backend, "cpu") != 0)
        kg_dist_pick_device();
    const char *why = NULL;
    kg_ctx *ctx = kg_cli_context(o->ft.backend, &why);
    if (!ctx) {
        kg_dist_end(false);
        return 1;
    }
    if (kg_dist_size() > 1)
        fprintf(stderr, "krongrad train: rank %d of %d: backend %s (%s)\n", kg_dist_rank(),
                kg_dist_size(), why, kg_device_name(ctx));
    else
        fprintf(stderr, "krongrad train: backend %s\n", why);
    int rc = 1;
    if (!finetune_validate(ctx, o->ft.model, &cfg.adapter)) {
        rc = fail(ctx);
    } else if (o->ft.tasks) {
        rc = run_continual(o, ctx, &cfg);
    } else {
        kg_task *train = finetune_task(ctx, o->ft.task, o->ft.data.n ? o->ft.data.item[0] : NULL,
                                       KG_SPLIT_TRAIN);
        kg_task *eval = NULL;
        if (train && (o->ft.eval_data.n || strncmp(o->ft.task, "synthetic-", 10) == 0))
            eval = finetune_task(ctx, o->ft.task,
                                 o->ft.eval_data.n ? o->ft.eval_data.item[0] : NULL,
                                 KG_SPLIT_TEST);
        kg_tokenizer *tok = train && !kg_ctx_status(ctx) ? kg_tokenizer_load(ctx, o->ft.model)
                                                         : NULL;
        kg_model *m = tok ? finetune_model(ctx, o->ft.model, o->ft.frozen, &cfg.adapter, cfg.seed)
                          : NULL;
        kg_run_options ro = {.out_dir = o->ft.out, .resume = o->ft.resume,
                             .checkpoint_every = o->ft.checkpoint_every,
                             .stop_at = o->ft.stop_at, .eval_limit = o->ft.eval_limit,
                             .eval_every = o->ft.eval_every, .progress = finetune_progress,
                             .base_model = o->ft.model};
        kg_run_result r = {0};
        if (m && kg_train_run(m, tok, train, eval, &cfg, &ro, &r)) {
            finetune_progress_end();
            if (kg_dist_rank() == 0)
                print_summary(o, &cfg, &r, eval);
            rc = 0;
        } else {
            finetune_progress_end();
            rc = fail(ctx);
        }
        free(r.losses);
        free(r.curve);
        kg_model_free(m);
        kg_tokenizer_free(tok);
        kg_task_free(train);
        kg_task_free(eval);
    }
    kg_ctx_free(ctx);
    kg_dist_end(rc == 0);
    return rc;
}

const kg_command kg_cmd_train = {
    .name = "train",
    .summary = "Fine-tune a model with an adapter on a multiple-choice task (or several in turn).",
    .usage = "--model PATH --task NAME [--data FILE] [--eval-data FILE] --out DIR [options]\n"
             "       krongrad train --model PATH --tasks A,B --data A.jsonl --data B.jsonl "
             "--eval-data ... --out DIR",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(train_opts),
    .defaults = defaults,
    .run = run_train,
};
