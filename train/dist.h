/* dist.h — the collectives the trainer calls (train/dist.c; not a public header): so that no
 * file but dist.c includes mpi.h. In a job of one process every one of them is the identity.
 * Every rank must make the same calls in the same order; MPI's own failures end the job.
 */
#ifndef KG_TRAIN_DIST_H
#define KG_TRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sum n floats / doubles element-wise over the ranks, in place (MPI_Allreduce). */
void kg__dist_sum_f32(float *buf, int64_t n);
void kg__dist_sum_f64(double *buf, int n);
/* Overwrite bytes of buf on every rank with rank 0's (MPI_Bcast). */
void kg__dist_bcast(void *buf, size_t bytes);
/* Every rank says whether it failed; returns the lowest rank that did, or -1 when none did. A
 * failure found here is known to every rank (kg_dist_end then finalizes instead of aborting). */
int kg__dist_first_failed(bool failed);

#endif
