/* dropout_mask.c — a row of dropout's keep factors: f[k] = keep_scale where element index0 + k
 * is kept (kg__uniform01(seed, index0 + k) >= p, the draw every backend makes and the backward
 * pass makes again), else 0. The draw is splitmix64, three 64-bit multiplies per element: one at
 * a time that was dropout's whole cost. The same C loop is compiled for AVX512-DQ (vpmullq: 8
 * multiplies at once; dropout's time in a DistilBERT step 44 → 27 ms) and for AVX2 (which
 * multiplies 64 bits in 32-bit pieces: 44 → 36 ms), and the compiler vectorizes it; the factors
 * are the same bits on every path (the draw is integer arithmetic, its conversion to float
 * exact). KG_EXP_PATH (cpu/exp_rows.c's switch for the vector paths) caps the path.
 */
#include "cpu.h"

static inline __attribute__((always_inline)) void mask_loop(float *f, int64_t n, uint64_t seed,
                                                            uint64_t index0, float p,
                                                            float keep_scale)
{
    for (int64_t k = 0; k < n; k++)
        f[k] = kg__uniform01(seed, index0 + (uint64_t)k) >= p ? keep_scale : 0.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define KG_MASK_DQ 1
__attribute__((target("avx512f,avx512dq"))) static void mask_dq(float *f, int64_t n,
                                                                  uint64_t seed, uint64_t index0,
                                                                  float p, float keep_scale)
{
    mask_loop(f, n, seed, index0, p, keep_scale);
}

__attribute__((target("avx2"))) static void mask_avx2(float *f, int64_t n, uint64_t seed,
                                                       uint64_t index0, float p,
                                                       float keep_scale)
{
    mask_loop(f, n, seed, index0, p, keep_scale);
}
#endif

void kg_cpu_dropout_mask(float *f, int64_t n, uint64_t seed, uint64_t index0, float p,
                         float keep_scale)
{
#ifdef KG_MASK_DQ
    kg_exp_path path = kg_cpu_exp_path();
    if (path == KG_EXP_AVX512 && kg_cpu_has_avx512dq()) {
        mask_dq(f, n, seed, index0, p, keep_scale);
        return;
    }
    if (path >= KG_EXP_AVX2) {
        mask_avx2(f, n, seed, index0, p, keep_scale);
        return;
    }
#endif
    mask_loop(f, n, seed, index0, p, keep_scale);
}
