/* x86 kernels, parallel with OpenMP on vk_ctx->n_threads. Each file is
 * compiled for its level only (kernels/meson.build): vk_avx2_* need
 * AVX2+FMA+F16C, vk_avx512_* AVX-512 F/BW/DQ/VL, vk_bf16_* AVX-512 with
 * AVX512_BF16. Only dispatch.c puts them in a table (and peak.c calls its
 * loops), after checking the CPU. */
#ifndef VDIT_KERNELS_X86_H
#define VDIT_KERNELS_X86_H

#include "../kernels.h"

void vk_avx2_widen(vk_ctx *c, float *dst, const void *src, vt_dtype t, size_t n);
void vk_avx2_softmax(vk_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld);
void vk_avx2_layernorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                       const float *w, const float *b, float eps);
void vk_avx2_rmsnorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                     float eps);
void vk_avx2_chnorm(vk_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                    const float *beta);
void vk_avx2_act(vk_ctx *c, float *x, int64_t n, vk_act act);
void vk_avx2_modulate(vk_ctx *c, float *x, int64_t rows, int64_t dim, const float *shift,
                      const float *scale);
void vk_avx2_add_gated(vk_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                       const float *gate);
void vk_avx2_rope(vk_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
                  const float *cs);
/* Convolution with c_out <= 4 and stride 1 (wplain: f32 [c_out, c_in*kd*kh*kw]).
 * acc: add into y instead of overwriting it. Returns -1, having done
 * nothing, when the shape does not qualify or scratch memory ran out. */
int vk_avx2_conv_small(vk_ctx *c, const vk_conv *cv, const float *wplain, const vk_conv_geom *g,
                       const float *x, int d, int h, int w, float *y, int acc);
void vk_avx2_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                       int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                       const float *bias);

/* Linear with F16/BF16 weights for m <= VK_HALF_SMALL_M rows, widening the
 * weights in registers (linear_half.c). Returns -1, having done nothing,
 * when the layer or m does not qualify. */
#define VK_HALF_SMALL_M 256
int vk_avx2_linear_half(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                        vk_act act);

/* AVX-512 F/BW/DQ/VL (x86/attention_avx512.c). */
void vk_avx512_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                         const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                         int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                         const float *bias);

/* AVX512_BF16 (x86/bf16.c, x86/attention_bf16.c). */
void vk_bf16_to_bf16(vk_ctx *c, uint16_t *dst, const float *src, size_t n);
void vk_bf16_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                       int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                       const float *bias);

/* Peak-rate loops of vk_peak_gflops (peak.c; x86/peak_*.c): iters rounds of
 * independent multiply-add chains c = c * a + b (bf16: c += a . b), the
 * result summed into *sink; return the flops done. */
double vk_avx2_peak_fma(int64_t iters, float a, float b, float *sink);
double vk_avx512_peak_fma(int64_t iters, float a, float b, float *sink);
double vk_bf16_peak_dot(int64_t iters, float a, float b, float *sink);

#endif
