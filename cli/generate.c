/* generate.c — `krongrad generate`: continue a prompt (text through the model's tokenizer, or
 * ids) with a causal LM from an HF directory or a GGUF file, greedily or by sampling, and print
 * the continuation as text or as ids.
 */
#include "cli.h"
#include "models/kg_tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct generate_opts {
    const char *model;
    const char *prompt;
    const char *ids;
    int64_t max_new;
    bool greedy;
    double temperature;
    double top_p;
    int64_t seed;
    bool print_ids;
    const char *backend;
} generate_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(generate_opts, model), "PATH",
     "an HF model directory or a .gguf file (required)"},
    {"prompt", KG_FLAG_STRING, offsetof(generate_opts, prompt), "TEXT",
     "the text to continue (tokenized with the model's tokenizer)"},
    {"ids", KG_FLAG_STRING, offsetof(generate_opts, ids), "1,2,3",
     "the prompt as token ids instead of text"},
    {"max-new", KG_FLAG_INT, offsetof(generate_opts, max_new), "N",
     "at most N new tokens (default 32); stops after the end-of-sequence token"},
    {"greedy", KG_FLAG_BOOL, offsetof(generate_opts, greedy), NULL,
     "always the most likely token (the default)"},
    {"temperature", KG_FLAG_FLOAT, offsetof(generate_opts, temperature), "T",
     "sample with temperature T > 0 instead"},
    {"top-p", KG_FLAG_FLOAT, offsetof(generate_opts, top_p), "P",
     "sampling: only from the most likely tokens totalling probability P (default 1)"},
    {"seed", KG_FLAG_INT, offsetof(generate_opts, seed), "S",
     "sampling: the random seed (default 0); the same seed gives the same text"},
    {"print-ids", KG_FLAG_BOOL, offsetof(generate_opts, print_ids), NULL,
     "print the new token ids as a JSON array instead of text"},
    {"backend", KG_FLAG_STRING, offsetof(generate_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
};

static void defaults(void *p)
{
    generate_opts *o = p;
    o->max_new = 32;
    o->top_p = 1.0;
    o->temperature = -1; /* not given */
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad generate: %s\n(see krongrad generate --help)\n", msg);
    return 2;
}

/* "1,2,3" → ids; false on anything else. */
static bool parse_ids(const char *s, int32_t **ids, int64_t *n)
{
    int64_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    *ids = malloc(sizeof **ids * (size_t)cap);
    *n = 0;
    if (!*ids)
        return false;
    const char *c = s;
    while (*n < cap) {
        char *end;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (end == c || errno || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0'))
            return false;
        (*ids)[(*n)++] = (int32_t)v;
        if (*end == '\0')
            return true;
        c = end + 1;
    }
    return false;
}

/* The text the new ids add to the prompt: decode(prompt + new) minus decode(prompt), as HF's
 * text-generation pipeline, so a leading space that belongs to the first new token stays. */
static char *continuation(kg_tokenizer *tok, const int32_t *all, int64_t n_prompt, int64_t n)
{
    char *full = kg_tokenizer_decode(tok, all, n, true);
    char *head = kg_tokenizer_decode(tok, all, n_prompt, true);
    char *out = NULL;
    if (full && head) {
        size_t k = strlen(head);
        out = strncmp(full, head, k) == 0 ? strdup(full + k)
                                          : kg_tokenizer_decode(tok, all + n_prompt,
                                                                n - n_prompt, true);
    }
    free(full);
    free(head);
    return out;
}

static int run_generate(void *p)
{
    const generate_opts *o = p;
    if (!o->model)
        return usage_error("--model PATH is required");
    if (!o->prompt == !o->ids)
        return usage_error("give the prompt with exactly one of --prompt TEXT and --ids 1,2,3");
    if (o->greedy && o->temperature >= 0)
        return usage_error("--greedy and --temperature exclude each other");
    if (o->max_new < 0 || !(o->top_p > 0 && o->top_p <= 1))
        return usage_error("--max-new takes N >= 0 and --top-p a P in (0, 1]");
    int32_t *prompt = NULL;
    int64_t n_prompt = 0;
    if (o->ids && (!parse_ids(o->ids, &prompt, &n_prompt) || n_prompt == 0)) {
        free(prompt);
        return usage_error("--ids takes token ids separated by commas, e.g. 1,2,3");
    }
    kg_ctx *ctx = kg_cli_context(o->backend, NULL);
    if (!ctx) {
        free(prompt);
        return 1;
    }
    int rc = 1;
    int32_t *all = NULL;
    kg_tokenizer *tok = NULL;
    kg_model *m = kg_model_load(ctx, o->model);
    if (m && (o->prompt || !o->print_ids))
        tok = kg_tokenizer_load(ctx, o->model);
    if (tok && o->prompt)
        prompt = kg_tokenizer_encode(tok, o->prompt, true, &n_prompt);
    if (prompt && n_prompt == 0) {
        kg_set_error(ctx, KG_ERR_ARG, "the prompt gives no tokens; expected at least one");
    } else if (prompt && !kg_ctx_status(ctx)) {
        all = malloc(sizeof *all * (size_t)(n_prompt + o->max_new));
        if (!all)
            kg_set_error(ctx, KG_ERR_NOMEM, "out of host memory");
        if (all) {
            memcpy(all, prompt, sizeof *all * (size_t)n_prompt);
            kg_generate_config g = {
                .max_new = o->max_new,
                .temperature = o->temperature > 0 ? (float)o->temperature : 0.0f,
                .top_p = (float)o->top_p,
                .seed = (uint64_t)o->seed,
            };
            int64_t made = kg_model_generate(m, prompt, n_prompt, &g, all + n_prompt);
            if (made >= 0 && o->print_ids) {
                printf("[");
                for (int64_t i = 0; i < made; i++)
                    printf("%s%d", i ? ", " : "", all[n_prompt + i]);
                printf("]\n");
                rc = 0;
            } else if (made >= 0) {
                char *text = continuation(tok, all, n_prompt, n_prompt + made);
                if (text) {
                    printf("%s\n", text);
                    rc = 0;
                }
                free(text);
            }
        }
    }
    if (rc)
        rc = kg_ctx_status(ctx) ? kg_cli_fail("generate", ctx) : 1;
    free(all);
    free(prompt);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_generate = {
    .name = "generate",
    .summary = "Continue a prompt with a causal language model (Mistral, Llama; HF or GGUF).",
    .usage = "--model PATH (--prompt TEXT | --ids 1,2,3) [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(generate_opts),
    .defaults = defaults,
    .run = run_generate,
};
