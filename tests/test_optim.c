/* test_optim.c — the fused optimizer updates against torch.optim: three steps of AdamW and of
 * SGD (with and without momentum) on fixed gradients match the values torch computed
 * (tests/fixtures/optim/make_optim_refs.py), on the CPU backend and on Vulkan; bad arguments are
 * errors.
 */
#include "kg_test.h"
#include "fixtures/optim/optim_refs.h"

enum { N = 6 };

static void run_adamw(kg_ctx *ctx)
{
    kg_tensor *p = kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(N), ref_p0[0]);
    kg_tensor *m = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(N));
    kg_tensor *v = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(N));
    for (int s = 0; s < 3; s++) {
        kg_scope sc = kg_scope_begin(ctx);
        kg_tensor *g = kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(N), ref_grads[s]);
        kg_adamw cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f,
                        .weight_decay = 0.1f, .step = s + 1};
        assert_true(kg_adamw_update(p, g, m, v, &cfg));
        assert_tensor(p, ref_adamw[s], N, 1e-7f, 1e-6f, "AdamW step");
        kg_scope_end(ctx, sc);
    }
}

static void run_sgd(kg_ctx *ctx, bool momentum)
{
    kg_tensor *p = kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(N), ref_p0[0]);
    kg_tensor *buf = momentum ? kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(N)) : NULL;
    for (int s = 0; s < 3; s++) {
        kg_tensor *g = kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(N), ref_grads[s]);
        kg_sgd cfg = momentum ? (kg_sgd){.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f,
                                         .first = s == 0}
                              : (kg_sgd){.lr = 0.1f};
        assert_true(kg_sgd_update(p, g, buf, &cfg));
        assert_tensor(p, momentum ? ref_sgd_momentum[s] : ref_sgd_plain[s], N, 1e-7f, 1e-6f,
                      momentum ? "SGD momentum step" : "SGD step");
    }
}

static void run_all(kg_backend_kind kind)
{
    kg_ctx *ctx = kg_ctx_new(kind);
    if (kg_ctx_status(ctx)) {
        kg_ctx_free(ctx);
        skip();
    }
    run_adamw(ctx);
    run_sgd(ctx, true);
    run_sgd(ctx, false);
    assert_ok(ctx);
    kg_ctx_free(ctx);
}

static void test_cpu(void **state)
{
    (void)state;
    run_all(KG_BACKEND_CPU);
}

static void test_vulkan(void **state)
{
    (void)state;
    run_all(KG_BACKEND_VULKAN);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *p = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *g = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *m = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *small = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(6));
    kg_adamw cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 1};
    assert_false(kg_adamw_update(p, g, m, small, &cfg));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    assert_non_null(strstr(kg_error(ctx), "kg_adamw_update: state is [6] f32"));
    kg_clear_error(ctx);
    assert_false(kg_adamw_update(p, g, m, m, &cfg)); /* m and v must be two buffers */
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_ARG);
    kg_clear_error(ctx);
    assert_false(kg_adamw_update(kg_transpose(p, 0, 1), kg_transpose(g, 0, 1),
                                 kg_transpose(m, 0, 1), kg_transpose(m, 0, 1), &cfg));
    assert_non_null(strstr(kg_error(ctx), "strided"));
    kg_clear_error(ctx);
    cfg.step = 0;
    assert_false(kg_adamw_update(p, g, m, kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3)), &cfg));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_RANGE);
    kg_clear_error(ctx);
    assert_false(kg_sgd_update(p, g, NULL, &(kg_sgd){.lr = 0.1f, .momentum = 0.9f}));
    assert_non_null(strstr(kg_error(ctx), "a buffer when momentum > 0"));
    kg_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_vulkan),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
