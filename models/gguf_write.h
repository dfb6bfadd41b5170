/* gguf_write.h — the GGUF v3 writer export.c builds files with (not a public header): metadata
 * entries appended one by one (or copied from another GGUF file as its bytes lie), tensors
 * given as packed bytes, and one atomic write (a temporary file beside the path, renamed).
 */
#ifndef KG_MODELS_GGUF_WRITE_H
#define KG_MODELS_GGUF_WRITE_H

#include "tensor/kg_tensor.h"

#include <stddef.h>
#include <stdint.h>

/* GGUF value types (REFERENCE §6) and the ggml tensor types the writer is given. */
enum { KG_GGUF_U32 = 4, KG_GGUF_I32 = 5, KG_GGUF_F32 = 6, KG_GGUF_BOOL = 7, KG_GGUF_STRING = 8,
       KG_GGUF_ARRAY = 9 };
enum { KG_GGML_F32 = 0, KG_GGML_F16 = 1, KG_GGML_Q8_0 = 8, KG_GGML_BF16 = 30 };

typedef struct kg_gguf_tensor {
    char *name;
    uint32_t type;               /* KG_GGML_* */
    int ndim;
    int64_t shape[KG_MAX_DIMS];  /* outermost first (PyTorch order); written innermost first */
    uint8_t *data;               /* malloc'd, owned */
    size_t bytes;
} kg_gguf_tensor;

/* A file being built. Every call after the first failure does nothing and returns false; the
 * error is in ctx. */
typedef struct kg_gguf_out {
    kg_ctx *ctx;
    uint8_t *kv;                 /* the serialized metadata entries */
    size_t kv_len, kv_cap;
    char **keys;                 /* their keys, for kg__gguf_out_has */
    int n_kv;
    kg_gguf_tensor *tensors;
    int n_tensors, cap_tensors;
} kg_gguf_out;

void kg__gguf_out_init(kg_gguf_out *o, kg_ctx *ctx);
void kg__gguf_out_free(kg_gguf_out *o);
bool kg__gguf_out_has(const kg_gguf_out *o, const char *key);
/* An entry of value type `type` whose value is raw (len bytes, encoded as GGUF encodes it). */
bool kg__gguf_out_raw(kg_gguf_out *o, const char *key, uint32_t type, const void *raw, size_t len);
bool kg__gguf_out_u32(kg_gguf_out *o, const char *key, uint32_t v);
bool kg__gguf_out_f32(kg_gguf_out *o, const char *key, float v);
bool kg__gguf_out_str(kg_gguf_out *o, const char *key, const char *s);
/* Arrays: n strings (lens[i] bytes each), or n i32 / f32 values. */
bool kg__gguf_out_strs(kg_gguf_out *o, const char *key, int64_t n, const char *const *s,
                       const size_t *lens);
bool kg__gguf_out_nums(kg_gguf_out *o, const char *key, uint32_t type, int64_t n,
                       const void *values);
/* A tensor; data (bytes long, malloc'd) is taken over, and freed on failure too. */
bool kg__gguf_out_tensor(kg_gguf_out *o, const char *name, uint32_t type, int ndim,
                         const int64_t *shape, uint8_t *data, size_t bytes);
/* Write the file at path (alignment 32), atomically: path.tmp.XXXXXX, flushed, synced, renamed;
 * on error the temporary file is removed and path is untouched. */
bool kg__gguf_out_write(kg_gguf_out *o, const char *path);

#endif
