/* train.c — `krongrad train`: fine-tune a model with an adapter on a multiple-choice task (or,
 * with --tasks, on several in turn: continual fine-tuning with its accuracy matrix and
 * forgetting; or, with --task sft, on your own text / prompt-completion / chat rows), with a progress line on a terminal, metrics as JSON lines, atomic checkpoints,
 * --resume, the PEFT adapter in --out and a summary table. Launched by `mpirun -np N`, the N
 * processes train one adapter data-parallel (docs/distributed.md); rank 0 prints and writes.
 */
#include "finetune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct train_opts {
    finetune_opts ft;
    const char *loss_on; /* --task sft: "all", or NULL for the completion / assistant turns */
    bool packing;
} train_opts;

static const kg_flag flags[] = {
    FINETUNE_FLAGS(train_opts),
    {"frozen", KG_FLAG_STRING, offsetof(train_opts, ft.frozen), "DTYPE", FROZEN_HELP},
    {"tasks", KG_FLAG_STRING, offsetof(train_opts, ft.tasks), "LIST",
     "continual: these tasks in turn, comma-separated (one --data / --eval-data each, in order)"},
    {"out", KG_FLAG_STRING, offsetof(train_opts, ft.out), "DIR",
     "metrics.jsonl, checkpoint.safetensors and the adapter go here (required)"},
    {"log-norms", KG_FLAG_BOOL, offsetof(train_opts, ft.log_norms), NULL,
     "log per step each factor kind's gradient and update norm and the adapters' output RMS"},
    {"resume", KG_FLAG_BOOL, offsetof(train_opts, ft.resume), NULL,
     "continue from DIR/checkpoint.safetensors, bit for bit"},
    {"checkpoint-every", KG_FLAG_INT, offsetof(train_opts, ft.checkpoint_every), "N",
     "write the checkpoint every N steps (default 50; always at the end)"},
    {"stop-at", KG_FLAG_INT, offsetof(train_opts, ft.stop_at), "N",
     "stop after step N, as if interrupted (--resume continues)"},
    {"loss-on", KG_FLAG_STRING, offsetof(train_opts, loss_on), "completion|all",
     "--task sft: the loss on the completion / assistant turns (default), or on every token"},
    {"packing", KG_FLAG_BOOL, offsetof(train_opts, packing), NULL,
     "--task sft: batches of rows of similar length (length-grouped; attention never crosses "
     "rows)"},
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

/* The summary's lines about the steps: how many, the loss, memory and time. */
static void print_steps(const kg_train_config *cfg, const kg_run_result *r, const char *how)
{
    printf("  %-18s %lld this run (of %lld; batch %lld x %lld%s)\n", "steps", (long long)r->steps,
           (long long)cfg->steps, (long long)cfg->batch, (long long)cfg->accumulate, how);
    if (r->steps > 0) {
        printf("  %-18s %.4f -> %.4f (first and last 10%% of steps)\n", "loss", r->first_loss,
               r->last_loss);
        printf("  %-18s %.1f MiB\n", "peak memory", (double)r->peak_bytes / (1024.0 * 1024.0));
        printf("  %-18s %.3f s (%.0f tokens/s)\n", "mean step time", r->mean_step_seconds,
               r->tokens_per_second);
    }
}

static void print_summary(const train_opts *o, const kg_train_config *cfg, const kg_run_result *r,
                          const kg_task *eval)
{
    char b[32];
    printf("\n");
    print_adapter(&cfg->adapter, o->ft.targets);
    printf("  %-18s %s\n", "trainable params", finetune_count(r->trainable, b, sizeof b));
    print_steps(cfg, r, "");
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

static void print_sft_data(const char *label, const kg_sft_data *d, int64_t max_length)
{
    printf("  %-18s %s: %lld rows (%s), %lld tokens, %lld of them learned", label, d->path,
           (long long)d->n_rows, kg_sft_layout_name(d->layout), (long long)d->tokens,
           (long long)d->loss_tokens);
    if (d->truncated)
        printf("; %lld rows cut to --max-length %lld", (long long)d->truncated,
               (long long)max_length);
    if (d->dropped)
        printf("; %lld rows left out: nothing to learn within --max-length", (long long)d->dropped);
    printf("\n");
}

/* --task sft: rows of the three TRL layouts, the loss on their labels, held-out perplexity. */
static int run_sft(const train_opts *o, kg_ctx *ctx, kg_train_config *cfg)
{
    if (o->ft.data.n != 1 || o->ft.eval_data.n > 1)
        return usage_error("--task sft takes one --data FILE.jsonl (and at most one --eval-data)");
    if (o->loss_on && strcmp(o->loss_on, "all") != 0 && strcmp(o->loss_on, "completion") != 0)
        return usage_error("--loss-on takes completion or all");
    if (o->ft.eval_every > 0 && !o->ft.eval_data.n)
        return usage_error("--eval-every needs --eval-data FILE");
    kg_sft_options so = {.max_length = cfg->max_length,
                         .loss_on_all = o->loss_on && strcmp(o->loss_on, "all") == 0};
    kg_tokenizer *tok = kg_tokenizer_load(ctx, o->ft.model);
    kg_sft_data *train = tok ? kg_sft_read(ctx, o->ft.data.item[0], tok, o->ft.model, &so) : NULL;
    kg_sft_data *eval = train && o->ft.eval_data.n
                            ? kg_sft_read(ctx, o->ft.eval_data.item[0], tok, o->ft.model, &so)
                            : NULL;
    kg_model *m = train && (eval || !o->ft.eval_data.n)
                      ? finetune_model(ctx, o->ft.model, o->ft.frozen, &cfg->adapter, cfg->seed)
                      : NULL;
    kg_run_options ro = {.out_dir = o->ft.out, .resume = o->ft.resume,
                         .checkpoint_every = o->ft.checkpoint_every, .stop_at = o->ft.stop_at,
                         .eval_every = o->ft.eval_every, .progress = finetune_progress,
                         .base_model = o->ft.model};
    kg_run_result r = {0};
    int rc = 1;
    if (m && kg_sft_run(m, train, eval, cfg, &ro, o->packing, &r)) {
        finetune_progress_end();
        if (kg_dist_rank() == 0) {
            char b[32];
            printf("\n");
            print_adapter(&cfg->adapter, o->ft.targets);
            printf("  %-18s %s\n", "trainable params", finetune_count(r.trainable, b, sizeof b));
            print_sft_data("train data", train, cfg->max_length);
            if (eval)
                print_sft_data("held-out data", eval, cfg->max_length);
            print_steps(cfg, &r, o->packing ? ", grouped by length" : "");
            if (eval && !isnan(r.eval_loss))
                printf("  %-18s %.4f (perplexity %.3f) over %lld tokens\n", "held-out loss",
                       r.eval_loss, r.eval_perplexity, (long long)r.eval_loss_tokens);
            printf("  %-18s %s\n", "saved in", o->ft.out);
        }
        rc = 0;
    } else {
        finetune_progress_end();
        rc = fail(ctx);
    }
    free(r.losses);
    kg_model_free(m);
    kg_sft_free(train);
    kg_sft_free(eval);
    kg_tokenizer_free(tok);
    return rc;
}

static int run_train(void *p)
{
    const train_opts *o = p;
    if (!o->ft.model || !o->ft.out)
        return usage_error("--model PATH and --out DIR are required");
    if (!o->ft.task == !o->ft.tasks)
        return usage_error("give exactly one of --task NAME and --tasks LIST");
    bool sft = o->ft.task && strcmp(o->ft.task, "sft") == 0;
    if (!sft && (o->loss_on || o->packing))
        return usage_error("--loss-on and --packing are for --task sft");
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
    } else if (strcmp(o->ft.task, "sft") == 0) {
        rc = run_sft(o, ctx, &cfg);
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
    .summary = "Fine-tune a model with an adapter on a multiple-choice task (or several in turn), "
               "or on your own SFT data.",
    .usage = "--model PATH --task NAME [--data FILE] [--eval-data FILE] --out DIR [options]\n"
             "       krongrad train --model PATH --task sft --data FILE.jsonl [--eval-data FILE] "
             "--out DIR\n"
             "       krongrad train --model PATH --tasks A,B --data A.jsonl --data B.jsonl "
             "--eval-data ... --out DIR",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(train_opts),
    .defaults = defaults,
    .run = run_train,
};
