/* bench.c — `krongrad bench train`: the time of one fine-tuning step on a model of real shapes
 * with random weights (DistilBERT-base, SmolLM2-135M, Mistral-7B), no files needed. It prints
 * the median step time, tokens/s, peak memory and where the time goes per op (kg_profile), so
 * the figures can be set beside PyTorch + PEFT's (bench/side_by_side.sh).
 *
 * The step is the trainer's (train/trainer.c): forward in training mode (dropout on), the loss,
 * backward, the gradients' global norm and clipping to 1, then AdamW on every trainable tensor.
 * Encoders score B questions × K choices of T tokens with their multiple-choice head and take
 * the cross entropy against a gold choice (the trainer's encoder loss); decoders take the mean
 * next-token NLL of all B·K rows (the trainer's gold-continuation loss, every token counted).
 */
#include "finetune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct bench_opts {
    const char *what, *arch, *adapter, *kron_a, *backend, *frozen;
    int64_t rank, batch, choices, seq, steps, warmup, layers;
    double alpha;
    bool json, gemm_shapes;
} bench_opts;

static const kg_flag flags[] = {
    {"arch", KG_FLAG_STRING, offsetof(bench_opts, arch), "NAME",
     "distilbert-base, smollm2-135m or mistral-7b (default distilbert-base)"},
    {"adapter", KG_FLAG_STRING, offsetof(bench_opts, adapter), "KIND",
     "kronlora, lora, lokr or full (default kronlora)"},
    {"rank", KG_FLAG_INT, offsetof(bench_opts, rank), "R", "adapter rank (default 8)"},
    {"alpha", KG_FLAG_FLOAT, offsetof(bench_opts, alpha), "A", "scale numerator (default 2·R)"},
    {"kron-a", KG_FLAG_STRING, offsetof(bench_opts, kron_a), "dA2xdA1",
     "Kron-LoRA's A shape (default 2x4)"},
    {"batch", KG_FLAG_INT, offsetof(bench_opts, batch), "B", "questions per step (default 2)"},
    {"choices", KG_FLAG_INT, offsetof(bench_opts, choices), "K",
     "choices per question (default 4)"},
    {"seq", KG_FLAG_INT, offsetof(bench_opts, seq), "T", "tokens per row (default 128)"},
    {"steps", KG_FLAG_INT, offsetof(bench_opts, steps), "N",
     "timed steps (default 5), after the warmup; one more step is profiled"},
    {"warmup", KG_FLAG_INT, offsetof(bench_opts, warmup), "N",
     "untimed steps first (default 1)"},
    {"frozen", KG_FLAG_STRING, offsetof(bench_opts, frozen), "DTYPE",
     "the frozen linear weights: f32, bf16, f16, q8_0, q4_0, q4_1 or nf4 (default f32)"},
    {"layers", KG_FLAG_INT, offsetof(bench_opts, layers), "N",
     "blocks (default: the model's; fewer fit a big model in memory)"},
    {"gemm-shapes", KG_FLAG_BOOL, offsetof(bench_opts, gemm_shapes), NULL,
     "then each of the step's GEMM shapes alone: the rate the step's products could reach"},
    {"json", KG_FLAG_BOOL, offsetof(bench_opts, json), NULL,
     "end with one JSON line of the figures (for bench/side_by_side.sh)"},
    {"backend", KG_FLAG_STRING, offsetof(bench_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
};

static void defaults(void *p)
{
    bench_opts *o = p;
    o->rank = 8;
    o->alpha = -1;
    o->batch = 2;
    o->choices = 4;
    o->seq = 128;
    o->steps = 5;
    o->warmup = 1;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad bench: %s\n(see krongrad bench --help)\n", msg);
    return 2;
}

/* The published configs (REFERENCE §5, §6), with the multiple-choice head on the encoder. */
static bool arch_config(const char *name, kg_model_config *c)
{
    *c = (kg_model_config){.pad_token_id = -1, .bos_token_id = -1, .eos_token_id = -1};
    if (strcmp(name, "distilbert-base") == 0) {
        c->arch = KG_ARCH_DISTILBERT;
        c->head = KG_HEAD_MULTIPLE_CHOICE;
        c->vocab_size = 30522, c->hidden_size = 768, c->n_layers = 6, c->n_heads = 12;
        c->n_kv_heads = 12, c->head_dim = 64, c->intermediate_size = 3072;
        c->max_positions = 512, c->norm_eps = 1e-12, c->pad_token_id = 0;
        c->hidden_dropout = 0.1f, c->attention_dropout = 0.1f, c->classifier_dropout = 0.2f;
        return true;
    }
    c->head = KG_HEAD_CAUSAL_LM;
    c->norm_eps = 1e-5;
    if (strcmp(name, "smollm2-135m") == 0) {
        c->arch = KG_ARCH_LLAMA;
        c->vocab_size = 49152, c->hidden_size = 576, c->n_layers = 30, c->n_heads = 9;
        c->n_kv_heads = 3, c->head_dim = 64, c->intermediate_size = 1536;
        c->max_positions = 8192, c->rope_theta = 100000, c->tie_word_embeddings = true;
        return true;
    }
    if (strcmp(name, "mistral-7b") == 0) {
        c->arch = KG_ARCH_MISTRAL;
        c->vocab_size = 32000, c->hidden_size = 4096, c->n_layers = 32, c->n_heads = 32;
        c->n_kv_heads = 8, c->head_dim = 128, c->intermediate_size = 14336;
        c->max_positions = 32768, c->rope_theta = 10000, c->sliding_window = 4096;
        return true;
    }
    return false;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One batch of random token ids and gold answers, the same for every step. */
typedef struct batch {
    kg_model_input in;
    kg_tensor *gold;    /* encoders: (B) i32 */
    kg_tensor *targets; /* decoders: (B·K·(T-1)) i32, the next token of each position */
    int64_t tokens;
} batch;

static bool make_batch(kg_model *m, const bench_opts *o, batch *b)
{
    kg_ctx *ctx = m->ctx;
    int64_t B = o->batch, K = o->choices, T = o->seq, n = B * K * T, V = m->cfg.vocab_size;
    int32_t *ids = malloc(sizeof *ids * (size_t)n), *gold = malloc(sizeof *gold * (size_t)B);
    bool ok = ids && gold;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int64_t i = 0; ok && i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(1 + x % (uint64_t)(V - 1));
    }
    for (int64_t i = 0; ok && i < B; i++)
        gold[i] = (int32_t)(i % K);
    bool decoder = m->cfg.head == KG_HEAD_CAUSAL_LM;
    if (ok && decoder) {
        b->in.ids = kg_tensor_keep(kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){B * K, T}, ids));
        int32_t *next = malloc(sizeof *next * (size_t)(B * K * (T - 1)));
        ok = next != NULL;
        for (int64_t r = 0; ok && r < B * K; r++)
            memcpy(next + r * (T - 1), ids + r * T + 1, sizeof *next * (size_t)(T - 1));
        if (ok)
            b->targets = kg_tensor_keep(
                kg_from_host(ctx, KG_DTYPE_I32, 1, (int64_t[]){B * K * (T - 1)}, next));
        free(next);
    } else if (ok) {
        b->in.ids = kg_tensor_keep(kg_from_host(ctx, KG_DTYPE_I32, 3, (int64_t[]){B, K, T}, ids));
        b->gold = kg_tensor_keep(kg_from_host(ctx, KG_DTYPE_I32, 1, &B, gold));
    }
    free(ids);
    free(gold);
    b->tokens = n;
    if (!ok)
        kg_set_error(ctx, KG_ERR_NOMEM, "krongrad bench: out of host memory");
    return !kg_ctx_status(ctx);
}

/* The loss of the batch, on the tape (a one-element tensor). */
static kg_tensor *loss_of(kg_model *m, const batch *b)
{
    if (m->cfg.head != KG_HEAD_CAUSAL_LM) /* (B, K) against the gold choice */
        return kg_cross_entropy(kg_model_logits(m, &b->in, NULL), b->gold, -100);
    int64_t N = kg_tensor_dim(b->in.ids, 0), T = kg_tensor_dim(b->in.ids, 1);
    int64_t C = m->cfg.hidden_size;
    kg_tensor *h = kg_slice(kg_model_hidden(m, &b->in, NULL), 1, 0, T - 1); /* predicts next */
    kg_tensor *lp = kg_linear_log_probs(&m->lm_head, kg_reshape(h, 2, (int64_t[]){N * (T - 1), C}),
                                        b->targets, -100); /* (N·(T-1)): the LM head fused */
    return kg_scale(kg_sum_all(lp), -1.0f / (float)(N * (T - 1)));
}

/* One training step as the trainer takes it (one micro-batch). */
static bool step(kg_model *m, const batch *b, kg_tensor **state, int64_t n, double *loss)
{
    kg_ctx *ctx = m->ctx;
    kg_model_train(m, true, (uint64_t)n * 0x9e3779b97f4a7c15ULL);
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *l = loss_of(m, b);
    kg_backward(l);
    *loss = kg_item(l);
    kg_scope_end(ctx, scope);
    scope = kg_scope_begin(ctx);
    kg_tensor *sum = NULL;
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *g = kg_grad(m->trainable[i].tensor);
        if (g) {
            kg_tensor *sq = kg_sum_all(kg_mul(g, g));
            sum = sum ? kg_add(sum, sq) : sq;
        }
    }
    double norm = sum ? sqrt(kg_item(sum)) : 0.0;
    float coef = norm + 1e-6 > 1.0 ? (float)(1.0 / (norm + 1e-6)) : 1.0f;
    for (int i = 0; i < m->n_trainable && !kg_ctx_status(ctx); i++) {
        kg_tensor *p = m->trainable[i].tensor, *g = kg_grad(p);
        if (!g)
            continue;
        kg_adamw a = {.lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 0.0f, .step = n};
        kg_adamw_update(p, coef < 1.0f ? kg_scale(g, coef) : g, state[2 * i], state[2 * i + 1],
                        &a);
    }
    kg_scope_end(ctx, scope);
    for (int i = 0; i < m->n_trainable; i++)
        kg_zero_grad(m->trainable[i].tensor);
    kg_flush(ctx);
    return !kg_ctx_status(ctx);
}

static void print_profile(kg_ctx *ctx, double step_seconds)
{
    kg_op_time t[64];
    int n = kg_profile_read(ctx, t, 64);
    double total = 0;
    for (int i = 0; i < n && i < 64; i++)
        total += t[i].seconds;
    printf("\n  time per op (one profiled step: %.3f s in ops of %.3f s)\n", total, step_seconds);
    printf("  %-20s %8s %10s %7s %8s\n", "op", "calls", "seconds", "share", "GFLOPS");
    for (int i = 0; i < n && i < 64; i++) {
        if (t[i].seconds < 0.005 * total && i >= 8)
            break;
        printf("  %-20s %8llu %10.4f %6.1f%%", t[i].op, (unsigned long long)t[i].calls,
               t[i].seconds, total > 0 ? 100.0 * t[i].seconds / total : 0.0);
        if (t[i].flops > 0 && t[i].seconds > 0)
            printf(" %8.1f", t[i].flops / t[i].seconds / 1e9);
        printf("\n");
    }
}

/* One GEMM shape of the step, (M, K)·op(B) → (M, N), timed alone (best of 3 after a warm-up): the
 * figure the step's own products are set against (docs/performance.md). */
static void gemm_shape(kg_ctx *ctx, const char *what, int64_t nb, int64_t M, int64_t N,
                       int64_t K, bool tb)
{
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *a = kg_uniform(ctx, 3, (int64_t[]){nb, M, K}, -1, 1, 1);
    kg_tensor *b = tb ? kg_uniform(ctx, 3, (int64_t[]){nb, N, K}, -1, 1, 2)
                      : kg_uniform(ctx, 3, (int64_t[]){nb, K, N}, -1, 1, 2);
    if (nb == 1) /* one weight: the linear layer's single GEMM */
        b = kg_reshape(b, 2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N});
    double best = 1e30;
    for (int r = 0; r < 4 && !kg_ctx_status(ctx); r++) {
        kg_scope s = kg_scope_begin(ctx);
        double t0 = now();
        kg_matmul_t(a, b, false, tb);
        kg_flush(ctx);
        double t = now() - t0;
        best = r > 0 && t < best ? t : best;
        kg_scope_end(ctx, s);
    }
    printf("  %-26s %5lld x %6lld x %6lld x %4lld %8.1f\n", what, (long long)nb, (long long)M,
           (long long)N, (long long)K, 2.0 * (double)(nb * M * N * K) / best / 1e9);
    kg_scope_end(ctx, scope);
}

/* The step's GEMM shapes: each linear layer forward (x·Wᵀ) and its input gradient (g·W), the
 * LM head, and attention's per-head products. */
static void print_gemm_shapes(kg_ctx *ctx, const kg_model_config *c, int64_t rows, int64_t T)
{
    int64_t C = c->hidden_size, F = c->intermediate_size, D = c->head_dim ? c->head_dim
                                                                          : C / c->n_heads;
    int64_t q = c->n_heads * D, kv = c->n_kv_heads * D, G = c->n_heads / c->n_kv_heads;
    int64_t N = rows * T;
    printf("\n  each GEMM shape alone (best of 3)  batch x      M x      N x    K   GFLOPS\n");
    gemm_shape(ctx, "q, o projection", 1, N, q, C, true);
    if (kv != q)
        gemm_shape(ctx, "k, v projection", 1, N, kv, C, true);
    gemm_shape(ctx, "up, gate: x.W^T", 1, N, F, C, true);
    gemm_shape(ctx, "down: x.W^T", 1, N, C, F, true);
    gemm_shape(ctx, "up, gate input grad: g.W", 1, N, C, F, false);
    gemm_shape(ctx, "down input grad: g.W", 1, N, F, C, false);
    if (c->head == KG_HEAD_CAUSAL_LM)
        gemm_shape(ctx, "LM head: x.W^T", 1, N - rows, c->vocab_size, C, true);
    gemm_shape(ctx, "attention: q.k^T per head", rows * c->n_kv_heads, G * T, T, D, true);
}

static int run(kg_ctx *ctx, const bench_opts *o, const kg_model_config *mc,
               const kg_adapter_config *ac)
{
    double t0 = now();
    kg_model *m = kg_model_random(ctx, mc, 1);
    if (m && ac->kind != KG_ADAPTER_NONE)
        kg_model_attach(m, ac);
    batch b = {0};
    kg_tensor **state = NULL;
    if (m && make_batch(m, o, &b)) {
        state = calloc((size_t)(2 * m->n_trainable), sizeof *state);
        if (!state)
            kg_set_error(ctx, KG_ERR_NOMEM, "krongrad bench: out of host memory");
        for (int i = 0; state && i < 2 * m->n_trainable; i++) {
            kg_tensor *p = m->trainable[i / 2].tensor;
            int64_t shape[KG_MAX_DIMS];
            for (int d = 0; d < kg_tensor_ndim(p); d++)
                shape[d] = kg_tensor_dim(p, d);
            state[i] = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, kg_tensor_ndim(p), shape));
        }
    }
    double setup = now() - t0;
    int64_t total = o->warmup + o->steps;
    double *secs = calloc((size_t)o->steps, sizeof *secs), loss = 0;
    if (!secs)
        kg_set_error(ctx, KG_ERR_NOMEM, "krongrad bench: out of host memory");
    kg_memory_reset_peak(ctx);
    for (int64_t s = 1; s <= total && !kg_ctx_status(ctx); s++) {
        double a = now();
        step(m, &b, state, s, &loss);
        if (s > o->warmup)
            secs[s - o->warmup - 1] = now() - a;
    }
    size_t current = 0, peak = 0;
    kg_memory(ctx, &current, &peak);
    double profiled = now();
    kg_profile(ctx, true);
    if (!kg_ctx_status(ctx))
        step(m, &b, state, total + 1, &loss);
    profiled = now() - profiled;
    int rc = 0;
    if (kg_ctx_status(ctx)) {
        rc = kg_cli_fail("bench", ctx);
    } else {
        qsort(secs, (size_t)o->steps, sizeof *secs, cmp_double);
        double median = o->steps % 2 ? secs[o->steps / 2]
                                     : 0.5 * (secs[o->steps / 2 - 1] + secs[o->steps / 2]);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
        char cnt[32];
        printf("krongrad bench train: %s, %s", o->arch ? o->arch : "distilbert-base",
               kg_adapter_kind_name(ac->kind));
        if (ac->kind == KG_ADAPTER_KRONLORA)
            printf(" r%lld A %lldx%lld", (long long)ac->rank, (long long)ac->kron_a2,
                   (long long)ac->kron_a1);
        else if (ac->kind != KG_ADAPTER_FULL)
            printf(" r%lld", (long long)ac->rank);
        printf(", %lld layers\n", (long long)mc->n_layers);
        printf("  %-18s %s (%d CPU threads; GEMM: %s)\n", "device", kg_device_name(ctx),
               kg_cpu_thread_count(), kg_cpu_blas());
        printf("  %-18s %lld x %lld x %lld = %lld tokens per step\n", "batch",
               (long long)o->batch, (long long)o->choices, (long long)o->seq,
               (long long)b.tokens);
        printf("  %-18s %s\n", "trainable params",
               finetune_count(kg_model_trainable_count(m), cnt, sizeof cnt));
        printf("  %-18s %.3f s (min %.3f, max %.3f over %lld steps; setup %.1f s)\n",
               "median step", median, secs[0], secs[o->steps - 1], (long long)o->steps, setup);
        printf("  %-18s %.0f\n", "tokens/s", (double)b.tokens / median);
        printf("  %-18s %.1f MiB host RSS; %.1f MiB in tensors (%s)\n", "peak memory", rss,
               (double)peak / (1024.0 * 1024.0), kg_backend_name(ctx));
        printf("  %-18s %.4f\n", "last loss", loss);
        print_profile(ctx, profiled);
        if (o->gemm_shapes)
            print_gemm_shapes(ctx, mc, o->batch * o->choices, o->seq);
        if (o->json)
            printf("{\"arch\": \"%s\", \"adapter\": \"%s\", \"tokens\": %lld, \"step_s\": %.6f, "
                   "\"tokens_per_s\": %.1f, \"rss_mib\": %.1f, \"tensor_peak_mib\": %.1f, "
                   "\"trainable\": %lld}\n",
                   o->arch ? o->arch : "distilbert-base", kg_adapter_kind_name(ac->kind),
                   (long long)b.tokens, median, (double)b.tokens / median, rss,
                   (double)peak / (1024.0 * 1024.0), (long long)kg_model_trainable_count(m));
    }
    kg_profile(ctx, false);
    for (int i = 0; state && m && i < 2 * m->n_trainable; i++)
        kg_tensor_free(state[i]);
    free(state);
    free(secs);
    kg_tensor_free(b.in.ids);
    kg_tensor_free(b.gold);
    kg_tensor_free(b.targets);
    kg_model_free(m);
    return rc;
}

static int run_bench(void *p)
{
    const bench_opts *o = p;
    if (!o->what || strcmp(o->what, "train") != 0)
        return usage_error("the benchmark to run comes first: krongrad bench train [options]");
    kg_model_config mc;
    if (!arch_config(o->arch ? o->arch : "distilbert-base", &mc))
        return usage_error("--arch takes distilbert-base, smollm2-135m or mistral-7b");
    if (o->layers < 0 || o->batch < 1 || o->choices < 1 || o->seq < 2 || o->steps < 1 ||
        o->warmup < 0)
        return usage_error("--batch, --choices and --steps take N >= 1, --seq T >= 2, "
                           "--warmup and --layers N >= 0");
    if (o->layers > 0)
        mc.n_layers = o->layers;
    if (mc.head != KG_HEAD_CAUSAL_LM && o->seq > mc.max_positions)
        return usage_error("--seq is longer than the model's positions (512)");
    mc.frozen = o->frozen ? kg_dtype_from_name(o->frozen) : KG_DTYPE_F32;
    if (mc.frozen == KG_DTYPE_COUNT || mc.frozen == KG_DTYPE_I32)
        return usage_error("--frozen takes f32, bf16, f16, q8_0, q4_0, q4_1 or nf4");
    /* The adapter flags as `krongrad train` reads them. */
    finetune_opts ft;
    memset(&ft, 0, sizeof ft);
    finetune_defaults(&ft);
    ft.adapter = o->adapter, ft.kron_a = o->kron_a, ft.rank = o->rank, ft.alpha = o->alpha;
    kg_train_config tc;
    if (!finetune_config("bench", &ft, &tc))
        return 2;
    const char *why = NULL;
    kg_ctx *ctx = kg_cli_context(o->backend, &why);
    if (!ctx)
        return 1;
    fprintf(stderr, "krongrad bench: backend %s\n", why);
    int rc = kg_adapter_validate(ctx, &mc, &tc.adapter) ? run(ctx, o, &mc, &tc.adapter)
                                                        : kg_cli_fail("bench", ctx);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_bench = {
    .name = "bench",
    .summary = "Time a fine-tuning step on a model of real shapes with random weights.",
    .usage = "train [--arch NAME] [--adapter KIND] [--batch B --choices K --seq T] [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(bench_opts),
    .defaults = defaults,
    .positional = true, /* "train": the benchmark, into bench_opts.what */
    .run = run_bench,
};
