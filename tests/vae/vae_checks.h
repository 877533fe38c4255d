/* What the Wan2.1 and Wan2.2 VAE unit tests (test_vae.c, test_vae22.c) share:
 * buffers, frame copies, a smooth test video, checkpoint copies with one
 * thing broken, and the checks that hold for any Wan VAE (sizes from the
 * model's own s_factor): streams against one-shot calls, frame counts that
 * are not 1 + 4k, memory flat while a stream runs. A test includes it once,
 * after t.h. */
#ifndef VDIT_TEST_VAE_CHECKS_H
#define VDIT_TEST_VAE_CHECKS_H

#include <stdio.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "ckpt.h"
#include "kernels/kernels.h"
#include "vae/vae.h"

static vd_log lg;

static float *alloc_f(size_t n)
{
    float *p = vd_calloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* frame k of [c, t, s] -> [c, s] */
static void frame_of(const float *v, int c, int t, int k, size_t s, float *out)
{
    for (int i = 0; i < c; i++)
        memcpy(out + i * s, v + ((size_t)i * t + k) * s, s * sizeof(float));
}

/* [c, s] -> frame k of [c, t, s] */
static void put_frame(float *v, int c, int t, int k, size_t s, const float *in)
{
    for (int i = 0; i < c; i++)
        memcpy(v + ((size_t)i * t + k) * s, in + i * s, s * sizeof(float));
}

/* A smooth random video in [-1, 1] (so tiles see image-like content). */
static void smooth_video(float *v, int t, int h, int w, uint64_t seed)
{
    t_rng r = { seed };
    float a[3][4];
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 4; k++)
            a[c][k] = t_uniform(&r) * 3.0f;
    for (int c = 0; c < 3; c++)
        for (int f = 0; f < t; f++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    v[(((size_t)c * t + f) * h + y) * w + x] =
                        0.8f * sinf(a[c][0] * y / h * 3 + a[c][1] * x / w * 3 + a[c][2] * f * 0.3f +
                                    a[c][3]) +
                        0.1f * t_uniform(&r);
}

static void test_stream_vs_oneshot(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h,
                                   int w, int tile)
{
    const vd_vae_config *cf = vd_vae_get_config(v);
    int z = cf->z_dim, sf = cf->s_factor, tl = vd_vae_latent_frames(v, t);
    int hl = h / sf, wl = w / sf;
    size_t ls = (size_t)hl * wl, ps = (size_t)h * w, n = (size_t)z * tl * ls;
    float *mu = alloc_f(n), *mu_s = alloc_f(n), *fr = alloc_f(3 * ps), *lat = alloc_f(z * ls);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, tile, 0, mu, NULL) == 0, "encode: %s",
            lg.msg);
    vd_vae_stream *s = NULL;
    T_CHECK(vd_vae_enc_stream_new(v, kc, h, w, tile, &s) == 0, "enc stream: %s", lg.msg);
    int got = 0;
    for (int k = 0; k < t && s; k++) {
        int no = -1;
        frame_of(video, 3, t, k, ps, fr);
        T_CHECK(vd_vae_enc_stream_push(s, fr, lat, &no) == 0, "push");
        /* a latent frame as soon as it is determined: after frame 0, 4, 8 */
        T_CHECK(no == (k == 0 || k % 4 == 0), "frame %d gave %d latent frames", k, no);
        if (no == 1 && got < tl)
            put_frame(mu_s, z, tl, got++, ls, lat);
    }
    vd_vae_stream_free(&s);
    T_CHECK(s == NULL, "free clears");
    T_CHECK(got == tl, "stream gave %d latent frames, expected %d", got, tl);
    double d = t_maxabs(mu_s, mu, n, NULL);
    T_CHECK(d <= 1e-6, "tile %d: encoder stream vs one-shot max_abs %.3g", tile, d);

    int tv = vd_vae_video_frames(v, tl);
    size_t nv = 3 * (size_t)tv * ps;
    float *dec = alloc_f(nv), *dec_s = alloc_f(nv), *outf = alloc_f(4 * 3 * ps);
    T_CHECK(vd_vae_decode_ex(v, kc, mu, tl, hl, wl, tile, 0, dec) == 0, "decode: %s", lg.msg);
    T_CHECK(vd_vae_dec_stream_new(v, kc, hl, wl, tile, &s) == 0, "dec stream");
    int fo = 0;
    for (int k = 0; k < tl && s; k++) {
        int no = -1;
        frame_of(mu, z, tl, k, ls, lat);
        T_CHECK(vd_vae_dec_stream_push(s, lat, outf, &no) == 0, "dec push");
        T_CHECK(no == (k ? 4 : 1), "latent %d gave %d frames", k, no);
        for (int f = 0; f < no && fo < tv; f++, fo++)
            put_frame(dec_s, 3, tv, fo, ps, outf + (size_t)f * 3 * ps);
    }
    vd_vae_stream_free(&s);
    T_CHECK(fo == tv, "decoder stream gave %d frames, expected %d", fo, tv);
    d = t_maxabs(dec_s, dec, nv, NULL);
    T_CHECK(d <= 1e-6, "tile %d: decoder stream vs one-shot max_abs %.3g", tile, d);
    float mx = 0;
    for (size_t i = 0; i < nv; i++)
        mx = fabsf(dec[i]) > mx ? fabsf(dec[i]) : mx;
    T_CHECK(mx <= 1.0f, "decode is clamped (max %g)", mx);

    /* the first frame encodes the same as that frame alone (an image) */
    float *mu1 = alloc_f(z * ls), *m0 = alloc_f(z * ls);
    frame_of(video, 3, t, 0, ps, fr);
    T_CHECK(vd_vae_encode_ex(v, kc, fr, 1, h, w, tile, 0, mu1, NULL) == 0, "encode image");
    frame_of(mu, z, tl, 0, ls, m0);
    d = t_maxabs(mu1, m0, z * ls, NULL);
    T_CHECK(d <= 1e-6, "tile %d: image vs first latent frame max_abs %.3g", tile, d);

    vd_free(mu);
    vd_free(mu_s);
    vd_free(fr);
    vd_free(lat);
    vd_free(dec);
    vd_free(dec_s);
    vd_free(outf);
    vd_free(mu1);
    vd_free(m0);
}

/* T not 1 + 4k: the last chunk is completed by repeating the last frame. */
static void test_frame_counts(const vd_vae *v, vk_ctx *kc, const float *video9, int h, int w)
{
    const vd_vae_config *cf = vd_vae_get_config(v);
    int z = cf->z_dim, sf = cf->s_factor;
    size_t ps = (size_t)h * w, ls = (size_t)(h / sf) * (w / sf);
    T_CHECK(vd_vae_latent_frames(v, 1) == 1 && vd_vae_latent_frames(v, 2) == 2 &&
                vd_vae_latent_frames(v, 5) == 2 && vd_vae_latent_frames(v, 6) == 3 &&
                vd_vae_latent_frames(v, 121) == 31 && vd_vae_latent_frames(v, 0) == 0,
            "latent frame counts");
    T_CHECK(vd_vae_video_frames(v, 3) == 9 && vd_vae_video_frames(v, 31) == 121 &&
                vd_vae_video_frames(v, 1) == 1 && vd_vae_video_frames(v, 0) == 0,
            "video frames");
    /* 7 frames == 9 frames whose last two repeat frame 6; 2 frames == 5 */
    float *v7 = alloc_f(3 * 7 * ps), *v9 = alloc_f(3 * 9 * ps), *fr = alloc_f(3 * ps);
    for (int f = 0; f < 9; f++) {
        frame_of(video9, 3, 9, f < 7 ? f : 6, ps, fr);
        put_frame(v9, 3, 9, f, ps, fr);
        if (f < 7)
            put_frame(v7, 3, 7, f, ps, fr);
    }
    size_t n = (size_t)z * 3 * ls;
    float *a = alloc_f(n), *b = alloc_f(n), *lat = alloc_f(z * ls);
    T_CHECK(vd_vae_encode(v, kc, v7, 7, h, w, a, NULL) == 0, "encode 7");
    T_CHECK(vd_vae_encode(v, kc, v9, 9, h, w, b, NULL) == 0, "encode 9");
    double d = t_maxabs(a, b, n, NULL);
    T_CHECK(d == 0, "7 frames vs padded 9 max_abs %.3g", d);
    /* streams: flush completes the chunk the same way */
    vd_vae_stream *s = NULL;
    T_CHECK(vd_vae_enc_stream_new(v, kc, h, w, 0, &s) == 0, "stream");
    int total = 0, no = 0;
    for (int k = 0; k < 7 && s; k++) {
        frame_of(v7, 3, 7, k, ps, fr);
        vd_vae_enc_stream_push(s, fr, lat, &no);
        total += no;
    }
    T_CHECK(total == 2, "7 frames pushed: %d latent frames before flush", total);
    T_CHECK(s && vd_vae_enc_stream_flush(s, lat, &no) == 0 && no == 1, "flush gave %d", no);
    float *b2 = alloc_f(z * ls);
    frame_of(b, z, 3, 2, ls, b2);
    d = t_maxabs(lat, b2, z * ls, NULL);
    T_CHECK(d <= 1e-6, "flushed latent vs padded max_abs %.3g", d);
    T_CHECK(s && vd_vae_enc_stream_flush(s, lat, &no) == 0 && no == 0, "second flush: nothing");
    vd_vae_stream_free(&s);
    /* 2 frames -> 2 latent frames -> 5 decoded frames */
    T_CHECK(vd_vae_encode(v, kc, v9, 2, h, w, a, NULL) == 0, "encode 2");
    float *dv = alloc_f(3 * 5 * ps);
    T_CHECK(vd_vae_decode(v, kc, a, 2, h / sf, w / sf, dv) == 0, "decode 2 latent frames");
    vd_free(v7);
    vd_free(v9);
    vd_free(a);
    vd_free(b);
    vd_free(b2);
    vd_free(lat);
    vd_free(fr);
    vd_free(dv);
}

/* A new set with every tensor of `src` renamed by `rename` (a layout's
 * names, e.g. diffusers') or prefixed, and optionally one tensor dropped,
 * renamed to `rename_to`, or given a wrong shape. */
static vd_ckpt *copy_ckpt(const vd_ckpt *src, const char *prefix,
                          void (*rename)(const char *, char *, size_t), const char *drop,
                          const char *reshape, const char *rename_to)
{
    vd_ckpt *c = vd_ckpt_new();
    for (size_t i = 0; c && i < vd_ckpt_count(src); i++) {
        const vt_tensor *t = vd_ckpt_at(src, i);
        char nm[256];
        if (drop && !strcmp(t->name, drop)) {
            if (!rename_to)
                continue;
            snprintf(nm, sizeof(nm), "%s", rename_to);
        } else if (rename) {
            rename(t->name, nm, sizeof(nm));
        } else {
            snprintf(nm, sizeof(nm), "%s%s", prefix ? prefix : "", t->name);
        }
        int64_t shp[VT_MAX_DIMS];
        memcpy(shp, t->shape, sizeof(shp));
        if (reshape && !strcmp(t->name, reshape) && t->ndim == 5)
            shp[1] = 1; /* fewer input channels: same data, wrong shape */
        if (vd_ckpt_add(c, nm, t->dtype, t->ndim, shp, t->data, NULL, "copy.safetensors", &lg)) {
            fprintf(stderr, "copy_ckpt: %s\n", lg.msg);
            vd_ckpt_free(&c);
        }
    }
    return c;
}

typedef struct bufs {
    void **p;
    size_t n, released;
} bufs;

static void release_buf(void *ctx, const void *data)
{
    bufs *b = ctx;
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] == data) {
            vd_free(b->p[i]);
            b->p[i] = NULL;
            b->released++;
        }
}

/* A set holding a copy of every tensor of ck in a buffer of its own, listed
 * in *b for release_buf (b->p is calloc'ed here; the caller frees what is
 * left and b->p). NULL when out of memory. */
static vd_ckpt *own_copy(const vd_ckpt *ck, bufs *b)
{
    vd_ckpt *c = vd_ckpt_new();
    *b = (bufs){ calloc(vd_ckpt_count(ck), sizeof(void *)), 0, 0 };
    for (size_t i = 0; c && b->p && i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i);
        size_t nb = (size_t)vt_nelem(t) * vt_dtype_size(t->dtype);
        void *p = vd_malloc(nb);
        if (p)
            memcpy(p, t->data, nb);
        b->p[b->n++] = p;
        if (!p || vd_ckpt_add(c, t->name, t->dtype, t->ndim, t->shape, p, NULL, "own", &lg))
            vd_ckpt_free(&c);
    }
    if (!b->p)
        vd_ckpt_free(&c);
    return c;
}

/* Memory in use (glibc's count of allocated bytes) is the same after
 * 7 and after 13 latent frames of a decoder stream and after 9 and 17 frames
 * of an encoder stream: every buffer exists once the first frames have
 * passed every layer (the stream's at creation, the kernels' at their first
 * call), nothing grows with the length. Not under sanitizers (their
 * allocators do not report through mallinfo2). */
__attribute__((unused)) static size_t in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

static void test_flat_memory(const vd_vae *v, vk_ctx *kc)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)v;
    (void)kc;
    return;
#else
    if (!in_use())
        return;
    int h = 32, w = 48, z = vd_vae_get_config(v)->z_dim, sf = vd_vae_get_config(v)->s_factor;
    size_t ls = (size_t)(h / sf) * (w / sf);
    float *lat = alloc_f((size_t)z * 2 * ls), *fr = alloc_f((size_t)4 * 3 * h * w);
    t_rng rg = { 11 };
    t_fill(&rg, lat, (size_t)z * ls, 1.0f);
    t_fill(&rg, fr, (size_t)3 * h * w, 0.9f);
    vd_vae_stream *s = NULL;
    size_t m[2] = { 0, 0 };
    int no = 0, ok = 1;
    T_CHECK(vd_vae_dec_stream_new(v, kc, h / sf, w / sf, 0, &s) == 0, "dec stream: %s", lg.msg);
    /* measured from the 7th latent frame: every layer has run by the 2nd,
     * but a one-off 256 bytes (outside the stream's and the kernels'
     * buffers: no primitive, layout or scratch is made then) appear at the
     * 6th; growth with the length is what this guards */
    for (int k = 0; s && k < 13; k++) {
        ok &= vd_vae_dec_stream_push(s, lat, fr, &no) == 0;
        if (k == 6 || k == 12)
            m[k == 12] = in_use();
    }
    vd_vae_stream_free(&s);
    T_CHECK(ok && m[0] == m[1],
            "decoder stream: %zu bytes in use after 7 latent frames, %zu after 13", m[0], m[1]);
    T_CHECK(vd_vae_enc_stream_new(v, kc, h, w, 0, &s) == 0, "enc stream: %s", lg.msg);
    for (int k = 0; s && k < 17; k++) {
        ok &= vd_vae_enc_stream_push(s, fr, lat + (size_t)z * ls, &no) == 0;
        if (k == 8 || k == 16)
            m[k == 16] = in_use();
    }
    vd_vae_stream_free(&s);
    T_CHECK(ok && m[0] == m[1], "encoder stream: %zu bytes in use after 9 frames, %zu after 17",
            m[0], m[1]);
    vd_free(lat);
    vd_free(fr);
#endif
}

#endif
