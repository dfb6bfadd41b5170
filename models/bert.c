/* bert.c — the BERT family, as transformers' modeling_distilbert.py and modeling_bert.py compute
 * it: token + learned position (+ BERT token-type) embeddings, LayerNorm, then post-LN blocks
 * (x = norm(x + attn(x)); x = norm(x + mlp(x))) with exact erf GELU; heads on the first ([CLS])
 * token: DistilBERT relu(pre_classifier) → classifier, BERT tanh(pooler) → classifier. In
 * training mode the dropouts sit where transformers puts them (marked "drop" below).
 */
#include "models/arch.h"

#include <stdio.h>
#include <stdlib.h>

static kg_norm layer_norm(kg_loader *ld, const char *name)
{
    int64_t C = ld->m->cfg.hidden_size;
    return (kg_norm){.kind = KG_NORM_LAYER,
                     .weight = kg__param(ld, C, 0, "%s.weight", name),
                     .bias = kg__param(ld, C, 0, "%s.bias", name),
                     .eps = (float)ld->m->cfg.norm_eps};
}

/* One block's modules under DistilBERT's or BERT's names. */
static void load_layer(kg_loader *ld, int i, kg_layer *L)
{
    const kg_model_config *c = &ld->m->cfg;
    int64_t C = c->hidden_size, F = c->intermediate_size;
    bool distil = c->arch == KG_ARCH_DISTILBERT;
    char p[96], n[160];
    snprintf(p, sizeof p, distil ? "%stransformer.layer.%d." : "%sencoder.layer.%d.", ld->prefix,
             i);
#define NAME(s) (snprintf(n, sizeof n, "%s%s", p, s), n)
    L->attn = (kg_attention){
        .q = kg__linear(ld, NAME(distil ? "attention.q_lin" : "attention.self.query"), C, C, true),
        .k = kg__linear(ld, NAME(distil ? "attention.k_lin" : "attention.self.key"), C, C, true),
        .v = kg__linear(ld, NAME(distil ? "attention.v_lin" : "attention.self.value"), C, C, true),
        .o = kg__linear(ld, NAME(distil ? "attention.out_lin" : "attention.output.dense"), C, C,
                        true),
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_heads,
        .head_dim = c->head_dim,
        .scale_query = distil, /* DistilBERT scales q, BERT the scores: as HF */
        .dropout = c->attention_dropout,
        .mode = &ld->m->mode,
    };
    L->attn_norm = layer_norm(ld, NAME(distil ? "sa_layer_norm" : "attention.output.LayerNorm"));
    L->mlp = (kg_mlp){
        .kind = KG_MLP_GELU,
        .up = kg__linear(ld, NAME(distil ? "ffn.lin1" : "intermediate.dense"), F, C, true),
        .down = kg__linear(ld, NAME(distil ? "ffn.lin2" : "output.dense"), C, F, true),
    };
    L->mlp_norm = layer_norm(ld, NAME(distil ? "output_layer_norm" : "output.LayerNorm"));
#undef NAME
}

bool kg__bert_load(kg_loader *ld)
{
    kg_model *m = ld->m;
    const kg_model_config *c = &m->cfg;
    int64_t C = c->hidden_size;
    bool distil = c->arch == KG_ARCH_DISTILBERT;
    ld->prefix = kg__base_prefix(ld->w, distil ? "distilbert." : "bert.",
                                 "embeddings.word_embeddings.weight");
    const char *P = ld->prefix;
    char n[128];
    m->tokens.weight = kg__param(ld, c->vocab_size, C, "%sembeddings.word_embeddings.weight", P);
    m->positions.weight = kg__param(ld, c->max_positions, C,
                                    "%sembeddings.position_embeddings.weight", P);
    if (!distil)
        m->token_types.weight = kg__param(ld, c->type_vocab_size, C,
                                          "%sembeddings.token_type_embeddings.weight", P);
    snprintf(n, sizeof n, "%sembeddings.LayerNorm", P);
    m->embed_norm = layer_norm(ld, n);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_load: out of host memory");
    for (int i = 0; i < c->n_layers && !kg_ctx_status(m->ctx); i++)
        load_layer(ld, i, &m->layers[i]);

    bool head = c->head == KG_HEAD_MULTIPLE_CHOICE || c->head == KG_HEAD_SEQ_CLASSIFICATION;
    int64_t labels = c->head == KG_HEAD_MULTIPLE_CHOICE ? 1 : c->num_labels;
    if (!distil) { /* BertModel files may carry the pooler; the heads need it */
        snprintf(n, sizeof n, "%spooler.dense.weight", P);
        m->pooler.weight = head ? kg__param(ld, C, C, "%s", n)
                                : kg__param_optional(ld, C, C, "%s", n);
        if (m->pooler.weight)
            m->pooler.bias = kg__param(ld, C, 0, "%spooler.dense.bias", P);
    }
    if (head && distil)
        m->pre_classifier = kg__linear(ld, "pre_classifier", C, C, true);
    if (head)
        m->classifier = kg__linear(ld, "classifier", labels, C, true);
    return !kg_ctx_status(m->ctx);
}

kg_tensor *kg__bert_hidden(const kg_model *m, kg_tensor *ids, kg_tensor *keep,
                           kg_tensor *types, bool first_only)
{
    kg_ctx *ctx = m->ctx;
    int64_t T = kg_tensor_dim(ids, 1);
    if (T > m->cfg.max_positions) {
        kg_set_error(ctx, KG_ERR_RANGE, "kg_model_hidden: %lld tokens; the model has %lld "
                     "positions", (long long)T, (long long)m->cfg.max_positions);
        return NULL;
    }
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    if (!pos) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_hidden: out of host memory");
        return NULL;
    }
    for (int64_t t = 0; t < T; t++)
        pos[t] = (int32_t)t;
    kg_tensor *x = kg_add(kg_embed_forward(&m->tokens, ids), /* (N, T, C) + (T, C) */
                          kg_embed_forward(&m->positions,
                                           kg_from_host(ctx, KG_DTYPE_I32, 1, &T, pos)));
    free(pos);
    if (m->token_types.weight) /* no types given: all type 0, as HF */
        x = kg_add(x, types ? kg_embed_forward(&m->token_types, types)
                            : kg_slice(m->token_types.weight, 0, 0, 1));
    kg_mode *mode = kg__mode(m);
    float p = m->cfg.hidden_dropout;
    x = kg_mode_dropout(mode, kg_norm_forward(&m->embed_norm, x), p); /* drop */
    kg_tensor *mask = kg_attention_mask(ctx, keep, T, 0, false, 0); /* (N, 1, 1, T) or NULL */
    kg__blocks b = kg__blocks_begin(ctx);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const kg_layer *L = &m->layers[l];
        kg__block_begin(&b);
        /* The head reads position 0 alone: the last layer's queries, output projection and MLP
         * run on it (its keys and values still on every position). */
        kg_tensor *xq = first_only && l == m->cfg.n_layers - 1
                            ? kg_contiguous(kg_slice(x, 1, 0, 1)) /* (N, 1, C) */
                            : x;
        kg_tensor *a = xq == x ? kg_attention_forward(&L->attn, x, mask, NULL)
                               : kg_attention_forward_queries(&L->attn, xq, x, mask);
        if (m->cfg.arch == KG_ARCH_BERT) /* DistilBERT has no dropout after out_lin */
            a = kg_mode_dropout(mode, a, p); /* drop */
        x = kg_norm_forward(&L->attn_norm, kg_add(xq, a));
        x = kg_norm_forward(&L->mlp_norm,
                            kg_add(x, kg_mode_dropout(mode, kg_mlp_forward(&L->mlp, x), p)));
        x = kg__block_end(&b, x);
    }
    return kg__blocks_end(&b, x);
}

kg_tensor *kg__bert_head(const kg_model *m, kg_tensor *hidden)
{
    int64_t N = kg_tensor_dim(hidden, 0), C = m->cfg.hidden_size;
    kg_tensor *cls = kg_reshape(kg_slice(hidden, 1, 0, 1), 2, (int64_t[]){N, C}); /* (N, C) */
    kg_tensor *pooled = m->cfg.arch == KG_ARCH_BERT
                            ? kg_tanh(kg_linear_forward(&m->pooler, cls))
                            : kg_relu(kg_linear_forward(&m->pre_classifier, cls));
    pooled = kg_mode_dropout(kg__mode(m), pooled, m->cfg.classifier_dropout); /* drop */
    return kg_linear_forward(&m->classifier, pooled); /* (N, labels) */
}
