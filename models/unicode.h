/* unicode.h — the UTF-8 and Unicode helpers the tokenizers share: decoding with U+FFFD for
 * invalid bytes, the character classes HF's Rust code and its regexes use, normalization forms
 * (through utf8proc), and GPT-2's byte-to-character alphabet. Internal to models/.
 */
#ifndef KG_UNICODE_H
#define KG_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode the code point at s[i] (i < n) into *cp and return its length in bytes. An invalid
 * sequence gives U+FFFD for its maximal valid prefix (at least one byte), the rule Python's
 * bytes.decode(errors="replace") follows. */
size_t kg__utf8_next(const char *s, size_t n, size_t i, int32_t *cp);
/* Encode cp (a valid scalar value) into out; returns the length 1..4. */
int kg__utf8_put(int32_t cp, char out[4]);
/* Whether s[0..n) is valid UTF-8. */
bool kg__utf8_valid(const char *s, size_t n);
/* A malloc'd NUL-terminated copy of s[0..n) with invalid sequences replaced by U+FFFD; its
 * length in *out_n. NULL when memory is exhausted. */
char *kg__utf8_sanitize(const char *s, size_t n, size_t *out_n);
/* Code points in s[0..n) (valid UTF-8). */
size_t kg__utf8_count(const char *s, size_t n);

/* Character classes, as Rust's char methods and Oniguruma's \s, \p{L}, \p{N} define them. */
bool kg__uni_is_space(int32_t cp);   /* White_Space (Rust char::is_whitespace, regex \s) */
bool kg__uni_is_letter(int32_t cp);  /* general category L* */
bool kg__uni_is_number(int32_t cp);  /* general category N* (Rust char::is_numeric) */
bool kg__uni_is_alnum(int32_t cp);   /* L* or N* (Rust char::is_alphanumeric) */
bool kg__uni_is_control(int32_t cp); /* C* except \t \n \r (BERT's _is_control) */
bool kg__uni_is_bert_punct(int32_t cp); /* ASCII punctuation or P* (BERT's _is_punctuation) */
bool kg__uni_is_cjk(int32_t cp);     /* BERT's CJK ideograph blocks */
bool kg__uni_is_mark_nonspacing(int32_t cp); /* Mn */

/* Normalization forms and lower-casing of valid UTF-8 s[0..n): a malloc'd NUL-terminated
 * string and its length, or NULL when memory is exhausted. */
typedef enum kg__nf { KG__NFC, KG__NFD, KG__NFKC, KG__NFKD } kg__nf;
char *kg__uni_normalize(const char *s, size_t n, kg__nf form, size_t *out_n);
char *kg__uni_lower(const char *s, size_t n, size_t *out_n);

/* GPT-2's ByteLevel alphabet: byte b is spelled by the character kg__bytelevel_char(b);
 * kg__bytelevel_byte(cp) is the byte a character spells, or -1 for characters outside it. */
int32_t kg__bytelevel_char(uint8_t b);
int kg__bytelevel_byte(int32_t cp);

#endif
