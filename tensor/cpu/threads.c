/* threads.c — a small fixed thread pool for parallel loops. The calling thread runs chunk 0
 * itself; workers sleep on a condition variable between jobs. KG_THREADS sets the size
 * (default: the number of online cores).
 */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

static struct {
    pthread_once_t once;
    pthread_mutex_t lock; /* one parallel loop at a time (callers may be on several threads) */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int n;              /* threads including the caller */
    unsigned job;       /* bumped per job so workers see new work */
    int pending;        /* workers still running the current job */
    kg_range_fn fn;
    void *arg;
    int64_t total, chunk;
} pool = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER,
          .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void run_chunk(int64_t index)
{
    int64_t lo = index * pool.chunk, hi = lo + pool.chunk;
    if (hi > pool.total)
        hi = pool.total;
    if (lo < hi)
        pool.fn(pool.arg, lo, hi);
}

static void *worker(void *arg)
{
    int64_t index = (int64_t)(intptr_t)arg;
    unsigned seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.job == seen)
            pthread_cond_wait(&pool.wake, &pool.mu);
        seen = pool.job;
        pthread_mutex_unlock(&pool.mu);
        run_chunk(index);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.done);
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
    if (threads == 1 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    int64_t parts = (n + grain - 1) / grain;
    if (parts > threads)
        parts = threads;
    pthread_mutex_lock(&pool.lock);
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.arg = arg;
    pool.total = n;
    pool.chunk = (n + parts - 1) / parts;
    /* Every worker wakes; those past the last chunk find an empty range. */
    pool.pending = pool.n - 1;
    pool.job++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    run_chunk(0);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.lock);
}
