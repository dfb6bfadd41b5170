#version 450
// copy.comp — copy a strided view into another (possibly strided) view of the same shape and
// element size: kg_contiguous, slice backward and concat use it. Built twice: for 4-byte
// elements, and with ELEM16 for 2-byte ones (that variant needs 16-bit storage).
// Push constants: copy_push (push.h).
#extension GL_GOOGLE_include_directive : require
#ifdef ELEM16
#define KG_16BIT
#endif
#include "common.glsl"

layout(push_constant) uniform Push { copy_push pc; };
layout(local_size_x = 256) in;

void main() {
    uint i = flat_id(256);
    if (i >= pc.n)
        return;
    uint i3 = i % pc.dim[3], r = i / pc.dim[3], i2 = r % pc.dim[2]; r /= pc.dim[2];
    uint i1 = r % pc.dim[1], i0 = r / pc.dim[1];
    int src = int(i0) * pc.src_stride[0] + int(i1) * pc.src_stride[1] +
              int(i2) * pc.src_stride[2] + int(i3) * pc.src_stride[3];
    int dst = int(i0) * pc.dst_stride[0] + int(i1) * pc.dst_stride[1] +
              int(i2) * pc.dst_stride[2] + int(i3) * pc.dst_stride[3];
#ifdef ELEM16
    U16(pc.dst).v[dst] = U16(pc.src).v[src];
#else
    U32(pc.dst).v[dst] = U32(pc.src).v[src];
#endif
}
