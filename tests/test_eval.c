/* test_eval.c — multiple-choice scoring against lm-evaluation-harness: the tiny random Llama of
 * tests/fixtures/models scores the sample task files of tests/fixtures/tasks, and every choice's
 * summed log-likelihood, acc and acc_norm must be what lm-eval's HFLM computed with transformers
 * (tests/fixtures/eval/refs.json, made by make_eval_refs.py); the DistilBERT fixture's
 * multiple-choice logits must be transformers'. Predictions files are read back as JSON.
 *
 * Run with no argument on the CPU backend, with "vulkan" on Vulkan (77 without a device).
 */
#include "kg_test.h"
#include "train/kg_train.h"

#include <jansson.h>
#include <unistd.h>

#define LL_ATOL 1e-3  /* summed log-likelihoods (REFERENCE: f32 vs lm-eval's batch-1 runs) */
#define LOGIT_ATOL 1e-4

static kg_backend_kind backend = KG_BACKEND_CPU;
static json_t *refs;

static json_t *load_refs(void)
{
    json_error_t e;
    json_t *r = json_load_file(KG_FIXTURES "/eval/refs.json", 0, &e);
    if (!r)
        fail_msg("refs.json: %s (line %d)", e.text, e.line);
    return r;
}

/* The predictions file: one JSON object per line. */
static json_t *read_predictions(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *all = json_array();
    char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        if (!o)
            fail_msg("%s: not JSON: %s", path, line);
        json_array_append_new(all, o);
    }
    fclose(f);
    return all;
}

/* Whether the top two of v differ by more than eps (a near-tie could flip on rounding). */
static bool clear_winner(const double *v, int n, double eps)
{
    int best = kg_mc_argmax(v, n);
    for (int k = 0; k < n; k++)
        if (k != best && fabs(v[k] - v[best]) <= eps)
            return false;
    return true;
}

static void score_file(kg_ctx *ctx, kg_model *m, kg_tokenizer *tok, json_t *file, bool decoder)
{
    const char *rel = json_string_value(json_object_get(file, "path"));
    const char *name = json_string_value(json_object_get(file, "task"));
    char path[512], pred_path[] = "/tmp/kg_test_eval.XXXXXX";
    snprintf(path, sizeof path, "%s/tasks/%s", KG_FIXTURES, rel);
    int fd = mkstemp(pred_path);
    assert_true(fd >= 0);
    close(fd);
    kg_task *task = kg_task_read(ctx, name, path);
    assert_ok(ctx);
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind,
                      .max_length = json_integer_value(json_object_get(file, "max_length"))};
    kg_eval_options eo = {.predictions = pred_path};
    kg_eval_result r;
    assert_true(kg_mc_evaluate(&s, task, &eo, &r));
    assert_ok(ctx);
    json_t *items = json_object_get(file, "items"), *preds = read_predictions(pred_path);
    unlink(pred_path);
    assert_int_equal(json_array_size(preds), json_array_size(items));
    assert_int_equal(r.n, (int64_t)json_array_size(items));
    double worst = 0, acc = 0, acc_norm = 0;
    int labeled = 0;
    bool ties = false, has_norm = false; /* a near-tie could flip on rounding: then the totals are not compared */
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *want = json_array_get(items, i), *got = json_array_get(preds, i);
        json_t *ref = json_object_get(want, decoder ? "lls" : "scores");
        json_t *sc = json_object_get(got, "scores");
        int n = (int)json_array_size(ref);
        assert_int_equal(json_array_size(sc), n);
        assert_string_equal(json_string_value(json_object_get(got, "id")), task->items[i].id);
        double v[KG_MC_MAX_CHOICES], lens[KG_MC_MAX_CHOICES];
        for (int k = 0; k < n; k++) {
            double a = json_number_value(json_array_get(sc, k));
            double b = json_number_value(json_array_get(ref, k));
            double tol = decoder ? LL_ATOL : LOGIT_ATOL;
            if (!(fabs(a - b) <= tol))
                fail_msg("%s item %zu choice %d: %.6f; reference %.6f", rel, i, k, a, b);
            worst = fmax(worst, fabs(a - b));
            v[k] = b;
        }
        int gold = (int)json_integer_value(json_object_get(want, "gold"));
        assert_int_equal(json_integer_value(json_object_get(got, "gold")), gold);
        if (clear_winner(v, n, 1e-3))
            assert_int_equal(json_integer_value(json_object_get(got, "pred")),
                             kg_mc_argmax(v, n));
        if (decoder && gold >= 0) {
            kg_mc_pairs *pairs = kg_mc_decoder_requests(ctx, task->kind, &task->items[i]);
            for (int k = 0; k < n; k++)
                lens[k] = v[k] / (double)pairs->norm_len[k];
            kg_mc_pairs_free(pairs);
            labeled++;
            acc += json_number_value(json_object_get(want, "acc"));
            json_t *an = json_object_get(want, "acc_norm"); /* null: WinoGrande has acc only */
            has_norm = json_is_number(an);
            acc_norm += json_number_value(an);
            ties = ties || !clear_winner(v, n, 1e-3) || !clear_winner(lens, n, 1e-4);
        }
    }
    print_message("%s: %s, %zu items, max |diff| %.2e, acc %.3f acc_norm %.3f\n",
                  kg_backend_name(ctx), rel, json_array_size(items), worst, r.acc, r.acc_norm);
    if (decoder && labeled && !ties) {
        assert_true(fabs(r.acc - acc / labeled) < 1e-9);
        if (has_norm)
            assert_true(fabs(r.acc_norm - acc_norm / labeled) < 1e-9);
    }
    json_decref(preds);
    kg_task_free(task);
}

static void test_decoder_scores_match_lm_eval(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load(ctx, KG_FIXTURES "/models/llama");
    kg_tokenizer *tok = kg_tokenizer_load(ctx, KG_FIXTURES "/models/llama");
    assert_ok(ctx);
    json_t *files = json_object_get(refs, "files");
    assert_true(json_array_size(files) >= 5);
    for (size_t i = 0; i < json_array_size(files); i++)
        score_file(ctx, m, tok, json_array_get(files, i), true);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

static void test_encoder_scores_match_transformers(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load(ctx, KG_FIXTURES "/models/distilbert");
    kg_tokenizer *tok = kg_tokenizer_load(ctx, KG_FIXTURES "/models/distilbert");
    assert_ok(ctx);
    json_t *files = json_object_get(refs, "encoder_files");
    assert_int_equal(json_array_size(files), 2);
    for (size_t i = 0; i < json_array_size(files); i++)
        score_file(ctx, m, tok, json_array_get(files, i), false);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

/* One scores tensor for items of 3, 4 and 5 choices: the missing ones score -1e9 and the rest
 * equal each item scored alone. */
static void test_ragged_batch(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load(ctx, KG_FIXTURES "/models/llama");
    kg_tokenizer *tok = kg_tokenizer_load(ctx, KG_FIXTURES "/models/llama");
    kg_task *task = kg_task_read(ctx, "plain", KG_FIXTURES "/tasks/plain/plain.jsonl");
    assert_ok(ctx);
    int n = (int)task->n_items;
    const kg_mc_item *items[16];
    for (int i = 0; i < n; i++)
        items[i] = &task->items[i];
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind};
    float *all = kg_tensor_to_f32(kg_mc_scores(&s, items, n, NULL));
    assert_ok(ctx);
    int K = 0;
    for (int i = 0; i < n; i++)
        K = items[i]->n_choices > K ? items[i]->n_choices : K;
    for (int i = 0; i < n; i++) {
        float *one = kg_tensor_to_f32(kg_mc_scores(&s, &items[i], 1, NULL));
        for (int k = 0; k < K; k++) {
            if (k < items[i]->n_choices)
                assert_true(fabsf(all[i * K + k] - one[k]) < 1e-4f);
            else
                assert_true(all[i * K + k] <= -1e8f);
        }
        free(one);
    }
    free(all);
    kg_task_free(task);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

/* A continuation longer than max_length is an error naming the item, as lm-eval asserts. */
static void test_continuation_too_long(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load(ctx, KG_FIXTURES "/models/llama");
    kg_tokenizer *tok = kg_tokenizer_load(ctx, KG_FIXTURES "/models/llama");
    kg_task *task = kg_task_read(ctx, "plain", KG_FIXTURES "/tasks/plain/plain.jsonl");
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind, .max_length = 2};
    kg_eval_result r;
    assert_false(kg_mc_evaluate(&s, task, NULL, &r));
    print_message("%s\n", kg_error(ctx));
    assert_non_null(strstr(kg_error(ctx), "max_length"));
    assert_non_null(strstr(kg_error(ctx), task->items[0].id));
    kg_task_free(task);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

/* The scores (and the loss's gradients, LoRA attached with random factors) of a task file's
 * items with each item's prompt read once for its choices, against every row run whole. The
 * shared path must run fewer positions (so it ran) and give the same values. (test_nn checks
 * the shared attention under a sliding window.) */
static void shared_vs_whole(const char *model, const char *rel, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s", KG_FIXTURES, model);
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load(ctx, path);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, path);
    snprintf(path, sizeof path, "%s/tasks/%s", KG_FIXTURES, rel);
    kg_task *task = kg_task_read(ctx, name, path);
    kg_train_config c = kg_train_config_default(KG_ADAPTER_LORA);
    assert_true(kg_model_attach(m, &c.adapter));
    assert_ok(ctx);
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *t = m->trainable[i].tensor;
        int64_t shape[2] = {kg_tensor_dim(t, 0), kg_tensor_dim(t, 1)};
        assert_true(kg_tensor_assign(t, kg_normal(ctx, 2, shape, 0.0f, 0.05f, 7 + (uint64_t)i)));
    }
    int n = (int)task->n_items;
    const kg_mc_item *items[16], *labeled[16];
    assert_true(n <= 16);
    int n_labeled = 0;
    for (int i = 0; i < n; i++) {
        items[i] = &task->items[i];
        if (items[i]->gold >= 0)
            labeled[n_labeled++] = items[i];
    }
    assert_true(n_labeled > 0);
    float *scores[2], *grads[2];
    int64_t run[2], n_grad = 0;
    for (int i = 0; i < m->n_trainable; i++)
        n_grad += kg_tensor_numel(m->trainable[i].tensor);
    for (int whole = 0; whole < 2; whole++) {
        kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind, .max_length = 256,
                          .whole_rows = whole};
        kg_scope scope = kg_scope_begin(ctx);
        scores[whole] = kg_tensor_to_f32(kg_mc_scores(&s, items, n, &run[whole]));
        for (int i = 0; i < m->n_trainable; i++)
            kg_zero_grad(m->trainable[i].tensor);
        if (!kg_backward(kg_mc_loss_of(&s, KG_MC_LOSS_CHOICES, labeled, n_labeled, NULL)))
            fail_msg("%s", kg_error(ctx));
        grads[whole] = malloc(sizeof(float) * (size_t)n_grad);
        for (int i = 0, at = 0; i < m->n_trainable; i++) {
            float *g = kg_tensor_to_f32(kg_grad(m->trainable[i].tensor));
            int64_t k = kg_tensor_numel(m->trainable[i].tensor);
            memcpy(grads[whole] + at, g, sizeof(float) * (size_t)k);
            at += (int)k;
            free(g);
        }
        kg_scope_end(ctx, scope);
        assert_ok(ctx);
    }
    assert_true(run[0] < run[1]);
    int K = 0;
    for (int i = 0; i < n; i++)
        K = items[i]->n_choices > K ? items[i]->n_choices : K;
    double worst = 0, gmax = 0, gworst = 0;
    for (int i = 0; i < n * K; i++) {
        if (!(fabsf(scores[0][i] - scores[1][i]) <= 1e-4f))
            fail_msg("%s %s: score %d: shared %.6f, whole %.6f", model, rel, i, scores[0][i],
                     scores[1][i]);
        worst = fmax(worst, fabsf(scores[0][i] - scores[1][i]));
    }
    for (int64_t i = 0; i < n_grad; i++) {
        gmax = fmax(gmax, fabsf(grads[1][i]));
        gworst = fmax(gworst, fabsf(grads[0][i] - grads[1][i]));
    }
    print_message("%s: %s %s: %lld positions shared, %lld whole; max |diff| scores %.2e, "
                  "gradients %.2e of %.2e\n", kg_backend_name(ctx), model, rel,
                  (long long)run[0], (long long)run[1], worst, gworst, gmax);
    assert_true(gmax > 0);
    assert_true(gworst <= 1e-4 * gmax + 1e-6);
    for (int w = 0; w < 2; w++) {
        free(scores[w]);
        free(grads[w]);
    }
    kg_task_free(task);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

static void test_shared_prompts_match_whole_rows(void **state)
{
    (void)state;
    shared_vs_whole("llama", "arc/ARC-Challenge-Dev.jsonl", "arc-challenge");
    if (backend == KG_BACKEND_VULKAN)
        return; /* lavapipe is slow: one file there */
    shared_vs_whole("llama", "piqa/dev.jsonl", "piqa");
    shared_vs_whole("llama", "hellaswag/hellaswag_val.jsonl", "hellaswag");
    /* Choices of one token (letters after a question that lists them): every row reads the
     * same tokens but its last. */
    shared_vs_whole("llama", "commonsense_qa/dev_rand_split.jsonl", "commonsense_qa");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "vulkan") == 0) {
        backend = KG_BACKEND_VULKAN;
        kg_ctx *probe = kg_ctx_new(backend);
        bool none = !probe || kg_ctx_status(probe);
        kg_ctx_free(probe);
        if (none)
            return 77;
    }
    refs = load_refs();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_scores_match_lm_eval),
        cmocka_unit_test(test_encoder_scores_match_transformers),
        cmocka_unit_test(test_ragged_batch),
        cmocka_unit_test(test_continuation_too_long),
        cmocka_unit_test(test_shared_prompts_match_whole_rows),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(refs);
    return rc;
}
