/* compare.c — the honest trade-off report: adapter configurations × seeds on one model and task,
 * each run from a freshly loaded model; per configuration the trainable parameters, peak
 * memory, step time and accuracy as mean ± std, plus a LoRA whose rank matches the Kron-LoRA's
 * parameter count, and the accuracy of each trained adapter quantized to int8 / int4; written
 * as JSON and as an SVG of accuracy against parameters beside the loss curves (the SVG is plain
 * text, written by hand).
 */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Running ------------------------------------------------------------------------------- */

void kg_compare_result_free(kg_compare_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_rows; i++) {
        kg_compare_row *row = &r->rows[i];
        for (int s = 0; row->losses && s < row->n_seeds; s++)
            free(row->losses[s]);
        free(row->losses);
        for (int s = 0; row->curves && s < row->n_seeds; s++)
            free(row->curves[s]);
        free(row->curves);
        free(row->acc);
        free(row->acc_norm);
        for (int b = 0; b < KG_COMPARE_MAX_BITS; b++)
            free(row->acc_q[b]);
    }
    free(r->rows);
    *r = (kg_compare_result){0};
}

static void label_of(const kg_adapter_config *a, bool matched, char *out, size_t cap)
{
    switch (a->kind) {
    case KG_ADAPTER_KRONLORA:
        snprintf(out, cap, "kronlora r%lld A%lldx%lld", (long long)a->rank,
                 (long long)a->kron_a2, (long long)a->kron_a1);
        break;
    case KG_ADAPTER_LORA:
    case KG_ADAPTER_LOKR:
        snprintf(out, cap, "%s r%lld%s", kg_adapter_kind_name(a->kind), (long long)a->rank,
                 matched ? " (matched)" : "");
        break;
    default:
        snprintf(out, cap, "%s", kg_adapter_kind_name(a->kind));
    }
}

/* A fresh model for one run: loaded, given a multiple-choice head when an encoder lacks one. */
static kg_model *fresh_model(kg_ctx *ctx, const char *path, uint64_t seed)
{
    kg_model *m = kg_model_load(ctx, path);
    bool decoder = m && (m->cfg.arch == KG_ARCH_MISTRAL || m->cfg.arch == KG_ARCH_LLAMA);
    if (m && !decoder && m->cfg.head == KG_HEAD_NONE &&
        !kg_model_add_head(m, KG_HEAD_MULTIPLE_CHOICE, 1, seed)) {
        kg_model_free(m);
        return NULL;
    }
    return m;
}

/* The LoRA rank whose count is closest to target (counts are linear in the rank). */
static int64_t matched_rank(kg_ctx *ctx, const kg_model_config *mc, kg_adapter_config lora,
                            int64_t target)
{
    lora.rank = 1;
    int64_t c1 = kg_adapter_count(ctx, mc, &lora);
    lora.rank = 2;
    int64_t c2 = kg_adapter_count(ctx, mc, &lora);
    if (c1 < 0 || c2 <= c1)
        return -1;
    int64_t per_rank = c2 - c1, fixed = c1 - per_rank;
    int64_t r = (int64_t)llround((double)(target - fixed) / (double)per_rank);
    return r < 1 ? 1 : r;
}

typedef struct progress_relay {
    kg_compare_progress_fn fn;
    void *user;
    const char *label;
    uint64_t seed;
} progress_relay;

static void relay(void *user, const kg_step_stats *s, int64_t total)
{
    progress_relay *p = user;
    p->fn(p->user, p->label, p->seed, s, total);
}

static void mean_std(const double *v, int n, double *mean, double *std)
{
    double m = 0, q = 0;
    for (int i = 0; i < n; i++)
        m += v[i];
    m /= n;
    for (int i = 0; i < n; i++)
        q += (v[i] - m) * (v[i] - m);
    *mean = m;
    *std = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* The trained adapter scored with its factors in each of bits (acc[b]), each time quantized
 * from the f32 factors, which are put back afterwards. */
static bool score_quantized(kg_model *m, kg_tokenizer *tok, const kg_task *eval,
                            const kg_train_config *cfg, int64_t eval_limit, const int *bits,
                            int n_bits, double *acc)
{
    if (n_bits == 0)
        return true;
    kg_ctx *ctx = m->ctx;
    float **keep = calloc((size_t)m->n_trainable + 1, sizeof *keep);
    bool ok = keep || kg_set_error(ctx, KG_ERR_NOMEM, "kg_compare_run: out of host memory");
    for (int i = 0; ok && i < m->n_trainable; i++)
        ok = (keep[i] = kg_tensor_to_f32(m->trainable[i].tensor)) != NULL;
    for (int b = 0; ok && b < n_bits; b++) {
        kg_mc_scorer s = {.model = m, .tok = tok, .kind = eval->kind,
                          .max_length = cfg->max_length};
        kg_eval_options eo = {.limit = eval_limit};
        kg_eval_result r = {0};
        ok = kg_model_quantize_adapter(m, bits[b]) && kg_mc_evaluate(&s, eval, &eo, &r);
        acc[b] = r.acc;
        kg_scope scope = kg_scope_begin(ctx);
        for (int i = 0; ok && i < m->n_trainable; i++) {
            kg_tensor *t = m->trainable[i].tensor;
            int64_t shape[KG_MAX_DIMS];
            for (int d = 0; d < kg_tensor_ndim(t); d++)
                shape[d] = kg_tensor_dim(t, d);
            kg_tensor *v = kg_from_host(ctx, KG_DTYPE_F32, kg_tensor_ndim(t), shape, keep[i]);
            ok = v && kg_tensor_assign(t, v);
        }
        kg_scope_end(ctx, scope);
    }
    for (int i = 0; keep && i < m->n_trainable; i++)
        free(keep[i]);
    free(keep);
    return ok;
}

/* The curves' mean over seeds at point k. */
static void curve_mean_std(const kg_compare_row *row, int64_t k, double *mean, double *std)
{
    double v[128];
    int n = row->n_seeds < 128 ? row->n_seeds : 128;
    for (int s = 0; s < n; s++)
        v[s] = row->curves[s][k].acc;
    mean_std(v, n, mean, std);
}

static bool run_row(kg_ctx *ctx, const char *path, kg_tokenizer *tok, const kg_task *train,
                    const kg_task *eval, const kg_train_config *base, int n_seeds,
                    int64_t eval_limit, int64_t eval_every, const int *bits, int n_bits,
                    progress_relay *pr, kg_compare_row *row)
{
    double *step_s = calloc((size_t)n_seeds, sizeof *step_s);
    double *peak = calloc((size_t)n_seeds, sizeof *peak);
    row->acc = calloc((size_t)n_seeds, sizeof *row->acc);
    row->acc_norm = calloc((size_t)n_seeds, sizeof *row->acc_norm);
    row->losses = calloc((size_t)n_seeds, sizeof *row->losses);
    row->curves = eval_every > 0 ? calloc((size_t)n_seeds, sizeof *row->curves) : NULL;
    bool ok = step_s && peak && row->acc && row->acc_norm && row->losses &&
              (eval_every <= 0 || row->curves);
    for (int b = 0; b < n_bits; b++)
        ok = (row->acc_q[b] = calloc((size_t)n_seeds, sizeof *row->acc_q[b])) && ok;
    if (!ok)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_compare_run: out of host memory");
    row->lr = base->lr > 0 ? base->lr : kg_train_config_default(row->adapter.kind).lr;
    for (int s = 0; ok && s < n_seeds; s++) {
        kg_train_config cfg = *base;
        cfg.adapter = row->adapter;
        cfg.lr = row->lr;
        cfg.seed = base->seed + (uint64_t)s;
        cfg.adapter.seed = cfg.seed;
        kg_model *m = fresh_model(ctx, path, cfg.seed);
        ok = m && kg_model_attach(m, &cfg.adapter);
        kg_run_result r = {0};
        kg_run_options o = {.eval_limit = eval_limit, .eval_every = eval_every};
        if (pr->fn) {
            pr->label = row->label;
            pr->seed = cfg.seed;
            o.progress = relay;
            o.user = pr;
        }
        ok = ok && kg_train_run(m, tok, train, eval, &cfg, &o, &r);
        double acc_q[KG_COMPARE_MAX_BITS];
        ok = ok && score_quantized(m, tok, eval, &cfg, eval_limit, bits, n_bits, acc_q);
        if (ok) {
            for (int b = 0; b < n_bits; b++)
                row->acc_q[b][s] = acc_q[b];
            row->trainable = r.trainable;
            row->acc[s] = r.eval.acc;
            row->acc_norm[s] = r.eval.acc_norm;
            row->losses[s] = r.losses;
            r.losses = NULL;
            if (row->curves) {
                row->curves[s] = r.curve;
                row->n_curve = r.n_curve;
                r.curve = NULL;
            }
            step_s[s] = r.mean_step_seconds;
            peak[s] = (double)r.peak_bytes / (1024.0 * 1024.0);
            row->n_seeds = s + 1;
        }
        free(r.losses);
        free(r.curve);
        kg_model_free(m);
    }
    if (ok) {
        double unused;
        mean_std(row->acc, n_seeds, &row->acc_mean, &row->acc_std);
        mean_std(row->acc_norm, n_seeds, &row->acc_norm_mean, &row->acc_norm_std);
        for (int b = 0; b < n_bits; b++)
            mean_std(row->acc_q[b], n_seeds, &row->acc_q_mean[b], &row->acc_q_std[b]);
        mean_std(step_s, n_seeds, &row->step_seconds_mean, &row->step_seconds_std);
        mean_std(peak, n_seeds, &row->peak_mb_mean, &unused);
    }
    free(step_s);
    free(peak);
    return ok;
}

/* Each row's first curve step whose mean over seeds reaches the target: the one given, or
 * halfway from the accuracy before training to the best final mean. */
static void steps_to_target(kg_compare_result *r, double target)
{
    if (!(target > 0)) {
        double best = r->base_acc;
        for (int i = 0; i < r->n_rows; i++)
            best = fmax(best, r->rows[i].acc_mean);
        target = r->base_acc + 0.5 * (best - r->base_acc);
    }
    r->target_acc = target;
    for (int i = 0; i < r->n_rows; i++) {
        kg_compare_row *w = &r->rows[i];
        w->steps_to_target = -1;
        for (int64_t k = 0; k < w->n_curve && w->steps_to_target < 0; k++) {
            double mean, std;
            curve_mean_std(w, k, &mean, &std);
            if (mean >= target - 1e-12)
                w->steps_to_target = w->curves[0][k].step;
        }
    }
}

bool kg_compare_run(kg_ctx *ctx, const char *model_path, const kg_task *train,
                    const kg_task *eval, const kg_train_config *cfg,
                    const kg_adapter_config *configs, int n_configs, int n_seeds,
                    bool add_matched, int64_t eval_limit, const int *adapter_bits, int n_bits,
                    const kg_compare_curves *curves, kg_compare_progress_fn progress,
                    void *user, kg_compare_result *out)
{
    if (!ctx || kg_ctx_status(ctx) || !out)
        return false;
    *out = (kg_compare_result){0};
    if (!model_path || !train || !eval || !cfg || !configs || n_configs < 1 || n_seeds < 1)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_compare_run: expected a model, a task, at least "
                            "one configuration and one seed");
    if (n_bits < 0 || n_bits > KG_COMPARE_MAX_BITS || (n_bits && !adapter_bits))
        return kg_set_error(ctx, KG_ERR_ARG, "kg_compare_run: %d adapter bit widths; expected 0 "
                            "to %d", n_bits, KG_COMPARE_MAX_BITS);
    for (int b = 0; b < n_bits; b++) {
        if (adapter_bits[b] != 8 && adapter_bits[b] != 4)
            return kg_set_error(ctx, KG_ERR_ARG, "kg_compare_run: adapter_bits[%d] is %d; "
                                "expected 8 or 4", b, adapter_bits[b]);
        out->bits[out->n_bits++] = adapter_bits[b];
    }
    out->rows = calloc((size_t)n_configs + 1, sizeof *out->rows);
    if (!out->rows)
        return kg_set_error(ctx, KG_ERR_NOMEM, "kg_compare_run: out of host memory");
    out->steps = cfg->steps;
    out->eval_every = curves && curves->every > 0 ? curves->every : 0;
    out->target_acc = NAN;
    kg_tokenizer *tok = kg_tokenizer_load(ctx, model_path);
    /* The model before training, and what the parameter counts need. */
    kg_model *m = tok ? fresh_model(ctx, model_path, cfg->seed) : NULL;
    bool ok = m != NULL;
    if (ok) {
        kg_mc_scorer s = {.model = m, .tok = tok, .kind = eval->kind,
                          .max_length = cfg->max_length};
        kg_eval_options eo = {.limit = eval_limit};
        kg_eval_result r;
        ok = kg_mc_evaluate(&s, eval, &eo, &r);
        out->base_acc = r.acc;
    }
    int first_kron = -1;
    for (int i = 0; ok && i < n_configs; i++) {
        kg_compare_row *row = &out->rows[out->n_rows++];
        row->adapter = configs[i];
        row->adapter.targets = cfg->adapter.targets;
        row->adapter.modules_to_save = cfg->adapter.modules_to_save;
        label_of(&row->adapter, false, row->label, sizeof row->label);
        if (configs[i].kind == KG_ADAPTER_KRONLORA && first_kron < 0)
            first_kron = i;
        ok = kg_adapter_validate(ctx, &m->cfg, &row->adapter);
    }
    if (ok && add_matched && first_kron >= 0) {
        kg_compare_row *row = &out->rows[out->n_rows];
        row->adapter = out->rows[first_kron].adapter;
        row->adapter.kind = KG_ADAPTER_LORA;
        int64_t target = kg_adapter_count(ctx, &m->cfg, &out->rows[first_kron].adapter);
        row->adapter.rank = matched_rank(ctx, &m->cfg, row->adapter, target);
        /* LoRA keeps the scale alpha / R of the Kron-LoRA it is matched to. */
        row->adapter.alpha = out->rows[first_kron].adapter.alpha /
                             (double)out->rows[first_kron].adapter.rank * (double)row->adapter.rank;
        row->matched = true;
        label_of(&row->adapter, true, row->label, sizeof row->label);
        ok = row->adapter.rank > 0 || kg_set_error(ctx, KG_ERR_ARG, "kg_compare_run: no LoRA "
                                                   "rank matches the Kron-LoRA's count");
        out->n_rows += ok;
    }
    kg_model_free(m);
    progress_relay pr = {.fn = progress, .user = user};
    for (int i = 0; ok && i < out->n_rows; i++)
        ok = run_row(ctx, model_path, tok, train, eval, cfg, n_seeds, eval_limit, out->eval_every,
                     out->bits, out->n_bits, &pr, &out->rows[i]);
    kg_tokenizer_free(tok);
    if (ok && out->eval_every)
        steps_to_target(out, curves->target_acc);
    if (!ok)
        kg_compare_result_free(out);
    return ok;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* ', "key": [v0, v1, ...]' */
static void json_list(FILE *f, const char *key, const double *v, int n)
{
    fprintf(f, ", \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        fputs(i ? ", " : "", f);
        kg__json_number(f, v[i]);
    }
    fputs("]", f);
}

bool kg_compare_write_json(kg_ctx *ctx, const kg_compare_result *r, const char *path)
{
    char *tmp;
    FILE *f = kg__atomic_open(ctx, path, &tmp);
    if (!f)
        return false;
    fprintf(f, "{\n  \"steps\": %lld,\n  \"eval_every\": %lld,\n  \"target_acc\": ",
            (long long)r->steps, (long long)r->eval_every);
    kg__json_number(f, r->target_acc);
    fputs(",\n  \"base_acc\": ", f);
    kg__json_number(f, r->base_acc);
    fputs(",\n  \"rows\": [", f);
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        fprintf(f, "%s\n    {\"label\": ", i ? "," : "");
        kg__json_string(f, w->label);
        fputs(", \"adapter\": ", f);
        kg__json_string(f, kg_adapter_kind_name(w->adapter.kind));
        fprintf(f, ", \"rank\": %lld, \"alpha\": ", (long long)w->adapter.rank);
        kg__json_number(f, w->adapter.alpha);
        fputs(", \"lr\": ", f);
        kg__json_number(f, w->lr);
        fprintf(f, ", \"kron_a\": \"%lldx%lld\", \"matched\": %s, \"trainable\": %lld, "
                   "\"seeds\": %d, \"acc_mean\": ", (long long)w->adapter.kron_a2,
                (long long)w->adapter.kron_a1, w->matched ? "true" : "false",
                (long long)w->trainable, w->n_seeds);
        kg__json_number(f, w->acc_mean);
        fputs(", \"acc_std\": ", f);
        kg__json_number(f, w->acc_std);
        json_list(f, "acc", w->acc, w->n_seeds);
        fputs(", \"acc_norm_mean\": ", f);
        kg__json_number(f, w->acc_norm_mean);
        fputs(", \"acc_norm_std\": ", f);
        kg__json_number(f, w->acc_norm_std);
        json_list(f, "acc_norm", w->acc_norm, w->n_seeds);
        if (r->eval_every && w->n_curve > 0) {
            fprintf(f, ", \"steps_to_target\": %lld, \"curve\": [", (long long)w->steps_to_target);
            for (int64_t k = 0; k < w->n_curve; k++) {
                double mean, std;
                curve_mean_std(w, k, &mean, &std);
                fprintf(f, "%s{\"step\": %lld, \"acc_mean\": ", k ? ", " : "",
                        (long long)w->curves[0][k].step);
                kg__json_number(f, mean);
                fputs(", \"acc_std\": ", f);
                kg__json_number(f, std);
                fputs("}", f);
            }
            fputs("]", f);
        }
        for (int b = 0; b < r->n_bits; b++) { /* "acc_int8_mean", "acc_int8_std", "acc_int8" */
            fprintf(f, ", \"acc_int%d_mean\": ", r->bits[b]);
            kg__json_number(f, w->acc_q_mean[b]);
            fprintf(f, ", \"acc_int%d_std\": ", r->bits[b]);
            kg__json_number(f, w->acc_q_std[b]);
            char key[16];
            snprintf(key, sizeof key, "acc_int%d", r->bits[b]);
            json_list(f, key, w->acc_q[b], w->n_seeds);
        }
        fputs(", \"step_seconds_mean\": ", f);
        kg__json_number(f, w->step_seconds_mean);
        fputs(", \"step_seconds_std\": ", f);
        kg__json_number(f, w->step_seconds_std);
        fputs(", \"peak_mb\": ", f);
        kg__json_number(f, w->peak_mb_mean);
        fputs("}", f);
    }
    fputs("\n  ]\n}\n", f);
    return kg__atomic_close(ctx, f, tmp, path, true);
}

/* ---- SVG ----------------------------------------------------------------------------------- */

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_COLORS (int)(sizeof palette / sizeof palette[0])

/* A plot area: data (x0..x1, y0..y1) onto the pixel box (px, py, pw, ph), y upwards. */
typedef struct plot {
    double px, py, pw, ph, x0, x1, y0, y1;
} plot;

static double X(const plot *p, double x) { return p->px + (x - p->x0) / (p->x1 - p->x0) * p->pw; }
static double Y(const plot *p, double y)
{
    return p->py + p->ph - (y - p->y0) / (p->y1 - p->y0) * p->ph;
}

static void axes(FILE *f, const plot *p, const char *title, const char *xlabel,
                 const char *ylabel)
{
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n",
            p->px, p->py, p->pw, p->ph);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-weight='bold'>%s</text>\n",
            p->px + p->pw / 2, p->py - 10, title);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%s</text>\n", p->px + p->pw / 2,
            p->py + p->ph + 38, xlabel);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' transform='rotate(-90 %.1f "
               "%.1f)'>%s</text>\n", p->px - 45, p->py + p->ph / 2, p->px - 45,
            p->py + p->ph / 2, ylabel);
    for (int i = 0; i <= 4; i++) { /* y ticks */
        double v = p->y0 + (p->y1 - p->y0) * i / 4;
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end' font-size='11'>%.3g</text>\n",
                p->px - 5, Y(p, v) + 4, v);
    }
}

/* Below the others: held-out accuracy against step, each row's mean over seeds as a line in
 * a band of ± one std, and the steps-to-accuracy target as a dashed line. */
static void curve_panel(FILE *f, const kg_compare_result *r)
{
    double amin = 1, amax = 0;
    int64_t last = 1;
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        for (int64_t k = 0; k < w->n_curve; k++) {
            double mean, std;
            curve_mean_std(w, k, &mean, &std);
            amin = fmin(amin, mean - std), amax = fmax(amax, mean + std);
            last = w->curves[0][k].step > last ? w->curves[0][k].step : last;
        }
    }
    plot c = {.px = 80, .py = 500, .pw = 780, .ph = 330, .x0 = 0, .x1 = (double)last,
              .y0 = fmax(0, amin - 0.02), .y1 = fmin(1, amax + 0.02)};
    if (c.y1 <= c.y0)
        c.y0 = 0, c.y1 = 1;
    axes(f, &c, "held-out accuracy during training", "step",
         "accuracy (mean ± std over seeds)");
    for (int i = 0; i <= 4; i++) /* x ticks */
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='11'>%.0f</text>\n",
                X(&c, last * i / 4.0), c.py + c.ph + 16, last * i / 4.0);
    if (isfinite(r->target_acc) && r->target_acc >= c.y0 && r->target_acc <= c.y1)
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#999' "
                   "stroke-dasharray='4 3'/><text x='%.1f' y='%.1f' font-size='11' "
                   "fill='#666'>steps-to-accuracy target %.3f</text>\n", c.px, c.px + c.pw,
                Y(&c, r->target_acc), Y(&c, r->target_acc), c.px + 4, Y(&c, r->target_acc) - 4,
                r->target_acc);
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        const char *col = palette[i % N_COLORS];
        /* The band: up along mean + std, back along mean − std. */
        fprintf(f, "<polygon class='band' fill='%s' fill-opacity='0.15' stroke='none' points='",
                col);
        for (int64_t k = 0; k < 2 * w->n_curve; k++) {
            int64_t j = k < w->n_curve ? k : 2 * w->n_curve - 1 - k;
            double mean, std;
            curve_mean_std(w, j, &mean, &std);
            fprintf(f, "%.1f,%.1f ", X(&c, (double)w->curves[0][j].step),
                    Y(&c, k < w->n_curve ? mean + std : mean - std));
        }
        fprintf(f, "'/>\n<polyline class='curve' fill='none' stroke='%s' stroke-width='2' "
                   "points='", col);
        for (int64_t k = 0; k < w->n_curve; k++) {
            double mean, std;
            curve_mean_std(w, k, &mean, &std);
            fprintf(f, "%.1f,%.1f ", X(&c, (double)w->curves[0][k].step), Y(&c, mean));
        }
        fputs("'/>\n", f);
    }
}

bool kg_compare_write_svg(kg_ctx *ctx, const kg_compare_result *r, const char *path)
{
    char *tmp;
    FILE *f = kg__atomic_open(ctx, path, &tmp);
    if (!f)
        return false;
    bool curves = r->eval_every > 0;
    const double W = 1040, H = curves ? 900 : 460;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' "
               "font-family='sans-serif' font-size='13'>\n<rect width='100%%' height='100%%' "
               "fill='white'/>\n", W, H);
    /* Left: accuracy (mean ± std) against trainable parameters, log scale. */
    double lo = INFINITY, hi = -INFINITY, amin = 1, amax = 0;
    for (int i = 0; i < r->n_rows; i++) {
        double p = log10(fmax(1.0, (double)r->rows[i].trainable));
        lo = fmin(lo, p), hi = fmax(hi, p);
        amin = fmin(amin, r->rows[i].acc_mean - r->rows[i].acc_std);
        amax = fmax(amax, r->rows[i].acc_mean + r->rows[i].acc_std);
    }
    if (isfinite(r->base_acc))
        amin = fmin(amin, r->base_acc), amax = fmax(amax, r->base_acc);
    plot a = {.px = 80, .py = 40, .pw = 360, .ph = 330, .x0 = floor(lo - 0.25),
              .x1 = ceil(hi + 0.25), .y0 = fmax(0, amin - 0.05), .y1 = fmin(1, amax + 0.05)};
    if (a.y1 <= a.y0)
        a.y0 = 0, a.y1 = 1;
    axes(f, &a, "accuracy vs trainable parameters", "trainable parameters (log scale)",
         "accuracy (mean ± std over seeds)");
    for (double e = a.x0; e <= a.x1 + 1e-9; e += 1)
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='11'>1e%g</text>\n",
                X(&a, e), a.py + a.ph + 16, e);
    if (isfinite(r->base_acc))
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#999' "
                   "stroke-dasharray='4 3'/><text x='%.1f' y='%.1f' font-size='11' "
                   "fill='#666'>before training</text>\n", a.px, a.px + a.pw, Y(&a, r->base_acc),
                Y(&a, r->base_acc), a.px + 4, Y(&a, r->base_acc) - 4);
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        double x = X(&a, log10(fmax(1.0, (double)w->trainable))), y = Y(&a, w->acc_mean);
        const char *c = palette[i % N_COLORS];
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' "
                   "stroke-width='2'/>\n", x, x, Y(&a, w->acc_mean - w->acc_std),
                Y(&a, w->acc_mean + w->acc_std), c);
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='5' fill='%s'/>\n", x, y, c);
    }
    /* Right: loss curves, the mean over seeds per configuration. */
    double lmax = 0;
    for (int i = 0; i < r->n_rows; i++)
        for (int s = 0; s < r->rows[i].n_seeds; s++)
            for (int64_t k = 0; k < r->steps; k++)
                if (isfinite(r->rows[i].losses[s][k]))
                    lmax = fmax(lmax, r->rows[i].losses[s][k]);
    plot l = {.px = 560, .py = 40, .pw = 300, .ph = 330, .x0 = 1,
              .x1 = r->steps > 1 ? (double)r->steps : 2, .y0 = 0, .y1 = lmax > 0 ? lmax : 1};
    axes(f, &l, "training loss", "step", "loss (mean over seeds)");
    for (int i = 0; i < r->n_rows; i++) {
        const kg_compare_row *w = &r->rows[i];
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='",
                palette[i % N_COLORS]);
        for (int64_t k = 0; k < r->steps; k++) {
            double v = 0;
            for (int s = 0; s < w->n_seeds; s++)
                v += w->losses[s][k];
            fprintf(f, "%.1f,%.1f ", X(&l, (double)(k + 1)), Y(&l, v / w->n_seeds));
        }
        fputs("'/>\n", f);
        /* The legend, beside the curves. */
        fprintf(f, "<rect x='875' y='%d' width='12' height='12' fill='%s'/><text x='892' "
                   "y='%d' font-size='12'>", 50 + 22 * i, palette[i % N_COLORS], 61 + 22 * i);
        for (const char *c = w->label; *c; c++) /* labels hold no markup but be safe */
            fputs(*c == '<' ? "&lt;" : *c == '&' ? "&amp;" : (char[2]){*c, 0}, f);
        fprintf(f, "</text>\n");
    }
    if (curves)
        curve_panel(f, r);
    fputs("</svg>\n", f);
    return kg__atomic_close(ctx, f, tmp, path, true);
}
