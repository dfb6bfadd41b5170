// common.glsl — what every krongrad compute shader shares: tensors reached by buffer device
// address (no descriptor sets, so no binding-size limit), the push-constant structs and codes
// shared with the C side, and the status buffer kernels report problems into.
// A shader then declares its own struct from push.h as its push constants:
//   layout(push_constant) uniform Push { rows_push pc; };
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#ifdef KG_16BIT // only where needed: it makes the module require 16-bit storage
#extension GL_EXT_shader_16bit_storage : require
#endif

#define KG_GLSL
#include "codes.h"
#include "push.h"

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32 { int v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32 { uint v[]; };
#ifdef KG_16BIT
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16 { uint16_t v[]; };
#endif

// The status buffer (vk_status in push.h): the first problem any kernel meets is kept, and the
// flush turns it into the context's error (vulkan/stream.c).
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Status { vk_status s; };

void report(uint64_t status, uint kind, uint op, int position, int value, int limit) {
    Status st = Status(status);
    if (atomicCompSwap(st.s.kind, 0u, kind) == 0u) {
        st.s.op = op; st.s.position = position; st.s.value = value; st.s.limit = limit;
    }
}

// An index outside [0, limit): the caller's error.
void report_range(uint64_t status, uint op, int position, int value, int limit) {
    report(status, STATUS_BAD_INDEX, op, position, value, limit);
}

// Every shader's `default:` in a switch on its mode: a mode it has no case for is krongrad's
// bug. It is reported, and the caller writes NaN, so no other op's result can pass for it.
float bad_mode(uint64_t status, uint op, uint mode) {
    report(status, STATUS_BAD_MODE, op, 0, int(mode), 0);
    return uintBitsToFloat(0x7fc00000u); // NaN
}

// The flat invocation index over a 2-D grid of workgroups (one dimension alone tops out at
// 65535 groups on many devices).
uint flat_id(uint local) {
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * local +
           gl_LocalInvocationID.x;
}

// splitmix64, as kg__hash in tensor/tensor.c: the same (seed, index) gives the same number.
uint kg_hash(uint64_t seed, uint64_t index) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ul + index + 0x632BE59BD9B4E019ul;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ul;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBul;
    z ^= z >> 31;
    return uint(z >> 32);
}
float kg_uniform01(uint64_t seed, uint64_t index) {
    return float(kg_hash(seed, index) >> 8) * (1.0 / 16777216.0);
}
