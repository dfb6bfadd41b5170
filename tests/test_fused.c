/* test_fused.c — each fused op against the unfused ops it replaces, values and gradients, on
 * shapes that exercise its blocking: kg_linear_log_prob against log_softmax(x·Wᵀ) picked by
 * one_hot (W f32, or frozen in bf16, f16 or blocks against matmul_q); kg_swiglu against silu and mul; kg_softmax_scaled against scale, mask add and a
 * softmax spelled out in exp, max, sum and div; gelu's one-pass backward against its ops. Runs on the CPU backend, or on Vulkan with
 * argument "vulkan" (77 without a device).
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

static kg_backend_kind backend;

/* The values of out, then the gradients of x and W, of loss = Σ out ⊙ r (r fixed, random). */
typedef kg_tensor *(*lp_fn)(kg_tensor *x, kg_tensor *w, kg_tensor *t);

static kg_tensor *fused(kg_tensor *x, kg_tensor *w, kg_tensor *t)
{
    return kg_linear_log_prob(x, w, t, -100);
}

static kg_tensor *unfused(kg_tensor *x, kg_tensor *w, kg_tensor *t)
{
    int64_t V = kg_tensor_dim(w, 0);
    kg_tensor *lp = kg_log_softmax(kg_matmul_t(x, w, false, true));
    return kg_sum(kg_mul(lp, kg_one_hot(t, V, -100)), -1, false);
}

static void run_lp(kg_ctx *ctx, lp_fn f, int64_t N, int64_t C, int64_t V, const int32_t *tgt,
                   float **out, float **gx, float **gw)
{
    kg_scope scope = kg_scope_begin(ctx);
    /* logits up to ~±10: the running max of the chunked log-sum-exp moves between chunks */
    kg_tensor *x = kg_uniform(ctx, 2, SHAPE(N, C), -1.0f, 1.0f, 7);
    kg_tensor *w = kg_uniform(ctx, 2, SHAPE(V, C), -0.6f, 0.6f, 8);
    kg_set_requires_grad(x, true);
    kg_set_requires_grad(w, true);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 1, &N, tgt);
    kg_tensor *y = f(x, w, t);
    kg_tensor *r = kg_uniform(ctx, 1, &N, -1.0f, 1.0f, 9);
    kg_backward(kg_sum_all(kg_mul(y, r)));
    assert_ok(ctx);
    *out = kg_tensor_to_f32(y);
    *gx = kg_tensor_to_f32(kg_grad(x));
    *gw = kg_tensor_to_f32(kg_grad(w));
    assert_ok(ctx);
    kg_scope_end(ctx, scope);
}

static void check_lp(int64_t N, int64_t C, int64_t V, const int32_t *tgt)
{
    kg_ctx *ctx = kg_ctx_new(backend);
    float *o[2], *gx[2], *gw[2];
    run_lp(ctx, fused, N, C, V, tgt, &o[0], &gx[0], &gw[0]);
    run_lp(ctx, unfused, N, C, V, tgt, &o[1], &gx[1], &gw[1]);
    assert_close(o[0], o[1], N, 1e-5f, 1e-5f, "log-probabilities");
    for (int64_t i = 0; i < N; i++)
        if (tgt[i] == -100)
            assert_true(o[0][i] == 0.0f); /* an ignored row */
    assert_close(gx[0], gx[1], N * C, 1e-6f, 1e-4f, "dx");
    assert_close(gw[0], gw[1], V * C, 1e-6f, 1e-4f, "dW");
    for (int i = 0; i < 2; i++)
        free(o[i]), free(gx[i]), free(gw[i]);
    kg_ctx_free(ctx);
}

static void test_linear_log_prob_matches_unfused(void **state)
{
    (void)state;
    /* One block of rows; targets at both ends of the vocabulary, one ignored. */
    check_lp(7, 24, 2600, (const int32_t[]){0, 1500, -100, 2599, 1023, 1024, 17});
    /* V = 120,000 with the CPU kernel's budget cut to 16 rows of logits: 40 rows take three
     * blocks (14, 14 and 12 rows). (Vulkan does the whole vocabulary at once; there the unfused
     * reference's kg_sum over rows of 120,000 is wrong from row 9 on lavapipe, a bug of its
     * own.) */
    if (backend != KG_BACKEND_CPU)
        return;
    int32_t t[40];
    for (int i = 0; i < 40; i++)
        t[i] = i == 5 || i == 37 ? -100 : (int32_t)((i * 7919) % 120000);
    t[39] = 119999;
    kg_cpu_lm_head_block(16 * 120000);
    check_lp(40, 24, 120000, t);
    kg_cpu_lm_head_block(0);
}

/* A frozen head stored in bf16, f16 or a block dtype: the fused op multiplies it as matmul_q
 * does (vdpbf16ps for bf16 where the CPU has it), so it must match log_softmax(matmul_q(x, W))
 * picked by one_hot, values and dx (W gets no gradient). */
static void run_lp_packed(kg_ctx *ctx, bool fuse, kg_dtype dtype, int64_t N, int64_t C,
                          int64_t V, const int32_t *tgt, float **out, float **gx)
{
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *x = kg_uniform(ctx, 2, SHAPE(N, C), -1.0f, 1.0f, 7);
    kg_tensor *w = kg_quantize(kg_uniform(ctx, 2, SHAPE(V, C), -0.6f, 0.6f, 8), dtype);
    kg_set_requires_grad(x, true);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 1, &N, tgt);
    kg_tensor *y = fuse ? kg_linear_log_prob(x, w, t, -100)
                        : kg_sum(kg_mul(kg_log_softmax(kg_matmul_q(x, w, true)),
                                        kg_one_hot(t, V, -100)), -1, false);
    kg_backward(kg_sum_all(kg_mul(y, kg_uniform(ctx, 1, &N, -1.0f, 1.0f, 9))));
    assert_ok(ctx);
    *out = kg_tensor_to_f32(y);
    *gx = kg_tensor_to_f32(kg_grad(x));
    assert_ok(ctx);
    kg_scope_end(ctx, scope);
}

static void check_lp_packed(kg_dtype dtype, int64_t N, int64_t C, int64_t V, const int32_t *tgt)
{
    kg_ctx *ctx = kg_ctx_new(backend);
    float *o[2], *gx[2];
    run_lp_packed(ctx, true, dtype, N, C, V, tgt, &o[0], &gx[0]);
    run_lp_packed(ctx, false, dtype, N, C, V, tgt, &o[1], &gx[1]);
    char what[64];
    snprintf(what, sizeof what, "%s head: log-probabilities", kg_dtype_name(dtype));
    assert_close(o[0], o[1], N, 1e-5f, 1e-5f, what);
    snprintf(what, sizeof what, "%s head: dx", kg_dtype_name(dtype));
    /* dx = dZ·W: where bf16 W runs on vdpbf16ps, dZ is rounded to bf16 on the way in, and the
     * two paths' dZ differ in the last f32 bits (the fused one forms g·(onehot - p) directly),
     * which can flip a bf16 rounding: each by at most 2⁻⁸·|dz|, so |Δdx| <= 2⁻⁸·Σ|dz|·max|W|
     * with Σ_v |dz_v| <= 2·|g| <= 2 and |W| <= 0.6. */
    bool bf16_dz = backend == KG_BACKEND_CPU && dtype == KG_DTYPE_BF16 &&
                   kg_cpu_gemm_w_path(dtype) == KG_GEMM_AVX512_BF16;
    assert_close(gx[0], gx[1], N * C, bf16_dz ? 2.0f * 0.6f / 256.0f : 1e-6f, 1e-4f, what);
    for (int i = 0; i < 2; i++)
        free(o[i]), free(gx[i]);
    kg_ctx_free(ctx);
}

static void test_linear_log_prob_packed_weight(void **state)
{
    (void)state;
    const kg_dtype dtypes[] = {KG_DTYPE_BF16, KG_DTYPE_F16, KG_DTYPE_Q8_0, KG_DTYPE_Q4_1};
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
        check_lp_packed(dtypes[d], 7, 64, 2600, (const int32_t[]){0, 1500, -100, 2599, 1023, 1024, 17});
    if (backend != KG_BACKEND_CPU)
        return;
    int32_t t[40]; /* three blocks of rows on the CPU, as in the f32 test */
    for (int i = 0; i < 40; i++)
        t[i] = i == 5 ? -100 : (int32_t)((i * 7919) % 120000);
    kg_cpu_lm_head_block(16 * 120000);
    check_lp_packed(KG_DTYPE_BF16, 40, 32, 120000, t);
    kg_cpu_lm_head_block(0);
}

static void test_linear_log_prob_rejects_bad_input(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *x = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *w = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(5, 4)); /* C mismatch */
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2), (int32_t[]){0, 1});
    assert_null(kg_linear_log_prob(x, w, t, -100));
    assert_non_null(strstr(kg_error(ctx), "kg_linear_log_prob"));
    kg_ctx_free(ctx);
    ctx = kg_ctx_new(backend);
    x = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    w = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(5, 3));
    t = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2), (int32_t[]){0, 5}); /* 5 >= V */
    kg_tensor *y = kg_linear_log_prob(x, w, t, -100);
    if (y)
        kg_flush(ctx); /* a device reports a bad target when the kernel has run */
    assert_int_not_equal(kg_ctx_status(ctx), KG_OK);
    const char *e = kg_error(ctx); /* the CPU names the target, a device kernel the index */
    assert_true(strstr(e, "target 5 at position 1") || strstr(e, "index 5 at position 1"));
    kg_ctx_free(ctx);
}

/* ---- SwiGLU ---- */

/* y = f(gate, up), then the gradients of loss = Σ y ⊙ r: values into out[0..2]. */
static void run_swiglu(kg_ctx *ctx, bool fuse, int64_t B, int64_t T, int64_t F, float *out[3])
{
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *gate = kg_uniform(ctx, 3, SHAPE(B, T, F), -8.0f, 8.0f, 21);
    kg_tensor *up = kg_uniform(ctx, 3, SHAPE(B, T, F), -2.0f, 2.0f, 22);
    kg_set_requires_grad(gate, true);
    kg_set_requires_grad(up, true);
    kg_tensor *y = fuse ? kg_swiglu(gate, up) : kg_mul(kg_silu(gate), up);
    kg_tensor *r = kg_uniform(ctx, 3, SHAPE(B, T, F), -1.0f, 1.0f, 23);
    kg_backward(kg_sum_all(kg_mul(y, r)));
    assert_ok(ctx);
    out[0] = kg_tensor_to_f32(y);
    out[1] = kg_tensor_to_f32(kg_grad(gate));
    out[2] = kg_tensor_to_f32(kg_grad(up));
    assert_ok(ctx);
    kg_scope_end(ctx, scope);
}

static void check_swiglu(int64_t B, int64_t T, int64_t F)
{
    kg_ctx *ctx = kg_ctx_new(backend);
    float *f[3], *u[3];
    run_swiglu(ctx, true, B, T, F, f);
    run_swiglu(ctx, false, B, T, F, u);
    /* The CPU kernel rounds as silu then mul (and their backward rules) do: bit for bit. A
     * device compiler may contract the fused expression differently: a few ulps. */
    float tol = backend == KG_BACKEND_CPU ? 0.0f : 1e-5f;
    const char *what[3] = {"silu(gate)·up", "d_gate", "d_up"};
    for (int i = 0; i < 3; i++)
        assert_close(f[i], u[i], B * T * F, tol, tol, what[i]);
    for (int i = 0; i < 3; i++)
        free(f[i]), free(u[i]);
    kg_ctx_free(ctx);
}

static void test_swiglu_matches_unfused(void **state)
{
    (void)state;
    check_swiglu(2, 3, 7);
    if (backend == KG_BACKEND_CPU)
        check_swiglu(4, 64, 200); /* 51,200 elements: several chunks of the thread pool */
}

static void test_swiglu_rejects_bad_input(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *g = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *u = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(1, 3)); /* no broadcasting */
    assert_null(kg_swiglu(g, u));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    assert_non_null(strstr(kg_error(ctx), "kg_swiglu: gate [2,3] f32 and up [1,3] f32"));
    kg_ctx_free(ctx);
}

/* ---- gelu's backward ---- */

/* d loss / dx of loss = Σ gelu(x) ⊙ r through the fused gelu_grad, against the rule written
 * with the ops it replaced: r·(Φ(x) + x·φ(x)). */
static void test_gelu_backward_matches_unfused(void **state)
{
    (void)state;
    const int64_t n = backend == KG_BACKEND_CPU ? 3 * 128 * 300 : 2 * 3 * 11;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *x = kg_uniform(ctx, 2, SHAPE(n / 6, 6), -5.0f, 5.0f, 41);
    kg_tensor *r = kg_uniform(ctx, 2, SHAPE(n / 6, 6), -1.0f, 1.0f, 42);
    kg_set_requires_grad(x, true);
    kg_backward(kg_sum_all(kg_mul(kg_gelu(x), r)));
    float *got = kg_tensor_to_f32(kg_grad(x));
    kg_tensor *xc = kg_detach(x);
    kg_tensor *cdf = kg_scale(kg_add_scalar(kg_erf(kg_scale(xc, 0.70710678118654752f)), 1.0f), 0.5f);
    kg_tensor *pdf = kg_scale(kg_exp(kg_scale(kg_mul(xc, xc), -0.5f)), 0.39894228040143268f);
    float *want = kg_tensor_to_f32(kg_mul(r, kg_add(cdf, kg_mul(xc, pdf))));
    assert_ok(ctx);
    float tol = backend == KG_BACKEND_CPU ? 0.0f : 1e-6f; /* the CPU rounds as the ops did */
    assert_close(got, want, n, tol, tol, "gelu'(x)·g");
    free(got);
    free(want);
    kg_ctx_free(ctx);
}

/* ---- softmax(scale·s + mask) ---- */

/* Attention's scores s (B, H, T, T) under a causal and padding mask (B, 1, T, T), scale 1/√8:
 * y, then ds of loss = Σ y ⊙ r. form 0: fused; 1: scale, add, then softmax spelled out as
 * exp(z - max) / Σ exp(z - max) (every op but softmax's own); 2: kg_scale, kg_add, then
 * kg_softmax unmasked: the ops attention called before. */
static void run_softmax(kg_ctx *ctx, int form, const int32_t *keep, int64_t B, int64_t H,
                        int64_t T, float **y_out, float **ds_out)
{
    kg_scope scope = kg_scope_begin(ctx);
    float scale = 0.35355339f;
    kg_tensor *s = kg_uniform(ctx, 4, SHAPE(B, H, T, T), -6.0f, 6.0f, 31);
    kg_set_requires_grad(s, true);
    kg_tensor *k = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(B, T), keep);
    kg_tensor *mask = kg_attention_mask(ctx, k, T, 0, true, 0), *y;
    if (form == 0) {
        y = kg_softmax_scaled(s, scale, mask);
    } else if (form == 1) {
        kg_tensor *z = kg_add(kg_scale(s, scale), mask);
        kg_tensor *e = kg_exp(kg_sub(z, kg_max(z, -1, true)));
        y = kg_div(e, kg_sum(e, -1, true));
    } else {
        y = kg_softmax(kg_add(kg_scale(s, scale), mask), NULL);
    }
    kg_tensor *r = kg_uniform(ctx, 4, SHAPE(B, H, T, T), -1.0f, 1.0f, 32);
    kg_backward(kg_sum_all(kg_mul(y, r)));
    assert_ok(ctx);
    *y_out = kg_tensor_to_f32(y);
    *ds_out = kg_tensor_to_f32(kg_grad(s));
    assert_ok(ctx);
    kg_scope_end(ctx, scope);
}

static void test_softmax_scaled_matches_unfused(void **state)
{
    (void)state;
    enum { B = 2, H = 3, T = 6 };
    int64_t n = (int64_t)B * H * T * T;
    /* the second sequence starts with padding: its first query row sees no key at all */
    const int32_t keep[B * T] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    kg_ctx *ctx = kg_ctx_new(backend);
    float *y[3], *ds[3];
    for (int f = 0; f < 3; f++)
        run_softmax(ctx, f, keep, B, H, T, &y[f], &ds[f]);
    for (int64_t h = 0; h < H; h++) /* the fully masked rows: zeros, zero gradient */
        for (int64_t j = 0; j < T; j++) {
            int64_t i = ((1 * H + h) * T + 0) * T + j;
            assert_true(y[0][i] == 0.0f && ds[0][i] == 0.0f);
            y[1][i] = ds[1][i] = 0.0f; /* the spelled-out softmax gives NaN there */
        }
    assert_close(y[0], y[1], n, 1e-6f, 1e-5f, "softmax against exp / sum");
    assert_close(ds[0], ds[1], n, 1e-6f, 1e-4f, "ds against exp / sum");
    /* against the ops attention called before (decode keeps its values): bit for bit on the
     * CPU, where the fused kernel rounds scale·s, then + mask, as kg_scale and kg_add did */
    float tol = backend == KG_BACKEND_CPU ? 0.0f : 1e-6f;
    assert_close(y[0], y[2], n, tol, tol, "softmax against kg_softmax(kg_scale + mask)");
    assert_close(ds[0], ds[2], n, 1e-7f, 1e-5f, "ds against kg_softmax(kg_scale + mask)");
    for (int f = 0; f < 3; f++)
        free(y[f]), free(ds[f]);
    kg_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_log_prob_matches_unfused),
        cmocka_unit_test(test_linear_log_prob_packed_weight),
        cmocka_unit_test(test_linear_log_prob_rejects_bad_input),
        cmocka_unit_test(test_swiglu_matches_unfused),
        cmocka_unit_test(test_swiglu_rejects_bad_input),
        cmocka_unit_test(test_softmax_scaled_matches_unfused),
        cmocka_unit_test(test_gelu_backward_matches_unfused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
