#version 450
// kron_linear.comp — y = x·(A ⊗ B1·B2)ᵀ in one kernel, for one token per workgroup, without
// ever forming the d_out × d_in matrix (docs/kron-lora.md derives it). With X the token as
// (dA1, dB1):
//   T1 = X·B2ᵀ (dA1, R)   T2 = A·T1 (dA2, R)   Y = T2·B1ᵀ (dA2, dB2) = y
// T1 and T2 live in shared memory; ops.c sends shapes where they do not fit
// ((dA1 + dA2)·R > KL_SHARED_FLOATS) down an unfused path of matmuls instead.
// lowrank_linear is the case A = [1] (dA1 = dA2 = 1, pc.a = 0).
// Push constants: kron_linear_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { kron_linear_push pc; };
layout(local_size_x = 128) in;

shared float T[KL_SHARED_FLOATS];

void main() {
    uint token = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint dA1 = pc.dA1, dA2 = pc.dA2, dB1 = pc.dB1, dB2 = pc.dB2, R = pc.R;
    if (token >= pc.N)
        return; // uniform across the workgroup: no barrier is skipped by some invocations only
    uint tid = gl_LocalInvocationID.x;
    F32 x = F32(pc.x), B1 = F32(pc.b1), B2 = F32(pc.b2);
    uint xo = token * dA1 * dB1;
    for (uint e = tid; e < dA1 * R; e += 128) { // T1[j, r] = Σ_l X[j, l] · B2[r, l]
        uint j = e / R, r = e % R;
        float acc = 0.0;
        for (uint l = 0; l < dB1; l++)
            acc += x.v[xo + j * dB1 + l] * B2.v[r * dB1 + l];
        T[e] = acc;
    }
    barrier();
    uint t2 = dA1 * R;
    for (uint e = tid; e < dA2 * R; e += 128) { // T2[i, r] = Σ_j A[i, j] · T1[j, r]
        uint i = e / R, r = e % R;
        float acc = 0.0;
        if (pc.a == 0ul) {
            acc = T[i * R + r];
        } else {
            F32 A = F32(pc.a);
            for (uint j = 0; j < dA1; j++)
                acc += A.v[i * dA1 + j] * T[j * R + r];
        }
        T[t2 + e] = acc;
    }
    barrier();
    F32 y = F32(pc.y);
    uint yo = token * dA2 * dB2;
    for (uint e = tid; e < dA2 * dB2; e += 128) { // Y[i, k] = Σ_r T2[i, r] · B1[k, r]
        uint i = e / dB2, k = e % dB2;
        float acc = 0.0;
        for (uint r = 0; r < R; r++)
            acc += T[t2 + i * R + r] * B1.v[k * R + r];
        y.v[yo + e] = acc;
    }
}
