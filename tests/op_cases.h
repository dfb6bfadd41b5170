/* op_cases.h — the op cases both gradient checks and Vulkan parity tests run: every op, on
 * several small shapes including broadcast and non-contiguous (transposed) inputs. Each
 * cases_*() function hands its cases to a check: test_gradcheck.c passes finite differences,
 * test_vulkan_ops.c passes a comparison of the Vulkan backend with the CPU backend.
 */
#ifndef KG_OP_CASES_H
#define KG_OP_CASES_H

#include "kg_test.h"

typedef void (*check_fn)(const char *name, gc_fn f, void *arg, int n, const gc_input *spec,
                         uint64_t seed);

/* ---- the ops, as callbacks ---- */

static kg_tensor *f_add(kg_tensor **x, void *a) { (void)a; return kg_add(x[0], x[1]); }
static kg_tensor *f_sub(kg_tensor **x, void *a) { (void)a; return kg_sub(x[0], x[1]); }
static kg_tensor *f_mul(kg_tensor **x, void *a) { (void)a; return kg_mul(x[0], x[1]); }
static kg_tensor *f_div(kg_tensor **x, void *a) { (void)a; return kg_div(x[0], x[1]); }
static kg_tensor *f_scale(kg_tensor **x, void *a) { (void)a; return kg_add_scalar(kg_scale(x[0], -1.5f), 0.25f); }
static kg_tensor *f_neg(kg_tensor **x, void *a) { (void)a; return kg_neg(x[0]); }
static kg_tensor *f_exp(kg_tensor **x, void *a) { (void)a; return kg_exp(x[0]); }
static kg_tensor *f_log(kg_tensor **x, void *a) { (void)a; return kg_log(x[0]); }
static kg_tensor *f_sqrt(kg_tensor **x, void *a) { (void)a; return kg_sqrt(x[0]); }
static kg_tensor *f_rsqrt(kg_tensor **x, void *a) { (void)a; return kg_rsqrt(x[0]); }
static kg_tensor *f_tanh(kg_tensor **x, void *a) { (void)a; return kg_tanh(x[0]); }
static kg_tensor *f_sigmoid(kg_tensor **x, void *a) { (void)a; return kg_sigmoid(x[0]); }
static kg_tensor *f_erf(kg_tensor **x, void *a) { (void)a; return kg_erf(x[0]); }
static kg_tensor *f_relu(kg_tensor **x, void *a) { (void)a; return kg_relu(x[0]); }
static kg_tensor *f_gelu(kg_tensor **x, void *a) { (void)a; return kg_gelu(x[0]); }
static kg_tensor *f_silu(kg_tensor **x, void *a) { (void)a; return kg_silu(x[0]); }
static kg_tensor *f_sum(kg_tensor **x, void *a) { return kg_sum(x[0], *(int *)a, false); }
static kg_tensor *f_sum_keep(kg_tensor **x, void *a) { return kg_sum(x[0], *(int *)a, true); }
static kg_tensor *f_mean(kg_tensor **x, void *a) { return kg_mean(x[0], *(int *)a, true); }
static kg_tensor *f_max(kg_tensor **x, void *a) { return kg_max(x[0], *(int *)a, false); }
static kg_tensor *f_matmul(kg_tensor **x, void *a) { (void)a; return kg_matmul(x[0], x[1]); }
static kg_tensor *f_matmul_tt(kg_tensor **x, void *a)
{
    const bool *t = a;
    return kg_matmul_t(x[0], x[1], t[0], t[1]);
}
/* (T, H, D) → heads (H, T, D) by a transpose, times (H, D, N): no copy on the way in. */
static kg_tensor *f_matmul_heads(kg_tensor **x, void *a)
{
    (void)a;
    return kg_matmul(kg_transpose(x[0], 0, 1), x[1]);
}
/* q (B, G, T, D) against k (B, 1, S, D) expanded to (B, G, S, D), transposed: stride 0. */
static kg_tensor *f_matmul_expanded(kg_tensor **x, void *a)
{
    (void)a;
    kg_tensor *k = kg_expand(x[1], 4, (int64_t[]){2, 3, 5, 4});
    return kg_matmul_t(x[0], k, false, true);
}
/* x · op(W) with W (a constant input) stored as dtype: a frozen, quantized weight. */
typedef struct matmul_q_arg { kg_dtype dtype; bool trans; } matmul_q_arg;
static kg_tensor *f_matmul_q(kg_tensor **x, void *a)
{
    const matmul_q_arg *q = a;
    return kg_matmul_q(x[0], kg_quantize(x[1], q->dtype), q->trans);
}
static kg_tensor *f_softmax(kg_tensor **x, void *a) { (void)a; return kg_softmax(x[0], NULL); }
static kg_tensor *f_softmax_mask(kg_tensor **x, void *a) { (void)a; return kg_softmax(x[0], x[1]); }
static kg_tensor *f_log_softmax(kg_tensor **x, void *a) { (void)a; return kg_log_softmax(x[0]); }
/* attention's softmax(scale·s + mask): a causal mask (-inf above the diagonal) made here, an
 * additive mask given as input 1 (which may want its own gradient), or none */
static kg_tensor *f_softmax_causal(kg_tensor **x, void *a)
{
    (void)a;
    int64_t T = kg_tensor_dim(x[0], -1);
    return kg_softmax_scaled(x[0], 0.35f, kg_attention_mask(kg_tensor_ctx(x[0]), NULL, T, 0, true, 0));
}
static kg_tensor *f_softmax_scaled(kg_tensor **x, void *a) { (void)a; return kg_softmax_scaled(x[0], 1.7f, x[1]); }
static kg_tensor *f_softmax_scaled_plain(kg_tensor **x, void *a) { (void)a; return kg_softmax_scaled(x[0], -1.5f, NULL); }
static kg_tensor *f_swiglu(kg_tensor **x, void *a) { (void)a; return kg_swiglu(x[0], x[1]); }
static kg_tensor *f_layer_norm(kg_tensor **x, void *a) { (void)a; return kg_layer_norm(x[0], x[1], x[2], 1e-5f); }
static kg_tensor *f_layer_norm_plain(kg_tensor **x, void *a) { (void)a; return kg_layer_norm(x[0], NULL, NULL, 1e-5f); }
static kg_tensor *f_rms_norm(kg_tensor **x, void *a) { (void)a; return kg_rms_norm(x[0], x[1], 1e-6f); }
static kg_tensor *f_rope(kg_tensor **x, void *a) { (void)a; return kg_rope(x[0], 3, 10000.0f); }
static kg_tensor *f_embedding(kg_tensor **x, void *a) { (void)a; return kg_embedding(x[0], x[1]); }
static kg_tensor *f_scatter(kg_tensor **x, void *a) { (void)a; return kg_scatter_add_rows(x[0], x[1], 5); }
static kg_tensor *f_cross_entropy(kg_tensor **x, void *a) { (void)a; return kg_cross_entropy(x[0], x[1], -100); }
static kg_tensor *f_linear_log_prob(kg_tensor **x, void *a) { (void)a; return kg_linear_log_prob(x[0], x[1], x[2], -100); }
static kg_tensor *f_masked_fill(kg_tensor **x, void *a) { (void)a; return kg_masked_fill(x[0], x[1], -3.0f); }
static kg_tensor *f_dropout(kg_tensor **x, void *a) { (void)a; return kg_dropout(x[0], 0.4f, 1234); }
static kg_tensor *f_concat(kg_tensor **x, void *a) { return kg_concat(x, 3, *(int *)a); }
static kg_tensor *f_kron(kg_tensor **x, void *a) { (void)a; return kg_kron(x[0], x[1]); }
static kg_tensor *f_lowrank(kg_tensor **x, void *a) { (void)a; return kg_lowrank_linear(x[0], x[1], x[2]); }
static kg_tensor *f_kron_linear(kg_tensor **x, void *a) { (void)a; return kg_kron_linear(x[0], x[1], x[2], x[3]); }
static kg_tensor *f_views(kg_tensor **x, void *a)
{
    /* permute, slice, expand and reshape chained: (2,3,4) → (4,2,3) → slice → expand → reshape */
    (void)a;
    kg_tensor *p = kg_permute(x[0], (int[]){2, 0, 1});
    kg_tensor *s = kg_slice(p, 0, 1, 2);
    kg_tensor *e = kg_expand(kg_reshape(s, 4, SHAPE(2, 1, 2, 3)), 4, SHAPE(2, 3, 2, 3));
    return kg_mul(kg_reshape(e, 2, SHAPE(6, 6)), kg_contiguous(kg_transpose(kg_reshape(e, 2, SHAPE(6, 6)), 0, 1)));
}

/* ---- the cases ---- */

static void cases_binary_ops(check_fn check)
{
    gc_fn fs[] = {f_add, f_sub, f_mul, f_div};
    const char *names[] = {"add", "sub", "mul", "div"};
    for (int k = 0; k < 4; k++) {
        float lo = k == 3 ? 0.5f : -1.0f; /* keep divisors away from 0 */
        gc_input same[] = {F32(2, 3, 4), {.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {3, 4},
                                          .grad = true, .lo = lo, .hi = 2.0f}};
        check(names[k], fs[k], NULL, 2, same, 1);
        gc_input bcast[] = {F32(3, 2, 3, 4), {.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {1, 4},
                                              .grad = true, .lo = lo, .hi = 2.0f}};
        check(names[k], fs[k], NULL, 2, bcast, 2);
        gc_input both[] = {F32(3, 2, 1, 4), {.dtype = KG_DTYPE_F32, .ndim = 3, .shape = {1, 3, 1},
                                             .grad = true, .lo = lo, .hi = 2.0f}};
        check(names[k], fs[k], NULL, 2, both, 3);
        gc_input strided[] = {F32T(2, 3, 4), {.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {3, 4},
                                              .grad = true, .transposed = true, .lo = lo, .hi = 2.0f}};
        check(names[k], fs[k], NULL, 2, strided, 4);
    }
}

static void cases_unary_ops(check_fn check)
{
    struct { const char *name; gc_fn f; float lo, hi; } cases[] = {
        {"scale", f_scale, -1, 1},  {"neg", f_neg, -1, 1},         {"exp", f_exp, -1, 1},
        {"log", f_log, 0.3f, 2},    {"sqrt", f_sqrt, 0.3f, 2},     {"rsqrt", f_rsqrt, 0.3f, 2},
        {"tanh", f_tanh, -2, 2},    {"sigmoid", f_sigmoid, -3, 3}, {"erf", f_erf, -2, 2},
        {"relu", f_relu, -1, 1},    {"gelu", f_gelu, -3, 3},       {"silu", f_silu, -3, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gc_input a[] = {{.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {3, 5}, .grad = true,
                         .lo = cases[k].lo, .hi = cases[k].hi}};
        check(cases[k].name, cases[k].f, NULL, 1, a, 10 + k);
        a[0].transposed = true; /* strided input */
        a[0].ndim = 3, a[0].shape[0] = 2, a[0].shape[1] = 3, a[0].shape[2] = 2;
        check(cases[k].name, cases[k].f, NULL, 1, a, 30 + k);
    }
    gc_input sw[] = {{.dtype = KG_DTYPE_F32, .ndim = 3, .shape = {2, 3, 5}, .grad = true,
                      .lo = -4, .hi = 4}, F32(3, 2, 3, 5)};
    check("swiglu", f_swiglu, NULL, 2, sw, 28);
    sw[0].transposed = true; /* a strided gate; up a constant (no gradient asked for) */
    sw[1].grad = false;
    check("swiglu strided", f_swiglu, NULL, 2, sw, 29);
}

static void cases_reductions(check_fn check)
{
    for (int axis = -1; axis < 3; axis++) {
        gc_input a[] = {F32(3, 2, 3, 4)};
        check("sum", f_sum, &axis, 1, a, 40);
        check("sum keepdim", f_sum_keep, &axis, 1, a, 41);
        check("mean", f_mean, &axis, 1, a, 42);
        gc_input sp[] = {{.dtype = KG_DTYPE_F32, .ndim = 3, .shape = {2, 3, 4}, .grad = true,
                          .spaced = true}};
        check("max", f_max, &axis, 1, sp, 43);
        gc_input t[] = {F32T(3, 2, 3, 4)};
        check("sum strided", f_sum, &axis, 1, t, 44);
        sp[0].transposed = true;
        check("max strided", f_max, &axis, 1, sp, 45);
    }
}

static void cases_matmul(check_fn check)
{
    gc_input plain[] = {F32(2, 3, 4), F32(2, 4, 5)};
    check("matmul", f_matmul, NULL, 2, plain, 50);
    gc_input batched[] = {F32(3, 2, 3, 4), F32(3, 2, 4, 2)};
    check("matmul batched", f_matmul, NULL, 2, batched, 51);
    gc_input bcast[] = {F32(4, 2, 1, 3, 4), F32(3, 3, 4, 2)};
    check("matmul broadcast", f_matmul, NULL, 2, bcast, 52);
    gc_input weight[] = {F32(3, 2, 3, 4), F32(2, 4, 3)};
    check("matmul rows x weight", f_matmul, NULL, 2, weight, 53);
    gc_input views[] = {F32T(3, 2, 3, 4), F32T(2, 4, 3)};
    check("matmul strided", f_matmul, NULL, 2, views, 54);
    /* Inputs read through their strides (KG_OPF_MATRIX): heads split off by a transpose, and a
     * key head expanded over its query group (batch stride 0), as attention passes them. */
    check("matmul heads", f_matmul_heads, NULL, 2, (gc_input[]){F32(3, 3, 2, 4), F32(3, 2, 4, 5)},
          59);
    check("matmul expanded", f_matmul_expanded, NULL, 2,
          (gc_input[]){F32(4, 2, 3, 3, 4), F32(4, 2, 1, 5, 4)}, 60);
    bool flags[4][2] = {{false, true}, {true, false}, {true, true}, {false, false}};
    for (int k = 0; k < 4; k++) {
        gc_input t[] = {F32(3, 2, flags[k][0] ? 4 : 3, flags[k][0] ? 3 : 4),
                        F32(2, flags[k][1] ? 5 : 4, flags[k][1] ? 4 : 5)};
        check("matmul_t", f_matmul_tt, flags[k], 2, t, 55 + k);
    }
    /* A frozen weight W (5, 64) in every storage dtype: x·Wᵀ, and x·W (the input gradient's
     * orientation); the gradient reaches x only. */
    static const matmul_q_arg q[] = {
        {KG_DTYPE_F16, true}, {KG_DTYPE_BF16, true}, {KG_DTYPE_Q8_0, true}, {KG_DTYPE_Q4_0, true},
        {KG_DTYPE_Q4_1, true}, {KG_DTYPE_NF4, true}, {KG_DTYPE_Q4_1, false}, {KG_DTYPE_NF4, false}};
    for (int k = 0; k < 8; k++) {
        gc_input t[] = {F32(3, 2, 3, q[k].trans ? 64 : 5), CONST(2, 5, 64)};
        check("matmul_q", f_matmul_q, (void *)&q[k], 2, t, 70 + k);
    }
}

static void cases_softmax_family(check_fn check)
{
    gc_input a[] = {F32(3, 2, 3, 5)};
    check("softmax", f_softmax, NULL, 1, a, 60);
    check("log_softmax", f_log_softmax, NULL, 1, a, 61);
    gc_input m[] = {F32(3, 2, 3, 5), CONST(2, 1, 5)};
    check("softmax masked", f_softmax_mask, NULL, 2, m, 62);
    gc_input t[] = {F32T(2, 4, 5)};
    check("softmax strided", f_softmax, NULL, 1, t, 63);
    gc_input c[] = {F32(4, 2, 3, 4, 4)};
    check("softmax scaled causal", f_softmax_causal, NULL, 1, c, 64);
    gc_input pad[] = {F32(4, 2, 2, 3, 5), F32(4, 2, 1, 1, 5)}; /* (B, 1, 1, S), differentiated */
    check("softmax scaled masked", f_softmax_scaled, NULL, 2, pad, 65);
    gc_input pt[] = {F32T(2, 4, 5)};
    check("softmax scaled strided", f_softmax_scaled_plain, NULL, 1, pt, 66);
}

static void cases_norms(check_fn check)
{
    gc_input ln[] = {F32(3, 2, 3, 6), F32(1, 6), F32(1, 6)};
    check("layer_norm", f_layer_norm, NULL, 3, ln, 70);
    gc_input plain[] = {F32T(2, 4, 5)};
    check("layer_norm plain strided", f_layer_norm_plain, NULL, 1, plain, 71);
    gc_input rms[] = {F32(3, 2, 3, 6), F32(1, 6)};
    check("rms_norm", f_rms_norm, NULL, 2, rms, 72);
}

static void cases_rope(check_fn check)
{
    gc_input a[] = {F32(4, 1, 2, 3, 8)};
    check("rope", f_rope, NULL, 1, a, 80);
    gc_input t[] = {F32T(3, 2, 8, 4)}; /* (2, 4, 8) seen through a transpose */
    check("rope strided", f_rope, NULL, 1, t, 81);
}

static void cases_embedding_family(check_fn check)
{
    static const int32_t ids[] = {1, 4, 1, 0, 2, 4};
    gc_input e[] = {F32(2, 5, 3), {.dtype = KG_DTYPE_I32, .ndim = 2, .shape = {2, 3}, .ids = ids}};
    check("embedding", f_embedding, NULL, 2, e, 90);
    gc_input s[] = {F32(3, 2, 3, 4), {.dtype = KG_DTYPE_I32, .ndim = 1, .shape = {6}, .ids = ids}};
    check("scatter_add_rows", f_scatter, NULL, 2, s, 91);
}

static void cases_cross_entropy(check_fn check)
{
    static const int32_t t[] = {2, -100, 0, 4};
    gc_input a[] = {{.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {4, 5}, .grad = true, .lo = -3,
                     .hi = 3},
                    {.dtype = KG_DTYPE_I32, .ndim = 1, .shape = {4}, .ids = t}};
    check("cross_entropy", f_cross_entropy, NULL, 2, a, 100);
    a[0].transposed = true;
    check("cross_entropy strided", f_cross_entropy, NULL, 2, a, 101);
    /* The fused LM head: x (4, 3) and W (6, 3) both differentiated (x's unit gradients formed
     * by the forward, W's by the backward op), one row ignored, one target the last class; then
     * W alone (no unit gradients) through a strided weight. */
    static const int32_t lt[] = {2, -100, 0, 5};
    gc_input l[] = {{.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {4, 3}, .grad = true, .lo = -2,
                     .hi = 2},
                    {.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {6, 3}, .grad = true, .lo = -2,
                     .hi = 2},
                    {.dtype = KG_DTYPE_I32, .ndim = 1, .shape = {4}, .ids = lt}};
    check("linear_log_prob", f_linear_log_prob, NULL, 3, l, 102);
    l[0].grad = false;
    l[1].transposed = true;
    check("linear_log_prob strided", f_linear_log_prob, NULL, 3, l, 103);
}

static void cases_masked_fill_dropout(check_fn check)
{
    gc_input m[] = {F32(3, 2, 3, 4), CONST(2, 1, 4)};
    check("masked_fill", f_masked_fill, NULL, 2, m, 110);
    gc_input d[] = {F32(2, 6, 7)};
    check("dropout", f_dropout, NULL, 1, d, 111);
    gc_input e[] = {F32(2, 300)}; /* rows past the CPU kernel's block of 256 draws */
    check("dropout long rows", f_dropout, NULL, 1, e, 112);
}

static void cases_views_and_concat(check_fn check)
{
    gc_input v[] = {F32(3, 2, 3, 4)};
    check("views", f_views, NULL, 1, v, 120);
    for (int axis = 0; axis < 3; axis++) {
        gc_input c[] = {F32(3, 2, 3, 4), F32(3, 2, 3, 4), F32T(3, 2, 3, 4)};
        c[1].shape[axis] = 1;
        c[2].shape[axis] = 2;
        check("concat", f_concat, &axis, 3, c, 121 + axis);
    }
}

static void cases_structured_ops(check_fn check)
{
    gc_input k[] = {F32(2, 2, 3), F32(2, 3, 2)};
    check("kron", f_kron, NULL, 2, k, 130);
    gc_input lr[] = {F32(3, 2, 3, 6), F32(2, 5, 2), F32(2, 2, 6)};
    check("lowrank_linear", f_lowrank, NULL, 3, lr, 131);
    /* d_in = dA1·dB1 = 2·3, d_out = dA2·dB2 = 3·2, R = 2 */
    gc_input kl[] = {F32(3, 2, 2, 6), F32(2, 3, 2), F32(2, 2, 2), F32(2, 2, 3)};
    check("kron_linear", f_kron_linear, NULL, 4, kl, 132);
    gc_input klt[] = {F32T(2, 3, 6), F32T(2, 3, 2), F32(2, 2, 2), F32T(2, 2, 3)};
    check("kron_linear strided", f_kron_linear, NULL, 4, klt, 133);
}

static kg_tensor *f_step(kg_tensor **x, void *a) { (void)a; return kg_step(x[0]); }
static kg_tensor *f_eq_max(kg_tensor **x, void *a) { (void)a; return kg_eq(x[0], kg_max(x[0], -1, true)); }
static kg_tensor *f_one_hot(kg_tensor **x, void *a) { (void)a; return kg_one_hot(x[0], 5, -100); }
static kg_tensor *f_contig(kg_tensor **x, void *a) { (void)a; return kg_contiguous(x[0]); }
static kg_tensor *f_cast_to(kg_tensor **x, void *a)
{
    kg_dtype d = *(kg_dtype *)a; /* to the dtype and back; i32 after scaling by 10 */
    kg_tensor *v = d == KG_DTYPE_I32 ? kg_scale(x[0], 10.0f) : x[0];
    return kg_cast(kg_cast(v, d), KG_DTYPE_F32);
}
static kg_tensor *f_cast_scaled16(kg_tensor **x, void *a)
{
    /* x·s through f16 and back, then ÷s so that one f16 step shows above the tolerance;
     * multiplication rounds exactly alike on every backend */
    float s = *(float *)a;
    return kg_scale(kg_cast(kg_cast(kg_scale(x[0], s), KG_DTYPE_F16), KG_DTYPE_F32), 1.0f / s);
}
static kg_tensor *f_cast_view(kg_tensor **x, void *a)
{
    (void)a; /* a strided f16 view made contiguous by the 16-bit copy kernel */
    return kg_cast(kg_contiguous(kg_transpose(kg_cast(x[0], KG_DTYPE_F16), 0, 1)), KG_DTYPE_F32);
}

/* An optimizer step on fresh copies of x[0] (param) with x[1] as gradient and x[2] as the state
 * (m; v = m²), returning param, then (appended along a new leading view) the updated state. */
static kg_tensor *f_optim(kg_tensor **x, void *a)
{
    bool adamw = *(const bool *)a;
    kg_tensor *p = kg_scale(x[0], 1.0f), *m = kg_scale(x[2], 0.1f);
    kg_tensor *v = kg_mul(m, m);
    bool ok = adamw ? kg_adamw_update(p, x[1], m, v, &(kg_adamw){.lr = 0.05f, .beta1 = 0.9f,
                                      .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f, .step = 3})
                    : kg_sgd_update(p, x[1], m, &(kg_sgd){.lr = 0.1f, .momentum = 0.9f,
                                    .weight_decay = 0.01f});
    return ok ? kg_concat((kg_tensor *[]){p, m, v}, 3, 0) : NULL;
}

/* Ops without gradients, and copies: forward only. */
static void cases_forward_only(check_fn check)
{
    gc_input x[] = {CONST(3, 2, 3, 4)};
    check("step", f_step, NULL, 1, x, 140);
    gc_input sp[] = {{.dtype = KG_DTYPE_F32, .ndim = 2, .shape = {4, 5}, .spaced = true}};
    check("eq", f_eq_max, NULL, 1, sp, 141);
    static const int32_t ids[] = {1, 4, -100, 0, 2, 4};
    gc_input oh[] = {{.dtype = KG_DTYPE_I32, .ndim = 2, .shape = {2, 3}, .ids = ids}};
    check("one_hot", f_one_hot, NULL, 1, oh, 142);
    gc_input t[] = {F32T(3, 2, 3, 4)};
    check("contiguous", f_contig, NULL, 1, t, 143);
    kg_dtype dts[] = {KG_DTYPE_F16, KG_DTYPE_BF16, KG_DTYPE_I32};
    for (int k = 0; k < 3; k++)
        check("cast", f_cast_to, &dts[k], 1, x, 144 + k);
    gc_input m[] = {CONST(2, 3, 5)};
    check("cast strided f16", f_cast_view, NULL, 1, m, 147);
    /* f16 rounding and overflow past 65504 (x·1e4), and f16 subnormals (x·1e-6 < 6e-5). */
    static float big = 1e4f, tiny = 1e-6f;
    gc_input wide[] = {{.dtype = KG_DTYPE_F32, .ndim = 1, .shape = {64}, .lo = -12, .hi = 12}};
    check("cast f16 overflow", f_cast_scaled16, &big, 1, wide, 148);
    check("cast f16 subnormal", f_cast_scaled16, &tiny, 1, wide, 149);
    static const bool adamw = true, sgd = false;
    gc_input o[] = {CONST(2, 3, 5), CONST(2, 3, 5), CONST(2, 3, 5)};
    check("adamw", f_optim, (void *)&adamw, 3, o, 150);
    check("sgd", f_optim, (void *)&sgd, 3, o, 151);
}

#endif
