/* op.c — running one op: check the inputs, apply the op's shape rule, allocate the output, hand
 * the kernel to the backend, and record a tape node when a gradient will be needed. Every public
 * op goes through kg__op, so this is the one place those rules live.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The FLOPs (2 per multiply-add) of the GEMM-like ops, for kg_profile's GFLOPS; 0 for the
 * others, whose cost is memory traffic. */
static double op_flops(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *w = c->n_in > 1 ? c->in[1] : NULL;
    double out = (double)kg_tensor_numel(c->out), rows = 1;
    for (int d = 0; x && d < x->ndim - 1; d++)
        rows *= (double)x->shape[d];
    switch (c->op) {
    case KG_OP_MATMUL:
        return 2.0 * out * (double)x->shape[x->ndim - (c->p.matmul.trans_a ? 2 : 1)];
    case KG_OP_MATMUL_Q:
        return 2.0 * out * (double)w->shape[c->p.matmul.trans_b ? 1 : 0];
    case KG_OP_LOWRANK_LINEAR: /* x (N, in), B1 (out, R), B2 (R, in) */
        return 2.0 * rows * (double)w->shape[1] * (double)(x->shape[x->ndim - 1] + w->shape[0]);
    case KG_OP_KRON_LINEAR: { /* x (N, in), A (dA2, dA1), B1 (dB2, R), B2 (R, dB1) */
        const kg_tensor *b1 = c->in[2];
        double R = (double)b1->shape[1], A = (double)kg_tensor_numel(w);
        return 2.0 * rows * R * ((double)x->shape[x->ndim - 1] + A + out / rows);
    }
    case KG_OP_LINEAR_LOG_PROB: /* the logits, then the unit gradients where asked */
        return (c->p.classes.weight ? 4.0 : 2.0) * rows * (double)w->shape[0] * (double)x->shape[1];
    case KG_OP_LINEAR_LOG_PROB_GRAD: /* the logits again, then dW */
        return 4.0 * rows * (double)w->shape[0] * (double)x->shape[1];
    default:
        return 0.0;
    }
}

/* A contiguous copy of t for a kernel that needs one, recorded nowhere. */
static kg_tensor *contiguous_for_kernel(kg_tensor *t)
{
    kg_tensor *c = kg__tensor_alloc(t->ctx, "kg_contiguous", t->dtype, t->ndim, t->shape, true);
    if (c && !kg__assign(c, t)) {
        kg_tensor_free(c);
        return NULL;
    }
    return c;
}

static bool wants_grad(const kg_opcall *c)
{
    /* Integer results carry no gradient (as PyTorch): a cast to i32 and back cuts the tape. */
    if (c->ctx->no_grad || !kg_op_table[c->op].backward || c->out->dtype == KG_DTYPE_I32)
        return false;
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i]->requires_grad)
            return true;
    return false;
}

static kg_tensor *run_op(kg_op op, int n_in, kg_tensor *const *in, const kg_opparams *p);

kg_tensor *kg__op(kg_op op, int n_in, kg_tensor *const *in, const kg_opparams *p)
{
    kg_ctx *ctx = NULL; /* profiling: the whole op's host time, apart from the kernel's */
    for (int i = 0; in && i < n_in && !ctx; i++)
        if (in[i])
            ctx = in[i]->ctx;
    if (!ctx || !ctx->profiling)
        return run_op(op, n_in, in, p);
    double t0 = kg__now();
    kg_tensor *out = run_op(op, n_in, in, p);
    ctx->host.op_seconds += kg__now() - t0;
    ctx->host.ops++;
    return out;
}

static kg_tensor *run_op(kg_op op, int n_in, kg_tensor *const *in, const kg_opparams *p)
{
    const kg_op_info *info = &kg_op_table[op];
    kg_opcall c = {.op = op, .n_in = n_in};
    if (p)
        c.p = *p;
    for (int i = 0; in && i < n_in && !c.ctx; i++) /* any input's context takes the error */
        if (in[i])
            c.ctx = in[i]->ctx;
    if (!c.ctx || c.ctx->status)
        return NULL;
    if (n_in > KG_MAX_INPUTS) {
        kg_set_error(c.ctx, KG_ERR_ARG, "kg_%s: %d inputs; expected 1 to %d", info->name, n_in,
                     KG_MAX_INPUTS);
        return NULL;
    }
    if (info->n_in >= 0 && n_in != info->n_in) {
        kg_set_error(c.ctx, KG_ERR_ARG, "kg_%s: %d inputs; expected %d", info->name, n_in,
                 info->n_in);
        return NULL;
    }
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            kg_set_error(c.ctx, KG_ERR_ARG, "kg_%s: input %d is NULL", info->name, i);
            return NULL;
        }
        if (in[i]->ctx != c.ctx) {
            kg_set_error(c.ctx, KG_ERR_ARG, "kg_%s: input %d belongs to another context",
                     info->name, i);
            return NULL;
        }
        if (kg__dtype_is_block(in[i]->dtype) && !(info->flags & KG_OPF_QUANT)) {
            kg_set_error(c.ctx, KG_ERR_DTYPE, "kg_%s: input %d is %s, block-quantized; expected "
                         "f32 (dequantize with kg_cast, or multiply with kg_matmul_q)", info->name,
                         i, KG_DESC(in[i]));
            return NULL;
        }
        c.in[i] = in[i];
    }
    kg_shape s;
    if (!info->shape(&c, &s))
        return NULL;
    char fn[48]; /* the public function's name, for the messages of what follows */
    snprintf(fn, sizeof fn, "kg_%s", info->name);
    if (!kg__check_shape(c.ctx, fn, s.ndim, s.dim)) /* whatever a shape rule forgot */
        return NULL;

    double t_alloc = c.ctx->profiling ? kg__now() : 0.0;
    if (info->flags & KG_OPF_INPLACE) {
        c.out = c.in[0];
    } else if (info->flags & KG_OPF_VIEW) {
        c.out = kg__tensor_view(c.in[0], fn, s.ndim, s.dim, s.stride, s.offset);
        if (!c.out)
            return NULL;
    } else {
        c.out = kg__tensor_alloc(c.ctx, fn, s.dtype, s.ndim, s.dim, true);
        if (!c.out)
            return NULL;
    }
    if (c.ctx->profiling && !(info->flags & KG_OPF_INPLACE)) {
        c.ctx->host.alloc_seconds += kg__now() - t_alloc;
        c.ctx->host.tensors++;
    }
    if (!(info->flags & KG_OPF_VIEW) && kg_tensor_numel(c.out) > 0) { /* no elements: no work */
        kg_opcall k = c; /* the kernel's call: contiguous copies where the kernel needs them */
        bool flip;
        int64_t ld;
        for (int i = 0; i < n_in; i++)
            if (!(info->flags & KG_OPF_STRIDED) && !kg_tensor_is_contiguous(c.in[i]) &&
                !((info->flags & KG_OPF_MATRIX) && kg__matrix_view(c.in[i], &flip, &ld)) &&
                !(k.in[i] = contiguous_for_kernel(c.in[i])))
                break;
        bool ok = !c.ctx->status && c.ctx->be->run(&k);
        if (ok && c.ctx->profiling)
            c.ctx->op_flops[c.op] += op_flops(&k);
        for (int i = 0; i < n_in; i++)
            if (k.in[i] && k.in[i] != c.in[i])
                kg_tensor_free(k.in[i]); /* backends keep storage alive while queued */
        if (!ok) {
            kg_set_error(c.ctx, KG_ERR_DEVICE, "kg_%s: the %s backend failed to run it", info->name,
                     c.ctx->be->name);
            if (!(info->flags & KG_OPF_INPLACE))
                kg_tensor_free(c.out);
            return NULL;
        }
    }
    if (wants_grad(&c)) {
        kg_node *n = kg__malloc(sizeof *n);
        if (!n) {
            kg_set_error(c.ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for the tape", info->name);
            kg_tensor_free(c.out);
            return NULL;
        }
        *n = c;
        c.ctx->host.tape_nodes++;
        c.out->node = n;
        c.out->requires_grad = true;
    }
    c.ctx->op_made[op]++;
    return c.out;
}

bool kg__assign(kg_tensor *dst, kg_tensor *src)
{
    kg_opcall c = {.ctx = dst->ctx, .op = KG_OP_CONTIGUOUS, .n_in = 1, .in = {src}, .out = dst};
    KG_ASSERT(dst->dtype == src->dtype && dst->ndim == src->ndim);
    if (dst->ctx->status)
        return false;
    if (kg_tensor_numel(dst) == 0)
        return true;
    if (!dst->ctx->be->run(&c))
        return kg_set_error(dst->ctx, KG_ERR_DEVICE, "kg_contiguous: the %s backend failed to copy "
                        "%s", dst->ctx->be->name, KG_DESC(src));
    return true;
}

void kg__pad4(const kg_tensor *t, int64_t dim[4], int64_t stride[4])
{
    int pad = 4 - t->ndim;
    for (int d = 0; d < 4; d++) {
        bool real = d >= pad;
        dim[d] = real ? t->shape[d - pad] : 1;
        stride[d] = real && t->shape[d - pad] != 1 ? t->stride[d - pad] : 0;
    }
}

bool kg__broadcast_shape(const kg_tensor *a, const kg_tensor *b, kg_shape *out)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    out->ndim = nd;
    out->dtype = a->dtype;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        out->dim[i] = da == 1 ? db : da;
    }
    return true;
}

kg_tensor *kg__sum_to(kg_tensor *g, int ndim, const int64_t *shape)
{
    if (!g)
        return NULL;
    int lead = g->ndim - ndim;
    for (int i = 0; i < lead; i++)
        g = kg_sum(g, 0, false);
    for (int i = 0; i < ndim && g; i++)
        if (shape[i] == 1 && g->shape[i] != 1)
            g = kg_sum(g, i, true);
    return g;
}

/* ---- Shape-rule helpers shared by the op files ---------------------------------------------- */

bool kg__want_dtype(const kg_opcall *c, int i, kg_dtype want)
{
    if (c->in[i]->dtype == want)
        return true;
    return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_%s: input %d is %s; expected %s%s",
                    kg_op_table[c->op].name, i, KG_DESC(c->in[i]), kg_dtype_name(want),
                    want == KG_DTYPE_F32 ? " (convert with kg_cast)" : "");
}

bool kg__same_shape(const kg_tensor *a, const kg_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

void kg__shape_of(const kg_tensor *t, kg_shape *s)
{
    s->dtype = t->dtype;
    s->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++)
        s->dim[i] = t->shape[i];
}
