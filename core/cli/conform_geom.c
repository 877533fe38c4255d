/* Conformance of Wan2.2 TI2V's size arithmetic (ti2v_geometry): for each
 * stored case, the output size of image-to-video (vd_best_output_size), how
 * the image is resized and cropped (vd_image_fit), the latent shape, the
 * token count and how many tokens hold the image at timestep 0, as the
 * engine computes them; and best_output_size on its own cases. The
 * geometry is the Wan2.2 family's: 48 latent channels, 4 x 16 x 16, patches
 * 1 x 2 x 2 (sizes in multiples of 32). */
#include <stdio.h>

#include "conform.h"
#include "pipeline/family.h"

static const int64_t *i64(conform_ctx *c, const char *name, int cols, int64_t *rows)
{
    const vt_tensor *t = vd_ckpt_find(c->io, name);
    if (!t || t->dtype != VT_I64 || t->ndim != 2 || t->shape[1] != cols) {
        conform_fail(c, name, "missing, not I64, or not of the documented columns");
        return NULL;
    }
    *rows = t->shape[0];
    return t->data;
}

int conform_ti2v_geometry(conform_ctx *c)
{
    enum { Z = 48, S = 16, T = 4, P = 2 };
    int64_t nr = 0, nb = 0;
    const int64_t *cases = i64(c, "cases", 17, &nr);
    const int64_t *bos = i64(c, "best_output_size", 4, &nb);
    if (cases) {
        int64_t *got = calloc((size_t)nr * 17, sizeof(int64_t));
        if (!got)
            return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < nr; i++) {
            const int64_t *r = cases + i * 17;
            int64_t *g = got + i * 17;
            memcpy(g, r, 5 * sizeof(int64_t)); /* mode, in_w, in_h, max_area, frame_num */
            /* t2v: the size as asked, nothing resized */
            int ow = (int)r[1], oh = (int)r[2], rw = ow, rh = oh, x0 = 0, y0 = 0;
            if (r[0] == 1) {
                if (vd_best_output_size((int)r[1], (int)r[2], S * P, r[3], &ow, &oh))
                    ow = oh = -1;
                else
                    vd_image_fit((int)r[1], (int)r[2], ow, oh, &rw, &rh, &x0, &y0);
            }
            int64_t lf = (r[4] - 1) / T + 1, lh = oh / S, lw = ow / S;
            int64_t seq = lf * (lh / P) * (lw / P);
            int64_t row[12] = { rw, rh, x0, y0, ow, oh, Z, lf, lh, lw, seq,
                                r[0] == 1 ? (lh / P) * (lw / P) : 0 };
            memcpy(g + 5, row, sizeof(row));
        }
        conform_check_i64(c, "cases", got, (size_t)nr * 17);
        free(got);
    }
    if (bos) {
        int64_t *got = calloc((size_t)nb * 4, sizeof(int64_t));
        if (!got)
            return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < nb; i++) {
            int ow, oh;
            got[i * 4] = bos[i * 4];
            got[i * 4 + 1] = bos[i * 4 + 1];
            if (vd_best_output_size((int)bos[i * 4], (int)bos[i * 4 + 1], S * P, 704 * 1280, &ow,
                                    &oh))
                ow = oh = -1;
            got[i * 4 + 2] = ow;
            got[i * 4 + 3] = oh;
        }
        conform_check_i64(c, "best_output_size", got, (size_t)nb * 4);
        free(got);
    }
    return 0;
}
