/* test_structured.c — the structured ops against their materialized forms: kron against its
 * definition, lowrank_linear against x·(B1·B2)ᵀ and kron_linear against x·(A ⊗ B1·B2)ᵀ, forward
 * and every gradient; and kron_linear never holds a d_out × d_in buffer, by the backend's own
 * memory figures.
 */
#include "kg_test.h"

static void test_kron_definition(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    float a[] = {1, 2, 3, 4, 5, 6};   /* (2, 3) */
    float b[] = {0, 1, -1, 2};        /* (2, 2) */
    kg_tensor *k = kg_kron(kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3), a),
                           kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 2), b));
    assert_ok(ctx);
    assert_int_equal(kg_tensor_dim(k, 0), 4);
    assert_int_equal(kg_tensor_dim(k, 1), 6);
    float want[24];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int p = 0; p < 2; p++)
                for (int q = 0; q < 2; q++)
                    want[(i * 2 + p) * 6 + j * 2 + q] = a[i * 3 + j] * b[p * 2 + q];
    assert_tensor(k, want, 24, 0, 0, "kron");
    kg_ctx_free(ctx);
}

/* Run f on fresh leaves from the same seeds; return the output and the leaves' gradients of
 * loss = Σ out ⊙ W. */
typedef kg_tensor *(*build_fn)(kg_tensor **p);

static float *run(kg_ctx *ctx, build_fn f, int n, const int64_t (*shapes)[3], float **grads)
{
    kg_scope s = kg_scope_begin(ctx);
    kg_tensor *p[4];
    for (int i = 0; i < n; i++) {
        int nd = shapes[i][2] ? 3 : 2;
        p[i] = kg_normal(ctx, nd, shapes[i], 0.0f, 1.0f, 700 + (uint64_t)i);
        kg_set_requires_grad(p[i], true);
    }
    kg_tensor *out = f(p);
    kg_tensor *w = kg_uniform(ctx, out->ndim, out->shape, -1, 1, 5);
    kg_backward(kg_sum_all(kg_mul(out, w)));
    assert_ok(ctx);
    float *y = kg_tensor_to_f32(out);
    for (int i = 0; i < n; i++)
        grads[i] = kg_tensor_to_f32(kg_grad(p[i]));
    kg_scope_end(ctx, s);
    return y;
}

static void compare(build_fn fast, build_fn slow, int n, const int64_t (*shapes)[3], int64_t outn,
                    const char *name)
{
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    float *ga[4], *gb[4];
    float *ya = run(ctx, fast, n, shapes, ga), *yb = run(ctx, slow, n, shapes, gb);
    assert_close(ya, yb, outn, 1e-4f, 1e-4f, name);
    for (int i = 0; i < n; i++) {
        int64_t numel = shapes[i][0] * shapes[i][1] * (shapes[i][2] ? shapes[i][2] : 1);
        assert_close(ga[i], gb[i], numel, 1e-4f, 1e-4f, name);
        free(ga[i]);
        free(gb[i]);
    }
    free(ya);
    free(yb);
    kg_ctx_free(ctx);
}

/* x (2, 3, 12); lowrank: B1 (10, 3), B2 (3, 12) */
static kg_tensor *lowrank_fast(kg_tensor **p) { return kg_lowrank_linear(p[0], p[1], p[2]); }
static kg_tensor *lowrank_slow(kg_tensor **p)
{
    return kg_matmul_t(p[0], kg_matmul(p[1], p[2]), false, true);
}

static void test_lowrank_linear_matches_materialized(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{2, 3, 12}, {10, 3, 0}, {3, 12, 0}};
    compare(lowrank_fast, lowrank_slow, 3, shapes, 2 * 3 * 10, "lowrank_linear");
}

/* kron_linear: A (dA2 = 3, dA1 = 2), B1 (dB2 = 4, R = 3), B2 (R = 3, dB1 = 6):
 * d_in = 12, d_out = 12; x (2, 3, 12). */
static kg_tensor *kron_fast(kg_tensor **p) { return kg_kron_linear(p[0], p[1], p[2], p[3]); }
static kg_tensor *kron_slow(kg_tensor **p)
{
    kg_tensor *dw = kg_kron(p[1], kg_matmul(p[2], p[3])); /* ΔW (d_out, d_in) */
    return kg_matmul_t(p[0], dw, false, true);
}

static void test_kron_linear_matches_materialized(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{2, 3, 12}, {3, 2, 0}, {4, 3, 0}, {3, 6, 0}};
    compare(kron_fast, kron_slow, 4, shapes, 2 * 3 * 12, "kron_linear");
    /* A non-square A and a d_out unlike d_in: A (1, 4), B1 (5, 2), B2 (2, 3) → d_in 12, d_out 5 */
    const int64_t other[][3] = {{4, 12, 0}, {1, 4, 0}, {5, 2, 0}, {2, 3, 0}};
    compare(kron_fast, kron_slow, 4, other, 4 * 5, "kron_linear (1x4 A)");
}

static void test_kron_linear_never_forms_delta_w(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    assert_kron_linear_never_forms_delta_w(ctx);
    kg_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kron_definition),
        cmocka_unit_test(test_lowrank_linear_matches_materialized),
        cmocka_unit_test(test_kron_linear_matches_materialized),
        cmocka_unit_test(test_kron_linear_never_forms_delta_w),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
