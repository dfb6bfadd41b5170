/* trainer.c — the fine-tuning loop: deterministic batches from (seed, step), one scope per
 * micro-batch with the gradients accumulated in the trainable leaves, summed across ranks in a
 * job of several, clipping by the global norm, warmup + linear / cosine decay, the fused AdamW /
 * SGD updates; and a whole run around it (metrics as JSON lines, checkpoints, the adapter saved,
 * the eval task scored), whose files rank 0 alone writes.
 */
#include "train/dist.h"
#include "train/train_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRAINER_STATE_SLOTS 2 /* AdamW: m and v; SGD: the momentum buffer (slot 0) */

/* An example and its length, for grouping a micro-batch's examples by length. */
typedef struct keyed { int64_t length, example; } keyed;

struct kg_trainer {
    kg_model *m;
    kg_train_config cfg;
    kg_train_source src;      /* what the micro-batches are drawn from and their loss */
    kg_mc_scorer scorer;      /* a multiple-choice task: */
    const kg_mc_item **items; /* its labeled items, the source's examples */
    const kg_mc_item **batch; /* one micro-batch of them */
    int64_t *picked;          /* the source's examples of one micro-batch */
    kg_tensor **state[TRAINER_STATE_SLOTS]; /* per trainable tensor; NULL where unused */
    int64_t step;                           /* optimizer steps done */
    int64_t *order;                         /* the shuffled item order of epoch order_epoch */
    keyed *keyed;                           /* the source's lengths given: sorting room */
    int64_t order_epoch;
    kg_tensor **grads; /* this step's gradient of each trainable tensor (NULL: none reached it) */
    /* In a job of several ranks: every trainable tensor's gradient in turn (zeros where none),
     * then one presence flag per tensor, summed across the ranks; NULL in one process. */
    float *flat;
    int64_t flat_n;
    kg_factor_kind *kind; /* of each trainable tensor */
};

/* ---- Settings ------------------------------------------------------------------------------ */

const char *kg_optimizer_name(kg_optimizer o) { return o == KG_OPTIM_SGD ? "sgd" : "adamw"; }

const char *kg_schedule_name(kg_schedule s)
{
    return s == KG_SCHEDULE_COSINE ? "cosine" : s == KG_SCHEDULE_CONSTANT ? "constant" : "linear";
}

kg_train_config kg_train_config_default(kg_adapter_kind kind)
{
    /* Rates at which each adapter learned both the demo task and real CommonsenseQA, the best
     * of those measured (docs/kron-lora.md, docs/results.md's lr table); full fine-tuning keeps
     * transformers' 2e-4 (not measured). */
    double lr = kind == KG_ADAPTER_LORA       ? 2e-3
              : kind == KG_ADAPTER_KRONLORA ? 3e-3
              : kind == KG_ADAPTER_LOKR     ? 2e-3
                                            : 2e-4;
    return (kg_train_config){
        .adapter = kg_adapter_config_default(kind),
        .optimizer = KG_OPTIM_ADAMW,
        .lr = lr,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .eps = 1e-8,
        .schedule = KG_SCHEDULE_LINEAR,
        .clip = 1.0,
        .steps = 100,
        .batch = 8,
        .accumulate = 1,
        .loss = KG_MC_LOSS_GOLD,
    };
}

/* ---- Factor kinds ------------------------------------------------------------------------- */

static const char *const factor_names[KG_FACTOR_COUNT] = {
    [KG_FACTOR_LORA_A] = "lora_a", [KG_FACTOR_LORA_B] = "lora_b", [KG_FACTOR_KRON_A] = "a",
    [KG_FACTOR_KRON_B1] = "b1",    [KG_FACTOR_KRON_B2] = "b2",    [KG_FACTOR_OTHER] = "other",
};

const char *kg_factor_kind_name(kg_factor_kind k)
{
    return (unsigned)k < KG_FACTOR_COUNT ? factor_names[k] : "?";
}

kg_factor_kind kg_factor_kind_of(const char *name)
{
    static const struct {
        const char *leaf;
        kg_factor_kind kind;
    } leaves[] = {
        {".lora_A.weight", KG_FACTOR_LORA_A}, {".lora_B.weight", KG_FACTOR_LORA_B},
        {".lokr_w1", KG_FACTOR_KRON_A},       {".lokr_w1_a", KG_FACTOR_KRON_A},
        {".lokr_w1_b", KG_FACTOR_KRON_A},     {".lokr_w2_a", KG_FACTOR_KRON_B1},
        {".lokr_w2_b", KG_FACTOR_KRON_B2},
    };
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        size_t k = strlen(leaves[i].leaf);
        if (n >= k && strcmp(name + n - k, leaves[i].leaf) == 0)
            return leaves[i].kind;
    }
    return KG_FACTOR_OTHER;
}

bool kg_factor_lr_parse(kg_ctx *ctx, const char *text, double mult[KG_FACTOR_COUNT])
{
    const char *s = text ? text : "";
    double got[KG_FACTOR_COUNT];
    memcpy(got, mult, sizeof got);
    while (*s) {
        size_t key = strcspn(s, "=,");
        int k = 0;
        while (k < KG_FACTOR_COUNT &&
               !(strlen(factor_names[k]) == key && strncmp(s, factor_names[k], key) == 0))
            k++;
        char *end = (char *)s + key;
        double v = k < KG_FACTOR_COUNT && s[key] == '=' ? strtod(s + key + 1, &end) : -1;
        if (!(v > 0) || !isfinite(v) || end == s + key + 1 || (*end && *end != ','))
            return kg_set_error(ctx, KG_ERR_ARG, "lr multipliers '%s' at '%s'; expected "
                                "KIND=X,... with KIND lora_a, lora_b, a, b1, b2 or other and X "
                                "a positive number (\"b1=4,a=2\")", text ? text : "(null)", s);
        got[k] = v;
        s = *end ? end + 1 : end;
    }
    memcpy(mult, got, sizeof got);
    return true;
}

double kg_schedule_lr(const kg_train_config *cfg, int64_t step)
{
    /* transformers' LambdaLR schedules: the k-th optimizer step uses lambda(k - 1). */
    double s = (double)(step - 1), W = (double)cfg->warmup, N = (double)cfg->steps;
    if (s < W)
        return cfg->lr * s / (W > 1 ? W : 1);
    double rest = N - W > 1 ? N - W : 1, progress = (s - W) / rest;
    switch (cfg->schedule) {
    case KG_SCHEDULE_CONSTANT:
        return cfg->lr;
    case KG_SCHEDULE_COSINE:
        return cfg->lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
    case KG_SCHEDULE_LINEAR:
        break;
    }
    return cfg->lr * fmax(0.0, (N - s) / rest);
}

static bool lr_mults_ok(const kg_train_config *c)
{
    for (int k = 0; k < KG_FACTOR_COUNT; k++)
        if (!(c->lr_mult[k] >= 0) || !isfinite(c->lr_mult[k]))
            return false;
    return true;
}

static bool check_config(kg_ctx *ctx, const kg_train_config *c)
{
    const char *bad = NULL;
    if (!(c->lr > 0) || !isfinite(c->lr))
        bad = "lr: expected a positive number";
    else if (!lr_mults_ok(c))
        bad = "lr_mult: expected each >= 0 and finite (0: 1)";
    else if (!(c->weight_decay >= 0))
        bad = "weight_decay: expected >= 0";
    else if (c->optimizer == KG_OPTIM_ADAMW &&
             !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1 && c->eps > 0))
        bad = "beta1, beta2, eps: expected betas in [0, 1) and eps > 0";
    else if (c->optimizer == KG_OPTIM_SGD && !(c->momentum >= 0 && c->momentum < 1))
        bad = "momentum: expected a value in [0, 1)";
    else if (c->steps < 1 || c->batch < 1 || c->accumulate < 1)
        bad = "steps, batch, accumulate: expected each >= 1";
    else if (c->batch > 4096)
        bad = "batch: expected at most 4096 items";
    else if (c->warmup < 0 || c->warmup > c->steps)
        bad = "warmup: expected 0 to steps";
    else if (!(c->clip >= 0))
        bad = "clip: expected >= 0 (0: no clipping)";
    else if (c->max_length < 0)
        bad = "max_length: expected >= 0";
    if (bad)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_trainer_new: %s", bad);
    return true;
}

/* ---- The trainer --------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void kg_trainer_free(kg_trainer *t)
{
    if (!t)
        return;
    for (int s = 0; s < TRAINER_STATE_SLOTS; s++) {
        for (int i = 0; t->state[s] && i < t->m->n_trainable; i++)
            kg_tensor_free(t->state[s][i]);
        free(t->state[s]);
    }
    free(t->items);
    free(t->batch);
    free(t->picked);
    free(t->order);
    free(t->keyed);
    free(t->grads);
    free(t->flat);
    free(t->kind);
    free(t);
}

/* The mean loss of a micro-batch of a multiple-choice task's labeled items. */
static kg_tensor *mc_loss(void *user, const int64_t *examples, int64_t n, int64_t *tokens)
{
    kg_trainer *t = user;
    for (int64_t j = 0; j < n; j++)
        t->batch[j] = t->items[examples[j]];
    return kg_mc_loss_of(&t->scorer, t->cfg.loss, t->batch, (int)n, tokens);
}

/* A trainer without its source (the caller sets it), or NULL with the context's error set. */
static kg_trainer *trainer_make(kg_model *m, const kg_train_config *cfg)
{
    if (!m || kg_ctx_status(m->ctx))
        return NULL;
    kg_ctx *ctx = m->ctx;
    if (!cfg) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_trainer_new: NULL argument");
        return NULL;
    }
    if (!check_config(ctx, cfg))
        return NULL;
    if (cfg->accumulate < kg_dist_size()) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_trainer_new: accumulate %lld: expected at least %d, "
                     "one micro-batch per rank (the ranks share a step's batch × accumulate "
                     "items by micro-batch)", (long long)cfg->accumulate, kg_dist_size());
        return NULL;
    }
    if (m->n_trainable < 1) {
        kg_set_error(ctx, KG_ERR_STATE, "kg_trainer_new: the model has nothing trainable; "
                     "attach an adapter first (kg_model_attach)");
        return NULL;
    }
    kg_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_trainer_new: out of host memory");
        return NULL;
    }
    *t = (kg_trainer){.m = m, .cfg = *cfg, .order_epoch = -1};
    /* The adapter's strings were the caller's: the copy keeps none. */
    t->cfg.adapter.targets = t->cfg.adapter.modules_to_save = NULL;
    t->picked = malloc(sizeof *t->picked * (size_t)cfg->batch);
    t->grads = calloc((size_t)m->n_trainable, sizeof *t->grads);
    t->kind = malloc(sizeof *t->kind * (size_t)m->n_trainable);
    bool ok = t->picked && t->grads && t->kind;
    for (int i = 0; ok && i < m->n_trainable; i++)
        t->kind[i] = kg_factor_kind_of(m->trainable[i].name);
    if (ok && kg_dist_size() > 1) {
        t->flat_n = kg_model_trainable_count(m) + m->n_trainable;
        ok = (t->flat = malloc(sizeof *t->flat * (size_t)t->flat_n)) != NULL;
    }
    /* The optimizer's state: zeros beside each trainable tensor, kept past any scope. */
    int slots = cfg->optimizer == KG_OPTIM_ADAMW ? 2 : cfg->momentum > 0 ? 1 : 0;
    for (int s = 0; ok && s < slots; s++) {
        ok = (t->state[s] = calloc((size_t)m->n_trainable, sizeof(kg_tensor *))) != NULL;
        for (int i = 0; ok && i < m->n_trainable; i++) {
            kg_tensor *p = m->trainable[i].tensor;
            int64_t shape[KG_MAX_DIMS];
            for (int d = 0; d < kg_tensor_ndim(p); d++)
                shape[d] = kg_tensor_dim(p, d);
            ok = (t->state[s][i] = kg_tensor_keep(
                      kg_zeros(ctx, KG_DTYPE_F32, kg_tensor_ndim(p), shape))) != NULL;
        }
    }
    if (!ok) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_trainer_new: out of memory for the optimizer state");
        kg_trainer_free(t);
        return NULL;
    }
    return t;
}

/* The trainer's source, and room for an epoch's order of its examples. */
static bool set_source(kg_trainer *t, const kg_train_source *src)
{
    t->src = *src;
    if (src->n < 1)
        return kg_set_error(t->m->ctx, KG_ERR_ARG, "kg_trainer_new: %s has no examples to "
                            "train on", src->name ? src->name : "the data");
    t->order = malloc(sizeof *t->order * (size_t)src->n);
    if (src->lengths)
        t->keyed = malloc(sizeof *t->keyed * (size_t)src->n);
    return (t->order && (t->keyed || !src->lengths)) || kg_set_error(t->m->ctx, KG_ERR_NOMEM, "kg_trainer_new: out of host memory");
}

kg_trainer *kg_trainer_new(kg_model *m, kg_tokenizer *tok, const kg_task *task,
                           const kg_train_config *cfg)
{
    if (m && !kg_ctx_status(m->ctx) && (!tok || !task)) {
        kg_set_error(m->ctx, KG_ERR_ARG, "kg_trainer_new: NULL argument");
        return NULL;
    }
    kg_trainer *t = trainer_make(m, cfg);
    if (!t)
        return NULL;
    t->scorer = (kg_mc_scorer){.model = m, .tok = tok, .kind = task->kind,
                               .max_length = cfg->max_length};
    t->items = malloc(sizeof *t->items * (size_t)(task->n_items ? task->n_items : 1));
    t->batch = malloc(sizeof *t->batch * (size_t)cfg->batch);
    bool ok = (t->items && t->batch) ||
              kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_trainer_new: out of host memory");
    int64_t n = 0;
    for (int64_t i = 0; ok && i < task->n_items; i++)
        if (task->items[i].gold >= 0)
            t->items[n++] = &task->items[i];
    const char *name = task->path ? task->path : task->name;
    if (ok && n == 0)
        ok = kg_set_error(m->ctx, KG_ERR_ARG, "kg_trainer_new: %s has no labeled items to train "
                          "on", name);
    if (!ok || !set_source(t, &(kg_train_source){.n = n, .loss = mc_loss, .user = t,
                                                 .name = name})) {
        kg_trainer_free(t);
        return NULL;
    }
    return t;
}

kg_trainer *kg_trainer_new_source(kg_model *m, const kg_train_source *src,
                                  const kg_train_config *cfg)
{
    if (m && !kg_ctx_status(m->ctx) && (!src || !src->loss)) {
        kg_set_error(m->ctx, KG_ERR_ARG, "kg_trainer_new_source: NULL argument");
        return NULL;
    }
    kg_trainer *t = trainer_make(m, cfg);
    if (t && !set_source(t, src)) {
        kg_trainer_free(t);
        return NULL;
    }
    return t;
}

int64_t kg_trainer_steps_done(const kg_trainer *t) { return t ? t->step : 0; }

/* Longest first; ties keep the shuffle's order (qsort is not stable, the index makes it so). */
static int by_length_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->length != y->length)
        return x->length < y->length ? 1 : -1;
    return (x->example > y->example) - (x->example < y->example);
}

/* The example at position pos of the endless stream of epochs, each a fresh shuffle; with the
 * source's lengths, each run of 50 steps' worth of the shuffle is sorted longest first, so a
 * micro-batch pads to rows of about its own length (transformers' LengthGroupedSampler). */
static int64_t example_at(kg_trainer *t, int64_t pos)
{
    int64_t n = t->src.n, epoch = pos / n;
    if (epoch != t->order_epoch) { /* Fisher–Yates from (seed, epoch) */
        uint64_t rng = mix64(t->cfg.seed * 0x100000001b3ULL + (uint64_t)epoch);
        for (int64_t i = 0; i < n; i++)
            t->order[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            rng = mix64(rng);
            int64_t j = (int64_t)(rng % (uint64_t)(i + 1)), x = t->order[i];
            t->order[i] = t->order[j];
            t->order[j] = x;
        }
        int64_t mega = 50 * t->cfg.batch * t->cfg.accumulate;
        for (int64_t i = 0; t->keyed && i < n; i += mega) {
            int64_t len = n - i < mega ? n - i : mega;
            for (int64_t j = 0; j < len; j++)
                t->keyed[j] = (keyed){t->src.lengths[t->order[i + j]], t->order[i + j]};
            qsort(t->keyed, (size_t)len, sizeof *t->keyed, by_length_desc);
            for (int64_t j = 0; j < len; j++)
                t->order[i + j] = t->keyed[j].example;
        }
        t->order_epoch = epoch;
    }
    return t->order[pos % n];
}

/* The global L2 norm of the step's gradients, read once. */
static double grad_norm(kg_trainer *t)
{
    kg_tensor *sum = NULL;
    for (int i = 0; i < t->m->n_trainable; i++) {
        kg_tensor *g = t->grads[i];
        if (g) {
            kg_tensor *sq = kg_sum_all(kg_mul(g, g));
            sum = sum ? kg_add(sum, sq) : sq;
        }
    }
    return sum ? sqrt(kg_item(sum)) : 0.0;
}

/* Per factor kind, a running sum of squares on the device (read once a step: norm_read). */
typedef struct norm_sums {
    kg_tensor *sq[KG_FACTOR_COUNT];
} norm_sums;

/* Add |x - minus|² (minus may be NULL) to kind's sum, off the tape. */
static void norm_add(norm_sums *s, kg_factor_kind kind, kg_tensor *x, kg_tensor *minus)
{
    kg_ctx *ctx = kg_tensor_ctx(x);
    kg_no_grad_begin(ctx);
    kg_tensor *d = minus ? kg_sub(x, minus) : x, *sq = kg_sum_all(kg_mul(d, d));
    s->sq[kind] = s->sq[kind] ? kg_add(s->sq[kind], sq) : sq;
    kg_no_grad_end(ctx);
}

/* The norms, NaN for a kind without a tensor. */
static void norm_read(const norm_sums *s, double out[KG_FACTOR_COUNT])
{
    for (int k = 0; k < KG_FACTOR_COUNT; k++)
        out[k] = s->sq[k] ? sqrt(kg_item(s->sq[k])) : NAN;
}

/* This rank's gradients into t->flat (a job of several ranks), with a presence flag each. */
static bool gather_grads(kg_trainer *t)
{
    const kg_model *m = t->m;
    float *present = t->flat + (t->flat_n - m->n_trainable);
    int64_t off = 0;
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *g = kg_grad(m->trainable[i].tensor);
        int64_t n = kg_tensor_numel(m->trainable[i].tensor);
        if (g && !kg_tensor_to_host(g, t->flat + off, sizeof *t->flat * (size_t)n))
            return false;
        if (!g)
            memset(t->flat + off, 0, sizeof *t->flat * (size_t)n);
        present[i] = g ? 1.0f : 0.0f;
        off += n;
    }
    return true;
}

/* The summed gradients of t->flat as tensors of the current scope, in t->grads. */
static bool scatter_grads(kg_trainer *t)
{
    const kg_model *m = t->m;
    const float *present = t->flat + (t->flat_n - m->n_trainable);
    int64_t off = 0;
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *p = m->trainable[i].tensor;
        int64_t shape[KG_MAX_DIMS];
        for (int d = 0; d < kg_tensor_ndim(p); d++)
            shape[d] = kg_tensor_dim(p, d);
        t->grads[i] = present[i] > 0 ? kg_from_host(t->m->ctx, KG_DTYPE_F32, kg_tensor_ndim(p),
                                                    shape, t->flat + off)
                                     : NULL;
        if (present[i] > 0 && !t->grads[i])
            return false;
        off += kg_tensor_numel(p);
    }
    return true;
}

/* Whether every rank is ok. A rank that is, when another is not, gets an error naming it. */
static bool all_ok(kg_ctx *ctx, bool ok, const char *where)
{
    int bad = kg__dist_first_failed(!ok);
    if (bad >= 0 && ok)
        kg_set_error(ctx, KG_ERR_STATE, "%s: rank %d of %d failed (its own message says why); "
                     "every rank stops", where, bad, kg_dist_size());
    return bad < 0;
}

bool kg_trainer_step(kg_trainer *t, kg_step_stats *out)
{
    if (!t)
        return false;
    kg_ctx *ctx = t->m->ctx;
    kg_model *m = t->m;
    const kg_train_config *c = &t->cfg;
    double t0 = kg__now(), loss_sum = 0, out_sq = 0;
    int64_t tokens = 0, out_n = 0, B = c->batch, K = c->accumulate;
    int R = kg_dist_size(), r = kg_dist_rank();
    for (int i = 0; i < m->n_trainable; i++)
        kg_zero_grad(m->trainable[i].tensor);
    uint64_t step_seed = mix64(c->seed ^ mix64((uint64_t)t->step + 1));
    /* This rank's share of the step's micro-batches (all of them in one process). A rank that
     * failed before still takes part below, so that no other rank waits for it. */
    for (int64_t k = K * r / R; k < K * (r + 1) / R && !kg_ctx_status(ctx); k++) {
        /* Micro-batch k's dropout masks: a function of the seed, the step and k alone, whichever
         * rank runs it. */
        kg_model_train(m, true, step_seed ^ (uint64_t)k * 0x9e3779b97f4a7c15ULL);
        m->mode.stats = c->log_norms;
        for (int64_t j = 0; j < B; j++)
            t->picked[j] = example_at(t, (t->step * K + k) * B + j);
        kg_scope scope = kg_scope_begin(ctx);
        int64_t n_tok = 0;
        kg_tensor *loss = t->src.loss(t->src.user, t->picked, B, &n_tok);
        /* Each micro-batch adds 1/K of its mean loss's gradient: the step sees the mean. */
        kg_backward(kg_scale(loss, 1.0f / (float)K));
        loss_sum += kg_item(loss);
        tokens += n_tok;
        kg_scope_end(ctx, scope);
        out_sq += m->mode.out_sq;
        out_n += m->mode.out_n;
    }
    m->mode.stats = false;
    /* Every rank ok, then the sums: the step's loss and tokens, and the gradients through host
     * memory (GPU-aware MPI is not assumed). */
    double c0 = kg__now();
    bool failed = kg_ctx_status(ctx) != KG_OK || (t->flat && !gather_grads(t));
    bool ok = all_ok(ctx, !failed, "kg_trainer_step");
    double sums[2] = {loss_sum, (double)tokens};
    if (ok) {
        kg__dist_sum_f64(sums, 2);
        kg__dist_sum_f32(t->flat, t->flat_n);
    }
    double comm = R > 1 ? kg__now() - c0 : 0;
    kg_scope scope = kg_scope_begin(ctx);
    for (int i = 0; ok && !t->flat && i < m->n_trainable; i++)
        t->grads[i] = kg_grad(m->trainable[i].tensor);
    if (ok && t->flat)
        ok = scatter_grads(t);
    double norm = ok ? grad_norm(t) : 0, lr = kg_schedule_lr(c, t->step + 1);
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
    float coef = c->clip > 0 && norm + 1e-6 > c->clip ? (float)(c->clip / (norm + 1e-6)) : 1.0f;
    norm_sums sums_g = {0}, sums_u = {0};
    for (int i = 0; ok && i < m->n_trainable && !kg_ctx_status(ctx); i++) {
        kg_tensor *p = m->trainable[i].tensor, *g = t->grads[i], *before = NULL;
        if (!g) /* nothing reached it (torch skips a parameter without .grad) */
            continue;
        if (c->log_norms) {
            norm_add(&sums_g, t->kind[i], g, NULL);
            kg_no_grad_begin(ctx);
            before = kg_scale(p, 1.0f); /* a copy: the update is in place */
            kg_no_grad_end(ctx);
        }
        if (coef < 1.0f)
            g = kg_scale(g, coef);
        double klr = lr * (c->lr_mult[t->kind[i]] > 0 ? c->lr_mult[t->kind[i]] : 1.0);
        if (c->optimizer == KG_OPTIM_ADAMW) {
            kg_adamw a = {.lr = (float)klr, .beta1 = (float)c->beta1, .beta2 = (float)c->beta2,
                          .eps = (float)c->eps, .weight_decay = (float)c->weight_decay,
                          .step = t->step + 1};
            kg_adamw_update(p, g, t->state[0][i], t->state[1][i], &a);
        } else {
            kg_sgd s = {.lr = (float)klr, .momentum = (float)c->momentum,
                        .weight_decay = (float)c->weight_decay, .first = t->step == 0};
            kg_sgd_update(p, g, t->state[0] ? t->state[0][i] : NULL, &s);
        }
        if (before)
            norm_add(&sums_u, t->kind[i], p, before);
    }
    double gn[KG_FACTOR_COUNT], un[KG_FACTOR_COUNT];
    norm_read(&sums_g, gn);
    norm_read(&sums_u, un);
    kg_scope_end(ctx, scope);
    for (int i = 0; i < m->n_trainable; i++) {
        kg_zero_grad(m->trainable[i].tensor);
        t->grads[i] = NULL;
    }
    /* Every rank ok after the update too: then every rank returns the same, and makes the same
     * collective calls after it. */
    if (!all_ok(ctx, ok && !kg_ctx_status(ctx), "kg_trainer_step"))
        return false;
    t->step++;
    loss_sum = sums[0];
    if (out)
        *out = (kg_step_stats){.step = t->step, .loss = loss_sum / (double)K, .lr = lr,
                               .grad_norm = norm, .tokens = (int64_t)sums[1],
                               .seconds = kg__now() - t0, .comm_seconds = comm,
                               .delta_rms = out_n > 0 ? sqrt(out_sq / (double)out_n) : NAN};
    if (out)
        for (int k = 0; k < KG_FACTOR_COUNT; k++) {
            out->grad_norms[k] = gn[k];
            out->update_norms[k] = un[k];
        }
    if (!isfinite(loss_sum))
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_trainer_step: the loss of step %lld is not "
                            "finite; try a smaller lr (%g) or clipping",
                            (long long)t->step, c->lr);
    return true;
}

/* ---- What checkpoint.c needs of a trainer -------------------------------------------------- */

const kg_train_config *kg__trainer_config(const kg_trainer *t) { return &t->cfg; }
kg_model *kg__trainer_model(const kg_trainer *t) { return t->m; }
kg_tensor *kg__trainer_state(const kg_trainer *t, int slot, int i)
{
    return slot < TRAINER_STATE_SLOTS && t->state[slot] ? t->state[slot][i] : NULL;
}
void kg__trainer_set_step(kg_trainer *t, int64_t step) { t->step = step; }

/* ---- A whole run --------------------------------------------------------------------------- */

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool make_dir(kg_ctx *ctx, const char *dir)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            return true;
    }
    return kg_set_error(ctx, KG_ERR_ARG, "kg_train_run: cannot make the output directory %s: %s",
                        dir, errno ? strerror(errno) : "a file of that name is in the way");
}

static void metrics_line(FILE *f, const kg_step_stats *s, bool log_norms)
{
    fprintf(f, "{\"step\": %lld, \"loss\": ", (long long)s->step);
    kg__json_number(f, s->loss);
    fputs(", \"lr\": ", f);
    kg__json_number(f, s->lr);
    fputs(", \"grad_norm\": ", f);
    kg__json_number(f, s->grad_norm);
    fprintf(f, ", \"tokens\": %lld, \"seconds\": ", (long long)s->tokens);
    kg__json_number(f, s->seconds);
    fputs(", \"tokens_per_s\": ", f);
    kg__json_number(f, s->seconds > 0 ? (double)s->tokens / s->seconds : 0);
    fputs(", \"comm_seconds\": ", f);
    kg__json_number(f, s->comm_seconds);
    if (log_norms) { /* "norms": {"b1": {"grad": …, "update": …}, …}, "delta_rms": … */
        fputs(", \"norms\": {", f);
        for (int k = 0, n = 0; k < KG_FACTOR_COUNT; k++)
            if (!isnan(s->grad_norms[k])) {
                fprintf(f, "%s\"%s\": {\"grad\": ", n++ ? ", " : "", kg_factor_kind_name(k));
                kg__json_number(f, s->grad_norms[k]);
                fputs(", \"update\": ", f);
                kg__json_number(f, s->update_norms[k]);
                fputs("}", f);
            }
        fputs("}, \"delta_rms\": ", f);
        kg__json_number(f, s->delta_rms);
    }
    fputs("}\n", f);
    fflush(f);
}

static bool save_adapter(kg_model *m, const char *dir, const char *base_model)
{
    if (m->adapter.kind != KG_ADAPTER_FULL)
        return kg_peft_save(m, dir, base_model);
    char *path = join_path(dir, "model.safetensors");
    bool ok = path ? kg_model_save_weights(m, path)
                   : kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_train_run: out of host memory");
    free(path);
    return ok;
}

/* In a job of several ranks, the step rank 0 starts from and, when it resumed a checkpoint,
 * every trainable tensor and the optimizer state as it read them: no other rank needs to see
 * rank 0's files. (A fresh start is the same on every rank already: the same seeds.) */
static bool share_state(kg_trainer *t)
{
    kg_model *m = t->m;
    kg_ctx *ctx = m->ctx;
    int64_t step = t->step;
    kg__dist_bcast(&step, sizeof step);
    t->step = step;
    if (step == 0)
        return true;
    size_t most = 1;
    for (int s = -1; s < TRAINER_STATE_SLOTS; s++)
        for (int i = 0; i < m->n_trainable && (s < 0 || t->state[s]); i++) {
            kg_tensor *x = s < 0 ? m->trainable[i].tensor : t->state[s][i];
            size_t bytes = (size_t)kg_tensor_numel(x) * kg_dtype_size(kg_tensor_dtype(x));
            most = bytes > most ? bytes : most;
        }
    void *buf = malloc(most);
    bool ok = buf || kg_set_error(ctx, KG_ERR_NOMEM, "kg_train_run: out of host memory");
    if (!all_ok(ctx, ok, "kg_train_run")) {
        free(buf);
        return false;
    }
    for (int s = -1; s < TRAINER_STATE_SLOTS; s++)
        for (int i = 0; i < m->n_trainable && (s < 0 || t->state[s]); i++) {
            kg_tensor *x = s < 0 ? m->trainable[i].tensor : t->state[s][i];
            int nd = kg_tensor_ndim(x);
            int64_t shape[KG_MAX_DIMS];
            for (int d = 0; d < nd; d++)
                shape[d] = kg_tensor_dim(x, d);
            size_t bytes = (size_t)kg_tensor_numel(x) * kg_dtype_size(kg_tensor_dtype(x));
            if (kg_dist_rank() == 0 && ok)
                ok = kg_tensor_to_host(x, buf, bytes);
            /* A rank that failed still takes part; the agreement after says so. */
            kg__dist_bcast(buf, bytes);
            if (kg_dist_rank() != 0 && ok) {
                kg_scope scope = kg_scope_begin(ctx);
                ok = kg_tensor_assign(x, kg_from_host(ctx, kg_tensor_dtype(x), nd, shape, buf));
                kg_scope_end(ctx, scope);
            }
        }
    free(buf);
    return all_ok(ctx, ok, "kg_train_run");
}

bool kg__train_run_trainer(kg_trainer *t, const kg_run_options *opts, kg__run_eval_fn eval,
                           void *eval_user, kg_run_result *out)
{
    kg_model *m = t->m;
    kg_ctx *ctx = m->ctx;
    const kg_train_config *cfg = &t->cfg;
    const kg_run_options none = {0};
    if (!opts)
        opts = &none;
    /* Rank 0 alone reads and writes files; the others receive its state. */
    bool lead = kg_dist_rank() == 0;
    char *ckpt = NULL, *metrics = NULL;
    FILE *mf = NULL;
    bool ok = true;
    if (opts->out_dir) {
        ckpt = join_path(opts->out_dir, "checkpoint.safetensors");
        metrics = join_path(opts->out_dir, "metrics.jsonl");
        if (!ckpt || !metrics)
            ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_train_run: out of host memory");
    }
    if (ok && opts->out_dir && lead) {
        ok = make_dir(ctx, opts->out_dir);
        struct stat st;
        bool resuming = ok && opts->resume && stat(ckpt, &st) == 0;
        if (resuming)
            ok = kg_checkpoint_load(t, ckpt);
        /* A resumed run appends to the metrics of the steps it continues. */
        if (ok && !(mf = fopen(metrics, resuming ? "a" : "w")))
            ok = kg_set_error(ctx, KG_ERR_ARG, "kg_train_run: cannot write %s: %s", metrics,
                              strerror(errno));
    }
    ok = all_ok(ctx, ok, "kg_train_run");
    if (ok && kg_dist_size() > 1)
        ok = share_state(t);
    int64_t first = kg_trainer_steps_done(t), total = cfg->steps;
    int64_t stop = opts->stop_at > 0 && opts->stop_at < total ? opts->stop_at : total;
    int64_t todo = stop > first ? stop - first : 0;
    out->trainable = kg_model_trainable_count(m);
    out->losses = calloc((size_t)(todo > 0 ? todo : 1), sizeof *out->losses);
    if (ok && !out->losses)
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_train_run: out of host memory");
    ok = all_ok(ctx, ok, "kg_train_run");
    /* A fresh run's held-out figures before its first step: the baseline of the curve. */
    if (ok && eval && lead && opts->eval_every > 0 && first == 0)
        ok = eval(eval_user, t, 0, false, mf, out);
    ok = all_ok(ctx, ok, "kg_train_run");
    kg_memory_reset_peak(ctx);
    size_t current, peak = 0;
    double seconds = 0;
    int64_t tokens = 0;
    /* Every rank runs the same steps; a failure on one is known to all (kg_trainer_step), as is
     * a checkpoint rank 0 could not write. */
    while (ok && kg_trainer_steps_done(t) < stop) {
        kg_step_stats s;
        ok = kg_trainer_step(t, &s);
        if (!ok)
            break;
        out->losses[out->steps++] = s.loss;
        seconds += s.seconds;
        tokens += s.tokens;
        if (mf)
            metrics_line(mf, &s, cfg->log_norms);
        if (opts->progress && lead)
            opts->progress(opts->user, &s, total);
        /* Held-out figures along the way (rank 0: every rank holds the same adapter); the peak
         * memory is the training's, what scoring takes set aside. */
        if (eval && lead && opts->eval_every > 0 && s.step % opts->eval_every == 0 &&
            s.step < total) {
            kg_memory(ctx, &current, &out->peak_bytes);
            peak = out->peak_bytes > peak ? out->peak_bytes : peak;
            ok = eval(eval_user, t, s.step, false, mf, out);
            kg_memory_reset_peak(ctx);
        }
        ok = all_ok(ctx, ok, "kg_train_run");
        if (ok && ckpt && opts->checkpoint_every > 0 && s.step % opts->checkpoint_every == 0 &&
            s.step < stop)
            ok = all_ok(ctx, !lead || kg_checkpoint_save(t, ckpt), "kg_train_run");
    }
    kg_memory(ctx, &current, &out->peak_bytes);
    out->peak_bytes = out->peak_bytes > peak ? out->peak_bytes : peak;
    if (ok && ckpt && lead)
        ok = kg_checkpoint_save(t, ckpt);
    if (ok && opts->out_dir && lead && kg_trainer_steps_done(t) >= total)
        ok = save_adapter(m, opts->out_dir, opts->base_model);
    ok = all_ok(ctx, ok, "kg_train_run");
    if (out->steps > 0) {
        int64_t tail = out->steps / 10 > 0 ? out->steps / 10 : 1;
        double a = 0, b = 0;
        for (int64_t i = 0; i < tail; i++) {
            a += out->losses[i];
            b += out->losses[out->steps - 1 - i];
        }
        out->first_loss = a / (double)tail;
        out->last_loss = b / (double)tail;
        out->mean_step_seconds = seconds / (double)out->steps;
        out->tokens_per_second = seconds > 0 ? (double)tokens / seconds : 0;
    }
    /* Rank 0 alone scores the held-out data: every rank holds the same adapter. */
    if (ok && eval && lead && kg_trainer_steps_done(t) >= total)
        ok = eval(eval_user, t, total, true, mf, out);
    kg_model_train(m, false, 0);
    if (mf && fclose(mf) != 0 && ok)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_train_run: writing %s failed", metrics);
    free(ckpt);
    free(metrics);
    return ok;
}

typedef struct mc_eval_of {
    const kg_task *task;
    int64_t limit; /* items scored (0: all) */
} mc_eval_of;

/* The eval task scored after `step` steps: a metrics line, a point of the curve (out->curve,
 * there when eval_every asks for one) and, once the run is done, out->eval. */
static bool mc_eval(void *user, kg_trainer *t, int64_t step, bool last, FILE *mf,
                    kg_run_result *out)
{
    const mc_eval_of *e = user;
    kg_mc_scorer s = {.model = t->m, .tok = t->scorer.tok, .kind = e->task->kind,
                      .max_length = t->cfg.max_length};
    kg_eval_options eo = {.limit = e->limit};
    kg_eval_result during, *r = last ? &out->eval : &during;
    if (!kg_mc_evaluate(&s, e->task, &eo, r))
        return false;
    out->evaluated |= last;
    if (mf) {
        fprintf(mf, "{\"step\": %lld, \"eval_items\": %lld, \"eval_acc\": ", (long long)step,
                (long long)r->labeled);
        kg__json_number(mf, r->acc);
        fputs(", \"eval_acc_norm\": ", mf);
        kg__json_number(mf, r->acc_norm);
        fputs("}\n", mf);
        fflush(mf);
    }
    if (out->curve)
        out->curve[out->n_curve++] = (kg_eval_point){step, r->acc, r->acc_norm};
    return true;
}

bool kg_train_run(kg_model *m, kg_tokenizer *tok, const kg_task *train, const kg_task *eval,
                  const kg_train_config *cfg, const kg_run_options *opts, kg_run_result *out)
{
    if (!m || kg_ctx_status(m->ctx) || !out)
        return all_ok(m ? m->ctx : NULL, false, "kg_train_run");
    *out = (kg_run_result){.first_loss = NAN, .last_loss = NAN};
    kg_trainer *t = kg_trainer_new(m, tok, train, cfg);
    if (!all_ok(m->ctx, t != NULL, "kg_train_run")) {
        kg_trainer_free(t);
        return false;
    }
    mc_eval_of e = {.task = eval, .limit = opts ? opts->eval_limit : 0};
    /* The curve (rank 0's): before the first step, after every eval_every-th, and the final
     * eval; a resumed run has fewer points than this. */
    bool ok = true;
    if (eval && opts && opts->eval_every > 0 && kg_dist_rank() == 0) {
        out->curve = calloc((size_t)(cfg->steps / opts->eval_every + 2), sizeof *out->curve);
        ok = out->curve || kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_train_run: out of host memory");
    }
    ok = all_ok(m->ctx, ok, "kg_train_run") &&
         kg__train_run_trainer(t, opts, eval ? mc_eval : NULL, &e, out);
    kg_trainer_free(t);
    if (!ok) { /* a failed run hands back nothing to free */
        free(out->losses);
        free(out->curve);
        out->losses = NULL;
        out->curve = NULL;
    }
    return ok;
}
