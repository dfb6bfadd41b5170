/* kg_models.h — the architectures krongrad runs, loaded from what users already have (a Hugging
 * Face directory or a llama.cpp GGUF file): DistilBERT and BERT (post-LN encoders with
 * multiple-choice and sequence-classification heads) and Mistral and Llama (pre-RMSNorm
 * decoders with GQA, RoPE, a sliding window, SwiGLU and a KV cache); their forward pass, the
 * embeddings `krongrad embed` prints and the generation loop of `krongrad generate`.
 *
 * Errors go to the context (kg_ctx_status / kg_error) naming the file, the key or tensor and
 * what was expected; functions return NULL / false / -1 then.
 */
#ifndef KG_MODELS_H
#define KG_MODELS_H

#include "models/kg_formats.h"
#include "nn/kg_adapter.h"
#include "nn/kg_nn.h"
#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Configuration ------------------------------------------------------------------------ */

typedef enum kg_arch {
    KG_ARCH_DISTILBERT, /* model_type "distilbert" */
    KG_ARCH_BERT,       /* "bert" */
    KG_ARCH_MISTRAL,    /* "mistral" */
    KG_ARCH_LLAMA,      /* "llama" (GGUF: general.architecture "llama") */
} kg_arch;

/* What sits on top of the base model, from config.json's "architectures"[0]. */
typedef enum kg_model_head {
    KG_HEAD_NONE,               /* the base model (BertModel, DistilBertForMaskedLM, ...) */
    KG_HEAD_CAUSAL_LM,          /* *ForCausalLM: next-token logits */
    KG_HEAD_MULTIPLE_CHOICE,    /* *ForMultipleChoice: one score per choice */
    KG_HEAD_SEQ_CLASSIFICATION, /* *ForSequenceClassification: num_labels scores */
} kg_model_head;

/* One model's shape and constants, whichever file they came from (config.json or GGUF). */
typedef struct kg_model_config {
    kg_arch arch;
    kg_model_head head;
    int64_t vocab_size;        /* V */
    int64_t hidden_size;       /* C */
    int64_t n_layers;
    int64_t n_heads;           /* H */
    int64_t n_kv_heads;        /* Hkv: H for the BERT family */
    int64_t head_dim;          /* D: "head_dim" when given (Llama may set it), else C / H */
    int64_t intermediate_size; /* F */
    int64_t max_positions;     /* learned position rows (BERT family), context length (decoders) */
    int64_t type_vocab_size;   /* BERT token types; 0 for the others */
    int64_t num_labels;        /* sequence-classification outputs */
    double norm_eps;           /* layer_norm_eps (1e-12 for DistilBERT) or rms_norm_eps */
    double rope_theta;         /* "rope_theta" or transformers 5's rope_parameters.rope_theta */
    int64_t sliding_window;    /* W (query i sees keys i-W+1..i); 0 for none */
    bool tie_word_embeddings;  /* the LM head reuses the token embedding */
    bool attention_bias;       /* Llama's q/k/v/o biases */
    bool mlp_bias;             /* Llama's gate/up/down biases */
    int64_t pad_token_id, bos_token_id, eos_token_id; /* -1 where the config has none */
    /* Dropout while training (kg_model_train), as transformers applies it in model.train(). */
    float hidden_dropout;     /* DistilBERT "dropout", BERT "hidden_dropout_prob" */
    float attention_dropout;  /* on the attention probabilities: "attention_dropout",
                               * BERT "attention_probs_dropout_prob" */
    float classifier_dropout; /* before the classifier: DistilBERT "seq_classif_dropout", BERT
                               * "classifier_dropout" (else hidden_dropout_prob) */
    /* How the frozen linear weights of the transformer blocks (attention and MLP) are stored:
     * KG_DTYPE_F32 (0, the default), f16, bf16, q8_0, q4_0, q4_1 or nf4 (docs/quantization.md).
     * Not in config.json: kg_model_load_frozen and kg_model_random's caller set it. */
    kg_dtype frozen;
} kg_model_config;

/* Read an HF config.json (path: the file, or a directory holding it). Bad JSON, a missing or
 * mistyped key, an unknown model_type, or an unsupported setting (an activation other than the
 * architecture's, RoPE scaling) is an error naming the file and the key. */
bool kg_model_config_read(kg_ctx *ctx, const char *path, kg_model_config *cfg);
/* The config of a GGUF file's "llama.*" metadata (general.architecture must be "llama"). */
bool kg_model_config_from_gguf(kg_ctx *ctx, const kg_weights *w, kg_model_config *cfg);

/* ---- Model -------------------------------------------------------------------------------- */

/* One transformer block. The BERT family is post-LN: x = attn_norm(x + attn(x)), then
 * x = mlp_norm(x + mlp(x)). Decoders are pre-norm: x = x + attn(attn_norm(x)), then
 * x = x + mlp(mlp_norm(x)). */
typedef struct kg_layer {
    kg_attention attn;
    kg_norm attn_norm; /* DistilBERT sa_layer_norm, BERT attention.output.LayerNorm, decoders
                        * input_layernorm */
    kg_mlp mlp;
    kg_norm mlp_norm;  /* output_layer_norm, output.LayerNorm, post_attention_layernorm */
} kg_layer;

typedef struct kg_model {
    kg_ctx *ctx;
    kg_model_config cfg;
    kg_embed tokens;          /* (V, C) */
    kg_embed positions;       /* (P, C), BERT family; NULL weight for decoders (RoPE) */
    kg_embed token_types;     /* (types, C), BERT; NULL weight otherwise */
    kg_norm embed_norm;       /* BERT family: LayerNorm after the embeddings */
    kg_layer *layers;         /* cfg.n_layers */
    kg_norm final_norm;       /* decoders: model.norm */
    kg_linear lm_head;        /* (V, C), causal LM; its weight is tokens.weight when tied */
    kg_linear pooler;         /* (C, C), BERT: tanh(pooler(h[:, 0])); NULL weight when absent */
    kg_linear pre_classifier; /* (C, C), DistilBERT heads: relu(pre_classifier(h[:, 0])) */
    kg_linear classifier;     /* (1, C) multiple choice, (num_labels, C) classification */
    /* Every parameter once, by its name in the checkpoint (a tied head is not listed twice). */
    kg_param *params;
    int n_params;
    kg_mode mode;               /* training or evaluation (kg_model_train); modules point here */
    kg_adapter_config adapter;  /* what kg_model_attach was given (kind NONE before; its strings
                                 * NULL: they were the caller's) */
    /* What the optimizer updates, by the names PEFT saves them under
     * ("base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_A.weight",
     * "base_model.model.classifier.weight"; a full fine-tune: the checkpoint's names). Empty
     * until kg_model_attach. Names owned by the model; tensors are adapter factors (owned by
     * their layer) or model parameters. */
    kg_param *trainable;
    int n_trainable;
    /* Under --frozen bf16 (cfg.frozen), an adapter's frozen LM head multiplies in bf16 as the
     * blocks' frozen linears do: kg_model_attach points lm_head.weight at head_bf16, a copy, and
     * keeps the f32 weight (a parameter, or the tied embedding) in head_f32. NULL otherwise. */
    kg_tensor *head_bf16, *head_f32;
} kg_model;

/* Load path: an HF directory (config.json + model.safetensors or its sharded index), a
 * .safetensors file or index with config.json beside it, or a llama.cpp .gguf file. Weights
 * are loaded as f32 parameters (kept: they outlive every scope) whose shapes are checked
 * against the config. Names may carry the head's prefix ("distilbert.", "bert.", "model.") or
 * not, as the checkpoint was saved from a head model or the base model. A missing tensor, a
 * shape that disagrees with the config or an unknown model_type is an error naming the file and
 * the tensor or key. The caller frees the model with kg_model_free (ctx must outlive it). */
kg_model *kg_model_load(kg_ctx *ctx, const char *path);
/* kg_model_load with the transformer blocks' linear weights (attention and MLP; not embeddings,
 * norms or heads, as QLoRA) stored as `frozen` (see kg_model_config.frozen), each converted as
 * it loads, so the f32 model never exists whole (one whose in-dimension is not a multiple of
 * the block, 32 or 64, stays f32). GGUF tensors already packed as q8_0, q4_0 or
 * q4_1 stay as the file packs them whatever `frozen` asks (other than f32). Such weights never
 * require grad: a `full` fine-tune or a merge of an adapter into them is an error. */
kg_model *kg_model_load_frozen(kg_ctx *ctx, const char *path, kg_dtype frozen);
/* A model of cfg's shapes with random parameters (matrices N(0, 0.02) from seed, norm weights 1,
 * biases 0) under the names a head model's checkpoint uses: for benchmarks and tests at real
 * sizes without the files. NULL with the context's error set. */
kg_model *kg_model_random(kg_ctx *ctx, const kg_model_config *cfg, uint64_t seed);
void kg_model_free(kg_model *m);

/* Training mode on (dropout as HF's model.train(): DistilBERT/BERT hidden, attention and
 * classifier dropout, adapters' input dropout) or off (evaluation, the default). Each call
 * restarts the dropout masks from seed: call it with a new seed per step (e.g. derived from
 * the run's seed and the step) and a resumed run repeats the masks bit for bit. */
void kg_model_train(kg_model *m, bool training, uint64_t seed);

/* The tokens of one forward call. */
typedef struct kg_model_input {
    kg_tensor *ids;            /* (B, T) i32; (B, K, T) for a multiple-choice head */
    kg_tensor *attention_mask; /* i32 like ids: 1 for a token, 0 for padding; NULL: no padding.
                                * With a KV cache it covers every position: (B, cached + T) */
    kg_tensor *token_types;    /* i32 like ids (BERT; NULL: all type 0) */
} kg_model_input;

/* The last hidden states (B, T, C), as HF's last_hidden_state: after the final norm for
 * decoders; (B·K, T, C) for multiple-choice ids. cache: NULL, or one cache per layer
 * (kg_model_cache_new; decoders only) whose length gives the first position. */
kg_tensor *kg_model_hidden(const kg_model *m, const kg_model_input *in, kg_kv_cache *cache);

/* A decoder's last hidden states for rows that share prompts (kg_prefix_layout, nn/kg_nn.h):
 * ids (G·Lp + R·S) i32, the left-padded prompts row by row, then the right-padded suffixes →
 * (G·Lp + R·S, C) in the same order, each position's state as kg_model_hidden gives it for the
 * whole row (padding positions hold values nothing reads). */
kg_tensor *kg_model_hidden_prefixed(const kg_model *m, kg_tensor *ids,
                                    const kg_prefix_layout *l);

/* What the head gives: causal LM (B, T, V); multiple choice (B, K); sequence classification
 * (B, num_labels). A model without a head is an error (use kg_model_hidden). */
kg_tensor *kg_model_logits(const kg_model *m, const kg_model_input *in, kg_kv_cache *cache);

/* A KV cache for B sequences of up to max_len positions, one per layer (decoders); free it with
 * kg_kv_cache_free(cache, m->cfg.n_layers). */
kg_kv_cache *kg_model_cache_new(const kg_model *m, int64_t B, int64_t max_len);

/* ---- Embeddings --------------------------------------------------------------------------- */

typedef enum kg_pool {
    KG_POOL_MEAN, /* the mean of the last hidden states over real tokens (sentence-transformers) */
    KG_POOL_CLS,  /* the first token's last hidden state */
} kg_pool;

/* One vector per sequence: (B, C). ids (B, T). */
kg_tensor *kg_model_embed(const kg_model *m, const kg_model_input *in, kg_pool pool);

/* ---- Generation ----------------------------------------------------------------------------- */

typedef struct kg_generate_config {
    int64_t max_new;   /* at most this many new tokens */
    float temperature; /* 0: greedy (argmax, as transformers' do_sample=False); > 0: sample */
    float top_p;       /* sampling from the smallest set of tokens whose probability reaches
                        * top_p (nucleus); 0 or 1: all tokens */
    uint64_t seed;     /* sampling: the same seed gives the same tokens */
    bool no_cache;     /* recompute the whole sequence at every step instead of a KV cache */
    bool ignore_eos;   /* keep going after the config's eos_token_id */
    /* NULL, or called with each new id as soon as it is chosen (to stream it); returning false
     * stops the generation after that id (an end-of-turn token the config does not name) */
    bool (*on_token)(void *user, int32_t id);
    void *user;
} kg_generate_config;

/* Continue prompt (n_prompt ids, batch 1) on a causal LM: writes up to g->max_new new ids to out
 * (which holds max_new) and returns how many, stopping after EOS (which is written) unless
 * ignore_eos; -1 on error. Runs without grad, in a scope per step. */
int64_t kg_model_generate(const kg_model *m, const int32_t *prompt, int64_t n_prompt,
                          const kg_generate_config *g, int32_t *out);

/* The step by step form of kg_model_generate, for a caller that times or steers each token
 * (krongrad bench generate). kg_decoder_new makes the state of one sequence of up to max_len
 * ids (with a KV cache unless cache is false); NULL with the context's error set. The caller
 * frees it with kg_decoder_free. kg_decoder_feed runs the model on n more ids (without grad,
 * in a scope of its own) and returns the V logits after the last one, owned by the decoder and
 * valid until the next call; NULL on error (an id out of range, past max_len).
 * kg_decoder_pick takes the next id from those logits as g says (greedy, or sampled with
 * temperature and top-p from rng, which it advances). kg_decoder_len: the ids fed so far.
 * With a cache, the decoder packs an f32 head as q8_0 when that is exact (the logits are the
 * same): made once per decoder, so reuse one (kg_decoder_reset) across sequences. */
typedef struct kg_decoder kg_decoder;
kg_decoder *kg_decoder_new(const kg_model *m, int64_t max_len, bool cache);
void kg_decoder_free(kg_decoder *d);
const float *kg_decoder_feed(kg_decoder *d, const int32_t *ids, int64_t n);
int64_t kg_decoder_pick(kg_decoder *d, const kg_generate_config *g, uint64_t *rng);
int64_t kg_decoder_len(const kg_decoder *d);
/* Start a new sequence in the same state (the cache emptied, nothing freed). */
void kg_decoder_reset(kg_decoder *d);
/* The LM head as the decoder reads it: the model's, or its exact q8_0 packing (generate.c). */
const kg_linear *kg_decoder_head(const kg_decoder *d);

#ifdef __cplusplus
}
#endif
#endif
