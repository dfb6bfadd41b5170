/* bench_stream.c — the memory read bandwidth a decode step can reach: a STREAM-like loop that
 * sums a 256 MiB array (far past the caches) on N threads, as a matrix-vector product reads its
 * weights (once, in order). Prints the best of 5 passes in GB/s; the physical bound on decoding
 * is then (weight bytes per token) / (this bandwidth). Usage: bench_stream [threads] (default 2).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { BYTES = 256 << 20, PASSES = 5 };

typedef struct part {
    const double *a;
    size_t n;
    double sum;
} part;

static void *sum_part(void *arg)
{
    part *p = arg;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0; /* four chains: the adds never wait on each other */
    for (size_t i = 0; i + 4 <= p->n; i += 4)
        s0 += p->a[i], s1 += p->a[i + 1], s2 += p->a[i + 2], s3 += p->a[i + 3];
    p->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "usage: bench_stream [threads 1..64]\n");
        return 2;
    }
    size_t n = BYTES / sizeof(double);
    double *a = malloc(BYTES);
    if (!a) {
        fprintf(stderr, "bench_stream: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) /* touch every page before timing */
        a[i] = (double)(i & 1023);
    double best = 0, check = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        part parts[64];
        pthread_t th[64];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            parts[t] = (part){a + n / threads * t, n / threads, 0};
            pthread_create(&th[t], NULL, sum_part, &parts[t]);
        }
        for (int t = 0; t < threads; t++)
            pthread_join(th[t], NULL);
        double s = now() - t0, gbs = (double)BYTES / s / 1e9;
        for (int t = 0; t < threads; t++)
            check += parts[t].sum;
        if (gbs > best)
            best = gbs;
    }
    printf("read bandwidth: %.1f GB/s (%d threads, 256 MiB, best of %d; checksum %.0f)\n", best,
           threads, PASSES, check);
    free(a);
    return 0;
}
