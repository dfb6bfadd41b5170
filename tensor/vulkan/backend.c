/* backend.c — the Vulkan backend: instance and device, memory blocks sub-allocated to tensors,
 * pipelines made on first use, and a stream of dispatches recorded into a command buffer,
 * submitted in batches, with a barrier only where a dispatch touches memory an earlier,
 * unsynchronized dispatch wrote (or writes what one read).
 */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
/* The 16-bit copy is a variant of KG_VK_COPY kept at the end. */
enum { PIPE_COPY16 = KG_VK_SHADER_COUNT, PIPE_COUNT };
static const struct { const uint32_t *code; size_t size; } shader_code[PIPE_COUNT] = {
    [KG_VK_ELEMENTWISE] = SPV(spv_elementwise), [KG_VK_COPY] = SPV(spv_copy32),
    [KG_VK_CAST] = SPV(spv_cast),               [KG_VK_REDUCE] = SPV(spv_reduce),
    [KG_VK_MATMUL] = SPV(spv_matmul),           [KG_VK_KRON] = SPV(spv_kron),
    [KG_VK_KRON_LINEAR] = SPV(spv_kron_linear), [KG_VK_ROWS] = SPV(spv_rows),
    [KG_VK_ROPE] = SPV(spv_rope),               [KG_VK_GATHER] = SPV(spv_gather),
    [PIPE_COPY16] = SPV(spv_copy16),
};
static const bool shader_needs_16bit[PIPE_COUNT] = {[KG_VK_CAST] = true, [PIPE_COPY16] = true};

enum {
    BLOCK_SIZE = 64 << 20, /* sub-allocated blocks; bigger tensors get their own */
    ALIGN = 256,
    BATCH = 256,           /* dispatches per submit */
    MAX_RANGES = 64,       /* hazard ranges tracked before a barrier is forced */
};

/* ---- Memory ----------------------------------------------------------------------------- */

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

static bool vk_ok(vk_state *s, VkResult r, const char *what)
{
    if (r == VK_SUCCESS)
        return true;
    kg_status st = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY
                       ? KG_ERR_NOMEM : KG_ERR_DEVICE;
    return kg__fail(s->ctx, st, "vulkan: %s failed (VkResult %d)", what, (int)r);
}

static int find_memory_type(VkPhysicalDevice phys, uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(phys, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

static vk_block *block_new(vk_state *s, VkDeviceSize size, uint32_t type, bool map)
{
    vk_block *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    if (vkCreateBuffer(s->dev, &bi, NULL, &b->buf) != VK_SUCCESS) {
        free(b);
        return NULL;
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(s->dev, b->buf, &req);
    VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                       .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &flags,
                               .allocationSize = req.size, .memoryTypeIndex = type};
    if (!(req.memoryTypeBits & (1u << type)) ||
        vkAllocateMemory(s->dev, &ai, NULL, &b->mem) != VK_SUCCESS) {
        vkDestroyBuffer(s->dev, b->buf, NULL);
        free(b);
        return NULL;
    }
    vkBindBufferMemory(s->dev, b->buf, b->mem, 0);
    if (map && vkMapMemory(s->dev, b->mem, 0, VK_WHOLE_SIZE, 0, (void **)&b->map) != VK_SUCCESS) {
        vkDestroyBuffer(s->dev, b->buf, NULL);
        vkFreeMemory(s->dev, b->mem, NULL);
        free(b);
        return NULL;
    }
    VkBufferDeviceAddressInfo da = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO,
                                    .buffer = b->buf};
    b->addr = vkGetBufferDeviceAddress(s->dev, &da);
    b->size = size;
    b->free = malloc(sizeof *b->free * 8);
    b->cap_free = 8;
    b->free[0] = (vk_range){0, size};
    b->n_free = 1;
    return b;
}

static void block_free(vk_state *s, vk_block *b)
{
    vkDestroyBuffer(s->dev, b->buf, NULL);
    vkFreeMemory(s->dev, b->mem, NULL);
    free(b->free);
    free(b);
}

/* First fit inside one block. */
static bool block_take(vk_block *b, VkDeviceSize size, VkDeviceSize *offset)
{
    for (int i = 0; i < b->n_free; i++) {
        vk_range *r = &b->free[i];
        if (r->size < size)
            continue;
        *offset = r->offset;
        r->offset += size;
        r->size -= size;
        if (r->size == 0) {
            memmove(r, r + 1, sizeof *r * (size_t)(b->n_free - i - 1));
            b->n_free--;
        }
        return true;
    }
    return false;
}

static void block_give(vk_block *b, VkDeviceSize offset, VkDeviceSize size)
{
    int i = 0;
    while (i < b->n_free && b->free[i].offset < offset)
        i++;
    bool merge_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
    bool merge_next = i < b->n_free && offset + size == b->free[i].offset;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
        b->n_free--;
    } else if (merge_prev) {
        b->free[i - 1].size += size;
    } else if (merge_next) {
        b->free[i].offset = offset;
        b->free[i].size += size;
    } else {
        if (b->n_free == b->cap_free) {
            /* Growing can fail; then the range is lost to the block until it is freed (a leak
             * of address space, not of correctness). */
            vk_range *p = realloc(b->free, sizeof *p * (size_t)b->cap_free * 2);
            if (!p)
                return;
            b->free = p;
            b->cap_free *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], sizeof *b->free * (size_t)(b->n_free - i));
        b->free[i] = (vk_range){offset, size};
        b->n_free++;
    }
}

static vk_alloc *mem_alloc(vk_state *s, size_t bytes, bool staging, int pool)
{
    VkDeviceSize size = ((VkDeviceSize)bytes + ALIGN - 1) & ~(VkDeviceSize)(ALIGN - 1);
    vk_alloc *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->pool = pool;
    if (!staging) {
        for (vk_block *b = s->blocks[pool]; b; b = b->next)
            if (block_take(b, size, &a->offset)) {
                a->block = b;
                break;
            }
    }
    if (!a->block) {
        VkDeviceSize bs = staging || size > BLOCK_SIZE ? size : BLOCK_SIZE;
        vk_block *b = block_new(s, bs, staging ? s->staging_type : s->mem_type,
                                staging || s->host_visible);
        if (!b) {
            free(a);
            return NULL;
        }
        if (!staging) {
            b->next = s->blocks[pool];
            s->blocks[pool] = b;
        }
        block_take(b, size, &a->offset);
        a->block = b;
    }
    a->size = size;
    if (!staging) {
        s->current += size;
        if (s->current > s->peak)
            s->peak = s->current;
    }
    return a;
}

/* Return an allocation to its block; a block of its own (a big tensor) goes back at once. */
static void mem_release_now(vk_state *s, vk_alloc *a, bool staging)
{
    vk_block *b = a->block;
    if (staging) {
        block_free(s, b);
    } else {
        s->current -= a->size;
        block_give(b, a->offset, a->size);
        if (b->size > BLOCK_SIZE && b->n_free == 1 && b->free[0].size == b->size) {
            vk_block **p = &s->blocks[a->pool];
            while (*p != b)
                p = &(*p)->next;
            *p = b->next;
            block_free(s, b);
        }
    }
    free(a);
}

/* ---- Validation messages ------------------------------------------------------------------ */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT type,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)severity;
    (void)type;
    vk_state *s = user;
    if (s->validation_count++ == 0)
        snprintf(s->validation_first, sizeof s->validation_first, "%s",
                 data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

size_t kg__vk_barrier_count(const kg_ctx *ctx)
{
    return ((const vk_state *)ctx->be_state)->barriers;
}

size_t kg__vk_validation_count(const kg_ctx *ctx, const char **first)
{
    if (!ctx->be || strcmp(ctx->be->name, "vulkan") != 0)
        return 0;
    const vk_state *s = ctx->be_state;
    if (first)
        *first = s->validation_first;
    return s->validation_count;
}

static bool layer_available(const char *name)
{
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, NULL);
    VkLayerProperties *lp = calloc(n ? n : 1, sizeof *lp);
    bool found = false;
    if (lp && vkEnumerateInstanceLayerProperties(&n, lp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(lp[i].layerName, name) == 0;
    free(lp);
    return found;
}

/* ---- Instance and device ------------------------------------------------------------------ */

static const char *const validation_layer = "VK_LAYER_KHRONOS_validation";

/* KG_VALIDATION=1 turns the Khronos validation layer on (the tests do). */
static VkResult make_instance(vk_state *s, VkInstance *out)
{
    const char *env = getenv("KG_VALIDATION");
    bool validate = s && env && strcmp(env, "1") == 0 && layer_available(validation_layer);
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "krongrad", .pEngineName = "krongrad",
                             .apiVersion = VK_API_VERSION_1_2};
    const char *ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_validation, .pUserData = s};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .pApplicationInfo = &app};
    if (validate) {
        ci.enabledLayerCount = 1;
        ci.ppEnabledLayerNames = &validation_layer;
        ci.enabledExtensionCount = 1;
        ci.ppEnabledExtensionNames = &ext;
        ci.pNext = &dbg;
    }
    VkResult r = vkCreateInstance(&ci, NULL, out);
    if (r == VK_SUCCESS && validate) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
        if (create)
            create(*out, &dbg, NULL, &s->messenger);
    }
    return r;
}

/* Features the backend needs (must) and uses when present (16-bit storage). */
typedef struct dev_caps {
    bool address, int64, storage16, int16;
    uint32_t subgroup;
} dev_caps;

static dev_caps query_caps(VkPhysicalDevice p)
{
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &f11};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 pr = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(p, &props);
    dev_caps c = {0};
    if (props.apiVersion < VK_API_VERSION_1_2)
        return c;
    vkGetPhysicalDeviceFeatures2(p, &f);
    vkGetPhysicalDeviceProperties2(p, &pr);
    c.address = f12.bufferDeviceAddress;
    c.int64 = f.features.shaderInt64;
    c.storage16 = f11.storageBuffer16BitAccess;
    c.int16 = f.features.shaderInt16;
    c.subgroup = sg.subgroupSize;
    return c;
}

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static const char *type_name(VkPhysicalDeviceType t)
{
    static const char *const names[] = {"other", "integrated GPU", "discrete GPU",
                                        "virtual GPU", "CPU"};
    return (unsigned)t < 5 ? names[t] : "other";
}

/* KG_DEVICE: an index, or a substring of the device name. Otherwise discrete, then
 * integrated, then virtual, then CPU (lavapipe). Devices lacking a must-have feature are
 * passed over. */
static bool pick_device(vk_state *s)
{
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(s->instance, &n, NULL);
    if (n == 0)
        return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: no Vulkan device found (install a "
                        "GPU driver, or mesa-vulkan-drivers for lavapipe on the CPU)");
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    if (!devs)
        return kg__fail(s->ctx, KG_ERR_NOMEM, "kg_ctx_new: out of host memory");
    vkEnumeratePhysicalDevices(s->instance, &n, devs);
    const char *want = getenv("KG_DEVICE");
    int best = -1, best_rank = 99;
    char *end = NULL;
    long idx = want && *want ? strtol(want, &end, 10) : -1;
    bool by_index = want && *want && end && *end == 0;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(devs[i], &p);
        dev_caps c = query_caps(devs[i]);
        bool usable = c.address && c.int64;
        if (by_index || (want && *want)) {
            bool match = by_index ? (long)i == idx : strstr(p.deviceName, want) != NULL;
            if (match && !usable) {
                free(devs);
                return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: KG_DEVICE=%s picks %s, "
                                "which lacks Vulkan 1.2 bufferDeviceAddress or shaderInt64",
                                want, p.deviceName);
            }
            if (match) {
                best = (int)i;
                break;
            }
            continue;
        }
        if (usable && type_rank(p.deviceType) < best_rank) {
            best_rank = type_rank(p.deviceType);
            best = (int)i;
        }
    }
    if (best < 0) {
        free(devs);
        if (want && *want)
            return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: KG_DEVICE=%s matches none of "
                            "the %u Vulkan devices (see krongrad info)", want, n);
        return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: none of the %u Vulkan devices has "
                        "Vulkan 1.2 with bufferDeviceAddress and shaderInt64", n);
    }
    s->phys = devs[best];
    free(devs);
    vkGetPhysicalDeviceProperties(s->phys, &s->props);
    return true;
}

static bool make_device(vk_state *s)
{
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(s->phys, &nq, NULL);
    VkQueueFamilyProperties qp[16];
    nq = nq > 16 ? 16 : nq;
    vkGetPhysicalDeviceQueueFamilyProperties(s->phys, &nq, qp);
    s->family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && s->family == UINT32_MAX; i++)
        if (qp[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            s->family = i;
    if (s->family == UINT32_MAX)
        return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: %s has no compute queue",
                        s->props.deviceName);
    dev_caps c = query_caps(s->phys);
    s->has_16bit = c.storage16 && c.int16;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = s->family, .queueCount = 1,
                                  .pQueuePriorities = &prio};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .storageBuffer16BitAccess = s->has_16bit};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &f11, .bufferDeviceAddress = VK_TRUE};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                   .pNext = &f12};
    f.features.shaderInt64 = VK_TRUE;
    f.features.shaderInt16 = s->has_16bit;
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f,
                             .queueCreateInfoCount = 1, .pQueueCreateInfos = &qi};
    if (!vk_ok(s, vkCreateDevice(s->phys, &di, NULL, &s->dev), "vkCreateDevice"))
        return false;
    vkGetDeviceQueue(s->dev, s->family, 0, &s->queue);

    /* Memory for tensors: device-local and mappable when the device offers it in a large heap
     * (lavapipe, integrated GPUs, resizable BAR); else device-local with staging copies. */
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(s->phys, &mp);
    VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                 VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int both = find_memory_type(s->phys, ~0u, local | host);
    int dl = find_memory_type(s->phys, ~0u, local);
    int hv = find_memory_type(s->phys, ~0u, host);
    bool big = both >= 0 && mp.memoryHeaps[mp.memoryTypes[both].heapIndex].size >= (1ull << 30);
    if (hv < 0 || (dl < 0 && both < 0))
        return kg__fail(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: %s offers no usable memory type",
                        s->props.deviceName);
    /* KG_VK_STAGING=1 takes the staging path even where mapping would do (to test it). */
    const char *staging = getenv("KG_VK_STAGING");
    bool force_staging = staging && strcmp(staging, "1") == 0 && dl >= 0;
    s->host_visible = (big || dl < 0) && !force_staging;
    s->mem_type = (uint32_t)(s->host_visible ? both : dl);
    s->staging_type = (uint32_t)hv;
    return true;
}

static bool make_stream(vk_state *s)
{
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                  .queueFamilyIndex = s->family};
    VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(kg_vk_push)};
    VkPipelineLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr};
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (!vk_ok(s, vkCreateCommandPool(s->dev, &pi, NULL, &s->pool), "vkCreateCommandPool") ||
        !vk_ok(s, vkCreatePipelineLayout(s->dev, &li, NULL, &s->layout), "vkCreatePipelineLayout") ||
        !vk_ok(s, vkCreatePipelineCache(s->dev, &ci, NULL, &s->cache), "vkCreatePipelineCache") ||
        !vk_ok(s, vkCreateFence(s->dev, &fi, NULL, &s->fence), "vkCreateFence"))
        return false;
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = s->pool, .commandBufferCount = 1,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY};
    if (!vk_ok(s, vkAllocateCommandBuffers(s->dev, &ai, &s->cmd), "vkAllocateCommandBuffers"))
        return false;
    if (s->props.limits.timestampComputeAndGraphics) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 2 * BATCH};
        vkCreateQueryPool(s->dev, &qi, NULL, &s->queries); /* profiling is off without it */
    }
    /* Matmul tiles from the device's limits: 64×64 (256 invocations, 8 KiB of shared memory)
     * where it fits, else 32×32 (64 invocations). */
    bool big = s->props.limits.maxComputeWorkGroupInvocations >= 256 &&
               s->props.limits.maxComputeSharedMemorySize >= 16 * 1024;
    s->tile_bm = s->tile_bn = big ? 64 : 32;
    s->tile_bk = 16;
    s->tile_t = 4;
    s->status = mem_alloc(s, 32, true, POOL_PERSISTENT);
    if (!s->status)
        return kg__fail(s->ctx, KG_ERR_NOMEM, "kg_ctx_new: out of device memory");
    memset(s->status->block->map, 0, 32);
    return true;
}

static void vk_destroy(void *state);

static bool vk_init(kg_ctx *ctx, void **state)
{
    vk_state *s = calloc(1, sizeof *s);
    if (!s)
        return kg__fail(ctx, KG_ERR_NOMEM, "kg_ctx_new: out of host memory");
    s->ctx = ctx;
    *state = s;
    VkResult r = make_instance(s, &s->instance);
    if (r != VK_SUCCESS) {
        kg__fail(ctx, KG_ERR_DEVICE, "kg_ctx_new: no Vulkan driver could start (VkResult %d); "
                 "install libvulkan1 and a driver (mesa-vulkan-drivers gives lavapipe)", (int)r);
        s->instance = VK_NULL_HANDLE;
    } else if (pick_device(s) && make_device(s) && make_stream(s)) {
        snprintf(s->device_name, sizeof s->device_name, "%s (%s)", s->props.deviceName,
                 type_name(s->props.deviceType));
        return true;
    }
    vk_destroy(s);
    *state = NULL;
    return false;
}

/* ---- The stream ------------------------------------------------------------------------- */

static bool begin_batch(vk_state *s)
{
    if (s->recording)
        return true;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (!vk_ok(s, vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer"))
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

static void compute_barrier(vk_state *s)
{
    s->barriers++;
    barrier(s, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
}

/* Submit what is recorded and wait; then release what was waiting on it and read back the
 * status of bad indices. */
static bool vk_flush(void *state)
{
    vk_state *s = state;
    if (!s->recording)
        return true;
    /* Make every write visible to the host once the fence signals. */
    barrier(s, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    s->recording = false;
    bool ok = vk_ok(s, vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &s->cmd};
    ok = ok && vk_ok(s, vkQueueSubmit(s->queue, 1, &si, s->fence), "vkQueueSubmit") &&
         vk_ok(s, vkWaitForFences(s->dev, 1, &s->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
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
        mem_release_now(s, s->deferred[i], false);
    s->n_deferred = 0;
    for (int i = 0; i < s->n_staging; i++)
        mem_release_now(s, s->staging[i], true);
    s->n_staging = 0;
    int32_t *st = (int32_t *)s->status->block->map;
    if (st[0]) {
        kg__fail(s->ctx, KG_ERR_RANGE, "kg_%s: index %d at position %d is outside [0, %d) "
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
        compute_barrier(s);
    for (int i = 0; i < n_reads; i++)
        s->reads[s->n_reads++] = touched(reads[i]);
    s->writes[s->n_writes++] = w;
}

static VkPipeline pipeline(vk_state *s, int which)
{
    if (s->pipes[which])
        return s->pipes[which];
    if (shader_needs_16bit[which] && !s->has_16bit) {
        kg__fail(s->ctx, KG_ERR_DEVICE, "vulkan: %s lacks 16-bit storage, which f16 and bf16 "
                 "tensors need on it", s->props.deviceName);
        return VK_NULL_HANDLE;
    }
    VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                   .codeSize = shader_code[which].size,
                                   .pCode = shader_code[which].code};
    VkShaderModule mod;
    if (!vk_ok(s, vkCreateShaderModule(s->dev, &mi, NULL, &mod), "vkCreateShaderModule"))
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
    if (!vk_ok(s, r, "vkCreateComputePipelines"))
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
    int which = sh == KG_VK_COPY && kg_dtype_size(write->dtype) == 2 ? PIPE_COPY16 : (int)sh;
    VkPipeline pipe = pipeline(s, which);
    if (!pipe || !begin_batch(s))
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
        return vk_flush(s);
    return true;
}

bool kg_vk_dispatch_1d(const kg_opcall *c, kg_vk_shader s, const kg_vk_push *p, uint64_t groups,
                       kg_tensor *const *reads, int n_reads, const kg_tensor *write)
{
    const vk_state *st = c->ctx->be_state;
    uint64_t maxx = st->props.limits.maxComputeWorkGroupCount[0];
    uint64_t gx = groups < maxx ? groups : maxx, gy = gx ? (groups + gx - 1) / gx : 0;
    if (gy > st->props.limits.maxComputeWorkGroupCount[1])
        return kg__fail(c->ctx, KG_ERR_RANGE, "kg_%s: %llu workgroups exceed the device's grid",
                        kg_op_table[c->op].name, (unsigned long long)groups);
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

void kg_vk_matmul_tile(const kg_ctx *ctx, uint32_t *bm, uint32_t *bn)
{
    const vk_state *s = ctx->be_state;
    *bm = s->tile_bm;
    *bn = s->tile_bn;
}

/* ---- The backend interface --------------------------------------------------------------- */

static void *vk_alloc_fn(void *state, size_t bytes, bool persistent)
{
    vk_state *s = state;
    int pool = persistent ? POOL_PERSISTENT : POOL_STEP;
    vk_alloc *a = mem_alloc(s, bytes, false, pool);
    if (!a && s->recording) { /* memory may be waiting on queued work: finish it and retry */
        vk_flush(s);
        a = mem_alloc(s, bytes, false, pool);
    }
    return a;
}

static void vk_release(void *state, void *handle, size_t bytes)
{
    (void)bytes;
    vk_state *s = state;
    if (!s->recording) {
        mem_release_now(s, handle, false);
        return;
    }
    if (s->n_deferred == s->cap_deferred) {
        size_t cap = s->cap_deferred ? 2 * s->cap_deferred : 64;
        vk_alloc **p = realloc(s->deferred, cap * sizeof *p);
        if (!p) { /* cannot defer: wait for the queued work instead */
            vk_flush(s);
            mem_release_now(s, handle, false);
            return;
        }
        s->deferred = p;
        s->cap_deferred = cap;
    }
    s->deferred[s->n_deferred++] = handle;
}

static bool vk_upload(void *state, void *handle, size_t offset, const void *src, size_t bytes)
{
    vk_state *s = state;
    vk_alloc *a = handle;
    if (s->host_visible) {
        /* A fresh allocation: no queued work uses it (released memory waits for the flush). */
        memcpy(a->block->map + a->offset + offset, src, bytes);
        return true;
    }
    if (s->n_staging == BATCH && !vk_flush(s))
        return false;
    vk_alloc *st = mem_alloc(s, bytes, true, POOL_STEP);
    if (!st || !begin_batch(s))
        return st ? false : kg__fail(s->ctx, KG_ERR_NOMEM, "vulkan: out of staging memory");
    memcpy(st->block->map, src, bytes);
    compute_barrier(s);
    VkBufferCopy region = {0, a->offset + offset, bytes};
    vkCmdCopyBuffer(s->cmd, st->block->buf, a->block->buf, 1, &region);
    compute_barrier(s);
    s->staging[s->n_staging++] = st;
    return true;
}

static bool vk_download(void *state, void *handle, size_t offset, void *dst, size_t bytes)
{
    vk_state *s = state;
    vk_alloc *a = handle;
    if (s->host_visible) {
        if (!vk_flush(s))
            return false;
        memcpy(dst, a->block->map + a->offset + offset, bytes);
        return true;
    }
    vk_alloc *st = mem_alloc(s, bytes, true, POOL_STEP);
    if (!st || !begin_batch(s))
        return false;
    compute_barrier(s);
    VkBufferCopy region = {a->offset + offset, 0, bytes};
    vkCmdCopyBuffer(s->cmd, a->block->buf, st->block->buf, 1, &region);
    bool ok = vk_flush(s);
    if (ok)
        memcpy(dst, st->block->map, bytes);
    mem_release_now(s, st, true);
    return ok;
}

static bool vk_run(const kg_opcall *c)
{
    kg_kernel_fn k = kg_op_table[c->op].vulkan;
    if (!k)
        return kg__fail(c->ctx, KG_ERR_DEVICE, "kg_%s has no Vulkan kernel",
                        kg_op_table[c->op].name);
    /* Shaders index with 32-bit signed integers. */
    for (int i = -1; i < c->n_in; i++) {
        const kg_tensor *t = i < 0 ? c->out : c->in[i];
        if (kg_tensor_numel(t) >= INT32_MAX)
            return kg__fail(c->ctx, KG_ERR_SHAPE, "kg_%s: %s has 2^31 elements or more, which "
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

static void vk_profile(void *state, bool on)
{
    vk_state *s = state;
    vk_flush(s); /* timestamps are reset per batch: switch between batches */
    s->profiling = on && s->queries;
}

static void vk_destroy(void *state)
{
    vk_state *s = state;
    if (!s)
        return;
    if (s->dev) {
        vk_flush(s);
        vkDeviceWaitIdle(s->dev);
        if (s->status)
            mem_release_now(s, s->status, true);
        for (int i = 0; i < PIPE_COUNT; i++)
            if (s->pipes[i])
                vkDestroyPipeline(s->dev, s->pipes[i], NULL);
        for (int pool = 0; pool < POOL_COUNT; pool++)
            while (s->blocks[pool]) {
                vk_block *b = s->blocks[pool];
                s->blocks[pool] = b->next;
                block_free(s, b);
            }
        if (s->queries)
            vkDestroyQueryPool(s->dev, s->queries, NULL);
        vkDestroyFence(s->dev, s->fence, NULL);
        vkDestroyCommandPool(s->dev, s->pool, NULL);
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
    .flush = vk_flush,
    .memory = vk_memory,
    .reset_peak = vk_reset_peak,
    .device = vk_device,
    .profile = vk_profile,
};

/* ---- Device listing, for `krongrad info` --------------------------------------------------- */

size_t kg_vulkan_devices(char *buf, size_t cap)
{
    size_t n = 0;
#define OUT(...) (n += (size_t)snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__))
    VkInstance inst;
    if (make_instance(NULL, &inst) != VK_SUCCESS) {
        OUT("  no Vulkan driver could start (install libvulkan1 and mesa-vulkan-drivers)\n");
        return n;
    }
    uint32_t count = 0;
    vkEnumeratePhysicalDevices(inst, &count, NULL);
    VkPhysicalDevice devs[16];
    count = count > 16 ? 16 : count;
    vkEnumeratePhysicalDevices(inst, &count, devs);
    if (count == 0)
        OUT("  no Vulkan device\n");
    for (uint32_t i = 0; i < count; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(devs[i], &p);
        VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &drv};
        vkGetPhysicalDeviceProperties2(devs[i], &p2);
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(devs[i], &mp);
        dev_caps c = query_caps(devs[i]);
        OUT("  [%u] %s — %s, Vulkan %u.%u.%u\n", i, p.deviceName, type_name(p.deviceType),
            VK_API_VERSION_MAJOR(p.apiVersion), VK_API_VERSION_MINOR(p.apiVersion),
            VK_API_VERSION_PATCH(p.apiVersion));
        OUT("      driver             %s %s\n", drv.driverName, drv.driverInfo);
        for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
            OUT("      memory heap %u      %.2f GiB%s\n", h,
                (double)mp.memoryHeaps[h].size / (1 << 30),
                mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT ? " device-local" : "");
        OUT("      subgroup size      %u\n", c.subgroup);
        OUT("      shared memory      %u bytes per workgroup\n", p.limits.maxComputeSharedMemorySize);
        OUT("      max storage buffer %u bytes per binding (not a limit here: tensors are "
            "reached by address)\n", p.limits.maxStorageBufferRange);
        OUT("      features used      bufferDeviceAddress %s, shaderInt64 %s, 16-bit storage %s, "
            "timestamps %s\n", c.address ? "yes" : "NO", c.int64 ? "yes" : "NO",
            c.storage16 && c.int16 ? "yes" : "no (f16/bf16 unavailable)",
            p.limits.timestampComputeAndGraphics ? "yes" : "no");
        if (!c.address || !c.int64)
            OUT("      unusable by krongrad: it lacks a must-have feature above\n");
    }
    vkDestroyInstance(inst, NULL);
    return n;
#undef OUT
}
