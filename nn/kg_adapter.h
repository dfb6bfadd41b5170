/* kg_adapter.h — adapters on linear layers (LoRA, Kron-LoRA, PEFT's LoKr, full fine-tuning):
 * the configuration the trainer carries down whole to kg_model_attach (models/kg_peft.h), and
 * the per-layer calls it is built from: attach fresh factors, materialize ΔW, merge, unmerge.
 *
 * Math and init: docs/kron-lora.md; PEFT's shapes, init and scaling: docs/adapter-format.md.
 * Errors go to the context (kg_ctx_status / kg_error); functions return false / NULL then.
 */
#ifndef KG_ADAPTER_H
#define KG_ADAPTER_H

#include "nn/kg_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kg_adapter_kind {
    KG_ADAPTER_NONE,     /* the model as loaded, nothing trainable */
    KG_ADAPTER_LORA,     /* PEFT LoRA: A kaiming-uniform(a=√5), B = 0, s = alpha/R */
    KG_ADAPTER_KRONLORA, /* ΔW = A ⊗ B1·B2, A (kron_a2, kron_a1): by default A of gain 1,
                          * B2 kaiming-uniform, B1 = 0 (ΔW = 0 at the start), s = alpha/R */
    KG_ADAPTER_LOKR,     /* PEFT LoKr: shapes from PEFT's factorization(d, lokr_factor), w1 = 0,
                          * the rest kaiming-uniform, s = alpha/R */
    KG_ADAPTER_FULL,     /* full fine-tuning: every parameter of the model trainable */
    KG_ADAPTER_KIND_COUNT
} kg_adapter_kind;

/* "none", "lora", "kronlora", "lokr", "full". */
const char *kg_adapter_kind_name(kg_adapter_kind kind);
/* The kind named name; false with an error naming the accepted names. */
bool kg_adapter_kind_parse(kg_ctx *ctx, const char *name, kg_adapter_kind *out);

/* One adapter configuration, passed whole from the command line to kg_model_attach. The strings
 * are the caller's and need only outlive the call they are passed to. */
/* Which of Kron-LoRA's factors starts at zero (ΔW = 0 either way; docs/kron-lora.md measures
 * both). LoKr keeps PEFT's init whatever this says. */
typedef enum kg_kron_init {
    KG_KRON_INIT_DEFAULT, /* the measured default: KG_KRON_INIT_B1_ZERO */
    KG_KRON_INIT_B1_ZERO, /* B₁ = 0; A ~ U(±g·√(3/dA1)), B₂ kaiming-uniform */
    KG_KRON_INIT_A_ZERO,  /* A = 0 (PEFT LoKr's choice); B₁, B₂ kaiming-uniform */
} kg_kron_init;

/* A's default gain g (the expected norm of one row of A, so T2 = A·T1 keeps T1's scale): 1,
 * against kaiming-uniform's 1/√3 (|A| ≈ 0.29 rms at dA1 = 4), chosen in docs/kron-lora.md. */
#define KG_KRON_A_GAIN_DEFAULT 1.0

typedef struct kg_adapter_config {
    kg_adapter_kind kind;
    int64_t rank;           /* R (lora, kronlora, lokr) */
    double alpha;           /* the scale is alpha / R (PEFT's lora_alpha / alpha) */
    float dropout;          /* on the adapter's input while training (lora, kronlora; 0 for lokr,
                             * which PEFT gives no input dropout) */
    int64_t kron_a2;        /* Kron-LoRA's A is kron_a2 × kron_a1 = dA2 × dA1: d_out = dA2·dB2, */
    int64_t kron_a1;        /* d_in = dA1·dB1 ("--kron-a 2x4": dA2 = 2, dA1 = 4) */
    int64_t lokr_factor;    /* PEFT LoKr decompose_factor: -1 = PEFT's default (closest to √d) */
    bool lokr_decompose_both; /* PEFT LoKr decompose_both: w1 low-rank too when r is small */
    const char *targets;    /* NULL or "all-linear": every linear layer of the blocks (not the
                             * heads); else comma-separated HF module names, a layer matching when
                             * its path equals a name or ends with "." + name (PEFT's rule):
                             * "q_lin,v_lin", "q_proj,k_proj,v_proj,o_proj" */
    const char *modules_to_save; /* heads trained whole (PEFT's modules_to_save): NULL = the
                             * head's own (DistilBERT pre_classifier,classifier; BERT
                             * pooler,classifier; decoders none); "" = none; else a comma list */
    uint64_t seed;          /* the factors' initial values */
    kg_kron_init kron_init; /* Kron-LoRA: which factor starts at zero (not stored in files) */
    double kron_a_gain;     /* Kron-LoRA: A's gain g, A ~ U(±g·√(3/dA1)); 0: the default */
} kg_adapter_config;

/* Defaults for kind: R 8 and alpha 8 (PEFT's), no dropout, Kron-LoRA A 2 × 4, LoKr factor -1,
 * all-linear, the head's modules_to_save, seed 0. */
kg_adapter_config kg_adapter_config_default(kg_adapter_kind kind);

/* Parse "2x4" (or "2×4", "2X4") into kron_a2 = 2, kron_a1 = 4; false with an error naming the
 * text and the field kron_a otherwise. */
bool kg_adapter_parse_kron_a(kg_ctx *ctx, const char *text, kg_adapter_config *cfg);

/* ---- One layer ------------------------------------------------------------------------------ */

/* The shapes of one layer's factors (what the configuration becomes below models/: a rank only
 * as a shape). For LORA only rank matters; Kron-LoRA is w1_lowrank = false, w2_lowrank = true. */
typedef struct kg_adapter_shape {
    int64_t rank;     /* R */
    int64_t a2, a1;   /* the outer factor (dA2, dA1); dB2 = out / a2, dB1 = in / a1 */
    bool w1_lowrank;  /* w1 = w1_a·w1_b (LoKr decompose_both) */
    bool w2_lowrank;  /* w2 = w2_a·w2_b, else a full w2 (LoKr with a large R) */
    kg_kron_init kron_init; /* KRONLORA only, as kg_adapter_config's */
    double a_gain;          /* KRONLORA only: A's gain; 0: KG_KRON_A_GAIN_DEFAULT */
} kg_adapter_shape;

/* Give l (a DENSE layer) an adapter of kind (LORA, KRONLORA or LOKR): fresh f32 factors made
 * outside any scope (kept), requiring grad, initialized from seed as the kind's comment in
 * kg_adapter_kind says. l->weight is left alone (freeze it with kg_set_requires_grad). The
 * factors belong to l until kg_linear_detach. Returns false with an error when the shape does
 * not divide the layer or a size is < 1; l is unchanged then. */
bool kg_linear_attach(kg_linear *l, kg_linear_kind kind, const kg_adapter_shape *shape,
                      float scale, float dropout, kg_mode *mode, uint64_t seed);
/* Free l's adapter factors and make it DENSE again (unmerging first when merged). */
void kg_linear_detach(kg_linear *l);

/* The adapter's share of the output alone: s·ΔW·drop(x) (..., out), computed without forming ΔW
 * (kg_lowrank_linear / kg_kron_linear). kg_linear_forward adds it to x·Wᵀ + b unless merged. */
kg_tensor *kg_adapter_forward(const kg_linear *l, kg_tensor *x);

/* s·ΔW (out, in) materialized with ops (differentiable; for tests and merging, never used by
 * the forward pass). NULL with an error for a DENSE layer. */
kg_tensor *kg_adapter_delta(const kg_linear *l);

/* W ← W + s·ΔW (merge) or W − s·ΔW (unmerge), off the tape; merged layers skip the adapter in
 * kg_linear_forward, so outputs agree within f32 rounding. Merging a merged layer (or unmerging
 * an unmerged one) is a KG_ERR_STATE. */
bool kg_linear_merge(kg_linear *l);
bool kg_linear_unmerge(kg_linear *l);

/* ---- Quantized adapters (nn/adapter_quant.c) ------------------------------------------------ */

/* Symmetric per-output-row quantization of x (rows, cols) to `bits` (8 or 4): scales[r] =
 * max|x[r, :]| / (2^(bits-1) - 1) and codes = round(x / scale) in [-127, 127] or [-7, 7]
 * (scale 0 gives codes 0). codes holds rows·cols, scales rows. False for other bits. */
bool kg_adapter_quantize_rows(const float *x, int64_t rows, int64_t cols, int bits,
                              int8_t *codes, float *scales);
/* Replace a trained factor t (f32, (rows, cols) or (rows)) in place by the values its int8 /
 * int4 codes stand for (code · scale): what the adapter computes once stored in `bits`. */
bool kg_adapter_quantize_factor(kg_tensor *t, int bits);
/* x[r, c] = codes[r, c] · scales[r]: the values codes stand for (the one formula both the
 * in-memory quantization and a loaded quantized adapter use, so they agree bit for bit). */
void kg_adapter_dequantize_rows(const int8_t *codes, const float *scales, int64_t rows,
                                int64_t cols, float *x);
/* int4 codes (rows, cols) in [-7, 7] two to a byte, row by row: byte b of row r holds column
 * 2b in its low nibble and 2b+1 in its high one, each as a 4-bit two's complement (-7 = 0x9);
 * an odd row's last high nibble is 0. packed holds rows · ceil(cols/2) bytes. */
void kg_adapter_pack_int4(const int8_t *codes, int64_t rows, int64_t cols, uint8_t *packed);
/* The inverse; false when a nibble is -8 (0x8) or an odd row's padding nibble is not 0. */
bool kg_adapter_unpack_int4(const uint8_t *packed, int64_t rows, int64_t cols, int8_t *codes);

#ifdef __cplusplus
}
#endif
#endif
