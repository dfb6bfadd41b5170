/* test_tasks.c — multiple-choice task files and lm-evaluation-harness's requests: the sample
 * files of tests/fixtures/tasks (every layout; BOM, CRLF, blank lines, numeric labels, 3 and 5
 * choices, HellaSwag tags, WinoGrande punctuation after the blank) give exactly the requests,
 * acc_norm lengths, gold indices and acc / acc_norm that lm-eval 0.4.13 gave on them
 * (refs.json, made by make_task_refs.py); the token ids of a request match lm-eval's
 * _encode_pair under a toy tokenizer; every malformed input is an error naming file, line and
 * field; and the generated task is deterministic, learnable by its rule and round-trips.
 */
#include "kg_test.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

static kg_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = kg_ctx_new(KG_BACKEND_CPU);
    return ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kg_ctx_free(ctx);
    return 0;
}

static json_t *load_refs(void)
{
    json_error_t err;
    json_t *refs = json_load_file(KG_TASK_FIXTURES "/refs.json", 0, &err);
    if (!refs)
        fail_msg("refs.json: %s (line %d)", err.text, err.line);
    return refs;
}

static void assert_str(const char *got, const char *want, const char *what, int64_t i, int k)
{
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s, item %lld, choice %d:\n  got  \"%s\"\n  want \"%s\"", what, (long long)i,
                 k, got ? got : "(NULL)", want);
}

/* ---- Requests, lengths, gold and metrics against lm-eval --------------------------------- */

/* The kind each file should come out as (detected or named). */
static const char *expected_kind(const char *path, const char *lm_task)
{
    if (strncmp(path, "plain/", 6) == 0)
        return "plain";
    if (strncmp(lm_task, "arc_", 4) == 0)
        return "arc";
    return lm_task;
}

static void check_file(const json_t *f)
{
    const char *rel = json_string_value(json_object_get(f, "path"));
    const char *name = json_string_value(json_object_get(f, "task")); /* NULL: detect */
    const char *lm_task = json_string_value(json_object_get(f, "lm_eval_task"));
    const json_t *items = json_object_get(f, "items");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", KG_TASK_FIXTURES, rel);

    kg_task *task = kg_task_read(ctx, name, path);
    if (!task)
        fail_msg("%s: %s", rel, kg_error(ctx));
    assert_string_equal(kg_task_kind_name(task->kind), expected_kind(rel, lm_task));
    if (name)
        assert_string_equal(task->name, name);
    assert_int_equal(task->n_items, json_array_size(items));
    int64_t unlabeled = 0;
    for (int64_t i = 0; i < task->n_items; i++) {
        const kg_mc_item *it = &task->items[i];
        const json_t *ref = json_array_get(items, (size_t)i);
        const json_t *reqs = json_object_get(ref, "requests");
        const json_t *lens = json_object_get(ref, "norm_len");
        const json_t *lls = json_object_get(ref, "lls");
        int gold = (int)json_integer_value(json_object_get(ref, "gold"));
        unlabeled += gold < 0;
        if (it->gold != gold)
            fail_msg("%s item %lld: gold %d; lm-eval says %d", rel, (long long)i, it->gold, gold);
        assert_int_equal(it->n_choices, json_array_size(reqs));

        kg_mc_pairs *p = kg_mc_decoder_requests(ctx, task->kind, it);
        if (!p)
            fail_msg("%s item %lld: %s", rel, (long long)i, kg_error(ctx));
        assert_int_equal(p->n, it->n_choices);
        double ll[KG_MC_MAX_CHOICES];
        for (int k = 0; k < p->n; k++) {
            const json_t *r = json_array_get(reqs, (size_t)k);
            assert_str(p->first[k], json_string_value(json_array_get(r, 0)), rel, i, k);
            assert_str(p->second[k], json_string_value(json_array_get(r, 1)), rel, i, k);
            if (p->norm_len[k] != json_integer_value(json_array_get(lens, (size_t)k)))
                fail_msg("%s item %lld choice %d: norm_len %lld; lm-eval divides by %lld", rel,
                         (long long)i, k, (long long)p->norm_len[k],
                         (long long)json_integer_value(json_array_get(lens, (size_t)k)));
            ll[k] = json_number_value(json_array_get(lls, (size_t)k));
        }
        /* acc and acc_norm on made-up log-likelihoods, as lm-eval's process_results. */
        int pred = kg_mc_argmax(ll, p->n), pred_norm = kg_mc_argmax_norm(ll, p->norm_len, p->n);
        assert_int_equal(pred, json_integer_value(json_object_get(ref, "pred")));
        assert_int_equal(pred_norm, json_integer_value(json_object_get(ref, "pred_norm")));
        if (gold >= 0) {
            assert_true((pred == gold) == (json_number_value(json_object_get(ref, "acc")) == 1.0));
            const json_t *an = json_object_get(ref, "acc_norm");
            if (json_is_number(an))
                assert_true((pred_norm == gold) == (json_number_value(an) == 1.0));
        }
        kg_mc_pairs_free(p);
    }
    assert_int_equal(task->n_unlabeled, unlabeled);
    kg_task_free(task);
    assert_ok(ctx);
}

static void test_requests_match_lm_eval(void **state)
{
    (void)state;
    json_t *refs = load_refs();
    const json_t *files = json_object_get(refs, "files");
    assert_true(json_array_size(files) >= 13);
    for (size_t i = 0; i < json_array_size(files); i++)
        check_file(json_array_get(files, i));
    json_decref(refs);
}

/* ---- Token ids of a request (lm-eval's _encode_pair, toy tokenizer) ----------------------- */

typedef struct toy_tokenizer {
    const char *vocab[64];
    int n;
    int calls_left; /* fail (return NULL) when it reaches 0; -1: never */
} toy_tokenizer;

/* make_task_refs.py's toy_encode: greedy longest match, the first of equal length wins; any
 * other byte b is 1000 + b. */
static int32_t *toy_encode(void *tokp, const char *text, int64_t *n)
{
    toy_tokenizer *tok = tokp;
    if (tok->calls_left == 0)
        return NULL;
    if (tok->calls_left > 0)
        tok->calls_left--;
    size_t len = strlen(text);
    int32_t *ids = malloc((len + 1) * sizeof(int32_t));
    *n = 0;
    for (size_t i = 0; i < len;) {
        int best = -1;
        size_t best_len = 0;
        for (int v = 0; v < tok->n; v++) {
            size_t tl = strlen(tok->vocab[v]);
            if (tl > best_len && strncmp(text + i, tok->vocab[v], tl) == 0) {
                best = v;
                best_len = tl;
            }
        }
        if (best < 0) {
            ids[(*n)++] = 1000 + (unsigned char)text[i];
            i++;
        } else {
            ids[(*n)++] = best;
            i += best_len;
        }
    }
    return ids;
}

static void assert_ids(const int32_t *got, int64_t n, const json_t *want, const char *what,
                       size_t c)
{
    if ((size_t)n != json_array_size(want))
        fail_msg("case %zu: %s has %lld ids; lm-eval has %zu", c, what, (long long)n,
                 json_array_size(want));
    for (int64_t i = 0; i < n; i++)
        if (got[i] != json_integer_value(json_array_get(want, (size_t)i)))
            fail_msg("case %zu: %s[%lld] = %d; lm-eval has %lld", c, what, (long long)i, got[i],
                     (long long)json_integer_value(json_array_get(want, (size_t)i)));
}

static void test_encode_request_matches_lm_eval(void **state)
{
    (void)state;
    json_t *refs = load_refs();
    toy_tokenizer tok = {.calls_left = -1};
    const json_t *vocab = json_object_get(refs, "toy_vocab");
    for (size_t v = 0; v < json_array_size(vocab); v++)
        tok.vocab[tok.n++] = json_string_value(json_array_get(vocab, v));
    const json_t *cases = json_object_get(refs, "encode");
    assert_true(json_array_size(cases) >= 12);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        const json_t *e = json_array_get(cases, c);
        int32_t *ci, *ki;
        int64_t nc, nk;
        bool ok = kg_mc_encode_request(
            ctx, toy_encode, &tok, (int32_t)json_integer_value(json_object_get(e, "bos")),
            (int32_t)json_integer_value(json_object_get(e, "prefix")),
            json_string_value(json_object_get(e, "context")),
            json_string_value(json_object_get(e, "continuation")), &ci, &nc, &ki, &nk);
        if (!ok)
            fail_msg("case %zu: %s", c, kg_error(ctx));
        assert_non_null(ci);
        assert_non_null(ki);
        assert_ids(ci, nc, json_object_get(e, "ctx_ids"), "context", c);
        assert_ids(ki, nk, json_object_get(e, "cont_ids"), "continuation", c);
        free(ci);
        free(ki);
    }
    /* A BOS the text's own encoding already starts with is not doubled. */
    tok.vocab[tok.n++] = "<s>";
    int32_t bos = tok.n - 1, *ci, *ki;
    int64_t nc, nk;
    assert_true(kg_mc_encode_request(ctx, toy_encode, &tok, bos, bos, "<s>ab", "ba", &ci, &nc,
                                     &ki, &nk));
    assert_int_equal(nc, 2);
    assert_int_equal(ci[0], bos);
    assert_int_equal(ci[1], 12);
    assert_int_equal(nk, 1);
    assert_int_equal(ki[0], 13);
    free(ci);
    free(ki);
    /* A tokenizer that fails, at the first and at the second call. */
    for (int calls = 0; calls < 2; calls++) {
        tok.calls_left = calls;
        ci = ki = (int32_t *)&tok;
        assert_false(kg_mc_encode_request(ctx, toy_encode, &tok, -1, 0, "ab", "ba", &ci, &nc,
                                          &ki, &nk));
        assert_null(ci);
        assert_null(ki);
        assert_non_null(strstr(kg_error(ctx), "tokenizer failed"));
        kg_clear_error(ctx);
    }
    json_decref(refs);
}

/* ---- Errors ------------------------------------------------------------------------------ */

static char dir[64];

static const char *write_file(const char *name, const char *bytes, size_t len)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    return path;
}

/* Read name (written with text) as task; expect an error whose message contains want. */
static void expect_read_error(const char *task, const char *name, const char *text,
                              const char *want)
{
    const char *path = write_file(name, text, strlen(text));
    kg_task *t = kg_task_read(ctx, task, path);
    if (t)
        fail_msg("%s: read %lld items; expected the error \"%s\"", name, (long long)t->n_items,
                 want);
    if (!strstr(kg_error(ctx), want))
        fail_msg("%s: error\n  \"%s\"\ndoes not contain\n  \"%s\"", name, kg_error(ctx), want);
    if (!strstr(kg_error(ctx), name))
        fail_msg("error \"%s\" does not name the file %s", kg_error(ctx), name);
    kg_clear_error(ctx);
    unlink(path);
}

#define ARC_LINE(key)                                                                          \
    "{\"id\": \"x\", \"question\": {\"stem\": \"Q?\", \"choices\": [{\"text\": \"a\", "        \
    "\"label\": \"A\"}, {\"text\": \"b\", \"label\": \"B\"}, {\"text\": \"c\", \"label\": "   \
    "\"C\"}, {\"text\": \"d\", \"label\": \"D\"}]}, \"answerKey\": " key "}\n"
#define HS_LINE(label)                                                                         \
    "{\"activity_label\": \"A\", \"ctx_a\": \"B.\", \"ctx_b\": \"c\", \"endings\": [\"1\", "   \
    "\"2\", \"3\", \"4\"], \"label\": " label "}\n"
#define WG_LINE(sentence, answer)                                                              \
    "{\"sentence\": \"" sentence "\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": "    \
    answer "}\n"
#define PIQA_LINE "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n"
#define SIQA_LINE(label)                                                                       \
    "{\"context\": \"c\", \"question\": \"q\", \"answerA\": \"a\", \"answerB\": \"b\", "       \
    "\"answerC\": \"d\", \"label\": " label "}\n"
#define CSQA_LINE(concept)                                                                     \
    "{\"question\": \"q\", \"question_concept\": " concept ", \"choices\": {\"label\": "     \
    "[\"A\", \"B\"], \"text\": [\"x\", \"y\"]}, \"answerKey\": \"C\"}\n"

static void test_malformed_files(void **state)
{
    (void)state;
    /* Empty, or nothing but blank lines (CRLF too). */
    expect_read_error(NULL, "empty.jsonl", "", "empty.jsonl has no items");
    expect_read_error(NULL, "blank.jsonl", "\n  \r\n\t\n", "blank.jsonl has no items");
    expect_read_error(NULL, "bom_only.jsonl", "\xEF\xBB\xBF\r\n", "has no items");
    /* Invalid JSON, counted on the file's own lines (blank lines count). */
    expect_read_error(NULL, "bad.jsonl", ARC_LINE("\"A\"") "\n{\"id\": \n",
                      "bad.jsonl line 3: invalid JSON");
    expect_read_error(NULL, "dup.jsonl", "{\"goal\": \"g\", \"goal\": \"h\"}\n",
                      "line 1: invalid JSON: duplicate object key");
    static const char nul[] = "{\"goal\": \"g\0\"}\n";
    assert_null(kg_task_read(ctx, NULL, write_file("nul.jsonl", nul, sizeof nul - 1)));
    assert_non_null(strstr(kg_error(ctx), "nul.jsonl line 1: invalid JSON"));
    kg_clear_error(ctx);
    expect_read_error(NULL, "array.jsonl", "[1, 2]\n",
                      "line 1: a JSON array; expected one JSON object per line");
    expect_read_error(NULL, "unknown.jsonl", "{\"text\": \"hello\"}\n",
                      "line 1: no known layout has these fields");
    /* Fields. */
    expect_read_error(NULL, "dev.jsonl", ARC_LINE("\"A\"") ARC_LINE("\"F\""),
                      "dev.jsonl line 2: field \"answerKey\" is \"F\"; expected one of the "
                      "labels A, B, C, D");
    expect_read_error(NULL, "arc_int.jsonl", ARC_LINE("2"),
                      "line 1: field \"answerKey\" is 2; expected one of the labels A, B, C, D");
    expect_read_error(NULL, "nostem.jsonl",
                      "{\"question\": {\"choices\": [{\"text\": \"a\", \"label\": \"A\"}, "
                      "{\"text\": \"b\", \"label\": \"B\"}]}, \"answerKey\": \"A\"}\n",
                      "line 1: field \"question.stem\" is missing; expected a string");
    expect_read_error(NULL, "duplabel.jsonl",
                      "{\"question\": {\"stem\": \"q\", \"choices\": [{\"text\": \"a\", \"label\": "
                      "\"A\"}, {\"text\": \"b\", \"label\": \"A\"}]}, \"answerKey\": \"A\"}\n",
                      "field \"question.choices[1].label\" is \"A\"; expected a label no other "
                      "choice of the item has");
    expect_read_error(NULL, "notext.jsonl",
                      "{\"question\": {\"stem\": \"q\", \"choices\": [{\"text\": 5, \"label\": "
                      "\"A\"}, {\"text\": \"b\", \"label\": \"B\"}]}}\n",
                      "field \"question.choices[0].text\" is 5; expected a string");
    expect_read_error(NULL, "second.jsonl", ARC_LINE("\"A\"") "{\"question\": \"Q?\"}\n",
                      "line 2: field \"question\" is \"Q?\"; expected an object");
    expect_read_error(NULL, "hf_labels.jsonl",
                      "{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": "
                      "[\"A\"]}, \"answerKey\": \"A\"}\n",
                      "field \"choices.label\" is an array; expected an array of 2 strings, as "
                      "choices.text");
    expect_read_error(NULL, "hs.jsonl", HS_LINE("7"),
                      "line 1: field \"label\" is 7; expected an integer from 0 to 3 (or a string "
                      "of one)");
    expect_read_error(NULL, "hs_real.jsonl", HS_LINE("1.5"), "field \"label\" is 1.5; expected");
    expect_read_error(NULL, "hs_str.jsonl", HS_LINE("\"x\""), "field \"label\" is \"x\"; expected");
    expect_read_error(NULL, "hs_ctxb.jsonl",
                      "{\"activity_label\": \"A\", \"ctx_a\": \"B.\", \"endings\": [\"1\", \"2\"]}\n",
                      "field \"ctx_b\" is missing; expected a string");
    expect_read_error(NULL, "hs_one.jsonl",
                      "{\"activity_label\": \"A\", \"ctx_a\": \"B.\", \"ctx_b\": \"\", "
                      "\"endings\": [\"1\"]}\n",
                      "field \"endings\" is an array of 1; expected an array of 2 to 26 strings");
    expect_read_error(NULL, "wg0.jsonl", WG_LINE("No blank here.", "\"1\""),
                      "line 1: field \"sentence\" is \"No blank here.\"; expected a sentence "
                      "with exactly one blank '_'");
    expect_read_error(NULL, "wg2.jsonl", WG_LINE("_ and _.", "\"1\""),
                      "field \"sentence\" is \"_ and _.\"; expected a sentence with exactly one");
    expect_read_error(NULL, "wg_ans.jsonl", WG_LINE("A _ b.", "\"3\""),
                      "field \"answer\" is \"3\"; expected the string \"1\" or \"2\"");
    expect_read_error(NULL, "wg_int.jsonl", WG_LINE("A _ b.", "1"),
                      "field \"answer\" is 1; expected the string \"1\" or \"2\"");
    expect_read_error(NULL, "piqa_sol.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\"}\n",
                      "field \"sol2\" is missing; expected a string");
    expect_read_error(NULL, "piqa_lab.jsonl",
                      "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}\n",
                      "field \"label\" is 2; expected an integer from 0 to 1");
    expect_read_error(NULL, "plain1.jsonl", "{\"question\": \"q\", \"choices\": [\"a\"]}\n",
                      "field \"choices\" is an array of 1; expected an array of 2 to 26 strings");
    expect_read_error(NULL, "plain_ans.jsonl",
                      "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": \"a\"}\n",
                      "field \"answer\" is \"a\"; expected an integer from 0 to 1");
    expect_read_error(NULL, "lt.jsonl", "{\"question\": \"q\", \"options\": \"A. x\\nB. y\", "
                      "\"answer\": \"C. z\"}\n",
                      "field \"answer\" is \"C. z\"; expected one of the options");
    expect_read_error(NULL, "lt_opts.jsonl", "{\"question\": \"q\", \"options\": \"x or y\"}\n",
                      "field \"options\" is \"x or y\"; expected options");
    expect_read_error(NULL, "siqa_lab.jsonl", SIQA_LINE("\"4\""),
                      "line 1: field \"label\" is \"4\"; expected \"1\", \"2\" or \"3\"");
    expect_read_error(NULL, "siqa_lab0.jsonl", SIQA_LINE("0"), "field \"label\" is 0; expected");
    expect_read_error(NULL, "siqa_c.jsonl",
                      "{\"context\": \"c\", \"question\": \"q\", \"answerA\": \"a\", "
                      "\"answerB\": \"b\"}\n", "field \"answerC\" is missing; expected a string");
    expect_read_error(NULL, "siqa_ctx.jsonl",
                      "{\"context\": 1, \"question\": \"q\", \"answerA\": \"a\"}\n",
                      "line 1: field \"context\" is 1; expected a string");
    expect_read_error(NULL, "csqa_key.jsonl", CSQA_LINE("\"x\""),
                      "line 1: field \"answerKey\" is \"C\"; expected one of the labels A, B");
    expect_read_error(NULL, "lt_passage.jsonl", "{\"passage\": 3, \"question\": \"q\", "
                      "\"options\": \"A. x\\nB. y\"}\n",
                      "field \"passage\" is 3; expected a string");
    /* A task name that does not fit the file, or the item. */
    expect_read_error("social_iqa", "lt_siqa.jsonl", "{\"question\": \"q\", \"options\": "
                      "\"A. x\\nB. y\\nC. z\"}\n",
                      "line 1: field \"passage\" is missing; expected a string: the context "
                      "social_iqa's prompt starts with");
    expect_read_error("commonsense_qa", "csqa_as_arc.jsonl", ARC_LINE("\"A\""),
                      "line 1: the fields are those of AI2's ARC/OpenBookQA JSONL");
    expect_read_error("piqa", "siqa_as_piqa.jsonl", SIQA_LINE("\"1\""),
                      "line 1: the fields are those of SIQA");
    expect_read_error("hellaswag", "arc_as_hs.jsonl", ARC_LINE("\"A\""),
                      "line 1: the fields are those of AI2's ARC/OpenBookQA JSONL");
    expect_read_error("piqa", "lt4.jsonl", "{\"question\": \"q\", \"options\": \"A. w\\nB. x\\nC. "
                      "y\\nD. z\"}\n", "line 1: the item has 4 options; expected 2 for piqa");
    /* A line over the limit. */
    size_t big = KG_TASK_MAX_LINE + 10;
    char *long_line = malloc(big + 1);
    memset(long_line, ' ', big);
    long_line[big] = 0;
    expect_read_error(NULL, "long.jsonl", long_line, "line 1: longer than 1048576 bytes");
    free(long_line);
}

static void test_names_and_files(void **state)
{
    (void)state;
    static const char *names[] = {"arc-easy", "arc-challenge", "openbookqa", "piqa",
                                  "hellaswag", "winogrande", "plain", "synthetic-lang",
                                  "commonsense_qa", "commonsenseqa", "csqa", "social_iqa",
                                  "siqa"};
    static const kg_task_kind kinds[] = {KG_TASK_ARC, KG_TASK_ARC, KG_TASK_OPENBOOKQA,
                                         KG_TASK_PIQA, KG_TASK_HELLASWAG, KG_TASK_WINOGRANDE,
                                         KG_TASK_PLAIN, KG_TASK_PLAIN, KG_TASK_COMMONSENSEQA,
                                         KG_TASK_COMMONSENSEQA, KG_TASK_COMMONSENSEQA,
                                         KG_TASK_SIQA, KG_TASK_SIQA};
    assert_string_equal(kg_task_kind_name(KG_TASK_COMMONSENSEQA), "commonsense_qa");
    assert_string_equal(kg_task_kind_name(KG_TASK_SIQA), "social_iqa");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        kg_task_kind k;
        assert_true(kg_task_kind_from_name(names[i], &k));
        assert_int_equal(k, kinds[i]);
    }
    kg_task_kind k;
    assert_false(kg_task_kind_from_name("mmlu", &k));
    assert_null(kg_task_read(ctx, "mmlu", "x.jsonl"));
    assert_non_null(strstr(kg_error(ctx), "unknown task 'mmlu'; expected arc-easy"));
    kg_clear_error(ctx);
    assert_null(kg_task_read(ctx, "piqa", NULL));
    assert_non_null(strstr(kg_error(ctx), "no file given"));
    kg_clear_error(ctx);
    assert_null(kg_task_read(ctx, NULL, "/nonexistent/dev.jsonl"));
    assert_non_null(strstr(kg_error(ctx), "cannot open /nonexistent/dev.jsonl"));
    kg_clear_error(ctx);
    /* A context already in error reads nothing. */
    kg_set_error(ctx, KG_ERR_ARG, "earlier");
    assert_null(kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/piqa/dev.jsonl"));
    assert_string_equal(kg_error(ctx), "earlier");
    kg_clear_error(ctx);
}

/* PIQA's labels beside the JSONL: counts, values, and agreement with an inline label. */
static void test_label_files(void **state)
{
    (void)state;
    const char *lst = "0\r\n1\n\n";
    write_file("p-labels.lst", lst, strlen(lst));
    const char *path = write_file("p.jsonl", PIQA_LINE PIQA_LINE, 2 * strlen(PIQA_LINE));
    kg_task *t = kg_task_read(ctx, NULL, path);
    assert_non_null(t);
    assert_int_equal(t->n_items, 2);
    assert_int_equal(t->items[0].gold, 0);
    assert_int_equal(t->items[1].gold, 1);
    assert_int_equal(t->n_unlabeled, 0);
    kg_task_free(t);
    /* Without a labels file, the items are unlabeled (a test split) but readable. */
    t = kg_task_read(ctx, "piqa", write_file("q.jsonl", PIQA_LINE, strlen(PIQA_LINE)));
    assert_non_null(t);
    assert_int_equal(t->items[0].gold, -1);
    assert_int_equal(t->n_unlabeled, 1);
    kg_task_free(t);

    write_file("r-labels.lst", "0\n1\n0\n", 6);
    expect_read_error(NULL, "r.jsonl", PIQA_LINE PIQA_LINE,
                      "r-labels.lst has 3 labels but");
    write_file("r-labels.lst", "0\n", 2);
    const char *r = write_file("r.jsonl", PIQA_LINE PIQA_LINE, 2 * strlen(PIQA_LINE));
    assert_null(kg_task_read(ctx, NULL, r));
    assert_non_null(strstr(kg_error(ctx), "r-labels.lst has 1 labels but"));
    assert_non_null(strstr(kg_error(ctx), "r.jsonl has 2 items; expected one label per item"));
    kg_clear_error(ctx);
    write_file("s-labels.lst", "0\n2\n", 4);
    assert_null(kg_task_read(ctx, NULL, write_file("s.jsonl", PIQA_LINE PIQA_LINE,
                                                   2 * strlen(PIQA_LINE))));
    assert_non_null(strstr(kg_error(ctx), "s-labels.lst line 2: label is \"2\"; expected 0 or 1"));
    kg_clear_error(ctx);
    write_file("u-labels.lst", "1\n", 2);
    expect_read_error(NULL, "u.jsonl",
                      "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n",
                      "line 1: the item's label is 0 but");
    /* SIQA's are 1|2|3. */
    write_file("sq-labels.lst", "3\n4\n", 4);
    const char *sq = SIQA_LINE("null") SIQA_LINE("null");
    assert_null(kg_task_read(ctx, NULL, write_file("sq.jsonl", sq, strlen(sq))));
    assert_non_null(strstr(kg_error(ctx), "sq-labels.lst line 2: label is \"4\"; expected 1, 2 "
                                          "or 3"));
    kg_clear_error(ctx);
    write_file("sq-labels.lst", "3\n1\n", 4);
    t = kg_task_read(ctx, NULL, write_file("sq.jsonl", sq, strlen(sq)));
    assert_non_null(t);
    assert_int_equal(t->items[0].gold, 2);
    assert_int_equal(t->items[1].gold, 0);
    kg_task_free(t);
    /* WinoGrande's labels are 1|2. */
    write_file("w-labels.lst", "2\n", 2);
    t = kg_task_read(ctx, NULL, write_file("w.jsonl", WG_LINE("A _ b.", "\"\""),
                                           strlen(WG_LINE("A _ b.", "\"\""))));
    assert_non_null(t);
    assert_int_equal(t->items[0].gold, 1);
    kg_task_free(t);
}

/* Line numbers count blank lines; a BOM, CRLF and a missing last newline read fine. */
static void test_line_handling(void **state)
{
    (void)state;
    const char *text = "\xEF\xBB\xBF\r\n\r\n" PIQA_LINE "  \n{\"goal\": \"h\", \"sol1\": \"x\", "
                       "\"sol2\": \"y\", \"label\": 1}";
    kg_task *t = kg_task_read(ctx, NULL, write_file("lines.jsonl", text, strlen(text)));
    assert_non_null(t);
    assert_int_equal(t->n_items, 2);
    assert_int_equal(t->items[0].line, 3);
    assert_string_equal(t->items[0].id, "3");
    assert_int_equal(t->items[1].line, 5);
    assert_string_equal(t->items[1].question, "h");
    assert_int_equal(t->items[1].gold, 1);
    assert_string_equal(t->name, "piqa");
    kg_task_free(t);
    expect_read_error(NULL, "lines2.jsonl", "\n\n" PIQA_LINE "\n{\"goal\": 3}\n",
                      "lines2.jsonl line 5: field \"goal\" is 3; expected a string");
}

/* ---- Encoder pairs ----------------------------------------------------------------------- */

static void test_encoder_pairs(void **state)
{
    (void)state;
    kg_task *hs = kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/hellaswag/hellaswag_val.jsonl");
    kg_task *wg = kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/winogrande/dev.jsonl");
    kg_task *arc = kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/arc/ARC-Challenge-Dev.jsonl");
    assert_ok(ctx);
    kg_mc_pairs *p = kg_mc_encoder_pairs(ctx, hs->kind, &hs->items[0]);
    assert_non_null(p);
    assert_null(p->norm_len);
    assert_string_equal(p->first[3], "A man is sitting on a roof.");
    assert_string_equal(p->second[3], "he starts pulling up roofing on a roof.");
    kg_mc_pairs_free(p);
    p = kg_mc_encoder_pairs(ctx, hs->kind, &hs->items[1]); /* empty ctx_b */
    assert_string_equal(p->second[1], "Slip the bag over the shower head and fasten it with a "
                                      "rubber band. [substeps] Leave it for an hour.");
    kg_mc_pairs_free(p);
    p = kg_mc_encoder_pairs(ctx, wg->kind, &wg->items[1]);
    assert_string_equal(p->first[0], "The trophy doesn't fit into the brown suitcase because the ");
    assert_string_equal(p->second[0], "trophy 's too large.");
    assert_string_equal(p->second[1], "suitcase 's too large.");
    kg_mc_pairs_free(p);
    p = kg_mc_encoder_pairs(ctx, arc->kind, &arc->items[2]);
    assert_int_equal(p->n, 3);
    assert_string_equal(p->first[2], "A student mixes salt into water until no more dissolves. "
                                     "The solution is best described as");
    assert_string_equal(p->second[2], "a suspension");
    kg_mc_pairs_free(p);
    /* SIQA: the context and the question, then each answer. */
    kg_task *siqa = kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/siqa/siqa_hf.jsonl");
    assert_non_null(siqa);
    p = kg_mc_encoder_pairs(ctx, siqa->kind, &siqa->items[1]);
    assert_int_equal(p->n, 3);
    assert_string_equal(p->first[2], "Kendall's dog was overweight so they walked it five miles. "
                                     "Why did Kendall do this?");
    assert_string_equal(p->second[1], "start an exercise regimen");
    kg_mc_pairs_free(p);
    assert_null(kg_mc_decoder_requests(ctx, KG_TASK_SIQA, &arc->items[0]));
    assert_non_null(strstr(kg_error(ctx), "has no context; expected one for social_iqa"));
    kg_clear_error(ctx);
    kg_task_free(siqa);
    /* An item that does not fit the kind. */
    assert_null(kg_mc_decoder_requests(ctx, KG_TASK_WINOGRANDE, &arc->items[0]));
    assert_non_null(strstr(kg_error(ctx), "no blank '_'"));
    kg_clear_error(ctx);
    assert_null(kg_mc_encoder_pairs(ctx, KG_TASK_HELLASWAG, &arc->items[0]));
    assert_non_null(strstr(kg_error(ctx), "no activity_label or ctx_b"));
    kg_clear_error(ctx);
    kg_task_free(hs);
    kg_task_free(wg);
    kg_task_free(arc);
}

/* ---- Metrics ----------------------------------------------------------------------------- */

static void test_metrics(void **state)
{
    (void)state;
    double tie[] = {-2.5, -1.0, -1.0, -3.0};
    assert_int_equal(kg_mc_argmax(tie, 4), 1);
    double with_nan[] = {-1.0, NAN, 0.0, NAN};
    assert_int_equal(kg_mc_argmax(with_nan, 4), 1); /* numpy: the first NaN */
    assert_int_equal(kg_mc_argmax(tie, 0), -1);
    assert_int_equal(kg_mc_argmax(NULL, 3), -1);
    /* acc_norm by code points: "café" is 4 characters (5 bytes), "🙂" 1 (4 bytes). */
    const char *choices[] = {"café", "🙂", "naïve", "ab"};
    int64_t len[4];
    for (int k = 0; k < 4; k++)
        len[k] = kg_utf8_length(choices[k]);
    assert_int_equal(len[0], 4);
    assert_int_equal(len[1], 1);
    assert_int_equal(len[2], 5);
    assert_int_equal(len[3], 2);
    double ll[] = {-4.0, -1.2, -5.0, -2.2};
    assert_int_equal(kg_mc_argmax(ll, 4), 1);
    assert_int_equal(kg_mc_argmax_norm(ll, len, 4), 0); /* -1, -1.2, -1, -1.1: first of the tie */
    /* A zero length divides as numpy does: -inf for a negative ll, NaN for 0. */
    int64_t zero[] = {1, 0, 1};
    double lz[] = {-1.0, -0.5, -2.0};
    assert_int_equal(kg_mc_argmax_norm(lz, zero, 3), 0);
    double lz0[] = {-1.0, 0.0, -2.0};
    assert_int_equal(kg_mc_argmax_norm(lz0, zero, 3), 1);
    assert_int_equal(kg_utf8_length("\xff\xfe" "a"), 3); /* invalid bytes count one each */
    assert_int_equal(kg_utf8_length(""), 0);
}

/* ---- The generated task ------------------------------------------------------------------ */

static const char *suffix_of(const char *word)
{
    return word + 3; /* stems are consonant-vowel-consonant */
}

static void test_synthetic(void **state)
{
    (void)state;
    kg_task *a = kg_task_generate(ctx, "synthetic-lang", KG_SPLIT_TRAIN, 7, 400);
    kg_task *b = kg_task_generate(ctx, "synthetic-lang", KG_SPLIT_TRAIN, 7, 400);
    kg_task *c = kg_task_generate(ctx, "synthetic-lang", KG_SPLIT_TRAIN, 8, 400);
    kg_task *test = kg_task_generate(ctx, "synthetic-lang", KG_SPLIT_TEST, 7, 400);
    assert_ok(ctx);
    assert_int_equal(a->n_items, 400);
    assert_int_equal(a->kind, KG_TASK_PLAIN);
    assert_null(a->path);
    int differ = 0, gold_count[4] = {0};
    /* The rule: one language, one suffix, the same in every item and split. */
    const char *lang_suffix[64][2];
    int n_langs = 0;
    for (int64_t i = 0; i < a->n_items; i++) {
        const kg_mc_item *x = &a->items[i], *y = &b->items[i];
        assert_string_equal(x->question, y->question);
        assert_int_equal(x->gold, y->gold);
        assert_int_equal(x->n_choices, 4);
        for (int k = 0; k < 4; k++) {
            assert_string_equal(x->choices[k], y->choices[k]);
            assert_memory_equal(x->choices[k], x->choices[0], 3); /* one stem */
            for (int j = 0; j < k; j++)
                assert_string_not_equal(x->choices[j], x->choices[k]);
        }
        differ += strcmp(x->question, c->items[i].question) != 0 ||
                  strcmp(x->choices[0], c->items[i].choices[0]) != 0;
        gold_count[x->gold]++;
        int l = 0;
        while (l < n_langs && strcmp(lang_suffix[l][0], x->question) != 0)
            l++;
        if (l == n_langs) {
            lang_suffix[n_langs][0] = x->question;
            lang_suffix[n_langs++][1] = suffix_of(x->choices[x->gold]);
        }
        assert_string_equal(lang_suffix[l][1], suffix_of(x->choices[x->gold]));
    }
    assert_int_equal(n_langs, 8);
    assert_true(differ > 300);
    for (int k = 0; k < 4; k++) /* the right answer's position is uniform: 100 expected */
        assert_true(gold_count[k] > 60 && gold_count[k] < 140);
    /* Test stems never occur in training. */
    for (int64_t i = 0; i < test->n_items; i++) {
        for (int64_t j = 0; j < a->n_items; j++)
            assert_memory_not_equal(test->items[i].choices[0], a->items[j].choices[0], 3);
        int l = 0;
        while (l < n_langs && strcmp(lang_suffix[l][0], test->items[i].question) != 0)
            l++;
        assert_true(l < n_langs);
        assert_string_equal(lang_suffix[l][1],
                            suffix_of(test->items[i].choices[test->items[i].gold]));
    }
    /* The first train item, pinned: the generator must not drift between versions. */
    kg_mc_pairs *p = kg_mc_decoder_requests(ctx, a->kind, &a->items[0]);
    assert_non_null(p);
    assert_int_equal(strncmp(p->first[0], "Question: Which of these words is ", 34), 0);
    assert_int_equal(p->second[0][0], ' ');
    kg_mc_pairs_free(p);

    /* Written out as plain JSONL and read back by name: the same items. */
    char path[128];
    snprintf(path, sizeof path, "%s/synthetic.jsonl", dir);
    assert_true(kg_task_write_jsonl(ctx, a, path));
    kg_task *back = kg_task_read(ctx, "synthetic-lang", path);
    assert_non_null(back);
    assert_string_equal(back->name, "synthetic-lang");
    assert_int_equal(back->layout, KG_LAYOUT_PLAIN);
    assert_int_equal(back->n_items, a->n_items);
    for (int64_t i = 0; i < a->n_items; i++) {
        assert_string_equal(back->items[i].id, a->items[i].id);
        assert_string_equal(back->items[i].question, a->items[i].question);
        assert_int_equal(back->items[i].gold, a->items[i].gold);
        for (int k = 0; k < 4; k++)
            assert_string_equal(back->items[i].choices[k], a->items[i].choices[k]);
    }
    kg_task_free(back);
    unlink(path);
    /* By name alone: the default training split. */
    kg_task *named = kg_task_read(ctx, "synthetic-lang", NULL);
    assert_non_null(named);
    assert_int_equal(named->n_items, KG_SYNTHETIC_DEFAULT_N);
    kg_task_free(named);
    /* Tasks whose template needs more than question and choices are not written as plain. */
    kg_task *wg = kg_task_read(ctx, NULL, KG_TASK_FIXTURES "/winogrande/dev.jsonl");
    assert_false(kg_task_write_jsonl(ctx, wg, path));
    assert_non_null(strstr(kg_error(ctx), "expected plain, arc or piqa"));
    kg_clear_error(ctx);
    kg_task_free(wg);
    assert_null(kg_task_generate(ctx, "synthetic-nope", KG_SPLIT_TRAIN, 0, 10));
    assert_non_null(strstr(kg_error(ctx), "unknown task 'synthetic-nope'"));
    kg_clear_error(ctx);
    assert_null(kg_task_generate(ctx, "synthetic-lang", KG_SPLIT_TRAIN, 0, 0));
    kg_clear_error(ctx);
    kg_task_free(a);
    kg_task_free(b);
    kg_task_free(c);
    kg_task_free(test);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/kg_tasks_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests_match_lm_eval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_request_matches_lm_eval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_handling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encoder_pairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_synthetic, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        failed++;
    return failed;
}
