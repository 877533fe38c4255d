/* cuBLASLt through dlopen: the functions vkc.cu calls, defined here with
 * cublasLt.h's prototypes, each forwarding to the library's own, which is
 * opened on first use (libcublasLt.so.13, else libcublasLt.so). So the
 * library does not link cuBLASLt (500 MB, and absent where only the driver
 * is installed): a CPU user never loads it, and a device context whose
 * cublasLtCreate cannot find it fails with vkc_cublaslt_error's reason.
 * The handle is opened once per process and never closed (as the dynamic
 * linker would have it); nothing else is kept. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

/* the toolkit's header has a declaration without a prototype */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cublasLt.h>
#pragma GCC diagnostic pop

#include "vkc_dl.h"

static void *lib;
static char lib_err[256];
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_open(void)
{
    static const char *names[] = { "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !lib; i++)
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(lib_err, sizeof(lib_err), "cannot load cuBLASLt (libcublasLt.so.13): %s",
                 e ? e : "not found");
    }
}

static void *sym(const char *name)
{
    pthread_once(&lib_once, lib_open);
    return lib ? dlsym(lib, name) : NULL;
}

const char *vkc_cublaslt_error(void)
{
    pthread_once(&lib_once, lib_open);
    return lib ? NULL : lib_err;
}

/* R name(params) { forward(args) }, CUBLAS_STATUS_NOT_INITIALIZED (or NULL
 * for strings) when the library or the symbol is missing. */
#define FWD(R, name, fail, params, args)                                                         \
    R CUBLASWINAPI name params                                                                   \
    {                                                                                            \
        R(*f) params = (R(*) params)sym(#name);                                                  \
        return f ? f args : fail;                                                                \
    }

FWD(cublasStatus_t, cublasLtCreate, CUBLAS_STATUS_NOT_INITIALIZED, (cublasLtHandle_t * h), (h))
FWD(cublasStatus_t, cublasLtDestroy, CUBLAS_STATUS_NOT_INITIALIZED, (cublasLtHandle_t h), (h))
FWD(const char *, cublasLtGetStatusString, "cuBLASLt not loaded", (cublasStatus_t s), (s))
FWD(const char *, cublasLtGetStatusName, "CUBLAS_STATUS_NOT_INITIALIZED", (cublasStatus_t s), (s))
FWD(cublasStatus_t, cublasLtMatmulDescCreate, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulDesc_t * d, cublasComputeType_t ct, cudaDataType_t st), (d, ct, st))
FWD(cublasStatus_t, cublasLtMatmulDescDestroy, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulDesc_t d), (d))
FWD(cublasStatus_t, cublasLtMatmulDescSetAttribute, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *b, size_t n),
    (d, a, b, n))
FWD(cublasStatus_t, cublasLtMatrixLayoutCreate, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatrixLayout_t * l, cudaDataType t, uint64_t r, uint64_t c, int64_t ld),
    (l, t, r, c, ld))
FWD(cublasStatus_t, cublasLtMatrixLayoutDestroy, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatrixLayout_t l), (l))
FWD(cublasStatus_t, cublasLtMatrixLayoutSetAttribute, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void *b, size_t n),
    (l, a, b, n))
FWD(cublasStatus_t, cublasLtMatmulPreferenceCreate, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulPreference_t * p), (p))
FWD(cublasStatus_t, cublasLtMatmulPreferenceDestroy, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulPreference_t p), (p))
FWD(cublasStatus_t, cublasLtMatmulPreferenceSetAttribute, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void *b,
     size_t n),
    (p, a, b, n))
FWD(cublasStatus_t, cublasLtMatmulAlgoGetHeuristic, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
     cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
     cublasLtMatmulPreference_t p, int n, cublasLtMatmulHeuristicResult_t r[], int *got),
    (h, d, a, b, c, dd, p, n, r, got))
FWD(cublasStatus_t, cublasLtMatmul, CUBLAS_STATUS_NOT_INITIALIZED,
    (cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
     cublasLtMatrixLayout_t ad, const void *B, cublasLtMatrixLayout_t bd, const void *beta,
     const void *C, cublasLtMatrixLayout_t cd, void *D, cublasLtMatrixLayout_t ddd,
     const cublasLtMatmulAlgo_t *algo, void *ws, size_t wsn, cudaStream_t s),
    (h, d, alpha, A, ad, B, bd, beta, C, cd, D, ddd, algo, ws, wsn, s))
