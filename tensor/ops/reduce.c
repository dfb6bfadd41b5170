/* reduce.c — sum and max over one axis (mean is a scaled sum). Parameters: p.reduce.
 * The input is seen as (outer, n, inner) around the reduced axis.
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>

enum { INNER_BLOCK = 256 };

typedef struct reduce_job {
    const float *x;
    float *y;
    int64_t outer, n, inner, blocks;
    bool is_max;
} reduce_job;

static void reduce_part(void *arg, int64_t lo, int64_t hi)
{
    const reduce_job *j = arg;
    for (int64_t w = lo; w < hi; w++) {
        int64_t o = w / j->blocks, i0 = (w % j->blocks) * INNER_BLOCK;
        int64_t i1 = i0 + INNER_BLOCK < j->inner ? i0 + INNER_BLOCK : j->inner;
        float *y = j->y + o * j->inner;
        const float *x = j->x + o * j->n * j->inner;
        for (int64_t i = i0; i < i1; i++)
            y[i] = j->is_max ? -INFINITY : 0.0f;
        for (int64_t k = 0; k < j->n; k++)
            for (int64_t i = i0; i < i1; i++) {
                float v = x[k * j->inner + i];
                y[i] = j->is_max ? (v > y[i] ? v : y[i]) : y[i] + v;
            }
    }
}

bool kg__cpu_reduce(const kg_opcall *c)
{
    const kg_tensor *x = c->in[0];
    int a = c->p.reduce.axis;
    reduce_job j = {.x = kg_cpu_f32(x), .y = kg_cpu_f32(c->out), .outer = 1, .inner = 1,
                    .n = x->shape[a], .is_max = c->op == KG_OP_MAX};
    for (int i = 0; i < a; i++)
        j.outer *= x->shape[i];
    for (int i = a + 1; i < x->ndim; i++)
        j.inner *= x->shape[i];
    j.blocks = (j.inner + INNER_BLOCK - 1) / INNER_BLOCK;
    kg_cpu_parallel_for(j.outer * j.blocks, 1 + (1 << 14) / (j.n * INNER_BLOCK + 1),
                        reduce_part, &j);
    return true;
}

/* p.reduce.axis is the axis made non-negative by reduce(), user_axis as the caller gave it. */
bool kg__shape_reduce(const kg_opcall *c, kg_shape *s)
{
    const kg_tensor *x = c->in[0];
    if (!kg__want_dtype(c, 0, KG_DTYPE_F32))
        return false;
    int a = c->p.reduce.axis;
    if (a < 0 || a >= x->ndim)
        return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_%s: axis %d is out of range for %s",
                        kg_op_table[c->op].name, c->p.reduce.user_axis, KG_DESC(x));
    if (c->op == KG_OP_MAX && x->shape[a] == 0)
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_max: axis %d of %s is empty", a, KG_DESC(x));
    s->dtype = KG_DTYPE_F32;
    s->ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i != a)
            s->dim[s->ndim++] = x->shape[i];
        else if (c->p.reduce.keepdim)
            s->dim[s->ndim++] = 1;
    }
    return true;
}

/* g with the reduced axis restored as size 1, broadcast back to the input's shape. */
static kg_tensor *spread(const kg_node *n, kg_tensor *g)
{
    const kg_tensor *x = n->in[0];
    int64_t kept[KG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        kept[i] = i == n->p.reduce.axis ? 1 : x->shape[i];
    return kg_expand(kg_reshape(g, x->ndim, kept), x->ndim, x->shape);
}

void kg__backward_sum(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    gin[0] = spread(n, g);
}

void kg__backward_max(const kg_node *n, kg_tensor *g, kg_tensor **gin)
{
    /* Gradient to the maxima, shared equally among ties. */
    kg_tensor *x = n->in[0];
    kg_tensor *hit = kg_eq(x, spread(n, n->out));
    kg_tensor *ties = kg_sum(hit, n->p.reduce.axis, true);
    gin[0] = kg_div(kg_mul(hit, spread(n, g)), ties);
}

static kg_tensor *reduce(kg_op op, kg_tensor *x, int axis, bool keepdim)
{
    int a = axis;
    if (x && axis < 0)
        a = axis + x->ndim; /* out-of-range axes are reported by the shape rule */
    kg_opparams p = {.reduce = {.axis = a, .keepdim = keepdim, .user_axis = axis}};
    return kg__op(op, 1, &x, &p);
}

kg_tensor *kg_sum(kg_tensor *x, int axis, bool keepdim)
{
    return reduce(KG_OP_SUM, x, axis, keepdim);
}

kg_tensor *kg_max(kg_tensor *x, int axis, bool keepdim)
{
    return reduce(KG_OP_MAX, x, axis, keepdim);
}

kg_tensor *kg_mean(kg_tensor *x, int axis, bool keepdim)
{
    kg_tensor *s = reduce(KG_OP_SUM, x, axis, keepdim);
    if (!s)
        return NULL;
    int64_t n = x->shape[axis < 0 ? axis + x->ndim : axis];
    return kg_scale(s, n ? 1.0f / (float)n : NAN);
}

kg_tensor *kg_sum_all(kg_tensor *x)
{
    int64_t n = kg_tensor_numel(x);
    return kg_sum(kg_reshape(x, 1, &n), 0, false);
}
