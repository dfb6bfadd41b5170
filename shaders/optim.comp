#version 450
// optim.comp — optimizer steps in place, one invocation per parameter element: AdamW
// (decoupled weight decay) and SGD with momentum, with the formulas of the CPU kernels
// (tensor/ops/optim.c; kg_tensor.h states them).
// Push constants: optim_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { optim_push pc; };
layout(local_size_x = 256) in;

void adamw(uint i) {
    F32 p = F32(pc.param), m = F32(pc.m), v = F32(pc.v);
    float g = F32(pc.grad).v[i];
    float mi = pc.beta1 * m.v[i] + (1.0 - pc.beta1) * g;
    float vi = pc.beta2 * v.v[i] + (1.0 - pc.beta2) * g * g;
    m.v[i] = mi;
    v.v[i] = vi;
    p.v[i] = p.v[i] * (1.0 - pc.lr * pc.weight_decay) -
             pc.lr * (mi / pc.c1) / (sqrt(vi / pc.c2) + pc.eps);
}

void sgd(uint i) {
    F32 p = F32(pc.param), buf = F32(pc.m);
    float g = F32(pc.grad).v[i] + pc.weight_decay * p.v[i];
    if (pc.m != 0ul) {
        g = pc.first != 0u ? g : pc.momentum * buf.v[i] + g;
        buf.v[i] = g;
    }
    p.v[i] -= pc.lr * g;
}

void main() {
    uint i = flat_id(256);
    if (i >= pc.n)
        return;
    switch (pc.mode) {
    case OPT_ADAMW: adamw(i); break;
    case OPT_SGD: sgd(i); break;
    default: F32(pc.param).v[i] = bad_mode(pc.status, pc.op, pc.mode); break;
    }
}
