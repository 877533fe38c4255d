/* vdit_video: a clip of packed RGB24 frames. The pixel buffer is a plain
 * malloc block so that readers which do not know the length in advance
 * (the CLI's video reader) may grow it with realloc. */
#include <math.h>

#include "common.h"

vdit_video *vdit_video_new(int width, int height, int n_frames)
{
    size_t n;
    if (width <= 0 || height <= 0 || n_frames < 0
        || !vd_mul_ok((size_t)width * 3, (size_t)height, &n)
        || !vd_mul_ok(n, (size_t)(n_frames ? n_frames : 1), &n))
        return NULL;
    vdit_video *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    /* 64 bytes of slack past the last pixel: SIMD converters (swscale's row
     * readers) read up to a vector beyond a frame's end (vdit.h) */
    v->rgb = n <= SIZE_MAX - 64 ? calloc(n + 64, 1) : NULL;
    if (!v->rgb) {
        free(v);
        return NULL;
    }
    v->width = width;
    v->height = height;
    v->n_frames = n_frames;
    return v;
}

void vdit_video_free(vdit_video **pv)
{
    if (!pv || !*pv)
        return;
    free((*pv)->rgb);
    free(*pv);
    *pv = NULL;
}

/* ---- resampling (image-to-video input) -------------------------------------
 * Lanczos-3 as PIL's Image.resize(LANCZOS) computes it: separable, each
 * output pixel's centre (x + 0.5) * scale in the source, the kernel widened
 * by the scale when shrinking (antialiasing), weights normalised; then
 * rounded to 8 bits. Horizontal pass first, in float (PIL rounds to 8 bits
 * between the passes: results may differ from PIL's by a code). */
static double sinc(double x)
{
    if (x == 0)
        return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}

static double lanczos3(double x)
{
    return x > -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
}

/* Weights of one axis: for each output pixel i, taps [first[i], first[i] +
 * n) with w[i * maxn + k]. Returns maxn, or 0 on allocation failure. */
static int axis_weights(int in, int out, int **first, int **count, float **w)
{
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0, support = 3.0 * fs;
    int maxn = (int)ceil(support) * 2 + 1;
    *first = malloc(sizeof(int) * (size_t)out);
    *count = malloc(sizeof(int) * (size_t)out);
    *w = malloc(sizeof(float) * (size_t)out * (size_t)maxn);
    if (!*first || !*count || !*w)
        return 0;
    for (int i = 0; i < out; i++) {
        double c = (i + 0.5) * scale;
        int a = (int)floor(c - support + 0.5), b = (int)floor(c + support + 0.5);
        a = a < 0 ? 0 : a;
        b = b > in ? in : b;
        if (b - a > maxn)
            b = a + maxn;
        double tot = 0;
        for (int j = a; j < b; j++)
            tot += lanczos3((j - c + 0.5) / fs);
        for (int j = a; j < b; j++)
            (*w)[(size_t)i * maxn + (j - a)] = (float)(tot != 0 ? lanczos3((j - c + 0.5) / fs) / tot : 0);
        (*first)[i] = a;
        (*count)[i] = b - a;
    }
    return maxn;
}

vdit_video *vd_video_resize_crop(const vdit_video *v, int frame, int rw, int rh, int x0, int y0,
                                 int ow, int oh)
{
    if (!v || !v->rgb || frame < 0 || frame >= v->n_frames || rw < 1 || rh < 1 || x0 < 0 ||
        y0 < 0 || x0 + ow > rw || y0 + oh > rh)
        return NULL;
    const uint8_t *src = v->rgb + (size_t)frame * v->width * v->height * 3;
    int *fx = NULL, *nx = NULL, *fy = NULL, *ny = NULL;
    float *wx = NULL, *wy = NULL, *tmp = NULL;
    vdit_video *o = NULL;
    int mx = axis_weights(v->width, rw, &fx, &nx, &wx);
    int my = axis_weights(v->height, rh, &fy, &ny, &wy);
    tmp = malloc(sizeof(float) * (size_t)v->height * ow * 3);
    if (!mx || !my || !tmp || !(o = vdit_video_new(ow, oh, 1)))
        goto done;
    /* horizontal: the kept columns x0 .. x0 + ow - 1 of every source row */
    for (int y = 0; y < v->height; y++)
        for (int x = 0; x < ow; x++) {
            int X = x0 + x;
            const float *w = wx + (size_t)X * mx;
            const uint8_t *row = src + ((size_t)y * v->width + fx[X]) * 3;
            float acc[3] = { 0, 0, 0 };
            for (int k = 0; k < nx[X]; k++)
                for (int ch = 0; ch < 3; ch++)
                    acc[ch] += w[k] * row[k * 3 + ch];
            for (int ch = 0; ch < 3; ch++)
                tmp[((size_t)y * ow + x) * 3 + ch] = acc[ch];
        }
    /* vertical: the kept rows */
    for (int y = 0; y < oh; y++) {
        int Y = y0 + y;
        const float *w = wy + (size_t)Y * my;
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < 3; ch++) {
                float acc = 0;
                for (int k = 0; k < ny[Y]; k++)
                    acc += w[k] * tmp[((size_t)(fy[Y] + k) * ow + x) * 3 + ch];
                float q = acc + 0.5f;
                o->rgb[((size_t)y * ow + x) * 3 + ch] = (uint8_t)(q >= 0 ? (q <= 255 ? q : 255) : 0);
            }
    }
done:
    free(fx);
    free(nx);
    free(fy);
    free(ny);
    free(wx);
    free(wy);
    free(tmp);
    return o;
}
