/* backend.c — the Vulkan backend's entry points: the kg_backend interface (start and stop,
 * memory, uploads and downloads, running an op) over device.c, memory.c and stream.c.
 */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vk_destroy(void *state);

static bool vk_init(kg_ctx *ctx, void **state)
{
    vk_state *s = kg__calloc(1, sizeof *s);
    if (!s)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_ctx_new: out of host memory");
    s->ctx = ctx;
    *state = s;
    VkResult r = kg__vk_make_instance(s, &s->instance);
    if (r != VK_SUCCESS) {
        kg_set_error(ctx, KG_ERR_DEVICE, "kg_ctx_new: no Vulkan driver could start (VkResult %d); "
                 "install libvulkan1 and a driver (mesa-vulkan-drivers gives lavapipe)", (int)r);
        s->instance = VK_NULL_HANDLE;
    } else if (kg__vk_pick_device(s) && kg__vk_make_device(s) && kg__vk_make_stream(s)) {
        snprintf(s->device_name, sizeof s->device_name, "%s (%s)", s->props.deviceName,
                 kg__vk_type_name(s->props.deviceType));
        return true;
    }
    vk_destroy(s);
    *state = NULL;
    return false;
}

/* ---- The backend interface --------------------------------------------------------------- */

static void *vk_alloc_fn(void *state, size_t bytes, bool persistent)
{
    vk_state *s = state;
    int pool = persistent ? POOL_PERSISTENT : POOL_STEP;
    vk_alloc *a = kg__vk_mem_alloc(s, bytes, false, pool);
    if (!a && kg__vk_busy(s)) { /* memory may be waiting on queued work: finish it and retry */
        kg__vk_flush(s);
        a = kg__vk_mem_alloc(s, bytes, false, pool);
    }
    return a;
}

static void vk_release(void *state, void *handle, size_t bytes)
{
    (void)bytes;
    vk_state *s = state;
    if (!kg__vk_busy(s)) {
        kg__vk_mem_release(s, handle, false);
        return;
    }
    if (s->n_deferred == s->cap_deferred) {
        size_t cap = s->cap_deferred ? 2 * s->cap_deferred : 64;
        vk_alloc **p = kg__realloc(s->deferred, cap * sizeof *p);
        if (!p) { /* cannot defer: wait for the queued work instead */
            kg__vk_flush(s);
            kg__vk_mem_release(s, handle, false);
            return;
        }
        s->deferred = p;
        s->cap_deferred = cap;
    }
    s->deferred[s->n_deferred++] = handle;
}

/* A staging buffer with the command buffer open for the copy; NULL with the error set. */
static vk_alloc *staging_buffer(vk_state *s, size_t bytes)
{
    vk_alloc *st = kg__vk_mem_alloc(s, bytes, true, POOL_STEP);
    if (!st) {
        kg_set_error(s->ctx, KG_ERR_NOMEM, "vulkan: out of host-visible memory for a %zu-byte "
                 "staging buffer", bytes);
        return NULL;
    }
    if (!kg__vk_begin_batch(s)) {
        kg__vk_mem_release(s, st, true);
        return NULL;
    }
    return st;
}

/* Uploads and downloads of 0 bytes (empty tensors) do nothing: Vulkan has no empty copy. */
static bool vk_upload(void *state, void *handle, size_t offset, const void *src, size_t bytes)
{
    vk_state *s = state;
    vk_alloc *a = handle;
    if (bytes == 0)
        return true;
    if (s->host_visible) {
        /* A fresh allocation: no queued work uses it (released memory waits for the flush). */
        memcpy(a->block->map + a->offset + offset, src, bytes);
        return true;
    }
    if (s->n_staging == BATCH && !kg__vk_flush(s))
        return false;
    vk_alloc *st = staging_buffer(s, bytes);
    if (!st)
        return false;
    memcpy(st->block->map, src, bytes);
    kg__vk_compute_barrier(s);
    VkBufferCopy region = {0, a->offset + offset, bytes};
    vkCmdCopyBuffer(s->cmd, st->block->buf, a->block->buf, 1, &region);
    kg__vk_compute_barrier(s);
    s->staging[s->n_staging++] = st;
    return true;
}

static bool vk_download(void *state, void *handle, size_t offset, void *dst, size_t bytes)
{
    vk_state *s = state;
    vk_alloc *a = handle;
    if (bytes == 0)
        return true;
    if (s->host_visible) {
        if (!kg__vk_flush(s))
            return false;
        memcpy(dst, a->block->map + a->offset + offset, bytes);
        return true;
    }
    vk_alloc *st = staging_buffer(s, bytes);
    if (!st)
        return false;
    kg__vk_compute_barrier(s);
    VkBufferCopy region = {a->offset + offset, 0, bytes};
    vkCmdCopyBuffer(s->cmd, a->block->buf, st->block->buf, 1, &region);
    bool ok = kg__vk_flush(s);
    if (ok)
        memcpy(dst, st->block->map, bytes);
    kg__vk_mem_release(s, st, true);
    return ok;
}

static bool vk_run(const kg_opcall *c)
{
    kg_kernel_fn k = kg_op_table[c->op].vulkan;
    if (!k)
        return kg_set_error(c->ctx, KG_ERR_DEVICE, "kg_%s has no Vulkan kernel",
                        kg_op_table[c->op].name);
    /* Shaders index with 32-bit signed integers. */
    for (int i = -1; i < c->n_in; i++) {
        const kg_tensor *t = i < 0 ? c->out : c->in[i];
        if (kg_tensor_numel(t) >= INT32_MAX)
            return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: %s has 2^31 elements or more, which "
                            "the Vulkan kernels cannot index", kg_op_table[c->op].name,
                            KG_DESC(t));
    }
    return k(c);
}

static void vk_memory(void *state, size_t *current, size_t *peak)
{
    vk_state *s = state;
    *current = s->current;
    *peak = s->peak;
}

static void vk_reset_peak(void *state)
{
    vk_state *s = state;
    s->peak = s->current;
}

static const char *vk_device(void *state) { return ((vk_state *)state)->device_name; }
static bool vk_is_gpu(void *state)
{
    return ((vk_state *)state)->props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU;
}

static void vk_profile(void *state, bool on)
{
    vk_state *s = state;
    kg__vk_flush(s); /* timestamps are reset per batch: switch between batches */
    s->profiling = on && s->queries;
}

static void vk_destroy(void *state)
{
    vk_state *s = state;
    if (!s)
        return;
    if (s->dev) {
        kg__vk_flush(s);
        vkDeviceWaitIdle(s->dev);
        if (s->status)
            kg__vk_mem_release(s, s->status, true);
        if (s->rope.mem)
            kg__vk_mem_release(s, s->rope.mem, false);
        for (int i = 0; i < KG_VK_SHADER_COUNT; i++)
            if (s->pipes[i])
                vkDestroyPipeline(s->dev, s->pipes[i], NULL);
        kg__vk_mem_destroy(s);
        if (s->queries)
            vkDestroyQueryPool(s->dev, s->queries, NULL);
        for (int i = 0; i < 2; i++)
            if (s->fences[i])
                vkDestroyFence(s->dev, s->fences[i], NULL);
        vkDestroyCommandPool(s->dev, s->pool, NULL);
        kg__vk_save_pipeline_cache(s);
        vkDestroyPipelineCache(s->dev, s->cache, NULL);
        vkDestroyPipelineLayout(s->dev, s->layout, NULL);
        vkDestroyDevice(s->dev, NULL);
    }
    if (s->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(s->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy)
            destroy(s->instance, s->messenger, NULL);
    }
    if (s->instance)
        vkDestroyInstance(s->instance, NULL);
    free(s->deferred);
    free(s);
}

const kg_backend kg_vulkan_backend = {
    .name = "vulkan",
    .init = vk_init,
    .destroy = vk_destroy,
    .alloc = vk_alloc_fn,
    .release = vk_release,
    .upload = vk_upload,
    .download = vk_download,
    .run = vk_run,
    .flush = kg__vk_flush,
    .memory = vk_memory,
    .reset_peak = vk_reset_peak,
    .device = vk_device,
    .is_gpu = vk_is_gpu,
    .profile = vk_profile,
};
