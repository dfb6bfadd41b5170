// quant.glsl — reading one element of a weight W [N, K] stored as f32, f16, bf16 or a
// block-quantized dtype (q8_0, q4_0, q4_1 as GGML lays them out; nf4 as tensor/quant.c does),
// for dequant.comp and matmul_q.comp. Layouts: docs/quantization.md. Bytes are read through
// 32-bit words, so the shaders need no 8- or 16-bit storage feature.

// NF4's 16 values (tensor/quant.c, bitsandbytes).
const float NF4_CODE[16] = float[](
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0);

// IEEE half to float, exactly as tensor/dtype.c (subnormals kept).
float q_half_to_float(uint h) {
    uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu)
        return uintBitsToFloat(sign | 0x7f800000u | (m << 13));
    if (e == 0u) {
        float v = float(m) * (1.0 / 16777216.0);
        return sign != 0u ? -v : v;
    }
    return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}

// Byte i after base; base need not be 4-aligned (a view of an f16 weight may start mid-word).
uint q_byte(uint64_t base, uint i) {
    uint j = i + uint(base & 3ul);
    return (U32(base & ~3ul).v[j >> 2] >> ((j & 3u) * 8u)) & 0xffu;
}
uint q_u16(uint64_t base, uint i) { return q_byte(base, i) | (q_byte(base, i + 1u) << 8); }
float q_f16(uint64_t base, uint i) { return q_half_to_float(q_u16(base, i)); }
// A float at byte offset i (4-aligned) of a 4-aligned base.
float q_f32(uint64_t base, uint i) { return uintBitsToFloat(U32(base).v[i >> 2]); }

// Element (r, c) of W [n, k] stored as dtype at w.
float q_load(uint64_t w, uint dtype, uint n, uint k, uint r, uint c) {
    uint i = r * k + c, j = i & 31u;
    switch (dtype) {
    case DT_F32: return F32(w).v[i];
    case DT_F16: return q_f16(w, 2u * i);
    case DT_BF16: return uintBitsToFloat(q_u16(w, 2u * i) << 16);
    case DT_Q8_0: { // 34 bytes: f16 d, 32 int8
        uint b = (i >> 5) * 34u;
        return float(int(q_byte(w, b + 2u + j) << 24) >> 24) * q_f16(w, b);
    }
    case DT_Q4_0: { // 18 bytes: f16 d, 16 bytes of nibbles (j low, j + 16 high)
        uint b = (i >> 5) * 18u, q = (q_byte(w, b + 2u + (j & 15u)) >> ((j >> 4) * 4u)) & 15u;
        return float(int(q) - 8) * q_f16(w, b);
    }
    case DT_Q4_1: { // 20 bytes: f16 d, f16 m, 16 bytes of nibbles
        uint b = (i >> 5) * 20u, q = (q_byte(w, b + 4u + (j & 15u)) >> ((j >> 4) * 4u)) & 15u;
        precise float v = float(q) * q_f16(w, b) + q_f16(w, b + 2u); // unfused, as on the CPU
        return v;
    }
    case DT_NF4: { // nibbles (even element high), codes, absmax2, offset, map (tensor/quant.c)
        uint numel = n * k, blocks = numel >> 6;
        uint codes = numel >> 1, absmax2 = codes + ((blocks + 3u) & ~3u);
        uint offset = absmax2 + 4u * ((blocks + 255u) >> 8), map = offset + 4u;
        uint byte = q_byte(w, i >> 1), q = (i & 1u) == 0u ? byte >> 4 : byte & 15u;
        uint b = i >> 6;
        precise float am = q_f32(w, map + 4u * q_byte(w, codes + b)) *
                           q_f32(w, absmax2 + 4u * (b >> 8)) + q_f32(w, offset);
        return NF4_CODE[q] * am;
    }
    default: return uintBitsToFloat(0x7fc00000u); // the caller reports the bad mode
    }
}

bool q_known(uint dtype) { return dtype != DT_I32 && dtype < DT_COUNT; }
