/* synthetic.c — a multiple-choice task the project generates, for the demo: one a pretrained
 * model cannot know (it starts near chance) and a fine-tuned one can learn (a consistent rule
 * that carries over to words never seen in training). Deterministic from (name, split, seed).
 */
#include "train/tasks_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const kg_synthetic_tasks[] = {"synthetic-lang", NULL};

/* synthetic-lang's rule: each made-up language marks its words with its own suffix. */
#define LANGS 8
#define SHOWN 4 /* choices per item */
static const char *const lang_names[LANGS] = {"Zorbic", "Kelmish", "Vantu",   "Orrish",
                                              "Tessic", "Brumian", "Quolo",   "Dravish"};
static const char *const lang_suffixes[LANGS] = {"ix", "ova", "eth", "ump",
                                                 "ar", "ein", "ust", "ime"};

/* Stems are consonant-vowel-consonant: 14 * 5 * 14 = 980 of them. */
static const char consonants[] = "bdfgklmnprstvz";
static const char vowels[] = "aeiou";
#define N_STEMS (14 * 5 * 14)

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A value in [0, n) (n small: the modulo bias is below 2^-50). */
static int below(uint64_t *state, int n)
{
    return (int)(splitmix64(state) % (uint64_t)n);
}

static void stem_text(int i, char out[4])
{
    out[0] = consonants[i / 70];
    out[1] = vowels[i / 14 % 5];
    out[2] = consonants[i % 14];
    out[3] = 0;
}

/* Which split a stem belongs to: a fixed fifth of the stems is held out for test. */
static kg_split stem_split(int i)
{
    uint64_t s = (uint64_t)i;
    return splitmix64(&s) % 5 == 0 ? KG_SPLIT_TEST : KG_SPLIT_TRAIN;
}

static bool generate_item(kg_task_store *store, uint64_t *rng, const int *stems, int n_stems,
                          const char *id, kg_mc_item *item)
{
    int lang = below(rng, LANGS);
    char stem[4];
    stem_text(stems[below(rng, n_stems)], stem);
    /* The right suffix and three others, without repeats, then shuffled. */
    int pool[LANGS], shown[SHOWN];
    for (int k = 0; k < LANGS; k++)
        pool[k] = k;
    pool[lang] = pool[LANGS - 1];
    shown[0] = lang;
    for (int k = 1; k < SHOWN; k++) {
        int j = below(rng, LANGS - k);
        shown[k] = pool[j];
        pool[j] = pool[LANGS - 1 - k];
    }
    for (int k = SHOWN - 1; k > 0; k--) {
        int j = below(rng, k + 1), t = shown[k];
        shown[k] = shown[j];
        shown[j] = t;
    }
    char question[64];
    snprintf(question, sizeof question, "Which of these words is %s?", lang_names[lang]);
    item->id = kg__store_strdup(store, id);
    item->question = kg__store_strdup(store, question);
    item->choices = kg__store_alloc(store, SHOWN * sizeof(char *));
    if (!item->id || !item->question || !item->choices)
        return false;
    item->n_choices = SHOWN;
    for (int k = 0; k < SHOWN; k++) {
        char word[16];
        snprintf(word, sizeof word, "%s%s", stem, lang_suffixes[shown[k]]);
        if (!(item->choices[k] = kg__store_strdup(store, word)))
            return false;
        if (shown[k] == lang)
            item->gold = k;
    }
    return true;
}

kg_task *kg_task_generate(kg_ctx *ctx, const char *name, kg_split split, uint64_t seed,
                          int64_t n)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (!name || strcmp(name, "synthetic-lang") != 0) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_task_generate: unknown task '%s'; expected "
                     "synthetic-lang", name ? name : "(NULL)");
        return NULL;
    }
    if (n < 1 || n > 1000000 || (split != KG_SPLIT_TRAIN && split != KG_SPLIT_TEST)) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_task_generate: %lld items of split %d; expected 1 to "
                     "10^6 items of KG_SPLIT_TRAIN or KG_SPLIT_TEST", (long long)n, (int)split);
        return NULL;
    }
    int stems[N_STEMS], n_stems = 0;
    for (int i = 0; i < N_STEMS; i++)
        if (stem_split(i) == split)
            stems[n_stems++] = i;

    kg_task *task = calloc(1, sizeof *task);
    bool ok = task != NULL;
    if (ok) {
        task->kind = KG_TASK_PLAIN;
        task->layout = KG_LAYOUT_GENERATED;
        task->name = strdup(name);
        task->store = kg__store_new();
        task->items = calloc((size_t)n, sizeof(kg_mc_item));
        ok = task->name && task->store && task->items;
    }
    /* One stream per (seed, split): a test set is not a shifted train set. */
    uint64_t rng = seed * 0x100000001B3ull + (uint64_t)split * 0x9E3779B97F4A7C15ull + 1;
    const char *split_name = split == KG_SPLIT_TRAIN ? "train" : "test";
    for (int64_t i = 0; ok && i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%llu-%lld", split_name, (unsigned long long)seed,
                 (long long)i);
        ok = generate_item(task->store, &rng, stems, n_stems, id, &task->items[i]);
        task->n_items = i + 1;
    }
    if (!ok) {
        kg_task_free(task);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_generate: out of memory for %lld items",
                     (long long)n);
        return NULL;
    }
    return task;
}
