/* gguf.c — llama.cpp's GGUF v3 (REFERENCE §6): the header, metadata of every value type, tensor
 * infos (dims innermost first, turned to PyTorch order) and the aligned data section, read into
 * the weights table under HF Llama names with the Q/K row permutation noted for the loader;
 * and the metadata getters of kg_formats.h.
 */
#include "models/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64,
       T_F64, T_COUNT };

/* Bytes of a scalar value; 0 for strings and arrays. */
static const uint8_t type_sizes[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct gguf_kv {
    char *key;
    uint32_t type;         /* T_* */
    uint32_t elem;         /* arrays: the element type */
    uint64_t count;        /* arrays: the element count */
    const uint8_t *value;  /* the value, or an array's first element, in the mapping */
    char *str;             /* strings: a NUL-terminated copy */
    uint64_t *offsets;     /* string arrays: each element's offset from value */
    const uint8_t *raw;    /* the value as the file encodes it (after the type), for copying */
    size_t raw_len;
} gguf_kv;

struct kg_gguf {
    gguf_kv *kv;
    int n_kv;
    kg_name_ref *by_key;
};

void kg__gguf_free(kg_gguf *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        free(g->kv[i].offsets);
    }
    free(g->kv);
    free(g->by_key);
    free(g);
}

/* ---- Reading: a cursor over the mapped file ------------------------------------------------- */

typedef struct reader {
    kg_weights *w;
    const char *path;
    int file; /* its index in w->files */
    const uint8_t *base;
    size_t pos, size;
} reader;

static bool nomem(reader *r)
{
    return kg_set_error(r->w->ctx, KG_ERR_NOMEM, "kg_weights_open: %s: out of host memory",
                        r->path);
}

/* n bytes at the cursor, which moves past them; NULL (error set) when the file ends first.
 * what names what is being read, for the message. */
static const uint8_t *take(reader *r, uint64_t n, const char *what)
{
    if (n > r->size - r->pos) {
        kg_set_error(r->w->ctx, KG_ERR_RANGE, "kg_weights_open: %s: %s: truncated (%llu bytes "
                     "needed at offset %zu; the file has %zu)", r->path, what,
                     (unsigned long long)n, r->pos, r->size);
        return NULL;
    }
    const uint8_t *p = r->base + r->pos;
    r->pos += (size_t)n;
    return p;
}

static bool read_u32(reader *r, uint32_t *v, const char *what)
{
    const uint8_t *p = take(r, 4, what);
    return p && (memcpy(v, p, 4), true);
}

static bool read_u64(reader *r, uint64_t *v, const char *what)
{
    const uint8_t *p = take(r, 8, what);
    return p && (memcpy(v, p, 8), true);
}

/* A string: u64 length, then its bytes. */
static const uint8_t *read_str(reader *r, uint64_t *len, const char *what)
{
    return read_u64(r, len, what) ? take(r, *len, what) : NULL;
}

/* At most (bytes left) / min_size items of at least min_size bytes each can follow. */
static bool count_fits(reader *r, uint64_t count, uint64_t min_size, const char *what)
{
    if (count <= (r->size - r->pos) / min_size)
        return true;
    return kg_set_error(r->w->ctx, KG_ERR_RANGE, "kg_weights_open: %s: %s is %llu, but %zu bytes "
                        "are left and each takes at least %llu", r->path, what,
                        (unsigned long long)count, r->size - r->pos,
                        (unsigned long long)min_size);
}

static char *copy_str(const uint8_t *s, uint64_t len)
{
    char *c = malloc((size_t)len + 1);
    if (c) {
        memcpy(c, s, (size_t)len);
        c[len] = 0;
    }
    return c;
}

/* ---- Metadata ------------------------------------------------------------------------------- */

#define MAX_ARRAY_DEPTH 8

/* An array's elements, skipped (nested arrays are read past but not kept). */
static bool skip_array(reader *r, int depth, const char *what)
{
    uint32_t elem;
    uint64_t count, len;
    if (!read_u32(r, &elem, what) || !read_u64(r, &count, what))
        return false;
    if (elem >= T_COUNT)
        return kg_set_error(r->w->ctx, KG_ERR_ARG, "kg_weights_open: %s: %s: array element type "
                            "%u; expected 0 to 12", r->path, what, elem);
    if (elem == T_ARRAY && depth >= MAX_ARRAY_DEPTH)
        return kg_set_error(r->w->ctx, KG_ERR_ARG, "kg_weights_open: %s: %s: arrays nested more "
                            "than %d deep", r->path, what, MAX_ARRAY_DEPTH);
    if (type_sizes[elem])
        return count_fits(r, count, type_sizes[elem], what) &&
               take(r, count * type_sizes[elem], what);
    if (!count_fits(r, count, elem == T_STRING ? 8 : 12, what))
        return false;
    for (uint64_t i = 0; i < count; i++)
        if (elem == T_STRING ? !read_str(r, &len, what) : !skip_array(r, depth + 1, what))
            return false;
    return true;
}

static bool read_value(reader *r, gguf_kv *kv, const char *what)
{
    if (kv->type >= T_COUNT)
        return kg_set_error(r->w->ctx, KG_ERR_ARG, "kg_weights_open: %s: %s: value type %u; "
                            "expected 0 to 12", r->path, what, kv->type);
    if (type_sizes[kv->type])
        return (kv->value = take(r, type_sizes[kv->type], what)) != NULL;
    uint64_t len;
    if (kv->type == T_STRING) {
        if (!(kv->value = read_str(r, &len, what)))
            return false;
        return (kv->str = copy_str(kv->value, len)) || nomem(r);
    }
    size_t start = r->pos;
    if (!skip_array(r, 1, what))
        return false;
    memcpy(&kv->elem, r->base + start, 4);
    memcpy(&kv->count, r->base + start + 4, 8);
    kv->value = r->base + start + 12;
    if (kv->elem != T_STRING)
        return true;
    /* Strings: note where each begins, for element access in constant time. */
    if (!(kv->offsets = malloc((size_t)kv->count * sizeof *kv->offsets + 1)))
        return nomem(r);
    for (uint64_t i = 0, off = 0; i < kv->count; i++) {
        kv->offsets[i] = off;
        memcpy(&len, kv->value + off, 8);
        off += 8 + len;
    }
    return true;
}

static bool read_metadata(reader *r, kg_gguf *g, uint64_t count)
{
    if (!count_fits(r, count, 13, "the metadata count")) /* key length, type, one byte */
        return false;
    if (!(g->kv = calloc((size_t)count + 1, sizeof *g->kv)))
        return nomem(r);
    char what[300];
    for (uint64_t i = 0; i < count; i++) {
        gguf_kv *kv = &g->kv[g->n_kv++];
        uint64_t len;
        snprintf(what, sizeof what, "metadata entry %llu", (unsigned long long)i);
        const uint8_t *key = read_str(r, &len, what);
        if (!key)
            return false;
        if (!(kv->key = copy_str(key, len)))
            return nomem(r);
        snprintf(what, sizeof what, "key \"%.200s\"", kv->key);
        if (!read_u32(r, &kv->type, what))
            return false;
        size_t start = r->pos;
        if (!read_value(r, kv, what))
            return false;
        kv->raw = r->base + start;
        kv->raw_len = r->pos - start;
    }
    if (!(g->by_key = malloc((size_t)g->n_kv * sizeof *g->by_key + 1)))
        return nomem(r);
    for (int i = 0; i < g->n_kv; i++)
        g->by_key[i] = (kg_name_ref){g->kv[i].key, i};
    int dup = kg__names_sort(g->by_key, g->n_kv);
    if (dup >= 0)
        return kg_set_error(r->w->ctx, KG_ERR_ARG, "kg_weights_open: %s: key \"%.200s\" appears "
                            "twice; expected unique keys", r->path, g->by_key[dup].name);
    return true;
}

static const gguf_kv *find_kv(const kg_weights *w, const char *key)
{
    if (!w || !w->gguf || !key)
        return NULL;
    int i = kg__names_find(w->gguf->by_key, w->gguf->n_kv, key);
    return i < 0 ? NULL : &w->gguf->kv[i];
}

/* A scalar of a numeric type (or bool) as an integer (*is_int) and as a double. */
static bool number(uint32_t type, const uint8_t *p, int64_t *i, double *d, bool *is_int)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    if (type >= T_COUNT || !type_sizes[type])
        return false;
    memcpy(&v, p, type_sizes[type]);
    *is_int = true;
    switch (type) {
    case T_U8: *i = v.u8; break;
    case T_I8: *i = v.i8; break;
    case T_U16: *i = v.u16; break;
    case T_I16: *i = v.i16; break;
    case T_U32: *i = v.u32; break;
    case T_I32: *i = v.i32; break;
    case T_BOOL: *i = v.u8 != 0; break;
    case T_I64: *i = v.i64; break;
    case T_U64: /* beyond int64: a number, not an integer */
        *is_int = v.u64 <= INT64_MAX;
        *i = (int64_t)v.u64;
        *d = (double)v.u64;
        return true;
    case T_F32: *is_int = false; *d = v.f32; return true;
    default: *is_int = false; *d = v.f64; return true;
    }
    *d = (double)*i;
    return true;
}

bool kg_weights_meta_int(const kg_weights *w, const char *key, int64_t *out)
{
    const gguf_kv *kv = find_kv(w, key);
    int64_t i;
    double d;
    bool is_int;
    if (!kv || !number(kv->type, kv->value, &i, &d, &is_int) || !is_int)
        return false;
    if (out)
        *out = i;
    return true;
}

bool kg_weights_meta_float(const kg_weights *w, const char *key, double *out)
{
    const gguf_kv *kv = find_kv(w, key);
    int64_t i;
    double d;
    bool is_int;
    if (!kv || kv->type == T_BOOL || !number(kv->type, kv->value, &i, &d, &is_int))
        return false;
    if (out)
        *out = d;
    return true;
}

const char *kg_weights_meta_str(const kg_weights *w, const char *key)
{
    const gguf_kv *kv = find_kv(w, key);
    return kv ? kv->str : NULL;
}

int64_t kg_weights_meta_len(const kg_weights *w, const char *key)
{
    const gguf_kv *kv = find_kv(w, key);
    return kv && kv->type == T_ARRAY ? (int64_t)kv->count : -1;
}

const char *kg_weights_meta_str_at(const kg_weights *w, const char *key, int64_t i, size_t *len)
{
    const gguf_kv *kv = find_kv(w, key);
    if (!kv || kv->type != T_ARRAY || kv->elem != T_STRING || i < 0 || (uint64_t)i >= kv->count)
        return NULL;
    const uint8_t *p = kv->value + kv->offsets[i];
    uint64_t n;
    memcpy(&n, p, 8);
    if (len)
        *len = (size_t)n;
    return (const char *)p + 8;
}

bool kg_weights_meta_num_at(const kg_weights *w, const char *key, int64_t i, double *out)
{
    const gguf_kv *kv = find_kv(w, key);
    int64_t iv;
    double d;
    bool is_int;
    if (!kv || kv->type != T_ARRAY || kv->elem >= T_COUNT || !type_sizes[kv->elem] || i < 0 ||
        (uint64_t)i >= kv->count ||
        !number(kv->elem, kv->value + (uint64_t)i * type_sizes[kv->elem], &iv, &d, &is_int))
        return false;
    if (out)
        *out = d;
    return true;
}

int kg__gguf_kv_count(const kg_weights *w)
{
    return w && w->gguf ? w->gguf->n_kv : 0;
}

bool kg__gguf_kv_at(const kg_weights *w, int i, const char **key, uint32_t *type,
                    const uint8_t **raw, size_t *len)
{
    if (i < 0 || i >= kg__gguf_kv_count(w))
        return false;
    const gguf_kv *kv = &w->gguf->kv[i];
    *key = kv->key;
    *type = kv->type;
    *raw = kv->raw;
    *len = kv->raw_len;
    return true;
}

/* ---- Tensor names --------------------------------------------------------------------------- */

static const char *const global_names[][2] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};
static const char *const block_names[][2] = {
    {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},      {"attn_norm", "input_layernorm"},
    {"ffn_norm", "post_attention_layernorm"}};

/* The HF name of a llama.cpp tensor name (malloc'd): "blk.N.BASE.SUFFIX" or "BASE.SUFFIX" with
 * a known BASE; other names stay as they are. *block_base gets the matched block name. */
static char *hf_name(const char *name, const char **block_base)
{
    *block_base = NULL;
    const char *dot = strrchr(name, '.');
    size_t len = strlen(name), base_len = dot ? (size_t)(dot - name) : 0;
    char *out = malloc(len + 64);
    if (!out || !dot)
        return out ? strcpy(out, name) : NULL;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (strlen(global_names[i][0]) == base_len && !strncmp(name, global_names[i][0], base_len)) {
            snprintf(out, len + 64, "%s%s", global_names[i][1], dot);
            return out;
        }
    size_t n = 4; /* "blk." */
    while (strncmp(name, "blk.", 4) == 0 && name[n] >= '0' && name[n] <= '9')
        n++;
    if (n > 4 && name[n] == '.' && dot > name + n + 1)
        for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++)
            if (strlen(block_names[i][0]) == (size_t)(dot - name) - n - 1 &&
                !strncmp(name + n + 1, block_names[i][0], (size_t)(dot - name) - n - 1)) {
                snprintf(out, len + 64, "model.layers.%.*s.%s%s", (int)(n - 4), name + 4,
                         block_names[i][1], dot);
                *block_base = block_names[i][0];
                return out;
            }
    return strcpy(out, name);
}

char *kg__gguf_name(const char *hf, bool *permuted)
{
    *permuted = false;
    const char *dot = strrchr(hf, '.');
    size_t len = strlen(hf), base_len = dot ? (size_t)(dot - hf) : 0;
    char *out = dot ? malloc(len + 64) : NULL;
    if (!out)
        return NULL;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (strlen(global_names[i][1]) == base_len && !strncmp(hf, global_names[i][1], base_len)) {
            snprintf(out, len + 64, "%s%s", global_names[i][0], dot);
            return out;
        }
    const char *p = "model.layers.";
    size_t n = strlen(p), d = n;
    while (strncmp(hf, p, n) == 0 && hf[d] >= '0' && hf[d] <= '9')
        d++;
    if (d > n && hf[d] == '.')
        for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++)
            if (strlen(block_names[i][1]) == (size_t)(dot - hf) - d - 1 &&
                !strncmp(hf + d + 1, block_names[i][1], (size_t)(dot - hf) - d - 1)) {
                snprintf(out, len + 64, "blk.%.*s.%s%s", (int)(d - n), hf + n, block_names[i][0],
                         dot);
                *permuted = i < 2; /* attn_q, attn_k */
                return out;
            }
    free(out);
    return NULL;
}

/* llama.cpp's converter permutes the dim-0 rows of Llama's Q and K (weights and biases) per
 * head; the loader undoes it. Returns false with the error set when the head counts do not fit
 * the tensor. */
static bool note_permutation(reader *r, kg_wentry *e, const char *name, const char *block_base)
{
    const char *arch = kg_weights_meta_str(r->w, "general.architecture");
    if (!block_base || !arch || strcmp(arch, "llama") != 0 ||
        (strcmp(block_base, "attn_q") != 0 && strcmp(block_base, "attn_k") != 0))
        return true;
    const char *key = strcmp(block_base, "attn_q") == 0 ? "llama.attention.head_count"
                                                        : "llama.attention.head_count_kv";
    int64_t heads;
    if (!kg_weights_meta_int(r->w, key, &heads) &&
        !kg_weights_meta_int(r->w, key = "llama.attention.head_count", &heads))
        return kg_set_error(r->w->ctx, KG_ERR_ARG, "kg_weights_open: %s: tensor \"%.200s\": no "
                            "integer \"%s\" to undo llama.cpp's Q/K row permutation", r->path,
                            name, key);
    int64_t rows = e->ndim ? e->shape[0] : 1, row = e->ndim > 1 ? e->shape[1] : 1;
    for (int i = 2; i < e->ndim; i++)
        row *= e->shape[i];
    if (heads <= 0 || heads > rows || rows % (2 * heads) != 0 || row % e->type->block != 0)
        return kg_set_error(r->w->ctx, KG_ERR_SHAPE, "kg_weights_open: %s: tensor \"%.200s\": %lld "
                            "rows of %lld %s elements; expected rows split into \"%s\" = %lld "
                            "heads of an even size, in whole blocks", r->path, name,
                            (long long)rows, (long long)row, e->type->name, key, (long long)heads);
    e->perm_heads = (int)heads;
    return true;
}

/* ---- Tensor infos --------------------------------------------------------------------------- */

static bool read_tensor_info(reader *r, uint64_t i, uint64_t alignment)
{
    kg_ctx *ctx = r->w->ctx;
    char what[300];
    snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
    uint64_t len, dims[KG_MAX_DIMS], offset;
    uint32_t ndim, type_id;
    const uint8_t *s = read_str(r, &len, what);
    if (!s)
        return false;
    if (memchr(s, 0, (size_t)len))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: %s: the name holds a NUL byte",
                            r->path, what);
    char *name = copy_str(s, len);
    if (!name)
        return nomem(r);
    snprintf(what, sizeof what, "tensor \"%.200s\"", name);
    bool ok = read_u32(r, &ndim, what);
    if (ok && ndim > KG_MAX_DIMS)
        ok = kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: %s has %u dimensions; expected "
                          "at most %d", r->path, what, ndim, KG_MAX_DIMS);
    for (uint32_t d = 0; ok && d < ndim; d++)
        ok = read_u64(r, &dims[d], what);
    ok = ok && read_u32(r, &type_id, what) && read_u64(r, &offset, what);
    const kg_wtype *type = ok ? kg__ggml_type(type_id) : NULL;
    if (ok && !type)
        ok = kg_set_error(ctx, KG_ERR_DTYPE, "kg_weights_open: %s: %s has ggml type %u, which "
                          "ggml does not define", r->path, what, type_id);
    /* GGUF lists dims innermost first (ne[0] is the row); PyTorch order is the reverse. */
    int64_t shape[KG_MAX_DIMS], numel = 1, bytes = 0;
    for (uint32_t d = 0; ok && d < ndim; d++) {
        shape[ndim - 1 - d] = (int64_t)dims[d];
        if (dims[d] > INT64_MAX || __builtin_mul_overflow(numel, (int64_t)dims[d], &numel))
            ok = kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: %s: dimension %u is %llu; "
                              "the element count overflows", r->path, what, d,
                              (unsigned long long)dims[d]);
    }
    if (ok && ((ndim ? dims[0] : 1) % (uint64_t)type->block != 0 ||
               __builtin_mul_overflow(numel / type->block, (int64_t)type->bytes, &bytes)))
        ok = kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: %s: rows of %llu elements; "
                          "expected whole %s blocks of %d", r->path, what,
                          (unsigned long long)(ndim ? dims[0] : 1), type->name, type->block);
    if (ok && offset % alignment != 0)
        ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: %s: data offset %llu; expected "
                          "a multiple of the alignment %llu", r->path, what,
                          (unsigned long long)offset, (unsigned long long)alignment);
    if (ok && offset > UINT64_MAX - (uint64_t)bytes)
        ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: %s: data offset %llu past any "
                          "file", r->path, what, (unsigned long long)offset);
    const char *block_base;
    char *hf = ok ? hf_name(name, &block_base) : NULL;
    kg_wentry *e = hf ? kg__weights_add_entry(r->w) : NULL;
    if (ok && !e)
        ok = hf ? false : nomem(r);
    if (e) {
        *e = (kg_wentry){.name = hf, .type = type, .ndim = (int)ndim, .file = r->file,
                         .begin = offset, .end = offset + (uint64_t)bytes};
        memcpy(e->shape, shape, ndim * sizeof *shape);
        ok = note_permutation(r, e, name, block_base);
    } else
        free(hf);
    free(name);
    return ok;
}

bool kg__gguf_read(kg_weights *w, int f)
{
    const kg_wfile *file = &w->files[f];
    reader r = {.w = w, .path = file->path, .file = f, .base = file->map, .size = file->size};
    if (!(w->gguf = calloc(1, sizeof *w->gguf)))
        return nomem(&r);
    const uint8_t *magic = take(&r, 4, "the magic");
    if (magic && memcmp(magic, "GGUF", 4) != 0)
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: not a GGUF file (the "
                            "magic is not \"GGUF\")", file->path);
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!magic || !read_u32(&r, &version, "the version"))
        return false;
    /* Version 2 differs from 3 only in allowing big-endian files, which say 3. */
    if (version != 2 && version != 3)
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: GGUF version %u; expected "
                            "3 (or 2), little-endian", file->path, version);
    if (!read_u64(&r, &n_tensors, "the tensor count") || !read_u64(&r, &n_kv, "the metadata count") ||
        !read_metadata(&r, w->gguf, n_kv))
        return false;
    int64_t align = 32;
    if (find_kv(w, "general.alignment") &&
        (!kg_weights_meta_int(w, "general.alignment", &align) || align <= 0 ||
         (align & (align - 1)) != 0))
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: key \"general.alignment\": "
                            "expected an integer power of two", file->path);
    /* A tensor info takes at least a name length, n_dims, a type and an offset. */
    if (!count_fits(&r, n_tensors, 24, "the tensor count") ||
        !(n_tensors <= INT32_MAX / 2 ||
          kg_set_error(w->ctx, KG_ERR_RANGE, "kg_weights_open: %s: %llu tensors; expected fewer "
                       "than 2^30", file->path, (unsigned long long)n_tensors)))
        return false;
    int first = w->n_entries;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (!read_tensor_info(&r, i, (uint64_t)align))
            return false;
    /* The data section begins at the next multiple of the alignment. */
    uint64_t start = (r.pos + (uint64_t)align - 1) / (uint64_t)align * (uint64_t)align;
    if (start > file->size)
        start = file->size; /* no data: only empty tensors fit, as the range check will say */
    if (!kg__weights_check_ranges(w, f, file->size - start))
        return false;
    for (int i = first; i < w->n_entries; i++)
        w->entries[i].data = file->map + start + w->entries[i].begin;
    return true;
}
