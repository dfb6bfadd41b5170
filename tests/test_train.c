/* test_train.c — the trainer: tiny fixture models (tests/fixtures/models: a random Llama and a
 * random DistilBERT with a multiple-choice head) learn a small task to an asserted accuracy;
 * a run stopped after 3 steps and resumed gives the same bytes as 6 straight steps; a failed or
 * killed checkpoint write leaves the previous checkpoint whole; schedules, clipping and
 * accumulation do what transformers / torch do; bad settings are errors naming the setting.
 *
 * Run with no argument on the CPU backend, with "vulkan" on Vulkan (77 without a device).
 */
#include "kg_test.h"
#include "train/kg_train.h"

#include <jansson.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static kg_backend_kind backend = KG_BACKEND_CPU;
static char dir[64];         /* a fresh temporary directory for the whole run */
static char train_path[128], test_path[128];

/* The task: a word names one of four things ("red" -> cat, "blue" -> dog, "big" -> sun,
 * "small" -> moon); the four things are offered in a shuffled order. Every word is in both
 * fixtures' vocabularies. */
static const char *const words[4] = {"red", "blue", "big", "small"};
static const char *const things[4] = {"cat", "dog", "sun", "moon"};

static void write_task(const char *path, int n, unsigned seed)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        int k = i % 4, order[4] = {0, 1, 2, 3};
        for (int j = 3; j > 0; j--) {
            seed = seed * 1103515245u + 12345u;
            int r = (int)((seed >> 16) % (unsigned)(j + 1)), x = order[j];
            order[j] = order[r];
            order[r] = x;
        }
        int answer = 0;
        fprintf(f, "{\"id\": \"%d\", \"question\": \"%s\", \"choices\": [", i, words[k]);
        for (int j = 0; j < 4; j++) {
            fprintf(f, "%s\"%s\"", j ? ", " : "", things[order[j]]);
            if (order[j] == k)
                answer = j;
        }
        fprintf(f, "], \"answer\": %d}\n", answer);
    }
    fclose(f);
}

/* The DistilBERT fixture with its dropouts set to 0, in dir/distilbert-nodrop: with dropout (0.1
 * hidden and attention, 0.2 before the classifier) this 32-wide, 2-layer random model needs far
 * more steps than a test should take (a full fine-tune gets there in ~150). */
static char nodrop[128];

static int make_nodrop(void)
{
    snprintf(nodrop, sizeof nodrop, "%s/distilbert-nodrop", dir);
    if (mkdir(nodrop, 0755) != 0)
        return -1;
    char src[512], dst[256];
    snprintf(src, sizeof src, "%s/models/distilbert/config.json", KG_FIXTURES);
    json_t *cfg = json_load_file(src, 0, NULL);
    if (!cfg)
        return -1;
    json_object_set_new(cfg, "dropout", json_real(0));
    json_object_set_new(cfg, "attention_dropout", json_real(0));
    json_object_set_new(cfg, "seq_classif_dropout", json_real(0));
    snprintf(dst, sizeof dst, "%s/config.json", nodrop);
    int rc = json_dump_file(cfg, dst, 0);
    json_decref(cfg);
    for (int i = 0; rc == 0 && i < 2; i++) {
        const char *name = i ? "vocab.txt" : "model.safetensors";
        snprintf(src, sizeof src, "%s/models/distilbert/%s", KG_FIXTURES, name);
        snprintf(dst, sizeof dst, "%s/%s", nodrop, name);
        rc = symlink(src, dst);
    }
    return rc;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kg_test_train.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(train_path, sizeof train_path, "%s/train.jsonl", dir);
    snprintf(test_path, sizeof test_path, "%s/test.jsonl", dir);
    write_task(train_path, 64, 1);
    write_task(test_path, 16, 2);
    return make_nodrop();
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct fixture {
    kg_ctx *ctx;
    kg_model *m;
    kg_tokenizer *tok;
    kg_task *train, *test;
} fixture;

static void open_fixture(fixture *f, const char *model, const kg_adapter_config *a)
{
    char path[512];
    if (model[0] == '/')
        snprintf(path, sizeof path, "%s", model);
    else
        snprintf(path, sizeof path, "%s/models/%s", KG_FIXTURES, model);
    f->ctx = kg_ctx_new(backend);
    assert_non_null(f->ctx);
    f->m = kg_model_load(f->ctx, path);
    f->tok = kg_tokenizer_load(f->ctx, path);
    f->train = kg_task_read(f->ctx, "plain", train_path);
    f->test = kg_task_read(f->ctx, "plain", test_path);
    assert_ok(f->ctx);
    if (a)
        assert_true(kg_model_attach(f->m, a));
    assert_ok(f->ctx);
}

static void close_fixture(fixture *f)
{
    kg_task_free(f->train);
    kg_task_free(f->test);
    kg_tokenizer_free(f->tok);
    kg_model_free(f->m);
    kg_ctx_free(f->ctx);
}

static double accuracy(fixture *f)
{
    kg_mc_scorer s = {.model = f->m, .tok = f->tok, .kind = f->test->kind};
    kg_eval_result r;
    assert_true(kg_mc_evaluate(&s, f->test, NULL, &r));
    assert_int_equal(r.labeled, 16);
    return r.acc;
}

static kg_train_config small_config(kg_adapter_kind kind)
{
    kg_train_config c = kg_train_config_default(kind);
    c.adapter.rank = 4;
    c.adapter.alpha = 8;
    c.steps = 40;
    c.batch = 8;
    c.lr = 1e-2;
    return c;
}

/* ---- Learning ---------------------------------------------------------------------------- */

static void learns(const char *model, kg_adapter_kind kind, kg_mc_loss loss, double want)
{
    kg_train_config c = small_config(kind);
    c.loss = loss;
    fixture f;
    open_fixture(&f, model, &c.adapter);
    double before = accuracy(&f);
    kg_run_result r;
    assert_true(kg_train_run(f.m, f.tok, f.train, f.test, &c, NULL, &r));
    assert_ok(f.ctx);
    print_message("%s %s %s (%s loss): %lld trainable, loss %.3f -> %.3f, accuracy %.3f -> "
                  "%.3f, %.1f ms/step\n", kg_backend_name(f.ctx), strrchr(model, '/') ?
                  strrchr(model, '/') + 1 : model,
                  kg_adapter_kind_name(kind), kg_mc_loss_name(loss), (long long)r.trainable,
                  r.first_loss, r.last_loss, before, r.eval.acc, 1e3 * r.mean_step_seconds);
    assert_true(r.evaluated);
    assert_int_equal(r.steps, 40);
    assert_true(r.last_loss < 0.5 * r.first_loss);
    assert_true(r.eval.acc >= want);
    assert_true(r.peak_bytes > 0);
    free(r.losses);
    close_fixture(&f);
}

static void test_llama_lora_learns(void **state)
{
    (void)state;
    learns("llama", KG_ADAPTER_LORA, KG_MC_LOSS_GOLD, 0.99);
}

static void test_llama_kronlora_choices_learns(void **state)
{
    (void)state;
    learns("llama", KG_ADAPTER_KRONLORA, KG_MC_LOSS_CHOICES, 0.99);
}

static void test_distilbert_kronlora_learns(void **state)
{
    (void)state;
    learns(nodrop, KG_ADAPTER_KRONLORA, KG_MC_LOSS_CHOICES, 0.99);
}

/* ---- Resume and checkpoints -------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    if (na != nb || memcmp(x, y, na) != 0)
        fail_msg("%s and %s differ (%zu and %zu bytes)", a, b, na, nb);
    free(x);
    free(y);
}

static kg_train_config resume_config(kg_optimizer opt)
{
    kg_train_config c = small_config(KG_ADAPTER_KRONLORA);
    c.adapter.dropout = 0.1f; /* the masks must repeat too */
    c.steps = 6;
    c.batch = 3; /* not a divisor of 64: epochs end inside a batch */
    c.accumulate = 2;
    c.warmup = 2;
    c.schedule = KG_SCHEDULE_COSINE;
    c.optimizer = opt;
    c.momentum = 0.9;
    c.weight_decay = 0.01;
    return c;
}

/* 6 steps straight into A; 3 steps into B, everything freed, then --resume for the rest. */
static void resume_case(const char *model, kg_optimizer opt, const char *tag)
{
    kg_train_config c = resume_config(opt);
    char a[256], b[256], fa[320], fb[320];
    snprintf(a, sizeof a, "%s/%s-straight", dir, tag);
    snprintf(b, sizeof b, "%s/%s-resumed", dir, tag);
    kg_run_result r;
    fixture f;
    open_fixture(&f, model, &c.adapter);
    assert_true(kg_train_run(f.m, f.tok, f.train, NULL, &c, &(kg_run_options){.out_dir = a}, &r));
    assert_int_equal(r.steps, 6);
    free(r.losses);
    close_fixture(&f);

    open_fixture(&f, model, &c.adapter);
    kg_run_options ro = {.out_dir = b, .stop_at = 3};
    assert_true(kg_train_run(f.m, f.tok, f.train, NULL, &c, &ro, &r));
    assert_int_equal(r.steps, 3);
    free(r.losses);
    close_fixture(&f);
    snprintf(fb, sizeof fb, "%s/adapter_model.safetensors", b);
    assert_int_equal(access(fb, F_OK), -1); /* no adapter before the last step */

    /* Resuming with another setting (here a factor's lr multiplier) would not continue the
     * checkpoint's run: an error naming the setting, and the checkpoint left as it was. */
    open_fixture(&f, model, &c.adapter);
    kg_train_config other = c;
    other.lr_mult[KG_FACTOR_LORA_B] = 2;
    ro = (kg_run_options){.out_dir = b, .resume = true};
    assert_false(kg_train_run(f.m, f.tok, f.train, NULL, &other, &ro, &r));
    assert_non_null(strstr(kg_error(f.ctx), "lr_mult.lora_b"));
    kg_clear_error(f.ctx);
    close_fixture(&f);

    open_fixture(&f, model, &c.adapter);
    assert_true(kg_train_run(f.m, f.tok, f.train, NULL, &c, &ro, &r));
    assert_int_equal(r.steps, 3);
    free(r.losses);
    close_fixture(&f);

    snprintf(fa, sizeof fa, "%s/adapter_model.safetensors", a);
    assert_same_file(fa, fb);
    snprintf(fa, sizeof fa, "%s/checkpoint.safetensors", a);
    snprintf(fb, sizeof fb, "%s/checkpoint.safetensors", b);
    assert_same_file(fa, fb);
}

static void test_resume_is_bit_exact_adamw(void **state)
{
    (void)state;
    resume_case("llama", KG_OPTIM_ADAMW, "adamw");
}

static void test_resume_is_bit_exact_sgd_encoder(void **state)
{
    (void)state;
    resume_case("distilbert", KG_OPTIM_SGD, "sgd");
}

/* A checkpoint at path, then saves that fail: by RLIMIT_FSIZE (write returns EFBIG) and by a
 * child killed in the middle of writing (SIGXFSZ). The file at path stays whole and loads. */
static void test_checkpoint_write_is_atomic(void **state)
{
    (void)state;
    kg_train_config c = resume_config(KG_OPTIM_ADAMW);
    fixture f;
    open_fixture(&f, "llama", &c.adapter);
    char sub[256], path[320];
    snprintf(sub, sizeof sub, "%s/atomic", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", sub);
    kg_trainer *t = kg_trainer_new(f.m, f.tok, f.train, &c);
    assert_non_null(t);
    assert_true(kg_trainer_step(t, NULL));
    assert_true(kg_checkpoint_save(t, path));
    size_t n0;
    unsigned char *good = slurp(path, &n0);
    assert_true(n0 > 4096);
    assert_true(kg_trainer_step(t, NULL)); /* the state now differs from the file */

    if (backend == KG_BACKEND_CPU) { /* a killed writer (a forked Vulkan device is not usable) */
        pid_t pid = fork();
        if (pid == 0) {
            struct rlimit lim = {4096, 4096};
            setrlimit(RLIMIT_FSIZE, &lim);
            signal(SIGXFSZ, SIG_DFL);
            kg_checkpoint_save(t, path);
            _exit(0); /* not reached: the write past 4096 bytes kills the child */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGXFSZ);
    }
    /* A write that fails with an error: reported, and the temporary file removed. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = {4096, old.rlim_max}; /* the soft limit only: it can be raised back */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    bool saved = kg_checkpoint_save(t, path);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_false(saved);
    print_message("failed save: %s\n", kg_error(f.ctx));
    assert_non_null(strstr(kg_error(f.ctx), path));
    kg_clear_error(f.ctx);

    size_t n1;
    unsigned char *after = slurp(path, &n1);
    assert_true(n1 == n0 && memcmp(good, after, n0) == 0);
    free(good);
    free(after);
    assert_true(kg_checkpoint_load(t, path)); /* and it loads */
    assert_int_equal(kg_trainer_steps_done(t), 1);
    kg_trainer_free(t);
    close_fixture(&f);
}

/* A checkpoint of another run is refused, naming the setting; the trainer is unchanged. */
static void test_checkpoint_of_another_run(void **state)
{
    (void)state;
    kg_train_config c = resume_config(KG_OPTIM_ADAMW);
    fixture f;
    open_fixture(&f, "llama", &c.adapter);
    char path[256];
    snprintf(path, sizeof path, "%s/other.safetensors", dir);
    kg_trainer *t = kg_trainer_new(f.m, f.tok, f.train, &c);
    assert_true(kg_trainer_step(t, NULL));
    assert_true(kg_checkpoint_save(t, path));
    kg_trainer_free(t);
    c.lr *= 2;
    t = kg_trainer_new(f.m, f.tok, f.train, &c);
    assert_false(kg_checkpoint_load(t, path));
    print_message("%s\n", kg_error(f.ctx));
    assert_non_null(strstr(kg_error(f.ctx), "lr"));
    assert_non_null(strstr(kg_error(f.ctx), path));
    assert_int_equal(kg_trainer_steps_done(t), 0);
    kg_trainer_free(t);
    kg_clear_error(f.ctx);
    /* Not a checkpoint at all: the task file. */
    t = kg_trainer_new(f.m, f.tok, f.train, &c);
    assert_false(kg_checkpoint_load(t, train_path));
    assert_non_null(strstr(kg_error(f.ctx), train_path));
    kg_trainer_free(t);
    close_fixture(&f);
}

/* ---- Schedules, clipping, accumulation ----------------------------------------------------- */

static void test_schedules(void **state)
{
    (void)state;
    kg_train_config c = kg_train_config_default(KG_ADAPTER_LORA);
    c.lr = 1, c.steps = 10, c.warmup = 2;
    c.schedule = KG_SCHEDULE_LINEAR; /* transformers: lambda(s) with s = step - 1 */
    assert_true(kg_schedule_lr(&c, 1) == 0.0);
    assert_true(fabs(kg_schedule_lr(&c, 2) - 0.5) < 1e-12);
    assert_true(fabs(kg_schedule_lr(&c, 3) - 1.0) < 1e-12);
    assert_true(fabs(kg_schedule_lr(&c, 10) - 1.0 / 8) < 1e-12);
    c.schedule = KG_SCHEDULE_COSINE;
    assert_true(fabs(kg_schedule_lr(&c, 3) - 1.0) < 1e-12);
    assert_true(fabs(kg_schedule_lr(&c, 7) - 0.5) < 1e-12);
    assert_true(fabs(kg_schedule_lr(&c, 10) - 0.5 * (1 + cos(M_PI * 7 / 8))) < 1e-12);
    c.schedule = KG_SCHEDULE_CONSTANT;
    assert_true(kg_schedule_lr(&c, 10) == 1.0);
    c.warmup = 0, c.schedule = KG_SCHEDULE_LINEAR;
    assert_true(kg_schedule_lr(&c, 1) == 1.0);
}

/* Every trainable value, concatenated. */
static float *params_of(const kg_model *m, int64_t *n)
{
    *n = 0;
    for (int i = 0; i < m->n_trainable; i++)
        *n += kg_tensor_numel(m->trainable[i].tensor);
    float *out = malloc(sizeof *out * (size_t)*n);
    int64_t k = 0;
    for (int i = 0; i < m->n_trainable; i++) {
        float *v = kg_tensor_to_f32(m->trainable[i].tensor);
        int64_t len = kg_tensor_numel(m->trainable[i].tensor);
        memcpy(out + k, v, sizeof *v * (size_t)len);
        k += len;
        free(v);
    }
    return out;
}

/* SGD with lr 1 moves the parameters by the clipped gradient: a step of length clip. */
static void test_clipping_by_global_norm(void **state)
{
    (void)state;
    kg_train_config c = small_config(KG_ADAPTER_LORA);
    c.optimizer = KG_OPTIM_SGD, c.momentum = 0, c.lr = 1, c.clip = 1e-3, c.steps = 1;
    c.schedule = KG_SCHEDULE_CONSTANT;
    c.adapter.modules_to_save = "";
    fixture f;
    open_fixture(&f, "llama", &c.adapter);
    int64_t n;
    float *p0 = params_of(f.m, &n);
    kg_trainer *t = kg_trainer_new(f.m, f.tok, f.train, &c);
    kg_step_stats s;
    assert_true(kg_trainer_step(t, &s));
    float *p1 = params_of(f.m, &n);
    double moved = 0;
    for (int64_t i = 0; i < n; i++)
        moved += ((double)p1[i] - p0[i]) * ((double)p1[i] - p0[i]);
    print_message("grad norm %.4g clipped to 1e-3: moved %.6g\n", s.grad_norm, sqrt(moved));
    assert_true(s.grad_norm > 1e-2);
    assert_true(fabs(sqrt(moved) - 1e-3) < 1e-5);
    free(p0);
    free(p1);
    kg_trainer_free(t);
    close_fixture(&f);
}

/* Issue 14: per-factor learning rates against a hand-computed first AdamW step,
 * p1 = p0 - lr·mult[kind]·g/(|g| + eps) (m̂ = g, v̂ = g² at step 1), g the gradient of the mean
 * loss over the whole task (the step's batch); and --log-norms' per-kind norms of g and p1 - p0.
 * B1 starts random so that every factor gets a gradient. */
static void test_lr_multipliers_adamw(void **state)
{
    (void)state;
    kg_train_config c = small_config(KG_ADAPTER_KRONLORA);
    c.adapter.kron_a2 = 2, c.adapter.kron_a1 = 2;
    c.adapter.modules_to_save = "";
    c.steps = 1, c.batch = 64, c.clip = 0, c.lr = 1e-2, c.log_norms = true;
    c.schedule = KG_SCHEDULE_CONSTANT;
    c.loss = KG_MC_LOSS_CHOICES;
    fixture f;
    open_fixture(&f, "llama", &c.adapter);
    kg_model *m = f.m;
    assert_true(kg_factor_lr_parse(f.ctx, "a=3,b1=0.5,b2=2", c.lr_mult));
    assert_false(kg_factor_lr_parse(f.ctx, "b3=1", c.lr_mult));
    assert_int_equal(kg_ctx_status(f.ctx), KG_ERR_ARG);
    assert_non_null(strstr(kg_error(f.ctx), "b3=1"));
    kg_clear_error(f.ctx);
    for (int i = 0; i < m->n_trainable; i++)
        if (kg_factor_kind_of(m->trainable[i].name) == KG_FACTOR_KRON_B1) {
            kg_tensor *p = m->trainable[i].tensor;
            kg_scope sc = kg_scope_begin(f.ctx);
            kg_tensor_assign(p, kg_uniform(f.ctx, 2, SHAPE(kg_tensor_dim(p, 0),
                                                           kg_tensor_dim(p, 1)), -0.3f, 0.3f,
                                           (uint64_t)i));
            kg_scope_end(f.ctx, sc);
        }
    /* g by hand: the mean choices loss over all 64 items. */
    const kg_mc_item *items[64];
    for (int i = 0; i < 64; i++)
        items[i] = &f.train->items[i];
    kg_mc_scorer sc = {.model = m, .tok = f.tok, .kind = f.train->kind};
    kg_model_train(m, true, 0);
    kg_scope scope = kg_scope_begin(f.ctx);
    assert_true(kg_backward(kg_mc_loss_of(&sc, c.loss, items, 64, NULL)));
    int n = m->n_trainable;
    float **p0 = calloc((size_t)n, sizeof *p0), **g = calloc((size_t)n, sizeof *g);
    double gsq[KG_FACTOR_COUNT] = {0}, usq[KG_FACTOR_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        p0[i] = kg_tensor_to_f32(m->trainable[i].tensor);
        g[i] = kg_tensor_to_f32(kg_grad(m->trainable[i].tensor));
        assert_non_null(g[i]);
        kg_zero_grad(m->trainable[i].tensor);
    }
    kg_scope_end(f.ctx, scope);
    kg_trainer *t = kg_trainer_new(m, f.tok, f.train, &c);
    kg_step_stats st;
    assert_true(kg_trainer_step(t, &st));
    int seen[KG_FACTOR_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        kg_factor_kind k = kg_factor_kind_of(m->trainable[i].name);
        double mult = c.lr_mult[k] > 0 ? c.lr_mult[k] : 1.0;
        float *p1 = kg_tensor_to_f32(m->trainable[i].tensor);
        for (int64_t e = 0; e < kg_tensor_numel(m->trainable[i].tensor); e++) {
            double want = p0[i][e] - c.lr * mult * g[i][e] / (fabs(g[i][e]) + c.eps);
            if (fabs(p1[e] - want) > 1e-3 * c.lr * mult + 1e-7)
                fail_msg("%s[%lld] = %.8g after one step; AdamW by hand gives %.8g",
                         m->trainable[i].name, (long long)e, p1[e], want);
            gsq[k] += (double)g[i][e] * g[i][e];
            usq[k] += ((double)p1[e] - p0[i][e]) * ((double)p1[e] - p0[i][e]);
        }
        seen[k]++;
        free(p1);
        free(p0[i]);
        free(g[i]);
    }
    for (int k = 0; k < KG_FACTOR_COUNT; k++) {
        if (!seen[k]) {
            assert_true(isnan(st.grad_norms[k]) && isnan(st.update_norms[k]));
            continue;
        }
        if (fabs(st.grad_norms[k] - sqrt(gsq[k])) > 1e-3 * sqrt(gsq[k]) ||
            fabs(st.update_norms[k] - sqrt(usq[k])) > 1e-4 * sqrt(usq[k]))
            fail_msg("%s: logged |g| %.6g, |update| %.6g; by hand %.6g, %.6g",
                     kg_factor_kind_name(k), st.grad_norms[k], st.update_norms[k], sqrt(gsq[k]),
                     sqrt(usq[k]));
    }
    assert_true(seen[KG_FACTOR_KRON_A] && seen[KG_FACTOR_KRON_B1] && seen[KG_FACTOR_KRON_B2]);
    assert_true(st.delta_rms > 0 && isfinite(st.delta_rms));
    free(p0);
    free(g);
    kg_trainer_free(t);
    close_fixture(&f);
}

/* 2 micro-batches of 4 give the update of one batch of 8 (same items, same mean loss). */
static void test_accumulation_matches_one_batch(void **state)
{
    (void)state;
    float *p[2];
    int64_t n;
    for (int run = 0; run < 2; run++) {
        kg_train_config c = small_config(KG_ADAPTER_LORA);
        c.optimizer = KG_OPTIM_SGD, c.momentum = 0.9, c.lr = 0.5, c.steps = 3;
        c.batch = run ? 8 : 4;
        c.accumulate = run ? 1 : 2;
        c.loss = KG_MC_LOSS_CHOICES;
        fixture f;
        open_fixture(&f, "llama", &c.adapter);
        kg_trainer *t = kg_trainer_new(f.m, f.tok, f.train, &c);
        for (int s = 0; s < 3; s++)
            assert_true(kg_trainer_step(t, NULL));
        p[run] = params_of(f.m, &n);
        kg_trainer_free(t);
        close_fixture(&f);
    }
    assert_close(p[0], p[1], n, 1e-6f, 1e-4f, "accumulated vs one batch");
    free(p[0]);
    free(p[1]);
}

/* ---- Bad settings -------------------------------------------------------------------------- */

static void test_bad_settings(void **state)
{
    (void)state;
    kg_train_config c = small_config(KG_ADAPTER_LORA);
    fixture f;
    open_fixture(&f, "llama", NULL);
    /* nothing attached */
    assert_null(kg_trainer_new(f.m, f.tok, f.train, &c));
    assert_non_null(strstr(kg_error(f.ctx), "attach"));
    kg_clear_error(f.ctx);
    assert_true(kg_model_attach(f.m, &c.adapter));
    c.lr = 0;
    assert_null(kg_trainer_new(f.m, f.tok, f.train, &c));
    assert_non_null(strstr(kg_error(f.ctx), "lr"));
    kg_clear_error(f.ctx);
    c = small_config(KG_ADAPTER_LORA);
    c.warmup = 41;
    assert_null(kg_trainer_new(f.m, f.tok, f.train, &c));
    assert_non_null(strstr(kg_error(f.ctx), "warmup"));
    kg_clear_error(f.ctx);
    /* items without answers cannot be trained on */
    char path[256];
    snprintf(path, sizeof path, "%s/unlabeled.jsonl", dir);
    FILE *u = fopen(path, "w");
    fputs("{\"question\": \"red\", \"choices\": [\"cat\", \"dog\"]}\n", u);
    fclose(u);
    kg_task *task = kg_task_read(f.ctx, "plain", path);
    assert_non_null(task);
    c = small_config(KG_ADAPTER_LORA);
    assert_null(kg_trainer_new(f.m, f.tok, task, &c));
    assert_non_null(strstr(kg_error(f.ctx), path));
    kg_clear_error(f.ctx);
    kg_task_free(task);
    close_fixture(&f);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "vulkan") == 0) {
        backend = KG_BACKEND_VULKAN;
        kg_ctx *probe = kg_ctx_new(backend);
        bool none = !probe || kg_ctx_status(probe);
        kg_ctx_free(probe);
        if (none)
            return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distilbert_kronlora_learns),
        cmocka_unit_test(test_schedules),
        /* CPU only: the same code paths again, and lavapipe takes seconds per tiny step */
        cmocka_unit_test(test_llama_lora_learns),
        cmocka_unit_test(test_resume_is_bit_exact_adamw),
        cmocka_unit_test(test_checkpoint_write_is_atomic),
        cmocka_unit_test(test_llama_kronlora_choices_learns),
        cmocka_unit_test(test_resume_is_bit_exact_sgd_encoder),
        cmocka_unit_test(test_checkpoint_of_another_run),
        cmocka_unit_test(test_clipping_by_global_norm),
        cmocka_unit_test(test_lr_multipliers_adamw),
        cmocka_unit_test(test_accumulation_matches_one_batch),
        cmocka_unit_test(test_bad_settings),
    };
    size_t n = sizeof tests / sizeof tests[0];
    return _cmocka_run_group_tests("test_train", tests, backend == KG_BACKEND_VULKAN ? 2 : n,
                                   setup, teardown);
}
