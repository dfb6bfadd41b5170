/* eval.c — `krongrad eval`: score a multiple-choice task as lm-evaluation-harness does (decoders:
 * summed log-likelihoods of each choice's continuation; encoders: their multiple-choice head),
 * optionally with a PEFT adapter, print acc (and acc_norm for decoders) and write one JSON line
 * per item: {"id", "scores", "pred", "gold"}.
 */
#include "finetune.h"

#include <math.h>
#include <string.h>

typedef struct eval_opts {
    const char *model, *adapter, *task, *data, *predictions, *backend, *frozen;
    int64_t limit, max_length, adapter_bits;
} eval_opts;

static const kg_flag flags[] = {
    {"model", KG_FLAG_STRING, offsetof(eval_opts, model), "PATH",
     "an HF model directory or a .gguf file (required)"},
    {"adapter", KG_FLAG_STRING, offsetof(eval_opts, adapter), "DIR",
     "a PEFT adapter directory (krongrad train's --out, or one PEFT saved)"},
    {"task", KG_FLAG_STRING, offsetof(eval_opts, task), "NAME",
     "arc-easy, arc-challenge, openbookqa, piqa, hellaswag, winogrande, commonsense_qa, "
     "social_iqa, plain, synthetic-lang "
     "(default: told from the file)"},
    {"data", KG_FLAG_STRING, offsetof(eval_opts, data), "FILE",
     "the items (JSONL); synthetic-* tasks generate 200 test items without it"},
    {"limit", KG_FLAG_INT, offsetof(eval_opts, limit), "N", "score only the first N items"},
    {"predictions", KG_FLAG_STRING, offsetof(eval_opts, predictions), "OUT",
     "write one JSON line per item: id, scores, pred, gold"},
    {"max-length", KG_FLAG_INT, offsetof(eval_opts, max_length), "N",
     "tokens per row (default: the model's positions)"},
    {"backend", KG_FLAG_STRING, offsetof(eval_opts, backend), "cpu|vulkan",
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"},
    {"frozen", KG_FLAG_STRING, offsetof(eval_opts, frozen), "DTYPE", FROZEN_HELP},
    {"adapter-bits", KG_FLAG_INT, offsetof(eval_opts, adapter_bits), "8|4",
     "also score the adapter with its factors quantized to int8 / int4 (per output row) and "
     "report the change"},
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "krongrad eval: %s\n(see krongrad eval --help)\n", msg);
    return 2;
}

static int run_eval(void *p)
{
    const eval_opts *o = p;
    if (!o->model)
        return usage_error("--model PATH is required");
    if (!o->data && !(o->task && strncmp(o->task, "synthetic-", 10) == 0))
        return usage_error("--data FILE is required (only synthetic-* tasks generate items)");
    if (o->limit < 0 || o->max_length < 0)
        return usage_error("--limit and --max-length take N >= 0");
    if (o->adapter_bits && (!o->adapter || (o->adapter_bits != 8 && o->adapter_bits != 4)))
        return usage_error("--adapter-bits takes 8 or 4, with --adapter DIR");
    kg_ctx *ctx = kg_cli_context(o->backend, NULL);
    if (!ctx)
        return 1;
    kg_task *task = finetune_task(ctx, o->task, o->data, KG_SPLIT_TEST);
    kg_tokenizer *tok = task ? kg_tokenizer_load(ctx, o->model) : NULL;
    kg_model *m = tok ? finetune_model(ctx, o->model, o->frozen, NULL, 0) : NULL;
    if (m && o->adapter)
        kg_peft_load(m, o->adapter);
    int rc = 1;
    if (m && !kg_ctx_status(ctx)) {
        kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind,
                          .max_length = o->max_length};
        kg_eval_options eo = {.limit = o->limit, .predictions = o->predictions};
        kg_eval_result r;
        if (kg_mc_evaluate(&s, task, &eo, &r)) {
            printf("task      %s (%s)\n", task->name, task->path ? task->path : "generated");
            printf("items     %lld scored, %lld with answers\n", (long long)r.n,
                   (long long)r.labeled);
            printf("acc       %.4f\n", r.acc);
            if (!isnan(r.acc_norm))
                printf("acc_norm  %.4f\n", r.acc_norm);
            printf("time      %.2f s (%.0f tokens/s)\n", r.seconds,
                   r.seconds > 0 ? (double)r.tokens / r.seconds : 0.0);
            rc = 0;
        }
        kg_eval_result q;
        eo.predictions = NULL; /* the file keeps the f32 adapter's predictions */
        if (!rc && o->adapter_bits) {
            rc = 1;
            if (kg_model_quantize_adapter(m, (int)o->adapter_bits) && kg_mc_evaluate(&s, task, &eo, &q)) {
                printf("acc       %.4f with the adapter in int%lld (%+.4f against f32)\n", q.acc,
                       (long long)o->adapter_bits, q.acc - r.acc);
                if (!isnan(q.acc_norm))
                    printf("acc_norm  %.4f with the adapter in int%lld (%+.4f against f32)\n",
                           q.acc_norm, (long long)o->adapter_bits, q.acc_norm - r.acc_norm);
                rc = 0;
            }
        }
    }
    if (rc)
        rc = kg_cli_fail("eval", ctx);
    kg_model_free(m);
    kg_tokenizer_free(tok);
    kg_task_free(task);
    kg_ctx_free(ctx);
    return rc;
}

const kg_command kg_cmd_eval = {
    .name = "eval",
    .summary = "Score a multiple-choice task as lm-evaluation-harness does (acc, acc_norm).",
    .usage = "--model PATH [--adapter DIR] --task NAME --data FILE [options]",
    .flags = flags,
    .n_flags = sizeof flags / sizeof flags[0],
    .opts_size = sizeof(eval_opts),
    .run = run_eval,
};
