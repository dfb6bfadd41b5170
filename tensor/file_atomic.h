/* file_atomic.h — files that appear whole or not at all (every writer of checkpoints, adapters,
 * model files, task files and tables uses these two calls).
 */
#ifndef KG_FILE_ATOMIC_H
#define KG_FILE_ATOMIC_H

#include "tensor/kg_tensor.h"

#include <stdbool.h>
#include <stdio.h>

/* kg__atomic_open makes path.tmp.XXXXXX beside path (its name in *tmp) and opens it for writing;
 * a character device or FIFO (/dev/stdout, a pipe) is opened in place (*tmp NULL), since
 * renaming over it would replace it. kg__atomic_close flushes and fsyncs the file,
 * makes it 0644 and renames it over path when ok and every write succeeded, then fsyncs the
 * directory; otherwise it removes the temporary file, so a failed or interrupted write leaves the
 * old file as it was. Both set ctx's error naming path; kg__atomic_close frees tmp. */
FILE *kg__atomic_open(kg_ctx *ctx, const char *path, char **tmp);
bool kg__atomic_close(kg_ctx *ctx, FILE *f, char *tmp, const char *path, bool ok);

#endif
