/* bench_gemm.c — GEMM throughput of the CPU backend. First SGEMM: the portable kernel and the
 * loaded BLAS, square sizes and the skinny shapes LoRA and Kron-LoRA produce, with the portable /
 * BLAS ratio. Then matmul_q's GEMM on frozen weights W stored in bf16, f16 and the block dtypes,
 * at the linear layers' shapes of SmolLM2-135M and DistilBERT-base over 1024 tokens, forward
 * (x·Wᵀ) and backward (dy·W), side by side with the f32 SGEMM on the same shape, interleaved.
 * --lm-head adds SmolLM2's LM head to that table, and times the fused LM head (lm_head.c).
 *   bench_gemm [seconds per SGEMM case] [--frozen-only] [--lm-head] [--rounds R]
 */
#include "krongrad.h"
#include "tensor/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef bool (*sgemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);

/* Best GFLOPS of repeated runs within the time budget (one warm-up first). */
static double gflops(sgemm_fn f, int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                     float *C, double budget)
{
    f(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    double best = 0, start = now();
    int runs = 0;
    while (runs < 3 || now() - start < budget) {
        double t0 = now();
        f(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double g = 2.0 * (double)M * (double)N * (double)K / (now() - t0) / 1e9;
        best = g > best ? g : best;
        if (++runs > 1000)
            break;
    }
    return best;
}

static void sgemm_table(double budget)
{
    static const int64_t shapes[][3] = {
        {256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048},
        {1024, 8, 768},    /* LoRA down-projection: 1024 tokens × d 768 → r 8 */
        {1024, 768, 8},    /* LoRA up-projection */
        {2048, 8, 384},    /* Kron-LoRA T1 = X·B2ᵀ with dA1 = 2: 2·1024 rows of d/2 */
    };
    printf("%6s %6s %6s %14s %14s %10s\n", "M", "N", "K", "portable GF/s", "BLAS GF/s",
           "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * (size_t)(M * K));
        float *B = malloc(sizeof(float) * (size_t)(K * N));
        float *C = malloc(sizeof(float) * (size_t)(M * N));
        if (!A || !B || !C) {
            fprintf(stderr, "bench_gemm: out of memory at %lldx%lldx%lld\n", (long long)M,
                    (long long)N, (long long)K);
            exit(1);
        }
        for (int64_t i = 0; i < M * K; i++)
            A[i] = (float)(i % 7) * 0.1f;
        for (int64_t i = 0; i < K * N; i++)
            B[i] = (float)(i % 5) * 0.1f;
        double port = gflops(kg_cpu_sgemm_portable, M, N, K, A, B, C, budget);
        double blas = gflops(kg_cpu_sgemm, M, N, K, A, B, C, budget);
        printf("%6lld %6lld %6lld %14.1f %14.1f %9.2fx\n", (long long)M, (long long)N,
               (long long)K, port, blas, port / blas);
        free(A), free(B), free(C);
    }
}

/* ---- Frozen weights ------------------------------------------------------------------------- */

/* The cases of one shape: f32 SGEMM on W, then W in each stored dtype on a path. */
typedef struct frozen_case {
    const char *name;
    kg_dtype dtype;
    kg_gemm_path path;
} frozen_case;

static const frozen_case cases[] = {
    {"f32", KG_DTYPE_F32, KG_GEMM_PANEL},          /* kg_cpu_sgemm on W itself */
    {"bf16", KG_DTYPE_BF16, KG_GEMM_AVX512_BF16},  /* vdpbf16ps */
    {"bf16>f32", KG_DTYPE_BF16, KG_GEMM_AVX512},   /* the fallback: decoded to f32 panels */
    {"f16", KG_DTYPE_F16, KG_GEMM_AVX512},
    {"q8_0", KG_DTYPE_Q8_0, KG_GEMM_AVX512},
    {"q4_0", KG_DTYPE_Q4_0, KG_GEMM_AVX512},
    {"q4_1", KG_DTYPE_Q4_1, KG_GEMM_AVX512},
    {"nf4", KG_DTYPE_NF4, KG_GEMM_AVX512},
    {"q4_0 panel", KG_DTYPE_Q4_0, KG_GEMM_PANEL},  /* before: dequantized panels + SGEMM */
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* One product of case c: y [m, ·] = x · Wᵀ (trans) or x · W, W [n, k] stored as w. */
static double time_case(const frozen_case *c, const kg_tensor *w, const float *w32, bool trans,
                        int64_t m, int64_t n, int64_t k, const float *x, float *y, void *scratch,
                        float *panel)
{
    double t0 = now();
    if (c->dtype == KG_DTYPE_F32)
        kg_cpu_sgemm(false, trans, m, trans ? n : k, trans ? k : n, 1.0f, x, trans ? k : n, w32,
                     k, 0.0f, y, trans ? n : k);
    else if (c->path != KG_GEMM_PANEL)
        kg_cpu_gemm_w(c->path, kg_cpu_raw(w), c->dtype, n, k, trans, m, x, y, scratch);
    else { /* what gemm_quant.c did before: whole f32 panels of W, then SGEMM */
        int64_t rows = (1 << 20) / k < n ? (1 << 20) / k : n;
        for (int64_t r0 = 0; r0 < n; r0 += rows) {
            int64_t nr = n - r0 < rows ? n - r0 : rows;
            kg__dequantize_rows(kg_cpu_raw(w), c->dtype, n, k, r0, nr, panel);
            if (trans)
                kg_cpu_sgemm(false, true, m, nr, k, 1.0f, x, k, panel, k, 0.0f, y + r0, n);
            else
                kg_cpu_sgemm(false, false, m, k, nr, 1.0f, x + r0, n, panel, k,
                             r0 ? 1.0f : 0.0f, y, k);
        }
    }
    return now() - t0;
}

static int frozen_table(int rounds, bool lm_head)
{
    /* (N out, K in) of the linear layers; M = 1024 tokens */
    static const struct { const char *what; int64_t n, k; } shapes[] = {
        {"SmolLM2 q,o", 576, 576},     {"SmolLM2 k,v", 192, 576},
        {"SmolLM2 gate,up", 1536, 576}, {"SmolLM2 down", 576, 1536},
        {"DistilBERT qkvo", 768, 768}, {"DistilBERT ffn1", 3072, 768},
        {"DistilBERT ffn2", 768, 3072}, {"SmolLM2 lm head", 49152, 576},
    };
    const int64_t m = 1024;
    size_t n_shapes = sizeof shapes / sizeof shapes[0] - (lm_head ? 0 : 1);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    void *scratch = malloc(kg_cpu_gemm_w_scratch());
    float *panel = malloc(sizeof(float) << 20);
    if (!ctx || kg_ctx_status(ctx) || !scratch || !panel) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    printf("\nFrozen W [N, K] in each dtype, M = %lld tokens; GFLOPS, best of %d interleaved "
           "rounds.\nbf16: AVX512-BF16 %s; others: AVX-512 f32 kernel %s (this CPU's paths: "
           "bf16 weights %s, q4_0 %s)\n", (long long)m, rounds,
           kg_cpu_gemm_w_path(KG_DTYPE_BF16) == KG_GEMM_AVX512_BF16 ? "present" : "ABSENT",
           kg_cpu_gemm_w_path(KG_DTYPE_Q4_0) != KG_GEMM_PANEL ? "present" : "ABSENT",
           kg_cpu_gemm_w_path(KG_DTYPE_BF16) == KG_GEMM_AVX512_BF16 ? "vdpbf16ps"
           : kg_cpu_gemm_w_path(KG_DTYPE_BF16) == KG_GEMM_AVX512   ? "avx512" : "panel",
           kg_cpu_gemm_w_path(KG_DTYPE_Q4_0) == KG_GEMM_AVX512 ? "avx512" : "panel");
    printf("%-16s %-4s %5s %5s", "shape", "dir", "N", "K");
    for (int c = 0; c < N_CASES; c++)
        printf(" %10s", cases[c].name);
    printf(" %8s\n", "q4_0/f32");
    for (size_t s = 0; s < n_shapes; s++) {
        int64_t n = shapes[s].n, k = shapes[s].k;
        kg_scope sc = kg_scope_begin(ctx);
        kg_tensor *w32 = kg_normal(ctx, 2, (int64_t[]){n, k}, 0.0f, 0.02f, 1);
        kg_tensor *w[N_CASES];
        for (int c = 0; c < N_CASES; c++)
            w[c] = cases[c].dtype == KG_DTYPE_F32 ? w32 : kg_quantize(w32, cases[c].dtype);
        kg_tensor *x = kg_normal(ctx, 2, (int64_t[]){m, n > k ? n : k}, 0.0f, 1.0f, 2);
        float *y = malloc(sizeof(float) * (size_t)(m * (n > k ? n : k)));
        if (kg_ctx_status(ctx) || !y) {
            fprintf(stderr, "bench_gemm: %s\n", y ? kg_error(ctx) : "out of memory");
            return 1;
        }
        for (int trans = 1; trans >= 0; trans--) {
            bool usable[N_CASES];
            double best[N_CASES];
            for (int c = 0; c < N_CASES; c++) {
                usable[c] = cases[c].path == KG_GEMM_PANEL ||
                            kg_cpu_gemm_w_path(cases[c].dtype) >= cases[c].path;
                best[c] = 1e30;
            }
            for (int r = 0; r <= rounds; r++) /* round 0 warms up */
                for (int c = 0; c < N_CASES; c++) {
                    if (!usable[c])
                        continue;
                    double t = time_case(&cases[c], w[c], kg_cpu_f32(w32), trans, m, n, k,
                                         kg_cpu_f32(x), y, scratch, panel);
                    if (r > 0 && t < best[c])
                        best[c] = t;
                }
            double flop = 2.0 * (double)m * (double)n * (double)k;
            printf("%-16s %-4s %5lld %5lld", shapes[s].what, trans ? "fwd" : "bwd", (long long)n,
                   (long long)k);
            for (int c = 0; c < N_CASES; c++)
                if (usable[c])
                    printf(" %10.1f", flop / best[c] / 1e9);
                else
                    printf(" %10s", "-");
            if (usable[5])
                printf(" %7.2fx\n", best[0] / best[5]);
            else
                printf(" %8s\n", "-");
        }
        free(y);
        kg_scope_end(ctx, sc);
    }
    free(scratch);
    free(panel);
    kg_ctx_free(ctx);
    return 0;
}

/* ---- The fused LM head --------------------------------------------------------------------- */

/* One step of the fused head (tensor/ops/lm_head.c) at SmolLM2-135M's shape: the targets'
 * log-probabilities of 1,016 rows over the 49,152-token vocabulary, and x's gradient, which the
 * forward forms (two GEMM passes over W: 4·N·C·V FLOP). W in f32 and in bf16 (--frozen bf16),
 * each with the kernel's default budget of logits per row block and with the old one (4 Mi:
 * 85 rows), interleaved. */
static double time_head(kg_ctx *ctx, kg_tensor *w, kg_tensor *t, int64_t N, int64_t C, int seed)
{
    kg_scope sc = kg_scope_begin(ctx);
    kg_tensor *x = kg_normal(ctx, 2, (int64_t[]){N, C}, 0.0f, 1.0f, (uint64_t)seed);
    kg_set_requires_grad(x, true);
    double t0 = now();
    kg_backward(kg_sum_all(kg_linear_log_prob(x, w, t, -100)));
    float *dx = kg_tensor_to_f32(kg_grad(x)); /* flushes */
    double dt = now() - t0;
    free(dx);
    kg_scope_end(ctx, sc);
    return dt;
}

static int fused_head_table(int rounds)
{
    const int64_t N = 1016, C = 576, V = 49152;
    static const int64_t budgets[] = {0, 1 << 22}; /* 0: the default */
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *w32 = kg_tensor_keep(kg_normal(ctx, 2, (int64_t[]){V, C}, 0.0f, 0.02f, 1));
    kg_tensor *w[2] = {w32, kg_tensor_keep(kg_quantize(w32, KG_DTYPE_BF16))};
    int32_t *tg = malloc(sizeof *tg * (size_t)N);
    for (int64_t i = 0; tg && i < N; i++)
        tg[i] = (int32_t)((i * 7919) % V);
    kg_tensor *t = tg ? kg_tensor_keep(kg_from_host(ctx, KG_DTYPE_I32, 1, &N, tg)) : NULL;
    free(tg);
    if (kg_ctx_status(ctx) || !t) {
        fprintf(stderr, "bench_gemm: %s\n", t ? kg_error(ctx) : "out of memory");
        return 1;
    }
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}};
    for (int r = 0; r <= rounds; r++) /* round 0 warms up */
        for (int d = 0; d < 2; d++)
            for (int b = 0; b < 2; b++) {
                kg_cpu_lm_head_block(budgets[b]);
                double dt = time_head(ctx, w[d], t, N, C, 2 + r);
                if (r > 0 && dt < best[d][b])
                    best[d][b] = dt;
            }
    kg_cpu_lm_head_block(0);
    if (kg_ctx_status(ctx)) {
        fprintf(stderr, "bench_gemm: %s\n", kg_error(ctx));
        return 1;
    }
    printf("\nFused LM head (kg_linear_log_prob, log-probabilities and dx), N %lld rows, C %lld, "
           "V %lld; best of %d interleaved rounds\n%-6s %22s %22s %8s\n", (long long)N,
           (long long)C, (long long)V, rounds, "W", "default block: s, GF/s",
           "4 Mi logits: s, GF/s", "speedup");
    double flop = 4.0 * (double)N * (double)C * (double)V;
    for (int d = 0; d < 2; d++)
        printf("%-6s %12.3f %9.1f %12.3f %9.1f %7.2fx\n", d ? "bf16" : "f32", best[d][0],
               flop / best[d][0] / 1e9, best[d][1], flop / best[d][1] / 1e9,
               best[d][1] / best[d][0]);
    kg_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    double budget = 1.0;
    bool frozen_only = false, lm_head = false;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--frozen-only"))
            frozen_only = true;
        else if (!strcmp(argv[i], "--lm-head"))
            lm_head = true;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if ((budget = strtod(argv[i], &end)) <= 0 || *end) {
            fprintf(stderr, "usage: bench_gemm [SECONDS per SGEMM shape] [--frozen-only] "
                            "[--lm-head] [--rounds N]\n");
            return 2;
        }
    }
    printf("krongrad GEMM benchmark, %d threads\nBLAS: %s\n\n", kg_cpu_threads(),
           kg_cpu_blas_name());
    if (!frozen_only)
        sgemm_table(budget);
    rounds = rounds < 1 ? 1 : rounds;
    int rc = frozen_table(rounds, lm_head);
    return rc || !lm_head ? rc : fused_head_table(rounds);
}
