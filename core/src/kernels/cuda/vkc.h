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

/* ---- general products and the VAE's frame operations ----
 * Frames are channel-first [c, h, w] fp32, as the CPU's VAE keeps them. */

/* C[m, n] = alpha op(A) op(B) + beta C, all fp32 in device memory, row-major
 * with leading dimensions lda, ldb, ldc (elements). op(A) = A [m, k] (lda >=
 * k) or, ta = 1, Aᵀ of A [k, m] (lda >= m); likewise B ([k, n], or tb = 1:
 * [n, k]). bf16 = 1 rounds A and B to bf16 (nearest even) and multiplies on
 * tensor cores with fp32 accumulation; bf16 = 0 is fp32 without TF32. beta
 * = 0 never reads C. m, n >= 1; k = 0 scales C by beta. */
void vkc_gemm(vkc_ctx *c, int bf16, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
              int64_t ldc);

/* Row-wise softmax in place of x[rows, cols] (row stride ld) after scaling
 * by `scale`: x = softmax(scale x), fp32, max-subtracted. */
void vkc_softmax(vkc_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld, float scale);

/* The spatial geometry of a 2D convolution: kernel kh x kw, strides sh, sw,
 * zero padding ph0 (top), ph1 (bottom), pw0 (left), pw1 (right). The output
 * is ho = (h + ph0 + ph1 - kh) / sh + 1 by wo = (w + pw0 + pw1 - kw) / sw + 1. */
typedef struct vkc_conv_geom {
    int kh, kw, sh, sw, ph0, ph1, pw0, pw1;
} vkc_conv_geom;

/* One frame through a 2D convolution, as vk_funcs.conv_tap: y[co, ho, wo]
 * (+)= conv2d(x[ci, h, w], W[co, ci, kh, kw]) (+ bias[co]). W in device
 * memory of type wt: VKC_F32 with bf16 = 0, VKC_BF16 with bf16 = 1 (which
 * rounds x to bf16; fp32 accumulation), another pairing is a sticky error;
 * bias fp32 or NULL; acc = 1 adds into y, acc = 0 overwrites it. x and y
 * must not alias. Implicit GEMM or im2col with a bounded work area; no limit
 * on the frame size. */
void vkc_conv2d(vkc_ctx *c, int bf16, const float *x, int64_t ci, int64_t h, int64_t w,
                const void *wts, int wt, int64_t co, const vkc_conv_geom *g, const float *bias,
                int acc, float *y);

/* The Wan-VAE's RMS_norm over channels (vk_funcs.chnorm, no beta): x [ch, s],
 * y[c, i] = x[c, i] / max(||x[:, i]||_2, 1e-12) * sqrt(ch) * gamma[c], the
 * norm summed in fp32; then y = SiLU(y) when silu. x == y allowed. */
void vkc_chnorm(vkc_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                int silu);

/* y[i] = a[i] b[i] for n values (y may be a or b): the text encoder's gated
 * feed-forward. */
void vkc_mul(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n);

/* y[i] = a[i] + s b[i] for n values (y may be a or b). */
void vkc_add_scaled(vkc_ctx *c, float *y, const float *a, const float *b, float s, int64_t n);

/* Strided copy of a box of nd <= 6 dimensions (sizes dims[0..nd), the last
 * the fastest): dst[Σ i_d dstride[d]] = src[Σ i_d sstride[d]] for every index
 * (element strides; dstride >= 0, sstride of any sign: every source index
 * must lie in src's buffer). Covers copies, crops, transposes, the
 * upsampler's parity scatter, (un)patchify and the text encoder's Toeplitz
 * position bias. dst and src must not overlap. */
void vkc_copy_nd(vkc_ctx *c, float *dst, const int64_t *dstride, const float *src,
                 const int64_t *sstride, const int64_t *dims, int nd);

/* Wan2.2 shortcuts (core/src/vae/vae.c avg_share and dup_add, same
 * arguments). avg_share: the AvgDown3D share of input frame x [ci, h, w] at
 * time offset dt into sc [sco, h / fs, w / fs]: out channel o sums members k
 * = o grp + j (j < grp) whose rm = k % F (F = ft fs²) has rm / fs² == dt,
 * reading x[k / F, a fs + (rm / fs) % fs, b fs + rm % fs]; first = 1 writes
 * (a channel without members at dt becomes 0), first = 0 adds.
 * dup_add: y[o, a fs + dh, b fs + dw] = x[same] + xin[(((o ft + dt) fs + dh)
 * fs + dw) / rep, a, b] for xin [*, h, w], x, y [co, h fs, w fs] (y may be
 * x). */
void vkc_avg_share(vkc_ctx *c, const float *x, int64_t ci, int64_t h, int64_t w, int ft, int fs,
                   int grp, int64_t sco, int dt, int first, float *sc);
void vkc_dup_add(vkc_ctx *c, const float *xin, int64_t h, int64_t w, int64_t co, int ft, int fs,
                 int rep, int dt, const float *x, float *y);

#ifdef __cplusplus
}
#endif

#endif
