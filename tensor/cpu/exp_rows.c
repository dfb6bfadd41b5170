/* exp_rows.c — the row passes of the fused LM head (ops/lm_head.c) over a block of logits: a
 * row's max, Σ e^(z - m), and z ← g·e^(z - shift). One polynomial e^x (Cephes' on x - n·ln 2,
 * times 2^n), written three times: a portable loop, and explicitly for AVX-512F (16 lanes) and
 * for AVX2 with FMA (8 lanes), the same polynomial with fused multiply-adds, chosen at run time.
 * libm's expf is a call per element.
 */
#include "cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KG_HAVE_X86 1
#endif

/* Lanes of the portable sum: a fixed-width inner loop the compiler may turn into vector code. */
#define LANES 16

/* The polynomial's coefficients and ln 2 split in two (C1 exact in few bits, C2 the rest). */
#define EXP_LO -87.0f
#define LOG2E 1.44269504f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

/* e^x for x <= 0 to ~2 ulp; below -87 it gives e^-87 (the logits' softmax never needs less). */
static inline float exp_scalar(float x)
{
    x = x < EXP_LO ? EXP_LO : x;
    float n = floorf(x * LOG2E + 0.5f);
    float r = x - n * LN2_HI - n * LN2_LO;
    float p = P0;
    p = p * r + P1;
    p = p * r + P2;
    p = p * r + P3;
    p = p * r + P4;
    p = p * r + P5;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } two = {.i = ((int32_t)n + 127) << 23};
    return p * two.f;
}

static float max_scalar(const float *z, int64_t n)
{
    float m = -INFINITY;
    for (int64_t k = 0; k < n; k++)
        m = z[k] > m ? z[k] : m;
    return m;
}

static float sum_exp_scalar(const float *z, int64_t n, float m)
{
    float acc[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += exp_scalar(z[k + j] - m);
    float s = 0.0f;
    for (; k < n; k++)
        s += exp_scalar(z[k] - m);
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

static void scale_exp_scalar(float *z, int64_t n, float shift, float g)
{
    for (int64_t k = 0; k < n; k++)
        z[k] = g * exp_scalar(z[k] - shift);
}

#ifdef KG_HAVE_X86
#define T512 __attribute__((target("avx512f")))

T512 static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_LO));
    __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5f)),
                                    _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n); /* p·2^n, n an integer in [-126, 0] */
}

/* The tail of fewer than 16 entries: a masked load (masked-off lanes read nothing). */
T512 static inline __mmask16 tail_mask(int64_t left) { return (__mmask16)((1u << left) - 1u); }

T512 static float max_avx512(const float *z, int64_t n)
{
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        m = _mm512_max_ps(m, _mm512_loadu_ps(z + k));
    if (k < n)
        m = _mm512_mask_max_ps(m, tail_mask(n - k), m, _mm512_maskz_loadu_ps(tail_mask(n - k), z + k));
    return _mm512_reduce_max_ps(m);
}

T512 static float sum_exp_avx512(const float *z, int64_t n, float m)
{
    __m512 vm = _mm512_set1_ps(m), a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) { /* two accumulators: the adds' latency off the path */
        a0 = _mm512_add_ps(a0, exp16(_mm512_sub_ps(_mm512_loadu_ps(z + k), vm)));
        a1 = _mm512_add_ps(a1, exp16(_mm512_sub_ps(_mm512_loadu_ps(z + k + 16), vm)));
    }
    for (; k + 16 <= n; k += 16)
        a0 = _mm512_add_ps(a0, exp16(_mm512_sub_ps(_mm512_loadu_ps(z + k), vm)));
    if (k < n) {
        __mmask16 t = tail_mask(n - k);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, z + k), vm));
        a1 = _mm512_mask_add_ps(a1, t, a1, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

T512 static void scale_exp_avx512(float *z, int64_t n, float shift, float g)
{
    __m512 vs = _mm512_set1_ps(shift), vg = _mm512_set1_ps(g);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(z + k, _mm512_mul_ps(vg, exp16(_mm512_sub_ps(_mm512_loadu_ps(z + k), vs))));
    if (k < n) {
        __mmask16 t = tail_mask(n - k);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, z + k), vs));
        _mm512_mask_storeu_ps(z + k, t, _mm512_mul_ps(vg, e));
    }
}
#define T256 __attribute__((target("avx2,fma")))

T256 static inline __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n for n an integer in [-126, 0]: its exponent field, as exp_scalar builds it */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* The tail of fewer than 8 entries: lanes [0, left) on (AVX's masked load reads nothing else). */
T256 static inline __m256i tail8(int64_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

T256 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

T256 static float max_avx2(const float *z, int64_t n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(z + k));
    if (k < n) { /* the lanes past the row keep -inf */
        __m256i t = tail8(n - k);
        m = _mm256_max_ps(m, _mm256_blendv_ps(m, _mm256_maskload_ps(z + k, t),
                                              _mm256_castsi256_ps(t)));
    }
    __m128 v = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_max_ss(v, _mm_movehdup_ps(v)));
}

T256 static float sum_exp_avx2(const float *z, int64_t n, float m)
{
    __m256 vm = _mm256_set1_ps(m), a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) { /* two accumulators: the adds' latency off the path */
        a0 = _mm256_add_ps(a0, exp8(_mm256_sub_ps(_mm256_loadu_ps(z + k), vm)));
        a1 = _mm256_add_ps(a1, exp8(_mm256_sub_ps(_mm256_loadu_ps(z + k + 8), vm)));
    }
    for (; k + 8 <= n; k += 8)
        a0 = _mm256_add_ps(a0, exp8(_mm256_sub_ps(_mm256_loadu_ps(z + k), vm)));
    if (k < n) {
        __m256i t = tail8(n - k);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(z + k, t), vm));
        a1 = _mm256_add_ps(a1, _mm256_and_ps(e, _mm256_castsi256_ps(t)));
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

T256 static void scale_exp_avx2(float *z, int64_t n, float shift, float g)
{
    __m256 vs = _mm256_set1_ps(shift), vg = _mm256_set1_ps(g);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(z + k, _mm256_mul_ps(vg, exp8(_mm256_sub_ps(_mm256_loadu_ps(z + k), vs))));
    if (k < n) {
        __m256i t = tail8(n - k);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(z + k, t), vs));
        _mm256_maskstore_ps(z + k, t, _mm256_mul_ps(vg, e));
    }
}
#endif

/* ---- Which path ----------------------------------------------------------------------------- */

static struct {
    bool avx2, avx512, avx512dq;
    int cap; /* the best path allowed: KG_EXP_PATH=scalar|avx2, or kg_cpu_exp_cap */
} isa;

static void detect(void)
{
#ifdef KG_HAVE_X86
    __builtin_cpu_init();
    isa.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    isa.avx512 = __builtin_cpu_supports("avx512f");
    isa.avx512dq = isa.avx512 && __builtin_cpu_supports("avx512dq");
#endif
    const char *want = getenv("KG_EXP_PATH");
    isa.cap = !want                        ? KG_EXP_AVX512
              : strcmp(want, "scalar") == 0 ? KG_EXP_SCALAR
              : strcmp(want, "avx2") == 0   ? KG_EXP_AVX2
                                            : KG_EXP_AVX512;
}

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

kg_exp_path kg_cpu_exp_path(void)
{
    pthread_once(&detect_once, detect);
    return isa.avx512 && isa.cap >= KG_EXP_AVX512 ? KG_EXP_AVX512
           : isa.avx2 && isa.cap >= KG_EXP_AVX2   ? KG_EXP_AVX2
                                                  : KG_EXP_SCALAR;
}

bool kg_cpu_has_avx512dq(void)
{
    pthread_once(&detect_once, detect);
    return isa.avx512dq;
}

void kg_cpu_exp_cap(kg_exp_path cap)
{
    pthread_once(&detect_once, detect);
    isa.cap = (int)cap;
}

float kg_cpu_row_max(kg_exp_path path, const float *z, int64_t n)
{
#ifdef KG_HAVE_X86
    if (path == KG_EXP_AVX512)
        return max_avx512(z, n);
    if (path == KG_EXP_AVX2)
        return max_avx2(z, n);
#endif
    (void)path;
    return max_scalar(z, n);
}

float kg_cpu_sum_exp(kg_exp_path path, const float *z, int64_t n, float m)
{
#ifdef KG_HAVE_X86
    if (path == KG_EXP_AVX512)
        return sum_exp_avx512(z, n, m);
    if (path == KG_EXP_AVX2)
        return sum_exp_avx2(z, n, m);
#endif
    (void)path;
    return sum_exp_scalar(z, n, m);
}

void kg_cpu_scale_exp(kg_exp_path path, float *z, int64_t n, float shift, float g)
{
#ifdef KG_HAVE_X86
    if (path == KG_EXP_AVX512) {
        scale_exp_avx512(z, n, shift, g);
        return;
    }
    if (path == KG_EXP_AVX2) {
        scale_exp_avx2(z, n, shift, g);
        return;
    }
#endif
    (void)path;
    scale_exp_scalar(z, n, shift, g);
}
