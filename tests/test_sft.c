/* test_sft.c — supervised fine-tuning data and loss on the tiny Llama fixture: the three TRL
 * layouts' tokens, label masks, masked loss and a LoRA adapter's gradients against transformers
 * + peft (tests/fixtures/sft/reference.json and grads_*.safetensors, made by make_sft_refs.py);
 * every bad input an error naming the file, the line and the field; truncation counted; a
 * padded batch's loss equal to its rows' losses alone; a short run that learns.
 */
#include "krongrad.h"
#include "kg_test.h"

#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static kg_backend_kind backend;

#define SFT KG_FIXTURES "/sft"
#define LLAMA KG_FIXTURES "/models/llama"
#define LLAMA_CHAT SFT "/llama-chat"

typedef struct fixture {
    kg_ctx *ctx;
    kg_model *m;
    kg_tokenizer *tok;
} fixture;

static void fixture_open(fixture *f, const char *model)
{
    f->ctx = kg_ctx_new(backend);
    f->m = kg_model_load(f->ctx, model);
    f->tok = kg_tokenizer_load(f->ctx, model);
    assert_ok(f->ctx);
}

static void fixture_close(fixture *f)
{
    kg_tokenizer_free(f->tok);
    kg_test_model_free(f->ctx, f->m);
    kg_ctx_free(f->ctx);
}

static json_t *reference(const char *layout)
{
    json_error_t err;
    json_t *all = json_load_file(SFT "/reference.json", 0, &err);
    assert_non_null(all);
    json_t *r = json_incref(json_object_get(all, layout));
    json_decref(all);
    assert_non_null(r);
    return r;
}

/* The rows' ids and masks are the reference's, token for token. */
static void assert_rows(const kg_sft_data *d, const json_t *ref)
{
    const json_t *ids = json_object_get(ref, "ids"), *mask = json_object_get(ref, "mask");
    assert_int_equal(d->n_rows, json_array_size(ids));
    for (int64_t i = 0; i < d->n_rows; i++) {
        const json_t *ri = json_array_get(ids, (size_t)i), *rm = json_array_get(mask, (size_t)i);
        assert_int_equal(d->rows[i].n, json_array_size(ri));
        for (int64_t j = 0; j < d->rows[i].n; j++) {
            if (d->rows[i].ids[j] != json_integer_value(json_array_get(ri, (size_t)j)) ||
                d->rows[i].mask[j] != json_integer_value(json_array_get(rm, (size_t)j)))
                fail_msg("row %lld token %lld: id %d mask %d; transformers: id %lld mask %lld",
                         (long long)i, (long long)j, d->rows[i].ids[j], d->rows[i].mask[j],
                         json_integer_value(json_array_get(ri, (size_t)j)),
                         json_integer_value(json_array_get(rm, (size_t)j)));
        }
    }
}

static double batch_loss(fixture *f, const kg_sft_data *d, bool backward)
{
    int64_t rows[8];
    for (int64_t i = 0; i < d->n_rows; i++)
        rows[i] = i;
    kg_scope s = kg_scope_begin(f->ctx);
    kg_tensor *loss = kg_sft_loss(f->m, d, rows, d->n_rows, NULL);
    if (backward)
        kg_backward(loss);
    double v = kg_item(loss);
    kg_scope_end(f->ctx, s);
    assert_ok(f->ctx);
    return v;
}

/* Read a layout's file, check its tokens, its loss, then with the PEFT LoRA its loss and grads. */
static void check_layout(const char *layout, const char *model)
{
    fixture f;
    fixture_open(&f, model);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.jsonl", SFT, layout);
    kg_sft_data *d = kg_sft_read(f.ctx, path, f.tok, model, &(kg_sft_options){0});
    assert_ok(f.ctx);
    json_t *ref = reference(layout);
    assert_rows(d, ref);
    double want = json_real_value(json_object_get(ref, "loss"));
    double got = batch_loss(&f, d, false);
    if (fabs(got - want) > 1e-4)
        fail_msg("%s: loss %.6f; transformers %.6f", layout, got, want);

    assert_true(kg_peft_load(f.m, SFT "/lora"));
    assert_ok(f.ctx);
    want = json_real_value(json_object_get(ref, "lora_loss"));
    got = batch_loss(&f, d, true);
    if (fabs(got - want) > 1e-4)
        fail_msg("%s: loss with the LoRA %.6f; peft %.6f", layout, got, want);
    snprintf(path, sizeof path, "%s/grads_%s.safetensors", SFT, layout);
    kg_weights *g = kg_weights_open(f.ctx, path);
    assert_non_null(g);
    assert_int_equal(kg_weights_count(g), f.m->n_trainable);
    for (int i = 0; i < f.m->n_trainable; i++) {
        kg_tensor *p = f.m->trainable[i].tensor;
        int64_t n = kg_tensor_numel(p);
        float *want_g = malloc(sizeof *want_g * (size_t)n);
        kg_tensor *w = kg_weights_load(g, f.m->trainable[i].name, KG_DTYPE_F32, 0, NULL);
        assert_ok(f.ctx);
        assert_true(kg_tensor_to_host(w, want_g, sizeof *want_g * (size_t)n));
        assert_tensor(kg_grad(p), want_g, n, 1e-5f, 1e-3f, f.m->trainable[i].name);
        kg_tensor_free(w);
        free(want_g);
        kg_zero_grad(p);
    }
    kg_weights_close(g);
    json_decref(ref);
    kg_sft_free(d);
    fixture_close(&f);
}

static void test_text(void **state)
{
    (void)state;
    check_layout("text", LLAMA);
}

static void test_prompt_completion(void **state)
{
    (void)state;
    check_layout("prompt_completion", LLAMA);
}

static void test_messages(void **state)
{
    (void)state;
    check_layout("messages", LLAMA_CHAT);
}

/* ---- Bad input ------------------------------------------------------------------------------ */

/* Write text to a temporary .jsonl, read it, and expect an error naming the file and every one
 * of the given words (the line, the field). */
static void expect_error(const char *model, const char *text, kg_sft_options o, ...)
{
    char path[] = "/tmp/kg-sft-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    fixture f;
    fixture_open(&f, model);
    kg_sft_data *d = kg_sft_read(f.ctx, path, f.tok, model, &o);
    assert_null(d);
    const char *e = kg_error(f.ctx);
    if (!strstr(e, path))
        fail_msg("the error does not name the file: %s", e);
    va_list ap;
    va_start(ap, o);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!strstr(e, w))
            fail_msg("the error lacks \"%s\": %s", w, e);
    va_end(ap);
    kg_clear_error(f.ctx);
    fixture_close(&f);
    unlink(path);
}

static void test_bad_input(void **state)
{
    (void)state;
    kg_sft_options none = {0};
    expect_error(LLAMA, "{\"text\": \"the cat\"}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n",
                 none, "line 2", "prompt-completion row in a file of text rows", NULL);
    expect_error(LLAMA, "{\"text\": \"the cat\"}\n\n{\"text\": \"the\" \n", none, "line 3",
                 "invalid JSON", NULL);
    expect_error(LLAMA, "{\"text\": 3}\n", none, "line 1", "field \"text\"", "a string", NULL);
    expect_error(LLAMA, "{\"question\": \"the cat\"}\n", none, "line 1", "no SFT layout", NULL);
    expect_error(LLAMA, "{\"prompt\": \"the cat\"}\n", none, "line 1", "field \"completion\"",
                 "missing", NULL);
    const char *role_missing = "{\"messages\": [{\"content\": \"hello\"}]}\n";
    expect_error(LLAMA_CHAT, role_missing, none, "line 1", "messages[0].role", "missing", NULL);
    const char *role_unknown = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                               "{\"role\": \"robot\", \"content\": \"b\"}]}\n";
    expect_error(LLAMA_CHAT, role_unknown, none, "line 1", "messages[1].role", "\"robot\"",
                 "system, user or assistant", NULL);
    const char *empty = "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}]}\n"
                        "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}, "
                        "{\"role\": \"assistant\", \"content\": \"\"}]}\n";
    expect_error(LLAMA_CHAT, empty, none, "line 1", "no assistant turn", NULL);
    expect_error(LLAMA_CHAT, strchr(empty, '\n') + 1, none, "line 1", "messages[1].content",
                 "empty", NULL);
    /* The fixture model without a template, given messages. */
    const char *ok_chat = "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}, "
                          "{\"role\": \"assistant\", \"content\": \"world\"}]}\n";
    expect_error(LLAMA, ok_chat, none, "line 1", "field \"messages\"", "chat template", NULL);
}

/* ---- Truncation and padding ----------------------------------------------------------------- */

static void test_truncation_counted(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, LLAMA);
    kg_sft_data *d = kg_sft_read(f.ctx, SFT "/text.jsonl", f.tok, LLAMA,
                                 &(kg_sft_options){.max_length = 5});
    assert_ok(f.ctx);
    json_t *ref = reference("text");
    const json_t *ids = json_object_get(ref, "ids");
    int64_t longer = 0;
    for (size_t i = 0; i < json_array_size(ids); i++)
        longer += json_array_size(json_array_get(ids, i)) > 5;
    assert_true(longer > 0);
    assert_int_equal(d->truncated, longer);
    for (int64_t i = 0; i < d->n_rows; i++)
        assert_true(d->rows[i].n <= 5);
    /* A prompt longer than max_length leaves nothing to learn: the row is counted, not kept. */
    kg_sft_data *pc = kg_sft_read(f.ctx, SFT "/prompt_completion.jsonl", f.tok, LLAMA,
                                  &(kg_sft_options){.max_length = 3});
    assert_ok(f.ctx);
    assert_int_equal(pc->n_rows + pc->dropped, 3);
    assert_true(pc->dropped >= 1);
    json_decref(ref);
    kg_sft_free(d);
    kg_sft_free(pc);
    fixture_close(&f);
}

/* A batch of rows of different lengths, right-padded, gives the labels' mean NLL each row gives
 * alone: Σ_rows loss_i · labels_i / Σ labels_i (what grouping rows by length relies on). */
static void test_padding_invariant(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, LLAMA);
    kg_sft_data *d = kg_sft_read(f.ctx, SFT "/prompt_completion.jsonl", f.tok, LLAMA,
                                 &(kg_sft_options){0});
    assert_ok(f.ctx);
    double together = batch_loss(&f, d, false), sum = 0;
    int64_t labels = 0;
    for (int64_t i = 0; i < d->n_rows; i++) {
        kg_scope s = kg_scope_begin(f.ctx);
        int64_t k = 0;
        for (int64_t j = 1; j < d->rows[i].n; j++)
            k += d->rows[i].mask[j];
        sum += kg_item(kg_sft_loss(f.m, d, &i, 1, NULL)) * (double)k;
        labels += k;
        kg_scope_end(f.ctx, s);
    }
    assert_ok(f.ctx);
    assert_true(d->rows[0].n != d->rows[2].n); /* padding is really there */
    if (fabs(together - sum / (double)labels) > 1e-5)
        fail_msg("padded batch %.7f; rows alone %.7f", together, sum / (double)labels);
    kg_sft_free(d);
    fixture_close(&f);
}

/* A short run through the trainer (batches grouped by length) lowers the held-out loss, and
 * writes the eval lines --eval-every asks for. */
static void test_run_learns(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, LLAMA);
    kg_sft_data *d = kg_sft_read(f.ctx, SFT "/text.jsonl", f.tok, LLAMA, &(kg_sft_options){0});
    kg_train_config c = kg_train_config_default(KG_ADAPTER_LORA);
    c.steps = 12;
    c.batch = 2;
    c.lr = 2e-2;
    c.adapter.rank = 4;
    c.adapter.alpha = 8;
    kg_sft_eval before;
    assert_true(kg_model_attach(f.m, &c.adapter));
    assert_true(kg_sft_evaluate(f.m, d, 2, &before));
    char dir[] = "/tmp/kg-sft-run-XXXXXX";
    assert_non_null(mkdtemp(dir));
    kg_run_result r;
    kg_run_options o = {.out_dir = dir, .eval_every = 4};
    assert_true(kg_sft_run(f.m, d, d, &c, &o, true, &r));
    assert_ok(f.ctx);
    assert_int_equal(r.steps, 12);
    if (!(r.eval_loss < before.loss - 0.5))
        fail_msg("held-out loss %.4f after training; %.4f before", r.eval_loss, before.loss);
    assert_true(fabs(r.eval_perplexity - exp(r.eval_loss)) < 1e-6 * r.eval_perplexity);
    char path[600], line[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *mf = fopen(path, "r");
    assert_non_null(mf);
    int evals = 0;
    while (fgets(line, sizeof line, mf))
        evals += strstr(line, "\"eval_perplexity\"") != NULL;
    fclose(mf);
    assert_int_equal(evals, 4); /* before the first step, after 4, 8 and at the end (12) */
    free(r.losses);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    kg_sft_free(d);
    fixture_close(&f);
}

/* ---- The real model (`test_sft real`, suite 'real') ------------------------------------------ */

static char real_model[512], real_data[512];

/* SmolLM2's own ChatML template from its GGUF on real dialogs: each assistant turn's labels are
 * exactly its text and the end-of-turn marker, "CONTENT<|im_end|>\n", and every prefix's tokens
 * begin the whole's (the boundary rule of sft.c equals tokenizing the whole text here). */
static void test_real_chatml_spans(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_tokenizer *tok = kg_tokenizer_load(ctx, real_model);
    kg_sft_data *d = kg_sft_read(ctx, real_data, tok, real_model, &(kg_sft_options){0});
    kg_chat_template *t = kg_chat_template_load(ctx, real_model);
    assert_ok(ctx);
    json_error_t err;
    FILE *f = fopen(real_data, "r");
    char line[8192];
    for (int64_t i = 0; i < d->n_rows && fgets(line, sizeof line, f); i++) {
        json_t *row = json_loads(line, 0, &err), *msgs = json_object_get(row, "messages");
        const kg_sft_row *w = &d->rows[i];
        int64_t j = 0, n_msgs = (int64_t)json_array_size(msgs);
        kg_chat_message m[16];
        assert_true(n_msgs <= 16);
        for (int64_t k = 0; k < n_msgs; k++) {
            json_t *e = json_array_get(msgs, (size_t)k);
            m[k] = (kg_chat_message){json_string_value(json_object_get(e, "role")),
                                     json_string_value(json_object_get(e, "content"))};
        }
        for (int64_t k = 0; k < n_msgs; k++) {
            /* The prefixes' tokens begin the row's: the conversation up to turn k, and before an
             * assistant turn with the generation prompt. */
            bool reply = strcmp(m[k].role, "assistant") == 0;
            for (int gen = 0; gen < (k > 0 && reply ? 2 : 1); gen++) {
                char *head = kg_chat_template_render(t, m, gen ? k : k + 1, gen);
                int64_t nh;
                int32_t *h = kg_tokenizer_encode(tok, head, false, &nh);
                if (nh > w->n || memcmp(h, w->ids, sizeof *h * (size_t)nh) != 0)
                    fail_msg("%s line %lld: the tokens of \"%s\" do not begin the row's",
                             real_data, (long long)w->line, head);
                free(head);
                free(h);
            }
            if (!reply)
                continue;
            while (j < w->n && !w->mask[j])
                j++;
            int64_t start = j;
            while (j < w->n && w->mask[j])
                j++;
            char *got = kg_tokenizer_decode(tok, w->ids + start, j - start, false), want[4096];
            snprintf(want, sizeof want, "%s<|im_end|>\n", m[k].content);
            if (strcmp(got, want) != 0)
                fail_msg("%s line %lld: labels \"%s\"; expected \"%s\"", real_data,
                         (long long)w->line, got, want);
            free(got);
        }
        json_decref(row);
    }
    fclose(f);
    kg_chat_template_free(t);
    kg_sft_free(d);
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
}

static int run_real(void)
{
    const char *dir = getenv("KG_MODELS"), *home = getenv("HOME");
    char base[400];
    if (dir && *dir)
        snprintf(base, sizeof base, "%s", dir);
    else
        snprintf(base, sizeof base, "%s/.cache/krongrad/models", home ? home : ".");
    snprintf(real_model, sizeof real_model,
             "%s/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", base);
    snprintf(real_data, sizeof real_data, "%s/chatterbot-english/test.jsonl", base);
    if (access(real_model, R_OK) != 0 || access(real_data, R_OK) != 0) {
        fprintf(stderr, "skipped: run ./scripts/fetch-models.sh\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_real_chatml_spans)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "real") == 0)
        return run_real();
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_prompt_completion),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_truncation_counted),
        cmocka_unit_test(test_padding_invariant),
        cmocka_unit_test(test_run_learns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
