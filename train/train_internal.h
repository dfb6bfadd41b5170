/* train_internal.h — what the trainer's files share inside train/ (not a public header): the
 * JSON text helpers the metrics, predictions and reports write with, and a monotonic clock.
 */
#ifndef KG_TRAIN_INTERNAL_H
#define KG_TRAIN_INTERNAL_H

#include "tensor/file_atomic.h"
#include "train/kg_train.h"

#include <stdio.h>

/* s as a JSON string (quotes, backslashes and control characters escaped) on f. */
void kg__json_string(FILE *f, const char *s);
/* A finite double as a JSON number ("%.9g"); NaN and infinities, which JSON lacks, as null. */
void kg__json_number(FILE *f, double v);
/* Seconds on a monotonic clock. */
double kg__now(void);

/* The trainer's parts the checkpoint reads and restores (trainer.c): its settings, its model,
 * the optimizer state of trainable tensor i (slot 0: AdamW m or SGD momentum; slot 1: AdamW v;
 * NULL where the optimizer keeps none) and the steps done. */
const kg_train_config *kg__trainer_config(const kg_trainer *t);
kg_model *kg__trainer_model(const kg_trainer *t);
kg_tensor *kg__trainer_state(const kg_trainer *t, int slot, int i);
void kg__trainer_set_step(kg_trainer *t, int64_t step);

/* A run's held-out figures: called by rank 0 after step `step` when opts->eval_every divides it
 * (last false; also at step 0, before a fresh run's first step) and once the run is done (last
 * true), with the metrics file (NULL when none) to
 * add a line to; fills out's figures. False with the context's error set. */
typedef bool (*kg__run_eval_fn)(void *user, kg_trainer *t, int64_t step, bool last,
                                FILE *metrics, kg_run_result *out);
/* kg_train_run around a trainer made by the caller (which frees it): the steps, metrics,
 * checkpoints, --resume, the adapter saved, and eval (may be NULL). out is zeroed by the caller,
 * first_loss and last_loss NaN. */
bool kg__train_run_trainer(kg_trainer *t, const kg_run_options *opts, kg__run_eval_fn eval,
                           void *eval_user, kg_run_result *out);

#endif
