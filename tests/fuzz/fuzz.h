/* Shared by the fuzz targets and by the corpus replay test. */
#ifndef VDIT_FUZZ_H
#define VDIT_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t fuzz_sink;

/* Reads every byte of every tensor in the set (ASan catches a bad pointer). */
static inline void fuzz_touch_all(const vd_ckpt *c)
{
    size_t h = 0;
    for (size_t i = 0; i < vd_ckpt_count(c); i++) {
        const vt_tensor *t = vd_ckpt_at(c, i);
        size_t n = (size_t)vt_nelem(t) * vt_dtype_size(t->dtype);
        const uint8_t *p = t->data;
        for (size_t k = 0; k < n; k++)
            h += p[k];
        h += strlen(t->name) + strlen(vd_ckpt_file(c, t));
    }
    fuzz_sink += h;
}

#endif
