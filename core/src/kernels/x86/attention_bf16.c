/* Flash-style attention with AVX512_BF16: bf16 products, fp32 accumulation
 * and fp32 online softmax. Same walk as attention.c: for each (head, block of
 * queries) the keys go by in blocks of KB with a running row maximum and sum,
 * so only a QB x KB tile of scores exists.
 *
 * vdpbf16ps multiplies pairs of bf16 in each 32-bit lane and adds both
 * products to an fp32 lane, so every operand is packed with two consecutive
 * elements of the reduction in one lane:
 *   S[6, 64] = Q[6, hd] Kᵀ  Q rows as pairs along hd (broadcast), K block
 *                           packed [hd/2][KB][2] (4 zmm of 16 keys per pair)
 *   O[6, 64] += P[6, KB] V  P rows as pairs along keys (broadcast), V block
 *                           packed [KB/2][hd][2] (zmm of 16 columns per pair)
 * Both run on a 6 x 4 zmm register tile (24 accumulators, 4 loads and 6
 * broadcasts per 24 vdpbf16ps), enough independent work to cover the
 * instruction's latency at one per cycle (Zen 4); from L1 such a loop runs
 * at the measured peak.
 *
 * A block is exactly one tile wide (KB = 64 keys), so the scores of six rows
 * never leave registers: the softmax runs on the tile's accumulators and
 * writes the probabilities as bf16 pairs. Scores are kept in base 2 (Q is
 * pre-scaled by scale * log2(e), the bias multiplied by log2(e), so a finite
 * bias beyond 2.3e38 in magnitude counts as infinite), and the exponential
 * is a bare 2^x.
 *
 * Semantics otherwise as vk_avx2_attention: only the first kv_valid keys
 * take part, -inf biases are allowed, a query that sees no key gets zeros.
 * Odd hd and odd key counts are zero padded to whole pairs; K and V are
 * converted (round to nearest even) once per call into the context's scratch
 * (half the size of K and V in fp32). Tasks (head, query block) are spread
 * over the threads dynamically, heads varying fastest. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <immintrin.h>

#include "../impl.h"
#include "attention512.h"
#include "x86.h"

#define MR 6        /* query rows per register tile */
#define KB 64       /* keys per block: 4 zmm of 16, one tile wide */
#define KP (KB / 2) /* key pairs per block */
#define QB 96       /* queries per task, multiple of MR */

/* dst[(n + 1) / 2] = bf16 pairs of src[0..n) * scale, the odd tail zero padded. */
static void cvt_row(uint32_t *dst, const float *src, int64_t n, float scale)
{
    __m512 sc = _mm512_set1_ps(scale);
    for (int64_t d = 0; d < n; d += 32) {
        __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(vk512_mask16(n - d), src + d), sc);
        __m512 hi =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(vk512_mask16(n - d - 16), src + d + 16), sc);
        __m512i pb = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_mask_storeu_epi32(dst + d / 2, vk512_mask16((n - d + 1) / 2), pb);
    }
}

typedef struct bat_args {
    const float *q, *k, *v, *bias;
    float *o;
    int64_t ldq, ldk, ldv, ldo, heads, hd, lq, lk, nk;
    int64_t hd2;  /* pairs along hd: (hd + 1) / 2 */
    int64_t hdv;  /* hd rounded up to 16 (columns of O and V) */
    int64_t nkb;  /* key blocks */
    int64_t qb;   /* queries per task, multiple of MR, <= QB */
    float qscale; /* scale * log2(e): scores in base 2 */
    uint32_t *kp; /* [heads, nkb, hd2, KB] K as bf16 pairs along hd */
    uint32_t *vp; /* [heads, nkb, KP, hdv] V as bf16 pairs along keys */
} bat_args;

typedef struct bat_buf {
    uint32_t *q; /* [QB, hd2] scaled queries as bf16 pairs, zero rows past the end */
    uint32_t *p; /* [QB, KP] probabilities of one key block as bf16 pairs */
    float *o;    /* [QB, hdv] running output */
    float *l;    /* [QB, 16] running row sums, 16 partial sums per row */
    float *m;    /* [QB] running row maxima (base 2) */
} bat_buf;

/* Packs keys [16 g, 16 g + 16) of every head: K as pairs along hd (16 rows
 * converted, then transposed in registers), V as pairs along keys (rows 2jp
 * and 2jp+1 interleaved by vpermw after the conversion, which leaves the two
 * rows one after the other). Keys past the end are zeros. All heads in one
 * go, so each key row is read front to back. */
static void pack_keys(const bat_args *a, int64_t g)
{
    int64_t hd = a->hd, hd2 = a->hd2, hdv = a->hdv, jb = g / (KB / 16), jg = g % (KB / 16) * 16;
    int64_t j0 = g * 16, nr = VD_MIN(16, a->nk - j0);
    for (int64_t h = 0; h < a->heads; h++) {
        uint32_t *kp = a->kp + (h * a->nkb + jb) * hd2 * KB + jg;
        for (int64_t d = 0; d < hd; d += 32) {
            __m512i r[16];
            for (int j = 0; j < 16; j++) {
                const float *src = a->k + (j < nr ? j0 + j : 0) * a->ldk + h * hd + d;
                __mmask16 m0 = j < nr ? vk512_mask16(hd - d) : 0;
                __mmask16 m1 = j < nr ? vk512_mask16(hd - d - 16) : 0;
                r[j] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, src + 16),
                                                    _mm512_maskz_loadu_ps(m0, src));
            }
            vk512_transpose16(r);
            for (int64_t p = 0; p < VD_MIN(16, hd2 - d / 2); p++)
                _mm512_storeu_si512(kp + (d / 2 + p) * KB, r[p]);
        }
    }
    const __m512i ilv = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    for (int64_t jp = 0; jp < 8; jp++) {
        int64_t n0 = 2 * jp < nr ? hd : 0, n1 = 2 * jp + 1 < nr ? hd : 0;
        /* rows past the end are masked out entirely; point at row 0 */
        const float *v0 = a->v + (n0 ? j0 + 2 * jp : 0) * a->ldv;
        const float *v1 = a->v + (n1 ? j0 + 2 * jp + 1 : 0) * a->ldv;
        for (int64_t h = 0; h < a->heads; h++) {
            uint32_t *vp = a->vp + ((h * a->nkb + jb) * KP + jg / 2 + jp) * hdv;
            for (int64_t d = 0; d < hdv; d += 16) {
                __m512 x0 = _mm512_maskz_loadu_ps(vk512_mask16(n0 - d), v0 + h * hd + d);
                __m512 x1 = _mm512_maskz_loadu_ps(vk512_mask16(n1 - d), v1 + h * hd + d);
                __m512i pb = _mm512_permutexvar_epi16(ilv, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
                _mm512_storeu_si512(vp + d, pb);
            }
        }
    }
}

#define BCAST(p) ((__m512bh)_mm512_set1_epi32((int)*(p)))

/* Scores of rows [r, r + MR) of the task against one key block, then their
 * online softmax: running maxima and sums updated, O rows rescaled when the
 * maximum grows, probabilities stored as bf16 pairs in b->p. `clamp`: some
 * score may be -inf (keys past kb or a bias). */
static inline __attribute__((always_inline)) void
qk_softmax(const bat_args *a, const bat_buf *b, int64_t h, int64_t i0, int64_t nq, int64_t r,
           const uint32_t *kblk, int64_t j0, int64_t kb, int clamp)
{
    const int64_t hd2 = a->hd2;
    const uint32_t *q = b->q + r * hd2;
    __m512 s[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            s[i][c] = _mm512_setzero_ps();
    for (int64_t d2 = 0; d2 < hd2; d2++) {
        const uint32_t *kr = kblk + d2 * KB;
        __m512bh k0 = (__m512bh)_mm512_loadu_si512(kr), k1 = (__m512bh)_mm512_loadu_si512(kr + 16);
        __m512bh k2 = (__m512bh)_mm512_loadu_si512(kr + 32);
        __m512bh k3 = (__m512bh)_mm512_loadu_si512(kr + 48);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m512bh qi = BCAST(q + i * hd2 + d2);
            s[i][0] = _mm512_dpbf16_ps(s[i][0], qi, k0);
            s[i][1] = _mm512_dpbf16_ps(s[i][1], qi, k1);
            s[i][2] = _mm512_dpbf16_ps(s[i][2], qi, k2);
            s[i][3] = _mm512_dpbf16_ps(s[i][3], qi, k3);
        }
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY), log2e = _mm512_set1_ps(VK512_LOG2E);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        int64_t row = r + i;
        if (a->bias && row < nq) { /* bias in base 2 too */
            const float *br = a->bias + (h * a->lq + i0 + row) * a->lk + j0;
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                s[i][c] = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(vk512_mask16(kb - 16 * c), br + 16 * c), log2e, s[i][c]);
        }
        if (kb < KB)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                s[i][c] = _mm512_mask_mov_ps(ninf, vk512_mask16(kb - 16 * c), s[i][c]);
        __m512 mx = _mm512_max_ps(_mm512_max_ps(s[i][0], s[i][1]), _mm512_max_ps(s[i][2], s[i][3]));
        __m512 m = _mm512_set1_ps(b->m[row]);
        /* The maximum rarely grows after the first blocks: one compare
         * decides, the horizontal maximum and the rescale only run then. */
        if (_mm512_cmp_ps_mask(mx, m, _CMP_GT_OQ)) {
            float mold = b->m[row], mnew = _mm512_reduce_max_ps(mx);
            /* 0 from the initial -FLT_MAX; any error of alpha cancels, O and
             * the sum are both scaled by it (and libm's exp2f would take its
             * slow underflow path there) */
            __m512 al = vk512_exp2(_mm512_set1_ps(mold - mnew), 1, 0);
            float *orow = b->o + row * a->hdv;
            for (int64_t d = 0; d < a->hdv; d += 16)
                _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), al));
            _mm512_storeu_ps(b->l + row * 16, _mm512_mul_ps(_mm512_loadu_ps(b->l + row * 16), al));
            b->m[row] = mnew;
            m = _mm512_set1_ps(mnew);
        }
        __m512 p0 = vk512_exp2(_mm512_sub_ps(s[i][0], m), clamp, 0);
        __m512 p1 = vk512_exp2(_mm512_sub_ps(s[i][1], m), clamp, 0);
        __m512 p2 = vk512_exp2(_mm512_sub_ps(s[i][2], m), clamp, 0);
        __m512 p3 = vk512_exp2(_mm512_sub_ps(s[i][3], m), clamp, 0);
        __m512 sum = _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3));
        _mm512_storeu_ps(b->l + row * 16, _mm512_add_ps(_mm512_loadu_ps(b->l + row * 16), sum));
        uint32_t *pr = b->p + row * KP;
        _mm512_storeu_si512(pr, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        _mm512_storeu_si512(pr + 16, (__m512i)_mm512_cvtne2ps_pbh(p3, p2));
    }
}

/* o[MR, 16 nc] += p[MR, 2 np] · v[2 np, 16 nc]: p rows as pairs (stride KP),
 * v as pairs along keys (stride ldv per pair). */
static inline __attribute__((always_inline)) void
tile_pv(const uint32_t *p, const uint32_t *v, int64_t ldv, int64_t np, float *o, int64_t ldo,
        int nc)
{
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            acc[i][c] = _mm512_loadu_ps(o + i * ldo + 16 * c);
    for (int64_t jp = 0; jp < np; jp++) {
        __m512bh vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            vv[c] = (__m512bh)_mm512_loadu_si512(v + jp * ldv + 16 * c);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m512bh pi = BCAST(p + i * KP + jp);
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                acc[i][c] = _mm512_dpbf16_ps(acc[i][c], pi, vv[c]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            _mm512_storeu_ps(o + i * ldo + 16 * c, acc[i][c]);
}

/* One task: head h, queries [i0, i0 + nq). */
static void bat_block(const bat_args *a, const bat_buf *b, int64_t h, int64_t i0, int64_t nq)
{
    int64_t hd = a->hd, hd2 = a->hd2, hdv = a->hdv, nqp = (nq + MR - 1) / MR * MR;
    /* Blocks of K and V (contiguous) are fetched into L2 a slice at a time
     * ahead of their use, so that they are not waited for when they come
     * from L3 or memory: the first one while the queries are converted, the
     * next one while the scores of the current one are computed. */
    int64_t nlk = hd2 * KB * 4 / 64, nlv = KP * hdv * 4 / 64, ng = nqp / MR;
    for (int64_t i = 0; i < nqp; i++) {
        if (a->nkb > 0) {
            vk512_prefetch_part(a->kp + h * a->nkb * hd2 * KB, nlk, i, nqp);
            vk512_prefetch_part(a->vp + h * a->nkb * KP * hdv, nlv, i, nqp);
        }
        /* rows of q lie a whole stride apart, too far for the hardware
         * prefetcher: fetch a few rows ahead */
        if (i + VK512_PF_ROWS < nq)
            VK512_PREFETCH_ROW(a->q + (i0 + i + VK512_PF_ROWS) * a->ldq + h * hd, hd, 0);
        if (i < nq)
            cvt_row(b->q + i * hd2, a->q + (i0 + i) * a->ldq + h * hd, hd, a->qscale);
        else
            memset(b->q + i * hd2, 0, (size_t)hd2 * sizeof(uint32_t));
        memset(b->o + i * hdv, 0, (size_t)hdv * sizeof(float));
        memset(b->l + i * 16, 0, 16 * sizeof(float));
        b->m[i] = -FLT_MAX; /* finite: s - m is -inf, not NaN, for -inf scores */
    }
    for (int64_t jb = 0; jb < a->nkb; jb++) {
        int64_t j0 = jb * KB, kb = VD_MIN(KB, a->nk - j0), np = (kb + 1) / 2;
        const uint32_t *kblk = a->kp + (h * a->nkb + jb) * hd2 * KB;
        const uint32_t *vblk = a->vp + (h * a->nkb + jb) * KP * hdv;
        for (int64_t r = 0, g = 0; r < nqp; r += MR, g++) {
            if (jb + 1 < a->nkb) {
                vk512_prefetch_part(kblk + hd2 * KB, nlk, g, ng);
                vk512_prefetch_part(vblk + KP * hdv, nlv, g, ng);
            }
            if (a->bias || kb < KB)
                qk_softmax(a, b, h, i0, nq, r, kblk, j0, kb, 1);
            else
                qk_softmax(a, b, h, i0, nq, r, kblk, j0, kb, 0);
        }
        for (int64_t c = 0; c < hdv; c += 64) {
            int nc = (int)VD_MIN(4, (hdv - c) / 16);
            for (int64_t r = 0; r < nqp; r += MR) {
                const uint32_t *p = b->p + r * KP;
                float *o = b->o + r * hdv + c;
                switch (nc) {
                case 4: tile_pv(p, vblk + c, hdv, np, o, hdv, 4); break;
                case 3: tile_pv(p, vblk + c, hdv, np, o, hdv, 3); break;
                case 2: tile_pv(p, vblk + c, hdv, np, o, hdv, 2); break;
                default: tile_pv(p, vblk + c, hdv, np, o, hdv, 1); break;
                }
            }
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        if (i + VK512_PF_ROWS < nq)
            VK512_PREFETCH_ROW(a->o + (i0 + i + VK512_PF_ROWS) * a->ldo + h * hd, hd, 1);
        float l = _mm512_reduce_add_ps(_mm512_loadu_ps(b->l + i * 16));
        __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
        float *dst = a->o + (i0 + i) * a->ldo + h * hd;
        for (int64_t d = 0; d < hd; d += 16)
            _mm512_mask_storeu_ps(dst + d, vk512_mask16(hd - d),
                                  _mm512_mul_ps(_mm512_loadu_ps(b->o + i * hdv + d), inv));
    }
}

void vk_bf16_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                       int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                       const float *bias)
{
    if (heads <= 0 || hd <= 0 || lq <= 0)
        return;
    bat_args a = { .q = q, .k = k, .v = v, .bias = bias, .o = o, .ldq = ldq, .ldk = ldk,
                   .ldv = ldv, .ldo = ldo, .heads = heads, .hd = hd, .lq = lq, .lk = lk,
                   .nk = VD_MAX(VD_MIN(kv_valid, lk), 0), .hd2 = (hd + 1) / 2,
                   .hdv = (hd + 15) / 16 * 16, .qscale = scale * VK512_LOG2E };
    a.nkb = (a.nk + KB - 1) / KB;
    size_t nkp = (size_t)(heads * a.nkb * a.hd2 * KB), nvp = (size_t)(heads * a.nkb * KP * a.hdv);
    uint32_t *pack = vk_scratch(c, (nkp + nvp + 16) * sizeof(uint32_t));
    if (!pack) {
        vk_ref_attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                         bias);
        return;
    }
    a.kp = pack;
    a.vp = pack + nkp;
    int64_t work = lq * a.nk * hd * heads;
    int nt = work < 65536 || c->n_threads < 1 ? 1 : c->n_threads;
    a.qb = vk512_query_block(heads, lq, nt, QB, MR);
    /* heads vary fastest: tasks running together read the same rows of q and o */
    int64_t nqb = (lq + a.qb - 1) / a.qb, tasks = heads * nqb, packs = a.nkb * (KB / 16);
    nt = (int)VD_MIN((int64_t)nt, tasks);
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        bat_buf b = { 0 };
        /* sections rounded to 16 elements keep each one 64-byte aligned */
        size_t fq = (size_t)(QB * a.hd2 + 15) / 16 * 16, fp = (size_t)QB * KP;
        size_t fo = (size_t)(QB * a.hdv), fl = (size_t)QB * 16, fm = (QB + 15) / 16 * 16;
        size_t nmem = fq + fp + fo + fl + fm;
        uint32_t *mem = vd_malloc(nmem * sizeof(uint32_t));
        if (!mem) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < packs; t++)
            pack_keys(&a, t);
        if (mem) {
            b.q = mem, b.p = mem + fq;
            b.o = (float *)(b.p + fp), b.l = b.o + fo, b.m = b.l + fl;
        }
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; t++)
            if (mem && !failed)
                bat_block(&a, &b, t % heads, (t / heads) * a.qb,
                          VD_MIN(a.qb, lq - (t / heads) * a.qb));
        vd_free(mem);
    }
    if (failed) /* out of memory for a few hundred KiB: the reference needs less */
        vk_ref_attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                         bias);
}
