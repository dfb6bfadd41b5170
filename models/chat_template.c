/* chat_template.c — chat templates (kg_chat.h): where a model keeps its template and its
 * bos/eos strings (tokenizer_config.json, chat_template.jinja, a GGUF's metadata), and the
 * public calls over the Jinja-subset engine in jinja.c.
 */
#include "models/kg_chat.h"

#include "models/jinja.h"
#include "models/kg_formats.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct kg_chat_template {
    kg_ctx *ctx;
    char *source, *bos, *eos;
    kg__jinja *j;
};

static char *dup_or_null(const char *s, bool *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = true;
    return d;
}

kg_chat_template *kg_chat_template_new(kg_ctx *ctx, const char *source, const char *name,
                                       const char *bos_token, const char *eos_token)
{
    if (!ctx || kg_ctx_status(ctx) != KG_OK)
        return NULL;
    if (!source) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_chat_template_new: NULL source");
        return NULL;
    }
    name = name ? name : "chat template";
    kg_chat_template *t = calloc(1, sizeof *t);
    bool oom = !t;
    if (t) {
        t->ctx = ctx;
        t->source = dup_or_null(source, &oom);
        t->bos = dup_or_null(bos_token, &oom);
        t->eos = dup_or_null(eos_token, &oom);
    }
    if (oom) {
        kg_chat_template_free(t);
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    if (!(t->j = kg__jinja_parse(ctx, source, name))) {
        kg_chat_template_free(t);
        return NULL;
    }
    return t;
}

char *kg_chat_template_render(kg_chat_template *t, const kg_chat_message *msgs, int64_t n,
                              bool add_generation_prompt)
{
    if (!t || kg_ctx_status(t->ctx) != KG_OK)
        return NULL;
    if (n < 0 || (n > 0 && !msgs)) {
        kg_set_error(t->ctx, KG_ERR_ARG, "kg_chat_template_render: %lld messages at %p",
                     (long long)n, (const void *)msgs);
        return NULL;
    }
    return kg__jinja_render(t->ctx, t->j, msgs, n, add_generation_prompt, t->bos, t->eos);
}

const char *kg_chat_template_source(const kg_chat_template *t)
{
    return t ? t->source : NULL;
}

void kg_chat_template_free(kg_chat_template *t)
{
    if (!t)
        return;
    kg__jinja_free(t->j);
    free(t->source);
    free(t->bos);
    free(t->eos);
    free(t);
}

/* ---- Where a model keeps its template ---------------------------------------------------- */

/* What a model path gives: the template text, a name for errors, bos and eos strings. All
 * malloc'd or NULL. */
typedef struct found {
    char *source, *bos, *eos;
    char name[4200];
} found;

static void found_free(found *f)
{
    free(f->source);
    free(f->bos);
    free(f->eos);
}

static bool oom(kg_ctx *ctx, const char *path)
{
    return kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of memory", path);
}

/* A whole file into a malloc'd NUL-terminated string; NULL when it does not exist (no error)
 * or with the error set (*failed) when it cannot be read or holds a NUL byte. */
static char *read_text(kg_ctx *ctx, const char *path, bool *failed)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? 2 * cap : 65536;
            char *b = cap < ((size_t)1 << 30) ? realloc(buf, cap) : NULL;
            if (!b) {
                *failed = true;
                kg_set_error(ctx, KG_ERR_RANGE, "%s: too large or out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad || memchr(buf, '\0', n)) {
        *failed = true;
        kg_set_error(ctx, KG_ERR_ARG, "%s: %s", path, bad ? "cannot be read" : "holds a NUL byte");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* A special token from a tokenizer config: a string or an AddedToken {"content": ...}. */
static bool config_token(kg_ctx *ctx, const json_t *root, const char *path, const char *key,
                         char **out)
{
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || *out)
        return true;
    const json_t *s = json_is_object(v) ? json_object_get(v, "content") : v;
    if (!json_is_string(s))
        return kg_set_error(ctx, KG_ERR_ARG, "%s: \"%s\": expected a string or an object with "
                            "a string \"content\"", path, key);
    return (*out = strdup(json_string_value(s))) || oom(ctx, path);
}

/* tokenizer_config.json's chat_template: a string, or a list of {name, template} whose entry
 * "default" is the one apply_chat_template uses. */
static bool config_template(kg_ctx *ctx, const json_t *root, const char *path, found *f)
{
    const json_t *v = json_object_get(root, "chat_template");
    if (!v || json_is_null(v))
        return true;
    if (json_is_string(v)) {
        snprintf(f->name, sizeof f->name, "%s: chat_template", path);
        return (f->source = strdup(json_string_value(v))) || oom(ctx, path);
    }
    if (!json_is_array(v))
        return kg_set_error(ctx, KG_ERR_ARG, "%s: \"chat_template\": expected a string or a list "
                            "of {\"name\", \"template\"} objects", path);
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        const json_t *name = json_object_get(e, "name"), *tmpl = json_object_get(e, "template");
        if (!json_is_string(name) || !json_is_string(tmpl))
            return kg_set_error(ctx, KG_ERR_ARG, "%s: \"chat_template\"[%zu]: expected an object "
                                "with string \"name\" and \"template\"", path, i);
        if (strcmp(json_string_value(name), "default") == 0) {
            snprintf(f->name, sizeof f->name, "%s: chat_template[%zu] (default)", path, i);
            return (f->source = strdup(json_string_value(tmpl))) || oom(ctx, path);
        }
    }
    return kg_set_error(ctx, KG_ERR_ARG, "%s: \"chat_template\" is a list without an entry "
                        "named \"default\"", path);
}

/* dir/NAME as JSON; *root NULL when the file is absent. */
static bool load_json(kg_ctx *ctx, const char *path, json_t **root)
{
    *root = NULL;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return true;
    fclose(probe);
    json_error_t e;
    *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
    if (!json_is_object(*root)) {
        bool parsed = *root != NULL;
        json_decref(*root);
        *root = NULL;
        return kg_set_error(ctx, KG_ERR_ARG, "%s: line %d: %s; expected a JSON object", path,
                            e.line, parsed ? "not an object" : e.text);
    }
    return true;
}

/* An HF directory: chat_template.jinja (which transformers prefers when both exist), else
 * tokenizer_config.json's chat_template; bos/eos from tokenizer_config.json, then
 * special_tokens_map.json. */
static bool from_dir(kg_ctx *ctx, const char *dir, found *f)
{
    char path[4096];
    bool failed = false;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if ((f->source = read_text(ctx, path, &failed)))
        snprintf(f->name, sizeof f->name, "%s", path);
    if (failed)
        return false;
    static const char *const files[] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 2; i++) {
        json_t *root;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (!load_json(ctx, path, &root))
            return false;
        bool ok = !root || ((i || f->source || config_template(ctx, root, path, f)) &&
                            config_token(ctx, root, path, "bos_token", &f->bos) &&
                            config_token(ctx, root, path, "eos_token", &f->eos));
        json_decref(root);
        if (!ok)
            return false;
    }
    return true;
}

/* The vocabulary's text of the token whose id the key gives, or NULL. */
static bool gguf_token(kg_ctx *ctx, const kg_weights *w, const char *key, char **out)
{
    int64_t id;
    size_t len;
    const char *s;
    if (!kg_weights_meta_int(w, key, &id) ||
        !(s = kg_weights_meta_str_at(w, "tokenizer.ggml.tokens", id, &len)))
        return true;
    if (!(*out = malloc(len + 1)))
        return oom(ctx, kg_weights_path(w));
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return true;
}

static bool from_gguf(kg_ctx *ctx, const char *path, found *f)
{
    kg_weights *w = kg_weights_open(ctx, path);
    if (!w)
        return false;
    const char *s = kg_weights_meta_str(w, "tokenizer.chat_template");
    bool ok = true;
    if (s) {
        snprintf(f->name, sizeof f->name, "%s: tokenizer.chat_template", path);
        ok = (f->source = strdup(s)) || oom(ctx, path);
    }
    ok = ok && gguf_token(ctx, w, "tokenizer.ggml.bos_token_id", &f->bos) &&
         gguf_token(ctx, w, "tokenizer.ggml.eos_token_id", &f->eos);
    kg_weights_close(w);
    return ok;
}

kg_chat_template *kg_chat_template_load(kg_ctx *ctx, const char *model_path)
{
    if (!ctx || kg_ctx_status(ctx) != KG_OK)
        return NULL;
    if (!model_path) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_chat_template_load: NULL path");
        return NULL;
    }
    found f = {0};
    struct stat st;
    bool ok;
    if (stat(model_path, &st) != 0) {
        ok = kg_set_error(ctx, KG_ERR_ARG, "%s: no such file or directory", model_path);
    } else if (S_ISDIR(st.st_mode)) {
        ok = from_dir(ctx, model_path, &f);
    } else {
        /* a tokenizer_config.json or other file: its directory; a GGUF: its metadata */
        size_t n = strlen(model_path);
        bool gguf = n >= 5 && strcmp(model_path + n - 5, ".gguf") == 0;
        if (!gguf) {
            FILE *probe = fopen(model_path, "rb");
            char magic[4] = {0};
            if (probe) {
                gguf = fread(magic, 1, 4, probe) == 4 && memcmp(magic, "GGUF", 4) == 0;
                fclose(probe);
            }
        }
        if (gguf) {
            ok = from_gguf(ctx, model_path, &f);
        } else {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", model_path);
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            else
                snprintf(dir, sizeof dir, ".");
            ok = from_dir(ctx, dir, &f);
        }
    }
    kg_chat_template *t = NULL;
    if (ok && !f.source)
        kg_set_error(ctx, KG_ERR_ARG, "%s has no chat template", model_path);
    else if (ok)
        t = kg_chat_template_new(ctx, f.source, f.name, f.bos, f.eos);
    found_free(&f);
    return t;
}
