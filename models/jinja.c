/* jinja.c — a Jinja subset for chat templates: lexer, parser and tree-walking renderer, with the
 * whitespace rules transformers sets (trim_blocks, lstrip_blocks, no trailing newline) and its
 * globals (raise_exception, namespace, tojson without HTML escaping). docs/chat-templates.md
 * lists what is supported; anything else is an error naming the template, line and construct.
 */
#include "models/jinja.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- Arena: every node and value lives in one, freed at once -------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    max_align_t data[];
} chunk;

typedef struct arena {
    chunk *head;
    size_t total, cap; /* bytes taken so far; the most it may take */
} arena;

static void *arena_alloc(arena *a, size_t n)
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

static void arena_free(arena *a)
{
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

/* ---- Text helpers ---------------------------------------------------------------------------- */

/* The code point at s (n bytes left) and its length; an invalid byte reads as itself. */
static size_t utf8_next(const char *s, size_t n, int32_t *cp)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    *cp = c;
    return (size_t)k;
}

/* Python's str.isspace, which Jinja's \s and str.strip() use. */
static bool is_space_cp(int32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Bytes of whitespace at the start of s / at the end of s. */
static size_t space_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int32_t c;
        size_t k = utf8_next(s + i, n - i, &c);
        if (!is_space_cp(c))
            break;
        i += k;
    }
    return i;
}

static size_t space_suffix(const char *s, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && end - start < 4 && ((unsigned char)s[start] & 0xc0) == 0x80)
            start--;
        int32_t c;
        if (utf8_next(s + start, end - start, &c) != end - start || !is_space_cp(c))
            break;
        end = start;
    }
    return n - end;
}

/* ---- Values ---------------------------------------------------------------------------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP } vkind;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;

typedef struct value {
    vkind k;
    union {
        bool b;
        int64_t i;
        struct {
            const char *p; /* for V_UNDEF: the name that was not found, for errors */
            size_t n;
        } s;
        jlist *l;
        jdict *d; /* V_DICT and V_NS (a namespace is a dict that set may change) */
        jloop *loop;
    };
} value;

struct jlist {
    int64_t n;
    value *v;
};
struct jdict {
    int64_t n, cap;
    value *key; /* strings */
    value *val;
};
struct jloop {
    int64_t i, n;
    const value *items;
};

static const char *kind_name(vkind k)
{
    static const char *const names[] = {"undefined", "none",      "boolean", "integer", "string",
                                        "list",      "dict",      "namespace", "loop"};
    return names[k];
}

static value v_str(const char *p, size_t n)
{
    return (value){.k = V_STR, .s = {p, n}};
}
static value v_int(int64_t i)
{
    return (value){.k = V_INT, .i = i};
}
static value v_bool(bool b)
{
    return (value){.k = V_BOOL, .b = b};
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

/* ---- Nodes ----------------------------------------------------------------------------------- */

typedef enum {
    /* statements */
    N_TEXT, /* s, n */
    N_OUT,  /* a */
    N_IF,   /* a: condition, list: then, b: else (first statement) */
    N_FOR,  /* s: name, s2: second name or NULL, a: iterable, b: filter, list: body, c: else */
    N_SET,  /* s: name, s2: attribute (set ns.attr) or NULL, a: value */
    N_BREAK,
    N_CONTINUE,
    N_SEQ, /* list: a {% generation %} body */
    /* expressions */
    E_STR,  /* s, n */
    E_INT,  /* i */
    E_BOOL, /* i */
    E_NONE,
    E_NAME,   /* s */
    E_ATTR,   /* a . s */
    E_INDEX,  /* a [ b ] */
    E_SLICE,  /* a [ b : c : d ], each may be NULL */
    E_CALL,   /* a ( list ) */
    E_KWARG,  /* s = a, in an argument list */
    E_FILTER, /* a | s ( list ) */
    E_TEST,   /* a is [not] s ( list ); neg */
    E_BIN,    /* a op b */
    E_NOT,    /* not a */
    E_NEG,    /* - a */
    E_COND,   /* a if b else c (c may be NULL) */
    E_LIST,   /* [ list ] */
    E_DICT,   /* { list of E_PAIR } */
    E_PAIR,   /* a : b */
} nkind;

/* Binary operators (E_BIN's op). */
enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN, OP_AND, OP_OR
};

typedef struct node node;
struct node {
    nkind k;
    int op;
    bool neg;
    int line, depth;
    const char *s, *s2;
    size_t n, n2;
    int64_t i;
    node *a, *b, *c, *d;
    node *list;
    node *next;
};

struct kg__jinja {
    char *name; /* for errors */
    char *src; /* the normalized source; text nodes point into it */
    arena ar;
    node *body;
};

/* ---- Errors ---------------------------------------------------------------------------------- */

static bool report(kg_ctx *ctx, kg_status st, const char *name, int line, const char *fmt,
                   va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0)
        return kg_set_error(ctx, st, "%s: line %d: %s", name, line, msg);
    return kg_set_error(ctx, st, "%s: %s", name, msg);
}

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
    report(L->ctx, KG_ERR_ARG, L->name, line, fmt, ap);
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
    char *out = arena_alloc(L->ar, end - L->pos);
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
        L->pos += space_prefix(L->src + L->pos, L->len - L->pos); /* tags span lines freely */
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
                    end += space_prefix(L->src + end, L->len - end);
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
            n -= space_suffix(text, n);
        } else if (kind >= 2 && sign != '+') { /* lstrip_blocks */
            size_t l = n;
            while (l > 0 && text[l - 1] != '\n')
                l--;
            if ((l > 0 || line_starting) && space_prefix(text + l, n - l) == n - l)
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
                e += space_prefix(L->src + e, L->len - e);
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
        report(P->ctx, KG_ERR_ARG, P->name, line, fmt, ap);
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
    node *n = arena_alloc(P->ar, sizeof *n);
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
    "first", "last", "default", "d", "join", "reverse", "replace", "items", "list", "safe", NULL};
static const char *const known_tests[] = {
    "defined", "undefined", "none", "string", "number", "integer", "boolean", "true", "false",
    "mapping", "sequence", "iterable", "odd", "even", "divisibleby", NULL};
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
        char *s = total ? arena_alloc(P->ar, total) : NULL;
        if (total && !s)
            return parse_fail(P, t->line, "out of memory");
        size_t off = 0;
        for (; P->pos < k; P->pos++) {
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
    arena_free(&j->ar);
    free(j->name);
    free(j->src);
    free(j);
}

/* ---- Renderer -------------------------------------------------------------------------------- */

typedef struct binding {
    const char *name;
    size_t n;
    value v;
} binding;

/* Variables: the globals, then one frame per loop iteration (Jinja's set inside a loop body
 * is local to that iteration). */
typedef struct frame {
    struct frame *parent;
    binding *b;
    int n, cap;
} frame;

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

typedef struct render {
    kg_ctx *ctx;
    const char *name;
    arena ar;
    char *out;
    size_t len, cap;
    int64_t steps;
    int ctl;
    bool failed;
    frame *top;
} render;

__attribute__((format(printf, 4, 5))) static bool rfail(render *R, kg_status st, int line,
                                                        const char *fmt, ...)
{
    if (!R->failed) {
        va_list ap;
        va_start(ap, fmt);
        report(R->ctx, st, R->name, line, fmt, ap);
        va_end(ap);
    }
    R->failed = true;
    return false;
}

static void *ralloc(render *R, int line, size_t n)
{
    void *p = R->failed ? NULL : arena_alloc(&R->ar, n ? n : 1);
    if (!p)
        rfail(R, KG_ERR_NOMEM, line, "the template needs more than %d MiB of working memory",
              KG__JINJA_MAX_MEMORY >> 20);
    return p;
}

static bool step(render *R, int line)
{
    if (++R->steps > KG__JINJA_MAX_STEPS)
        return rfail(R, KG_ERR_RANGE, line, "the template ran more than %d steps",
                     KG__JINJA_MAX_STEPS);
    return !R->failed;
}

static bool emit_text(render *R, int line, const char *s, size_t n)
{
    if (n > KG__JINJA_MAX_OUTPUT - R->len)
        return rfail(R, KG_ERR_RANGE, line, "output larger than %d MiB",
                     KG__JINJA_MAX_OUTPUT >> 20);
    if (R->len + n + 1 > R->cap) {
        size_t cap = R->cap ? R->cap : 1024;
        while (cap < R->len + n + 1)
            cap *= 2;
        char *o = realloc(R->out, cap);
        if (!o)
            return rfail(R, KG_ERR_NOMEM, line, "out of memory for the output");
        R->out = o;
        R->cap = cap;
    }
    memcpy(R->out + R->len, s, n);
    R->len += n;
    return true;
}

static bool undefined_error(render *R, int line, const value *v)
{
    return rfail(R, KG_ERR_ARG, line, "'%.*s' is undefined", (int)(v->s.n > 60 ? 60 : v->s.n),
                 v->s.p ? v->s.p : "");
}

/* str(v) as Jinja prints it; lists and dicts (Python's repr) are not supported. */
static bool str_of(render *R, int line, const value *v, const char **p, size_t *n)
{
    switch (v->k) {
    case V_UNDEF:
        *p = "", *n = 0;
        return true;
    case V_NONE:
        *p = "None", *n = 4;
        return true;
    case V_BOOL:
        *p = v->b ? "True" : "False", *n = v->b ? 4 : 5;
        return true;
    case V_INT: {
        char *s = ralloc(R, line, 24);
        if (!s)
            return false;
        *n = (size_t)snprintf(s, 24, "%lld", (long long)v->i);
        *p = s;
        return true;
    }
    case V_STR:
        *p = v->s.p, *n = v->s.n;
        return true;
    default:
        return rfail(R, KG_ERR_ARG, line, "unsupported construct: printing a %s (Python's repr; "
                     "use |tojson)", kind_name(v->k));
    }
}

static bool cat(render *R, int line, const char *a, size_t na, const char *b, size_t nb,
                value *out)
{
    if (na + nb > KG__JINJA_MAX_MEMORY)
        return rfail(R, KG_ERR_RANGE, line, "a string longer than %d MiB",
                     KG__JINJA_MAX_MEMORY >> 20);
    char *s = ralloc(R, line, na + nb);
    if (!s)
        return false;
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    *out = v_str(s, na + nb);
    return true;
}

static bool truthy(const value *v)
{
    switch (v->k) {
    case V_UNDEF:
    case V_NONE:
        return false;
    case V_BOOL:
        return v->b;
    case V_INT:
        return v->i != 0;
    case V_STR:
        return v->s.n != 0;
    case V_LIST:
        return v->l->n != 0;
    case V_DICT:
        return v->d->n != 0;
    default:
        return true;
    }
}

static bool is_num(const value *v)
{
    return v->k == V_INT || v->k == V_BOOL;
}
static int64_t num(const value *v)
{
    return v->k == V_INT ? v->i : v->b;
}

static value *dict_find(const jdict *d, const char *key, size_t n)
{
    for (int64_t i = 0; i < d->n; i++)
        if (d->key[i].s.n == n && memcmp(d->key[i].s.p, key, n) == 0)
            return &d->val[i];
    return NULL;
}

/* 1 when equal, 0 when not, -1 when nested too deep to tell (lists built in a loop). */
static int equal_at(const value *a, const value *b, int depth)
{
    if (depth > KG__JINJA_MAX_DEPTH)
        return -1;
    if (is_num(a) && is_num(b))
        return num(a) == num(b);
    if (a->k != b->k)
        return false;
    switch (a->k) {
    case V_UNDEF:
    case V_NONE:
        return true;
    case V_STR:
        return a->s.n == b->s.n && memcmp(a->s.p, b->s.p, a->s.n) == 0;
    case V_LIST:
        if (a->l->n != b->l->n)
            return false;
        for (int64_t i = 0; i < a->l->n; i++) {
            int r = equal_at(&a->l->v[i], &b->l->v[i], depth + 1);
            if (r != 1)
                return r;
        }
        return true;
    case V_DICT:
        if (a->d->n != b->d->n)
            return false;
        for (int64_t i = 0; i < a->d->n; i++) {
            const value *o = dict_find(b->d, a->d->key[i].s.p, a->d->key[i].s.n);
            int r = o ? equal_at(&a->d->val[i], o, depth + 1) : 0;
            if (r != 1)
                return r;
        }
        return true;
    case V_NS:
        return a->d == b->d;
    case V_LOOP:
        return a->loop == b->loop;
    default:
        return false;
    }
}

static bool equal(render *R, int line, const value *a, const value *b, bool *eq)
{
    int r = equal_at(a, b, 0);
    *eq = r == 1;
    return r >= 0 || rfail(R, KG_ERR_RANGE, line, "comparing values nested deeper than %d",
                           KG__JINJA_MAX_DEPTH);
}

static jlist *new_list(render *R, int line, int64_t n)
{
    if (n < 0 || (uint64_t)n > KG__JINJA_MAX_MEMORY / sizeof(value))
        return rfail(R, KG_ERR_RANGE, line, "a list of more than %zu items",
                     KG__JINJA_MAX_MEMORY / sizeof(value)), NULL;
    jlist *l = ralloc(R, line, sizeof *l);
    value *v = l ? ralloc(R, line, (size_t)n * sizeof *v) : NULL;
    if (!v)
        return NULL;
    *l = (jlist){n, v};
    return l;
}

static bool dict_set(render *R, int line, jdict *d, value key, value val)
{
    value *slot = dict_find(d, key.s.p, key.s.n);
    if (slot) {
        *slot = val;
        return true;
    }
    if (d->n == d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 4;
        value *k = ralloc(R, line, (size_t)cap * sizeof *k);
        value *v = k ? ralloc(R, line, (size_t)cap * sizeof *v) : NULL;
        if (!v)
            return false;
        if (d->n) {
            memcpy(k, d->key, (size_t)d->n * sizeof *k);
            memcpy(v, d->val, (size_t)d->n * sizeof *v);
        }
        d->key = k, d->val = v, d->cap = cap;
    }
    d->key[d->n] = key;
    d->val[d->n++] = val;
    return true;
}

static value lookup(const render *R, const char *name, size_t n)
{
    for (const frame *f = R->top; f; f = f->parent)
        for (int i = f->n - 1; i >= 0; i--)
            if (f->b[i].n == n && memcmp(f->b[i].name, name, n) == 0)
                return f->b[i].v;
    return (value){.k = V_UNDEF, .s = {name, n}};
}

static bool bind(render *R, int line, frame *f, const char *name, size_t n, value v)
{
    for (int i = 0; i < f->n; i++)
        if (f->b[i].n == n && memcmp(f->b[i].name, name, n) == 0) {
            f->b[i].v = v;
            return true;
        }
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 4;
        binding *b = ralloc(R, line, (size_t)cap * sizeof *b);
        if (!b)
            return false;
        if (f->n)
            memcpy(b, f->b, (size_t)f->n * sizeof *b);
        f->b = b, f->cap = cap;
    }
    f->b[f->n++] = (binding){name, n, v};
    return true;
}

/* Code points of s: their byte offsets, count+1 of them (the last is n). */
static size_t *cp_offsets(render *R, int line, const char *s, size_t n, int64_t *count)
{
    size_t *off = ralloc(R, line, (n + 1) * sizeof *off);
    if (!off)
        return NULL;
    int64_t c = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        off[c++] = i;
        i += utf8_next(s + i, n - i, &cp);
    }
    off[c] = n;
    *count = c;
    return off;
}

static int64_t cp_count(const char *s, size_t n)
{
    int64_t c = 0;
    for (size_t i = 0; i < n; c++) {
        int32_t cp;
        i += utf8_next(s + i, n - i, &cp);
    }
    return c;
}

/* Python's slice indices for a sequence of len items: the first index, the step, the count. */
static bool slice_indices(render *R, int line, const value *vs, int64_t len, int64_t *start,
                          int64_t *stepv, int64_t *count)
{
    int64_t v[3];
    bool given[3];
    for (int i = 0; i < 3; i++) {
        given[i] = vs[i].k != V_UNDEF && vs[i].k != V_NONE;
        if (given[i] && !is_num(&vs[i]))
            return rfail(R, KG_ERR_ARG, line, "slice indices must be integers, not %s",
                         kind_name(vs[i].k));
        v[i] = given[i] ? num(&vs[i]) : 0;
    }
    int64_t st = given[2] ? v[2] : 1;
    if (st == 0)
        return rfail(R, KG_ERR_ARG, line, "slice step cannot be zero");
    if (st == INT64_MIN)
        st = -INT64_MAX;
    int64_t b[2];
    for (int i = 0; i < 2; i++) {
        if (!given[i]) {
            b[i] = st > 0 ? (i ? len : 0) : (i ? -1 : len - 1);
            continue;
        }
        int64_t x = v[i];
        if (x < 0) {
            x = x < -len ? (st < 0 ? -1 : 0) : x + len;
        } else if (x >= len) {
            x = st < 0 ? len - 1 : len;
        }
        b[i] = x;
    }
    if (st > 0)
        *count = b[1] > b[0] ? (b[1] - b[0] - 1) / st + 1 : 0;
    else
        *count = b[0] > b[1] ? (b[0] - b[1] - 1) / (-st) + 1 : 0;
    *start = b[0];
    *stepv = st;
    return true;
}

static bool do_slice(render *R, int line, const value *obj, const value *parts, value *out)
{
    int64_t start, st, count;
    if (obj->k == V_LIST) {
        if (!slice_indices(R, line, parts, obj->l->n, &start, &st, &count))
            return false;
        jlist *l = new_list(R, line, count);
        if (!l)
            return false;
        for (int64_t i = 0; i < count; i++)
            l->v[i] = obj->l->v[start + i * st];
        *out = (value){.k = V_LIST, .l = l};
        return true;
    }
    if (obj->k == V_STR) {
        int64_t n;
        size_t *off = cp_offsets(R, line, obj->s.p, obj->s.n, &n);
        if (!off || !slice_indices(R, line, parts, n, &start, &st, &count))
            return false;
        char *s = ralloc(R, line, obj->s.n);
        if (!s)
            return false;
        size_t len = 0;
        for (int64_t i = 0; i < count; i++) {
            int64_t c = start + i * st;
            memcpy(s + len, obj->s.p + off[c], off[c + 1] - off[c]);
            len += off[c + 1] - off[c];
        }
        *out = v_str(s, len);
        return true;
    }
    if (obj->k == V_UNDEF)
        return undefined_error(R, line, obj);
    return rfail(R, KG_ERR_ARG, line, "cannot slice a %s", kind_name(obj->k));
}

static bool loop_attr(const jloop *lp, const char *a, size_t n, value *out)
{
#define IS(w) (n == sizeof w - 1 && memcmp(a, w, n) == 0)
    int64_t i = lp->i, len = lp->n;
    if (IS("index"))
        *out = v_int(i + 1);
    else if (IS("index0"))
        *out = v_int(i);
    else if (IS("revindex"))
        *out = v_int(len - i);
    else if (IS("revindex0"))
        *out = v_int(len - i - 1);
    else if (IS("first"))
        *out = v_bool(i == 0);
    else if (IS("last"))
        *out = v_bool(i == len - 1);
    else if (IS("length"))
        *out = v_int(len);
    else if (IS("depth"))
        *out = v_int(1);
    else if (IS("depth0"))
        *out = v_int(0);
    else if (IS("previtem") && i > 0)
        *out = lp->items[i - 1];
    else if (IS("nextitem") && i + 1 < len)
        *out = lp->items[i + 1];
    else
        return false;
    return true;
#undef IS
}

/* obj.name (attr) or obj[name]: Jinja tries the attribute and the item; a missing one is
 * undefined, and only undefined itself has no attributes at all. */
static bool get_member(render *R, int line, const value *obj, const value *key, value *out)
{
    if (obj->k == V_UNDEF)
        return undefined_error(R, line, obj);
    *out = (value){.k = V_UNDEF, .s = {"member", 6}};
    if (key->k == V_STR) {
        const value *v = NULL;
        if (obj->k == V_DICT || obj->k == V_NS)
            v = dict_find(obj->d, key->s.p, key->s.n);
        if (v)
            *out = *v;
        else if (obj->k == V_LOOP)
            loop_attr(obj->loop, key->s.p, key->s.n, out);
        if (out->k == V_UNDEF)
            out->s.p = key->s.p, out->s.n = key->s.n;
        return true;
    }
    if (is_num(key) && (obj->k == V_LIST || obj->k == V_STR)) {
        int64_t i = num(key);
        if (obj->k == V_LIST) {
            int64_t len = obj->l->n;
            if (i < 0)
                i += len;
            if (i >= 0 && i < len)
                *out = obj->l->v[i];
            return true;
        }
        value parts[3] = {v_int(i), v_int(i + 1), v_int(1)};
        if (i == -1)
            parts[1] = (value){.k = V_NONE};
        int64_t n = cp_count(obj->s.p, obj->s.n);
        if (i >= n || i < -n)
            return true;
        return do_slice(R, line, obj, parts, out);
    }
    return true;
}

/* Arguments of a call, filter or test: positional and keyword. */
typedef struct args {
    int n, nkw;
    value v[4];
    const node *kw[4];
    value kwv[4];
} args;

static bool eval(render *R, const node *e, value *out);

static bool eval_args(render *R, const node *list, int line, args *A)
{
    *A = (args){0};
    for (const node *a = list; a; a = a->next) {
        bool kw = a->k == E_KWARG;
        if ((kw ? A->nkw : A->n) == 4)
            return rfail(R, KG_ERR_ARG, line, "too many arguments");
        if (kw) {
            A->kw[A->nkw] = a;
            if (!eval(R, a->a, &A->kwv[A->nkw++]))
                return false;
        } else if (!eval(R, a, &A->v[A->n++])) {
            return false;
        }
    }
    return true;
}

/* Argument i, or the keyword argument name; undefined when absent. */
static value arg(const args *A, int i, const char *name)
{
    if (i < A->n)
        return A->v[i];
    for (int k = 0; k < A->nkw; k++)
        if (A->kw[k]->n == strlen(name) && memcmp(A->kw[k]->s, name, A->kw[k]->n) == 0)
            return A->kwv[k];
    return (value){.k = V_UNDEF, .s = {name, strlen(name)}};
}

static bool want_str(render *R, int line, const value *v, const char *what)
{
    if (v->k == V_STR)
        return true;
    return rfail(R, KG_ERR_ARG, line, "%s expects a string, not %s", what, kind_name(v->k));
}

/* ---- String operations shared by filters and methods ---- */

static bool in_set(int32_t c, const value *chars)
{
    if (chars->k != V_STR)
        return is_space_cp(c);
    for (size_t i = 0; i < chars->s.n;) {
        int32_t d;
        i += utf8_next(chars->s.p + i, chars->s.n - i, &d);
        if (d == c)
            return true;
    }
    return false;
}

/* strip (left and/or right) the code points in chars (whitespace when chars is not a string). */
static value strip(const value *s, const value *chars, bool left, bool right)
{
    const char *p = s->s.p;
    size_t a = 0, b = s->s.n;
    while (left && a < b) {
        int32_t c;
        size_t k = utf8_next(p + a, b - a, &c);
        if (!in_set(c, chars))
            break;
        a += k;
    }
    while (right && b > a) {
        size_t start = b - 1;
        while (start > a && b - start < 4 && ((unsigned char)p[start] & 0xc0) == 0x80)
            start--;
        int32_t c;
        if (utf8_next(p + start, b - start, &c) != b - start)
            start = b - 1, c = (unsigned char)p[start];
        if (!in_set(c, chars))
            break;
        b = start;
    }
    return v_str(p + a, b - a);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE } case_kind;

/* Case mapping code point by code point (utf8proc's simple mappings). */
static bool change_case(render *R, int line, const value *s, case_kind how, value *out)
{
    char *o = ralloc(R, line, s->s.n * 2 + 4);
    if (!o)
        return false;
    size_t n = 0;
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s->s.n;) {
        int32_t c;
        size_t k = utf8_next(s->s.p + i, s->s.n - i, &c);
        int32_t m = c;
        if (how == CASE_UPPER)
            m = utf8proc_toupper(c);
        else if (how == CASE_LOWER)
            m = utf8proc_tolower(c);
        else if (how == CASE_TITLE)
            m = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c);
        else
            m = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
        utf8proc_category_t cat_ = utf8proc_category(c);
        prev_cased = cat_ == UTF8PROC_CATEGORY_LU || cat_ == UTF8PROC_CATEGORY_LL ||
                     cat_ == UTF8PROC_CATEGORY_LT;
        first = false;
        if (m == c || !utf8proc_codepoint_valid(m)) {
            memcpy(o + n, s->s.p + i, k);
            n += k;
        } else {
            n += (size_t)utf8proc_encode_char(m, (utf8proc_uint8_t *)o + n);
        }
        i += k;
    }
    *out = v_str(o, n);
    return true;
}

static bool find_sub(const value *hay, size_t from, const value *needle, size_t *at)
{
    if (needle->s.n == 0) {
        *at = from;
        return from <= hay->s.n;
    }
    for (size_t i = from; i + needle->s.n <= hay->s.n; i++)
        if (memcmp(hay->s.p + i, needle->s.p, needle->s.n) == 0) {
            *at = i;
            return true;
        }
    return false;
}

static bool replace(render *R, int line, const value *s, const value *old, const value *new_,
                    const value *count, value *out)
{
    if (!want_str(R, line, old, "replace") || !want_str(R, line, new_, "replace"))
        return false;
    int64_t max = is_num(count) ? num(count) : -1;
    value acc = v_str("", 0);
    size_t pos = 0, at;
    for (int64_t done = 0; (max < 0 || done < max) && find_sub(s, pos, old, &at); done++) {
        if (!cat(R, line, acc.s.p, acc.s.n, s->s.p + pos, at - pos, &acc) ||
            !cat(R, line, acc.s.p, acc.s.n, new_->s.p, new_->s.n, &acc) || !step(R, line))
            return false;
        if (old->s.n == 0) { /* "ab".replace("", "-") is "-a-b-": copy one code point */
            if (at >= s->s.n) {
                pos = at + 1;
                break;
            }
            int32_t c;
            size_t k = utf8_next(s->s.p + at, s->s.n - at, &c);
            if (!cat(R, line, acc.s.p, acc.s.n, s->s.p + at, k, &acc))
                return false;
            pos = at + k;
        } else {
            pos = at + old->s.n;
        }
    }
    if (pos <= s->s.n && !cat(R, line, acc.s.p, acc.s.n, s->s.p + pos, s->s.n - pos, &acc))
        return false;
    *out = acc;
    return true;
}

/* Python's str.split(sep, maxsplit) into l (l NULL: count the pieces only). */
static int64_t split_pass(const value *s, const value *sep, int64_t max, jlist *l)
{
    int64_t count = 0;
    size_t pos = 0, at;
    if (sep->k == V_STR) {
        while ((max < 0 || count < max) && find_sub(s, pos, sep, &at)) {
            if (l)
                l->v[count] = v_str(s->s.p + pos, at - pos);
            count++;
            pos = at + sep->s.n;
        }
        if (l)
            l->v[count] = v_str(s->s.p + pos, s->s.n - pos);
        return count + 1;
    }
    for (;;) { /* runs of whitespace; no empty pieces */
        pos += space_prefix(s->s.p + pos, s->s.n - pos);
        if (pos >= s->s.n)
            break;
        size_t end = s->s.n; /* after maxsplit pieces, the rest is one piece */
        if (max < 0 || count < max)
            for (end = pos; end < s->s.n && !space_prefix(s->s.p + end, s->s.n - end);) {
                int32_t c;
                end += utf8_next(s->s.p + end, s->s.n - end, &c);
            }
        if (l)
            l->v[count] = v_str(s->s.p + pos, end - pos);
        count++;
        pos = end;
    }
    return count;
}

static bool split(render *R, int line, const value *s, const value *sep, const value *maxsplit,
                  value *out)
{
    int64_t max = is_num(maxsplit) ? num(maxsplit) : -1;
    if (sep->k == V_STR && sep->s.n == 0)
        return rfail(R, KG_ERR_ARG, line, "split: empty separator");
    if (sep->k != V_STR && sep->k != V_NONE && sep->k != V_UNDEF)
        return want_str(R, line, sep, "split");
    jlist *l = new_list(R, line, split_pass(s, sep, max, NULL));
    if (!l)
        return false;
    split_pass(s, sep, max, l);
    *out = (value){.k = V_LIST, .l = l};
    return true;
}

/* ---- tojson, as transformers' json.dumps(x, ensure_ascii=False, indent=indent) ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        char *p = cap <= KG__JINJA_MAX_MEMORY ? realloc(b->p, cap) : NULL;
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void json_str(sbuf *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *m = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                      : c == '\f' ? "\\f" : NULL;
        if (!m && c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            m = esc;
        }
        if (m)
            sb_put(b, m, strlen(m));
        else
            sb_put(b, s + i, 1);
    }
    sb_put(b, "\"", 1);
}

static void json_newline(sbuf *b, int64_t indent, int level)
{
    sb_put(b, "\n", 1);
    for (int64_t i = 0; i < indent * level; i++)
        sb_put(b, " ", 1);
}

static bool json_value(render *R, int line, sbuf *b, const value *v, int64_t indent, int level)
{
    if (level > KG__JINJA_MAX_DEPTH)
        return rfail(R, KG_ERR_RANGE, line, "tojson: nesting deeper than %d", KG__JINJA_MAX_DEPTH);
    char num_[24];
    switch (v->k) {
    case V_NONE:
        sb_put(b, "null", 4);
        return true;
    case V_BOOL:
        sb_put(b, v->b ? "true" : "false", v->b ? 4 : 5);
        return true;
    case V_INT:
        sb_put(b, num_, (size_t)snprintf(num_, sizeof num_, "%lld", (long long)v->i));
        return true;
    case V_STR:
        json_str(b, v->s.p, v->s.n);
        return true;
    case V_LIST:
    case V_DICT: {
        bool list = v->k == V_LIST;
        int64_t n = list ? v->l->n : v->d->n;
        sb_put(b, list ? "[" : "{", 1);
        for (int64_t i = 0; i < n; i++) {
            if (i)
                sb_put(b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0)
                json_newline(b, indent, level + 1);
            if (!list) {
                json_str(b, v->d->key[i].s.p, v->d->key[i].s.n);
                sb_put(b, ": ", 2);
            }
            if (!json_value(R, line, b, list ? &v->l->v[i] : &v->d->val[i], indent, level + 1) ||
                !step(R, line))
                return false;
        }
        if (indent >= 0 && n)
            json_newline(b, indent, level);
        sb_put(b, list ? "]" : "}", 1);
        return true;
    }
    default:
        return rfail(R, KG_ERR_ARG, line, "tojson: a %s is not JSON serializable",
                     kind_name(v->k));
    }
}

static bool tojson(render *R, int line, const value *v, const value *indent, value *out)
{
    if (indent->k != V_UNDEF && indent->k != V_NONE && indent->k != V_INT)
        return rfail(R, KG_ERR_ARG, line, "tojson: indent must be an integer");
    int64_t ind = indent->k == V_INT ? (indent->i < 0 ? 0 : indent->i) : -1;
    if (ind > 64)
        return rfail(R, KG_ERR_RANGE, line, "tojson: indent larger than 64");
    sbuf b = {0};
    bool ok = json_value(R, line, &b, v, ind, 0);
    if (ok && b.oom)
        ok = rfail(R, KG_ERR_NOMEM, line, "tojson: out of memory");
    if (ok) {
        char *s = ralloc(R, line, b.n);
        if ((ok = s != NULL)) {
            if (b.n)
                memcpy(s, b.p, b.n);
            *out = v_str(s, b.n);
        }
    }
    free(b.p);
    return ok;
}

/* ---- Filters, methods, functions, tests ---- */

static bool name_is(const node *e, const char *w)
{
    return e->n == strlen(w) && memcmp(e->s, w, e->n) == 0;
}

/* The items a for loop or a filter walks: a list's items, a dict's keys, a string's
 * characters; undefined is empty. */
static bool iterate(render *R, int line, const value *v, const value **items, int64_t *n)
{
    static const value none[1];
    switch (v->k) {
    case V_UNDEF:
        *items = none, *n = 0;
        return true;
    case V_LIST:
        *items = v->l->v, *n = v->l->n;
        return true;
    case V_DICT:
        *items = v->d->key, *n = v->d->n;
        return true;
    case V_STR: {
        int64_t count;
        size_t *off = cp_offsets(R, line, v->s.p, v->s.n, &count);
        jlist *l = off ? new_list(R, line, count) : NULL;
        if (!l)
            return false;
        for (int64_t i = 0; i < count; i++)
            l->v[i] = v_str(v->s.p + off[i], off[i + 1] - off[i]);
        *items = l->v, *n = count;
        return true;
    }
    default:
        return rfail(R, KG_ERR_ARG, line, "cannot iterate over a %s", kind_name(v->k));
    }
}

static bool dict_items(render *R, int line, const jdict *d, int which, value *out)
{
    jlist *l = new_list(R, line, d->n);
    if (!l)
        return false;
    for (int64_t i = 0; i < d->n; i++) {
        if (which == 0) {
            l->v[i] = d->key[i];
        } else if (which == 1) {
            l->v[i] = d->val[i];
        } else {
            jlist *pair = new_list(R, line, 2);
            if (!pair)
                return false;
            pair->v[0] = d->key[i];
            pair->v[1] = d->val[i];
            l->v[i] = (value){.k = V_LIST, .l = pair};
        }
    }
    *out = (value){.k = V_LIST, .l = l};
    return true;
}

/* The string operations filters and methods share, by name; false with *handled false when
 * name is none of them. */
static bool string_op(render *R, int line, const char *op, const value *s, const args *A,
                      value *out, bool *handled)
{
    *handled = true;
    value a0 = arg(A, 0, "chars");
    if (!strcmp(op, "strip") || !strcmp(op, "trim"))
        return *out = strip(s, &a0, true, true), true;
    if (!strcmp(op, "lstrip"))
        return *out = strip(s, &a0, true, false), true;
    if (!strcmp(op, "rstrip"))
        return *out = strip(s, &a0, false, true), true;
    if (!strcmp(op, "upper"))
        return change_case(R, line, s, CASE_UPPER, out);
    if (!strcmp(op, "lower"))
        return change_case(R, line, s, CASE_LOWER, out);
    if (!strcmp(op, "title"))
        return change_case(R, line, s, CASE_TITLE, out);
    if (!strcmp(op, "capitalize"))
        return change_case(R, line, s, CASE_CAPITALIZE, out);
    if (!strcmp(op, "replace")) {
        value a1 = arg(A, 1, "new"), a2 = arg(A, 2, "count");
        value old = arg(A, 0, "old");
        return replace(R, line, s, &old, &a1, &a2, out);
    }
    *handled = false;
    return false;
}

static bool call_method(render *R, const node *e, value *out)
{
    const node *callee = e->a;
    value obj;
    args A;
    if (!eval(R, callee->a, &obj) || !eval_args(R, e->list, e->line, &A))
        return false;
    char op[16];
    snprintf(op, sizeof op, "%.*s", (int)callee->n, callee->s); /* known_methods: all short */
    if (obj.k == V_STR) {
        bool handled;
        bool ok = string_op(R, e->line, op, &obj, &A, out, &handled);
        if (handled)
            return ok;
        if (!strcmp(op, "startswith") || !strcmp(op, "endswith")) {
            value p = arg(&A, 0, "prefix");
            if (!want_str(R, e->line, &p, op))
                return false;
            bool fits = p.s.n <= obj.s.n;
            size_t at = op[0] == 's' ? 0 : obj.s.n - (fits ? p.s.n : 0);
            *out = v_bool(fits && memcmp(obj.s.p + at, p.s.p, p.s.n) == 0);
            return true;
        }
        if (!strcmp(op, "split")) {
            value sep = arg(&A, 0, "sep"), max = arg(&A, 1, "maxsplit");
            return split(R, e->line, &obj, &sep, &max, out);
        }
    } else if (obj.k == V_DICT) {
        if (!strcmp(op, "get")) {
            value k = arg(&A, 0, "key");
            const value *v = k.k == V_STR ? dict_find(obj.d, k.s.p, k.s.n) : NULL;
            value def = arg(&A, 1, "default");
            *out = v ? *v : def.k == V_UNDEF ? (value){.k = V_NONE} : def;
            return true;
        }
        int which = !strcmp(op, "keys") ? 0 : !strcmp(op, "values") ? 1
                  : !strcmp(op, "items") ? 2 : -1;
        if (which >= 0)
            return dict_items(R, e->line, obj.d, which, out);
    } else if (obj.k == V_UNDEF) {
        return undefined_error(R, e->line, &obj);
    }
    return rfail(R, KG_ERR_ARG, e->line, "a %s has no method '%s'", kind_name(obj.k), op);
}

static bool call_function(render *R, const node *e, value *out)
{
    const node *callee = e->a;
    if (name_is(callee, "namespace")) {
        jdict *d = ralloc(R, e->line, sizeof *d);
        if (!d)
            return false;
        *d = (jdict){0};
        for (const node *a = e->list; a; a = a->next) {
            value v;
            if (a->k != E_KWARG)
                return rfail(R, KG_ERR_ARG, e->line, "namespace() takes keyword arguments");
            if (!eval(R, a->a, &v) || !dict_set(R, e->line, d, v_str(a->s, a->n), v))
                return false;
        }
        *out = (value){.k = V_NS, .d = d};
        return true;
    }
    args A;
    if (!eval_args(R, e->list, e->line, &A))
        return false;
    if (name_is(callee, "raise_exception")) {
        value m = arg(&A, 0, "message");
        const char *p;
        size_t n;
        if (!str_of(R, e->line, &m, &p, &n))
            return false;
        return rfail(R, KG_ERR_ARG, e->line, "raise_exception: %.*s", (int)(n > 400 ? 400 : n), p);
    }
    /* range(stop) / range(start, stop[, step]) */
    int64_t r[3] = {0, 0, 1};
    if (A.n < 1 || A.n > 3 || A.nkw)
        return rfail(R, KG_ERR_ARG, e->line, "range() takes 1 to 3 integer arguments");
    for (int i = 0; i < A.n; i++) {
        if (!is_num(&A.v[i]))
            return rfail(R, KG_ERR_ARG, e->line, "range() takes integers, not %s",
                         kind_name(A.v[i].k));
        r[A.n == 1 ? 1 : i] = num(&A.v[i]);
    }
    if (r[2] == 0)
        return rfail(R, KG_ERR_ARG, e->line, "range() step cannot be zero");
    /* the count as Python's range computes it, in wide arithmetic */
    __int128 span = r[2] > 0 ? (__int128)r[1] - r[0] : (__int128)r[0] - r[1];
    __int128 stp = r[2] > 0 ? r[2] : -(__int128)r[2];
    __int128 c = span > 0 ? (span - 1) / stp + 1 : 0;
    if (c > (__int128)(KG__JINJA_MAX_MEMORY / sizeof(value)))
        return rfail(R, KG_ERR_RANGE, e->line, "range() of more than %zu items",
                     KG__JINJA_MAX_MEMORY / sizeof(value));
    jlist *l = new_list(R, e->line, (int64_t)c);
    if (!l)
        return false;
    for (int64_t i = 0; i < l->n; i++)
        l->v[i] = v_int(r[0] + i * r[2]);
    *out = (value){.k = V_LIST, .l = l};
    return true;
}

static bool filter(render *R, const node *e, value *out)
{
    value v;
    args A;
    if (!eval(R, e->a, &v) || !eval_args(R, e->list, e->line, &A))
        return false;
    char op[16];
    snprintf(op, sizeof op, "%.*s", (int)e->n, e->s); /* known_filters: all short */
    int line = e->line;
    if (!strcmp(op, "default") || !strcmp(op, "d")) {
        value def = arg(&A, 0, "default_value"), boolean = arg(&A, 1, "boolean");
        bool use = v.k == V_UNDEF || (truthy(&boolean) && !truthy(&v));
        *out = use ? (def.k == V_UNDEF ? v_str("", 0) : def) : v;
        return true;
    }
    if (!strcmp(op, "safe"))
        return *out = v, true;
    if (!strcmp(op, "tojson")) {
        value ind = arg(&A, 0, "indent");
        return tojson(R, line, &v, &ind, out);
    }
    if (!strcmp(op, "length") || !strcmp(op, "count")) {
        if (v.k == V_STR)
            *out = v_int(cp_count(v.s.p, v.s.n));
        else if (v.k == V_LIST)
            *out = v_int(v.l->n);
        else if (v.k == V_DICT || v.k == V_NS)
            *out = v_int(v.d->n);
        else if (v.k == V_UNDEF)
            *out = v_int(0);
        else
            return rfail(R, KG_ERR_ARG, line, "length of a %s", kind_name(v.k));
        return true;
    }
    if (!strcmp(op, "items")) {
        if (v.k == V_UNDEF)
            return dict_items(R, line, &(jdict){0}, 2, out);
        if (v.k != V_DICT)
            return rfail(R, KG_ERR_ARG, line, "items expects a dict, not %s", kind_name(v.k));
        return dict_items(R, line, v.d, 2, out);
    }
    const value *items;
    int64_t n;
    if (!strcmp(op, "first") || !strcmp(op, "last") || !strcmp(op, "list") ||
        !strcmp(op, "join") || (!strcmp(op, "reverse") && v.k != V_STR)) {
        if (!iterate(R, line, &v, &items, &n))
            return false;
        if (op[0] == 'f' || (op[0] == 'l' && op[1] == 'a')) {
            *out = n ? items[op[0] == 'f' ? 0 : n - 1]
                     : (value){.k = V_UNDEF, .s = {"first item", 10}};
            return true;
        }
        if (op[0] == 'j') {
            value sep = arg(&A, 0, "d"), acc = v_str("", 0);
            const char *sp = "";
            size_t sn = 0;
            if (sep.k != V_UNDEF && !str_of(R, line, &sep, &sp, &sn))
                return false;
            for (int64_t i = 0; i < n; i++) {
                const char *p;
                size_t pn;
                if (!str_of(R, line, &items[i], &p, &pn) ||
                    (i && !cat(R, line, acc.s.p, acc.s.n, sp, sn, &acc)) ||
                    !cat(R, line, acc.s.p, acc.s.n, p, pn, &acc) || !step(R, line))
                    return false;
            }
            return *out = acc, true;
        }
        jlist *l = new_list(R, line, n);
        if (!l)
            return false;
        for (int64_t i = 0; i < n; i++)
            l->v[i] = items[op[0] == 'r' ? n - 1 - i : i];
        *out = (value){.k = V_LIST, .l = l};
        return true;
    }
    /* the rest work on the value as a string */
    const char *p;
    size_t pn;
    if (!str_of(R, line, &v, &p, &pn))
        return false;
    value s = v_str(p, pn);
    if (!strcmp(op, "string"))
        return *out = s, true;
    if (!strcmp(op, "reverse")) {
        value parts[3] = {{.k = V_NONE}, {.k = V_NONE}, v_int(-1)};
        return do_slice(R, line, &s, parts, out);
    }
    bool handled;
    return string_op(R, line, op, &s, &A, out, &handled);
}

static bool test(render *R, const node *e, value *out)
{
    value v;
    args A;
    if (!eval(R, e->a, &v) || !eval_args(R, e->list, e->line, &A))
        return false;
    bool r;
    if (name_is(e, "defined"))
        r = v.k != V_UNDEF;
    else if (name_is(e, "undefined"))
        r = v.k == V_UNDEF;
    else if (name_is(e, "none"))
        r = v.k == V_NONE;
    else if (name_is(e, "string"))
        r = v.k == V_STR;
    else if (name_is(e, "number"))
        r = is_num(&v);
    else if (name_is(e, "integer"))
        r = v.k == V_INT;
    else if (name_is(e, "boolean"))
        r = v.k == V_BOOL;
    else if (name_is(e, "true") || name_is(e, "false"))
        r = v.k == V_BOOL && v.b == (e->s[0] == 't');
    else if (name_is(e, "mapping"))
        r = v.k == V_DICT;
    else if (name_is(e, "sequence") || name_is(e, "iterable"))
        r = v.k == V_STR || v.k == V_LIST || v.k == V_DICT;
    else { /* odd, even, divisibleby */
        value d = name_is(e, "divisibleby") ? arg(&A, 0, "num") : v_int(2);
        if (!is_num(&v) || !is_num(&d))
            return rfail(R, KG_ERR_ARG, e->line, "test '%.*s' expects integers", (int)e->n, e->s);
        if (num(&d) == 0)
            return rfail(R, KG_ERR_ARG, e->line, "divisibleby(0)");
        int64_t m = num(&d) == -1 ? 0 : num(&v) % num(&d);
        r = name_is(e, "odd") ? m != 0 : m == 0;
    }
    *out = v_bool(r != e->neg);
    return true;
}

/* ---- Operators ---- */

static bool arith(render *R, int line, int op, const value *a, const value *b, value *out)
{
    static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**"};
    if (a->k == V_UNDEF)
        return undefined_error(R, line, a);
    if (b->k == V_UNDEF)
        return undefined_error(R, line, b);
    if (op == OP_ADD && a->k == b->k && a->k == V_STR)
        return cat(R, line, a->s.p, a->s.n, b->s.p, b->s.n, out);
    if (op == OP_ADD && a->k == b->k && a->k == V_LIST) {
        jlist *l = new_list(R, line, a->l->n + b->l->n);
        if (!l)
            return false;
        memcpy(l->v, a->l->v, (size_t)a->l->n * sizeof *l->v);
        memcpy(l->v + a->l->n, b->l->v, (size_t)b->l->n * sizeof *l->v);
        *out = (value){.k = V_LIST, .l = l};
        return true;
    }
    if (op == OP_MUL && (a->k == V_STR || b->k == V_STR) && (is_num(a) || is_num(b))) {
        const value *s = a->k == V_STR ? a : b;
        int64_t times = num(a->k == V_STR ? b : a);
        value acc = v_str("", 0);
        if (times > 0 && s->s.n && (uint64_t)times > KG__JINJA_MAX_MEMORY / s->s.n)
            return rfail(R, KG_ERR_RANGE, line, "a string longer than %d MiB",
                         KG__JINJA_MAX_MEMORY >> 20);
        for (int64_t i = 0; i < times && s->s.n; i++)
            if (!cat(R, line, acc.s.p, acc.s.n, s->s.p, s->s.n, &acc) || !step(R, line))
                return false;
        *out = acc;
        return true;
    }
    if (op == OP_DIV)
        return rfail(R, KG_ERR_ARG, line, "unsupported construct: '/' (float division; use '//')");
    if (!is_num(a) || !is_num(b))
        return rfail(R, KG_ERR_ARG, line, "unsupported operand types for %s: %s and %s",
                     sym[op - OP_ADD], kind_name(a->k), kind_name(b->k));
    int64_t x = num(a), y = num(b), r = 0;
    bool overflow = false;
    switch (op) {
    case OP_ADD:
        overflow = __builtin_add_overflow(x, y, &r);
        break;
    case OP_SUB:
        overflow = __builtin_sub_overflow(x, y, &r);
        break;
    case OP_MUL:
        overflow = __builtin_mul_overflow(x, y, &r);
        break;
    case OP_FLOORDIV:
    case OP_MOD: {
        if (y == 0)
            return rfail(R, KG_ERR_ARG, line, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) {
            overflow = op == OP_FLOORDIV;
            r = 0;
            break;
        }
        int64_t q = x / y, m = x % y;
        if (m && ((m < 0) != (y < 0))) { /* Python floors */
            q--;
            m += y;
        }
        r = op == OP_FLOORDIV ? q : m;
        break;
    }
    default: /* OP_POW */
        if (y < 0)
            return rfail(R, KG_ERR_ARG, line, "unsupported construct: a negative power (a float)");
        r = 1; /* by squaring: a square that overflows is a factor of the result */
        for (int64_t base = x, e = y; e && !overflow; e >>= 1) {
            if (e & 1)
                overflow = __builtin_mul_overflow(r, base, &r);
            if (e > 1 && !overflow)
                overflow = __builtin_mul_overflow(base, base, &base);
        }
        break;
    }
    if (overflow)
        return rfail(R, KG_ERR_RANGE, line, "integer overflow in %s", sym[op - OP_ADD]);
    *out = v_int(r);
    return true;
}

static bool compare(render *R, int line, int op, const value *a, const value *b, value *out)
{
    bool eq;
    if (op == OP_EQ || op == OP_NE)
        return equal(R, line, a, b, &eq) && (*out = v_bool(eq == (op == OP_EQ)), true);
    if (op == OP_IN || op == OP_NOTIN) {
        bool r = false;
        if (b->k == V_STR) {
            if (!want_str(R, line, a, "'in' on a string"))
                return false;
            size_t at;
            r = find_sub(b, 0, a, &at);
        } else if (b->k == V_LIST) {
            for (int64_t i = 0; i < b->l->n && !r; i++)
                if (!equal(R, line, a, &b->l->v[i], &r))
                    return false;
        } else if (b->k == V_DICT || b->k == V_NS) {
            r = a->k == V_STR && dict_find(b->d, a->s.p, a->s.n);
        } else if (b->k != V_UNDEF) {
            return rfail(R, KG_ERR_ARG, line, "'in' needs a string, list or dict on the right, "
                         "not %s", kind_name(b->k));
        }
        return *out = v_bool(r == (op == OP_IN)), true;
    }
    int c;
    if (is_num(a) && is_num(b)) {
        c = (num(a) > num(b)) - (num(a) < num(b));
    } else if (a->k == V_STR && b->k == V_STR) { /* UTF-8 byte order is code point order */
        size_t n = a->s.n < b->s.n ? a->s.n : b->s.n;
        c = n ? memcmp(a->s.p, b->s.p, n) : 0;
        c = c ? (c > 0) - (c < 0) : (a->s.n > b->s.n) - (a->s.n < b->s.n);
    } else {
        return rfail(R, KG_ERR_ARG, line, "cannot order a %s and a %s", kind_name(a->k),
                     kind_name(b->k));
    }
    bool r = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    return *out = v_bool(r), true;
}

static bool eval(render *R, const node *e, value *out)
{
    if (!step(R, e->line))
        return false;
    value a, b;
    switch (e->k) {
    case E_STR:
        return *out = v_str(e->s, e->n), true;
    case E_INT:
        return *out = v_int(e->i), true;
    case E_BOOL:
        return *out = v_bool(e->i), true;
    case E_NONE:
        return *out = (value){.k = V_NONE}, true;
    case E_NAME:
        return *out = lookup(R, e->s, e->n), true;
    case E_ATTR:
        b = v_str(e->s, e->n);
        return eval(R, e->a, &a) && get_member(R, e->line, &a, &b, out);
    case E_INDEX:
        return eval(R, e->a, &a) && eval(R, e->b, &b) && get_member(R, e->line, &a, &b, out);
    case E_SLICE: {
        value parts[3] = {{.k = V_NONE}, {.k = V_NONE}, {.k = V_NONE}};
        const node *pn[3] = {e->b, e->c, e->d};
        if (!eval(R, e->a, &a))
            return false;
        for (int i = 0; i < 3; i++)
            if (pn[i] && !eval(R, pn[i], &parts[i]))
                return false;
        return do_slice(R, e->line, &a, parts, out);
    }
    case E_CALL:
        return e->a->k == E_ATTR ? call_method(R, e, out) : call_function(R, e, out);
    case E_FILTER:
        return filter(R, e, out);
    case E_TEST:
        return test(R, e, out);
    case E_NOT:
        return eval(R, e->a, &a) && (*out = v_bool(!truthy(&a)), true);
    case E_NEG:
        if (!eval(R, e->a, &a))
            return false;
        if (!is_num(&a) || num(&a) == INT64_MIN)
            return rfail(R, KG_ERR_ARG, e->line, "bad operand for unary '-': %s",
                         kind_name(a.k));
        return *out = v_int(-num(&a)), true;
    case E_COND:
        if (!eval(R, e->b, &b))
            return false;
        if (truthy(&b))
            return eval(R, e->a, out);
        if (e->c)
            return eval(R, e->c, out);
        return *out = (value){.k = V_UNDEF, .s = {"else branch", 11}}, true;
    case E_LIST: {
        int64_t n = 0;
        for (const node *i = e->list; i; i = i->next)
            n++;
        jlist *l = new_list(R, e->line, n);
        if (!l)
            return false;
        n = 0;
        for (const node *i = e->list; i; i = i->next)
            if (!eval(R, i, &l->v[n++]))
                return false;
        return *out = (value){.k = V_LIST, .l = l}, true;
    }
    case E_DICT: {
        jdict *d = ralloc(R, e->line, sizeof *d);
        if (!d)
            return false;
        *d = (jdict){0};
        for (const node *p = e->list; p; p = p->next) {
            if (!eval(R, p->a, &a) || !eval(R, p->b, &b))
                return false;
            if (a.k != V_STR)
                return rfail(R, KG_ERR_ARG, e->line, "unsupported construct: a dict key that "
                             "is a %s (only strings)", kind_name(a.k));
            if (!dict_set(R, e->line, d, a, b))
                return false;
        }
        return *out = (value){.k = V_DICT, .d = d}, true;
    }
    case E_BIN:
        if (e->op == OP_AND || e->op == OP_OR) {
            if (!eval(R, e->a, &a))
                return false;
            if (truthy(&a) == (e->op == OP_OR))
                return *out = a, true;
            return eval(R, e->b, out);
        }
        if (!eval(R, e->a, &a) || !eval(R, e->b, &b))
            return false;
        if (e->op == OP_CONCAT) {
            const char *pa, *pb;
            size_t na, nb;
            return str_of(R, e->line, &a, &pa, &na) && str_of(R, e->line, &b, &pb, &nb) &&
                   cat(R, e->line, pa, na, pb, nb, out);
        }
        if (e->op >= OP_EQ)
            return compare(R, e->line, e->op, &a, &b, out);
        return arith(R, e->line, e->op, &a, &b, out);
    default:
        return rfail(R, KG_ERR_STATE, e->line, "internal: node %d is not an expression", e->k);
    }
}

/* ---- Statements ---- */

static bool exec(render *R, const node *s);

static bool exec_for(render *R, const node *s)
{
    value it;
    const value *items;
    int64_t n;
    if (!eval(R, s->a, &it) || !iterate(R, s->line, &it, &items, &n))
        return false;
    frame *outer = R->top;
    frame f = {.parent = outer};
    if (s->b) { /* for x in xs if cond: the loop sees only the items that pass */
        jlist *kept = new_list(R, s->line, n);
        if (!kept)
            return false;
        kept->n = 0;
        R->top = &f;
        for (int64_t i = 0; i < n; i++) {
            value c;
            f.n = 0;
            if (!bind(R, s->line, &f, s->s, s->n, items[i]) || !eval(R, s->b, &c)) {
                R->top = outer;
                return false;
            }
            if (truthy(&c))
                kept->v[kept->n++] = items[i];
        }
        R->top = outer;
        items = kept->v;
        n = kept->n;
    }
    jloop *lp = ralloc(R, s->line, sizeof *lp); /* a namespace may keep it past the loop */
    if (!lp)
        return false;
    *lp = (jloop){.n = n, .items = items};
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        lp->i = i;
        f = (frame){.parent = outer};
        R->top = &f;
        if (s->s2) {
            const value *v = &items[i];
            if (v->k != V_LIST || v->l->n != 2) {
                ok = rfail(R, KG_ERR_ARG, s->line, "cannot unpack a %s into two loop variables",
                           kind_name(v->k));
                break;
            }
            ok = bind(R, s->line, &f, s->s, s->n, v->l->v[0]) &&
                 bind(R, s->line, &f, s->s2, s->n2, v->l->v[1]);
        } else {
            ok = bind(R, s->line, &f, s->s, s->n, items[i]);
        }
        ok = ok && bind(R, s->line, &f, "loop", 4, (value){.k = V_LOOP, .loop = lp}) &&
             exec(R, s->list);
        if (R->ctl == CTL_BREAK) {
            R->ctl = CTL_NONE;
            break;
        }
        R->ctl = CTL_NONE;
    }
    R->top = outer;
    if (ok && n == 0 && s->c)
        ok = exec(R, s->c);
    return ok;
}

/* Run a list of statements. */
static bool exec(render *R, const node *s)
{
    for (; s && R->ctl == CTL_NONE; s = s->next) {
        if (!step(R, s->line))
            return false;
        value v;
        switch (s->k) {
        case N_TEXT:
            if (!emit_text(R, s->line, s->s, s->n))
                return false;
            break;
        case N_OUT: {
            const char *p;
            size_t n;
            if (!eval(R, s->a, &v) || !str_of(R, s->line, &v, &p, &n) ||
                !emit_text(R, s->line, p, n))
                return false;
            break;
        }
        case N_IF:
            if (!eval(R, s->a, &v) || !exec(R, truthy(&v) ? s->list : s->b))
                return false;
            break;
        case N_FOR:
            if (!exec_for(R, s))
                return false;
            break;
        case N_SET:
            if (!eval(R, s->a, &v))
                return false;
            if (s->s2) {
                value ns = lookup(R, s->s, s->n);
                if (ns.k != V_NS)
                    return rfail(R, KG_ERR_ARG, s->line, "cannot set an attribute of '%.*s', "
                                 "a %s (only of a namespace())", (int)(s->n > 60 ? 60 : s->n),
                                 s->s, kind_name(ns.k));
                if (!dict_set(R, s->line, ns.d, v_str(s->s2, s->n2), v))
                    return false;
            } else if (!bind(R, s->line, R->top, s->s, s->n, v)) {
                return false;
            }
            break;
        case N_BREAK:
            R->ctl = CTL_BREAK;
            break;
        case N_CONTINUE:
            R->ctl = CTL_CONTINUE;
            break;
        case N_SEQ:
            if (!exec(R, s->list))
                return false;
            break;
        default:
            return rfail(R, KG_ERR_STATE, s->line, "internal: node %d is not a statement", s->k);
        }
    }
    return true;
}

char *kg__jinja_render(kg_ctx *ctx, const kg__jinja *j, const kg_chat_message *msgs, int64_t n,
                       bool add_generation_prompt, const char *bos_token, const char *eos_token)
{
    render R = {.ctx = ctx, .name = j->name, .ar = {.cap = KG__JINJA_MAX_MEMORY}};
    frame globals = {0};
    R.top = &globals;
    jlist *list = new_list(&R, 0, n);
    for (int64_t i = 0; list && i < n; i++) {
        if (!msgs[i].role) {
            rfail(&R, KG_ERR_ARG, 0, "message %lld has no role", (long long)i);
            break;
        }
        jdict *d = ralloc(&R, 0, sizeof *d);
        if (!d)
            break;
        *d = (jdict){0};
        value content = msgs[i].content ? v_str(msgs[i].content, strlen(msgs[i].content))
                                        : (value){.k = V_NONE};
        if (!dict_set(&R, 0, d, v_str("role", 4), v_str(msgs[i].role, strlen(msgs[i].role))) ||
            !dict_set(&R, 0, d, v_str("content", 7), content))
            break;
        list->v[i] = (value){.k = V_DICT, .d = d};
    }
    if (!R.failed) {
        bind(&R, 0, &globals, "messages", 8, (value){.k = V_LIST, .l = list});
        bind(&R, 0, &globals, "add_generation_prompt", 21, v_bool(add_generation_prompt));
        bind(&R, 0, &globals, "tools", 5, (value){.k = V_NONE});
        bind(&R, 0, &globals, "documents", 9, (value){.k = V_NONE});
        if (bos_token)
            bind(&R, 0, &globals, "bos_token", 9, v_str(bos_token, strlen(bos_token)));
        if (eos_token)
            bind(&R, 0, &globals, "eos_token", 9, v_str(eos_token, strlen(eos_token)));
    }
    bool ok = !R.failed && exec(&R, j->body) && emit_text(&R, 0, "", 0);
    arena_free(&R.ar);
    if (!ok) {
        free(R.out);
        return NULL;
    }
    R.out[R.len] = '\0'; /* emit_text left room for it */
    return R.out;
}
