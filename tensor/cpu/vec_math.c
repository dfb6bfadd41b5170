/* vec_math.c — expf and erff over an array, in place: the libm call per element that the
 * elementwise kernels (ops/elementwise.c: exp, sigmoid, silu, erf, gelu, SwiGLU and both
 * activations' backward; ops/nn.c: softmax) would otherwise make. Where the CPU has AVX-512 and
 * glibc's libmvec is linked, 16 lanes at a time through libmvec (_ZGVeN16v_expf, _ZGVeN16v_erff:
 * glibc's own vector variants, within 4 ulp of the exact value over the whole range, inf and NaN
 * included); a tail shorter than 16 goes through the same call on a padded copy, so an element's
 * result does not depend on where in the array it sits. Elsewhere, or with KG_EXP_PATH=scalar
 * (the switch of cpu/exp_rows.c), libm's expf and erff one at a time.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

#if defined(KG_HAVE_LIBMVEC) && defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KG_VEC_MVEC 1

/* Compiled for AVX-512 (an attribute, which gcc and clang both honour), called only where the CPU
 * has it. */
#define T512 __attribute__((target("avx512f")))

/* libmvec's AVX-512 variants (the x86-64 vector ABI's names: 'e' = AVX-512, N16 = 16 lanes). */
T512 __m512 _ZGVeN16v_expf(__m512 x);
T512 __m512 _ZGVeN16v_erff(__m512 x);

typedef __m512 (*vec_fn)(__m512);

T512 static void apply16(vec_fn f, float *v, int64_t n)
{
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(v + k, f(_mm512_loadu_ps(v + k)));
    if (k < n) { /* the tail on a zero-padded copy, through the same call */
        float pad[16] = {0};
        memcpy(pad, v + k, sizeof(float) * (size_t)(n - k));
        _mm512_storeu_ps(pad, f(_mm512_loadu_ps(pad)));
        memcpy(v + k, pad, sizeof(float) * (size_t)(n - k));
    }
}
#endif

void kg_cpu_expf_inplace(float *v, int64_t n)
{
#ifdef KG_VEC_MVEC
    if (kg_cpu_exp_path() == KG_EXP_AVX512) {
        apply16(_ZGVeN16v_expf, v, n);
        return;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        v[k] = expf(v[k]);
}

void kg_cpu_erff_inplace(float *v, int64_t n)
{
#ifdef KG_VEC_MVEC
    if (kg_cpu_exp_path() == KG_EXP_AVX512) {
        apply16(_ZGVeN16v_erff, v, n);
        return;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        v[k] = erff(v[k]);
}

bool kg_cpu_vec_math(void)
{
#ifdef KG_VEC_MVEC
    return kg_cpu_exp_path() == KG_EXP_AVX512;
#else
    return false;
#endif
}
