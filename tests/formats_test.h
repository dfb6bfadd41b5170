/* formats_test.h — what test_safetensors.c and test_gguf.c share: the backend they run on
 * (KG_TEST_BACKEND=vulkan runs them on Vulkan, skipped with 77 without a device), fixture paths,
 * scratch files in a temporary directory, and the check that an error has the status and names
 * what it should.
 */
#ifndef KG_FORMATS_TEST_H
#define KG_FORMATS_TEST_H

#include "kg_test.h"
#include "models/kg_formats.h"
#include "models/weights.h" /* kg__load_chunk_elems, to run the chunked path on tiny tensors */

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static kg_ctx *ctx;
static char scratch[256]; /* a temporary directory, made by setup and emptied by teardown */

static kg_backend_kind test_backend(void)
{
    const char *b = getenv("KG_TEST_BACKEND");
    return b && strcmp(b, "vulkan") == 0 ? KG_BACKEND_VULKAN : KG_BACKEND_CPU;
}

static const char *fixture(const char *name)
{
    static char path[2][512];
    static int turn;
    turn ^= 1;
    snprintf(path[turn], sizeof path[turn], "%s/%s", KG_FORMATS_FIXTURES, name);
    return path[turn];
}

/* scratch/name (a static buffer, one of four in turn). */
static const char *scratch_path(const char *name)
{
    static char path[4][512];
    static int turn;
    turn = (turn + 1) % 4;
    snprintf(path[turn], sizeof path[turn], "%s/%s", scratch, name);
    return path[turn];
}

static const char *write_scratch(const char *name, const void *data, size_t n)
{
    const char *path = scratch_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The whole file, malloc'd; its size in *n. */
static uint8_t *read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(*n + 1);
    assert_int_equal(fread(data, 1, *n, f), *n);
    fclose(f);
    return data;
}

static void empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (rmdir(path) != 0) {
                empty_dir(path);
                if (rmdir(path) != 0)
                    unlink(path);
            }
        }
    closedir(d);
}

static int setup(void **state)
{
    (void)state;
    ctx = kg_ctx_new(test_backend());
    snprintf(scratch, sizeof scratch, "%s/kg_formats_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                             : "/tmp");
    return ctx && !kg_ctx_status(ctx) && mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    assert_ok(ctx);
    kg_ctx_free(ctx);
    empty_dir(scratch);
    rmdir(scratch);
    kg__load_chunk_elems = (int64_t)1 << 22;
    return 0;
}

/* The context holds an error of this status whose message contains each of the given strings
 * (NULL-terminated); then it is cleared. */
#define assert_error(status, ...) assert_error_names((status), __VA_ARGS__, (const char *)NULL)
static void assert_error_names(kg_status status, ...)
{
    const char *msg = kg_error(ctx);
    if (kg_ctx_status(ctx) != status)
        fail_msg("status %d, expected %d; message: %s", kg_ctx_status(ctx), status, msg);
    va_list ap;
    va_start(ap, status);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(msg, s))
            fail_msg("the message does not name \"%s\": %s", s, msg);
    va_end(ap);
    kg_clear_error(ctx);
}

/* Opening path fails with status, naming path and the given strings. */
#define assert_open_fails(path, status, ...)                                                   \
    do {                                                                                       \
        const char *p_ = (path);                                                               \
        kg_weights *w_ = kg_weights_open(ctx, p_);                                             \
        if (w_)                                                                                \
            fail_msg("%s opened; expected an error", p_);                                      \
        assert_error((status), p_, __VA_ARGS__);                                               \
    } while (0)

/* Load name as dtype and compare with want (n values). */
static void assert_loads(kg_weights *w, const char *name, kg_dtype dtype, const float *want,
                         int64_t n, float tol)
{
    kg_tensor *t = kg_weights_load(w, name, dtype, 0, NULL);
    if (!t)
        fail_msg("%s: %s", name, kg_error(ctx));
    assert_int_equal(kg_tensor_dtype(t), dtype);
    assert_tensor(t, want, n, tol, tol, name);
    kg_tensor_free(t);
}

/* Run the group on the backend KG_TEST_BACKEND names; 77 (skipped) without a Vulkan device. */
#define formats_main(tests)                                                                    \
    do {                                                                                       \
        if (test_backend() == KG_BACKEND_VULKAN) {                                             \
            kg_ctx *vk = kg_ctx_new(KG_BACKEND_VULKAN);                                        \
            if (!vk || kg_ctx_status(vk)) {                                                    \
                printf("skipped: no usable Vulkan device: %s\n", vk ? kg_error(vk) : "");      \
                kg_ctx_free(vk);                                                               \
                return 77;                                                                     \
            }                                                                                  \
            kg_ctx_free(vk);                                                                   \
        }                                                                                      \
        return cmocka_run_group_tests(tests, NULL, NULL);                                      \
    } while (0)

#endif
