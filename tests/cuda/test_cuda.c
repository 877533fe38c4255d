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
