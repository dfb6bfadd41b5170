/* test_curves.c — learning curves: kg_train_run with eval_every scores the held-out items before
 * training and every N steps, into metrics.jsonl and the result's curve, each point equal to a
 * separate kg_mc_evaluate of a run stopped at that step; kg_compare_run's curves, its
 * steps-to-accuracy and the SVG / JSON that show them. The random Llama fixture, a few steps.
 */
#include "kg_test.h"
#include "train/kg_train.h"

#include <jansson.h>
#include <unistd.h>

static char dir[64], train_path[128], test_path[128], model_path[256];

/* A word names one of two things; every word is in the fixture's vocabulary. */
static const char items[] =
    "{\"question\": \"red\", \"choices\": [\"cat\", \"dog\"], \"answer\": 0}\n"
    "{\"question\": \"big\", \"choices\": [\"cat\", \"dog\"], \"answer\": 1}\n"
    "{\"question\": \"red\", \"choices\": [\"dog\", \"cat\"], \"answer\": 1}\n"
    "{\"question\": \"big\", \"choices\": [\"dog\", \"cat\"], \"answer\": 0}\n"
    "{\"question\": \"red\", \"choices\": [\"sun\", \"cat\"], \"answer\": 1}\n"
    "{\"question\": \"big\", \"choices\": [\"dog\", \"moon\"], \"answer\": 0}\n";

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kg_test_curves.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(train_path, sizeof train_path, "%s/train.jsonl", dir);
    snprintf(test_path, sizeof test_path, "%s/test.jsonl", dir);
    snprintf(model_path, sizeof model_path, "%s/models/llama", KG_FIXTURES);
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(i ? test_path : train_path, "w");
        if (!f || fputs(items, f) < 0 || fclose(f) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static kg_train_config config(kg_adapter_kind kind)
{
    kg_train_config c = kg_train_config_default(kind);
    c.adapter.rank = 4;
    c.adapter.alpha = 8;
    c.steps = 6;
    c.batch = 4;
    c.lr = 2e-2;
    return c;
}

/* A fresh fixture model, LoRA attached, trained with opts (the caller frees r's arrays). */
static void run(kg_ctx *ctx, kg_tokenizer *tok, const kg_task *train, const kg_task *test,
                const kg_run_options *opts, kg_run_result *r, kg_eval_result *after)
{
    kg_train_config c = config(KG_ADAPTER_LORA);
    kg_model *m = kg_test_model(ctx, "llama");
    assert_true(kg_model_attach(m, &c.adapter));
    assert_true(kg_train_run(m, tok, train, opts->eval_every ? test : NULL, &c, opts, r));
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = test->kind};
    assert_true(kg_mc_evaluate(&s, test, NULL, after));
    kg_test_model_free(ctx, m);
}

static void test_train_eval_every(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, model_path);
    kg_task *train = kg_task_read(ctx, "plain", train_path);
    kg_task *test = kg_task_read(ctx, "plain", test_path);
    assert_ok(ctx);
    char out[128], metrics[160];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    kg_run_result r;
    kg_eval_result end;
    run(ctx, tok, train, test, &(kg_run_options){.out_dir = out, .eval_every = 2}, &r, &end);
    /* Points before training and after steps 2, 4 and 6 (the final eval). */
    assert_int_equal(r.n_curve, 4);
    for (int k = 0; k < 4; k++)
        assert_int_equal(r.curve[k].step, 2 * k);
    assert_true(r.evaluated);
    assert_true(r.curve[3].acc == r.eval.acc && r.curve[3].acc == end.acc);
    assert_true(r.curve[3].acc_norm == end.acc_norm);
    /* Each point equals a separate evaluation of a run stopped at its step (the schedule still
     * spans 6 steps), and the first one the untrained model's. */
    for (int k = 0; k < 3; k++) {
        kg_eval_result at;
        if (k == 0) {
            kg_model *m = kg_test_model(ctx, "llama");
            kg_train_config c = config(KG_ADAPTER_LORA);
            assert_true(kg_model_attach(m, &c.adapter));
            kg_mc_scorer sc = {.model = m, .tok = tok, .kind = test->kind};
            assert_true(kg_mc_evaluate(&sc, test, NULL, &at));
            kg_test_model_free(ctx, m);
        } else {
            kg_run_result s;
            run(ctx, tok, train, test, &(kg_run_options){.stop_at = 2 * k}, &s, &at);
            free(s.losses);
        }
        if (at.acc != r.curve[k].acc || at.acc_norm != r.curve[k].acc_norm)
            fail_msg("step %d: curve acc %g / %g; a separate evaluation gives %g / %g", 2 * k,
                     r.curve[k].acc, r.curve[k].acc_norm, at.acc, at.acc_norm);
    }
    /* metrics.jsonl: every step's line, and an eval line at steps 0, 2, 4, 6 with the values. */
    FILE *f = fopen(metrics, "r");
    assert_non_null(f);
    char line[1024];
    int evals = 0, steps = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        json_int_t step = json_integer_value(json_object_get(o, "step"));
        const json_t *acc = json_object_get(o, "eval_acc");
        if (acc) {
            assert_true(evals < 4);
            assert_int_equal(step, r.curve[evals].step);
            /* written with 9 significant digits */
            assert_true(fabs(json_number_value(acc) - r.curve[evals].acc) < 1e-8);
            assert_true(fabs(json_number_value(json_object_get(o, "eval_acc_norm")) -
                             r.curve[evals].acc_norm) < 1e-8);
            assert_int_equal(json_integer_value(json_object_get(o, "eval_items")), 6);
            evals++;
        } else {
            assert_int_equal(step, ++steps);
        }
        json_decref(o);
    }
    fclose(f);
    assert_int_equal(evals, 4);
    assert_int_equal(steps, 6);
    free(r.losses);
    free(r.curve);
    /* Without eval_every, no curve. */
    run(ctx, tok, train, test, &(kg_run_options){0}, &r, &end);
    assert_null(r.curve);
    assert_int_equal(r.n_curve, 0);
    free(r.losses);
    kg_task_free(train);
    kg_task_free(test);
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
}

static size_t count(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void test_compare_curves(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_task *train = kg_task_read(ctx, "plain", train_path);
    kg_task *test = kg_task_read(ctx, "plain", test_path);
    assert_ok(ctx);
    kg_train_config c = config(KG_ADAPTER_LORA);
    c.steps = 4;
    kg_adapter_config configs[2] = {c.adapter, kg_train_config_default(KG_ADAPTER_KRONLORA).adapter};
    configs[1].rank = 4;
    configs[1].alpha = 8;
    kg_compare_result r;
    assert_true(kg_compare_run(ctx, model_path, train, test, &c, configs, 2, 2, false, 0, NULL, 0,
                               &(kg_compare_curves){.every = 2, .target_acc = NAN}, NULL, NULL,
                               &r));
    assert_int_equal(r.n_rows, 2);
    assert_int_equal(r.eval_every, 2);
    double best = r.base_acc;
    for (int i = 0; i < r.n_rows; i++)
        best = fmax(best, r.rows[i].acc_mean);
    assert_true(fabs(r.target_acc - 0.5 * (r.base_acc + best)) < 1e-12);
    for (int i = 0; i < r.n_rows; i++) {
        const kg_compare_row *w = &r.rows[i];
        assert_int_equal(w->n_curve, 3);
        int64_t first = -1;
        for (int k = 0; k < 3; k++) {
            double mean = 0;
            for (int s = 0; s < 2; s++) {
                assert_int_equal(w->curves[s][k].step, 2 * k);
                mean += w->curves[s][k].acc / 2;
            }
            if (first < 0 && mean >= r.target_acc - 1e-12)
                first = 2 * k;
        }
        assert_int_equal(w->steps_to_target, first);
        for (int s = 0; s < 2; s++) /* the last point is the final accuracy */
            assert_true(w->curves[s][2].acc == w->acc[s]);
        assert_false(isnan(w->acc_norm_mean)); /* a decoder has acc_norm */
        assert_true(w->lr == c.lr); /* a rate given is every configuration's */
    }
    char svg[160], json[160];
    snprintf(svg, sizeof svg, "%s/compare.svg", dir);
    snprintf(json, sizeof json, "%s/compare.json", dir);
    assert_true(kg_compare_write_svg(ctx, &r, svg));
    assert_true(kg_compare_write_json(ctx, &r, json));
    FILE *f = fopen(svg, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    /* One mean line and one ± std band per configuration, with its points, and the legend. */
    assert_int_equal(count(text, "class='curve'"), 2);
    assert_int_equal(count(text, "class='band'"), 2);
    assert_non_null(strstr(text, "held-out accuracy during training"));
    assert_non_null(strstr(text, r.rows[1].label));
    json_t *j = json_load_file(json, 0, NULL);
    assert_non_null(j);
    const json_t *row = json_array_get(json_object_get(j, "rows"), 1);
    const json_t *curve = json_object_get(row, "curve");
    assert_int_equal(json_array_size(curve), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(curve, 2), "step")), 4);
    assert_true(fabs(json_number_value(json_object_get(json_array_get(curve, 2), "acc_mean")) -
                     r.rows[1].acc_mean) < 1e-8);
    assert_int_equal(json_integer_value(json_object_get(row, "steps_to_target")),
                     r.rows[1].steps_to_target);
    assert_true(json_number_value(json_object_get(row, "lr")) == c.lr);
    json_decref(j);
    kg_compare_result_free(&r);
    /* Without curves, the SVG has none; with lr 0 each configuration trains at its adapter's
     * default rate, not at one shared rate. */
    c.lr = 0;
    assert_true(kg_compare_run(ctx, model_path, train, test, &c, configs, 2, 1, false, 0, NULL, 0,
                               NULL, NULL, NULL, &r));
    assert_null(r.rows[0].curves);
    assert_true(r.rows[0].lr == kg_train_config_default(KG_ADAPTER_LORA).lr);
    assert_true(r.rows[1].lr == kg_train_config_default(KG_ADAPTER_KRONLORA).lr);
    assert_true(r.rows[0].lr != r.rows[1].lr);
    assert_true(kg_compare_write_svg(ctx, &r, svg));
    f = fopen(svg, "r");
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    assert_int_equal(count(text, "class='curve'"), 0);
    kg_compare_result_free(&r);
    kg_task_free(train);
    kg_task_free(test);
    kg_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_eval_every),
        cmocka_unit_test(test_compare_curves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
