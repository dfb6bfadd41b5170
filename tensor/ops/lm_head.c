/* lm_head.c — the LM head fused with its log-softmax: each row's log-probability of its target,
 * log softmax(x·Wᵀ)[i, t_i], computed a block of rows at a time so that the (N, V) logits never
 * exist. As Liger Kernel's fused linear cross entropy does, the forward also forms the input's
 * gradient while each block's logits are at hand: dy_i/dx_i = (onehot(t_i) - p_i)·W, so the
 * backward of x is a per-row scale, and the LM head costs two GEMM passes, not three. W's own
 * gradient (a trained head) recomputes each block's logits in the backward. A frozen head may
 * be stored in bf16, f16 or a block dtype: its two products then run as matmul_q's do
 * (kg_cpu_gemm_q: vdpbf16ps for bf16). The rows' max and exp passes are cpu/exp_rows.c's
 * (AVX-512 where the CPU has it).
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>
#include <string.h>

/* Logits per row block: 16 Mi floats (64 MiB; 341 rows of a 49,152-token vocabulary). Each
 * block's two products pack all of W, so the block's rows are what that packing is spread
 * over: SmolLM2's 1,016 rows take the head in 0.41 s in bf16 with 3 blocks, and 0.59 s with 12
 * blocks of 4 Mi (bench_gemm --lm-head). The N×V logits are still never formed. Tests set a
 * smaller budget (kg_cpu_lm_head_block) to reach several blocks with small tensors. */
#define LP_BLOCK_FLOATS (1 << 24)

static int64_t lp_block_floats = LP_BLOCK_FLOATS;

void kg_cpu_lm_head_block(int64_t floats)
{
    lp_block_floats = floats > 0 ? floats : LP_BLOCK_FLOATS;
}

/* Rows per block: at least 16, and the blocks as even as the budget allows (1,016 rows in
 * three blocks of 339, not 341, 341 and 334). */
static int64_t lp_block_rows(int64_t N, int64_t V)
{
    int64_t nb = lp_block_floats / V;
    nb = nb < 16 ? 16 : nb;
    if (nb >= N)
        return N;
    int64_t blocks = (N + nb - 1) / nb;
    return (N + blocks - 1) / blocks;
}

/* The forward's output, flat: N log-probabilities, then (with p.classes.weight, set when x
 * wants a gradient) the (N, C) unit gradients dy_i/dx_i. */
bool kg__shape_linear_log_prob(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *w = c->in[1], *t = c->in[2];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 2, KG_DTYPE_I32))
        return false;
    /* A frozen W may be stored in any weight dtype (its products then run as matmul_q's); W's
     * own gradient (the _grad op: a trained head) needs it in f32. */
    if ((c->op == KG_OP_LINEAR_LOG_PROB_GRAD || w->requires_grad) &&
        !kg__want_dtype(c, 1, KG_DTYPE_F32))
        return false;
    if (w->dtype == KG_DTYPE_I32)
        return kg_set_error(c->ctx, KG_ERR_DTYPE, "kg_linear_log_prob: weight is %s; expected a "
                            "float or quantized dtype", KG_DESC(w));
    if (x->ndim != 2 || w->ndim != 2 || t->ndim != 1 || w->shape[1] != x->shape[1] ||
        t->shape[0] != x->shape[0] || w->shape[0] < 1)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_linear_log_prob: x %s, weight %s, targets "
                            "%s; expected x (N, C), weight (V, C) with V >= 1 and targets (N)",
                            KG_DESC(x), KG_DESC(w), KG_DESC(t));
    int64_t N = x->shape[0];
    *s = (kg_shape){.dtype = KG_DTYPE_F32, .ndim = 1,
                    .dim = {N * (c->op == KG_OP_LINEAR_LOG_PROB && c->p.classes.weight
                                     ? 1 + x->shape[1] : 1)}};
    return true;
}

/* One block of rows: z (rows, V) their logits. Each row's log-sum-exp; then its log-probability
 * (forward), and where asked z turned in place into g_i·(onehot(t_i) - softmax(z_i)). */
typedef struct lp_job {
    const kg_opcall *c;
    float *z;
    int64_t r0, V;
    float *y;       /* forward: (N) log-probabilities */
    const float *g; /* backward: (N) the output's gradient; forward: NULL (g = 1) */
    bool grad;      /* turn z into its gradient */
    kg_exp_path exp; /* the row passes' implementation (cpu/exp_rows.c) */
} lp_job;

static void lp_rows(void *arg, int64_t lo, int64_t hi)
{
    lp_job *j = arg;
    const int32_t *t = kg_cpu_i32(j->c->in[2]) + j->r0;
    int32_t ignore = j->c->p.classes.ignore_index;
    for (int64_t i = lo; i < hi; i++) {
        float *z = j->z + i * j->V;
        if (t[i] == ignore) {
            if (j->y)
                j->y[j->r0 + i] = 0.0f;
            if (j->grad)
                memset(z, 0, sizeof(float) * (size_t)j->V);
            continue;
        }
        float m = kg_cpu_row_max(j->exp, z, j->V);
        float lse = m + logf(kg_cpu_sum_exp(j->exp, z, j->V, m));
        if (j->y)
            j->y[j->r0 + i] = z[t[i]] - lse;
        if (!j->grad)
            continue;
        float g = j->g ? j->g[j->r0 + i] : 1.0f;
        kg_cpu_scale_exp(j->exp, z, j->V, lse, -g);
        z[t[i]] += g;
    }
}

/* Over blocks of rows: their logits Z = X_b·Wᵀ, the rows pass, then (unit gradients) U_b =
 * dZ·W or (W's gradient) dW += dZᵀ·X_b. */
static bool lp_blocks(const kg_opcall *c, float *y, const float *g, float *u, float *dw)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    int64_t N = x->shape[0], C = x->shape[1], V = w->shape[0], nb = lp_block_rows(N, V);
    const float *X = kg_cpu_f32(x);
    size_t bytes = sizeof(float) * (size_t)(nb * V);
    float *z = kg_cpu_scratch(c, bytes);
    bool ok = z != NULL;
    lp_job j = {.c = c, .z = z, .V = V, .y = y, .g = g, .grad = u || dw,
                .exp = kg_cpu_exp_path()};
    for (int64_t r0 = 0; ok && r0 < N; r0 += nb) {
        int64_t rows = N - r0 < nb ? N - r0 : nb;
        j.r0 = r0;
        if (!(ok = kg_cpu_gemm_q(c, w, true, rows, X + r0 * C, z)))
            break;
        kg_cpu_parallel_for(rows, 1 + 65536 / V, lp_rows, &j);
        if (u)
            ok = kg_cpu_gemm_q(c, w, false, rows, z, u + r0 * C);
        else if (dw && !(ok = kg_cpu_sgemm(true, false, V, C, rows, 1.0f, z, V, X + r0 * C, C,
                                           r0 ? 1.0f : 0.0f, dw, C)))
            kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for the GEMM's "
                         "packing buffer", kg_op_table[c->op].name);
    }
    if (z)
        kg_cpu_scratch_free(c, z, bytes);
    return ok;
}

bool kg__cpu_linear_log_prob(const kg_opcall *c)
{
    int64_t N = c->in[0]->shape[0];
    if (!kg__check_targets(c, kg_cpu_i32(c->in[2]), N, c->in[1]->shape[0]))
        return false;
    float *out = kg_cpu_f32(c->out);
    return lp_blocks(c, out, NULL, c->p.classes.weight ? out + N : NULL, NULL);
}

/* ---- W's gradient: x, W, targets, the output's gradient g (N) → dW (V, C) --------------- */

bool kg__shape_linear_log_prob_grad(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    if (!kg__shape_linear_log_prob(c, s)) /* x, W and targets as the forward took them */
        return false;
    if (!kg__want_dtype(c, 3, KG_DTYPE_F32) || c->in[3]->ndim != 1 ||
        c->in[3]->shape[0] != x->shape[0])
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_linear_log_prob (backward): the gradient "
                            "is %s; expected (%lld)", KG_DESC(c->in[3]), (long long)x->shape[0]);
    kg__shape_of(w, s);
    return true;
}

bool kg__cpu_linear_log_prob_grad(const kg_opcall *c)
{
    if (!kg__check_targets(c, kg_cpu_i32(c->in[2]), c->in[0]->shape[0], c->in[1]->shape[0]))
        return false;
    return lp_blocks(c, NULL, kg_cpu_f32(c->in[3]), NULL, kg_cpu_f32(c->out));
}

void kg__backward_linear_log_prob(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    int64_t N = nd->in[0]->shape[0], C = nd->in[0]->shape[1];
    kg_tensor *gy = kg_slice(g, 0, 0, N); /* the unit gradients' part of g is never used */
    if (nd->in[0]->requires_grad) { /* dx_i = g_i · U_i, U formed by the forward */
        kg_tensor *u = kg_reshape(kg_slice(nd->out, 0, N, N * C), 2, (int64_t[]){N, C});
        gin[0] = kg_mul(u, kg_reshape(gy, 2, (int64_t[]){N, 1}));
    }
    if (nd->in[1]->requires_grad) {
        kg_tensor *in[4] = {nd->in[0], nd->in[1], nd->in[2], gy};
        gin[1] = kg__op(KG_OP_LINEAR_LOG_PROB_GRAD, 4, in, &nd->p);
    }
}

kg_tensor *kg_linear_log_prob(kg_tensor *x, kg_tensor *weight, kg_tensor *targets,
                              int32_t ignore_index)
{
    if (!x)
        return NULL;
    /* the unit gradients only where the backward will ask for them */
    kg_opparams p = {.classes = {.ignore_index = ignore_index,
                                 .weight = x->requires_grad && !x->ctx->no_grad}};
    kg_tensor *out = kg__op(KG_OP_LINEAR_LOG_PROB, 3, (kg_tensor *[]){x, weight, targets}, &p);
    return out ? kg_slice(out, 0, 0, x->shape[0]) : NULL;
}
