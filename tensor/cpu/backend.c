/* backend.c — the CPU backend: host memory with byte counters, and ops run at once by the
 * kernels the op table names. It is the reference every other backend is tested against.
 */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Freed blocks kept for reuse, found by exact size. A training step makes the same sizes every
 * step, and a large block fresh from malloc is a fresh mapping whose every page faults on first
 * touch: on DistilBERT-base (1024 tokens) that was about a third of the step as system time.
 * The live and the kept bytes together stay below the most bytes ever live at once (plus an
 * eighth): a miss first frees the blocks kept longest. So a loop of fixed sizes, whose
 * allocations all hit after its first step, keeps what it needs and adds nothing to its
 * footprint, and a loop whose sizes change (SFT batches of varying length) does not pile up
 * blocks of sizes it no longer makes: there the old bound, kept bytes below the most live,
 * let the footprint reach twice the tensors' peak. Blocks below KEEP_MIN_BYTES go to a pool by
 * power-of-two class instead (alloc.c), so a decode step, all small tensors, calls no malloc
 * once its sizes have been seen; under AddressSanitizer nothing is kept, so a use after free
 * is caught. */
typedef struct kept_block {
    struct kept_block *next;          /* in its bucket */
    struct kept_block *older, *newer; /* in the order the blocks were kept */
    size_t bytes;
} kept_block;

enum { KEEP_BUCKETS = 512, KEEP_MIN_BYTES = KG__POOL_MAX_BYTES };

typedef struct cpu_state {
    size_t current, peak;
    size_t high;   /* the most bytes live at once, ever (with an eighth more: the footprint's bound) */
    size_t kept;   /* bytes in kept blocks */
    kept_block *bucket[KEEP_BUCKETS];
    kept_block *oldest, *newest;
    kg__pool small; /* blocks below KEEP_MIN_BYTES */
} cpu_state;

static kept_block **bucket_of(cpu_state *s, size_t bytes)
{
    return &s->bucket[(bytes / 64 * 0x9e3779b97f4a7c15ULL) >> 55 & (KEEP_BUCKETS - 1)];
}

/* Take b out of the cache (at *link in its bucket); the caller frees or reuses it. */
static void unkeep(cpu_state *s, kept_block **link, kept_block *b)
{
    *link = b->next;
    *(b->older ? &b->older->newer : &s->oldest) = b->newer;
    *(b->newer ? &b->newer->older : &s->newest) = b->older;
    s->kept -= b->bytes;
}

/* A kept block of exactly bytes, taken out of the cache, or NULL. */
static void *take_kept(cpu_state *s, size_t bytes)
{
    for (kept_block **p = bucket_of(s, bytes); *p; p = &(*p)->next)
        if ((*p)->bytes == bytes) {
            kept_block *b = *p;
            unkeep(s, p, b);
            return b;
        }
    return NULL;
}

static void free_oldest(cpu_state *s)
{
    kept_block *b = s->oldest, **p = bucket_of(s, b->bytes);
    while (*p != b)
        p = &(*p)->next;
    unkeep(s, p, b);
    free(b);
}

/* Free the blocks kept longest until bytes more fit under the footprint's bound. */
static void make_room(cpu_state *s, size_t bytes)
{
    size_t bound = s->high + s->high / 8;
    while (s->oldest && s->current + s->kept + bytes > bound)
        free_oldest(s);
}

static void drop_kept(cpu_state *s)
{
    while (s->oldest)
        free_oldest(s);
    kg__pool_drop(&s->small);
}

size_t kg_cpu_kept_bytes(const kg_ctx *ctx)
{
    if (ctx->be != &kg_cpu_backend)
        return 0;
    const cpu_state *s = ctx->be_state;
    return s->kept + s->small.kept;
}

static bool cpu_init(kg_ctx *ctx, void **state)
{
    cpu_state *s = kg__calloc(1, sizeof *s);
    if (!s)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_ctx_new: out of host memory");
    *state = s;
    return true;
}

static void cpu_destroy(void *state)
{
    drop_kept(state);
    free(state);
}

static void *cpu_alloc(void *state, size_t bytes, bool persistent)
{
    (void)persistent; /* malloc keeps its own arenas */
    cpu_state *s = state;
    /* 64-byte alignment suits every vector width. */
    bool small = bytes < KEEP_MIN_BYTES;
    void *p = small ? kg__pool_take(&s->small, bytes) : take_kept(s, bytes);
    if (!p && !small) {
        make_room(s, bytes);
        p = kg__aligned_alloc(64, bytes);
    }
    if (!p && (s->kept || s->small.kept)) {
        drop_kept(s); /* memory is short: give the kept blocks back and try once more */
        p = small ? kg__pool_take(&s->small, bytes) : kg__aligned_alloc(64, bytes);
    }
    if (p) {
        s->current += bytes;
        if (s->current > s->peak)
            s->peak = s->current;
        if (s->current > s->high)
            s->high = s->current;
    }
    return p;
}

static void cpu_release(void *state, void *handle, size_t bytes)
{
    cpu_state *s = state;
    s->current -= bytes;
    if (bytes < KEEP_MIN_BYTES) {
        kg__pool_give(&s->small, handle, bytes);
        return;
    }
    if (KG__KEEP_FREED) { /* live and kept bytes together are unchanged */
        kept_block *b = handle;
        *b = (kept_block){.next = *bucket_of(s, bytes), .older = s->newest, .bytes = bytes};
        *bucket_of(s, bytes) = b;
        *(s->newest ? &s->newest->newer : &s->oldest) = b;
        s->newest = b;
        s->kept += bytes;
        return;
    }
    free(handle);
}

static bool cpu_upload(void *state, void *handle, size_t offset, const void *src, size_t bytes)
{
    (void)state;
    memcpy((char *)handle + offset, src, bytes);
    return true;
}

static bool cpu_download(void *state, void *handle, size_t offset, void *dst, size_t bytes)
{
    (void)state;
    memcpy(dst, (char *)handle + offset, bytes);
    return true;
}

void *kg_cpu_scratch(const kg_opcall *c, size_t bytes)
{
    void *p = cpu_alloc(c->ctx->be_state, bytes ? bytes : 1, false);
    if (!p)
        kg_set_error(c->ctx, KG_ERR_NOMEM, "kg_%s: out of host memory for %zu bytes of scratch",
                 kg_op_table[c->op].name, bytes);
    return p;
}

void kg_cpu_scratch_free(const kg_opcall *c, void *p, size_t bytes)
{
    cpu_release(c->ctx->be_state, p, bytes ? bytes : 1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool cpu_run(const kg_opcall *c)
{
    kg_kernel_fn k = kg_op_table[c->op].cpu;
    double t0 = c->ctx->profiling ? now() : 0.0;
    bool ok = k && k(c);
    if (c->ctx->profiling)
        kg__profile_add(c->ctx, c->op, now() - t0);
    return ok;
}

static bool cpu_is_gpu(void *state)
{
    (void)state;
    return false;
}

static const char *cpu_device(void *state)
{
    (void)state;
    return "cpu";
}

static void cpu_profile(void *state, bool on)
{
    (void)state; /* each kernel is timed as it runs (cpu_run) */
    (void)on;
}

static bool cpu_flush(void *state)
{
    (void)state;
    return true;
}

static void cpu_memory(void *state, size_t *current, size_t *peak)
{
    cpu_state *s = state;
    *current = s->current;
    *peak = s->peak;
}

static void cpu_reset_peak(void *state)
{
    cpu_state *s = state;
    s->peak = s->current;
}

const kg_backend kg_cpu_backend = {
    .name = "cpu",
    .init = cpu_init,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .run = cpu_run,
    .flush = cpu_flush,
    .memory = cpu_memory,
    .reset_peak = cpu_reset_peak,
    .device = cpu_device,
    .is_gpu = cpu_is_gpu,
    .profile = cpu_profile,
};

int kg_cpu_thread_count(void) { return kg_cpu_threads(); }
const char *kg_cpu_blas(void) { return kg_cpu_blas_name(); }
const char *kg_cpu_gemv_name(void) { return kg_cpu_gemv_isa(); }
