/* dtype.c — conversions between f32 and the 16-bit storage dtypes (IEEE half and bfloat16),
 * round-to-nearest-even, with infinities and NaN kept; and reading or writing one element of
 * any dtype as a number (kg_cast, kg_full and kg_tensor_to_f32 use them).
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float kg_bf16_to_f32(uint16_t h) { return from_bits((uint32_t)h << 16); }

uint16_t kg_f32_to_bf16(float f)
{
    uint32_t u = bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and a NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float kg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* inf or NaN */
        return from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man · 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kg_f32_to_f16(float f)
{
    uint32_t u = bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00; /* NaN */
    if (a >= 0x477ff000u)     /* rounds to beyond 65504: infinity */
        return sign | 0x7c00;
    if (a < 0x38800000u) {    /* below the smallest normal half: subnormal or zero */
        float v = from_bits(a) * 16777216.0f; /* in units of 2^-24 */
        uint32_t m = (uint32_t)v;
        float rest = v - (float)m;
        if (rest > 0.5f || (rest == 0.5f && (m & 1)))
            m++;
        return sign | (uint16_t)m;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1); /* round to nearest even at bit 13 */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

double kg__load(const void *base, kg_dtype dtype, int64_t i)
{
    switch (dtype) {
    case KG_DTYPE_F16: return kg_f16_to_f32(((const uint16_t *)base)[i]);
    case KG_DTYPE_BF16: return kg_bf16_to_f32(((const uint16_t *)base)[i]);
    case KG_DTYPE_I32: return ((const int32_t *)base)[i];
    case KG_DTYPE_F32: return ((const float *)base)[i];
    case KG_DTYPE_Q8_0: case KG_DTYPE_Q4_0: case KG_DTYPE_Q4_1: case KG_DTYPE_NF4: /* quant.c */
    case KG_DTYPE_COUNT: break;
    }
    KG_ASSERT(!"kg__load: dtypes are checked where tensors are made");
    return NAN;
}

void kg__store(void *base, kg_dtype dtype, int64_t i, double v)
{
    switch (dtype) {
    case KG_DTYPE_F16: ((uint16_t *)base)[i] = kg_f32_to_f16((float)v); break;
    case KG_DTYPE_BF16: ((uint16_t *)base)[i] = kg_f32_to_bf16((float)v); break;
    case KG_DTYPE_I32: /* truncates toward zero as C does, but saturates where C is undefined */
        ((int32_t *)base)[i] = v != v ? 0 : v >= 2147483648.0 ? INT32_MAX
                             : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
        break;
    case KG_DTYPE_F32: ((float *)base)[i] = (float)v; break;
    case KG_DTYPE_Q8_0: case KG_DTYPE_Q4_0: case KG_DTYPE_Q4_1: case KG_DTYPE_NF4: /* quant.c */
    case KG_DTYPE_COUNT: KG_ASSERT(!"kg__store: dtypes are checked where tensors are made"); break;
    }
}
