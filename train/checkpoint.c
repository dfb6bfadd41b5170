/* checkpoint.c — a training run's state in one safetensors file: the trainable tensors under
 * PEFT's names, the optimizer's moments beside them, and as metadata the step, the data
 * position and every setting a resumed run must share. Written atomically by
 * kg_safetensors_write (temporary file, fsync, rename); read back through kg_weights_open, with
 * the metadata from the file's JSON header.
 */
#include "train/train_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_FORMAT "krongrad-checkpoint"
#define CKPT_VERSION "1"
#define MAX_SETTINGS 40
#define HEADER_LIMIT (100u << 20) /* bytes of safetensors header read for the metadata */

static const char *const slot_prefix[2][2] = {
    {"optimizer.m.", "optimizer.v."},     /* AdamW */
    {"optimizer.momentum.", NULL},        /* SGD */
};

/* ---- Settings as metadata ------------------------------------------------------------------ */

typedef struct settings {
    int n;
    char key[MAX_SETTINGS][24];
    char value[MAX_SETTINGS][48];
} settings;

static void put(settings *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(settings *s, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
    vsnprintf(s->value[s->n], sizeof s->value[0], fmt, ap);
    va_end(ap);
    s->n++;
}

/* Everything that decides the run's numbers from here on ("%.17g": doubles round-trip). */
static void run_settings(const kg_trainer *t, settings *s)
{
    const kg_train_config *c = kg__trainer_config(t);
    const kg_adapter_config *a = &kg__trainer_model(t)->adapter;
    *s = (settings){0};
    put(s, "adapter", "%s", kg_adapter_kind_name(a->kind));
    put(s, "rank", "%lld", (long long)a->rank);
    put(s, "alpha", "%.17g", a->alpha);
    put(s, "dropout", "%.9g", (double)a->dropout);
    put(s, "kron_a", "%lldx%lld", (long long)a->kron_a2, (long long)a->kron_a1);
    put(s, "lokr_factor", "%lld", (long long)a->lokr_factor);
    put(s, "adapter_seed", "%llu", (unsigned long long)a->seed);
    put(s, "optimizer", "%s", kg_optimizer_name(c->optimizer));
    put(s, "lr", "%.17g", c->lr);
    for (int k = 0; k < KG_FACTOR_COUNT; k++) { /* 0 means 1: the same run either way */
        char key[24];
        snprintf(key, sizeof key, "lr_mult.%s", kg_factor_kind_name((kg_factor_kind)k));
        put(s, key, "%.17g", c->lr_mult[k] > 0 ? c->lr_mult[k] : 1.0);
    }
    put(s, "weight_decay", "%.17g", c->weight_decay);
    put(s, "beta1", "%.17g", c->beta1);
    put(s, "beta2", "%.17g", c->beta2);
    put(s, "eps", "%.17g", c->eps);
    put(s, "momentum", "%.17g", c->momentum);
    put(s, "schedule", "%s", kg_schedule_name(c->schedule));
    put(s, "warmup", "%lld", (long long)c->warmup);
    put(s, "clip", "%.17g", c->clip);
    put(s, "steps", "%lld", (long long)c->steps);
    put(s, "batch", "%lld", (long long)c->batch);
    put(s, "accumulate", "%lld", (long long)c->accumulate);
    put(s, "seed", "%llu", (unsigned long long)c->seed);
    put(s, "loss", "%s", kg_mc_loss_name(c->loss));
    put(s, "max_length", "%lld", (long long)c->max_length);
}

/* ---- Tensors ------------------------------------------------------------------------------- */

typedef struct entry {
    char *name;
    kg_tensor *tensor;
} entry;

/* The trainable tensors, then each optimizer slot's tensors; *n entries the caller frees. */
static entry *entries_of(const kg_trainer *t, int *n)
{
    const kg_model *m = kg__trainer_model(t);
    const kg_train_config *c = kg__trainer_config(t);
    int sgd = c->optimizer == KG_OPTIM_SGD;
    entry *e = calloc((size_t)m->n_trainable * 3, sizeof *e);
    *n = 0;
    if (!e)
        return NULL;
    for (int i = 0; i < m->n_trainable; i++)
        e[(*n)++] = (entry){.name = strdup(m->trainable[i].name),
                            .tensor = m->trainable[i].tensor};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < m->n_trainable && slot_prefix[sgd][s]; i++) {
            kg_tensor *st = kg__trainer_state(t, s, i);
            if (!st)
                continue;
            size_t len = strlen(slot_prefix[sgd][s]) + strlen(m->trainable[i].name) + 1;
            char *name = malloc(len);
            if (name)
                snprintf(name, len, "%s%s", slot_prefix[sgd][s], m->trainable[i].name);
            e[(*n)++] = (entry){.name = name, .tensor = st};
        }
    return e;
}

static void entries_free(entry *e, int n)
{
    for (int i = 0; e && i < n; i++)
        free(e[i].name);
    free(e);
}

static bool names_ok(const entry *e, int n)
{
    for (int i = 0; i < n; i++)
        if (!e[i].name)
            return false;
    return e != NULL;
}

bool kg_checkpoint_save(const kg_trainer *t, const char *path)
{
    if (!t)
        return false;
    kg_ctx *ctx = kg__trainer_model(t)->ctx;
    if (kg_ctx_status(ctx))
        return false;
    if (!path)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_save: path is NULL");
    int n;
    entry *e = entries_of(t, &n);
    settings s;
    run_settings(t, &s);
    const kg_train_config *c = kg__trainer_config(t);
    int64_t step = kg_trainer_steps_done(t);
    char step_text[24], pos_text[24], ranks_text[24];
    snprintf(step_text, sizeof step_text, "%lld", (long long)step);
    snprintf(pos_text, sizeof pos_text, "%lld", (long long)(step * c->accumulate * c->batch));
    snprintf(ranks_text, sizeof ranks_text, "%d", kg_dist_size());
    const char *meta[2 * (MAX_SETTINGS + 5) + 1];
    int k = 0;
    meta[k++] = "format", meta[k++] = CKPT_FORMAT;
    meta[k++] = "version", meta[k++] = CKPT_VERSION;
    meta[k++] = "step", meta[k++] = step_text;
    /* Items drawn so far: a step's batch × accumulate items are the same whatever the ranks
     * that share them, so a run resumes on any number of ranks. "ranks" (those that wrote it)
     * is for people; a resume does not check it. */
    meta[k++] = "data_position", meta[k++] = pos_text;
    meta[k++] = "ranks", meta[k++] = ranks_text;
    for (int i = 0; i < s.n; i++)
        meta[k++] = s.key[i], meta[k++] = s.value[i];
    meta[k] = NULL;
    const char **names = malloc(sizeof *names * (size_t)(n > 0 ? n : 1));
    kg_tensor **tensors = malloc(sizeof *tensors * (size_t)(n > 0 ? n : 1));
    bool ok = names && tensors && names_ok(e, n);
    if (!ok) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_checkpoint_save: out of host memory");
    } else {
        for (int i = 0; i < n; i++)
            names[i] = e[i].name, tensors[i] = e[i].tensor;
        ok = kg_safetensors_write(ctx, path, n, names, tensors, meta);
    }
    free(names);
    free(tensors);
    entries_free(e, n);
    return ok;
}

/* ---- Loading ------------------------------------------------------------------------------- */

/* The "__metadata__" object of a safetensors file whose header kg_weights_open has checked.
 * A new reference the caller releases, or NULL with the context's error set. */
static json_t *read_metadata(kg_ctx *ctx, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char len_bytes[8];
    uint64_t len = 0;
    char *header = NULL;
    json_t *root = NULL, *meta = NULL;
    if (f && fread(len_bytes, 1, 8, f) == 8) {
        for (int i = 7; i >= 0; i--)
            len = len << 8 | len_bytes[i];
        if (len > 0 && len <= HEADER_LIMIT && (header = malloc((size_t)len)) &&
            fread(header, 1, (size_t)len, f) == len)
            root = json_loadb(header, (size_t)len, 0, NULL);
    }
    if (f)
        fclose(f);
    free(header);
    meta = json_object_get(root, "__metadata__");
    if (!json_is_object(meta)) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: %s: no \"__metadata__\" in the "
                     "header; expected a checkpoint written by krongrad train", path);
        json_decref(root);
        return NULL;
    }
    json_incref(meta);
    json_decref(root);
    return meta;
}

static const char *meta_str(json_t *meta, const char *key)
{
    return json_string_value(json_object_get(meta, key));
}

/* The metadata against this run: format, version, and every setting. */
static bool check_metadata(const kg_trainer *t, const char *path, json_t *meta, int64_t *step)
{
    kg_ctx *ctx = kg__trainer_model(t)->ctx;
    const char *format = meta_str(meta, "format"), *version = meta_str(meta, "version");
    if (!format || strcmp(format, CKPT_FORMAT) != 0 || !version ||
        strcmp(version, CKPT_VERSION) != 0)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: %s: metadata format '%s' "
                            "version '%s'; expected %s version %s", path,
                            format ? format : "(missing)", version ? version : "(missing)",
                            CKPT_FORMAT, CKPT_VERSION);
    settings s;
    run_settings(t, &s);
    for (int i = 0; i < s.n; i++) {
        const char *v = meta_str(meta, s.key[i]);
        if (!v || strcmp(v, s.value[i]) != 0)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: %s: written by a run with "
                                "%s %s; this run has %s %s (a resume needs the same settings)",
                                path, s.key[i], v ? v : "(missing)", s.key[i], s.value[i]);
    }
    const char *st = meta_str(meta, "step");
    char *end = NULL;
    long long v = st ? strtoll(st, &end, 10) : -1;
    const kg_train_config *c = kg__trainer_config(t);
    if (!st || *end || v < 0 || v > c->steps)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: %s: metadata step '%s'; "
                            "expected 0 to %lld", path, st ? st : "(missing)",
                            (long long)c->steps);
    *step = v;
    return true;
}

bool kg_checkpoint_load(kg_trainer *t, const char *path)
{
    if (!t)
        return false;
    kg_ctx *ctx = kg__trainer_model(t)->ctx;
    if (kg_ctx_status(ctx))
        return false;
    if (!path)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: path is NULL");
    kg_weights *w = kg_weights_open(ctx, path);
    json_t *meta = w ? read_metadata(ctx, path) : NULL;
    int64_t step = 0;
    bool ok = meta && check_metadata(t, path, meta, &step);
    json_decref(meta);
    int n = 0;
    entry *e = ok ? entries_of(t, &n) : NULL;
    if (ok && !names_ok(e, n))
        ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_checkpoint_load: out of host memory");
    /* Every name and shape first, so that a wrong file changes nothing. */
    for (int i = 0; ok && i < n; i++) {
        int nd;
        int64_t shape[KG_MAX_DIMS];
        kg_tensor *x = e[i].tensor;
        bool same = kg_weights_shape(w, e[i].name, &nd, shape) && nd == kg_tensor_ndim(x);
        for (int d = 0; same && d < nd; d++)
            same = shape[d] == kg_tensor_dim(x, d);
        if (!same)
            ok = kg_set_error(ctx, KG_ERR_SHAPE, "kg_checkpoint_load: %s: tensor '%s' is missing "
                              "or has another shape than this run's; expected a checkpoint of "
                              "the same model and adapter", path, e[i].name);
    }
    if (ok && kg_weights_count(w) != n)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_checkpoint_load: %s: %d tensors; this run has %d "
                          "(trainable tensors and optimizer state)", path, kg_weights_count(w),
                          n);
    for (int i = 0; ok && i < n; i++) {
        kg_scope scope = kg_scope_begin(ctx);
        int64_t shape[KG_MAX_DIMS];
        int nd = kg_tensor_ndim(e[i].tensor);
        for (int d = 0; d < nd; d++)
            shape[d] = kg_tensor_dim(e[i].tensor, d);
        ok = kg_tensor_assign(e[i].tensor, kg_weights_load(w, e[i].name, KG_DTYPE_F32, nd, shape));
        kg_scope_end(ctx, scope);
    }
    if (ok)
        kg__trainer_set_step(t, step);
    entries_free(e, n);
    kg_weights_close(w);
    return ok;
}
