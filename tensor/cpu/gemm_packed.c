/* gemm_packed.c — the GEMM of matmul_q on CPUs with AVX-512: Y = X · op(W) with W [n, k] stored
 * in bf16, f16 or a block-quantized dtype, decoded while the kernel packs its B panels (no f32
 * copy of a W panel is written and read back). Two micro-kernels, chosen at run time:
 * AVX-512F FMA on f32 panels, and AVX512-BF16 (vdpbf16ps) on bf16 weights, whose packing rounds
 * the activations to bf16 (nearest even) and which accumulates in f32.
 */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KG_HAVE_X86 1
#endif

/* A 12 × 32 block of C is 24 zmm accumulators (of 32 registers), with two for B's row and one
 * for A's broadcast. KC is the depth of one packed block in elements (a multiple of 64, nf4's
 * block, so every block of W decodes whole or in halves); NC_MAX the widest B block. A's block
 * (MC_PANELS · MR rows × KC) sits on the worker's stack, in L2. */
enum { MR = 12, NR = 32, KC_F32 = 256, KC_BF16 = 512, NC_MAX = 1536, MC_PANELS = 12 };

/* ---- Which path ----------------------------------------------------------------------------- */

static struct {
    bool avx512, bf16;
    int cap; /* the best path allowed: KG_GEMM_PATH, or kg_cpu_gemm_w_cap */
} isa = {.cap = -1};

static void detect(void)
{
#ifdef KG_HAVE_X86
    __builtin_cpu_init();
    isa.avx512 = __builtin_cpu_supports("avx512f");
    isa.bf16 = isa.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    const char *want = getenv("KG_GEMM_PATH");
    isa.cap = !want                        ? KG_GEMM_AVX512_BF16
              : strcmp(want, "panel") == 0 ? KG_GEMM_PANEL
              : strcmp(want, "avx512") == 0 ? KG_GEMM_AVX512
                                            : KG_GEMM_AVX512_BF16;
}

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

kg_gemm_path kg_cpu_gemm_w_path(kg_dtype d)
{
    pthread_once(&detect_once, detect);
    kg_gemm_path p = d == KG_DTYPE_BF16 && isa.bf16 ? KG_GEMM_AVX512_BF16
                     : isa.avx512 && d != KG_DTYPE_F32 ? KG_GEMM_AVX512
                                                       : KG_GEMM_PANEL;
    if ((int)p > isa.cap)
        p = isa.cap == KG_GEMM_AVX512 && isa.avx512 ? KG_GEMM_AVX512 : KG_GEMM_PANEL;
    return p;
}

void kg_cpu_gemm_w_cap(kg_gemm_path cap)
{
    pthread_once(&detect_once, detect);
    isa.cap = (int)cap;
}

size_t kg_cpu_gemm_w_scratch(void)
{
    return (size_t)KC_F32 * NC_MAX * sizeof(float); /* = KC_BF16 · NC_MAX bf16 */
}

#ifdef KG_HAVE_X86

/* ---- The product's geometry ------------------------------------------------------------------ */

/* Y [m, N] = X [m, K] · B [K, N]: forward (trans) B = Wᵀ, so K = k, N = n and B[p][j] = W[j][p];
 * backward B = W, K = n, N = k and B[p][j] = W[p][j]. */
typedef struct gemm_w {
    kg_gemm_path path;
    const void *w;
    kg_dtype dtype;
    int64_t n, k; /* W's shape */
    bool trans;
    int64_t m, K, N;
    const float *X;
    float *Y;
    /* the block being multiplied: B[pc : pc + kc, jc : jc + nc], packed into Bp */
    int64_t pc, kc, jc, nc;
    void *Bp;
    bool split_m; /* the workers split the rows of Y (else B's panels) */
} gemm_w;

/* ---- Packing B: W decoded into NR-wide panels ------------------------------------------------ */

/* W[row][c0 : c0 + len) as f32 (c0, len multiples of 32, or any for 16-bit dtypes). */
static void decode_row(const gemm_w *g, int64_t row, int64_t c0, int64_t len, float *out)
{
    if (g->dtype == KG_DTYPE_BF16) { /* the common case, inline: a shift */
        const uint16_t *s = (const uint16_t *)g->w + row * g->k + c0;
        for (int64_t i = 0; i < len; i++) {
            uint32_t u = (uint32_t)s[i] << 16;
            memcpy(out + i, &u, 4);
        }
        return;
    }
    kg__dequantize_range(g->w, g->dtype, g->n * g->k, row * g->k + c0, len, out);
}

/* f32 panels: element (p, j) of panel q at q·kc·NR + p·NR + j, zero past the edge. */
static void pack_b_f32(const gemm_w *g, int64_t q, float *Bp)
{
    int64_t j0 = g->jc + q * NR, nr = g->N - j0 < NR ? g->N - j0 : NR, kc = g->kc;
    float *panel = Bp + q * kc * NR;
    if (g->trans) { /* B's column j is W's row j0 + j: decode it along k, then scatter */
        float row[KC_F32];
        for (int64_t j = 0; j < NR; j++) {
            if (j < nr)
                decode_row(g, j0 + j, g->pc, kc, row);
            for (int64_t p = 0; p < kc; p++)
                panel[p * NR + j] = j < nr ? row[p] : 0.0f;
        }
    } else { /* B's row p is W's row pc + p: decode NR of its columns straight into place */
        for (int64_t p = 0; p < kc; p++) {
            decode_row(g, g->pc + p, j0, nr, panel + p * NR);
            memset(panel + p * NR + nr, 0, sizeof(float) * (size_t)(NR - nr));
        }
    }
}

/* bf16 panels for vdpbf16ps: rows p and p + 1 interleaved, so element (p, j) of panel q is at
 * q·kc2·2NR + (p/2)·2NR + 2j + p%2 (kc2 = kc rounded up to pairs), zero past the edges. */
static void pack_b_bf16(const gemm_w *g, int64_t q, uint16_t *Bp)
{
    int64_t j0 = g->jc + q * NR, nr = g->N - j0 < NR ? g->N - j0 : NR, kc = g->kc;
    int64_t kc2 = (kc + 1) / 2;
    const uint16_t *W = g->w;
    uint16_t *panel = Bp + q * kc2 * 2 * NR;
    memset(panel, 0, sizeof(uint16_t) * (size_t)(kc2 * 2 * NR));
    for (int64_t p = 0; p < kc; p++)
        for (int64_t j = 0; j < nr; j++)
            panel[(p / 2) * 2 * NR + 2 * j + p % 2] =
                g->trans ? W[(j0 + j) * g->k + g->pc + p] : W[(g->pc + p) * g->k + j0 + j];
}

static void pack_b_part(void *arg, int64_t lo, int64_t hi)
{
    const gemm_w *g = arg;
    for (int64_t q = lo; q < hi; q++)
        if (g->path == KG_GEMM_AVX512_BF16)
            pack_b_bf16(g, q, g->Bp);
        else
            pack_b_f32(g, q, g->Bp);
}

/* ---- Packing A: rows of X into MR-tall panels ------------------------------------------------ */

/* f32: element (r, p) of panel i at i·kc·MR + p·MR + r, zero below the last row. */
static void pack_a_f32(const gemm_w *g, int64_t i0, int64_t panels, float *Ap)
{
    int64_t kc = g->kc;
    for (int64_t i = 0; i < panels; i++)
        for (int64_t r = 0; r < MR; r++) {
            int64_t row = (i0 + i) * MR + r;
            const float *x = g->X + row * g->K + g->pc;
            float *dst = Ap + i * kc * MR + r;
            for (int64_t p = 0; p < kc; p++)
                dst[p * MR] = row < g->m ? x[p] : 0.0f;
        }
}

/* bf16: the pair (x[2t], x[2t+1]) of row r, rounded to bf16 (nearest even, as vcvtne2ps2bf16
 * does), as one 32-bit word at i·kc2·MR + t·MR + r: vdpbf16ps broadcasts it against B's pairs. */
__attribute__((target("avx512f,avx512bf16"))) static void pack_a_bf16(const gemm_w *g, int64_t i0,
                                                                      int64_t panels, uint32_t *Ap)
{
    int64_t kc = g->kc, kc2 = (kc + 1) / 2;
    for (int64_t i = 0; i < panels; i++)
        for (int64_t r = 0; r < MR; r++) {
            int64_t row = (i0 + i) * MR + r;
            uint32_t *dst = Ap + i * kc2 * MR + r;
            if (row >= g->m) {
                for (int64_t t = 0; t < kc2; t++)
                    dst[t * MR] = 0;
                continue;
            }
            const float *x = g->X + row * g->K + g->pc;
            int64_t t = 0;
            for (; 2 * t + 32 <= kc; t += 16) {
                uint32_t w[16];
                __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 2 * t + 16),
                                                 _mm512_loadu_ps(x + 2 * t));
                _mm512_storeu_si512(w, (__m512i)h);
                for (int u = 0; u < 16; u++)
                    dst[(t + u) * MR] = w[u];
            }
            for (; t < kc2; t++) { /* the tail: an odd kc pairs its last element with zero */
                uint32_t lo = kg_f32_to_bf16(x[2 * t]);
                uint32_t hi = 2 * t + 1 < kc ? kg_f32_to_bf16(x[2 * t + 1]) : 0;
                dst[t * MR] = lo | hi << 16;
            }
        }
}

/* ---- Micro-kernels: C[0:mr, 0:nr] (+)= A panel · B panel ------------------------------------- */

__attribute__((target("avx512f"))) static inline void store_tile(__m512 c[MR][2], float *C,
                                                                 int64_t ldc, int64_t mr,
                                                                 int64_t nr, bool add)
{
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    for (int64_t r = 0; r < mr; r++) {
        float *y = C + r * ldc;
        __m512 v0 = c[r][0], v1 = c[r][1];
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, y));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, y + 16));
        }
        _mm512_mask_storeu_ps(y, m0, v0);
        _mm512_mask_storeu_ps(y + 16, m1, v1);
    }
}

__attribute__((target("avx512f"))) static void kernel_f32(int64_t kc, const float *Ap,
                                                          const float *Bp, float *C, int64_t ldc,
                                                          int64_t mr, int64_t nr, bool add)
{
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(Bp + p * NR), b1 = _mm512_loadu_ps(Bp + p * NR + 16);
        const float *a = Ap + p * MR;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r]);
            c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
        }
    }
    store_tile(c, C, ldc, mr, nr, add);
}

__attribute__((target("avx512f,avx512bf16"))) static void kernel_bf16(int64_t kc2,
                                                                      const uint32_t *Ap,
                                                                      const uint16_t *Bp, float *C,
                                                                      int64_t ldc, int64_t mr,
                                                                      int64_t nr, bool add)
{
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (int64_t t = 0; t < kc2; t++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + t * 2 * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(Bp + t * 2 * NR + NR);
        const uint32_t *a = Ap + t * MR;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
        }
    }
    store_tile(c, C, ldc, mr, nr, add);
}

/* ---- The blocked loops ---------------------------------------------------------------------- */

/* Row panels [i0, i1) of Y times B's panels [q0, q1), for the block g->pc, g->jc. */
static void multiply(const gemm_w *g, int64_t i0, int64_t i1, int64_t q0, int64_t q1)
{
    bool bf16 = g->path == KG_GEMM_AVX512_BF16, add = g->pc > 0;
    int64_t kc = g->kc, kc2 = (kc + 1) / 2;
    /* A's block: MC_PANELS panels of MR × KC_F32 floats, or as many bf16 pairs (KC_BF16 / 2) */
    uint32_t Ap[MC_PANELS * MR * KC_F32] __attribute__((aligned(64)));
    for (int64_t ib = i0; ib < i1; ib += MC_PANELS) {
        int64_t panels = i1 - ib < MC_PANELS ? i1 - ib : MC_PANELS;
        if (bf16)
            pack_a_bf16(g, ib, panels, Ap);
        else
            pack_a_f32(g, ib, panels, (float *)Ap);
        for (int64_t q = q0; q < q1; q++) {
            int64_t j0 = g->jc + q * NR, nr = g->N - j0 < NR ? g->N - j0 : NR;
            for (int64_t i = 0; i < panels; i++) {
                int64_t row = (ib + i) * MR, mr = g->m - row < MR ? g->m - row : MR;
                float *C = g->Y + row * g->N + j0;
                if (bf16)
                    kernel_bf16(kc2, Ap + i * kc2 * MR, (const uint16_t *)g->Bp + q * kc2 * 2 * NR,
                                C, g->N, mr, nr, add);
                else
                    kernel_f32(kc, (const float *)Ap + i * kc * MR,
                               (const float *)g->Bp + q * kc * NR, C, g->N, mr, nr, add);
            }
        }
    }
}

static void multiply_part(void *arg, int64_t lo, int64_t hi)
{
    const gemm_w *g = arg;
    int64_t row_panels = (g->m + MR - 1) / MR, col_panels = (g->nc + NR - 1) / NR;
    if (g->split_m)
        multiply(g, lo, hi, 0, col_panels);
    else
        multiply(g, 0, row_panels, lo, hi);
}

void kg_cpu_gemm_w(kg_gemm_path path, const void *w, kg_dtype dtype, int64_t n, int64_t k,
                   bool trans, int64_t m, const float *X, float *Y, void *scratch)
{
    gemm_w g = {.path = path, .w = w, .dtype = dtype, .n = n, .k = k, .trans = trans, .m = m,
                .K = trans ? k : n, .N = trans ? n : k, .X = X, .Y = Y, .Bp = scratch};
    int64_t KC = path == KG_GEMM_AVX512_BF16 ? KC_BF16 : KC_F32;
    int64_t row_panels = (m + MR - 1) / MR;
    /* Rows of Y to each thread when there are enough of them, else B's panels. */
    g.split_m = row_panels >= 4 * kg_cpu_threads();
    if (g.K == 0)
        memset(Y, 0, sizeof(float) * (size_t)(m * g.N));
    for (g.jc = 0; g.jc < g.N; g.jc += NC_MAX) {
        g.nc = g.N - g.jc < NC_MAX ? g.N - g.jc : NC_MAX;
        int64_t col_panels = (g.nc + NR - 1) / NR;
        for (g.pc = 0; g.pc < g.K; g.pc += KC) {
            g.kc = g.K - g.pc < KC ? g.K - g.pc : KC;
            kg_cpu_parallel_for(col_panels, 1, pack_b_part, &g);
            kg_cpu_parallel_for(g.split_m ? row_panels : col_panels, 1, multiply_part, &g);
        }
    }
}

#else /* not x86-64: kg_cpu_gemm_w_path never picks these paths */

void kg_cpu_gemm_w(kg_gemm_path path, const void *w, kg_dtype dtype, int64_t n, int64_t k,
                   bool trans, int64_t m, const float *X, float *Y, void *scratch)
{
    (void)path, (void)w, (void)dtype, (void)n, (void)k, (void)trans, (void)m, (void)X, (void)Y;
    (void)scratch;
    KG_ASSERT(!"kg_cpu_gemm_w: no AVX-512 on this architecture");
}

#endif
