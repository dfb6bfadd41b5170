/* op_table.c — the op table: one entry per op with its name, input count, flags, shape rule,
 * CPU kernel, backward rule (NULL: not differentiable) and Vulkan kernel. Adding an op means adding its enum
 * value in internal.h, its functions in an ops/ file and one line here; a test walks the table
 * and fails on a hole.
 */
#include "ops/ops.h"

/* A Vulkan kernel exists only in builds with the Vulkan backend. */
#ifdef KG_HAVE_VULKAN
#include "vulkan/vk.h"
#define VK(fn) fn
#else
#define VK(fn) NULL
#endif

#define V KG_OPF_VIEW
#define S KG_OPF_STRIDED
#define I KG_OPF_INPLACE
#define Q KG_OPF_QUANT
#define M KG_OPF_MATRIX

const kg_op_info kg_op_table[] = {
    /*                     name        inputs flags shape rule                CPU kernel                backward rule           Vulkan kernel */
    [KG_OP_RESHAPE]     = {"reshape",     1, V, kg__shape_reshape,        NULL,                     kg__backward_reshape, NULL},
    [KG_OP_PERMUTE]     = {"permute",     1, V, kg__shape_permute,        NULL,                     kg__backward_permute, NULL},
    [KG_OP_SLICE]       = {"slice",       1, V, kg__shape_slice,          NULL,                     kg__backward_slice, NULL},
    [KG_OP_EXPAND]      = {"expand",      1, V, kg__shape_expand,         NULL,                     kg__backward_expand, NULL},
    [KG_OP_CONTIGUOUS]  = {"contiguous",  1, S, kg__shape_same,           kg__cpu_copy,             kg__backward_identity, VK(kg__vk_copy)},
    [KG_OP_CAST]        = {"cast",        1, Q, kg__shape_cast,           kg__cpu_cast,             kg__backward_cast, VK(kg__vk_cast)},
    [KG_OP_ADD]         = {"add",         2, S, kg__shape_binary,         kg__cpu_binary,           kg__backward_add, VK(kg__vk_elementwise)},
    [KG_OP_SUB]         = {"sub",         2, S, kg__shape_binary,         kg__cpu_binary,           kg__backward_sub, VK(kg__vk_elementwise)},
    [KG_OP_MUL]         = {"mul",         2, S, kg__shape_binary,         kg__cpu_binary,           kg__backward_mul, VK(kg__vk_elementwise)},
    [KG_OP_DIV]         = {"div",         2, S, kg__shape_binary,         kg__cpu_binary,           kg__backward_div, VK(kg__vk_elementwise)},
    [KG_OP_SCALE]       = {"scale",       1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_scale, VK(kg__vk_elementwise)},
    [KG_OP_EXP]         = {"exp",         1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_exp, VK(kg__vk_elementwise)},
    [KG_OP_LOG]         = {"log",         1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_log, VK(kg__vk_elementwise)},
    [KG_OP_SQRT]        = {"sqrt",        1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_sqrt, VK(kg__vk_elementwise)},
    [KG_OP_RSQRT]       = {"rsqrt",       1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_rsqrt, VK(kg__vk_elementwise)},
    [KG_OP_TANH]        = {"tanh",        1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_tanh, VK(kg__vk_elementwise)},
    [KG_OP_SIGMOID]     = {"sigmoid",     1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_sigmoid, VK(kg__vk_elementwise)},
    [KG_OP_ERF]         = {"erf",         1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_erf, VK(kg__vk_elementwise)},
    [KG_OP_RELU]        = {"relu",        1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_relu, VK(kg__vk_elementwise)},
    [KG_OP_GELU]        = {"gelu",        1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_gelu, VK(kg__vk_elementwise)},
    [KG_OP_GELU_GRAD]   = {"gelu_grad",   2, S, kg__shape_same_pair,      kg__cpu_binary,           NULL, VK(kg__vk_elementwise)},
    [KG_OP_SILU]        = {"silu",        1, S, kg__shape_unary,          kg__cpu_unary,            kg__backward_silu, VK(kg__vk_elementwise)},
    [KG_OP_SWIGLU]      = {"swiglu",      2, S, kg__shape_same_pair,       kg__cpu_binary,           kg__backward_swiglu, VK(kg__vk_elementwise)},
    [KG_OP_SWIGLU_GRAD] = {"swiglu_grad", 3, 0, kg__shape_swiglu_grad,    kg__cpu_swiglu_grad,      NULL, VK(kg__vk_elementwise)},
    [KG_OP_STEP]        = {"step",        1, S, kg__shape_unary,          kg__cpu_unary,            NULL, VK(kg__vk_elementwise)},
    [KG_OP_EQ]          = {"eq",          2, S, kg__shape_binary,         kg__cpu_binary,           NULL, VK(kg__vk_elementwise)},
    [KG_OP_MASKED_FILL] = {"masked_fill", 2, S, kg__shape_masked_fill,    kg__cpu_masked_fill,      kg__backward_masked_fill, VK(kg__vk_elementwise)},
    [KG_OP_DROPOUT]     = {"dropout",     1, S, kg__shape_dropout,        kg__cpu_dropout,          kg__backward_dropout, VK(kg__vk_elementwise)},
    [KG_OP_SUM]         = {"sum",         1, 0, kg__shape_reduce,         kg__cpu_reduce,           kg__backward_sum, VK(kg__vk_reduce)},
    [KG_OP_MAX]         = {"max",         1, 0, kg__shape_reduce,         kg__cpu_reduce,           kg__backward_max, VK(kg__vk_reduce)},
    [KG_OP_MATMUL]      = {"matmul",      2, M, kg__shape_matmul,         kg__cpu_matmul,           kg__backward_matmul, VK(kg__vk_matmul)},
    [KG_OP_MATMUL_Q]    = {"matmul_q",    2, Q, kg__shape_matmul_q,       kg__cpu_matmul_q,         kg__backward_matmul_q, VK(kg__vk_matmul_q)},
    [KG_OP_KRON]        = {"kron",        2, 0, kg__shape_kron,           kg__cpu_kron,             kg__backward_kron, VK(kg__vk_kron)},
    [KG_OP_LOWRANK_LINEAR] = {"lowrank_linear", 3, 0, kg__shape_lowrank_linear, kg__cpu_lowrank_linear, kg__backward_lowrank_linear, VK(kg__vk_structured_linear)},
    [KG_OP_KRON_LINEAR] = {"kron_linear", 4, 0, kg__shape_kron_linear,    kg__cpu_kron_linear,      kg__backward_kron_linear, VK(kg__vk_structured_linear)},
    [KG_OP_EMBEDDING]   = {"embedding",   2, 0, kg__shape_embedding,      kg__cpu_embedding,        kg__backward_embedding, VK(kg__vk_gather)},
    [KG_OP_SCATTER_ADD_ROWS] = {"scatter_add_rows", 2, 0, kg__shape_scatter_add_rows, kg__cpu_scatter_add_rows, kg__backward_scatter_add_rows, VK(kg__vk_gather)},
    [KG_OP_SOFTMAX]     = {"softmax",    -1, 0, kg__shape_softmax,          kg__cpu_softmax,          kg__backward_softmax, VK(kg__vk_rows)},
    [KG_OP_LOG_SOFTMAX] = {"log_softmax", 1, 0, kg__shape_unary,          kg__cpu_softmax,          kg__backward_log_softmax, VK(kg__vk_rows)},
    [KG_OP_SOFTMAX_GRAD] = {"softmax_grad", 2, 0, kg__shape_softmax_grad, kg__cpu_softmax_grad,     NULL, VK(kg__vk_rows)},
    [KG_OP_LAYER_NORM]  = {"layer_norm", -1, 0, kg__shape_norm,           kg__cpu_norm,             kg__backward_norm, VK(kg__vk_rows)},
    [KG_OP_RMS_NORM]    = {"rms_norm",    2, 0, kg__shape_norm,           kg__cpu_norm,             kg__backward_norm, VK(kg__vk_rows)},
    [KG_OP_NORM_STATS]  = {"norm_stats",  1, 0, kg__shape_norm_stats,     kg__cpu_norm_stats,       NULL, VK(kg__vk_rows)},
    [KG_OP_ROPE]        = {"rope",        1, 0, kg__shape_rope,           kg__cpu_rope,             kg__backward_rope, VK(kg__vk_rope)},
    [KG_OP_CROSS_ENTROPY] = {"cross_entropy", 2, 0, kg__shape_cross_entropy, kg__cpu_cross_entropy, kg__backward_cross_entropy, VK(kg__vk_rows)},
    [KG_OP_ONE_HOT]     = {"one_hot",     1, 0, kg__shape_one_hot,        kg__cpu_one_hot,          NULL, VK(kg__vk_gather)},
    [KG_OP_CONCAT]      = {"concat",     -1, 0, kg__shape_concat,         kg__cpu_concat,           kg__backward_concat, VK(kg__vk_concat)},
    [KG_OP_LINEAR_LOG_PROB] = {"linear_log_prob", 3, Q, kg__shape_linear_log_prob, kg__cpu_linear_log_prob, kg__backward_linear_log_prob, VK(kg__vk_linear_log_prob)},
    [KG_OP_LINEAR_LOG_PROB_GRAD] = {"linear_log_prob_grad", 4, 0, kg__shape_linear_log_prob_grad, kg__cpu_linear_log_prob_grad, NULL, VK(kg__vk_linear_log_prob)},
    [KG_OP_ADAMW]       = {"adamw",       4, I, kg__shape_optim,          kg__cpu_adamw,            NULL, VK(kg__vk_optim)},
    [KG_OP_SGD]         = {"sgd",        -1, I, kg__shape_optim,          kg__cpu_sgd,              NULL, VK(kg__vk_optim)},
};

/* The table ends at the last op; tests/test_op_table.c checks that no entry inside is empty. */
_Static_assert(sizeof kg_op_table / sizeof kg_op_table[0] == KG_OP_COUNT,
               "kg_op_table must have one entry per kg_op");
