/* jinja.h — the Jinja-subset engine behind kg_chat.h (internal to models/): parse a template
 * once, render it for a list of messages. chat_template.c is its one user.
 */
#ifndef KG_JINJA_H
#define KG_JINJA_H

#include "models/kg_chat.h"

typedef struct kg__jinja kg__jinja;

/* Limits for untrusted templates: nesting of blocks and expressions, the output's size, the
 * memory one render may use for values, and the statements and expressions it may evaluate. */
enum {
    KG__JINJA_MAX_DEPTH = 128,
    KG__JINJA_MAX_OUTPUT = 16 << 20,
    KG__JINJA_MAX_MEMORY = 64 << 20,
    KG__JINJA_MAX_STEPS = 4 << 20,
};

/* Parse source (name names it in errors). NULL with the context's error set ("NAME: line L:
 * ..."). The caller frees it with kg__jinja_free. */
kg__jinja *kg__jinja_parse(kg_ctx *ctx, const char *source, const char *name);
/* Render with the variables messages (n dicts of role and content), add_generation_prompt,
 * bos_token and eos_token (NULL: undefined), tools and documents (none), as transformers'
 * apply_chat_template. Returns malloc'd text (the caller frees it) or NULL with the error set. */
char *kg__jinja_render(kg_ctx *ctx, const kg__jinja *j, const kg_chat_message *msgs, int64_t n,
                       bool add_generation_prompt, const char *bos_token, const char *eos_token);
void kg__jinja_free(kg__jinja *j);

#endif
