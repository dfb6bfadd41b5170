/* fuzz_ops.c — libFuzzer target for the tensor core: the input bytes drive a random program of
 * tensor creations (valid and invalid shapes and dtypes), views, ops, scopes, in-place updates
 * and backward passes on the CPU backend. After every call it checks the error model: a call
 * that returns NULL (or false) has set the context's error, one that returns a tensor has not,
 * and an error is always cleared before the next call. Sanitizers catch the rest.
 *
 *   scripts/fuzz.sh              builds it and runs it (and the parsers' targets) for a while
 */
#include "krongrad.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { POOL = 12, SMALL = 1024 }; /* materializing ops only run on inputs this small */

typedef struct prog {
    const uint8_t *p, *end;
    kg_ctx *ctx;
    kg_tensor *t[POOL];
    kg_scope scopes[8];
    int n_scopes;
} prog;

static unsigned byte(prog *g) { return g->p < g->end ? *g->p++ : 0; }

/* A size: mostly 0–4, sometimes huge or negative to probe the shape checks. */
static int64_t size_of(prog *g)
{
    unsigned b = byte(g);
    switch (b >> 5) {
    case 6: return -(int64_t)(b & 7) - 1;
    case 7: return (int64_t)1 << (20 + (b & 31) + (b & 8 ? 11 : 0)); /* 2^20 .. 2^62 */
    default: return b % 5;
    }
}

static int axis_of(prog *g) { return (int)(byte(g) % 9) - 4; } /* -4..4: some out of range */

/* Whether making a tensor of this shape would take long: a valid count above 2^16 elements is
 * skipped (it tests nothing new and fills memory slowly); overflowing or invalid shapes run,
 * since their errors are what is being tested. */
static bool too_big(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim && i < 5; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i] ? shape[i] : 1, &n))
            return false;
    }
    return n > (1 << 16) && n <= ((int64_t)1 << 59);
}

static kg_tensor *pick(prog *g) { return g->t[byte(g) % POOL]; }

static bool small(const kg_tensor *t) { return t && kg_tensor_numel(t) <= SMALL; }

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "error model broken after %s: %s\n", what, msg);
    abort();
}

/* The error model after one call that returned `ok` (a tensor or true). */
static void check(prog *g, bool ok, const char *what)
{
    kg_status st = kg_ctx_status(g->ctx);
    if (ok && st != KG_OK)
        die(what, "returned a result with the context in error");
    if (!ok && st == KG_OK)
        die(what, "failed without setting an error");
    if (!ok && kg_error(g->ctx)[0] == 0)
        die(what, "an error without a message");
    kg_clear_error(g->ctx);
}

/* Store a result in the pool (NULL results leave the slot alone). */
static void keep(prog *g, kg_tensor *r, const char *what)
{
    check(g, r != NULL, what);
    if (r)
        g->t[byte(g) % POOL] = r;
}

static void step(prog *g)
{
    kg_tensor *a = pick(g), *b = pick(g), *r = NULL;
    unsigned op = byte(g) % 34;
    if (op >= 4 && !a)
        return; /* ops need an input; NULL inputs are tested elsewhere */
    int64_t shape[5];
    switch (op) {
    case 0: case 1: { /* creation */
        int ndim = (int)(byte(g) % 6) - (byte(g) == 255); /* 0..5, rarely -1 */
        for (int i = 0; i < 5; i++)
            shape[i] = size_of(g);
        kg_dtype dt = (kg_dtype)(byte(g) % (KG_DTYPE_COUNT + 1)); /* the last: invalid */
        if (ndim >= 0 && too_big(ndim, shape))
            return;
        if (op == 0)
            r = kg_zeros(g->ctx, dt, ndim, shape);
        else
            r = kg_normal(g->ctx, ndim, shape, 0.0f, 1.0f, byte(g));
        keep(g, r, op == 0 ? "kg_zeros" : "kg_normal");
        return;
    }
    case 2: keep(g, kg_full(g->ctx, KG_DTYPE_I32, 1, (int64_t[]){byte(g) % 6}, byte(g) % 4),
                 "kg_full ids");
        return;
    case 3:
        if (g->n_scopes < 8)
            g->scopes[g->n_scopes++] = kg_scope_begin(g->ctx);
        return;
    case 4: {
        int n = (int)(byte(g) % 5) - (byte(g) == 7);
        for (int i = 0; i < 4; i++)
            shape[i] = byte(g) % 3 ? size_of(g) : -1;
        if (small(a) || kg_tensor_is_contiguous(a)) /* else it copies, maybe gigabytes */
            keep(g, kg_reshape(a, n, shape), "kg_reshape");
        return;
    }
    case 5: keep(g, kg_transpose(a, axis_of(g), axis_of(g)), "kg_transpose"); return;
    case 6: {
        int axes[4] = {(int)byte(g) % 5, (int)byte(g) % 5, (int)byte(g) % 5, (int)byte(g) % 5};
        keep(g, kg_permute(a, axes), "kg_permute");
        return;
    }
    case 7: {
        int64_t start = size_of(g), len = byte(g) == 9 ? INT64_MAX : size_of(g);
        keep(g, kg_slice(a, axis_of(g), start, len), "kg_slice");
        return;
    }
    case 8: {
        int n = (int)(byte(g) % 5);
        for (int i = 0; i < 4; i++)
            shape[i] = size_of(g);
        keep(g, kg_expand(a, n, shape), "kg_expand");
        return;
    }
    case 9: if (small(a)) keep(g, kg_contiguous(a), "kg_contiguous"); return;
    case 10: if (small(a)) keep(g, kg_cast(a, (kg_dtype)(byte(g) % (KG_DTYPE_COUNT + 1))), "kg_cast"); return;
    default: break;
    }
    if (!small(a) || (b && !small(b)))
        return;
    switch (op) {
    case 11: r = kg_add(a, b ? b : a); break;
    case 12: r = kg_mul(a, b ? b : a); break;
    case 13: r = kg_div(a, b ? b : a); break;
    case 14: r = kg_exp(a); break;
    case 15: r = kg_gelu(kg_scale(a, 0.5f)); break;
    case 16: r = kg_sum(a, axis_of(g), byte(g) & 1); break;
    case 17: r = kg_max(a, axis_of(g), byte(g) & 1); break;
    case 18: r = kg_matmul_t(a, b ? b : a, byte(g) & 1, byte(g) & 1); break;
    case 19: r = kg_kron(a, b ? b : a); break;
    case 20: r = kg_lowrank_linear(a, b ? b : a, pick(g)); break;
    case 21: r = kg_kron_linear(a, b ? b : a, pick(g), pick(g)); break;
    case 22: r = kg_embedding(a, b ? b : a); break;
    case 23: r = kg_softmax(a, b); break;
    case 24: r = kg_layer_norm(a, b, pick(g), 1e-5f); break;
    case 25: r = kg_rms_norm(a, b, 1e-6f); break;
    case 26: r = kg_rope(a, size_of(g), byte(g) & 1 ? 10000.0f : -1.0f); break;
    case 27: r = kg_cross_entropy(a, b ? b : a, -100); break;
    case 28: { /* a legal but huge one-hot would only measure the machine's memory */
        int64_t k = size_of(g), n = kg_tensor_numel(a);
        if (k > 0 && n > 0 && k <= ((int64_t)1 << 59) / n && n * k > ((int64_t)1 << 26))
            return;
        r = kg_one_hot(a, k, -1);
        break;
    }
    case 29: r = kg_concat((kg_tensor *[]){a, b, pick(g)}, 1 + (int)(byte(g) % 3), axis_of(g)); break;
    case 30: r = kg_masked_fill(a, b ? b : a, -1.0f); break;
    case 31: /* training verbs */
        if (byte(g) & 1) {
            kg_set_requires_grad(a, true);
            check(g, kg_tensor_dtype(a) != KG_DTYPE_I32, "kg_set_requires_grad");
        } else if (b) {
            check(g, kg_tensor_assign(a, b), "kg_tensor_assign");
        }
        return;
    case 32: {
        kg_tensor *loss = kg_sum_all(a);
        check(g, loss != NULL, "kg_sum_all");
        if (loss && kg_requires_grad(loss))
            check(g, kg_backward(loss), "kg_backward");
        return;
    }
    case 33: {
        float *v = kg_tensor_to_f32(a);
        check(g, v != NULL, "kg_tensor_to_f32");
        free(v);
        if (g->n_scopes > 0 && byte(g) & 1) { /* end a scope: tensors made in it are gone */
            kg_scope s = g->scopes[--g->n_scopes];
            kg_tensor *kept = byte(g) & 1 ? kg_tensor_keep(a) : NULL;
            kg_scope_end(g->ctx, s);
            for (int i = 0; i < POOL; i++)
                g->t[i] = g->t[i] == kept ? kept : NULL; /* we cannot tell which died: forget all */
        }
        return;
    }
    default: return;
    }
    keep(g, r, "an op");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prog g = {.p = data, .end = data + size, .ctx = kg_ctx_new(KG_BACKEND_CPU)};
    if (!g.ctx)
        return 0;
    for (int i = 0; i < 256 && g.p < g.end; i++)
        step(&g);
    kg_ctx_free(g.ctx);
    return 0;
}
