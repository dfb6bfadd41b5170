/* gemv.c — batch-1 matrix-vector products y = W·x for the decode path (one token at a time),
 * reading the stored weight W [N, K] directly: f32, f16, bf16, q8_0, q4_0, q4_1. Each block is
 * decoded in registers to the same f32 values kg__dequantize_rows gives (q·d + m, one rounding)
 * and multiplied with x in f32, so no f32 copy of W is written and the result matches the
 * dequantize-then-GEMM path up to summation order. AVX-512 or AVX2 is chosen at run time.
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
#endif

/* ---- Dispatch ------------------------------------------------------------------------------ */

static int isa_level(void) /* 2: AVX-512, 1: AVX2 + FMA + F16C, 0: neither (the GEMM path) */
{
#ifdef KG_GEMV_X86
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl")
                    ? 2
                : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                  : 0;
        const char *force = getenv("KG_GEMV"); /* "avx2" or "off": the other paths, for tests */
        if (force && strcmp(force, "avx2") == 0 && level > 1)
            level = 1;
        else if (force && strcmp(force, "off") == 0)
            level = 0;
    }
    return level;
#else
    return 0;
#endif
}

const char *kg_cpu_gemv_isa(void)
{
    static const char *const names[] = {"none (GEMM path)", "AVX2", "AVX-512"};
    return names[isa_level()];
}

bool kg_cpu_gemv_supports(kg_dtype dtype)
{
    return isa_level() > 0 && (dtype == KG_DTYPE_F32 || dtype == KG_DTYPE_F16 ||
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

void kg_cpu_gemv(kg_dtype dtype, const void *w, int64_t N, int64_t K, const float *x, float *y)
{
    KG_ASSERT(kg_cpu_gemv_supports(dtype));
    gemv_call c = {.job = {dtype, w, kg_dtype_bytes(dtype, K), K, x, y}};
#ifdef KG_GEMV_X86
    bool quant = kg__dtype_is_block(dtype), wide = isa_level() == 2;
    c.fn = quant ? (wide ? rows_quant_512 : rows_quant_256)
                 : (wide ? rows_float_512 : rows_float_256);
#endif
    /* Rows split over the pool in chunks of at least 16K weights: smaller products (a k_proj
     * of 192 rows) still split in two, a wake-up costs less than half of them. */
    int64_t grain = K >= 16384 ? 1 : 16384 / K;
    kg_cpu_parallel_for(N, grain, gemv_part, &c);
}
