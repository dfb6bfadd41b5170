/* kg_nn.h — the modules transformers are built from: linear, embedding, layer norm / RMS norm,
 * multi-head attention (GQA, RoPE, causal / sliding-window / padding masks, a KV cache) and the
 * MLP. Each module is a plain struct with public fields and a forward function over kg ops.
 *
 * Ownership: a module does not own its tensors. They are parameters, made outside any scope (or
 * kept with kg_tensor_keep) by whoever builds the module, usually a model loader, which also
 * frees them. Forward functions make their outputs in the current scope, record them on the tape
 * when grad mode is on, and return NULL with the context's error set on failure (as every op).
 *
 * Shape letters: B batch, T time (queries), S keys (cache + T), C channels, H heads, Hkv key /
 * value heads, D head dim, F feed-forward width, V vocabulary.
 */
#ifndef KG_NN_H
#define KG_NN_H

#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Training mode ------------------------------------------------------------------------ */

/* Whether modules run as in training (dropout on, as PyTorch's model.train()) and where their
 * dropout masks come from. A model holds one and its modules point to it. Each dropout call
 * draws the mask of seed and the number of calls made since the seed was set, so a forward pass
 * is reproducible from the seed alone, on every backend: the trainer sets a seed per step
 * (kg_model_train) and a resumed run draws the same masks. */
typedef struct kg_mode {
    bool training;
    uint64_t seed;
    uint64_t draws; /* dropout calls since the seed was set */
    /* stats on: every adapter adds the sum of squares of its output s·ΔW·x to out_sq and its
     * element count to out_n (the trainer's --log-norms; a read per layer) */
    bool stats;
    double out_sq;
    int64_t out_n;
} kg_mode;

/* x with elements zeroed with probability p and the rest scaled by 1/(1-p) when mode is training
 * and p > 0; x itself otherwise (mode may be NULL: evaluation). */
kg_tensor *kg_mode_dropout(kg_mode *mode, kg_tensor *x, float p);

/* ---- Linear ------------------------------------------------------------------------------- */

/* What a linear layer computes beyond its base weight: kg_linear_forward switches on the kind,
 * so attaching an adapter changes fields, not the models that call the layer. A `full`
 * fine-tune is a DENSE layer whose weight requires grad. */
typedef enum kg_linear_kind {
    KG_LINEAR_DENSE,    /* y = x·Wᵀ + b */
    KG_LINEAR_LORA,     /* + s·(B·A)·drop(x): lora_a (R, in), lora_b (out, R) */
    KG_LINEAR_KRONLORA, /* + s·(w1 ⊗ w2_a·w2_b)·drop(x): Kron-LoRA, A = w1 (dA2, dA1),
                         * B1 = w2_a (dB2, R), B2 = w2_b (R, dB1) */
    KG_LINEAR_LOKR,     /* + s·(W1 ⊗ W2)·x, PEFT's LoKr: W1 = w1 or w1_a·w1_b,
                         * W2 = w2 or w2_a·w2_b */
} kg_linear_kind;

/* An adapter's factors (NULL where its kind has none) and constants. Shapes, with d_out =
 * dA2·dB2 and d_in = dA1·dB1 for the Kronecker kinds (PEFT's LoKr names):
 *   lora_a (R, in), lora_b (out, R)
 *   w1 (dA2, dA1) | w1_a (dA2, R), w1_b (R, dA1)
 *   w2 (dB2, dB1) | w2_a (dB2, R), w2_b (R, dB1)
 * Nothing of size d_out × d_in is formed by the forward pass or its backward. */
typedef struct kg_adapter {
    kg_tensor *lora_a, *lora_b;
    kg_tensor *w1, *w1_a, *w1_b;
    kg_tensor *w2, *w2_a, *w2_b;
    float scale;   /* s = alpha / R */
    float dropout; /* on the adapter's input while training (LoRA, Kron-LoRA) */
    kg_mode *mode; /* the model's training mode (NULL: never training) */
    bool merged;   /* s·ΔW has been added to weight: the forward pass skips the adapter */
} kg_adapter;

typedef struct kg_linear {
    kg_linear_kind kind;
    kg_tensor *weight; /* (out, in), the HF / PyTorch layout */
    kg_tensor *bias;   /* (out) or NULL */
    kg_adapter ad;     /* kinds other than DENSE */
} kg_linear;

/* x (..., in) → (..., out). */
kg_tensor *kg_linear_forward(const kg_linear *l, kg_tensor *x);
/* Each row's log-probability of its target under the head l: log softmax(l(x))[i, t_i] for
 * x (N, in) and targets (N, i32), 0 where the target is ignore_index. A plain head (an LM
 * head: no bias, no adapter; f32, or frozen in any weight dtype) goes through
 * kg_linear_log_prob, which never stores the (N, V) logits; any other head computes them. */
kg_tensor *kg_linear_log_probs(const kg_linear *l, kg_tensor *x, kg_tensor *targets,
                               int32_t ignore_index);

/* ---- Embedding ---------------------------------------------------------------------------- */

typedef struct kg_embed {
    kg_tensor *weight; /* (V, C) */
} kg_embed;

/* ids (any shape, i32) → (ids..., C). */
kg_tensor *kg_embed_forward(const kg_embed *e, kg_tensor *ids);

/* ---- Norms -------------------------------------------------------------------------------- */

typedef enum kg_norm_kind {
    KG_NORM_LAYER, /* (x - mean)/√(var + eps)·weight + bias (BERT family) */
    KG_NORM_RMS,   /* x/√(mean(x²) + eps)·weight (Mistral family; bias unused) */
} kg_norm_kind;

typedef struct kg_norm {
    kg_norm_kind kind;
    kg_tensor *weight; /* (C) */
    kg_tensor *bias;   /* (C), layer norm only; NULL for none */
    float eps;
} kg_norm;

/* x (..., C) → (..., C), normalized over C. */
kg_tensor *kg_norm_forward(const kg_norm *n, kg_tensor *x);

/* ---- Attention ---------------------------------------------------------------------------- */

/* Keys and values of earlier positions, one per layer, for generation: rows [0, len) of k and v
 * hold what the layer computed for those positions. Its tensors are kept (they outlive every
 * step's scope) until kg_kv_cache_free. Inference only: the cache is written off the tape. */
typedef struct kg_kv_cache {
    kg_tensor *k; /* (B, Hkv, S_max, D) */
    kg_tensor *v; /* (B, Hkv, S_max, D) */
    int64_t len;  /* positions filled */
} kg_kv_cache;

/* A cache for n_layers layers of B sequences of up to max_len positions (f32). Returns an array
 * of n_layers the caller frees with kg_kv_cache_free, or NULL with the context's error set. */
kg_kv_cache *kg_kv_cache_new(kg_ctx *ctx, int n_layers, int64_t B, int64_t n_kv_heads,
                             int64_t max_len, int64_t head_dim);
void kg_kv_cache_free(kg_kv_cache *caches, int n_layers);

/* The additive attention mask (0 where a query may look, -inf where not) for T queries at
 * positions pos0..pos0+T-1 over keys 0..pos0+T-1:
 *   keep   (B, pos0+T) i32, 1 for a real token, 0 for padding; NULL when nothing is padded;
 *   causal query i sees keys j <= i;
 *   window with causal and window > 0, only keys with i - window < j (W keys, itself included:
 *          HF's sliding window).
 * Returns (1, 1, T, S) causal only, (B, 1, 1, S) padding only, (B, 1, T, S) both, with
 * S = pos0 + T; NULL, without an error, when nothing is masked (no keep, not causal). */
kg_tensor *kg_attention_mask(kg_ctx *ctx, kg_tensor *keep, int64_t T, int64_t pos0, bool causal,
                             int64_t window);

typedef struct kg_attention {
    kg_linear q, k, v; /* q: (H·D, C); k, v: (Hkv·D, C) */
    kg_linear o;       /* (C, H·D) */
    int64_t n_heads, n_kv_heads, head_dim; /* H, Hkv (H a multiple of Hkv: GQA), D */
    float rope_theta;  /* > 0: rotate q and k (HF rotate-half); 0: no RoPE */
    bool scale_query;  /* scale q by 1/√D before q·kᵀ (DistilBERT), else the scores after */
    float dropout;     /* on the attention probabilities while training (HF attention_dropout) */
    kg_mode *mode;     /* the model's training mode (NULL: never training) */
} kg_attention;

/* x (B, T, C) → (B, T, C). mask: from kg_attention_mask (or NULL); cache: NULL, or this layer's
 * cache, whose rows [len, len+T) receive this call's keys and values (len advances by T) and
 * whose earlier rows are attended to; T queries sit at positions cache->len.. for RoPE. */
kg_tensor *kg_attention_forward(const kg_attention *a, kg_tensor *x, kg_tensor *mask,
                                kg_kv_cache *cache);
/* The same with queries from xq (B, Tq, C) alone, against keys and values from x (B, T, C):
 * (B, Tq, C), rows of what kg_attention_forward gives when xq holds the first Tq positions of x
 * (no cache, no RoPE: both are refused). An encoder whose head reads one position uses it in
 * its last layer, so that layer's queries, output projection and MLP run on that position
 * alone (as llama.cpp computes its last layer on the output positions only). */
kg_tensor *kg_attention_forward_queries(const kg_attention *a, kg_tensor *xq, kg_tensor *x,
                                        kg_tensor *mask);

/* Rows that continue shared prompts, so that a prompt is computed once for all of them (scoring
 * a multiple-choice item reads its question once for its choices). G prompts, left-padded to Lp
 * positions, and R suffixes, right-padded to S, suffix r continuing prompt group[r]. The tokens
 * lie flat, (G·Lp + R·S, C): the prompts row by row, then the suffixes. For RoPE, prompt column
 * j sits at position j and suffix position t at Lp + t; a prompt of L tokens starts at Lp − L,
 * so a suffix sees its prompt at the same relative positions as the whole row would (RoPE
 * depends on nothing else). */
typedef struct kg_prefix_layout {
    int64_t G, Lp, R, S;
    kg_tensor *group;       /* (R) i32 */
    kg_tensor *prefix_mask; /* (G, 1, Lp, Lp): causal, the left padding masked as keys */
    kg_tensor *suffix_mask; /* (R, 1, S, Lp + S): its prompt's real positions, then causal */
} kg_prefix_layout;

/* Fill l for prompts of prefix_len[g] tokens (0 <= each <= Lp) and suffixes continuing
 * group[r] (0 <= each < G), with Mistral's sliding window (window > 0) or none; the tensors
 * live in the current scope. False with the context's error on bad sizes. */
bool kg_prefix_layout_init(kg_ctx *ctx, kg_prefix_layout *l, int64_t G, int64_t Lp,
                           const int64_t *prefix_len, int64_t R, int64_t S, const int32_t *group,
                           int64_t window);
/* x (G·Lp + R·S, C) laid out as l → the same shape: each prompt attends causally to itself,
 * each suffix to its prompt's positions and causally to itself; the positions are what
 * kg_attention_forward gives for each whole row (a prompt's dropout masks, in training, are
 * drawn once for all its rows). */
kg_tensor *kg_attention_forward_prefixed(const kg_attention *a, kg_tensor *x,
                                         const kg_prefix_layout *l);

/* ---- MLP ---------------------------------------------------------------------------------- */

typedef enum kg_mlp_kind {
    KG_MLP_GELU,   /* down(gelu(up(x))), exact erf GELU (BERT family) */
    KG_MLP_SWIGLU, /* down(silu(gate(x)) ⊙ up(x)) (Mistral family) */
} kg_mlp_kind;

typedef struct kg_mlp {
    kg_mlp_kind kind;
    kg_linear gate; /* (F, C), SwiGLU only */
    kg_linear up;   /* (F, C) */
    kg_linear down; /* (C, F) */
} kg_mlp;

/* x (..., C) → (..., C). */
kg_tensor *kg_mlp_forward(const kg_mlp *m, kg_tensor *x);

/* ---- Parameter lists ------------------------------------------------------------------------ */

/* A named parameter: what optimizers, checkpoints and adapter files walk. Names are the HF ones
 * ("model.layers.0.self_attn.q_proj.weight"). */
typedef struct kg_param {
    char *name;     /* owned by the list's owner */
    kg_tensor *tensor;
} kg_param;

#ifdef __cplusplus
}
#endif
#endif
