/* arch.h — what model.c shares with the architecture files bert.c and mistral.c (not a public
 * header): the loader that reads a checkpoint's tensors into a model's parameters, checking
 * each shape against the config, and each family's load and forward functions.
 */
#ifndef KG_MODELS_ARCH_H
#define KG_MODELS_ARCH_H

#include "models/kg_models.h"

/* A model being loaded from an opened checkpoint (or, w NULL, made of random values). */
typedef struct kg_loader {
    kg_model *m;
    kg_weights *w;
    const char *config_path; /* where the expected shapes came from, for errors */
    const char *prefix;      /* "distilbert.", "bert.", "model." or "" (a base-model file) */
    int cap;                 /* room in m->params */
    uint64_t seed;           /* w NULL (kg_model_random): parameters drawn from this seed */
} kg_loader;

/* The prefix of the base model's tensors in this checkpoint: base when probe (a tensor name
 * without the prefix) exists under it, else "". */
const char *kg__base_prefix(const kg_weights *w, const char *base, const char *probe);

/* Load the tensor named by fmt as an f32 parameter of shape (d0) when d1 is 0, else (d0, d1);
 * keep it and add it to the model's parameter list. A missing tensor or a shape other than the
 * config's is an error naming the file and the tensor; NULL then. */
kg_tensor *kg__param(kg_loader *ld, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, but an absent tensor gives NULL without an error (optional parts: BERT's pooler). */
kg_tensor *kg__param_optional(kg_loader *ld, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A dense linear layer "<name>.weight" (out, in) and, when bias, "<name>.bias" (out). */
kg_linear kg__linear(kg_loader *ld, const char *name, int64_t out, int64_t in, bool bias);

/* Free the model's adapters and trainable list (attach.c; kg_model_free calls it). */
void kg__adapters_free(kg_model *m);

/* The model's training mode. Forward functions take a const model; its mode is the one part
 * they change (each dropout call advances its count of drawn masks). */
static inline kg_mode *kg__mode(const kg_model *m)
{
    return (kg_mode *)&m->mode;
}

/* Blocks run one after another. With no tape recording (evaluation, generation) nothing reads
 * a block's intermediates once it is done, so each block runs in a scope of its own that keeps
 * only its output: a forward pass holds one block's activations, not all of them (a 4096-token
 * evaluation batch of SmolLM2 held 12 GB). While the tape records, everything stays.
 *   kg__blocks b = kg__blocks_begin(ctx);
 *   for each block: kg__block_begin(&b); x = block(x); x = kg__block_end(&b, x);
 *   return kg__blocks_end(&b, x);   (x again, owned by the caller's scope) */
typedef struct kg__blocks {
    kg_ctx *ctx;
    bool scoped;
    kg_scope scope;
    kg_tensor *held; /* the last block's output, kept past its scope */
} kg__blocks;
kg__blocks kg__blocks_begin(kg_ctx *ctx);
void kg__block_begin(kg__blocks *b);
kg_tensor *kg__block_end(kg__blocks *b, kg_tensor *x);
kg_tensor *kg__blocks_end(kg__blocks *b, kg_tensor *x);

/* Per family: load the parameters into ld->m; the last hidden states of ids (N, T) with keep
 * (N, S) or NULL (an encoder's with first_only: position 0's alone, (N, 1, C), its last layer
 * computed for that position); the head's scores (N, labels) from hidden states. */
bool kg__bert_load(kg_loader *ld);
kg_tensor *kg__bert_hidden(const kg_model *m, kg_tensor *ids, kg_tensor *keep,
                           kg_tensor *types, bool first_only);
kg_tensor *kg__bert_head(const kg_model *m, kg_tensor *hidden);

bool kg__decoder_load(kg_loader *ld);
/* shared: ids (N) laid out as it says (kg_model_hidden_prefixed; keep and cache NULL). */
kg_tensor *kg__decoder_hidden(const kg_model *m, kg_tensor *ids, kg_tensor *keep,
                              kg_kv_cache *cache, const kg_prefix_layout *shared);

#endif
