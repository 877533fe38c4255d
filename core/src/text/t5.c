/*
 * umT5 encoder (Wan2.1's text encoder: wan/modules/t5.py T5Encoder as
 * umt5_xxl(encoder_only=True) builds it).
 *
 *   x = token_embedding[ids]                                    [n, dim]
 *   per block l (pre-norm):
 *     h = rms(x) * norm1                         (T5LayerNorm, eps 1e-6)
 *     q, k, v = h Wqᵀ, h Wkᵀ, h Wvᵀ                             [n, dim_attn]
 *     a = softmax(q kᵀ + pos_l[bucket(j - i)] + mask)            no 1/√d
 *     x += (a v) Woᵀ
 *     h = rms(x) * norm2
 *     x += (gelu_tanh(h Wgateᵀ) * h Wfc1ᵀ) Wfc2ᵀ
 *   out = rms(x) * norm                                         [n, dim]
 *
 * umT5 gives every block its own relative-position table (shared_pos False);
 * a model-level table (T5's shared form) is accepted too. The reference
 * masks padded keys with float32 min before softmax: exp(min - max) is
 * exactly 0 in fp32, so limiting the keys to the first n_real (the kernel's
 * kv_valid) is the same computation without the inf/NaN hazards.
 *
 * Weights stay in their stored type (F32/F16/BF16, used in place from the
 * mapped checkpoint); fp8 linears of the "scaled" repackaged files are
 * expanded once to BF16 at load (see load_weight).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "t5_impl.h"

/* ---- relative position buckets ------------------------------------------- */

int64_t vd_t5_bucket(int64_t rel, int64_t n_buckets, int64_t max_dist)
{
    /* bidirectional: half the buckets for keys after the query */
    int64_t nb = n_buckets / 2, out = rel > 0 ? nb : 0;
    int64_t d = rel < 0 ? -rel : rel;
    int64_t exact = nb / 2;
    if (d < exact)
        return out + d;
    /* The reference computes exact + long(log(d/exact) / log(max_dist/exact)
     * * (nb - exact)) in float32. Distances on a bucket boundary (16, 32, 64
     * for umT5) come out exactly on the integer there, which the float
     * evaluation below reproduces: the ratio of two float logs of exact
     * powers of two is exact. */
    float r = logf((float)d / (float)exact);
    float den = (float)log((double)max_dist / (double)exact);
    float v = r / den * (float)(nb - exact);
    int64_t large = exact + (int64_t)v;
    if (large > nb - 1)
        large = nb - 1;
    return out + large;
}

/* ---- loading -------------------------------------------------------------- */

/* A weight as a tensor the kernels take (F32/F16/BF16). fp8 tensors (the
 * "fp8_e4m3fn_scaled" repackaging) are multiplied by their companion scale
 * ("<module>.scale_weight" or ".weight_scale": one value or one per output
 * row; absent = 1) and stored as BF16, rounding each product to 8 mantissa
 * bits: the same precision as the bf16 release, at twice the fp8 memory. */
static int load_weight(vd_t5 *t, const vd_ckpt *ck, vd_log *lg, const char *name, int ndim,
                       int64_t d0, int64_t d1, const vt_tensor **out, vt_tensor *own)
{
    const vt_tensor *w;
    const vt_tensor *raw = vd_ckpt_find(ck, name);
    if (raw && (raw->dtype == VT_F8_E4M3 || raw->dtype == VT_F8_E5M2)) {
        if (raw->ndim != ndim || raw->shape[0] != d0 || (ndim > 1 && raw->shape[1] != d1))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' has an unexpected shape",
                          vd_ckpt_label(ck), name);
        *out = raw;
        return vd_ckpt_widen_f8(ck, lg, name, &t->owned, out, own);
    }
    int rc = vd_ckpt_getf(ck, lg, &w, ndim, d0, d1, -1, -1, "%s", name);
    if (rc)
        return rc;
    if (w->dtype != VT_F32 && w->dtype != VT_F16 && w->dtype != VT_BF16)
        return vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (F32, F16, BF16 "
                      "or fp8 with scales expected)",
                      vd_ckpt_label(ck), name, vt_dtype_name(w->dtype));
    *out = w;
    return 0;
}

static int load_f32(vd_t5 *t, const vd_ckpt *ck, vd_log *lg, const char *name, int ndim,
                    int64_t d0, int64_t d1, float **out)
{
    const vt_tensor *w;
    vt_tensor own;
    int rc = load_weight(t, ck, lg, name, ndim, d0, d1, &w, &own);
    if (rc)
        return rc;
    *out = vd_owned_add(&t->owned, vd_tensor_f32(w));
    if (!*out)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", name);
    return 0;
}

static int load_linear(vd_t5 *t, const vd_ckpt *ck, vd_log *lg, vk_linear *l, const char *name,
                       int64_t n_out, int64_t n_in)
{
    const vt_tensor *w;
    vt_tensor own;
    int rc = load_weight(t, ck, lg, name, 2, n_out, n_in, &w, &own);
    if (rc)
        return rc;
    rc = vk_linear_init(l, w, NULL);
    if (rc)
        return vd_err(lg, rc, "%s: cannot prepare linear layer '%s'", vd_ckpt_label(ck), name);
    return 0;
}

int vd_t5_load(const vd_ckpt *ck, vd_log *lg, vd_t5 **out)
{
    if (!ck || !out)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_t5_load: bad arguments");
    *out = NULL;
    const char *label = vd_ckpt_label(ck);
    vd_t5 *t = calloc(1, sizeof(*t));
    if (!t)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    vd_t5_config *c = &t->cfg;
    int rc;
    char nm[256];

    /* sizes from the shapes */
    const vt_tensor *e = vd_ckpt_find(ck, "token_embedding.weight");
    const vt_tensor *q0 = vd_ckpt_find(ck, "blocks.0.attn.q.weight");
    const vt_tensor *f0 = vd_ckpt_find(ck, "blocks.0.ffn.fc1.weight");
    const vt_tensor *p0 = vd_ckpt_find(ck, "blocks.0.pos_embedding.embedding.weight");
    const vt_tensor *ps = vd_ckpt_find(ck, "pos_embedding.embedding.weight");
    if (!e || !q0 || !f0 || (!p0 && !ps)) {
        rc = vd_err(lg, VDIT_ERR_MISSING,
                    "%s: not a umT5 encoder checkpoint (missing %s)", label,
                    !e ? "token_embedding.weight" : !q0 ? "blocks.0.attn.q.weight"
                    : !f0 ? "blocks.0.ffn.fc1.weight" : "a relative position embedding");
        goto fail;
    }
    const vt_tensor *pt = p0 ? p0 : ps;
    if (e->ndim != 2 || q0->ndim != 2 || f0->ndim != 2 || pt->ndim != 2) {
        rc = vd_err(lg, VDIT_ERR_FORMAT, "%s: umT5 weights must be matrices", label);
        goto fail;
    }
    c->vocab = e->shape[0];
    c->dim = e->shape[1];
    c->dim_attn = q0->shape[0];
    c->dim_ffn = f0->shape[0];
    c->n_buckets = pt->shape[0];
    c->n_heads = pt->shape[1];
    while (1) {
        snprintf(nm, sizeof(nm), "blocks.%lld.norm1.weight", (long long)c->n_layers);
        if (!vd_ckpt_find(ck, nm))
            break;
        c->n_layers++;
    }
    /* One table for all blocks: the model-level one, or (HF's T5 layout)
     * block 0's when the other blocks have none. */
    c->shared_pos = !p0 || (c->n_layers > 1 && !vd_ckpt_find(ck, "blocks.1.pos_embedding.embedding.weight"));
    const char *shared_name = ps ? "pos_embedding.embedding.weight" : "blocks.0.pos_embedding.embedding.weight";
    if (c->vocab < 1 || c->dim < 1 || c->n_heads < 1 || c->dim_attn % c->n_heads ||
        c->n_buckets < 2 || c->n_layers < 1) {
        rc = vd_err(lg, VDIT_ERR_FORMAT,
                    "%s: inconsistent umT5 sizes (dim_attn %lld, heads %lld, buckets %lld, "
                    "layers %lld)",
                    label, (long long)c->dim_attn, (long long)c->n_heads,
                    (long long)c->n_buckets, (long long)c->n_layers);
        goto fail;
    }

    if ((rc = load_weight(t, ck, lg, "token_embedding.weight", 2, c->vocab, c->dim, &t->emb,
                          &t->emb_own)))
        goto fail;
    if ((rc = load_f32(t, ck, lg, "norm.weight", 1, c->dim, -1, &t->norm)))
        goto fail;
    if (c->shared_pos &&
        (rc = load_f32(t, ck, lg, shared_name, 2, c->n_buckets, c->n_heads, &t->shared_pos)))
        goto fail;
    t->layers = calloc((size_t)c->n_layers, sizeof(t5_layer));
    if (!t->layers) {
        rc = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        t5_layer *L = &t->layers[l];
        const int64_t D = c->dim, A = c->dim_attn, F = c->dim_ffn;
#define NM(fmt) (snprintf(nm, sizeof(nm), "blocks.%lld." fmt, (long long)l), nm)
        if ((rc = load_f32(t, ck, lg, NM("norm1.weight"), 1, D, -1, &L->norm1)) ||
            (rc = load_f32(t, ck, lg, NM("norm2.weight"), 1, D, -1, &L->norm2)) ||
            (rc = load_linear(t, ck, lg, &L->q, NM("attn.q.weight"), A, D)) ||
            (rc = load_linear(t, ck, lg, &L->k, NM("attn.k.weight"), A, D)) ||
            (rc = load_linear(t, ck, lg, &L->v, NM("attn.v.weight"), A, D)) ||
            (rc = load_linear(t, ck, lg, &L->o, NM("attn.o.weight"), D, A)) ||
            (rc = load_linear(t, ck, lg, &L->gate, NM("ffn.gate.0.weight"), F, D)) ||
            (rc = load_linear(t, ck, lg, &L->fc1, NM("ffn.fc1.weight"), F, D)) ||
            (rc = load_linear(t, ck, lg, &L->fc2, NM("ffn.fc2.weight"), D, F)))
            goto fail;
        if (!c->shared_pos &&
            (rc = load_f32(t, ck, lg, NM("pos_embedding.embedding.weight"), 2, c->n_buckets,
                           c->n_heads, &L->pos)))
            goto fail;
#undef NM
    }
    *out = t;
    return 0;
fail:
    vd_t5_free(&t);
    return rc;
}

void vd_t5_free(vd_t5 **tp)
{
    if (!tp || !*tp)
        return;
    vd_t5 *t = *tp;
    vd_t5_dev_free(t);
    for (int64_t l = 0; t->layers && l < t->cfg.n_layers; l++) {
        t5_layer *L = &t->layers[l];
        vk_linear_free(&L->q);
        vk_linear_free(&L->k);
        vk_linear_free(&L->v);
        vk_linear_free(&L->o);
        vk_linear_free(&L->gate);
        vk_linear_free(&L->fc1);
        vk_linear_free(&L->fc2);
    }
    free(t->layers);
    vd_owned_free(&t->owned);
    free(t);
    *tp = NULL;
}

const vd_t5_config *vd_t5_get_config(const vd_t5 *t)
{
    return t ? &t->cfg : NULL;
}

size_t vd_t5_weight_bytes(const vd_t5 *t)
{
    if (!t)
        return 0;
    const vd_t5_config *c = &t->cfg;
    size_t es = vt_dtype_size(t->layers[0].q.wtype);
    size_t per = (size_t)(4 * c->dim * c->dim_attn + 3 * c->dim * c->dim_ffn) * es;
    return per * (size_t)c->n_layers + (size_t)(c->vocab * c->dim) * vt_dtype_size(t->emb->dtype);
}

/* ---- forward ----------------------------------------------------------------- */

static void tap(vd_t5_tap fn, void *user, const char *name, const float *d, size_t n)
{
    if (fn)
        fn(user, name, d, n);
}

/* x = token_embedding[ids]                                                [n, D] */
void vd_t5_embed(const vd_t5 *t, const int32_t *ids, int64_t n, float *x)
{
    const int64_t D = t->cfg.dim;
    const size_t es = vt_dtype_size(t->emb->dtype);
    for (int64_t i = 0; i < n; i++)
        vt_to_f32(x + i * D, (const char *)t->emb->data + (size_t)ids[i] * (size_t)D * es,
                  t->emb->dtype, (size_t)D);
}

/* the bucket of every distance j - i, shared by all layers */
void vd_t5_buckets(const vd_t5 *t, int64_t n, int32_t *bk)
{
    for (int64_t d = -(n - 1); d <= n - 1; d++)
        bk[d + n - 1] = (int32_t)vd_t5_bucket(d, t->cfg.n_buckets, 128);
}

/* bias[hh, i, j] = pos[bucket(j - i), hh]                                  [H, n, n] */
static void t5_bias(const vd_t5 *t, int64_t l, int64_t n, const int32_t *bk, float *bias)
{
    const int64_t H = t->cfg.n_heads;
    const float *pos = t->cfg.shared_pos ? t->shared_pos : t->layers[l].pos; /* [buckets, H] */
    for (int64_t hh = 0; hh < H; hh++)
        for (int64_t i = 0; i < n; i++) {
            float *b = bias + (hh * n + i) * n;
            const int32_t *bi = bk + (n - 1 - i);
            for (int64_t j = 0; j < n; j++)
                b[j] = pos[bi[j] * H + hh];
        }
}

int vd_t5_encode_tap(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                     float *out, vd_t5_tap tap_fn, void *tap_user)
{
    if (!t || !kc || !ids || !out || n < 1 || n_real < 1 || n_real > n)
        return vd_err(kc ? kc->log : NULL, VDIT_ERR_INVALID_ARG,
                      "vd_t5_encode: bad arguments (n %lld, n_real %lld)", (long long)n,
                      (long long)n_real);
    const vd_t5_config *c = &t->cfg;
    const int64_t D = c->dim, A = c->dim_attn, F = c->dim_ffn, H = c->n_heads, hd = A / H;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return vd_err(kc->log, VDIT_ERR_INVALID_ARG,
                          "vd_t5_encode: token id %d at %lld outside the vocabulary (%lld)",
                          ids[i], (long long)i, (long long)c->vocab);
    if (t->dev) { /* the layers are on a device */
        if (!kc->cuda)
            return vd_err(kc->log, VDIT_ERR_INVALID_ARG,
                          "vd_t5_encode: the weights are on a CUDA device and this context has "
                          "none");
        return vd_t5_dev_encode(t, kc, ids, n, n_real, out, tap_fn, tap_user);
    }
    size_t nd = (size_t)(n * D), na = (size_t)(n * A), nf = (size_t)(n * F);
    size_t nb = (size_t)(H * n * n);
    float *x = vd_malloc(nd * 4), *h = vd_malloc(nd * 4), *q = vd_malloc(na * 4),
          *k = vd_malloc(na * 4), *v = vd_malloc(na * 4), *o = vd_malloc(na * 4),
          *g = vd_malloc(nf * 4), *f = vd_malloc(nf * 4), *bias = vd_malloc(nb * 4);
    int32_t *bk = malloc((size_t)(2 * n - 1) * sizeof(int32_t));
    int rc = 0;
    if (!x || !h || !q || !k || !v || !o || !g || !f || !bias || !bk) {
        rc = vd_err(kc->log, VDIT_ERR_NOMEM, "vd_t5_encode: out of memory for %lld tokens",
                    (long long)n);
        goto done;
    }

    vd_t5_embed(t, ids, n, x);
    tap(tap_fn, tap_user, "inter/token_emb", x, nd);
    vd_t5_buckets(t, n, bk);

    for (int64_t l = 0; l < c->n_layers; l++) {
        const t5_layer *L = &t->layers[l];
        if (l == 0 || !c->shared_pos)
            t5_bias(t, l, n, bk, bias);
        if (l == 0)
            tap(tap_fn, tap_user, "inter/pos_bias0", bias, nb);

        /* attention sub-block                                                   */
        kc->f->rmsnorm(kc, x, h, n, D, L->norm1, 1e-6f);
        kc->f->linear(kc, &L->q, h, n, q, VK_ACT_NONE); /* [n, A] */
        kc->f->linear(kc, &L->k, h, n, k, VK_ACT_NONE);
        kc->f->linear(kc, &L->v, h, n, v, VK_ACT_NONE);
        /* padded keys (j >= n_real) are masked: the kernel skips them        */
        kc->f->attention(kc, q, A, k, A, v, A, o, A, H, hd, n, n, n_real, 1.0f, bias);
        kc->f->linear(kc, &L->o, o, n, h, VK_ACT_NONE); /* [n, D] */
        kc->f->add_gated(kc, x, h, n, D, NULL);

        /* gated-GELU feed-forward                                               */
        kc->f->rmsnorm(kc, x, h, n, D, L->norm2, 1e-6f);
        kc->f->linear(kc, &L->gate, h, n, g, VK_ACT_GELU_TANH); /* [n, F] */
        kc->f->linear(kc, &L->fc1, h, n, f, VK_ACT_NONE);
        for (size_t i = 0; i < nf; i++)
            f[i] *= g[i];
        kc->f->linear(kc, &L->fc2, f, n, h, VK_ACT_NONE); /* [n, D] */
        kc->f->add_gated(kc, x, h, n, D, NULL);
        if (tap_fn) {
            char nm[48];
            snprintf(nm, sizeof(nm), "inter/block%lld_out", (long long)l);
            tap_fn(tap_user, nm, x, nd);
        }
    }
    kc->f->rmsnorm(kc, x, out, n, D, t->norm, 1e-6f);
done:
    vd_free(x);
    vd_free(h);
    vd_free(q);
    vd_free(k);
    vd_free(v);
    vd_free(o);
    vd_free(g);
    vd_free(f);
    vd_free(bias);
    free(bk);
    return rc;
}

int vd_t5_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                 float *out)
{
    return vd_t5_encode_tap(t, kc, ids, n, n_real, out, NULL, NULL);
}
