/* The fp32 peak loop on zmm (peak.c): 16 independent FMA chains (latency 4
 * x 2 pipes needs 8; room for more pipes). */
#include <immintrin.h>

#include "x86.h"

double vk_avx512_peak_fma(int64_t iters, float a, float b, float *sink)
{
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), c[16];
    /* a fixed-size array of locals fully unrolled stays in registers */
    for (int j = 0; j < 16; j++)
        c[j] = _mm512_set1_ps(1.0f + 0.1f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            c[j] = _mm512_fmadd_ps(c[j], va, vb);
    }
    __m512 s = c[0];
    for (int j = 1; j < 16; j++)
        s = _mm512_add_ps(s, c[j]);
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 16 * 16 * 2;
}
