/* gemm_quant.c — the CPU kernel of matmul_q: y = x · Wᵀ (or x · W) with W [N, K] stored in
 * f16, bf16 or a block-quantized dtype. With AVX-512, gemm_packed.c's kernels decode W inside
 * their packing. Without it, W is dequantized one panel of rows at a time into a small scratch
 * buffer (the pool's threads split the rows), and each panel goes through the ordinary SGEMM
 * (kg_cpu_sgemm): the f32 copy of W never exists whole.
 */
#include "cpu.h"
#include "../ops/ops.h"

/* Floats of W dequantized at a time (4 MiB): big enough that each panel's GEMM runs at full
 * speed, small enough to stay in the last-level cache next to x's panel. */
enum { PANEL_FLOATS = 1 << 20 };

typedef struct panel_job {
    const kg_tensor *w;
    int64_t r0;   /* the panel's first row of W */
    float *panel; /* rows [r0, r0 + rows) of W, f32 */
} panel_job;

static void dequantize_part(void *arg, int64_t lo, int64_t hi)
{
    const panel_job *j = arg;
    const kg_tensor *w = j->w;
    kg__dequantize_rows(kg_cpu_raw(w), w->dtype, w->shape[0], w->shape[1], j->r0 + lo, hi - lo,
                        j->panel + lo * w->shape[1]);
}

bool kg_cpu_gemm_q(const kg_opcall *c, const kg_tensor *w, bool trans, int64_t m,
                   const float *X, float *Y)
{
    int64_t n = w->shape[0], k = w->shape[1], in = trans ? k : n, out = trans ? n : k;
    const char *op = kg_op_table[c->op].name;
    if (w->dtype == KG_DTYPE_F32) /* nothing to convert: one GEMM on W itself */
        return kg_cpu_sgemm(false, trans, m, out, in, 1.0f, X, in, kg_cpu_f32(w), k, 0.0f, Y, out) ||
               kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for the GEMM", op);
    kg_gemm_path path = kg_cpu_gemm_w_path(w->dtype);
    if (path != KG_GEMM_PANEL) { /* decoded inside the kernel's packing */
        void *packed = kg_cpu_scratch(c, kg_cpu_gemm_w_scratch());
        if (!packed)
            return false;
        kg_cpu_gemm_w(path, kg_cpu_raw(w), w->dtype, n, k, trans, m, X, Y, packed);
        kg_cpu_scratch_free(c, packed, kg_cpu_gemm_w_scratch());
        return true;
    }
    int64_t rows = PANEL_FLOATS / k > 0 ? PANEL_FLOATS / k : 1;
    if (rows > n)
        rows = n;
    size_t bytes = (size_t)(rows * k) * sizeof(float);
    float *panel = kg_cpu_scratch(c, bytes);
    if (!panel)
        return false;
    bool ok = true;
    for (int64_t r0 = 0; r0 < n && ok; r0 += rows) {
        int64_t nr = n - r0 < rows ? n - r0 : rows;
        panel_job j = {.w = w, .r0 = r0, .panel = panel};
        kg_cpu_parallel_for(nr, 8, dequantize_part, &j);
        if (trans) /* y[:, r0:r0+nr] = x · panelᵀ */
            ok = kg_cpu_sgemm(false, true, m, nr, k, 1.0f, X, k, panel, k, 0.0f, Y + r0, n);
        else /* y += x[:, r0:r0+nr] · panel */
            ok = kg_cpu_sgemm(false, false, m, k, nr, 1.0f, X + r0, n, panel, k,
                              r0 ? 1.0f : 0.0f, Y, k);
    }
    kg_cpu_scratch_free(c, panel, bytes);
    return ok || kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for the GEMM's "
                              "packing buffer", op);
}

bool kg__cpu_matmul_q(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    bool trans = c->p.matmul.trans_b;
    int64_t n = w->shape[0], k = w->shape[1], m = kg_tensor_numel(x) / (trans ? k : n);
    const float *X = kg_cpu_f32(x);
    float *Y = kg_cpu_f32(c->out);
    if (m == 1 && trans && kg_cpu_gemv_supports(w->dtype)) { /* one token: decode (gemv.c) */
        /* Where bf16 weights run on vdpbf16ps, the GEMM multiplies x rounded to bf16: the one
         * row does too, so decoding a token gives what scoring the same row in a batch gives. */
        float *xr = NULL;
        if (w->dtype == KG_DTYPE_BF16 && kg_cpu_gemm_w_path(w->dtype) == KG_GEMM_AVX512_BF16) {
            if (!(xr = kg_cpu_scratch(c, (size_t)k * sizeof *xr)))
                return false;
            for (int64_t i = 0; i < k; i++)
                xr[i] = kg_bf16_to_f32(kg_f32_to_bf16(X[i]));
        }
        kg_cpu_gemv(w->dtype, kg_cpu_raw(w), n, k, xr ? xr : X, Y);
        if (xr)
            kg_cpu_scratch_free(c, xr, (size_t)k * sizeof *xr);
        return true;
    }
    return kg_cpu_gemm_q(c, w, trans, m, X, Y);
}
