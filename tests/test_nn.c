/* test_nn.c — the modules of nn/kg_nn.h on their own: the attention masks' values (padding,
 * causal, sliding window, an offset for cached keys), grouped key/value heads against the same
 * attention with the heads written out, queries from the first positions alone against the full
 * attention's rows, rows that share prompts against the rows run whole, and the KV cache's
 * bounds. The models they make up are
 * checked against transformers in test_models.c.
 */
#include "kg_test.h"

static void test_attention_mask(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    /* Two queries at positions 3 and 4 over keys 0..4, window 2; the second row's key 0 is
     * padding. */
    int32_t keep[2 * 5] = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    kg_tensor *k = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(2, 5), keep);
    kg_tensor *mask = kg_attention_mask(ctx, k, 2, 3, true, 2);
    assert_ok(ctx);
    assert_int_equal(kg_tensor_ndim(mask), 4);
    assert_int_equal(kg_tensor_dim(mask, 0), 2);
    assert_int_equal(kg_tensor_dim(mask, 2), 2);
    assert_int_equal(kg_tensor_dim(mask, 3), 5);
    float *m = kg_tensor_to_f32(mask);
    const float I = -INFINITY;
    const float want[2 * 2 * 5] = {I, I, 0, 0, I, I, I, I, 0, 0,  /* row 0: keys 2-3, 3-4 */
                                   I, I, 0, 0, I, I, I, I, 0, 0}; /* row 1: the same */
    for (int i = 0; i < 20; i++)
        if (m[i] != want[i])
            fail_msg("mask element %d is %g; expected %g", i, (double)m[i], (double)want[i]);
    free(m);
    /* Padding alone (an encoder): (B, 1, 1, S), only the padded key masked. */
    mask = kg_attention_mask(ctx, k, 5, 0, false, 0);
    assert_int_equal(kg_tensor_dim(mask, 2), 1);
    m = kg_tensor_to_f32(mask);
    assert_true(m[0] == 0 && m[5] == I && m[6] == 0);
    free(m);
    /* Nothing to mask: NULL without an error. */
    assert_null(kg_attention_mask(ctx, NULL, 4, 0, false, 0));
    assert_ok(ctx);
    /* keep must cover every key. */
    assert_null(kg_attention_mask(ctx, k, 2, 0, true, 0));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_ctx_free(ctx);
}

/* Attention with Hkv = 2 key/value heads for H = 4 query heads equals the same attention with 4
 * key/value heads where query head h's are kv head h / 2's, written out: repeat_kv's order. */
static void test_grouped_heads(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    const int64_t B = 2, T = 5, C = 8, H = 4, Hkv = 2, D = 4;
    kg_tensor *x = kg_normal(ctx, 3, SHAPE(B, T, C), 0, 1, 1);
    kg_tensor *k = kg_normal(ctx, 2, SHAPE(Hkv * D, C), 0, 0.5f, 3);
    kg_tensor *v = kg_normal(ctx, 2, SHAPE(Hkv * D, C), 0, 0.5f, 4);
    kg_attention grouped = {
        .q = {.weight = kg_normal(ctx, 2, SHAPE(H * D, C), 0, 0.5f, 2)},
        .k = {.weight = k},
        .v = {.weight = v},
        .o = {.weight = kg_normal(ctx, 2, SHAPE(C, H * D), 0, 0.5f, 5),
              .bias = kg_normal(ctx, 1, SHAPE(C), 0, 0.5f, 6)},
        .n_heads = H, .n_kv_heads = Hkv, .head_dim = D, .rope_theta = 10000.0f,
    };
    kg_attention full = grouped;
    full.n_kv_heads = H;
    kg_tensor *ks[4], *vs[4];
    for (int h = 0; h < H; h++) {
        ks[h] = kg_slice(k, 0, (h / 2) * D, D);
        vs[h] = kg_slice(v, 0, (h / 2) * D, D);
    }
    full.k.weight = kg_concat(ks, 4, 0);
    full.v.weight = kg_concat(vs, 4, 0);
    kg_tensor *mask = kg_attention_mask(ctx, NULL, T, 0, true, 3);
    float *a = kg_tensor_to_f32(kg_attention_forward(&grouped, x, mask, NULL));
    float *b = kg_tensor_to_f32(kg_attention_forward(&full, x, mask, NULL));
    assert_ok(ctx);
    assert_close(a, b, B * T * C, 1e-5f, 1e-5f, "grouped vs written-out heads");
    free(a);
    free(b);
    kg_ctx_free(ctx);
}

/* kg_attention_forward_queries with the first Tq positions as queries: the rows of the full
 * attention, and the same gradients of x and of every weight from a loss on those rows (x's
 * flow through the keys and values of every position and the queries of the first ones). RoPE
 * is refused: the subset's positions would be needed. */
static void test_query_subset(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    const int64_t B = 2, T = 5, Tq = 2, C = 8, H = 2, D = 4;
    kg_tensor *x = kg_normal(ctx, 3, SHAPE(B, T, C), 0, 1, 1);
    kg_attention att = {
        .q = {.weight = kg_normal(ctx, 2, SHAPE(H * D, C), 0, 0.5f, 2),
              .bias = kg_normal(ctx, 1, SHAPE(H * D), 0, 0.5f, 7)},
        .k = {.weight = kg_normal(ctx, 2, SHAPE(H * D, C), 0, 0.5f, 3)},
        .v = {.weight = kg_normal(ctx, 2, SHAPE(H * D, C), 0, 0.5f, 4)},
        .o = {.weight = kg_normal(ctx, 2, SHAPE(C, H * D), 0, 0.5f, 5)},
        .n_heads = H, .n_kv_heads = H, .head_dim = D, .scale_query = true,
    };
    kg_tensor *params[] = {x, att.q.weight, att.q.bias, att.k.weight, att.v.weight, att.o.weight};
    enum { P = sizeof params / sizeof params[0] };
    for (int i = 0; i < P; i++)
        kg_set_requires_grad(params[i], true);
    int32_t keep[2 * 5] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}; /* row 1: two padded keys */
    kg_tensor *mask = kg_attention_mask(ctx, kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(B, T), keep),
                                        T, 0, false, 0);
    kg_tensor *w = kg_normal(ctx, 3, SHAPE(B, Tq, C), 0, 1, 8); /* the loss: Σ w ⊙ rows */
    float *out[2], *grad[2][P];
    for (int way = 0; way < 2; way++) {
        kg_scope s = kg_scope_begin(ctx);
        kg_tensor *y = way == 0 ? kg_slice(kg_attention_forward(&att, x, mask, NULL), 1, 0, Tq)
                                : kg_attention_forward_queries(&att, kg_slice(x, 1, 0, Tq), x,
                                                               mask);
        assert_ok(ctx);
        assert_int_equal(kg_tensor_dim(y, 1), Tq);
        kg_backward(kg_sum_all(kg_mul(y, w)));
        out[way] = kg_tensor_to_f32(y);
        for (int i = 0; i < P; i++) {
            grad[way][i] = kg_tensor_to_f32(kg_grad(params[i]));
            kg_zero_grad(params[i]);
        }
        kg_scope_end(ctx, s);
    }
    assert_ok(ctx);
    assert_close(out[1], out[0], B * Tq * C, 1e-6f, 1e-5f, "query subset vs the full rows");
    for (int i = 0; i < P; i++) {
        assert_close(grad[1][i], grad[0][i], kg_tensor_numel(params[i]), 1e-6f, 1e-5f,
                     i == 0 ? "dx" : "d weight");
        free(grad[0][i]), free(grad[1][i]);
    }
    free(out[0]), free(out[1]);
    att.rope_theta = 10000.0f;
    assert_null(kg_attention_forward_queries(&att, kg_slice(x, 1, 0, Tq), x, mask));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_ctx_free(ctx);
}

/* kg_attention_forward_prefixed against each row run whole: G = 2 prompts of 5 and 3 tokens
 * (left-padded to 5), continued by 3 suffixes (two of the first prompt), with GQA, RoPE and a
 * sliding window of 4 shorter than the rows. The same outputs at every real position, and the
 * same weight gradients from a loss that counts each prompt position once (in the whole rows:
 * in the first row that holds it), on the CPU and, where there is one, a Vulkan device. */
static void prefixed_vs_whole(kg_backend_kind backend)
{
    kg_ctx *ctx = kg_ctx_new(backend);
    enum { G = 2, Lp = 5, R = 3, S = 3, T = Lp + S, C = 8, H = 4, HKV = 2, D = 2, NP = G * Lp };
    const int64_t plen[G] = {5, 3}, slen[R] = {3, 2, 3};
    const int32_t group[R] = {0, 0, 1};
    const bool first[R] = {true, false, true};
    kg_attention att = {
        .q = {.weight = kg_normal(ctx, 2, SHAPE(H * D, C), 0, 0.5f, 2)},
        .k = {.weight = kg_normal(ctx, 2, SHAPE(HKV * D, C), 0, 0.5f, 3)},
        .v = {.weight = kg_normal(ctx, 2, SHAPE(HKV * D, C), 0, 0.5f, 4)},
        .o = {.weight = kg_normal(ctx, 2, SHAPE(C, H * D), 0, 0.5f, 5)},
        .n_heads = H, .n_kv_heads = HKV, .head_dim = D, .rope_theta = 10000.0f,
    };
    kg_tensor *params[] = {att.q.weight, att.k.weight, att.v.weight, att.o.weight};
    enum { P = sizeof params / sizeof params[0] };
    for (int i = 0; i < P; i++)
        kg_set_requires_grad(params[i], true);
    /* The tokens' vectors and the loss's weights, laid out both ways (padding: zero weight). */
    float *vals = kg_tensor_to_f32(kg_normal(ctx, 2, SHAPE(NP + R * S, C), 0, 1, 1));
    float *wts = kg_tensor_to_f32(kg_normal(ctx, 2, SHAPE(NP + R * S, C), 0, 1, 6));
    static float xs[NP + R * S][C], ws[NP + R * S][C], xw[R * T][C], ww[R * T][C];
    int map[R * T]; /* whole position → shared position, -1 for padding */
    memset(ws, 0, sizeof ws), memset(xw, 0, sizeof xw), memset(ww, 0, sizeof ww);
    memcpy(xs, vals, sizeof xs);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            int g = group[r], L = (int)plen[g], at = -1;
            if (t < L)
                at = g * Lp + (Lp - L) + t;
            else if (t < L + slen[r])
                at = NP + r * S + (t - L);
            map[r * T + t] = at;
            if (at < 0)
                continue;
            memcpy(xw[r * T + t], xs[at], sizeof xw[0]);
            if (t >= L || first[r]) {
                memcpy(ws[at], wts + (size_t)at * C, sizeof ws[0]);
                memcpy(ww[r * T + t], ws[at], sizeof ww[0]);
            }
        }
    free(vals), free(wts);
    kg_prefix_layout l;
    assert_true(kg_prefix_layout_init(ctx, &l, G, Lp, plen, R, S, group, 4));
    kg_tensor *mask = kg_attention_mask(ctx, NULL, T, 0, true, 4);
    float *out[2], *grad[2][P];
    for (int way = 0; way < 2; way++) {
        kg_scope sc = kg_scope_begin(ctx);
        kg_tensor *y, *w;
        if (way == 0) {
            y = kg_attention_forward(&att, kg_from_host(ctx, KG_DTYPE_F32, 3, SHAPE(R, T, C), xw),
                                     mask, NULL);
            w = kg_from_host(ctx, KG_DTYPE_F32, 3, SHAPE(R, T, C), ww);
        } else {
            y = kg_attention_forward_prefixed(
                &att, kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(NP + R * S, C), xs), &l);
            w = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(NP + R * S, C), ws);
        }
        assert_true(kg_backward(kg_sum_all(kg_mul(y, w))));
        out[way] = kg_tensor_to_f32(y);
        for (int i = 0; i < P; i++) {
            grad[way][i] = kg_tensor_to_f32(kg_grad(params[i]));
            kg_zero_grad(params[i]);
        }
        kg_scope_end(ctx, sc);
        assert_ok(ctx);
    }
    for (int i = 0; i < R * T; i++)
        if (map[i] >= 0)
            assert_close(out[1] + (size_t)map[i] * C, out[0] + (size_t)i * C, C, 1e-5f, 1e-4f,
                         "prefixed vs whole rows");
    for (int i = 0; i < P; i++) {
        assert_close(grad[1][i], grad[0][i], kg_tensor_numel(params[i]), 1e-5f, 1e-4f,
                     "d weight");
        free(grad[0][i]), free(grad[1][i]);
    }
    free(out[0]), free(out[1]);
    /* Bad layouts are errors. */
    assert_false(kg_prefix_layout_init(ctx, &l, G, Lp, (int64_t[]){6, 3}, R, S, group, 0));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_RANGE);
    kg_ctx_free(ctx);
}

static void test_prefixed_rows(void **state)
{
    (void)state;
    prefixed_vs_whole(KG_BACKEND_CPU);
    kg_ctx *probe = kg_ctx_new(KG_BACKEND_VULKAN);
    bool vulkan = probe && !kg_ctx_status(probe);
    kg_ctx_free(probe);
    if (vulkan)
        prefixed_vs_whole(KG_BACKEND_VULKAN);
}

static void test_kv_cache_bounds(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(KG_BACKEND_CPU);
    kg_attention att = {
        .q = {.weight = kg_normal(ctx, 2, SHAPE(4, 4), 0, 1, 1)},
        .k = {.weight = kg_normal(ctx, 2, SHAPE(4, 4), 0, 1, 2)},
        .v = {.weight = kg_normal(ctx, 2, SHAPE(4, 4), 0, 1, 3)},
        .o = {.weight = kg_normal(ctx, 2, SHAPE(4, 4), 0, 1, 4)},
        .n_heads = 2, .n_kv_heads = 2, .head_dim = 2,
    };
    kg_kv_cache *cache = kg_kv_cache_new(ctx, 1, 1, 2, 3, 2);
    kg_scope scope = kg_scope_begin(ctx); /* the cache outlives it */
    assert_non_null(kg_attention_forward(&att, kg_normal(ctx, 3, SHAPE(1, 2, 4), 0, 1, 5), NULL,
                                         cache));
    kg_scope_end(ctx, scope);
    assert_int_equal(cache->len, 2);
    assert_ok(ctx);
    kg_tensor *two = kg_normal(ctx, 3, SHAPE(1, 2, 4), 0, 1, 6);
    assert_null(kg_attention_forward(&att, two, NULL, cache)); /* 2 + 2 > 3 */
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_RANGE);
    assert_int_equal(cache->len, 2);
    kg_clear_error(ctx);
    kg_kv_cache *wrong = kg_kv_cache_new(ctx, 1, 1, 3, 8, 2); /* 3 heads, not 2 */
    assert_null(kg_attention_forward(&att, two, NULL, wrong));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_kv_cache_free(wrong, 1);
    kg_kv_cache_free(cache, 1);
    kg_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_mask),
        cmocka_unit_test(test_grouped_heads),
        cmocka_unit_test(test_query_subset),
        cmocka_unit_test(test_prefixed_rows),
        cmocka_unit_test(test_kv_cache_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
