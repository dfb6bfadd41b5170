#version 450
// elementwise.comp — every elementwise op, unary and binary, on strided and broadcast inputs
// (stride 0) into a contiguous output. One invocation per output element.
// addr: 0 out, 1 a (x), 2 b (mask for masked_fill)
// u: 0 op code, 1-4 out dims, 5-8 a strides, 9-12 b strides, 13 element count,
//    14 f0 (scale / fill value / dropout p), 15 f1 (shift), 16-17 seed (lo, hi), 18 mask is i32
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "codes.h"

layout(local_size_x = 256) in;

float erf_approx(float x) {
    // Abramowitz & Stegun 7.1.26 is 1.5e-7 absolute; refine with the series near 0, where
    // relative accuracy matters for gelu's gradient.
    float ax = abs(x);
    if (ax < 0.5) {
        float x2 = x * x;
        return x * (1.1283791671 + x2 * (-0.3761263890 + x2 * (0.1128379167 +
                    x2 * (-0.0268661706 + x2 * 0.0052239776))));
    }
    float t = 1.0 / (1.0 + 0.3275911 * ax);
    float y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t +
                     0.254829592) * t * exp(-ax * ax);
    return sign(x) * y;
}

float unary(uint op, float x, uint i) {
    switch (op) {
    case EW_SCALE: return sf(14) * x + sf(15);
    case EW_EXP: return exp(x);
    case EW_LOG: return log(x);
    case EW_SQRT: return sqrt(x);
    case EW_RSQRT: return inversesqrt(x);
    case EW_TANH: return tanh(clamp(x, -15.0, 15.0)); // tanh of large |x| overflows on some drivers
    case EW_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case EW_ERF: return erf_approx(x);
    case EW_RELU: return max(x, 0.0);
    case EW_GELU: return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
    case EW_SILU: return x / (1.0 + exp(-x));
    case EW_STEP: return x > 0.0 ? 1.0 : 0.0;
    case EW_DROPOUT: {
        uint64_t seed = uint64_t(pc.u[16]) | (uint64_t(pc.u[17]) << 32);
        float p = sf(14);
        return kg_uniform01(seed, uint64_t(i)) >= p ? x / (1.0 - p) : 0.0;
    }
    }
    return 0.0;
}

void main() {
    uint i = flat_id(256);
    if (i >= pc.u[13])
        return;
    uint d1 = pc.u[2], d2 = pc.u[3], d3 = pc.u[4];
    uint i3 = i % d3, r = i / d3, i2 = r % d2; r /= d2;
    uint i1 = r % d1, i0 = r / d1;
    int ao = int(i0) * si(5) + int(i1) * si(6) + int(i2) * si(7) + int(i3) * si(8);
    int bo = int(i0) * si(9) + int(i1) * si(10) + int(i2) * si(11) + int(i3) * si(12);
    uint op = pc.u[0];
    float a = F32(pc.addr[1]).v[ao];
    float y;
    if (op >= EW_SCALE) {
        y = unary(op, a, i);
    } else if (op == EW_MASKED_FILL) {
        uint m = U32(pc.addr[2]).v[bo];
        bool hit = pc.u[18] != 0 ? m != 0u : (m & 0x7fffffffu) != 0u; // f32: -0.0 is zero
        y = hit ? sf(14) : a;
    } else {
        float b = F32(pc.addr[2]).v[bo];
        switch (op) {
        case EW_ADD: y = a + b; break;
        case EW_SUB: y = a - b; break;
        case EW_MUL: y = a * b; break;
        case EW_DIV: y = a / b; break;
        default: y = a == b ? 1.0 : 0.0; break;
        }
    }
    F32(pc.addr[0]).v[i] = y;
}
