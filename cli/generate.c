/* generate.c — `krongrad generate`: continue a prompt (text through the model's tokenizer, or
 * ids) with a causal LM from an HF directory or a GGUF file, with a trained PEFT adapter when
 * given, greedily or by sampling, printing the text as the tokens come (or the ids at the end);
 * and --chat: user turns from stdin, the conversation rendered with the model's chat template,
 * each reply streamed and kept in the conversation.
 */
#include "cli.h"
#include "finetune.h"
#include "models/kg_tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    const char *adapter;
    const char *frozen;
    bool chat;
    const char *system;
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
    {"adapter", KG_FLAG_STRING, offsetof(generate_opts, adapter), "DIR",
     "a PEFT adapter directory (what train --out wrote) applied to the model"},
    {"frozen", KG_FLAG_STRING, offsetof(generate_opts, frozen), "DTYPE",
     FROZEN_HELP "; decoding one token reads each weight once, so a packed one (the GGUF's "
     "own, e.g. --frozen q4_1 for a Q4_1 file) is several times faster"},
    {"chat", KG_FLAG_BOOL, offsetof(generate_opts, chat), NULL,
     "chat: user turns from stdin, one a line, through the model's chat template; each reply "
     "printed and kept in the conversation"},
    {"system", KG_FLAG_STRING, offsetof(generate_opts, system), "TEXT",
     "--chat: a system message opening the conversation"},
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

/* Printing text as the tokens come: each new token's text is what decoding the ids so far adds
 * to what was printed. A trailing U+FFFD waits for the next token (a character split across
 * byte-level tokens), and a decoding that rewrites what was printed (rare: a tokenizer that
 * strips a space it later keeps) prints nothing until it agrees again. */
typedef struct streamer {
    kg_tokenizer *tok;
    int32_t *all;      /* the prompt, then the new ids */
    int64_t n_prompt;  /* text = decode(all[n_prompt..]) (chat) or the continuation of all */
    int64_t n;
    bool reply_alone;  /* chat: the reply decoded alone, as the conversation keeps it */
    size_t printed;
    const int32_t *stop; /* end-of-turn ids that end a reply (chat) */
    int n_stop;
    bool failed;
} streamer;

static char *stream_text(streamer *s)
{
    return s->reply_alone ? kg_tokenizer_decode(s->tok, s->all + s->n_prompt, s->n - s->n_prompt,
                                                true)
                          : continuation(s->tok, s->all, s->n_prompt, s->n);
}

static void stream_flush(streamer *s, bool last)
{
    char *text = stream_text(s);
    if (!text) {
        s->failed = true;
        return;
    }
    size_t len = strlen(text);
    if (!last && len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0)
        len -= 3;
    if (len > s->printed) {
        fwrite(text + s->printed, 1, len - s->printed, stdout);
        fflush(stdout);
        s->printed = len;
    }
    free(text);
}

static bool on_token(void *user, int32_t id)
{
    streamer *s = user;
    for (int i = 0; i < s->n_stop; i++)
        if (id == s->stop[i])
            return false; /* the reply ends; the marker is not part of its text */
    s->all[s->n++] = id;
    stream_flush(s, false);
    return !s->failed;
}

static kg_generate_config generate_config(const generate_opts *o, streamer *s)
{
    return (kg_generate_config){
        .max_new = o->max_new,
        .temperature = o->temperature > 0 ? (float)o->temperature : 0.0f,
        .top_p = (float)o->top_p,
        .seed = (uint64_t)o->seed,
        .on_token = s ? on_token : NULL,
        .user = s,
    };
}

/* The model, with the adapter when one is given (one that does not fit it is an error naming the
 * file and the tensor), and its tokenizer when needed. */
static kg_model *load_model(kg_ctx *ctx, const generate_opts *o, bool need_tok, kg_tokenizer **tok)
{
    kg_model *m = finetune_model(ctx, o->model, o->frozen, NULL, 0);
    if (m && o->adapter && !kg_peft_load(m, o->adapter)) {
        kg_model_free(m);
        return NULL;
    }
    if (m && need_tok && !(*tok = kg_tokenizer_load(ctx, o->model))) {
        kg_model_free(m);
        return NULL;
    }
    return m;
}

/* One line of stdin without its newline (malloc'd), or NULL at the end. */
static char *read_turn(void)
{
    size_t cap = 0;
    char *line = NULL;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    return line;
}

/* The ids that end an assistant turn: the config's and tokenizer's EOS and the end-of-turn
 * markers of common templates (ChatML's <|im_end|>, Llama 3's <|eot_id|>, Gemma's
 * <end_of_turn>) that the vocabulary has. */
static int stop_ids(const kg_model *m, const kg_tokenizer *tok, int32_t *out)
{
    static const char *const markers[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>",
                                          "<|end|>"};
    int n = 0;
    if (m->cfg.eos_token_id >= 0)
        out[n++] = (int32_t)m->cfg.eos_token_id;
    if (kg_tokenizer_special(tok, KG_TOKEN_EOS) >= 0)
        out[n++] = kg_tokenizer_special(tok, KG_TOKEN_EOS);
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++)
        if (kg_tokenizer_token_id(tok, markers[i]) >= 0)
            out[n++] = kg_tokenizer_token_id(tok, markers[i]);
    return n;
}

/* --chat: each stdin line a user turn; the reply streamed, then kept in the conversation. Each
 * turn runs the whole conversation through the model once (filling the KV cache), then one
 * token a step from the cache. */
static bool chat(kg_ctx *ctx, const generate_opts *o, kg_model *m, kg_tokenizer *tok)
{
    kg_chat_template *t = kg_chat_template_load(ctx, o->model);
    if (!t)
        return false;
    bool tty = isatty(0) && isatty(1);
    int64_t n = 0, cap = 16;
    kg_chat_message *msgs = malloc(sizeof *msgs * (size_t)cap);
    char **owned = malloc(sizeof *owned * (size_t)cap); /* each message's content */
    int32_t stop[8];
    streamer s = {.tok = tok, .reply_alone = true, .stop = stop, .n_stop = stop_ids(m, tok, stop)};
    bool ok = msgs && owned;
    if (ok && o->system) {
        owned[n] = strdup(o->system);
        msgs[n] = (kg_chat_message){"system", owned[n]};
        ok = owned[n++] != NULL;
    }
    char *line = NULL;
    while (ok) {
        if (tty) { /* a prompt for a person; a pipe gets the replies alone */
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (!(line = read_turn()))
            break;
        if (n + 2 > cap) {
            cap *= 2;
            kg_chat_message *mm = realloc(msgs, sizeof *msgs * (size_t)cap);
            msgs = mm ? mm : msgs;
            char **oo = mm ? realloc(owned, sizeof *owned * (size_t)cap) : NULL;
            owned = oo ? oo : owned;
            if (!mm || !oo) {
                free(line);
                ok = false;
                break;
            }
        }
        owned[n] = line;
        msgs[n] = (kg_chat_message){"user", line};
        n++;
        char *text = kg_chat_template_render(t, msgs, n, true);
        int64_t n_prompt = 0;
        int32_t *prompt = text ? kg_tokenizer_encode(tok, text, false, &n_prompt) : NULL;
        free(text);
        int32_t *all = prompt ? malloc(sizeof *all * (size_t)(n_prompt + o->max_new)) : NULL;
        int32_t *out = all ? malloc(sizeof *out * (size_t)(o->max_new + 1)) : NULL;
        ok = out != NULL;
        if (ok) {
            memcpy(all, prompt, sizeof *all * (size_t)n_prompt);
            s.all = all;
            s.n = s.n_prompt = n_prompt;
            s.printed = 0;
            kg_generate_config g = generate_config(o, &s);
            ok = kg_model_generate(m, prompt, n_prompt, &g, out) >= 0 && !s.failed;
        }
        /* The reply as the conversation keeps it: its text without the end-of-turn token. */
        char *reply = ok ? stream_text(&s) : NULL;
        if (ok && reply) {
            stream_flush(&s, true);
            fputs("\n", stdout);
            fflush(stdout);
            owned[n] = reply;
            msgs[n] = (kg_chat_message){"assistant", reply};
            n++;
        } else {
            free(reply);
            ok = false;
        }
        free(prompt);
        free(all);
        free(out);
    }
    if (!ok && !kg_ctx_status(ctx))
        kg_set_error(ctx, KG_ERR_NOMEM, "--chat: out of host memory");
    for (int64_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(msgs);
    kg_chat_template_free(t);
    return ok;
}

/* Continue one prompt: the text printed as it comes, or the ids at the end as a JSON array. */
static bool complete(kg_ctx *ctx, const generate_opts *o, kg_model *m, kg_tokenizer *tok,
                     const int32_t *prompt, int64_t n_prompt)
{
    if (n_prompt == 0)
        return kg_set_error(ctx, KG_ERR_ARG, "the prompt gives no tokens; expected at least one");
    int32_t *all = malloc(sizeof *all * (size_t)(n_prompt + o->max_new));
    int32_t *made_ids = malloc(sizeof *made_ids * (size_t)(o->max_new + 1));
    bool ok = (all && made_ids) || kg_set_error(ctx, KG_ERR_NOMEM, "out of host memory");
    if (ok) {
        memcpy(all, prompt, sizeof *all * (size_t)n_prompt);
        streamer s = {.tok = tok, .all = all, .n_prompt = n_prompt, .n = n_prompt};
        kg_generate_config g = generate_config(o, o->print_ids ? NULL : &s);
        int64_t made = kg_model_generate(m, prompt, n_prompt, &g, made_ids);
        ok = made >= 0 && !s.failed;
        if (ok && o->print_ids) {
            printf("[");
            for (int64_t i = 0; i < made; i++)
                printf("%s%d", i ? ", " : "", made_ids[i]);
            printf("]\n");
        } else if (ok) {
            stream_flush(&s, true);
            printf("\n");
            ok = !s.failed;
        }
    }
    free(all);
    free(made_ids);
    return ok;
}

static int run_generate(void *p)
{
    const generate_opts *o = p;
    if (!o->model)
        return usage_error("--model PATH is required");
    if (o->chat && (o->prompt || o->ids || o->print_ids))
        return usage_error("--chat reads its turns from stdin: no --prompt, --ids or --print-ids");
    if (!o->chat && o->system)
        return usage_error("--system is for --chat");
    if (!o->chat && !o->prompt == !o->ids)
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
    kg_tokenizer *tok = NULL;
    kg_model *m = load_model(ctx, o, o->chat || o->prompt || !o->print_ids, &tok);
    if (m && o->chat)
        rc = chat(ctx, o, m, tok) ? 0 : 1;
    else if (m && o->prompt)
        prompt = kg_tokenizer_encode(tok, o->prompt, true, &n_prompt);
    if (m && !o->chat && prompt)
        rc = complete(ctx, o, m, tok, prompt, n_prompt) ? 0 : 1;
    if (rc)
        rc = kg_ctx_status(ctx) ? kg_cli_fail("generate", ctx) : 1;
    free(prompt);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_generate = {
    .name = "generate",
    .summary = "Continue a prompt with a causal language model (Mistral, Llama; HF or GGUF).",
    .usage = "--model PATH [--adapter DIR] (--prompt TEXT | --ids 1,2,3 | --chat) [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(generate_opts),
    .defaults = defaults,
    .run = run_generate,
};
