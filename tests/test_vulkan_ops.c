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

/* After the op cases above (they run first): every op of the table ran on the device. */
static void test_every_op_has_a_case(void **state)
{
    (void)state;
    assert_every_op_ran(vk->op_made, "Vulkan parity cases");
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

/* Lavapipe ends a shader's loops after 65,535 iterations in all, silently (KG_LOOP_CHUNK in
 * shaders/codes.h): a sum over 120,000 elements came out as the sum of its first 65,534. Axes
 * and id lists past that length are worked in passes; each op here crosses the limit. */
static void test_loops_past_the_lavapipe_limit(void **state)
{
    (void)state;
    const int64_t R = 3, n = 70001, rows = 70003, C = 2;
    int32_t *ids = malloc(sizeof *ids * n);
    assert_non_null(ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7919 + 3) % rows);
    float *got[2][4];
    int64_t len[4] = {R, R, n, rows * C};
    kg_ctx *ctxs[2] = {cpu, vk};
    for (int b = 0; b < 2; b++) {
        kg_scope s = kg_scope_begin(ctxs[b]);
        kg_tensor *x = kg_uniform(ctxs[b], 2, (int64_t[]){R, n}, -1, 1, 7);
        kg_tensor *xt = kg_contiguous(kg_transpose(x, 0, 1)); /* (n, R): a long outer axis */
        kg_tensor *src = kg_uniform(ctxs[b], 2, (int64_t[]){n, C}, -1, 1, 8);
        kg_tensor *id = kg_from_host(ctxs[b], KG_DTYPE_I32, 1, &n, ids);
        got[b][0] = kg_tensor_to_f32(kg_sum(x, -1, false));
        got[b][1] = kg_tensor_to_f32(kg_max(x, -1, false));
        got[b][2] = kg_tensor_to_f32(kg_sum(xt, -1, false));
        got[b][3] = kg_tensor_to_f32(kg_scatter_add_rows(src, id, rows));
        kg_scope_end(ctxs[b], s);
        assert_ok(ctxs[b]);
    }
    const char *what[4] = {"sum over 70,001", "max over 70,001", "sum of 70,001 rows of 3",
                           "scatter_add_rows of 70,001 ids"};
    for (int k = 0; k < 4; k++) {
        assert_close(got[1][k], got[0][k], len[k], 1e-3f, 1e-4f, what[k]);
        free(got[0][k]);
        free(got[1][k]);
    }
    free(ids);
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

/* ---- issue 6: the Vulkan half ------------------------------------------------------------ */

static void test_empty_tensors(void **state)
{
    (void)state;
    /* Zero-byte uploads and downloads are no-ops on both paths (mapped and staging: meson runs
     * this file both ways), and ops on empty tensors record nothing. */
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *z = kg_zeros(vk, KG_DTYPE_F32, 2, SHAPE(3, 0));
    kg_tensor *h = kg_from_host(vk, KG_DTYPE_F32, 2, SHAPE(0, 2), (float[]){0});
    float host[1] = {42};
    assert_true(kg_tensor_to_host(z, host, 0));
    assert_true(kg_tensor_to_host(kg_exp(z), host, 0));
    assert_true(kg_tensor_to_host(kg_cast(z, KG_DTYPE_F16), host, 0));
    assert_true(host[0] == 42);
    /* An empty inner dimension gives a non-empty result of zeros, as on the CPU. */
    assert_tensor(kg_matmul(z, h), (float[]){0, 0, 0, 0, 0, 0}, 6, 0, 0, "(3,0)·(0,2)");
    assert_tensor(kg_sum(z, 1, false), (float[]){0, 0, 0}, 3, 0, 0, "sum over an empty axis");
    kg_tensor *b1 = kg_ones(vk, KG_DTYPE_F32, 2, SHAPE(2, 4)), *b2 = kg_zeros(vk, KG_DTYPE_F32, 2, SHAPE(4, 0));
    assert_tensor(kg_lowrank_linear(z, b1, b2), (float[]){0, 0, 0, 0, 0, 0}, 6, 0, 0,
                  "lowrank_linear with d_in 0");
    kg_scope_end(vk, s);
    assert_ok(vk);
    assert_no_validation_messages();
}

static void test_validation_counts_only_the_layer(void **state)
{
    (void)state;
    /* The loader's "env var 'VK_INSTANCE_LAYERS' defined" comes through the same messenger as a
     * warning: information, not a validation message. */
    VkDebugUtilsMessengerCallbackDataEXT loader = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CALLBACK_DATA_EXT,
        .pMessageIdName = "Loader Message",
        .pMessage = "env var 'VK_INSTANCE_LAYERS' defined and adding layers"};
    VkDebugUtilsMessengerCallbackDataEXT layer = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CALLBACK_DATA_EXT,
        .pMessageIdName = "VUID-vkCmdDispatch-None-02699", .pMessage = "a real problem"};
    assert_false(kg__vk_counts_as_validation(VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
                                             &loader));
    assert_true(kg__vk_counts_as_validation(VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
                                            &layer));
    assert_true(kg__vk_counts_as_validation(VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
                                            &layer));
    assert_false(kg__vk_counts_as_validation(VK_DEBUG_UTILS_MESSAGE_SEVERITY_INFO_BIT_EXT,
                                             &layer));
    assert_false(kg__vk_counts_as_validation(VK_DEBUG_UTILS_MESSAGE_SEVERITY_VERBOSE_BIT_EXT,
                                             &layer));

    /* The layer enabled the loader's way: it is listened to, and a clean run counts nothing. */
    const char *was = getenv("VK_INSTANCE_LAYERS");
    char *keep = was ? strdup(was) : NULL;
    setenv("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation", 1);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_VULKAN);
    if (keep)
        setenv("VK_INSTANCE_LAYERS", keep, 1);
    else
        unsetenv("VK_INSTANCE_LAYERS");
    free(keep);
    assert_ok(ctx);
    assert_true(kg_item(kg_sum_all(kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(4)))) == 4.0);
    const char *first = NULL;
    size_t n = kg__vk_validation_count(ctx, &first);
    bool listening = kg__vk_validating(ctx);
    kg_ctx_free(ctx);
    if (n)
        fail_msg("%zu validation messages; the first: %s", n, first);
    if (kg__vk_validating(vk)) /* the layer is installed: it must be listened to that way too */
        assert_true(listening);
}

/* kron_linear / lowrank_linear whose T1 and T2 exceed the fused kernel's shared memory
 * ((dA1 + dA2)·R > 2048) run unfused; forward and gradients as on the CPU. Tiny dB. */
static void test_structured_ops_large_rank(void **state)
{
    (void)state;
    gc_input a16[] = {F32(2, 2, 16), F32(2, 16, 16), F32(2, 1, 96), F32(2, 96, 1)};
    parity("kron_linear A 16x16, R 96", f_kron_linear, NULL, 4, a16, 134);
    gc_input a32[] = {F32(2, 1, 64), F32(2, 32, 32), F32(2, 2, 64), F32(2, 64, 2)};
    parity("kron_linear A 32x32, R 64", f_kron_linear, NULL, 4, a32, 135);
    /* dA1 + dA2 alone over the limit */
    gc_input wide[] = {F32(2, 2, 2100), F32(2, 1, 2100), F32(2, 2, 1), F32(2, 1, 1)};
    parity("kron_linear A 1x2100, R 1", f_kron_linear, NULL, 4, wide, 136);
    gc_input lr[] = {F32(2, 2, 3), F32(2, 2, 1025), F32(2, 1025, 3)};
    parity("lowrank_linear R 1025", f_lowrank, NULL, 3, lr, 137);
}

/* rope far into a sequence against float64: the angle pos·θ^(-2i/D) is in the thousands of
 * radians. Vulkan's error is at most the CPU kernel's (PyTorch f32 computes the same way). */
static void test_rope_precision_at_large_positions(void **state)
{
    (void)state;
    enum { T = 8, D = 64 };
    const float theta = 10000.0f;
    const int64_t starts[] = {4090, 8185}; /* positions up to 8192 */
    float x[T * D];
    for (int k = 0; k < T * D; k++)
        x[k] = -1.0f + 2.0f * kg__uniform01(7, (uint64_t)k);
    for (size_t si = 0; si < sizeof starts / sizeof starts[0]; si++) {
        double err[2] = {0, 0};
        kg_ctx *ctxs[2] = {cpu, vk};
        for (int b = 0; b < 2; b++) {
            kg_scope s = kg_scope_begin(ctxs[b]);
            kg_tensor *t = kg_from_host(ctxs[b], KG_DTYPE_F32, 2, SHAPE(T, D), x);
            float *y = kg_tensor_to_f32(kg_rope(t, starts[si], theta));
            assert_ok(ctxs[b]);
            for (int r = 0; r < T; r++)
                for (int i = 0; i < D / 2; i++) {
                    double ang = (double)(starts[si] + r) * pow(theta, -2.0 * i / D);
                    double x1 = x[r * D + i], x2 = x[r * D + i + D / 2];
                    double y1 = x1 * cos(ang) - x2 * sin(ang), y2 = x2 * cos(ang) + x1 * sin(ang);
                    err[b] = fmax(err[b], fmax(fabs(y[r * D + i] - y1),
                                               fabs(y[r * D + i + D / 2] - y2)));
                }
            free(y);
            kg_scope_end(ctxs[b], s);
        }
        if (!(err[1] <= err[0] * 1.001 + 1e-7))
            fail_msg("rope at positions %lld..%lld: max error %.3g on Vulkan, %.3g on the CPU",
                     (long long)starts[si], (long long)starts[si] + T - 1, err[1], err[0]);
    }
    assert_no_validation_messages();
}

static void test_norm_stats(void **state)
{
    (void)state;
    /* Rows (C = 300) of mean 50 and spread 0.1, where f32 statistics lose digits unless the
     * mean is corrected; and the same rows' RMS statistics (mean 0). Against float64. */
    enum { R = 3, C = 300 };
    float x[R * C];
    for (int k = 0; k < R * C; k++)
        x[k] = 50.0f + 0.1f * (float)k / C + 0.2f * (kg__uniform01(3, (uint64_t)k) - 0.5f);
    for (int rms = 0; rms < 2; rms++) {
        kg_scope s = kg_scope_begin(vk);
        kg_tensor *t = kg_from_host(vk, KG_DTYPE_F32, 2, SHAPE(R, C), x);
        kg_opparams p = {.norm = {.rms = rms, .eps = 1e-5f}};
        float *got = kg_tensor_to_f32(kg__op(KG_OP_NORM_STATS, 1, &t, &p));
        assert_ok(vk);
        for (int r = 0; r < R; r++) {
            double mean = 0, var = 0;
            for (int k = 0; k < C; k++)
                mean += x[r * C + k];
            mean = rms ? 0 : mean / C;
            for (int k = 0; k < C; k++)
                var += (x[r * C + k] - mean) * (x[r * C + k] - mean);
            double rstd = 1.0 / sqrt(var / C + 1e-5);
            if (fabs(got[2 * r] - mean) > 1e-6 * 50 || fabs(got[2 * r + 1] - rstd) > 1e-5 * rstd)
                fail_msg("norm_stats (rms %d) row %d: [%.9g, %.9g]; expected [%.9g, %.9g]", rms, r,
                         got[2 * r], got[2 * r + 1], mean, rstd);
        }
        free(got);
        kg_scope_end(vk, s);
    }
    assert_no_validation_messages();
}

static void test_shaders_needing_16bit_storage(void **state)
{
    (void)state;
    /* Read from each module's capabilities: only the 16-bit copy and the cast ask for it. */
    for (int sh = 0; sh < KG_VK_SHADER_COUNT; sh++)
        assert_int_equal(kg__vk_shader_needs_16bit(sh), sh == KG_VK_COPY16 || sh == KG_VK_CAST);
}

static void test_kernels_refuse_ops_without_a_case(void **state)
{
    (void)state;
    /* Each Vulkan kernel given an op it has no case for: an internal error, never another op's
     * result (rows once ran cross entropy for anything it did not know). */
    kg_kernel_fn kernels[] = {kg__vk_elementwise, kg__vk_reduce, kg__vk_structured_linear,
                            kg__vk_rows, kg__vk_gather, kg__vk_optim};
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *x = kg_ones(vk, KG_DTYPE_F32, 2, SHAPE(2, 3)), *y = kg_zeros(vk, KG_DTYPE_F32, 2, SHAPE(2, 3));
    assert_ok(vk);
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        kg_opcall c = {.ctx = vk, .op = KG_OP_MATMUL, .n_in = 1, .in = {x}, .out = y};
        assert_false(kernels[k](&c));
        assert_int_equal(kg_ctx_status(vk), KG_ERR_STATE);
        assert_non_null(strstr(kg_error(vk), "internal: op matmul has no Vulkan case"));
        kg_clear_error(vk);
    }
    kg_scope_end(vk, s);
}

/* One dispatch of a shader whose mode is 0 (no mode): the shader reports it and writes NaN. */
static void expect_bad_mode(kg_vk_shader sh, const void *push, size_t size, kg_tensor *x,
                            kg_tensor *y, const char *what)
{
    kg_opcall c = {.ctx = vk, .op = KG_OP_EXP, .n_in = 1, .in = {x}, .out = y};
    assert_true(kg_vk_dispatch(&c, sh, push, size, 1, 1, 1, &x, 1, y));
    kg_flush(vk);
    if (kg_ctx_status(vk) != KG_ERR_STATE || !strstr(kg_error(vk), "internal: kg_exp reached a "
                                                     "Vulkan shader with mode 0"))
        fail_msg("%s: %s", what, kg_ctx_status(vk) ? kg_error(vk) : "no error");
    kg_clear_error(vk);
}

static void test_shaders_report_a_mode_without_a_case(void **state)
{
    (void)state;
    kg_scope s = kg_scope_begin(vk);
    kg_tensor *x = kg_ones(vk, KG_DTYPE_F32, 2, SHAPE(2, 3)), *y = kg_zeros(vk, KG_DTYPE_F32, 2, SHAPE(2, 3));
    kg_tensor *ids = kg_zeros(vk, KG_DTYPE_I32, 1, SHAPE(2));
    kg_flush(vk);
    assert_ok(vk);
    uint64_t st = kg_vk_status_addr(vk), xa = kg_vk_addr(x), ya = kg_vk_addr(y);
    ew_push ew = {.dst = ya, .a = xa, .b = xa, .status = st, .dim = {1, 1, 2, 3},
                  .a_stride = {0, 0, 3, 1}, .b_stride = {0, 0, 3, 1}, .n = 6, .op = KG_OP_EXP};
    expect_bad_mode(KG_VK_ELEMENTWISE, &ew, sizeof ew, x, y, "elementwise");
    float *got = kg_tensor_to_f32(y);
    for (int i = 0; i < 6; i++)
        assert_true(isnan(got[i])); /* never a value another op would give */
    free(got);
    reduce_push red = {.dst = ya, .x = xa, .status = st, .outer = 1, .n = 2, .inner = 3,
                       .op = KG_OP_EXP};
    expect_bad_mode(KG_VK_REDUCE, &red, sizeof red, x, y, "reduce");
    rows_push rows = {.dst = ya, .x = xa, .status = st, .rows = 2, .C = 3, .op = KG_OP_EXP};
    expect_bad_mode(KG_VK_ROWS, &rows, sizeof rows, x, y, "rows");
    gather_push ga = {.dst = ya, .src = xa, .ids = kg_vk_addr(ids), .status = st, .n = 2, .C = 3,
                      .limit = 2, .op = KG_OP_EXP};
    expect_bad_mode(KG_VK_GATHER, &ga, sizeof ga, x, y, "gather");
    optim_push op = {.param = ya, .grad = xa, .status = st, .n = 6, .op = KG_OP_EXP};
    expect_bad_mode(KG_VK_OPTIM, &op, sizeof op, x, y, "optim");
    if (((const vk_state *)vk->be_state)->has_16bit) {
        cast_push ca = {.dst = ya, .src = xa, .status = st, .from = DT_COUNT, .to = DT_F32, .n = 6,
                        .op = KG_OP_EXP};
        /* DT_COUNT is no dtype: the cast reports it as its mode */
        kg_opcall c = {.ctx = vk, .op = KG_OP_EXP, .n_in = 1, .in = {x}, .out = y};
        assert_true(kg_vk_dispatch(&c, KG_VK_CAST, &ca, sizeof ca, 1, 1, 1, &x, 1, y));
        kg_flush(vk);
        assert_int_equal(kg_ctx_status(vk), KG_ERR_STATE);
        char mode[32];
        snprintf(mode, sizeof mode, "with mode %d", DT_COUNT);
        assert_non_null(strstr(kg_error(vk), mode));
        kg_clear_error(vk);
    }
    kg_scope_end(vk, s);
    assert_no_validation_messages();
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
    /* bf16 weights on vdpbf16ps round x to bf16 (a step function to finite differences, and
     * off by 2⁻⁹ from the exact product the Vulkan kernel forms; that rounding is checked in
     * test_gemm_w): the op cases check the math on the f32 kernels. */
    setenv("KG_GEMM_PATH", "avx512", 1);
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
        cmocka_unit_test(test_every_op_has_a_case), /* after the op cases */
        cmocka_unit_test(test_bad_index_is_reported_at_flush),
        cmocka_unit_test(test_tensor_over_the_binding_limit),
        cmocka_unit_test(test_loops_past_the_lavapipe_limit),
        cmocka_unit_test(test_device_out_of_memory_is_an_error),
        cmocka_unit_test(test_memory_is_reused_and_released),
        cmocka_unit_test(test_profile_counts_ops),
        cmocka_unit_test(test_barriers_only_on_dependencies),
        cmocka_unit_test(test_long_chains_span_batches),
        cmocka_unit_test(test_device_listing),
        cmocka_unit_test(test_batches_beyond_the_grid),
        cmocka_unit_test(test_kron_linear_never_forms_delta_w),
        cmocka_unit_test(test_empty_tensors),
        cmocka_unit_test(test_validation_counts_only_the_layer),
        cmocka_unit_test(test_structured_ops_large_rank),
        cmocka_unit_test(test_rope_precision_at_large_positions),
        cmocka_unit_test(test_norm_stats),
        cmocka_unit_test(test_shaders_needing_16bit_storage),
        cmocka_unit_test(test_kernels_refuse_ops_without_a_case),
        cmocka_unit_test(test_shaders_report_a_mode_without_a_case),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
