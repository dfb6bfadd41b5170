/* kg_tokenizer.h — text to token ids and back, giving the ids Hugging Face's tokenizers give:
 * WordPiece (BERT: vocab.txt or tokenizer.json), tokenizer.json BPE (byte-level as GPT-2 and
 * SmolLM2; SentencePiece-style as Llama and Mistral, with byte fallback), SentencePiece
 * tokenizer.model (through libsentencepiece), and the vocabularies GGUF files carry.
 *
 * Tokenizer files are untrusted: every error goes to the context (kg_ctx_status / kg_error),
 * naming the file and the key or line, and what was expected. Text that is not valid UTF-8 is
 * read with each invalid sequence replaced by U+FFFD (as Python's bytes.decode(errors=
 * "replace")), so no input text is an error.
 */
#ifndef KG_TOKENIZER_H
#define KG_TOKENIZER_H

#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kg_tokenizer kg_tokenizer;
typedef struct kg_weights kg_weights; /* models/kg_formats.h */

/* Load a tokenizer from path:
 *   - an HF model directory: its tokenizer.json, else tokenizer.model, else vocab.txt; the
 *     directory's tokenizer_config.json / special_tokens_map.json, when present, name the
 *     special tokens (bos_token, eos_token, pad_token, ...) and for vocab.txt and
 *     tokenizer.model give do_lower_case, strip_accents, tokenize_chinese_chars,
 *     add_bos_token and add_eos_token;
 *   - one such file (tokenizer.json, vocab.txt, *.model);
 *   - a .gguf file (its tokenizer.ggml.* metadata).
 * As in transformers, special-token text in the input ("<s>", "[CLS]", "<|im_start|>") is
 * encoded as that token's id by every kind, tokenizer.model included (sentencepiece alone
 * would spell it out as text). The file's own truncation and padding settings are ignored: ask
 * for them per call (kg_tokenizer_encode_batch).
 * Returns NULL with the context's error set. The caller frees the tokenizer with
 * kg_tokenizer_free; it holds no tensors and outlives nothing but ctx, where errors of later
 * calls go. */
kg_tokenizer *kg_tokenizer_load(kg_ctx *ctx, const char *path);
/* The tokenizer of an opened GGUF file (kg_weights_open), as kg_tokenizer_load of its path. */
kg_tokenizer *kg_tokenizer_from_weights(kg_ctx *ctx, const kg_weights *w);
void kg_tokenizer_free(kg_tokenizer *tok);

/* Encode NUL-terminated UTF-8 text. add_special: add what the tokenizer adds to one sequence
 * ([CLS] ... [SEP] for BERT, BOS for Llama/Mistral, nothing for SmolLM2). Returns a malloc'd
 * array of *n ids (the caller frees it; not NULL for empty text), or NULL with the context's
 * error set (only for NULL arguments or exhausted memory). */
int32_t *kg_tokenizer_encode(kg_tokenizer *tok, const char *text, bool add_special, int64_t *n);

/* A padded batch: B rows of T ids, row-major. */
typedef struct kg_token_batch {
    int64_t rows;      /* B */
    int64_t len;       /* T: the longest row after truncation */
    int32_t *ids;      /* (B, T); padding is the pad id */
    int32_t *mask;     /* (B, T): 1 for a token, 0 for padding (HF's attention_mask) */
    int32_t *type_ids; /* (B, T): 0 for the first sequence, 1 for the second (token_type_ids) */
} kg_token_batch;

typedef struct kg_encode_opts {
    bool add_special;   /* as kg_tokenizer_encode; for pairs [CLS] A [SEP] B [SEP] */
    int64_t max_length; /* > 0: truncate each row to this many ids, special ids included; a
                         * pair loses ids from its longer side first (HF's longest_first) */
    bool pad_left;      /* padding before the ids (decoders) instead of after (HF's default) */
} kg_encode_opts;

/* Encode texts[0..rows-1] (and, when pairs is not NULL, the pairs texts[i], pairs[i]) and pad
 * them to the longest, as HF's tokenizer(texts, pairs, padding=True, truncation=True,
 * max_length=L). Padding uses the pad token (kg_tokenizer_set_pad for tokenizers without one,
 * such as Llama's). Fills *out, whose arrays the caller frees with kg_token_batch_free; on
 * error (no pad token but rows of different lengths, a max_length too small for the special
 * ids) returns false with the context's error set and *out empty. */
bool kg_tokenizer_encode_batch(kg_tokenizer *tok, int64_t rows, const char *const *texts,
                               const char *const *pairs, const kg_encode_opts *opts,
                               kg_token_batch *out);
void kg_token_batch_free(kg_token_batch *b);

/* Decode ids to malloc'd NUL-terminated UTF-8 text (the caller frees it). skip_special leaves
 * out special tokens ([CLS], <s>, <|im_end|>, ...). An id outside 0..vocab_size-1 is an error
 * (NULL, the context's error set, naming its position). */
char *kg_tokenizer_decode(kg_tokenizer *tok, const int32_t *ids, int64_t n, bool skip_special);

/* Special tokens: the id, or -1 when the tokenizer has none. */
typedef enum kg_special_token {
    KG_TOKEN_BOS,
    KG_TOKEN_EOS,
    KG_TOKEN_PAD,
    KG_TOKEN_UNK,
    KG_TOKEN_CLS,
    KG_TOKEN_SEP,
    KG_TOKEN_MASK,
    KG_TOKEN_COUNT
} kg_special_token;
int32_t kg_tokenizer_special(const kg_tokenizer *tok, kg_special_token which);
/* Set the pad id used by kg_tokenizer_encode_batch (EOS or UNK for Llama-style tokenizers);
 * false with an error when id is outside the vocabulary. */
bool kg_tokenizer_set_pad(kg_tokenizer *tok, int32_t id);

/* V: one more than the largest id (added tokens included), the rows an embedding needs. */
int64_t kg_tokenizer_vocab_size(const kg_tokenizer *tok);
/* Whether kg_tokenizer_encode(add_special = true) starts with BOS. */
bool kg_tokenizer_adds_bos(const kg_tokenizer *tok);
/* The token's text as the file spells it ("Ġ" for a space in byte-level vocabularies, "▁" in
 * SentencePiece ones), owned by the tokenizer; NULL for an id it lacks. */
const char *kg_tokenizer_token(const kg_tokenizer *tok, int32_t id);
/* The id of a token spelled exactly so, or -1. */
int32_t kg_tokenizer_token_id(const kg_tokenizer *tok, const char *token);
/* What was loaded, for people: "wordpiece", "bpe (byte-level)", "bpe (sentencepiece-style)",
 * "sentencepiece", "gguf gpt2" or "gguf llama". */
const char *kg_tokenizer_kind(const kg_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
