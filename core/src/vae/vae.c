/*
 * Wan-VAE execution: frames flow through the layer list one at a time.
 *
 * Why frame by frame: the reference runs frame 0, then chunks of 4, carrying
 * the last 2 input frames of every causal convolution from chunk to chunk.
 * A causal 3-tap temporal convolution only ever needs its input's last two
 * frames, so feeding single frames with the same caches computes the same
 * numbers while the live activations are one frame per resolution instead of
 * four (plus the caches). The two temporal resamplers are rate changers:
 *   downsample3d: out = [y0, conv(y0,y1,y2), conv(y2,y3,y4), ...] (stride 2),
 *     i.e. it emits on frames 0, 2, 4, ...;
 *   upsample3d: frame 0 passes through (the reference's 'Rep' marker); every
 *     later frame goes through a causal temporal conv whose history excludes
 *     frame 0 (zeros instead) and becomes two frames (channels [0,C) first).
 * Layers call the next layer for every frame they emit (depth first), so a
 * layer's output buffer is free again when the call returns: two ping-pong
 * buffers serve the whole network.
 *
 * Memory (docs/vae.md "Memory"): a causal conv's cache is a ring of two
 * frames that is also its only input buffer (per-tap convolutions,
 * vk_funcs.conv_tap); upsamplers run as four 2x2 convs on the
 * low-resolution frame; everything is allocated when the stream is made.
 *
 * Wan2.2's residual blocks add a parameter-free shortcut of the block input
 * to the block output, across the block's resample:
 *   AvgDown3D (encoder): space/time-to-channel then the mean of groups of
 *     channels. Over the sequence it is one zero frame in front of frame 0,
 *     then pairs: out frame k >= 1 averages input frames 2k - 1, 2k, out 0
 *     frame 0 with zeros. The START node sums each input frame's share into
 *     its [out, S'] buffer as the frame passes (a pair's first frame writes,
 *     the second adds), so the block's output frame j finds its shortcut
 *     complete when the resample emits it: ADD adds it, scaled by 1/group.
 *   DupUp3D (decoder): channel repeat then depth-to-space; latent frame 0
 *     (the first chunk) drops the first factor_t - 1 frames, i.e. output
 *     frame m of the block takes time offset (m + factor_t - 1) % factor_t
 *     of the last input frame, which the START node keeps.
 * Patchify (encoder input) and unpatchify (decoder output) are nodes too, so
 * tiles, streams and detaching treat both models alike.
 *
 * Spatial tiles are independent copies of the network state over a region of
 * the input; their outputs are blended with linear ramps over the overlaps.
 */
#include <math.h>
#include <stdio.h>

#include "vae_impl.h"

/* Causal caches and rate-changer state of one layer for one tile. */
typedef struct nstate {
    int hi, wi, ho, wo;   /* input / output spatial size */
    /* Rings of two frames: input frame j of a causal conv sits in slot j & 1
     * (each slot [c, S]); the ring is the conv's only input buffer. */
    float *cache1;        /* 2 x [ci', S] inputs of c1 (causal 3x3x3 or time conv) */
    float *cache2;        /* 2 x [co, S] inputs of c2 (RES) */
    float *keep;          /* DOWN3D: 2 x [c, S'] y_2j (slot 0), y_2j+1 (slot 1); UP3D: [2c, S];
                           * AVG_START: [sco, S / fs^2] shortcut sums; DUP_START: [ci, S] */
    int64_t n;            /* frames seen */
} nstate;

typedef struct tile {
    int y0, x0, th, tw;   /* region in net input units */
    int oy0, ox0, oth, otw; /* region in output units */
    nstate *st;           /* per layer, NULL when not allocated */
    int64_t n_out;        /* frames emitted so far */
    float *wy, *wx;       /* blend weights per output row / column (NULL: untiled) */
} tile;

struct vd_vae_stream {
    const vd_vae *v;
    vk_ctx *kc;
    const vae_ops *ops;   /* where the frames live: the host's (u = this stream) or a device's */
    void *u;
    int on_dev;           /* ops are a device's: frames go up and come back through put/get */
    const vnet *net;
    int enc;
    int raw;
    int n_run;            /* layers run (the decoder's raw 2 stops before UNPATCH) */
    int h, w;             /* net input size (pixels for the encoder, latents for the decoder) */
    int oh, ow;           /* output size */
    int c_out;            /* channels written per output frame */
    int n_tiles;
    tile *tiles;
    /* shared working memory (tiles run one after the other) */
    float *ping[2];       /* layer outputs, alternating */
    float *tmp;           /* UP: one output parity [co, S]; ATTN: [c, S] */
    float *mid;           /* ATTN: [S, c] */
    float *big;           /* ATTN: qkv and its transpose */
    float *tin;           /* tile input (cropped frame) */
    float *hin;           /* device: the cropped frame on the host before it goes up */
    float *hout;          /* device: the head's output come back [c', S_out] */
    float *tout;          /* sink: [c_out', S_out] head / conv1 output (host) */
    float *wsum;          /* [oh, ow] blend weight sums (tiled) */
    /* current push */
    float *out;           /* user buffer */
    int64_t out_first;    /* global index of out[0] */
    size_t fstride, cstride; /* output frame / channel strides (elements) */
    int accumulate;       /* tile > 0 adds to the output */
    int64_t n_in;         /* frames pushed */
    size_t bytes;
    float *last_frame;    /* encoder: last pushed frame (for flush) */
    float *dec_in;        /* decoder: [2][z, h, w] un-normalised latent, conv2 output */
    size_t frame_len;
};

static size_t fsz(int c, int h, int w)
{
    return (size_t)c * (size_t)h * (size_t)w;
}

/* ---- layers ---------------------------------------------------------------- */

static const vk_conv_geom g_same3 = { 1, 1, 1, 0, 0, 1, 1, 1, 1 };
static const vk_conv_geom g_none = { 1, 1, 1, 0, 0, 0, 0, 0, 0 };
static const vk_conv_geom g_down = { 1, 2, 2, 0, 0, 0, 1, 0, 1 };

static void norm_silu(vd_vae_stream *s, const float *x, float *y, int c, size_t S, const float *g)
{
    s->ops->chnorm(s->u, x, y, c, S, g, 1);
}

/* Causal 3-tap convolutions over a ring of two frames (input frame j in
 * slot j & 1, [c_in, h, w] each). For output frame t the tap of frame t - 2
 * is applied first; its slot then takes the new input frame t, then the
 * taps of frames t - 1 and t follow. So the ring is the conv's only input
 * buffer: no stacked [c, 3, S] copy, no shifting. Frames before 0 are zeros
 * and their taps are skipped (a single image costs a third of a video
 * frame, where the reference multiplies the zero history). */
static float *ring_slot(float *ring, int64_t j, size_t len)
{
    return ring + (size_t)(j & 1) * len;
}

static const vk_conv_geom *tap_geom(const vk_conv *cv)
{
    return cv->kh == 3 ? &g_same3 : &g_none;
}

/* y = tap of frame t - 2 (+ bias); returns the flags for the next taps. */
static int causal_first(vd_vae_stream *s, const vk_conv *cv, float *ring, int64_t t, int h, int w,
                        float *y)
{
    if (t < 2)
        return VK_CONV_BIAS;
    s->ops->conv_tap(s->u, cv, tap_geom(cv), 0, VK_CONV_BIAS,
                     ring_slot(ring, t, fsz(cv->c_in, h, w)), h, w, y);
    return VK_CONV_ACC;
}

/* y (+)= taps of frames t - 1 and t (frame t already in its slot). */
static void causal_rest(vd_vae_stream *s, const vk_conv *cv, float *ring, int64_t t, int fl, int h,
                        int w, float *y)
{
    size_t len = fsz(cv->c_in, h, w);
    if (t >= 1) {
        s->ops->conv_tap(s->u, cv, tap_geom(cv), 1, fl, ring_slot(ring, t + 1, len), h, w, y);
        fl = VK_CONV_ACC;
    }
    s->ops->conv_tap(s->u, cv, tap_geom(cv), 2, fl, ring_slot(ring, t, len), h, w, y);
}

/* y = causal_conv at frame t whose new input is x, or norm_silu(x) with
 * gamma g when g != NULL. */
static void causal_conv(vd_vae_stream *s, const vk_conv *cv, float *ring, int64_t t,
                        const float *x, const float *g, int h, int w, float *y)
{
    size_t len = fsz(cv->c_in, h, w);
    int fl = causal_first(s, cv, ring, t, h, w, y);
    float *cur = ring_slot(ring, t, len);
    if (g)
        norm_silu(s, x, cur, cv->c_in, (size_t)h * w, g);
    else
        s->ops->copy(s->u, cur, x, len);
    causal_rest(s, cv, ring, t, fl, h, w, y);
}

/* The head's causal conv keeps partial sums of its outputs instead of its
 * inputs when it has fewer outputs (decoder: 96 -> 3 channels, full
 * resolution): Q[j & 1] holds the contributions of earlier frames to output
 * frame j, two frames of c_out channels instead of c_in. Its new input
 * norm_silu(x) is made in place in x, the previous layer's output buffer
 * (not read again; a DOWN3D emits its ring slot, hence the exclusion). */
static int head_partial(const vnet *net, int i)
{
    const vnode *n = &net->nodes[i];
    return n->type == VN_HEAD && n->co < n->ci && i > 0 && net->nodes[i - 1].type != VN_DOWN3D &&
           !vnode_passes(net->nodes[i - 1].type);
}

static void node_head_partial(vd_vae_stream *s, const vnode *n, nstate *st, int64_t t, float *x,
                              float *y)
{
    const vae_ops *op = s->ops;
    const vk_conv *cv = &n->c1;
    int h = st->hi, w = st->wi;
    size_t len = fsz(cv->c_out, h, w);
    float *qt = ring_slot(st->cache1, t, len), *qn = ring_slot(st->cache1, t + 1, len);
    norm_silu(s, x, x, n->ci, (size_t)h * w, n->g1);
    /* y_t = W2 u_t + b + (W1 u_{t-1} + W0 u_{t-2}) */
    op->conv_tap(s->u, cv, tap_geom(cv), 2, VK_CONV_BIAS, x, h, w, y);
    if (t >= 1)
        op->add(s->u, y, y, qt, 1.0f, len);
    /* then Q for frame t + 2 = W0 u_t, Q for frame t + 1 += W1 u_t */
    op->conv_tap(s->u, cv, tap_geom(cv), 0, 0, x, h, w, qt);
    op->conv_tap(s->u, cv, tap_geom(cv), 1, t >= 1 ? VK_CONV_ACC : 0, x, h, w, qn);
}

static void run(vd_vae_stream *s, tile *t, int i, const float *x);
static void sink(vd_vae_stream *s, tile *t, const float *x);

static void emit(vd_vae_stream *s, tile *t, int i, const float *y)
{
    run(s, t, i + 1, y);
}

/* y = x (or shortcut(x)) + conv2(norm_silu(conv1(norm_silu(x)))). conv1
 * writes straight into conv2's ring once the tap of conv2's frame t - 2 has
 * been applied, so the block needs no buffer besides x, y and its rings. */
static void node_res(vd_vae_stream *s, const vnode *n, nstate *st, int64_t t, const float *x,
                     float *y)
{
    int h = st->hi, w = st->wi;
    size_t S = (size_t)h * w;
    int fl = causal_first(s, &n->c2, st->cache2, t, h, w, y);
    float *mid = ring_slot(st->cache2, t, fsz(n->co, h, w)); /* [co, S] */
    causal_conv(s, &n->c1, st->cache1, t, x, n->g1, h, w, mid);
    norm_silu(s, mid, mid, n->co, S, n->g2);
    causal_rest(s, &n->c2, st->cache2, t, fl, h, w, y);
    if (n->has_sc) {
        s->ops->conv_tap(s->u, &n->sc, &g_none, 0, VK_CONV_ACC | VK_CONV_BIAS, x, h, w, y);
        return;
    }
    s->ops->add(s->u, y, y, x, 1.0f, fsz(n->co, h, w));
}

/* Single-head attention over the h*w positions of one frame. */
static void node_attn(vd_vae_stream *s, const vnode *n, nstate *st, const float *x, float *y)
{
    const vae_ops *op = s->ops;
    int c = n->ci;
    size_t S = (size_t)st->hi * st->wi;
    float *qkv = s->big; /* [3c, S] */
    op->chnorm(s->u, x, s->tmp, c, S, n->g1, 0);
    op->conv(s->u, &n->c1, s->tmp, st->hi, st->wi, qkv);
    op->attention(s->u, qkv, c, S, s->tmp);
    op->conv(s->u, &n->c2, s->tmp, st->hi, st->wi, y);
    op->add(s->u, y, y, x, 1.0f, fsz(c, st->hi, st->wi));
}

/* The host's attention: qkv = s->big [3c, S], o = s->tmp [c, S]. */
static void h_attention(void *u, const float *qkv, int c, size_t S, float *o)
{
    vd_vae_stream *s = u;
    vk_ctx *kc = s->kc;
    float *tq = s->big + 3 * c * S; /* [S, 3c] */
    float *ot = s->mid;             /* [S, c] */
    for (size_t p0 = 0; p0 < S; p0 += 64) {
        size_t p1 = VD_MIN(S, p0 + 64);
        for (int ch = 0; ch < 3 * c; ch++)
            for (size_t p = p0; p < p1; p++)
                tq[p * 3 * c + ch] = qkv[ch * S + p];
    }
    kc->f->attention(kc, tq, 3 * c, tq + c, 3 * c, tq + 2 * c, 3 * c, ot, c, 1, c, (int64_t)S,
                     (int64_t)S, (int64_t)S, 1.0f / sqrtf((float)c), NULL);
    for (size_t p0 = 0; p0 < S; p0 += 64) {
        size_t p1 = VD_MIN(S, p0 + 64);
        for (int ch = 0; ch < c; ch++)
            for (size_t p = p0; p < p1; p++)
                o[ch * S + p] = ot[p * c + ch];
    }
}

/* Nearest x2 then a 3x3 conv, without the x2 frame: output pixel
 * (2i + a, 2j + b) only sees input rows i - 1 + a, i + a and columns
 * j - 1 + b, j + b, so each parity is a 2x2 conv of the low-resolution frame
 * with summed taps (vae_load.c), 2.25x fewer products. Each parity goes
 * through tmp [co, S] into its pixels of y [co, 2h, 2w]. */
static void up_spatial(vd_vae_stream *s, const vnode *n, nstate *st, const float *x, float *y)
{
    int h = st->hi, w = st->wi, co = n->co;
    for (int p = 0; p < 4; p++) {
        int a = p >> 1, b = p & 1;
        vk_conv_geom g = { 1, 1, 1, 0, 0, 1 - a, a, 1 - b, b };
        s->ops->conv_tap(s->u, &n->up[p], &g, 0, VK_CONV_BIAS, x, h, w, s->tmp);
        s->ops->up_scatter(s->u, s->tmp, co, h, w, a, b, y);
    }
}

static void h_up_scatter(void *u, const float *src0, int co, int h, int w, int a, int b, float *y)
{
    (void)u;
    for (int o = 0; o < co; o++)
        for (int r = 0; r < h; r++) {
            const float *src = src0 + ((size_t)o * h + r) * w;
            float *dst = y + ((size_t)o * 2 * h + 2 * r + a) * 2 * w + b;
            for (int q = 0; q < w; q++)
                dst[2 * q] = src[q];
        }
}

/* patchify: channel c p^2 + r p + q of pixel (p h + q, p w + r), i.e. einops
 * "c (h q) (w r) -> (c r q) h w" (the width offset r is the slower one). */
static void h_patchify(void *u, const float *x, int c, int h, int w, int p, float *y)
{
    (void)u;
    int ho = h / p, wo = w / p;
    for (int ch = 0; ch < c; ch++)
        for (int r = 0; r < p; r++)
            for (int q = 0; q < p; q++) {
                float *d = y + (size_t)((ch * p + r) * p + q) * ho * wo;
                for (int a = 0; a < ho; a++) {
                    const float *sp = x + ((size_t)ch * h + (size_t)a * p + q) * w + r;
                    for (int b = 0; b < wo; b++)
                        d[(size_t)a * wo + b] = sp[(size_t)b * p];
                }
            }
}

/* The inverse: [c p^2, h, w] -> [c, h p, w p]. */
static void h_unpatchify(void *u, const float *x, int c, int h, int w, int p, float *y)
{
    (void)u;
    int wo = w * p;
    for (int ch = 0; ch < c; ch++)
        for (int a = 0; a < h; a++)
            for (int q = 0; q < p; q++) {
                float *d = y + ((size_t)ch * h * p + (size_t)a * p + q) * wo;
                for (int r = 0; r < p; r++) {
                    const float *sp = x + ((size_t)((ch * p + r) * p + q) * h + a) * w;
                    for (int b = 0; b < w; b++)
                        d[(size_t)b * p + r] = sp[b];
                }
            }
}

/* AvgDown3D share of one input frame x [ci, h, w] at time offset dt: out
 * channel o sums the members k = o g + j of its group whose (c, dt', dh, dw)
 * = (k / F, ...) has dt' = dt (F = ft fs^2). first: the frame opens a group
 * of frames (writes; a channel without a member at dt becomes 0), else it
 * adds. One pass over x. */
static void h_avg_share(void *u, const vnode *n, const float *x, int h, int w, int dt, int first,
                        float *sc)
{
    (void)u;
    int fs = n->fs, ff = fs * fs, F = n->ft * ff, g = n->grp;
    int ho = h / fs, wo = w / fs;
    size_t so = (size_t)ho * wo;
    for (int o = 0; o < n->sco; o++) {
        float *d = sc + (size_t)o * so;
        int acc = !first;
        for (int j = 0; j < g; j++) {
            int k = o * g + j, c = k / F, rm = k % F;
            if (rm / ff != dt)
                continue;
            int dh = (rm / fs) % fs, dw = rm % fs;
            for (int a = 0; a < ho; a++) {
                const float *sp = x + ((size_t)c * h + (size_t)a * fs + dh) * w + dw;
                float *dp = d + (size_t)a * wo;
                if (acc)
                    for (int b = 0; b < wo; b++)
                        dp[b] += sp[(size_t)b * fs];
                else
                    for (int b = 0; b < wo; b++)
                        dp[b] = sp[(size_t)b * fs];
            }
            acc = 1;
        }
        if (!acc)
            memset(d, 0, so * sizeof(float));
    }
}

/* y = x + DupUp3D(xin) at time offset dt: out pixel (o, fs a + dh, fs b + dw)
 * takes xin channel k / rep, k = ((o ft + dt) fs + dh) fs + dw, at (a, b).
 * xin: [ci, h, w]; x, y: [co, h fs, w fs]. */
static void h_dup_add(void *u, const vnode *n, const float *xin, int h, int w, int dt,
                      const float *x, float *y)
{
    (void)u;
    int fs = n->fs, ft = n->ft, rep = n->grp, wo = w * fs;
    size_t S = (size_t)h * w, So = S * fs * fs;
    const float *src[8];
    for (int o = 0; o < n->co; o++)
        for (int dh = 0; dh < fs; dh++) {
            for (int dw = 0; dw < fs && dw < 8; dw++)
                src[dw] = xin + (size_t)((((o * ft + dt) * fs + dh) * fs + dw) / rep) * S;
            for (int a = 0; a < h; a++) {
                size_t row = (size_t)o * So + ((size_t)a * fs + dh) * wo;
                const float *xp = x + row;
                float *yp = y + row;
                if (fs == 1) {
                    for (int b = 0; b < w; b++)
                        yp[b] = xp[b] + src[0][(size_t)a * w + b];
                    continue;
                }
                for (int b = 0; b < w; b++)
                    for (int dw = 0; dw < fs; dw++)
                        yp[b * fs + dw] = xp[b * fs + dw] + src[dw][(size_t)a * w + b];
            }
        }
}

static void run(vd_vae_stream *s, tile *t, int i, const float *x)
{
    if (i == s->n_run) {
        sink(s, t, x);
        return;
    }
    const vnode *n = &s->net->nodes[i];
    nstate *st = &t->st[i];
    float *y = s->ping[n->obuf];
    const vae_ops *op = s->ops;
    void *u = s->u;
    size_t So = (size_t)st->ho * st->wo;
    int64_t k = st->n++;
    switch (n->type) {
    case VN_CONV_IN:
        causal_conv(s, &n->c1, st->cache1, k, x, NULL, st->hi, st->wi, y);
        emit(s, t, i, y);
        break;
    case VN_HEAD:
        if (head_partial(s->net, i)) /* x: the previous layer's output, see above */
            node_head_partial(s, n, st, k, (float *)x, y);
        else
            causal_conv(s, &n->c1, st->cache1, k, x, n->g1, st->hi, st->wi, y);
        emit(s, t, i, y);
        break;
    case VN_RES:
        node_res(s, n, st, k, x, y);
        emit(s, t, i, y);
        break;
    case VN_ATTN:
        node_attn(s, n, st, x, y);
        emit(s, t, i, y);
        break;
    case VN_DOWN2D:
        op->conv_tap(u, &n->c1, &g_down, 0, VK_CONV_BIAS, x, st->hi, st->wi, y);
        emit(s, t, i, y);
        break;
    case VN_DOWN3D: {
        /* spatial first into the ring (even frames slot 0, odd slot 1); then
         * frames 0, 2, 4, ... emit the time conv over (y_{k-2}, y_{k-1}, y_k) */
        float *a = st->keep, *b = st->keep + So * n->ci;
        if (k == 0) {
            op->conv_tap(u, &n->c1, &g_down, 0, VK_CONV_BIAS, x, st->hi, st->wi, a);
            emit(s, t, i, a);
        } else if (k & 1) {
            op->conv_tap(u, &n->c1, &g_down, 0, VK_CONV_BIAS, x, st->hi, st->wi, b);
        } else {
            op->conv_tap(u, &n->c2, &g_none, 0, VK_CONV_BIAS, a, st->ho, st->wo, y);
            op->conv_tap(u, &n->c1, &g_down, 0, VK_CONV_BIAS, x, st->hi, st->wi, a);
            op->conv_tap(u, &n->c2, &g_none, 1, VK_CONV_ACC, b, st->ho, st->wo, y);
            op->conv_tap(u, &n->c2, &g_none, 2, VK_CONV_ACC, a, st->ho, st->wo, y);
            emit(s, t, i, y);
        }
        break;
    }
    case VN_UP2D:
        up_spatial(s, n, st, x, y);
        emit(s, t, i, y);
        break;
    case VN_PATCH:
        op->patchify(u, x, n->ci, st->hi, st->wi, n->fs, y);
        emit(s, t, i, y);
        break;
    case VN_UNPATCH:
        op->unpatchify(u, x, n->co, st->hi, st->wi, n->fs, y);
        emit(s, t, i, y);
        break;
    case VN_AVG_START: {
        /* one zero frame in front: frame k has time offset (k + ft - 1) % ft;
         * frame 0 and every offset-0 frame open a group */
        int dt = (int)((k + n->ft - 1) % n->ft);
        op->avg_share(u, n, x, st->hi, st->wi, dt, k == 0 || dt == 0, st->keep);
        emit(s, t, i, x);
        break;
    }
    case VN_AVG_ADD: {
        const float *sc = t->st[n->pair].keep;
        op->add(u, y, x, sc, 1.0f / (float)n->grp, fsz(n->co, st->hi, st->wi));
        emit(s, t, i, y);
        break;
    }
    case VN_DUP_START:
        op->copy(u, st->keep, x, fsz(n->ci, st->hi, st->wi));
        emit(s, t, i, x);
        break;
    case VN_DUP_ADD: {
        const nstate *ps = &t->st[n->pair];
        op->dup_add(u, n, ps->keep, ps->hi, ps->wi, (int)((k + n->ft - 1) % n->ft), x, y);
        emit(s, t, i, y);
        break;
    }
    case VN_UP3D:
        if (k == 0) {
            up_spatial(s, n, st, x, y);
            emit(s, t, i, y);
        } else {
            /* [2c, S]: time conv over frames 1.. (frame 0 excluded) */
            causal_conv(s, &n->c2, st->cache1, k - 1, x, NULL, st->hi, st->wi, st->keep);
            size_t half = fsz(n->ci, st->hi, st->wi);
            up_spatial(s, n, st, st->keep, y);
            emit(s, t, i, y);
            up_spatial(s, n, st, st->keep + half, y);
            emit(s, t, i, y);
        }
        break;
    }
}

/* The end of the network for one tile: encoder head output [2z, S] ->
 * (conv1, normalise) -> output; decoder head output [3, S] -> output. */
static void sink(vd_vae_stream *s, tile *t, const float *x)
{
    const vd_vae *v = s->v;
    int z = v->cfg.z_dim;
    size_t S = (size_t)t->oth * t->otw;
    const float *src = x;
    if (s->on_dev) { /* the head's output comes back */
        int c = s->enc ? 2 * z : s->net->nodes[s->n_run - 1].co;
        s->ops->get(s->u, s->hout, x, (size_t)c * S);
        src = x = s->hout;
    }
    if (s->enc && s->raw != 2) {
        s->kc->f->conv(s->kc, &v->conv1, &g_none, x, 1, t->oth, t->otw, s->tout);
        if (!s->raw)
            for (int c = 0; c < z; c++) {
                float m = v->cfg.mean[c], is = v->inv_std[c];
                float *p = s->tout + c * S;
                for (size_t k = 0; k < S; k++)
                    p[k] = (p[k] - m) * is;
            }
        src = s->tout;
    }
    int64_t j = t->n_out++ - s->out_first;
    size_t OS = (size_t)s->oh * s->ow;
    float *dst = s->out + (size_t)j * s->fstride;
    (void)OS;
    for (int c = 0; c < s->c_out; c++) {
        const float *sp = src + c * S;
        float *dp = dst + c * s->cstride + (size_t)t->oy0 * s->ow + t->ox0;
        if (!s->accumulate) {
            for (int r = 0; r < t->oth; r++)
                memcpy(dp + (size_t)r * s->ow, sp + (size_t)r * t->otw, t->otw * sizeof(float));
            continue;
        }
        for (int r = 0; r < t->oth; r++)
            for (int q = 0; q < t->otw; q++)
                dp[(size_t)r * s->ow + q] += t->wy[r] * t->wx[q] * sp[(size_t)r * t->otw + q];
    }
}

/* ---- the host's operations (u: the stream) -------------------------------- */

static void *h_alloc(void *u, size_t bytes)
{
    (void)u;
    return vd_malloc(bytes);
}

static void h_release(void *u, void *p)
{
    (void)u;
    vd_free(p);
}

static void h_conv_tap(void *u, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                       const float *x, int h, int w, float *y)
{
    vk_ctx *kc = ((vd_vae_stream *)u)->kc;
    kc->f->conv_tap(kc, cv, g, k, flags, x, h, w, y);
}

static void h_conv(void *u, const vk_conv *cv, const float *x, int h, int w, float *y)
{
    vk_ctx *kc = ((vd_vae_stream *)u)->kc;
    kc->f->conv(kc, cv, &g_none, x, 1, h, w, y);
}

static void h_chnorm(void *u, const float *x, float *y, int c, size_t S, const float *g, int silu)
{
    vk_ctx *kc = ((vd_vae_stream *)u)->kc;
    kc->f->chnorm(kc, x, y, c, (int64_t)S, g, NULL);
    if (silu)
        kc->f->act(kc, y, (int64_t)(c * S), VK_ACT_SILU);
}

static void h_copy(void *u, float *dst, const float *src, size_t n)
{
    (void)u;
    memcpy(dst, src, n * sizeof(float));
}

static void h_add(void *u, float *y, const float *a, const float *b, float sb, size_t n)
{
    (void)u;
    if (sb == 1.0f)
        for (size_t k = 0; k < n; k++)
            y[k] = a[k] + b[k];
    else
        for (size_t k = 0; k < n; k++)
            y[k] = a[k] + b[k] * sb;
}

static int h_check(void *u, vd_log *lg)
{
    (void)u, (void)lg;
    return 0;
}

static const vae_ops host_ops = {
    .alloc = h_alloc,
    .release = h_release,
    .conv_tap = h_conv_tap,
    .conv = h_conv,
    .chnorm = h_chnorm,
    .copy = h_copy,
    .add = h_add,
    .attention = h_attention,
    .up_scatter = h_up_scatter,
    .patchify = h_patchify,
    .unpatchify = h_unpatchify,
    .avg_share = h_avg_share,
    .dup_add = h_dup_add,
    .put = h_copy,
    .get = h_copy,
    .check = h_check,
};

/* ---- detaching from the checkpoint ---------------------------------------- */

typedef struct detacher {
    vk_ctx *kc;
    void (*release)(void *ctx, const void *data);
    void *ctx;
} detacher;

/* Detaches one layer for frames of h x w at its input (oneDNN picks the
 * weights' layout by shape, small frames sometimes another one: a run at
 * another size prepares that layout too, so detach at the size that will
 * run), then hands its stored weights back. */
static int detach(void *ud, vk_conv *cv, const vk_conv_geom *g, int h, int w)
{
    const detacher *d = ud;
    const void *src = cv->w;
    int r = vk_conv_detach(d->kc, cv, g, VD_MAX(h, 1), VD_MAX(w, 1));
    if (!r && d->release && src && cv->w != src)
        d->release(d->ctx, src);
    return r;
}

/* Every layer with weights of one net, in order, with the geometry its
 * convolutions run with and their input frame size (h x w: the net's input,
 * as tile_setup walks it): fn(ud, cv, g, h, w), stopping at the first
 * nonzero return, which is returned. */
int vd_vae_walk(vnet *net, int h, int w,
                int (*fn)(void *ud, vk_conv *cv, const vk_conv_geom *g, int h, int w), void *ud)
{
    int r = 0;
    for (int i = 0; i < net->n && !r; i++) {
        vnode *n = &net->nodes[i];
        switch (n->type) {
        case VN_CONV_IN:
        case VN_HEAD:
            r = fn(ud, &n->c1, tap_geom(&n->c1), h, w);
            break;
        case VN_RES:
            if (!(r = fn(ud, &n->c1, tap_geom(&n->c1), h, w)) &&
                !(r = fn(ud, &n->c2, tap_geom(&n->c2), h, w)) && n->has_sc)
                r = fn(ud, &n->sc, &g_none, h, w);
            break;
        case VN_ATTN:
            if (!(r = fn(ud, &n->c1, &g_none, h, w)))
                r = fn(ud, &n->c2, &g_none, h, w);
            break;
        case VN_DOWN2D:
        case VN_DOWN3D:
            r = fn(ud, &n->c1, &g_down, h, w);
            h /= 2;
            w /= 2;
            if (!r && n->type == VN_DOWN3D)
                r = fn(ud, &n->c2, &g_none, h, w);
            break;
        case VN_UP2D:
        case VN_UP3D:
            for (int p = 0; p < 4 && !r; p++) {
                int a = p >> 1, b = p & 1;
                vk_conv_geom g = { 1, 1, 1, 0, 0, 1 - a, a, 1 - b, b };
                r = fn(ud, &n->up[p], &g, h, w);
            }
            if (!r && n->type == VN_UP3D)
                r = fn(ud, &n->c2, &g_none, h, w);
            h *= 2;
            w *= 2;
            break;
        case VN_PATCH:
            h /= n->fs;
            w /= n->fs;
            break;
        case VN_UNPATCH:
            h *= n->fs;
            w *= n->fs;
            break;
        default: /* the shortcut kinds have no weights */
            break;
        }
    }
    return r;
}

int vd_vae_detach_part(vd_vae *v, vk_ctx *kc, int parts, int h, int w,
                       void (*release)(void *ctx, const void *data), void *ctx)
{
    if (!v || !kc || !parts || (parts & ~(VD_VAE_ENCODER | VD_VAE_DECODER)) || h < 0 || w < 0)
        return VDIT_ERR_INVALID_ARG;
    detacher d = { kc, release, ctx };
    int s = v->cfg.s_factor, r = 0;
    h = h ? h : 512;
    w = w ? w : 512;
    /* the encoder's layers and conv1 (its output), the decoder's and conv2
     * (its input): the halves share no layer */
    if (parts & VD_VAE_ENCODER) {
        r = vd_vae_walk(&v->enc, h, w, detach, &d);
        if (!r)
            r = detach(&d, &v->conv1, &g_none, h / s, w / s);
    }
    if (!r && (parts & VD_VAE_DECODER)) {
        r = detach(&d, &v->conv2, &g_none, h / s, w / s);
        if (!r)
            r = vd_vae_walk(&v->dec, h / s, w / s, detach, &d);
    }
    return r ? vd_err(kc->log, r, "vae: out of memory preparing the weights") : 0;
}

int vd_vae_detach_ends(vd_vae *v, vk_ctx *kc, int h, int w,
                       void (*release)(void *ctx, const void *data), void *ctx)
{
    detacher d = { kc, release, ctx };
    int s = v->cfg.s_factor;
    h = h ? h : 512;
    w = w ? w : 512;
    int r = detach(&d, &v->conv1, &g_none, h / s, w / s);
    if (!r)
        r = detach(&d, &v->conv2, &g_none, h / s, w / s);
    return r ? vd_err(kc->log, r, "vae: out of memory preparing the weights") : 0;
}

int vd_vae_detach(vd_vae *v, vk_ctx *kc, void (*release)(void *ctx, const void *data), void *ctx)
{
    return vd_vae_detach_part(v, kc, VD_VAE_ENCODER | VD_VAE_DECODER, 0, 0, release, ctx);
}

/* ---- stream setup ------------------------------------------------------- */

/* Tiles along one axis of length L (input units) with tile size ts and
 * overlap ov, starts aligned to `al`. Returns the count; starts in st[]. */
static int split_axis(int L, int ts, int ov, int al, int *st, int max)
{
    if (ts >= L) {
        st[0] = 0;
        return 1;
    }
    int n = (L - ov + (ts - ov) - 1) / (ts - ov);
    if (n < 2)
        n = 2;
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++) {
        int p = (int)((int64_t)i * (L - ts) / (n - 1));
        p = p / al * al;
        st[i] = p;
    }
    st[n - 1] = L - ts;
    return n;
}

/* Linear ramps over the overlaps with the neighbours (output units). */
static void ramp(float *wt, int len, int start, int prev_end, int next_start)
{
    for (int q = 0; q < len; q++) {
        int p = start + q;
        float f = 1.0f;
        if (prev_end > start) {
            float ov = (float)(prev_end - start);
            float a = ((float)(p - start) + 0.5f) / ov;
            f *= a < 1 ? a : 1;
        }
        if (next_start >= 0 && next_start < start + len) {
            float ov = (float)(start + len - next_start);
            float a = ((float)(start + len - p) - 0.5f) / ov;
            f *= a < 1 ? a : 1;
        }
        wt[q] = f;
    }
}

static void tile_release(vd_vae_stream *s, tile *t)
{
    if (!t->st)
        return;
    for (int i = 0; i < s->net->n; i++) {
        s->ops->release(s->u, t->st[i].cache1);
        s->ops->release(s->u, t->st[i].cache2);
        s->ops->release(s->u, t->st[i].keep);
    }
    vd_free(t->st);
    t->st = NULL;
}

/* Sizes every layer's buffers for this tile; allocates caches when `alloc`,
 * else only grows the shared maxima. */
static int tile_setup(vd_vae_stream *s, tile *t, int alloc, size_t *mx)
{
    const vnet *net = s->net;
    if (alloc) {
        t->st = vd_calloc(sizeof(nstate) * (size_t)net->n);
        if (!t->st)
            return VDIT_ERR_NOMEM;
        t->n_out = 0;
    }
    int h = t->th, w = t->tw;
    size_t used = 0;
    for (int i = 0; i < net->n; i++) {
        const vnode *n = &net->nodes[i];
        nstate *st = alloc ? &t->st[i] : &(nstate){ 0 };
        st->hi = h;
        st->wi = w;
        if (n->type == VN_DOWN2D || n->type == VN_DOWN3D) {
            h /= 2;
            w /= 2;
        } else if (n->type == VN_UP2D || n->type == VN_UP3D) {
            h *= 2;
            w *= 2;
        } else if (n->type == VN_PATCH) {
            h /= n->fs;
            w /= n->fs;
        } else if (n->type == VN_UNPATCH) {
            h *= n->fs;
            w *= n->fs;
        }
        st->ho = h;
        st->wo = w;
        size_t si = fsz(1, st->hi, st->wi), so = fsz(1, h, w);
        size_t c1 = 0, c2 = 0, kp = 0;
        switch (n->type) {
        case VN_CONV_IN:
            c1 = 2 * si * n->ci;
            break;
        case VN_HEAD:
            c1 = 2 * si * (head_partial(net, i) ? n->co : n->ci);
            break;
        case VN_RES:
            c1 = 2 * si * n->ci;
            c2 = 2 * si * n->co;
            break;
        case VN_DOWN3D:
            kp = 2 * so * n->ci;
            break;
        case VN_UP3D:
            c1 = 2 * si * n->ci;
            kp = 2 * si * n->ci;
            break;
        case VN_AVG_START:
            kp = si / ((size_t)n->fs * n->fs) * n->sco;
            break;
        case VN_DUP_START:
            kp = si * n->ci;
            break;
        default:
            break;
        }
        /* shared maxima: [0] ping (a layer's output frame), [1] tmp (an
         * upsampler's output parity; attention), [2] mid and [3] big
         * (attention: [S, c], qkv and its transpose) */
        int cmax = VD_MAX(n->ci, n->co);
        mx[0] = VD_MAX(mx[0], so * n->co);
        if (n->type == VN_UP2D || n->type == VN_UP3D)
            mx[1] = VD_MAX(mx[1], si * (size_t)n->co);
        if (n->type == VN_ATTN) {
            mx[1] = VD_MAX(mx[1], si * (size_t)cmax);
            mx[2] = VD_MAX(mx[2], si * (size_t)cmax);
            mx[3] = VD_MAX(mx[3], 6 * si * n->ci);
        }
        used += (c1 + c2 + kp) * sizeof(float);
        if (alloc) {
            /* every slot is written before it is read (the taps of frames
             * before 0 are skipped): no clearing, and a slot's pages become
             * resident only when its first frame arrives */
            st->cache1 = c1 ? s->ops->alloc(s->u, c1 * sizeof(float)) : NULL;
            st->cache2 = c2 ? s->ops->alloc(s->u, c2 * sizeof(float)) : NULL;
            st->keep = kp ? s->ops->alloc(s->u, kp * sizeof(float)) : NULL;
            if ((c1 && !st->cache1) || (c2 && !st->cache2) || (kp && !st->keep))
                return VDIT_ERR_NOMEM;
        }
    }
    if (alloc)
        s->bytes += used;
    return 0;
}

void vd_vae_stream_free(vd_vae_stream **ps)
{
    if (!ps || !*ps)
        return;
    vd_vae_stream *s = *ps;
    for (int i = 0; s->tiles && i < s->n_tiles; i++) { /* tiles: NULL if its allocation failed */
        tile_release(s, &s->tiles[i]);
        vd_free(s->tiles[i].wy);
        vd_free(s->tiles[i].wx);
    }
    vd_free(s->tiles);
    if (s->ops) {
        s->ops->release(s->u, s->ping[0]);
        s->ops->release(s->u, s->ping[1]);
        s->ops->release(s->u, s->tmp);
        s->ops->release(s->u, s->mid);
        s->ops->release(s->u, s->big);
        s->ops->release(s->u, s->tin);
    }
    if (s->on_dev)
        vd_vae_dev_stream_free(s->u);
    vd_free(s->hin);
    vd_free(s->hout);
    vd_free(s->tout);
    vd_free(s->wsum);
    vd_free(s->last_frame);
    vd_free(s->dec_in);
    vd_free(s);
    *ps = NULL;
}

/* alloc_tiles: allocate every tile's caches now (streams); one-shot tiled
 * calls allocate one tile at a time. before_unpatch: the decoder stops
 * before its UNPATCH layer (decoder raw 2). */
static int stream_new(const vd_vae *v, vk_ctx *kc, int enc, int h, int w, int tile_px,
                      int alloc_tiles, int before_unpatch, vd_log *lg, vd_vae_stream **out)
{
    if (!v || !kc || !out)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vae stream: missing argument");
    *out = NULL;
    int sf = v->cfg.s_factor;
    if (h <= 0 || w <= 0 || h > (1 << 15) || w > (1 << 15))
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vae: %s size %dx%d out of range",
                      enc ? "frame" : "latent", w, h);
    if (enc && (h % sf || w % sf))
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "vae: frame size %dx%d: width and height must be multiples of %d (the "
                      "VAE's spatial factor)",
                      w, h, sf);
    if (tile_px < 0)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vae: negative tile size %d", tile_px);
    vd_vae_stream *s = vd_calloc(sizeof(*s));
    if (!s)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    int r = VDIT_ERR_NOMEM, on_dev = 0;
    s->v = v;
    s->kc = kc;
    s->ops = &host_ops;
    s->u = s;
    if (v->dev) { /* the nets' weights are on a device: the frames go there too */
        if (!kc->cuda) {
            vd_free(s);
            return vd_err(lg, VDIT_ERR_INVALID_ARG,
                          "vae: the weights are on a CUDA device and this context has none");
        }
        int e = vd_vae_dev_stream_new(v, kc, lg, &s->u);
        if (e) {
            vd_free(s);
            return e;
        }
        s->ops = vd_vae_dev_ops();
        s->on_dev = 1;
    }
    s->enc = enc;
    s->net = enc ? &v->enc : &v->dec;
    s->n_run = s->net->n;
    int osf = sf; /* decoder: output pixels per latent */
    if (!enc && before_unpatch && s->net->nodes[s->net->n - 1].type == VN_UNPATCH) {
        s->n_run--;
        osf /= s->net->nodes[s->net->n - 1].fs;
    }
    s->h = h;
    s->w = w;
    s->oh = enc ? h / sf : h * osf;
    s->ow = enc ? w / sf : w * osf;
    s->c_out = enc ? v->cfg.z_dim : s->net->nodes[s->n_run - 1].co;
    /* tiles in input units: the encoder's starts stay on the sf grid so that
     * every tile's latent grid is the full latent grid */
    int ts = 0, ov = 0, al = enc ? sf : 1;
    if (tile_px) {
        ts = enc ? tile_px / sf * sf : tile_px / sf;
        if (ts < 2 * al)
            ts = 2 * al;
        /* at most 64 tiles per axis: small tiles on huge frames grow */
        for (;;) {
            ov = ts / 4 / al * al;
            if (ov < al)
                ov = al;
            int L = VD_MAX(h, w);
            if (ts >= L || (L - ov + (ts - ov) - 1) / (ts - ov) <= 64)
                break;
            ts *= 2;
        }
    }
    int ys[64], xs[64], ny = 1, nx = 1;
    ys[0] = xs[0] = 0;
    if (ts && (ts < h || ts < w)) {
        ny = split_axis(h, VD_MIN(ts, h), ov, al, ys, 64);
        nx = split_axis(w, VD_MIN(ts, w), ov, al, xs, 64);
    }
    s->n_tiles = ny * nx;
    s->accumulate = s->n_tiles > 1;
    s->tiles = vd_calloc(sizeof(tile) * (size_t)s->n_tiles);
    if (!s->tiles)
        goto fail;
    size_t mx[4] = { 0, 0, 0, 0 };
    for (int a = 0; a < ny; a++)
        for (int b = 0; b < nx; b++) {
            tile *t = &s->tiles[a * nx + b];
            t->y0 = ys[a];
            t->x0 = xs[b];
            t->th = ny > 1 ? VD_MIN(ts, h) : h;
            t->tw = nx > 1 ? VD_MIN(ts, w) : w;
            int f = enc ? 1 : osf, dv = enc ? sf : 1;
            t->oy0 = t->y0 * f / dv;
            t->ox0 = t->x0 * f / dv;
            t->oth = t->th * f / dv;
            t->otw = t->tw * f / dv;
            if (s->accumulate) {
                t->wy = vd_malloc(sizeof(float) * (size_t)t->oth);
                t->wx = vd_malloc(sizeof(float) * (size_t)t->otw);
                if (!t->wy || !t->wx)
                    goto fail;
                int pe = a > 0 ? (ys[a - 1] + t->th) * f / dv : -1;
                int ns = a + 1 < ny ? ys[a + 1] * f / dv : -1;
                ramp(t->wy, t->oth, t->oy0, pe, ns);
                pe = b > 0 ? (xs[b - 1] + t->tw) * f / dv : -1;
                ns = b + 1 < nx ? xs[b + 1] * f / dv : -1;
                ramp(t->wx, t->otw, t->ox0, pe, ns);
            }
            if ((r = tile_setup(s, t, alloc_tiles, mx)))
                goto fail;
            r = VDIT_ERR_NOMEM;
        }
    tile *t0 = &s->tiles[0];
    size_t sin = fsz(1, t0->th, t0->tw), sout = fsz(1, t0->oth, t0->otw);
    int z2 = 2 * v->cfg.z_dim;
    const vae_ops *op = s->ops;
    size_t lin = sin * (size_t)(enc ? 3 : v->cfg.z_dim);
    s->ping[0] = op->alloc(s->u, mx[0] * sizeof(float));
    s->ping[1] = op->alloc(s->u, mx[0] * sizeof(float));
    /* the host's attention also keeps [S, c] and the transposed qkv; a
     * device's computes from qkv [3c, S] directly */
    if (s->on_dev)
        mx[2] = 0, mx[3] /= 2;
    s->tmp = mx[1] ? op->alloc(s->u, mx[1] * sizeof(float)) : NULL;
    s->mid = mx[2] ? op->alloc(s->u, mx[2] * sizeof(float)) : NULL;
    s->big = mx[3] ? op->alloc(s->u, mx[3] * sizeof(float)) : NULL;
    s->tin = op->alloc(s->u, lin * sizeof(float));
    s->tout = vd_malloc(sout * (size_t)z2 * sizeof(float));
    if (!s->ping[0] || !s->ping[1] || (mx[1] && !s->tmp) || (mx[2] && !s->mid) ||
        (mx[3] && !s->big) || !s->tin || !s->tout)
        goto fail;
    if (s->on_dev) {
        s->hin = vd_malloc(lin * sizeof(float));
        s->hout = vd_malloc(sout * (size_t)z2 * sizeof(float));
        if (!s->hin || !s->hout)
            goto fail;
    }
    s->bytes += (2 * mx[0] + mx[1] + mx[2] + mx[3]) * sizeof(float) +
                sin * (size_t)(enc ? 3 : v->cfg.z_dim) * sizeof(float) + sout * z2 * sizeof(float);
    if (s->accumulate) {
        s->wsum = vd_calloc(fsz(1, s->oh, s->ow) * sizeof(float));
        if (!s->wsum)
            goto fail;
        for (int i = 0; i < s->n_tiles; i++) {
            const tile *t = &s->tiles[i];
            for (int a = 0; a < t->oth; a++)
                for (int b = 0; b < t->otw; b++)
                    s->wsum[(size_t)(t->oy0 + a) * s->ow + t->ox0 + b] += t->wy[a] * t->wx[b];
        }
        for (size_t k = 0; k < fsz(1, s->oh, s->ow); k++)
            s->wsum[k] = 1.0f / s->wsum[k];
        s->bytes += fsz(1, s->oh, s->ow) * sizeof(float);
    }
    s->frame_len = fsz(enc ? 3 : v->cfg.z_dim, h, w);
    if (enc) {
        s->last_frame = vd_malloc(s->frame_len * sizeof(float));
        if (!s->last_frame)
            goto fail;
        s->bytes += s->frame_len * sizeof(float);
    } else {
        s->dec_in = vd_malloc(2 * s->frame_len * sizeof(float));
        if (!s->dec_in)
            goto fail;
        s->bytes += 2 * s->frame_len * sizeof(float);
    }
    *out = s;
    return 0;
fail:
    on_dev = s->on_dev;
    vd_vae_stream_free(&s);
    return vd_err(lg, r, "vae: out of %smemory for a %dx%d stream", on_dev ? "device " : "", w,
                  h);
}

int vd_vae_enc_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out)
{
    return stream_new(v, kc, 1, h, w, tile, 1, 0, kc ? kc->log : NULL, out);
}

int vd_vae_dec_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out)
{
    return stream_new(v, kc, 0, h, w, tile, 1, 0, kc ? kc->log : NULL, out);
}

int vd_vae_stream_set_raw(vd_vae_stream *s, int raw)
{
    if (!s || raw < 0 || raw > (s->enc ? 2 : 1) || s->n_in)
        return VDIT_ERR_INVALID_ARG;
    s->raw = raw;
    s->c_out = s->enc ? (raw ? 2 * s->v->cfg.z_dim : s->v->cfg.z_dim) : 3;
    return 0;
}

size_t vd_vae_stream_bytes(const vd_vae_stream *s)
{
    return s ? s->bytes : 0;
}

/* ---- pushing ---------------------------------------------------------------- */

/* Runs one input frame (full size, net input units) through tile t. */
static void run_tile(vd_vae_stream *s, tile *t, const float *frame)
{
    int c = s->net->nodes[0].ci;
    const float *x = frame;
    if (s->n_tiles > 1 || t->th != s->h || t->tw != s->w) {
        float *crop = s->on_dev ? s->hin : s->tin;
        for (int ch = 0; ch < c; ch++)
            for (int r = 0; r < t->th; r++)
                memcpy(crop + ((size_t)ch * t->th + r) * t->tw,
                       frame + ((size_t)ch * s->h + t->y0 + r) * s->w + t->x0,
                       t->tw * sizeof(float));
        x = crop;
    }
    if (s->on_dev) { /* up to the device */
        s->ops->put(s->u, s->tin, x, fsz(c, t->th, t->tw));
        x = s->tin;
    }
    run(s, t, 0, x);
}

/* Frames that frame number k (0-based) of the net input produces. */
static int frames_out(const vd_vae_stream *s, int64_t k)
{
    int tf = s->v->cfg.t_factor;
    if (s->enc)
        return k == 0 || k % tf == 0;
    return k == 0 ? 1 : tf;
}

/* Normalises blended output (tiled) and clamps decoder output; frames
 * [f0, f0 + n) of s->out. */
static void finish(vd_vae_stream *s, int64_t f0, int n)
{
    size_t OS = fsz(1, s->oh, s->ow);
    for (int64_t f = f0; f < f0 + n; f++)
        for (int c = 0; c < s->c_out; c++) {
            float *p = s->out + (size_t)f * s->fstride + c * s->cstride;
            if (s->accumulate)
                for (size_t k = 0; k < OS; k++)
                    p[k] *= s->wsum[k];
            if (!s->enc && !s->raw)
                for (size_t k = 0; k < OS; k++)
                    p[k] = p[k] < -1.0f ? -1.0f : p[k] > 1.0f ? 1.0f : p[k];
        }
}

/* Zeroes frames [f0, f0 + n) of s->out (tiles accumulate into them). */
static void clear_out(vd_vae_stream *s, int64_t f0, int n)
{
    size_t OS = fsz(1, s->oh, s->ow);
    for (int64_t f = f0; f < f0 + n; f++)
        for (int c = 0; c < s->c_out; c++)
            memset(s->out + (size_t)f * s->fstride + c * s->cstride, 0, OS * sizeof(float));
}

/* Output frames [n][c_out, S] (streams) or a [c_out, t, S] tensor. */
static void set_out(vd_vae_stream *s, float *out, int64_t first, int t_cthw)
{
    size_t OS = fsz(1, s->oh, s->ow);
    s->out = out;
    s->out_first = first;
    s->fstride = t_cthw ? OS : s->c_out * OS;
    s->cstride = t_cthw ? (size_t)t_cthw * OS : OS;
}

static int push(vd_vae_stream *s, const float *x, float *out, int *n_out)
{
    int n = frames_out(s, s->n_in);
    set_out(s, out, s->tiles[0].n_out, 0);
    if (s->accumulate)
        clear_out(s, 0, n);
    for (int i = 0; i < s->n_tiles; i++)
        run_tile(s, &s->tiles[i], x);
    int r = s->ops->check(s->u, s->kc->log);
    if (r)
        return r;
    finish(s, 0, n);
    s->n_in++;
    *n_out = n;
    return 0;
}

int vd_vae_enc_stream_push(vd_vae_stream *s, const float *frame, float *lat, int *n_out)
{
    if (!s || !s->enc || !frame || !lat || !n_out)
        return VDIT_ERR_INVALID_ARG;
    memcpy(s->last_frame, frame, s->frame_len * sizeof(float));
    return push(s, frame, lat, n_out);
}

int vd_vae_enc_stream_flush(vd_vae_stream *s, float *lat, int *n_out)
{
    if (!s || !s->enc || !lat || !n_out)
        return VDIT_ERR_INVALID_ARG;
    *n_out = 0;
    int tf = s->v->cfg.t_factor;
    while (s->n_in > 0 && (s->n_in - 1) % tf) {
        int r = push(s, s->last_frame, lat, n_out);
        if (r)
            return r;
    }
    return 0;
}

/* Decoder input: z * std + mean (as z / float32(1/std) + mean), then conv2. */
static void dec_input(const vd_vae *v, vk_ctx *kc, const float *lat, int h, int w, float *tmp,
                      float *x)
{
    int z = v->cfg.z_dim;
    size_t S = (size_t)h * w;
    for (int c = 0; c < z; c++)
        for (size_t k = 0; k < S; k++)
            tmp[c * S + k] = lat[c * S + k] / v->inv_std[c] + v->cfg.mean[c];
    kc->f->conv(kc, &v->conv2, &g_none, tmp, 1, h, w, x);
}

int vd_vae_dec_stream_push(vd_vae_stream *s, const float *lat, float *frames, int *n_out)
{
    if (!s || s->enc || !lat || !frames || !n_out)
        return VDIT_ERR_INVALID_ARG;
    size_t len = s->frame_len;
    dec_input(s->v, s->kc, lat, s->h, s->w, s->dec_in, s->dec_in + len);
    return push(s, s->dec_in + len, frames, n_out);
}

/* ---- one-shot ------------------------------------------------------------------ */

int vd_vae_latent_frames(const vd_vae *v, int t)
{
    if (!v || t < 1)
        return 0;
    int tf = v->cfg.t_factor;
    return 1 + (t - 1 + tf - 1) / tf;
}

int vd_vae_video_frames(const vd_vae *v, int tl)
{
    if (!v || tl < 1)
        return 0;
    return 1 + v->cfg.t_factor * (tl - 1);
}

/* Copies frame k of a [c, T, h, w] tensor into [c, h, w]. */
static void get_frame(const float *src, int c, int t, int k, size_t S, float *dst)
{
    for (int ch = 0; ch < c; ch++)
        memcpy(dst + ch * S, src + ((size_t)ch * t + k) * S, S * sizeof(float));
}

/* Runs all frames through the stream, tile after tile (each tile's caches
 * alive only during its pass). in: [c_in, n_in, h, w]; out: [c_out, T, S]
 * if cthw, else frame-major [T][c_out, S]. */
static int run_all(vd_vae_stream *s, const float *in, int n_in_frames, int n_pad, float *out,
                   int cthw)
{
    size_t S = fsz(1, s->h, s->w);
    int c = s->enc ? 3 : s->v->cfg.z_dim;
    float *fr = vd_malloc(s->frame_len * sizeof(float) * (s->enc ? 1 : 2));
    if (!fr)
        return VDIT_ERR_NOMEM;
    size_t OS = fsz(1, s->oh, s->ow);
    int64_t total = 0;
    for (int k = 0; k < n_in_frames + n_pad; k++)
        total += frames_out(s, k);
    (void)OS;
    set_out(s, out, 0, cthw ? (int)total : 0);
    if (s->accumulate)
        clear_out(s, 0, (int)total);
    int r = 0;
    for (int i = 0; i < s->n_tiles && !r; i++) {
        tile *t = &s->tiles[i];
        size_t mx[4] = { 0, 0, 0, 0 };
        if ((r = tile_setup(s, t, 1, mx)))
            break;
        for (int k = 0; k < n_in_frames + n_pad; k++) {
            int kk = VD_MIN(k, n_in_frames - 1);
            if (s->enc) {
                get_frame(in, c, n_in_frames, kk, S, fr);
                run_tile(s, t, fr);
            } else {
                get_frame(in, c, n_in_frames, kk, S, fr + s->frame_len);
                dec_input(s->v, s->kc, fr + s->frame_len, s->h, s->w, fr, fr + s->frame_len);
                run_tile(s, t, fr + s->frame_len);
            }
        }
        tile_release(s, t);
        if (!r)
            r = s->ops->check(s->u, s->kc->log);
    }
    vd_free(fr);
    if (!r)
        finish(s, 0, (int)total);
    return r;
}

int vd_vae_encode_ex(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h, int w,
                     int tile_px, int raw, float *mu, float *log_var)
{
    vd_log *lg = kc ? kc->log : NULL;
    if (!v || !kc || !video || !mu || t < 1 || raw < 0 || raw > 2)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_vae_encode: bad argument");
    vd_vae_stream *s = NULL;
    int r = stream_new(v, kc, 1, h, w, tile_px, 0, 0, lg, &s);
    if (r)
        return r;
    /* log_var comes from the raw conv1 output; mu is normalised afterwards */
    int norm_after = !raw && log_var;
    s->raw = norm_after ? 1 : raw;
    s->c_out = s->raw ? 2 * v->cfg.z_dim : v->cfg.z_dim;
    int tl = vd_vae_latent_frames(v, t);
    int pad = vd_vae_video_frames(v, tl) - t;
    size_t OS = fsz(1, s->oh, s->ow);
    float *o = vd_malloc((size_t)tl * s->c_out * OS * sizeof(float));
    if (!o) {
        vd_vae_stream_free(&s);
        return vd_err(lg, VDIT_ERR_NOMEM, "vd_vae_encode: out of memory");
    }
    r = run_all(s, video, t, pad, o, 0);
    if (!r) {
        int z = v->cfg.z_dim;
        /* frame-major [tl][c, S] -> [c, tl, S] */
        int cm = raw == 2 ? 2 * z : z;
        for (int f = 0; f < tl; f++) {
            const float *src = o + (size_t)f * s->c_out * OS;
            for (int c = 0; c < cm; c++)
                memcpy(mu + ((size_t)c * tl + f) * OS, src + c * OS, OS * sizeof(float));
            if (log_var && raw != 2 && s->c_out == 2 * z)
                for (int c = 0; c < z; c++)
                    memcpy(log_var + ((size_t)c * tl + f) * OS, src + (z + c) * OS,
                           OS * sizeof(float));
        }
        if (norm_after)
            for (int c = 0; c < z; c++) {
                float m = v->cfg.mean[c], is = v->inv_std[c];
                float *p = mu + (size_t)c * tl * OS;
                for (size_t k = 0; k < (size_t)tl * OS; k++)
                    p[k] = (p[k] - m) * is;
            }
    }
    vd_free(o);
    vd_vae_stream_free(&s);
    return r == VDIT_ERR_NOMEM ? vd_err(lg, r, "vd_vae_encode: out of memory") : r;
}

int vd_vae_encode(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h, int w,
                  float *mu, float *log_var)
{
    return vd_vae_encode_ex(v, kc, video, t, h, w, 0, 0, mu, log_var);
}

int vd_vae_decoder_input(const vd_vae *v, vk_ctx *kc, const float *lat, int h, int w,
                         float *out)
{
    if (!v || !kc || !lat || !out || h <= 0 || w <= 0)
        return VDIT_ERR_INVALID_ARG;
    float *tmp = vd_malloc(fsz(v->cfg.z_dim, h, w) * sizeof(float));
    if (!tmp)
        return VDIT_ERR_NOMEM;
    dec_input(v, kc, lat, h, w, tmp, out);
    vd_free(tmp);
    return 0;
}

int vd_vae_decode_ex(const vd_vae *v, vk_ctx *kc, const float *z, int tl, int h, int w,
                     int tile_px, int raw, float *video)
{
    vd_log *lg = kc ? kc->log : NULL;
    if (!v || !kc || !z || !video || tl < 1 || raw < 0 || raw > 2)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_vae_decode: bad argument");
    vd_vae_stream *s = NULL;
    int r = stream_new(v, kc, 0, h, w, tile_px, 0, raw == 2, lg, &s);
    if (r)
        return r;
    s->raw = raw ? 1 : 0;
    /* written straight into the caller's [c_out, T, H, W] */
    r = run_all(s, z, tl, 0, video, 1);
    vd_vae_stream_free(&s);
    return r == VDIT_ERR_NOMEM ? vd_err(lg, r, "vd_vae_decode: out of memory") : r;
}

int vd_vae_decode(const vd_vae *v, vk_ctx *kc, const float *z, int tl, int h, int w,
                  float *video)
{
    return vd_vae_decode_ex(v, kc, z, tl, h, w, 0, 0, video);
}
