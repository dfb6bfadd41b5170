/* ctx.c — contexts: the backend they run on, the tensors they own, scopes that free a step's
 * tensors together, no-grad depth, and the sticky first error.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KG_HAVE_VULKAN
extern const kg_backend kg_vulkan_backend;
#endif

kg_ctx *kg_ctx_new(kg_backend_kind kind)
{
    kg_ctx *ctx = kg__calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    switch (kind) {
    case KG_BACKEND_CPU:
        ctx->be = &kg_cpu_backend;
        break;
    case KG_BACKEND_VULKAN:
#ifdef KG_HAVE_VULKAN
        ctx->be = &kg_vulkan_backend;
#else
        kg_set_error(ctx, KG_ERR_DEVICE,
                 "kg_ctx_new: this krongrad was built without Vulkan (libvulkan-dev and glslc "
                 "were missing at configure time)");
        return ctx;
#endif
        break;
    default:
        kg_set_error(ctx, KG_ERR_ARG, "kg_ctx_new: unknown backend kind %d", (int)kind);
        return ctx;
    }
    if (!ctx->be->init(ctx, &ctx->be_state))
        ctx->be = NULL; /* init recorded why */
    return ctx;
}

void kg_ctx_free(kg_ctx *ctx)
{
    if (!ctx)
        return;
    kg_scope_end(ctx, 0);
    while (ctx->kept)
        kg_tensor_free(ctx->kept);
    free(ctx->tensors);
    kg__pool_drop(&ctx->headers);
    if (ctx->be)
        ctx->be->destroy(ctx->be_state);
    free(ctx);
}

kg_status kg_ctx_status(const kg_ctx *ctx) { return ctx ? ctx->status : KG_ERR_ARG; }

const char *kg_error(const kg_ctx *ctx)
{
    return ctx ? ctx->message : "kg_error: the context is NULL (kg_ctx_new ran out of memory)";
}

void kg_clear_error(kg_ctx *ctx)
{
    if (!ctx || !ctx->be) /* a context whose backend never started stays in error */
        return;
    ctx->status = KG_OK;
    ctx->message[0] = 0;
}

bool kg_set_error(kg_ctx *ctx, kg_status status, const char *fmt, ...)
{
    if (ctx && ctx->status == KG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
        va_end(ap);
        ctx->status = status;
    }
    return false;
}

const char *kg_backend_name(const kg_ctx *ctx)
{
    return ctx && ctx->be ? ctx->be->name : "none";
}

void kg_memory(const kg_ctx *ctx, size_t *current, size_t *peak)
{
    size_t c = 0, p = 0;
    if (ctx && ctx->be)
        ctx->be->memory(ctx->be_state, &c, &p);
    if (current)
        *current = c;
    if (peak)
        *peak = p;
}

void kg_memory_reset_peak(kg_ctx *ctx)
{
    if (ctx && ctx->be)
        ctx->be->reset_peak(ctx->be_state);
}

void kg_flush(kg_ctx *ctx)
{
    if (ctx && ctx->be && !ctx->be->flush(ctx->be_state))
        kg_set_error(ctx, KG_ERR_DEVICE, "kg_flush: the device failed to run queued work");
}

kg_scope kg_scope_begin(kg_ctx *ctx)
{
    if (!ctx)
        return 0;
    ctx->scopes++;
    return ctx->n_tensors;
}

void kg_scope_end(kg_ctx *ctx, kg_scope scope)
{
    if (!ctx)
        return;
    if (ctx->scopes > 0)
        ctx->scopes--;
    double t0 = ctx->profiling ? kg__now() : 0.0;
    /* Newest first, so views go before what they view (storage is refcounted anyway). */
    while (ctx->n_tensors > scope) {
        kg_tensor *t = ctx->tensors[ctx->n_tensors - 1];
        if (t)
            kg_tensor_free(t); /* clears its slot */
        ctx->n_tensors--;
    }
    if (ctx->profiling)
        ctx->host.release_seconds += kg__now() - t0;
}

void kg_no_grad_begin(kg_ctx *ctx)
{
    if (ctx)
        ctx->no_grad++;
}

void kg_no_grad_end(kg_ctx *ctx)
{
    if (ctx && ctx->no_grad > 0)
        ctx->no_grad--;
}

bool kg_grad_enabled(const kg_ctx *ctx)
{
    return ctx && ctx->no_grad == 0;
}

const char *kg_device_name(const kg_ctx *ctx)
{
    return ctx && ctx->be ? ctx->be->device(ctx->be_state) : "none";
}

bool kg_device_is_gpu(const kg_ctx *ctx)
{
    return ctx && ctx->be && ctx->be->is_gpu(ctx->be_state);
}

void kg_profile(kg_ctx *ctx, bool on)
{
    if (!ctx || !ctx->be)
        return;
    ctx->be->profile(ctx->be_state, on); /* Vulkan finishes queued work under the old setting */
    ctx->profiling = on;
    if (on) {
        memset(ctx->op_seconds, 0, sizeof ctx->op_seconds);
        memset(ctx->op_calls, 0, sizeof ctx->op_calls);
        memset(ctx->op_flops, 0, sizeof ctx->op_flops);
        ctx->host = (kg_profile_host){0};
    }
}

kg_profile_host kg_profile_host_read(const kg_ctx *ctx)
{
    return ctx ? ctx->host : (kg_profile_host){0};
}

int kg_profile_read(kg_ctx *ctx, kg_op_time *out, int cap)
{
    if (!ctx || !ctx->be || !out || cap <= 0)
        return 0;
    kg_flush(ctx); /* GPU timestamps are read when their batch completes */
    int n = 0;
    for (int op = 0; op < KG_OP_COUNT; op++) {
        if (!ctx->op_calls[op])
            continue;
        kg_op_time e = {kg_op_table[op].name, ctx->op_calls[op], ctx->op_seconds[op],
                        ctx->op_flops[op]};
        int i = n < cap ? n++ : cap; /* insertion by time, slowest first */
        while (i > 0 && out[i - 1].seconds < e.seconds) {
            if (i < cap)
                out[i] = out[i - 1];
            i--;
        }
        if (i < cap)
            out[i] = e;
    }
    return n;
}

#ifndef KG_HAVE_VULKAN
size_t kg_vulkan_devices(char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "  not built in (libvulkan-dev and glslc were missing at "
                     "configure time)\n");
    return n < 0 ? 0 : (size_t)n;
}
#endif
