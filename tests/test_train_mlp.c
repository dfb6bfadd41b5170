/* test_train_mlp.c — the whole stack learning something: a two-layer MLP trained with plain
 * SGD on two interleaved spirals (not linearly separable) must reach a low loss and classify
 * every training point.
 */
#include "kg_test.h"

enum { N = 128, HIDDEN = 32, STEPS = 1500 };

static void make_spirals(float *x, int32_t *y)
{
    for (int i = 0; i < N; i++) {
        int cls = i % 2;
        float t = 0.25f + 2.5f * (float)(i / 2) / (N / 2); /* radius grows with the angle */
        float ang = 2.2f * t + (float)cls * 3.14159265f;
        x[2 * i] = t * cosf(ang);
        x[2 * i + 1] = t * sinf(ang);
        y[i] = cls;
    }
}

static void test_mlp_learns_spirals(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    float xs[2 * N];
    int32_t ys[N];
    make_spirals(xs, ys);
    kg_tensor *x = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(N, 2), xs);
    kg_tensor *y = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(N), ys);
    kg_tensor *params[4] = {
        kg_normal(ctx, 2, SHAPE(2, HIDDEN), 0, 1.0f, 1),  /* W1, scaled ~1/√fan_in */
        kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(HIDDEN)),    /* b1 */
        kg_normal(ctx, 2, SHAPE(HIDDEN, 2), 0, 0.2f, 2),  /* W2 */
        kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(2)),         /* b2 */
    };
    for (int i = 0; i < 4; i++)
        kg_set_requires_grad(params[i], true);
    double first = 0, loss = 0;
    for (int step = 0; step < STEPS; step++) {
        kg_scope s = kg_scope_begin(ctx);
        kg_tensor *h = kg_tanh(kg_add(kg_matmul(x, params[0]), params[1]));
        kg_tensor *logits = kg_add(kg_matmul(h, params[2]), params[3]);
        kg_tensor *l = kg_cross_entropy(logits, y, -100);
        loss = kg_item(l);
        if (step == 0)
            first = loss;
        kg_backward(l);
        /* SGD: p ← p - lr·g, done without recording (parameters are leaves). */
        kg_no_grad_begin(ctx);
        for (int i = 0; i < 4; i++) {
            kg_tensor *next = kg_sub(params[i], kg_scale(kg_grad(params[i]), 0.5f));
            kg_tensor_assign(params[i], next);
            kg_zero_grad(params[i]);
        }
        kg_no_grad_end(ctx);
        kg_scope_end(ctx, s);
        assert_ok(ctx);
    }
    /* Accuracy on the training set. */
    kg_tensor *h = kg_tanh(kg_add(kg_matmul(x, params[0]), params[1]));
    float *logits = kg_tensor_to_f32(kg_add(kg_matmul(h, params[2]), params[3]));
    int correct = 0;
    for (int i = 0; i < N; i++)
        correct += (logits[2 * i + 1] > logits[2 * i]) == (ys[i] == 1);
    free(logits);
    print_message("spirals: loss %.4f -> %.4f, %d/%d correct\n", first, loss, correct, N);
    assert_true(first > 0.6);
    assert_true(loss < 0.08);
    assert_int_equal(correct, N);
    kg_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_mlp_learns_spirals)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
