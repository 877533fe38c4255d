/* `vdit conform` handler for the Wan VAEs (wan.modules.vae.WanVAE_ and
 * wan.modules.vae2_2.WanVAE_, the model told apart by vd_vae_load): encodes
 * io 'video' and decodes io 'z', every size taken from the tensor shapes.
 * Also checks that the first frame encoded alone (an image) gives the first
 * latent frame of mu. */
#include <math.h>
#include <stdio.h>

#include "conform.h"
#include "kernels/kernels.h"
#include "vae/vae.h"

/* Frame 0 encoded alone (the TI2V pipeline's image) against the stored
 * mu[:, :, :1] (a missing or mis-sized stored mu failed already). video:
 * [3, t, h, w]; ls: latent pixels per frame. <0: out of memory. */
static int check_frame0(conform_ctx *c, const vd_vae *v, vk_ctx *kc, const float *video, int t,
                        int h, int w, int tl, size_t ls)
{
    int zd = vd_vae_get_config(v)->z_dim;
    size_t ps = (size_t)h * w, n = (size_t)zd * tl * ls;
    const vt_tensor *tm = vd_ckpt_find(c->io, "mu");
    if (!tm || (size_t)vt_nelem(tm) != n || !vd_tensor_is_float(tm))
        return 0;
    float *f0 = vd_malloc(3 * ps * sizeof(float));
    float *m0 = vd_malloc(2 * (size_t)zd * ls * sizeof(float));
    float *rm = vd_tensor_f32(tm);
    int r = f0 && m0 && rm ? 0 : -1;
    if (!r) {
        for (int k = 0; k < 3; k++)
            memcpy(f0 + k * ps, video + (size_t)k * t * ps, ps * sizeof(float));
        for (int k = 0; k < zd; k++) /* the stored mu's frame 0 after the result */
            memcpy(m0 + (zd + k) * ls, rm + (size_t)k * tl * ls, ls * sizeof(float));
        if (vd_vae_encode(v, kc, f0, 1, h, w, m0, NULL))
            conform_fail(c, "mu[frame 0 alone]", c->log.msg);
        else
            conform_check_values(c, "mu[frame 0 alone]", m0, m0 + (size_t)zd * ls, (size_t)zd * ls, 0, 0);
    }
    vd_free(f0);
    vd_free(m0);
    vd_free(rm);
    return r;
}

/* [1, C, T, H, W] or [C, T, H, W]: C, T, H, W. */
static int dims5(const vt_tensor *t, int *c, int *f, int *h, int *w)
{
    int o = t->ndim == 5 ? 1 : 0;
    if ((t->ndim != 5 && t->ndim != 4) || (o && t->shape[0] != 1))
        return -1;
    *c = (int)t->shape[o];
    *f = (int)t->shape[o + 1];
    *h = (int)t->shape[o + 2];
    *w = (int)t->shape[o + 3];
    return 0;
}

int conform_vae(conform_ctx *c)
{
    vd_vae *v = NULL;
    vk_ctx *kc = NULL;
    float *video = NULL, *z = NULL, *mu = NULL, *lv = NULL, *dec = NULL, *tmp = NULL;
    float *mean = NULL, *std = NULL;
    int ret = -1;
    if (!c->weights) {
        vd_err(&c->log, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);
        return -1;
    }
    if (vd_vae_canonicalize(c->weights, &c->log) || vd_vae_load(c->weights, &c->log, &v))
        return -1;
    /* on a device: the nets there at the folder's precision, the 1x1 ends
     * on the CPU */
    if (conform_kc(c, &kc) ||
        (kc->cuda && vd_vae_upload(v, kc->cuda, c->prec, kc, NULL, NULL, &c->log)))
        goto done;
    const vd_vae_config *cfg = vd_vae_get_config(v);
    int zd = cfg->z_dim;
    /* the published constants vs the ones the reference was given */
    if (vd_ckpt_find(c->io, "latent_mean") && vd_ckpt_find(c->io, "latent_std")) {
        mean = conform_input(c, "latent_mean", NULL);
        std = conform_input(c, "latent_std", NULL);
        if (!mean || !std)
            goto done;
        /* the built-in defaults: Wan2.1 16 values, Wan2.2 48 */
        if ((zd == 16 && cfg->version == 21) || (zd == 48 && cfg->version == 22)) {
            conform_check(c, "latent_mean", cfg->mean, (size_t)zd, 1e-7, 1e-7);
            conform_check(c, "latent_std", cfg->std, (size_t)zd, 1e-7, 1e-7);
        }
        if (vd_vae_set_latent_stats(v, mean, std)) {
            conform_fail(c, "latent_std", "not positive");
            goto done;
        }
    }

    const vt_tensor *tv, *tz;
    int ch, t, h, w;
    video = conform_input(c, "video", &tv);
    if (video) {
        if (dims5(tv, &ch, &t, &h, &w) || ch != 3) {
            conform_fail(c, "video", "expected shape [1, 3, T, H, W]");
        } else {
            int tl = vd_vae_latent_frames(v, t), hl = h / cfg->s_factor,
                wl = w / cfg->s_factor;
            size_t n = (size_t)zd * tl * hl * wl;
            mu = vd_malloc(n * sizeof(float));
            lv = vd_malloc(n * sizeof(float));
            tmp = vd_malloc(2 * n * sizeof(float));
            if (!mu || !lv || !tmp)
                goto done;
            if (vd_vae_encode_ex(v, kc, video, t, h, w, 0, 1, mu, lv)) {
                conform_fail(c, "mu", c->log.msg);
            } else {
                conform_check(c, "mu_raw", mu, n, 0, 0);
                conform_check(c, "log_var", lv, n, 0, 0);
                size_t s = (size_t)tl * hl * wl;
                for (int k = 0; k < zd; k++)
                    for (size_t i = 0; i < s; i++)
                        mu[k * s + i] = (mu[k * s + i] - cfg->mean[k]) * (1.0f / cfg->std[k]);
                conform_check(c, "mu", mu, n, 0, 0);
                if (check_frame0(c, v, kc, video, t, h, w, tl, hl * wl))
                    goto done;
            }
            if (c->verbose && vd_ckpt_find(c->io, "inter/encoder_out")) {
                if (vd_vae_encode_ex(v, kc, video, t, h, w, 0, 2, tmp, NULL))
                    conform_fail(c, "inter/encoder_out", c->log.msg);
                else
                    conform_check(c, "inter/encoder_out", tmp, 2 * n, 0, 0);
            }
        }
    }

    z = conform_input(c, "z", &tz);
    if (z) {
        if (dims5(tz, &ch, &t, &h, &w) || ch != zd) {
            conform_fail(c, "z", "expected shape [1, z_dim, T, h, w]");
        } else {
            int tv_n = vd_vae_video_frames(v, t);
            int sf = cfg->s_factor;
            size_t n = (size_t)3 * tv_n * h * sf * w * sf;
            dec = vd_malloc(n * sizeof(float));
            if (!dec)
                goto done;
            if (vd_vae_decode_ex(v, kc, z, t, h, w, 0, 1, dec)) {
                conform_fail(c, "decoded", c->log.msg);
            } else {
                conform_check(c, "decoded", dec, n, 0, 0);
                for (size_t i = 0; i < n; i++)
                    dec[i] = dec[i] < -1 ? -1 : dec[i] > 1 ? 1 : dec[i];
                conform_check(c, "decoded_clamped", dec, n, 0, 0);
            }
            if (c->verbose && vd_ckpt_find(c->io, "inter/decoder_out")) {
                /* before unpatchify: [3 p^2, T, s h / p, s w / p] */
                if (vd_vae_decode_ex(v, kc, z, t, h, w, 0, 2, dec))
                    conform_fail(c, "inter/decoder_out", c->log.msg);
                else
                    conform_check(c, "inter/decoder_out", dec, n, 0, 0);
            }
            if (c->verbose && vd_ckpt_find(c->io, "inter/decoder_in")) {
                size_t s = (size_t)h * w, nz = (size_t)zd * t * s;
                float *a = vd_malloc(2 * zd * s * sizeof(float));
                float *all = vd_malloc(nz * sizeof(float));
                if (a && all) {
                    for (int f = 0; f < t; f++) {
                        for (int k = 0; k < zd; k++)
                            memcpy(a + k * s, z + ((size_t)k * t + f) * s, s * sizeof(float));
                        vd_vae_decoder_input(v, kc, a, h, w, a + zd * s);
                        for (int k = 0; k < zd; k++)
                            memcpy(all + ((size_t)k * t + f) * s, a + (zd + k) * s,
                                   s * sizeof(float));
                    }
                    conform_check(c, "inter/decoder_in", all, nz, 0, 0);
                }
                vd_free(a);
                vd_free(all);
            }
        }
    }
    ret = 0;
done:
    if (ret && !c->log.msg[0])
        vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    vd_free(video);
    vd_free(z);
    vd_free(mu);
    vd_free(lv);
    vd_free(dec);
    vd_free(tmp);
    vd_free(mean);
    vd_free(std);
    vd_vae_free(&v); /* before kc: its device weights live in kc's device context */
    vk_ctx_free(&kc);
    return ret;
}
