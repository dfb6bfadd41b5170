/* gemv.c — batch-1 matrix-vector products y = W·x for the decode path (one token at a time),
 * reading the stored weight W [N, K] directly: f32, f16, bf16, q8_0, q4_0, q4_1. Block formats
 * by default take integer dot products (as llama.cpp does): x is quantized once per product to
 * 8-bit blocks of 32 and each block's Σ q_w·q_x is summed in int32 (AVX512-VNNI vpdpbusd, else
 * AVX2 maddubs/madd). The f32-activation kernels decode each block in registers to the values
 * kg__dequantize_rows gives and multiply with x in f32 (KG_GEMV=f32 forces them). AVX-512 or
 * AVX2 is chosen at run time.
 */
#include "cpu.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

enum { QK = 32 };

typedef struct gemv_job {
    kg_dtype dtype;
    const uint8_t *w; /* the rows of W, raw */
    size_t row_bytes;
    int64_t K;
    const float *x;
    float *y;
    /* x as 8-bit blocks for the integer kernels: x_k ≈ dx[b]·qx[k], sx[b] = dx[b]·Σ_b qx */
    const int8_t *qx;
    const float *dx, *sx;
} gemv_job;

typedef void (*rows_fn)(const gemv_job *j, int64_t lo, int64_t hi);

/* The block's scale d and offset m, so that weight j is q_j·d + m with q_j the stored
 * unsigned code (q4_0 stores q + 8: its offset is -8·d, exact in f32 for q·d - 8·d). */
static inline void block_dm(kg_dtype dt, const uint8_t *b, float *d, float *m)
{
    uint16_t h;
    memcpy(&h, b, 2);
    *d = kg_f16_to_f32(h);
    if (dt == KG_DTYPE_Q4_1) {
        memcpy(&h, b + 2, 2);
        *m = kg_f16_to_f32(h);
    } else {
        *m = dt == KG_DTYPE_Q4_0 ? -8.0f * *d : 0.0f;
    }
}

static size_t block_bytes(kg_dtype dt)
{
    return dt == KG_DTYPE_Q8_0 ? 2 + QK : dt == KG_DTYPE_Q4_0 ? 2 + QK / 2 : 4 + QK / 2;
}

/* ---- AVX-512 ------------------------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#define KG_GEMV_X86 1
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define T256 __attribute__((target("avx2,fma,f16c")))

/* 16 weights of a 16-bit or f32 row as floats, lanes past n zero. */
static T512 inline __m512 load16_512(kg_dtype dt, const void *w, int64_t k, int64_t n)
{
    __mmask16 mk = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    if (dt == KG_DTYPE_F32)
        return _mm512_maskz_loadu_ps(mk, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + k);
    if (dt == KG_DTYPE_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* bf16 */
}

static T512 void rows_float_512(const gemv_job *j, int64_t lo, int64_t hi)
{
    int64_t K = j->K;
    for (int64_t n = lo; n < hi; n++) {
        const void *w = j->w + (size_t)n * j->row_bytes;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            a0 = _mm512_fmadd_ps(load16_512(j->dtype, w, k, 16), _mm512_loadu_ps(j->x + k), a0);
            a1 = _mm512_fmadd_ps(load16_512(j->dtype, w, k + 16, 16),
                                 _mm512_loadu_ps(j->x + k + 16), a1);
        }
        for (; k < K; k += 16) {
            __mmask16 mk = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
            a0 = _mm512_fmadd_ps(load16_512(j->dtype, w, k, K - k),
                                 _mm512_maskz_loadu_ps(mk, j->x + k), a0);
        }
        j->y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

static T512 void rows_quant_512(const gemv_job *j, int64_t lo, int64_t hi)
{
    kg_dtype dt = j->dtype;
    size_t bb = block_bytes(dt);
    int64_t nb = j->K / QK;
    for (int64_t n = lo; n < hi; n++) {
        const uint8_t *b = j->w + (size_t)n * j->row_bytes;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++, b += bb) {
            float d, m;
            block_dm(dt, b, &d, &m);
            __m512i lo16, hi16; /* the codes of elements 0..15 and 16..31 */
            if (dt == KG_DTYPE_Q8_0) {
                lo16 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)));
                hi16 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)));
            } else { /* element j in the low nibble of byte j, j + 16 in its high nibble */
                __m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + bb - 16)));
                lo16 = _mm512_and_si512(z, _mm512_set1_epi32(15));
                hi16 = _mm512_srli_epi32(z, 4);
            }
            __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);
            const float *x = j->x + i * QK;
            a0 = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(lo16), vd, vm),
                                 _mm512_loadu_ps(x), a0);
            a1 = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(hi16), vd, vm),
                                 _mm512_loadu_ps(x + 16), a1);
        }
        j->y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

/* ---- AVX2 ---------------------------------------------------------------------------------- */

static T256 inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* 8 weights of a 16-bit or f32 row at k as floats (all 8 present). */
static T256 inline __m256 load8_256(kg_dtype dt, const void *w, int64_t k)
{
    if (dt == KG_DTYPE_F32)
        return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (dt == KG_DTYPE_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static T256 void rows_float_256(const gemv_job *j, int64_t lo, int64_t hi)
{
    int64_t K = j->K;
    for (int64_t n = lo; n < hi; n++) {
        const void *w = j->w + (size_t)n * j->row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            a0 = _mm256_fmadd_ps(load8_256(j->dtype, w, k), _mm256_loadu_ps(j->x + k), a0);
            a1 = _mm256_fmadd_ps(load8_256(j->dtype, w, k + 8), _mm256_loadu_ps(j->x + k + 8),
                                 a1);
        }
        for (; k + 8 <= K; k += 8)
            a0 = _mm256_fmadd_ps(load8_256(j->dtype, w, k), _mm256_loadu_ps(j->x + k), a0);
        float s = hsum256(_mm256_add_ps(a0, a1));
        for (; k < K; k++)
            s += (float)kg__load(w, j->dtype, k) * j->x[k];
        j->y[n] = s;
    }
}

/* Codes of 8 elements from 8 bytes at p, as int32 (signed for q8_0, unsigned nibbles' bytes
 * otherwise). */
static T256 inline __m256i codes8_256(kg_dtype dt, const uint8_t *p)
{
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return dt == KG_DTYPE_Q8_0 ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
}

static T256 void rows_quant_256(const gemv_job *j, int64_t lo, int64_t hi)
{
    kg_dtype dt = j->dtype;
    size_t bb = block_bytes(dt);
    int64_t nb = j->K / QK;
    for (int64_t n = lo; n < hi; n++) {
        const uint8_t *b = j->w + (size_t)n * j->row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++, b += bb) {
            float d, m;
            block_dm(dt, b, &d, &m);
            __m256i c[4]; /* the codes of elements 0..7, 8..15, 16..23, 24..31 */
            if (dt == KG_DTYPE_Q8_0) {
                for (int q = 0; q < 4; q++)
                    c[q] = codes8_256(dt, b + 2 + 8 * q);
            } else {
                const __m256i low = _mm256_set1_epi32(15);
                __m256i z0 = codes8_256(dt, b + bb - 16), z1 = codes8_256(dt, b + bb - 8);
                c[0] = _mm256_and_si256(z0, low), c[1] = _mm256_and_si256(z1, low);
                c[2] = _mm256_srli_epi32(z0, 4), c[3] = _mm256_srli_epi32(z1, 4);
            }
            __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
            const float *x = j->x + i * QK;
            for (int q = 0; q < 4; q += 2) {
                a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(c[q]), vd, vm),
                                     _mm256_loadu_ps(x + 8 * q), a0);
                a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(c[q + 1]), vd, vm),
                                     _mm256_loadu_ps(x + 8 * q + 8), a1);
            }
        }
        j->y[n] = hsum256(_mm256_add_ps(a0, a1));
    }
}

/* ---- Integer dot products: x in 8-bit blocks --------------------------------------------- */

#define TVNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

/* x quantized to blocks of 32 as llama.cpp's q8_0, but with the scale in f32: dx = max|x|/127,
 * qx = x·(1/dx) rounded to nearest even (in [-127, 127]), sx = dx·Σ qx. A block holding a NaN
 * gets dx = NaN, so the product is NaN as in f32. tests/test_gemv_int.c repeats this in scalar
 * code and expects the same bits. */
static T256 void quantize_x_256(const float *x, int64_t nb, int8_t *q, float *d, float *s)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < nb; b++, x += QK, q += QK) {
        __m256 v[4], amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float dd = _mm_cvtss_f32(h) / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i c[4];
        for (int i = 0; i < 4; i++)
            c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
        /* packs works within 128-bit lanes: the permute puts the 32 bytes back in order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]),
                                       _mm256_packs_epi32(c[2], c[3]));
        _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(p, order));
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(c[0], c[1]), _mm256_add_epi32(c[2], c[3]));
        __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4e));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xb1));
        if (_mm256_movemask_ps(nan))
            dd = __builtin_nanf("");
        d[b] = dd;
        s[b] = dd * (float)_mm_cvtsi128_si32(u);
    }
}

/* Block i of a row at b: the weight codes as unsigned bytes and x's codes as signed ones, in
 * the same order, so that Σ w·x over the 32 bytes is the block's Σ q_w·q_x (q8_0's signed codes:
 * |q_w| and x with q_w's sign). Returns d_w·dx as 8 lanes and adds the offset's term m_w·sx to
 * *m (q4_1 stores m; q4_0's codes are q + 8, m = -8·d: Σ (q_w - 8)·q_x·d·dx = d·dx·Σ q_w·q_x
 * - 8·d·sx). */
static T256 inline __attribute__((always_inline)) __m256
block_operands(const gemv_job *j, kg_dtype dt, const uint8_t *b, int64_t i, __m256i *w, __m256i *x,
               float *m)
{
    __m256i xq = _mm256_loadu_si256((const __m256i *)(j->qx + i * QK));
    int32_t dm;
    memcpy(&dm, b, 4); /* d, and q4_1's m, as f16 */
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(dm));
    float d = _mm_cvtss_f32(f);
    if (dt == KG_DTYPE_Q8_0) {
        __m256i wq = _mm256_loadu_si256((const __m256i *)(b + 2));
        *x = _mm256_sign_epi8(xq, wq);
        *w = _mm256_sign_epi8(wq, wq); /* -128 becomes 128 as an unsigned byte: still |q| */
    } else {
        __m128i z = _mm_loadu_si128((const __m128i *)(b + (dt == KG_DTYPE_Q4_1 ? 4 : 2)));
        *w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(z, 4), z), _mm256_set1_epi8(15));
        *x = xq;
        *m += (dt == KG_DTYPE_Q4_1 ? _mm_cvtss_f32(_mm_movehdup_ps(f)) : -8.0f * d) * j->sx[i];
    }
    return _mm256_set1_ps(d * j->dx[i]);
}

/* One row kernel per dot instruction, its body inlined once per dtype (a constant there, so no
 * dtype tests in the loop); two accumulators of each kind (even and odd blocks) hide the latency
 * of their add chains (the scalar one of m_w·sx bounded the loop otherwise). */
#define ROWS_INT(NAME, TARGET, DOT)                                                            \
    static TARGET inline __attribute__((always_inline)) void NAME##_rows(                     \
        const gemv_job *j, kg_dtype dt, int64_t lo, int64_t hi)                                \
    {                                                                                          \
        size_t bb = block_bytes(dt);                                                           \
        int64_t nb = j->K / QK;                                                                \
        for (int64_t n = lo; n < hi; n++) {                                                    \
            const uint8_t *b = j->w + (size_t)n * j->row_bytes;                                \
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                         \
            float m0 = 0.0f, m1 = 0.0f;                                                        \
            __m256i w0, x0, w1, x1;                                                            \
            int64_t i = 0;                                                                     \
            for (; i + 2 <= nb; i += 2, b += 2 * bb) {                                         \
                __m256 s0 = block_operands(j, dt, b, i, &w0, &x0, &m0);                        \
                __m256 s1 = block_operands(j, dt, b + bb, i + 1, &w1, &x1, &m1);               \
                a0 = _mm256_fmadd_ps(s0, _mm256_cvtepi32_ps(DOT(w0, x0)), a0);                 \
                a1 = _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(DOT(w1, x1)), a1);                 \
            }                                                                                  \
            if (i < nb) {                                                                      \
                __m256 s0 = block_operands(j, dt, b, i, &w0, &x0, &m0);                        \
                a0 = _mm256_fmadd_ps(s0, _mm256_cvtepi32_ps(DOT(w0, x0)), a0);                 \
            }                                                                                  \
            j->y[n] = hsum256(_mm256_add_ps(a0, a1)) + (m0 + m1);                              \
        }                                                                                      \
    }                                                                                          \
    static TARGET void NAME(const gemv_job *j, int64_t lo, int64_t hi)                         \
    {                                                                                          \
        switch (j->dtype) {                                                                    \
        case KG_DTYPE_Q8_0: NAME##_rows(j, KG_DTYPE_Q8_0, lo, hi); break;                      \
        case KG_DTYPE_Q4_0: NAME##_rows(j, KG_DTYPE_Q4_0, lo, hi); break;                      \
        default: NAME##_rows(j, KG_DTYPE_Q4_1, lo, hi); break;                                 \
        }                                                                                      \
    }

#define DOT_VNNI(w, x) _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)
#define DOT_AVX2(w, x) _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
ROWS_INT(rows_int_vnni, TVNNI, DOT_VNNI)
ROWS_INT(rows_int_avx2, T256, DOT_AVX2)
#endif

/* ---- Dispatch ------------------------------------------------------------------------------ */

/* What this CPU runs, read once. level: 2 AVX-512, 1 AVX2 + FMA + F16C, 0 neither (the GEMM
 * path). ints: 2 VNNI, 1 AVX2, 0 none (the f32-activation kernels). KG_GEMV, for tests and
 * comparisons, names lower ones, comma-separated: "avx2" (AVX2 kernels only), "f32" (no
 * integer kernels), "off" (neither: the GEMM path). */
typedef struct gemv_isa {
    int level, ints;
} gemv_isa;

static gemv_isa isa(void)
{
    static gemv_isa got = {-1, -1};
#ifdef KG_GEMV_X86
    if (got.level < 0) {
        __builtin_cpu_init();
        bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
        gemv_isa g = {avx512 ? 2
                      : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                         : 0,
                      0};
        g.ints = g.level == 2 && __builtin_cpu_supports("avx512vnni") ? 2 : g.level > 0;
        const char *force = getenv("KG_GEMV");
        if (force && strstr(force, "avx2") && g.level > 1)
            g.level = 1, g.ints = 1;
        if (force && strstr(force, "f32"))
            g.ints = 0;
        if (force && strstr(force, "off"))
            g.level = 0, g.ints = 0;
        got = g;
    }
#else
    got = (gemv_isa){0, 0};
#endif
    return got;
}

const char *kg_cpu_gemv_isa(void)
{
    static const char *const names[3][3] = {
        {"none (GEMM path)"},
        {"AVX2, f32 activations", "AVX2, int8 dot (maddubs)"},
        {"AVX-512, f32 activations", "AVX-512, int8 dot (AVX2 maddubs)",
         "AVX-512, int8 dot (VNNI)"},
    };
    gemv_isa g = isa();
    return names[g.level][g.ints];
}

bool kg_cpu_gemv_supports(kg_dtype dtype)
{
    return isa().level > 0 && (dtype == KG_DTYPE_F32 || dtype == KG_DTYPE_F16 ||
                               dtype == KG_DTYPE_BF16 || dtype == KG_DTYPE_Q8_0 ||
                               dtype == KG_DTYPE_Q4_0 || dtype == KG_DTYPE_Q4_1);
}

typedef struct gemv_call {
    gemv_job job;
    rows_fn fn;
} gemv_call;

static void gemv_part(void *arg, int64_t lo, int64_t hi)
{
    const gemv_call *c = arg;
    c->fn(&c->job, lo, hi);
}

/* The widest x the integer kernels quantize on the stack (no allocation per product); a wider
 * one takes the f32-activation kernels. */
enum { QX_MAX = 32768 };

void kg_cpu_gemv(kg_dtype dtype, const void *w, int64_t N, int64_t K, const float *x, float *y)
{
    KG_ASSERT(kg_cpu_gemv_supports(dtype));
    gemv_call c = {.job = {dtype, w, kg_dtype_bytes(dtype, K), K, x, y, NULL, NULL, NULL}};
#ifdef KG_GEMV_X86
    _Alignas(64) int8_t qx[QX_MAX];
    float dx[QX_MAX / QK], sx[QX_MAX / QK];
    gemv_isa g = isa();
    bool quant = kg__dtype_is_block(dtype), wide = g.level == 2;
    if (quant && g.ints > 0 && K <= QX_MAX) {
        quantize_x_256(x, K / QK, qx, dx, sx);
        c.job.qx = qx, c.job.dx = dx, c.job.sx = sx;
        c.fn = g.ints == 2 ? rows_int_vnni : rows_int_avx2;
    } else {
        c.fn = quant ? (wide ? rows_quant_512 : rows_quant_256)
                     : (wide ? rows_float_512 : rows_float_256);
    }
#endif
    /* Rows split over the pool in chunks of at least 16K weights: smaller products (a k_proj
     * of 192 rows) still split in two, a wake-up costs less than half of them. */
    int64_t grain = K >= 16384 ? 1 : 16384 / K;
    kg_cpu_parallel_for(N, grain, gemv_part, &c);
}
