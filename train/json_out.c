/* json_out.c — the few pieces of JSON text the trainer writes by hand (metrics lines,
 * predictions, the compare table), text files written atomically, and the monotonic clock its
 * timings use.
 */
#include "train/train_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void kg__json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", f);
        else if (*c == '\t')
            fputs("\\t", f);
        else if (*c == '\r')
            fputs("\\r", f);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

void kg__json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

double kg__now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

FILE *kg__atomic_open(kg_ctx *ctx, const char *path, char **tmp)
{
    *tmp = NULL;
    /* A device or a pipe (/dev/stdout, a FIFO) is written in place: renaming over it would
     * replace it. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        FILE *f = fopen(path, "w");
        if (!f)
            kg_set_error(ctx, KG_ERR_ARG, "cannot write %s: %s", path, strerror(errno));
        return f;
    }
    size_t n = strlen(path) + 16;
    *tmp = malloc(n);
    if (!*tmp) {
        kg_set_error(ctx, KG_ERR_NOMEM, "out of host memory writing %s", path);
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        kg_set_error(ctx, KG_ERR_ARG, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(*tmp);
        }
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

bool kg__atomic_close(kg_ctx *ctx, FILE *f, char *tmp, const char *path, bool ok)
{
    bool written = !ferror(f) && fflush(f) == 0 && (!tmp || fsync(fileno(f)) == 0);
    written = fclose(f) == 0 && written;
    if (!tmp)
        return (ok && written) || (ok && kg_set_error(ctx, KG_ERR_ARG, "writing %s failed: %s",
                                                       path, strerror(errno)));
    if (ok && written && chmod(tmp, 0644) == 0 && rename(tmp, path) == 0) {
        free(tmp);
        return true;
    }
    unlink(tmp);
    free(tmp);
    return ok ? kg_set_error(ctx, KG_ERR_ARG, "writing %s failed: %s", path, strerror(errno))
              : false;
}
