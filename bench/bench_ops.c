/* bench_ops.c — per-op speed of the Vulkan backend on the current device next to the CPU
 * backend, measured in the same run with the same inputs. Times come from kg_profile: GPU
 * timestamps on Vulkan, wall clock around each kernel on the CPU. GEMMs report GFLOPS, the
 * bandwidth-bound ops GB/s (bytes read + written once); the last column is CPU time / Vulkan
 * time (above 1: the device is faster).
 * Usage: bench_ops [repeats]      (KG_DEVICE picks the Vulkan device)
 */
#include "krongrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_case {
    const char *label, *op; /* what is printed; the op-table name whose time is read */
    int64_t m, n, k;        /* sizes, meaning per case */
    double flops, bytes;    /* per call; flops 0: a bandwidth figure is printed */
} bench_case;

#define SH(...) (int64_t[]){__VA_ARGS__}

/* Build the inputs of case c in ctx and run its op once. */
static void run_case(kg_ctx *ctx, const bench_case *c)
{
    int64_t m = c->m, n = c->n, k = c->k;
    if (strcmp(c->op, "matmul") == 0) {
        kg_tensor *a = kg_normal(ctx, 2, SH(m, k), 0, 1, 1), *b = kg_normal(ctx, 2, SH(k, n), 0, 1, 2);
        kg_matmul(a, b);
    } else if (strcmp(c->op, "add") == 0) {
        kg_add(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), kg_normal(ctx, 2, SH(m, n), 0, 1, 2));
    } else if (strcmp(c->op, "gelu") == 0) {
        kg_gelu(kg_normal(ctx, 2, SH(m, n), 0, 1, 1));
    } else if (strcmp(c->op, "softmax") == 0) {
        kg_softmax(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), NULL);
    } else if (strcmp(c->op, "layer_norm") == 0) {
        kg_layer_norm(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), kg_ones(ctx, KG_DTYPE_F32, 1, SH(n)),
                      kg_zeros(ctx, KG_DTYPE_F32, 1, SH(n)), 1e-5f);
    } else if (strcmp(c->op, "sum") == 0) {
        kg_sum(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), 0, false);
    } else if (strcmp(c->op, "rope") == 0) {
        kg_rope(kg_normal(ctx, 3, SH(8, m, n), 0, 1, 1), 0, 10000.0f);
    } else if (strcmp(c->op, "contiguous") == 0) {
        kg_contiguous(kg_transpose(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), 0, 1));
    } else if (strcmp(c->op, "lowrank_linear") == 0) {
        kg_lowrank_linear(kg_normal(ctx, 2, SH(m, n), 0, 1, 1),
                          kg_normal(ctx, 2, SH(n, k), 0, 1, 2), kg_normal(ctx, 2, SH(k, n), 0, 1, 3));
    } else if (strcmp(c->op, "kron_linear") == 0) { /* A 2×2, B1 (n/2, k), B2 (k, n/2) */
        kg_kron_linear(kg_normal(ctx, 2, SH(m, n), 0, 1, 1), kg_normal(ctx, 2, SH(2, 2), 0, 1, 4),
                       kg_normal(ctx, 2, SH(n / 2, k), 0, 1, 2),
                       kg_normal(ctx, 2, SH(k, n / 2), 0, 1, 3));
    }
}

/* Seconds per call of c's op on ctx, over `repeats` calls after one warm-up. */
static double time_case(kg_ctx *ctx, const bench_case *c, int repeats)
{
    kg_scope s = kg_scope_begin(ctx);
    run_case(ctx, c);
    kg_flush(ctx);
    kg_scope_end(ctx, s);
    kg_profile(ctx, true);
    for (int r = 0; r < repeats; r++) {
        s = kg_scope_begin(ctx);
        run_case(ctx, c);
        kg_flush(ctx);
        kg_scope_end(ctx, s);
    }
    kg_op_time t[64];
    int n = kg_profile_read(ctx, t, 64);
    kg_profile(ctx, false);
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].op, c->op) == 0)
            return t[i].seconds / (double)t[i].calls;
    return -1.0;
}

static void figure(char *buf, size_t cap, const bench_case *c, double sec)
{
    if (sec <= 0)
        snprintf(buf, cap, "%10s %12s", "-", "-");
    else if (c->flops > 0)
        snprintf(buf, cap, "%10.3f %7.1f GF/s", sec * 1e3, c->flops / sec / 1e9);
    else
        snprintf(buf, cap, "%10.3f %7.1f GB/s", sec * 1e3, c->bytes / sec / 1e9);
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    kg_ctx *cpu = kg_ctx_new(KG_BACKEND_CPU), *vk = kg_ctx_new(KG_BACKEND_VULKAN);
    if (!vk || kg_ctx_status(vk)) {
        fprintf(stderr, "bench_ops: no Vulkan device: %s\n", kg_error(vk));
        kg_ctx_free(vk);
        kg_ctx_free(cpu);
        return 1;
    }
    printf("Vulkan device: %s\nCPU: %d threads, BLAS %s\n\n", kg_device_name(vk),
           kg_cpu_thread_count(), kg_cpu_blas());
    const double f = 4.0; /* bytes per f32 */
    const bench_case cases[] = {
        {"matmul 256x256x256", "matmul", 256, 256, 256, 2.0 * 256 * 256 * 256, 0},
        {"matmul 512x512x512", "matmul", 512, 512, 512, 2.0 * 512 * 512 * 512, 0},
        {"matmul 1024x768x768", "matmul", 1024, 768, 768, 2.0 * 1024 * 768 * 768, 0},
        {"lowrank_linear 1024x768 r8", "lowrank_linear", 1024, 768, 8, 2.0 * 1024 * 8 * 1536, 0},
        {"kron_linear 1024x768 2x2 r8", "kron_linear", 1024, 768, 8,
         2.0 * 1024 * 8 * 768 + 2.0 * 1024 * 16 * 4, 0},
        {"add 1024x768", "add", 1024, 768, 0, 0, 3 * f * 1024 * 768},
        {"gelu 1024x768", "gelu", 1024, 768, 0, 0, 2 * f * 1024 * 768},
        {"softmax 1024x768", "softmax", 1024, 768, 0, 0, 2 * f * 1024 * 768},
        {"layer_norm 1024x768", "layer_norm", 1024, 768, 0, 0, 2 * f * 1024 * 768},
        {"sum axis 0 1024x768", "sum", 1024, 768, 0, 0, f * 1024 * 768},
        {"rope 8x512x64", "rope", 512, 64, 0, 0, 2 * f * 8 * 512 * 64},
        {"transpose copy 1024x768", "contiguous", 1024, 768, 0, 0, 2 * f * 1024 * 768},
    };
    printf("%-30s %10s %12s %10s %12s %9s\n", "op", "cpu ms", "cpu rate", "vk ms", "vk rate",
           "cpu/vk");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double tc = time_case(cpu, &cases[i], repeats), tv = time_case(vk, &cases[i], repeats);
        char a[64], b[64];
        figure(a, sizeof a, &cases[i], tc);
        figure(b, sizeof b, &cases[i], tv);
        printf("%-30s %s %s %8.2fx\n", cases[i].label, a, b, tv > 0 ? tc / tv : 0.0);
        fflush(stdout);
    }
    if (kg_ctx_status(vk) || kg_ctx_status(cpu))
        fprintf(stderr, "bench_ops: %s%s\n", kg_error(vk), kg_error(cpu));
    kg_ctx_free(vk);
    kg_ctx_free(cpu);
    return 0;
}
