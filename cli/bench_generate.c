/* bench_generate.c — `krongrad bench generate`: decoding speed on a real model file, as
 * llama-bench's tg test measures it (one token at a time, batch 1, the first token excluded),
 * and where a decode step's time goes: per op, per token, with the framework's own time
 * (dispatch, allocation, freeing a step's tensors, the host work between ops) apart from the
 * kernels. bench/generate_side_by_side.sh sets it beside llama-bench on the same file.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_gen_opts {
    const char *model, *frozen, *backend, *adapter;
    int64_t n_new, prompt, reps;
    bool profile, json;
} bench_gen_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(bench_gen_opts, model), "PATH",
     "a causal LM: .gguf file or HF directory (required)"},
    {"new", KG_FLAG_INT, offsetof(bench_gen_opts, n_new), "N",
     "tokens generated per run (default 64, as llama-bench -n 64)"},
    {"prompt", KG_FLAG_INT, offsetof(bench_gen_opts, prompt), "N",
     "prompt tokens fed first, untimed (default 1: the BOS token, as llama-bench -p 0)"},
    {"reps", KG_FLAG_INT, offsetof(bench_gen_opts, reps), "R",
     "timed runs (default 5); the median is reported"},
    {"adapter", KG_FLAG_STRING, offsetof(bench_gen_opts, adapter), "DIR",
     "a PEFT adapter directory (what train --out wrote), decoded unmerged as generate does"},
    {"frozen", KG_FLAG_STRING, offsetof(bench_gen_opts, frozen), "DTYPE",
     "the blocks' linear weights as: f32, bf16, f16, q8_0, q4_0, q4_1 or nf4 (default q4_1: "
     "a GGUF's q4_1 weights stay packed, as llama.cpp reads them)"},
    {"profile", KG_FLAG_BOOL, offsetof(bench_gen_opts, profile), NULL,
     "one more run with per-op timing: where a decode step's time goes"},
    {"json", KG_FLAG_BOOL, offsetof(bench_gen_opts, json), NULL,
     "end with one JSON line of the figures (for bench/generate_side_by_side.sh)"},
    {"backend", KG_FLAG_STRING, offsetof(bench_gen_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
};

static void defaults(void *p)
{
    bench_gen_opts *o = p;
    o->n_new = 64;
    o->prompt = 1;
    o->reps = 5;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run on d (reset first): the prompt (untimed), then n_new greedy tokens, each fed back;
 * the seconds of those n_new steps (profiled when asked), or a negative number on error. */
static double run_once(kg_decoder *d, const kg_model *m, const bench_gen_opts *o, int32_t *ids,
                       bool profile)
{
    kg_decoder_reset(d);
    /* BOS, then a fixed run of ids: the speed does not depend on which ids they are */
    for (int64_t i = 0; i < o->prompt; i++)
        ids[i] = i == 0 && m->cfg.bos_token_id >= 0
                     ? (int32_t)m->cfg.bos_token_id
                     : (int32_t)(1 + (i * 7919) % (m->cfg.vocab_size - 1));
    kg_generate_config greedy = {.max_new = o->n_new};
    uint64_t rng = 0;
    bool ok = kg_decoder_feed(d, ids, o->prompt) != NULL;
    if (profile)
        kg_profile(m->ctx, true);
    double t0 = now();
    for (int64_t i = 0; ok && i < o->n_new; i++) {
        int32_t id = (int32_t)kg_decoder_pick(d, &greedy, &rng);
        ok = kg_decoder_feed(d, &id, 1) != NULL;
    }
    return ok ? now() - t0 : -1.0;
}

/* The bytes a decode step reads from the weights: every linear layer's whole weight and the
 * head as the decoder reads it (the embedding is one row a token, so not counted). */
static double weight_bytes(const kg_model *m, const kg_linear *head)
{
    const kg_tensor *w = head->weight;
    double b = (double)kg_dtype_bytes(kg_tensor_dtype(w), kg_tensor_numel(w));
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const kg_layer *L = &m->layers[l];
        const kg_linear *lin[] = {&L->attn.q, &L->attn.k, &L->attn.v, &L->attn.o,
                                  &L->mlp.gate, &L->mlp.up, &L->mlp.down};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
            b += (double)kg_dtype_bytes(kg_tensor_dtype(lin[i]->weight),
                                        kg_tensor_numel(lin[i]->weight));
    }
    return b;
}

static void print_profile(kg_ctx *ctx, int64_t tokens, double wall)
{
    kg_op_time t[64];
    int n = kg_profile_read(ctx, t, 64);
    kg_profile_host h = kg_profile_host_read(ctx);
    double kernels = 0, per = 1e6 / (double)tokens;
    for (int i = 0; i < n && i < 64; i++)
        kernels += t[i].seconds;
    printf("\n  where a decode step's time goes (one profiled run, per token)\n");
    printf("  %-26s %9s %9s %7s\n", "", "calls", "us", "share");
    for (int i = 0; i < n && i < 64; i++)
        printf("  kernel %-19s %9.1f %9.1f %6.1f%%\n", t[i].op,
               (double)t[i].calls / (double)tokens, t[i].seconds * per,
               100.0 * t[i].seconds / wall);
    double alloc = h.alloc_seconds, dispatch = h.op_seconds - kernels - alloc;
    double outside = wall - h.op_seconds - h.release_seconds;
    printf("  %-26s %9s %9.1f %6.1f%%\n", "kernels, all", "", kernels * per,
           100.0 * kernels / wall);
    printf("  %-26s %9.1f %9.1f %6.1f%%\n", "op dispatch (checks, tape)",
           (double)h.ops / (double)tokens, dispatch * per, 100.0 * dispatch / wall);
    printf("  %-26s %9.1f %9.1f %6.1f%%\n", "allocating results, views",
           (double)h.tensors / (double)tokens, alloc * per, 100.0 * alloc / wall);
    printf("  %-26s %9s %9.1f %6.1f%%\n", "freeing the step's tensors", "",
           h.release_seconds * per, 100.0 * h.release_seconds / wall);
    printf("  %-26s %9s %9.1f %6.1f%%\n", "between ops (host side)", "", outside * per,
           100.0 * outside / wall);
    printf("  %-26s %9.1f\n", "tape nodes recorded", (double)h.tape_nodes / (double)tokens);
    printf("  %-26s %9s %9.1f\n", "step", "", wall * per);
}

static int run_bench_generate(void *p)
{
    const bench_gen_opts *o = p;
    if (!o->model) {
        fprintf(stderr, "krongrad bench generate: --model PATH is required\n");
        return 2;
    }
    kg_dtype frozen = kg_dtype_from_name(o->frozen ? o->frozen : "q4_1");
    if (frozen == KG_DTYPE_COUNT || frozen == KG_DTYPE_I32 || o->n_new < 1 || o->prompt < 1 ||
        o->reps < 1) {
        fprintf(stderr, "krongrad bench generate: --frozen takes f32, bf16, f16, q8_0, q4_0, "
                "q4_1 or nf4; --new, --prompt and --reps N >= 1\n");
        return 2;
    }
    const char *why = NULL;
    kg_ctx *ctx = kg_cli_context(o->backend, &why);
    if (!ctx)
        return 1;
    double t0 = now();
    kg_model *m = kg_model_load_frozen(ctx, o->model, frozen);
    if (m && o->adapter)
        kg_peft_load(m, o->adapter); /* an error stays on the context */
    double load = now() - t0;
    kg_decoder *d = kg_decoder_new(m, o->prompt + o->n_new, true);
    double *secs = calloc((size_t)o->reps, sizeof *secs);
    int32_t *ids = malloc(sizeof *ids * (size_t)o->prompt);
    if (!secs || !ids)
        kg_set_error(ctx, KG_ERR_NOMEM, "krongrad bench generate: out of host memory");
    if (d && !kg_ctx_status(ctx))
        run_once(d, m, o, ids, false); /* warm-up: the weights' pages, the threads, kept blocks */
    for (int64_t r = 0; r < o->reps && !kg_ctx_status(ctx); r++)
        secs[r] = run_once(d, m, o, ids, false);
    int rc = 0;
    if (kg_ctx_status(ctx)) {
        rc = kg_cli_fail("bench generate", ctx);
    } else {
        qsort(secs, (size_t)o->reps, sizeof *secs, cmp_double);
        const kg_tensor *head = kg_decoder_head(d)->weight;
        double med = secs[o->reps / 2], tps = (double)o->n_new / med;
        double bytes = weight_bytes(m, kg_decoder_head(d));
        printf("krongrad bench generate: %s\n", o->model);
        printf("  %-18s %s (%d CPU threads; matrix-vector: %s)\n", "device",
               kg_device_name(ctx), kg_cpu_thread_count(), kg_cpu_gemv_name());
        printf("  %-18s %s; head read as %s; %.1f MB read per token; load %.1f s\n",
               "weights", kg_dtype_name(frozen), kg_dtype_name(kg_tensor_dtype(head)),
               bytes / 1e6, load);
        if (o->adapter)
            printf("  %-18s %s\n", "adapter", o->adapter);
        printf("  %-18s %lld prompt tokens, then %lld generated (greedy), %lld runs\n", "run",
               (long long)o->prompt, (long long)o->n_new, (long long)o->reps);
        printf("  %-18s %.1f tok/s (median; min %.1f, max %.1f); %.2f ms per token\n",
               "generation", tps, (double)o->n_new / secs[o->reps - 1],
               (double)o->n_new / secs[0], 1e3 * med / (double)o->n_new);
        printf("  %-18s %.1f GB/s of weights\n", "weights read at", bytes * tps / 1e9);
        if (o->profile) {
            double s = run_once(d, m, o, ids, true);
            print_profile(ctx, o->n_new, s);
            kg_profile(ctx, false);
        }
        if (o->json)
            printf("{\"model\": \"%s\", \"adapter\": \"%s\", \"frozen\": \"%s\", "
                   "\"n_new\": %lld, \"tokens_per_s\": %.2f, \"weight_bytes\": %.0f}\n",
                   o->model, o->adapter ? o->adapter : "", kg_dtype_name(frozen),
                   (long long)o->n_new, tps, bytes);
        rc = kg_ctx_status(ctx) ? kg_cli_fail("bench generate", ctx) : 0;
    }
    free(ids);
    kg_decoder_free(d);
    free(secs);
    kg_model_free(m);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_bench_generate = {
    .name = "bench generate",
    .summary = "Time decoding (tokens/s, batch 1) on a model file, and profile a decode step.",
    .usage = "--model PATH [--adapter DIR] [--new N] [--frozen DTYPE] [--profile] [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(bench_gen_opts),
    .defaults = defaults,
    .run = run_bench_generate,
};
