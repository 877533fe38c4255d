/* Private to the kernel layer: the reference entries (so the fast table can
 * fall back to them entry by entry) and the hooks of the fast backends. */
#ifndef VDIT_KERNELS_IMPL_H
#define VDIT_KERNELS_IMPL_H

#include "kernels.h"

/* Plain C reference (ref.c). */
void vk_ref_linear(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y, vk_act act);
void vk_ref_gemm(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                 int64_t ldc);
void vk_ref_conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d, int h,
                 int w, float *y);
void vk_ref_conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                     const float *x, int h, int w, float *y);
/* The same for output rows [r0, r1) only (the fast entry's fallback). */
void vk_ref_conv_tap_rows(const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                          const float *x, int h, int w, float *y, int r0, int r1);
void vk_ref_softmax(vk_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld);
void vk_ref_layernorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                      const float *w, const float *b, float eps);
void vk_ref_rmsnorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                    float eps);
void vk_ref_chnorm(vk_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                   const float *beta);
void vk_ref_act(vk_ctx *c, float *x, int64_t n, vk_act act);
void vk_ref_modulate(vk_ctx *c, float *x, int64_t rows, int64_t dim, const float *shift,
                     const float *scale);
void vk_ref_add_gated(vk_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                      const float *gate);
void vk_ref_rope(vk_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
                 const float *cs);
void vk_ref_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                      const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads, int64_t hd,
                      int64_t lq, int64_t lk, int64_t kv_valid, float scale, const float *bias);

void vk_ref_widen(vk_ctx *c, float *dst, const void *src, vt_dtype t, size_t n);
void vk_ref_to_bf16(vk_ctx *c, uint16_t *dst, const float *src, size_t n);

/* A convolution's weights: the stored ones, or for a layer detached from
 * them (vk_conv_detach) plain f32 remade from the kept form into *tmp (the
 * caller frees). NULL: out of memory. */
const void *vk_conv_src(const vk_conv *cv, vt_dtype *t, float **tmp);

/* Scalar activation, shared by the reference and the fast tails. */
float vk_act1(float x, vk_act act);

/* Conversion of n stored weights (F32/F16/BF16, possibly unaligned) to fp32. */
void vk_weights_to_f32(float *dst, const void *src, vt_dtype t, size_t n);


#endif
