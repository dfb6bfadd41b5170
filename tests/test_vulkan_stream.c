/* test_vulkan_stream.c — the Vulkan stream's host side: long chains of dependent dispatches
 * spanning several submitted batches (two command buffers in flight) give exact values while
 * memory is freed under them, and the pipeline cache file (KG_PIPELINE_CACHE) is written after a
 * run, while a garbage, short or foreign file is ignored without harm. Skips (77) without a
 * Vulkan device.
 */
#include "kg_test.h"

#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* x ← x + 1, n times, freeing each intermediate: every batch depends on the one before. */
static void test_chain_across_batches(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_VULKAN);
    assert_ok(ctx);
    kg_tensor *one = kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(1000));
    kg_tensor *x = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, 1, SHAPE(1000)));
    for (int i = 0; i < 1300; i++) { /* 5 batches of 256 dispatches and a bit */
        kg_tensor *y = kg_tensor_keep(kg_add(x, one));
        kg_tensor_free(x); /* released while queued work still reads it */
        x = y;
    }
    float *v = kg_tensor_to_f32(x);
    assert_ok(ctx);
    for (int i = 0; i < 1000; i++)
        assert_float_equal(v[i], 1300.0f, 0.0f);
    free(v);
    kg_ctx_free(ctx);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Run one op in a fresh context with the cache at path; the context must work. */
static void run_with_cache(const char *path)
{
    setenv("KG_PIPELINE_CACHE", path, 1);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_VULKAN);
    assert_ok(ctx);
    kg_tensor *a = kg_full(ctx, KG_DTYPE_F32, 1, SHAPE(4), 2.0);
    assert_float_equal(kg_item(kg_sum_all(kg_mul(a, a))), 16.0, 0.0);
    assert_ok(ctx);
    kg_ctx_free(ctx);
    unsetenv("KG_PIPELINE_CACHE");
}

/* The file's first words: Vulkan's cache header (length, version 1, vendor, device). */
static void assert_valid_header(const char *path, uint32_t *vendor)
{
    uint32_t h[4] = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(h, 4, 4, f), 4);
    fclose(f);
    assert_true(h[0] >= 32);
    assert_int_equal(h[1], 1);
    if (vendor)
        *vendor = h[2];
}

static void test_pipeline_cache_file(void **state)
{
    (void)state;
    char path[160], nested[160], foreign[160];
    snprintf(path, sizeof path, "%s/garbage.bin", dir);
    unsigned char junk[100];
    for (int i = 0; i < 100; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    write_file(path, junk, sizeof junk);
    run_with_cache(path); /* garbage: ignored, then replaced by a real cache */
    uint32_t vendor = 0;
    assert_valid_header(path, &vendor);
    run_with_cache(path); /* the real one: read back */
    assert_valid_header(path, NULL);

    snprintf(foreign, sizeof foreign, "%s/foreign.bin", dir);
    uint32_t other[8] = {32, 1, vendor ^ 0xffff, 7, 1, 2, 3, 4}; /* another vendor's header */
    write_file(foreign, other, sizeof other);
    run_with_cache(foreign);
    assert_valid_header(foreign, &other[2]);
    assert_int_equal(other[2], vendor);

    write_file(foreign, "KGC", 3); /* shorter than a header */
    run_with_cache(foreign);
    assert_valid_header(foreign, NULL);

    snprintf(nested, sizeof nested, "%s/a/b/cache.bin", dir); /* directories are made */
    run_with_cache(nested);
    assert_valid_header(nested, NULL);

    char off[160];
    snprintf(off, sizeof off, "%s/off.bin", dir);
    setenv("KG_PIPELINE_CACHE", "off", 1);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_VULKAN);
    kg_item(kg_sum_all(kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(3))));
    assert_ok(ctx);
    kg_ctx_free(ctx);
    unsetenv("KG_PIPELINE_CACHE");
    struct stat st;
    assert_int_not_equal(stat(off, &st), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    kg_backend_kind backend;
    if (!kg_test_backend(2, (char *[]){argv[0], "vulkan", NULL}, &backend))
        return 77;
    snprintf(dir, sizeof dir, "/tmp/kg_stream_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_across_batches),
        cmocka_unit_test(test_pipeline_cache_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
