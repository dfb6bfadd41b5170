/* continual.c — continual (sequential) fine-tuning: one adapter trained on tasks in turn, every
 * task scored before training and after each stage, giving the accuracy matrix and the
 * forgetting (Chaudhry et al. 2018: the best accuracy a task had after an earlier stage minus
 * its accuracy at the end).
 */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void kg_continual_result_free(kg_continual_result *r)
{
    if (!r)
        return;
    free(r->before);
    free(r->acc);
    free(r->task_forgetting);
    *r = (kg_continual_result){0};
}

static bool score(kg_model *m, kg_tokenizer *tok, const kg_task *task, const kg_train_config *cfg,
                  int64_t limit, double *acc)
{
    kg_mc_scorer s = {.model = m, .tok = tok, .kind = task->kind, .max_length = cfg->max_length};
    kg_eval_options eo = {.limit = limit};
    kg_eval_result r;
    bool ok = kg_mc_evaluate(&s, task, &eo, &r);
    *acc = r.acc;
    return ok;
}

bool kg_continual_run(kg_model *m, kg_tokenizer *tok, const kg_task *const *train,
                      const kg_task *const *eval, int n, const kg_train_config *cfg,
                      const kg_run_options *opts, kg_continual_result *out)
{
    if (!m || kg_ctx_status(m->ctx) || !out)
        return false;
    kg_ctx *ctx = m->ctx;
    *out = (kg_continual_result){0};
    if (!train || !eval || n < 1 || !cfg)
        return kg_set_error(ctx, KG_ERR_ARG, "kg_continual_run: expected at least one task with "
                            "its training and evaluation sets");
    const kg_run_options none = {0};
    if (!opts)
        opts = &none;
    out->n = n;
    out->before = calloc((size_t)n, sizeof(double));
    out->acc = calloc((size_t)n * (size_t)n, sizeof(double));
    out->task_forgetting = calloc((size_t)n, sizeof(double));
    bool ok = out->before && out->acc && out->task_forgetting;
    if (!ok)
        kg_set_error(ctx, KG_ERR_NOMEM, "kg_continual_run: out of host memory");
    if (ok && opts->out_dir)
        mkdir(opts->out_dir, 0755); /* each stage's directory goes inside (a failure shows there) */
    for (int j = 0; ok && j < n; j++)
        ok = score(m, tok, eval[j], cfg, opts->eval_limit, &out->before[j]);
    for (int i = 0; ok && i < n; i++) {
        kg_run_options stage = *opts;
        char dir[4096];
        if (opts->out_dir) {
            snprintf(dir, sizeof dir, "%s/stage-%d-%s", opts->out_dir, i + 1, train[i]->name);
            stage.out_dir = dir;
        }
        kg_run_result r;
        ok = kg_train_run(m, tok, train[i], NULL, cfg, &stage, &r);
        free(r.losses);
        for (int j = 0; ok && j < n; j++)
            ok = score(m, tok, eval[j], cfg, opts->eval_limit, &out->acc[i * n + j]);
    }
    if (!ok) {
        kg_continual_result_free(out);
        return false;
    }
    double sum = 0;
    for (int j = 0; j + 1 < n; j++) {
        double best = -INFINITY;
        for (int i = j; i + 1 < n; i++)
            best = fmax(best, out->acc[i * n + j]);
        out->task_forgetting[j] = best - out->acc[(n - 1) * n + j];
        sum += out->task_forgetting[j];
    }
    out->forgetting = n > 1 ? sum / (n - 1) : 0;
    return true;
}
