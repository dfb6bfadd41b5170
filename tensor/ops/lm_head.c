/* lm_head.c — the LM head fused with its log-softmax: each row's log-probability of its target,
 * log softmax(x·Wᵀ)[i, t_i], computed over the vocabulary in chunks so that the (N, V) logits
 * never exist, and a backward that recomputes each chunk's logits (as Liger Kernel's fused
 * linear cross entropy and Apple's cut-cross-entropy do).
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>
#include <string.h>

/* Vocabulary columns per GEMM: N × 1024 logits (4 MiB at N = 1024) stay in the cache between
 * the product and the pass over them. */
#define LP_CHUNK 1024
/* Lanes of the row sums: a fixed-width inner loop the compiler turns into vector code. */
#define LP_LANES 16

/* e^x for x <= 0 to ~2 ulp (Cephes' polynomial on x - n·ln 2, times 2^n): libm's expf is a call
 * per element, which does not vectorize and costs more than the GEMM's share per logit. */
static inline float lp_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = floorf(x * 1.44269504f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } two = {.i = ((int32_t)n + 127) << 23};
    return p * two.f;
}

/* Σ_k e^(z[k] - m) over n entries. */
static float lp_sum_exp(const float *z, int64_t n, float m)
{
    float acc[LP_LANES] = {0};
    int64_t k = 0;
    for (; k + LP_LANES <= n; k += LP_LANES)
        for (int j = 0; j < LP_LANES; j++)
            acc[j] += lp_exp(z[k + j] - m);
    float s = 0.0f;
    for (; k < n; k++)
        s += lp_exp(z[k] - m);
    for (int j = 0; j < LP_LANES; j++)
        s += acc[j];
    return s;
}

static float lp_max(const float *z, int64_t n)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; k++)
        m = z[k] > m ? z[k] : m;
    return m;
}

bool kg__shape_linear_log_prob(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *w = c->in[1], *t = c->in[2];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_F32) ||
        !kg__want_dtype(c, 2, KG_DTYPE_I32))
        return false;
    if (x->ndim != 2 || w->ndim != 2 || t->ndim != 1 || w->shape[1] != x->shape[1] ||
        t->shape[0] != x->shape[0] || w->shape[0] < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_linear_log_prob: x %s, weight %s, targets "
                            "%s; expected x (N, C), weight (V, C) with V >= 1 and targets (N)",
                            KG_DESC(x), KG_DESC(w), KG_DESC(t));
    *s = (kg_shape){.dtype = KG_DTYPE_F32, .ndim = 1, .dim = {x->shape[0]}};
    return true;
}

/* One chunk of the vocabulary at a time: Z = X·W_cᵀ (N, vc), then each row's running max and
 * Σ e^(z - max) updated (online log-sum-exp), and the target's logit picked where it falls. */
typedef struct lp_job {
    const kg_opcall *c;
    const float *z;       /* (N, vc) this chunk's logits, or their gradient in place */
    int64_t v0, vc;
    float *mx, *sum, *zt; /* (N) running max, sum, and the target's logit */
    const float *lse, *g; /* backward: each row's log-sum-exp and the output's gradient */
} lp_job;

static void lp_rows_forward(void *arg, int64_t lo, int64_t hi)
{
    lp_job *j = arg;
    const int32_t *t = kg_cpu_i32(j->c->in[2]);
    for (int64_t i = lo; i < hi; i++) {
        const float *z = j->z + i * j->vc;
        float m = lp_max(z, j->vc);
        if (m > j->mx[i]) { /* rescale what the earlier chunks summed to the new max */
            j->sum[i] = j->sum[i] * lp_exp(j->mx[i] - m);
            j->mx[i] = m;
        }
        j->sum[i] += lp_sum_exp(z, j->vc, j->mx[i]);
        if (t[i] >= j->v0 && t[i] < j->v0 + j->vc)
            j->zt[i] = z[t[i] - j->v0];
    }
}

bool kg__cpu_linear_log_prob(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    int64_t N = x->shape[0], C = x->shape[1], V = w->shape[0];
    int32_t ignore = c->p.classes.ignore_index;
    const int32_t *t = kg_cpu_i32(c->in[2]);
    if (!kg__check_targets(c, t, N, V))
        return false;
    int64_t vc_max = V < LP_CHUNK ? V : LP_CHUNK;
    size_t zbytes = sizeof(float) * (size_t)(N * vc_max), sbytes = sizeof(float) * (size_t)(3 * N);
    float *z = kg_cpu_scratch(c, zbytes), *st = kg_cpu_scratch(c, sbytes);
    bool ok = z && st;
    lp_job j = {.c = c, .z = z, .mx = st, .sum = st + N, .zt = st + 2 * N};
    for (int64_t i = 0; ok && i < N; i++)
        j.mx[i] = -INFINITY, j.sum[i] = 0.0f, j.zt[i] = 0.0f;
    for (int64_t v0 = 0; ok && v0 < V; v0 += LP_CHUNK) {
        j.v0 = v0;
        j.vc = V - v0 < LP_CHUNK ? V - v0 : LP_CHUNK;
        ok = kg_cpu_sgemm(false, true, N, j.vc, C, 1.0f, kg_cpu_f32(x), C,
                          kg_cpu_f32(w) + v0 * C, C, 0.0f, z, j.vc);
        if (ok)
            kg_cpu_parallel_for(N, 1 + 65536 / j.vc, lp_rows_forward, &j);
    }
    float *y = kg_cpu_f32(c->out);
    for (int64_t i = 0; ok && i < N; i++)
        y[i] = t[i] == ignore ? 0.0f : j.zt[i] - (j.mx[i] + logf(j.sum[i]));
    if (z)
        kg_cpu_scratch_free(c, z, zbytes);
    if (st)
        kg_cpu_scratch_free(c, st, sbytes);
    return ok;
}

/* ---- the backward: x, W, targets, the forward's output y, its gradient g → dx or dW ------ */

bool kg__shape_linear_log_prob_grad(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    if (!kg__shape_linear_log_prob(c, s)) /* x, W and targets as the forward took them */
        return false;
    for (int i = 3; i < 5; i++)
        if (!kg__want_dtype(c, i, KG_DTYPE_F32) || c->in[i]->ndim != 1 ||
            c->in[i]->shape[0] != x->shape[0])
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_linear_log_prob (backward): input %d "
                                "is %s; expected (%lld)", i, KG_DESC(c->in[i]),
                                (long long)x->shape[0]);
    kg__shape_of(c->p.classes.weight ? w : x, s);
    return true;
}

/* dz_ik = g_i·([k = t_i] - e^(z_ik - lse_i)), in place over the chunk's logits; 0 on rows whose
 * target is the ignore index. */
static void lp_rows_backward(void *arg, int64_t lo, int64_t hi)
{
    lp_job *j = arg;
    const int32_t *t = kg_cpu_i32(j->c->in[2]);
    float *zc = (float *)j->z;
    for (int64_t i = lo; i < hi; i++) {
        float *z = zc + i * j->vc, g = j->g[i], l = j->lse[i];
        if (t[i] == j->c->p.classes.ignore_index) {
            memset(z, 0, sizeof(float) * (size_t)j->vc);
            continue;
        }
        for (int64_t k = 0; k < j->vc; k++)
            z[k] = -g * lp_exp(z[k] - l);
        if (t[i] >= j->v0 && t[i] < j->v0 + j->vc)
            z[t[i] - j->v0] += g;
    }
}

bool kg__cpu_linear_log_prob_grad(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    int64_t N = x->shape[0], C = x->shape[1], V = w->shape[0];
    const int32_t *t = kg_cpu_i32(c->in[2]);
    const float *y = kg_cpu_f32(c->in[3]), *X = kg_cpu_f32(x), *W = kg_cpu_f32(w);
    bool want_w = c->p.classes.weight;
    if (!kg__check_targets(c, t, N, V))
        return false;
    int64_t vc_max = V < LP_CHUNK ? V : LP_CHUNK;
    size_t zbytes = sizeof(float) * (size_t)(N * vc_max), lbytes = sizeof(float) * (size_t)N;
    float *z = kg_cpu_scratch(c, zbytes), *lse = kg_cpu_scratch(c, lbytes);
    bool ok = z && lse;
    /* y_i = z_{i,t_i} - lse_i, so the forward's log-sum-exp is the target's logit minus y: one
     * dot product per row instead of another pass over the vocabulary, or a saved tensor. */
    for (int64_t i = 0; ok && i < N; i++) {
        double d = 0.0;
        if (t[i] != c->p.classes.ignore_index)
            for (int64_t k = 0; k < C; k++)
                d += (double)X[i * C + k] * W[t[i] * C + k];
        lse[i] = (float)d - y[i];
    }
    float *out = kg_cpu_f32(c->out);
    if (ok && !want_w)
        memset(out, 0, sizeof(float) * (size_t)(N * C));
    lp_job j = {.c = c, .z = z, .lse = lse, .g = kg_cpu_f32(c->in[4])};
    for (int64_t v0 = 0; ok && v0 < V; v0 += LP_CHUNK) {
        j.v0 = v0;
        j.vc = V - v0 < LP_CHUNK ? V - v0 : LP_CHUNK;
        ok = kg_cpu_sgemm(false, true, N, j.vc, C, 1.0f, X, C, W + v0 * C, C, 0.0f, z, j.vc);
        if (!ok)
            break;
        kg_cpu_parallel_for(N, 1 + 65536 / j.vc, lp_rows_backward, &j);
        ok = want_w ? kg_cpu_sgemm(true, false, j.vc, C, N, 1.0f, z, j.vc, X, C, 0.0f,
                                   out + v0 * C, C) /* dW_c = dZᵀ·X */
                    : kg_cpu_sgemm(false, false, N, C, j.vc, 1.0f, z, j.vc, W + v0 * C, C, 1.0f,
                                   out, C); /* dX += dZ·W_c */
    }
    if (z)
        kg_cpu_scratch_free(c, z, zbytes);
    if (lse)
        kg_cpu_scratch_free(c, lse, lbytes);
    return ok;
}

static kg_tensor *lp_grad(const kg_node *nd, kg_tensor *g, bool weight)
{
    kg_opparams p = {.classes = {.ignore_index = nd->p.classes.ignore_index, .weight = weight}};
    kg_tensor *in[5] = {nd->in[0], nd->in[1], nd->in[2], nd->out, g};
    return kg__op(KG_OP_LINEAR_LOG_PROB_GRAD, 5, in, &p);
}

void kg__backward_linear_log_prob(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = KG_GRAD(nd, 0, lp_grad(nd, g, false));
    gin[1] = KG_GRAD(nd, 1, lp_grad(nd, g, true));
}

kg_tensor *kg_linear_log_prob(kg_tensor *x, kg_tensor *weight, kg_tensor *targets,
                              int32_t ignore_index)
{
    kg_opparams p = {.classes = {.ignore_index = ignore_index}};
    return kg__op(KG_OP_LINEAR_LOG_PROB, 3, (kg_tensor *[]){x, weight, targets}, &p);
}
