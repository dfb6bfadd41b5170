/* matmul_q.c — y = x · Wᵀ (or x · W) with a frozen weight W [N, K] in any stored dtype: f32,
 * f16, bf16 or block-quantized. The kernels (cpu/gemm_quant.c, shaders/matmul_q.comp)
 * dequantize W a tile at a time, so no f32 copy of it is formed. W never gets a gradient: the
 * backward is the same op with the other orientation.
 */
#include "ops.h"

/* ---- matmul_q: p.matmul.trans_b (true: x · Wᵀ) ---------------------------------------------- */

bool kg__shape_matmul_q(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0], *w = c->in[1];
    bool trans = c->p.matmul.trans_b;
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    if (w->dtype == KG_DTYPE_I32 || w->ndim != 2)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_matmul_q: w is %s; expected a 2-D [N, K] "
                            "weight of a float or quantized dtype", KG_DESC(w));
    int64_t in = trans ? w->shape[1] : w->shape[0], out = trans ? w->shape[0] : w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_matmul_q: x %s times w %s%s; expected x's "
                            "last dimension to be %lld", KG_DESC(x), KG_DESC(w), trans ? "ᵀ" : "",
                            (long long)in);
    kg__shape_of(x, s);
    s->dim[s->ndim - 1] = out;
    return true;
}

void kg__backward_matmul_q(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* y = x·Wᵀ gives dx = dy·W, and y = x·W gives dx = dy·Wᵀ: the other orientation. */
    gin[0] = kg_matmul_q(g, n->in[1], !n->p.matmul.trans_b);
    gin[1] = NULL;
}

kg_tensor *kg_matmul_q(kg_tensor *x, kg_tensor *w, bool trans)
{
    kg_opparams p = {.matmul = {.trans_b = trans}};
    return kg__op(KG_OP_MATMUL_Q, 2, (kg_tensor *[]){x, w}, &p);
}
