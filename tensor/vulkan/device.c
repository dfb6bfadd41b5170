/* device.c — the Vulkan instance (with the validation layer when asked), the device choice
 * (discrete, integrated, virtual, CPU; KG_DEVICE overrides), device creation with the features
 * krongrad uses, and the device listing of `krongrad info`.
 */
#include "vk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool kg__vk_ok(vk_state *s, VkResult r, const char *what)
{
    if (r == VK_SUCCESS)
        return true;
    kg_status st = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY
                       ? KG_ERR_NOMEM : KG_ERR_DEVICE;
    return kg_set_error(s->ctx, st, "vulkan: %s failed (VkResult %d)", what, (int)r);
}

/* ---- Validation messages ------------------------------------------------------------------ */

bool kg__vk_counts_as_validation(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                 const VkDebugUtilsMessengerCallbackDataEXT *data)
{
    if (!(severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)))
        return false;
    return !(data && data->pMessageIdName && strcmp(data->pMessageIdName, "Loader Message") == 0);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT type,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)type;
    vk_state *s = user;
    if (!kg__vk_counts_as_validation(severity, data))
        return VK_FALSE;
    if (s->validation_count++ == 0)
        snprintf(s->validation_first, sizeof s->validation_first, "%s",
                 data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

bool kg__vk_validating(const kg_ctx *ctx)
{
    return ((const vk_state *)ctx->be_state)->messenger != VK_NULL_HANDLE;
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
    VkLayerProperties *lp = kg__calloc(n, sizeof *lp);
    bool found = false;
    if (lp && vkEnumerateInstanceLayerProperties(&n, lp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(lp[i].layerName, name) == 0;
    free(lp);
    return found;
}

/* ---- Instance and device ------------------------------------------------------------------ */

static const char *const validation_layer = "VK_LAYER_KHRONOS_validation";

/* Whether the loader enables the validation layer itself: VK_INSTANCE_LAYERS names it, or
 * VK_LOADER_LAYERS_ENABLE matches it (a comma-separated list of names or globs such as
 * *validation). */
static bool loader_enables_validation(void)
{
    const char *layers = getenv("VK_INSTANCE_LAYERS"), *enable = getenv("VK_LOADER_LAYERS_ENABLE");
    return (layers && strstr(layers, validation_layer)) || (enable && strstr(enable, "validation"));
}

/* KG_VALIDATION=1 turns the Khronos validation layer on (the tests do); when the loader enables
 * it through its own variables, its messages are listened to as well. */
VkResult kg__vk_make_instance(vk_state *s, VkInstance *out)
{
    const char *env = getenv("KG_VALIDATION");
    bool asked = (env && strcmp(env, "1") == 0) || loader_enables_validation();
    bool validate = s && asked && layer_available(validation_layer);
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
dev_caps kg__vk_query_caps(VkPhysicalDevice p)
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

const char *kg__vk_type_name(VkPhysicalDeviceType t)
{
    static const char *const names[] = {"other", "integrated GPU", "discrete GPU",
                                        "virtual GPU", "CPU"};
    return (unsigned)t < 5 ? names[t] : "other";
}

/* KG_DEVICE: an index, or a substring of the device name. Otherwise discrete, then
 * integrated, then virtual, then CPU (lavapipe). Devices lacking a must-have feature are
 * passed over. */
bool kg__vk_pick_device(vk_state *s)
{
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(s->instance, &n, NULL);
    if (n == 0)
        return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: no Vulkan device found (install a "
                        "GPU driver, or mesa-vulkan-drivers for lavapipe on the CPU)");
    VkPhysicalDevice *devs = kg__calloc(n, sizeof *devs);
    if (!devs)
        return kg_set_error(s->ctx, KG_ERR_NOMEM, "kg_ctx_new: out of host memory");
    vkEnumeratePhysicalDevices(s->instance, &n, devs);
    const char *want = getenv("KG_DEVICE");
    int best = -1, best_rank = 99;
    char *end = NULL;
    long idx = want && *want ? strtol(want, &end, 10) : -1;
    bool by_index = want && *want && end && *end == 0;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(devs[i], &p);
        dev_caps c = kg__vk_query_caps(devs[i]);
        bool usable = c.address && c.int64;
        if (by_index || (want && *want)) {
            bool match = by_index ? (long)i == idx : strstr(p.deviceName, want) != NULL;
            if (match && !usable) {
                free(devs);
                return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: KG_DEVICE=%s picks %s, "
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
            return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: KG_DEVICE=%s matches none of "
                            "the %u Vulkan devices (see krongrad info)", want, n);
        return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: none of the %u Vulkan devices has "
                        "Vulkan 1.2 with bufferDeviceAddress and shaderInt64", n);
    }
    s->phys = devs[best];
    free(devs);
    vkGetPhysicalDeviceProperties(s->phys, &s->props);
    return true;
}

bool kg__vk_make_device(vk_state *s)
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
        return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: %s has no compute queue",
                        s->props.deviceName);
    dev_caps c = kg__vk_query_caps(s->phys);
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
    if (!kg__vk_ok(s, vkCreateDevice(s->phys, &di, NULL, &s->dev), "vkCreateDevice"))
        return false;
    vkGetDeviceQueue(s->dev, s->family, 0, &s->queue);

    /* Memory for tensors: device-local and mappable when the device offers it in a large heap
     * (lavapipe, integrated GPUs, resizable BAR); else device-local with staging copies. */
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(s->phys, &mp);
    VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                 VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int both = kg__vk_memory_type(s->phys, ~0u, local | host);
    int dl = kg__vk_memory_type(s->phys, ~0u, local);
    int hv = kg__vk_memory_type(s->phys, ~0u, host);
    bool big = both >= 0 && mp.memoryHeaps[mp.memoryTypes[both].heapIndex].size >= (1ull << 30);
    if (hv < 0 || (dl < 0 && both < 0))
        return kg_set_error(s->ctx, KG_ERR_DEVICE, "kg_ctx_new: %s offers no usable memory type",
                        s->props.deviceName);
    /* KG_VK_STAGING=1 takes the staging path even where mapping would do (to test it). */
    const char *staging = getenv("KG_VK_STAGING");
    bool force_staging = staging && strcmp(staging, "1") == 0 && dl >= 0;
    s->host_visible = (big || dl < 0) && !force_staging;
    s->mem_type = (uint32_t)(s->host_visible ? both : dl);
    s->staging_type = (uint32_t)hv;
    return true;
}

/* ---- Device listing, for `krongrad info` --------------------------------------------------- */

size_t kg_vulkan_devices(char *buf, size_t cap)
{
    size_t n = 0;
#define OUT(...) (n += (size_t)snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__))
    VkInstance inst;
    if (kg__vk_make_instance(NULL, &inst) != VK_SUCCESS) {
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
        dev_caps c = kg__vk_query_caps(devs[i]);
        OUT("  [%u] %s — %s, Vulkan %u.%u.%u\n", i, p.deviceName, kg__vk_type_name(p.deviceType),
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

