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

/* One sequence being generated: the ids so far, the KV cache (NULL: recompute the whole
 * sequence each step, the reference), and every buffer a step needs, made once so a step
 * allocates nothing on the host outside the ops. */
struct kg_decoder {
    const kg_model *m;
    int32_t *seq;       /* cap ids */
    int64_t n, cap;     /* ids fed so far, at most cap */
    kg_kv_cache *cache;
    float *logits;      /* V: the last step's */
    prob_id *probs;     /* V: sampling's sort buffer */
    kg_linear head;     /* the LM head as decoding reads it (see packed_head) */
};

/* The LM head for decoding: an f32 head (every GGUF's token embedding, dequantized on load)
 * that q8_0 holds exactly — a file that packed it as q8_0 — is read packed, a quarter of the
 * bytes of the step's largest product. Checked element for element (requantizing q8_0's
 * values is lossless, their block scale being amax/127), so the logits do not change; any other
 * head, or one with an adapter or bias, is used as it is. */
static bool q8_0_exact(kg_tensor *w, kg_tensor *q)
{
    kg_scope scope = kg_scope_begin(kg_tensor_ctx(w));
    kg_tensor *diff = kg_sub(kg_cast(q, KG_DTYPE_F32), w);
    kg_tensor *sq = kg_sum_all(kg_mul(diff, diff));
    bool exact = sq && kg_item(sq) == 0.0;
    kg_scope_end(kg_tensor_ctx(w), scope);
    return exact;
}

static kg_linear packed_head(const kg_model *m)
{
    const kg_linear *h = &m->lm_head;
    kg_ctx *ctx = m->ctx;
    if (h->kind != KG_LINEAR_DENSE || h->bias || kg_tensor_dtype(h->weight) != KG_DTYPE_F32 ||
        kg_tensor_dim(h->weight, 1) % 32 != 0)
        return *h;
    kg_linear packed = *h;
    kg_no_grad_begin(ctx);
    kg_scope scope = kg_scope_begin(ctx); /* first one row, so an f32 head costs no more */
    kg_tensor *row = kg_slice(h->weight, 0, 0, 1);
    bool maybe = q8_0_exact(row, kg_quantize(row, KG_DTYPE_Q8_0));
    kg_scope_end(ctx, scope);
    kg_tensor *q = maybe ? kg_tensor_keep(kg_quantize(h->weight, KG_DTYPE_Q8_0)) : NULL;
    if (q && q8_0_exact(h->weight, q) && !kg_ctx_status(ctx))
        packed.weight = q;
    else
        kg_tensor_free(q);
    kg_no_grad_end(ctx);
    return packed;
}

kg_decoder *kg_decoder_new(const kg_model *m, int64_t max_len, bool cache)
{
    if (!m || kg_ctx_status(m->ctx))
        return NULL;
    kg_ctx *ctx = m->ctx;
    if (m->cfg.head != KG_HEAD_CAUSAL_LM || max_len < 1) {
        kg_set_error(ctx, KG_ERR_STATE, "kg_decoder_new: %s, max_len %lld; expected a causal-LM "
                     "head and max_len >= 1", m->cfg.head == KG_HEAD_CAUSAL_LM ? "causal LM"
                     : "no causal-LM head", (long long)max_len);
        return NULL;
    }
    size_t V = (size_t)m->cfg.vocab_size;
    kg_decoder *d = calloc(1, sizeof *d);
    if (d) {
        *d = (kg_decoder){.m = m, .cap = max_len, .seq = malloc(sizeof *d->seq * (size_t)max_len),
                          .logits = malloc(sizeof *d->logits * V),
                          .probs = malloc(sizeof *d->probs * V)};
        d->cache = cache ? kg_model_cache_new(m, 1, max_len) : NULL;
        d->head = cache ? packed_head(m) : m->lm_head; /* the reference stays as it was */
    }
    if (!d || !d->seq || !d->logits || !d->probs || (cache && !d->cache)) {
        if (!kg_ctx_status(ctx))
            kg_set_error(ctx, KG_ERR_NOMEM, "kg_decoder_new: out of host memory");
        kg_decoder_free(d);
        return NULL;
    }
    return d;
}

void kg_decoder_free(kg_decoder *d)
{
    if (!d)
        return;
    kg_kv_cache_free(d->cache, (int)d->m->cfg.n_layers);
    if (d->head.weight != d->m->lm_head.weight)
        kg_tensor_free(d->head.weight);
    free(d->seq);
    free(d->logits);
    free(d->probs);
    free(d);
}

int64_t kg_decoder_len(const kg_decoder *d)
{
    return d ? d->n : 0;
}

void kg_decoder_reset(kg_decoder *d)
{
    if (!d)
        return;
    d->n = 0;
    for (int64_t l = 0; d->cache && l < d->m->cfg.n_layers; l++)
        d->cache[l].len = 0;
}

const kg_linear *kg_decoder_head(const kg_decoder *d)
{
    return d ? &d->head : NULL;
}

const float *kg_decoder_feed(kg_decoder *d, const int32_t *ids, int64_t n)
{
    if (!d || kg_ctx_status(d->m->ctx))
        return NULL;
    const kg_model *m = d->m;
    kg_ctx *ctx = m->ctx;
    if (!ids || n < 1 || d->n + n > d->cap) {
        kg_set_error(ctx, KG_ERR_RANGE, "kg_decoder_feed: %lld ids after %lld; expected at "
                     "least one and at most %lld in all", (long long)n, (long long)d->n,
                     (long long)d->cap);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size) {
            kg_set_error(ctx, KG_ERR_RANGE, "kg_decoder_feed: id %lld at position %lld; "
                         "expected 0..%lld", (long long)ids[i], (long long)(d->n + i),
                         (long long)m->cfg.vocab_size - 1);
            return NULL;
        }
        d->seq[d->n + i] = ids[i];
    }
    d->n += n;
    /* With the cache only the new positions go through the model; without it, all of them. */
    int64_t start = d->cache ? d->cache[0].len : 0, T = d->n - start;
    kg_no_grad_begin(ctx);
    kg_scope scope = kg_scope_begin(ctx);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 2, (int64_t[]){1, T}, d->seq + start);
    kg_tensor *h = kg_model_hidden(m, &(kg_model_input){.ids = t}, d->cache); /* (1, T, C) */
    kg_tensor *logits = kg_linear_forward(&d->head, kg_slice(h, 1, T - 1, 1)); /* (1,1,V) */
    bool ok = logits && kg_tensor_to_host(logits, d->logits,
                                          sizeof *d->logits * (size_t)m->cfg.vocab_size);
    kg_scope_end(ctx, scope);
    kg_no_grad_end(ctx);
    return ok && !kg_ctx_status(ctx) ? d->logits : NULL;
}

/* Sample from softmax(logits / temperature), cut to the top-p nucleus. */
static int64_t sample(const float *logits, int64_t V, const kg_generate_config *g,
                      uint64_t *rng, prob_id *p)
{
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
    return pick;
}

int64_t kg_decoder_pick(kg_decoder *d, const kg_generate_config *g, uint64_t *rng)
{
    int64_t V = d->m->cfg.vocab_size;
    return g->temperature > 0 ? sample(d->logits, V, g, rng, d->probs) : argmax(d->logits, V);
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
    if (g->max_new == 0)
        return 0;
    kg_decoder *d = kg_decoder_new(m, n_prompt + g->max_new, !g->no_cache);
    uint64_t rng = g->seed;
    int64_t made = 0;
    const int32_t *feed = prompt;
    int64_t n_feed = n_prompt;
    while (d && made < g->max_new && kg_decoder_feed(d, feed, n_feed)) {
        int32_t id = (int32_t)kg_decoder_pick(d, g, &rng);
        out[made++] = id;
        if (g->on_token && !g->on_token(g->user, id))
            break;
        if (!g->ignore_eos && id == m->cfg.eos_token_id)
            break;
        feed = &out[made - 1], n_feed = 1;
    }
    kg_decoder_free(d);
    return kg_ctx_status(ctx) ? -1 : made;
}
