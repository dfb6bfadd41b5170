/* test_export.c — `krongrad export`'s library side (kg_export.h) against the files the real
 * transformers, gguf and peft accepted. fixtures/export/make_export_refs.py ran the built
 * `krongrad export` on the fixture models, loaded each result with transformers / gguf / peft,
 * checked logits, names, shapes, types, metadata and values there, and kept the files in
 * fixtures/export/out/ with the logits in expected.json.
 *
 * Here the same exports are made again and must equal those files byte for byte, so a writer
 * that changes in any way fails until the script, rerun, has had the new bytes accepted by the
 * real readers. Beside the bytes: krongrad's adapter-applied logits equal transformers' logits
 * of the exported HF directory, krongrad reading its own GGUF export gives them too, and the
 * Kron-LoRA / LoKr adapter rewritten as a LoRA gives PEFT's logits of that LoRA (and, for
 * Kron-LoRA, the torch.kron formula's). Then bad input: an adapter that does not fit, an
 * unknown dtype, unwritable and occupied paths — each a clear error with nothing left behind.
 * CPU backend only: the bytes were made there.
 */
#include "kg_test.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_DIR KG_FIXTURES "/export"
#define LLAMA KG_FIXTURES "/models/llama"
/* The base model an exported adapter names, as the fixture script passes it (relative to the
 * repository, so the bytes do not depend on where the checkout is). */
#define LLAMA_NAME "tests/fixtures/models/llama"
#define LLAMA_GGUF KG_FIXTURES "/models/llama.gguf"
#define LOKR KG_FIXTURES "/peft/kg_lokr_llama"
#define KRON EXPORT_DIR "/kronlora_llama"
#define BYTELEVEL EXPORT_DIR "/llama_bytelevel" /* the Llama with a byte-level BPE tokenizer */

static json_t *expected;
static char tmp[64];

static kg_ctx *cpu(void)
{
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    assert_ok(ctx);
    return ctx;
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[4][512];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* A model with its adapter (NULL: none). */
static kg_model *load(kg_ctx *ctx, const char *model, const char *adapter)
{
    kg_model *m = kg_model_load(ctx, model);
    assert_ok(ctx);
    if (adapter)
        assert_true(kg_peft_load(m, adapter));
    assert_ok(ctx);
    return m;
}

/* The model's logits on expected.json's ids vs. the case's recorded logits. */
static void check_logits(const kg_model *m, const char *case_name, const char *what)
{
    kg_ctx *ctx = m->ctx;
    const json_t *ids = json_object_get(expected, "ids");
    const json_t *want = json_object_get(json_object_get(json_object_get(expected, "cases"),
                                                         case_name), "logits");
    int64_t T = (int64_t)json_array_size(ids), n = (int64_t)json_array_size(want);
    assert_int_equal(n, T * m->cfg.vocab_size);
    int32_t v[64];
    for (int64_t i = 0; i < T; i++)
        v[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
    float *w = malloc(sizeof *w * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)json_number_value(json_array_get(want, (size_t)i));
    kg_scope s = kg_scope_begin(ctx);
    kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(1, T), v)};
    assert_tensor(kg_model_logits(m, &in, NULL), w, n, 1e-4f, 1e-4f, what);
    kg_scope_end(ctx, s);
    free(w);
}

static void *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("%s: cannot open", path);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *p = malloc(*len + 1);
    assert_int_equal(fread(p, 1, *len, fp), *len);
    fclose(fp);
    return p;
}

static void same_file(const char *got, const char *want)
{
    size_t a, b;
    void *x = slurp(got, &a), *y = slurp(want, &b);
    if (a != b || memcmp(x, y, a) != 0)
        fail_msg("%s (%zu bytes) differs from %s (%zu bytes): rerun "
                 "fixtures/export/make_export_refs.py to have the new bytes checked", got, a,
                 want, b);
    free(x);
    free(y);
}

/* Names in dir, sorted, joined by spaces. */
static void listing(const char *dir, char *out, size_t cap)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (e[i]->d_name[0] != '.')
            snprintf(out + strlen(out), cap - strlen(out), "%s ", e[i]->d_name);
        free(e[i]);
    }
    free(e);
}

/* Every file of the fixture directory, and no other, with the same bytes. */
static void same_dir(const char *got, const char *want)
{
    char a[2048], b[2048], names[2048];
    listing(got, a, sizeof a);
    listing(want, b, sizeof b);
    assert_string_equal(a, b);
    strcpy(names, a);
    for (char *s = strtok(names, " "); s; s = strtok(NULL, " ")) {
        char g[512], w[512];
        snprintf(g, sizeof g, "%s/%s", got, s);
        snprintf(w, sizeof w, "%s/%s", want, s);
        same_file(g, w);
    }
}

static void test_hf(void **state)
{
    (void)state;
    kg_ctx *ctx = cpu();
    kg_model *m = load(ctx, LLAMA, LOKR);
    check_logits(m, "hf_lokr", "krongrad LoKr vs transformers on the exported HF directory");
    bool tok;
    int64_t shard = json_integer_value(json_object_get(expected, "shard_bytes"));
    assert_true(kg_export_hf(m, LLAMA, path_in(tmp, "hf_lokr"), KG_DTYPE_F32, shard, &tok));
    assert_ok(ctx);
    assert_true(tok);
    same_dir(path_in(tmp, "hf_lokr"), EXPORT_DIR "/out/hf_lokr");
    check_logits(m, "hf_lokr", "the merged model");
    kg_test_model_free(ctx, m);
    kg_ctx_free(ctx);
}

static void test_gguf(void **state)
{
    (void)state;
    kg_ctx *ctx = cpu();
    kg_model *m = load(ctx, LLAMA, LOKR);
    bool vocab;
    const char *out = path_in(tmp, "gguf_f32.gguf");
    assert_true(kg_export_gguf(m, BYTELEVEL, out, KG_DTYPE_F32, &vocab));
    assert_true(vocab); /* tokens, types and merges as llama.cpp's converter writes them */
    same_file(out, EXPORT_DIR "/out/gguf_f32.gguf");
    kg_model_free(m);
    m = load(ctx, out, NULL); /* krongrad reads its own export: the Q/K order undone */
    check_logits(m, "hf_lokr", "krongrad on its GGUF export vs transformers");
    kg_model_free(m);

    m = load(ctx, LLAMA_GGUF, LOKR);
    out = path_in(tmp, "gguf_q8.gguf");
    assert_true(kg_export_gguf(m, LLAMA_GGUF, out, KG_DTYPE_Q8_0, &vocab));
    assert_false(vocab); /* the fixture GGUF has none to copy */
    same_file(out, EXPORT_DIR "/out/gguf_q8.gguf");
    kg_test_model_free(ctx, m);
    kg_ctx_free(ctx);
}

static void test_as_lora(void **state)
{
    (void)state;
    kg_ctx *ctx = cpu();
    kg_model *m = load(ctx, LLAMA, KRON);
    check_logits(m, "kron_reference", "krongrad Kron-LoRA vs the torch.kron formula");
    int64_t k;
    assert_true(kg_model_adapter_to_lora(m, &k));
    assert_int_equal(k, 2); /* A is 2 × 4 of rank 2 in layer 0, rank 1 in layer 1 */
    assert_int_equal(m->adapter.kind, KG_ADAPTER_LORA);
    assert_int_equal(m->adapter.rank, 4);
    assert_true(m->adapter.alpha == 8.0);
    check_logits(m, "lora_kron", "krongrad's exact LoRA vs peft on the exported LoRA");
    assert_true(kg_export_peft(m, path_in(tmp, "lora_kron"), LLAMA_NAME));
    same_dir(path_in(tmp, "lora_kron"), EXPORT_DIR "/out/lora_kron");
    assert_true(kg_export_gguf_lora(m, path_in(tmp, "lora_kron.gguf"), KG_DTYPE_F32));
    same_file(path_in(tmp, "lora_kron.gguf"), EXPORT_DIR "/out/lora_kron.gguf");
    kg_model_free(m);

    m = load(ctx, LLAMA, LOKR);
    assert_true(kg_model_adapter_to_lora(m, &k));
    assert_int_equal(k, 4); /* w1 is 8 × 4 (PEFT's factorization) of rank 4 */
    check_logits(m, "lora_lokr", "LoKr's exact LoRA vs peft on the exported LoRA");
    assert_true(kg_export_peft(m, path_in(tmp, "lora_lokr"), LLAMA_NAME));
    same_dir(path_in(tmp, "lora_lokr"), EXPORT_DIR "/out/lora_lokr");
    kg_test_model_free(ctx, m);
    kg_ctx_free(ctx);
}

/* The context's error holds every piece of want (a NULL-terminated list); then it is cleared. */
static void error_says(kg_ctx *ctx, const char *const *want)
{
    assert_true(kg_ctx_status(ctx) != KG_OK);
    for (int i = 0; want[i]; i++)
        if (!strstr(kg_error(ctx), want[i]))
            fail_msg("error \"%s\" does not say \"%s\"", kg_error(ctx), want[i]);
    kg_clear_error(ctx);
}
#define ERROR_SAYS(ctx, ...) error_says(ctx, (const char *const[]){__VA_ARGS__, NULL})

static void test_bad_input(void **state)
{
    (void)state;
    kg_ctx *ctx = cpu();
    kg_model *m = kg_model_load(ctx, LLAMA);
    assert_false(kg_peft_load(m, KG_FIXTURES "/peft/kg_lora_mistral"));
    ERROR_SAYS(ctx, "kg_lora_mistral/adapter_model.safetensors", "q_proj.lora_B", "expected");
    kg_model_free(m);

    m = load(ctx, LLAMA, LOKR);
    bool flag;
    char before[2048], after[2048];
    listing(tmp, before, sizeof before);
    assert_false(kg_export_hf(m, LLAMA, path_in(tmp, "q4"), KG_DTYPE_Q4_0, 0, &flag));
    ERROR_SAYS(ctx, "kg_export_hf", "q4_0", "expected f32, f16, bf16");
    assert_false(kg_export_gguf(m, LLAMA, path_in(tmp, "nf4.gguf"), KG_DTYPE_NF4, &flag));
    ERROR_SAYS(ctx, "nf4", "or q8_0");
    /* a path under a regular file cannot be made */
    assert_false(kg_export_hf(m, LLAMA, LLAMA "/config.json/out", KG_DTYPE_F32, 0, &flag));
    ERROR_SAYS(ctx, "config.json/out", "Not a directory", "expected a new directory");
    assert_false(kg_export_gguf(m, LLAMA, LLAMA "/config.json/x.gguf", KG_DTYPE_F32, &flag));
    ERROR_SAYS(ctx, "config.json/x.gguf", "cannot create a temporary file");
    /* an occupied directory is never overwritten */
    assert_false(kg_export_hf(m, LLAMA, EXPORT_DIR "/out", KG_DTYPE_F32, 0, &flag));
    ERROR_SAYS(ctx, "export/out exists and is not empty");
    /* a LoKr adapter is not a LoRA until --as-lora makes it one */
    assert_false(kg_export_gguf_lora(m, path_in(tmp, "lokr.gguf"), KG_DTYPE_F32));
    ERROR_SAYS(ctx, "adapter is lokr", "--as-lora");
    listing(tmp, after, sizeof after);
    assert_string_equal(before, after); /* nothing half-written, no temporary left */
    kg_model_free(m);

    /* llama.cpp's llama has no sliding window: a Mistral that uses one cannot be a GGUF */
    m = kg_test_model(ctx, "mistral");
    assert_false(kg_export_gguf(m, KG_FIXTURES "/models/mistral", path_in(tmp, "m.gguf"),
                                KG_DTYPE_F32, &flag));
    ERROR_SAYS(ctx, "sliding window is 4 positions");
    kg_test_model_free(ctx, m);
    kg_ctx_free(ctx);
}

/* Remove what the tests wrote under tmp (files, and directories of files). */
static void remove_tree(const char *dir)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, NULL);
    for (int i = 0; i < n; i++) {
        if (strcmp(e[i]->d_name, ".") && strcmp(e[i]->d_name, "..")) {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e[i]->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(p);
            else
                unlink(p);
        }
        free(e[i]);
    }
    free(e);
    rmdir(dir);
}

int main(void)
{
    json_error_t err;
    if (!(expected = json_load_file(EXPORT_DIR "/expected.json", 0, &err))) {
        fprintf(stderr, "%s/expected.json: %s\n", EXPORT_DIR, err.text);
        return 1;
    }
    strcpy(tmp, "/tmp/kg_test_export.XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf),
        cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_as_lora),
        cmocka_unit_test(test_bad_input),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    remove_tree(tmp);
    json_decref(expected);
    return rc;
}
