/* ops.c — each op's Vulkan kernel: which shader runs it, what its push constants hold (one
 * struct per shader in shaders/push.h) and how many workgroups cover it. Inputs are contiguous
 * unless the op's table entry says strided. A kernel given an op it has no case for is an
 * internal error, never another op's result.
 */
#include "vk.h"

#include <math.h>
#include <stdlib.h>

#define GROUPS(n, size) (((uint64_t)(n) + (size) - 1) / (size))

static uint32_t u32(int64_t v) { return (uint32_t)v; }

/* The `default:` of every switch on the op below. */
static bool no_case(const kg_opcall *c)
{
    return kg_set_error(c->ctx, KG_ERR_STATE, "internal: op %s has no Vulkan case",
                        kg_op_table[c->op].name);
}

/* kg__pad4's sizes of t, as push-constant words. */
static void pad4_dims(const kg_tensor *t, uint32_t dim[4])
{
    int64_t d[4], s[4];
    kg__pad4(t, d, s);
    for (int i = 0; i < 4; i++)
        dim[i] = u32(d[i]);
}

/* kg__pad4's strides of t (0 where broadcast), as push-constant words. */
static void pad4_strides(const kg_tensor *t, int32_t stride[4])
{
    int64_t d[4], s[4];
    kg__pad4(t, d, s);
    for (int i = 0; i < 4; i++)
        stride[i] = (int32_t)s[i];
}

/* A contiguous header of another shape over t's storage, on the stack: nothing to free. */
static kg_tensor reshaped(const kg_tensor *t, int ndim, const int64_t *shape)
{
    kg_tensor v = *t;
    v.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v.shape[i] = shape[i];
    kg__contiguous_strides(ndim, v.shape, v.stride);
    return v;
}

/* ---- copies -------------------------------------------------------------------------------- */

static bool copy_into(const kg_opcall *c, const kg_tensor *dst, kg_tensor *src)
{
    copy_push p = {.dst = kg_vk_addr(dst), .src = kg_vk_addr(src),
                   .n = u32(kg_tensor_numel(dst))};
    pad4_dims(dst, p.dim);
    pad4_strides(dst, p.dst_stride);
    pad4_strides(src, p.src_stride);
    kg_vk_shader sh;
    switch (kg_dtype_size(dst->dtype)) {
    case 4: sh = KG_VK_COPY32; break;
    case 2: sh = KG_VK_COPY16; break;
    default: return no_case(c);
    }
    return kg_vk_dispatch_1d(c, sh, &p, sizeof p, GROUPS(p.n, 256), &src, 1, dst);
}

bool kg__vk_copy(const kg_opcall *c) { return copy_into(c, c->out, c->in[0]); }

bool kg__vk_concat(const kg_opcall *c)
{
    int ax = c->p.concat.axis;
    int64_t start = 0;
    for (int k = 0; k < c->n_in; k++) {
        kg_tensor part = *c->out; /* a view header on the stack: nothing to allocate or free */
        part.shape[ax] = c->in[k]->shape[ax];
        part.offset += start * c->out->stride[ax];
        start += part.shape[ax];
        if (!copy_into(c, &part, c->in[k]))
            return false;
    }
    return true;
}

/* The shaders' DT_* codes are kg_dtype's values (checked in vk.h). */
bool kg__vk_cast(const kg_opcall *c)
{
    kg_tensor *x = c->in[0];
    if (kg__dtype_is_block(x->dtype)) { /* dequantization (the shape rule wants f32 out) */
        dequant_push d = {.dst = kg_vk_addr(c->out), .src = kg_vk_addr(x),
                          .status = kg_vk_status_addr(c->ctx), .dtype = x->dtype,
                          .n = u32(x->shape[0]), .k = u32(x->shape[1]), .op = c->op};
        return kg_vk_dispatch_1d(c, KG_VK_DEQUANT, &d, sizeof d,
                                 GROUPS(kg_tensor_numel(x), 256), &x, 1, c->out);
    }
    cast_push p = {.dst = kg_vk_addr(c->out), .src = kg_vk_addr(x),
                   .status = kg_vk_status_addr(c->ctx), .from = x->dtype, .to = c->out->dtype,
                   .n = u32(kg_tensor_numel(x)), .op = c->op};
    return kg_vk_dispatch_1d(c, KG_VK_CAST, &p, sizeof p, GROUPS(p.n, 256), &x, 1, c->out);
}

/* ---- elementwise ---------------------------------------------------------------------------- */

/* The op's mode in elementwise.comp; 0 when it has none. */
static uint32_t ew_mode(kg_op op)
{
    switch (op) {
    case KG_OP_ADD: return EW_ADD;
    case KG_OP_SUB: return EW_SUB;
    case KG_OP_MUL: return EW_MUL;
    case KG_OP_DIV: return EW_DIV;
    case KG_OP_EQ: return EW_EQ;
    case KG_OP_MASKED_FILL: return EW_MASKED_FILL;
    case KG_OP_SCALE: return EW_SCALE;
    case KG_OP_EXP: return EW_EXP;
    case KG_OP_LOG: return EW_LOG;
    case KG_OP_SQRT: return EW_SQRT;
    case KG_OP_RSQRT: return EW_RSQRT;
    case KG_OP_TANH: return EW_TANH;
    case KG_OP_SIGMOID: return EW_SIGMOID;
    case KG_OP_ERF: return EW_ERF;
    case KG_OP_RELU: return EW_RELU;
    case KG_OP_GELU: return EW_GELU;
    case KG_OP_SILU: return EW_SILU;
    case KG_OP_STEP: return EW_STEP;
    case KG_OP_DROPOUT: return EW_DROPOUT;
    case KG_OP_SWIGLU: return EW_SWIGLU;
    case KG_OP_GELU_GRAD: return EW_GELU_GRAD;
    case KG_OP_SWIGLU_GRAD: return EW_SWIGLU_GRAD;
    default: return 0;
    }
}

bool kg__vk_elementwise(const kg_opcall *c)
{
    kg_tensor *a = c->in[0], *b = c->n_in > 1 ? c->in[1] : c->in[0];
    ew_push p = {.dst = kg_vk_addr(c->out), .a = kg_vk_addr(a), .b = kg_vk_addr(b),
                 .status = kg_vk_status_addr(c->ctx), .mode = ew_mode(c->op),
                 .n = u32(kg_tensor_numel(c->out)), .mask_i32 = b->dtype == KG_DTYPE_I32,
                 .op = c->op};
    if (!p.mode)
        return no_case(c);
    if (c->op == KG_OP_SWIGLU_GRAD) { /* one invocation per input element, two outputs each */
        p.c = kg_vk_addr(c->in[2]);
        p.n = u32(kg_tensor_numel(a));
    }
    pad4_dims(c->op == KG_OP_SWIGLU_GRAD ? a : c->out, p.dim); /* swiglu_grad: a half's */
    pad4_strides(a, p.a_stride);
    pad4_strides(b, p.b_stride);
    switch (c->op) { /* the op's scalars */
    case KG_OP_SCALE:
        p.scale = c->p.affine.scale;
        p.shift = c->p.affine.shift;
        break;
    case KG_OP_MASKED_FILL:
        p.fill = c->p.fill.value;
        break;
    case KG_OP_DROPOUT:
        p.p = c->p.dropout.p;
        p.seed = c->p.dropout.seed;
        break;
    default: /* the rest have none */
        break;
    }
    return kg_vk_dispatch_1d(c, KG_VK_ELEMENTWISE, &p, sizeof p, GROUPS(p.n, 256), c->in,
                             c->n_in, c->out);
}

/* ---- reductions --------------------------------------------------------------------------- */

bool kg__vk_reduce(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int a = c->p.reduce.axis;
    reduce_push p = {.dst = kg_vk_addr(c->out), .x = kg_vk_addr(x),
                     .status = kg_vk_status_addr(c->ctx), .outer = 1, .n = u32(x->shape[a]),
                     .inner = 1, .op = c->op};
    switch (c->op) {
    case KG_OP_SUM: p.mode = RED_SUM; break;
    case KG_OP_MAX: p.mode = RED_MAX; break;
    default: return no_case(c);
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++)
        outer *= x->shape[i];
    for (int i = a + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    p.outer = u32(outer);
    p.inner = u32(inner);
    p.chunk = p.n ? p.n : 1;
    if (p.n <= KG_LOOP_CHUNK)
        return kg_vk_dispatch_1d(c, KG_VK_REDUCE, &p, sizeof p, GROUPS(outer * inner, 256),
                                 c->in, 1, c->out);
    /* A long axis (past KG_LOOP_CHUNK, lavapipe's loop limit) is reduced in chunks into partial
     * results (outer, parts, inner), which a second pass reduces (parts ≤ KG_LOOP_CHUNK as
     * n < 2^31): the sum of partial sums, the max of partial maxima. */
    int64_t parts = (p.n + KG_LOOP_CHUNK - 1) / KG_LOOP_CHUNK;
    kg_tensor *part = kg__tensor_alloc(c->ctx, kg_op_table[c->op].name, KG_DTYPE_F32, 1,
                                       (int64_t[]){outer * parts * inner}, false);
    if (!part)
        return false;
    p.chunk = KG_LOOP_CHUNK;
    p.dst = kg_vk_addr(part);
    reduce_push second = p;
    second.x = p.dst;
    second.dst = kg_vk_addr(c->out);
    second.n = second.chunk = u32(parts);
    bool ok = kg_vk_dispatch_1d(c, KG_VK_REDUCE, &p, sizeof p, GROUPS(outer * parts * inner, 256),
                                c->in, 1, part) &&
              kg_vk_dispatch_1d(c, KG_VK_REDUCE, &second, sizeof second,
                                GROUPS(outer * inner, 256), &part, 1, c->out);
    kg_tensor_free(part); /* released once the queued work is done */
    return ok;
}

/* ---- matmul and the structured ops -------------------------------------------------------- */

/* t's batch strides, through its strides (0 where it broadcasts or is expanded). */
static void batch_strides(const kg_tensor *t, const kg_tensor *out, uint32_t dst[2])
{
    int tb = t->ndim - 2, ob = out->ndim - 2;
    int64_t s1 = tb >= 1 && t->shape[tb - 1] != 1 ? t->stride[tb - 1] : 0;
    int64_t s0 = tb >= 2 && t->shape[tb - 2] != 1 ? t->stride[tb - 2] : 0;
    /* out has ob batch dims (0 to 2); dst[0] pairs with the outer one, dst[1] the inner one. */
    dst[0] = ob == 2 ? u32(tb == 2 ? s0 : 0) : 0;
    dst[1] = ob >= 1 ? u32(s1) : 0;
}

/* o = op(a)·op(b), for the op c (which names errors and timings). a and b are stacks of
 * matrices read through their strides (kg__matrix_view: the matmul op's KG_OPF_MATRIX); a
 * matrix stored transposed flips its flag. */
static bool matmul_into(const kg_opcall *c, const kg_tensor *o, kg_tensor *a, kg_tensor *b,
                        bool ta, bool tb)
{
    int64_t m = o->shape[o->ndim - 2], n = o->shape[o->ndim - 1];
    int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t batch = m * n != 0 ? kg_tensor_numel(o) / (m * n) : 0, lda, ldb;
    bool fa, fb;
    kg__matrix_view(a, &fa, &lda);
    kg__matrix_view(b, &fb, &ldb);
    matmul_push p = {.c = kg_vk_addr(o), .a = kg_vk_addr(a), .b = kg_vk_addr(b),
                     .lda = u32(lda), .ldb = u32(ldb), .trans_a = ta != fa, .trans_b = tb != fb,
                     .batch_outer = 1, .batch_inner = 1};
    if (b->ndim == 2 && !ta && kg_tensor_is_contiguous(a) && kg_tensor_numel(a) == batch * m * k) {
        m *= batch; /* a stack of rows times one matrix: one GEMM */
        batch = 1;
    }
    p.M = u32(m);
    p.N = u32(n);
    p.K = u32(k);
    if (batch > 1) {
        p.batch_outer = o->ndim == 4 ? u32(o->shape[0]) : 1;
        p.batch_inner = o->ndim >= 3 ? u32(o->shape[o->ndim - 3]) : 1;
        batch_strides(a, o, p.a_batch_stride);
        batch_strides(b, o, p.b_batch_stride);
    }
    uint32_t bm, bn;
    kg_vk_matmul_tile(c->ctx, &bm, &bn);
    /* Batches go on the grid's z axis, in chunks of what the device allows there. */
    uint32_t maxz = kg_vk_max_groups(c->ctx, 2);
    kg_tensor *reads[2] = {a, b};
    for (int64_t b0 = 0; b0 < batch; b0 += maxz) {
        int64_t nb = batch - b0 < maxz ? batch - b0 : maxz;
        p.batch0 = u32(b0);
        if (!kg_vk_dispatch(c, KG_VK_MATMUL, &p, sizeof p, (uint32_t)GROUPS(n, bn),
                            (uint32_t)GROUPS(m, bm), u32(nb), reads, 2, o))
            return false;
    }
    return true;
}

bool kg__vk_matmul(const kg_opcall *c)
{
    return matmul_into(c, c->out, c->in[0], c->in[1], c->p.matmul.trans_a, c->p.matmul.trans_b);
}

/* y = x · op(W) with W decoded as its tiles load (matmul_q.comp), for the op c; rows of x in
 * chunks the grid's y dimension allows. */
static bool matmul_q_into(const kg_opcall *c, const kg_tensor *y, kg_tensor *x, kg_tensor *w,
                          bool trans)
{
    int64_t in = trans ? w->shape[1] : w->shape[0], out = trans ? w->shape[0] : w->shape[1];
    int64_t m = kg_tensor_numel(x) / in, chunk = (int64_t)kg_vk_max_groups(c->ctx, 1) * 32;
    kg_tensor *reads[2] = {x, w};
    for (int64_t r0 = 0; r0 < m; r0 += chunk) {
        int64_t rows = m - r0 < chunk ? m - r0 : chunk;
        matmul_q_push p = {.y = kg_vk_addr(y), .x = kg_vk_addr(x), .w = kg_vk_addr(w),
                           .status = kg_vk_status_addr(c->ctx), .M = u32(m),
                           .n = u32(w->shape[0]), .k = u32(w->shape[1]), .trans = trans,
                           .dtype = w->dtype, .row0 = u32(r0), .op = c->op};
        if (!kg_vk_dispatch(c, KG_VK_MATMUL_Q, &p, sizeof p, u32(GROUPS(out, 32)),
                            u32(GROUPS(rows, 32)), 1, reads, 2, y))
            return false;
    }
    return true;
}

bool kg__vk_matmul_q(const kg_opcall *c)
{
    return matmul_q_into(c, c->out, c->in[0], c->in[1], c->p.matmul.trans_b);
}

bool kg__vk_kron(const kg_opcall *c)
{
    const kg_tensor *a = c->in[0], *b = c->in[1];
    kron_push p = {.dst = kg_vk_addr(c->out), .a = kg_vk_addr(a), .b = kg_vk_addr(b),
                   .m = u32(a->shape[0]), .n = u32(a->shape[1]), .p = u32(b->shape[0]),
                   .q = u32(b->shape[1])};
    return kg_vk_dispatch_1d(c, KG_VK_KRON, &p, sizeof p, GROUPS(kg_tensor_numel(c->out), 256),
                             c->in, 2, c->out);
}

/* The unfused path, for shapes whose T1 and T2 do not fit the fused kernel's shared memory: the
 * three steps of the CPU kernel (kg__cpu_kron_linear) with the matmul kernel, through scratch
 * T1 (N·dA1, R) and T2 (N·dA2, R). Neither is ΔW: both grow with R, not with d_in·d_out. */
static bool structured_unfused(const kg_opcall *c, const kron_linear_push *k, kg_tensor *x,
                               kg_tensor *a, kg_tensor *b1, kg_tensor *b2)
{
    int64_t N = k->N, dA1 = k->dA1, dA2 = k->dA2, dB1 = k->dB1, dB2 = k->dB2, R = k->R;
    const char *fn = c->op == KG_OP_KRON_LINEAR ? "kg_kron_linear" : "kg_lowrank_linear";
    int64_t most;
    if (!kg__mul(N, dA1 > dA2 ? dA1 : dA2, &most) || !kg__mul(most, R, &most) ||
        most >= INT32_MAX) /* as vk_run's limit on every tensor */
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "%s: its intermediate N·dA·R = %lld·%lld·%lld "
                            "has 2^31 elements or more, which the Vulkan kernels cannot index",
                            fn, (long long)N, (long long)(dA1 > dA2 ? dA1 : dA2), (long long)R);
    kg_tensor *t1 = kg__tensor_alloc(c->ctx, fn, KG_DTYPE_F32, 2, (int64_t[]){N * dA1, R}, false);
    kg_tensor *t2 = a ? kg__tensor_alloc(c->ctx, fn, KG_DTYPE_F32, 2, (int64_t[]){N * dA2, R},
                                         false) : t1; /* lowrank: A = [1], T2 = T1 */
    kg_tensor xs = reshaped(x, 2, (int64_t[]){N * dA1, dB1});
    kg_tensor ys = reshaped(c->out, 2, (int64_t[]){N * dA2, dB2});
    bool ok = t1 && t2 && matmul_into(c, t1, &xs, b2, false, true); /* T1 = X·B2ᵀ */
    if (ok && a) {                                                   /* T2[n] = A·T1[n] */
        kg_tensor t1s = reshaped(t1, 3, (int64_t[]){N, dA1, R});
        kg_tensor t2s = reshaped(t2, 3, (int64_t[]){N, dA2, R});
        ok = matmul_into(c, &t2s, a, &t1s, false, false);
    }
    ok = ok && matmul_into(c, &ys, t2, b1, false, true);             /* Y = T2·B1ᵀ */
    if (t2 != t1)
        kg_tensor_free(t2); /* released once the queued work is done */
    kg_tensor_free(t1);
    return ok;
}

/* lowrank_linear (x, B1, B2) is kron_linear with A = [1]: one fused kernel for both. */
bool kg__vk_structured_linear(const kg_opcall *c)
{
    kg_tensor *x = c->in[0], *a, *b1, *b2;
    switch (c->op) {
    case KG_OP_KRON_LINEAR: a = c->in[1], b1 = c->in[2], b2 = c->in[3]; break;
    case KG_OP_LOWRANK_LINEAR: a = NULL, b1 = c->in[1], b2 = c->in[2]; break;
    default: return no_case(c);
    }
    int64_t N = 1; /* tokens: x's leading dims (x may be empty when d_in is 0; y is zeros) */
    for (int i = 0; i < x->ndim - 1; i++)
        N *= x->shape[i];
    kron_linear_push p = {.y = kg_vk_addr(c->out), .x = kg_vk_addr(x), .a = a ? kg_vk_addr(a) : 0,
                          .b1 = kg_vk_addr(b1), .b2 = kg_vk_addr(b2), .N = u32(N),
                          .dA1 = a ? u32(a->shape[1]) : 1, .dA2 = a ? u32(a->shape[0]) : 1,
                          .dB1 = u32(b2->shape[1]), .dB2 = u32(b1->shape[0]),
                          .R = u32(b1->shape[1])};
    if (((int64_t)p.dA1 + p.dA2) * p.R > KL_SHARED_FLOATS)
        return structured_unfused(c, &p, x, a, b1, b2);
    return kg_vk_dispatch_1d(c, KG_VK_KRON_LINEAR, &p, sizeof p, p.N, c->in, c->n_in, c->out);
}

/* ---- row-wise ops --------------------------------------------------------------------------- */

/* Cross entropy: per-row losses and valid flags into scratch (rows losses, rows flags), then
 * their mean over the valid rows. */
static bool cross_entropy(const kg_opcall *c, rows_push *p)
{
    kg_tensor *part = kg__tensor_alloc(c->ctx, "kg_cross_entropy", KG_DTYPE_F32, 1,
                                       (int64_t[]){2 * (int64_t)p->rows + 1}, false);
    if (!part)
        return false;
    p->mode = ROW_CROSS_ENTROPY;
    p->dst = kg_vk_addr(part);
    p->targets = kg_vk_addr(c->in[1]);
    p->ignore_index = c->p.classes.ignore_index;
    rows_push mean = {.dst = kg_vk_addr(c->out), .x = kg_vk_addr(part),
                      .status = p->status, .mode = ROW_CE_MEAN, .rows = p->rows, .op = c->op};
    bool ok = kg_vk_dispatch_1d(c, KG_VK_ROWS, p, sizeof *p, p->rows, c->in, 2, part) &&
              kg_vk_dispatch(c, KG_VK_ROWS, &mean, sizeof mean, 1, 1, 1, &part, 1, c->out);
    kg_tensor_free(part); /* released once the queued work is done */
    return ok;
}

bool kg__vk_rows(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int64_t C = x->shape[x->ndim - 1];
    rows_push p = {.dst = kg_vk_addr(c->out), .x = kg_vk_addr(x),
                   .status = kg_vk_status_addr(c->ctx), .rows = u32(C ? kg_tensor_numel(x) / C : 0),
                   .C = u32(C), .op = c->op};
    switch (c->op) {
    case KG_OP_SOFTMAX: { /* scale·x + mask, the mask read through its strides */
        int64_t dim[4], st[4], unused[4];
        p.mode = ROW_SOFTMAX;
        p.scale = c->p.softmax.scale;
        kg__pad4(x, dim, unused);
        p.dim1 = u32(dim[1]);
        p.dim2 = u32(dim[2]);
        if (c->n_in > 1) {
            p.mask = kg_vk_addr(c->in[1]);
            kg__pad4(c->in[1], unused, st);
            for (int i = 0; i < 4; i++)
                p.mask_stride[i] = (int32_t)st[i];
        }
        break;
    }
    case KG_OP_SOFTMAX_GRAD: /* y, g */
        p.mode = ROW_SOFTMAX_GRAD;
        p.scale = c->p.softmax.scale;
        p.weight = kg_vk_addr(c->in[1]);
        break;
    case KG_OP_LOG_SOFTMAX: p.mode = ROW_LOG_SOFTMAX; break;
    case KG_OP_LAYER_NORM:
    case KG_OP_RMS_NORM:
        p.mode = ROW_NORM;
        p.rms = c->op == KG_OP_RMS_NORM;
        p.eps = c->p.norm.eps;
        if (c->p.norm.has_weight)
            p.weight = kg_vk_addr(c->in[1]);
        if (c->p.norm.has_bias)
            p.bias = kg_vk_addr(c->in[1 + c->p.norm.has_weight]);
        break;
    case KG_OP_NORM_STATS:
        p.mode = ROW_NORM_STATS;
        p.rms = c->p.norm.rms;
        p.eps = c->p.norm.eps;
        break;
    case KG_OP_CROSS_ENTROPY:
        return cross_entropy(c, &p);
    default:
        return no_case(c);
    }
    return kg_vk_dispatch_1d(c, KG_VK_ROWS, &p, sizeof p, p.rows, c->in, c->n_in, c->out);
}

/* linear_log_prob: the logits Z = X·Wᵀ into scratch (the whole vocabulary at once here: device
 * memory holds N × V floats for the op's duration; a frozen W stored packed multiplies as
 * matmul_q's), the log-probabilities by a rows pass, and
 * where asked the unit gradients U = (onehot - softmax(Z))·W after them in the output. Its
 * backward for W: dZ = g·(onehot - softmax(Z)), dW = dZᵀ·X. */
bool kg__vk_linear_log_prob(const kg_opcall *c)
{
    kg_tensor *x = c->in[0], *w = c->in[1];
    int64_t N = x->shape[0], C = x->shape[1], V = w->shape[0];
    bool grad_w = c->op == KG_OP_LINEAR_LOG_PROB_GRAD;
    bool unit = !grad_w && c->p.classes.weight;
    kg_tensor *z = kg__tensor_alloc(c->ctx, "kg_linear_log_prob", KG_DTYPE_F32, 2,
                                    (int64_t[]){N, V}, false);
    kg_tensor *dz = grad_w || unit ? kg__tensor_alloc(c->ctx, "kg_linear_log_prob", KG_DTYPE_F32,
                                                      2, (int64_t[]){N, V}, false)
                                   : NULL;
    bool packed = w->dtype != KG_DTYPE_F32; /* a frozen head in bf16, f16 or blocks */
    bool ok = z && (dz || !(grad_w || unit)) &&
              (packed ? matmul_q_into(c, z, x, w, true) : matmul_into(c, z, x, w, false, true));
    rows_push p = {.x = ok ? kg_vk_addr(z) : 0, .status = kg_vk_status_addr(c->ctx),
                   .rows = u32(N), .C = u32(V), .targets = kg_vk_addr(c->in[2]),
                   .ignore_index = c->p.classes.ignore_index, .op = c->op};
    kg_tensor *reads[3] = {z, c->in[2], grad_w ? c->in[3] : NULL};
    if (ok && !grad_w) {
        p.mode = ROW_LOG_PROB;
        p.dst = kg_vk_addr(c->out);
        ok = kg_vk_dispatch_1d(c, KG_VK_ROWS, &p, sizeof p, (uint64_t)N, reads, 2, c->out);
    }
    if (ok && dz) {
        p.mode = ROW_LOG_PROB_GRAD;
        p.dst = kg_vk_addr(dz);
        p.weight = grad_w ? kg_vk_addr(c->in[3]) : 0; /* 0: g = 1, the unit gradients */
        ok = kg_vk_dispatch_1d(c, KG_VK_ROWS, &p, sizeof p, (uint64_t)N, reads, grad_w ? 3 : 2,
                               dz);
    }
    if (ok && grad_w)
        ok = matmul_into(c, c->out, dz, x, true, false); /* dW = dZᵀ·X */
    if (ok && unit) { /* U = dZ·W, the (N, C) after the N log-probabilities */
        kg_tensor *u = kg__tensor_view(c->out, "kg_linear_log_prob", 2, (int64_t[]){N, C},
                                       (int64_t[]){C, 1}, c->out->offset + N);
        ok = u && (packed ? matmul_q_into(c, u, dz, w, false)
                          : matmul_into(c, u, dz, w, false, false));
        kg_tensor_free(u);
    }
    kg_tensor_free(z); /* released once the queued work is done */
    kg_tensor_free(dz);
    return ok;
}

/* ---- rope ----------------------------------------------------------------------------------- */

/* rope's cos and sin as (T, D/2, 2) for positions pos0 .. pos0 + T - 1, made on the host the way
 * the CPU kernel (rope_rows in ops/nn.c) and HF make them: inv_freq = 1/θ^(2i/D) and the angle
 * pos·inv_freq in f32, then libm's cosf and sinf, whose range reduction keeps the digits that
 * GPU sin/cos lose on angles in the thousands of radians. The last table is kept: every layer's
 * forward and backward of a step asks for the same one. */
static const vk_alloc *rope_table(const kg_opcall *c, int64_t T, int64_t D)
{
    vk_state *s = c->ctx->be_state;
    struct rope_table *rt = &s->rope;
    float theta = c->p.rope.theta;
    int64_t pos0 = c->p.rope.pos0;
    if (rt->mem && rt->pos0 == pos0 && rt->T == T && rt->D == D && rt->theta == theta)
        return rt->mem;
    size_t bytes = sizeof(float) * (size_t)(T * D);
    float *host = kg__pool_take(&s->host, bytes);
    if (!host) {
        kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_rope: out of host memory for a %zu-byte table",
                     bytes);
        return NULL;
    }
    for (int64_t t = 0; t < T; t++) {
        float pos = (float)(pos0 + t);
        for (int64_t i = 0; i < D / 2; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D), ang = pos * inv_freq;
            host[2 * (t * (D / 2) + i)] = cosf(ang);
            host[2 * (t * (D / 2) + i) + 1] = sinf(ang);
        }
    }
    vk_alloc *mem = kg__vk_mem_alloc(s, bytes, false, POOL_INTERNAL);
    if (!mem && kg__vk_busy(s) && kg__vk_flush(s)) /* memory may be waiting on queued work */
        mem = kg__vk_mem_alloc(s, bytes, false, POOL_INTERNAL);
    if (!mem)
        kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_rope: out of vulkan memory for a %zu-byte table",
                     bytes);
    bool ok = mem && c->ctx->be->upload(s, mem, 0, host, bytes); /* a failure sets the error */
    kg__pool_give(&s->host, host, bytes);
    if (!ok) {
        if (mem)
            c->ctx->be->release(s, mem, bytes);
        return NULL;
    }
    if (rt->mem) /* queued work may still read the old table: it goes after the flush */
        c->ctx->be->release(s, rt->mem, sizeof(float) * (size_t)(rt->T * rt->D));
    *rt = (struct rope_table){mem, pos0, T, D, theta};
    return mem;
}

bool kg__vk_rope(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int64_t D = x->shape[x->ndim - 1], T = x->shape[x->ndim - 2];
    const vk_alloc *table = rope_table(c, T, D);
    if (!table)
        return false;
    rope_push p = {.dst = kg_vk_addr(c->out), .x = kg_vk_addr(x),
                   .table = table->block->addr + table->offset,
                   .rows = u32(D ? kg_tensor_numel(x) / D : 0), .T = u32(T), .D = u32(D),
                   .inverse = c->p.rope.inverse};
    return kg_vk_dispatch_1d(c, KG_VK_ROPE, &p, sizeof p, GROUPS((uint64_t)p.rows * (D / 2), 256),
                             c->in, 1, c->out);
}

/* ---- indexed ops ---------------------------------------------------------------------------- */

/* scatter_add_rows: out set to 0 in a pass of its own, then the ids in runs of KG_LOOP_CHUNK
 * (lavapipe's loop limit), each run one invocation a column adding its rows in order: the sum
 * order stays fixed and no atomics are needed. */
static bool scatter_add_rows(const kg_opcall *c, gather_push *p)
{
    gather_push zero = *p;
    zero.mode = GA_ZERO;
    zero.n = p->limit * p->C;
    if (!kg_vk_dispatch_1d(c, KG_VK_GATHER, &zero, sizeof zero, GROUPS(zero.n, 256), NULL, 0,
                           c->out))
        return false;
    for (uint32_t first = 0; first < p->n; first += KG_LOOP_CHUNK) {
        p->first = first;
        if (!kg_vk_dispatch_1d(c, KG_VK_GATHER, p, sizeof *p, GROUPS(p->C, 256), c->in, c->n_in,
                               c->out))
            return false;
    }
    return true;
}

bool kg__vk_gather(const kg_opcall *c)
{
    gather_push p = {.dst = kg_vk_addr(c->out), .status = kg_vk_status_addr(c->ctx), .op = c->op};
    uint64_t groups;
    switch (c->op) {
    case KG_OP_ONE_HOT:
        p.mode = GA_ONE_HOT;
        p.ids = kg_vk_addr(c->in[0]);
        p.n = u32(kg_tensor_numel(c->in[0]));
        p.C = u32(c->p.classes.classes);
        p.ignore_index = c->p.classes.ignore_index;
        groups = GROUPS((uint64_t)p.n * p.C, 256);
        break;
    case KG_OP_EMBEDDING: /* table (V, C), ids */
        p.mode = GA_EMBEDDING;
        p.src = kg_vk_addr(c->in[0]);
        p.ids = kg_vk_addr(c->in[1]);
        p.n = u32(kg_tensor_numel(c->in[1]));
        p.C = u32(c->in[0]->shape[1]);
        p.limit = u32(c->in[0]->shape[0]);
        groups = GROUPS((uint64_t)p.n * p.C, 256);
        break;
    case KG_OP_SCATTER_ADD_ROWS: /* src (..., C), ids → out (rows, C); one invocation a column */
        p.mode = GA_SCATTER_ADD_ROWS;
        p.src = kg_vk_addr(c->in[0]);
        p.ids = kg_vk_addr(c->in[1]);
        p.n = u32(kg_tensor_numel(c->in[1]));
        p.C = u32(c->out->shape[1]);
        p.limit = u32(c->out->shape[0]);
        return scatter_add_rows(c, &p);
    default:
        return no_case(c);
    }
    return kg_vk_dispatch_1d(c, KG_VK_GATHER, &p, sizeof p, groups, c->in, c->n_in, c->out);
}

/* ---- optimizer steps (in place) ------------------------------------------------------------ */

/* param, grad, then the state (AdamW: m, v; SGD: the momentum buffer, or none); param and the
 * state are written. */
bool kg__vk_optim(const kg_opcall *c)
{
    optim_push p = {.op = c->op};
    switch (c->op) {
    case KG_OP_ADAMW: {
        const kg_adamw *a = &c->p.adamw;
        p.mode = OPT_ADAMW;
        p.lr = a->lr;
        p.weight_decay = a->weight_decay;
        p.beta1 = a->beta1;
        p.beta2 = a->beta2;
        p.eps = a->eps;
        p.c1 = 1.0f - powf(a->beta1, (float)a->step); /* as kg__cpu_adamw */
        p.c2 = 1.0f - powf(a->beta2, (float)a->step);
        break;
    }
    case KG_OP_SGD:
        p.mode = OPT_SGD;
        p.lr = c->p.sgd.lr;
        p.weight_decay = c->p.sgd.weight_decay;
        p.momentum = c->p.sgd.momentum;
        p.first = c->p.sgd.first;
        break;
    default:
        return no_case(c);
    }
    kg_tensor *writes[3] = {c->in[0], c->n_in > 2 ? c->in[2] : NULL,
                            c->n_in > 3 ? c->in[3] : NULL};
    p.param = kg_vk_addr(c->in[0]);
    p.grad = kg_vk_addr(c->in[1]);
    p.status = kg_vk_status_addr(c->ctx);
    p.m = writes[1] ? kg_vk_addr(writes[1]) : 0;
    p.v = writes[2] ? kg_vk_addr(writes[2]) : 0;
    p.n = u32(kg_tensor_numel(c->in[0]));
    return kg_vk_dispatch_1d_writes(c, KG_VK_OPTIM, &p, sizeof p, GROUPS(p.n, 256), c->in,
                                    c->n_in, writes, c->n_in - 1);
}
