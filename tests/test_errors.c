/* test_errors.c — bad input gives a sticky error whose message names the function, the shapes
 * and dtypes and what was expected; ops on a context in error, or given NULL, return NULL;
 * nothing aborts.
 */
#include "kg_test.h"

/* The context holds `status` and its message contains every fragment; then clear it. */
static void expect_error(kg_ctx *ctx, kg_status status, const char *const *fragments)
{
    if (kg_ctx_status(ctx) != status)
        fail_msg("status %d (%s); expected %d", kg_ctx_status(ctx), kg_error(ctx), status);
    for (; *fragments; fragments++)
        if (!strstr(kg_error(ctx), *fragments))
            fail_msg("message \"%s\" lacks \"%s\"", kg_error(ctx), *fragments);
    kg_clear_error(ctx);
    assert_int_equal(kg_ctx_status(ctx), KG_OK);
    assert_string_equal(kg_error(ctx), "");
}

#define EXPECT(ctx, status, ...) expect_error(ctx, status, (const char *const[]){__VA_ARGS__, NULL})

static void test_shape_mismatches(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *a = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *b = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 3));
    assert_null(kg_add(a, b));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_add", "[2,3] f32", "[4,3] f32", "broadcast");
    assert_null(kg_matmul(a, b));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_matmul", "[2,3] f32", "[4,3] f32", "inner");
    assert_non_null(kg_matmul_t(a, b, false, true));
    assert_null(kg_reshape(a, 2, SHAPE(4, 2)));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_reshape", "[2,3] f32");
    assert_null(kg_expand(a, 2, SHAPE(5, 3)));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_expand", "size-1");
    kg_tensor *b1 = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 2));
    kg_tensor *b2 = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 5));
    assert_null(kg_kron_linear(a, a, b1, b2));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_kron_linear", "x [2,3] f32", "dA1·dB1");
    assert_null(kg_layer_norm(a, kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(4)), NULL, 1e-5f));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_layer_norm", "weight", "[4] f32", "expected (3)");
    assert_null(kg_concat((kg_tensor *[]){a, b1}, 2, 0));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_concat", "input 1", "[4,2] f32");
    assert_null(kg_zeros(ctx, KG_DTYPE_F32, 5, SHAPE(1, 1, 1, 1, 1)));
    EXPECT(ctx, KG_ERR_SHAPE, "5 dimensions");
    assert_null(kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(-2)));
    EXPECT(ctx, KG_ERR_SHAPE, "dimension 0", "-2");
    kg_ctx_free(ctx);
}

static void test_dtype_mismatches(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *f = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(3));
    kg_tensor *h = kg_zeros(ctx, KG_DTYPE_F16, 1, SHAPE(3));
    kg_tensor *i = kg_zeros(ctx, KG_DTYPE_I32, 1, SHAPE(3));
    assert_null(kg_mul(f, h));
    EXPECT(ctx, KG_ERR_DTYPE, "kg_mul", "input 1", "[3] f16", "expected f32", "kg_cast");
    assert_null(kg_embedding(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 2)), f));
    EXPECT(ctx, KG_ERR_DTYPE, "kg_embedding", "[3] f32", "expected i32");
    kg_set_requires_grad(i, true);
    EXPECT(ctx, KG_ERR_DTYPE, "kg_set_requires_grad", "[3] i32", "integer tensors have no gradient");
    assert_null(kg_cross_entropy(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(3, 4)), f, -100));
    EXPECT(ctx, KG_ERR_DTYPE, "kg_cross_entropy", "expected i32");
    kg_ctx_free(ctx);
}

static void test_null_inputs_and_sticky_errors(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *a = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(3));
    assert_null(kg_add(a, NULL));
    EXPECT(ctx, KG_ERR_ARG, "kg_add", "input 1 is NULL");
    /* NULL everywhere: no context to report to, and nothing crashes. */
    assert_null(kg_add(NULL, NULL));
    assert_null(kg_exp(NULL));
    assert_null(kg_reshape(NULL, 1, SHAPE(3)));
    assert_null(kg_transpose(NULL, 0, 1));
    assert_null(kg_concat(NULL, 2, 0));
    assert_false(kg_backward(NULL));
    assert_true(isnan(kg_item(NULL)));
    kg_tensor_free(NULL);
    /* The first error sticks; later ops return NULL without replacing it. */
    assert_null(kg_sum(a, 3, false));
    assert_null(kg_matmul(a, a));
    assert_null(kg_exp(a));
    assert_null(kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(2)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_sum", "axis 3", "[3] f32");
    assert_non_null(kg_exp(a)); /* cleared: work goes on */
    /* Tensors of two contexts do not mix. */
    kg_ctx *other = kg_ctx_new(KG_BACKEND_CPU);
    assert_null(kg_add(a, kg_zeros(other, KG_DTYPE_F32, 1, SHAPE(3))));
    EXPECT(ctx, KG_ERR_ARG, "kg_add", "another context");
    kg_ctx_free(other);
    kg_ctx_free(ctx);
}

static void test_out_of_range(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *x = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    assert_null(kg_transpose(x, 0, 2));
    EXPECT(ctx, KG_ERR_RANGE, "kg_transpose", "axis 2");
    assert_null(kg_max(x, -3, true));
    EXPECT(ctx, KG_ERR_RANGE, "kg_max", "axis -3");
    assert_null(kg_slice(x, 1, 2, 2));
    EXPECT(ctx, KG_ERR_RANGE, "kg_slice", "start 2, length 2", "[0, 3)");
    assert_null(kg_permute(x, (int[]){0, 0}));
    EXPECT(ctx, KG_ERR_RANGE, "kg_permute", "permutation");
    assert_int_equal(kg_tensor_dim(x, 5), -1);
    EXPECT(ctx, KG_ERR_RANGE, "kg_tensor_dim", "axis 5");
    kg_tensor *ids = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(3), (int32_t[]){0, 7, 1});
    assert_null(kg_embedding(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 2)), ids));
    EXPECT(ctx, KG_ERR_RANGE, "kg_embedding", "id 7 at position 1", "[0, 4)");
    assert_null(kg_cross_entropy(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(3, 4)), ids, -100));
    EXPECT(ctx, KG_ERR_RANGE, "kg_cross_entropy", "target 7", "ignore index -100");
    assert_null(kg_dropout(x, 1.0f, 1));
    EXPECT(ctx, KG_ERR_RANGE, "kg_dropout", "p = 1");
    kg_ctx_free(ctx);
}

/* Issue 6, item 1: sizes that overflow int64, or exceed 2^59 elements, are KG_ERR_RANGE (or a
 * negative size KG_ERR_SHAPE) at the call that makes them, never a wrapped shape used later. */
static void test_shape_overflow(void **state)
{
    (void)state;
    const int64_t big = (int64_t)1 << 40;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *t = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(3, 4));
    assert_null(kg_slice(t, 1, 2, INT64_MAX)); /* start + length wraps */
    EXPECT(ctx, KG_ERR_RANGE, "kg_slice", "start 2", "[0, 4)");
    assert_null(kg_reshape(t, 2, SHAPE(4, ((int64_t)1 << 62) + 3))); /* 4·(2^62+3) wraps to 12 */
    EXPECT(ctx, KG_ERR_RANGE, "kg_reshape", "2^59");
    /* A size-0 dimension in a reshape does not let the others grow unchecked (found by
     * fuzz_ops: the strides of [0, 3·2^59, 2^45] wrapped). */
    kg_tensor *empty = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(0));
    assert_null(kg_reshape(empty, 3, SHAPE(0, (int64_t)3 << 59, (int64_t)1 << 45)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_reshape", "2^59");
    assert_null(kg_reshape(empty, 3, SHAPE(-1, (int64_t)1 << 40, (int64_t)1 << 40)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_reshape", "2^59");
    kg_tensor *one = kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(1));
    assert_null(kg_expand(one, 1, SHAPE(-5)));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_expand", "-5");
    assert_null(kg_expand(one, 3, SHAPE(big, big, big)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_expand", "2^59");
    /* Zero elements do not let the other sizes grow unchecked (their strides would wrap). */
    assert_null(kg_zeros(ctx, KG_DTYPE_F32, 3, SHAPE(0, big, big)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_full", "[0,1099511627776,1099511627776]");
    kg_tensor *wide = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE((int64_t)1 << 32, 0));
    assert_non_null(wide);
    assert_null(kg_kron(wide, wide)); /* 2^64 rows would wrap to 0 */
    EXPECT(ctx, KG_ERR_RANGE, "kg_kron");
    kg_tensor *tall = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE((int64_t)1 << 58, 0));
    assert_null(kg_concat((kg_tensor *[]){tall, tall, tall}, 3, 0));
    EXPECT(ctx, KG_ERR_RANGE, "kg_concat", "2^59");
    /* kron_linear whose d_in = dA1·dB1 = 2^64 would wrap to x's 0. */
    kg_tensor *x = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(1, 0));
    kg_tensor *a = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(0, (int64_t)1 << 32));
    kg_tensor *b1 = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(1, 0));
    kg_tensor *b2 = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(0, (int64_t)1 << 32));
    assert_null(kg_kron_linear(x, a, b1, b2));
    EXPECT(ctx, KG_ERR_RANGE, "kg_kron_linear", "2^59");
    /* 2^59 elements is the limit itself: allowed as a shape (then out of memory), one more not. */
    assert_null(kg_tensor_new(ctx, KG_DTYPE_F32, 1, SHAPE((int64_t)1 << 59)));
    EXPECT(ctx, KG_ERR_NOMEM, "kg_tensor_new", "out of cpu memory");
    assert_null(kg_tensor_new(ctx, KG_DTYPE_F32, 1, SHAPE(((int64_t)1 << 59) + 1)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_tensor_new", "at most 2^59");
    kg_ctx_free(ctx);
}

/* Issue 6, item 8: the smaller defects. */
static void test_small_defects(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *x = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *big_mask = kg_zeros(ctx, KG_DTYPE_F32, 3, SHAPE(4, 2, 3));
    assert_null(kg_softmax(x, big_mask)); /* would have made a (4, 2, 3) "softmax of x" */
    EXPECT(ctx, KG_ERR_SHAPE, "kg_softmax", "mask [4,2,3] f32", "x [2,3] f32");
    assert_null(kg_concat((kg_tensor *[]){NULL, x}, 2, 0));
    EXPECT(ctx, KG_ERR_ARG, "kg_concat", "input 0 is NULL");
    /* An output too large to represent or to allocate names the op the user called, not
     * kg_tensor_new. Broadcast views make the big operands without memory. */
    kg_tensor *unit = kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(1, 1));
    const int64_t n30 = (int64_t)1 << 30, n29 = (int64_t)1 << 29;
    assert_null(kg_add(kg_expand(unit, 2, SHAPE(n30, 1)), kg_expand(unit, 2, SHAPE(1, n30))));
    EXPECT(ctx, KG_ERR_RANGE, "kg_add:", "more than 2^59");
    assert_null(kg_add(kg_expand(unit, 2, SHAPE(n29, 1)), kg_expand(unit, 2, SHAPE(1, n29))));
    EXPECT(ctx, KG_ERR_NOMEM, "kg_add:", "out of cpu memory");
    kg_tensor *one = kg_full(ctx, KG_DTYPE_F32, 1, SHAPE(1), 7.0);
    kg_tensor *scalar = kg_reshape(one, 0, NULL); /* a 0-dim view: no memcpy from NULL */
    assert_non_null(scalar);
    assert_int_equal(kg_tensor_ndim(scalar), 0);
    assert_true(kg_item(scalar) == 7.0);
    kg_ctx_free(ctx);
}

/* Issue 14, item 6: an op given NULL among non-NULL tensors sets the error on the context of a
 * tensor it was given, whichever argument is NULL (kg_softmax(NULL, mask) returned NULL and set
 * nothing); ids outside [0, rows) are KG_ERR_RANGE even when nothing would be written; a
 * reshape's overflow names the shape asked for. */
static void test_null_among_inputs(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *a = kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(3, 3)), *v = kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(3));
    kg_tensor *ids = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(3), (int32_t[]){0, 1, 2});
    kg_tensor *b1 = kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(3, 1)), *b2 = kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(1, 3));
    kg_tensor *one = kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(1, 1));
    kg_adamw ad = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 1};
    kg_sgd sg = {.lr = 0.1f};
    for (int k = 0; k < 4; k++) {
#define K(i, t) (k == (i) ? NULL : (t))
#define NULL_CASE(call, fn)                                                                      \
    do {                                                                                         \
        if ((call))                                                                              \
            fail_msg("%s with argument %d NULL returned a result", fn, k);                      \
        EXPECT(ctx, KG_ERR_ARG, fn, "NULL");                                                     \
    } while (0)
        if (k == 0) { /* the mask, the weight and the bias are optional */
            NULL_CASE(kg_softmax(NULL, a), "kg_softmax");
            NULL_CASE(kg_layer_norm(NULL, v, v, 1e-5f), "kg_layer_norm");
            NULL_CASE(kg_layer_norm(NULL, NULL, v, 1e-5f), "kg_layer_norm");
        }
        if (k < 2) {
            NULL_CASE(kg_sgd_update(K(0, v), K(1, v), v, &sg) ? v : NULL, "kg_sgd");
            NULL_CASE(kg_add(K(0, a), K(1, a)), "kg_add");
            NULL_CASE(kg_sub(K(0, a), K(1, a)), "kg_sub");
            NULL_CASE(kg_mul(K(0, a), K(1, a)), "kg_mul");
            NULL_CASE(kg_div(K(0, a), K(1, a)), "kg_div");
            NULL_CASE(kg_eq(K(0, a), K(1, a)), "kg_eq");
            NULL_CASE(kg_masked_fill(K(0, a), K(1, a), 0.0f), "kg_masked_fill");
            NULL_CASE(kg_matmul(K(0, a), K(1, a)), "kg_matmul");
            NULL_CASE(kg_matmul_q(K(0, a), K(1, a), true), "kg_matmul_q");
            NULL_CASE(kg_kron(K(0, a), K(1, a)), "kg_kron");
            NULL_CASE(kg_embedding(K(0, a), K(1, ids)), "kg_embedding");
            NULL_CASE(kg_scatter_add_rows(K(0, a), K(1, ids), 3), "kg_scatter_add_rows");
            NULL_CASE(kg_rms_norm(K(0, a), K(1, v), 1e-5f), "kg_rms_norm");
            NULL_CASE(kg_cross_entropy(K(0, a), K(1, ids), -100), "kg_cross_entropy");
            NULL_CASE(kg_concat((kg_tensor *[]){K(0, a), K(1, a)}, 2, 0), "kg_concat");
            NULL_CASE(kg_sgd_update(K(0, v), K(1, v), NULL, &sg) ? v : NULL, "kg_sgd");
            NULL_CASE(kg_tensor_assign(K(0, v), K(1, v)) ? v : NULL, "kg_tensor_assign");
        }
        if (k < 3)
            NULL_CASE(kg_lowrank_linear(K(0, a), K(1, b1), K(2, b2)), "kg_lowrank_linear");
        NULL_CASE(kg_kron_linear(K(0, a), K(1, one), K(2, b1), K(3, b2)), "kg_kron_linear");
        NULL_CASE(kg_adamw_update(K(0, v), K(1, v), K(2, v), K(3, v), &ad) ? v : NULL,
                  "kg_adamw");
        /* A NULL cfg is reported on whichever tensor was given. */
        NULL_CASE(kg_adamw_update(K(0, v), K(1, v), K(2, v), K(3, v), NULL) ? v : NULL,
                  "kg_adamw");
        if (k < 3)
            NULL_CASE(kg_sgd_update(K(0, v), K(1, v), K(2, v), NULL) ? v : NULL, "kg_sgd");
#undef NULL_CASE
#undef K
    }
    /* Nothing to write still checks the ids: scatter into 0 rows, rows of 0 columns. */
    kg_tensor *zeros2 = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2), (int32_t[]){0, 0});
    assert_null(kg_scatter_add_rows(kg_ones(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3)), zeros2, 0));
    EXPECT(ctx, KG_ERR_RANGE, "kg_scatter_add_rows", "id 0 at position 0", "[0, 0)");
    kg_tensor *far = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2), (int32_t[]){1, 5});
    assert_null(kg_scatter_add_rows(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(2, 0)), far, 4));
    EXPECT(ctx, KG_ERR_RANGE, "kg_scatter_add_rows", "id 5 at position 1", "[0, 4)");
    assert_null(kg_embedding(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 0)), far));
    EXPECT(ctx, KG_ERR_RANGE, "kg_embedding", "id 5 at position 1", "[0, 4)");
    kg_tensor *fine = kg_embedding(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(6, 0)), far);
    assert_non_null(fine); /* in range: an empty result */
    assert_int_equal(kg_tensor_numel(fine), 0);
    kg_tensor *four = kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(4));
    assert_null(kg_reshape(four, 2, SHAPE(((int64_t)1 << 62) + 1, 4)));
    EXPECT(ctx, KG_ERR_RANGE, "kg_reshape", "the shape asked for [4611686018427387905,4] has more "
           "than 2^59", "reshaping [4] f32");
    assert_null(kg_reshape(four, 2, SHAPE(3, 2)));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_reshape", "[4] f32 (4 elements)", "asked for [3,2]");
    kg_ctx_free(ctx);
}

static void test_backward_misuse(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *w = kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(3));
    kg_set_requires_grad(w, true);
    kg_tensor *y = kg_mul(w, w);
    assert_false(kg_backward(y));
    EXPECT(ctx, KG_ERR_SHAPE, "kg_backward", "[3] f32", "one element");
    kg_tensor *loss = kg_sum_all(y);
    assert_true(kg_backward(loss));
    assert_true(kg_backward(loss)); /* the tape stays: a second backward adds again */
    assert_tensor(kg_grad(w), (float[]){4, 4, 4}, 3, 0, 0, "dw after two backwards");
    kg_no_grad_begin(ctx);
    kg_tensor *frozen = kg_sum_all(kg_mul(w, w));
    kg_no_grad_end(ctx);
    assert_false(kg_backward(frozen));
    EXPECT(ctx, KG_ERR_STATE, "kg_backward", "does not depend");
    char small[4];
    assert_false(kg_tensor_to_host(w, small, sizeof small));
    EXPECT(ctx, KG_ERR_ARG, "kg_tensor_to_host", "needs 12 bytes");
    kg_ctx_free(ctx);
}

static void test_host_out_of_memory(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    /* 2^50 floats: the allocation fails and says so. */
    assert_null(kg_tensor_new(ctx, KG_DTYPE_F32, 2, SHAPE(1 << 25, 1 << 25)));
    EXPECT(ctx, KG_ERR_NOMEM, "out of cpu memory", "[33554432,33554432] f32");
    kg_ctx_free(ctx);
}

static void test_no_vulkan_device(void **state)
{
    (void)state;
    /* A Vulkan loader pointed at no driver: the context says what is missing, and the CPU
     * backend is unaffected. */
    setenv("VK_ICD_FILENAMES", "/nonexistent/krongrad-test-icd.json", 1);
    kg_ctx *vk = kg_ctx_new(KG_BACKEND_VULKAN);
    unsetenv("VK_ICD_FILENAMES");
    assert_non_null(vk);
    assert_int_equal(kg_ctx_status(vk), KG_ERR_DEVICE);
#ifdef KG_HAVE_VULKAN
    assert_non_null(strstr(kg_error(vk), "no Vulkan driver"));
    assert_non_null(strstr(kg_error(vk), "mesa-vulkan-drivers"));
#else
    assert_non_null(strstr(kg_error(vk), "built without Vulkan"));
#endif
    assert_null(kg_zeros(vk, KG_DTYPE_F32, 1, SHAPE(2))); /* ops on it return NULL */
    kg_clear_error(vk);                                   /* and it stays in error */
    assert_int_equal(kg_ctx_status(vk), KG_ERR_DEVICE);
    kg_ctx_free(vk);
    kg_ctx *cpu = kg_ctx_new(KG_BACKEND_CPU);
    assert_true(kg_item(kg_sum_all(kg_ones(cpu, KG_DTYPE_F32, 1, SHAPE(3)))) == 3.0);
    kg_ctx_free(cpu);
#ifdef KG_HAVE_VULKAN
    setenv("KG_DEVICE", "no-such-device-anywhere", 1);
    vk = kg_ctx_new(KG_BACKEND_VULKAN);
    unsetenv("KG_DEVICE");
    if (!strstr(kg_error(vk), "no Vulkan driver")) /* a machine with a driver */
        assert_non_null(strstr(kg_error(vk), "KG_DEVICE=no-such-device-anywhere matches none"));
    kg_ctx_free(vk);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_mismatches),
        cmocka_unit_test(test_dtype_mismatches),
        cmocka_unit_test(test_null_inputs_and_sticky_errors),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_shape_overflow),
        cmocka_unit_test(test_small_defects),
        cmocka_unit_test(test_null_among_inputs),
        cmocka_unit_test(test_backward_misuse),
        cmocka_unit_test(test_host_out_of_memory),
        cmocka_unit_test(test_no_vulkan_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
