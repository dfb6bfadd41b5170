/* quantize.c — `krongrad quantize-adapter`: read a PEFT adapter directory onto its model and
 * write it again with every factor in int8 or int4 (per-output-row codes + f32 scales,
 * docs/adapter-format.md); `krongrad eval --adapter OUT` reads it back.
 */
#include "finetune.h"

#include <sys/stat.h>

typedef struct quantize_opts {
    const char *model, *adapter, *out, *backend;
    int64_t bits;
} quantize_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(quantize_opts, model), "PATH",
     "the HF model directory or .gguf file the adapter was trained on (required)"},
    {"adapter", KG_FLAG_STRING, offsetof(quantize_opts, adapter), "DIR",
     "the f32 PEFT adapter directory (required)"},
    {"bits", KG_FLAG_INT, offsetof(quantize_opts, bits), "8|4", "int8 or int4 codes (required)"},
    {"out", KG_FLAG_STRING, offsetof(quantize_opts, out), "DIR",
     "where the quantized adapter goes (required; made if absent)"},
    {"backend", KG_FLAG_STRING, offsetof(quantize_opts, backend), "cpu|vulkan",
     "where to load the model (default: a real GPU if Vulkan finds one, else cpu)"},
};

static long long file_size(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int run_quantize(void *p)
{
    const quantize_opts *o = p;
    if (!o->model || !o->adapter || !o->out) {
        fprintf(stderr, "krongrad quantize-adapter: --model, --adapter and --out are required\n"
                        "(see krongrad quantize-adapter --help)\n");
        return 2;
    }
    if (o->bits != 8 && o->bits != 4) {
        fprintf(stderr, "krongrad quantize-adapter: --bits takes 8 or 4\n"
                        "(see krongrad quantize-adapter --help)\n");
        return 2;
    }
    kg_ctx *ctx = kg_cli_context(o->backend, NULL);
    if (!ctx)
        return 1;
    kg_model *m = finetune_model(ctx, o->model, NULL, NULL, 0);
    bool ok = m && kg_peft_load(m, o->adapter) &&
              kg_peft_save_quantized(m, o->out, o->model, (int)o->bits);
    int rc = 0;
    if (ok)
        printf("wrote %s: adapter factors in int%lld (%lld bytes; the f32 file: %lld)\n", o->out,
               (long long)o->bits, file_size(o->out), file_size(o->adapter));
    else
        rc = kg_cli_fail("quantize-adapter", ctx);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_quantize = {
    .name = "quantize-adapter",
    .summary = "Write a PEFT adapter with its factors in int8 or int4 (eval --adapter reads it).",
    .usage = "--model PATH --adapter DIR --bits 8|4 --out DIR",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(quantize_opts),
    .run = run_quantize,
};
