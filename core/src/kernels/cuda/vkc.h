/* CUDA backend: the C interface of core/src/kernels/cuda/ (built with nvcc
 * when meson's `cuda` option finds the toolkit; VK_HAVE_CUDA then 1). No
 * CUDA type appears here, so the rest of the library stays plain C.
 *
 * A vkc_ctx is one device, one stream, a cuBLASLt handle and its
 * workspace. Every kernel below is enqueued on that stream with device
 * pointers and returns at once; errors (a launch that failed, a cuBLASLt
 * status) are sticky in the context: the first one is kept, later calls do
 * nothing, and vkc_sync returns it. Activations are fp32 between kernels,
 * row-major and contiguous unless a leading dimension says otherwise.
 * Precision per call: bf16 = 1 multiplies bf16 operands with fp32
 * accumulation (tensor cores); bf16 = 0 is fp32 arithmetic without TF32, for
 * conformance. Not thread-safe: one host thread per context at a time. */
#ifndef VDIT_KERNELS_CUDA_VKC_H
#define VDIT_KERNELS_CUDA_VKC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkc_ctx vkc_ctx;

/* Weight and activation element types (as vt_dtype: F32 0, F16 1, BF16 2,
 * F8_E4M3 3). */
enum { VKC_F32 = 0, VKC_F16 = 1, VKC_BF16 = 2, VKC_F8E4M3 = 3 };

/* Activations, as vk_act. */
enum { VKC_ACT_NONE = 0, VKC_ACT_GELU_TANH, VKC_ACT_GELU_ERF, VKC_ACT_SILU, VKC_ACT_RELU };

/* Devices the runtime sees (>= 0), or -1 with the reason in err (no driver,
 * driver older than the runtime, ...). */
int vkc_device_count(char *err, size_t n);

/* A context on device `device`; 0, or -1 with the reason in err. */
int vkc_ctx_new(int device, vkc_ctx **out, char *err, size_t n);
void vkc_ctx_free(vkc_ctx **c);
/* "NVIDIA H200 (sm_90, 139.8 GiB)" */
const char *vkc_device_name(const vkc_ctx *c);
/* Bytes of device memory in use by this context's allocations, and the peak. */
size_t vkc_mem_used(const vkc_ctx *c);
size_t vkc_mem_peak(const vkc_ctx *c);

/* Device memory; NULL when there is none (the error is not sticky). */
void *vkc_alloc(vkc_ctx *c, size_t bytes);
void vkc_free(vkc_ctx *c, void *p);
/* Copies; upload returns once src may be reused, download once dst holds
 * the data (it waits for the stream). 0, or -1 (sticky error). */
int vkc_upload(vkc_ctx *c, void *dst, const void *src, size_t bytes);
int vkc_download(vkc_ctx *c, void *dst, const void *src, size_t bytes);
void vkc_memset0(vkc_ctx *c, void *dst, size_t bytes);
/* Waits for the stream; 0, or -1 and vkc_error tells the first error. */
int vkc_sync(vkc_ctx *c);
const char *vkc_error(const vkc_ctx *c);

/* n stored weights of type `from` (VKC_F32/F16/BF16/F8E4M3, host memory, any
 * alignment) uploaded and converted on the device to `to` (VKC_F32 or
 * VKC_BF16; fp8 is scaled by `scale`, others ignore it). Device memory, or
 * NULL (no memory or a sticky error). */
void *vkc_weights(vkc_ctx *c, const void *host, int from, size_t n, int to, float scale);

/* y[m, n] = act(x[m, k] Wᵀ + bias) with W [n, k] in device memory of type
 * wt (VKC_F32 or VKC_BF16; with bf16 = 1 the weights must be VKC_BF16 and x
 * is rounded to bf16 first); bias [n] fp32 or NULL. ybf: y is bf16 (else
 * fp32). x may be bf16 when xbf is set. cuBLASLt with fp32 accumulation;
 * bias and activation in its epilogue or a following kernel. */
void vkc_linear(vkc_ctx *c, int bf16, const void *x, int xbf, int64_t m, int64_t k,
                const void *w, int wt, const float *bias, int64_t n, int act, void *y, int ybf);

/* The operations of vk_funcs (kernels.h, reference in kernels/ref.c) on
 * device pointers. LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b per
 * row of dim (w, b NULL: 1, 0), statistics in fp32 over the row. RMSNorm: y
 * = x * rsqrt(mean(x²) + eps) * w (w NULL: 1). x == y allowed in both. */
void vkc_layernorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                   const float *w, const float *b, float eps);
void vkc_rmsnorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                 float eps);
/* x[rows, dim] += y[rows, dim] * gate[dim] (gate NULL: 1). */
void vkc_add_gated(vkc_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                   const float *gate);
/* In-place activation of n values. */
void vkc_act(vkc_ctx *c, float *x, int64_t n, int act);
/* y[i] = a[i] + b[i] for n values (y may be a or b). */
void vkc_add(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n);
/* y[i] += v for n values. */
void vkc_add_const(vkc_ctx *c, float *y, int64_t n, float v);
/* Rotary embedding as vk_funcs.rope: x [n_tok, n_heads * head_dim] (row
 * stride ld), pairs (2i, 2i + 1) rotated by cs[tok * head_dim + 2i] (cos)
 * and cs[tok * head_dim + 2i + 1] (sin). In place. */
void vkc_rope(vkc_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
              const float *cs);
/* Multi-head attention as vk_funcs.attention without bias: q [lq, heads*hd]
 * (ldq), k, v [lk, heads*hd] (ldk, ldv), o [lq, heads*hd] (ldo); o =
 * softmax(scale q kᵀ) v per head, flash-style (online softmax, no [lq, lk]
 * matrix), fp32 or (bf16 = 1) bf16 operands with fp32 accumulation. hd <=
 * 256 (128 and 64 fast). lq, lk >= 1. */
void vkc_attention(vkc_ctx *c, int bf16, const float *q, int64_t ldq, const float *k, int64_t ldk,
                   const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads, int64_t hd,
                   int64_t lq, int64_t lk, float scale);

#ifdef __cplusplus
}
#endif

#endif
