/* model.c — loading a model (the config from config.json or GGUF metadata, then each family's
 * parameters, every shape checked against the config) and the calls every architecture shares:
 * hidden states, the head's logits, pooled embeddings and the KV cache.
 */
#include "models/arch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- The loader ----------------------------------------------------------------------------- */

const char *kg__base_prefix(const kg_weights *w, const char *base, const char *probe)
{
    if (!w) /* kg_model_random: the names of a head model's checkpoint */
        return base;
    char name[160];
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    snprintf(name, sizeof name, "%s%s", base, probe);
    return kg_weights_shape(w, name, &ndim, shape) ? base : "";
}

static bool add_param(kg_loader *ld, const char *name, kg_tensor *t)
{
    kg_model *m = ld->m;
    if (m->n_params == ld->cap) {
        int cap = ld->cap ? 2 * ld->cap : 64;
        kg_param *p = realloc(m->params, sizeof *p * (size_t)cap);
        if (!p)
            return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_load: out of host memory");
        m->params = p;
        ld->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_load: out of host memory");
    m->params[m->n_params++] = (kg_param){.name = copy, .tensor = t};
    return true;
}

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    int k = snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k > 0 && (size_t)k < cap; i++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k > 0 && (size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, "]");
}

/* kg_model_random's stand-in for a checkpoint tensor: matrices N(0, 0.02) (BERT's and
 * Mistral's initializer_range), norm weights 1, biases 0. */
static kg_tensor *random_param(kg_loader *ld, const char *name, int ndim, const int64_t *shape)
{
    kg_ctx *ctx = ld->m->ctx;
    bool norm = strstr(name, "norm") || strstr(name, "LayerNorm");
    uint64_t seed = ld->seed + (uint64_t)ld->m->n_params; /* one stream per tensor */
    kg_tensor *t = ndim == 2 ? kg_normal(ctx, 2, shape, 0.0f, 0.02f, seed)
                             : kg_full(ctx, KG_DTYPE_F32, 1, shape, norm ? 1.0 : 0.0);
    t = kg_tensor_keep(t);
    if (t && !add_param(ld, name, t)) {
        kg_tensor_free(t);
        return NULL;
    }
    return t;
}

/* Whether name is a linear weight of a transformer block ("model.layers.3.mlp.up_proj.weight",
 * "distilbert.transformer.layer.0.attention.q_lin.weight"): what kg_model_config.frozen stores. */
static bool frozen_linear(const char *name)
{
    size_t n = strlen(name);
    return (strstr(name, "layers.") || strstr(name, "layer.")) && n > 7 &&
           !strcmp(name + n - 7, ".weight") && !strstr(name, "norm") && !strstr(name, "LayerNorm");
}

/* A loaded or drawn f32 weight t stored as the model's frozen dtype: t is replaced (in the
 * parameter list too) and freed. GGUF weights packed in that very dtype arrive packed already; a
 * weight whose in-dimension is not a whole number of blocks stays f32. */
static kg_tensor *freeze(kg_loader *ld, kg_tensor *t)
{
    kg_dtype want = ld->m->cfg.frozen;
    if (!t || want == KG_DTYPE_F32 || kg_tensor_dtype(t) != KG_DTYPE_F32 ||
        kg_tensor_dim(t, 1) % kg_dtype_block(want))
        return t;
    kg_tensor *q = kg_tensor_keep(kg_quantize(t, want));
    kg_param *p = &ld->m->params[ld->m->n_params - 1]; /* t was the last one added */
    if (!q)
        return NULL; /* t stays listed, and is freed with the model */
    p->tensor = q;
    kg_tensor_free(t);
    return q;
}

static kg_tensor *load_param(kg_loader *ld, bool required, int64_t d0, int64_t d1,
                             const char *fmt, va_list ap)
{
    kg_ctx *ctx = ld->m->ctx;
    if (kg_ctx_status(ctx))
        return NULL;
    char name[192];
    vsnprintf(name, sizeof name, fmt, ap);
    int want_ndim = d1 ? 2 : 1, ndim;
    int64_t want[2] = {d0, d1}, got[KG_MAX_DIMS];
    bool frozen = d1 && ld->m->cfg.frozen != KG_DTYPE_F32 && frozen_linear(name);
    if (!ld->w) /* kg_model_random */
        return frozen ? freeze(ld, random_param(ld, name, want_ndim, want))
                      : random_param(ld, name, want_ndim, want);
    if (!kg_weights_shape(ld->w, name, &ndim, got)) {
        if (required)
            kg_set_error(ctx, KG_ERR_ARG, "kg_model_load: %s: no tensor '%s'; the model that %s "
                         "describes needs it", kg_weights_path(ld->w), name, ld->config_path);
        return NULL;
    }
    if (ndim != want_ndim || got[0] != d0 || (d1 && got[1] != d1)) {
        char a[96], b[96];
        shape_text(a, sizeof a, ndim, got);
        shape_text(b, sizeof b, want_ndim, want);
        kg_set_error(ctx, KG_ERR_SHAPE, "kg_model_load: %s: tensor '%s' is %s; %s implies %s",
                     kg_weights_path(ld->w), name, a, ld->config_path, b);
        return NULL;
    }
    /* Kept: parameters outlive every scope, whoever calls the loader. */
    /* A GGUF weight already packed in the asked-for format stays packed; any other is decoded
     * to f32 and stored as asked (freeze), so --frozen always means what it says. */
    kg_dtype packed = kg_weights_dtype(ld->w, name);
    kg_dtype as = frozen && packed == ld->m->cfg.frozen ? packed : KG_DTYPE_F32;
    kg_tensor *t = kg_tensor_keep(kg_weights_load(ld->w, name, as, want_ndim, want));
    if (t && !add_param(ld, name, t)) {
        kg_tensor_free(t);
        return NULL;
    }
    return frozen ? freeze(ld, t) : t;
}

kg_tensor *kg__param(kg_loader *ld, int64_t d0, int64_t d1, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg_tensor *t = load_param(ld, true, d0, d1, fmt, ap);
    va_end(ap);
    return t;
}

kg_tensor *kg__param_optional(kg_loader *ld, int64_t d0, int64_t d1, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kg_tensor *t = load_param(ld, false, d0, d1, fmt, ap);
    va_end(ap);
    return t;
}

kg_linear kg__linear(kg_loader *ld, const char *name, int64_t out, int64_t in, bool bias)
{
    return (kg_linear){.kind = KG_LINEAR_DENSE,
                       .weight = kg__param(ld, out, in, "%s.weight", name),
                       .bias = bias ? kg__param(ld, out, 0, "%s.bias", name) : NULL};
}

/* ---- Loading -------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* config.json in the directory path, or beside the file path. */
static char *config_path_of(const char *path, bool dir)
{
    const char *slash = strrchr(path, '/');
    size_t stem = dir ? strlen(path) : slash ? (size_t)(slash - path) : 0;
    char *out = malloc(stem + sizeof "/config.json");
    if (out)
        snprintf(out, stem + sizeof "/config.json", "%.*s%sconfig.json", (int)stem, path,
                 dir || slash ? "/" : "");
    return out;
}

kg_model *kg_model_load(kg_ctx *ctx, const char *path)
{
    return kg_model_load_frozen(ctx, path, KG_DTYPE_F32);
}

kg_model *kg_model_load_frozen(kg_ctx *ctx, const char *path, kg_dtype frozen)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (frozen == KG_DTYPE_I32 || (unsigned)frozen >= KG_DTYPE_COUNT) {
        kg_set_error(ctx, KG_ERR_DTYPE, "kg_model_load: frozen dtype %d; expected f32, f16, bf16, "
                     "q8_0, q4_0, q4_1 or nf4", (int)frozen);
        return NULL;
    }
    if (!path) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_model_load: path is NULL");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_model_load: %s: no such file or directory; expected an "
                     "HF model directory, a .safetensors file or a .gguf file", path);
        return NULL;
    }
    kg_model *m = calloc(1, sizeof *m);
    bool gguf = ends_with(path, ".gguf");
    char *config = gguf ? strdup(path) : config_path_of(path, S_ISDIR(st.st_mode));
    if (!m || !config) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_load: out of host memory");
        free(m);
        free(config);
        return NULL;
    }
    m->ctx = ctx;
    kg_weights *w = NULL;
    /* The config first: a bad config.json is named before any weight file is opened. */
    if (gguf) {
        w = kg_weights_open(ctx, path);
        kg_model_config_from_gguf(ctx, w, &m->cfg);
    } else if (kg_model_config_read(ctx, config, &m->cfg)) {
        w = kg_weights_open(ctx, path);
    }
    m->cfg.frozen = frozen;
    if (w && !kg_ctx_status(ctx)) {
        kg_loader ld = {.m = m, .w = w, .config_path = config};
        if (m->cfg.arch == KG_ARCH_DISTILBERT || m->cfg.arch == KG_ARCH_BERT)
            kg__bert_load(&ld);
        else
            kg__decoder_load(&ld);
    }
    kg_weights_close(w);
    free(config);
    if (kg_ctx_status(ctx)) {
        kg_model_free(m);
        return NULL;
    }
    return m;
}

kg_model *kg_model_random(kg_ctx *ctx, const kg_model_config *cfg, uint64_t seed)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (!cfg) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_model_random: cfg is NULL");
        return NULL;
    }
    kg_model *m = calloc(1, sizeof *m);
    if (!m) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_random: out of host memory");
        return NULL;
    }
    *m = (kg_model){.ctx = ctx, .cfg = *cfg};
    kg_loader ld = {.m = m, .config_path = "the config given", .seed = seed};
    if (cfg->arch == KG_ARCH_DISTILBERT || cfg->arch == KG_ARCH_BERT)
        kg__bert_load(&ld);
    else
        kg__decoder_load(&ld);
    if (kg_ctx_status(ctx)) {
        kg_model_free(m);
        return NULL;
    }
    return m;
}

void kg_model_free(kg_model *m)
{
    if (!m)
        return;
    kg__adapters_free(m);
    for (int i = 0; i < m->n_params; i++) {
        kg_tensor_free(m->params[i].tensor);
        free(m->params[i].name);
    }
    free(m->params);
    free(m->layers);
    free(m);
}

/* ---- Forward -------------------------------------------------------------------------------- */

/* ids, mask and types as (N, T) (multiple choice: (B, K, T) flattened to N = B·K rows). */
typedef struct flat_input {
    kg_tensor *ids, *keep, *types;
    int64_t B, K; /* K = 0 unless multiple choice */
} flat_input;

static bool flatten(const kg_model *m, const char *fn, const kg_model_input *in, flat_input *f)
{
    kg_ctx *ctx = m->ctx;
    *f = (flat_input){0};
    if (kg_ctx_status(ctx))
        return false;
    if (!in || !in->ids)
        return kg_set_error(ctx, KG_ERR_ARG, "%s: no input ids", fn);
    bool mc = m->cfg.head == KG_HEAD_MULTIPLE_CHOICE;
    int nd = kg_tensor_ndim(in->ids);
    if (kg_tensor_dtype(in->ids) != KG_DTYPE_I32 || (nd != 2 && !(mc && nd == 3)))
        return kg_set_error(ctx, KG_ERR_SHAPE, "%s: ids are %s with %d dims; expected i32 (B, "
                            "T)%s", fn, kg_dtype_name(kg_tensor_dtype(in->ids)), nd,
                            mc ? " or (B, K, T) for multiple choice" : "");
    *f = (flat_input){.ids = in->ids, .keep = in->attention_mask, .types = in->token_types,
                      .B = kg_tensor_dim(in->ids, 0), .K = nd == 3 ? kg_tensor_dim(in->ids, 1)
                                                                   : 0};
    if (nd == 3) {
        int64_t rows = f->B * f->K;
        f->ids = kg_reshape(f->ids, 2, (int64_t[]){rows, -1});
        if (f->keep)
            f->keep = kg_reshape(f->keep, 2, (int64_t[]){rows, -1});
        if (f->types)
            f->types = kg_reshape(f->types, 2, (int64_t[]){rows, -1});
    }
    return !kg_ctx_status(ctx);
}

/* The last hidden states (B, T, C); first_only: an encoder may give position 0's alone (its
 * heads and CLS pooling read nothing else). */
static kg_tensor *hidden_of(const kg_model *m, const flat_input *f, kg_kv_cache *cache,
                            bool first_only)
{
    if (m->cfg.arch == KG_ARCH_DISTILBERT || m->cfg.arch == KG_ARCH_BERT) {
        if (cache) {
            kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_hidden: a KV cache was given to an "
                         "encoder; only decoders generate");
            return NULL;
        }
        return kg__bert_hidden(m, f->ids, f->keep, f->types, first_only);
    }
    return kg__decoder_hidden(m, f->ids, f->keep, cache, NULL);
}

kg_tensor *kg_model_hidden(const kg_model *m, const kg_model_input *in, kg_kv_cache *cache)
{
    flat_input f;
    if (!m || !flatten(m, "kg_model_hidden", in, &f))
        return NULL;
    return hidden_of(m, &f, cache, false);
}

kg_tensor *kg_model_hidden_prefixed(const kg_model *m, kg_tensor *ids,
                                    const kg_prefix_layout *l)
{
    if (!m || !l || kg_ctx_status(m->ctx))
        return NULL;
    if (m->cfg.arch == KG_ARCH_DISTILBERT || m->cfg.arch == KG_ARCH_BERT)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_hidden_prefixed: an encoder's prompt "
                            "attends to what follows it; only decoders share prompts"), NULL;
    if (!ids || kg_tensor_dtype(ids) != KG_DTYPE_I32 || kg_tensor_ndim(ids) != 1 ||
        kg_tensor_dim(ids, 0) != l->G * l->Lp + l->R * l->S)
        return kg_set_error(m->ctx, KG_ERR_SHAPE, "kg_model_hidden_prefixed: ids are not i32 "
                            "(G·Lp + R·S = %lld)", (long long)(l->G * l->Lp + l->R * l->S)),
               NULL;
    return kg__decoder_hidden(m, ids, NULL, NULL, l);
}

kg_tensor *kg_model_logits(const kg_model *m, const kg_model_input *in, kg_kv_cache *cache)
{
    flat_input f;
    if (!m || !flatten(m, "kg_model_logits", in, &f))
        return NULL;
    switch (m->cfg.head) {
    case KG_HEAD_CAUSAL_LM:
        return kg_linear_forward(&m->lm_head, hidden_of(m, &f, cache, false)); /* (B, T, V) */
    case KG_HEAD_MULTIPLE_CHOICE: {
        kg_tensor *scores = kg__bert_head(m, hidden_of(m, &f, cache, true)); /* (B·K, 1) */
        return f.K ? kg_reshape(scores, 2, (int64_t[]){f.B, f.K}) : scores;
    }
    case KG_HEAD_SEQ_CLASSIFICATION:
        return kg__bert_head(m, hidden_of(m, &f, cache, true));
    case KG_HEAD_NONE:
        break;
    }
    kg_set_error(m->ctx, KG_ERR_STATE, "kg_model_logits: the model has no head (config.json's "
                 "architectures name a base model); use kg_model_hidden or kg_model_embed");
    return NULL;
}

kg_kv_cache *kg_model_cache_new(const kg_model *m, int64_t B, int64_t max_len)
{
    if (!m)
        return NULL;
    if (m->cfg.arch != KG_ARCH_MISTRAL && m->cfg.arch != KG_ARCH_LLAMA) {
        kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_cache_new: only decoders have a KV cache");
        return NULL;
    }
    return kg_kv_cache_new(m->ctx, (int)m->cfg.n_layers, B, m->cfg.n_kv_heads, max_len,
                           m->cfg.head_dim);
}

kg_tensor *kg_model_embed(const kg_model *m, const kg_model_input *in, kg_pool pool)
{
    flat_input f;
    if (!m || !flatten(m, "kg_model_embed", in, &f))
        return NULL;
    kg_tensor *h = hidden_of(m, &f, NULL, pool == KG_POOL_CLS); /* (B, T or 1, C) */
    int64_t B = kg_tensor_dim(f.ids, 0), C = m->cfg.hidden_size;
    if (pool == KG_POOL_CLS)
        return kg_reshape(kg_slice(h, 1, 0, 1), 2, (int64_t[]){B, C});
    if (!f.keep)
        return kg_mean(h, 1, false);
    /* Σ_t h·keep / Σ_t keep: padding rows count for nothing (sentence-transformers). */
    kg_tensor *keep = kg_reshape(kg_cast(f.keep, KG_DTYPE_F32), 3, (int64_t[]){B, -1, 1});
    return kg_div(kg_sum(kg_mul(h, keep), 1, false), kg_sum(keep, 1, false));
}

/* ---- Blocks in scopes of their own (arch.h) ------------------------------------------------ */

kg__blocks kg__blocks_begin(kg_ctx *ctx)
{
    return (kg__blocks){.ctx = ctx, .scoped = !kg_grad_enabled(ctx)};
}

void kg__block_begin(kg__blocks *b)
{
    if (b->scoped)
        b->scope = kg_scope_begin(b->ctx);
}

kg_tensor *kg__block_end(kg__blocks *b, kg_tensor *x)
{
    if (!b->scoped)
        return x;
    kg_tensor_keep(x); /* then the scope's end frees the block's intermediates only */
    kg_scope_end(b->ctx, b->scope);
    kg_tensor_free(b->held); /* the block's input, unless it was the caller's */
    b->held = x;
    return x;
}

kg_tensor *kg__blocks_end(kg__blocks *b, kg_tensor *x)
{
    if (x && x == b->held) {
        /* A view in the caller's scope shares the storage; the kept header goes. */
        int64_t shape[KG_MAX_DIMS];
        for (int d = 0; d < kg_tensor_ndim(x); d++)
            shape[d] = kg_tensor_dim(x, d);
        x = kg_reshape(x, kg_tensor_ndim(x), shape);
    }
    kg_tensor_free(b->held);
    b->held = NULL;
    return x;
}
