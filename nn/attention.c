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

/* Whether a query at logical position i sees a key at j <= i under the window (0: none). */
static bool in_window(int64_t i, int64_t j, int64_t window)
{
    return window <= 0 || j > i - window;
}

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
                bool sees = j <= i && in_window(i, j, window);
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
    if (!x)
        return NULL;
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

/* The heads' attention: q (B, H, T, D) against k and v (B, Hkv, S, D) under mask (B or 1, 1,
 * T or 1, S), or NULL → (B, T, H·D), before the output projection. */
static kg_tensor *attend_heads(const kg_attention *a, kg_tensor *q, kg_tensor *k, kg_tensor *v,
                               kg_tensor *mask)
{
    if (!q || !k || !v)
        return NULL;
    int64_t H = a->n_heads, Hkv = a->n_kv_heads, D = a->head_dim;
    int64_t B = kg_tensor_dim(q, 0), T = kg_tensor_dim(q, 2), S = kg_tensor_dim(k, 2);
    if (mask && (kg_tensor_dim(mask, -1) != S ||
                 (kg_tensor_dim(mask, -2) != T && kg_tensor_dim(mask, -2) != 1))) {
        kg_set_error(kg_tensor_ctx(q), KG_ERR_SHAPE, "kg_attention_forward: the mask's last dims "
                     "are (%lld, %lld); expected (%lld or 1, %lld) for %lld queries over %lld "
                     "keys", (long long)kg_tensor_dim(mask, -2),
                     (long long)kg_tensor_dim(mask, -1), (long long)T, (long long)S,
                     (long long)T, (long long)S);
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
        return kg_reshape(out, 3, (int64_t[]){B, 1, H * D});
    return kg_reshape(kg_transpose(kg_reshape(out, 4, (int64_t[]){B, H, T, D}), 1, 2), 3,
                      (int64_t[]){B, T, H * D});
}

static bool check_heads(const kg_attention *a, kg_ctx *ctx)
{
    int64_t H = a->n_heads, Hkv = a->n_kv_heads, D = a->head_dim;
    if (H <= 0 || Hkv <= 0 || D <= 0 || H % Hkv != 0)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward: H %lld, Hkv %lld, D %lld; "
                            "expected each > 0 and H a multiple of Hkv", (long long)H,
                            (long long)Hkv, (long long)D);
    return true;
}

/* Queries from xq (B, T, C), keys and values from x (B, S', C): xq is x itself, or (no cache,
 * no RoPE; its shape checked by kg_attention_forward_queries) its first T positions. */
static kg_tensor *attend(const kg_attention *a, kg_tensor *xq, kg_tensor *x, kg_tensor *mask,
                         kg_kv_cache *cache)
{
    kg_ctx *ctx = kg_tensor_ctx(x);
    if (!check_heads(a, ctx))
        return NULL;
    if (kg_tensor_ndim(x) != 3)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward: x has %d dims; expected "
                            "(B, T, C)", kg_tensor_ndim(x)), NULL;
    int64_t H = a->n_heads, Hkv = a->n_kv_heads, D = a->head_dim;
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
    return kg_linear_forward(&a->o, attend_heads(a, q, k, v, mask));
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

/* ---- Rows that share prompts -------------------------------------------------------------- */

bool kg_prefix_layout_init(kg_ctx *ctx, kg_prefix_layout *l, int64_t G, int64_t Lp,
                           const int64_t *prefix_len, int64_t R, int64_t S, const int32_t *group,
                           int64_t window)
{
    if (!ctx || !l || kg_ctx_status(ctx))
        return false;
    *l = (kg_prefix_layout){.G = G, .Lp = Lp, .R = R, .S = S};
    if (G < 1 || Lp < 1 || R < 1 || S < 1 || !prefix_len || !group)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_prefix_layout_init: G %lld, Lp %lld, R %lld, "
                            "S %lld; expected each >= 1 and the lengths and groups given",
                            (long long)G, (long long)Lp, (long long)R, (long long)S);
    for (int64_t g = 0; g < G; g++)
        if (prefix_len[g] < 0 || prefix_len[g] > Lp)
            return kg_set_error(ctx, KG_ERR_RANGE, "kg_prefix_layout_init: prompt %lld has %lld "
                                "tokens; expected 0 to Lp = %lld", (long long)g,
                                (long long)prefix_len[g], (long long)Lp);
    for (int64_t r = 0; r < R; r++)
        if (group[r] < 0 || group[r] >= G)
            return kg_set_error(ctx, KG_ERR_RANGE, "kg_prefix_layout_init: suffix %lld continues "
                                "prompt %d; expected 0 to %lld", (long long)r, group[r],
                                (long long)(G - 1));
    float *pm = malloc(sizeof *pm * (size_t)(G * Lp * Lp));
    float *sm = malloc(sizeof *sm * (size_t)(R * S * (Lp + S)));
    if (!pm || !sm) {
        free(pm);
        free(sm);
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_prefix_layout_init: out of host memory");
    }
    /* Column c of prompt g holds its token c − (Lp − L). A padding query sees itself alone,
     * so no row of the softmax is empty; nothing real reads it. */
    for (int64_t g = 0; g < G; g++)
        for (int64_t t = 0, pad = Lp - prefix_len[g]; t < Lp; t++)
            for (int64_t c = 0; c < Lp; c++)
                pm[(g * Lp + t) * Lp + c] =
                    (t < pad ? c == t : c >= pad && c <= t && in_window(t, c, window))
                        ? 0.0f : -INFINITY;
    /* Suffix position t is at logical position L + t: it sees prompt column c (position
     * c − (Lp − L)) when c is real, then its own positions up to t. */
    for (int64_t r = 0; r < R; r++)
        for (int64_t t = 0, pad = Lp - prefix_len[group[r]]; t < S; t++) {
            float *row = sm + (r * S + t) * (Lp + S);
            for (int64_t c = 0; c < Lp; c++)
                row[c] = c >= pad && in_window(Lp + t, c, window) ? 0.0f : -INFINITY;
            for (int64_t c = 0; c < S; c++)
                row[Lp + c] = c <= t && in_window(t, c, window) ? 0.0f : -INFINITY;
        }
    l->group = kg_from_host(ctx, KG_DTYPE_I32, 1, &R, group);
    l->prefix_mask = kg_from_host(ctx, KG_DTYPE_F32, 4, (int64_t[]){G, 1, Lp, Lp}, pm);
    l->suffix_mask = kg_from_host(ctx, KG_DTYPE_F32, 4, (int64_t[]){R, 1, S, Lp + S}, sm);
    free(pm);
    free(sm);
    return !kg_ctx_status(ctx);
}

/* Rows [start, start + B·T) of t (N, n·D) as heads (B, n, T, D). */
static kg_tensor *part_heads(kg_tensor *t, int64_t start, int64_t B, int64_t T, int64_t n,
                             int64_t D)
{
    return split_heads(kg_reshape(kg_slice(t, 0, start, B * T), 3, (int64_t[]){B, T, n * D}), n,
                       D);
}

/* A prompt's keys or values (G, Hkv, Lp, D) for each suffix that reads them, then the suffix's
 * own (R, Hkv, S, D): (R, Hkv, Lp + S, D). The gather's backward adds each suffix's gradient
 * into its prompt. */
static kg_tensor *with_prompt(kg_tensor *prompt, kg_tensor *own, const kg_prefix_layout *l)
{
    kg_tensor *flat = kg_reshape(prompt, 2, (int64_t[]){l->G, -1});
    kg_tensor *each = kg_reshape(kg_embedding(flat, l->group), 4,
                                 (int64_t[]){l->R, kg_tensor_dim(prompt, 1), l->Lp,
                                             kg_tensor_dim(prompt, 3)});
    return kg_concat((kg_tensor *[]){each, own}, 2, 2);
}

kg_tensor *kg_attention_forward_prefixed(const kg_attention *a, kg_tensor *x,
                                         const kg_prefix_layout *l)
{
    if (!a || !x || !l)
        return NULL;
    kg_ctx *ctx = kg_tensor_ctx(x);
    if (!check_heads(a, ctx))
        return NULL;
    int64_t H = a->n_heads, Hkv = a->n_kv_heads, D = a->head_dim;
    int64_t G = l->G, Lp = l->Lp, R = l->R, S = l->S, np = G * Lp;
    if (kg_tensor_ndim(x) != 2 || kg_tensor_dim(x, 0) != np + R * S)
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_attention_forward_prefixed: x has %d dims "
                            "(%lld rows); expected (G·Lp + R·S = %lld, C)", kg_tensor_ndim(x),
                            (long long)kg_tensor_dim(x, 0), (long long)(np + R * S)), NULL;
    /* The projections run on every position at once: one GEMM each. */
    kg_tensor *q = kg_linear_forward(&a->q, x), *k = kg_linear_forward(&a->k, x);
    kg_tensor *v = kg_linear_forward(&a->v, x);
    kg_tensor *qp = part_heads(q, 0, G, Lp, H, D), *qs = part_heads(q, np, R, S, H, D);
    kg_tensor *kp = part_heads(k, 0, G, Lp, Hkv, D), *ks = part_heads(k, np, R, S, Hkv, D);
    kg_tensor *vp = part_heads(v, 0, G, Lp, Hkv, D), *vs = part_heads(v, np, R, S, Hkv, D);
    if (a->rope_theta > 0) {
        qp = kg_rope(qp, 0, a->rope_theta);
        kp = kg_rope(kp, 0, a->rope_theta);
        qs = kg_rope(qs, Lp, a->rope_theta);
        ks = kg_rope(ks, Lp, a->rope_theta);
    }
    kg_tensor *op = attend_heads(a, qp, kp, vp, l->prefix_mask); /* (G, Lp, H·D) */
    kg_tensor *os = attend_heads(a, qs, with_prompt(kp, ks, l), with_prompt(vp, vs, l),
                                 l->suffix_mask);
    kg_tensor *out = kg_concat((kg_tensor *[]){kg_reshape(op, 2, (int64_t[]){np, H * D}),
                                               kg_reshape(os, 2, (int64_t[]){R * S, H * D})},
                               2, 0);
    return kg_linear_forward(&a->o, out);
}
