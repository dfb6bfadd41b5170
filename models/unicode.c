/* unicode.c — UTF-8 decoding with U+FFFD replacement, the character classes of HF's tokenizers
 * (Rust's char methods, Oniguruma's \s \p{L} \p{N}), normalization through utf8proc, and GPT-2's
 * byte alphabet.
 */
#include "models/unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

size_t kg__utf8_next(const char *s, size_t n, size_t i, int32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t avail = n - i;
    unsigned c = u[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    /* The allowed range of the second byte depends on the lead (no overlongs, no surrogates,
     * nothing past U+10FFFF); later bytes are plain continuations. */
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    int32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    size_t k = 1;
    for (; k <= (size_t)need; k++) {
        if (k >= avail) {
            *cp = 0xFFFD;
            return k;
        }
        unsigned b = u[k];
        if (b < lo || b > hi) {
            *cp = 0xFFFD;
            return k; /* the maximal valid prefix, the offending byte starts over */
        }
        lo = 0x80, hi = 0xBF;
        v = (v << 6) | (int32_t)(b & 0x3F);
    }
    *cp = v;
    return k;
}

int kg__utf8_put(int32_t cp, char out[4])
{
    uint32_t c = (uint32_t)cp;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

bool kg__utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = kg__utf8_next(s, n, i, &cp);
        /* U+FFFD spelled out in the text is 3 valid bytes; a replacement is 1-3 others. */
        if (cp == 0xFFFD && !(k == 3 && memcmp(s + i, "\xEF\xBF\xBD", 3) == 0))
            return false;
        i += k;
    }
    return true;
}

char *kg__utf8_sanitize(const char *s, size_t n, size_t *out_n)
{
    /* Each replaced byte run (1-3 bytes) becomes 3 bytes: at most 3n. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = kg__utf8_next(s, n, i, &cp);
        if (cp == 0xFFFD)
            o += (size_t)kg__utf8_put(cp, out + o);
        else
            memcpy(out + o, s + i, k), o += k;
        i += k;
    }
    out[o] = 0;
    *out_n = o;
    return out;
}

size_t kg__utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

bool kg__uni_is_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static utf8proc_category_t cat(int32_t c)
{
    return utf8proc_category(c);
}

bool kg__uni_is_letter(int32_t c)
{
    utf8proc_category_t k = cat(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

bool kg__uni_is_number(int32_t c)
{
    utf8proc_category_t k = cat(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

bool kg__uni_is_alnum(int32_t c)
{
    return kg__uni_is_letter(c) || kg__uni_is_number(c);
}

bool kg__uni_is_control(int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return false;
    /* Cc, Cf, Co, Cs: HF's is_other(); unassigned code points (Cn) are kept. */
    utf8proc_category_t k = cat(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

bool kg__uni_is_bert_punct(int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    utf8proc_category_t k = cat(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

bool kg__uni_is_cjk(int32_t c)
{
    /* HF tokenizers' ranges (its Rust code has 2B920, not Python BERT's 2B820). */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool kg__uni_is_mark_nonspacing(int32_t c)
{
    return cat(c) == UTF8PROC_CATEGORY_MN;
}

char *kg__uni_normalize(const char *s, size_t n, kg__nf form, size_t *out_n)
{
    static const int opts[] = {
        [KG__NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
        [KG__NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
        [KG__NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
        [KG__NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
    };
    if (n == 0) { /* utf8proc_map wants at least one byte of output room for nothing */
        char *e = calloc(1, 1);
        if (e)
            *out_n = 0;
        return e;
    }
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &out,
                                        (utf8proc_option_t)opts[form]);
    if (len < 0) {
        free(out);
        return NULL;
    }
    *out_n = (size_t)len;
    return (char *)out;
}

char *kg__uni_lower(const char *s, size_t n, size_t *out_n)
{
    /* Per character, as HF does (so no final-sigma rule); U+0130 is the one unconditional
     * lower-case mapping to two characters, which utf8proc's simple mapping lacks. */
    if (n > (SIZE_MAX - 1) / 2)
        return NULL;
    char *out = malloc(2 * n + 1); /* İ (2 bytes) -> i + U+0307 (3 bytes) is the worst ratio */
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += kg__utf8_next(s, n, i, &cp);
        if (cp == 0x130) {
            out[o++] = 'i';
            o += (size_t)kg__utf8_put(0x307, out + o);
        } else {
            o += (size_t)kg__utf8_put(utf8proc_tolower(cp), out + o);
        }
    }
    out[o] = 0;
    *out_n = o;
    return out;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes spell themselves, the other 68 bytes take
 * U+0100.. in byte order. */
static bool bytelevel_self(int b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

int32_t kg__bytelevel_char(uint8_t b)
{
    if (bytelevel_self(b))
        return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        k += !bytelevel_self(x);
    return 0x100 + k;
}

int kg__bytelevel_byte(int32_t cp)
{
    if (cp >= 0 && cp < 0x100 && bytelevel_self(cp))
        return cp;
    if (cp < 0x100 || cp >= 0x100 + 68)
        return -1;
    int k = cp - 0x100;
    for (int x = 0; x < 256; x++)
        if (!bytelevel_self(x) && k-- == 0)
            return x;
    return -1;
}
