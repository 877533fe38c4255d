/* The families vdit knows, and what they share. */
#include <math.h>

#include "family.h"
#include "wan/wan.h"

const vd_family *const vd_families[] = { &vd_family_wan22_ti2v, &vd_family_wan21, NULL };

/* As the reference's best_output_size (Wan2.2 wan/utils/utils.py), in
 * double precision as Python computes it: the width rounded down to a
 * multiple of align first, or the height first, whichever keeps the aspect
 * closer. */
static double pyfloordiv(double x, double y) /* Python's float // (CPython's float_floor_div) */
{
    double mod = fmod(x, y), div = (x - mod) / y;
    if (mod != 0 && ((y < 0) != (mod < 0)))
        div -= 1.0;
    if (div == 0)
        return copysign(0.0, x / y);
    double fl = floor(div);
    return div - fl > 0.5 ? fl + 1.0 : fl;
}

int vd_best_output_size(int iw, int ih, int align, int64_t area, int *ow, int *oh)
{
    if (iw < 1 || ih < 1 || align < 1 || area < (int64_t)align * align)
        return VDIT_ERR_INVALID_ARG;
    double ratio = (double)iw / ih, a = (double)area, d = align;
    double fw = sqrt(a * ratio), fh = a / fw;
    double w1 = pyfloordiv(fw, d) * d;
    if (w1 < d)
        return VDIT_ERR_INVALID_ARG;
    double h1 = pyfloordiv(a / w1, d) * d; /* expected_area / ow1 // dh * dh */
    double h2 = pyfloordiv(fh, d) * d;
    if (h2 < d || h1 < d)
        return VDIT_ERR_INVALID_ARG;
    double w2 = pyfloordiv(a / h2, d) * d;
    if (w2 < d)
        return VDIT_ERR_INVALID_ARG;
    double r1 = w1 / h1, r2 = w2 / h2;
    if (fmax(ratio / r1, r1 / ratio) < fmax(ratio / r2, r2 / ratio)) {
        *ow = (int)w1;
        *oh = (int)h1;
    } else {
        *ow = (int)w2;
        *oh = (int)h2;
    }
    return 0;
}

void vd_image_fit(int iw, int ih, int ow, int oh, int *rw, int *rh, int *x0, int *y0)
{
    double s = fmax((double)ow / iw, (double)oh / ih);
    *rw = (int)fmax(ow, nearbyint(iw * s));
    *rh = (int)fmax(oh, nearbyint(ih * s));
    *x0 = (*rw - ow) / 2;
    *y0 = (*rh - oh) / 2;
}
