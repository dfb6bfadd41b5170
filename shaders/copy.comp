#version 450
// copy.comp — copy a strided view into another (possibly strided) view of the same shape and
// element size: kg_contiguous, slice backward and concat use it. Built twice: for 4-byte
// elements, and with ELEM16 for 2-byte ones (that variant needs 16-bit storage).
// addr: 0 dst, 1 src   u: 1-4 dims, 5-8 src strides,
// 9-12 dst strides, 13 element count
#extension GL_GOOGLE_include_directive : require
#ifdef ELEM16
#define KG_16BIT
#endif
#include "common.glsl"

layout(local_size_x = 256) in;

void main() {
    uint i = flat_id(256);
    if (i >= pc.u[13])
        return;
    uint d1 = pc.u[2], d2 = pc.u[3], d3 = pc.u[4];
    uint i3 = i % d3, r = i / d3, i2 = r % d2; r /= d2;
    uint i1 = r % d1, i0 = r / d1;
    int so = int(i0) * si(5) + int(i1) * si(6) + int(i2) * si(7) + int(i3) * si(8);
    int dst = int(i0) * si(9) + int(i1) * si(10) + int(i2) * si(11) + int(i3) * si(12);
#ifdef ELEM16
    U16(pc.addr[0]).v[dst] = U16(pc.addr[1]).v[so];
#else
    U32(pc.addr[0]).v[dst] = U32(pc.addr[1]).v[so];
#endif
}
