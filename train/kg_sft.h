/* kg_sft.h — supervised fine-tuning on your own data: the three JSONL layouts TRL's SFTTrainer
 * reads, turned into token rows with a loss mask; the masked language-modelling loss of a batch
 * of rows; held-out loss and perplexity; and a training run over rows through the one trainer
 * (kg_trainer_new_source), with its steps, accumulation, checkpoints and resume.
 *
 * Nothing here prints. Errors go to the context, naming the file, the line and the field, and
 * what was expected; functions return false / NULL then.
 */
#ifndef KG_SFT_H
#define KG_SFT_H

#include "train/kg_train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kg_sft_layout {
    KG_SFT_TEXT,              /* {"text": …}: the loss on every token */
    KG_SFT_PROMPT_COMPLETION, /* {"prompt": …, "completion": …}: on the completion's tokens */
    KG_SFT_MESSAGES,          /* {"messages": [{"role", "content"}, …]}: on assistant turns */
} kg_sft_layout;
const char *kg_sft_layout_name(kg_sft_layout l); /* "text", "prompt-completion", "messages" */

typedef struct kg_sft_options {
    int64_t max_length; /* > 0: a longer row keeps its first max_length tokens (TRL truncates on
                         * the right) and is counted in kg_sft_data.truncated; 0: no limit */
    bool loss_on_all;   /* prompt-completion and messages: the loss on every token */
} kg_sft_options;

/* One example: n token ids and, per token, whether the loss learns it (mask[i] = 1: token i is
 * a label, predicted from the tokens before it; mask[0] is always 0). */
typedef struct kg_sft_row {
    int32_t *ids;
    uint8_t *mask;
    int64_t n;
    int64_t line; /* its line in the file */
} kg_sft_row;

typedef struct kg_sft_data {
    char *path;
    kg_sft_layout layout;
    kg_sft_row *rows;
    int64_t n_rows;
    int64_t *lengths;    /* n_rows: each row's tokens (for grouping batches by length) */
    int64_t truncated;   /* rows cut to max_length */
    int64_t dropped;     /* rows left with no token to learn after the cut (not in rows) */
    int64_t tokens;      /* in rows */
    int64_t loss_tokens; /* of them labels */
} kg_sft_data;

/* Read a JSONL file of one layout (told from the first line; another layout on a later line is
 * an error naming it) and tokenize every row as TRL's SFTTrainer does:
 *   - text: encode(text + EOS) with the tokenizer's special tokens (BOS where it adds one); every
 *     token a label;
 *   - prompt-completion: encode(prompt + completion + EOS); the labels start at the first token
 *     where it differs from encode(prompt) (= len(encode(prompt)) whenever the prompt's tokens
 *     are a prefix of the whole's, which is TRL's rule);
 *   - messages: the conversation rendered with model_path's chat template
 *     (kg_chat_template_load) and encoded without added special tokens (the template writes
 *     BOS if it wants one); assistant turn i's labels run from the token where encode(render(
 *     messages[..i], add_generation_prompt)) stops agreeing with it to where encode(render(
 *     messages[..i])) does — the turn's text and its end-of-turn marker.
 * EOS is appended as its text (not after a text already ending with it). Roles are system, user
 * and assistant; content a string; an assistant turn may not be empty. NULL with the context's
 * error set; the caller frees the data with kg_sft_free. */
kg_sft_data *kg_sft_read(kg_ctx *ctx, const char *path, kg_tokenizer *tok,
                         const char *model_path, const kg_sft_options *o);
void kg_sft_free(kg_sft_data *d);

/* The mean negative log-likelihood of the labels of rows[0..n-1] of d (all together: a row of
 * many labels weighs more, as transformers' causal-LM loss with labels = -100 elsewhere), a
 * one-element tensor on the tape when grad is on. Rows are right-padded; causal attention keeps
 * padding out of every real position. *tokens (may be NULL): the tokens run, padding included.
 * NULL with the context's error set. */
kg_tensor *kg_sft_loss(const kg_model *m, const kg_sft_data *d, const int64_t *rows, int64_t n,
                       int64_t *tokens);

/* The held-out figures of d: the mean NLL over all its labels, exp of it, and the labels
 * counted; in batches of `batch` rows, without grad, the model in evaluation mode. */
typedef struct kg_sft_eval {
    double loss, perplexity;
    int64_t loss_tokens;
} kg_sft_eval;
bool kg_sft_evaluate(kg_model *m, const kg_sft_data *d, int64_t batch, kg_sft_eval *out);

/* Train m (an adapter attached) on train's rows as kg_train_run trains on a task (the same
 * steps, accumulation, schedule, checkpoints, --resume and saved adapter); with eval (may be
 * NULL) its loss and perplexity after every opts->eval_every steps (and before the first of a
 * fresh run) and at the end, as lines
 * {"step", "eval_loss", "eval_perplexity", "eval_tokens"} in metrics.jsonl and in out.
 * group_by_length: batches of rows of similar length (kg_train_source.lengths). */
bool kg_sft_run(kg_model *m, const kg_sft_data *train, const kg_sft_data *eval,
                const kg_train_config *cfg, const kg_run_options *opts, bool group_by_length,
                kg_run_result *out);

#ifdef __cplusplus
}
#endif
#endif
