/* gguf_vocab.c — the tokenizer a GGUF file describes in its tokenizer.ggml.* metadata, built as
 * llama.cpp and transformers' GGUF loader build it: "gpt2" is byte-level BPE from tokens and
 * merges (split by tokenizer.ggml.pre), "llama" is SentencePiece BPE merged by token score with
 * byte fallback. Control tokens become special tokens matched in the text.
 */
#include "models/tokenizer_internal.h"
#include "models/kg_formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's token types */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_BYTE = 6 };

/* The id a metadata key holds: -1 when absent; false with an error when outside 0..n-1. */
static bool meta_id(kg_tokenizer *tok, const kg_weights *w, const char *key, int32_t *out)
{
    int64_t v;
    *out = -1;
    if (!kg_weights_meta_int(w, key, &v))
        return true;
    if (v < 0 || v >= tok->vocab.n)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s is %lld; expected a token id in 0..%d", key,
                            (long long)v, tok->vocab.n - 1);
    *out = (int32_t)v;
    return true;
}

static bool in_bytelevel_alphabet(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int32_t c;
        i += kg__utf8_next(s, n, i, &c);
        if (kg__bytelevel_byte(c) < 0)
            return false;
    }
    return true;
}

static bool read_merges(kg_tokenizer *tok, const kg_weights *w)
{
    const char *key = "tokenizer.ggml.merges";
    int64_t n = kg_weights_meta_len(w, key);
    if (n < 0)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s is missing; expected the merges of a gpt2 "
                            "vocabulary", key);
    kg__buf ab = {0};
    for (int64_t i = 0; i < n && i < INT32_MAX; i++) {
        size_t len;
        const char *s = kg_weights_meta_str_at(w, key, i, &len);
        /* split at the first space after the first byte, as llama.cpp */
        const char *sp = s && len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            free(ab.p);
            return kg__tok_fail(tok, KG_ERR_ARG, "%s[%lld]: expected two tokens separated by a "
                                "space", key, (long long)i);
        }
        size_t na = (size_t)(sp - s), nb = len - na - 1;
        ab.n = 0;
        kg__buf_put(&ab, s, na);
        kg__buf_put(&ab, sp + 1, nb);
        if (ab.oom)
            return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
        int32_t ia = kg__vocab_find(&tok->vocab, s, na);
        int32_t ib = kg__vocab_find(&tok->vocab, sp + 1, nb);
        int32_t iab = kg__vocab_find(&tok->vocab, ab.p, ab.n);
        if (ia < 0 || ib < 0 || iab < 0) {
            free(ab.p);
            return kg__tok_fail(tok, KG_ERR_ARG, "%s[%lld]: '%.*s' is not in "
                                "tokenizer.ggml.tokens", key, (long long)i, (int)len, s);
        }
        if (!kg__merges_add(&tok->model.merges, ia, ib, (int32_t)i, iab)) {
            free(ab.p);
            return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
        }
    }
    free(ab.p);
    return true;
}

/* tokenizer.ggml.pre: the split before BPE. llama.cpp's "smollm" family splits digits one by
 * one before GPT-2's regex (so did the models' own tokenizer.json); "gpt-2" is the regex alone. */
static bool gpt2_pre(kg_tokenizer *tok, const kg_weights *w)
{
    static const char *const digit_split[] = {"smollm", "starcoder", "refact", "command-r",
                                              "codeshell", "exaone", "minerva-7b"};
    const char *pre = kg_weights_meta_str(w, "tokenizer.ggml.pre");
    bool digits = false, known = !pre || strcmp(pre, "gpt-2") == 0 || strcmp(pre, "default") == 0;
    for (size_t i = 0; pre && i < sizeof digit_split / sizeof *digit_split; i++)
        if (strcmp(pre, digit_split[i]) == 0)
            known = digits = true;
    if (!known)
        return kg__tok_fail(tok, KG_ERR_ARG, "tokenizer.ggml.pre '%s' is not supported (gpt-2, "
                            "default, smollm, starcoder, refact, command-r, codeshell, exaone, "
                            "minerva-7b are)", pre);
    if (digits)
        tok->pre[tok->n_pre++] = (kg__pre){.kind = KG__PRE_DIGITS, .individual = true};
    tok->pre[tok->n_pre++] = (kg__pre){.kind = KG__PRE_BYTELEVEL, .use_regex = true};
    tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_BYTELEVEL};
    tok->model.kind = KG__MODEL_BPE;
    tok->model.byte_level = true;
    tok->kind = "gguf gpt2";
    return read_merges(tok, w);
}

/* llama.cpp's SentencePiece: a "▁" before the text (add_space_prefix), spaces as "▁", merges by
 * score; decoding undoes it. */
static bool llama_spm(kg_tokenizer *tok, const kg_weights *w, const uint8_t *type)
{
    const char *key = "tokenizer.ggml.scores";
    int32_t n = tok->vocab.n;
    if (kg_weights_meta_len(w, key) != n)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s has %lld entries; expected one per token (%d)",
                            key, (long long)kg_weights_meta_len(w, key), n);
    tok->vocab.score = malloc((size_t)n * sizeof(float));
    tok->model.mergeable = malloc((size_t)n);
    if (!tok->vocab.score || !tok->model.mergeable)
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        double s;
        if (!kg_weights_meta_num_at(w, key, i, &s))
            return kg__tok_fail(tok, KG_ERR_ARG, "%s[%d]: expected a number", key, i);
        tok->vocab.score[i] = (float)s;
        tok->model.mergeable[i] = !type || type[i] == TT_NORMAL || type[i] == TT_USER_DEFINED;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->model.byte_id[b] = kg__vocab_find(&tok->vocab, name, 6);
    }
    int64_t space = 1;
    kg_weights_meta_int(w, "tokenizer.ggml.add_space_prefix", &space);
    static const char meta[] = "\xe2\x96\x81"; /* ▁ */
    if (space)
        tok->norm[tok->n_norm++] = (kg__norm){.kind = KG__NORM_PREPEND, .a = strdup(meta)};
    tok->norm[tok->n_norm++] = (kg__norm){.kind = KG__NORM_REPLACE, .a = strdup(" "),
                                          .b = strdup(meta)};
    tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_REPLACE, .a = strdup(meta),
                                       .b = strdup(" ")};
    tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_BYTEFALLBACK};
    tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_FUSE};
    if (space)
        tok->dec[tok->n_dec++] = (kg__dec){.kind = KG__DEC_STRIP, .strip_cp = ' ', .start = 1};
    for (int i = 0; i < tok->n_norm; i++)
        if (!tok->norm[i].a || (tok->norm[i].kind == KG__NORM_REPLACE && !tok->norm[i].b))
            return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    if (!tok->dec[0].a || !tok->dec[0].b)
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    tok->model.kind = KG__MODEL_SPM_SCORES;
    tok->kind = "gguf llama";
    return true;
}

bool kg__tok_load_gguf(kg_tokenizer *tok, const kg_weights *w)
{
    if (!kg_weights_is_gguf(w))
        return kg__tok_fail(tok, KG_ERR_ARG, "not a GGUF file; expected tokenizer.ggml.* "
                            "metadata");
    const char *model = kg_weights_meta_str(w, "tokenizer.ggml.model");
    if (!model)
        return kg__tok_fail(tok, KG_ERR_ARG, "tokenizer.ggml.model is missing; the file carries "
                            "no tokenizer");
    bool gpt2 = strcmp(model, "gpt2") == 0;
    if (!gpt2 && strcmp(model, "llama") != 0)
        return kg__tok_fail(tok, KG_ERR_ARG, "tokenizer.ggml.model '%s' is not supported (gpt2 "
                            "and llama are)", model);
    const char *key = "tokenizer.ggml.tokens";
    int64_t n = kg_weights_meta_len(w, key);
    if (n <= 0 || n > KG__TOK_MAX_VOCAB)
        return kg__tok_fail(tok, KG_ERR_ARG, "%s has %lld entries; expected 1..%d", key,
                            (long long)n, KG__TOK_MAX_VOCAB);
    if (!kg__vocab_init(&tok->vocab, (int32_t)n))
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *s = kg_weights_meta_str_at(w, key, i, &len);
        if (!s)
            return kg__tok_fail(tok, KG_ERR_ARG, "%s[%d]: expected a string", key, i);
        if (!kg__vocab_set(&tok->vocab, i, s, len))
            return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    }
    if (!kg__vocab_index(&tok->vocab))
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");

    int64_t nt = kg_weights_meta_len(w, "tokenizer.ggml.token_type");
    uint8_t *type = NULL;
    if (nt >= 0 && nt != n)
        return kg__tok_fail(tok, KG_ERR_ARG, "tokenizer.ggml.token_type has %lld entries; "
                            "expected one per token (%lld)", (long long)nt, (long long)n);
    if (nt == n && !(type = calloc((size_t)n, 1)))
        return kg__tok_fail(tok, KG_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; type && i < n; i++) {
        double t;
        if (!kg_weights_meta_num_at(w, "tokenizer.ggml.token_type", i, &t) || t < 0 || t > 255) {
            free(type);
            return kg__tok_fail(tok, KG_ERR_ARG, "tokenizer.ggml.token_type[%d]: expected a "
                                "token type", i);
        }
        type[i] = (uint8_t)t;
    }

    static const struct { const char *key; kg_special_token which; } ids[] = {
        {"tokenizer.ggml.bos_token_id", KG_TOKEN_BOS},
        {"tokenizer.ggml.eos_token_id", KG_TOKEN_EOS},
        {"tokenizer.ggml.unknown_token_id", KG_TOKEN_UNK},
        {"tokenizer.ggml.padding_token_id", KG_TOKEN_PAD},
        {"tokenizer.ggml.seperator_token_id", KG_TOKEN_SEP}, /* llama.cpp's spelling */
        {"tokenizer.ggml.cls_token_id", KG_TOKEN_CLS},
        {"tokenizer.ggml.mask_token_id", KG_TOKEN_MASK},
    };
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof ids / sizeof *ids; i++)
        ok = meta_id(tok, w, ids[i].key, &tok->special[ids[i].which]);
    tok->model.unk = tok->special[KG_TOKEN_UNK];
    tok->has_decoder = true;
    ok = ok && (gpt2 ? gpt2_pre(tok, w) : llama_spm(tok, w, type));

    /* Control tokens (and the unknown one, for llama) are special and matched in the text;
     * user-defined ones are matched too but are not special. A byte-level control token spelled
     * outside the alphabet is a mislabel transformers skips. */
    for (int32_t i = 0; ok && type && i < n; i++) {
        const char *s = tok->vocab.piece[i];
        size_t len = tok->vocab.len[i];
        bool control = type[i] == TT_CONTROL || (!gpt2 && type[i] == TT_UNKNOWN);
        if (!len || (!control && type[i] != TT_USER_DEFINED) ||
            (gpt2 && control && !in_bytelevel_alphabet(s, len)))
            continue;
        ok = kg__tok_add(tok, s, len, i, control);
    }
    free(type);
    if (!ok)
        return false;
    int64_t bos = !gpt2, eos = 0; /* llama.cpp adds BOS to a sentencepiece vocabulary by default */
    kg_weights_meta_int(w, "tokenizer.ggml.add_bos_token", &bos);
    kg_weights_meta_int(w, "tokenizer.ggml.add_eos_token", &eos);
    kg__tok_bos_eos_template(tok, bos != 0, eos != 0);
    return true;
}
