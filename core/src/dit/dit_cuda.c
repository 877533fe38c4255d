/*
 * The DiT's blocks on a CUDA device (kernels/cuda/vkc.h).
 *
 * vd_dit_upload puts every block's weights on the device once, at load, in
 * the model's precision (bf16, or fp32 for exact contexts), with fp32
 * biases, norms and modulation tables. A context with a device then runs
 * the blocks there with its activations resident for the whole pass: the
 * tokens go up once after the patch embedding, the blocks' output comes
 * back once after the last block. What stays on the host is a few GFLOP:
 * the time embedding (its per-block modulation rows go up, 6D floats per
 * time-table row and block), the text MLP of a prompt's condition (its
 * per-block K/V are made and kept on the device), the patch embedding and
 * the head. The block is dit.c's run_block, call for call, on device
 * pointers: the same arithmetic, the same order.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dit_impl.h"

#if VK_HAVE_CUDA
#include "../kernels/cuda/vkc.h"

typedef struct vd_dit_dev vd_dit_dev;
typedef struct vd_dit_run_dev vd_dit_run_dev;

typedef struct dev_linear {
    void *w;      /* [n_out, n_in], VKC_BF16 or VKC_F32 */
    int wt;
    float *b;     /* [n_out] or NULL */
    int64_t n_out, n_in;
} dev_linear;

typedef struct dev_block {
    dev_linear sq, sk, sv, so, cq, ck, cv, co, ck_img, cv_img, ffn0, ffn2;
    float *s_norm_q, *s_norm_k, *c_norm_q, *c_norm_k, *c_norm_k_img, *norm3_w, *norm3_b;
} dev_block;

struct vd_dit_dev {
    vkc_ctx *vc;  /* the model's: owns the weights' memory */
    int bf16;
    dev_block *blocks;
    int64_t n_blocks;
};

struct vd_dit_run_dev {
    vkc_ctx *vc;  /* the context's (kc->cuda) */
    int64_t cap_tok, cap_tv, rope_l;
    float *x, *h, *y, *work, *mod, *rope;
    const float *rope_host; /* r->rope the device copy was made from */
    int64_t rope_f, rope_h, rope_w;
};

static int vt_to_vkc(vt_dtype t)
{
    switch (t) {
    case VT_F16:
        return VKC_F16;
    case VT_BF16:
        return VKC_BF16;
    default:
        return VKC_F32;
    }
}

static int up_linear(vkc_ctx *vc, const vk_linear *l, int bf16, dev_linear *o)
{
    memset(o, 0, sizeof(*o));
    if (!l->w)
        return 0;
    o->n_out = l->n_out;
    o->n_in = l->n_in;
    o->wt = bf16 ? VKC_BF16 : VKC_F32;
    o->w = vkc_weights(vc, l->w, vt_to_vkc(l->wtype), (size_t)(l->n_out * l->n_in), o->wt, 1.0f);
    if (!o->w)
        return -1;
    if (l->bias && !(o->b = vkc_weights(vc, l->bias, VKC_F32, (size_t)l->n_out, VKC_F32, 1.0f)))
        return -1;
    return 0;
}

static int up_vec(vkc_ctx *vc, const float *v, int64_t n, float **o)
{
    *o = NULL;
    if (!v)
        return 0;
    *o = vkc_weights(vc, v, VKC_F32, (size_t)n, VKC_F32, 1.0f);
    return *o ? 0 : -1;
}

static void free_linear(vkc_ctx *vc, dev_linear *l)
{
    vkc_free(vc, l->w);
    vkc_free(vc, l->b);
}

void vd_dit_dev_free(vd_dit *d)
{
    vd_dit_dev *dv = d ? d->dev : NULL;
    if (!dv)
        return;
    for (int64_t i = 0; dv->blocks && i < dv->n_blocks; i++) {
        dev_block *b = &dv->blocks[i];
        dev_linear *ls[] = { &b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck,
                             &b->cv, &b->co, &b->ck_img, &b->cv_img, &b->ffn0, &b->ffn2 };
        for (size_t k = 0; k < VD_ARRAY_SIZE(ls); k++)
            free_linear(dv->vc, ls[k]);
        float *vs[] = { b->s_norm_q, b->s_norm_k, b->c_norm_q, b->c_norm_k,
                        b->c_norm_k_img, b->norm3_w, b->norm3_b };
        for (size_t k = 0; k < VD_ARRAY_SIZE(vs); k++)
            vkc_free(dv->vc, vs[k]);
    }
    vd_free(dv->blocks);
    vd_free(dv);
    d->dev = NULL;
}

int vd_dit_upload(vd_dit *d, void *vcv, vk_prec prec, void (*release)(void *user, const void *data),
                  void *user, vd_log *lg)
{
    vkc_ctx *vc = vcv;
    const vd_dit_config *c = &d->cfg;
    if (!vc)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_upload: no device");
    vd_dit_dev_free(d);
    vd_dit_dev *dv = vd_calloc(sizeof(*dv));
    if (!dv || !(dv->blocks = vd_calloc((size_t)c->n_layers * sizeof(dev_block)))) {
        vd_free(dv);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    dv->vc = vc;
    dv->bf16 = prec != VK_PREC_F32;
    dv->n_blocks = c->n_layers;
    d->dev = dv;
    int64_t D = c->dim;
    for (int64_t i = 0; i < c->n_layers; i++) {
        const dit_block *b = &d->blocks[i];
        dev_block *o = &dv->blocks[i];
        const vk_linear *ls[] = { &b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck,
                                  &b->cv, &b->co, &b->ck_img, &b->cv_img, &b->ffn0, &b->ffn2 };
        dev_linear *os[] = { &o->sq, &o->sk, &o->sv, &o->so, &o->cq, &o->ck,
                             &o->cv, &o->co, &o->ck_img, &o->cv_img, &o->ffn0, &o->ffn2 };
        for (size_t k = 0; k < VD_ARRAY_SIZE(ls); k++) {
            if (up_linear(vc, ls[k], dv->bf16, os[k]))
                goto fail;
            /* the device holds the layer now: the stored pages may go until
             * a CPU context reads them */
            if (release && ls[k]->w)
                release(user, ls[k]->w);
        }
        if (up_vec(vc, b->s_norm_q, D, &o->s_norm_q) || up_vec(vc, b->s_norm_k, D, &o->s_norm_k) ||
            up_vec(vc, b->c_norm_q, D, &o->c_norm_q) || up_vec(vc, b->c_norm_k, D, &o->c_norm_k) ||
            up_vec(vc, b->c_norm_k_img, D, &o->c_norm_k_img) ||
            up_vec(vc, b->norm3_w, D, &o->norm3_w) || up_vec(vc, b->norm3_b, D, &o->norm3_b))
            goto fail;
    }
    if (vkc_sync(vc))
        goto fail;
    vd_logf(lg, VDIT_LOG_INFO, "DiT blocks on %s in %s: %.2f GiB of device memory",
            vkc_device_name(vc), dv->bf16 ? "bf16" : "fp32",
            (double)vkc_mem_used(vc) / (1024.0 * 1024 * 1024));
    return 0;
fail : {
    const char *why = vkc_error(vc);
    int ret = vd_err(lg, why && *why ? VDIT_ERR_INTERNAL : VDIT_ERR_NOMEM,
                     "uploading the DiT to %s: %s", vkc_device_name(vc),
                     why && *why ? why : "out of device memory");
    vd_dit_dev_free(d);
    return ret;
}
}

/* ---- per-run device memory ---------------------------------------------- */

void vd_dit_run_dev_free(vd_dit_run *r)
{
    vd_dit_run_dev *rd = r ? r->dev : NULL;
    if (!rd)
        return;
    float *ps[] = { rd->x, rd->h, rd->y, rd->work, rd->mod, rd->rope };
    for (size_t k = 0; k < VD_ARRAY_SIZE(ps); k++)
        vkc_free(rd->vc, ps[k]);
    vd_free(rd);
    r->dev = NULL;
}

static int dev_fail(vd_dit_run *r, vkc_ctx *vc, const char *what)
{
    const char *why = vkc_error(vc);
    return vd_err(r->kc->log, why && *why ? VDIT_ERR_INTERNAL : VDIT_ERR_NOMEM, "%s on %s: %s",
                  what, vkc_device_name(vc), why && *why ? why : "out of device memory");
}

/* Device buffers for n tokens and the run's time table, and the rotary
 * table of the current grid. */
static int ensure_dev(vd_dit_run *r, int64_t n)
{
    const vd_dit_config *c = &r->d->cfg;
    vkc_ctx *vc = r->kc->cuda;
    vd_dit_run_dev *rd = r->dev;
    if (!rd) {
        if (!(rd = vd_calloc(sizeof(*rd))))
            return vd_err(r->kc->log, VDIT_ERR_NOMEM, "out of memory");
        rd->vc = vc;
        r->dev = rd;
    }
    int64_t D = c->dim;
    if (n > rd->cap_tok) {
        float **ps[] = { &rd->x, &rd->h, &rd->y, &rd->work };
        for (size_t k = 0; k < VD_ARRAY_SIZE(ps); k++) {
            vkc_free(vc, *ps[k]);
            *ps[k] = NULL;
        }
        rd->cap_tok = 0;
        int64_t wf = VD_MAX(4 * D, c->ffn_dim);
        size_t ld = (size_t)(n * D) * sizeof(float);
        if (!(rd->x = vkc_alloc(vc, ld)) || !(rd->h = vkc_alloc(vc, ld)) ||
            !(rd->y = vkc_alloc(vc, ld)) ||
            !(rd->work = vkc_alloc(vc, (size_t)(n * wf) * sizeof(float))))
            return dev_fail(r, vc, "activations of the DiT");
        rd->cap_tok = n;
    }
    if (r->n_tv > rd->cap_tv) {
        vkc_free(vc, rd->mod);
        rd->cap_tv = 0;
        if (!(rd->mod = vkc_alloc(vc, (size_t)(c->n_layers * r->n_tv * 6 * D) * sizeof(float))))
            return dev_fail(r, vc, "the modulation rows");
        rd->cap_tv = r->n_tv;
    }
    if (rd->rope_host != r->rope || rd->rope_f != r->rope_f || rd->rope_h != r->rope_h ||
        rd->rope_w != r->rope_w) {
        int64_t L = r->rope_f * r->rope_h * r->rope_w;
        if (L > rd->rope_l) {
            vkc_free(vc, rd->rope);
            rd->rope_l = 0;
            if (!(rd->rope = vkc_alloc(vc, (size_t)(L * c->head_dim) * sizeof(float))))
                return dev_fail(r, vc, "the rotary table");
            rd->rope_l = L;
        }
        if (vkc_upload(vc, rd->rope, r->rope, (size_t)(L * c->head_dim) * sizeof(float)))
            return dev_fail(r, vc, "uploading the rotary table");
        rd->rope_host = r->rope;
        rd->rope_f = r->rope_f;
        rd->rope_h = r->rope_h;
        rd->rope_w = r->rope_w;
    }
    return 0;
}

static void lin(vkc_ctx *vc, int bf16, const dev_linear *l, const float *x, int64_t m, float *y,
                int act)
{
    vkc_linear(vc, bf16, x, 0, m, l->n_in, l->w, l->wt, l->b, l->n_out, act, y, 0);
}

/* ---- condition ---------------------------------------------------------- */

void vd_dit_cond_dev_free(vd_dit_cond *cd)
{
    if (cd && cd->kv_dev)
        vkc_free(cd->vc, cd->kv_dev);
    if (cd) {
        cd->kv_dev = NULL;
        cd->vc = NULL;
    }
}

int vd_dit_dev_cond(vd_dit_run *r, vd_dit_cond *cd, const float *ctx, const float *img)
{
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    const vd_dit_dev *dv = d->dev;
    vkc_ctx *vc = r->kc->cuda;
    int64_t D = c->dim, T = cd->n_txt, ni = cd->n_img, per = 2 * (T + ni) * D;
    int bf = dv->bf16;
    float *ctx_d = NULL, *img_d = NULL;
    cd->vc = vc;
    cd->kv_dev = vkc_alloc(vc, (size_t)(per * c->n_layers) * sizeof(float));
    ctx_d = vkc_alloc(vc, (size_t)((T + ni) * D) * sizeof(float));
    if (!cd->kv_dev || !ctx_d)
        goto fail;
    img_d = ctx_d + T * D;
    if (vkc_upload(vc, ctx_d, ctx, (size_t)(T * D) * sizeof(float)) ||
        (ni && vkc_upload(vc, img_d, img, (size_t)(ni * D) * sizeof(float))))
        goto fail;
    for (int64_t i = 0; i < c->n_layers; i++) {
        const dev_block *b = &dv->blocks[i];
        float *k = cd->kv_dev + i * per, *v = k + T * D;
        lin(vc, bf, &b->ck, ctx_d, T, k, VKC_ACT_NONE);
        if (b->c_norm_k)
            vkc_rmsnorm(vc, k, k, T, D, b->c_norm_k, c->eps);
        lin(vc, bf, &b->cv, ctx_d, T, v, VKC_ACT_NONE);
        if (ni) {
            float *ki = v + T * D, *vi = ki + ni * D;
            lin(vc, bf, &b->ck_img, img_d, ni, ki, VKC_ACT_NONE);
            if (b->c_norm_k_img)
                vkc_rmsnorm(vc, ki, ki, ni, D, b->c_norm_k_img, c->eps);
            lin(vc, bf, &b->cv_img, img_d, ni, vi, VKC_ACT_NONE);
        }
    }
    if (vkc_sync(vc))
        goto fail;
    vkc_free(vc, ctx_d);
    return 0;
fail : {
    int ret = dev_fail(r, vc, "the text condition");
    vkc_free(vc, ctx_d);
    vd_dit_cond_dev_free(cd);
    return ret;
}
}

/* ---- blocks ------------------------------------------------------------- */

/* dit.c's norm_mod and add_mod on the device copy of r->mod. */
static void norm_mod_d(vd_dit_run *r, const float *x, float *y, int nb, int64_t Lb,
                       const float *mods, int64_t w_off, int64_t b_off)
{
    const vd_dit_config *c = &r->d->cfg;
    vkc_ctx *vc = r->kc->cuda;
    int64_t D = c->dim, stride = 6 * D;
    if (r->n_seg == 1) {
        const float *m = mods + r->seg_tv[0] * stride;
        vkc_layernorm(vc, x, y, nb * Lb, D, m + w_off, m + b_off, c->eps);
        return;
    }
    for (int bi = 0; bi < nb; bi++)
        for (int64_t s = 0; s < r->n_seg; s++) {
            const float *m = mods + r->seg_tv[s] * stride;
            int64_t off = (bi * Lb + r->seg_start[s]) * D;
            vkc_layernorm(vc, x + off, y + off, r->seg_start[s + 1] - r->seg_start[s], D,
                          m + w_off, m + b_off, c->eps);
        }
}

static void add_mod_d(vd_dit_run *r, float *x, const float *y, int nb, int64_t Lb,
                      const float *mods, int64_t g_off)
{
    vkc_ctx *vc = r->kc->cuda;
    int64_t D = r->d->cfg.dim, stride = 6 * D;
    if (r->n_seg == 1) {
        vkc_add_gated(vc, x, y, nb * Lb, D, mods + r->seg_tv[0] * stride + g_off);
        return;
    }
    for (int bi = 0; bi < nb; bi++)
        for (int64_t s = 0; s < r->n_seg; s++) {
            int64_t off = (bi * Lb + r->seg_start[s]) * D;
            vkc_add_gated(vc, x + off, y + off, r->seg_start[s + 1] - r->seg_start[s], D,
                          mods + r->seg_tv[s] * stride + g_off);
        }
}

static void block_d(vd_dit_run *r, const dev_block *b, const vd_dit_cond *const *cds, int nb,
                    int64_t i, int64_t Lb)
{
    const vd_dit_config *c = &r->d->cfg;
    vkc_ctx *vc = r->kc->cuda;
    vd_dit_run_dev *rd = r->dev;
    int bf = r->d->dev->bf16;
    int64_t D = c->dim, H = c->n_heads, hd = c->head_dim, L = nb * Lb;
    float scale = (float)(1.0 / sqrt((double)hd));
    float *x = rd->x, *h = rd->h, *y = rd->y, *m = rd->mod + i * r->n_tv * 6 * D;
    float *q = rd->work, *k = q + L * D, *v = k + L * D, *o = v + L * D;

    /* self-attention */
    norm_mod_d(r, x, h, nb, Lb, m, D, 0);
    lin(vc, bf, &b->sq, h, L, q, VKC_ACT_NONE);
    lin(vc, bf, &b->sk, h, L, k, VKC_ACT_NONE);
    lin(vc, bf, &b->sv, h, L, v, VKC_ACT_NONE);
    if (b->s_norm_q) {
        vkc_rmsnorm(vc, q, q, L, D, b->s_norm_q, c->eps);
        vkc_rmsnorm(vc, k, k, L, D, b->s_norm_k, c->eps);
    }
    for (int bi = 0; bi < nb; bi++) {
        int64_t off = bi * Lb * D;
        vkc_rope(vc, q + off, Lb, H, hd, D, rd->rope);
        vkc_rope(vc, k + off, Lb, H, hd, D, rd->rope);
        vkc_attention(vc, bf, q + off, D, k + off, D, v + off, D, o + off, D, H, hd, Lb, Lb,
                      scale);
    }
    lin(vc, bf, &b->so, o, L, y, VKC_ACT_NONE);
    add_mod_d(r, x, y, nb, Lb, m, 2 * D);

    /* cross-attention, K/V from the cond */
    const float *hin = x;
    if (b->norm3_w) {
        vkc_layernorm(vc, x, h, L, D, b->norm3_w, b->norm3_b, c->eps);
        hin = h;
    }
    lin(vc, bf, &b->cq, hin, L, q, VKC_ACT_NONE);
    if (b->c_norm_q)
        vkc_rmsnorm(vc, q, q, L, D, b->c_norm_q, c->eps);
    for (int bi = 0; bi < nb; bi++) {
        const vd_dit_cond *cd = cds[bi];
        int64_t off = bi * Lb * D, T = cd->n_txt, ni = cd->n_img;
        const float *ck = cd->kv_dev + i * 2 * (T + ni) * D, *cv = ck + T * D;
        vkc_attention(vc, bf, q + off, D, ck, D, cv, D, o + off, D, H, hd, Lb, T, scale);
        if (ni) {
            const float *ki = cv + T * D, *vi = ki + ni * D;
            vkc_attention(vc, bf, q + off, D, ki, D, vi, D, k + off, D, H, hd, Lb, ni, scale);
            vkc_add_gated(vc, o + off, k + off, Lb, D, NULL);
        }
    }
    lin(vc, bf, &b->co, o, L, y, VKC_ACT_NONE);
    vkc_add_gated(vc, x, y, L, D, NULL);

    /* feed-forward: in bf16 the hidden layer is kept in bf16 (the second
     * product rounds its operand to bf16 anyway) */
    norm_mod_d(r, x, h, nb, Lb, m, 4 * D, 3 * D);
    vkc_linear(vc, bf, h, 0, L, D, b->ffn0.w, b->ffn0.wt, b->ffn0.b, b->ffn0.n_out,
               VKC_ACT_GELU_TANH, rd->work, bf);
    vkc_linear(vc, bf, rd->work, bf, L, b->ffn0.n_out, b->ffn2.w, b->ffn2.wt, b->ffn2.b, D,
               VKC_ACT_NONE, y, 0);
    add_mod_d(r, x, y, nb, Lb, m, 5 * D);
}

int vd_dit_dev_blocks(vd_dit_run *r, const vd_dit_cond *const *conds, int nb, int64_t Lb)
{
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    vkc_ctx *vc = r->kc->cuda;
    int64_t D = c->dim, L = nb * Lb;
    for (int b = 0; b < nb; b++)
        if (!conds[b]->kv_dev)
            return vd_err(r->kc->log, VDIT_ERR_INVALID_ARG,
                          "vd_dit_forward: the condition was made on the CPU, the run is on %s",
                          vkc_device_name(vc));
    int ret = ensure_dev(r, L);
    if (ret)
        return ret;
    vd_dit_run_dev *rd = r->dev;
    size_t bytes = (size_t)(L * D) * sizeof(float);
    if (vkc_upload(vc, rd->x, r->x, bytes))
        return dev_fail(r, vc, "uploading the tokens");
    /* every block's modulation rows, made on the host from the time table,
     * go up before the first block (uploads are ordered on the stream) */
    size_t mrow = (size_t)(r->n_tv * 6 * D);
    for (int64_t i = 0; i < c->n_layers; i++) {
        vd_dit_block_mods(r, d->blocks[i].mod);
        if (vkc_upload(vc, rd->mod + i * mrow, r->mod, mrow * sizeof(float)))
            return dev_fail(r, vc, "uploading the modulation");
    }
    for (int64_t i = 0; i < c->n_layers; i++) {
        block_d(r, &d->dev->blocks[i], conds, nb, i, Lb);
        if (r->tap && nb == 1) {
            if (vkc_download(vc, r->x, rd->x, bytes))
                return dev_fail(r, vc, "a DiT block");
            char name[48];
            snprintf(name, sizeof(name), "inter/block%lld_out", (long long)i);
            r->tap(r->tap_user, name, r->x, (size_t)(L * D));
        }
    }
    if (vkc_download(vc, r->x, rd->x, bytes) || vkc_sync(vc))
        return dev_fail(r, vc, "the DiT blocks");
    return 0;
}

#else /* !VK_HAVE_CUDA */

int vd_dit_upload(vd_dit *d, void *vc, vk_prec prec, void (*release)(void *user, const void *data),
                  void *user, vd_log *lg)
{
    (void)d, (void)vc, (void)prec, (void)release, (void)user;
    return vd_err(lg, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

void vd_dit_dev_free(vd_dit *d)
{
    (void)d;
}

void vd_dit_run_dev_free(vd_dit_run *r)
{
    (void)r;
}

void vd_dit_cond_dev_free(vd_dit_cond *cd)
{
    (void)cd;
}

int vd_dit_dev_cond(vd_dit_run *r, vd_dit_cond *cd, const float *ctx, const float *img)
{
    (void)cd, (void)ctx, (void)img;
    return vd_err(r->kc->log, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

int vd_dit_dev_blocks(vd_dit_run *r, const vd_dit_cond *const *conds, int nb, int64_t Lb)
{
    (void)conds, (void)nb, (void)Lb;
    return vd_err(r->kc->log, VDIT_ERR_UNSUPPORTED, "this build of vdit has no CUDA backend");
}

#endif
