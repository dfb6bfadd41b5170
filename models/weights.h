/* weights.h — what the checkpoint readers in models/ share (not a public header): the opened
 * checkpoint (kg_weights), its table of tensor entries, the element types files use, the
 * GGML block dequantizers, and the error helper that names the file.
 */
#ifndef KG_MODELS_WEIGHTS_H
#define KG_MODELS_WEIGHTS_H

#include "models/kg_formats.h"

#include <stddef.h>
#include <stdint.h>

/* Tensor bytes are used as they lie in the mapping: the readers assume a little-endian host. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "krongrad's checkpoint readers assume a little-endian host"
#endif

/* An element type of a file: a safetensors dtype or a GGML type. Plain types have block 1. */
typedef struct kg_wtype {
    const char *name;  /* "F32", "BF16", "I64", "Q8_0", ... */
    int ggml;          /* the GGML type number; -1 for dtypes only safetensors has */
    int block;         /* elements per block */
    int bytes;         /* bytes per block */
    int raw;           /* the kg_dtype with this byte layout, or -1 */
    /* Blocks to f32 (GGML Q8_0, Q4_0, Q4_1); NULL for types that are not dequantized. */
    void (*dequant)(const uint8_t *src, int64_t blocks, float *dst);
} kg_wtype;

const kg_wtype *kg__safetensors_dtype(const char *name); /* NULL when unknown */
const kg_wtype *kg__ggml_type(uint32_t type);            /* NULL when unknown or removed */

/* One tensor of the checkpoint. */
typedef struct kg_wentry {
    char *name;                  /* HF name, malloc'd */
    const kg_wtype *type;
    int ndim;
    int64_t shape[KG_MAX_DIMS];  /* outermost first */
    int file;                    /* index in kg_weights.files */
    uint64_t begin, end;         /* byte range in the file's data section */
    const uint8_t *data;         /* the first byte, in the mapping */
    int perm_heads;              /* > 0: dim-0 rows in llama.cpp's RoPE order for this many heads */
} kg_wentry;

typedef struct kg_wfile {
    char *path;
    const uint8_t *map; /* NULL for an empty file */
    size_t size;
} kg_wfile;

/* A name and the index of what it names; arrays of these, sorted by name, index the tensors and
 * the GGUF keys. */
typedef struct kg_name_ref {
    const char *name;
    int index;
} kg_name_ref;

typedef struct kg_gguf kg_gguf; /* GGUF metadata (gguf.c) */

struct kg_weights {
    kg_ctx *ctx;
    char *path;
    kg_wfile *files;
    int n_files;
    kg_wentry *entries;
    int n_entries, cap_entries;
    kg_name_ref *by_name; /* n_entries, sorted */
    kg_gguf *gguf;        /* NULL for safetensors */
};

/* Map path read-only and append it to w->files; returns its index, or -1 with the error set. */
int kg__weights_map_file(kg_weights *w, const char *path);
/* A zeroed entry appended to w->entries (NULL with the error set when out of memory). */
kg_wentry *kg__weights_add_entry(kg_weights *w);
/* Check that the entries of file f lie in a data section of data_size bytes and do not overlap;
 * on failure the error names the file and the tensor(s). */
bool kg__weights_check_ranges(kg_weights *w, int f, uint64_t data_size);
/* The number of elements of a shape, or -1 when it overflows int64. */
int64_t kg__shape_numel(int ndim, const int64_t *shape);

/* Index w's entries by name (once; later calls do nothing); a duplicate name is an error naming
 * the files that hold it. */
bool kg__weights_index(kg_weights *w);

/* Sort refs by name. Returns -1, or the position i of a duplicate (refs[i-1] and refs[i] carry
 * the same name). */
int kg__names_sort(kg_name_ref *refs, int n);
/* The index carried by name's ref, or -1. */
int kg__names_find(const kg_name_ref *refs, int n, const char *name);

/* Readers: fill w's entries (and gguf) from mapped file f, or from the shard index at path and
 * the shards it names; false with the error set. */
bool kg__safetensors_read(kg_weights *w, int f);
bool kg__safetensors_read_index(kg_weights *w, const char *path);
bool kg__gguf_read(kg_weights *w, int f);
void kg__gguf_free(kg_gguf *g);
/* GGUF metadata entries in file order, for copying them into another file: the key, the value
 * type and the value's bytes as the file encodes them (after the type). False past the end. */
int kg__gguf_kv_count(const kg_weights *w);
bool kg__gguf_kv_at(const kg_weights *w, int i, const char **key, uint32_t *type,
                    const uint8_t **raw, size_t *len);
/* The llama.cpp name of an HF Llama tensor name (malloc'd; the inverse of the reader's table),
 * with *permuted telling whether llama.cpp stores its dim-0 rows in RoPE order (Q and K); NULL
 * when the name is not in the table (or out of memory). */
char *kg__gguf_name(const char *hf, bool *permuted);
/* The dim-0 row where llama.cpp's converter stores HF row r of a Q or K tensor of `rows` rows
 * split into `heads` heads (RoPE's adjacent-pair order, REFERENCE §6). */
int64_t kg__rope_row(int64_t r, int64_t rows, int heads);

/* Elements loaded per upload: bounds the host buffer and the temporary device memory a
 * conversion needs. Tests lower it to run the chunked path on tiny tensors. */
extern int64_t kg__load_chunk_elems;

#endif
