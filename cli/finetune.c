/* finetune.c — the parts `krongrad train`, `compare` and `demo` share (finetune.h): flags to a
 * kg_train_config, tasks read or generated, a model made ready to fine-tune, the progress line.
 */
#include "finetune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNTHETIC_TRAIN_ITEMS 1000
#define SYNTHETIC_TEST_ITEMS 200

void finetune_defaults(finetune_opts *o)
{
    kg_train_config c = kg_train_config_default(KG_ADAPTER_KRONLORA);
    o->rank = c.adapter.rank;
    o->alpha = -1; /* not given: 2·R */
    o->lokr_factor = c.adapter.lokr_factor;
    o->steps = c.steps;
    o->batch = c.batch;
    o->accumulate = c.accumulate;
    o->lr = c.lr;
    o->momentum = 0.9;
    o->clip = c.clip;
}

static bool usage(const char *cmd, const char *fmt, const char *what)
{
    fprintf(stderr, "krongrad %s: ", cmd);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see krongrad %s --help)\n", cmd);
    return false;
}

bool finetune_config(const char *cmd, const finetune_opts *o, kg_train_config *cfg)
{
    kg_adapter_kind kind = KG_ADAPTER_KRONLORA;
    if (o->adapter) {
        kg_ctx *tmp = kg_ctx_new(KG_BACKEND_CPU); /* only for the parser's message */
        bool ok = tmp && kg_adapter_kind_parse(tmp, o->adapter, &kind) &&
                  kind != KG_ADAPTER_NONE;
        if (!ok)
            usage(cmd, "--adapter '%s'; expected lora, kronlora, lokr or full", o->adapter);
        kg_ctx_free(tmp);
        if (!ok)
            return false;
    }
    *cfg = kg_train_config_default(kind);
    kg_adapter_config *a = &cfg->adapter;
    a->rank = o->rank;
    a->alpha = o->alpha >= 0 ? o->alpha : 2.0 * (double)o->rank;
    a->dropout = (float)o->dropout;
    a->lokr_factor = o->lokr_factor;
    a->targets = o->targets;
    a->modules_to_save = o->modules_to_save;
    a->seed = (uint64_t)o->seed;
    if (o->kron_a) {
        kg_ctx *tmp = kg_ctx_new(KG_BACKEND_CPU);
        bool ok = tmp && kg_adapter_parse_kron_a(tmp, o->kron_a, a);
        kg_ctx_free(tmp);
        if (!ok)
            return usage(cmd, "--kron-a '%s'; expected dA2xdA1 such as 2x4", o->kron_a);
    }
    if (o->rank < 1)
        return usage(cmd, "--rank %s; expected R >= 1", "must be positive");
    if (!(o->dropout >= 0 && o->dropout < 1))
        return usage(cmd, "--dropout: %s", "expected P in [0, 1)");
    cfg->steps = o->steps;
    cfg->batch = o->batch;
    cfg->accumulate = o->accumulate;
    cfg->lr = o->lr;
    cfg->weight_decay = o->weight_decay;
    cfg->momentum = o->momentum;
    cfg->warmup = o->warmup;
    cfg->clip = o->clip;
    cfg->seed = (uint64_t)o->seed;
    cfg->max_length = o->max_length;
    if (o->optimizer && strcmp(o->optimizer, "adamw") == 0)
        cfg->optimizer = KG_OPTIM_ADAMW;
    else if (o->optimizer && strcmp(o->optimizer, "sgd") == 0)
        cfg->optimizer = KG_OPTIM_SGD;
    else if (o->optimizer)
        return usage(cmd, "--optimizer '%s'; expected adamw or sgd", o->optimizer);
    if (o->schedule && strcmp(o->schedule, "linear") == 0)
        cfg->schedule = KG_SCHEDULE_LINEAR;
    else if (o->schedule && strcmp(o->schedule, "cosine") == 0)
        cfg->schedule = KG_SCHEDULE_COSINE;
    else if (o->schedule && strcmp(o->schedule, "constant") == 0)
        cfg->schedule = KG_SCHEDULE_CONSTANT;
    else if (o->schedule)
        return usage(cmd, "--schedule '%s'; expected linear, cosine or constant", o->schedule);
    if (o->loss && strcmp(o->loss, "gold") == 0)
        cfg->loss = KG_MC_LOSS_GOLD;
    else if (o->loss && strcmp(o->loss, "choices") == 0)
        cfg->loss = KG_MC_LOSS_CHOICES;
    else if (o->loss)
        return usage(cmd, "--loss '%s'; expected gold or choices", o->loss);
    if (o->steps < 1 || o->batch < 1 || o->accumulate < 1)
        return usage(cmd, "--steps, --batch and --accumulate %s", "take N >= 1");
    if (o->warmup < 0 || o->warmup > o->steps)
        return usage(cmd, "--warmup %s", "takes 0 to --steps");
    if (!(o->lr > 0) || o->clip < 0 || o->weight_decay < 0 || o->max_length < 0 ||
        o->eval_limit < 0 || o->checkpoint_every < 0 || o->stop_at < 0 || o->eval_every < 0)
        return usage(cmd, "%s", "--lr takes a positive number; --clip, --weight-decay, "
                     "--max-length, --eval-limit, --eval-every, --checkpoint-every and "
                     "--stop-at take >= 0");
    return true;
}

static bool is_synthetic(const char *name)
{
    return name && strncmp(name, "synthetic-", 10) == 0;
}

kg_task *finetune_task(kg_ctx *ctx, const char *name, const char *path, kg_split split)
{
    if (!path && is_synthetic(name))
        return kg_task_generate(ctx, name, split, 0,
                                split == KG_SPLIT_TRAIN ? SYNTHETIC_TRAIN_ITEMS
                                                        : SYNTHETIC_TEST_ITEMS);
    if (!path) {
        kg_set_error(ctx, KG_ERR_ARG, "task %s needs --data FILE (only synthetic-* tasks are "
                     "generated)", name ? name : "(none)");
        return NULL;
    }
    return kg_task_read(ctx, name, path);
}

static bool is_gguf(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".gguf") == 0;
}

bool finetune_validate(kg_ctx *ctx, const char *model_path, const kg_adapter_config *a)
{
    kg_model_config mc;
    if (is_gguf(model_path)) {
        kg_weights *w = kg_weights_open(ctx, model_path);
        bool ok = w && kg_model_config_from_gguf(ctx, w, &mc);
        kg_weights_close(w);
        if (!ok)
            return false;
    } else {
        /* config.json in the directory, or beside a .safetensors file or index */
        char config[4096];
        struct stat st;
        const char *slash = strrchr(model_path, '/');
        if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(config, sizeof config, "%s/config.json", model_path);
        else
            snprintf(config, sizeof config, "%.*sconfig.json",
                     slash ? (int)(slash - model_path + 1) : 0, model_path);
        if (!kg_model_config_read(ctx, config, &mc))
            return false;
    }
    bool decoder = mc.arch == KG_ARCH_MISTRAL || mc.arch == KG_ARCH_LLAMA;
    if (!decoder && mc.head == KG_HEAD_NONE)
        mc.head = KG_HEAD_MULTIPLE_CHOICE;
    return kg_adapter_validate(ctx, &mc, a);
}

kg_model *finetune_model(kg_ctx *ctx, const char *path, const char *frozen,
                         const kg_adapter_config *cfg, uint64_t seed)
{
    kg_dtype fd = frozen ? kg_dtype_from_name(frozen) : KG_DTYPE_F32;
    if (fd == KG_DTYPE_COUNT || fd == KG_DTYPE_I32) {
        kg_set_error(ctx, KG_ERR_ARG, "--frozen %s: expected f32, bf16, f16, q8_0, q4_0, q4_1 or "
                     "nf4", frozen);
        return NULL;
    }
    kg_model *m = kg_model_load_frozen(ctx, path, fd);
    bool decoder = m && (m->cfg.arch == KG_ARCH_MISTRAL || m->cfg.arch == KG_ARCH_LLAMA);
    bool ok = m != NULL;
    if (ok && !decoder && m->cfg.head == KG_HEAD_NONE)
        ok = kg_model_add_head(m, KG_HEAD_MULTIPLE_CHOICE, 1, seed);
    if (ok && cfg)
        ok = kg_model_attach(m, cfg);
    if (!ok) {
        kg_model_free(m);
        return NULL;
    }
    return m;
}

static bool progress_shown;

void finetune_progress(void *user, const kg_step_stats *s, int64_t total)
{
    static double elapsed;
    static int64_t last_step, done;
    if (!isatty(STDERR_FILENO))
        return;
    if (s->step <= last_step) /* a new run */
        elapsed = 0, done = 0;
    last_step = s->step;
    elapsed += s->seconds;
    done++;
    double eta = (double)(total - s->step) * elapsed / (double)done;
    fprintf(stderr, "\r%s%sstep %lld/%lld  loss %.4f  %.0f tok/s  ETA %d:%02d   ",
            user ? (const char *)user : "", user ? "  " : "", (long long)s->step,
            (long long)total, s->loss, s->seconds > 0 ? (double)s->tokens / s->seconds : 0.0,
            (int)(eta / 60), (int)eta % 60);
    progress_shown = true;
}

void finetune_progress_end(void)
{
    if (progress_shown)
        fputc('\n', stderr);
    progress_shown = false;
}

const char *finetune_count(int64_t n, char *buf, size_t cap)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t k = 0;
    if (n < 0 && k + 1 < cap)
        buf[k++] = '-';
    for (int i = 0; i < len && k + 2 < cap; i++) {
        buf[k++] = digits[i];
        if ((len - 1 - i) % 3 == 0 && i + 1 < len)
            buf[k++] = ',';
    }
    buf[k] = 0;
    return buf;
}
