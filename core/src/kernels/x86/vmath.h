/* Vector math for AVX2/FMA: exp, sigmoid-based activations, erf, horizontal
 * sums. Accuracy: exp within ~2 ulp on [-87, 88]; erf within 2e-7 absolute. */
#ifndef VDIT_KERNELS_X86_VMATH_H
#define VDIT_KERNELS_X86_VMATH_H

#include <immintrin.h>

/* e^x; inputs below -87.3 give 0 (also -inf), above 88.7 saturate. */
static inline __m256 vk_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.7f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - fx ln2, ln2 split in two for exactness */
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^fx with fx in [-126, 128]: build it in two halves so 128 stays finite */
    __m256i e = _mm256_cvtps_epi32(fx);
    __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(under, p);
}

/* x / (1 + e^(-k x)) */
static inline __m256 vk_xsig8(__m256 x, __m256 kx)
{
    __m256 e = vk_exp8(_mm256_sub_ps(_mm256_setzero_ps(), kx));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 vk_erf8(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 s = _mm256_and_ps(x, sign), z = _mm256_andnot_ps(sign, x);
    /* Abramowitz & Stegun 7.1.26 */
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(z, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = vk_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z)));
    __m256 r = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(r, s);
}

static inline __m256 vk_act8(__m256 x, int act)
{
    switch (act) {
    case 1: { /* gelu tanh: 0.5 x (1 + tanh(u)) = x sigmoid(2u) */
        __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        __m256 u = _mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x);
        return vk_xsig8(x, _mm256_mul_ps(u, _mm256_set1_ps(2.0f * 0.7978845608028654f)));
    }
    case 2: {
        __m256 h = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
        __m256 e = vk_erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.7071067811865476f)));
        return _mm256_fmadd_ps(h, e, h);
    }
    case 3:
        return vk_xsig8(x, x);
    case 4:
        return _mm256_max_ps(x, _mm256_setzero_ps());
    default:
        return x;
    }
}

static inline float vk_hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

static inline float vk_hmax8(__m256 v)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* Mask for the first n (0..8) lanes. */
static inline __m256i vk_mask8(int64_t n)
{
    static const int32_t m[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

#endif
