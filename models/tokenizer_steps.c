/* tokenizer_steps.c — the steps of HF's tokenizer pipeline, each as its Rust code behaves:
 * normalizers (BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Prepend, Replace,
 * Strip), pre-tokenizers (BertPreTokenizer, ByteLevel and GPT-2's regex split, Metaspace,
 * Digits, WhitespaceSplit) and decoders (ByteLevel, WordPiece, Metaspace, Replace,
 * ByteFallback, Fuse, Strip).
 */
#include "models/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- buffers ---------------------------------------------------------------------------- */

void kg__buf_put(kg__buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 64;
        while (c < b->n + n + 1)
            c *= 2;
        char *p = realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void kg__buf_cp(kg__buf *b, int32_t cp)
{
    char u[4];
    kg__buf_put(b, u, (size_t)kg__utf8_put(cp, u));
}

char *kg__buf_take(kg__buf *b, size_t *n)
{
    kg__buf_put(b, "", 0); /* a NUL even when empty */
    char *p = b->oom ? NULL : b->p;
    if (b->oom)
        free(b->p);
    if (n)
        *n = b->n;
    *b = (kg__buf){0};
    return p;
}

void kg__ids_push(kg__ids *a, int32_t id)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        int64_t c = a->cap ? 2 * a->cap : 64;
        int32_t *p = realloc(a->v, (size_t)c * sizeof *p);
        if (!p) {
            a->oom = true;
            return;
        }
        a->v = p, a->cap = c;
    }
    a->v[a->n++] = id;
}

void kg__words_add(kg__words *w, const char *s, size_t n, bool first)
{
    if (w->oom || n == 0) /* HF drops empty splits */
        return;
    if (w->n == w->cap) {
        int64_t c = w->cap ? 2 * w->cap : 32;
        size_t *off = realloc(w->off, (size_t)c * sizeof *off);
        if (off)
            w->off = off;
        size_t *len = realloc(w->len, (size_t)c * sizeof *len);
        if (len)
            w->len = len;
        bool *f = realloc(w->first, (size_t)c * sizeof *f);
        if (f)
            w->first = f;
        if (!off || !len || !f) {
            w->oom = true;
            return;
        }
        w->cap = c;
    }
    w->off[w->n] = w->text.n;
    w->len[w->n] = n;
    w->first[w->n] = first;
    w->n++;
    kg__buf_put(&w->text, s, n);
    w->oom |= w->text.oom;
}

void kg__words_free(kg__words *w)
{
    free(w->text.p);
    free(w->off);
    free(w->len);
    free(w->first);
    *w = (kg__words){0};
}

/* ---- normalizers ------------------------------------------------------------------------ */

/* BertNormalizer: clean_text, CJK spacing, accent stripping, lower-casing, in HF's order. */
static char *bert_normalize(const kg__norm *st, const char *s, size_t n, size_t *out_n)
{
    kg__buf b = {0};
    for (size_t i = 0; i < n;) {
        int32_t c;
        i += kg__utf8_next(s, n, i, &c);
        if (st->clean_text) {
            if (c == 0 || c == 0xFFFD || kg__uni_is_control(c))
                continue;
            if (kg__uni_is_space(c))
                c = ' ';
        }
        if (st->chinese && kg__uni_is_cjk(c)) {
            kg__buf_put(&b, " ", 1);
            kg__buf_cp(&b, c);
            kg__buf_put(&b, " ", 1);
        } else {
            kg__buf_cp(&b, c);
        }
    }
    size_t len;
    char *t = kg__buf_take(&b, &len);
    if (t && st->strip_accents) {
        size_t m;
        char *d = kg__uni_normalize(t, len, KG__NFD, &m);
        free(t);
        t = NULL;
        if (d) {
            for (size_t i = 0; i < m;) {
                int32_t c;
                size_t k = kg__utf8_next(d, m, i, &c);
                if (!kg__uni_is_mark_nonspacing(c))
                    kg__buf_put(&b, d + i, k);
                i += k;
            }
            free(d);
            t = kg__buf_take(&b, &len);
        }
    }
    if (t && st->lowercase) {
        char *l = kg__uni_lower(t, len, &len);
        free(t);
        t = l;
    }
    *out_n = len;
    return t;
}

static char *replace_all(const char *s, size_t n, const char *a, const char *b, size_t *out_n)
{
    kg__buf o = {0};
    size_t na = strlen(a), nb = strlen(b);
    for (size_t i = 0; i < n;) {
        if (na && i + na <= n && memcmp(s + i, a, na) == 0) {
            kg__buf_put(&o, b, nb);
            i += na;
        } else {
            kg__buf_put(&o, s + i, 1);
            i++;
        }
    }
    return kg__buf_take(&o, out_n);
}

static char *normalize_step(const kg__norm *st, const char *s, size_t n, size_t *out_n)
{
    kg__buf b = {0};
    switch (st->kind) {
    case KG__NORM_BERT:
        return bert_normalize(st, s, n, out_n);
    case KG__NORM_NF:
        return kg__uni_normalize(s, n, st->form, out_n);
    case KG__NORM_LOWER:
        return kg__uni_lower(s, n, out_n);
    case KG__NORM_STRIP_ACCENTS: /* drops Mn alone: a Sequence puts NFD before it */
        for (size_t i = 0; i < n;) {
            int32_t c;
            size_t k = kg__utf8_next(s, n, i, &c);
            if (!kg__uni_is_mark_nonspacing(c))
                kg__buf_put(&b, s + i, k);
            i += k;
        }
        return kg__buf_take(&b, out_n);
    case KG__NORM_PREPEND:
        if (n)
            kg__buf_put(&b, st->a, strlen(st->a));
        kg__buf_put(&b, s, n);
        return kg__buf_take(&b, out_n);
    case KG__NORM_REPLACE:
        return replace_all(s, n, st->a, st->b, out_n);
    case KG__NORM_STRIP: {
        size_t i = 0, j = n;
        while (st->left && i < j) {
            int32_t c;
            size_t k = kg__utf8_next(s, n, i, &c);
            if (!kg__uni_is_space(c))
                break;
            i += k;
        }
        while (st->right && j > i) {
            size_t k = 1;
            while (k < j - i && ((unsigned char)s[j - k] & 0xC0) == 0x80)
                k++;
            int32_t c;
            kg__utf8_next(s, n, j - k, &c);
            if (!kg__uni_is_space(c))
                break;
            j -= k;
        }
        kg__buf_put(&b, s + i, j - i);
        return kg__buf_take(&b, out_n);
    }
    }
    return NULL;
}

char *kg__tok_normalize(const kg_tokenizer *tok, const char *s, size_t n, size_t *out_n)
{
    kg__buf b = {0};
    kg__buf_put(&b, s, n);
    char *cur = kg__buf_take(&b, out_n);
    for (int i = 0; cur && i < tok->n_norm; i++) {
        char *next = normalize_step(&tok->norm[i], cur, *out_n, out_n);
        free(cur);
        cur = next;
    }
    return cur;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */

/* Code points of s[0..n) with their byte offsets (off has m+1 entries). */
static bool decode_cps(const char *s, size_t n, int32_t **cp, size_t **off, size_t *m)
{
    *cp = malloc((n + 1) * sizeof **cp);
    *off = malloc((n + 1) * sizeof **off);
    if (!*cp || !*off) {
        free(*cp), free(*off);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        (*off)[k] = i;
        i += kg__utf8_next(s, n, i, &(*cp)[k]);
    }
    (*off)[k] = n;
    *m = k;
    return true;
}

/* GPT-2's pattern, tried alternative by alternative at each position as the regex engine does:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every character is matched by one alternative, so the matches tile the text. */
static void gpt2_split(const char *s, size_t n, bool first, kg__words *out)
{
    int32_t *c;
    size_t *off, m;
    if (!decode_cps(s, n, &c, &off, &m)) {
        out->oom = true;
        return;
    }
    size_t i = 0;
    while (i < m) {
        size_t j = i;
        if (c[i] == '\'' && i + 1 < m) {
            static const char *const tails[] = {"s", "t", "re", "ve", "m", "ll", "d"};
            for (int t = 0; t < 7 && j == i; t++) {
                size_t k = strlen(tails[t]);
                size_t q = 0;
                while (q < k && i + 1 + q < m && c[i + 1 + q] == tails[t][q])
                    q++;
                if (q == k)
                    j = i + 1 + k;
            }
        }
        if (j == i) {
            size_t p = i + (c[i] == ' ' && i + 1 < m); /* the optional leading space */
            if (kg__uni_is_letter(c[p])) {
                j = p;
                while (j < m && kg__uni_is_letter(c[j]))
                    j++;
            } else if (kg__uni_is_number(c[p])) {
                j = p;
                while (j < m && kg__uni_is_number(c[j]))
                    j++;
            } else if (!kg__uni_is_space(c[p]) || p != i) {
                /* [^\s\p{L}\p{N}]+ after an optional space; c[p] is neither L nor N */
                j = p;
                while (j < m && !kg__uni_is_space(c[j]) && !kg__uni_is_letter(c[j]) &&
                       !kg__uni_is_number(c[j]))
                    j++;
                if (j == p) /* a space followed by a space: no match with the space */
                    j = i;
            }
        }
        if (j == i) { /* whitespace: \s+(?!\S) leaves the last one for the next word */
            while (j < m && kg__uni_is_space(c[j]))
                j++;
            if (j < m && j - i >= 2)
                j--;
        }
        kg__words_add(out, s + off[i], off[j] - off[i], first && i == 0);
        i = j;
    }
    free(c);
    free(off);
}

static void pre_step(const kg__pre *st, const char *s, size_t n, bool first, kg__words *out)
{
    switch (st->kind) {
    case KG__PRE_BERT:
    case KG__PRE_WHITESPACE_SPLIT: {
        size_t start = 0;
        for (size_t i = 0; i < n;) {
            int32_t c;
            size_t k = kg__utf8_next(s, n, i, &c);
            bool space = kg__uni_is_space(c);
            bool punct = st->kind == KG__PRE_BERT && kg__uni_is_bert_punct(c);
            if (space || punct) {
                kg__words_add(out, s + start, i - start, first && start == 0);
                if (punct)
                    kg__words_add(out, s + i, k, first && i == 0);
                start = i + k;
            }
            i += k;
        }
        kg__words_add(out, s + start, n - start, first && start == 0);
        return;
    }
    case KG__PRE_DIGITS: {
        size_t start = 0;
        bool run_digit = false;
        for (size_t i = 0; i < n;) {
            int32_t c;
            size_t k = kg__utf8_next(s, n, i, &c);
            bool d = kg__uni_is_number(c);
            if (i > start && (d != run_digit || (d && st->individual))) {
                kg__words_add(out, s + start, i - start, first && start == 0);
                start = i;
            }
            run_digit = d;
            i += k;
        }
        kg__words_add(out, s + start, n - start, first && start == 0);
        return;
    }
    case KG__PRE_BYTELEVEL:
    case KG__PRE_GPT2_SPLIT: {
        kg__buf b = {0};
        if (st->kind == KG__PRE_BYTELEVEL && st->add_prefix_space && (n == 0 || s[0] != ' '))
            kg__buf_put(&b, " ", 1);
        kg__buf_put(&b, s, n);
        if (b.oom) {
            out->oom = true;
        } else if (st->kind == KG__PRE_BYTELEVEL && !st->use_regex) {
            kg__words_add(out, b.p, b.n, first);
        } else {
            gpt2_split(b.p, b.n, first, out);
        }
        free(b.p);
        return;
    }
    case KG__PRE_METASPACE: {
        kg__buf b = {0};
        size_t nr = strlen(st->replacement);
        bool starts = n >= nr && memcmp(s, st->replacement, nr) == 0;
        starts = starts || (n && s[0] == ' '); /* the space becomes the replacement */
        if (!starts && (st->prepend == KG__PREPEND_ALWAYS ||
                        (st->prepend == KG__PREPEND_FIRST && first)))
            kg__buf_put(&b, st->replacement, nr);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ')
                kg__buf_put(&b, st->replacement, nr);
            else
                kg__buf_put(&b, s + i, 1);
        }
        if (b.oom) {
            out->oom = true;
        } else if (!st->split) {
            kg__words_add(out, b.p, b.n, first);
        } else { /* split before each replacement, which stays with what follows */
            size_t start = 0;
            for (size_t i = 0; i < b.n; i++) {
                if (i > start && i + nr <= b.n && memcmp(b.p + i, st->replacement, nr) == 0) {
                    kg__words_add(out, b.p + start, i - start, first && start == 0);
                    start = i;
                }
            }
            kg__words_add(out, b.p + start, b.n - start, first && start == 0);
        }
        free(b.p);
        return;
    }
    }
}

void kg__tok_pretokenize(const kg_tokenizer *tok, const char *s, size_t n, bool first,
                         kg__words *out)
{
    if (tok->n_pre == 0) {
        kg__words_add(out, s, n, first);
        return;
    }
    kg__words cur = {0};
    kg__words_add(&cur, s, n, first);
    for (int i = 0; i < tok->n_pre && !cur.oom; i++) {
        kg__words next = {0};
        for (int64_t w = 0; w < cur.n; w++)
            pre_step(&tok->pre[i], cur.text.p + cur.off[w], cur.len[w], cur.first[w], &next);
        kg__words_free(&cur);
        cur = next;
    }
    for (int64_t w = 0; w < cur.n && !cur.oom; w++)
        kg__words_add(out, cur.text.p + cur.off[w], cur.len[w], cur.first[w]);
    out->oom |= cur.oom;
    kg__words_free(&cur);
}

/* ---- decoders --------------------------------------------------------------------------- */

/* The pieces, each a malloc'd string, through one decoder; n may shrink (Fuse, ByteLevel). */
typedef struct pieces {
    char **p;
    size_t *len;
    int64_t n;
    bool oom;
} pieces;

static void set_piece(pieces *ps, int64_t i, kg__buf *b)
{
    size_t n;
    char *t = kg__buf_take(b, &n);
    free(ps->p[i]);
    ps->p[i] = t;
    ps->len[i] = t ? n : 0;
    if (!t)
        ps->oom = true;
}

/* Join all pieces into piece 0. */
static void fuse(pieces *ps)
{
    kg__buf b = {0};
    for (int64_t i = 0; i < ps->n; i++)
        kg__buf_put(&b, ps->p[i], ps->len[i]);
    for (int64_t i = 1; i < ps->n; i++)
        free(ps->p[i]);
    if (ps->n == 0)
        ps->p[0] = NULL;
    ps->n = 1;
    set_piece(ps, 0, &b);
}

static void lossy_utf8(pieces *ps, int64_t i)
{
    size_t n;
    char *t = kg__utf8_sanitize(ps->p[i], ps->len[i], &n);
    free(ps->p[i]);
    ps->p[i] = t;
    ps->len[i] = t ? n : 0;
    if (!t)
        ps->oom = true;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
         : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "<0xNN>" -> NN, else -1. */
static int byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static void byte_fallback(pieces *ps)
{
    int64_t o = 0;
    kg__buf run = {0};
    for (int64_t i = 0; i <= ps->n && !ps->oom; i++) {
        int b = i < ps->n ? byte_piece(ps->p[i], ps->len[i]) : -1;
        if (b >= 0) {
            unsigned char c = (unsigned char)b;
            kg__buf_put(&run, &c, 1);
            free(ps->p[i]);
            ps->p[i] = NULL;
            continue;
        }
        if (run.n) { /* valid UTF-8 as one piece, else one U+FFFD per byte */
            size_t nb = run.n;
            bool ok = kg__utf8_valid(run.p, run.n);
            char *bytes = kg__buf_take(&run, NULL);
            if (!bytes) {
                ps->oom = true;
                break;
            }
            /* the run replaces the pieces it came from, which lie before i */
            if (ok) {
                ps->p[o] = bytes, ps->len[o] = nb, o++;
            } else {
                free(bytes);
                for (size_t k = 0; k < nb; k++) {
                    kg__buf f = {0};
                    kg__buf_cp(&f, 0xFFFD);
                    ps->p[o] = NULL;
                    set_piece(ps, o, &f);
                    o++;
                }
            }
        }
        if (i < ps->n) {
            ps->p[o] = ps->p[i], ps->len[o] = ps->len[i];
            if (o != i)
                ps->p[i] = NULL;
            o++;
        }
    }
    free(run.p);
    for (int64_t i = o; i < ps->n; i++)
        free(ps->p[i]);
    ps->n = o;
}

static void wordpiece_cleanup(kg__buf *b)
{
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not",
                                       " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't",
                                     "'s", "'ve", "'re"};
    for (int r = 0; r < 11 && !b->oom; r++) {
        size_t n;
        char *t = replace_all(b->p ? b->p : "", b->n, from[r], to[r], &n);
        free(b->p);
        *b = (kg__buf){0};
        if (!t) {
            b->oom = true;
            return;
        }
        b->p = t, b->n = n, b->cap = n + 1;
    }
}

static void decode_step(const kg__dec *st, pieces *ps)
{
    switch (st->kind) {
    case KG__DEC_BYTELEVEL: { /* each piece's characters to the bytes they spell, joined */
        kg__buf b = {0};
        for (int64_t i = 0; i < ps->n; i++) {
            const char *s = ps->p[i];
            size_t n = ps->len[i], start = b.n;
            bool all = true;
            for (size_t k = 0; k < n && all;) {
                int32_t c;
                k += kg__utf8_next(s, n, k, &c);
                int byte = kg__bytelevel_byte(c);
                if (byte < 0)
                    all = false;
                else {
                    unsigned char u = (unsigned char)byte;
                    kg__buf_put(&b, &u, 1);
                }
            }
            if (!all) { /* a piece outside the alphabet (an added token) stays as it is */
                b.n = start;
                kg__buf_put(&b, s, n);
            }
        }
        for (int64_t i = 1; i < ps->n; i++)
            free(ps->p[i]);
        if (ps->n == 0)
            ps->p[0] = NULL;
        ps->n = 1;
        set_piece(ps, 0, &b);
        if (!ps->oom)
            lossy_utf8(ps, 0);
        return;
    }
    case KG__DEC_WORDPIECE:
        for (int64_t i = 0; i < ps->n; i++) {
            kg__buf b = {0};
            size_t np = strlen(st->a);
            if (i && ps->len[i] >= np && memcmp(ps->p[i], st->a, np) == 0) {
                kg__buf_put(&b, ps->p[i] + np, ps->len[i] - np);
            } else {
                if (i)
                    kg__buf_put(&b, " ", 1);
                kg__buf_put(&b, ps->p[i], ps->len[i]);
            }
            if (st->cleanup)
                wordpiece_cleanup(&b);
            set_piece(ps, i, &b);
        }
        return;
    case KG__DEC_METASPACE: {
        size_t nr = strlen(st->a);
        for (int64_t i = 0; i < ps->n; i++) {
            kg__buf b = {0};
            for (size_t k = 0; k < ps->len[i];) {
                if (k + nr <= ps->len[i] && memcmp(ps->p[i] + k, st->a, nr) == 0) {
                    /* every replacement of the first piece goes, as in HF */
                    if (i != 0 || st->prepend == KG__PREPEND_NEVER)
                        kg__buf_put(&b, " ", 1);
                    k += nr;
                } else {
                    kg__buf_put(&b, ps->p[i] + k, 1);
                    k++;
                }
            }
            set_piece(ps, i, &b);
        }
        return;
    }
    case KG__DEC_REPLACE:
        for (int64_t i = 0; i < ps->n; i++) {
            size_t n;
            char *t = replace_all(ps->p[i], ps->len[i], st->a, st->b, &n);
            free(ps->p[i]);
            ps->p[i] = t;
            ps->len[i] = t ? n : 0;
            ps->oom |= !t;
        }
        return;
    case KG__DEC_BYTEFALLBACK:
        byte_fallback(ps);
        return;
    case KG__DEC_FUSE:
        fuse(ps);
        return;
    case KG__DEC_STRIP: {
        char u[4];
        size_t nu = (size_t)kg__utf8_put(st->strip_cp, u);
        for (int64_t i = 0; i < ps->n; i++) {
            size_t a = 0, z = ps->len[i];
            for (int k = 0; k < st->start && a + nu <= z && memcmp(ps->p[i] + a, u, nu) == 0; k++)
                a += nu;
            for (int k = 0; k < st->stop && z >= a + nu && memcmp(ps->p[i] + z - nu, u, nu) == 0;
                 k++)
                z -= nu;
            kg__buf b = {0};
            kg__buf_put(&b, ps->p[i] + a, z - a);
            set_piece(ps, i, &b);
        }
        return;
    }
    }
}

char *kg__tok_decode_pieces(const kg_tokenizer *tok, char **piece, size_t *len, int64_t n)
{
    pieces ps = {piece, len, n, false};
    for (int i = 0; i < tok->n_dec && !ps.oom; i++)
        decode_step(&tok->dec[i], &ps);
    kg__buf b = {0};
    for (int64_t i = 0; i < ps.n; i++) {
        if (i && !tok->has_decoder)
            kg__buf_put(&b, " ", 1);
        if (ps.p[i])
            kg__buf_put(&b, ps.p[i], ps.len[i]);
        free(ps.p[i]);
        ps.p[i] = NULL;
    }
    if (ps.oom) {
        free(b.p);
        return NULL;
    }
    return kg__buf_take(&b, NULL);
}
