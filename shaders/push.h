/* push.h — each shader family's push constants, written once for C and GLSL: ops.c fills the
 * struct, and the shader declares the same struct as its push-constant block (`pc`). 64-bit
 * tensor addresses come first and 32-bit words after them, so C and GLSL's std430 put every
 * member at the same offset; each struct must fit the 128 bytes every device guarantees
 * (KG_PUSH_FITS checks it). Shapes and sizes are in elements.
 */
#ifndef KG_SHADER_PUSH_H
#define KG_SHADER_PUSH_H

/* The push-constant range of every pipeline: the minimum every Vulkan device guarantees. */
#define KG_PUSH_BYTES 128

/* KG_PUSH(name) { members }; declares a struct in both languages; KG_PUSH_FITS(name) checks it
 * at compile time on the C side. */
#ifdef KG_GLSL /* defined by common.glsl */
#define KG_PUSH(name) struct name
#define KG_PUSH_FITS(name)
#else
#include <stdint.h>
#define KG_PUSH(name) typedef struct name name; struct name
#define KG_PUSH_FITS(name)                                                                     \
    _Static_assert(sizeof(name) <= KG_PUSH_BYTES, #name " exceeds the push-constant range");
#endif

/* copy.comp: copy a strided view into another of the same shape (dims padded to 4 as
 * kg__pad4 does) */
KG_PUSH(copy_push) {
    uint64_t dst, src;
    uint32_t dim[4];
    int32_t src_stride[4], dst_stride[4];
    uint32_t n; /* elements */
};
KG_PUSH_FITS(copy_push)

/* cast.comp: contiguous elements from one dtype to another (DT_* codes) */
KG_PUSH(cast_push) {
    uint64_t dst, src, status;
    uint32_t from, to, n;
    uint32_t op; /* the kg_op, for errors */
};
KG_PUSH_FITS(cast_push)

/* elementwise.comp: out (contiguous) = mode(a, b), a and b read through strides (0 broadcasts) */
KG_PUSH(ew_push) {
    uint64_t dst, a, b, status; /* b: the second operand, or masked_fill's mask */
    uint64_t c;                 /* swiglu_grad: the output's gradient (a: gate, b: up) */
    uint64_t seed;              /* dropout */
    uint32_t mode;              /* EW_* */
    uint32_t dim[4];            /* out's sizes, padded to 4 */
    int32_t a_stride[4], b_stride[4];
    uint32_t n;
    float scale, shift;         /* scale: scale·a + shift */
    float fill;                 /* masked_fill */
    float p;                    /* dropout probability */
    uint32_t mask_i32;          /* masked_fill's mask is i32 (else f32) */
    uint32_t op;
};
KG_PUSH_FITS(ew_push)

/* reduce.comp: x (outer, n, inner) reduced over n → (outer, inner) */
KG_PUSH(reduce_push) {
    uint64_t dst, x, status;
    uint32_t mode; /* RED_* */
    uint32_t outer, n, inner;
    uint32_t op;
    uint32_t chunk; /* each invocation reduces at most this many of the n (KG_LOOP_CHUNK) */
};
KG_PUSH_FITS(reduce_push)

/* matmul.comp: C (batch, M, N) = op(A)·op(B), op transposing when asked */
KG_PUSH(matmul_push) {
    uint64_t c, a, b;
    uint32_t M, N, K;
    uint32_t lda, ldb;              /* row lengths of A and B as stored */
    uint32_t trans_a, trans_b;
    uint32_t batch_outer, batch_inner; /* the batch as two dims (outer, inner) */
    uint32_t a_batch_stride[2], b_batch_stride[2]; /* per batch dim (outer, inner); 0 broadcasts */
    uint32_t batch0;                /* the first batch of this dispatch */
};
KG_PUSH_FITS(matmul_push)

/* kron.comp: out (m·p, n·q) = A (m, n) ⊗ B (p, q) */
KG_PUSH(kron_push) {
    uint64_t dst, a, b;
    uint32_t m, n, p, q;
};
KG_PUSH_FITS(kron_push)

/* kron_linear.comp: y (N, dA2·dB2) = x (N, dA1·dB1) · (A ⊗ B1·B2)ᵀ; A (dA2, dA1) or a = 0 for
 * [1] (lowrank_linear), B1 (dB2, R), B2 (R, dB1) */
KG_PUSH(kron_linear_push) {
    uint64_t y, x, a, b1, b2;
    uint32_t N, dA1, dA2, dB1, dB2, R;
};
KG_PUSH_FITS(kron_linear_push)

/* rows.comp: one workgroup per row of x (rows, C) */
KG_PUSH(rows_push) {
    uint64_t dst, x, weight, bias; /* weight and bias: the norms' (0 when absent); weight: the
                                    * gradient g of ROW_LOG_PROB_GRAD and ROW_SOFTMAX_GRAD */
    uint64_t targets, status;      /* cross entropy */
    uint64_t mask;                 /* softmax: the additive mask (0 when absent) */
    uint32_t mode;                 /* ROW_* */
    uint32_t rows, C;
    uint32_t rms;                  /* the norms: RMS norm (no mean) */
    float eps;
    int32_t ignore_index;
    uint32_t op;
    float scale;                   /* softmax: of x, before the mask; its gradient's */
    uint32_t dim1, dim2;           /* softmax: x's sizes padded to 4 (dims 1, 2: a row's index) */
    int32_t mask_stride[4];        /* softmax: the mask's strides against them (0 broadcasts) */
};
KG_PUSH_FITS(rows_push)

/* rope.comp: x (rows, D) with rows = (..., T); table (T, D/2, 2) holds [cos, sin] of each
 * position's angles */
KG_PUSH(rope_push) {
    uint64_t dst, x, table;
    uint32_t rows, T, D;
    uint32_t inverse; /* rotate by the opposite angle (the backward) */
};
KG_PUSH_FITS(rope_push)

/* gather.comp: ops indexed by i32 ids */
KG_PUSH(gather_push) {
    uint64_t dst, src, ids, status; /* src: embedding's table, scatter's rows; one_hot: none */
    uint32_t mode;                  /* GA_* */
    uint32_t n;                     /* ids */
    uint32_t C;                     /* columns, or one_hot's classes */
    uint32_t limit;                 /* rows of the table (embedding) or of out (scatter) */
    int32_t ignore_index;           /* one_hot */
    uint32_t op;
    uint32_t first;                 /* scatter_add_rows: the first id of this pass */
};
KG_PUSH_FITS(gather_push)

/* optim.comp: one optimizer step over a parameter, its gradient and its state, in place */
KG_PUSH(optim_push) {
    uint64_t param, grad, status;
    uint64_t m, v;        /* AdamW's moments; SGD's momentum buffer in m (0 without one) */
    uint32_t mode;        /* OPT_* */
    uint32_t n;
    float lr, weight_decay;
    float beta1, beta2, eps;
    float c1, c2;         /* AdamW's bias corrections 1 - β^step, made on the host */
    float momentum;
    uint32_t first;       /* SGD: the buffer's first step */
    uint32_t op;
};
KG_PUSH_FITS(optim_push)

/* dequant.comp: W [N, K] stored as `dtype` (DT_*, quant.glsl) → f32, one element each */
KG_PUSH(dequant_push) {
    uint64_t dst, src, status;
    uint32_t dtype, n, k; /* W's dims: n rows of k */
    uint32_t op;
};
KG_PUSH_FITS(dequant_push)

/* matmul_q.comp: y (M, out) = x (M, in) · op(W), W [N, K] stored as `dtype`, op(W) = Wᵀ when
 * trans (in = K, out = N), else W (in = N, out = K) */
KG_PUSH(matmul_q_push) {
    uint64_t y, x, w, status;
    uint32_t M, n, k;
    uint32_t trans, dtype;
    uint32_t row0; /* the first row of x and y this dispatch covers */
    uint32_t op;
};
KG_PUSH_FITS(matmul_q_push)

/* The status buffer kernels report into; the flush turns it into the context's error. */
KG_PUSH(vk_status) {
    uint32_t kind; /* STATUS_* (codes.h); 0 when nothing was found */
    uint32_t op;   /* the kg_op that found it */
    int32_t position, value, limit; /* a bad index: where, what, and its bound; a bad mode: value */
};

#endif
