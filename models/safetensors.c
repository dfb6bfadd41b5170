/* safetensors.c — the safetensors format (REFERENCE §5.3): one file's JSON header checked entry
 * by entry into the weights table; sharded checkpoints through model.safetensors.index.json;
 * and the writer, which replaces its file atomically.
 */
#include "models/weights.h"
#include "tensor/file_atomic.h"

#include <jansson.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_HEADER 100000000u /* bytes; the reference implementation's limit */

/* ---- Reading ------------------------------------------------------------------------------- */

/* A JSON integer >= 0. */
static bool json_count(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static bool read_metadata(kg_weights *w, const char *path, json_t *meta)
{
    if (!json_is_object(meta))
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: \"__metadata__\" is not "
                            "an object; expected a map of strings to strings", path);
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: \"__metadata__\" key "
                                "\"%.200s\" is not a string; expected a map of strings to "
                                "strings", path, key);
    }
    return true;
}

/* One header entry {"dtype", "shape", "data_offsets"}, checked and added to the table. */
static bool read_entry(kg_weights *w, int f, const char *name, const json_t *info)
{
    const char *path = w->files[f].path;
    kg_ctx *ctx = w->ctx;
    const json_t *dtype = json_object_get(info, "dtype"), *shape = json_object_get(info, "shape");
    const json_t *offsets = json_object_get(info, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: tensor \"%.200s\": expected an "
                            "object with \"dtype\" (a string), \"shape\" and \"data_offsets\" "
                            "(arrays)", path, name);
    const kg_wtype *type = kg__safetensors_dtype(json_string_value(dtype));
    if (!type)
        return kg_set_error(ctx, KG_ERR_DTYPE, "kg_weights_open: %s: tensor \"%.200s\": unknown "
                            "dtype \"%.40s\"; expected F64, F32, F16, BF16, I64, I32, I16, I8, "
                            "U64, U32, U16, U8, BOOL, F8_E4M3 or F8_E5M2", path, name,
                            json_string_value(dtype));
    size_t ndim = json_array_size(shape);
    if (ndim > KG_MAX_DIMS)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: tensor \"%.200s\" has %zu "
                            "dimensions; expected at most %d", path, name, ndim, KG_MAX_DIMS);
    int64_t dims[KG_MAX_DIMS], begin, end;
    for (size_t i = 0; i < ndim; i++)
        if (!json_count(json_array_get(shape, i), &dims[i]))
            return kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: tensor \"%.200s\": "
                                "shape[%zu] is not an integer >= 0", path, name, i);
    if (json_array_size(offsets) != 2 || !json_count(json_array_get(offsets, 0), &begin) ||
        !json_count(json_array_get(offsets, 1), &end))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: tensor \"%.200s\": "
                            "data_offsets is not [begin, end] with integers >= 0", path, name);
    if (begin > end)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: tensor \"%.200s\": "
                            "data_offsets [%lld, %lld] end before they begin", path, name,
                            (long long)begin, (long long)end);
    int64_t numel = kg__shape_numel((int)ndim, dims), bytes;
    if (numel < 0 || __builtin_mul_overflow(numel, (int64_t)type->bytes, &bytes) ||
        bytes != end - begin)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_open: %s: tensor \"%.200s\": %zu-dim "
                            "%s shape of %lld elements; expected %lld bytes / %d = the "
                            "data_offsets [%lld, %lld]", path, name, ndim, type->name,
                            (long long)numel, (long long)(end - begin), type->bytes,
                            (long long)begin, (long long)end);
    char *copy = strdup(name);
    kg_wentry *e = copy ? kg__weights_add_entry(w) : NULL;
    if (!e) {
        free(copy);
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
    }
    *e = (kg_wentry){.name = copy, .type = type, .ndim = (int)ndim, .file = f,
                     .begin = (uint64_t)begin, .end = (uint64_t)end};
    memcpy(e->shape, dims, ndim * sizeof *dims);
    return true;
}

bool kg__safetensors_read(kg_weights *w, int f)
{
    const kg_wfile *file = &w->files[f];
    kg_ctx *ctx = w->ctx;
    if (file->size < 8)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: %zu bytes; expected a "
                            "safetensors file (an 8-byte header length, the header, the data)",
                            file->path, file->size);
    uint64_t n;
    memcpy(&n, file->map, 8); /* little-endian u64 */
    if (n > MAX_HEADER)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: header length %llu; expected "
                            "at most %u (100 MB)", file->path, (unsigned long long)n, MAX_HEADER);
    if (n > file->size - 8)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_weights_open: %s: header length %llu runs "
                            "past the end of the file (%zu bytes)", file->path,
                            (unsigned long long)n, file->size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)file->map + 8, (size_t)n, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (!root)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: header is not valid JSON: %s "
                            "(line %d, column %d)", file->path, jerr.text, jerr.line,
                            jerr.column);
    bool ok = json_is_object(root) ||
              kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: header is not a JSON object",
                           file->path);
    const char *key;
    json_t *value;
    int first = w->n_entries;
    json_object_foreach(root, key, value) {
        if (!ok)
            break;
        ok = strcmp(key, "__metadata__") == 0 ? read_metadata(w, file->path, value)
                                              : read_entry(w, f, key, value);
    }
    json_decref(root);
    uint64_t data_size = file->size - 8 - n;
    if (!ok || !kg__weights_check_ranges(w, f, data_size))
        return false;
    for (int i = first; i < w->n_entries; i++)
        w->entries[i].data = file->map + 8 + n + w->entries[i].begin;
    return true;
}

/* A shard name from weight_map: a plain file name in the index's directory. */
static bool plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Open each shard once, in the order weight_map first names it; return its file index. */
static int open_shard(kg_weights *w, const char *index, const char *dir, const char **shards,
                      const char *name, const char *shard)
{
    for (int i = 0; i < w->n_files; i++)
        if (strcmp(shards[i], shard) == 0)
            return i;
    size_t len = strlen(dir) + strlen(shard) + 2;
    char *path = malloc(len);
    if (!path)
        return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory"), -1;
    snprintf(path, len, "%s/%s", dir, shard);
    struct stat st;
    int f = -1;
    if (stat(path, &st) == 0)
        f = kg__weights_map_file(w, path);
    else
        kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: weight_map[\"%.200s\"] names "
                     "shard %s: %s", index, name, path, strerror(errno));
    free(path);
    if (f < 0)
        return -1;
    shards[f] = shard;
    return kg__safetensors_read(w, f) ? f : -1;
}

bool kg__safetensors_read_index(kg_weights *w, const char *path)
{
    kg_ctx *ctx = w->ctx;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: not a valid JSON index: %s "
                            "(line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
    json_t *map = json_object_get(root, "weight_map");
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    const char **shards = calloc(json_object_size(map) + 1, sizeof *shards);
    int *file_of = calloc(json_object_size(map) + 1, sizeof *file_of);
    bool ok = json_is_object(map) ||
              kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: \"weight_map\" is missing or "
                           "not an object; expected {tensor name: shard file name}", path);
    if (ok && (!dir || !shards || !file_of))
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
    const char *name;
    json_t *shard;
    size_t i = 0;
    json_object_foreach(map, name, shard) {
        if (!ok)
            break;
        if (!json_is_string(shard) || !plain_file_name(json_string_value(shard)))
            ok = kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: weight_map[\"%.200s\"]: "
                              "expected the name of a file beside the index", path, name);
        else
            ok = (file_of[i++] = open_shard(w, path, dir, shards, name,
                                            json_string_value(shard))) >= 0;
    }
    ok = ok && kg__weights_index(w);
    /* Every tensor the index names is in the shard it names. */
    i = 0;
    json_object_foreach(map, name, shard) {
        if (!ok)
            break;
        int e = kg__names_find(w->by_name, w->n_entries, name), f = file_of[i++];
        if (e < 0 || w->entries[e].file != f)
            ok = kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: %s: weight_map puts tensor "
                              "\"%.200s\" in %s, which has no such tensor", path, name,
                              w->files[f].path);
    }
    free(file_of);
    free(shards);
    free(dir);
    json_decref(root);
    return ok;
}

/* "[2, 3]" */
static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

const void *kg_weights_bytes(kg_weights *w, const char *name, const char *dtype, int ndim,
                             const int64_t *shape)
{
    if (!w || kg_ctx_status(w->ctx) || !name || !dtype || ndim < 0 || ndim > KG_MAX_DIMS)
        return NULL;
    int i = kg__names_find(w->by_name, w->n_entries, name);
    if (i < 0) {
        kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_bytes: %s: no tensor \"%.200s\"", w->path,
                     name);
        return NULL;
    }
    const kg_wentry *e = &w->entries[i];
    char want[96], have[96];
    shape_text(want, sizeof want, ndim, shape);
    shape_text(have, sizeof have, e->ndim, e->shape);
    if (strcmp(e->type->name, dtype) != 0 || e->ndim != ndim ||
        memcmp(e->shape, shape, (size_t)ndim * sizeof *shape) != 0) {
        kg_set_error(w->ctx, strcmp(e->type->name, dtype) ? KG_ERR_DTYPE : KG_ERR_SHAPE,
                     "kg_weights_bytes: %s: tensor \"%.200s\" is %s %s; expected %s %s",
                     w->files[e->file].path, name, e->type->name, have, dtype, want);
        return NULL;
    }
    return e->data;
}

/* ---- Writing ------------------------------------------------------------------------------- */

static const char *const dtype_names[KG_DTYPE_COUNT] = {
    [KG_DTYPE_F32] = "F32", [KG_DTYPE_F16] = "F16", [KG_DTYPE_BF16] = "BF16",
    [KG_DTYPE_I32] = "I32"};

/* What is wrong with a tensor given as bytes, or NULL. */
static const char *bytes_problem(const kg_safetensors_bytes *b)
{
    if (!b->dtype || (strcmp(b->dtype, "I8") != 0 && strcmp(b->dtype, "U8") != 0))
        return "is given as bytes of a dtype other than I8 or U8";
    if (b->ndim < 0 || b->ndim > KG_MAX_DIMS || !b->data)
        return "is given as bytes without data or with an ndim outside 0..KG_MAX_DIMS";
    for (int d = 0; d < b->ndim; d++)
        if (b->shape[d] < 0)
            return "is given as bytes with a negative dimension";
    return NULL;
}

/* The header object: "__metadata__" first when meta is given, then the tensors in order, with
 * their data packed one after another. NULL with the error set. */
static json_t *build_header(kg_ctx *ctx, const char *path, int n, const char *const *names,
                            kg_tensor *const *tensors, const kg_safetensors_bytes *raw,
                            const char *const *meta)
{
    json_t *root = json_object();
    bool ok = root != NULL;
    if (meta && ok) {
        json_t *m = json_object();
        ok = m && json_object_set_new(root, "__metadata__", m) == 0;
        for (int i = 0; ok && meta[i]; i += 2) {
            if (!meta[i + 1]) {
                json_decref(root);
                kg_set_error(ctx, KG_ERR_ARG, "kg_safetensors_write: %s: metadata key "
                             "\"%.200s\" has no value; expected key, value pairs ending in NULL",
                             path, meta[i]);
                return NULL;
            }
            ok = json_object_set_new(m, meta[i], json_string(meta[i + 1])) == 0;
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < n && ok; i++) {
        const kg_tensor *t = tensors[i];
        const kg_safetensors_bytes *b = !t && raw ? &raw[i] : NULL;
        const char *why = !names[i] ? "has no name"
                          : strcmp(names[i], "__metadata__") == 0 ? "has a reserved name"
                          : json_object_get(root, names[i]) ? "has the name of an earlier tensor"
                          : b ? bytes_problem(b)
                          : !t ? "is NULL"
                          : kg_tensor_ctx(t) != ctx ? "belongs to another context"
                          : !dtype_names[kg_tensor_dtype(t)]
                              ? "is block-quantized (safetensors has no such dtype)"
                              : NULL;
        if (why) {
            json_decref(root);
            kg_set_error(ctx, KG_ERR_ARG, "kg_safetensors_write: %s: tensor %d (\"%.200s\") %s",
                         path, i, names[i] ? names[i] : "", why);
            return NULL;
        }
        json_t *shape = json_array();
        int ndim = b ? b->ndim : kg_tensor_ndim(t);
        uint64_t bytes = b ? 1 : kg_dtype_size(kg_tensor_dtype(t));
        for (int d = 0; shape && d < ndim; d++) {
            int64_t dim = b ? b->shape[d] : kg_tensor_dim(t, d);
            json_array_append_new(shape, json_integer(dim));
            bytes *= (uint64_t)dim;
        }
        json_t *info = json_pack("{s:s, s:o, s:[I, I]}", "dtype",
                                 b ? b->dtype : dtype_names[kg_tensor_dtype(t)],
                                 "shape", shape, "data_offsets", (json_int_t)offset,
                                 (json_int_t)(offset + bytes));
        ok = info && json_object_set_new(root, names[i], info) == 0;
        offset += bytes;
    }
    if (!ok) {
        json_decref(root);
        kg_set_error(ctx, KG_ERR_ARG, "kg_safetensors_write: %s: cannot build the header: a "
                     "name or metadata string that is not UTF-8, or out of host memory", path);
        return NULL;
    }
    return root;
}

/* The 8-byte length, the header padded with spaces to a multiple of 8 (as the reference
 * writer), then each tensor's packed bytes. */
static bool write_contents(kg_ctx *ctx, const char *path, FILE *fp, const char *header, int n,
                           kg_tensor *const *tensors, const kg_safetensors_bytes *raw)
{
    size_t len = strlen(header);
    uint64_t padded = (len + 7) / 8 * 8;
    bool ok = fwrite(&padded, 8, 1, fp) == 1 && fwrite(header, 1, len, fp) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++) {
        if (!tensors[i]) { /* given as bytes (checked by build_header) */
            size_t bytes = 1;
            for (int d = 0; d < raw[i].ndim; d++)
                bytes *= (size_t)raw[i].shape[d];
            ok = fwrite(raw[i].data, 1, bytes, fp) == bytes;
            continue;
        }
        size_t bytes = (size_t)kg_tensor_numel(tensors[i]) * kg_dtype_size(kg_tensor_dtype(tensors[i]));
        void *buf = malloc(bytes + 1);
        if (!buf)
            return kg_set_error(ctx, KG_ERR_NOMEM, "kg_safetensors_write: %s: out of host memory "
                                "for a %zu-byte tensor", path, bytes);
        if (!kg_tensor_to_host(tensors[i], buf, bytes)) {
            free(buf);
            return false;
        }
        ok = fwrite(buf, 1, bytes, fp) == bytes;
        free(buf);
    }
    return ok || kg_set_error(ctx, KG_ERR_ARG, "kg_safetensors_write: %s: cannot write: %s",
                              path, strerror(errno));
}

/* After the rename, make the directory entry durable too (best effort). */
bool kg_safetensors_write(kg_ctx *ctx, const char *path, int n, const char *const *names,
                          kg_tensor *const *tensors, const char *const *meta)
{
    return kg_safetensors_write_bytes(ctx, path, n, names, tensors, NULL, meta);
}

bool kg_safetensors_write_bytes(kg_ctx *ctx, const char *path, int n, const char *const *names,
                                kg_tensor *const *tensors, const kg_safetensors_bytes *bytes,
                                const char *const *meta)
{
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_safetensors_write: %s: expected a path, n >= 0 "
                            "and n names and tensors", path ? path : "(null path)");
    json_t *root = build_header(ctx, path, n, names, tensors, bytes, meta);
    if (!root)
        return false;
    char *header = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!header)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_safetensors_write: %s: out of host memory",
                            path);
    char *tmp;
    FILE *fp = kg__atomic_open(ctx, path, &tmp);
    bool ok = fp && kg__atomic_close(ctx, fp, tmp, path,
                                     write_contents(ctx, path, fp, header, n, tensors, bytes));
    free(header);
    return ok;
}
