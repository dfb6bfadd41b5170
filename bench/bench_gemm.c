/* bench_gemm.c — SGEMM throughput of the CPU backend: the portable kernel and the loaded BLAS,
 * each timed in this run, square sizes and the skinny shapes LoRA and Kron-LoRA produce.
 * Prints GFLOPS and the portable / BLAS ratio. Usage: bench_gemm [seconds per case]
 */
#include "krongrad.h"
#include "tensor/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 1.0;
    static const int64_t shapes[][3] = {
        {256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048},
        {1024, 8, 768},    /* LoRA down-projection: 1024 tokens × d 768 → r 8 */
        {1024, 768, 8},    /* LoRA up-projection */
        {2048, 8, 384},    /* Kron-LoRA T1 = X·B2ᵀ with dA1 = 2: 2·1024 rows of d/2 */
    };
    printf("krongrad GEMM benchmark, %d threads\nBLAS: %s\n\n", kg_cpu_threads(),
           kg_cpu_blas_name());
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
            return 1;
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
    return 0;
}
