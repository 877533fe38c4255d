/* The denoising engine: one primitive, vd_run_job(), that every operation
 * (ops.c) is built on, plus the pixel conversions and the loop re-decode.
 * It sees the model only through its family (family.h). docs/operations.md
 * explains the operations; docs/sampling.md the sampler, strength and noise.
 *
 * vd_run_job(): a pixel timeline of T = 1 + t_factor * k frames in which
 * some frames are given. It is VAE-encoded; latent frames whose pixel
 * frames are all given are held fixed (re-noised to the current sigma
 * before every model call, or held clean, with timestep 0 for their tokens
 * where the family was trained so, and replaced by their clean value at the
 * end); the others start from noise, or, for SDEdit, from the encoded
 * pixels noised to the starting sigma. Sizes the model cannot take are
 * padded by the operations: width and height up to multiples of the
 * family's alignment by centred edge replication, frame counts up to
 * 1 + 4k by repeating the last frame; the result is cropped and trimmed.
 */
#include <math.h>
#include <stdio.h>

#include "pipeline.h"

int vd_align(const vdit_model *m, int x)
{
    return (x + m->geom.align - 1) / m->geom.align * m->geom.align;
}

/* Smallest 1 + 4k >= n. */
int vd_align_frames(int n)
{
    return n <= 1 ? 1 : 1 + (n - 1 + 3) / 4 * 4;
}

int vd_check_strength(vd_log *lg, float s)
{
    if (s >= 0 && s <= 1)
        return 0;
    return vd_err(lg, VDIT_ERR_INVALID_ARG, "strength %g out of range [0, 1]", (double)s);
}

/* Each caching mode's defaults: threshold, the part of the steps where
 * steps may be reused, and how many in a row (docs/sampling.md: chosen on
 * `vdit bench cache`). */
static const struct {
    float threshold, start, end;
    int max_skip;
} cache_defaults[VDIT_CACHE_COUNT] = {
    [VDIT_CACHE_EASY] = { 0.1f, 0.1f, 1.0f, 4 },
    [VDIT_CACHE_TEA] = { 0.08f, 0.1f, 1.0f, 4 },
};

static int resolve_cache(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp)
{
    if (p->cache < 0 || p->cache >= VDIT_CACHE_COUNT)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "cache mode %d unknown (0 off, 1 easy, 2 tea)", p->cache);
    if (!(p->cache_threshold >= 0 && p->cache_threshold <= 1000))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "cache threshold %g out of range (> 0, or 0 for the mode's default)",
                      (double)p->cache_threshold);
    int mode = p->cache;
    int both = p->cache_start == 0 && p->cache_end == 0;
    float start = both ? cache_defaults[mode].start : p->cache_start;
    float end = p->cache_end > 0 ? p->cache_end : cache_defaults[mode].end;
    if (mode != VDIT_CACHE_OFF && !(start >= 0 && end <= 1 && start < end))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "cache start %g / end %g: want 0 <= start < end <= 1 (0: the mode's)",
                      (double)p->cache_start, (double)p->cache_end);
    if (p->cache_max_skip < 0 || p->cache_max_skip > 1000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "cache max skip %d out of range (1..1000, or 0 for the mode's default)",
                      p->cache_max_skip);
    if (!(p->guidance_end >= 0 && p->guidance_end <= 1))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "guidance end %g out of range (0, 1] (0: all steps)",
                      (double)p->guidance_end);
    rp->cache = p->cache;
    rp->cache_threshold = p->cache_threshold > 0 ? p->cache_threshold
                                                  : cache_defaults[p->cache].threshold;
    rp->cache_start = start;
    rp->cache_end = end;
    rp->cache_max_skip = p->cache_max_skip > 0 ? p->cache_max_skip
                                               : cache_defaults[p->cache].max_skip;
    rp->guidance_end = p->guidance_end > 0 ? p->guidance_end : 1.0f;
    return 0;
}

int vd_resolve_params(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp)
{
    const vdit_model_info *in = &c->model->info;
    rp->prompt = p->prompt ? p->prompt : "";
    rp->negative = p->negative_prompt ? p->negative_prompt : c->model->neg_prompt;
    rp->steps = p->steps > 0 ? p->steps : in->steps;
    rp->guidance = p->guidance >= 0 ? p->guidance : in->guidance;
    rp->shift = p->shift > 0 ? p->shift : in->shift;
    int smp = p->sampler >= 0 ? p->sampler : in->sampler;
    rp->seed = p->seed;
    if (p->steps < 0 || rp->steps > 1000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "steps %d out of range (1..1000)", p->steps);
    if (!(rp->guidance <= 100) ||
        !(p->guidance >= 0 || p->guidance == (float)VDIT_DEFAULT_GUIDANCE))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "guidance %g out of range (0..100)",
                      (double)p->guidance);
    if (!(rp->shift <= 100) || !(p->shift > 0 || p->shift == (float)VDIT_DEFAULT_SHIFT))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "shift %g out of range (0..100]",
                      (double)p->shift);
    if (smp < 0 || smp >= VDIT_SAMPLER_COUNT || p->sampler < VDIT_DEFAULT_SAMPLER)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "sampler %d unknown", p->sampler);
    if (in->causal)
        return vd_err(&c->log, VDIT_ERR_UNSUPPORTED,
                      "this model is causal (its vdit.json says \"causal\": true: Self-Forcing "
                      "and its kin): it was trained to generate chunk by chunk with a KV cache, "
                      "and that causal mode is not supported yet");
    rp->sampler = smp == VDIT_SAMPLER_DPMPP     ? VD_SAMPLER_DPMPP
                  : smp == VDIT_SAMPLER_EULER   ? VD_SAMPLER_EULER
                  : smp == VDIT_SAMPLER_FEWSTEP ? VD_SAMPLER_FEWSTEP
                                                : VD_SAMPLER_UNIPC;
    if (rp->sampler == VD_SAMPLER_FEWSTEP) {
        /* The model's list at its own step count; else the evenly spaced
         * one, warped as the model's list is (warped when it has none). */
        if (in->n_timesteps && rp->steps == in->n_timesteps) {
            for (int i = 0; i < in->n_timesteps; i++)
                rp->list[i] = in->timesteps[i];
            rp->warp = in->timesteps_warped;
        } else {
            vd_fewstep_default(rp->steps, rp->list);
            rp->warp = in->n_timesteps ? in->timesteps_warped : 1;
        }
    }
    return resolve_cache(c, p, rp);
}

int vd_first_step(const vd_run_params *rp, float strength)
{
    int steps = rp->steps;
    if (strength < 0)
        return 0;
    if (rp->sampler == VD_SAMPLER_FEWSTEP) {
        /* a small margin: float(0.757) * 1000 must reach 757 */
        double lim = (double)strength * 1000.0 + 1e-3;
        int i = 0;
        while (i < steps && rp->list[i] > lim)
            i++;
        return i;
    }
    int n_run = (int)(strength * (float)steps);
    return steps - VD_MIN(VD_MAX(n_run, 0), steps);
}

vd_sampler *vd_run_sampler(const vd_run_params *rp, int64_t n)
{
    if (rp->sampler == VD_SAMPLER_FEWSTEP)
        return vd_sampler_new_list(rp->list, rp->steps, rp->warp, rp->shift, n);
    return vd_sampler_new(rp->sampler, rp->steps, rp->shift, n);
}

/* ---- pixels ---------------------------------------------------------------- */

int vdit_pixel_format_bytes(int format)
{
    return format == VDIT_PIXFMT_RGB24 ? 3 : format == VDIT_PIXFMT_RGB48 ? 6 : 0;
}

/* One frame of packed pixels (fmt, sw x sh, rows `stride` bytes apart) into
 * timeline position tpos of px [3, T, H, W], centred, edges replicated. */
void vd_put_pixels(const uint8_t *src, ptrdiff_t stride, int fmt, int sw, int sh, float *px,
                   int t, int h, int w, int tpos)
{
    int ox = (w - sw) / 2, oy = (h - sh) / 2;
    for (int y = 0; y < h; y++) {
        int sy = VD_MAX(0, VD_MIN(y - oy, sh - 1));
        const uint8_t *row = src + (ptrdiff_t)sy * stride;
        float *d[3];
        for (int ch = 0; ch < 3; ch++)
            d[ch] = px + (((size_t)ch * t + tpos) * h + y) * w;
        for (int x = 0; x < w; x++) {
            int sx = VD_MAX(0, VD_MIN(x - ox, sw - 1));
            if (fmt == VDIT_PIXFMT_RGB48) {
                const uint16_t *r16 = (const uint16_t *)(const void *)row;
                for (int ch = 0; ch < 3; ch++)
                    d[ch][x] = (float)r16[sx * 3 + ch] * (2.0f / 65535.0f) - 1.0f;
            } else {
                for (int ch = 0; ch < 3; ch++)
                    d[ch][x] = (float)row[sx * 3 + ch] * (2.0f / 255.0f) - 1.0f;
            }
        }
    }
}

/* Timeline position tpos of px into one frame of packed pixels (fmt, dw x
 * dh), centre-cropped, rounded, clamped. */
void vd_get_pixels(const float *px, int t, int h, int w, int tpos, uint8_t *dst,
                   ptrdiff_t stride, int fmt, int dw, int dh)
{
    int ox = (w - dw) / 2, oy = (h - dh) / 2;
    for (int y = 0; y < dh; y++) {
        uint8_t *row = dst + (ptrdiff_t)y * stride;
        for (int x = 0; x < dw; x++)
            for (int ch = 0; ch < 3; ch++) {
                float f = px[(((size_t)ch * t + tpos) * h + y + oy) * w + x + ox];
                if (fmt == VDIT_PIXFMT_RGB48) {
                    float q = (f + 1.0f) * 32767.5f + 0.5f;
                    q = q >= 0 ? (q <= 65535 ? q : 65535) : 0; /* NaN -> 0 */
                    ((uint16_t *)(void *)row)[x * 3 + ch] = (uint16_t)q;
                } else {
                    float q = (f + 1.0f) * 127.5f + 0.5f;
                    q = q >= 0 ? (q <= 255 ? q : 255) : 0; /* NaN -> 0: never cast NaN */
                    row[x * 3 + ch] = (uint8_t)q;
                }
            }
    }
}

/* Frame vf of v (clamped into the clip) into timeline position tpos of px
 * [3, T, H, W], centred, edges replicated. */
void vd_put_frame(const vdit_video *v, int vf, float *px, int t, int h, int w, int tpos)
{
    vf = VD_MAX(0, VD_MIN(vf, v->n_frames - 1));
    vd_put_pixels(v->rgb + (size_t)vf * v->height * v->width * 3, (ptrdiff_t)v->width * 3,
                  VDIT_PIXFMT_RGB24, v->width, v->height, px, t, h, w, tpos);
}

/* Timeline position tpos of px into frame vf of v, centre-cropped. */
void vd_get_frame(const float *px, int t, int h, int w, int tpos, vdit_video *v, int vf)
{
    vd_get_pixels(px, t, h, w, tpos, v->rgb + (size_t)vf * v->height * v->width * 3,
                  (ptrdiff_t)v->width * 3, VDIT_PIXFMT_RGB24, v->width, v->height);
}

/* ---- the engine -------------------------------------------------------------- */

static void renoise(float *x, const float *x0, const float *noise, float sigma, int64_t ch,
                    int64_t lt, int64_t hw, const uint8_t *fixed)
{
    for (int64_t c = 0; c < ch; c++)
        for (int64_t j = 0; j < lt; j++) {
            if (!fixed[j])
                continue;
            size_t o = (size_t)((c * lt + j) * hw);
            for (int64_t k = 0; k < hw; k++)
                x[o + k] = (1.0f - sigma) * x0[o + k] + sigma * noise[o + k];
        }
}

/* dst[:, j] = src[:, (j + off) mod lt] for j < ld (circular gather of
 * latent frames; src has lt frames, dst ld). */
static void gather(float *dst, int64_t ld, const float *src, int64_t lt, int64_t ch, int64_t hw,
                   int64_t off)
{
    for (int64_t c = 0; c < ch; c++)
        for (int64_t j = 0; j < ld; j++)
            memcpy(dst + (c * ld + j) * hw, src + (c * lt + ((j + off) % lt + lt) % lt) * hw,
                   sizeof(float) * (size_t)hw);
}

/* The denoising loop (pipeline.h: vd_denoise). */
int vd_denoise(vd_denoise_args *a)
{
    const vd_family *fam = a->fam;
    const vd_run_params *rp = a->rp;
    int64_t ch = a->g.z_dim, lt = a->lt, lh = a->lh, lw = a->lw, hw = lh * lw;
    int64_t n = ch * lt * hw;
    int steps = rp->steps, first = a->first, n_run = steps - first, ret = 0;
    float *x = a->x, *vc = NULL, *vu = NULL, *xr = NULL, *t_tok = NULL, *eps = NULL;
    const float *lat0 = a->lat0, *noise = a->noise;
    const uint8_t *fixed = a->fixed;
    const vd_cond *cond = a->cond, *uncond = a->uncond;
    vd_sampler *s = NULL;
    vd_step_cache *cache = NULL;
    int64_t fwd = 0, fwd_total = 0;
    int n_fixed = 0;
    for (int64_t j = 0; fixed && j < lt; j++)
        n_fixed += fixed[j] != 0;
    int pp = a->g.align / a->g.s_factor; /* latent pixels per patch side */
    int64_t tpf = (lh / pp) * (lw / pp); /* tokens per latent frame */
    /* A loop's DiT input has one more latent frame (see below). */
    int64_t n1 = a->circular ? ch * (lt + 1) * hw : n;
    if (n_run > 0) {
        s = vd_run_sampler(rp, n);
        if (rp->cache != VDIT_CACHE_OFF &&
            !(cache = fam->cache_new(rp->cache, rp->cache_threshold, rp->cache_max_skip)))
            goto nomem;
        vc = vd_malloc(sizeof(float) * (size_t)n1);
        vu = vd_malloc(sizeof(float) * (size_t)n1);
        xr = vd_malloc(sizeof(float) * (size_t)n1);
        if (!s || !vc || !vu || !xr)
            goto nomem;
        if (vd_sampler_needs_noise(s, first) && !(eps = vd_malloc(sizeof(float) * (size_t)n)))
            goto nomem;
        vd_sampler_reset(s, first);
        /* A family trained with per-token timesteps gets one per token, as
         * its reference hands them: its given latent frames clean at
         * timestep 0 (Wan2.2 TI2V's image frame), the others at the step's
         * (all equal in text-to-video: the same result as one timestep). */
        if (a->given_t0 &&
            !(t_tok = vd_malloc(sizeof(float) * (size_t)(tpf * (a->circular ? lt + 1 : lt)))))
            goto nomem;
        if (a->strength >= 0 && a->strength < 1.0f && lat0) {
            /* SDEdit (diffusers): the input noised to the first sigma run. */
            float sg = vd_sampler_sigma(s, first);
            for (int64_t k = 0; k < n; k++)
                x[k] = (1.0f - sg) * lat0[k] + sg * noise[k];
        } else {
            memcpy(x, noise, sizeof(float) * (size_t)n);
        }
    } else {
        memcpy(x, lat0 ? lat0 : noise, sizeof(float) * (size_t)n);
    }

    for (int i = first; i < steps; i++) {
        if (a->ctx && (ret = vd_ctx_progress(a->ctx, VDIT_STAGE_DENOISE, i - first, n_run)))
            goto done;
        float sg = vd_sampler_sigma(s, i);
        if (n_fixed)
            renoise(x, lat0, noise, a->clean_context ? 0.0f : sg, ch, lt, hw, fixed);
        if (a->tap)
            a->tap(a->tap_user, i, "latents", x, n);
        /* Loop: the time axis is rolled by a different offset r at every
         * step so that every pair of neighbours across the wrap is denoised
         * as adjacent frames, behind one sacrificial latent frame (the one
         * before z_r) in the DiT's first slot, which stands for a single
         * pixel frame in Wan; its velocity is dropped (docs/operations.md). */
        int64_t r = a->circular ? (int64_t)i % lt : 0, lin = lt, nin = n;
        const float *xin = x;
        if (a->circular) {
            lin = lt + 1;
            nin = n1;
            gather(xr, lin, x, lt, ch, hw, r - 1);
            xin = xr;
        }
        float t = vd_sampler_model_t(s, i);
        if (t_tok) {
            for (int64_t j = 0; j < lin; j++) {
                /* slot j holds latent frame j, or in a loop (j - 1 + r) mod lt */
                int64_t fj = a->circular ? ((j - 1 + r) % lt + lt) % lt : j;
                for (int64_t k = 0; k < tpf; k++)
                    t_tok[j * tpf + k] = fixed && fixed[fj] ? 0.0f : t;
            }
            if (a->tap)
                a->tap(a->tap_user, i, "t_tokens", t_tok, tpf * lin);
        }
        /* both branches of guidance in one batched pass; steps in the cache's
         * part of the run may reuse the residuals of the last one computed */
        int si = i - first, guided = uncond && si < (int)ceilf(rp->guidance_end * (float)n_run);
        int may_skip = si >= (int)(rp->cache_start * (float)n_run) &&
                       si < (int)ceilf(rp->cache_end * (float)n_run);
        const vd_cond *conds[2] = { cond, uncond };
        float *vouts[2] = { vc, vu };
        int computed = 1, nb = guided ? 2 : 1;
        vd_forward_args fa = { xin, lin, lh, lw, t, t_tok, nb, conds, vouts, cache, may_skip,
                               &computed };
        if ((ret = fam->forward(a->run, &fa)))
            goto done;
        fwd_total += nb;
        fwd += computed ? nb : 0;
        if (a->tap) {
            a->tap(a->tap_user, i, "noise_pred_cond", vc, nin);
            if (guided)
                a->tap(a->tap_user, i, "noise_pred_uncond", vu, nin);
        }
        if (guided) {
            float gs = rp->guidance;
            for (int64_t k = 0; k < nin; k++)
                vc[k] = vu[k] + gs * (vc[k] - vu[k]);
        }
        if (a->tap)
            a->tap(a->tap_user, i, "noise_pred_guided", vc, nin);
        if (a->circular) {
            /* velocity of z_((j - 1 + r) mod L) is in slot j >= 1 */
            for (int64_t cc = 0; cc < ch; cc++)
                for (int64_t j = 1; j < lin; j++)
                    memcpy(xr + (cc * lt + (j - 1 + r) % lt) * hw, vc + (cc * lin + j) * hw,
                           sizeof(float) * (size_t)hw);
            memcpy(vc, xr, sizeof(float) * (size_t)n);
        }
        /* few-step: fresh noise for the re-noising, from the seed, one
         * stream per step (docs/sampling.md, "Noise generator") */
        if (vd_sampler_needs_noise(s, i))
            vd_noise_fill(rp->seed, a->stream | (uint64_t)(i + 1) << 32, eps, n);
        if ((ret = vd_sampler_step_noise(s, i, vc, eps, x)))
            goto done;
        if (a->tap)
            a->tap(a->tap_user, i, "step_out", x, n);
    }
    if (n_run > 0 && a->ctx &&
        (ret = vd_ctx_progress(a->ctx, VDIT_STAGE_DENOISE, n_run, n_run)))
        goto done;
    if (n_fixed)
        renoise(x, lat0, noise, 0.0f, ch, lt, hw, fixed);
    a->forwards = fwd;
    a->forwards_total = fwd_total;
    goto done;
nomem:
    ret = VDIT_ERR_NOMEM;
done:
    vd_free(vc);
    vd_free(vu);
    vd_free(xr);
    vd_free(t_tok);
    vd_free(eps);
    vd_sampler_free(&s);
    if (cache)
        fam->cache_free(&cache);
    return ret;
}

int vd_run_job(vdit_ctx *c, const vd_run_params *rp, const vd_job *job, float **out, int *t_out)
{
    vdit_model *m = c->model;
    const vd_family *fam = m->fam;
    const vd_geom g = m->geom;
    int64_t ch = g.z_dim, tf = g.t_factor;
    int64_t lt = (job->t - 1) / tf + 1;
    int64_t lh = job->h / g.s_factor, lw = job->w / g.s_factor, hw = lh * lw;
    if ((job->t - 1) % tf || job->h % g.align || job->w % g.align)
        return vd_err(&c->log, VDIT_ERR_INTERNAL, "job of %d frames of %dx%d does not fit the "
                      "model's geometry (1 + %d k frames, multiples of %d)", job->t, job->w,
                      job->h, g.t_factor, g.align);
    int64_t n = ch * lt * hw;
    int steps = rp->steps, first = 0;
    int ret = 0;
    float *x = NULL, *noise = NULL, *lat0 = NULL, *dec_in = NULL, *px = NULL;
    uint8_t *fixed = NULL;
    const vd_cond *cond = NULL, *uncond = NULL;
    *out = NULL;
    if ((ret = vd_model_check_files(m, &c->log)))
        return ret;

    x = vd_malloc(sizeof(float) * (size_t)n);
    noise = vd_malloc(sizeof(float) * (size_t)n);
    fixed = calloc((size_t)lt, 1);
    if (!x || !noise || !fixed)
        goto nomem;
    int n_fixed = 0;
    if (job->known) {
        for (int64_t j = 0; j < lt; j++) {
            int a = j == 0 ? 0 : (int)(tf * j - tf + 1), b = (int)(j == 0 ? 0 : tf * j);
            int all = 1;
            for (int f = a; f <= b; f++)
                all &= job->known[f] != 0;
            fixed[j] = (uint8_t)all;
            n_fixed += all;
        }
    }
    int need_enc = job->px && (n_fixed || job->strength >= 0);
    first = vd_first_step(rp, job->strength);
    int n_run = steps - first;
    if (n_run > 0) {
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_TEXT, 0, 2)) ||
            (ret = vd_ctx_cond(c, 0, rp->prompt, &cond)) ||
            (ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_TEXT, 1, 2)))
            goto fail;
        if (rp->guidance != 1.0f && (ret = vd_ctx_cond(c, 1, rp->negative, &uncond)))
            goto fail;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_TEXT, 2, 2)))
            goto fail;
    }
    if (need_enc) {
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_VIDEO, 0, 1)))
            goto fail;
        if (!(lat0 = vd_malloc(sizeof(float) * (size_t)n)))
            goto nomem;
        /* Without SDEdit only the fixed latent frames are read, and the VAE
         * is causal: the pixel frames up to the last of them are enough (an
         * image-to-video job encodes its one frame, not the whole timeline). */
        int64_t jmax = lt - 1;
        while (job->strength < 0 && jmax > 0 && !fixed[jmax])
            jmax--;
        if (jmax == lt - 1) {
            ret = fam->vae_encode(m, c->kc, job->px, job->t, job->h, job->w, lat0);
        } else {
            int te = (int)(1 + tf * jmax);
            size_t fs = (size_t)job->h * job->w;
            float *sub = vd_malloc(sizeof(float) * 3 * (size_t)te * fs);
            float *lsub = vd_malloc(sizeof(float) * (size_t)(ch * (jmax + 1) * hw));
            if (!sub || !lsub) {
                vd_free(sub);
                vd_free(lsub);
                goto nomem;
            }
            for (int cc = 0; cc < 3; cc++)
                memcpy(sub + (size_t)cc * te * fs, job->px + (size_t)cc * job->t * fs,
                       sizeof(float) * (size_t)te * fs);
            ret = fam->vae_encode(m, c->kc, sub, te, job->h, job->w, lsub);
            memset(lat0, 0, sizeof(float) * (size_t)n);
            for (int64_t cc = 0; !ret && cc < ch; cc++)
                memcpy(lat0 + cc * lt * hw, lsub + cc * (jmax + 1) * hw,
                       sizeof(float) * (size_t)((jmax + 1) * hw));
            vd_free(sub);
            vd_free(lsub);
        }
        if (ret)
            goto fail;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_VIDEO, 1, 1)))
            goto fail;
    }
    vd_noise_fill(rp->seed, job->stream, noise, n);
    vd_denoise_args da = { fam, c->run, g, cond, uncond, rp, first, job->strength, lt, lh, lw,
                           x, lat0, noise, fixed, m->clean_context, m->given_t0,
                           job->circular, c, NULL, NULL, 0, 0, job->stream };
    ret = vd_denoise(&da);
    if (ret == VDIT_ERR_NOMEM)
        goto nomem;
    if (ret)
        goto fail;
    c->stats.forwards += da.forwards;
    c->stats.forwards_total += da.forwards_total;
    if (n_run > 0)
        vd_logf(&c->log, VDIT_LOG_INFO, "denoise: %lld of %lld DiT forwards computed%s",
                (long long)da.forwards, (long long)da.forwards_total,
                rp->cache != VDIT_CACHE_OFF ? " (step cache on)" : "");
    if (n_fixed)
        renoise(x, lat0, noise, 0.0f, ch, lt, hw, fixed);

    /* Decode. A loop decodes [z_{L-2}, z_{L-1}, z_0 .. z_{L-1}] and drops
     * the first 5 pixel frames (the two latent frames of history): 4L
     * frames, z_0's decoded after z_{L-1} as the wrap needs. */
    if ((ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, 0, 1)))
        goto fail;
    int64_t dl = job->circular ? lt + 2 : lt;
    const float *zin = x;
    if (job->circular) {
        if (!(dec_in = vd_malloc(sizeof(float) * (size_t)(ch * dl * hw))))
            goto nomem;
        gather(dec_in, dl, x, lt, ch, hw, -2);
        zin = dec_in;
    }
    int td = (int)(1 + tf * (dl - 1));
    if (!(px = vd_malloc(sizeof(float) * 3 * (size_t)td * (size_t)job->h * (size_t)job->w)))
        goto nomem;
    if ((ret = vd_decode(m, c->kc, zin, (int)dl, (int)lh, (int)lw, px)))
        goto fail;
    /* Garbage weights (a corrupt or overflowing checkpoint) give NaN or Inf
     * that would silently turn into black or white frames: say so instead.
     * The scan costs nothing next to the decode. */
    size_t n_px = 3 * (size_t)td * (size_t)job->h * (size_t)job->w;
    for (size_t k = 0; k < n_px; k++)
        if (!isfinite(px[k])) {
            ret = vd_err(&c->log, VDIT_ERR_FORMAT,
                         "the decoded video holds non-finite values (NaN or Inf): a model "
                         "checkpoint is corrupt or its weights overflow");
            goto fail;
        }
    if (job->circular) {
        /* drop the history's 5 pixel frames */
        size_t fsz = (size_t)job->h * (size_t)job->w;
        for (int cc = 0; cc < 3; cc++)
            memmove(px + (size_t)cc * (td - 5) * fsz, px + ((size_t)cc * td + 5) * fsz,
                    sizeof(float) * (size_t)(td - 5) * fsz);
        td -= 5;
    }
    if ((ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, 1, 1)))
        goto fail;
    *out = px;
    *t_out = td;
    px = NULL;
    goto done;
nomem:
    ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory (latent %lldx%lldx%lldx%lld)",
                 (long long)ch, (long long)lt, (long long)lh, (long long)lw);
fail:
done:
    vd_free(x);
    vd_free(noise);
    vd_free(lat0);
    vd_free(dec_in);
    vd_free(px);
    free(fixed);
    return ret;
}

/* Re-decodes the loop v[f0 .. f0 + 4p - 1] so that its first frame is
 * decoded after its last, as any frame after the one before it (a
 * convolution padded circularly in time does the same): the encoder sees
 * the loop's last frame (Wan's lone first frame) and then `turns` turns of
 * the loop. hist = 0: the decoder takes the encoder's latent frames as they
 * come and the last turn's frames are kept (with one turn, the clip [last
 * frame, loop] decoded as is). hist > 0: the last turn's p latent frames are
 * decoded after hist latent frames of their own cycle, the periodic steady
 * state for a VAE that stays accurate that far from a clip's start.
 * Streams: memory does not grow with turns or hist (docs/operations.md). */
int vd_loop_decode(vdit_ctx *c, vdit_video *v, int f0, int p, int turns, int hist,
                            int h, int w)
{
    vdit_model *m = c->model;
    const vd_family *fam = m->fam;
    int n = 4 * p, ret = 0;
    if (p < 1 || turns < 1 || hist < 0 || f0 < 0 || f0 + n > v->n_frames)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "loop decode: frames %d..%d of %d, %d turns, history %d", f0, f0 + n - 1,
                      v->n_frames, turns, hist);
    int64_t lh = h / m->geom.s_factor, lw = w / m->geom.s_factor, lsz = m->geom.z_dim * lh * lw;
    size_t fsz = (size_t)h * w;
    int total = hist ? hist + p : 1 + turns * p, done_l = 0;
    void *es = NULL, *ds = NULL;
    float *frames = vd_malloc(sizeof(float) * 3 * fsz * (size_t)m->geom.t_factor);
    float *lat = vd_malloc(sizeof(float) * (size_t)(lsz * p));
    if (!frames || !lat) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory (loop decode)");
        goto done;
    }
    if (!(es = fam->enc_stream_new(m, c->kc, h, w, &c->log)) ||
        !(ds = vd_dec_stream_new(m, c->kc, (int)lh, (int)lw, &c->log))) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    /* f: the loop frame the next decoded pixel frame is (-1: the lone frame) */
    int k = 0, f = -1;
    for (int i = -1; i < turns * n; i++) {
        int got = 0;
        vd_put_frame(v, f0 + (i < 0 ? n - 1 : i % n), frames, 1, h, w, 0);
        float *z = lat + (size_t)(k % p) * (size_t)lsz;
        if ((ret = fam->enc_stream_push(es, frames, z, &got)))
            goto done;
        if (!got)
            continue;
        if (i >= (turns - 1) * n)
            k++; /* one of the last turn's latent frames */
        if (hist)
            continue;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, done_l++, total)) ||
            (ret = vd_dec_stream_push(m, ds, z, frames, &got)))
            goto done;
        for (int q = 0; q < got; q++, f++)
            if (f >= (turns - 1) * n)
                vd_get_frame(frames + (size_t)q * 3 * fsz, 1, h, w, 0, v, f0 + f % n);
    }
    if (k != p) {
        ret = vd_err(&c->log, VDIT_ERR_INTERNAL, "loop: %d latent frames for a cycle of %d", k, p);
        goto done;
    }
    for (int j = -hist; hist && j < p; j++) {
        int got = 0;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, done_l++, total)) ||
            (ret = vd_dec_stream_push(m, ds, lat + (size_t)((j % p + p) % p) * (size_t)lsz,
                                          frames, &got)))
            goto done;
        for (int q = 0; j >= 0 && q < got; q++)
            vd_get_frame(frames + (size_t)q * 3 * fsz, 1, h, w, 0, v, f0 + 4 * j + q);
    }
    ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, total, total);
done:
    fam->stream_free(&es);
    vd_dec_stream_free(m, &ds);
    vd_free(frames);
    vd_free(lat);
    return ret;
}

