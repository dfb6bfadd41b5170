#version 450
// rope.comp — rotary embedding, HF rotate-half: the pair (i, i + D/2) of the row at position
// pos0 + t is rotated by the angle (pos0 + t)·θ^(-2i/D); by its opposite for the backward pass.
// cos and sin come from a table made on the host (vulkan/ops.c) exactly as the CPU kernel makes
// them: GPU sin/cos of angles in the thousands of radians lose digits that libm keeps.
// Push constants: rope_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { rope_push pc; };
layout(local_size_x = 256) in;

void main() {
    uint half_d = pc.D / 2;
    uint e = flat_id(256);
    if (e >= pc.rows * half_d)
        return;
    uint row = e / half_d, i = e % half_d;
    uint k = 2 * ((row % pc.T) * half_d + i);
    F32 table = F32(pc.table), x = F32(pc.x), y = F32(pc.dst);
    float c = table.v[k], s = table.v[k + 1] * (pc.inverse != 0u ? -1.0 : 1.0);
    float x1 = x.v[row * pc.D + i], x2 = x.v[row * pc.D + i + half_d];
    y.v[row * pc.D + i] = x1 * c - x2 * s;
    y.v[row * pc.D + i + half_d] = x2 * c + x1 * s;
}
