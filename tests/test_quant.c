/* test_quant.c — the block-quantized dtypes and matmul_q: bytes against the reference
 * quantizers (tests/fixtures/quant/make_quant.py: gguf for q8_0 / q4_0 / q4_1, bitsandbytes for
 * nf4), dequantization against theirs, and x·Wᵀ / x·W with a quantized W, forward and backward,
 * against the same product with W dequantized to f32. Runs on the CPU backend, or on Vulkan
 * with the argument "vulkan".
 */
#include "kg_test.h"

static kg_backend_kind backend;

enum { N = 6, K = 256 };
static const kg_dtype quant[] = {KG_DTYPE_Q8_0, KG_DTYPE_Q4_0, KG_DTYPE_Q4_1, KG_DTYPE_NF4};

/* quant.bin: w [N, K] f32, each format's bytes, then each format's reference dequantization. */
typedef struct fixture {
    float w[N * K];
    unsigned char *bytes[4];
    size_t size[4];
    float deq[4][N * K];
    unsigned char *all;
} fixture;

static fixture *load_fixture(void)
{
    FILE *f = fopen(KG_QUANT_FIXTURES "/quant.bin", "rb");
    assert_non_null(f);
    fixture *fx = calloc(1, sizeof *fx);
    size_t total = sizeof fx->w, off = sizeof fx->w;
    for (int d = 0; d < 4; d++)
        total += (fx->size[d] = kg_dtype_bytes(quant[d], N * K)) + sizeof fx->deq[d];
    fx->all = malloc(total + 1);
    assert_int_equal(fread(fx->all, 1, total + 1, f), total); /* exactly the layouts' sizes */
    fclose(f);
    memcpy(fx->w, fx->all, sizeof fx->w);
    for (int d = 0; d < 4; d++) {
        fx->bytes[d] = fx->all + off;
        off += fx->size[d];
    }
    for (int d = 0; d < 4; d++) {
        memcpy(fx->deq[d], fx->all + off, sizeof fx->deq[d]);
        off += sizeof fx->deq[d];
    }
    return fx;
}

static void free_fixture(fixture *fx)
{
    free(fx->all);
    free(fx);
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(kg_dtype_block(KG_DTYPE_Q4_0), 32);
    assert_int_equal(kg_dtype_block(KG_DTYPE_NF4), 64);
    assert_int_equal(kg_dtype_block(KG_DTYPE_F32), 1);
    assert_int_equal(kg_dtype_bytes(KG_DTYPE_Q8_0, 64), 68);  /* 8.5 bits per weight */
    assert_int_equal(kg_dtype_bytes(KG_DTYPE_Q4_0, 64), 36);  /* 4.5 */
    assert_int_equal(kg_dtype_bytes(KG_DTYPE_Q4_1, 64), 40);  /* 5.0 */
    assert_int_equal(kg_dtype_bytes(KG_DTYPE_BF16, 64), 128);
    /* nf4: 32 bytes of codes per 64, 1 index byte per 64 (padded to 4), 4 bytes per 256 blocks,
     * the offset and the 1 KiB dynamic map. */
    assert_int_equal(kg_dtype_bytes(KG_DTYPE_NF4, 64 * 1024), 32768 + 1024 + 16 + 4 + 1024);
    assert_int_equal(kg_dtype_from_name("q4_1"), KG_DTYPE_Q4_1);
    assert_int_equal(kg_dtype_from_name("nf4"), KG_DTYPE_NF4);
    assert_int_equal(kg_dtype_from_name("q5_0"), KG_DTYPE_COUNT);
}

/* kg_quantize's bytes are the reference quantizer's, and kg_cast(q, f32) its dequantization. */
static void test_bytes_match_the_references(void **state)
{
    (void)state;
    fixture *fx = load_fixture();
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *w = kg_from_host(ctx, KG_DTYPE_F32, 2, SHAPE(N, K), fx->w);
    for (int d = 0; d < 4; d++) {
        kg_tensor *q = kg_quantize(w, quant[d]);
        assert_ok(ctx);
        assert_int_equal(kg_tensor_dtype(q), quant[d]);
        unsigned char *got = malloc(fx->size[d]);
        assert_true(kg_tensor_to_host(q, got, fx->size[d]));
        /* nf4's second-level scale and offset come from torch's f32 mean of the absmax, whose
         * summation order follows the CPU's vector width; krongrad rounds the exact mean. Those
         * two floats (bytes [792, 800) here: after 768 bytes of codes and 24 indices) agree to
         * an ulp; every other byte, the indices included, is the reference's. */
        size_t skip0 = quant[d] == KG_DTYPE_NF4 ? 792 : 0, skip1 = skip0 ? 800 : 0;
        for (size_t i = 0; i < fx->size[d]; i++)
            if ((i < skip0 || i >= skip1) && got[i] != fx->bytes[d][i])
                fail_msg("%s: byte %zu is %u; the reference wrote %u", kg_dtype_name(quant[d]), i,
                         got[i], fx->bytes[d][i]);
        for (size_t i = skip0; i < skip1; i += 4) {
            float g, want;
            memcpy(&g, got + i, 4);
            memcpy(&want, fx->bytes[d] + i, 4);
            assert_close(&g, &want, 1, 0.0f, 2e-7f, "nf4 absmax2 / offset");
        }
        free(got);
        /* Dequantizing the reference's bytes gives the reference's values exactly. */
        kg_tensor *ref = kg_from_host(ctx, quant[d], 2, SHAPE(N, K), fx->bytes[d]);
        kg_tensor *deq = kg_cast(ref, KG_DTYPE_F32);
        assert_ok(ctx);
        assert_tensor(deq, fx->deq[d], N * K, 0.0f, 0.0f, kg_dtype_name(quant[d]));
        float *host = kg_tensor_to_f32(ref); /* the host path decodes the same */
        assert_close(host, fx->deq[d], N * K, 0.0f, 0.0f, "kg_tensor_to_f32");
        free(host);
    }
    kg_ctx_free(ctx);
    free_fixture(fx);
}

/* x·Wᵀ and x·W with W stored in every dtype, against kg_matmul with W dequantized, forward and
 * the gradient of x (W gets none). */
static void test_matmul_q_matches_the_dequantized_product(void **state)
{
    (void)state;
    kg_dtype all[] = {KG_DTYPE_F32, KG_DTYPE_F16, KG_DTYPE_BF16, KG_DTYPE_Q8_0, KG_DTYPE_Q4_0,
                      KG_DTYPE_Q4_1, KG_DTYPE_NF4};
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *w32 = kg_normal(ctx, 2, SHAPE(40, 128), 0.0f, 0.1f, 7); /* W [N=40, K=128] */
    for (size_t d = 0; d < sizeof all / sizeof all[0]; d++)
        for (int trans = 0; trans < 2; trans++) {
            kg_scope s = kg_scope_begin(ctx);
            kg_tensor *w = all[d] == KG_DTYPE_F32 ? w32 : kg_quantize(w32, all[d]);
            kg_tensor *deq = kg_cast(w, KG_DTYPE_F32);
            kg_tensor *x = kg_normal(ctx, 3, SHAPE(2, 35, trans ? 128 : 40), 0.0f, 1.0f, 8);
            kg_tensor *x2 = kg_normal(ctx, 3, SHAPE(2, 35, trans ? 128 : 40), 0.0f, 1.0f, 8);
            kg_set_requires_grad(x, true);
            kg_set_requires_grad(x2, true);
            kg_tensor *y = kg_matmul_q(x, w, trans);
            kg_tensor *want = kg_matmul_t(x2, deq, false, trans);
            kg_tensor *g = kg_normal(ctx, 3, SHAPE(2, 35, trans ? 40 : 128), 0.0f, 1.0f, 9);
            assert_true(kg_backward(kg_sum_all(kg_mul(y, g))));
            assert_true(kg_backward(kg_sum_all(kg_mul(want, g))));
            assert_ok(ctx);
            assert_false(kg_requires_grad(w));
            float *wv = kg_tensor_to_f32(want), *gv = kg_tensor_to_f32(kg_grad(x2));
            char what[64];
            snprintf(what, sizeof what, "%s%s forward", kg_dtype_name(all[d]), trans ? "ᵀ" : "");
            assert_tensor(y, wv, kg_tensor_numel(want), 1e-4f, 1e-4f, what);
            snprintf(what, sizeof what, "%s%s dx", kg_dtype_name(all[d]), trans ? "ᵀ" : "");
            assert_tensor(kg_grad(x), gv, kg_tensor_numel(x), 1e-4f, 1e-4f, what);
            free(wv);
            free(gv);
            kg_scope_end(ctx, s);
        }
    kg_ctx_free(ctx);
}

/* Quantized tensors are storage only: no other op, no views, no gradient, no bad shapes. */
static void test_quantized_tensors_refuse_misuse(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_tensor *w = kg_normal(ctx, 2, SHAPE(4, 64), 0.0f, 1.0f, 1);
    kg_tensor *q = kg_quantize(w, KG_DTYPE_Q4_0);
    assert_ok(ctx);
    assert_null(kg_add(q, q));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    assert_non_null(strstr(kg_error(ctx), "block-quantized"));
    kg_clear_error(ctx);
    assert_null(kg_transpose(q, 0, 1));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    kg_clear_error(ctx);
    kg_set_requires_grad(q, true);
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    kg_clear_error(ctx);
    assert_null(kg_cast(q, KG_DTYPE_F16));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    kg_clear_error(ctx);
    assert_null(kg_cast(w, KG_DTYPE_Q8_0));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    kg_clear_error(ctx);
    assert_null(kg_quantize(kg_normal(ctx, 2, SHAPE(4, 48), 0.0f, 1.0f, 1), KG_DTYPE_NF4));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_clear_error(ctx);
    assert_null(kg_tensor_new(ctx, KG_DTYPE_Q8_0, 1, SHAPE(64)));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_clear_error(ctx);
    assert_null(kg_matmul_q(kg_normal(ctx, 2, SHAPE(3, 5), 0.0f, 1.0f, 1), q, true));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_SHAPE);
    kg_clear_error(ctx);
    assert_null(kg_zeros(ctx, KG_DTYPE_NF4, 2, SHAPE(2, 64)));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_DTYPE);
    kg_ctx_free(ctx);
}

/* GGUF tensors packed as q8_0 / q4_0 load packed (rows put back in HF order where llama.cpp
 * permuted them for RoPE) and decode to what the f32 load gives. */
static void test_gguf_blocks_stay_packed(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_weights *w = kg_weights_open(ctx, KG_FORMATS_FIXTURES "/tiny_llama.gguf");
    assert_ok(ctx);
    const char *names[] = {"model.layers.0.self_attn.q_proj.weight", /* Q8_0, permuted */
                           "model.layers.0.self_attn.v_proj.weight", /* Q4_0 */
                           "model.layers.0.mlp.down_proj.weight"};   /* Q8_0 */
    kg_dtype want[] = {KG_DTYPE_Q8_0, KG_DTYPE_Q4_0, KG_DTYPE_Q8_0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kg_weights_dtype(w, names[i]), want[i]);
        kg_tensor *q = kg_weights_load(w, names[i], want[i], 0, NULL);
        kg_tensor *f = kg_weights_load(w, names[i], KG_DTYPE_F32, 0, NULL);
        assert_ok(ctx);
        assert_int_equal(kg_tensor_dtype(q), want[i]);
        float *fv = kg_tensor_to_f32(f);
        assert_tensor(kg_cast(q, KG_DTYPE_F32), fv, kg_tensor_numel(f), 0.0f, 0.0f, names[i]);
        free(fv);
    }
    assert_int_equal(kg_weights_dtype(w, "model.layers.0.self_attn.k_proj.weight"), KG_DTYPE_F16);
    assert_int_equal(kg_weights_dtype(w, "no.such.tensor"), KG_DTYPE_COUNT);
    kg_weights_close(w);
    kg_ctx_free(ctx);
}

/* --frozen means what it says on a GGUF model too: a weight packed in the asked-for format stays
 * packed; one packed otherwise (or stored in f16) is decoded and stored as asked. */
static void test_gguf_frozen_as_asked(void **state)
{
    (void)state;
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_load_frozen(ctx, KG_FORMATS_FIXTURES "/tiny_llama.gguf",
                                       KG_DTYPE_Q4_0);
    assert_ok(ctx);
    const kg_attention *a = &m->layers[0].attn;
    assert_int_equal(kg_tensor_dtype(a->q.weight), KG_DTYPE_Q4_0); /* Q8_0 in the file */
    assert_int_equal(kg_tensor_dtype(a->v.weight), KG_DTYPE_Q4_0); /* Q4_0 in the file */
    assert_int_equal(kg_tensor_dtype(a->k.weight), KG_DTYPE_Q4_0); /* F16 in the file */
    kg_model_free(m);
    kg_ctx_free(ctx);
}

/* Adapter factors in int8 / int4, symmetric per output row: the codes and scales, and a factor
 * replaced by what its codes stand for (quantizing that again changes nothing). */
static void test_adapter_quantization(void **state)
{
    (void)state;
    const float x[2][4] = {{0.5f, -1.0f, 0.25f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    int8_t codes[8];
    float scales[2];
    assert_true(kg_adapter_quantize_rows(&x[0][0], 2, 4, 8, codes, scales));
    assert_true(scales[0] == 1.0f / 127.0f && scales[1] == 0.0f);
    int8_t want8[8] = {64, -127, 32, 0, 0, 0, 0, 0}; /* 63.5 and 31.75 round away from 0 */
    assert_memory_equal(codes, want8, 8);
    assert_true(kg_adapter_quantize_rows(&x[0][0], 2, 4, 4, codes, scales));
    int8_t want4[8] = {4, -7, 2, 0, 0, 0, 0, 0};
    assert_memory_equal(codes, want4, 8);
    assert_false(kg_adapter_quantize_rows(&x[0][0], 2, 4, 3, codes, scales));

    kg_ctx *ctx = kg_ctx_new(backend);
    for (int bits = 8; bits >= 4; bits -= 4) {
        kg_tensor *f = kg_normal(ctx, 2, SHAPE(5, 12), 0.0f, 1.0f, 3);
        float *before = kg_tensor_to_f32(f);
        assert_true(kg_adapter_quantize_factor(f, bits));
        float *once = kg_tensor_to_f32(f);
        assert_true(kg_adapter_quantize_factor(f, bits));
        assert_tensor(f, once, 60, 0.0f, 1e-6f, "quantized twice");
        for (int r = 0; r < 5; r++) { /* each value within half a step of its row's scale */
            float amax = 0.0f;
            for (int c = 0; c < 12; c++)
                amax = fmaxf(amax, fabsf(before[r * 12 + c]));
            float step = amax / (float)((1 << (bits - 1)) - 1);
            assert_close(once + r * 12, before + r * 12, 12, 0.5001f * step, 0.0f, "int error");
        }
        free(before);
        free(once);
    }
    assert_false(kg_adapter_quantize_factor(kg_normal(ctx, 2, SHAPE(2, 2), 0, 1, 1), 2));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_ARG);
    kg_ctx_free(ctx);
}

/* rms(a - b) / rms(b). */
static double rel_rms(const float *a, const float *b, int64_t n)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / r);
}

/* A tiny Llama with its block weights stored in each frozen dtype gives nearly the f32 model's
 * logits, and a Kron-LoRA adapter on it still trains (its factors get gradients through the
 * quantized weights' matmul_q). */
static void test_frozen_model_matches_f32(void **state)
{
    (void)state;
    kg_model_config cfg = {.arch = KG_ARCH_LLAMA, .head = KG_HEAD_CAUSAL_LM, .vocab_size = 64,
                           .hidden_size = 64, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                           .head_dim = 32, .intermediate_size = 128, .max_positions = 32,
                           .norm_eps = 1e-5, .rope_theta = 10000.0};
    struct { kg_dtype dtype; double tol; } cases[] = {
        {KG_DTYPE_F32, 0.0}, {KG_DTYPE_BF16, 0.01}, {KG_DTYPE_Q8_0, 0.02},
        {KG_DTYPE_Q4_1, 0.15}, {KG_DTYPE_NF4, 0.15}};
    kg_ctx *ctx = kg_ctx_new(backend);
    int32_t ids[2 * 8];
    for (int i = 0; i < 16; i++)
        ids[i] = (i * 7 + 3) % 64;
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 2, SHAPE(2, 8), ids);
    kg_model_input in = {.ids = t};
    float *want = NULL;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cfg.frozen = cases[c].dtype;
        kg_model *m = kg_model_random(ctx, &cfg, 5);
        assert_ok(ctx);
        assert_int_equal(kg_tensor_dtype(m->layers[1].mlp.down.weight), cases[c].dtype);
        assert_int_equal(kg_tensor_dtype(m->tokens.weight), KG_DTYPE_F32); /* not a block's */
        kg_adapter_config ac = kg_adapter_config_default(KG_ADAPTER_KRONLORA);
        assert_true(kg_model_attach(m, &ac));
        kg_scope s = kg_scope_begin(ctx);
        kg_tensor *logits = kg_model_logits(m, &in, NULL);
        assert_true(kg_backward(kg_sum_all(kg_mul(logits, logits))));
        assert_ok(ctx);
        float *got = kg_tensor_to_f32(logits);
        if (!want) {
            want = got;
        } else {
            double e = rel_rms(got, want, kg_tensor_numel(logits));
            printf("frozen %-5s logits: rms(Δ)/rms(f32) = %.4f\n", kg_dtype_name(cases[c].dtype), e);
            if (e > cases[c].tol)
                fail_msg("%s: logits differ from f32 by %.4f (rms relative); expected <= %.2f",
                         kg_dtype_name(cases[c].dtype), e, cases[c].tol);
            free(got);
        }
        int with_grad = 0;
        for (int i = 0; i < m->n_trainable; i++)
            with_grad += kg_grad(m->trainable[i].tensor) != NULL;
        assert_int_equal(with_grad, m->n_trainable);
        kg_scope_end(ctx, s);
        kg_model_free(m);
    }
    free(want);
    kg_ctx_free(ctx);
}

/* --frozen bf16: an adapter's frozen LM head multiplies in bf16 (a copy, which kg_model_free
 * frees; the tied embedding keeps its f32 weight), and its log-probabilities stay near the f32
 * head's. A full fine-tune, which would train the bf16 block weights, is refused. */
static void test_frozen_bf16_head(void **state)
{
    (void)state;
    kg_model_config cfg = {.arch = KG_ARCH_LLAMA, .head = KG_HEAD_CAUSAL_LM, .vocab_size = 96,
                           .hidden_size = 64, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                           .head_dim = 32, .intermediate_size = 128, .max_positions = 32,
                           .norm_eps = 1e-5, .rope_theta = 10000.0, .tie_word_embeddings = true,
                           .frozen = KG_DTYPE_BF16};
    kg_ctx *ctx = kg_ctx_new(backend);
    kg_model *m = kg_model_random(ctx, &cfg, 5);
    assert_ok(ctx);
    kg_tensor *emb = m->tokens.weight;
    assert_ptr_equal(m->lm_head.weight, emb); /* tied, before an adapter */
    kg_adapter_config ac = kg_adapter_config_default(KG_ADAPTER_LORA);
    assert_true(kg_model_attach(m, &ac));
    assert_int_equal(kg_tensor_dtype(m->lm_head.weight), KG_DTYPE_BF16);
    assert_ptr_equal(m->head_f32, emb);
    assert_ptr_equal(m->tokens.weight, emb);
    assert_int_equal(kg_tensor_dtype(emb), KG_DTYPE_F32);

    kg_scope s = kg_scope_begin(ctx);
    int32_t tg[12];
    for (int i = 0; i < 12; i++)
        tg[i] = (i * 37 + 5) % 96;
    kg_tensor *x = kg_uniform(ctx, 2, SHAPE(12, 64), -1.0f, 1.0f, 3);
    kg_tensor *t = kg_from_host(ctx, KG_DTYPE_I32, 1, SHAPE(12), tg);
    float *got = kg_tensor_to_f32(kg_linear_log_probs(&m->lm_head, x, t, -100));
    float *want = kg_tensor_to_f32(kg_linear_log_prob(x, emb, t, -100));
    assert_ok(ctx);
    double e = rel_rms(got, want, 12);
    printf("bf16 head log-probabilities: rms(Δ)/rms(f32) = %.5f\n", e);
    if (e > 0.01 || e == 0.0) /* bf16 rounding is there, and small */
        fail_msg("bf16 head: log-probabilities differ from the f32 head's by %.5f; expected "
                 "(0, 0.01]", e);
    free(got);
    free(want);
    kg_scope_end(ctx, s);
    kg_model_free(m); /* frees the copy (ASan sees a leak otherwise) */

    /* A full fine-tune would train the bf16 block weights, which matmul_q gives no gradient:
     * refused by name, and the model is left as it was, with nothing trainable. */
    m = kg_model_random(ctx, &cfg, 5);
    ac = kg_adapter_config_default(KG_ADAPTER_FULL);
    assert_false(kg_model_attach(m, &ac));
    assert_int_equal(kg_ctx_status(ctx), KG_ERR_ARG);
    const char *msg = kg_error(ctx);
    if (!strstr(msg, "kind full") || !strstr(msg, "bf16") || !strstr(msg, "layers.0."))
        fail_msg("full + frozen bf16: expected an error naming the kind, the dtype and the "
                 "weight; got \"%s\"", msg);
    kg_clear_error(ctx);
    assert_int_equal(m->n_trainable, 0);
    assert_int_equal(m->adapter.kind, KG_ADAPTER_NONE);
    assert_ptr_equal(m->lm_head.weight, m->tokens.weight);
    assert_null(m->head_bf16);
    kg_model_free(m);

    /* Loaded with frozen f32, the same model fine-tunes in full, its tied head trained in f32. */
    cfg.frozen = KG_DTYPE_F32;
    m = kg_model_random(ctx, &cfg, 5);
    assert_true(kg_model_attach(m, &ac));
    assert_int_equal(m->n_trainable, m->n_params);
    assert_ptr_equal(m->lm_head.weight, m->tokens.weight);
    assert_null(m->head_bf16);
    kg_model_free(m);
    kg_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    if (!kg_test_backend(argc, argv, &backend))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bytes_match_the_references),
        cmocka_unit_test(test_matmul_q_matches_the_dequantized_product),
        cmocka_unit_test(test_quantized_tensors_refuse_misuse),
        cmocka_unit_test(test_frozen_model_matches_f32),
        cmocka_unit_test(test_frozen_bf16_head),
        cmocka_unit_test(test_gguf_blocks_stay_packed),
        cmocka_unit_test(test_gguf_frozen_as_asked),
        cmocka_unit_test(test_adapter_quantization),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
