/* demo.c — `krongrad demo`: fine-tune SmolLM2-135M-Instruct (fetched by scripts/fetch-models.sh)
 * on a multiple-choice task the project generates (synthetic-lang: which made-up language does a
 * word belong to — a rule no pretrained model knows), once with Kron-LoRA and once with LoRA-8,
 * with the same budget, and print both loss curves side by side and held-out accuracy before and
 * after. The defaults are the setting docs/kron-lora.md measured both adapters learning in
 * (30 steps, every linear layer; 10 of 30 blocks for 16 steps learns nothing): short prompts, the
 * cross entropy over the choices (the gold answer's LM loss learns this rule far more slowly:
 * the random stems dominate it), adapters on every linear layer of the last --layers blocks (the
 * backward pass stops below them; 0: every block). docs/kron-lora.md measures the settings.
 */
#include "finetune.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEMO_TASK "synthetic-lang"
#define DEMO_GGUF "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct demo_opts {
    const char *model, *backend, *kron_a;
    int64_t steps, batch, layers, eval_items, rank;
    double lr;
} demo_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(demo_opts, model), "PATH",
     "the model (default: SmolLM2-135M-Instruct in ${KG_MODELS:-~/.cache/krongrad/models})"},
    {"steps", KG_FLAG_INT, offsetof(demo_opts, steps), "N", "training steps per adapter (default 30)"},
    {"batch", KG_FLAG_INT, offsetof(demo_opts, batch), "B", "items per step (default 8)"},
    {"layers", KG_FLAG_INT, offsetof(demo_opts, layers), "L",
     "adapt every linear layer of the last L blocks only (default 0: of every block)"},
    {"rank", KG_FLAG_INT, offsetof(demo_opts, rank), "R", "rank of both adapters (default 8)"},
    {"kron-a", KG_FLAG_STRING, offsetof(demo_opts, kron_a), "dA2xdA1",
     "Kron-LoRA's A shape (default 2x4)"},
    {"lr", KG_FLAG_FLOAT, offsetof(demo_opts, lr), "LR",
     "peak learning rate of both (default: each adapter's, as krongrad train)"},
    {"eval-items", KG_FLAG_INT, offsetof(demo_opts, eval_items), "N",
     "held-out items scored before and after (default 40)"},
    {"backend", KG_FLAG_STRING, offsetof(demo_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
};

static void defaults(void *p)
{
    demo_opts *o = p;
    o->steps = 30;
    o->batch = 8;
    o->rank = 8;
    o->lr = -1; /* each adapter's default */
    o->eval_items = 40;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad demo: %s\n(see krongrad demo --help)\n", msg);
    return 2;
}

/* Every linear layer of the last n blocks: "layers.20.self_attn.q_proj,...,layers.29.mlp.down_proj". */
static char *targets_of(int64_t n_layers, int64_t n)
{
    static const char *const mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};
    size_t cap = (size_t)n * 7 * 40 + 1;
    char *s = malloc(cap);
    size_t k = 0;
    for (int64_t l = n_layers - n; s && l < n_layers; l++)
        for (int j = 0; j < 7; j++)
            k += (size_t)snprintf(s + k, cap - k, "%slayers.%lld.%s", k ? "," : "",
                                  (long long)l, mods[j]);
    return s;
}

typedef struct demo_row {
    const char *label;
    kg_adapter_config adapter;
    double lr;
    kg_run_result r;
} demo_row;

static int run_demo(void *p)
{
    const demo_opts *o = p;
    if (o->steps < 1 || o->batch < 1 || o->layers < 0 || o->eval_items < 1 || o->rank < 1 ||
        !(o->lr > 0 || o->lr == -1))
        return usage_error("--steps, --batch, --rank, --eval-items take N >= 1, --layers N >= 0 "
                           "and --lr a positive number");
    char path[4096];
    if (o->model) {
        snprintf(path, sizeof path, "%s", o->model);
    } else {
        const char *dir = getenv("KG_MODELS"), *home = getenv("HOME");
        if (dir && *dir)
            snprintf(path, sizeof path, "%s/%s", dir, DEMO_GGUF);
        else
            snprintf(path, sizeof path, "%s/.cache/krongrad/models/%s", home ? home : ".",
                     DEMO_GGUF);
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "krongrad demo: %s is missing; fetch it with ./scripts/fetch-models.sh "
                        "(./scripts/demo.sh does everything)\n", path);
        return 1;
    }
    const char *why = NULL;
    kg_ctx *ctx = kg_cli_context(o->backend, &why);
    if (!ctx)
        return 1;
    kg_adapter_config kron = kg_adapter_config_default(KG_ADAPTER_KRONLORA);
    if (o->kron_a && !kg_adapter_parse_kron_a(ctx, o->kron_a, &kron)) {
        int rc = kg_cli_fail("demo", ctx);
        kg_ctx_free(ctx);
        return rc;
    }
    double t0 = now();
    printf("krongrad demo: fine-tuning %s\nbackend %s\n", path, why);
    kg_train_config cfg = kg_train_config_default(KG_ADAPTER_KRONLORA);
    cfg.steps = o->steps;
    cfg.batch = o->batch;
    cfg.warmup = o->steps / 10;
    cfg.loss = KG_MC_LOSS_CHOICES;
    kg_task *train = kg_task_generate(ctx, DEMO_TASK, KG_SPLIT_TRAIN, 0, o->steps * o->batch);
    kg_task *test = kg_task_generate(ctx, DEMO_TASK, KG_SPLIT_TEST, 0, o->eval_items);
    kg_tokenizer *tok = test ? kg_tokenizer_load(ctx, path) : NULL;
    demo_row rows[2] = {{.label = "kronlora"}, {.label = "lora"}};
    char *targets = NULL;
    int64_t n_blocks = 0;
    double before = -1;
    bool ok = tok != NULL;
    for (int i = 0; ok && i < 2; i++) {
        kg_model *m = kg_model_load(ctx, path);
        if (!m)
            break;
        n_blocks = m->cfg.n_layers;
        if (!targets && o->layers > 0 && o->layers < n_blocks)
            targets = targets_of(n_blocks, o->layers);
        kg_adapter_config *a = &rows[i].adapter;
        *a = i == 0 ? kron : kg_adapter_config_default(KG_ADAPTER_LORA);
        a->rank = o->rank;
        a->alpha = 2.0 * (double)o->rank;
        a->targets = targets;
        cfg.adapter = *a;
        cfg.lr = o->lr > 0 ? o->lr : kg_train_config_default(a->kind).lr;
        rows[i].lr = cfg.lr;
        ok = (o->layers == 0 || o->layers >= n_blocks || targets) &&
             kg_model_attach(m, a); /* targets NULL: all-linear */
        if (ok && i == 0) {
            /* Kron-LoRA starts with ΔW = 0: this is the pretrained model's accuracy. */
            printf("task %s: \"%s\" -> %s | %s | %s | %s\n", DEMO_TASK, test->items[0].question,
                   test->items[0].choices[0], test->items[0].choices[1],
                   test->items[0].choices[2], test->items[0].choices[3]);
            kg_mc_scorer s = {.model = m, .tok = tok, .kind = test->kind};
            kg_eval_result e;
            ok = kg_mc_evaluate(&s, test, NULL, &e);
            before = e.acc;
            printf("held-out accuracy before fine-tuning: %.4f (acc_norm %.4f; %lld items, "
                   "chance 0.25)\n", e.acc, e.acc_norm, (long long)e.labeled);
        }
        if (ok) {
            char head[64];
            snprintf(head, sizeof head, "%s", rows[i].label);
            kg_run_options ro = {.progress = finetune_progress, .user = head};
            ok = kg_train_run(m, tok, train, test, &cfg, &ro, &rows[i].r);
            finetune_progress_end();
        }
        kg_model_free(m);
    }
    int rc = 0;
    if (ok) {
        char b[32];
        char where[64] = "every linear layer of every block";
        if (targets)
            snprintf(where, sizeof where, "every linear layer of the last %lld of %lld blocks",
                     (long long)o->layers, (long long)n_blocks);
        printf("\ntraining loss (cross entropy over the 4 choices; chance ln 4 = 1.386), mean of "
               "each stretch of steps:\n\n  %-10s %12s %12s\n", "steps", "kronlora", "lora");
        int64_t n = o->steps, w = n >= 16 ? 4 : n >= 8 ? 2 : 1;
        for (int64_t s0 = 0; s0 < n; s0 += w) {
            int64_t s1 = s0 + w < n ? s0 + w : n;
            double mean[2] = {0, 0};
            for (int i = 0; i < 2; i++) {
                for (int64_t k = s0; k < s1; k++)
                    mean[i] += rows[i].r.losses[k];
                mean[i] /= (double)(s1 - s0);
            }
            char span[48];
            snprintf(span, sizeof span, "%lld-%lld", (long long)s0 + 1, (long long)s1);
            printf("  %-10s %12.4f %12.4f\n", span, mean[0], mean[1]);
        }
        printf("\nfine-tuned %lld steps of %lld items, adapters on %s; held-out accuracy on "
               "%lld items never seen in training (before: the base model, ΔW = 0 for both):\n\n",
               (long long)o->steps, (long long)o->batch, where, (long long)o->eval_items);
        printf("  %-20s %10s %8s %10s %10s %12s %12s %10s\n", "adapter", "params", "lr", "step s",
               "peak MiB", "acc before", "acc after", "acc_norm");
        for (int i = 0; i < 2; i++) {
            const kg_adapter_config *a = &rows[i].adapter;
            const kg_run_result *r = &rows[i].r;
            char label[64];
            if (a->kind == KG_ADAPTER_KRONLORA)
                snprintf(label, sizeof label, "kronlora r%lld A%lldx%lld", (long long)a->rank,
                         (long long)a->kron_a2, (long long)a->kron_a1);
            else
                snprintf(label, sizeof label, "lora r%lld", (long long)a->rank);
            printf("  %-20s %10s %8.0e %10.3f %10.1f %12.4f %12.4f %10.4f\n", label,
                   finetune_count(r->trainable, b, sizeof b), rows[i].lr, r->mean_step_seconds,
                   (double)r->peak_bytes / (1024.0 * 1024.0), before, r->eval.acc,
                   r->eval.acc_norm);
        }
        double total = now() - t0;
        printf("\ntotal time %d:%02d\n", (int)(total / 60), (int)total % 60);
    } else {
        rc = kg_cli_fail("demo", ctx);
    }
    for (int i = 0; i < 2; i++)
        free(rows[i].r.losses);
    free(targets);
    kg_tokenizer_free(tok);
    kg_task_free(train);
    kg_task_free(test);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_demo = {
    .name = "demo",
    .summary = "Fine-tune SmolLM2-135M with Kron-LoRA and LoRA on a generated task; "
               "accuracy before and after.",
    .usage = "[options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(demo_opts),
    .defaults = defaults,
    .run = run_demo,
};
