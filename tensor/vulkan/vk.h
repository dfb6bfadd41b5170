/* vk.h — the Vulkan backend's internals shared by its files: device state, memory blocks,
 * pipelines, and the dispatch call that op kernels (vulkan/ops.c) use.
 *
 * Tensors are reached by buffer device address: a kernel's push constants carry the 64-bit
 * address of each tensor's first element, so there are no descriptor sets and no binding whose
 * size could exceed maxStorageBufferRange (128 MiB on lavapipe).
 */
#ifndef KG_VK_H
#define KG_VK_H

#include "../internal.h"

#include <vulkan/vulkan.h>

typedef enum kg_vk_shader {
    KG_VK_ELEMENTWISE,
    KG_VK_COPY,
    KG_VK_CAST,
    KG_VK_REDUCE,
    KG_VK_MATMUL,
    KG_VK_KRON,
    KG_VK_KRON_LINEAR,
    KG_VK_ROWS,
    KG_VK_ROPE,
    KG_VK_GATHER,
    KG_VK_SHADER_COUNT
} kg_vk_shader;

/* The push-constant block every shader declares (shaders/common.glsl): 128 bytes, the minimum
 * every Vulkan device guarantees. */
typedef struct kg_vk_push {
    uint64_t addr[4];
    uint32_t u[24];
} kg_vk_push;

static inline uint32_t kg_vk_fbits(float f)
{
    union { float f; uint32_t u; } v = {.f = f};
    return v.u;
}

/* Record one dispatch of shader s with push constants p over (gx, gy, gz) workgroups. reads and
 * write name the tensors it touches, so a barrier goes in only where this dispatch depends on
 * an earlier unsynchronized one. */
bool kg_vk_dispatch(const kg_opcall *c, kg_vk_shader s, const kg_vk_push *p, uint32_t gx,
                    uint32_t gy, uint32_t gz, kg_tensor *const *reads, int n_reads,
                    const kg_tensor *write);
/* The same over `groups` workgroups laid out 1-D (folded into y beyond the x limit). */
bool kg_vk_dispatch_1d(const kg_opcall *c, kg_vk_shader s, const kg_vk_push *p, uint64_t groups,
                       kg_tensor *const *reads, int n_reads, const kg_tensor *write);
/* Device address of the tensor's first element. */
uint64_t kg_vk_addr(const kg_tensor *t);
/* The device address of the status buffer that kernels report bad indices into. */
uint64_t kg_vk_status_addr(const kg_ctx *ctx);
/* The matmul tile the device got (rows, cols per workgroup). */
void kg_vk_matmul_tile(const kg_ctx *ctx, uint32_t *bm, uint32_t *bn);

/* Per-op Vulkan kernels, named in the op table. */
bool kg__vk_copy(const kg_opcall *c);
bool kg__vk_cast(const kg_opcall *c);
bool kg__vk_elementwise(const kg_opcall *c);
bool kg__vk_reduce(const kg_opcall *c);
bool kg__vk_matmul(const kg_opcall *c);
bool kg__vk_kron(const kg_opcall *c);
bool kg__vk_structured_linear(const kg_opcall *c);
bool kg__vk_rows(const kg_opcall *c);
bool kg__vk_rope(const kg_opcall *c);
bool kg__vk_gather(const kg_opcall *c);
bool kg__vk_concat(const kg_opcall *c);

/* Compute barriers recorded so far (tests check that independent dispatches get none). */
size_t kg__vk_barrier_count(const kg_ctx *ctx);
/* Validation messages seen by this context's instance (tests fail on any). */
size_t kg__vk_validation_count(const kg_ctx *ctx, const char **first);

#endif
