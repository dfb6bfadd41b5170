/* bench_7b.c — memory and step time of Kron-LoRA training on a Mistral-7B-shaped decoder whose
 * frozen weights are random q4_0 blocks: sequence 256, batch 1, AdamW on the adapter factors,
 * activations recomputed layer by layer in the backward pass (only each layer's input is kept).
 * Prints peak host memory (getrusage), the backend's peak tensor memory (device memory on
 * Vulkan) and the time of each step. Not a test: it takes minutes and ~5 GiB.
 *
 *   bench_7b [--backend cpu|vulkan] [--layers 32] [--steps 2] [--seq 256]
 */
#include "krongrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Mistral-7B-v0.1 (REFERENCE §5.2). */
enum { V = 32000, C = 4096, H = 32, HKV = 8, D = 128, F = 14336, WINDOW = 4096 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_host_gib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* KiB on Linux */
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A frozen (N, K) weight of random q4_0 blocks: uniform nibbles and a scale that gives the
 * values a standard deviation near 0.02, Mistral's initializer range. */
static kg_tensor *random_q4_0(kg_ctx *ctx, int64_t n, int64_t k, uint64_t seed)
{
    size_t bytes = kg_dtype_bytes(KG_DTYPE_Q4_0, n * k);
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return NULL;
    uint16_t d = kg_f32_to_f16(0.02f / 4.6f); /* (q - 8)·d, q uniform on 0..15: std ≈ 4.6·d */
    for (size_t b = 0; b < bytes; b += 18) {
        memcpy(buf + b, &d, 2);
        uint64_t r[2] = {splitmix(&seed), splitmix(&seed)};
        memcpy(buf + b + 2, r, 16);
    }
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_Q4_0, 2, (int64_t[]){n, k}, buf);
    free(buf);
    return t;
}

typedef struct bench_model {
    kg_embed tokens;
    kg_layer *layers;
    int n_layers;
    kg_norm final_norm;
    kg_linear lm_head;
    kg_tensor **factors, **m, **v; /* the adapter's factors and their AdamW moments */
    int n_factors;
} bench_model;

static kg_linear frozen_linear(kg_ctx *ctx, int64_t out, int64_t in, uint64_t *seed)
{
    return (kg_linear){.kind = KG_LINEAR_DENSE, .weight = random_q4_0(ctx, out, in, (*seed)++)};
}

static kg_norm rms(kg_ctx *ctx)
{
    return (kg_norm){.kind = KG_NORM_RMS, .weight = kg_ones(ctx, KG_DTYPE_F32, 1, (int64_t[]){C}),
                     .eps = 1e-5f};
}

static bool add_factor(bench_model *bm, kg_ctx *ctx, kg_tensor *t)
{
    if (!t)
        return true;
    int n = bm->n_factors++;
    int64_t shape[2] = {kg_tensor_dim(t, 0), kg_tensor_ndim(t) > 1 ? kg_tensor_dim(t, 1) : 1};
    bm->factors[n] = t;
    bm->m[n] = kg_zeros(ctx, KG_DTYPE_F32, kg_tensor_ndim(t), shape);
    bm->v[n] = kg_zeros(ctx, KG_DTYPE_F32, kg_tensor_ndim(t), shape);
    return bm->m[n] && bm->v[n];
}

/* Kron-LoRA (A 2 × 4, rank 8, alpha 8) on every linear layer of the blocks. */
static bool attach(bench_model *bm, kg_ctx *ctx, kg_linear *l, uint64_t seed)
{
    kg_adapter_shape sh = {.rank = 8, .a2 = 2, .a1 = 4, .w2_lowrank = true};
    if (!kg_linear_attach(l, KG_LINEAR_KRONLORA, &sh, 1.0f, 0.0f, NULL, seed))
        return false;
    kg_adapter *a = &l->ad;
    kg_tensor *f[] = {a->w1, a->w1_a, a->w1_b, a->w2, a->w2_a, a->w2_b};
    for (int i = 0; i < 6; i++)
        if (!add_factor(bm, ctx, f[i]))
            return false;
    return true;
}

static bool build(bench_model *bm, kg_ctx *ctx, int n_layers)
{
    uint64_t seed = 1;
    bm->n_layers = n_layers;
    bm->layers = calloc((size_t)n_layers, sizeof *bm->layers);
    int cap = n_layers * 7 * 6;
    bm->factors = calloc((size_t)cap, sizeof *bm->factors);
    bm->m = calloc((size_t)cap, sizeof *bm->m);
    bm->v = calloc((size_t)cap, sizeof *bm->v);
    if (!bm->layers || !bm->factors || !bm->m || !bm->v)
        return false;
    bm->tokens.weight = kg_uniform(ctx, 2, (int64_t[]){V, C}, -0.035f, 0.035f, seed++);
    for (int l = 0; l < n_layers && !kg_ctx_status(ctx); l++) {
        kg_layer *L = &bm->layers[l];
        L->attn = (kg_attention){.q = frozen_linear(ctx, H * D, C, &seed),
                                 .k = frozen_linear(ctx, HKV * D, C, &seed),
                                 .v = frozen_linear(ctx, HKV * D, C, &seed),
                                 .o = frozen_linear(ctx, C, H * D, &seed),
                                 .n_heads = H, .n_kv_heads = HKV, .head_dim = D,
                                 .rope_theta = 10000.0f};
        L->mlp = (kg_mlp){.kind = KG_MLP_SWIGLU, .gate = frozen_linear(ctx, F, C, &seed),
                          .up = frozen_linear(ctx, F, C, &seed),
                          .down = frozen_linear(ctx, C, F, &seed)};
        L->attn_norm = rms(ctx);
        L->mlp_norm = rms(ctx);
        kg_linear *lin[] = {&L->attn.q, &L->attn.k, &L->attn.v, &L->attn.o, &L->mlp.gate,
                            &L->mlp.up, &L->mlp.down};
        for (int i = 0; i < 7; i++)
            if (!attach(bm, ctx, lin[i], seed++))
                return false;
    }
    bm->final_norm = rms(ctx);
    bm->lm_head = frozen_linear(ctx, V, C, &seed);
    return !kg_ctx_status(ctx);
}

static kg_tensor *layer_forward(const kg_layer *L, kg_tensor *x, kg_tensor *mask)
{
    x = kg_add(x, kg_attention_forward(&L->attn, kg_norm_forward(&L->attn_norm, x), mask, NULL));
    return kg_add(x, kg_mlp_forward(&L->mlp, kg_norm_forward(&L->mlp_norm, x)));
}

/* One training step with per-layer recomputation. xs[l] is layer l's input (kept, 1·T·C). */
static bool train_step(bench_model *bm, kg_ctx *ctx, kg_tensor *ids, kg_tensor *targets,
                       kg_tensor *mask, int64_t step, double *loss)
{
    int L = bm->n_layers;
    kg_tensor **xs = calloc((size_t)L + 1, sizeof *xs);
    if (!xs)
        return false;
    kg_no_grad_begin(ctx); /* forward: keep each layer's input only */
    xs[0] = kg_tensor_keep(kg_embed_forward(&bm->tokens, ids));
    for (int l = 0; l < L; l++) {
        kg_scope s = kg_scope_begin(ctx);
        xs[l + 1] = kg_tensor_keep(layer_forward(&bm->layers[l], xs[l], mask));
        kg_scope_end(ctx, s);
    }
    kg_no_grad_end(ctx);
    kg_scope s = kg_scope_begin(ctx); /* the head and the loss */
    kg_set_requires_grad(xs[L], true);
    kg_tensor *logits = kg_linear_forward(&bm->lm_head, kg_norm_forward(&bm->final_norm, xs[L]));
    int64_t T = kg_tensor_dim(ids, 1);
    kg_tensor *l = kg_cross_entropy(kg_reshape(logits, 2, (int64_t[]){T, V}), targets, -100);
    kg_backward(l);
    *loss = kg_item(l);
    kg_scope_end(ctx, s);
    for (int i = L - 1; i >= 0 && !kg_ctx_status(ctx); i--) { /* recompute, then backward */
        s = kg_scope_begin(ctx);
        kg_set_requires_grad(xs[i], i > 0); /* the embedding is frozen: no dx for layer 0 */
        kg_tensor *y = layer_forward(&bm->layers[i], xs[i], mask);
        kg_backward(kg_sum_all(kg_mul(y, kg_grad(xs[i + 1]))));
        kg_scope_end(ctx, s);
        kg_tensor_free(xs[i + 1]);
    }
    kg_tensor_free(xs[0]);
    free(xs);
    s = kg_scope_begin(ctx);
    for (int i = 0; i < bm->n_factors && !kg_ctx_status(ctx); i++) {
        kg_tensor *g = kg_grad(bm->factors[i]);
        kg_adamw a = {.lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = step};
        if (g)
            kg_adamw_update(bm->factors[i], g, bm->m[i], bm->v[i], &a);
        kg_zero_grad(bm->factors[i]);
    }
    kg_scope_end(ctx, s);
    kg_flush(ctx);
    return !kg_ctx_status(ctx);
}

int main(int argc, char **argv)
{
    const char *backend = "cpu";
    int layers = 32, steps = 2, T = 256;
    bool bad = false; /* an unknown option or --help: the usage, not a run of minutes */
    for (int i = 1; i < argc && !bad; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            bad = true;
        else if (!strcmp(argv[i], "--backend"))
            backend = v;
        else if (!strcmp(argv[i], "--layers"))
            layers = atoi(v);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(v);
        else if (!strcmp(argv[i], "--seq"))
            T = atoi(v);
        else
            bad = true;
    }
    if (bad || layers < 1 || steps < 1 || T < 2) {
        fprintf(stderr, "usage: bench_7b [--backend cpu|vulkan] [--layers N] [--steps S] "
                        "[--seq T]\n");
        return 2;
    }
    kg_ctx *ctx = kg_ctx_new(strcmp(backend, "vulkan") ? KG_BACKEND_CPU : KG_BACKEND_VULKAN);
    if (!ctx || kg_ctx_status(ctx)) {
        fprintf(stderr, "bench_7b: %s\n", ctx ? kg_error(ctx) : "out of memory");
        return 1;
    }
    printf("Mistral-7B shapes (%d of 32 layers), frozen q4_0, Kron-LoRA A 2x4 rank 8 on every "
           "linear, seq %d, batch 1, on %s\n", layers, T, kg_device_name(ctx));
    double t0 = now();
    bench_model bm = {0};
    bool ok = build(&bm, ctx, layers);
    size_t cur, peak;
    kg_memory(ctx, &cur, &peak);
    int64_t n_adapter = 0;
    for (int i = 0; i < bm.n_factors; i++)
        n_adapter += kg_tensor_numel(bm.factors[i]);
    if (ok)
        printf("built in %.1f s: tensors %.2f GiB, %lld adapter parameters\n", now() - t0,
               (double)cur / (1 << 30), (long long)n_adapter);
    int32_t *idv = malloc(sizeof *idv * (size_t)T), *tv = malloc(sizeof *tv * (size_t)T);
    uint64_t seed = 99;
    for (int t = 0; t < T; t++)
        idv[t] = (int32_t)(splitmix(&seed) % V);
    for (int t = 0; t < T; t++)
        tv[t] = t + 1 < T ? idv[t + 1] : -100; /* next-token targets */
    kg_tensor *ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, T}, idv);
    kg_tensor *targets = kg_from_host(ctx, KG_DTYPE_I32, 1, (int64_t[]){T}, tv);
    kg_tensor *mask = kg_attention_mask(ctx, NULL, T, 0, true, WINDOW);
    /* Each frozen product runs three times a step (forward, recompute, dx = dy·W), 2·T FLOP per
     * weight each; the head twice (no recompute); in the first layer q, k, v, gate and up need
     * no dx (their input, the embedding, takes no gradient). */
    double per_layer = 2.0 * (double)(H * D) * C + 2.0 * (double)(HKV * D) * C + 3.0 * (double)F * C;
    double first_no_dx = (double)(H * D + 2 * HKV * D + 2 * F) * C;
    double frozen_flop =
        2.0 * T * (3.0 * per_layer * layers - first_no_dx + 2.0 * (double)V * C);
    for (int s = 1; ok && s <= steps; s++) {
        double loss, t1 = now();
        ok = train_step(&bm, ctx, ids, targets, mask, s, &loss);
        if (ok)
            printf("step %d: loss %.4f, %.1f s (%.1f GFLOPS in the frozen GEMMs)\n", s, loss,
                   now() - t1, frozen_flop / (now() - t1) / 1e9);
    }
    kg_memory(ctx, &cur, &peak);
    if (ok)
        printf("peak host memory (maxrss) %.2f GiB; peak %s tensor memory %.2f GiB\n",
               peak_host_gib(), backend, (double)peak / (1 << 30));
    else
        fprintf(stderr, "bench_7b: %s\n", kg_error(ctx));
    free(idv);
    free(tv);
    free(bm.layers);
    free(bm.factors);
    free(bm.m);
    free(bm.v);
    kg_ctx_free(ctx);
    return ok ? 0 : 1;
}
