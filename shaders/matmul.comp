#version 450
// matmul.comp — batched C = op(A)·op(B) with shared-memory tiles. Transposed operands are read
// by index math (no copies); accumulation is f32. Each invocation computes a TM × TN block of C;
// a workgroup covers a BM × BN tile, stepping through K in BK slices.
// Push constants: matmul_push (push.h).
// The grid: x over N tiles, y over M tiles, z over batches (in chunks the device's grid allows).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { matmul_push pc; };

layout(constant_id = 0) const uint BM = 32;
layout(constant_id = 1) const uint BN = 32;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
// BM/TM × BN/TN invocations; the C side sets local_size_x to that product.
layout(local_size_x_id = 5) in;

shared float As[BK][BM];
shared float Bs[BK][BN];

void main() {
    uint M = pc.M, N = pc.N, K = pc.K, lda = pc.lda, ldb = pc.ldb;
    bool ta = pc.trans_a != 0u, tb = pc.trans_b != 0u;
    uint bz = gl_WorkGroupID.z + pc.batch0, b0 = bz / pc.batch_inner, b1 = bz % pc.batch_inner;
    uint aoff = b0 * pc.a_batch_stride[0] + b1 * pc.a_batch_stride[1];
    uint boff = b0 * pc.b_batch_stride[0] + b1 * pc.b_batch_stride[1];
    F32 A = F32(pc.a), B = F32(pc.b), C = F32(pc.c);
    uint coff = bz * M * N;

    uint tid = gl_LocalInvocationID.x, threads = (BM / TM) * (BN / TN);
    uint tr = tid / (BN / TN), tc = tid % (BN / TN);
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    float acc[TM][TN];
    for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++)
            acc[i][j] = 0.0;

    for (uint k0 = 0; k0 < K; k0 += BK) {
        for (uint e = tid; e < BK * BM; e += threads) { // As[k][m] = op(A)[row0 + m, k0 + k]
            uint k = e / BM, m = e % BM, gr = row0 + m, gk = k0 + k;
            float v = 0.0;
            if (gr < M && gk < K)
                v = ta ? A.v[aoff + gk * lda + gr] : A.v[aoff + gr * lda + gk];
            As[k][m] = v;
        }
        for (uint e = tid; e < BK * BN; e += threads) { // Bs[k][n] = op(B)[k0 + k, col0 + n]
            uint k = e / BN, n = e % BN, gc = col0 + n, gk = k0 + k;
            float v = 0.0;
            if (gc < N && gk < K)
                v = tb ? B.v[boff + gc * ldb + gk] : B.v[boff + gk * ldb + gc];
            Bs[k][n] = v;
        }
        barrier();
        for (uint k = 0; k < BK; k++) {
            float a[TM], b[TN];
            for (uint i = 0; i < TM; i++)
                a[i] = As[k][tr * TM + i];
            for (uint j = 0; j < TN; j++)
                b[j] = Bs[k][tc * TN + j];
            for (uint i = 0; i < TM; i++)
                for (uint j = 0; j < TN; j++)
                    acc[i][j] += a[i] * b[j];
        }
        barrier();
    }
    for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++) {
            uint r = row0 + tr * TM + i, c = col0 + tc * TN + j;
            if (r < M && c < N)
                C.v[coff + r * N + c] = acc[i][j];
        }
}
