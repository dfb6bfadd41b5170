/* test_real.c — the real checkpoints scripts/fetch-models.sh unpacks, against what transformers
 * and sentencepiece computed with them (tests/fixtures/real/refs.json, from make_real_refs.py):
 * SmolLM2-135M-Instruct (Q4_1 GGUF) continues "The capital of France is" with " Paris" and gives
 * the same top logits; all-MiniLM-L6-v2 gives the same mean-pooled embeddings; Mistral-7B's
 * tokenizer.model gives the same ids.
 *
 * The files are found in $KG_MODELS, else ~/.cache/krongrad/models; without them the test exits
 * 77 (skipped). Usage: test_real [cpu|vulkan] (default cpu).
 */
#include "kg_test.h"
#include "models/kg_models.h"
#include "models/kg_tokenizer.h"

#include <jansson.h>
#include <unistd.h>

/* Both sides compute in f32 from the same dequantized weights: what differs is the order of the
 * sums (30 layers for SmolLM2, logits around 17), hence these tolerances. */
#define LOGIT_ATOL 1e-3f
#define LOGIT_RTOL 1e-4f
#define EMBED_ATOL 1e-4f
#define EMBED_RTOL 1e-4f
/* Greedy tokens that must match the reference one for one: later ones may turn on near-ties. */
#define GREEDY_MATCH 4

static char models_dir[4096];
static json_t *refs;
static kg_backend_kind backend = KG_BACKEND_CPU;

static const char *model_path(const char *rel)
{
    static char path[2][8192];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", models_dir, rel);
    return path[which];
}

static json_t *ref(const char *section, const char *key)
{
    json_t *v = json_object_get(json_object_get(refs, section), key);
    if (!v)
        fail_msg("refs.json has no %s.%s", section, key);
    return v;
}

/* A JSON array of numbers as floats / ids; the caller frees it. */
static float *floats(const json_t *a, int64_t *n)
{
    *n = (int64_t)json_array_size(a);
    float *v = malloc(sizeof(float) * (size_t)(*n ? *n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < json_array_size(a); i++)
        v[i] = (float)json_number_value(json_array_get(a, i));
    return v;
}

static int32_t *ids_of(const json_t *a, int64_t *n)
{
    *n = (int64_t)json_array_size(a);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < json_array_size(a); i++)
        v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

static void assert_ids(const int32_t *got, int64_t n_got, const int32_t *want, int64_t n_want,
                       const char *what)
{
    for (int64_t i = 0; i < n_got && i < n_want; i++)
        if (got[i] != want[i])
            fail_msg("%s: id %lld is %d; expected %d", what, (long long)i, got[i], want[i]);
    if (n_got != n_want)
        fail_msg("%s: %lld ids; expected %lld", what, (long long)n_got, (long long)n_want);
}

/* assert_close, saying first how close it came (the tolerances reached go in the log). */
static void check_close(const float *got, const float *want, int64_t n, float atol, float rtol,
                        const char *what)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    fprintf(stderr, "%s: max |diff| %.3g over %lld values (atol %.0e, rtol %.0e)\n", what, worst,
            (long long)n, (double)atol, (double)rtol);
    assert_close(got, want, n, atol, rtol, what);
}

static kg_ctx *new_ctx(void)
{
    kg_ctx *ctx = kg_ctx_new(backend);
    assert_non_null(ctx);
    assert_ok(ctx);
    return ctx;
}

/* ---- SmolLM2-135M-Instruct ------------------------------------------------------------------ */

typedef struct smol {
    kg_ctx *ctx;
    kg_model *model;
    kg_tokenizer *tok;
} smol;

static int smol_teardown(void **state)
{
    smol *s = *state;
    if (s) {
        kg_tokenizer_free(s->tok);
        kg_model_free(s->model);
        kg_ctx_free(s->ctx);
        free(s);
        *state = NULL;
    }
    return 0;
}

static int smol_setup(void **state)
{
    smol *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    const char *path = model_path(json_string_value(ref("smollm2", "file")));
    s->ctx = kg_ctx_new(backend);
    s->model = kg_model_load(s->ctx, path);
    s->tok = kg_tokenizer_load(s->ctx, path);
    *state = s;
    if (!s->model || !s->tok) {
        fprintf(stderr, "test_real: %s: %s\n", path, kg_error(s->ctx));
        smol_teardown(state);
        return -1;
    }
    return 0;
}

/* The prompt through SmolLM2's tokenizer (the GGUF's byte-level BPE, no BOS). */
static void test_smollm2_prompt_ids(void **state)
{
    smol *s = *state;
    int64_t n, n_want;
    int32_t *want = ids_of(ref("smollm2", "prompt_ids"), &n_want);
    int32_t *got = kg_tokenizer_encode(s->tok, json_string_value(ref("smollm2", "prompt")), true,
                                       &n);
    assert_ok(s->ctx);
    assert_ids(got, n, want, n_want, "SmolLM2 prompt");
    free(got), free(want);
}

/* The last position's final-norm hidden state and logits: the reference's top 10 ids score what
 * transformers gives them, and no other id scores above the tenth. */
static void test_smollm2_top_logits(void **state)
{
    smol *s = *state;
    kg_ctx *ctx = s->ctx;
    int64_t T, V = s->model->cfg.vocab_size, n_top, n_head;
    int32_t *ids = ids_of(ref("smollm2", "prompt_ids"), &T);
    kg_scope scope = kg_scope_begin(ctx);
    kg_no_grad_begin(ctx);
    kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(1, T), ids)};
    kg_tensor *hidden = kg_model_hidden(s->model, &in, NULL); /* (1, T, C) */
    kg_tensor *logits = kg_model_logits(s->model, &in, NULL); /* (1, T, V) */
    kg_no_grad_end(ctx);
    assert_ok(ctx);
    int64_t C = kg_tensor_dim(hidden, 2);
    float *h = kg_tensor_to_f32(hidden), *l = kg_tensor_to_f32(logits);
    assert_non_null(h);
    assert_non_null(l);
    float *want_h = floats(json_object_get(ref("smollm2", "hidden_last_position_head"),
                                           "final_norm"), &n_head);
    check_close(h + (T - 1) * C, want_h, n_head, LOGIT_ATOL, LOGIT_RTOL,
                 "SmolLM2 final-norm hidden state, last position");
    const float *last = l + (T - 1) * V;
    float *want_head = floats(ref("smollm2", "last_logits_head"), &n_head);
    check_close(last, want_head, n_head, LOGIT_ATOL, LOGIT_RTOL, "SmolLM2 logits[0..7]");
    int32_t *top = ids_of(ref("smollm2", "top_ids"), &n_top);
    float *top_val = floats(ref("smollm2", "top_logits"), &n_top);
    float got[16];
    for (int64_t k = 0; k < n_top; k++)
        got[k] = last[top[k]];
    check_close(got, top_val, n_top, LOGIT_ATOL, LOGIT_RTOL, "SmolLM2 top-10 logits");
    for (int64_t v = 0; v < V; v++) {
        bool listed = false;
        for (int64_t k = 0; k < n_top; k++)
            listed |= top[k] == v;
        if (!listed && last[v] > top_val[n_top - 1] + LOGIT_ATOL)
            fail_msg("SmolLM2: id %lld scores %.6g, above the reference's tenth (%.6g)",
                     (long long)v, (double)last[v], (double)top_val[n_top - 1]);
    }
    kg_scope_end(ctx, scope);
    free(h), free(l), free(want_h), free(want_head), free(top), free(top_val), free(ids);
}

/* Greedy generation with the KV cache: " Paris" first, the reference's first tokens exactly;
 * then the same tokens recomputing the whole sequence at each step. */
static void test_smollm2_greedy(void **state)
{
    smol *s = *state;
    int64_t n_prompt, n_want;
    int32_t *prompt = ids_of(ref("smollm2", "prompt_ids"), &n_prompt);
    int32_t *want = ids_of(ref("smollm2", "greedy_new_ids"), &n_want);
    int32_t out[64];
    assert_true(n_want <= 64);
    kg_generate_config g = {.max_new = n_want, .ignore_eos = true};
    int64_t n = kg_model_generate(s->model, prompt, n_prompt, &g, out);
    assert_ok(s->ctx);
    assert_int_equal(n, n_want);
    char *text = kg_tokenizer_decode(s->tok, out, n, false);
    assert_non_null(text);
    fprintf(stderr, "SmolLM2: \"%s\" ->", json_string_value(ref("smollm2", "prompt")));
    for (int64_t i = 0; i < n; i++)
        fprintf(stderr, " %d", out[i]);
    fprintf(stderr, " \"%s\"\n", text);
    if (strncmp(text, " Paris", 6) != 0)
        fail_msg("SmolLM2 continues with \"%s\"; expected \" Paris...\"", text);
    assert_ids(out, GREEDY_MATCH, want, GREEDY_MATCH, "SmolLM2 greedy continuation");
    int32_t again[64];
    g.no_cache = true;
    assert_int_equal(kg_model_generate(s->model, prompt, n_prompt, &g, again), n);
    assert_ids(again, n, out, n, "SmolLM2 greedy continuation without the KV cache");
    free(text), free(prompt), free(want);
}

/* ---- all-MiniLM-L6-v2 ---------------------------------------------------------------------- */

/* The three sentences as one padded batch: the tokenizer's ids, then mean pooling over the real
 * tokens (not normalized, as refs.json records). */
static void test_minilm_embeddings(void **state)
{
    (void)state;
    kg_ctx *ctx = new_ctx();
    const char *dir = model_path(json_string_value(ref("minilm", "dir")));
    kg_model *m = kg_model_load(ctx, dir);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, dir);
    assert_ok(ctx);
    json_t *items = ref("minilm", "sentences");
    int64_t B = (int64_t)json_array_size(items);
    const char *texts[8];
    assert_true(B <= 8);
    for (int64_t b = 0; b < B; b++)
        texts[b] = json_string_value(json_object_get(json_array_get(items, (size_t)b), "text"));
    kg_token_batch batch;
    kg_encode_opts opts = {.add_special = true};
    assert_true(kg_tokenizer_encode_batch(tok, B, texts, NULL, &opts, &batch));
    int64_t T = batch.len, C = m->cfg.hidden_size;
    for (int64_t b = 0; b < B; b++) {
        int64_t n_want, n = 0;
        int32_t *want = ids_of(json_object_get(json_array_get(items, (size_t)b), "ids"), &n_want);
        while (n < T && batch.mask[b * T + n])
            n++;
        assert_ids(batch.ids + b * T, n, want, n_want, texts[b]);
        free(want);
    }
    kg_scope scope = kg_scope_begin(ctx);
    kg_no_grad_begin(ctx);
    kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(B, T), batch.ids),
                         .attention_mask = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(B, T),
                                                        batch.mask)};
    kg_tensor *emb = kg_model_embed(m, &in, KG_POOL_MEAN); /* (B, C) */
    kg_no_grad_end(ctx);
    assert_ok(ctx);
    assert_int_equal(kg_tensor_numel(emb), B * C);
    float *got = kg_tensor_to_f32(emb);
    assert_non_null(got);
    for (int64_t b = 0; b < B; b++) {
        int64_t n;
        float *want = floats(json_object_get(json_array_get(items, (size_t)b), "embedding"), &n);
        assert_int_equal(n, C);
        check_close(got + b * C, want, C, EMBED_ATOL, EMBED_RTOL, texts[b]);
        free(want);
    }
    free(got);
    kg_scope_end(ctx, scope);
    kg_token_batch_free(&batch);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

/* ---- Mistral-7B's tokenizer.model ---------------------------------------------------------- */

static void test_mistral_tokenizer(void **state)
{
    (void)state;
    kg_ctx *ctx = new_ctx();
    kg_tokenizer *tok = kg_tokenizer_load(ctx, model_path(json_string_value(
                                                   ref("mistral_tokenizer", "file"))));
    assert_ok(ctx);
    json_t *items = ref("mistral_tokenizer", "texts");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *item = json_array_get(items, i);
        const char *text = json_string_value(json_object_get(item, "text"));
        int64_t n, n_want;
        int32_t *want = ids_of(json_object_get(item, "ids"), &n_want);
        int32_t *got = kg_tokenizer_encode(tok, text, true, &n);
        assert_ok(ctx);
        assert_ids(got, n, want, n_want, text);
        char *back = kg_tokenizer_decode(tok, got, n, true);
        assert_non_null(back);
        assert_string_equal(back, json_string_value(json_object_get(item, "decoded")));
        free(back), free(got), free(want);
    }
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
}

/* ---- Setup ---------------------------------------------------------------------------------- */

/* Whether every file the tests read is in models_dir; names the first missing one. */
static bool files_present(void)
{
    const char *rel[] = {
        json_string_value(ref("smollm2", "file")),
        "all-minilm-l6-v2/model.safetensors",
        "all-minilm-l6-v2/tokenizer.json",
        "all-minilm-l6-v2/config.json",
        json_string_value(ref("mistral_tokenizer", "file")),
    };
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        if (!rel[i] || access(model_path(rel[i]), R_OK) != 0) {
            fprintf(stderr, "test_real: %s is missing; run ./scripts/fetch-models.sh "
                            "(skipped)\n", model_path(rel[i] ? rel[i] : "?"));
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "vulkan"))
        backend = KG_BACKEND_VULKAN;
    const char *env = getenv("KG_MODELS"), *home = getenv("HOME");
    if (env && *env)
        snprintf(models_dir, sizeof models_dir, "%s", env);
    else
        snprintf(models_dir, sizeof models_dir, "%s/.cache/krongrad/models", home ? home : ".");
    json_error_t jerr;
    refs = json_load_file(KG_REAL_REFS, 0, &jerr);
    if (!refs) {
        fprintf(stderr, "test_real: %s: %s\n", KG_REAL_REFS, jerr.text);
        return 1;
    }
    if (!files_present()) {
        json_decref(refs);
        return 77;
    }
    if (backend == KG_BACKEND_VULKAN) {
        kg_ctx *probe = kg_ctx_new(backend);
        bool ok = probe && !kg_ctx_status(probe);
        kg_ctx_free(probe);
        if (!ok) {
            fprintf(stderr, "test_real: no Vulkan device (skipped)\n");
            json_decref(refs);
            return 77;
        }
    }
    const struct CMUnitTest smol_tests[] = {
        cmocka_unit_test(test_smollm2_prompt_ids),
        cmocka_unit_test(test_smollm2_top_logits),
        cmocka_unit_test(test_smollm2_greedy),
    };
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(test_minilm_embeddings),
        cmocka_unit_test(test_mistral_tokenizer),
    };
    int failed = cmocka_run_group_tests_name("real: SmolLM2-135M-Instruct", smol_tests,
                                             smol_setup, smol_teardown);
    failed += cmocka_run_group_tests_name("real: MiniLM, Mistral tokenizer", other_tests, NULL,
                                          NULL);
    json_decref(refs);
    return failed ? 1 : 0;
}
