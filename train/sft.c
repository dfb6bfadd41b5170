/* sft.c — supervised fine-tuning data and loss: the JSONL layouts of TRL's SFTTrainer (text,
 * prompt-completion, messages through the model's chat template) read into token rows with a
 * label mask, the masked causal-LM loss of a batch of rows, held-out loss and perplexity, and a
 * run over rows through the trainer of trainer.c (kg_trainer_new_source).
 */
#include "models/kg_chat.h"
#include "train/kg_sft.h"
#include "train/tasks_internal.h"
#include "train/train_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kg_sft_layout_name(kg_sft_layout l)
{
    return l == KG_SFT_MESSAGES ? "messages" : l == KG_SFT_PROMPT_COMPLETION ? "prompt-completion"
                                                                             : "text";
}

void kg_sft_free(kg_sft_data *d)
{
    if (!d)
        return;
    for (int64_t i = 0; i < d->n_rows; i++) {
        free(d->rows[i].ids);
        free(d->rows[i].mask);
    }
    free(d->rows);
    free(d->lengths);
    free(d->path);
    free(d);
}

/* ---- Reading ------------------------------------------------------------------------------- */

typedef struct sft_reader {
    kg_ctx *ctx;
    kg_sft_data *d;
    kg_tokenizer *tok;
    const char *model_path;
    kg_chat_template *tmpl; /* loaded at the first messages line */
    const kg_sft_options *o;
    const char *eos;        /* EOS's text, or NULL */
    int64_t line, cap;
    bool have_layout;
} sft_reader;

static bool line_error(const sft_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool line_error(const sft_reader *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kg_set_error(r->ctx, KG_ERR_ARG, "kg_sft_read: %s line %lld: %s", r->d->path,
                        (long long)r->line, msg);
}

static bool nomem(const sft_reader *r)
{
    return kg_set_error(r->ctx, KG_ERR_NOMEM, "kg_sft_read: %s line %lld: out of host memory",
                        r->d->path, (long long)r->line);
}

/* The layout a line's fields say, or false when they say none. */
static bool layout_of(const json_t *obj, kg_sft_layout *out)
{
    bool text = json_object_get(obj, "text") != NULL;
    bool pc = json_object_get(obj, "prompt") || json_object_get(obj, "completion");
    bool msgs = json_object_get(obj, "messages") != NULL;
    if (text + pc + msgs != 1)
        return false;
    *out = msgs ? KG_SFT_MESSAGES : pc ? KG_SFT_PROMPT_COMPLETION : KG_SFT_TEXT;
    return true;
}

static const char *string_field(const sft_reader *r, const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);
    if (!json_is_string(v)) {
        line_error(r, "field \"%s\" is %s; expected a string", field, v ? "not a string"
                                                                          : "missing");
        return NULL;
    }
    return json_string_value(v);
}

/* a + b + c as one malloc'd string (b, c may be NULL). */
static char *concat3(const char *a, const char *b, const char *c)
{
    size_t na = strlen(a), nb = b ? strlen(b) : 0, nc = c ? strlen(c) : 0;
    char *s = malloc(na + nb + nc + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b ? b : "", nb);
        memcpy(s + na + nb, c ? c : "", nc);
        s[na + nb + nc] = 0;
    }
    return s;
}

/* EOS's text when text does not already end with it, else NULL. */
static const char *eos_after(const sft_reader *r, const char *text)
{
    if (!r->eos)
        return NULL;
    size_t n = strlen(text), k = strlen(r->eos);
    return n >= k && strcmp(text + n - k, r->eos) == 0 ? NULL : r->eos;
}

/* How many leading tokens of encode(prefix) agree with ids[0..n-1]: where a label span starts
 * or ends. This is tokenizing the whole text and cutting it where the prefix ends whenever the
 * prefix's tokens begin the whole's: a special token or a lone newline at the boundary, as
 * ChatML has (test_sft's fixture template; test_sft real checks SmolLM2's own template on real
 * dialogs: each turn's labels are exactly "CONTENT<|im_end|>\n"). Where a token merges across
 * the boundary (a prompt ending inside a word its completion finishes), that token goes to the
 * side after it: it is learned. TRL cuts at len(encode(prompt)) there instead, mislabelling the
 * token after it. */
static bool boundary(const sft_reader *r, const char *prefix, bool add_special,
                     const int32_t *ids, int64_t n, int64_t *at)
{
    int64_t k;
    int32_t *p = kg_tokenizer_encode(r->tok, prefix, add_special, &k);
    if (!p)
        return false;
    int64_t i = 0;
    while (i < k && i < n && p[i] == ids[i])
        i++;
    free(p);
    *at = i;
    return true;
}

/* The row of ids and its mask (both now the data's, or freed), cut to max_length; ok false
 * (the line failed): freed. */
static bool keep_row(sft_reader *r, bool ok, int32_t *ids, uint8_t *mask, int64_t n)
{
    kg_sft_data *d = r->d;
    if (!ok) {
        free(ids);
        free(mask);
        return false;
    }
    int64_t max = r->o->max_length;
    if (max > 0 && n > max) {
        n = max;
        d->truncated++;
    }
    mask[0] = 0;
    int64_t labels = 0;
    for (int64_t i = 1; i < n; i++)
        labels += mask[i];
    if (labels == 0) { /* nothing to learn: counted, not trained on */
        d->dropped++;
        free(ids);
        free(mask);
        return true;
    }
    if (d->n_rows == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 64;
        kg_sft_row *rows = realloc(d->rows, sizeof *rows * (size_t)cap);
        if (!rows) {
            free(ids);
            free(mask);
            return nomem(r);
        }
        d->rows = rows;
        r->cap = cap;
    }
    d->rows[d->n_rows++] = (kg_sft_row){.ids = ids, .mask = mask, .n = n, .line = r->line};
    d->tokens += n;
    d->loss_tokens += labels;
    return true;
}

/* Encode text (add_special as the layout wants) with a mask of `value` everywhere. */
static bool encode_masked(sft_reader *r, const char *text, bool add_special, uint8_t value,
                          int32_t **ids, uint8_t **mask, int64_t *n)
{
    *ids = kg_tokenizer_encode(r->tok, text, add_special, n);
    *mask = *ids ? malloc((size_t)(*n > 0 ? *n : 1)) : NULL;
    if (!*ids || !*mask) {
        free(*ids);
        return kg_ctx_status(r->ctx) ? false : nomem(r);
    }
    memset(*mask, value, (size_t)*n);
    if (*n < 2)
        return line_error(r, "the row gives %lld token(s); expected at least 2 (one to learn "
                          "from the one before it)", (long long)*n);
    return true;
}

static bool read_text(sft_reader *r, const json_t *obj)
{
    const char *text = string_field(r, obj, "text");
    char *full = text ? concat3(text, eos_after(r, text), NULL) : NULL;
    if (text && !full)
        return nomem(r);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int64_t n = 0;
    bool ok = full && encode_masked(r, full, true, 1, &ids, &mask, &n);
    free(full);
    return keep_row(r, ok, ids, mask, n);
}

static bool read_prompt_completion(sft_reader *r, const json_t *obj)
{
    const char *prompt = string_field(r, obj, "prompt");
    const char *completion = prompt ? string_field(r, obj, "completion") : NULL;
    if (!completion)
        return false;
    if (!*completion)
        return line_error(r, "field \"completion\" is empty; expected the text to learn");
    char *full = concat3(prompt, completion, eos_after(r, completion));
    if (!full)
        return nomem(r);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int64_t n = 0, start = 0;
    bool ok = encode_masked(r, full, true, 1, &ids, &mask, &n) &&
              (r->o->loss_on_all || boundary(r, prompt, true, ids, n, &start));
    free(full);
    if (ok)
        memset(mask, 0, (size_t)start);
    return keep_row(r, ok, ids, mask, n);
}

/* messages[] as role/content pairs pointing into obj; n of them in *n. */
static kg_chat_message *read_messages(sft_reader *r, const json_t *obj, int64_t *n)
{
    const json_t *arr = json_object_get(obj, "messages");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        line_error(r, "field \"messages\" is %s; expected a non-empty array of {\"role\", "
                   "\"content\"} objects", json_is_array(arr) ? "empty" : "not an array");
        return NULL;
    }
    *n = (int64_t)json_array_size(arr);
    kg_chat_message *msgs = calloc((size_t)*n, sizeof *msgs);
    if (!msgs) {
        nomem(r);
        return NULL;
    }
    bool any_assistant = false;
    for (int64_t i = 0; i < *n; i++) {
        const json_t *m = json_array_get(arr, (size_t)i);
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        const char *name = json_string_value(role), *text = json_string_value(content);
        bool known = name && (!strcmp(name, "system") || !strcmp(name, "user") ||
                              !strcmp(name, "assistant"));
        bool ok = false;
        if (!json_is_object(m))
            line_error(r, "messages[%lld] is not an object; expected {\"role\", \"content\"}",
                       (long long)i);
        else if (!known)
            line_error(r, "messages[%lld].role is %s%.40s%s; expected system, user or assistant",
                       (long long)i, name ? "\"" : role ? "not a string" : "missing",
                       name ? name : "", name ? "\"" : "");
        else if (!text)
            line_error(r, "messages[%lld].content is %s; expected the turn's text as a string",
                       (long long)i, content ? "not a string" : "missing");
        else if (!strcmp(name, "assistant") && !*text)
            line_error(r, "messages[%lld].content is empty; expected the assistant's reply (an "
                       "empty turn teaches nothing)", (long long)i);
        else
            ok = true;
        if (!ok) {
            free(msgs);
            return NULL;
        }
        msgs[i] = (kg_chat_message){json_string_value(role), json_string_value(content)};
        any_assistant = any_assistant || !strcmp(msgs[i].role, "assistant");
    }
    if (!any_assistant && !r->o->loss_on_all) {
        line_error(r, "field \"messages\" has no assistant turn; expected at least one to learn "
                   "(or --loss-on all)");
        free(msgs);
        return NULL;
    }
    return msgs;
}

/* The chat template, loaded once; its error names the line that needed it. */
static bool need_template(sft_reader *r)
{
    if (r->tmpl)
        return true;
    r->tmpl = kg_chat_template_load(r->ctx, r->model_path);
    if (r->tmpl)
        return true;
    char why[512];
    snprintf(why, sizeof why, "%s", kg_error(r->ctx));
    kg_clear_error(r->ctx);
    return line_error(r, "field \"messages\" needs the model's chat template: %s", why);
}

/* The label span of assistant turn i in ids: [*start, *end). */
static bool turn_span(sft_reader *r, const kg_chat_message *msgs, int64_t i, const char *full,
                      const int32_t *ids, int64_t n, int64_t *start, int64_t *end)
{
    char *head = kg_chat_template_render(r->tmpl, msgs, i, true);
    char *upto = head ? kg_chat_template_render(r->tmpl, msgs, i + 1, false) : NULL;
    bool ok = head && upto;
    if (ok && (strncmp(full, head, strlen(head)) != 0 || strncmp(full, upto, strlen(upto)) != 0))
        ok = line_error(r, "messages[%lld]: the chat template renders the conversation up to this "
                        "turn as text that does not begin the whole conversation's; expected a "
                        "template whose turns only append", (long long)i);
    ok = ok && boundary(r, head, false, ids, n, start) && boundary(r, upto, false, ids, n, end);
    free(head);
    free(upto);
    return ok;
}

static bool read_conversation(sft_reader *r, const json_t *obj)
{
    int64_t n_msgs = 0;
    kg_chat_message *msgs = read_messages(r, obj, &n_msgs);
    if (!msgs || !need_template(r)) {
        free(msgs);
        return false;
    }
    char *full = kg_chat_template_render(r->tmpl, msgs, n_msgs, false);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int64_t n = 0;
    bool all = r->o->loss_on_all;
    bool ok = full && encode_masked(r, full, false, all, &ids, &mask, &n);
    for (int64_t i = 0; ok && !all && i < n_msgs; i++) {
        int64_t start = 0, end = 0;
        if (strcmp(msgs[i].role, "assistant") != 0)
            continue;
        ok = turn_span(r, msgs, i, full, ids, n, &start, &end);
        if (ok && end > start)
            memset(mask + start, 1, (size_t)(end - start));
    }
    free(full);
    free(msgs);
    return keep_row(r, ok, ids, mask, n);
}

static bool read_line_fn(void *user, int64_t line, const char *text, size_t len)
{
    sft_reader *r = user;
    r->line = line;
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return line_error(r, "invalid JSON: %s (column %d); expected one JSON object per line",
                          jerr.text, jerr.column);
    kg_sft_layout layout;
    bool ok = false;
    if (!json_is_object(obj)) {
        line_error(r, "a JSON %s; expected one JSON object per line",
                   json_is_array(obj) ? "array" : "value");
    } else if (!layout_of(obj, &layout)) {
        line_error(r, "the fields fit no SFT layout; expected exactly one of \"text\", "
                   "\"prompt\" + \"completion\" or \"messages\"");
    } else if (r->have_layout && layout != r->d->layout) {
        line_error(r, "a %s row in a file of %s rows (from its first line); expected one layout "
                   "per file", kg_sft_layout_name(layout), kg_sft_layout_name(r->d->layout));
    } else {
        r->d->layout = layout;
        r->have_layout = true;
        ok = layout == KG_SFT_TEXT                ? read_text(r, obj)
             : layout == KG_SFT_PROMPT_COMPLETION ? read_prompt_completion(r, obj)
                                                  : read_conversation(r, obj);
    }
    json_decref(obj);
    return ok;
}

kg_sft_data *kg_sft_read(kg_ctx *ctx, const char *path, kg_tokenizer *tok,
                         const char *model_path, const kg_sft_options *o)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (!path || !tok || !o) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_sft_read: NULL argument");
        return NULL;
    }
    if (o->max_length < 0) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_sft_read: max_length %lld: expected >= 0",
                     (long long)o->max_length);
        return NULL;
    }
    kg_sft_data *d = calloc(1, sizeof *d);
    if (d)
        d->path = strdup(path);
    if (!d || !d->path) {
        kg_sft_free(d);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_sft_read: %s: out of host memory", path);
        return NULL;
    }
    int32_t eos = kg_tokenizer_special(tok, KG_TOKEN_EOS);
    sft_reader r = {.ctx = ctx, .d = d, .tok = tok, .model_path = model_path, .o = o,
                    .eos = eos >= 0 ? kg_tokenizer_token(tok, eos) : NULL};
    bool ok = kg__jsonl_each(ctx, path, read_line_fn, &r);
    kg_chat_template_free(r.tmpl);
    if (ok && d->n_rows == 0)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_sft_read: %s has no rows to learn from (%s); "
                          "expected one JSON object per line", path,
                          d->dropped ? "every row was cut to nothing to learn by max_length"
                                     : "the file is empty or blank");
    if (ok && !(d->lengths = malloc(sizeof *d->lengths * (size_t)d->n_rows)))
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_sft_read: %s: out of host memory", path);
    for (int64_t i = 0; ok && i < d->n_rows; i++)
        d->lengths[i] = d->rows[i].n;
    if (!ok) {
        kg_sft_free(d);
        return NULL;
    }
    return d;
}

/* ---- The loss ------------------------------------------------------------------------------ */

kg_tensor *kg_sft_loss(const kg_model *m, const kg_sft_data *d, const int64_t *rows, int64_t n,
                       int64_t *tokens)
{
    if (!m || kg_ctx_status(m->ctx))
        return NULL;
    kg_ctx *ctx = m->ctx;
    if (!d || !rows || n < 1 || !m->lm_head.weight)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_sft_loss: expected rows of SFT data and a "
                            "causal LM"), NULL;
    /* (R, T): the inputs are each row but its last token; position j predicts token j + 1. */
    int64_t R = n, T = 0, P = 0, V = m->cfg.vocab_size;
    for (int64_t i = 0; i < R; i++) {
        if (rows[i] < 0 || rows[i] >= d->n_rows)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_sft_loss: row %lld of %lld rows",
                                (long long)rows[i], (long long)d->n_rows), NULL;
        const kg_sft_row *w = &d->rows[rows[i]];
        T = w->n - 1 > T ? w->n - 1 : T;
        for (int64_t j = 1; j < w->n; j++)
            P += w->mask[j];
    }
    int32_t *ids = calloc((size_t)(R * T), sizeof *ids);
    int32_t *pick = malloc(sizeof *pick * (size_t)P), *target = malloc(sizeof *target * (size_t)P);
    kg_tensor *out = NULL;
    bool ok = (ids && pick && target) ||
              kg_set_error(ctx, KG_ERR_NOMEM, "kg_sft_loss: out of host memory");
    for (int64_t i = 0, p = 0; ok && i < R; i++) {
        const kg_sft_row *w = &d->rows[rows[i]];
        memcpy(ids + i * T, w->ids, sizeof *ids * (size_t)(w->n - 1));
        for (int64_t j = 1; j < w->n; j++) {
            if (w->ids[j] < 0 || w->ids[j] >= V || w->ids[j - 1] >= V)
                ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_sft_loss: %s line %lld: token id %d is "
                                  "outside the model's vocabulary of %lld; expected the model's "
                                  "own tokenizer", d->path, (long long)w->line,
                                  w->ids[j] >= V ? w->ids[j] : w->ids[j - 1], (long long)V);
            if (ok && w->mask[j]) {
                pick[p] = (int32_t)(i * T + j - 1);
                target[p++] = w->ids[j];
            }
        }
    }
    if (ok) {
        /* The head runs on the label positions alone: P rows, not R·T. */
        kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){R, T}, ids)};
        kg_tensor *h = kg_reshape(kg_model_hidden(m, &in, NULL), 2, (int64_t[]){R * T, -1});
        kg_tensor *sel = kg_embedding(h, kg_from_host(ctx, KG_DTYPE_I32, 1, &P, pick));
        /* the mean NLL, through the fused head (tensor/ops/lm_head.c): the P × V logits are
         * never formed, and the head costs two GEMM passes */
        kg_tensor *lp = kg_linear_log_probs(&m->lm_head, sel,
                                            kg_from_host(ctx, KG_DTYPE_I32, 1, &P, target), -100);
        out = kg_scale(kg_sum_all(lp), -1.0f / (float)P);
        if (tokens)
            *tokens = R * T;
    }
    free(ids);
    free(pick);
    free(target);
    return out;
}

static int64_t labels_of(const kg_sft_row *w)
{
    int64_t k = 0;
    for (int64_t j = 1; j < w->n; j++)
        k += w->mask[j];
    return k;
}

bool kg_sft_evaluate(kg_model *m, const kg_sft_data *d, int64_t batch, kg_sft_eval *out)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    if (!d || !out || batch < 1)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_sft_evaluate: expected SFT data and batch >= 1");
    int64_t *rows = malloc(sizeof *rows * (size_t)batch);
    if (!rows)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_sft_evaluate: out of host memory");
    kg_model_train(m, false, 0);
    kg_no_grad_begin(ctx);
    double nll = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < d->n_rows && !kg_ctx_status(ctx); i += batch) {
        int64_t n = d->n_rows - i < batch ? d->n_rows - i : batch, k = 0;
        for (int64_t j = 0; j < n; j++) {
            rows[j] = i + j;
            k += labels_of(&d->rows[i + j]);
        }
        kg_scope scope = kg_scope_begin(ctx);
        kg_tensor *loss = kg_sft_loss(m, d, rows, n, NULL);
        if (loss)
            nll += kg_item(loss) * (double)k;
        count += k;
        kg_scope_end(ctx, scope);
    }
    kg_no_grad_end(ctx);
    free(rows);
    if (kg_ctx_status(ctx))
        return false;
    out->loss_tokens = count;
    out->loss = count ? nll / (double)count : NAN;
    out->perplexity = exp(out->loss);
    return true;
}

/* ---- A run --------------------------------------------------------------------------------- */

typedef struct sft_run {
    kg_model *m;
    const kg_sft_data *train, *eval;
    int64_t batch;
} sft_run;

static kg_tensor *source_loss(void *user, const int64_t *examples, int64_t n, int64_t *tokens)
{
    const sft_run *s = user;
    return kg_sft_loss(s->m, s->train, examples, n, tokens);
}

static bool run_eval(void *user, kg_trainer *t, int64_t step, bool last, FILE *mf,
                     kg_run_result *out)
{
    (void)t;
    (void)last;
    const sft_run *s = user;
    kg_sft_eval e;
    if (!kg_sft_evaluate(s->m, s->eval, s->batch, &e))
        return false;
    out->eval_loss = e.loss;
    out->eval_perplexity = e.perplexity;
    out->eval_loss_tokens = e.loss_tokens;
    if (mf) {
        fprintf(mf, "{\"step\": %lld, \"eval_loss\": ", (long long)step);
        kg__json_number(mf, e.loss);
        fputs(", \"eval_perplexity\": ", mf);
        kg__json_number(mf, e.perplexity);
        fprintf(mf, ", \"eval_tokens\": %lld}\n", (long long)e.loss_tokens);
        fflush(mf);
    }
    return true;
}

bool kg_sft_run(kg_model *m, const kg_sft_data *train, const kg_sft_data *eval,
                const kg_train_config *cfg, const kg_run_options *opts, bool group_by_length,
                kg_run_result *out)
{
    if (!m || kg_ctx_status(m->ctx) || !out)
        return false;
    *out = (kg_run_result){.first_loss = NAN, .last_loss = NAN, .eval_loss = NAN,
                           .eval_perplexity = NAN};
    if (!train || !cfg)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_sft_run: NULL argument");
    sft_run s = {.m = m, .train = train, .eval = eval, .batch = cfg->batch};
    kg_train_source src = {.n = train->n_rows, .loss = source_loss, .user = &s,
                           .lengths = group_by_length ? train->lengths : NULL,
                           .name = train->path};
    kg_trainer *t = kg_trainer_new_source(m, &src, cfg);
    bool ok = t && kg__train_run_trainer(t, opts, eval ? run_eval : NULL, &s, out);
    kg_trainer_free(t);
    return ok;
}
