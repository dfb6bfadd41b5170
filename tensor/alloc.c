/* alloc.c — every host allocation of the tensor layer goes through here, so that a test can make
 * the n-th one fail (as SQLite's fault injector does) and check that each failure becomes
 * KG_ERR_NOMEM with nothing leaked and no wrong value returned as a success; and the pools that
 * keep a context's freed small blocks (tensor headers, small tensors) for its next step.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Allocations left before one fails; -1 never. Set only by tests (kg__fail_alloc_after). */
static atomic_long countdown = -1;
/* Calls so far, failed or not (kg__alloc_calls: a decode step makes none, tested). */
static atomic_ulong calls;

long kg__fail_alloc_after(long n) { return atomic_exchange(&countdown, n); }

unsigned long kg__alloc_calls(void) { return atomic_load_explicit(&calls, memory_order_relaxed); }

/* True when this allocation is the one chosen to fail. */
static bool injected(void)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    long n = atomic_load(&countdown);
    while (n >= 0 && !atomic_compare_exchange_weak(&countdown, &n, n - 1))
        ;
    return n == 0;
}

void *kg__malloc(size_t bytes) { return injected() ? NULL : malloc(bytes ? bytes : 1); }

void *kg__calloc(size_t n, size_t size) { return injected() ? NULL : calloc(n ? n : 1, size ? size : 1); }

void *kg__realloc(void *p, size_t bytes) { return injected() ? NULL : realloc(p, bytes ? bytes : 1); }

void *kg__aligned_alloc(size_t align, size_t bytes)
{
    return injected() ? NULL : aligned_alloc(align, (bytes + align - 1) / align * align);
}

/* The class of a block of bytes (< KG__POOL_MAX_BYTES): 64 << class bytes hold it. */
static int pool_class(size_t bytes)
{
    int c = 0;
    while ((size_t)64 << c < bytes)
        c++;
    return c;
}

size_t kg__pool_size(size_t bytes)
{
    return bytes < KG__POOL_MAX_BYTES ? (size_t)64 << pool_class(bytes) : bytes;
}

void *kg__pool_take(kg__pool *p, size_t bytes)
{
    if (bytes >= KG__POOL_MAX_BYTES)
        return kg__aligned_alloc(64, bytes);
    int c = pool_class(bytes);
    size_t size = (size_t)64 << c;
    void *b = p->free[c];
    if (b) {
        p->free[c] = *(void **)b;
        p->kept -= size;
    } else if (!(b = kg__aligned_alloc(64, size))) {
        return NULL;
    }
    p->live += size;
    if (p->live > p->high)
        p->high = p->live;
    return b;
}

void kg__pool_give(kg__pool *p, void *block, size_t bytes)
{
    if (!block)
        return;
    if (bytes >= KG__POOL_MAX_BYTES) {
        free(block);
        return;
    }
    int c = pool_class(bytes);
    size_t size = (size_t)64 << c;
    p->live -= size;
    if (KG__KEEP_FREED && p->kept + size <= p->high) {
        *(void **)block = p->free[c];
        p->free[c] = block;
        p->kept += size;
        return;
    }
    free(block);
}

void kg__pool_drop(kg__pool *p)
{
    for (int c = 0; c < KG__POOL_CLASSES; c++)
        while (p->free[c]) {
            void *b = p->free[c];
            p->free[c] = *(void **)b;
            free(b);
        }
    p->kept = 0;
}
