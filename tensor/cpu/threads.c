/* threads.c — a small fixed thread pool for parallel loops. The calling thread runs chunk 0
 * itself; workers spin briefly for the next job, then sleep on a condition variable. KG_THREADS
 * sets the size (default: the number of online cores).
 */
#include "cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64
/* Pause-loop rounds a worker waits for the next job before it sleeps (some microseconds):
 * a training step runs thousands of short parallel loops back to back, and a sleeping worker
 * costs a futex wake-up (~10-50 us) per loop; a spinning one starts at once. */
#define SPIN_ROUNDS 2000

static struct {
    pthread_once_t once;
    pthread_mutex_t lock; /* one parallel loop at a time (callers may be on several threads) */
    pthread_mutex_t mu;   /* guards sleeping: a worker sleeps only after checking job under it */
    pthread_cond_t wake;
    pthread_cond_t done;  /* the caller, asleep until the last worker finishes */
    int n;                /* threads including the caller */
    int sleepers;         /* workers asleep on wake (under mu) */
    bool caller_asleep;   /* under mu */
    atomic_uint job;      /* bumped per job so workers see new work */
    atomic_int pending;   /* workers still running the current job */
    kg_range_fn fn;
    void *arg;
    int64_t total, chunk;
} pool = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER,
          .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

/* Set on a thread while it runs a chunk: a parallel loop inside one (a GEMM inside a batch of
 * them) runs on that thread, never waiting for a pool that is busy with its caller. */
static _Thread_local bool in_pool;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void run_chunk(int64_t index)
{
    int64_t lo = index * pool.chunk, hi = lo + pool.chunk;
    if (hi > pool.total)
        hi = pool.total;
    if (lo < hi) {
        in_pool = true;
        pool.fn(pool.arg, lo, hi);
        in_pool = false;
    }
}

static void *worker(void *arg)
{
    int64_t index = (int64_t)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        unsigned job;
        int spins = 0;
        while ((job = atomic_load_explicit(&pool.job, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            pool.sleepers++;
            while (atomic_load_explicit(&pool.job, memory_order_acquire) == seen)
                pthread_cond_wait(&pool.wake, &pool.mu);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.mu);
            spins = 0;
        }
        seen = job;
        run_chunk(index);
        if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool.mu); /* the last one out wakes a sleeping caller */
            if (pool.caller_asleep)
                pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

static void start_pool(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("KG_THREADS");
    int n = env ? atoi(env) : (int)cores;
    if (n < 1)
        n = 1;
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    pool.n = 1;
    for (int i = 1; i < n; i++) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &attr, worker, (void *)(intptr_t)i);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* fewer threads is still correct */
        pool.n++;
    }
}

int kg_cpu_threads(void)
{
    pthread_once(&pool.once, start_pool);
    return pool.n;
}

void kg_cpu_parallel_for(int64_t n, int64_t grain, kg_range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    int threads = kg_cpu_threads();
    if (grain < 1)
        grain = 1;
    if (threads == 1 || n <= grain || in_pool) {
        fn(arg, 0, n);
        return;
    }
    int64_t parts = (n + grain - 1) / grain;
    if (parts > threads)
        parts = threads;
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.arg = arg;
    pool.total = n;
    pool.chunk = (n + parts - 1) / parts;
    /* Every worker takes the job; those past the last chunk find an empty range. */
    atomic_store_explicit(&pool.pending, pool.n - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool.mu);
    atomic_fetch_add_explicit(&pool.job, 1, memory_order_release);
    if (pool.sleepers)
        pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    run_chunk(0);
    /* Spin briefly for the others, then sleep: on a machine with more runnable threads than
     * cores a worker may be waiting for this very core. */
    for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ROUNDS) {
            cpu_relax();
            continue;
        }
        pthread_mutex_lock(&pool.mu);
        pool.caller_asleep = true;
        while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0)
            pthread_cond_wait(&pool.done, &pool.mu);
        pool.caller_asleep = false;
        pthread_mutex_unlock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.lock);
}
