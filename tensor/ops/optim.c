/* optim.c — optimizer updates as fused in-place ops: AdamW (decoupled weight decay) and SGD with
 * momentum, each one pass over a parameter, its gradient and its state, off the tape. The
 * formulas are torch.optim's (kg_tensor.h states them).
 */
#include "ops.h"
#include "../cpu/cpu.h"

#include <math.h>

/* Inputs: param, grad, then the state (AdamW: m, v; SGD: the momentum buffer, or none), all f32,
 * contiguous (updated in place: a copy would be updated instead) and of param's shape. */
bool kg__shape_optim(const kg_opcall *c, kg_shape *s)
{
    const char *fn = kg_op_table[c->op].name;
    int want_lo = c->op == KG_OP_ADAMW ? 4 : 2, want_hi = c->op == KG_OP_ADAMW ? 4 : 3;
    if (c->n_in < want_lo || c->n_in > want_hi)
        return kg_set_error(c->ctx, KG_ERR_ARG, "kg_%s_update: %d tensors; expected %d", fn,
                            c->n_in, want_hi);
    static const char *const role[] = {"param", "grad", "state", "state"};
    for (int i = 0; i < c->n_in; i++) {
        const kg_tensor *t = c->in[i];
        if (t->dtype != KG_DTYPE_F32 || !kg__same_shape(t, c->in[0]) ||
            !kg_tensor_is_contiguous(t))
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s_update: %s is %s%s; expected a "
                                "contiguous f32 tensor of the param's shape %s", fn, role[i],
                                KG_DESC(t), kg_tensor_is_contiguous(t) ? "" : " (strided)",
                                KG_DESC(c->in[0]));
        for (int j = 0; j < i; j++)
            if (t->storage == c->in[j]->storage && i >= 2)
                return kg_set_error(c->ctx, KG_ERR_ARG, "kg_%s_update: %s shares memory with "
                                    "%s", fn, role[i], role[j]);
    }
    if (c->op == KG_OP_ADAMW) {
        const kg_adamw *a = &c->p.adamw;
        if (!(a->lr >= 0 && a->beta1 >= 0 && a->beta1 < 1 && a->beta2 >= 0 && a->beta2 < 1 &&
              a->eps > 0 && a->weight_decay >= 0 && a->step >= 1))
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_adamw_update: lr %g, betas (%g, %g), "
                                "eps %g, weight decay %g, step %lld; expected lr >= 0, betas in "
                                "[0, 1), eps > 0, weight decay >= 0, step >= 1", (double)a->lr,
                                (double)a->beta1, (double)a->beta2, (double)a->eps,
                                (double)a->weight_decay, (long long)a->step);
    } else {
        const kg_sgd *g = &c->p.sgd;
        if (!(g->lr >= 0 && g->momentum >= 0 && g->weight_decay >= 0) ||
            (g->momentum > 0 && c->n_in < 3))
            return kg_set_error(c->ctx, KG_ERR_RANGE, "kg_sgd_update: lr %g, momentum %g, weight "
                                "decay %g%s; expected values >= 0 and a buffer when momentum > 0",
                                (double)g->lr, (double)g->momentum, (double)g->weight_decay,
                                c->n_in < 3 ? ", no buffer" : "");
    }
    kg__shape_of(c->in[0], s);
    return true;
}

typedef struct optim_job {
    const kg_opcall *c;
    float *p, *m, *v;
    const float *g;
    float c1, c2; /* bias corrections 1 - β^step */
} optim_job;

static void adamw_range(void *arg, int64_t lo, int64_t hi)
{
    const optim_job *j = arg;
    const kg_adamw *a = &j->c->p.adamw;
    float decay = 1.0f - a->lr * a->weight_decay;
    for (int64_t i = lo; i < hi; i++) {
        float g = j->g[i];
        float m = a->beta1 * j->m[i] + (1.0f - a->beta1) * g;
        float v = a->beta2 * j->v[i] + (1.0f - a->beta2) * g * g;
        j->m[i] = m;
        j->v[i] = v;
        j->p[i] = j->p[i] * decay - a->lr * (m / j->c1) / (sqrtf(v / j->c2) + a->eps);
    }
}

bool kg__cpu_adamw(const kg_opcall *c)
{
    const kg_adamw *a = &c->p.adamw;
    optim_job j = {c, kg_cpu_f32(c->in[0]), kg_cpu_f32(c->in[2]), kg_cpu_f32(c->in[3]),
                   kg_cpu_f32(c->in[1]), 1.0f - powf(a->beta1, (float)a->step),
                   1.0f - powf(a->beta2, (float)a->step)};
    kg_cpu_parallel_for(kg_tensor_numel(c->in[0]), 1 << 14, adamw_range, &j);
    return true;
}

static void sgd_range(void *arg, int64_t lo, int64_t hi)
{
    const optim_job *j = arg;
    const kg_sgd *s = &j->c->p.sgd;
    for (int64_t i = lo; i < hi; i++) {
        float g = j->g[i] + s->weight_decay * j->p[i];
        if (j->m) {
            g = s->first ? g : s->momentum * j->m[i] + g;
            j->m[i] = g;
        }
        j->p[i] -= s->lr * g;
    }
}

bool kg__cpu_sgd(const kg_opcall *c)
{
    optim_job j = {c, kg_cpu_f32(c->in[0]), c->n_in > 2 ? kg_cpu_f32(c->in[2]) : NULL, NULL,
                   kg_cpu_f32(c->in[1]), 0, 0};
    kg_cpu_parallel_for(kg_tensor_numel(c->in[0]), 1 << 14, sgd_range, &j);
    return true;
}

/* A NULL cfg: the error goes to the context of whichever tensor was given. */
static bool cfg_missing(const char *fn, kg_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts[i])
            return kg_set_error(ts[i]->ctx, KG_ERR_ARG, "%s: cfg is NULL", fn);
    return false;
}

bool kg_adamw_update(kg_tensor *param, kg_tensor *grad, kg_tensor *m, kg_tensor *v,
                     const kg_adamw *cfg)
{
    if (!cfg)
        return cfg_missing("kg_adamw_update", (kg_tensor *[]){param, grad, m, v}, 4);
    kg_opparams p = {.adamw = *cfg};
    return kg__op(KG_OP_ADAMW, 4, (kg_tensor *[]){param, grad, m, v}, &p) != NULL;
}

bool kg_sgd_update(kg_tensor *param, kg_tensor *grad, kg_tensor *buf, const kg_sgd *cfg)
{
    if (!cfg)
        return cfg_missing("kg_sgd_update", (kg_tensor *[]){param, grad, buf}, 3);
    kg_opparams p = {.sgd = *cfg};
    return kg__op(KG_OP_SGD, buf ? 3 : 2, (kg_tensor *[]){param, grad, buf}, &p) != NULL;
}
