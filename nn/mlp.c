/* mlp.c — the feed-forward half of a transformer block: GELU (BERT family: lin1, gelu, lin2) or
 * SwiGLU (Mistral family: down(silu(gate) ⊙ up)).
 */
#include "kg_nn.h"

kg_tensor *kg_mlp_forward(const kg_mlp *m, kg_tensor *x)
{
    if (!m || !x)
        return NULL;
    switch (m->kind) {
    case KG_MLP_GELU:
        return kg_linear_forward(&m->down, kg_gelu(kg_linear_forward(&m->up, x)));
    case KG_MLP_SWIGLU: /* silu(gate) ⊙ up fused: one pass forward and one back, (..., F) */
        return kg_linear_forward(&m->down, kg_swiglu(kg_linear_forward(&m->gate, x),
                                                     kg_linear_forward(&m->up, x)));
    }
    kg_set_error(kg_tensor_ctx(x), KG_ERR_ARG, "kg_mlp_forward: unknown kind %d; expected a "
                 "kg_mlp_kind", (int)m->kind);
    return NULL;
}
