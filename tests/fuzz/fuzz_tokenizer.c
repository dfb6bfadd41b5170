/* fuzz_tokenizer.c — libFuzzer target for the tokenizers. The first byte picks what the rest is:
 *   0 a tokenizer.json, 1 a vocab.txt, 2 a .gguf, 3 a tokenizer_config.json beside a valid
 *   vocab.txt — each loaded, then used to encode, batch and decode a few strings;
 *   4..  text (any bytes, invalid UTF-8 included) encoded and decoded by each committed fixture
 *   tokenizer (tests/fixtures/tokenizer; $KG_TOKENIZER_FIXTURES overrides where they are).
 * Checks the error model (an error is set exactly when NULL or false comes back) and that ids
 * lie in the vocabulary. Any crash, leak or sanitizer report is a finding. Seeds:
 * corpus/fuzz_tokenizer/ (made by tests/fixtures/tokenizer/make_fuzz_seeds.py).
 */
#include "krongrad.h"
#include "models/kg_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];
static kg_ctx *ctx;

static void check(bool failed)
{
    if (failed != (kg_ctx_status(ctx) != KG_OK))
        abort(); /* NULL without an error, or an error with a result */
    kg_clear_error(ctx);
}

static void remove_dir(void)
{
    static const char *const names[] = {"tokenizer.json", "vocab.txt", "t.gguf",
                                        "tokenizer_config.json", "cfg/vocab.txt",
                                        "cfg/tokenizer_config.json"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/cfg", dir);
    rmdir(path);
    rmdir(dir);
}

static const char *path_of(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_file(const char *name, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path_of(name), "wb");
    if (!f || fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

/* The committed fixtures, loaded once. */
enum { N_FIXED = 7 };
static kg_tokenizer *fixed[N_FIXED];

static void setup(void)
{
    ctx = kg_ctx_new(KG_BACKEND_CPU);
    snprintf(dir, sizeof dir, "%s/kg_fuzz_tok_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/cfg", dir);
    if (mkdir(cfg, 0700) != 0)
        abort();
    atexit(remove_dir);
    /* $KG_TOKENIZER_FIXTURES, else from the repository root (where scripts/fuzz.sh runs), else
     * beside a build folder at the repository root (build-fuzz/tests/fuzz/fuzz_tokenizer) */
    const char *fix = getenv("KG_TOKENIZER_FIXTURES");
    static char exe_rel[1024];
    if (!fix && access("tests/fixtures/tokenizer/wordpiece.json", R_OK) == 0)
        fix = "tests/fixtures/tokenizer";
    if (!fix) {
        ssize_t k = readlink("/proc/self/exe", exe_rel, sizeof exe_rel - 64);
        exe_rel[k > 0 ? k : 0] = 0;
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe_rel, '/');
            if (slash)
                *slash = 0;
        }
        strcat(exe_rel, "/tests/fixtures/tokenizer");
        fix = exe_rel;
    }
    static const char *const names[N_FIXED] = {"wordpiece.json", "bytelevel.json",
                                               "spm_legacy.json", "metaspace_split.json",
                                               "spm.model", "gpt2.gguf", "llama.gguf"};
    for (int i = 0; i < N_FIXED; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", fix, names[i]);
        fixed[i] = kg_tokenizer_load(ctx, path);
        if (!fixed[i]) {
            fprintf(stderr, "fuzz_tokenizer: %s (set KG_TOKENIZER_FIXTURES)\n", kg_error(ctx));
            abort();
        }
    }
    /* a valid vocab.txt for the tokenizer_config.json inputs */
    char src[1024];
    snprintf(src, sizeof src, "%s/vocab.txt", fix);
    FILE *in = fopen(src, "rb"), *out = fopen(path_of("cfg/vocab.txt"), "wb");
    if (!in || !out)
        abort();
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, k, out);
    fclose(in);
    fclose(out);
}

/* Encode, batch and decode text with tok; every id in range. */
static void exercise(kg_tokenizer *tok, const char *text, const char *pair)
{
    int64_t v = kg_tokenizer_vocab_size(tok);
    for (int special = 0; special < 2; special++) {
        int64_t n;
        int32_t *ids = kg_tokenizer_encode(tok, text, special, &n);
        check(ids == NULL);
        for (int64_t i = 0; ids && i < n; i++)
            if (ids[i] < 0 || ids[i] >= v)
                abort();
        char *back = ids ? kg_tokenizer_decode(tok, ids, n, special) : NULL;
        if (ids)
            check(back == NULL);
        free(back);
        free(ids);
    }
    const char *texts[2] = {text, pair}, *pairs[2] = {pair, text};
    kg_encode_opts opts = {.add_special = true, .max_length = 1 + (int64_t)(strlen(text) % 9)};
    kg_token_batch b;
    bool ok = kg_tokenizer_encode_batch(tok, 2, texts, pairs, &opts, &b);
    check(!ok);
    for (int64_t i = 0; ok && i < b.rows * b.len; i++)
        if (b.ids[i] < -1 || b.ids[i] >= v || (b.mask[i] && b.ids[i] < 0))
            abort();
    if (ok && b.len > opts.max_length)
        abort();
    kg_token_batch_free(&b);
}

static const char *const samples[] = {"Hello world, café 123!", "  <s> [CLS] x\t\r\n",
                                      "日本語 😀 don't"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        setup();
    if (size == 0)
        return 0;
    uint8_t kind = data[0];
    data++, size--;
    if (kind < 4) {
        static const char *const names[4] = {"tokenizer.json", "vocab.txt", "t.gguf",
                                             "cfg/tokenizer_config.json"};
        write_file(names[kind], data, size);
        const char *path = kind == 3 ? path_of("cfg") : path_of(names[kind]);
        kg_tokenizer *tok = kg_tokenizer_load(ctx, path);
        check(tok == NULL);
        for (int i = 0; tok && i < 3; i++)
            exercise(tok, samples[i], samples[(i + 1) % 3]);
        for (int32_t id = 0; tok && id < kg_tokenizer_vocab_size(tok) && id < 512; id++) {
            char *t = kg_tokenizer_decode(tok, &id, 1, false);
            check(t == NULL);
            free(t);
        }
        kg_tokenizer_free(tok);
        return 0;
    }
    /* text: the bytes up to the first NUL, the rest (if any) as the pair */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    const char *pair = text + strlen(text) + (strlen(text) < size);
    kg_tokenizer *tok = fixed[kind % N_FIXED];
    exercise(tok, text, pair);
    /* arbitrary ids from the bytes, decoded */
    int64_t v = kg_tokenizer_vocab_size(tok), n = (int64_t)size / 2;
    int32_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)(((uint32_t)data[2 * i] << 8 | data[2 * i + 1]) % (uint32_t)v);
    for (int skip = 0; skip < 2; skip++) {
        char *t = kg_tokenizer_decode(tok, ids, n, skip);
        check(t == NULL);
        free(t);
    }
    free(ids);
    free(text);
    return 0;
}
