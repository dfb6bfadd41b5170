/* gguf_write.c — a GGUF v3 writer (REFERENCE §6, the inverse of gguf.c's reader): metadata
 * entries serialized as they are added, tensor infos with dims innermost first and offsets into
 * a data section aligned to 32 bytes, written to a temporary file and renamed into place.
 */
#include "models/gguf_write.h"
#include "tensor/file_atomic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN = 32 };

void kg__gguf_out_init(kg_gguf_out *o, kg_ctx *ctx)
{
    *o = (kg_gguf_out){.ctx = ctx};
}

void kg__gguf_out_free(kg_gguf_out *o)
{
    for (int i = 0; i < o->n_kv; i++)
        free(o->keys[i]);
    for (int i = 0; i < o->n_tensors; i++) {
        free(o->tensors[i].name);
        free(o->tensors[i].data);
    }
    free(o->keys);
    free(o->kv);
    free(o->tensors);
    *o = (kg_gguf_out){.ctx = o->ctx};
}

static bool nomem(kg_gguf_out *o)
{
    return kg_set_error(o->ctx, KG_ERR_NOMEM, "GGUF writer: out of host memory");
}

/* Append n bytes to the metadata buffer. */
static bool put(kg_gguf_out *o, const void *p, size_t n)
{
    if (o->kv_len + n > o->kv_cap) {
        size_t cap = o->kv_cap ? o->kv_cap : 4096;
        while (cap < o->kv_len + n)
            cap *= 2;
        uint8_t *kv = realloc(o->kv, cap);
        if (!kv)
            return nomem(o);
        o->kv = kv;
        o->kv_cap = cap;
    }
    memcpy(o->kv + o->kv_len, p, n);
    o->kv_len += n;
    return true;
}

static bool put_u32(kg_gguf_out *o, uint32_t v) { return put(o, &v, 4); }
static bool put_u64(kg_gguf_out *o, uint64_t v) { return put(o, &v, 8); }
static bool put_str(kg_gguf_out *o, const char *s, size_t n)
{
    return put_u64(o, n) && put(o, s, n);
}

bool kg__gguf_out_has(const kg_gguf_out *o, const char *key)
{
    for (int i = 0; i < o->n_kv; i++)
        if (strcmp(o->keys[i], key) == 0)
            return true;
    return false;
}

/* The key and the value type of a new entry; a key given twice is an error. */
static bool begin_kv(kg_gguf_out *o, const char *key, uint32_t type)
{
    if (kg_ctx_status(o->ctx))
        return false;
    if (kg__gguf_out_has(o, key))
        return kg_set_error(o->ctx, KG_ERR_ARG, "GGUF writer: key \"%s\" given twice", key);
    char **keys = realloc(o->keys, sizeof *keys * (size_t)(o->n_kv + 1));
    if (!keys)
        return nomem(o);
    o->keys = keys;
    if (!(o->keys[o->n_kv] = strdup(key)))
        return nomem(o);
    o->n_kv++;
    return put_str(o, key, strlen(key)) && put_u32(o, type);
}

bool kg__gguf_out_raw(kg_gguf_out *o, const char *key, uint32_t type, const void *raw, size_t len)
{
    return begin_kv(o, key, type) && put(o, raw, len);
}

bool kg__gguf_out_u32(kg_gguf_out *o, const char *key, uint32_t v)
{
    return kg__gguf_out_raw(o, key, KG_GGUF_U32, &v, 4);
}

bool kg__gguf_out_f32(kg_gguf_out *o, const char *key, float v)
{
    return kg__gguf_out_raw(o, key, KG_GGUF_F32, &v, 4);
}

bool kg__gguf_out_str(kg_gguf_out *o, const char *key, const char *s)
{
    return begin_kv(o, key, KG_GGUF_STRING) && put_str(o, s, strlen(s));
}

bool kg__gguf_out_strs(kg_gguf_out *o, const char *key, int64_t n, const char *const *s,
                       const size_t *lens)
{
    bool ok = begin_kv(o, key, KG_GGUF_ARRAY) && put_u32(o, KG_GGUF_STRING) &&
              put_u64(o, (uint64_t)n);
    for (int64_t i = 0; ok && i < n; i++)
        ok = put_str(o, s[i], lens[i]);
    return ok;
}

bool kg__gguf_out_nums(kg_gguf_out *o, const char *key, uint32_t type, int64_t n,
                       const void *values)
{
    return begin_kv(o, key, KG_GGUF_ARRAY) && put_u32(o, type) && put_u64(o, (uint64_t)n) &&
           put(o, values, (size_t)n * 4);
}

bool kg__gguf_out_tensor(kg_gguf_out *o, const char *name, uint32_t type, int ndim,
                         const int64_t *shape, uint8_t *data, size_t bytes)
{
    if (kg_ctx_status(o->ctx)) {
        free(data);
        return false;
    }
    if (o->n_tensors == o->cap_tensors) {
        int cap = o->cap_tensors ? 2 * o->cap_tensors : 64;
        kg_gguf_tensor *t = realloc(o->tensors, sizeof *t * (size_t)cap);
        if (!t) {
            free(data);
            return nomem(o);
        }
        o->tensors = t;
        o->cap_tensors = cap;
    }
    kg_gguf_tensor *t = &o->tensors[o->n_tensors];
    *t = (kg_gguf_tensor){.name = strdup(name), .type = type, .ndim = ndim, .data = data,
                          .bytes = bytes};
    if (!t->name) {
        free(data);
        return nomem(o);
    }
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    o->n_tensors++;
    return true;
}

static uint64_t aligned(uint64_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static bool write_all(FILE *fp, const void *p, size_t n)
{
    return fwrite(p, 1, n, fp) == n;
}

/* Header, metadata, tensor infos, padding, then each tensor at its aligned offset. */
static bool write_contents(const kg_gguf_out *o, FILE *fp)
{
    uint32_t version = 3;
    uint64_t n_tensors = (uint64_t)o->n_tensors, n_kv = (uint64_t)o->n_kv, pos = 24 + o->kv_len;
    static const uint8_t zeros[ALIGN];
    bool ok = write_all(fp, "GGUF", 4) && write_all(fp, &version, 4) &&
              write_all(fp, &n_tensors, 8) && write_all(fp, &n_kv, 8) &&
              write_all(fp, o->kv, o->kv_len);
    uint64_t offset = 0;
    for (int i = 0; ok && i < o->n_tensors; i++) {
        const kg_gguf_tensor *t = &o->tensors[i];
        uint64_t len = strlen(t->name);
        uint32_t ndim = (uint32_t)t->ndim;
        ok = write_all(fp, &len, 8) && write_all(fp, t->name, len) && write_all(fp, &ndim, 4);
        for (int d = t->ndim - 1; ok && d >= 0; d--) { /* innermost first */
            uint64_t dim = (uint64_t)t->shape[d];
            ok = write_all(fp, &dim, 8);
        }
        ok = ok && write_all(fp, &t->type, 4) && write_all(fp, &offset, 8);
        pos += 8 + len + 4 + 8 * (uint64_t)t->ndim + 4 + 8;
        offset = aligned(offset + t->bytes);
    }
    ok = ok && write_all(fp, zeros, aligned(pos) - pos);
    for (int i = 0; ok && i < o->n_tensors; i++) {
        const kg_gguf_tensor *t = &o->tensors[i];
        ok = write_all(fp, t->data, t->bytes) && write_all(fp, zeros, aligned(t->bytes) - t->bytes);
    }
    return ok;
}

bool kg__gguf_out_write(kg_gguf_out *o, const char *path)
{
    if (kg_ctx_status(o->ctx))
        return false;
    char *tmp;
    FILE *fp = kg__atomic_open(o->ctx, path, &tmp);
    return fp && kg__atomic_close(o->ctx, fp, tmp, path, write_contents(o, fp));
}
