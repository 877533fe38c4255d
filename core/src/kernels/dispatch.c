/* Which implementation serves which entry, per instruction-set level and
 * precision. The one place that knows every backend; models and the oneDNN
 * wrapper only see the table of their context. */
#include <pthread.h>

#include "impl.h"
#include "onednn/onednn.h"
#if VK_HAVE_X86
#include "x86/x86.h"
#endif

static const vk_funcs ref_funcs = {
    .linear = vk_ref_linear,
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

/* tables[level][precision], filled once (dav1d style: each level starts
 * from the one below it and replaces what it does better). */
static vk_funcs tables[VK_ISA_COUNT][2];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_level(vk_funcs *f, vk_isa isa, int bf16)
{
    /* any CPU: oneDNN for the products (it picks its own code for the CPU),
     * the reference for the rest; the level of other architectures */
    *f = ref_funcs;
    f->linear = vk_dnnl_linear;
    f->gemm = vk_dnnl_gemm;
    f->conv = vk_dnnl_conv;
    f->conv_tap = vk_dnnl_conv_tap;
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
    /* VK_ISA_AVX512 has no fp32 kernels of its own yet: on Zen 4 a zmm FMA
     * runs as two ymm halves, so the AVX2 code is as fast there */
    if (isa >= VK_ISA_AVX512_BF16 && bf16) {
        f->linear = vk_dnnl_linear_bf16;
        f->attention = vk_avx2_attention; /* TODO bf16 */
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
