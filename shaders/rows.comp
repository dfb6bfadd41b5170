#version 450
// rows.comp — ops over the last axis, one workgroup per row, with shared-memory reductions:
// softmax (of scale·x + mask, and its backward), log_softmax, layer_norm, rms_norm, norm_stats (the statistics the norms' backward
// uses), cross entropy (per-row losses, then a final one-workgroup mean), and the
// log-probability at each row's target with its backward (linear_log_prob).
// Push constants: rows_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define WG 256
layout(push_constant) uniform Push { rows_push pc; };
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

// dst[0] = the mean of x's `rows` losses over the valid ones; x holds the losses, then the
// valid flags (what ROW_CROSS_ENTROPY wrote).
void cross_entropy_mean() {
    uint t = gl_LocalInvocationID.x;
    F32 x = F32(pc.x);
    float s = 0.0, n = 0.0;
    for (uint i = t; i < pc.rows; i += WG) {
        s += x.v[i];
        n += x.v[pc.rows + i];
    }
    s = reduce_sum(s);
    n = reduce_sum(n);
    if (t == 0)
        F32(pc.dst).v[0] = n > 0.0 ? s / n : 0.0;
}

// The current row's first mask element (softmax with a mask), set by softmax_row.
int mask_base = 0;

// Entry k of the row at base as the op sees it: softmax's scale·x + mask, else x itself.
float row_x(uint base, uint k) {
    float v = F32(pc.x).v[base + k];
    if (pc.mode != ROW_SOFTMAX)
        return v;
    v = pc.scale * v;
    if (pc.mask != 0ul)
        v += F32(pc.mask).v[mask_base + int(k) * pc.mask_stride[3]];
    return v;
}

// The row's max and Σ exp(x - max): softmax, log_softmax and cross entropy start here.
vec2 max_and_sum(uint base) {
    uint t = gl_LocalInvocationID.x;
    float mx = NEG_INF;
    for (uint k = t; k < pc.C; k += WG)
        mx = max(mx, row_x(base, k));
    mx = reduce_max(mx);
    float s = 0.0;
    if (mx != NEG_INF) // every entry masked: no sum (the callers handle it)
        for (uint k = t; k < pc.C; k += WG)
            s += exp(row_x(base, k) - mx);
    return vec2(mx, reduce_sum(s));
}

void softmax_row(uint row, bool log_form) {
    uint t = gl_LocalInvocationID.x, base = row * pc.C;
    F32 dst = F32(pc.dst);
    if (pc.mask != 0ul) {
        uint i2 = row % pc.dim2, i1 = (row / pc.dim2) % pc.dim1, i0 = row / (pc.dim2 * pc.dim1);
        mask_base = int(i0) * pc.mask_stride[0] + int(i1) * pc.mask_stride[1] +
                    int(i2) * pc.mask_stride[2];
    }
    vec2 ms = max_and_sum(base);
    if (ms.x == NEG_INF) { // every entry masked: zeros (log: -inf), as the CPU kernel
        for (uint k = t; k < pc.C; k += WG)
            dst.v[base + k] = log_form ? NEG_INF : 0.0;
        return;
    }
    float lse = log(ms.y), inv = 1.0 / ms.y;
    for (uint k = t; k < pc.C; k += WG) {
        float v = row_x(base, k) - ms.x;
        dst.v[base + k] = log_form ? v - lse : exp(v) * inv;
    }
}

// softmax's backward over y = x: scale·y ⊙ (g - Σ g⊙y), g = weight.
void softmax_grad_row(uint row) {
    uint t = gl_LocalInvocationID.x, base = row * pc.C;
    F32 y = F32(pc.x), g = F32(pc.weight), dst = F32(pc.dst);
    float dot = 0.0;
    for (uint k = t; k < pc.C; k += WG)
        dot += g.v[base + k] * y.v[base + k];
    dot = reduce_sum(dot);
    for (uint k = t; k < pc.C; k += WG)
        dst.v[base + k] = pc.scale * (y.v[base + k] * (g.v[base + k] - dot));
}

// dst[row] = the row's loss and dst[rows + row] = 1, or both 0 for the ignore index.
void cross_entropy_row(uint row) {
    uint t = gl_LocalInvocationID.x, base = row * pc.C;
    F32 dst = F32(pc.dst);
    int target = I32(pc.targets).v[row]; // the same for the whole workgroup: uniform returns
    if (target == pc.ignore_index) {
        if (t == 0) {
            dst.v[row] = 0.0;
            dst.v[pc.rows + row] = 0.0;
        }
        return;
    }
    if (target < 0 || target >= int(pc.C)) {
        if (t == 0)
            report_range(pc.status, pc.op, int(row), target, int(pc.C));
        return;
    }
    vec2 ms = max_and_sum(base);
    if (t == 0) {
        dst.v[row] = ms.x + log(ms.y) - F32(pc.x).v[base + uint(target)];
        dst.v[pc.rows + row] = 1.0;
    }
}

// The row's target, or -1 for the ignore index (every invocation of the workgroup reads the
// same); a target out of range is reported and read as ignored.
int row_target(uint row) {
    int target = I32(pc.targets).v[row];
    if (target == pc.ignore_index)
        return -1;
    if (target < 0 || target >= int(pc.C)) {
        if (gl_LocalInvocationID.x == 0)
            report_range(pc.status, pc.op, int(row), target, int(pc.C));
        return -1;
    }
    return target;
}

// linear_log_prob over the logits x (rows, C): dst[row] = x[target] - log Σ e^x, 0 if ignored.
void log_prob_row(uint row) {
    int target = row_target(row);
    if (target < 0) {
        if (gl_LocalInvocationID.x == 0)
            F32(pc.dst).v[row] = 0.0;
        return;
    }
    vec2 ms = max_and_sum(row * pc.C);
    if (gl_LocalInvocationID.x == 0)
        F32(pc.dst).v[row] = F32(pc.x).v[row * pc.C + uint(target)] - ms.x - log(ms.y);
}

// Its gradient over the same logits: dst = g·(onehot(target) - softmax(x)), g = weight[row]
// (g = 1 without weight: the unit gradients the forward keeps).
void log_prob_grad_row(uint row) {
    uint t = gl_LocalInvocationID.x, base = row * pc.C;
    F32 x = F32(pc.x), dst = F32(pc.dst);
    int target = row_target(row);
    if (target < 0) {
        for (uint k = t; k < pc.C; k += WG)
            dst.v[base + k] = 0.0;
        return;
    }
    vec2 ms = max_and_sum(base);
    float g = pc.weight != 0ul ? F32(pc.weight).v[row] : 1.0, inv = 1.0 / ms.y;
    for (uint k = t; k < pc.C; k += WG)
        dst.v[base + k] = g * ((int(k) == target ? 1.0 : 0.0) - exp(x.v[base + k] - ms.x) * inv);
}

// A row's mean (0 for RMS norm) and 1/√(var + eps): the norms and norm_stats take them from
// here, so the backward sees the statistics the forward used. The second pass also sums the
// deviations, whose mean corrects the first pass's rounding of the mean (the corrected two-pass
// algorithm of Chan, Golub and LeVeque), which matters on rows whose mean is large against
// their spread.
vec2 row_stats(uint base) {
    uint t = gl_LocalInvocationID.x;
    F32 x = F32(pc.x);
    float mean = 0.0;
    if (pc.rms == 0u) {
        float s = 0.0;
        for (uint k = t; k < pc.C; k += WG)
            s += x.v[base + k];
        mean = reduce_sum(s) / float(pc.C);
    }
    float sd = 0.0, sd2 = 0.0;
    for (uint k = t; k < pc.C; k += WG) {
        float d = x.v[base + k] - mean;
        sd += d;
        sd2 += d * d;
    }
    sd2 = reduce_sum(sd2);
    if (pc.rms == 0u) {
        sd = reduce_sum(sd) / float(pc.C);
        mean += sd;
        sd2 -= sd * sd * float(pc.C);
    }
    return vec2(mean, inversesqrt(max(sd2, 0.0) / float(pc.C) + pc.eps));
}

void norm_row(uint row) {
    uint t = gl_LocalInvocationID.x, base = row * pc.C;
    F32 x = F32(pc.x), dst = F32(pc.dst), w = F32(pc.weight), b = F32(pc.bias);
    vec2 st = row_stats(base);
    for (uint k = t; k < pc.C; k += WG) {
        float y = (x.v[base + k] - st.x) * st.y;
        if (pc.weight != 0ul)
            y *= w.v[k];
        if (pc.bias != 0ul)
            y += b.v[k];
        dst.v[base + k] = y;
    }
}

void norm_stats_row(uint row) {
    vec2 st = row_stats(row * pc.C);
    if (gl_LocalInvocationID.x == 0) {
        F32(pc.dst).v[2 * row] = st.x;
        F32(pc.dst).v[2 * row + 1] = st.y;
    }
}

void main() {
    if (pc.mode == ROW_CE_MEAN) { // one workgroup over all rows
        cross_entropy_mean();
        return;
    }
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= pc.rows)
        return;
    switch (pc.mode) {
    case ROW_SOFTMAX: softmax_row(row, false); break;
    case ROW_LOG_SOFTMAX: softmax_row(row, true); break;
    case ROW_NORM: norm_row(row); break;
    case ROW_NORM_STATS: norm_stats_row(row); break;
    case ROW_CROSS_ENTROPY: cross_entropy_row(row); break;
    case ROW_LOG_PROB: log_prob_row(row); break;
    case ROW_LOG_PROB_GRAD: log_prob_grad_row(row); break;
    case ROW_SOFTMAX_GRAD: softmax_grad_row(row); break;
    default: // the output's layout is the mode's too: report only
        if (gl_LocalInvocationID.x == 0)
            bad_mode(pc.status, pc.op, pc.mode);
        break;
    }
}
