/* test_adapter_quant.c — int8 / int4 adapters: the per-row codes and int4 packing against
 * hand-computed bytes; I8 / U8 tensors through the safetensors writer and reader; quantized PEFT
 * directories (kg_peft_save_quantized) read back to exactly the values the in-memory
 * quantization gives, with equal logits, for LoRA, Kron-LoRA (square and not) and LoKr; bad
 * files rejected naming the file and the tensor or key.
 */
#include "kg_test.h"

#include <sys/stat.h>
#include <unistd.h>

static kg_ctx *ctx;

static char *temp_dir(void)
{
    char *d = strdup("/tmp/kg_aq_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

/* Every adapter factor to values away from zero (deterministic from seed). */
static void randomize(kg_model *m, uint64_t seed)
{
    kg_scope scope = kg_scope_begin(ctx);
    for (int i = 0; i < m->n_trainable; i++) {
        kg_tensor *t = m->trainable[i].tensor;
        int nd = kg_tensor_ndim(t);
        int64_t s[KG_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            s[d] = kg_tensor_dim(t, d);
        if (strstr(m->trainable[i].name, ".lora_") || strstr(m->trainable[i].name, ".lokr_"))
            kg_tensor_assign(t, kg_uniform(ctx, nd, s, -0.3f, 0.3f, seed + (uint64_t)i));
    }
    kg_scope_end(ctx, scope);
    assert_ok(ctx);
}

/* ---- Codes and packing ------------------------------------------------------------------- */

static void test_codes_and_packing(void **state)
{
    (void)state;
    /* rows: max 1 → scale 1/7, codes round(x·7); an all-zero row has scale 0, codes 0 */
    const float x[] = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f};
    int8_t codes[6];
    float scales[2];
    assert_true(kg_adapter_quantize_rows(x, 2, 3, 4, codes, scales));
    assert_memory_equal(codes, ((int8_t[]){4, -7, 2, 0, 0, 0}), 6);
    assert_true(scales[0] == 1.0f / 7.0f && scales[1] == 0.0f);
    assert_true(kg_adapter_quantize_rows(x, 2, 3, 8, codes, scales));
    assert_memory_equal(codes, ((int8_t[]){64, -127, 32, 0, 0, 0}), 6); /* 63.5 rounds away */
    assert_false(kg_adapter_quantize_rows(x, 2, 3, 5, codes, scales));

    /* int4: column 2b in the low nibble of byte b, 2b+1 in the high one, two's complement; an
     * odd row's last high nibble 0. */
    const int8_t q[] = {1, -1, 7, -7, 0, /* row 1 */ -3, 2, 0, 0, 5};
    uint8_t packed[6];
    kg_adapter_pack_int4(q, 2, 5, packed);
    assert_memory_equal(packed, ((uint8_t[]){0xF1, 0x97, 0x00, 0x2D, 0x00, 0x05}), 6);
    int8_t back[10];
    assert_true(kg_adapter_unpack_int4(packed, 2, 5, back));
    assert_memory_equal(back, q, 10);
    packed[1] = 0x87; /* -8 */
    assert_false(kg_adapter_unpack_int4(packed, 2, 5, back));
    packed[1] = 0x97;
    packed[2] = 0x10; /* padding nibble set */
    assert_false(kg_adapter_unpack_int4(packed, 2, 5, back));
    float deq[10];
    kg_adapter_dequantize_rows(q, (float[]){0.5f, 2.0f}, 2, 5, deq);
    assert_true(deq[1] == -0.5f && deq[5] == -6.0f && deq[9] == 10.0f);
}

/* I8 / U8 tensors given as bytes: written beside an F32 one, read back byte for byte (the
 * header as the reference writer makes it); misuse named. */
static void test_safetensors_bytes(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[600];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    const int8_t codes[] = {-127, 0, 5, 127, -1, 3};
    const uint8_t packed[] = {0xF1, 0x97};
    kg_safetensors_bytes raw[3] = {
        {.dtype = "I8", .ndim = 2, .shape = {2, 3}, .data = codes},
        {.dtype = "U8", .ndim = 1, .shape = {2}, .data = packed}};
    kg_tensor *ts[3] = {NULL, NULL, kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(2),
                                                 (float[]){0.5f, 2.0f})};
    const char *names[3] = {"c", "p", "c.qscale"};
    assert_true(kg_safetensors_write_bytes(ctx, path, 3, names, ts, raw, NULL));
    kg_weights *w = kg_weights_open(ctx, path);
    assert_ok(ctx);
    assert_memory_equal(kg_weights_bytes(w, "c", "I8", 2, SHAPE(2, 3)), codes, 6);
    assert_memory_equal(kg_weights_bytes(w, "p", "U8", 1, SHAPE(2)), packed, 2);
    assert_int_equal(kg_weights_dtype(w, "c"), KG_DTYPE_COUNT); /* no kg_dtype is I8 */
    assert_null(kg_weights_bytes(w, "c", "U8", 2, SHAPE(2, 3)));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    assert_non_null(strstr(kg_error(ctx), "\"c\" is I8 [2, 3]; expected U8 [2, 3]"));
    kg_clear_error(ctx);
    assert_null(kg_weights_bytes(w, "c", "I8", 2, SHAPE(3, 2)));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_clear_error(ctx);
    kg_weights_close(w);
    raw[0].dtype = "I16";
    assert_false(kg_safetensors_write_bytes(ctx, path, 3, names, ts, raw, NULL));
    assert_non_null(strstr(kg_error(ctx), "other than I8 or U8"));
    kg_clear_error(ctx);
    raw[0].dtype = "I8";
    raw[0].shape[1] = -3;
    assert_false(kg_safetensors_write_bytes(ctx, path, 3, names, ts, raw, NULL));
    assert_non_null(strstr(kg_error(ctx), "negative"));
    kg_clear_error(ctx);
    kg_tensor_free(ts[2]);
    remove_dir(dir);
}

/* ---- Round trips --------------------------------------------------------------------------- */

typedef struct spec {
    const char *model;
    kg_adapter_config cfg;
} spec;

static const spec specs[] = {
    {"llama", {.kind = KG_ADAPTER_LORA, .rank = 4, .alpha = 8, .targets = "q_proj,down_proj"}},
    {"llama", {.kind = KG_ADAPTER_KRONLORA, .rank = 2, .alpha = 4, .kron_a2 = 2, .kron_a1 = 4}},
    /* square A, R >= max(dB)/2: the f32 file holds w2 whole; the quantized one B1, B2 apart */
    {"distilbert", {.kind = KG_ADAPTER_KRONLORA, .rank = 4, .alpha = 4, .kron_a2 = 4,
                    .kron_a1 = 4}},
    {"llama", {.kind = KG_ADAPTER_LOKR, .rank = 2, .alpha = 4, .lokr_factor = -1,
               .targets = "q_proj,gate_proj,down_proj"}},
};

static kg_model *trained(const spec *s)
{
    kg_model *m = kg_test_model(ctx, s->model);
    kg_adapter_config cfg = s->cfg;
    cfg.seed = 3;
    assert_true(kg_model_attach(m, &cfg));
    randomize(m, 17);
    return m;
}

static float *logits_of(kg_model *m)
{
    kg_scope scope = kg_scope_begin(ctx);
    kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(1, 6),
                                             (int32_t[]){1, 7, 42, 3, 99, 5})};
    float *out = kg_tensor_to_f32(kg_model_logits(m, &in, NULL));
    kg_scope_end(ctx, scope);
    assert_ok(ctx);
    return out;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        for (int bits = 8; bits >= 4; bits -= 4) {
            char *dir = temp_dir();
            kg_model *m = trained(&specs[i]);
            assert_true(kg_peft_save_quantized(m, dir, "tiny", bits));
            assert_ok(ctx);
            kg_model *back = kg_test_model(ctx, specs[i].model);
            assert_true(kg_peft_load(back, dir));
            assert_ok(ctx);
            assert_true(kg_model_quantize_adapter(m, bits)); /* what eval --adapter-bits does */
            assert_int_equal(back->n_trainable, m->n_trainable);
            int64_t n = 0;
            for (int k = 0; k < m->n_trainable; k++) {
                assert_string_equal(back->trainable[k].name, m->trainable[k].name);
                int64_t numel = kg_tensor_numel(m->trainable[k].tensor);
                float *want = kg_tensor_to_f32(m->trainable[k].tensor);
                float *got = kg_tensor_to_f32(back->trainable[k].tensor);
                if (memcmp(got, want, (size_t)numel * sizeof *got) != 0)
                    fail_msg("spec %zu int%d: %s differs from the in-memory quantization", i,
                             bits, m->trainable[k].name);
                n += numel;
                free(want);
                free(got);
            }
            assert_true(n > 0);
            bool decoder = strcmp(specs[i].model, "llama") == 0;
            if (decoder) { /* the same values give the same logits, bit for bit */
                float *a = logits_of(m), *b = logits_of(back);
                assert_memory_equal(a, b, 6 * 100 * sizeof *a);
                free(a);
                free(b);
            }
            /* the file: codes as I8 / U8 beside F32 scales, the bits in the config */
            char path[600];
            snprintf(path, sizeof path, "%s/adapter_config.json", dir);
            FILE *f = fopen(path, "r");
            char text[8192] = {0};
            assert_non_null(f);
            assert_true(fread(text, 1, sizeof text - 1, f) > 0);
            fclose(f);
            char want[64];
            snprintf(want, sizeof want, "\"krongrad_quant_bits\": %d", bits);
            assert_non_null(strstr(text, want));
            if (specs[i].cfg.kind == KG_ADAPTER_KRONLORA)
                assert_non_null(strstr(text, "\"KRONLORA\""));
            snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
            kg_weights *w = kg_weights_open(ctx, path);
            const char *name = m->trainable[0].name;
            int64_t r0 = kg_tensor_dim(m->trainable[0].tensor, 0);
            int64_t c0 = kg_tensor_dim(m->trainable[0].tensor, 1);
            char sname[400];
            snprintf(sname, sizeof sname, "%s.qscale", name);
            assert_non_null(kg_weights_bytes(w, name, bits == 8 ? "I8" : "U8", 2,
                                             SHAPE(r0, bits == 8 ? c0 : (c0 + 1) / 2)));
            assert_non_null(kg_weights_bytes(w, sname, "F32", 1, SHAPE(r0)));
            kg_weights_close(w);
            assert_ok(ctx);
            kg_model_free(m);
            kg_test_model_free(ctx, back);
            remove_dir(dir);
        }
    }
}

/* ---- Bad files ----------------------------------------------------------------------------- */

/* A file's tensors, F32 ones as tensors and the codes as bytes, for editing and rewriting. */
typedef struct contents {
    int n;
    const char *names[64];
    kg_tensor *ts[64];
    kg_safetensors_bytes raw[64];
    uint8_t *copies[64];
} contents;

typedef void (*edit_fn)(contents *c);

#define Q_A "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"

static int find(const contents *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0)
            return i;
    fail_msg("no tensor %s", name);
    return -1;
}

static void as_f32(contents *c) /* Q_A's codes written as F32 */
{
    int i = find(c, Q_A);
    c->ts[i] = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, c->raw[i].ndim, c->raw[i].shape));
}

static void drop_scale(contents *c)
{
    int i = find(c, Q_A ".qscale");
    kg_tensor_free(c->ts[i]);
    c->names[i] = c->names[c->n - 1];
    c->ts[i] = c->ts[c->n - 1];
    c->raw[i] = c->raw[--c->n];
}

static void long_scale(contents *c)
{
    int i = find(c, Q_A ".qscale");
    int64_t rows = kg_tensor_dim(c->ts[i], 0) + 1;
    kg_tensor_free(c->ts[i]);
    c->ts[i] = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, 1, &rows));
}

static void wide_codes(contents *c) /* one byte too many per row */
{
    int i = find(c, Q_A);
    c->raw[i].shape[1]++;
    c->copies[i] = calloc((size_t)(c->raw[i].shape[0] * c->raw[i].shape[1]), 1);
    c->raw[i].data = c->copies[i];
}

static void bad_code(contents *c) /* the first byte 0x80: -128 in int8, -8 in int4's high nibble */
{
    int i = find(c, Q_A);
    size_t bytes = (size_t)(c->raw[i].shape[0] * c->raw[i].shape[1]);
    c->copies[i] = malloc(bytes);
    memcpy(c->copies[i], c->raw[i].data, bytes);
    c->copies[i][0] = 0x80;
    c->raw[i].data = c->copies[i];
}

/* A copy of the quantized directory src in a new directory: the config's bits replaced by
 * config_bits (0: kept; -1: the key taken out), the tensors edited. */
static char *bad_copy(const char *src, int bits, int config_bits, edit_fn edit)
{
    char *dst = temp_dir(), cmd[1600];
    if (config_bits > 0)
        snprintf(cmd, sizeof cmd, "sed 's/\"krongrad_quant_bits\": %d/\"krongrad_quant_bits\": "
                 "%d/' '%s/adapter_config.json' > '%s/adapter_config.json'", bits, config_bits,
                 src, dst);
    else if (config_bits < 0)
        snprintf(cmd, sizeof cmd, "grep -v krongrad_quant_bits '%s/adapter_config.json' > "
                 "'%s/adapter_config.json'", src, dst);
    else
        snprintf(cmd, sizeof cmd, "cp '%s/adapter_config.json' '%s/'", src, dst);
    assert_int_equal(system(cmd), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", src);
    kg_weights *w = kg_weights_open(ctx, path);
    contents c = {.n = kg_weights_count(w)};
    assert_true(c.n <= 64);
    for (int i = 0; i < c.n; i++) {
        c.names[i] = kg_weights_name(w, i);
        kg_weights_shape(w, c.names[i], &c.raw[i].ndim, c.raw[i].shape);
        if (kg_weights_dtype(w, c.names[i]) == KG_DTYPE_F32) {
            c.ts[i] = kg_weights_load(w, c.names[i], KG_DTYPE_F32, 0, NULL);
        } else {
            c.raw[i].dtype = bits == 8 ? "I8" : "U8";
            c.raw[i].data = kg_weights_bytes(w, c.names[i], c.raw[i].dtype, c.raw[i].ndim,
                                             c.raw[i].shape);
        }
    }
    if (edit)
        edit(&c);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dst);
    assert_true(kg_safetensors_write_bytes(ctx, path, c.n, c.names, c.ts, c.raw, NULL));
    for (int i = 0; i < 64; i++) {
        kg_tensor_free(i < c.n ? c.ts[i] : NULL);
        free(c.copies[i]);
    }
    kg_weights_close(w);
    assert_ok(ctx);
    return dst;
}

static void expect_bad(const char *dir, const char *const *want)
{
    kg_model *m = kg_test_model(ctx, "llama");
    assert_false(kg_peft_load(m, dir));
    for (int i = 0; want[i]; i++)
        if (!strstr(kg_error(ctx), want[i]))
            fail_msg("error '%s' does not name '%s'", kg_error(ctx), want[i]);
    kg_clear_error(ctx);
    assert_int_equal(m->adapter.kind, KG_ADAPTER_NONE);
    kg_test_model_free(ctx, m);
}

static void test_bad_files(void **state)
{
    (void)state;
    static const struct {
        int bits, config_bits;
        edit_fn edit;
        const char *want[5];
    } cases[] = {
        {8, 0, as_f32, {"adapter_model.safetensors", Q_A, "F32", "I8"}},
        {4, 0, as_f32, {"adapter_model.safetensors", Q_A, "U8"}},
        {8, 0, drop_scale, {"adapter_model.safetensors", Q_A ".qscale", "no scale"}},
        {4, 0, long_scale, {"adapter_model.safetensors", Q_A ".qscale", "F32 [4]"}},
        {8, 5, NULL, {"adapter_config.json", "krongrad_quant_bits"}},
        {4, 0, wide_codes, {"adapter_model.safetensors", Q_A, "two codes per byte"}},
        {4, 0, bad_code, {"adapter_model.safetensors", Q_A, "-8"}},
        {8, 0, bad_code, {"adapter_model.safetensors", Q_A, "-128"}},
        {8, -1, NULL, {"adapter_model.safetensors", "I8"}}, /* codes, but no bits in the config */
        {8, 4, NULL, {"adapter_model.safetensors", "U8"}},  /* int8 codes read as int4 */
    };
    kg_model *m = kg_test_model(ctx, "llama");
    kg_adapter_config cfg = {.kind = KG_ADAPTER_LORA, .rank = 4, .alpha = 8, .seed = 1,
                             .targets = "q_proj"};
    assert_true(kg_model_attach(m, &cfg));
    randomize(m, 5);
    char *good[2] = {temp_dir(), temp_dir()}; /* int8, int4 */
    assert_true(kg_peft_save_quantized(m, good[0], NULL, 8));
    assert_true(kg_peft_save_quantized(m, good[1], NULL, 4));
    for (int bad = 0; bad <= 3; bad += 3) {
        assert_false(kg_peft_save_quantized(m, good[1], NULL, bad));
        assert_non_null(strstr(kg_error(ctx), bad ? "3 bits" : "0 bits"));
        kg_clear_error(ctx);
    }
    kg_test_model_free(ctx, m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = bad_copy(good[cases[i].bits == 4], cases[i].bits, cases[i].config_bits,
                             cases[i].edit);
        expect_bad(dir, cases[i].want);
        remove_dir(dir);
    }
    remove_dir(good[0]);
    remove_dir(good[1]);
}

static int setup(void **state)
{
    (void)state;
    ctx = kg_ctx_new(KG_BACKEND_CPU);
    return ctx && !kg_ctx_status(ctx) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kg_ctx_free(ctx);
    ctx = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_codes_and_packing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_safetensors_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
