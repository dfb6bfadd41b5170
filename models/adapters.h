/* adapters.h — what attach.c shares with peft.c (not a public header): a model's linear layers
 * under their HF module paths, which of them an adapter targets or saves whole, each layer's
 * factor shapes, and the trainable list's names.
 */
#ifndef KG_MODELS_ADAPTERS_H
#define KG_MODELS_ADAPTERS_H

#include "models/arch.h"
#include "models/kg_peft.h"

/* One linear layer of a model. */
typedef struct kg_module {
    char name[160];      /* PEFT's path: "distilbert.transformer.layer.0.ffn.lin2", "classifier" */
    int64_t out, in;     /* d_out, d_in */
    bool bias;
    bool head;           /* outside the blocks (all-linear skips it) */
    const char *save_as; /* its modules_to_save name ("pre_classifier", "pooler", "classifier"),
                          * NULL when it cannot be saved whole */
    kg_linear *lin;      /* the model's layer; NULL when listed from a config alone */
    bool tied;           /* its weight is the token embedding (a tied lm_head) */
    bool target, saved;  /* chosen as an adapter target / as a module to save */
} kg_module;

typedef struct kg_module_list {
    kg_module *mods; /* malloc'd; the caller frees it */
    int n;
    int n_block;     /* mods[0 .. n_block) are the blocks' layers, in order */
} kg_module_list;

/* The layers of the model config c describes (m: NULL, or the model whose layers to point at),
 * blocks first, then the heads. */
bool kg__modules(kg_ctx *ctx, const kg_model_config *c, kg_model *m, kg_module_list *L);
/* cfg's kind, rank, alpha, dropout, kron_a and lokr_factor in range; errors start with where
 * and name the field. */
bool kg__check_fields(kg_ctx *ctx, const char *where, const kg_adapter_config *cfg);
/* The factor shapes cfg gives a (out, in) layer (LoKr: PEFT's factorization and use_w1/use_w2). */
void kg__layer_shape(const kg_adapter_config *cfg, int64_t out, int64_t in, kg_adapter_shape *s);
/* Attach cfg's adapter to L's targets, freeze the rest, and list the trainable tensors (targets'
 * factors, then the saved heads' weights and biases) under PEFT's names. */
bool kg__attach_chosen(kg_model *m, const kg_adapter_config *cfg, kg_module_list *L);

#endif
