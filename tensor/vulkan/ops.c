/* ops.c — each op's Vulkan kernel: which shader runs it, what its push constants hold, and how
 * many workgroups cover it. The shaders are in shaders/, their push-constant layout in each
 * shader's header comment. Inputs are contiguous unless the op's table entry says strided.
 */
#include "vk.h"

#include "shaders/codes.h"

#define GROUPS(n, size) (((uint64_t)(n) + (size) - 1) / (size))

static uint32_t u32(int64_t v) { return (uint32_t)v; }

/* kg__pad4's sizes (when dims) or strides of t into four push-constant words. */
static void pad4(const kg_tensor *t, bool dims, uint32_t *dst)
{
    int64_t dim[4], stride[4];
    kg__pad4(t, dim, stride);
    for (int d = 0; d < 4; d++)
        dst[d] = u32(dims ? dim[d] : stride[d]);
}

/* ---- copies -------------------------------------------------------------------------------- */

static bool copy_into(const kg_opcall *c, const kg_tensor *dst, kg_tensor *src)
{
    kg_vk_push p = {.addr = {kg_vk_addr(dst), kg_vk_addr(src)}};
    pad4(dst, true, p.u + 1);
    pad4(src, false, p.u + 5);
    pad4(dst, false, p.u + 9);
    int64_t n = kg_tensor_numel(dst);
    p.u[13] = u32(n);
    return kg_vk_dispatch_1d(c, KG_VK_COPY, &p, GROUPS(n, 256), &src, 1, dst);
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

bool kg__vk_cast(const kg_opcall *c)
{
    kg_tensor *x = c->in[0];
    int64_t n = kg_tensor_numel(x);
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(x)},
                    .u = {x->dtype, c->out->dtype, u32(n)}};
    return kg_vk_dispatch_1d(c, KG_VK_CAST, &p, GROUPS(n, 256), &x, 1, c->out);
}

/* ---- elementwise ---------------------------------------------------------------------------- */

static const uint32_t ew_code[KG_OP_COUNT] = {
    [KG_OP_ADD] = EW_ADD,     [KG_OP_SUB] = EW_SUB,         [KG_OP_MUL] = EW_MUL,
    [KG_OP_DIV] = EW_DIV,     [KG_OP_EQ] = EW_EQ,           [KG_OP_MASKED_FILL] = EW_MASKED_FILL,
    [KG_OP_SCALE] = EW_SCALE, [KG_OP_EXP] = EW_EXP,         [KG_OP_LOG] = EW_LOG,
    [KG_OP_SQRT] = EW_SQRT,   [KG_OP_RSQRT] = EW_RSQRT,     [KG_OP_TANH] = EW_TANH,
    [KG_OP_SIGMOID] = EW_SIGMOID, [KG_OP_ERF] = EW_ERF,     [KG_OP_RELU] = EW_RELU,
    [KG_OP_GELU] = EW_GELU,   [KG_OP_SILU] = EW_SILU,       [KG_OP_STEP] = EW_STEP,
    [KG_OP_DROPOUT] = EW_DROPOUT,
};

bool kg__vk_elementwise(const kg_opcall *c)
{
    kg_tensor *a = c->in[0], *b = c->n_in > 1 ? c->in[1] : c->in[0];
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(a), kg_vk_addr(b)}};
    p.u[0] = ew_code[c->op];
    pad4(c->out, true, p.u + 1);
    pad4(a, false, p.u + 5);
    pad4(b, false, p.u + 9);
    int64_t n = kg_tensor_numel(c->out);
    p.u[13] = u32(n);
    float s0 = 0.0f, s1 = 0.0f; /* the op's scalars */
    uint64_t seed = 0;
    if (c->op == KG_OP_SCALE) {
        s0 = c->p.affine.scale;
        s1 = c->p.affine.shift;
    } else if (c->op == KG_OP_MASKED_FILL) {
        s0 = c->p.fill.value;
    } else if (c->op == KG_OP_DROPOUT) {
        s0 = c->p.dropout.p;
        seed = c->p.dropout.seed;
    }
    p.u[14] = kg_vk_fbits(s0);
    p.u[15] = kg_vk_fbits(s1);
    p.u[16] = (uint32_t)seed;
    p.u[17] = (uint32_t)(seed >> 32);
    p.u[18] = b->dtype == KG_DTYPE_I32;
    return kg_vk_dispatch_1d(c, KG_VK_ELEMENTWISE, &p, GROUPS(n, 256), c->in, c->n_in, c->out);
}

/* ---- reductions --------------------------------------------------------------------------- */

bool kg__vk_reduce(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int a = c->p.reduce.axis;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++)
        outer *= x->shape[i];
    for (int i = a + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(x)},
                    .u = {c->op == KG_OP_MAX, u32(outer), u32(x->shape[a]), u32(inner)}};
    return kg_vk_dispatch_1d(c, KG_VK_REDUCE, &p, GROUPS(outer * inner, 256), c->in, 1, c->out);
}

/* ---- matmul and the structured ops -------------------------------------------------------- */

/* Strides (elements) of t's two batch dims, aligned to out's and padded to two; 0 broadcasts. */
static void batch_strides(const kg_tensor *t, const kg_tensor *out, uint32_t *dst)
{
    int64_t mat = t->shape[t->ndim - 1] * t->shape[t->ndim - 2];
    int tb = t->ndim - 2, ob = out->ndim - 2;
    int64_t s1 = tb >= 1 && t->shape[tb - 1] != 1 ? mat : 0;
    int64_t s0 = tb >= 2 && t->shape[tb - 2] != 1 ? mat * t->shape[tb - 1] : 0;
    /* out has ob batch dims (0 to 2); dst[0] pairs with the outer one, dst[1] the inner one. */
    dst[0] = ob == 2 ? u32(tb == 2 ? s0 : 0) : 0;
    dst[1] = ob >= 1 ? u32(s1) : 0;
}

bool kg__vk_matmul(const kg_opcall *c)
{
    const kg_tensor *a = c->in[0], *b = c->in[1], *o = c->out;
    bool ta = c->p.matmul.trans_a, tb = c->p.matmul.trans_b;
    int64_t m = o->shape[o->ndim - 2], n = o->shape[o->ndim - 1];
    int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t batch = m * n != 0 ? kg_tensor_numel(o) / (m * n) : 0;
    kg_vk_push p = {.addr = {kg_vk_addr(o), kg_vk_addr(a), kg_vk_addr(b)}};
    p.u[3] = u32(a->shape[a->ndim - 1]);
    p.u[4] = u32(b->shape[b->ndim - 1]);
    p.u[5] = ta;
    p.u[6] = tb;
    if (b->ndim == 2 && !ta && kg_tensor_numel(a) == batch * m * k) {
        m *= batch; /* a stack of rows times one matrix: one GEMM */
        batch = 1;
    }
    p.u[0] = u32(m);
    p.u[1] = u32(n);
    p.u[2] = u32(k);
    p.u[7] = o->ndim == 4 && batch > 1 ? u32(o->shape[0]) : 1;
    p.u[8] = batch > 1 ? u32(o->ndim >= 3 ? o->shape[o->ndim - 3] : 1) : 1;
    if (batch > 1) {
        batch_strides(a, o, p.u + 9);
        batch_strides(b, o, p.u + 11);
    }
    uint32_t bm, bn;
    kg_vk_matmul_tile(c->ctx, &bm, &bn);
    /* Batches go on the grid's z axis, in chunks of what the device allows there. */
    uint32_t maxz = kg_vk_max_groups(c->ctx, 2);
    for (int64_t b0 = 0; b0 < batch; b0 += maxz) {
        int64_t nb = batch - b0 < maxz ? batch - b0 : maxz;
        p.u[13] = u32(b0);
        if (!kg_vk_dispatch(c, KG_VK_MATMUL, &p, (uint32_t)GROUPS(n, bn), (uint32_t)GROUPS(m, bm),
                            u32(nb), c->in, 2, o))
            return false;
    }
    return true;
}

bool kg__vk_kron(const kg_opcall *c)
{
    const kg_tensor *a = c->in[0], *b = c->in[1];
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(a), kg_vk_addr(b)},
                    .u = {u32(a->shape[0]), u32(a->shape[1]), u32(b->shape[0]), u32(b->shape[1])}};
    return kg_vk_dispatch_1d(c, KG_VK_KRON, &p, GROUPS(kg_tensor_numel(c->out), 256), c->in, 2,
                             c->out);
}

/* lowrank_linear (x, B1, B2) is kron_linear with A = [1]: one fused kernel for both. */
bool kg__vk_structured_linear(const kg_opcall *c)
{
    bool kron = c->op == KG_OP_KRON_LINEAR;
    const kg_tensor *x = c->in[0], *a = kron ? c->in[1] : NULL;
    const kg_tensor *b1 = c->in[kron ? 2 : 1], *b2 = c->in[kron ? 3 : 2];
    int64_t da2 = a ? a->shape[0] : 1, da1 = a ? a->shape[1] : 1, r = b1->shape[1];
    int64_t din = x->shape[x->ndim - 1], n = din ? kg_tensor_numel(x) / din : 0;
    if ((da1 + da2) * r > 2048)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: (dA1 + dA2)·R = %lld; the Vulkan kernel "
                        "holds at most 2048 in shared memory", kg_op_table[c->op].name,
                        (long long)((da1 + da2) * r));
    uint64_t b2addr = kg_vk_addr(b2);
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(x), a ? kg_vk_addr(a) : 0,
                             kg_vk_addr(b1)},
                    .u = {u32(n), u32(da1), u32(da2), u32(b2->shape[1]), u32(b1->shape[0]),
                          u32(r), (uint32_t)b2addr, (uint32_t)(b2addr >> 32)}};
    return kg_vk_dispatch_1d(c, KG_VK_KRON_LINEAR, &p, (uint64_t)n, c->in, c->n_in, c->out);
}

/* ---- row-wise ops --------------------------------------------------------------------------- */

bool kg__vk_rows(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int64_t C = x->shape[x->ndim - 1], rows = C ? kg_tensor_numel(x) / C : 0;
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(x)}};
    p.u[1] = u32(rows);
    p.u[2] = u32(C);
    p.u[7] = c->op;
    switch (c->op) {
    case KG_OP_SOFTMAX: p.u[0] = ROW_SOFTMAX; break;
    case KG_OP_LOG_SOFTMAX: p.u[0] = ROW_LOG_SOFTMAX; break;
    case KG_OP_LAYER_NORM:
    case KG_OP_RMS_NORM:
        p.u[0] = c->op == KG_OP_RMS_NORM ? ROW_RMS_NORM : ROW_LAYER_NORM;
        p.u[3] = kg_vk_fbits(c->p.norm.eps);
        p.u[4] = c->p.norm.has_weight;
        p.u[5] = c->p.norm.has_bias;
        if (c->p.norm.has_weight)
            p.addr[2] = kg_vk_addr(c->in[1]);
        if (c->p.norm.has_bias)
            p.addr[3] = kg_vk_addr(c->in[1 + c->p.norm.has_weight]);
        break;
    default: { /* cross entropy: per-row losses and flags into scratch, then their mean */
        kg_tensor *part = kg__tensor_alloc(c->ctx, "kg_cross_entropy", KG_DTYPE_F32, 1, (int64_t[]){2 * rows + 1},
                                           false);
        if (!part)
            return false;
        p.u[0] = ROW_CROSS_ENTROPY;
        p.u[6] = (uint32_t)c->p.classes.ignore_index;
        p.addr[0] = kg_vk_addr(part);
        p.addr[2] = kg_vk_addr(c->in[1]);
        p.addr[3] = kg_vk_status_addr(c->ctx);
        kg_vk_push q = {.addr = {kg_vk_addr(c->out), kg_vk_addr(part)},
                        .u = {100 /* ROW_CE_MEAN */, u32(rows)}};
        bool ok = kg_vk_dispatch_1d(c, KG_VK_ROWS, &p, (uint64_t)rows, c->in, 2, part) &&
                  kg_vk_dispatch(c, KG_VK_ROWS, &q, 1, 1, 1, &part, 1, c->out);
        kg_tensor_free(part); /* released once the queued work is done */
        return ok;
    }
    }
    return kg_vk_dispatch_1d(c, KG_VK_ROWS, &p, (uint64_t)rows, c->in, c->n_in, c->out);
}

bool kg__vk_rope(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int64_t D = x->shape[x->ndim - 1], rows = D ? kg_tensor_numel(x) / D : 0;
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), kg_vk_addr(x)},
                    .u = {u32(rows), u32(x->shape[x->ndim - 2]), u32(D), u32(c->p.rope.pos0),
                          kg_vk_fbits(c->p.rope.theta), c->p.rope.inverse}};
    return kg_vk_dispatch_1d(c, KG_VK_ROPE, &p, GROUPS(rows * (D / 2), 256), c->in, 1, c->out);
}

/* ---- indexed ops ---------------------------------------------------------------------------- */

bool kg__vk_gather(const kg_opcall *c)
{
    kg_vk_push p = {.addr = {kg_vk_addr(c->out), 0, 0, kg_vk_status_addr(c->ctx)}};
    p.u[5] = c->op;
    uint64_t groups;
    kg_tensor *ids;
    if (c->op == KG_OP_ONE_HOT) {
        ids = c->in[0];
        int64_t n = kg_tensor_numel(ids), V = c->p.classes.classes;
        p.addr[1] = kg_vk_addr(ids); /* unused; any valid address */
        p.u[0] = GA_ONE_HOT;
        p.u[1] = u32(n);
        p.u[2] = u32(V);
        p.u[4] = (uint32_t)c->p.classes.ignore_index;
        groups = GROUPS(n * V, 256);
    } else {
        kg_tensor *src = c->in[0];
        ids = c->in[1];
        int64_t n = kg_tensor_numel(ids), C = src->shape[src->ndim - 1];
        bool scatter = c->op == KG_OP_SCATTER_ADD_ROWS;
        p.addr[1] = kg_vk_addr(src);
        p.u[0] = scatter ? GA_SCATTER_ADD_ROWS : GA_EMBEDDING;
        p.u[1] = u32(n);
        p.u[2] = u32(C);
        p.u[3] = u32(scatter ? c->out->shape[0] : src->shape[0]);
        groups = scatter ? GROUPS(C, 256) : GROUPS(n * C, 256);
    }
    p.addr[2] = kg_vk_addr(ids);
    return kg_vk_dispatch_1d(c, KG_VK_GATHER, &p, groups, c->in, c->n_in, c->out);
}
