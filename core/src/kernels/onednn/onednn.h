/* oneDNN backend entries (onednn/dnnl.c); the rest of the kernel layer never
 * sees dnnl.h. */
#ifndef VDIT_KERNELS_ONEDNN_H
#define VDIT_KERNELS_ONEDNN_H

#include "../kernels.h"

void vk_dnnl_free(void *state);
/* Layer preparation at load (vk_linear_init / vk_conv_init). */
int vk_dnnl_linear_prep(vk_linear *l);
int vk_dnnl_conv_prep(vk_conv *cv);
int vk_dnnl_linear_prepare(vk_linear *const *ls, int n, vk_prec prec, int n_threads,
                           void (*done)(void *user, const vk_linear *l), void *user);

void vk_dnnl_linear(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y, vk_act act);
/* The same with bf16 operands and fp32 accumulation (vk_ctx.prec BF16). */
void vk_dnnl_linear_bf16(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                         vk_act act);
/* bf16: layers on the same input (x converted once), and a feed-forward
 * whose hidden layer is kept in bf16 in the caller's hidden area. */
void vk_dnnl_linear_n_bf16(vk_ctx *c, const vk_linear *const *ls, int n, const float *x,
                           int64_t m, float *const *ys);
void vk_dnnl_ffn_bf16(vk_ctx *c, const vk_linear *l0, const vk_linear *l2, vk_act act,
                      const float *x, int64_t m, float *hidden, float *y);
void vk_dnnl_gemm(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                  int64_t ldc);
void vk_dnnl_conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d, int h,
                  int w, float *y);
/* 1x1 convolutions (no stride, no padding) as one GEMM on the plain weights. */
void vk_dnnl_conv_1x1(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                      int h, int w, float *y);
void vk_dnnl_conv_tap_1x1(vk_ctx *c, const vk_conv *cv, int k, int flags, const float *x, int h,
                          int w, float *y);
/* The layer's weights as plain f32: [c_out, c_in * kd * kh * kw], and per
 * tap [kd][c_out][c_in * kh * kw]; the kept form, else made into *tmp for
 * the caller (who frees it). NULL: out of memory. */
const float *vk_dnnl_conv_plain(const vk_conv *cv, float **tmp);
const float *vk_dnnl_conv_plain_taps(const vk_conv *cv, float **tmp);
int vk_dnnl_conv_detach(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w);
size_t vk_dnnl_conv_bytes(const vk_conv *cv);
void vk_dnnl_conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                      const float *x, int h, int w, float *y);

#endif
