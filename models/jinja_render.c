/* jinja_render.c — the chat-template engine's back half: walks the tree jinja_parse.c made
 * over Python-like values (the variables transformers passes, raise_exception, namespace, tojson
 * without HTML escaping), within bounds on steps, memory and output.
 */
#include "models/jinja_internal.h"
#include "tensor/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

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
    kg__strbuf out; /* at most KG__JINJA_MAX_OUTPUT bytes */
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
        kg__jinja_report(R->ctx, st, R->name, line, fmt, ap);
        va_end(ap);
    }
    R->failed = true;
    return false;
}

static void *ralloc(render *R, int line, size_t n)
{
    void *p = R->failed ? NULL : kg__jinja_alloc(&R->ar, n ? n : 1);
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
    if (n > KG__JINJA_MAX_OUTPUT - R->out.len)
        return rfail(R, KG_ERR_RANGE, line, "output larger than %d MiB",
                     KG__JINJA_MAX_OUTPUT >> 20);
    kg__strbuf_add(&R->out, s, n);
    return !R->out.failed || rfail(R, KG_ERR_NOMEM, line, "out of memory for the output");
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
        i += kg__utf8_next(s + i, n - i, 0, &cp);
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
        i += kg__utf8_next(s + i, n - i, 0, &cp);
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
        return kg__jinja_is_space(c);
    for (size_t i = 0; i < chars->s.n;) {
        int32_t d;
        i += kg__utf8_next(chars->s.p + i, chars->s.n - i, 0, &d);
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
        size_t k = kg__utf8_next(p + a, b - a, 0, &c);
        if (!in_set(c, chars))
            break;
        a += k;
    }
    while (right && b > a) {
        size_t start = b - 1;
        while (start > a && b - start < 4 && ((unsigned char)p[start] & 0xc0) == 0x80)
            start--;
        int32_t c;
        if (kg__utf8_next(p + start, b - start, 0, &c) != b - start)
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
        size_t k = kg__utf8_next(s->s.p + i, s->s.n - i, 0, &c);
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
            size_t k = kg__utf8_next(s->s.p + at, s->s.n - at, 0, &c);
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
        pos += kg__jinja_space_prefix(s->s.p + pos, s->s.n - pos);
        if (pos >= s->s.n)
            break;
        size_t end = s->s.n; /* after maxsplit pieces, the rest is one piece */
        if (max < 0 || count < max)
            for (end = pos; end < s->s.n && !kg__jinja_space_prefix(s->s.p + end, s->s.n - end);) {
                int32_t c;
                end += kg__utf8_next(s->s.p + end, s->s.n - end, 0, &c);
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

typedef kg__strbuf sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    kg__strbuf_add(b, s, n);
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
    sbuf b = {.max = KG__JINJA_MAX_MEMORY};
    bool ok = json_value(R, line, &b, v, ind, 0);
    if (ok && b.failed)
        ok = rfail(R, KG_ERR_NOMEM, line, "tojson: out of memory");
    if (ok) {
        char *s = ralloc(R, line, b.len);
        if ((ok = s != NULL)) {
            if (b.len)
                memcpy(s, b.p, b.len);
            *out = v_str(s, b.len);
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

static bool attr_filter(render *R, int line, const char *op, const value *v, const args *A,
                        value *out);

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
    if (!strcmp(op, "selectattr") || !strcmp(op, "rejectattr") || !strcmp(op, "map"))
        return attr_filter(R, line, op, &v, &A, out);
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

/* The test named name (n bytes) on v, with its argument (undefined when none), into *r. */
static bool run_test(render *R, int line, const char *name, size_t n, const value *v,
                     const value *argv, bool *r)
{
#define IS(w) (n == sizeof w - 1 && memcmp(name, w, n) == 0)
    if (IS("defined"))
        *r = v->k != V_UNDEF;
    else if (IS("undefined"))
        *r = v->k == V_UNDEF;
    else if (IS("none"))
        *r = v->k == V_NONE;
    else if (IS("string"))
        *r = v->k == V_STR;
    else if (IS("number"))
        *r = is_num(v);
    else if (IS("integer"))
        *r = v->k == V_INT;
    else if (IS("boolean"))
        *r = v->k == V_BOOL;
    else if (IS("true") || IS("false"))
        *r = v->k == V_BOOL && v->b == (name[0] == 't');
    else if (IS("mapping"))
        *r = v->k == V_DICT;
    else if (IS("sequence") || IS("iterable"))
        *r = v->k == V_STR || v->k == V_LIST || v->k == V_DICT;
    else if (IS("equalto") || IS("eq") || IS("==") || IS("ne") || IS("!=")) {
        if (!equal(R, line, v, argv, r))
            return false;
        *r = *r == (name[0] == 'e' || name[0] == '=');
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        value d = IS("divisibleby") ? *argv : v_int(2);
        if (!is_num(v) || !is_num(&d))
            return rfail(R, KG_ERR_ARG, line, "test '%.*s' expects integers", (int)n, name);
        if (num(&d) == 0)
            return rfail(R, KG_ERR_ARG, line, "divisibleby(0)");
        int64_t m = num(&d) == -1 ? 0 : num(v) % num(&d);
        *r = IS("odd") ? m != 0 : m == 0;
    } else {
        return rfail(R, KG_ERR_ARG, line, "unsupported construct: test '%.*s'",
                     (int)(n > 60 ? 60 : n), name);
    }
    return true;
#undef IS
}

static bool test(render *R, const node *e, value *out)
{
    value v;
    args A;
    if (!eval(R, e->a, &v) || !eval_args(R, e->list, e->line, &A))
        return false;
    value a0 = arg(&A, 0, "argument");
    bool r;
    if (!run_test(R, e->line, e->s, e->n, &v, &a0, &r))
        return false;
    *out = v_bool(r != e->neg);
    return true;
}

/* selectattr / rejectattr (attribute[, test[, argument]]) and map(attribute=...): the items'
 * attribute, kept by a test (truthiness when none) or collected. */
static bool attr_filter(render *R, int line, const char *op, const value *v, const args *A,
                        value *out)
{
    const value *items;
    int64_t n;
    bool map = op[0] == 'm';
    value attr = arg(A, map ? A->n : 0, "attribute"), /* map: keyword only */ testv = arg(A, 1, "test"),
          argv = arg(A, 2, "argument");
    if (map && (A->n || !A->nkw))
        return rfail(R, KG_ERR_ARG, line, "unsupported construct: map other than "
                     "map(attribute='name')");
    if (!want_str(R, line, &attr, op) || (testv.k != V_UNDEF && !want_str(R, line, &testv, op)) ||
        !iterate(R, line, v, &items, &n))
        return false;
    jlist *l = new_list(R, line, n);
    if (!l)
        return false;
    l->n = 0;
    for (int64_t i = 0; i < n; i++) {
        value a;
        bool keep = true;
        if (!get_member(R, line, &items[i], &attr, &a) || !step(R, line))
            return false;
        if (!map) {
            if (testv.k == V_UNDEF)
                keep = truthy(&a);
            else if (!run_test(R, line, testv.s.p, testv.s.n, &a, &argv, &keep))
                return false;
            keep = keep == (op[0] == 's');
        }
        if (keep)
            l->v[l->n++] = map ? a : items[i];
    }
    *out = (value){.k = V_LIST, .l = l};
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
        if (!step(R, s->line)) { /* an empty body still counts */
            ok = false;
            break;
        }
        f.n = 0; /* a fresh scope, reusing the last one's room: no value points into a frame */
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
    kg__jinja_arena_free(&R.ar);
    if (!ok) {
        free(R.out.p);
        return NULL;
    }
    return kg__strbuf_take(&R.out);
}
