/* kg_tensor.h — the public tensor, op and autograd API of krongrad.
 *
 * A context (kg_ctx) owns a backend, every tensor made in it, and the first error that happened
 * in it. Ops are eager: each checks its inputs, allocates its output and runs (or, on the GPU,
 * queues) its kernel. Every op returns NULL when given NULL or when its context is already in
 * error, so a whole step can be written straight and checked once with kg_ctx_status().
 *
 * A context and its tensors are used by one thread at a time; separate contexts may run on
 * separate threads.
 *
 * Shapes are outermost first (PyTorch order). Letters used in comments: B batch, T time,
 * C channels, N rows (tokens), V vocabulary, H heads, D head dim, R rank.
 */
#ifndef KG_TENSOR_H
#define KG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KG_MAX_DIMS 4

typedef enum kg_dtype {
    KG_DTYPE_F32,
    KG_DTYPE_F16,
    KG_DTYPE_BF16,
    KG_DTYPE_I32,
    /* Block-quantized storage for frozen weights (docs/quantization.md): 2-D [N, K] tensors with
     * K a multiple of the block, made by kg_quantize, read by kg_cast(q, KG_DTYPE_F32) and
     * kg_matmul_q; never views, never a gradient. GGML's q8_0, q4_0, q4_1 (blocks of 32) and
     * QLoRA's nf4 (blocks of 64, double-quantized scales). */
    KG_DTYPE_Q8_0,
    KG_DTYPE_Q4_0,
    KG_DTYPE_Q4_1,
    KG_DTYPE_NF4,
    KG_DTYPE_COUNT
} kg_dtype;

typedef enum kg_status {
    KG_OK = 0,
    KG_ERR_ARG,    /* a NULL or otherwise invalid argument */
    KG_ERR_SHAPE,  /* shapes that do not fit the op */
    KG_ERR_DTYPE,  /* a dtype the op does not take */
    KG_ERR_RANGE,  /* an axis, index or size out of range */
    KG_ERR_NOMEM,  /* host or device memory exhausted */
    KG_ERR_DEVICE, /* the backend or device failed */
    KG_ERR_STATE   /* a call made at the wrong time (e.g. backward twice) */
} kg_status;

typedef enum kg_backend_kind {
    KG_BACKEND_CPU,
    KG_BACKEND_VULKAN
} kg_backend_kind;

typedef struct kg_ctx kg_ctx;
typedef struct kg_tensor kg_tensor;

/* ---- Contexts and errors ------------------------------------------------------------------ */

/* Make a context on a backend. Returns NULL only when the host is out of memory; a backend that
 * cannot start (no Vulkan device, say) gives a context in error whose kg_error() says why.
 * The caller owns the context and frees it, with every tensor in it, by kg_ctx_free. */
kg_ctx *kg_ctx_new(kg_backend_kind kind);
void kg_ctx_free(kg_ctx *ctx);

/* The first error of the context (KG_OK if none) and its message ("" if none). The message
 * names the function, the shapes and dtypes involved and what was expected. It stays until
 * kg_clear_error. The string is owned by the context. */
kg_status kg_ctx_status(const kg_ctx *ctx);
const char *kg_error(const kg_ctx *ctx);
void kg_clear_error(kg_ctx *ctx);
/* Record an error on the context, as the library's own functions do, unless one is already
 * recorded (the first error stays). For the layers above the tensor core (file readers, models,
 * the trainer), so that their errors reach the caller the same way. Returns false. */
bool kg_set_error(kg_ctx *ctx, kg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *kg_backend_name(const kg_ctx *ctx);
/* Bytes the backend holds for tensors now and at most since the last reset. */
void kg_memory(const kg_ctx *ctx, size_t *current, size_t *peak);
void kg_memory_reset_peak(kg_ctx *ctx);
/* What the context computes on, for people: "cpu" or the Vulkan device's name and type. */
const char *kg_device_name(const kg_ctx *ctx);
/* Whether the context computes on a real GPU (not the CPU backend, not a CPU Vulkan device such
 * as lavapipe). */
bool kg_device_is_gpu(const kg_ctx *ctx);

/* Per-op timing: kg_profile(ctx, true) starts from zero (Vulkan: GPU timestamps; CPU: wall
 * clock), false stops. kg_profile_read fills up to cap entries, slowest first, for every op that
 * ran, and returns how many it filled. */
typedef struct kg_op_time {
    const char *op;
    uint64_t calls;
    double seconds;
    double flops; /* the multiply-adds ×2 of its products (the GEMM-like ops; 0 for the rest) */
} kg_op_time;
void kg_profile(kg_ctx *ctx, bool on);
int kg_profile_read(kg_ctx *ctx, kg_op_time *out, int cap);
/* The framework's own host time while profiling, beside the kernels kg_profile_read times:
 * op_seconds is the whole time spent in ops (checks, shape rules, output allocation, the
 * kernel or its queueing, tape recording), alloc_seconds the part allocating outputs and view
 * headers, release_seconds the time kg_scope_end spent freeing a step's tensors. Counts: ops
 * run, tensors made (outputs and views), tape nodes recorded. Zero when profiling is off. */
typedef struct kg_profile_host {
    double op_seconds, alloc_seconds, release_seconds;
    uint64_t ops, tensors, tape_nodes;
} kg_profile_host;
kg_profile_host kg_profile_host_read(const kg_ctx *ctx);

/* A description of every Vulkan device (type, driver, memory, subgroup size, shared memory,
 * storage-buffer range, features used) written into buf as text; returns the length it needed.
 * Without the Vulkan backend built in, says so. */
size_t kg_vulkan_devices(char *buf, size_t cap);

/* The CPU backend's threads and the BLAS its GEMM uses ("none (portable kernel…)" without);
 * the instruction set of its batch-1 matrix-vector kernels and how block formats multiply
 * ("AVX-512, int8 dot (VNNI)", "AVX2, f32 activations", … or "none (GEMM path)"; KG_GEMV, a
 * comma list of avx2, f32, off, picks lower ones). */
int kg_cpu_thread_count(void);
const char *kg_cpu_blas(void);
const char *kg_cpu_gemv_name(void);
/* Wait until every queued kernel has run (a no-op on the CPU backend). */
void kg_flush(kg_ctx *ctx);

/* Scopes: every tensor made after kg_scope_begin (activations, gradients' temporaries, views) is
 * freed by the matching kg_scope_end, so a training step releases its memory at once. Tensors
 * made before the scope (parameters) live on. Scopes nest. */
typedef size_t kg_scope;
kg_scope kg_scope_begin(kg_ctx *ctx);
void kg_scope_end(kg_ctx *ctx, kg_scope scope);

/* No-grad: while the depth is above zero, ops record nothing on the tape. */
void kg_no_grad_begin(kg_ctx *ctx);
void kg_no_grad_end(kg_ctx *ctx);
bool kg_grad_enabled(const kg_ctx *ctx); /* false inside kg_no_grad_begin / _end */

/* ---- Tensors ------------------------------------------------------------------------------ */

/* All creation functions return a tensor owned by the context (freed by the enclosing scope's
 * end or by kg_ctx_free), or NULL with the context's error set. */
kg_tensor *kg_tensor_new(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape);
kg_tensor *kg_zeros(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape);
kg_tensor *kg_ones(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape);
kg_tensor *kg_full(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape, double value);
/* data holds numel elements of dtype, packed row-major (a block-quantized dtype: its
 * kg_dtype_bytes(dtype, numel) bytes, laid out as docs/quantization.md says); it is copied. */
kg_tensor *kg_from_host(kg_ctx *ctx, kg_dtype dtype, int ndim, const int64_t *shape,
                        const void *data);
/* Seeded, counter-based random numbers: the same seed gives the same values on every backend. */
kg_tensor *kg_uniform(kg_ctx *ctx, int ndim, const int64_t *shape, float lo, float hi,
                      uint64_t seed);
kg_tensor *kg_normal(kg_ctx *ctx, int ndim, const int64_t *shape, float mean, float std,
                     uint64_t seed);

/* Keep t past the end of the scope it was made in (optimizer moments made lazily, a KV cache):
 * it then lives until kg_tensor_free or kg_ctx_free. A kept tensor leaves the tape (as kg_detach):
 * what it was computed from may be freed with the scope. Returns t. */
kg_tensor *kg_tensor_keep(kg_tensor *t);

/* Copy src's values into dst in place, off the tape (optimizer updates, loading weights into an
 * existing parameter, a KV cache row). Shapes must match; src is converted to dst's dtype. dst may
 * be a view (a slice of a cache): only its elements change. Values of dst already used by a
 * recorded op must not be changed before kg_backward. Returns false with the context's error set
 * on a mismatch. */
bool kg_tensor_assign(kg_tensor *dst, kg_tensor *src);

/* Free one tensor early (optional: scopes and kg_ctx_free free the rest). Views of it stay valid;
 * a tensor used by a recorded op must not be freed while a backward may still walk through it
 * (free it with its scope). */
void kg_tensor_free(kg_tensor *t);

kg_ctx *kg_tensor_ctx(const kg_tensor *t);
kg_dtype kg_tensor_dtype(const kg_tensor *t);
int kg_tensor_ndim(const kg_tensor *t);
int64_t kg_tensor_dim(const kg_tensor *t, int axis); /* negative axes count from the end */
int64_t kg_tensor_numel(const kg_tensor *t);
bool kg_tensor_is_contiguous(const kg_tensor *t);
const char *kg_dtype_name(kg_dtype dtype);
/* Bytes per element; 0 for the block-quantized dtypes, whose size is kg_dtype_bytes'. */
size_t kg_dtype_size(kg_dtype dtype);
/* Elements per block: 32 for q8_0 / q4_0 / q4_1, 64 for nf4, 1 for the other dtypes. */
int64_t kg_dtype_block(kg_dtype dtype);
/* Bytes that numel elements of dtype take in storage (numel a multiple of the block). */
size_t kg_dtype_bytes(kg_dtype dtype, int64_t numel);
/* The dtype named name ("f32", "q4_0", "nf4", ...); KG_DTYPE_COUNT when none is. */
kg_dtype kg_dtype_from_name(const char *name);
/* One 16-bit value to f32 and back (round to nearest even; f16 keeps subnormals, overflow gives
 * ±inf), bit-exact with PyTorch's conversions. For file readers and tests. */
float kg_f16_to_f32(uint16_t h);
uint16_t kg_f32_to_f16(float f);
float kg_bf16_to_f32(uint16_t h);
uint16_t kg_f32_to_bf16(float f);

/* Copy the tensor's elements, in its own dtype and row-major order, into dst (capacity bytes;
 * a block-quantized tensor gives its packed bytes).
 * Flushes the backend. Returns false, with the context's error set, on a too-small buffer. */
bool kg_tensor_to_host(const kg_tensor *t, void *dst, size_t capacity);
/* The tensor's elements converted to f32: a malloc'd array of numel floats the caller frees. */
float *kg_tensor_to_f32(const kg_tensor *t);
/* The value of a one-element tensor as a double (NaN on error). */
double kg_item(const kg_tensor *t);

/* ---- Autograd ----------------------------------------------------------------------------- */

/* Mark a leaf (a parameter) as needing a gradient: f32, f16 or bf16 (the gradient is f32). */
void kg_set_requires_grad(kg_tensor *t, bool on);
bool kg_requires_grad(const kg_tensor *t);
/* The gradient accumulated into a leaf, owned by the leaf (NULL before any backward). */
kg_tensor *kg_grad(const kg_tensor *t);
/* Drop a leaf's gradient (the next backward starts from zero). */
void kg_zero_grad(kg_tensor *t);
/* Backpropagate from a one-element loss: accumulate d loss / d leaf into every leaf that
 * requires grad. The tape (the recorded nodes) stays until its tensors are freed with their
 * scope, so another loss sharing part of the graph can be backpropagated too (each backward adds
 * into the leaves' gradients; kg_zero_grad resets them). Gradients are f32 whatever the dtype of
 * the tensors they pass through; integer (i32) results never carry one. Returns false with the
 * context's error set on failure, in which case the leaves' gradients are incomplete. */
bool kg_backward(kg_tensor *loss);
/* A view of t that shares its storage but is cut from the tape. */
kg_tensor *kg_detach(kg_tensor *t);

/* ---- Ops ------------------------------------------------------------------------------------
 * Every op below returns a new tensor owned by the context (freed with the current scope), never
 * modifies its inputs, and returns NULL — with the context's error set when it has a context to
 * set it on — if an input is NULL, the context is already in error, or the inputs do not fit
 * the op. When grad mode is on and an input requires grad, the result records its op on the
 * tape. Inputs must be f32 unless an op says otherwise. */

/* ---- Views (share storage with their input) ------------------------------------------------ */

/* reshape copies first when t is not contiguous. One dimension may be -1. */
kg_tensor *kg_reshape(kg_tensor *t, int ndim, const int64_t *shape);
kg_tensor *kg_transpose(kg_tensor *t, int axis0, int axis1);
kg_tensor *kg_permute(kg_tensor *t, const int *axes); /* axes has ndim entries */
/* Elements [start, start+length) along axis. */
kg_tensor *kg_slice(kg_tensor *t, int axis, int64_t start, int64_t length);
/* Broadcast size-1 dimensions (and new leading ones) to shape; stride 0, no copy. */
kg_tensor *kg_expand(kg_tensor *t, int ndim, const int64_t *shape);
/* A contiguous copy (t itself is returned when already contiguous). */
kg_tensor *kg_contiguous(kg_tensor *t);
/* Convert the storage dtype (f32 <-> f16 / bf16 / i32). Differentiable for float dtypes.
 * A block-quantized t converts to f32 only (dequantization). */
kg_tensor *kg_cast(kg_tensor *t, kg_dtype dtype);
/* Quantize a 2-D weight w [N, K] (f32, f16 or bf16) to dtype: q8_0, q4_0, q4_1 or nf4 (K a
 * multiple of kg_dtype_block), or f16 / bf16 (a cast). Byte-exact with the reference quantizers
 * (gguf's for the GGML blocks, bitsandbytes' quantize_4bit with compress_statistics for nf4).
 * The result is a new tensor off the tape that never requires grad; quantization runs on the
 * host (a model's load-time step), so w is downloaded once. NULL with the error set. */
kg_tensor *kg_quantize(kg_tensor *w, kg_dtype dtype);

/* ---- Elementwise ops (binary ops broadcast as NumPy does) ------------------------------------ */

kg_tensor *kg_add(kg_tensor *a, kg_tensor *b);
kg_tensor *kg_sub(kg_tensor *a, kg_tensor *b);
kg_tensor *kg_mul(kg_tensor *a, kg_tensor *b);
kg_tensor *kg_div(kg_tensor *a, kg_tensor *b);
kg_tensor *kg_scale(kg_tensor *x, float s);      /* s·x */
kg_tensor *kg_add_scalar(kg_tensor *x, float c); /* x + c */
kg_tensor *kg_neg(kg_tensor *x);
kg_tensor *kg_exp(kg_tensor *x);
kg_tensor *kg_log(kg_tensor *x);
kg_tensor *kg_sqrt(kg_tensor *x);
kg_tensor *kg_rsqrt(kg_tensor *x);
kg_tensor *kg_tanh(kg_tensor *x);
kg_tensor *kg_sigmoid(kg_tensor *x);
kg_tensor *kg_erf(kg_tensor *x);
kg_tensor *kg_relu(kg_tensor *x);
kg_tensor *kg_gelu(kg_tensor *x); /* exact: x·Φ(x) with the erf form, as HF's "gelu" */
kg_tensor *kg_silu(kg_tensor *x);
/* SwiGLU's product silu(gate) ⊙ up in one pass, gate and up of one shape (the Mistral
 * family's MLP); its backward gives both gradients in one pass too. */
kg_tensor *kg_swiglu(kg_tensor *gate, kg_tensor *up);
/* Not differentiable (their gradient is zero almost everywhere): */
kg_tensor *kg_step(kg_tensor *x);              /* 1 where x > 0, else 0 */
kg_tensor *kg_eq(kg_tensor *a, kg_tensor *b);  /* 1 where a == b, else 0 */
/* x where mask == 0, value where mask != 0; mask (f32 or i32) broadcasts to x. */
kg_tensor *kg_masked_fill(kg_tensor *x, kg_tensor *mask, float value);
/* Zero each element with probability p, scale the rest by 1/(1-p). The mask is a pure function
 * of (seed, element index), so the backward pass and other backends draw the same one. */
kg_tensor *kg_dropout(kg_tensor *x, float p, uint64_t seed);

/* ---- Reductions over one axis ------------------------------------------------------------- */

kg_tensor *kg_sum(kg_tensor *x, int axis, bool keepdim);
kg_tensor *kg_mean(kg_tensor *x, int axis, bool keepdim);
kg_tensor *kg_max(kg_tensor *x, int axis, bool keepdim); /* ties share the gradient */
kg_tensor *kg_sum_all(kg_tensor *x);                     /* a one-element tensor */

/* ---- Linear algebra ------------------------------------------------------------------------ */

/* a (..., M, K) · b (..., K, N) → (..., M, N); batch dims broadcast. */
kg_tensor *kg_matmul(kg_tensor *a, kg_tensor *b);
/* The same with either operand transposed in its last two dims, without a copy. */
kg_tensor *kg_matmul_t(kg_tensor *a, kg_tensor *b, bool trans_a, bool trans_b);
/* x (..., K) · Wᵀ → (..., N) for a frozen weight W [N, K] stored in any dtype but i32
 * (f32, f16, bf16 or block-quantized), dequantized tile by tile inside the GEMM: no f32 copy of
 * W is formed. trans = false gives x (..., N) · W → (..., K) instead (the input gradient).
 * Differentiable in x only: W gets no gradient. */
kg_tensor *kg_matmul_q(kg_tensor *x, kg_tensor *w, bool trans);
/* Kronecker product of two matrices: (m, n) ⊗ (p, q) → (m·p, n·q), as torch.kron. */
kg_tensor *kg_kron(kg_tensor *a, kg_tensor *b);
/* x (..., d_in) · (B1 (d_out, R) · B2 (R, d_in))ᵀ → (..., d_out), never forming B1·B2. */
kg_tensor *kg_lowrank_linear(kg_tensor *x, kg_tensor *b1, kg_tensor *b2);
/* x (..., d_in) · (A (dA2, dA1) ⊗ B1 (dB2, R) · B2 (R, dB1))ᵀ → (..., d_out) with
 * d_in = dA1·dB1 and d_out = dA2·dB2, never forming the d_out × d_in matrix, forward or back. */
kg_tensor *kg_kron_linear(kg_tensor *x, kg_tensor *a, kg_tensor *b1, kg_tensor *b2);

/* ---- Neural-network ops --------------------------------------------------------------------- */

/* Rows of table (V, C) picked by ids (any shape, i32) → (ids..., C). */
kg_tensor *kg_embedding(kg_tensor *table, kg_tensor *ids);
/* The adjoint of kg_embedding: out (rows, C) with src's rows added at ids. */
kg_tensor *kg_scatter_add_rows(kg_tensor *src, kg_tensor *ids, int64_t rows);
/* Softmax over the last axis of x + mask (mask may be NULL; it broadcasts to x; -inf masks).
 * A row masked entirely gives zeros, not NaN. */
kg_tensor *kg_softmax(kg_tensor *x, kg_tensor *mask);
/* softmax(scale·x + mask) in one pass (attention's scaled, masked scores), rounded as
 * kg_softmax(kg_scale(x, scale), mask); x has at most 4 dims when masked. Its backward is one
 * pass too. */
kg_tensor *kg_softmax_scaled(kg_tensor *x, float scale, kg_tensor *mask);
kg_tensor *kg_log_softmax(kg_tensor *x);
/* Normalize over the last axis (C): (x - mean)/√(var + eps)·weight + bias, with the biased
 * variance as torch. weight and bias (C) may each be NULL. */
kg_tensor *kg_layer_norm(kg_tensor *x, kg_tensor *weight, kg_tensor *bias, float eps);
/* x/√(mean(x²) + eps)·weight, as HF's MistralRMSNorm; weight (C) is required. */
kg_tensor *kg_rms_norm(kg_tensor *x, kg_tensor *weight, float eps);
/* Rotary embedding, HF rotate-half convention, on x (..., T, D): the pair (i, i + D/2) at
 * position pos0 + t is rotated by (pos0 + t) · theta^(-2i/D). */
kg_tensor *kg_rope(kg_tensor *x, int64_t pos0, float theta);
/* Mean cross entropy of logits (N, V) against targets (N, i32), skipping ignore_index
 * (0, with zero gradient, when every target is ignored). */
kg_tensor *kg_cross_entropy(kg_tensor *logits, kg_tensor *targets, int32_t ignore_index);
/* Each row's log-probability of its target under the linear head W (V, C): log softmax(x·Wᵀ)
 * [i, t_i] for x (N, C) and targets (N, i32), 0 (with zero gradient) where the target is
 * ignore_index. The (N, V) logits are never stored: the CPU backend computes them a chunk of
 * the vocabulary at a time, forward and again in the backward. */
kg_tensor *kg_linear_log_prob(kg_tensor *x, kg_tensor *weight, kg_tensor *targets,
                              int32_t ignore_index);
/* One-hot rows (N, V) of targets (N, i32); a row whose target is ignore_index is all zero. */
kg_tensor *kg_one_hot(kg_tensor *targets, int64_t classes, int32_t ignore_index);
/* Join up to KG_MAX_INPUTS tensors along axis. */
kg_tensor *kg_concat(kg_tensor *const *ts, int n, int axis);

#define KG_MAX_INPUTS 8

/* ---- Optimizer updates: fused, in place, off the tape -------------------------------------- */

/* AdamW (decoupled weight decay, as torch.optim.AdamW), one step on one parameter:
 *   p ← p·(1 − lr·weight_decay)
 *   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
 *   p ← p − lr · (m / (1 − β1^step)) / (√(v / (1 − β2^step)) + eps)
 * param, grad, m and v are f32 tensors of one shape; m and v start as zeros (made by the caller,
 * outside any scope or kept). step counts from 1. Returns false with the context's error set. */
typedef struct kg_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
} kg_adamw;
bool kg_adamw_update(kg_tensor *param, kg_tensor *grad, kg_tensor *m, kg_tensor *v,
                     const kg_adamw *cfg);

/* SGD with momentum and (coupled) weight decay, as torch.optim.SGD with dampening 0:
 *   g ← g + weight_decay·p;   buf ← g on the first step, else momentum·buf + g;   p ← p − lr·buf
 * buf may be NULL when momentum is 0. first: whether this is buf's first step. */
typedef struct kg_sgd {
    float lr, momentum, weight_decay;
    bool first;
} kg_sgd;
bool kg_sgd_update(kg_tensor *param, kg_tensor *grad, kg_tensor *buf, const kg_sgd *cfg);

#ifdef __cplusplus
}
#endif
#endif
