/* peft.c — adapter directories in PEFT's format (adapter_config.json + adapter_model.safetensors,
 * PEFT's key names): LoRA as "LORA", LoKr and square-A Kron-LoRA as "LOKR", other Kron-LoRA
 * shapes as krongrad's "KRONLORA" (docs/adapter-format.md); both read back, every tensor checked
 * against the layer it belongs to; int8 / int4 quantized adapters (codes + per-row scales) both
 * ways. Also a full fine-tune's weights file.
 */
#include "models/adapters.h"
#include "tensor/file_atomic.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PREFIX "base_model.model."
#define QSCALE ".qscale" /* the key suffix of a quantized factor's per-row scales */

/* Whether a PEFT tensor name is an adapter factor: what int8 / int4 quantization applies to. */
static bool is_factor(const char *name)
{
    size_t n = strlen(name), q = strlen(QSCALE);
    return (strstr(name, ".lora_A.") || strstr(name, ".lora_B.") || strstr(name, ".lokr_w")) &&
           !(n > q && strcmp(name + n - q, QSCALE) == 0);
}

bool kg_model_quantize_adapter(kg_model *m, int bits)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    if (bits != 8 && bits != 4)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_quantize_adapter: %d bits; expected 8 "
                            "or 4", bits);
    bool ok = true;
    for (int i = 0; ok && i < m->n_trainable; i++)
        if (is_factor(m->trainable[i].name))
            ok = kg_adapter_quantize_factor(m->trainable[i].tensor, bits);
    return ok;
}

/* ---- Saving ------------------------------------------------------------------------------- */

/* Write text to path atomically (tensor/file_atomic.c). */
static bool write_atomic(kg_ctx *ctx, const char *path, const char *text)
{
    char *tmp;
    FILE *fp = kg__atomic_open(ctx, path, &tmp);
    return fp && kg__atomic_close(ctx, fp, tmp, path, fputs(text, fp) >= 0);
}

/* PEFT's target_modules for the adapted layers: their last names ("q_lin") when those select
 * exactly the adapted layers, else their full paths. */
static json_t *target_list(const kg_module_list *L)
{
    json_t *names = json_array();
    bool exact = true;
    for (int i = 0; i < L->n; i++) {
        if (!L->mods[i].target)
            continue;
        const char *dot = strrchr(L->mods[i].name, '.');
        const char *last = dot ? dot + 1 : L->mods[i].name;
        bool seen = false;
        for (size_t k = 0; k < json_array_size(names); k++)
            seen = seen || strcmp(json_string_value(json_array_get(names, k)), last) == 0;
        if (!seen)
            json_array_append_new(names, json_string(last));
    }
    for (int i = 0; exact && i < L->n; i++) {
        const char *name = L->mods[i].name, *dot = strrchr(name, '.');
        const char *last = dot ? dot + 1 : name;
        for (size_t k = 0; k < json_array_size(names); k++)
            if (strcmp(json_string_value(json_array_get(names, k)), last) == 0 &&
                !L->mods[i].target)
                exact = false;
    }
    if (exact)
        return names;
    json_array_clear(names);
    for (int i = 0; i < L->n; i++)
        if (L->mods[i].target)
            json_array_append_new(names, json_string(L->mods[i].name));
    return names;
}

/* Tensors to write, with their names (owned here). */
typedef struct out_list {
    char **names;
    kg_tensor **tensors;
    int n, cap;
} out_list;

static bool out_add(kg_ctx *ctx, out_list *o, const char *path, const char *leaf, kg_tensor *t)
{
    if (!t)
        return true;
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        char **n = realloc(o->names, sizeof *n * (size_t)cap);
        if (n)
            o->names = n;
        kg_tensor **t2 = n ? realloc(o->tensors, sizeof *t2 * (size_t)cap) : NULL;
        if (!t2)
            return kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
        o->tensors = t2;
        o->cap = cap;
    }
    size_t len = strlen(PREFIX) + strlen(path) + strlen(leaf) + 2;
    char *name = malloc(len);
    if (!name)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
    snprintf(name, len, PREFIX "%s.%s", path, leaf);
    o->names[o->n] = name;
    o->tensors[o->n++] = t;
    return true;
}

/* The adapter config JSON of m (type: "LORA", "LOKR" or "KRONLORA"). */
static json_t *config_json(const kg_model *m, const char *type, const kg_module_list *L,
                           const char *base_model)
{
    const kg_adapter_config *a = &m->adapter;
    json_t *saved = json_array();
    for (int i = 0; i < L->n; i++)
        if (L->mods[i].saved)
            json_array_append_new(saved, json_string(L->mods[i].save_as));
    if (!json_array_size(saved)) {
        json_decref(saved);
        saved = json_null();
    }
    json_t *c = json_object();
    json_object_set_new(c, "peft_type", json_string(type));
    json_object_set_new(c, "base_model_name_or_path", json_string(base_model ? base_model : ""));
    json_object_set_new(c, "task_type", m->cfg.head == KG_HEAD_CAUSAL_LM ? json_string("CAUSAL_LM")
                                        : m->cfg.head == KG_HEAD_SEQ_CLASSIFICATION
                                            ? json_string("SEQ_CLS")
                                            : json_null());
    json_object_set_new(c, "inference_mode", json_true());
    json_object_set_new(c, "r", json_integer(a->rank));
    json_object_set_new(c, "target_modules", target_list(L));
    json_object_set_new(c, "modules_to_save", saved);
    json_object_set_new(c, "rank_pattern", json_object());
    json_object_set_new(c, "alpha_pattern", json_object());
    json_object_set_new(c, "layers_to_transform", json_null());
    json_object_set_new(c, "layers_pattern", json_null());
    json_object_set_new(c, "revision", json_null());
    if (strcmp(type, "LORA") == 0) {
        json_object_set_new(c, "lora_alpha", json_real(a->alpha));
        json_object_set_new(c, "lora_dropout", json_real(a->dropout));
        json_object_set_new(c, "bias", json_string("none"));
        json_object_set_new(c, "fan_in_fan_out", json_false());
        json_object_set_new(c, "init_lora_weights", json_true());
        json_object_set_new(c, "use_rslora", json_false());
        json_object_set_new(c, "use_dora", json_false());
    } else if (strcmp(type, "LOKR") == 0) {
        bool kron = a->kind == KG_ADAPTER_KRONLORA;
        json_object_set_new(c, "alpha", json_real(a->alpha));
        json_object_set_new(c, "rank_dropout", json_real(0));
        json_object_set_new(c, "module_dropout", json_real(0));
        json_object_set_new(c, "rank_dropout_scale", json_false());
        json_object_set_new(c, "use_effective_conv2d", json_false());
        json_object_set_new(c, "decompose_both", json_boolean(!kron && a->lokr_decompose_both));
        json_object_set_new(c, "decompose_factor",
                            json_integer(kron ? a->kron_a1 : a->lokr_factor));
        json_object_set_new(c, "init_weights", json_true());
    } else {
        json_object_set_new(c, "alpha", json_real(a->alpha));
        json_object_set_new(c, "dropout", json_real(a->dropout));
        json_object_set_new(c, "kron_a", json_pack("[II]", (json_int_t)a->kron_a2,
                                                   (json_int_t)a->kron_a1));
        json_object_set_new(c, "format", json_string("krongrad Kron-LoRA: delta_W = alpha/r * "
                                                     "kron(lokr_w1, lokr_w2_a @ lokr_w2_b); see "
                                                     "docs/adapter-format.md"));
    }
    return c;
}

static char *join(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* The factors of o as int8 codes (I8, the factor's shape) or int4 codes (U8 (rows,
 * ceil(cols/2)), kg_adapter_pack_int4), each followed in the file by its f32 scales
 * `<key>.qscale` (rows): o's factor entries become NULL tensors with raw[i] set (raw holds
 * 2 · o->n; its data is malloc'd). */
static bool quantize_out(kg_ctx *ctx, out_list *o, int bits, kg_safetensors_bytes *raw)
{
    int n = o->n;
    for (int i = 0; i < n; i++) {
        if (!is_factor(o->names[i]))
            continue;
        kg_tensor *t = o->tensors[i];
        int nd = kg_tensor_ndim(t);
        int64_t rows = nd ? kg_tensor_dim(t, 0) : 1, numel = kg_tensor_numel(t);
        int64_t cols = rows ? numel / rows : 0, w = (cols + 1) / 2;
        float *x = kg_tensor_to_f32(t), *scales = malloc((size_t)rows * sizeof *scales + 1);
        int8_t *codes = malloc((size_t)numel + 1);
        uint8_t *packed = bits == 4 ? malloc((size_t)(rows * w) + 1) : NULL;
        bool ok = x && scales && codes && (bits == 8 || packed);
        if (ok) {
            kg_adapter_quantize_rows(x, rows, cols, bits, codes, scales);
            raw[i] = (kg_safetensors_bytes){.dtype = bits == 8 ? "I8" : "U8", .ndim = nd};
            for (int d = 0; d < nd; d++)
                raw[i].shape[d] = kg_tensor_dim(t, d);
            if (bits == 4) {
                kg_adapter_pack_int4(codes, rows, cols, packed);
                raw[i].ndim = 2;
                raw[i].shape[0] = rows, raw[i].shape[1] = w;
            }
            kg_tensor *s = kg_from_host(ctx, KG_DTYPE_F32, 1, &rows, scales);
            ok = s && out_add(ctx, o, o->names[i] + strlen(PREFIX), QSCALE + 1, s);
            if (ok) {
                raw[i].data = bits == 8 ? (void *)codes : (void *)packed;
                o->tensors[i] = NULL;
            }
        } else if (!kg_ctx_status(ctx)) {
            kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
        }
        if (!ok || bits == 4)
            free(codes);
        if (!ok)
            free(packed);
        free(x);
        free(scales);
        if (!ok)
            return false;
    }
    return true;
}

/* kg_peft_save (bits 0) and kg_peft_save_quantized (8, 4). */
static bool save_dir(const kg_model *m, const char *dir, const char *base_model, int bits)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    const kg_adapter_config *a = &m->adapter;
    if (!dir)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_peft_save: dir is NULL");
    if (a->kind == KG_ADAPTER_NONE || a->kind == KG_ADAPTER_FULL)
        return kg_set_error(ctx, KG_ERR_STATE, "kg_peft_save: the model has %s; expected a lora, "
                            "kronlora or lokr adapter%s", a->kind == KG_ADAPTER_NONE ? "no adapter"
                            : "a full fine-tune", a->kind == KG_ADAPTER_FULL
                            ? " (save a full fine-tune with kg_model_save_weights)" : "");
    kg_module_list L;
    if (!kg__modules(ctx, &m->cfg, (kg_model *)m, &L))
        return false;
    /* Square Kron-LoRA is PEFT's LoKr with decompose_factor = dA; PEFT keeps w2 whole when
     * R >= max(dB2, dB1)/2, so such a w2 is written whole. PEFT cannot read quantized files, so
     * those keep Kron-LoRA as KRONLORA, B1 and B2 quantized apart as in memory. */
    bool lokr = a->kind == KG_ADAPTER_LOKR ||
                (a->kind == KG_ADAPTER_KRONLORA && a->kron_a1 == a->kron_a2 && !bits);
    const char *type = a->kind == KG_ADAPTER_LORA ? "LORA" : lokr ? "LOKR" : "KRONLORA";
    out_list o = {0};
    kg_scope scope = kg_scope_begin(ctx);
    kg_no_grad_begin(ctx);
    bool ok = true;
    for (int i = 0; ok && i < L.n; i++) {
        kg_module *d = &L.mods[i];
        const kg_linear *l = d->lin;
        d->target = l->kind != KG_LINEAR_DENSE;
        d->saved = d->save_as && kg_requires_grad(l->weight);
        if (d->target && l->ad.merged)
            ok = kg_set_error(ctx, KG_ERR_STATE, "kg_peft_save: layer %s is merged; unmerge "
                              "before saving (kg_model_unmerge)", d->name);
        if (!ok || !d->target) {
            if (ok && d->saved)
                ok = out_add(ctx, &o, d->name, "weight", l->weight) &&
                     out_add(ctx, &o, d->name, "bias", l->bias);
            continue;
        }
        const kg_adapter *ad = &l->ad;
        kg_tensor *w2 = ad->w2, *w2_a = ad->w2_a, *w2_b = ad->w2_b;
        if (a->kind == KG_ADAPTER_KRONLORA && lokr) {
            kg_adapter_shape s;
            kg_adapter_config as_lokr = *a;
            as_lokr.kind = KG_ADAPTER_LOKR;
            as_lokr.lokr_factor = a->kron_a1;
            as_lokr.lokr_decompose_both = false;
            kg__layer_shape(&as_lokr, d->out, d->in, &s);
            if (!s.w2_lowrank) {
                w2 = kg_matmul(w2_a, w2_b);
                w2_a = w2_b = NULL;
            }
        }
        ok = out_add(ctx, &o, d->name, "lora_A.weight", ad->lora_a) &&
             out_add(ctx, &o, d->name, "lora_B.weight", ad->lora_b) &&
             out_add(ctx, &o, d->name, "lokr_w1", ad->w1) &&
             out_add(ctx, &o, d->name, "lokr_w1_a", ad->w1_a) &&
             out_add(ctx, &o, d->name, "lokr_w1_b", ad->w1_b) &&
             out_add(ctx, &o, d->name, "lokr_w2", w2) &&
             out_add(ctx, &o, d->name, "lokr_w2_a", w2_a) &&
             out_add(ctx, &o, d->name, "lokr_w2_b", w2_b);
    }
    char *weights = join(dir, "adapter_model.safetensors");
    char *config = join(dir, "adapter_config.json");
    if (ok && (!weights || !config))
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
    if (ok && mkdir(dir, 0755) != 0 && errno != EEXIST)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_peft_save: %s: cannot make the directory: %s", dir,
                          strerror(errno));
    kg_safetensors_bytes *raw = NULL;
    if (ok && bits) {
        raw = calloc((size_t)(2 * o.n) + 1, sizeof *raw);
        ok = raw ? quantize_out(ctx, &o, bits, raw)
                 : kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
    }
    static const char *const meta[] = {"format", "pt", NULL};
    ok = ok && kg_safetensors_write_bytes(ctx, weights, o.n, (const char *const *)o.names,
                                          o.tensors, raw, meta);
    for (int i = 0; raw && i < o.n; i++)
        free((void *)raw[i].data);
    free(raw);
    if (ok) {
        json_t *c = config_json(m, type, &L, base_model);
        if (c && bits)
            json_object_set_new(c, "krongrad_quant_bits", json_integer(bits));
        char *text = c ? json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        ok = text ? write_atomic(ctx, config, text)
                  : kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_save: out of host memory");
        free(text);
        json_decref(c);
    }
    kg_no_grad_end(ctx);
    kg_scope_end(ctx, scope);
    for (int i = 0; i < o.n; i++)
        free(o.names[i]);
    free(o.names);
    free(o.tensors);
    free(weights);
    free(config);
    free(L.mods);
    return ok;
}

bool kg_peft_save(const kg_model *m, const char *dir, const char *base_model)
{
    return save_dir(m, dir, base_model, 0);
}

bool kg_peft_save_quantized(const kg_model *m, const char *dir, const char *base_model, int bits)
{
    if (m && !kg_ctx_status(m->ctx) && bits != 8 && bits != 4)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_peft_save_quantized: %d bits; expected 8 or "
                            "4", bits);
    return save_dir(m, dir, base_model, bits);
}

bool kg_model_save_weights(const kg_model *m, const char *path)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    const char **names = malloc(sizeof *names * (size_t)(m->n_params + 1));
    kg_tensor **ts = malloc(sizeof *ts * (size_t)(m->n_params + 1));
    bool ok = names && ts;
    for (int i = 0; ok && i < m->n_params; i++) {
        names[i] = m->params[i].name;
        ts[i] = m->params[i].tensor;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    ok = ok ? kg_safetensors_write(m->ctx, path, m->n_params, names, ts, meta)
            : kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_save_weights: out of host memory");
    free(names);
    free(ts);
    return ok;
}

/* ---- Loading ------------------------------------------------------------------------------ */

/* adapter_config.json being read: errors name its path and the key. */
typedef struct reader {
    kg_ctx *ctx;
    const char *path;
    json_t *root;
} reader;

static bool bad_key(const reader *r, const char *key, const char *expected)
{
    return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: key '%s' %s; expected %s", r->path,
                        key, json_object_get(r->root, key) ? "has another value" : "is missing",
                        expected);
}

/* Optional keys: absent or null gives the default. */
static bool get_int(const reader *r, const char *key, int64_t dflt, int64_t *out)
{
    json_t *v = json_object_get(r->root, key);
    *out = v && !json_is_null(v) ? (json_is_integer(v) ? json_integer_value(v) : INT64_MIN) : dflt;
    return *out != INT64_MIN || bad_key(r, key, "an integer");
}

static bool get_num(const reader *r, const char *key, double dflt, double *out)
{
    json_t *v = json_object_get(r->root, key);
    if (v && !json_is_null(v) && !json_is_number(v))
        return bad_key(r, key, "a number");
    *out = v && !json_is_null(v) ? json_number_value(v) : dflt;
    return true;
}

static bool get_bool(const reader *r, const char *key, bool dflt, bool *out)
{
    json_t *v = json_object_get(r->root, key);
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return bad_key(r, key, "true or false");
    *out = v && !json_is_null(v) ? json_is_true(v) : dflt;
    return true;
}

/* A key that must hold its default (a feature krongrad does not implement). */
static bool want_false(const reader *r, const char *key)
{
    bool b;
    return get_bool(r, key, false, &b) && (!b || bad_key(r, key, "false (krongrad does not "
                                                                 "implement it)"));
}

static bool want_empty(const reader *r, const char *key)
{
    json_t *v = json_object_get(r->root, key);
    return !v || json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0) ||
           bad_key(r, key, "{} (per-layer ranks and alphas are not implemented)");
}

/* The configuration of the file's adapter. */
static bool read_config(const reader *r, kg_adapter_config *cfg)
{
    json_t *type = json_object_get(r->root, "peft_type");
    if (!json_is_string(type))
        return bad_key(r, "peft_type", "a string: LORA, LOKR or KRONLORA");
    const char *t = json_string_value(type);
    *cfg = kg_adapter_config_default(KG_ADAPTER_NONE);
    cfg->kind = strcmp(t, "LORA") == 0       ? KG_ADAPTER_LORA
                : strcmp(t, "LOKR") == 0     ? KG_ADAPTER_LOKR
                : strcmp(t, "KRONLORA") == 0 ? KG_ADAPTER_KRONLORA
                                             : KG_ADAPTER_NONE;
    if (cfg->kind == KG_ADAPTER_NONE)
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: peft_type \"%s\"; krongrad "
                            "reads LORA, LOKR and KRONLORA", r->path, t);
    double drop = 0;
    if (!get_int(r, "r", 8, &cfg->rank) || !want_empty(r, "rank_pattern") ||
        !want_empty(r, "alpha_pattern"))
        return false;
    if (cfg->kind == KG_ADAPTER_LORA) {
        json_t *bias = json_object_get(r->root, "bias");
        if (bias && !json_is_null(bias) &&
            !(json_is_string(bias) && strcmp(json_string_value(bias), "none") == 0))
            return bad_key(r, "bias", "\"none\" (trained biases are not implemented)");
        if (!get_num(r, "lora_alpha", 8, &cfg->alpha) || !get_num(r, "lora_dropout", 0, &drop) ||
            !want_false(r, "use_rslora") || !want_false(r, "use_dora") ||
            !want_false(r, "fan_in_fan_out") || !want_false(r, "lora_bias"))
            return false;
    } else if (cfg->kind == KG_ADAPTER_LOKR) {
        /* rank_dropout and module_dropout act only while PEFT trains; krongrad applies none. */
        if (!get_num(r, "alpha", 8, &cfg->alpha) ||
            !get_bool(r, "decompose_both", false, &cfg->lokr_decompose_both) ||
            !get_int(r, "decompose_factor", -1, &cfg->lokr_factor))
            return false;
    } else {
        json_t *ka = json_object_get(r->root, "kron_a");
        if (!json_is_array(ka) || json_array_size(ka) != 2 ||
            !json_is_integer(json_array_get(ka, 0)) || !json_is_integer(json_array_get(ka, 1)))
            return bad_key(r, "kron_a", "[dA2, dA1], two integers");
        cfg->kron_a2 = json_integer_value(json_array_get(ka, 0));
        cfg->kron_a1 = json_integer_value(json_array_get(ka, 1));
        if (!get_num(r, "alpha", 8, &cfg->alpha) || !get_num(r, "dropout", 0, &drop))
            return false;
    }
    cfg->dropout = (float)drop;
    if (cfg->kind == KG_ADAPTER_LOKR)
        cfg->dropout = 0;
    return true;
}

/* krongrad_quant_bits: 0 (absent: f32 factors), 8 or 4. */
static bool read_bits(const reader *r, int *bits)
{
    int64_t b;
    if (!get_int(r, "krongrad_quant_bits", 0, &b))
        return false;
    if (b != 0 && b != 8 && b != 4)
        return bad_key(r, "krongrad_quant_bits", "8 or 4 (int8 / int4 factors), or no key for "
                       "f32 ones");
    *bits = (int)b;
    return true;
}

/* A quantized factor (nd, shape) from its codes and <name>.qscale, dequantized to f32 with the
 * formula the in-memory quantization uses. NULL with an error naming the file and the tensor. */
static kg_tensor *load_quantized(kg_ctx *ctx, kg_weights *w, const char *name, int nd,
                                 const int64_t *shape, int bits)
{
    const char *path = kg_weights_path(w);
    int64_t rows = nd ? shape[0] : 1, numel = 1;
    for (int d = 0; d < nd; d++)
        numel *= shape[d];
    int64_t cols = rows ? numel / rows : 0, packed_shape[2] = {rows, (cols + 1) / 2};
    char sname[400];
    snprintf(sname, sizeof sname, "%s" QSCALE, name);
    int pnd = 0;
    int64_t ps[KG_MAX_DIMS];
    if (!kg_weights_shape(w, sname, NULL, NULL)) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: int%d factor '%s' has no scale tensor "
                     "'%s'; expected F32 [%lld]", path, bits, name, sname, (long long)rows);
        return NULL;
    }
    if (bits == 4 && kg_weights_shape(w, name, &pnd, ps) &&
        (pnd != 2 || ps[0] != rows || ps[1] != packed_shape[1])) {
        kg_set_error(ctx, KG_ERR_SHAPE, "kg_peft_load: %s: int4 factor '%s' has %d-dim codes "
                     "[%lld, %lld%s]; the layer's (%lld, %lld) factor packs two codes per byte, "
                     "low nibble first: expected U8 [%lld, %lld]", path, name, pnd,
                     (long long)(pnd > 0 ? ps[0] : 0), (long long)(pnd > 1 ? ps[1] : 0),
                     pnd > 2 ? ", ..." : "", (long long)rows, (long long)cols, (long long)rows,
                     (long long)packed_shape[1]);
        return NULL;
    }
    const void *src = kg_weights_bytes(w, name, bits == 8 ? "I8" : "U8", bits == 8 ? nd : 2,
                                       bits == 8 ? shape : packed_shape);
    const void *ssrc = src ? kg_weights_bytes(w, sname, "F32", 1, &rows) : NULL;
    if (!ssrc)
        return NULL;
    int8_t *codes = malloc((size_t)numel + 1);
    float *scales = malloc((size_t)rows * sizeof *scales + 1);
    float *x = malloc((size_t)numel * sizeof *x + 1);
    kg_tensor *t = NULL;
    const char *bad = NULL;
    if (!codes || !scales || !x) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_load: out of host memory");
    } else {
        memcpy(scales, ssrc, (size_t)rows * sizeof *scales);
        if (bits == 8)
            memcpy(codes, src, (size_t)numel);
        if (bits == 4 && !kg_adapter_unpack_int4(src, rows, cols, codes))
            bad = "holds a code -8 (0x8) or a padding nibble that is not 0; expected int4 codes "
                  "in [-7, 7]";
        for (int64_t i = 0; bits == 8 && !bad && i < numel; i++)
            if (codes[i] == -128)
                bad = "holds a code -128; expected int8 codes in [-127, 127]";
        for (int64_t r = 0; !bad && r < rows; r++)
            if (!isfinite(scales[r]) || scales[r] < 0)
                bad = "has a scale that is negative or not finite (in its .qscale)";
        if (bad) {
            kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: tensor '%s' %s", path, name, bad);
        } else {
            kg_adapter_dequantize_rows(codes, scales, rows, cols, x);
            t = kg_from_host(ctx, KG_DTYPE_F32, nd, shape, x);
        }
    }
    free(codes);
    free(scales);
    free(x);
    return t;
}

static bool has(const kg_weights *w, const char *path, const char *leaf)
{
    char name[320];
    snprintf(name, sizeof name, PREFIX "%s.%s", path, leaf);
    return kg_weights_shape(w, name, NULL, NULL);
}

/* Whether the list target_modules (when it is one) names exactly the layers the file has
 * tensors for; a regex string or "all-linear" is not evaluated (the tensors decide). */
static bool check_targets(const reader *r, const kg_module_list *L, const char *wpath,
                          kg_adapter_kind kind)
{
    json_t *t = json_object_get(r->root, "target_modules");
    if (!json_is_array(t))
        return true;
    for (int i = 0; i < L->n; i++) {
        const kg_module *d = &L->mods[i];
        bool named = false;
        for (size_t k = 0; k < json_array_size(t) && !named; k++) {
            const char *s = json_string_value(json_array_get(t, k));
            size_t n = s ? strlen(s) : 0, len = strlen(d->name);
            named = s && ((len == n && strcmp(d->name, s) == 0) ||
                          (len > n && d->name[len - n - 1] == '.' &&
                           strcmp(d->name + len - n, s) == 0));
        }
        if (named && !d->target && !d->saved)
            return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: no adapter tensors for "
                                "layer %s (expected " PREFIX "%s.%s), which %s's target_modules "
                                "names", wpath, d->name, d->name,
                                kind == KG_ADAPTER_LORA ? "lora_A.weight" : "lokr_w1", r->path);
        if (d->target && !named)
            return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: adapter tensors for layer "
                                "%s, which %s's target_modules does not name", wpath, d->name,
                                r->path);
    }
    return true;
}

/* Whether the model's adapter can take the file's values in place. */
static bool same_adapter(const reader *r, const kg_model *m, const kg_adapter_config *f)
{
    const kg_adapter_config *a = &m->adapter;
    bool kind = a->kind == f->kind ||
                (a->kind == KG_ADAPTER_KRONLORA && f->kind == KG_ADAPTER_LOKR &&
                 a->kron_a1 == a->kron_a2 && a->kron_a1 == f->lokr_factor);
    if (!kind)
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: peft_type is for a %s "
                            "adapter; the model has a %s adapter", r->path,
                            kg_adapter_kind_name(f->kind), kg_adapter_kind_name(a->kind));
    if (a->rank != f->rank)
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: key 'r' is %lld; the model's "
                            "adapter has rank %lld", r->path, (long long)f->rank,
                            (long long)a->rank);
    if (fabs(a->alpha - f->alpha) > 1e-6 * fabs(a->alpha))
        return kg_set_error(r->ctx, KG_ERR_ARG, "kg_peft_load: %s: alpha is %g; the model's "
                            "adapter has %g", r->path, f->alpha, a->alpha);
    return true;
}

/* Load every trainable tensor of m from w (its factors quantized to bits when bits is not 0);
 * every tensor of w must be one of them, or a quantized factor's scales. */
static bool load_values(kg_model *m, kg_weights *w, int bits)
{
    kg_ctx *ctx = m->ctx;
    int found = 0;
    kg_scope scope = kg_scope_begin(ctx);
    for (int i = 0; i < m->n_trainable && !kg_ctx_status(ctx); i++) {
        kg_param *p = &m->trainable[i];
        int nd = kg_tensor_ndim(p->tensor);
        int64_t shape[KG_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            shape[d] = kg_tensor_dim(p->tensor, d);
        kg_tensor *t = bits && is_factor(p->name)
                           ? load_quantized(ctx, w, p->name, nd, shape, bits)
                           : kg_weights_load(w, p->name, KG_DTYPE_F32, nd, shape);
        if (t && kg_tensor_assign(p->tensor, t))
            found += 1 + (bits && is_factor(p->name));
        kg_tensor_free(t);
    }
    kg_scope_end(ctx, scope);
    if (kg_ctx_status(ctx))
        return false;
    for (int i = 0; found < kg_weights_count(w) && i < kg_weights_count(w); i++) {
        const char *name = kg_weights_name(w, i);
        size_t len = strlen(name), q = strlen(QSCALE);
        bool scale = bits && len > q && strcmp(name + len - q, QSCALE) == 0, known = false;
        for (int k = 0; k < m->n_trainable && !known; k++) {
            const char *t = m->trainable[k].name;
            known = scale ? strlen(t) == len - q && strncmp(t, name, len - q) == 0 && is_factor(t)
                          : strcmp(t, name) == 0;
        }
        if (!known)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: tensor '%s' belongs to no "
                                "adapted layer or saved module of this adapter", kg_weights_path(w),
                                name);
    }
    return true;
}

bool kg_peft_load(kg_model *m, const char *dir)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_ctx *ctx = m->ctx;
    if (!dir)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: dir is NULL");
    if (m->adapter.kind == KG_ADAPTER_FULL)
        return kg_set_error(ctx, KG_ERR_STATE, "kg_peft_load: the model is a full fine-tune; "
                            "expected no adapter or a lora, kronlora or lokr one");
    char *cpath = join(dir, "adapter_config.json"), *wpath = join(dir, "adapter_model.safetensors");
    if (!cpath || !wpath) {
        free(cpath);
        free(wpath);
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_peft_load: out of host memory");
    }
    json_error_t jerr;
    reader r = {ctx, cpath, json_load_file(cpath, JSON_REJECT_DUPLICATES, &jerr)};
    kg_adapter_config cfg;
    kg_weights *w = NULL;
    kg_module_list L = {0};
    bool fresh = m->adapter.kind == KG_ADAPTER_NONE, ok;
    int bits = 0;
    if (!r.root) {
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: not a readable JSON file (line %d, "
                          "column %d: %s)", cpath, jerr.line, jerr.column, jerr.text);
    } else if (!json_is_object(r.root)) {
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: expected a JSON object", cpath);
    } else {
        char where[600];
        snprintf(where, sizeof where, "kg_peft_load: %s", cpath);
        ok = read_config(&r, &cfg) && read_bits(&r, &bits) && kg__check_fields(ctx, where, &cfg);
    }
    ok = ok && (w = kg_weights_open(ctx, wpath)) && kg__modules(ctx, &m->cfg, m, &L);
    for (int i = 0; ok && i < L.n; i++) { /* the layers and heads the file has tensors for */
        kg_module *d = &L.mods[i];
        d->target = cfg.kind == KG_ADAPTER_LORA
                        ? has(w, d->name, "lora_A.weight") || has(w, d->name, "lora_B.weight")
                        : has(w, d->name, "lokr_w1") || has(w, d->name, "lokr_w1_a") ||
                              has(w, d->name, "lokr_w2") || has(w, d->name, "lokr_w2_a");
        d->saved = d->save_as && has(w, d->name, "weight");
        if (d->target && cfg.kind == KG_ADAPTER_KRONLORA &&
            (d->out % cfg.kron_a2 || d->in % cfg.kron_a1))
            ok = kg_set_error(ctx, KG_ERR_SHAPE, "kg_peft_load: %s: kron_a %lldx%lld does not "
                              "divide layer %s (%lld × %lld)", cpath, (long long)cfg.kron_a2,
                              (long long)cfg.kron_a1, d->name, (long long)d->out,
                              (long long)d->in);
    }
    ok = ok && check_targets(&r, &L, wpath, cfg.kind);
    if (ok && fresh) {
        ok = kg__attach_chosen(m, &cfg, &L);
    } else if (ok) {
        ok = same_adapter(&r, m, &cfg);
        for (int i = 0; ok && i < L.n; i++) {
            const kg_module *d = &L.mods[i];
            bool adapted = d->lin->kind != KG_LINEAR_DENSE;
            bool saved = d->save_as && kg_requires_grad(d->lin->weight);
            if (adapted != d->target || saved != d->saved)
                ok = kg_set_error(ctx, KG_ERR_ARG, "kg_peft_load: %s: %s tensors for layer %s; "
                                  "the model's adapter %s it", wpath, d->target || d->saved
                                  ? "has" : "no", d->name, adapted || saved ? "has" : "lacks");
        }
    }
    ok = ok && load_values(m, w, bits);
    if (!ok && fresh)
        kg__adapters_free(m);
    kg_weights_close(w);
    json_decref(r.root);
    free(L.mods);
    free(cpath);
    free(wpath);
    return ok;
}
