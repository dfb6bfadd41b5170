/* tokenizer_internal.h — what the tokenizer's files share: tokenizer.c (the public calls, the
 * encode/decode pipeline), tokenizer_steps.c (normalizers, pre-tokenizers, decoders),
 * tokenizer_json.c (tokenizer.json, vocab.txt, tokenizer_config.json), wordpiece.c, bpe.c and
 * gguf_vocab.c. A tokenizer is Hugging Face's pipeline as plain data: added tokens, normalizer
 * steps, pre-tokenizer steps, one model, a post-processing template and decoder steps. Internal
 * to models/.
 */
#ifndef KG_TOKENIZER_INTERNAL_H
#define KG_TOKENIZER_INTERNAL_H

#include "models/kg_tokenizer.h"
#include "models/spm.h"
#include "models/unicode.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ids beyond this are refused when loading: no real vocabulary comes near (Gemma's is 262144),
 * and a file cannot make the loader allocate more. */
#define KG__TOK_MAX_VOCAB (1 << 21)
enum { KG__TOK_MAX_STEPS = 8, KG__TPL_MAX = 8, KG__TPL_MAX_IDS = 4 };

/* ---- growable byte and id buffers: an allocation failure sets oom and drops the data ---- */
typedef struct kg__buf {
    char *p;
    size_t n, cap;
    bool oom;
} kg__buf;
void kg__buf_put(kg__buf *b, const void *s, size_t n);
void kg__buf_cp(kg__buf *b, int32_t cp);
/* The bytes as a NUL-terminated malloc'd string (the buffer is emptied), NULL after oom. */
char *kg__buf_take(kg__buf *b, size_t *n);

typedef struct kg__ids {
    int32_t *v;
    int64_t n, cap;
    bool oom;
} kg__ids;
void kg__ids_push(kg__ids *a, int32_t id);

/* Words out of the pre-tokenizer: pieces of one text buffer. first marks a word that starts
 * the input text (Metaspace's prepend_scheme "first"). */
typedef struct kg__words {
    kg__buf text;
    size_t *off, *len;
    bool *first;
    int64_t n, cap;
    bool oom;
} kg__words;
void kg__words_add(kg__words *w, const char *s, size_t n, bool first);
void kg__words_free(kg__words *w);

/* ---- the vocabulary: id -> piece, piece -> id ---------------------------------------------- */
typedef struct kg__vocab {
    int32_t n;      /* V: ids 0..n-1 */
    char **piece;   /* piece[id]: NUL-terminated bytes, or NULL where no piece has this id */
    uint32_t *len;  /* its length in bytes (pieces may hold NUL bytes from GGUF) */
    float *score;   /* SentencePiece scores (GGUF llama), or NULL */
    int32_t *slot;  /* hash table of ids by piece, open addressing; cap slots, -1 empty */
    uint32_t cap;
} kg__vocab;
/* Make room for ids 0..n-1 (no pieces yet). False when memory is exhausted. */
bool kg__vocab_init(kg__vocab *v, int32_t n);
/* Give id its piece (a copy). False on oom. */
bool kg__vocab_set(kg__vocab *v, int32_t id, const char *s, size_t n);
/* Index every piece (after the kg__vocab_set calls); a piece given to two ids finds the later
 * one, as a Python dict or llama.cpp's map. False on oom. */
bool kg__vocab_index(kg__vocab *v);
int32_t kg__vocab_find(const kg__vocab *v, const char *s, size_t n);
void kg__vocab_free(kg__vocab *v);

/* ---- added tokens, matched in the text before anything else ------------------------------- */
typedef struct kg__added {
    char *text; /* what is matched (the normalized content for normalized tokens) */
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} kg__added;

/* ---- pipeline steps ------------------------------------------------------------------------- */
typedef enum kg__norm_kind {
    KG__NORM_BERT, KG__NORM_NF, KG__NORM_LOWER, KG__NORM_STRIP_ACCENTS,
    KG__NORM_PREPEND, KG__NORM_REPLACE, KG__NORM_STRIP
} kg__norm_kind;
typedef struct kg__norm {
    kg__norm_kind kind;
    bool clean_text, chinese, strip_accents, lowercase; /* BERT */
    bool left, right;                                    /* strip */
    kg__nf form;                                         /* NF */
    char *a, *b;                                         /* prepend a; replace a by b */
} kg__norm;

typedef enum kg__pre_kind {
    KG__PRE_BERT,       /* split on whitespace (dropped) and punctuation (kept alone) */
    KG__PRE_BYTELEVEL,  /* optional prefix space, then GPT-2's regex split */
    KG__PRE_GPT2_SPLIT, /* GPT-2's regex split alone (Split with that pattern) */
    KG__PRE_METASPACE,  /* spaces to the replacement, prepend it, optionally split before it */
    KG__PRE_DIGITS,     /* digits apart from the rest, one by one or in runs */
    KG__PRE_WHITESPACE_SPLIT
} kg__pre_kind;
typedef enum kg__prepend { KG__PREPEND_ALWAYS, KG__PREPEND_FIRST, KG__PREPEND_NEVER } kg__prepend;
typedef struct kg__pre {
    kg__pre_kind kind;
    bool add_prefix_space, use_regex, split, individual;
    kg__prepend prepend;
    char *replacement; /* Metaspace: UTF-8 of one character */
} kg__pre;

typedef enum kg__dec_kind {
    KG__DEC_BYTELEVEL, KG__DEC_WORDPIECE, KG__DEC_METASPACE, KG__DEC_REPLACE,
    KG__DEC_BYTEFALLBACK, KG__DEC_FUSE, KG__DEC_STRIP
} kg__dec_kind;
typedef struct kg__dec {
    kg__dec_kind kind;
    bool cleanup;             /* WordPiece */
    kg__prepend prepend;      /* Metaspace */
    char *a, *b;              /* WordPiece prefix a; Metaspace replacement a; Replace a by b */
    int32_t strip_cp;         /* Strip: the character, how many at the start and the end */
    int start, stop;
} kg__dec;

/* ---- models ------------------------------------------------------------------------------- */
typedef enum kg__model_kind {
    KG__MODEL_WORDPIECE,
    KG__MODEL_BPE,        /* merges by rank (tokenizer.json, GGUF gpt2) */
    KG__MODEL_SPM_SCORES, /* merges by piece score, llama.cpp's SentencePiece (GGUF llama) */
    KG__MODEL_SPM_LIB     /* libsentencepiece through spm_shim.cc (tokenizer.model) */
} kg__model_kind;

/* BPE merges: (left id, right id) -> rank and merged id, hashed. */
typedef struct kg__merges {
    uint64_t *key; /* (left << 32 | right) + 1; 0 marks an empty slot */
    int32_t *rank, *merged;
    uint32_t cap, n;
} kg__merges;
bool kg__merges_add(kg__merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
bool kg__merges_find(const kg__merges *m, int32_t left, int32_t right, int32_t *rank,
                     int32_t *merged);
void kg__merges_free(kg__merges *m);

typedef struct kg__model {
    kg__model_kind kind;
    int32_t unk;            /* -1 when none */
    /* WordPiece */
    char *prefix;           /* "##" */
    int64_t max_chars;      /* longer words become unk */
    /* BPE */
    kg__merges merges;
    bool byte_fallback, fuse_unk, ignore_merges;
    bool byte_level;        /* words are bytes, spelled in GPT-2's alphabet before lookup */
    int32_t byte_id[256];   /* <0xNN> pieces, -1 when absent (byte fallback) */
    uint8_t *mergeable;     /* by score: which ids a merge may give (NULL: all) */
    /* libsentencepiece */
    kg__spm *spm;
} kg__model;

/* ---- post-processing: what add_special puts around one sequence or a pair ------------------ */
typedef struct kg__tpl_item {
    int8_t seq;      /* -1: special ids; 0: sequence A; 1: sequence B */
    int8_t type_id;
    int8_t n_ids;
    int32_t ids[KG__TPL_MAX_IDS];
} kg__tpl_item;
typedef struct kg__template {
    kg__tpl_item single[KG__TPL_MAX], pair[KG__TPL_MAX];
    int n_single, n_pair;
} kg__template;

struct kg_tokenizer {
    kg_ctx *ctx;
    char *file;  /* the file read, for error messages */
    const char *kind;
    kg__vocab vocab;
    kg__added *added;
    int n_added;
    kg__norm norm[KG__TOK_MAX_STEPS];
    kg__pre pre[KG__TOK_MAX_STEPS];
    kg__dec dec[KG__TOK_MAX_STEPS];
    int n_norm, n_pre, n_dec;
    bool has_decoder; /* without one, HF joins the pieces with spaces */
    kg__model model;
    kg__template tpl;
    int32_t special[KG_TOKEN_COUNT];
};

/* ---- loaders (each fills a zeroed tokenizer whose ctx and file are set) -------------------- */
bool kg__tok_load_json(kg_tokenizer *tok, const char *dir);
bool kg__tok_load_vocab_txt(kg_tokenizer *tok, const char *dir);
bool kg__tok_load_spm(kg_tokenizer *tok, const char *dir);
bool kg__tok_load_gguf(kg_tokenizer *tok, const kg_weights *w);
/* BOS / EOS around each sequence, as LlamaTokenizer's add_bos_token / add_eos_token. */
void kg__tok_bos_eos_template(kg_tokenizer *tok, bool bos, bool eos);
/* Add an added token (copied). False on oom (error set). */
bool kg__tok_add(kg_tokenizer *tok, const char *text, size_t len, int32_t id, bool special);
/* Record an error naming the file; returns false. */
bool kg__tok_fail(kg_tokenizer *tok, kg_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the pipeline's steps (tokenizer_steps.c) --------------------------------------------- */
/* s[0..n) (valid UTF-8) through the normalizer steps: a malloc'd string, NULL on oom. */
char *kg__tok_normalize(const kg_tokenizer *tok, const char *s, size_t n, size_t *out_n);
/* Append the words of s[0..n) after the pre-tokenizer steps; first: s starts the text. */
void kg__tok_pretokenize(const kg_tokenizer *tok, const char *s, size_t n, bool first,
                         kg__words *out);
/* Pieces through the decoder steps, joined: a malloc'd string, NULL on oom. The pieces are
 * consumed (freed or reused). */
char *kg__tok_decode_pieces(const kg_tokenizer *tok, char **piece, size_t *len, int64_t n);

/* ---- the models' encoders: one word (valid UTF-8, or bytes for byte-level BPE) to ids ------- */
bool kg__wordpiece_word(const kg_tokenizer *tok, const char *w, size_t n, kg__ids *out);
bool kg__bpe_word(const kg_tokenizer *tok, const char *w, size_t n, kg__ids *out);
bool kg__spm_scores_word(const kg_tokenizer *tok, const char *w, size_t n, kg__ids *out);

#endif
