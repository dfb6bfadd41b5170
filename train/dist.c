/* dist.c — data parallelism across processes: joining the MPI job that mpirun (or srun)
 * launched, the collectives the trainer calls (dist.h), and each rank's Vulkan device by its
 * local rank. The one file that includes mpi.h; built without MPI, or in a process launched
 * alone, the job is this process (rank 0 of 1) and every collective is the identity.
 */
#include "train/dist.h"
#include "train/kg_train.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KG_HAVE_MPI
#include <mpi.h>
#endif

/* MPI counts are int: larger buffers go in pieces of this many elements. */
#define CHUNK ((int64_t)1 << 28)

static struct {
    bool active; /* MPI_Init was called (and MPI_Finalize not yet) */
    int rank, size, local_rank;
    bool agreed_failure; /* every rank knows that one failed (kg__dist_first_failed) */
    char library[128];
} job = {.size = 1};

/* ---- Joining and leaving ------------------------------------------------------------------- */

static bool launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

bool kg_dist_begin(void)
{
#ifdef KG_HAVE_MPI
    if (job.active || !launched_by_mpi())
        return true;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return false;
    job.active = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &job.size);
    /* The ranks that share this machine's memory: MPI-3's portable form of
     * OMPI_COMM_WORLD_LOCAL_RANK. */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, job.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &job.local_rank);
    MPI_Comm_free(&node);
#endif
    return true;
}

void kg_dist_end(bool ok)
{
#ifdef KG_HAVE_MPI
    if (!job.active)
        return;
    if (!ok && !job.agreed_failure) /* the others may be waiting for this rank in a collective */
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    job.active = false;
#else
    (void)ok;
#endif
}

int kg_dist_rank(void) { return job.rank; }
int kg_dist_size(void) { return job.size; }
int kg_dist_local_rank(void) { return job.local_rank; }

const char *kg_dist_library(void)
{
#ifdef KG_HAVE_MPI
    if (!job.library[0]) { /* MPI_Get_library_version may be called before MPI_Init */
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(v, &len);
        v[len > 0 && len < (int)sizeof v ? len : 0] = 0;
        snprintf(job.library, sizeof job.library, "%.*s", (int)strcspn(v, ",\n"), v);
    }
    return job.library;
#else
    return "none (built without MPI)";
#endif
}

/* ---- Collectives --------------------------------------------------------------------------- */

void kg__dist_sum_f32(float *buf, int64_t n)
{
#ifdef KG_HAVE_MPI
    for (int64_t i = 0; job.size > 1 && i < n; i += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_FLOAT,
                      MPI_SUM, MPI_COMM_WORLD);
#else
    (void)buf, (void)n;
#endif
}

void kg__dist_sum_f64(double *buf, int n)
{
#ifdef KG_HAVE_MPI
    if (job.size > 1)
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)buf, (void)n;
#endif
}

void kg__dist_bcast(void *buf, size_t bytes)
{
#ifdef KG_HAVE_MPI
    for (size_t i = 0; job.size > 1 && i < bytes; i += (size_t)CHUNK)
        MPI_Bcast((char *)buf + i, (int)(bytes - i < (size_t)CHUNK ? bytes - i : (size_t)CHUNK),
                  MPI_BYTE, 0, MPI_COMM_WORLD);
#else
    (void)buf, (void)bytes;
#endif
}

int kg__dist_first_failed(bool failed)
{
    int first = failed ? job.rank : INT_MAX;
#ifdef KG_HAVE_MPI
    if (job.size > 1)
        MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
    if (first == INT_MAX)
        return -1;
    job.agreed_failure = true;
    return first;
}

/* ---- Devices ------------------------------------------------------------------------------- */

/* The backend's preference among device types (tensor/vulkan/device.c picks in this order). */
static int type_rank(const char *type)
{
    static const char *const order[] = {"discrete GPU", "integrated GPU", "virtual GPU", "CPU"};
    for (int i = 0; i < 4; i++)
        if (strncmp(type, order[i], strlen(order[i])) == 0)
            return i;
    return 4;
}

int kg_dist_pick_device(void)
{
    const char *set = getenv("KG_DEVICE");
    if (job.size < 2 || (set && *set))
        return -1;
    /* The devices as `krongrad info` lists them: "  [i] NAME — TYPE, Vulkan x.y.z", then
     * indented lines, one of them "features used  bufferDeviceAddress yes, shaderInt64 yes, …". */
    char text[16384];
    kg_vulkan_devices(text, sizeof text);
    int index[16], type[16], n = 0, best = 4;
    bool usable[16];
    for (char *line = text; line && *line && n < 16;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        unsigned i;
        const char *dash = strstr(line, " \xe2\x80\x94 "); /* " — " */
        if (sscanf(line, "  [%u]", &i) == 1 && dash) {
            index[n] = (int)i, type[n] = type_rank(dash + 5), usable[n++] = false;
        } else if (n && strstr(line, "features used") &&
                   strstr(line, "bufferDeviceAddress yes") && strstr(line, "shaderInt64 yes")) {
            usable[n - 1] = true;
            best = type[n - 1] < best ? type[n - 1] : best;
        }
        line = next;
    }
    int pick[16], k = 0;
    for (int i = 0; i < n; i++)
        if (usable[i] && type[i] == best)
            pick[k++] = index[i];
    if (k == 0)
        return -1;
    char value[16];
    snprintf(value, sizeof value, "%d", pick[job.local_rank % k]);
    setenv("KG_DEVICE", value, 1);
    return pick[job.local_rank % k];
}
