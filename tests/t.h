/* Minimal test harness: each test program checks many things, prints each
 * failure with file:line, and exits non-zero if any failed. meson counts
 * programs; scripts/test.sh prints the final "N passed, N failed" line. */
#ifndef VDIT_TEST_H
#define VDIT_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_, t_checks_;

#define T_CHECK(cond, ...)                                                          \
    do {                                                                            \
        t_checks_++;                                                                \
        if (!(cond)) {                                                              \
            t_failed_++;                                                            \
            fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

#define T_DONE()                                                                     \
    do {                                                                             \
        printf("%d checks, %d failed\n", t_checks_, t_failed_);                      \
        return t_failed_ ? 1 : 0;                                                    \
    } while (0)

/* Deterministic generator (splitmix64) for test data. */
typedef struct t_rng {
    uint64_t s;
} t_rng;

static inline uint64_t t_next(t_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static inline float t_uniform(t_rng *r)
{
    return (float)((double)(t_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static inline void t_fill(t_rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = t_uniform(r) * scale;
}

/* max |a-b| and that divided by max |b| */
static inline double t_maxabs(const float *a, const float *b, size_t n, double *rel)
{
    double m = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) /* a NaN makes it infinite, and no later value undoes that */
            m = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > mb)
            mb = fabs((double)b[i]);
    }
    if (rel)
        *rel = mb > 0 ? m / mb : m;
    return m;
}

#endif
