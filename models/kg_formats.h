/* kg_formats.h — checkpoint files: safetensors (one file or sharded through
 * model.safetensors.index.json) and llama.cpp's GGUF, read into tensors by their Hugging Face
 * names; and a safetensors writer for adapters and checkpoints.
 *
 * Files are untrusted: every length, offset, dtype and shape is checked before use, and every
 * error goes to the context (kg_ctx_status / kg_error) naming the file, the tensor or key, and
 * what was expected. Statuses: KG_ERR_ARG for a file that cannot be opened or is malformed (bad
 * JSON, bad magic or version, a missing tensor), KG_ERR_RANGE for lengths, offsets and counts
 * that do not fit the file, KG_ERR_SHAPE for shapes (and their byte counts) that do not agree,
 * KG_ERR_DTYPE for unknown or unloadable dtypes, KG_ERR_NOMEM when memory runs out.
 */
#ifndef KG_FORMATS_H
#define KG_FORMATS_H

#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An opened checkpoint: a set of named tensors plus, for GGUF, its metadata. */
typedef struct kg_weights kg_weights;

/* Open path: a .safetensors file, a model.safetensors.index.json (any *.json: a shard index
 * whose weight_map names shard files beside it; each shard is opened once), an HF model
 * directory (its model.safetensors, else its model.safetensors.index.json), or a GGUF file (a
 * .gguf name or the GGUF magic). Files are memory-mapped and every header is checked whole at
 * open; nothing is converted until a tensor is loaded. GGUF tensor names are given as HF Llama
 * names (token_embd.weight -> model.embed_tokens.weight, blk.N.attn_q.weight ->
 * model.layers.N.self_attn.q_proj.weight, ...; names outside that table stay as they are), with
 * llama.cpp's Q/K row permutation undone when general.architecture is "llama" (from
 * llama.attention.head_count and head_count_kv). Returns NULL with the context's error set (or
 * NULL alone when the context is already in error). The caller frees it with kg_weights_close,
 * which unmaps the files; tensors loaded from it stay valid. */
kg_weights *kg_weights_open(kg_ctx *ctx, const char *path);
void kg_weights_close(kg_weights *w);

/* The path it was opened from (owned by w), and whether it is a GGUF file. */
const char *kg_weights_path(const kg_weights *w);
bool kg_weights_is_gguf(const kg_weights *w);

/* Tensors, by index (0..count-1, in file order: header order, shard by shard) or by HF name.
 * Names are owned by w (NULL for an index out of range). */
int kg_weights_count(const kg_weights *w);
const char *kg_weights_name(const kg_weights *w, int i);
/* The named tensor's shape (outermost first, as PyTorch) into ndim and shape (room for
 * KG_MAX_DIMS; either may be NULL); false when absent (no error set). */
bool kg_weights_shape(const kg_weights *w, const char *name, int *ndim, int64_t *shape);

/* Load the named tensor as a new tensor of dtype (f32, f16 or bf16; converted from the file's
 * F32/F16/BF16, or dequantized from GGUF Q8_0/Q4_0/Q4_1; or i32 from I32 alone). Other file
 * dtypes (I64, U8, BOOL, F64, GGUF Q4_K, ...) are a KG_ERR_DTYPE naming the dtype. When shape is
 * not NULL the file's shape must equal it (ndim dims), else an error naming the file, the
 * tensor, both shapes. A missing tensor is an error naming the file and the tensor.
 * Conversion goes chunk by chunk from the mapped file: no full-size host copy is made, and a
 * tensor whose file dtype is dtype is uploaded straight from the mapping. The tensor belongs to
 * the context (made outside any scope it is a parameter; see kg_tensor.h). */
kg_tensor *kg_weights_load(kg_weights *w, const char *name, kg_dtype dtype, int ndim,
                           const int64_t *shape);
/* The kg_dtype whose byte layout the named tensor has in the file (f32, f16, bf16, i32, and
 * GGUF's q8_0, q4_0, q4_1, which kg_weights_load also loads packed, as that dtype);
 * KG_DTYPE_COUNT when it has none or is absent (no error set). */
kg_dtype kg_weights_dtype(const kg_weights *w, const char *name);

/* GGUF metadata by key ("llama.block_count", "tokenizer.ggml.tokens", ...). Each returns false
 * (or NULL / -1) without setting an error when the file is not GGUF, the key is absent, or its
 * value is of another kind; integer getters accept every integer type and bool (a u64 above
 * INT64_MAX is not an int64), the float getter f32/f64 and integers. Strings are owned by w. */
bool kg_weights_meta_int(const kg_weights *w, const char *key, int64_t *out);
bool kg_weights_meta_float(const kg_weights *w, const char *key, double *out);
const char *kg_weights_meta_str(const kg_weights *w, const char *key); /* NUL-terminated */
/* Arrays: the element count (-1 when absent or not an array), then element i as a string
 * (its length in *len; not NUL-terminated, may hold NUL bytes) or as a number. Nested arrays
 * are read past: they have a count, but their elements are neither strings nor numbers. */
int64_t kg_weights_meta_len(const kg_weights *w, const char *key);
const char *kg_weights_meta_str_at(const kg_weights *w, const char *key, int64_t i, size_t *len);
bool kg_weights_meta_num_at(const kg_weights *w, const char *key, int64_t i, double *out);

/* Write tensors to path as one safetensors file, atomically (path.tmp.XXXXXX beside it,
 * flushed and fsync'd, then renamed: a crash never leaves a half-written file at path, and on
 * any error the temporary file is removed and path is untouched). names[i] names tensors[i]
 * (f32, f16, bf16 or i32, any strides, of this context; names unique UTF-8, not
 * "__metadata__"), written in the order given, packed, after a JSON header padded with spaces to
 * a multiple of 8 bytes as the reference writer pads it. meta: NULL or a NULL-terminated list of
 * key, value UTF-8 string pairs for "__metadata__". The file gets mode 0644. Returns false with
 * the context's error set. */
bool kg_safetensors_write(kg_ctx *ctx, const char *path, int n, const char *const *names,
                          kg_tensor *const *tensors, const char *const *meta);
/* A tensor given to the writer as bytes instead of a kg_tensor: "I8" or "U8", one byte per
 * element, numel(shape) bytes at data (int8 / int4 adapter codes, docs/adapter-format.md). */
typedef struct kg_safetensors_bytes {
    const char *dtype;
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    const void *data;
} kg_safetensors_bytes;
/* kg_safetensors_write, where a NULL tensors[i] is written from bytes[i] (bytes may be NULL
 * when every tensor is given). */
bool kg_safetensors_write_bytes(kg_ctx *ctx, const char *path, int n, const char *const *names,
                                kg_tensor *const *tensors, const kg_safetensors_bytes *bytes,
                                const char *const *meta);
/* The bytes of the named tensor in the mapping (valid until kg_weights_close) when the file
 * stores it as safetensors dtype ("I8", "U8", "F32", ...) with shape (ndim dims); else NULL
 * with an error naming the file, the tensor, its dtype and shape and the expected ones. */
const void *kg_weights_bytes(kg_weights *w, const char *name, const char *dtype, int ndim,
                             const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
