/* gemm.c — SGEMM for the CPU backend. An optimized BLAS (OpenBLAS, else BLIS) is loaded at run
 * time; without one a portable packed, register-blocked kernel runs on the thread pool.
 *
 * Why dlopen and not link: Debian's OpenBLAS picks its kernels when it loads, and it misdetects
 * many current CPUs as "Prescott" (SSE3), running ~5x below what it can (README, "Dependencies,
 * and why"). OPENBLAS_CORETYPE must be set before the library loads, which a linked library
 * cannot arrange; loading it ourselves can. It also keeps the BLAS optional: KG_BLAS=none turns it off.
 */
#include "cpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The portable kernel -------------------------------------------------------------------- */

enum { MR = 6, NR = 16, MC = 72, KC = 256, NC = 1024 };

/* Eight floats as one value: GCC and Clang turn arithmetic on it into vector instructions
 * (one AVX register, or two SSE ones). */
typedef float v8 __attribute__((vector_size(32)));

/* acc (MR × NR) = Ap (k × MR panel) · Bp (k × NR panel). The 6 × 16 accumulator block is twelve
 * v8 values, which fit the sixteen AVX registers with room for B's row and A's broadcast. Rows
 * are written out so the compiler keeps every accumulator in a register; the function is cloned
 * per x86-64 level (by features, not by CPU model), and meson builds this file with -ffp-contract=fast, so the clones use FMA. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void micro_kernel(int64_t k, const float *Ap, const float *Bp, float acc[MR][NR])
{
    v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int64_t p = 0; p < k; p++) {
        v8 b0, b1; /* memcpy, not a helper: a helper would be compiled for the default ISA */
        memcpy(&b0, Bp + p * NR, sizeof b0);
        memcpy(&b1, Bp + p * NR + 8, sizeof b1);
        const float *a = Ap + p * MR;
        c00 += a[0] * b0, c01 += a[0] * b1;
        c10 += a[1] * b0, c11 += a[1] * b1;
        c20 += a[2] * b0, c21 += a[2] * b1;
        c30 += a[3] * b0, c31 += a[3] * b1;
        c40 += a[4] * b0, c41 += a[4] * b1;
        c50 += a[5] * b0, c51 += a[5] * b1;
    }
    v8 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    memcpy(acc, rows, sizeof rows);
}

/* Element (i, j) of op(X), where X is row-major with leading dimension ld. */
static inline float at(const float *X, int64_t ld, bool trans, int64_t i, int64_t j)
{
    return trans ? X[j * ld + i] : X[i * ld + j];
}

typedef struct gemm_job {
    bool ta;
    int64_t M, N, K, kc, nc, pc, jc;
    float alpha;
    const float *A;
    int64_t lda;
    const float *Bp; /* packed op(B)[pc:pc+kc, jc:jc+nc], NR-wide panels, zero padded */
    float *C;
    int64_t ldc;
} gemm_job;

/* Rows [lo, hi) in MC blocks: pack op(A)'s block, then multiply it by every B panel. */
static void gemm_rows(void *arg, int64_t lo, int64_t hi)
{
    const gemm_job *g = arg;
    /* A's packed block lives on this thread's stack (72 KiB): nothing to allocate, so a worker
     * has no failure it would have to report. */
    float Ap[MC * KC] __attribute__((aligned(64)));
    float acc[MR][NR];
    for (int64_t ic = lo * MC; ic < hi * MC && ic < g->M; ic += MC) {
        int64_t mc = g->M - ic < MC ? g->M - ic : MC;
        for (int64_t ir = 0; ir < mc; ir += MR)
            for (int64_t p = 0; p < g->kc; p++)
                for (int r = 0; r < MR; r++)
                    Ap[ir * g->kc + p * MR + r] =
                        ir + r < mc ? at(g->A, g->lda, g->ta, ic + ir + r, g->pc + p) : 0.0f;
        for (int64_t jr = 0; jr < g->nc; jr += NR) {
            int64_t nr = g->nc - jr < NR ? g->nc - jr : NR;
            for (int64_t ir = 0; ir < mc; ir += MR) {
                micro_kernel(g->kc, Ap + ir * g->kc, g->Bp + jr * g->kc, acc);
                int64_t mr = mc - ir < MR ? mc - ir : MR;
                for (int64_t r = 0; r < mr; r++) {
                    float *c = g->C + (ic + ir + r) * g->ldc + g->jc + jr;
                    for (int64_t j = 0; j < nr; j++)
                        c[j] += g->alpha * acc[r][j];
                }
            }
        }
    }
}

bool kg_cpu_sgemm_portable(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc)
{
    float *Bp = NULL;
    if (K > 0 && alpha != 0.0f && M > 0 && N > 0 &&
        !(Bp = kg__malloc(sizeof(float) * KC * (NC + NR))))
        return false; /* before C is touched */
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    if (!Bp)
        return true;
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            for (int64_t jr = 0; jr < nc; jr += NR)
                for (int64_t p = 0; p < kc; p++)
                    for (int j = 0; j < NR; j++)
                        Bp[jr * kc + p * NR + j] =
                            jr + j < nc ? at(B, ldb, tb, pc + p, jc + jr + j) : 0.0f;
            gemm_job g = {ta, M, N, K, kc, nc, pc, jc, alpha, A, lda, Bp, C, ldc};
            kg_cpu_parallel_for((M + MC - 1) / MC, 1, gemm_rows, &g);
        }
    }
    free(Bp);
    return true;
}

/* ---- The optional BLAS ---------------------------------------------------------------------- */

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                               const float *, int, float, float *, int);

static struct {
    pthread_once_t once;
    cblas_sgemm_fn sgemm;
    char name[160];
} blas = {.once = PTHREAD_ONCE_INIT};

static void load_blas(void)
{
    snprintf(blas.name, sizeof blas.name, "none (portable kernel, %d threads)",
             kg_cpu_threads());
    const char *want = getenv("KG_BLAS");
    if (want && strcmp(want, "none") == 0)
        return;
    /* Give OpenBLAS a core type that matches this CPU unless the user chose one. */
    if (!getenv("OPENBLAS_CORETYPE")) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            setenv("OPENBLAS_CORETYPE", "Haswell", 0);
    }
    static const char *const libs[] = {"libopenblas.so.0", "libblis.so.4"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!h)
            continue;
        cblas_sgemm_fn f = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
        if (!f) {
            dlclose(h);
            continue;
        }
        blas.sgemm = f;
        /* One BLAS thread: kg_cpu_sgemm splits each product over krongrad's own pool, so two
         * pools never spin against each other for the same cores between a GEMM and the
         * elementwise kernels around it. */
        void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        if (set_threads)
            set_threads(1);
        char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
        char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
        if (config && corename)
            snprintf(blas.name, sizeof blas.name, "%s, core %s", config(), corename());
        else
            snprintf(blas.name, sizeof blas.name, "%s", libs[i]);
        return; /* the handle stays open for the life of the process */
    }
}

const char *kg_cpu_blas_name(void)
{
    pthread_once(&blas.once, load_blas);
    return blas.name;
}

/* One product split over the pool: rows of C (split_m) or columns, in blocks of `block`. */
typedef struct blas_job {
    bool ta, tb, split_m;
    int64_t M, N, K, block;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
} blas_job;

static void blas_part(void *arg, int64_t lo, int64_t hi)
{
    const blas_job *j = arg;
    int64_t from = lo * j->block, to = hi * j->block;
    const float *A = j->A, *B = j->B;
    float *C = j->C;
    int64_t M = j->M, N = j->N;
    if (j->split_m) { /* rows [from, to) of op(A) and C */
        to = to < M ? to : M;
        A += j->ta ? from : from * j->lda;
        C += from * j->ldc;
        M = to - from;
    } else { /* columns [from, to) of op(B) and C */
        to = to < N ? to : N;
        B += j->tb ? from * j->ldb : from;
        C += from;
        N = to - from;
    }
    blas.sgemm(CBLAS_ROW_MAJOR, j->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
               j->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)M, (int)N, (int)j->K, j->alpha, A,
               (int)j->lda, B, (int)j->ldb, j->beta, C, (int)j->ldc);
}

bool kg_cpu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc)
{
    pthread_once(&blas.once, load_blas);
    if (M == 0 || N == 0)
        return true;
    /* BLAS takes int sizes; beyond that (never for our shapes) the portable kernel runs. */
    if (blas.sgemm && K > 0 && M < INT32_MAX && N < INT32_MAX && K < INT32_MAX &&
        lda < INT32_MAX && ldb < INT32_MAX && ldc < INT32_MAX) {
        /* Split the longer side of C over the threads, in blocks the BLAS kernels tile well
         * (the skinny adapter products, 1024 x 8, split their 1024 rows); products too small to
         * pay for a wake-up stay on this thread. */
        bool split_m = M >= N;
        int64_t side = split_m ? M : N, threads = kg_cpu_threads();
        int64_t block = (side + threads - 1) / threads;
        block = (block + 15) / 16 * 16;
        blas_job j = {ta, tb, split_m, M, N, K, block, alpha, beta, A, B, lda, ldb, ldc, C};
        double flops = 2.0 * (double)M * (double)N * (double)K;
        kg_cpu_parallel_for((side + block - 1) / block, flops < 2e6 ? INT64_MAX : 1, blas_part,
                            &j);
        return true;
    }
    return kg_cpu_sgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
