/* export.c — `krongrad export`'s library side (kg_export.h): the merged model as an HF directory
 * or a llama.cpp GGUF, the adapter alone as a llama.cpp LoRA GGUF, and Kron-LoRA / LoKr
 * rewritten as the exact LoRA it equals (A = U·V, A ⊗ B1B2 = (U ⊗ B1)(V ⊗ B2)).
 */
#include "models/adapters.h"
#include "models/gguf_write.h"
#include "models/kg_export.h"
#include "models/weights.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Files and directories ------------------------------------------------------------------ */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The directory holding an HF source: the source itself, or the directory of a file in it. */
static char *source_dir(const char *source)
{
    struct stat st;
    if (stat(source, &st) == 0 && S_ISDIR(st.st_mode))
        return strdup(source);
    const char *slash = strrchr(source, '/');
    return slash ? strndup(source, (size_t)(slash - source)) : strdup(".");
}

/* A new directory beside dir to build the export in; NULL with the error set. dir must not
 * exist, or be an empty directory (rename replaces an empty one). */
static char *temp_dir(kg_ctx *ctx, const char *fn, const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        bool empty = true;
        while (empty && (e = readdir(d)))
            empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
        closedir(d);
        if (!empty) {
            kg_set_error(ctx, KG_ERR_ARG, "%s: %s exists and is not empty; expected a new or "
                         "empty directory (an export never overwrites one)", fn, dir);
            return NULL;
        }
    } else if (errno != ENOENT) {
        kg_set_error(ctx, KG_ERR_ARG, "%s: %s: %s; expected a new directory", fn, dir,
                     strerror(errno));
        return NULL;
    }
    size_t n = strlen(dir) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) {
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        return NULL;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", dir);
    if (!mkdtemp(tmp)) {
        kg_set_error(ctx, KG_ERR_ARG, "%s: cannot make a directory beside %s: %s", fn, dir,
                     strerror(errno));
        free(tmp);
        return NULL;
    }
    return tmp;
}

/* Rename the finished tmp onto dir (ok), or remove tmp and what was written in it; frees tmp. */
static bool finish_dir(kg_ctx *ctx, const char *fn, char *tmp, const char *dir, bool ok)
{
    if (ok && chmod(tmp, 0755) != 0)
        ok = kg_set_error(ctx, KG_ERR_ARG, "%s: %s: %s", fn, tmp, strerror(errno));
    if (ok && rename(tmp, dir) != 0)
        ok = kg_set_error(ctx, KG_ERR_ARG, "%s: cannot rename %s to %s: %s", fn, tmp, dir,
                          strerror(errno));
    if (!ok) {
        DIR *d = opendir(tmp);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char *p = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") ? join(tmp, e->d_name)
                                                                          : NULL;
            if (p)
                unlink(p);
            free(p);
        }
        if (d)
            closedir(d);
        rmdir(tmp);
    }
    free(tmp);
    return ok;
}

/* Write len bytes to path (inside a directory being built, so not atomic by itself). */
static bool write_file(kg_ctx *ctx, const char *fn, const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    bool ok = fp && fwrite(data, 1, len, fp) == len && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int err = errno;
    if (fp)
        ok = fclose(fp) == 0 && ok;
    return ok || kg_set_error(ctx, KG_ERR_ARG, "%s: %s: cannot write: %s", fn, path,
                              strerror(err));
}

static bool write_json(kg_ctx *ctx, const char *fn, const char *path, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    bool ok = text ? write_file(ctx, fn, path, text, strlen(text))
                   : kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
    free(text);
    return ok;
}

/* Copy src to dst when src exists (*copied); a src that exists but cannot be read is an error. */
static bool copy_file(kg_ctx *ctx, const char *fn, const char *src, const char *dst, bool *copied)
{
    *copied = false;
    FILE *in = fopen(src, "rb");
    if (!in)
        return errno == ENOENT ||
               kg_set_error(ctx, KG_ERR_ARG, "%s: %s: %s", fn, src, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    bool ok = true;
    do {
        if (len == cap) {
            char *b = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
            if (!b) {
                ok = kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
                break;
            }
            buf = b;
        }
        len += got = fread(buf + len, 1, cap - len, in);
    } while (got);
    if (ok && ferror(in))
        ok = kg_set_error(ctx, KG_ERR_ARG, "%s: %s: cannot read", fn, src);
    fclose(in);
    ok = ok && write_file(ctx, fn, dst, buf, len);
    free(buf);
    *copied = ok;
    return ok;
}

/* ---- Tensors to bytes ----------------------------------------------------------------------- */

static uint32_t ggml_type_of(kg_dtype d)
{
    return d == KG_DTYPE_F16    ? KG_GGML_F16
           : d == KG_DTYPE_BF16 ? KG_GGML_BF16
           : d == KG_DTYPE_Q8_0 ? KG_GGML_Q8_0
                                : KG_GGML_F32;
}

/* x (ndim, shape, f32 on the host) as dtype's bytes (malloc'd into *out): a cast (f16, bf16) or
 * a quantization (q8_0, 2-D) on the context's backend. */
static bool encode(kg_ctx *ctx, const float *x, int ndim, const int64_t *shape, kg_dtype dtype,
                   uint8_t **out, size_t *bytes)
{
    int64_t n = kg__shape_numel(ndim, shape);
    *bytes = kg_dtype_bytes(dtype, n);
    if (!(*out = malloc(*bytes + 1)))
        return kg_set_error(ctx, KG_ERR_NOMEM, "export: out of host memory for %zu bytes", *bytes);
    if (dtype == KG_DTYPE_F32) {
        memcpy(*out, x, *bytes);
        return true;
    }
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_F32, ndim, shape, x);
    kg_tensor *c = dtype == KG_DTYPE_Q8_0 ? kg_quantize(t, dtype) : kg_cast(t, dtype);
    bool ok = c && kg_tensor_to_host(c, *out, *bytes);
    kg_scope_end(ctx, scope);
    if (!ok) {
        free(*out);
        *out = NULL;
    }
    return ok;
}

/* Rows of x (rows × row) moved from HF order to llama.cpp's RoPE order for `heads` heads. */
static float *rope_rows(kg_ctx *ctx, const float *x, int64_t rows, int64_t row, int64_t heads)
{
    if (heads <= 0 || rows % (2 * heads) != 0) {
        kg_set_error(ctx, KG_ERR_SHAPE, "export: %lld rows cannot be split into %lld heads of an "
                     "even size for llama.cpp's Q/K order", (long long)rows, (long long)heads);
        return NULL;
    }
    float *y = malloc(sizeof *y * (size_t)(rows * row) + 1);
    if (!y) {
        kg_set_error(ctx, KG_ERR_NOMEM, "export: out of host memory");
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(y + kg__rope_row(r, rows, (int)heads) * row, x + r * row, sizeof *y * (size_t)row);
    return y;
}

/* One tensor into the GGUF: its llama.cpp name, Q/K rows permuted (heads > 0), dtype for 2-D
 * weights (f16 where q8_0 blocks do not fit the rows), f32 for the rest. */
static bool add_gguf_tensor(kg_gguf_out *o, const char *name, const kg_tensor *t, int64_t heads,
                            kg_dtype dtype)
{
    kg_ctx *ctx = o->ctx;
    int ndim = kg_tensor_ndim(t);
    int64_t shape[KG_MAX_DIMS];
    for (int d = 0; d < ndim; d++)
        shape[d] = kg_tensor_dim(t, d);
    if (ndim != 2)
        dtype = KG_DTYPE_F32;
    else if (dtype == KG_DTYPE_Q8_0 && shape[1] % kg_dtype_block(dtype) != 0)
        dtype = KG_DTYPE_F16;
    float *x = kg_tensor_to_f32(t);
    if (!x)
        return false;
    if (heads > 0) {
        int64_t row = kg_tensor_numel(t) / shape[0];
        float *y = rope_rows(ctx, x, shape[0], row, heads);
        free(x);
        if (!(x = y))
            return false;
    }
    uint8_t *data;
    size_t bytes;
    bool ok = encode(ctx, x, ndim, shape, dtype, &data, &bytes) &&
              kg__gguf_out_tensor(o, name, ggml_type_of(dtype), ndim, shape, data, bytes);
    free(x);
    return ok;
}

/* ---- Checks ------------------------------------------------------------------------------- */

static bool want_decoder(const kg_model *m, const char *fn)
{
    if (m->cfg.arch == KG_ARCH_LLAMA || m->cfg.arch == KG_ARCH_MISTRAL)
        return true;
    return kg_set_error(m->ctx, KG_ERR_ARG, "%s: the model is a %s; GGUF export takes a Llama or "
                        "Mistral decoder", fn, m->cfg.arch == KG_ARCH_BERT ? "BERT" : "DistilBERT");
}

static bool want_dtype(kg_ctx *ctx, const char *fn, kg_dtype dtype, bool q8_0)
{
    if (dtype == KG_DTYPE_F32 || dtype == KG_DTYPE_F16 || dtype == KG_DTYPE_BF16 ||
        (q8_0 && dtype == KG_DTYPE_Q8_0))
        return true;
    return kg_set_error(ctx, KG_ERR_DTYPE, "%s: dtype %s; expected f32, f16, bf16%s", fn,
                        kg_dtype_name(dtype), q8_0 ? " or q8_0" : "");
}

/* ---- HF directory --------------------------------------------------------------------------- */

/* config.json for a model that came without one (a GGUF source), as transformers writes it. */
static json_t *config_json(const kg_model_config *c)
{
    json_t *j = json_pack("{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, "
                          "s:b, s:b, s:s, s:s}",
                          "architectures", "LlamaForCausalLM", "model_type", "llama",
                          "vocab_size", (json_int_t)c->vocab_size,
                          "hidden_size", (json_int_t)c->hidden_size,
                          "intermediate_size", (json_int_t)c->intermediate_size,
                          "num_hidden_layers", (json_int_t)c->n_layers,
                          "num_attention_heads", (json_int_t)c->n_heads,
                          "num_key_value_heads", (json_int_t)c->n_kv_heads,
                          "head_dim", (json_int_t)c->head_dim,
                          "max_position_embeddings", (json_int_t)c->max_positions,
                          "rms_norm_eps", c->norm_eps, "rope_theta", c->rope_theta,
                          "tie_word_embeddings", c->tie_word_embeddings,
                          "attention_bias", c->attention_bias, "mlp_bias", c->mlp_bias,
                          "hidden_act", "silu", "torch_dtype", "float32");
    if (j && c->bos_token_id >= 0)
        json_object_set_new(j, "bos_token_id", json_integer(c->bos_token_id));
    if (j && c->eos_token_id >= 0)
        json_object_set_new(j, "eos_token_id", json_integer(c->eos_token_id));
    return j;
}

/* The files of an HF directory that are not weights, copied as they are. */
static const char *const hf_side_files[] = {
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "vocab.txt", "chat_template.jinja", "generation_config.json"};

/* The weights in shards of at most shard_bytes (a tensor larger than that gets its own). */
static bool write_shards(kg_model *m, const char *fn, const char *tmp, kg_dtype dtype,
                         int64_t shard_bytes)
{
    kg_ctx *ctx = m->ctx;
    int n = m->n_params, *shard_of = malloc(sizeof *shard_of * (size_t)n + 1), n_shards = 0;
    if (!shard_of)
        return kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
    int64_t used = 0, total = 0;
    for (int i = 0; i < n; i++) {
        int64_t b = (int64_t)kg_dtype_bytes(dtype, kg_tensor_numel(m->params[i].tensor));
        if (n_shards == 0 || (used > 0 && used + b > shard_bytes)) {
            n_shards++;
            used = 0;
        }
        shard_of[i] = n_shards - 1;
        used += b;
        total += b;
    }
    const char *meta[] = {"format", "pt", NULL};
    const char **names = malloc(sizeof *names * (size_t)n + 1);
    kg_tensor **ts = malloc(sizeof *ts * (size_t)n + 1);
    json_t *map = json_object();
    bool ok = names && ts && map ? true : kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
    for (int s = 0; ok && s < n_shards; s++) {
        char file[64];
        if (n_shards == 1)
            snprintf(file, sizeof file, "model.safetensors");
        else
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        kg_scope scope = kg_scope_begin(ctx);
        int k = 0;
        for (int i = 0; i < n; i++)
            if (shard_of[i] == s) {
                kg_tensor *t = m->params[i].tensor;
                names[k] = m->params[i].name;
                ts[k++] = dtype == kg_tensor_dtype(t) ? t : kg_cast(t, dtype);
                json_object_set_new(map, m->params[i].name, json_string(file));
            }
        char *path = join(tmp, file);
        ok = path ? kg_safetensors_write(ctx, path, k, names, ts, meta)
                  : kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        free(path);
        kg_scope_end(ctx, scope);
    }
    if (ok && n_shards > 1) {
        char *path = join(tmp, "model.safetensors.index.json");
        json_t *index = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total,
                                  "weight_map", map);
        ok = path ? write_json(ctx, fn, path, index)
                  : kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        free(path);
    }
    json_decref(map);
    free(names);
    free(ts);
    free(shard_of);
    return ok;
}

bool kg_export_hf(kg_model *m, const char *source, const char *dir, kg_dtype dtype,
                  int64_t shard_bytes, bool *tokenizer_written)
{
    const char *fn = "kg_export_hf";
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    *tokenizer_written = false;
    if (!want_dtype(ctx, fn, dtype, false) || !kg_model_merge(m))
        return false;
    kg_weights *w = kg_weights_open(ctx, source);
    if (!w)
        return false;
    bool gguf = kg_weights_is_gguf(w);
    kg_weights_close(w);
    char *tmp = temp_dir(ctx, fn, dir);
    if (!tmp)
        return false;
    bool ok = write_shards(m, fn, tmp, dtype, shard_bytes > 0 ? shard_bytes : (int64_t)2 << 30);
    char *src = source_dir(source), *cfg = join(tmp, "config.json"), *from = NULL;
    if (ok && !(src && cfg))
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
    bool copied = false;
    if (ok && gguf)
        ok = write_json(ctx, fn, cfg, config_json(&m->cfg));
    else if (ok) {
        from = join(src, "config.json");
        ok = from && copy_file(ctx, fn, from, cfg, &copied) &&
             (copied || kg_set_error(ctx, KG_ERR_ARG, "%s: %s: no such file", fn, from));
    }
    for (size_t i = 0; ok && !gguf && i < sizeof hf_side_files / sizeof *hf_side_files; i++) {
        free(from);
        from = join(src, hf_side_files[i]);
        char *to = join(tmp, hf_side_files[i]);
        ok = from && to ? copy_file(ctx, fn, from, to, &copied)
                        : kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
        *tokenizer_written = *tokenizer_written || (copied && i < 5);
        free(to);
    }
    free(from);
    free(cfg);
    free(src);
    return finish_dir(ctx, fn, tmp, dir, ok);
}

/* ---- GGUF model ---------------------------------------------------------------------------- */

/* general.file_type (llama.cpp's LLAMA_FTYPE) for a dtype: all f32, mostly f16 / bf16 / q8_0. */
static uint32_t file_type_of(kg_dtype d)
{
    return d == KG_DTYPE_F16 ? 1 : d == KG_DTYPE_BF16 ? 32 : d == KG_DTYPE_Q8_0 ? 7 : 0;
}

/* Every metadata entry of a GGUF source except those the export sets itself. */
static bool copy_metadata(kg_gguf_out *o, const kg_weights *w)
{
    for (int i = 0; i < kg__gguf_kv_count(w); i++) {
        const char *key;
        uint32_t type;
        const uint8_t *raw;
        size_t len;
        kg__gguf_kv_at(w, i, &key, &type, &raw, &len);
        if (strcmp(key, "general.file_type") != 0 && strcmp(key, "general.alignment") != 0 &&
            !kg__gguf_out_raw(o, key, type, raw, len))
            return false;
    }
    return true;
}

/* The chat template of an HF directory: tokenizer_config.json's "chat_template" (a string, or
 * the entry named "default" of a list), else chat_template.jinja (transformers 5 writes it
 * apart), else NULL; *j holds what was read, for the caller to release. */
static const char *hf_chat_template(const char *dir, json_t **j)
{
    char *path = join(dir, "tokenizer_config.json"), *jinja = join(dir, "chat_template.jinja");
    *j = path ? json_load_file(path, 0, NULL) : NULL;
    json_t *t = json_object_get(*j, "chat_template");
    FILE *fp = !t && jinja ? fopen(jinja, "rb") : NULL;
    if (fp) { /* kept in *j, so the caller's one release frees it */
        json_decref(*j);
        *j = json_object();
        char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = 0;
        json_object_set_new(*j, "chat_template", json_string(buf));
        t = json_object_get(*j, "chat_template");
    }
    free(path);
    free(jinja);
    for (size_t i = 0; json_is_array(t) && i < json_array_size(t); i++) {
        json_t *e = json_array_get(t, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name && strcmp(name, "default") == 0)
            return json_string_value(json_object_get(e, "template"));
    }
    return json_string_value(t);
}

/* llama.cpp's name for a tokenizer.json pre-tokenizer it knows by structure: GPT-2's ByteLevel
 * regex ("gpt-2"), or single digits split first ("smollm": "\\p{N}" then the GPT-2 regex);
 * NULL for any other (llama.cpp tells the rest apart by hashing test tokenizations). */
static const char *pre_name(const json_t *pre)
{
    const char *type = json_string_value(json_object_get(pre, "type"));
    const json_t *regex = json_object_get(pre, "use_regex");
    if (type && strcmp(type, "ByteLevel") == 0 && !json_is_false(regex))
        return "gpt-2";
    const json_t *seq = json_object_get(pre, "pretokenizers");
    if (!type || strcmp(type, "Sequence") != 0 || json_array_size(seq) != 2)
        return NULL;
    const json_t *digits = json_array_get(seq, 0);
    type = json_string_value(json_object_get(digits, "type"));
    if (!type || strcmp(type, "Digits") != 0 ||
        !json_is_true(json_object_get(digits, "individual_digits")))
        return NULL;
    const char *second = pre_name(json_array_get(seq, 1));
    return second && strcmp(second, "gpt-2") == 0 ? "smollm" : NULL;
}

/* A byte-level BPE tokenizer.json as llama.cpp's converter writes it: tokenizer.ggml.model
 * "gpt2", the pre-tokenizer, tokens by id (ids the file lacks: "[PADi]", unused), token types
 * (1 normal, 3 control = special added tokens, 4 user-defined = other added tokens, 5 unused)
 * and the merges as "a b". A tokenizer of another kind writes nothing (true). */
static bool hf_vocab(kg_gguf_out *o, const char *dir, int64_t V)
{
    kg_ctx *ctx = o->ctx;
    char *path = join(dir, "tokenizer.json");
    json_error_t err;
    json_t *j = path ? json_load_file(path, 0, &err) : NULL;
    const json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const char *type = json_string_value(json_object_get(model, "type"));
    const char *pre = pre_name(json_object_get(j, "pre_tokenizer"));
    const char **tokens = calloc((size_t)V + 1, sizeof *tokens);
    size_t *lens = calloc((size_t)V + 1, sizeof *lens);
    int32_t *types = calloc((size_t)V + 1, sizeof *types);
    char (*pads)[32] = calloc((size_t)V + 1, sizeof *pads);
    size_t n_merges = json_array_size(merges);
    const char **mtext = calloc(n_merges + 1, sizeof *mtext);
    size_t *mlens = calloc(n_merges + 1, sizeof *mlens);
    char **mcopy = calloc(n_merges + 1, sizeof *mcopy);
    bool ok = tokens && lens && types && pads && mtext && mlens && mcopy;
    if (!ok)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_export_gguf: out of host memory");
    bool bpe = ok && j && type && strcmp(type, "BPE") == 0 && pre && json_is_object(vocab) &&
               json_is_array(merges);
    const char *key;
    json_t *val;
    if (bpe)
        json_object_foreach((json_t *)vocab, key, val) {
            json_int_t id = json_integer_value(val);
            if (!json_is_integer(val) || id < 0 || id >= V) {
                ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_export_gguf: %s: model.vocab \"%.100s\" "
                                  "has id %lld; expected 0 to %lld (config vocab_size)", path,
                                  key, (long long)id, (long long)V - 1);
                break;
            }
            tokens[id] = key;
            types[id] = 1;
        }
    const json_t *added = json_object_get(j, "added_tokens");
    for (size_t i = 0; ok && bpe && i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        const char *content = json_string_value(json_object_get(a, "content"));
        if (!content || id < 0 || id >= V) {
            ok = kg_set_error(ctx, KG_ERR_RANGE, "kg_export_gguf: %s: added_tokens[%zu]: id %lld; "
                              "expected an id below %lld and a content string", path, i,
                              (long long)id, (long long)V);
            break;
        }
        tokens[id] = content;
        types[id] = json_is_true(json_object_get(a, "special")) ? 3 : 4;
    }
    for (int64_t i = 0; ok && bpe && i < V; i++) {
        if (!tokens[i]) {
            snprintf(pads[i], sizeof pads[i], "[PAD%lld]", (long long)i);
            tokens[i] = pads[i];
            types[i] = 5;
        }
        lens[i] = strlen(tokens[i]);
    }
    for (size_t i = 0; ok && bpe && i < n_merges; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
        if (json_is_string(e)) {
            mtext[i] = json_string_value(e);
        } else if (a && b && (mcopy[i] = malloc(strlen(a) + strlen(b) + 2))) {
            sprintf(mcopy[i], "%s %s", a, b);
            mtext[i] = mcopy[i];
        } else {
            ok = kg_set_error(ctx, a && b ? KG_ERR_NOMEM : KG_ERR_ARG, "kg_export_gguf: %s: "
                              "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", path, i);
            break;
        }
        mlens[i] = strlen(mtext[i]);
    }
    if (ok && bpe)
        ok = kg__gguf_out_str(o, "tokenizer.ggml.model", "gpt2") &&
             kg__gguf_out_str(o, "tokenizer.ggml.pre", pre) &&
             kg__gguf_out_strs(o, "tokenizer.ggml.tokens", V, tokens, lens) &&
             kg__gguf_out_nums(o, "tokenizer.ggml.token_type", KG_GGUF_I32, V, types) &&
             kg__gguf_out_strs(o, "tokenizer.ggml.merges", (int64_t)n_merges, mtext, mlens);
    for (size_t i = 0; mcopy && i < n_merges; i++)
        free(mcopy[i]);
    free(mcopy);
    free(mlens);
    free(mtext);
    free(pads);
    free(types);
    free(lens);
    free(tokens);
    json_decref(j);
    free(path);
    return ok;
}

/* llama.* keys, token ids, the vocabulary and the chat template for a model that came from an
 * HF directory. */
static bool hf_metadata(kg_gguf_out *o, const kg_model *m, const char *source)
{
    const kg_model_config *c = &m->cfg;
    char *dir = source_dir(source);
    const char *base = dir ? strrchr(dir, '/') : NULL;
    bool ok = dir && kg__gguf_out_str(o, "general.architecture", "llama") &&
              kg__gguf_out_str(o, "general.name", base ? base + 1 : dir) &&
              kg__gguf_out_u32(o, "llama.context_length", (uint32_t)c->max_positions) &&
              kg__gguf_out_u32(o, "llama.embedding_length", (uint32_t)c->hidden_size) &&
              kg__gguf_out_u32(o, "llama.block_count", (uint32_t)c->n_layers) &&
              kg__gguf_out_u32(o, "llama.feed_forward_length", (uint32_t)c->intermediate_size) &&
              kg__gguf_out_u32(o, "llama.attention.head_count", (uint32_t)c->n_heads) &&
              kg__gguf_out_u32(o, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads) &&
              kg__gguf_out_u32(o, "llama.attention.key_length", (uint32_t)c->head_dim) &&
              kg__gguf_out_u32(o, "llama.attention.value_length", (uint32_t)c->head_dim) &&
              kg__gguf_out_u32(o, "llama.rope.dimension_count", (uint32_t)c->head_dim) &&
              kg__gguf_out_f32(o, "llama.rope.freq_base", (float)c->rope_theta) &&
              kg__gguf_out_f32(o, "llama.attention.layer_norm_rms_epsilon", (float)c->norm_eps) &&
              kg__gguf_out_u32(o, "llama.vocab_size", (uint32_t)c->vocab_size);
    if (!dir)
        kg_set_error(o->ctx, KG_ERR_NOMEM, "kg_export_gguf: out of host memory");
    if (ok && c->bos_token_id >= 0)
        ok = kg__gguf_out_u32(o, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token_id);
    if (ok && c->eos_token_id >= 0)
        ok = kg__gguf_out_u32(o, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token_id);
    ok = ok && hf_vocab(o, dir, c->vocab_size);
    json_t *j = NULL;
    const char *tmpl = ok ? hf_chat_template(dir, &j) : NULL;
    if (tmpl)
        ok = kg__gguf_out_str(o, "tokenizer.chat_template", tmpl);
    json_decref(j);
    free(dir);
    return ok;
}

bool kg_export_gguf(kg_model *m, const char *source, const char *path, kg_dtype dtype,
                    bool *vocab_written)
{
    const char *fn = "kg_export_gguf";
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    *vocab_written = false;
    const kg_model_config *c = &m->cfg;
    if (!want_decoder(m, fn) || !want_dtype(ctx, fn, dtype, true))
        return false;
    if (c->sliding_window > 0 && c->sliding_window < c->max_positions)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the model's sliding window is %lld positions "
                            "(its context %lld); llama.cpp's llama architecture has none, so the "
                            "GGUF would compute otherwise", fn, (long long)c->sliding_window,
                            (long long)c->max_positions);
    if (!kg_model_merge(m))
        return false;
    kg_weights *w = kg_weights_open(ctx, source);
    if (!w)
        return false;
    kg_gguf_out o;
    kg__gguf_out_init(&o, ctx);
    bool ok = kg_weights_is_gguf(w) ? copy_metadata(&o, w) : hf_metadata(&o, m, source);
    *vocab_written = ok && kg__gguf_out_has(&o, "tokenizer.ggml.tokens");
    kg_weights_close(w);
    ok = ok && kg__gguf_out_u32(&o, "general.file_type", file_type_of(dtype));
    for (int i = 0; ok && i < m->n_params; i++) {
        bool qk;
        char *name = kg__gguf_name(m->params[i].name, &qk);
        if (!name) {
            ok = kg_set_error(ctx, KG_ERR_ARG, "%s: tensor \"%s\" has no llama.cpp name", fn,
                              m->params[i].name);
            break;
        }
        int64_t heads = !qk ? 0 : strstr(name, "attn_q") ? c->n_heads : c->n_kv_heads;
        ok = add_gguf_tensor(&o, name, m->params[i].tensor, heads, dtype);
        free(name);
    }
    ok = ok && kg__gguf_out_write(&o, path);
    kg__gguf_out_free(&o);
    return ok;
}

/* ---- GGUF LoRA ------------------------------------------------------------------------------ */

bool kg_export_gguf_lora(const kg_model *m, const char *path, kg_dtype dtype)
{
    const char *fn = "kg_export_gguf_lora";
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    if (!want_decoder(m, fn) || !want_dtype(ctx, fn, dtype, false))
        return false;
    if (m->adapter.kind != KG_ADAPTER_LORA)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the model's adapter is %s; expected lora (a "
                            "kronlora or lokr adapter becomes its exact LoRA with --as-lora)", fn,
                            kg_adapter_kind_name(m->adapter.kind));
    kg_module_list L;
    if (!kg__modules(ctx, &m->cfg, (kg_model *)m, &L))
        return false;
    kg_gguf_out o;
    kg__gguf_out_init(&o, ctx);
    bool ok = kg__gguf_out_str(&o, "general.architecture", "llama") &&
              kg__gguf_out_str(&o, "general.type", "adapter") &&
              kg__gguf_out_str(&o, "adapter.type", "lora") &&
              kg__gguf_out_f32(&o, "adapter.lora.alpha", (float)m->adapter.alpha);
    for (int i = 0; ok && i < L.n; i++) {
        const kg_linear *lin = L.mods[i].lin;
        if (lin->kind == KG_LINEAR_DENSE)
            continue;
        if (lin->ad.merged) {
            ok = kg_set_error(ctx, KG_ERR_STATE, "%s: the adapter is merged; expected it apart",
                              fn);
            break;
        }
        char hf[200], *name = NULL, tname[260];
        bool qk;
        snprintf(hf, sizeof hf, "%s.weight", L.mods[i].name);
        if (L.mods[i].head || !(name = kg__gguf_name(hf, &qk))) {
            ok = kg_set_error(ctx, KG_ERR_ARG, "%s: layer \"%s\" has no llama.cpp name", fn,
                              L.mods[i].name);
            break;
        }
        int64_t heads = !qk ? 0 : strstr(name, "attn_q") ? m->cfg.n_heads : m->cfg.n_kv_heads;
        snprintf(tname, sizeof tname, "%s.lora_a", name);
        ok = add_gguf_tensor(&o, tname, lin->ad.lora_a, 0, dtype);
        snprintf(tname, sizeof tname, "%s.lora_b", name);
        ok = ok && add_gguf_tensor(&o, tname, lin->ad.lora_b, heads, dtype);
        free(name);
    }
    for (int i = 0; ok && i < m->n_trainable; i++) {
        const char *leaf = strrchr(m->trainable[i].name, '.');
        if (leaf && strncmp(leaf - 6, "lora_", 5) != 0)
            ok = kg_set_error(ctx, KG_ERR_ARG, "%s: \"%s\" is trained whole (modules_to_save); a "
                              "llama.cpp LoRA holds LoRA factors only", fn, m->trainable[i].name);
    }
    free(L.mods);
    ok = ok && kg__gguf_out_write(&o, path);
    kg__gguf_out_free(&o);
    return ok;
}

/* ---- Kron-LoRA as an exact LoRA ----------------------------------------------------------- */

/* A (m × n, row-major, double) = U·V with U m × k, V k × n, k the numerical rank: elimination
 * with full pivoting (P·A·Q = L·R) stopped at the first pivot at or below tol. U gets P⁻¹·L's
 * first k columns, V R's first k rows in A's column order; both hold m·min(m,n) and
 * min(m,n)·n, row-major with row strides kmax = min(m, n). Returns k, or -1 when out of
 * memory. */
static int64_t rank_factor(const double *a, int64_t m, int64_t n, double *u, double *v)
{
    int64_t kmax = m < n ? m : n, k = 0;
    int64_t *pr = malloc(sizeof *pr * (size_t)(m + n)), *pc = pr + m;
    double *M = malloc(sizeof *M * (size_t)(m * n)), amax = 0;
    if (!pr || !M) {
        free(pr);
        free(M);
        return -1;
    }
    memcpy(M, a, sizeof *M * (size_t)(m * n));
    for (int64_t i = 0; i < m * n; i++)
        amax = fmax(amax, fabs(a[i]));
    double tol = amax * (double)(m > n ? m : n) * FLT_EPSILON;
    for (int64_t i = 0; i < m; i++)
        pr[i] = i;
    for (int64_t j = 0; j < n; j++)
        pc[j] = j;
    for (; k < kmax; k++) {
        int64_t bi = k, bj = k;
        for (int64_t i = k; i < m; i++)
            for (int64_t j = k; j < n; j++)
                if (fabs(M[i * n + j]) > fabs(M[bi * n + bj]))
                    bi = i, bj = j;
        if (!(fabs(M[bi * n + bj]) > tol))
            break;
        for (int64_t j = 0; j < n; j++) { /* swap rows k, bi */
            double t = M[k * n + j];
            M[k * n + j] = M[bi * n + j];
            M[bi * n + j] = t;
        }
        for (int64_t i = 0; i < m; i++) { /* swap columns k, bj */
            double t = M[i * n + k];
            M[i * n + k] = M[i * n + bj];
            M[i * n + bj] = t;
        }
        int64_t t = pr[k];
        pr[k] = pr[bi];
        pr[bi] = t;
        t = pc[k];
        pc[k] = pc[bj];
        pc[bj] = t;
        for (int64_t i = k + 1; i < m; i++) {
            double l = M[i * n + k] / M[k * n + k];
            M[i * n + k] = l;
            for (int64_t j = k + 1; j < n; j++)
                M[i * n + j] -= l * M[k * n + j];
        }
    }
    memset(u, 0, sizeof *u * (size_t)(m * kmax));
    memset(v, 0, sizeof *v * (size_t)(kmax * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < k && c <= i; c++)
            u[pr[i] * kmax + c] = c == i ? 1.0 : M[i * n + c];
    for (int64_t c = 0; c < k; c++)
        for (int64_t j = c; j < n; j++)
            v[c * n + pc[j]] = M[c * n + j];
    free(pr);
    free(M);
    return k;
}

/* One layer's factors on the host: A (the outer factor, w1 or w1_a·w1_b), B1, B2. */
typedef struct kron_layer {
    double *a, *u, *v; /* A (a2, a1); its factors U (a2, min), V (min, a1) */
    int64_t a2, a1, k;
    float *b1, *b2; /* (dB2, R), (R, dB1) */
    int64_t db2, db1, r;
} kron_layer;

static bool read_layer(kg_ctx *ctx, const kg_module *d, kron_layer *kl)
{
    const kg_adapter *ad = &d->lin->ad;
    if (!ad->w2_a || !ad->w2_b)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_adapter_to_lora: layer \"%s\": w2 is held "
                            "whole (LoKr with a large rank); expected w2 = w2_a·w2_b", d->name);
    const kg_tensor *w1 = ad->w1 ? ad->w1 : ad->w1_a;
    kl->a2 = kg_tensor_dim(w1, 0);
    kl->a1 = ad->w1 ? kg_tensor_dim(w1, 1) : kg_tensor_dim(ad->w1_b, 1);
    if (kl->a2 > 1024 || kl->a1 > 1024) /* elimination costs a2·a1·min(a2, a1) */
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_model_adapter_to_lora: layer \"%s\": the outer "
                            "factor is %lld × %lld; expected at most 1024 × 1024", d->name,
                            (long long)kl->a2, (long long)kl->a1);
    int64_t mn = kl->a2 < kl->a1 ? kl->a2 : kl->a1;
    kl->a = malloc(sizeof *kl->a * (size_t)(kl->a2 * kl->a1));
    kl->u = malloc(sizeof *kl->u * (size_t)(kl->a2 * mn));
    kl->v = malloc(sizeof *kl->v * (size_t)(mn * kl->a1));
    if (!kl->a || !kl->u || !kl->v)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_adapter_to_lora: out of host memory");
    float *x = kg_tensor_to_f32(w1), *y = ad->w1 ? NULL : kg_tensor_to_f32(ad->w1_b);
    if (!x || (!ad->w1 && !y)) {
        free(x);
        return false;
    }
    int64_t ri = ad->w1 ? 0 : kg_tensor_dim(ad->w1_a, 1);
    for (int64_t i = 0; i < kl->a2; i++)
        for (int64_t j = 0; j < kl->a1; j++) {
            double s = 0;
            if (ad->w1)
                s = x[i * kl->a1 + j];
            for (int64_t q = 0; q < ri; q++)
                s += (double)x[i * ri + q] * y[q * kl->a1 + j];
            kl->a[i * kl->a1 + j] = s;
        }
    free(x);
    free(y);
    if ((kl->k = rank_factor(kl->a, kl->a2, kl->a1, kl->u, kl->v)) < 0)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_adapter_to_lora: out of host memory");
    kl->db2 = kg_tensor_dim(ad->w2_a, 0);
    kl->r = kg_tensor_dim(ad->w2_a, 1);
    kl->db1 = kg_tensor_dim(ad->w2_b, 1);
    kl->b1 = kg_tensor_to_f32(ad->w2_a);
    kl->b2 = kg_tensor_to_f32(ad->w2_b);
    return kl->b1 && kl->b2;
}

/* lora_B = U ⊗ B1 (a2·dB2, K·R) and lora_A = V ⊗ B2 (K·R, a1·dB1), K ≥ k (zero padding),
 * in torch.kron's element order: (P ⊗ Q)[i·q_rows + p, c·q_cols + s] = P[i, c]·Q[p, s]. */
static bool write_lora(kg_ctx *ctx, kg_linear *lin, const kron_layer *kl, int64_t K)
{
    int64_t kmax = kl->a2 < kl->a1 ? kl->a2 : kl->a1, R = kl->r, KR = K * R;
    int64_t out = kl->a2 * kl->db2, in = kl->a1 * kl->db1;
    float *b = calloc((size_t)(out * KR) + 1, sizeof *b), *a = calloc((size_t)(KR * in) + 1, sizeof *a);
    bool ok = a && b;
    for (int64_t i = 0; ok && i < kl->a2; i++)
        for (int64_t c = 0; c < kl->k; c++)
            for (int64_t p = 0; p < kl->db2; p++)
                for (int64_t q = 0; q < R; q++)
                    b[(i * kl->db2 + p) * KR + c * R + q] =
                        (float)(kl->u[i * kmax + c] * kl->b1[p * R + q]);
    for (int64_t c = 0; ok && c < kl->k; c++)
        for (int64_t j = 0; j < kl->a1; j++)
            for (int64_t q = 0; q < R; q++)
                for (int64_t s = 0; s < kl->db1; s++)
                    a[(c * R + q) * in + j * kl->db1 + s] =
                        (float)(kl->v[c * kl->a1 + j] * kl->b2[q * kl->db1 + s]);
    if (!ok)
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_adapter_to_lora: out of host memory");
    kg_scope scope = kg_scope_begin(ctx);
    ok = ok && kg_tensor_assign(lin->ad.lora_b, kg_from_host(ctx, KG_DTYPE_F32, 2,
                                                              (int64_t[]){out, KR}, b)) &&
         kg_tensor_assign(lin->ad.lora_a, kg_from_host(ctx, KG_DTYPE_F32, 2,
                                                        (int64_t[]){KR, in}, a));
    kg_scope_end(ctx, scope);
    free(a);
    free(b);
    return ok;
}

bool kg_model_adapter_to_lora(kg_model *m, int64_t *k_out)
{
    const char *fn = "kg_model_adapter_to_lora";
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    *k_out = 1;
    kg_adapter_kind kind = m->adapter.kind;
    if (kind == KG_ADAPTER_LORA)
        return true;
    if (kind != KG_ADAPTER_KRONLORA && kind != KG_ADAPTER_LOKR)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: the model's adapter is %s; expected kronlora, "
                            "lokr or lora", fn, kg_adapter_kind_name(kind));
    kg_module_list L;
    if (!kg__modules(ctx, &m->cfg, m, &L))
        return false;
    kron_layer *kl = calloc((size_t)L.n + 1, sizeof *kl);
    bool ok = kl || kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", fn);
    int64_t K = 1, R = -1;
    for (int i = 0; ok && i < L.n; i++) {
        kg_module *d = &L.mods[i];
        d->target = d->lin->kind != KG_LINEAR_DENSE;
        for (int t = 0; t < m->n_trainable && !d->target; t++) {
            size_t n = strlen(d->name);
            const char *name = m->trainable[t].name + strlen("base_model.model.");
            d->saved = d->saved || (strncmp(name, d->name, n) == 0 && name[n] == '.');
        }
        if (!d->target)
            continue;
        if (d->lin->ad.merged)
            ok = kg_set_error(ctx, KG_ERR_STATE, "%s: the adapter is merged; expected it apart",
                              fn);
        ok = ok && read_layer(ctx, d, &kl[i]);
        if (ok && R >= 0 && kl[i].r != R)
            ok = kg_set_error(ctx, KG_ERR_SHAPE, "%s: layer \"%s\" has rank %lld, another %lld; "
                              "expected one rank", fn, d->name, (long long)kl[i].r, (long long)R);
        R = kl[i].r;
        K = kl[i].k > K ? kl[i].k : K;
    }
    if (ok) {
        kg_adapter_config cfg = m->adapter;
        cfg.kind = KG_ADAPTER_LORA;
        cfg.rank = K * m->adapter.rank;
        cfg.alpha = m->adapter.alpha * (double)K; /* lora_alpha / (K·R) = alpha / R */
        kg__adapters_free(m); /* frees the old factors (kl holds host copies) */
        ok = kg__attach_chosen(m, &cfg, &L);
        for (int i = 0; ok && i < L.n; i++)
            if (L.mods[i].target)
                ok = write_lora(ctx, L.mods[i].lin, &kl[i], K);
    }
    for (int i = 0; kl && i < L.n; i++) {
        free(kl[i].a);
        free(kl[i].u);
        free(kl[i].v);
        free(kl[i].b1);
        free(kl[i].b2);
    }
    free(kl);
    free(L.mods);
    *k_out = K;
    return ok;
}

bool kg_export_peft(const kg_model *m, const char *dir, const char *base_model)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    char *tmp = temp_dir(m->ctx, "kg_export_peft", dir);
    return tmp && finish_dir(m->ctx, "kg_export_peft", tmp, dir,
                             kg_peft_save(m, tmp, base_model));
}
