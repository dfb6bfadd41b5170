/* test_adapters.c — adapters on linear layers and on models: LoRA, Kron-LoRA and LoKr forward
 * against the materialized W + s·ΔW (computed on the host), their gradients against the
 * materialized form and finite differences, init (ΔW = 0), merge / unmerge, dropout and the
 * model's training mode, exact parameter counts from a config, configurations rejected before
 * loading (naming layer and field), attaching to the tiny fixture models, fresh heads.
 *
 * Run with no argument on the CPU backend, with "vulkan" on Vulkan (skipped, 77, without one).
 */
#include "kg_test.h"

#include <unistd.h>

static kg_backend_kind backend = KG_BACKEND_CPU;
static kg_ctx *ctx;

static float *host(const kg_tensor *t)
{
    float *v = kg_tensor_to_f32(t);
    assert_non_null(v);
    return v;
}

/* c (n, m) = a (n, k) · b (k, m) on the host. */
static void host_matmul(const float *a, const float *b, float *c, int64_t n, int64_t k,
                        int64_t m)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)a[i * k + p] * b[p * m + j];
            c[i * m + j] = (float)s;
        }
}

/* A factor's values on the host: t itself, or the product of a low-rank pair. */
static float *factor_of(kg_tensor *whole, kg_tensor *a, kg_tensor *b, int64_t *rows,
                        int64_t *cols)
{
    if (whole) {
        *rows = kg_tensor_dim(whole, 0);
        *cols = kg_tensor_dim(whole, 1);
        return host(whole);
    }
    *rows = kg_tensor_dim(a, 0);
    *cols = kg_tensor_dim(b, 1);
    float *va = host(a), *vb = host(b), *c = malloc(sizeof *c * (size_t)(*rows * *cols));
    host_matmul(va, vb, c, *rows, kg_tensor_dim(a, 1), *cols);
    free(va);
    free(vb);
    return c;
}

/* s·ΔW (out, in) on the host, from the layer's factors (torch.kron's element order). */
static float *host_delta(const kg_linear *l)
{
    const kg_adapter *ad = &l->ad;
    int64_t out = kg_tensor_dim(l->weight, 0), in = kg_tensor_dim(l->weight, 1);
    float *d = malloc(sizeof *d * (size_t)(out * in));
    if (l->kind == KG_LINEAR_LORA) {
        int64_t r, c;
        float *ba = factor_of(NULL, ad->lora_b, ad->lora_a, &r, &c);
        memcpy(d, ba, sizeof *d * (size_t)(out * in));
        free(ba);
    } else {
        int64_t a2, a1, b2, b1;
        float *w1 = factor_of(ad->w1, ad->w1_a, ad->w1_b, &a2, &a1);
        float *w2 = factor_of(ad->w2, ad->w2_a, ad->w2_b, &b2, &b1);
        for (int64_t i = 0; i < a2; i++)
            for (int64_t j = 0; j < a1; j++)
                for (int64_t k = 0; k < b2; k++)
                    for (int64_t q = 0; q < b1; q++)
                        d[(i * b2 + k) * in + j * b1 + q] = w1[i * a1 + j] * w2[k * b1 + q];
        free(w1);
        free(w2);
    }
    for (int64_t i = 0; i < out * in; i++)
        d[i] *= ad->scale;
    return d;
}

static kg_tensor *param(int ndim, const int64_t *shape, uint64_t seed)
{
    return kg_tensor_keep(kg_uniform(ctx, ndim, shape, -1.0f, 1.0f, seed));
}

static kg_tensor *const *factors(const kg_linear *l, int *n)
{
    static kg_tensor *f[8];
    const kg_adapter *a = &l->ad;
    kg_tensor *all[] = {a->lora_a, a->lora_b, a->w1, a->w1_a, a->w1_b, a->w2, a->w2_a, a->w2_b};
    *n = 0;
    for (int i = 0; i < 8; i++)
        if (all[i])
            f[(*n)++] = all[i];
    return f;
}

/* ---- One layer ------------------------------------------------------------------------------ */

typedef struct layer_case {
    const char *name;
    kg_linear_kind kind;
    int64_t out, in;
    kg_adapter_shape s;
} layer_case;

static const layer_case cases[] = {
    {"lora", KG_LINEAR_LORA, 12, 8, {.rank = 3}},
    {"kronlora A 3x2", KG_LINEAR_KRONLORA, 12, 8, {.rank = 2, .a2 = 3, .a1 = 2}},
    {"kronlora A 3x2, A = 0", KG_LINEAR_KRONLORA, 12, 8,
     {.rank = 2, .a2 = 3, .a1 = 2, .kron_init = KG_KRON_INIT_A_ZERO}},
    {"kronlora A 3x2, kaiming A", KG_LINEAR_KRONLORA, 12, 8,
     {.rank = 2, .a2 = 3, .a1 = 2, .a_gain = 0.57735026918962576}},
    {"lokr w1, w2_a·w2_b", KG_LINEAR_LOKR, 12, 8, {.rank = 2, .a2 = 2, .a1 = 4,
                                                   .w2_lowrank = true}},
    {"lokr w1_a·w1_b, w2", KG_LINEAR_LOKR, 12, 8, {.rank = 1, .a2 = 4, .a1 = 2,
                                                   .w1_lowrank = true}},
};

static kg_linear make_layer(const layer_case *c, float scale, float dropout, kg_mode *mode)
{
    kg_linear l = {.kind = KG_LINEAR_DENSE, .weight = param(2, SHAPE(c->out, c->in), 1),
                   .bias = param(1, SHAPE(c->out), 2)};
    assert_true(kg_linear_attach(&l, c->kind, &c->s, scale, dropout, mode, 3));
    assert_ok(ctx);
    return l;
}

static void free_layer(kg_linear *l)
{
    kg_linear_detach(l);
    kg_tensor_free(l->weight);
    kg_tensor_free(l->bias);
}

static void randomize_factors(const kg_linear *l, uint64_t seed)
{
    int n;
    kg_tensor *const *f = factors(l, &n);
    for (int i = 0; i < n; i++) {
        kg_scope s = kg_scope_begin(ctx);
        kg_tensor_assign(f[i], kg_uniform(ctx, 2, SHAPE(kg_tensor_dim(f[i], 0),
                                                        kg_tensor_dim(f[i], 1)),
                                          -0.8f, 0.8f, seed + (uint64_t)i));
        kg_scope_end(ctx, s);
    }
    assert_ok(ctx);
}

/* The factor a fresh adapter of case c holds at zero. */
static kg_tensor *zero_factor(const kg_linear *l, const layer_case *c)
{
    const kg_adapter *a = &l->ad;
    if (c->kind == KG_LINEAR_LORA)
        return a->lora_b;
    if (c->kind == KG_LINEAR_KRONLORA)
        return c->s.kron_init == KG_KRON_INIT_A_ZERO ? a->w1 : a->w2_a /* B1 */;
    return a->w1 ? a->w1 : a->w1_a;
}

/* Fresh factors: ΔW = 0, the zero factor of each kind, the others within their bound: kaiming's
 * U(±1/√fan_in), Kron-LoRA's A U(±g·√(3/dA1)) of gain g. */
static void check_init(const kg_linear *l, const layer_case *c)
{
    kg_scope s = kg_scope_begin(ctx);
    float *d = host(kg_adapter_delta(l));
    for (int64_t i = 0; i < c->out * c->in; i++)
        assert_true(d[i] == 0.0f);
    free(d);
    kg_scope_end(ctx, s);
    kg_tensor *zero = zero_factor(l, c);
    int n;
    kg_tensor *const *f = factors(l, &n);
    for (int i = 0; i < n; i++) {
        float cols = (float)kg_tensor_dim(f[i], 1), bound = 1.0f / sqrtf(cols), top = 0;
        if (c->kind == KG_LINEAR_KRONLORA && f[i] == l->ad.w1)
            bound = (float)(c->s.a_gain > 0 ? c->s.a_gain : KG_KRON_A_GAIN_DEFAULT) *
                    sqrtf(3.0f / cols) * 1.000001f;
        float *v = host(f[i]);
        for (int64_t k = 0; k < kg_tensor_numel(f[i]); k++)
            top = fmaxf(top, fabsf(v[k]));
        if (f[i] == zero)
            assert_true(top == 0.0f);
        else
            assert_true(top > 0.3f * bound && top <= bound);
        assert_true(kg_requires_grad(f[i]));
        free(v);
    }
}

/* Forward vs. x·(W + s·ΔW)ᵀ + b on the host; gradients vs. the materialized form's; merge and
 * unmerge; the base weight gets no gradient. */
static void test_layers(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const layer_case *c = &cases[ci];
        kg_linear l = make_layer(c, 1.5f, 0.0f, NULL);
        check_init(&l, c);
        randomize_factors(&l, 10);
        int64_t N = 6, out = c->out, in = c->in;
        kg_tensor *x = param(3, SHAPE(2, 3, in), 4), *g = param(3, SHAPE(2, 3, out), 5);
        kg_set_requires_grad(x, true);
        float *d = host_delta(&l), *w = host(l.weight), *b = host(l.bias), *xv = host(x);
        kg_scope s = kg_scope_begin(ctx);
        assert_tensor(kg_adapter_delta(&l), d, out * in, 1e-5f, 1e-5f, c->name);
        float *wd = malloc(sizeof *wd * (size_t)(out * in));
        float *want = malloc(sizeof *want * (size_t)(N * out));
        for (int64_t i = 0; i < out * in; i++)
            wd[i] = w[i] + d[i];
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < out; o++) {
                double acc = b[o];
                for (int64_t i = 0; i < in; i++)
                    acc += (double)xv[n * in + i] * wd[o * in + i];
                want[n * out + o] = (float)acc;
            }
        kg_tensor *y = kg_linear_forward(&l, x);
        assert_tensor(y, want, N * out, 1e-5f, 1e-5f, c->name);

        /* gradients: the adapter's ops vs. the materialized ΔW's */
        int nf;
        kg_tensor *const *f = factors(&l, &nf);
        assert_true(kg_backward(kg_sum_all(kg_mul(y, g))));
        assert_null(kg_grad(l.weight));
        float *got[9];
        for (int i = 0; i < nf; i++)
            got[i] = host(kg_grad(f[i]));
        got[nf] = host(kg_grad(x));
        for (int i = 0; i < nf; i++)
            kg_zero_grad(f[i]);
        kg_zero_grad(x);
        kg_tensor *wfull = kg_add(l.weight, kg_adapter_delta(&l));
        kg_tensor *y2 = kg_add(kg_matmul_t(x, wfull, false, true), l.bias);
        assert_true(kg_backward(kg_sum_all(kg_mul(y2, g))));
        for (int i = 0; i <= nf; i++) {
            kg_tensor *t = i < nf ? f[i] : x;
            assert_tensor(kg_grad(t), got[i], kg_tensor_numel(t), 1e-4f, 1e-4f, c->name);
            free(got[i]);
        }
        kg_scope_end(ctx, s);

        /* merge: the base weight becomes W + s·ΔW and the output stays; unmerge restores W */
        assert_true(kg_linear_merge(&l));
        assert_false(kg_linear_merge(&l));
        assert_int_equal(kg_ctx_status(ctx), KG_ERR_STATE);
        kg_clear_error(ctx);
        s = kg_scope_begin(ctx);
        assert_tensor(l.weight, wd, out * in, 1e-6f, 1e-6f, "merged weight");
        kg_no_grad_begin(ctx);
        assert_tensor(kg_linear_forward(&l, x), want, N * out, 1e-5f, 1e-5f, "merged");
        kg_no_grad_end(ctx);
        kg_scope_end(ctx, s);
        assert_true(kg_linear_unmerge(&l));
        assert_tensor(l.weight, w, out * in, 1e-6f, 0, "unmerged weight");
        free(wd);
        free(want);
        free(d);
        free(w);
        free(b);
        free(xv);
        free_layer(&l);
        assert_int_equal(l.kind, KG_LINEAR_DENSE);
        kg_tensor_free(x);
        kg_tensor_free(g);
    }
    kg_linear l = {.weight = param(2, SHAPE(12, 8), 1)}; /* 5 does not divide d_out */
    assert_false(kg_linear_attach(&l, KG_LINEAR_KRONLORA,
                                  &(kg_adapter_shape){.rank = 2, .a2 = 5, .a1 = 2}, 1, 0, NULL,
                                  0));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_clear_error(ctx);
    assert_int_equal(l.kind, KG_LINEAR_DENSE);
    kg_tensor_free(l.weight);
}

/* The adapter's forward by finite differences (every factor, every element; CPU). */
typedef struct fd_arg {
    const layer_case *c;
} fd_arg;

/* Inputs: W, the factors in kg_adapter's order (lora_a, lora_b | w1 or w1_a, w1_b; w2_a, w2_b
 * or w2), x. */
static kg_tensor *fd_forward(kg_tensor **in, void *arg)
{
    const layer_case *c = ((fd_arg *)arg)->c;
    kg_linear l = {.kind = c->kind, .weight = in[0], .ad = {.scale = 0.7f}};
    kg_adapter *a = &l.ad;
    if (c->kind == KG_LINEAR_LORA) {
        a->lora_a = in[1], a->lora_b = in[2];
        return kg_linear_forward(&l, in[3]);
    }
    if (c->s.w1_lowrank) /* w1_a, w1_b, w2 */
        a->w1_a = in[1], a->w1_b = in[2], a->w2 = in[3];
    else /* w1, w2_a, w2_b */
        a->w1 = in[1], a->w2_a = in[2], a->w2_b = in[3];
    return kg_linear_forward(&l, in[4]);
}

static void test_gradcheck(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const layer_case *c = &cases[ci];
        int64_t R = c->s.rank, a2 = c->s.a2, a1 = c->s.a1, b2 = a2 ? c->out / a2 : 0,
                b1 = a1 ? c->in / a1 : 0;
        gc_input in[5] = {{.ndim = 2, .shape = {c->out, c->in}}};
        int n = 1;
        if (c->kind == KG_LINEAR_LORA) {
            in[n++] = (gc_input){.ndim = 2, .shape = {R, c->in}, .grad = true};
            in[n++] = (gc_input){.ndim = 2, .shape = {c->out, R}, .grad = true};
        } else {
            if (c->s.w1_lowrank) {
                in[n++] = (gc_input){.ndim = 2, .shape = {a2, R}, .grad = true};
                in[n++] = (gc_input){.ndim = 2, .shape = {R, a1}, .grad = true};
            } else {
                in[n++] = (gc_input){.ndim = 2, .shape = {a2, a1}, .grad = true};
            }
            if (c->s.w2_lowrank || c->kind == KG_LINEAR_KRONLORA) {
                in[n++] = (gc_input){.ndim = 2, .shape = {b2, R}, .grad = true};
                in[n++] = (gc_input){.ndim = 2, .shape = {R, b1}, .grad = true};
            } else {
                in[n++] = (gc_input){.ndim = 2, .shape = {b2, b1}, .grad = true};
            }
        }
        in[n++] = (gc_input){.ndim = 3, .shape = {2, 2, c->in}, .grad = true};
        fd_arg arg = {c};
        gradcheck(c->name, fd_forward, &arg, n, in, 21);
    }
}

/* At the init (ΔW = 0) each factor's gradient matches finite differences (exact here: the
 * output is linear in each factor alone), and only the factors the derivation in
 * docs/kron-lora.md says move on the first step get a gradient: with B1 = 0 B1 alone, with
 * A = 0 A alone (LoRA: B alone; LoKr, w1 = 0: w1 alone). */
static void test_init_gradients(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const layer_case *c = &cases[ci];
        kg_linear l = make_layer(c, 0.7f, 0.0f, NULL);
        kg_tensor *x = param(2, SHAPE(3, c->in), 4), *g = param(2, SHAPE(3, c->out), 5);
        kg_scope s = kg_scope_begin(ctx);
        assert_true(kg_backward(kg_sum_all(kg_mul(kg_linear_forward(&l, x), g))));
        int nf;
        kg_tensor *const *f = factors(&l, &nf);
        kg_tensor *zero = zero_factor(&l, c);
        for (int i = 0; i < nf; i++) {
            kg_tensor *gr = kg_grad(f[i]);
            float *v = host(f[i]), *got = gr ? host(gr) : NULL;
            int64_t n = kg_tensor_numel(f[i]);
            double most = 0;
            for (int64_t k = 0; k < n; k++) {
                float keep = v[k];
                double loss[2];
                for (int sgn = 0; sgn < 2; sgn++) { /* central difference, step 0.5 */
                    v[k] = keep + (sgn ? -0.5f : 0.5f);
                    kg_scope s2 = kg_scope_begin(ctx);
                    kg_no_grad_begin(ctx);
                    kg_tensor_assign(f[i], kg_from_host(ctx, KG_DTYPE_F32, 2,
                                                        SHAPE(kg_tensor_dim(f[i], 0),
                                                              kg_tensor_dim(f[i], 1)), v));
                    loss[sgn] = kg_item(kg_sum_all(kg_mul(kg_linear_forward(&l, x), g)));
                    kg_no_grad_end(ctx);
                    kg_scope_end(ctx, s2);
                }
                v[k] = keep;
                double fd = loss[0] - loss[1], an = got ? got[k] : 0.0;
                if (fabs(fd - an) > 1e-4 * (1 + fabs(fd)))
                    fail_msg("%s, factor %d element %lld: gradient %.7g, finite differences "
                             "%.7g", c->name, i, (long long)k, an, fd);
                most = fmax(most, fabs(an));
            }
            kg_scope s3 = kg_scope_begin(ctx);
            kg_tensor_assign(f[i], kg_from_host(ctx, KG_DTYPE_F32, 2,
                                                SHAPE(kg_tensor_dim(f[i], 0),
                                                      kg_tensor_dim(f[i], 1)), v));
            kg_scope_end(ctx, s3);
            /* LoKr's low-rank w1 = w1_a·w1_b with w1_a = 0: w1_b's gradient passes through
             * w1_a, so it is zero too; w1_a's is not. */
            bool moves = f[i] == zero;
            if (moves != (most > 0))
                fail_msg("%s, factor %d: largest gradient %g at the init; expected %s", c->name,
                         i, most, moves ? "> 0" : "0");
            free(v);
            free(got);
        }
        kg_scope_end(ctx, s);
        assert_ok(ctx);
        free_layer(&l);
        kg_tensor_free(x);
        kg_tensor_free(g);
    }
}

/* Dropout acts on the adapter's input only, while training, with masks from the mode's seed. */
static void test_dropout(void **state)
{
    (void)state;
    kg_tensor *ones = kg_tensor_keep(kg_ones(ctx, KG_DTYPE_F32, 1, SHAPE(4000)));
    kg_mode mode = {.training = false, .seed = 5};
    assert_ptr_equal(kg_mode_dropout(&mode, ones, 0.5f), ones);
    assert_ptr_equal(kg_mode_dropout(NULL, ones, 0.5f), ones);
    mode.training = true;
    assert_ptr_equal(kg_mode_dropout(&mode, ones, 0.0f), ones);
    assert_int_equal(mode.draws, 0);
    kg_scope s = kg_scope_begin(ctx);
    float *a = host(kg_mode_dropout(&mode, ones, 0.25f));
    float *b = host(kg_mode_dropout(&mode, ones, 0.25f));
    assert_int_equal(mode.draws, 2);
    mode = (kg_mode){.training = true, .seed = 5};
    float *a2 = host(kg_mode_dropout(&mode, ones, 0.25f));
    int zeros = 0, same = 0;
    for (int i = 0; i < 4000; i++) {
        assert_true(a[i] == 0.0f || fabsf(a[i] - 1.0f / 0.75f) < 1e-6f);
        zeros += a[i] == 0.0f;
        same += a[i] == b[i];
        assert_true(a[i] == a2[i]); /* the same seed, the same masks */
    }
    assert_in_range(zeros, 850, 1150);
    assert_true(same < 3400); /* the second call drew another mask */
    free(a);
    free(b);
    free(a2);
    kg_scope_end(ctx, s);

    /* a LoRA layer: base path untouched, the adapter sees dropout(x) */
    kg_linear l = make_layer(&cases[0], 2.0f, 0.5f, &mode);
    randomize_factors(&l, 30);
    kg_tensor *x = param(2, SHAPE(5, 8), 31);
    s = kg_scope_begin(ctx);
    mode = (kg_mode){.training = true, .seed = 9};
    float *got = host(kg_adapter_forward(&l, x));
    mode = (kg_mode){.training = true, .seed = 9};
    kg_tensor *xd = kg_mode_dropout(&mode, x, 0.5f);
    assert_tensor(kg_scale(kg_lowrank_linear(xd, l.ad.lora_b, l.ad.lora_a), 2.0f), got, 60, 1e-6f,
                  1e-6f, "lora dropout");
    mode.training = false;
    float *eval = host(kg_adapter_forward(&l, x));
    int differ = 0;
    for (int i = 0; i < 60; i++)
        differ += got[i] != eval[i];
    assert_true(differ > 10);
    free(got);
    free(eval);
    kg_scope_end(ctx, s);
    free_layer(&l);
    kg_tensor_free(x);
    kg_tensor_free(ones);
}

/* ---- Configurations and counts --------------------------------------------------------------- */

static kg_model_config distilbert_base(void)
{
    return (kg_model_config){.arch = KG_ARCH_DISTILBERT, .head = KG_HEAD_MULTIPLE_CHOICE,
                             .vocab_size = 30522, .hidden_size = 768, .n_layers = 6,
                             .n_heads = 12, .n_kv_heads = 12, .head_dim = 64,
                             .intermediate_size = 3072, .max_positions = 512, .num_labels = 2,
                             .norm_eps = 1e-12};
}

static kg_model_config mistral_7b(void)
{
    return (kg_model_config){.arch = KG_ARCH_MISTRAL, .head = KG_HEAD_CAUSAL_LM,
                             .vocab_size = 32000, .hidden_size = 4096, .n_layers = 32,
                             .n_heads = 32, .n_kv_heads = 8, .head_dim = 128,
                             .intermediate_size = 14336, .max_positions = 32768,
                             .norm_eps = 1e-5, .rope_theta = 10000, .sliding_window = 4096};
}

static int64_t count(const kg_model_config *mc, kg_adapter_config cfg)
{
    int64_t n = kg_adapter_count(ctx, mc, &cfg);
    assert_ok(ctx);
    return n;
}

static void test_counts(void **state)
{
    (void)state;
    kg_model_config db = distilbert_base(), mi = mistral_7b();
    kg_adapter_config kron = kg_adapter_config_default(KG_ADAPTER_KRONLORA);
    assert_true(kg_adapter_parse_kron_a(ctx, "2x4", &kron));
    assert_int_equal(kron.kron_a2, 2);
    assert_int_equal(kron.kron_a1, 4);
    /* the paper's DistilBERT figure: Kron-LoRA R 8, A 2 × 4, all six linear layers per block,
     * plus the multiple-choice head (591,361) */
    assert_int_equal(count(&db, kron), 840481);
    kron.modules_to_save = "";
    assert_int_equal(count(&db, kron), 249120);
    kg_adapter_config lora = kg_adapter_config_default(KG_ADAPTER_LORA);
    assert_int_equal(count(&db, lora), 663552 + 591361);
    lora.rank = 16;
    assert_int_equal(count(&db, lora), 1327104 + 591361);
    lora.rank = 8;
    lora.targets = "q_lin,v_lin";
    lora.modules_to_save = "";
    assert_int_equal(count(&db, lora), 147456);
    kg_adapter_config full = kg_adapter_config_default(KG_ADAPTER_FULL);
    assert_int_equal(count(&db, full), 66362880 + 591361); /* REFERENCE §5.1's encoder + head */

    /* REFERENCE §2.2's LoKr table (R 8, decompose_both false), one layer at a time */
    static const struct {
        const char *target;
        bool mistral;
        int64_t auto_factor, factor4;
    } lokr[] = {
        {"distilbert.transformer.layer.0.attention.q_lin", false, 1088, 3088},
        {"distilbert.transformer.layer.0.ffn.lin1", false, 1920, 7696},
        {"layers.0.self_attn.q_proj", true, 5120, 16400},
        {"layers.0.self_attn.k_proj", true, 2816, 10256},
        {"layers.0.mlp.gate_proj", true, 8704, 36880},
        {"layers.0.mlp.down_proj", true, 8704, 36880},
        {"lm_head", true, 12352, 72208},
    };
    for (size_t i = 0; i < sizeof lokr / sizeof lokr[0]; i++) {
        kg_adapter_config k = kg_adapter_config_default(KG_ADAPTER_LOKR);
        k.targets = lokr[i].target;
        k.modules_to_save = "";
        const kg_model_config *mc = lokr[i].mistral ? &mi : &db;
        assert_int_equal(count(mc, k), lokr[i].auto_factor);
        k.lokr_factor = 4;
        assert_int_equal(count(mc, k), lokr[i].factor4);
    }
    /* Mistral-7B, LoRA-8 on q and v: 32 · 8 · ((4096 + 4096) + (4096 + 1024)) */
    lora.targets = "q_proj,v_proj";
    assert_int_equal(count(&mi, lora), 32 * 8 * (8192 + 5120));
}

/* Each bad configuration is an error naming the field (and the layer, where one is at fault). */
static void test_validate(void **state)
{
    (void)state;
    kg_model_config db = distilbert_base();
    static const struct {
        kg_adapter_kind kind;
        const char *kron_a, *targets, *saves;
        int64_t rank, factor;
        double alpha;
        float dropout;
        const char *want[3];
    } bad[] = {
        {KG_ADAPTER_KRONLORA, "5x4", "lin2", NULL, 8, -1, 8, 0,
         {"distilbert.transformer.layer.0.ffn.lin2", "kron_a"}},
        {KG_ADAPTER_KRONLORA, "2x7", NULL, NULL, 8, -1, 8, 0,
         {"distilbert.transformer.layer.0.attention.q_lin", "kron_a"}},
        {KG_ADAPTER_LORA, NULL, NULL, NULL, 0, -1, 8, 0, {"rank"}},
        {KG_ADAPTER_LORA, NULL, NULL, NULL, 8, -1, -1, 0, {"alpha"}},
        {KG_ADAPTER_LORA, NULL, NULL, NULL, 8, -1, 8, 1.0f, {"dropout"}},
        {KG_ADAPTER_LOKR, NULL, NULL, NULL, 8, -1, 8, 0.1f, {"dropout", "lokr"}},
        {KG_ADAPTER_LOKR, NULL, NULL, NULL, 8, 0, 8, 0, {"lokr_factor"}},
        {KG_ADAPTER_LORA, NULL, "q_lin,nope", NULL, 8, -1, 8, 0, {"targets", "nope"}},
        {KG_ADAPTER_LORA, NULL, "q_lin,,v_lin", NULL, 8, -1, 8, 0, {"targets", "empty"}},
        {KG_ADAPTER_LORA, NULL, NULL, "pooler", 8, -1, 8, 0, {"modules_to_save", "pooler"}},
        {KG_ADAPTER_LORA, NULL, "classifier", NULL, 8, -1, 8, 0, {"classifier",
                                                                   "modules_to_save"}},
        {KG_ADAPTER_FULL, NULL, "q_lin", NULL, 8, -1, 8, 0, {"targets", "full"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kg_adapter_config cfg = kg_adapter_config_default(bad[i].kind);
        if (bad[i].kron_a)
            assert_true(kg_adapter_parse_kron_a(ctx, bad[i].kron_a, &cfg));
        cfg.targets = bad[i].targets;
        cfg.modules_to_save = bad[i].saves;
        cfg.rank = bad[i].rank;
        cfg.lokr_factor = bad[i].factor;
        cfg.alpha = bad[i].alpha;
        cfg.dropout = bad[i].dropout;
        assert_false(kg_adapter_validate(ctx, &db, &cfg));
        assert_int_equal(kg_adapter_count(ctx, &db, &cfg), -1);
        for (int k = 0; bad[i].want[k]; k++)
            if (!strstr(kg_error(ctx), bad[i].want[k]))
                fail_msg("case %zu: '%s' does not name '%s'", i, kg_error(ctx), bad[i].want[k]);
        kg_clear_error(ctx);
    }
    kg_model_config tied = mistral_7b();
    tied.tie_word_embeddings = true;
    kg_adapter_config head = kg_adapter_config_default(KG_ADAPTER_LORA);
    head.targets = "lm_head";
    assert_false(kg_adapter_validate(ctx, &tied, &head));
    assert_non_null(strstr(kg_error(ctx), "lm_head"));
    kg_clear_error(ctx);
    static const char *const bad_a[] = {"2x", "0x4", "x4", "2x4x", "2*4", "", "-2x4"};
    kg_adapter_config cfg = kg_adapter_config_default(KG_ADAPTER_KRONLORA);
    for (size_t i = 0; i < sizeof bad_a / sizeof bad_a[0]; i++) {
        assert_false(kg_adapter_parse_kron_a(ctx, bad_a[i], &cfg));
        assert_non_null(strstr(kg_error(ctx), "kron_a"));
        kg_clear_error(ctx);
    }
    assert_true(kg_adapter_parse_kron_a(ctx, "4\xc3\x97" "2", &cfg));
    assert_int_equal(cfg.kron_a2, 4);
    assert_int_equal(cfg.kron_a1, 2);
    kg_adapter_kind k;
    assert_true(kg_adapter_kind_parse(ctx, "kronlora", &k));
    assert_int_equal(k, KG_ADAPTER_KRONLORA);
    assert_false(kg_adapter_kind_parse(ctx, "qlora", &k));
    assert_non_null(strstr(kg_error(ctx), "qlora"));
    kg_clear_error(ctx);
    assert_string_equal(kg_adapter_kind_name(KG_ADAPTER_LOKR), "lokr");
}

/* ---- On the fixture models ------------------------------------------------------------------ */

static kg_tensor *mc_ids(void)
{
    int32_t ids[24];
    for (int k = 0; k < 24; k++)
        ids[k] = k % 6 ? 5 + (k * 37) % 90 : 2;
    return kg_from_host(ctx, KG_DTYPE_I32, 3, SHAPE(2, 2, 6), ids);
}

static float *logits(const kg_model *m)
{
    kg_scope s = kg_scope_begin(ctx);
    kg_no_grad_begin(ctx);
    kg_model_input in = {.ids = mc_ids()};
    float *v = host(kg_model_logits(m, &in, NULL));
    kg_no_grad_end(ctx);
    kg_scope_end(ctx, s);
    return v;
}

static bool any_nonzero(const kg_tensor *t)
{
    float *v = host(t);
    bool nz = false;
    for (int64_t i = 0; i < kg_tensor_numel(t); i++)
        nz |= v[i] != 0.0f;
    free(v);
    return nz;
}

/* Attach on a model: counts as from the config, the base model unchanged at the start, PEFT's
 * names, frozen base weights, which factors move first, merge on the whole model. */
static void test_model_attach(void **state)
{
    (void)state;
    kg_model *base = kg_test_model(ctx, "distilbert");
    float *want = logits(base);
    kg_model_free(base);
    static const kg_adapter_kind kinds[] = {KG_ADAPTER_LORA, KG_ADAPTER_KRONLORA,
                                            KG_ADAPTER_LOKR, KG_ADAPTER_FULL};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        kg_model *m = kg_test_model(ctx, "distilbert");
        kg_adapter_config cfg = kg_adapter_config_default(kinds[ki]);
        cfg.rank = 2;
        cfg.seed = 3;
        int64_t n = kg_adapter_count(ctx, &m->cfg, &cfg);
        assert_true(kg_model_attach(m, &cfg));
        assert_int_equal(kg_model_trainable_count(m), n);
        assert_false(kg_model_attach(m, &cfg));
        assert_int_equal(kg_ctx_status(ctx), KG_ERR_STATE);
        kg_clear_error(ctx);
        float *got = logits(m);
        assert_close(got, want, 4, 0, 0, "ΔW = 0 at the start");
        free(got);
        if (kinds[ki] == KG_ADAPTER_FULL) {
            int64_t all = 0;
            for (int i = 0; i < m->n_params; i++)
                all += kg_tensor_numel(m->params[i].tensor);
            assert_int_equal(n, all);
            assert_string_equal(m->trainable[0].name, m->params[0].name);
            kg_model_free(m);
            continue;
        }
        const char *first = kinds[ki] == KG_ADAPTER_LORA
                                ? "base_model.model.distilbert.transformer.layer.0.attention."
                                  "q_lin.lora_A.weight"
                                : "base_model.model.distilbert.transformer.layer.0.attention."
                                  "q_lin.lokr_w1";
        assert_string_equal(m->trainable[0].name, first);
        assert_string_equal(m->trainable[m->n_trainable - 1].name,
                            "base_model.model.classifier.bias");
        /* one step's gradients: only trainable tensors get any */
        kg_scope s = kg_scope_begin(ctx);
        kg_model_input in = {.ids = mc_ids()};
        kg_tensor *loss = kg_cross_entropy(kg_model_logits(m, &in, NULL),
                                           kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(2),
                                                        (int32_t[]){0, 1}), -100);
        assert_true(kg_backward(loss));
        for (int i = 0; i < m->n_params; i++) {
            bool head = strstr(m->params[i].name, "classifier") != NULL;
            assert_true(kg_requires_grad(m->params[i].tensor) == head);
            assert_true((kg_grad(m->params[i].tensor) != NULL) == head);
        }
        /* the zero factor makes the others' first gradients zero (docs/kron-lora.md) */
        const kg_adapter *ad = &m->layers[0].attn.q.ad;
        if (kinds[ki] == KG_ADAPTER_LORA) {
            assert_false(any_nonzero(kg_grad(ad->lora_a)));
            assert_true(any_nonzero(kg_grad(ad->lora_b)));
        } else if (kinds[ki] == KG_ADAPTER_KRONLORA) {
            assert_false(any_nonzero(kg_grad(ad->w1)));
            assert_false(any_nonzero(kg_grad(ad->w2_b)));
            assert_true(any_nonzero(kg_grad(ad->w2_a)));
        } else {
            assert_true(any_nonzero(kg_grad(ad->w1)));
            assert_false(any_nonzero(kg_grad(ad->w2_a)));
        }
        kg_scope_end(ctx, s);
        for (int i = 0; i < m->n_trainable; i++)
            kg_zero_grad(m->trainable[i].tensor);
        /* moved factors: the merged model gives the unmerged one's logits */
        s = kg_scope_begin(ctx);
        for (int i = 0; i < m->n_trainable; i++) {
            kg_tensor *t = m->trainable[i].tensor;
            kg_tensor_assign(t, kg_add(t, kg_scale(kg_normal(ctx, kg_tensor_ndim(t),
                                                             (int64_t[]){kg_tensor_dim(t, 0),
                                                                         kg_tensor_dim(t, -1)},
                                                             0, 1, 40 + (uint64_t)i),
                                                   0.2f)));
        }
        kg_scope_end(ctx, s);
        float *unmerged = logits(m);
        assert_true(kg_model_merge(m));
        float *merged = logits(m);
        assert_close(merged, unmerged, 4, 1e-5f, 1e-5f, "merged model");
        assert_true(kg_model_unmerge(m));
        free(merged);
        merged = logits(m);
        assert_close(merged, unmerged, 4, 1e-5f, 1e-5f, "unmerged model");
        free(merged);
        free(unmerged);
        kg_model_free(m);
    }
    free(want);
    /* a configuration the model cannot take changes nothing */
    kg_model *m = kg_test_model(ctx, "distilbert");
    kg_adapter_config cfg = kg_adapter_config_default(KG_ADAPTER_KRONLORA);
    cfg.kron_a2 = 3;
    assert_false(kg_model_attach(m, &cfg));
    assert_non_null(strstr(kg_error(ctx), "kron_a"));
    kg_clear_error(ctx);
    assert_int_equal(m->n_trainable, 0);
    assert_int_equal(m->layers[0].attn.q.kind, KG_LINEAR_DENSE);
    kg_model_free(m);
    kg_flush(ctx);
    size_t current;
    kg_memory(ctx, &current, NULL);
    assert_int_equal(current, 0);
}

/* Training mode: dropout where transformers puts it, reproducible from the seed. */
static void test_training_mode(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        uint64_t draws; /* masks one forward draws */
    } models[] = {
        {"distilbert", 1 + 2 * 2 + 1}, /* embeddings; per block attention probs, FFN; head */
        {"bert", 1 + 2 * 3 + 1},       /* embeddings; attention probs, attention out, FFN; head */
        {"mistral", 0},                /* attention_dropout 0.0: no dropout */
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        kg_model *m = kg_test_model(ctx, models[i].model);
        bool mc = m->cfg.head == KG_HEAD_MULTIPLE_CHOICE;
        int32_t ids[24];
        for (int k = 0; k < 24; k++)
            ids[k] = 5 + (k * 37) % 90;
        kg_scope s = kg_scope_begin(ctx);
        kg_model_input in = {.ids = mc ? mc_ids()
                                       : kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(4, 6), ids)};
        int64_t n = mc ? 4 : 4 * 6 * 100;
        float *eval = host(kg_model_logits(m, &in, NULL));
        kg_model_train(m, true, 5);
        float *t1 = host(kg_model_logits(m, &in, NULL));
        uint64_t draws = m->mode.draws;
        kg_model_train(m, true, 5);
        float *t2 = host(kg_model_logits(m, &in, NULL));
        kg_model_train(m, true, 6);
        float *t3 = host(kg_model_logits(m, &in, NULL));
        kg_model_train(m, false, 0);
        float *back = host(kg_model_logits(m, &in, NULL));
        assert_close(t2, t1, n, 0, 0, "the same seed");
        assert_close(back, eval, n, 0, 0, "back to evaluation");
        int differ = 0, differ_seed = 0;
        for (int64_t k = 0; k < n; k++) {
            differ += t1[k] != eval[k];
            differ_seed += t1[k] != t3[k];
        }
        if (!models[i].draws) { /* no dropout configured: the same as evaluation */
            assert_int_equal(draws, 0);
            assert_int_equal(differ, 0);
        } else {
            assert_int_equal(draws, models[i].draws);
            assert_int_equal(differ, n);
            assert_int_equal(differ_seed, n);
        }
        free(eval);
        free(t1);
        free(t2);
        free(t3);
        free(back);
        kg_scope_end(ctx, s);
        kg_model_free(m);
    }
}

/* A fresh multiple-choice head on a head-less checkpoint, trained whole by default. */
static void test_add_head(void **state)
{
    (void)state;
    char dir[] = "/tmp/kg_head_XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "sed 's/DistilBertForMultipleChoice/DistilBertModel/' "
             "'%s/models/distilbert/config.json' > '%s/config.json' && ln -s "
             "'%s/models/distilbert/model.safetensors' '%s/'", KG_FIXTURES, dir, KG_FIXTURES, dir);
    assert_int_equal(system(cmd), 0);
    kg_model *m = kg_model_load(ctx, dir);
    assert_ok(ctx);
    assert_int_equal(m->cfg.head, KG_HEAD_NONE);
    int before = m->n_params;
    assert_true(kg_model_add_head(m, KG_HEAD_MULTIPLE_CHOICE, 0, 4));
    assert_int_equal(m->n_params, before + 4);
    assert_string_equal(m->params[before].name, "pre_classifier.weight");
    assert_string_equal(m->params[before + 3].name, "classifier.bias");
    float *w = host(m->classifier.weight);
    double ss = 0;
    for (int i = 0; i < 32; i++)
        ss += (double)w[i] * w[i];
    assert_true(sqrt(ss / 32) > 0.01 && sqrt(ss / 32) < 0.04); /* N(0, 0.02) */
    free(w);
    assert_false(any_nonzero(m->classifier.bias));
    float *l = logits(m);
    free(l);
    assert_false(kg_model_add_head(m, KG_HEAD_MULTIPLE_CHOICE, 0, 4));
    kg_clear_error(ctx);
    kg_adapter_config cfg = kg_adapter_config_default(KG_ADAPTER_LORA);
    assert_true(kg_model_attach(m, &cfg));
    assert_string_equal(m->trainable[m->n_trainable - 4].name,
                        "base_model.model.pre_classifier.weight");
    kg_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    ctx = kg_ctx_new(backend);
    return ctx && !kg_ctx_status(ctx) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kg_ctx_free(ctx);
    ctx = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradcheck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_gradients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_head, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
