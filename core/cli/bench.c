/* vdit bench kernels [--threads N] [--quick]: GFLOP/s of the products the
 * DiT spends its time in (matmul at DiT sizes, attention at 12 heads x 128),
 * beside the machine's fp32 peak. Also the dispatcher for `vdit bench dit`,
 * `vae`, `t5`, which their components provide (bench.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"
#include "cli.h"
#include "common.h"
#include "kernels/kernels.h"

int bench_parse_threads(const char *arg, int *bad)
{
    char *end;
    long v = arg ? strtol(arg, &end, 10) : 0;
    if (!arg || *end || v < 1 || v > 1024) {
        *bad = 1;
        return 0;
    }
    return (int)v;
}

uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double bench_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

double bench_peak_rss(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : (double)ru.ru_maxrss * 1024.0;
}

static double cpu_time(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The clock the core really runs at (boost included): a chain of dependent
 * one-cycle adds, timed in thread CPU time so other processes do not count.
 * Best of five tries; 0 when not on x86-64. */
static double measure_mhz(void)
{
#if defined(__x86_64__)
    double best = 0;
    for (int t = 0; t < 5; t++) {
        uint64_t n = 2000000, acc = 0; /* 16 adds per iteration */
        double t0 = cpu_time();
        __asm__ volatile("1:\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "dec %0\n\tjnz 1b"
                         : "+r"(n), "+r"(acc));
        double dt = cpu_time() - t0;
        if (dt > 0 && 2000000 * 16 / dt * 1e-6 > best)
            best = 2000000 * 16 / dt * 1e-6;
    }
    return best;
#else
    return 0;
#endif
}

static double cpuinfo_mhz(void)
{
    double mhz = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "cpu MHz", 7)) {
            char *c = strchr(line, ':');
            if (c)
                mhz = atof(c + 1);
            break;
        }
    fclose(f);
    return mhz;
}

/* The core clock in MHz: measured (see measure_mhz); failing that cpufreq's
 * maximum, then the "cpu MHz" of /proc/cpuinfo (on VMs the nominal clock). */
static double clock_mhz(const char **how)
{
    double mhz = measure_mhz();
    *how = "clock measured by a dependent-add chain (boost included)";
    if (mhz > 0)
        return mhz;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    if (f) {
        double khz;
        if (fscanf(f, "%lf", &khz) == 1)
            mhz = khz / 1000.0;
        fclose(f);
        *how = "clock = cpufreq cpuinfo_max_freq";
    }
    if (mhz <= 0 && (mhz = cpuinfo_mhz()) > 0)
        *how = "clock = /proc/cpuinfo 'cpu MHz' (nominal; boost not counted)";
    if (mhz <= 0) {
        mhz = 2000;
        *how = "clock unknown, 2 GHz assumed";
    }
    return mhz;
}

/* Zen3/AVX2: two 256-bit FMA pipes per core = 2 x 8 lanes x 2 flops per
 * cycle. */
double bench_peak_gflops(int cores, const char **how)
{
    return cores * clock_mhz(how) * 1e-3 * 2 * 8 * 2;
}

typedef struct bench_opt {
    int threads[2];
    int n_threads;
    int quick;
} bench_opt;

static void fill(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
    }
}

static double proc_time(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs fn until at least min_s seconds passed (after one warm-up call that
 * builds primitives, if warm); returns wall seconds per call and, in *cpu, the CPU
 * seconds the process used per call (below threads x wall when other
 * programs took the cores). */
typedef void (*bench_fn)(void *arg);
static double time_it(bench_fn fn, void *arg, int warm, double min_s, double *cpu)
{
    if (warm)
        fn(arg);
    int reps = 0;
    double t0 = vd_time(), c0 = proc_time(), t;
    do {
        fn(arg);
        reps++;
        t = vd_time() - t0;
    } while (t < min_s);
    if (cpu)
        *cpu = (proc_time() - c0) / reps;
    return t / reps;
}

typedef struct lin_arg {
    vk_ctx *c;
    vk_linear *l;
    const float *x;
    float *y;
    int64_t m;
} lin_arg;

static void run_linear(void *p)
{
    lin_arg *a = p;
    a->c->f->linear(a->c, a->l, a->x, a->m, a->y, VK_ACT_NONE);
}

typedef struct att_arg {
    vk_ctx *c;
    const float *q, *k, *v;
    float *o;
    int64_t len, heads, hd;
} att_arg;

static void run_attention(void *p)
{
    att_arg *a = p;
    int64_t ld = a->heads * a->hd;
    a->c->f->attention(a->c, a->q, ld, a->k, ld, a->v, ld, a->o, ld, a->heads, a->hd, a->len,
                       a->len, a->len, 1.0f / sqrtf((float)a->hd), NULL);
}

static void row(const char *name, int nt, double flops, double s, double cpu, double peak1)
{
    double gf = flops / s * 1e-9, gcpu = cpu > 0 ? flops / cpu * 1e-9 : 0;
    printf("%-34s %7d %9.1f %6.1f%% %4.0f%% %10.1f %5.1f%%\n", name, nt, gf, 100 * gf / (peak1 * nt),
           100 * cpu / (s * nt), gcpu, 100 * gcpu / peak1);
    fflush(stdout);
}

/* A linear layer over random weights of type t, stored in *store. */
static int make_linear(vk_linear *l, void **store, vt_dtype t, int64_t n, int64_t k)
{
    size_t cnt = (size_t)(n * k);
    float *w = vd_malloc(cnt * 4);
    if (!w)
        return -1;
    fill(w, cnt, 7);
    if (t != VT_F32) {
        uint16_t *h = vd_malloc(cnt * 2);
        if (!h) {
            vd_free(w);
            return -1;
        }
        for (size_t i = 0; i < cnt; i++)
            h[i] = t == VT_F16 ? vt_f32_to_f16(w[i]) : vt_f32_to_bf16(w[i]);
        vd_free(w);
        w = (float *)h;
    }
    *store = w;
    vt_tensor wt = { .dtype = t, .ndim = 2, .shape = { n, k }, .data = w };
    return vk_linear_init(l, &wt, NULL);
}

/* Seconds per call of x[m, k] Wᵀ with W [n, k] of type t, on ctx c. */
static double time_linear(vk_ctx *c, vt_dtype t, int64_t m, int64_t k, int64_t n, float *x,
                          float *y, double min_s, double *cpu)
{
    vk_linear l;
    void *w = NULL;
    if (make_linear(&l, &w, t, n, k)) {
        vd_free(w);
        return -1;
    }
    lin_arg a = { c, &l, x, y, m };
    double s = time_it(run_linear, &a, 1, min_s, cpu);
    vk_linear_free(&l);
    vd_free(w);
    return s;
}

int bench_kernels(int argc, char **argv)
{
    bench_opt o = { .threads = { 1, 2 }, .n_threads = 2 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            int bad = 0;
            o.threads[0] = bench_parse_threads(argv[++i], &bad);
            o.n_threads = 1;
            if (bad) {
                fprintf(stderr, "vdit bench kernels: bad --threads '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--quick")) {
            o.quick = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vdit bench kernels [--threads N] [--quick]\n"
                   "GFLOP/s of matmul (M = 1024/2048/4096; K x N = 1536x1536, 1536x8960,\n"
                   "8960x1536) and attention (12 heads x 128, sequence 1024..8192) with 1 and\n"
                   "2 threads (or N), against the fp32 peak. --quick: a short subset.\n");
            return 0;
        } else {
            fprintf(stderr, "vdit bench kernels: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    static const int64_t ms_full[] = { 1024, 2048, 4096 }, ms_quick[] = { 1024 };
    static const int64_t kn_full[][2] = { { 1536, 1536 }, { 1536, 8960 }, { 8960, 1536 } };
    static const int64_t kn_quick[][2] = { { 1536, 1536 }, { 1536, 8960 } };
    static const int64_t ls_full[] = { 1024, 2048, 4096, 8192 }, ls_quick[] = { 1024, 4096 };
    const int64_t *ms = o.quick ? ms_quick : ms_full, *ls = o.quick ? ls_quick : ls_full;
    const int64_t(*kn)[2] = o.quick ? kn_quick : kn_full;
    int nm = o.quick ? 1 : 3, nkn = o.quick ? 2 : 3, nl = o.quick ? 2 : 4;
    double min_s = o.quick ? 0.1 : 0.5;
    int64_t heads = 12, hd = 128, lmax = ls[nl - 1];

    size_t nx = (size_t)4096 * 8960, natt = (size_t)(lmax * heads * hd);
    float *x = vd_malloc(nx * 4), *y = vd_malloc(nx * 4);
    float *q = vd_malloc(natt * 4), *k = vd_malloc(natt * 4), *v = vd_malloc(natt * 4),
          *ao = vd_malloc(natt * 4);
    int rc = 1;
    if (!x || !y || !q || !k || !v || !ao) {
        fprintf(stderr, "vdit bench kernels: out of memory\n");
        goto done;
    }
    fill(x, nx, 1);
    fill(q, natt, 2);
    fill(k, natt, 3);
    fill(v, natt, 4);

    const char *how;
    double mhz = clock_mhz(&how), peak1 = mhz * 1e-3 * 2 * 8 * 2;
    printf("fp32 peak: %.1f GFLOP/s per core = %.0f MHz x 2 FMA pipes x 8 lanes x 2 flops\n"
           "  (%s; /proc/cpuinfo says %.0f MHz)\n",
           peak1, mhz, how, cpuinfo_mhz());
    double load = 0;
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf", &load) != 1)
            load = 0;
        fclose(lf);
    }
    if (load > vd_cpu_count() * 0.5)
        printf("note: load average %.1f on %d cores: other work shares the CPU, figures are low\n",
               load, vd_cpu_count());
    printf("GFLOP/s and %% of peak from wall time; cpu = process CPU time / (threads x wall),\n"
           "below 100%% when other programs shared the cores; per CPU-s = GFLOP per second of\n"
           "CPU time (the rate per busy core, against the per-core peak; OpenMP spin-waits\n"
           "count as busy)\n");
    printf("%-34s %7s %9s %7s %5s %10s %6s\n", "kernel", "threads", "GFLOP/s", "% peak", "cpu",
           "per CPU-s", "% core");
    for (int ti = 0; ti < o.n_threads; ti++) {
        int nt = o.threads[ti];
        vk_ctx *c = vk_ctx_new(nt, 0, NULL);
        if (!c)
            goto done;
        for (int a = 0; a < nm; a++)
            for (int b = 0; b < nkn; b++) {
                int64_t m = ms[a], kk = kn[b][0], n = kn[b][1];
                double cpu;
                double s = time_linear(c, VT_F32, m, kk, n, x, y, min_s, &cpu);
                char name[64];
                snprintf(name, sizeof(name), "matmul %lldx%lldx%lld", (long long)m, (long long)kk,
                         (long long)n);
                row(name, nt, 2.0 * m * kk * n, s, cpu, peak1);
            }
        for (int a = 0; a < nl; a++) {
            att_arg aa = { c, q, k, v, ao, ls[a], heads, hd };
            double cpu;
            double s = time_it(run_attention, &aa, !o.quick, min_s, &cpu);
            char name[64];
            snprintf(name, sizeof(name), "attention %lldx%lld seq %lld", (long long)heads,
                     (long long)hd, (long long)ls[a]);
            /* q kᵀ and p v: 2 products of 2 L² hd flops per head */
            row(name, nt, 4.0 * ls[a] * ls[a] * hd * heads, s, cpu, peak1);
        }
        /* stored fp16 / bf16 weights are widened per call: their cost, in wall
         * and in CPU time (the latter is what other load does not disturb) */
        double c32, c16, cb16;
        double s32 = time_linear(c, VT_F32, 1024, 1536, 8960, x, y, min_s, &c32);
        double s16 = time_linear(c, VT_F16, 1024, 1536, 8960, x, y, min_s, &c16);
        double sb16 = time_linear(c, VT_BF16, 1024, 1536, 8960, x, y, min_s, &cb16);
        printf("%-34s %7d  time %.2fx  CPU time %.2fx\n", "linear 1024x1536x8960 f16 / f32", nt,
               s16 / s32, c16 / c32);
        printf("%-34s %7d  time %.2fx  CPU time %.2fx\n", "linear 1024x1536x8960 bf16 / f32", nt,
               sb16 / s32, cb16 / c32);
        vk_ctx_free(&c);
    }
    rc = 0;
done:
    vd_free(x);
    vd_free(y);
    vd_free(q);
    vd_free(k);
    vd_free(v);
    vd_free(ao);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : NULL;
    if (!what || !strcmp(what, "--help") || !strcmp(what, "-h")) {
        printf("usage: vdit bench kernels|dit|vae|t5 [options]   (vdit bench X --help)\n");
        return what ? 0 : 2;
    }
    int (*fn)(int, char **) = NULL;
    if (!strcmp(what, "kernels"))
        fn = bench_kernels;
    else if (!strcmp(what, "dit"))
        fn = bench_dit;
    else if (!strcmp(what, "vae"))
        fn = bench_vae;
    else if (!strcmp(what, "t5"))
        fn = bench_t5;
    else {
        fprintf(stderr, "vdit bench: unknown subject '%s' (kernels, dit, vae, t5)\n", what);
        return 2;
    }
    return fn(argc - 1, argv + 1);
}
