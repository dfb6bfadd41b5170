/* elementwise.c — elementwise ops: broadcasting binary arithmetic, unary math and activations,
 * SwiGLU (silu(gate) ⊙ up fused, with a one-pass backward), gelu's one-pass backward, masked
 * fill and dropout. Each op's scalar function, CPU loop and backward rule are here; the
 * CPU loops read strided and broadcast (stride 0) inputs directly, so no copies are made.
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>

/* ---- Strided iteration ---------------------------------------------------------------------- */

/* Output (contiguous) padded to 4 dims, and each input's strides aligned to it (0 where the
 * input is broadcast). Kernels walk rows of the last dim. */
typedef struct ew_iter {
    int64_t dim[4];
    int64_t st[3][4];
    const float *src[3];
    float *dst;
    const kg_opparams *p;
    const kg_opcall *c;
} ew_iter;

static void ew_setup(ew_iter *it, const kg_opcall *c, int n)
{
    int64_t unused[4];
    kg__pad4(c->out, it->dim, unused);
    for (int k = 0; k < n; k++) {
        kg__pad4(c->in[k], unused, it->st[k]);
        it->src[k] = kg_cpu_f32(c->in[k]);
    }
    it->dst = kg_cpu_f32(c->out);
    it->p = &c->p;
    it->c = c;
}

/* The offset of row r in input k. */
static inline int64_t ew_row(const ew_iter *it, int k, int64_t r)
{
    return kg_cpu_row_offset(it->dim, it->st[k], r);
}

static int64_t ew_rows(const ew_iter *it) { return it->dim[0] * it->dim[1] * it->dim[2]; }

/* Rows per parallel chunk: about 16K elements each. */
static int64_t ew_grain(const ew_iter *it) { return 1 + (1 << 14) / (it->dim[3] + 1); }

/* ---- Binary ops ----------------------------------------------------------------------------- */

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT2PI 0.39894228040143268f

/* Ops that call expf or erff go a block of VBLK elements at a time: the call's argument into t
 * (plain arithmetic, which the compiler vectorizes), the call over the block at once
 * (cpu/vec_math.c: 16 lanes where the CPU has them), then the rest of the expression with u, the
 * call's result; `load` (EW_X, EW_XY) puts the element's inputs in scope in both passes. The
 * roundings are those of the one expression per element it replaces. */
enum { VBLK = 256 };

#define EW_CALL(arg, call, expr, load)                                                        \
    for (int64_t j0 = 0; j0 < n; j0 += VBLK) {                                                 \
        int64_t m = n - j0 < VBLK ? n - j0 : VBLK;                                             \
        for (int64_t j = 0; j < m; j++) {                                                      \
            load;                                                                              \
            t[j] = (arg);                                                                      \
        }                                                                                      \
        call(t, m);                                                                            \
        for (int64_t j = 0; j < m; j++) {                                                      \
            load;                                                                              \
            float u = t[j];                                                                    \
            o[j0 + j] = (expr);                                                                \
        }                                                                                      \
    }

/* One loop per op, so the compiler inlines and vectorizes each body (a call through a function
 * pointer per element would stop both). a and b step by sa and sb: 1, or 0 when broadcast. */
#define EW_BINARY(expr)                                                                         \
    for (int64_t j = 0; j < n; j++) {                                                          \
        float x = a[j * sa], y = b[j * sb];                                                    \
        o[j] = (expr);                                                                         \
    }

/* The loads of EW_CALL's passes (a pass may use only some of them). */
#define EW_XY                                                                                  \
    float x = a[(j0 + j) * sa], y = b[(j0 + j) * sb];                                          \
    (void)x, (void)y

/* g·gelu'(x), gelu'(x) = Φ(x) + x·φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = e^(-x²/2)/√(2π), rounded
 * as the unfused rule's ops (scale, erf, add_scalar, scale; mul, scale, exp, scale) rounded it:
 * the two calls' arguments, both calls, then the rest. */
static void gelu_grad_row(const float *a, int64_t sa, const float *b, int64_t sb, float *o,
                          int64_t n)
{
    float cdf[VBLK], pdf[VBLK];
    for (int64_t j0 = 0; j0 < n; j0 += VBLK) {
        int64_t m = n - j0 < VBLK ? n - j0 : VBLK;
        for (int64_t j = 0; j < m; j++) {
            float x = a[(j0 + j) * sa];
            cdf[j] = INV_SQRT2 * x;
            pdf[j] = -0.5f * (x * x);
        }
        kg_cpu_erff_inplace(cdf, m);
        kg_cpu_expf_inplace(pdf, m);
        for (int64_t j = 0; j < m; j++) {
            EW_XY;
            o[j0 + j] = y * (0.5f * (cdf[j] + 1.0f) + x * (INV_SQRT2PI * pdf[j]));
        }
    }
}

static void binary_rows(void *arg, int64_t lo, int64_t hi)
{
    const ew_iter *it = arg;
    int64_t n = it->dim[3], sa = it->st[0][3], sb = it->st[1][3];
    float t[VBLK];
    for (int64_t r = lo; r < hi; r++) {
        const float *a = it->src[0] + ew_row(it, 0, r), *b = it->src[1] + ew_row(it, 1, r);
        float *o = it->dst + r * n;
        switch (it->c->op) {
        case KG_OP_ADD: EW_BINARY(x + y) break;
        case KG_OP_SUB: EW_BINARY(x - y) break;
        case KG_OP_MUL: EW_BINARY(x * y) break;
        case KG_OP_DIV: EW_BINARY(x / y) break;
        case KG_OP_EQ: EW_BINARY(x == y ? 1.0f : 0.0f) break;
        case KG_OP_SWIGLU: /* as kg_silu, then kg_mul */
            EW_CALL(-x, kg_cpu_expf_inplace, x / (1.0f + u) * y, EW_XY) break;
        case KG_OP_GELU_GRAD: gelu_grad_row(a, sa, b, sb, o, n); break;
        default: KG_ASSERT(!"binary_rows: kg__cpu_binary admits only the ops above"); return;
        }
    }
}

/* An op the kernel was not written for is an internal error, never another op's result. */
static bool not_mine(const kg_opcall *c, const char *kernel)
{
    return kg_set_error(c->ctx, KG_ERR_STATE, "kg_%s: internal error: the CPU kernel %s has no "
                        "case for it", kg_op_table[c->op].name, kernel);
}

bool kg__cpu_binary(const kg_opcall *c)
{
    switch (c->op) {
    case KG_OP_ADD: case KG_OP_SUB: case KG_OP_MUL: case KG_OP_DIV: case KG_OP_EQ:
    case KG_OP_SWIGLU: case KG_OP_GELU_GRAD: break;
    default: return not_mine(c, "binary");
    }
    ew_iter it;
    ew_setup(&it, c, 2);
    kg_cpu_parallel_for(ew_rows(&it), ew_grain(&it), binary_rows, &it);
    return true;
}

bool kg__shape_binary(const kg_opcall *c, kg_shape *s)
{
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_F32))
        return false;
    if (!kg__broadcast_shape(c->in[0], c->in[1], s))
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: shapes %s and %s do not broadcast",
                        kg_op_table[c->op].name, KG_DESC(c->in[0]), KG_DESC(c->in[1]));
    return true;
}

#define SUM_TO(g, t) kg__sum_to((g), (t)->ndim, (t)->shape)

void kg__backward_add(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = KG_GRAD(n, 0, SUM_TO(g, n->in[0]));
    gin[1] = KG_GRAD(n, 1, SUM_TO(g, n->in[1]));
}

void kg__backward_sub(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = KG_GRAD(n, 0, SUM_TO(g, n->in[0]));
    gin[1] = KG_GRAD(n, 1, SUM_TO(kg_neg(g), n->in[1]));
}

void kg__backward_mul(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = KG_GRAD(n, 0, SUM_TO(kg_mul(g, n->in[1]), n->in[0]));
    gin[1] = KG_GRAD(n, 1, SUM_TO(kg_mul(g, n->in[0]), n->in[1]));
}

void kg__backward_div(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* y = a / b: dy/da = 1 / b, dy/db = -y / b */
    gin[0] = KG_GRAD(n, 0, SUM_TO(kg_div(g, n->in[1]), n->in[0]));
    gin[1] = KG_GRAD(n, 1, SUM_TO(kg_neg(kg_div(kg_mul(g, n->out), n->in[1])), n->in[1]));
}

kg_tensor *kg_add(kg_tensor *a, kg_tensor *b) { return kg__op(KG_OP_ADD, 2, (kg_tensor *[]){a, b}, NULL); }
kg_tensor *kg_sub(kg_tensor *a, kg_tensor *b) { return kg__op(KG_OP_SUB, 2, (kg_tensor *[]){a, b}, NULL); }
kg_tensor *kg_mul(kg_tensor *a, kg_tensor *b) { return kg__op(KG_OP_MUL, 2, (kg_tensor *[]){a, b}, NULL); }
kg_tensor *kg_div(kg_tensor *a, kg_tensor *b) { return kg__op(KG_OP_DIV, 2, (kg_tensor *[]){a, b}, NULL); }
kg_tensor *kg_eq(kg_tensor *a, kg_tensor *b) { return kg__op(KG_OP_EQ, 2, (kg_tensor *[]){a, b}, NULL); }

/* ---- Unary ops ------------------------------------------------------------------------------ */

#define EW_UNARY(expr)                                                                          \
    for (int64_t j = 0; j < n; j++) {                                                          \
        float x = src[j * sx];                                                                 \
        o[j] = (expr);                                                                         \
    }

#define EW_X                                                                                   \
    float x = src[(j0 + j) * sx];                                                              \
    (void)x

static void unary_rows(void *arg, int64_t lo, int64_t hi)
{
    const ew_iter *it = arg;
    int64_t n = it->dim[3], sx = it->st[0][3];
    float t[VBLK];
    float s = it->p->affine.scale, b = it->p->affine.shift;
    for (int64_t r = lo; r < hi; r++) {
        const float *src = it->src[0] + ew_row(it, 0, r);
        float *o = it->dst + r * n;
        switch (it->c->op) {
        case KG_OP_SCALE: EW_UNARY(s * x + b) break;
        case KG_OP_EXP: EW_CALL(x, kg_cpu_expf_inplace, u, EW_X) break;
        case KG_OP_LOG: EW_UNARY(logf(x)) break;
        case KG_OP_SQRT: EW_UNARY(sqrtf(x)) break;
        case KG_OP_RSQRT: EW_UNARY(1.0f / sqrtf(x)) break;
        case KG_OP_TANH: EW_UNARY(tanhf(x)) break;
        case KG_OP_SIGMOID: EW_CALL(-x, kg_cpu_expf_inplace, 1.0f / (1.0f + u), EW_X) break;
        case KG_OP_ERF: EW_CALL(x, kg_cpu_erff_inplace, u, EW_X) break;
        case KG_OP_RELU: EW_UNARY(x > 0.0f ? x : 0.0f) break;
        case KG_OP_GELU: EW_CALL(x * INV_SQRT2, kg_cpu_erff_inplace, 0.5f * x * (1.0f + u), EW_X) break;
        case KG_OP_SILU: EW_CALL(-x, kg_cpu_expf_inplace, x / (1.0f + u), EW_X) break;
        case KG_OP_STEP: EW_UNARY(x > 0.0f ? 1.0f : 0.0f) break;
        default: KG_ASSERT(!"unary_rows: kg__cpu_unary admits only the ops above"); return;
        }
    }
}

bool kg__cpu_unary(const kg_opcall *c)
{
    switch (c->op) {
    case KG_OP_SCALE: case KG_OP_EXP: case KG_OP_LOG: case KG_OP_SQRT: case KG_OP_RSQRT:
    case KG_OP_TANH: case KG_OP_SIGMOID: case KG_OP_ERF: case KG_OP_RELU: case KG_OP_GELU:
    case KG_OP_SILU: case KG_OP_STEP: break;
    default: return not_mine(c, "unary");
    }
    ew_iter it;
    ew_setup(&it, c, 1);
    kg_cpu_parallel_for(ew_rows(&it), ew_grain(&it), unary_rows, &it);
    return true;
}

bool kg__shape_unary(const kg_opcall *c, kg_shape *s)
{
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    kg__shape_of(c->in[0], s);
    return true;
}

static kg_tensor *unary(kg_op op, kg_tensor *x, float s, float b)
{
    kg_opparams p = {.affine = {.scale = s, .shift = b}};
    return kg__op(op, 1, &x, &p);
}

kg_tensor *kg_scale(kg_tensor *x, float s) { return unary(KG_OP_SCALE, x, s, 0.0f); }
kg_tensor *kg_add_scalar(kg_tensor *x, float c) { return unary(KG_OP_SCALE, x, 1.0f, c); }
kg_tensor *kg_neg(kg_tensor *x) { return unary(KG_OP_SCALE, x, -1.0f, 0.0f); }
kg_tensor *kg_exp(kg_tensor *x) { return unary(KG_OP_EXP, x, 0, 0); }
kg_tensor *kg_log(kg_tensor *x) { return unary(KG_OP_LOG, x, 0, 0); }
kg_tensor *kg_sqrt(kg_tensor *x) { return unary(KG_OP_SQRT, x, 0, 0); }
kg_tensor *kg_rsqrt(kg_tensor *x) { return unary(KG_OP_RSQRT, x, 0, 0); }
kg_tensor *kg_tanh(kg_tensor *x) { return unary(KG_OP_TANH, x, 0, 0); }
kg_tensor *kg_sigmoid(kg_tensor *x) { return unary(KG_OP_SIGMOID, x, 0, 0); }
kg_tensor *kg_erf(kg_tensor *x) { return unary(KG_OP_ERF, x, 0, 0); }
kg_tensor *kg_relu(kg_tensor *x) { return unary(KG_OP_RELU, x, 0, 0); }
kg_tensor *kg_gelu(kg_tensor *x) { return unary(KG_OP_GELU, x, 0, 0); }
kg_tensor *kg_silu(kg_tensor *x) { return unary(KG_OP_SILU, x, 0, 0); }
kg_tensor *kg_step(kg_tensor *x) { return unary(KG_OP_STEP, x, 0, 0); }

void kg__backward_scale(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_scale(g, n->p.affine.scale);
}

void kg__backward_exp(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_mul(g, n->out);
}

void kg__backward_log(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_div(g, n->in[0]);
}

void kg__backward_sqrt(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_div(kg_scale(g, 0.5f), n->out); /* d√x = 1 / (2√x) */
}

void kg__backward_rsqrt(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *y = n->out; /* d x^-1/2 = -x^-3/2 / 2 = -y³ / 2 */
    gin[0] = kg_mul(kg_scale(g, -0.5f), kg_mul(y, kg_mul(y, y)));
}

void kg__backward_tanh(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *y = n->out; /* 1 - y² */
    gin[0] = kg_sub(g, kg_mul(g, kg_mul(y, y)));
}

void kg__backward_sigmoid(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *y = n->out; /* y (1 - y) */
    gin[0] = kg_mul(kg_mul(g, y), kg_add_scalar(kg_neg(y), 1.0f));
}

void kg__backward_erf(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *x = n->in[0]; /* 2/√π · exp(-x²) */
    gin[0] = kg_mul(kg_scale(g, 1.12837916709551257f), kg_exp(kg_neg(kg_mul(x, x))));
}

void kg__backward_relu(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_mul(g, kg_step(n->in[0]));
}

void kg__backward_gelu(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* g·gelu'(x) in one pass (gelu_slope): unfused, nine ops over the (B, T, 4C) activations */
    gin[0] = kg__op(KG_OP_GELU_GRAD, 2, (kg_tensor *[]){n->in[0], g}, NULL);
}

void kg__backward_silu(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *x = n->in[0], *s = kg_sigmoid(x); /* s · (1 + x (1 - s)) */
    gin[0] = kg_mul(g, kg_mul(s, kg_add_scalar(kg_mul(x, kg_add_scalar(kg_neg(s), 1.0f)), 1.0f)));
}

/* ---- SwiGLU: y = silu(gate) ⊙ up, gate and up of one shape ---------------------------------- */

/* The MLP of the Mistral family: unfused it is three passes forward (silu, mul) and six ops in
 * the backward, each a pass over (B, T, F); fused, one pass each way, and the tape keeps only
 * gate and up. */
bool kg__shape_same_pair(const kg_opcall *c, kg_shape *s)
{
    bool swiglu = c->op != KG_OP_GELU_GRAD;
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_F32))
        return false;
    if (!kg__same_shape(c->in[0], c->in[1]) || c->in[0]->ndim < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: %s %s and %s %s; expected one shape of "
                            "at least one dimension", swiglu ? "swiglu" : "gelu (backward)",
                            swiglu ? "gate" : "x", KG_DESC(c->in[0]), swiglu ? "up" : "gradient",
                            KG_DESC(c->in[1]));
    kg__shape_of(c->in[0], s);
    return true;
}

kg_tensor *kg_swiglu(kg_tensor *gate, kg_tensor *up)
{
    return kg__op(KG_OP_SWIGLU, 2, (kg_tensor *[]){gate, up}, NULL);
}

/* gate, up, the output's gradient g (one shape, (d0, ...)) → (2·d0, ...): d_gate then d_up,
 * each a contiguous half, so the backward's two results are slices of one pass's output. */
bool kg__shape_swiglu_grad(const kg_opcall *c, kg_shape *s)
{
    if (!kg__shape_same_pair(c, s) || !kg__want_dtype(c, 2, KG_DTYPE_F32))
        return false;
    if (!kg__same_shape(c->in[0], c->in[2]))
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_swiglu (backward): the gradient is %s; "
                            "expected %s", KG_DESC(c->in[2]), KG_DESC(c->in[0]));
    s->dim[0] *= 2;
    return true;
}

static void swiglu_grad_range(void *arg, int64_t lo, int64_t hi)
{
    const kg_opcall *c = arg;
    const float *x = kg_cpu_f32(c->in[0]), *u = kg_cpu_f32(c->in[1]), *g = kg_cpu_f32(c->in[2]);
    int64_t n = kg_tensor_numel(c->in[0]);
    float *dgate = kg_cpu_f32(c->out), *dup = dgate + n, t[VBLK];
    for (int64_t i0 = lo; i0 < hi; i0 += VBLK) { /* silu' = s·(1 + x·(1 - s)), s = sigmoid(x) */
        int64_t m = hi - i0 < VBLK ? hi - i0 : VBLK;
        for (int64_t j = 0; j < m; j++)
            t[j] = -x[i0 + j];
        kg_cpu_expf_inplace(t, m);
        for (int64_t j = 0, i = i0; j < m; j++, i++) {
            float e = 1.0f + t[j], s = 1.0f / e; /* rounded as kg_sigmoid and kg_silu */
            dgate[i] = g[i] * u[i] * (s * (1.0f + x[i] * (1.0f - s)));
            dup[i] = g[i] * (x[i] / e);
        }
    }
}

bool kg__cpu_swiglu_grad(const kg_opcall *c)
{
    kg_cpu_parallel_for(kg_tensor_numel(c->in[0]), 1 << 14, swiglu_grad_range, (void *)c);
    return true;
}

void kg__backward_swiglu(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *d = kg__op(KG_OP_SWIGLU_GRAD, 3, (kg_tensor *[]){n->in[0], n->in[1], g}, NULL);
    int64_t d0 = n->in[0]->shape[0];
    gin[0] = KG_GRAD(n, 0, kg_slice(d, 0, 0, d0));
    gin[1] = KG_GRAD(n, 1, kg_slice(d, 0, d0, d0));
}

/* ---- Masked fill ---------------------------------------------------------------------------- */

static void masked_fill_rows(void *arg, int64_t lo, int64_t hi)
{
    const ew_iter *it = arg;
    bool int_mask = it->c->in[1]->dtype == KG_DTYPE_I32;
    int64_t n = it->dim[3], sx = it->st[0][3], sm = it->st[1][3];
    for (int64_t r = lo; r < hi; r++) {
        const float *x = it->src[0] + ew_row(it, 0, r);
        const void *m = (const char *)it->src[1] + 4 * ew_row(it, 1, r);
        float *o = it->dst + r * n;
        for (int64_t j = 0; j < n; j++) {
            bool hit = int_mask ? ((const int32_t *)m)[j * sm] != 0
                                : ((const float *)m)[j * sm] != 0.0f;
            o[j] = hit ? it->p->fill.value : x[j * sx];
        }
    }
}

bool kg__cpu_masked_fill(const kg_opcall *c)
{
    ew_iter it;
    ew_setup(&it, c, 2); /* the mask pointer is read as raw 4-byte elements */
    it.src[1] = (const float *)kg_cpu_raw(c->in[1]);
    kg_cpu_parallel_for(ew_rows(&it), ew_grain(&it), masked_fill_rows, &it);
    return true;
}

bool kg__shape_masked_fill(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *m = c->in[1];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    if (m->dtype != KG_DTYPE_F32 && m->dtype != KG_DTYPE_I32)
        return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_masked_fill: mask is %s; expected f32 or i32",
                        KG_DESC(m));
    bool fits = kg__broadcast_shape(x, m, s) && s->ndim == x->ndim;
    for (int i = 0; fits && i < x->ndim; i++)
        fits = s->dim[i] == x->shape[i];
    if (!fits)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_masked_fill: mask %s does not broadcast to "
                        "x %s", KG_DESC(m), KG_DESC(x));
    s->dtype = KG_DTYPE_F32;
    return true;
}

void kg__backward_masked_fill(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_masked_fill(g, n->in[1], 0.0f);
}

kg_tensor *kg_masked_fill(kg_tensor *x, kg_tensor *mask, float value)
{
    kg_opparams p = {.fill.value = value};
    return kg__op(KG_OP_MASKED_FILL, 2, (kg_tensor *[]){x, mask}, &p);
}

/* ---- Dropout -------------------------------------------------------------------------------- */

/* The keep factors a block at a time (cpu/dropout_mask.c draws them, vectorized), then
 * o = x·f where kept and 0 where dropped (0, not x·0: a dropped inf or NaN gives 0). */
static void dropout_rows(void *arg, int64_t lo, int64_t hi)
{
    const ew_iter *it = arg;
    float p = it->p->dropout.p, keep_scale = 1.0f / (1.0f - p), f[VBLK];
    int64_t n = it->dim[3], sx = it->st[0][3];
    for (int64_t r = lo; r < hi; r++) {
        const float *x = it->src[0] + ew_row(it, 0, r);
        float *o = it->dst + r * n;
        for (int64_t j0 = 0; j0 < n; j0 += VBLK) {
            int64_t m = n - j0 < VBLK ? n - j0 : VBLK;
            kg_cpu_dropout_mask(f, m, it->p->dropout.seed, (uint64_t)(r * n + j0), p, keep_scale);
            for (int64_t j = 0; j < m; j++)
                o[j0 + j] = f[j] != 0.0f ? x[(j0 + j) * sx] * f[j] : 0.0f;
        }
    }
}

bool kg__cpu_dropout(const kg_opcall *c)
{
    ew_iter it;
    ew_setup(&it, c, 1);
    kg_cpu_parallel_for(ew_rows(&it), ew_grain(&it), dropout_rows, &it);
    return true;
}

bool kg__shape_dropout(const kg_opcall *c, kg_shape *s)
{
    if (!(c->p.dropout.p >= 0.0f && c->p.dropout.p < 1.0f))
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_dropout: p = %g; expected 0 <= p < 1",
                            (double)c->p.dropout.p);
    return kg__shape_unary(c, s);
}

void kg__backward_dropout(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_dropout(g, n->p.dropout.p, n->p.dropout.seed); /* the same mask, by the same seed */
}

kg_tensor *kg_dropout(kg_tensor *x, float p, uint64_t seed)
{
    kg_opparams pp = {.dropout = {.p = p, .seed = seed}};
    return kg__op(KG_OP_DROPOUT, 1, &x, &pp);
}
