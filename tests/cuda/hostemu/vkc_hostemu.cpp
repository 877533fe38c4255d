/* vkc.cu compiled for the host emulation (hostemu.h): the test
 * cuda_host_emulated runs tests/cuda/test_cuda.c against it. */
#define VKC_HOST_EMU 1
#include "kernels/cuda/vkc.cu"
