/* adapter.c — adapters on one linear layer: LoRA, Kron-LoRA and PEFT's LoKr. Their factors and
 * init, their share of the forward pass (never forming ΔW), ΔW materialized for merging and
 * tests, merge / unmerge, and the configuration's names and defaults.
 */
#include "kg_adapter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Configuration ------------------------------------------------------------------------ */

static const char *const kind_names[KG_ADAPTER_KIND_COUNT] = {
    [KG_ADAPTER_NONE] = "none",         [KG_ADAPTER_LORA] = "lora",
    [KG_ADAPTER_KRONLORA] = "kronlora", [KG_ADAPTER_LOKR] = "lokr",
    [KG_ADAPTER_FULL] = "full",
};

const char *kg_adapter_kind_name(kg_adapter_kind kind)
{
    return (unsigned)kind < KG_ADAPTER_KIND_COUNT ? kind_names[kind] : "?";
}

bool kg_adapter_kind_parse(kg_ctx *ctx, const char *name, kg_adapter_kind *out)
{
    for (int k = 0; name && k < KG_ADAPTER_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (kg_adapter_kind)k;
            return true;
        }
    return kg_set_error(ctx, KG_ERR_ARG, "adapter kind '%s'; expected none, lora, kronlora, lokr "
                        "or full", name ? name : "(null)");
}

kg_adapter_config kg_adapter_config_default(kg_adapter_kind kind)
{
    return (kg_adapter_config){.kind = kind, .rank = 8, .alpha = 8.0, .kron_a2 = 2,
                               .kron_a1 = 4, .lokr_factor = -1};
}

bool kg_adapter_parse_kron_a(kg_ctx *ctx, const char *text, kg_adapter_config *cfg)
{
    const char *s = text ? text : "";
    char *end;
    long long a2 = strtoll(s, &end, 10), a1 = 0;
    bool ok = end != s && a2 > 0;
    if (ok) { /* "x", "X" or the UTF-8 multiplication sign */
        size_t sep = (*end == 'x' || *end == 'X') ? 1 : strncmp(end, "\xc3\x97", 2) == 0 ? 2 : 0;
        const char *b = end + sep;
        a1 = sep && *b >= '0' && *b <= '9' ? strtoll(b, &end, 10) : 0;
        ok = sep && a1 > 0 && *end == '\0' && a1 < (1LL << 31) && a2 < (1LL << 31);
    }
    if (!ok)
        return kg_set_error(ctx, KG_ERR_ARG, "kron_a '%s'; expected dA2xdA1, two positive "
                            "integers such as 2x4 (A is dA2 × dA1: d_out = dA2·dB2, d_in = "
                            "dA1·dB1)", s);
    cfg->kron_a2 = a2;
    cfg->kron_a1 = a1;
    return true;
}

/* ---- Factors ------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A kept (rows, cols) parameter U(±gain·√(3/cols)), zeros when gain is 0. Gain 1/√3 is
 * torch's kaiming_uniform_(a=√5), U(±1/√cols) (fan_in = cols). */
#define KAIMING 0.57735026918962576f

static kg_tensor *factor(kg_ctx *ctx, int64_t rows, int64_t cols, float gain, uint64_t seed)
{
    const int64_t shape[2] = {rows, cols};
    bool zero = gain == 0.0f;
    float bound = gain == KAIMING ? 1.0f / sqrtf((float)cols) : gain * sqrtf(3.0f / (float)cols);
    kg_tensor *t = zero ? kg_zeros(ctx, KG_DTYPE_F32, 2, shape)
                        : kg_uniform(ctx, 2, shape, -bound, bound, seed);
    if (t) {
        kg_tensor_keep(t);
        kg_set_requires_grad(t, true);
    }
    return t;
}

bool kg_linear_attach(kg_linear *l, kg_linear_kind kind, const kg_adapter_shape *s, float scale,
                      float dropout, kg_mode *mode, uint64_t seed)
{
    if (!l || !l->weight || !s)
        return false;
    kg_ctx *ctx = kg_tensor_ctx(l->weight);
    if (kg_ctx_status(ctx))
        return false;
    if (l->kind != KG_LINEAR_DENSE)
        return kg_set_error(ctx, KG_ERR_STATE, "kg_linear_attach: the layer already has an "
                            "adapter; expected a dense layer");
    int64_t out = kg_tensor_dim(l->weight, 0), in = kg_tensor_dim(l->weight, 1), R = s->rank;
    bool kron = kind == KG_LINEAR_KRONLORA || kind == KG_LINEAR_LOKR;
    if (kind != KG_LINEAR_LORA && !kron)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_linear_attach: kind %d; expected LORA, KRONLORA "
                            "or LOKR", (int)kind);
    if (R < 1 || (kron && (s->a2 < 1 || s->a1 < 1 || out % s->a2 || in % s->a1)))
        return kg_set_error(ctx, KG_ERR_SHAPE, "kg_linear_attach: layer (%lld, %lld), rank %lld, "
                            "outer factor (%lld, %lld); expected rank >= 1 and an outer factor "
                            "(dA2, dA1) with d_out = dA2·dB2, d_in = dA1·dB1", (long long)out,
                            (long long)in, (long long)R, (long long)s->a2, (long long)s->a1);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return kg_set_error(ctx, KG_ERR_RANGE, "kg_linear_attach: dropout %g; expected 0 <= p "
                            "< 1", (double)dropout);
    kg_adapter ad = {.scale = scale, .dropout = dropout, .mode = mode};
    uint64_t k = mix64(seed);
#define SEED (k = mix64(k))
    if (kind == KG_LINEAR_LORA) { /* PEFT: A kaiming-uniform(a=√5), B zeros */
        ad.lora_a = factor(ctx, R, in, KAIMING, SEED);
        ad.lora_b = factor(ctx, out, R, 0.0f, SEED);
    } else if (kind == KG_LINEAR_LOKR) {
        /* PEFT's init exactly: w1 (or w1_a) = 0, everything else kaiming-uniform. */
        int64_t a2 = s->a2, a1 = s->a1, b2 = out / a2, b1 = in / a1;
        if (s->w1_lowrank) {
            ad.w1_a = factor(ctx, a2, R, 0.0f, SEED);
            ad.w1_b = factor(ctx, R, a1, KAIMING, SEED);
        } else {
            ad.w1 = factor(ctx, a2, a1, 0.0f, SEED);
        }
        if (!s->w2_lowrank) {
            ad.w2 = factor(ctx, b2, b1, KAIMING, SEED);
        } else {
            ad.w2_a = factor(ctx, b2, R, KAIMING, SEED);
            ad.w2_b = factor(ctx, R, b1, KAIMING, SEED);
        }
    } else {
        /* Kron-LoRA: B1 = 0 (default) or A = 0, so ΔW = 0; A's gain sets how strongly every
         * B1 step reaches ΔW (docs/kron-lora.md). */
        int64_t a2 = s->a2, a1 = s->a1, b2 = out / a2, b1 = in / a1;
        bool zero_a = s->kron_init == KG_KRON_INIT_A_ZERO;
        float gain = s->a_gain > 0 ? (float)s->a_gain : (float)KG_KRON_A_GAIN_DEFAULT;
        ad.w1 = factor(ctx, a2, a1, zero_a ? 0.0f : gain, SEED);
        ad.w2_a = factor(ctx, b2, R, zero_a ? KAIMING : 0.0f, SEED);
        ad.w2_b = factor(ctx, R, b1, KAIMING, SEED);
    }
#undef SEED
    l->kind = kind;
    l->ad = ad;
    if (kg_ctx_status(ctx)) {
        kg_linear_detach(l);
        return false;
    }
    return true;
}

void kg_linear_detach(kg_linear *l)
{
    if (!l || l->kind == KG_LINEAR_DENSE)
        return;
    if (l->ad.merged)
        kg_linear_unmerge(l);
    kg_tensor *all[] = {l->ad.lora_a, l->ad.lora_b, l->ad.w1, l->ad.w1_a,
                        l->ad.w1_b,   l->ad.w2,     l->ad.w2_a, l->ad.w2_b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kg_tensor_free(all[i]);
    l->ad = (kg_adapter){0};
    l->kind = KG_LINEAR_DENSE;
}

/* ---- Forward, ΔW, merging ----------------------------------------------------------------- */

/* W1 (dA2, dA1) and W2 (dB2, dB1), the low-rank ones formed: both are small, ΔW is not. */
static kg_tensor *outer_factor(const kg_adapter *ad)
{
    return ad->w1 ? ad->w1 : kg_matmul(ad->w1_a, ad->w1_b);
}

static bool check_adapter(const kg_linear *l, const char *fn)
{
    kg_ctx *ctx = kg_tensor_ctx(l->weight);
    if (kg_ctx_status(ctx))
        return false;
    if (l->kind == KG_LINEAR_LORA || l->kind == KG_LINEAR_KRONLORA || l->kind == KG_LINEAR_LOKR)
        return true;
    return kg_set_error(ctx, KG_ERR_ARG, "%s: the layer has no adapter (kind %d)", fn,
                        (int)l->kind);
}

kg_tensor *kg_adapter_forward(const kg_linear *l, kg_tensor *x)
{
    if (!l || !x || !l->weight || !check_adapter(l, "kg_adapter_forward"))
        return NULL;
    const kg_adapter *ad = &l->ad;
    /* PEFT gives LoRA dropout on the branch's input and LoKr none (it has rank / module
     * dropout instead, not implemented). */
    kg_tensor *xd = l->kind == KG_LINEAR_LOKR ? x : kg_mode_dropout(ad->mode, x, ad->dropout);
    /* The scale multiplies the smallest factor (LoRA's B: d_out × r; Kron-LoRA's A), not the
     * (N, d_out) output: the same product (PEFT scales the output; the roundings differ by an
     * ulp), without a pass over the output forward and another over its gradient backward. */
    kg_tensor *y;
    if (l->kind == KG_LINEAR_LORA) {
        y = kg_lowrank_linear(xd, kg_scale(ad->lora_b, ad->scale), ad->lora_a); /* s·B·(A·x) */
    } else if (ad->w2_a) {
        y = kg_kron_linear(xd, kg_scale(outer_factor(ad), ad->scale), ad->w2_a, ad->w2_b);
    } else {
        /* A full w2: Y = W1·X·W2ᵀ per token, X = x as (dA1, dB1) (docs/kron-lora.md). */
        kg_tensor *w1 = kg_scale(outer_factor(ad), ad->scale);
        int64_t a1 = kg_tensor_dim(w1, 1), b1 = kg_tensor_dim(ad->w2, 1);
        int64_t out = kg_tensor_dim(l->weight, 0), nd = kg_tensor_ndim(x);
        int64_t shape[KG_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            shape[d] = kg_tensor_dim(x, d);
        shape[nd - 1] = out;
        kg_tensor *X = kg_reshape(xd, 3, (int64_t[]){-1, a1, b1});    /* (N, dA1, dB1) */
        kg_tensor *T = kg_matmul_t(X, ad->w2, false, true);            /* (N, dA1, dB2) */
        y = kg_reshape(kg_matmul(w1, T), (int)nd, shape);              /* (N, dA2, dB2) */
    }
    if (y && ad->mode && ad->mode->stats) {
        kg_ctx *ctx = kg_tensor_ctx(y);
        kg_no_grad_begin(ctx);
        ad->mode->out_sq += kg_item(kg_sum_all(kg_mul(y, y)));
        kg_no_grad_end(ctx);
        ad->mode->out_n += kg_tensor_numel(y);
    }
    return y;
}

kg_tensor *kg_adapter_delta(const kg_linear *l)
{
    if (!l || !l->weight || !check_adapter(l, "kg_adapter_delta"))
        return NULL;
    const kg_adapter *ad = &l->ad;
    kg_tensor *d = l->kind == KG_LINEAR_LORA
                       ? kg_matmul(ad->lora_b, ad->lora_a)
                       : kg_kron(outer_factor(ad), ad->w2 ? ad->w2 : kg_matmul(ad->w2_a, ad->w2_b));
    return kg_scale(d, ad->scale);
}

static bool merge(kg_linear *l, bool in)
{
    const char *fn = in ? "kg_linear_merge" : "kg_linear_unmerge";
    if (!l || !l->weight || !check_adapter(l, fn))
        return false;
    kg_ctx *ctx = kg_tensor_ctx(l->weight);
    if (l->ad.merged == in)
        return kg_set_error(ctx, KG_ERR_STATE, "%s: the adapter is %s merged", fn,
                            in ? "already" : "not");
    kg_scope scope = kg_scope_begin(ctx);
    kg_no_grad_begin(ctx);
    kg_tensor *d = kg_adapter_delta(l);
    bool ok = kg_tensor_assign(l->weight, in ? kg_add(l->weight, d) : kg_sub(l->weight, d));
    kg_no_grad_end(ctx);
    kg_scope_end(ctx, scope);
    if (ok)
        l->ad.merged = in;
    return ok;
}

bool kg_linear_merge(kg_linear *l)
{
    return merge(l, true);
}

bool kg_linear_unmerge(kg_linear *l)
{
    return merge(l, false);
}
