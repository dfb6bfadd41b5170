/* jinja_parse.c — the chat-template engine's front half: Jinja source to a tree, with the
 * whitespace rules transformers sets (trim_blocks, lstrip_blocks, no trailing newline).
 * Constructs the renderer lacks are rejected here, naming the template, line and construct;
 * docs/chat-templates.md lists the subset.
 */
#include "models/jinja_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- Arena: every node and value lives in one, freed at once -------------------------------- */


void *kg__jinja_alloc(arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->size - a->head->used < n) {
        size_t size = n > 65536 ? n : 65536;
        if (size > a->cap - a->total || a->total > a->cap)
            return NULL;
        chunk *c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        *c = (chunk){.next = a->head, .size = size};
        a->head = c;
        a->total += size;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

void kg__jinja_arena_free(arena *a)
{
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

/* ---- Text helpers ---------------------------------------------------------------------------- */

/* Python's str.isspace, which Jinja's \s and str.strip() use. */
bool kg__jinja_is_space(int32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Bytes of whitespace at the start of s / at the end of s. */
size_t kg__jinja_space_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int32_t c;
        size_t k = kg__utf8_next(s + i, n - i, 0, &c);
        if (!kg__jinja_is_space(c))
            break;
        i += k;
    }
    return i;
}

size_t kg__jinja_space_suffix(const char *s, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && end - start < 4 && ((unsigned char)s[start] & 0xc0) == 0x80)
            start--;
        int32_t c;
        if (kg__utf8_next(s + start, end - start, 0, &c) != end - start || !kg__jinja_is_space(c))
            break;
        end = start;
    }
    return n - end;
}

/* ---- Errors ---------------------------------------------------------------------------------- */

bool kg__jinja_report(kg_ctx *ctx, kg_status st, const char *name, int line, const char *fmt,
                   va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0)
        return kg_set_error(ctx, st, "%s: line %d: %s", name, line, msg);
    return kg_set_error(ctx, st, "%s: %s", name, msg);
}

/* ---- Tokens ---------------------------------------------------------------------------------- */

typedef enum {
    TK_TEXT,   /* template data */
    TK_VBEGIN, /* {{ */
    TK_VEND,   /* }} */
    TK_BBEGIN, /* {% */
    TK_BEND,   /* %} */
    TK_NAME,
    TK_STR, /* s: the unescaped text (arena) */
    TK_INT,
    TK_OP, /* s: the operator's characters */
    TK_EOF
} tkind;

typedef struct token {
    tkind k;
    int line;
    const char *s;
    size_t n;
    int64_t i;
} token;

/* ---- Lexer ----------------------------------------------------------------------------------- */

typedef struct lexer {
    kg_ctx *ctx;
    const char *name;
    const char *src;
    size_t len, pos;
    int line;
    arena *ar;
    token *t;
    size_t nt, cap;
} lexer;

__attribute__((format(printf, 3, 4))) static bool lex_fail(lexer *L, int line, const char *fmt,
                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg__jinja_report(L->ctx, KG_ERR_ARG, L->name, line, fmt, ap);
    va_end(ap);
    return false;
}

static bool emit(lexer *L, tkind k, int line, const char *s, size_t n, int64_t i)
{
    if (L->nt == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        token *t = realloc(L->t, cap * sizeof *t);
        if (!t)
            return kg_set_error(L->ctx, KG_ERR_NOMEM, "%s: out of memory", L->name);
        L->t = t;
        L->cap = cap;
    }
    L->t[L->nt++] = (token){k, line, s, n, i};
    return true;
}

/* Move to pos, counting lines. */
static void lex_goto(lexer *L, size_t pos)
{
    for (size_t i = L->pos; i < pos; i++)
        L->line += L->src[i] == '\n';
    L->pos = pos;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string literal at L->pos, unescaped as Python's unicode-escape reads it (Jinja does). */
static bool lex_string(lexer *L)
{
    const char *s = L->src;
    char q = s[L->pos];
    size_t end = L->pos + 1;
    while (end < L->len && s[end] != q)
        end += s[end] == '\\' && end + 1 < L->len ? 2 : 1;
    if (end >= L->len)
        return lex_fail(L, L->line, "unterminated string literal");
    char *out = kg__jinja_alloc(L->ar, end - L->pos);
    if (!out)
        return kg_set_error(L->ctx, KG_ERR_NOMEM, "%s: out of memory", L->name);
    size_t n = 0;
    for (size_t i = L->pos + 1; i < end; i++) {
        if (s[i] != '\\') {
            out[n++] = s[i];
            continue;
        }
        char e = s[++i];
        static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
        const char *m = NULL;
        for (int k = 0; simple[k]; k += 2)
            if (simple[k] == e)
                m = simple + k;
        if (e == '\n') {
            continue; /* backslash-newline: a line continuation */
        } else if (m) {
            out[n++] = m[1];
        } else if (e >= '0' && e <= '7') {
            int v = 0, k = 0;
            for (; k < 3 && i < end && s[i] >= '0' && s[i] <= '7'; k++, i++)
                v = v * 8 + (s[i] - '0');
            i--;
            n += (size_t)utf8proc_encode_char(v, (utf8proc_uint8_t *)out + n);
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            int32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + 1 + (size_t)k < end ? hexval(s[i + 1 + k]) : -1;
                if (h < 0)
                    return lex_fail(L, L->line, "truncated \\%c escape in a string literal", e);
                v = v * 16 + h;
            }
            i += (size_t)digits;
            if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000))
                return lex_fail(L, L->line, "\\%c escape out of range in a string literal", e);
            /* \U escapes take up to 4 bytes for 10 source bytes: always fits */
            n += (size_t)utf8proc_encode_char(v, (utf8proc_uint8_t *)out + n);
        } else if (e == 'N') {
            return lex_fail(L, L->line, "unsupported construct: \\N{...} escape in a string");
        } else { /* unknown escapes stay as written */
            out[n++] = '\\';
            out[n++] = e;
        }
    }
    bool ok = emit(L, TK_STR, L->line, out, n, 0);
    lex_goto(L, end + 1);
    return ok;
}

static bool is_ident(char c, bool first)
{
    return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (!first && c >= '0' && c <= '9');
}

static bool starts(const lexer *L, size_t pos, const char *w)
{
    size_t n = strlen(w);
    return pos + n <= L->len && memcmp(L->src + pos, w, n) == 0;
}

/* The tokens inside {{ }} or {% %}, then the end tag and its whitespace rules. Returns whether
 * what the end consumed ends a line (Jinja's lstrip_blocks looks at that). */
static bool lex_tag(lexer *L, bool block, bool *line_starting)
{
    static const char *const ops2[] = {"**", "//", "==", "!=", "<=", ">="};
    int balance = 0;
    for (;;) {
        L->pos += kg__jinja_space_prefix(L->src + L->pos, L->len - L->pos); /* tags span lines freely */
        lex_goto(L, L->pos);
        if (L->pos >= L->len)
            return lex_fail(L, L->line, "missing end of %s tag", block ? "block" : "variable");
        const char *p = L->src + L->pos;
        if (balance == 0) {
            bool minus = *p == '-', plus = block && *p == '+';
            size_t at = L->pos + (minus || plus);
            if (starts(L, at, block ? "%}" : "}}")) {
                if (!emit(L, block ? TK_BEND : TK_VEND, L->line, NULL, 0, 0))
                    return false;
                size_t end = at + 2;
                if (minus)
                    end += kg__jinja_space_prefix(L->src + end, L->len - end);
                else if (block && !plus && end < L->len && L->src[end] == '\n')
                    end++; /* trim_blocks */
                *line_starting = end > 0 && L->src[end - 1] == '\n';
                lex_goto(L, end);
                return true;
            }
        }
        int line = L->line;
        if (*p == '\'' || *p == '"') {
            if (!lex_string(L))
                return false;
        } else if (is_ident(*p, true)) {
            size_t n = 1;
            while (L->pos + n < L->len && is_ident(p[n], false))
                n++;
            if (!emit(L, TK_NAME, line, p, n, 0))
                return false;
            lex_goto(L, L->pos + n);
        } else if (*p >= '0' && *p <= '9') {
            size_t n = 0;
            int64_t v = 0;
            for (; L->pos + n < L->len && ((p[n] >= '0' && p[n] <= '9') || p[n] == '_'); n++) {
                if (p[n] == '_')
                    continue;
                if (v > (INT64_MAX - (p[n] - '0')) / 10)
                    return lex_fail(L, line, "integer literal too large");
                v = v * 10 + (p[n] - '0');
            }
            char c = L->pos + n < L->len ? p[n] : 0;
            char after = L->pos + n + 1 < L->len ? p[n + 1] : 0;
            bool digit_after = after >= '0' && after <= '9';
            if ((c == '.' && digit_after) ||
                ((c == 'e' || c == 'E') && (digit_after || after == '+' || after == '-')) ||
                (n == 1 && *p == '0' && strchr("xXoObB", c) && c))
                return lex_fail(L, line, "unsupported construct: a float, hex, octal or binary "
                                         "number literal (only decimal integers)");
            if (!emit(L, TK_INT, line, p, n, v))
                return false;
            lex_goto(L, L->pos + n);
        } else {
            size_t n = 0;
            for (size_t k = 0; k < sizeof ops2 / sizeof *ops2 && !n; k++)
                if (starts(L, L->pos, ops2[k]))
                    n = 2;
            if (!n && strchr("+-*/%~<>=()[]{},.:|", *p) && *p)
                n = 1;
            if (!n) {
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                    return lex_fail(L, line, "unexpected character (byte 0x%02x) in a tag",
                                    (unsigned char)*p);
                return lex_fail(L, line, "unexpected character '%c' in a tag", *p);
            }
            balance += (*p == '(' || *p == '[' || *p == '{') - (*p == ')' || *p == ']' || *p == '}');
            if (balance < 0)
                balance = 0;
            if (!emit(L, TK_OP, line, p, n, 0))
                return false;
            lex_goto(L, L->pos + n);
        }
    }
}

static bool lex(lexer *L)
{
    bool line_starting = true;
    while (L->pos < L->len) {
        /* the next tag start */
        size_t at = L->pos;
        int kind = 0; /* 1 variable, 2 block, 3 comment */
        for (; at + 1 < L->len; at++) {
            if (L->src[at] != '{')
                continue;
            char c = L->src[at + 1];
            kind = c == '{' ? 1 : c == '%' ? 2 : c == '#' ? 3 : 0;
            if (kind)
                break;
        }
        if (!kind)
            at = L->len;
        const char *text = L->src + L->pos;
        size_t n = at - L->pos;
        char sign = kind && at + 2 < L->len ? L->src[at + 2] : 0;
        if (sign == '-') {
            n -= kg__jinja_space_suffix(text, n);
        } else if (kind >= 2 && sign != '+') { /* lstrip_blocks */
            size_t l = n;
            while (l > 0 && text[l - 1] != '\n')
                l--;
            if ((l > 0 || line_starting) && kg__jinja_space_prefix(text + l, n - l) == n - l)
                n = l;
        }
        if (n && !emit(L, TK_TEXT, L->line, text, n, 0))
            return false;
        lex_goto(L, at);
        if (!kind)
            break;
        int line = L->line;
        lex_goto(L, at + 2 + (sign == '-' || sign == '+'));
        if (kind == 3) {
            const char *end = NULL;
            for (size_t i = L->pos; i + 1 < L->len && !end; i++)
                if (L->src[i] == '#' && L->src[i + 1] == '}')
                    end = L->src + i;
            if (!end)
                return lex_fail(L, line, "missing end of comment tag");
            size_t e = (size_t)(end - L->src) + 2;
            char before = end > L->src + L->pos ? end[-1] : 0;
            if (before == '-')
                e += kg__jinja_space_prefix(L->src + e, L->len - e);
            else if (before != '+' && e < L->len && L->src[e] == '\n')
                e++;
            line_starting = L->src[e - 1] == '\n';
            lex_goto(L, e);
            continue;
        }
        if (!emit(L, kind == 1 ? TK_VBEGIN : TK_BBEGIN, line, NULL, 0, 0) ||
            !lex_tag(L, kind == 2, &line_starting))
            return false;
    }
    return emit(L, TK_EOF, L->line, NULL, 0, 0);
}

/* ---- Parser ---------------------------------------------------------------------------------- */

typedef struct parser {
    kg_ctx *ctx;
    const char *name;
    arena *ar;
    const token *t;
    size_t pos;
    int depth, loops; /* recursion depth now; enclosing for loops */
    bool failed;
    const char *stop; /* the end tag that closed the last body */
} parser;

__attribute__((format(printf, 3, 4))) static void *parse_fail(parser *P, int line,
                                                               const char *fmt, ...)
{
    if (!P->failed) {
        va_list ap;
        va_start(ap, fmt);
        kg__jinja_report(P->ctx, KG_ERR_ARG, P->name, line, fmt, ap);
        va_end(ap);
    }
    P->failed = true;
    return NULL;
}

static const token *peek(const parser *P)
{
    return &P->t[P->pos];
}

static bool tok_is(const token *t, tkind k, const char *s)
{
    return t->k == k && (!s || (t->n == strlen(s) && memcmp(t->s, s, t->n) == 0));
}

static bool accept(parser *P, tkind k, const char *s)
{
    if (!tok_is(peek(P), k, s))
        return false;
    P->pos++;
    return true;
}

static const char *describe(const token *t, char *buf, size_t size)
{
    static const char *const fixed[] = {
        [TK_TEXT] = "template text", [TK_VBEGIN] = "'{{'", [TK_VEND] = "'}}'",
        [TK_BBEGIN] = "'{%'", [TK_BEND] = "'%}'", [TK_EOF] = "the end of the template"};
    if (t->k == TK_NAME || t->k == TK_OP)
        snprintf(buf, size, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
    else if (t->k == TK_STR)
        snprintf(buf, size, "a string");
    else if (t->k == TK_INT)
        snprintf(buf, size, "a number");
    else
        snprintf(buf, size, "%s", fixed[t->k]);
    return buf;
}

static bool expect(parser *P, tkind k, const char *s, const char *what)
{
    if (accept(P, k, s))
        return true;
    char buf[64];
    parse_fail(P, peek(P)->line, "expected %s, found %s", what, describe(peek(P), buf, sizeof buf));
    return false;
}

static int list_depth(const node *l)
{
    int d = 0;
    for (; l; l = l->next)
        d = l->depth > d ? l->depth : d;
    return d;
}

/* A node with its children; its depth bounds the renderer's recursion. */
static node *mk(parser *P, nkind k, int line, node *a, node *b)
{
    if (P->failed)
        return NULL;
    node *n = kg__jinja_alloc(P->ar, sizeof *n);
    if (!n) {
        P->failed = true;
        kg_set_error(P->ctx, KG_ERR_NOMEM, "%s: out of memory", P->name);
        return NULL;
    }
    *n = (node){.k = k, .line = line, .a = a, .b = b};
    return n;
}

static node *seal(parser *P, node *n)
{
    if (!n)
        return NULL;
    const node *kids[] = {n->a, n->b, n->c, n->d};
    int d = list_depth(n->list);
    for (int i = 0; i < 4; i++)
        if (kids[i]) {
            int kd = list_depth(kids[i]); /* an if's or a for's else body is a list */
            d = kd > d ? kd : d;
        }
    n->depth = d + 1;
    if (n->depth > KG__JINJA_MAX_DEPTH)
        return parse_fail(P, n->line, "nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    return n;
}

static node *parse_expr(parser *P, bool with_cond);

/* Filters, tests, functions and methods the renderer has; anything else is a parse error. */
static const char *const known_filters[] = {
    "trim", "length", "count", "upper", "lower", "capitalize", "title", "tojson", "string",
    "first", "last", "default", "d", "join", "reverse", "replace", "items", "list", "safe",
    "selectattr", "rejectattr", "map", NULL};
static const char *const known_tests[] = {
    "defined", "undefined", "none", "string", "number", "integer", "boolean", "true", "false",
    "mapping", "sequence", "iterable", "odd", "even", "divisibleby", "equalto", "eq", "ne", NULL};
static const char *const known_functions[] = {"raise_exception", "namespace", "range", NULL};
static const char *const known_methods[] = {
    "strip", "lstrip", "rstrip", "startswith", "endswith", "upper", "lower", "title",
    "capitalize", "split", "replace", "get", "items", "keys", "values", NULL};

static bool known(const char *const *list, const char *s, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && memcmp(*list, s, n) == 0)
            return true;
    return false;
}

/* ( args ) after the '(' */
static node *parse_args(parser *P)
{
    node *first = NULL, **tail = &first;
    if (accept(P, TK_OP, ")"))
        return NULL;
    do {
        const token *t = peek(P);
        node *arg;
        if (t->k == TK_NAME && tok_is(&P->t[P->pos + 1], TK_OP, "=")) {
            P->pos += 2;
            arg = seal(P, mk(P, E_KWARG, t->line, parse_expr(P, true), NULL));
            if (arg) {
                arg->s = t->s;
                arg->n = t->n;
            }
        } else {
            arg = parse_expr(P, true);
        }
        if (!arg)
            return NULL;
        *tail = arg;
        tail = &arg->next;
    } while (accept(P, TK_OP, ","));
    expect(P, TK_OP, ")", "',' or ')' in the argument list");
    return first;
}

static node *parse_primary(parser *P)
{
    const token *t = peek(P);
    char buf[64];
    node *n = NULL;
    if (t->k == TK_NAME) {
        P->pos++;
        static const char *const consts[] = {"true", "True", "false", "False", "none", "None"};
        for (int i = 0; i < 6; i++)
            if (tok_is(t, TK_NAME, consts[i])) {
                n = mk(P, i < 4 ? E_BOOL : E_NONE, t->line, NULL, NULL);
                if (n)
                    n->i = i < 2;
                return seal(P, n);
            }
        n = mk(P, E_NAME, t->line, NULL, NULL);
        if (n) {
            n->s = t->s;
            n->n = t->n;
        }
        return seal(P, n);
    }
    if (t->k == TK_STR) {
        /* adjacent literals join, as in Python */
        size_t total = 0, k = P->pos;
        for (; P->t[k].k == TK_STR; k++)
            total += P->t[k].n;
        char *s = total ? kg__jinja_alloc(P->ar, total) : NULL;
        if (total && !s)
            return parse_fail(P, t->line, "out of memory");
        size_t off = 0;
        for (; P->pos < k; P->pos++) {
            if (P->t[P->pos].n) /* s is NULL when every piece is empty */
                memcpy(s + off, P->t[P->pos].s, P->t[P->pos].n);
            off += P->t[P->pos].n;
        }
        n = mk(P, E_STR, t->line, NULL, NULL);
        if (n) {
            n->s = s ? s : "";
            n->n = total;
        }
        return seal(P, n);
    }
    if (t->k == TK_INT) {
        P->pos++;
        n = mk(P, E_INT, t->line, NULL, NULL);
        if (n)
            n->i = t->i;
        return seal(P, n);
    }
    if (accept(P, TK_OP, "(")) {
        n = parse_expr(P, true);
        if (n && tok_is(peek(P), TK_OP, ","))
            return parse_fail(P, t->line, "unsupported construct: a tuple");
        expect(P, TK_OP, ")", "')'");
        return P->failed ? NULL : n;
    }
    if (accept(P, TK_OP, "[") || accept(P, TK_OP, "{")) {
        bool dict = tok_is(t, TK_OP, "{");
        node *first = NULL, **tail = &first;
        while (!tok_is(peek(P), TK_OP, dict ? "}" : "]")) {
            node *item = parse_expr(P, true);
            if (dict && item) {
                expect(P, TK_OP, ":", "':' in a dict literal");
                item = seal(P, mk(P, E_PAIR, item->line, item, parse_expr(P, true)));
            }
            if (!item)
                return NULL;
            *tail = item;
            tail = &item->next;
            if (!accept(P, TK_OP, ","))
                break;
        }
        expect(P, TK_OP, dict ? "}" : "]", dict ? "',' or '}'" : "',' or ']'");
        n = mk(P, dict ? E_DICT : E_LIST, t->line, NULL, NULL);
        if (n)
            n->list = first;
        return seal(P, n);
    }
    return parse_fail(P, t->line, "expected an expression, found %s", describe(t, buf, sizeof buf));
}

static node *parse_postfix(parser *P, node *n)
{
    while (n) {
        const token *t = peek(P);
        if (accept(P, TK_OP, ".")) {
            const token *name = peek(P);
            if (name->k == TK_INT) { /* x.0 is x[0] */
                P->pos++;
                node *idx = seal(P, mk(P, E_INT, name->line, NULL, NULL));
                if (idx)
                    idx->i = name->i;
                n = seal(P, mk(P, E_INDEX, t->line, n, idx));
                continue;
            }
            if (!expect(P, TK_NAME, NULL, "an attribute name after '.'"))
                return NULL;
            n = mk(P, E_ATTR, t->line, n, NULL);
            if (n) {
                n->s = name->s;
                n->n = name->n;
            }
            n = seal(P, n);
        } else if (accept(P, TK_OP, "[")) {
            node *parts[3] = {NULL, NULL, NULL};
            int colons = 0;
            for (;;) {
                if (tok_is(peek(P), TK_OP, ":") || tok_is(peek(P), TK_OP, "]")) {
                    /* empty part */
                } else if (!(parts[colons] = parse_expr(P, true))) {
                    return NULL;
                }
                if (colons < 2 && accept(P, TK_OP, ":")) {
                    colons++;
                    continue;
                }
                break;
            }
            if (!expect(P, TK_OP, "]", "']'"))
                return NULL;
            if (colons == 0 && !parts[0])
                return parse_fail(P, t->line, "expected an index inside '[]'");
            if (colons == 0) {
                n = seal(P, mk(P, E_INDEX, t->line, n, parts[0]));
            } else {
                n = mk(P, E_SLICE, t->line, n, parts[0]);
                if (n) {
                    n->c = parts[1];
                    n->d = parts[2];
                }
                n = seal(P, n);
            }
        } else if (accept(P, TK_OP, "(")) {
            if (n->k == E_NAME && !known(known_functions, n->s, n->n))
                return parse_fail(P, t->line, "unsupported construct: function '%.*s' (the "
                                  "renderer has raise_exception, namespace and range)",
                                  (int)(n->n > 60 ? 60 : n->n), n->s);
            if (n->k == E_ATTR && !known(known_methods, n->s, n->n))
                return parse_fail(P, t->line, "unsupported construct: method '%.*s'",
                                  (int)(n->n > 60 ? 60 : n->n), n->s);
            if (n->k != E_NAME && n->k != E_ATTR)
                return parse_fail(P, t->line, "unsupported construct: calling an expression");
            node *args = parse_args(P);
            if (P->failed)
                return NULL;
            n = mk(P, E_CALL, t->line, n, NULL);
            if (n)
                n->list = args;
            n = seal(P, n);
        } else {
            break;
        }
    }
    return n;
}

static node *parse_unary(parser *P, bool with_filter)
{
    const token *t = peek(P);
    if (++P->depth > KG__JINJA_MAX_DEPTH)
        return parse_fail(P, t->line, "nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    node *n;
    if (accept(P, TK_OP, "-"))
        n = seal(P, mk(P, E_NEG, t->line, parse_unary(P, false), NULL));
    else if (accept(P, TK_OP, "+"))
        n = parse_unary(P, false);
    else
        n = parse_primary(P);
    n = parse_postfix(P, n);
    while (n && with_filter) {
        const token *op = peek(P);
        bool filter = accept(P, TK_OP, "|");
        if (!filter && !accept(P, TK_NAME, "is"))
            break;
        bool neg = !filter && accept(P, TK_NAME, "not");
        const token *name = peek(P);
        if (!expect(P, TK_NAME, NULL, filter ? "a filter name after '|'" : "a test name"))
            return NULL;
        if (!known(filter ? known_filters : known_tests, name->s, name->n))
            return parse_fail(P, name->line, "unsupported construct: %s '%.*s'",
                              filter ? "filter" : "test", (int)(name->n > 60 ? 60 : name->n),
                              name->s);
        node *args = accept(P, TK_OP, "(") ? parse_args(P) : NULL;
        n = mk(P, filter ? E_FILTER : E_TEST, op->line, n, NULL);
        if (n) {
            n->s = name->s;
            n->n = name->n;
            n->neg = neg;
            n->list = args;
        }
        n = seal(P, n);
    }
    P->depth--;
    return n;
}

/* Binary levels, loosest first: each entry's operators bind left to right. */
typedef struct binlevel {
    const char *ops[6];
    int codes[6];
} binlevel;

static const binlevel levels[] = {
    {{"+", "-"}, {OP_ADD, OP_SUB}},
    {{"~"}, {OP_CONCAT}},
    {{"*", "/", "//", "%"}, {OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD}},
    {{"**"}, {OP_POW}},
};

static node *parse_level(parser *P, int level)
{
    if (level == (int)(sizeof levels / sizeof *levels))
        return parse_unary(P, true);
    node *n = parse_level(P, level + 1);
    while (n) {
        const token *t = peek(P);
        int code = -1;
        for (int i = 0; levels[level].ops[i] && code < 0; i++)
            if (tok_is(t, TK_OP, levels[level].ops[i]))
                code = levels[level].codes[i];
        if (code < 0)
            break;
        P->pos++;
        n = mk(P, E_BIN, t->line, n, parse_level(P, level + 1));
        if (n)
            n->op = code;
        n = seal(P, n);
    }
    return n;
}

static node *parse_compare(parser *P)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    node *n = parse_level(P, 0), *prev_right = NULL;
    while (n) {
        const token *t = peek(P);
        int code = -1;
        for (int i = 0; i < 6; i++)
            if (tok_is(t, TK_OP, ops[i]))
                code = OP_EQ + i;
        if (tok_is(t, TK_NAME, "in"))
            code = OP_IN;
        if (tok_is(t, TK_NAME, "not") && tok_is(&P->t[P->pos + 1], TK_NAME, "in")) {
            code = OP_NOTIN;
            P->pos++;
        }
        if (code < 0)
            break;
        P->pos++;
        node *right = parse_level(P, 0);
        node *cmp = mk(P, E_BIN, t->line, prev_right ? prev_right : n, right);
        if (cmp)
            cmp->op = code;
        cmp = seal(P, cmp);
        if (prev_right) { /* a < b < c is a < b and b < c */
            n = mk(P, E_BIN, t->line, n, cmp);
            if (n)
                n->op = OP_AND;
            n = seal(P, n);
        } else {
            n = cmp;
        }
        prev_right = right;
    }
    return n;
}

static node *parse_not(parser *P)
{
    const token *t = peek(P);
    if (!accept(P, TK_NAME, "not"))
        return parse_compare(P);
    if (++P->depth > KG__JINJA_MAX_DEPTH)
        return parse_fail(P, t->line, "nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    node *n = seal(P, mk(P, E_NOT, t->line, parse_not(P), NULL));
    P->depth--;
    return n;
}

static node *parse_logic(parser *P, bool is_or)
{
    node *n = is_or ? parse_logic(P, false) : parse_not(P);
    while (n) {
        const token *t = peek(P);
        if (!accept(P, TK_NAME, is_or ? "or" : "and"))
            break;
        n = mk(P, E_BIN, t->line, n, is_or ? parse_logic(P, false) : parse_not(P));
        if (n)
            n->op = is_or ? OP_OR : OP_AND;
        n = seal(P, n);
    }
    return n;
}

/* An expression; with_cond: also `a if b else c` (not in a for loop's iterable). */
static node *parse_expr(parser *P, bool with_cond)
{
    const token *t = peek(P);
    if (++P->depth > KG__JINJA_MAX_DEPTH)
        return parse_fail(P, t->line, "nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    node *n = parse_logic(P, true);
    while (n && with_cond && tok_is(peek(P), TK_NAME, "if")) {
        const token *ift = peek(P);
        P->pos++;
        node *cond = parse_logic(P, true);
        node *other = accept(P, TK_NAME, "else") ? parse_expr(P, true) : NULL;
        n = mk(P, E_COND, ift->line, n, cond);
        if (n)
            n->c = other;
        n = seal(P, n);
    }
    P->depth--;
    return P->failed ? NULL : n;
}

static node *parse_body(parser *P, const char *const *stops, const char *opener, int line);

static bool block_end(parser *P, const char *tag)
{
    char what[64];
    snprintf(what, sizeof what, "'%%}' to end the '%s' tag", tag);
    return expect(P, TK_BEND, NULL, what);
}

static node *parse_if(parser *P, int line)
{
    node *n = mk(P, N_IF, line, parse_expr(P, true), NULL);
    if (!n || !block_end(P, "if"))
        return NULL;
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    n->list = parse_body(P, stops, "if", line);
    if (P->failed)
        return NULL;
    if (strcmp(P->stop, "elif") == 0) {
        n->b = parse_if(P, P->t[P->pos - 1].line);
    } else if (strcmp(P->stop, "else") == 0) {
        static const char *const end[] = {"endif", NULL};
        if (block_end(P, "else"))
            n->b = parse_body(P, end, "if", line);
        if (!P->failed)
            block_end(P, "endif");
    } else {
        block_end(P, "endif");
    }
    return P->failed ? NULL : seal(P, n);
}

static node *parse_for(parser *P, int line)
{
    const token *v1 = peek(P), *v2 = NULL;
    if (!expect(P, TK_NAME, NULL, "a loop variable after 'for'"))
        return NULL;
    if (accept(P, TK_OP, ",")) {
        v2 = peek(P);
        if (!expect(P, TK_NAME, NULL, "a second loop variable"))
            return NULL;
        if (tok_is(peek(P), TK_OP, ","))
            return parse_fail(P, line, "unsupported construct: more than two loop variables");
    }
    if (!expect(P, TK_NAME, "in", "'in' in the for tag"))
        return NULL;
    node *n = mk(P, N_FOR, line, parse_expr(P, false), NULL);
    if (!n)
        return NULL;
    n->s = v1->s;
    n->n = v1->n;
    if (v2) {
        n->s2 = v2->s;
        n->n2 = v2->n;
    }
    if (accept(P, TK_NAME, "if") && !(n->b = parse_expr(P, false)))
        return NULL;
    if (tok_is(peek(P), TK_NAME, "recursive"))
        return parse_fail(P, line, "unsupported construct: recursive for loop");
    if (!block_end(P, "for"))
        return NULL;
    static const char *const stops[] = {"else", "endfor", NULL};
    P->loops++;
    n->list = parse_body(P, stops, "for", line);
    P->loops--;
    if (P->failed)
        return NULL;
    if (strcmp(P->stop, "else") == 0) {
        static const char *const end[] = {"endfor", NULL};
        if (block_end(P, "else"))
            n->c = parse_body(P, end, "for", line);
    }
    if (!P->failed)
        block_end(P, "endfor");
    return P->failed ? NULL : seal(P, n);
}

static node *parse_set(parser *P, int line)
{
    const token *name = peek(P), *attr = NULL;
    if (!expect(P, TK_NAME, NULL, "a variable name after 'set'"))
        return NULL;
    if (accept(P, TK_OP, ".")) {
        attr = peek(P);
        if (!expect(P, TK_NAME, NULL, "an attribute name after '.'"))
            return NULL;
    }
    if (tok_is(peek(P), TK_OP, ","))
        return parse_fail(P, line, "unsupported construct: set with several targets");
    if (tok_is(peek(P), TK_BEND, NULL))
        return parse_fail(P, line, "unsupported construct: block set ({%% set x %%}...{%% endset %%})");
    if (!expect(P, TK_OP, "=", "'=' in the set tag"))
        return NULL;
    node *n = mk(P, N_SET, line, parse_expr(P, true), NULL);
    if (!n || !block_end(P, "set"))
        return NULL;
    n->s = name->s;
    n->n = name->n;
    if (attr) {
        n->s2 = attr->s;
        n->n2 = attr->n;
    }
    return seal(P, n);
}

static const char *const end_tags[] = {"elif", "else", "endif", "endfor", "endgeneration",
                                       "endset", "endmacro", "endraw", "endblock", NULL};

/* A {% tag %}: the parser is after the tag's name. */
static node *parse_tag(parser *P, const token *tag)
{
    int line = tag->line;
    if (tok_is(tag, TK_NAME, "if"))
        return parse_if(P, line);
    if (tok_is(tag, TK_NAME, "for"))
        return parse_for(P, line);
    if (tok_is(tag, TK_NAME, "set"))
        return parse_set(P, line);
    if (tok_is(tag, TK_NAME, "break") || tok_is(tag, TK_NAME, "continue")) {
        bool brk = tok_is(tag, TK_NAME, "break");
        if (!P->loops)
            return parse_fail(P, line, "'%s' outside a for loop", brk ? "break" : "continue");
        if (!block_end(P, brk ? "break" : "continue"))
            return NULL;
        return seal(P, mk(P, brk ? N_BREAK : N_CONTINUE, line, NULL, NULL));
    }
    if (tok_is(tag, TK_NAME, "generation")) { /* transformers' assistant-mask tag: its body */
        static const char *const stops[] = {"endgeneration", NULL};
        node *n = mk(P, N_SEQ, line, NULL, NULL);
        if (!n || !block_end(P, "generation"))
            return NULL;
        n->list = parse_body(P, stops, "generation", line);
        if (!P->failed)
            block_end(P, "endgeneration");
        return P->failed ? NULL : seal(P, n);
    }
    if (known(end_tags, tag->s, tag->n))
        return parse_fail(P, line, "unexpected '%.*s'", (int)tag->n, tag->s);
    return parse_fail(P, line, "unsupported construct: tag '%.*s' (the renderer has if, for, "
                      "set, break, continue and generation)", (int)(tag->n > 60 ? 60 : tag->n),
                      tag->s);
}

/* Statements until one of stops (NULL-terminated; NULL stops: the end of the template). On
 * return P->stop is the stop tag met; its name has been read, its %} not. */
static node *parse_body(parser *P, const char *const *stops, const char *opener, int line)
{
    node *first = NULL, **tail = &first;
    if (++P->depth > KG__JINJA_MAX_DEPTH)
        return parse_fail(P, line, "nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    while (!P->failed) {
        const token *t = peek(P);
        node *n = NULL;
        if (t->k == TK_EOF) {
            if (stops) {
                const char *const *last = stops;
                while (last[1])
                    last++;
                return parse_fail(P, line, "'%s' tag never closed (expected {%% %s %%})", opener,
                                  *last);
            }
            break;
        }
        P->pos++;
        if (t->k == TK_TEXT) {
            n = mk(P, N_TEXT, t->line, NULL, NULL);
            if (n) {
                n->s = t->s;
                n->n = t->n;
            }
            n = seal(P, n);
        } else if (t->k == TK_VBEGIN) {
            n = seal(P, mk(P, N_OUT, t->line, parse_expr(P, true), NULL));
            if (n && !expect(P, TK_VEND, NULL, "'}}'"))
                n = NULL;
        } else if (t->k == TK_BBEGIN) {
            const token *tag = peek(P);
            if (!expect(P, TK_NAME, NULL, "a tag name after '{%'"))
                break;
            for (int i = 0; stops && stops[i]; i++)
                if (tok_is(tag, TK_NAME, stops[i])) {
                    P->stop = stops[i];
                    P->depth--;
                    return first;
                }
            n = parse_tag(P, tag);
        } else {
            char buf[64];
            parse_fail(P, t->line, "unexpected %s", describe(t, buf, sizeof buf));
        }
        if (!n)
            break;
        *tail = n;
        tail = &n->next;
    }
    P->depth--;
    return P->failed ? NULL : first;
}

/* Jinja reads the source line by line (str.splitlines) and joins with "\n", which turns every
 * line break into "\n" and drops one trailing break. */
static char *normalize_source(const char *src, size_t *len)
{
    size_t n = strlen(src), o = 0;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        size_t skip = 0;
        if (c == '\r')
            skip = src[i + 1] == '\n';
        else if (c == 0xc2 && (unsigned char)src[i + 1] == 0x85)
            skip = 1;
        else if (c == 0xe2 && (unsigned char)src[i + 1] == 0x80 &&
                 ((unsigned char)src[i + 2] == 0xa8 || (unsigned char)src[i + 2] == 0xa9))
            skip = 2;
        else if (!(c == '\n' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e))) {
            out[o++] = (char)c;
            continue;
        }
        out[o++] = '\n';
        i += skip;
    }
    if (o && out[o - 1] == '\n')
        o--;
    out[o] = '\0';
    *len = o;
    return out;
}

kg__jinja *kg__jinja_parse(kg_ctx *ctx, const char *source, const char *name)
{
    kg__jinja *j = calloc(1, sizeof *j);
    size_t len = 0;
    if (!j || !(j->name = strdup(name)) || !(j->src = normalize_source(source, &len))) {
        if (j)
            free(j->name);
        free(j);
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    j->ar.cap = SIZE_MAX;
    lexer L = {.ctx = ctx, .name = name, .src = j->src, .len = len, .line = 1, .ar = &j->ar};
    bool ok = lex(&L);
    if (ok) {
        parser P = {.ctx = ctx, .name = name, .ar = &j->ar, .t = L.t};
        j->body = parse_body(&P, NULL, NULL, 1);
        ok = !P.failed;
    }
    free(L.t);
    if (!ok) {
        kg__jinja_free(j);
        return NULL;
    }
    return j;
}

void kg__jinja_free(kg__jinja *j)
{
    if (!j)
        return;
    kg__jinja_arena_free(&j->ar);
    free(j->name);
    free(j->src);
    free(j);
}
