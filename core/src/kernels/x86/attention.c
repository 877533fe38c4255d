/* Flash-style attention for AVX2/FMA: for each (head, block of queries), walk
 * the keys in blocks, keeping a running row maximum and sum (online softmax)
 * so the lq x lk score matrix never exists; only a QB x KB tile does.
 *
 * Both products run on a 6 x 16 register tile (12 accumulators), the shape
 * that keeps Zen3's two FMA pipes busy with loads to spare:
 *   S[QB, KB] = Q[QB, hd] Kᵀ   with K transposed once per call into blocks [hd, KB]
 *   O[QB, hd] += P[QB, KB] V   reading V in place (padded copy if hd % 16)
 * The transposed keys live in the context's scratch (the size of K). Tasks
 * (head, query block) are spread over the threads dynamically. */
#include <math.h>
#include <omp.h>

#include "../impl.h"
#include "vmath.h"
#include "x86.h"

#define QB 96  /* queries per task, multiple of 6 */
#define KB 128 /* keys per block, multiple of 16 */
#define MR 6
#define NR 16

typedef struct att_buf {
    float *q;  /* [QB, hdp] scaled queries, zero padded */
    float *s;  /* [QB, KB] scores, then probabilities */
    float *o;  /* [QB, hdp] running output */
    float *m, *l;
} att_buf;

/* s[MR, NR] tile = q[MR, hd] · kt[hd, NR] */
static inline void tile_qk(const float *q, int64_t ldq, const float *kt, int64_t ldk, int64_t hd,
                           float *s, int64_t lds)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t d = 0; d < hd; d++) {
        __m256 b0 = _mm256_loadu_ps(kt + d * ldk), b1 = _mm256_loadu_ps(kt + d * ldk + 8);
        __m256 a;
        a = _mm256_broadcast_ss(q + d);
        c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(q + ldq + d);
        c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(q + 2 * ldq + d);
        c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(q + 3 * ldq + d);
        c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(q + 4 * ldq + d);
        c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(q + 5 * ldq + d);
        c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(s, c00), _mm256_storeu_ps(s + 8, c01);
    _mm256_storeu_ps(s + lds, c10), _mm256_storeu_ps(s + lds + 8, c11);
    _mm256_storeu_ps(s + 2 * lds, c20), _mm256_storeu_ps(s + 2 * lds + 8, c21);
    _mm256_storeu_ps(s + 3 * lds, c30), _mm256_storeu_ps(s + 3 * lds + 8, c31);
    _mm256_storeu_ps(s + 4 * lds, c40), _mm256_storeu_ps(s + 4 * lds + 8, c41);
    _mm256_storeu_ps(s + 5 * lds, c50), _mm256_storeu_ps(s + 5 * lds + 8, c51);
}

/* o[MR, NR] tile += p[MR, kb] · v[kb, NR] */
static inline void tile_pv(const float *p, int64_t ldp, const float *v, int64_t ldv, int64_t kb,
                           float *o, int64_t ldo)
{
    __m256 c00 = _mm256_loadu_ps(o), c01 = _mm256_loadu_ps(o + 8);
    __m256 c10 = _mm256_loadu_ps(o + ldo), c11 = _mm256_loadu_ps(o + ldo + 8);
    __m256 c20 = _mm256_loadu_ps(o + 2 * ldo), c21 = _mm256_loadu_ps(o + 2 * ldo + 8);
    __m256 c30 = _mm256_loadu_ps(o + 3 * ldo), c31 = _mm256_loadu_ps(o + 3 * ldo + 8);
    __m256 c40 = _mm256_loadu_ps(o + 4 * ldo), c41 = _mm256_loadu_ps(o + 4 * ldo + 8);
    __m256 c50 = _mm256_loadu_ps(o + 5 * ldo), c51 = _mm256_loadu_ps(o + 5 * ldo + 8);
    for (int64_t j = 0; j < kb; j++) {
        __m256 b0 = _mm256_loadu_ps(v + j * ldv), b1 = _mm256_loadu_ps(v + j * ldv + 8);
        __m256 a;
        a = _mm256_broadcast_ss(p + j);
        c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(p + ldp + j);
        c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(p + 2 * ldp + j);
        c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(p + 3 * ldp + j);
        c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(p + 4 * ldp + j);
        c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(p + 5 * ldp + j);
        c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(o, c00), _mm256_storeu_ps(o + 8, c01);
    _mm256_storeu_ps(o + ldo, c10), _mm256_storeu_ps(o + ldo + 8, c11);
    _mm256_storeu_ps(o + 2 * ldo, c20), _mm256_storeu_ps(o + 2 * ldo + 8, c21);
    _mm256_storeu_ps(o + 3 * ldo, c30), _mm256_storeu_ps(o + 3 * ldo + 8, c31);
    _mm256_storeu_ps(o + 4 * ldo, c40), _mm256_storeu_ps(o + 4 * ldo + 8, c41);
    _mm256_storeu_ps(o + 5 * ldo, c50), _mm256_storeu_ps(o + 5 * ldo + 8, c51);
}

typedef struct att_args {
    const float *q, *k, *v, *bias;
    float *o;
    int64_t ldq, ldk, ldv, ldo, heads, hd, hdp, lq, lk, nk;
    float scale;
    int64_t nkb;     /* key blocks */
    float *kt;       /* [heads, nkb, hd, KB] keys transposed per block, zero padded */
    float *vp;       /* [heads, nkb * KB, hdp] padded values when hd % NR, else NULL */
} att_args;

/* Packs key block jb of head h (and its values when they need padding). */
static void pack_block(const att_args *a, int64_t h, int64_t jb)
{
    int64_t hd = a->hd, j0 = jb * KB, kb = VD_MIN(KB, a->nk - j0);
    float *kt = a->kt + ((h * a->nkb + jb) * hd) * KB;
    for (int64_t j = 0; j < kb; j++) {
        const float *kr = a->k + (j0 + j) * a->ldk + h * hd;
        for (int64_t d = 0; d < hd; d++)
            kt[d * KB + j] = kr[d];
    }
    for (int64_t d = 0; d < hd; d++)
        for (int64_t j = kb; j < KB; j++)
            kt[d * KB + j] = 0.0f;
    if (!a->vp)
        return;
    for (int64_t j = 0; j < KB; j++) {
        float *vo = a->vp + (h * a->nkb * KB + j0 + j) * a->hdp;
        memset(vo, 0, (size_t)a->hdp * sizeof(float));
        if (j < kb)
            memcpy(vo, a->v + (j0 + j) * a->ldv + h * hd, (size_t)hd * sizeof(float));
    }
}

/* One task: head h, queries [i0, i0 + nq). */
static void att_block(const att_args *a, att_buf *b, int64_t h, int64_t i0, int64_t nq)
{
    int64_t hd = a->hd, hdp = a->hdp, nqp = (nq + MR - 1) / MR * MR;
    for (int64_t i = 0; i < nqp; i++) {
        float *qr = b->q + i * hdp;
        for (int64_t d = 0; d < hdp; d++)
            qr[d] = i < nq && d < hd ? a->q[(i0 + i) * a->ldq + h * hd + d] * a->scale : 0.0f;
        memset(b->o + i * hdp, 0, (size_t)hdp * sizeof(float));
        b->m[i] = -INFINITY;
        b->l[i] = 0.0f;
    }
    for (int64_t j0 = 0; j0 < a->nk; j0 += KB) {
        int64_t kb = VD_MIN(KB, a->nk - j0), kbp = (kb + NR - 1) / NR * NR;
        const float *kt = a->kt + ((h * a->nkb + j0 / KB) * hd) * KB;
        const float *vb =
            a->vp ? a->vp + (h * a->nkb * KB + j0) * hdp : a->v + j0 * a->ldv + h * hd;
        int64_t ldvb = a->vp ? hdp : a->ldv;
        for (int64_t cc = 0; cc < kbp; cc += NR)
            for (int64_t r = 0; r < nqp; r += MR)
                tile_qk(b->q + r * hdp, hdp, kt + cc, KB, hd, b->s + r * KB + cc, KB);
        /* online softmax over this block's scores, row by row */
        for (int64_t i = 0; i < nqp; i++) {
            float *sr = b->s + i * KB;
            if (a->bias && i < nq) {
                const float *br = a->bias + (h * a->lq + i0 + i) * a->lk + j0;
                for (int64_t j = 0; j < kb; j++)
                    sr[j] += br[j];
            }
            for (int64_t j = kb; j < kbp; j++)
                sr[j] = -INFINITY;
            __m256 vm = _mm256_set1_ps(-INFINITY);
            for (int64_t j = 0; j < kbp; j += 8)
                vm = _mm256_max_ps(vm, _mm256_loadu_ps(sr + j));
            float mx = vk_hmax8(vm), mold = b->m[i];
            float mnew = mx > mold ? mx : mold;
            if (mnew == -INFINITY) { /* nothing visible yet: contributes nothing */
                memset(sr, 0, (size_t)kbp * sizeof(float));
                continue;
            }
            __m256 m8 = _mm256_set1_ps(mnew), acc = _mm256_setzero_ps();
            for (int64_t j = 0; j < kbp; j += 8) {
                __m256 e = vk_exp8(_mm256_sub_ps(_mm256_loadu_ps(sr + j), m8));
                _mm256_storeu_ps(sr + j, e);
                acc = _mm256_add_ps(acc, e);
            }
            float alpha = mold == -INFINITY ? 0.0f : expf(mold - mnew);
            b->l[i] = b->l[i] * alpha + vk_hsum8(acc);
            b->m[i] = mnew;
            if (alpha != 1.0f) {
                __m256 a8 = _mm256_set1_ps(alpha);
                float *orow = b->o + i * hdp;
                for (int64_t d = 0; d < hdp; d += 8)
                    _mm256_storeu_ps(orow + d, _mm256_mul_ps(_mm256_loadu_ps(orow + d), a8));
            }
        }
        for (int64_t cc = 0; cc < hdp; cc += NR)
            for (int64_t r = 0; r < nqp; r += MR)
                tile_pv(b->s + r * KB, KB, vb + cc, ldvb, kb, b->o + r * hdp + cc, hdp);
    }
    for (int64_t i = 0; i < nq; i++) {
        float *dst = a->o + (i0 + i) * a->ldo + h * hd;
        float inv = b->l[i] > 0.0f ? 1.0f / b->l[i] : 0.0f;
        for (int64_t d = 0; d < hd; d++)
            dst[d] = b->o[i * hdp + d] * inv;
    }
}

void vk_avx2_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                       int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                       const float *bias)
{
    if (heads <= 0 || hd <= 0 || lq <= 0)
        return;
    att_args a = { .q = q, .k = k, .v = v, .bias = bias, .o = o, .ldq = ldq, .ldk = ldk,
                   .ldv = ldv, .ldo = ldo, .heads = heads, .hd = hd, .hdp = (hd + NR - 1) / NR * NR,
                   .lq = lq, .lk = lk, .nk = VD_MIN(kv_valid, lk), .scale = scale };
    if (a.nk < 0)
        a.nk = 0;
    a.nkb = (a.nk + KB - 1) / KB;
    size_t nkt = (size_t)(heads * a.nkb * hd * KB);
    size_t nvp = hd % NR ? (size_t)(heads * a.nkb * KB * a.hdp) : 0;
    float *pack = vk_scratch(c, (nkt + nvp + 1) * sizeof(float));
    if (!pack) {
        vk_ref_attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                         bias);
        return;
    }
    a.kt = pack;
    a.vp = nvp ? pack + nkt : NULL;
    int64_t nqb = (lq + QB - 1) / QB, tasks = heads * nqb, packs = heads * a.nkb;
    int64_t work = lq * a.nk * hd * heads;
    int nt = work < 65536 ? 1 : (int)VD_MIN((int64_t)c->n_threads, tasks);
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        att_buf b = { 0 };
        size_t fq = (size_t)(QB * a.hdp), fs = (size_t)(QB * KB);
        float *mem = vd_malloc((fq * 2 + fs + 2 * QB) * sizeof(float));
        if (!mem) {
#pragma omp atomic write
            failed = 1;
        }
        if (mem) {
            b.q = mem, b.o = mem + fq, b.s = b.o + fq;
            b.m = b.s + fs, b.l = b.m + QB;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < packs; t++)
            pack_block(&a, t / a.nkb, t % a.nkb);
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; t++)
            if (mem)
                att_block(&a, &b, t / nqb, (t % nqb) * QB, VD_MIN(QB, lq - (t % nqb) * QB));
        vd_free(mem);
    }
    if (failed) /* out of memory for a few hundred KiB: the reference needs less */
        vk_ref_attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                         bias);
}
