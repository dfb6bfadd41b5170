/* test_exp_rows.c — the fused LM head's row passes (tensor/cpu/exp_rows.c): the portable loop
 * and, where this CPU has them, the explicit AVX2 (8-lane) and AVX-512F (16-lane) ones, against
 * double-precision exp and sums and against each other, on lengths around the lane widths and
 * unaligned rows.
 *
 * Bounds. e^x for x in [-87, 0]: within EXP_REL = 4·2⁻²³ (4 ulp) of exp((double)x) on either
 * path (the polynomial is ~2 ulp; the vector paths' fused multiply-adds move the rounding, not
 * the error's size), so two paths differ by at most twice that. Below -87 both give e^-87.
 * Σ e^(z - m) over n entries: the exp bound plus f32 accumulation of positive terms in 16 or 32
 * lanes: a sum of positive terms is within (d - 1)·2⁻²⁴ of exact (relative), d the most
 * additions on one term's way to the result: ⌊n/16⌋ in a lane (AVX2's two accumulators of 8
 * lanes make 16 too), then at most 15 of the tail and 16 across the lanes, so ⌊n/16⌋ + 32
 * bounds every path. The max is exact.
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

#include <math.h>

#define EXP_REL (4.0 / 8388608.0)

static const int64_t lengths[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 1000, 49152 + 7};

static kg_exp_path paths[3];
static const char *path_name[] = {"portable", "AVX2", "AVX-512"};
static int n_paths;

static int setup(void **state)
{
    (void)state;
    paths[n_paths++] = KG_EXP_SCALAR;
    if (kg_cpu_exp_path() >= KG_EXP_AVX2)
        paths[n_paths++] = KG_EXP_AVX2;
    if (kg_cpu_exp_path() == KG_EXP_AVX512)
        paths[n_paths++] = KG_EXP_AVX512;
    if (n_paths < 3)
        print_message("checked: %d of the 3 paths (this CPU has no %s)\n", n_paths,
                      n_paths == 1 ? "AVX2 with FMA" : "AVX-512F");
    return 0;
}

/* n values in [lo, hi], from a fixed LCG: the same on every run. */
static void fill(float *z, int64_t n, float lo, float hi, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        z[i] = lo + (hi - lo) * (float)(seed >> 8) * (1.0f / 16777216.0f);
    }
}

static void test_exp_matches_double(void **state)
{
    (void)state;
    enum { N = 200003 };
    float *x = malloc(sizeof(float) * N), *y[3];
    fill(x, N, -87.0f, 0.0f, 1);
    x[0] = 0.0f, x[1] = -87.0f, x[2] = -1e-8f, x[3] = -0.34657359f; /* ends, near 0, -ln2/2 */
    for (int p = 0; p < n_paths; p++) {
        y[p] = malloc(sizeof(float) * N);
        memcpy(y[p], x, sizeof(float) * N);
        kg_cpu_scale_exp(paths[p], y[p], N, 0.0f, 1.0f);
        double worst = 0.0;
        for (int64_t i = 0; i < N; i++) {
            double want = exp((double)x[i]), rel = fabs(y[p][i] - want) / want;
            worst = rel > worst ? rel : worst;
            if (rel > EXP_REL)
                fail_msg("path %d: e^%.9g = %.9g, want %.9g (relative error %.3g > %.3g)", p,
                         (double)x[i], (double)y[p][i], want, rel, EXP_REL);
        }
        print_message("%s: worst relative error of e^x %.3g (%.2f ulp)\n", path_name[paths[p]],
                      worst, worst * 8388608.0);
    }
    for (int p = 1; p < n_paths; p++)
        for (int64_t i = 0; i < N; i++)
            if (fabs(y[0][i] - y[p][i]) > 2.0 * EXP_REL * y[0][i])
                fail_msg("e^%.9g: portable %.9g, %s %.9g", (double)x[i], (double)y[0][i],
                         path_name[paths[p]], (double)y[p][i]);
    /* below -87 (and far below): e^-87, not 0 or a wrapped exponent */
    for (int p = 0; p < n_paths; p++) {
        float z[3] = {-88.0f, -1000.0f, -INFINITY};
        kg_cpu_scale_exp(paths[p], z, 3, 0.0f, 1.0f);
        for (int i = 0; i < 3; i++)
            assert_true(fabs(z[i] - exp(-87.0)) <= EXP_REL * exp(-87.0));
    }
    for (int p = 0; p < n_paths; p++)
        free(y[p]);
    free(x);
}

/* z ← g·e^(z - shift) and Σ e^(z - m) on rows of every length, starting one float past an
 * aligned address, against double exp of the same f32 differences z - shift (whose rounding is
 * the kernels' input, not their error); the entries past the row must stay untouched. */
static void test_row_passes_match_double(void **state)
{
    (void)state;
    int64_t most = lengths[sizeof lengths / sizeof lengths[0] - 1];
    float *buf = malloc(sizeof(float) * (size_t)(most + 2)), *z = buf + 1;
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        for (int p = 0; p < n_paths; p++) {
            fill(z, n, -30.0f, 12.0f, (uint32_t)(7 + l));
            z[n] = 12345.0f;
            double sum = 0.0; /* of the f32 differences the kernels form */
            for (int64_t k = 0; k < n; k++)
                sum += exp((double)(z[k] - 12.0f));
            float got = kg_cpu_sum_exp(paths[p], z, n, 12.0f);
            double bound = EXP_REL + (double)(n / 16 + 32) / 16777216.0;
            if (fabs(got - sum) > bound * sum)
                fail_msg("path %d, n %lld: Σ e^(z - m) = %.9g, want %.9g", p, (long long)n,
                         (double)got, sum);
            float *want = malloc(sizeof(float) * (size_t)n);
            for (int64_t k = 0; k < n; k++)
                want[k] = (float)(-0.75 * exp((double)(z[k] - 3.5f)));
            kg_cpu_scale_exp(paths[p], z, n, 3.5f, -0.75f);
            for (int64_t k = 0; k < n; k++)
                if (fabs(z[k] - want[k]) > (EXP_REL + 1.0 / 16777216.0) * fabs(want[k]))
                    fail_msg("path %d, n %lld, k %lld: -0.75·e^(z - 3.5) = %.9g, want %.9g", p,
                             (long long)n, (long long)k, (double)z[k], (double)want[k]);
            assert_true(z[n] == 12345.0f); /* the masked tail wrote nothing past the row */
            free(want);
        }
    }
    free(buf);
}

static void test_row_max_is_exact(void **state)
{
    (void)state;
    float z[80];
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0] && lengths[l] <= 79; l++) {
        int64_t n = lengths[l];
        for (int64_t at = 0; at < n; at++) { /* the max at every position, tail lanes included */
            fill(z + 1, n, -5.0f, 5.0f, (uint32_t)(100 + at));
            z[1 + at] = 9.5f;
            z[1 + n] = 1e30f; /* past the row: must not count */
            for (int p = 0; p < n_paths; p++)
                assert_true(kg_cpu_row_max(paths[p], z + 1, n) == 9.5f);
        }
    }
    float masked[20];
    for (int i = 0; i < 20; i++)
        masked[i] = -INFINITY;
    for (int p = 0; p < n_paths; p++)
        assert_true(kg_cpu_row_max(paths[p], masked, 20) == -INFINITY);
}

/* The LM head through either path: the same log-probabilities and gradient within the bound
 * the exp passes carry (a softmax's probabilities and log-sum-exp are a few of those ulps off). */
static void test_lm_head_paths_agree(void **state)
{
    (void)state;
    if (n_paths < 2)
        skip();
    enum { N = 9, C = 16, V = 3001 };
    float *lp[3], *gx[3];
    for (int p = 0; p < n_paths; p++) {
        kg_cpu_exp_cap(paths[p]);
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_tensor *x = kg_uniform(ctx, 2, SHAPE(N, C), -1.0f, 1.0f, 3);
        kg_tensor *w = kg_uniform(ctx, 2, SHAPE(V, C), -1.0f, 1.0f, 4);
        kg_set_requires_grad(x, true);
        int32_t t[N] = {0, 3000, 17, 1500, 2, 9, 2999, 100, 1};
        kg_tensor *y = kg_linear_log_prob(x, w, kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(N), t),
                                          -100);
        kg_backward(kg_sum_all(y));
        assert_ok(ctx);
        lp[p] = kg_tensor_to_f32(y);
        gx[p] = kg_tensor_to_f32(kg_grad(x));
        kg_ctx_free(ctx);
    }
    kg_cpu_exp_cap(KG_EXP_AVX512);
    for (int p = 1; p < n_paths; p++) {
        print_message("%s against the portable path\n", path_name[paths[p]]);
        assert_close(lp[p], lp[0], N, 2e-6f, 1e-6f, "log-probabilities");
        assert_close(gx[p], gx[0], N * C, 1e-6f, 1e-5f, "dx");
    }
    for (int p = 0; p < n_paths; p++)
        free(lp[p]), free(gx[p]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_matches_double),
        cmocka_unit_test(test_row_passes_match_double),
        cmocka_unit_test(test_row_max_is_exact),
        cmocka_unit_test(test_lm_head_paths_agree),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
