/* strbuf.h — a growing NUL-terminated text buffer, for the writers that build text of unknown
 * length (chat templates' output and tojson, the task prompts).
 */
#ifndef KG_STRBUF_H
#define KG_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kg__strbuf {
    char *p;       /* the text, NUL-terminated; NULL until something is added */
    size_t len, cap;
    size_t max;    /* the most bytes it may hold, its NUL included (0: no limit) */
    bool failed;   /* out of memory or past max: nothing more is added */
} kg__strbuf;

/* Append s[0..n). Capacity doubles, so n appends cost O(total). */
void kg__strbuf_add(kg__strbuf *b, const char *s, size_t n);
/* The text, "" when nothing was added (the caller frees it); NULL, the buffer freed, when it
 * failed. */
char *kg__strbuf_take(kg__strbuf *b);

#endif
