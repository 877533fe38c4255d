/* Conformance of the text-to-video sampling loops: Wan2.1 t2v_loop_tiny
 * (WanT2V.generate) and Wan2.2 t2v22_loop_tiny (WanTI2V.t2v): the DiT with
 * the folder's weights, classifier-free guidance and the sampler, from the
 * stored noise and text contexts. Everything (sizes, steps, shift, guidance,
 * solver) comes from config.json and the tensor shapes. The Wan2.2 loop is
 * the same loop, except that the DiT gets its timestep as a [seq_len] vector
 * of equal values (the per-token path), stored as `t_tokens`. */
#include <stdio.h>

#include "conform.h"
#include "dit/dit.h"
#include "pipeline/sampler.h"

/* per_token: hand the DiT each step's timestep as one value per token
 * (vd_dit_forward_tok) and compare those vectors with `t_tokens`. */
static int t2v_loop(conform_ctx *c, int per_token)
{
    const vj_val *ga = vj_get(c->cfg, "generate_args");
    const vj_val *dc = vj_get(c->cfg, "dit_constructor");
    int64_t steps = vj_int(vj_get(ga, "sampling_steps"), -1);
    double shift = vj_num(vj_get(ga, "shift"), -1);
    double guide = vj_num(vj_get(ga, "guide_scale"), -1);
    const char *solver = vj_str(vj_get(ga, "sample_solver"), "unipc");
    int64_t text_len = vj_int(vj_get(dc, "text_len"), -1);
    int64_t n_heads = vj_int(vj_get(dc, "num_heads"), 0); /* not visible in any shape */
    if (steps < 1 || steps > 10000 || !(shift > 0) || guide < 0 || text_len < 1)
        return vd_err(&c->log, VDIT_ERR_FORMAT,
                      "config.json: generate_args needs sampling_steps, shift, guide_scale; "
                      "dit_constructor needs text_len");
    vd_sampler_kind kind;
    if (!strcmp(solver, "unipc"))
        kind = VD_SAMPLER_UNIPC;
    else if (!strcmp(solver, "dpm++"))
        kind = VD_SAMPLER_DPMPP;
    else
        return vd_err(&c->log, VDIT_ERR_UNSUPPORTED, "config.json: unknown solver '%s'", solver);
    if (!c->weights)
        return vd_err(&c->log, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);

    int ret = 0;
    vd_dit *dit = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *run = NULL;
    vd_dit_cond *cond = NULL, *uncond = NULL;
    vd_sampler *s = NULL;
    float *noise = NULL, *ctx_c = NULL, *ctx_u = NULL, *lat = NULL, *pc = NULL, *pu = NULL,
          *pg = NULL;
    int64_t *ts = NULL;
    float *sig = NULL, *ttok = NULL;
    const vt_tensor *tn, *tc, *tu;

    noise = conform_input(c, "noise", &tn);
    ctx_c = conform_input(c, "context_cond", &tc);
    ctx_u = conform_input(c, "context_uncond", &tu);
    if (!noise || !ctx_c || !ctx_u)
        goto done;
    if (tn->ndim != 4 || tc->ndim != 2 || tu->ndim != 2) {
        conform_fail(c, "noise/context", "unexpected rank");
        goto done;
    }
    int64_t ch = tn->shape[0], f = tn->shape[1], h = tn->shape[2], w = tn->shape[3];
    int64_t n = ch * f * h * w;

    if ((ret = vd_dit_canonicalize(c->weights, &c->log)) ||
        (ret = vd_dit_load_ex(c->weights, text_len, n_heads, &c->log, &dit)))
        goto done;
    const vd_dit_config *cfg = vd_dit_get_config(dit);
    if (ch != cfg->in_dim || f % cfg->patch[0] || h % cfg->patch[1] || w % cfg->patch[2]) {
        ret = vd_err(&c->log, VDIT_ERR_FORMAT,
                     "%s: noise [%lld,%lld,%lld,%lld] does not fit the DiT (%lld channels, "
                     "patch %lldx%lldx%lld)", c->dir, (long long)ch, (long long)f, (long long)h,
                     (long long)w, (long long)cfg->in_dim, (long long)cfg->patch[0],
                     (long long)cfg->patch[1], (long long)cfg->patch[2]);
        goto done;
    }
    int64_t n_tok = f / cfg->patch[0] * (h / cfg->patch[1]) * (w / cfg->patch[2]);
    kc = vk_ctx_new_ex(c->n_threads, -1, c->prec, &c->log);
    if (!kc || !(run = vd_dit_run_new(dit, kc))) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "cannot make the DiT run context");
        goto done;
    }
    if ((ret = vd_dit_cond_new(run, ctx_c, tc->shape[0], NULL, 0, &cond)) ||
        (ret = vd_dit_cond_new(run, ctx_u, tu->shape[0], NULL, 0, &uncond)))
        goto done;
    s = vd_sampler_new(kind, (int)steps, shift, n);
    lat = vd_malloc(sizeof(float) * (size_t)(n * (steps + 1)));
    pc = vd_malloc(sizeof(float) * (size_t)(n * steps));
    pu = vd_malloc(sizeof(float) * (size_t)(n * steps));
    pg = vd_malloc(sizeof(float) * (size_t)(n * steps));
    ts = malloc(sizeof(int64_t) * (size_t)steps);
    sig = malloc(sizeof(float) * (size_t)(steps + 1));
    if (per_token)
        ttok = vd_malloc(sizeof(float) * (size_t)(n_tok * steps));
    if (!s || !lat || !pc || !pu || !pg || !ts || !sig || (per_token && !ttok)) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(lat, noise, sizeof(float) * (size_t)n);
    for (int i = 0; i < steps; i++) {
        float *x = lat + n * i;
        float *oc = pc + n * i, *ou = pu + n * i, *og = pg + n * i;
        int64_t t = vd_sampler_timestep(s, i);
        ts[i] = t;
        /* The reference hands the DiT the integer timestep (Wan2.2: as a
         * vector, one per token, all equal in text-to-video). */
        const float *tt = NULL;
        if (per_token) {
            float *v = ttok + n_tok * i;
            for (int64_t k = 0; k < n_tok; k++)
                v[k] = (float)t;
            tt = v;
        }
        if ((ret = vd_dit_forward_tok(run, x, NULL, f, h, w, (float)t, tt, cond, oc)) ||
            (ret = vd_dit_forward_tok(run, x, NULL, f, h, w, (float)t, tt, uncond, ou)))
            goto done;
        float g = (float)guide;
        for (int64_t k = 0; k < n; k++)
            og[k] = ou[k] + g * (oc[k] - ou[k]);
        memcpy(x + n, x, sizeof(float) * (size_t)n);
        vd_sampler_step(s, i, og, x + n);
    }
    for (int i = 0; i <= steps; i++)
        sig[i] = vd_sampler_sigma(s, i);
    conform_check_i64(c, "timesteps", ts, (size_t)steps);
    conform_check(c, "sigmas", sig, (size_t)steps + 1, 1e-300, 1e-300);
    if (per_token)
        conform_check(c, "t_tokens", ttok, (size_t)(n_tok * steps), 1e-300, 1e-300);
    conform_check(c, "noise_pred_cond", pc, (size_t)(n * steps), 0, 0);
    conform_check(c, "noise_pred_uncond", pu, (size_t)(n * steps), 0, 0);
    conform_check(c, "noise_pred_guided", pg, (size_t)(n * steps), 0, 0);
    conform_check(c, "latents", lat, (size_t)(n * (steps + 1)), 0, 0);
    conform_check(c, "final", lat + n * steps, (size_t)n, 0, 0);
done:
    vd_free(noise);
    vd_free(ctx_c);
    vd_free(ctx_u);
    vd_free(lat);
    vd_free(pc);
    vd_free(pu);
    vd_free(pg);
    free(ts);
    free(sig);
    vd_free(ttok);
    vd_sampler_free(&s);
    vd_dit_cond_free(&cond);
    vd_dit_cond_free(&uncond);
    vd_dit_run_free(&run);
    vk_ctx_free(&kc);
    vd_dit_free(&dit);
    return ret;
}

int conform_t2v_loop(conform_ctx *c)
{
    return t2v_loop(c, 0);
}

int conform_ti2v_t2v_loop(conform_ctx *c)
{
    return t2v_loop(c, 1);
}
