/* linalg.c — batched matmul and the structured ops that make Kron-LoRA cheap: kron (the
 * materialized Kronecker product), lowrank_linear (x·(B1·B2)ᵀ) and kron_linear
 * (x·(A ⊗ B1·B2)ᵀ). The last two never form their d_out × d_in matrix, forward or backward
 * (docs/kron-lora.md derives the contractions).
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <stdatomic.h>


/* kg_cpu_sgemm, with its one failure (no memory for the portable kernel's packing buffer)
 * reported as the op's error rather than a result left unfilled. */
static bool gemm(const kg_opcall *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    if (kg_cpu_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc))
        return true;
    return kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for the GEMM's packing "
                        "buffer", kg_op_table[c->op].name);
}

/* ---- matmul: p.matmul.trans_a, trans_b ------------------------------------------------ */

/* The last two dims of t as (rows, cols) of op(t). */
static void mat_dims(const kg_tensor *t, bool trans, int64_t *rows, int64_t *cols)
{
    int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    *rows = trans ? c : r;
    *cols = trans ? r : c;
}

bool kg__shape_matmul(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *a = c->in[0], *b = c->in[1];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !kg__want_dtype(c, 1, KG_DTYPE_F32))
        return false;
    if (a->ndim < 2 || b->ndim < 2)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_matmul: %s and %s; expected at least 2 "
                        "dimensions each", KG_DESC(a), KG_DESC(b));
    int64_t m, ka, kb, n;
    mat_dims(a, c->p.matmul.trans_a, &m, &ka);
    mat_dims(b, c->p.matmul.trans_b, &kb, &n);
    /* Batch dims broadcast: compare shapes with the matrix dims set to 1. */
    kg_tensor ba = *a, bb = *b;
    ba.shape[a->ndim - 2] = ba.shape[a->ndim - 1] = 1;
    bb.shape[b->ndim - 2] = bb.shape[b->ndim - 1] = 1;
    if (ka != kb || !kg__broadcast_shape(&ba, &bb, s))
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_matmul: %s%s times %s%s; expected inner "
                        "dimensions to agree and batch dimensions to broadcast", KG_DESC(a),
                        c->p.matmul.trans_a ? "ᵀ" : "", KG_DESC(b), c->p.matmul.trans_b ? "ᵀ" : "");
    s->dim[s->ndim - 2] = m;
    s->dim[s->ndim - 1] = n;
    return true;
}

/* Offset of batch index `bi` (flat over out's batch dims) in t, through t's strides: a
 * broadcast dim (size 1) or an expanded one (stride 0) stays at the same matrix. */
static int64_t batch_offset(const kg_tensor *t, const kg_tensor *out, int64_t bi)
{
    int64_t off = 0;
    for (int d = out->ndim - 3, k = t->ndim - 3; d >= 0; d--, k--) {
        int64_t idx = bi % out->shape[d];
        bi /= out->shape[d];
        if (k >= 0 && t->shape[k] != 1)
            off += idx * t->stride[k];
    }
    return off;
}

typedef struct batch_job {
    const kg_opcall *c;
    bool ta, tb;
    int64_t m, n, k, lda, ldb;
    const float *A, *B;
    float *C;
    atomic_bool failed;
} batch_job;

static void matmul_batch(void *arg, int64_t lo, int64_t hi)
{
    batch_job *j = arg;
    const kg_tensor *a = j->c->in[0], *b = j->c->in[1], *o = j->c->out;
    for (int64_t bi = lo; bi < hi; bi++)
        if (!kg_cpu_sgemm(j->ta, j->tb, j->m, j->n, j->k, 1.0f, j->A + batch_offset(a, o, bi),
                          j->lda, j->B + batch_offset(b, o, bi), j->ldb, 0.0f,
                          j->C + bi * j->m * j->n, j->n))
            atomic_store(&j->failed, true);
}

bool kg__cpu_matmul(const kg_opcall *c)
{
    const kg_tensor *a = c->in[0], *b = c->in[1], *o = c->out;
    int64_t m, k, n, batch = 1, lda, ldb;
    for (int d = 0; d < o->ndim - 2; d++)
        batch *= o->shape[d];
    mat_dims(a, c->p.matmul.trans_a, &m, &k);
    mat_dims(b, c->p.matmul.trans_b, &k, &n);
    if (m == 0 || n == 0)
        return true;
    /* Inputs are read through their strides (KG_OPF_MATRIX): a head split off by a transpose,
     * a slice of the KV cache or a key head expanded over its query group is read in place;
     * a matrix stored transposed flips its GEMM flag. */
    bool fa, fb;
    kg__matrix_view(a, &fa, &lda);
    kg__matrix_view(b, &fb, &ldb);
    bool ta = c->p.matmul.trans_a != fa, tb = c->p.matmul.trans_b != fb;
    const float *A = kg_cpu_f32(a), *B = kg_cpu_f32(b);
    float *C = kg_cpu_f32(o);
    /* A stack of rows times one matrix (every linear layer) is a single GEMM; one row times a
     * weight stored [n, k] (decoding one token) is a matrix-vector product. */
    if (b->ndim == 2 && !c->p.matmul.trans_a && kg_tensor_is_contiguous(a) &&
        kg_tensor_numel(a) == batch * m * k) {
        if (batch * m == 1 && tb && ldb == k && kg_cpu_gemv_supports(KG_DTYPE_F32)) {
            kg_cpu_gemv(KG_DTYPE_F32, B, n, k, A, C);
            return true;
        }
        return gemm(c, false, tb, batch * m, n, k, A, lda, B, ldb, C, n);
    }
    /* A batch of products (attention's heads): one per thread at a time, each on its thread,
     * rather than each split over the threads (a wake-up per small product). */
    batch_job j = {c, ta, tb, m, n, k, lda, ldb, A, B, C, false};
    kg_cpu_parallel_for(batch, 1, matmul_batch, &j);
    return !atomic_load(&j.failed) || kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_matmul: out of host "
                                                   "memory for the GEMM's packing buffer");
}

void kg__backward_matmul(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* Only the gradients asked for: a frozen weight's (every base layer under an adapter)
     * would be a third of the step's GEMM work, thrown away. */
    kg_tensor *a = n->in[0], *b = n->in[1];
    bool ta = n->p.matmul.trans_a, tb = n->p.matmul.trans_b;
    kg_tensor *da = NULL, *db = NULL;
    bool want_a = a->requires_grad, want_b = b->requires_grad;
    if (!ta && a->ndim > 2 && b->ndim == 2) {
        /* Rows times a weight (every linear layer): the weight's gradient is one GEMM over all
         * rows, not a batch of per-row products summed afterwards. */
        int64_t k = a->shape[a->ndim - 1], cols = g->shape[g->ndim - 1];
        kg_tensor *a2 = kg_reshape(a, 2, (int64_t[]){-1, k});
        kg_tensor *g2 = kg_reshape(g, 2, (int64_t[]){-1, cols});
        gin[0] = KG_GRAD(n, 0, kg_matmul_t(g, b, false, !tb));
        gin[1] = KG_GRAD(n, 1, tb ? kg_matmul_t(g2, a2, true, false)
                                  : kg_matmul_t(a2, g2, true, false));
        return;
    }
    /* C = op(A)·op(B); dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G, transposed back where needed. */
    if (want_a)
        da = !ta ? kg_matmul_t(g, b, false, !tb) : kg_matmul_t(b, g, tb, true);
    if (want_b)
        db = !tb ? kg_matmul_t(a, g, !ta, false) : kg_matmul_t(g, a, true, ta);
    gin[0] = want_a ? kg__sum_to(da, a->ndim, a->shape) : NULL;
    gin[1] = want_b ? kg__sum_to(db, b->ndim, b->shape) : NULL;
}

kg_tensor *kg_matmul_t(kg_tensor *a, kg_tensor *b, bool trans_a, bool trans_b)
{
    kg_opparams p = {.matmul = {.trans_a = trans_a, .trans_b = trans_b}};
    return kg__op(KG_OP_MATMUL, 2, (kg_tensor *[]){a, b}, &p);
}

kg_tensor *kg_matmul(kg_tensor *a, kg_tensor *b) { return kg_matmul_t(a, b, false, false); }

/* ---- kron: (m, n) ⊗ (p, q) → (m·p, n·q), out[i·p + k, j·q + l] = a[i, j] · b[k, l] ---------- */

static bool want_matrices(const kg_opcall *c, int first, int count)
{
    for (int i = first; i < first + count; i++) {
        if (!kg__want_dtype(c, i, KG_DTYPE_F32))
            return false;
        if (c->in[i]->ndim != 2)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: input %d is %s; expected a matrix",
                            kg_op_table[c->op].name, i, KG_DESC(c->in[i]));
    }
    return true;
}

bool kg__shape_kron(const kg_opcall *c, kg_shape *s)
{
    if (!want_matrices(c, 0, 2))
        return false;
    const kg_tensor *a = c->in[0], *b = c->in[1];
    *s = (kg_shape){.dtype = KG_DTYPE_F32, .ndim = 2};
    if (!kg__mul(a->shape[0], b->shape[0], &s->dim[0]) ||
        !kg__mul(a->shape[1], b->shape[1], &s->dim[1]))
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_kron: %s ⊗ %s has more than 2^59 rows or "
                            "columns", KG_DESC(a), KG_DESC(b));
    return true;
}

bool kg__cpu_kron(const kg_opcall *c)
{
    const kg_tensor *a = c->in[0], *b = c->in[1];
    int64_t m = a->shape[0], n = a->shape[1], p = b->shape[0], q = b->shape[1];
    const float *A = kg_cpu_f32(a), *B = kg_cpu_f32(b);
    float *O = kg_cpu_f32(c->out);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < p; k++)
            for (int64_t j = 0; j < n; j++)
                for (int64_t l = 0; l < q; l++)
                    O[(i * p + k) * (n * q) + j * q + l] = A[i * n + j] * B[k * q + l];
    return true;
}

void kg__backward_kron(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *a = nd->in[0], *b = nd->in[1];
    int64_t m = a->shape[0], n = a->shape[1], p = b->shape[0], q = b->shape[1];
    /* Regroup G (m·p, n·q) as Gr (m·n, p·q) with Gr[(i,j), (k,l)] = G[i·p+k, j·q+l]; then
     * dA = Gr·vec(B) and dB = Grᵀ·vec(A). */
    kg_tensor *g4 = kg_reshape(g, 4, (int64_t[]){m, p, n, q});
    kg_tensor *gr = kg_reshape(kg_permute(g4, (int[]){0, 2, 1, 3}), 2, (int64_t[]){m * n, p * q});
    kg_tensor *vb = kg_reshape(b, 2, (int64_t[]){p * q, 1});
    kg_tensor *va = kg_reshape(a, 2, (int64_t[]){m * n, 1});
    gin[0] = KG_GRAD(nd, 0, kg_reshape(kg_matmul(gr, vb), 2, a->shape));
    gin[1] = KG_GRAD(nd, 1, kg_reshape(kg_matmul_t(gr, va, true, false), 2, b->shape));
}

kg_tensor *kg_kron(kg_tensor *a, kg_tensor *b)
{
    return kg__op(KG_OP_KRON, 2, (kg_tensor *[]){a, b}, NULL);
}

/* The (N, d_in) matrix behind x (..., d_in), as kernels see it. */
static int64_t rows_of(const kg_tensor *x)
{
    int64_t d = x->shape[x->ndim - 1];
    return d ? kg_tensor_numel(x) / d : 0;
}

static kg_tensor *as_rows(kg_tensor *x, int64_t cols)
{
    return kg_reshape(x, 2, (int64_t[]){-1, cols});
}

/* C (M, N) = A (M, K)·Bᵀ, B stored [N, K], all contiguous. A few rows (an adapter's factors
 * while decoding one token: 1 row, or dA1 = 4 for Kron-LoRA) are that many matrix-vector
 * products: the GEMM's packing and thread wake-ups cost far more than their arithmetic (a LoRA-8
 * product took 7.6 us a call on SmolLM2 that way, a fifth of a decode step). A short K (the
 * rank: B is the up-projection) is a plain loop: the vector kernel's per-row sum would cost
 * more than the row's few products. */
static bool gemm_rows_bt(const kg_opcall *c, int64_t M, int64_t N, int64_t K, const float *A,
                         const float *B, float *C)
{
    if (M > 4)
        return gemm(c, false, true, M, N, K, A, K, B, K, C, N);
    for (int64_t i = 0; i < M; i++) {
        const float *a = A + i * K;
        float *y = C + i * N;
        if (K >= 32 && kg_cpu_gemv_supports(KG_DTYPE_F32)) {
            kg_cpu_gemv(KG_DTYPE_F32, B, N, K, a, y);
            continue;
        }
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc += B[n * K + k] * a[k];
            y[n] = acc;
        }
    }
    return true;
}

/* ---- lowrank_linear: x (N, d_in), B1 (d_out, R), B2 (R, d_in) → x·B2ᵀ·B1ᵀ (N, d_out) ------ */

bool kg__shape_lowrank_linear(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *b1 = c->in[1], *b2 = c->in[2];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !want_matrices(c, 1, 2))
        return false;
    if (x->ndim < 1 || b1->shape[1] != b2->shape[0] || x->shape[x->ndim - 1] != b2->shape[1])
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_lowrank_linear: x %s, B1 %s, B2 %s; expected "
                        "x (..., d_in), B1 (d_out, R), B2 (R, d_in)", KG_DESC(x), KG_DESC(b1),
                        KG_DESC(b2));
    kg__shape_of(x, s);
    s->dim[s->ndim - 1] = b1->shape[0];
    return true;
}

bool kg__cpu_lowrank_linear(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *b1 = c->in[1], *b2 = c->in[2];
    int64_t n = rows_of(x), din = b2->shape[1], r = b2->shape[0], dout = b1->shape[0];
    float *t = kg_cpu_scratch(c, sizeof(float) * (size_t)(n * r)); /* (N, R): the only one */
    if (!t)
        return false;
    bool ok = gemm_rows_bt(c, n, r, din, kg_cpu_f32(x), kg_cpu_f32(b2), t) &&
              gemm_rows_bt(c, n, dout, r, t, kg_cpu_f32(b1), kg_cpu_f32(c->out));
    kg_cpu_scratch_free(c, t, sizeof(float) * (size_t)(n * r));
    return ok;
}

void kg__backward_lowrank_linear(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    kg_tensor *x = nd->in[0], *b1 = nd->in[1], *b2 = nd->in[2];
    kg_tensor *x2 = as_rows(x, b2->shape[1]), *g2 = as_rows(g, b1->shape[0]);
    kg_tensor *t = kg_matmul_t(x2, b2, false, true); /* (N, R) */
    kg_tensor *u = kg_matmul(g2, b1);                /* (N, R) */
    gin[0] = KG_GRAD(nd, 0, kg_reshape(kg_matmul(u, b2), x->ndim, x->shape));
    gin[1] = KG_GRAD(nd, 1, kg_matmul_t(g2, t, true, false)); /* (d_out, R) */
    gin[2] = KG_GRAD(nd, 2, kg_matmul_t(u, x2, true, false)); /* (R, d_in) */
}

kg_tensor *kg_lowrank_linear(kg_tensor *x, kg_tensor *b1, kg_tensor *b2)
{
    return kg__op(KG_OP_LOWRANK_LINEAR, 3, (kg_tensor *[]){x, b1, b2}, NULL);
}

/* ---- kron_linear: x (N, dA1·dB1), A (dA2, dA1), B1 (dB2, R), B2 (R, dB1) --------------------
 * Per token, X = x as (dA1, dB1) and Y = A·X·B2ᵀ·B1ᵀ (dA2, dB2), y = Y flattened:
 *   T1 = X·B2ᵀ (one GEMM over all N·dA1 rows), T2 = A·T1 (tiny, per token),
 *   Y = T2·B1ᵀ (one GEMM over all N·dA2 rows). */

bool kg__shape_kron_linear(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *a = c->in[1], *b1 = c->in[2], *b2 = c->in[3];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32) || !want_matrices(c, 1, 3))
        return false;
    int64_t d_in, d_out;
    bool sizes_ok = kg__mul(a->shape[1], b2->shape[1], &d_in) &&
                    kg__mul(a->shape[0], b1->shape[0], &d_out);
    if (x->ndim < 1 || b1->shape[1] != b2->shape[0] || !sizes_ok ||
        x->shape[x->ndim - 1] != d_in)
        return kg_set_error(c->ctx, sizes_ok ? KG_ERR_SHAPE : KG_ERR_RANGE,
                            "kg_kron_linear: x %s, A %s, B1 %s, B2 %s; expected x (..., dA1·dB1), "
                            "A (dA2, dA1), B1 (dB2, R), B2 (R, dB1)%s", KG_DESC(x), KG_DESC(a),
                            KG_DESC(b1), KG_DESC(b2),
                            sizes_ok ? "" : " with dA1·dB1 and dA2·dB2 at most 2^59");
    kg__shape_of(x, s);
    s->dim[s->ndim - 1] = d_out;
    return true;
}

typedef struct mix_job {
    const float *A, *t1;
    float *t2;
    int64_t da2, da1, r;
} mix_job;

/* T2[n] = A · T1[n] for tokens [lo, hi). */
static void mix_tokens(void *arg, int64_t lo, int64_t hi)
{
    const mix_job *j = arg;
    for (int64_t n = lo; n < hi; n++) {
        const float *t1 = j->t1 + n * j->da1 * j->r;
        float *t2 = j->t2 + n * j->da2 * j->r;
        for (int64_t i = 0; i < j->da2; i++)
            for (int64_t q = 0; q < j->r; q++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < j->da1; k++)
                    acc += j->A[i * j->da1 + k] * t1[k * j->r + q];
                t2[i * j->r + q] = acc;
            }
    }
}

bool kg__cpu_kron_linear(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *a = c->in[1], *b1 = c->in[2], *b2 = c->in[3];
    int64_t n = rows_of(x), da2 = a->shape[0], da1 = a->shape[1];
    int64_t db2 = b1->shape[0], r = b1->shape[1], db1 = b2->shape[1];
    size_t bytes = sizeof(float) * (size_t)(n * (da1 + da2) * r);
    float *t1 = kg_cpu_scratch(c, bytes); /* T1 (N·dA1, R) and T2 (N·dA2, R) */
    if (!t1)
        return false;
    float *t2 = t1 + n * da1 * r;
    bool ok = gemm_rows_bt(c, n * da1, r, db1, kg_cpu_f32(x), kg_cpu_f32(b2), t1);
    if (ok) {
        mix_job j = {kg_cpu_f32(a), t1, t2, da2, da1, r};
        kg_cpu_parallel_for(n, 1 + 4096 / (da1 * da2 * r + 1), mix_tokens, &j);
        ok = gemm_rows_bt(c, n * da2, db2, r, t2, kg_cpu_f32(b1), kg_cpu_f32(c->out));
    }
    kg_cpu_scratch_free(c, t1, bytes);
    return ok;
}

/* (N, P, Q) as rows (N·Q, P): the per-token factor A then multiplies all tokens in one GEMM. */
static kg_tensor *tokens_as_rows(kg_tensor *t, int64_t p, int64_t q)
{
    kg_tensor *t3 = kg_reshape(t, 3, (int64_t[]){-1, p, q});
    return kg_reshape(kg_transpose(t3, 1, 2), 2, (int64_t[]){-1, p});
}

/* The inverse: rows (N·Q, P) back to (N·P, Q). */
static kg_tensor *rows_as_tokens(kg_tensor *t, int64_t p, int64_t q)
{
    kg_tensor *t3 = kg_reshape(t, 3, (int64_t[]){-1, q, p});
    return kg_reshape(kg_transpose(t3, 1, 2), 2, (int64_t[]){-1, q});
}

void kg__backward_kron_linear(const kg_node *nd, kg_tensor *g, kg_tensor **gin)
{
    /* With G = dL/dY per token (docs/kron-lora.md): U = G·B1, dB1 = Σ Gᵀ·T2, dA = Σ U·T1ᵀ,
     * V = Aᵀ·U, dB2 = Σ Vᵀ·X, dX = V·B2. Every operand is at most (N·dA, max(R, dB)).
     * The products with the small A run over all tokens at once, on the (N·R, dA) layout
     * ("p" below): a batch of N tiny GEMMs costs far more in calls than in arithmetic. */
    kg_tensor *x = nd->in[0], *a = nd->in[1], *b1 = nd->in[2], *b2 = nd->in[3];
    int64_t da2 = a->shape[0], da1 = a->shape[1], db2 = b1->shape[0], r = b1->shape[1];
    int64_t db1 = b2->shape[1];
    kg_tensor *x3 = as_rows(x, db1);                                   /* (N·dA1, dB1) */
    kg_tensor *t1p = tokens_as_rows(kg_matmul_t(x3, b2, false, true), da1, r); /* (N·R, dA1) */
    kg_tensor *t2 = rows_as_tokens(kg_matmul_t(t1p, a, false, true), da2, r);  /* (N·dA2, R) */
    kg_tensor *g2 = as_rows(g, db2);                                   /* (N·dA2, dB2) */
    kg_tensor *up = tokens_as_rows(kg_matmul(g2, b1), da2, r);         /* (N·R, dA2) */
    kg_tensor *v = rows_as_tokens(kg_matmul(up, a), da1, r);           /* (N·dA1, R) */
    gin[0] = KG_GRAD(nd, 0, kg_reshape(kg_matmul(v, b2), x->ndim, x->shape));
    gin[1] = KG_GRAD(nd, 1, kg_matmul_t(up, t1p, true, false));        /* (dA2, dA1) */
    gin[2] = KG_GRAD(nd, 2, kg_matmul_t(g2, t2, true, false));         /* (dB2, R) */
    gin[3] = KG_GRAD(nd, 3, kg_matmul_t(v, x3, true, false));          /* (R, dB1) */
}

kg_tensor *kg_kron_linear(kg_tensor *x, kg_tensor *a, kg_tensor *b1, kg_tensor *b2)
{
    return kg__op(KG_OP_KRON_LINEAR, 4, (kg_tensor *[]){x, a, b1, b2}, NULL);
}
