/* tokenizer.c — the public tokenizer calls: loading (which file a path means), the encode
 * pipeline HF runs (added tokens, normalizer, pre-tokenizer, model, post-processing template),
 * truncation and padding of batches, decoding, and the vocabulary.
 */
#include "models/tokenizer_internal.h"
#include "models/kg_formats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the vocabulary ------------------------------------------------------------------------ */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

bool kg__vocab_init(kg__vocab *v, int32_t n)
{
    v->n = n;
    v->piece = calloc((size_t)n + 1, sizeof *v->piece);
    v->len = calloc((size_t)n + 1, sizeof *v->len);
    return v->piece && v->len;
}

bool kg__vocab_set(kg__vocab *v, int32_t id, const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return false;
    memcpy(p, s, n);
    p[n] = 0;
    free(v->piece[id]);
    v->piece[id] = p;
    v->len[id] = (uint32_t)n;
    return true;
}

bool kg__vocab_index(kg__vocab *v)
{
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)v->n)
        cap *= 2;
    free(v->slot);
    v->slot = malloc(cap * sizeof *v->slot);
    if (!v->slot)
        return false;
    memset(v->slot, 0xff, cap * sizeof *v->slot);
    v->cap = cap;
    /* a piece spelled twice finds its last id, as in a Python dict or llama.cpp's map */
    for (int32_t id = 0; id < v->n; id++) {
        if (!v->piece[id])
            continue;
        uint32_t i = hash_bytes(v->piece[id], v->len[id]) & (cap - 1);
        while (v->slot[i] >= 0 && !(v->len[v->slot[i]] == v->len[id] &&
                                    memcmp(v->piece[v->slot[i]], v->piece[id], v->len[id]) == 0))
            i = (i + 1) & (cap - 1);
        v->slot[i] = id;
    }
    return true;
}

int32_t kg__vocab_find(const kg__vocab *v, const char *s, size_t n)
{
    if (!v->cap)
        return -1;
    for (uint32_t i = hash_bytes(s, n) & (v->cap - 1); v->slot[i] >= 0; i = (i + 1) & (v->cap - 1)) {
        int32_t id = v->slot[i];
        if (v->len[id] == n && memcmp(v->piece[id], s, n) == 0)
            return id;
    }
    return -1;
}

void kg__vocab_free(kg__vocab *v)
{
    for (int32_t i = 0; v->piece && i < v->n; i++)
        free(v->piece[i]);
    free(v->piece);
    free(v->len);
    free(v->score);
    free(v->slot);
    *v = (kg__vocab){0};
}

/* ---- errors and added tokens ---------------------------------------------------------------- */

bool kg__tok_fail(kg_tokenizer *tok, kg_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kg_set_error(tok->ctx, st, "%s: %s", tok->file ? tok->file : "tokenizer", msg);
}

bool kg__tok_add(kg_tokenizer *tok, const char *text, size_t len, int32_t id, bool special)
{
    kg__added *a = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *a);
    char *t = malloc(len + 1);
    if (a)
        tok->added = a;
    if (!a || !t) {
        free(t);
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory for the added tokens");
    }
    memcpy(t, text, len);
    t[len] = 0;
    tok->added[tok->n_added++] = (kg__added){.text = t, .len = len, .id = id, .special = special};
    return true;
}

/* Special ids the loaders left at -1, from well-known token texts. */
static void guess_specials(kg_tokenizer *tok)
{
    static const struct { const char *text; kg_special_token which; } known[] = {
        {"[CLS]", KG_TOKEN_CLS}, {"[SEP]", KG_TOKEN_SEP}, {"[PAD]", KG_TOKEN_PAD},
        {"[UNK]", KG_TOKEN_UNK}, {"[MASK]", KG_TOKEN_MASK}, {"<s>", KG_TOKEN_BOS},
        {"</s>", KG_TOKEN_EOS}, {"<unk>", KG_TOKEN_UNK}, {"<pad>", KG_TOKEN_PAD},
        {"<mask>", KG_TOKEN_MASK}, {"<|endoftext|>", KG_TOKEN_EOS},
        {"<|begin_of_text|>", KG_TOKEN_BOS}, {"<|end_of_text|>", KG_TOKEN_EOS},
    };
    if (tok->special[KG_TOKEN_UNK] < 0)
        tok->special[KG_TOKEN_UNK] = tok->model.unk;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        if (tok->special[known[k].which] >= 0)
            continue;
        for (int i = 0; i < tok->n_added; i++)
            if (tok->added[i].special && strcmp(tok->added[i].text, known[k].text) == 0)
                tok->special[known[k].which] = tok->added[i].id;
    }
}

/* ---- loading --------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static kg_tokenizer *tok_new(kg_ctx *ctx, const char *file)
{
    kg_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_tokenizer_load: out of memory");
        return NULL;
    }
    tok->ctx = ctx;
    tok->file = strdup(file);
    tok->model.unk = -1;
    for (int i = 0; i < 256; i++)
        tok->model.byte_id[i] = -1;
    for (int i = 0; i < KG_TOKEN_COUNT; i++)
        tok->special[i] = -1;
    /* without a post-processor: the sequences alone, the second with type id 1 */
    tok->tpl.single[0] = (kg__tpl_item){.seq = 0};
    tok->tpl.pair[0] = (kg__tpl_item){.seq = 0};
    tok->tpl.pair[1] = (kg__tpl_item){.seq = 1, .type_id = 1};
    tok->tpl.n_single = 1, tok->tpl.n_pair = 2;
    if (!tok->file) {
        free(tok);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_tokenizer_load: out of memory");
        return NULL;
    }
    return tok;
}

/* What every loader leaves to the end: normalized added tokens are matched in normalized text,
 * special ids must lie in the vocabulary. */
static bool tok_finish(kg_tokenizer *tok)
{
    for (int i = 0; i < tok->n_added; i++) {
        kg__added *a = &tok->added[i];
        if (!a->normalized || tok->n_norm == 0)
            continue;
        size_t n;
        char *t = kg__tok_normalize(tok, a->text, a->len, &n);
        if (!t)
            return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
        free(a->text);
        a->text = t, a->len = n;
    }
    guess_specials(tok);
    for (int i = 0; i < KG_TOKEN_COUNT; i++)
        if (tok->special[i] >= tok->vocab.n)
            tok->special[i] = -1;
    return true;
}

static kg_tokenizer *load_file(kg_ctx *ctx, const char *file, const char *dir)
{
    kg_tokenizer *tok = tok_new(ctx, file);
    if (!tok)
        return NULL;
    bool ok;
    if (ends_with(file, ".model"))
        ok = kg__tok_load_spm(tok, dir);
    else if (ends_with(file, ".txt"))
        ok = kg__tok_load_vocab_txt(tok, dir);
    else
        ok = kg__tok_load_json(tok, dir);
    if (ok)
        ok = tok_finish(tok);
    if (!ok) {
        kg_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

kg_tokenizer *kg_tokenizer_load(kg_ctx *ctx, const char *path)
{
    if (!ctx)
        return NULL;
    if (kg_ctx_status(ctx))
        return NULL;
    if (!path)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_tokenizer_load: path is NULL"), NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: no such file or directory; expected an HF "
                            "model directory, tokenizer.json, vocab.txt, a .model or a .gguf "
                            "file", path), NULL;
    if (S_ISDIR(st.st_mode)) {
        static const char *const names[] = {"tokenizer.json", "tokenizer.model", "vocab.txt"};
        for (int i = 0; i < 3; i++) {
            char file[4096];
            snprintf(file, sizeof file, "%s/%s", path, names[i]);
            if (is_file(file))
                return load_file(ctx, file, path);
        }
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the directory holds no tokenizer.json, "
                            "tokenizer.model or vocab.txt", path), NULL;
    }
    if (ends_with(path, ".gguf")) {
        kg_weights *w = kg_weights_open(ctx, path);
        if (!w)
            return NULL;
        kg_tokenizer *tok = kg_tokenizer_from_weights(ctx, w);
        kg_weights_close(w);
        return tok;
    }
    /* the file's directory may hold tokenizer_config.json */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    return load_file(ctx, path, dir);
}

kg_tokenizer *kg_tokenizer_from_weights(kg_ctx *ctx, const kg_weights *w)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (!w)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_tokenizer_from_weights: weights are NULL"),
               NULL;
    kg_tokenizer *tok = tok_new(ctx, kg_weights_path(w));
    if (!tok)
        return NULL;
    if (!kg__tok_load_gguf(tok, w) || !tok_finish(tok)) {
        kg_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

void kg_tokenizer_free(kg_tokenizer *tok)
{
    if (!tok)
        return;
    kg__vocab_free(&tok->vocab);
    for (int i = 0; i < tok->n_added; i++)
        free(tok->added[i].text);
    free(tok->added);
    for (int i = 0; i < tok->n_norm; i++)
        free(tok->norm[i].a), free(tok->norm[i].b);
    for (int i = 0; i < tok->n_pre; i++)
        free(tok->pre[i].replacement);
    for (int i = 0; i < tok->n_dec; i++)
        free(tok->dec[i].a), free(tok->dec[i].b);
    free(tok->model.prefix);
    kg__merges_free(&tok->model.merges);
    free(tok->model.mergeable);
    if (tok->model.spm)
        kg__spm_free(tok->model.spm);
    free(tok->file);
    free(tok);
}

/* ---- encoding ------------------------------------------------------------------------------- */

/* A piece of the text: an added token's id, or text (id -1) for the rest of the pipeline. */
typedef struct seg {
    size_t off, len;
    int32_t id;
} seg;

typedef struct segs {
    seg *v;
    int64_t n, cap;
    bool oom;
} segs;

static void seg_add(segs *s, size_t off, size_t len, int32_t id)
{
    if (s->oom || (len == 0 && id < 0))
        return;
    if (s->n == s->cap) {
        int64_t c = s->cap ? 2 * s->cap : 16;
        seg *p = realloc(s->v, (size_t)c * sizeof *p);
        if (!p) {
            s->oom = true;
            return;
        }
        s->v = p, s->cap = c;
    }
    s->v[s->n++] = (seg){off, len, id};
}

/* Rust regex's \w, near enough: letters, digits, marks and connector punctuation. */
static bool word_char(int32_t c)
{
    return kg__uni_is_alnum(c) || c == '_' || kg__uni_is_mark_nonspacing(c);
}

static int32_t last_cp(const char *s, size_t n)
{
    size_t k = n;
    while (k > 0 && ((unsigned char)s[k - 1] & 0xC0) == 0x80)
        k--;
    if (k == 0)
        return -1;
    int32_t c;
    kg__utf8_next(s, n, k - 1, &c);
    return c;
}

/* Split s[0..n) at the added tokens whose `normalized` flag equals normalized, as HF's
 * AddedVocabulary: leftmost-longest matches, single_word, lstrip and rstrip. */
static void split_added(const kg_tokenizer *tok, const char *s, size_t n, bool normalized,
                        segs *out)
{
    size_t done = 0;
    for (size_t i = 0; i < n;) {
        int best = -1;
        for (int k = 0; k < tok->n_added; k++) {
            const kg__added *a = &tok->added[k];
            if (a->normalized != normalized || a->len == 0 || a->len > n - i ||
                (best >= 0 && a->len <= tok->added[best].len) || a->text[0] != s[i] ||
                memcmp(a->text, s + i, a->len) != 0)
                continue;
            best = k;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const kg__added *a = &tok->added[best];
        size_t start = i, stop = i + a->len;
        i = stop; /* a rejected match is skipped whole, as by the matcher's iterator */
        if (a->single_word) {
            int32_t before = last_cp(s, start), after = -1;
            if (stop < n)
                kg__utf8_next(s, n, stop, &after);
            if ((before >= 0 && word_char(before)) || (after >= 0 && word_char(after)))
                continue;
        }
        if (a->lstrip) {
            int32_t c;
            while (start > done && (c = last_cp(s, start)) >= 0 && kg__uni_is_space(c)) {
                char u[4];
                start -= (size_t)kg__utf8_put(c, u);
            }
        }
        if (a->rstrip) {
            int32_t c;
            while (stop < n) {
                size_t k = kg__utf8_next(s, n, stop, &c);
                if (!kg__uni_is_space(c))
                    break;
                stop += k;
            }
            i = stop;
        }
        seg_add(out, done, start - done, -1);
        seg_add(out, start, stop - start, a->id);
        done = stop;
    }
    seg_add(out, done, n - done, -1);
}

static bool model_word(const kg_tokenizer *tok, const char *w, size_t n, kg__ids *out)
{
    switch (tok->model.kind) {
    case KG__MODEL_WORDPIECE:
        return kg__wordpiece_word(tok, w, n, out);
    case KG__MODEL_BPE:
        return kg__bpe_word(tok, w, n, out);
    case KG__MODEL_SPM_SCORES:
        return kg__spm_scores_word(tok, w, n, out);
    case KG__MODEL_SPM_LIB:
        return kg__spm_encode(tok->model.spm, w, n, &out->v, &out->n, &out->cap);
    }
    return false;
}

/* Text between added tokens: normalize, split at normalized added tokens, pre-tokenize, model. */
static bool encode_text(const kg_tokenizer *tok, const char *s, size_t n, bool first,
                        kg__ids *out)
{
    if (tok->model.kind == KG__MODEL_SPM_LIB) /* sentencepiece normalizes by itself */
        return model_word(tok, s, n, out);
    size_t m;
    char *t = kg__tok_normalize(tok, s, n, &m);
    if (!t)
        return false;
    segs parts = {0};
    split_added(tok, t, m, true, &parts);
    bool ok = !parts.oom;
    for (int64_t p = 0; ok && p < parts.n; p++) {
        const seg *g = &parts.v[p];
        if (g->id >= 0) {
            kg__ids_push(out, g->id);
            continue;
        }
        kg__words words = {0};
        kg__tok_pretokenize(tok, t + g->off, g->len, first && g->off == 0, &words);
        ok = !words.oom;
        for (int64_t w = 0; ok && w < words.n; w++)
            ok = model_word(tok, words.text.p + words.off[w], words.len[w], out);
        kg__words_free(&words);
    }
    free(parts.v);
    free(t);
    return ok && !out->oom;
}

/* One sequence without special tokens. */
static bool encode_seq(kg_tokenizer *tok, const char *text, kg__ids *out)
{
    size_t n;
    char *s = kg__utf8_sanitize(text, strlen(text), &n);
    if (!s)
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory encoding %zu bytes", strlen(text));
    segs parts = {0};
    split_added(tok, s, n, false, &parts);
    bool ok = !parts.oom;
    for (int64_t p = 0; ok && p < parts.n; p++) {
        const seg *g = &parts.v[p];
        if (g->id >= 0)
            kg__ids_push(out, g->id);
        else
            ok = encode_text(tok, s + g->off, g->len, g->off == 0, out);
    }
    free(parts.v);
    free(s);
    if (!ok || out->oom)
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory encoding %zu bytes", strlen(text));
    return true;
}

static int count_special(const kg__tpl_item *items, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += items[i].seq < 0 ? items[i].n_ids : 0;
    return c;
}

/* The post-processing template around a (and b), ids and type ids appended. */
static void compose(const kg_tokenizer *tok, const kg__ids *a, const kg__ids *b, bool add_special,
                    kg__ids *ids, kg__ids *types)
{
    const kg__tpl_item *items = b ? tok->tpl.pair : tok->tpl.single;
    int n = b ? tok->tpl.n_pair : tok->tpl.n_single;
    for (int i = 0; i < n; i++) {
        const kg__tpl_item *it = &items[i];
        if (it->seq < 0) {
            for (int k = 0; add_special && k < it->n_ids; k++) {
                kg__ids_push(ids, it->ids[k]);
                kg__ids_push(types, it->type_id);
            }
            continue;
        }
        const kg__ids *s = it->seq == 0 ? a : b;
        for (int64_t k = 0; k < s->n; k++) {
            kg__ids_push(ids, s->v[k]);
            kg__ids_push(types, it->type_id);
        }
    }
}

/* HF's longest_first for budget ids: one sequence is cut to the budget; of a pair, the shorter
 * keeps what it can up to half the budget, the longer takes the rest (the odd one included). */
static void truncate_pair(kg__ids *a, kg__ids *b, int64_t budget)
{
    if (!b) {
        if (a->n > budget)
            a->n = budget;
        return;
    }
    if (a->n + b->n <= budget)
        return;
    bool swap = a->n > b->n;
    int64_t n1 = swap ? b->n : a->n, n2;
    n2 = n1 > budget ? n1 : (n1 > budget - n1 ? n1 : budget - n1);
    if (n1 + n2 > budget) {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
    }
    kg__ids *shorter = swap ? b : a, *longer = swap ? a : b;
    if (shorter->n > n1)
        shorter->n = n1;
    if (longer->n > n2)
        longer->n = n2;
}

int32_t *kg_tokenizer_encode(kg_tokenizer *tok, const char *text, bool add_special, int64_t *n)
{
    if (!tok)
        return NULL;
    if (!text || !n)
        return kg_set_error(tok->ctx, KG_ERR_ARG, "kg_tokenizer_encode: text or n is NULL"),
               NULL;
    kg__ids a = {0}, ids = {0}, types = {0};
    if (!encode_seq(tok, text, &a))
        return free(a.v), NULL;
    compose(tok, &a, NULL, add_special, &ids, &types);
    free(a.v);
    free(types.v);
    kg__ids_push(&ids, 0); /* room for empty text: never NULL on success */
    if (ids.oom) {
        free(ids.v);
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory"), NULL;
    }
    *n = ids.n - 1;
    return ids.v;
}

void kg_token_batch_free(kg_token_batch *b)
{
    if (!b)
        return;
    free(b->ids);
    free(b->mask);
    free(b->type_ids);
    *b = (kg_token_batch){0};
}

bool kg_tokenizer_encode_batch(kg_tokenizer *tok, int64_t rows, const char *const *texts,
                               const char *const *pairs, const kg_encode_opts *opts,
                               kg_token_batch *out)
{
    if (!tok)
        return false;
    if (!out || !opts || rows < 0 || (rows && !texts))
        return kg_set_error(tok->ctx, KG_ERR_ARG, "kg_tokenizer_encode_batch: NULL argument "
                            "or negative row count"), false;
    *out = (kg_token_batch){0};
    for (int64_t r = 0; r < rows; r++)
        if (!texts[r] || (pairs && !pairs[r]))
            return kg_set_error(tok->ctx, KG_ERR_ARG, "kg_tokenizer_encode_batch: text %lld is "
                                "NULL", (long long)r), false;
    int n_special = !opts->add_special ? 0
                  : pairs ? count_special(tok->tpl.pair, tok->tpl.n_pair)
                          : count_special(tok->tpl.single, tok->tpl.n_single);
    if (opts->max_length > 0 && opts->max_length < n_special)
        return kg_set_error(tok->ctx, KG_ERR_ARG, "kg_tokenizer_encode_batch: max_length %lld "
                            "leaves no room for the %d special ids", (long long)opts->max_length,
                            n_special), false;
    kg__ids *ids = calloc((size_t)rows + 1, sizeof *ids), *types = calloc((size_t)rows + 1,
                                                                          sizeof *types);
    bool ok = ids && types;
    if (!ok)
        kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    int64_t len = 0;
    for (int64_t r = 0; ok && r < rows; r++) {
        kg__ids a = {0}, b = {0};
        ok = encode_seq(tok, texts[r], &a) && (!pairs || encode_seq(tok, pairs[r], &b));
        if (ok && opts->max_length > 0)
            truncate_pair(&a, pairs ? &b : NULL, opts->max_length - n_special);
        if (ok)
            compose(tok, &a, pairs ? &b : NULL, opts->add_special, &ids[r], &types[r]);
        if (ok && (ids[r].oom || types[r].oom))
            ok = kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
        if (ok && ids[r].n > len)
            len = ids[r].n;
        free(a.v);
        free(b.v);
    }
    int32_t pad = tok->special[KG_TOKEN_PAD];
    for (int64_t r = 0; ok && r < rows; r++)
        if (ids[r].n < len && pad < 0)
            ok = kg__tok_fail(tok, KG_ERR_ARG, "the tokenizer has no pad token to pad rows of "
                              "%lld and %lld ids; set one with kg_tokenizer_set_pad",
                              (long long)ids[r].n, (long long)len);
    if (ok) {
        size_t cells = (size_t)(rows * len) + 1;
        out->ids = malloc(cells * sizeof *out->ids);
        out->mask = malloc(cells * sizeof *out->mask);
        out->type_ids = malloc(cells * sizeof *out->type_ids);
        if (!out->ids || !out->mask || !out->type_ids) {
            kg_token_batch_free(out);
            ok = kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory for a %lld x %lld batch",
                              (long long)rows, (long long)len);
        }
    }
    for (int64_t r = 0; ok && r < rows; r++) {
        int64_t n = ids[r].n, lead = opts->pad_left ? len - n : 0;
        for (int64_t t = 0; t < len; t++) {
            int64_t k = t - lead;
            bool real = k >= 0 && k < n;
            out->ids[r * len + t] = real ? ids[r].v[k] : pad;
            out->mask[r * len + t] = real;
            out->type_ids[r * len + t] = real ? types[r].v[k] : 0;
        }
    }
    for (int64_t r = 0; ids && types && r < rows; r++)
        free(ids[r].v), free(types[r].v);
    free(ids);
    free(types);
    if (ok)
        out->rows = rows, out->len = len;
    return ok;
}

/* ---- decoding -------------------------------------------------------------------------------- */

static bool is_special(const kg_tokenizer *tok, int32_t id)
{
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].id == id && tok->added[i].special)
            return true;
    return false;
}

/* libsentencepiece decodes runs of ordinary ids; special pieces are spelled between them. */
static char *decode_spm(kg_tokenizer *tok, const int32_t *ids, int64_t n, bool skip_special)
{
    kg__buf b = {0};
    int64_t start = 0;
    for (int64_t i = 0; i <= n; i++) {
        bool special = i < n && !skip_special && is_special(tok, ids[i]);
        if (i < n && !special)
            continue;
        if (i > start) {
            char *t = kg__spm_decode(tok->model.spm, ids + start, i - start);
            if (!t) {
                free(b.p);
                return kg__tok_fail(tok, KG_ERR_NOMEM, "sentencepiece could not decode"), NULL;
            }
            kg__buf_put(&b, t, strlen(t));
            free(t);
        }
        if (special)
            kg__buf_put(&b, tok->vocab.piece[ids[i]], tok->vocab.len[ids[i]]);
        start = i + 1;
    }
    char *t = kg__buf_take(&b, NULL);
    if (!t)
        kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    return t;
}

char *kg_tokenizer_decode(kg_tokenizer *tok, const int32_t *ids, int64_t n, bool skip_special)
{
    if (!tok)
        return NULL;
    if ((!ids && n) || n < 0)
        return kg_set_error(tok->ctx, KG_ERR_ARG, "kg_tokenizer_decode: ids is NULL or n < 0"),
               NULL;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->vocab.n)
            return kg_set_error(tok->ctx, KG_ERR_RANGE, "kg_tokenizer_decode: id %lld is %d; "
                                "expected 0..%d (the vocabulary of %s)", (long long)i, ids[i],
                                tok->vocab.n - 1, tok->file), NULL;
    if (tok->model.kind == KG__MODEL_SPM_LIB)
        return decode_spm(tok, ids, n, skip_special);
    char **piece = malloc(((size_t)n + 1) * sizeof *piece);
    size_t *len = malloc(((size_t)n + 1) * sizeof *len);
    int64_t m = 0;
    bool ok = piece && len;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *p = tok->vocab.piece[ids[i]];
        if (!p || (skip_special && is_special(tok, ids[i])))
            continue;
        piece[m] = malloc(tok->vocab.len[ids[i]] + 1);
        if (!(ok = piece[m] != NULL))
            break;
        memcpy(piece[m], p, tok->vocab.len[ids[i]] + 1);
        len[m++] = tok->vocab.len[ids[i]];
    }
    char *text = NULL;
    if (ok)
        text = kg__tok_decode_pieces(tok, piece, len, m);
    else
        for (int64_t i = 0; i < m; i++)
            free(piece[i]);
    free(piece);
    free(len);
    if (!text)
        kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory decoding %lld ids", (long long)n);
    return text;
}

/* ---- the vocabulary and special tokens -------------------------------------------------------- */

int32_t kg_tokenizer_special(const kg_tokenizer *tok, kg_special_token which)
{
    return tok && which >= 0 && which < KG_TOKEN_COUNT ? tok->special[which] : -1;
}

bool kg_tokenizer_set_pad(kg_tokenizer *tok, int32_t id)
{
    if (!tok)
        return false;
    if (id < 0 || id >= tok->vocab.n)
        return kg_set_error(tok->ctx, KG_ERR_RANGE, "kg_tokenizer_set_pad: id %d; expected "
                            "0..%d", id, tok->vocab.n - 1);
    tok->special[KG_TOKEN_PAD] = id;
    return true;
}

int64_t kg_tokenizer_vocab_size(const kg_tokenizer *tok)
{
    return tok ? tok->vocab.n : 0;
}

bool kg_tokenizer_adds_bos(const kg_tokenizer *tok)
{
    if (!tok || tok->special[KG_TOKEN_BOS] < 0)
        return false;
    const kg__tpl_item *first = &tok->tpl.single[0];
    return tok->tpl.n_single > 0 && first->seq < 0 && first->n_ids > 0 &&
           first->ids[0] == tok->special[KG_TOKEN_BOS];
}

const char *kg_tokenizer_token(const kg_tokenizer *tok, int32_t id)
{
    return tok && id >= 0 && id < tok->vocab.n ? tok->vocab.piece[id] : NULL;
}

int32_t kg_tokenizer_token_id(const kg_tokenizer *tok, const char *token)
{
    return tok && token ? kg__vocab_find(&tok->vocab, token, strlen(token)) : -1;
}

const char *kg_tokenizer_kind(const kg_tokenizer *tok)
{
    return tok ? tok->kind : "";
}
