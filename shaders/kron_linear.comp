#version 450
// kron_linear.comp — y = x·(A ⊗ B1·B2)ᵀ in one kernel, for one token per workgroup, without
// ever forming the d_out × d_in matrix (REFERENCE.md §1.4). With X the token as (dA1, dB1):
//   T1 = X·B2ᵀ (dA1, R)   T2 = A·T1 (dA2, R)   Y = T2·B1ᵀ (dA2, dB2) = y
// T1 and T2 live in shared memory. lowrank_linear is the case A = [1] (dA1 = dA2 = 1).
// addr: 0 y (N, dA2·dB2), 1 x (N, dA1·dB1), 2 A (dA2, dA1) or 0 for [1], 3 B1 (dB2, R); B2 in u
// u: 0 N, 1 dA1, 2 dA2, 3 dB1, 4 dB2, 5 R, 6-7 B2 address (lo, hi)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 128) in;

const uint MAX_T = 2048; // dA1·R + dA2·R must fit (checked on the C side)
shared float T[MAX_T];

void main() {
    uint token = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    uint N = pc.u[0], dA1 = pc.u[1], dA2 = pc.u[2], dB1 = pc.u[3], dB2 = pc.u[4], R = pc.u[5];
    if (token >= N)
        return; // uniform across the workgroup: no barrier is skipped by some invocations only
    uint tid = gl_LocalInvocationID.x;
    F32 x = F32(pc.addr[1]), B1 = F32(pc.addr[3]);
    F32 B2 = F32(uint64_t(pc.u[6]) | (uint64_t(pc.u[7]) << 32));
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
        if (pc.addr[2] == 0ul) {
            acc = T[i * R + r];
        } else {
            F32 A = F32(pc.addr[2]);
            for (uint j = 0; j < dA1; j++)
                acc += A.v[i * dA1 + j] * T[j * R + r];
        }
        T[t2 + e] = acc;
    }
    barrier();
    F32 y = F32(pc.addr[0]);
    uint yo = token * dA2 * dB2;
    for (uint e = tid; e < dA2 * dB2; e += 128) { // Y[i, k] = Σ_r T2[i, r] · B1[k, r]
        uint i = e / dB2, k = e % dB2;
        float acc = 0.0;
        for (uint r = 0; r < R; r++)
            acc += T[t2 + i * R + r] * B1.v[k * R + r];
        y.v[yo + e] = acc;
    }
}
