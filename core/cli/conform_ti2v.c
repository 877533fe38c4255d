/* Conformance of Wan2.2 TI2V image-to-video (ti2v_loop_tiny): the engine's
 * own pieces on the folder's parts. The image goes through the pixel
 * conversion and the output-size rule the pipeline uses, is VAE-encoded
 * alone (z_image), held as latent frame 0 clean at timestep 0 while
 * vd_denoise (the engine's loop) runs the sampler with guidance from the
 * stored noise and text contexts, and the result is decoded. Every
 * intermediate the folder stores is compared. */
#include <stdio.h>

#include "conform.h"
#include "dit/dit.h"
#include "pipeline/pipeline.h"
#include "pipeline/wan/wan.h"
#include "vae/vae.h"

typedef struct taps {
    conform_ctx *c;
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

int conform_ti2v_loop(conform_ctx *c)
{
    const vj_val *ga = vj_get(c->cfg, "generate_args");
    const vj_val *dc = vj_get(c->cfg, "dit_constructor");
    int steps = (int)vj_int(vj_get(ga, "sampling_steps"), -1);
    double shift = vj_num(vj_get(ga, "shift"), -1), guide = vj_num(vj_get(ga, "guide_scale"), -1);
    int64_t area = vj_int(vj_get(ga, "max_area"), -1);
    const char *solver = vj_str(vj_get(ga, "sample_solver"), "unipc");
    int64_t text_len = vj_int(vj_get(dc, "text_len"), -1), n_heads = vj_int(vj_get(dc, "num_heads"), 0);
    vd_log *lg = &c->log;
    if (steps < 1 || steps > 1000 || !(shift > 0) || guide < 0 || text_len < 1 || area < 1)
        return vd_err(lg, VDIT_ERR_FORMAT, "config.json: generate_args needs sampling_steps, "
                      "shift, guide_scale, max_area; dit_constructor text_len");
    if (strcmp(solver, "unipc") && strcmp(solver, "dpm++"))
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
    vd_sampler *smp = NULL;
    vdit_video *im = NULL;
    float *ctx_c = NULL, *ctx_u = NULL, *noise = NULL, *px = NULL, *zimg = NULL, *lat0 = NULL,
          *x = NULL, *video = NULL;
    uint8_t *fixed = NULL;
    taps tp = { c, steps, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL };
    const vt_tensor *ti, *tn, *tcc, *tcu;

    snprintf(path, sizeof(path), "%s/vae_weights.safetensors", c->dir);
    if ((ret = vd_ckpt_open(path, lg, &vck)) || (ret = vd_vae_canonicalize(vck, lg)) ||
        (ret = vd_vae_load(vck, lg, &vae)) || (ret = vd_dit_canonicalize(c->weights, lg)) ||
        (ret = vd_dit_load_ex(c->weights, text_len, n_heads, lg, &dit)))
        goto done;
    const vd_vae_config *vc = vd_vae_get_config(vae);
    const vd_dit_config *dcf = vd_dit_get_config(dit);
    vd_geom g = { vc->z_dim, vc->s_factor, vc->t_factor, vc->s_factor * (int)dcf->patch[1] };
    kc = vk_ctx_new_ex(c->n_threads, -1, c->prec, lg);
    if (!kc || !(run = vd_dit_run_new(dit, kc))) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    ti = vd_ckpt_find(c->io, "image_u8");
    noise = conform_input(c, "noise", &tn);
    ctx_c = conform_input(c, "context_cond", &tcc);
    ctx_u = conform_input(c, "context_uncond", &tcu);
    if (!noise || !ctx_c || !ctx_u)
        goto done;
    if (!ti || ti->dtype != VT_U8 || ti->ndim != 3 || ti->shape[2] != 3 || tn->ndim != 4) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: io.safetensors: image_u8 [H, W, 3] U8 and noise "
                     "[C, F, H, W] expected", c->dir);
        goto done;
    }
    /* the output size the pipeline picks for this image, and the image fitted to it */
    int iw = (int)ti->shape[1], ih = (int)ti->shape[0], ow, oh, rw, rh, x0, y0;
    if (vd_best_output_size(iw, ih, g.align, area, &ow, &oh)) {
        conform_fail(c, "output size", "best_output_size found none");
        goto done;
    }
    vd_image_fit(iw, ih, ow, oh, &rw, &rh, &x0, &y0);
    vdit_video src = { iw, ih, 1, (uint8_t *)ti->data };
    int64_t ch = tn->shape[0], lt = tn->shape[1], lh = tn->shape[2], lw = tn->shape[3];
    int64_t hw = lh * lw, n = ch * lt * hw, tf = g.t_factor;
    int nf = (int)vj_int(vj_get(ga, "frame_num"), -1);
    if (ch != g.z_dim || oh != lh * g.s_factor || ow != lw * g.s_factor || nf != 1 + tf * (lt - 1)) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: noise %lldx%lldx%lldx%lld does not fit a %dx%d "
                     "clip of %d frames from the %dx%d image", c->dir, (long long)ch,
                     (long long)lt, (long long)lh, (long long)lw, ow, oh, nf, iw, ih);
        goto done;
    }
    im = vd_video_resize_crop(&src, 0, rw, rh, x0, y0, ow, oh);
    px = vd_malloc(sizeof(float) * 3 * (size_t)ow * oh);
    zimg = vd_malloc(sizeof(float) * (size_t)(ch * hw));
    lat0 = vd_malloc(sizeof(float) * (size_t)n);
    x = vd_malloc(sizeof(float) * (size_t)n);
    fixed = calloc((size_t)lt, 1);
    tp.n = n;
    tp.n_tok = lt * (lh / (g.align / g.s_factor)) * (lw / (g.align / g.s_factor));
    size_t sn = (size_t)steps * (size_t)n;
    tp.lat = vd_malloc(sizeof(float) * (sn + (size_t)n));
    tp.pc = vd_malloc(sizeof(float) * sn);
    tp.pu = vd_malloc(sizeof(float) * sn);
    tp.pg = vd_malloc(sizeof(float) * sn);
    tp.so = vd_malloc(sizeof(float) * sn);
    tp.tt = vd_malloc(sizeof(float) * (size_t)steps * (size_t)tp.n_tok);
    video = vd_malloc(sizeof(float) * 3 * (size_t)nf * ow * oh);
    if (!im || !px || !zimg || !lat0 || !x || !fixed || !tp.lat || !tp.pc || !tp.pu || !tp.pg ||
        !tp.so || !tp.tt || !video) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    vd_put_frame(im, 0, px, 1, oh, ow, 0);
    conform_check(c, "image", px, 3 * (size_t)ow * oh, 1e-6, 1e-6); /* no model arithmetic */
    if ((ret = vd_vae_encode(vae, kc, px, 1, oh, ow, zimg, NULL)))
        goto done;
    /* module bounds for the encode, the README's 1e-3 for the decoded video
     * (bf16: the handler's relative bound) */
    int f32 = c->prec != VK_PREC_BF16;
    conform_check(c, "z_image", zimg, (size_t)(ch * hw), f32 ? 1e-4 : 0, f32 ? 3e-5 : 0);

    if ((ret = vd_dit_cond_new(run, ctx_c, tcc->shape[0], NULL, 0, &cond)) ||
        (ret = vd_dit_cond_new(run, ctx_u, tcu->shape[0], NULL, 0, &uncond)))
        goto done;
    memset(lat0, 0, sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < ch; k++)
        memcpy(lat0 + k * lt * hw, zimg + k * hw, sizeof(float) * (size_t)hw);
    fixed[0] = 1;
    vd_run_params rp;
    memset(&rp, 0, sizeof(rp));
    rp.steps = steps;
    rp.guidance = (float)guide;
    rp.shift = (float)shift;
    rp.sampler = strcmp(solver, "unipc") ? VD_SAMPLER_DPMPP : VD_SAMPLER_UNIPC;
    rp.cache = VDIT_CACHE_OFF;
    rp.guidance_end = 1.0f;
    vd_denoise_args da = { &vd_family_wan22_ti2v, (vd_run *)run, g, (const vd_cond *)cond,
                           guide != 1.0 ? (const vd_cond *)uncond : NULL, &rp, 0, -1.0f,
                           lt, lh, lw, x, lat0, noise, fixed, 1, 1, 0, NULL, on_step, &tp, 0, 0 };
    if ((ret = vd_denoise(&da)))
        goto done;
    memcpy(tp.lat + sn, x, sizeof(float) * (size_t)n);
    smp = vd_sampler_new(rp.sampler, steps, shift, 1);
    if (!smp) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    int64_t ts[1000];
    float sig[1001];
    for (int i = 0; i < steps; i++)
        ts[i] = vd_sampler_timestep(smp, i);
    for (int i = 0; i <= steps; i++)
        sig[i] = vd_sampler_sigma(smp, i);
    conform_check_i64(c, "timesteps", ts, (size_t)steps);
    conform_check(c, "sigmas", sig, (size_t)steps + 1, 1e-300, 1e-300);
    conform_check(c, "t_tokens", tp.tt, (size_t)steps * (size_t)tp.n_tok, 1e-300, 1e-300);
    conform_check(c, "noise_pred_cond", tp.pc, sn, 0, 0);
    conform_check(c, "noise_pred_uncond", tp.pu, sn, 0, 0);
    conform_check(c, "noise_pred_guided", tp.pg, sn, 0, 0);
    conform_check(c, "step_out", tp.so, sn, 0, 0);
    conform_check(c, "latents", tp.lat, sn + (size_t)n, 0, 0);
    conform_check(c, "final", x, (size_t)n, 0, 0);
    if ((ret = vd_vae_decode(vae, kc, x, (int)lt, (int)lh, (int)lw, video)))
        goto done;
    conform_check(c, "video", video, 3 * (size_t)nf * ow * oh, f32 ? 1e-3 : 0, f32 ? 1e-3 : 0);
done:
    vd_free(ctx_c);
    vd_free(ctx_u);
    vd_free(noise);
    vd_free(px);
    vd_free(zimg);
    vd_free(lat0);
    vd_free(x);
    vd_free(video);
    vd_free(tp.lat);
    vd_free(tp.pc);
    vd_free(tp.pu);
    vd_free(tp.pg);
    vd_free(tp.so);
    vd_free(tp.tt);
    free(fixed);
    vdit_video_free(&im);
    vd_sampler_free(&smp);
    vd_dit_cond_free(&cond);
    vd_dit_cond_free(&uncond);
    vd_dit_run_free(&run);
    vk_ctx_free(&kc);
    vd_dit_free(&dit);
    vd_vae_free(&vae);
    vd_ckpt_free(&vck);
    return ret < 0 ? ret : 0;
}
