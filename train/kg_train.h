/* kg_train.h — fine-tuning and evaluating a model on a multiple-choice task: scoring items as
 * lm-evaluation-harness scores them (decoders: the summed log-likelihood of each choice's
 * continuation; encoders: their multiple-choice head), the training loss, the trainer (AdamW or
 * SGD through the fused updates, warmup and decay, clipping, accumulation, checkpoints that
 * resume bit for bit), a whole run with its metrics and summary, continual (sequential)
 * fine-tuning and the trade-off comparison of adapter configurations over seeds.
 *
 * Nothing here prints: progress reaches the caller through a callback, and files are written
 * only where the caller names them (a run's --out directory). Errors go to the model's context
 * (kg_ctx_status / kg_error), naming the file, the item or the setting and what was expected;
 * functions return false / NULL then.
 */
#ifndef KG_TRAIN_H
#define KG_TRAIN_H

#include "models/kg_models.h"
#include "models/kg_peft.h"
#include "models/kg_tokenizer.h"
#include "train/kg_tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Scoring (train/eval.c) ------------------------------------------------------------------ */

/* A model with its tokenizer, ready to score one task's items. Decoders (a causal-LM head) are
 * scored on lm-eval's requests (kg_mc_decoder_requests), tokenized as lm-eval's _encode_pair
 * does (kg_mc_encode_request, with BOS when the tokenizer adds one); encoders (a
 * multiple-choice head) on kg_mc_encoder_pairs as [CLS] first [SEP] second [SEP]. */
typedef struct kg_mc_scorer {
    kg_model *model;
    kg_tokenizer *tok;
    kg_task_kind kind;  /* how requests are built */
    int64_t max_length; /* tokens in one row; 0: the model's positions (an encoder's are a
                         * limit; a decoder may be given more, as lm-eval's max_length). Decoders
                         * drop a longer row's first tokens (lm-eval's left truncation); encoders
                         * truncate the pair's longer side (HF's longest_first) */
    bool whole_rows;    /* decoders: run every row whole, even where an item's rows share a
                         * prompt that could run once for them all (the same scores; the path
                         * the shared one is tested against) */
} kg_mc_scorer;

/* Whether the scorer's model is scored as a decoder (causal LM) rather than by its head. */
bool kg_mc_is_decoder(const kg_mc_scorer *s);

/* The scores of n items as a tensor (N, K), K the most choices among them: summed
 * log-likelihoods of each continuation (decoders) or head logits (encoders); a choice an item
 * lacks scores -1e9. Recorded on the tape when grad is on. *tokens (may be NULL) receives the
 * tokens of the batch's rows, padding included. NULL with the context's error set (a model
 * with neither head, an item whose continuation does not fit max_length, ...). */
kg_tensor *kg_mc_scores(const kg_mc_scorer *s, const kg_mc_item *const *items, int n,
                        int64_t *tokens);

/* How a decoder learns a multiple-choice task (encoders always use CHOICES). */
typedef enum kg_mc_loss {
    KG_MC_LOSS_GOLD,    /* the LM loss of the gold continuation: mean NLL of its tokens */
    KG_MC_LOSS_CHOICES, /* cross entropy over the choices' summed log-likelihoods */
} kg_mc_loss;
const char *kg_mc_loss_name(kg_mc_loss loss); /* "gold", "choices" */

/* The loss of n labeled items (a one-element tensor on the tape). Encoders: cross entropy of
 * the head's logits against the gold choice. *tokens as kg_mc_scores. */
kg_tensor *kg_mc_loss_of(const kg_mc_scorer *s, kg_mc_loss loss, const kg_mc_item *const *items,
                         int n, int64_t *tokens);

typedef struct kg_eval_options {
    int64_t limit;           /* the first `limit` items only; 0: all */
    const char *predictions; /* NULL, or a file to write atomically, one JSON line per item:
                              * {"id": …, "scores": [one per choice], "pred": k, "gold": k}
                              * (gold -1 for an item without an answer) */
} kg_eval_options;

typedef struct kg_eval_result {
    int64_t n;        /* items scored */
    int64_t labeled;  /* of them with a gold answer: acc counts these */
    double acc;       /* lm-eval's acc: argmax of the scores is gold */
    double acc_norm;  /* decoders: argmax of ll / choice length in code points; NaN for encoders */
    int64_t tokens;   /* tokens run through the model, padding included */
    double seconds;
} kg_eval_result;

/* Score a task's items without grad, in batches that bound memory; the model is put in
 * evaluation mode (kg_model_train(m, false, 0)) and left so. False with the context's error
 * set. */
bool kg_mc_evaluate(const kg_mc_scorer *s, const kg_task *task, const kg_eval_options *opts,
                    kg_eval_result *out);

/* ---- Schedules and the trainer (train/trainer.c) ------------------------------------------- */

typedef enum kg_optimizer { KG_OPTIM_ADAMW, KG_OPTIM_SGD } kg_optimizer;
typedef enum kg_schedule {
    KG_SCHEDULE_CONSTANT, /* lr after the warmup */
    KG_SCHEDULE_LINEAR,   /* lr → 0 linearly at the last step (transformers' linear) */
    KG_SCHEDULE_COSINE,   /* lr → 0 along half a cosine (transformers' cosine) */
} kg_schedule;
const char *kg_optimizer_name(kg_optimizer o);
const char *kg_schedule_name(kg_schedule s);

/* What a trainable tensor is, from its PEFT name: the factor kinds the optimizer may give their
 * own learning rate (LoRA+'s idea) and `train --log-norms` reports on. */
typedef enum kg_factor_kind {
    KG_FACTOR_LORA_A,  /* LoRA's A (R, d_in): "….lora_A.weight" */
    KG_FACTOR_LORA_B,  /* LoRA's B (d_out, R), zero at the start */
    KG_FACTOR_KRON_A,  /* Kron-LoRA's / LoKr's outer factor A: "lokr_w1" (or w1_a, w1_b) */
    KG_FACTOR_KRON_B1, /* B₁ (dB2, R): "lokr_w2_a" */
    KG_FACTOR_KRON_B2, /* B₂ (R, dB1): "lokr_w2_b" */
    KG_FACTOR_OTHER,   /* heads trained whole, LoKr's full w2, full fine-tuning's weights */
    KG_FACTOR_COUNT
} kg_factor_kind;
/* The kind of the trainable tensor named name (PEFT's names, kg_model.trainable). */
kg_factor_kind kg_factor_kind_of(const char *name);
/* "lora_a", "lora_b", "a", "b1", "b2", "other". */
const char *kg_factor_kind_name(kg_factor_kind k);
/* Parse "b1=4,a=2" into mult (indexed by kind; kinds not named are left as they are). False
 * with an error naming the text and the kinds expected. */
bool kg_factor_lr_parse(kg_ctx *ctx, const char *text, double mult[KG_FACTOR_COUNT]);

/* One fine-tuning run's settings. The adapter configuration travels whole to kg_model_attach. */
typedef struct kg_train_config {
    kg_adapter_config adapter;
    kg_optimizer optimizer;
    double lr, weight_decay;
    double beta1, beta2, eps; /* AdamW */
    double momentum;          /* SGD */
    kg_schedule schedule;
    int64_t warmup;           /* steps of linear warmup from 0 */
    double clip;              /* clip the gradients' global L2 norm to this; 0: no clipping */
    int64_t steps;            /* optimizer steps */
    int64_t batch;            /* items per micro-batch */
    int64_t accumulate;       /* micro-batches per optimizer step */
    uint64_t seed;            /* data order, dropout masks (the adapter's init: adapter.seed) */
    kg_mc_loss loss;          /* decoders */
    int64_t max_length;       /* as kg_mc_scorer's */
    double lr_mult[KG_FACTOR_COUNT]; /* each factor kind's lr is lr·lr_mult[kind] (0: 1) */
    bool log_norms;           /* fill kg_step_stats' per-factor norms (costs a few reads a step) */
} kg_train_config;

/* transformers' defaults for fine-tuning an adapter: AdamW (β 0.9, 0.999, eps 1e-8,
 * weight decay 0), linear decay, no warmup, clip 1.0, 100 steps of batch 8, no accumulation,
 * seed 0, the GOLD loss, and kg_adapter_config_default(kind); the lr per kind, chosen by
 * measurement in docs/kron-lora.md. */
kg_train_config kg_train_config_default(kg_adapter_kind kind);

/* The learning rate of step (1-based): warmup from 0 over cfg->warmup steps, then the schedule
 * down to 0 at cfg->steps (transformers' get_*_schedule_with_warmup). */
double kg_schedule_lr(const kg_train_config *cfg, int64_t step);

/* What one optimizer step did. */
typedef struct kg_step_stats {
    int64_t step;      /* 1-based, after the update */
    double loss;       /* mean over the step's micro-batches */
    double lr;
    double grad_norm;  /* global L2 norm before clipping */
    int64_t tokens;    /* tokens run, padding included (by every rank) */
    double seconds;    /* wall time of the step */
    double comm_seconds; /* of seconds: agreeing with and summing across the other ranks (0 in
                          * a job of one process) */
    /* With cfg.log_norms: per factor kind, the L2 norm over all its tensors of the gradient
     * (before clipping) and of the update the optimizer applied (NaN: no tensor of that kind);
     * and the RMS of every adapter's output s·ΔW·x over the step's tokens and features (the
     * weights before the update; NaN without log_norms). */
    double grad_norms[KG_FACTOR_COUNT], update_norms[KG_FACTOR_COUNT];
    double delta_rms;
} kg_step_stats;

/* Trains m->trainable (kg_model_attach first) on the labeled items of task. Micro-batch i of
 * step s takes the items at positions (s·accumulate + i)·batch .. of an order shuffled per epoch
 * from the seed, and its dropout masks come from the seed, s and i, so a run is a function of
 * its config, and a resumed run continues it exactly. In a job of N ranks (kg_dist_begin) the
 * step's accumulate micro-batches are shared out in order, rank r taking i from
 * accumulate·r/N to accumulate·(r+1)/N, and the gradients are summed across ranks before the
 * update: a step's global batch (batch × accumulate) and its numbers do not depend on N. The
 * optimizer's state is made here and lives until kg_trainer_free. The model, tokenizer and task
 * must outlive the trainer. */
typedef struct kg_trainer kg_trainer;
kg_trainer *kg_trainer_new(kg_model *m, kg_tokenizer *tok, const kg_task *task,
                           const kg_train_config *cfg);
/* What else a trainer can learn from (kg_sft_source: SFT rows): n examples, and the mean loss
 * of a micro-batch of them (examples: n indices into 0 .. n-1) as a one-element tensor on the
 * tape, *tokens the tokens it ran (padding included); NULL with the context's error set.
 * lengths (NULL, or n values): group examples by length — each 50 steps' worth (50 × batch ×
 * accumulate) of an epoch's shuffle sorted longest first, as transformers' LengthGroupedSampler
 * — so a micro-batch pads little. name names the data in errors. The source's memory must
 * outlive the trainer. */
typedef struct kg_train_source {
    int64_t n;
    kg_tensor *(*loss)(void *user, const int64_t *examples, int64_t n, int64_t *tokens);
    void *user;
    const int64_t *lengths;
    const char *name;
} kg_train_source;
/* A trainer of m on src, as kg_trainer_new otherwise. */
kg_trainer *kg_trainer_new_source(kg_model *m, const kg_train_source *src,
                                  const kg_train_config *cfg);
void kg_trainer_free(kg_trainer *t);
/* One optimizer step (each micro-batch in its own scope, gradients accumulated, summed across
 * ranks, clipped, then the fused update). False with the context's error set; in a job of
 * several ranks every rank returns false when one fails, the others' error naming that rank. */
bool kg_trainer_step(kg_trainer *t, kg_step_stats *out);
/* Steps done so far (0 for a fresh trainer; a checkpoint's step after kg_trainer_load). */
int64_t kg_trainer_steps_done(const kg_trainer *t);

/* ---- Checkpoints (train/checkpoint.c) ------------------------------------------------------- */

/* One safetensors file holding the trainable tensors (PEFT's names), the optimizer's state
 * ("optimizer.m.NAME", "optimizer.v.NAME" / "optimizer.momentum.NAME") and, as metadata, the
 * step, the seed, the global data position (items drawn: the same for any number of ranks), the
 * ranks of the job that wrote it (not checked on resume) and the settings a resume must share
 * with the run (adapter, optimizer, schedule, batch, ...). Written atomically through kg_safetensors_write:
 * a crash or a failed write leaves the previous checkpoint at path whole. */
bool kg_checkpoint_save(const kg_trainer *t, const char *path);
/* Restore a checkpoint into a trainer made with the same settings: the tensors' values in
 * place and the step. A file of another run (settings, names or shapes that differ) is an
 * error naming the file and the first difference; the trainer is unchanged then. */
bool kg_checkpoint_load(kg_trainer *t, const char *path);

/* ---- A whole run (train/trainer.c) ---------------------------------------------------------- */

typedef void (*kg_progress_fn)(void *user, const kg_step_stats *s, int64_t total_steps);

typedef struct kg_run_options {
    const char *out_dir;        /* NULL: nothing written; else metrics.jsonl, checkpoint.safetensors
                                 * and the PEFT adapter (or, for full, model.safetensors) */
    bool resume;                /* continue from out_dir/checkpoint.safetensors when it exists */
    int64_t checkpoint_every;   /* steps between checkpoints (0: only at the end) */
    int64_t stop_at;            /* > 0: stop after this step, as if killed there (a checkpoint is
                                 * written; --resume continues); the schedule still spans
                                 * cfg->steps */
    int64_t eval_limit;         /* items of the eval task scored (0: all) */
    int64_t eval_every;         /* > 0: also score the eval task before the first step and after
                                 * every N-th (a learning curve: metrics.jsonl, out->curve) */
    kg_progress_fn progress;    /* NULL, or after every step */
    void *user;
    const char *base_model;     /* recorded in adapter_config.json */
} kg_run_options;

/* One point of a learning curve: the eval task scored after `step` optimizer steps. */
typedef struct kg_eval_point {
    int64_t step;
    double acc, acc_norm;
} kg_eval_point;

typedef struct kg_run_result {
    int64_t trainable;        /* trainable parameters */
    int64_t steps;            /* steps done in this call (fewer than configured after a resume) */
    double first_loss, last_loss; /* mean loss of the first and the last 10% of steps */
    double mean_step_seconds; /* mean wall time of a step */
    double tokens_per_second;
    size_t peak_bytes;        /* the backend's peak memory during training */
    bool evaluated;
    kg_eval_result eval;      /* on the eval task, when one was given */
    /* SFT (kg_sft_run): the held-out rows' loss (mean NLL per loss token), its perplexity
     * exp(loss) and the loss tokens it averaged, when held-out rows were given */
    double eval_loss, eval_perplexity;
    int64_t eval_loss_tokens;
    double *losses;           /* the loss of every step of this call (malloc'd; the caller frees) */
    kg_eval_point *curve;     /* with eval_every: n_curve points, the last one the final eval
                               * (malloc'd; the caller frees; NULL without) */
    int64_t n_curve;
} kg_run_result;

/* Train m (an adapter already attached) on train up to cfg->steps steps (from the checkpoint's
 * step when resuming), writing metrics and checkpoints as opts says; once the last step is done,
 * save the adapter to opts->out_dir and score eval (may be NULL); with opts->eval_every, eval is
 * scored during training too (peak memory and step times count the training alone). The model is left in
 * evaluation mode with the trained adapter. In a job of several ranks every rank calls this with
 * the same settings: rank 0 alone reads the checkpoint it resumes from (the others receive its
 * tensors), writes files, calls opts->progress and scores eval; the others' out->evaluated is
 * false. */
bool kg_train_run(kg_model *m, kg_tokenizer *tok, const kg_task *train, const kg_task *eval,
                  const kg_train_config *cfg, const kg_run_options *opts, kg_run_result *out);

/* ---- Data parallelism across processes (train/dist.c) -------------------------------------- */

/* A training job of N processes (ranks) launched by mpirun, or srun, runs `krongrad train` with
 * the same settings on every rank: each loads the model, the trainer shares each step's
 * micro-batches out and sums the gradients with MPI_Allreduce through host memory, and rank 0
 * alone writes files. Built without MPI, or in a process not launched by an MPI launcher, the
 * job is this process alone: rank 0 of 1, and nothing here talks to anyone. MPI's own errors
 * (a rank that dies mid-collective) end the whole job, as MPI_ERRORS_ARE_FATAL does. */

/* Join the job this process was launched in (MPI_Init when the launcher's environment says
 * so: OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK). Call once, before making a context. False
 * when MPI_Init fails. */
bool kg_dist_begin(void);
/* Leave the job: MPI_Finalize when ok or when every rank has agreed to stop on an error (a
 * failed kg_trainer_step or kg_train_run); otherwise — this rank alone failed, and the others
 * may be waiting for it — MPI_Abort, which ends every rank with a nonzero exit status. */
void kg_dist_end(bool ok);
int kg_dist_rank(void);       /* 0 .. kg_dist_size() - 1 */
int kg_dist_size(void);       /* ranks in the job (1 without MPI) */
int kg_dist_local_rank(void); /* this rank's index among the job's ranks on this machine */
/* "Open MPI v4.1.4" (the library's version line up to its first comma), or "none (built
 * without MPI)". */
const char *kg_dist_library(void);
/* Before making a Vulkan context in a job with several ranks on this machine: unless KG_DEVICE
 * is set, set it to the device of this local rank — local rank modulo the usable devices of the
 * kind the backend picks by default (discrete GPUs, else integrated, ...), so that each rank of
 * an 8-GPU machine gets its own GPU and ranks share lavapipe. Returns the index chosen, or -1
 * when it left KG_DEVICE alone. */
int kg_dist_pick_device(void);

/* ---- Continual fine-tuning (train/continual.c) --------------------------------------------- */

/* One adapter trained on n tasks in turn (a fresh optimizer per stage); after each stage every
 * task's eval set is scored. acc[i·n + j] is task j's accuracy after stage i (stage −1, the
 * model before training, in before[j]). Forgetting of task j (j < n−1): the best accuracy it
 * had after any stage up to n−2 minus its accuracy at the end (Chaudhry et al.); the average
 * over those tasks in *forgetting. Stages write to opts->out_dir/stage-<i>-<task name>. */
typedef struct kg_continual_result {
    int n;
    double *before;     /* n */
    double *acc;        /* n × n */
    double forgetting;  /* mean over the first n−1 tasks; 0 for n = 1 */
    double *task_forgetting; /* n (0 for the last) */
} kg_continual_result;
bool kg_continual_run(kg_model *m, kg_tokenizer *tok, const kg_task *const *train,
                      const kg_task *const *eval, int n, const kg_train_config *cfg,
                      const kg_run_options *opts, kg_continual_result *out);
void kg_continual_result_free(kg_continual_result *r);

/* ---- The trade-off report (train/compare.c) ------------------------------------------------- */

#define KG_COMPARE_MAX_BITS 2 /* int8 and int4 */

/* One configuration's runs over seeds. */
typedef struct kg_compare_row {
    char label[96];            /* "kronlora r8 A2x4", "lora r8", "lora r3 (matched)" */
    kg_adapter_config adapter; /* targets / modules_to_save: those of the compare's config */
    bool matched;              /* the LoRA whose rank matches the first Kron-LoRA's count */
    double lr;                 /* the peak learning rate its runs used */
    int64_t trainable;
    int n_seeds;
    double acc_mean, acc_std;  /* over seeds (sample std, n−1) */
    double step_seconds_mean, step_seconds_std;
    double peak_mb_mean;
    double acc_norm_mean, acc_norm_std; /* decoders' acc_norm; NaN for encoders */
    double *acc, *acc_norm;    /* n_seeds */
    double **losses;           /* n_seeds curves of steps values */
    /* With eval_every: per seed n_curve points of held-out accuracy against step (the same
     * steps for every seed), and the first step at which the mean over seeds reaches
     * kg_compare_result.target_acc (-1: never). */
    kg_eval_point **curves;
    int64_t n_curve;
    int64_t steps_to_target;
    /* The trained adapter's factors quantized to kg_compare_result.bits[b] (int8 / int4):
     * accuracy per seed, mean and std (n_bits of kg_compare_result). */
    double *acc_q[KG_COMPARE_MAX_BITS];
    double acc_q_mean[KG_COMPARE_MAX_BITS], acc_q_std[KG_COMPARE_MAX_BITS];
} kg_compare_row;

typedef struct kg_compare_result {
    int n_rows;
    kg_compare_row *rows;
    int64_t steps;
    double base_acc;           /* the model before training */
    int n_bits, bits[KG_COMPARE_MAX_BITS]; /* the adapter quantizations scored (8, 4) */
    int64_t eval_every;        /* 0: no learning curves */
    double target_acc;         /* steps_to_target's accuracy (see kg_compare_run) */
} kg_compare_result;

/* Load the model fresh for every configuration × seed (seeds cfg->seed .. + n_seeds − 1), attach
 * configs[i] (with the targets and modules_to_save of cfg->adapter), train on train and score
 * eval. cfg->lr is every configuration's peak rate; 0 gives each configuration its adapter's
 * default (kg_train_config_default), so a comparison does not train LoRA at Kron-LoRA's rate.
 * When add_matched and a Kron-LoRA configuration is given, a LoRA row is added whose rank
 * gives the parameter count closest to the first Kron-LoRA's. progress (may be NULL) is told
 * each run's steps. adapter_bits (n_bits of 8 or 4, at most KG_COMPARE_MAX_BITS; NULL for none):
 * each trained adapter is also scored with its factors quantized to those bits
 * (kg_model_quantize_adapter, from the f32 factors each time). */
/* Learning curves: with every > 0, each run scores eval before training and every `every`
 * steps (kg_run_options.eval_every); steps_to_target is then the first step at which a row's
 * mean accuracy reaches target_acc, or, when target_acc is NaN or <= 0, halfway from the
 * accuracy before training to the best row's final mean accuracy. NULL: no curves. */
typedef struct kg_compare_curves {
    int64_t every;
    double target_acc;
} kg_compare_curves;
typedef void (*kg_compare_progress_fn)(void *user, const char *label, uint64_t seed,
                                       const kg_step_stats *s, int64_t total_steps);
bool kg_compare_run(kg_ctx *ctx, const char *model_path, const kg_task *train,
                    const kg_task *eval, const kg_train_config *cfg,
                    const kg_adapter_config *configs, int n_configs, int n_seeds,
                    bool add_matched, int64_t eval_limit, const int *adapter_bits, int n_bits,
                    const kg_compare_curves *curves, kg_compare_progress_fn progress,
                    void *user, kg_compare_result *out);
void kg_compare_result_free(kg_compare_result *r);
/* The table as JSON, and an SVG of accuracy (mean ± std) against trainable parameters beside
 * the loss curves (mean over seeds) and, with curves, held-out accuracy against step (mean ±
 * std band over seeds), each written atomically. */
bool kg_compare_write_json(kg_ctx *ctx, const kg_compare_result *r, const char *path);
bool kg_compare_write_svg(kg_ctx *ctx, const kg_compare_result *r, const char *path);

#ifdef __cplusplus
}
#endif
#endif
