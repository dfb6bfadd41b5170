/* bench_load.c — loading full-size checkpoints: writes a DistilBERT-base-shaped checkpoint (f32,
 * one model.safetensors) and a Mistral-7B-shaped one (bf16, shards of at most 2 GiB plus
 * model.safetensors.index.json, a layer split across shards as on the hub) of random weights to a
 * temporary directory, loads every tensor and reports the time and the peak memory, then deletes
 * the files. Weights load in the file's dtype (bf16 stays bf16: frozen weights), one tensor at a
 * time from the mapping, so loading never holds a second copy of the weights.
 *
 * Usage: bench_load [--layers N] [--dir DIR] [--backend cpu|vulkan] [--keep]
 *   --layers N   Mistral layers to write (default 32, the full 14.5 GB); fewer to save disk/time
 *   --dir DIR    where the temporary directory goes (default $TMPDIR or /tmp)
 *   --keep       leave the files (their directory is printed)
 */
#include "krongrad.h"
#include "models/kg_formats.h"
#include "models/kg_models.h"

#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TENSORS 512
#define SHARD_BYTES (2ull << 30)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double gb(double bytes) { return bytes / 1e9; }

/* ---- The two checkpoints ---------------------------------------------------------------- */

typedef struct spec {
    char name[96];
    int ndim;
    int64_t shape[2];
} spec;

typedef struct checkpoint {
    const char *label;
    kg_dtype dtype;
    const char *config; /* config.json */
    spec t[MAX_TENSORS];
    int n;
} checkpoint;

static void add(checkpoint *c, const char *name, int64_t rows, int64_t cols)
{
    spec *s = &c->t[c->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = cols ? 2 : 1;
    s->shape[0] = rows;
    s->shape[1] = cols;
}

static int64_t numel(const spec *s) { return s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0]; }

static double total_bytes(const checkpoint *c)
{
    double b = 0;
    for (int i = 0; i < c->n; i++)
        b += (double)numel(&c->t[i]) * (double)kg_dtype_size(c->dtype);
    return b;
}

/* distilbert-base-uncased (REFERENCE §5.1): the encoder's 100 tensors plus the MLM head, f32. */
static void distilbert(checkpoint *c)
{
    const int64_t C = 768, F = 3072, V = 30522;
    char n[96];
    *c = (checkpoint){.label = "DistilBERT-base", .dtype = KG_DTYPE_F32,
                      .config = "{\"architectures\": [\"DistilBertForMaskedLM\"], \"activation\": "
                                "\"gelu\", \"dim\": 768, \"hidden_dim\": 3072, \"max_position_"
                                "embeddings\": 512, \"model_type\": \"distilbert\", \"n_heads\": "
                                "12, \"n_layers\": 6, \"pad_token_id\": 0, \"sinusoidal_pos_embds"
                                "\": false, \"vocab_size\": 30522}\n"};
    add(c, "distilbert.embeddings.word_embeddings.weight", V, C);
    add(c, "distilbert.embeddings.position_embeddings.weight", 512, C);
    add(c, "distilbert.embeddings.LayerNorm.weight", C, 0);
    add(c, "distilbert.embeddings.LayerNorm.bias", C, 0);
    static const char *const lin[] = {"attention.q_lin", "attention.k_lin", "attention.v_lin",
                                      "attention.out_lin"};
    for (int l = 0; l < 6; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "distilbert.transformer.layer.%d.%s.weight", l, lin[k]);
            add(c, n, C, C);
            snprintf(n, sizeof n, "distilbert.transformer.layer.%d.%s.bias", l, lin[k]);
            add(c, n, C, 0);
        }
        static const char *const norms[] = {"sa_layer_norm", "output_layer_norm"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "distilbert.transformer.layer.%d.%s.weight", l, norms[k]);
            add(c, n, C, 0);
            snprintf(n, sizeof n, "distilbert.transformer.layer.%d.%s.bias", l, norms[k]);
            add(c, n, C, 0);
        }
        snprintf(n, sizeof n, "distilbert.transformer.layer.%d.ffn.lin1.weight", l);
        add(c, n, F, C);
        snprintf(n, sizeof n, "distilbert.transformer.layer.%d.ffn.lin1.bias", l);
        add(c, n, F, 0);
        snprintf(n, sizeof n, "distilbert.transformer.layer.%d.ffn.lin2.weight", l);
        add(c, n, C, F);
        snprintf(n, sizeof n, "distilbert.transformer.layer.%d.ffn.lin2.bias", l);
        add(c, n, C, 0);
    }
    add(c, "vocab_transform.weight", C, C);
    add(c, "vocab_transform.bias", C, 0);
    add(c, "vocab_layer_norm.weight", C, 0);
    add(c, "vocab_layer_norm.bias", C, 0);
    add(c, "vocab_projector.bias", V, 0);
}

/* Mistral-7B-v0.1 (REFERENCE §5.2) with `layers` of its 32 layers, bf16. */
static void mistral(checkpoint *c, int layers)
{
    const int64_t C = 4096, V = 32000;
    static char config[640];
    snprintf(config, sizeof config,
             "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\""
             ": 2, \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 14336, "
             "\"max_position_embeddings\": 32768, \"model_type\": \"mistral\", "
             "\"num_attention_heads\": 32, \"num_hidden_layers\": %d, \"num_key_value_heads\": 8, "
             "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"sliding_window\": 4096, "
             "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"vocab_size\": "
             "32000}\n", layers);
    *c = (checkpoint){.label = "Mistral-7B", .dtype = KG_DTYPE_BF16, .config = config};
    char n[96];
    add(c, "model.embed_tokens.weight", V, C);
    for (int l = 0; l < layers; l++) {
        static const struct { const char *name; int64_t rows, cols; } w[] = {
            {"self_attn.q_proj", 4096, 4096}, {"self_attn.k_proj", 1024, 4096},
            {"self_attn.v_proj", 1024, 4096}, {"self_attn.o_proj", 4096, 4096},
            {"mlp.gate_proj", 14336, 4096},   {"mlp.up_proj", 14336, 4096},
            {"mlp.down_proj", 4096, 14336}};
        for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, w[k].name);
            add(c, n, w[k].rows, w[k].cols);
        }
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        add(c, n, C, 0);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        add(c, n, C, 0);
    }
    add(c, "model.norm.weight", C, 0);
    add(c, "lm_head.weight", V, C);
}

/* ---- Writing (in a child process, so that the loads' peak memory is their own) --------- */

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    return (f && fclose(f) == 0) && ok;
}

/* A tensor of uniform values in [-0.05, 0.05): f32, or bf16 as the top half of the f32 bits.
 * A xorshift on the host, because kg_uniform and a cast take ~20 s per GB here and the bench
 * times the loading, not this. */
static kg_tensor *random_tensor(kg_ctx *ctx, const spec *s, kg_dtype dtype, uint64_t seed)
{
    int64_t n = numel(s);
    void *buf = malloc((size_t)n * kg_dtype_size(dtype));
    if (!buf)
        return NULL;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull | 1;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float v = ((float)(x >> 40) * 0x1p-24f - 0.5f) * 0.1f;
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        if (dtype == KG_DTYPE_F32)
            ((float *)buf)[i] = v;
        else
            ((uint16_t *)buf)[i] = (uint16_t)(bits >> 16);
    }
    kg_tensor *t = kg_from_host(ctx, dtype, s->ndim, s->shape, buf);
    free(buf);
    return t;
}

/* Tensors [first, last) as one safetensors file of random values. */
static bool write_shard(kg_ctx *ctx, const checkpoint *c, int first, int last, const char *path)
{
    kg_scope scope = kg_scope_begin(ctx);
    const char *names[MAX_TENSORS];
    kg_tensor *ts[MAX_TENSORS];
    for (int i = first; i < last; i++) {
        ts[i - first] = random_tensor(ctx, &c->t[i], c->dtype, (uint64_t)i + 1);
        names[i - first] = c->t[i].name;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    bool ok = kg_safetensors_write(ctx, path, last - first, names, ts, meta);
    kg_scope_end(ctx, scope);
    return ok;
}

/* One model.safetensors, or shards of at most SHARD_BYTES and their index when sharded. */
static bool write_checkpoint(const checkpoint *c, const char *dir, bool sharded)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!write_text(path, c->config)) {
        fprintf(stderr, "bench_load: cannot write %s: %s\n", path, strerror(errno));
        return false;
    }
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    /* Shard boundaries: cut before a tensor that would take the shard past SHARD_BYTES. */
    int cut[MAX_TENSORS + 1], shards = 0;
    double bytes = 0;
    cut[0] = 0;
    for (int i = 0; i < c->n; i++) {
        double b = (double)numel(&c->t[i]) * (double)kg_dtype_size(c->dtype);
        if (sharded && bytes > 0 && bytes + b > (double)SHARD_BYTES) {
            cut[++shards] = i;
            bytes = 0;
        }
        bytes += b;
    }
    cut[++shards] = c->n;
    FILE *index = NULL;
    if (sharded) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        index = fopen(path, "w");
        if (index)
            fprintf(index, "{\"metadata\": {\"total_size\": %.0f}, \"weight_map\": {",
                    total_bytes(c));
    }
    bool ok = ctx && !kg_ctx_status(ctx) && (!sharded || index);
    for (int s = 0; ok && s < shards; s++) {
        char file[64];
        if (sharded)
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, shards);
        else
            snprintf(file, sizeof file, "model.safetensors");
        snprintf(path, sizeof path, "%s/%s", dir, file);
        ok = write_shard(ctx, c, cut[s], cut[s + 1], path);
        for (int i = cut[s]; ok && index && i < cut[s + 1]; i++)
            fprintf(index, "%s\"%s\": \"%s\"", i ? ", " : "", c->t[i].name, file);
    }
    if (index)
        ok = fprintf(index, "}}\n") > 0 && fclose(index) == 0 && ok;
    if (!ok)
        fprintf(stderr, "bench_load: writing %s failed: %s\n", dir,
                ctx && kg_ctx_status(ctx) ? kg_error(ctx) : strerror(errno));
    kg_ctx_free(ctx);
    return ok;
}

/* ---- Loading, measured -------------------------------------------------------------------- */

/* kB of resident anonymous memory (the copies loading makes) and of resident file pages (the
 * mapping: page cache the kernel may drop at any time). */
static void rss_now(long *anon_kb, long *file_kb)
{
    char line[256];
    *anon_kb = *file_kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "RssAnon: %ld", anon_kb);
        sscanf(line, "RssFile: %ld", file_kb);
    }
    if (f)
        fclose(f);
}

static kg_ctx *context(const char *backend)
{
    kg_ctx *ctx = kg_ctx_new(strcmp(backend, "vulkan") ? KG_BACKEND_CPU : KG_BACKEND_VULKAN);
    if (ctx && kg_ctx_status(ctx)) {
        fprintf(stderr, "bench_load: %s backend: %s\n", backend, kg_error(ctx));
        kg_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* anon_kb: the peak sampled after each tensor, or what is held at the end (anon_when says). */
static void report(const char *what, double seconds, double bytes, kg_ctx *ctx, long anon_kb,
                   const char *anon_when)
{
    size_t cur, peak;
    kg_memory(ctx, &cur, &peak);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  %s: %.2f s, %.2f GB/s\n"
           "    tensors (kg_memory) peak %.2f GB; anonymous RSS %s %.2f GB; RSS peak (getrusage, "
           "mapped file pages included) %.2f GB = %.2fx the weights\n",
           what, seconds, gb(bytes) / seconds, gb((double)peak), anon_when,
           gb(1024.0 * (double)anon_kb), gb(1024.0 * (double)ru.ru_maxrss),
           1024.0 * (double)ru.ru_maxrss / bytes);
}

/* Every tensor through kg_weights_load in the file's dtype, each kept (a frozen model). */
static bool load_weights(const checkpoint *c, const char *dir, const char *backend)
{
    kg_ctx *ctx = context(backend);
    if (!ctx)
        return false;
    double t0 = now();
    kg_weights *w = kg_weights_open(ctx, dir);
    double t_open = now() - t0;
    long anon_peak = 0, anon, file;
    for (int i = 0; w && i < c->n && !kg_ctx_status(ctx); i++) {
        kg_weights_load(w, c->t[i].name, c->dtype, c->t[i].ndim, c->t[i].shape);
        rss_now(&anon, &file);
        anon_peak = anon > anon_peak ? anon : anon_peak;
    }
    kg_flush(ctx);
    double t = now() - t0;
    bool ok = !kg_ctx_status(ctx);
    if (ok) {
        printf("  kg_weights_open (headers, index, mmap): %.3f s\n", t_open);
        char what[64];
        snprintf(what, sizeof what, "kg_weights_load, %d tensors %s", c->n,
                 kg_dtype_name(c->dtype));
        report(what, t, total_bytes(c), ctx, anon_peak, "peak");
    } else {
        fprintf(stderr, "bench_load: %s\n", kg_error(ctx));
    }
    kg_weights_close(w);
    kg_ctx_free(ctx);
    return ok;
}

/* The whole model through kg_model_load (its parameters are f32). */
static bool load_model(const checkpoint *c, const char *dir, const char *backend)
{
    kg_ctx *ctx = context(backend);
    if (!ctx)
        return false;
    double t0 = now();
    kg_model *m = kg_model_load(ctx, dir);
    double t = now() - t0;
    long anon, file;
    rss_now(&anon, &file);
    if (m)
        report("kg_model_load (f32 parameters)", t, total_bytes(c) * 4.0 /
               (double)kg_dtype_size(c->dtype), ctx, anon, "at the end");
    else
        fprintf(stderr, "bench_load: kg_model_load: %s\n", kg_error(ctx));
    kg_model_free(m);
    kg_ctx_free(ctx);
    return m != NULL;
}

/* Run f in a child process, so that its getrusage peak is its own. */
static bool in_child(bool (*f)(const checkpoint *, const char *, const char *),
                     const checkpoint *c, const char *dir, const char *backend)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        bool ok = f(c, dir, backend);
        fflush(stdout);
        _exit(ok ? 0 : 1);
    }
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool write_child(const checkpoint *c, const char *dir, const char *sharded)
{
    return write_checkpoint(c, dir, sharded != NULL);
}

/* Delete a checkpoint directory: its files, then itself. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096 + 512];
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Write c under root/sub, load it, and delete it unless keep. */
static bool bench(const checkpoint *c, const char *root, const char *sub, bool sharded,
                  const char *backend, bool keep)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", root, sub);
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "bench_load: cannot make %s: %s\n", dir, strerror(errno));
        return false;
    }
    double bytes = total_bytes(c);
    printf("%s: %d tensors, %.2f GB %s%s\n", c->label, c->n, gb(bytes), kg_dtype_name(c->dtype),
           sharded ? ", sharded with an index" : ", one file");
    double t0 = now();
    bool ok = in_child(write_child, c, dir, sharded ? "sharded" : NULL);
    if (ok)
        printf("  write (random values, kg_safetensors_write): %.1f s\n", now() - t0);
    ok = ok && in_child(load_weights, c, dir, backend);
    /* kg_model_load makes f32 parameters: only when they fit in half the memory. */
    double f32_bytes = bytes * 4.0 / (double)kg_dtype_size(c->dtype);
    double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (ok && f32_bytes < mem / 2)
        ok = in_child(load_model, c, dir, backend);
    else if (ok)
        printf("  kg_model_load skipped: its f32 parameters (%.1f GB) exceed half the memory "
               "(%.1f GB)\n", gb(f32_bytes), gb(mem));
    if (!keep)
        remove_dir(dir);
    return ok;
}

int main(int argc, char **argv)
{
    int layers = 32;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", *backend = "cpu";
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--keep"))
            keep = true;
        else {
            fprintf(stderr, "usage: bench_load [--layers N] [--dir DIR] [--backend cpu|vulkan] "
                            "[--keep]\n");
            return 2;
        }
    }
    if (layers < 1 || layers > 32) {
        fprintf(stderr, "bench_load: --layers takes 1..32\n");
        return 2;
    }
    static checkpoint bert, mis;
    distilbert(&bert);
    mistral(&mis, layers);

    char root[4096];
    snprintf(root, sizeof root, "%s/kg_bench_load.XXXXXX", base);
    if (!mkdtemp(root)) {
        fprintf(stderr, "bench_load: cannot make a directory in %s: %s\n", base, strerror(errno));
        return 1;
    }
    struct statvfs vfs;
    double need = total_bytes(&bert) + total_bytes(&mis);
    if (statvfs(root, &vfs) == 0 && (double)vfs.f_bavail * (double)vfs.f_frsize < need * 1.05) {
        fprintf(stderr, "bench_load: %s has %.1f GB free; the checkpoints need %.1f GB (try "
                "--layers N or --dir)\n", base, gb((double)vfs.f_bavail * (double)vfs.f_frsize),
                gb(need));
        rmdir(root);
        return 1;
    }
    printf("bench_load: %s backend, files in %s, %.1f GB\n\n", backend, root, gb(need));
    bool ok = bench(&bert, root, "distilbert", false, backend, keep);
    printf("\n");
    ok = bench(&mis, root, "mistral", true, backend, keep) && ok;
    if (keep)
        printf("\nfiles kept in %s\n", root);
    else
        rmdir(root);
    return ok ? 0 : 1;
}
