/* norm.c — the two normalizations over channels: LayerNorm (BERT family, post-LN) and RMSNorm
 * (Mistral family, pre-norm), one module with a kind.
 */
#include "kg_nn.h"

kg_tensor *kg_norm_forward(const kg_norm *n, kg_tensor *x)
{
    if (!n || !x)
        return NULL;
    switch (n->kind) {
    case KG_NORM_LAYER:
        return kg_layer_norm(x, n->weight, n->bias, n->eps);
    case KG_NORM_RMS:
        return kg_rms_norm(x, n->weight, n->eps);
    }
    kg_set_error(kg_tensor_ctx(x), KG_ERR_ARG, "kg_norm_forward: unknown kind %d; expected a "
                 "kg_norm_kind", (int)n->kind);
    return NULL;
}
