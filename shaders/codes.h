/* codes.h — operation codes shared by the C side (tensor/vulkan/) and the shaders, so the two
 * cannot disagree. Plain #defines: valid C and valid GLSL.
 */
#ifndef KG_SHADER_CODES_H
#define KG_SHADER_CODES_H

/* elementwise.comp */
#define EW_ADD 0
#define EW_SUB 1
#define EW_MUL 2
#define EW_DIV 3
#define EW_EQ 4
#define EW_MASKED_FILL 5
#define EW_SCALE 10
#define EW_EXP 11
#define EW_LOG 12
#define EW_SQRT 13
#define EW_RSQRT 14
#define EW_TANH 15
#define EW_SIGMOID 16
#define EW_ERF 17
#define EW_RELU 18
#define EW_GELU 19
#define EW_SILU 20
#define EW_STEP 21
#define EW_DROPOUT 22

/* dtypes, as kg_dtype */
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3

/* rows.comp: row-wise ops over the last axis */
#define ROW_SOFTMAX 0
#define ROW_LOG_SOFTMAX 1
#define ROW_LAYER_NORM 2
#define ROW_RMS_NORM 3
#define ROW_CROSS_ENTROPY 4

/* gather.comp */
#define GA_EMBEDDING 0
#define GA_SCATTER_ADD_ROWS 1
#define GA_ONE_HOT 2

#endif
