/* Plain C reference kernels: the definition every fast kernel is tested
 * against. Written to be obviously correct, not fast: sums in double, no
 * threads, no tiling. Attention materialises one row of scores at a time. */
#include <math.h>

#include "impl.h"

float vk_act1(float x, vk_act act)
{
    switch (act) {
    case VK_ACT_GELU_TANH: {
        double d = x;
        return (float)(0.5 * d * (1.0 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d))));
    }
    case VK_ACT_GELU_ERF: {
        double d = x;
        return (float)(0.5 * d * (1.0 + erf(d * 0.7071067811865476)));
    }
    case VK_ACT_SILU: {
        double d = x;
        return (float)(d / (1.0 + exp(-d)));
    }
    case VK_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    default:
        return x;
    }
}

void vk_weights_to_f32(float *dst, const void *src, vt_dtype t, size_t n)
{
    if (vt_to_f32(dst, src, t, n) < 0)
        memset(dst, 0, n * sizeof(float)); /* unreachable: init checks types */
}

void vk_ref_widen(vk_ctx *c, float *dst, const void *src, vt_dtype t, size_t n)
{
    vk_weights_to_f32(dst, src, t, n);
}

void vk_ref_to_bf16(vk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = vt_f32_to_bf16(src[i]);
}

/* One stored weight, any alignment. */
static double wval(const void *w, vt_dtype t, size_t i)
{
    const uint8_t *p = w;
    if (t == VT_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t == VT_F16 ? vt_f16_to_f32(h) : vt_bf16_to_f32(h);
}

void vk_ref_linear(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y, vk_act act)
{
    int64_t ni = l->n_in, no = l->n_out;
    for (int64_t r = 0; r < m; r++)
        for (int64_t o = 0; o < no; o++) {
            double s = l->bias ? l->bias[o] : 0.0;
            for (int64_t i = 0; i < ni; i++)
                s += (double)x[r * ni + i] * wval(l->w, l->wtype, (size_t)(o * ni + i));
            y[r * no + o] = vk_act1((float)s, act);
        }
}

void vk_ref_gemm(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                 int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
            }
            /* beta == 0 never reads C (it may hold garbage), as BLAS */
            double r = alpha * s;
            if (beta != 0.0f)
                r += (double)beta * cm[i * ldc + j];
            cm[i * ldc + j] = (float)r;
        }
}

void vk_ref_conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d, int h,
                 int w, float *y)
{
    int kd = cv->kd, kh = cv->kh, kw = cv->kw, ci = cv->c_in;
    int od = (d + g->pd0 + g->pd1 - kd) / g->sd + 1;
    int oh = (h + g->ph0 + g->ph1 - kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - kw) / g->sw + 1;
    if (od <= 0 || oh <= 0 || ow <= 0)
        return;
    size_t ksz = (size_t)kd * kh * kw;
    vt_dtype wt;
    float *wtmp;
    const void *wsrc = vk_conv_src(cv, &wt, &wtmp);
    if (!wsrc) { /* out of memory remaking a detached layer's weights: visible */
        for (size_t i = 0; i < (size_t)cv->c_out * od * oh * ow; i++)
            y[i] = NAN;
        return;
    }
    for (int o = 0; o < cv->c_out; o++)
        for (int z = 0; z < od; z++)
            for (int yy = 0; yy < oh; yy++)
                for (int xx = 0; xx < ow; xx++) {
                    double s = cv->bias ? cv->bias[o] : 0.0;
                    for (int i = 0; i < ci; i++)
                        for (int a = 0; a < kd; a++) {
                            int iz = z * g->sd - g->pd0 + a;
                            if (iz < 0 || iz >= d)
                                continue;
                            for (int b = 0; b < kh; b++) {
                                int iy = yy * g->sh - g->ph0 + b;
                                if (iy < 0 || iy >= h)
                                    continue;
                                for (int e = 0; e < kw; e++) {
                                    int ix = xx * g->sw - g->pw0 + e;
                                    if (ix < 0 || ix >= w)
                                        continue;
                                    size_t wi = ((size_t)o * ci + i) * ksz +
                                                ((size_t)a * kh + b) * kw + e;
                                    s += (double)x[(((size_t)i * d + iz) * h + iy) * w + ix] *
                                         wval(wsrc, wt, wi);
                                }
                            }
                        }
                    y[(((size_t)o * od + z) * oh + yy) * ow + xx] = (float)s;
                }
    vd_free(wtmp);
}

void vk_ref_conv_tap_rows(const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                          const float *x, int h, int w, float *y, int r0, int r1)
{
    int kh = cv->kh, kw = cv->kw, ci = cv->c_in;
    int oh = (h + g->ph0 + g->ph1 - kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - kw) / g->sw + 1;
    if (k < 0 || k >= cv->kd || oh <= 0 || ow <= 0)
        return;
    size_t ksz = (size_t)cv->kd * kh * kw;
    r1 = r1 < oh ? r1 : oh;
    vt_dtype wt;
    float *wtmp;
    const void *wsrc = vk_conv_src(cv, &wt, &wtmp);
    if (!wsrc) { /* out of memory remaking a detached layer's weights: visible */
        for (int o = 0; o < cv->c_out; o++)
            for (int yy = r0; yy < r1; yy++)
                for (int xx = 0; xx < ow; xx++)
                    y[((size_t)o * oh + yy) * ow + xx] = NAN;
        return;
    }
    for (int o = 0; o < cv->c_out; o++)
        for (int yy = r0; yy < r1; yy++)
            for (int xx = 0; xx < ow; xx++) {
                double s = (flags & VK_CONV_BIAS) && cv->bias ? cv->bias[o] : 0.0;
                for (int i = 0; i < ci; i++)
                    for (int b = 0; b < kh; b++) {
                        int iy = yy * g->sh - g->ph0 + b;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int e = 0; e < kw; e++) {
                            int ix = xx * g->sw - g->pw0 + e;
                            if (ix < 0 || ix >= w)
                                continue;
                            size_t wi = ((size_t)o * ci + i) * ksz + ((size_t)k * kh + b) * kw + e;
                            s += (double)x[((size_t)i * h + iy) * w + ix] *
                                 wval(wsrc, wt, wi);
                        }
                    }
                float *p = &y[((size_t)o * oh + yy) * ow + xx];
                *p = (flags & VK_CONV_ACC) ? *p + (float)s : (float)s;
            }
    vd_free(wtmp);
}

void vk_ref_conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                     const float *x, int h, int w, float *y)
{
    (void)c;
    vk_ref_conv_tap_rows(cv, g, k, flags, x, h, w, y, 0, 1 << 30);
}

void vk_ref_softmax(vk_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * ld;
        if (cols <= 0)
            continue;
        double mx = p[0];
        for (int64_t j = 1; j < cols; j++)
            if (p[j] > mx)
                mx = p[j];
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += exp((double)p[j] - mx);
        for (int64_t j = 0; j < cols; j++)
            p[j] = (float)(exp((double)p[j] - mx) / s);
    }
}

void vk_ref_layernorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                      const float *w, const float *b, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * dim;
        float *q = y + r * dim;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < dim; j++)
            mean += p[j];
        mean /= (double)dim;
        for (int64_t j = 0; j < dim; j++)
            var += ((double)p[j] - mean) * ((double)p[j] - mean);
        var /= (double)dim;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < dim; j++) {
            double v = ((double)p[j] - mean) * inv;
            if (w)
                v *= w[j];
            if (b)
                v += b[j];
            q[j] = (float)v;
        }
    }
}

void vk_ref_rmsnorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                    float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * dim;
        float *q = y + r * dim;
        double ss = 0;
        for (int64_t j = 0; j < dim; j++)
            ss += (double)p[j] * p[j];
        double inv = 1.0 / sqrt(ss / (double)dim + eps);
        for (int64_t j = 0; j < dim; j++)
            q[j] = (float)((double)p[j] * inv * (w ? w[j] : 1.0f));
    }
}

void vk_ref_chnorm(vk_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                   const float *beta)
{
    double sc = sqrt((double)ch);
    for (int64_t j = 0; j < s; j++) {
        double ss = 0;
        for (int64_t i = 0; i < ch; i++)
            ss += (double)x[i * s + j] * x[i * s + j];
        double nrm = sqrt(ss);
        double inv = 1.0 / (nrm > 1e-12 ? nrm : 1e-12);
        for (int64_t i = 0; i < ch; i++) {
            double v = (double)x[i * s + j] * inv * sc * (gamma ? gamma[i] : 1.0f);
            if (beta)
                v += beta[i];
            y[i * s + j] = (float)v;
        }
    }
}

void vk_ref_act(vk_ctx *c, float *x, int64_t n, vk_act act)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = vk_act1(x[i], act);
}

void vk_ref_modulate(vk_ctx *c, float *x, int64_t rows, int64_t dim, const float *shift,
                     const float *scale)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < dim; j++)
            x[r * dim + j] = x[r * dim + j] * (1.0f + scale[j]) + shift[j];
}

void vk_ref_add_gated(vk_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                      const float *gate)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < dim; j++)
            x[r * dim + j] += y[r * dim + j] * (gate ? gate[j] : 1.0f);
}

void vk_ref_rope(vk_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
                 const float *cs)
{
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t hh = 0; hh < n_heads; hh++) {
            float *p = x + t * ld + hh * head_dim;
            const float *r = cs + t * head_dim;
            for (int64_t i = 0; i + 1 < head_dim; i += 2) {
                double a = p[i], b = p[i + 1], co = r[i], si = r[i + 1];
                p[i] = (float)(a * co - b * si);
                p[i + 1] = (float)(a * si + b * co);
            }
        }
}

void vk_ref_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                      const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads, int64_t hd,
                      int64_t lq, int64_t lk, int64_t kv_valid, float scale, const float *bias)
{
    int64_t nk = kv_valid < lk ? kv_valid : lk;
    double *s = nk > 0 ? malloc((size_t)nk * sizeof(double)) : NULL;
    double *acc = hd > 0 ? malloc((size_t)hd * sizeof(double)) : NULL;
    if ((nk > 0 && !s) || (hd > 0 && !acc)) {
        /* reference only (tests): out of memory is not worth a code path */
        free(s);
        free(acc);
        return;
    }
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < lq; i++) {
            const float *qi = q + i * ldq + h * hd;
            float *oi = o + i * ldo + h * hd;
            double mx = -INFINITY;
            for (int64_t j = 0; j < nk; j++) {
                const float *kj = k + j * ldk + h * hd;
                double d = 0;
                for (int64_t e = 0; e < hd; e++)
                    d += (double)qi[e] * kj[e];
                d *= scale;
                if (bias)
                    d += bias[(h * lq + i) * lk + j];
                s[j] = d;
                if (d > mx || isnan(d)) /* a NaN score poisons the row, as in the fast kernels */
                    mx = d;
            }
            double sum = 0;
            for (int64_t e = 0; e < hd; e++)
                acc[e] = 0;
            for (int64_t j = 0; j < nk; j++) {
                double p = mx == -INFINITY ? 0.0 : exp(s[j] - mx);
                sum += p;
                const float *vj = v + j * ldv + h * hd;
                for (int64_t e = 0; e < hd; e++)
                    acc[e] += p * vj[e];
            }
            for (int64_t e = 0; e < hd; e++)
                oi[e] = sum == 0 ? 0.0f : (float)(acc[e] / sum);
        }
    free(s);
    free(acc);
}
