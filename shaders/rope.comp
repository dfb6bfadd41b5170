#version 450
// rope.comp — rotary embedding, HF rotate-half: the pair (i, i + D/2) of the row at position
// pos0 + t is rotated by (pos0 + t)·θ^(-2i/D); the inverse rotation for the backward pass.
// addr: 0 out, 1 x (rows, D) with rows = (..., T)   u: 0 rows, 1 T, 2 D, 3 pos0, 4 θ, 5 inverse
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;

void main() {
    uint rows = pc.u[0], T = pc.u[1], D = pc.u[2], half_d = D / 2;
    uint e = flat_id(256);
    if (e >= rows * half_d)
        return;
    uint row = e / half_d, i = e % half_d;
    float pos = float(pc.u[3] + row % T);
    float inv_freq = 1.0 / pow(sf(4), float(2 * i) / float(D));
    float ang = pos * inv_freq, c = cos(ang), s = sin(ang) * (pc.u[5] != 0u ? -1.0 : 1.0);
    F32 x = F32(pc.addr[1]), y = F32(pc.addr[0]);
    float x1 = x.v[row * D + i], x2 = x.v[row * D + i + half_d];
    y.v[row * D + i] = x1 * c - x2 * s;
    y.v[row * D + i + half_d] = x2 * c + x1 * s;
}
