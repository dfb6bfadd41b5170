/* chat_template.c — chat templates (kg_chat.h): a Jinja-subset renderer. This first commit holds
 * the API only so that other branches build against it; rendering lands next.
 */
#include "models/kg_chat.h"

#include <stdlib.h>
#include <string.h>

struct kg_chat_template {
    kg_ctx *ctx;
    char *source;
};

kg_chat_template *kg_chat_template_new(kg_ctx *ctx, const char *source, const char *name,
                                       const char *bos_token, const char *eos_token)
{
    (void)bos_token;
    (void)eos_token;
    if (!ctx || !source) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_chat_template_new: NULL %s", ctx ? "source" : "ctx");
        return NULL;
    }
    kg_set_error(ctx, KG_ERR_STATE, "%s: the chat-template renderer is not built yet",
                 name ? name : "chat template");
    return NULL;
}

kg_chat_template *kg_chat_template_load(kg_ctx *ctx, const char *model_path)
{
    kg_set_error(ctx, KG_ERR_STATE, "%s: the chat-template loader is not built yet", model_path);
    return NULL;
}

char *kg_chat_template_render(kg_chat_template *t, const kg_chat_message *msgs, int64_t n,
                              bool add_generation_prompt)
{
    (void)msgs;
    (void)n;
    (void)add_generation_prompt;
    if (t)
        kg_set_error(t->ctx, KG_ERR_STATE, "kg_chat_template_render: not built yet");
    return NULL;
}

const char *kg_chat_template_source(const kg_chat_template *t)
{
    return t ? t->source : NULL;
}

void kg_chat_template_free(kg_chat_template *t)
{
    if (t) {
        free(t->source);
        free(t);
    }
}
