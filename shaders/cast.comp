#version 450
// cast.comp — convert contiguous elements between f32, f16, bf16 and i32 exactly as kg_cast on
// the CPU (tensor/dtype.c): round to nearest even, i32 truncates toward zero and saturates. The
// half conversions are written out rather than left to packHalf2x16, whose rounding and
// subnormal handling the GLSL spec leaves to the vendor.
// Push constants: cast_push (push.h).
#extension GL_GOOGLE_include_directive : require
#define KG_16BIT
#include "common.glsl"

layout(push_constant) uniform Push { cast_push pc; };
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

uint16_t to_bf16(float f) {
    uint u = floatBitsToUint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return uint16_t((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

float load(uint i) {
    switch (pc.from) {
    case DT_F32: return F32(pc.src).v[i];
    case DT_F16: return f16_to_f32(uint(U16(pc.src).v[i]));
    case DT_BF16: return uintBitsToFloat(uint(U16(pc.src).v[i]) << 16);
    case DT_I32: return float(I32(pc.src).v[i]);
    default: return bad_mode(pc.status, pc.op, pc.from);
    }
}

void main() {
    uint i = flat_id(256);
    if (i >= pc.n)
        return;
    float v = load(i);
    switch (pc.to) {
    case DT_F32:
        F32(pc.dst).v[i] = v;
        break;
    case DT_F16:
        U16(pc.dst).v[i] = to_f16(v);
        break;
    case DT_BF16:
        U16(pc.dst).v[i] = to_bf16(v);
        break;
    case DT_I32:
        I32(pc.dst).v[i] = isnan(v) ? 0 : v >= 2147483648.0 ? 2147483647
                         : v <= -2147483648.0 ? int(0x80000000u) : int(v);
        break;
    default: // the element size is unknown too: nothing can be written
        bad_mode(pc.status, pc.op, pc.to);
        break;
    }
}
