/* tasks_internal.h — what the task readers share inside train/: the arena that holds a task's
 * strings, the line being read (for error messages), and one parser per file layout.
 */
#ifndef KG_TASKS_INTERNAL_H
#define KG_TASKS_INTERNAL_H

#include "train/kg_tasks.h"

#include <jansson.h>

/* A task's strings and arrays, freed at once with the task: a parser that fails halfway leaves
 * nothing to undo. */
typedef struct kg_task_store kg_task_store;
kg_task_store *kg__store_new(void);
void kg__store_free(kg_task_store *s);
/* n bytes aligned for any pointer; NULL when out of memory. */
void *kg__store_alloc(kg_task_store *s, size_t n);
char *kg__store_strndup(kg_task_store *s, const char *text, size_t n);
char *kg__store_strdup(kg_task_store *s, const char *text);

/* The line being parsed: errors name the file and the line. */
typedef struct kg_task_line {
    kg_ctx *ctx;
    const char *path;
    int64_t line;
    kg_task_store *store;
} kg_task_line;

/* "kg_task_read: PATH line N: <message>"; returns false. */
bool kg__line_error(const kg_task_line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "field \"FIELD\" is <v or missing>; expected EXPECTED"; returns false. */
bool kg__field_error(const kg_task_line *l, const char *field, const json_t *v,
                     const char *expected);
/* Out of memory while reading the line; returns false. */
bool kg__line_nomem(const kg_task_line *l);

/* Fill item from one JSON object in the given layout (KG_LAYOUT_GENERATED has none). The
 * item's strings go to l->store; id is left NULL when the line has none. */
bool kg__parse_item(const kg_task_line *l, kg_task_layout layout, const json_t *obj,
                    kg_mc_item *item);
/* The layout of a JSON object, told from its fields; false when none fits (no error set). */
bool kg__detect_layout(const json_t *obj, kg_task_layout *layout);

/* Call fn on each non-blank line of a JSONL file (bounded, BOM and CRLF removed, as the task
 * reader reads them) with its 1-based number, until fn returns false. False with the context's
 * error set (fn's, or the file's: missing, unreadable, a line too long). */
typedef bool (*kg__line_fn)(void *user, int64_t line, const char *text, size_t len);
bool kg__jsonl_each(kg_ctx *ctx, const char *path, kg__line_fn fn, void *user);

#endif
