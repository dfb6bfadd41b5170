/* codes.h — the numbers the C side (tensor/vulkan/) and the shaders both read: each shader's
 * modes, the dtype codes, the status buffer's kinds and the kron_linear kernel's shared-memory
 * size. Plain #defines: valid C and valid GLSL. Where a list must agree with a C enum, ops.c
 * checks it with _Static_assert.
 *
 * Modes start at 1: a mode left 0 (a push-constant struct filled without one) reaches the
 * shader's `default:`, which reports an internal error rather than computing another op.
 */
#ifndef KG_SHADER_CODES_H
#define KG_SHADER_CODES_H

/* The most iterations one invocation spends in a loop whose trip count is a tensor's size.
 * Lavapipe (gallivm) silently ends a shader's loops after 65,535 iterations in all (its guard
 * against runaway shaders): a sum over 120,000 elements stopped at 65,534. Such work is split
 * into passes of at most this many (reduce: partial results; scatter_add_rows: runs of ids). */
#define KG_LOOP_CHUNK 32768

/* elementwise.comp */
#define EW_ADD 1
#define EW_SUB 2
#define EW_MUL 3
#define EW_DIV 4
#define EW_EQ 5
#define EW_MASKED_FILL 6
#define EW_SCALE 7
#define EW_EXP 8
#define EW_LOG 9
#define EW_SQRT 10
#define EW_RSQRT 11
#define EW_TANH 12
#define EW_SIGMOID 13
#define EW_ERF 14
#define EW_RELU 15
#define EW_GELU 16
#define EW_SILU 17
#define EW_STEP 18
#define EW_DROPOUT 19
#define EW_SWIGLU 20      /* silu(a) ⊙ b */
#define EW_SWIGLU_GRAD 21 /* contiguous a, b, c = gate, up, g: d_gate into dst, d_up after it */
#define EW_GELU_GRAD 22   /* b·gelu'(a): gelu's backward */

/* reduce.comp */
#define RED_SUM 1
#define RED_MAX 2

/* rows.comp: row-wise ops over the last axis */
#define ROW_SOFTMAX 1
#define ROW_LOG_SOFTMAX 2
#define ROW_NORM 3          /* layer_norm, or rms_norm with rows_push.rms */
#define ROW_NORM_STATS 4    /* each row's [mean, 1/std], as ROW_NORM computes them */
#define ROW_CROSS_ENTROPY 5 /* per-row losses and valid flags, into scratch */
#define ROW_CE_MEAN 6       /* the mean of those losses over the valid rows */
#define ROW_LOG_PROB 7      /* each row's log-softmax at its target (linear_log_prob) */
#define ROW_LOG_PROB_GRAD 8 /* g·(onehot - softmax) of each row, weight = g (its backward) */
#define ROW_SOFTMAX_GRAD 9  /* scale·y ⊙ (g - Σ g⊙y), x = y, weight = g */

/* gather.comp */
#define GA_EMBEDDING 1
#define GA_SCATTER_ADD_ROWS 2
#define GA_ONE_HOT 3
#define GA_ZERO 4 /* dst's n elements set to 0 (before scatter_add_rows's passes) */

/* optim.comp */
#define OPT_ADAMW 1
#define OPT_SGD 2

/* dtypes (cast.comp), as kg_dtype in tensor/kg_tensor.h */
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3
#define DT_Q8_0 4 /* block-quantized (quant.glsl) */
#define DT_Q4_0 5
#define DT_Q4_1 6
#define DT_NF4 7
#define DT_COUNT 8

/* What a kernel found wrong, in the status buffer's `kind` (0: nothing); read at the flush. */
#define STATUS_BAD_INDEX 1 /* an index out of range: the caller's error */
#define STATUS_BAD_MODE 2  /* a mode the shader has no case for: krongrad's own bug */

/* kron_linear.comp keeps a token's T1 (dA1, R) and T2 (dA2, R) in shared memory: at most this
 * many floats (8 KiB; every device has 16 KiB). Bigger shapes take the unfused path. */
#define KL_SHARED_FLOATS 2048

#endif
