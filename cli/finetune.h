/* finetune.h — what `krongrad train`, `compare` and `demo` share: the fine-tuning flags (one
 * struct and one table of rows, so their --help agrees), turning them into a kg_train_config,
 * reading or generating tasks, loading a model ready to fine-tune, the progress line and the
 * number formats of the summary tables.
 */
#ifndef KG_CLI_FINETUNE_H
#define KG_CLI_FINETUNE_H

#include "cli.h"
#include "train/kg_train.h"

#include <stddef.h>

typedef struct finetune_opts {
    const char *model, *task, *tasks, *adapter, *kron_a, *targets, *modules_to_save;
    const char *optimizer, *schedule, *loss, *out, *backend;
    const char *frozen; /* the base model's frozen linear weights: f32 (NULL), bf16, ..., nf4 */
    const char *lr_mult, *kron_init; /* "b1=4,a=2"; "b1-zero" or "a-zero" */
    double kron_a_gain;
    kg_cli_list data, eval_data;
    int64_t rank, lokr_factor, steps, batch, accumulate, warmup, seed, max_length;
    int64_t checkpoint_every, stop_at, eval_limit, eval_every;
    double alpha, dropout, lr, weight_decay, momentum, clip;
    bool resume, log_norms;
} finetune_opts;

/* The rows of finetune_opts for a command whose options struct T holds it as field `ft`. */
#define FINETUNE_FLAGS(T)                                                                        \
    {"model", KG_FLAG_STRING, offsetof(T, ft.model), "PATH",                                    \
     "an HF model directory or a .gguf file (required)"},                                        \
    {"task", KG_FLAG_STRING, offsetof(T, ft.task), "NAME",                                      \
     "arc-easy, arc-challenge, openbookqa, piqa, hellaswag, winogrande, commonsense_qa, "        \
     "social_iqa, plain, synthetic-lang"},                                                       \
    {"data", KG_FLAG_LIST, offsetof(T, ft.data), "FILE",                                        \
     "training items (JSONL; one per --tasks entry); synthetic-* tasks generate theirs"},       \
    {"eval-data", KG_FLAG_LIST, offsetof(T, ft.eval_data), "FILE",                              \
     "held-out items scored after training (synthetic-*: 200 generated test items)"},           \
    {"adapter", KG_FLAG_STRING, offsetof(T, ft.adapter), "KIND",                                \
     "lora, kronlora, lokr or full (default kronlora)"},                                         \
    {"rank", KG_FLAG_INT, offsetof(T, ft.rank), "R", "adapter rank (default 8)"},               \
    {"alpha", KG_FLAG_FLOAT, offsetof(T, ft.alpha), "A",                                        \
     "scale numerator: the adapter adds (A/R)·ΔW (default 2·R)"},                              \
    {"dropout", KG_FLAG_FLOAT, offsetof(T, ft.dropout), "P",                                    \
     "dropout on the adapter's input while training (default 0)"},                              \
    {"kron-a", KG_FLAG_STRING, offsetof(T, ft.kron_a), "dA2xdA1",                               \
     "Kron-LoRA's A shape (default 2x4)"},                                                       \
    {"kron-init", KG_FLAG_STRING, offsetof(T, ft.kron_init), "b1-zero|a-zero",                 \
     "which Kron-LoRA factor starts at zero (default b1-zero)"},                                 \
    {"kron-a-gain", KG_FLAG_FLOAT, offsetof(T, ft.kron_a_gain), "G",                            \
     "Kron-LoRA's A ~ U(+-G*sqrt(3/dA1)) (default 1; 0.577 is kaiming-uniform)"},              \
    {"lokr-factor", KG_FLAG_INT, offsetof(T, ft.lokr_factor), "F",                              \
     "LoKr decompose_factor (default -1: PEFT's)"},                                              \
    {"targets", KG_FLAG_STRING, offsetof(T, ft.targets), "LIST",                                \
     "HF module names, comma-separated, or all-linear (default)"},                               \
    {"modules-to-save", KG_FLAG_STRING, offsetof(T, ft.modules_to_save), "LIST",                \
     "heads trained whole (default: the model's own head)"},                                     \
    {"steps", KG_FLAG_INT, offsetof(T, ft.steps), "N", "optimizer steps (default 100)"},        \
    {"batch", KG_FLAG_INT, offsetof(T, ft.batch), "B", "items per micro-batch (default 8)"},    \
    {"accumulate", KG_FLAG_INT, offsetof(T, ft.accumulate), "K",                                \
     "micro-batches per optimizer step (default 1)"},                                            \
    {"lr", KG_FLAG_FLOAT, offsetof(T, ft.lr), "LR", "peak learning rate (default " LR_HELP ")"}, \
    {"lr-mult", KG_FLAG_STRING, offsetof(T, ft.lr_mult), "KIND=X,...",                          \
     "per-factor lr multipliers, KIND lora_a, lora_b, a, b1, b2, other (default none)"},         \
    {"weight-decay", KG_FLAG_FLOAT, offsetof(T, ft.weight_decay), "WD",                         \
     "weight decay (AdamW: decoupled; default 0)"},                                              \
    {"optimizer", KG_FLAG_STRING, offsetof(T, ft.optimizer), "adamw|sgd",                       \
     "the optimizer (default adamw)"},                                                           \
    {"momentum", KG_FLAG_FLOAT, offsetof(T, ft.momentum), "M", "SGD momentum (default 0.9)"},   \
    {"warmup", KG_FLAG_INT, offsetof(T, ft.warmup), "N",                                        \
     "steps of linear warmup from 0 (default 0)"},                                               \
    {"schedule", KG_FLAG_STRING, offsetof(T, ft.schedule), "linear|cosine|constant",            \
     "decay after the warmup (default linear)"},                                                 \
    {"clip", KG_FLAG_FLOAT, offsetof(T, ft.clip), "NORM",                                       \
     "clip the gradients' global norm (default 1; 0: off)"},                                     \
    {"seed", KG_FLAG_INT, offsetof(T, ft.seed), "S",                                            \
     "seed of the data order, dropout and the adapter's init (default 0)"},                     \
    {"loss", KG_FLAG_STRING, offsetof(T, ft.loss), "gold|choices",                              \
     "decoders: LM loss of the gold answer, or cross entropy over the choices (default gold)"},\
    {"max-length", KG_FLAG_INT, offsetof(T, ft.max_length), "N",                                \
     "tokens per row (default: the model's positions)"},                                         \
    {"eval-limit", KG_FLAG_INT, offsetof(T, ft.eval_limit), "N",                                \
     "score only the first N held-out items (default all)"},                                     \
    {"eval-every", KG_FLAG_INT, offsetof(T, ft.eval_every), "N",                                \
     "also score the held-out items before training and every N steps: a learning curve "       \
     "(default 0: at the end only)"},                                                            \
    {"backend", KG_FLAG_STRING, offsetof(T, ft.backend), "cpu|vulkan",                          \
     "where to compute (default: a real GPU if Vulkan finds one, else cpu)"}

/* The per-adapter default learning rates (kg_train_config_default; docs/kron-lora.md). */
#define LR_HELP "lora and lokr 2e-3, kronlora 3e-3, full 2e-4"

/* --frozen's help, shared by train and eval (compare loads its models unquantized). */
#define FROZEN_HELP                                                                              \
    "store the frozen linear weights as f32, bf16, f16, q8_0, q4_0, q4_1 or nf4 (default f32; "  \
    "GGUF-packed weights stay packed)"

/* The defaults above (kronlora, rank 8, alpha 2·R unless given, ...). */
void finetune_defaults(finetune_opts *o);

/* The run's settings from the flags: false after printing what was wrong (a usage error). */
bool finetune_config(const char *cmd, const finetune_opts *o, kg_train_config *cfg);

/* The task named name from path, or, for a synthetic-* name without a path, generated: the
 * training split (1000 items) or the test split (200 items). NULL with the context's error. */
kg_task *finetune_task(kg_ctx *ctx, const char *name, const char *path, kg_split split);

/* Check the adapter configuration against the model's config before any weight is loaded
 * (an encoder without a head is checked as the multiple-choice model training will make). */
bool finetune_validate(kg_ctx *ctx, const char *model_path, const kg_adapter_config *a);

/* The model ready to fine-tune: loaded with its frozen linear weights stored as `frozen` (a
 * dtype name; NULL: f32), an encoder without a head given a fresh multiple-choice head (seed),
 * then cfg's adapter attached (when cfg is not NULL). */
kg_model *finetune_model(kg_ctx *ctx, const char *path, const char *frozen,
                         const kg_adapter_config *cfg, uint64_t seed);

/* The progress line on stderr, redrawn in place, only when stderr is a terminal: step, loss,
 * tokens/s, ETA. finetune_progress_end ends the line. user: the label (NULL for none). */
void finetune_progress(void *user, const kg_step_stats *s, int64_t total_steps);
void finetune_progress_end(void);

/* n with thousands separators ("840,481") into buf. */
const char *finetune_count(int64_t n, char *buf, size_t cap);

#endif
