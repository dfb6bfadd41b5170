/* tensor.c — tensor handles: allocation on the context's backend, views over shared storage,
 * host upload and download, creation helpers and seeded random tensors.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dtype_names[KG_DTYPE_COUNT] = {"f32", "f16", "bf16", "i32", "q8_0",
                                                        "q4_0", "q4_1", "nf4"};
static const size_t dtype_sizes[KG_DTYPE_COUNT] = {4, 2, 2, 4}; /* 0: block-quantized (quant.c) */

const char *kg_dtype_name(kg_dtype d) { return (unsigned)d < KG_DTYPE_COUNT ? dtype_names[d] : "?"; }
size_t kg_dtype_size(kg_dtype d) { return (unsigned)d < KG_DTYPE_COUNT ? dtype_sizes[d] : 0; }

kg_dtype kg_dtype_from_name(const char *name)
{
    for (int d = 0; name && d < KG_DTYPE_COUNT; d++)
        if (!strcmp(name, dtype_names[d]))
            return (kg_dtype)d;
    return KG_DTYPE_COUNT;
}

/* "[2,3] f32" for a shape and dtype. */
static const char *describe(int ndim, const int64_t *shape, kg_dtype dtype, char *buf,
                            size_t size)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < size) /* KG_DTYPE_COUNT: the shape alone */
        snprintf(buf + n, size - n, dtype == KG_DTYPE_COUNT ? "]" : "] %s", kg_dtype_name(dtype));
    return buf;
}

const char *kg__describe(const kg_tensor *t, char *buf, size_t size)
{
    if (!t) {
        snprintf(buf, size, "NULL");
        return buf;
    }
    return describe(t->ndim, t->shape, t->dtype, buf, size);
}

const char *kg__describe_shape(int ndim, const int64_t *shape, char *buf, size_t size)
{
    return describe(ndim, shape, KG_DTYPE_COUNT, buf, size);
}

int64_t kg__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

bool kg__mul(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out) && *out <= KG_MAX_NUMEL && *out >= 0;
}

bool kg__add(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out) && *out <= KG_MAX_NUMEL && *out >= 0;
}

bool kg__check_shape(kg_ctx *ctx, const char *fn, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > KG_MAX_DIMS)
        return kg_set_error(ctx, KG_ERR_SHAPE, "%s: %d dimensions; expected 0 to %d", fn, ndim,
                            KG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: shape is NULL", fn);
    /* The product of the non-zero sizes bounds every element count, stride and byte offset
     * computed from the shape, so a zero-size dimension does not let the others grow unchecked. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return kg_set_error(ctx, KG_ERR_SHAPE, "%s: dimension %d has size %lld; expected a "
                                "size >= 0", fn, i, (long long)shape[i]);
        if (!kg__mul(n, shape[i] ? shape[i] : 1, &n)) {
            char buf[96];
            return kg_set_error(ctx, KG_ERR_RANGE, "%s: shape %s has more than 2^59 elements "
                                "(counting size-0 dimensions as 1); expected at most 2^59", fn,
                                describe(ndim, shape, KG_DTYPE_COUNT, buf, sizeof buf));
        }
    }
    return true;
}

/* Row-major strides, counting size-0 dimensions as 1 (as PyTorch does): then every stride is
 * bounded by the product kg__check_shape limits, even for a shape with no elements. */
void kg__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] ? shape[i] : 1;
    }
}

bool kg__axis(kg_ctx *ctx, const char *fn, int ndim, int axis, int *out)
{
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim)
        return kg_set_error(ctx, KG_ERR_RANGE, "%s: axis %d is out of range for %d dimensions", fn,
                        axis, ndim);
    *out = a;
    return true;
}

static bool check_shape(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                        const int64_t *shape)
{
    if ((unsigned)dtype >= KG_DTYPE_COUNT)
        return kg_set_error(ctx, KG_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)dtype);
    return kg__check_shape(ctx, fn, ndim, shape) &&
           (!kg__dtype_is_block(dtype) || kg__check_block_shape(ctx, fn, dtype, ndim, shape));
}

static bool register_tensor(kg_ctx *ctx, const char *fn, kg_tensor *t)
{
    if (ctx->n_tensors == ctx->cap_tensors) {
        size_t cap = ctx->cap_tensors ? ctx->cap_tensors * 2 : 256;
        kg_tensor **p = kg__realloc(ctx->tensors, cap * sizeof *p);
        if (!p)
            return kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        ctx->tensors = p;
        ctx->cap_tensors = cap;
    }
    t->slot = ctx->n_tensors;
    ctx->tensors[ctx->n_tensors++] = t;
    return true;
}

static kg_tensor *header(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                         const int64_t *shape, bool owned)
{
    kg_tensor *t = kg__pool_take(&ctx->headers, sizeof *t);
    if (!t) {
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        return NULL;
    }
    *t = (kg_tensor){0};
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    kg__contiguous_strides(ndim, t->shape, t->stride);
    t->slot = SIZE_MAX;
    if (owned && !register_tensor(ctx, fn, t)) {
        kg__pool_give(&ctx->headers, t, sizeof *t);
        return NULL;
    }
    return t;
}

kg_tensor *kg__tensor_alloc(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                            const int64_t *shape, bool owned)
{
    if (!ctx || ctx->status || !check_shape(ctx, fn, dtype, ndim, shape))
        return NULL;
    size_t bytes = kg_dtype_bytes(dtype, kg__numel(ndim, shape));
    kg_storage *s = kg__pool_take(&ctx->headers, sizeof *s);
    bool persistent = !owned || ctx->scopes == 0;
    void *h = s ? ctx->be->alloc(ctx->be_state, bytes ? bytes : 1, persistent) : NULL;
    if (!h) {
        kg__pool_give(&ctx->headers, s, sizeof *s);
        char buf[64];
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of %s memory allocating %s (%zu bytes)", fn,
                     ctx->be->name, describe(ndim, shape, dtype, buf, sizeof buf), bytes);
        return NULL;
    }
    *s = (kg_storage){.refs = 1, .bytes = bytes ? bytes : 1, .handle = h};
    kg_tensor *t = header(ctx, fn, dtype, ndim, shape, owned);
    if (!t) {
        ctx->be->release(ctx->be_state, h, s->bytes);
        kg__pool_give(&ctx->headers, s, sizeof *s);
        return NULL;
    }
    t->storage = s;
    return t;
}

kg_tensor *kg__tensor_view(kg_tensor *t, const char *fn, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset)
{
    if (!kg__check_shape(t->ctx, fn, ndim, shape))
        return NULL;
    if (kg__dtype_is_block(t->dtype)) { /* a block layout has no element strides to view by */
        kg_set_error(t->ctx, KG_ERR_DTYPE, "%s: %s is block-quantized; expected f32, f16, bf16 "
                     "or i32 (dequantize with kg_cast)", fn, KG_DESC(t));
        return NULL;
    }
    kg_tensor *v = header(t->ctx, fn, t->dtype, ndim, shape, true);
    if (!v)
        return NULL;
    for (int i = 0; i < ndim; i++)
        v->stride[i] = stride[i];
    v->offset = offset;
    v->storage = t->storage;
    t->storage->refs++;
    return v;
}

kg_tensor *kg_tensor_keep(kg_tensor *t)
{
    if (!t || t->ctx->status || t->kept || t->slot == SIZE_MAX)
        return t;
    kg_ctx *ctx = t->ctx;
    ctx->tensors[t->slot] = NULL;
    t->slot = SIZE_MAX;
    t->kept = true;
    t->kept_next = ctx->kept;
    if (ctx->kept)
        ctx->kept->kept_prev = t;
    ctx->kept = t;
    if (t->node) { /* its inputs may die with the scope: cut it from the tape */
        free(t->node);
        t->node = NULL;
        t->requires_grad = false;
    }
    return t;
}

bool kg_tensor_assign(kg_tensor *dst, kg_tensor *src)
{
    if (!dst || !src) {
        if (dst || src)
            kg_set_error((dst ? dst : src)->ctx, KG_ERR_ARG, "kg_tensor_assign: %s is NULL",
                         dst ? "src" : "dst");
        return false;
    }
    kg_ctx *ctx = dst->ctx;
    if (ctx->status)
        return false;
    if (src->ctx != ctx)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_tensor_assign: src belongs to another context");
    if (!kg__same_shape(dst, src))
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_tensor_assign: src is %s; expected the shape "
                            "of dst %s", KG_DESC(src), KG_DESC(dst));
    kg_no_grad_begin(ctx);
    kg_tensor *s = src->dtype == dst->dtype ? src : kg_cast(src, dst->dtype);
    bool ok = s && kg__assign(dst, s);
    if (s && s != src)
        kg_tensor_free(s);
    kg_no_grad_end(ctx);
    return ok;
}

void kg_tensor_free(kg_tensor *t)
{
    if (!t)
        return;
    kg_ctx *ctx = t->ctx;
    if (t->slot != SIZE_MAX)
        ctx->tensors[t->slot] = NULL;
    if (t->kept) {
        if (t->kept_prev)
            t->kept_prev->kept_next = t->kept_next;
        else
            ctx->kept = t->kept_next;
        if (t->kept_next)
            t->kept_next->kept_prev = t->kept_prev;
    }
    free(t->node);
    if (t->grad)
        kg_tensor_free(t->grad);
    if (--t->storage->refs == 0) {
        ctx->be->release(ctx->be_state, t->storage->handle, t->storage->bytes);
        kg__pool_give(&ctx->headers, t->storage, sizeof *t->storage);
    }
    kg__pool_give(&ctx->headers, t, sizeof *t);
}

kg_tensor *kg_tensor_new(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape)
{
    return kg__tensor_alloc(ctx, "kg_tensor_new", dtype, ndim, shape, true);
}

kg_tensor *kg_from_host(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape,
                        const void *data)
{
    kg_tensor *t = kg_tensor_new(ctx, dtype, ndim, shape);
    if (!t)
        return NULL;
    if (!data) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_from_host: data is NULL");
        kg_tensor_free(t);
        return NULL;
    }
    size_t bytes = kg_dtype_bytes(dtype, kg_tensor_numel(t));
    if (!ctx->be->upload(ctx->be_state, t->storage->handle, 0, data, bytes)) {
        kg_set_error(ctx, KG_ERR_DEVICE, "kg_from_host: upload of %zu bytes failed", bytes);
        kg_tensor_free(t);
        return NULL;
    }
    return t;
}

kg_tensor *kg_full(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape, double value)
{
    if (!ctx || ctx->status || !check_shape(ctx, "kg_full", dtype, ndim, shape))
        return NULL;
    if (kg__dtype_is_block(dtype)) {
        kg_set_error(ctx, KG_ERR_DTYPE, "kg_full: %s is block-quantized; expected f32, f16, bf16 "
                     "or i32 (quantize with kg_quantize)", kg_dtype_name(dtype));
        return NULL;
    }
    size_t n = (size_t)kg__numel(ndim, shape);
    void *buf = kg__malloc(n * dtype_sizes[dtype] + 1);
    if (!buf) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_full: out of host memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        kg__store(buf, dtype, (int64_t)i, value);
    kg_tensor *t = kg_from_host(ctx, dtype, ndim, shape, buf);
    free(buf);
    return t;
}

kg_tensor *kg_zeros(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape)
{
    return kg_full(ctx, dtype, ndim, shape, 0.0);
}

kg_tensor *kg_ones(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape)
{
    return kg_full(ctx, dtype, ndim, shape, 1.0);
}

static kg_tensor *random_tensor(kg_ctx *ctx, const char *fn, int ndim, const int64_t *shape,
                                float a, float b, uint64_t seed, bool normal)
{
    if (!ctx || ctx->status || !check_shape(ctx, fn, KG_DTYPE_F32, ndim, shape))
        return NULL;
    size_t n = (size_t)kg__numel(ndim, shape);
    float *buf = kg__malloc(n * sizeof *buf + 1);
    if (!buf) {
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (normal) { /* Box-Muller on two independent draws; u1 in (0, 1] keeps log finite */
            float u1 = 1.0f - kg__uniform01(seed, 2 * i);
            float u2 = kg__uniform01(seed, 2 * i + 1);
            buf[i] = a + b * sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
        } else {
            buf[i] = a + (b - a) * kg__uniform01(seed, i);
        }
    }
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_F32, ndim, shape, buf);
    free(buf);
    return t;
}

kg_tensor *kg_uniform(kg_ctx *ctx, int ndim, const int64_t *shape, float lo, float hi,
                      uint64_t seed)
{
    return random_tensor(ctx, "kg_uniform", ndim, shape, lo, hi, seed, false);
}

kg_tensor *kg_normal(kg_ctx *ctx, int ndim, const int64_t *shape, float mean, float std,
                     uint64_t seed)
{
    return random_tensor(ctx, "kg_normal", ndim, shape, mean, std, seed, true);
}

kg_ctx *kg_tensor_ctx(const kg_tensor *t) { return t ? t->ctx : NULL; }
kg_dtype kg_tensor_dtype(const kg_tensor *t) { return t ? t->dtype : KG_DTYPE_COUNT; }
int kg_tensor_ndim(const kg_tensor *t) { return t ? t->ndim : 0; }
int64_t kg_tensor_numel(const kg_tensor *t) { return t ? kg__numel(t->ndim, t->shape) : 0; }

int64_t kg_tensor_dim(const kg_tensor *t, int axis)
{
    int a;
    if (!t || !kg__axis(t->ctx, "kg_tensor_dim", t->ndim, axis, &a))
        return -1;
    return t->shape[a];
}

bool kg_tensor_is_contiguous(const kg_tensor *t)
{
    if (!t)
        return false;
    if (kg_tensor_numel(t) == 0) /* nothing to lay out: any strides will do */
        return true;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool kg__matrix_view(const kg_tensor *t, bool *flip, int64_t *ld)
{
    int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    int64_t sr = t->stride[t->ndim - 2], sc = t->stride[t->ndim - 1];
    *flip = false;
    *ld = c > 1 ? c : 1;
    if (kg_tensor_is_contiguous(t))
        return true;
    if (t->ndim > 4) /* the device kernel walks at most two batch dims */
        return false;
    if ((c == 1 || sc == 1) && (r == 1 || sr >= *ld)) { /* rows apart by sr */
        *ld = r == 1 ? *ld : sr;
        return true;
    }
    *flip = true; /* columns apart by sc */
    *ld = r > 1 ? r : 1;
    if ((r == 1 || sr == 1) && (c == 1 || sc >= *ld)) {
        *ld = c == 1 ? *ld : sc;
        return true;
    }
    return false;
}

bool kg_tensor_to_host(const kg_tensor *t, void *dst, size_t capacity)
{
    if (!t || t->ctx->status)
        return false;
    kg_ctx *ctx = t->ctx;
    size_t bytes = kg_dtype_bytes(t->dtype, kg_tensor_numel(t));
    if (!dst || capacity < bytes)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_tensor_to_host: %s needs %zu bytes; the buffer "
                        "has %zu", KG_DESC(t), bytes, dst ? capacity : 0);
    kg_tensor *c = (kg_tensor *)t;
    kg_no_grad_begin(ctx);
    if (!kg_tensor_is_contiguous(t))
        c = kg_contiguous(c);
    kg_no_grad_end(ctx);
    if (!c)
        return false;
    bool ok = ctx->be->flush(ctx->be_state) &&
              ctx->be->download(ctx->be_state, c->storage->handle,
                                (size_t)c->offset * dtype_sizes[c->dtype], dst, bytes);
    if (c != t)
        kg_tensor_free(c);
    if (ok && ctx->status) /* the flush found an error in queued work */
        return false;
    if (!ok)
        return kg_set_error(ctx, KG_ERR_DEVICE, "kg_tensor_to_host: download of %s failed",
                        KG_DESC(t));
    return true;
}

float *kg_tensor_to_f32(const kg_tensor *t)
{
    if (!t || t->ctx->status)
        return NULL;
    size_t n = (size_t)kg_tensor_numel(t);
    size_t bytes = kg_dtype_bytes(t->dtype, (int64_t)n);
    float *out = kg__malloc(n * sizeof(float) + 1);
    void *raw = kg__malloc(bytes + 1);
    if (!out || !raw || !kg_tensor_to_host(t, raw, bytes)) {
        if (!out || !raw)
            kg_set_error(t->ctx, KG_ERR_NOMEM, "kg_tensor_to_f32: out of host memory");
        free(out);
        free(raw);
        return NULL;
    }
    if (kg__dtype_is_block(t->dtype))
        kg__dequantize_rows(raw, t->dtype, t->shape[0], t->shape[1], 0, t->shape[0], out);
    else
        for (size_t i = 0; i < n; i++)
            out[i] = (float)kg__load(raw, t->dtype, (int64_t)i);
    free(raw);
    return out;
}

double kg_item(const kg_tensor *t)
{
    if (!t)
        return NAN;
    if (kg_tensor_numel(t) != 1) {
        kg_set_error(t->ctx, KG_ERR_SHAPE, "kg_item: %s has %lld elements; expected 1", KG_DESC(t),
                 (long long)kg_tensor_numel(t));
        return NAN;
    }
    float *v = kg_tensor_to_f32(t);
    double r = v ? v[0] : NAN;
    free(v);
    return r;
}
