/* file_atomic.c — a temporary file beside the target, flushed, fsynced and renamed over it: a
 * crash, a full disk or an error halfway never leaves a half-written file under the real name.
 */
#include "tensor/file_atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *kg__atomic_open(kg_ctx *ctx, const char *path, char **tmp)
{
    *tmp = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
        FILE *f = fopen(path, "w");
        if (!f)
            kg_set_error(ctx, KG_ERR_ARG, "%s: cannot open for writing: %s", path,
                         strerror(errno));
        return f;
    }
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    *tmp = malloc(n);
    if (!*tmp) {
        kg_set_error(ctx, KG_ERR_NOMEM, "%s: out of host memory", path);
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        kg_set_error(ctx, KG_ERR_ARG, "%s: cannot create a temporary file beside it: %s", path,
                     strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(*tmp);
        }
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

/* The rename is durable only once the directory entry is on disk too. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

bool kg__atomic_close(kg_ctx *ctx, FILE *f, char *tmp, const char *path, bool ok)
{
    bool written = !ferror(f) && fflush(f) == 0 && (!tmp || fsync(fileno(f)) == 0);
    int err = errno;
    if (fclose(f) != 0 && written) {
        written = false;
        err = errno;
    }
    if (ok && written && !tmp)
        return true;
    const char *what = "cannot write";
    if (ok && written) {
        if (chmod(tmp, 0644) == 0 && rename(tmp, path) == 0) {
            free(tmp);
            sync_dir(path);
            return true;
        }
        err = errno;
        what = "cannot rename the temporary file onto it";
    }
    if (tmp)
        unlink(tmp);
    free(tmp);
    /* A caller that failed has said why; a failed write or rename is said here. */
    return !kg_ctx_status(ctx) &&
           kg_set_error(ctx, KG_ERR_ARG, "%s: %s: %s", path, what, strerror(err));
}
