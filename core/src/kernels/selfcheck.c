/* Every fast kernel against the reference on random data (the dav1d checkasm
 * idea): odd sizes, all weight types, strides, guard values around every
 * output to catch overruns. Used by `vdit selfcheck` (quick set) and the
 * kernel unit test (thorough set). */
#include <math.h>
#include <stdio.h>

#include "impl.h"
#include "selfcheck.h"

#define GUARD 16
static const uint32_t guard_bits = 0x7fa5a5a5u; /* a NaN no kernel produces */

typedef struct run {
    vk_ctx *ref, *fast;
    uint64_t rng;
    int level;
    double tol_prod; /* linear and attention: 2e-5 in fp32, more for bf16 operands */
    char tag[32];    /* "avx2 fp32": the table under test */
    int failed, total;
    vk_check_fn cb;
    void *user;
    char name[160];
} run;

static uint64_t next(run *r)
{
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float unif(run *r)
{
    return (float)((double)(next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static void fill(run *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = unif(r) * scale;
}

/* A buffer of n floats with GUARD sentinel floats on each side. */
static float *gbuf(size_t n)
{
    float *p = vd_malloc((n + 2 * GUARD) * sizeof(float));
    if (!p)
        return NULL;
    for (size_t i = 0; i < n + 2 * GUARD; i++)
        memcpy(p + i, &guard_bits, 4);
    return p + GUARD;
}

static void gfree(float *p)
{
    if (p)
        vd_free(p - GUARD);
}

static int guards_ok(const float *p, size_t n)
{
    for (size_t i = 0; i < GUARD; i++)
        if (memcmp(p - GUARD + i, &guard_bits, 4) || memcmp(p + n + i, &guard_bits, 4))
            return 0;
    return 1;
}

/* Normalised error: max |a - b| over max |b| (NaN counts as infinite), over
 * rows x cols elements with row stride ld. */
static double nerr(const float *a, const float *b, int64_t rows, int64_t cols, int64_t ld)
{
    double m = 0, mb = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            double x = a[r * ld + j], y = b[r * ld + j];
            double d = fabs(x - y);
            if (!(d <= m))
                m = isnan(d) ? INFINITY : d;
            if (fabs(y) > mb)
                mb = fabs(y);
        }
    return mb > 0 ? m / mb : m;
}

/* Also the bytes between rows (ld > cols) must be untouched. */
static int gaps_ok(const float *a, const float *orig, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = cols; j < ld && r * ld + j < rows * ld; j++)
            if (memcmp(a + r * ld + j, orig + r * ld + j, 4))
                return 0;
    return 1;
}

static void report(run *r, double err, double tol, int guards)
{
    int ok = err <= tol && guards;
    r->total++;
    if (!ok)
        r->failed++;
    char line[sizeof(r->name) + sizeof(r->tag) + 4];
    snprintf(line, sizeof(line), "[%s] %s", r->tag, r->name);
    if (r->cb)
        r->cb(r->user, line, err, tol, guards, ok);
}

/* Copies one guarded buffer (contents and guards) into another. */
static void gcopy(float *dst, const float *src, size_t n)
{
    memcpy(dst - GUARD, src - GUARD, (n + 2 * GUARD) * sizeof(float));
}

/* n random weights of type t from byte 1 of the returned block (stored
 * weights in a checkpoint need not be aligned), or from byte 0 if aligned. */
static void *weights_at(run *r, vt_dtype t, size_t n, float scale, int aligned)
{
    size_t es = vt_dtype_size(t), off = aligned ? 0 : 1;
    uint8_t *p = vd_malloc(n * es + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        float f = unif(r) * scale;
        if (t == VT_F32) {
            memcpy(p + off + 4 * i, &f, 4);
        } else {
            uint16_t h = t == VT_F16 ? vt_f32_to_f16(f) : vt_f32_to_bf16(f);
            memcpy(p + off + 2 * i, &h, 2);
        }
    }
    return p;
}

static void *weights(run *r, vt_dtype t, size_t n, float scale)
{
    return weights_at(r, t, n, scale, 0);
}

/* The stored weights (type t, n of them, any alignment) rounded to bf16:
 * what a bf16 kernel multiplies. */
static uint16_t *bf16_weights(const uint8_t *src, vt_dtype t, size_t n)
{
    uint16_t *wr = vd_malloc(n * 2 + 2);
    for (size_t i = 0; wr && i < n; i++) {
        float f;
        if (t == VT_F32) {
            memcpy(&f, src + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            f = t == VT_F16 ? vt_f16_to_f32(h) : vt_bf16_to_f32(h);
        }
        wr[i] = vt_f32_to_bf16(f);
    }
    return wr;
}

static const char *act_name[] = { "none", "gelu_tanh", "gelu_erf", "silu", "relu" };

static void check_linear_at(run *r, int64_t m, int64_t ni, int64_t no, vt_dtype t, int bias,
                            vk_act act, int aligned)
{
    snprintf(r->name, sizeof(r->name), "linear m=%lld in=%lld out=%lld %s%s %s%s", (long long)m,
             (long long)ni, (long long)no, vt_dtype_name(t), bias ? " bias" : "", act_name[act],
             aligned ? " aligned" : "");
    uint8_t *wraw = weights_at(r, t, (size_t)(ni * no), 1.0f / sqrtf((float)ni), aligned);
    float *bv = vd_malloc((size_t)no * sizeof(float));
    float *x = gbuf((size_t)(m * ni)), *y0 = gbuf((size_t)(m * no)), *y1 = gbuf((size_t)(m * no));
    vk_linear l = { 0 };
    int err = -1;
    if (wraw && bv && x && y0 && y1) {
        fill(r, bv, (size_t)no, 1.0f);
        vt_tensor w = { .dtype = t, .ndim = 2, .shape = { no, ni }, .data = wraw + !aligned };
        vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { no }, .data = bv };
        err = vk_linear_init(&l, &w, bias ? &b : NULL);
    }
    int bf = r->fast->prec == VK_PREC_BF16;
    vk_linear lr = { 0 }; /* bf16: the reference runs on the operands rounded to bf16 */
    uint16_t *wr = NULL;
    float *xr = NULL;
    if (!err && bf) {
        err = -1;
        wr = bf16_weights(wraw + !aligned, t, (size_t)(ni * no));
        xr = vd_malloc((size_t)(m * ni) * sizeof(float));
        if (wr && xr) {
            vt_tensor w = { .dtype = VT_BF16, .ndim = 2, .shape = { no, ni }, .data = wr };
            vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { no }, .data = bv };
            err = vk_linear_init(&lr, &w, bias ? &b : NULL);
        }
    }
    if (!err) {
        fill(r, x, (size_t)(m * ni), 2.0f);
        if (bf) {
            for (int64_t i = 0; i < m * ni; i++)
                xr[i] = vt_bf16_to_f32(vt_f32_to_bf16(x[i]));
            r->ref->f->linear(r->ref, &lr, xr, m, y0, act);
        } else {
            r->ref->f->linear(r->ref, &l, x, m, y0, act);
        }
        r->fast->f->linear(r->fast, &l, x, m, y1, act);
        /* bf16 against the rounded operands: only the summation order differs */
        double e = nerr(y1, y0, m, no, no);
        /* and again from the form vk_linear_prepare makes for the precision
         * (bf16: a bf16 copy, fp32: stored fp32 packed; in oneDNN's layout) */
        if (vk_linear_prepare(&l, bf ? VK_PREC_BF16 : VK_PREC_F32, r->fast->n_threads))
            e = INFINITY;
        r->fast->f->linear(r->fast, &l, x, m, y1, act);
        double e2 = nerr(y1, y0, m, no, no);
        e = e2 > e ? e2 : e;
        report(r, e, bf ? 1e-5 : 2e-5,
               guards_ok(y1, (size_t)(m * no)) && guards_ok(x, (size_t)(m * ni)));
    } else {
        report(r, INFINITY, 0, 0);
    }
    vk_linear_free(&lr);
    vd_free(wr);
    vd_free(xr);
    vk_linear_free(&l);
    vd_free(wraw);
    vd_free(bv);
    gfree(x);
    gfree(y0);
    gfree(y1);
}

static void check_linear(run *r, int64_t m, int64_t ni, int64_t no, vt_dtype t, int bias,
                         vk_act act)
{
    check_linear_at(r, m, ni, no, t, bias, act, 0);
}

/* A layer [no, ni] of random weights of type t (bias: random fp32) made
 * into *l and, in bf16, the same rounded to bf16 into *lr (what a bf16
 * kernel multiplies); prepared for the fast context's precision when
 * prepare is set. Owned memory in *keep[0..2]. 0 or -1. */
static int make_layer(run *r, vk_linear *l, vk_linear *lr, int64_t ni, int64_t no, vt_dtype t,
                      int bf, int prepare, void **keep)
{
    uint8_t *wraw = weights(r, t, (size_t)(ni * no), 1.0f / sqrtf((float)ni));
    float *bv = vd_malloc((size_t)no * sizeof(float));
    keep[0] = wraw;
    keep[1] = bv;
    keep[2] = NULL;
    if (!wraw || !bv)
        return -1;
    fill(r, bv, (size_t)no, 1.0f);
    vt_tensor w = { .dtype = t, .ndim = 2, .shape = { no, ni }, .data = wraw + 1 };
    vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { no }, .data = bv };
    if (vk_linear_init(l, &w, &b) ||
        (prepare && vk_linear_prepare(l, bf ? VK_PREC_BF16 : VK_PREC_F32, r->fast->n_threads)))
        return -1;
    if (!bf)
        return vk_linear_init(lr, &w, &b);
    uint16_t *wr = bf16_weights(wraw + 1, t, (size_t)(ni * no));
    keep[2] = wr;
    vt_tensor w2 = { .dtype = VT_BF16, .ndim = 2, .shape = { no, ni }, .data = wr };
    return wr ? vk_linear_init(lr, &w2, &b) : -1;
}

static void round_bf16(float *d, const float *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = vt_bf16_to_f32(vt_f32_to_bf16(s[i]));
}

/* linear_n: n layers on one input against one reference linear each. */
static void check_linear_n(run *r, int64_t m, int64_t ni, const int64_t *nos, int n, vt_dtype t,
                           int prepare)
{
    snprintf(r->name, sizeof(r->name), "linear_n m=%lld in=%lld x%d %s%s", (long long)m,
             (long long)ni, n, vt_dtype_name(t), prepare ? " prepared" : "");
    int bf = r->fast->prec == VK_PREC_BF16, err = 0, guards = 1;
    vk_linear l[4] = { 0 }, lr[4] = { 0 };
    void *keep[4][3] = { { 0 } };
    float *ys[4] = { 0 }, *y0 = NULL;
    float *x = gbuf((size_t)(m * ni)), *xr = vd_malloc((size_t)(m * ni) * sizeof(float));
    for (int i = 0; i < n; i++) {
        err |= make_layer(r, &l[i], &lr[i], ni, nos[i], t, bf, prepare, keep[i]);
        err |= !(ys[i] = gbuf((size_t)(m * nos[i])));
    }
    double e = INFINITY;
    if (!err && x && xr) {
        fill(r, x, (size_t)(m * ni), 2.0f);
        if (bf)
            round_bf16(xr, x, (size_t)(m * ni));
        else
            memcpy(xr, x, (size_t)(m * ni) * sizeof(float));
        const vk_linear *ls[4] = { &l[0], &l[1], &l[2], &l[3] };
        r->fast->f->linear_n(r->fast, ls, n, x, m, ys);
        e = 0;
        for (int i = 0; i < n; i++) {
            if (!(y0 = vd_malloc((size_t)(m * nos[i]) * sizeof(float)))) {
                e = INFINITY;
                break;
            }
            r->ref->f->linear(r->ref, &lr[i], xr, m, y0, VK_ACT_NONE);
            double ei = nerr(ys[i], y0, m, nos[i], nos[i]);
            e = ei > e ? ei : e;
            guards &= guards_ok(ys[i], (size_t)(m * nos[i]));
            vd_free(y0);
        }
    }
    report(r, e, bf ? 1e-5 : 2e-5, guards && x && guards_ok(x, (size_t)(m * ni)));
    for (int i = 0; i < n; i++) {
        vk_linear_free(&l[i]);
        vk_linear_free(&lr[i]);
        for (int k = 0; k < 3; k++)
            vd_free(keep[i][k]);
        gfree(ys[i]);
    }
    gfree(x);
    vd_free(xr);
}

/* ffn: against two reference linears; in bf16 on operands rounded to bf16,
 * the hidden layer too (after the activation), as the second product reads
 * it. A rounding that falls the other way on a hidden value moves y by
 * about 2^-9 of that value's share, hence the looser bf16 bound. */
static void check_ffn(run *r, int64_t m, int64_t ni, int64_t nh, int64_t no, vt_dtype t,
                      vk_act act, int prepare)
{
    snprintf(r->name, sizeof(r->name), "ffn m=%lld %lld-%lld-%lld %s %s%s", (long long)m,
             (long long)ni, (long long)nh, (long long)no, vt_dtype_name(t), act_name[act],
             prepare ? " prepared" : "");
    int bf = r->fast->prec == VK_PREC_BF16;
    vk_linear l0 = { 0 }, l2 = { 0 }, r0 = { 0 }, r2 = { 0 };
    void *k0[3], *k2[3];
    int err = make_layer(r, &l0, &r0, ni, nh, t, bf, prepare, k0) |
              make_layer(r, &l2, &r2, nh, no, t, bf, prepare, k2);
    float *x = gbuf((size_t)(m * ni)), *hid = gbuf((size_t)(m * nh)), *y1 = gbuf((size_t)(m * no));
    float *xr = vd_malloc((size_t)(m * ni) * sizeof(float));
    float *h0 = vd_malloc((size_t)(m * nh) * sizeof(float));
    float *y0 = vd_malloc((size_t)(m * no) * sizeof(float));
    double e = INFINITY;
    int guards = 0;
    if (!err && x && hid && y1 && xr && h0 && y0) {
        fill(r, x, (size_t)(m * ni), 2.0f);
        if (bf)
            round_bf16(xr, x, (size_t)(m * ni));
        else
            memcpy(xr, x, (size_t)(m * ni) * sizeof(float));
        r->ref->f->linear(r->ref, &r0, xr, m, h0, act);
        if (bf)
            round_bf16(h0, h0, (size_t)(m * nh));
        r->ref->f->linear(r->ref, &r2, h0, m, y0, VK_ACT_NONE);
        r->fast->f->ffn(r->fast, &l0, &l2, act, x, m, hid, y1);
        e = nerr(y1, y0, m, no, no);
        guards = guards_ok(y1, (size_t)(m * no)) && guards_ok(hid, (size_t)(m * nh)) &&
                 guards_ok(x, (size_t)(m * ni));
    }
    report(r, e, bf ? 1e-4 : 2e-5, guards);
    vk_linear_free(&l0);
    vk_linear_free(&l2);
    vk_linear_free(&r0);
    vk_linear_free(&r2);
    for (int k = 0; k < 3; k++) {
        vd_free(k0[k]);
        vd_free(k2[k]);
    }
    gfree(x);
    gfree(hid);
    gfree(y1);
    vd_free(xr);
    vd_free(h0);
    vd_free(y0);
}

static void check_gemm(run *r, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                       float beta, int pad)
{
    snprintf(r->name, sizeof(r->name), "gemm %c%c m=%lld n=%lld k=%lld alpha=%g beta=%g ld+%d",
             ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, alpha, beta,
             pad);
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)((ta ? k : m) * lda), nb = (size_t)((tb ? n : k) * ldb),
           nc = (size_t)(m * ldc);
    float *a = gbuf(na), *b = gbuf(nb), *c0 = gbuf(nc), *c1 = gbuf(nc), *orig = gbuf(nc);
    if (a && b && c0 && c1 && orig) {
        fill(r, a, na, 1.0f);
        fill(r, b, nb, 1.0f);
        fill(r, orig, nc, 1.0f);
        if (beta == 0.0f) /* BLAS rule: C is not read, may hold NaN */
            for (size_t i = 0; i < nc; i++)
                orig[i] = NAN;
        gcopy(c0, orig, nc);
        gcopy(c1, orig, nc);
        r->ref->f->gemm(r->ref, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
        r->fast->f->gemm(r->fast, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
        report(r, nerr(c1, c0, m, n, ldc), 2e-5, guards_ok(c1, nc) && gaps_ok(c1, orig, m, n, ldc));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(a);
    gfree(b);
    gfree(c0);
    gfree(c1);
    gfree(orig);
}

static void check_conv(run *r, int ci, int co, int kd, int kh, int kw, int d, int h, int w,
                       const vk_conv_geom *g, vt_dtype t, int bias)
{
    snprintf(r->name, sizeof(r->name),
             "conv %dx%dx%d %d->%d in %dx%dx%d s%d,%d,%d pad %d/%d,%d/%d,%d/%d %s%s", kd, kh, kw,
             ci, co, d, h, w, g->sd, g->sh, g->sw, g->pd0, g->pd1, g->ph0, g->ph1, g->pw0, g->pw1,
             vt_dtype_name(t), bias ? " bias" : "");
    int od = (d + g->pd0 + g->pd1 - kd) / g->sd + 1;
    int oh = (h + g->ph0 + g->ph1 - kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - kw) / g->sw + 1;
    size_t nw = (size_t)co * ci * kd * kh * kw, nx = (size_t)ci * d * h * w,
           ny = (size_t)co * od * oh * ow;
    uint8_t *wraw = weights(r, t, nw, 1.0f / sqrtf((float)(ci * kd * kh * kw)));
    float *bv = vd_malloc((size_t)co * sizeof(float));
    float *x = gbuf(nx), *y0 = gbuf(ny), *y1 = gbuf(ny);
    vk_conv cv = { 0 };
    int err = -1;
    if (wraw && bv && x && y0 && y1) {
        fill(r, bv, (size_t)co, 1.0f);
        vt_tensor wt = { .dtype = t, .ndim = 5, .shape = { co, ci, kd, kh, kw }, .data = wraw + 1 };
        vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { co }, .data = bv };
        err = vk_conv_init(&cv, &wt, bias ? &b : NULL);
    }
    if (!err) {
        fill(r, x, nx, 1.0f);
        r->ref->f->conv(r->ref, &cv, g, x, d, h, w, y0);
        r->fast->f->conv(r->fast, &cv, g, x, d, h, w, y1);
        report(r, nerr(y1, y0, 1, (int64_t)ny, (int64_t)ny), 2e-5, guards_ok(y1, ny));
    } else {
        report(r, INFINITY, 0, 0);
    }
    vk_conv_free(&cv);
    vd_free(wraw);
    vd_free(bv);
    gfree(x);
    gfree(y0);
    gfree(y1);
}

/* One temporal tap on one frame (conv_tap), optionally adding into y and
 * with the fast side forced into row bands of `band` bytes. */
static void check_conv_tap(run *r, int ci, int co, int kd, int kh, int kw, int h, int w,
                           const vk_conv_geom *g, vt_dtype t, int k, int flags, size_t band)
{
    snprintf(r->name, sizeof(r->name),
             "conv_tap %d/%dx%dx%d %d->%d in %dx%d s%d,%d pad %d/%d,%d/%d %s%s%s band %zu", k, kd,
             kh, kw, ci, co, h, w, g->sh, g->sw, g->ph0, g->ph1, g->pw0, g->pw1,
             vt_dtype_name(t), flags & VK_CONV_BIAS ? " bias" : "",
             flags & VK_CONV_ACC ? " acc" : "", band);
    int oh = (h + g->ph0 + g->ph1 - kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - kw) / g->sw + 1;
    size_t nw = (size_t)co * ci * kd * kh * kw, nx = (size_t)ci * h * w, ny = (size_t)co * oh * ow;
    uint8_t *wraw = weights(r, t, nw, 1.0f / sqrtf((float)(ci * kh * kw)));
    float *bv = vd_malloc((size_t)co * sizeof(float));
    float *x = gbuf(nx), *y0 = gbuf(ny), *y1 = gbuf(ny);
    vk_conv cv = { 0 };
    int err = -1;
    if (wraw && bv && x && y0 && y1) {
        fill(r, bv, (size_t)co, 1.0f);
        vt_tensor wt = { .dtype = t, .ndim = 5, .shape = { co, ci, kd, kh, kw }, .data = wraw + 1 };
        vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { co }, .data = bv };
        err = vk_conv_init(&cv, &wt, &b);
    }
    if (!err) {
        fill(r, x, nx, 1.0f);
        fill(r, y0, ny, 1.0f);
        memcpy(y1, y0, ny * sizeof(float));
        size_t old = r->fast->band_bytes;
        r->fast->band_bytes = band;
        float *yin = r->fast->prec == VK_PREC_BF16 ? vd_malloc(ny * sizeof(float)) : NULL;
        if (yin)
            memcpy(yin, y0, ny * sizeof(float));
        r->ref->f->conv_tap(r->ref, &cv, g, k, flags, x, h, w, y0);
        r->fast->f->conv_tap(r->fast, &cv, g, k, flags, x, h, w, y1);
        r->fast->band_bytes = old;
        double e = nerr(y1, y0, 1, (int64_t)ny, (int64_t)ny);
        if (r->fast->prec == VK_PREC_BF16) {
            /* bf16 layers match the reference on bf16-rounded operands; the
             * ones bf16 does not serve (1x1, few outputs) match fp32 */
            uint16_t *wr = bf16_weights(wraw + 1, t, nw);
            float *xr = vd_malloc(nx * sizeof(float));
            vk_conv cr = { 0 };
            vt_tensor wt = { .dtype = VT_BF16, .ndim = 5, .shape = { co, ci, kd, kh, kw },
                             .data = wr };
            vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { co }, .data = bv };
            if (yin && wr && xr && !vk_conv_init(&cr, &wt, &b)) {
                for (size_t i = 0; i < nx; i++)
                    xr[i] = vt_bf16_to_f32(vt_f32_to_bf16(x[i]));
                r->ref->f->conv_tap(r->ref, &cr, g, k, flags, xr, h, w, yin);
                double e2 = nerr(y1, yin, 1, (int64_t)ny, (int64_t)ny);
                e = e2 < e ? e2 : e;
            } else {
                e = INFINITY;
            }
            vk_conv_free(&cr);
            vd_free(wr);
            vd_free(xr);
        }
        vd_free(yin);
        report(r, e, 2e-5, guards_ok(y1, ny));
    } else {
        report(r, INFINITY, 0, 0);
    }
    vk_conv_free(&cv);
    vd_free(wraw);
    vd_free(bv);
    gfree(x);
    gfree(y0);
    gfree(y1);
}

static void check_softmax(run *r, int64_t rows, int64_t cols, int64_t pad, float scale)
{
    snprintf(r->name, sizeof(r->name), "softmax %lldx%lld ld+%lld range %g", (long long)rows,
             (long long)cols, (long long)pad, scale);
    int64_t ld = cols + pad;
    size_t n = (size_t)(rows * ld);
    float *x0 = gbuf(n), *x1 = gbuf(n), *orig = gbuf(n);
    if (x0 && x1 && orig) {
        fill(r, orig, n, scale);
        gcopy(x0, orig, n);
        gcopy(x1, orig, n);
        r->ref->f->softmax(r->ref, x0, rows, cols, ld);
        r->fast->f->softmax(r->fast, x1, rows, cols, ld);
        report(r, nerr(x1, x0, rows, cols, ld), 1e-5,
               guards_ok(x1, n) && gaps_ok(x1, orig, rows, cols, ld));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(x0);
    gfree(x1);
    gfree(orig);
}

/* kind: 0 layernorm, 1 rmsnorm, 2 chnorm. rows x dim (chnorm: ch x s). */
static void check_norm(run *r, int kind, int64_t rows, int64_t dim, int affine, int inplace)
{
    static const char *names[] = { "layernorm", "rmsnorm", "chnorm" };
    snprintf(r->name, sizeof(r->name), "%s %lldx%lld%s%s", names[kind], (long long)rows,
             (long long)dim, affine ? " affine" : "", inplace ? " in-place" : "");
    size_t n = (size_t)(rows * dim);
    int64_t np = kind == 2 ? rows : dim; /* parameter length */
    float *x = gbuf(n), *y0 = gbuf(n), *y1 = gbuf(n);
    float *w = vd_malloc((size_t)np * 4), *b = vd_malloc((size_t)np * 4);
    if (x && y0 && y1 && w && b) {
        fill(r, x, n, 3.0f);
        for (size_t i = 0; i < n; i++) /* an offset so layernorm's mean matters */
            x[i] += 1.5f;
        fill(r, w, (size_t)np, 1.0f);
        fill(r, b, (size_t)np, 1.0f);
        const float *wa = affine ? w : NULL, *ba = affine ? b : NULL;
        float *src1 = x;
        if (inplace) {
            gcopy(y1, x, n);
            src1 = y1;
        }
        if (kind == 0) {
            r->ref->f->layernorm(r->ref, x, y0, rows, dim, wa, ba, 1e-6f);
            r->fast->f->layernorm(r->fast, src1, y1, rows, dim, wa, ba, 1e-6f);
        } else if (kind == 1) {
            r->ref->f->rmsnorm(r->ref, x, y0, rows, dim, wa, 1e-6f);
            r->fast->f->rmsnorm(r->fast, src1, y1, rows, dim, wa, 1e-6f);
        } else {
            r->ref->f->chnorm(r->ref, x, y0, rows, dim, wa, ba);
            r->fast->f->chnorm(r->fast, src1, y1, rows, dim, wa, ba);
        }
        report(r, nerr(y1, y0, 1, (int64_t)n, (int64_t)n), 1e-5, guards_ok(y1, n));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(x);
    gfree(y0);
    gfree(y1);
    vd_free(w);
    vd_free(b);
}

static void check_act(run *r, int64_t n, vk_act act, float range)
{
    snprintf(r->name, sizeof(r->name), "act %s n=%lld range %g", act_name[act], (long long)n,
             range);
    float *x0 = gbuf((size_t)n), *x1 = gbuf((size_t)n);
    if (x0 && x1) {
        fill(r, x0, (size_t)n, range);
        gcopy(x1, x0, (size_t)n);
        r->ref->f->act(r->ref, x0, n, act);
        r->fast->f->act(r->fast, x1, n, act);
        /* elementwise relative to max(|ref|, 1): the approximations must hold
         * near zero too */
        double m = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)x1[i] - x0[i]) / fmax(fabs(x0[i]), 1.0);
            if (!(d <= m))
                m = isnan(d) ? INFINITY : d;
        }
        report(r, m, 3e-6, guards_ok(x1, (size_t)n));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(x0);
    gfree(x1);
}

/* kind: 0 modulate, 1 add_gated, 2 add (gate NULL) */
static void check_elem(run *r, int kind, int64_t rows, int64_t dim)
{
    static const char *names[] = { "modulate", "add_gated", "add" };
    snprintf(r->name, sizeof(r->name), "%s %lldx%lld", names[kind], (long long)rows,
             (long long)dim);
    size_t n = (size_t)(rows * dim);
    float *x0 = gbuf(n), *x1 = gbuf(n), *y = gbuf(n), *p0 = gbuf((size_t)dim),
          *p1 = gbuf((size_t)dim);
    if (x0 && x1 && y && p0 && p1) {
        fill(r, x0, n, 1.0f);
        gcopy(x1, x0, n);
        fill(r, y, n, 1.0f);
        fill(r, p0, (size_t)dim, 1.0f);
        fill(r, p1, (size_t)dim, 1.0f);
        if (kind == 0) {
            r->ref->f->modulate(r->ref, x0, rows, dim, p0, p1);
            r->fast->f->modulate(r->fast, x1, rows, dim, p0, p1);
        } else {
            r->ref->f->add_gated(r->ref, x0, y, rows, dim, kind == 1 ? p0 : NULL);
            r->fast->f->add_gated(r->fast, x1, y, rows, dim, kind == 1 ? p0 : NULL);
        }
        /* fused multiply-add (one rounding) against the reference's two, which
         * is built without contraction: a few ulp where terms cancel */
        report(r, nerr(x1, x0, 1, (int64_t)n, (int64_t)n), 4e-6, guards_ok(x1, n));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(x0);
    gfree(x1);
    gfree(y);
    gfree(p0);
    gfree(p1);
}

static void check_rope(run *r, int64_t f, int64_t h, int64_t w, int64_t heads, int64_t hd,
                       int64_t pad)
{
    int64_t n_tok = f * h * w, ld = heads * hd + pad;
    snprintf(r->name, sizeof(r->name), "rope %lldx%lldx%lld tokens, %lld heads x %lld ld+%lld",
             (long long)f, (long long)h, (long long)w, (long long)heads, (long long)hd,
             (long long)pad);
    size_t n = (size_t)(n_tok * ld);
    float *x0 = gbuf(n), *x1 = gbuf(n), *orig = gbuf(n);
    float *cs = vk_rope3d_table(f, h, w, hd, 10000.0, 1, 2, 3);
    if (x0 && x1 && orig && cs) {
        fill(r, orig, n, 1.0f);
        gcopy(x0, orig, n);
        gcopy(x1, orig, n);
        r->ref->f->rope(r->ref, x0, n_tok, heads, hd, ld, cs);
        r->fast->f->rope(r->fast, x1, n_tok, heads, hd, ld, cs);
        report(r, nerr(x1, x0, n_tok, heads * hd, ld), 1e-6,
               guards_ok(x1, n) && gaps_ok(x1, orig, n_tok, heads * hd, ld));
    } else {
        report(r, INFINITY, 0, 0);
    }
    vd_free(cs);
    gfree(x0);
    gfree(x1);
    gfree(orig);
}

static void check_attention(run *r, int64_t heads, int64_t hd, int64_t lq, int64_t lk,
                            int64_t kv_valid, int bias, int64_t pad)
{
    snprintf(r->name, sizeof(r->name), "attention %lldx%lld lq=%lld lk=%lld valid=%lld%s ld+%lld",
             (long long)heads, (long long)hd, (long long)lq, (long long)lk, (long long)kv_valid,
             bias ? " bias" : "", (long long)pad);
    int64_t ld = heads * hd + pad;
    size_t nq = (size_t)(lq * ld), nk = (size_t)(lk * ld), nb = (size_t)(heads * lq * lk);
    float *q = gbuf(nq), *k = gbuf(nk), *v = gbuf(nk), *o0 = gbuf(nq), *o1 = gbuf(nq),
          *orig = gbuf(nq), *b = bias ? gbuf(nb) : NULL;
    if (q && k && v && o0 && o1 && orig && (!bias || b)) {
        fill(r, q, nq, 1.0f);
        fill(r, k, nk, 1.0f);
        fill(r, v, nk, 1.0f);
        fill(r, orig, nq, 1.0f);
        if (b) {
            fill(r, b, nb, 2.0f);
            for (size_t i = 0; i < nb; i += 7) /* masked positions, as T5 pads */
                b[i] = -INFINITY;
        }
        gcopy(o0, orig, nq);
        gcopy(o1, orig, nq);
        float scale = 1.0f / sqrtf((float)hd);
        r->ref->f->attention(r->ref, q, ld, k, ld, v, ld, o0, ld, heads, hd, lq, lk, kv_valid,
                             scale, b);
        r->fast->f->attention(r->fast, q, ld, k, ld, v, ld, o1, ld, heads, hd, lq, lk, kv_valid,
                              scale, b);
        report(r, nerr(o1, o0, lq, heads * hd, ld), r->tol_prod,
               guards_ok(o1, nq) && gaps_ok(o1, orig, lq, heads * hd, ld));
    } else {
        report(r, INFINITY, 0, 0);
    }
    gfree(q);
    gfree(k);
    gfree(v);
    gfree(o0);
    gfree(o1);
    gfree(orig);
    gfree(b);
}

static void run_all(run *r)
{
    int thorough = r->level > 0;
    static const vt_dtype types[] = { VT_F32, VT_F16, VT_BF16 };

    /* linear: odd shapes, every weight type, bias and each activation */
    static const int64_t lin[][3] = { { 1, 1, 1 },     { 3, 7, 17 },   { 17, 33, 16 },
                                      { 127, 64, 33 }, { 33, 130, 257 }, { 257, 1536, 96 } };
    for (size_t i = 0; i < VD_ARRAY_SIZE(lin); i++)
        for (int t = 0; t < 3; t++) {
            if (!thorough && i != 3 && i != 5)
                continue;
            check_linear(r, lin[i][0], lin[i][1], lin[i][2], types[t], 1, VK_ACT_NONE);
        }
    for (int a = 0; a < VK_ACT_COUNT; a++)
        check_linear(r, 37, 48, 23 + a, a & 1 ? VT_BF16 : VT_F32, a != 2, a);
    /* aligned weights as checkpoints store them: bf16 used in place in bf16 */
    check_linear_at(r, 67, 96, 40, VT_BF16, 1, VK_ACT_GELU_TANH, 1);
    check_linear_at(r, 300, 33, 65, VT_F32, 1, VK_ACT_NONE, 1);
    if (thorough)
        check_linear_at(r, 3, 4099, 70, VT_BF16, 0, VK_ACT_SILU, 1);
    if (thorough) {
        check_linear(r, 300, 100, 100, VT_F16, 0, VK_ACT_GELU_TANH);
        /* long rows: stored f16/bf16 weights are widened in several chunks of
         * output columns (bias offset, output stride) */
        check_linear(r, 3, 32768, 600, VT_F16, 1, VK_ACT_GELU_TANH);
        check_linear(r, 2, 32768, 290, VT_BF16, 1, VK_ACT_NONE);
        /* the small-m path's boundary (x86/linear_half.c: m <= 256) */
        check_linear(r, 256, 75, 31, VT_BF16, 1, VK_ACT_SILU);
        check_linear(r, 257, 75, 31, VT_F16, 1, VK_ACT_GELU_ERF);
        check_linear(r, 5, 75, 31, VT_F16, 0, VK_ACT_RELU);
    }

    /* layers sharing an input, and feed-forwards (bf16: hidden layer in
     * bf16), on stored and prepared weights */
    {
        static const int64_t nos[3] = { 33, 16, 70 };
        check_linear_n(r, 37, 48, nos, 3, VT_F16, 0);
        check_linear_n(r, 129, 96, nos, 3, VT_F32, 1);
        check_linear_n(r, 5, 33, nos + 1, 1, VT_BF16, 1);
        check_ffn(r, 37, 48, 130, 33, VT_F16, VK_ACT_GELU_TANH, 1);
        check_ffn(r, 67, 64, 96, 17, VT_BF16, VK_ACT_SILU, 0);
        check_ffn(r, 1, 7, 9, 5, VT_F32, VK_ACT_GELU_TANH, 1);
        if (thorough) {
            check_ffn(r, 300, 96, 500, 96, VT_F32, VK_ACT_GELU_ERF, 0);
            check_ffn(r, 2, 32768, 290, 3, VT_F16, VK_ACT_NONE, 0); /* chunked weights */
        }
    }

    /* gemm: all transpositions, alpha/beta, leading dimensions */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(r, ta, tb, 17, 33, 7, 1.0f, 0.0f, 0);
            check_gemm(r, ta, tb, 64, 31, 129, 0.5f, 1.0f, 3);
            if (thorough)
                check_gemm(r, ta, tb, 1, 1, 1, 2.0f, -1.0f, 1);
        }
    if (thorough)
        check_gemm(r, 0, 1, 200, 130, 257, 1.0f, 0.0f, 5);

    /* conv: VAE-like shapes: 3x3x3 causal, 3x3, 1x1, strides, asymmetric pads */
    vk_conv_geom causal = { 1, 1, 1, 2, 0, 1, 1, 1, 1 };
    vk_conv_geom same2d = { 1, 1, 1, 0, 0, 1, 1, 1, 1 };
    vk_conv_geom one = { 1, 1, 1, 0, 0, 0, 0, 0, 0 };
    vk_conv_geom down = { 1, 2, 2, 0, 0, 0, 1, 0, 1 };
    vk_conv_geom tdown = { 2, 1, 1, 0, 0, 0, 0, 0, 0 };
    for (int t = 0; t < 3; t++) {
        check_conv(r, 5, 7, 3, 3, 3, 3, 9, 11, &causal, types[t], 1);
        if (thorough || t == 0) {
            check_conv(r, 16, 24, 1, 3, 3, 1, 13, 17, &same2d, types[t], t != 1);
            check_conv(r, 33, 17, 1, 1, 1, 2, 7, 9, &one, types[t], 1);
        }
    }
    check_conv(r, 8, 8, 1, 3, 3, 1, 16, 15, &down, VT_F32, 1);
    check_conv(r, 6, 12, 3, 1, 1, 5, 4, 6, &tdown, VT_F32, 1);
    /* few output channels (the VAE's last layer): a direct kernel */
    check_conv(r, 24, 3, 3, 3, 3, 3, 9, 37, &causal, VT_F32, 1);
    if (thorough) {
        check_conv(r, 10, 3, 3, 3, 3, 4, 37, 19, &causal, VT_F32, 1); /* several row bands */
        check_conv(r, 7, 1, 3, 3, 3, 2, 5, 16, &causal, VT_F16, 1);
        check_conv(r, 5, 2, 1, 3, 3, 1, 1, 1, &same2d, VT_BF16, 0);
        check_conv(r, 9, 4, 1, 5, 3, 1, 8, 21, &down, VT_F32, 1);
        check_conv(r, 3, 4, 1, 3, 3, 1, 6, 33, &same2d, VT_F32, 1);
        check_conv(r, 3, 1, 1, 3, 3, 1, 1, 1, &same2d, VT_F32, 0);
        check_conv(r, 32, 32, 3, 3, 3, 4, 12, 20, &causal, VT_BF16, 1);
        check_conv(r, 96, 96, 1, 3, 3, 1, 20, 30, &same2d, VT_F32, 1);
    }

    /* conv_tap: taps of a causal 3x3x3, 2D, 1x1 and time convolutions,
     * few output channels, stride 2, accumulation, several row bands */
    const int AB = VK_CONV_ACC | VK_CONV_BIAS;
    check_conv_tap(r, 16, 24, 3, 3, 3, 13, 17, &same2d, VT_F32, 0, VK_CONV_BIAS, 0);
    check_conv_tap(r, 16, 24, 3, 3, 3, 13, 17, &same2d, VT_F16, 1, VK_CONV_ACC, 0);
    check_conv_tap(r, 16, 16, 3, 3, 3, 29, 21, &same2d, VT_F32, 2, AB, 4096);
    check_conv_tap(r, 6, 12, 3, 1, 1, 4, 6, &one, VT_F32, 1, VK_CONV_ACC, 0);
    check_conv_tap(r, 33, 17, 1, 1, 1, 7, 9, &one, VT_BF16, 0, AB, 0);
    check_conv_tap(r, 24, 3, 3, 3, 3, 9, 37, &same2d, VT_F32, 2, VK_CONV_ACC, 0);
    check_conv_tap(r, 24, 3, 3, 3, 3, 9, 37, &same2d, VT_F32, 0, VK_CONV_BIAS, 0);
    check_conv_tap(r, 16, 16, 1, 3, 3, 31, 15, &down, VT_F32, 0, VK_CONV_BIAS, 2048);
    if (thorough) {
        vk_conv_geom sub0 = { 1, 1, 1, 0, 0, 1, 0, 0, 1 }; /* 2x2, asymmetric pads */
        check_conv_tap(r, 32, 16, 1, 2, 2, 23, 19, &sub0, VT_F32, 0, VK_CONV_BIAS, 3000);
        check_conv_tap(r, 32, 32, 3, 3, 3, 40, 20, &same2d, VT_BF16, 1, AB, 8192);
        check_conv_tap(r, 5, 7, 3, 3, 3, 1, 1, &same2d, VT_F32, 0, AB, 0);
    }

    /* softmax, norms, activations, elementwise */
    check_softmax(r, 3, 1, 0, 1.0f);
    check_softmax(r, 17, 127, 5, 30.0f);
    if (thorough)
        check_softmax(r, 7, 1000, 1, 80.0f);
    static const int64_t nd[][2] = { { 1, 1 }, { 3, 7 }, { 17, 64 }, { 33, 1539 }, { 7, 96 } };
    for (int kind = 0; kind < 3; kind++)
        for (size_t i = 0; i < VD_ARRAY_SIZE(nd); i++) {
            if (!thorough && i != 3)
                continue;
            check_norm(r, kind, nd[i][0], nd[i][1], (int)(i & 1), (int)(i == 2));
            check_norm(r, kind, nd[i][0], nd[i][1], (int)!(i & 1), (int)(i != 2));
        }
    for (int a = 0; a < VK_ACT_COUNT; a++) {
        check_act(r, 10007, a, 8.0f);
        if (thorough) {
            check_act(r, 1, a, 1.0f);
            check_act(r, 33, a, 1.0f);
            check_act(r, 4099, a, 100.0f);
        }
    }
    for (int kind = 0; kind < 3; kind++) {
        check_elem(r, kind, 37, 1536 + 3);
        if (thorough) {
            check_elem(r, kind, 1, 1);
            check_elem(r, kind, 5, 7);
        }
    }

    /* rope on head dims 16 / 64 / 128, padded rows */
    check_rope(r, 2, 3, 5, 3, 128, 4);
    if (thorough) {
        check_rope(r, 1, 1, 1, 1, 16, 0);
        check_rope(r, 3, 4, 6, 4, 16, 0);
        check_rope(r, 2, 5, 3, 2, 64, 1);
    }

    /* attention: cross (lq != lk), padding of keys, T5 bias, head dims */
    check_attention(r, 2, 64, 37, 33, 33, 0, 0);
    check_attention(r, 3, 128, 300, 300, 291, 0, 8);
    check_attention(r, 2, 16, 19, 7, 7, 1, 0);
    if (thorough) {
        check_attention(r, 1, 16, 1, 1, 1, 0, 0);
        check_attention(r, 4, 16, 72, 72, 60, 0, 0);
        check_attention(r, 2, 64, 7, 130, 129, 0, 3);
        check_attention(r, 3, 128, 33, 512, 512, 0, 0);
        check_attention(r, 2, 64, 40, 40, 33, 1, 0);
        check_attention(r, 1, 128, 600, 700, 650, 0, 0);
        check_attention(r, 2, 16, 5, 17, 0, 0, 0);
    }
}

int vk_selfcheck_run(int n_threads, int isa, vk_prec prec, int level, uint64_t seed,
                     vk_check_fn cb, void *user)
{
    run r = { .rng = seed, .level = level, .cb = cb, .user = user };
    r.ref = vk_ctx_new(1, 1, NULL);
    r.fast = vk_ctx_new_ex(n_threads, isa, prec, NULL);
    if (!r.ref || !r.fast) {
        vk_ctx_free(&r.ref);
        vk_ctx_free(&r.fast);
        return -1;
    }
    /* bf16 operands: 8 significant bits, so products of random data differ
     * from fp32 by a few 2^-9 relative to the largest output */
    r.tol_prod = r.fast->prec == VK_PREC_BF16 ? 1.5e-2 : 2e-5;
    snprintf(r.tag, sizeof(r.tag), "%s %s", vk_isa_name(r.fast->isa), vk_prec_name(r.fast->prec));
    run_all(&r);
    vk_ctx_free(&r.ref);
    vk_ctx_free(&r.fast);
    return r.failed;
}

typedef struct pub_user {
    vd_log lg;
} pub_user;

static void pub_line(void *user, const char *name, double err, double tol, int guards, int ok)
{
    pub_user *u = user;
    vd_logf(&u->lg, ok ? VDIT_LOG_INFO : VDIT_LOG_ERROR, "%-72s err %.2e (tol %.0e)%s %s", name,
            err, tol, guards ? "" : " OVERRUN", ok ? "OK" : "FAIL");
}

int vdit_selfcheck(int n_threads, vdit_log_fn cb, void *user)
{
    pub_user u = { .lg = { .cb = cb, .user = user, .level = VDIT_LOG_DEBUG } };
    /* the tables this process would use: the default level in fp32, and in
     * bf16 where the CPU computes it natively */
    vk_isa isa = vk_isa_default();
    int failed = vk_selfcheck_run(n_threads, (int)isa, VK_PREC_F32, 0, 0x5eedu, pub_line, &u);
    if (failed >= 0 && vk_isa_native_bf16(isa)) {
        int f2 = vk_selfcheck_run(n_threads, (int)isa, VK_PREC_BF16, 0, 0x5eedu, pub_line, &u);
        failed = f2 < 0 ? f2 : failed + f2;
    }
    if (failed < 0)
        return vd_err(&u.lg, VDIT_ERR_NOMEM, "selfcheck: out of memory");
    if (failed > 0)
        return vd_err(&u.lg, VDIT_ERR_INTERNAL, "selfcheck: %d kernel checks failed", failed);
    return 0;
}
