/* bench_allreduce.c — what data parallelism costs per step: the gradient bytes each rank sends
 * for Kron-LoRA, LoRA and full fine-tuning of DistilBERT-base and SmolLM2-135M (trainable
 * parameters from kg_adapter_count × 4 bytes of f32), and the time of the trainer's
 * MPI_Allreduce (f32 sum, in place) on those sizes between the ranks of this job.
 *
 * Usage: mpirun -np 2 bench_allreduce [--repeat N]     (alone: the table, no timing)
 */
#include "krongrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef KG_HAVE_MPI
#include <mpi.h>
#endif

/* distilbert-base-uncased with a multiple-choice head (REFERENCE §5.1). */
static kg_model_config distilbert_base(void)
{
    return (kg_model_config){.arch = KG_ARCH_DISTILBERT, .head = KG_HEAD_MULTIPLE_CHOICE,
                             .vocab_size = 30522, .hidden_size = 768, .n_layers = 6,
                             .n_heads = 12, .n_kv_heads = 12, .head_dim = 64,
                             .intermediate_size = 3072, .max_positions = 512,
                             .norm_eps = 1e-12, .pad_token_id = 0, .bos_token_id = -1,
                             .eos_token_id = -1};
}

/* HuggingFaceTB/SmolLM2-135M: a Llama of 30 layers, C 576, 9 heads over 3 KV heads, tied
 * embeddings. */
static kg_model_config smollm2_135m(void)
{
    return (kg_model_config){.arch = KG_ARCH_LLAMA, .head = KG_HEAD_CAUSAL_LM,
                             .vocab_size = 49152, .hidden_size = 576, .n_layers = 30,
                             .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                             .intermediate_size = 1536, .max_positions = 8192, .norm_eps = 1e-5,
                             .rope_theta = 100000, .tie_word_embeddings = true,
                             .pad_token_id = -1, .bos_token_id = 0, .eos_token_id = 0};
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The median of n seconds of allreducing count floats (0 alone). */
static double allreduce_seconds(int64_t count, int repeat)
{
#ifdef KG_HAVE_MPI
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2)
        return 0;
    float *buf = calloc((size_t)count, sizeof *buf);
    double *t = calloc((size_t)repeat, sizeof *t);
    if (!buf || !t) {
        free(buf);
        free(t);
        return -1;
    }
    for (int r = -1; r < repeat; r++) { /* one warm-up */
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        for (int64_t i = 0; i < count; i += 1 << 28)
            MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)(count - i < (1 << 28) ? count - i : 1 << 28),
                          MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r >= 0)
            t[r] = dt;
    }
    for (int i = 1; i < repeat; i++) /* insertion sort: a few values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    double median = t[repeat / 2];
    free(buf);
    free(t);
    return median;
#else
    (void)count, (void)repeat;
    return 0;
#endif
}

int main(int argc, char **argv)
{
    int repeat = 20, rank = 0, size = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = atoi(argv[++i]);
    if (repeat < 1)
        repeat = 1;
#ifdef KG_HAVE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
#endif
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    struct {
        const char *name;
        kg_model_config mc;
    } models[] = {{"DistilBERT-base (MC)", distilbert_base()}, {"SmolLM2-135M", smollm2_135m()}};
    struct {
        const char *label;
        kg_adapter_kind kind;
    } adapters[] = {{"kronlora r8 A2x4", KG_ADAPTER_KRONLORA},
                    {"lora r8", KG_ADAPTER_LORA},
                    {"full", KG_ADAPTER_FULL}};
    if (rank == 0)
        printf("%-22s %-18s %14s %14s %14s\n", "model", "adapter", "trainable",
               "bytes/step", size > 1 ? "allreduce s" : "(alone)");
    int rc = 0;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
        for (size_t a = 0; a < sizeof adapters / sizeof adapters[0]; a++) {
            kg_adapter_config cfg = kg_adapter_config_default(adapters[a].kind);
            int64_t n = kg_adapter_count(ctx, &models[m].mc, &cfg);
            if (n < 0) {
                fprintf(stderr, "bench_allreduce: %s %s: %s\n", models[m].name,
                        adapters[a].label, kg_error(ctx));
                rc = 1;
                break;
            }
            /* Full fine-tuning's hundreds of MB take long to repeat: fewer rounds. */
            double s = allreduce_seconds(n, n > (1 << 24) ? (repeat + 4) / 5 : repeat);
            if (rank == 0)
                printf("%-22s %-18s %14lld %14lld %14.6f\n", models[m].name, adapters[a].label,
                       (long long)n, (long long)n * 4, s);
        }
    if (rank == 0 && size > 1)
        printf("(%d ranks; median wall time of MPI_Allreduce, f32 sum in place, as the trainer "
               "does each step)\n", size);
    kg_ctx_free(ctx);
#ifdef KG_HAVE_MPI
    MPI_Finalize();
#endif
    return rc;
}
