/* fuzz_weights.h — the body both checkpoint fuzz targets share: the input is written to a
 * temporary file with the target's suffix (".safetensors" or ".gguf", which picks the reader),
 * opened with kg_weights_open, every tensor loaded, the GGUF metadata getters called, and the
 * error model checked: an error is set exactly when NULL comes back. Any crash, leak or
 * sanitizer report is a finding.
 */
#ifndef KG_FUZZ_WEIGHTS_H
#define KG_FUZZ_WEIGHTS_H

#include "krongrad.h"
#include "models/kg_formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[256];
static volatile uint8_t fuzz_sink;

static void fuzz_remove_file(void) { unlink(fuzz_path); }

/* The file the inputs are written to: made once per process, removed at exit. */
static int fuzz_file(const char *suffix)
{
    static int fd = -1;
    if (fd < 0) {
        const char *dir = getenv("TMPDIR")                ? getenv("TMPDIR")
                          : access("/dev/shm", W_OK) == 0 ? "/dev/shm" /* no disk writes */
                                                          : "/tmp";
        snprintf(fuzz_path, sizeof fuzz_path, "%s/kg_fuzz_XXXXXX%s", dir, suffix);
        fd = mkstemps(fuzz_path, (int)strlen(suffix));
        if (fd < 0)
            abort();
        atexit(fuzz_remove_file);
    }
    return fd;
}

static void fuzz_check(kg_ctx *ctx, bool returned_null)
{
    if (returned_null != (kg_ctx_status(ctx) != KG_OK))
        abort(); /* NULL without an error, or an error with a result */
}

static int fuzz_weights(const uint8_t *data, size_t size, const char *suffix)
{
    static kg_ctx *ctx;
    if (!ctx)
        ctx = kg_ctx_new(KG_BACKEND_CPU);
    int fd = fuzz_file(suffix);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    kg_weights *w = kg_weights_open(ctx, fuzz_path);
    fuzz_check(ctx, w == NULL);
    kg_clear_error(ctx);
    for (int i = 0; i < kg_weights_count(w); i++) {
        const char *name = kg_weights_name(w, i);
        int ndim;
        int64_t shape[KG_MAX_DIMS];
        if (!name || !kg_weights_shape(w, name, &ndim, shape))
            abort();
        kg_scope scope = kg_scope_begin(ctx);
        kg_tensor *t = kg_weights_load(w, name, KG_DTYPE_F32, ndim, shape);
        fuzz_check(ctx, t == NULL);
        kg_clear_error(ctx);
        t = kg_weights_load(w, name, KG_DTYPE_BF16, 0, NULL);
        fuzz_check(ctx, t == NULL);
        kg_clear_error(ctx);
        kg_scope_end(ctx, scope);
    }
    static const char *const keys[] = {"general.architecture", "general.alignment",
                                       "llama.attention.head_count", "tokenizer.ggml.tokens",
                                       "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int64_t iv;
        double d;
        size_t len;
        kg_weights_meta_int(w, keys[k], &iv);
        kg_weights_meta_float(w, keys[k], &d);
        const char *s = kg_weights_meta_str(w, keys[k]);
        if (s && strlen(s) > size)
            abort();
        int64_t n = kg_weights_meta_len(w, keys[k]);
        for (int64_t i = -1; i <= n && i < 1000; i++) {
            s = kg_weights_meta_str_at(w, keys[k], i, &len);
            if (s && len > size)
                abort();
            for (size_t j = 0; s && j < len; j++) /* every byte readable */
                fuzz_sink ^= (uint8_t)s[j];
            kg_weights_meta_num_at(w, keys[k], i, &d);
        }
    }
    kg_weights_close(w);
    if (kg_ctx_status(ctx))
        abort(); /* the getters and close never set an error */
    return 0;
}

#endif
