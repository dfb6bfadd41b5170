/* requests.c — what a multiple-choice item becomes before a model sees it: lm-evaluation-harness's
 * (context, continuation) requests for decoders, sentence pairs for encoders, the token ids of a
 * request as lm-eval's _encode_pair cuts them, and acc / acc_norm's argmax.
 *
 * The string steps copy Python's semantics where lm-eval relies on them: str.strip() strips
 * Unicode whitespace, len() counts code points, str.capitalize() title-cases the first character
 * and lower-cases the rest.
 */
#include "tensor/strbuf.h"
#include "train/kg_tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- Python string semantics ------------------------------------------------------------- */

/* The code point at s[0..n) and its byte length; an invalid byte reads as itself, length 1. */
static int32_t next_cp(const char *s, size_t n, size_t *adv)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t got = utf8proc_iterate((const utf8proc_uint8_t *)s,
                                            n > 4 ? 4 : (utf8proc_ssize_t)n, &cp);
    if (got <= 0) {
        *adv = 1;
        return -1;
    }
    *adv = (size_t)got;
    return cp;
}

/* Python's str.isspace(): the characters str.strip() removes. */
static bool py_isspace(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The byte range [*start, *end) of s[0..n) that Python's strip() keeps. */
static void py_strip_range(const char *s, size_t n, size_t *start, size_t *end)
{
    size_t i = 0, adv, first = n, last = 0;
    while (i < n) {
        int32_t c = next_cp(s + i, n - i, &adv);
        if (!py_isspace(c)) {
            if (first == n)
                first = i;
            last = i + adv;
        }
        i += adv;
    }
    *start = first == n ? 0 : first;
    *end = first == n ? 0 : last;
}

int64_t kg_utf8_length(const char *text)
{
    if (!text)
        return 0;
    size_t n = strlen(text), i = 0, adv;
    int64_t count = 0;
    for (; i < n; i += adv, count++)
        next_cp(text + i, n - i, &adv);
    return count;
}

typedef kg__strbuf sbuf; /* a failed allocation: failed, and take() gives NULL */

static void sb_add(sbuf *b, const char *s)
{
    kg__strbuf_add(b, s, strlen(s));
}

/* Python's str.capitalize(), with utf8proc's one-to-one case mappings (Python's few one-to-many
 * ones, such as "ß" -> "Ss" or a final sigma, are not made). */
static void py_capitalize(sbuf *b, const char *s)
{
    size_t n = strlen(s), adv;
    for (size_t i = 0; i < n; i += adv) {
        int32_t c = next_cp(s + i, n - i, &adv);
        if (c < 0) {
            kg__strbuf_add(b, s + i, 1);
            continue;
        }
        utf8proc_uint8_t out[4];
        c = i == 0 ? utf8proc_totitle(c) : utf8proc_tolower(c);
        kg__strbuf_add(b, (const char *)out, (size_t)utf8proc_encode_char(c, out));
    }
}

/* Python's s.replace(from, to): left to right, matches do not overlap. */
static char *py_replace(const char *s, const char *from, const char *to)
{
    sbuf b = {0};
    size_t nf = strlen(from);
    for (const char *hit; (hit = strstr(s, from)); s = hit + nf) {
        kg__strbuf_add(&b, s, (size_t)(hit - s));
        sb_add(&b, to);
    }
    sb_add(&b, s);
    return kg__strbuf_take(&b);
}

/* re.sub("\\[.*?\\]", "", s): each '[' up to the nearest ']' on the same line goes. A '[' whose
 * line has no later ']' stays, and so does every '[' before that line end. */
static char *drop_bracket_tags(const char *s)
{
    sbuf b = {0};
    while (*s) {
        const char *open = strchr(s, '[');
        if (!open)
            break;
        kg__strbuf_add(&b, s, (size_t)(open - s));
        size_t stop = strcspn(open + 1, "]\n") + 1;
        if (open[stop] == ']') {
            s = open + stop + 1;
        } else {
            kg__strbuf_add(&b, open, stop);
            s = open + stop;
        }
    }
    sb_add(&b, s);
    return kg__strbuf_take(&b);
}

/* lm-eval's hellaswag preprocess(): strip, " [title]" -> ". ", drop [tags], "  " -> " ". */
static char *hellaswag_preprocess(const char *text)
{
    size_t start, end;
    py_strip_range(text, strlen(text), &start, &end);
    char *stripped = strndup(text + start, end - start);
    char *titled = stripped ? py_replace(stripped, " [title]", ". ") : NULL;
    char *untagged = titled ? drop_bracket_tags(titled) : NULL;
    char *out = untagged ? py_replace(untagged, "  ", " ") : NULL;
    free(stripped);
    free(titled);
    free(untagged);
    return out;
}

/* ---- Pairs ------------------------------------------------------------------------------- */

void kg_mc_pairs_free(kg_mc_pairs *pairs)
{
    if (!pairs)
        return;
    for (int k = 0; k < pairs->n; k++) {
        if (pairs->first)
            free(pairs->first[k]);
        if (pairs->second)
            free(pairs->second[k]);
    }
    free(pairs->first);
    free(pairs->second);
    free(pairs->norm_len);
    free(pairs);
}

static kg_mc_pairs *pairs_new(int n, bool with_norm)
{
    kg_mc_pairs *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n;
    p->first = calloc((size_t)n, sizeof(char *));
    p->second = calloc((size_t)n, sizeof(char *));
    p->norm_len = with_norm ? calloc((size_t)n, sizeof(int64_t)) : NULL;
    if (!p->first || !p->second || (with_norm && !p->norm_len)) {
        kg_mc_pairs_free(p);
        return NULL;
    }
    return p;
}

/* a + b + c as a new string (NULL parts are empty). */
static char *concat3(const char *a, const char *b, const char *c)
{
    sbuf s = {0};
    sb_add(&s, a ? a : "");
    sb_add(&s, b ? b : "");
    sb_add(&s, c ? c : "");
    return kg__strbuf_take(&s);
}

/* Whether the item has what kind's templates read; else the error names what is missing. */
static bool check_item(kg_ctx *ctx, const char *fn, kg_task_kind kind, const kg_mc_item *item)
{
    if (!item || !item->question || !item->choices || item->n_choices < 2 ||
        item->n_choices > KG_MC_MAX_CHOICES)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: item %s has no question or %d choices; "
                            "expected a question and 2 to %d choices", fn,
                            item && item->id ? item->id : "(NULL)", item ? item->n_choices : 0,
                            KG_MC_MAX_CHOICES);
    for (int k = 0; k < item->n_choices; k++)
        if (!item->choices[k])
            return kg_set_error(ctx, KG_ERR_ARG, "%s: item %s: choice %d is NULL", fn,
                                item->id ? item->id : "", k);
    if (kind == KG_TASK_HELLASWAG && (!item->activity || !item->ctx_b))
        return kg_set_error(ctx, KG_ERR_ARG, "%s: item %s has no activity_label or ctx_b; "
                            "expected both for hellaswag", fn, item->id ? item->id : "");
    if (kind == KG_TASK_SIQA && !item->context)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: item %s has no context; expected one for "
                            "social_iqa", fn, item->id ? item->id : "");
    if (kind == KG_TASK_WINOGRANDE && !strchr(item->question, '_'))
        return kg_set_error(ctx, KG_ERR_ARG, "%s: item %s: the sentence has no blank '_'; "
                            "expected one for winogrande", fn, item->id ? item->id : "");
    if ((unsigned)kind >= KG_TASK_KIND_COUNT)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: task kind %d; expected a kg_task_kind", fn,
                            (int)kind);
    return true;
}

kg_mc_pairs *kg_mc_decoder_requests(kg_ctx *ctx, kg_task_kind kind, const kg_mc_item *item)
{
    static const char *fn = "kg_mc_decoder_requests";
    if (!ctx || kg_ctx_status(ctx) || !check_item(ctx, fn, kind, item))
        return NULL;
    int n = item->n_choices;
    kg_mc_pairs *p = pairs_new(n, true);
    bool ok = p != NULL;
    const char *q = item->question;
    char *shared = NULL; /* hellaswag's, commonsense_qa's, social_iqa's context, winogrande's
                          * continuation */
    if (ok && kind == KG_TASK_HELLASWAG) {
        sbuf b = {0};
        sb_add(&b, item->activity);
        sb_add(&b, ": ");
        sb_add(&b, q);
        sb_add(&b, " ");
        py_capitalize(&b, item->ctx_b);
        char *raw = kg__strbuf_take(&b);
        shared = raw ? hellaswag_preprocess(raw) : NULL;
        free(raw);
        ok = shared != NULL;
    } else if (ok && kind == KG_TASK_COMMONSENSEQA) {
        /* "Question: {{ question.strip() }}\nA. {{choices['text'][0]}}\n...E. ...\nAnswer:"
         * (lm-eval writes out five; an item of another count gets as many letters). */
        size_t start, end;
        py_strip_range(q, strlen(q), &start, &end);
        sbuf b = {0};
        sb_add(&b, "Question: ");
        kg__strbuf_add(&b, q + start, end - start);
        for (int k = 0; k < n; k++) {
            char head[5] = {'\n', (char)('A' + k), '.', ' ', 0};
            sb_add(&b, head);
            sb_add(&b, item->choices[k]);
        }
        sb_add(&b, "\nAnswer:");
        ok = (shared = kg__strbuf_take(&b)) != NULL;
    } else if (ok && kind == KG_TASK_SIQA) {
        sbuf b = {0}; /* "Q: {{context}} {{question}}\nA:" */
        sb_add(&b, "Q: ");
        sb_add(&b, item->context);
        sb_add(&b, " ");
        sb_add(&b, q);
        sb_add(&b, "\nA:");
        ok = (shared = kg__strbuf_take(&b)) != NULL;
    } else if (ok && kind == KG_TASK_WINOGRANDE) {
        const char *rest = strchr(q, '_') + 1;
        size_t start, end;
        py_strip_range(rest, strlen(rest), &start, &end);
        sbuf b = {0};
        sb_add(&b, " ");
        kg__strbuf_add(&b, rest + start, end - start);
        ok = (shared = kg__strbuf_take(&b)) != NULL;
    }
    for (int k = 0; ok && k < n; k++) {
        const char *choice = item->choices[k];
        char *pre = NULL;
        switch (kind) {
        case KG_TASK_OPENBOOKQA:
            p->first[k] = strdup(q);
            break;
        case KG_TASK_HELLASWAG:
            p->first[k] = strdup(shared);
            choice = pre = hellaswag_preprocess(choice);
            break;
        case KG_TASK_COMMONSENSEQA: /* the choices are the letters */
            p->first[k] = strdup(shared);
            choice = pre = strndup(&"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k], 1);
            break;
        case KG_TASK_SIQA:
            p->first[k] = strdup(shared);
            break;
        case KG_TASK_WINOGRANDE: {
            sbuf b = {0};
            kg__strbuf_add(&b, q, (size_t)(strchr(q, '_') - q));
            sb_add(&b, choice);
            p->first[k] = kg__strbuf_take(&b);
            break;
        }
        default: /* arc, piqa, plain */
            p->first[k] = concat3("Question: ", q, "\nAnswer:");
            break;
        }
        if (kind == KG_TASK_WINOGRANDE) {
            p->second[k] = strdup(shared);
            p->norm_len[k] = p->first[k] ? kg_utf8_length(p->first[k]) : 0;
        } else if (choice) {
            p->second[k] = concat3(" ", choice, NULL);
            p->norm_len[k] = kg_utf8_length(choice);
        }
        free(pre);
        ok = p->first[k] && p->second[k];
    }
    free(shared);
    if (!ok) {
        kg_mc_pairs_free(p);
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: item %s: out of memory", fn, item->id ? item->id : "");
        return NULL;
    }
    return p;
}

kg_mc_pairs *kg_mc_encoder_pairs(kg_ctx *ctx, kg_task_kind kind, const kg_mc_item *item)
{
    static const char *fn = "kg_mc_encoder_pairs";
    if (!ctx || kg_ctx_status(ctx) || !check_item(ctx, fn, kind, item))
        return NULL;
    int n = item->n_choices;
    kg_mc_pairs *p = pairs_new(n, false);
    bool ok = p != NULL;
    for (int k = 0; ok && k < n; k++) {
        const char *choice = item->choices[k];
        if (kind == KG_TASK_HELLASWAG) {
            p->first[k] = strdup(item->question);
            p->second[k] = *item->ctx_b ? concat3(item->ctx_b, " ", choice) : strdup(choice);
        } else if (kind == KG_TASK_WINOGRANDE) {
            /* The WinoGrande authors' baseline: context = sentence[:blank], option_str =
             * "_ " + sentence[blank+1:].strip() with "_" replaced by the option. */
            const char *blank = strchr(item->question, '_');
            const char *rest = blank + 1;
            size_t start, end;
            py_strip_range(rest, strlen(rest), &start, &end);
            p->first[k] = strndup(item->question, (size_t)(blank - item->question));
            sbuf b = {0};
            sb_add(&b, choice);
            sb_add(&b, " ");
            kg__strbuf_add(&b, rest + start, end - start);
            p->second[k] = kg__strbuf_take(&b);
        } else if (kind == KG_TASK_SIQA) {
            p->first[k] = concat3(item->context, " ", item->question);
            p->second[k] = strdup(choice);
        } else {
            p->first[k] = strdup(item->question);
            p->second[k] = strdup(choice);
        }
        ok = p->first[k] && p->second[k];
    }
    if (!ok) {
        kg_mc_pairs_free(p);
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: item %s: out of memory", fn, item->id ? item->id : "");
        return NULL;
    }
    return p;
}

/* ---- Token ids of a request (lm-eval's _encode_pair) -------------------------------------- */

/* ids with bos in front, unless bos < 0 or the text's own encoding already starts with it (as
 * lm-eval's tok_encode adds no BOS to a string that starts with the BOS token). Takes ids. */
static int32_t *with_bos(int32_t *ids, int64_t *n, int32_t bos)
{
    if (bos < 0 || (*n > 0 && ids[0] == bos))
        return ids;
    int32_t *out = malloc((size_t)(*n + 1) * sizeof(int32_t));
    if (out) {
        out[0] = bos;
        memcpy(out + 1, ids, (size_t)*n * sizeof(int32_t));
        (*n)++;
    }
    free(ids);
    return out;
}

/* A copy of ids[from..n) (never NULL on success, even when empty). */
static int32_t *tail_copy(const int32_t *ids, int64_t n, int64_t from, int64_t *out_n)
{
    *out_n = from < n ? n - from : 0;
    int32_t *out = malloc((size_t)(*out_n ? *out_n : 1) * sizeof(int32_t));
    if (out && *out_n)
        memcpy(out, ids + from, (size_t)*out_n * sizeof(int32_t));
    return out;
}

bool kg_mc_encode_request(kg_ctx *ctx, kg_encode_fn encode, void *tok, int32_t bos,
                          int32_t prefix_id, const char *context, const char *continuation,
                          int32_t **ctx_ids, int64_t *n_ctx, int32_t **cont_ids,
                          int64_t *n_cont)
{
    static const char *fn = "kg_mc_encode_request";
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!encode || !context || !continuation || !ctx_ids || !n_ctx || !cont_ids || !n_cont)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: NULL argument", fn);
    int32_t *whole = NULL, *head = NULL, *tail = NULL;
    int64_t n_whole = 0, n_head = 0, n_tail = 0;
    if (!*context) {
        /* lm-eval: the context is [prefix_token_id], unless the continuation's own first
         * token is that id. */
        whole = encode(tok, continuation, &n_whole);
        if (whole) {
            bool own = n_whole > 0 && whole[0] == prefix_id;
            head = tail_copy(own ? whole : &prefix_id, 1, 0, &n_head);
            tail = tail_copy(whole, n_whole, own ? 1 : 0, &n_tail);
        }
    } else {
        /* Trailing whitespace moves to the continuation: only the context's head is encoded
         * alone; the whole string is the same either way. */
        size_t start, end;
        py_strip_range(context, strlen(context), &start, &end);
        char *all = concat3(context, continuation, NULL);
        char *ctx_text = strndup(context, end);
        if (all && ctx_text) {
            whole = encode(tok, all, &n_whole);
            head = whole ? encode(tok, ctx_text, &n_head) : NULL;
        }
        free(all);
        free(ctx_text);
        whole = whole ? with_bos(whole, &n_whole, bos) : NULL;
        head = head ? with_bos(head, &n_head, bos) : NULL;
        if (whole && head)
            tail = tail_copy(whole, n_whole, n_head, &n_tail);
    }
    free(whole);
    if (!head || !tail) {
        free(head);
        free(tail);
        *ctx_ids = *cont_ids = NULL;
        *n_ctx = *n_cont = 0;
        return kg_set_error(ctx, KG_ERR_NOMEM, "%s: the tokenizer failed or memory ran out "
                            "(context of %zu bytes)", fn, strlen(context));
    }
    *ctx_ids = head;
    *n_ctx = n_head;
    *cont_ids = tail;
    *n_cont = n_tail;
    return true;
}

/* ---- Metrics ----------------------------------------------------------------------------- */

/* numpy's argmax of v[k] / div[k] (div NULL: of v[k]): the first maximum, or the first NaN. */
static int argmax_scaled(const double *v, const int64_t *div, int n)
{
    if (!v || n < 1)
        return -1;
    int best = 0;
    double top = 0;
    for (int k = 0; k < n; k++) {
        double x = div ? v[k] / (double)div[k] : v[k];
        if (isnan(x))
            return k;
        if (k == 0 || x > top) {
            best = k;
            top = x;
        }
    }
    return best;
}

int kg_mc_argmax(const double *scores, int n)
{
    return argmax_scaled(scores, NULL, n);
}

int kg_mc_argmax_norm(const double *ll, const int64_t *norm_len, int n)
{
    return norm_len ? argmax_scaled(ll, norm_len, n) : -1;
}
