/*
 * The Wan-VAEs on a CUDA device (kernels/cuda/vkc.h).
 *
 * vd_vae_upload puts both nets' convolutions (every temporal tap as its own
 * [c_out, c_in, kh, kw] matrix, in the model's precision: bf16, or fp32 for
 * exact contexts), their biases and the RMS_norm gammas on the device once,
 * at load, and hands the stored weights back. vae.c's stream engine then
 * runs unchanged over the operations below (vae_impl.h, vae_ops): every
 * buffer of a stream (the causal caches, the rate changers' frames, the
 * ping-pong buffers) is device memory, a frame goes up once (the tile's
 * input) and its output comes back once, and nothing else crosses. The ends
 * (conv1 and conv2, 1x1 on the latent, z_dim² multiply-adds per latent
 * pixel) stay on the host.
 *
 * Layers are found by the address of their host vk_conv (and gammas by
 * their host pointer): a sorted table, searched per call (a few hundred
 * entries). Each operation is one or a few vkc calls:
 *   conv_tap, conv: vkc_conv2d on the tap's matrix;
 *   chnorm (+ SiLU): vkc_chnorm;
 *   the middle's single-head attention: the scores of a block of queries
 *     [qb, S] = Qᵀ K by vkc_gemm straight from qkv [3c, S] (no transpose),
 *     vkc_softmax with the scale 1/sqrt(c), then o[:, block] = V Pᵀ, again
 *     channel-first; blocks bound the scores to 256 MiB;
 *   the upsampler's parity scatter and (un)patchify: vkc_copy_nd;
 *   Wan2.2's shortcuts: vkc_avg_share, vkc_dup_add.
 * Errors are sticky in the context (vkc.h); a stream checks them after each
 * push (vae_ops.check), so a failed kernel ends the call with its reason.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_impl.h"

#if VK_HAVE_CUDA
#include "../kernels/cuda/vkc.h"
#include "../kernels/impl.h"

#define SCORES_BYTES ((size_t)256 << 20)

typedef struct dconv {
    const vk_conv *key;
    void *w;      /* [kd][c_out, c_in, kh, kw], VKC_BF16 or VKC_F32 */
    float *b;     /* [c_out] or NULL */
    size_t tap;   /* elements per tap */
} dconv;

typedef struct dvec {
    const float *key;
    float *d;
} dvec;

struct vae_dev {
    vkc_ctx *vc; /* the model's: owns the memory */
    int bf16;
    dconv *convs;
    dvec *vecs;
    size_t n_convs, n_vecs, cap_convs, cap_vecs;
    size_t bytes;
};

typedef struct dstream {
    vkc_ctx *vc; /* the context's (kc->cuda) */
    const vae_dev *d;
    int bf16;
    float *scores;
    size_t scores_len;
    const char *missing; /* a layer the device does not have (a bug) */
} dstream;

static int cmp_conv(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const dconv *)a)->key, y = (uintptr_t)((const dconv *)b)->key;
    return x < y ? -1 : x > y;
}

static int cmp_vec(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const dvec *)a)->key, y = (uintptr_t)((const dvec *)b)->key;
    return x < y ? -1 : x > y;
}

static const dconv *find_conv(dstream *s, const vk_conv *cv)
{
    dconv k = { .key = cv };
    const dconv *e = bsearch(&k, s->d->convs, s->d->n_convs, sizeof(dconv), cmp_conv);
    if (!e && !s->missing)
        s->missing = "a convolution";
    return e;
}

static const float *find_vec(dstream *s, const float *g)
{
    dvec k = { .key = g };
    const dvec *e = bsearch(&k, s->d->vecs, s->d->n_vecs, sizeof(dvec), cmp_vec);
    if (!e && !s->missing)
        s->missing = "a norm's gamma";
    return e ? e->d : NULL;
}

/* ---- the operations ------------------------------------------------------ */

static void *d_alloc(void *u, size_t bytes)
{
    return vkc_alloc(((dstream *)u)->vc, bytes);
}

static void d_release(void *u, void *p)
{
    vkc_free(((dstream *)u)->vc, p);
}

static void d_conv_tap(void *u, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                       const float *x, int h, int w, float *y)
{
    dstream *s = u;
    const dconv *dc = find_conv(s, cv);
    if (!dc)
        return;
    vkc_conv_geom cg = { cv->kh, cv->kw, g->sh, g->sw, g->ph0, g->ph1, g->pw0, g->pw1 };
    const char *wk = (const char *)dc->w + (size_t)k * dc->tap * (s->d->bf16 ? 2 : 4);
    vkc_conv2d(s->vc, s->bf16, x, cv->c_in, h, w, wk, s->d->bf16 ? VKC_BF16 : VKC_F32, cv->c_out,
               &cg, (flags & VK_CONV_BIAS) ? dc->b : NULL, (flags & VK_CONV_ACC) != 0, y);
}

static void d_conv(void *u, const vk_conv *cv, const float *x, int h, int w, float *y)
{
    static const vk_conv_geom g1 = { 1, 1, 1, 0, 0, 0, 0, 0, 0 };
    d_conv_tap(u, cv, &g1, 0, VK_CONV_BIAS, x, h, w, y);
}

static void d_chnorm(void *u, const float *x, float *y, int c, size_t S, const float *g, int silu)
{
    dstream *s = u;
    const float *gd = find_vec(s, g);
    if (gd)
        vkc_chnorm(s->vc, x, y, c, (int64_t)S, gd, silu);
}

static void d_copy(void *u, float *dst, const float *src, size_t n)
{
    const int64_t one = 1, dim = (int64_t)n;
    vkc_copy_nd(((dstream *)u)->vc, dst, &one, src, &one, &dim, 1);
}

static void d_add(void *u, float *y, const float *a, const float *b, float sb, size_t n)
{
    vkc_add_scaled(((dstream *)u)->vc, y, a, b, sb, (int64_t)n);
}

/* qkv [3c, S] channel-first; per block of qb queries: P = softmax(Qᵀ K /
 * sqrt(c)) [qb, S], o[:, q0 + i] = Σ_j V[:, j] P[i, j]. */
static void d_attention(void *u, const float *qkv, int c, size_t S, float *o)
{
    dstream *s = u;
    int64_t n = (int64_t)S, qb = (int64_t)(SCORES_BYTES / sizeof(float) / S);
    qb = qb < 1 ? 1 : qb > n ? n : qb;
    size_t need = (size_t)qb * S;
    if (s->scores_len < need) {
        vkc_free(s->vc, s->scores);
        s->scores_len = 0;
        if (!(s->scores = vkc_alloc(s->vc, need * sizeof(float)))) {
            if (!s->missing)
                s->missing = "device memory for the attention's scores";
            return;
        }
        s->scores_len = need;
    }
    const float *q = qkv, *k = qkv + (size_t)c * S, *v = qkv + 2 * (size_t)c * S;
    for (int64_t q0 = 0; q0 < n; q0 += qb) {
        int64_t m = n - q0 < qb ? n - q0 : qb;
        /* scores[m, S] = op(A) op(B): A = Q [c, S] transposed, columns q0..; B = K [c, S] */
        vkc_gemm(s->vc, s->bf16, 1, 0, m, n, c, 1.0f, q + q0, n, k, n, 0.0f, s->scores, n);
        vkc_softmax(s->vc, s->scores, m, n, n, 1.0f / sqrtf((float)c));
        /* o[c, q0 .. q0 + m) = V [c, S] · Pᵀ (P = scores [m, S], transposed) */
        vkc_gemm(s->vc, s->bf16, 0, 1, c, m, n, 1.0f, v, n, s->scores, n, 0.0f, o + q0, n);
    }
}

/* src [co, h, w] into the pixels (2r + a, 2q + b) of y [co, 2h, 2w] */
static void d_up_scatter(void *u, const float *src, int co, int h, int w, int a, int b, float *y)
{
    int64_t dims[3] = { co, h, w };
    int64_t ss[3] = { (int64_t)h * w, w, 1 };
    int64_t ds[3] = { 4 * (int64_t)h * w, 4 * (int64_t)w, 2 };
    vkc_copy_nd(((dstream *)u)->vc, y + (size_t)a * 2 * w + b, ds, src, ss, dims, 3);
}

/* vae.c's patchify: y[((ch p + r) p + q) ho wo + a wo + b] = x[(ch h + a p + q) w + b p + r] */
static void d_patchify(void *u, const float *x, int c, int h, int w, int p, float *y)
{
    int64_t ho = h / p, wo = w / p;
    int64_t dims[5] = { c, p, p, ho, wo };
    int64_t ds[5] = { (int64_t)p * p * ho * wo, p * ho * wo, ho * wo, wo, 1 };
    int64_t ss[5] = { (int64_t)h * w, 1, w, (int64_t)p * w, p };
    vkc_copy_nd(((dstream *)u)->vc, y, ds, x, ss, dims, 5);
}

/* vae.c's unpatchify: y[(ch h p + a p + q) wo + b p + r] = x[((ch p + r) p + q) h w + a w + b],
 * wo = w p */
static void d_unpatchify(void *u, const float *x, int c, int h, int w, int p, float *y)
{
    int64_t wo = (int64_t)w * p;
    int64_t dims[5] = { c, h, p, p, w };
    int64_t ds[5] = { (int64_t)h * p * wo, p * wo, wo, 1, p };
    int64_t ss[5] = { (int64_t)p * p * h * w, w, (int64_t)h * w, (int64_t)p * h * w, 1 };
    vkc_copy_nd(((dstream *)u)->vc, y, ds, x, ss, dims, 5);
}

static void d_avg_share(void *u, const vnode *n, const float *x, int h, int w, int dt, int first,
                        float *sc)
{
    vkc_avg_share(((dstream *)u)->vc, x, n->ci, h, w, n->ft, n->fs, n->grp, n->sco, dt, first, sc);
}

static void d_dup_add(void *u, const vnode *n, const float *xin, int h, int w, int dt,
                      const float *x, float *y)
{
    vkc_dup_add(((dstream *)u)->vc, xin, h, w, n->co, n->ft, n->fs, n->grp, dt, x, y);
}

static void d_put(void *u, float *dst, const float *host, size_t n)
{
    vkc_upload(((dstream *)u)->vc, dst, host, n * sizeof(float));
}

static void d_get(void *u, float *host, const float *src, size_t n)
{
    vkc_download(((dstream *)u)->vc, host, src, n * sizeof(float));
}

static int d_check(void *u, vd_log *lg)
{
    dstream *s = u;
    if (s->missing)
        return vd_err(lg, VDIT_ERR_INTERNAL, "vae on %s: %s is not on the device",
                      vkc_device_name(s->vc), s->missing);
    if (vkc_sync(s->vc)) {
        const char *why = vkc_error(s->vc);
        return vd_err(lg, VDIT_ERR_INTERNAL, "vae on %s: %s", vkc_device_name(s->vc),
                      why && *why ? why : "the device failed");
    }
    return 0;
}

static const vae_ops dev_ops = {
    .alloc = d_alloc,
    .release = d_release,
    .conv_tap = d_conv_tap,
    .conv = d_conv,
    .chnorm = d_chnorm,
    .copy = d_copy,
    .add = d_add,
    .attention = d_attention,
    .up_scatter = d_up_scatter,
    .patchify = d_patchify,
    .unpatchify = d_unpatchify,
    .avg_share = d_avg_share,
    .dup_add = d_dup_add,
    .put = d_put,
    .get = d_get,
    .check = d_check,
};

const vae_ops *vd_vae_dev_ops(void)
{
    return &dev_ops;
}

int vd_vae_dev_stream_new(const vd_vae *v, vk_ctx *kc, vd_log *lg, void **out)
{
    *out = NULL;
    if (!v->dev || !kc->cuda)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vae: no device weights or no device context");
    if (!!kc->cuda_bf16 != !!v->dev->bf16)
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "vae: the weights are on the device in %s and this context computes in %s",
                      v->dev->bf16 ? "bf16" : "fp32", kc->cuda_bf16 ? "bf16" : "fp32");
    dstream *s = vd_calloc(sizeof(*s));
    if (!s)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    s->vc = kc->cuda;
    s->d = v->dev;
    s->bf16 = v->dev->bf16;
    *out = s;
    return 0;
}

void vd_vae_dev_stream_free(void *u)
{
    dstream *s = u;
    if (!s)
        return;
    vkc_free(s->vc, s->scores);
    vd_free(s);
}

/* ---- upload ---------------------------------------------------------------- */

typedef struct uploader {
    vae_dev *d;
    void (*release)(void *ctx, const void *data);
    void *ctx;
    float *tmp;
    size_t tmp_len;
} uploader;

/* Room for one more entry in the array *arr of n entries (doubling *cap);
 * 0 or -1. */
static int grow(void **arr, size_t *cap, size_t n, size_t es)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, c * es);
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

static int up_vec(vae_dev *d, const float *g, size_t n)
{
    if (!g)
        return 0;
    if (grow((void **)&d->vecs, &d->cap_vecs, d->n_vecs, sizeof(dvec)))
        return VDIT_ERR_NOMEM;
    float *dv = vkc_weights(d->vc, g, VKC_F32, n, VKC_F32, 1.0f);
    if (!dv)
        return VDIT_ERR_NOMEM;
    d->vecs[d->n_vecs++] = (dvec){ g, dv };
    d->bytes += n * sizeof(float);
    return 0;
}

/* One layer: its weights [c_out, c_in, kd, kh, kw] as kd taps [c_out, c_in,
 * kh, kw] (fp32 on the host, then converted on the device). */
static int up_conv(void *ud, vk_conv *cv, const vk_conv_geom *g, int h, int w)
{
    (void)g, (void)h, (void)w;
    uploader *up = ud;
    vae_dev *d = up->d;
    if (grow((void **)&d->convs, &d->cap_convs, d->n_convs, sizeof(dconv)))
        return VDIT_ERR_NOMEM;
    size_t tap = (size_t)cv->c_out * cv->c_in * cv->kh * cv->kw, n = tap * cv->kd;
    size_t inner = (size_t)cv->kh * cv->kw;
    if (up->tmp_len < 2 * n) {
        vd_free(up->tmp);
        up->tmp_len = 0;
        if (!(up->tmp = vd_malloc(2 * n * sizeof(float))))
            return VDIT_ERR_NOMEM;
        up->tmp_len = 2 * n;
    }
    vt_dtype t;
    float *own = NULL;
    const void *src = vk_conv_src(cv, &t, &own);
    if (!src)
        return VDIT_ERR_NOMEM;
    float *wf = up->tmp, *wt = up->tmp + n;
    vk_weights_to_f32(wf, src, t, n);
    vd_free(own);
    /* [o][i][k][hw] -> [k][o][i][hw] */
    for (size_t o = 0; o < (size_t)cv->c_out; o++)
        for (size_t i = 0; i < (size_t)cv->c_in; i++)
            for (int k = 0; k < cv->kd; k++)
                memcpy(wt + (size_t)k * tap + (o * cv->c_in + i) * inner,
                       wf + ((o * cv->c_in + i) * cv->kd + k) * inner, inner * sizeof(float));
    dconv e = { .key = cv, .tap = tap };
    e.w = vkc_weights(d->vc, wt, VKC_F32, n, d->bf16 ? VKC_BF16 : VKC_F32, 1.0f);
    if (!e.w)
        return VDIT_ERR_NOMEM;
    d->convs[d->n_convs++] = e; /* owned from here, also on failure below */
    if (cv->bias && !(d->convs[d->n_convs - 1].b = vkc_weights(d->vc, cv->bias, VKC_F32,
                                                               (size_t)cv->c_out, VKC_F32, 1.0f)))
        return VDIT_ERR_NOMEM;
    d->bytes += n * (d->bf16 ? 2 : 4) + (cv->bias ? (size_t)cv->c_out * 4 : 0);
    /* the host no longer reads the stored weights (vae.c refuses host runs
     * of a model on a device) */
    if (cv->w && up->release)
        up->release(up->ctx, cv->w);
    cv->w = NULL;
    return 0;
}

static int up_gammas(vae_dev *d, const vnet *net)
{
    int r = 0;
    for (int i = 0; i < net->n && !r; i++) {
        const vnode *n = &net->nodes[i];
        if ((r = up_vec(d, n->g1, (size_t)n->ci)))
            break;
        r = up_vec(d, n->g2, (size_t)n->co);
    }
    return r;
}

void vd_vae_dev_free(vae_dev **pd)
{
    vae_dev *d = pd ? *pd : NULL;
    if (!d)
        return;
    for (size_t i = 0; i < d->n_convs; i++) {
        vkc_free(d->vc, d->convs[i].w);
        vkc_free(d->vc, d->convs[i].b);
    }
    for (size_t i = 0; i < d->n_vecs; i++)
        vkc_free(d->vc, d->vecs[i].d);
    free(d->convs);
    free(d->vecs);
    vd_free(d);
    *pd = NULL;
}

int vd_vae_upload(vd_vae *v, void *vc, vk_prec prec, vk_ctx *kc,
                  void (*release)(void *ctx, const void *data), void *ctx, vd_log *lg)
{
    if (!v || !vc || !kc || v->dev)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_vae_upload: bad argument");
    vae_dev *d = vd_calloc(sizeof(*d));
    if (!d)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    d->vc = vc;
    d->bf16 = prec == VK_PREC_BF16;
    uploader up = { d, release, ctx, NULL, 0 };
    int s = v->cfg.s_factor;
    int r = vd_vae_walk(&v->enc, 512, 512, up_conv, &up);
    if (!r)
        r = vd_vae_walk(&v->dec, 512 / s, 512 / s, up_conv, &up);
    if (!r)
        r = up_gammas(d, &v->enc);
    if (!r)
        r = up_gammas(d, &v->dec);
    vd_free(up.tmp);
    if (!r && vkc_sync(vc))
        r = VDIT_ERR_INTERNAL;
    if (r) {
        const char *why = vkc_error(vc);
        r = vd_err(lg, why && *why ? VDIT_ERR_INTERNAL : VDIT_ERR_NOMEM,
                   "uploading the VAE to %s: %s", vkc_device_name(vc),
                   why && *why ? why : "out of memory");
        vd_vae_dev_free(&d);
        return r;
    }
    qsort(d->convs, d->n_convs, sizeof(dconv), cmp_conv);
    qsort(d->vecs, d->n_vecs, sizeof(dvec), cmp_vec);
    v->dev = d;
    vd_logf(lg, VDIT_LOG_INFO, "VAE on %s in %s: %.2f GiB of device memory",
            vkc_device_name(vc), d->bf16 ? "bf16" : "fp32",
            (double)d->bytes / (1024.0 * 1024 * 1024));
    /* the ends run on the host */
    return vd_vae_detach_ends(v, kc, 0, 0, release, ctx);
}

size_t vd_vae_device_bytes(const vd_vae *v)
{
    return v && v->dev ? v->dev->bytes : 0;
}

#else /* !VK_HAVE_CUDA */

const vae_ops *vd_vae_dev_ops(void)
{
    return NULL;
}

int vd_vae_dev_stream_new(const vd_vae *v, vk_ctx *kc, vd_log *lg, void **out)
{
    (void)v, (void)kc;
    *out = NULL;
    return vd_err(lg, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

void vd_vae_dev_stream_free(void *u)
{
    (void)u;
}

void vd_vae_dev_free(vae_dev **d)
{
    (void)d;
}

int vd_vae_upload(vd_vae *v, void *vc, vk_prec prec, vk_ctx *kc,
                  void (*release)(void *ctx, const void *data), void *ctx, vd_log *lg)
{
    (void)v, (void)vc, (void)prec, (void)kc, (void)release, (void)ctx;
    return vd_err(lg, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

size_t vd_vae_device_bytes(const vd_vae *v)
{
    (void)v;
    return 0;
}

#endif
