#version 450
// cast.comp — convert contiguous elements between f32, f16, bf16 and i32 exactly as kg_cast on
// the CPU (tensor/dtype.c): round to nearest even, i32 truncates toward zero and saturates. The
// half conversions are written out rather than left to packHalf2x16, whose rounding and
// subnormal handling the GLSL spec leaves to the vendor.
// addr: 0 dst, 1 src   u: 0 from dtype, 1 to dtype, 2 element count
#extension GL_GOOGLE_include_directive : require
#define KG_16BIT
#include "common.glsl"
#include "codes.h"

layout(local_size_x = 256) in;

float f16_to_f32(uint h) {
    uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu)
        return uintBitsToFloat(sign | 0x7f800000u | (m << 13));
    if (e == 0u) {
        float v = float(m) * (1.0 / 16777216.0);
        return sign != 0u ? -v : v;
    }
    return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t to_f16(float f) {
    uint u = floatBitsToUint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return uint16_t(sign | 0x7e00u);
    if (a >= 0x477ff000u)
        return uint16_t(sign | 0x7c00u);
    if (a < 0x38800000u) {
        float v = uintBitsToFloat(a) * 16777216.0;
        uint m = uint(v);
        float rest = v - float(m);
        if (rest > 0.5 || (rest == 0.5 && (m & 1u) != 0u))
            m++;
        return uint16_t(sign | m);
    }
    uint r = a + 0xfffu + ((a >> 13) & 1u);
    return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

float load(uint dt, uint i) {
    if (dt == DT_F16) return f16_to_f32(uint(U16(pc.addr[1]).v[i]));
    if (dt == DT_BF16) return uintBitsToFloat(uint(U16(pc.addr[1]).v[i]) << 16);
    if (dt == DT_I32) return float(I32(pc.addr[1]).v[i]);
    return F32(pc.addr[1]).v[i];
}

uint16_t to_bf16(float f) {
    uint u = floatBitsToUint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return uint16_t((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

void main() {
    uint i = flat_id(256);
    if (i >= pc.u[2])
        return;
    float v = load(pc.u[0], i);
    uint to = pc.u[1];
    if (to == DT_F16)
        U16(pc.addr[0]).v[i] = to_f16(v);
    else if (to == DT_BF16)
        U16(pc.addr[0]).v[i] = to_bf16(v);
    else if (to == DT_I32)
        I32(pc.addr[0]).v[i] = isnan(v) ? 0 : v >= 2147483648.0 ? 2147483647
                             : v <= -2147483648.0 ? int(0x80000000u) : int(v);
    else
        F32(pc.addr[0]).v[i] = v;
}
