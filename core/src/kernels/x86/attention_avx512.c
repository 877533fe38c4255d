/* Flash-style attention in fp32 with AVX-512: the walk of attention.c (for
 * each head and block of queries the keys go by in blocks, with a running
 * row maximum and sum) on the register tiling of attention_bf16.c:
 *   S[6, 64] = Q[6, hd] Kᵀ   K block packed transposed [hd][KB]: 4 zmm of 16
 *                            keys per element of hd, Q broadcast
 *   O[6, 64] += P[6, KB] V   V block packed [KB][hdv], P broadcast
 * Both on a 6 x 4 zmm tile (24 accumulators, 4 loads and 6 broadcasts per
 * 24 FMAs). A key block is one tile wide, so the scores of six rows never
 * leave registers: the online softmax runs on the accumulators and only the
 * probabilities are stored, where the AVX2 kernel writes the scores out and
 * reads them back twice.
 *
 * Scores are kept in base 2 (Q pre-scaled by scale * log2(e), the bias
 * multiplied by log2(e)), so the exponential is a bare 2^x: a degree 6
 * polynomial on [-1/2, 1/2] (relative error 1e-7, about an ulp) and
 * vscalefps for the power of two, with underflow to 0 built in. On Zen 4 a
 * zmm FMA runs as two ymm halves, so this is not faster per FMA than AVX2
 * code; it is faster because the softmax no longer goes through memory and
 * half as many instructions issue.
 *
 * Semantics as vk_avx2_attention: only the first kv_valid keys take part,
 * -inf biases are allowed, a query that sees no key gets zeros. K and V are
 * packed once per call into the context's scratch (the size of K and V, V's
 * rows padded to 16). Tasks (head, query block) are spread over the threads
 * dynamically, heads varying fastest. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <immintrin.h>

#include "../impl.h"
#include "attention512.h"
#include "x86.h"

#define MR 6  /* query rows per register tile */
#define KB 64 /* keys per block: 4 zmm of 16, one tile wide */
#define QB 96 /* queries per task, multiple of MR */

typedef struct fat_args {
    const float *q, *k, *v, *bias;
    float *o;
    int64_t ldq, ldk, ldv, ldo, heads, hd, lq, lk, nk;
    int64_t hdv;  /* hd rounded up to 16 (columns of O and V) */
    int64_t nkb;  /* key blocks */
    int64_t qb;   /* queries per task, multiple of MR, <= QB */
    float qscale; /* scale * log2(e): scores in base 2 */
    float *kp;    /* [heads, nkb, hd, KB] K blocks transposed */
    float *vp;    /* [heads, nkb, KB, hdv] V blocks, zero padded */
} fat_args;

typedef struct fat_buf {
    float *q; /* [QB, hd] scaled queries, zero rows past the end */
    float *p; /* [QB, KB] probabilities of one key block */
    float *o; /* [QB, hdv] running output */
    float *l; /* [QB, 16] running row sums, 16 partial sums per row */
    float *m; /* [QB] running row maxima (base 2) */
} fat_buf;

/* Packs keys [16 g, 16 g + 16) of every head: K transposed 16 x 16 at a time
 * in registers, V rows copied with their padding. Keys past the end are
 * zeros. All heads in one go, so each key row is read front to back. */
static void pack_keys(const fat_args *a, int64_t g)
{
    int64_t hd = a->hd, hdv = a->hdv, jb = g / (KB / 16), jg = g % (KB / 16) * 16;
    int64_t j0 = g * 16, nr = VD_MIN(16, a->nk - j0);
    for (int64_t h = 0; h < a->heads; h++) {
        float *kp = a->kp + (h * a->nkb + jb) * hd * KB + jg;
        for (int64_t d = 0; d < hd; d += 16) {
            __m512i r[16];
            for (int j = 0; j < 16; j++) /* rows past the end: masked out, point at row 0 */
                r[j] = _mm512_castps_si512(
                    _mm512_maskz_loadu_ps(j < nr ? vk512_mask16(hd - d) : 0,
                                          a->k + (j < nr ? j0 + j : 0) * a->ldk + h * hd + d));
            vk512_transpose16(r);
            for (int64_t e = 0; e < VD_MIN(16, hd - d); e++)
                _mm512_storeu_si512(kp + (d + e) * KB, r[e]);
        }
    }
    for (int64_t j = 0; j < 16; j++) {
        int64_t n = j < nr ? hd : 0;
        const float *src = a->v + (n ? j0 + j : 0) * a->ldv;
        for (int64_t h = 0; h < a->heads; h++) {
            float *vp = a->vp + ((h * a->nkb + jb) * KB + jg + j) * hdv;
            for (int64_t d = 0; d < hdv; d += 16)
                _mm512_storeu_ps(vp + d,
                                 _mm512_maskz_loadu_ps(vk512_mask16(n - d), src + h * hd + d));
        }
    }
}

/* Scores of rows [r, r + MR) of the task against one key block, then their
 * online softmax: running maxima and sums updated, O rows rescaled when the
 * maximum grows, probabilities stored in b->p. `clamp`: some score may be
 * -inf (keys past kb or a bias). */
static inline __attribute__((always_inline)) void
qk_softmax(const fat_args *a, const fat_buf *b, int64_t h, int64_t i0, int64_t nq, int64_t r,
           const float *kblk, int64_t j0, int64_t kb, int clamp)
{
    const int64_t hd = a->hd;
    const float *q = b->q + r * hd;
    __m512 s[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            s[i][c] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const float *kr = kblk + d * KB;
        __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16);
        __m512 k2 = _mm512_loadu_ps(kr + 32), k3 = _mm512_loadu_ps(kr + 48);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m512 qi = _mm512_set1_ps(q[i * hd + d]);
            s[i][0] = _mm512_fmadd_ps(qi, k0, s[i][0]);
            s[i][1] = _mm512_fmadd_ps(qi, k1, s[i][1]);
            s[i][2] = _mm512_fmadd_ps(qi, k2, s[i][2]);
            s[i][3] = _mm512_fmadd_ps(qi, k3, s[i][3]);
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
            /* 0 from the initial -FLT_MAX */
            __m512 al = vk512_exp2(_mm512_set1_ps(mold - mnew), 1, 1);
            float *orow = b->o + row * a->hdv;
            for (int64_t d = 0; d < a->hdv; d += 16)
                _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), al));
            _mm512_storeu_ps(b->l + row * 16, _mm512_mul_ps(_mm512_loadu_ps(b->l + row * 16), al));
            b->m[row] = mnew;
            m = _mm512_set1_ps(mnew);
        }
        __m512 p0 = vk512_exp2(_mm512_sub_ps(s[i][0], m), clamp, 1);
        __m512 p1 = vk512_exp2(_mm512_sub_ps(s[i][1], m), clamp, 1);
        __m512 p2 = vk512_exp2(_mm512_sub_ps(s[i][2], m), clamp, 1);
        __m512 p3 = vk512_exp2(_mm512_sub_ps(s[i][3], m), clamp, 1);
        __m512 sum = _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3));
        _mm512_storeu_ps(b->l + row * 16, _mm512_add_ps(_mm512_loadu_ps(b->l + row * 16), sum));
        float *pr = b->p + row * KB;
        _mm512_storeu_ps(pr, p0);
        _mm512_storeu_ps(pr + 16, p1);
        _mm512_storeu_ps(pr + 32, p2);
        _mm512_storeu_ps(pr + 48, p3);
    }
}

/* o[MR, 16 nc] += p[MR, kb] · v[kb, 16 nc]: p rows of stride KB, v rows of
 * stride ldv. */
static inline __attribute__((always_inline)) void
tile_pv(const float *p, const float *v, int64_t ldv, int64_t kb, float *o, int64_t ldo, int nc)
{
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            acc[i][c] = _mm512_loadu_ps(o + i * ldo + 16 * c);
    for (int64_t j = 0; j < kb; j++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            vv[c] = _mm512_loadu_ps(v + j * ldv + 16 * c);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m512 pi = _mm512_set1_ps(p[i * KB + j]);
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                acc[i][c] = _mm512_fmadd_ps(pi, vv[c], acc[i][c]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            _mm512_storeu_ps(o + i * ldo + 16 * c, acc[i][c]);
}

/* One task: head h, queries [i0, i0 + nq). */
static void fat_block(const fat_args *a, const fat_buf *b, int64_t h, int64_t i0, int64_t nq)
{
    int64_t hd = a->hd, hdv = a->hdv, nqp = (nq + MR - 1) / MR * MR;
    /* Blocks of K and V (contiguous) are fetched into L2 a slice at a time
     * ahead of their use: the first one while the queries are copied, the
     * next one while the scores of the current one are computed. */
    int64_t nlk = hd * KB * 4 / 64, nlv = KB * hdv * 4 / 64, ng = nqp / MR;
    __m512 sc = _mm512_set1_ps(a->qscale);
    for (int64_t i = 0; i < nqp; i++) {
        if (a->nkb > 0) {
            vk512_prefetch_part(a->kp + h * a->nkb * hd * KB, nlk, i, nqp);
            vk512_prefetch_part(a->vp + h * a->nkb * KB * hdv, nlv, i, nqp);
        }
        /* rows of q lie a whole stride apart, too far for the hardware
         * prefetcher: fetch a few rows ahead */
        if (i + VK512_PF_ROWS < nq)
            VK512_PREFETCH_ROW(a->q + (i0 + i + VK512_PF_ROWS) * a->ldq + h * hd, hd, 0);
        const float *src = a->q + (i < nq ? i0 + i : 0) * a->ldq + h * hd;
        for (int64_t d = 0; d < hd; d += 16) {
            __mmask16 mk = i < nq ? vk512_mask16(hd - d) : 0;
            _mm512_mask_storeu_ps(b->q + i * hd + d, vk512_mask16(hd - d),
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + d), sc));
        }
        memset(b->o + i * hdv, 0, (size_t)hdv * sizeof(float));
        memset(b->l + i * 16, 0, 16 * sizeof(float));
        b->m[i] = -FLT_MAX; /* finite: s - m is -inf, not NaN, for -inf scores */
    }
    for (int64_t jb = 0; jb < a->nkb; jb++) {
        int64_t j0 = jb * KB, kb = VD_MIN(KB, a->nk - j0);
        const float *kblk = a->kp + (h * a->nkb + jb) * hd * KB;
        const float *vblk = a->vp + (h * a->nkb + jb) * KB * hdv;
        for (int64_t r = 0, g = 0; r < nqp; r += MR, g++) {
            if (jb + 1 < a->nkb) {
                vk512_prefetch_part(kblk + hd * KB, nlk, g, ng);
                vk512_prefetch_part(vblk + KB * hdv, nlv, g, ng);
            }
            if (a->bias || kb < KB)
                qk_softmax(a, b, h, i0, nq, r, kblk, j0, kb, 1);
            else
                qk_softmax(a, b, h, i0, nq, r, kblk, j0, kb, 0);
        }
        for (int64_t c = 0; c < hdv; c += 64) {
            int nc = (int)VD_MIN(4, (hdv - c) / 16);
            for (int64_t r = 0; r < nqp; r += MR) {
                const float *p = b->p + r * KB;
                float *o = b->o + r * hdv + c;
                switch (nc) {
                case 4: tile_pv(p, vblk + c, hdv, kb, o, hdv, 4); break;
                case 3: tile_pv(p, vblk + c, hdv, kb, o, hdv, 3); break;
                case 2: tile_pv(p, vblk + c, hdv, kb, o, hdv, 2); break;
                default: tile_pv(p, vblk + c, hdv, kb, o, hdv, 1); break;
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

void vk_avx512_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                         const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                         int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                         const float *bias)
{
    if (heads <= 0 || hd <= 0 || lq <= 0)
        return;
    fat_args a = { .q = q, .k = k, .v = v, .bias = bias, .o = o, .ldq = ldq, .ldk = ldk,
                   .ldv = ldv, .ldo = ldo, .heads = heads, .hd = hd, .lq = lq, .lk = lk,
                   .nk = VD_MAX(VD_MIN(kv_valid, lk), 0), .hdv = (hd + 15) / 16 * 16,
                   .qscale = scale * VK512_LOG2E };
    a.nkb = (a.nk + KB - 1) / KB;
    size_t nkp = (size_t)(heads * a.nkb * hd * KB), nvp = (size_t)(heads * a.nkb * KB * a.hdv);
    float *pack = vk_scratch(c, (nkp + nvp + 16) * sizeof(float));
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
        fat_buf b = { 0 };
        /* sections rounded to 16 floats keep each one 64-byte aligned */
        size_t fq = (size_t)(QB * a.hd + 15) / 16 * 16, fp = (size_t)QB * KB;
        size_t fo = (size_t)(QB * a.hdv), fl = (size_t)QB * 16, fm = (QB + 15) / 16 * 16;
        float *mem = vd_malloc((fq + fp + fo + fl + fm) * sizeof(float));
        if (!mem) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < packs; t++)
            pack_keys(&a, t);
        if (mem) {
            b.q = mem, b.p = mem + fq;
            b.o = b.p + fp, b.l = b.o + fo, b.m = b.l + fl;
        }
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; t++)
            if (mem && !failed)
                fat_block(&a, &b, t % heads, (t / heads) * a.qb,
                          VD_MIN(a.qb, lq - (t / heads) * a.qb));
        vd_free(mem);
    }
    if (failed) /* out of memory for a few hundred KiB: the reference needs less */
        vk_ref_attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                         bias);
}
