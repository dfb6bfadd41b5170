#version 450
// elementwise.comp — every elementwise op, unary and binary, on strided and broadcast inputs
// (stride 0) into a contiguous output. One invocation per output element (swiglu_grad: per
// input element, writing its two gradients).
// Push constants: ew_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { ew_push pc; };
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

// b is read only by the binary modes and masked_fill (unary ones may pass a's address).
float b_value(int bo) { return F32(pc.b).v[bo]; }

bool mask_hit(int bo) {
    uint m = U32(pc.b).v[bo];
    return pc.mask_i32 != 0u ? m != 0u : (m & 0x7fffffffu) != 0u; // f32: -0.0 is zero
}

void main() {
    uint i = flat_id(256);
    if (i >= pc.n)
        return;
    uint i3 = i % pc.dim[3], r = i / pc.dim[3], i2 = r % pc.dim[2]; r /= pc.dim[2];
    uint i1 = r % pc.dim[1], i0 = r / pc.dim[1];
    int ao = int(i0) * pc.a_stride[0] + int(i1) * pc.a_stride[1] + int(i2) * pc.a_stride[2] +
             int(i3) * pc.a_stride[3];
    int bo = int(i0) * pc.b_stride[0] + int(i1) * pc.b_stride[1] + int(i2) * pc.b_stride[2] +
             int(i3) * pc.b_stride[3];
    float x = F32(pc.a).v[ao];
    float y;
    if (pc.mode == EW_SWIGLU_GRAD) { // silu' = s·(1 + x·(1 - s)); the inputs are contiguous
        float u = b_value(int(i)), g = F32(pc.c).v[i], e = 1.0 + exp(-x), s = 1.0 / e;
        F32(pc.dst).v[i] = g * u * (s * (1.0 + x * (1.0 - s)));
        F32(pc.dst).v[pc.n + i] = g * (x / e);
        return;
    }
    switch (pc.mode) {
    case EW_ADD: y = x + b_value(bo); break;
    case EW_SUB: y = x - b_value(bo); break;
    case EW_MUL: y = x * b_value(bo); break;
    case EW_DIV: y = x / b_value(bo); break;
    case EW_EQ: y = x == b_value(bo) ? 1.0 : 0.0; break;
    case EW_MASKED_FILL: y = mask_hit(bo) ? pc.fill : x; break;
    case EW_SCALE: y = pc.scale * x + pc.shift; break;
    case EW_EXP: y = exp(x); break;
    case EW_LOG: y = log(x); break;
    case EW_SQRT: y = sqrt(x); break;
    case EW_RSQRT: y = inversesqrt(x); break;
    case EW_TANH: y = tanh(clamp(x, -15.0, 15.0)); break; // tanh of large |x| overflows on some drivers
    case EW_SIGMOID: y = 1.0 / (1.0 + exp(-x)); break;
    case EW_ERF: y = erf_approx(x); break;
    case EW_RELU: y = max(x, 0.0); break;
    case EW_GELU: y = 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); break;
    case EW_GELU_GRAD: // Φ(x) + x·φ(x)
        y = b_value(bo) * (0.5 * (erf_approx(0.70710678118654752 * x) + 1.0) +
                           x * (0.39894228040143268 * exp(-0.5 * (x * x))));
        break;
    case EW_SILU: y = x / (1.0 + exp(-x)); break;
    case EW_SWIGLU: y = x / (1.0 + exp(-x)) * b_value(bo); break;
    case EW_STEP: y = x > 0.0 ? 1.0 : 0.0; break;
    case EW_DROPOUT: y = kg_uniform01(pc.seed, uint64_t(i)) >= pc.p ? x / (1.0 - pc.p) : 0.0; break;
    default: y = bad_mode(pc.status, pc.op, pc.mode); break;
    }
    F32(pc.dst).v[i] = y;
}
