/* Conformance of the sampling loops, run by the engine's own loop
 * (vd_denoise, what vdit generate runs) on the folder's parts:
 *   Wan2.1 t2v_loop_tiny (WanT2V.generate): text to video;
 *   Wan2.2 t2v22_loop_tiny (WanTI2V.t2v): the same, the timestep handed to
 *     the DiT as one value per token (stored as `t_tokens`);
 *   Wan2.2 ti2v_loop_tiny (WanTI2V.i2v): image to video. The image goes
 *     through the pixel conversion and output-size rule the pipeline uses,
 *     is VAE-encoded alone (z_image) and held as latent frame 0, clean at
 *     timestep 0; the result is decoded (video).
 * Guidance from the stored noise and text contexts; everything (sizes,
 * steps, shift, guidance, solver) comes from config.json and the tensor
 * shapes. Every step's input, predictions and (where stored) sampler
 * output are compared. */
#include <stdio.h>

#include "conform.h"
#include "dit/dit.h"
#include "pipeline/pipeline.h"
#include "pipeline/wan/wan.h"
#include "vae/vae.h"

typedef struct taps {
    int steps;
    int64_t n, n_tok;
    float *lat, *pc, *pu, *pg, *so, *tt;
} taps;

static void on_step(void *user, int i, const char *what, const float *d, int64_t n)
{
    taps *t = user;
    float *dst = !strcmp(what, "latents")             ? t->lat
                 : !strcmp(what, "noise_pred_cond")   ? t->pc
                 : !strcmp(what, "noise_pred_uncond") ? t->pu
                 : !strcmp(what, "noise_pred_guided") ? t->pg
                 : !strcmp(what, "step_out")          ? t->so
                 : !strcmp(what, "t_tokens")          ? t->tt
                                                      : NULL;
    int64_t len = dst == t->tt ? t->n_tok : t->n;
    if (dst && n == len && i >= 0 && i < t->steps)
        memcpy(dst + (size_t)i * (size_t)len, d, sizeof(float) * (size_t)n);
}

/* The image of ti2v_loop_tiny through the pipeline's steps: its output
 * size (must be the noise's), the fitted frame (compared with `image`),
 * its latent alone (`z_image`) into frame 0 of lat0. */
static int image_latent(conform_ctx *c, const vd_vae *vae, vk_ctx *kc, const vd_geom *g,
                        int64_t area, int64_t lt, int64_t lh, int64_t lw, float *lat0)
{
    const vt_tensor *ti = vd_ckpt_find(c->io, "image_u8");
    if (!ti || ti->dtype != VT_U8 || ti->ndim != 3 || ti->shape[2] != 3)
        return vd_err(&c->log, VDIT_ERR_FORMAT, "%s: io.safetensors: image_u8 [H, W, 3] U8 "
                      "expected", c->dir);
    int iw = (int)ti->shape[1], ih = (int)ti->shape[0], ow, oh, rw, rh, x0, y0;
    if (vd_best_output_size(iw, ih, g->align, area, &ow, &oh) || oh != lh * g->s_factor ||
        ow != lw * g->s_factor)
        return vd_err(&c->log, VDIT_ERR_FORMAT, "%s: the %dx%d image does not give the noise's "
                      "%lldx%lld latent", c->dir, iw, ih, (long long)lw, (long long)lh);
    vd_image_fit(iw, ih, ow, oh, &rw, &rh, &x0, &y0);
    vdit_video src = { iw, ih, 1, (uint8_t *)ti->data };
    int64_t ch = g->z_dim, hw = lh * lw;
    vdit_video *im = vd_video_resize_crop(&src, 0, rw, rh, x0, y0, ow, oh);
    float *px = vd_malloc(sizeof(float) * 3 * (size_t)ow * oh);
    float *z = vd_malloc(sizeof(float) * (size_t)(ch * hw));
    int ret = 0;
    if (!im || !px || !z) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    vd_put_frame(im, 0, px, 1, oh, ow, 0);
    conform_check(c, "image", px, 3 * (size_t)ow * oh, 1e-6, 1e-6); /* no model arithmetic */
    if ((ret = vd_vae_encode(vae, kc, px, 1, oh, ow, z, NULL)))
        goto done;
    /* module bounds for the encode (bf16: the handler's relative bound) */
    int f32 = c->prec != VK_PREC_BF16;
    conform_check(c, "z_image", z, (size_t)(ch * hw), f32 ? 1e-4 : 0, f32 ? 3e-5 : 0);
    memset(lat0, 0, sizeof(float) * (size_t)(ch * lt * hw));
    for (int64_t k = 0; k < ch; k++)
        memcpy(lat0 + k * lt * hw, z + k * hw, sizeof(float) * (size_t)hw);
done:
    vdit_video_free(&im);
    vd_free(px);
    vd_free(z);
    return ret;
}

/* per_token: the family hands the DiT one timestep per token (Wan2.2);
 * image: the folder is image to video (ti2v_loop_tiny). */
static int loop(conform_ctx *c, int per_token, int image)
{
    const vj_val *ga = vj_get(c->cfg, "generate_args");
    const vj_val *dc = vj_get(c->cfg, "dit_constructor");
    int steps = (int)vj_int(vj_get(ga, "sampling_steps"), -1);
    double shift = vj_num(vj_get(ga, "shift"), -1);
    double guide = vj_num(vj_get(ga, "guide_scale"), -1);
    const char *solver = vj_str(vj_get(ga, "sample_solver"), "unipc");
    int64_t area = vj_int(vj_get(ga, "max_area"), -1);
    int nf = (int)vj_int(vj_get(ga, "frame_num"), -1);
    int64_t text_len = vj_int(vj_get(dc, "text_len"), -1);
    int64_t n_heads = vj_int(vj_get(dc, "num_heads"), 0); /* not visible in any shape */
    vd_log *lg = &c->log;
    if (steps < 1 || steps > 10000 || !(shift > 0) || guide < 0 || text_len < 1 ||
        (image && (area < 1 || nf < 1)))
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "config.json: generate_args needs sampling_steps, shift, "
                      "guide_scale%s; dit_constructor needs text_len",
                      image ? ", max_area, frame_num" : "");
    vd_sampler_kind kind;
    if (!strcmp(solver, "unipc"))
        kind = VD_SAMPLER_UNIPC;
    else if (!strcmp(solver, "dpm++"))
        kind = VD_SAMPLER_DPMPP;
    else
        return vd_err(lg, VDIT_ERR_UNSUPPORTED, "config.json: unknown solver '%s'", solver);
    if (!c->weights)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);

    int ret = 0;
    char path[4200];
    vd_ckpt *vck = NULL;
    vd_vae *vae = NULL;
    vd_dit *dit = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *run = NULL;
    vd_dit_cond *cond = NULL, *uncond = NULL;
    vd_sampler *s = NULL;
    float *noise = NULL, *ctx_c = NULL, *ctx_u = NULL, *x = NULL, *lat0 = NULL, *video = NULL,
          *sig = NULL;
    int64_t *ts = NULL;
    uint8_t *fixed = NULL; /* image: latent frame 0 held */
    taps tp = { steps, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL };
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
    if ((ret = vd_dit_canonicalize(c->weights, lg)) ||
        (ret = vd_dit_load_ex(c->weights, text_len, n_heads, lg, &dit)))
        goto done;
    const vd_dit_config *cfg = vd_dit_get_config(dit);
    if (ch != cfg->in_dim || f % cfg->patch[0] || h % cfg->patch[1] || w % cfg->patch[2] ||
        cfg->patch[1] != cfg->patch[2]) {
        ret = vd_err(lg, VDIT_ERR_FORMAT,
                     "%s: noise [%lld,%lld,%lld,%lld] does not fit the DiT (%lld channels, "
                     "patch %lldx%lldx%lld)", c->dir, (long long)ch, (long long)f, (long long)h,
                     (long long)w, (long long)cfg->in_dim, (long long)cfg->patch[0],
                     (long long)cfg->patch[1], (long long)cfg->patch[2]);
        goto done;
    }
    /* latent units without a VAE (s_factor 1); the VAE's with one */
    vd_geom g = { (int)ch, 1, 4, (int)cfg->patch[1] };
    kc = vk_ctx_new_ex(c->n_threads, -1, c->prec, lg);
    if (!kc || !(run = vd_dit_run_new(dit, kc))) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "cannot make the DiT run context");
        goto done;
    }
    if (image) {
        snprintf(path, sizeof(path), "%s/vae_weights.safetensors", c->dir);
        if ((ret = vd_ckpt_open(path, lg, &vck)) || (ret = vd_vae_canonicalize(vck, lg)) ||
            (ret = vd_vae_load(vck, lg, &vae)))
            goto done;
        const vd_vae_config *vc = vd_vae_get_config(vae);
        g = (vd_geom){ vc->z_dim, vc->s_factor, vc->t_factor, vc->s_factor * g.align };
        if (nf != 1 + g.t_factor * (f - 1) || ch != g.z_dim) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: %d frames do not give the noise's %lld "
                         "latent frames of %lld channels", c->dir, nf, (long long)f,
                         (long long)ch);
            goto done;
        }
        if (!(fixed = calloc((size_t)f, 1)) || !(lat0 = vd_malloc(sizeof(float) * (size_t)n)) ||
            !(video = vd_malloc(sizeof(float) * 3 * (size_t)nf * (h * g.s_factor) *
                                (w * g.s_factor)))) {
            ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((ret = image_latent(c, vae, kc, &g, area, f, h, w, lat0)))
            goto done;
        fixed[0] = 1;
    }
    if ((ret = vd_dit_cond_new(run, ctx_c, tc->shape[0], NULL, 0, &cond)) ||
        (ret = vd_dit_cond_new(run, ctx_u, tu->shape[0], NULL, 0, &uncond)))
        goto done;
    size_t sn = (size_t)steps * (size_t)n;
    tp.n = n;
    tp.n_tok = f / cfg->patch[0] * (h / cfg->patch[1]) * (w / cfg->patch[2]);
    x = vd_malloc(sizeof(float) * (size_t)n);
    tp.lat = vd_malloc(sizeof(float) * (sn + (size_t)n));
    tp.pc = vd_malloc(sizeof(float) * sn);
    tp.pu = vd_malloc(sizeof(float) * sn);
    tp.pg = vd_malloc(sizeof(float) * sn);
    tp.so = vd_malloc(sizeof(float) * sn);
    tp.tt = vd_malloc(sizeof(float) * (size_t)steps * (size_t)tp.n_tok);
    s = vd_sampler_new(kind, steps, shift, 1);
    ts = malloc(sizeof(int64_t) * (size_t)steps);
    sig = malloc(sizeof(float) * (size_t)(steps + 1));
    if (!x || !tp.lat || !tp.pc || !tp.pu || !tp.pg || !tp.so || !tp.tt || !s || !ts || !sig) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    vd_run_params rp;
    memset(&rp, 0, sizeof(rp));
    rp.steps = steps;
    rp.guidance = (float)guide;
    rp.shift = (float)shift;
    rp.sampler = kind;
    rp.cache = VDIT_CACHE_OFF;
    rp.guidance_end = 1.0f;
    /* the reference computes uncond + g (cond - uncond) at every step */
    vd_denoise_args da = { per_token ? &vd_family_wan22_ti2v : &vd_family_wan21,
                           (vd_run *)run, g, (const vd_cond *)cond, (const vd_cond *)uncond, &rp,
                           0, -1.0f, f, h, w, x, lat0, noise, fixed, image,
                           per_token, 0, NULL, on_step, &tp, 0, 0 };
    if ((ret = vd_denoise(&da)))
        goto done;
    memcpy(tp.lat + sn, x, sizeof(float) * (size_t)n);
    for (int i = 0; i < steps; i++)
        ts[i] = vd_sampler_timestep(s, i);
    for (int i = 0; i <= steps; i++)
        sig[i] = vd_sampler_sigma(s, i);
    conform_check_i64(c, "timesteps", ts, (size_t)steps);
    conform_check(c, "sigmas", sig, (size_t)steps + 1, 1e-300, 1e-300);
    if (per_token)
        conform_check(c, "t_tokens", tp.tt, (size_t)steps * (size_t)tp.n_tok, 1e-300, 1e-300);
    conform_check(c, "noise_pred_cond", tp.pc, sn, 0, 0);
    conform_check(c, "noise_pred_uncond", tp.pu, sn, 0, 0);
    conform_check(c, "noise_pred_guided", tp.pg, sn, 0, 0);
    if (vd_ckpt_find(c->io, "step_out"))
        conform_check(c, "step_out", tp.so, sn, 0, 0);
    conform_check(c, "latents", tp.lat, sn + (size_t)n, 0, 0);
    conform_check(c, "final", x, (size_t)n, 0, 0);
    if (image) {
        if ((ret = vd_vae_decode(vae, kc, x, (int)f, (int)h, (int)w, video)))
            goto done;
        /* the README's 1e-3 for the decoded video (bf16: the handler's bound) */
        int f32 = c->prec != VK_PREC_BF16;
        conform_check(c, "video", video, 3 * (size_t)nf * (h * g.s_factor) * (w * g.s_factor),
                      f32 ? 1e-3 : 0, f32 ? 1e-3 : 0);
    }
done:
    vd_free(noise);
    vd_free(ctx_c);
    vd_free(ctx_u);
    vd_free(x);
    vd_free(lat0);
    vd_free(video);
    free(fixed);
    free(ts);
    free(sig);
    vd_free(tp.lat);
    vd_free(tp.pc);
    vd_free(tp.pu);
    vd_free(tp.pg);
    vd_free(tp.so);
    vd_free(tp.tt);
    vd_sampler_free(&s);
    vd_dit_cond_free(&cond);
    vd_dit_cond_free(&uncond);
    vd_dit_run_free(&run);
    vk_ctx_free(&kc);
    vd_dit_free(&dit);
    vd_vae_free(&vae);
    vd_ckpt_free(&vck);
    return ret < 0 ? ret : 0;
}

int conform_t2v_loop(conform_ctx *c)
{
    return loop(c, 0, 0);
}

int conform_ti2v_t2v_loop(conform_ctx *c)
{
    return loop(c, 1, 0);
}

int conform_ti2v_loop(conform_ctx *c)
{
    return loop(c, 1, 1);
}
