/* info.c — `krongrad info`: the backends, devices and CPU threads krongrad can use, and which
 * backend the other commands pick by default and why.
 */
#include "cli.h"

#include <stddef.h>

typedef struct info_opts {
    bool unused; /* no options yet */
} info_opts;

static int run_info(void *opts)
{
    (void)opts;
    printf("krongrad %s\n\n", KRONGRAD_VERSION);
    printf("backend cpu\n");
    printf("  threads  %d\n", kg_cpu_thread_count());
    printf("  blas     %s\n", kg_cpu_blas());
    printf("\ndata parallelism across processes (mpirun -np N krongrad train ...)\n");
    printf("  mpi      %s\n", kg_dist_library());
    printf("\nbackend vulkan: devices\n");
    char devices[8192];
    kg_vulkan_devices(devices, sizeof devices);
    fputs(devices, stdout);
    kg_ctx *vk = kg_ctx_new(KG_BACKEND_VULKAN);
    if (!vk || kg_ctx_status(vk))
        printf("  the backend cannot start: %s\n", kg_error(vk));
    else
        printf("  the backend picks: %s (KG_DEVICE=index or name overrides)\n",
               kg_device_name(vk));
    kg_ctx_free(vk);
    const char *why = NULL;
    kg_ctx *def = kg_cli_context(NULL, &why);
    if (def)
        printf("\ndefault backend of every command: %s\n", why);
    kg_ctx_free(def);
    return 0;
}

const kg_command kg_cmd_info = {
    .name = "info",
    .summary = "List the backends, devices and CPU threads krongrad can use.",
    .usage = "",
    .opts_size = sizeof(info_opts),
    .run = run_info,
};
