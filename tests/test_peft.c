/* test_peft.c — PEFT adapter directories both ways, against the real peft package: adapters PEFT
 * made (fixtures/peft/peft_*) load into krongrad with PEFT's logits; adapters krongrad writes
 * (fixtures/peft/kg_*, made by `test_peft --write DIR` and checked by PEFT in make_peft.py) are
 * still what this build writes, and load back with the logits PEFT computed from them; round
 * trips in place; bad files rejected naming the file and the tensor or key.
 *
 * Run with no argument on the CPU backend, with "vulkan" on Vulkan (skipped, 77, without a
 * device), or with "--write DIR" to write the kg_* directories (see make_peft.py).
 */
#include "kg_test.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX KG_FIXTURES "/peft"

static kg_backend_kind backend = KG_BACKEND_CPU;
static kg_ctx *ctx;

/* ---- Helpers ------------------------------------------------------------------------------ */

static kg_tensor *ints_of(const json_t *e, const char *key, const json_t *shape)
{
    const json_t *a = json_object_get(e, key);
    int64_t s[KG_MAX_DIMS];
    int nd = (int)json_array_size(shape);
    for (int i = 0; i < nd; i++)
        s[i] = json_integer_value(json_array_get(shape, (size_t)i));
    int32_t *v = malloc(sizeof *v * json_array_size(a));
    for (size_t i = 0; i < json_array_size(a); i++)
        v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, nd, s, v);
    free(v);
    return t;
}

/* The model's logits on expected.json's input vs. its logits (PEFT's). */
static void check_logits(const kg_model *m, const char *dir, const char *what)
{
    char path[512];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t err;
    json_t *e = json_load_file(path, 0, &err);
    if (!e)
        fail_msg("%s: %s", path, err.text);
    kg_scope scope = kg_scope_begin(ctx);
    const json_t *shape = json_object_get(e, "ids_shape");
    kg_model_input in = {.ids = ints_of(e, "ids", shape)};
    if (json_is_array(json_object_get(e, "mask")))
        in.attention_mask = ints_of(e, "mask", shape);
    kg_tensor *logits = kg_model_logits(m, &in, NULL);
    assert_ok(ctx);
    const json_t *want = json_object_get(e, "logits");
    size_t n = json_array_size(want);
    float *w = malloc(sizeof *w * n);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)json_number_value(json_array_get(want, i));
    assert_tensor(logits, w, (int64_t)n, 1e-4f, 1e-4f, what);
    free(w);
    kg_scope_end(ctx, scope);
    json_decref(e);
}

/* ---- The adapters krongrad writes --------------------------------------------------------- */

typedef struct kg_spec {
    const char *dir, *model;
    kg_adapter_config cfg;
} kg_spec;

static const kg_spec specs[] = {
    {"kg_lora_distilbert", "distilbert", {.kind = KG_ADAPTER_LORA, .rank = 4, .alpha = 8}},
    /* all-linear on BERT: "dense" also names the saved pooler, so full paths are written */
    {"kg_lora_bert", "bert", {.kind = KG_ADAPTER_LORA, .rank = 2, .alpha = 4}},
    {"kg_lora_mistral", "mistral", {.kind = KG_ADAPTER_LORA, .rank = 4, .alpha = 8,
                                    .targets = "q_proj,v_proj,down_proj"}},
    /* square A: PEFT's LoKr, w2 low-rank (R 2 < 16/2) */
    {"kg_lokr_distilbert", "distilbert",
     {.kind = KG_ADAPTER_KRONLORA, .rank = 2, .alpha = 4, .kron_a2 = 2, .kron_a1 = 2,
      .modules_to_save = ""}},
    /* square A with R >= max(dB)/2 on the 32 × 32 layers: PEFT holds w2 whole */
    {"kg_lokr_w2_distilbert", "distilbert",
     {.kind = KG_ADAPTER_KRONLORA, .rank = 4, .alpha = 4, .kron_a2 = 4, .kron_a1 = 4}},
    /* a 2 × 4 A: krongrad's KRONLORA */
    {"kg_kronlora_distilbert", "distilbert",
     {.kind = KG_ADAPTER_KRONLORA, .rank = 2, .alpha = 4, .kron_a2 = 2, .kron_a1 = 4}},
    /* LoKr made by krongrad: PEFT's factorization (a non-square w1 on the MLP) */
    {"kg_lokr_llama", "llama", {.kind = KG_ADAPTER_LOKR, .rank = 2, .alpha = 4,
                                .lokr_factor = -1, .targets = "q_proj,k_proj,gate_proj,down_proj"}},
};

/* Every adapter factor to values well away from zero and every saved head moved off the base
 * model, deterministically from seed. */
static void randomize(kg_model *m, uint64_t seed)
{
    kg_scope scope = kg_scope_begin(ctx);
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *t = m->trainable[i].tensor;
        int nd = kg_tensor_ndim(t);
        int64_t s[KG_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            s[d] = kg_tensor_dim(t, d);
        bool factor = strstr(m->trainable[i].name, ".lora_") || strstr(m->trainable[i].name,
                                                                        ".lokr_");
        kg_tensor *r = kg_uniform(ctx, nd, s, -0.3f, 0.3f, seed + (uint64_t)i);
        kg_tensor_assign(t, factor ? r : kg_add(t, kg_scale(r, 0.3f)));
    }
    kg_scope_end(ctx, scope);
    assert_ok(ctx);
}

static kg_model *written(const kg_spec *s)
{
    kg_model *m = kg_test_model(ctx, s->model);
    kg_adapter_config cfg = s->cfg;
    cfg.seed = 7;
    assert_true(kg_model_attach(m, &cfg));
    randomize(m, 11);
    return m;
}

static void write_spec(const kg_spec *s, const char *root)
{
    char dir[512], base[128];
    snprintf(dir, sizeof dir, "%s/%s", root, s->dir);
    snprintf(base, sizeof base, "tests/fixtures/models/%s", s->model);
    kg_model *m = written(s);
    assert_true(kg_peft_save(m, dir, base));
    assert_ok(ctx);
    kg_test_model_free(ctx, m);
}

/* Two adapter directories hold the same config and the same tensors (to f32 rounding: the
 * materialized w2 may round differently under another GEMM). */
static void assert_same_dir(const char *got, const char *want)
{
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/adapter_config.json", got);
    snprintf(b, sizeof b, "%s/adapter_config.json", want);
    json_error_t err;
    json_t *ja = json_load_file(a, 0, &err), *jb = json_load_file(b, 0, &err);
    assert_non_null(ja);
    assert_non_null(jb);
    if (!json_equal(ja, jb)) {
        char *ta = json_dumps(ja, JSON_SORT_KEYS), *tb = json_dumps(jb, JSON_SORT_KEYS);
        fail_msg("%s differs from %s:\n%s\n%s", a, b, ta, tb);
    }
    json_decref(ja);
    json_decref(jb);
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", got);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", want);
    kg_weights *wa = kg_weights_open(ctx, a), *wb = kg_weights_open(ctx, b);
    assert_ok(ctx);
    assert_int_equal(kg_weights_count(wa), kg_weights_count(wb));
    kg_scope scope = kg_scope_begin(ctx);
    for (int i = 0; i < kg_weights_count(wa); i++) {
        const char *name = kg_weights_name(wa, i);
        int nd;
        int64_t shape[KG_MAX_DIMS];
        if (!kg_weights_shape(wb, name, &nd, shape))
            fail_msg("%s has no tensor %s", b, name);
        kg_tensor *tb = kg_weights_load(wb, name, KG_DTYPE_F32, nd, shape);
        kg_tensor *ta = kg_weights_load(wa, name, KG_DTYPE_F32, nd, shape);
        assert_ok(ctx);
        float *vb = kg_tensor_to_f32(tb);
        assert_tensor(ta, vb, kg_tensor_numel(tb), 1e-6f, 1e-6f, name);
        free(vb);
    }
    kg_scope_end(ctx, scope);
    kg_weights_close(wa);
    kg_weights_close(wb);
}

static char *temp_dir(void)
{
    char *d = strdup("/tmp/kg_peft_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

/* ---- Tests -------------------------------------------------------------------------------- */

/* Adapters PEFT made load with PEFT's logits, unmerged and merged. */
static void test_peft_made(void **state)
{
    (void)state;
    static const struct {
        const char *dir, *model;
        kg_adapter_kind kind;
    } cases[] = {
        {"peft_lora_distilbert", "distilbert", KG_ADAPTER_LORA},
        {"peft_lora_bert", "bert", KG_ADAPTER_LORA},
        {"peft_lora_mistral", "mistral", KG_ADAPTER_LORA},
        {"peft_lokr_distilbert", "distilbert", KG_ADAPTER_LOKR},
        {"peft_lokr_full_w2", "distilbert", KG_ADAPTER_LOKR},
        {"peft_lokr_both", "llama", KG_ADAPTER_LOKR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", FIX, cases[i].dir);
        kg_model *m = kg_test_model(ctx, cases[i].model);
        assert_true(kg_peft_load(m, dir));
        assert_ok(ctx);
        assert_int_equal(m->adapter.kind, cases[i].kind);
        check_logits(m, dir, cases[i].dir);
        assert_true(kg_model_merge(m));
        check_logits(m, dir, "merged");
        assert_true(kg_model_unmerge(m));
        check_logits(m, dir, "unmerged");
        kg_test_model_free(ctx, m);
    }
}

/* This build writes what PEFT checked, and reading it back gives PEFT's logits. */
static void test_kg_written(void **state)
{
    (void)state;
    char *tmp = temp_dir();
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char got[512], want[512];
        write_spec(&specs[i], tmp);
        snprintf(got, sizeof got, "%s/%s", tmp, specs[i].dir);
        snprintf(want, sizeof want, "%s/%s", FIX, specs[i].dir);
        assert_same_dir(got, want);
        kg_model *m = kg_test_model(ctx, specs[i].model);
        assert_true(kg_peft_load(m, want));
        assert_ok(ctx);
        check_logits(m, want, specs[i].dir);
        kg_test_model_free(ctx, m);
    }
    remove_dir(tmp);
    free(tmp);
}

/* Save, then load into a model with the same adapter (in place) and into a fresh one: the same
 * values and the same logits. */
static void test_round_trip(void **state)
{
    (void)state;
    char *tmp = temp_dir();
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", tmp, specs[i].dir);
        kg_model *m = written(&specs[i]);
        assert_true(kg_peft_save(m, dir, NULL));
        /* the same adapter, other values: replaced in place, tensors kept */
        kg_model *in_place = kg_test_model(ctx, specs[i].model);
        kg_adapter_config cfg = specs[i].cfg;
        cfg.seed = 99;
        assert_true(kg_model_attach(in_place, &cfg));
        bool whole_w2 = strcmp(specs[i].dir, "kg_lokr_w2_distilbert") == 0;
        kg_tensor *first = in_place->trainable[0].tensor;
        if (whole_w2) { /* written as LoKr with whole w2s: only a lokr model takes it back */
            assert_false(kg_peft_load(in_place, dir));
            assert_non_null(strstr(kg_error(ctx), "lokr_w2_a"));
            kg_clear_error(ctx);
        } else {
            assert_true(kg_peft_load(in_place, dir));
            assert_ok(ctx);
            assert_ptr_equal(in_place->trainable[0].tensor, first);
            assert_int_equal(in_place->n_trainable, m->n_trainable);
            for (int k = 0; k < m->n_trainable; k++) {
                assert_string_equal(in_place->trainable[k].name, m->trainable[k].name);
                float *want = kg_tensor_to_f32(m->trainable[k].tensor);
                assert_tensor(in_place->trainable[k].tensor, want,
                              kg_tensor_numel(m->trainable[k].tensor), 0, 0, "in place");
                free(want);
            }
        }
        kg_model *fresh = kg_test_model(ctx, specs[i].model);
        assert_true(kg_peft_load(fresh, dir));
        assert_ok(ctx);
        assert_int_equal(kg_model_trainable_count(fresh), kg_model_trainable_count(m));
        /* logits of m and fresh agree */
        kg_scope scope = kg_scope_begin(ctx);
        bool mc = m->cfg.head == KG_HEAD_MULTIPLE_CHOICE;
        int32_t ids[24];
        for (int k = 0; k < 24; k++)
            ids[k] = 5 + (k * 37) % 90;
        kg_model_input in = {.ids = mc ? kg_from_host(ctx, KG_DTYPE_I32, 3, SHAPE(2, 2, 6), ids)
                                       : kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(4, 6), ids)};
        kg_tensor *a = kg_model_logits(m, &in, NULL), *b = kg_model_logits(fresh, &in, NULL);
        assert_ok(ctx);
        float *va = kg_tensor_to_f32(a);
        assert_tensor(b, va, kg_tensor_numel(a), 1e-5f, 1e-5f, specs[i].dir);
        free(va);
        kg_scope_end(ctx, scope);
        kg_model_free(fresh);
        kg_model_free(in_place);
        kg_test_model_free(ctx, m);
    }
    remove_dir(tmp);
    free(tmp);
}

/* A copy of peft_lora_distilbert in a temporary directory, its config text replaced by config
 * (NULL: kept), its tensors filtered by edit. */
typedef void (*edit_fn)(int *n, const char **names, kg_tensor **ts);

static char *bad_copy(const char *config, edit_fn edit)
{
    char *tmp = temp_dir(), src[512], dst[512];
    snprintf(src, sizeof src, "%s/peft_lora_distilbert/adapter_config.json", FIX);
    snprintf(dst, sizeof dst, "%s/adapter_config.json", tmp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    if (config) {
        FILE *f = fopen(dst, "w");
        fputs(config, f);
        fclose(f);
    }
    snprintf(src, sizeof src, "%s/peft_lora_distilbert/adapter_model.safetensors", FIX);
    snprintf(dst, sizeof dst, "%s/adapter_model.safetensors", tmp);
    kg_weights *w = kg_weights_open(ctx, src);
    int n = kg_weights_count(w);
    const char *names[64];
    kg_tensor *ts[64];
    for (int i = 0; i < n; i++) {
        names[i] = kg_weights_name(w, i);
        ts[i] = kg_weights_load(w, names[i], KG_DTYPE_F32, 0, NULL);
    }
    if (edit)
        edit(&n, names, ts);
    assert_true(kg_safetensors_write(ctx, dst, n, names, ts, NULL));
    for (int i = 0; i < n; i++)
        kg_tensor_free(ts[i]);
    kg_weights_close(w);
    assert_ok(ctx);
    return tmp;
}

static int find(int n, const char **names, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    fail_msg("no tensor %s", name);
    return -1;
}

#define QA "base_model.model.distilbert.transformer.layer.1.attention.q_lin.lora_A.weight"

static void drop_one(int *n, const char **names, kg_tensor **ts)
{
    int i = find(*n, names, "base_model.model.distilbert.transformer.layer.1.ffn.lin1.lora_B."
                            "weight");
    kg_tensor_free(ts[i]);
    names[i] = names[*n - 1];
    ts[i] = ts[--*n];
}

static void drop_layer(int *n, const char **names, kg_tensor **ts)
{
    for (int k = 0; k < 2; k++) {
        int i = find(*n, names, k ? QA : "base_model.model.distilbert.transformer.layer.1."
                                         "attention.q_lin.lora_B.weight");
        kg_tensor_free(ts[i]);
        names[i] = names[*n - 1];
        ts[i] = ts[--*n];
    }
}

static void reshape_one(int *n, const char **names, kg_tensor **ts)
{
    int i = find(*n, names, QA);
    kg_tensor *view = kg_tensor_keep(kg_reshape(ts[i], 2, SHAPE(2, -1))); /* (4, 32) -> (2, 64) */
    kg_tensor_free(ts[i]);
    ts[i] = view;
}

static void add_one(int *n, const char **names, kg_tensor **ts)
{
    names[*n] = "base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_C.weight";
    ts[*n] = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(4, 32)));
    ++*n;
}

/* Load a bad directory: false, a message holding each of want[], the model left bare. */
static void expect_bad(const char *dir, const char *const *want)
{
    kg_model *m = kg_test_model(ctx, "distilbert");
    assert_false(kg_peft_load(m, dir));
    for (int i = 0; want[i]; i++)
        if (!strstr(kg_error(ctx), want[i]))
            fail_msg("error '%s' does not name '%s'", kg_error(ctx), want[i]);
    kg_clear_error(ctx);
    assert_int_equal(m->adapter.kind, KG_ADAPTER_NONE);
    assert_int_equal(m->n_trainable, 0);
    kg_test_model_free(ctx, m);
}

static void test_bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *config;
        edit_fn edit;
        const char *want[4];
    } cases[] = {
        {NULL, drop_one, {"adapter_model.safetensors", "layer.1.ffn.lin1.lora_B.weight"}},
        {NULL, drop_layer, {"layer.1.attention.q_lin", "target_modules"}},
        {NULL, reshape_one, {"adapter_model.safetensors", QA}},
        {NULL, add_one, {"adapter_model.safetensors", "lora_C.weight"}},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8", NULL,
         {"adapter_config.json", "JSON"}},
        {"{\"peft_type\": \"IA3\"}", NULL, {"adapter_config.json", "IA3"}},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true}", NULL,
         {"adapter_config.json", "use_dora"}},
        {"{\"peft_type\": \"LORA\", \"r\": \"4\"}", NULL, {"adapter_config.json", "'r'"}},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8}", NULL,
         {"adapter_model.safetensors", "lora_A.weight", "[4, 32]"}}, /* rank 8, the file 4 */
        {"{\"peft_type\": \"KRONLORA\", \"r\": 4, \"kron_a\": [0, 2]}", NULL,
         {"adapter_config.json", "kron_a"}},
        {"{\"peft_type\": \"LOKR\", \"r\": 4}", NULL, /* LoRA tensors in a LoKr file */
         {"adapter_model.safetensors", "lora_A.weight"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = bad_copy(cases[i].config, cases[i].edit);
        expect_bad(dir, cases[i].want);
        remove_dir(dir);
        free(dir);
    }
    expect_bad("/no/such/adapter", (const char *const[]){"/no/such/adapter", NULL});
}

/* What cannot be saved: no adapter, a full fine-tune, a merged adapter. */
static void test_save_refused(void **state)
{
    (void)state;
    char *tmp = temp_dir();
    kg_model *m = kg_test_model(ctx, "distilbert");
    assert_false(kg_peft_save(m, tmp, NULL));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_STATE);
    kg_clear_error(ctx);
    kg_adapter_config cfg = kg_adapter_config_default(KG_ADAPTER_LORA);
    assert_true(kg_model_attach(m, &cfg));
    assert_true(kg_model_merge(m));
    assert_false(kg_peft_save(m, tmp, NULL));
    assert_non_null(strstr(kg_error(ctx), "merged"));
    kg_clear_error(ctx);
    kg_test_model_free(ctx, m);
    m = kg_test_model(ctx, "distilbert");
    cfg.kind = KG_ADAPTER_FULL;
    assert_true(kg_model_attach(m, &cfg));
    assert_false(kg_peft_save(m, tmp, NULL));
    assert_non_null(strstr(kg_error(ctx), "kg_model_save_weights"));
    kg_clear_error(ctx);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    assert_true(kg_model_save_weights(m, path));
    kg_weights *w = kg_weights_open(ctx, path);
    assert_int_equal(kg_weights_count(w), m->n_params);
    kg_weights_close(w);
    kg_test_model_free(ctx, m);
    remove_dir(tmp);
    free(tmp);
}

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
    if (argc > 2 && strcmp(argv[1], "--write") == 0) {
        ctx = kg_ctx_new(KG_BACKEND_CPU);
        for (size_t i = 0; i < sizeof specs / sizeof specs[0] && !kg_ctx_status(ctx); i++)
            write_spec(&specs[i], argv[2]);
        int rc = kg_ctx_status(ctx) ? 1 : 0;
        if (rc)
            fprintf(stderr, "%s\n", kg_error(ctx));
        kg_ctx_free(ctx);
        return rc;
    }
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peft_made, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kg_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
