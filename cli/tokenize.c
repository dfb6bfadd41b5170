/* tokenize.c — `krongrad tokenize`: the token ids a model's tokenizer gives for each --text, one
 * JSON array per line, as transformers' tokenizer(text)["input_ids"] prints them.
 */
#include "cli.h"
#include "models/kg_tokenizer.h"

#include <stddef.h>
#include <stdlib.h>

typedef struct tokenize_opts {
    const char *model;
    kg_cli_list text;
    bool no_special;
    bool decode;
} tokenize_opts;

static const kg_flag tokenize_flags[] = {
    {"model", KG_FLAG_STRING, offsetof(tokenize_opts, model), "PATH",
     "HF model directory, tokenizer.json, vocab.txt, tokenizer.model or .gguf file"},
    {"text", KG_FLAG_LIST, offsetof(tokenize_opts, text), "TEXT",
     "text to tokenize (repeatable: one line of output each)"},
    {"no-special", KG_FLAG_BOOL, offsetof(tokenize_opts, no_special), NULL,
     "leave out the special tokens ([CLS]/[SEP], BOS) the tokenizer adds"},
    {"decode", KG_FLAG_BOOL, offsetof(tokenize_opts, decode), NULL,
     "also print the ids decoded back to text, as a JSON string on the next line"},
};

/* text as a JSON string: quotes, backslashes and control characters escaped. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    puts("\"");
}

static int run_tokenize(void *p)
{
    tokenize_opts *o = p;
    if (!o->model || o->text.n == 0) {
        fprintf(stderr, "krongrad tokenize: --model PATH and at least one --text are needed\n"
                        "(see krongrad tokenize --help)\n");
        return 2;
    }
    /* tokenizing computes nothing on a device: the CPU context only carries errors */
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    if (!ctx) {
        fprintf(stderr, "krongrad tokenize: out of memory\n");
        return 1;
    }
    kg_tokenizer *tok = kg_tokenizer_load(ctx, o->model);
    int rc = 0;
    for (int i = 0; tok && i < o->text.n && rc == 0; i++) {
        int64_t n;
        int32_t *ids = kg_tokenizer_encode(tok, o->text.item[i], !o->no_special, &n);
        char *text = ids && o->decode ? kg_tokenizer_decode(tok, ids, n, true) : NULL;
        if (!ids || (o->decode && !text)) {
            rc = 1;
        } else {
            putchar('[');
            for (int64_t k = 0; k < n; k++)
                printf(k ? ", %d" : "%d", ids[k]);
            puts("]");
            if (text)
                print_json_string(text);
        }
        free(ids);
        free(text);
    }
    if (!tok || rc)
        rc = kg_cli_fail("tokenize", ctx);
    kg_tokenizer_free(tok);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_tokenize = {
    .name = "tokenize",
    .summary = "Print the token ids of each text as a JSON array.",
    .usage = "--model PATH --text TEXT [--text TEXT ...] [--no-special] [--decode]",
    .flags = tokenize_flags,
    .n_flags = sizeof tokenize_flags / sizeof tokenize_flags[0],
    .opts_size = sizeof(tokenize_opts),
    .run = run_tokenize,
};
