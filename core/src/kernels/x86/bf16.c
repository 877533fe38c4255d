/* AVX512_BF16 helpers: fp32 to bf16 conversion for the bf16 products. */
#include <immintrin.h>
#include <omp.h>

#include "../impl.h"
#include "x86.h"

/* vcvtne2ps2bf16 rounds to nearest even like vt_f32_to_bf16, keeps NaN a
 * NaN, and treats fp32 denormals as zero (bf16 has the same exponent range,
 * so those would be bf16 denormals: below 1.2e-38, irrelevant to products). */
static void cvt_run(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    if (i < n) {
        uint32_t r = (uint32_t)(n - i), m = (1u << r) - 1; /* r < 32 */
        __m512 a = _mm512_maskz_loadu_ps((__mmask16)m, src + i);
        __m512 b = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), src + i + 16);
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
        _mm512_mask_storeu_epi16(dst + i, (__mmask32)m, v);
    }
}

void vk_bf16_to_bf16(vk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    /* conversion streams memory: split only when the copy is large */
    int nt = n < (1u << 18) || c->n_threads < 2 ? 1 : c->n_threads;
    if (nt == 1) {
        cvt_run(dst, src, n);
        return;
    }
    size_t per = (n / (size_t)nt + 31) / 32 * 32;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        size_t a = (size_t)t * per, b = a + per < n ? a + per : n;
        if (a < b)
            cvt_run(dst + a, src + a, b - a);
    }
}
