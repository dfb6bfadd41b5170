/* spm.h — a small C interface over libsentencepiece's C++ SentencePieceProcessor (spm_shim.cc):
 * load a tokenizer.model, encode text to ids, decode ids, and read the pieces. Internal to
 * models/; no C++ exception crosses it.
 */
#ifndef KG_SPM_H
#define KG_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kg__spm kg__spm;

/* Load a serialized ModelProto (the bytes of a tokenizer.model). NULL on failure with a message
 * in err (NUL-terminated, at most errlen bytes). */
kg__spm *kg__spm_load(const char *data, size_t n, char *err, size_t errlen);
void kg__spm_free(kg__spm *s);

/* Encode text[0..n) (valid UTF-8), appending the ids to *ids (realloc'd; *len ids, *cap room).
 * False when memory is exhausted or the library fails. */
bool kg__spm_encode(const kg__spm *s, const char *text, size_t n, int32_t **ids, int64_t *len,
                    int64_t *cap);
/* Decode ids (each in 0..size-1) to a malloc'd NUL-terminated string; control pieces decode to
 * nothing, unknown ones to " \u2047 " as sentencepiece does. NULL on failure. */
char *kg__spm_decode(const kg__spm *s, const int32_t *ids, int64_t n);

int32_t kg__spm_size(const kg__spm *s);
const char *kg__spm_piece(const kg__spm *s, int32_t id, size_t *len);
bool kg__spm_is_control(const kg__spm *s, int32_t id);
/* bos, eos, unk, pad ids: -1 when the model has none. */
void kg__spm_specials(const kg__spm *s, int32_t *bos, int32_t *eos, int32_t *unk, int32_t *pad);

#ifdef __cplusplus
}
#endif
#endif
