// common.glsl — what every krongrad compute shader shares: tensors reached by buffer device
// address (no descriptor sets, so no binding-size limit), and one 128-byte push-constant block:
// up to four tensor addresses and 24 words whose meaning each shader states.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#ifdef KG_16BIT // only where needed: it makes the module require 16-bit storage
#extension GL_EXT_shader_16bit_storage : require
#endif

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32 { int v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32 { uint v[]; };
#ifdef KG_16BIT
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16 { uint16_t v[]; };
#endif

layout(push_constant) uniform Push {
    uint64_t addr[4];
    uint u[24];
} pc;

// The status buffer: the first out-of-range index any kernel meets (see vulkan/backend.c).
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Status {
    uint hit; uint op; int position; int value; int limit;
};

int   si(uint k) { return int(pc.u[k]); }
float sf(uint k) { return uintBitsToFloat(pc.u[k]); }

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

void report_range(uint64_t status, uint op, int position, int value, int limit) {
    Status s = Status(status);
    if (atomicCompSwap(s.hit, 0u, 1u) == 0u) {
        s.op = op; s.position = position; s.value = value; s.limit = limit;
    }
}
