/* vec_math.c — expf and erff over an array, in place: the libm call per element that the
 * elementwise kernels (ops/elementwise.c: exp, sigmoid, silu, erf, gelu, SwiGLU and both
 * activations' backward; ops/nn.c: softmax) would otherwise make. Where glibc's libmvec is
 * linked, through its own vector variants (within 4 ulp of the exact value over the whole range,
 * inf and NaN included): 16 lanes at a time where the CPU has AVX-512 (_ZGVeN16v_expf,
 * _ZGVeN16v_erff), 8 where it has AVX2 and FMA (_ZGVdN8v_expf, _ZGVdN8v_erff); a tail shorter
 * than a vector goes through the same call on a padded copy, so an element's result does not
 * depend on where in the array it sits. Elsewhere, or with KG_EXP_PATH=scalar (the switch of
 * cpu/exp_rows.c), libm's expf and erff one at a time.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

#if defined(KG_HAVE_LIBMVEC) && defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KG_VEC_MVEC 1

/* Compiled for AVX-512 or AVX2 (attributes, which gcc and clang both honour), called only where
 * the CPU has it. */
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))

/* libmvec's variants (the x86-64 vector ABI's names: 'e' = AVX-512 with 16 lanes, 'd' = AVX2
 * with 8). */
T512 __m512 _ZGVeN16v_expf(__m512 x);
T512 __m512 _ZGVeN16v_erff(__m512 x);
T256 __m256 _ZGVdN8v_expf(__m256 x);
T256 __m256 _ZGVdN8v_erff(__m256 x);

/* f over v, a vector of LANES at a time; a tail shorter than that on a zero-padded copy,
 * through the same call. */
#define APPLY(name, target, vec, lanes, load, store)                                            \
    target static void name(vec (*f)(vec), float *v, int64_t n)                               \
    {                                                                                         \
        int64_t k = 0;                                                                        \
        for (; k + lanes <= n; k += lanes)                                                    \
            store(v + k, f(load(v + k)));                                                     \
        if (k < n) {                                                                          \
            float pad[lanes] = {0};                                                           \
            memcpy(pad, v + k, sizeof(float) * (size_t)(n - k));                              \
            store(pad, f(load(pad)));                                                         \
            memcpy(v + k, pad, sizeof(float) * (size_t)(n - k));                              \
        }                                                                                     \
    }
APPLY(apply16, T512, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps)
APPLY(apply8, T256, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps)
#endif

void kg_cpu_expf_inplace(float *v, int64_t n)
{
#ifdef KG_VEC_MVEC
    switch (kg_cpu_exp_path()) {
    case KG_EXP_AVX512: apply16(_ZGVeN16v_expf, v, n); return;
    case KG_EXP_AVX2: apply8(_ZGVdN8v_expf, v, n); return;
    case KG_EXP_SCALAR: break;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        v[k] = expf(v[k]);
}

void kg_cpu_erff_inplace(float *v, int64_t n)
{
#ifdef KG_VEC_MVEC
    switch (kg_cpu_exp_path()) {
    case KG_EXP_AVX512: apply16(_ZGVeN16v_erff, v, n); return;
    case KG_EXP_AVX2: apply8(_ZGVdN8v_erff, v, n); return;
    case KG_EXP_SCALAR: break;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        v[k] = erff(v[k]);
}

bool kg_cpu_vec_math(void)
{
#ifdef KG_VEC_MVEC
    return kg_cpu_exp_path() != KG_EXP_SCALAR;
#else
    return false;
#endif
}
