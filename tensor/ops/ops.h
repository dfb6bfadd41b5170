/* ops.h — the shape rules, CPU kernels and backward rules that op_table.c puts in the table.
 * Each is defined in the ops/ file of its family, next to its op's public function.
 */
#ifndef KG_OPS_H
#define KG_OPS_H

#include "../internal.h"

#define KG_OP_FUNCS(name)                                                                      \
    bool kg__shape_##name(const kg_opcall *c, kg_shape *s);                                    \
    bool kg__cpu_##name(const kg_opcall *c);                                                   \
    void kg__backward_##name(const kg_node *n, kg_tensor *g, kg_tensor **gin);

/* A backward rule's gradient for input i, computed only when that input wants one (NULL
 * otherwise, which kg_backward skips). A frozen weight's gradient would cost a GEMM as large as
 * the forward one, and its memory, only to be thrown away. */
#define KG_GRAD(n, i, expr) ((n)->in[i]->requires_grad ? (expr) : NULL)

/* view.c */
bool kg__shape_reshape(const kg_opcall *c, kg_shape *s);
bool kg__shape_permute(const kg_opcall *c, kg_shape *s);
bool kg__shape_slice(const kg_opcall *c, kg_shape *s);
bool kg__shape_expand(const kg_opcall *c, kg_shape *s);
bool kg__shape_same(const kg_opcall *c, kg_shape *s);
void kg__backward_reshape(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_permute(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_slice(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_expand(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_identity(const kg_node *n, kg_tensor *g, kg_tensor **gin);
bool kg__cpu_copy(const kg_opcall *c);
KG_OP_FUNCS(cast)

/* elementwise.c */
bool kg__shape_binary(const kg_opcall *c, kg_shape *s);
bool kg__cpu_binary(const kg_opcall *c);
bool kg__shape_unary(const kg_opcall *c, kg_shape *s);
bool kg__cpu_unary(const kg_opcall *c);
void kg__backward_add(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_sub(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_mul(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_div(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_scale(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_exp(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_log(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_sqrt(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_rsqrt(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_tanh(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_sigmoid(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_erf(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_relu(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_gelu(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_silu(const kg_node *n, kg_tensor *g, kg_tensor **gin);
/* Two f32 inputs of one shape (swiglu, gelu_grad; their CPU kernel: kg__cpu_binary). */
bool kg__shape_same_pair(const kg_opcall *c, kg_shape *s);
void kg__backward_swiglu(const kg_node *n, kg_tensor *g, kg_tensor **gin);
bool kg__shape_swiglu_grad(const kg_opcall *c, kg_shape *s);
bool kg__cpu_swiglu_grad(const kg_opcall *c);
KG_OP_FUNCS(masked_fill)
KG_OP_FUNCS(dropout)

/* reduce.c */
bool kg__shape_reduce(const kg_opcall *c, kg_shape *s);
bool kg__cpu_reduce(const kg_opcall *c);
void kg__backward_sum(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_max(const kg_node *n, kg_tensor *g, kg_tensor **gin);

/* linalg.c */
KG_OP_FUNCS(matmul)
KG_OP_FUNCS(kron)
KG_OP_FUNCS(lowrank_linear)
KG_OP_FUNCS(kron_linear)

/* matmul_q.c (its CPU kernel: cpu/gemm_quant.c) */
KG_OP_FUNCS(matmul_q)

/* nn.c */
KG_OP_FUNCS(embedding)
KG_OP_FUNCS(scatter_add_rows)
bool kg__shape_softmax(const kg_opcall *c, kg_shape *s);
bool kg__cpu_softmax(const kg_opcall *c);
bool kg__shape_softmax_grad(const kg_opcall *c, kg_shape *s);
bool kg__cpu_softmax_grad(const kg_opcall *c);
void kg__backward_softmax(const kg_node *n, kg_tensor *g, kg_tensor **gin);
void kg__backward_log_softmax(const kg_node *n, kg_tensor *g, kg_tensor **gin);
bool kg__shape_norm(const kg_opcall *c, kg_shape *s);
bool kg__cpu_norm(const kg_opcall *c);
void kg__backward_norm(const kg_node *n, kg_tensor *g, kg_tensor **gin);
bool kg__shape_norm_stats(const kg_opcall *c, kg_shape *s);
bool kg__cpu_norm_stats(const kg_opcall *c);
KG_OP_FUNCS(rope)
KG_OP_FUNCS(cross_entropy)
bool kg__shape_one_hot(const kg_opcall *c, kg_shape *s);
bool kg__cpu_one_hot(const kg_opcall *c);
KG_OP_FUNCS(concat)
bool kg__check_targets(const kg_opcall *c, const int32_t *t, int64_t n, int64_t classes);

/* lm_head.c */
KG_OP_FUNCS(linear_log_prob)
bool kg__shape_linear_log_prob_grad(const kg_opcall *c, kg_shape *s);
bool kg__cpu_linear_log_prob_grad(const kg_opcall *c);

/* optim.c */
bool kg__shape_optim(const kg_opcall *c, kg_shape *s);
bool kg__cpu_adamw(const kg_opcall *c);
bool kg__cpu_sgd(const kg_opcall *c);

#endif
