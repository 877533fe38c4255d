/* A CPU emulation of the CUDA device, runtime and cuBLASLt, just enough for
 * core/src/kernels/cuda/vkc.cu to be compiled by a host C++ compiler and run
 * for real (the test cuda_host_emulated: tests/cuda/test_cuda.c against it),
 * in builds without nvcc, CUDA headers or a GPU.
 *
 * vkc.cu includes this header instead of the CUDA headers when compiled with
 * -DVKC_HOST_EMU (its seams: the includes; kernel launches written `kernel
 * VKC_LAUNCH(grid, block, smem, stream)(args)`, which nvcc sees as
 * `kernel<<<...>>>(args)` and this header as `kernel ->* config(args)`;
 * VKC_DYNAMIC_SMEM for the dynamic shared memory; its inline-PTX helpers
 * call the hostemu_* instructions below). Nothing here is taken from vkc.cu:
 * the instructions follow the PTX ISA (sections cited at each), the runtime
 * the CUDA runtime API's documented behaviour.
 *
 * Execution model (hostemu.cpp):
 *  - every CUDA thread is a fiber with its own stack; the threads of a block
 *    run on one OS thread, each until it finishes or waits (a block barrier,
 *    a warp-collective instruction); blocks are spread over a few OS threads
 *    (their static __shared__ arrays are thread_local, one block per OS
 *    thread at a time). A warp runs on as long as one of its lanes can, so
 *    warps drift apart as far as the block barriers let them and a missing
 *    __syncthreads shows; odd-numbered blocks take warps and lanes in
 *    reverse order, so that the race is caught either way round.
 *  - warp-collective operations (shfl.sync, bar.warp.sync, ldmatrix, mma)
 *    are collective: every lane deposits its operands, the last to arrive
 *    computes the result for all 32 and releases the others. All lanes must
 *    reach the same instruction (the same kind at the same source line), and
 *    ldmatrix and mma need all 32 lanes alive; anything else aborts.
 *  - dynamic shared memory is one heap block per CUDA block, exactly the
 *    launch's size (AddressSanitizer sees overruns), filled with 0xff bytes
 *    (NaN as fp32 and bf16) at the start of the block, as real shared memory
 *    is not initialised; shared addresses (cvta.to.shared) are offsets into
 *    it, checked for bounds and alignment by ldmatrix and cp.async.
 *  - cp.async: the destination is filled with 0xff bytes at issue and the
 *    copy is done at the cp.async.wait_group that completes its group (the
 *    latest point the PTX ISA allows), so a read before the wait sees NaN.
 *  - device memory (cudaMalloc) is host memory, 256-byte aligned, filled
 *    with 0xff bytes (NaN) at allocation, as it is not initialised either.
 *  - the stream is asynchronous: launches, copies, memsets and matmuls queue
 *    up and one executor thread runs them in order while the host goes on;
 *    copies from pageable memory are staged at the call, copies to pageable
 *    memory and cudaFree wait, as the runtime API documents. Events work.
 *  - cuBLASLt: a column-major D = alpha op(A) op(B) + beta C (+ bias) with
 *    fp32 accumulation, with strict checks of the descriptors and layouts;
 *    its heuristic has no algorithm for every second problem of fewer than
 *    2^26 multiply-adds, so that vkc.cu's SIMT fallback kernels run too
 *    (HOSTEMU_CUBLASLT=all or none in the environment: always, never).
 *
 * Environment: HOSTEMU_THREADS (OS threads running blocks, default the
 * processors, at most 8), HOSTEMU_CUBLASLT (above), HOSTEMU_STATS=1 (time
 * per kernel at exit), HOSTEMU_TRACE=1 (every launch). The PTX sections
 * cited are those of the PTX ISA 9.0.
 *
 * Not modelled: memory ordering and visibility (all threads see every write
 * at once), bank conflicts and timing, warp-synchronous code without a
 * collective (lanes are never in lockstep outside the collectives), the
 * accumulation order and rounding of tensor cores (the emulated mma adds the
 * exact products and C in double and rounds once; the ISA leaves order and
 * rounding unspecified), the ulp-level differences of device expf, exp2f,
 * erfcf (the host's libm is used) and fmaf (fused in double, rounded once to
 * double then to float: a rare double rounding). */
#ifndef VDIT_HOSTEMU_H
#define VDIT_HOSTEMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>

/* ------------------------------------------------------------------------ */
/* CUDA C++ keywords                                                        */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* static shared arrays: one per OS thread, which runs one block at a time */
#define __shared__ thread_local

/* ------------------------------------------------------------------------ */
/* vector types and the thread's coordinates                                */

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* CUDA's alignments: a misaligned vector access is a UBSan report here, a
 * fault on the device */
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(8))) uint2 {
    unsigned x, y;
};

static inline float4 make_float4(float a, float b, float c, float d)
{
    float4 v = { a, b, c, d };
    return v;
}

static inline float2 make_float2(float a, float b)
{
    float2 v = { a, b };
    return v;
}

namespace hostemu {
struct block;
/* One CUDA thread. */
struct thread_state {
    uint3 tid;
    unsigned lin, lane, warp; /* linear index in the block, lane, warp */
    block *blk;
};
struct block_info {
    uint3 idx;
    dim3 bdim, gdim;
};
} /* namespace hostemu */

/* the running CUDA thread of this OS thread (set by the scheduler) */
inline thread_local hostemu::thread_state *hostemu_cur = nullptr;
inline thread_local hostemu::block_info *hostemu_blk = nullptr;

#define threadIdx (hostemu_cur->tid)
#define blockIdx (hostemu_blk->idx)
#define blockDim (hostemu_blk->bdim)
#define gridDim (hostemu_blk->gdim)
#define warpSize 32

/* ------------------------------------------------------------------------ */
/* device functions                                                         */

static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}

/* fmaf fused as on the device (the host's fmaf may be a slow library call
 * without FMA hardware): exact product and sum in double, rounded once to
 * double, then to float */
static inline float hostemu_fmaf(float a, float b, float c)
{
    return (float)((double)a * (double)b + (double)c);
}
#define fmaf(a, b, c) hostemu_fmaf((a), (b), (c))

template <class T> static inline T min(T a, T b)
{
    return b < a ? b : a;
}

template <class T> static inline T max(T a, T b)
{
    return a < b ? b : a;
}

struct __half {
    unsigned short x_;
};
struct __nv_bfloat16 {
    unsigned short x_;
};
/* .x is the low 16 bits, .y the high (cuda_bf16.h's layout) */
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __half __ushort_as_half(unsigned short u)
{
    __half h = { u };
    return h;
}

float __half2float(__half h);

/* cvt.rn.bf16.f32: round to nearest even; NaN gives the canonical NaN */
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    unsigned u = __float_as_uint(f);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.x_ = 0x7fff;
        return r;
    }
    u += 0x7fffu + ((u >> 16) & 1);
    r.x_ = (unsigned short)(u >> 16);
    return r;
}

/* a in .x (the low half), b in .y (cuda_bf16.h: cvt.rn.bf16x2.f32 d, b, a) */
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b)
{
    __nv_bfloat162 v = { __float2bfloat16_rn(a), __float2bfloat16_rn(b) };
    return v;
}

/* Block barrier (bar.sync 0; PTX ISA 9.7.13.1 barrier: waits for every
 * non-exited thread of the block, all at the same instruction). */
void hostemu_bar_sync(int line);
static inline void __syncthreads(int line = __builtin_LINE())
{
    hostemu_bar_sync(line);
}

/* bar.warp.sync: the lanes of mask meet */
void hostemu_bar_warp_sync(unsigned mask, int line);
static inline void __syncwarp(unsigned mask = 0xffffffffu, int line = __builtin_LINE())
{
    hostemu_bar_warp_sync(mask, line);
}

/* shfl.sync.bfly.b32 (PTX ISA 9.7.9.6), c = ((32 - width) << 8) | 31 as
 * __shfl_xor_sync compiles to */
uint32_t hostemu_shfl_bfly(unsigned mask, uint32_t v, int lanemask, int width, int line);
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lanemask, int width = 32,
                                int line = __builtin_LINE())
{
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    uint32_t u;
    memcpy(&u, &v, 4);
    u = hostemu_shfl_bfly(mask, u, lanemask, width, line);
    T r;
    memcpy(&r, &u, 4);
    return r;
}

/* cvta.to.shared: the offset of p in the block's shared window (only the
 * dynamic shared memory is in it here) */
size_t hostemu_cvta_to_shared(const void *p);
static inline size_t __cvta_generic_to_shared(const void *p)
{
    return hostemu_cvta_to_shared(p);
}

/* the running block's dynamic shared memory (VKC_DYNAMIC_SMEM) */
unsigned char *hostemu_dynamic_smem(void);

/* ---- PTX instructions (vkc.cu's inline-PTX helpers call these) ---- */

/* cp.async.cg.shared.global [dst], [src], cp_size, src_size (PTX ISA
 * 9.7.9.25.3.1): cp_size bytes to shared offset dst, the first src_size from
 * src, the rest zeros; src_size 0 reads nothing. */
void hostemu_cp_async(uint32_t dst, const void *src, int cp_size, int src_size,
                      int line = __builtin_LINE());
/* cp.async.commit_group (9.7.9.25.3.2) */
void hostemu_cp_async_commit_group(void);
/* cp.async.wait_group n (9.7.9.25.3.3) */
void hostemu_cp_async_wait_group(int n);
/* ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16 (9.7.14.5.15):
 * num registers r from the row addresses of lanes 0 .. 8 num - 1 */
void hostemu_ldmatrix_m8n8_b16(uint32_t *r, int num, bool trans, uint32_t addr,
                               int line = __builtin_LINE());
/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 d, a, b, c
 * (9.7.14.5.14, fragments 9.7.14.5.8); d may be c */
void hostemu_mma_m16n8k16_row_col_f32_bf16_bf16_f32(float d[4], const uint32_t a[4],
                                                    const uint32_t b[2], const float c[4],
                                                    int line = __builtin_LINE());

/* ------------------------------------------------------------------------ */
/* the CUDA runtime API (the subset vkc.cu uses)                           */

typedef int cudaError_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
};
typedef struct hostemu_stream *cudaStream_t;
typedef struct hostemu_event *cudaEvent_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum { cudaHostAllocDefault = 0, cudaEventDisableTiming = 2, cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemoryType {
    cudaMemoryTypeUnregistered = 0,
    cudaMemoryTypeHost = 1,
    cudaMemoryTypeDevice = 2,
};
struct cudaPointerAttributes {
    enum cudaMemoryType type;
    int device;
    void *devicePointer, *hostPointer;
};
struct cudaDeviceProp {
    char name[256];
    int major, minor;
    size_t totalGlobalMem;
    size_t sharedMemPerBlockOptin;
};
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s);
cudaError_t cudaMemset2DAsync(void *dst, size_t pitch, int v, size_t w, size_t h,
                              cudaStream_t s);
cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v);

/* ------------------------------------------------------------------------ */
/* kernel launches: `kernel VKC_LAUNCH(grid, block, smem, stream)(args)`    */

namespace hostemu {

/* A launch queued on a stream: the kernel and its arguments, copied at the
 * launch as CUDA does. */
struct kernel_job {
    const void *fn;
    const char *file; /* where it was launched (diagnostics) */
    int line;
    dim3 grid, block;
    size_t smem;
    virtual void run_thread() = 0; /* the kernel for hostemu_cur's thread */
    virtual ~kernel_job() {}
};

template <class... P> struct kernel_call : kernel_job {
    void (*k)(P...);
    std::tuple<typename std::decay<P>::type...> args;
    template <class T> kernel_call(void (*f)(P...), T &&t) : k(f), args(std::forward<T>(t)) {}
    void run_thread() override
    {
        std::apply(k, args);
    }
};

/* Checks the configuration (a bad one is cudaGetLastError's error, as
 * CUDA's), then queues the job on the stream (which then owns it). */
void submit(kernel_job *j, cudaStream_t st);

/* VKC_LAUNCH(cfg)(args): the configuration, then the arguments (copied) */
template <class... A> struct pending_launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t st;
    const char *file;
    int line;
    std::tuple<typename std::decay<A>::type...> args;
};

struct launch_config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t st;
    const char *file;
    int line;
    template <class... A> pending_launch<A...> operator()(A &&...a) const
    {
        return pending_launch<A...>{ grid, block, smem, st, file, line,
                                     std::tuple<typename std::decay<A>::type...>(
                                         std::forward<A>(a)...) };
    }
};

static inline launch_config config(dim3 grid, dim3 block, size_t smem = 0,
                                   cudaStream_t st = nullptr,
                                   const char *file = __builtin_FILE(),
                                   int line = __builtin_LINE())
{
    return launch_config{ grid, block, smem, st, file, line };
}

} /* namespace hostemu */

/* kernel ->* the pending launch: the arguments converted to the kernel's
 * parameter types, as a call would, and the job queued */
template <class... P, class... A>
void operator->*(void (*k)(P...), hostemu::pending_launch<A...> &&p)
{
    static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
    hostemu::kernel_call<P...> *j = new hostemu::kernel_call<P...>(
        k, std::tuple<typename std::decay<P>::type...>(std::move(p.args)));
    j->fn = (const void *)k;
    j->file = p.file;
    j->line = p.line;
    j->grid = p.grid, j->block = p.block, j->smem = p.smem;
    hostemu::submit(j, p.st);
}

#define VKC_LAUNCH(...) ->*hostemu::config(__VA_ARGS__)
#define VKC_DYNAMIC_SMEM(name) unsigned char *const name = hostemu_dynamic_smem()

/* ------------------------------------------------------------------------ */
/* cuBLASLt (the subset vkc.cu uses)                                        */

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8
} cublasLtMatmulDescAttributes_t;
enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 };
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;

typedef struct hostemu_lt *cublasLtHandle_t;
typedef struct hostemu_lt_desc *cublasLtMatmulDesc_t;
typedef struct hostemu_lt_layout *cublasLtMatrixLayout_t;
typedef struct hostemu_lt_pref *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t ct,
                                        cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t n);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows,
                                          uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *buf, size_t n);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t res[], int *got);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t ad, const void *B,
                              cublasLtMatrixLayout_t bd, const void *beta, const void *C,
                              cublasLtMatrixLayout_t cd, void *D, cublasLtMatrixLayout_t ddesc,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t wsn,
                              cudaStream_t s);

#endif
