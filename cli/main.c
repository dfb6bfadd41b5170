/* main.c — the krongrad command: parse the command line and run one subcommand.
 * Exit status: 0 success, 1 the work failed, 2 the command line was wrong.
 */
#include "krongrad.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: krongrad [--help] [--version] <command> [options]\n"
    "\n"
    "commands:\n"
    "  info      list the backends, devices and CPU threads krongrad can use\n"
    "\n"
    "environment:\n"
    "  KG_THREADS   CPU threads (default: all cores)\n"
    "  KG_BLAS      'none' to use the portable GEMM instead of OpenBLAS / BLIS\n";

static int cmd_info(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "krongrad info: unknown option '%s'\n%s", argv[1], usage);
        return 2;
    }
    printf("krongrad %s\n\n", KRONGRAD_VERSION);
    printf("backend cpu\n");
    printf("  threads  %d\n", kg_cpu_thread_count());
    printf("  blas     %s\n", kg_cpu_blas());
    printf("\nbackend vulkan: devices\n");
    char devices[8192];
    kg_vulkan_devices(devices, sizeof devices);
    fputs(devices, stdout);
    kg_ctx *vk = kg_ctx_new(KG_BACKEND_VULKAN);
    if (!vk || kg_status(vk))
        printf("  the backend cannot start: %s\n", kg_error(vk));
    else
        printf("  the backend picks: %s (KG_DEVICE=index or name overrides)\n",
               kg_device_name(vk));
    kg_ctx_free(vk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("krongrad %s\n", KRONGRAD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "krongrad: unknown %s '%s'\n%s", cmd[0] == '-' ? "option" : "command", cmd,
            usage);
    return 2;
}
