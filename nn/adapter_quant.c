/* adapter_quant.c — post-training quantization of trained adapter factors (LoRA's A and B,
 * Kron-LoRA's A, B1, B2, LoKr's w1 / w2 and their low-rank halves) to int8 or int4: symmetric,
 * one scale per output row (dim 0), the simplest defensible scheme (REFERENCE §1.7). Used to
 * measure how much accuracy an adapter loses when stored in 8 or 4 bits (krongrad eval
 * --adapter-bits), and to store it so (kg_peft_save_quantized): int4 codes two to a byte.
 */
#include "kg_adapter.h"

#include <math.h>
#include <stdlib.h>

bool kg_adapter_quantize_rows(const float *x, int64_t rows, int64_t cols, int bits,
                              int8_t *codes, float *scales)
{
    if ((bits != 8 && bits != 4) || rows < 0 || cols < 0)
        return false;
    float qmax = (float)((1 << (bits - 1)) - 1); /* 127 or 7: symmetric, -qmax..qmax */
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++)
            amax = fmaxf(amax, fabsf(row[c]));
        /* x·(qmax/amax), as bitsandbytes' vector-wise int8 (REFERENCE §3.2) */
        float scale = amax / qmax, inv = amax > 0.0f ? qmax / amax : 0.0f;
        scales[r] = scale;
        for (int64_t c = 0; c < cols; c++) {
            float q = roundf(row[c] * inv);
            codes[r * cols + c] = (int8_t)(q > qmax ? qmax : q < -qmax ? -qmax : q);
        }
    }
    return true;
}

void kg_adapter_dequantize_rows(const int8_t *codes, const float *scales, int64_t rows,
                                int64_t cols, float *x)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            x[r * cols + c] = (float)codes[r * cols + c] * scales[r];
}

void kg_adapter_pack_int4(const int8_t *codes, int64_t rows, int64_t cols, uint8_t *packed)
{
    int64_t w = (cols + 1) / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < w; b++) {
            const int8_t *q = codes + r * cols + 2 * b;
            unsigned hi = 2 * b + 1 < cols ? (unsigned)q[1] & 15u : 0u;
            packed[r * w + b] = (uint8_t)(((unsigned)q[0] & 15u) | hi << 4);
        }
}

bool kg_adapter_unpack_int4(const uint8_t *packed, int64_t rows, int64_t cols, int8_t *codes)
{
    int64_t w = (cols + 1) / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < w * 2; c++) {
            unsigned nib = (unsigned)(packed[r * w + c / 2] >> (c % 2 ? 4 : 0)) & 15u;
            if (c == cols) { /* the padding nibble of an odd row */
                if (nib)
                    return false;
                continue;
            }
            if (nib == 8) /* -8: outside the symmetric range */
                return false;
            codes[r * cols + c] = (int8_t)(nib < 8 ? (int)nib : (int)nib - 16);
        }
    return true;
}

bool kg_adapter_quantize_factor(kg_tensor *t, int bits)
{
    kg_ctx *ctx = kg_tensor_ctx(t);
    if (!t || kg_ctx_status(ctx))
        return false;
    if ((bits != 8 && bits != 4) || kg_tensor_dtype(t) != KG_DTYPE_F32 ||
        kg_tensor_ndim(t) < 1 || kg_tensor_ndim(t) > 2)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_adapter_quantize_factor: %d bits of a %d-D %s "
                            "tensor; expected 8 or 4 bits of an f32 matrix or vector", bits,
                            kg_tensor_ndim(t), kg_dtype_name(kg_tensor_dtype(t)));
    int64_t rows = kg_tensor_dim(t, 0), n = kg_tensor_numel(t), cols = rows ? n / rows : 0;
    float *x = kg_tensor_to_f32(t);
    int8_t *codes = malloc((size_t)n + 1);
    float *scales = malloc((size_t)rows * sizeof *scales + 1);
    bool ok = x && codes && scales;
    if (ok) {
        kg_adapter_quantize_rows(x, rows, cols, bits, codes, scales);
        kg_adapter_dequantize_rows(codes, scales, rows, cols, x); /* what the codes stand for */
        kg_tensor *v = kg_from_host(ctx, KG_DTYPE_F32, kg_tensor_ndim(t),
                                    (int64_t[]){rows, cols}, x);
        ok = v && kg_tensor_assign(t, v);
        kg_tensor_free(v);
    } else if (x) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_adapter_quantize_factor: out of host memory");
    }
    free(x);
    free(codes);
    free(scales);
    return ok;
}
