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

/* ---- The backend's own state (backend.c, device.c, memory.c, stream.c) --------------------- */

enum {
    BLOCK_SIZE = 64 << 20, /* sub-allocated blocks; bigger tensors get their own */
    ALIGN = 256,
    BATCH = 256,           /* dispatches per submit */
    MAX_RANGES = 64,       /* hazard ranges tracked before a barrier is forced */
};

/* The 16-bit copy is a variant of KG_VK_COPY kept at the end. */
enum { PIPE_COPY16 = KG_VK_SHADER_COUNT, PIPE_COUNT };

typedef struct vk_range {
    VkDeviceSize offset, size;
} vk_range;

typedef struct vk_block {
    VkDeviceMemory mem;
    VkBuffer buf;
    VkDeviceAddress addr;
    char *map; /* persistently mapped when the memory is host-visible */
    VkDeviceSize size;
    vk_range *free; /* sorted by offset, coalesced */
    int n_free, cap_free;
    struct vk_block *next;
} vk_block;

/* A tensor's storage handle. */
typedef struct vk_alloc {
    vk_block *block;
    VkDeviceSize offset, size;
    int pool;
} vk_alloc;

/* Two pools of blocks: one for what outlives steps (parameters, gradients, optimizer state),
 * one for a step's activations, so a step's allocations and frees never fragment the memory
 * that parameters sit in. */
enum { POOL_STEP, POOL_PERSISTENT, POOL_COUNT };

typedef struct vk_state {
    kg_ctx *ctx;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkPhysicalDeviceProperties props;
    VkDevice dev;
    VkQueue queue;
    uint32_t family;
    bool has_16bit;
    uint32_t mem_type;     /* for tensors */
    bool host_visible;     /* tensors' memory can be mapped: no staging copies */
    uint32_t staging_type; /* host-visible, coherent */
    vk_block *blocks[POOL_COUNT];
    size_t current, peak;

    VkPipelineLayout layout;
    VkPipelineCache cache;
    VkPipeline pipes[PIPE_COUNT];
    uint32_t tile_bm, tile_bn, tile_bk, tile_t;

    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool recording;
    int n_dispatch;
    vk_range reads[MAX_RANGES], writes[MAX_RANGES]; /* device addresses since the last barrier */
    int n_reads, n_writes;
    vk_alloc **deferred; /* released once the work queued before them is done */
    size_t n_deferred, cap_deferred;
    vk_alloc *staging[BATCH]; /* staging buffers of the batch (non-host-visible memory) */
    int n_staging;

    vk_alloc *status; /* {hit, op, position, value, limit}: bad indices kernels met */

    VkQueryPool queries; /* timestamps, when profiling */
    bool profiling;
    kg_op batch_ops[BATCH];

    size_t barriers; /* compute barriers recorded, for tests of the hazard tracking */
    size_t validation_count;
    char validation_first[512];
    char device_name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE + 32];
} vk_state;

/* A failed VkResult becomes the context's error (out of memory → KG_ERR_NOMEM). */
bool kg__vk_ok(vk_state *s, VkResult r, const char *what);

/* device.c: the instance (validation layer on with KG_VALIDATION=1; s may be NULL for a
 * listing), the device choice and its creation. */
typedef struct dev_caps {
    bool address, int64, storage16, int16;
    uint32_t subgroup;
} dev_caps;
VkResult kg__vk_make_instance(vk_state *s, VkInstance *out);
dev_caps kg__vk_query_caps(VkPhysicalDevice p);
const char *kg__vk_type_name(VkPhysicalDeviceType t);
bool kg__vk_pick_device(vk_state *s);
bool kg__vk_make_device(vk_state *s);

/* memory.c: blocks sub-allocated to tensors. staging: a host-visible buffer of its own. */
int kg__vk_memory_type(VkPhysicalDevice phys, uint32_t bits, VkMemoryPropertyFlags want);
vk_alloc *kg__vk_mem_alloc(vk_state *s, size_t bytes, bool staging, int pool);
void kg__vk_mem_release(vk_state *s, vk_alloc *a, bool staging);
void kg__vk_mem_destroy(vk_state *s); /* every block, at the end */

/* stream.c: command recording, barriers, submission. */
bool kg__vk_make_stream(vk_state *s);
bool kg__vk_begin_batch(vk_state *s);
void kg__vk_compute_barrier(vk_state *s);
bool kg__vk_flush(void *state); /* submit, wait, release deferred memory, read the status */

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
/* The device's largest workgroup count along axis 0, 1 or 2 of the grid. */
uint32_t kg_vk_max_groups(const kg_ctx *ctx, int axis);
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
/* Whether the Khronos validation layer watches this context (KG_VALIDATION=1 and installed). */
bool kg__vk_validating(const kg_ctx *ctx);
/* Validation messages seen by this context's instance (tests fail on any). */
size_t kg__vk_validation_count(const kg_ctx *ctx, const char **first);

#endif
