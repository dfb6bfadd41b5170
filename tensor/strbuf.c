/* strbuf.c — see strbuf.h. */
#include "tensor/strbuf.h"

#include <stdlib.h>
#include <string.h>

void kg__strbuf_add(kg__strbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n >= (size_t)-1 - b->len || (b->max && b->len + n + 1 > b->max)) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (b->max && cap > b->max)
            cap = b->max;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

char *kg__strbuf_take(kg__strbuf *b)
{
    if (!b->failed && !b->p)
        kg__strbuf_add(b, "", 0);
    if (b->failed) {
        free(b->p);
        *b = (kg__strbuf){.max = b->max, .failed = true};
        return NULL;
    }
    return b->p;
}
