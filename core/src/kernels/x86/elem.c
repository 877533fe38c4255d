/* AVX2/FMA row and elementwise kernels: softmax, norms, activations,
 * modulation, gated add, rotary embedding, weight conversion. Rows are split
 * across vk_ctx->n_threads OpenMP threads when there is enough work to pay
 * for waking them. */
#include <math.h>
#include <omp.h>

#include "../impl.h"
#include "vmath.h"
#include "x86.h"

/* Work (in elements) below which a kernel stays on the calling thread. */
#define PAR_MIN 32768

static int nthr(const vk_ctx *c, int64_t work)
{
    return work < PAR_MIN || c->n_threads < 1 ? 1 : c->n_threads;
}

void vk_avx2_widen(vk_ctx *c, float *dst, const void *src, vt_dtype t, size_t n)
{
    const uint8_t *s = src;
    if (t == VT_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    int64_t nb = (int64_t)(n / 8);
#pragma omp parallel for num_threads(nthr(c, (int64_t)n)) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + 16 * b));
        __m256 f;
        if (t == VT_F16)
            f = _mm256_cvtph_ps(h);
        else
            f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        _mm256_storeu_ps(dst + 8 * b, f);
    }
    for (size_t i = (size_t)nb * 8; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = t == VT_F16 ? vt_f16_to_f32(h) : vt_bf16_to_f32(h);
    }
}

static void softmax_row(float *p, int64_t n)
{
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + j));
    float mx = vk_hmax8(vm);
    for (; j < n; j++)
        mx = p[j] > mx ? p[j] : mx;
    __m256 m8 = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = vk_exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), m8));
        _mm256_storeu_ps(p + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (j < n) {
        __m256i mk = vk_mask8(n - j);
        __m256 e = vk_exp8(_mm256_sub_ps(_mm256_maskload_ps(p + j, mk), m8));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
        _mm256_maskstore_ps(p + j, mk, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / vk_hsum8(acc));
    for (j = 0; j + 8 <= n; j += 8)
        _mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), inv));
    for (; j < n; j++)
        p[j] *= _mm256_cvtss_f32(inv);
}

void vk_avx2_softmax(vk_ctx *c, float *x, int64_t rows, int64_t cols, int64_t ld)
{
    if (cols <= 0)
        return;
#pragma omp parallel for num_threads(nthr(c, rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        softmax_row(x + r * ld, cols);
}

/* Sum of (p[j] - sub), or of its squares, over a row: 16 float partial sums
 * (enough for rows of a few thousand; the checks hold it to 1e-5). */
static float row_sum(const float *p, int64_t n, float sub, int squares)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), s8 = _mm256_set1_ps(sub);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 x0 = _mm256_sub_ps(_mm256_loadu_ps(p + j), s8);
        __m256 x1 = _mm256_sub_ps(_mm256_loadu_ps(p + j + 8), s8);
        if (squares) {
            a0 = _mm256_fmadd_ps(x0, x0, a0);
            a1 = _mm256_fmadd_ps(x1, x1, a1);
        } else {
            a0 = _mm256_add_ps(a0, x0);
            a1 = _mm256_add_ps(a1, x1);
        }
    }
    double s = vk_hsum8(_mm256_add_ps(a0, a1));
    for (; j < n; j++) {
        double v = p[j] - sub;
        s += squares ? v * v : v;
    }
    return (float)s;
}

void vk_avx2_layernorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim,
                       const float *w, const float *b, float eps)
{
#pragma omp parallel for num_threads(nthr(c, rows * dim)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * dim;
        float *q = y + r * dim;
        float mean = row_sum(p, dim, 0.0f, 0) / (float)dim;
        float var = row_sum(p, dim, mean, 1) / (float)dim;
        float inv = 1.0f / sqrtf(var + eps);
        __m256 m8 = _mm256_set1_ps(mean), i8 = _mm256_set1_ps(inv);
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + j), m8), i8);
            if (w)
                v = _mm256_mul_ps(v, _mm256_loadu_ps(w + j));
            if (b)
                v = _mm256_add_ps(v, _mm256_loadu_ps(b + j));
            _mm256_storeu_ps(q + j, v);
        }
        for (; j < dim; j++) {
            float v = (p[j] - mean) * inv;
            if (w)
                v *= w[j];
            if (b)
                v += b[j];
            q[j] = v;
        }
    }
}

void vk_avx2_rmsnorm(vk_ctx *c, const float *x, float *y, int64_t rows, int64_t dim, const float *w,
                     float eps)
{
#pragma omp parallel for num_threads(nthr(c, rows * dim)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * dim;
        float *q = y + r * dim;
        float inv = 1.0f / sqrtf(row_sum(p, dim, 0.0f, 1) / (float)dim + eps);
        __m256 i8 = _mm256_set1_ps(inv);
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p + j), i8);
            if (w)
                v = _mm256_mul_ps(v, _mm256_loadu_ps(w + j));
            _mm256_storeu_ps(q + j, v);
        }
        for (; j < dim; j++)
            q[j] = p[j] * inv * (w ? w[j] : 1.0f);
    }
}

/* Columns are processed in blocks so the per-column sums stay in L1. */
#define CH_BLOCK 512

void vk_avx2_chnorm(vk_ctx *c, const float *x, float *y, int64_t ch, int64_t s, const float *gamma,
                    const float *beta)
{
    int64_t nblk = (s + CH_BLOCK - 1) / CH_BLOCK;
    float sc = sqrtf((float)ch);
#pragma omp parallel for num_threads(nthr(c, ch * s)) schedule(static)
    for (int64_t bi = 0; bi < nblk; bi++) {
        float inv[CH_BLOCK];
        int64_t s0 = bi * CH_BLOCK, n = VD_MIN(CH_BLOCK, s - s0);
        for (int64_t j = 0; j < n; j++)
            inv[j] = 0.0f;
        for (int64_t i = 0; i < ch; i++) {
            const float *p = x + i * s + s0;
            int64_t j = 0;
            for (; j + 8 <= n; j += 8) {
                __m256 v = _mm256_loadu_ps(p + j);
                _mm256_storeu_ps(inv + j, _mm256_fmadd_ps(v, v, _mm256_loadu_ps(inv + j)));
            }
            for (; j < n; j++)
                inv[j] += p[j] * p[j];
        }
        for (int64_t j = 0; j < n; j++) {
            float nrm = sqrtf(inv[j]);
            inv[j] = sc / (nrm > 1e-12f ? nrm : 1e-12f);
        }
        for (int64_t i = 0; i < ch; i++) {
            const float *p = x + i * s + s0;
            float *q = y + i * s + s0;
            __m256 g8 = _mm256_set1_ps(gamma ? gamma[i] : 1.0f);
            __m256 b8 = _mm256_set1_ps(beta ? beta[i] : 0.0f);
            int64_t j = 0;
            for (; j + 8 <= n; j += 8) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(inv + j));
                _mm256_storeu_ps(q + j, _mm256_fmadd_ps(v, g8, b8));
            }
            for (; j < n; j++)
                q[j] = p[j] * inv[j] * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
        }
    }
}

void vk_avx2_act(vk_ctx *c, float *x, int64_t n, vk_act act)
{
    if (act == VK_ACT_NONE || n <= 0)
        return;
    int64_t nb = (n + 7) / 8;
    /* transcendental activations cost ~20x a copy: parallel sooner */
#pragma omp parallel for num_threads(nthr(c, n * 16)) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        float *p = x + b * 8;
        if (b * 8 + 8 <= n) {
            _mm256_storeu_ps(p, vk_act8(_mm256_loadu_ps(p), act));
        } else {
            __m256i mk = vk_mask8(n - b * 8);
            _mm256_maskstore_ps(p, mk, vk_act8(_mm256_maskload_ps(p, mk), act));
        }
    }
}

void vk_avx2_modulate(vk_ctx *c, float *x, int64_t rows, int64_t dim, const float *shift,
                      const float *scale)
{
#pragma omp parallel for num_threads(nthr(c, rows * dim)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * dim;
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 s1 = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(scale + j));
            _mm256_storeu_ps(p + j, _mm256_fmadd_ps(_mm256_loadu_ps(p + j), s1,
                                                    _mm256_loadu_ps(shift + j)));
        }
        for (; j < dim; j++)
            p[j] = fmaf(p[j], 1.0f + scale[j], shift[j]);
    }
}

void vk_avx2_add_gated(vk_ctx *c, float *x, const float *y, int64_t rows, int64_t dim,
                       const float *gate)
{
#pragma omp parallel for num_threads(nthr(c, rows * dim)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * dim;
        const float *q = y + r * dim;
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 g = gate ? _mm256_loadu_ps(gate + j) : _mm256_set1_ps(1.0f);
            _mm256_storeu_ps(p + j, _mm256_fmadd_ps(_mm256_loadu_ps(q + j), g,
                                                    _mm256_loadu_ps(p + j)));
        }
        for (; j < dim; j++)
            p[j] = fmaf(q[j], gate ? gate[j] : 1.0f, p[j]);
    }
}

void vk_avx2_rope(vk_ctx *c, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t ld,
                  const float *cs)
{
#pragma omp parallel for num_threads(nthr(c, n_tok * n_heads * head_dim)) schedule(static)
    for (int64_t t = 0; t < n_tok; t++) {
        const float *r = cs + t * head_dim;
        for (int64_t h = 0; h < n_heads; h++) {
            float *p = x + t * ld + h * head_dim;
            int64_t i = 0;
            for (; i + 8 <= head_dim; i += 8) {
                /* pairs (a, b) with (cos, sin): (a cos - b sin, b cos + a sin) */
                __m256 v = _mm256_loadu_ps(p + i), cr = _mm256_loadu_ps(r + i);
                __m256 co = _mm256_moveldup_ps(cr), si = _mm256_movehdup_ps(cr);
                __m256 sw = _mm256_permute_ps(v, 0xb1);
                _mm256_storeu_ps(p + i, _mm256_fmaddsub_ps(v, co, _mm256_mul_ps(sw, si)));
            }
            for (; i + 1 < head_dim; i += 2) {
                float a = p[i], b = p[i + 1];
                p[i] = a * r[i] - b * r[i + 1];
                p[i + 1] = a * r[i + 1] + b * r[i];
            }
        }
    }
}
