/* The CUDA backend's kernels (kernels/cuda/vkc.h) against the CPU reference
 * kernels (kernels/ref.c), on odd shapes, fp32 (the conformance bound) and
 * bf16 (operands rounded to bf16 on the reference side too, so only the
 * summation order differs). Exits 77 (skipped) where the build has no CUDA
 * backend or no device answers: counted as skipped, not passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/impl.h"
#include "t.h"
#if VK_HAVE_CUDA
#include "kernels/cuda/vkc.h"
#endif

#define SKIP 77

#if VK_HAVE_CUDA
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float unif(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; p && i < n; i++)
        p[i] = unif() * scale;
    return p;
}

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = vt_bf16_to_f32(vt_f32_to_bf16(x[i]));
}

/* max |a - b| / max |b| */
static double nerr(const float *a, const float *b, size_t n)
{
    double rel;
    t_maxabs(a, b, n, &rel);
    return rel;
}

static void check(const char *name, double e, double tol)
{
    printf("%-56s err %.2e (tol %.0e) %s\n", name, e, tol, e <= tol ? "OK" : "FAIL");
    T_CHECK(e <= tol, "%s: %.2e > %.0e", name, e, tol);
}

static float *up(vkc_ctx *vc, const float *h, size_t n)
{
    float *d = vkc_alloc(vc, n * sizeof(float));
    if (d)
        vkc_upload(vc, d, h, n * sizeof(float));
    return d;
}

static float *down(vkc_ctx *vc, const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    if (h && vkc_download(vc, h, d, n * sizeof(float))) {
        free(h);
        return NULL;
    }
    return h;
}

static void t_linear(vkc_ctx *vc, vk_ctx *ref, int64_t m, int64_t k, int64_t n, int bf, int act,
                     int bias)
{
    char name[96];
    snprintf(name, sizeof(name), "linear %lldx%lldx%lld %s act %d%s", (long long)m, (long long)k,
             (long long)n, bf ? "bf16" : "fp32", act, bias ? " bias" : "");
    float *x = rnd((size_t)(m * k), 2.0f), *w = rnd((size_t)(n * k), 1.0f / sqrtf((float)k));
    float *b = rnd((size_t)n, 1.0f), *y0 = malloc((size_t)(m * n) * sizeof(float));
    if (bf) {
        round_bf16(x, (size_t)(m * k));
        round_bf16(w, (size_t)(n * k));
    }
    vk_linear l = { 0 };
    vt_tensor wt = { .dtype = VT_F32, .ndim = 2, .shape = { n, k }, .data = w };
    vt_tensor bt = { .dtype = VT_F32, .ndim = 1, .shape = { n }, .data = b };
    vk_linear_init(&l, &wt, bias ? &bt : NULL);
    vk_ref_linear(ref, &l, x, m, y0, (vk_act)act);
    float *xd = up(vc, x, (size_t)(m * k)), *bd = bias ? up(vc, b, (size_t)n) : NULL;
    void *wd = vkc_weights(vc, w, VKC_F32, (size_t)(n * k), bf ? VKC_BF16 : VKC_F32, 1.0f);
    float *yd = vkc_alloc(vc, (size_t)(m * n) * sizeof(float));
    vkc_linear(vc, bf, xd, 0, m, k, wd, bf ? VKC_BF16 : VKC_F32, bd, n, act, yd, 0);
    float *y1 = down(vc, yd, (size_t)(m * n));
    check(name, y1 ? nerr(y1, y0, (size_t)(m * n)) : INFINITY, bf ? 2e-5 : 2e-5);
    vkc_free(vc, xd);
    vkc_free(vc, bd);
    vkc_free(vc, wd);
    vkc_free(vc, yd);
    vk_linear_free(&l);
    free(x), free(w), free(b), free(y0), free(y1);
}

static void t_norms(vkc_ctx *vc, vk_ctx *ref, int64_t rows, int64_t dim)
{
    char name[96];
    size_t n = (size_t)(rows * dim);
    float *x = rnd(n, 3.0f), *w = rnd((size_t)dim, 1.0f), *b = rnd((size_t)dim, 1.0f);
    float *y0 = malloc(n * sizeof(float));
    float *xd = up(vc, x, n), *wd = up(vc, w, (size_t)dim), *bd = up(vc, b, (size_t)dim);
    float *yd = vkc_alloc(vc, n * sizeof(float));
    vk_ref_layernorm(ref, x, y0, rows, dim, w, b, 1e-6f);
    vkc_layernorm(vc, xd, yd, rows, dim, wd, bd, 1e-6f);
    float *y1 = down(vc, yd, n);
    snprintf(name, sizeof(name), "layernorm %lldx%lld", (long long)rows, (long long)dim);
    check(name, y1 ? nerr(y1, y0, n) : INFINITY, 1e-5);
    free(y1);
    vk_ref_rmsnorm(ref, x, y0, rows, dim, w, 1e-6f);
    vkc_rmsnorm(vc, xd, xd, rows, dim, wd, 1e-6f); /* in place */
    y1 = down(vc, xd, n);
    snprintf(name, sizeof(name), "rmsnorm %lldx%lld in place", (long long)rows, (long long)dim);
    check(name, y1 ? nerr(y1, y0, n) : INFINITY, 1e-5);
    free(y1);
    /* x += y * gate, and the activations */
    float *g = rnd((size_t)dim, 1.0f);
    float *gd = up(vc, g, (size_t)dim);
    memcpy(y0, x, n * sizeof(float));
    vk_ref_add_gated(ref, y0, b, 1, dim, g); /* first row: y = b */
    vk_ref_add_gated(ref, y0, x, rows, dim, g);
    vkc_upload(vc, xd, x, n * sizeof(float));
    vkc_add_gated(vc, xd, bd, 1, dim, gd);
    vkc_upload(vc, yd, x, n * sizeof(float));
    vkc_add_gated(vc, xd, yd, rows, dim, gd);
    y1 = down(vc, xd, n);
    snprintf(name, sizeof(name), "add_gated %lldx%lld", (long long)rows, (long long)dim);
    check(name, y1 ? nerr(y1, y0, n) : INFINITY, 1e-6);
    free(y1);
    for (int a = 1; a < VK_ACT_COUNT; a++) {
        memcpy(y0, x, n * sizeof(float));
        vk_ref_act(ref, y0, (int64_t)n, (vk_act)a);
        vkc_upload(vc, xd, x, n * sizeof(float));
        vkc_act(vc, xd, (int64_t)n, a);
        y1 = down(vc, xd, n);
        snprintf(name, sizeof(name), "act %d on %zu values", a, n);
        check(name, y1 ? nerr(y1, y0, n) : INFINITY, 1e-6);
        free(y1);
    }
    vkc_free(vc, xd), vkc_free(vc, wd), vkc_free(vc, bd), vkc_free(vc, yd), vkc_free(vc, gd);
    free(x), free(w), free(b), free(y0), free(g);
}

static void t_rope_attention(vkc_ctx *vc, vk_ctx *ref, int64_t f, int64_t h, int64_t w,
                             int64_t heads, int64_t hd, int64_t lk_extra, int bf)
{
    char name[128];
    int64_t lq = f * h * w, lk = lq + lk_extra, D = heads * hd;
    float *cs = vk_rope3d_table(f, h, w, hd, 10000.0, 0, 0, 0);
    float *q = rnd((size_t)(lq * D), 1.0f), *k = rnd((size_t)(lk * D), 1.0f);
    float *v = rnd((size_t)(lk * D), 1.0f), *o0 = malloc((size_t)(lq * D) * sizeof(float));
    float *qd = up(vc, q, (size_t)(lq * D)), *csd = up(vc, cs, (size_t)(lq * hd));
    vk_ref_rope(ref, q, lq, heads, hd, D, cs);
    vkc_rope(vc, qd, lq, heads, hd, D, csd);
    float *q1 = down(vc, qd, (size_t)(lq * D));
    snprintf(name, sizeof(name), "rope %lldx%lldx%lld, %lld x %lld", (long long)f, (long long)h,
             (long long)w, (long long)heads, (long long)hd);
    check(name, q1 ? nerr(q1, q, (size_t)(lq * D)) : INFINITY, 1e-6);
    if (bf) {
        round_bf16(q, (size_t)(lq * D));
        round_bf16(k, (size_t)(lk * D));
        round_bf16(v, (size_t)(lk * D));
        vkc_upload(vc, qd, q, (size_t)(lq * D) * sizeof(float));
    }
    float *kd = up(vc, k, (size_t)(lk * D)), *vd = up(vc, v, (size_t)(lk * D));
    float *od = vkc_alloc(vc, (size_t)(lq * D) * sizeof(float));
    float scale = 1.0f / sqrtf((float)hd);
    vk_ref_attention(ref, q, D, k, D, v, D, o0, D, heads, hd, lq, lk, lk, scale, NULL);
    vkc_attention(vc, bf, qd, D, kd, D, vd, D, od, D, heads, hd, lq, lk, scale);
    float *o1 = down(vc, od, (size_t)(lq * D));
    snprintf(name, sizeof(name), "attention %s %lld x %lld, lq %lld lk %lld",
             bf ? "bf16" : "fp32", (long long)heads, (long long)hd, (long long)lq, (long long)lk);
    /* bf16: the probabilities are rounded to bf16 before the PV product */
    check(name, o1 ? nerr(o1, o0, (size_t)(lq * D)) : INFINITY, bf ? 1e-2 : 1e-5);
    vkc_free(vc, qd), vkc_free(vc, kd), vkc_free(vc, vd), vkc_free(vc, od), vkc_free(vc, csd);
    free(cs), free(q), free(k), free(v), free(o0), free(q1), free(o1);
}

/* ---- general products and the VAE's frame operations ---- */

/* C = alpha op(A) op(B) + beta C with leading dimensions larger than needed;
 * beta 0: the used part of C starts as NaN (must not be read), the padding
 * must stay as it was. bf: the reference multiplies the bf16-rounded
 * operands; the device is given the unrounded ones. */
static void t_gemm(vkc_ctx *vc, vk_ctx *ref, int bf, int ta, int tb, int64_t m, int64_t n,
                   int64_t k, float alpha, float beta)
{
    char name[128];
    snprintf(name, sizeof(name), "gemm %s%s %lldx%lldx%lld %s alpha %.2g beta %.2g",
             ta ? "T" : "N", tb ? "T" : "N", (long long)m, (long long)n, (long long)k,
             bf ? "bf16" : "fp32", alpha, beta);
    const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const int64_t lda = ac + 3, ldb = bc + 5, ldc = n + 2;
    const size_t na = (size_t)(ar * lda), nb = (size_t)(br * ldb), nc = (size_t)(m * ldc);
    float *a = rnd(na, 1.0f), *b = rnd(nb, 1.0f), *c0 = rnd(nc, 1.0f);
    float *ra = malloc(na * sizeof(float) + 1), *rb = malloc(nb * sizeof(float) + 1);
    memcpy(ra, a, na * sizeof(float));
    memcpy(rb, b, nb * sizeof(float));
    if (bf) {
        round_bf16(ra, na);
        round_bf16(rb, nb);
    }
    if (beta == 0.0f)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c0[i * ldc + j] = NAN;
    float *ad = up(vc, a, na), *bd = up(vc, b, nb), *cd = up(vc, c0, nc);
    vk_ref_gemm(ref, ta, tb, m, n, k, alpha, ra, lda, rb, ldb, beta, c0, ldc);
    vkc_gemm(vc, bf, ta, tb, m, n, k, alpha, ad, lda, bd, ldb, beta, cd, ldc);
    float *c1 = down(vc, cd, nc);
    check(name, c1 ? nerr(c1, c0, nc) : INFINITY, 2e-5);
    vkc_free(vc, ad), vkc_free(vc, bd), vkc_free(vc, cd);
    free(a), free(b), free(c0), free(ra), free(rb), free(c1);
}

/* softmax(scale x) of rows with a stride larger than the row; the padding
 * stays as it was */
static void t_softmax(vkc_ctx *vc, vk_ctx *ref, int64_t rows, int64_t cols, int64_t ld,
                      float scale)
{
    char name[96];
    snprintf(name, sizeof(name), "softmax %lldx%lld (ld %lld) scale %.2g", (long long)rows,
             (long long)cols, (long long)ld, scale);
    const size_t n = (size_t)(rows * ld);
    float *x = rnd(n, 4.0f), *x0 = malloc(n * sizeof(float));
    memcpy(x0, x, n * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            x0[r * ld + j] *= scale;
    vk_ref_softmax(ref, x0, rows, cols, ld);
    float *xd = up(vc, x, n);
    vkc_softmax(vc, xd, rows, cols, ld, scale);
    float *x1 = down(vc, xd, n);
    check(name, x1 ? nerr(x1, x0, n) : INFINITY, 1e-5);
    vkc_free(vc, xd);
    free(x), free(x0), free(x1);
}

/* y[co, ho, wo] (+)= conv2d(x[ci, h, w], W[co, ci, kh, kw]) (+ bias), the
 * reference loop of vk_ref_conv_tap in double */
static void conv_ref(const float *x, int ci, int h, int w, const float *wt, int co,
                     const vkc_conv_geom *g, const float *bias, int acc, float *y)
{
    int ho = (h + g->ph0 + g->ph1 - g->kh) / g->sh + 1;
    int wo = (w + g->pw0 + g->pw1 - g->kw) / g->sw + 1;
    for (int o = 0; o < co; o++)
        for (int yy = 0; yy < ho; yy++)
            for (int xx = 0; xx < wo; xx++) {
                double s = bias ? bias[o] : 0.0;
                for (int i = 0; i < ci; i++)
                    for (int b = 0; b < g->kh; b++) {
                        int iy = yy * g->sh - g->ph0 + b;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int e = 0; e < g->kw; e++) {
                            int ix = xx * g->sw - g->pw0 + e;
                            if (ix < 0 || ix >= w)
                                continue;
                            s += (double)x[((size_t)i * h + iy) * w + ix] *
                                 wt[(((size_t)o * ci + i) * g->kh + b) * g->kw + e];
                        }
                    }
                float *p = &y[((size_t)o * ho + yy) * wo + xx];
                *p = acc ? *p + (float)s : (float)s;
            }
}

/* acc 0: y starts as NaN (it must not be read) */
static void t_conv(vkc_ctx *vc, const char *tag, int bf, int ci, int h, int w, int co,
                   vkc_conv_geom g, int bias, int acc)
{
    char name[160];
    snprintf(name, sizeof(name), "conv2d%s %s %dx%dx%d -> %d, k %dx%d s %dx%d p %d,%d,%d,%d%s%s",
             tag, bf ? "bf16" : "fp32", ci, h, w, co, g.kh, g.kw, g.sh, g.sw, g.ph0, g.ph1, g.pw0,
             g.pw1, bias ? " bias" : "", acc ? " acc" : "");
    const int ho = (h + g.ph0 + g.ph1 - g.kh) / g.sh + 1;
    const int wo = (w + g.pw0 + g.pw1 - g.kw) / g.sw + 1;
    const size_t nx = (size_t)ci * h * w, nw = (size_t)co * ci * g.kh * g.kw;
    const size_t ny = (size_t)co * ho * wo;
    float *x = rnd(nx, 1.0f), *wt = rnd(nw, 1.0f / sqrtf((float)(ci * g.kh * g.kw)));
    float *b = rnd((size_t)co, 1.0f), *y0 = rnd(ny, 1.0f);
    float *rx = malloc(nx * sizeof(float) + 1);
    memcpy(rx, x, nx * sizeof(float));
    if (bf) {
        round_bf16(rx, nx);
        round_bf16(wt, nw);
    }
    if (!acc)
        for (size_t i = 0; i < ny; i++)
            y0[i] = NAN;
    float *xd = up(vc, x, nx), *bd = bias ? up(vc, b, (size_t)co) : NULL, *yd = up(vc, y0, ny);
    void *wd = vkc_weights(vc, wt, VKC_F32, nw, bf ? VKC_BF16 : VKC_F32, 1.0f);
    conv_ref(rx, ci, h, w, wt, co, &g, bias ? b : NULL, acc, y0);
    vkc_conv2d(vc, bf, xd, ci, h, w, wd, bf ? VKC_BF16 : VKC_F32, co, &g, bd, acc, yd);
    float *y1 = down(vc, yd, ny);
    check(name, y1 ? nerr(y1, y0, ny) : INFINITY, 2e-5);
    vkc_free(vc, xd), vkc_free(vc, bd), vkc_free(vc, yd), vkc_free(vc, wd);
    free(x), free(wt), free(b), free(y0), free(rx), free(y1);
}

static void t_convs(vkc_ctx *vc, int bf)
{
    static const vkc_conv_geom gs[] = {
        { 3, 3, 1, 1, 1, 1, 1, 1 }, /* 3x3, pad 1 */
        { 1, 1, 1, 1, 0, 0, 0, 0 }, /* 1x1 */
        { 3, 3, 2, 2, 0, 1, 0, 1 }, /* the downsampler: stride 2, pad bottom/right */
        { 2, 2, 1, 1, 1, 0, 0, 1 }, /* asymmetric padding */
        { 3, 1, 1, 2, 2, 0, 0, 0 }, /* 3x1, causal-like top padding, width stride 2 */
    };
    for (size_t i = 0; i < sizeof(gs) / sizeof(gs[0]); i++)
        for (int v = 0; v < 4; v++)
            t_conv(vc, "", bf, 7, 9, 13, 5, gs[i], v & 1, v >> 1);
    t_conv(vc, "", bf, 32, 20, 24, 19, gs[0], 1, 0);
    t_conv(vc, "", bf, 3, 1, 1, 4, gs[0], 1, 1); /* a 1x1 frame: padding only */
}

static void t_chnorm(vkc_ctx *vc, vk_ctx *ref, int64_t ch, int64_t s, int silu, int inplace)
{
    char name[96];
    snprintf(name, sizeof(name), "chnorm %lldx%lld%s%s", (long long)ch, (long long)s,
             silu ? " silu" : "", inplace ? " in place" : "");
    const size_t n = (size_t)(ch * s);
    float *x = rnd(n, 2.0f), *g = rnd((size_t)ch, 1.0f), *y0 = malloc(n * sizeof(float));
    for (int64_t c = 0; c < ch; c++)
        x[c * s] = 0.0f; /* pixel 0 all zero: the 1e-12 floor */
    vk_ref_chnorm(ref, x, y0, ch, s, g, NULL);
    if (silu)
        vk_ref_act(ref, y0, (int64_t)n, VK_ACT_SILU);
    float *xd = up(vc, x, n), *gd = up(vc, g, (size_t)ch);
    float *yd = inplace ? xd : vkc_alloc(vc, n * sizeof(float));
    vkc_chnorm(vc, xd, yd, ch, s, gd, silu);
    float *y1 = down(vc, yd, n);
    check(name, y1 ? nerr(y1, y0, n) : INFINITY, 1e-5);
    if (!inplace)
        vkc_free(vc, yd);
    vkc_free(vc, xd), vkc_free(vc, gd);
    free(x), free(g), free(y0), free(y1);
}

/* y = a + s b, also at addresses that are not 16-byte aligned */
/* y = a + s b (add_scaled) or y = a b (mul, the text encoder's gated
 * feed-forward), in place (y = a), vectorised and not (an offset of one
 * value); the values before the offset untouched */
static void t_elementwise(vkc_ctx *vc, int mul, int64_t n, int off)
{
    char name[96];
    snprintf(name, sizeof(name), "%s %lld values, offset %d", mul ? "mul" : "add_scaled",
             (long long)n, off);
    const size_t tot = (size_t)(n + off);
    float *a = rnd(tot, 1.0f), *b = rnd(tot, 1.0f), *y0 = malloc(tot * sizeof(float));
    for (size_t i = 0; i < tot; i++)
        y0[i] = i < (size_t)off ? a[i] : mul ? a[i] * b[i] : a[i] + -0.75f * b[i];
    float *ad = up(vc, a, tot), *bd = up(vc, b, tot);
    if (mul)
        vkc_mul(vc, ad + off, ad + off, bd + off, n);
    else
        vkc_add_scaled(vc, ad + off, ad + off, bd + off, -0.75f, n);
    float *y1 = down(vc, ad, tot);
    check(name, y1 ? nerr(y1, y0, tot) : INFINITY, mul ? 0 : 1e-6);
    vkc_free(vc, ad), vkc_free(vc, bd);
    free(a), free(b), free(y0), free(y1);
}

/* patchify as vae.c's (channel (c p + r) p + q of pixel (p a + q, p b + r)),
 * a 6D permutation into a padded destination, and a 1D copy */
static void t_copy_nd(vkc_ctx *vc)
{
    const int64_t C = 3, p = 2, hh = 5, ww = 7, H = hh * p, W = ww * p;
    const size_t n = (size_t)(C * H * W);
    float *x = rnd(n, 1.0f), *y0 = malloc(n * sizeof(float));
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < p; r++)
            for (int64_t q = 0; q < p; q++)
                for (int64_t a = 0; a < hh; a++)
                    for (int64_t b = 0; b < ww; b++)
                        y0[((c * p + r) * p + q) * hh * ww + a * ww + b] =
                            x[(c * H + a * p + q) * W + b * p + r];
    float *xd = up(vc, x, n), *yd = vkc_alloc(vc, n * sizeof(float));
    const int64_t dims[5] = { C, p, p, hh, ww };
    const int64_t ds[5] = { p * p * hh * ww, p * hh * ww, hh * ww, ww, 1 };
    const int64_t ss[5] = { H * W, 1, W, p * W, p };
    vkc_copy_nd(vc, yd, ds, xd, ss, dims, 5);
    float *y1 = down(vc, yd, n);
    check("copy_nd patchify 3x10x14, p 2", y1 ? nerr(y1, y0, n) : INFINITY, 0.0);
    free(y1);
    vkc_free(vc, yd);

    /* a negative source stride: the text encoder's Toeplitz position bias,
     * bias[h, i, j] = r[h, j - i + n - 1] from r [H, 2n - 1] */
    {
        const int64_t nh = 3, nt = 7, nr = 2 * nt - 1;
        float *r = rnd((size_t)(nh * nr), 1.0f), *b0 = malloc((size_t)(nh * nt * nt) * 4);
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < nt; i++)
                for (int64_t j = 0; j < nt; j++)
                    b0[(h * nt + i) * nt + j] = r[h * nr + j - i + nt - 1];
        float *rd = up(vc, r, (size_t)(nh * nr));
        float *bd = vkc_alloc(vc, (size_t)(nh * nt * nt) * sizeof(float));
        const int64_t tdims[3] = { nh, nt, nt }, tds[3] = { nt * nt, nt, 1 },
                      tss[3] = { nr, -1, 1 };
        vkc_copy_nd(vc, bd, tds, rd + (nt - 1), tss, tdims, 3);
        float *b1 = down(vc, bd, (size_t)(nh * nt * nt));
        check("copy_nd Toeplitz 3x7x7, a negative source stride",
              b1 ? nerr(b1, b0, (size_t)(nh * nt * nt)) : INFINITY, 0.0);
        vkc_free(vc, rd), vkc_free(vc, bd);
        free(r), free(b0), free(b1);
    }

    /* 6D: src contiguous [2][3][1][4][3][5], dst the reversed order of dims
     * with one padding value per innermost run */
    const int64_t d6[6] = { 2, 3, 1, 4, 3, 5 };
    int64_t s6[6], t6[6], st = 1, dt = 1;
    for (int d = 5; d >= 0; d--)
        s6[d] = st, st *= d6[d];
    for (int d = 0; d < 6; d++) { /* dst [5][3][4][1][3][2 + 1] */
        t6[d] = dt;
        dt *= d == 0 ? d6[d] + 1 : d6[d];
    }
    const size_t n6 = (size_t)dt;
    float *z0 = malloc(n6 * sizeof(float));
    for (size_t i = 0; i < n6; i++)
        z0[i] = -1.0f;
    float *zd = up(vc, z0, n6); /* the padding stays -1 */
    int64_t i6[6];
    for (i6[0] = 0; i6[0] < d6[0]; i6[0]++)
        for (i6[1] = 0; i6[1] < d6[1]; i6[1]++)
            for (i6[2] = 0; i6[2] < d6[2]; i6[2]++)
                for (i6[3] = 0; i6[3] < d6[3]; i6[3]++)
                    for (i6[4] = 0; i6[4] < d6[4]; i6[4]++)
                        for (i6[5] = 0; i6[5] < d6[5]; i6[5]++) {
                            int64_t so = 0, to = 0;
                            for (int d = 0; d < 6; d++)
                                so += i6[d] * s6[d], to += i6[d] * t6[d];
                            z0[to] = x[so];
                        }
    vkc_copy_nd(vc, zd, t6, xd, s6, d6, 6);
    float *z1 = down(vc, zd, n6);
    check("copy_nd 6D permutation, padded destination", z1 ? nerr(z1, z0, n6) : INFINITY, 0.0);
    free(z1);

    /* 1D: a plain copy of 401 of the 420 values, from offset 3 */
    const int64_t d1[1] = { 401 }, s1[1] = { 1 };
    float *wd = vkc_alloc(vc, 401 * sizeof(float));
    vkc_copy_nd(vc, wd, s1, xd + 3, s1, d1, 1);
    float *w1 = down(vc, wd, 401);
    check("copy_nd 1D, 401 values", w1 ? nerr(w1, x + 3, 401) : INFINITY, 0.0);
    vkc_free(vc, xd), vkc_free(vc, zd), vkc_free(vc, wd);
    free(x), free(y0), free(z0), free(w1);
}

/* vae.c's avg_share with its node's fields as arguments */
static void avg_share_ref(const float *x, int h, int w, int ft, int fs, int grp, int sco, int dt,
                          int first, float *sc)
{
    int ff = fs * fs, F = ft * ff, ho = h / fs, wo = w / fs;
    size_t so = (size_t)ho * wo;
    for (int o = 0; o < sco; o++) {
        float *d = sc + (size_t)o * so;
        int acc = !first;
        for (int j = 0; j < grp; j++) {
            int k = o * grp + j, c = k / F, rm = k % F;
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

/* A group of ft frames: the first opens it (first = 1, sc starts as NaN),
 * the others add; checked after every frame. */
static void t_avg_share(vkc_ctx *vc, int ci, int h, int w, int ft, int fs, int grp, int sco)
{
    const size_t nx = (size_t)ci * h * w, ns = (size_t)sco * (h / fs) * (w / fs);
    float *x = malloc(nx * sizeof(float)), *s0 = malloc(ns * sizeof(float));
    for (size_t i = 0; i < ns; i++)
        s0[i] = NAN;
    float *xd = vkc_alloc(vc, nx * sizeof(float)), *sd = up(vc, s0, ns);
    for (int dt = 0; dt < ft; dt++) {
        char name[128];
        snprintf(name, sizeof(name), "avg_share %dx%dx%d ft %d fs %d grp %d -> %d, dt %d", ci, h,
                 w, ft, fs, grp, sco, dt);
        for (size_t i = 0; i < nx; i++)
            x[i] = unif();
        vkc_upload(vc, xd, x, nx * sizeof(float));
        avg_share_ref(x, h, w, ft, fs, grp, sco, dt, dt == 0, s0);
        vkc_avg_share(vc, xd, ci, h, w, ft, fs, grp, sco, dt, dt == 0, sd);
        float *s1 = down(vc, sd, ns);
        check(name, s1 ? nerr(s1, s0, ns) : INFINITY, 0.0);
        free(s1);
    }
    vkc_free(vc, xd), vkc_free(vc, sd);
    free(x), free(s0);
}

/* vae.c's dup_add with its node's fields as arguments (fs <= 8) */
static void dup_add_ref(const float *xin, int h, int w, int co, int ft, int fs, int rep, int dt,
                        const float *x, float *y)
{
    int wo = w * fs;
    size_t S = (size_t)h * w, So = S * fs * fs;
    const float *src[8];
    for (int o = 0; o < co; o++)
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

static void t_dup_add(vkc_ctx *vc, int h, int w, int co, int ft, int fs, int rep, int inplace)
{
    const int ci = co * ft * fs * fs / rep;
    const size_t nin = (size_t)ci * h * w, ny = (size_t)co * h * fs * w * fs;
    float *xin = rnd(nin, 1.0f), *x = rnd(ny, 1.0f), *y0 = malloc(ny * sizeof(float));
    float *ind = up(vc, xin, nin), *xd = up(vc, x, ny);
    float *yd = inplace ? xd : vkc_alloc(vc, ny * sizeof(float));
    for (int dt = 0; dt < ft; dt++) {
        char name[128];
        snprintf(name, sizeof(name), "dup_add %dx%dx%d -> %d ft %d fs %d rep %d, dt %d%s", ci, h,
                 w, co, ft, fs, rep, dt, inplace ? " in place" : "");
        vkc_upload(vc, xd, x, ny * sizeof(float));
        dup_add_ref(xin, h, w, co, ft, fs, rep, dt, x, y0);
        vkc_dup_add(vc, ind, h, w, co, ft, fs, rep, dt, xd, yd);
        float *y1 = down(vc, yd, ny);
        check(name, y1 ? nerr(y1, y0, ny) : INFINITY, 0.0);
        free(y1);
    }
    if (!inplace)
        vkc_free(vc, yd);
    vkc_free(vc, ind), vkc_free(vc, xd);
    free(xin), free(x), free(y0);
}

static void t_frame_ops(vkc_ctx *vc, vk_ctx *ref)
{
    for (int bf = 0; bf < 2; bf++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                t_gemm(vc, ref, bf, ta, tb, 37, 29, 53, 0.75f, 0.0f);
                t_gemm(vc, ref, bf, ta, tb, 37, 29, 53, -1.25f, 0.5f);
                t_gemm(vc, ref, bf, ta, tb, 1, 1, 1, 1.0f, 0.5f);
                t_gemm(vc, ref, bf, ta, tb, 300, 130, 257, 1.0f, 0.0f);
            }
    t_gemm(vc, ref, 0, 0, 0, 5, 7, 0, 1.0f, 0.5f); /* k = 0: C = beta C */
    t_gemm(vc, ref, 1, 1, 0, 5, 7, 0, 1.0f, 0.0f); /* k = 0, beta 0: zeros */
    t_softmax(vc, ref, 37, 1000, 1003, 0.7f);
    t_softmax(vc, ref, 5, 3, 3, -2.0f);
    t_softmax(vc, ref, 2, 6240, 6240, 0.125f);
    for (int bf = 0; bf < 2; bf++)
        t_convs(vc, bf);
    for (int silu = 0; silu < 2; silu++) {
        t_chnorm(vc, ref, 37, 1001, silu, 0);
        t_chnorm(vc, ref, 96, 4000, silu, 1);
    }
    for (int mul = 0; mul < 2; mul++) {
        t_elementwise(vc, mul, 1001, 0);
        t_elementwise(vc, mul, 1001, 1);
    }
    t_copy_nd(vc);
    t_avg_share(vc, 6, 11, 14, 2, 2, 4, 12);
    t_avg_share(vc, 5, 9, 7, 1, 2, 2, 10);
    t_avg_share(vc, 4, 6, 5, 2, 1, 2, 4);
    t_dup_add(vc, 5, 7, 6, 2, 2, 4, 0);
    t_dup_add(vc, 4, 3, 5, 2, 1, 2, 1);
    t_dup_add(vc, 3, 5, 3, 1, 2, 1, 1);
}

/* A context whose im2col chunks are small (VDIT_CUDA_COL_BYTES), so the
 * convolutions run in several chunks; then the argument checks, whose
 * errors are sticky (hence a context of their own). */
static void t_conv_chunks(void)
{
    char why[256];
    vkc_ctx *vc = NULL;
    setenv("VDIT_CUDA_COL_BYTES", "20000", 1);
    int r = vkc_ctx_new(0, &vc, why, sizeof(why));
    unsetenv("VDIT_CUDA_COL_BYTES");
    T_CHECK(r == 0, "second context: %s", why);
    if (r)
        return;
    static const vkc_conv_geom g3 = { 3, 3, 1, 1, 1, 1, 1, 1 }, gd = { 3, 3, 2, 2, 0, 1, 0, 1 };
    for (int bf = 0; bf < 2; bf++) {
        t_conv(vc, " chunked", bf, 7, 31, 37, 5, g3, 1, 0);
        t_conv(vc, " chunked", bf, 7, 31, 37, 5, g3, 0, 1);
        t_conv(vc, " chunked", bf, 9, 40, 27, 6, gd, 1, 1);
    }
    T_CHECK(vkc_sync(vc) == 0, "chunked convolutions: %s", vkc_error(vc));
    /* fp32 arithmetic with bf16 weights is refused, by name */
    vkc_conv2d(vc, 0, NULL, 1, 1, 1, NULL, VKC_BF16, 1, &g3, NULL, 0, NULL);
    T_CHECK(vkc_sync(vc) != 0 && strstr(vkc_error(vc), "vkc_conv2d"), "conv2d error: %s",
            vkc_error(vc));
    vkc_ctx_free(&vc);
    if (vkc_ctx_new(0, &vc, why, sizeof(why)) == 0) {
        const int64_t d[7] = { 1, 1, 1, 1, 1, 1, 1 };
        vkc_copy_nd(vc, NULL, d, NULL, d, d, 7);
        T_CHECK(vkc_sync(vc) != 0 && strstr(vkc_error(vc), "vkc_copy_nd"), "copy_nd error: %s",
                vkc_error(vc));
        vkc_ctx_free(&vc);
    }
}
#endif

int main(void)
{
#if !VK_HAVE_CUDA
    printf("SKIP: this build has no CUDA backend\n");
    return SKIP;
#else
    char why[256] = "";
    int n = vkc_device_count(why, sizeof(why));
    if (n <= 0) {
        printf("SKIP: no CUDA device (%s)\n", n < 0 ? why : "none found");
        return SKIP;
    }
    vkc_ctx *vc = NULL;
    if (vkc_ctx_new(0, &vc, why, sizeof(why))) {
        printf("FAIL: cuda:0: %s\n", why);
        return 1;
    }
    printf("device: %s\n", vkc_device_name(vc));
    vk_ctx *ref = vk_ctx_new(1, 1, NULL);
    for (int bf = 0; bf < 2; bf++) {
        t_linear(vc, ref, 1, 1, 1, bf, 0, 1);
        t_linear(vc, ref, 37, 48, 23, bf, 1, 1);
        t_linear(vc, ref, 129, 96, 70, bf, 3, 0);
        t_linear(vc, ref, 1200, 1536, 1536, bf, 0, 1);
        t_linear(vc, ref, 77, 1536, 8960, bf, 1, 1);
        t_rope_attention(vc, ref, 3, 5, 7, 3, 128, 0, bf);
        t_rope_attention(vc, ref, 1, 7, 9, 2, 64, 17, bf);
        t_rope_attention(vc, ref, 5, 24, 40, 2, 128, 0, bf);
    }
    t_norms(vc, ref, 1, 1);
    t_norms(vc, ref, 37, 1536);
    t_norms(vc, ref, 3, 5000);
    t_frame_ops(vc, ref);
    t_conv_chunks();
    int err = vkc_sync(vc);
    if (err)
        printf("FAIL: sticky device error: %s\n", vkc_error(vc));
    printf("peak device memory %.1f MiB\n", (double)vkc_mem_peak(vc) / (1 << 20));
    vk_ctx_free(&ref);
    vkc_ctx_free(&vc);
    T_CHECK(!err, "sticky device error");
    T_DONE();
#endif
}
