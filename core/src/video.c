/* vdit_video: a clip of packed RGB24 frames. The pixel buffer is a plain
 * malloc block so that readers which do not know the length in advance
 * (the CLI's video reader) may grow it with realloc. */
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
    v->rgb = calloc(n, 1);
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
