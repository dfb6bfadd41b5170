/* quant.c — block-quantized storage dtypes for frozen weights: GGML's q8_0, q4_0 and q4_1
 * (blocks of 32) and QLoRA's nf4 (blocks of 64 with double-quantized scales), their byte
 * layouts, quantizers byte-exact with the reference ones, row dequantization, kg_quantize.
 * Layouts and the references they match: docs/quantization.md.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Sizes ---------------------------------------------------------------------------------- */

enum { QK = 32, NF4_BLOCK = 64, NF4_GROUP = 256 /* nf4 scales per second-level block */ };

int64_t kg_dtype_block(kg_dtype d)
{
    switch (d) {
    case KG_DTYPE_Q8_0: case KG_DTYPE_Q4_0: case KG_DTYPE_Q4_1: return QK;
    case KG_DTYPE_NF4: return NF4_BLOCK;
    default: return 1;
    }
}

/* Bytes of one GGML block (a 16-bit scale d, for q4_1 a 16-bit minimum m, then the quants). */
static size_t ggml_block_bytes(kg_dtype d)
{
    return d == KG_DTYPE_Q8_0 ? 2 + QK : d == KG_DTYPE_Q4_0 ? 2 + QK / 2 : 4 + QK / 2;
}

/* The nf4 layout of a tensor of n elements, as byte offsets of its four regions:
 *   [0, n/2)              the 4-bit codes, two per byte, element 2i in the high nibble (bnb)
 *   codes                 one byte per block of 64: the block's absmax as an index into `map`
 *   absmax2               one f32 per 256 blocks: the second-level scale of those indices
 *   offset                one f32: the mean absmax, added back after the second level
 *   map                   256 f32: the signed dynamic code the indices point into
 * The f32 regions start 4-aligned (the code bytes are padded to a multiple of 4). */
typedef struct nf4_layout {
    int64_t blocks, groups;
    size_t codes, absmax2, offset, map, bytes;
} nf4_layout;

static nf4_layout nf4_layout_of(int64_t n)
{
    nf4_layout l;
    l.blocks = n / NF4_BLOCK;
    l.groups = (l.blocks + NF4_GROUP - 1) / NF4_GROUP;
    l.codes = (size_t)n / 2;
    l.absmax2 = l.codes + (((size_t)l.blocks + 3) & ~(size_t)3);
    l.offset = l.absmax2 + 4 * (size_t)l.groups;
    l.map = l.offset + 4;
    l.bytes = l.map + 256 * 4;
    return l;
}

size_t kg_dtype_bytes(kg_dtype d, int64_t numel)
{
    if (numel <= 0)
        return 0;
    switch (d) {
    case KG_DTYPE_Q8_0: case KG_DTYPE_Q4_0: case KG_DTYPE_Q4_1:
        return (size_t)(numel / QK) * ggml_block_bytes(d);
    case KG_DTYPE_NF4: return nf4_layout_of(numel).bytes;
    default: return (size_t)numel * kg_dtype_size(d);
    }
}

bool kg__check_block_shape(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                           const int64_t *shape)
{
    int64_t b = kg_dtype_block(dtype);
    if (ndim != 2 || shape[1] % b)
        return kg_set_error(ctx, KG_ERR_SHAPE, "%s: a %s tensor must be 2-D [N, K] with K a "
                            "multiple of %lld; got %d dimensions%s", fn, kg_dtype_name(dtype),
                            (long long)b, ndim, ndim == 2 ? " and a K that is not" : "");
    return true;
}

/* ---- Code books ----------------------------------------------------------------------------- */

/* NF4's 16 values in index order (bitsandbytes get_4bit_type("nf4"); REFERENCE §3.1). */
static const float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/* bitsandbytes' signed 8-bit dynamic code (create_dynamic_map(signed=True)), sorted: the code
 * its quantize_blockwise uses for nf4's nested absmax. Printed by
 * tests/fixtures/quant/make_quant.py, which checks these against bitsandbytes. */
static const float dynamic_code[256] = {
    -0.992968738f, -0.978906274f, -0.96484375f, -0.950781226f, -0.936718762f, -0.922656238f,
    -0.908593774f, -0.89453125f, -0.880468726f, -0.866406262f, -0.852343738f, -0.838281274f,
    -0.82421875f, -0.810156226f, -0.796093762f, -0.782031238f, -0.767968774f, -0.75390625f,
    -0.739843726f, -0.725781262f, -0.711718798f, -0.697656274f, -0.68359375f, -0.669531226f,
    -0.655468762f, -0.641406298f, -0.627343774f, -0.61328125f, -0.599218726f, -0.585156262f,
    -0.571093798f, -0.557031274f, -0.54296875f, -0.528906226f, -0.514843702f, -0.500781238f,
    -0.486718714f, -0.47265625f, -0.458593726f, -0.444531262f, -0.430468738f, -0.416406244f,
    -0.40234375f, -0.388281226f, -0.374218762f, -0.360156238f, -0.346093744f, -0.33203125f,
    -0.317968726f, -0.303906262f, -0.289843738f, -0.275781274f, -0.26171875f, -0.247656241f,
    -0.233593747f, -0.219531253f, -0.205468744f, -0.19140625f, -0.177343756f, -0.163281247f,
    -0.149218753f, -0.135156244f, -0.12109375f, -0.107031256f, -0.0985937491f, -0.0957812592f,
    -0.0929687545f, -0.0901562497f, -0.0873437524f, -0.0845312476f, -0.0817187577f, -0.078906253f,
    -0.0760937482f, -0.0732812509f, -0.0704687461f, -0.0676562563f, -0.0648437515f, -0.0620312504f,
    -0.0592187531f, -0.0564062484f, -0.053593751f, -0.05078125f, -0.047968749f, -0.0451562516f,
    -0.0423437469f, -0.0395312496f, -0.0367187522f, -0.0339062512f, -0.0310937501f, -0.028281251f,
    -0.0254687499f, -0.0226562507f, -0.0198437516f, -0.0170312505f, -0.0142187504f, -0.0114062503f,
    -0.00971874967f, -0.00915624946f, -0.00859375019f, -0.00803124998f, -0.00746874977f,
    -0.00690625003f, -0.00634374982f, -0.00578125007f, -0.00521875033f, -0.00465624966f,
    -0.00409374991f, -0.00353124971f, -0.00296874996f, -0.00240624999f, -0.00184375001f,
    -0.00128124992f, -0.000943750085f, -0.000831249985f, -0.00071875006f, -0.000606250076f,
    -0.000493750034f, -0.000381250022f, -0.000268750038f, -0.000156250011f, -8.87499991e-05f,
    -6.62500024e-05f, -4.37499984e-05f, -2.12499981e-05f, -7.7499999e-06f, -3.25000019e-06f,
    -5.50000038e-07f, 0.0f, 5.50000038e-07f, 3.25000019e-06f, 7.7499999e-06f, 2.12499981e-05f,
    4.37499984e-05f, 6.62500024e-05f, 8.87499991e-05f, 0.000156250011f, 0.000268750038f,
    0.000381250022f, 0.000493750034f, 0.000606250076f, 0.00071875006f, 0.000831249985f,
    0.000943750085f, 0.00128124992f, 0.00184375001f, 0.00240624999f, 0.00296874996f,
    0.00353124971f, 0.00409374991f, 0.00465624966f, 0.00521875033f, 0.00578125007f, 0.00634374982f,
    0.00690625003f, 0.00746874977f, 0.00803124998f, 0.00859375019f, 0.00915624946f, 0.00971874967f,
    0.0114062503f, 0.0142187504f, 0.0170312505f, 0.0198437516f, 0.0226562507f, 0.0254687499f,
    0.028281251f, 0.0310937501f, 0.0339062512f, 0.0367187522f, 0.0395312496f, 0.0423437469f,
    0.0451562516f, 0.047968749f, 0.05078125f, 0.053593751f, 0.0564062484f, 0.0592187531f,
    0.0620312504f, 0.0648437515f, 0.0676562563f, 0.0704687461f, 0.0732812509f, 0.0760937482f,
    0.078906253f, 0.0817187577f, 0.0845312476f, 0.0873437524f, 0.0901562497f, 0.0929687545f,
    0.0957812592f, 0.0985937491f, 0.107031256f, 0.12109375f, 0.135156244f, 0.149218753f,
    0.163281247f, 0.177343756f, 0.19140625f, 0.205468744f, 0.219531253f, 0.233593747f,
    0.247656241f, 0.26171875f, 0.275781274f, 0.289843738f, 0.303906262f, 0.317968726f, 0.33203125f,
    0.346093744f, 0.360156238f, 0.374218762f, 0.388281226f, 0.40234375f, 0.416406244f,
    0.430468738f, 0.444531262f, 0.458593726f, 0.47265625f, 0.486718714f, 0.500781238f,
    0.514843702f, 0.528906226f, 0.54296875f, 0.557031274f, 0.571093798f, 0.585156262f,
    0.599218726f, 0.61328125f, 0.627343774f, 0.641406298f, 0.655468762f, 0.669531226f, 0.68359375f,
    0.697656274f, 0.711718798f, 0.725781262f, 0.739843726f, 0.75390625f, 0.767968774f,
    0.782031238f, 0.796093762f, 0.810156226f, 0.82421875f, 0.838281274f, 0.852343738f,
    0.866406262f, 0.880468726f, 0.89453125f, 0.908593774f, 0.922656238f, 0.936718762f,
    0.950781226f, 0.96484375f, 0.978906274f, 0.992968738f, 1.0f,
};

/* ---- GGML blocks (ggml-quants.c's quantize_row_*_ref, as gguf.quants writes them) ---------- */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static float get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return kg_f16_to_f32(v);
}

/* x (32) into one block at out. */
static void quantize_ggml_block(const float *x, kg_dtype dtype, uint8_t *out)
{
    uint8_t q[QK];
    if (dtype == KG_DTYPE_Q8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(out, kg_f32_to_f16(d));
        for (int j = 0; j < QK; j++)
            out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        return;
    }
    float d, id, lo = 0.0f, bias;
    if (dtype == KG_DTYPE_Q4_0) { /* symmetric: the signed extreme maps to -8 */
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        d = max / -8.0f;
        bias = 8.5f;
        put16(out, kg_f32_to_f16(d));
    } else { /* q4_1: [min, max] over 16 levels */
        float hi = x[0];
        lo = x[0];
        for (int j = 1; j < QK; j++) {
            lo = fminf(lo, x[j]);
            hi = fmaxf(hi, x[j]);
        }
        d = (hi - lo) / 15.0f;
        bias = 0.5f;
        put16(out, kg_f32_to_f16(d));
        put16(out + 2, kg_f32_to_f16(lo));
    }
    id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        int v = (int)((x[j] - lo) * id + bias);
        q[j] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
    }
    uint8_t *qs = out + ggml_block_bytes(dtype) - QK / 2;
    for (int j = 0; j < QK / 2; j++) /* element j in the low nibble, j + 16 in the high one */
        qs[j] = (uint8_t)(q[j] | q[j + QK / 2] << 4);
}

static void dequantize_ggml_block(const uint8_t *b, kg_dtype dtype, float *y)
{
    float d = get16(b);
    if (dtype == KG_DTYPE_Q8_0) {
        for (int j = 0; j < QK; j++)
            y[j] = (float)(int8_t)b[2 + j] * d;
        return;
    }
    const uint8_t *qs = b + ggml_block_bytes(dtype) - QK / 2;
    if (dtype == KG_DTYPE_Q4_0) {
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((qs[j] & 0xf) - 8) * d;
            y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
        }
    } else {
        float m = get16(b + 2);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(qs[j] & 0xf) * d + m;
            y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

/* ---- nf4 (bitsandbytes quantize_4bit(blocksize=64, compress_statistics=True)) -------------- */

/* The index of the code value nearest v (code ascending, 256 long), the lower one on a tie, as
 * bitsandbytes' CPU quantize_blockwise picks it. */
static uint8_t nearest_dynamic(float v)
{
    int lo = 0, hi = 255; /* the last index whose value is <= v (0 when none is) */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (dynamic_code[mid] <= v)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo < 255 && fabsf(v - dynamic_code[lo + 1]) < fabsf(v - dynamic_code[lo]))
        lo++;
    return (uint8_t)lo;
}

static bool quantize_nf4(const float *x, int64_t n, uint8_t *out)
{
    nf4_layout l = nf4_layout_of(n);
    float bound[15]; /* midpoints between neighbouring code values, computed as bnb does in f32 */
    for (int i = 0; i < 15; i++)
        bound[i] = (nf4_code[i] + nf4_code[i + 1]) / 2.0f;
    float *absmax = kg__malloc((size_t)l.blocks * sizeof *absmax + 1);
    if (!absmax)
        return false;
    double sum = 0.0;
    memset(out + l.codes, 0, l.absmax2 - l.codes);
    for (int64_t b = 0; b < l.blocks; b++) {
        const float *xb = x + b * NF4_BLOCK;
        float am = 0.0f;
        for (int j = 0; j < NF4_BLOCK; j++)
            am = fmaxf(am, fabsf(xb[j]));
        absmax[b] = am;
        sum += am;
        float inv = 1.0f / fmaxf(am, 1e-38f);
        uint8_t q[NF4_BLOCK];
        for (int j = 0; j < NF4_BLOCK; j++) {
            float s = fminf(fmaxf(xb[j] * inv, -1.0f), 1.0f);
            int k = 0; /* torch.bucketize: how many bounds lie strictly below s */
            while (k < 15 && bound[k] < s)
                k++;
            q[j] = (uint8_t)k;
        }
        for (int j = 0; j < NF4_BLOCK / 2; j++)
            out[b * NF4_BLOCK / 2 + j] = (uint8_t)(q[2 * j] << 4 | q[2 * j + 1]);
    }
    /* Double quantization: absmax - mean(absmax), blockwise over 256 with the dynamic code.
     * The mean is the exact one rounded to f32; bitsandbytes takes torch's f32 mean, whose
     * summation order (and so last bit) follows the CPU's vector width. */
    float offset = (float)(sum / (double)l.blocks);
    for (int64_t g = 0; g < l.groups; g++) {
        int64_t b0 = g * NF4_GROUP, b1 = b0 + NF4_GROUP < l.blocks ? b0 + NF4_GROUP : l.blocks;
        float a2 = 0.0f;
        for (int64_t b = b0; b < b1; b++)
            a2 = fmaxf(a2, fabsf(absmax[b] - offset));
        for (int64_t b = b0; b < b1; b++) /* a2 = 0: every absmax is the offset; code 127 is 0 */
            out[l.codes + (size_t)b] = a2 > 0.0f ? nearest_dynamic((absmax[b] - offset) / a2) : 127;
        memcpy(out + l.absmax2 + 4 * (size_t)g, &a2, 4);
    }
    memcpy(out + l.offset, &offset, 4);
    memcpy(out + l.map, dynamic_code, sizeof dynamic_code);
    free(absmax);
    return true;
}

/* Elements [first, first + count) of an nf4 tensor of n elements; first and count even. */
static void dequantize_nf4(const uint8_t *q, int64_t n, int64_t first, int64_t count, float *y)
{
    nf4_layout l = nf4_layout_of(n);
    float offset, a2 = 0.0f;
    memcpy(&offset, q + l.offset, 4);
    for (int64_t i = first, end = first + count; i < end;) {
        int64_t b = i / NF4_BLOCK, stop = (b + 1) * NF4_BLOCK < end ? (b + 1) * NF4_BLOCK : end;
        memcpy(&a2, q + l.absmax2 + 4 * (size_t)(b / NF4_GROUP), 4);
        float am = dynamic_code[q[l.codes + (size_t)b]] * a2 + offset;
        for (; i < stop; i += 2) {
            uint8_t v = q[i >> 1];
            y[i - first] = nf4_code[v >> 4] * am;
            y[i - first + 1] = nf4_code[v & 0xf] * am;
        }
    }
}

/* ---- Rows ----------------------------------------------------------------------------------- */

bool kg__quantize(const float *x, kg_dtype dtype, int64_t n, int64_t k, void *out)
{
    if (dtype == KG_DTYPE_NF4)
        return quantize_nf4(x, n * k, out);
    size_t bb = ggml_block_bytes(dtype);
    for (int64_t b = 0; b < n * k / QK; b++)
        quantize_ggml_block(x + b * QK, dtype, (uint8_t *)out + (size_t)b * bb);
    return true;
}

void kg__dequantize_range(const void *q, kg_dtype dtype, int64_t numel, int64_t first,
                          int64_t count, float *out)
{
    switch (dtype) {
    case KG_DTYPE_Q8_0: case KG_DTYPE_Q4_0: case KG_DTYPE_Q4_1: {
        size_t bb = ggml_block_bytes(dtype);
        const uint8_t *p = (const uint8_t *)q + (size_t)(first / QK) * bb;
        for (int64_t b = 0; b < count / QK; b++)
            dequantize_ggml_block(p + (size_t)b * bb, dtype, out + b * QK);
        break;
    }
    case KG_DTYPE_NF4: dequantize_nf4(q, numel, first, count, out); break;
    default: /* f32, f16, bf16: a conversion */
        for (int64_t i = 0; i < count; i++)
            out[i] = (float)kg__load(q, dtype, first + i);
        break;
    }
}

void kg__dequantize_rows(const void *q, kg_dtype dtype, int64_t n, int64_t k, int64_t r0,
                         int64_t nr, float *out)
{
    kg__dequantize_range(q, dtype, n * k, r0 * k, nr * k, out);
}

kg_tensor *kg_quantize(kg_tensor *w, kg_dtype dtype)
{
    if (!w || w->ctx->status)
        return NULL;
    kg_ctx *ctx = w->ctx;
    if (w->dtype != KG_DTYPE_F32 && w->dtype != KG_DTYPE_F16 && w->dtype != KG_DTYPE_BF16) {
        kg_set_error(ctx, KG_ERR_DTYPE, "kg_quantize: w is %s; expected f32, f16 or bf16",
                     KG_DESC(w));
        return NULL;
    }
    if (dtype == KG_DTYPE_F16 || dtype == KG_DTYPE_BF16 || dtype == KG_DTYPE_F32) {
        kg_no_grad_begin(ctx);
        kg_tensor *d = kg_detach(w);
        kg_tensor *c = kg_cast(d, dtype);
        kg_tensor_free(d); /* outside a scope (loading) the view would keep w's storage alive */
        kg_no_grad_end(ctx);
        return c;
    }
    if (!kg__dtype_is_block(dtype)) {
        kg_set_error(ctx, KG_ERR_DTYPE, "kg_quantize: dtype %s; expected f16, bf16, q8_0, q4_0, "
                     "q4_1 or nf4", kg_dtype_name(dtype));
        return NULL;
    }
    if (!kg__check_block_shape(ctx, "kg_quantize", dtype, w->ndim, w->shape))
        return NULL;
    float *x = kg_tensor_to_f32(w);
    size_t bytes = kg_dtype_bytes(dtype, kg_tensor_numel(w));
    void *buf = x ? kg__malloc(bytes + 1) : NULL;
    kg_tensor *q = NULL;
    if (x && !buf)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_quantize: out of host memory for %zu bytes", bytes);
    if (buf && !kg__quantize(x, dtype, w->shape[0], w->shape[1], buf))
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_quantize: out of host memory");
    else if (buf)
        q = kg_from_host(ctx, dtype, 2, w->shape, buf);
    free(x);
    free(buf);
    return q;
}
