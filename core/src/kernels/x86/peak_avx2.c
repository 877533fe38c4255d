/* The fp32 peak loop on ymm (peak.c): 12 independent FMA chains, enough for
 * latency 4 x 3 pipes, all in the 16 ymm registers with the two operands. */
#include <immintrin.h>

#include "x86.h"

double vk_avx2_peak_fma(int64_t iters, float a, float b, float *sink)
{
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256 c0 = _mm256_set1_ps(1.0f), c1 = _mm256_set1_ps(1.1f), c2 = _mm256_set1_ps(1.2f),
           c3 = _mm256_set1_ps(1.3f), c4 = _mm256_set1_ps(1.4f), c5 = _mm256_set1_ps(1.5f),
           c6 = _mm256_set1_ps(1.6f), c7 = _mm256_set1_ps(1.7f), c8 = _mm256_set1_ps(1.8f),
           c9 = _mm256_set1_ps(1.9f), c10 = _mm256_set1_ps(2.0f), c11 = _mm256_set1_ps(2.1f);
    for (int64_t i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, va, vb);
        c1 = _mm256_fmadd_ps(c1, va, vb);
        c2 = _mm256_fmadd_ps(c2, va, vb);
        c3 = _mm256_fmadd_ps(c3, va, vb);
        c4 = _mm256_fmadd_ps(c4, va, vb);
        c5 = _mm256_fmadd_ps(c5, va, vb);
        c6 = _mm256_fmadd_ps(c6, va, vb);
        c7 = _mm256_fmadd_ps(c7, va, vb);
        c8 = _mm256_fmadd_ps(c8, va, vb);
        c9 = _mm256_fmadd_ps(c9, va, vb);
        c10 = _mm256_fmadd_ps(c10, va, vb);
        c11 = _mm256_fmadd_ps(c11, va, vb);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float v[8];
    _mm256_storeu_ps(v, s);
    *sink = v[0] + v[7];
    return (double)iters * 12 * 8 * 2;
}
