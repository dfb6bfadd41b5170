/* dequant.c — the element types checkpoint files use (safetensors dtypes, GGML types with their
 * block sizes as in ggml.c's type traits) and the reference dequantizers of the GGML blocks
 * krongrad loads: Q8_0, Q4_0, Q4_1 (REFERENCE §3.3; byte layouts exactly as ggml-common.h).
 */
#include "models/weights.h"

#include <math.h>
#include <string.h>

/* ggml_half: IEEE binary16, little-endian. */
static float half(const uint8_t *p)
{
    return kg_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* block_q8_0 { ggml_half d; int8_t qs[32]; }: y = qs·d */
static void dequant_q8_0(const uint8_t *src, int64_t blocks, float *dst)
{
    for (int64_t b = 0; b < blocks; b++, src += 34, dst += 32) {
        float d = half(src);
        for (int j = 0; j < 32; j++)
            dst[j] = (float)(int8_t)src[2 + j] * d;
    }
}

/* block_q4_0 { ggml_half d; uint8_t qs[16]; }: element j in the low nibble of qs[j], element
 * j + 16 in the high nibble; y = (q - 8)·d */
static void dequant_q4_0(const uint8_t *src, int64_t blocks, float *dst)
{
    for (int64_t b = 0; b < blocks; b++, src += 18, dst += 32) {
        float d = half(src);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((src[2 + j] & 0xF) - 8) * d;
            dst[j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
        }
    }
}

/* block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }: nibbles as Q4_0; y = q·d + m */
static void dequant_q4_1(const uint8_t *src, int64_t blocks, float *dst)
{
    for (int64_t b = 0; b < blocks; b++, src += 20, dst += 32) {
        float d = half(src), m = half(src + 2);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(src[4 + j] & 0xF) * d + m;
            dst[j + 16] = (float)(src[4 + j] >> 4) * d + m;
        }
    }
}

/* Indexed by GGML type number (ggml.c type traits, gguf-py 0.8); holes are types ggml removed. */
static const kg_wtype ggml_types[] = {
    [0] = {"F32", 0, 1, 4, KG_DTYPE_F32, NULL},
    [1] = {"F16", 1, 1, 2, KG_DTYPE_F16, NULL},
    [2] = {"Q4_0", 2, 32, 18, KG_DTYPE_Q4_0, dequant_q4_0},
    [3] = {"Q4_1", 3, 32, 20, KG_DTYPE_Q4_1, dequant_q4_1},
    [6] = {"Q5_0", 6, 32, 22, -1, NULL},
    [7] = {"Q5_1", 7, 32, 24, -1, NULL},
    [8] = {"Q8_0", 8, 32, 34, KG_DTYPE_Q8_0, dequant_q8_0},
    [9] = {"Q8_1", 9, 32, 36, -1, NULL}, /* ggml-common.h (gguf-py says 40) */
    [10] = {"Q2_K", 10, 256, 84, -1, NULL},
    [11] = {"Q3_K", 11, 256, 110, -1, NULL},
    [12] = {"Q4_K", 12, 256, 144, -1, NULL},
    [13] = {"Q5_K", 13, 256, 176, -1, NULL},
    [14] = {"Q6_K", 14, 256, 210, -1, NULL},
    [15] = {"Q8_K", 15, 256, 292, -1, NULL},
    [16] = {"IQ2_XXS", 16, 256, 66, -1, NULL},
    [17] = {"IQ2_XS", 17, 256, 74, -1, NULL},
    [18] = {"IQ3_XXS", 18, 256, 98, -1, NULL},
    [19] = {"IQ1_S", 19, 256, 50, -1, NULL},
    [20] = {"IQ4_NL", 20, 32, 18, -1, NULL},
    [21] = {"IQ3_S", 21, 256, 110, -1, NULL},
    [22] = {"IQ2_S", 22, 256, 82, -1, NULL},
    [23] = {"IQ4_XS", 23, 256, 136, -1, NULL},
    [24] = {"I8", 24, 1, 1, -1, NULL},
    [25] = {"I16", 25, 1, 2, -1, NULL},
    [26] = {"I32", 26, 1, 4, KG_DTYPE_I32, NULL},
    [27] = {"I64", 27, 1, 8, -1, NULL},
    [28] = {"F64", 28, 1, 8, -1, NULL},
    [29] = {"IQ1_M", 29, 256, 56, -1, NULL},
    [30] = {"BF16", 30, 1, 2, KG_DTYPE_BF16, NULL},
    [34] = {"TQ1_0", 34, 256, 54, -1, NULL},
    [35] = {"TQ2_0", 35, 256, 66, -1, NULL},
    [39] = {"MXFP4", 39, 32, 17, -1, NULL},
    [40] = {"NVFP4", 40, 64, 36, -1, NULL},
    [41] = {"Q1_0", 41, 128, 18, -1, NULL},
};

const kg_wtype *kg__ggml_type(uint32_t type)
{
    if (type >= sizeof ggml_types / sizeof ggml_types[0] || !ggml_types[type].name)
        return NULL;
    return &ggml_types[type];
}

/* safetensors dtypes (REFERENCE §5.3). */
static const kg_wtype st_dtypes[] = {
    {"F32", 0, 1, 4, KG_DTYPE_F32, NULL},  {"F16", 1, 1, 2, KG_DTYPE_F16, NULL},
    {"BF16", 30, 1, 2, KG_DTYPE_BF16, NULL}, {"I32", 26, 1, 4, KG_DTYPE_I32, NULL},
    {"F64", 28, 1, 8, -1, NULL},           {"I64", 27, 1, 8, -1, NULL},
    {"I16", 25, 1, 2, -1, NULL},           {"I8", 24, 1, 1, -1, NULL},
    {"U8", -1, 1, 1, -1, NULL},            {"U16", -1, 1, 2, -1, NULL},
    {"U32", -1, 1, 4, -1, NULL},           {"U64", -1, 1, 8, -1, NULL},
    {"BOOL", -1, 1, 1, -1, NULL},          {"F8_E4M3", -1, 1, 1, -1, NULL},
    {"F8_E5M2", -1, 1, 1, -1, NULL},
};

const kg_wtype *kg__safetensors_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    return NULL;
}
