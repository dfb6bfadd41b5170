/* jinja_internal.h — what the two halves of the chat-template engine share: jinja_parse.c
 * (lexer and parser, making the tree) and jinja_render.c (walking it): the arena everything
 * lives in, the text helpers both need, the tree's nodes and the error reporter.
 */
#ifndef KG_JINJA_INTERNAL_H
#define KG_JINJA_INTERNAL_H

#include "models/jinja.h"
#include "models/unicode.h" /* kg__utf8_next */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Arena: every node and value lives in one, freed at once ---- */

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    max_align_t data[];
} chunk;

typedef struct arena {
    chunk *head;
    size_t total, cap; /* bytes taken so far; the most it may take */
} arena;

/* n bytes, aligned; NULL when the arena would pass its cap or memory runs out. */
void *kg__jinja_alloc(arena *a, size_t n);
void kg__jinja_arena_free(arena *a);

/* ---- Text ---- */

/* Python's str.isspace, which Jinja's \s and str.strip() use. */
bool kg__jinja_is_space(int32_t c);
/* Bytes of whitespace at the start of s / at the end of s. */
size_t kg__jinja_space_prefix(const char *s, size_t n);
size_t kg__jinja_space_suffix(const char *s, size_t n);

/* "NAME: line L: message" on the context (no line when line <= 0). Returns false. */
bool kg__jinja_report(kg_ctx *ctx, kg_status st, const char *name, int line, const char *fmt,
                      va_list ap);

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

#endif
