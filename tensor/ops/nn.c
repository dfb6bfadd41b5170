/* nn.c — the ops transformers are made of: embedding and its adjoint, softmax, log-softmax,
 * layer norm, RMS norm, rotary embedding, cross entropy, one-hot and concat. Kernels work on rows
 * of the last axis (C), which the dispatcher has made contiguous.
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t last_dim(const kg_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
/* Rows of the last axis: the product of the other sizes (a (2, 0) tensor has 2 empty rows). */
static int64_t row_count(const kg_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d + 1 < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

static bool check_ids(const kg_opcall *c, const int32_t *ids, int64_t n, int64_t limit)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= limit)
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_%s: id %d at position %lld is outside "
                            "[0, %lld)", kg_op_table[c->op].name, ids[i], (long long)i,
                            (long long)limit);
    return true;
}

/* The kernels check the ids, but kg__op runs no kernel for an output without elements (a table
 * of 0 columns, scatter into 0 rows or 0 columns): then the shape rule checks them on the host,
 * so an id outside [0, limit) is KG_ERR_RANGE whether or not anything would be written. */
static bool check_ids_if_empty(const kg_opcall *c, const kg_tensor *ids, int64_t limit,
                               const kg_shape *out)
{
    int64_t n = kg_tensor_numel(ids), elems = 1;
    for (int d = 0; d < out->ndim; d++)
        elems *= out->dim[d];
    if (elems > 0 || n == 0)
        return true;
    int32_t *host = malloc(sizeof *host * (size_t)n);
    if (!host)
        return kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory",
                            kg_op_table[c->op].name);
    bool ok = kg_tensor_to_host(ids, host, sizeof *host * (size_t)n) &&
              check_ids(c, host, n, limit);
    free(host);
    return ok;
}

/* ---- embedding: table (V, C), ids (...) i32 → (..., C) ------------------------------------- */

bool kg__shape_embedding(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *tab = c->in[0], *ids = c->in[1];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_I32))
        return false;
    if (tab->ndim != 2 || ids->ndim >= KG_MAX_DIMS)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_embedding: table %s, ids %s; expected a "
                        "(V, C) table and ids of at most %d dimensions", KG_DESC(tab),
                        KG_DESC(ids), KG_MAX_DIMS - 1);
    kg__shape_of(ids, s);
    s->dtype = KG_DTYPE_F32;
    s->dim[s->ndim++] = tab->shape[1];
    return check_ids_if_empty(c, ids, tab->shape[0], s);
}

bool kg__cpu_embedding(const kg_opcall *c)
{
    const kg_tensor *tab = c->in[0];
    const int32_t *ids = kg_cpu_i32(c->in[1]);
    int64_t n = kg_tensor_numel(c->in[1]), C = tab->shape[1];
    if (!check_ids(c, ids, n, tab->shape[0]))
        return false;
    for (int64_t i = 0; i < n; i++)
        memcpy(kg_cpu_f32(c->out) + i * C, kg_cpu_f32(tab) + ids[i] * C, sizeof(float) * (size_t)C);
    return true;
}

void kg__backward_embedding(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *tab = nd->in[0];
    gin[0] = kg_scatter_add_rows(g, nd->in[1], tab->shape[0]);
}

kg_tensor *kg_embedding(kg_tensor *table, kg_tensor *ids)
{
    return kg__op(KG_OP_EMBEDDING, 2, (kg_tensor *[]){table, ids}, NULL);
}

/* ---- scatter_add_rows: src (..., C), ids (...) i32, p.scatter.rows → (rows, C)------------ */

bool kg__shape_scatter_add_rows(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *src = c->in[0], *ids = c->in[1];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_I32))
        return false;
    if (src->ndim < 1 || row_count(src) != kg_tensor_numel(ids) || c->p.scatter.rows < 0)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_scatter_add_rows: src %s, ids %s, %lld rows; "
                        "expected one id per row of src", KG_DESC(src), KG_DESC(ids),
                        (long long)c->p.scatter.rows);
    *s = (kg_shape){.dtype = KG_DTYPE_F32, .ndim = 2, .dim = {c->p.scatter.rows, last_dim(src)}};
    return check_ids_if_empty(c, ids, c->p.scatter.rows, s);
}

bool kg__cpu_scatter_add_rows(const kg_opcall *c)
{
    const int32_t *ids = kg_cpu_i32(c->in[1]);
    int64_t n = kg_tensor_numel(c->in[1]), C = c->out->shape[1];
    const float *src = kg_cpu_f32(c->in[0]);
    float *out = kg_cpu_f32(c->out);
    if (!check_ids(c, ids, n, c->out->shape[0]))
        return false;
    memset(out, 0, sizeof(float) * (size_t)kg_tensor_numel(c->out));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < C; j++)
            out[ids[i] * C + j] += src[i * C + j];
    return true;
}

void kg__backward_scatter_add_rows(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *src = nd->in[0];
    gin[0] = kg_reshape(kg_embedding(g, nd->in[1]), src->ndim, src->shape);
}

kg_tensor *kg_scatter_add_rows(kg_tensor *src, kg_tensor *ids, int64_t rows)
{
    kg_opparams p = {.scatter.rows = rows};
    return kg__op(KG_OP_SCATTER_ADD_ROWS, 2, (kg_tensor *[]){src, ids}, &p);
}

/* ---- softmax and log_softmax over the last axis -------------------------------------------- */

/* softmax (x[, mask]) computes softmax(scale·x + mask) in one pass over each row: attention's
 * scores with their 1/√D scale and additive causal / padding mask (which broadcasts to x, -inf
 * masking), as the scale and add ops would round them (scale·x, then + mask), so the result is
 * theirs bit for bit. log_softmax shares the kernel, unscaled and unmasked. */
bool kg__shape_softmax(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *m = c->n_in > 1 ? c->in[1] : NULL;
    if (c->n_in < 1 || c->n_in > 2)
        return kg_set_error(c->ctx, KG_ERR_ARG, "kg_softmax: %d inputs; expected x and an "
                            "optional mask", c->n_in);
    if (!kg__shape_unary(c, s) || (m && !kg__want_dtype(c, 1, KG_DTYPE_F32)))
        return false;
    kg_shape b; /* the mask broadcasts to x: scale·x + mask keeps x's shape */
    bool fits = !m || (kg__broadcast_shape(x, m, &b) && b.ndim == x->ndim);
    for (int i = 0; m && fits && i < b.ndim; i++)
        fits = b.dim[i] == x->shape[i];
    if (!fits || (m && x->ndim > 4))
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_softmax: mask %s does not broadcast to x %s "
                            "(of at most 4 dims)", KG_DESC(m), KG_DESC(x));
    return true;
}

typedef struct rows_job {
    const kg_opcall *c;
    int64_t C;
    int64_t dim[4], mst[4]; /* x's sizes and the mask's strides, padded to 4 (kg__pad4) */
} rows_job;

static void softmax_rows(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    const kg_opcall *c = j->c;
    bool log_form = c->op == KG_OP_LOG_SOFTMAX, masked = c->n_in > 1;
    float scale = log_form ? 1.0f : c->p.softmax.scale;
    const float *mask = masked ? kg_cpu_f32(c->in[1]) : NULL;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = kg_cpu_f32(c->in[0]) + r * j->C;
        float *y = kg_cpu_f32(c->out) + r * j->C;
        if (scale != 1.0f || masked) { /* z = scale·x + mask, formed in the output row */
            const float *m = masked ? mask + kg_cpu_row_offset(j->dim, j->mst, r) : NULL;
            for (int64_t k = 0; k < j->C; k++)
                y[k] = masked ? scale * x[k] + m[k * j->mst[3]] : scale * x[k];
            x = y;
        }
        float mx = -INFINITY;
        for (int64_t k = 0; k < j->C; k++)
            mx = x[k] > mx ? x[k] : mx;
        if (mx == -INFINITY) { /* every entry masked */
            for (int64_t k = 0; k < j->C; k++)
                y[k] = log_form ? -INFINITY : 0.0f;
            continue;
        }
        double sum = 0.0;
        if (log_form) {
            for (int64_t k = 0; k < j->C; k++)
                sum += expf(x[k] - mx);
        } else { /* e^(x - max) kept in y (x may be y itself: each read before written), the
                  * row's calls at once (cpu/vec_math.c) */
            for (int64_t k = 0; k < j->C; k++)
                y[k] = x[k] - mx;
            kg_cpu_expf_inplace(y, j->C);
            for (int64_t k = 0; k < j->C; k++)
                sum += y[k];
        }
        float lse = (float)log(sum), inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < j->C; k++)
            y[k] = log_form ? x[k] - mx - lse : y[k] * inv;
    }
}

bool kg__cpu_softmax(const kg_opcall *c)
{
    rows_job j = {.c = c, .C = last_dim(c->in[0])};
    int64_t unused[4];
    kg__pad4(c->in[0], j.dim, unused);
    if (c->n_in > 1)
        kg__pad4(c->in[1], unused, j.mst);
    kg_cpu_parallel_for(row_count(c->in[0]), 1 + 4096 / (j.C + 1), softmax_rows, &j);
    return true;
}

/* softmax_grad (y, g), p.softmax.scale → scale · y ⊙ (g - Σ g⊙y) over each row: the four ops of
 * the unfused rule (mul, sum, sub, mul) in one pass, the row sum in double. */
bool kg__shape_softmax_grad(const kg_opcall *c, kg_shape *s)
{
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_F32))
        return false;
    if (!kg__same_shape(c->in[0], c->in[1]) || c->in[0]->ndim < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_softmax (backward): y %s, gradient %s; "
                            "expected one shape", KG_DESC(c->in[0]), KG_DESC(c->in[1]));
    kg__shape_of(c->in[0], s);
    return true;
}

static void softmax_grad_rows(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    float scale = j->c->p.softmax.scale;
    for (int64_t r = lo; r < hi; r++) {
        const float *y = kg_cpu_f32(j->c->in[0]) + r * j->C, *g = kg_cpu_f32(j->c->in[1]) + r * j->C;
        float *dx = kg_cpu_f32(j->c->out) + r * j->C;
        double dot = 0.0;
        for (int64_t k = 0; k < j->C; k++)
            dot += (double)g[k] * y[k];
        for (int64_t k = 0; k < j->C; k++)
            dx[k] = scale * (y[k] * (g[k] - (float)dot));
    }
}

bool kg__cpu_softmax_grad(const kg_opcall *c)
{
    rows_job j = {.c = c, .C = last_dim(c->in[0])};
    kg_cpu_parallel_for(row_count(c->in[0]), 1 + 4096 / (j.C + 1), softmax_grad_rows, &j);
    return true;
}

static kg_tensor *softmax_grad(kg_tensor *y, kg_tensor *g, float scale)
{
    kg_opparams p = {.softmax.scale = scale};
    return kg__op(KG_OP_SOFTMAX_GRAD, 2, (kg_tensor *[]){y, g}, &p);
}

void kg__backward_softmax(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    /* z = scale·x + mask: dz = y ⊙ (g - Σ g⊙y), dx = scale·dz, dmask = dz summed to its shape */
    gin[0] = KG_GRAD(nd, 0, softmax_grad(nd->out, g, nd->p.softmax.scale));
    if (nd->n_in > 1 && nd->in[1]->requires_grad)
        gin[1] = kg__sum_to(softmax_grad(nd->out, g, 1.0f), nd->in[1]->ndim, nd->in[1]->shape);
}

void kg__backward_log_softmax(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *y = nd->out; /* dx = g - softmax ⊙ Σ g */
    gin[0] = kg_sub(g, kg_mul(kg_exp(y), kg_sum(g, -1, true)));
}

kg_tensor *kg_softmax_scaled(kg_tensor *x, float scale, kg_tensor *mask)
{
    kg_opparams p = {.softmax.scale = scale};
    return kg__op(KG_OP_SOFTMAX, mask ? 2 : 1, (kg_tensor *[]){x, mask}, &p);
}

kg_tensor *kg_softmax(kg_tensor *x, kg_tensor *mask) { return kg_softmax_scaled(x, 1.0f, mask); }

kg_tensor *kg_log_softmax(kg_tensor *x) { return kg__op(KG_OP_LOG_SOFTMAX, 1, &x, NULL); }

/* ---- layer_norm and rms_norm: inputs x, then weight and bias as p.norm says ----------------- */

bool kg__shape_norm(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    int want = 1 + c->p.norm.has_weight + c->p.norm.has_bias;
    if (c->n_in != want)
        return kg_set_error(c->ctx, KG_ERR_ARG, "kg_%s: %d inputs; expected %d",
                        kg_op_table[c->op].name, c->n_in, want);
    for (int i = 0; i < c->n_in; i++) {
        if (!kg__want_dtype(c, i, KG_DTYPE_F32))
            return false;
        if (i > 0 && (c->in[i]->ndim != 1 || c->in[i]->shape[0] != last_dim(x)))
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: %s is %s; expected (%lld) for x %s",
                            kg_op_table[c->op].name, i == 1 && c->p.norm.has_weight ? "weight" : "bias",
                            KG_DESC(c->in[i]), (long long)last_dim(x), KG_DESC(x));
    }
    if (x->ndim < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: x is a scalar", kg_op_table[c->op].name);
    kg__shape_of(x, s);
    return true;
}

/* A row's mean (0 for RMS norm) and 1/√(var + eps), accumulated in double. The forward and the
 * backward (through norm_stats) both take them from here, so the backward sees exactly the
 * statistics the forward used, as PyTorch's saved mean and rstd. */
static void row_stats(const float *x, int64_t C, bool rms, float eps, double *mean_out,
                      float *rstd_out)
{
    double mean = 0.0, var = 0.0;
    if (!rms) {
        for (int64_t k = 0; k < C; k++)
            mean += x[k];
        mean /= (double)C;
    }
    for (int64_t k = 0; k < C; k++)
        var += (x[k] - mean) * (x[k] - mean);
    *mean_out = mean;
    *rstd_out = (float)(1.0 / sqrt(var / (double)C + eps));
}

static void norm_rows(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    const kg_opcall *c = j->c;
    bool rms = c->op == KG_OP_RMS_NORM;
    const float *w = c->p.norm.has_weight ? kg_cpu_f32(c->in[1]) : NULL;
    const float *b = c->p.norm.has_bias ? kg_cpu_f32(c->in[1 + c->p.norm.has_weight]) : NULL;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = kg_cpu_f32(c->in[0]) + r * j->C;
        float *y = kg_cpu_f32(c->out) + r * j->C;
        double mean;
        float rstd;
        row_stats(x, j->C, rms, c->p.norm.eps, &mean, &rstd);
        for (int64_t k = 0; k < j->C; k++) {
            float v = (float)(x[k] - mean) * rstd;
            y[k] = v * (w ? w[k] : 1.0f) + (b ? b[k] : 0.0f);
        }
    }
}

bool kg__cpu_norm(const kg_opcall *c)
{
    rows_job j = {.c = c, .C = last_dim(c->in[0])};
    kg_cpu_parallel_for(row_count(c->in[0]), 1 + 4096 / (j.C + 1), norm_rows, &j);
    return true;
}

/* ---- norm_stats: x (..., C) → (..., 2), each row's [mean, 1/std] as the norm's forward saw them */

bool kg__shape_norm_stats(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    if (x->ndim < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_norm_stats: x is a scalar");
    kg__shape_of(x, s);
    s->dim[s->ndim - 1] = 2;
    return true;
}

static void stats_rows(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    const kg_opcall *c = j->c;
    for (int64_t r = lo; r < hi; r++) {
        double mean;
        float rstd, *out = kg_cpu_f32(c->out) + 2 * r;
        row_stats(kg_cpu_f32(c->in[0]) + r * j->C, j->C, c->p.norm.rms, c->p.norm.eps, &mean,
                  &rstd);
        out[0] = (float)mean;
        out[1] = rstd;
    }
}

bool kg__cpu_norm_stats(const kg_opcall *c)
{
    rows_job j = {.c = c, .C = last_dim(c->in[0])};
    kg_cpu_parallel_for(row_count(c->in[0]), 1 + 4096 / (j.C + 1), stats_rows, &j);
    return true;
}

void kg__backward_norm(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    /* x̂ = (x - μ)·r with r = 1/√(var + eps) (μ = 0 for RMS norm), y = x̂·w + b:
     * dx = r·(g·w - mean(g·w) - x̂·mean(g·w·x̂)), the mean(g·w) term only for layer norm;
     * dw = Σ g·x̂, db = Σ g over all rows. μ and r are the forward's (norm_stats): recomputing
     * them in f32 here would lose digits on rows whose mean is large against their spread
     * (docs/norms.md). */
    kg_tensor *x = nd->in[0];
    bool rms = nd->op == KG_OP_RMS_NORM, has_w = nd->p.norm.has_weight, has_b = nd->p.norm.has_bias;
    kg_opparams sp = {.norm = {.rms = rms, .eps = nd->p.norm.eps}};
    kg_tensor *stats = kg__op(KG_OP_NORM_STATS, 1, &x, &sp);
    kg_tensor *r = kg_slice(stats, -1, 1, 1);
    kg_tensor *xhat = kg_mul(rms ? x : kg_sub(x, kg_slice(stats, -1, 0, 1)), r);
    kg_tensor *gw = has_w ? kg_mul(g, nd->in[1]) : g;
    kg_tensor *inner = kg_mul(xhat, kg_mean(kg_mul(gw, xhat), -1, true));
    if (!rms)
        inner = kg_add(inner, kg_mean(gw, -1, true));
    gin[0] = kg_mul(r, kg_sub(gw, inner));
    int64_t C = last_dim(x);
    if (has_w)
        gin[1] = kg__sum_to(kg_mul(g, xhat), 1, &C);
    if (has_b)
        gin[1 + has_w] = kg__sum_to(g, 1, &C);
}

kg_tensor *kg_layer_norm(kg_tensor *x, kg_tensor *weight, kg_tensor *bias, float eps)
{
    kg_tensor *in[3] = {x};
    int n = 1;
    if (weight)
        in[n++] = weight;
    if (bias)
        in[n++] = bias;
    kg_opparams p = {.norm = {.has_weight = weight != NULL, .has_bias = bias != NULL, .eps = eps}};
    return kg__op(KG_OP_LAYER_NORM, n, in, &p);
}

kg_tensor *kg_rms_norm(kg_tensor *x, kg_tensor *weight, float eps)
{
    kg_opparams p = {.norm = {.has_weight = true, .eps = eps}};
    return kg__op(KG_OP_RMS_NORM, 2, (kg_tensor *[]){x, weight}, &p);
}

/* ---- rope: x (..., T, D); p.rope: first position, inverse rotation or not, θ ------------- */

bool kg__shape_rope(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    if (x->ndim < 2 || last_dim(x) % 2 != 0)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_rope: x is %s; expected (..., T, D) with D "
                        "even", KG_DESC(x));
    if (c->p.rope.pos0 < 0 || !(c->p.rope.theta > 0.0f))
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_rope: position %lld, theta %g; expected a "
                            "position >= 0 and theta > 0", (long long)c->p.rope.pos0,
                            (double)c->p.rope.theta);
    kg__shape_of(x, s);
    return true;
}

/* rope's rows read cos and sin from a (T, D/2, 2) table made once per call: the same f32
 * angles, but T·D/2 calls of powf, cosf and sinf instead of one of each per element. */
typedef struct rope_job {
    const kg_opcall *c;
    int64_t C;
    const float *table;
} rope_job;

static void rope_rows(void *arg, int64_t lo, int64_t hi)
{
    const rope_job *j = arg;
    const kg_opcall *c = j->c;
    int64_t T = c->in[0]->shape[c->in[0]->ndim - 2], half = j->C / 2;
    float sign = c->p.rope.inverse ? -1.0f : 1.0f;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = kg_cpu_f32(c->in[0]) + r * j->C, *cs = j->table + (r % T) * j->C;
        float *y = kg_cpu_f32(c->out) + r * j->C;
        for (int64_t i = 0; i < half; i++) {
            float co = cs[2 * i], sn = sign * cs[2 * i + 1], x1 = x[i], x2 = x[i + half];
            y[i] = x1 * co - x2 * sn;
            y[i + half] = x2 * co + x1 * sn;
        }
    }
}

bool kg__cpu_rope(const kg_opcall *c)
{
    int64_t C = last_dim(c->in[0]), T = c->in[0]->shape[c->in[0]->ndim - 2], half = C / 2;
    size_t bytes = sizeof(float) * (size_t)(T * C);
    float *table = kg_cpu_scratch(c, bytes);
    if (!table)
        return false;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            /* As HF: inv_freq = 1 / θ^(2i/D) and the angle in f32. */
            float inv_freq = 1.0f / powf(c->p.rope.theta, (float)(2 * i) / (float)C);
            float ang = (float)(c->p.rope.pos0 + t) * inv_freq;
            table[t * C + 2 * i] = cosf(ang);
            table[t * C + 2 * i + 1] = sinf(ang);
        }
    rope_job j = {c, C, table};
    kg_cpu_parallel_for(row_count(c->in[0]), 1 + 4096 / (C + 1), rope_rows, &j);
    kg_cpu_scratch_free(c, table, bytes);
    return true;
}

void kg__backward_rope(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    /* A rotation's transpose is the rotation by the opposite angle. */
    kg_opparams p = nd->p;
    p.rope.inverse = !p.rope.inverse;
    gin[0] = kg__op(KG_OP_ROPE, 1, &g, &p);
}

kg_tensor *kg_rope(kg_tensor *x, int64_t pos0, float theta)
{
    kg_opparams p = {.rope = {.pos0 = pos0, .theta = theta}};
    return kg__op(KG_OP_ROPE, 1, &x, &p);
}

/* ---- one_hot and cross_entropy: p.classes (classes used by one_hot) --------------- */

bool kg__shape_one_hot(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *t = c->in[0];
    if (!kg__want_dtype(c, 0, KG_DTYPE_I32))
        return false;
    if (t->ndim >= KG_MAX_DIMS || c->p.classes.classes < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_one_hot: targets %s, %lld classes; expected "
                        "fewer than %d dimensions and at least one class", KG_DESC(t),
                        (long long)c->p.classes.classes, KG_MAX_DIMS);
    kg__shape_of(t, s);
    s->dtype = KG_DTYPE_F32;
    s->dim[s->ndim++] = c->p.classes.classes;
    return true;
}

/* Targets must be a class or the ignore index. */
bool kg__check_targets(const kg_opcall *c, const int32_t *t, int64_t n, int64_t classes)
{
    for (int64_t i = 0; i < n; i++)
        if (t[i] != c->p.classes.ignore_index && (t[i] < 0 || t[i] >= classes))
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_%s: target %d at position %lld is "
                            "outside [0, %lld) and is not the ignore index %lld",
                            kg_op_table[c->op].name, t[i], (long long)i, (long long)classes,
                            (long long)c->p.classes.ignore_index);
    return true;
}

bool kg__cpu_one_hot(const kg_opcall *c)
{
    const int32_t *t = kg_cpu_i32(c->in[0]);
    int64_t n = kg_tensor_numel(c->in[0]), V = c->p.classes.classes;
    float *o = kg_cpu_f32(c->out);
    if (!kg__check_targets(c, t, n, V))
        return false;
    memset(o, 0, sizeof(float) * (size_t)(n * V));
    for (int64_t i = 0; i < n; i++)
        if (t[i] != c->p.classes.ignore_index)
            o[i * V + t[i]] = 1.0f;
    return true;
}

kg_tensor *kg_one_hot(kg_tensor *targets, int64_t classes, int32_t ignore_index)
{
    kg_opparams p = {.classes = {.classes = classes, .ignore_index = ignore_index}};
    return kg__op(KG_OP_ONE_HOT, 1, &targets, &p);
}

bool kg__shape_cross_entropy(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *t = c->in[1];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_I32))
        return false;
    if (x->ndim != 2 || t->ndim != 1 || t->shape[0] != x->shape[0])
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_cross_entropy: logits %s, targets %s; "
                        "expected (N, V) and (N)", KG_DESC(x), KG_DESC(t));
    *s = (kg_shape){.dtype = KG_DTYPE_F32, .ndim = 0};
    return true;
}

bool kg__cpu_cross_entropy(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int64_t n = x->shape[0], V = x->shape[1];
    const int32_t *t = kg_cpu_i32(c->in[1]);
    if (!kg__check_targets(c, t, n, V))
        return false;
    double total = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        if (t[i] == c->p.classes.ignore_index)
            continue;
        const float *row = kg_cpu_f32(x) + i * V;
        float mx = -INFINITY;
        for (int64_t k = 0; k < V; k++)
            mx = row[k] > mx ? row[k] : mx;
        double sum = 0.0;
        for (int64_t k = 0; k < V; k++)
            sum += exp((double)row[k] - mx);
        total += mx + log(sum) - row[t[i]];
        count++;
    }
    kg_cpu_f32(c->out)[0] = count ? (float)(total / (double)count) : 0.0f;
    return true;
}

void kg__backward_cross_entropy(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    /* d/dx = (softmax(x) - onehot(t)) / count on rows that count; zero on ignored rows. */
    kg_tensor *x = nd->in[0];
    kg_tensor *hot = kg_one_hot(nd->in[1], x->shape[1], nd->p.classes.ignore_index);
    kg_tensor *valid = kg_sum(hot, -1, true); /* (N, 1): 1 where the row counts */
    kg_tensor *count = kg_sum_all(hot);
    kg_tensor *zero = kg_zeros(x->ctx, KG_DTYPE_F32, 1, (int64_t[]){1});
    count = kg_add(count, kg_eq(count, zero)); /* no counted row: divide by 1, not 0 */
    kg_tensor *d = kg_sub(kg_mul(kg_softmax(x, NULL), valid), hot);
    gin[0] = kg_mul(d, kg_div(g, count));
}

kg_tensor *kg_cross_entropy(kg_tensor *logits, kg_tensor *targets, int32_t ignore_index)
{
    kg_opparams p = {.classes = {.ignore_index = ignore_index}};
    return kg__op(KG_OP_CROSS_ENTROPY, 2, (kg_tensor *[]){logits, targets}, &p);
}

/* ---- concat: p.concat.axis made non-negative by kg_concat ------------------------------- */

bool kg__shape_concat(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *a = c->in[0];
    int ax = c->p.concat.axis;
    if (ax < 0 || ax >= a->ndim)
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_concat: axis %d is out of range for %s",
                            c->p.concat.user_axis, KG_DESC(a));
    kg__shape_of(a, s);
    for (int i = 1; i < c->n_in; i++) {
        const kg_tensor *b = c->in[i];
        bool fits = b->ndim == a->ndim && b->dtype == a->dtype;
        for (int d = 0; fits && d < a->ndim; d++)
            fits = d == ax || b->shape[d] == a->shape[d];
        if (!fits)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_concat: input %d is %s and input 0 is %s; "
                            "expected the same dtype and the same sizes but along axis %d", i,
                            KG_DESC(b), KG_DESC(a), ax);
        if (!kg__add(s->dim[ax], b->shape[ax], &s->dim[ax]))
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_concat: the inputs' sizes along axis %d "
                                "add up to more than 2^59", ax);
    }
    return true;
}

bool kg__cpu_concat(const kg_opcall *c)
{
    int ax = c->p.concat.axis;
    size_t es = kg_dtype_size(c->out->dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++)
        outer *= c->out->shape[d];
    for (int d = ax + 1; d < c->out->ndim; d++)
        inner *= c->out->shape[d];
    char *o = kg_cpu_raw(c->out);
    for (int64_t i = 0; i < outer; i++)
        for (int k = 0; k < c->n_in; k++) {
            size_t chunk = (size_t)(c->in[k]->shape[ax] * inner) * es;
            memcpy(o, (const char *)kg_cpu_raw(c->in[k]) + (size_t)i * chunk, chunk);
            o += chunk;
        }
    return true;
}

void kg__backward_concat(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    int ax = nd->p.concat.axis;
    int64_t start = 0;
    for (int k = 0; k < nd->n_in; k++) {
        gin[k] = kg_slice(g, ax, start, nd->in[k]->shape[ax]);
        start += nd->in[k]->shape[ax];
    }
}

kg_tensor *kg_concat(kg_tensor *const *ts, int n, int axis)
{
    if (!ts || n < 1)
        return NULL; /* without a tensor there is no context to report to */
    int ax = axis;
    if (axis < 0 && ts[0])
        ax = axis + ts[0]->ndim; /* a NULL input is reported by kg__op, on any input's context */
    kg_opparams p = {.concat = {.axis = ax, .user_axis = axis}};
    return kg__op(KG_OP_CONCAT, n, ts, &p);
}
