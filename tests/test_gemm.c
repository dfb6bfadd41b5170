/* test_gemm.c — SGEMM, through the BLAS and through the portable kernel, against a plain
 * triple loop for every transpose combination, odd sizes, leading dimensions and beta.
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

typedef bool (*sgemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);

static void check(sgemm_fn f, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta)
{
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    int64_t arows = ta ? K : M, brows = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda));
    float *B = malloc(sizeof(float) * (size_t)(brows * ldb));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc));
    float *want = malloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < arows * lda; i++)
        A[i] = kg__uniform01(1, (uint64_t)i) - 0.5f;
    for (int64_t i = 0; i < brows * ldb; i++)
        B[i] = kg__uniform01(2, (uint64_t)i) - 0.5f;
    for (int64_t i = 0; i < M * ldc; i++)
        C[i] = want[i] = kg__uniform01(3, (uint64_t)i);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                       (tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * ldc + j] = (float)(0.5 * acc + beta * want[i * ldc + j]);
        }
    assert_true(f(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C, ldc));
    for (int64_t i = 0; i < M; i++)
        assert_close(C + i * ldc, want + i * ldc, N, 1e-4f, 1e-4f, "sgemm row");
    free(A);
    free(B);
    free(C);
    free(want);
}

static void run_all(sgemm_fn f)
{
    static const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {64, 64, 64},
                                       {70, 130, 300}, {5, 1030, 20}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int b = 0; b < 2; b++)
                check(f, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], b ? 0.75f : 0.0f);
}

static void test_portable(void **state)
{
    (void)state;
    run_all(kg_cpu_sgemm_portable);
}

static void test_dispatch(void **state)
{
    (void)state;
    print_message("BLAS: %s\n", kg_cpu_blas_name());
    run_all(kg_cpu_sgemm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_portable),
                                       cmocka_unit_test(test_dispatch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
