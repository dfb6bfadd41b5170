/* test_op_table.c — the op table has no holes: every op has a name, a shape rule, and a CPU
 * kernel unless it is a view; names are unique.
 */
#include "kg_test.h"

static void test_every_entry_is_filled(void **state)
{
    (void)state;
    for (int op = 0; op < KG_OP_COUNT; op++) {
        const kg_op_info *e = &kg_op_table[op];
        if (!e->name)
            fail_msg("op %d has no table entry", op);
        if (!e->shape)
            fail_msg("op %s has no shape rule", e->name);
        bool view = e->flags & KG_OPF_VIEW;
        if (view == (e->cpu != NULL))
            fail_msg("op %s: a view must have no kernel and any other op a CPU kernel", e->name);
        if (e->n_in == 0 || e->n_in > KG_MAX_INPUTS)
            fail_msg("op %s takes %d inputs", e->name, e->n_in);
        for (int other = 0; other < op; other++)
            if (strcmp(kg_op_table[other].name, e->name) == 0)
                fail_msg("two ops are named %s", e->name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_entry_is_filled)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
