/* export.c — `krongrad export`: a model with its adapter merged, as an HF directory (OUT) or a
 * llama.cpp GGUF (OUT.gguf); the adapter alone as a llama.cpp LoRA GGUF (--lora-only); a
 * Kron-LoRA or LoKr adapter as the exact LoRA it equals (--as-lora: a PEFT directory, or with
 * OUT.gguf a llama.cpp LoRA). The library side is models/export.c (kg_export.h).
 */
#include "cli.h"

#include <string.h>

typedef struct export_opts {
    const char *model, *adapter, *out, *dtype, *backend;
    double shard_mb;
    bool as_lora, lora_only;
} export_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(export_opts, model), "PATH",
     "the HF model directory or .gguf file (required)"},
    {"adapter", KG_FLAG_STRING, offsetof(export_opts, adapter), "DIR",
     "a PEFT adapter directory to merge in (or to export alone with --lora-only / --as-lora)"},
    {"out", KG_FLAG_STRING, offsetof(export_opts, out), "PATH",
     "a new directory (HF / PEFT), or a file ending .gguf (required)"},
    {"dtype", KG_FLAG_STRING, offsetof(export_opts, dtype), "f32|f16|bf16|q8_0",
     "the weights' dtype (default f32; q8_0 for merged GGUF only)"},
    {"as-lora", KG_FLAG_BOOL, offsetof(export_opts, as_lora), NULL,
     "write a kronlora / lokr adapter as the exact LoRA it equals (PEFT dir, or .gguf LoRA)"},
    {"lora-only", KG_FLAG_BOOL, offsetof(export_opts, lora_only), NULL,
     "write the LoRA adapter alone as a llama.cpp --lora GGUF (OUT ends .gguf)"},
    {"shard-mb", KG_FLAG_FLOAT, offsetof(export_opts, shard_mb), "N",
     "HF directory: safetensors shards of at most N MiB (default 2048)"},
    {"backend", KG_FLAG_STRING, offsetof(export_opts, backend), "cpu|vulkan",
     "where to load the model (default: a real GPU if Vulkan finds one, else cpu)"},
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad export: %s\n(see krongrad export --help)\n", msg);
    return 2;
}

static bool parse_dtype(const char *name, kg_dtype *out)
{
    static const struct { const char *name; kg_dtype dtype; } names[] = {
        {"f32", KG_DTYPE_F32}, {"f16", KG_DTYPE_F16}, {"bf16", KG_DTYPE_BF16},
        {"q8_0", KG_DTYPE_Q8_0}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    return false;
}

/* The export the flags ask for, on a loaded model (with its adapter). */
static bool run_on(const export_opts *o, kg_model *m, kg_dtype dtype, bool gguf)
{
    int64_t k = 1;
    if (o->as_lora) {
        kg_adapter_kind was = m->adapter.kind;
        if (!kg_model_adapter_to_lora(m, &k))
            return false;
        printf("%s adapter as an exact LoRA: rank %lld = %lld x %lld, lora_alpha %g\n",
               kg_adapter_kind_name(was), (long long)m->adapter.rank, (long long)k,
               (long long)(m->adapter.rank / k), m->adapter.alpha);
        if (!gguf)
            return kg_export_peft(m, o->out, o->model) &&
                   printf("wrote %s (PEFT LORA adapter directory)\n", o->out) > 0;
    }
    if (o->as_lora || o->lora_only)
        return kg_export_gguf_lora(m, o->out, dtype) &&
               printf("wrote %s (llama.cpp LoRA: llama-cli -m BASE.gguf --lora %s)\n", o->out,
                      o->out) > 0;
    bool extra;
    if (gguf) {
        if (!kg_export_gguf(m, o->model, o->out, dtype, &extra))
            return false;
        printf("wrote %s (GGUF, %s weights%s)\n", o->out, o->dtype ? o->dtype : "f32",
               extra ? ", vocabulary" : "; no vocabulary: the source has none in GGUF form");
        return true;
    }
    if (!kg_export_hf(m, o->model, o->out, dtype, o->shard_mb > 0 ? (int64_t)(o->shard_mb * 1048576) : 0, &extra))
        return false;
    printf("wrote %s (HF directory, %s safetensors%s)\n", o->out, o->dtype ? o->dtype : "f32",
           extra ? ", tokenizer files" : "; no tokenizer files: a GGUF source has none");
    return true;
}

static int run_export(void *p)
{
    const export_opts *o = p;
    if (!o->model || !o->out)
        return usage_error("--model and --out are required");
    kg_dtype dtype = KG_DTYPE_F32;
    if (o->dtype && !parse_dtype(o->dtype, &dtype))
        return usage_error("--dtype takes f32, f16, bf16 or q8_0");
    bool gguf = ends_with(o->out, ".gguf");
    if ((o->as_lora || o->lora_only) && !o->adapter)
        return usage_error("--as-lora and --lora-only export an adapter: give --adapter DIR");
    if (o->lora_only && !gguf)
        return usage_error("--lora-only writes a llama.cpp LoRA: --out must end in .gguf");
    if (!gguf && dtype == KG_DTYPE_Q8_0)
        return usage_error("--dtype q8_0 is for GGUF files (--out PATH.gguf)");
    kg_ctx *ctx = kg_cli_context(o->backend, NULL);
    if (!ctx)
        return 1;
    kg_model *m = kg_model_load(ctx, o->model);
    bool ok = m && (!o->adapter || kg_peft_load(m, o->adapter)) && run_on(o, m, dtype, gguf);
    int rc = ok ? 0 : kg_cli_fail("export", ctx);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_export = {
    .name = "export",
    .summary = "Write a model with its adapter merged (HF directory or GGUF), or the adapter as "
               "a LoRA (PEFT or llama.cpp).",
    .usage = "--model PATH [--adapter DIR] --out PATH[.gguf] [--dtype f32|f16|bf16|q8_0] "
             "[--as-lora | --lora-only]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(export_opts),
    .run = run_export,
};
