#version 450
// reduce.comp — sum or max over one axis of a contiguous tensor seen as (outer, n, inner): one
// invocation per output element walks the n elements of its column.
// addr: 0 out, 1 x   u: 0 is max, 1 outer, 2 n, 3 inner
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;

void main() {
    uint i = flat_id(256);
    uint outer = pc.u[1], n = pc.u[2], inner = pc.u[3];
    if (i >= outer * inner)
        return;
    uint o = i / inner, k = i % inner;
    F32 x = F32(pc.addr[1]);
    uint base = o * n * inner + k;
    bool is_max = pc.u[0] != 0u;
    float acc = is_max ? uintBitsToFloat(0xff800000u) : 0.0; // -inf
    for (uint j = 0; j < n; j++) {
        float v = x.v[base + j * inner];
        acc = is_max ? max(acc, v) : acc + v;
    }
    F32(pc.addr[0]).v[i] = acc;
}
