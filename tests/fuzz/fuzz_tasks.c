/* fuzz_tasks.c — libFuzzer target for the multiple-choice task readers and request building.
 * Input: one byte choosing the task name (none = detect, or one of the names), then the JSONL
 * file; anything after a line "#LST" is written as the file's NAME-labels.lst. Every item read
 * is turned into decoder requests and encoder pairs. Nothing may crash or leak, whatever the
 * bytes.
 */
#include "krongrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char jsonl_path[64], lst_path[64];

static void put(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(data, 1, n, f) != n)
        abort();
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/kg_fuzz_tasks_XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(jsonl_path, sizeof jsonl_path, "%s/f.jsonl", dir);
    snprintf(lst_path, sizeof lst_path, "%s/f-labels.lst", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[] = {NULL,        "arc-easy",   "openbookqa", "piqa",
                                  "hellaswag", "winogrande", "plain",      "synthetic-lang"};
    if (size < 1)
        return 0;
    const char *name = names[data[0] % (sizeof names / sizeof names[0])];
    data++, size--;
    static const char mark[] = "\n#LST\n";
    const uint8_t *split = NULL;
    for (size_t i = 0; i + sizeof mark - 1 <= size && !split; i++)
        if (memcmp(data + i, mark, sizeof mark - 1) == 0)
            split = data + i;
    size_t n_jsonl = split ? (size_t)(split - data) + 1 : size;
    put(jsonl_path, data, n_jsonl);
    if (split)
        put(lst_path, split + sizeof mark - 1, size - n_jsonl - (sizeof mark - 2));
    else
        unlink(lst_path);

    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    if (!ctx)
        return 0;
    kg_task *task = kg_task_read(ctx, name, jsonl_path);
    for (int64_t i = 0; task && i < task->n_items; i++) {
        kg_mc_pairs *d = kg_mc_decoder_requests(ctx, task->kind, &task->items[i]);
        kg_mc_pairs *e = kg_mc_encoder_pairs(ctx, task->kind, &task->items[i]);
        if (!d || !e)
            abort(); /* an item the reader accepted must build */
        double ll[KG_MC_MAX_CHOICES];
        for (int k = 0; k < d->n; k++)
            ll[k] = -(double)strlen(d->second[k]);
        if (kg_mc_argmax_norm(ll, d->norm_len, d->n) < 0)
            abort();
        kg_mc_pairs_free(d);
        kg_mc_pairs_free(e);
    }
    kg_task_free(task);
    kg_ctx_free(ctx);
    return 0;
}
