/* test_gemm_w.c — matmul_q's CPU GEMM on frozen weights (tensor/cpu/gemm_packed.c), on every
 * path this CPU runs (panel, AVX-512 f32, AVX512-BF16), for every stored dtype, forward and the
 * backward dx, odd shapes and blocks of K and N past one packing block, against a double-precision
 * product of the dequantized weights.
 *
 * Tolerances. The f32 paths: |y - ref| <= 2·K·2⁻²⁴·Σ|x·w| (twice the worst case of f32
 * accumulation over K terms); one wrongly decoded weight moves y by |x·w| ≈ Σ|x·w| / K, far
 * beyond it. The bf16 path multiplies bf16(x) (nearest even) by W's bf16 values exactly and
 * accumulates in f32, so against the product of the *rounded* x it meets the same bound; against
 * the unrounded x it is off by up to 2⁻⁹·Σ|x·w| (bf16's unit roundoff), which is checked too,
 * and must be at least 4× worse than against the rounded one (else x was not rounded as stated).
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

static const char *path_name[] = {"panel", "avx512", "avx512-bf16"};

/* ref[i][j] = Σ_p xr[i][p] · op(W)[p][j] in double, and abs[i][j] = Σ |·| */
static void reference(const float *x, const float *w, int64_t m, int64_t n, int64_t k,
                      bool trans, double *ref, double *abs)
{
    int64_t K = trans ? k : n, N = trans ? n : k;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0, a = 0.0;
            for (int64_t p = 0; p < K; p++) {
                double v = (double)x[i * K + p] * (trans ? w[j * k + p] : w[p * k + j]);
                s += v;
                a += fabs(v);
            }
            ref[i * N + j] = s;
            abs[i * N + j] = a;
        }
}

/* The largest |got - ref| / abs, where abs > 0. */
static double worst(const float *got, const double *ref, const double *abs, int64_t n)
{
    double e = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (abs[i] > 0.0 && fabs(got[i] - ref[i]) / abs[i] > e)
            e = fabs(got[i] - ref[i]) / abs[i];
    return e;
}

static float *rounded_bf16(const float *x, int64_t n)
{
    float *r = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        r[i] = kg_bf16_to_f32(kg_f32_to_bf16(x[i]));
    return r;
}

/* One product y = x·op(W) [m, N] and its dx = g·op(W)ᵀ, checked as the header says. */
static void check(kg_ctx *ctx, kg_gemm_path path, kg_dtype dt, int64_t m, int64_t n, int64_t k,
                  bool trans)
{
    kg_scope s = kg_scope_begin(ctx);
    int64_t K = trans ? k : n, N = trans ? n : k;
    kg_tensor *w32 = kg_normal(ctx, 2, SHAPE(n, k), 0.0f, 0.1f, (uint64_t)(n * 31 + k));
    kg_tensor *w = kg_quantize(w32, dt);
    kg_tensor *x = kg_normal(ctx, 2, SHAPE(m, K), 0.0f, 1.0f, (uint64_t)m);
    kg_tensor *g = kg_normal(ctx, 2, SHAPE(m, N), 0.0f, 1.0f, (uint64_t)m + 1);
    kg_set_requires_grad(x, true);
    kg_tensor *y = kg_matmul_q(x, w, trans);
    assert_true(kg_backward(kg_sum_all(kg_mul(y, g))));
    assert_ok(ctx);
    float *wv = kg_tensor_to_f32(w), *xv = kg_tensor_to_f32(x), *gv = kg_tensor_to_f32(g);
    float *yv = kg_tensor_to_f32(y), *dxv = kg_tensor_to_f32(kg_grad(x));
    bool bf16 = path == KG_GEMM_AVX512_BF16;
    /* dx = g · op(W)ᵀ: the product with the other orientation (W [n, k] either way) */
    struct { const char *what; const float *in, *got; int64_t rows, out; bool trans; } c[2] = {
        {"y", xv, yv, m, N, trans}, {"dx", gv, dxv, m, K, !trans}};
    for (int t = 0; t < 2; t++) {
        int64_t depth = c[t].trans ? k : n, numel = c[t].rows * c[t].out;
        double *ref = malloc(sizeof(double) * (size_t)numel);
        double *abs = malloc(sizeof(double) * (size_t)numel);
        float *in = bf16 ? rounded_bf16(c[t].in, c[t].rows * depth) : NULL;
        reference(in ? in : c[t].in, wv, m, n, k, c[t].trans, ref, abs);
        double e = worst(c[t].got, ref, abs, numel), bound = 2.0 * (double)depth * 0x1p-24;
        if (e > bound)
            fail_msg("%s %s %s m %lld n %lld k %lld%s: error %.3g of Σ|x·w| > %.3g",
                     path_name[path], kg_dtype_name(dt), c[t].what, (long long)m, (long long)n,
                     (long long)k, trans ? " (x·Wᵀ)" : " (x·W)", e, bound);
        if (bf16) { /* against the unrounded x: bf16's rounding, and clearly more than above */
            reference(c[t].in, wv, m, n, k, c[t].trans, ref, abs);
            double e_raw = worst(c[t].got, ref, abs, numel);
            if (e_raw > 0x1p-9 + bound || !(e_raw > 4.0 * e))
                fail_msg("%s %s m %lld n %lld k %lld: error %.3g against unrounded x, %.3g "
                         "against bf16(x): expected <= 2^-9 and > 4x", kg_dtype_name(dt),
                         c[t].what, (long long)m, (long long)n, (long long)k, e_raw, e);
        }
        free(in);
        free(ref);
        free(abs);
    }
    free(wv), free(xv), free(gv), free(yv), free(dxv);
    kg_scope_end(ctx, s);
}

/* Shapes (m, n, k): single rows, MR and NR edges, K past a packing block (256 f32 / 512 bf16
 * elements) with a short tail, N past the widest B block (1536), enough rows that the threads
 * split Y's rows. k is a multiple of 64 so every block dtype takes it; the 16-bit dtypes also
 * get an odd k. In x·W the depth is n, which is odd here. */
static const int64_t shapes[][3] = {{1, 33, 64}, {13, 40, 128}, {37, 70, 576}, {100, 1601, 64},
                                    {25, 517, 640}};

static void run_path(kg_gemm_path path)
{
    kg_cpu_gemm_w_cap(path);
    kg_dtype dts[] = {KG_DTYPE_F16, KG_DTYPE_BF16, KG_DTYPE_Q8_0, KG_DTYPE_Q4_0, KG_DTYPE_Q4_1,
                      KG_DTYPE_NF4};
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    int ran = 0;
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        kg_gemm_path got = kg_cpu_gemm_w_path(dts[d]);
        if (got != path) /* this CPU lacks it, or only bf16 weights take it */
            continue;
        ran++;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int trans = 0; trans < 2; trans++)
                check(ctx, path, dts[d], shapes[s][0], shapes[s][1], shapes[s][2], trans);
        if (dts[d] == KG_DTYPE_F16 || dts[d] == KG_DTYPE_BF16)
            for (int trans = 0; trans < 2; trans++)
                check(ctx, path, dts[d], 29, 45, 77, trans);
    }
    kg_ctx_free(ctx);
    kg_cpu_gemm_w_cap(KG_GEMM_AVX512_BF16);
    if (!ran)
        print_message("skipped: this CPU has no %s path\n", path_name[path]);
}

static void test_panel(void **state) { (void)state; run_path(KG_GEMM_PANEL); }
static void test_avx512(void **state) { (void)state; run_path(KG_GEMM_AVX512); }
static void test_avx512_bf16(void **state) { (void)state; run_path(KG_GEMM_AVX512_BF16); }

int main(void)
{
    /* One-row products go to the matrix-vector kernels (gemv.c, tested in test_decode); this file
     * tests the GEMM kernels, so its m = 1 shapes must reach them too. */
    setenv("KG_GEMV", "off", 1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_panel),
                                       cmocka_unit_test(test_avx512),
                                       cmocka_unit_test(test_avx512_bf16)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
