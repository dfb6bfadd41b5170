/* wordpiece.c — BERT's WordPiece model on one word: greedy longest match from the left, later
 * pieces spelled with the "##" prefix; a word with an unmatchable rest, or longer than
 * max_input_chars_per_word characters, becomes the unknown token as a whole (HF's WordPiece).
 */
#include "models/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

bool kg__wordpiece_word(const kg_tokenizer *tok, const char *w, size_t n, kg__ids *out)
{
    const kg__model *m = &tok->model;
    if ((int64_t)kg__utf8_count(w, n) > m->max_chars) {
        kg__ids_push(out, m->unk);
        return !out->oom;
    }
    size_t np = strlen(m->prefix);
    char *cand = malloc(np + n + 1);
    if (!cand)
        return false;
    memcpy(cand, m->prefix, np);
    int64_t mark = out->n;
    for (size_t start = 0; start < n;) {
        const char *s = start ? cand : cand + np; /* the prefix only after the first piece */
        size_t end = n;
        int32_t id = -1;
        while (end > start) {
            memcpy(cand + np, w + start, end - start);
            id = kg__vocab_find(&tok->vocab, s, (size_t)(cand + np - s) + end - start);
            if (id >= 0)
                break;
            do /* back one character */
                end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) { /* the whole word is unknown */
            out->n = mark;
            kg__ids_push(out, m->unk);
            break;
        }
        kg__ids_push(out, id);
        start = end;
    }
    free(cand);
    return !out->oom;
}
