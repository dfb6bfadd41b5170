/* test_chat_template.c — chat templates (kg_chat.h) against transformers' apply_chat_template:
 * every template and conversation of tests/fixtures/chat/chat.json (from make_chat.py) rendered
 * char for char or failing with the template's raise_exception message; templates using what
 * the renderer lacks failing at parse with the construct named; kg_chat_template_load on the
 * directories transformers saved; the bounds on nesting, output and memory.
 *
 * `test_chat_template real` instead checks SmolLM2-135M-Instruct's GGUF: its own template,
 * rendered and tokenized by krongrad, gives the ids transformers gives (smollm2_ids.json);
 * skipped (77) without the file ($KG_MODELS, else ~/.cache/krongrad/models).
 */
#include "kg_test.h"
#include "models/kg_chat.h"
#include "models/kg_tokenizer.h"

#include <jansson.h>
#include <unistd.h>

static json_t *fixture;

static json_t *load_json(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", KG_CHAT_FIXTURES, name);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root)
        fail_msg("%s: %s (line %d)", path, e.text, e.line);
    return root;
}

/* A conversation of the fixture as messages (pointing into the JSON). */
static kg_chat_message *messages(json_t *conversations, const char *name, int64_t *n)
{
    json_t *conv = json_object_get(conversations, name);
    assert_non_null(conv);
    *n = (int64_t)json_array_size(conv);
    kg_chat_message *m = calloc((size_t)*n + 1, sizeof *m);
    assert_non_null(m);
    for (int64_t i = 0; i < *n; i++) {
        json_t *msg = json_array_get(conv, (size_t)i);
        m[i].role = json_string_value(json_object_get(msg, "role"));
        m[i].content = json_string_value(json_object_get(msg, "content"));
    }
    return m;
}

/* Equal strings, else fail showing where they part. */
static void assert_same_text(const char *got, const char *want, const char *what)
{
    if (strcmp(got, want) == 0)
        return;
    size_t i = 0;
    while (got[i] && got[i] == want[i])
        i++;
    fail_msg("%s: differs at byte %zu:\n got: \"%.60s\"\nwant: \"%.60s\"", what, i, got + i,
             want + i);
}

static void test_fixture_templates(void **state)
{
    (void)state;
    json_t *convs = json_object_get(fixture, "conversations");
    size_t ti, ci;
    json_t *t, *c;
    int rendered = 0, raised = 0;
    json_array_foreach(json_object_get(fixture, "templates"), ti, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_chat_template *tmpl = kg_chat_template_new(
            ctx, json_string_value(json_object_get(t, "template")), name,
            json_string_value(json_object_get(t, "bos_token")),
            json_string_value(json_object_get(t, "eos_token")));
        if (!tmpl)
            fail_msg("%s: %s", name, kg_error(ctx));
        assert_string_equal(kg_chat_template_source(tmpl),
                            json_string_value(json_object_get(t, "template")));
        json_array_foreach(json_object_get(t, "cases"), ci, c) {
            const char *cname = json_string_value(json_object_get(c, "conversation"));
            bool agp = json_is_true(json_object_get(c, "add_generation_prompt"));
            char what[256];
            snprintf(what, sizeof what, "%s on %s%s", name, cname, agp ? " +generation" : "");
            int64_t n;
            kg_chat_message *m = messages(convs, cname, &n);
            char *got = kg_chat_template_render(tmpl, m, n, agp);
            const char *want = json_string_value(json_object_get(c, "text"));
            const char *error = json_string_value(json_object_get(c, "error"));
            if (want) {
                if (!got)
                    fail_msg("%s: %s", what, kg_error(ctx));
                assert_same_text(got, want, what);
                rendered++;
            } else {
                assert_non_null(error);
                if (got)
                    fail_msg("%s: rendered \"%.80s\", want the error \"%s\"", what, got, error);
                if (!strstr(kg_error(ctx), error) || !strstr(kg_error(ctx), "raise_exception") ||
                    !strstr(kg_error(ctx), name))
                    fail_msg("%s: error \"%s\", want one naming %s and saying \"%s\"", what,
                             kg_error(ctx), name, error);
                kg_clear_error(ctx);
                raised++;
            }
            free(got);
            free(m);
        }
        kg_chat_template_free(tmpl);
        assert_ok(ctx);
        kg_ctx_free(ctx);
    }
    /* the fixture has both kinds for several templates */
    assert_true(rendered >= 100);
    assert_true(raised >= 20);
    printf("%d renderings equal transformers', %d raise_exception errors\n", rendered, raised);
}

static void test_unsupported_constructs(void **state)
{
    (void)state;
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(fixture, "unsupported"), i, u) {
        const char *name = json_string_value(json_object_get(u, "name"));
        const char *construct = json_string_value(json_object_get(u, "construct"));
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_chat_template *t =
            kg_chat_template_new(ctx, json_string_value(json_object_get(u, "template")),
                                 "tokenizer_config.json: chat_template", "<s>", "</s>");
        if (t)
            fail_msg("%s: parsed a template that uses %s", name, construct);
        const char *e = kg_error(ctx);
        if (!strstr(e, construct) || !strstr(e, "tokenizer_config.json: chat_template: line 1"))
            fail_msg("%s: error \"%s\" does not name the template, line and \"%s\"", name, e,
                     construct);
        assert_int_equal(kg_ctx_status(ctx), KG_ERR_ARG);
        kg_ctx_free(ctx);
    }
}

/* Syntax errors name the line they are on. */
static void test_syntax_errors(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"a\nb\n{{ messages[0] ", "line 3", "missing end of variable tag"},
        {"\n\n{% if x %}\n{% endfor %}", "line 4", "unexpected 'endfor'"},
        {"{% for %}", "line 1", "expected a loop variable"},
        {"x\n{{ 'open }}", "line 2", "unterminated string"},
        {"{# never closed", "line 1", "missing end of comment"},
        {"{% break %}", "line 1", "'break' outside a for loop"},
        {"{{ 'x'.strip(, ) }}", "line 1", "expected an expression"},
        {"{{ a.b( }}", "line 1", "missing end of variable tag"},
        {"{% set ns.x %}", "line 1", "block set"},
        {"{{ 'x' | nosuch }}", "line 1", "filter 'nosuch'"},
        {"{{ x is nosuch }}", "line 1", "test 'nosuch'"},
        {"{{ 'x'.nosuch() }}", "line 1", "method 'nosuch'"},
        {"{{ 0x10 }}", "line 1", "hex"},
        {"{{ 99999999999999999999 }}", "line 1", "too large"},
        {"{{ '\\N{DASH}' }}", "line 1", "\\N{...}"},
        {"{{ 'a' $ }}", "line 1", "unexpected character '$'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        assert_null(kg_chat_template_new(ctx, cases[i][0], "T", NULL, NULL));
        const char *e = kg_error(ctx);
        if (!strstr(e, cases[i][1]) || !strstr(e, cases[i][2]) || strncmp(e, "T: ", 3) != 0)
            fail_msg("\"%s\": error \"%s\", want \"T: %s: ...%s...\"", cases[i][0], e,
                     cases[i][1], cases[i][2]);
        kg_ctx_free(ctx);
    }
}

/* Errors while rendering: undefined things used, wrong types. */
static void test_render_errors(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"{{ nosuch.x }}", "'nosuch' is undefined"},
        {"{{ messages[0].content + 1 }}", "unsupported operand types for +: string and integer"},
        {"{{ 1 // 0 }}", "division or modulo by zero"},
        {"{{ 'a' < 1 }}", "cannot order"},
        {"{{ messages }}", "printing a list"},
        {"{{ 1 / 2 }}", "'/'"},
        {"{% for x in 3 %}{% endfor %}", "cannot iterate over a integer"},
        {"{% set x = 1 %}{% set x.y = 2 %}", "only of a namespace"},
        {"{{ 9223372036854775807 + 1 }}", "integer overflow"},
        {"{{ messages[::0] }}", "slice step cannot be zero"},
        {"\n{{ raise_exception('custom ' ~ messages | length) }}", "line 2: raise_exception: custom 1"},
    };
    kg_chat_message m[] = {{"user", "hi"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_chat_template *t = kg_chat_template_new(ctx, cases[i][0], "T", NULL, NULL);
        if (!t)
            fail_msg("\"%s\": %s", cases[i][0], kg_error(ctx));
        char *s = kg_chat_template_render(t, m, 1, false);
        if (s || !strstr(kg_error(ctx), cases[i][1]))
            fail_msg("\"%s\": got \"%s\" / error \"%s\", want an error with \"%s\"", cases[i][0],
                     s ? s : "(null)", kg_error(ctx), cases[i][1]);
        kg_chat_template_free(t);
        kg_ctx_free(ctx);
    }
    /* a message without a role, no messages at all */
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_chat_template *t = kg_chat_template_new(ctx, "x", "T", NULL, NULL);
    assert_null(kg_chat_template_render(t, (kg_chat_message[]){{NULL, "x"}}, 1, false));
    assert_non_null(strstr(kg_error(ctx), "message 0 has no role"));
    kg_clear_error(ctx);
    assert_null(kg_chat_template_render(t, m, 0, false));
    assert_non_null(strstr(kg_error(ctx), "empty conversation"));
    kg_chat_template_free(t);
    kg_ctx_free(ctx);
}

/* Untrusted templates: deep nesting, huge output, runaway memory and loops end in errors. */
static void test_limits(void **state)
{
    (void)state;
    char *deep = malloc(40000);
    assert_non_null(deep);
    size_t n = 0;
    n += (size_t)sprintf(deep + n, "{{ ");
    for (int i = 0; i < 5000; i++)
        deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 5000; i++)
        deep[n++] = ')';
    sprintf(deep + n, " }}");
    char *chain = malloc(200000);
    assert_non_null(chain);
    n = (size_t)sprintf(chain, "{{ 1");
    for (int i = 0; i < 20000; i++)
        n += (size_t)sprintf(chain + n, " + 1");
    sprintf(chain + n, " }}");
    char *blocks = malloc(200000);
    assert_non_null(blocks);
    n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)sprintf(blocks + n, "{%% if true %%}");
    blocks[n] = '\0';
    const char *parse_cases[][2] = {{deep, "nesting deeper than"}, {chain, "nesting deeper than"},
                                    {blocks, "nesting deeper than"}};
    for (int i = 0; i < 3; i++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        assert_null(kg_chat_template_new(ctx, parse_cases[i][0], "T", NULL, NULL));
        assert_non_null(strstr(kg_error(ctx), parse_cases[i][1]));
        kg_ctx_free(ctx);
    }
    free(deep);
    free(chain);
    free(blocks);
    static const char *const render_cases[][2] = {
        {"{% for a in range(1000) %}{% for b in range(500) %}0123456789012345678901234567890123456789"
         "{% endfor %}{% endfor %}",
         "output larger than 16 MiB"},
        {"{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
         "{% endfor %}", "MiB"},
        {"{% set r = range(10000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
         "steps"},
        {"{% set ns = namespace(x=[]) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}"
         "{% endfor %}{{ ns.x == ns.x }}", "nested deeper"},
        {"{% set ns = namespace(x=[]) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}"
         "{% endfor %}{{ ns.x | tojson }}", "nesting deeper"},
        {"{{ range(100000000000) | length }}", "range() of more than"},
        {"{{ 'ab' * 100000000000 }}", "longer than"},
    };
    kg_chat_message m[] = {{"user", "hi"}};
    for (size_t i = 0; i < sizeof render_cases / sizeof *render_cases; i++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        kg_chat_template *t = kg_chat_template_new(ctx, render_cases[i][0], "T", NULL, NULL);
        assert_non_null(t);
        char *s = kg_chat_template_render(t, m, 1, false);
        if (s || !strstr(kg_error(ctx), render_cases[i][1]))
            fail_msg("\"%s\": error \"%s\", want one with \"%s\"", render_cases[i][0],
                     kg_error(ctx), render_cases[i][1]);
        kg_chat_template_free(t);
        kg_ctx_free(ctx);
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* kg_chat_template_load on what transformers saved (chat_template.jinja; tokenizer_config.json
 * with a string or a list of named templates; bos as an AddedToken object). */
static void test_load(void **state)
{
    (void)state;
    json_t *convs = json_object_get(fixture, "conversations");
    static const char *const dirs[] = {"saved", "config_string", "config_list"};
    for (int i = 0; i < 3; i++) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/load/%s", KG_CHAT_FIXTURES, dirs[i]);
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        for (int as_file = 0; as_file < 2; as_file++) { /* the directory, or a file in it */
            snprintf(path, sizeof path, "%s%s", dir, as_file ? "/tokenizer_config.json" : "");
            kg_chat_template *t = kg_chat_template_load(ctx, path);
            if (!t)
                fail_msg("%s: %s", path, kg_error(ctx));
            int64_t n;
            kg_chat_message *m = messages(convs, "turns", &n);
            char *got = kg_chat_template_render(t, m, n, true);
            if (!got)
                fail_msg("%s: %s", path, kg_error(ctx));
            snprintf(path, sizeof path, "%s/expected.txt", dir);
            char *want = read_file(path);
            assert_same_text(got, want, dirs[i]);
            free(want);
            free(got);
            free(m);
            kg_chat_template_free(t);
        }
        kg_ctx_free(ctx);
    }
    /* no template: a directory without one, a GGUF without one, a missing path */
    char path[4096];
    const char *none[] = {"load/none", "../tokenizer/gpt2.gguf"};
    for (int i = 0; i < 2; i++) {
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        snprintf(path, sizeof path, "%s/%s", KG_CHAT_FIXTURES, none[i]);
        assert_null(kg_chat_template_load(ctx, path));
        char want[4200];
        snprintf(want, sizeof want, "%s has no chat template", path);
        assert_string_equal(kg_error(ctx), want);
        kg_ctx_free(ctx);
    }
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    assert_null(kg_chat_template_load(ctx, "/nonexistent/model"));
    assert_non_null(strstr(kg_error(ctx), "/nonexistent/model: no such file"));
    kg_ctx_free(ctx);
}

/* Malformed files: a clear error naming the file (and line or field). */
static void test_load_bad_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/kg_chat_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    static const char *const cases[][2] = {
        {"{\"chat_template\": ", "tokenizer_config.json: line 1"},
        {"{\"chat_template\": 3}", "\"chat_template\": expected a string or a list"},
        {"{\"chat_template\": [{\"name\": \"x\", \"template\": \"y\"}]}", "without an entry named \"default\""},
        {"{\"chat_template\": [{\"name\": 1}]}", "\"chat_template\"[0]: expected an object"},
        {"{\"chat_template\": \"x\", \"bos_token\": 5}", "\"bos_token\": expected a string"},
        {"{\"chat_template\": \"{% for %}\"}", "tokenizer_config.json: chat_template: line 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(cases[i][0], f);
        fclose(f);
        kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
        assert_null(kg_chat_template_load(ctx, dir));
        if (!strstr(kg_error(ctx), cases[i][1]) || !strstr(kg_error(ctx), dir))
            fail_msg("%s: error \"%s\", want the file and \"%s\"", cases[i][0], kg_error(ctx),
                     cases[i][1]);
        kg_ctx_free(ctx);
    }
    unlink(path);
    rmdir(dir);
}

/* ---- real: SmolLM2's GGUF ---- */

static int run_real(void)
{
    const char *models = getenv("KG_MODELS");
    char dir[4096], gguf[8192];
    if (models)
        snprintf(dir, sizeof dir, "%s", models);
    else
        snprintf(dir, sizeof dir, "%s/.cache/krongrad/models", getenv("HOME") ? getenv("HOME") : "");
    snprintf(gguf, sizeof gguf, "%s/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", dir);
    if (access(gguf, R_OK) != 0) {
        printf("skipped: %s is absent (scripts/fetch-models.sh fetches it)\n", gguf);
        return 77;
    }
    json_t *ids = load_json("smollm2_ids.json");
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_chat_template *t = kg_chat_template_load(ctx, gguf);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, gguf);
    if (!t || !tok) {
        fprintf(stderr, "%s: %s\n", gguf, kg_error(ctx));
        return 1;
    }
    int failures = 0, checked = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(ids, "cases"), i, c) {
        int64_t n, nids;
        kg_chat_message *m = NULL;
        json_t *conv = json_object_get(json_object_get(ids, "conversations"),
                                       json_string_value(json_object_get(c, "conversation")));
        n = (int64_t)json_array_size(conv);
        m = calloc((size_t)n, sizeof *m);
        for (int64_t k = 0; k < n; k++) {
            m[k].role = json_string_value(json_object_get(json_array_get(conv, (size_t)k), "role"));
            m[k].content =
                json_string_value(json_object_get(json_array_get(conv, (size_t)k), "content"));
        }
        char *text = kg_chat_template_render(t, m, n, json_is_true(json_object_get(c, "add_generation_prompt")));
        int32_t *got = text ? kg_tokenizer_encode(tok, text, false, &nids) : NULL;
        json_t *want = json_object_get(c, "ids");
        bool same = got && (size_t)nids == json_array_size(want);
        for (int64_t k = 0; same && k < nids; k++)
            same = got[k] == json_integer_value(json_array_get(want, (size_t)k));
        if (!same) {
            fprintf(stderr, "%s (generation prompt %d): %s ids differ from transformers' (%lld vs %zu)\n",
                    json_string_value(json_object_get(c, "conversation")),
                    json_is_true(json_object_get(c, "add_generation_prompt")),
                    got ? "krongrad's" : kg_error(ctx), (long long)(got ? nids : -1),
                    json_array_size(want));
            failures++;
        }
        checked++;
        free(got);
        free(text);
        free(m);
    }
    printf("SmolLM2: %d conversations rendered and tokenized, %d differ from transformers\n",
           checked, failures);
    kg_tokenizer_free(tok);
    kg_chat_template_free(t);
    kg_ctx_free(ctx);
    json_decref(ids);
    return failures || checked < 10 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "real") == 0)
        return run_real();
    fixture = load_json("chat.json");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_templates), cmocka_unit_test(test_unsupported_constructs),
        cmocka_unit_test(test_syntax_errors),     cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_limits),            cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_bad_files),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(fixture);
    return r;
}
