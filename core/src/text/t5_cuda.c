/*
 * The umT5 encoder's layers on a CUDA device (kernels/cuda/vkc.h).
 *
 * vd_t5_upload puts every layer's linears (in the model's precision: bf16,
 * or fp32 for exact contexts) and norms on the device once, at load, and
 * hands the stored weights back; the token embedding (a gather of n rows)
 * and the relative-position tables stay on the host. An encode uploads the
 * embedded tokens once and, per layer, the position bias of every distance
 * r[h, d] = table[bucket(d - n + 1), h] ([H, 2n - 1], a few hundred KiB),
 * which one strided copy on the device expands into bias[h, i, j] = r[h, j -
 * i + n - 1] ([H, n, n], 64 MiB for umT5's 64 heads at 512 tokens: 2n times
 * less crossing the bus than the full bias); it runs the layers as t5.c's
 * vd_t5_encode_tap does, call for call, and brings the output back once.
 *
 * Attention per head: the bias buffer of the head becomes its scores, S =
 * bias + q kᵀ in one product (beta = 1; no 1/sqrt(d) in T5), then the
 * softmax over the first n_real keys (the padded ones take no part, as
 * t5.c's kv_valid) and o = P v over those keys.
 */
#include <stdio.h>
#include <string.h>

#include "t5_impl.h"

#if VK_HAVE_CUDA
#include "../kernels/cuda/vkc.h"

_Static_assert((int)VT_F32 == VKC_F32 && (int)VT_F16 == VKC_F16 && (int)VT_BF16 == VKC_BF16,
               "stored types pass to vkc_weights as they are");

typedef struct dlin {
    void *w; /* [n_out, n_in], VKC_BF16 or VKC_F32 */
    int64_t n_out, n_in;
} dlin;

typedef struct dlayer {
    dlin q, k, v, o, gate, fc1, fc2;
    float *norm1, *norm2;
} dlayer;

struct vd_t5_dev {
    vkc_ctx *vc; /* the model's: owns the memory */
    int bf16;
    dlayer *layers;
    int64_t n_layers;
    float *norm;
    size_t bytes;
};

void vd_t5_dev_free(vd_t5 *t)
{
    vd_t5_dev *d = t ? t->dev : NULL;
    if (!d)
        return;
    for (int64_t l = 0; d->layers && l < d->n_layers; l++) {
        dlayer *L = &d->layers[l];
        dlin *ls[] = { &L->q, &L->k, &L->v, &L->o, &L->gate, &L->fc1, &L->fc2 };
        for (size_t i = 0; i < VD_ARRAY_SIZE(ls); i++)
            vkc_free(d->vc, ls[i]->w);
        vkc_free(d->vc, L->norm1);
        vkc_free(d->vc, L->norm2);
    }
    vkc_free(d->vc, d->norm);
    vd_free(d->layers);
    vd_free(d);
    t->dev = NULL;
}

static int up_lin(vd_t5_dev *d, vk_linear *l, dlin *o, void (*release)(void *, const void *),
                  void *user)
{
    o->n_out = l->n_out;
    o->n_in = l->n_in;
    if (!l->w || (l->wtype != VT_F32 && l->wtype != VT_F16 && l->wtype != VT_BF16))
        return -1;
    size_t n = (size_t)(l->n_out * l->n_in);
    o->w = vkc_weights(d->vc, l->w, (int)l->wtype, n, d->bf16 ? VKC_BF16 : VKC_F32, 1.0f);
    if (!o->w)
        return -1;
    d->bytes += n * (d->bf16 ? 2 : 4);
    if (release)
        release(user, l->w);
    l->w = NULL; /* the host no longer reads it: t5.c refuses host runs of this model */
    return 0;
}

static int up_vec(vd_t5_dev *d, const float *h, int64_t n, float **o)
{
    *o = vkc_weights(d->vc, h, VKC_F32, (size_t)n, VKC_F32, 1.0f);
    d->bytes += (size_t)n * 4;
    return *o ? 0 : -1;
}

int vd_t5_upload(vd_t5 *t, void *vc, vk_prec prec, void (*release)(void *user, const void *data),
                 void *user, vd_log *lg)
{
    if (!t || !vc || t->dev)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_t5_upload: bad argument");
    const vd_t5_config *c = &t->cfg;
    vd_t5_dev *d = vd_calloc(sizeof(*d));
    if (!d || !(d->layers = vd_calloc(sizeof(dlayer) * (size_t)c->n_layers))) {
        vd_free(d);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    d->vc = vc;
    d->bf16 = prec == VK_PREC_BF16;
    d->n_layers = c->n_layers;
    t->dev = d;
    int bad = 0;
    for (int64_t l = 0; l < c->n_layers && !bad; l++) {
        t5_layer *L = &t->layers[l];
        dlayer *o = &d->layers[l];
        bad = up_lin(d, &L->q, &o->q, release, user) || up_lin(d, &L->k, &o->k, release, user) ||
              up_lin(d, &L->v, &o->v, release, user) || up_lin(d, &L->o, &o->o, release, user) ||
              up_lin(d, &L->gate, &o->gate, release, user) ||
              up_lin(d, &L->fc1, &o->fc1, release, user) ||
              up_lin(d, &L->fc2, &o->fc2, release, user) ||
              up_vec(d, L->norm1, c->dim, &o->norm1) || up_vec(d, L->norm2, c->dim, &o->norm2);
    }
    if (!bad)
        bad = up_vec(d, t->norm, c->dim, &d->norm) || vkc_sync(vc);
    if (bad) {
        const char *why = vkc_error(vc);
        int r = vd_err(lg, why && *why ? VDIT_ERR_INTERNAL : VDIT_ERR_NOMEM,
                       "uploading the text encoder to %s: %s", vkc_device_name(vc),
                       why && *why ? why : "out of device memory");
        vd_t5_dev_free(t);
        return r;
    }
    vd_logf(lg, VDIT_LOG_INFO, "text encoder layers on %s in %s: %.2f GiB of device memory",
            vkc_device_name(vc), d->bf16 ? "bf16" : "fp32",
            (double)d->bytes / (1024.0 * 1024 * 1024));
    return 0;
}

static void lin(vkc_ctx *vc, int bf16, const dlin *l, const float *x, int64_t m, int act, float *y)
{
    vkc_linear(vc, bf16, x, 0, m, l->n_in, l->w, bf16 ? VKC_BF16 : VKC_F32, NULL, l->n_out, act,
               y, 0);
}

int vd_t5_dev_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                     float *out, vd_t5_tap tap, void *user)
{
    const vd_t5_config *c = &t->cfg;
    const vd_t5_dev *d = t->dev;
    vkc_ctx *vc = kc->cuda;
    const int bf = d->bf16;
    if (!!kc->cuda_bf16 != bf)
        return vd_err(kc->log, VDIT_ERR_INVALID_ARG,
                      "vd_t5_encode: the weights are on the device in %s and this context "
                      "computes in %s",
                      bf ? "bf16" : "fp32", kc->cuda_bf16 ? "bf16" : "fp32");
    const int64_t D = c->dim, A = c->dim_attn, F = c->dim_ffn, H = c->n_heads, hd = A / H;
    size_t nd = (size_t)(n * D), na = (size_t)(n * A), nf = (size_t)(n * F);
    size_t nb = (size_t)(H * n * n), nr = (size_t)(H * (2 * n - 1));
    float *hx = vd_malloc(nd * 4), *hr = vd_malloc(nr * 4), *hb = NULL;
    int32_t *bk = vd_malloc((size_t)(2 * n - 1) * sizeof(int32_t));
    float *x = vkc_alloc(vc, nd * 4), *h = vkc_alloc(vc, nd * 4), *q = vkc_alloc(vc, na * 4),
          *k = vkc_alloc(vc, na * 4), *v = vkc_alloc(vc, na * 4), *o = vkc_alloc(vc, na * 4),
          *g = vkc_alloc(vc, nf * 4), *f = vkc_alloc(vc, nf * 4), *bias = vkc_alloc(vc, nb * 4),
          *rd = vkc_alloc(vc, nr * 4);
    int rc = 0;
    if (!hx || !hr || !bk || !x || !h || !q || !k || !v || !o || !g || !f || !bias || !rd) {
        rc = vd_err(kc->log, VDIT_ERR_NOMEM, "vd_t5_encode: out of %smemory for %lld tokens",
                    hx && hr && bk ? "device " : "", (long long)n);
        goto done;
    }
    vd_t5_embed(t, ids, n, hx);
    if (tap)
        tap(user, "inter/token_emb", hx, nd);
    vkc_upload(vc, x, hx, nd * 4);
    vd_t5_buckets(t, n, bk);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const dlayer *L = &d->layers[l];
        /* the scores are made in the bias buffer, remade per layer from the
         * bias of every distance: bias[h, i, j] = r[h, (n - 1 - i) + j] */
        const float *pos = c->shared_pos ? t->shared_pos : t->layers[l].pos;
        for (int64_t hh = 0; hh < H; hh++)
            for (int64_t dd = 0; dd < 2 * n - 1; dd++)
                hr[hh * (2 * n - 1) + dd] = pos[bk[dd] * H + hh];
        vkc_upload(vc, rd, hr, nr * 4);
        const int64_t dims[3] = { H, n, n }, ds[3] = { n * n, n, 1 }, ss[3] = { 2 * n - 1, -1, 1 };
        vkc_copy_nd(vc, bias, ds, rd + (n - 1), ss, dims, 3);
        if (l == 0 && tap) { /* as the CPU's: [H, n, n] */
            if (!(hb = vd_malloc(nb * 4))) {
                rc = vd_err(kc->log, VDIT_ERR_NOMEM, "vd_t5_encode: out of memory");
                goto done;
            }
            if (vkc_download(vc, hb, bias, nb * 4))
                break; /* the error is said below */
            tap(user, "inter/pos_bias0", hb, nb);
            vd_free(hb);
            hb = NULL;
        }

        /* attention sub-block */
        vkc_rmsnorm(vc, x, h, n, D, L->norm1, 1e-6f);
        lin(vc, bf, &L->q, h, n, VKC_ACT_NONE, q);
        lin(vc, bf, &L->k, h, n, VKC_ACT_NONE, k);
        lin(vc, bf, &L->v, h, n, VKC_ACT_NONE, v);
        for (int64_t hh = 0; hh < H; hh++) {
            float *s = bias + (size_t)(hh * n * n); /* [n, n]: S = bias + q kᵀ */
            vkc_gemm(vc, bf, 0, 1, n, n_real, hd, 1.0f, q + hh * hd, A, k + hh * hd, A, 1.0f, s,
                     n);
            vkc_softmax(vc, s, n, n_real, n, 1.0f);
            vkc_gemm(vc, bf, 0, 0, n, hd, n_real, 1.0f, s, n, v + hh * hd, A, 0.0f, o + hh * hd,
                     A);
        }
        lin(vc, bf, &L->o, o, n, VKC_ACT_NONE, h);
        vkc_add(vc, x, x, h, (int64_t)nd);

        /* gated-GELU feed-forward */
        vkc_rmsnorm(vc, x, h, n, D, L->norm2, 1e-6f);
        lin(vc, bf, &L->gate, h, n, VKC_ACT_GELU_TANH, g);
        lin(vc, bf, &L->fc1, h, n, VKC_ACT_NONE, f);
        vkc_mul(vc, f, f, g, (int64_t)nf);
        lin(vc, bf, &L->fc2, f, n, VKC_ACT_NONE, h);
        vkc_add(vc, x, x, h, (int64_t)nd);
        if (tap) {
            if (vkc_download(vc, hx, x, nd * 4))
                break;
            char nm[48];
            snprintf(nm, sizeof(nm), "inter/block%lld_out", (long long)l);
            tap(user, nm, hx, nd);
        }
    }
    vkc_rmsnorm(vc, x, h, n, D, d->norm, 1e-6f);
    if (vkc_download(vc, out, h, nd * 4) || vkc_sync(vc)) {
        const char *why = vkc_error(vc);
        rc = vd_err(kc->log, VDIT_ERR_INTERNAL, "the text encoder on %s: %s",
                    vkc_device_name(vc), why && *why ? why : "the device failed");
    }
done:
    vd_free(hx);
    vd_free(hr);
    vd_free(hb);
    vd_free(bk);
    float *ps[] = { x, h, q, k, v, o, g, f, bias, rd };
    for (size_t i = 0; i < VD_ARRAY_SIZE(ps); i++)
        vkc_free(vc, ps[i]);
    return rc;
}

#else /* !VK_HAVE_CUDA */

int vd_t5_upload(vd_t5 *t, void *vc, vk_prec prec, void (*release)(void *user, const void *data),
                 void *user, vd_log *lg)
{
    (void)t, (void)vc, (void)prec, (void)release, (void)user;
    return vd_err(lg, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

int vd_t5_dev_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                     float *out, vd_t5_tap tap, void *user)
{
    (void)t, (void)ids, (void)n, (void)n_real, (void)out, (void)tap, (void)user;
    return vd_err(kc->log, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

void vd_t5_dev_free(vd_t5 *t)
{
    (void)t;
}

#endif
