/* view.c — views (reshape, permute/transpose, slice, expand) that share their input's storage,
 * and the two copies: contiguous (any strides to row-major) and cast (change of dtype).
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <stdio.h>
#include <string.h>

/* ---- reshape: p.shape, one dimension may be -1 --------------- --------------------------- */

bool kg__shape_reshape(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    int nd = c->p.shape.ndim, infer = -1;
    int64_t known = 1;
    if (nd < 0 || nd > KG_MAX_DIMS)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_reshape: %d dimensions; expected 0 to %d", nd,
                        KG_MAX_DIMS);
    for (int i = 0; i < nd; i++) {
        int64_t d = c->p.shape.dim[i];
        if (d == -1 && infer < 0)
            infer = i;
        else if (d < 0)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_reshape: dimension %d is %lld; expected "
                                "a size, or -1 once", i, (long long)d);
        else if (!kg__mul(known, d, &known)) /* then it cannot equal x's count either */
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_reshape: the shape asked for %s has "
                                "more than 2^59 elements (reshaping %s)",
                                KG_DESC_SHAPE(nd, c->p.shape.dim), KG_DESC(x));
    }
    int64_t n = kg_tensor_numel(x);
    s->ndim = nd;
    s->dtype = x->dtype;
    for (int i = 0; i < nd; i++)
        s->dim[i] = i == infer ? (known ? n / known : 0) : c->p.shape.dim[i];
    if (infer >= 0 ? (known ? n % known != 0 : n != 0) : known != n)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_reshape: %s (%lld elements) cannot be "
                        "viewed as the shape asked for %s", KG_DESC(x), (long long)n,
                        KG_DESC_SHAPE(nd, c->p.shape.dim));
    /* A size-0 dimension made `known` 0, so the other sizes are still unchecked. */
    if (!kg__check_shape(c->ctx, "kg_reshape", nd, s->dim))
        return false;
    KG_ASSERT(kg_tensor_is_contiguous(x));
    kg__contiguous_strides(nd, s->dim, s->stride);
    s->offset = x->offset;
    return true;
}

void kg__backward_reshape(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg_reshape(g, n->in[0]->ndim, n->in[0]->shape);
}

kg_tensor *kg_reshape(kg_tensor *t, int ndim, const int64_t *shape)
{
    kg_opparams p = {.shape.ndim = ndim};
    if (!t || (ndim > 0 && !shape) || ndim < 0 || ndim > KG_MAX_DIMS) {
        if (t)
            kg_set_error(t->ctx, KG_ERR_ARG, "kg_reshape: shape is NULL or has %d dimensions", ndim);
        return NULL;
    }
    if (ndim > 0)
        memcpy(p.shape.dim, shape, sizeof(int64_t) * (size_t)ndim);
    if (!kg_tensor_is_contiguous(t))
        t = kg_contiguous(t);
    return kg__op(KG_OP_RESHAPE, 1, &t, &p);
}

/* ---- permute: p.permute.axes ---------------------------------------------------------------- */

bool kg__shape_permute(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    bool seen[KG_MAX_DIMS] = {0};
    for (int i = 0; i < x->ndim; i++) {
        int a = c->p.permute.axes[i];
        if (a < 0 || a >= x->ndim || seen[a])
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_permute: axes of %s must be a permutation "
                            "of 0..%d; axis %d is %d", KG_DESC(x), x->ndim - 1, i, a);
        seen[a] = true;
        s->dim[i] = x->shape[a];
        s->stride[i] = x->stride[a];
    }
    s->ndim = x->ndim;
    s->dtype = x->dtype;
    s->offset = x->offset;
    return true;
}

void kg__backward_permute(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    int inv[KG_MAX_DIMS];
    for (int i = 0; i < n->in[0]->ndim; i++)
        inv[n->p.permute.axes[i]] = i;
    gin[0] = kg_permute(g, inv);
}

kg_tensor *kg_permute(kg_tensor *t, const int *axes)
{
    kg_opparams p = {.permute.axes = {0}};
    if (t && !axes) {
        kg_set_error(t->ctx, KG_ERR_ARG, "kg_permute: axes is NULL");
        return NULL;
    }
    for (int i = 0; t && i < t->ndim; i++)
        p.permute.axes[i] = axes[i];
    return kg__op(KG_OP_PERMUTE, 1, &t, &p);
}

kg_tensor *kg_transpose(kg_tensor *t, int axis0, int axis1)
{
    int a0, a1, axes[KG_MAX_DIMS] = {0, 1, 2, 3};
    if (!t || !kg__axis(t->ctx, "kg_transpose", t->ndim, axis0, &a0) ||
        !kg__axis(t->ctx, "kg_transpose", t->ndim, axis1, &a1))
        return NULL;
    axes[a0] = a1;
    axes[a1] = a0;
    return kg_permute(t, axes);
}

/* ---- slice: p.slice ------------------------------------------------------------------------- */

bool kg__shape_slice(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    int a;
    if (!kg__axis(c->ctx, "kg_slice", x->ndim, c->p.slice.axis, &a))
        return false;
    int64_t start = c->p.slice.start, len = c->p.slice.length;
    if (start < 0 || len < 0 || start > x->shape[a] || len > x->shape[a] - start)
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_slice: start %lld, length %lld along axis "
                            "%d of %s; expected a range inside [0, %lld)", (long long)start,
                            (long long)len, a, KG_DESC(x), (long long)x->shape[a]);
    kg__shape_of(x, s);
    memcpy(s->stride, x->stride, sizeof s->stride);
    s->dim[a] = len;
    s->offset = x->offset + start * x->stride[a];
    return true;
}

void kg__backward_slice(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* The gradient is g placed into zeros of the input's shape. */
    kg_tensor *x = n->in[0];
    kg_tensor *z = kg_zeros(x->ctx, KG_DTYPE_F32, x->ndim, x->shape);
    kg_tensor *v = z ? kg_slice(z, n->p.slice.axis, n->p.slice.start, n->p.slice.length) : NULL;
    gin[0] = v && kg__assign(v, g) ? z : NULL;
}

kg_tensor *kg_slice(kg_tensor *t, int axis, int64_t start, int64_t length)
{
    kg_opparams p = {.slice = {.axis = axis, .start = start, .length = length}};
    return kg__op(KG_OP_SLICE, 1, &t, &p);
}

/* ---- expand: p.shape --------------------------------------------------------------------- */

bool kg__shape_expand(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    int nd = c->p.shape.ndim, lead = nd - x->ndim;
    if (nd > KG_MAX_DIMS || lead < 0)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_expand: cannot expand %s to %d dimensions",
                        KG_DESC(x), nd);
    for (int i = 0; i < nd; i++) {
        int64_t want = c->p.shape.dim[i], have = i < lead ? 1 : x->shape[i - lead];
        if (want < 0)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_expand: size %lld asked for dimension "
                                "%d; expected a size >= 0", (long long)want, i);
        if (want != have && have != 1)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_expand: dimension %d of %s is %lld; only "
                            "size-1 dimensions expand (to %lld asked)", i - lead, KG_DESC(x),
                            (long long)have, (long long)want);
        s->dim[i] = want;
        s->stride[i] = i < lead || have != want ? 0 : x->stride[i - lead];
    }
    s->ndim = nd;
    s->dtype = x->dtype;
    s->offset = x->offset;
    return true;
}

void kg__backward_expand(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = kg__sum_to(g, n->in[0]->ndim, n->in[0]->shape);
}

kg_tensor *kg_expand(kg_tensor *t, int ndim, const int64_t *shape)
{
    kg_opparams p = {.shape.ndim = ndim};
    if (t && (!shape || ndim < 0 || ndim > KG_MAX_DIMS)) {
        kg_set_error(t->ctx, KG_ERR_ARG, "kg_expand: shape is NULL or has %d dimensions", ndim);
        return NULL;
    }
    for (int i = 0; t && i < ndim; i++)
        p.shape.dim[i] = shape[i];
    return kg__op(KG_OP_EXPAND, 1, &t, &p);
}

/* ---- contiguous: copy any strides into row-major; its kernel is also kg__assign's ----------- */

typedef struct copy_job {
    const kg_tensor *src, *dst;
    int64_t dim[4], ss[4], ds[4];
    size_t es;
} copy_job;

/* One row's n elements of type T, strided on both sides: a typed loop, not a memcpy call per
 * element (which, its size known only at run time, costs a library call each: the attention's
 * head copies spent most of their time there). */
#define COPY_STRIDED(T, dst, ds, src, ss, n)                                                     \
    do {                                                                                         \
        T *d_ = (T *)(void *)(dst);                                                              \
        const T *s_ = (const T *)(const void *)(src);                                            \
        for (int64_t k_ = 0; k_ < (n); k_++)                                                     \
            d_[k_ * (ds)] = s_[k_ * (ss)];                                                       \
    } while (0)

static void copy_rows(void *arg, int64_t lo, int64_t hi)
{
    const copy_job *j = arg;
    const char *src = kg_cpu_raw(j->src);
    char *dst = kg_cpu_raw(j->dst);
    int64_t n = j->dim[3], ss = j->ss[3], ds = j->ds[3];
    for (int64_t r = lo; r < hi; r++) {
        const char *s = src + (size_t)kg_cpu_row_offset(j->dim, j->ss, r) * j->es;
        char *d = dst + (size_t)kg_cpu_row_offset(j->dim, j->ds, r) * j->es;
        if (ss == 1 && ds == 1) /* both rows contiguous */
            memcpy(d, s, (size_t)n * j->es);
        else if (j->es == 4)
            COPY_STRIDED(uint32_t, d, ds, s, ss, n);
        else if (j->es == 2)
            COPY_STRIDED(uint16_t, d, ds, s, ss, n);
        else if (j->es == 1)
            COPY_STRIDED(uint8_t, d, ds, s, ss, n);
        else /* 8-byte and block dtypes */
            for (int64_t k = 0; k < n; k++)
                memcpy(d + (size_t)(k * ds) * j->es, s + (size_t)(k * ss) * j->es, j->es);
    }
}

bool kg__cpu_copy(const kg_opcall *c)
{
    copy_job j = {.src = c->in[0], .dst = c->out, .es = kg_dtype_size(c->out->dtype)};
    int64_t unused[4];
    kg__pad4(c->out, j.dim, j.ds);
    kg__pad4(c->in[0], unused, j.ss);
    int64_t rows = j.dim[0] * j.dim[1] * j.dim[2];
    kg_cpu_parallel_for(rows, 1 + (1 << 14) / (j.dim[3] + 1), copy_rows, &j);
    return true;
}

bool kg__shape_same(const kg_opcall *c, kg_shape *s)
{
    kg__shape_of(c->in[0], s);
    return true;
}

void kg__backward_identity(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    (void)n;
    gin[0] = g;
}

kg_tensor *kg_contiguous(kg_tensor *t)
{
    if (t && kg_tensor_is_contiguous(t) && !t->ctx->status)
        return t;
    return kg__op(KG_OP_CONTIGUOUS, 1, &t, NULL);
}

/* ---- cast: p.cast.dtype --------------------------------------------------------------------- */

bool kg__cpu_cast(const kg_opcall *c)
{
    const void *src = kg_cpu_raw(c->in[0]);
    void *dst = kg_cpu_raw(c->out);
    int64_t n = kg_tensor_numel(c->out);
    if (kg__dtype_is_block(c->in[0]->dtype)) { /* dequantization: the shape rule wants f32 out */
        kg__dequantize_rows(src, c->in[0]->dtype, c->in[0]->shape[0], c->in[0]->shape[1], 0,
                            c->in[0]->shape[0], dst);
        return true;
    }
    for (int64_t i = 0; i < n; i++)
        kg__store(dst, c->out->dtype, i, kg__load(src, c->in[0]->dtype, i));
    return true;
}

bool kg__shape_cast(const kg_opcall *c, kg_shape *s)
{
    if ((unsigned)c->p.cast.dtype >= KG_DTYPE_COUNT)
        return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_cast: unknown dtype %d",
                            (int)c->p.cast.dtype);
    if (kg__dtype_is_block(c->p.cast.dtype))
        return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_cast: to %s; expected f32, f16, bf16 or i32 "
                            "(quantize with kg_quantize)", kg_dtype_name(c->p.cast.dtype));
    if (kg__dtype_is_block(c->in[0]->dtype) && c->p.cast.dtype != KG_DTYPE_F32)
        return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_cast: %s to %s; a quantized tensor casts "
                            "to f32 only", KG_DESC(c->in[0]), kg_dtype_name(c->p.cast.dtype));
    kg__shape_of(c->in[0], s);
    s->dtype = c->p.cast.dtype;
    return true;
}

void kg__backward_cast(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* Gradients stay f32 whatever the storage dtype (autograd accumulates in f32), so a cast's
     * gradient passes through unchanged; an i32 side never asks for one. */
    (void)n;
    gin[0] = g;
}

kg_tensor *kg_cast(kg_tensor *t, kg_dtype dtype)
{
    kg_opparams p = {.cast.dtype = dtype};
    return kg__op(KG_OP_CAST, 1, &t, &p);
}
