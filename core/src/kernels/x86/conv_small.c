/* Direct convolution for very few output channels (c_out <= 4, stride 1):
 * the VAE's last layer, 96 -> 3 channels at full resolution. oneDNN pads the
 * output channels to a SIMD block (3 -> 16) and runs at ~10% of peak there.
 *
 * With so little arithmetic per input value the cost is reading the input,
 * so each input row is read once per band of BY output rows: a task is
 * (output frame z, band), accumulated in a per-thread buffer
 * acc[BY][c_out][owp]. Each input row (ci, frame, row) of the band's reach is
 * copied with its zero padding into a staging row (the edges need no
 * special case), then adds its kw taps into every output row of the band it
 * reaches, 16 pixels at a time. Input rows in the padding are skipped. A
 * tap-major order over 16-pixel blocks was latency bound (~25 GFLOP/s), one
 * task per output row bandwidth bound (reading the input kh times). */
#include <immintrin.h>
#include <omp.h>

#include "../impl.h"
#include "x86.h"

#define PX 16
#define BY 16 /* output rows per task */

typedef struct small_args {
    const vk_conv *cv;
    const vk_conv_geom *g;
    const float *x, *wt; /* wt: [c_in * kd * kh][c_out][kw] */
    float *y;
    int d, h, w, od, oh, ow, owp, sw; /* owp: ow rounded up to PX; sw: staging row */
    int acc;                          /* add into y */
} small_args;

/* acc[o][0..owp) += sum_e w[o][e] * row[x + e]; inlined with constant kw
 * and co_n below so the tap loop unrolls. */
static inline void row_taps(const float *row, const float *w, int kw, int co_n, int owp,
                            float *acc)
{
    for (int x0 = 0; x0 < owp; x0 += PX) {
        for (int o = 0; o < co_n; o++) {
            float *ac = acc + (int64_t)o * owp + x0;
            __m256 a0 = _mm256_loadu_ps(ac), a1 = _mm256_loadu_ps(ac + 8);
            for (int e = 0; e < kw; e++) {
                __m256 wv = _mm256_broadcast_ss(w + o * kw + e);
                a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(row + x0 + e), a0);
                a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(row + x0 + e + 8), a1);
            }
            _mm256_storeu_ps(ac, a0);
            _mm256_storeu_ps(ac + 8, a1);
        }
    }
}

static void row_taps_any(const float *row, const float *w, int kw, int co_n, int owp, float *acc)
{
    if (kw == 3 && co_n == 3)
        row_taps(row, w, 3, 3, owp, acc);
    else if (kw == 3 && co_n == 1)
        row_taps(row, w, 3, 1, owp, acc);
    else if (kw == 3)
        row_taps(row, w, 3, co_n, owp, acc);
    else
        row_taps(row, w, kw, co_n, owp, acc);
}

/* Output rows [y0, y1) of output frame z. */
static void out_band(const small_args *a, float *stage, float *acc, int z, int y0, int y1)
{
    const vk_conv *cv = a->cv;
    const vk_conv_geom *g = a->g;
    int kd = cv->kd, kh = cv->kh, kw = cv->kw, co = cv->c_out;
    size_t racc = (size_t)co * a->owp; /* floats per output row in acc */
    memset(acc, 0, (size_t)(y1 - y0) * racc * sizeof(float));
    memset(stage, 0, (size_t)a->sw * sizeof(float));
    /* input rows reached: output row yy reads iy = yy - ph0 + ib */
    int iy0 = VD_MAX(0, y0 - g->ph0), iy1 = VD_MIN(a->h, y1 - 1 - g->ph0 + kh);
    for (int ci = 0; ci < cv->c_in; ci++)
        for (int ia = 0; ia < kd; ia++) {
            int iz = z - g->pd0 + ia;
            if (iz < 0 || iz >= a->d)
                continue;
            for (int iy = iy0; iy < iy1; iy++) {
                /* the zeros around the copied span stay from the memset */
                memcpy(stage + g->pw0, a->x + (((int64_t)ci * a->d + iz) * a->h + iy) * a->w,
                       (size_t)a->w * sizeof(float));
                for (int ib = 0; ib < kh; ib++) {
                    int yy = iy + g->ph0 - ib;
                    if (yy < y0 || yy >= y1)
                        continue;
                    const float *w = a->wt + (((int64_t)ci * kd + ia) * kh + ib) * co * kw;
                    row_taps_any(stage, w, kw, co, a->owp, acc + (size_t)(yy - y0) * racc);
                }
            }
        }
    for (int yy = y0; yy < y1; yy++)
        for (int o = 0; o < co; o++) {
            float *yr = a->y + (((int64_t)o * a->od + z) * a->oh + yy) * a->ow;
            const float *ar = acc + (size_t)(yy - y0) * racc + (size_t)o * a->owp;
            float b = cv->bias ? cv->bias[o] : 0.0f;
            if (a->acc)
                for (int i = 0; i < a->ow; i++)
                    yr[i] += ar[i] + b;
            else
                for (int i = 0; i < a->ow; i++)
                    yr[i] = ar[i] + b;
        }
}

int vk_avx2_conv_small(vk_ctx *c, const vk_conv *cv, const float *wplain, const vk_conv_geom *g,
                       const float *x, int d, int h, int w, float *y, int acc)
{
    if (cv->c_out > 4 || g->sd != 1 || g->sh != 1 || g->sw != 1)
        return -1;
    small_args a = { .cv = cv, .g = g, .x = x, .y = y, .d = d, .h = h, .w = w,
                     .acc = acc };
    a.od = d + g->pd0 + g->pd1 - cv->kd + 1;
    a.oh = h + g->ph0 + g->ph1 - cv->kh + 1;
    a.ow = w + g->pw0 + g->pw1 - cv->kw + 1;
    a.owp = (a.ow + PX - 1) / PX * PX;
    /* the last block reads up to owp + kw - 2; the copy spans pw0 + w */
    a.sw = VD_MAX(a.owp + cv->kw - 1, w + g->pw0 + g->pw1);
    a.sw = (a.sw + 15) / 16 * 16;
    int64_t taps = (int64_t)cv->c_in * cv->kd * cv->kh * cv->kw;
    int64_t rows = (int64_t)cv->c_in * cv->kd * cv->kh;
    int nt = c->n_threads;
    size_t per = ((size_t)a.sw + (size_t)BY * cv->c_out * a.owp) * sizeof(float);
    size_t wbytes = ((size_t)taps * cv->c_out * sizeof(float) + 63) / 64 * 64;
    per = (per + 63) / 64 * 64;
    uint8_t *mem = vk_scratch(c, wbytes + per * (size_t)nt);
    if (!mem)
        return -1;
    /* weights regrouped [row (ci, a, b)][c_out][kw] */
    float *wt = (float *)mem;
    int kw = cv->kw, co = cv->c_out;
    for (int64_t r = 0; r < rows; r++)
        for (int o = 0; o < co; o++)
            for (int e = 0; e < kw; e++)
                wt[(r * co + o) * kw + e] = wplain[o * taps + r * kw + e];
    a.wt = wt;
    int nb = (a.oh + BY - 1) / BY;
    int64_t tasks = (int64_t)a.od * nb;
#pragma omp parallel num_threads(nt)
    {
        float *stage = (float *)(mem + wbytes + per * (size_t)omp_get_thread_num());
        float *accb = stage + a.sw;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tasks; t++) {
            int z = (int)(t / nb), y0 = (int)(t % nb) * BY;
            out_band(&a, stage, accb, z, y0, VD_MIN(a.oh, y0 + BY));
        }
    }
    return 0;
}
