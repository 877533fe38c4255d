/* The dlopen shim of cuBLASLt (cublaslt_dl.c). */
#ifndef VDIT_KERNELS_CUDA_VKC_DL_H
#define VDIT_KERNELS_CUDA_VKC_DL_H

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when cuBLASLt could be loaded, else why not (for a context's error). */
const char *vkc_cublaslt_error(void);

#ifdef __cplusplus
}
#endif

#endif
