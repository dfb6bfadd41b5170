/* eval.c — multiple-choice scoring as lm-evaluation-harness does it. Decoders: every choice is a
 * (context, continuation) request tokenized by _encode_pair; the rows of a batch are padded on
 * the right (a causal model never looks at later positions, so padding changes nothing and
 * needs no mask), only the positions that predict continuation tokens go through the LM head,
 * and each row's log-likelihood is the sum of its continuation tokens' log-probabilities.
 * Encoders: [CLS] first [SEP] second [SEP] per choice, shaped (N, K, T) for the model's
 * multiple-choice head. Then acc and acc_norm as lm-eval's process_results.
 */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MISSING_SCORE -1e9f        /* a choice an item lacks: never the argmax, no softmax mass */
#define EVAL_ROW_TOKENS 4096       /* rows × T of one evaluation batch */
#define EVAL_LOGIT_FLOATS (1 << 24) /* P × V of one evaluation batch's picked logits */
#define ENCODER_EVAL_ITEMS 8

bool kg_mc_is_decoder(const kg_mc_scorer *s)
{
    return s && s->model &&
           (s->model->cfg.arch == KG_ARCH_MISTRAL || s->model->cfg.arch == KG_ARCH_LLAMA);
}

const char *kg_mc_loss_name(kg_mc_loss loss)
{
    return loss == KG_MC_LOSS_CHOICES ? "choices" : "gold";
}

static int32_t *encode_text(void *tok, const char *text, int64_t *n)
{
    return kg_tokenizer_encode(tok, text, false, n);
}

static bool check_scorer(const kg_mc_scorer *s, const char *fn)
{
    if (!s || !s->model || !s->tok)
        return false;
    kg_ctx *ctx = s->model->ctx;
    if (kg_ctx_status(ctx))
        return false;
    const kg_model_config *c = &s->model->cfg;
    if (kg_mc_is_decoder(s) && c->head != KG_HEAD_CAUSAL_LM)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the decoder has no LM head (config.json names "
                            "a base model); scoring needs *ForCausalLM", fn);
    if (!kg_mc_is_decoder(s) && c->head != KG_HEAD_MULTIPLE_CHOICE)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the encoder has no multiple-choice head; "
                            "expected a *ForMultipleChoice checkpoint or an adapter that "
                            "trained one", fn);
    if (s->max_length < 0)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: max_length %lld; expected >= 0", fn,
                            (long long)s->max_length);
    return true;
}

/* Tokens in one row: max_length when set (decoders may go past the config's context length, as
 * lm-eval's max_length may: RoPE has no table), never past an encoder's learned positions. */
static int64_t row_limit(const kg_mc_scorer *s)
{
    int64_t pos = s->model->cfg.max_positions;
    if (s->max_length > 0 && (kg_mc_is_decoder(s) || pos <= 0 || s->max_length < pos))
        return s->max_length;
    return pos;
}

/* ---- Decoder rows ------------------------------------------------------------------------ */

/* One request: full = context + continuation ids (after lm-eval's left truncation to
 * max_length + 1); the model reads full[0 .. n-2] and its last n_cont positions predict the
 * continuation full[n - n_cont .. n-1]. */
typedef struct dec_row {
    int32_t *full;
    int64_t n, n_cont;
    const kg_mc_item *item; /* the rows of one item lie together and may share a prompt */
} dec_row;

typedef struct dec_rows {
    dec_row *row;
    int64_t n_rows, cap;
    int64_t T, P; /* the longest row read, continuation tokens in all */
} dec_rows;

static void rows_truncate(dec_rows *r, int64_t keep)
{
    for (int64_t i = keep; i < r->n_rows; i++)
        free(r->row[i].full);
    r->n_rows = keep;
    r->T = r->P = 0;
    for (int64_t i = 0; i < keep; i++) {
        if (r->row[i].n - 1 > r->T)
            r->T = r->row[i].n - 1;
        r->P += r->row[i].n_cont;
    }
}

static void rows_free(dec_rows *r)
{
    rows_truncate(r, 0);
    free(r->row);
    *r = (dec_rows){0};
}

/* Tokenize one request and append it. */
static bool rows_add(const kg_mc_scorer *s, dec_rows *r, const kg_mc_item *item,
                     const char *context, const char *continuation)
{
    kg_ctx *ctx = s->model->ctx;
    int32_t bos = kg_tokenizer_special(s->tok, KG_TOKEN_BOS);
    int32_t eos = kg_tokenizer_special(s->tok, KG_TOKEN_EOS);
    int32_t prefix = bos >= 0 ? bos : eos; /* lm-eval's prefix_token_id */
    int32_t *c_ids = NULL, *k_ids = NULL;
    int64_t nc = 0, nk = 0;
    if (!kg_mc_encode_request(ctx, encode_text, s->tok, kg_tokenizer_adds_bos(s->tok) ? bos : -1,
                              prefix, context, continuation, &c_ids, &nc, &k_ids, &nk))
        return false;
    int64_t max_len = row_limit(s), V = s->model->cfg.vocab_size;
    bool ok = true;
    if (nk < 1 || nk > max_len || nc < 1)
        ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_mc_scores: item %s (line %lld): the continuation "
                          "\"%.40s\" gives %lld tokens after a context of %lld; expected 1 to %lld "
                          "(max_length) after at least one", item->id, (long long)item->line,
                          continuation, (long long)nk, (long long)nc, (long long)max_len);
    int64_t n = nc + nk, drop = n > max_len + 1 ? n - (max_len + 1) : 0;
    int32_t *full = ok ? malloc(sizeof *full * (size_t)n) : NULL;
    if (ok && !full)
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
    if (ok) {
        memcpy(full, c_ids, sizeof *full * (size_t)nc);
        memcpy(full + nc, k_ids, sizeof *full * (size_t)nk);
        for (int64_t i = 0; i < n && ok; i++)
            if (full[i] < 0 || full[i] >= V)
                ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_mc_scores: item %s: token id %d is "
                                  "outside the model's vocabulary of %lld", item->id, full[i],
                                  (long long)V);
        if (drop)
            memmove(full, full + drop, sizeof *full * (size_t)(n - drop));
    }
    if (ok && r->n_rows == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 16;
        dec_row *p = realloc(r->row, sizeof *p * (size_t)cap);
        if (!p)
            ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
        else
            r->row = p, r->cap = cap;
    }
    if (ok) {
        r->row[r->n_rows++] = (dec_row){.full = full, .n = n - drop, .n_cont = nk, .item = item};
        if (n - drop - 1 > r->T)
            r->T = n - drop - 1;
        r->P += nk;
    } else {
        free(full);
    }
    free(c_ids);
    free(k_ids);
    return ok;
}

/* Every choice of the item as a row (gold_only: its gold choice alone). */
static bool rows_add_item(const kg_mc_scorer *s, dec_rows *r, const kg_mc_item *item,
                          bool gold_only)
{
    kg_mc_pairs *pairs = kg_mc_decoder_requests(s->model->ctx, s->kind, item);
    bool ok = pairs != NULL;
    for (int k = 0; ok && k < pairs->n; k++)
        if (!gold_only || k == item->gold)
            ok = rows_add(s, r, item, pairs->first[k], pairs->second[k]);
    kg_mc_pairs_free(pairs);
    return ok;
}

/* Each row read whole, right-padded as (R, T): ids, and where each continuation token's
 * predicting position lies in the (R·T) positions. */
static void whole_ids(const dec_rows *r, int32_t *ids, int32_t *pick, int32_t *target)
{
    int64_t T = r->T;
    for (int64_t i = 0, p = 0; i < r->n_rows; i++) {
        const dec_row *w = &r->row[i];
        memcpy(ids + i * T, w->full, sizeof *ids * (size_t)(w->n - 1));
        for (int64_t j = 0; j < w->n_cont; j++, p++) {
            int64_t at = w->n - w->n_cont - 1 + j; /* the position that predicts it */
            pick[p] = (int32_t)(i * T + at);
            target[p] = w->full[at + 1];
        }
    }
}

/* The rows of one item share the tokens their reads have in common (the question, for choices
 * that differ after it): a prompt read once, then each row's suffix (kg_prefix_layout). */
typedef struct shared_rows {
    int64_t G, Lp, S;
    int64_t *prompt_len; /* (G) */
    int32_t *group;      /* (R) */
} shared_rows;

/* How many first tokens b shares with a: at most n, and short of b's last read position. */
static int64_t common_prefix(const dec_row *a, const dec_row *b, int64_t n)
{
    int64_t i = 0;
    while (i < n && i < b->n - 2 && a->full[i] == b->full[i])
        i++;
    return i;
}

/* Group r's rows by item and size the layout; the positions it runs, G·Lp + R·S. Each row
 * keeps at least its last read position as its suffix: choices of one token (letters after a
 * question that lists them) read the same tokens, and the layout needs S >= 1. */
static int64_t share_rows(const dec_rows *r, shared_rows *sh)
{
    sh->G = sh->Lp = sh->S = 0;
    for (int64_t i = 0; i < r->n_rows;) {
        int64_t end = i + 1, L = r->row[i].n - 2;
        for (; end < r->n_rows && r->row[end].item == r->row[i].item; end++)
            L = common_prefix(&r->row[i], &r->row[end], L);
        for (int64_t k = i; k < end; k++) {
            sh->group[k] = (int32_t)sh->G;
            if (r->row[k].n - 1 - L > sh->S)
                sh->S = r->row[k].n - 1 - L;
        }
        sh->prompt_len[sh->G++] = L;
        if (L > sh->Lp)
            sh->Lp = L;
        i = end;
    }
    return sh->G * sh->Lp + r->n_rows * sh->S;
}

/* The rows laid out as sh: the prompts left-padded to Lp, then the suffixes right-padded to S;
 * a continuation token's predicting position is in its prompt or in its suffix. */
static void shared_ids(const dec_rows *r, const shared_rows *sh, int32_t *ids, int32_t *pick,
                       int32_t *target)
{
    int64_t Lp = sh->Lp, np = sh->G * Lp;
    for (int64_t i = 0, p = 0; i < r->n_rows; i++) {
        const dec_row *w = &r->row[i];
        int64_t g = sh->group[i], L = sh->prompt_len[g], pad = Lp - L;
        memcpy(ids + g * Lp + pad, w->full, sizeof *ids * (size_t)L); /* the same for its rows */
        memcpy(ids + np + i * sh->S, w->full + L, sizeof *ids * (size_t)(w->n - 1 - L));
        for (int64_t j = 0; j < w->n_cont; j++, p++) {
            int64_t at = w->n - w->n_cont - 1 + j;
            pick[p] = (int32_t)(at < L ? g * Lp + pad + at : np + i * sh->S + at - L);
            target[p] = w->full[at + 1];
        }
    }
}

/* The log-probability of every continuation token (P). Each item's prompt runs once for its
 * rows when that runs fewer positions than the whole rows (and the scorer allows it). */
static kg_tensor *token_log_probs(const kg_mc_scorer *s, const dec_rows *r, int64_t *positions)
{
    kg_ctx *ctx = s->model->ctx;
    int64_t R = r->n_rows, T = r->T, P = r->P;
    shared_rows sh = {.prompt_len = malloc(sizeof(int64_t) * (size_t)R),
                      .group = malloc(sizeof(int32_t) * (size_t)R)};
    int64_t run = R * T;
    bool share = false;
    if (sh.prompt_len && sh.group && !s->whole_rows) {
        int64_t n = share_rows(r, &sh);
        share = sh.Lp > 0 && n < run;
        run = share ? n : run;
    }
    int32_t *ids = calloc((size_t)run, sizeof *ids);
    int32_t *pick = malloc(sizeof *pick * (size_t)P), *target = malloc(sizeof *target * (size_t)P);
    kg_tensor *out = NULL;
    if (!ids || !pick || !target || !sh.prompt_len || !sh.group) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
    } else {
        kg_tensor *flat; /* (positions, C) */
        if (share) {
            shared_ids(r, &sh, ids, pick, target);
            kg_prefix_layout l;
            if (kg_prefix_layout_init(ctx, &l, sh.G, sh.Lp, sh.prompt_len, R, sh.S, sh.group,
                                      s->model->cfg.sliding_window))
                flat = kg_model_hidden_prefixed(s->model, kg_from_host(ctx, KG_DTYPE_I32, 1,
                                                                       &run, ids), &l);
            else
                flat = NULL;
        } else {
            whole_ids(r, ids, pick, target);
            kg_model_input in = {.ids = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){R, T}, ids)};
            flat = kg_reshape(kg_model_hidden(s->model, &in, NULL), 2, (int64_t[]){R * T, -1});
        }
        kg_tensor *sel = kg_embedding(flat, kg_from_host(ctx, KG_DTYPE_I32, 1, &P, pick));
        kg_tensor *tgt = kg_from_host(ctx, KG_DTYPE_I32, 1, &P, target);
        out = kg_linear_log_probs(&s->model->lm_head, sel, tgt, -1); /* (P), the head fused */
    }
    if (positions)
        *positions = run;
    free(ids);
    free(pick);
    free(target);
    free(sh.prompt_len);
    free(sh.group);
    return out;
}

/* Σ of each row's continuation log-probabilities: (R, P) 0/1 · (P, 1) → (R). */
static kg_tensor *row_sums(kg_ctx *ctx, const dec_rows *r, kg_tensor *tok_ll)
{
    int64_t R = r->n_rows, P = r->P;
    float *seg = calloc((size_t)(R * P), sizeof *seg);
    if (!seg) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
        return NULL;
    }
    for (int64_t i = 0, p = 0; i < R; i++)
        for (int64_t j = 0; j < r->row[i].n_cont; j++, p++)
            seg[i * P + p] = 1.0f;
    kg_tensor *m = kg_from_host(ctx, KG_DTYPE_F32, 2, (int64_t[]){R, P}, seg);
    free(seg);
    return kg_reshape(kg_matmul(m, kg_reshape(tok_ll, 2, (int64_t[]){P, 1})), 1, &R);
}

/* rows (R), the choices of items in order, placed into (N, K) with MISSING_SCORE where an item
 * has fewer than K choices. */
static kg_tensor *place_choices(kg_ctx *ctx, kg_tensor *rows, const kg_mc_item *const *items,
                                int n, int K)
{
    int64_t R = kg_tensor_dim(rows, 0);
    if (R == (int64_t)n * K) /* every item has K choices: the rows are (N, K) already */
        return kg_reshape(rows, 2, (int64_t[]){n, K});
    float *place = calloc((size_t)(n * K * R), sizeof *place);
    float *miss = calloc((size_t)(n * K), sizeof *miss);
    kg_tensor *out = NULL;
    if (!place || !miss) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
    } else {
        int64_t r = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++) {
                if (k < items[i]->n_choices)
                    place[(i * K + k) * R + r++] = 1.0f;
                else
                    miss[i * K + k] = MISSING_SCORE;
            }
        kg_tensor *P = kg_from_host(ctx, KG_DTYPE_F32, 2, (int64_t[]){(int64_t)n * K, R}, place);
        kg_tensor *M = kg_from_host(ctx, KG_DTYPE_F32, 2, (int64_t[]){n, K}, miss);
        kg_tensor *placed = kg_matmul(P, kg_reshape(rows, 2, (int64_t[]){R, 1}));
        out = kg_add(kg_reshape(placed, 2, (int64_t[]){n, K}), M);
    }
    free(place);
    free(miss);
    return out;
}

static int most_choices(const kg_mc_item *const *items, int n)
{
    int K = 0;
    for (int i = 0; i < n; i++)
        if (items[i]->n_choices > K)
            K = items[i]->n_choices;
    return K;
}

/* The scores (N, K) of the items whose rows r holds, in order. */
static kg_tensor *decoder_scores(const kg_mc_scorer *s, const dec_rows *r,
                                 const kg_mc_item *const *items, int n, int64_t *tokens)
{
    kg_ctx *ctx = s->model->ctx;
    return place_choices(ctx, row_sums(ctx, r, token_log_probs(s, r, tokens)), items, n,
                         most_choices(items, n));
}

/* ---- Encoder pairs ----------------------------------------------------------------------- */

static kg_tensor *encoder_scores(const kg_mc_scorer *s, const kg_mc_item *const *items, int n,
                                 int64_t *tokens)
{
    kg_ctx *ctx = s->model->ctx;
    int K = most_choices(items, n);
    int64_t rows = (int64_t)n * K;
    const char **first = calloc((size_t)rows, sizeof *first);
    const char **second = calloc((size_t)rows, sizeof *second);
    kg_mc_pairs **pairs = calloc((size_t)n, sizeof *pairs);
    float *miss = calloc((size_t)rows, sizeof *miss);
    kg_tensor *out = NULL;
    bool ok = first && second && pairs && miss;
    if (!ok)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_scores: out of host memory");
    for (int i = 0; ok && i < n; i++) {
        ok = (pairs[i] = kg_mc_encoder_pairs(ctx, s->kind, items[i])) != NULL;
        for (int k = 0; ok && k < K; k++) {
            bool have = k < pairs[i]->n;
            first[i * K + k] = have ? pairs[i]->first[k] : "";
            second[i * K + k] = have ? pairs[i]->second[k] : "";
            miss[i * K + k] = have ? 0.0f : MISSING_SCORE;
        }
    }
    kg_token_batch b = {0};
    kg_encode_opts eo = {.add_special = true, .max_length = row_limit(s)};
    if (ok && kg_tokenizer_encode_batch(s->tok, rows, first, second, &eo, &b)) {
        int64_t shape[3] = {n, K, b.len};
        kg_model_input in = {
            .ids = kg_from_host(ctx, KG_DTYPE_I32, 3, shape, b.ids),
            .attention_mask = kg_from_host(ctx, KG_DTYPE_I32, 3, shape, b.mask),
            .token_types = s->model->token_types.weight
                               ? kg_from_host(ctx, KG_DTYPE_I32, 3, shape, b.type_ids)
                               : NULL,
        };
        out = kg_add(kg_model_logits(s->model, &in, NULL),
                     kg_from_host(ctx, KG_DTYPE_F32, 2, (int64_t[]){n, K}, miss));
        if (tokens)
            *tokens = rows * b.len;
    }
    kg_token_batch_free(&b);
    for (int i = 0; pairs && i < n; i++)
        kg_mc_pairs_free(pairs[i]);
    free(pairs);
    free(first);
    free(second);
    free(miss);
    return out;
}

/* ---- Scores and losses ------------------------------------------------------------------- */

static bool check_items(const kg_mc_scorer *s, const char *fn, const kg_mc_item *const *items,
                        int n, bool labeled)
{
    if (!check_scorer(s, fn))
        return false;
    if (!items || n < 1)
        return kg_set_error(s->model->ctx, KG_ERR_ARG, "%s: %d items; expected at least one",
                            fn, n);
    for (int i = 0; i < n; i++) {
        if (!items[i] || items[i]->n_choices < 1)
            return kg_set_error(s->model->ctx, KG_ERR_ARG, "%s: item %d has no choices", fn, i);
        if (labeled && (items[i]->gold < 0 || items[i]->gold >= items[i]->n_choices))
            return kg_set_error(s->model->ctx, KG_ERR_ARG, "%s: item %s (line %lld) has no gold "
                                "answer; training needs labeled items", fn, items[i]->id,
                                (long long)items[i]->line);
    }
    return true;
}

kg_tensor *kg_mc_scores(const kg_mc_scorer *s, const kg_mc_item *const *items, int n,
                        int64_t *tokens)
{
    if (!check_items(s, "kg_mc_scores", items, n, false))
        return NULL;
    if (!kg_mc_is_decoder(s))
        return encoder_scores(s, items, n, tokens);
    dec_rows r = {0};
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = rows_add_item(s, &r, items[i], false);
    kg_tensor *out = ok ? decoder_scores(s, &r, items, n, tokens) : NULL;
    rows_free(&r);
    return out;
}

kg_tensor *kg_mc_loss_of(const kg_mc_scorer *s, kg_mc_loss loss, const kg_mc_item *const *items,
                         int n, int64_t *tokens)
{
    if (!check_items(s, "kg_mc_loss_of", items, n, true))
        return NULL;
    kg_ctx *ctx = s->model->ctx;
    if (kg_mc_is_decoder(s) && loss == KG_MC_LOSS_GOLD) {
        /* The mean NLL of the gold continuations' tokens, as HF's causal-LM loss over them. */
        dec_rows r = {0};
        bool ok = true;
        for (int i = 0; i < n && ok; i++)
            ok = rows_add_item(s, &r, items[i], true);
        kg_tensor *out = NULL;
        if (ok) {
            out = kg_scale(kg_sum_all(token_log_probs(s, &r, tokens)), -1.0f / (float)r.P);
        }
        rows_free(&r);
        return out;
    }
    int32_t *gold = malloc(sizeof *gold * (size_t)n);
    if (!gold) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_loss_of: out of host memory");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        gold[i] = items[i]->gold;
    kg_tensor *scores = kg_mc_scores(s, items, n, tokens); /* (N, K) */
    kg_tensor *out = kg_cross_entropy(scores, kg_from_host(ctx, KG_DTYPE_I32, 1,
                                                           (int64_t[]){n}, gold), -100);
    free(gold);
    return out;
}

/* ---- Evaluation -------------------------------------------------------------------------- */

typedef struct eval_state {
    const kg_mc_scorer *s;
    kg_eval_result *r;
    FILE *predictions; /* or NULL */
    int64_t correct, correct_norm;
} eval_state;

static void write_prediction(FILE *f, const kg_mc_item *item, const double *scores, int pred)
{
    fputs("{\"id\": ", f);
    kg__json_string(f, item->id);
    fputs(", \"scores\": [", f);
    for (int k = 0; k < item->n_choices; k++) {
        fputs(k ? ", " : "", f);
        kg__json_number(f, scores[k]);
    }
    fprintf(f, "], \"pred\": %d, \"gold\": %d}\n", pred, item->gold);
}

/* Score items[0..n) in one forward pass (a decoder's rows already tokenized in r) and count
 * them. */
static bool eval_batch(eval_state *e, const dec_rows *r, const kg_mc_item *const *items, int n)
{
    const kg_mc_scorer *s = e->s;
    kg_ctx *ctx = s->model->ctx;
    bool decoder = r != NULL;
    kg_scope scope = kg_scope_begin(ctx);
    int64_t tokens = 0;
    kg_tensor *scores = decoder ? decoder_scores(s, r, items, n, &tokens)
                                : encoder_scores(s, items, n, &tokens);
    float *v = scores ? kg_tensor_to_f32(scores) : NULL;
    kg_scope_end(ctx, scope);
    if (!v)
        return kg_ctx_status(ctx) ? false
                                  : kg_set_error(ctx, KG_ERR_NOMEM, "kg_mc_evaluate: out of "
                                                 "host memory");
    int K = most_choices(items, n);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        const kg_mc_item *it = items[i];
        double sc[KG_MC_MAX_CHOICES];
        int64_t len[KG_MC_MAX_CHOICES];
        for (int k = 0; k < it->n_choices; k++)
            sc[k] = v[i * K + k];
        int pred = kg_mc_argmax(sc, it->n_choices), pred_norm = -1;
        if (decoder) {
            kg_mc_pairs *pairs = kg_mc_decoder_requests(ctx, s->kind, it);
            if (!(ok = pairs != NULL))
                break;
            memcpy(len, pairs->norm_len, sizeof *len * (size_t)it->n_choices);
            kg_mc_pairs_free(pairs);
            pred_norm = kg_mc_argmax_norm(sc, len, it->n_choices);
        }
        if (it->gold >= 0) {
            e->r->labeled++;
            e->correct += pred == it->gold;
            e->correct_norm += pred_norm == it->gold;
        }
        e->r->n++;
        if (e->predictions)
            write_prediction(e->predictions, it, sc, pred);
    }
    e->r->tokens += tokens;
    free(v);
    return ok;
}

bool kg_mc_evaluate(const kg_mc_scorer *s, const kg_task *task, const kg_eval_options *opts,
                    kg_eval_result *out)
{
    if (!out || !check_scorer(s, "kg_mc_evaluate"))
        return false;
    *out = (kg_eval_result){.acc = NAN, .acc_norm = NAN};
    kg_ctx *ctx = s->model->ctx;
    if (!task || task->n_items < 1)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_mc_evaluate: no items to score");
    int64_t n = opts && opts->limit > 0 && opts->limit < task->n_items ? opts->limit
                                                                        : task->n_items;
    bool decoder = kg_mc_is_decoder(s);
    eval_state e = {.s = s, .r = out};
    char *tmp = NULL;
    if (opts && opts->predictions &&
        !(e.predictions = kg__atomic_open(ctx, opts->predictions, &tmp)))
        return false;
    double t0 = kg__now();
    kg_model_train(s->model, false, 0);
    kg_no_grad_begin(ctx);
    const kg_mc_item *batch[EVAL_ROW_TOKENS];
    bool ok = true;
    int64_t i = 0;
    while (ok && i < n) {
        int nb = 0;
        dec_rows r = {0};
        if (decoder) {
            /* As many items as fit the batch's budget (at least one). */
            int64_t V = s->model->cfg.vocab_size;
            while (ok && i + nb < n && nb < EVAL_ROW_TOKENS) {
                int64_t before = r.n_rows;
                ok = rows_add_item(s, &r, &task->items[i + nb], false);
                if (ok && nb > 0 && (r.n_rows * r.T > EVAL_ROW_TOKENS ||
                                     r.P * V > EVAL_LOGIT_FLOATS)) {
                    rows_truncate(&r, before);
                    break;
                }
                batch[nb] = &task->items[i + nb];
                nb++;
            }
        } else {
            for (; i + nb < n && nb < ENCODER_EVAL_ITEMS; nb++)
                batch[nb] = &task->items[i + nb];
        }
        ok = ok && eval_batch(&e, decoder ? &r : NULL, batch, nb);
        rows_free(&r);
        i += nb;
    }
    kg_no_grad_end(ctx);
    if (e.predictions)
        ok = kg__atomic_close(ctx, e.predictions, tmp, opts->predictions, ok);
    out->seconds = kg__now() - t0;
    if (out->labeled > 0) {
        out->acc = (double)e.correct / (double)out->labeled;
        out->acc_norm = decoder ? (double)e.correct_norm / (double)out->labeled : NAN;
    }
    return ok;
}
