#version 450
// rows.comp — ops over the last axis, one workgroup per row, with shared-memory reductions:
// softmax, log_softmax, layer_norm, rms_norm, and cross entropy (per-row losses, then a final
// one-workgroup mean).
// addr: 0 out, 1 x, 2 weight / targets, 3 bias / status
// u: 0 mode, 1 rows, 2 C, 3 eps, 4 has weight, 5 has bias, 6 ignore index, 7 kg_op (for errors)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "codes.h"

#define WG 256
#define ROW_CE_MEAN 100
layout(local_size_x = WG) in;

shared float red[WG];

float reduce_sum(float v) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s)
            red[t] += red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

float reduce_max(float v) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s)
            red[t] = max(red[t], red[t + s]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

#define NEG_INF uintBitsToFloat(0xff800000u)

void main() {
    uint mode = pc.u[0], rows = pc.u[1], C = pc.u[2], t = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    F32 dst = F32(pc.addr[0]), x = F32(pc.addr[1]);
    if (mode == ROW_CE_MEAN) { // x holds rows losses then rows valid flags
        float s = 0.0, n = 0.0;
        for (uint i = t; i < rows; i += WG) {
            s += x.v[i];
            n += x.v[rows + i];
        }
        s = reduce_sum(s);
        n = reduce_sum(n);
        if (t == 0)
            dst.v[0] = n > 0.0 ? s / n : 0.0;
        return;
    }
    if (row >= rows)
        return;
    uint base = row * C;
    if (mode == ROW_SOFTMAX || mode == ROW_LOG_SOFTMAX || mode == ROW_CROSS_ENTROPY) {
        int target = 0;
        if (mode == ROW_CROSS_ENTROPY) {
            target = I32(pc.addr[2]).v[row];
            if (target == si(6)) {
                if (t == 0) {
                    dst.v[row] = 0.0;
                    dst.v[rows + row] = 0.0;
                }
                return;
            }
            if (target < 0 || target >= int(C)) {
                if (t == 0)
                    report_range(pc.addr[3], pc.u[7], int(row), target, int(C));
                return;
            }
        }
        float mx = NEG_INF;
        for (uint k = t; k < C; k += WG)
            mx = max(mx, x.v[base + k]);
        mx = reduce_max(mx);
        if (mx == NEG_INF) { // every entry masked: zeros (log: -inf), as the CPU kernel
            for (uint k = t; k < C; k += WG)
                dst.v[base + k] = mode == ROW_LOG_SOFTMAX ? NEG_INF : 0.0;
            return;
        }
        float s = 0.0;
        for (uint k = t; k < C; k += WG)
            s += exp(x.v[base + k] - mx);
        s = reduce_sum(s);
        if (mode == ROW_CROSS_ENTROPY) {
            if (t == 0) {
                dst.v[row] = mx + log(s) - x.v[base + uint(target)];
                dst.v[rows + row] = 1.0;
            }
            return;
        }
        float lse = log(s), inv = 1.0 / s;
        for (uint k = t; k < C; k += WG) {
            float v = x.v[base + k] - mx;
            dst.v[base + k] = mode == ROW_LOG_SOFTMAX ? v - lse : exp(v) * inv;
        }
        return;
    }
    // layer_norm / rms_norm
    bool rms = mode == ROW_RMS_NORM;
    float mean = 0.0;
    if (!rms) {
        float s = 0.0;
        for (uint k = t; k < C; k += WG)
            s += x.v[base + k];
        mean = reduce_sum(s) / float(C);
    }
    float v = 0.0;
    for (uint k = t; k < C; k += WG) {
        float d = x.v[base + k] - mean;
        v += d * d;
    }
    float rstd = inversesqrt(reduce_sum(v) / float(C) + sf(3));
    F32 w = F32(pc.addr[2]), b = F32(pc.addr[3]);
    for (uint k = t; k < C; k += WG) {
        float y = (x.v[base + k] - mean) * rstd;
        if (pc.u[4] != 0u)
            y *= w.v[k];
        if (pc.u[5] != 0u)
            y += b.v[k];
        dst.v[base + k] = y;
    }
}
