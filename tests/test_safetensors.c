/* test_safetensors.c — the safetensors reader and writer (kg_formats.h) against files written by
 * Python's safetensors (tests/fixtures/formats/make_formats.py): values in every dtype and
 * conversion, sharded checkpoints, HF directories, the writer's bytes and atomicity, and bad
 * files, each refused with a status and a message naming the file and the tensor or key.
 */
#include "formats_test.h"

#define N_M (16 * 33)

/* The fixture values, by make_formats.py's formulas. */
static const float A[] = {-1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.25f};
static const float B[] = {0.5f, -1.5f, 2.0f, 65504.0f};
static const float C[] = {1.0f, -2.0f, 0.5f, 3.0f};
static float M[N_M];

static void fill_m(void)
{
    for (int i = 0; i < N_M; i++)
        M[i] = (float)(i % 97) * 0.125f - 6.0f;
}

/* A safetensors file made of an 8-byte length, header, and data_bytes zero bytes. */
static const char *st_file(const char *name, const char *header, size_t data_bytes)
{
    size_t n = strlen(header);
    uint8_t *buf = calloc(1, 8 + n + data_bytes + 1);
    uint64_t len = n;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, header, n);
    const char *path = write_scratch(name, buf, 8 + n + data_bytes);
    free(buf);
    return path;
}

static void test_reads_python_file(void **state)
{
    (void)state;
    fill_m();
    kg_weights *w = kg_weights_open(ctx, fixture("tiny.safetensors"));
    assert_ok(ctx);
    assert_false(kg_weights_is_gguf(w));
    assert_string_equal(kg_weights_path(w), fixture("tiny.safetensors"));
    assert_int_equal(kg_weights_count(w), 8);
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    assert_true(kg_weights_shape(w, "m", &ndim, shape));
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], 16);
    assert_int_equal(shape[1], 33);
    assert_true(kg_weights_shape(w, "s", &ndim, shape));
    assert_int_equal(ndim, 0);
    assert_false(kg_weights_shape(w, "nope", &ndim, shape));
    assert_ok(ctx); /* absent is not an error */
    bool seen_a = false;
    for (int i = 0; i < kg_weights_count(w); i++)
        seen_a |= strcmp(kg_weights_name(w, i), "a") == 0;
    assert_true(seen_a);
    assert_null(kg_weights_name(w, 8));
    /* GGUF metadata getters answer nothing for safetensors, without an error. */
    assert_null(kg_weights_meta_str(w, "format"));
    assert_int_equal(kg_weights_meta_len(w, "format"), -1);

    /* Every file dtype to every float dtype; the values are exact in each. */
    kg_dtype dts[] = {KG_DTYPE_F32, KG_DTYPE_F16, KG_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        assert_loads(w, "a", dts[d], A, 6, 0);
        assert_loads(w, "c", dts[d], C, 4, 0);
        assert_loads(w, "m", dts[d], M, N_M, 0);
    }
    assert_loads(w, "b", KG_DTYPE_F32, B, 4, 0);
    assert_loads(w, "b", KG_DTYPE_F16, B, 4, 0);
    float s = 3.5f;
    assert_loads(w, "s", KG_DTYPE_F32, &s, 1, 0);
    kg_tensor *e = kg_weights_load(w, "e", KG_DTYPE_F32, 2, SHAPE(0, 3));
    assert_non_null(e);
    assert_int_equal(kg_tensor_numel(e), 0);
    assert_int_equal(kg_tensor_dim(e, 1), 3);
    kg_tensor_free(e);

    /* I32 loads as i32, with the expected shape checked. */
    kg_tensor *ids = kg_weights_load(w, "ids", KG_DTYPE_I32, 1, SHAPE(3));
    int32_t got[3];
    assert_true(kg_tensor_to_host(ids, got, sizeof got));
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], -2);
    assert_int_equal(got[2], 30000);
    kg_tensor_free(ids);
    kg_weights_close(w);
}

static void test_chunked_conversion(void **state)
{
    (void)state;
    fill_m();
    kg_weights *w = kg_weights_open(ctx, fixture("tiny.safetensors"));
    for (int64_t chunk = 1; chunk <= 128; chunk *= 8) {
        kg__load_chunk_elems = chunk + 3; /* chunks that do not divide the tensor */
        assert_loads(w, "m", KG_DTYPE_F32, M, N_M, 0);
        assert_loads(w, "m", KG_DTYPE_BF16, M, N_M, 0);
        assert_loads(w, "c", KG_DTYPE_F16, C, 4, 0);
    }
    /* Conversions release their chunks: only the result stays. */
    size_t before, after;
    kg_flush(ctx);
    kg_memory(ctx, &before, NULL);
    kg_tensor *t = kg_weights_load(w, "m", KG_DTYPE_F32, 0, NULL);
    kg_flush(ctx);
    kg_memory(ctx, &after, NULL);
    assert_true(after - before <= N_M * sizeof(float) + 256);
    kg_tensor_free(t);
    kg_weights_close(w);
}

static void test_load_errors_name_the_tensor(void **state)
{
    (void)state;
    const char *path = fixture("tiny.safetensors");
    kg_weights *w = kg_weights_open(ctx, path);
    assert_null(kg_weights_load(w, "nope", KG_DTYPE_F32, 0, NULL));
    assert_error(KG_ERR_ARG, path, "\"nope\"");
    assert_null(kg_weights_load(w, "a", KG_DTYPE_F32, 2, SHAPE(3, 2)));
    assert_error(KG_ERR_SHAPE, path, "\"a\"", "[2, 3]", "[3, 2]");
    assert_null(kg_weights_load(w, "a", KG_DTYPE_F32, 1, SHAPE(6)));
    assert_error(KG_ERR_SHAPE, path, "\"a\"", "[2, 3]", "[6]");
    assert_null(kg_weights_load(w, "big", KG_DTYPE_F32, 0, NULL));
    assert_error(KG_ERR_DTYPE, path, "\"big\"", "I64");
    assert_null(kg_weights_load(w, "ids", KG_DTYPE_F32, 0, NULL));
    assert_error(KG_ERR_DTYPE, path, "\"ids\"", "I32");
    assert_null(kg_weights_load(w, "a", KG_DTYPE_I32, 0, NULL));
    assert_error(KG_ERR_DTYPE, path, "\"a\"", "F32", "i32");
    kg_weights_close(w);
}

static void test_sharded_and_directories(void **state)
{
    (void)state;
    const float x[] = {1, 2, 3, 4}, y[] = {-1, -2}, z[] = {0.25f, 0.5f, 0.75f};
    const char *paths[] = {fixture("sharded"), fixture("sharded/model.safetensors.index.json")};
    for (int p = 0; p < 2; p++) {
        kg_weights *w = kg_weights_open(ctx, paths[p]);
        assert_ok(ctx);
        assert_int_equal(kg_weights_count(w), 3);
        assert_string_equal(kg_weights_name(w, 2), "z.weight"); /* shard order */
        assert_loads(w, "x.weight", KG_DTYPE_F32, x, 4, 0);
        assert_loads(w, "y.bias", KG_DTYPE_F32, y, 2, 0);
        assert_loads(w, "z.weight", KG_DTYPE_F32, z, 3, 0);
        assert_int_equal(w->n_files, 2); /* each shard opened once */
        kg_weights_close(w);
    }
    /* A directory with both prefers model.safetensors (the index here is broken). */
    size_t n;
    uint8_t *tiny = read_whole(fixture("tiny.safetensors"), &n);
    write_scratch("model.safetensors", tiny, n);
    write_scratch("model.safetensors.index.json", "{", 1);
    free(tiny);
    kg_weights *w = kg_weights_open(ctx, scratch);
    assert_ok(ctx);
    assert_loads(w, "a", KG_DTYPE_F32, A, 6, 0);
    kg_weights_close(w);
    unlink(scratch_path("model.safetensors"));
    assert_open_fails(scratch, KG_ERR_ARG, "not a valid JSON index");
    unlink(scratch_path("model.safetensors.index.json"));
    assert_open_fails(scratch, KG_ERR_ARG, "model.safetensors.index.json");
    assert_open_fails(scratch_path("absent.safetensors"), KG_ERR_ARG, "No such file");
}

static void test_bad_index(void **state)
{
    (void)state;
    char shard[600];
    snprintf(shard, sizeof shard, "{\"weight_map\": {\"x.weight\": \"%s\"}}",
             "../formats/sharded/model-00001-of-00002.safetensors");
    assert_open_fails(write_scratch("a.json", shard, strlen(shard)), KG_ERR_ARG,
                      "weight_map[\"x.weight\"]");
    const char *missing = "{\"weight_map\": {\"x.weight\": \"gone.safetensors\"}}";
    assert_open_fails(write_scratch("b.json", missing, strlen(missing)), KG_ERR_ARG,
                      "gone.safetensors");
    const char *none = "{\"metadata\": {}}";
    assert_open_fails(write_scratch("c.json", none, strlen(none)), KG_ERR_ARG, "weight_map");
    /* The index names a tensor its shard does not hold. */
    st_file("s1.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    const char *wrong = "{\"weight_map\": {\"t\": \"s1.safetensors\", \"u\": \"s1.safetensors\"}}";
    assert_open_fails(write_scratch("d.json", wrong, strlen(wrong)), KG_ERR_ARG, "\"u\"",
                      "s1.safetensors");
    /* Two shards holding the same tensor. */
    st_file("s2.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    const char *twice = "{\"weight_map\": {\"t\": \"s1.safetensors\", \"v\": \"s2.safetensors\"}}";
    assert_open_fails(write_scratch("e.json", twice, strlen(twice)), KG_ERR_ARG, "\"t\"",
                      "appears twice");
}

/* Each malformed header is refused with its status, naming the file and the tensor or key. */
static void test_bad_files(void **state)
{
    (void)state;
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assert_open_fails(write_scratch("short", "abc", 3), KG_ERR_RANGE, "3 bytes");
    assert_open_fails(write_scratch("empty", "", 0), KG_ERR_RANGE, "0 bytes");
    uint8_t hdr[16] = {0};
    uint64_t len = 1000;
    memcpy(hdr, &len, 8);
    assert_open_fails(write_scratch("past", hdr, 16), KG_ERR_RANGE, "header length 1000");
    len = 200000000;
    memcpy(hdr, &len, 8);
    assert_open_fails(write_scratch("huge", hdr, 16), KG_ERR_RANGE, "100 MB");
    len = UINT64_MAX;
    memcpy(hdr, &len, 8);
    assert_open_fails(write_scratch("max", hdr, 16), KG_ERR_RANGE, "header length");

    struct {
        const char *header;
        size_t data;
        kg_status status;
        const char *names[3];
    } cases[] = {
        {"{\"w\": {", 0, KG_ERR_ARG, {"not valid JSON"}},
        {"[1, 2]", 0, KG_ERR_ARG, {"not a JSON object"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KG_ERR_ARG,
         {"duplicate", "w"}},
        {"{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KG_ERR_DTYPE,
         {"\"w\"", "F12"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, KG_ERR_SHAPE,
         {"\"w\"", "[0, 12]"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, KG_ERR_SHAPE,
         {"\"w\"", "shape[0]"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, KG_ERR_SHAPE,
         {"\"w\"", "shape[0]"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         KG_ERR_SHAPE, {"\"w\"", "5 dimensions"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
         "\"data_offsets\":[0,8]}}", 8, KG_ERR_SHAPE, {"\"w\""}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, KG_ERR_RANGE,
         {"\"w\"", "outside the data section of 4 bytes"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, KG_ERR_RANGE,
         {"\"w\"", "end before"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, KG_ERR_ARG,
         {"\"w\"", "data_offsets"}},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775807]}}", 8,
         KG_ERR_SHAPE, {"\"w\""}},
        {"{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KG_ERR_ARG,
         {"\"w\"", "dtype"}},
        {"{\"w\":[1]}", 8, KG_ERR_ARG, {"\"w\""}},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, KG_ERR_RANGE,
         {"\"a\"", "\"b\"", "overlaps"}},
        {"{\"__metadata__\":{\"format\":7}}", 0, KG_ERR_ARG, {"__metadata__", "\"format\""}},
        {"{\"__metadata__\":[]}", 0, KG_ERR_ARG, {"__metadata__"}},
    };
    char name[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(name, sizeof name, "case%zu.safetensors", i);
        const char *path = st_file(name, cases[i].header, cases[i].data);
        kg_weights *w = kg_weights_open(ctx, path);
        if (w)
            fail_msg("case %zu opened; expected an error", i);
        assert_error(cases[i].status, path, cases[i].names[0] ? cases[i].names[0] : "",
                     cases[i].names[1] ? cases[i].names[1] : "",
                     cases[i].names[2] ? cases[i].names[2] : "");
    }
    /* Empty tensors overlap nothing; a header padded with spaces is fine. */
    const char *empty = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ";
    kg_weights *w = kg_weights_open(ctx, st_file("empty.safetensors", empty, 8));
    assert_ok(ctx);
    kg_weights_close(w);
    w = kg_weights_open(ctx, st_file("ok.safetensors", ok, 8));
    assert_ok(ctx);
    kg_weights_close(w);
}

/* Every truncation of a valid file is refused, naming the file. */
static void test_every_truncation_fails(void **state)
{
    (void)state;
    size_t n;
    uint8_t *data = read_whole(fixture("tiny.safetensors"), &n);
    for (size_t cut = 0; cut < n; cut++) {
        const char *path = write_scratch("cut.safetensors", data, cut);
        kg_weights *w = kg_weights_open(ctx, path);
        if (w)
            fail_msg("the first %zu of %zu bytes opened", cut, n);
        assert_non_null(strstr(kg_error(ctx), path));
        kg_clear_error(ctx);
    }
    free(data);
}

/* ---- Writer --------------------------------------------------------------------------------- */

static void test_write_round_trip(void **state)
{
    (void)state;
    kg_tensor *a = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3), A);
    kg_tensor *at = kg_transpose(a, 0, 1); /* strided: written in row-major order of [3, 2] */
    kg_tensor *b = kg_cast(kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(4), B), KG_DTYPE_F16);
    kg_tensor *c = kg_cast(kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 2), C), KG_DTYPE_BF16);
    int32_t ids[] = {3, -4, 5};
    kg_tensor *i = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(3), ids);
    kg_tensor *s = kg_full(ctx, KG_DTYPE_F32, 0, NULL, 2.5);
    kg_tensor *e = kg_zeros(ctx, KG_DTYPE_F32, 2, SHAPE(0, 2));
    const char *names[] = {"layer.0.weight", "b", "c", "ids", "scalar", "empty"};
    kg_tensor *ts[] = {at, b, c, i, s, e};
    const char *meta[] = {"format", "pt", "note", "écrit par krongrad", NULL};
    const char *path = scratch_path("out.safetensors");
    assert_true(kg_safetensors_write(ctx, path, 6, names, ts, meta));
    assert_ok(ctx);

    kg_weights *w = kg_weights_open(ctx, path);
    assert_ok(ctx);
    assert_int_equal(kg_weights_count(w), 6);
    for (int k = 0; k < 6; k++)
        assert_string_equal(kg_weights_name(w, k), names[k]); /* in the order given */
    const float at_want[] = {-1.0f, -0.25f, -0.75f, 0.0f, -0.5f, 0.25f};
    assert_loads(w, "layer.0.weight", KG_DTYPE_F32, at_want, 6, 0);
    assert_loads(w, "b", KG_DTYPE_F32, B, 4, 0);
    assert_loads(w, "c", KG_DTYPE_F32, C, 4, 0);
    float sv = 2.5f;
    assert_loads(w, "scalar", KG_DTYPE_F32, &sv, 1, 0);
    kg_tensor *back = kg_weights_load(w, "ids", KG_DTYPE_I32, 1, SHAPE(3));
    int32_t got[3];
    assert_true(kg_tensor_to_host(back, got, sizeof got));
    assert_memory_equal(got, ids, sizeof ids);
    kg_tensor *eb = kg_weights_load(w, "empty", KG_DTYPE_F32, 2, SHAPE(0, 2));
    assert_non_null(eb);
    assert_int_equal(w->entries[1].type->raw, KG_DTYPE_F16); /* dtypes kept */
    assert_int_equal(w->entries[2].type->raw, KG_DTYPE_BF16);
    kg_weights_close(w);

    /* The header: 8-byte aligned, space padded, "__metadata__" first. */
    size_t n;
    uint8_t *raw = read_whole(path, &n);
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    assert_int_equal(hlen % 8, 0);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30);
    free(raw);
}

/* The same tensors safetensors wrote in make_formats.py give the same bytes. */
static void test_write_matches_python(void **state)
{
    (void)state;
    const float wv[] = {0, 0.5f, 1, 1.5f, 2, 2.5f}, gv[] = {0.5f, -0.25f}, hv[] = {1, 2, 3};
    int32_t nv[] = {7, -7};
    kg_tensor *ts[] = {
        kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3), wv),
        kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2), nv),
        kg_cast(kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(1, 2), gv), KG_DTYPE_BF16),
        kg_cast(kg_from_host(ctx, KG_DTYPE_F32, 1, SHAPE(3), hv), KG_DTYPE_F16),
    };
    const char *names[] = {"w", "n", "g", "h"}; /* safetensors' order: by dtype, then name */
    const char *meta[] = {"format", "pt", NULL};
    const char *path = scratch_path("mine.safetensors");
    assert_true(kg_safetensors_write(ctx, path, 4, names, ts, meta));
    size_t n_mine, n_ref;
    uint8_t *mine = read_whole(path, &n_mine);
    uint8_t *ref = read_whole(fixture("python_written.safetensors"), &n_ref);
    assert_int_equal(n_mine, n_ref);
    assert_memory_equal(mine, ref, n_ref);
    free(mine);
    free(ref);
}

static bool scratch_has_temp_files(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    bool found = false;
    while ((e = readdir(d)))
        found |= strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return found;
}

/* A failed write leaves the old file untouched and no temporary file behind. */
static void test_write_is_atomic(void **state)
{
    (void)state;
    kg_tensor *a = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3), A);
    const char *path = scratch_path("keep.safetensors");
    const char *one[] = {"a"};
    assert_true(kg_safetensors_write(ctx, path, 1, one, &a, NULL));
    size_t n0, n1;
    uint8_t *before = read_whole(path, &n0);

    const char *two[] = {"a", "a"};
    kg_tensor *ts[] = {a, a};
    assert_false(kg_safetensors_write(ctx, path, 2, two, ts, NULL));
    assert_error(KG_ERR_ARG, path, "\"a\"", "earlier tensor");
    kg_tensor *none[] = {a, NULL};
    const char *names[] = {"a", "b"};
    assert_false(kg_safetensors_write(ctx, path, 2, names, none, NULL));
    assert_error(KG_ERR_ARG, path, "\"b\"", "NULL");
    const char *reserved[] = {"__metadata__"};
    assert_false(kg_safetensors_write(ctx, path, 1, reserved, &a, NULL));
    assert_error(KG_ERR_ARG, path, "reserved");
    const char *odd_meta[] = {"format", NULL};
    assert_false(kg_safetensors_write(ctx, path, 1, one, &a, odd_meta));
    assert_error(KG_ERR_ARG, path, "\"format\"");
    kg_ctx *other = kg_ctx_new(KG_BACKEND_CPU);
    kg_tensor *foreign = kg_zeros(other, KG_DTYPE_F32, 1, SHAPE(2));
    assert_false(kg_safetensors_write(ctx, path, 1, one, &foreign, NULL));
    assert_error(KG_ERR_ARG, path, "another context");
    kg_ctx_free(other);

    uint8_t *after = read_whole(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);

    /* The rename fails (a directory is in the way): the temporary file is removed. */
    const char *dir = scratch_path("taken");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_false(kg_safetensors_write(ctx, dir, 1, one, &a, NULL));
    assert_error(KG_ERR_ARG, dir, "rename");
    assert_false(scratch_has_temp_files());
    /* No directory to write in. */
    const char *nowhere = scratch_path("no/such/dir.safetensors");
    assert_false(kg_safetensors_write(ctx, nowhere, 1, one, &a, NULL));
    assert_error(KG_ERR_ARG, nowhere, "temporary");
    assert_false(scratch_has_temp_files());
    /* Overwriting works and leaves nothing behind. */
    const float z[] = {0, 0, 0, 0, 0, 0};
    kg_tensor *zt = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(2, 3), z);
    assert_true(kg_safetensors_write(ctx, path, 1, one, &zt, NULL));
    kg_weights *w = kg_weights_open(ctx, path);
    assert_loads(w, "a", KG_DTYPE_F32, z, 6, 0);
    kg_weights_close(w);
    assert_false(scratch_has_temp_files());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_python_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_conversion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors_name_the_tensor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sharded_and_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_matches_python, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_is_atomic, setup, teardown),
    };
    formats_main(tests);
}
