/* memory.c — device memory for tensors: 64 MiB blocks (bigger tensors get their own) in two
 * pools, sub-allocated first-fit with coalescing, each block one VkBuffer whose device address
 * kernels use. Staging buffers for devices whose memory the host cannot map.
 */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kg__vk_memory_type(VkPhysicalDevice phys, uint32_t bits, VkMemoryPropertyFlags want)
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
    vk_block *b = kg__calloc(1, sizeof *b);
    vk_range *ranges = kg__malloc(sizeof *ranges * 8);
    if (!b || !ranges) {
        free(b);
        free(ranges);
        return NULL;
    }
    b->free = ranges;
    b->cap_free = 8;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    if (vkCreateBuffer(s->dev, &bi, NULL, &b->buf) != VK_SUCCESS) {
        free(b->free);
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
        free(b->free);
        free(b);
        return NULL;
    }
    vkBindBufferMemory(s->dev, b->buf, b->mem, 0);
    if (map && vkMapMemory(s->dev, b->mem, 0, VK_WHOLE_SIZE, 0, (void **)&b->map) != VK_SUCCESS) {
        vkDestroyBuffer(s->dev, b->buf, NULL);
        vkFreeMemory(s->dev, b->mem, NULL);
        free(b->free);
        free(b);
        return NULL;
    }
    VkBufferDeviceAddressInfo da = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO,
                                    .buffer = b->buf};
    b->addr = vkGetBufferDeviceAddress(s->dev, &da);
    b->size = size;
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
            vk_range *p = kg__realloc(b->free, sizeof *p * (size_t)b->cap_free * 2);
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

vk_alloc *kg__vk_mem_alloc(vk_state *s, size_t bytes, bool staging, int pool)
{
    /* Never 0 bytes (an empty tensor): Vulkan has no empty buffer, and every allocation keeps
     * an address of its own. */
    VkDeviceSize size = bytes ? ((VkDeviceSize)bytes + ALIGN - 1) & ~(VkDeviceSize)(ALIGN - 1)
                              : ALIGN;
    vk_alloc *a = kg__pool_take(&s->host, sizeof *a);
    if (!a)
        return NULL;
    *a = (vk_alloc){.pool = pool};
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
            kg__pool_give(&s->host, a, sizeof *a);
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
    if (!staging && pool != POOL_INTERNAL) {
        s->current += size;
        if (s->current > s->peak)
            s->peak = s->current;
    }
    return a;
}

/* Return an allocation to its block; a block of its own (a big tensor) goes back at once. */
void kg__vk_mem_release(vk_state *s, vk_alloc *a, bool staging)
{
    vk_block *b = a->block;
    if (staging) {
        block_free(s, b);
    } else {
        if (a->pool != POOL_INTERNAL)
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
    kg__pool_give(&s->host, a, sizeof *a);
}

void kg__vk_mem_destroy(vk_state *s)
{
    for (int pool = 0; pool < POOL_COUNT; pool++)
        while (s->blocks[pool]) {
            vk_block *b = s->blocks[pool];
            s->blocks[pool] = b->next;
            block_free(s, b);
        }
    kg__pool_drop(&s->host);
}
