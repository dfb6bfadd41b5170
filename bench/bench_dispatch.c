/* bench_dispatch.c — the host's cost of the Vulkan stream, independent of the device's speed:
 * CPU time of the calling thread per recorded dispatch (the op's checks, allocation, hazard
 * tracking, vkCmd* calls and, every 256 dispatches, the submit), and wall time per dispatch of
 * a dependent chain and of independent ops (on lavapipe, mostly the device's own time), plus
 * the time to make a context and the first pipelines (see KG_PIPELINE_CACHE).
 * Usage: bench_dispatch [dispatches]      (KG_DEVICE picks the device)
 */
#include "krongrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4096;
    if (n < 1)
        n = 4096;
    double t0 = clock_s(CLOCK_MONOTONIC);
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_VULKAN);
    if (kg_ctx_status(ctx)) {
        fprintf(stderr, "bench_dispatch: %s\n", kg_error(ctx));
        kg_ctx_free(ctx);
        return 1;
    }
    double made = clock_s(CLOCK_MONOTONIC) - t0;
    kg_tensor *a = kg_ones(ctx, KG_DTYPE_F32, 1, (int64_t[]){64});
    kg_tensor *b = kg_ones(ctx, KG_DTYPE_F32, 1, (int64_t[]){64});
    t0 = clock_s(CLOCK_MONOTONIC);
    kg_softmax(kg_gelu(kg_add(a, b)), NULL);
    kg_flush(ctx);
    double first = clock_s(CLOCK_MONOTONIC) - t0;
    printf("device %s\ncontext %.3f s; first add, gelu, softmax (pipelines made) %.3f s\n",
           kg_device_name(ctx), made, first);
    printf("%10s %22s %22s %22s\n", "round", "host CPU us/dispatch", "chain wall us/disp.",
           "independent us/disp.");
    for (int round = 1; round <= 3 && !kg_ctx_status(ctx); round++) {
        kg_scope scope = kg_scope_begin(ctx);
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        kg_tensor *x = a;
        for (int i = 0; i < n; i++)
            x = kg_add(x, b); /* each reads the one before: a barrier each */
        double host = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        kg_flush(ctx);
        double chain = clock_s(CLOCK_MONOTONIC) - w0;
        w0 = clock_s(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++)
            kg_add(a, b);
        kg_flush(ctx);
        double indep = clock_s(CLOCK_MONOTONIC) - w0;
        printf("%10d %22.1f %22.1f %22.1f\n", round, 1e6 * host / n, 1e6 * chain / n,
               1e6 * indep / n);
        kg_scope_end(ctx, scope);
    }
    int rc = kg_ctx_status(ctx) ? 1 : 0;
    if (rc)
        fprintf(stderr, "bench_dispatch: %s\n", kg_error(ctx));
    kg_ctx_free(ctx);
    return rc;
}
