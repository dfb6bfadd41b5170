/* internal.h — what the tensor layer's own files share: the tensor and context structs, the op
 * enum and table, the tape node and the backend interface. Nothing outside tensor/ includes it.
 */
#ifndef KG_INTERNAL_H
#define KG_INTERNAL_H

#include "kg_tensor.h"

#include <assert.h>
#include <stdarg.h>
#include <time.h>

/* Broken internal invariants, never reachable from public input (docs/errors.md). */
#define KG_ASSERT(cond) assert(cond)

/* Host memory (alloc.c): malloc and friends, except that a test can make the n-th call from now
 * fail (kg__fail_alloc_after(n); -1 turns that off; it returns the count that was left, -1 once
 * the failure has happened). Every allocation of the tensor layer uses
 * them. Sizes of 0 allocate 1 byte, so NULL always means out of memory. */
void *kg__malloc(size_t bytes);
void *kg__calloc(size_t n, size_t size);
void *kg__realloc(void *p, size_t bytes);
void *kg__aligned_alloc(size_t align, size_t bytes);
long kg__fail_alloc_after(long n);
/* How many times the four above were called so far, in every thread (a test counts a step's). */
unsigned long kg__alloc_calls(void);

/* Whether freed blocks are kept for reuse: not under AddressSanitizer, so that a use after free
 * is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define KG__KEEP_FREED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KG__KEEP_FREED 0
#endif
#endif
#ifndef KG__KEEP_FREED
#define KG__KEEP_FREED 1
#endif

/* A pool of freed small blocks, kept by power-of-two class (64 B to 64 KiB) for the next take of
 * that class, so that a loop of steps making the same small tensors (a decode step: headers,
 * one-row activations) stops calling malloc after its first steps. One owner (a context or its
 * backend), one thread at a time. The bytes kept stay below the most bytes live at once
 * (for small blocks that at most doubles a small footprint; the CPU backend's cache of large
 * blocks bounds live and kept bytes together: cpu/backend.c), and under
 * AddressSanitizer nothing is kept. Blocks are 64-byte aligned; a size of KG__POOL_MAX_BYTES or
 * more is not pooled (plain kg__aligned_alloc and free). kg__pool_take returns NULL when out of
 * memory; kg__pool_give takes back a block that kg__pool_take gave for the same bytes;
 * kg__pool_drop frees the kept blocks. */
enum { KG__POOL_CLASSES = 11, KG__POOL_MAX_BYTES = 1 << 16 };
typedef struct kg__pool {
    void *free[KG__POOL_CLASSES]; /* each class's kept blocks, linked through their first word */
    size_t live, high, kept;      /* bytes (of the classes' sizes) */
} kg__pool;
void *kg__pool_take(kg__pool *p, size_t bytes);
void kg__pool_give(kg__pool *p, void *block, size_t bytes);
void kg__pool_drop(kg__pool *p);
/* The bytes of the class that holds a block of bytes (bytes itself when not pooled). */
size_t kg__pool_size(size_t bytes);

/* ---- Ops ------------------------------------------------------------------------------------ */

typedef enum kg_op {
    /* views and copies */
    KG_OP_RESHAPE,
    KG_OP_PERMUTE,
    KG_OP_SLICE,
    KG_OP_EXPAND,
    KG_OP_CONTIGUOUS,
    KG_OP_CAST,
    /* elementwise */
    KG_OP_ADD,
    KG_OP_SUB,
    KG_OP_MUL,
    KG_OP_DIV,
    KG_OP_SCALE,
    KG_OP_EXP,
    KG_OP_LOG,
    KG_OP_SQRT,
    KG_OP_RSQRT,
    KG_OP_TANH,
    KG_OP_SIGMOID,
    KG_OP_ERF,
    KG_OP_RELU,
    KG_OP_GELU,
    KG_OP_GELU_GRAD, /* internal: gelu's backward, g·(Φ(x) + x·φ(x)) in one pass */
    KG_OP_SILU,
    KG_OP_SWIGLU,      /* silu(gate) ⊙ up in one pass */
    KG_OP_SWIGLU_GRAD, /* internal: its backward, d_gate and d_up stacked along dim 0 */
    KG_OP_STEP,
    KG_OP_EQ,
    KG_OP_MASKED_FILL,
    KG_OP_DROPOUT,
    /* reductions */
    KG_OP_SUM,
    KG_OP_MAX,
    /* linear algebra */
    KG_OP_MATMUL,
    KG_OP_MATMUL_Q, /* x · Wᵀ (or x · W) with a frozen, possibly block-quantized W */
    KG_OP_KRON,
    KG_OP_LOWRANK_LINEAR,
    KG_OP_KRON_LINEAR,
    /* neural-network ops */
    KG_OP_EMBEDDING,
    KG_OP_SCATTER_ADD_ROWS,
    KG_OP_SOFTMAX,
    KG_OP_LOG_SOFTMAX,
    KG_OP_SOFTMAX_GRAD, /* internal: softmax's backward in one pass over each row */
    KG_OP_LAYER_NORM,
    KG_OP_RMS_NORM,
    KG_OP_NORM_STATS, /* internal: the per-row mean and 1/std a norm's backward uses */
    KG_OP_ROPE,
    KG_OP_CROSS_ENTROPY,
    KG_OP_ONE_HOT,
    KG_OP_CONCAT,
    KG_OP_LINEAR_LOG_PROB,      /* the LM head and log-softmax at the targets, vocabulary chunked */
    KG_OP_LINEAR_LOG_PROB_GRAD, /* internal: its backward, recomputing each chunk's logits */
    /* optimizer updates (in place) */
    KG_OP_ADAMW,
    KG_OP_SGD,
    KG_OP_COUNT
} kg_op;

/* Non-tensor arguments of an op (axes, flags, scalars, seeds): one named struct per op family. */
typedef union kg_opparams {
    struct { int64_t dim[KG_MAX_DIMS]; int ndim; } shape; /* reshape, expand: the shape asked */
    struct { int axes[KG_MAX_DIMS]; } permute;
    struct { int axis; int64_t start, length; } slice;
    struct { kg_dtype dtype; } cast;
    struct { float scale, shift; } affine;            /* scale: scale·x + shift */
    struct { float value; } fill;                     /* masked_fill */
    struct { float scale; } softmax;                  /* softmax(scale·x + mask), its grad */
    struct { float p; uint64_t seed; } dropout;
    struct { int axis, keepdim, user_axis; } reduce;  /* axis made non-negative; as given */
    struct { bool trans_a, trans_b; } matmul;
    struct { int64_t rows; } scatter;                 /* scatter_add_rows */
    struct { bool has_weight, has_bias, rms; float eps; } norm; /* rms: norm_stats only */
    struct { int64_t pos0; bool inverse; float theta; } rope;
    struct { int64_t classes; int32_t ignore_index; bool weight; } classes; /* one_hot,
                                  * cross_entropy, linear_log_prob (weight: form x's unit gradients) */
    struct { int axis, user_axis; } concat;
    kg_adamw adamw;
    kg_sgd sgd;
} kg_opparams;

/* The shape, dtype and rank a shape rule gives the output; a view op's rule also gives the
 * strides and offset of the view into its input's storage. */
typedef struct kg_shape {
    kg_dtype dtype;
    int ndim;
    int64_t dim[KG_MAX_DIMS];
    int64_t stride[KG_MAX_DIMS];
    int64_t offset;
} kg_shape;

/* One op being run: its inputs, output and parameters. Kernels read it. */
typedef struct kg_opcall {
    kg_ctx *ctx;
    kg_op op;
    int n_in;
    kg_tensor *in[KG_MAX_INPUTS];
    kg_tensor *out;
    kg_opparams p;
} kg_opcall;

/* A recorded op on the tape is the call that made the tensor. */
typedef kg_opcall kg_node;

/* Shape rule: check inputs, fill the output's shape, or set the context's error and return
 * false. CPU kernel: compute c->out from c->in (contiguous unless KG_OPF_STRIDED). Backward
 * rule: given the gradient of the output, set gin[i] for each input, using the public ops. */
/* Whether t (at most 4 dims, or contiguous) is a stack of matrices a GEMM reads in place: its
 * last two dims have one unit stride. Then *flip says the matrix is stored transposed (column
 * major) and *ld is its leading dimension; its batch dims may have any strides, 0 included. */
bool kg__matrix_view(const kg_tensor *t, bool *flip, int64_t *ld);

typedef bool (*kg_shape_fn)(const kg_opcall *c, kg_shape *out);
typedef bool (*kg_kernel_fn)(const kg_opcall *c);
typedef void (*kg_backward_fn)(const kg_node *n, kg_tensor *gout, kg_tensor **gin);

enum {
    KG_OPF_VIEW = 1,    /* output shares the input's storage; no kernel runs */
    KG_OPF_STRIDED = 2, /* the CPU kernel reads strided (broadcast, transposed) inputs itself */
    KG_OPF_INPLACE = 4, /* updates its inputs in place (optimizers): no output is made, the op
                           returns its first input, and nothing is recorded on the tape */
    KG_OPF_QUANT = 8,   /* takes block-quantized inputs (its shape rule says which); other ops
                           refuse them before their shape rule runs */
    KG_OPF_MATRIX = 16, /* reads each input as a stack of matrices through its strides (kernels
                         * ask kg__matrix_view): transposed, sliced, permuted and broadcast
                         * batch dims are read in place, other layouts copied first */
};

typedef struct kg_op_info {
    const char *name;
    int n_in;         /* inputs, or -1 for a variable count (concat) */
    unsigned flags;   /* KG_OPF_* */
    kg_shape_fn shape;
    kg_kernel_fn cpu;
    kg_backward_fn backward; /* NULL: not differentiable */
    kg_kernel_fn vulkan;     /* records the op's dispatches (tensor/vulkan/ops.c); NULL: a view */
} kg_op_info;

extern const kg_op_info kg_op_table[];

/* Check, allocate, run and record one op. The heart of the library (op.c). */
kg_tensor *kg__op(kg_op op, int n_in, kg_tensor *const *in, const kg_opparams *p);

/* ---- Tensors and contexts ------------------------------------------------------------------ */

typedef struct kg_storage {
    int refs;
    size_t bytes;
    void *handle; /* the backend's: a host pointer on the CPU backend */
} kg_storage;

struct kg_tensor {
    kg_ctx *ctx;
    kg_dtype dtype;
    int ndim;
    int64_t shape[KG_MAX_DIMS];
    int64_t stride[KG_MAX_DIMS]; /* in elements */
    int64_t offset;              /* in elements */
    kg_storage *storage;
    size_t slot; /* index in ctx->tensors, or SIZE_MAX when owned by another tensor (a grad) */
    kg_tensor *kept_prev, *kept_next; /* in ctx->kept while kept past its scope (kg_tensor_keep) */
    bool kept;

    bool requires_grad;
    kg_node *node;   /* the op that made this tensor, while on the tape */
    kg_tensor *grad; /* accumulated gradient of a leaf, owned by it */
    kg_tensor *gacc; /* gradient being accumulated during kg_backward */
    unsigned visit;  /* kg_backward's mark */
};

typedef struct kg_backend kg_backend;

struct kg_ctx {
    kg_status status;
    char message[512];
    const kg_backend *be;
    void *be_state;
    kg_tensor **tensors; /* every tensor of the context, in creation order (freed ones NULL) */
    size_t n_tensors, cap_tensors;
    kg_tensor *kept; /* tensors kept past their scope, freed by kg_ctx_free */
    kg__pool headers; /* freed kg_tensor and kg_storage structs, for the next ones */
    int no_grad;
    int scopes; /* open scopes: tensors made inside one are a step's activations */
    unsigned visit; /* generation counter for graph walks */
    bool profiling; /* kg_profile: per-op time tallies */
    double op_seconds[KG_OP_COUNT];
    double op_flops[KG_OP_COUNT]; /* while profiling: the GEMM-like ops' FLOPs */
    uint64_t op_calls[KG_OP_COUNT];
    uint64_t op_made[KG_OP_COUNT]; /* results made through kg__op, always counted: tests check
                                      with it that every op of the table has a case */
    kg_profile_host host; /* kg_profile: the framework's own time around the kernels */
};

/* "[2,3] f32" into buf; returns buf. */
const char *kg__describe(const kg_tensor *t, char *buf, size_t size);
#define KG_DESC(t) kg__describe((t), (char[64]){0}, 64)
/* "[2,3]": a shape that is not (yet) a tensor's, such as the one an op was asked for. */
const char *kg__describe_shape(int ndim, const int64_t *shape, char *buf, size_t size);
#define KG_DESC_SHAPE(nd, dims) kg__describe_shape((nd), (dims), (char[160]){0}, 160)

/* A fresh contiguous tensor. owned=false makes it belong to no scope (a leaf's grad). fn names
 * the public function being run, for error messages. */
kg_tensor *kg__tensor_alloc(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                            const int64_t *shape, bool owned);
/* A new tensor header on t's storage (views). */
kg_tensor *kg__tensor_view(kg_tensor *t, const char *fn, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset);
void kg__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t kg__numel(int ndim, const int64_t *shape);

/* Checked shape arithmetic, the one place sizes are combined: every tensor has at most
 * KG_MAX_NUMEL elements (product of its non-zero sizes), so element counts, strides and byte
 * offsets fit in int64 with room to spare. kg__mul / kg__add give false when the result is
 * negative or above KG_MAX_NUMEL; kg__check_shape sets KG_ERR_SHAPE / KG_ERR_RANGE naming fn. */
#define KG_MAX_NUMEL ((int64_t)1 << 59)
bool kg__mul(int64_t a, int64_t b, int64_t *out);
bool kg__add(int64_t a, int64_t b, int64_t *out);
bool kg__check_shape(kg_ctx *ctx, const char *fn, int ndim, const int64_t *shape);
/* Normalize a possibly negative axis; false (with error) when out of range. */
bool kg__axis(kg_ctx *ctx, const char *fn, int ndim, int axis, int *out);
/* Copy src's elements into the existing (possibly strided) view dst, same shape. */
bool kg__assign(kg_tensor *dst, kg_tensor *src);
/* t seen as 4 dims aligned right (as broadcasting aligns shapes): its sizes, 1 in the padding,
 * and its strides, 0 in the padding and on size-1 dims, so that indexing a broadcast output with
 * them reads t. Strided kernels on every backend walk tensors this way. */
void kg__pad4(const kg_tensor *t, int64_t dim[4], int64_t stride[4]);
/* Sum g down to `shape` (undo broadcasting), as every broadcasting op's backward needs. */
kg_tensor *kg__sum_to(kg_tensor *g, int ndim, const int64_t *shape);
/* Broadcast shape of a and b; false if they do not broadcast. */
bool kg__broadcast_shape(const kg_tensor *a, const kg_tensor *b, kg_shape *out);
/* Shape-rule helpers: a dtype check that names the op, shape equality, a tensor's shape. */
bool kg__want_dtype(const kg_opcall *c, int i, kg_dtype want);
bool kg__same_shape(const kg_tensor *a, const kg_tensor *b);
void kg__shape_of(const kg_tensor *t, kg_shape *s);

/* Block-quantized dtypes (quant.c, docs/quantization.md). Rows of a quantized [N, K] tensor
 * are whole blocks, so a kernel dequantizes any run of rows on its own: kg__dequantize_rows
 * writes rows [r0, r0 + nr) of q (shape [N, K]) as f32 into out (nr·K floats). */
static inline bool kg__dtype_is_block(kg_dtype d) { return d >= KG_DTYPE_Q8_0 && d < KG_DTYPE_COUNT; }
void kg__dequantize_rows(const void *q, kg_dtype dtype, int64_t n, int64_t k, int64_t r0,
                         int64_t nr, float *out);
/* Elements [first, first + count) of the flat (row-major) tensor of numel elements; first and
 * count are multiples of 32 for the GGML dtypes and even for nf4 (half blocks decode alone). */
void kg__dequantize_range(const void *q, kg_dtype dtype, int64_t numel, int64_t first,
                          int64_t count, float *out);
/* Quantize x [N, K] (f32) into out (kg_dtype_bytes(dtype, N·K) bytes); false when out of
 * host memory. */
bool kg__quantize(const float *x, kg_dtype dtype, int64_t n, int64_t k, void *out);
/* Where a tensor's block-quantized layout is checked: 2-D, K a multiple of the block. */
bool kg__check_block_shape(kg_ctx *ctx, const char *fn, kg_dtype dtype, int ndim,
                           const int64_t *shape);

/* Element i of a packed array of dtype, as a number; and the reverse (i32 saturates). */
double kg__load(const void *base, kg_dtype dtype, int64_t i);
void kg__store(void *base, kg_dtype dtype, int64_t i, double v);

/* Counter-based random numbers: a pure function of (seed, index), so any backend and the
 * backward pass can redraw them. splitmix64 of (seed, index): cheap, well mixed, and easy to
 * write in GLSL too (shaders/common.glsl). Inline: dropout draws one per element, and a call
 * per element was most of its time. */
static inline uint32_t kg__hash(uint64_t seed, uint64_t index)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)(z >> 32);
}
static inline float kg__uniform01(uint64_t seed, uint64_t index)
{
    return (float)(kg__hash(seed, index) >> 8) * (1.0f / 16777216.0f);
}

/* ---- Backends ------------------------------------------------------------------------------- */

/* Every backend fills this struct; nothing above the tensor layer knows which one runs. */
struct kg_backend {
    const char *name;
    bool (*init)(kg_ctx *ctx, void **state);
    void (*destroy)(void *state);
    /* NULL when out of memory. persistent: the tensor outlives steps (parameters, gradients,
     * optimizer state) rather than being an activation of the current scope; a backend may
     * place the two apart so that a step's churn does not fragment long-lived memory. */
    void *(*alloc)(void *state, size_t bytes, bool persistent);
    void (*release)(void *state, void *handle, size_t bytes);
    bool (*upload)(void *state, void *handle, size_t offset, const void *src, size_t bytes);
    bool (*download)(void *state, void *handle, size_t offset, void *dst, size_t bytes);
    bool (*run)(const kg_opcall *c); /* run (or queue) one op's kernel */
    bool (*flush)(void *state);
    void (*memory)(void *state, size_t *current, size_t *peak);
    void (*reset_peak)(void *state);
    const char *(*device)(void *state); /* what it runs on, for people */
    bool (*is_gpu)(void *state);        /* a real GPU (discrete, integrated or virtual) */
    /* Start or stop timing ops; a backend then adds each op's time with kg__profile_add. */
    void (*profile)(void *state, bool on);
};

/* The monotonic clock in seconds (profiling). */
static inline double kg__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tally one run of op for kg_profile_read. */
static inline void kg__profile_add(kg_ctx *ctx, kg_op op, double seconds)
{
    ctx->op_seconds[op] += seconds;
    ctx->op_calls[op]++;
}

extern const kg_backend kg_cpu_backend;

#endif
