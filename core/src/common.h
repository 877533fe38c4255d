/* Internal helpers shared by every core file: errors, logging, allocation. */
#ifndef VDIT_COMMON_H
#define VDIT_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vdit/vdit.h"

#define VD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VD_ALIGN 64

/* A place to put an error message and a log sink; embedded in the model and
 * the context. Functions deep in the core take one (may be NULL) and report
 * through vd_err(), which formats the message and returns the code. */
typedef struct vd_log {
    vdit_log_fn cb;
    void *user;
    int level;
    char msg[512];
} vd_log;

/* Stores the formatted message in lg->msg (if lg), logs it at ERROR level,
 * returns err so callers can write `return vd_err(lg, VDIT_ERR_FORMAT, ...)`. */
int vd_err(vd_log *lg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void vd_logf(vd_log *lg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* 64-byte aligned allocation; vd_free(NULL) is fine. */
void *vd_malloc(size_t n);
void *vd_calloc(size_t n);
void vd_free(void *p);

/* Buffers (vd_malloc'd) a context owns until it is freed. */
typedef struct vd_owned {
    void **p;
    size_t n;
} vd_owned;
/* Adds p to the list and returns it; NULL p, or no memory to list it (p is
 * then freed), returns NULL. */
void *vd_owned_add(vd_owned *o, void *p);
/* Frees every listed buffer and the list; the list is then empty. */
void vd_owned_free(vd_owned *o);

/* Reads a whole file into a NUL-terminated buffer (for JSON etc.). */
int vd_read_file(vd_log *lg, const char *path, char **out, size_t *len);

/* Number of online CPUs (>= 1). */
int vd_cpu_count(void);

/* Monotonic time in seconds. */
double vd_time(void);

/* Checked size arithmetic: returns 0 on overflow. */
static inline int vd_mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Frame `frame` of v resized to rw x rh (Lanczos-3 as PIL's LANCZOS) and
 * cropped to ow x oh at (x0, y0): a new one-frame clip, or NULL (bad
 * arguments, out of memory). Only the kept pixels are computed. */
vdit_video *vd_video_resize_crop(const vdit_video *v, int frame, int rw, int rh, int x0, int y0,
                                 int ow, int oh);

#endif
