/* The denoising engine and the operations built on it: text to video /
 * image, SDEdit, extend, loop and bridge. docs/operations.md explains each
 * operation; docs/sampling.md the sampler, strength and noise.
 *
 * Everything is one primitive, vd_run_job(): a pixel timeline of T = 1 + 4k
 * frames in which some frames are given. It is VAE-encoded; latent frames
 * whose pixel frames are all given are held fixed (re-noised to the current
 * sigma before every model call and replaced by their clean value at the
 * end); the others start from noise, or, for SDEdit, from the encoded
 * pixels noised to the starting sigma. Sizes the model cannot take are
 * padded: width and height up to multiples of 16 (VAE 8 x patch 2) by
 * centred edge replication, frame counts up to 1 + 4k by repeating the last
 * frame; the result is cropped and trimmed back.
 */
#include <math.h>
#include <stdio.h>

#include "pipeline.h"

#define VAE_SPATIAL 8
#define VAE_TEMPORAL 4

int vd_align16(int x)
{
    return (x + 15) / 16 * 16;
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
    rp->cache = p->cache == VDIT_CACHE_EASY ? VD_CACHE_EASY
                : p->cache == VDIT_CACHE_TEA ? VD_CACHE_TEA
                                             : VD_CACHE_OFF;
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
    rp->sampler = smp == VDIT_SAMPLER_DPMPP   ? VD_SAMPLER_DPMPP
                  : smp == VDIT_SAMPLER_EULER ? VD_SAMPLER_EULER
                                              : VD_SAMPLER_UNIPC;
    return resolve_cache(c, p, rp);
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

/* Guidance's branches run as one batched pass when its activations fit in
 * this (else one after the other, with the same result). */
#define VD_GUIDANCE_BATCH_BYTES ((size_t)3 << 30)

int vd_run_job(vdit_ctx *c, const vd_run_params *rp, const vd_job *job, float **out, int *t_out)
{
    vdit_model *m = c->model;
    int64_t ch = m->z_dim;
    int64_t lt = (job->t - 1) / VAE_TEMPORAL + 1;
    int64_t lh = job->h / VAE_SPATIAL, lw = job->w / VAE_SPATIAL, hw = lh * lw;
    int64_t n = ch * lt * hw;
    int steps = rp->steps, first = 0;
    int ret = 0;
    float *x = NULL, *noise = NULL, *lat0 = NULL, *vc = NULL, *vu = NULL, *xr = NULL,
          *dec_in = NULL, *px = NULL;
    uint8_t *fixed = NULL;
    vd_sampler *s = NULL;
    vd_dit_cache *cache = NULL;
    const vd_dit_cond *cond = NULL, *uncond = NULL;
    int64_t fwd = 0, fwd_total = 0;
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
            int a = j == 0 ? 0 : (int)(4 * j - 3), b = (int)(j == 0 ? 0 : 4 * j);
            int all = 1;
            for (int f = a; f <= b; f++)
                all &= job->known[f] != 0;
            fixed[j] = (uint8_t)all;
            n_fixed += all;
        }
    }
    int need_enc = job->px && (n_fixed || job->strength >= 0);
    if (job->strength >= 0) {
        int n_run = (int)(job->strength * (float)steps);
        n_run = VD_MIN(VD_MAX(n_run, 0), steps);
        first = steps - n_run;
    }
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
        if ((ret = vd_vae_encode(m->vae, c->kc, job->px, job->t, job->h, job->w, lat0, NULL)))
            goto fail;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_ENCODE_VIDEO, 1, 1)))
            goto fail;
    }
    vd_noise_fill(rp->seed, job->stream, noise, n);

    /* A loop's DiT input has one more latent frame (see below). */
    int64_t n1 = job->circular ? ch * (lt + 1) * hw : n;
    if (n_run > 0) {
        s = vd_sampler_new(rp->sampler, steps, rp->shift, n);
        if (rp->cache != VD_CACHE_OFF &&
            !(cache = vd_dit_cache_new(rp->cache, rp->cache_threshold, rp->cache_max_skip)))
            goto nomem;
        vc = vd_malloc(sizeof(float) * (size_t)n1);
        vu = vd_malloc(sizeof(float) * (size_t)n1);
        xr = vd_malloc(sizeof(float) * (size_t)n1);
        if (!s || !vc || !vu || !xr)
            goto nomem;
        vd_sampler_reset(s, first);
        if (job->strength >= 0 && job->strength < 1.0f && lat0) {
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
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_DENOISE, i - first, n_run)))
            goto fail;
        float sg = vd_sampler_sigma(s, i);
        if (n_fixed)
            renoise(x, lat0, noise, m->clean_context ? 0.0f : sg, ch, lt, hw, fixed);
        /* Loop: the time axis is rolled by a different offset r at every
         * step so that every pair of neighbours across the wrap is denoised
         * as adjacent frames, behind one sacrificial latent frame (the one
         * before z_r) in the DiT's first slot, which stands for a single
         * pixel frame in Wan; its velocity is dropped (docs/operations.md). */
        int64_t r = job->circular ? (int64_t)i % lt : 0, lin = lt, nin = n;
        const float *xin = x;
        if (job->circular) {
            lin = lt + 1;
            nin = n1;
            gather(xr, lin, x, lt, ch, hw, r - 1);
            xin = xr;
        }
        float t = (float)vd_sampler_timestep(s, i);
        /* both branches of guidance in one batched pass; steps in the cache's
         * part of the run may reuse the residuals of the last one computed */
        int si = i - first, guided = uncond && si < (int)ceilf(rp->guidance_end * (float)n_run);
        int may_skip = si >= (int)(rp->cache_start * (float)n_run) &&
                       si < (int)ceilf(rp->cache_end * (float)n_run);
        const vd_dit_cond *conds[2] = { cond, uncond };
        float *vouts[2] = { vc, vu };
        int computed = 1, nb = guided ? 2 : 1;
        if ((ret = vd_dit_forward_batch(c->run, xin, NULL, lin, lh, lw, t, nb, conds, vouts,
                                        VD_GUIDANCE_BATCH_BYTES, cache, may_skip, &computed)))
            goto fail;
        fwd_total += nb;
        fwd += computed ? nb : 0;
        if (guided) {
            float g = rp->guidance;
            for (int64_t k = 0; k < nin; k++)
                vc[k] = vu[k] + g * (vc[k] - vu[k]);
        }
        if (job->circular) {
            /* velocity of z_((j - 1 + r) mod L) is in slot j >= 1 */
            for (int64_t cc = 0; cc < ch; cc++)
                for (int64_t j = 1; j < lin; j++)
                    memcpy(xr + (cc * lt + (j - 1 + r) % lt) * hw, vc + (cc * lin + j) * hw,
                           sizeof(float) * (size_t)hw);
            memcpy(vc, xr, sizeof(float) * (size_t)n);
        }
        if ((ret = vd_sampler_step(s, i, vc, x)))
            goto fail;
    }
    if (n_run > 0 && (ret = vd_ctx_progress(c, VDIT_STAGE_DENOISE, n_run, n_run)))
        goto fail;
    c->stats.forwards += fwd;
    c->stats.forwards_total += fwd_total;
    if (n_run > 0)
        vd_logf(&c->log, VDIT_LOG_INFO, "denoise: %lld of %lld DiT forwards computed%s",
                (long long)fwd, (long long)fwd_total, cache ? " (step cache on)" : "");
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
    int td = (int)(1 + VAE_TEMPORAL * (dl - 1));
    if (!(px = vd_malloc(sizeof(float) * 3 * (size_t)td * (size_t)job->h * (size_t)job->w)))
        goto nomem;
    if ((ret = vd_vae_decode(m->vae, c->kc, zin, (int)dl, (int)lh, (int)lw, px)))
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
    vd_free(vc);
    vd_free(vu);
    vd_free(xr);
    vd_free(dec_in);
    vd_free(px);
    free(fixed);
    vd_sampler_free(&s);
    vd_dit_cache_free(&cache);
    return ret;
}

/* ---- operations ---------------------------------------------------------------- */

static int check_size(vdit_ctx *c, int w, int h, int n)
{
    if (w < 1 || h < 1 || w > 8192 || h > 8192)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "size %dx%d out of range (1..8192)", w, h);
    if (n < 1 || n > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "frame count %d out of range (1..100000)",
                      n);
    return 0;
}

static int check_video(vdit_ctx *c, const vdit_video *v, const char *what)
{
    if (!v || !v->rgb)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "%s: no video given", what);
    if (check_size(c, v->width, v->height, v->n_frames))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "%s: %dx%d with %d frames is out of range",
                      what, v->width, v->height, v->n_frames);
    return 0;
}

static int start(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp, vdit_video **out)
{
    if (!c)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(c);
    if (!out)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    vdit_gen_params defp;
    if (!p) {
        vdit_gen_params_default(&defp);
        p = &defp;
    }
    return vd_resolve_params(c, p, rp);
}

static int extend_forward(vdit_ctx *c, const vd_run_params *rp, int h, int w, int tw, int kmax,
                          int tw1, vdit_video *v, int cur, uint64_t win0);

/* Source frames of a window: f0 .. f0 + n - 1 of v. */
typedef struct span {
    const vdit_video *v;
    int f0, n;
} span;

static int fill_window(vdit_ctx *c, const vd_run_params *rp, int h, int w, span a, int pad_front,
                       int n_gen, int pad_back, span b, float strength, uint64_t stream,
                       vdit_video *dst, int d0);

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
    int n = 4 * p, ret = 0;
    if (p < 1 || turns < 1 || hist < 0 || f0 < 0 || f0 + n > v->n_frames)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "loop decode: frames %d..%d of %d, %d turns, history %d", f0, f0 + n - 1,
                      v->n_frames, turns, hist);
    int64_t lh = h / VAE_SPATIAL, lw = w / VAE_SPATIAL, lsz = m->z_dim * lh * lw;
    size_t fsz = (size_t)h * w;
    int total = hist ? hist + p : 1 + turns * p, done_l = 0;
    vd_vae_stream *es = NULL, *ds = NULL;
    float *frames = vd_malloc(sizeof(float) * 3 * fsz * VAE_TEMPORAL);
    float *lat = vd_malloc(sizeof(float) * (size_t)(lsz * p));
    if (!frames || !lat) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory (loop decode)");
        goto done;
    }
    if ((ret = vd_vae_enc_stream_new(m->vae, c->kc, h, w, 0, &es)) ||
        (ret = vd_vae_dec_stream_new(m->vae, c->kc, (int)lh, (int)lw, 0, &ds)))
        goto done;
    /* f: the loop frame the next decoded pixel frame is (-1: the lone frame) */
    int k = 0, f = -1;
    for (int i = -1; i < turns * n; i++) {
        int got = 0;
        vd_put_frame(v, f0 + (i < 0 ? n - 1 : i % n), frames, 1, h, w, 0);
        float *z = lat + (size_t)(k % p) * (size_t)lsz;
        if ((ret = vd_vae_enc_stream_push(es, frames, z, &got)))
            goto done;
        if (!got)
            continue;
        if (i >= (turns - 1) * n)
            k++; /* one of the last turn's latent frames */
        if (hist)
            continue;
        if ((ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, done_l++, total)) ||
            (ret = vd_vae_dec_stream_push(ds, z, frames, &got)))
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
            (ret = vd_vae_dec_stream_push(ds, lat + (size_t)((j % p + p) % p) * (size_t)lsz,
                                          frames, &got)))
            goto done;
        for (int q = 0; j >= 0 && q < got; q++)
            vd_get_frame(frames + (size_t)q * 3 * fsz, 1, h, w, 0, v, f0 + 4 * j + q);
    }
    ret = vd_ctx_progress(c, VDIT_STAGE_DECODE, total, total);
done:
    vd_vae_stream_free(&es);
    vd_vae_stream_free(&ds);
    vd_free(frames);
    vd_free(lat);
    return ret;
}

/* Noise stream of a loop's closing window (windows of a long clip count up from 1). */
#define VD_LOOP_STREAM 0x4c4f4f50u

int vdit_generate(vdit_ctx *c, const vdit_gen_params *p, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret)
        return ret;
    const vdit_model_info *in = &c->model->info;
    int w = p && p->width > 0 ? p->width : in->width;
    int h = p && p->height > 0 ? p->height : in->height;
    int nf = p && p->n_frames > 0 ? p->n_frames : in->n_frames;
    if (p && (p->width < 0 || p->height < 0 || p->n_frames < 0))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "negative width, height or frame count");
    if ((ret = check_size(c, w, h, nf)))
        return ret;
    int loop = p && p->loop;
    /* A loop of 8 frames or more is a clip whose last 4 frames are then
     * made again as a bridge from the frame before them back to its first
     * 8 frames (docs/operations.md); shorter loops, and every loop of a
     * model whose vdit.json says "loop": "circular", denoise a circular
     * timeline (vd_run_job). The clip is made one frame longer and its
     * first frame dropped: a clip's first frame is decoded alone (Wan's
     * first latent frame) and stands apart from the rest, and the loop
     * then starts on a whole latent frame of 4. */
    int loop_back = loop && nf >= 8 && !c->model->circular_loop;
    /* the finished loop is decoded after its own last frame (vd_loop_decode;
     * vdit.json "loop_turns" 0 leaves it out): whole latent frames, 4k */
    int loop_decode = loop_back && c->model->loop_turns > 0;
    if (loop_decode)
        nf = (nf + 3) / 4 * 4;
    if (loop_back) {
        loop = 0;
        if ((ret = vd_check_strength(&c->log, p->strength)))
            return ret;
        nf++;
    }
    vd_job job = { 0 };
    job.h = vd_align16(h);
    job.w = vd_align16(w);
    job.strength = -1;
    if (loop) {
        if (nf < 4)
            return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                          "a loop needs at least 4 frames (got %d)", nf);
        nf = (nf + 3) / 4 * 4; /* a loop is 4 frames per latent frame */
        job.t = 1 + (nf / 4 - 1) * 4;
        job.circular = 1;
    } else {
        job.t = vd_align_frames(nf);
    }
    /* Longer than the model's length: the first window is generated, the
     * rest continues from it window by window (as vdit_extend), so cost
     * grows linearly and every window stays within what the model learnt. */
    int tw = VD_MAX(vd_align_frames(in->n_frames), 5);
    int first = nf;
    if (!loop && job.t > tw) {
        job.t = tw;
        first = tw;
    }
    float *px = NULL;
    int td = 0;
    if ((ret = vd_run_job(c, &rp, &job, &px, &td)))
        return ret;
    vdit_video *v = vdit_video_new(w, h, nf);
    if (!v) {
        vd_free(px);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    for (int f = 0; f < first; f++)
        vd_get_frame(px, td, job.h, job.w, f, v, f);
    vd_free(px);
    if (first < nf) {
        int kmax = VD_MAX(1, ((tw - 1) / 4 + 1) / 4);
        if ((ret = extend_forward(c, &rp, job.h, job.w, tw, kmax, tw, v, first, 1))) {
            vdit_video_free(&v);
            return ret;
        }
    }
    if (loop_back) {
        /* from a crossfade of the frame before the tail into the loop's
         * first frame, as a bridge at the call's strength, with the loop's
         * first 8 frames after it (two latent frames: the motion to join;
         * a loop under 12 frames lends some of the frames being made again,
         * as first made) */
        const span a = { v, nf - 5, 1 }, b = { v, 1, 8 };
        if ((ret = fill_window(c, &rp, job.h, job.w, a, 0, 4, 0, b, p->strength, VD_LOOP_STREAM, v,
                               nf - 4))) {
            vdit_video_free(&v);
            return ret;
        }
        if (loop_decode && (ret = vd_loop_decode(c, v, 1, (nf - 1) / 4, c->model->loop_turns,
                                                 c->model->loop_history, job.h, job.w))) {
            vdit_video_free(&v);
            return ret;
        }
        size_t fsz = (size_t)w * h * 3;
        memmove(v->rgb, v->rgb + fsz, fsz * (size_t)(nf - 1));
        v->n_frames = nf - 1;
    }
    *out = v;
    return 0;
}

/* A clip longer than one window is edited as a stream: window by window,
 * each continuing from the previous window's output (stream.c), so the
 * attention cost stays that of one window and no seam shows. */
static int edit_windows(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, int win,
                        vdit_video **out)
{
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    if (p)
        sp.gen = *p;
    sp.window = win;
    vdit_stream *s = NULL;
    int cancel = atomic_load(&c->cancel); /* open starts a call: keep a pending cancel */
    int ret = vdit_stream_open(c, &sp, in->width, in->height, &s);
    if (ret)
        return ret;
    if (cancel)
        atomic_store(&c->cancel, 1);
    vdit_video *v = vdit_video_new(in->width, in->height, in->n_frames);
    if (!v) {
        vdit_stream_close(&s);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    size_t fsz = (size_t)in->width * in->height * 3;
    int sent = 0, got = 0;
    while (got < in->n_frames) {
        if (sent < in->n_frames) {
            vdit_frame f = { in->width, in->height, in->rgb + fsz * sent, in->width * 3, sent,
                             NULL };
            ret = vd_stream_send(s, &f, 0);
            if (!ret) {
                if (++sent == in->n_frames)
                    vdit_stream_drain(s);
                continue;
            }
            if (ret != VDIT_ERR_AGAIN)
                break;
        }
        vdit_frame o;
        ret = vd_stream_receive(s, &o);
        if (ret == VDIT_ERR_AGAIN)
            continue;
        if (ret)
            break;
        memcpy(v->rgb + fsz * got++, o.rgb, fsz);
    }
    vdit_stream_close(&s);
    if (got != in->n_frames) {
        vdit_video_free(&v);
        return ret ? ret : vd_err(&c->log, VDIT_ERR_INTERNAL, "stream lost frames");
    }
    *out = v;
    return 0;
}

int vdit_edit(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, in, "edit input")))
        return ret;
    float strength = p ? p->strength : (float)VDIT_DEFAULT_STRENGTH;
    if ((ret = vd_check_strength(&c->log, strength)))
        return ret;
    int win = p && p->n_frames > 0 ? p->n_frames : c->model->info.n_frames;
    if (in->n_frames > vd_align_frames(win))
        return edit_windows(c, p, in, win, out);
    vd_job job = { 0 };
    job.h = vd_align16(in->height);
    job.w = vd_align16(in->width);
    job.t = vd_align_frames(in->n_frames);
    job.strength = strength;
    float *clip = vd_malloc(sizeof(float) * 3 * (size_t)job.t * job.h * job.w);
    if (!clip)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    for (int f = 0; f < job.t; f++)
        vd_put_frame(in, f, clip, job.t, job.h, job.w, f);
    job.px = clip;
    float *px = NULL;
    int td = 0;
    ret = vd_run_job(c, &rp, &job, &px, &td);
    vd_free(clip);
    if (ret)
        return ret;
    vdit_video *v = vdit_video_new(in->width, in->height, in->n_frames);
    if (!v) {
        vd_free(px);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    for (int f = 0; f < in->n_frames; f++)
        vd_get_frame(px, td, job.h, job.w, f, v, f);
    vd_free(px);
    *out = v;
    return 0;
}

/* One window of an in-time fill: [a: ca given frames | n_gen new | b: cb
 * given frames] (a or b may be absent), T = 1 + 4k. a's frames are the
 * first ca of its timeline (latent aligned: ca = 4k - 3); b's fill the end.
 * Frames past the end of a source repeat its last frame. The n_gen new
 * frames go to dst[d0 ...]. */
static int fill_window(vdit_ctx *c, const vd_run_params *rp, int h, int w, span a, int pad_front,
                       int n_gen, int pad_back, span b, float strength, uint64_t stream,
                       vdit_video *dst, int d0)
{
    int t = a.n + pad_front + n_gen + pad_back + b.n;
    if ((t - 1) % 4)
        return vd_err(&c->log, VDIT_ERR_INTERNAL, "window of %d frames is not 1 + 4k", t);
    vd_job job = { 0 };
    job.t = t;
    job.h = h;
    job.w = w;
    job.strength = strength;
    job.stream = stream;
    float *clip = vd_malloc(sizeof(float) * 3 * (size_t)t * h * w);
    uint8_t *known = calloc((size_t)t, 1);
    if (!clip || !known) {
        vd_free(clip);
        free(known);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    /* Given frames; the rest hold the nearest given frame (only the
     * encoder sees them: those latents start from noise), or, between two
     * sources, a crossfade from a's last frame to b's first (the start of
     * a bridge at strength < 1). */
    for (int f = 0; f < a.n; f++) {
        vd_put_frame(a.v, a.f0 + f, clip, t, h, w, f);
        known[f] = 1;
    }
    for (int f = 0; f < b.n; f++) {
        vd_put_frame(b.v, b.f0 + f, clip, t, h, w, t - b.n + f);
        known[t - b.n + f] = 1;
    }
    for (int f = a.n; f < t - b.n; f++) {
        if (a.n)
            vd_put_frame(a.v, a.f0 + a.n - 1, clip, t, h, w, f);
        else
            vd_put_frame(b.v, b.f0, clip, t, h, w, f);
    }
    if (a.n && b.n && t - b.n > a.n) {
        float *fb = vd_malloc(sizeof(float) * 3 * (size_t)h * w);
        if (!fb) {
            vd_free(clip);
            free(known);
            return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        }
        vd_put_frame(b.v, b.f0, fb, 1, h, w, 0);
        int g0 = a.n, ng = t - b.n - a.n;
        size_t fsz = (size_t)h * w;
        for (int f = g0; f < g0 + ng; f++) {
            float wb = (float)(f - g0 + 1) / (float)(ng + 1);
            for (int ch = 0; ch < 3; ch++) {
                float *d = clip + ((size_t)ch * t + f) * fsz;
                const float *e = fb + (size_t)ch * fsz;
                for (size_t k = 0; k < fsz; k++)
                    d[k] += wb * (e[k] - d[k]);
            }
        }
        vd_free(fb);
    }
    job.px = clip;
    job.known = known;
    float *px = NULL;
    int td = 0;
    int ret = vd_run_job(c, rp, &job, &px, &td);
    vd_free(clip);
    free(known);
    if (ret)
        return ret;
    for (int f = 0; f < n_gen; f++)
        vd_get_frame(px, td, h, w, a.n + pad_front + f, dst, d0 + f);
    vd_free(px);
    return 0;
}

/* Fills frames cur .. v->n_frames - 1 of v window by window, each window
 * keeping the last 4k - 3 frames made so far (k <= kmax latent frames,
 * aligned with the start of its timeline); windows are tw frames long, tw1
 * where only one latent frame is kept. Windows use noise streams win0,
 * win0 + 1... */
static int extend_forward(vdit_ctx *c, const vd_run_params *rp, int h, int w, int tw, int kmax,
                          int tw1, vdit_video *v, int cur, uint64_t win0)
{
    const span none = { NULL, 0, 0 };
    int ret = 0;
    while (cur < v->n_frames) {
        int k = VD_MIN(kmax, (cur + 3) / 4);
        int ca = 4 * k - 3;
        int n_gen = VD_MIN(v->n_frames - cur, (k > 1 ? tw : tw1) - ca);
        int pad = vd_align_frames(ca + n_gen) - (ca + n_gen);
        span a = { v, cur - ca, ca };
        if ((ret = fill_window(c, rp, h, w, a, 0, n_gen, pad, none, -1, win0++, v, cur)))
            return ret;
        cur += n_gen;
    }
    return 0;
}

/* An extension's windows keep at least two latent frames of context where
 * there are that many: one holds no motion to go on from (forward it is a
 * single frame), and the joint then stops or turns back (docs/operations.md).
 * Those windows are widened to 13 frames where the model's are shorter (5
 * new frames beside 8 held, 8 beside 5); *tw1 is the window that keeps one
 * latent frame. A window the caller set keeps its length. */
static void context_plan(int *tw, int *kmax, int *tw1, int caller_set)
{
    *tw1 = *tw;
    if (*tw < 13 && !caller_set)
        *tw = 13;
    if (*tw >= 13)
        *kmax = VD_MAX(*kmax, 2);
}

/* Window length and the most latent frames of context a window keeps. */
static void window_plan(vdit_ctx *c, const vdit_gen_params *p, int *tw, int *kmax)
{
    int nw = p && p->n_frames > 0 ? p->n_frames : c->model->info.n_frames;
    *tw = VD_MAX(vd_align_frames(nw), 5);
    int lt = (*tw - 1) / 4 + 1;
    *kmax = VD_MAX(1, lt / 4);
}

int vdit_extend(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, int n_new,
                int backward, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, in, "extend input")))
        return ret;
    if (n_new < 1 || n_new > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "new frame count %d out of range (1..100000)", n_new);
    int h = vd_align16(in->height), w = vd_align16(in->width);
    int tw, kmax, tw1;
    window_plan(c, p, &tw, &kmax);
    context_plan(&tw, &kmax, &tw1, p && p->n_frames > 0);
    int total = in->n_frames + n_new;
    vdit_video *v = vdit_video_new(in->width, in->height, total);
    if (!v)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    size_t fsz = (size_t)in->width * in->height * 3;
    const span none = { NULL, 0, 0 };
    uint64_t win = 0;
    if (!backward) {
        /* Windows move forward; each keeps the last 4k - 3 frames made so
         * far (k latent frames, aligned with the start of its timeline). */
        memcpy(v->rgb, in->rgb, fsz * in->n_frames);
        if ((ret = extend_forward(c, &rp, h, w, tw, kmax, tw1, v, in->n_frames, 0)))
            goto fail;
    } else {
        /* Windows move backward; each keeps the first 4k frames known so
         * far (k latent frames aligned with the end of its timeline; a clip
         * shorter than 4 frames is held on its last frame). */
        memcpy(v->rgb + fsz * n_new, in->rgb, fsz * in->n_frames);
        int first = n_new;
        while (first > 0) {
            int have = total - first;
            int k = VD_MIN(kmax, VD_MAX(1, have / 4));
            int cb = 4 * k;
            int n_gen = VD_MIN(first, (k > 1 ? tw : tw1) - cb);
            int pad = (4 - (n_gen - 1) % 4) % 4;
            span b = { v, first, cb };
            if ((ret = fill_window(c, &rp, h, w, none, pad, n_gen, 0, b, -1, win++, v,
                                   first - n_gen)))
                goto fail;
            first -= n_gen;
        }
    }
    *out = v;
    return 0;
fail:
    vdit_video_free(&v);
    return ret;
}

int vdit_bridge(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *a, const vdit_video *b,
                int n_mid, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, a, "bridge first clip")) ||
        (ret = check_video(c, b, "bridge second clip")))
        return ret;
    if (a->width != b->width || a->height != b->height)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "bridge clips differ in size (%dx%d and %dx%d)", a->width, a->height,
                      b->width, b->height);
    if (n_mid < 1 || n_mid > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "bridge frame count %d out of range (1..100000)", n_mid);
    float strength = p ? p->strength : (float)VDIT_DEFAULT_STRENGTH;
    if ((ret = vd_check_strength(&c->log, strength)))
        return ret;
    int h = vd_align16(a->height), w = vd_align16(a->width);
    int tw, kmax;
    window_plan(c, p, &tw, &kmax);
    /* One window: a's tail (4ka - 3 frames), the new frames, b's head (4kb
     * frames, plus up to 3 more so the timeline is 1 + 4k: those share a
     * latent frame with new ones and are generated, not held). */
    int ka = VD_MIN(kmax, (a->n_frames + 3) / 4);
    int kb = VD_MIN(kmax, VD_MAX(1, b->n_frames / 4));
    span sa = { a, a->n_frames - (4 * ka - 3), 4 * ka - 3 };
    span sb = { b, 0, 4 * kb + (4 - n_mid % 4) % 4 };
    vdit_video *v = vdit_video_new(a->width, a->height, n_mid);
    if (!v)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    if ((ret = fill_window(c, &rp, h, w, sa, 0, n_mid, 0, sb, strength, 0, v, 0))) {
        vdit_video_free(&v);
        return ret;
    }
    *out = v;
    return 0;
}
