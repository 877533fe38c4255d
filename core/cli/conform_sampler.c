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
