#version 450
// kron.comp — out[i·p + k, j·q + l] = A[i, j] · B[k, l]. One invocation per output element.
// Push constants: kron_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { kron_push pc; };
layout(local_size_x = 256) in;

void main() {
    uint m = pc.m, n = pc.n, p = pc.p, q = pc.q;
    uint e = flat_id(256);
    if (e >= m * n * p * q)
        return;
    uint row = e / (n * q), col = e % (n * q);
    uint i = row / p, k = row % p, j = col / q, l = col % q;
    F32(pc.dst).v[e] = F32(pc.a).v[i * n + j] * F32(pc.b).v[k * q + l];
}
