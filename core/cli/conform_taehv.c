/* `vdit conform` handler for the TAEHV decoder (madebyollin/taehv taehv.py,
 * TAEHV.decode_video; folders made by tests/vae/gen_taehv_vectors.py):
 * decodes io 'latents' [1, T, z, h, w] (taehv's NTCHW) frame by frame and
 * compares 'decoded_raw' (before the clamp, [0, 1] scale) and 'decoded'
 * (clamped to [0, 1]; vdit's [-1, 1] frames mapped back), both
 * [1, 1 + 4 (T - 1), 3, H, W]; then checks that the one-shot decode equals
 * the stream. Every size comes from the tensor shapes. */
#include <stdio.h>

#include "conform.h"
#include "kernels/kernels.h"
#include "vae/taehv.h"

/* Decodes the T latent frames of lat ([T][z, h, w]) into out ([n][3, H, W])
 * through a stream of the given raw mode; returns the frame count, <0 on
 * error. */
static int decode_stream(conform_ctx *c, const vd_taehv *t, vk_ctx *kc, const float *lat, int tl,
                         int h, int w, int raw, float *out)
{
    vd_taehv_stream *s = NULL;
    int r = vd_taehv_stream_new(t, kc, h, w, raw, &s), n = 0;
    if (r)
        return vd_err(&c->log, r, "TAEHV stream: %s", vdit_strerror(r));
    const vd_taehv_config *cfg = vd_taehv_get_config(t);
    size_t ls = (size_t)cfg->z_dim * h * w, fs = (size_t)3 * h * w * cfg->s_factor * cfg->s_factor;
    for (int k = 0; k < tl && !r; k++) {
        int got = 0;
        r = vd_taehv_stream_push(s, lat + k * ls, out + n * fs, &got);
        n += got;
    }
    vd_taehv_stream_free(&s);
    return r ? vd_err(&c->log, r, "TAEHV decode: %s", vdit_strerror(r)) : n;
}

int conform_taehv(conform_ctx *c)
{
    vd_taehv *t = NULL;
    vk_ctx *kc = NULL;
    float *lat = NULL, *a = NULL, *b = NULL, *z = NULL, *one = NULL;
    int ret = -1;
    if (!c->weights) {
        vd_err(&c->log, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);
        return -1;
    }
    if (vd_taehv_load(c->weights, &c->log, &t))
        return -1;
    if (!(kc = vk_ctx_new_ex(c->n_threads, -1, c->prec, &c->log)))
        goto done;
    const vd_taehv_config *cfg = vd_taehv_get_config(t);
    const vt_tensor *tl_t;
    if (!(lat = conform_input(c, "latents", &tl_t))) {
        ret = 0;
        goto done;
    }
    if (tl_t->ndim != 5 || tl_t->shape[0] != 1 || tl_t->shape[2] != cfg->z_dim) {
        conform_fail(c, "latents", "expected shape [1, T, z_dim, h, w]");
        ret = 0;
        goto done;
    }
    int tl = (int)tl_t->shape[1], h = (int)tl_t->shape[3], w = (int)tl_t->shape[4];
    int tv = 1 + 4 * (tl - 1), sf = cfg->s_factor;
    size_t fs = (size_t)3 * h * sf * w * sf, n = fs * (size_t)tv;
    a = vd_malloc(n * sizeof(float));
    b = vd_malloc(n * sizeof(float));
    one = vd_malloc(n * sizeof(float));
    z = vd_malloc(sizeof(float) * (size_t)cfg->z_dim * tl * h * w);
    if (!a || !b || !one || !z)
        goto done;
    int na = decode_stream(c, t, kc, lat, tl, h, w, 1, a);
    int nb = decode_stream(c, t, kc, lat, tl, h, w, 0, b);
    if (na < 0 || nb < 0)
        goto done;
    if (na != tv || nb != tv) {
        char m[96];
        snprintf(m, sizeof(m), "%d / %d frames for %d latent frames, expected %d", na, nb, tl, tv);
        conform_fail(c, "frame count", m);
        ret = 0;
        goto done;
    }
    conform_check(c, "decoded_raw", a, n, 0, 0);
    for (size_t i = 0; i < n; i++)
        a[i] = (b[i] + 1) * 0.5f;
    conform_check(c, "decoded", a, n, 0, 0);
    /* one-shot [3, T', H, W] from [z, T, h, w] = the stream */
    size_t ls = (size_t)h * w, ps = fs / 3;
    for (int f = 0; f < tl; f++)
        for (int k = 0; k < cfg->z_dim; k++)
            memcpy(z + ((size_t)k * tl + f) * ls, lat + ((size_t)f * cfg->z_dim + k) * ls,
                   ls * sizeof(float));
    int r = vd_taehv_decode(t, kc, z, tl, h, w, one);
    if (r) {
        conform_fail(c, "one-shot decode", vdit_strerror(r));
    } else {
        for (int f = 0; f < tv; f++)
            for (int k = 0; k < 3; k++)
                memcpy(a + (size_t)f * fs + k * ps, one + ((size_t)k * tv + f) * ps,
                       ps * sizeof(float));
        conform_check_values(c, "one-shot = stream", a, b, n, 1e-30, 1e-30);
    }
    ret = 0;
done:
    if (ret && !c->log.msg[0])
        vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    vd_free(lat);
    vd_free(a);
    vd_free(b);
    vd_free(z);
    vd_free(one);
    vk_ctx_free(&kc);
    vd_taehv_free(&t);
    return ret;
}
