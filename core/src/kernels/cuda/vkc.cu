/* CUDA backend (vkc.h): contexts, memory, weight upload, cuBLASLt linear
 * layers and general products, 2D convolutions and the elementwise, norm,
 * softmax, rotary, attention and frame-copy kernels, all on the context's
 * one non-blocking stream.
 *
 * Errors. Every CUDA and cuBLASLt call is checked; the first failure is kept
 * in the context as "<vkc call>: <API>: <reason>" and every later call does
 * nothing (vkc_alloc returns NULL, vkc_weights NULL, the int functions -1).
 * Faults of kernels surface at the next synchronising call (vkc_download,
 * vkc_sync); VDIT_CUDA_SYNC=1 in the environment synchronises after every
 * call so that a fault names the call that caused it. No printing, no abort.
 *
 * Memory. vkc_alloc is cudaMalloc (256-byte aligned) with the sizes kept in
 * a small open-addressing table, so vkc_mem_used/peak count them; the
 * context's own device buffers (the cuBLASLt workspace, 32 MiB, and the
 * scratch buffer) are counted too. The scratch buffer grows on demand to the
 * largest need and holds per-call temporaries only (bf16 copies of x, bf16
 * copies of K and V, the staging of vkc_weights), never anything that
 * outlives a call. Frees first wait for the stream.
 *
 * Weights. vkc_weights copies the host data (any alignment) through two
 * pinned 32 MiB staging buffers in turn (an event per buffer says when its
 * DMA is done; plain pageable copies if pinned memory cannot be had), and a
 * kernel converts each chunk on the device: f16, bf16, f32, fp8 e4m3 (times
 * scale) to f32 or bf16. fp32 -> bf16 is round to nearest even with NaN kept
 * NaN, bit for bit as vt_f32_to_bf16; fp8 decodes as vt_f8e4m3_to_f32.
 *
 * Linear. y[m, n] = x[m, k] Wᵀ with W [n, k] row-major is, in cuBLASLt's
 * column-major terms, yᵀ[n, m] = W xᵀ: A = W seen column-major as [k, n]
 * (ld k) with TRANSA = T, B = x seen column-major as [k, m] (ld k), TRANSB =
 * N, D = yᵀ column-major [n, m] (ld n), i.e. y row-major. bf16 = 1: A, B bf16
 * (x rounded into the scratch unless xbf), D fp32 or bf16; bf16 = 0: all
 * fp32; always CUBLAS_COMPUTE_32F (never TF32) with fp32 alpha/beta. The
 * only epilogue used is CUBLASLT_EPILOGUE_BIAS, and only with an fp32 D (the
 * bias vector has D's type) and a 16-byte aligned bias. Activations, and the
 * bias otherwise, run in our own kernel after the product, on the fp32
 * result: with a bf16 y and a bias or an activation the product goes to an
 * fp32 temporary in row chunks of at most 256 MiB, and one kernel adds the
 * bias, applies the activation and rounds once to bf16. (cuBLASLt's GELU
 * epilogue is not used: its formula is not documented.) Descriptors and the
 * heuristic's algorithm are cached per (m, n, k, types, epilogue, pointer
 * alignments) in a small array. Shapes cuBLASLt refuses (no algorithm, k = 0,
 * mixed precisions) run on a plain tiled SIMT kernel (64 x 64 tile, fp32
 * accumulation) with the same semantics.
 *
 * General products (vkc_gemm). Row-major C[m, n] is column-major Cᵀ [n, m]
 * (ld ldc), and Cᵀ = op(B)ᵀ op(A)ᵀ, so cuBLASLt's A is our B and its B our
 * A, each seen column-major with its own ld: B [k, n] (tb = 0) is
 * column-major [n, k] = op(B)ᵀ, TRANSA = N; B [n, k] (tb = 1) is
 * column-major [k, n], TRANSA = T; A [m, k] (ta = 0) is column-major [k, m]
 * = op(A)ᵀ, TRANSB = N; A [k, m] (ta = 1) is column-major [m, k], TRANSB =
 * T; C and D are column-major [n, m] (ld ldc), the same pointer. (vkc_linear
 * is the case ta = 0, tb = 1 with compact lds.) bf16 = 1 first rounds the
 * used part of A and of B into the scratch, compact with its row length
 * padded to 8 values (16-byte rows). Always CUBLAS_COMPUTE_32F with fp32
 * alpha and beta (beta 0: C is not read); descriptors and algorithms share
 * the linear layers' cache, keyed also by the transposes and lds. No
 * algorithm, or a refusal at run time: a tiled SIMT kernel (64 x 64, fp32
 * accumulation, any strides). k = 0: C = beta C by a small kernel.
 *
 * Convolutions (vkc_conv2d): im2col, then one product per chunk of output
 * pixels. The column matrix col [K, pc] (K = ci kh kw in W's order: input
 * channel, then kernel row, then kernel column; pc output pixels from p0,
 * zero padding included) goes to the scratch, bf16 with bf16 = 1 (x
 * rounded there) else fp32, at most 256 MiB per chunk (VDIT_CUDA_COL_BYTES
 * in the environment lowers that bound, for tests); then y[co, p0 : p0 + pc]
 * (row-major, ld ho wo) = W[co, K] col + (acc ? y : 0) as a vkc_gemm product
 * (cuBLASLt, or the SIMT kernel), and after the last chunk a kernel adds
 * the bias. A 1 x 1, stride 1, unpadded fp32 convolution uses x itself as
 * col. Weights must be bf16 for bf16 = 1 and fp32 for bf16 = 0.
 *
 * Attention. bf16 = 1 with hd 64 or 128 (and a device of compute capability
 * >= 8.0): K and V are first converted to bf16 into the scratch, per head
 * [heads][lk][hd]; then one block of 8 warps per (128 queries, head) loads
 * its Q tile from fp32 (rounded to bf16 in shared memory) and walks the keys
 * in tiles of 64, double buffered with cp.async (tail rows zero filled).
 * Each warp owns 16 query rows: S = Q Kᵀ with mma.sync m16n8k16 bf16 (fp32
 * accumulators, operands via ldmatrix), the online softmax on the
 * accumulators in registers, P rounded to bf16 straight from the S
 * accumulators into A fragments (the m16n8 C layout is the A layout of the
 * next product), O += P V (V via ldmatrix.trans) in fp32 registers, rescaled
 * by the running maximum. Scores are in base 2: scale * log2(e) is folded
 * into one multiplier and the exponential is exp2f. The row sums add the fp32
 * probabilities. Otherwise (bf16 = 0, or another hd <= 256): an fp32 SIMT
 * flash kernel, 32 queries x 32 keys per tile, 256 threads, Q, K, V tiles in
 * shared memory, scores = (q·k) * scale and expf, everything fp32. Both mask
 * keys past lk with -inf before the row maximum, never write queries past
 * lq, and give a row whose probabilities sum to 0 zeros (as the reference).
 *
 * Norms: one block of 256 threads per row, fp32 two-pass statistics (mean,
 * then the mean of squared deviations), the row held in registers (float4)
 * when dim <= 8192 and everything is 16-byte aligned, else three passes over
 * the row. Activations use overflow-safe forms of the reference formulas:
 * GELU tanh as x * sigmoid(2u) (= 0.5 x (1 + tanh u)), GELU erf as 0.5 x
 * erfc(-x / sqrt 2), SiLU as x * sigmoid(x). Softmax: one block per row as
 * the norms, three passes (maximum of the scaled row, sum of expf, write).
 * The VAE's channel norm: one thread per pixel, two loops over its channels
 * (the sum of squares, then the writes), adjacent threads on adjacent pixels.
 *
 * Frame operations (add_scaled, copy_nd, avg_share, dup_add): one thread per
 * output element, grid-stride; copy_nd splits the linear index over its
 * dims with 32-bit divisions when the box has fewer than 2^32 elements.
 *
 * Host emulation. With -DVKC_HOST_EMU a host C++ compiler builds this file
 * against tests/cuda/hostemu, a CPU emulation of the device, the runtime and
 * cuBLASLt (the test cuda_host_emulated runs tests/cuda/test_cuda.c on it in
 * every build). The seams, which leave what nvcc compiles unchanged: the
 * CUDA includes (hostemu.h instead); every launch written `kernel
 * VKC_LAUNCH(grid, block, smem, stream)(args)`, for nvcc exactly
 * `kernel<<<grid, block, smem, stream>>>(args)`; the dynamic shared memory
 * declared by VKC_DYNAMIC_SMEM(name), for nvcc `extern __shared__
 * __align__(16) unsigned char name[]`; and the bf16 attention's inline-PTX
 * helpers (cp.async, ldmatrix, mma.sync), which there call the emulation's
 * versions of the same instructions. */
#ifdef VKC_HOST_EMU
/* tests/cuda/hostemu: the CUDA headers' stand-in, with its own VKC_LAUNCH
 * and VKC_DYNAMIC_SMEM */
#include "hostemu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>

/* A kernel launch is written `kernel VKC_LAUNCH(grid, block, smem,
 * stream)(args)` and a kernel's dynamic shared memory
 * VKC_DYNAMIC_SMEM(name): with nvcc exactly the CUDA syntax, in the host
 * emulation its own launcher and shared memory. */
#define VKC_LAUNCH(...) <<<__VA_ARGS__>>>
#define VKC_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkc.h"
#include "vkc_dl.h"

#define VKC_WS_BYTES ((size_t)32 << 20)     /* cuBLASLt workspace */
#define VKC_STAGE_BYTES ((size_t)32 << 20)  /* one pinned staging buffer of vkc_weights */
#define VKC_TEMP_BYTES ((size_t)256 << 20)  /* fp32 temporary of a bf16 linear with epilogue */
#define VKC_COL_BYTES ((size_t)256 << 20)   /* im2col chunk of vkc_conv2d */
#define VKC_LT_CACHE 96                     /* cached matmul shapes */
#define VKC_MAX_GRID ((int64_t)1 << 20)     /* blocks of grid-stride kernels */

/* ------------------------------------------------------------------------ */
/* context                                                                  */

typedef struct lt_entry {
    int used, ok; /* ok = 0: cuBLASLt has no algorithm, use the SIMT kernel */
    int kind;     /* 0 lt_matmul (vkc_linear), 1 lt_gemm */
    int64_t m, n, k;
    int ab, dbf, epi; /* operands bf16, D bf16, bias epilogue */
    int ta, tb;             /* lt_gemm: vkc_gemm's transposes */
    int64_t lda, ldb, ldc;  /* lt_gemm: leading dimensions */
    uint32_t al_a, al_b, al_d, al_bias;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    size_t ws;
} lt_entry;

struct vkc_ctx {
    int dev, cc_major, cc_minor, smem_optin;
    cudaStream_t st;
    cublasLtHandle_t lt;
    void *ws;
    void *scratch;
    size_t scratch_size;
    void *pinned[2];
    cudaEvent_t ev[2];
    int pinned_state; /* 0 not tried, 1 usable, -1 unavailable */
    int failed;
    int debug_sync;
    size_t col_bytes; /* bound of vkc_conv2d's column chunk */
    unsigned attr_done; /* kernels whose shared-memory limit was raised */
    size_t used, peak;
    /* allocations: open addressing, linear probing, key 0 = empty */
    uintptr_t *mk;
    size_t *mv;
    size_t mcap, mcnt;
    lt_entry lte[VKC_LT_CACHE];
    int lt_next;
    char name[256];
    char err[512];
};

static void set_err(vkc_ctx *c, const char *fn, const char *api, const char *why)
{
    if (c->failed)
        return;
    c->failed = 1;
    snprintf(c->err, sizeof(c->err), "%s: %s: %s", fn, api, why);
}

static int ck(vkc_ctx *c, cudaError_t e, const char *fn, const char *api)
{
    if (e == cudaSuccess)
        return 1;
    set_err(c, fn, api, cudaGetErrorString(e));
    return 0;
}

static const char *lt_status_str(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

static int ckl(vkc_ctx *c, cublasStatus_t s, const char *fn, const char *api)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return 1;
    set_err(c, fn, api, lt_status_str(s));
    return 0;
}

/* After a kernel launch: the launch error, and with VDIT_CUDA_SYNC the
 * kernel's own. */
static int launched(vkc_ctx *c, const char *fn, const char *kernel)
{
    if (!ck(c, cudaGetLastError(), fn, kernel))
        return 0;
    if (c->debug_sync)
        return ck(c, cudaStreamSynchronize(c->st), fn, kernel);
    return 1;
}

/* Start of every call: a usable context, its device current. */
static int enter(vkc_ctx *c, const char *fn)
{
    if (!c || c->failed)
        return 0;
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess) {
        cudaGetLastError();
        cur = -1;
    }
    if (cur != c->dev)
        return ck(c, cudaSetDevice(c->dev), fn, "cudaSetDevice");
    return 1;
}

static void mem_add(vkc_ctx *c, size_t b)
{
    c->used += b;
    if (c->used > c->peak)
        c->peak = c->used;
}

static size_t mt_slot(uintptr_t key, size_t cap)
{
    uint64_t h = (uint64_t)(key >> 8) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static int mt_put(vkc_ctx *c, void *p, size_t sz)
{
    if ((c->mcnt + 1) * 2 > c->mcap) {
        size_t ncap = c->mcap ? c->mcap * 2 : 256;
        uintptr_t *nk = (uintptr_t *)calloc(ncap, sizeof(uintptr_t));
        size_t *nv = (size_t *)calloc(ncap, sizeof(size_t));
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        for (size_t i = 0; i < c->mcap; i++)
            if (c->mk[i]) {
                size_t j = mt_slot(c->mk[i], ncap);
                while (nk[j])
                    j = (j + 1) & (ncap - 1);
                nk[j] = c->mk[i];
                nv[j] = c->mv[i];
            }
        free(c->mk);
        free(c->mv);
        c->mk = nk;
        c->mv = nv;
        c->mcap = ncap;
    }
    uintptr_t key = (uintptr_t)p;
    size_t j = mt_slot(key, c->mcap);
    while (c->mk[j])
        j = (j + 1) & (c->mcap - 1);
    c->mk[j] = key;
    c->mv[j] = sz;
    c->mcnt++;
    return 0;
}

/* Removes p; its size, or (size_t)-1 when p is not in the table. */
static size_t mt_take(vkc_ctx *c, void *p)
{
    if (!c->mcap)
        return (size_t)-1;
    uintptr_t key = (uintptr_t)p;
    size_t mask = c->mcap - 1, j = mt_slot(key, c->mcap);
    while (c->mk[j] && c->mk[j] != key)
        j = (j + 1) & mask;
    if (!c->mk[j])
        return (size_t)-1;
    size_t sz = c->mv[j];
    c->mk[j] = 0;
    c->mcnt--;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t i = j;
    for (size_t k = (j + 1) & mask; c->mk[k]; k = (k + 1) & mask) {
        size_t home = mt_slot(c->mk[k], c->mcap);
        /* move k into the hole i unless its home lies cyclically in (i, k] */
        int stay = i <= k ? (home > i && home <= k) : (home > i || home <= k);
        if (!stay) {
            c->mk[i] = c->mk[k];
            c->mv[i] = c->mv[k];
            c->mk[k] = 0;
            i = k;
        }
    }
    return sz;
}

/* The scratch buffer, at least `bytes`; NULL (sticky error) when it cannot
 * be had. Growing waits for the stream before freeing the old buffer. */
static void *scratch(vkc_ctx *c, size_t bytes, const char *fn)
{
    if (bytes <= c->scratch_size)
        return c->scratch;
    size_t want = (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    if (c->scratch) {
        if (!ck(c, cudaStreamSynchronize(c->st), fn, "cudaStreamSynchronize"))
            return NULL;
        cudaFree(c->scratch);
        c->used -= c->scratch_size;
        c->scratch = NULL;
        c->scratch_size = 0;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
        cudaGetLastError();
        char why[96];
        snprintf(why, sizeof(why), "out of device memory for %zu bytes of scratch", want);
        set_err(c, fn, "cudaMalloc", why);
        return NULL;
    }
    c->scratch = p;
    c->scratch_size = want;
    mem_add(c, want);
    return p;
}

static unsigned grid_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > VKC_MAX_GRID)
        b = VKC_MAX_GRID;
    return (unsigned)(b < 1 ? 1 : b);
}

static uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t r = 1;
    while (r < 256 && !(a & r))
        r <<= 1;
    return r;
}

static int al16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

namespace { /* kernels and device helpers: internal linkage */

/* ------------------------------------------------------------------------ */
/* device helpers                                                           */

__device__ __forceinline__ float bf2f(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}

/* vt_f32_to_bf16: round to nearest even, NaN stays NaN (quiet bit set). */
__device__ __forceinline__ uint16_t f2bf(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* vt_f8e4m3_to_f32 (float8_e4m3fn: no infinities, NaN 0x7f/0xff). */
__device__ __forceinline__ float f8e4m3(uint8_t b)
{
    uint32_t s = (uint32_t)(b >> 7) << 31, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7)
        return __uint_as_float(s | 0x7fc00000u);
    if (e == 0) { /* subnormal: m * 2^-9, exact */
        float v = (float)m * 0.001953125f;
        return s ? -v : v;
    }
    return __uint_as_float(s | ((e + 120) << 23) | (m << 20));
}

__device__ __forceinline__ float sigmoid_mul(float x, float t)
{
    /* x * sigmoid(t), without overflow for either sign of t */
    if (t >= 0.0f)
        return x / (1.0f + expf(-t));
    float e = expf(t);
    return x * e / (1.0f + e);
}

__device__ __forceinline__ float act1(float x, int act)
{
    switch (act) {
    case VKC_ACT_GELU_TANH: {
        /* 0.5 x (1 + tanh u) = x sigmoid(2u) */
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return sigmoid_mul(x, 2.0f * u);
    }
    case VKC_ACT_GELU_ERF:
        /* 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2) */
        return 0.5f * x * erfcf(-x * 0.7071067811865476f);
    case VKC_ACT_SILU:
        return sigmoid_mul(x, x);
    case VKC_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    default:
        return x;
    }
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); sh[33]. */
__device__ float block_sum(float v, float *sh)
{
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        float t = lane < nw ? sh[lane] : 0.0f;
        t = warp_sum(t);
        if (lane == 0)
            sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

/* ------------------------------------------------------------------------ */
/* conversion and elementwise kernels                                       */

__global__ void k_convert(const void *src, int from, void *dst, int to, int64_t n, float scale)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += st) {
        float f;
        switch (from) {
        case VKC_F16:
            f = __half2float(__ushort_as_half(((const unsigned short *)src)[i]));
            break;
        case VKC_BF16:
            f = bf2f(((const uint16_t *)src)[i]);
            break;
        case VKC_F8E4M3:
            f = f8e4m3(((const uint8_t *)src)[i]) * scale;
            break;
        default:
            f = ((const float *)src)[i];
            break;
        }
        if (to == VKC_BF16)
            ((uint16_t *)dst)[i] = f2bf(f);
        else
            ((float *)dst)[i] = f;
    }
}

/* dst = bf16(src), n values; vec: both 16-byte aligned (then 4 at a time). */
__global__ void k_f32_to_bf16(const float *src, uint16_t *dst, int64_t n, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 v = ((const float4 *)src)[i];
            uint2 u;
            u.x = (uint32_t)f2bf(v.x) | ((uint32_t)f2bf(v.y) << 16);
            u.y = (uint32_t)f2bf(v.z) | ((uint32_t)f2bf(v.w) << 16);
            ((uint2 *)dst)[i] = u;
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        dst[i] = f2bf(src[i]);
}

/* out[r, j] = act(in[r, j] + bias[j]) as fp32 or bf16; out may be in (fp32).
 * Rows over blockIdx.y, columns over x; vec: n % 4 == 0, in, out (and bias)
 * aligned for 4 at a time. */
__global__ void k_bias_act(const float *in, void *out, int obf, const float *bias, int64_t rows,
                           int64_t n, int act, int vec)
{
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t c0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        if (vec) {
            const int64_t n4 = n / 4;
            const float4 *ir = (const float4 *)(in + r * n);
            for (int64_t j = c0; j < n4; j += cs) {
                float4 v = ir[j];
                if (bias) {
                    float4 b = ((const float4 *)bias)[j];
                    v.x += b.x, v.y += b.y, v.z += b.z, v.w += b.w;
                }
                v.x = act1(v.x, act);
                v.y = act1(v.y, act);
                v.z = act1(v.z, act);
                v.w = act1(v.w, act);
                if (obf) {
                    uint2 u;
                    u.x = (uint32_t)f2bf(v.x) | ((uint32_t)f2bf(v.y) << 16);
                    u.y = (uint32_t)f2bf(v.z) | ((uint32_t)f2bf(v.w) << 16);
                    ((uint2 *)((uint16_t *)out + r * n))[j] = u;
                } else {
                    ((float4 *)((float *)out + r * n))[j] = v;
                }
            }
        } else {
            for (int64_t j = c0; j < n; j += cs) {
                float v = in[r * n + j];
                if (bias)
                    v += bias[j];
                v = act1(v, act);
                if (obf)
                    ((uint16_t *)out)[r * n + j] = f2bf(v);
                else
                    ((float *)out)[r * n + j] = v;
            }
        }
    }
}

static dim3 grid_rows(int64_t rows, int64_t cols, int threads)
{
    int64_t gx = (cols + threads - 1) / threads, gy = rows;
    if (gx > 4096)
        gx = 4096;
    if (gx < 1)
        gx = 1;
    if (gy > 65535)
        gy = 65535;
    if (gy < 1)
        gy = 1;
    return dim3((unsigned)gx, (unsigned)gy);
}

__global__ void k_act(float *x, int64_t n, int act, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 v = ((float4 *)x)[i];
            v.x = act1(v.x, act);
            v.y = act1(v.y, act);
            v.z = act1(v.z, act);
            v.w = act1(v.w, act);
            ((float4 *)x)[i] = v;
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        x[i] = act1(x[i], act);
}

__global__ void k_add(float *y, const float *a, const float *b, int64_t n, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 u = ((const float4 *)a)[i], v = ((const float4 *)b)[i];
            ((float4 *)y)[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        y[i] = a[i] + b[i];
}

__global__ void k_mul(float *y, const float *a, const float *b, int64_t n, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 u = ((const float4 *)a)[i], v = ((const float4 *)b)[i];
            ((float4 *)y)[i] = make_float4(u.x * v.x, u.y * v.y, u.z * v.z, u.w * v.w);
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        y[i] = a[i] * b[i];
}

__global__ void k_add_const(float *y, int64_t n, float c, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 u = ((float4 *)y)[i];
            ((float4 *)y)[i] = make_float4(u.x + c, u.y + c, u.z + c, u.w + c);
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        y[i] += c;
}

/* x[r, j] += y[r, j] * gate[j]; vec: dim % 4 == 0 and all 16-byte aligned.
 * Rows over blockIdx.y, columns over x. */
__global__ void k_add_gated(float *x, const float *y, int64_t rows, int64_t dim, const float *gate,
                            int vec)
{
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t c0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        if (vec) {
            const int64_t d4 = dim / 4;
            float4 *xr = (float4 *)(x + r * dim);
            const float4 *yr = (const float4 *)(y + r * dim);
            for (int64_t j = c0; j < d4; j += cs) {
                float4 u = xr[j], v = yr[j];
                if (gate) {
                    float4 g = ((const float4 *)gate)[j];
                    v.x *= g.x, v.y *= g.y, v.z *= g.z, v.w *= g.w;
                }
                xr[j] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
            }
        } else {
            for (int64_t j = c0; j < dim; j += cs)
                x[r * dim + j] += y[r * dim + j] * (gate ? gate[j] : 1.0f);
        }
    }
}

/* Rotary pairs (2i, 2i + 1) of every head; tokens over blockIdx.y, the
 * token's n_heads * hd / 2 pairs over x; vec: float2 access is aligned. */
__global__ void k_rope(float *x, int64_t n_tok, int n_heads, int hd, int64_t ld, const float *cs,
                       int vec)
{
    const int hp = hd / 2, per = n_heads * hp;
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < per; i += gridDim.x * blockDim.x) {
            const int h = i / hp, j = i - h * hp;
            float *p = x + t * ld + (int64_t)h * hd + 2 * j;
            const float *q = cs + t * hd + 2 * j;
            float a, b, co, si;
            if (vec) {
                float2 pv = *(float2 *)p, qv = *(const float2 *)q;
                a = pv.x, b = pv.y, co = qv.x, si = qv.y;
            } else {
                a = p[0], b = p[1], co = q[0], si = q[1];
            }
            const float r0 = fmaf(a, co, -(b * si)), r1 = fmaf(a, si, b * co);
            if (vec) {
                *(float2 *)p = make_float2(r0, r1);
            } else {
                p[0] = r0;
                p[1] = r1;
            }
        }
    }
}

/* ---- norms: one block of 256 threads per row ---- */

#define NORM_THREADS 256

/* The row in registers: NV float4 per thread (dim <= NV * 1024), dim % 4 == 0,
 * all pointers 16-byte aligned. rms: RMSNorm (b unused), else LayerNorm. */
template <int NV>
__global__ void __launch_bounds__(NORM_THREADS)
    k_norm_vec(const float *x, float *y, int64_t rows, int64_t dim, const float *w, const float *b,
               float eps, int rms)
{
    __shared__ float sh[33];
    const int tid = threadIdx.x;
    const int64_t d4 = dim / 4;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const float4 *xr = (const float4 *)(x + row * dim);
        float4 v[NV];
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int64_t j = tid + (int64_t)i * NORM_THREADS;
            v[i] = j < d4 ? xr[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (rms)
                s += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
            else
                s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
        }
        s = block_sum(s, sh);
        float mean = 0.0f, inv;
        if (rms) {
            inv = 1.0f / sqrtf(s / (float)dim + eps);
        } else {
            mean = s / (float)dim;
            float q = 0.0f;
#pragma unroll
            for (int i = 0; i < NV; i++) {
                int64_t j = tid + (int64_t)i * NORM_THREADS;
                if (j < d4) {
                    float a0 = v[i].x - mean, a1 = v[i].y - mean, a2 = v[i].z - mean,
                          a3 = v[i].w - mean;
                    q += a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3;
                }
            }
            q = block_sum(q, sh);
            inv = 1.0f / sqrtf(q / (float)dim + eps);
        }
        float4 *yr = (float4 *)(y + row * dim);
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int64_t j = tid + (int64_t)i * NORM_THREADS;
            if (j < d4) {
                float4 o;
                o.x = (v[i].x - mean) * inv;
                o.y = (v[i].y - mean) * inv;
                o.z = (v[i].z - mean) * inv;
                o.w = (v[i].w - mean) * inv;
                if (w) {
                    float4 g = ((const float4 *)w)[j];
                    o.x *= g.x, o.y *= g.y, o.z *= g.z, o.w *= g.w;
                }
                if (b && !rms) {
                    float4 c = ((const float4 *)b)[j];
                    o.x += c.x, o.y += c.y, o.z += c.z, o.w += c.w;
                }
                yr[j] = o;
            }
        }
    }
}

/* Any dim and alignment: passes over the row in global memory. */
__global__ void __launch_bounds__(NORM_THREADS)
    k_norm_any(const float *x, float *y, int64_t rows, int64_t dim, const float *w, const float *b,
               float eps, int rms)
{
    __shared__ float sh[33];
    const int tid = threadIdx.x;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const float *xr = x + row * dim;
        float *yr = y + row * dim;
        float s = 0.0f;
        for (int64_t j = tid; j < dim; j += NORM_THREADS)
            s += rms ? xr[j] * xr[j] : xr[j];
        s = block_sum(s, sh);
        float mean = 0.0f, inv;
        if (rms) {
            inv = 1.0f / sqrtf(s / (float)dim + eps);
        } else {
            mean = s / (float)dim;
            float q = 0.0f;
            for (int64_t j = tid; j < dim; j += NORM_THREADS) {
                float a = xr[j] - mean;
                q += a * a;
            }
            q = block_sum(q, sh);
            inv = 1.0f / sqrtf(q / (float)dim + eps);
        }
        /* every read of the row is done (block_sum synchronises): y may be x */
        for (int64_t j = tid; j < dim; j += NORM_THREADS) {
            float o = (xr[j] - mean) * inv;
            if (w)
                o *= w[j];
            if (b && !rms)
                o += b[j];
            yr[j] = o;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* linear: SIMT fallback                                                    */

#define GF_T 64  /* output tile */
#define GF_K 16  /* reduction step */

/* y[m, n] = act(x[m, k] Wᵀ + bias), x fp32 or bf16 (XBF), W fp32 or bf16
 * (WBF); rw: round W to bf16 first (bf16 arithmetic with fp32 weights). */
/* One reduction step of a SIMT tile (k_gemm_nt, k_gemm_gen): thread (tx,
 * ty) of 16 x 16 adds to its 4 x 4 outputs (rows ty + 16 i, columns tx + 16
 * j) the GF_K products of as[kc][row] and bs[kc][column] in shared memory. */
__device__ __forceinline__ void gf_tile_fma(const float (*as)[GF_T + 4],
                                            const float (*bs)[GF_T + 4], int tx, int ty,
                                            float acc[4][4])
{
#pragma unroll
    for (int kc = 0; kc < GF_K; kc++) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            av[i] = as[kc][ty + 16 * i];
            bv[i] = bs[kc][tx + 16 * i];
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

template <bool XBF, bool WBF>
__global__ void __launch_bounds__(256)
    k_gemm_nt(const void *x, const void *w, const float *bias, int64_t m, int64_t n, int64_t k,
              int act, void *y, int ybf, int rw)
{
    __shared__ float xs[GF_K][GF_T + 4];
    __shared__ float ws[GF_K][GF_T + 4];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int64_t col0 = (int64_t)blockIdx.x * GF_T;
    const int64_t mt = (m + GF_T - 1) / GF_T;
    for (int64_t by = blockIdx.y; by < mt; by += gridDim.y) {
        const int64_t row0 = by * GF_T;
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc[i][j] = 0.0f;
        for (int64_t kk = 0; kk < k; kk += GF_K) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int e = tid + 256 * i, r = e / GF_K, kc = e % GF_K;
                int64_t gr = row0 + r, gk = kk + kc, gc = col0 + r;
                float xv = 0.0f, wv = 0.0f;
                if (gr < m && gk < k)
                    xv = XBF ? bf2f(((const uint16_t *)x)[gr * k + gk])
                             : ((const float *)x)[gr * k + gk];
                if (gc < n && gk < k) {
                    wv = WBF ? bf2f(((const uint16_t *)w)[gc * k + gk])
                             : ((const float *)w)[gc * k + gk];
                    if (rw)
                        wv = bf2f(f2bf(wv));
                }
                xs[kc][r] = xv;
                ws[kc][r] = wv;
            }
            __syncthreads();
            gf_tile_fma(xs, ws, tx, ty, acc);
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int64_t r = row0 + ty + 16 * i;
            if (r >= m)
                continue;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int64_t cc = col0 + tx + 16 * j;
                if (cc >= n)
                    continue;
                float v = acc[i][j];
                if (bias)
                    v += bias[cc];
                v = act1(v, act);
                if (ybf)
                    ((uint16_t *)y)[r * n + cc] = f2bf(v);
                else
                    ((float *)y)[r * n + cc] = v;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* attention: bf16 tensor-core flash kernel (mma.sync m16n8k16)             */

#define FA_BQ 128     /* queries per block: 8 warps x 16 rows */
#define FA_BK 64      /* keys per tile */
#define FA_THREADS 256

static size_t fa_smem_bytes(int hd)
{
    /* Q [128][hd + 8], K and V [2][64][hd + 8], bf16 */
    return (size_t)(FA_BQ + 4 * FA_BK) * (size_t)(hd + 8) * 2;
}

struct fa_args {
    const float *q;
    const uint16_t *kb, *vb; /* bf16 [heads][lk][hd] */
    float *o;
    int64_t ldq, ldo, lq, lk;
    float sl2; /* scale * log2(e) */
    int qvec, ovec;
};

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

#if defined(VKC_HOST_EMU)
/* The host emulation's versions of the helpers below: the same PTX
 * instructions, emulated from the PTX ISA (tests/cuda/hostemu/hostemu.h). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    hostemu_cp_async(dst, src, 16, src_bytes);
}

__device__ __forceinline__ void cp_commit()
{
    hostemu_cp_async_commit_group();
}

template <int N> __device__ __forceinline__ void cp_wait()
{
    hostemu_cp_async_wait_group(N);
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr)
{
    hostemu_ldmatrix_m8n8_b16(r, 4, false, addr);
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr)
{
    hostemu_ldmatrix_m8n8_b16(r, 4, true, addr);
}

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    const uint32_t b[2] = { b0, b1 };
    hostemu_mma_m16n8k16_row_col_f32_bf16_bf16_f32(c, a, b, c);
}
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    /* src_bytes 0: the 16 bytes are zero filled, src is not read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* c[16x8] += a[16x16] b[16x8], bf16 operands, fp32 accumulators. Fragments
 * (g = lane / 4, t = lane % 4): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g,
 * 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
 * c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1). */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

/* Two blocks per SM: 2 x 102 KB of shared memory (hd 128) fit an H100/H200,
 * and the registers are capped at 128 per thread. */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS, 2) k_flash_bf16(fa_args a)
{
#if defined(VKC_HOST_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
    constexpr int S = HD + 8; /* shared row stride in bf16: 16-byte rows, no ldmatrix conflicts */
    constexpr int ND = HD / 8; /* n-tiles of the output */
    VKC_DYNAMIC_SMEM(fa_smem);
    uint16_t *Qs = (uint16_t *)fa_smem;
    uint16_t *Ks = Qs + FA_BQ * S; /* [2][FA_BK][S] */
    uint16_t *Vs = Ks + 2 * FA_BK * S;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tq = lane & 3;
    const int h = blockIdx.y;
    const int64_t q0 = (int64_t)blockIdx.x * FA_BQ, lk = a.lk;
    const int nt = (int)((lk + FA_BK - 1) / FA_BK);

    /* K and V tile t into buffer `stage`; rows past lk zero filled (the
     * head's base is recomputed from the kernel parameters: fewer live
     * registers across the main loop) */
    auto load_kv = [&](int t, int stage) {
        constexpr int CH = HD / 8; /* 16-byte chunks per row */
        const int64_t base = ((int64_t)blockIdx.y * a.lk + (int64_t)t * FA_BK) * HD;
        const int rows = (int)min((int64_t)FA_BK, a.lk - (int64_t)t * FA_BK);
#pragma unroll
        for (int i = tid; i < FA_BK * CH; i += FA_THREADS) {
            const int r = i / CH, cc = i % CH;
            const int ok = r < rows;
            const int64_t off = base + (ok ? r * HD : 0) + cc * 8;
            const int so = (stage * FA_BK + r) * S + cc * 8;
            cp_async16(smem_u32(Ks + so), a.kb + off, ok ? 16 : 0);
            cp_async16(smem_u32(Vs + so), a.vb + off, ok ? 16 : 0);
        }
    };

    load_kv(0, 0);
    cp_commit();

    /* the Q tile, fp32 -> bf16, rows past lq zero */
    {
        const float *qh = a.q + (int64_t)h * HD;
        if (a.qvec) {
            constexpr int C4 = HD / 4;
            for (int i = tid; i < FA_BQ * C4; i += FA_THREADS) {
                const int r = i / C4, c4 = i % C4;
                const int64_t row = q0 + r;
                float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (row < a.lq)
                    v = *(const float4 *)(qh + row * a.ldq + c4 * 4);
                uint2 u;
                u.x = pack_bf16(v.x, v.y);
                u.y = pack_bf16(v.z, v.w);
                *(uint2 *)(Qs + r * S + c4 * 4) = u;
            }
        } else {
            constexpr int C2 = HD / 2;
            for (int i = tid; i < FA_BQ * C2; i += FA_THREADS) {
                const int r = i / C2, c2 = i % C2;
                const int64_t row = q0 + r;
                float v0 = 0.0f, v1 = 0.0f;
                if (row < a.lq) {
                    v0 = qh[row * a.ldq + 2 * c2];
                    v1 = qh[row * a.ldq + 2 * c2 + 1];
                }
                *(uint32_t *)(Qs + r * S + 2 * c2) = pack_bf16(v0, v1);
            }
        }
    }

    float o[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f; /* rows g, g + 8 */

    /* per-lane ldmatrix addresses (see mma_bf16 for the fragments):
     * Q (A, x4): lane -> row lane % 16, column 8 * (lane / 16)
     * K (B of S = Q Kᵀ, x4 = two 8-key n-tiles x two 8-dim halves):
     *   key (lane % 8) + 8 * (lane / 16), dim 8 * ((lane / 8) % 2)
     * V (B of O = P V, x4.trans = two 8-key halves x two 8-dim n-tiles):
     *   key (lane % 8) + 8 * ((lane / 8) % 2), dim 8 * (lane / 16) */
    const uint32_t qaddr = smem_u32(Qs + (warp * 16 + (lane & 15)) * S + (lane >> 4) * 8);
    const int krow = (lane & 7) + ((lane >> 4) << 3), kcol = ((lane >> 3) & 1) * 8;
    const int vrow = (lane & 7) + (((lane >> 3) & 1) << 3), vcol = (lane >> 4) * 8;

    for (int t = 0; t < nt; t++) {
        const int st = t & 1;
        if (t + 1 < nt) {
            load_kv(t + 1, st ^ 1); /* that buffer was released by the last barrier */
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();

        /* S[16 x 64] = Q Kᵀ for this warp's rows */
        float s[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++)
            s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
        const uint32_t kaddr = smem_u32(Ks + (st * FA_BK + krow) * S + kcol);
#pragma unroll
        for (int kc = 0; kc < HD / 16; kc++) {
            uint32_t qa[4];
            ldsm_x4(qa, qaddr + kc * 32);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t kb[4];
                ldsm_x4(kb, kaddr + (np * 16 * S + kc * 16) * 2);
                mma_bf16(s[2 * np], qa, kb[0], kb[1]);
                mma_bf16(s[2 * np + 1], qa, kb[2], kb[3]);
            }
        }

        /* online softmax in base 2; keys past lk are -inf before the max */
        const int64_t kb0 = (int64_t)t * FA_BK;
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[i][e] *= a.sl2;
        if (kb0 + FA_BK > lk) {
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (kb0 + i * 8 + tq * 2 + (e & 1) >= lk)
                        s[i][e] = -INFINITY;
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            mx0 = fmaxf(mx0, fmaxf(s[i][0], s[i][1]));
            mx1 = fmaxf(mx1, fmaxf(s[i][2], s[i][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        /* a row that has seen only -inf keeps a finite reference */
        const float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float al0 = exp2f(m0 - mu0), al1 = exp2f(m1 - mu1);
        m0 = mn0;
        m1 = mn1;
        float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            s[i][0] = exp2f(s[i][0] - mu0);
            s[i][1] = exp2f(s[i][1] - mu0);
            s[i][2] = exp2f(s[i][2] - mu1);
            s[i][3] = exp2f(s[i][3] - mu1);
            rs0 += s[i][0] + s[i][1];
            rs1 += s[i][2] + s[i][3];
        }
        /* per-thread partial sums: the quad's are added at the end */
        l0 = l0 * al0 + rs0;
        l1 = l1 * al1 + rs1;
#pragma unroll
        for (int i = 0; i < ND; i++) {
            o[i][0] *= al0;
            o[i][1] *= al0;
            o[i][2] *= al1;
            o[i][3] *= al1;
        }

        /* O += P V: the S accumulators of n-tiles 2j, 2j + 1 are the A
         * fragment of key chunk j, rounded to bf16 */
        const uint32_t vaddr = smem_u32(Vs + (st * FA_BK + vrow) * S + vcol);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t pa[4];
            pa[0] = pack_bf16(s[2 * j][0], s[2 * j][1]);
            pa[1] = pack_bf16(s[2 * j][2], s[2 * j][3]);
            pa[2] = pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
            pa[3] = pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
#pragma unroll
            for (int dp = 0; dp < HD / 16; dp++) {
                uint32_t vb[4];
                ldsm_x4_t(vb, vaddr + (j * 16 * S + dp * 16) * 2);
                mma_bf16(o[2 * dp], pa, vb[0], vb[1]);
                mma_bf16(o[2 * dp + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads(); /* buffer st is free for the load of tile t + 2 */
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    const int64_t r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    float *ob = a.o + (int64_t)h * HD + tq * 2;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int64_t r = half ? r1 : r0;
        if (r >= a.lq)
            continue;
        const float l = half ? l1 : l0, inv = half ? i1 : i0;
        float *p = ob + r * a.ldo;
#pragma unroll
        for (int i = 0; i < ND; i++) {
            float v0 = l == 0.0f ? 0.0f : o[i][2 * half] * inv;
            float v1 = l == 0.0f ? 0.0f : o[i][2 * half + 1] * inv;
            if (a.ovec) {
                *(float2 *)(p + i * 8) = make_float2(v0, v1);
            } else {
                p[i * 8] = v0;
                p[i * 8 + 1] = v1;
            }
        }
    }
#endif
}

/* src [len, heads * hd] (row stride ld) -> dst bf16 [heads][len][hd];
 * tokens over blockIdx.y, the token's heads * hd values over x. vec: hd % 4
 * == 0, ld % 4 == 0, src 16-byte aligned. */
__global__ void k_heads_bf16(const float *src, int64_t ld, uint16_t *dst, int64_t len, int heads,
                             int hd, int vec)
{
    const int w = vec ? 4 : 1, hdw = hd / w, per = heads * hdw;
    for (int64_t t = blockIdx.y; t < len; t += gridDim.y) {
        const float *sr = src + t * ld;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < per; i += gridDim.x * blockDim.x) {
            const int h = i / hdw, d = (i - h * hdw) * w;
            uint16_t *dp = dst + ((int64_t)h * len + t) * hd + d;
            if (vec) {
                const float4 v = *(const float4 *)(sr + h * hd + d);
                uint2 u;
                u.x = pack_bf16(v.x, v.y);
                u.y = pack_bf16(v.z, v.w);
                *(uint2 *)dp = u;
            } else {
                __nv_bfloat16 b = __float2bfloat16_rn(sr[h * hd + d]);
                memcpy(dp, &b, 2);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* attention: fp32 SIMT flash kernel (any hd <= 256)                        */

#define SA_BQ 32
#define SA_BK 32
#define SA_THREADS 256

struct sa_args {
    const float *q, *k, *v;
    float *o;
    int64_t ldq, ldk, ldv, ldo, lq, lk;
    int hd, hd4, hs; /* head dim, rounded up to 4, shared row stride (hd4 + 4) */
    float scale;
    int qvec, kvec, vvec;
};

static size_t sa_smem_bytes(int hs)
{
    /* Q, K, V [32][hs] and P [32][33], fp32 */
    return (size_t)(3 * SA_BQ * hs + SA_BQ * (SA_BK + 1)) * 4;
}

/* 32 rows of src (from row `base`, rows >= lim zero) into dst [32][hs],
 * columns >= hd zero. */
__device__ __forceinline__ void sa_load(float *dst, const float *src, int64_t ld, int64_t base,
                                        int64_t lim, int hd, int hd4, int hs, int vec)
{
    const int tid = threadIdx.x;
    if (vec) { /* hd % 4 == 0: hd4 == hd */
        const int c4n = hd4 / 4;
        for (int i = tid; i < 32 * c4n; i += SA_THREADS) {
            const int rr = i / c4n, cc = i - rr * c4n;
            const int64_t row = base + rr;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row < lim)
                v = *(const float4 *)(src + row * ld + cc * 4);
            *(float4 *)(dst + rr * hs + cc * 4) = v;
        }
    } else {
        for (int i = tid; i < 32 * hd4; i += SA_THREADS) {
            const int rr = i / hd4, d = i - rr * hd4;
            const int64_t row = base + rr;
            dst[rr * hs + d] = (row < lim && d < hd) ? src[row * ld + d] : 0.0f;
        }
    }
}

/* Thread (r = tid / 8, c = tid % 8): query row r; scores of keys c + 8i
 * (i < 4); output dims 4c + 32j .. + 3. The 8 threads of a row are 8
 * consecutive lanes of one warp. */
template <int HDP>
__global__ void __launch_bounds__(SA_THREADS) k_attn_f32(sa_args a)
{
    VKC_DYNAMIC_SMEM(sa_smem);
    const int hs = a.hs, hd = a.hd, hd4 = a.hd4;
    float *Qs = (float *)sa_smem, *Ks = Qs + SA_BQ * hs, *Vs = Ks + SA_BK * hs;
    float *Ps = Vs + SA_BK * hs;
    const int tid = threadIdx.x, r = tid >> 3, c = tid & 7;
    const int h = blockIdx.y;
    const int64_t q0 = (int64_t)blockIdx.x * SA_BQ, lk = a.lk;
    const float *kh = a.k + (int64_t)h * hd, *vh = a.v + (int64_t)h * hd;

    sa_load(Qs, a.q + (int64_t)h * hd, a.ldq, q0, a.lq, hd, hd4, hs, a.qvec);

    constexpr int NJ = HDP / 32;
    float acc[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int nt = (int)((lk + SA_BK - 1) / SA_BK);
    for (int t = 0; t < nt; t++) {
        const int64_t kb0 = (int64_t)t * SA_BK;
        __syncthreads(); /* the previous tile is no longer read */
        sa_load(Ks, kh, a.ldk, kb0, lk, hd, hd4, hs, a.kvec);
        sa_load(Vs, vh, a.ldv, kb0, lk, hd, hd4, hs, a.vvec);
        __syncthreads();

        float s[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
        const float4 *q4 = (const float4 *)(Qs + r * hs);
        const float4 *k4 = (const float4 *)(Ks + c * hs);
        const int hs4 = hs / 4;
        for (int d4 = 0; d4 < hd4 / 4; d4++) {
            const float4 qv = q4[d4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float4 kv = k4[i * 8 * hs4 + d4];
                s[i] = fmaf(qv.x, kv.x, s[i]);
                s[i] = fmaf(qv.y, kv.y, s[i]);
                s[i] = fmaf(qv.z, kv.z, s[i]);
                s[i] = fmaf(qv.w, kv.w, s[i]);
            }
        }
        float mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s[i] *= a.scale;
            if (kb0 + c + 8 * i >= lk)
                s[i] = -INFINITY;
            mx = fmaxf(mx, s[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
        const float mn = fmaxf(m, mx), mu = mn == -INFINITY ? 0.0f : mn;
        const float al = expf(m - mu);
        m = mn;
        float ps = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float p = expf(s[i] - mu);
            ps += p;
            Ps[r * (SA_BK + 1) + c + 8 * i] = p;
        }
        l = l * al + ps; /* partial over this thread's keys; alpha is the row's */
        __syncwarp();
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            acc[j][0] *= al;
            acc[j][1] *= al;
            acc[j][2] *= al;
            acc[j][3] *= al;
        }
#pragma unroll 8
        for (int key = 0; key < SA_BK; key++) {
            const float p = Ps[r * (SA_BK + 1) + key];
            const float *vr = Vs + key * hs;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int d = 4 * c + 32 * j;
                if (d < hd4) {
                    const float4 vv = *(const float4 *)(vr + d);
                    acc[j][0] = fmaf(p, vv.x, acc[j][0]);
                    acc[j][1] = fmaf(p, vv.y, acc[j][1]);
                    acc[j][2] = fmaf(p, vv.z, acc[j][2]);
                    acc[j][3] = fmaf(p, vv.w, acc[j][3]);
                }
            }
        }
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    l += __shfl_xor_sync(0xffffffffu, l, 4);
    const int64_t row = q0 + r;
    if (row >= a.lq)
        return;
    float *orow = a.o + row * a.ldo + (int64_t)h * hd;
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int d = 4 * c + 32 * j + e;
            if (d < hd)
                orow[d] = l == 0.0f ? 0.0f : acc[j][e] / l;
        }
}

/* ------------------------------------------------------------------------ */
/* general products, softmax, channel norm and frame operations             */

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Maximum over the block, as block_sum. */
__device__ float block_max(float v, float *sh)
{
    v = warp_max(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        float t = lane < nw ? sh[lane] : -INFINITY;
        t = warp_max(t);
        if (lane == 0)
            sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

/* Element i of an fp32 (BF false) or bf16 (BF true) array, as fp32. */
template <bool BF> __device__ __forceinline__ float ld_el(const void *p, int64_t i)
{
    return BF ? bf2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* C[m, n] = alpha op(A) op(B) + beta C, row-major with leading dimensions
 * (vkc_gemm's semantics; beta 0: C not read), A and B both fp32 or both
 * bf16 (BF), fp32 accumulation. Tiles as k_gemm_nt: 64 x 64 outputs per
 * block, 4 x 4 per thread, steps of 16 along k; each operand tile is loaded
 * with consecutive threads on consecutive addresses (along k when the stored
 * row runs along k, else along m or n). */
template <bool BF>
__global__ void __launch_bounds__(256)
    k_gemm_gen(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
               int64_t lda, const void *b, int64_t ldb, float beta, float *cm, int64_t ldc)
{
    __shared__ float as[GF_K][GF_T + 4]; /* as[kc][r] = op(A)[row0 + r, kk + kc] */
    __shared__ float bs[GF_K][GF_T + 4]; /* bs[kc][j] = op(B)[kk + kc, col0 + j] */
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int64_t col0 = (int64_t)blockIdx.x * GF_T;
    const int64_t mt = (m + GF_T - 1) / GF_T;
    for (int64_t by = blockIdx.y; by < mt; by += gridDim.y) {
        const int64_t row0 = by * GF_T;
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc[i][j] = 0.0f;
        for (int64_t kk = 0; kk < k; kk += GF_K) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int e = tid + 256 * i; /* 0 .. 1023 = 64 x 16 */
                /* op(A)[r, p] = ta ? A[p, r] (A [k, m]) : A[r, p] (A [m, k]) */
                int r = ta ? (e & 63) : (e >> 4), kc = ta ? (e >> 6) : (e & 15);
                int64_t gr = row0 + r, gk = kk + kc;
                float v = 0.0f;
                if (gr < m && gk < k)
                    v = ld_el<BF>(a, ta ? gk * lda + gr : gr * lda + gk);
                as[kc][r] = v;
                /* op(B)[p, j] = tb ? B[j, p] (B [n, k]) : B[p, j] (B [k, n]) */
                const int jj = tb ? (e >> 4) : (e & 63);
                kc = tb ? (e & 15) : (e >> 6);
                const int64_t gc = col0 + jj;
                gk = kk + kc;
                v = 0.0f;
                if (gc < n && gk < k)
                    v = ld_el<BF>(b, tb ? gc * ldb + gk : gk * ldb + gc);
                bs[kc][jj] = v;
            }
            __syncthreads();
            gf_tile_fma(as, bs, tx, ty, acc);
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t r = row0 + ty + 16 * i;
            if (r >= m)
                continue;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t cc = col0 + tx + 16 * j;
                if (cc >= n)
                    continue;
                float v = alpha * acc[i][j];
                if (beta != 0.0f)
                    v = fmaf(beta, cm[r * ldc + cc], v);
                cm[r * ldc + cc] = v;
            }
        }
    }
}

/* C[m, n] (ld ldc) = beta C; beta 0 writes zeros without reading C. Rows
 * over blockIdx.y, columns over x. */
__global__ void k_scale2d(float *cm, int64_t ldc, int64_t m, int64_t n, float beta)
{
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t c0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t r = blockIdx.y; r < m; r += gridDim.y)
        for (int64_t j = c0; j < n; j += cs)
            cm[r * ldc + j] = beta != 0.0f ? beta * cm[r * ldc + j] : 0.0f;
}

/* dst[r, j] (ld ldd) = bf16(src[r, j] (ld lds)) for rows x cols values. */
__global__ void k_f32_to_bf16_2d(const float *src, int64_t lds, int64_t rows, int64_t cols,
                                 uint16_t *dst, int64_t ldd)
{
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t c0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int64_t j = c0; j < cols; j += cs)
            dst[r * ldd + j] = f2bf(src[r * lds + j]);
}

/* The im2col chunk: col[kk, q] (ld ldcol; fp32, or bf16 rounded with BF) =
 * x[ch, iy, ix] (0 outside the frame) for kk = (ch kh + i) kw + j < K and
 * output pixel p = p0 + q (q < pc), p = oy wo + ox, iy = oy sh - ph0 + i, ix
 * = ox sw - pw0 + j. Rows kk over blockIdx.y, pixels over x (adjacent
 * threads: adjacent output pixels, adjacent columns of col). */
template <bool BF>
__global__ void k_im2col(const float *x, int64_t h, int64_t w, int kh, int kw, int sh, int sw,
                         int ph0, int pw0, int64_t wo, int64_t K, int64_t p0, int64_t pc,
                         void *col, int64_t ldcol)
{
    const int khw = kh * kw;
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t q0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t kk = blockIdx.y; kk < K; kk += gridDim.y) {
        const int64_t ch = kk / khw;
        const int r = (int)(kk - ch * khw), i = r / kw, j = r - i * kw;
        const float *xc = x + ch * h * w;
        for (int64_t q = q0; q < pc; q += cs) {
            const int64_t p = p0 + q, oy = p / wo, ox = p - oy * wo;
            const int64_t iy = oy * sh - ph0 + i, ix = ox * sw - pw0 + j;
            float v = 0.0f;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                v = xc[iy * w + ix];
            if (BF)
                ((uint16_t *)col)[kk * ldcol + q] = f2bf(v);
            else
                ((float *)col)[kk * ldcol + q] = v;
        }
    }
}

/* y[o, p] += bias[o] for y [rows, n]; rows over blockIdx.y. */
__global__ void k_bias_rows(float *y, const float *bias, int64_t rows, int64_t n)
{
    const int64_t cs = (int64_t)gridDim.x * blockDim.x;
    const int64_t c0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float b = bias[r];
        for (int64_t j = c0; j < n; j += cs)
            y[r * n + j] += b;
    }
}

/* x = softmax(scale x) per row (stride ld), one block of NORM_THREADS per
 * row: the maximum of the scaled row, the sum of expf, the writes (each
 * thread rewrites only the values it read; the reductions synchronise). */
__global__ void __launch_bounds__(NORM_THREADS)
    k_softmax(float *x, int64_t rows, int64_t cols, int64_t ld, float scale)
{
    __shared__ float sh[33];
    const int tid = threadIdx.x;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        float *xr = x + row * ld;
        float mx = -INFINITY;
        for (int64_t j = tid; j < cols; j += NORM_THREADS)
            mx = fmaxf(mx, xr[j] * scale);
        mx = block_max(mx, sh);
        float s = 0.0f;
        for (int64_t j = tid; j < cols; j += NORM_THREADS)
            s += expf(xr[j] * scale - mx);
        s = block_sum(s, sh);
        for (int64_t j = tid; j < cols; j += NORM_THREADS)
            xr[j] = expf(xr[j] * scale - mx) / s;
    }
}

/* The Wan-VAE channel RMS norm of x [ch, s]: one thread per pixel i, the
 * sum of squares over its channels, then the writes (the same thread reads
 * x[c, i] before it writes y[c, i]: y may be x). sc = sqrt(ch). */
__global__ void k_chnorm(const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                         float sc, int silu)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < s; i += st) {
        float ss = 0.0f;
        for (int64_t c = 0; c < ch; c++) {
            const float v = x[c * s + i];
            ss = fmaf(v, v, ss);
        }
        const float inv = sc / fmaxf(sqrtf(ss), 1e-12f);
        for (int64_t c = 0; c < ch; c++) {
            float v = x[c * s + i] * inv;
            if (gamma)
                v *= gamma[c];
            if (silu)
                v = sigmoid_mul(v, v);
            y[c * s + i] = v;
        }
    }
}

__global__ void k_add_scaled(float *y, const float *a, const float *b, float s, int64_t n, int vec)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = i0; i < n4; i += st) {
            float4 u = ((const float4 *)a)[i], v = ((const float4 *)b)[i];
            ((float4 *)y)[i] =
                make_float4(u.x + s * v.x, u.y + s * v.y, u.z + s * v.z, u.w + s * v.w);
        }
        done = n4 * 4;
    }
    for (int64_t i = done + i0; i < n; i += st)
        y[i] = a[i] + s * b[i];
}

struct nd_args {
    int64_t dims[6], ds[6], ss[6]; /* sizes, dst and src strides; the last dim fastest */
    int nd;
};

/* dst[Σ i_d ds[d]] = src[Σ i_d ss[d]], one thread per element of the box
 * (linear index split from the last dim); IT: the index type of the
 * divisions (uint32_t when the box has < 2^32 elements). */
template <typename IT>
__global__ void k_copy_nd(float *dst, const float *src, nd_args a, int64_t total)
{
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += st) {
        IT r = (IT)i;
        int64_t od = 0, os = 0;
        for (int d = a.nd - 1; d > 0; d--) {
            const IT sz = (IT)a.dims[d], q = r / sz, id = r - q * sz;
            od += (int64_t)id * a.ds[d];
            os += (int64_t)id * a.ss[d];
            r = q;
        }
        od += (int64_t)r * a.ds[0];
        os += (int64_t)r * a.ss[0];
        dst[od] = src[os];
    }
}

/* vae.c avg_share, one thread per output value (o, a, b) of sc [sco, ho,
 * wo]: the members of channel o at dt added in the CPU's order (j
 * ascending) onto the old value (first = 0) or onto the first member
 * (first = 1; no member: 0). */
__global__ void k_avg_share(const float *x, int64_t h, int64_t w, int ft, int fs, int grp,
                            int64_t sco, int dt, int first, float *sc, int64_t ho, int64_t wo)
{
    const int64_t ff = (int64_t)fs * fs, F = ft * ff, so = ho * wo, total = sco * so;
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += st) {
        const int64_t o = i / so, pr = i - o * so, a = pr / wo, b = pr - a * wo;
        int have = !first;
        float v = first ? 0.0f : sc[i];
        for (int j = 0; j < grp; j++) {
            const int64_t k = o * grp + j, c = k / F, rm = k - c * F;
            if (rm / ff != dt)
                continue;
            const int64_t dh = (rm / fs) % fs, dw = rm % fs;
            const float xv = x[(c * h + a * fs + dh) * w + b * fs + dw];
            v = have ? v + xv : xv;
            have = 1;
        }
        sc[i] = have ? v : 0.0f;
    }
}

/* vae.c dup_add, one thread per output value (o, Y, X) of y [co, h fs, w
 * fs], Y = a fs + dh, X = b fs + dw: y = x + xin[k / rep, a, b] with k =
 * ((o ft + dt) fs + dh) fs + dw (fs = 1: k = o ft + dt, as the CPU's). */
__global__ void k_dup_add(const float *xin, int64_t h, int64_t w, int64_t co, int ft, int fs,
                          int rep, int dt, const float *x, float *y)
{
    const int64_t W = w * fs, So = h * fs * W, S = h * w, total = co * So;
    const int64_t st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += st) {
        const int64_t o = i / So, pr = i - o * So, Y = pr / W, X = pr - Y * W;
        const int64_t a = Y / fs, dh = Y - a * fs, b = X / fs, dw = X - b * fs;
        const int64_t kin = (((o * ft + dt) * fs + dh) * fs + dw) / rep;
        y[i] = x[i] + xin[kin * S + a * w + b];
    }
}

} /* namespace */

/* ------------------------------------------------------------------------ */
/* devices and contexts                                                     */

extern "C" int vkc_device_count(char *err, size_t n)
{
    int cnt = 0;
    cudaError_t e = cudaGetDeviceCount(&cnt);
    if (e == cudaErrorNoDevice) {
        cudaGetLastError();
        return 0;
    }
    if (e != cudaSuccess) {
        if (err && n)
            snprintf(err, n, "%s", cudaGetErrorString(e));
        cudaGetLastError();
        return -1;
    }
    return cnt;
}

static void lt_entry_free(lt_entry *e)
{
    if (!e->used)
        return;
    if (e->op)
        cublasLtMatmulDescDestroy(e->op);
    if (e->la)
        cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb)
        cublasLtMatrixLayoutDestroy(e->lb);
    if (e->ld)
        cublasLtMatrixLayoutDestroy(e->ld);
    memset(e, 0, sizeof(*e));
}

static void ctx_destroy(vkc_ctx *c)
{
    if (c->st)
        cudaStreamSynchronize(c->st);
    for (size_t i = 0; i < c->mcap; i++)
        if (c->mk[i])
            cudaFree((void *)c->mk[i]);
    free(c->mk);
    free(c->mv);
    for (int i = 0; i < VKC_LT_CACHE; i++)
        lt_entry_free(&c->lte[i]);
    if (c->lt)
        cublasLtDestroy(c->lt);
    if (c->ws)
        cudaFree(c->ws);
    if (c->scratch)
        cudaFree(c->scratch);
    for (int i = 0; i < 2; i++) {
        if (c->pinned[i])
            cudaFreeHost(c->pinned[i]);
        if (c->ev[i])
            cudaEventDestroy(c->ev[i]);
    }
    if (c->st)
        cudaStreamDestroy(c->st);
    cudaGetLastError();
    free(c);
}

extern "C" int vkc_ctx_new(int device, vkc_ctx **out, char *err, size_t n)
{
    char why[256];
    if (!out) {
        if (err && n)
            snprintf(err, n, "vkc_ctx_new: no output pointer");
        return -1;
    }
    *out = NULL;
    int cnt = vkc_device_count(why, sizeof(why));
    if (cnt < 0) {
        if (err && n)
            snprintf(err, n, "CUDA cannot be used: %s", why);
        return -1;
    }
    if (device < 0 || device >= cnt) {
        if (err && n)
            snprintf(err, n, "no CUDA device %d (%d found)", device, cnt);
        return -1;
    }
    vkc_ctx *c = (vkc_ctx *)calloc(1, sizeof(vkc_ctx));
    if (!c) {
        if (err && n)
            snprintf(err, n, "out of memory");
        return -1;
    }
    c->dev = device;
    const char *api = "cudaSetDevice";
    cudaError_t e = cudaSetDevice(device);
    cudaDeviceProp pr;
    memset(&pr, 0, sizeof(pr));
    if (e == cudaSuccess) {
        api = "cudaGetDeviceProperties";
        e = cudaGetDeviceProperties(&pr, device);
    }
    if (e == cudaSuccess) {
        api = "cudaDeviceGetAttribute";
        e = cudaDeviceGetAttribute(&c->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    }
    if (e == cudaSuccess) {
        api = "cudaStreamCreateWithFlags";
        e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
    }
    for (int i = 0; i < 2 && e == cudaSuccess; i++) {
        api = "cudaEventCreateWithFlags";
        e = cudaEventCreateWithFlags(&c->ev[i], cudaEventDisableTiming);
    }
    if (e == cudaSuccess) {
        api = "cudaMalloc (cuBLASLt workspace)";
        e = cudaMalloc(&c->ws, VKC_WS_BYTES);
        if (e != cudaSuccess)
            c->ws = NULL;
    }
    if (e != cudaSuccess) {
        if (err && n)
            snprintf(err, n, "device %d: %s: %s", device, api, cudaGetErrorString(e));
        ctx_destroy(c);
        return -1;
    }
    mem_add(c, VKC_WS_BYTES);
    cublasStatus_t ls = cublasLtCreate(&c->lt);
    if (ls != CUBLAS_STATUS_SUCCESS) {
        c->lt = NULL;
        const char *dl = vkc_cublaslt_error(); /* the library could not be opened */
        if (err && n)
            snprintf(err, n, "device %d: cublasLtCreate: %s", device, dl ? dl : lt_status_str(ls));
        ctx_destroy(c);
        return -1;
    }
    c->cc_major = pr.major;
    c->cc_minor = pr.minor;
    snprintf(c->name, sizeof(c->name), "%.200s (sm_%d%d, %.1f GiB)", pr.name, pr.major, pr.minor,
             (double)pr.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    const char *ds = getenv("VDIT_CUDA_SYNC");
    c->debug_sync = ds && *ds && strcmp(ds, "0") != 0;
    c->col_bytes = VKC_COL_BYTES;
    const char *cb = getenv("VDIT_CUDA_COL_BYTES");
    if (cb && *cb) {
        char *end = NULL;
        long long v = strtoll(cb, &end, 10);
        if (end && !*end && v > 0 && (unsigned long long)v < VKC_COL_BYTES)
            c->col_bytes = (size_t)v;
    }
    *out = c;
    return 0;
}

extern "C" void vkc_ctx_free(vkc_ctx **pc)
{
    if (!pc || !*pc)
        return;
    vkc_ctx *c = *pc;
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != c->dev)
        cudaSetDevice(c->dev);
    ctx_destroy(c);
    *pc = NULL;
}

extern "C" const char *vkc_device_name(const vkc_ctx *c)
{
    return c ? c->name : "no CUDA context";
}

extern "C" size_t vkc_mem_used(const vkc_ctx *c)
{
    return c ? c->used : 0;
}

extern "C" size_t vkc_mem_peak(const vkc_ctx *c)
{
    return c ? c->peak : 0;
}

extern "C" const char *vkc_error(const vkc_ctx *c)
{
    return c ? c->err : "no CUDA context";
}

extern "C" int vkc_sync(vkc_ctx *c)
{
    if (!enter(c, __func__))
        return -1;
    return ck(c, cudaStreamSynchronize(c->st), __func__, "cudaStreamSynchronize") ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* memory                                                                   */

extern "C" void *vkc_alloc(vkc_ctx *c, size_t bytes)
{
    if (!enter(c, __func__))
        return NULL;
    size_t sz = bytes ? bytes : 1;
    void *p = NULL;
    if (cudaMalloc(&p, sz) != cudaSuccess) {
        cudaGetLastError(); /* out of memory is not sticky */
        return NULL;
    }
    if (mt_put(c, p, sz)) {
        cudaFree(p);
        return NULL;
    }
    mem_add(c, sz);
    return p;
}

extern "C" void vkc_free(vkc_ctx *c, void *p)
{
    if (!c || !p)
        return;
    size_t sz = mt_take(c, p);
    if (sz == (size_t)-1)
        return; /* not this context's */
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != c->dev)
        cudaSetDevice(c->dev);
    /* work still queued may read p; after a failure the errors are ignored */
    cudaError_t e = cudaStreamSynchronize(c->st);
    if (e != cudaSuccess && !c->failed)
        ck(c, e, __func__, "cudaStreamSynchronize");
    e = cudaFree(p);
    if (e != cudaSuccess && !c->failed)
        ck(c, e, __func__, "cudaFree");
    c->used -= sz;
}

extern "C" int vkc_upload(vkc_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (!enter(c, __func__))
        return -1;
    if (!bytes)
        return 0;
    if (!ck(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->st), __func__,
            "cudaMemcpyAsync"))
        return -1;
    /* From pageable memory the copy returns once src has been staged; from
     * pinned, managed or device memory it may still be reading src. */
    cudaPointerAttributes at;
    int pageable = 0;
    if (cudaPointerGetAttributes(&at, src) == cudaSuccess)
        pageable = at.type == cudaMemoryTypeUnregistered;
    else
        cudaGetLastError();
    if (!pageable &&
        !ck(c, cudaStreamSynchronize(c->st), __func__, "cudaStreamSynchronize"))
        return -1;
    return launched(c, __func__, "cudaMemcpyAsync") ? 0 : -1;
}

extern "C" int vkc_download(vkc_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (!enter(c, __func__))
        return -1;
    if (bytes && !ck(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->st), __func__,
                     "cudaMemcpyAsync"))
        return -1;
    return ck(c, cudaStreamSynchronize(c->st), __func__, "cudaStreamSynchronize") ? 0 : -1;
}

extern "C" void vkc_memset0(vkc_ctx *c, void *dst, size_t bytes)
{
    if (!enter(c, __func__) || !bytes)
        return;
    if (ck(c, cudaMemsetAsync(dst, 0, bytes, c->st), __func__, "cudaMemsetAsync"))
        launched(c, __func__, "cudaMemsetAsync");
}

static size_t type_size(int t)
{
    switch (t) {
    case VKC_F32: return 4;
    case VKC_F16:
    case VKC_BF16: return 2;
    case VKC_F8E4M3: return 1;
    default: return 0;
    }
}

extern "C" void *vkc_weights(vkc_ctx *c, const void *host, int from, size_t n, int to, float scale)
{
    static const char *F = "vkc_weights";
    if (!enter(c, F))
        return NULL;
    const size_t es = type_size(from), eo = type_size(to);
    if (!es || (to != VKC_F32 && to != VKC_BF16) || (n && !host)) {
        char why[96];
        snprintf(why, sizeof(why), "unsupported conversion (from type %d to type %d, %zu values)",
                 from, to, n);
        set_err(c, F, "arguments", why);
        return NULL;
    }
    void *dst = vkc_alloc(c, n * eo);
    if (!dst || !n)
        return dst;
    const int direct = from == to; /* f32 -> f32, bf16 -> bf16: no kernel */
    if (!c->pinned_state) {
        c->pinned_state = 1;
        for (int i = 0; i < 2; i++)
            if (cudaHostAlloc(&c->pinned[i], VKC_STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess) {
                cudaGetLastError();
                c->pinned[i] = NULL;
                c->pinned_state = -1;
            }
    }
    const int pin = c->pinned_state > 0;
    void *raw = NULL;
    if (!direct && !(raw = scratch(c, VKC_STAGE_BYTES, F))) {
        vkc_free(c, dst);
        return NULL;
    }
    const size_t total = n * es;
    const uint8_t *src = (const uint8_t *)host;
    for (size_t off = 0, idx = 0; off < total; off += VKC_STAGE_BYTES, idx++) {
        const size_t len = total - off < VKC_STAGE_BYTES ? total - off : VKC_STAGE_BYTES;
        const int b = (int)(idx & 1);
        const void *from_p = src + off;
        if (pin) {
            /* the DMA out of this buffer two chunks ago must be done */
            if (!ck(c, cudaEventSynchronize(c->ev[b]), F, "cudaEventSynchronize"))
                break;
            memcpy(c->pinned[b], src + off, len);
            from_p = c->pinned[b];
        }
        void *to_p = direct ? (void *)((uint8_t *)dst + off) : raw;
        if (!ck(c, cudaMemcpyAsync(to_p, from_p, len, cudaMemcpyHostToDevice, c->st), F,
                "cudaMemcpyAsync"))
            break;
        if (pin && !ck(c, cudaEventRecord(c->ev[b], c->st), F, "cudaEventRecord"))
            break;
        if (!direct) {
            const int64_t cnt = (int64_t)(len / es);
            k_convert VKC_LAUNCH(grid_for(cnt, 256), 256, 0, c->st)(
                raw, from, (uint8_t *)dst + (off / es) * eo, to, cnt, scale);
            if (!launched(c, F, "k_convert"))
                break;
        }
    }
    if (c->failed) {
        vkc_free(c, dst);
        return NULL;
    }
    return dst;
}

/* ------------------------------------------------------------------------ */
/* linear                                                                   */

/* The heuristic's first algorithm for e's descriptors, with the pointer
 * alignments of cuBLASLt's A, B and C = D: e->ok, e->algo, e->ws. 1, or 0
 * (sticky error). No algorithm is not an error (e->ok = 0). */
static int lt_pick(vkc_ctx *c, const char *F, lt_entry *e, uint32_t aa, uint32_t ab, uint32_t ad)
{
    cublasLtMatmulPreference_t pref = NULL;
    const uint64_t wsb = VKC_WS_BYTES;
    if (!ckl(c, cublasLtMatmulPreferenceCreate(&pref), F, "cublasLtMatmulPreferenceCreate"))
        return 0;
    int okp = ckl(c, cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)),
                  F, "cublasLtMatmulPreferenceSetAttribute") &&
              ckl(c, cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)),
                  F, "cublasLtMatmulPreferenceSetAttribute") &&
              ckl(c, cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)),
                  F, "cublasLtMatmulPreferenceSetAttribute") &&
              ckl(c, cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof(ad)),
                  F, "cublasLtMatmulPreferenceSetAttribute") &&
              ckl(c, cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof(ad)),
                  F, "cublasLtMatmulPreferenceSetAttribute");
    if (!okp) {
        cublasLtMatmulPreferenceDestroy(pref);
        return 0;
    }
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    memset(&res, 0, sizeof(res));
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(c->lt, e->op, e->la, e->lb, e->ld, e->ld,
                                                       pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    e->ok = hs == CUBLAS_STATUS_SUCCESS && nres > 0 && res.state == CUBLAS_STATUS_SUCCESS &&
            res.workspaceSize <= VKC_WS_BYTES;
    if (e->ok) {
        e->algo = res.algo;
        e->ws = res.workspaceSize;
    }
    return 1;
}

/* D = op over cuBLASLt (see the top of the file for the mapping). 0 done, 1
 * no algorithm (use the SIMT kernel), -1 sticky error. */
static int lt_matmul(vkc_ctx *c, const char *F, int ab, const void *w, const void *x, void *d,
                     int dbf, int64_t m, int64_t n, int64_t k, const float *bias)
{
    const int epi = bias != NULL;
    const uint32_t aa = align_of(w), ax = align_of(x), ad = align_of(d),
                   abi = epi ? align_of(bias) : 0;
    lt_entry *e = NULL;
    for (int i = 0; i < VKC_LT_CACHE; i++) {
        lt_entry *t = &c->lte[i];
        if (t->used && t->kind == 0 && t->m == m && t->n == n && t->k == k && t->ab == ab &&
            t->dbf == dbf && t->epi == epi && t->al_a == aa && t->al_b == ax && t->al_d == ad &&
            t->al_bias == abi) {
            e = t;
            break;
        }
    }
    if (!e) {
        e = &c->lte[c->lt_next];
        c->lt_next = (c->lt_next + 1) % VKC_LT_CACHE;
        lt_entry_free(e);
        e->used = 1;
        e->m = m, e->n = n, e->k = k, e->ab = ab, e->dbf = dbf, e->epi = epi;
        e->al_a = aa, e->al_b = ax, e->al_d = ad, e->al_bias = abi;
        const cudaDataType_t ta = ab ? CUDA_R_16BF : CUDA_R_32F;
        const cudaDataType_t td = dbf ? CUDA_R_16BF : CUDA_R_32F;
        const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
        if (!ckl(c, cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), F,
                 "cublasLtMatmulDescCreate") ||
            !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &opT,
                                                   sizeof(opT)),
                 F, "cublasLtMatmulDescSetAttribute") ||
            !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &opN,
                                                   sizeof(opN)),
                 F, "cublasLtMatmulDescSetAttribute")) {
            lt_entry_free(e);
            return -1;
        }
        if (epi) {
            const uint32_t ep = CUBLASLT_EPILOGUE_BIAS;
            if (!ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep,
                                                       sizeof(ep)),
                     F, "cublasLtMatmulDescSetAttribute") ||
                !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof(bias)),
                     F, "cublasLtMatmulDescSetAttribute")) {
                lt_entry_free(e);
                return -1;
            }
        }
        /* A = W as column-major [k, n] (TRANSA = T), B = x as column-major
         * [k, m], D = yᵀ column-major [n, m] */
        if (!ckl(c, cublasLtMatrixLayoutCreate(&e->la, ta, (uint64_t)k, (uint64_t)n, k), F,
                 "cublasLtMatrixLayoutCreate") ||
            !ckl(c, cublasLtMatrixLayoutCreate(&e->lb, ta, (uint64_t)k, (uint64_t)m, k), F,
                 "cublasLtMatrixLayoutCreate") ||
            !ckl(c, cublasLtMatrixLayoutCreate(&e->ld, td, (uint64_t)n, (uint64_t)m, n), F,
                 "cublasLtMatrixLayoutCreate")) {
            lt_entry_free(e);
            return -1;
        }
        if (!lt_pick(c, F, e, aa, ax, ad)) {
            lt_entry_free(e);
            return -1;
        }
    }
    if (!e->ok)
        return 1;
    if (epi && !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &bias, sizeof(bias)),
                    F, "cublasLtMatmulDescSetAttribute"))
        return -1;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasLtMatmul(c->lt, e->op, &one, w, e->la, x, e->lb, &zero, d, e->ld, d,
                                      e->ld, &e->algo, c->ws, e->ws, c->st);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
        e->ok = 0; /* refused at run time: the SIMT kernel from now on */
        return 1;
    }
    if (!ckl(c, s, F, "cublasLtMatmul"))
        return -1;
    return launched(c, F, "cublasLtMatmul") ? 0 : -1;
}

static int gemm_fallback(vkc_ctx *c, const char *F, const void *x, int xb, const void *w, int wb,
                         int rw, const float *bias, int64_t m, int64_t n, int64_t k, int act,
                         void *y, int ybf)
{
    const int64_t mt = (m + GF_T - 1) / GF_T, nt = (n + GF_T - 1) / GF_T;
    if (nt > 0x7fffffffLL) {
        set_err(c, F, "k_gemm_nt", "n too large");
        return -1;
    }
    dim3 grid((unsigned)nt, (unsigned)(mt < 65535 ? mt : 65535));
    if (xb && wb)
        k_gemm_nt<true, true> VKC_LAUNCH(grid, 256, 0, c->st)(x, w, bias, m, n, k, act, y,
                                                              ybf, rw);
    else if (xb)
        k_gemm_nt<true, false> VKC_LAUNCH(grid, 256, 0, c->st)(x, w, bias, m, n, k, act, y,
                                                               ybf, rw);
    else if (wb)
        k_gemm_nt<false, true> VKC_LAUNCH(grid, 256, 0, c->st)(x, w, bias, m, n, k, act, y,
                                                               ybf, rw);
    else
        k_gemm_nt<false, false> VKC_LAUNCH(grid, 256, 0, c->st)(x, w, bias, m, n, k, act, y,
                                                                ybf, rw);
    return launched(c, F, "k_gemm_nt") ? 0 : -1;
}

extern "C" void vkc_linear(vkc_ctx *c, int bf16, const void *x, int xbf, int64_t m, int64_t k,
                           const void *w, int wt, const float *bias, int64_t n, int act, void *y,
                           int ybf)
{
    static const char *F = "vkc_linear";
    if (!enter(c, F))
        return;
    if (m < 0 || n < 0 || k < 0 || (wt != VKC_F32 && wt != VKC_BF16) || act < VKC_ACT_NONE ||
        act > VKC_ACT_RELU || (m && n && (!y || (k && (!x || !w))))) {
        char why[160];
        snprintf(why, sizeof(why), "invalid arguments (m %lld, n %lld, k %lld, wt %d, act %d)",
                 (long long)m, (long long)n, (long long)k, wt, act);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!m || !n)
        return;
    const int wb = wt == VKC_BF16;
    /* bf16 arithmetic: x rounded to bf16 into the scratch */
    const size_t xbytes = bf16 && !xbf ? (((size_t)m * (size_t)k * 2 + 255) & ~(size_t)255) : 0;
    /* a bf16 y with a bias or an activation: an fp32 temporary in row chunks */
    const int use_lt = k > 0 && ((bf16 && wb) || (!bf16 && !wb && !xbf));
    const int tmp = use_lt && ybf && (bias || act != VKC_ACT_NONE);
    int64_t chunk = m;
    if (tmp) {
        chunk = (int64_t)(VKC_TEMP_BYTES / ((size_t)n * 4));
        if (chunk >= 128)
            chunk &= ~(int64_t)127;
        if (chunk < 1)
            chunk = 1;
        if (chunk > m)
            chunk = m;
    }
    const size_t need = xbytes + (tmp ? (size_t)chunk * (size_t)n * 4 : 0);
    uint8_t *scr = NULL;
    if (need && !(scr = (uint8_t *)scratch(c, need, F)))
        return;
    const void *xin = x;
    int xinb = xbf;
    if (xbytes) {
        const int64_t cnt = m * k;
        k_f32_to_bf16 VKC_LAUNCH(grid_for(cnt / 4 + 1, 256), 256, 0, c->st)(
            (const float *)x, (uint16_t *)scr, cnt, al16(x));
        if (!launched(c, F, "k_f32_to_bf16"))
            return;
        xin = scr;
        xinb = 1;
    }
    if (use_lt) {
        const size_t xes = xinb ? 2 : 4;
        int r;
        if (!tmp) {
            /* bias in cuBLASLt's epilogue only with an fp32 D (the bias has D's type) */
            const float *eb = bias && !ybf && al16(bias) ? bias : NULL;
            r = lt_matmul(c, F, bf16, w, xin, y, ybf, m, n, k, eb);
            if (r == 0 && (act != VKC_ACT_NONE || (bias && !eb))) {
                const float *bb = eb ? NULL : bias;
                const int vec = n % 4 == 0 && al16(y) && (!bb || al16(bb));
                k_bias_act VKC_LAUNCH(grid_rows(m, vec ? n / 4 : n, 256), 256, 0, c->st)(
                    (const float *)y, y, 0, bb, m, n, act, vec);
                if (!launched(c, F, "k_bias_act"))
                    return;
            }
        } else {
            float *t = (float *)(scr + xbytes);
            const float *eb = bias && al16(bias) ? bias : NULL;
            r = 0;
            for (int64_t r0 = 0; r0 < m && r == 0; r0 += chunk) {
                const int64_t rc = m - r0 < chunk ? m - r0 : chunk;
                r = lt_matmul(c, F, bf16, w, (const uint8_t *)xin + (size_t)r0 * (size_t)k * xes,
                              t, 0, rc, n, k, eb);
                if (r == 0) {
                    const float *bb = eb ? NULL : bias;
                    uint8_t *yr = (uint8_t *)y + (size_t)r0 * (size_t)n * 2;
                    const int vec = n % 4 == 0 && ((uintptr_t)yr & 7) == 0 && (!bb || al16(bb));
                    k_bias_act VKC_LAUNCH(grid_rows(rc, vec ? n / 4 : n, 256), 256, 0, c->st)(
                        t, yr, 1, bb, rc, n, act, vec);
                    if (!launched(c, F, "k_bias_act"))
                        return;
                }
            }
        }
        if (r <= 0)
            return;
        /* r == 1: cuBLASLt has no algorithm for this shape; all of y again */
    }
    gemm_fallback(c, F, xin, xinb, w, wb, bf16 && !wb, bias, m, n, k, act, y, ybf);
}

/* ------------------------------------------------------------------------ */
/* elementwise and norms                                                    */

static void norm_launch(vkc_ctx *c, const char *F, const float *x, float *y, int64_t rows,
                        int64_t dim, const float *w, const float *b, float eps, int rms)
{
    if (rows < 0 || dim < 0) {
        set_err(c, F, "arguments", "negative size");
        return;
    }
    if (!rows || !dim)
        return;
    const unsigned grid = (unsigned)(rows < VKC_MAX_GRID ? rows : VKC_MAX_GRID);
    const int vec = dim % 4 == 0 && al16(x) && al16(y) && (!w || al16(w)) && (!b || al16(b));
    if (vec && dim <= 1024)
        k_norm_vec<1> VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, y, rows, dim, w, b, eps, rms);
    else if (vec && dim <= 2048)
        k_norm_vec<2> VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, y, rows, dim, w, b, eps, rms);
    else if (vec && dim <= 4096)
        k_norm_vec<4> VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, y, rows, dim, w, b, eps, rms);
    else if (vec && dim <= 8192)
        k_norm_vec<8> VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, y, rows, dim, w, b, eps, rms);
    else
        k_norm_any VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, y, rows, dim, w, b, eps, rms);
    launched(c, F, rms ? "rmsnorm kernel" : "layernorm kernel");
}

extern "C" void vkc_layernorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                              const float *w, const float *b, float eps)
{
    if (enter(c, __func__))
        norm_launch(c, __func__, x, y, rows, dim, w, b, eps, 0);
}

extern "C" void vkc_rmsnorm(vkc_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                            const float *w, float eps)
{
    if (enter(c, __func__))
        norm_launch(c, __func__, x, y, rows, dim, w, NULL, eps, 1);
}

extern "C" void vkc_add_gated(vkc_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                              const float *gate)
{
    if (!enter(c, __func__) || rows <= 0 || dim <= 0)
        return;
    const int vec = dim % 4 == 0 && al16(x) && al16(y) && (!gate || al16(gate));
    k_add_gated VKC_LAUNCH(grid_rows(rows, vec ? dim / 4 : dim, 256), 256, 0, c->st)(
        x, y, rows, dim, gate, vec);
    launched(c, __func__, "k_add_gated");
}

extern "C" void vkc_act(vkc_ctx *c, float *x, int64_t n, int act)
{
    if (!enter(c, __func__) || n <= 0 || act == VKC_ACT_NONE)
        return;
    if (act < VKC_ACT_NONE || act > VKC_ACT_RELU) {
        set_err(c, __func__, "arguments", "unknown activation");
        return;
    }
    const int vec = al16(x);
    k_act VKC_LAUNCH(grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, c->st)(x, n, act, vec);
    launched(c, __func__, "k_act");
}

extern "C" void vkc_add(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n)
{
    if (!enter(c, __func__) || n <= 0)
        return;
    const int vec = al16(y) && al16(a) && al16(b);
    k_add VKC_LAUNCH(grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, c->st)(y, a, b, n, vec);
    launched(c, __func__, "k_add");
}

extern "C" void vkc_mul(vkc_ctx *c, float *y, const float *a, const float *b, int64_t n)
{
    if (!enter(c, __func__) || n <= 0)
        return;
    const int vec = al16(y) && al16(a) && al16(b);
    k_mul VKC_LAUNCH(grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, c->st)(y, a, b, n, vec);
    launched(c, __func__, "k_mul");
}

extern "C" void vkc_add_const(vkc_ctx *c, float *y, int64_t n, float v)
{
    if (!enter(c, __func__) || n <= 0)
        return;
    const int vec = al16(y);
    k_add_const VKC_LAUNCH(grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, c->st)(y, n, v, vec);
    launched(c, __func__, "k_add_const");
}

extern "C" void vkc_rope(vkc_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                         int64_t ld, const float *cs)
{
    if (!enter(c, __func__) || n_tok <= 0 || n_heads <= 0 || head_dim < 2)
        return;
    if (n_heads * (head_dim / 2) > 0x7fffffffLL) {
        set_err(c, __func__, "arguments", "n_heads * head_dim too large");
        return;
    }
    const int vec = head_dim % 2 == 0 && ld % 2 == 0 && ((uintptr_t)x & 7) == 0 &&
                    ((uintptr_t)cs & 7) == 0;
    k_rope VKC_LAUNCH(grid_rows(n_tok, n_heads * (head_dim / 2), 256), 256, 0, c->st)(
        x, n_tok, (int)n_heads, (int)head_dim, ld, cs, vec);
    launched(c, __func__, "k_rope");
}

/* ------------------------------------------------------------------------ */
/* attention                                                                */

/* Raises a kernel's dynamic shared-memory limit once per context. */
static int smem_attr(vkc_ctx *c, const char *F, const void *fn, unsigned bit, size_t bytes)
{
    if (c->attr_done & bit)
        return 1;
    if ((int64_t)bytes > (int64_t)c->smem_optin) {
        char why[128];
        snprintf(why, sizeof(why), "needs %zu bytes of shared memory, the device allows %d",
                 bytes, c->smem_optin);
        set_err(c, F, "attention kernel", why);
        return 0;
    }
    if (!ck(c, cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
            F, "cudaFuncSetAttribute"))
        return 0;
    c->attr_done |= bit;
    return 1;
}

extern "C" void vkc_attention(vkc_ctx *c, int bf16, const float *q, int64_t ldq, const float *k,
                              int64_t ldk, const float *v, int64_t ldv, float *o, int64_t ldo,
                              int64_t heads, int64_t hd, int64_t lq, int64_t lk, float scale)
{
    static const char *F = "vkc_attention";
    if (!enter(c, F))
        return;
    if (heads < 0 || lq < 0 || lk < 0 || hd < 1 || hd > 256 || heads > 65535 ||
        lk > 0x7fffffffLL * 16 || lq > 0x7fffffffLL * 16) {
        char why[160];
        snprintf(why, sizeof(why), "unsupported arguments (heads %lld, hd %lld, lq %lld, lk %lld)",
                 (long long)heads, (long long)hd, (long long)lq, (long long)lk);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!heads || !lq)
        return;
    if (!lk) { /* no key: zeros, as the reference */
        if (ck(c, cudaMemset2DAsync(o, (size_t)ldo * 4, 0, (size_t)(heads * hd) * 4, (size_t)lq,
                                    c->st),
               F, "cudaMemset2DAsync"))
            launched(c, F, "cudaMemset2DAsync");
        return;
    }
    if (bf16 && (hd == 64 || hd == 128) && c->cc_major >= 8) {
        const size_t kvn = (size_t)heads * (size_t)lk * (size_t)hd;
        const size_t kvb = (kvn * 2 + 255) & ~(size_t)255;
        uint8_t *scr = (uint8_t *)scratch(c, 2 * kvb, F);
        if (!scr)
            return;
        uint16_t *kb = (uint16_t *)scr, *vb = (uint16_t *)(scr + kvb);
        const int kvec = ldk % 4 == 0 && al16(k), vvec = ldv % 4 == 0 && al16(v);
        k_heads_bf16 VKC_LAUNCH(grid_rows(lk, heads * hd / (kvec ? 4 : 1), 256), 256, 0, c->st)(
            k, ldk, kb, lk, (int)heads, (int)hd, kvec);
        if (!launched(c, F, "k_heads_bf16"))
            return;
        k_heads_bf16 VKC_LAUNCH(grid_rows(lk, heads * hd / (vvec ? 4 : 1), 256), 256, 0, c->st)(
            v, ldv, vb, lk, (int)heads, (int)hd, vvec);
        if (!launched(c, F, "k_heads_bf16"))
            return;
        fa_args a;
        a.q = q, a.kb = kb, a.vb = vb, a.o = o;
        a.ldq = ldq, a.ldo = ldo, a.lq = lq, a.lk = lk;
        a.sl2 = scale * 1.4426950408889634f;
        a.qvec = ldq % 4 == 0 && al16(q);
        a.ovec = ldo % 2 == 0 && ((uintptr_t)o & 7) == 0;
        const size_t sm = fa_smem_bytes((int)hd);
        dim3 grid((unsigned)((lq + FA_BQ - 1) / FA_BQ), (unsigned)heads);
        if (hd == 64) {
            if (!smem_attr(c, F, (const void *)k_flash_bf16<64>, 1u, sm))
                return;
            k_flash_bf16<64> VKC_LAUNCH(grid, FA_THREADS, sm, c->st)(a);
        } else {
            if (!smem_attr(c, F, (const void *)k_flash_bf16<128>, 2u, sm))
                return;
            k_flash_bf16<128> VKC_LAUNCH(grid, FA_THREADS, sm, c->st)(a);
        }
        launched(c, F, "k_flash_bf16");
        return;
    }
    /* fp32 SIMT flash kernel */
    sa_args a;
    a.q = q, a.k = k, a.v = v, a.o = o;
    a.ldq = ldq, a.ldk = ldk, a.ldv = ldv, a.ldo = ldo, a.lq = lq, a.lk = lk;
    a.hd = (int)hd;
    a.hd4 = (int)((hd + 3) & ~3);
    a.hs = a.hd4 + 4;
    a.scale = scale;
    const int hv = hd % 4 == 0;
    a.qvec = hv && ldq % 4 == 0 && al16(q);
    a.kvec = hv && ldk % 4 == 0 && al16(k);
    a.vvec = hv && ldv % 4 == 0 && al16(v);
    const size_t sm = sa_smem_bytes(a.hs);
    dim3 grid((unsigned)((lq + SA_BQ - 1) / SA_BQ), (unsigned)heads);
    if (a.hd4 <= 32) {
        if (!smem_attr(c, F, (const void *)k_attn_f32<32>, 4u, sa_smem_bytes(36)))
            return;
        k_attn_f32<32> VKC_LAUNCH(grid, SA_THREADS, sm, c->st)(a);
    } else if (a.hd4 <= 64) {
        if (!smem_attr(c, F, (const void *)k_attn_f32<64>, 8u, sa_smem_bytes(68)))
            return;
        k_attn_f32<64> VKC_LAUNCH(grid, SA_THREADS, sm, c->st)(a);
    } else if (a.hd4 <= 128) {
        if (!smem_attr(c, F, (const void *)k_attn_f32<128>, 16u, sa_smem_bytes(132)))
            return;
        k_attn_f32<128> VKC_LAUNCH(grid, SA_THREADS, sm, c->st)(a);
    } else {
        if (!smem_attr(c, F, (const void *)k_attn_f32<256>, 32u, sa_smem_bytes(260)))
            return;
        k_attn_f32<256> VKC_LAUNCH(grid, SA_THREADS, sm, c->st)(a);
    }
    launched(c, F, "k_attn_f32");
}

/* ------------------------------------------------------------------------ */
/* general products                                                         */

/* Row-major C[m, n] = alpha op(A) op(B) + beta C (vkc_gemm's semantics) on
 * cuBLASLt, A and B both fp32 or both bf16 (ab), C fp32. The mapping (top of
 * the file): cuBLASLt A := our B, B := our A, all column-major:
 *   A_lt: tb = 0: B [k, n] ld ldb = column-major [n, k], TRANSA = N
 *         tb = 1: B [n, k] ld ldb = column-major [k, n], TRANSA = T
 *   B_lt: ta = 0: A [m, k] ld lda = column-major [k, m], TRANSB = N
 *         ta = 1: A [k, m] ld lda = column-major [m, k], TRANSB = T
 *   C = D: column-major [n, m] ld ldc
 * so that D = op(A_lt) op(B_lt) = op(B)ᵀ op(A)ᵀ = (op(A) op(B))ᵀ, [n, m].
 * 0 done, 1 no algorithm (use gemm_simt), -1 sticky error. */
static int lt_gemm(vkc_ctx *c, const char *F, int ab, int ta, int tb, int64_t m, int64_t n,
                   int64_t k, float alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                   float beta, float *cm, int64_t ldc)
{
    /* alignments of cuBLASLt's A (our b), B (our a) and C = D */
    const uint32_t aa = align_of(b), abb = align_of(a), ad = align_of(cm);
    lt_entry *e = NULL;
    for (int i = 0; i < VKC_LT_CACHE; i++) {
        lt_entry *t = &c->lte[i];
        if (t->used && t->kind == 1 && t->m == m && t->n == n && t->k == k && t->ab == ab &&
            t->ta == ta && t->tb == tb && t->lda == lda && t->ldb == ldb && t->ldc == ldc &&
            t->al_a == aa && t->al_b == abb && t->al_d == ad) {
            e = t;
            break;
        }
    }
    if (!e) {
        e = &c->lte[c->lt_next];
        c->lt_next = (c->lt_next + 1) % VKC_LT_CACHE;
        lt_entry_free(e);
        e->used = 1;
        e->kind = 1;
        e->m = m, e->n = n, e->k = k, e->ab = ab, e->ta = ta, e->tb = tb;
        e->lda = lda, e->ldb = ldb, e->ldc = ldc;
        e->al_a = aa, e->al_b = abb, e->al_d = ad;
        const cudaDataType_t to = ab ? CUDA_R_16BF : CUDA_R_32F;
        const int32_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
        /* CUBLAS_COMPUTE_32F: fp32 products and sums (never TF32) */
        if (!ckl(c, cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), F,
                 "cublasLtMatmulDescCreate") ||
            !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                   sizeof(opa)),
                 F, "cublasLtMatmulDescSetAttribute") ||
            !ckl(c, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                   sizeof(opb)),
                 F, "cublasLtMatmulDescSetAttribute")) {
            lt_entry_free(e);
            return -1;
        }
        /* stored (rows, columns) of the column-major views, see above */
        const uint64_t ar = (uint64_t)(tb ? k : n), ac = (uint64_t)(tb ? n : k);
        const uint64_t br = (uint64_t)(ta ? m : k), bc = (uint64_t)(ta ? k : m);
        if (!ckl(c, cublasLtMatrixLayoutCreate(&e->la, to, ar, ac, ldb), F,
                 "cublasLtMatrixLayoutCreate") ||
            !ckl(c, cublasLtMatrixLayoutCreate(&e->lb, to, br, bc, lda), F,
                 "cublasLtMatrixLayoutCreate") ||
            !ckl(c, cublasLtMatrixLayoutCreate(&e->ld, CUDA_R_32F, (uint64_t)n, (uint64_t)m, ldc),
                 F, "cublasLtMatrixLayoutCreate")) {
            lt_entry_free(e);
            return -1;
        }
        if (!lt_pick(c, F, e, aa, abb, ad)) {
            lt_entry_free(e);
            return -1;
        }
    }
    if (!e->ok)
        return 1;
    /* beta 0: cuBLASLt does not read C */
    cublasStatus_t s = cublasLtMatmul(c->lt, e->op, &alpha, b, e->la, a, e->lb, &beta, cm, e->ld,
                                      cm, e->ld, &e->algo, c->ws, e->ws, c->st);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
        e->ok = 0; /* refused at run time: the SIMT kernel from now on */
        return 1;
    }
    if (!ckl(c, s, F, "cublasLtMatmul"))
        return -1;
    return launched(c, F, "cublasLtMatmul") ? 0 : -1;
}

/* The same product on the SIMT kernel. 0, or -1 (sticky error). */
static int gemm_simt(vkc_ctx *c, const char *F, int ab, int ta, int tb, int64_t m, int64_t n,
                     int64_t k, float alpha, const void *a, int64_t lda, const void *b,
                     int64_t ldb, float beta, float *cm, int64_t ldc)
{
    const int64_t mt = (m + GF_T - 1) / GF_T, nt = (n + GF_T - 1) / GF_T;
    if (nt > 0x7fffffffLL) {
        set_err(c, F, "k_gemm_gen", "n too large");
        return -1;
    }
    dim3 grid((unsigned)nt, (unsigned)(mt < 65535 ? mt : 65535));
    if (ab)
        k_gemm_gen<true> VKC_LAUNCH(grid, 256, 0, c->st)(ta, tb, m, n, k, alpha, a, lda, b, ldb,
                                                         beta, cm, ldc);
    else
        k_gemm_gen<false> VKC_LAUNCH(grid, 256, 0, c->st)(ta, tb, m, n, k, alpha, a, lda, b,
                                                          ldb, beta, cm, ldc);
    return launched(c, F, "k_gemm_gen") ? 0 : -1;
}

extern "C" void vkc_gemm(vkc_ctx *c, int bf16, int ta, int tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                         float beta, float *cm, int64_t ldc)
{
    static const char *F = "vkc_gemm";
    if (!enter(c, F))
        return;
    ta = ta != 0, tb = tb != 0;
    /* the stored shapes: A [ar, ac] (ld lda), B [br, bc] (ld ldb) */
    const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    if (m < 0 || n < 0 || k < 0 ||
        (m && n && (!cm || ldc < n || (k && (!a || !b || lda < ac || ldb < bc))))) {
        char why[192];
        snprintf(why, sizeof(why),
                 "invalid arguments (m %lld, n %lld, k %lld, ta %d, tb %d, lda %lld, ldb %lld, "
                 "ldc %lld)",
                 (long long)m, (long long)n, (long long)k, ta, tb, (long long)lda, (long long)ldb,
                 (long long)ldc);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!m || !n)
        return;
    if (!k) { /* C = beta C */
        k_scale2d VKC_LAUNCH(grid_rows(m, n, 256), 256, 0, c->st)(cm, ldc, m, n, beta);
        launched(c, F, "k_scale2d");
        return;
    }
    const void *ap = a, *bp = b;
    int64_t la = lda, lb = ldb;
    if (bf16) {
        /* the used parts of A and B rounded to bf16, compact, rows padded to 8 */
        const int64_t lac = (ac + 7) & ~(int64_t)7, lbc = (bc + 7) & ~(int64_t)7;
        const size_t abytes = ((size_t)ar * (size_t)lac * 2 + 255) & ~(size_t)255;
        const size_t bbytes = (size_t)br * (size_t)lbc * 2;
        uint8_t *scr = (uint8_t *)scratch(c, abytes + bbytes, F);
        if (!scr)
            return;
        k_f32_to_bf16_2d VKC_LAUNCH(grid_rows(ar, ac, 256), 256, 0, c->st)(a, lda, ar, ac,
                                                                        (uint16_t *)scr, lac);
        if (!launched(c, F, "k_f32_to_bf16_2d"))
            return;
        k_f32_to_bf16_2d VKC_LAUNCH(grid_rows(br, bc, 256), 256, 0, c->st)(
            b, ldb, br, bc, (uint16_t *)(scr + abytes), lbc);
        if (!launched(c, F, "k_f32_to_bf16_2d"))
            return;
        ap = scr, bp = scr + abytes, la = lac, lb = lbc;
    }
    const int ab = bf16 != 0;
    if (lt_gemm(c, F, ab, ta, tb, m, n, k, alpha, ap, la, bp, lb, beta, cm, ldc) == 1)
        gemm_simt(c, F, ab, ta, tb, m, n, k, alpha, ap, la, bp, lb, beta, cm, ldc);
}

extern "C" void vkc_softmax(vkc_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld,
                            float scale)
{
    static const char *F = "vkc_softmax";
    if (!enter(c, F))
        return;
    if (rows < 0 || cols < 0 || (rows > 1 && ld < cols) || (rows && cols && !x)) {
        char why[128];
        snprintf(why, sizeof(why), "invalid arguments (rows %lld, cols %lld, ld %lld)",
                 (long long)rows, (long long)cols, (long long)ld);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!rows || !cols)
        return;
    const unsigned grid = (unsigned)(rows < VKC_MAX_GRID ? rows : VKC_MAX_GRID);
    k_softmax VKC_LAUNCH(grid, NORM_THREADS, 0, c->st)(x, rows, cols, ld, scale);
    launched(c, F, "k_softmax");
}

/* ------------------------------------------------------------------------ */
/* convolution                                                              */

extern "C" void vkc_conv2d(vkc_ctx *c, int bf16, const float *x, int64_t ci, int64_t h, int64_t w,
                           const void *wts, int wt, int64_t co, const vkc_conv_geom *g,
                           const float *bias, int acc, float *y)
{
    static const char *F = "vkc_conv2d";
    if (!enter(c, F))
        return;
    if (!g || ci < 0 || h < 0 || w < 0 || co < 0 || g->kh < 1 || g->kw < 1 || g->sh < 1 ||
        g->sw < 1 || g->ph0 < 0 || g->ph1 < 0 || g->pw0 < 0 || g->pw1 < 0) {
        char why[192];
        snprintf(why, sizeof(why), "invalid arguments (ci %lld, h %lld, w %lld, co %lld%s)",
                 (long long)ci, (long long)h, (long long)w, (long long)co,
                 g ? ", or the geometry" : ", no geometry");
        set_err(c, F, "arguments", why);
        return;
    }
    if (wt != (bf16 ? VKC_BF16 : VKC_F32)) {
        char why[128];
        snprintf(why, sizeof(why), "weights of type %d with bf16 = %d (bf16 needs VKC_BF16, "
                 "fp32 VKC_F32)", wt, bf16 ? 1 : 0);
        set_err(c, F, "arguments", why);
        return;
    }
    /* the header's formula, C division as vk_funcs.conv_tap */
    const int64_t ho = (h + g->ph0 + g->ph1 - g->kh) / g->sh + 1;
    const int64_t wo = (w + g->pw0 + g->pw1 - g->kw) / g->sw + 1;
    if (!co || ho <= 0 || wo <= 0)
        return;
    const int64_t P = ho * wo, K = ci * g->kh * g->kw;
    if (!y || (K && !wts) || (ci && h && w && !x)) {
        set_err(c, F, "arguments", "null pointer");
        return;
    }
    const float beta = acc ? 1.0f : 0.0f;
    const int ab = bf16 != 0;
    if (!K) { /* no input channel: y = acc ? y : 0 (then the bias) */
        if (!acc && !(ck(c, cudaMemsetAsync(y, 0, (size_t)co * (size_t)P * 4, c->st), F,
                         "cudaMemsetAsync") &&
                      launched(c, F, "cudaMemsetAsync")))
            return;
    } else if (!ab && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && !g->ph0 &&
               !g->ph1 && !g->pw0 && !g->pw1) {
        /* 1 x 1, stride 1, no padding, fp32: x [ci, h w] is col already
         * (P = h w): y[co, P] = W[co, ci] x[ci, P] */
        int r = lt_gemm(c, F, 0, 0, 0, co, P, K, 1.0f, wts, K, x, P, beta, y, P);
        if (r == 1)
            r = gemm_simt(c, F, 0, 0, 0, co, P, K, 1.0f, wts, K, x, P, beta, y, P);
        if (r)
            return;
    } else {
        /* chunks of pc output pixels: col [K, pc] (ld ldcol) of es-byte values */
        const size_t es = ab ? 2 : 4;
        int64_t pc = (int64_t)(c->col_bytes / ((size_t)K * es));
        if (pc >= 128)
            pc &= ~(int64_t)127; /* chunk starts keep y's alignment (512-byte steps) */
        else if (pc >= 8)
            pc &= ~(int64_t)7;
        if (pc < 1)
            pc = 1;
        if (pc > P)
            pc = P;
        const int64_t ldcol = (pc + 7) & ~(int64_t)7; /* 16-byte rows */
        void *col = scratch(c, (size_t)K * (size_t)ldcol * es, F);
        if (!col)
            return;
        for (int64_t p0 = 0; p0 < P; p0 += pc) {
            const int64_t n = P - p0 < pc ? P - p0 : pc;
            const dim3 gr = grid_rows(K, n, 256);
            if (ab)
                k_im2col<true> VKC_LAUNCH(gr, 256, 0, c->st)(x, h, w, g->kh, g->kw, g->sh, g->sw,
                                                             g->ph0, g->pw0, wo, K, p0, n, col,
                                                             ldcol);
            else
                k_im2col<false> VKC_LAUNCH(gr, 256, 0, c->st)(x, h, w, g->kh, g->kw, g->sh, g->sw,
                                                              g->ph0, g->pw0, wo, K, p0, n, col,
                                                              ldcol);
            if (!launched(c, F, "k_im2col"))
                return;
            /* y[:, p0 : p0 + n] (row-major [co, n], ld P) = W[co, K] (ld K) col[K, n] (ld ldcol) */
            int r = lt_gemm(c, F, ab, 0, 0, co, n, K, 1.0f, wts, K, col, ldcol, beta, y + p0, P);
            if (r == 1)
                r = gemm_simt(c, F, ab, 0, 0, co, n, K, 1.0f, wts, K, col, ldcol, beta, y + p0, P);
            if (r)
                return;
        }
    }
    if (bias) {
        k_bias_rows VKC_LAUNCH(grid_rows(co, P, 256), 256, 0, c->st)(y, bias, co, P);
        launched(c, F, "k_bias_rows");
    }
}

/* ------------------------------------------------------------------------ */
/* the VAE's frame operations                                               */

extern "C" void vkc_chnorm(vkc_ctx *c, const float *x, float *y, int64_t ch, int64_t s,
                           const float *gamma, int silu)
{
    static const char *F = "vkc_chnorm";
    if (!enter(c, F))
        return;
    if (ch < 0 || s < 0 || (ch && s && (!x || !y))) {
        char why[96];
        snprintf(why, sizeof(why), "invalid arguments (ch %lld, s %lld)", (long long)ch,
                 (long long)s);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!ch || !s)
        return;
    k_chnorm VKC_LAUNCH(grid_for(s, 256), 256, 0, c->st)(x, y, ch, s, gamma, sqrtf((float)ch),
                                                      silu != 0);
    launched(c, F, "k_chnorm");
}

extern "C" void vkc_add_scaled(vkc_ctx *c, float *y, const float *a, const float *b, float s,
                               int64_t n)
{
    static const char *F = "vkc_add_scaled";
    if (!enter(c, F))
        return;
    if (n < 0 || (n && (!y || !a || !b))) {
        char why[64];
        snprintf(why, sizeof(why), "invalid arguments (n %lld)", (long long)n);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!n)
        return;
    const int vec = al16(y) && al16(a) && al16(b);
    k_add_scaled VKC_LAUNCH(grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, c->st)(y, a, b, s, n,
                                                                              vec);
    launched(c, F, "k_add_scaled");
}

extern "C" void vkc_copy_nd(vkc_ctx *c, float *dst, const int64_t *dstride, const float *src,
                            const int64_t *sstride, const int64_t *dims, int nd)
{
    static const char *F = "vkc_copy_nd";
    if (!enter(c, F))
        return;
    nd_args a;
    memset(&a, 0, sizeof(a));
    int bad = nd < 1 || nd > 6 || !dstride || !sstride || !dims;
    int64_t total = 1;
    for (int d = 0; !bad && d < nd; d++) {
        /* a source stride may be negative (the text encoder's position
         * bias reads its table backwards); destination strides not */
        bad = dims[d] < 0 || dstride[d] < 0 ||
              (dims[d] && total > INT64_MAX / dims[d]);
        if (!bad) {
            total *= dims[d];
            a.dims[d] = dims[d], a.ds[d] = dstride[d], a.ss[d] = sstride[d];
        }
    }
    if (bad || (total && (!dst || !src))) {
        char why[64];
        snprintf(why, sizeof(why), "invalid arguments (nd %d)", nd);
        set_err(c, F, "arguments", why);
        return;
    }
    if (!total)
        return;
    a.nd = nd;
    if (total <= (int64_t)UINT32_MAX)
        k_copy_nd<uint32_t> VKC_LAUNCH(grid_for(total, 256), 256, 0, c->st)(dst, src, a, total);
    else
        k_copy_nd<uint64_t> VKC_LAUNCH(grid_for(total, 256), 256, 0, c->st)(dst, src, a, total);
    launched(c, F, "k_copy_nd");
}

extern "C" void vkc_avg_share(vkc_ctx *c, const float *x, int64_t ci, int64_t h, int64_t w,
                              int ft, int fs, int grp, int64_t sco, int dt, int first, float *sc)
{
    static const char *F = "vkc_avg_share";
    if (!enter(c, F))
        return;
    /* every member k = o grp + j < sco grp reads input channel k / F < ci */
    if (ci < 0 || h < 0 || w < 0 || sco < 0 || ft < 1 || fs < 1 || grp < 1 || dt < 0 ||
        dt >= ft || sco * grp > ci * ft * fs * fs) {
        char why[192];
        snprintf(why, sizeof(why),
                 "invalid arguments (ci %lld, h %lld, w %lld, ft %d, fs %d, grp %d, sco %lld, "
                 "dt %d)",
                 (long long)ci, (long long)h, (long long)w, ft, fs, grp, (long long)sco, dt);
        set_err(c, F, "arguments", why);
        return;
    }
    const int64_t ho = h / fs, wo = w / fs, total = sco * ho * wo;
    if (!total)
        return;
    if (!x || !sc) {
        set_err(c, F, "arguments", "null pointer");
        return;
    }
    k_avg_share VKC_LAUNCH(grid_for(total, 256), 256, 0, c->st)(x, h, w, ft, fs, grp, sco, dt,
                                                             first != 0, sc, ho, wo);
    launched(c, F, "k_avg_share");
}

extern "C" void vkc_dup_add(vkc_ctx *c, const float *xin, int64_t h, int64_t w, int64_t co, int ft,
                            int fs, int rep, int dt, const float *x, float *y)
{
    static const char *F = "vkc_dup_add";
    if (!enter(c, F))
        return;
    if (h < 0 || w < 0 || co < 0 || ft < 1 || fs < 1 || rep < 1 || dt < 0 || dt >= ft) {
        char why[160];
        snprintf(why, sizeof(why),
                 "invalid arguments (h %lld, w %lld, co %lld, ft %d, fs %d, rep %d, dt %d)",
                 (long long)h, (long long)w, (long long)co, ft, fs, rep, dt);
        set_err(c, F, "arguments", why);
        return;
    }
    const int64_t total = co * h * w * fs * fs;
    if (!total)
        return;
    if (!xin || !x || !y) {
        set_err(c, F, "arguments", "null pointer");
        return;
    }
    k_dup_add VKC_LAUNCH(grid_for(total, 256), 256, 0, c->st)(xin, h, w, co, ft, fs, rep, dt, x, y);
    launched(c, F, "k_dup_add");
}
