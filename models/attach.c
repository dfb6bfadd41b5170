/* attach.c — adapters on a model: the model's linear layers under their HF module paths (from
 * the config alone, or with the model's kg_linear behind each), the choice of targets by name or
 * all-linear, the checks a configuration must pass before any weight is loaded, exact parameter
 * counts, attaching with the trainable list under PEFT's names, merging, a fresh head for a base
 * checkpoint, and the training mode.
 */
#include "models/adapters.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The model's linear layers ------------------------------------------------------------ */

/* The base model's path inside the HF class PEFT wraps: "distilbert." in
 * DistilBertForMultipleChoice, "" in DistilBertModel. A model loaded from a head-less
 * checkpoint keeps the prefix its names carry (DistilBertForMaskedLM has one). */
static const char *base_prefix(const kg_model_config *c, const kg_model *m)
{
    const char *p = c->arch == KG_ARCH_DISTILBERT ? "distilbert."
                    : c->arch == KG_ARCH_BERT     ? "bert."
                                                  : "model.";
    if (c->head != KG_HEAD_NONE)
        return p;
    const char *tokens = m && m->n_params ? m->params[0].name : p;
    return strncmp(tokens, p, strlen(p)) == 0 ? p : "";
}

static void add(kg_module_list *L, kg_linear *lin, int64_t out, int64_t in, bool bias,
                const char *save_as, const char *fmt, const char *prefix, int layer)
{
    kg_module *d = &L->mods[L->n++];
    *d = (kg_module){.out = out, .in = in, .bias = bias, .save_as = save_as, .lin = lin,
                     .head = save_as != NULL || layer < 0};
    int k = snprintf(d->name, sizeof d->name, "%s", prefix);
    snprintf(d->name + k, sizeof d->name - (size_t)k, fmt, layer);
}

bool kg__modules(kg_ctx *ctx, const kg_model_config *c, kg_model *m, kg_module_list *L)
{
    *L = (kg_module_list){0};
    if (c->n_layers < 1 || c->n_layers > 100000)
        return kg_set_error(ctx, KG_ERR_RANGE, "adapters: the model has %lld layers; expected 1 "
                            "to 100000", (long long)c->n_layers);
    L->mods = calloc((size_t)c->n_layers * 7 + 3, sizeof *L->mods);
    if (!L->mods)
        return kg_set_error(ctx, KG_ERR_NOMEM, "adapters: out of host memory");
    const char *P = base_prefix(c, m);
    int64_t C = c->hidden_size, F = c->intermediate_size;
    for (int i = 0; i < (int)c->n_layers; i++) {
        kg_layer *ly = m ? &m->layers[i] : NULL;
#define LIN(field) (ly ? &ly->field : NULL)
        switch (c->arch) {
        case KG_ARCH_DISTILBERT:
            add(L, LIN(attn.q), C, C, true, NULL, "transformer.layer.%d.attention.q_lin", P, i);
            add(L, LIN(attn.k), C, C, true, NULL, "transformer.layer.%d.attention.k_lin", P, i);
            add(L, LIN(attn.v), C, C, true, NULL, "transformer.layer.%d.attention.v_lin", P, i);
            add(L, LIN(attn.o), C, C, true, NULL, "transformer.layer.%d.attention.out_lin", P, i);
            add(L, LIN(mlp.up), F, C, true, NULL, "transformer.layer.%d.ffn.lin1", P, i);
            add(L, LIN(mlp.down), C, F, true, NULL, "transformer.layer.%d.ffn.lin2", P, i);
            break;
        case KG_ARCH_BERT:
            add(L, LIN(attn.q), C, C, true, NULL, "encoder.layer.%d.attention.self.query", P, i);
            add(L, LIN(attn.k), C, C, true, NULL, "encoder.layer.%d.attention.self.key", P, i);
            add(L, LIN(attn.v), C, C, true, NULL, "encoder.layer.%d.attention.self.value", P, i);
            add(L, LIN(attn.o), C, C, true, NULL, "encoder.layer.%d.attention.output.dense", P,
                i);
            add(L, LIN(mlp.up), F, C, true, NULL, "encoder.layer.%d.intermediate.dense", P, i);
            add(L, LIN(mlp.down), C, F, true, NULL, "encoder.layer.%d.output.dense", P, i);
            break;
        case KG_ARCH_MISTRAL:
        case KG_ARCH_LLAMA: {
            int64_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
            bool ab = c->attention_bias, mb = c->mlp_bias;
            add(L, LIN(attn.q), q, C, ab, NULL, "layers.%d.self_attn.q_proj", P, i);
            add(L, LIN(attn.k), kv, C, ab, NULL, "layers.%d.self_attn.k_proj", P, i);
            add(L, LIN(attn.v), kv, C, ab, NULL, "layers.%d.self_attn.v_proj", P, i);
            add(L, LIN(attn.o), C, q, ab, NULL, "layers.%d.self_attn.o_proj", P, i);
            add(L, LIN(mlp.gate), F, C, mb, NULL, "layers.%d.mlp.gate_proj", P, i);
            add(L, LIN(mlp.up), F, C, mb, NULL, "layers.%d.mlp.up_proj", P, i);
            add(L, LIN(mlp.down), C, F, mb, NULL, "layers.%d.mlp.down_proj", P, i);
            break;
        }
        }
#undef LIN
    }
    L->n_block = L->n;
    bool encoder_head = c->head == KG_HEAD_MULTIPLE_CHOICE ||
                        c->head == KG_HEAD_SEQ_CLASSIFICATION;
    int64_t labels = c->head == KG_HEAD_MULTIPLE_CHOICE ? 1 : c->num_labels;
    if (encoder_head && c->arch == KG_ARCH_DISTILBERT)
        add(L, m ? &m->pre_classifier : NULL, C, C, true, "pre_classifier", "pre_classifier",
            "", -1);
    if (encoder_head && c->arch == KG_ARCH_BERT)
        add(L, m ? &m->pooler : NULL, C, C, true, "pooler", "pooler.dense", P, -1);
    if (encoder_head)
        add(L, m ? &m->classifier : NULL, labels, C, true, "classifier", "classifier", "", -1);
    if (c->head == KG_HEAD_CAUSAL_LM) { /* a target only when named (all-linear skips it) */
        add(L, m ? &m->lm_head : NULL, c->vocab_size, C, false, NULL, "lm_head", "", -1);
        L->mods[L->n - 1].tied = c->tie_word_embeddings;
    }
    return true;
}

/* ---- Choosing layers ---------------------------------------------------------------------- */

/* PEFT's rule: the path equals the name or ends with "." + name. */
static bool matches(const char *path, const char *name, size_t len)
{
    size_t n = strlen(path);
    return (n == len && strncmp(path, name, len) == 0) ||
           (n > len && path[n - len - 1] == '.' && strncmp(path + n - len, name, len) == 0);
}

/* Call fn on each item of a comma-separated list (spaces around items ignored); stops at the
 * first false. Empty items are an error naming field. */
static bool each_name(kg_ctx *ctx, const char *field, const char *list,
                      bool (*fn)(void *, const char *, size_t), void *arg)
{
    const char *s = list;
    for (;;) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - s);
        while (n && s[n - 1] == ' ')
            n--;
        if (!n)
            return kg_set_error(ctx, KG_ERR_ARG, "adapter config: %s \"%s\" has an empty name; "
                                "expected comma-separated module names", field, list);
        if (!fn(arg, s, n))
            return false;
        if (!*e)
            return true;
        s = e + 1;
    }
}

typedef struct chooser {
    kg_ctx *ctx;
    kg_module_list *L;
    const char *field;
    bool saves; /* choosing modules_to_save (by their save_as name) rather than targets */
} chooser;

static bool choose(void *arg, const char *name, size_t n)
{
    chooser *ch = arg;
    kg_module_list *L = ch->L;
    int hits = 0;
    for (int i = 0; i < L->n; i++) {
        kg_module *d = &L->mods[i];
        bool hit = ch->saves ? d->save_as && strlen(d->save_as) == n &&
                                   strncmp(d->save_as, name, n) == 0
                             : matches(d->name, name, n);
        if (hit) {
            if (ch->saves)
                d->saved = true;
            else
                d->target = true;
            hits++;
        }
    }
    if (hits)
        return true;
    char have[256] = "";
    for (int i = 0, k = 0; i < L->n && k < (int)sizeof have - 40; i++)
        if (ch->saves ? L->mods[i].save_as != NULL : i < 7)
            k += snprintf(have + k, sizeof have - (size_t)k, "%s%s", k ? ", " : "",
                          ch->saves ? L->mods[i].save_as : L->mods[i].name);
    return kg_set_error(ch->ctx, KG_ERR_ARG, "adapter config: %s names '%.*s', which matches no "
                        "%s of the model; it has %s%s", ch->field, (int)n, name,
                        ch->saves ? "head" : "linear layer", *have ? have : "none",
                        ch->saves ? "" : ", ...");
}

/* PEFT's LoKr factorization(dimension, factor) (peft/tuners/lokr/layer.py), step for step: a
 * divisor pair (m, n), m·n = dimension, m <= n, closest to √dimension with m <= factor. */
static void factorization(int64_t dim, int64_t factor, int64_t *m_out, int64_t *n_out)
{
    if (factor > 0 && dim % factor == 0) {
        *m_out = factor;
        *n_out = dim / factor;
        return;
    }
    if (factor == -1)
        factor = dim;
    int64_t m = 1, n = dim, length = m + n;
    while (m < n) {
        int64_t new_m = m + 1;
        while (dim % new_m != 0)
            new_m++;
        int64_t new_n = dim / new_m;
        if (new_m + new_n > length || new_m > factor)
            break;
        m = new_m;
        n = new_n;
    }
    *m_out = m < n ? m : n;
    *n_out = m < n ? n : m;
}

void kg__layer_shape(const kg_adapter_config *cfg, int64_t out, int64_t in, kg_adapter_shape *s)
{
    *s = (kg_adapter_shape){.rank = cfg->rank, .a2 = 1, .a1 = 1};
    if (cfg->kind == KG_ADAPTER_KRONLORA) {
        s->a2 = cfg->kron_a2;
        s->a1 = cfg->kron_a1;
        s->w2_lowrank = true;
        s->kron_init = cfg->kron_init;
        s->a_gain = cfg->kron_a_gain;
    } else if (cfg->kind == KG_ADAPTER_LOKR) {
        int64_t in_n, out_k; /* shape = ((out_l, out_k), (in_m, in_n)); w1 (out_l, in_m) */
        factorization(in, cfg->lokr_factor, &s->a1, &in_n);
        factorization(out, cfg->lokr_factor, &s->a2, &out_k);
        double r = (double)cfg->rank;
        s->w1_lowrank = cfg->lokr_decompose_both && r < (double)(s->a2 > s->a1 ? s->a2 : s->a1) / 2;
        s->w2_lowrank = r < (double)(out_k > in_n ? out_k : in_n) / 2;
    }
}

/* Elements of one layer's adapter. */
static int64_t layer_count(const kg_adapter_config *cfg, const kg_module *d)
{
    kg_adapter_shape s;
    kg__layer_shape(cfg, d->out, d->in, &s);
    int64_t R = s.rank, b2 = d->out / s.a2, b1 = d->in / s.a1;
    switch (cfg->kind) {
    case KG_ADAPTER_LORA:
        return R * (d->in + d->out);
    case KG_ADAPTER_KRONLORA:
    case KG_ADAPTER_LOKR:
        return (s.w1_lowrank ? R * (s.a2 + s.a1) : s.a2 * s.a1) +
               (s.w2_lowrank ? R * (b2 + b1) : b2 * b1);
    default:
        return 0;
    }
}

#define bad(ctx, field, expected, value)                                                         \
    kg_set_error(ctx, KG_ERR_ARG, "%s: %s is %g; expected %s", where, field, (double)(value),    \
                 expected)

bool kg__check_fields(kg_ctx *ctx, const char *where, const kg_adapter_config *cfg)
{
    kg_adapter_kind k = cfg->kind;
    if ((unsigned)k >= KG_ADAPTER_KIND_COUNT)
        return bad(ctx, "kind", "none, lora, kronlora, lokr or full", k);
    bool factored = k == KG_ADAPTER_LORA || k == KG_ADAPTER_KRONLORA || k == KG_ADAPTER_LOKR;
    if (factored && (cfg->rank < 1 || cfg->rank > (1 << 20)))
        return bad(ctx, "rank", "an integer from 1 to 2^20", (double)cfg->rank);
    if (factored && !(isfinite(cfg->alpha) && cfg->alpha > 0))
        return bad(ctx, "alpha", "a number > 0", cfg->alpha);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return bad(ctx, "dropout", "a probability, 0 <= p < 1", cfg->dropout);
    if (k == KG_ADAPTER_LOKR && cfg->dropout > 0)
        return bad(ctx, "dropout", "0 for lokr (PEFT's LoKr has no input dropout)",
                   cfg->dropout);
    if (k == KG_ADAPTER_KRONLORA && (cfg->kron_a1 < 1 || cfg->kron_a2 < 1))
        return kg_set_error(ctx, KG_ERR_ARG, "%s: kron_a is %lldx%lld; expected dA2xdA1 with "
                            "both >= 1", where, (long long)cfg->kron_a2,
                            (long long)cfg->kron_a1);
    if (k == KG_ADAPTER_LOKR && cfg->lokr_factor != -1 && cfg->lokr_factor < 1)
        return bad(ctx, "lokr_factor", "-1 (PEFT's default) or a factor >= 1",
                   (double)cfg->lokr_factor);
    return true;
}
#undef bad

/* Check cfg's fields and mark L's targets and saved heads. */
static bool choose_all(kg_ctx *ctx, const kg_adapter_config *cfg, kg_module_list *L)
{
    kg_adapter_kind k = cfg->kind;
    if (!kg__check_fields(ctx, "adapter config", cfg))
        return false;
    if (k == KG_ADAPTER_NONE)
        return true;
    if (k == KG_ADAPTER_FULL) {
        if (cfg->targets && strcmp(cfg->targets, "all-linear") != 0)
            return kg_set_error(ctx, KG_ERR_ARG, "adapter config: targets \"%s\" with kind full; "
                                "a full fine-tune trains every parameter (leave targets unset)",
                                cfg->targets);
        return true;
    }
    if (!cfg->targets || strcmp(cfg->targets, "all-linear") == 0) {
        for (int i = 0; i < L->n_block; i++)
            L->mods[i].target = true;
    } else {
        chooser ch = {ctx, L, "targets", false};
        if (!each_name(ctx, "targets", cfg->targets, choose, &ch))
            return false;
    }
    if (cfg->modules_to_save) {
        chooser ch = {ctx, L, "modules_to_save", true};
        if (*cfg->modules_to_save && !each_name(ctx, "modules_to_save", cfg->modules_to_save,
                                                choose, &ch))
            return false;
    } else {
        for (int i = 0; i < L->n; i++)
            L->mods[i].saved = L->mods[i].save_as != NULL;
    }
    for (int i = 0; i < L->n; i++) {
        const kg_module *d = &L->mods[i];
        if (d->target && d->saved)
            return kg_set_error(ctx, KG_ERR_ARG, "adapter config: layer %s is both a target and "
                                "in modules_to_save; expected one or the other", d->name);
        if (d->target && d->tied) /* merging would change the embedding too */
            return kg_set_error(ctx, KG_ERR_ARG, "adapter config: targets name layer %s, whose "
                                "weight is the token embedding (tie_word_embeddings); expected "
                                "an untied layer", d->name);
        if (d->target && k == KG_ADAPTER_KRONLORA && (d->out % cfg->kron_a2 || d->in %
                                                      cfg->kron_a1))
            return kg_set_error(ctx, KG_ERR_SHAPE, "adapter config: layer %s is %lld × %lld "
                                "(d_out × d_in); kron_a %lldx%lld does not divide it (expected "
                                "d_out a multiple of dA2 = %lld and d_in of dA1 = %lld)",
                                d->name, (long long)d->out, (long long)d->in,
                                (long long)cfg->kron_a2, (long long)cfg->kron_a1,
                                (long long)cfg->kron_a2, (long long)cfg->kron_a1);
    }
    return true;
}

bool kg_adapter_validate(kg_ctx *ctx, const kg_model_config *mc, const kg_adapter_config *cfg)
{
    if (!ctx || kg_ctx_status(ctx))
        return false;
    if (!mc || !cfg)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_adapter_validate: mc or cfg is NULL");
    kg_module_list L;
    bool ok = kg__modules(ctx, mc, NULL, &L) && choose_all(ctx, cfg, &L);
    free(L.mods);
    return ok;
}

/* Every parameter a model of config c holds (a BERT pooler only with a head). */
static int64_t all_params(const kg_model_config *c, const kg_module_list *L)
{
    int64_t C = c->hidden_size, n = c->vocab_size * C; /* token embedding */
    for (int i = 0; i < L->n; i++) {
        const kg_module *d = &L->mods[i];
        if (strcmp(d->name, "lm_head") != 0 || !c->tie_word_embeddings)
            n += d->out * d->in + (d->bias ? d->out : 0);
    }
    if (c->arch == KG_ARCH_DISTILBERT || c->arch == KG_ARCH_BERT)
        n += (c->max_positions + c->type_vocab_size) * C + 2 * C /* embedding LayerNorm */ +
             c->n_layers * 4 * C;                                 /* two LayerNorms a block */
    else
        n += c->n_layers * 2 * C + C; /* two RMSNorms a block, the final one */
    return n;
}

int64_t kg_adapter_count(kg_ctx *ctx, const kg_model_config *mc, const kg_adapter_config *cfg)
{
    if (!ctx || kg_ctx_status(ctx))
        return -1;
    if (!mc || !cfg) {
        kg_set_error(ctx, KG_ERR_ARG, "kg_adapter_count: mc or cfg is NULL");
        return -1;
    }
    kg_module_list L;
    int64_t n = -1;
    if (kg__modules(ctx, mc, NULL, &L) && choose_all(ctx, cfg, &L)) {
        n = 0;
        if (cfg->kind == KG_ADAPTER_FULL)
            n = all_params(mc, &L);
        for (int i = 0; cfg->kind != KG_ADAPTER_FULL && i < L.n; i++) {
            const kg_module *d = &L.mods[i];
            n += d->target ? layer_count(cfg, d) : 0;
            n += d->saved ? d->out * d->in + (d->bias ? d->out : 0) : 0;
        }
    }
    free(L.mods);
    return n;
}

/* ---- Attaching ------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool push(kg_model *m, int *cap, kg_tensor *t, const char *fmt, const char *path,
                 const char *leaf)
{
    if (!t)
        return true;
    if (m->n_trainable == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        kg_param *p = realloc(m->trainable, sizeof *p * (size_t)nc);
        if (!p)
            return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_attach: out of host memory");
        m->trainable = p;
        *cap = nc;
    }
    char name[320];
    snprintf(name, sizeof name, fmt, path, leaf);
    char *copy = strdup(name);
    if (!copy)
        return kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_attach: out of host memory");
    kg_set_requires_grad(t, true);
    m->trainable[m->n_trainable++] = (kg_param){.name = copy, .tensor = t};
    return true;
}

static kg_linear_kind linear_kind(kg_adapter_kind k)
{
    return k == KG_ADAPTER_LORA       ? KG_LINEAR_LORA
           : k == KG_ADAPTER_KRONLORA ? KG_LINEAR_KRONLORA
                                      : KG_LINEAR_LOKR;
}

/* The trainable names of one layer's adapter, PEFT's (docs/adapter-format.md). */
static bool push_adapter(kg_model *m, int *cap, const kg_module *d)
{
    const kg_adapter *a = &d->lin->ad;
    const char *f = "base_model.model.%s.%s";
    return push(m, cap, a->lora_a, f, d->name, "lora_A.weight") &&
           push(m, cap, a->lora_b, f, d->name, "lora_B.weight") &&
           push(m, cap, a->w1, f, d->name, "lokr_w1") &&
           push(m, cap, a->w1_a, f, d->name, "lokr_w1_a") &&
           push(m, cap, a->w1_b, f, d->name, "lokr_w1_b") &&
           push(m, cap, a->w2, f, d->name, "lokr_w2") &&
           push(m, cap, a->w2_a, f, d->name, "lokr_w2_a") &&
           push(m, cap, a->w2_b, f, d->name, "lokr_w2_b");
}

static bool push_saved(kg_model *m, int *cap, const kg_module *d)
{
    const char *f = "base_model.model.%s.%s";
    return push(m, cap, d->lin->weight, f, d->name, "weight") &&
           push(m, cap, d->lin->bias, f, d->name, "bias");
}

/* --frozen bf16 stores the frozen GEMMs' weights in bf16, and a causal LM's head is one of them
 * once an adapter is attached (PEFT's all-linear leaves it out) unless it is trained
 * (modules_to_save) or adapted: its products, a fifth of a SmolLM2 step, then run on vdpbf16ps
 * as PyTorch's bf16 autocast runs them. The f32 weight stays where it was: the tied embedding
 * still looks rows up in it, and checkpoints and exports read it. */
static bool bf16_head(kg_model *m)
{
    kg_linear *h = &m->lm_head;
    if (m->cfg.frozen != KG_DTYPE_BF16 || !h->weight || h->kind != KG_LINEAR_DENSE || h->bias ||
        kg_tensor_dtype(h->weight) != KG_DTYPE_F32 || kg_requires_grad(h->weight))
        return true;
    kg_ctx *ctx = m->ctx;
    kg_no_grad_begin(ctx);
    kg_tensor *q = kg_tensor_keep(kg_quantize(h->weight, KG_DTYPE_BF16));
    kg_no_grad_end(ctx);
    if (!q)
        return false;
    m->head_f32 = h->weight;
    m->head_bf16 = h->weight = q;
    return true;
}

bool kg__attach_chosen(kg_model *m, const kg_adapter_config *cfg, kg_module_list *L)
{
    /* A weight stored as bf16, f16 or blocks (--frozen) multiplies through matmul_q, whose
     * backward gives the weight no gradient: trained in full, it would never move. */
    for (int i = 0; cfg->kind == KG_ADAPTER_FULL && i < m->n_params; i++) {
        kg_dtype dt = kg_tensor_dtype(m->params[i].tensor);
        if (dt != KG_DTYPE_F32)
            return kg_set_error(m->ctx, KG_ERR_ARG, "adapter config: kind full with %s is "
                                "stored as %s (frozen %s); a full fine-tune trains f32 "
                                "weights only (load with frozen f32, or choose an adapter)",
                                m->params[i].name, kg_dtype_name(dt),
                                kg_dtype_name(m->cfg.frozen));
    }
    for (int i = 0; i < m->n_params; i++)
        kg_set_requires_grad(m->params[i].tensor, false);
    m->adapter = *cfg;
    m->adapter.targets = m->adapter.modules_to_save = NULL;
    int cap = 0;
    if (cfg->kind == KG_ADAPTER_FULL) {
        for (int i = 0; i < m->n_params; i++)
            if (!push(m, &cap, m->params[i].tensor, "%s%s", m->params[i].name, ""))
                return false;
        return true;
    }
    float scale = (float)(cfg->alpha / (double)cfg->rank);
    for (int i = 0; i < L->n; i++) {
        kg_module *d = &L->mods[i];
        if (d->target) {
            kg_adapter_shape s;
            kg__layer_shape(cfg, d->out, d->in, &s);
            if (!kg_linear_attach(d->lin, linear_kind(cfg->kind), &s, scale, cfg->dropout,
                                  &m->mode, mix64(cfg->seed ^ mix64((uint64_t)i))) ||
                !push_adapter(m, &cap, d))
                return false;
        }
    }
    for (int i = 0; i < L->n; i++)
        if (L->mods[i].saved && !push_saved(m, &cap, &L->mods[i]))
            return false;
    return bf16_head(m);
}

bool kg_model_attach(kg_model *m, const kg_adapter_config *cfg)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    if (!cfg)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_attach: cfg is NULL");
    if (m->adapter.kind != KG_ADAPTER_NONE)
        return kg_set_error(m->ctx, KG_ERR_STATE, "kg_model_attach: the model already has a %s "
                            "adapter; expected one per model",
                            kg_adapter_kind_name(m->adapter.kind));
    kg_module_list L;
    bool ok = kg__modules(m->ctx, &m->cfg, m, &L) && choose_all(m->ctx, cfg, &L) &&
              kg__attach_chosen(m, cfg, &L);
    free(L.mods);
    if (!ok)
        kg__adapters_free(m);
    return ok;
}

int64_t kg_model_trainable_count(const kg_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < m->n_trainable; i++)
        n += kg_tensor_numel(m->trainable[i].tensor);
    return n;
}

void kg__adapters_free(kg_model *m)
{
    if (m->head_bf16) { /* the head back to its f32 weight (bf16_head) */
        m->lm_head.weight = m->head_f32;
        kg_tensor_free(m->head_bf16);
        m->head_bf16 = m->head_f32 = NULL;
    }
    kg_module_list L;
    if (m->layers && kg__modules(m->ctx, &m->cfg, m, &L)) {
        for (int i = 0; i < L.n; i++)
            if (L.mods[i].lin) {
                L.mods[i].lin->ad.merged = false; /* freed, not restored: no unmerge */
                kg_linear_detach(L.mods[i].lin);
            }
        free(L.mods);
    }
    for (int i = 0; i < m->n_trainable; i++)
        free(m->trainable[i].name);
    free(m->trainable);
    m->trainable = NULL;
    m->n_trainable = 0;
    m->adapter = (kg_adapter_config){0};
}

static bool merge_all(kg_model *m, bool in)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_module_list L;
    if (!kg__modules(m->ctx, &m->cfg, m, &L))
        return false;
    bool ok = true;
    for (int i = 0; ok && i < L.n; i++)
        if (L.mods[i].lin && L.mods[i].lin->kind != KG_LINEAR_DENSE &&
            L.mods[i].lin->ad.merged != in)
            ok = in ? kg_linear_merge(L.mods[i].lin) : kg_linear_unmerge(L.mods[i].lin);
    free(L.mods);
    return ok;
}

bool kg_model_merge(kg_model *m)
{
    return merge_all(m, true);
}

bool kg_model_unmerge(kg_model *m)
{
    return merge_all(m, false);
}

/* ---- A fresh head ----------------------------------------------------------------------- */

static kg_tensor *new_param(kg_model *m, int64_t d0, int64_t d1, uint64_t seed, const char *name)
{
    kg_tensor *t = d1 ? kg_normal(m->ctx, 2, (int64_t[]){d0, d1}, 0.0f, 0.02f, seed)
                      : kg_zeros(m->ctx, KG_DTYPE_F32, 1, (int64_t[]){d0});
    char *copy = strdup(name);
    kg_param *p = realloc(m->params, sizeof *p * (size_t)(m->n_params + 1));
    if (p)
        m->params = p;
    if (!t || !copy || !p) {
        kg_tensor_free(t);
        free(copy);
        kg_set_error(m->ctx, KG_ERR_NOMEM, "kg_model_add_head: out of memory");
        return NULL;
    }
    kg_tensor_keep(t);
    m->params[m->n_params++] = (kg_param){.name = copy, .tensor = t};
    return t;
}

static kg_linear new_linear(kg_model *m, int64_t out, int64_t in, uint64_t seed,
                            const char *name)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight", name);
    kg_tensor *w = new_param(m, out, in, seed, n);
    snprintf(n, sizeof n, "%s.bias", name);
    return (kg_linear){.kind = KG_LINEAR_DENSE, .weight = w, .bias = w ? new_param(m, out, 0, 0, n)
                                                                       : NULL};
}

bool kg_model_add_head(kg_model *m, kg_model_head head, int64_t num_labels, uint64_t seed)
{
    if (!m || kg_ctx_status(m->ctx))
        return false;
    kg_model_config *c = &m->cfg;
    if (c->arch != KG_ARCH_DISTILBERT && c->arch != KG_ARCH_BERT)
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_add_head: a decoder; only encoders "
                            "(DistilBERT, BERT) take a multiple-choice or classification head");
    if (c->head != KG_HEAD_NONE || m->adapter.kind != KG_ADAPTER_NONE)
        return kg_set_error(m->ctx, KG_ERR_STATE, "kg_model_add_head: the model already has %s; "
                            "expected a base model without an adapter", c->head != KG_HEAD_NONE
                                ? "a head" : "an adapter");
    if (head != KG_HEAD_MULTIPLE_CHOICE &&
        (head != KG_HEAD_SEQ_CLASSIFICATION || num_labels < 1 || num_labels > (1 << 20)))
        return kg_set_error(m->ctx, KG_ERR_ARG, "kg_model_add_head: head %d with %lld labels; "
                            "expected multiple choice, or sequence classification with 1 to "
                            "2^20 labels", (int)head, (long long)num_labels);
    int64_t C = c->hidden_size, labels = head == KG_HEAD_MULTIPLE_CHOICE ? 1 : num_labels;
    uint64_t k = mix64(seed);
    if (c->arch == KG_ARCH_DISTILBERT) {
        m->pre_classifier = new_linear(m, C, C, k = mix64(k), "pre_classifier");
    } else if (!m->pooler.weight) {
        char n[64];
        snprintf(n, sizeof n, "%spooler.dense", base_prefix(c, m));
        m->pooler = new_linear(m, C, C, k = mix64(k), n);
    }
    m->classifier = new_linear(m, labels, C, mix64(k), "classifier");
    if (kg_ctx_status(m->ctx))
        return false;
    c->head = head;
    c->num_labels = num_labels;
    return true;
}

/* ---- Training mode -------------------------------------------------------------------------- */

void kg_model_train(kg_model *m, bool training, uint64_t seed)
{
    if (m)
        m->mode = (kg_mode){.training = training, .seed = seed};
}
