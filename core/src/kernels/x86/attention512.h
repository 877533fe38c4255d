/* What the two AVX-512 flash-attention kernels share (attention_avx512.c,
 * fp32; attention_bf16.c, bf16 products): the base-2 exponential, the
 * in-register 16 x 16 transpose, prefetching, and the query block per task. Both files are
 * compiled with AVX-512 F/BW/DQ/VL (kernels/meson.build); static inline, so
 * each keeps its own copy in its own instruction set. The online softmax on
 * the score tile stays in each kernel: shared as a function, it changed the
 * register allocation of the products' loop (accumulators spilled). */
#ifndef VDIT_KERNELS_X86_ATTENTION512_H
#define VDIT_KERNELS_X86_ATTENTION512_H

#include <immintrin.h>

#include "../impl.h"

#define VK512_LOG2E 1.44269504088896341f
#define VK512_PF_ROWS 8 /* rows of q / o fetched ahead */

/* A vector constant the compiler may not hoist out of loops: hoisted out of
 * the loop over row groups, the softmax's constants would stay in registers
 * across the tile loops and push an accumulator onto the stack. */
static inline __m512 vk512_konst(float x)
{
    __m512 v = _mm512_set1_ps(x);
    __asm__ volatile("" : "+v"(v));
    return v;
}

/* 2^t for t <= 0 (with `clamp` also t = -inf, giving 0), vscalefps applying
 * 2^n with underflow to 0 built in. `fine`: a minimax-weighted degree 6
 * polynomial for 2^f on [-1/2, 1/2], relative error 9.6e-8 (fp32); else
 * degree 3, 7.5e-5, enough where the result is rounded to bf16 (2^-9)
 * before it multiplies V and the fp32 row sum sees the same values. */
static inline __attribute__((always_inline)) __m512 vk512_exp2(__m512 t, int clamp, int fine)
{
    if (clamp) /* -inf would give -inf - -inf = NaN below */
        t = _mm512_max_ps(t, vk512_konst(-200.0f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n), p;
    if (fine) {
        p = _mm512_fmadd_ps(vk512_konst(1.5345822612e-4f), f, vk512_konst(1.3399930904e-3f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(9.6184890717e-3f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(5.5503286421e-2f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(2.4022646248e-1f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(6.9314718246e-1f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(1.0f));
    } else {
        p = _mm512_fmadd_ps(vk512_konst(5.5171669075e-2f), f, vk512_konst(2.4261112219e-1f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(6.9326098546e-1f));
        p = _mm512_fmadd_ps(p, f, vk512_konst(9.9992807354e-1f));
    }
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 vk512_mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* In-register transpose of a 16 x 16 matrix of 32-bit elements. */
static inline void vk512_transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) { /* 2 x 2 blocks within each 128-bit lane */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* r[4g + c], lane l: rows 4g..4g+3 of column 4l + c */
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; c++) { /* gather lane l of the four groups into column 4l + c */
        __m512i u0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88);
        __m512i u1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xdd);
        __m512i u2 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88);
        __m512i u3 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xdd);
        t[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
        t[8 + c] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
        t[4 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* Prefetches the cache lines of row p[0..n), to be read (w = 0) or written. */
#define VK512_PREFETCH_ROW(p, n, w)                                                             \
    do {                                                                                        \
        for (int64_t d_ = 0; d_ < (n); d_ += 16)                                                \
            __builtin_prefetch((p) + d_, (w), 3);                                               \
        __builtin_prefetch((p) + (n) - 1, (w), 3);                                              \
    } while (0)

/* Prefetches into L2 part `g` of `ng` of the `nl` cache lines at p. */
static inline void vk512_prefetch_part(const void *p, int64_t nl, int64_t g, int64_t ng)
{
    int64_t per = (nl + ng - 1) / ng;
    for (int64_t l = g * per; l < VD_MIN(nl, (g + 1) * per); l++)
        __builtin_prefetch((const char *)p + 64 * l, 0, 2);
}

/* Queries per task (a multiple of mr, at most qb_max): smaller when there
 * are too few tasks to keep nt threads busy. */
static inline int64_t vk512_query_block(int64_t heads, int64_t lq, int nt, int64_t qb_max,
                                        int64_t mr)
{
    int64_t qb = qb_max;
    while (qb > 2 * mr && heads * ((lq + qb - 1) / qb) < 4 * nt)
        qb /= 2;
    return VD_MAX(qb / mr * mr, mr);
}

#endif
