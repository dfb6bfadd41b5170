#version 450
// kron.comp — out[i·p + k, j·q + l] = A[i, j] · B[k, l]. One invocation per output element.
// addr: 0 out, 1 A (m, n), 2 B (p, q)   u: 0 m, 1 n, 2 p, 3 q
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;

void main() {
    uint m = pc.u[0], n = pc.u[1], p = pc.u[2], q = pc.u[3];
    uint e = flat_id(256);
    if (e >= m * n * p * q)
        return;
    uint row = e / (n * q), col = e % (n * q);
    uint i = row / p, k = row % p, j = col / q, l = col % q;
    F32(pc.addr[0]).v[e] = F32(pc.addr[1]).v[i * n + j] * F32(pc.addr[2]).v[k * q + l];
}
