/* bpe.c — byte-pair encoding of one word, two ways: by merge rank, as HF's BPE model (tokenizer.json
 * and GGUF gpt2 vocabularies; byte-level words, byte fallback, unknown-token fusing), and by piece
 * score, as llama.cpp's SentencePiece tokenizer (GGUF llama vocabularies). Both keep the word as
 * a linked list of symbols and a heap of candidate merges, best first and leftmost on ties, so a
 * long word costs O(n log n).
 */
#include "models/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- the merge table: (left id, right id) -> (rank, merged id) ----------------------------- */

static uint32_t hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

bool kg__merges_add(kg__merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    if (2 * (m->n + 1) > m->cap) {
        uint32_t cap = m->cap ? 2 * m->cap : 1024;
        kg__merges g = {calloc(cap, sizeof(uint64_t)), malloc(cap * sizeof(int32_t)),
                        malloc(cap * sizeof(int32_t)), cap, 0};
        if (!g.key || !g.rank || !g.merged) {
            kg__merges_free(&g);
            return false;
        }
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                uint64_t k = m->key[i] - 1;
                kg__merges_add(&g, (int32_t)(k >> 32), (int32_t)(k & 0xffffffffu), m->rank[i],
                               m->merged[i]);
            }
        kg__merges_free(m);
        *m = g;
    }
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    for (uint32_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->key[i] == 0 || m->key[i] == key) {
            m->n += m->key[i] == 0;
            m->key[i] = key; /* a repeated pair takes its later rank, as HF's map does */
            m->rank[i] = rank;
            m->merged[i] = merged;
            return true;
        }
    }
}

bool kg__merges_find(const kg__merges *m, int32_t left, int32_t right, int32_t *rank,
                     int32_t *merged)
{
    if (!m->cap)
        return false;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    for (uint32_t i = hash64(key) & (m->cap - 1); m->key[i]; i = (i + 1) & (m->cap - 1))
        if (m->key[i] == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return true;
        }
    return false;
}

void kg__merges_free(kg__merges *m)
{
    free(m->key);
    free(m->rank);
    free(m->merged);
    *m = (kg__merges){0};
}

/* ---- symbols and the candidate heap -------------------------------------------------------- */

typedef struct sym {
    int32_t id;
    int prev, next;   /* -1 at the ends */
    size_t off, len;  /* bytes of the word this symbol covers; len 0 once merged away */
} sym;

typedef struct cand {
    double key;       /* lower is better: a rank, or minus a score */
    int left;
    size_t total;     /* left.len + right.len when pushed: a changed pair is stale */
    int32_t merged;
} cand;

typedef struct word {
    sym *s;
    int n, cap;
    cand *h;
    int nh, caph;
    bool oom;
} word;

static void sym_add(word *w, int32_t id, size_t off, size_t len)
{
    if (w->oom)
        return;
    if (w->n == w->cap) {
        int c = w->cap ? 2 * w->cap : 16;
        sym *p = realloc(w->s, (size_t)c * sizeof *p);
        if (!p) {
            w->oom = true;
            return;
        }
        w->s = p, w->cap = c;
    }
    w->s[w->n] = (sym){id, w->n - 1, -1, off, len};
    if (w->n)
        w->s[w->n - 1].next = w->n;
    w->n++;
}

static bool cand_less(const cand *a, const cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(word *w, cand c)
{
    if (w->oom)
        return;
    if (w->nh == w->caph) {
        int cap = w->caph ? 2 * w->caph : 16;
        cand *p = realloc(w->h, (size_t)cap * sizeof *p);
        if (!p) {
            w->oom = true;
            return;
        }
        w->h = p, w->caph = cap;
    }
    int i = w->nh++;
    while (i > 0 && cand_less(&c, &w->h[(i - 1) / 2])) {
        w->h[i] = w->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->h[i] = c;
}

static cand heap_pop(word *w)
{
    cand top = w->h[0], last = w->h[--w->nh];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= w->nh)
            break;
        if (c + 1 < w->nh && cand_less(&w->h[c + 1], &w->h[c]))
            c++;
        if (!cand_less(&w->h[c], &last))
            break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (w->nh)
        w->h[i] = last;
    return top;
}

/* A candidate for merging symbol a with the symbol after it, if the model has one. */
typedef bool (*pair_fn)(const kg_tokenizer *tok, const char *text, const sym *a, const sym *b,
                        double *key, int32_t *merged);

static void push_pair(const kg_tokenizer *tok, word *w, const char *text, int a, pair_fn pair)
{
    if (a < 0 || w->s[a].next < 0)
        return;
    const sym *l = &w->s[a], *r = &w->s[l->next];
    double key;
    int32_t merged;
    if (pair(tok, text, l, r, &key, &merged))
        heap_push(w, (cand){key, a, l->len + r->len, merged});
}

/* Merge best-first until no candidate is left. */
static void merge_all(const kg_tokenizer *tok, word *w, const char *text, pair_fn pair)
{
    for (int i = 0; i + 1 < w->n; i++)
        push_pair(tok, w, text, i, pair);
    while (w->nh && !w->oom) {
        cand c = heap_pop(w);
        sym *l = &w->s[c.left];
        if (l->len == 0 || l->next < 0 || l->len + w->s[l->next].len != c.total)
            continue; /* stale: one side changed since this pair was pushed */
        sym *r = &w->s[l->next];
        l->id = c.merged;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->s[r->next].prev = c.left;
        push_pair(tok, w, text, l->prev, pair);
        push_pair(tok, w, text, c.left, pair);
    }
}

static void word_free(word *w)
{
    free(w->s);
    free(w->h);
}

/* ---- by rank (HF's BPE model) -------------------------------------------------------------- */

static bool rank_pair(const kg_tokenizer *tok, const char *text, const sym *a, const sym *b,
                      double *key, int32_t *merged)
{
    (void)text;
    int32_t rank;
    if (a->id < 0 || b->id < 0 || !kg__merges_find(&tok->model.merges, a->id, b->id, &rank, merged))
        return false;
    *key = rank;
    return true;
}

bool kg__bpe_word(const kg_tokenizer *tok, const char *wd, size_t n, kg__ids *out)
{
    const kg__model *m = &tok->model;
    kg__buf spelled = {0};
    if (m->byte_level) { /* GPT-2's alphabet: one character per byte */
        for (size_t i = 0; i < n; i++)
            kg__buf_cp(&spelled, kg__bytelevel_char((uint8_t)wd[i]));
        if (spelled.oom)
            return false;
        wd = spelled.p, n = spelled.n;
    }
    if (m->ignore_merges) { /* a word in the vocabulary is taken whole */
        int32_t id = kg__vocab_find(&tok->vocab, wd, n);
        if (id >= 0) {
            free(spelled.p);
            kg__ids_push(out, id);
            return !out->oom;
        }
    }
    word w = {0};
    int32_t unk_len = 0; /* bytes of pending unknown characters (fused) */
    size_t unk_off = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = kg__utf8_next(wd, n, i, &cp);
        int32_t id = kg__vocab_find(&tok->vocab, wd + i, k);
        if (id >= 0) {
            if (unk_len)
                sym_add(&w, m->unk, unk_off, (size_t)unk_len), unk_len = 0;
            sym_add(&w, id, i, k);
        } else {
            bool bytes = m->byte_fallback;
            for (size_t b = 0; bytes && b < k; b++)
                bytes = m->byte_id[(uint8_t)wd[i + b]] >= 0;
            if (bytes) { /* as HF: a pending unknown is not flushed before the bytes */
                for (size_t b = 0; b < k; b++)
                    sym_add(&w, m->byte_id[(uint8_t)wd[i + b]], i + b, 1);
            } else if (m->unk >= 0) {
                if (unk_len && !m->fuse_unk)
                    sym_add(&w, m->unk, unk_off, (size_t)unk_len), unk_len = 0;
                if (!unk_len)
                    unk_off = i;
                unk_len += (int32_t)k;
            } /* no unknown token: HF drops the character */
        }
        i += k;
    }
    if (unk_len)
        sym_add(&w, m->unk, unk_off, (size_t)unk_len);
    merge_all(tok, &w, wd, rank_pair);
    for (int i = 0; i < w.n && !w.oom; i = w.s[i].next < 0 ? w.n : w.s[i].next)
        kg__ids_push(out, w.s[i].id);
    bool ok = !w.oom && !out->oom;
    word_free(&w);
    free(spelled.p);
    return ok;
}

/* ---- by score (llama.cpp's SentencePiece BPE) ----------------------------------------------- */

static bool score_pair(const kg_tokenizer *tok, const char *text, const sym *a, const sym *b,
                       double *key, int32_t *merged)
{
    (void)b;
    int32_t id = kg__vocab_find(&tok->vocab, text + a->off, a->len + b->len);
    /* as sentencepiece: only normal and user-defined pieces are merge results */
    if (id < 0 || (tok->model.mergeable && !tok->model.mergeable[id]))
        return false;
    *key = -(double)tok->vocab.score[id];
    *merged = id;
    return true;
}

bool kg__spm_scores_word(const kg_tokenizer *tok, const char *wd, size_t n, kg__ids *out)
{
    const kg__model *m = &tok->model;
    word w = {0};
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = kg__utf8_next(wd, n, i, &cp);
        sym_add(&w, kg__vocab_find(&tok->vocab, wd + i, k), i, k);
        i += k;
    }
    merge_all(tok, &w, wd, score_pair);
    /* a symbol that is no piece (only single characters can be) falls back to its bytes */
    for (int i = 0; i < w.n && !w.oom; i = w.s[i].next < 0 ? w.n : w.s[i].next) {
        const sym *s = &w.s[i];
        if (s->id >= 0) {
            kg__ids_push(out, s->id);
            continue;
        }
        bool bytes = true;
        for (size_t b = 0; b < s->len; b++)
            bytes = bytes && m->byte_id[(uint8_t)wd[s->off + b]] >= 0;
        for (size_t b = 0; bytes && b < s->len; b++)
            kg__ids_push(out, m->byte_id[(uint8_t)wd[s->off + b]]);
        if (!bytes && m->unk >= 0)
            kg__ids_push(out, m->unk);
    }
    bool ok = !w.oom && !out->oom;
    word_free(&w);
    return ok;
}
