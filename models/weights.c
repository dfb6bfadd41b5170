/* weights.c — opening a checkpoint (a safetensors file, a sharded index, an HF directory or a
 * GGUF file: the readers fill one table of entries), finding tensors by name, and loading one:
 * its bytes converted or dequantized chunk by chunk from the mapped file, uploaded, and written
 * into the new tensor, so no full-size host copy is ever made (kg_formats.h).
 */
#include "models/weights.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int64_t kg__load_chunk_elems = (int64_t)1 << 22; /* 16 MB of f32 */

/* ---- Files and entries -------------------------------------------------------------------- */

int kg__weights_map_file(kg_weights *w, const char *path)
{
    kg_wfile *files = realloc(w->files, (size_t)(w->n_files + 1) * sizeof *files);
    if (!files)
        return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory"), -1;
    w->files = files;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: cannot open: %s", path,
                            strerror(errno)), -1;
    struct stat st;
    const uint8_t *map = NULL;
    const char *why = NULL;
    if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            why = strerror(errno);
        else
            map = m;
    }
    close(fd);
    if (why)
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: cannot map: %s", path, why),
               -1;
    char *copy = strdup(path);
    if (!copy) {
        if (map)
            munmap((void *)map, (size_t)st.st_size);
        return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory"), -1;
    }
    files[w->n_files] = (kg_wfile){.path = copy, .map = map, .size = (size_t)st.st_size};
    return w->n_files++;
}

kg_wentry *kg__weights_add_entry(kg_weights *w)
{
    if (w->n_entries == w->cap_entries) {
        int cap = w->cap_entries ? w->cap_entries * 2 : 64;
        kg_wentry *p = cap > w->cap_entries ? realloc(w->entries, (size_t)cap * sizeof *p) : NULL;
        if (!p)
            return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory"),
                   NULL;
        w->entries = p;
        w->cap_entries = cap;
    }
    kg_wentry *e = &w->entries[w->n_entries++];
    memset(e, 0, sizeof *e);
    return e;
}

int64_t kg__shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n))
            return -1;
    return n;
}

typedef struct byte_range {
    uint64_t begin, end;
    int entry;
} byte_range;

static int by_begin(const void *a, const void *b)
{
    const byte_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

bool kg__weights_check_ranges(kg_weights *w, int f, uint64_t data_size)
{
    const char *path = w->files[f].path;
    byte_range *r = malloc((size_t)w->n_entries * sizeof *r + 1);
    if (!r)
        return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
    int n = 0;
    for (int i = 0; i < w->n_entries; i++) {
        const kg_wentry *e = &w->entries[i];
        if (e->file != f)
            continue;
        if (e->begin > e->end || e->end > data_size) {
            free(r);
            return kg_set_error(w->ctx, KG_ERR_RANGE, "kg_weights_open: %s: tensor \"%.200s\": "
                                "data [%llu, %llu) lies outside the data section of %llu bytes",
                                path, e->name, (unsigned long long)e->begin,
                                (unsigned long long)e->end, (unsigned long long)data_size);
        }
        if (e->end > e->begin) /* empty tensors overlap nothing */
            r[n++] = (byte_range){e->begin, e->end, i};
    }
    qsort(r, (size_t)n, sizeof *r, by_begin);
    for (int i = 1; i < n; i++)
        if (r[i].begin < r[i - 1].end) {
            const kg_wentry *a = &w->entries[r[i - 1].entry], *b = &w->entries[r[i].entry];
            kg_set_error(w->ctx, KG_ERR_RANGE, "kg_weights_open: %s: tensor \"%.200s\" [%llu, "
                         "%llu) overlaps tensor \"%.200s\" [%llu, %llu); expected disjoint data",
                         path, b->name, (unsigned long long)b->begin, (unsigned long long)b->end,
                         a->name, (unsigned long long)a->begin, (unsigned long long)a->end);
            free(r);
            return false;
        }
    free(r);
    return true;
}

/* ---- Names --------------------------------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
    return strcmp(((const kg_name_ref *)a)->name, ((const kg_name_ref *)b)->name);
}

int kg__names_sort(kg_name_ref *refs, int n)
{
    qsort(refs, (size_t)n, sizeof *refs, by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(refs[i - 1].name, refs[i].name) == 0)
            return i;
    return -1;
}

int kg__names_find(const kg_name_ref *refs, int n, const char *name)
{
    kg_name_ref key = {.name = name};
    const kg_name_ref *r = n ? bsearch(&key, refs, (size_t)n, sizeof *refs, by_name) : NULL;
    return r ? r->index : -1;
}

bool kg__weights_index(kg_weights *w)
{
    if (w->by_name)
        return true;
    w->by_name = malloc((size_t)w->n_entries * sizeof *w->by_name + 1);
    if (!w->by_name)
        return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
    for (int i = 0; i < w->n_entries; i++)
        w->by_name[i] = (kg_name_ref){w->entries[i].name, i};
    int dup = kg__names_sort(w->by_name, w->n_entries);
    if (dup < 0)
        return true;
    const kg_wentry *a = &w->entries[w->by_name[dup - 1].index];
    const kg_wentry *b = &w->entries[w->by_name[dup].index];
    return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: tensor \"%.200s\" appears twice "
                        "(in %s and in %s); expected unique names", w->path, a->name,
                        w->files[a->file].path, w->files[b->file].path);
}

/* ---- Open and close ------------------------------------------------------------------------- */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A .json file is a shard index; a .gguf file or one with GGUF's magic is GGUF; the rest are
 * safetensors. */
static bool read_file(kg_weights *w, const char *path)
{
    if (ends_with(path, ".json"))
        return kg__safetensors_read_index(w, path);
    int f = kg__weights_map_file(w, path);
    if (f < 0)
        return false;
    const kg_wfile *file = &w->files[f];
    if (ends_with(path, ".gguf") || (file->size >= 4 && memcmp(file->map, "GGUF", 4) == 0))
        return kg__gguf_read(w, f);
    return kg__safetensors_read(w, f);
}

static bool read_any(kg_weights *w, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return read_file(w, path);
    /* An HF model directory: the single file when there is one, else the index. */
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 2; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *file = malloc(len);
        if (!file)
            return kg_set_error(w->ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
        snprintf(file, len, "%s/%s", path, names[i]);
        bool found = is_file(file), ok = found && read_file(w, file);
        free(file);
        if (found)
            return ok;
    }
    return kg_set_error(w->ctx, KG_ERR_ARG, "kg_weights_open: %s: a directory without "
                        "model.safetensors or model.safetensors.index.json", path);
}

kg_weights *kg_weights_open(kg_ctx *ctx, const char *path)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (!path) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_weights_open: path is NULL");
        return NULL;
    }
    kg_weights *w = calloc(1, sizeof *w);
    if (w)
        w->path = strdup(path);
    if (!w || !w->path) {
        free(w);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_weights_open: out of host memory");
        return NULL;
    }
    w->ctx = ctx;
    if (!read_any(w, path) || !kg__weights_index(w)) {
        kg_weights_close(w);
        return NULL;
    }
    return w;
}

void kg_weights_close(kg_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_entries; i++)
        free(w->entries[i].name);
    for (int i = 0; i < w->n_files; i++) {
        if (w->files[i].map)
            munmap((void *)w->files[i].map, w->files[i].size);
        free(w->files[i].path);
    }
    kg__gguf_free(w->gguf);
    free(w->entries);
    free(w->files);
    free(w->by_name);
    free(w->path);
    free(w);
}

const char *kg_weights_path(const kg_weights *w) { return w ? w->path : NULL; }
bool kg_weights_is_gguf(const kg_weights *w) { return w && w->gguf; }
int kg_weights_count(const kg_weights *w) { return w ? w->n_entries : 0; }

const char *kg_weights_name(const kg_weights *w, int i)
{
    return w && i >= 0 && i < w->n_entries ? w->entries[i].name : NULL;
}

static const kg_wentry *find(const kg_weights *w, const char *name)
{
    int i = w && name ? kg__names_find(w->by_name, w->n_entries, name) : -1;
    return i < 0 ? NULL : &w->entries[i];
}

bool kg_weights_shape(const kg_weights *w, const char *name, int *ndim, int64_t *shape)
{
    const kg_wentry *e = find(w, name);
    if (!e)
        return false;
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return true;
}

/* ---- Loading -------------------------------------------------------------------------------- */

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* Which file types load as which dtypes: floats and GGML blocks as any float dtype (the file's
 * integers are not weights), I32 as i32 only. */
static bool loadable(const kg_wtype *type, kg_dtype dtype)
{
    if (dtype == KG_DTYPE_I32 || kg_dtype_block(dtype) > 1) /* i32, or a GGUF block kept packed */
        return type->raw == (int)dtype;
    if (dtype != KG_DTYPE_F32 && dtype != KG_DTYPE_F16 && dtype != KG_DTYPE_BF16)
        return false;
    return type->dequant || (type->raw >= 0 && type->raw != KG_DTYPE_I32 &&
                             kg_dtype_block((kg_dtype)type->raw) == 1);
}

/* The file's dim-0 row holding HF row r of a tensor that llama.cpp permuted for RoPE: it
 * stored HF row (h, j, i) = h·D + j·D/2 + i at h·D + 2i + j (REFERENCE §6). */
int64_t kg__rope_row(int64_t r, int64_t rows, int heads)
{
    int64_t d = rows / heads, half = d / 2, h = r / d, j = r % d / half, i = r % d % half;
    return h * d + 2 * i + j;
}

static void decode(const kg_wtype *type, const uint8_t *src, int64_t len, void *out)
{
    if (type->dequant)
        type->dequant(src, len / type->block, out);
    else
        memcpy(out, src, (size_t)len * (size_t)type->bytes);
}

/* Elements [first, first + len) of e in HF order, in e's own dtype or dequantized to f32.
 * first and len are whole blocks, and whole dim-0 rows when e is permuted. */
static void read_elems(const kg_wentry *e, int64_t first, int64_t len, uint8_t *out)
{
    const kg_wtype *type = e->type;
    if (!e->perm_heads) {
        decode(type, e->data + first / type->block * type->bytes, len, out);
        return;
    }
    int64_t rows = e->shape[0], row = kg__shape_numel(e->ndim, e->shape) / rows;
    size_t row_out = (size_t)row * (type->dequant ? sizeof(float) : (size_t)type->bytes);
    for (int64_t r = first / row; r < (first + len) / row; r++, out += row_out)
        decode(type, e->data + kg__rope_row(r, rows, e->perm_heads) * (row / type->block) *
                                   type->bytes, row, out);
}

/* A block-quantized tensor (rows are whole blocks) with its dim-0 rows put back in HF order. */
static kg_tensor *load_packed_permuted(kg_ctx *ctx, const kg_wentry *e, kg_dtype dtype)
{
    int64_t rows = e->shape[0], n = kg__shape_numel(e->ndim, e->shape);
    size_t row_bytes = kg_dtype_bytes(dtype, n / rows);
    uint8_t *buf = malloc(row_bytes * (size_t)rows + 1);
    if (!buf) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_weights_load: out of host memory for %zu bytes",
                     row_bytes * (size_t)rows);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(buf + (size_t)r * row_bytes,
               e->data + (size_t)kg__rope_row(r, rows, e->perm_heads) * row_bytes, row_bytes);
    kg_tensor *t = kg_from_host(ctx, dtype, e->ndim, e->shape, buf);
    free(buf);
    return t;
}

static kg_tensor *load_entry(kg_weights *w, const kg_wentry *e, kg_dtype dtype)
{
    kg_ctx *ctx = w->ctx;
    const kg_wtype *type = e->type;
    /* The file holds the tensor's own bytes: one upload straight from the mapping. */
    if (type->raw == (int)dtype && !e->perm_heads)
        return kg_from_host(ctx, dtype, e->ndim, e->shape, e->data);
    if (type->raw == (int)dtype) /* packed blocks in llama.cpp's RoPE row order: move whole rows */
        return load_packed_permuted(ctx, e, dtype);
    kg_tensor *out = kg_tensor_new(ctx, dtype, e->ndim, e->shape);
    int64_t n = kg__shape_numel(e->ndim, e->shape);
    if (!out || n == 0)
        return out;
    /* Chunks of whole units: dim-0 rows when permuted, else blocks. Plain types in file order
     * upload from the mapping; the rest go through one chunk-sized host buffer. Each chunk is
     * uploaded in its file dtype (f32 when dequantized) and converted by kg_tensor_assign. */
    int64_t unit = e->perm_heads ? n / e->shape[0] : type->block;
    int64_t chunk = (kg__load_chunk_elems > unit ? kg__load_chunk_elems / unit : 1) * unit;
    kg_dtype up = type->dequant ? KG_DTYPE_F32 : (kg_dtype)type->raw;
    bool direct = !type->dequant && !e->perm_heads;
    uint8_t *buf = NULL;
    if (!direct && !(buf = malloc((size_t)(chunk < n ? chunk : n) * kg_dtype_size(up)))) {
        kg_tensor_free(out);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_weights_load: out of host memory for a %lld-element "
                     "chunk", (long long)chunk);
        return NULL;
    }
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *flat = kg_reshape(out, 1, &n);
    for (int64_t first = 0; first < n && !kg_ctx_status(ctx); first += chunk) {
        int64_t len = chunk < n - first ? chunk : n - first;
        if (!direct)
            read_elems(e, first, len, buf);
        const void *src = direct ? e->data + first * type->bytes : buf;
        kg_tensor *part = kg_from_host(ctx, up, 1, &len, src);
        kg_tensor *dst = kg_slice(flat, 0, first, len);
        kg_tensor_assign(dst, part);
        kg_tensor_free(dst);
        kg_tensor_free(part);
        kg_flush(ctx); /* the backend frees the chunk's memory before the next one */
    }
    kg_scope_end(ctx, scope);
    free(buf);
    if (kg_ctx_status(ctx)) {
        kg_tensor_free(out);
        return NULL;
    }
    return out;
}

kg_dtype kg_weights_dtype(const kg_weights *w, const char *name)
{
    const kg_wentry *e = w && name ? find(w, name) : NULL;
    return e && e->type->raw >= 0 ? (kg_dtype)e->type->raw : KG_DTYPE_COUNT;
}

kg_tensor *kg_weights_load(kg_weights *w, const char *name, kg_dtype dtype, int ndim,
                           const int64_t *shape)
{
    if (!w || kg_ctx_status(w->ctx))
        return NULL;
    kg_ctx *ctx = w->ctx;
    if (!name) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_weights_load: %s: name is NULL", w->path);
        return NULL;
    }
    const kg_wentry *e = find(w, name);
    if (!e) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_weights_load: %s: no tensor \"%.200s\"", w->path, name);
        return NULL;
    }
    const char *path = w->files[e->file].path;
    char want[96], have[96];
    format_shape(have, sizeof have, e->ndim, e->shape);
    if (!loadable(e->type, dtype)) {
        char ggml[32] = "";
        if (w->gguf)
            snprintf(ggml, sizeof ggml, " (ggml type %d)", e->type->ggml);
        kg_set_error(ctx, KG_ERR_DTYPE, "kg_weights_load: %s: tensor \"%.200s\" is %s%s; "
                     "expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1 to load as f32/f16/bf16, or "
                     "I32 to load as i32 (asked for %s)", path, name, e->type->name, ggml,
                     (unsigned)dtype < KG_DTYPE_COUNT ? kg_dtype_name(dtype) : "an unknown dtype");
        return NULL;
    }
    if (shape && (ndim != e->ndim || memcmp(shape, e->shape, (size_t)ndim * sizeof *shape))) {
        format_shape(want, sizeof want, ndim < 0 ? 0 : ndim > KG_MAX_DIMS ? KG_MAX_DIMS : ndim,
                     shape);
        kg_set_error(ctx, KG_ERR_SHAPE, "kg_weights_load: %s: tensor \"%.200s\" has shape %s; "
                     "expected %s", path, name, have, want);
        return NULL;
    }
    return load_entry(w, e, dtype);
}
