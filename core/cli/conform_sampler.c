/* Conformance of the flow-matching samplers (sampler_unipc / sampler_dpmpp):
 * for every case listed in config.json, the schedule (timesteps exact,
 * sigmas bit-exact), the stepper fed the stored model outputs, and the whole
 * loop with the toy model run here. */
#include <math.h>
#include <stdio.h>

#include "conform.h"
#include "pipeline/sampler.h"

/* The toy model of the vectors: out = 0.5 x + c, c = float32(0.1 sin(t/100))
 * with sin in double. */
static void toy(const float *x, int64_t n, int64_t t, float *out)
{
    float c = (float)(0.1 * sin((double)t / 100.0));
    for (int64_t k = 0; k < n; k++)
        out[k] = 0.5f * x[k] + c;
}

static int run_case(conform_ctx *c, vd_sampler_kind kind, const char *tag, int steps,
                    double shift, const float *x_t, int64_t n)
{
    char name[160];
    int ret = 0;
    vd_sampler *s = vd_sampler_new(kind, steps, shift, n);
    float *samples = vd_malloc(sizeof(float) * (size_t)n * (size_t)(steps + 1));
    float *outs = vd_malloc(sizeof(float) * (size_t)n * (size_t)steps);
    int64_t *ts = malloc(sizeof(int64_t) * (size_t)steps);
    float *sig = malloc(sizeof(float) * (size_t)(steps + 1));
    float *mo = NULL;
    if (!s || !samples || !outs || !ts || !sig) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "%s: out of memory", tag);
        goto done;
    }
    for (int i = 0; i < steps; i++)
        ts[i] = vd_sampler_timestep(s, i);
    for (int i = 0; i <= steps; i++)
        sig[i] = vd_sampler_sigma(s, i);
    snprintf(name, sizeof(name), "%s/timesteps", tag);
    conform_check_i64(c, name, ts, (size_t)steps);
    /* Bit-exact: any difference fails. */
    snprintf(name, sizeof(name), "%s/sigmas", tag);
    conform_check(c, name, sig, (size_t)(steps + 1), 1e-300, 1e-300);

    /* The stepper alone, fed the reference's model outputs. */
    snprintf(name, sizeof(name), "%s/model_outputs", tag);
    const vt_tensor *mt;
    mo = conform_input(c, name, &mt);
    if (!mo)
        goto done;
    if (vt_nelem(mt) != n * steps) {
        conform_fail(c, name, "size does not match steps x sample");
        goto done;
    }
    printf("## %s: stepper fed the stored model outputs\n", tag);
    memcpy(samples, x_t, sizeof(float) * (size_t)n);
    for (int i = 0; i < steps; i++) {
        float *x = samples + (size_t)n * (size_t)(i + 1);
        memcpy(x, x - n, sizeof(float) * (size_t)n);
        vd_sampler_step(s, i, mo + (size_t)n * (size_t)i, x);
    }
    snprintf(name, sizeof(name), "%s/samples", tag);
    conform_check(c, name, samples, (size_t)n * (size_t)(steps + 1), 0, 0);

    /* The toy loop run here: model outputs and samples both follow. */
    printf("## %s: toy model loop\n", tag);
    vd_sampler_reset(s, 0);
    memcpy(samples, x_t, sizeof(float) * (size_t)n);
    for (int i = 0; i < steps; i++) {
        float *x = samples + (size_t)n * (size_t)(i + 1);
        float *o = outs + (size_t)n * (size_t)i;
        memcpy(x, x - n, sizeof(float) * (size_t)n);
        toy(x, n, vd_sampler_timestep(s, i), o);
        vd_sampler_step(s, i, o, x);
    }
    snprintf(name, sizeof(name), "%s/model_outputs", tag);
    conform_check(c, name, outs, (size_t)n * (size_t)steps, 0, 0);
    snprintf(name, sizeof(name), "%s/samples", tag);
    conform_check(c, name, samples, (size_t)n * (size_t)(steps + 1), 0, 0);
done:
    vd_free(mo);
    vd_sampler_free(&s);
    vd_free(samples);
    vd_free(outs);
    free(ts);
    free(sig);
    return ret;
}

int conform_sampler(conform_ctx *c)
{
    const char *ref = vj_str(vj_get(c->cfg, "reference"), "");
    vd_sampler_kind kind;
    if (strstr(ref, "UniPC"))
        kind = VD_SAMPLER_UNIPC;
    else if (strstr(ref, "DPMSolver"))
        kind = VD_SAMPLER_DPMPP;
    else
        return vd_err(&c->log, VDIT_ERR_UNSUPPORTED, "config.json: unknown solver '%s'", ref);
    const vj_val *cases = vj_get(c->cfg, "cases");
    if (!cases || cases->type != VJ_ARR || !cases->len)
        return vd_err(&c->log, VDIT_ERR_FORMAT, "config.json: no \"cases\" array");
    const vt_tensor *xt;
    float *x_t = conform_input(c, "x_T", &xt);
    if (!x_t)
        return 0;
    int64_t n = vt_nelem(xt);
    int ret = 0;
    for (size_t k = 0; k < cases->len && !ret; k++) {
        const vj_val *cs = &cases->kids[k];
        const char *tag = vj_str(vj_get(cs, "tag"), NULL);
        int64_t steps = vj_int(vj_get(cs, "steps"), -1);
        double shift = vj_num(vj_get(cs, "shift"), -1);
        if (!tag || steps < 1 || steps > 100000 || !(shift > 0)) {
            ret = vd_err(&c->log, VDIT_ERR_FORMAT,
                         "config.json: case %zu needs a tag, steps >= 1 and shift > 0", k);
            break;
        }
        ret = run_case(c, kind, tag, (int)steps, shift, x_t, n);
    }
    vd_free(x_t);
    return ret;
}

/* ---- few-step samplers (sampler_fewstep) ---------------------------------
 * Each case: the schedule (the timesteps the model receives and the levels,
 * within an ulp or two of torch's float32 table: sampler.c), the stepper
 * fed the stored model outputs and fresh noise, and the toy loop run here
 * with the stored noise injected (C cannot draw torch's). */
static int run_fewstep_case(conform_ctx *c, const vj_val *cs)
{
    const char *tag = vj_str(vj_get(cs, "tag"), NULL);
    const vj_val *tl = vj_get(cs, "timesteps");
    double shift = vj_num(vj_get(cs, "shift"), -1);
    int warp = vj_bool(vj_get(cs, "warp"), -1);
    int list[1000], n_list = tl && tl->type == VJ_ARR ? (int)tl->len : 0;
    if (!tag || n_list < 1 || n_list > 1000 || !(shift > 0) || warp < 0)
        return vd_err(&c->log, VDIT_ERR_FORMAT,
                      "config.json: a case needs a tag, timesteps, shift > 0 and warp");
    for (int i = 0; i < n_list; i++)
        list[i] = (int)vj_int(&tl->kids[i], -1);
    char name[160];
    const vt_tensor *xt, *nt, *mt;
    snprintf(name, sizeof(name), "%s/x_T", tag);
    float *x_t = conform_input(c, name, &xt);
    snprintf(name, sizeof(name), "%s/noise", tag);
    float *eps = conform_input(c, name, &nt);
    snprintf(name, sizeof(name), "%s/model_outputs", tag);
    float *mo = conform_input(c, name, &mt);
    int64_t n = x_t ? vt_nelem(xt) : 0;
    vd_sampler *s = vd_sampler_new_list(list, n_list, warp, shift, n > 0 ? n : 1);
    float *samples = vd_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * (size_t)(n_list + 1));
    float *outs = vd_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * (size_t)n_list);
    float tf[1000], sig[1001];
    int ret = 0;
    if (!x_t || !eps || !mo)
        goto done;
    if (!s || !samples || !outs) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "%s: out of memory or a bad list", tag);
        goto done;
    }
    if (vt_nelem(nt) != n * (n_list - 1) || vt_nelem(mt) != n * n_list) {
        conform_fail(c, tag, "noise or model_outputs do not match the steps x sample");
        goto done;
    }
    for (int i = 0; i < n_list; i++)
        tf[i] = vd_sampler_model_t(s, i);
    for (int i = 0; i <= n_list; i++)
        sig[i] = vd_sampler_sigma(s, i);
    snprintf(name, sizeof(name), "%s/timesteps", tag);
    conform_check(c, name, tf, (size_t)n_list, 1e-3, 1e-6);
    snprintf(name, sizeof(name), "%s/sigmas", tag);
    conform_check(c, name, sig, (size_t)(n_list + 1), 1e-6, 1e-6);

    printf("## %s: stepper fed the stored model outputs and noise\n", tag);
    memcpy(samples, x_t, sizeof(float) * (size_t)n);
    for (int i = 0; i < n_list; i++) {
        float *x = samples + (size_t)n * (size_t)(i + 1);
        memcpy(x, x - n, sizeof(float) * (size_t)n);
        const float *e = i < n_list - 1 ? eps + (size_t)n * (size_t)i : NULL;
        if ((ret = vd_sampler_step_noise(s, i, mo + (size_t)n * (size_t)i, e, x)))
            goto done;
    }
    snprintf(name, sizeof(name), "%s/samples", tag);
    conform_check(c, name, samples, (size_t)n * (size_t)(n_list + 1), 0, 0);

    printf("## %s: toy model loop\n", tag);
    vd_sampler_reset(s, 0);
    memcpy(samples, x_t, sizeof(float) * (size_t)n);
    for (int i = 0; i < n_list; i++) {
        float *x = samples + (size_t)n * (size_t)(i + 1);
        float *o = outs + (size_t)n * (size_t)i;
        memcpy(x, x - n, sizeof(float) * (size_t)n);
        /* the toy of the UniPC / DPM++ vectors, on the float timestep */
        float cst = (float)(0.1 * sin((double)vd_sampler_model_t(s, i) / 100.0));
        for (int64_t k = 0; k < n; k++)
            o[k] = 0.5f * x[k] + cst;
        const float *e = i < n_list - 1 ? eps + (size_t)n * (size_t)i : NULL;
        if ((ret = vd_sampler_step_noise(s, i, o, e, x)))
            goto done;
    }
    snprintf(name, sizeof(name), "%s/model_outputs", tag);
    conform_check(c, name, outs, (size_t)n * (size_t)n_list, 0, 0);
    snprintf(name, sizeof(name), "%s/samples", tag);
    conform_check(c, name, samples, (size_t)n * (size_t)(n_list + 1), 0, 0);
done:
    vd_free(x_t);
    vd_free(eps);
    vd_free(mo);
    vd_free(samples);
    vd_free(outs);
    vd_sampler_free(&s);
    return ret;
}

int conform_fewstep(conform_ctx *c)
{
    const vj_val *cases = vj_get(c->cfg, "cases");
    if (!cases || cases->type != VJ_ARR || !cases->len)
        return vd_err(&c->log, VDIT_ERR_FORMAT, "config.json: no \"cases\" array");
    int ret = 0;
    for (size_t k = 0; k < cases->len && !ret; k++)
        ret = run_fewstep_case(c, &cases->kids[k]);
    return ret;
}
