#version 450
// matmul_q.comp — y (M, out) = x (M, in) · op(W) for a frozen weight W [N, K] stored as f32,
// f16, bf16 or block-quantized: op(W) is Wᵀ (the forward of a linear layer) or W (its input
// gradient). W's elements are decoded (quant.glsl) as its tile is loaded into shared memory, so
// no f32 copy of W exists. The tiling is matmul.comp's: each invocation computes a TM × TN block,
// a workgroup a BM × BN tile, stepping through the inner dimension in BK slices.
// Push constants: matmul_q_push (push.h). The grid: x over out's tiles, y over M's.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "quant.glsl"

layout(push_constant) uniform Push { matmul_q_push pc; };

const uint BM = 32, BN = 32, BK = 16, TM = 4, TN = 4;
layout(local_size_x = 64) in; // (BM / TM) · (BN / TN)

shared float Xs[BK][BM];
shared float Ws[BK][BN];

void main() {
    bool tr = pc.trans != 0u;
    uint M = pc.M, IN = tr ? pc.k : pc.n, OUT = tr ? pc.n : pc.k;
    if (!q_known(pc.dtype)) {
        if (gl_LocalInvocationID.x == 0u)
            bad_mode(pc.status, pc.op, pc.dtype);
        return;
    }
    F32 X = F32(pc.x), Y = F32(pc.y);
    uint tid = gl_LocalInvocationID.x, threads = 64u;
    uint tr_ = tid / (BN / TN), tc = tid % (BN / TN);
    uint row0 = pc.row0 + gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    float acc[TM][TN];
    for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++)
            acc[i][j] = 0.0;

    for (uint k0 = 0; k0 < IN; k0 += BK) {
        for (uint e = tid; e < BK * BM; e += threads) { // Xs[k][m] = x[row0 + m, k0 + k]
            uint k = e / BM, m = e % BM, gr = row0 + m, gk = k0 + k;
            Xs[k][m] = gr < M && gk < IN ? X.v[gr * IN + gk] : 0.0;
        }
        for (uint e = tid; e < BK * BN; e += threads) { // Ws[k][c] = op(W)[k0 + k, col0 + c]
            uint k = e / BN, c = e % BN, gc = col0 + c, gk = k0 + k;
            float v = 0.0;
            if (gc < OUT && gk < IN)
                v = tr ? q_load(pc.w, pc.dtype, pc.n, pc.k, gc, gk)
                       : q_load(pc.w, pc.dtype, pc.n, pc.k, gk, gc);
            Ws[k][c] = v;
        }
        barrier();
        for (uint k = 0; k < BK; k++) {
            float a[TM], b[TN];
            for (uint i = 0; i < TM; i++)
                a[i] = Xs[k][tr_ * TM + i];
            for (uint j = 0; j < TN; j++)
                b[j] = Ws[k][tc * TN + j];
            for (uint i = 0; i < TM; i++)
                for (uint j = 0; j < TN; j++)
                    acc[i][j] += a[i] * b[j];
        }
        barrier();
    }
    for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++) {
            uint r = row0 + tr_ * TM + i, c = col0 + tc * TN + j;
            if (r < M && c < OUT)
                Y.v[r * OUT + c] = acc[i][j];
        }
}
