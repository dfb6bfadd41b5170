/* stream.c — running kernels: pipelines made on first use from the embedded SPIR-V (kept in a
 * pipeline cache on disk), dispatches recorded into two command buffers in turn and submitted in
 * batches (the device runs one while the host records the next), a barrier only where a dispatch
 * depends on an earlier one of the batch, and what the flush does after the GPU finishes.
 */
#include "vk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* SPIR-V, compiled from shaders/ at build time (glslc -mfmt=c): the arrays kg_spv_<name>. */
#define KG_VK_SPIRV
#include "shaders.h"

static const struct { const uint32_t *code; size_t size; } shader_code[KG_VK_SHADER_COUNT] = {
#define KG_VK_CODE(NAME, name) [KG_VK_##NAME] = {kg_spv_##name, sizeof kg_spv_##name},
    KG_VK_SHADERS(KG_VK_CODE)
#undef KG_VK_CODE
};

/* Whether the shader's SPIR-V declares 16-bit storage (OpCapability StorageBuffer16BitAccess):
 * such a module runs only where the device has it. After the 5-word header, each instruction's
 * first word holds its length (high half) and opcode (low half). */
bool kg__vk_shader_needs_16bit(kg_vk_shader sh)
{
    enum { OP_CAPABILITY = 17, CAP_STORAGE_BUFFER_16BIT = 4433 };
    const uint32_t *code = shader_code[sh].code;
    size_t n = shader_code[sh].size / 4;
    for (size_t i = 5; i + 1 < n && code[i] >> 16; i += code[i] >> 16)
        if ((code[i] & 0xffff) == OP_CAPABILITY && code[i + 1] == CAP_STORAGE_BUFFER_16BIT)
            return true;
    return false;
}

/* ---- The pipeline cache on disk -----------------------------------------------------------
 * Creating a pipeline compiles its shader for the device (LLVM on lavapipe, the driver's
 * compiler on a GPU): the first use of every kernel pays for it in each new process. The
 * driver's cache data is kept in ${XDG_CACHE_HOME:-~/.cache}/krongrad/pipelines-<vendor>-
 * <device>-<pipelineCacheUUID>.bin (KG_PIPELINE_CACHE names another file, or "off"), read at
 * start and written back atomically (temp file, fsync, rename) when new pipelines were made.
 * The file is untrusted: its header (Vulkan's VkPipelineCacheHeaderVersionOne) must name this
 * device and driver or the file is ignored, and the driver checks the rest. */

enum { CACHE_HEADER_BYTES = 32, CACHE_MAX_BYTES = 256 << 20 };

/* The cache file's path into buf; false when there is none (turned off, no home). */
static bool cache_path(const vk_state *s, char *buf, size_t cap)
{
    const char *env = getenv("KG_PIPELINE_CACHE");
    if (env && strcmp(env, "off") == 0)
        return false;
    if (env && *env)
        return (size_t)snprintf(buf, cap, "%s", env) < cap;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; i++)
        snprintf(uuid + 2 * i, 3, "%02x", s->props.pipelineCacheUUID[i]);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = xdg && *xdg ? snprintf(buf, cap, "%s/krongrad", xdg)
            : home && *home ? snprintf(buf, cap, "%s/.cache/krongrad", home)
                            : -1;
    if (n < 0 || (size_t)n >= cap)
        return false;
    int m = snprintf(buf + n, cap - (size_t)n, "/pipelines-%04x-%04x-%s.bin", s->props.vendorID,
                     s->props.deviceID, uuid);
    return m > 0 && (size_t)m < cap - (size_t)n;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whether data (size bytes) starts with a header of this device and driver. */
static bool cache_header_ok(const vk_state *s, const unsigned char *data, size_t size)
{
    if (size < CACHE_HEADER_BYTES)
        return false;
    uint32_t length = le32(data), version = le32(data + 4);
    return length >= CACHE_HEADER_BYTES && length <= size &&
           version == VK_PIPELINE_CACHE_HEADER_VERSION_ONE && le32(data + 8) == s->props.vendorID &&
           le32(data + 12) == s->props.deviceID &&
           memcmp(data + 16, s->props.pipelineCacheUUID, VK_UUID_SIZE) == 0;
}

/* The file's bytes when they suit this device (malloc'd, *size set), else NULL: a missing,
 * short, oversized, foreign or unreadable file is the same as none. */
static void *cache_read(const vk_state *s, const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *data = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len >= CACHE_HEADER_BYTES && len <= CACHE_MAX_BYTES && fseek(f, 0, SEEK_SET) == 0 &&
        (data = malloc((size_t)len)) && fread(data, 1, (size_t)len, f) == (size_t)len &&
        cache_header_ok(s, data, (size_t)len)) {
        *size = (size_t)len;
    } else {
        free(data);
        data = NULL;
    }
    fclose(f);
    return data;
}

/* mkdir -p of path's directory (the last component is the file). */
static void make_parent_dirs(const char *path)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return;
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755); /* EEXIST and the like show at open */
            *p = '/';
        }
}

void kg__vk_save_pipeline_cache(vk_state *s)
{
    char path[4096], tmp[4160];
    if (!s->cache || !s->cache_dirty || !cache_path(s, path, sizeof path))
        return;
    size_t size = 0;
    if (vkGetPipelineCacheData(s->dev, s->cache, &size, NULL) != VK_SUCCESS || size == 0 ||
        size > CACHE_MAX_BYTES)
        return;
    unsigned char *data = malloc(size);
    if (!data || vkGetPipelineCacheData(s->dev, s->cache, &size, data) != VK_SUCCESS ||
        !cache_header_ok(s, data, size)) {
        free(data);
        return;
    }
    /* A cache is an optimization: failing to write it is not an error of the run. */
    make_parent_dirs(path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < size;) {
        ssize_t w = write(fd, data + done, size - done);
        ok = w > 0 || (w < 0 && errno == EINTR);
        done += w > 0 ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
    else
        s->cache_dirty = false;
    free(data);
}

bool kg__vk_make_stream(vk_state *s)
{
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                  .queueFamilyIndex = s->family};
    VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, KG_PUSH_BYTES};
    VkPipelineLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr};
    char path[4096];
    size_t cached = 0;
    void *data = cache_path(s, path, sizeof path) ? cache_read(s, path, &cached) : NULL;
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                    .initialDataSize = cached, .pInitialData = data};
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkResult made = vkCreatePipelineCache(s->dev, &ci, NULL, &s->cache);
    if (made != VK_SUCCESS && data) { /* data the driver refused: start empty */
        ci.initialDataSize = 0, ci.pInitialData = NULL;
        made = vkCreatePipelineCache(s->dev, &ci, NULL, &s->cache);
    }
    free(data);
    if (!kg__vk_ok(s, vkCreateCommandPool(s->dev, &pi, NULL, &s->pool), "vkCreateCommandPool") ||
        !kg__vk_ok(s, vkCreatePipelineLayout(s->dev, &li, NULL, &s->layout), "vkCreatePipelineLayout") ||
        !kg__vk_ok(s, made, "vkCreatePipelineCache") ||
        !kg__vk_ok(s, vkCreateFence(s->dev, &fi, NULL, &s->fences[0]), "vkCreateFence") ||
        !kg__vk_ok(s, vkCreateFence(s->dev, &fi, NULL, &s->fences[1]), "vkCreateFence"))
        return false;
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = s->pool, .commandBufferCount = 2,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY};
    if (!kg__vk_ok(s, vkAllocateCommandBuffers(s->dev, &ai, s->cmds), "vkAllocateCommandBuffers"))
        return false;
    s->cmd = s->cmds[0];
    if (s->props.limits.timestampComputeAndGraphics) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 4 * BATCH};
        vkCreateQueryPool(s->dev, &qi, NULL, &s->queries); /* profiling is off without it */
    }
    /* Matmul tiles from the device's limits: 128×128 with K slices of 8 and 8×8 outputs per
     * invocation (256 invocations, 8 KiB of shared memory) where they fit, else 32×32×16 with
     * 4×4 (64 invocations, 4 KiB). On lavapipe the big tile runs 7 GFLOPS, 3× a 64×64 one. */
    bool big = s->props.limits.maxComputeWorkGroupInvocations >= 256 &&
               s->props.limits.maxComputeSharedMemorySize >= 8 * 1024;
    s->tile_bm = s->tile_bn = big ? 128 : 32;
    s->tile_bk = big ? 8 : 16;
    s->tile_t = big ? 8 : 4;
    s->status = kg__vk_mem_alloc(s, sizeof(vk_status), true, POOL_PERSISTENT);
    if (!s->status)
        return kg_set_error(s->ctx, KG_ERR_NOMEM, "kg_ctx_new: out of device memory");
    memset(s->status->block->map, 0, sizeof(vk_status));
    return true;
}

/* ---- The stream ------------------------------------------------------------------------- */

bool kg__vk_begin_batch(vk_state *s)
{
    if (s->recording)
        return true;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (!kg__vk_ok(s, vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer"))
        return false;
    if (s->profiling && s->queries)
        vkCmdResetQueryPool(s->cmd, s->queries, (uint32_t)s->slot * 2 * BATCH, 2 * BATCH);
    s->recording = true;
    s->n_dispatch = 0;
    s->n_reads = s->n_writes = 0;
    /* The batch before may still run: its writes come before anything of this one. */
    if (s->in_flight[1 - s->slot])
        kg__vk_compute_barrier(s);
    return true;
}

static void barrier(vk_state *s, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
    s->n_reads = s->n_writes = 0;
}

void kg__vk_compute_barrier(vk_state *s)
{
    s->barriers++;
    barrier(s, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
}

/* Turn what kernels wrote into the status buffer into the context's error, and clear it. */
static void read_status(vk_state *s)
{
    vk_status *st = (vk_status *)s->status->block->map;
    const char *op = st->op < KG_OP_COUNT ? kg_op_table[st->op].name : "?";
    switch (st->kind) {
    case 0:
        return;
    case STATUS_BAD_INDEX:
        kg_set_error(s->ctx, KG_ERR_RANGE, "kg_%s: index %d at position %d is outside [0, %d) "
                     "(found by the Vulkan kernel)", op, st->value, st->position, st->limit);
        break;
    case STATUS_BAD_MODE:
        kg_set_error(s->ctx, KG_ERR_STATE, "internal: kg_%s reached a Vulkan shader with mode %d, "
                     "which it has no case for", op, st->value);
        break;
    default:
        kg_set_error(s->ctx, KG_ERR_STATE, "internal: the Vulkan status buffer holds kind %u",
                     st->kind);
        break;
    }
    memset(st, 0, sizeof *st);
}

/* Wait for the batch in slot i, if it is in flight; then tally its timestamps and free what
 * waited on it: its staging buffers and the memory released before it was submitted (batches
 * complete in order, so every earlier batch is done too). */
static bool retire(vk_state *s, int i)
{
    if (!s->in_flight[i])
        return true;
    bool ok = kg__vk_ok(s, vkWaitForFences(s->dev, 1, &s->fences[i], VK_TRUE, UINT64_MAX),
                        "vkWaitForFences");
    vkResetFences(s->dev, 1, &s->fences[i]);
    vkResetCommandBuffer(s->cmds[i], 0);
    s->in_flight[i] = false;
    int n = s->n_flight_dispatch[i];
    if (ok && s->profiling && s->queries && n > 0) {
        uint64_t ts[2 * BATCH];
        if (vkGetQueryPoolResults(s->dev, s->queries, (uint32_t)i * 2 * BATCH, 2 * (uint32_t)n,
                                  sizeof ts, ts, sizeof(uint64_t), VK_QUERY_RESULT_64_BIT |
                                  VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS)
            for (int k = 0; k < n; k++)
                kg__profile_add(s->ctx, s->batch_ops[i][k], (double)(ts[2 * k + 1] - ts[2 * k]) *
                                s->props.limits.timestampPeriod * 1e-9);
    }
    for (int k = 0; k < s->n_flight_staging[i]; k++)
        kg__vk_mem_release(s, s->flight_staging[i][k], true);
    s->n_flight_staging[i] = 0;
    size_t mark = s->deferred_mark[i];
    for (size_t k = 0; k < mark; k++)
        kg__vk_mem_release(s, s->deferred[k], false);
    if (mark > 0)
        memmove(s->deferred, s->deferred + mark, (s->n_deferred - mark) * sizeof *s->deferred);
    s->n_deferred -= mark;
    s->deferred_mark[i] = 0;
    s->deferred_mark[1 - i] -= s->deferred_mark[1 - i] >= mark ? mark : s->deferred_mark[1 - i];
    return ok;
}

/* Close and submit the batch being recorded without waiting; the other buffer becomes the one
 * recorded into, once the batch it held (if any) is done. to_host: make every write visible
 * to the host when the batch completes (a flush reads results). */
static bool submit(vk_state *s, bool to_host)
{
    if (!s->recording)
        return true;
    if (to_host)
        barrier(s, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    s->recording = false;
    int i = s->slot;
    bool ok = kg__vk_ok(s, vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &s->cmd};
    ok = ok && kg__vk_ok(s, vkQueueSubmit(s->queue, 1, &si, s->fences[i]), "vkQueueSubmit");
    if (!ok) {
        vkResetCommandBuffer(s->cmd, 0);
        return false;
    }
    s->in_flight[i] = true;
    s->n_flight_dispatch[i] = s->n_dispatch;
    s->deferred_mark[i] = s->n_deferred;
    if (s->n_staging > 0)
        memcpy(s->flight_staging[i], s->staging, (size_t)s->n_staging * sizeof *s->staging);
    s->n_flight_staging[i] = s->n_staging;
    s->n_staging = 0;
    s->slot = 1 - i;
    s->cmd = s->cmds[s->slot];
    return retire(s, s->slot);
}

/* Submit what is recorded and wait for everything queued; then release what was waiting on it
 * and read back the status of bad indices. */
bool kg__vk_flush(void *state)
{
    vk_state *s = state;
    if (!kg__vk_busy(s))
        return true;
    bool ok = submit(s, true);
    ok = retire(s, 1 - s->slot) && ok; /* the older first: batches finish in order */
    ok = retire(s, s->slot) && ok;
    for (size_t i = 0; i < s->n_deferred; i++) /* anything released after the last submit */
        kg__vk_mem_release(s, s->deferred[i], false);
    s->n_deferred = 0;
    s->deferred_mark[0] = s->deferred_mark[1] = 0;
    for (int i = 0; i < s->n_staging; i++)
        kg__vk_mem_release(s, s->staging[i], true);
    s->n_staging = 0;
    read_status(s);
    return ok;
}

/* The address range a view touches. */
static vk_range touched(const kg_tensor *t)
{
    int64_t span = 1;
    for (int i = 0; i < t->ndim; i++)
        span += (t->shape[i] - 1) * t->stride[i];
    if (kg_tensor_numel(t) == 0)
        span = 0;
    return (vk_range){kg_vk_addr(t), (VkDeviceSize)span * kg_dtype_size(t->dtype)};
}

static bool overlaps(const vk_range *list, int n, vk_range r)
{
    for (int i = 0; i < n; i++)
        if (r.offset < list[i].offset + list[i].size && list[i].offset < r.offset + r.size)
            return true;
    return false;
}

/* Order this dispatch after every earlier one it conflicts with, then note what it touches. */
static void order_accesses(vk_state *s, kg_tensor *const *reads, int n_reads,
                           const kg_tensor *const *writes, int n_writes)
{
    bool need = s->n_writes + n_writes > MAX_RANGES || s->n_reads + n_reads > MAX_RANGES;
    for (int i = 0; i < n_writes && !need; i++) {
        vk_range w = touched(writes[i]);
        need = overlaps(s->writes, s->n_writes, w) || overlaps(s->reads, s->n_reads, w);
    }
    for (int i = 0; i < n_reads && !need; i++)
        need = overlaps(s->writes, s->n_writes, touched(reads[i]));
    if (need)
        kg__vk_compute_barrier(s);
    for (int i = 0; i < n_reads; i++)
        s->reads[s->n_reads++] = touched(reads[i]);
    for (int i = 0; i < n_writes; i++)
        s->writes[s->n_writes++] = touched(writes[i]);
}

static VkPipeline pipeline(vk_state *s, kg_vk_shader which)
{
    if (s->pipes[which])
        return s->pipes[which];
    if (kg__vk_shader_needs_16bit(which) && !s->has_16bit) {
        kg_set_error(s->ctx, KG_ERR_DEVICE, "vulkan: %s lacks 16-bit storage, which f16 and bf16 "
                 "tensors need on it", s->props.deviceName);
        return VK_NULL_HANDLE;
    }
    VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                   .codeSize = shader_code[which].size,
                                   .pCode = shader_code[which].code};
    VkShaderModule mod;
    if (!kg__vk_ok(s, vkCreateShaderModule(s->dev, &mi, NULL, &mod), "vkCreateShaderModule"))
        return VK_NULL_HANDLE;
    /* Only matmul has specialization constants: its tile. */
    uint32_t spec[6] = {s->tile_bm, s->tile_bn, s->tile_bk, s->tile_t, s->tile_t,
                        (s->tile_bm / s->tile_t) * (s->tile_bn / s->tile_t)};
    VkSpecializationMapEntry entries[6];
    for (uint32_t i = 0; i < 6; i++)
        entries[i] = (VkSpecializationMapEntry){i, i * 4, 4};
    VkSpecializationInfo si = {6, entries, sizeof spec, spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = s->layout,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = mod, .pName = "main",
                  .pSpecializationInfo = which == KG_VK_MATMUL ? &si : NULL}};
    VkResult r = vkCreateComputePipelines(s->dev, s->cache, 1, &ci, NULL, &s->pipes[which]);
    vkDestroyShaderModule(s->dev, mod, NULL);
    if (!kg__vk_ok(s, r, "vkCreateComputePipelines"))
        return VK_NULL_HANDLE;
    s->cache_dirty = true; /* written back at the end (kg__vk_save_pipeline_cache) */
    return s->pipes[which];
}

/* One dispatch that writes n_writes tensors (the first one's size says whether there is work). */
static bool record(const kg_opcall *c, kg_vk_shader sh, const void *push, size_t size,
                   const uint32_t grid[3], kg_tensor *const *reads, int n_reads,
                   const kg_tensor *const *writes, int n_writes)
{
    vk_state *s = c->ctx->be_state;
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || kg_tensor_numel(writes[0]) == 0)
        return true; /* nothing to do (an empty tensor) */
    const uint32_t *lim = s->props.limits.maxComputeWorkGroupCount;
    if (grid[0] > lim[0] || grid[1] > lim[1] || grid[2] > lim[2])
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: a grid of %u×%u×%u workgroups exceeds "
                        "%s's %u×%u×%u", kg_op_table[c->op].name, grid[0], grid[1], grid[2],
                        s->props.deviceName, lim[0], lim[1], lim[2]);
    KG_ASSERT(size <= KG_PUSH_BYTES);
    uint8_t bytes[KG_PUSH_BYTES] = {0}; /* the whole range is pushed: the rest reads as zeros */
    memcpy(bytes, push, size);
    VkPipeline pipe = pipeline(s, sh);
    if (!pipe || !kg__vk_begin_batch(s))
        return false;
    order_accesses(s, reads, n_reads, writes, n_writes);
    bool timed = s->profiling && s->queries;
    if (timed)
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s->queries,
                            (uint32_t)s->slot * 2 * BATCH + 2 * (uint32_t)s->n_dispatch);
    vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdPushConstants(s->cmd, s->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, KG_PUSH_BYTES, bytes);
    vkCmdDispatch(s->cmd, grid[0], grid[1], grid[2]);
    if (timed)
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->queries,
                            (uint32_t)s->slot * 2 * BATCH + 2 * (uint32_t)s->n_dispatch + 1);
    s->batch_ops[s->slot][s->n_dispatch++] = c->op;
    if (s->n_dispatch == BATCH) /* the device starts on it while the next one is recorded */
        return submit(s, false);
    return true;
}

/* `groups` workgroups laid out 1-D, folded into y beyond the x limit. groups < 2^31 (vk_run
 * refuses bigger tensors), so y fits; record checks it against the device's grid like every
 * other axis. */
static void grid_1d(const kg_opcall *c, uint64_t groups, uint32_t grid[3])
{
    uint64_t maxx = kg_vk_max_groups(c->ctx, 0);
    uint64_t gx = groups < maxx ? groups : maxx, gy = gx ? (groups + gx - 1) / gx : 0;
    grid[0] = (uint32_t)gx;
    grid[1] = (uint32_t)gy;
    grid[2] = 1;
}

bool kg_vk_dispatch(const kg_opcall *c, kg_vk_shader sh, const void *push, size_t size,
                    uint32_t gx, uint32_t gy, uint32_t gz, kg_tensor *const *reads, int n_reads,
                    const kg_tensor *write)
{
    return record(c, sh, push, size, (uint32_t[]){gx, gy, gz}, reads, n_reads, &write, 1);
}

bool kg_vk_dispatch_1d(const kg_opcall *c, kg_vk_shader sh, const void *push, size_t size,
                       uint64_t groups, kg_tensor *const *reads, int n_reads,
                       const kg_tensor *write)
{
    uint32_t grid[3];
    grid_1d(c, groups, grid);
    return record(c, sh, push, size, grid, reads, n_reads, &write, 1);
}

bool kg_vk_dispatch_1d_writes(const kg_opcall *c, kg_vk_shader sh, const void *push, size_t size,
                              uint64_t groups, kg_tensor *const *reads, int n_reads,
                              kg_tensor *const *writes, int n_writes)
{
    uint32_t grid[3];
    grid_1d(c, groups, grid);
    return record(c, sh, push, size, grid, reads, n_reads, (const kg_tensor *const *)writes,
                  n_writes);
}

uint64_t kg_vk_addr(const kg_tensor *t)
{
    const vk_alloc *a = t->storage->handle;
    return a->block->addr + a->offset + (uint64_t)t->offset * kg_dtype_size(t->dtype);
}

uint64_t kg_vk_status_addr(const kg_ctx *ctx)
{
    const vk_state *s = ctx->be_state;
    return s->status->block->addr + s->status->offset;
}

uint32_t kg_vk_max_groups(const kg_ctx *ctx, int axis)
{
    return ((const vk_state *)ctx->be_state)->props.limits.maxComputeWorkGroupCount[axis];
}

void kg_vk_matmul_tile(const kg_ctx *ctx, uint32_t *bm, uint32_t *bn)
{
    const vk_state *s = ctx->be_state;
    *bm = s->tile_bm;
    *bn = s->tile_bn;
}

size_t kg__vk_barrier_count(const kg_ctx *ctx)
{
    return ((const vk_state *)ctx->be_state)->barriers;
}
