/* test_vulkan_ops.c — every op and its gradient on the Vulkan backend against the CPU backend,
 * on the cases of op_cases.h (tiny shapes: lavapipe is slow), with the Khronos validation layer
 * on: any validation message fails the test. Without a Vulkan device the test is skipped (77).
 *
 * Tolerance: |vulkan - cpu| <= 1e-4 + 1e-4·|cpu|. The shaders accumulate in f32 like the CPU
 * kernels, but in other orders, and GPU exp/log/erf are not correctly rounded.
 */
#include "op_cases.h"
#include "tensor/vulkan/vk.h"

static kg_ctx *cpu, *vk;

static void assert_no_validation_messages(void)
{
    const char *first = NULL;
    size_t n = kg__vk_validation_count(vk, &first);
    if (n)
        fail_msg("%zu Vulkan validation messages; the first: %s", n, first);
}

static void parity(const char *name, gc_fn f, void *arg, int n, const gc_input *spec,
                   uint64_t seed)
{
    gc_state s;
    gc_prepare(&s, spec, n, seed);
    float *grads[2][KG_MAX_INPUTS] = {{0}}, *out[2];
    int64_t outn[2];
    kg_ctx *ctxs[2] = {cpu, vk};
    for (int b = 0; b < 2; b++) {
        gc_eval(ctxs[b], &s, f, arg, grads[b], &out[b], &outn[b]);
        if (kg_ctx_status(ctxs[b]))
            fail_msg("%s on %s: %s", name, kg_backend_name(ctxs[b]), kg_error(ctxs[b]));
    }
    assert_int_equal(outn[0], outn[1]);
    char what[96];
    snprintf(what, sizeof what, "%s: output", name);
    assert_close(out[1], out[0], outn[0], 1e-4f, 1e-4f, what);
    for (int i = 0; i < n; i++) {
        if (!spec[i].grad)
            continue;
        snprintf(what, sizeof what, "%s: gradient of input %d", name, i);
        assert_close(grads[1][i], grads[0][i], s.numel[i], 1e-4f, 1e-4f, what);
        free(grads[0][i]);
        free(grads[1][i]);
    }
    free(out[0]);
    free(out[1]);
    gc_release(&s);
    assert_no_validation_messages();
}

#define PARITY_TEST(family)                                                                    \
    static void test_##family(void **state)                                                    \
    {                                                                                          \
        (void)state;                                                                           \
        cases_##family(parity);                                                                \
    }

PARITY_TEST(binary_ops)
PARITY_TEST(unary_ops)
PARITY_TEST(reductions)
PARITY_TEST(matmul)
PARITY_TEST(softmax_family)
PARITY_TEST(norms)
PARITY_TEST(rope)
PARITY_TEST(embedding_family)
PARITY_TEST(cross_entropy)
PARITY_TEST(masked_fill_dropout)
PARITY_TEST(views_and_concat)
PARITY_TEST(structured_ops)
PARITY_TEST(forward_only)

static void test_validation_is_on_when_asked(void **state)
{
    (void)state;
    /* Zero messages only mean something if the layer is listening. */
    const char *env = getenv("KG_VALIDATION");
    if (env && strcmp(env, "1") == 0 && !kg__vk_validating(vk))
        fail_msg("KG_VALIDATION=1 but the validation layer is not active (install "
                 "vulkan-validationlayers)");
}

static void test_every_op_has_a_vulkan_kernel(void **state)
{
    (void)state;
    for (int op = 0; op < KG_OP_COUNT; op++)
        if (!(kg_op_table[op].flags & KG_OPF_VIEW) && !kg_op_table[op].vulkan)
            fail_msg("op %s has no Vulkan kernel", kg_op_table[op].name);
}

static void test_bad_index_is_reported_at_flush(void **state)
{
    (void)state;
    kg_tensor *tab = kg_ones(vk, KG_DTYPE_F32, 2, SHAPE(4, 3));
    kg_tensor *ids = kg_from_host(vk, KG_DTYPE_I32, 1, SHAPE(3), (int32_t[]){0, 9, 1});
    kg_tensor *e = kg_embedding(tab, ids); /* queued: the kernel finds the bad id later */
    float host[9];
    assert_false(kg_tensor_to_host(e, host, sizeof host));
    assert_int_equal(kg_ctx_status(vk), KG_ERR_RANGE);
    assert_non_null(strstr(kg_error(vk), "kg_embedding"));
    assert_non_null(strstr(kg_error(vk), "index 9 at position 1"));
    assert_non_null(strstr(kg_error(vk), "[0, 4)"));
    kg_clear_error(vk);
    assert_no_validation_messages();
}

static void test_tensor_over_the_binding_limit(void **state)
{
    (void)state;
    /* 129 MiB of f32, over lavapipe's 128 MiB maxStorageBufferRange: kernels reach tensors by
     * address, so nothing is split and nothing is out of range. */
    const int64_t n = (129ll << 20) / 4;
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *x = kg_full(vk, KG_DTYPE_F32, 1, &n, 1.5);
    kg_tensor *y = kg_add_scalar(kg_scale(x, 2.0f), 1.0f); /* 4 everywhere */
    kg_tensor *tail = kg_slice(y, 0, n - 4, 4);
    assert_tensor(tail, (float[]){4, 4, 4, 4}, 4, 0, 0, "end of a 129 MiB tensor");
    assert_true(kg_item(kg_slice(y, 0, 0, 1)) == 4.0);
    kg_scope_end(vk, s);
    assert_ok(vk);
    assert_no_validation_messages();
}

static void test_device_out_of_memory_is_an_error(void **state)
{
    (void)state;
    assert_null(kg_tensor_new(vk, KG_DTYPE_F32, 2, SHAPE(1ll << 22, 1ll << 22))); /* 64 TiB */
    assert_int_equal(kg_ctx_status(vk), KG_ERR_NOMEM);
    assert_non_null(strstr(kg_error(vk), "out of vulkan memory"));
    kg_clear_error(vk);
}

static void test_memory_is_reused_and_released(void **state)
{
    (void)state;
    size_t before, after;
    kg_memory(vk, &before, NULL);
    for (int i = 0; i < 3; i++) {
        kg_scope s = kg_scope_begin(vk);
        kg_tensor *a = kg_normal(vk, 2, SHAPE(64, 64), 0, 1, 1);
        kg_item(kg_sum_all(kg_matmul(a, a)));
        kg_scope_end(vk, s);
    }
    kg_flush(vk);
    kg_memory(vk, &after, NULL);
    assert_int_equal(before, after);
    assert_ok(vk);
}

static void test_profile_counts_ops(void **state)
{
    (void)state;
    kg_profile(vk, true);
    kg_tensor *a = kg_normal(vk, 2, SHAPE(32, 32), 0, 1, 1);
    kg_item(kg_sum_all(kg_exp(kg_matmul(a, a))));
    kg_op_time t[KG_OP_COUNT];
    int n = kg_profile_read(vk, t, KG_OP_COUNT);
    kg_profile(vk, false);
    bool saw_matmul = false;
    for (int i = 0; i < n; i++) {
        saw_matmul |= strcmp(t[i].op, "matmul") == 0 && t[i].calls == 1;
        assert_true(t[i].seconds >= 0.0);
        assert_true(i == 0 || t[i - 1].seconds >= t[i].seconds);
    }
    assert_true(saw_matmul);
}

static void test_barriers_only_on_dependencies(void **state)
{
    (void)state;
    kg_tensor *a = kg_ones(vk, KG_DTYPE_F32, 1, SHAPE(64)), *b = kg_ones(vk, KG_DTYPE_F32, 1, SHAPE(64));
    kg_flush(vk);
    size_t before = kg__vk_barrier_count(vk);
    kg_tensor *c = kg_exp(a), *d = kg_exp(b); /* independent: no barrier between them */
    assert_int_equal(kg__vk_barrier_count(vk), before);
    kg_tensor *e = kg_add(c, d);              /* reads what both wrote: one barrier */
    assert_int_equal(kg__vk_barrier_count(vk), before + 1);
    kg_tensor *f = kg_exp(a);                 /* reads only uploaded data: none */
    assert_int_equal(kg__vk_barrier_count(vk), before + 1);
    kg_tensor *g = kg_mul(e, f);              /* reads e and f: one more */
    assert_int_equal(kg__vk_barrier_count(vk), before + 2);
    float want[64];
    for (int i = 0; i < 64; i++)
        want[i] = 2.0f * expf(1.0f) * expf(1.0f);
    assert_tensor(g, want, 64, 1e-5f, 1e-5f, "chained result");
    assert_ok(vk);
}

static void test_long_chains_span_batches(void **state)
{
    (void)state;
    /* 700 dependent dispatches with no read between them: the stream submits several batches,
     * and intermediates freed on the way are released only after their batch completes. */
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *x = kg_zeros(vk, KG_DTYPE_F32, 1, SHAPE(100));
    for (int i = 0; i < 700; i++) {
        kg_tensor *next = kg_add_scalar(x, 1.0f);
        if (i > 0)
            kg_tensor_free(x);
        x = next;
    }
    float want[100];
    for (int i = 0; i < 100; i++)
        want[i] = 700.0f;
    assert_tensor(x, want, 100, 0, 0, "after 700 queued adds");
    kg_scope_end(vk, s);
    assert_ok(vk);
    assert_no_validation_messages();
}

static void test_kron_linear_never_forms_delta_w(void **state)
{
    (void)state;
    kg_scope s = kg_scope_begin(vk);
    assert_kron_linear_never_forms_delta_w(vk);
    kg_scope_end(vk, s);
    assert_no_validation_messages();
}

static void test_batches_beyond_the_grid(void **state)
{
    (void)state;
    /* 70000 batched 1×2·2×1 products: more batches than a grid axis holds (65535 on most
     * devices), so the matmul is dispatched in chunks. */
    const int64_t B = 70000;
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *a = kg_uniform(vk, 3, SHAPE(B, 1, 2), -1, 1, 1);
    kg_tensor *b = kg_uniform(vk, 3, SHAPE(B, 2, 1), -1, 1, 2);
    float *got = kg_tensor_to_f32(kg_matmul(a, b));
    float *av = kg_tensor_to_f32(a), *bv = kg_tensor_to_f32(b);
    assert_ok(vk);
    for (int64_t i = 0; i < B; i++) {
        float want = av[2 * i] * bv[2 * i] + av[2 * i + 1] * bv[2 * i + 1];
        if (fabsf(got[i] - want) > 1e-6f)
            fail_msg("batch %lld: %g, expected %g", (long long)i, got[i], want);
    }
    free(got), free(av), free(bv);
    kg_scope_end(vk, s);
}

static void test_device_listing(void **state)
{
    (void)state;
    char buf[8192];
    size_t n = kg_vulkan_devices(buf, sizeof buf);
    assert_true(n > 0 && n < sizeof buf);
    /* The device the backend picked is listed, with the facts `krongrad info` promises. */
    char name[256];
    snprintf(name, sizeof name, "%s", kg_device_name(vk));
    *strstr(name, " (") = 0; /* "llvmpipe (LLVM …) (CPU)" → the device name alone */
    assert_non_null(strstr(buf, name));
    const char *facts[] = {"driver", "memory heap", "subgroup size", "shared memory",
                           "max storage buffer", "bufferDeviceAddress", "shaderInt64"};
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
        if (!strstr(buf, facts[i]))
            fail_msg("the listing lacks \"%s\":\n%s", facts[i], buf);
    /* A buffer too small is never overrun; the length needed is still returned. */
    char small[16];
    memset(small, 'x', sizeof small);
    assert_int_equal(kg_vulkan_devices(small, 8), n);
    assert_int_equal(small[8], 'x');
    assert_int_equal(strlen(small), 7);
}

static int setup(void **state)
{
    (void)state;
    cpu = kg_ctx_new(KG_BACKEND_CPU);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kg_ctx_free(cpu);
    kg_ctx_free(vk);
    return 0;
}

int main(void)
{
    vk = kg_ctx_new(KG_BACKEND_VULKAN);
    if (!vk || kg_ctx_status(vk)) {
        printf("skipped: no usable Vulkan device: %s\n", kg_error(vk));
        kg_ctx_free(vk);
        return 77;
    }
    printf("device: %s\n", kg_device_name(vk));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_is_on_when_asked),
        cmocka_unit_test(test_every_op_has_a_vulkan_kernel),
        cmocka_unit_test(test_binary_ops),
        cmocka_unit_test(test_unary_ops),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_softmax_family),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_embedding_family),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_masked_fill_dropout),
        cmocka_unit_test(test_views_and_concat),
        cmocka_unit_test(test_structured_ops),
        cmocka_unit_test(test_forward_only),
        cmocka_unit_test(test_bad_index_is_reported_at_flush),
        cmocka_unit_test(test_tensor_over_the_binding_limit),
        cmocka_unit_test(test_device_out_of_memory_is_an_error),
        cmocka_unit_test(test_memory_is_reused_and_released),
        cmocka_unit_test(test_profile_counts_ops),
        cmocka_unit_test(test_barriers_only_on_dependencies),
        cmocka_unit_test(test_long_chains_span_batches),
        cmocka_unit_test(test_device_listing),
        cmocka_unit_test(test_batches_beyond_the_grid),
        cmocka_unit_test(test_kron_linear_never_forms_delta_w),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
