/* mpi_close.c — the mpi suite's comparison of two runs: every tensor of two safetensors files
 * (adapters, checkpoints), or the "loss" and "grad_norm" of every step of two metrics.jsonl files,
 * equal within a tolerance (|a - b| <= tol · max(1, |a|)). Prints the largest difference; exit
 * status 0 when within, 1 when not, 2 for files it cannot compare.
 *
 *   mpi_close TOL A.safetensors B.safetensors
 *   mpi_close TOL --metrics A/metrics.jsonl B/metrics.jsonl
 */
#include "krongrad.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double worst; /* the largest difference relative to max(1, |a|) */

static void see(double a, double b)
{
    double d = fabs(a - b) / fmax(1.0, fabs(a));
    worst = isnan(d) || d > worst ? (isnan(d) ? INFINITY : d) : worst;
}

static int tensors(const char *pa, const char *pb)
{
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_weights *a = kg_weights_open(ctx, pa), *b = kg_weights_open(ctx, pb);
    int rc = a && b && kg_weights_count(a) == kg_weights_count(b) ? 0 : 2;
    for (int i = 0; rc == 0 && i < kg_weights_count(a); i++) {
        const char *name = kg_weights_name(a, i);
        int na, nb;
        int64_t sa[KG_MAX_DIMS], sb[KG_MAX_DIMS];
        if (!kg_weights_shape(a, name, &na, sa) || !kg_weights_shape(b, name, &nb, sb) ||
            na != nb || memcmp(sa, sb, sizeof sa[0] * (size_t)na) != 0) {
            fprintf(stderr, "mpi_close: %s: missing from %s or another shape\n", name, pb);
            rc = 2;
            break;
        }
        kg_scope scope = kg_scope_begin(ctx);
        float *x = kg_tensor_to_f32(kg_weights_load(a, name, KG_DTYPE_F32, na, sa));
        float *y = kg_tensor_to_f32(kg_weights_load(b, name, KG_DTYPE_F32, nb, sb));
        int64_t n = 1;
        for (int d = 0; d < na; d++)
            n *= sa[d];
        for (int64_t k = 0; x && y && k < n; k++)
            see(x[k], y[k]);
        rc = x && y ? 0 : 2;
        free(x);
        free(y);
        kg_scope_end(ctx, scope);
    }
    if (rc)
        fprintf(stderr, "mpi_close: cannot compare %s and %s: %s\n", pa, pb, kg_error(ctx));
    kg_weights_close(a);
    kg_weights_close(b);
    kg_ctx_free(ctx);
    return rc;
}

/* The steps' lines of a metrics file (those with a "loss"), as JSON objects. */
static int steps_of(const char *path, json_t **out, int cap)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    while (f && n < cap && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (json_object_get(j, "loss"))
            out[n++] = j;
        else
            json_decref(j);
    }
    if (f)
        fclose(f);
    return f ? n : -1;
}

static int metrics(const char *pa, const char *pb)
{
    json_t *a[1024], *b[1024];
    int na = steps_of(pa, a, 1024), nb = steps_of(pb, b, 1024), rc = 0;
    if (na < 1 || na != nb) {
        fprintf(stderr, "mpi_close: %s has %d steps, %s %d\n", pa, na, pb, nb);
        rc = 2;
    }
    for (int i = 0; rc == 0 && i < na; i++) {
        static const char *const keys[] = {"step", "loss", "grad_norm", "lr", "tokens"};
        for (int k = 0; k < 5; k++)
            see(json_number_value(json_object_get(a[i], keys[k])),
                json_number_value(json_object_get(b[i], keys[k])));
    }
    for (int i = 0; i < na; i++)
        json_decref(a[i]);
    for (int i = 0; i < nb; i++)
        json_decref(b[i]);
    return rc;
}

int main(int argc, char **argv)
{
    bool m = argc == 5 && strcmp(argv[2], "--metrics") == 0;
    if (argc != 4 && !m) {
        fprintf(stderr, "usage: mpi_close TOL A B | mpi_close TOL --metrics A B\n");
        return 2;
    }
    double tol = atof(argv[1]);
    int rc = m ? metrics(argv[3], argv[4]) : tensors(argv[2], argv[3]);
    if (rc)
        return rc;
    printf("largest difference %.3g (tolerance %.3g)\n", worst, tol);
    return worst <= tol ? 0 : 1;
}
