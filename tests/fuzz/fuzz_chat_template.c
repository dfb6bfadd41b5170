/* fuzz_chat_template.c — libFuzzer target for the chat-template renderer (kg_chat.h).
 * Input: the template text, then after a NUL byte the messages as "role\x1fcontent" records
 * separated by \x1e (none: one user message); the first byte of the message part (when there is
 * one) chooses add_generation_prompt. Parsing and rendering must end in text or an error on the
 * context, never a crash, a leak or unbounded time and memory, whatever the bytes.
 */
#include "krongrad.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MESSAGES = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    size_t tlen = strlen(buf); /* the template ends at the first NUL */
    kg_chat_message msgs[MAX_MESSAGES];
    int64_t n = 0;
    bool gen = false;
    if (tlen < size) {
        char *p = buf + tlen + 1, *end = buf + size;
        gen = p < end && (*p++ & 1);
        /* later NUL bytes end the records early: C strings, as callers pass them */
        while (p <= end && n < MAX_MESSAGES) {
            char *rec_end = memchr(p, '\x1e', (size_t)(end - p));
            if (rec_end)
                *rec_end = '\0';
            char *sep = strchr(p, '\x1f');
            if (sep)
                *sep = '\0';
            msgs[n++] = (kg_chat_message){p, sep ? sep + 1 : ""};
            if (!rec_end)
                break;
            p = rec_end + 1;
        }
    }
    if (n == 0)
        msgs[n++] = (kg_chat_message){"user", "Hello"};
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    if (ctx) {
        kg_chat_template *t = kg_chat_template_new(ctx, buf, "fuzz", "<s>", "</s>");
        char *out = kg_chat_template_render(t, msgs, n, gen);
        if (!out && t && kg_ctx_status(ctx) == KG_OK)
            abort(); /* a failed render must say why */
        free(out);
        kg_chat_template_free(t);
        kg_ctx_free(ctx);
    }
    free(buf);
    return 0;
}
