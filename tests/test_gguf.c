/* test_gguf.c — the GGUF reader (kg_formats.h) against files written by gguf-py
 * (tests/fixtures/formats/make_formats.py): a one-layer Llama with F32, F16, BF16, Q8_0, Q4_0 and
 * Q4_1 tensors whose values, dequantized and with llama.cpp's Q/K permutation undone, must equal
 * what transformers' GGUF loader gives; metadata of every value type; and bad files built here
 * byte by byte, each refused with a status and a message naming the file and the tensor or key.
 */
#include "formats_test.h"

/* ---- Building GGUF files --------------------------------------------------------------------- */

typedef struct gbuf {
    uint8_t data[4096];
    size_t n;
} gbuf;

static void put(gbuf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->data);
    memcpy(b->data + b->n, p, n);
    b->n += n;
}

static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }

static void put_str(gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void put_header(gbuf *b, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void put_kv_u32(gbuf *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, 4);
    put_u32(b, v);
}

static void put_kv_str(gbuf *b, const char *key, const char *v)
{
    put_str(b, key);
    put_u32(b, 8);
    put_str(b, v);
}

/* A tensor info; ne innermost first, as GGUF stores it. */
static void put_info(gbuf *b, const char *name, uint32_t ndim, const uint64_t *ne, uint32_t type,
                     uint64_t offset)
{
    put_str(b, name);
    put_u32(b, ndim);
    for (uint32_t i = 0; i < ndim; i++)
        put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, offset);
}

/* Zero bytes up to a multiple of align, then n zero bytes of data. */
static void put_data(gbuf *b, size_t align, size_t n)
{
    static const uint8_t zeros[4096];
    put(b, zeros, (align - b->n % align) % align);
    put(b, zeros, n);
}

static const char *gguf_file(const char *name, const gbuf *b)
{
    return write_scratch(name, b->data, b->n);
}

/* ---- The Llama fixture ------------------------------------------------------------------------ */

static const char *const hf_names[] = {
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.gate_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.norm.weight",
    "lm_head.weight",
};
#define N_TENSORS 12

/* Every tensor equals transformers' HF-order value (tiny_llama_expected.safetensors): exactly
 * in f32, and rounded once in f16 / bf16. */
static void check_llama(kg_weights *w, kg_weights *want, kg_dtype dtype)
{
    for (int i = 0; i < N_TENSORS; i++) {
        int ndim, want_ndim;
        int64_t shape[KG_MAX_DIMS], want_shape[KG_MAX_DIMS];
        assert_true(kg_weights_shape(w, hf_names[i], &ndim, shape));
        assert_true(kg_weights_shape(want, hf_names[i], &want_ndim, want_shape));
        assert_int_equal(ndim, want_ndim);
        assert_memory_equal(shape, want_shape, (size_t)ndim * sizeof *shape);
        kg_tensor *ref = kg_weights_load(want, hf_names[i], KG_DTYPE_F32, ndim, shape);
        float *v = kg_tensor_to_f32(ref);
        float tol = dtype == KG_DTYPE_F32 ? 0 : dtype == KG_DTYPE_F16 ? 1e-3f : 8e-3f;
        assert_loads(w, hf_names[i], dtype, v, kg_tensor_numel(ref), tol);
        free(v);
        kg_tensor_free(ref);
    }
}

static void test_llama_matches_transformers(void **state)
{
    (void)state;
    kg_weights *w = kg_weights_open(ctx, fixture("tiny_llama.gguf"));
    assert_ok(ctx);
    kg_weights *want = kg_weights_open(ctx, fixture("tiny_llama_expected.safetensors"));
    assert_ok(ctx);
    assert_true(kg_weights_is_gguf(w));
    assert_int_equal(kg_weights_count(w), N_TENSORS);
    for (int i = 0; i < N_TENSORS; i++)
        assert_string_equal(kg_weights_name(w, i), hf_names[i]); /* file order, HF names */
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    assert_true(kg_weights_shape(w, "model.layers.0.mlp.gate_proj.weight", &ndim, shape));
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], 64); /* [out, in]: GGUF's ne = {32, 64} reversed */
    assert_int_equal(shape[1], 32);
    assert_false(kg_weights_shape(w, "blk.0.attn_q.weight", NULL, NULL)); /* only HF names */
    check_llama(w, want, KG_DTYPE_F32);
    check_llama(w, want, KG_DTYPE_F16);
    check_llama(w, want, KG_DTYPE_BF16);
    /* Chunks of whole rows (permuted) or whole blocks, down to one unit per chunk. */
    for (int64_t chunk = 1; chunk <= 4096; chunk *= 8) {
        kg__load_chunk_elems = chunk;
        check_llama(w, want, KG_DTYPE_F32);
    }
    kg_weights_close(want);
    kg_weights_close(w);
}

static void test_metadata_of_every_type(void **state)
{
    (void)state;
    kg_weights *w = kg_weights_open(ctx, fixture("tiny_llama.gguf"));
    int64_t i;
    double d;
    struct { const char *key; int64_t value; } ints[] = {
        {"test.u8", 200}, {"test.i8", -100}, {"test.u16", 60000}, {"test.i16", -30000},
        {"test.u32", 4000000000}, {"test.i32", -2000000000}, {"test.i64", -(1LL << 40)},
        {"test.bool", 1}, {"llama.attention.head_count", 4}, {"llama.block_count", 1},
        {"general.alignment", 64}, {"tokenizer.ggml.bos_token_id", 1}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (!kg_weights_meta_int(w, ints[k].key, &i))
            fail_msg("%s: no integer", ints[k].key);
        assert_int_equal(i, ints[k].value);
        if (strcmp(ints[k].key, "test.bool") != 0) { /* integers read as floats too */
            assert_true(kg_weights_meta_float(w, ints[k].key, &d));
            assert_true(d == (double)ints[k].value);
        }
    }
    assert_true(kg_weights_meta_float(w, "test.f32", &d));
    assert_true(d == 0.375);
    assert_true(kg_weights_meta_float(w, "test.f64", &d));
    assert_true(d == -2.5e-300);
    assert_true(kg_weights_meta_float(w, "llama.attention.layer_norm_rms_epsilon", &d));
    assert_float_equal(d, 1e-5, 1e-12);
    /* A u64 beyond int64 is a number but not an int64. */
    assert_false(kg_weights_meta_int(w, "test.u64", &i));
    assert_true(kg_weights_meta_float(w, "test.u64", &d));
    assert_true(d == 9223372036854775813.0);
    assert_false(kg_weights_meta_int(w, "test.f32", &i));
    assert_false(kg_weights_meta_int(w, "test.string", &i));
    assert_false(kg_weights_meta_float(w, "test.bool", &d));
    assert_false(kg_weights_meta_int(w, "absent", &i));
    assert_string_equal(kg_weights_meta_str(w, "test.string"), "héllo");
    assert_string_equal(kg_weights_meta_str(w, "general.architecture"), "llama");
    assert_string_equal(kg_weights_meta_str(w, "tokenizer.ggml.model"), "llama");
    assert_null(kg_weights_meta_str(w, "test.u8"));
    assert_int_equal(kg_weights_meta_len(w, "test.u8"), -1);
    /* Arrays: strings (one holds a NUL byte), floats, integers. */
    assert_int_equal(kg_weights_meta_len(w, "tokenizer.ggml.tokens"), 16);
    size_t len;
    const char *s = kg_weights_meta_str_at(w, "tokenizer.ggml.tokens", 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "<s>", 3);
    s = kg_weights_meta_str_at(w, "tokenizer.ggml.tokens", 15, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "\xc3\xa9\0x", 4);
    assert_null(kg_weights_meta_str_at(w, "tokenizer.ggml.tokens", 16, &len));
    assert_null(kg_weights_meta_str_at(w, "tokenizer.ggml.tokens", -1, &len));
    assert_null(kg_weights_meta_str_at(w, "tokenizer.ggml.scores", 0, &len));
    assert_false(kg_weights_meta_num_at(w, "tokenizer.ggml.tokens", 0, &d));
    assert_true(kg_weights_meta_num_at(w, "tokenizer.ggml.scores", 5, &d));
    assert_true(d == -5.0);
    assert_true(kg_weights_meta_num_at(w, "tokenizer.ggml.token_type", 0, &d));
    assert_true(d == 2.0);
    assert_false(kg_weights_meta_num_at(w, "tokenizer.ggml.token_type", 16, &d));
    kg_weights_close(w);
    assert_ok(ctx);
}

/* Nested arrays are read past; types krongrad does not load are refused at load, by name. */
static void test_extras(void **state)
{
    (void)state;
    const char *path = fixture("extras.gguf");
    kg_weights *w = kg_weights_open(ctx, path);
    assert_ok(ctx);
    double d;
    int64_t i;
    assert_int_equal(kg_weights_meta_len(w, "test.nested"), 3);
    assert_false(kg_weights_meta_num_at(w, "test.nested", 0, &d));
    assert_null(kg_weights_meta_str_at(w, "test.nested", 0, NULL));
    assert_true(kg_weights_meta_int(w, "test.after", &i)); /* parsing went on after it */
    assert_int_equal(i, 7);
    assert_int_equal(kg_weights_meta_len(w, "test.strings"), 2);
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    const char *v = "model.layers.0.self_attn.v_proj.weight";
    assert_true(kg_weights_shape(w, v, &ndim, shape));
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 256);
    assert_null(kg_weights_load(w, v, KG_DTYPE_F32, 0, NULL));
    assert_error(KG_ERR_DTYPE, path, v, "Q4_K", "ggml type 12");
    assert_null(kg_weights_load(w, "counts", KG_DTYPE_F32, 0, NULL));
    assert_error(KG_ERR_DTYPE, path, "\"counts\"", "I8");
    kg_weights_close(w);
}

/* ---- Bad files -------------------------------------------------------------------------------- */

/* A valid file of one F32 tensor [2, 3] under a llama architecture: the base of the bad cases. */
static void put_valid(gbuf *b)
{
    put_header(b, 1, 1);
    put_kv_str(b, "general.architecture", "llama");
    put_info(b, "output_norm.weight", 2, (uint64_t[]){3, 2}, 0, 0);
    put_data(b, 32, 24);
}

static void test_built_files(void **state)
{
    (void)state;
    gbuf b;
    put_valid(&b);
    kg_weights *w = kg_weights_open(ctx, gguf_file("ok.gguf", &b));
    assert_ok(ctx);
    float zeros[6] = {0};
    assert_loads(w, "model.norm.weight", KG_DTYPE_F32, zeros, 6, 0);
    kg_weights_close(w);

    /* No tensors, no data section: fine. */
    put_header(&b, 0, 1);
    put_kv_u32(&b, "a", 1);
    w = kg_weights_open(ctx, gguf_file("empty.gguf", &b));
    assert_ok(ctx);
    assert_int_equal(kg_weights_count(w), 0);
    kg_weights_close(w);

    /* Names outside the llama table stay as they are; blk names with other bases too. */
    put_header(&b, 2, 0);
    put_info(&b, "rope_freqs.weight", 1, (uint64_t[]){4}, 0, 0);
    put_info(&b, "blk.3.attn_qkv.weight", 1, (uint64_t[]){4}, 0, 32);
    put_data(&b, 32, 48);
    w = kg_weights_open(ctx, gguf_file("names.gguf", &b));
    assert_ok(ctx);
    assert_true(kg_weights_shape(w, "rope_freqs.weight", NULL, NULL));
    assert_true(kg_weights_shape(w, "blk.3.attn_qkv.weight", NULL, NULL));
    kg_weights_close(w);
}

static void test_bad_files(void **state)
{
    (void)state;
    gbuf b;
    put_valid(&b);
    memcpy(b.data, "GGUX", 4);
    assert_open_fails(gguf_file("magic.gguf", &b), KG_ERR_ARG, "magic");
    put_valid(&b);
    b.data[4] = 4;
    assert_open_fails(gguf_file("version.gguf", &b), KG_ERR_ARG, "version 4");

    put_header(&b, (uint64_t)1 << 62, 0);
    assert_open_fails(gguf_file("tensors.gguf", &b), KG_ERR_RANGE, "tensor count",
                      "4611686018427387904");
    put_header(&b, 0, (uint64_t)1 << 62);
    assert_open_fails(gguf_file("kvs.gguf", &b), KG_ERR_RANGE, "metadata count");

    /* An array of 2^61 u32. */
    put_header(&b, 0, 1);
    put_str(&b, "big.array");
    put_u32(&b, 9);
    put_u32(&b, 4);
    put_u64(&b, (uint64_t)1 << 61);
    assert_open_fails(gguf_file("array.gguf", &b), KG_ERR_RANGE, "\"big.array\"");
    /* A string longer than the file. */
    put_header(&b, 0, 1);
    put_str(&b, "long.string");
    put_u32(&b, 8);
    put_u64(&b, UINT64_MAX);
    assert_open_fails(gguf_file("string.gguf", &b), KG_ERR_RANGE, "\"long.string\"",
                      "truncated");
    /* A key length past the end. */
    put_header(&b, 0, 1);
    put_u64(&b, 1000);
    put_u64(&b, 0);
    assert_open_fails(gguf_file("key.gguf", &b), KG_ERR_RANGE, "metadata entry 0");
    /* Value type 13. */
    put_header(&b, 0, 1);
    put_str(&b, "odd.type");
    put_u32(&b, 13);
    put_u32(&b, 0);
    assert_open_fails(gguf_file("vtype.gguf", &b), KG_ERR_ARG, "\"odd.type\"", "value type 13");
    /* Arrays nested nine deep. */
    put_header(&b, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, 9);
    for (int i = 0; i < 9; i++) {
        put_u32(&b, 9);
        put_u64(&b, 1);
    }
    put_u32(&b, 4);
    put_u64(&b, 0);
    assert_open_fails(gguf_file("deep.gguf", &b), KG_ERR_ARG, "\"deep\"", "nested");
    /* The same key twice. */
    put_header(&b, 0, 2);
    put_kv_u32(&b, "twice", 1);
    put_kv_u32(&b, "twice", 2);
    assert_open_fails(gguf_file("dupkey.gguf", &b), KG_ERR_ARG, "\"twice\"", "twice");
    /* Alignment not a power of two. */
    put_header(&b, 0, 1);
    put_kv_u32(&b, "general.alignment", 48);
    assert_open_fails(gguf_file("align.gguf", &b), KG_ERR_ARG, "general.alignment");

    struct {
        const char *name;
        uint32_t ndim;
        uint64_t ne[5];
        uint32_t type;
        uint64_t offset;
        size_t data;
        kg_status status;
        const char *says;
    } cases[] = {
        {"t.unknown", 1, {4}, 99, 0, 16, KG_ERR_DTYPE, "ggml type 99"},
        {"t.removed", 1, {32}, 4, 0, 32, KG_ERR_DTYPE, "ggml type 4"},
        {"t.dims", 5, {1, 1, 1, 1, 2}, 0, 0, 8, KG_ERR_SHAPE, "5 dimensions"},
        {"t.past", 1, {4}, 0, 32, 16, KG_ERR_RANGE, "outside the data section"},
        {"t.far", 1, {4}, 0, UINT64_MAX - 31, 16, KG_ERR_RANGE, "outside the data section"},
        {"t.misaligned", 1, {2}, 0, 4, 16, KG_ERR_RANGE, "alignment 32"},
        {"t.rows", 2, {40, 1}, 8, 0, 64, KG_ERR_SHAPE, "Q8_0 blocks of 32"},
        {"t.huge", 2, {(uint64_t)1 << 40, (uint64_t)1 << 40}, 0, 0, 16, KG_ERR_SHAPE,
         "overflows"},
        {"t.bigdim", 1, {UINT64_MAX}, 0, 0, 16, KG_ERR_SHAPE, "overflows"},
    };
    char file[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put_header(&b, 1, 0);
        put_info(&b, cases[i].name, cases[i].ndim, cases[i].ne, cases[i].type, cases[i].offset);
        put_data(&b, 32, cases[i].data);
        snprintf(file, sizeof file, "case%zu.gguf", i);
        assert_open_fails(gguf_file(file, &b), cases[i].status, cases[i].name, cases[i].says);
    }
    /* Two tensors with one name; two whose data overlap. */
    put_header(&b, 2, 0);
    put_info(&b, "same", 1, (uint64_t[]){4}, 0, 0);
    put_info(&b, "same", 1, (uint64_t[]){4}, 0, 32);
    put_data(&b, 32, 64);
    assert_open_fails(gguf_file("dupname.gguf", &b), KG_ERR_ARG, "\"same\"", "twice");
    put_header(&b, 2, 0);
    put_info(&b, "first", 1, (uint64_t[]){16}, 0, 0);
    put_info(&b, "second", 1, (uint64_t[]){4}, 0, 32);
    put_data(&b, 32, 64);
    assert_open_fails(gguf_file("overlap.gguf", &b), KG_ERR_RANGE, "\"first\"", "\"second\"");
    /* A NUL byte in a tensor name. */
    put_header(&b, 1, 0);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, 1);
    put_u64(&b, 4);
    put_u32(&b, 0);
    put_u64(&b, 0);
    put_data(&b, 32, 16);
    assert_open_fails(gguf_file("nul.gguf", &b), KG_ERR_ARG, "tensor info 0", "NUL");
}

/* Llama Q/K need head counts that split their rows into heads of an even size. */
static void test_bad_head_counts(void **state)
{
    (void)state;
    gbuf b;
    put_header(&b, 1, 1);
    put_kv_str(&b, "general.architecture", "llama");
    put_info(&b, "blk.0.attn_q.weight", 2, (uint64_t[]){4, 8}, 0, 0);
    put_data(&b, 32, 128);
    assert_open_fails(gguf_file("noheads.gguf", &b), KG_ERR_ARG, "blk.0.attn_q.weight",
                      "llama.attention.head_count");
    put_header(&b, 1, 2);
    put_kv_str(&b, "general.architecture", "llama");
    put_kv_u32(&b, "llama.attention.head_count", 3);
    put_info(&b, "blk.0.attn_q.weight", 2, (uint64_t[]){4, 8}, 0, 0);
    put_data(&b, 32, 128);
    assert_open_fails(gguf_file("heads3.gguf", &b), KG_ERR_SHAPE, "blk.0.attn_q.weight",
                      "llama.attention.head_count");
    /* K without head_count_kv uses head_count (as llama.cpp); its rows move per head. */
    put_header(&b, 1, 2);
    put_kv_str(&b, "general.architecture", "llama");
    put_kv_u32(&b, "llama.attention.head_count", 2);
    put_info(&b, "blk.0.attn_k.weight", 2, (uint64_t[]){1, 8}, 0, 0);
    put_data(&b, 32, 0);
    for (int r = 0; r < 8; r++) { /* file rows h·4 + 2i + j hold HF row h·4 + 2j + i */
        float v = (float)r;
        put(&b, &v, 4);
    }
    kg_weights *w = kg_weights_open(ctx, gguf_file("k.gguf", &b));
    assert_ok(ctx);
    const float want[] = {0, 2, 1, 3, 4, 6, 5, 7};
    assert_loads(w, "model.layers.0.self_attn.k_proj.weight", KG_DTYPE_F32, want, 8, 0);
    kg_weights_close(w);
}

/* Every truncation of the Llama fixture is refused, naming the file: each prefix through the
 * tensor infos, then prefixes every 97 bytes through the data. */
static void test_every_truncation_fails(void **state)
{
    (void)state;
    size_t n;
    uint8_t *data = read_whole(fixture("tiny_llama.gguf"), &n);
    for (size_t cut = 0; cut < n; cut += cut < 2500 ? 1 : 97) {
        const char *path = write_scratch("cut.gguf", data, cut);
        kg_weights *w = kg_weights_open(ctx, path);
        if (w)
            fail_msg("the first %zu of %zu bytes opened", cut, n);
        assert_non_null(strstr(kg_error(ctx), path));
        kg_clear_error(ctx);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_llama_matches_transformers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_of_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extras, setup, teardown),
        cmocka_unit_test_setup_teardown(test_built_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_head_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_fails, setup, teardown),
    };
    formats_main(tests);
}
