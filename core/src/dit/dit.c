/*
 * Wan diffusion transformer (WanModel of wan/modules/model.py), batch 1:
 * Wan2.1 t2v / i2v and Wan2.2 TI2V-5B (model_type "ti2v": the same network
 * with per-token timesteps).
 *
 * Forward pass, shapes for L tokens (L = F/pt * H/ph * W/pw), D = dim:
 *   t        -> sinusoid [freq] -> time MLP -> e [D] -> SiLU, Linear -> e0 [6, D]
 *   x (+ y)  -> patches [L, C*pt*ph*pw] -> Linear (the Conv3d) -> x [L, D]
 *   block i  (m = modulation_i + e0: shift1 scale1 gate1 shift2 scale2 gate2)
 *     h = LN(x)(1 + scale1) + shift1
 *     x += gate1 * o(attn(rope(rms(q h)), rope(rms(k h)), v h))      self, L keys
 *     x += o(attn(rms(q LN3(x)), K_i, V_i) [+ attn(.., Kimg_i, Vimg_i)])  cross
 *     x += gate2 * ffn2(gelu_tanh(ffn0(LN(x)(1 + scale2) + shift2)))
 *   head     (m = head.modulation + e: shift, scale)
 *     out = Linear(LN(x)(1 + scale) + shift) [L, pt*ph*pw*C_out] -> unpatchify
 *
 * Per-token timesteps (Wan2.2): every token has its own t, hence its own e,
 * e0 and modulation. The time MLPs run once per DISTINCT value (the "time
 * table": typically one, or two in image-to-video: 0 on the clean first
 * frame and t elsewhere), and the tokens are described as runs of equal t
 * (segments, each pointing at its row of the table). Every modulated
 * LayerNorm and gated add is then one kernel call per segment with that
 * segment's vectors: no extra pass over the activations, and with one
 * segment exactly the calls (and results) of the scalar path.
 *
 * The text (and image) context enters only through K_i, V_i (and Kimg_i,
 * Vimg_i): vd_dit_cond computes them once per prompt, so a step never
 * touches the text encoder width or the context MLP.
 *
 * The adaLN modulation LN(x)(1 + scale) + shift is one LayerNorm call with
 * weight 1 + scale and bias shift: the same arithmetic as the reference
 * (normalise, multiply, add in fp32) in one pass over x.
 *
 * Activations live in three [L, D] buffers (residual x, normalised h,
 * projection output y) plus one work area shared by q/k/v/attention output
 * and the FFN hidden layer, which are never alive together.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "dit_impl.h"
#include "../pipeline/wan/wan_consts.h"

#define IMG_LN_EPS 1e-5f

/* ---- loading ----------------------------------------------------------- */

static int get_vec(const vd_dit *d, vd_log *lg, float **out, int64_t n, int ndim,
                   const char *name)
{
    const vt_tensor *t;
    int64_t shape[3] = { 1, 1, 1 };
    shape[ndim - 1] = n;
    int ret = vd_ckpt_get(d->ck, lg, name, ndim, shape, &t);
    if (ret)
        return ret;
    *out = vd_tensor_f32(t);
    if (!*out)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory",
                      vd_ckpt_file(d->ck, t), name);
    return 0;
}

/* A [rows, n] table stored as [1, rows, n] (modulation). */
static int get_table(const vd_dit *d, vd_log *lg, float **out, int64_t rows, const char *name)
{
    const vt_tensor *t;
    int64_t shape[3] = { 1, rows, d->cfg.dim };
    int ret = vd_ckpt_get(d->ck, lg, name, 3, shape, &t);
    if (ret)
        return ret;
    *out = vd_tensor_f32(t);
    if (!*out)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory",
                      vd_ckpt_file(d->ck, t), name);
    return 0;
}

/* name is the layer prefix: "<name>.weight" [n_out, n_in], "<name>.bias" [n_out]. */
static int get_linear(vd_dit *d, vd_log *lg, vk_linear *l, int64_t n_out, int64_t n_in,
                      const char *name)
{
    char wn[256], bn[256];
    snprintf(wn, sizeof(wn), "%s.weight", name);
    snprintf(bn, sizeof(bn), "%s.bias", name);
    const vt_tensor *w, *b;
    int64_t ws[2] = { n_out, n_in }, bs[1] = { n_out };
    vt_tensor wide;
    int ret = vd_ckpt_get_f8(d->ck, lg, wn, 2, ws, &w);
    if (!ret)
        ret = vd_ckpt_get(d->ck, lg, bn, 1, bs, &b);
    if (!ret)
        ret = vd_ckpt_widen_f8(d->ck, lg, wn, &d->owned, &w, &wide);
    if (ret)
        return ret;
    ret = vk_linear_init(l, w, b);
    if (ret)
        return vd_err(lg, ret, "%s: tensor '%s' (%s): cannot prepare this layer: %s",
                      vd_ckpt_file(d->ck, w), wn, vt_dtype_name(w->dtype), vdit_strerror(ret));
    return 0;
}

static const vt_tensor *req(const vd_dit *d, vd_log *lg, const char *name, int ndim, int *ret)
{
    const vt_tensor *t = NULL;
    *ret = vd_ckpt_get_f8(d->ck, lg, name, ndim, NULL, &t);
    return *ret ? NULL : t;
}

/* Reads the configuration from tensor shapes. */
static int read_config(vd_dit *d, int64_t text_len, int64_t n_heads, vd_log *lg)
{
    vd_dit_config *c = &d->cfg;
    int ret;
    const vt_tensor *t = req(d, lg, "patch_embedding.weight", 5, &ret);
    if (!t)
        return ret;
    c->dim = t->shape[0];
    c->in_dim = t->shape[1];
    for (int i = 0; i < 3; i++)
        c->patch[i] = t->shape[2 + i];
    if (!(t = req(d, lg, "time_embedding.0.weight", 2, &ret)))
        return ret;
    c->freq_dim = t->shape[1];
    if (!(t = req(d, lg, "text_embedding.0.weight", 2, &ret)))
        return ret;
    c->text_dim = t->shape[1];
    if (!(t = req(d, lg, "blocks.0.ffn.0.weight", 2, &ret)))
        return ret;
    c->ffn_dim = t->shape[0];
    if (!(t = req(d, lg, "head.head.weight", 2, &ret)))
        return ret;
    int64_t pv = c->patch[0] * c->patch[1] * c->patch[2];
    if (c->dim <= 0 || pv <= 0 || t->shape[0] % pv || c->freq_dim % 2 || c->ffn_dim <= 0 ||
        c->in_dim <= 0 || c->text_dim <= 0)
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "%s: tensor shapes do not describe a Wan2.1 DiT (dim %lld, patch %lldx%lldx%lld, "
                      "head out %lld, freq_dim %lld)",
                      vd_ckpt_label(d->ck), (long long)c->dim, (long long)c->patch[0],
                      (long long)c->patch[1], (long long)c->patch[2], (long long)t->shape[0],
                      (long long)c->freq_dim);
    c->out_dim = t->shape[0] / pv;
    char name[64];
    for (c->n_layers = 0;; c->n_layers++) {
        snprintf(name, sizeof(name), "blocks.%lld.modulation", (long long)c->n_layers);
        if (!vd_ckpt_find(d->ck, name))
            break;
    }
    if (!c->n_layers)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor 'blocks.0.modulation' not found",
                      vd_ckpt_label(d->ck));
    if (n_heads <= 0) {
        if (c->dim % 128)
            return vd_err(lg, VDIT_ERR_INVALID_ARG,
                          "%s: dim %lld is not a multiple of 128: give the head count",
                          vd_ckpt_label(d->ck), (long long)c->dim);
        n_heads = c->dim / 128;
    }
    if (c->dim % n_heads || (c->dim / n_heads) % 2)
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "%s: dim %lld does not split into %lld heads of even size",
                      vd_ckpt_label(d->ck), (long long)c->dim, (long long)n_heads);
    c->n_heads = n_heads;
    c->head_dim = c->dim / n_heads;
    if (text_len <= 0)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "text_len must be positive (512 for Wan2.1)");
    c->text_len = text_len;
    c->i2v = vd_ckpt_find(d->ck, "img_emb.proj.0.weight") != NULL;
    if (c->i2v) {
        if (!(t = req(d, lg, "img_emb.proj.0.weight", 1, &ret)))
            return ret;
        c->clip_dim = t->shape[0];
    }
    c->qk_norm = vd_ckpt_find(d->ck, "blocks.0.self_attn.norm_q.weight") != NULL;
    c->cross_attn_norm = vd_ckpt_find(d->ck, "blocks.0.norm3.weight") != NULL;
    c->eps = 1e-6f;
    return 0;
}

static int load_block(vd_dit *d, int64_t i, vd_log *lg)
{
    const vd_dit_config *c = &d->cfg;
    dit_block *b = &d->blocks[i];
    int64_t D = c->dim;
    char n[128];
    int ret;
#define P(...) (snprintf(n, sizeof(n), __VA_ARGS__), n)
    if ((ret = get_table(d, lg, &b->mod, 6, P("blocks.%lld.modulation", (long long)i))) ||
        (ret = get_linear(d, lg, &b->sq, D, D, P("blocks.%lld.self_attn.q", (long long)i))) ||
        (ret = get_linear(d, lg, &b->sk, D, D, P("blocks.%lld.self_attn.k", (long long)i))) ||
        (ret = get_linear(d, lg, &b->sv, D, D, P("blocks.%lld.self_attn.v", (long long)i))) ||
        (ret = get_linear(d, lg, &b->so, D, D, P("blocks.%lld.self_attn.o", (long long)i))) ||
        (ret = get_linear(d, lg, &b->cq, D, D, P("blocks.%lld.cross_attn.q", (long long)i))) ||
        (ret = get_linear(d, lg, &b->ck, D, D, P("blocks.%lld.cross_attn.k", (long long)i))) ||
        (ret = get_linear(d, lg, &b->cv, D, D, P("blocks.%lld.cross_attn.v", (long long)i))) ||
        (ret = get_linear(d, lg, &b->co, D, D, P("blocks.%lld.cross_attn.o", (long long)i))) ||
        (ret = get_linear(d, lg, &b->ffn0, c->ffn_dim, D, P("blocks.%lld.ffn.0", (long long)i))) ||
        (ret = get_linear(d, lg, &b->ffn2, D, c->ffn_dim, P("blocks.%lld.ffn.2", (long long)i))))
        return ret;
    if (c->qk_norm) {
        if ((ret = get_vec(d, lg, &b->s_norm_q, D, 1,
                           P("blocks.%lld.self_attn.norm_q.weight", (long long)i))) ||
            (ret = get_vec(d, lg, &b->s_norm_k, D, 1,
                           P("blocks.%lld.self_attn.norm_k.weight", (long long)i))) ||
            (ret = get_vec(d, lg, &b->c_norm_q, D, 1,
                           P("blocks.%lld.cross_attn.norm_q.weight", (long long)i))) ||
            (ret = get_vec(d, lg, &b->c_norm_k, D, 1,
                           P("blocks.%lld.cross_attn.norm_k.weight", (long long)i))))
            return ret;
    }
    if (c->cross_attn_norm) {
        if ((ret = get_vec(d, lg, &b->norm3_w, D, 1, P("blocks.%lld.norm3.weight", (long long)i))) ||
            (ret = get_vec(d, lg, &b->norm3_b, D, 1, P("blocks.%lld.norm3.bias", (long long)i))))
            return ret;
    }
    if (c->i2v) {
        if ((ret = get_linear(d, lg, &b->ck_img, D, D,
                              P("blocks.%lld.cross_attn.k_img", (long long)i))) ||
            (ret = get_linear(d, lg, &b->cv_img, D, D,
                              P("blocks.%lld.cross_attn.v_img", (long long)i))))
            return ret;
        if (c->qk_norm &&
            (ret = get_vec(d, lg, &b->c_norm_k_img, D, 1,
                           P("blocks.%lld.cross_attn.norm_k_img.weight", (long long)i))))
            return ret;
    }
#undef P
    return 0;
}

int vd_dit_load_ex(const vd_ckpt *ck, int64_t text_len, int64_t n_heads, vd_log *lg,
                   vd_dit **out)
{
    if (!out)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_load: no output pointer");
    *out = NULL;
    if (!ck)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_load: no checkpoint");
    vd_dit *d = vd_calloc(sizeof(*d));
    if (!d)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    d->ck = ck;
    int ret = read_config(d, text_len, n_heads, lg);
    if (ret)
        goto fail;
    const vd_dit_config *c = &d->cfg;
    int64_t D = c->dim, pv = c->patch[0] * c->patch[1] * c->patch[2];

    /* The Conv3d with kernel = stride = patch is a linear layer over the
     * flattened patch [C, pt, ph, pw]: view its weight as 2-D. */
    const vt_tensor *pw = vd_ckpt_find(ck, "patch_embedding.weight"), *pb;
    int64_t bs[1] = { D };
    if ((ret = vd_ckpt_get(ck, lg, "patch_embedding.bias", 1, bs, &pb)))
        goto fail;
    vt_tensor pwide;
    if ((ret = vd_ckpt_widen_f8(d->ck, lg, "patch_embedding.weight", &d->owned, &pw, &pwide)))
        goto fail;
    vt_tensor pw2 = *pw;
    pw2.ndim = 2;
    pw2.shape[1] = c->in_dim * pv;
    if ((ret = vk_linear_init(&d->patch, &pw2, pb))) {
        ret = vd_err(lg, ret,
                     "%s: tensor 'patch_embedding.weight' (%s): cannot prepare this layer: %s",
                     vd_ckpt_file(ck, pw), vt_dtype_name(pw->dtype), vdit_strerror(ret));
        goto fail;
    }
    if ((ret = get_linear(d, lg, &d->time0, D, c->freq_dim, "time_embedding.0")) ||
        (ret = get_linear(d, lg, &d->time2, D, D, "time_embedding.2")) ||
        (ret = get_linear(d, lg, &d->tproj, 6 * D, D, "time_projection.1")) ||
        (ret = get_linear(d, lg, &d->text0, D, c->text_dim, "text_embedding.0")) ||
        (ret = get_linear(d, lg, &d->text2, D, D, "text_embedding.2")) ||
        (ret = get_linear(d, lg, &d->head, pv * c->out_dim, D, "head.head")) ||
        (ret = get_table(d, lg, &d->head_mod, 2, "head.modulation")))
        goto fail;
    if (c->i2v) {
        int64_t cd = c->clip_dim;
        if ((ret = get_vec(d, lg, &d->img_ln0_w, cd, 1, "img_emb.proj.0.weight")) ||
            (ret = get_vec(d, lg, &d->img_ln0_b, cd, 1, "img_emb.proj.0.bias")) ||
            (ret = get_linear(d, lg, &d->img1, cd, cd, "img_emb.proj.1")) ||
            (ret = get_linear(d, lg, &d->img3, D, cd, "img_emb.proj.3")) ||
            (ret = get_vec(d, lg, &d->img_ln4_w, D, 1, "img_emb.proj.4.weight")) ||
            (ret = get_vec(d, lg, &d->img_ln4_b, D, 1, "img_emb.proj.4.bias")))
            goto fail;
    }
    d->blocks = vd_calloc((size_t)c->n_layers * sizeof(*d->blocks));
    if (!d->blocks) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < c->n_layers; i++)
        if ((ret = load_block(d, i, lg)))
            goto fail;
    *out = d;
    return 0;
fail:
    vd_dit_free(&d);
    return ret;
}

int vd_dit_load(const vd_ckpt *ck, int64_t text_len, vd_log *lg, vd_dit **out)
{
    return vd_dit_load_ex(ck, text_len, 0, lg, out);
}

typedef struct release_arg {
    void (*release)(void *user, const void *data);
    void *user;
} release_arg;

/* the prepared form is the layer's own (a copy in the matmul's layout): the
 * stored weights' pages may go until a context of the other precision reads
 * them */
static void release_stored(void *user, const vk_linear *l)
{
    const release_arg *a = user;
    if (l->prep)
        a->release(a->user, l->w);
}

int vd_dit_prepare_ex(vd_dit *d, vk_prec prec, int n_threads,
                      void (*release)(void *user, const void *data), void *user)
{
    int64_t nl = d->blocks ? d->cfg.n_layers : 0, n = 0;
    vk_linear **ls = vd_malloc((size_t)(nl * 12 + 1) * sizeof(*ls));
    if (!ls)
        return VDIT_ERR_NOMEM;
    for (int64_t i = 0; i < nl; i++) {
        dit_block *b = &d->blocks[i];
        vk_linear *bl[] = { &b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck,
                            &b->cv, &b->co, &b->ck_img, &b->cv_img, &b->ffn0, &b->ffn2 };
        for (size_t k = 0; k < VD_ARRAY_SIZE(bl); k++)
            if (bl[k]->w)
                ls[n++] = bl[k];
    }
    release_arg ra = { release, user };
    int ret = n > INT_MAX ? VDIT_ERR_INVALID_ARG
                          : vk_linear_prepare_n(ls, (int)n, prec, n_threads,
                                                release ? release_stored : NULL, &ra);
    vd_free(ls);
    return ret;
}

int vd_dit_prepare(vd_dit *d, vk_prec prec, int n_threads)
{
    return vd_dit_prepare_ex(d, prec, n_threads, NULL, NULL);
}

void vd_dit_free(vd_dit **pd)
{
    vd_dit *d = pd ? *pd : NULL;
    if (!d)
        return;
    if (d->blocks) {
        for (int64_t i = 0; i < d->cfg.n_layers; i++) {
            dit_block *b = &d->blocks[i];
            vk_linear *ls[] = { &b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck,
                                &b->cv, &b->co, &b->ck_img, &b->cv_img, &b->ffn0, &b->ffn2 };
            for (size_t k = 0; k < VD_ARRAY_SIZE(ls); k++)
                vk_linear_free(ls[k]);
            float *vs[] = { b->mod, b->s_norm_q, b->s_norm_k, b->c_norm_q, b->c_norm_k,
                            b->c_norm_k_img, b->norm3_w, b->norm3_b };
            for (size_t k = 0; k < VD_ARRAY_SIZE(vs); k++)
                vd_free(vs[k]);
        }
        vd_free(d->blocks);
    }
    vk_linear *ls[] = { &d->patch, &d->time0, &d->time2, &d->tproj, &d->text0,
                        &d->text2, &d->head, &d->img1, &d->img3 };
    for (size_t k = 0; k < VD_ARRAY_SIZE(ls); k++)
        vk_linear_free(ls[k]);
    vd_free(d->head_mod);
    vd_dit_dev_free(d);
    vd_owned_free(&d->owned);
    vd_free(d->img_ln0_w);
    vd_free(d->img_ln0_b);
    vd_free(d->img_ln4_w);
    vd_free(d->img_ln4_b);
    vd_free(d);
    *pd = NULL;
}

const vd_dit_config *vd_dit_get_config(const vd_dit *d)
{
    return d ? &d->cfg : NULL;
}

/* ---- run context ------------------------------------------------------- */

static int64_t patch_vol(const vd_dit_config *c)
{
    return c->patch[0] * c->patch[1] * c->patch[2];
}

/* Floats of the work area for n tokens: q, k, v, attention output (4 [L, D])
 * during attention; the FFN hidden layer [L, ffn] later; patches and head
 * output at the ends. */
static size_t work_floats(const vd_dit_config *c, int64_t n)
{
    int64_t pv = patch_vol(c);
    int64_t m = VD_MAX(4 * c->dim, c->ffn_dim);
    m = VD_MAX(m, c->in_dim * pv);
    m = VD_MAX(m, c->out_dim * pv);
    return (size_t)(n * m);
}

size_t vd_dit_run_bytes(const vd_dit *d, int64_t n_tok)
{
    const vd_dit_config *c = &d->cfg;
    size_t f = 3 * (size_t)(n_tok * c->dim) + work_floats(c, n_tok) +
               (size_t)(n_tok * c->head_dim);
    return f * sizeof(float);
}

size_t vd_dit_cond_bytes(const vd_dit *d, int64_t n_clip)
{
    const vd_dit_config *c = &d->cfg;
    int64_t n_img = c->i2v ? n_clip : 0;
    return (size_t)(2 * (c->text_len + n_img) * c->dim * c->n_layers) * sizeof(float);
}

static void free_time(vd_dit_run *r)
{
    float **fs[] = { &r->tv, &r->sinus, &r->e, &r->e0, &r->tmp, &r->mod };
    for (size_t k = 0; k < VD_ARRAY_SIZE(fs); k++) {
        vd_free(*fs[k]);
        *fs[k] = NULL;
    }
    r->cap_tv = 0;
}

/* Room for n distinct timesteps in the time table (contents not kept). */
static int ensure_tv(vd_dit_run *r, int64_t n)
{
    if (n <= r->cap_tv)
        return 0;
    free_time(r);
    const vd_dit_config *c = &r->d->cfg;
    size_t D = (size_t)c->dim, un = (size_t)n * sizeof(float);
    r->tv = vd_malloc(un);
    r->sinus = vd_malloc(un * (size_t)c->freq_dim);
    r->e = vd_malloc(un * D);
    r->tmp = vd_malloc(un * D);
    r->e0 = vd_malloc(un * 6 * D);
    r->mod = vd_malloc(un * 6 * D);
    if (!r->tv || !r->sinus || !r->e || !r->tmp || !r->e0 || !r->mod) {
        free_time(r);
        return VDIT_ERR_NOMEM;
    }
    r->cap_tv = n;
    return 0;
}

/* Room for n runs of equal timestep (contents not kept). */
static int ensure_seg(vd_dit_run *r, int64_t n)
{
    if (n <= r->cap_seg)
        return 0;
    vd_free(r->seg_start);
    vd_free(r->seg_tv);
    r->seg_start = vd_malloc((size_t)(n + 1) * sizeof(int64_t));
    r->seg_tv = vd_malloc((size_t)n * sizeof(int64_t));
    r->cap_seg = r->seg_start && r->seg_tv ? n : 0;
    return r->cap_seg ? 0 : VDIT_ERR_NOMEM;
}

vd_dit_run *vd_dit_run_new(const vd_dit *d, vk_ctx *kc)
{
    if (!d || !kc)
        return NULL;
    vd_dit_run *r = vd_calloc(sizeof(*r));
    if (!r)
        return NULL;
    r->d = d;
    r->kc = kc;
    if (ensure_tv(r, 1) || ensure_seg(r, 1))
        vd_dit_run_free(&r);
    return r;
}

static void free_acts(vd_dit_run *r)
{
    vd_free(r->x);
    vd_free(r->h);
    vd_free(r->y);
    vd_free(r->work);
    r->x = r->h = r->y = r->work = NULL;
    r->cap_tok = 0;
}

void vd_dit_run_free(vd_dit_run **pr)
{
    vd_dit_run *r = pr ? *pr : NULL;
    if (!r)
        return;
    free_acts(r);
    vd_dit_run_dev_free(r);
    vd_free(r->rope);
    free_time(r);
    vd_free(r->seg_start);
    vd_free(r->seg_tv);
    vd_free(r);
    *pr = NULL;
}

void vd_dit_run_set_tap(vd_dit_run *r, vd_dit_tap_fn fn, void *user)
{
    if (!r)
        return;
    r->tap = fn;
    r->tap_user = user;
}

void vd_dit_run_set_profile(vd_dit_run *r, double *acc)
{
    if (r)
        r->prof = acc;
}

/* Charges the time since the last mark to `kind`. */
static void mark(vd_dit_run *r, int kind)
{
    if (!r->prof)
        return;
    double t = vd_time();
    if (kind >= 0)
        r->prof[kind] += t - r->prof_t;
    r->prof_t = t;
}

static void tap(vd_dit_run *r, const char *name, const float *x, size_t n)
{
    if (r->tap)
        r->tap(r->tap_user, name, x, n);
}

static int ensure_acts(vd_dit_run *r, int64_t n)
{
    if (n <= r->cap_tok)
        return 0;
    free_acts(r);
    const vd_dit_config *c = &r->d->cfg;
    size_t ld = (size_t)(n * c->dim) * sizeof(float);
    r->x = vd_malloc(ld);
    r->h = vd_malloc(ld);
    r->y = vd_malloc(ld);
    r->work = vd_malloc(work_floats(c, n) * sizeof(float));
    if (!r->x || !r->h || !r->y || !r->work) {
        free_acts(r);
        return vd_err(r->kc->log, VDIT_ERR_NOMEM,
                      "out of memory for the activations of %lld tokens", (long long)n);
    }
    r->cap_tok = n;
    return 0;
}

int vd_dit_on_device(const vd_dit_run *r)
{
    return r->kc->cuda && r->d->dev;
}

/* ---- condition ----------------------------------------------------------- */

static float *cond_k(const vd_dit_cond *cd, int64_t i)
{
    int64_t D = cd->d->cfg.dim;
    return cd->kv + (size_t)(i * 2 * (cd->n_txt + cd->n_img) * D);
}

int vd_dit_cond_new(vd_dit_run *r, const float *context, int64_t n_ctx, const float *clip_fea,
                    int64_t n_clip, vd_dit_cond **out)
{
    if (!out)
        return VDIT_ERR_INVALID_ARG;
    *out = NULL;
    if (!r)
        return VDIT_ERR_INVALID_ARG;
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    vk_ctx *kc = r->kc;
    vd_log *lg = kc->log;
    int64_t D = c->dim, T = c->text_len;
    if (n_ctx < 0 || n_ctx > T || (n_ctx && !context))
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "text context of %lld tokens: must be 0..text_len (%lld)",
                      (long long)n_ctx, (long long)T);
    if (c->i2v && (n_clip <= 0 || !clip_fea))
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "the image-to-video model needs CLIP image features");
    if (!c->i2v && (n_clip || clip_fea))
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "CLIP image features given to a text-to-video model");
    int64_t n_img = c->i2v ? n_clip : 0;
    int ret = 0;
    float *pad = NULL, *hid = NULL, *emb = NULL;
    vd_dit_cond *cd = vd_calloc(sizeof(*cd));
    if (!cd)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    cd->d = d;
    cd->n_txt = T;
    cd->n_img = n_img;
    int64_t wmax = VD_MAX(T, n_img);
    int64_t wcol = VD_MAX(VD_MAX(c->text_dim, D), c->clip_dim);
    int dev = vd_dit_on_device(r); /* K/V made and kept on the device */
    cd->kv = dev ? NULL : vd_malloc(vd_dit_cond_bytes(d, n_img));
    pad = vd_calloc((size_t)(wmax * wcol) * sizeof(float));
    hid = vd_malloc((size_t)(wmax * wcol) * sizeof(float));
    emb = vd_malloc((size_t)((T + n_img) * D) * sizeof(float));
    if ((!dev && !cd->kv) || !pad || !hid || !emb) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory for the text condition");
        goto fail;
    }
    /* Text: zero-padded to text_len, then the MLP (the padding rows become
     * text_embedding(0), which cross-attention sees: no key mask). */
    if (n_ctx)
        memcpy(pad, context, (size_t)(n_ctx * c->text_dim) * sizeof(float));
    float *ctx = emb, *img = emb + T * D; /* [T, D], [n_img, D] */
    kc->f->linear(kc, &d->text0, pad, T, hid, VK_ACT_GELU_TANH);
    kc->f->linear(kc, &d->text2, hid, T, ctx, VK_ACT_NONE);
    tap(r, "inter/context_emb", ctx, (size_t)(T * D));
    if (n_img) {
        /* MLPProj: LN(eps 1e-5) -> Linear -> GELU(erf) -> Linear -> LN(eps 1e-5) */
        int64_t cd_ = c->clip_dim;
        kc->f->layernorm(kc, clip_fea, pad, n_img, cd_, d->img_ln0_w, d->img_ln0_b, IMG_LN_EPS);
        kc->f->linear(kc, &d->img1, pad, n_img, hid, VK_ACT_GELU_ERF);
        kc->f->linear(kc, &d->img3, hid, n_img, img, VK_ACT_NONE);
        kc->f->layernorm(kc, img, img, n_img, D, d->img_ln4_w, d->img_ln4_b, IMG_LN_EPS);
        tap(r, "inter/clip_context", img, (size_t)(n_img * D));
    }
    if (dev && (ret = vd_dit_dev_cond(r, cd, ctx, n_img ? img : NULL)))
        goto fail;
    for (int64_t i = 0; !dev && i < c->n_layers; i++) {
        const dit_block *b = &d->blocks[i];
        float *k = cond_k(cd, i), *v = k + T * D;
        kc->f->linear(kc, &b->ck, ctx, T, k, VK_ACT_NONE);
        if (b->c_norm_k)
            kc->f->rmsnorm(kc, k, k, T, D, b->c_norm_k, c->eps);
        kc->f->linear(kc, &b->cv, ctx, T, v, VK_ACT_NONE);
        if (n_img) {
            float *ki = v + T * D, *vi = ki + n_img * D;
            kc->f->linear(kc, &b->ck_img, img, n_img, ki, VK_ACT_NONE);
            if (b->c_norm_k_img)
                kc->f->rmsnorm(kc, ki, ki, n_img, D, b->c_norm_k_img, c->eps);
            kc->f->linear(kc, &b->cv_img, img, n_img, vi, VK_ACT_NONE);
        }
    }
    vd_free(pad);
    vd_free(hid);
    vd_free(emb);
    *out = cd;
    return 0;
fail:
    vd_free(pad);
    vd_free(hid);
    vd_free(emb);
    vd_dit_cond_free(&cd);
    return ret;
}

void vd_dit_cond_free(vd_dit_cond **pc)
{
    vd_dit_cond *cd = pc ? *pc : NULL;
    if (!cd)
        return;
    vd_dit_cond_dev_free(cd);
    vd_free(cd->kv);
    vd_free(cd);
    *pc = NULL;
}

/* ---- patches ------------------------------------------------------------- */

void vd_dit_patchify(const float *x, int64_t c, int64_t f, int64_t h, int64_t w,
                     const int64_t patch[3], int chan_last, float *tok)
{
    int64_t pt = patch[0], ph = patch[1], pw = patch[2];
    int64_t gf = f / pt, gh = h / ph, gw = w / pw, pv = pt * ph * pw;
    for (int64_t tf = 0; tf < gf; tf++)
        for (int64_t th = 0; th < gh; th++)
            for (int64_t tw = 0; tw < gw; tw++) {
                float *row = tok + ((tf * gh + th) * gw + tw) * c * pv;
                for (int64_t ch = 0; ch < c; ch++)
                    for (int64_t a = 0; a < pt; a++)
                        for (int64_t b = 0; b < ph; b++) {
                            const float *src =
                                x + ((ch * f + tf * pt + a) * h + th * ph + b) * w + tw * pw;
                            for (int64_t e = 0; e < pw; e++) {
                                int64_t j = chan_last ? ((a * ph + b) * pw + e) * c + ch
                                                      : ((ch * pt + a) * ph + b) * pw + e;
                                row[j] = src[e];
                            }
                        }
            }
}

void vd_dit_unpatchify(const float *tok, int64_t c, int64_t f, int64_t h, int64_t w,
                       const int64_t patch[3], int chan_last, float *x)
{
    int64_t pt = patch[0], ph = patch[1], pw = patch[2];
    int64_t gf = f / pt, gh = h / ph, gw = w / pw, pv = pt * ph * pw;
    for (int64_t tf = 0; tf < gf; tf++)
        for (int64_t th = 0; th < gh; th++)
            for (int64_t tw = 0; tw < gw; tw++) {
                const float *row = tok + ((tf * gh + th) * gw + tw) * c * pv;
                for (int64_t ch = 0; ch < c; ch++)
                    for (int64_t a = 0; a < pt; a++)
                        for (int64_t b = 0; b < ph; b++) {
                            float *dst = x + ((ch * f + tf * pt + a) * h + th * ph + b) * w + tw * pw;
                            for (int64_t e = 0; e < pw; e++) {
                                int64_t j = chan_last ? ((a * ph + b) * pw + e) * c + ch
                                                      : ((ch * pt + a) * ph + b) * pw + e;
                                dst[e] = row[j];
                            }
                        }
            }
}

/* ---- forward ------------------------------------------------------------- */

/* Sinusoidal timestep embedding: angle_k = t * 10000^(-k/half), [cos, sin],
 * in double then rounded to fp32 as the reference does. */
static void time_sinusoid(float t, int64_t dim, float *out)
{
    int64_t half = dim / 2;
    for (int64_t k = 0; k < half; k++) {
        double a = (double)t * pow(10000.0, -(double)k / (double)half);
        out[k] = (float)cos(a);
        out[half + k] = (float)sin(a);
    }
}

/* m = table + e0 rearranged for fused LayerNorm calls:
 * [shift1, 1 + scale1, gate1, shift2, 1 + scale2, gate2]. */
static void block_mod(const float *table, const float *e0, int64_t D, float *m)
{
    for (int64_t j = 0; j < 6 * D; j++)
        m[j] = table[j] + e0[j];
    for (int64_t j = 0; j < D; j++) {
        m[D + j] = 1.0f + m[D + j];
        m[4 * D + j] = 1.0f + m[4 * D + j];
    }
}

/* y = LN(x) * w + b over nb branches of Lb tokens stacked in x and y
 * ([nb * Lb, D]), each token with the vectors of its timestep: w = mods +
 * v * stride + w_off and b = mods + v * stride + b_off for its time-table
 * row v. One LayerNorm call per run of equal timestep; one call in all when
 * every token has the same (the scalar path). */
static void norm_mod(vd_dit_run *r, const float *x, float *y, int nb, int64_t Lb,
                     const float *mods, int64_t stride, int64_t w_off, int64_t b_off)
{
    vk_ctx *kc = r->kc;
    const vd_dit_config *c = &r->d->cfg;
    int64_t D = c->dim;
    if (r->n_seg == 1) {
        const float *m = mods + r->seg_tv[0] * stride;
        kc->f->layernorm(kc, x, y, nb * Lb, D, m + w_off, m + b_off, c->eps);
        return;
    }
    for (int bi = 0; bi < nb; bi++)
        for (int64_t s = 0; s < r->n_seg; s++) {
            const float *m = mods + r->seg_tv[s] * stride;
            int64_t off = (bi * Lb + r->seg_start[s]) * D;
            kc->f->layernorm(kc, x + off, y + off, r->seg_start[s + 1] - r->seg_start[s], D,
                             m + w_off, m + b_off, c->eps);
        }
}

/* x += y * gate per token (layout as norm_mod), gate = mods + v * stride +
 * g_off for the token's time-table row v. */
static void add_mod(vd_dit_run *r, float *x, const float *y, int nb, int64_t Lb,
                    const float *mods, int64_t stride, int64_t g_off)
{
    vk_ctx *kc = r->kc;
    int64_t D = r->d->cfg.dim;
    if (r->n_seg == 1) {
        kc->f->add_gated(kc, x, y, nb * Lb, D, mods + r->seg_tv[0] * stride + g_off);
        return;
    }
    for (int bi = 0; bi < nb; bi++)
        for (int64_t s = 0; s < r->n_seg; s++) {
            int64_t off = (bi * Lb + r->seg_start[s]) * D;
            kc->f->add_gated(kc, x + off, y + off, r->seg_start[s + 1] - r->seg_start[s], D,
                             mods + r->seg_tv[s] * stride + g_off);
        }
}

/* Every time-table row's block modulation (block_mod) into r->mod [n_tv, 6D]. */
void vd_dit_block_mods(vd_dit_run *r, const float *table)
{
    int64_t D = r->d->cfg.dim;
    for (int64_t v = 0; v < r->n_tv; v++)
        block_mod(table, r->e0 + v * 6 * D, D, r->mod + v * 6 * D);
}

static uint32_t fbits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The time table and the runs of one pass over L tokens: t_tok NULL, one
 * row (t) and one run; else one row per distinct value of t_tok [L]
 * (compared bit for bit, in increasing bit order) and its runs of equal
 * values. */
static int time_plan(vd_dit_run *r, float t, const float *t_tok, int64_t L)
{
    vd_log *lg = r->kc->log;
    if (!t_tok) {
        r->n_tv = r->n_seg = 1;
        r->tv[0] = t;
        r->seg_start[0] = 0;
        r->seg_start[1] = L;
        r->seg_tv[0] = 0;
        return 0;
    }
    int64_t n_run = 1;
    for (int64_t l = 0; l < L; l++) {
        if (!isfinite(t_tok[l]))
            return vd_err(lg, VDIT_ERR_INVALID_ARG, "the timestep of token %lld is not finite",
                          (long long)l);
        n_run += l && fbits(t_tok[l]) != fbits(t_tok[l - 1]);
    }
    if (ensure_seg(r, n_run))
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for %lld timestep runs",
                      (long long)n_run);
    int64_t s = 0;
    r->seg_start[0] = 0;
    for (int64_t l = 1; l < L; l++)
        if (fbits(t_tok[l]) != fbits(t_tok[l - 1]))
            r->seg_start[++s] = l;
    r->seg_start[n_run] = L;
    r->n_seg = n_run;
    /* the distinct values: the runs' values sorted, repeats dropped */
    uint32_t *u = vd_malloc((size_t)n_run * sizeof(uint32_t));
    if (!u)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    for (s = 0; s < n_run; s++)
        u[s] = fbits(t_tok[r->seg_start[s]]);
    int64_t n_tv = 1;
    if (n_run > 1) {
        qsort(u, (size_t)n_run, sizeof(uint32_t), cmp_u32);
        for (s = 1; s < n_run; s++)
            if (u[s] != u[n_tv - 1])
                u[n_tv++] = u[s];
    }
    if (ensure_tv(r, n_tv)) {
        vd_free(u);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for %lld distinct timesteps",
                      (long long)n_tv);
    }
    r->n_tv = n_tv;
    for (int64_t v = 0; v < n_tv; v++)
        memcpy(&r->tv[v], &u[v], sizeof(float));
    for (s = 0; s < n_run; s++) {
        uint32_t key = fbits(t_tok[r->seg_start[s]]);
        const uint32_t *hit = bsearch(&key, u, (size_t)n_tv, sizeof(uint32_t), cmp_u32);
        r->seg_tv[s] = hit - u;
    }
    vd_free(u);
    return 0;
}

/* A time-table tensor [n_tv, width] expanded to one row per token, to the tap. */
static void tap_tok(vd_dit_run *r, const char *name, const float *tab, int64_t width, int64_t L)
{
    if (!r->tap)
        return;
    float *t = vd_malloc((size_t)(L * width) * sizeof(float));
    if (!t)
        return;
    for (int64_t s = 0; s < r->n_seg; s++)
        for (int64_t l = r->seg_start[s]; l < r->seg_start[s + 1]; l++)
            memcpy(t + l * width, tab + r->seg_tv[s] * width, (size_t)width * sizeof(float));
    tap(r, name, t, (size_t)(L * width));
    vd_free(t);
}

/* The time MLPs on every row of the time table: sinus, e, e0. per_tok: the
 * taps get one row per token (L), else the single row. */
static void time_embed(vd_dit_run *r, int per_tok, int64_t L)
{
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    vk_ctx *kc = r->kc;
    const vk_funcs *fn = kc->f;
    int64_t D = c->dim, fq = c->freq_dim, n = r->n_tv;
    for (int64_t v = 0; v < n; v++)
        time_sinusoid(r->tv[v], fq, r->sinus + v * fq);
    fn->linear(kc, &d->time0, r->sinus, n, r->tmp, VK_ACT_SILU);
    fn->linear(kc, &d->time2, r->tmp, n, r->e, VK_ACT_NONE);
    memcpy(r->tmp, r->e, (size_t)(n * D) * sizeof(float));
    fn->act(kc, r->tmp, n * D, VK_ACT_SILU);
    fn->linear(kc, &d->tproj, r->tmp, n, r->e0, VK_ACT_NONE);
    if (!r->tap)
        return;
    if (per_tok) {
        tap_tok(r, "inter/t_sinusoid", r->sinus, fq, L);
        tap_tok(r, "inter/e", r->e, D, L);
        tap_tok(r, "inter/e0", r->e0, 6 * D, L);
    } else {
        tap(r, "inter/t_sinusoid", r->sinus, (size_t)fq);
        tap(r, "inter/e", r->e, (size_t)D);
        tap(r, "inter/e0", r->e0, (size_t)(6 * D));
    }
}

/* One block over nb branches of L tokens each, stacked in x ([nb * L, D]):
 * the row-wise work (norms, projections, FFN) on all rows at once, the
 * attention per branch (self-attention within it, cross-attention to its
 * cond). */
static void run_block(vd_dit_run *r, const dit_block *b, const vd_dit_cond *const *cds, int nb,
                      int64_t i, int64_t Lb)
{
    const vd_dit_config *c = &r->d->cfg;
    vk_ctx *kc = r->kc;
    const vk_funcs *f = kc->f;
    int64_t D = c->dim, H = c->n_heads, hd = c->head_dim, L = nb * Lb;
    float scale = (float)(1.0 / sqrt((double)hd));
    float *x = r->x, *h = r->h, *y = r->y, *m = r->mod;
    float *q = r->work, *k = q + L * D, *v = k + L * D, *o = v + L * D;

    vd_dit_block_mods(r, b->mod);

    /* self-attention */
    norm_mod(r, x, h, nb, Lb, m, 6 * D, D, 0);
    mark(r, VD_DIT_PROF_ELEM);
    {
        const vk_linear *qkv[3] = { &b->sq, &b->sk, &b->sv };
        float *const out[3] = { q, k, v };
        f->linear_n(kc, qkv, 3, h, L, out);
    }
    mark(r, VD_DIT_PROF_PROJ);
    if (b->s_norm_q) {
        f->rmsnorm(kc, q, q, L, D, b->s_norm_q, c->eps);
        f->rmsnorm(kc, k, k, L, D, b->s_norm_k, c->eps);
    }
    for (int bi = 0; bi < nb; bi++) {
        f->rope(kc, q + bi * Lb * D, Lb, H, hd, D, r->rope);
        f->rope(kc, k + bi * Lb * D, Lb, H, hd, D, r->rope);
    }
    mark(r, VD_DIT_PROF_ELEM);
    for (int bi = 0; bi < nb; bi++) {
        int64_t off = bi * Lb * D;
        f->attention(kc, q + off, D, k + off, D, v + off, D, o + off, D, H, hd, Lb, Lb, Lb,
                     scale, NULL);
    }
    mark(r, VD_DIT_PROF_ATTN);
    f->linear(kc, &b->so, o, L, y, VK_ACT_NONE);
    mark(r, VD_DIT_PROF_PROJ);
    add_mod(r, x, y, nb, Lb, m, 6 * D, 2 * D);

    /* cross-attention, K/V from the cond */
    if (b->norm3_w)
        f->layernorm(kc, x, h, L, D, b->norm3_w, b->norm3_b, c->eps);
    else
        memcpy(h, x, (size_t)(L * D) * sizeof(float));
    mark(r, VD_DIT_PROF_ELEM);
    f->linear(kc, &b->cq, h, L, q, VK_ACT_NONE);
    mark(r, VD_DIT_PROF_PROJ);
    if (b->c_norm_q)
        f->rmsnorm(kc, q, q, L, D, b->c_norm_q, c->eps);
    mark(r, VD_DIT_PROF_ELEM);
    for (int bi = 0; bi < nb; bi++) {
        const vd_dit_cond *cd = cds[bi];
        int64_t off = bi * Lb * D;
        const float *ck = cond_k(cd, i), *cv = ck + cd->n_txt * D;
        f->attention(kc, q + off, D, ck, D, cv, D, o + off, D, H, hd, Lb, cd->n_txt, cd->n_txt,
                     scale, NULL);
        if (cd->n_img) {
            const float *ki = cv + cd->n_txt * D, *vi = ki + cd->n_img * D;
            f->attention(kc, q + off, D, ki, D, vi, D, k + off, D, H, hd, Lb, cd->n_img,
                         cd->n_img, scale, NULL);
            f->add_gated(kc, o + off, k + off, Lb, D, NULL);
        }
    }
    mark(r, VD_DIT_PROF_XATTN);
    f->linear(kc, &b->co, o, L, y, VK_ACT_NONE);
    mark(r, VD_DIT_PROF_PROJ);
    f->add_gated(kc, x, y, L, D, NULL);

    /* feed-forward; its hidden layer reuses the whole work area */
    norm_mod(r, x, h, nb, Lb, m, 6 * D, 4 * D, 3 * D);
    mark(r, VD_DIT_PROF_ELEM);
    f->ffn(kc, &b->ffn0, &b->ffn2, VK_ACT_GELU_TANH, h, L, r->work, y);
    mark(r, VD_DIT_PROF_FFN);
    add_mod(r, x, y, nb, Lb, m, 6 * D, 5 * D);
    mark(r, VD_DIT_PROF_ELEM);
}

/* ---- step cache ---------------------------------------------------------- */

struct vd_dit_cache {
    int mode, max_skip;
    float threshold;
    size_t n;        /* floats per branch (L * D) of the state below; 0: empty */
    int nb;
    float *last_in;  /* the metric's input at the previous step */
    float *cur_in;   /* this step's patch tokens (the residual's origin) */
    float *comp_in;  /* EASY: patch tokens at the last step computed */
    float *comp_out; /* EASY: the first branch's block output there */
    float *resid;    /* [nb][n] block output minus patch tokens, last step computed */
    int have_last, have_comp, have_resid, skips;
    double acc, k;
};

vd_dit_cache *vd_dit_cache_new(int mode, float threshold, int max_skip)
{
    if ((mode != VD_CACHE_EASY && mode != VD_CACHE_TEA) || !(threshold >= 0) || max_skip < 1)
        return NULL;
    vd_dit_cache *c = vd_calloc(sizeof(*c));
    if (!c)
        return NULL;
    c->mode = mode;
    c->threshold = threshold;
    c->max_skip = max_skip;
    return c;
}

static void cache_drop(vd_dit_cache *c)
{
    vd_free(c->last_in);
    vd_free(c->cur_in);
    vd_free(c->comp_in);
    vd_free(c->comp_out);
    vd_free(c->resid);
    c->last_in = c->cur_in = c->comp_in = c->comp_out = c->resid = NULL;
    c->n = 0;
    c->nb = 0;
}

void vd_dit_cache_reset(vd_dit_cache *c)
{
    if (!c)
        return;
    c->have_last = c->have_comp = c->have_resid = c->skips = 0;
    c->acc = c->k = 0;
}

void vd_dit_cache_free(vd_dit_cache **pc)
{
    vd_dit_cache *c = pc ? *pc : NULL;
    if (!c)
        return;
    cache_drop(c);
    vd_free(c);
    *pc = NULL;
}

/* The state for nb branches of n floats; a new shape starts over. */
static int cache_fit(vd_dit_cache *c, size_t n, int nb)
{
    if (c->n == n && c->nb == nb)
        return 0;
    cache_drop(c);
    vd_dit_cache_reset(c);
    c->last_in = vd_malloc(n * sizeof(float));
    c->cur_in = vd_malloc(n * sizeof(float));
    c->comp_in = vd_malloc(n * sizeof(float));
    c->comp_out = vd_malloc(n * sizeof(float));
    c->resid = vd_malloc(n * (size_t)nb * sizeof(float));
    if (!c->last_in || !c->cur_in || !c->comp_in || !c->comp_out || !c->resid) {
        cache_drop(c);
        return VDIT_ERR_NOMEM;
    }
    c->n = n;
    c->nb = nb;
    return 0;
}

/* sum |a - b| / sum |b|, in double */
static double rel_l1(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += fabs((double)a[i] - (double)b[i]);
        den += fabs((double)b[i]);
    }
    return den > 0 ? num / den : (num > 0 ? INFINITY : 0);
}

/* Adds this step's change of `in` to the estimate and decides whether the
 * step reuses the residuals. */
static int cache_decide(vd_dit_cache *c, const float *in, int may_skip)
{
    int skip = 0;
    if (c->have_last) {
        double d = rel_l1(in, c->last_in, c->n);
        c->acc += c->mode == VD_CACHE_EASY ? c->k * d : d;
        skip = may_skip && c->have_resid && c->skips < c->max_skip &&
               (c->mode != VD_CACHE_EASY || c->k > 0) && c->acc < c->threshold;
    }
    memcpy(c->last_in, in, c->n * sizeof(float));
    c->have_last = 1;
    if (skip) {
        c->skips++;
    } else {
        c->skips = 0;
        c->acc = 0;
    }
    return skip;
}

/* ---- forward ------------------------------------------------------------- */

/* Patch embedding of x (and y) into dst [L, D]; uses work (and y's rows). */
static int embed(vd_dit_run *r, const float *x, const float *y, int64_t x_ch, int64_t y_ch,
                 int64_t f, int64_t h, int64_t w, int64_t L, float *dst)
{
    const vd_dit_config *c = &r->d->cfg;
    int64_t pv = patch_vol(c), D = c->dim;
    float *pt = r->work;
    int64_t row = c->in_dim * pv;
    vd_dit_patchify(x, x_ch, f, h, w, c->patch, 0, pt);
    if (y_ch) {
        /* y's patches go after x's in every row: patchify y alone, then
         * interleave (rows are short; this is not on the hot path). */
        float *tmp = r->y;
        if ((size_t)(L * y_ch * pv) > (size_t)(L * D)) {
            tmp = vd_malloc((size_t)(L * y_ch * pv) * sizeof(float));
            if (!tmp)
                return vd_err(r->kc->log, VDIT_ERR_NOMEM, "out of memory");
        }
        vd_dit_patchify(y, y_ch, f, h, w, c->patch, 0, tmp);
        for (int64_t l = L - 1; l >= 0; l--) {
            memmove(pt + l * row, pt + l * x_ch * pv, (size_t)(x_ch * pv) * sizeof(float));
            memcpy(pt + l * row + x_ch * pv, tmp + l * y_ch * pv,
                   (size_t)(y_ch * pv) * sizeof(float));
        }
        if (tmp != r->y)
            vd_free(tmp);
    }
    r->kc->f->linear(r->kc, &r->d->patch, pt, L, dst, VK_ACT_NONE);
    tap(r, "inter/patch_tokens", dst, (size_t)(L * D));
    return 0;
}

/* The head on tokens xt [L, D] (not r->h or r->work), unpatchified to out. */
static void head(vd_dit_run *r, const float *xt, int64_t f, int64_t h, int64_t w, int64_t L,
                 float *out)
{
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    vk_ctx *kc = r->kc;
    int64_t D = c->dim, pv = patch_vol(c);
    /* modulation from e (not e0), per time-table row: [shift, 1 + scale] */
    for (int64_t v = 0; v < r->n_tv; v++) {
        float *m = r->mod + v * 2 * D;
        const float *e = r->e + v * D;
        for (int64_t j = 0; j < D; j++) {
            m[j] = d->head_mod[j] + e[j];
            m[D + j] = 1.0f + (d->head_mod[D + j] + e[j]);
        }
    }
    norm_mod(r, xt, r->h, 1, L, r->mod, 2 * D, D, 0);
    kc->f->linear(kc, &d->head, r->h, L, r->work, VK_ACT_NONE);
    tap(r, "inter/head_out", r->work, (size_t)(L * pv * c->out_dim));
    vd_dit_unpatchify(r->work, c->out_dim, f, h, w, c->patch, 1, out);
}

static int blocks(vd_dit_run *r, const vd_dit_cond *const *conds, int nb, int64_t L)
{
    if (vd_dit_on_device(r))
        return vd_dit_dev_blocks(r, conds, nb, L);
    const vd_dit_config *c = &r->d->cfg;
    for (int64_t i = 0; i < c->n_layers; i++) {
        run_block(r, &r->d->blocks[i], conds, nb, i, L);
        if (r->tap && nb == 1) {
            char name[48];
            snprintf(name, sizeof(name), "inter/block%lld_out", (long long)i);
            tap(r, name, r->x, (size_t)(L * c->dim));
        }
    }
    return 0;
}

int vd_dit_forward_batch_tok(vd_dit_run *r, const float *x, const float *y, int64_t f,
                             int64_t h, int64_t w, float t, const float *t_tok, int nb,
                             const vd_dit_cond *const *conds, float *const *outs,
                             size_t max_bytes, vd_dit_cache *cache, int may_skip,
                             int *computed)
{
    if (!r)
        return VDIT_ERR_INVALID_ARG;
    const vd_dit *d = r->d;
    const vd_dit_config *c = &d->cfg;
    vk_ctx *kc = r->kc;
    vd_log *lg = kc->log;
    int64_t D = c->dim;
    if (!x || nb < 1 || nb > 2 || !conds || !outs)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_forward: missing x, out or cond");
    for (int b = 0; b < nb; b++) {
        if (!conds[b] || !outs[b])
            return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_forward: missing x, out or cond");
        if (conds[b]->d != d)
            return vd_err(lg, VDIT_ERR_INVALID_ARG,
                          "vd_dit_forward: cond made for another model");
    }
    if (f <= 0 || h <= 0 || w <= 0 || f % c->patch[0] || h % c->patch[1] || w % c->patch[2] ||
        f > 4096 || h > 65536 || w > 65536)
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "latent %lldx%lldx%lld does not split into %lldx%lldx%lld patches",
                      (long long)f, (long long)h, (long long)w, (long long)c->patch[0],
                      (long long)c->patch[1], (long long)c->patch[2]);
    if (c->i2v && !y)
        return vd_err(lg, VDIT_ERR_INVALID_ARG,
                      "the image-to-video model needs the conditioning latent y");
    if (!c->i2v && y)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "y given to a text-to-video model");
    /* i2v: x is the noisy latent (out_dim channels), y the rest */
    int64_t x_ch = c->i2v ? c->out_dim : c->in_dim;
    int64_t y_ch = c->in_dim - x_ch;
    if (y_ch < 0)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "in_dim %lld < out_dim %lld",
                      (long long)c->in_dim, (long long)c->out_dim);
    int64_t gf = f / c->patch[0], gh = h / c->patch[1], gw = w / c->patch[2];
    int64_t L = gf * gh * gw;
    size_t n = (size_t)(L * D);
    int batch = nb > 1 && (!max_bytes || vd_dit_run_bytes(d, nb * L) <= max_bytes);
    int ret = ensure_acts(r, batch ? nb * L : L);
    if (ret)
        return ret;
    if (cache && cache_fit(cache, n, nb))
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for the step cache");
    if (!r->rope || r->rope_f != gf || r->rope_h != gh || r->rope_w != gw) {
        vd_free(r->rope);
        r->rope = vk_rope3d_table(gf, gh, gw, c->head_dim, VD_WAN_ROPE_THETA, 0, 0, 0);
        if (!r->rope)
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for the rotary table");
        r->rope_f = gf;
        r->rope_h = gh;
        r->rope_w = gw;
    }
    mark(r, -1);

    /* time embedding: once per distinct timestep */
    if ((ret = time_plan(r, t, t_tok, L)))
        return ret;
    time_embed(r, t_tok != NULL, L);

    /* patch embedding: x and y side by side on channels */
    if ((ret = embed(r, x, y, x_ch, y_ch, f, h, w, L, r->x)))
        return ret;
    mark(r, VD_DIT_PROF_OTHER);

    int skip = 0;
    if (cache) {
        const float *in = r->x;
        if (cache->mode == VD_CACHE_TEA) { /* the first block's modulated input */
            vd_dit_block_mods(r, d->blocks[0].mod);
            norm_mod(r, r->x, r->h, 1, L, r->mod, 6 * D, D, 0);
            in = r->h;
        }
        skip = cache_decide(cache, in, may_skip);
        if (!skip) /* the residual's origin */
            memcpy(cache->cur_in, r->x, n * sizeof(float));
    }
    if (computed)
        *computed = !skip;
    if (skip) {
        for (int b = 0; b < nb; b++) {
            const float *rs = cache->resid + (size_t)b * n;
            for (size_t j = 0; j < n; j++)
                r->y[j] = r->x[j] + rs[j];
            head(r, r->y, f, h, w, L, outs[b]);
        }
        mark(r, VD_DIT_PROF_OTHER);
        return 0;
    }
    if (batch) {
        for (int b = 1; b < nb; b++)
            memcpy(r->x + (size_t)b * n, r->x, n * sizeof(float));
        if ((ret = blocks(r, conds, nb, L)))
            return ret;
    }
    for (int b = 0; b < nb; b++) {
        float *xb = r->x + (batch ? (size_t)b * n : 0);
        if (!batch) {
            if (b > 0 && (ret = embed(r, x, y, x_ch, y_ch, f, h, w, L, r->x)))
                return ret;
            if ((ret = blocks(r, conds + b, 1, L)))
                return ret;
        }
        if (cache) {
            float *rs = cache->resid + (size_t)b * n;
            for (size_t j = 0; j < n; j++)
                rs[j] = xb[j] - cache->cur_in[j];
            if (b == 0 && cache->mode == VD_CACHE_EASY) {
                /* transformation rate: the output's relative change since the
                 * last step computed over the input's */
                if (cache->have_comp) {
                    double din = rel_l1(cache->cur_in, cache->comp_in, n);
                    double dout = rel_l1(xb, cache->comp_out, n);
                    cache->k = din > 0 ? dout / din : 0;
                }
                memcpy(cache->comp_in, cache->cur_in, n * sizeof(float));
                memcpy(cache->comp_out, xb, n * sizeof(float));
                cache->have_comp = 1;
            }
            if (b == nb - 1)
                cache->have_resid = 1;
        }
        head(r, xb, f, h, w, L, outs[b]);
    }
    mark(r, VD_DIT_PROF_OTHER);
    return 0;
}

int vd_dit_forward_batch(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                         int64_t w, float t, int nb, const vd_dit_cond *const *conds,
                         float *const *outs, size_t max_bytes, vd_dit_cache *cache,
                         int may_skip, int *computed)
{
    return vd_dit_forward_batch_tok(r, x, y, f, h, w, t, NULL, nb, conds, outs, max_bytes, cache,
                                    may_skip, computed);
}

int vd_dit_forward(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                   int64_t w, float t, const vd_dit_cond *cond, float *out)
{
    return vd_dit_forward_batch_tok(r, x, y, f, h, w, t, NULL, 1, &cond, &out, 0, NULL, 0, NULL);
}

int vd_dit_forward_tok(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                       int64_t w, float t, const float *t_tok, const vd_dit_cond *cond, float *out)
{
    return vd_dit_forward_batch_tok(r, x, y, f, h, w, t, t_tok, 1, &cond, &out, 0, NULL, 0, NULL);
}

double vd_dit_flops(const vd_dit_config *c, int64_t L)
{
    double D = (double)c->dim, n = (double)L, T = (double)c->text_len;
    double pv = (double)(c->patch[0] * c->patch[1] * c->patch[2]);
    double blk = 2 * n * D * D * 4       /* self q k v o */
                 + 2 * 2 * n * n * D     /* self scores + values */
                 + 2 * n * D * D * 2     /* cross q o */
                 + 2 * 2 * n * T * D     /* cross scores + values */
                 + 2 * 2 * n * D * (double)c->ffn_dim; /* ffn */
    return blk * (double)c->n_layers + 2 * n * D * (double)c->in_dim * pv +
           2 * n * D * (double)c->out_dim * pv;
}
