/* stream.c — running kernels: pipelines made on first use from the embedded SPIR-V, dispatches
 * recorded into one command buffer and submitted in batches, a barrier only where a dispatch
 * depends on an earlier one of the batch, and what the flush does after the GPU finishes.
 */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SPIR-V, compiled from shaders/ at build time (glslc -mfmt=c). */
static const uint32_t spv_elementwise[] =
#include "elementwise.spv.h"
    ;
static const uint32_t spv_copy32[] =
#include "copy32.spv.h"
    ;
static const uint32_t spv_copy16[] =
#include "copy16.spv.h"
    ;
static const uint32_t spv_cast[] =
#include "cast.spv.h"
    ;
static const uint32_t spv_reduce[] =
#include "reduce.spv.h"
    ;
static const uint32_t spv_matmul[] =
#include "matmul.spv.h"
    ;
static const uint32_t spv_kron[] =
#include "kron.spv.h"
    ;
static const uint32_t spv_kron_linear[] =
#include "kron_linear.spv.h"
    ;
static const uint32_t spv_rows[] =
#include "rows.spv.h"
    ;
static const uint32_t spv_rope[] =
#include "rope.spv.h"
    ;
static const uint32_t spv_gather[] =
#include "gather.spv.h"
    ;

#define SPV(a) {a, sizeof a}
static const struct { const uint32_t *code; size_t size; } shader_code[PIPE_COUNT] = {
    [KG_VK_ELEMENTWISE] = SPV(spv_elementwise), [KG_VK_COPY] = SPV(spv_copy32),
    [KG_VK_CAST] = SPV(spv_cast),               [KG_VK_REDUCE] = SPV(spv_reduce),
    [KG_VK_MATMUL] = SPV(spv_matmul),           [KG_VK_KRON] = SPV(spv_kron),
    [KG_VK_KRON_LINEAR] = SPV(spv_kron_linear), [KG_VK_ROWS] = SPV(spv_rows),
    [KG_VK_ROPE] = SPV(spv_rope),               [KG_VK_GATHER] = SPV(spv_gather),
    [PIPE_COPY16] = SPV(spv_copy16),
};
static const bool shader_needs_16bit[PIPE_COUNT] = {[KG_VK_CAST] = true, [PIPE_COPY16] = true};

bool kg__vk_make_stream(vk_state *s)
{
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                  .queueFamilyIndex = s->family};
    VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(kg_vk_push)};
    VkPipelineLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr};
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (!kg__vk_ok(s, vkCreateCommandPool(s->dev, &pi, NULL, &s->pool), "vkCreateCommandPool") ||
        !kg__vk_ok(s, vkCreatePipelineLayout(s->dev, &li, NULL, &s->layout), "vkCreatePipelineLayout") ||
        !kg__vk_ok(s, vkCreatePipelineCache(s->dev, &ci, NULL, &s->cache), "vkCreatePipelineCache") ||
        !kg__vk_ok(s, vkCreateFence(s->dev, &fi, NULL, &s->fence), "vkCreateFence"))
        return false;
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = s->pool, .commandBufferCount = 1,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY};
    if (!kg__vk_ok(s, vkAllocateCommandBuffers(s->dev, &ai, &s->cmd), "vkAllocateCommandBuffers"))
        return false;
    if (s->props.limits.timestampComputeAndGraphics) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 2 * BATCH};
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
    s->status = kg__vk_mem_alloc(s, 32, true, POOL_PERSISTENT);
    if (!s->status)
        return kg_set_error(s->ctx, KG_ERR_NOMEM, "kg_ctx_new: out of device memory");
    memset(s->status->block->map, 0, 32);
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
        vkCmdResetQueryPool(s->cmd, s->queries, 0, 2 * BATCH);
    s->recording = true;
    s->n_dispatch = 0;
    s->n_reads = s->n_writes = 0;
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

/* Submit what is recorded and wait; then release what was waiting on it and read back the
 * status of bad indices. */
bool kg__vk_flush(void *state)
{
    vk_state *s = state;
    if (!s->recording)
        return true;
    /* Make every write visible to the host once the fence signals. */
    barrier(s, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    s->recording = false;
    bool ok = kg__vk_ok(s, vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &s->cmd};
    ok = ok && kg__vk_ok(s, vkQueueSubmit(s->queue, 1, &si, s->fence), "vkQueueSubmit") &&
         kg__vk_ok(s, vkWaitForFences(s->dev, 1, &s->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    vkResetFences(s->dev, 1, &s->fence);
    vkResetCommandBuffer(s->cmd, 0);
    if (ok && s->profiling && s->queries && s->n_dispatch > 0) {
        uint64_t ts[2 * BATCH];
        if (vkGetQueryPoolResults(s->dev, s->queries, 0, 2 * (uint32_t)s->n_dispatch, sizeof ts,
                                  ts, sizeof(uint64_t), VK_QUERY_RESULT_64_BIT |
                                  VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS)
            for (int i = 0; i < s->n_dispatch; i++)
                kg__profile_add(s->ctx, s->batch_ops[i], (double)(ts[2 * i + 1] - ts[2 * i]) *
                                s->props.limits.timestampPeriod * 1e-9);
    }
    for (size_t i = 0; i < s->n_deferred; i++)
        kg__vk_mem_release(s, s->deferred[i], false);
    s->n_deferred = 0;
    for (int i = 0; i < s->n_staging; i++)
        kg__vk_mem_release(s, s->staging[i], true);
    s->n_staging = 0;
    int32_t *st = (int32_t *)s->status->block->map;
    if (st[0]) {
        kg_set_error(s->ctx, KG_ERR_RANGE, "kg_%s: index %d at position %d is outside [0, %d) "
                 "(found by the Vulkan kernel)", (unsigned)st[1] < KG_OP_COUNT ?
                 kg_op_table[st[1]].name : "?", st[3], st[2], st[4]);
        memset(st, 0, 32);
    }
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
                           const kg_tensor *write)
{
    vk_range w = touched(write);
    bool need = overlaps(s->writes, s->n_writes, w) || overlaps(s->reads, s->n_reads, w) ||
                s->n_writes == MAX_RANGES || s->n_reads + n_reads > MAX_RANGES;
    for (int i = 0; i < n_reads && !need; i++)
        need = overlaps(s->writes, s->n_writes, touched(reads[i]));
    if (need)
        kg__vk_compute_barrier(s);
    for (int i = 0; i < n_reads; i++)
        s->reads[s->n_reads++] = touched(reads[i]);
    s->writes[s->n_writes++] = w;
}

static VkPipeline pipeline(vk_state *s, int which)
{
    if (s->pipes[which])
        return s->pipes[which];
    if (shader_needs_16bit[which] && !s->has_16bit) {
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
    return s->pipes[which];
}

bool kg_vk_dispatch(const kg_opcall *c, kg_vk_shader sh, const kg_vk_push *p, uint32_t gx,
                    uint32_t gy, uint32_t gz, kg_tensor *const *reads, int n_reads,
                    const kg_tensor *write)
{
    vk_state *s = c->ctx->be_state;
    if (gx == 0 || gy == 0 || gz == 0)
        return true; /* nothing to do (an empty tensor) */
    const uint32_t *lim = s->props.limits.maxComputeWorkGroupCount;
    if (gx > lim[0] || gy > lim[1] || gz > lim[2])
        return kg_set_error(c->ctx, KG_ERR_SHAPE, "kg_%s: a grid of %u×%u×%u workgroups exceeds "
                        "%s's %u×%u×%u", kg_op_table[c->op].name, gx, gy, gz,
                        s->props.deviceName, lim[0], lim[1], lim[2]);
    int which = sh == KG_VK_COPY && kg_dtype_size(write->dtype) == 2 ? PIPE_COPY16 : (int)sh;
    VkPipeline pipe = pipeline(s, which);
    if (!pipe || !kg__vk_begin_batch(s))
        return false;
    order_accesses(s, reads, n_reads, write);
    bool timed = s->profiling && s->queries;
    if (timed)
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s->queries,
                            2 * (uint32_t)s->n_dispatch);
    vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdPushConstants(s->cmd, s->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof *p, p);
    vkCmdDispatch(s->cmd, gx, gy, gz);
    if (timed)
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->queries,
                            2 * (uint32_t)s->n_dispatch + 1);
    s->batch_ops[s->n_dispatch++] = c->op;
    if (s->n_dispatch == BATCH)
        return kg__vk_flush(s);
    return true;
}

bool kg_vk_dispatch_1d(const kg_opcall *c, kg_vk_shader s, const kg_vk_push *p, uint64_t groups,
                       kg_tensor *const *reads, int n_reads, const kg_tensor *write)
{
    /* groups < 2^31 (vk_run refuses bigger tensors), so gy fits; kg_vk_dispatch checks it
     * against the device's grid like every other axis. */
    uint64_t maxx = kg_vk_max_groups(c->ctx, 0);
    uint64_t gx = groups < maxx ? groups : maxx, gy = gx ? (groups + gx - 1) / gx : 0;
    return kg_vk_dispatch(c, s, p, (uint32_t)gx, (uint32_t)gy, 1, reads, n_reads, write);
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
