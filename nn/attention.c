/* attention.c — multi-head attention as HF's eager implementation computes it: projections,
 * optional rotate-half RoPE, grouped key/value heads serving their query heads (repeat_kv's
 * result, without its copies), softmax of the scaled scores plus an additive mask in one op
 * (dropout on it while training), output projection. Also the masks (padding, causal, sliding window) and the KV cache generation
 * reuses keys and values from.
 */
#include "kg_nn.h"

#include <math.h>
#include <stdlib.h>

/* ---- KV cache ----------------------------------------------------------------------------- */

kg_kv_cache *kg_kv_cache_new(kg_ctx *ctx, int n_layers, int64_t B, int64_t n_kv_heads,
                             int64_t max_len, int64_t head_dim)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    if (n_layers <= 0 || B <= 0 || n_kv_heads <= 0 || max_len <= 0 || head_dim <= 0) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_kv_cache_new: %d layers, B %lld, Hkv %lld, length "
                     "%lld, D %lld; expected every one > 0", n_layers, (long long)B,
                     (long long)n_kv_heads, (long long)max_len, (long long)head_dim);
        return NULL;
    }
    kg_kv_cache *c = calloc((size_t)n_layers, sizeof *c);
    if (!c) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_kv_cache_new: out of host memory");
        return NULL;
    }
    const int64_t shape[4] = {B, n_kv_heads, max_len, head_dim};
    for (int l = 0; l < n_layers; l++) {
        /* Kept: the cache outlives the scope of every step that writes it. */
        c[l].k = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, 4, shape));
        c[l].v = kg_tensor_keep(kg_zeros(ctx, KG_DTYPE_F32, 4, shape));
    }
    if (kg_ctx_status(ctx)) {
        kg_kv_cache_free(c, n_layers);
        return NULL;
    }
    return c;
}

void kg_kv_cache_free(kg_kv_cache *caches, int n_layers)
{
    if (!caches)
        return;
    for (int l = 0; l < n_layers; l++) {
        kg_tensor_free(caches[l].k);
        kg_tensor_free(caches[l].v);
    }
    free(caches);
}

/* ---- Masks -------------------------------------------------------------------------------- */

kg_tensor *kg_attention_mask(kg_ctx *ctx, kg_tensor *keep, int64_t T, int64_t pos0, bool causal,
                             int64_t window)
{
    if (!ctx || kg_ctx_status(ctx))
        return NULL;
    int64_t S = pos0 + T;
    if (T <= 0 || pos0 < 0) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_attention_mask: T %lld, pos0 %lld; expected T > 0 and "
                     "pos0 >= 0", (long long)T, (long long)pos0);
        return NULL;
    }
    kg_tensor *mask = NULL;
    if (causal) { /* (1, 1, T, S), built on the host: it depends on nothing else */
        float *m = malloc(sizeof(float) * (size_t)(T * S));
        if (!m) {
            kg_set_error(ctx, KG_ERR_NOMEM, "kg_attention_mask: out of host memory");
            return NULL;
        }
        for (int64_t t = 0; t < T; t++) {
            int64_t i = pos0 + t; /* the query's position */
            for (int64_t j = 0; j < S; j++) {
                bool sees = j <= i && (window <= 0 || j > i - window);
                m[t * S + j] = sees ? 0.0f : -INFINITY;
            }
        }
        mask = kg_from_host(ctx, KG_DTYPE_F32, 4, (int64_t[]){1, 1, T, S}, m);
        free(m);
    }
    if (keep) {
        if (kg_tensor_dtype(keep) != KG_DTYPE_I32 || kg_tensor_ndim(keep) != 2 ||
            kg_tensor_dim(keep, 1) != S) {
            kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_mask: keep is %s with %d dims (last "
                         "%lld); expected (B, %lld) i32 (every key position)",
                         kg_dtype_name(kg_tensor_dtype(keep)), kg_tensor_ndim(keep),
                         (long long)kg_tensor_dim(keep, -1), (long long)S);
            return NULL;
        }
        int64_t B = kg_tensor_dim(keep, 0);
        kg_tensor *zero = kg_zeros(ctx, KG_DTYPE_F32, 1, (int64_t[]){1});
        kg_tensor *pad = kg_eq(kg_cast(keep, KG_DTYPE_F32), zero); /* (B, S): 1 at padding */
        kg_tensor *pad_mask = kg_masked_fill(kg_zeros(ctx, KG_DTYPE_F32, 4,
                                                      (int64_t[]){B, 1, 1, S}),
                                             kg_reshape(pad, 4, (int64_t[]){B, 1, 1, S}),
                                             -INFINITY);
        mask = mask ? kg_add(mask, pad_mask) : pad_mask; /* (B, 1, T or 1, S) */
    }
    return mask;
}

/* ---- Attention ---------------------------------------------------------------------------- */

/* (B, T, n·D) → (B, n, T, D). One position (decoding) is the same memory: one view, not two. */
static kg_tensor *split_heads(kg_tensor *x, int64_t n, int64_t D)
{
    int64_t B = kg_tensor_dim(x, 0), T = kg_tensor_dim(x, 1);
    if (T == 1)
        return kg_reshape(x, 4, (int64_t[]){B, n, 1, D});
    return kg_transpose(kg_reshape(x, 4, (int64_t[]){B, T, n, D}), 1, 2);
}

/* Append this call's keys and values (B, Hkv, T, D) to the cache; the cache's filled rows
 * (B, Hkv, len + T, D) come back through k and v. */
static bool cache_append(kg_kv_cache *c, kg_tensor **k, kg_tensor **v)
{
    kg_ctx *ctx = kg_tensor_ctx(*k);
    int64_t T = kg_tensor_dim(*k, 2), cap = kg_tensor_dim(c->k, 2);
    for (int d = 0; d < 4; d++)
        if (d != 2 && kg_tensor_dim(c->k, d) != kg_tensor_dim(*k, d))
            return kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward: the cache's dim %d is "
                                "%lld; the keys' is %lld (expected (B, Hkv, S_max, D) to match)",
                                d, (long long)kg_tensor_dim(c->k, d),
                                (long long)kg_tensor_dim(*k, d));
    if (c->len + T > cap)
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_attention_forward: %lld cached + %lld new "
                            "positions; the cache holds %lld", (long long)c->len, (long long)T,
                            (long long)cap);
    if (!kg_tensor_assign(kg_slice(c->k, 2, c->len, T), *k) ||
        !kg_tensor_assign(kg_slice(c->v, 2, c->len, T), *v))
        return false;
    c->len += T;
    *k = kg_slice(c->k, 2, 0, c->len);
    *v = kg_slice(c->v, 2, 0, c->len);
    return true;
}

/* Queries from xq (B, T, C), keys and values from x (B, S', C): xq is x itself, or (no cache,
 * no RoPE; its shape checked by kg_attention_forward_queries) its first T positions. */
static kg_tensor *attend(const kg_attention *a, kg_tensor *xq, kg_tensor *x, kg_tensor *mask,
                         kg_kv_cache *cache)
{
    kg_ctx *ctx = kg_tensor_ctx(x);
    int64_t H = a->n_heads, Hkv = a->n_kv_heads, D = a->head_dim;
    if (kg_tensor_ndim(x) != 3 || H <= 0 || Hkv <= 0 || D <= 0 || H % Hkv != 0) {
        kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward: x has %d dims, H %lld, Hkv %lld, "
                     "D %lld; expected x (B, T, C) and H a multiple of Hkv", kg_tensor_ndim(x),
                     (long long)H, (long long)Hkv, (long long)D);
        return NULL;
    }
    int64_t B = kg_tensor_dim(xq, 0), T = kg_tensor_dim(xq, 1);
    int64_t pos0 = cache ? cache->len : 0;
    kg_tensor *q = split_heads(kg_linear_forward(&a->q, xq), H, D);  /* (B, H, T, D) */
    kg_tensor *k = split_heads(kg_linear_forward(&a->k, x), Hkv, D); /* (B, Hkv, T, D) */
    kg_tensor *v = split_heads(kg_linear_forward(&a->v, x), Hkv, D);
    if (a->rope_theta > 0) {
        q = kg_rope(q, pos0, a->rope_theta);
        k = kg_rope(k, pos0, a->rope_theta);
    }
    if (!q || !k || !v || (cache && !cache_append(cache, &k, &v)))
        return NULL;
    int64_t S = kg_tensor_dim(k, 2);
    if (mask && (kg_tensor_dim(mask, -1) != S ||
                 (kg_tensor_dim(mask, -2) != T && kg_tensor_dim(mask, -2) != 1))) {
        kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward: the mask's last dims are (%lld, "
                     "%lld); expected (%lld or 1, %lld) for %lld queries over %lld keys",
                     (long long)kg_tensor_dim(mask, -2), (long long)kg_tensor_dim(mask, -1),
                     (long long)T, (long long)S, (long long)T, (long long)S);
        return NULL;
    }
    /* GQA without repeat_kv: the G = H/Hkv query heads that share a key/value head are one
     * (G·T, D) matrix against that head's keys, so K and V are read as they are (the matmul
     * reads heads through their strides: no copies). */
    int64_t G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    if (a->scale_query)
        q = kg_scale(q, scale);
    q = kg_reshape(q, 4, (int64_t[]){B, Hkv, G * T, D});
    kg_tensor *scores = kg_matmul_t(q, k, false, true); /* (B, Hkv, G·T, S) */
    scores = kg_reshape(scores, 4, (int64_t[]){B, H, T, S});
    /* softmax(scale·scores + mask) in one op, as the scale and add would round it */
    kg_tensor *probs = kg_softmax_scaled(scores, a->scale_query ? 1.0f : scale, mask);
    probs = kg_mode_dropout(a->mode, probs, a->dropout);
    kg_tensor *out = kg_matmul(kg_reshape(probs, 4, (int64_t[]){B, Hkv, G * T, S}), v);
    if (T == 1) /* (B, Hkv, G, D) is already (B, 1, H·D) in memory */
        out = kg_reshape(out, 3, (int64_t[]){B, 1, H * D});
    else
        out = kg_reshape(kg_transpose(kg_reshape(out, 4, (int64_t[]){B, H, T, D}), 1, 2), 3,
                         (int64_t[]){B, T, H * D});
    return kg_linear_forward(&a->o, out);
}

kg_tensor *kg_attention_forward(const kg_attention *a, kg_tensor *x, kg_tensor *mask,
                                kg_kv_cache *cache)
{
    return a && x ? attend(a, x, x, mask, cache) : NULL;
}

kg_tensor *kg_attention_forward_queries(const kg_attention *a, kg_tensor *xq, kg_tensor *x,
                                        kg_tensor *mask)
{
    if (!a || !xq || !x)
        return NULL;
    if (a->rope_theta > 0 || kg_tensor_ndim(xq) != 3 || kg_tensor_ndim(x) != 3 ||
        kg_tensor_dim(xq, 0) != kg_tensor_dim(x, 0) || kg_tensor_dim(xq, 2) != kg_tensor_dim(x, 2) ||
        kg_tensor_dim(xq, 1) > kg_tensor_dim(x, 1))
        return kg_set_error(kg_tensor_ctx(x), KG_ERR_SHAPE, "kg_attention_forward_queries: "
                            "queries %d dims (%lld positions), x %d dims (%lld), RoPE %s; "
                            "expected (B, Tq, C) and (B, T, C) with Tq <= T, and no RoPE",
                            kg_tensor_ndim(xq), (long long)kg_tensor_dim(xq, 1), kg_tensor_ndim(x),
                            (long long)kg_tensor_dim(x, 1), a->rope_theta > 0 ? "on" : "off"),
               NULL;
    return attend(a, xq, x, mask, NULL);
}
