/* test_tokenizer.c — every tokenizer kind against the ids the reference Python tokenizers give
 * (tests/fixtures/tokenizer/reference_ids.json, made by make_fixtures.py) on the tricky strings
 * of strings.json; batches with pairs, truncation and padding; invalid UTF-8; and the errors that
 * malformed files and bad calls give.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "krongrad.h"
#include "models/kg_tokenizer.h"

#define FIX KG_TOKENIZER_FIXTURES

static json_t *refs, *strings;

static kg_tokenizer *load(kg_ctx *ctx, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIX, name);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, path);
    if (!tok)
        fail_msg("%s: %s", name, kg_error(ctx));
    return tok;
}

/* got[0..n) equals the JSON array want, else fail naming what and the first difference. */
static void assert_ids(const int32_t *got, int64_t n, const json_t *want, const char *what,
                       size_t index)
{
    size_t m = json_array_size(want);
    int64_t i = 0;
    while (i < n && (size_t)i < m && got[i] == json_integer_value(json_array_get(want, i)))
        i++;
    if (i == n && (size_t)i == m)
        return;
    char g[256] = "", w[256] = "";
    for (int64_t k = i > 3 ? i - 3 : 0; k < i + 5; k++) {
        if (k < n)
            snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[k]);
        if ((size_t)k < m)
            snprintf(w + strlen(w), sizeof w - strlen(w), " %lld",
                     (long long)json_integer_value(json_array_get(want, k)));
    }
    fail_msg("%s, string %zu %s: ids differ at %lld (of %lld, want %zu): got ...%s; want ...%s",
             what, index, json_dumps(json_array_get(strings, index), JSON_ENCODE_ANY),
             (long long)i, (long long)n, m, g, w);
}

/* The tokenizer at dir/name against the reference cases of name in refs. */
static void check_cases(const json_t *ref, const char *dir, const char *name)
{
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, path);
    if (!tok)
        fail_msg("%s: %s", name, kg_error(ctx));
    const json_t *cases = json_object_get(json_object_get(ref, "tokenizers"), name);
    assert_int_equal(json_array_size(cases), json_array_size(strings));
    size_t i;
    const json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_array_get(strings, i));
        int64_t n;
        int32_t *ids = kg_tokenizer_encode(tok, text, true, &n);
        assert_non_null(ids);
        assert_ids(ids, n, json_object_get(c, "ids"), name, i);
        int32_t *plain = kg_tokenizer_encode(tok, text, false, &n);
        assert_non_null(plain);
        assert_ids(plain, n, json_object_get(c, "ids_no_special"), name, i);
        free(plain);
        n = (int64_t)json_array_size(json_object_get(c, "ids"));
        static const char *const keys[2] = {"decode", "decode_special"};
        for (int k = 0; k < 2; k++) {
            const char *want = json_string_value(json_object_get(c, keys[k]));
            if (!want)
                continue;
            char *back = kg_tokenizer_decode(tok, ids, n, k == 0);
            assert_non_null(back);
            if (strcmp(back, want) != 0)
                fail_msg("%s, string %zu: %s is '%s'; want '%s'", name, i, keys[k], back, want);
            free(back);
        }
        free(ids);
    }
    assert_int_equal(kg_ctx_status(ctx), KG_OK);
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
}

static void check_reference(const char *name)
{
    check_cases(refs, FIX, name);
}

static void test_wordpiece_json(void **s) { (void)s; check_reference("wordpiece.json"); }
static void test_vocab_txt(void **s) { (void)s; check_reference("vocab.txt"); }
static void test_bytelevel_json(void **s) { (void)s; check_reference("bytelevel.json"); }
static void test_spm_legacy_json(void **s) { (void)s; check_reference("spm_legacy.json"); }
static void test_spm_metaspace_json(void **s) { (void)s; check_reference("spm_metaspace.json"); }
static void test_metaspace_split_json(void **s) { (void)s; check_reference("metaspace_split.json"); }
static void test_spm_model(void **s) { (void)s; check_reference("spm.model"); }
static void test_gguf_gpt2(void **s) { (void)s; check_reference("gpt2.gguf"); }
static void test_gguf_llama(void **s) { (void)s; check_reference("llama.gguf"); }

/* Batches: pairs, longest_first truncation and padding, as tokenizer(..., padding=True,
 * truncation=True, max_length=L). */
static void test_batches(void **state)
{
    (void)state;
    const char *key;
    const json_t *list;
    json_object_foreach(json_object_get(refs, "batches"), key, list) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_tokenizer *tok = load(ctx, key);
        if (kg_tokenizer_special(tok, KG_TOKEN_PAD) < 0) /* the reference pads with <unk> */
            assert_true(kg_tokenizer_set_pad(tok, kg_tokenizer_special(tok, KG_TOKEN_UNK)));
        size_t b;
        const json_t *c;
        json_array_foreach(list, b, c) {
            const json_t *texts = json_object_get(c, "texts"), *pairs = json_object_get(c,
                                                                                        "pairs");
            int64_t rows = (int64_t)json_array_size(texts);
            const char *t[8], *p[8];
            for (int64_t r = 0; r < rows; r++) {
                t[r] = json_string_value(json_array_get(texts, (size_t)r));
                p[r] = json_string_value(json_array_get(pairs, (size_t)r));
            }
            kg_encode_opts opts = {.add_special = true,
                                   .max_length = json_integer_value(json_object_get(c,
                                                                                "max_length"))};
            kg_token_batch out;
            if (!kg_tokenizer_encode_batch(tok, rows, t, json_is_array(pairs) ? p : NULL, &opts,
                                           &out))
                fail_msg("%s batch %zu: %s", key, b, kg_error(ctx));
            assert_int_equal(out.rows, rows);
            static const char *const fields[3] = {"ids", "mask", "type_ids"};
            for (int f = 0; f < 3; f++) {
                const int32_t *got = f == 0 ? out.ids : f == 1 ? out.mask : out.type_ids;
                for (int64_t r = 0; r < rows; r++) {
                    char what[96];
                    snprintf(what, sizeof what, "%s batch %zu row %lld %s", key, b,
                             (long long)r, fields[f]);
                    assert_ids(got + r * out.len, out.len,
                               json_array_get(json_object_get(c, fields[f]), (size_t)r), what, 0);
                }
            }
            kg_token_batch_free(&out);
        }
        /* left padding mirrors right padding */
        const char *two[2] = {"hello", "hello world again"};
        kg_encode_opts right = {.add_special = true}, left = {.add_special = true,
                                                              .pad_left = true};
        kg_token_batch r, l;
        assert_true(kg_tokenizer_encode_batch(tok, 2, two, NULL, &right, &r));
        assert_true(kg_tokenizer_encode_batch(tok, 2, two, NULL, &left, &l));
        int64_t pad = r.len - 1;
        while (pad >= 0 && r.mask[pad] == 0)
            pad--;
        pad = r.len - 1 - pad; /* padding ids of row 0 */
        assert_true(pad > 0);
        for (int64_t t = 0; t < r.len; t++) {
            assert_int_equal(l.mask[t], t >= pad);
            if (t >= pad)
                assert_int_equal(l.ids[t], r.ids[t - pad]);
            else
                assert_int_equal(l.ids[t], kg_tokenizer_special(tok, KG_TOKEN_PAD));
        }
        kg_token_batch_free(&r);
        kg_token_batch_free(&l);
        assert_int_equal(kg_ctx_status(ctx), KG_OK);
        kg_tokenizer_free(tok);
        kg_ctx_free(ctx);
    }
}

/* Invalid UTF-8 reads as U+FFFD per maximal invalid sequence (Python's errors="replace"), so
 * it tokenizes as that text does; decoding cut byte sequences gives U+FFFD, never a crash. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const names[] = {"wordpiece.json", "bytelevel.json", "spm_legacy.json",
                                        "spm.model", "gpt2.gguf", "llama.gguf"};
    static const struct { const char *bad, *good; } cases[] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xc3(x", "\xef\xbf\xbd(x"},
        {"\xe2\x82 euro", "\xef\xbf\xbd euro"},
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"\xed\xa0\x80 surrogate", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate"},
        {"\xc0\xaf overlong", "\xef\xbf\xbd\xef\xbf\xbd overlong"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_tokenizer *tok = load(ctx, names[k]);
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            int64_t nb, ng;
            int32_t *b = kg_tokenizer_encode(tok, cases[c].bad, true, &nb);
            int32_t *g = kg_tokenizer_encode(tok, cases[c].good, true, &ng);
            assert_non_null(b);
            assert_non_null(g);
            assert_int_equal(nb, ng);
            assert_memory_equal(b, g, (size_t)nb * sizeof *b);
            free(b);
            free(g);
        }
        /* every single id decodes (byte pieces alone are invalid UTF-8) */
        for (int32_t id = 0; id < kg_tokenizer_vocab_size(tok); id++) {
            char *t = kg_tokenizer_decode(tok, &id, 1, false);
            assert_non_null(t);
            free(t);
        }
        assert_int_equal(kg_ctx_status(ctx), KG_OK);
        kg_tokenizer_free(tok);
        kg_ctx_free(ctx);
    }
}

static void test_specials(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    static const struct {
        const char *file, *kind;
        int32_t ids[KG_TOKEN_COUNT]; /* bos eos pad unk cls sep mask */
        bool bos;
    } want[] = {
        {"wordpiece.json", "wordpiece", {-1, -1, 0, 1, 2, 3, 4}, false},
        {"vocab.txt", "wordpiece", {-1, -1, 0, 1, 2, 3, 4}, false},
        {"bytelevel.json", "bpe (byte-level)", {-1, 0, -1, -1, -1, -1, -1}, false},
        {"spm_legacy.json", "bpe (sentencepiece-style)", {1, 2, -1, 0, -1, -1, -1}, true},
        {"spm.model", "sentencepiece", {1, 2, -1, 0, -1, -1, -1}, true},
        {"gpt2.gguf", "gguf gpt2", {1, 2, -1, -1, -1, -1, -1}, false},
        {"llama.gguf", "gguf llama", {1, 2, -1, 0, -1, -1, -1}, true},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        kg_tokenizer *tok = load(ctx, want[i].file);
        assert_string_equal(kg_tokenizer_kind(tok), want[i].kind);
        for (int s = 0; s < KG_TOKEN_COUNT; s++)
            if (kg_tokenizer_special(tok, (kg_special_token)s) != want[i].ids[s])
                fail_msg("%s: special %d is %d; want %d", want[i].file, s,
                         kg_tokenizer_special(tok, (kg_special_token)s), want[i].ids[s]);
        assert_int_equal(kg_tokenizer_adds_bos(tok), want[i].bos);
        kg_tokenizer_free(tok);
    }
    kg_tokenizer *wp = load(ctx, "wordpiece.json");
    assert_int_equal(kg_tokenizer_vocab_size(wp), 2000);
    assert_string_equal(kg_tokenizer_token(wp, 2), "[CLS]");
    assert_int_equal(kg_tokenizer_token_id(wp, "[SEP]"), 3);
    assert_null(kg_tokenizer_token(wp, 2000));
    assert_int_equal(kg_tokenizer_token_id(wp, "no such token"), -1);
    kg_tokenizer_free(wp);
    kg_tokenizer *sp = load(ctx, "spm.model");
    assert_int_equal(kg_tokenizer_vocab_size(sp), 700);
    assert_string_equal(kg_tokenizer_token(sp, 1), "<s>");
    kg_tokenizer_free(sp);
    assert_int_equal(kg_ctx_status(ctx), KG_OK);
    kg_ctx_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------------ */

static char scratch[256];

static int make_scratch(void **state)
{
    (void)state;
    snprintf(scratch, sizeof scratch, "%s/kg_tok_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(scratch) ? 0 : -1;
}

static int remove_scratch(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loading text as the named file fails, and the error holds the file name and each of the
 * expected fragments. */
static void expect_load_error(const char *name, const char *text, const char *frag1,
                              const char *frag2)
{
    const char *path = write_file(name, text);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, path);
    if (tok)
        fail_msg("%s loaded; expected an error with '%s'", name, frag1);
    assert_int_not_equal(kg_ctx_status(ctx), KG_OK);
    const char *e = kg_error(ctx);
    if (!strstr(e, name) || !strstr(e, frag1) || (frag2 && !strstr(e, frag2)))
        fail_msg("error '%s' lacks '%s' / '%s' / '%s'", e, name, frag1, frag2 ? frag2 : "");
    kg_ctx_free(ctx);
    unlink(path);
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_load_error("tokenizer.json", "{\"model\": ", "not valid JSON", "line 1");
    expect_load_error("tokenizer.json", "[1, 2]", "expected a JSON object", NULL);
    expect_load_error("tokenizer.json", "{}", "model is missing", NULL);
    expect_load_error("tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                      "model.type 'Unigram'", NULL);
    expect_load_error("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}",
                      "model.vocab is missing", NULL);
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}",
                      "model.vocab['a']", "expected an id");
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [\"a b\"]}}",
                      "model.merges[0]", "not in model.vocab");
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                      "[\"a\"]}}", "model.merges[0]", "two tokens");
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                      "model.unk_token '[UNK]' is not in model.vocab", NULL);
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"normalizer\": {\"type\": \"Precompiled\"}}",
                      "normalizer.type 'Precompiled' is not supported", NULL);
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"split\": 3}}",
                      "pre_tokenizer.split", "true or false");
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"post_processor\": {\"type\": \"BertProcessing\", \"cls\": [\"a\", 9],"
                      " \"sep\": [\"a\", 0]}}", "post_processor.cls", "vocabulary");
    expect_load_error("tokenizer.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"decoder\": {\"type\": \"CTC\"}}", "decoder.type 'CTC'", NULL);
    expect_load_error("vocab.txt", "[PAD]\n[UNK]\n[CLS]\nhello\n", "no [SEP] line", NULL);
    expect_load_error("vocab.txt", "[UNK]\n[CLS]\n[SEP]\nbad\xff\n", "line 4", "UTF-8");
    expect_load_error("tokenizer.model", "not a protobuf", "not a sentencepiece model", NULL);

    /* a directory without tokenizer files, and a path that does not exist */
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    assert_null(kg_tokenizer_load(ctx, scratch));
    assert_non_null(strstr(kg_error(ctx), "no tokenizer.json"));
    kg_ctx_free(ctx);
    ctx = kg_ctx_new(KG_BACKEND_CPU);
    assert_null(kg_tokenizer_load(ctx, "/no/such/tokenizer.json"));
    assert_non_null(strstr(kg_error(ctx), "/no/such/tokenizer.json"));
    kg_ctx_free(ctx);
}

/* A directory: tokenizer.json first, and tokenizer_config.json naming the special tokens. */
static void test_directory(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s/spm_legacy.json' '%s/tokenizer.json' && cp '%s/spm.model' "
             "'%s/tokenizer.model'", FIX, scratch, FIX, scratch);
    assert_int_equal(system(cmd), 0);
    /* transformers writes model_max_length = int(1e30) when a model sets none: it must load. */
    write_file("tokenizer_config.json", "{\"pad_token\": {\"content\": \"</s>\"}, "
               "\"model_max_length\": 1000000000000000019884624838656}");
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, scratch);
    assert_non_null(tok);
    assert_string_equal(kg_tokenizer_kind(tok), "bpe (sentencepiece-style)");
    assert_int_equal(kg_tokenizer_special(tok, KG_TOKEN_PAD), 2);
    kg_tokenizer_free(tok);
    /* tokenizer.model with add_bos_token false, add_eos_token true */
    snprintf(cmd, sizeof cmd, "%s/tokenizer.json", scratch);
    unlink(cmd);
    write_file("tokenizer_config.json", "{\"add_bos_token\": false, \"add_eos_token\": true}");
    tok = kg_tokenizer_load(ctx, scratch);
    assert_non_null(tok);
    assert_string_equal(kg_tokenizer_kind(tok), "sentencepiece");
    int64_t n;
    int32_t *ids = kg_tokenizer_encode(tok, "hello", true, &n);
    assert_true(n >= 2);
    assert_int_not_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    assert_false(kg_tokenizer_adds_bos(tok));
    free(ids);
    kg_tokenizer_free(tok);
    write_file("tokenizer_config.json", "{\"add_bos_token\": ");
    assert_null(kg_tokenizer_load(ctx, scratch));
    assert_non_null(strstr(kg_error(ctx), "tokenizer_config.json"));
    kg_ctx_free(ctx);
}

static void test_bad_calls(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tokenizer *tok = load(ctx, "wordpiece.json");
    int32_t bad[3] = {5, 2000, 7};
    assert_null(kg_tokenizer_decode(tok, bad, 3, false));
    assert_non_null(strstr(kg_error(ctx), "id 1 is 2000"));
    kg_clear_error(ctx);
    const char *texts[2] = {"a b c d e f", "x"};
    kg_token_batch out;
    kg_encode_opts opts = {.add_special = true, .max_length = 1};
    assert_false(kg_tokenizer_encode_batch(tok, 2, texts, NULL, &opts, &out));
    assert_non_null(strstr(kg_error(ctx), "max_length 1"));
    assert_null(out.ids);
    kg_clear_error(ctx);
    kg_tokenizer_free(tok);
    /* no pad token: rows of one length need none, rows of different lengths fail */
    tok = load(ctx, "bytelevel.json");
    opts = (kg_encode_opts){.add_special = true};
    const char *same[2] = {"x", "y"};
    assert_true(kg_tokenizer_encode_batch(tok, 2, same, NULL, &opts, &out));
    assert_int_equal(out.len, 1);
    kg_token_batch_free(&out);
    assert_false(kg_tokenizer_encode_batch(tok, 2, texts, NULL, &opts, &out));
    assert_non_null(strstr(kg_error(ctx), "no pad token"));
    kg_clear_error(ctx);
    assert_false(kg_tokenizer_set_pad(tok, -1));
    kg_clear_error(ctx);
    int64_t n = -1;
    int32_t *ids = kg_tokenizer_encode(tok, "", true, &n);
    assert_non_null(ids);
    assert_int_equal(n, 0);
    free(ids);
    char *empty = kg_tokenizer_decode(tok, NULL, 0, true);
    assert_string_equal(empty, "");
    free(empty);
    assert_null(kg_tokenizer_encode(tok, NULL, true, &n));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_ARG);
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
}

/* A word of 10^5 letters without spaces (one BPE word for SentencePiece-style tokenizers) must
 * not take quadratic time. */
static void test_long_text(void **state)
{
    (void)state;
    size_t n = 100000;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = "abcdefghij"[(i * 7 + i / 13) % 10];
    text[n] = 0;
    static const char *const names[] = {"spm_legacy.json", "bytelevel.json", "llama.gguf",
                                        "wordpiece.json"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_tokenizer *tok = load(ctx, names[k]);
        int64_t m;
        int32_t *ids = kg_tokenizer_encode(tok, text, false, &m);
        assert_non_null(ids);
        assert_true(m > 0);
        char *back = kg_tokenizer_decode(tok, ids, m, true);
        if (k < 3)
            assert_string_equal(back, text);
        free(back);
        free(ids);
        kg_tokenizer_free(tok);
        kg_ctx_free(ctx);
    }
    free(text);
}

/* ---- the real tokenizers (`test_tokenizer real`, suite 'real') ---------------------------- */

static char models_dir[1024];

static void test_real(void **state)
{
    const char *name = *state;
    check_cases(refs, models_dir, name);
}

/* real_ids.json's tokenizers, from $KG_MODELS (scripts/fetch-models.sh); 77 when absent. */
static int run_real(void)
{
    const char *env = getenv("KG_MODELS"), *home = getenv("HOME");
    if (env && *env)
        snprintf(models_dir, sizeof models_dir, "%s", env);
    else
        snprintf(models_dir, sizeof models_dir, "%s/.cache/krongrad/models", home ? home : ".");
    struct CMUnitTest tests[8];
    size_t n = 0;
    const char *key;
    const json_t *v;
    json_object_foreach(json_object_get(refs, "tokenizers"), key, v) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", models_dir, key);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "test_tokenizer: %s is missing; run ./scripts/fetch-models.sh "
                            "(skipped)\n", path);
            return 77;
        }
        if (n < 8)
            tests[n++] = (struct CMUnitTest){key, test_real, NULL, NULL, (void *)key};
    }
    return _cmocka_run_group_tests("real tokenizers", tests, n, NULL, NULL);
}

int main(int argc, char **argv)
{
    bool real = argc > 1 && strcmp(argv[1], "real") == 0;
    json_error_t e;
    refs = json_load_file(real ? FIX "/real_ids.json" : FIX "/reference_ids.json", 0, &e);
    strings = json_load_file(FIX "/strings.json", 0, &e);
    if (!refs || !strings) {
        fprintf(stderr, "test_tokenizer: %s: %s\n", FIX, e.text);
        return 1;
    }
    if (real) {
        int rc = run_real();
        json_decref(refs);
        json_decref(strings);
        return rc;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordpiece_json),
        cmocka_unit_test(test_vocab_txt),
        cmocka_unit_test(test_bytelevel_json),
        cmocka_unit_test(test_spm_legacy_json),
        cmocka_unit_test(test_spm_metaspace_json),
        cmocka_unit_test(test_metaspace_split_json),
        cmocka_unit_test(test_spm_model),
        cmocka_unit_test(test_gguf_gpt2),
        cmocka_unit_test(test_gguf_llama),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test_setup_teardown(test_bad_files, make_scratch, remove_scratch),
        cmocka_unit_test_setup_teardown(test_directory, make_scratch, remove_scratch),
    };
    int failed = cmocka_run_group_tests_name("tokenizers", tests, NULL, NULL);
    json_decref(refs);
    json_decref(strings);
    return failed;
}
