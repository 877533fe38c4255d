/*
 * Kernel layer: every numeric operation the models use.
 *
 * Activations are fp32, contiguous, row-major. Weights are held in their
 * stored type (F32/F16/BF16) and prepared once when a model is loaded
 * (vk_linear_init / vk_conv_init); preparing may pack or convert, never per
 * call.
 *
 * Tables of function pointers (dav1d style), one per instruction-set level
 * and precision, chosen at run time (dispatch.c): vk_funcs_ref() is plain,
 * obviously-correct C (ref.c) and needs no oneDNN; the others have oneDNN
 * linear/gemm/conv (onednn/) and, on x86, per-ISA versions of the rest (x86/,
 * each file compiled with its own -m flags; the rest of the library is built
 * for the baseline of the target, so it runs on any CPU of the architecture):
 * a flash-style attention and vectorised norms, softmax, activations, rope.
 * The CPU is read once (cpu.c, CPUID); VDIT_CPU=c|avx2|avx512|avx512_bf16
 * lowers the level for the whole process (tests, benchmarks), and a context
 * may ask for any level up to the CPU's. Precision VK_PREC_BF16 computes the
 * products (linear, attention) with bf16 operands and fp32 accumulation;
 * activations stay fp32 between kernels.
 * oneDNN is used only inside kernels/onednn/. Models call through vk_ctx->f.
 * A fast entry that cannot run (oneDNN refusing a shape, no memory for its
 * scratch) computes the result with the reference and logs one warning.
 * `vdit selfcheck` and tests/kernels compare every fast entry with the
 * reference (kernels/selfcheck.c), the tests at every level the CPU has.
 *
 * Threads: a vk_ctx carries the thread count; kernels parallelise internally
 * with at most that many OpenMP threads (set per call on the calling thread,
 * no process-wide setting). A vk_ctx is used by one thread at a time; layers
 * (vk_linear, vk_conv) are read-only after init and may be shared by
 * contexts on different threads.
 */
#ifndef VDIT_KERNELS_H
#define VDIT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../common.h"
#include "../tensor.h"

typedef enum vk_act {
    VK_ACT_NONE = 0,
    VK_ACT_GELU_TANH,
    VK_ACT_GELU_ERF,
    VK_ACT_SILU,
    VK_ACT_RELU,
    VK_ACT_COUNT
} vk_act;

/* A linear layer y = x Wᵀ + b, W stored [n_out, n_in] as PyTorch does.
 * `w` points at stored data (e.g. inside a mapped checkpoint) and must
 * outlive the layer unless the implementation copied it. */
typedef struct vk_linear {
    int64_t n_out, n_in;
    vt_dtype wtype;      /* stored type of w */
    const void *w;       /* [n_out, n_in] stored */
    float *bias;         /* [n_out] fp32 (owned) or NULL */
    void *prep;          /* implementation-private prepared form (owned) */
    void (*prep_free)(void *prep);
} vk_linear;

/* A convolution, 2D or 3D, weights [c_out, c_in, kd, kh, kw] (kd = 1 for 2D),
 * groups = 1. Input/outputs are [C, D, H, W] (batch 1, PyTorch NCDHW). */
typedef struct vk_conv {
    int c_out, c_in, kd, kh, kw;
    vt_dtype wtype;
    const void *w;       /* stored weights; after vk_conv_detach an owned copy or NULL */
    float *bias;         /* [c_out] fp32 (owned) or NULL */
    void *prep;
    void (*prep_free)(void *prep);
} vk_conv;

typedef struct vk_conv_geom {
    int sd, sh, sw;                /* strides */
    int pd0, pd1, ph0, ph1, pw0, pw1; /* zero padding before/after per axis */
} vk_conv_geom;

typedef struct vk_ctx vk_ctx;

/* Instruction-set levels, each including the ones before it. */
typedef enum vk_isa {
    VK_ISA_C = 0,        /* no own SIMD code: reference kernels + oneDNN */
    VK_ISA_AVX2,         /* AVX2 + FMA + F16C */
    VK_ISA_AVX512,       /* + AVX-512 F/BW/DQ/VL */
    VK_ISA_AVX512_BF16,  /* + AVX512_BF16 (vdpbf16ps): native bf16 products */
    VK_ISA_COUNT
} vk_isa;

typedef enum vk_prec {
    VK_PREC_F32 = 0, /* fp32 everywhere: exact against the conformance vectors */
    VK_PREC_BF16,    /* bf16 operands, fp32 accumulation, in linear and attention */
    VK_PREC_AUTO,    /* bf16 where the CPU computes it natively, else fp32 */
} vk_prec;

/* Flags of vk_funcs.conv_tap. */
enum {
    VK_CONV_ACC = 1,  /* add into y instead of overwriting it */
    VK_CONV_BIAS = 2, /* add the bias */
};

typedef struct vk_funcs {
    /* y[m, n_out] = act(x[m, n_in] Wᵀ + b). x and y must not alias. */
    void (*linear)(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y, vk_act act);
    /* Several layers of the same input width on one input (the DiT's q, k,
     * v): ys[i][m, ls[i]->n_out] = x ls[i]ᵀ + b (no activation). The same
     * result as n linear calls; an implementation may share work between
     * them (bf16: x converted once). */
    void (*linear_n)(vk_ctx *c, const vk_linear *const *ls, int n, const float *x, int64_t m,
                     float *const *ys);
    /* Feed-forward y[m, l2->n_out] = act(x l0ᵀ + b0) l2ᵀ + b2, l2->n_in ==
     * l0->n_out. hidden: the caller's work area of m x l0->n_out floats
     * (its contents after the call are unspecified; bf16 keeps the hidden
     * layer there in bf16, which the second product rounds its operand to
     * anyway). x, hidden and y must not alias. */
    void (*ffn)(vk_ctx *c, const vk_linear *l0, const vk_linear *l2, vk_act act, const float *x,
                int64_t m, float *hidden, float *y);

    /* General fp32 GEMM: C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C.
     * op(A) = A (lda >= k) or Aᵀ (ta = 1, A is [k,m], lda >= m); likewise B. */
    void (*gemm)(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                 int64_t ldc);

    /* y[c_out, Do, Ho, Wo] = conv(x[c_in, D, H, W]) + bias. Output size
     * Do = (D + pd0 + pd1 - kd) / sd + 1, etc. */
    void (*conv)(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                 int h, int w, float *y);

    /* One temporal tap of a convolution applied to one frame, as a 2D
     * convolution: y[c_out, Ho, Wo] (+)= conv2d(x[c_in, H, W], W[:, :, k]) (+ bias),
     * 0 <= k < kd (k = 0 for a 2D convolution). Spatial geometry from g (sh,
     * sw, ph0/1, pw0/1; its temporal fields are ignored); flags VK_CONV_*.
     * x and y must not alias. Summing the kd taps over kd frames equals `conv`
     * on the frames stacked along D, up to fp32 rounding, so a causal
     * convolution can keep its frames anywhere (a ring of frame buffers, no
     * stacked copy) and skip the taps of zero frames. Working memory is
     * bounded by row bands of about vk_ctx.band_bytes, not by the frame. */
    void (*conv_tap)(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                     const float *x, int h, int w, float *y);

    /* Row-wise softmax in place over `cols`, rows separated by `ld`. */
    void (*softmax)(vk_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld);

    /* y = (x - mean) / sqrt(var + eps) * w + b per row of `dim`; w, b may be NULL.
     * x == y allowed. */
    void (*layernorm)(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                      const float *w, const float *b, float eps);

    /* y = x * rsqrt(mean(x²) + eps) * w per row; w may be NULL. x == y allowed. */
    void (*rmsnorm)(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                    const float *w, float eps);

    /* Channel-first L2 norm (Wan-VAE RMS_norm): x is [C, S];
     * y[c, s] = x[c, s] / max(||x[:, s]||_2, 1e-12) * sqrt(C) * gamma[c] (+ beta[c] if beta).
     * x == y allowed. */
    void (*chnorm)(vk_ctx *c, const float *x, float *y, int64_t ch, int64_t s,
                   const float *gamma, const float *beta);

    /* In-place activation of n values. */
    void (*act)(vk_ctx *c, float *x, int64_t n, vk_act act);

    /* x[rows, dim] = x * (1 + scale[dim]) + shift[dim] (adaLN modulation). */
    void (*modulate)(vk_ctx *c, float *x, int64_t rows, int64_t dim, const float *shift,
                     const float *scale);

    /* x[rows, dim] += y[rows, dim] * gate[dim]; gate NULL means 1. */
    void (*add_gated)(vk_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                      const float *gate);

    /* Rotary embedding on x[n_tok, n_heads * head_dim] (row stride ld), in place.
     * Pairs (2i, 2i+1) of each head are rotated by the angle whose cos/sin are
     * cs[tok * head_dim + 2i] and cs[tok * head_dim + 2i + 1] (see vk_rope3d_table). */
    void (*rope)(vk_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                 int64_t ld, const float *cs);

    /* Multi-head attention, never materialising [lq, lk] for large sizes.
     * q: [lq, heads*hd] rows of stride ldq; k, v: [lk, heads*hd] (ldk, ldv);
     * o: [lq, heads*hd] (ldo). o = softmax(scale * q kᵀ + bias) v per head.
     * bias: NULL or [heads, lq, lk] additive (T5 relative position + mask).
     * Only the first kv_valid keys take part (kv_valid <= lk). A query with no
     * key taking part (kv_valid == 0, or every bias -inf) gets zeros. */
    void (*attention)(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                      const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                      int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                      const float *bias);

    /* Helpers of the oneDNN backend (not called by models). */
    /* Stored weights (F32/F16/BF16, possibly unaligned) to fp32, on the context's threads. */
    void (*widen)(vk_ctx *c, float *dst, const void *src, vt_dtype t, size_t n);
    /* fp32 to bf16, round to nearest even (NaN stays NaN), on the context's threads. */
    void (*to_bf16)(vk_ctx *c, uint16_t *dst, const float *src, size_t n);
    /* Linear with F16/BF16 weights for few rows, widening in registers; returns -1,
     * having done nothing, when it does not apply. NULL: none at this level. */
    int (*linear_small)(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                        vk_act act);
    /* Convolution with c_out <= 4, stride 1 (wplain: f32 [c_out, c_in*kd*kh*kw]); acc:
     * add into y. Returns -1, having done nothing, when it does not apply. NULL: none. */
    int (*conv_small)(vk_ctx *c, const vk_conv *cv, const float *wplain, const vk_conv_geom *g,
                      const float *x, int d, int h, int w, float *y, int acc);
} vk_funcs;

/* The plain C reference table, and the table of a level and precision
 * (a level above the CPU's gives the CPU's; VK_PREC_BF16 at a level without
 * native bf16 gives that level's fp32 table).
 * vk_funcs_fast(): the default level in fp32. */
const vk_funcs *vk_funcs_ref(void);
const vk_funcs *vk_funcs_for(vk_isa isa, vk_prec prec);
const vk_funcs *vk_funcs_fast(void);

/* The CPU's level (CPUID, read once); the default level: the CPU's, lowered
 * by VDIT_CPU when set. Names: "c", "avx2", "avx512", "avx512_bf16". */
vk_isa vk_isa_cpu(void);
vk_isa vk_isa_default(void);
const char *vk_isa_name(vk_isa isa);
/* 0 and *isa set, or -1 for an unknown name. */
int vk_isa_parse(const char *name, vk_isa *isa);
/* VDIT_CPU's value when it named no level (and was ignored), else NULL. */
const char *vk_isa_env_rejected(void);
/* Whether the level computes bf16 products natively (AMX or AVX512_BF16). */
int vk_isa_native_bf16(vk_isa isa);
const char *vk_prec_name(vk_prec p);

/* A backend: what stands behind a level's table for the heavy operations and
 * owns the layers' prepared weights and each context's state. Today the CPU
 * backend (oneDNN for products and convolutions, kernels/onednn/); a device
 * backend (CUDA) fits the same seam: its layers' prep holds device copies,
 * its state the streams and buffers, its table the entries. Which
 * implementation serves which shape is decided in dispatch.c, not here. */
typedef struct vk_backend {
    const char *name;
    /* the context's state (vk_ctx.be_state, made on first use) */
    void (*state_free)(void *state);
    /* preparing layers, at vk_linear_init / vk_conv_init (model-private) */
    int (*linear_init)(vk_linear *l);
    int (*linear_prepare)(vk_linear *const *ls, int n, vk_prec prec, int n_threads,
                          void (*done)(void *user, const vk_linear *l), void *user);
    int (*conv_init)(vk_conv *cv);
    /* c NULL: for the reference kernels (an owned plain copy) */
    int (*conv_detach)(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w);
    /* the weights as plain f32 [c_out, c_in * kd * kh * kw]: the kept form,
     * else made into *tmp for the caller to free (NULL: no memory) */
    const float *(*conv_plain)(const vk_conv *cv, float **tmp);
    /* bytes of the layer's prepared forms (owned weights and layouts) */
    size_t (*conv_bytes)(const vk_conv *cv);
} vk_backend;

/* The backend of every CPU level (dispatch.c). */
const vk_backend *vk_backend_cpu(void);

/* Kernel context: thread count, the table in use, oneDNN engine/stream and
 * primitive cache (one primitive per shape, built on first use), scratch
 * memory (grows to the largest need: up to 32 MiB for widening f16/bf16
 * weights, the size of K for attention, the blocked copies of a
 * convolution's input and output). */
struct vk_ctx {
    int n_threads;
    vk_isa isa;          /* level of the table in use (VK_ISA_C for the reference) */
    vk_prec prec;        /* VK_PREC_F32 or VK_PREC_BF16 (never AUTO) */
    const vk_funcs *f;
    const vk_backend *be; /* the backend behind f */
    void *be_state;      /* the backend's state for this context, NULL until used */
    void *scratch;       /* grows on demand, see vk_scratch */
    size_t scratch_size;
    size_t band_bytes;   /* conv_tap: bytes per row band of input or output (0: 8 MiB) */
    vd_log *log;
    /* A CUDA device (kernels/cuda/vkc.h: a vkc_ctx, owned: vk_ctx_free frees
     * it) where the models that were uploaded to it run their heavy parts
     * (the DiT's blocks), in bf16 when cuda_bf16 is set, else exact fp32;
     * NULL: the CPU only. */
    void *cuda;
    int cuda_bf16;
};

/* ---- devices (device.c) ---- */
typedef struct vk_device {
    int cuda;    /* 0: the CPU */
    int index;   /* the CUDA device's number */
    int is_auto; /* "auto": a CUDA device where one can be used, else the CPU */
} vk_device;

/* Whether this build has the CUDA backend. */
int vk_have_cuda(void);
/* "cpu" (also NULL or ""), "cuda", "cuda:N" or "auto" into *d; 0 or
 * VDIT_ERR_INVALID_ARG said in lg. */
int vk_device_parse(const char *s, vk_device *d, vd_log *lg);
/* "cpu" or "cuda:N" into buf. */
const char *vk_device_name(const vk_device *d, char *buf, size_t n);
/* A CUDA device's context (kernels/cuda/vkc.h) into *vc; NULL for the CPU.
 * "auto" becomes the CPU (d rewritten) where no device can be used. 0, or
 * VDIT_ERR_UNSUPPORTED naming why (no CUDA backend in this build, no such
 * device, no driver). */
int vk_device_open(vk_device *d, void **vc, vd_log *lg);
void vk_device_close(void **vc);
/* "NVIDIA H200 (sm_90, 139.8 GiB)", or "cpu" for NULL. */
const char *vk_device_describe(void *vc);

/* n_threads <= 0: all cores. use_ref: use the reference table (tests).
 * Otherwise the default level, fp32. */
vk_ctx *vk_ctx_new(int n_threads, int use_ref, vd_log *log);
/* A context at level isa (< 0: the default level; above the CPU's: refused)
 * and precision prec (AUTO resolved here; BF16 on a level without native
 * bf16: refused, naming the CPU's level). NULL with the reason in log. */
vk_ctx *vk_ctx_new_ex(int n_threads, int isa, vk_prec prec, vd_log *log);
void vk_ctx_free(vk_ctx **c);

/* Scratch buffer of at least n bytes, valid until the next vk_scratch call
 * on this context. NULL on allocation failure. */
void *vk_scratch(vk_ctx *c, size_t n);

/* Prepare layers from stored tensors. bias may be NULL. Return 0 or VDIT_ERR_*. */
int vk_linear_init(vk_linear *l, const vt_tensor *w, const vt_tensor *bias);
void vk_linear_free(vk_linear *l);
/* w is [c_out, c_in, kd, kh, kw] or [c_out, c_in, kh, kw] (then kd = 1). */
int vk_conv_init(vk_conv *cv, const vt_tensor *w, const vt_tensor *bias);
void vk_conv_free(vk_conv *cv);
/* Makes a layer independent of the stored tensor it was made from, which
 * may then be released (a checkpoint freed or unmapped), so that the fp32
 * weights are not held twice: prepares now the layout the context's conv_tap
 * picks for h x w frames with geometry g, in fp32 and, for a bf16 context,
 * in bf16, and keeps only those (`w` becomes NULL); or, for layers the
 * kernels run from plain fp32 weights (1x1, at most 4 outputs) and for the
 * reference table, an owned fp32 copy (`w` points at it). conv_tap at any
 * frame size then asks oneDNN for the kept layout. This is the last write to
 * the layer: runs only read it, from any number of contexts at once; a run
 * wanting a form the layer does not keep (`conv`, the reference kernels, a
 * precision not prepared) makes it for that call. Results do not change.
 * Called while the layer is private (model loading). Returns 0 or
 * VDIT_ERR_*. */
int vk_conv_detach(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w);
/* Bytes the layer holds in prepared forms (not the stored tensor). */
size_t vk_conv_prepared_bytes(const vk_conv *cv);
/* The same, reporting errors (naming the tensor) through lg. */
int vk_linear_init_lg(vd_log *lg, vk_linear *l, const vt_tensor *w, const vt_tensor *bias);
/* Adds the form of the weights that contexts of precision prec read, so they
 * convert nothing per call, in the layout the backend's product reads:
 * VK_PREC_BF16 a bf16 copy (2 bytes per weight); VK_PREC_F32 a packed copy
 * of stored F32 weights (16-bit ones are widened per call). Other
 * precisions: nothing. Idempotent. Called while the layer is private (model
 * loading), on up to n_threads threads. Returns 0 or VDIT_ERR_NOMEM. */
int vk_linear_prepare(vk_linear *l, vk_prec prec, int n_threads);
/* The same for n layers at once (what is made per shape is made once);
 * done(user, l), when given, right after each layer is prepared (a loader
 * hands back the stored weights' pages there). */
int vk_linear_prepare_n(vk_linear *const *ls, int n, vk_prec prec, int n_threads,
                        void (*done)(void *user, const vk_linear *l), void *user);
int vk_conv_init_lg(vd_log *lg, vk_conv *cv, const vt_tensor *w, const vt_tensor *bias);

/* Builds the Wan 3-axis rotary table for a grid of f*h*w tokens in raster
 * order (f outermost): cs[tok*hd + 2i] = cos, [.. + 2i + 1] = sin.
 * Pairs split as Wan2.1: with c = hd/2, the first c - 2*(c/3) pairs follow the
 * frame index, the next c/3 the row, the last c/3 the column; each axis has its
 * own frequencies theta^(-2j/n), n = hd - 4*(hd/6) (frames) and 2*(hd/6)
 * (rows, columns). Angles computed in double. Caller frees with vd_free.
 * f0, h0, w0 offset the positions (windowed generation). */
float *vk_rope3d_table(int64_t f, int64_t h, int64_t w, int64_t hd, double theta, int64_t f0,
                       int64_t h0, int64_t w0);

/* The machine's peak in GFLOP/s for a level and precision, MEASURED (peak.c)
 * on `threads` OpenMP threads at once (<= 0: all cores), their rates added:
 * a loop of 12 to 16 independent multiply-add chains per thread, timed in
 * thread CPU time, best of 8 short runs (about 0.15 s per loop; other load
 * can only lower it). fp32: FMA on ymm and, at the AVX-512 levels, zmm, the
 * faster (a zmm FMA may run as two halves, Zen 4); bf16 (AUTO where native):
 * vdpbf16ps zmm, 64 flops per instruction; bf16 at a level without it gives
 * the fp32 figure. VK_ISA_C has no SIMD code: a plain C loop built for the
 * baseline. A level above the CPU's gives the CPU's. *mhz (may be NULL): the
 * core clock, a dependent-add chain on the same threads (0: not measurable);
 * how (may be NULL): what ran, e.g. "avx512_bf16 vdpbf16ps zmm: 64
 * flops/cycle/core at 3.60 GHz measured (...)". */
double vk_peak_gflops(vk_isa isa, vk_prec prec, int threads, double *mhz, char *how,
                      size_t how_len);

#endif
