/* test_gradcheck.c — every differentiable op's backward rule against central finite
 * differences, on the cases of op_cases.h (several small shapes, broadcasting, non-contiguous
 * inputs). test_structured.c also checks the structured ops against their materialized forms.
 */
#include "op_cases.h"

static void test_binary_ops(void **state)
{
    (void)state;
    cases_binary_ops(gradcheck);
}

static void test_unary_ops(void **state)
{
    (void)state;
    cases_unary_ops(gradcheck);
}

static void test_reductions(void **state)
{
    (void)state;
    cases_reductions(gradcheck);
}

static void test_matmul(void **state)
{
    (void)state;
    cases_matmul(gradcheck);
}

static void test_softmax_family(void **state)
{
    (void)state;
    cases_softmax_family(gradcheck);
}

static void test_norms(void **state)
{
    (void)state;
    cases_norms(gradcheck);
}

static void test_rope(void **state)
{
    (void)state;
    cases_rope(gradcheck);
}

static void test_embedding_family(void **state)
{
    (void)state;
    cases_embedding_family(gradcheck);
}

static void test_cross_entropy(void **state)
{
    (void)state;
    cases_cross_entropy(gradcheck);
}

static void test_masked_fill_dropout(void **state)
{
    (void)state;
    cases_masked_fill_dropout(gradcheck);
}

static void test_views_and_concat(void **state)
{
    (void)state;
    cases_views_and_concat(gradcheck);
}

static void test_structured_ops(void **state)
{
    (void)state;
    cases_structured_ops(gradcheck);
}

static void test_forward_only(void **state)
{
    (void)state;
    cases_forward_only(gradcheck);
}

static void test_every_op_has_a_case(void **state)
{
    (void)state;
    assert_every_op_ran(gc_ops_made(), "gradient checks on the CPU backend");
}

int main(void)
{
    /* bf16 weights on vdpbf16ps round x to bf16 (a step function to finite differences, and
     * off by 2⁻⁹ from the exact product the Vulkan kernel forms; that rounding is checked in
     * test_gemm_w): the op cases check the math on the f32 kernels. */
    setenv("KG_GEMM_PATH", "avx512", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_ops),      cmocka_unit_test(test_unary_ops),
        cmocka_unit_test(test_reductions),      cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_softmax_family),  cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rope),            cmocka_unit_test(test_embedding_family),
        cmocka_unit_test(test_cross_entropy),   cmocka_unit_test(test_masked_fill_dropout),
        cmocka_unit_test(test_views_and_concat), cmocka_unit_test(test_structured_ops),
        cmocka_unit_test(test_forward_only),
        cmocka_unit_test(test_every_op_has_a_case), /* last: counts what the others ran */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
