/* alloc.c — every host allocation of the tensor layer goes through here, so that a test can make
 * the n-th one fail (as SQLite's fault injector does) and check that each failure becomes
 * KG_ERR_NOMEM with nothing leaked and no wrong value returned as a success.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Allocations left before one fails; -1 never. Set only by tests (kg__fail_alloc_after). */
static atomic_long countdown = -1;

long kg__fail_alloc_after(long n) { return atomic_exchange(&countdown, n); }

/* True when this allocation is the one chosen to fail. */
static bool injected(void)
{
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
