/* cpu.h — what CPU kernels use: typed pointers into tensors, the thread pool, and SGEMM (an
 * optimized BLAS when one loads, else the portable blocked kernel in gemm.c).
 */
#ifndef KG_CPU_H
#define KG_CPU_H

#include "../internal.h"

static inline float *kg_cpu_f32(const kg_tensor *t)
{
    return (float *)t->storage->handle + t->offset;
}

static inline int32_t *kg_cpu_i32(const kg_tensor *t)
{
    return (int32_t *)t->storage->handle + t->offset;
}

static inline void *kg_cpu_raw(const kg_tensor *t)
{
    return (char *)t->storage->handle + (size_t)t->offset * kg_dtype_size(t->dtype);
}

/* Strided kernels see a tensor padded to 4 dims as rows of the last dim: the offset of row r
 * (flat over the first three dims) for strides st. */
static inline int64_t kg_cpu_row_offset(const int64_t *dim, const int64_t *st, int64_t r)
{
    int64_t i2 = r % dim[2], i1 = (r / dim[2]) % dim[1], i0 = r / (dim[2] * dim[1]);
    return i0 * st[0] + i1 * st[1] + i2 * st[2];
}

/* Temporary memory for a kernel, taken from (and counted by) the backend, so its memory
 * figures show everything an op used. NULL, with the context's error set, when exhausted. */
void *kg_cpu_scratch(const kg_opcall *c, size_t bytes);
void kg_cpu_scratch_free(const kg_opcall *c, void *p, size_t bytes);

/* Run fn(arg, lo, hi) over [0, n) split across the pool's threads, in chunks of at least grain
 * items (small loops stay on the calling thread). Returns when every chunk is done. Called from
 * inside a chunk, it runs the whole range on that thread. */
typedef void (*kg_range_fn)(void *arg, int64_t lo, int64_t hi);
void kg_cpu_parallel_for(int64_t n, int64_t grain, kg_range_fn fn, void *arg);
int kg_cpu_threads(void);

/* C = alpha · op(A) · op(B) + beta · C, row-major; op transposes when ta / tb is set.
 * op(A) is M × K, op(B) is K × N, C is M × N. False when the portable kernel could not get its
 * packing buffer (C is then untouched): the caller reports out of memory. */
bool kg_cpu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc);
/* The portable kernel alone (the benchmark compares it with the BLAS). */
bool kg_cpu_sgemm_portable(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc);
/* matmul_q's GEMM on a frozen weight W [n, k] of a 16-bit or block-quantized dtype (gemm_packed.c):
 * Y [m, ·] = X · Wᵀ (trans) or X · W, with W decoded inside the packing of B's panels.
 *   KG_GEMM_PANEL        no AVX-512: W is dequantized a panel of rows at a time into f32 and
 *                        multiplied by kg_cpu_sgemm (gemm_quant.c)
 *   KG_GEMM_AVX512       an AVX-512F kernel on f32 panels decoded from W
 *   KG_GEMM_AVX512_BF16  bf16 W only: vdpbf16ps on bf16 panels, X rounded to bf16 (nearest
 *                        even) in its packing, f32 accumulation
 * kg_cpu_gemm_w_path gives the best one this CPU runs for dtype d (detected at run time);
 * KG_GEMM_PATH=panel|avx512 in the environment, or kg_cpu_gemm_w_cap (tests), allows no better
 * one than named. kg_cpu_gemm_w needs kg_cpu_gemm_w_scratch() bytes of scratch and a path other
 * than KG_GEMM_PANEL; it cannot fail. */
typedef enum kg_gemm_path { KG_GEMM_PANEL, KG_GEMM_AVX512, KG_GEMM_AVX512_BF16 } kg_gemm_path;
kg_gemm_path kg_cpu_gemm_w_path(kg_dtype d);
void kg_cpu_gemm_w_cap(kg_gemm_path cap);
size_t kg_cpu_gemm_w_scratch(void);
void kg_cpu_gemm_w(kg_gemm_path path, const void *w, kg_dtype dtype, int64_t n, int64_t k,
                   bool trans, int64_t m, const float *X, float *Y, void *scratch);

/* Y [m, ·] = X · Wᵀ (trans) or X · W for W [n, k] of any weight dtype, contiguous X and Y, by
 * the best path this CPU has: OpenBLAS for f32, kg_cpu_gemm_w's kernels, else f32 panels
 * (gemm_quant.c). The op c names the error (out of memory) when it returns false. */
bool kg_cpu_gemm_q(const kg_opcall *c, const kg_tensor *w, bool trans, int64_t m,
                   const float *X, float *Y);

/* y (N) = W · x (K) for one vector x, W [N, K] row-major in its stored dtype (gemv.c): the
 * decode path's product, at the memory-bandwidth limit. kg_cpu_gemv_supports says whether this
 * CPU and dtype have a kernel (else the GEMM path runs); kg_cpu_gemv_isa names the one chosen. */
bool kg_cpu_gemv_supports(kg_dtype dtype);
void kg_cpu_gemv(kg_dtype dtype, const void *w, int64_t N, int64_t K, const float *x, float *y);
const char *kg_cpu_gemv_isa(void);

/* v[k] ← expf(v[k]) and v[k] ← erff(v[k]) for k < n (vec_math.c): glibc's libmvec, 16 lanes
 * where the CPU has AVX-512 and 8 where it has AVX2 and FMA (within 4 ulp; an element's result
 * does not depend on its place in v), else libm per element; KG_EXP_PATH=scalar|avx2 or
 * kg_cpu_exp_cap caps the path. kg_cpu_vec_math says whether a vector path runs. */
void kg_cpu_expf_inplace(float *v, int64_t n);
void kg_cpu_erff_inplace(float *v, int64_t n);
bool kg_cpu_vec_math(void);

/* f[k] = keep_scale where dropout keeps element index0 + k (kg__uniform01(seed, index0 + k) >= p),
 * else 0 (dropout_mask.c; vectorized where the CPU has AVX2 or AVX512-DQ, the same bits). */
void kg_cpu_dropout_mask(float *f, int64_t n, uint64_t seed, uint64_t index0, float p,
                         float keep_scale);

/* The CPU's vector paths for e^x and its kin: KG_EXP_SCALAR (portable), KG_EXP_AVX2 (AVX2 with
 * FMA) and KG_EXP_AVX512. kg_cpu_exp_path gives the best one this CPU runs (detected at run
 * time); KG_EXP_PATH=scalar|avx2 in the environment, or kg_cpu_exp_cap (tests), allows no better
 * one than named.
 *
 * The fused LM head's passes over a row of logits (exp_rows.c): its max, Σ_k e^(z[k] - m), and
 * z[k] ← g·e^(z[k] - shift). One polynomial e^x (~2 ulp for x <= 0; e^-87 below -87), in two
 * implementations: portable (KG_EXP_SCALAR and KG_EXP_AVX2 take it), and KG_EXP_AVX512, 16 lanes
 * with fused multiply-adds (which round once where the portable loop rounds twice: the two
 * differ by a few ulp, tests/test_exp_rows.c bounds it). */
typedef enum kg_exp_path { KG_EXP_SCALAR, KG_EXP_AVX2, KG_EXP_AVX512 } kg_exp_path;
kg_exp_path kg_cpu_exp_path(void);
void kg_cpu_exp_cap(kg_exp_path cap);
/* Whether the CPU has AVX512-DQ (detected with the paths above; dropout_mask.c's vpmullq). */
bool kg_cpu_has_avx512dq(void);
float kg_cpu_row_max(kg_exp_path path, const float *z, int64_t n);
float kg_cpu_sum_exp(kg_exp_path path, const float *z, int64_t n, float m);
void kg_cpu_scale_exp(kg_exp_path path, float *z, int64_t n, float shift, float g);

/* The fused LM head's logits per block of rows (ops/lm_head.c; 0: the default, 16 Mi). For
 * tests, which reach several blocks with a small vocabulary; not thread-safe. */
void kg_cpu_lm_head_block(int64_t floats);

/* Bytes the CPU backend of ctx keeps in freed blocks for reuse (backend.c); for tests. */
size_t kg_cpu_kept_bytes(const kg_ctx *ctx);

/* The BLAS in use, e.g. "OpenBLAS 0.3.21 (Haswell)", or "none (portable kernel)". */
const char *kg_cpu_blas_name(void);

#endif
