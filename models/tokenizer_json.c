/* tokenizer_json.c — reading tokenizer files into the pipeline of tokenizer_internal.h:
 * tokenizer.json (HF tokenizers' serialization: model, added_tokens, normalizer, pre_tokenizer,
 * post_processor, decoder), vocab.txt (BERT, as transformers' BertTokenizer builds it),
 * tokenizer.model (through libsentencepiece), and a directory's tokenizer_config.json.
 * Every error names the file and the key or line.
 */
#include "models/tokenizer_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static bool oom(kg_tokenizer *tok)
{
    return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
}

/* Member key of o, or NULL when it is absent or null: the getters below then keep their default. */
static const json_t *member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* A bool member: def when absent or null, an error when of another kind. */
static bool get_bool(kg_tokenizer *tok, const json_t *o, const char *where, const char *key,
                     bool def, bool *out)
{
    *out = def;
    const json_t *v = member(o, key);
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected true or false", where, key);
    *out = json_is_true(v);
    return true;
}

/* A string member: def when absent or null (def may be NULL), an error for other kinds. */
static bool get_str(kg_tokenizer *tok, const json_t *o, const char *where, const char *key,
                    const char *def, const char **out)
{
    *out = def;
    const json_t *v = member(o, key);
    if (!v)
        return true;
    if (!json_is_string(v))
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected a string", where, key);
    *out = json_string_value(v);
    return true;
}

static bool get_int(kg_tokenizer *tok, const json_t *o, const char *where, const char *key,
                    int64_t def, int64_t lo, int64_t hi, int64_t *out)
{
    *out = def;
    const json_t *v = member(o, key);
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected an integer in %lld..%lld", where,
                            key, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return true;
}

/* The "type" of a component, or NULL with an error. */
static const char *type_of(kg_tokenizer *tok, const json_t *o, const char *where)
{
    if (!json_is_object(o))
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: expected an object", where), NULL;
    const char *t = json_string_value(json_object_get(o, "type"));
    if (!t)
        kg__tok_fail(tok, KG_ERR_ARG, "%s.type is missing", where);
    return t;
}

/* Replace patterns: {"String": s}; a {"Regex": r} is refused by name. */
static const char *pattern_string(kg_tokenizer *tok, const json_t *o, const char *where)
{
    const json_t *p = json_object_get(o, "pattern");
    const char *s = json_string_value(json_object_get(p, "String"));
    if (!s)
        kg__tok_fail(tok, KG_ERR_ARG, "%s.pattern: expected {\"String\": ...}%s", where,
                     json_object_get(p, "Regex") ? " (Regex patterns are not supported)" : "");
    return s;
}

/* prepend_scheme, or the older add_prefix_space. */
static bool get_prepend(kg_tokenizer *tok, const json_t *o, const char *where, kg__prepend *out)
{
    const char *s = json_string_value(json_object_get(o, "prepend_scheme"));
    if (s) {
        if (strcmp(s, "always") == 0)
            *out = KG__PREPEND_ALWAYS;
        else if (strcmp(s, "first") == 0)
            *out = KG__PREPEND_FIRST;
        else if (strcmp(s, "never") == 0)
            *out = KG__PREPEND_NEVER;
        else
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.prepend_scheme '%s': expected always, "
                                "first or never", where, s);
        return true;
    }
    bool add;
    if (!get_bool(tok, o, where, "add_prefix_space", true, &add))
        return false;
    *out = add ? KG__PREPEND_ALWAYS : KG__PREPEND_NEVER;
    return true;
}

/* The Metaspace replacement: one character. */
static char *get_replacement(kg_tokenizer *tok, const json_t *o, const char *where)
{
    const char *r;
    if (!get_str(tok, o, where, "replacement", "\xe2\x96\x81", &r))
        return NULL;
    int32_t cp;
    size_t n = strlen(r);
    if (n == 0 || kg__utf8_next(r, n, 0, &cp) != n)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.replacement: expected one character", where),
               NULL;
    char *p = dupn(r, n);
    if (!p)
        oom(tok);
    return p;
}

/* ---- normalizer, pre-tokenizer, decoder ---------------------------------------------------- */

/* A step of type "Sequence": each element of o[key] read by `read`, nested at most 4 deep. */
typedef bool (*step_reader)(kg_tokenizer *tok, const json_t *o, const char *where, int depth);
static bool read_sequence(kg_tokenizer *tok, const json_t *o, const char *key, const char *where,
                          int depth, step_reader read)
{
    const json_t *list = json_object_get(o, key);
    if (!json_is_array(list) || depth > 4)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected an array (nested at most 4 deep)",
                            where, key);
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        if (!read(tok, v, where, depth + 1))
            return false;
    }
    return true;
}

static kg__norm *new_norm(kg_tokenizer *tok, const char *where)
{
    if (tok->n_norm == KG__TOK_MAX_STEPS)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: more than %d normalizer steps", where,
                            KG__TOK_MAX_STEPS), NULL;
    kg__norm *st = &tok->norm[tok->n_norm++];
    *st = (kg__norm){0};
    return st;
}

static bool read_normalizer(kg_tokenizer *tok, const json_t *o, const char *where, int depth)
{
    if (!o || json_is_null(o))
        return true;
    const char *t = type_of(tok, o, where);
    if (!t)
        return false;
    if (strcmp(t, "Sequence") == 0)
        return read_sequence(tok, o, "normalizers", where, depth, read_normalizer);
    static const struct { const char *name; kg__nf form; } nf[] = {
        {"NFC", KG__NFC}, {"NFD", KG__NFD}, {"NFKC", KG__NFKC}, {"NFKD", KG__NFKD}};
    for (int i = 0; i < 4; i++)
        if (strcmp(t, nf[i].name) == 0) {
            kg__norm *st = new_norm(tok, where);
            if (st)
                st->kind = KG__NORM_NF, st->form = nf[i].form;
            return st != NULL;
        }
    kg__norm *st = new_norm(tok, where);
    if (!st)
        return false;
    if (strcmp(t, "BertNormalizer") == 0) {
        st->kind = KG__NORM_BERT;
        const json_t *sa = json_object_get(o, "strip_accents");
        if (!get_bool(tok, o, where, "clean_text", true, &st->clean_text) ||
            !get_bool(tok, o, where, "handle_chinese_chars", true, &st->chinese) ||
            !get_bool(tok, o, where, "lowercase", true, &st->lowercase) ||
            !get_bool(tok, o, where, "strip_accents", false, &st->strip_accents))
            return false;
        if (!sa || json_is_null(sa)) /* null: strip accents when lower-casing */
            st->strip_accents = st->lowercase;
        return true;
    }
    if (strcmp(t, "Lowercase") == 0) {
        st->kind = KG__NORM_LOWER;
        return true;
    }
    if (strcmp(t, "StripAccents") == 0) {
        st->kind = KG__NORM_STRIP_ACCENTS;
        return true;
    }
    if (strcmp(t, "Strip") == 0) {
        st->kind = KG__NORM_STRIP;
        return get_bool(tok, o, where, "strip_left", true, &st->left) &&
               get_bool(tok, o, where, "strip_right", true, &st->right);
    }
    if (strcmp(t, "Prepend") == 0) {
        const char *p;
        st->kind = KG__NORM_PREPEND;
        if (!get_str(tok, o, where, "prepend", NULL, &p))
            return false;
        if (!p)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.prepend is missing", where);
        return (st->a = strdup(p)) != NULL || oom(tok);
    }
    if (strcmp(t, "Replace") == 0) {
        const char *p = pattern_string(tok, o, where), *c;
        st->kind = KG__NORM_REPLACE;
        if (!p || !get_str(tok, o, where, "content", "", &c))
            return false;
        st->a = strdup(p);
        st->b = strdup(c);
        return (st->a && st->b) || oom(tok);
    }
    return kg__tok_fail(tok, KG_ERR_ARG, "%s.type '%s' is not supported (BertNormalizer, NFC, "
                        "NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend, Replace, "
                        "Sequence are)", where, t);
}

/* GPT-2's split, the only Split pattern read (it is what ByteLevel's use_regex means). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static bool read_pre(kg_tokenizer *tok, const json_t *o, const char *where, int depth)
{
    if (!o || json_is_null(o))
        return true;
    const char *t = type_of(tok, o, where);
    if (!t)
        return false;
    if (strcmp(t, "Sequence") == 0)
        return read_sequence(tok, o, "pretokenizers", where, depth, read_pre);
    if (tok->n_pre == KG__TOK_MAX_STEPS)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: more than %d pre-tokenizer steps", where,
                            KG__TOK_MAX_STEPS);
    kg__pre *st = &tok->pre[tok->n_pre++];
    *st = (kg__pre){0};
    if (strcmp(t, "BertPreTokenizer") == 0) {
        st->kind = KG__PRE_BERT;
        return true;
    }
    if (strcmp(t, "WhitespaceSplit") == 0) {
        st->kind = KG__PRE_WHITESPACE_SPLIT;
        return true;
    }
    if (strcmp(t, "ByteLevel") == 0) {
        st->kind = KG__PRE_BYTELEVEL;
        tok->model.byte_level = true;
        return get_bool(tok, o, where, "add_prefix_space", true, &st->add_prefix_space) &&
               get_bool(tok, o, where, "use_regex", true, &st->use_regex);
    }
    if (strcmp(t, "Digits") == 0) {
        st->kind = KG__PRE_DIGITS;
        return get_bool(tok, o, where, "individual_digits", false, &st->individual);
    }
    if (strcmp(t, "Metaspace") == 0) {
        st->kind = KG__PRE_METASPACE;
        return get_prepend(tok, o, where, &st->prepend) &&
               get_bool(tok, o, where, "split", true, &st->split) &&
               (st->replacement = get_replacement(tok, o, where)) != NULL;
    }
    if (strcmp(t, "Split") == 0) {
        const char *re = json_string_value(json_object_get(json_object_get(o, "pattern"),
                                                           "Regex"));
        const char *behavior = json_string_value(json_object_get(o, "behavior"));
        bool invert;
        if (!get_bool(tok, o, where, "invert", false, &invert))
            return false;
        if (re && strcmp(re, gpt2_pattern) == 0 && behavior && strcmp(behavior, "Isolated") == 0 &&
            !invert) {
            st->kind = KG__PRE_GPT2_SPLIT;
            return true;
        }
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: Split is supported only with GPT-2's pattern "
                            "and behavior Isolated", where);
    }
    return kg__tok_fail(tok, KG_ERR_ARG, "%s.type '%s' is not supported (BertPreTokenizer, "
                        "ByteLevel, Metaspace, Digits, WhitespaceSplit, Split, Sequence are)",
                        where, t);
}

static bool read_decoder(kg_tokenizer *tok, const json_t *o, const char *where, int depth)
{
    if (!o || json_is_null(o))
        return true;
    tok->has_decoder = true;
    const char *t = type_of(tok, o, where);
    if (!t)
        return false;
    if (strcmp(t, "Sequence") == 0)
        return read_sequence(tok, o, "decoders", where, depth, read_decoder);
    if (tok->n_dec == KG__TOK_MAX_STEPS)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: more than %d decoder steps", where,
                            KG__TOK_MAX_STEPS);
    kg__dec *st = &tok->dec[tok->n_dec++];
    *st = (kg__dec){0};
    const char *s;
    if (strcmp(t, "ByteLevel") == 0) {
        st->kind = KG__DEC_BYTELEVEL;
        return true;
    }
    if (strcmp(t, "ByteFallback") == 0) {
        st->kind = KG__DEC_BYTEFALLBACK;
        return true;
    }
    if (strcmp(t, "Fuse") == 0) {
        st->kind = KG__DEC_FUSE;
        return true;
    }
    if (strcmp(t, "WordPiece") == 0) {
        st->kind = KG__DEC_WORDPIECE;
        return get_str(tok, o, where, "prefix", "##", &s) &&
               get_bool(tok, o, where, "cleanup", true, &st->cleanup) &&
               ((st->a = strdup(s)) != NULL || oom(tok));
    }
    if (strcmp(t, "Metaspace") == 0) {
        st->kind = KG__DEC_METASPACE;
        return get_prepend(tok, o, where, &st->prepend) &&
               (st->a = get_replacement(tok, o, where)) != NULL;
    }
    if (strcmp(t, "Replace") == 0) {
        const char *p = pattern_string(tok, o, where);
        st->kind = KG__DEC_REPLACE;
        if (!p || !get_str(tok, o, where, "content", "", &s))
            return false;
        st->a = strdup(p);
        st->b = strdup(s);
        return (st->a && st->b) || oom(tok);
    }
    if (strcmp(t, "Strip") == 0) {
        int64_t a, b;
        st->kind = KG__DEC_STRIP;
        if (!get_str(tok, o, where, "content", " ", &s) ||
            !get_int(tok, o, where, "start", 0, 0, 1 << 20, &a) ||
            !get_int(tok, o, where, "stop", 0, 0, 1 << 20, &b))
            return false;
        size_t n = strlen(s);
        if (n == 0 || kg__utf8_next(s, n, 0, &st->strip_cp) != n)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.content: expected one character", where);
        st->start = (int)a, st->stop = (int)b;
        return true;
    }
    return kg__tok_fail(tok, KG_ERR_ARG, "%s.type '%s' is not supported (ByteLevel, WordPiece, "
                        "Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence are)", where, t);
}

/* ---- post-processor: the template of special ids around one sequence or a pair -------------- */

static bool tpl_special(kg_tokenizer *tok, kg__tpl_item *items, int *n, const int32_t *ids,
                        int n_ids, int type_id, const char *where)
{
    if (*n == KG__TPL_MAX || n_ids > KG__TPL_MAX_IDS)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: more than %d items or %d ids per token", where,
                            KG__TPL_MAX, KG__TPL_MAX_IDS);
    kg__tpl_item *it = &items[(*n)++];
    *it = (kg__tpl_item){.seq = -1, .type_id = (int8_t)type_id, .n_ids = (int8_t)n_ids};
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab.n)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s: special id %d is outside the vocabulary "
                                "(0..%d)", where, ids[i], tok->vocab.n - 1);
        it->ids[i] = ids[i];
    }
    return true;
}

static bool tpl_seq(kg_tokenizer *tok, kg__tpl_item *items, int *n, int seq, int type_id,
                    const char *where)
{
    if (*n == KG__TPL_MAX)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s: more than %d items", where, KG__TPL_MAX);
    items[(*n)++] = (kg__tpl_item){.seq = (int8_t)seq, .type_id = (int8_t)type_id};
    return true;
}

/* ["[SEP]", 102] of BertProcessing and RobertaProcessing. */
static bool pair_id(kg_tokenizer *tok, const json_t *o, const char *key, const char *where,
                    int32_t *id)
{
    const json_t *v = json_object_get(o, key);
    const json_t *i = json_array_get(v, 1);
    if (!json_is_array(v) || !json_is_integer(i) || json_integer_value(i) < 0 ||
        json_integer_value(i) >= tok->vocab.n)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected [token, id] with an id in the "
                            "vocabulary", where, key);
    *id = (int32_t)json_integer_value(i);
    return true;
}

static bool read_template_items(kg_tokenizer *tok, const json_t *list, const json_t *specials,
                                bool pair, const char *where)
{
    kg__tpl_item *items = pair ? tok->tpl.pair : tok->tpl.single;
    int *n = pair ? &tok->tpl.n_pair : &tok->tpl.n_single;
    *n = 0;
    if (!json_is_array(list))
        return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s: expected an array", where,
                            pair ? "pair" : "single");
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        const json_t *sp = json_object_get(v, "SpecialToken"), *sq = json_object_get(v,
                                                                                    "Sequence");
        const json_t *body = sp ? sp : sq;
        int64_t type_id;
        const char *id;
        if (!body || !get_str(tok, body, where, "id", NULL, &id) ||
            !get_int(tok, body, where, "type_id", 0, 0, 127, &type_id) || !id)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.%s[%zu]: expected {\"SpecialToken\" or "
                                "\"Sequence\": {\"id\", \"type_id\"}}", where,
                                pair ? "pair" : "single", i);
        if (sq) {
            if (strcmp(id, "A") != 0 && strcmp(id, "B") != 0)
                return kg__tok_fail(tok, KG_ERR_ARG, "%s: sequence '%s'; expected A or B",
                                    where, id);
            if (!tpl_seq(tok, items, n, id[0] == 'B', (int)type_id, where))
                return false;
            continue;
        }
        const json_t *ids = json_object_get(json_object_get(specials, id), "ids");
        if (!json_is_array(ids))
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.special_tokens['%s'].ids is missing", where,
                                id);
        int32_t v32[KG__TPL_MAX_IDS + 1];
        size_t k, n_ids = json_array_size(ids);
        const json_t *x;
        json_array_foreach(ids, k, x) {
            if (k > KG__TPL_MAX_IDS)
                break;
            v32[k] = json_is_integer(x) && json_integer_value(x) >= 0 &&
                             json_integer_value(x) < KG__TOK_MAX_VOCAB
                         ? (int32_t)json_integer_value(x) : -1;
        }
        if (!tpl_special(tok, items, n, v32, (int)n_ids, (int)type_id, where))
            return false;
    }
    return true;
}

static bool read_post(kg_tokenizer *tok, const json_t *o, const char *where, int depth)
{
    if (!o || json_is_null(o))
        return true;
    const char *t = type_of(tok, o, where);
    if (!t)
        return false;
    if (strcmp(t, "Sequence") == 0)
        return read_sequence(tok, o, "processors", where, depth, read_post);
    if (strcmp(t, "ByteLevel") == 0) /* offsets only */
        return true;
    if (strcmp(t, "TemplateProcessing") == 0) {
        const json_t *sp = json_object_get(o, "special_tokens");
        return read_template_items(tok, json_object_get(o, "single"), sp, false, where) &&
               read_template_items(tok, json_object_get(o, "pair"), sp, true, where);
    }
    bool bert = strcmp(t, "BertProcessing") == 0;
    if (bert || strcmp(t, "RobertaProcessing") == 0) {
        int32_t cls, sep;
        kg__template *p = &tok->tpl;
        p->n_single = p->n_pair = 0;
        /* BERT: [CLS] A [SEP] B:1 [SEP]:1; RoBERTa: <s> A </s> </s> B </s>, all type 0 */
        return pair_id(tok, o, "cls", where, &cls) && pair_id(tok, o, "sep", where, &sep) &&
               tpl_special(tok, p->single, &p->n_single, &cls, 1, 0, where) &&
               tpl_seq(tok, p->single, &p->n_single, 0, 0, where) &&
               tpl_special(tok, p->single, &p->n_single, &sep, 1, 0, where) &&
               tpl_special(tok, p->pair, &p->n_pair, &cls, 1, 0, where) &&
               tpl_seq(tok, p->pair, &p->n_pair, 0, 0, where) &&
               tpl_special(tok, p->pair, &p->n_pair, &sep, 1, 0, where) &&
               (bert || tpl_special(tok, p->pair, &p->n_pair, &sep, 1, 0, where)) &&
               tpl_seq(tok, p->pair, &p->n_pair, 1, bert, where) &&
               tpl_special(tok, p->pair, &p->n_pair, &sep, 1, bert, where);
    }
    return kg__tok_fail(tok, KG_ERR_ARG, "%s.type '%s' is not supported (TemplateProcessing, "
                        "BertProcessing, RobertaProcessing, ByteLevel, Sequence are)", where, t);
}

/* ---- the model and the vocabulary ------------------------------------------------------------ */

static int32_t vocab_id(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 &&
                   json_integer_value(v) < KG__TOK_MAX_VOCAB
               ? (int32_t)json_integer_value(v) : -1;
}

/* model.vocab and added_tokens into the vocabulary. Added tokens take their ids as HF's
 * AddedVocabulary gives them: the model's id when the model has the text, else the next id
 * after the model and the tokens added before (the file's "id" is only a record of that). */
static bool read_vocab(kg_tokenizer *tok, const json_t *vocab, const json_t *added)
{
    if (!json_is_object(vocab))
        return kg__tok_fail(tok, KG_ERR_ARG, "model.vocab is %s; expected an object of "
                            "token: id", vocab ? "not an object" : "missing");
    if (added && !json_is_null(added) && !json_is_array(added))
        return kg__tok_fail(tok, KG_ERR_ARG, "added_tokens: expected an array");
    int32_t max_id = -1, model_size = (int32_t)json_object_size(vocab);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = vocab_id(v);
        if (id < 0)
            return kg__tok_fail(tok, KG_ERR_ARG, "model.vocab['%.40s']: expected an id in "
                                "0..%d", key, KG__TOK_MAX_VOCAB - 1);
        max_id = id > max_id ? id : max_id;
    }
    size_t n_added = json_array_size(added);
    if ((int64_t)max_id + 1 + (int64_t)n_added > KG__TOK_MAX_VOCAB)
        return kg__tok_fail(tok, KG_ERR_ARG, "more than %d tokens", KG__TOK_MAX_VOCAB);
    if (!kg__vocab_init(&tok->vocab, max_id + 1 + (int32_t)n_added))
        return oom(tok);
    json_object_foreach((json_t *)vocab, key, v) {
        if (!kg__vocab_set(&tok->vocab, vocab_id(v), key, strlen(key)))
            return oom(tok);
    }
    tok->vocab.n = max_id + 1;
    if (!kg__vocab_index(&tok->vocab))
        return oom(tok);
    int32_t max_added = -1;
    size_t i;
    json_array_foreach(added, i, v) {
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        const char *content;
        kg__added a = {0};
        if (!json_is_object(v) || !get_str(tok, v, where, "content", NULL, &content) ||
            !get_bool(tok, v, where, "special", false, &a.special) ||
            !get_bool(tok, v, where, "lstrip", false, &a.lstrip) ||
            !get_bool(tok, v, where, "rstrip", false, &a.rstrip) ||
            !get_bool(tok, v, where, "single_word", false, &a.single_word) ||
            !get_bool(tok, v, where, "normalized", !a.special, &a.normalized))
            return kg__tok_fail(tok, KG_ERR_ARG, "%s: expected an object with content", where);
        if (!content || !*content)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s.content: expected a non-empty string",
                                where);
        size_t len = strlen(content);
        int32_t id = kg__vocab_find(&tok->vocab, content, len);
        for (int k = 0; id < 0 && k < tok->n_added; k++)
            if (tok->added[k].len == len && memcmp(tok->added[k].text, content, len) == 0)
                id = tok->added[k].id;
        if (id < 0)
            id = max_added < 0 ? model_size
               : max_added >= model_size || model_size == 0 ? max_added + 1 : model_size;
        if (id >= tok->vocab.n) { /* the vocabulary grows into the room made above */
            if (id >= max_id + 1 + (int32_t)n_added)
                return kg__tok_fail(tok, KG_ERR_ARG, "%s: id %d out of range", where, id);
            tok->vocab.n = id + 1;
        }
        if (!tok->vocab.piece[id] && !kg__vocab_set(&tok->vocab, id, content, len))
            return oom(tok);
        if (!kg__tok_add(tok, content, len, id, a.special))
            return false;
        kg__added *b = &tok->added[tok->n_added - 1];
        b->lstrip = a.lstrip, b->rstrip = a.rstrip, b->single_word = a.single_word;
        b->normalized = a.normalized;
        max_added = id > max_added ? id : max_added;
    }
    return kg__vocab_index(&tok->vocab) || oom(tok);
}

static bool read_wordpiece(kg_tokenizer *tok, const json_t *m)
{
    const char *unk, *prefix;
    tok->model.kind = KG__MODEL_WORDPIECE;
    if (!get_str(tok, m, "model", "unk_token", "[UNK]", &unk) ||
        !get_str(tok, m, "model", "continuing_subword_prefix", "##", &prefix) ||
        !get_int(tok, m, "model", "max_input_chars_per_word", 100, 0, INT64_MAX,
                 &tok->model.max_chars))
        return false;
    tok->model.unk = kg__vocab_find(&tok->vocab, unk, strlen(unk));
    if (tok->model.unk < 0)
        return kg__tok_fail(tok, KG_ERR_ARG, "model.unk_token '%s' is not in model.vocab", unk);
    return (tok->model.prefix = strdup(prefix)) != NULL || oom(tok);
}

static bool read_merge(kg_tokenizer *tok, const json_t *v, size_t i)
{
    const char *a, *b;
    size_t na, nb;
    const char *s = json_string_value(v);
    if (s) { /* "a b" */
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return kg__tok_fail(tok, KG_ERR_ARG, "model.merges[%zu] '%.40s': expected two "
                                "tokens separated by one space", i, s);
        a = s, na = (size_t)(sp - s), b = sp + 1, nb = strlen(b);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
        a = json_string_value(json_array_get(v, 0)), na = strlen(a);
        b = json_string_value(json_array_get(v, 1)), nb = strlen(b);
    } else {
        return kg__tok_fail(tok, KG_ERR_ARG, "model.merges[%zu]: expected \"a b\" or [\"a\", "
                            "\"b\"]", i);
    }
    char *ab = malloc(na + nb + 1);
    if (!ab)
        return oom(tok);
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    int32_t ia = kg__vocab_find(&tok->vocab, a, na), ib = kg__vocab_find(&tok->vocab, b, nb);
    int32_t iab = kg__vocab_find(&tok->vocab, ab, na + nb);
    free(ab);
    if (ia < 0 || ib < 0 || iab < 0)
        return kg__tok_fail(tok, KG_ERR_ARG, "model.merges[%zu]: '%.*s' is not in model.vocab",
                            i, (int)(ia < 0 ? na : ib < 0 ? nb : na + nb),
                            ia < 0 ? a : ib < 0 ? b : "(the merged token)");
    return kg__merges_add(&tok->model.merges, ia, ib, (int32_t)i, iab) || oom(tok);
}

static void find_byte_pieces(kg_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->model.byte_id[b] = kg__vocab_find(&tok->vocab, name, 6);
    }
}

static bool read_bpe(kg_tokenizer *tok, const json_t *m)
{
    kg__model *md = &tok->model;
    const char *unk, *prefix, *suffix;
    md->kind = KG__MODEL_BPE;
    if (!get_str(tok, m, "model", "unk_token", NULL, &unk) ||
        !get_str(tok, m, "model", "continuing_subword_prefix", "", &prefix) ||
        !get_str(tok, m, "model", "end_of_word_suffix", "", &suffix) ||
        !get_bool(tok, m, "model", "byte_fallback", false, &md->byte_fallback) ||
        !get_bool(tok, m, "model", "fuse_unk", false, &md->fuse_unk) ||
        !get_bool(tok, m, "model", "ignore_merges", false, &md->ignore_merges))
        return false;
    if (*prefix || *suffix)
        return kg__tok_fail(tok, KG_ERR_ARG, "model: continuing_subword_prefix and "
                            "end_of_word_suffix are not supported");
    if (unk && (md->unk = kg__vocab_find(&tok->vocab, unk, strlen(unk))) < 0)
        return kg__tok_fail(tok, KG_ERR_ARG, "model.unk_token '%s' is not in model.vocab", unk);
    const json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges))
        return kg__tok_fail(tok, KG_ERR_ARG, "model.merges is %s; expected an array",
                            merges ? "not an array" : "missing");
    size_t i;
    const json_t *v;
    json_array_foreach(merges, i, v) {
        if (i >= (size_t)INT32_MAX || !read_merge(tok, v, i))
            return false;
    }
    if (md->byte_fallback)
        find_byte_pieces(tok);
    return true;
}

/* ---- tokenizer_config.json ------------------------------------------------------------------- */

typedef struct tok_config {
    int lower, strip_accents, chinese, add_bos, add_eos; /* -1: not given */
    char *name[KG_TOKEN_COUNT];                          /* special tokens' text, or NULL */
} tok_config;

static void config_free(tok_config *c)
{
    for (int i = 0; i < KG_TOKEN_COUNT; i++)
        free(c->name[i]);
}

static int config_bool(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* dir's tokenizer_config.json, then special_tokens_map.json for names it lacks. */
static bool read_config(kg_tokenizer *tok, const char *dir, tok_config *cfg)
{
    static const char *const keys[KG_TOKEN_COUNT] = {
        [KG_TOKEN_BOS] = "bos_token", [KG_TOKEN_EOS] = "eos_token",
        [KG_TOKEN_PAD] = "pad_token", [KG_TOKEN_UNK] = "unk_token",
        [KG_TOKEN_CLS] = "cls_token", [KG_TOKEN_SEP] = "sep_token",
        [KG_TOKEN_MASK] = "mask_token"};
    *cfg = (tok_config){-1, -1, -1, -1, -1, {0}};
    static const char *const files[] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int f = 0; dir && f < 2; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        FILE *probe = fopen(path, "rb");
        if (!probe)
            continue;
        fclose(probe);
        json_error_t e; /* as reals: transformers writes model_max_length = 1e30 as an integer */
        json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
        if (!json_is_object(root)) {
            json_decref(root);
            return kg_set_error(tok->ctx, KG_ERR_ARG, "%s: %s (line %d); expected a JSON object",
                                path, root ? "not an object" : e.text, e.line);
        }
        if (f == 0) {
            cfg->lower = config_bool(root, "do_lower_case");
            cfg->strip_accents = config_bool(root, "strip_accents");
            cfg->chinese = config_bool(root, "tokenize_chinese_chars");
            cfg->add_bos = config_bool(root, "add_bos_token");
            cfg->add_eos = config_bool(root, "add_eos_token");
        }
        for (int i = 0; i < KG_TOKEN_COUNT; i++) {
            const json_t *v = json_object_get(root, keys[i]);
            const char *s = json_is_string(v) ? json_string_value(v)
                                              : json_string_value(json_object_get(v, "content"));
            if (s && !cfg->name[i] && !(cfg->name[i] = strdup(s))) {
                json_decref(root);
                return oom(tok);
            }
        }
        json_decref(root);
    }
    return true;
}

/* Special ids from the names the configuration gives. */
static void config_specials(kg_tokenizer *tok, const tok_config *cfg)
{
    for (int i = 0; i < KG_TOKEN_COUNT; i++)
        if (cfg->name[i])
            tok->special[i] = kg__vocab_find(&tok->vocab, cfg->name[i], strlen(cfg->name[i]));
}

/* ---- tokenizer.json ---------------------------------------------------------------------------- */

bool kg__tok_load_json(kg_tokenizer *tok, const char *dir)
{
    json_error_t e;
    json_t *root = json_load_file(tok->file, JSON_ALLOW_NUL, &e);
    if (!root)
        return kg__tok_fail(tok, KG_ERR_ARG, "not valid JSON: %s (line %d, column %d)", e.text,
                            e.line, e.column);
    bool ok = json_is_object(root) || kg__tok_fail(tok, KG_ERR_ARG, "expected a JSON object");
    const json_t *m = json_object_get(root, "model");
    if (ok && !json_is_object(m))
        ok = kg__tok_fail(tok, KG_ERR_ARG, "model is %s; expected an object",
                          m ? "not an object" : "missing");
    const char *type = ok ? json_string_value(json_object_get(m, "type")) : NULL;
    if (ok && !type) /* older files leave the type out: tell the kinds apart by their keys */
        type = json_object_get(m, "merges") ? "BPE"
             : json_object_get(m, "max_input_chars_per_word") ? "WordPiece" : NULL;
    if (ok && (!type || (strcmp(type, "BPE") != 0 && strcmp(type, "WordPiece") != 0)))
        ok = kg__tok_fail(tok, KG_ERR_ARG, "model.type %s%s%s; expected BPE or WordPiece",
                          type ? "'" : "is ", type ? type : "missing", type ? "'" : "");
    ok = ok && read_vocab(tok, json_object_get(m, "vocab"), json_object_get(root, "added_tokens"));
    ok = ok && (strcmp(type, "BPE") == 0 ? read_bpe(tok, m) : read_wordpiece(tok, m));
    ok = ok && read_normalizer(tok, json_object_get(root, "normalizer"), "normalizer", 0);
    ok = ok && read_pre(tok, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0);
    ok = ok && read_post(tok, json_object_get(root, "post_processor"), "post_processor", 0);
    ok = ok && read_decoder(tok, json_object_get(root, "decoder"), "decoder", 0);
    json_decref(root);
    if (!ok)
        return false;
    tok->kind = tok->model.kind == KG__MODEL_WORDPIECE ? "wordpiece"
              : tok->model.byte_level ? "bpe (byte-level)" : "bpe (sentencepiece-style)";
    tok_config cfg;
    ok = read_config(tok, dir, &cfg);
    if (ok)
        config_specials(tok, &cfg);
    config_free(&cfg);
    return ok;
}

/* ---- vocab.txt ---------------------------------------------------------------------------------- */

/* The whole file, NUL-terminated; at most max bytes. */
static char *read_all(kg_tokenizer *tok, size_t max, size_t *n)
{
    FILE *f = fopen(tok->file, "rb");
    if (!f)
        return kg__tok_fail(tok, KG_ERR_ARG, "cannot be opened"), NULL;
    kg__buf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0 && b.n <= max)
        kg__buf_put(&b, chunk, k);
    bool err = ferror(f);
    fclose(f);
    if (err || b.n > max) {
        free(b.p);
        return kg__tok_fail(tok, KG_ERR_ARG, err ? "read error" : "larger than %zu bytes", max),
               NULL;
    }
    char *p = kg__buf_take(&b, n);
    if (!p)
        oom(tok);
    return p;
}

bool kg__tok_load_vocab_txt(kg_tokenizer *tok, const char *dir)
{
    size_t n;
    char *text = read_all(tok, (size_t)1 << 28, &n);
    if (!text)
        return false;
    /* lines end at \n, \r\n or \r (Python's universal newlines); a last empty line is none */
    int32_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n' || (text[i] == '\r' && (i + 1 == n || text[i + 1] != '\n'));
    lines += n > 0 && text[n - 1] != '\n' && text[n - 1] != '\r';
    bool ok = lines <= KG__TOK_MAX_VOCAB ||
              kg__tok_fail(tok, KG_ERR_ARG, "more than %d lines", KG__TOK_MAX_VOCAB);
    ok = ok && (kg__vocab_init(&tok->vocab, lines) || oom(tok));
    int32_t line = 0;
    for (size_t i = 0; ok && i < n; line++) {
        size_t j = i;
        while (j < n && text[j] != '\n' && text[j] != '\r')
            j++;
        if (memchr(text + i, 0, j - i) || !kg__utf8_valid(text + i, j - i))
            ok = kg__tok_fail(tok, KG_ERR_ARG, "line %d: not valid UTF-8 text", line + 1);
        else
            ok = kg__vocab_set(&tok->vocab, line, text + i, j - i) || oom(tok);
        i = j + (j < n && text[j] == '\r' && j + 1 < n && text[j + 1] == '\n') + (j < n);
    }
    free(text);
    ok = ok && (kg__vocab_index(&tok->vocab) || oom(tok));
    tok_config cfg = {0};
    ok = ok && read_config(tok, dir, &cfg);
    if (!ok) {
        config_free(&cfg);
        return false;
    }
    /* transformers' BertTokenizer: BertNormalizer, BertPreTokenizer, WordPiece, its decoder */
    static const char *const defaults[KG_TOKEN_COUNT] = {
        [KG_TOKEN_PAD] = "[PAD]", [KG_TOKEN_UNK] = "[UNK]", [KG_TOKEN_CLS] = "[CLS]",
        [KG_TOKEN_SEP] = "[SEP]", [KG_TOKEN_MASK] = "[MASK]"};
    for (int i = 0; i < KG_TOKEN_COUNT; i++) {
        const char *name = cfg.name[i] ? cfg.name[i] : defaults[i];
        int32_t id = name ? kg__vocab_find(&tok->vocab, name, strlen(name)) : -1;
        tok->special[i] = id;
        if (id >= 0 && (ok = kg__tok_add(tok, name, strlen(name), id, true)) == false)
            break;
    }
    kg__model *m = &tok->model;
    m->kind = KG__MODEL_WORDPIECE;
    m->unk = tok->special[KG_TOKEN_UNK];
    m->max_chars = 100;
    int32_t cls = tok->special[KG_TOKEN_CLS], sep = tok->special[KG_TOKEN_SEP];
    if (ok && (m->unk < 0 || cls < 0 || sep < 0))
        ok = kg__tok_fail(tok, KG_ERR_ARG, "has no %s line; expected the BERT special tokens",
                          m->unk < 0 ? "[UNK]" : cls < 0 ? "[CLS]" : "[SEP]");
    ok = ok && ((m->prefix = strdup("##")) != NULL || oom(tok));
    if (ok) {
        tok->norm[tok->n_norm++] = (kg__norm){
            .kind = KG__NORM_BERT, .clean_text = true, .chinese = cfg.chinese != 0,
            .lowercase = cfg.lower != 0,
            .strip_accents = cfg.strip_accents >= 0 ? cfg.strip_accents != 0 : cfg.lower != 0};
        tok->pre[tok->n_pre++] = (kg__pre){.kind = KG__PRE_BERT};
        tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_WORDPIECE, .cleanup = true,
                                           .a = strdup("##")};
        tok->has_decoder = true;
        ok = tok->dec[0].a != NULL || oom(tok);
        kg__template *p = &tok->tpl;
        p->single[0] = (kg__tpl_item){.seq = -1, .n_ids = 1, .ids = {cls}};
        p->single[1] = (kg__tpl_item){.seq = 0};
        p->single[2] = (kg__tpl_item){.seq = -1, .n_ids = 1, .ids = {sep}};
        memcpy(p->pair, p->single, sizeof p->single[0] * 3);
        p->pair[3] = (kg__tpl_item){.seq = 1, .type_id = 1};
        p->pair[4] = (kg__tpl_item){.seq = -1, .type_id = 1, .n_ids = 1, .ids = {sep}};
        p->n_single = 3, p->n_pair = 5;
    }
    config_free(&cfg);
    tok->kind = "wordpiece";
    return ok;
}

/* ---- tokenizer.model ------------------------------------------------------------------------------ */

/* BOS and EOS around each sequence as LlamaTokenizer adds them (add_bos_token, add_eos_token). */
void kg__tok_bos_eos_template(kg_tokenizer *tok, bool bos, bool eos)
{
    kg__template *p = &tok->tpl;
    int32_t b = tok->special[KG_TOKEN_BOS], e = tok->special[KG_TOKEN_EOS];
    bos = bos && b >= 0, eos = eos && e >= 0;
    p->n_single = p->n_pair = 0;
    for (int s = 0; s < 2; s++) {
        kg__tpl_item *items = s ? p->pair : p->single;
        int *n = s ? &p->n_pair : &p->n_single;
        for (int q = 0; q <= s; q++) {
            if (bos)
                items[(*n)++] = (kg__tpl_item){.seq = -1, .type_id = (int8_t)q, .n_ids = 1,
                                               .ids = {b}};
            items[(*n)++] = (kg__tpl_item){.seq = (int8_t)q, .type_id = (int8_t)q};
            if (eos)
                items[(*n)++] = (kg__tpl_item){.seq = -1, .type_id = (int8_t)q, .n_ids = 1,
                                               .ids = {e}};
        }
    }
}

bool kg__tok_load_spm(kg_tokenizer *tok, const char *dir)
{
    size_t n;
    char *data = read_all(tok, (size_t)1 << 30, &n);
    if (!data)
        return false;
    char err[256];
    tok->model.spm = kg__spm_load(data, n, err, sizeof err);
    free(data);
    if (!tok->model.spm)
        return kg__tok_fail(tok, KG_ERR_ARG, "not a sentencepiece model: %s", err);
    tok->model.kind = KG__MODEL_SPM_LIB;
    tok->kind = "sentencepiece";
    int32_t size = kg__spm_size(tok->model.spm), ids[4];
    if (size <= 0 || size > KG__TOK_MAX_VOCAB)
        return kg__tok_fail(tok, KG_ERR_ARG, "%d pieces; expected 1..%d", size,
                            KG__TOK_MAX_VOCAB);
    if (!kg__vocab_init(&tok->vocab, size))
        return oom(tok);
    for (int32_t id = 0; id < size; id++) {
        size_t len;
        const char *p = kg__spm_piece(tok->model.spm, id, &len);
        if (!kg__vocab_set(&tok->vocab, id, p, len))
            return oom(tok);
    }
    if (!kg__vocab_index(&tok->vocab))
        return oom(tok);
    kg__spm_specials(tok->model.spm, &ids[0], &ids[1], &ids[2], &ids[3]);
    static const kg_special_token which[4] = {KG_TOKEN_BOS, KG_TOKEN_EOS, KG_TOKEN_UNK,
                                              KG_TOKEN_PAD};
    for (int i = 0; i < 4; i++)
        tok->special[which[i]] = ids[i] >= 0 && ids[i] < size ? ids[i] : -1;
    tok->model.unk = tok->special[KG_TOKEN_UNK];
    /* control pieces and the unknown piece are matched in the text, as transformers and
     * llama.cpp do (sentencepiece alone would spell "<s>" out) */
    for (int32_t id = 0; id < size; id++)
        if ((kg__spm_is_control(tok->model.spm, id) || id == tok->model.unk) &&
            tok->vocab.len[id] &&
            !kg__tok_add(tok, tok->vocab.piece[id], tok->vocab.len[id], id, true))
            return false;
    tok_config cfg;
    bool ok = read_config(tok, dir, &cfg);
    if (ok) {
        config_specials(tok, &cfg);
        kg__tok_bos_eos_template(tok, cfg.add_bos != 0, cfg.add_eos == 1);
    }
    config_free(&cfg);
    return ok;
}
