/* A host emulation of the CUDA backend's interface (kernels/cuda/vkc.h):
 * "device" memory is host memory, every kernel is the CPU reference
 * (kernels/ref.c) or a plain loop with the backend's documented rounding
 * (bf16 operands, bf16 outputs). Linked into test_dit_emul in place of the
 * real backend, so that the DiT's device path (core/src/dit/dit_cuda.c:
 * uploads, buffer layout, per-block modulation rows, segments, the
 * condition's K/V, batched branches, taps) runs, and is checked, on a
 * machine without a GPU. It does not test vkc.cu itself (test_cuda does,
 * where a GPU answers). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/vkc.h"
#include "kernels/impl.h"

struct vkc_ctx {
    vk_ctx *ref;
    vk_ctx *fast; /* fp32 at the default level: the convolutions' products */
    size_t used, peak;
    char err[256];
};

typedef struct blk {
    size_t n;
    uint64_t pad; /* keeps the data 16-byte aligned */
} blk;

int vkc_device_count(char *err, size_t n)
{
    (void)err, (void)n;
    return 1;
}

int vkc_ctx_new(int device, vkc_ctx **out, char *err, size_t n)
{
    *out = NULL;
    vkc_ctx *c = calloc(1, sizeof(*c));
    if (!c || device != 0 || !(c->ref = vk_ctx_new(1, 1, NULL)) ||
        !(c->fast = vk_ctx_new(1, 0, NULL))) {
        snprintf(err, n, "emulated device: cannot make a context");
        if (c)
            vk_ctx_free(&c->ref);
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void vkc_ctx_free(vkc_ctx **pc)
{
    if (!pc || !*pc)
        return;
    vk_ctx_free(&(*pc)->ref);
    vk_ctx_free(&(*pc)->fast);
    free(*pc);
    *pc = NULL;
}

const char *vkc_device_name(const vkc_ctx *c)
{
    (void)c;
    return "emulated device";
}

size_t vkc_mem_used(const vkc_ctx *c)
{
    return c->used;
}

size_t vkc_mem_peak(const vkc_ctx *c)
{
    return c->peak;
}

void *vkc_alloc(vkc_ctx *c, size_t bytes)
{
    blk *b = malloc(sizeof(blk) + bytes);
    if (!b)
        return NULL;
    b->n = bytes;
    c->used += bytes;
    c->peak = c->used > c->peak ? c->used : c->peak;
    /* device memory is not zeroed either: a pattern catches reads of it */
    memset(b + 1, 0x7f, bytes);
    return b + 1;
}

void vkc_free(vkc_ctx *c, void *p)
{
    if (!p)
        return;
    blk *b = (blk *)p - 1;
    c->used -= b->n;
    free(b);
}

int vkc_upload(vkc_ctx *c, void *dst, const void *src, size_t bytes)
{
    (void)c;
    memcpy(dst, src, bytes);
    return 0;
}

int vkc_download(vkc_ctx *c, void *dst, const void *src, size_t bytes)
{
    (void)c;
    memcpy(dst, src, bytes);
    return 0;
}

void vkc_memset0(vkc_ctx *c, void *dst, size_t bytes)
{
    (void)c;
    memset(dst, 0, bytes);
}

int vkc_sync(vkc_ctx *c)
{
    return c->err[0] ? -1 : 0;
}

const char *vkc_error(const vkc_ctx *c)
{
    return c->err;
}

static float rd_bf16(float v)
{
    return vt_bf16_to_f32(vt_f32_to_bf16(v));
}

static float get(const void *p, int t, size_t i, float scale)
{
    switch (t) {
    case VKC_F16:
        return vt_f16_to_f32(((const uint16_t *)p)[i]);
    case VKC_BF16:
        return vt_bf16_to_f32(((const uint16_t *)p)[i]);
    case VKC_F8E4M3:
        return vt_f8e4m3_to_f32(((const uint8_t *)p)[i]) * scale;
    default:
        return ((const float *)p)[i];
    }
}

void *vkc_weights(vkc_ctx *c, const void *host, int from, size_t n, int to, float scale)
{
    void *d = vkc_alloc(c, n * (to == VKC_BF16 ? 2 : 4));
    for (size_t i = 0; d && i < n; i++) {
        float v;
        size_t es = from == VKC_F32 ? 4 : from == VKC_F8E4M3 ? 1 : 2;
        uint8_t tmp[4];
        memcpy(tmp, (const uint8_t *)host + i * es, es); /* any alignment */
        v = get(tmp, from, 0, scale);
        if (to == VKC_BF16)
            ((uint16_t *)d)[i] = vt_f32_to_bf16(v);
        else
            ((float *)d)[i] = v;
    }
    return d;
}

void vkc_linear(vkc_ctx *c, int bf16, const void *x, int xbf, int64_t m, int64_t k,
                const void *w, int wt, const float *bias, int64_t n, int act, void *y, int ybf)
{
    if (bf16 && wt != VKC_BF16) {
        snprintf(c->err, sizeof(c->err), "vkc_linear: bf16 with fp32 weights");
        return;
    }
    float *row = malloc((size_t)n * sizeof(float));
    float *xr = malloc((size_t)k * sizeof(float));
    for (int64_t i = 0; row && xr && i < m; i++) {
        for (int64_t j = 0; j < k; j++) {
            float v = get(x, xbf ? VKC_BF16 : VKC_F32, (size_t)(i * k + j), 1.0f);
            xr[j] = bf16 ? rd_bf16(v) : v;
        }
        for (int64_t o = 0; o < n; o++) {
            double s = 0;
            for (int64_t j = 0; j < k; j++)
                s += (double)xr[j] * get(w, wt, (size_t)(o * k + j), 1.0f);
            row[o] = (float)s + (bias ? bias[o] : 0.0f);
        }
        vk_ref_act(c->ref, row, n, (vk_act)act);
        for (int64_t o = 0; o < n; o++) {
            if (ybf)
                ((uint16_t *)y)[i * n + o] = vt_f32_to_bf16(row[o]);
            else
                ((float *)y)[i * n + o] = row[o];
        }
    }
    free(row);
    free(xr);
}

void vkc_layernorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                   const float *w, const float *b, float eps)
{
    vk_ref_layernorm(c->ref, x, y, rows, dim, w, b, eps);
}

void vkc_rmsnorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                 float eps)
{
    vk_ref_rmsnorm(c->ref, x, y, rows, dim, w, eps);
}

void vkc_add_gated(vkc_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                   const float *gate)
{
    vk_ref_add_gated(c->ref, x, y, rows, dim, gate);
}

void vkc_act(vkc_ctx *c, float *x, int64_t n, int act)
{
    vk_ref_act(c->ref, x, n, (vk_act)act);
}

void vkc_add(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n)
{
    (void)c;
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void vkc_add_const(vkc_ctx *c, float *y, int64_t n, float v)
{
    (void)c;
    for (int64_t i = 0; i < n; i++)
        y[i] += v;
}

void vkc_rope(vkc_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
              const float *cs)
{
    vk_ref_rope(c->ref, x, n_tok, n_heads, head_dim, ld, cs);
}

/* bf16: the operands rounded to bf16 (the device also rounds the
 * probabilities; the emulation keeps them fp32) */
void vkc_attention(vkc_ctx *c, int bf16, const float *q, int64_t ldq, const float *k, int64_t ldk,
                   const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads, int64_t hd,
                   int64_t lq, int64_t lk, float scale)
{
    if (!bf16) {
        vk_ref_attention(c->ref, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, lk, scale,
                         NULL);
        return;
    }
    int64_t D = heads * hd;
    float *qb = malloc((size_t)(lq * D) * sizeof(float));
    float *kb = malloc((size_t)(lk * D) * sizeof(float));
    float *vb = malloc((size_t)(lk * D) * sizeof(float));
    for (int64_t i = 0; qb && i < lq; i++)
        for (int64_t j = 0; j < D; j++)
            qb[i * D + j] = rd_bf16(q[i * ldq + j]);
    for (int64_t i = 0; kb && vb && i < lk; i++)
        for (int64_t j = 0; j < D; j++) {
            kb[i * D + j] = rd_bf16(k[i * ldk + j]);
            vb[i * D + j] = rd_bf16(v[i * ldv + j]);
        }
    if (qb && kb && vb)
        vk_ref_attention(c->ref, qb, D, kb, D, vb, D, o, ldo, heads, hd, lq, lk, lk, scale, NULL);
    free(qb);
    free(kb);
    free(vb);
}

/* ---- general products and the VAE's frame operations ---- */

/* A copy of the rows x cols matrix at p (row stride ld) rounded to bf16, in
 * the same layout (NULL: out of memory). */
static float *bf16_copy(const float *p, int64_t rows, int64_t cols, int64_t ld)
{
    size_t n = (size_t)((rows - 1) * ld + cols);
    float *d = malloc(n * sizeof(float));
    for (size_t i = 0; d && i < n; i++)
        d[i] = rd_bf16(p[i]);
    return d;
}

void vkc_gemm(vkc_ctx *c, int bf16, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
              int64_t ldc)
{
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                cm[i * ldc + j] = beta == 0.0f ? 0.0f : beta * cm[i * ldc + j];
        return;
    }
    float *ab = NULL, *bb = NULL;
    if (bf16) {
        ab = ta ? bf16_copy(a, k, m, lda) : bf16_copy(a, m, k, lda);
        bb = tb ? bf16_copy(b, n, k, ldb) : bf16_copy(b, k, n, ldb);
        if (!ab || !bb) {
            snprintf(c->err, sizeof(c->err), "vkc_gemm: out of memory");
            free(ab);
            free(bb);
            return;
        }
        a = ab;
        b = bb;
    }
    if (beta == 0.0f) /* never read */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                cm[i * ldc + j] = 0.0f;
    vk_ref_gemm(c->ref, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
    free(ab);
    free(bb);
}

void vkc_softmax(vkc_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld, float scale)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            x[i * ld + j] *= scale;
    vk_ref_softmax(c->ref, x, rows, cols, ld);
}

/* im2col (rounded to bf16 for bf16), then one product on the fast fp32
 * GEMM of a host context (the emulation of a whole VAE stays quick) */
void vkc_conv2d(vkc_ctx *c, int bf16, const float *x, int64_t ci, int64_t h, int64_t w,
                const void *wts, int wt, int64_t co, const vkc_conv_geom *g, const float *bias,
                int acc, float *y)
{
    if ((bf16 && wt != VKC_BF16) || (!bf16 && wt != VKC_F32)) {
        snprintf(c->err, sizeof(c->err), "vkc_conv2d: weights of the wrong type");
        return;
    }
    int64_t ho = (h + g->ph0 + g->ph1 - g->kh) / g->sh + 1;
    int64_t wo = (w + g->pw0 + g->pw1 - g->kw) / g->sw + 1;
    int64_t K = ci * g->kh * g->kw, P = ho * wo;
    float *col = malloc((size_t)(K * P) * sizeof(float));
    float *wf = malloc((size_t)(co * K) * sizeof(float));
    if (!col || !wf) {
        snprintf(c->err, sizeof(c->err), "vkc_conv2d: out of memory");
        free(col);
        free(wf);
        return;
    }
    for (int64_t i = 0; i < co * K; i++)
        wf[i] = get(wts, wt, (size_t)i, 1.0f);
    for (int64_t i = 0; i < ci; i++)
        for (int a = 0; a < g->kh; a++)
            for (int b = 0; b < g->kw; b++) {
                float *cr = col + ((i * g->kh + a) * g->kw + b) * P;
                for (int64_t r = 0; r < ho; r++)
                    for (int64_t q = 0; q < wo; q++) {
                        int64_t yy = r * g->sh + a - g->ph0, xx = q * g->sw + b - g->pw0;
                        float v = yy < 0 || yy >= h || xx < 0 || xx >= w ? 0.0f
                                                                         : x[(i * h + yy) * w + xx];
                        cr[r * wo + q] = bf16 ? rd_bf16(v) : v;
                    }
            }
    if (!acc)
        memset(y, 0, (size_t)(co * P) * sizeof(float));
    c->fast->f->gemm(c->fast, 0, 0, co, P, K, 1.0f, wf, K, col, P, 1.0f, y, P);
    for (int64_t o = 0; bias && o < co; o++)
        for (int64_t p = 0; p < P; p++)
            y[o * P + p] += bias[o];
    free(col);
    free(wf);
}

void vkc_chnorm(vkc_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                int silu)
{
    vk_ref_chnorm(c->ref, x, y, ch, s, gamma, NULL);
    if (silu)
        vk_ref_act(c->ref, y, ch * s, VK_ACT_SILU);
}

void vkc_add_scaled(vkc_ctx *c, float *y, const float *a, const float *b, float s, int64_t n)
{
    (void)c;
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + s * b[i];
}

void vkc_copy_nd(vkc_ctx *c, float *dst, const int64_t *dstride, const float *src,
                 const int64_t *sstride, const int64_t *dims, int nd)
{
    if (nd < 1 || nd > 6) {
        snprintf(c->err, sizeof(c->err), "vkc_copy_nd: %d dimensions", nd);
        return;
    }
    int64_t total = 1;
    for (int d = 0; d < nd; d++)
        total *= dims[d];
    for (int64_t e = 0; e < total; e++) {
        int64_t rest = e, di = 0, si = 0;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t i = rest % dims[d];
            rest /= dims[d];
            di += i * dstride[d];
            si += i * sstride[d];
        }
        dst[di] = src[si];
    }
}

void vkc_avg_share(vkc_ctx *c, const float *x, int64_t ci, int64_t h, int64_t w, int ft, int fs,
                   int grp, int64_t sco, int dt, int first, float *sc)
{
    (void)c, (void)ci;
    int64_t ff = (int64_t)fs * fs, F = ft * ff, ho = h / fs, wo = w / fs;
    for (int64_t o = 0; o < sco; o++)
        for (int64_t a = 0; a < ho; a++)
            for (int64_t b = 0; b < wo; b++) {
                float *d = &sc[(o * ho + a) * wo + b];
                int any = !first;
                float v = first ? 0.0f : *d;
                for (int64_t j = 0; j < grp; j++) {
                    int64_t k = o * grp + j, ch = k / F, rm = k % F;
                    if (rm / ff != dt)
                        continue;
                    v += x[(ch * h + a * fs + (rm / fs) % fs) * w + b * fs + rm % fs];
                    any = 1;
                }
                *d = any ? v : 0.0f;
            }
}

void vkc_dup_add(vkc_ctx *c, const float *xin, int64_t h, int64_t w, int64_t co, int ft, int fs,
                 int rep, int dt, const float *x, float *y)
{
    (void)c;
    int64_t Wo = w * fs, So = h * w * fs * fs;
    for (int64_t o = 0; o < co; o++)
        for (int64_t dh = 0; dh < fs; dh++)
            for (int64_t dw = 0; dw < fs; dw++) {
                const float *src = xin + (((o * ft + dt) * fs + dh) * fs + dw) / rep * h * w;
                for (int64_t a = 0; a < h; a++)
                    for (int64_t b = 0; b < w; b++) {
                        int64_t i = o * So + (a * fs + dh) * Wo + b * fs + dw;
                        y[i] = x[i] + src[a * w + b];
                    }
            }
}

void vkc_mul(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n)
{
    (void)c;
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}
