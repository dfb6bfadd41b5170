/* generate.c — the generation loop of a causal LM: the prompt through the model once (filling
 * the KV cache), then one token per step, picked greedily (as transformers' do_sample=False) or
 * sampled with temperature and top-p from a seeded generator. Without the cache every step
 * recomputes the whole sequence (the reference the cache is tested against).
 */
#include "models/kg_models.h"

#include <math.h>
#include <stdlib.h>

/* splitmix64: a small, seedable generator (the same seed gives the same tokens anywhere). */
static double uniform01(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

typedef struct prob_id {
    double p;
    int64_t id;
} prob_id;

static int by_prob_desc(const void *a, const void *b)
{
    double pa = ((const prob_id *)a)->p, pb = ((const prob_id *)b)->p;
    return pa < pb ? 1 : pa > pb ? -1 : 0;
}

/* Sample from softmax(logits / temperature), cut to the top-p nucleus; -1 when out of memory. */
static int64_t sample(const float *logits, int64_t V, const kg_generate_config *g,
                      uint64_t *rng)
{
    prob_id *p = malloc(sizeof *p * (size_t)V);
    if (!p)
        return -1;
    double mx = logits[argmax(logits, V)], sum = 0;
    for (int64_t i = 0; i < V; i++) {
        p[i] = (prob_id){exp((logits[i] - mx) / g->temperature), i};
        sum += p[i].p;
    }
    qsort(p, (size_t)V, sizeof *p, by_prob_desc);
    double top_p = g->top_p > 0 && g->top_p < 1 ? g->top_p : 1.0, kept = 0;
    int64_t n = 0;
    while (n < V && (n == 0 || kept < top_p * sum)) /* the smallest set reaching top_p */
        kept += p[n++].p;
    double u = uniform01(rng) * kept, acc = 0;
    int64_t pick = p[n - 1].id;
    for (int64_t i = 0; i < n; i++) {
        acc += p[i].p;
        if (u < acc) {
            pick = p[i].id;
            break;
        }
    }
    free(p);
    return pick;
}

/* The logits of the last position after feeding ids[0..n) (the whole sequence without a
 * cache; only the positions after the cache's length with one); malloc'd V floats. */
static float *next_logits(const kg_model *m, const int32_t *ids, int64_t n, kg_kv_cache *cache)
{
    kg_ctx *ctx = m->ctx;
    int64_t start = cache ? cache[0].len : 0, T = n - start;
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, T}, ids + start);
    kg_tensor *h = kg_model_hidden(m, &(kg_model_input){.ids = t}, cache); /* (1, T, C) */
    kg_tensor *last = kg_slice(h, 1, T - 1, 1);
    kg_tensor *logits = kg_linear_forward(&m->lm_head, last); /* (1, 1, V) */
    if (!logits)
        return NULL;
    float *out = kg_tensor_to_f32(logits);
    if (!out)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_generate: out of host memory");
    return out;
}

int64_t kg_model_generate(const kg_model *m, const int32_t *prompt, int64_t n_prompt,
                          const kg_generate_config *g, int32_t *out)
{
    if (!m || kg_ctx_status(m->ctx))
        return -1;
    kg_ctx *ctx = m->ctx;
    if (!prompt || !g || !out || n_prompt < 1 || g->max_new < 0 || !(g->temperature >= 0)) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_model_generate: prompt of %lld ids, max_new %lld, "
                     "temperature %g; expected at least one id, max_new >= 0, temperature >= 0",
                     (long long)n_prompt, g ? (long long)g->max_new : 0LL,
                     g ? (double)g->temperature : 0.0);
        return -1;
    }
    if (m->cfg.head != KG_HEAD_CAUSAL_LM) {
        kg_set_error(ctx, KG_ERR_STATE, "kg_model_generate: the model has no causal-LM head");
        return -1;
    }
    for (int64_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size) {
            kg_set_error(ctx, KG_ERR_RANGE, "kg_model_generate: prompt id %lld at position "
                         "%lld; expected 0..%lld", (long long)prompt[i], (long long)i,
                         (long long)m->cfg.vocab_size - 1);
            return -1;
        }
    int64_t total = n_prompt + g->max_new;
    int32_t *seq = malloc(sizeof *seq * (size_t)total);
    if (!seq) {
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_generate: out of host memory");
        return -1;
    }
    for (int64_t i = 0; i < n_prompt; i++)
        seq[i] = prompt[i];
    kg_kv_cache *cache = g->no_cache ? NULL : kg_model_cache_new(m, 1, total);
    uint64_t rng = g->seed;
    int64_t n = n_prompt, made = 0;
    kg_no_grad_begin(ctx);
    while (made < g->max_new && !kg_ctx_status(ctx)) {
        kg_scope scope = kg_scope_begin(ctx);
        float *logits = next_logits(m, seq, n, cache);
        kg_scope_end(ctx, scope);
        if (!logits)
            break;
        int64_t id = g->temperature > 0 ? sample(logits, m->cfg.vocab_size, g, &rng)
                                        : argmax(logits, m->cfg.vocab_size);
        free(logits);
        if (id < 0) {
            kg_set_error(ctx, KG_ERR_NOMEM, "kg_model_generate: out of host memory");
            break;
        }
        seq[n++] = out[made++] = (int32_t)id;
        if (g->on_token && !g->on_token(g->user, (int32_t)id))
            break;
        if (!g->ignore_eos && id == m->cfg.eos_token_id)
            break;
    }
    kg_no_grad_end(ctx);
    kg_kv_cache_free(cache, (int)m->cfg.n_layers);
    free(seq);
    return kg_ctx_status(ctx) ? -1 : made;
}
