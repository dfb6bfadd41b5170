#version 450
// cast.comp — convert contiguous elements between f32, f16, bf16 and i32 (as kg_cast on the
// CPU: round to nearest even, i32 truncates toward zero and saturates).
// addr: 0 dst, 1 src   u: 0 from dtype, 1 to dtype, 2 element count
#extension GL_GOOGLE_include_directive : require
#define KG_16BIT
#include "common.glsl"
#include "codes.h"

layout(local_size_x = 256) in;

float load(uint dt, uint i) {
    if (dt == DT_F16) return unpackHalf2x16(uint(U16(pc.addr[1]).v[i])).x;
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
        U16(pc.addr[0]).v[i] = uint16_t(packHalf2x16(vec2(v, 0.0)) & 0xffffu);
    else if (to == DT_BF16)
        U16(pc.addr[0]).v[i] = to_bf16(v);
    else if (to == DT_I32)
        I32(pc.addr[0]).v[i] = isnan(v) ? 0 : v >= 2147483648.0 ? 2147483647
                             : v <= -2147483648.0 ? int(0x80000000u) : int(v);
    else
        F32(pc.addr[0]).v[i] = v;
}
