/* test_gemv_int.c — the integer-dot matrix-vector kernels (tensor/cpu/gemv.c: x quantized to
 * 8-bit blocks of 32, Σ q_w·q_x in int32) for q8_0, q4_0 and q4_1 weights: against a scalar
 * reference of the same quantized arithmetic (tight), and against the f32-activation product
 * within the bound that x's 8-bit rounding allows. meson runs it with each ISA the CPU has
 * (default, KG_GEMV=avx2) and with KG_GEMV=f32, where the f32 kernels must meet the tight bound.
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

#include <math.h>

static kg_ctx *ctx;

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

/* x's blocks as the kernels quantize them (gemv.c, quantize_x_256): dx = max|x|/127,
 * q = x·(1/dx) rounded to nearest even, s = dx·Σ q. */
static void ref_quantize_x(const float *x, int64_t K, int8_t *q, float *d, float *s)
{
    for (int64_t b = 0; b < K / 32; b++) {
        float amax = 0.0f;
        for (int k = 0; k < 32; k++)
            amax = fmaxf(amax, fabsf(x[32 * b + k]));
        float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        int sum = 0;
        for (int k = 0; k < 32; k++) {
            q[32 * b + k] = (int8_t)nearbyintf(x[32 * b + k] * id);
            sum += q[32 * b + k];
        }
        d[b] = dd;
        s[b] = dd * (float)sum;
    }
}

static float f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return kg_f16_to_f32(h);
}

/* y_n = Σ_b d_w·dx·Σ q_w·q_x + m_w·sx, in double from the same quantities; *mag gets
 * Σ_b |d_w·dx|·Σ |q_w·q_x| + |m_w·sx|, which bounds every partial sum the kernel's f32 lanes
 * and their reduction form (the scale of their rounding). */
static double ref_row(kg_dtype dt, const uint8_t *row, int64_t K, const int8_t *q,
                      const float *d, const float *s, double *mag)
{
    size_t bb = dt == KG_DTYPE_Q8_0 ? 34 : dt == KG_DTYPE_Q4_0 ? 18 : 20;
    double y = 0;
    *mag = 0;
    for (int64_t b = 0; b < K / 32; b++, row += bb) {
        float dw = f16(row), mw = dt == KG_DTYPE_Q4_1 ? f16(row + 2) : -8.0f * dw;
        int32_t dot = 0, absdot = 0;
        for (int k = 0; k < 32; k++) {
            int qw;
            if (dt == KG_DTYPE_Q8_0)
                qw = (int8_t)row[2 + k];
            else /* element k in the low nibble of byte k, k + 16 in the high one */
                qw = (row[bb - 16 + k % 16] >> (k < 16 ? 0 : 4)) & 15;
            dot += qw * q[32 * b + k];
            absdot += abs(qw * q[32 * b + k]);
        }
        double t = (double)(dw * d[b]) * dot, u = dt == KG_DTYPE_Q8_0 ? 0 : (double)mw * s[b];
        y += t + u;
        *mag += fabs((double)(dw * d[b]) * absdot) + fabs(u);
    }
    return y;
}

/* Odd N, K of one, three and nineteen blocks; x with blocks of very different size (and an
 * all-zero one, dx = 0). */
static void test_int_kernels(void **state)
{
    (void)state;
    static const kg_dtype dts[] = {KG_DTYPE_Q8_0, KG_DTYPE_Q4_0, KG_DTYPE_Q4_1};
    static const int64_t Ks[] = {32, 96, 608};
    const char *env = getenv("KG_GEMV");
    bool ints = !(env && strstr(env, "f32"));
    assert_int_equal(strstr(kg_cpu_gemv_name(), "int8") != NULL, ints);
    double worst_share = 0; /* the largest error seen, as a share of the bound */
    for (int t = 0; t < 3; t++)
        for (int kk = 0; kk < 3; kk++) {
            kg_dtype dt = dts[t];
            int64_t N = 37, K = Ks[kk], nb = K / 32;
            float *w = malloc(sizeof *w * (size_t)(N * K)), *x = malloc(sizeof *x * (size_t)K);
            int8_t *q = malloc((size_t)K);
            float *d = malloc(sizeof *d * (size_t)nb), *s = malloc(sizeof *s * (size_t)nb);
            uint64_t seed = 7 + (uint64_t)(3 * t + kk);
            for (int64_t j = 0; j < N * K; j++)
                w[j] = frand(&seed) + (dt == KG_DTYPE_Q4_1 ? 0.3f : 0.0f);
            for (int64_t j = 0; j < K; j++) { /* block b scaled by 4^(b mod 5 - 2); block 1 zero */
                float r = frand(&seed);
                x[j] = j / 32 == 1 && nb > 1 ? 0.0f : r * ldexpf(1.0f, 2 * (int)(j / 32 % 5) - 4);
            }
            kg_scope scope = kg_scope_begin(ctx);
            kg_tensor *wq = kg_quantize(kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(N, K), w), dt);
            float *deq = kg_tensor_to_f32(kg_cast(wq, KG_DTYPE_F32));
            assert_ok(ctx);
            float y[37];
            kg_cpu_gemv(dt, kg_cpu_raw(wq), N, K, x, y);
            ref_quantize_x(x, K, q, d, s);
            size_t row_bytes = kg_dtype_bytes(dt, K);
            for (int64_t n = 0; n < N; n++) {
                double mag, exact = 0, bound = 0, absprod = 0;
                double want = ref_row(dt, (const uint8_t *)kg_cpu_raw(wq) + n * row_bytes, K, q, d,
                                      s, &mag);
                for (int64_t k = 0; k < K; k++) {
                    double wk = deq[n * K + k];
                    exact += wk * x[k];
                    absprod += fabs(wk * x[k]);
                    /* |x_k - dx·q_k| ≤ dx/2 (plus x·(1/dx)'s own rounding: 1e-6 of dx) */
                    bound += fabs(wk) * d[k / 32] * (0.5 + 1e-6);
                }
                char what[96];
                if (ints) {
                    /* the same arithmetic: only the f32 sums' order and rounding differ, each add
                     * by at most 2^-24 of a partial sum ≤ mag */
                    if (fabs(y[n] - want) > 6e-8 * (double)(nb + 8) * mag + 1e-30)
                        fail_msg("%s K=%lld row %lld: %.9g, the scalar reference %.9g (scale %g)",
                                 kg_dtype_name(dt), (long long)K, (long long)n, y[n], want, mag);
                    /* against the f32 product: x's rounding, plus f32 sums on either side */
                    double tol = bound + 1e-6 * (mag + absprod);
                    double err = fabs(y[n] - exact);
                    if (err > tol) {
                        snprintf(what, sizeof what, "%s K=%lld", kg_dtype_name(dt), (long long)K);
                        fail_msg("%s row %lld: %.9g against the f32 product %.9g, bound %.3g",
                                 what, (long long)n, y[n], exact, tol);
                    }
                    if (err / tol > worst_share)
                        worst_share = err / tol;
                } else if (fabs(y[n] - exact) > 1e-5 * absprod + 1e-30) {
                    fail_msg("%s K=%lld row %lld: f32 kernels %.9g, the f32 product %.9g",
                             kg_dtype_name(dt), (long long)K, (long long)n, y[n], exact);
                }
            }
            free(deq);
            kg_scope_end(ctx, scope);
            free(w), free(x), free(q), free(d), free(s);
        }
    /* the integer path did round x: its error is not zero, and within the bound */
    if (ints)
        assert_true(worst_share > 0.01 && worst_share <= 1.0);
    print_message("cpu: %s — 3 dtypes x 3 widths match; worst error %.2f of x's rounding bound\n",
                  kg_cpu_gemv_name(), worst_share);
}

/* A NaN in x makes every output NaN, as the f32 product would. */
static void test_int_nan(void **state)
{
    (void)state;
    int64_t N = 5, K = 64;
    float w[5 * 64], x[64], y[5];
    uint64_t seed = 3;
    for (int j = 0; j < N * K; j++)
        w[j] = frand(&seed);
    for (int j = 0; j < K; j++)
        x[j] = frand(&seed);
    x[40] = NAN;
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *wq = kg_quantize(kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(N, K), w), KG_DTYPE_Q4_1);
    assert_ok(ctx);
    kg_cpu_gemv(KG_DTYPE_Q4_1, kg_cpu_raw(wq), N, K, x, y);
    for (int n = 0; n < N; n++)
        assert_true(isnan(y[n]));
    kg_scope_end(ctx, scope);
}

int main(void)
{
    ctx = kg_ctx_new(KG_BACKEND_CPU);
    if (!kg_cpu_gemv_supports(KG_DTYPE_Q4_1)) {
        printf("skipped: no matrix-vector kernels on this CPU (%s)\n", kg_cpu_gemv_name());
        kg_ctx_free(ctx);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_kernels),
        cmocka_unit_test(test_int_nan),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kg_ctx_free(ctx);
    return rc;
}
