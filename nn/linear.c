/* linear.c — the two modules that are a weight matrix looked up or multiplied: the linear layer
 * (whose kind is where adapters plug in: nn/adapter.c) and the token embedding.
 */
#include "kg_adapter.h"

kg_tensor *kg_linear_forward(const kg_linear *l, kg_tensor *x)
{
    if (!l || !x)
        return NULL;
    /* (..., in)·(out, in)ᵀ; a frozen weight stored in 16 bits or quantized is decoded inside
     * the GEMM (kg_matmul_q) */
    kg_tensor *y = kg_tensor_dtype(l->weight) == KG_DTYPE_F32
                       ? kg_matmul_t(x, l->weight, false, true)
                       : kg_matmul_q(x, l->weight, true);
    if (l->bias)
        y = kg_add(y, l->bias);
    switch (l->kind) {
    case KG_LINEAR_DENSE:
        return y;
    case KG_LINEAR_LORA:
    case KG_LINEAR_KRONLORA:
    case KG_LINEAR_LOKR: /* a merged adapter is inside the weight already */
        return l->ad.merged ? y : kg_add(y, kg_adapter_forward(l, x));
    }
    kg_set_error(kg_tensor_ctx(x), KG_ERR_ARG, "kg_linear_forward: unknown kind %d; expected a "
                 "kg_linear_kind", (int)l->kind);
    return NULL;
}

kg_tensor *kg_linear_log_probs(const kg_linear *l, kg_tensor *x, kg_tensor *targets,
                               int32_t ignore_index)
{
    if (!l || !x)
        return NULL;
    bool plain = (l->kind == KG_LINEAR_DENSE || l->ad.merged) && !l->bias;
    if (plain)
        return kg_linear_log_prob(x, l->weight, targets, ignore_index);
    int64_t V = kg_tensor_dim(l->weight, 0);
    kg_tensor *lp = kg_log_softmax(kg_linear_forward(l, x)); /* (N, V) */
    return kg_sum(kg_mul(lp, kg_one_hot(targets, V, ignore_index)), -1, false);
}

kg_tensor *kg_embed_forward(const kg_embed *e, kg_tensor *ids)
{
    return e ? kg_embedding(e->weight, ids) : NULL;
}
