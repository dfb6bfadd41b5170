/* kg_peft.h — adapters on a model and their files: choosing a model's target layers by HF
 * module names or all-linear, checking a configuration against a model's config before any
 * weight is loaded, counting trainable parameters, attaching, merging, and saving / loading
 * PEFT adapter directories (adapter_config.json + adapter_model.safetensors) that move between
 * krongrad and Hugging Face PEFT. The format, and krongrad's KRONLORA type: docs/adapter-format.md.
 *
 * Errors go to the context (kg_ctx_status / kg_error), naming the layer and the configuration
 * field, or the file and the tensor or key; functions return false / -1 then.
 */
#ifndef KG_PEFT_H
#define KG_PEFT_H

#include "models/kg_models.h"
#include "nn/kg_adapter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Before loading ------------------------------------------------------------------------ */

/* Whether cfg fits the model that mc describes, from the config alone (call it before
 * kg_model_load): ranks, alpha, dropout, every target name matching some layer, a Kron-LoRA A
 * that divides every targeted layer, modules_to_save naming heads the model has. The first
 * misfit is an error naming the layer ("distilbert.transformer.layer.0.ffn.lin2") and the field
 * ("kron_a"). */
bool kg_adapter_validate(kg_ctx *ctx, const kg_model_config *mc, const kg_adapter_config *cfg);

/* The trainable parameters cfg gives the model mc describes (adapter factors plus
 * modules_to_save; a full fine-tune: every parameter), without allocating any; -1 with the
 * error of kg_adapter_validate. DistilBERT-base multiple choice, Kron-LoRA R 8, A 2 × 4 on all
 * six linear layers per block: 840,481. */
int64_t kg_adapter_count(kg_ctx *ctx, const kg_model_config *mc, const kg_adapter_config *cfg);

/* ---- On a loaded model ---------------------------------------------------------------------- */

/* A fresh head for fine-tuning a base checkpoint, as transformers initializes one (weights
 * N(0, 0.02), biases 0, from seed): multiple choice (labels 1) or sequence classification
 * (num_labels) on DistilBERT (pre_classifier + classifier) or BERT (classifier; the pooler
 * too when the checkpoint has none). The model's cfg.head changes; the tensors join m->params
 * under their HF names. An error when the model already has a head or is a decoder. */
bool kg_model_add_head(kg_model *m, kg_model_head head, int64_t num_labels, uint64_t seed);

/* Attach the adapter cfg describes (validated first; on error the model is unchanged) and make
 * the trainable list: every base parameter stops requiring grad, the adapter factors and the
 * modules_to_save heads' weights and biases require it and are listed in m->trainable under
 * PEFT's names, factors first, layer by layer. For full, every parameter requires grad and is
 * listed under its checkpoint name. One adapter per model: a second attach is a KG_ERR_STATE.
 * cfg is copied into m->adapter (its strings are not kept). The factors belong to the model
 * (kg_model_free frees them). */
bool kg_model_attach(kg_model *m, const kg_adapter_config *cfg);

/* Trainable elements (Σ numel over m->trainable). */
int64_t kg_model_trainable_count(const kg_model *m);

/* Merge every adapter into its base weight (W += s·ΔW; the forward pass then runs the base
 * layers alone) or take it out again (W −= s·ΔW). Exact within f32 rounding. A no-op for full
 * and for a model without an adapter. */
bool kg_model_merge(kg_model *m);
bool kg_model_unmerge(kg_model *m);

/* ---- PEFT directories ----------------------------------------------------------------------- */

/* Write dir/adapter_config.json and dir/adapter_model.safetensors (dir is made if absent), each
 * atomically (a temporary file renamed into place). LoRA is written as PEFT's "LORA"; Kron-LoRA
 * with a square A as "LOKR" with decompose_factor = dA (a w2 of rank R ≥ max(dB)/2, which PEFT
 * would hold whole, is written whole as lokr_w2); other A shapes as krongrad's "KRONLORA";
 * LoKr as "LOKR". modules_to_save are written under their plain names. base_model: the
 * base_model_name_or_path to record (NULL: ""). An unmerged adapter is required; a full
 * fine-tune has no adapter file (KG_ERR_STATE: save the weights with kg_model_save_weights). */
bool kg_peft_save(const kg_model *m, const char *dir, const char *base_model);

/* Load a PEFT directory into m: LORA, LOKR (linear layers; rank_pattern / alpha_pattern, DoRA,
 * bias other than "none" and other PEFT types are errors naming the key) or KRONLORA. Without an
 * adapter, m gets the file's (as kg_model_attach would give it, then the file's values); with
 * one, it must be the file's kind with the same tensors, whose values are replaced in place
 * (the optimizer's references stay valid). Every tensor the configuration implies must be in
 * the file with its shape, and every tensor in the file must belong to it: else an error naming
 * the file and the tensor. A directory kg_peft_save_quantized wrote ("krongrad_quant_bits" 8 or
 * 4) is dequantized into the f32 factors; a wrong dtype, a missing or misshapen scale, a code
 * outside the symmetric range or a packed count that does not fit the layer is an error naming
 * the file and the tensor. */
bool kg_peft_load(kg_model *m, const char *dir);

/* kg_peft_save with every adapter factor stored in `bits` (8 or 4): symmetric per-output-row
 * codes (kg_adapter_quantize_rows) under the factor's key, I8 of its shape (int8) or U8
 * (rows, ceil(cols/2)) two codes a byte, low nibble first (int4, kg_adapter_pack_int4), and its
 * f32 scales under `<key>.qscale` (rows); adapter_config.json gets "krongrad_quant_bits".
 * Kron-LoRA is written as "KRONLORA" whatever A's shape (PEFT cannot read the file). Heads
 * (modules_to_save) stay f32. m is unchanged; kg_peft_load of the directory gives exactly the
 * values kg_model_quantize_adapter gives (docs/adapter-format.md). */
bool kg_peft_save_quantized(const kg_model *m, const char *dir, const char *base_model, int bits);

/* Replace every adapter factor of m in place by its int8 / int4 quantization's values
 * (kg_adapter_quantize_factor); heads trained whole are left f32. */
bool kg_model_quantize_adapter(kg_model *m, int bits);

/* Write every parameter of m (m->params, the checkpoint's names) to one safetensors file,
 * atomically: what a full fine-tune saves. */
bool kg_model_save_weights(const kg_model *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
