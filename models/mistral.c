/* mistral.c — the Mistral family, as transformers' modeling_mistral.py and modeling_llama.py
 * compute it: token embedding, then pre-norm blocks (x += attn(rms(x)); x += mlp(rms(x))) with
 * GQA, rotate-half RoPE, a causal mask (with Mistral's sliding window) and SwiGLU, a final
 * RMSNorm and the LM head. Llama is the same decoder without the window, with an optional
 * explicit head_dim, optional biases and the head optionally tied to the embedding.
 */
#include "models/arch.h"

#include <stdio.h>
#include <stdlib.h>

static kg_norm rms_norm(kg_loader *ld, const char *name)
{
    return (kg_norm){.kind = KG_NORM_RMS,
                     .weight = kg__param(ld, ld->m->cfg.hidden_size, 0, "%s.weight", name),
                     .eps = (float)ld->m->cfg.norm_eps};
}

static void load_layer(kg_loader *ld, int i, kg_layer *L)
{
    const kg_model_config *c = &ld->m->cfg;
    int64_t C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
    int64_t q = c->n_heads * D, kv = c->n_kv_heads * D;
    bool ab = c->attention_bias, mb = c->mlp_bias;
    char n[160];
#define NAME(s) (snprintf(n, sizeof n, "%slayers.%d.%s", ld->prefix, i, s), n)
    L->attn_norm = rms_norm(ld, NAME("input_layernorm"));
    L->attn = (kg_attention){
        .q = kg__linear(ld, NAME("self_attn.q_proj"), q, C, ab),
        .k = kg__linear(ld, NAME("self_attn.k_proj"), kv, C, ab),
        .v = kg__linear(ld, NAME("self_attn.v_proj"), kv, C, ab),
        .o = kg__linear(ld, NAME("self_attn.o_proj"), C, q, ab),
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = D,
        .rope_theta = (float)c->rope_theta,
        .dropout = c->attention_dropout,
        .mode = &ld->m->mode,
    };
    L->mlp_norm = rms_norm(ld, NAME("post_attention_layernorm"));
    L->mlp = (kg_mlp){
        .kind = KG_MLP_SWIGLU,
        .gate = kg__linear(ld, NAME("mlp.gate_proj"), F, C, mb),
        .up = kg__linear(ld, NAME("mlp.up_proj"), F, C, mb),
        .down = kg__linear(ld, NAME("mlp.down_proj"), C, F, mb),
    };
#undef NAME
}

bool kg__decoder_load(kg_loader *ld)
{
    kg_model *m = ld->m;
    const kg_model_config *c = &m->cfg;
    ld->prefix = kg__base_prefix(ld->w, "model.", "embed_tokens.weight");
    m->tokens.weight = kg__param(ld, c->vocab_size, c->hidden_size, "%sembed_tokens.weight",
                                 ld->prefix);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_load: out of host memory");
    for (int i = 0; i < c->n_layers && !kg_ctx_status(m->ctx); i++)
        load_layer(ld, i, &m->layers[i]);
    char n[64];
    snprintf(n, sizeof n, "%snorm", ld->prefix);
    m->final_norm = rms_norm(ld, n);
    /* A tied head is the embedding itself (a file may still hold a copy: it is not read). */
    m->lm_head = c->tie_word_embeddings
                     ? (kg_linear){.kind = KG_LINEAR_DENSE, .weight = m->tokens.weight}
                     : kg__linear(ld, "lm_head", c->vocab_size, c->hidden_size, false);
    return !kg_ctx_status(m->ctx);
}

kg_tensor *kg__decoder_hidden(const kg_model *m, kg_tensor *ids, kg_tensor *keep,
                              kg_kv_cache *cache, const kg_prefix_layout *shared)
{
    kg_tensor *x = kg_embed_forward(&m->tokens, ids); /* (B, T, C), or (N, C) shared */
    kg_tensor *mask = NULL;
    if (!shared) {
        int64_t T = kg_tensor_dim(ids, 1), pos0 = cache ? cache[0].len : 0;
        /* One new position that sees every cached one (a decode step without padding) needs
         * no mask: it would be all zeros, made on the host each step. */
        int64_t window = m->cfg.sliding_window;
        bool sees_all = T == 1 && !keep && (window <= 0 || pos0 + 1 <= window);
        mask = sees_all ? NULL : kg_attention_mask(m->ctx, keep, T, pos0, true, window);
    }
    kg__blocks b = kg__blocks_begin(m->ctx);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const kg_layer *L = &m->layers[l];
        kg__block_begin(&b);
        kg_tensor *h = kg_norm_forward(&L->attn_norm, x);
        x = kg_add(x, shared ? kg_attention_forward_prefixed(&L->attn, h, shared)
                             : kg_attention_forward(&L->attn, h, mask, cache ? &cache[l] : NULL));
        x = kg_add(x, kg_mlp_forward(&L->mlp, kg_norm_forward(&L->mlp_norm, x)));
        x = kg__block_end(&b, x);
    }
    return kg__blocks_end(&b, kg_norm_forward(&m->final_norm, x));
}
