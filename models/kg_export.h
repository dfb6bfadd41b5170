/* kg_export.h — taking a model and its adapter to the tools people serve with: the merged model
 * as a Hugging Face directory (transformers) or a llama.cpp GGUF file (llama.cpp, Ollama), the
 * adapter alone as a GGUF LoRA (llama.cpp --lora), and a Kron-LoRA or LoKr adapter rewritten as
 * the exact LoRA it equals (PEFT, vLLM, llama.cpp; docs/kron-lora.md, "Kron-LoRA as an exact
 * LoRA"). README "Exporting" shows the commands.
 *
 * Every file is written under a temporary name and renamed (a directory too: it is built as
 * DIR.tmp.XXXXXX beside DIR and renamed), so an error never leaves a half-written export.
 * Errors go to the context (kg_ctx_status / kg_error), naming the file, the tensor or key and
 * what was expected; functions return false then.
 */
#ifndef KG_EXPORT_H
#define KG_EXPORT_H

#include "models/kg_models.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Merge m's adapter (if any, and not merged yet: kg_model_merge; m stays merged) and write the
 * result as an HF directory dir: safetensors of dtype (f32, f16 or bf16) under the checkpoint's
 * names — one model.safetensors, or model-0000i-of-0000n.safetensors shards of at most
 * shard_bytes each (a larger tensor gets a shard to itself; <= 0: 2 GiB) with
 * model.safetensors.index.json —, config.json, and from an HF source (the directory or file m was
 * loaded from) its tokenizer and generation files, copied. From a GGUF source config.json is made
 * from m's config and no tokenizer file is written (*tokenizer_written false). dir must not exist
 * or be empty. */
bool kg_export_hf(kg_model *m, const char *source, const char *dir, kg_dtype dtype,
                  int64_t shard_bytes, bool *tokenizer_written);

/* Merge as kg_export_hf, then write path as a llama.cpp GGUF (Llama or Mistral; general.architecture
 * "llama", as llama.cpp's converter writes both): llama.cpp's tensor names, Q/K rows in its RoPE
 * order, 2-D weights as dtype (f32, f16, bf16 or q8_0; a weight whose rows are not whole q8_0
 * blocks as f16, as llama.cpp's converter does), norms f32. Metadata: from a GGUF source every
 * entry of the source (vocabulary, chat template, ...) except general.file_type (set for dtype)
 * and general.alignment; from an HF source the llama.* keys from m's config, the token ids, the
 * chat template of tokenizer_config.json and, when tokenizer.json is a byte-level BPE, its
 * vocabulary as tokenizer.ggml.model "gpt2" (*vocab_written false otherwise). A Mistral whose
 * sliding window is shorter than its context is an error: llama.cpp's llama has none. */
bool kg_export_gguf(kg_model *m, const char *source, const char *path, kg_dtype dtype,
                    bool *vocab_written);

/* m's LoRA adapter (unmerged; kind LORA — kg_model_adapter_to_lora turns Kron-LoRA and LoKr into
 * one) as a llama.cpp LoRA GGUF for `--lora`: general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha, blk.N.<name>.weight.lora_a (PEFT's lora_A, (R, in)) and .lora_b ((out, R),
 * Q/K rows in llama.cpp's RoPE order), of dtype f32, f16 or bf16. */
bool kg_export_gguf_lora(const kg_model *m, const char *path, kg_dtype dtype);

/* Replace m's Kron-LoRA or LoKr adapter (unmerged; LoKr with w2 low-rank) by the LoRA it equals
 * exactly: per layer A = U·V (full-pivoting elimination of the small A, k = its numerical rank),
 * lora_B = U ⊗ B1 and lora_A = V ⊗ B2, padded with zero columns / rows to the largest k over the
 * layers (*k_out), so one rank k·R and one lora_alpha = alpha·k serve every layer and PEFT's
 * scale lora_alpha / (k·R) equals alpha / R. m->trainable names the new factors; m's outputs
 * are unchanged within f32 rounding. A LoRA adapter is left as it is (*k_out 1). */
bool kg_model_adapter_to_lora(kg_model *m, int64_t *k_out);

/* kg_peft_save into a new directory dir, built under a temporary name and renamed. */
bool kg_export_peft(const kg_model *m, const char *dir, const char *base_model);

#ifdef __cplusplus
}
#endif
#endif
