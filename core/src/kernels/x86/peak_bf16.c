/* The bf16 peak loop (peak.c): 16 independent vdpbf16ps zmm chains; each
 * instruction is 16 lanes x 2 bf16 products added into fp32, 64 flops. */
#include <immintrin.h>

#include "x86.h"

double vk_bf16_peak_dot(int64_t iters, float a, float b, float *sink)
{
    __m512bh va = _mm512_cvtne2ps_pbh(_mm512_set1_ps(a), _mm512_set1_ps(a));
    __m512bh vb = _mm512_cvtne2ps_pbh(_mm512_set1_ps(b), _mm512_set1_ps(b));
    __m512 c[16];
    for (int j = 0; j < 16; j++)
        c[j] = _mm512_set1_ps(1.0f + 0.1f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            c[j] = _mm512_dpbf16_ps(c[j], va, vb);
    }
    __m512 s = c[0];
    for (int j = 1; j < 16; j++)
        s = _mm512_add_ps(s, c[j]);
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 16 * 64;
}
