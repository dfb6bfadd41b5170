/* kg_test.h — what the tests share: cmocka, the library (internals too), value comparisons and
 * a gradient checker that compares kg_backward with central finite differences.
 */
#ifndef KG_TEST_H
#define KG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krongrad.h"
#include "tensor/internal.h"

#include <dlfcn.h>

#define SHAPE(...) (int64_t[]){__VA_ARGS__}

/* vkDestroyInstance unloads the Vulkan driver, and LeakSanitizer then reports what the driver's
 * globals still pointed to as leaked (a false positive: kept loaded, lavapipe reports nothing).
 * Every test binary keeps the loader and lavapipe mapped, so the sanitizer run sees only
 * krongrad's leaks. */
__attribute__((constructor)) static void kg_test_keep_drivers_mapped(void)
{
#ifdef RTLD_NODELETE
    dlopen("libvulkan.so.1", RTLD_NOW | RTLD_NODELETE);
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
#endif
}

/* The backend a test program runs on: "vulkan" as argv[1] asks for Vulkan, else the CPU backend.
 * False (the program then exits 77, skipped) when that backend cannot start; it says why. */
static inline bool kg_test_backend(int argc, char **argv, kg_backend_kind *backend)
{
    *backend = argc > 1 && strcmp(argv[1], "vulkan") == 0 ? KG_BACKEND_VULKAN : KG_BACKEND_CPU;
    kg_ctx *probe = kg_ctx_new(*backend);
    bool ok = probe && !kg_ctx_status(probe);
    if (ok)
        printf("device: %s\n", kg_device_name(probe));
    else
        printf("skipped: no usable Vulkan device: %s\n", kg_error(probe));
    kg_ctx_free(probe);
    return ok;
}

/* Fail unless the context is error-free, showing its message. */
#define assert_ok(ctx)                                                                         \
    do {                                                                                       \
        if (kg_ctx_status(ctx))                                                                    \
            fail_msg("context in error: %s", kg_error(ctx));                                   \
    } while (0)

/* Every |got - want| <= atol + rtol·|want|, else fail naming the first bad index. */
#ifdef KG_FIXTURES
/* A fixture model from tests/fixtures/models/NAME, loaded or the test fails. */
static inline kg_model *kg_test_model(kg_ctx *ctx, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s", KG_FIXTURES, name);
    kg_model *m = kg_model_load(ctx, path);
    assert_ok(ctx);
    assert_non_null(m);
    return m;
}

/* Free the model: with it goes every byte the test made (scopes took the rest). */
static inline void kg_test_model_free(kg_ctx *ctx, kg_model *m)
{
    kg_model_free(m);
    kg_flush(ctx); /* Vulkan releases memory once the kernels that used it have run */
    size_t current;
    kg_memory(ctx, &current, NULL);
    assert_int_equal(current, 0);
}
#endif

static inline void assert_close(const float *got, const float *want, int64_t n, float atol,
                                float rtol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (got[i] != want[i] && !(d <= atol + rtol * fabsf(want[i])))
            fail_msg("%s: element %lld is %.7g; expected %.7g (|diff| %.3g > %.3g)", what,
                     (long long)i, (double)got[i], (double)want[i], (double)d,
                     (double)(atol + rtol * fabsf(want[i])));
    }
}

/* The tensor's values vs. an expected array. */
static inline void assert_tensor(const kg_tensor *t, const float *want, int64_t n, float atol,
                                 float rtol, const char *what)
{
    assert_non_null(t);
    assert_int_equal(kg_tensor_numel(t), n);
    float *got = kg_tensor_to_f32(t);
    assert_non_null(got);
    assert_close(got, want, n, atol, rtol, what);
    free(got);
}

/* ---- Gradient check ------------------------------------------------------------------------- */

typedef struct gc_input {
    kg_dtype dtype; /* f32 (random values) or i32 (values from ids) */
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    bool grad;       /* check d loss / d this input */
    bool transposed; /* the leaf holds the last two dims swapped; the op gets a transposed view */
    float lo, hi;    /* the range of its random values; both 0 means [-1, 1] */
    bool spaced;     /* distinct values 0.05 apart (no near-ties for max), in shuffled order */
    const int32_t *ids;
} gc_input;

/* The op under test: build its output from the inputs (already views where asked). */
typedef kg_tensor *(*gc_fn)(kg_tensor **in, void *arg);

typedef struct gc_state {
    const gc_input *spec;
    int n;
    float *data[KG_MAX_INPUTS];
    int64_t numel[KG_MAX_INPUTS];
} gc_state;

static inline kg_tensor *gc_leaf(kg_ctx *ctx, const gc_state *s, int i, kg_tensor **leaf,
                                 bool grad)
{
    const gc_input *in = &s->spec[i];
    int64_t shape[KG_MAX_DIMS];
    memcpy(shape, in->shape, sizeof shape);
    if (in->transposed) {
        shape[in->ndim - 1] = in->shape[in->ndim - 2];
        shape[in->ndim - 2] = in->shape[in->ndim - 1];
    }
    const void *data = in->dtype == KG_DTYPE_I32 ? (const void *)in->ids : s->data[i];
    *leaf = kg_from_host(ctx, in->dtype, in->ndim, shape, data);
    kg_set_requires_grad(*leaf, grad);
    return in->transposed ? kg_transpose(*leaf, -1, -2) : *leaf;
}

/* loss = Σ out ⊙ W for fixed random W, so every output element's gradient is exercised.
 * Returns the loss; fills grads[i] (malloc'd) for inputs with grad when grads is given, and the
 * output's values (malloc'd, *outn of them) when outv is given. */
static inline double gc_eval(kg_ctx *ctx, const gc_state *s, gc_fn f, void *arg,
                             float **grads, float **outv, int64_t *outn)
{
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *leaf[KG_MAX_INPUTS], *in[KG_MAX_INPUTS];
    bool any_grad = false;
    for (int i = 0; i < s->n; i++) {
        in[i] = gc_leaf(ctx, s, i, &leaf[i], grads && s->spec[i].grad);
        any_grad |= s->spec[i].grad;
    }
    kg_tensor *out = f(in, arg);
    assert_ok(ctx);
    kg_tensor *w = kg_uniform(ctx, out->ndim, out->shape, -1.0f, 1.0f, 99);
    kg_tensor *loss = kg_sum_all(kg_mul(kg_cast(out, KG_DTYPE_F32), w));
    double value = kg_item(loss);
    if (outv) {
        *outv = kg_tensor_to_f32(out);
        *outn = kg_tensor_numel(out);
    }
    if (grads && any_grad) {
        kg_backward(loss);
        for (int i = 0; i < s->n; i++)
            if (s->spec[i].grad) {
                kg_tensor *g = kg_grad(leaf[i]);
                if (!g)
                    fail_msg("input %d got no gradient", i);
                grads[i] = kg_tensor_to_f32(g);
            }
    }
    assert_ok(ctx);
    kg_scope_end(ctx, scope);
    return value;
}

/* The inputs' host values: uniform in [lo, hi] (default [-1, 1]) or spaced, from the seed. */
static inline void gc_prepare(gc_state *s, const gc_input *spec, int n, uint64_t seed)
{
    *s = (gc_state){.spec = spec, .n = n};
    for (int i = 0; i < n; i++) {
        s->numel[i] = kg__numel(spec[i].ndim, spec[i].shape);
        s->data[i] = malloc(sizeof(float) * (size_t)(s->numel[i] + 1));
        float lo = spec[i].lo, hi = spec[i].hi;
        if (lo == 0.0f && hi == 0.0f)
            lo = -1.0f, hi = 1.0f;
        for (int64_t k = 0; k < s->numel[i]; k++)
            s->data[i][k] = spec[i].spaced
                               ? 0.05f * (float)((k * 7919 + (int64_t)seed) % s->numel[i]) - 0.5f
                               : lo + (hi - lo) * kg__uniform01(seed + (uint64_t)i, (uint64_t)k);
    }
}

static inline void gc_release(gc_state *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->data[i]);
}

/* Per-op counts of what gradcheck's contexts made, over the whole test program. */
static inline uint64_t *gc_ops_made(void)
{
    static uint64_t made[KG_OP_COUNT];
    return made;
}

/* Check every element of every input with grad = true. f32 forward, so eps and the tolerance
 * are sized for single precision. */
static inline void gradcheck(const char *name, gc_fn f, void *arg, int n, const gc_input *spec,
                             uint64_t seed)
{
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    gc_state s;
    gc_prepare(&s, spec, n, seed);
    float *grads[KG_MAX_INPUTS] = {0};
    gc_eval(ctx, &s, f, arg, grads, NULL, NULL);
    const float eps = 1e-2f;
    for (int i = 0; i < n; i++) {
        if (!spec[i].grad)
            continue;
        for (int64_t k = 0; k < s.numel[i]; k++) {
            float keep = s.data[i][k];
            s.data[i][k] = keep + eps;
            double up = gc_eval(ctx, &s, f, arg, NULL, NULL, NULL);
            s.data[i][k] = keep - eps;
            double down = gc_eval(ctx, &s, f, arg, NULL, NULL, NULL);
            s.data[i][k] = keep;
            double num = (up - down) / (2.0 * eps), ana = grads[i][k];
            if (!(fabs(ana - num) <= 1e-3 + 5e-3 * fabs(num)))
                fail_msg("%s: d loss / d input %d [%lld] is %.6g by backward, %.6g by finite "
                         "differences", name, i, (long long)k, ana, num);
        }
        free(grads[i]);
    }
    gc_release(&s);
    size_t current;
    kg_memory(ctx, &current, NULL);
    assert_int_equal(current, 0); /* every scope released what it made */
    for (int op = 0; op < KG_OP_COUNT; op++)
        gc_ops_made()[op] += ctx->op_made[op];
    kg_ctx_free(ctx);
}

/* Fail naming each op of the table that `made` (per-op counts of results, as ctx->op_made)
 * never saw: an op added to the table without a case in op_cases.h is caught here. */
static inline void assert_every_op_ran(const uint64_t *made, const char *where)
{
    char missing[512] = "";
    for (int op = 0; op < KG_OP_COUNT; op++)
        if (!made[op] && strlen(missing) + 32 < sizeof missing)
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s",
                     kg_op_table[op].name);
    if (missing[0])
        fail_msg("%s: no case in tests/op_cases.h ran these ops:%s", where, missing);
}

/* kron_linear's forward and backward at d_in = d_out = 1024 (A 2×2, B 512×512, R 4) stay far
 * below the 4 MiB that ΔW alone would take, by the backend's own memory figures; and those
 * figures do see ΔW when the materialized form runs. */
static inline void assert_kron_linear_never_forms_delta_w(kg_ctx *ctx)
{
    const int64_t N = 4, din = 1024, dout = 1024;
    kg_tensor *x = kg_normal(ctx, 2, SHAPE(N, din), 0, 1, 1);
    kg_tensor *a = kg_normal(ctx, 2, SHAPE(2, 2), 0, 1, 2);
    kg_tensor *b1 = kg_normal(ctx, 2, SHAPE(512, 4), 0, 1, 3);
    kg_tensor *b2 = kg_normal(ctx, 2, SHAPE(4, 512), 0, 1, 4);
    kg_tensor *params[] = {x, a, b1, b2};
    for (int i = 0; i < 4; i++)
        kg_set_requires_grad(params[i], true);
    size_t base, peak, delta_w = (size_t)(dout * din) * sizeof(float);
    kg_flush(ctx);
    kg_memory(ctx, &base, NULL);
    kg_memory_reset_peak(ctx);
    kg_scope s = kg_scope_begin(ctx);
    kg_backward(kg_sum_all(kg_kron_linear(x, a, b1, b2)));
    kg_flush(ctx);
    kg_scope_end(ctx, s);
    assert_ok(ctx);
    kg_memory(ctx, NULL, &peak);
    print_message("%s: kron_linear forward+backward peaks %zu bytes above the inputs; "
                  "ΔW alone would be %zu\n", kg_backend_name(ctx), peak - base, delta_w);
    assert_true(peak - base < delta_w / 4);
    for (int i = 0; i < 4; i++)
        kg_zero_grad(params[i]);
    kg_flush(ctx);
    kg_memory(ctx, &base, NULL);
    kg_memory_reset_peak(ctx);
    s = kg_scope_begin(ctx);
    kg_tensor *dw = kg_kron(a, kg_matmul(b1, b2)); /* the materialized form */
    kg_backward(kg_sum_all(kg_matmul_t(x, dw, false, true)));
    kg_flush(ctx);
    kg_scope_end(ctx, s);
    kg_memory(ctx, NULL, &peak);
    assert_true(peak - base >= delta_w);
    assert_ok(ctx);
}

#define F32(nd, ...) {.dtype = KG_DTYPE_F32, .ndim = nd, .shape = {__VA_ARGS__}, .grad = true}
#define F32T(nd, ...) {.dtype = KG_DTYPE_F32, .ndim = nd, .shape = {__VA_ARGS__}, .grad = true,   \
                       .transposed = true}
#define CONST(nd, ...) {.dtype = KG_DTYPE_F32, .ndim = nd, .shape = {__VA_ARGS__}}
#define CONSTT(nd, ...) {.dtype = KG_DTYPE_F32, .ndim = nd, .shape = {__VA_ARGS__}, .transposed = true}

#endif
