/* malloc_count.c — an LD_PRELOAD library that counts a process's heap allocation calls (malloc,
 * calloc, realloc, aligned_alloc, posix_memalign) and prints the counts on exit: the whole
 * process, not only what goes through tensor/alloc.c. glibc only (it forwards to __libc_*).
 *   LD_PRELOAD=build/bench/libmalloc_count.so krongrad bench generate --model M --new 16 --reps 1
 * and again with --new 48: the difference is what 2 × 32 more decode steps allocate.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static atomic_long n_malloc, n_calloc, n_realloc, n_aligned;

void *malloc(size_t n)
{
    n_malloc++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    n_calloc++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    n_realloc++;
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    n_aligned++;
    return __libc_memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    n_aligned++;
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12; /* ENOMEM */
}

__attribute__((destructor)) static void report(void)
{
    fprintf(stderr, "malloc_count: malloc %ld calloc %ld realloc %ld aligned %ld\n",
            atomic_load(&n_malloc), atomic_load(&n_calloc), atomic_load(&n_realloc),
            atomic_load(&n_aligned));
}
