/* The behaviour tests' detector (rules in detect.h). */
#include "detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* gen.py's COLOURS for OBJ_COLOURS, in that order. */
static const struct {
    const char *name;
    uint8_t rgb[3];
} palette[] = {
    {"red", {220, 40, 40}},   {"green", {40, 180, 60}},   {"blue", {40, 80, 230}},
    {"yellow", {245, 220, 40}}, {"purple", {150, 60, 200}}, {"orange", {250, 140, 30}},
    {"white", {245, 245, 245}}, {"cyan", {40, 210, 220}},  {"pink", {250, 130, 190}},
    {"black", {15, 15, 15}},
};
#define N_PAL ((int)(sizeof(palette) / sizeof(palette[0])))

static const char *const motion_names[TD_MOTION_COUNT] = {
    "right", "down and right", "down", "down and left", "left", "up and left", "up",
    "up and right", "still", "growing", "shrinking", "none"};

#define MASK_THR 60.0

const char *td_colour_name(int i)
{
    return i >= 0 && i < N_PAL ? palette[i].name : NULL;
}

int td_colour_index(const char *name)
{
    for (int i = 0; i < N_PAL; i++)
        if (!strcmp(name, palette[i].name))
            return i;
    return -1;
}

const char *td_motion_name(int m)
{
    return m >= 0 && m < TD_MOTION_COUNT ? motion_names[m] : "?";
}

int td_motion_index(const char *name)
{
    char buf[32];
    size_t n = strlen(name);
    if (n >= sizeof(buf))
        return -1;
    for (size_t i = 0; i <= n; i++)
        buf[i] = name[i] == '_' ? ' ' : name[i];
    for (int m = 0; m < TD_MOTION_COUNT; m++)
        if (!strcmp(buf, motion_names[m]))
            return m;
    return -1;
}

static int cmp_u8(const void *a, const void *b)
{
    return *(const uint8_t *)a - *(const uint8_t *)b;
}

/* Per-channel median of the border pixels. */
static void border_median(const uint8_t *f, int w, int h, uint8_t *tmp, double bg[3])
{
    for (int c = 0; c < 3; c++) {
        int n = 0;
        for (int x = 0; x < w; x++) {
            tmp[n++] = f[x * 3 + c];
            tmp[n++] = f[((size_t)(h - 1) * w + x) * 3 + c];
        }
        for (int y = 0; y < h; y++) {
            tmp[n++] = f[((size_t)y * w) * 3 + c];
            tmp[n++] = f[((size_t)y * w + w - 1) * 3 + c];
        }
        qsort(tmp, n, 1, cmp_u8);
        /* numpy's median: mean of the two middle values for even n */
        bg[c] = n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
    }
}

static int in_mask(const uint8_t *p, const double bg[3])
{
    double d = 0;
    for (int c = 0; c < 3; c++)
        d += (p[c] - bg[c]) * (p[c] - bg[c]);
    return sqrt(d) > MASK_THR;
}

/* Sum of mask x, y and count over frames [t0, t1). */
static void mask_sums(const uint8_t *rgb, int w, int h, int t0, int t1, uint8_t *tmp, double *sx,
                      double *sy, double *cnt, double sum_rgb[3])
{
    for (int t = t0; t < t1; t++) {
        const uint8_t *f = rgb + (size_t)t * w * h * 3;
        double bg[3];
        border_median(f, w, h, tmp, bg);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const uint8_t *p = f + ((size_t)y * w + x) * 3;
                if (!in_mask(p, bg))
                    continue;
                *sx += x;
                *sy += y;
                *cnt += 1;
                if (sum_rgb)
                    for (int c = 0; c < 3; c++)
                        sum_rgb[c] += p[c];
            }
    }
}

int td_centroid(const uint8_t *frame, int w, int h, double *cx, double *cy)
{
    uint8_t *tmp = malloc(2 * (size_t)(w + h));
    double sx = 0, sy = 0, n = 0;
    if (!tmp)
        return 0;
    mask_sums(frame, w, h, 0, 1, tmp, &sx, &sy, &n, NULL);
    free(tmp);
    *cx = n > 0 ? sx / n : NAN;
    *cy = n > 0 ? sy / n : NAN;
    return (int)n;
}

int td_detect(const uint8_t *rgb, int w, int h, int t, td_result *r)
{
    if (!rgb || w < 2 || h < 2 || t < 1 || !r)
        return -1;
    uint8_t *tmp = malloc(2 * (size_t)(w + h));
    if (!tmp)
        return -1;
    memset(r, 0, sizeof(*r));
    r->colour = -1;
    r->motion = TD_NONE;
    double sx = 0, sy = 0, n = 0, s_rgb[3] = {0, 0, 0};
    mask_sums(rgb, w, h, 0, t, tmp, &sx, &sy, &n, s_rgb);
    r->coverage = n / ((double)w * h * t);
    if (n == 0) {
        free(tmp);
        return 0;
    }
    double best = INFINITY;
    for (int c = 0; c < 3; c++)
        r->rgb[c] = s_rgb[c] / n;
    for (int i = 0; i < N_PAL; i++) {
        double d = 0;
        for (int c = 0; c < 3; c++)
            d += (r->rgb[c] - palette[i].rgb[c]) * (r->rgb[c] - palette[i].rgb[c]);
        if (d < best) {
            best = d;
            r->colour = i;
        }
    }
    int q = t / 4 > 1 ? t / 4 : 1;
    double x0 = 0, y0 = 0, n0 = 0, x1 = 0, y1 = 0, n1 = 0;
    mask_sums(rgb, w, h, 0, q, tmp, &x0, &y0, &n0, NULL);
    mask_sums(rgb, w, h, t - q, t, tmp, &x1, &y1, &n1, NULL);
    free(tmp);
    if (n0 == 0 || n1 == 0) { /* the object enters or leaves: no track */
        r->motion = TD_STILL;
        return 0;
    }
    r->dx = x1 / n1 - x0 / n0;
    r->dy = y1 / n1 - y0 / n0;
    r->area_ratio = n1 / n0;
    int m = w < h ? w : h;
    if (hypot(r->dx, r->dy) < 0.06 * m) {
        r->motion = r->area_ratio > 1.4 ? TD_GROWING : r->area_ratio < 0.7 ? TD_SHRINKING : TD_STILL;
    } else {
        double a = atan2(r->dy, r->dx);
        int k = (int)lround(a / (M_PI / 4));
        r->motion = ((k % 8) + 8) % 8;
    }
    return 0;
}

double td_frame_diff(const uint8_t *a, const uint8_t *b, int w, int h)
{
    size_t n = (size_t)w * h * 3;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}
