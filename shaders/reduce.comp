#version 450
// reduce.comp — sum or max over one axis of a contiguous tensor seen as (outer, n, inner): one
// invocation per output element walks the elements of its column, at most pc.chunk of them, so
// dst is (outer, ceil(n / chunk), inner) partial results (chunk = n: the reduction itself).
// Push constants: reduce_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { reduce_push pc; };
layout(local_size_x = 256) in;

void main() {
    uint i = flat_id(256);
    uint outer = pc.outer, n = pc.n, inner = pc.inner;
    uint parts = max(1u, (n + pc.chunk - 1) / pc.chunk); // an empty axis still gives its 0 / -inf
    if (i >= outer * parts * inner)
        return;
    uint o = i / (parts * inner), part = i / inner % parts, k = i % inner;
    F32 x = F32(pc.x);
    uint j0 = part * pc.chunk, j1 = min(n, j0 + pc.chunk);
    uint base = o * n * inner + k;
    float acc;
    switch (pc.mode) {
    case RED_SUM:
        acc = 0.0;
        for (uint j = j0; j < j1; j++)
            acc += x.v[base + j * inner];
        break;
    case RED_MAX:
        acc = uintBitsToFloat(0xff800000u); // -inf
        for (uint j = j0; j < j1; j++)
            acc = max(acc, x.v[base + j * inner]);
        break;
    default:
        acc = bad_mode(pc.status, pc.op, pc.mode);
        break;
    }
    F32(pc.dst).v[i] = acc;
}
