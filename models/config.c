/* config.c — a model's configuration (kg_model_config) from an HF config.json, read with
 * jansson, or from a GGUF file's llama.* metadata. Each architecture's keys and defaults are
 * those of its transformers config class; anything krongrad cannot run (RoPE scaling, another
 * activation) is an error naming the key rather than a model that runs wrong.
 */
#include "models/kg_models.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The config.json being read: errors name its path and the key. */
typedef struct reader {
    kg_ctx *ctx;
    const char *path;
    const json_t *root;
} reader;

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a JSON value";
}

static bool bad_key(const reader *r, const char *key, const json_t *v, const char *expected)
{
    return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: key '%s' is %s; expected "
                        "%s", r->path, key, v ? json_kind(v) : "missing", expected);
}

/* An integer key; absent or null gives dflt, or an error when required. */
static bool get_int(const reader *r, const char *key, bool required, int64_t dflt, int64_t *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return !required || bad_key(r, key, NULL, "an integer");
    }
    if (!json_is_integer(v))
        return bad_key(r, key, v, "an integer");
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* A size: an integer >= 1. */
static bool get_size(const reader *r, const char *key, bool required, int64_t dflt, int64_t *out)
{
    if (!get_int(r, key, required, dflt, out))
        return false;
    if (*out < 1 || *out > (int64_t)1 << 40)
        return kg_set_error(r->ctx, KG_ERR_RANGE, "kg_model_config_read: %s: key '%s' is %lld; "
                            "expected a size from 1 to 2^40", r->path, key, (long long)*out);
    return true;
}

static bool get_number(const reader *r, const json_t *obj, const char *key, double dflt,
                       double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return true;
    }
    if (!json_is_number(v))
        return bad_key(r, key, v, "a number");
    *out = json_number_value(v);
    return true;
}

static bool get_bool(const reader *r, const char *key, bool dflt, bool *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return true;
    }
    if (!json_is_boolean(v))
        return bad_key(r, key, v, "true or false");
    *out = json_is_true(v);
    return true;
}

/* A token id: an integer, null (none: -1) or a list whose first entry is taken (Llama 3 lists
 * several EOS ids). */
static bool get_token(const reader *r, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    *out = -1;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad_key(r, key, v, "a token id (an integer >= 0), a list of them, or null");
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* A string key that must be one of the values krongrad implements (absent: the default). */
static bool want_string(const reader *r, const char *key, const char *dflt, const char *allowed)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return bad_key(r, key, v, "a string");
    const char *s = json_string_value(v);
    if (strcmp(s, dflt) == 0 || (allowed && strcmp(s, allowed) == 0))
        return true;
    return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: key '%s' is \"%s\"; "
                        "krongrad implements \"%s\"%s%s%s", r->path, key, s, dflt,
                        allowed ? " and \"" : "", allowed ? allowed : "", allowed ? "\"" : "");
}

/* The head from "architectures"[0]: the class name's suffix. */
static bool read_head(const reader *r, kg_model_config *c)
{
    const json_t *archs = json_object_get(r->root, "architectures");
    c->head = c->arch == KG_ARCH_MISTRAL || c->arch == KG_ARCH_LLAMA ? KG_HEAD_CAUSAL_LM
                                                                      : KG_HEAD_NONE;
    if (!archs || json_is_null(archs))
        return true;
    const json_t *first = json_array_get(archs, 0);
    if (!json_is_array(archs) || !json_is_string(first))
        return bad_key(r, "architectures", archs, "a list of class names");
    static const struct {
        const char *suffix;
        kg_model_head head;
    } heads[] = {
        {"ForCausalLM", KG_HEAD_CAUSAL_LM},
        {"ForMultipleChoice", KG_HEAD_MULTIPLE_CHOICE},
        {"ForSequenceClassification", KG_HEAD_SEQ_CLASSIFICATION},
    };
    const char *name = json_string_value(first);
    size_t n = strlen(name);
    c->head = KG_HEAD_NONE;
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        size_t k = strlen(heads[i].suffix);
        if (n >= k && strcmp(name + n - k, heads[i].suffix) == 0)
            c->head = heads[i].head;
    }
    if (c->head == KG_HEAD_CAUSAL_LM && c->arch != KG_ARCH_MISTRAL && c->arch != KG_ARCH_LLAMA)
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: architectures[0] is "
                            "\"%s\"; an encoder has no causal-LM head", r->path, name);
    if ((c->head == KG_HEAD_MULTIPLE_CHOICE || c->head == KG_HEAD_SEQ_CLASSIFICATION) &&
        (c->arch == KG_ARCH_MISTRAL || c->arch == KG_ARCH_LLAMA))
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: architectures[0] is "
                            "\"%s\"; krongrad implements only the causal-LM head of decoders",
                            r->path, name);
    /* num_labels is written as id2label (transformers drops "num_labels" on save). */
    const json_t *labels = json_object_get(r->root, "id2label");
    c->num_labels = json_is_object(labels) ? (int64_t)json_object_size(labels) : 2;
    return c->num_labels > 0 || bad_key(r, "id2label", labels, "at least one label");
}

static bool read_distilbert(const reader *r, kg_model_config *c)
{
    c->norm_eps = 1e-12; /* fixed in modeling_distilbert.py */
    return get_size(r, "vocab_size", true, 0, &c->vocab_size) &&
           get_size(r, "dim", true, 0, &c->hidden_size) &&
           get_size(r, "n_layers", true, 0, &c->n_layers) &&
           get_size(r, "n_heads", true, 0, &c->n_heads) &&
           get_size(r, "hidden_dim", true, 0, &c->intermediate_size) &&
           get_size(r, "max_position_embeddings", false, 512, &c->max_positions) &&
           want_string(r, "activation", "gelu", NULL);
}

static bool read_bert(const reader *r, kg_model_config *c)
{
    return get_size(r, "vocab_size", true, 0, &c->vocab_size) &&
           get_size(r, "hidden_size", true, 0, &c->hidden_size) &&
           get_size(r, "num_hidden_layers", true, 0, &c->n_layers) &&
           get_size(r, "num_attention_heads", true, 0, &c->n_heads) &&
           get_size(r, "intermediate_size", true, 0, &c->intermediate_size) &&
           get_size(r, "max_position_embeddings", false, 512, &c->max_positions) &&
           get_size(r, "type_vocab_size", false, 2, &c->type_vocab_size) &&
           get_number(r, r->root, "layer_norm_eps", 1e-12, &c->norm_eps) &&
           want_string(r, "hidden_act", "gelu", NULL) &&
           want_string(r, "position_embedding_type", "absolute", NULL);
}

/* A dropout probability (absent or null: dflt), 0 <= p < 1. */
static bool get_prob(const reader *r, const char *key, double dflt, float *out)
{
    double p = 0.0;
    if (!get_number(r, r->root, key, dflt, &p))
        return false;
    if (!(p >= 0.0 && p < 1.0))
        return kg_set_error(r->ctx, KG_ERR_RANGE, "kg_model_config_read: %s: key '%s' is %g; "
                            "expected a dropout probability, 0 <= p < 1", r->path, key, p);
    *out = (float)p;
    return true;
}

/* What model.train() drops, under each family's keys and transformers' defaults. */
static bool read_dropout(const reader *r, kg_model_config *c)
{
    switch (c->arch) {
    case KG_ARCH_DISTILBERT:
        return get_prob(r, "dropout", 0.1, &c->hidden_dropout) &&
               get_prob(r, "attention_dropout", 0.1, &c->attention_dropout) &&
               get_prob(r, "seq_classif_dropout", 0.2, &c->classifier_dropout);
    case KG_ARCH_BERT:
        return get_prob(r, "hidden_dropout_prob", 0.1, &c->hidden_dropout) &&
               get_prob(r, "attention_probs_dropout_prob", 0.1, &c->attention_dropout) &&
               get_prob(r, "classifier_dropout", c->hidden_dropout, &c->classifier_dropout);
    case KG_ARCH_MISTRAL:
    case KG_ARCH_LLAMA:
        return get_prob(r, "attention_dropout", 0.0, &c->attention_dropout);
    }
    return true;
}

/* RoPE's base: the top-level "rope_theta" (transformers 4) or "rope_parameters" (5); only the
 * plain rotation is implemented. */
static bool read_rope(const reader *r, kg_model_config *c)
{
    const json_t *params = json_object_get(r->root, "rope_parameters");
    const json_t *scaling = json_object_get(r->root, "rope_scaling");
    if (scaling && !json_is_null(scaling))
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: key 'rope_scaling' "
                            "is set; krongrad implements only unscaled RoPE", r->path);
    if (!get_number(r, r->root, "rope_theta", 10000.0, &c->rope_theta))
        return false;
    if (params && !json_is_null(params)) {
        if (!json_is_object(params))
            return bad_key(r, "rope_parameters", params, "an object");
        const json_t *type = json_object_get(params, "rope_type");
        if (type && !(json_is_string(type) && strcmp(json_string_value(type), "default") == 0))
            return kg_set_error(r->ctx, KG_ERR_ARG, "kg_model_config_read: %s: key "
                                "'rope_parameters.rope_type' is %s%s%s; krongrad implements "
                                "\"default\"", r->path, json_is_string(type) ? "\"" : "",
                                json_is_string(type) ? json_string_value(type) : json_kind(type),
                                json_is_string(type) ? "\"" : "");
        if (!get_number(r, params, "rope_theta", c->rope_theta, &c->rope_theta))
            return false;
    }
    if (!(c->rope_theta > 0))
        return kg_set_error(r->ctx, KG_ERR_RANGE, "kg_model_config_read: %s: rope_theta is %g; "
                            "expected > 0", r->path, c->rope_theta);
    return true;
}

static bool read_decoder(const reader *r, kg_model_config *c)
{
    if (!(get_size(r, "vocab_size", true, 0, &c->vocab_size) &&
          get_size(r, "hidden_size", true, 0, &c->hidden_size) &&
          get_size(r, "num_hidden_layers", true, 0, &c->n_layers) &&
          get_size(r, "num_attention_heads", true, 0, &c->n_heads) &&
          get_size(r, "num_key_value_heads", false, c->n_heads, &c->n_kv_heads) &&
          get_size(r, "intermediate_size", true, 0, &c->intermediate_size) &&
          get_size(r, "max_position_embeddings", false, 4096, &c->max_positions) &&
          get_number(r, r->root, "rms_norm_eps", 1e-6, &c->norm_eps) &&
          get_bool(r, "tie_word_embeddings", false, &c->tie_word_embeddings) &&
          want_string(r, "hidden_act", "silu", NULL) && read_rope(r, c)))
        return false;
    if (c->hidden_size % c->n_heads && !json_object_get(r->root, "head_dim"))
        return kg_set_error(r->ctx, KG_ERR_SHAPE, "kg_model_config_read: %s: hidden_size %lld "
                            "is not a multiple of num_attention_heads %lld and there is no "
                            "head_dim", r->path, (long long)c->hidden_size,
                            (long long)c->n_heads);
    if (!get_size(r, "head_dim", false, c->hidden_size / c->n_heads, &c->head_dim))
        return false;
    if (c->arch == KG_ARCH_MISTRAL) {
        int64_t w = 0;
        if (!get_int(r, "sliding_window", false, 0, &w))
            return false;
        if (w < 0)
            return kg_set_error(r->ctx, KG_ERR_RANGE, "kg_model_config_read: %s: key "
                                "'sliding_window' is %lld; expected null or a size >= 1",
                                r->path, (long long)w);
        c->sliding_window = w;
    } else if (!get_bool(r, "attention_bias", false, &c->attention_bias) ||
               !get_bool(r, "mlp_bias", false, &c->mlp_bias)) {
        return false;
    }
    return true;
}

/* What every architecture's numbers must satisfy, whichever file they came from. */
static bool check_config(kg_ctx *ctx, const char *fn, const char *path, kg_model_config *c)
{
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    if (c->head_dim == 0)
        c->head_dim = c->hidden_size / c->n_heads;
    if (c->arch == KG_ARCH_DISTILBERT || c->arch == KG_ARCH_BERT) {
        if (c->hidden_size % c->n_heads)
            return kg_set_error(ctx, KG_ERR_SHAPE, "%s: %s: hidden size %lld is not a multiple "
                                "of the %lld heads", fn, path, (long long)c->hidden_size,
                                (long long)c->n_heads);
    }
    if (c->n_heads % c->n_kv_heads)
        return kg_set_error(ctx, KG_ERR_SHAPE, "%s: %s: %lld attention heads are not a multiple "
                            "of the %lld key/value heads", fn, path, (long long)c->n_heads,
                            (long long)c->n_kv_heads);
    if (c->head_dim % 2 && (c->arch == KG_ARCH_MISTRAL || c->arch == KG_ARCH_LLAMA))
        return kg_set_error(ctx, KG_ERR_SHAPE, "%s: %s: head dim %lld; RoPE needs an even one",
                            fn, path, (long long)c->head_dim);
    if (!(c->norm_eps > 0))
        return kg_set_error(ctx, KG_ERR_RANGE, "%s: %s: norm epsilon %g; expected > 0", fn, path,
                            c->norm_eps);
    return true;
}

bool kg_model_config_read(kg_ctx *ctx, const char *path, kg_model_config *cfg)
{
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!path || !cfg)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_read: path or cfg is NULL");
    *cfg = (kg_model_config){0};
    char file[4096]; /* a directory means the config.json inside it */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (snprintf(file, sizeof file, "%s/config.json", path) >= (int)sizeof file)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_read: path too long: %s", path);
        path = file;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_read: %s: not a readable JSON file "
                            "(line %d, column %d: %s)", path, jerr.line, jerr.column, jerr.text);
    reader r = {ctx, path, root};
    bool ok = false;
    const json_t *type = json_object_get(root, "model_type");
    if (!json_is_object(root)) {
        bad_key(&r, "(top level)", root, "an object");
    } else if (!json_is_string(type)) {
        bad_key(&r, "model_type", type, "a string");
    } else {
        static const struct {
            const char *name;
            kg_arch arch;
            bool (*read)(const reader *, kg_model_config *);
        } archs[] = {
            {"distilbert", KG_ARCH_DISTILBERT, read_distilbert},
            {"bert", KG_ARCH_BERT, read_bert},
            {"mistral", KG_ARCH_MISTRAL, read_decoder},
            {"llama", KG_ARCH_LLAMA, read_decoder},
        };
        const char *name = json_string_value(type);
        size_t i = 0, n = sizeof archs / sizeof archs[0];
        while (i < n && strcmp(name, archs[i].name) != 0)
            i++;
        if (i == n) {
            kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_read: %s: model_type \"%s\" is not "
                         "supported; expected distilbert, bert, mistral or llama", path, name);
        } else {
            cfg->arch = archs[i].arch;
            ok = archs[i].read(&r, cfg) && read_head(&r, cfg) && read_dropout(&r, cfg) &&
                 get_token(&r, "pad_token_id", &cfg->pad_token_id) &&
                 get_token(&r, "bos_token_id", &cfg->bos_token_id) &&
                 get_token(&r, "eos_token_id", &cfg->eos_token_id) &&
                 check_config(ctx, "kg_model_config_read", path, cfg);
        }
    }
    json_decref(root);
    return ok;
}

/* ---- GGUF ----------------------------------------------------------------------------------- */

static bool meta_size(kg_ctx *ctx, const kg_weights *w, const char *key, bool required,
                      int64_t dflt, int64_t *out)
{
    if (!kg_weights_meta_int(w, key, out)) {
        *out = dflt;
        if (required)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: %s: metadata key "
                                "'%s' is missing or not an integer", kg_weights_path(w), key);
        return true;
    }
    if (*out < 1 || *out > (int64_t)1 << 40)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_model_config_from_gguf: %s: metadata key "
                            "'%s' is %lld; expected a size from 1 to 2^40", kg_weights_path(w),
                            key, (long long)*out);
    return true;
}

static int64_t meta_token(const kg_weights *w, const char *key)
{
    int64_t id;
    return kg_weights_meta_int(w, key, &id) && id >= 0 ? id : -1;
}

bool kg_model_config_from_gguf(kg_ctx *ctx, const kg_weights *w, kg_model_config *cfg)
{
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!w || !cfg)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: w or cfg is NULL");
    const char *path = kg_weights_path(w);
    const char *arch = kg_weights_meta_str(w, "general.architecture");
    if (!arch || strcmp(arch, "llama") != 0)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: %s: "
                            "general.architecture is %s%s%s; krongrad reads \"llama\" GGUF files",
                            path, arch ? "\"" : "", arch ? arch : "missing", arch ? "\"" : "");
    const char *scaling = kg_weights_meta_str(w, "llama.rope.scaling.type");
    if (scaling && strcmp(scaling, "none") != 0)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: %s: "
                            "llama.rope.scaling.type is \"%s\"; krongrad implements only "
                            "unscaled RoPE", path, scaling);
    *cfg = (kg_model_config){.arch = KG_ARCH_LLAMA, .head = KG_HEAD_CAUSAL_LM};
    int ndim;
    int64_t emb[KG_MAX_DIMS];
    if (!kg_weights_shape(w, "model.embed_tokens.weight", &ndim, emb) || ndim != 2)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: %s: tensor "
                            "token_embd.weight is missing or not a matrix", path);
    if (!(meta_size(ctx, w, "llama.embedding_length", true, 0, &cfg->hidden_size) &&
          meta_size(ctx, w, "llama.block_count", true, 0, &cfg->n_layers) &&
          meta_size(ctx, w, "llama.feed_forward_length", true, 0, &cfg->intermediate_size) &&
          meta_size(ctx, w, "llama.attention.head_count", true, 0, &cfg->n_heads) &&
          meta_size(ctx, w, "llama.attention.head_count_kv", false, cfg->n_heads,
                    &cfg->n_kv_heads) &&
          meta_size(ctx, w, "llama.context_length", false, 4096, &cfg->max_positions) &&
          meta_size(ctx, w, "llama.vocab_size", false, emb[0], &cfg->vocab_size)))
        return false;
    if (!meta_size(ctx, w, "llama.attention.key_length", false,
                   cfg->hidden_size / cfg->n_heads, &cfg->head_dim))
        return false;
    if (!kg_weights_meta_float(w, "llama.rope.freq_base", &cfg->rope_theta))
        cfg->rope_theta = 10000.0;
    if (!kg_weights_meta_float(w, "llama.attention.layer_norm_rms_epsilon", &cfg->norm_eps))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_model_config_from_gguf: %s: metadata key "
                            "'llama.attention.layer_norm_rms_epsilon' is missing", path);
    if (!(cfg->rope_theta > 0))
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_model_config_from_gguf: %s: "
                            "llama.rope.freq_base is %g; expected > 0", path, cfg->rope_theta);
    /* llama.cpp writes no output.weight when the head is tied to the embedding. */
    cfg->tie_word_embeddings = !kg_weights_shape(w, "lm_head.weight", &ndim, emb);
    cfg->bos_token_id = meta_token(w, "tokenizer.ggml.bos_token_id");
    cfg->eos_token_id = meta_token(w, "tokenizer.ggml.eos_token_id");
    cfg->pad_token_id = meta_token(w, "tokenizer.ggml.padding_token_id");
    return check_config(ctx, "kg_model_config_from_gguf", path, cfg);
}
