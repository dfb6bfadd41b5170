#version 450
// dequant.comp — kg_cast of a stored weight W [N, K] (f16, bf16 or block-quantized) to f32,
// one element per invocation, with the decoding matmul_q.comp uses (quant.glsl).
// Push constants: dequant_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "quant.glsl"

layout(push_constant) uniform Push { dequant_push pc; };
layout(local_size_x = 256) in;

void main() {
    uint i = flat_id(256);
    if (i >= pc.n * pc.k)
        return;
    F32(pc.dst).v[i] = q_known(pc.dtype) ? q_load(pc.src, pc.dtype, pc.n, pc.k, i / pc.k, i % pc.k)
                                         : bad_mode(pc.status, pc.op, pc.dtype);
}
