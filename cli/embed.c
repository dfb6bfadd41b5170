/* embed.c — `krongrad embed`: one vector per text from a model's last hidden states, pooled as
 * sentence-transformers pools (the mean over real tokens by default, or the first token), each
 * printed as a JSON array on its own line.
 */
#include "cli.h"
#include "models/kg_tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct embed_opts {
    const char *model;
    const char *pool;
    kg_cli_list text;
    bool normalize;
    const char *backend;
} embed_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(embed_opts, model), "PATH",
     "an HF model directory or a .gguf file (required)"},
    {"text", KG_FLAG_LIST, offsetof(embed_opts, text), "TEXT",
     "a text to embed (repeat for more; required)"},
    {"pool", KG_FLAG_STRING, offsetof(embed_opts, pool), "mean|cls",
     "the mean over real tokens (default) or the first token's state"},
    {"normalize", KG_FLAG_BOOL, offsetof(embed_opts, normalize), NULL,
     "scale each vector to unit length (sentence-transformers' Normalize)"},
    {"backend", KG_FLAG_STRING, offsetof(embed_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad embed: %s\n(see krongrad embed --help)\n", msg);
    return 2;
}

static void print_rows(const float *v, int64_t rows, int64_t C, bool normalize)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = v + r * C;
        double norm = 0;
        for (int64_t i = 0; i < C; i++)
            norm += (double)x[i] * x[i];
        double scale = normalize && norm > 0 ? 1.0 / sqrt(norm) : 1.0;
        printf("[");
        for (int64_t i = 0; i < C; i++)
            printf("%s%.8g", i ? ", " : "", x[i] * scale);
        printf("]\n");
    }
}

static int run_embed(void *p)
{
    const embed_opts *o = p;
    if (!o->model)
        return usage_error("--model PATH is required");
    if (o->text.n == 0)
        return usage_error("give at least one --text TEXT");
    kg_pool pool = KG_POOL_MEAN;
    if (o->pool && strcmp(o->pool, "cls") == 0)
        pool = KG_POOL_CLS;
    else if (o->pool && strcmp(o->pool, "mean") != 0)
        return usage_error("--pool takes mean or cls");
    kg_ctx *ctx = kg_cli_context(o->backend, NULL);
    if (!ctx)
        return 1;
    int rc = 1;
    kg_token_batch batch = {0};
    kg_tokenizer *tok = NULL;
    kg_model *m = kg_model_load(ctx, o->model);
    if (m)
        tok = kg_tokenizer_load(ctx, o->model);
    /* Decoder vocabularies often have no pad token: pad with EOS, which the mask hides. */
    if (tok && kg_tokenizer_special(tok, KG_TOKEN_PAD) < 0 &&
        kg_tokenizer_special(tok, KG_TOKEN_EOS) >= 0)
        kg_tokenizer_set_pad(tok, kg_tokenizer_special(tok, KG_TOKEN_EOS));
    kg_encode_opts enc = {.add_special = true,
                          .max_length = m ? m->cfg.max_positions : 0};
    if (tok && kg_tokenizer_encode_batch(tok, o->text.n, o->text.item, NULL, &enc, &batch)) {
        const int64_t shape[2] = {batch.rows, batch.len};
        kg_model_input in = {
            .ids = kg_from_host(ctx, KG_DTYPE_I32, 2, shape, batch.ids),
            .attention_mask = kg_from_host(ctx, KG_DTYPE_I32, 2, shape, batch.mask),
            .token_types = m->token_types.weight
                               ? kg_from_host(ctx, KG_DTYPE_I32, 2, shape, batch.type_ids)
                               : NULL,
        };
        kg_no_grad_begin(ctx);
        float *v = kg_tensor_to_f32(kg_model_embed(m, &in, pool));
        kg_no_grad_end(ctx);
        if (v && !kg_ctx_status(ctx)) {
            print_rows(v, batch.rows, m->cfg.hidden_size, o->normalize);
            rc = 0;
        }
        free(v);
    }
    if (rc)
        rc = kg_cli_fail("embed", ctx);
    kg_token_batch_free(&batch);
    kg_tokenizer_free(tok);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_embed = {
    .name = "embed",
    .summary = "Print one embedding per text (JSON arrays) from an encoder or decoder.",
    .usage = "--model PATH --text TEXT [--text TEXT ...] [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(embed_opts),
    .run = run_embed,
};
