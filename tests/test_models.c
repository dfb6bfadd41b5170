/* test_models.c — DistilBERT, BERT, Mistral and Llama against transformers: the tiny random
 * models of tests/fixtures/models (made by make_models.py, which saved what transformers
 * computes with them) give the same logits, hidden states, loss and weight gradients; greedy
 * generation gives the same tokens with and without the KV cache; the Llama GGUF gives its HF
 * original's logits; and broken checkpoints give errors naming the file and the key or tensor.
 *
 * Run with no argument on the CPU backend, with "vulkan" on Vulkan (skipped, 77, without a
 * device). Tolerances: logits and hidden states 1e-4 absolute; the loss 1e-5; gradients 1e-3
 * relative to each tensor's largest element.
 */
#include "kg_test.h"

#include <jansson.h>
#include <unistd.h>

static kg_backend_kind backend = KG_BACKEND_CPU;
static kg_ctx *ctx;

/* ---- The reference.json of a fixture ----------------------------------------------------- */

static json_t *load_reference(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s/reference.json", KG_FIXTURES, model);
    json_error_t err;
    json_t *ref = json_load_file(path, 0, &err);
    if (!ref)
        fail_msg("%s: %s", path, err.text);
    return ref;
}

static const json_t *field(const json_t *ref, const char *key)
{
    const json_t *v = json_object_get(ref, key);
    if (!v)
        fail_msg("reference.json has no '%s'", key);
    return v;
}

/* A JSON array of numbers as floats (malloc'd; *n of them). */
static float *floats(const json_t *a, int64_t *n)
{
    *n = (int64_t)json_array_size(a);
    float *out = malloc(sizeof(float) * (size_t)(*n + 1));
    for (int64_t i = 0; i < *n; i++)
        out[i] = (float)json_number_value(json_array_get(a, (size_t)i));
    return out;
}

static int32_t *ints(const json_t *a, int64_t *n)
{
    *n = (int64_t)json_array_size(a);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    for (int64_t i = 0; i < *n; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return out;
}

static int shape_of(const json_t *a, int64_t *shape)
{
    int nd = (int)json_array_size(a);
    for (int i = 0; i < nd; i++)
        shape[i] = (int64_t)json_integer_value(json_array_get(a, (size_t)i));
    return nd;
}

/* An i32 tensor of the reference's ints, shaped as its "ids_shape". */
static kg_tensor *int_tensor(const json_t *ref, const char *key)
{
    int64_t shape[KG_MAX_DIMS], n;
    int nd = shape_of(field(ref, "ids_shape"), shape);
    int32_t *v = ints(field(ref, key), &n);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, nd, shape, v);
    free(v);
    return t;
}

/* ---- Comparisons ------------------------------------------------------------------------- */

/* got vs want (both N·row values); rows whose keep[r] is 0 (padding) are not compared: the
 * outputs of fully masked positions are not defined the same way by both implementations. */
static void assert_rows_close(const float *got, const float *want, int64_t rows, int64_t row,
                              const int32_t *keep, float atol, const char *what)
{
    float worst = 0;
    for (int64_t r = 0; r < rows; r++)
        if (!keep || keep[r]) {
            char w[128];
            snprintf(w, sizeof w, "%s (row %lld)", what, (long long)r);
            assert_close(got + r * row, want + r * row, row, atol, 0, w);
            for (int64_t i = 0; i < row; i++)
                worst = fmaxf(worst, fabsf(got[r * row + i] - want[r * row + i]));
        }
    print_message("%s: %s max |diff| %.2e\n", kg_backend_name(ctx), what, (double)worst);
}

static kg_tensor *find_param(const kg_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].tensor;
    fail_msg("the model has no parameter '%s'", name);
    return NULL;
}

static void assert_grads(const kg_model *m, const json_t *grads)
{
    const char *name;
    const json_t *g;
    json_object_foreach((json_t *)grads, name, g) {
        int64_t n, shape[KG_MAX_DIMS];
        int nd = shape_of(field(g, "shape"), shape);
        kg_tensor *p = find_param(m, name);
        assert_int_equal(kg_tensor_ndim(p), nd);
        float *want = floats(field(g, "data"), &n);
        kg_tensor *grad = kg_grad(p);
        if (!grad)
            fail_msg("%s got no gradient", name);
        float *got = kg_tensor_to_f32(grad);
        assert_int_equal(kg_tensor_numel(grad), n);
        float scale = 0, worst = 0;
        for (int64_t i = 0; i < n; i++)
            scale = fmaxf(scale, fabsf(want[i]));
        for (int64_t i = 0; i < n; i++)
            worst = fmaxf(worst, fabsf(got[i] - want[i]) / scale);
        char what[160];
        snprintf(what, sizeof what, "d loss / d %s", name);
        assert_close(got, want, n, 1e-3f * scale, 0, what);
        print_message("%s: %s max |diff| / max |grad| %.2e\n", kg_backend_name(ctx), what,
                      (double)worst);
        free(want);
        free(got);
    }
}

/* ---- Forward, loss and backward ----------------------------------------------------------- */

/* Logits, last hidden states, the loss and the named gradients of the reference's inputs. */
static void check_parity(kg_model *m, const json_t *ref, bool grads)
{
    bool decoder = m->cfg.head == KG_HEAD_CAUSAL_LM;
    for (int i = 0; i < m->n_params; i++)
        kg_set_requires_grad(m->params[i].tensor, grads);
    kg_scope scope = kg_scope_begin(ctx);
    kg_model_input in = {.ids = int_tensor(ref, "ids"),
                         .attention_mask = int_tensor(ref, "attention_mask")};
    if (json_object_get(ref, "token_types"))
        in.token_types = int_tensor(ref, "token_types");
    kg_tensor *logits = kg_model_logits(m, &in, NULL);
    kg_tensor *hidden = kg_model_hidden(m, &in, NULL);
    assert_ok(ctx);

    int64_t n, nk;
    int32_t *keep = ints(field(ref, "attention_mask"), &nk);
    float *want = floats(field(ref, "logits"), &n), *got = kg_tensor_to_f32(logits);
    assert_int_equal(kg_tensor_numel(logits), n);
    int64_t row = kg_tensor_dim(logits, -1);
    /* Decoders: one row per token, padding skipped. Encoders: one row per question. */
    assert_rows_close(got, want, n / row, row, decoder ? keep : NULL, 1e-4f, "logits");
    free(want);
    free(got);

    want = floats(field(ref, "hidden"), &n);
    got = kg_tensor_to_f32(hidden);
    assert_int_equal(kg_tensor_numel(hidden), n);
    row = m->cfg.hidden_size;
    assert_rows_close(got, want, n / row, row, decoder ? keep : NULL, 1e-4f, "hidden states");
    free(want);
    free(got);

    /* The loss as HF computes it: cross entropy of the choices against the labels, or of each
     * next token (labels shifted by one, -100 ignored). */
    int64_t nl;
    int32_t *labels = ints(field(ref, "labels"), &nl);
    kg_tensor *loss;
    if (decoder) {
        int64_t B = kg_tensor_dim(logits, 0), T = kg_tensor_dim(logits, 1);
        int64_t V = kg_tensor_dim(logits, 2);
        int32_t *next = malloc(sizeof(int32_t) * (size_t)(B * (T - 1)));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t + 1 < T; t++)
                next[b * (T - 1) + t] = labels[b * T + t + 1];
        kg_tensor *targets = kg_from_host(ctx, KG_DTYPE_I32, 1, (int64_t[]){B * (T - 1)}, next);
        kg_tensor *pred = kg_reshape(kg_slice(logits, 1, 0, T - 1), 2, (int64_t[]){-1, V});
        loss = kg_cross_entropy(pred, targets, -100);
        free(next);
    } else {
        kg_tensor *targets = kg_from_host(ctx, KG_DTYPE_I32, 1, &nl, labels);
        loss = kg_cross_entropy(logits, targets, -100);
    }
    double want_loss = json_number_value(field(ref, "loss")), got_loss = kg_item(loss);
    print_message("%s: loss %.7f, transformers %.7f\n", kg_backend_name(ctx), got_loss,
                  want_loss);
    assert_true(fabs(got_loss - want_loss) < 1e-5);
    if (grads) {
        assert_true(kg_backward(loss));
        assert_ok(ctx);
        assert_grads(m, field(ref, "grads"));
    }
    free(labels);
    free(keep);
    kg_scope_end(ctx, scope);
    for (int i = 0; i < m->n_params; i++) {
        kg_zero_grad(m->params[i].tensor);
        kg_set_requires_grad(m->params[i].tensor, false);
    }
    assert_ok(ctx);
}

/* Greedy generation from the reference's prompt, with and without the KV cache. */
static void check_generation(kg_model *m, const json_t *ref)
{
    int64_t np, ng;
    int32_t *prompt = ints(field(ref, "prompt"), &np), *want = ints(field(ref, "generated"), &ng);
    int32_t *got = calloc((size_t)ng, sizeof *got);
    for (int no_cache = 0; no_cache < 2; no_cache++) {
        kg_generate_config g = {.max_new = ng, .no_cache = no_cache, .ignore_eos = true};
        int64_t made = kg_model_generate(m, prompt, np, &g, got);
        assert_ok(ctx);
        assert_int_equal(made, ng);
        for (int64_t i = 0; i < ng; i++)
            if (got[i] != want[i])
                fail_msg("%s cache: token %lld is %d; transformers generated %d",
                         no_cache ? "without" : "with", (long long)i, got[i], want[i]);
    }
    print_message("%s: %lld greedy tokens match, with and without the KV cache\n",
                  kg_backend_name(ctx), (long long)ng);
    free(prompt);
    free(want);
    free(got);
}

/* Step by step through the KV cache (the prompt at once, then one token a step), the logits of
 * each new position equal those of one pass over the whole sequence: RoPE positions, the
 * sliding window (W = 4 < 17 positions) and the cache rows line up. */
static void check_cache_logits(kg_model *m, const json_t *ref)
{
    int64_t np, ng;
    int32_t *prompt = ints(field(ref, "prompt"), &np), *gen = ints(field(ref, "generated"), &ng);
    int64_t N = np + ng, V = m->cfg.vocab_size;
    int32_t *seq = malloc(sizeof *seq * (size_t)N);
    memcpy(seq, prompt, sizeof *seq * (size_t)np);
    memcpy(seq + np, gen, sizeof *seq * (size_t)ng);
    kg_no_grad_begin(ctx);
    kg_scope scope = kg_scope_begin(ctx);
    kg_model_input all = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, N}, seq)};
    float *full = kg_tensor_to_f32(kg_model_logits(m, &all, NULL)); /* (1, N, V) */
    kg_kv_cache *cache = kg_model_cache_new(m, 1, N);
    assert_ok(ctx);
    for (int64_t start = 0, T = np; start < N; start += T, T = 1) {
        kg_model_input step = {
            .ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, T}, seq + start)};
        float *got = kg_tensor_to_f32(kg_model_logits(m, &step, cache));
        assert_ok(ctx);
        assert_int_equal(cache[0].len, start + T);
        char what[64];
        snprintf(what, sizeof what, "cached logits at position %lld", (long long)start);
        assert_close(got, full + start * V, T * V, 1e-4f, 0, what);
        free(got);
    }
    /* One position more than the cache holds is an error, not a write past its end. */
    kg_model_input extra = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, 1}, seq)};
    assert_null(kg_model_logits(m, &extra, cache));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_RANGE);
    kg_clear_error(ctx);
    kg_kv_cache_free(cache, (int)m->cfg.n_layers);
    kg_scope_end(ctx, scope);
    kg_no_grad_end(ctx);
    free(full);
    free(seq);
    free(prompt);
    free(gen);
}

static void test_distilbert(void **state)
{
    (void)state;
    json_t *ref = load_reference("distilbert");
    kg_model *m = kg_test_model(ctx, "distilbert");
    assert_int_equal(m->cfg.arch, KG_ARCH_DISTILBERT);
    assert_int_equal(m->cfg.head, KG_HEAD_MULTIPLE_CHOICE);
    assert_int_equal(m->n_params, 4 + 2 * 16 + 4); /* embeddings, 2 layers, the two heads */
    check_parity(m, ref, true);
    kg_test_model_free(ctx, m);
    json_decref(ref);
}

static void test_bert(void **state)
{
    (void)state;
    json_t *ref = load_reference("bert");
    kg_model *m = kg_test_model(ctx, "bert");
    assert_int_equal(m->cfg.arch, KG_ARCH_BERT);
    assert_int_equal(m->cfg.type_vocab_size, 2);
    check_parity(m, ref, true);
    kg_test_model_free(ctx, m);
    json_decref(ref);
}

static void test_mistral(void **state)
{
    (void)state;
    json_t *ref = load_reference("mistral");
    kg_model *m = kg_test_model(ctx, "mistral");
    /* A hub-style config: top-level rope_theta, no head_dim. */
    assert_int_equal(m->cfg.sliding_window, 4);
    assert_int_equal(m->cfg.head_dim, 8);
    assert_int_equal(m->cfg.n_kv_heads, 2);
    assert_false(m->cfg.tie_word_embeddings);
    check_parity(m, ref, true);
    check_generation(m, ref);
    check_cache_logits(m, ref);
    kg_test_model_free(ctx, m);
    json_decref(ref);
}

static void test_llama(void **state)
{
    (void)state;
    json_t *ref = load_reference("llama");
    kg_model *m = kg_test_model(ctx, "llama");
    /* transformers 5's rope_parameters, head_dim 16 with hidden 32 and 4 heads, tied. */
    assert_true(fabs(m->cfg.rope_theta - 100000.0) < 1e-9);
    assert_int_equal(m->cfg.head_dim, 16);
    assert_true(m->cfg.tie_word_embeddings);
    assert_ptr_equal(m->lm_head.weight, m->tokens.weight);
    check_parity(m, ref, true);
    check_generation(m, ref);
    check_cache_logits(m, ref);
    kg_test_model_free(ctx, m);
    json_decref(ref);
}

static void test_llama_gguf(void **state)
{
    (void)state;
    json_t *ref = load_reference("llama");
    kg_model *m = kg_test_model(ctx, "llama.gguf");
    assert_int_equal(m->cfg.arch, KG_ARCH_LLAMA);
    assert_int_equal(m->cfg.head_dim, 16);
    assert_int_equal(m->cfg.n_kv_heads, 2);
    assert_true(m->cfg.tie_word_embeddings);
    assert_true(fabs(m->cfg.rope_theta - 100000.0) < 1e-9);
    check_parity(m, ref, false); /* the same logits as the HF directory it was converted from */
    check_generation(m, ref);
    kg_test_model_free(ctx, m);
    json_decref(ref);
}

/* A checkpoint saved from the base model (BertModel, as all-MiniLM-L6-v2): names without the
 * "bert." prefix and no head. It loads (the pooler is optional then), gives the same hidden
 * states, and asking it for a head's logits is an error. */
static void test_base_model_checkpoint(void **state)
{
    (void)state;
    json_t *ref = load_reference("bert");
    kg_model *m = kg_test_model(ctx, "bert");
    char dir[] = "/tmp/kg_test_models_XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    const char *names[64];
    kg_tensor *tensors[64];
    int n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (strncmp(m->params[i].name, "bert.", 5) == 0) {
            assert_true(n < 64);
            names[n] = m->params[i].name + 5;
            tensors[n++] = m->params[i].tensor;
        }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(kg_safetensors_write(ctx, path, n, names, tensors, NULL));
    snprintf(path, sizeof path, "%s/models/bert/config.json", KG_FIXTURES);
    json_t *config = json_load_file(path, 0, NULL);
    assert_non_null(config);
    json_object_set_new(config, "architectures", json_pack("[s]", "BertModel"));
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(json_dump_file(config, path, 0), 0);
    json_decref(config);
    kg_test_model_free(ctx, m);

    m = kg_model_load(ctx, dir);
    assert_ok(ctx);
    assert_int_equal(m->cfg.head, KG_HEAD_NONE);
    assert_int_equal(m->n_params, n);
    assert_non_null(m->pooler.weight);
    kg_scope scope = kg_scope_begin(ctx);
    /* A base model takes (N, T): the reference's (B, K, T) choices as B·K rows. */
    kg_tensor *ids = int_tensor(ref, "ids");
    int64_t T = kg_tensor_dim(ids, -1);
    kg_model_input in = {
        .ids = kg_reshape(ids, 2, (int64_t[]){-1, T}),
        .attention_mask = kg_reshape(int_tensor(ref, "attention_mask"), 2, (int64_t[]){-1, T}),
        .token_types = kg_reshape(int_tensor(ref, "token_types"), 2, (int64_t[]){-1, T})};
    int64_t nh;
    float *want = floats(field(ref, "hidden"), &nh);
    float *got = kg_tensor_to_f32(kg_model_hidden(m, &in, NULL));
    assert_ok(ctx);
    assert_close(got, want, nh, 1e-4f, 0, "base-model hidden states");
    free(want);
    free(got);
    assert_null(kg_model_logits(m, &in, NULL));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_STATE);
    kg_clear_error(ctx);
    kg_scope_end(ctx, scope);
    kg_test_model_free(ctx, m);
    json_decref(ref);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

static char *broken_model(const char *model, const char *config);
static void remove_model(const char *dir);

/* A sequence-classification head with one label is the multiple-choice head without the
 * reshape: the same checkpoint under DistilBertForSequenceClassification scores each of the
 * B·K sequences as the reference scored each choice. */
static void test_sequence_classification_head(void **state)
{
    (void)state;
    json_t *ref = load_reference("distilbert");
    char path[512];
    snprintf(path, sizeof path, "%s/models/distilbert/config.json", KG_FIXTURES);
    json_t *config = json_load_file(path, 0, NULL);
    assert_non_null(config);
    json_object_set_new(config, "architectures",
                        json_pack("[s]", "DistilBertForSequenceClassification"));
    json_object_set_new(config, "id2label", json_pack("{s:s}", "0", "LABEL_0"));
    char *text = json_dumps(config, 0);
    char *dir = broken_model("distilbert", text);
    free(text);
    json_decref(config);
    kg_model *m = kg_model_load(ctx, dir);
    assert_ok(ctx);
    assert_int_equal(m->cfg.head, KG_HEAD_SEQ_CLASSIFICATION);
    assert_int_equal(m->cfg.num_labels, 1);
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *ids = int_tensor(ref, "ids"), *keep = int_tensor(ref, "attention_mask");
    int64_t T = kg_tensor_dim(ids, -1), n;
    kg_model_input in = {.ids = kg_reshape(ids, 2, (int64_t[]){-1, T}),
                         .attention_mask = kg_reshape(keep, 2, (int64_t[]){-1, T})};
    kg_tensor *logits = kg_model_logits(m, &in, NULL);
    assert_ok(ctx);
    assert_int_equal(kg_tensor_ndim(logits), 2);
    assert_int_equal(kg_tensor_dim(logits, 1), 1);
    float *want = floats(field(ref, "logits"), &n), *got = kg_tensor_to_f32(logits);
    assert_int_equal(kg_tensor_numel(logits), n);
    assert_close(got, want, n, 1e-4f, 0, "one-label classification scores");
    free(want);
    free(got);
    kg_scope_end(ctx, scope);
    kg_test_model_free(ctx, m);
    remove_model(dir);
    json_decref(ref);
}

/* kg_model_embed: what `krongrad embed` prints, against transformers' mean pooling and CLS. */
static void test_embeddings(void **state)
{
    (void)state;
    const char *names[] = {"distilbert", "bert"};
    for (int k = 0; k < 2; k++) {
        json_t *ref = load_reference(names[k]);
        kg_model *m = kg_test_model(ctx, names[k]);
        const json_t *rows = field(ref, "embed_ids");
        int64_t B = (int64_t)json_array_size(rows), T = 0, n;
        int32_t ids[8][32] = {{0}}, keep[8][32] = {{0}};
        for (int64_t b = 0; b < B; b++) {
            int32_t *r = ints(json_array_get(rows, (size_t)b), &T);
            for (int64_t t = 0; t < T; t++) {
                ids[b][t] = r[t];
                keep[b][t] = r[t] != 0; /* [PAD] is 0 */
            }
            free(r);
        }
        int32_t flat_ids[8 * 32], flat_keep[8 * 32];
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                flat_ids[b * T + t] = ids[b][t];
                flat_keep[b * T + t] = keep[b][t];
            }
        kg_scope scope = kg_scope_begin(ctx);
        kg_model_input in = {
            .ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){B, T}, flat_ids),
            .attention_mask = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){B, T}, flat_keep)};
        const char *keys[] = {"embed_mean", "embed_cls"};
        for (int p = 0; p < 2; p++) {
            kg_tensor *e = kg_model_embed(m, &in, p == 0 ? KG_POOL_MEAN : KG_POOL_CLS);
            assert_ok(ctx);
            float *got = kg_tensor_to_f32(e);
            for (int64_t b = 0; b < B; b++) {
                float *want = floats(json_array_get(field(ref, keys[p]), (size_t)b), &n);
                assert_int_equal(n, m->cfg.hidden_size);
                assert_close(got + b * n, want, n, 1e-4f, 0, keys[p]);
                free(want);
            }
            free(got);
        }
        kg_scope_end(ctx, scope);
        kg_test_model_free(ctx, m);
        json_decref(ref);
    }
}

/* ---- Broken checkpoints ------------------------------------------------------------------- */

/* A directory holding config.json (text) and a link to a fixture's model.safetensors. */
static char *broken_model(const char *model, const char *config)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kg_test_models_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[512], target[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(target, sizeof target, "%s/models/%s/model.safetensors", KG_FIXTURES, model);
    assert_int_equal(symlink(target, path), 0);
    return dir;
}

static void remove_model(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* Loading fails and the message holds each of the words. */
static void assert_load_fails(const char *model, const char *config, const char *const *words)
{
    char *dir = broken_model(model, config);
    kg_ctx *c = kg_ctx_new(KG_BACKEND_CPU);
    kg_model *m = kg_model_load(c, dir);
    assert_null(m);
    assert_int_not_equal(kg_ctx_status(c), KG_OK);
    for (int i = 0; words[i]; i++)
        if (!strstr(kg_error(c), words[i]))
            fail_msg("the error does not name '%s': %s", words[i], kg_error(c));
    print_message("%s\n", kg_error(c));
    kg_ctx_free(c);
    remove_model(dir);
}

/* The mistral fixture's config.json, with one part replaced. */
static void mistral_config(char *out, size_t cap, const char *layers, const char *kv,
                           const char *inter, const char *extra)
{
    snprintf(out, cap, "{\"model_type\": \"mistral\", \"architectures\": [\"MistralForCausalLM\"], "
             "\"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": %s, "
             "\"num_attention_heads\": 4, \"num_key_value_heads\": %s, "
             "\"intermediate_size\": %s, \"sliding_window\": 4%s}", layers, kv, inter, extra);
}

static void test_bad_checkpoints(void **state)
{
    (void)state;
    char cfg[1024];
    kg_ctx *c = kg_ctx_new(KG_BACKEND_CPU);
    assert_null(kg_model_load(c, "/nonexistent/model"));
    assert_non_null(strstr(kg_error(c), "/nonexistent/model: no such file"));
    kg_ctx_free(c);
    assert_load_fails("mistral", "{\"model_type\": \"gpt2\", \"vocab_size\": 100}",
                      (const char *[]){"config.json", "model_type", "gpt2", NULL});
    assert_load_fails("mistral", "{\"model_type\": \"mistral\",, \"hidden_size\": 32}",
                      (const char *[]){"config.json", "JSON", "line 1", NULL});
    assert_load_fails("mistral", "{\"model_type\": \"mistral\", \"vocab_size\": 100}",
                      (const char *[]){"config.json", "'hidden_size'", "missing", NULL});
    mistral_config(cfg, sizeof cfg, "\"two\"", "2", "64", "");
    assert_load_fails("mistral", cfg,
                      (const char *[]){"config.json", "'num_hidden_layers'", "a string", NULL});
    mistral_config(cfg, sizeof cfg, "2", "2", "64", ", \"rope_scaling\": {\"factor\": 2.0}");
    assert_load_fails("mistral", cfg, (const char *[]){"config.json", "rope_scaling", NULL});
    mistral_config(cfg, sizeof cfg, "2", "3", "64", "");
    assert_load_fails("mistral", cfg, (const char *[]){"config.json", "key/value heads", NULL});
    /* The weights disagree with the config: a shape, then a tensor the file lacks. */
    mistral_config(cfg, sizeof cfg, "2", "2", "48", "");
    assert_load_fails("mistral", cfg,
                      (const char *[]){"config.json", "'model.layers.0.mlp.gate_proj.weight'",
                                       "[64, 32]", "[48, 32]", NULL});
    mistral_config(cfg, sizeof cfg, "3", "2", "64", "");
    assert_load_fails("mistral", cfg,
                      (const char *[]){"no tensor 'model.layers.2.input_layernorm.weight'",
                                       "config.json", NULL});
}

/* A fresh context per test: one test's error does not fail the next. */
static int setup(void **state)
{
    (void)state;
    ctx = kg_ctx_new(backend);
    return ctx && !kg_ctx_status(ctx) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kg_ctx_free(ctx);
    ctx = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_distilbert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mistral, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_gguf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_model_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequence_classification_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embeddings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_checkpoints, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
