/* kg_chat.h — chat templates: the Jinja template a model carries (tokenizer_config.json,
 * chat_template.jinja, or a GGUF's tokenizer.chat_template), rendered by a small Jinja-subset
 * renderer as transformers' apply_chat_template renders it. docs/chat-templates.md lists the
 * subset. Templates are untrusted: a syntax error, a construct outside the subset, too deep
 * nesting or too much output is an error on the context naming the template and the line.
 */
#ifndef KG_CHAT_H
#define KG_CHAT_H

#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kg_chat_message { const char *role; const char *content; } kg_chat_message;
typedef struct kg_chat_template kg_chat_template;

/* Parse a Jinja chat template. `name` names it in errors ("tokenizer_config.json: chat_template").
 * NULL with the context's error set on a syntax error or a construct the renderer lacks
 * (the error names the template, the line and the construct). bos_token and eos_token may be
 * NULL (then undefined in the template, which prints as ""). The template copies every string it is given; the caller
 * frees it with kg_chat_template_free. Errors of later calls go to ctx. */
kg_chat_template *kg_chat_template_new(kg_ctx *ctx, const char *source, const char *name,
                                       const char *bos_token, const char *eos_token);
/* The template a model path carries: tokenizer_config.json's "chat_template" (a string, or the
 * entry named "default" of a list), a chat_template.jinja beside it, or a GGUF's
 * tokenizer.chat_template; bos/eos token strings from the same files. NULL with the error
 * "PATH has no chat template" (or a parse error) otherwise. */
kg_chat_template *kg_chat_template_load(kg_ctx *ctx, const char *model_path);
/* Render n messages; add_generation_prompt as transformers' apply_chat_template. Returns a
 * malloc'd NUL-terminated string the caller frees; NULL with the context's error set (a
 * raise_exception in the template gives its message). */
char *kg_chat_template_render(kg_chat_template *t, const kg_chat_message *msgs, int64_t n,
                              bool add_generation_prompt);
const char *kg_chat_template_source(const kg_chat_template *t); /* for export to GGUF */
void kg_chat_template_free(kg_chat_template *t);

#ifdef __cplusplus
}
#endif
#endif
