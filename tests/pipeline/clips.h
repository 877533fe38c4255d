/* Helpers the pipeline tests share (header-only, like t.h). */
#ifndef VDIT_TEST_CLIPS_H
#define VDIT_TEST_CLIPS_H

#include <string.h>

#include "t.h"
#include "vdit/vdit.h"

/* Whether two clips are the same, shape and bytes (NULL never is). */
static inline int clip_equal(const vdit_video *a, const vdit_video *b)
{
    return a && b && a->width == b->width && a->height == b->height &&
           a->n_frames == b->n_frames &&
           !memcmp(a->rgb, b->rgb, (size_t)a->width * a->height * 3 * a->n_frames);
}

/* A one-thread context on m (deterministic and cheap); a failure is a
 * failed check and NULL. */
static inline vdit_ctx *clip_ctx1(vdit_model *m)
{
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    vdit_ctx *c = NULL;
    T_CHECK(vdit_ctx_init(m, &cp, &c) == 0, "ctx");
    return c;
}

#endif
