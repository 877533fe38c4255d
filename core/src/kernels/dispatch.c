/* Which implementation serves which entry, per instruction-set level and
 * precision, and which serves which shape. The one place that knows every
 * implementation; models see the table of their context, and the oneDNN
 * wrapper only runs what it is given. */
#include <pthread.h>

#include "impl.h"
#include "onednn/onednn.h"
#if VK_HAVE_X86
#include "x86/x86.h"
#endif

/* The composite entries as calls of the table's own linear: every level's
 * unless it has its own. */
static void linear_n_each(vk_ctx *c, const vk_linear *const *ls, int n, const float *x, int64_t m,
                          float *const *ys)
{
    for (int i = 0; i < n; i++)
        c->f->linear(c, ls[i], x, m, ys[i], VK_ACT_NONE);
}

static void ffn_two(vk_ctx *c, const vk_linear *l0, const vk_linear *l2, vk_act act,
                    const float *x, int64_t m, float *hidden, float *y)
{
    c->f->linear(c, l0, x, m, hidden, act);
    c->f->linear(c, l2, hidden, m, y, VK_ACT_NONE);
}

static const vk_funcs ref_funcs = {
    .linear = vk_ref_linear,
    .linear_n = linear_n_each,
    .ffn = ffn_two,
    .gemm = vk_ref_gemm,
    .conv = vk_ref_conv,
    .conv_tap = vk_ref_conv_tap,
    .softmax = vk_ref_softmax,
    .layernorm = vk_ref_layernorm,
    .rmsnorm = vk_ref_rmsnorm,
    .chnorm = vk_ref_chnorm,
    .act = vk_ref_act,
    .modulate = vk_ref_modulate,
    .add_gated = vk_ref_add_gated,
    .rope = vk_ref_rope,
    .attention = vk_ref_attention,
    .widen = vk_ref_widen,
    .to_bf16 = vk_ref_to_bf16,
};

/* ---- shape choices ---- */

static int is_1x1(const vk_conv *cv, const vk_conv_geom *g, int taps)
{
    return (taps || cv->kd == 1) && cv->kh == 1 && cv->kw == 1 && g->sh == 1 && g->sw == 1 &&
           (taps || (g->sd == 1 && !(g->pd0 | g->pd1))) && !(g->ph0 | g->ph1 | g->pw0 | g->pw1);
}

/* fp32 linear: 16-bit weights with few rows are widened in registers (own
 * kernel) rather than widened as a whole matrix for oneDNN. */
static void linear_f32(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                       vk_act act)
{
    if (c->f->linear_small && l->wtype != VT_F32 && m <= VK_HALF_SMALL_M &&
        !c->f->linear_small(c, l, x, m, y, act))
        return;
    vk_dnnl_linear(c, l, x, m, y, act);
}

/* Convolutions: 1x1 as one GEMM on the plain layout (a blocked convolution
 * would reorder input and output for little arithmetic); at most 4 outputs
 * with stride 1 (the VAE's last layer) by the own direct kernel (blocked
 * layouts pad the outputs to 16); the rest by oneDNN. */
static void conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                 int h, int w, float *y)
{
    if (is_1x1(cv, g, 0)) {
        vk_dnnl_conv_1x1(c, cv, g, x, d, h, w, y);
        return;
    }
    if (c->f->conv_small && cv->c_out <= 4 && g->sd == 1 && g->sh == 1 && g->sw == 1) {
        float *tmp;
        const float *wp = vk_dnnl_conv_plain(cv, &tmp);
        int r = wp ? c->f->conv_small(c, cv, wp, g, x, d, h, w, y, 0) : -1;
        vd_free(tmp);
        if (!r)
            return;
    }
    vk_dnnl_conv(c, cv, g, x, d, h, w, y);
}

static void conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                     const float *x, int h, int w, float *y)
{
    if (k < 0 || k >= cv->kd)
        return;
    if (is_1x1(cv, g, 1)) {
        vk_dnnl_conv_tap_1x1(c, cv, k, flags, x, h, w, y);
        return;
    }
    if (c->f->conv_small && cv->c_out <= 4 && g->sh == 1 && g->sw == 1) {
        float *tmp;
        const float *wt = vk_dnnl_conv_plain_taps(cv, &tmp);
        vk_conv one = *cv;
        one.kd = 1;
        one.bias = (flags & VK_CONV_BIAS) ? cv->bias : NULL;
        vk_conv_geom g2 = *g;
        g2.sd = 1;
        g2.pd0 = g2.pd1 = 0;
        size_t tap = (size_t)cv->c_out * cv->c_in * cv->kh * cv->kw;
        int r = wt ? c->f->conv_small(c, &one, wt + (size_t)k * tap, &g2, x, 1, h, w, y,
                                      (flags & VK_CONV_ACC) != 0)
                   : -1;
        vd_free(tmp);
        if (!r)
            return;
    }
    vk_dnnl_conv_tap(c, cv, g, k, flags, x, h, w, y);
}

/* tables[level][precision], filled once (dav1d style: each level starts
 * from the one below it and replaces what it does better). */
static vk_funcs tables[VK_ISA_COUNT][2];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_level(vk_funcs *f, vk_isa isa, int bf16)
{
    /* any CPU: oneDNN for the products (it picks its own code for the CPU),
     * the reference for the rest; the level of other architectures */
    *f = ref_funcs;
    f->linear = linear_f32;
    f->gemm = vk_dnnl_gemm;
    f->conv = conv;
    f->conv_tap = conv_tap;
#if VK_HAVE_X86
    if (isa >= VK_ISA_AVX2) {
        f->softmax = vk_avx2_softmax;
        f->layernorm = vk_avx2_layernorm;
        f->rmsnorm = vk_avx2_rmsnorm;
        f->chnorm = vk_avx2_chnorm;
        f->act = vk_avx2_act;
        f->modulate = vk_avx2_modulate;
        f->add_gated = vk_avx2_add_gated;
        f->rope = vk_avx2_rope;
        f->attention = vk_avx2_attention;
        f->widen = vk_avx2_widen;
        f->linear_small = vk_avx2_linear_half;
        f->conv_small = vk_avx2_conv_small;
    }
    /* AVX-512: the fp32 attention keeps a block's scores in registers (32
     * zmm); elsewhere the AVX2 code is as fast (on Zen 4 a zmm FMA runs as
     * two ymm halves) */
    if (isa >= VK_ISA_AVX512)
        f->attention = vk_avx512_attention;
    if (isa >= VK_ISA_AVX512_BF16 && bf16) {
        f->linear = vk_dnnl_linear_bf16;
        f->linear_n = vk_dnnl_linear_n_bf16;
        f->ffn = vk_dnnl_ffn_bf16;
        f->attention = vk_bf16_attention;
        f->to_bf16 = vk_bf16_to_bf16;
    }
#else
    (void)isa;
    (void)bf16;
#endif
}

static void init(void)
{
    for (int i = 0; i < VK_ISA_COUNT; i++)
        for (int p = 0; p < 2; p++)
            init_level(&tables[i][p], (vk_isa)i, p && vk_isa_native_bf16((vk_isa)i));
}

static const vk_backend cpu_backend = {
    .name = "cpu (oneDNN)",
    .state_free = vk_dnnl_free,
    .linear_init = vk_dnnl_linear_prep,
    .linear_prepare = vk_dnnl_linear_prepare,
    .conv_init = vk_dnnl_conv_prep,
    .conv_detach = vk_dnnl_conv_detach,
    .conv_plain = vk_dnnl_conv_plain,
    .conv_bytes = vk_dnnl_conv_bytes,
};

const vk_backend *vk_backend_cpu(void)
{
    return &cpu_backend;
}

const vk_funcs *vk_funcs_ref(void)
{
    return &ref_funcs;
}

const vk_funcs *vk_funcs_for(vk_isa isa, vk_prec prec)
{
    pthread_once(&once, init);
    if (isa > vk_isa_cpu())
        isa = vk_isa_cpu();
    if (isa < 0)
        isa = VK_ISA_C;
    return &tables[isa][prec == VK_PREC_BF16 && vk_isa_native_bf16(isa)];
}

const vk_funcs *vk_funcs_fast(void)
{
    return vk_funcs_for(vk_isa_default(), VK_PREC_F32);
}
