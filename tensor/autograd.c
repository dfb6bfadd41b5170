/* autograd.c — reverse-mode autodiff in a page, as micrograd does it: sort the tape behind the
 * loss topologically, walk it backwards calling each op's backward rule (written with the public
 * ops, so it runs on any backend), and add the gradients into the leaves. The tape stays until
 * its tensors are freed (their scope ends), so a second loss that shares part of the graph gets
 * its whole gradient, as PyTorch's retain_graph. Gradients are f32 whatever a tensor's dtype.
 */
#include "internal.h"

#include <stdlib.h>

void kg_set_requires_grad(kg_tensor *t, bool on)
{
    if (!t || t->ctx->status)
        return;
    if (on && (t->dtype == KG_DTYPE_I32 || kg__dtype_is_block(t->dtype))) {
        kg_set_error(t->ctx, KG_ERR_DTYPE, "kg_set_requires_grad: %s; %s tensors have no "
                     "gradient (expected f32, f16 or bf16)", KG_DESC(t),
                     t->dtype == KG_DTYPE_I32 ? "integer" : "quantized");
        return;
    }
    t->requires_grad = on;
}

bool kg_requires_grad(const kg_tensor *t) { return t && t->requires_grad; }
kg_tensor *kg_grad(const kg_tensor *t) { return t ? t->grad : NULL; }

void kg_zero_grad(kg_tensor *t)
{
    if (t && t->grad) {
        kg_tensor_free(t->grad);
        t->grad = NULL;
    }
}

kg_tensor *kg_detach(kg_tensor *t)
{
    if (!t || t->ctx->status)
        return NULL;
    return kg__tensor_view(t, "kg_detach", t->ndim, t->shape, t->stride, t->offset);
}

/* Post-order depth-first walk from the loss: every tensor comes after the inputs of its node. */
static kg_tensor **topo_sort(kg_tensor *loss, size_t *count)
{
    kg_ctx *ctx = loss->ctx;
    unsigned mark = ++ctx->visit;
    size_t cap = 64, n = 0, depth = 0;
    kg_tensor **order = kg__malloc(cap * sizeof *order);
    struct frame { kg_tensor *t; int next; } *stack = kg__malloc(cap * sizeof *stack);
    size_t stack_cap = cap;
    if (!order || !stack)
        goto oom;
    loss->visit = mark;
    stack[depth++] = (struct frame){loss, 0};
    while (depth) {
        struct frame *f = &stack[depth - 1];
        kg_node *node = f->t->node;
        if (node && f->next < node->n_in) {
            kg_tensor *in = node->in[f->next++];
            if (in->requires_grad && in->node && in->visit != mark) {
                in->visit = mark;
                if (depth == stack_cap) {
                    void *p = kg__realloc(stack, (stack_cap *= 2) * sizeof *stack);
                    if (!p)
                        goto oom;
                    stack = p;
                }
                stack[depth++] = (struct frame){in, 0};
            }
            continue;
        }
        if (n == cap) {
            void *p = kg__realloc(order, (cap *= 2) * sizeof *order);
            if (!p)
                goto oom;
            order = p;
        }
        order[n++] = f->t;
        depth--;
    }
    free(stack);
    *count = n;
    return order;
oom:
    free(order);
    free(stack);
    kg_set_error(ctx, KG_ERR_NOMEM, "kg_backward: out of host memory sorting the tape");
    return NULL;
}

/* grad += g for a leaf; the leaf owns its grad, so it outlives the step's scope. */
static void accumulate_leaf(kg_tensor *leaf, kg_tensor *g)
{
    if (!leaf->grad) {
        leaf->grad = kg__tensor_alloc(leaf->ctx, "kg_backward", KG_DTYPE_F32, leaf->ndim,
                                      leaf->shape, false);
        if (leaf->grad)
            kg__assign(leaf->grad, g);
        return;
    }
    kg_tensor *sum = kg_add(leaf->grad, g);
    if (sum) {
        kg__assign(leaf->grad, sum);
        kg_tensor_free(sum);
    }
}

/* A partial gradient the backward pass owns: a header of its own (a view when the rule returned
 * a tensor it shares, such as its incoming gradient), kept past the rule's scope and freed as
 * soon as the node it belongs to has passed it on. */
static kg_tensor *own(kg_tensor *g)
{
    if (!g)
        return NULL;
    return kg_tensor_keep(kg__tensor_view(g, "kg_backward", g->ndim, g->shape, g->stride,
                                          g->offset));
}

/* Hand a rule's gradient for `in` on: into a leaf's grad, or summed into a node's partial. */
static void pass_on(kg_tensor *in, kg_tensor *g)
{
    if (!in->node) {
        accumulate_leaf(in, g);
    } else if (!in->gacc) {
        in->gacc = own(g);
    } else {
        kg_tensor *sum = own(kg_add(in->gacc, g)); /* not in place: partials may share storage */
        kg_tensor_free(in->gacc);
        in->gacc = sum;
    }
}

bool kg_backward(kg_tensor *loss)
{
    if (!loss || loss->ctx->status)
        return false;
    kg_ctx *ctx = loss->ctx;
    if (kg_tensor_numel(loss) != 1)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_backward: the loss is %s; expected one element",
                        KG_DESC(loss));
    if (!loss->requires_grad)
        return kg_set_error(ctx, KG_ERR_STATE, "kg_backward: the loss %s does not depend on any "
                            "tensor that requires grad (made under kg_no_grad, detached, or kept "
                            "past its scope with kg_tensor_keep?)", KG_DESC(loss));
    size_t n = 0;
    kg_tensor **order = topo_sort(loss, &n);
    if (!order)
        return false;

    kg_no_grad_begin(ctx); /* backward rules build no tape of their own */
    loss->gacc = own(kg_ones(ctx, KG_DTYPE_F32, loss->ndim, loss->shape));
    if (loss->gacc && !loss->node) /* the loss is itself a leaf */
        accumulate_leaf(loss, loss->gacc);
    /* Each rule runs in a scope of its own, so what it made in passing is freed at once, and a
     * node's partial gradient is freed once passed on: memory peaks near the forward pass's,
     * not at every intermediate gradient of the whole graph. */
    for (size_t k = n; k-- > 0 && !ctx->status;) {
        kg_tensor *t = order[k];
        kg_node *node = t->node;
        if (!t->gacc || !node)
            continue;
        kg_scope scope = kg_scope_begin(ctx);
        kg_tensor *gin[KG_MAX_INPUTS] = {0};
        kg_op_table[node->op].backward(node, t->gacc, gin);
        for (int i = 0; i < node->n_in && !ctx->status; i++) {
            kg_tensor *in = node->in[i];
            if (!in->requires_grad || !gin[i])
                continue;
            if (gin[i]->dtype != KG_DTYPE_F32 && !(gin[i] = kg_cast(gin[i], KG_DTYPE_F32)))
                break;
            if (!kg__same_shape(gin[i], in)) {
                kg_set_error(ctx, KG_ERR_STATE, "kg_backward: the rule of %s gave %s for input %d "
                         "of %s (a bug in krongrad)", kg_op_table[node->op].name, KG_DESC(gin[i]),
                         i, KG_DESC(in));
                break;
            }
            pass_on(in, gin[i]);
        }
        kg_scope_end(ctx, scope);
        kg_tensor_free(t->gacc);
        t->gacc = NULL;
    }
    kg_no_grad_end(ctx);
    for (size_t k = 0; k < n; k++) { /* partials left by an error */
        kg_tensor_free(order[k]->gacc);
        order[k]->gacc = NULL;
    }
    free(order);
    return ctx->status == KG_OK;
}
