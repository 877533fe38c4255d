/* Conformance of the diffusion transformer (wan2.1 dit_tiny, dit_tiny_i2v,
 * wan2.2 dit_ti2v_tiny and any folder of that layout): loads
 * weights.safetensors through the same path as real checkpoints
 * (canonicalize + load), builds the condition from io.safetensors' context
 * (and clip_fea), runs one forward pass on x, t (and y) and compares `out`;
 * with --verbose also every inter/ tensor the model exposes through its
 * taps. t is one timestep ([1]) or one per token ([1, seq_len] or
 * [seq_len], Wan2.2: the per-token path; entries past the real tokens are
 * seq_len padding and do not matter). A folder that also has `t2v/t` and
 * `t2v/out` gets a second call with that t, compared with `t2v/out`.
 * Every size comes from config.json and the tensor shapes. */
#include <stdio.h>

#include "conform.h"
#include "dit/dit.h"

static void on_tap(void *user, const char *name, const float *data, size_t n)
{
    conform_ctx *c = user;
    if (c->verbose && vd_ckpt_find(c->io, name))
        conform_check(c, name, data, n, 0, 0);
}

/* A constructor field that must match what the weights say. */
static void check_field(conform_ctx *c, const vj_val *ctor, const char *key, int64_t got)
{
    const vj_val *v = vj_get(ctor, key);
    if (v && v->type == VJ_NUM && vj_int(v, -1) != got) {
        char m[160];
        snprintf(m, sizeof(m), "config.json says %lld, the weights give %lld",
                 (long long)vj_int(v, -1), (long long)got);
        conform_fail(c, key, m);
    }
}

/* One forward pass with the io tensor `tname` as the timestep(s), compared
 * with the io tensor `oname`. A 1-element t ([1] or a scalar) is the scalar
 * path; anything else holds one timestep per token (at least as many values
 * as tokens: [1, seq_len] or [seq_len]; the rest is seq_len padding). */
static int run_call(conform_ctx *c, const vd_dit_config *cfg, vd_dit_run *r,
                    const vd_dit_cond *cond, const float *x, const float *y, int64_t F,
                    int64_t H, int64_t W, const char *tname, const char *oname, float *out)
{
    int64_t L = F / cfg->patch[0] * (H / cfg->patch[1]) * (W / cfg->patch[2]);
    const vt_tensor *tt;
    float *t = conform_input(c, tname, &tt);
    if (!t)
        return 0;
    int scalar = vt_nelem(tt) == 1 && tt->ndim <= 1;
    if (!scalar && (vt_nelem(tt) < L || tt->ndim > 2 || (tt->ndim == 2 && tt->shape[0] != 1))) {
        vd_free(t);
        return vd_err(&c->log, VDIT_ERR_FORMAT,
                      "%s: io.safetensors: %s must be [1] or [1, seq_len] with seq_len >= %lld "
                      "tokens", c->dir, tname, (long long)L);
    }
    double t0 = vd_time();
    int ret = scalar ? vd_dit_forward(r, x, y, F, H, W, t[0], cond, out)
                     : vd_dit_forward_tok(r, x, y, F, H, W, 0.0f, t, cond, out);
    vd_free(t);
    if (ret)
        return ret;
    if (c->verbose)
        printf("# forward (%s, %s) %.3f s (%lld tokens)\n", tname,
               scalar ? "one timestep" : "per-token timesteps", vd_time() - t0, (long long)L);
    conform_check(c, oname, out, (size_t)(cfg->out_dim * F * H * W), 0, 0);
    return 0;
}

int conform_dit(conform_ctx *c)
{
    vd_log *lg = &c->log;
    if (!c->weights)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);
    const vj_val *ctor = vj_get(c->cfg, "constructor");
    int64_t text_len = vj_int(vj_get(ctor, "text_len"), 512);
    int64_t n_heads = vj_int(vj_get(ctor, "num_heads"), 0);
    int ret = 0;
    vd_dit *d = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cond = NULL;
    float *x = NULL, *ctx = NULL, *y = NULL, *clip = NULL, *out = NULL;

    if ((ret = vd_dit_canonicalize(c->weights, lg)) ||
        (ret = vd_dit_load_ex(c->weights, text_len, n_heads, lg, &d)))
        goto done;
    const vd_dit_config *cfg = vd_dit_get_config(d);
    check_field(c, ctor, "dim", cfg->dim);
    check_field(c, ctor, "in_dim", cfg->in_dim);
    check_field(c, ctor, "out_dim", cfg->out_dim);
    check_field(c, ctor, "ffn_dim", cfg->ffn_dim);
    check_field(c, ctor, "freq_dim", cfg->freq_dim);
    check_field(c, ctor, "text_dim", cfg->text_dim);
    check_field(c, ctor, "num_layers", cfg->n_layers);
    const char *mt = vj_str(vj_get(ctor, "model_type"), NULL);
    if (mt && (!strcmp(mt, "i2v") != !!cfg->i2v))
        conform_fail(c, "model_type", "config.json and the weights disagree on i2v");

    /* on a device: the blocks there, the weights uploaded at the folder's
     * precision */
    if ((ret = conform_kc(c, &kc)) ||
        (kc->cuda && (ret = vd_dit_upload(d, kc->cuda, c->prec, NULL, NULL, lg))))
        goto done;
    if (!(r = vd_dit_run_new(d, kc))) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    vd_dit_run_set_tap(r, on_tap, c);

    const vt_tensor *xt, *ct, *yt = NULL, *clt = NULL;
    if (!(x = conform_input(c, "x", &xt)) || !(ctx = conform_input(c, "context", &ct)))
        goto done;
    if (xt->ndim != 4 || ct->ndim != 2 || ct->shape[1] != cfg->text_dim) {
        ret = vd_err(lg, VDIT_ERR_FORMAT,
                     "%s: io.safetensors: x must be [C,F,H,W], context [n, text_dim]", c->dir);
        goto done;
    }
    int64_t n_clip = 0;
    if (cfg->i2v) {
        if (!(y = conform_input(c, "y", &yt)) || !(clip = conform_input(c, "clip_fea", &clt)))
            goto done;
        n_clip = clt->shape[clt->ndim >= 2 ? clt->ndim - 2 : 0];
        if (yt->ndim != 4 || clt->shape[clt->ndim - 1] != cfg->clip_dim ||
            xt->shape[0] != cfg->out_dim || xt->shape[0] + yt->shape[0] != cfg->in_dim) {
            ret = vd_err(lg, VDIT_ERR_FORMAT,
                         "%s: io.safetensors: y / clip_fea shapes do not fit the model", c->dir);
            goto done;
        }
        for (int i = 1; i < 4; i++)
            if (yt->shape[i] != xt->shape[i]) {
                ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: y and x differ in F, H or W", c->dir);
                goto done;
            }
    } else if (xt->shape[0] != cfg->in_dim) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: x has %lld channels, the model takes %lld",
                     c->dir, (long long)xt->shape[0], (long long)cfg->in_dim);
        goto done;
    }
    if ((ret = vd_dit_cond_new(r, ctx, ct->shape[0], clip, n_clip, &cond)))
        goto done;
    int64_t F = xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    out = vd_malloc((size_t)(cfg->out_dim * F * H * W) * sizeof(float));
    if (!out) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((ret = run_call(c, cfg, r, cond, x, y, F, H, W, "t", "out", out)))
        goto done;
    /* a second call (Wan2.2: the plain t2v call with a 1-element t); the
     * inter/ tensors belong to the first */
    if (vd_ckpt_find(c->io, "t2v/t") && vd_ckpt_find(c->io, "t2v/out")) {
        vd_dit_run_set_tap(r, NULL, NULL);
        if ((ret = run_call(c, cfg, r, cond, x, y, F, H, W, "t2v/t", "t2v/out", out)))
            goto done;
    }
done:
    vd_free(x);
    vd_free(ctx);
    vd_free(y);
    vd_free(clip);
    vd_free(out);
    vd_dit_cond_free(&cond);
    vd_dit_run_free(&r);
    vd_dit_free(&d); /* before kc: its device weights live in kc's device context */
    vk_ctx_free(&kc);
    return ret < 0 ? ret : 0;
}
