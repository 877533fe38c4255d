#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void emit(vd_log *lg, int level, const char *msg)
{
    if (lg && lg->cb && level <= lg->level)
        lg->cb(lg->user, level, msg);
}

int vd_err(vd_log *lg, int err, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (lg) {
        memcpy(lg->msg, buf, sizeof(lg->msg));
        lg->msg[sizeof(lg->msg) - 1] = 0;
    }
    emit(lg, VDIT_LOG_ERROR, buf);
    return err;
}

void vd_logf(vd_log *lg, int level, const char *fmt, ...)
{
    if (!lg || !lg->cb || level > lg->level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    emit(lg, level, buf);
}

void *vd_malloc(size_t n)
{
    void *p = NULL;
    if (n == 0)
        n = 1;
    /* Rounded up to VD_ALIGN, plus VD_ALIGN bytes of slack: SIMD readers
     * outside the library (swscale's row readers) read up to a vector past
     * the last pixel of the frames handed out (vdit_video, vdit_frame). */
    size_t r = ((n + VD_ALIGN - 1) & ~(size_t)(VD_ALIGN - 1)) + VD_ALIGN;
    if (r < n || posix_memalign(&p, VD_ALIGN, r))
        return NULL;
    return p;
}

void *vd_calloc(size_t n)
{
    void *p = vd_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void vd_free(void *p)
{
    free(p);
}

void *vd_owned_add(vd_owned *o, void *p)
{
    if (!p)
        return NULL;
    void **l = realloc(o->p, (o->n + 1) * sizeof(void *));
    if (!l) {
        vd_free(p);
        return NULL;
    }
    o->p = l;
    o->p[o->n++] = p;
    return p;
}

void vd_owned_free(vd_owned *o)
{
    for (size_t i = 0; i < o->n; i++)
        vd_free(o->p[i]);
    free(o->p);
    o->p = NULL;
    o->n = 0;
}

int vd_read_file(vd_log *lg, const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return vd_err(lg, errno == ENOMEM ? VDIT_ERR_NOMEM : VDIT_ERR_IO, "%s: cannot open: %s",
                      path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (cap - n < 2) {
            if (cap > ((size_t)1 << 34)) {
                free(buf);
                fclose(f);
                return vd_err(lg, VDIT_ERR_FORMAT, "%s: file too large", path);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return vd_err(lg, VDIT_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int vd_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double vd_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
