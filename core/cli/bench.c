/* vdit bench kernels [--threads N] [--quick] [--precision P] [--isa LEVEL]:
 * GFLOP/s of the products the DiT spends its time in (linear at DiT sizes,
 * self-attention at 12 heads x 128, cross-attention over 512 text tokens),
 * beside the machine's measured peak for the level and precision in use
 * (vk_peak_gflops). Also the dispatcher for `vdit bench dit`, `vae`, `t5`,
 * which their components provide (bench.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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

int bench_parse_prec(const char *arg, vk_prec *p)
{
    static const char *const names[] = { "fp32", "bf16", "auto" };
    for (int i = 0; arg && i < 3; i++)
        if (!strcmp(arg, names[i])) {
            *p = (vk_prec)i;
            return 0;
        }
    return -1;
}

int bench_parse_isa(const char *arg, int *isa)
{
    vk_isa v;
    if (vk_isa_parse(arg, &v))
        return -1;
    *isa = (int)v;
    return 0;
}

int bench_resolve(const char *who, int threads, int isa, vk_prec prec, vk_isa *isa_out,
                  vk_prec *prec_out)
{
    vd_log lg = { 0 };
    vk_ctx *c = vk_ctx_new_ex(threads, isa, prec, &lg);
    if (!c) {
        fprintf(stderr, "vdit bench %s: %s\n", who, lg.msg);
        return -1;
    }
    *isa_out = c->isa;
    *prec_out = c->prec;
    vk_ctx_free(&c);
    return 0;
}

typedef struct bench_opt {
    int threads[2];
    int n_threads;
    int quick;
    int isa; /* < 0: the default level */
    vk_prec prec;
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
    int64_t lq, lk, heads, hd;
} att_arg;

static void run_attention(void *p)
{
    att_arg *a = p;
    int64_t ld = a->heads * a->hd;
    a->c->f->attention(a->c, a->q, ld, a->k, ld, a->v, ld, a->o, ld, a->heads, a->hd, a->lq,
                       a->lk, a->lk, 1.0f / sqrtf((float)a->hd), NULL);
}

/* One table row; peak: the measured peak of nt threads together. Returns
 * GFLOP/s (wall). */
static double row(const char *name, int nt, double flops, double s, double cpu, double peak)
{
    double gf = flops / s * 1e-9, gcpu = cpu > 0 ? flops / cpu * 1e-9 : 0, peak1 = peak / nt;
    printf("%-36s %7d %9.1f %6.1f%% %4.0f%% %10.1f %5.1f%%\n", name, nt, gf, 100 * gf / peak,
           100 * cpu / (s * nt), gcpu, 100 * gcpu / peak1);
    fflush(stdout);
    return gf;
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
    vk_linear l = { 0 };
    void *w = NULL;
    /* prepared as a model's layers are at load (the matmul's layout) */
    if (make_linear(&l, &w, t, n, k) || vk_linear_prepare(&l, c->prec, c->n_threads)) {
        vk_linear_free(&l);
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
    bench_opt o = { .threads = { 1, 2 }, .n_threads = 2, .isa = -1, .prec = VK_PREC_AUTO };
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
        } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            if (bench_parse_prec(argv[++i], &o.prec)) {
                fprintf(stderr, "vdit bench kernels: --precision wants fp32, bf16 or auto\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            if (bench_parse_isa(argv[++i], &o.isa)) {
                fprintf(stderr, "vdit bench kernels: --isa wants c, avx2, avx512 or avx512_bf16\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vdit bench kernels [--threads N] [--quick]\n"
                   "                          [--precision fp32|bf16|auto]\n"
                   "                          [--isa c|avx2|avx512|avx512_bf16]\n"
                   "GFLOP/s of linear layers at the DiT's shapes (M = 1200 and 4096 tokens;\n"
                   "K x N = 1536x1536, 1536x8960, 8960x1536), self-attention (12 heads x 128,\n"
                   "sequence 1200..8192) and cross-attention (those queries over 512 text\n"
                   "tokens), with 1 and 2 threads (or N), against the peak measured for the\n"
                   "level and precision in use. --precision: default auto (bf16 where the CPU\n"
                   "computes it natively); --isa: default the CPU's level (VDIT_CPU lowers it).\n"
                   "Ends with a summary line (linear at M = 1200, attention at 1200).\n"
                   "--quick: a shorter subset.\n");
            return 0;
        } else {
            fprintf(stderr, "vdit bench kernels: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    vk_isa isa;
    vk_prec prec;
    if (bench_resolve("kernels", 1, o.isa, o.prec, &isa, &prec))
        return 2;
    const char *pn = vk_prec_name(prec);
    /* the weights as a model in this precision holds them at best: bf16 in
     * place, fp32 as they are */
    vt_dtype wt = prec == VK_PREC_BF16 ? VT_BF16 : VT_F32;
    int att_f32 = prec == VK_PREC_BF16 &&
                  vk_funcs_for(isa, prec)->attention == vk_funcs_for(isa, VK_PREC_F32)->attention;

    static const int64_t ms_full[] = { 1200, 4096 }, ms_quick[] = { 1200 };
    static const int64_t kn[][2] = { { 1536, 1536 }, { 1536, 8960 }, { 8960, 1536 } };
    static const int64_t ls_full[] = { 1200, 2048, 4096, 8192 }, ls_quick[] = { 1200, 4096 };
    const int64_t *ms = o.quick ? ms_quick : ms_full, *ls = o.quick ? ls_quick : ls_full;
    int nm = o.quick ? 1 : 2, nkn = 3, nl = o.quick ? 2 : 4;
    double min_s = o.quick ? 0.1 : 0.5;
    int64_t heads = 12, hd = 128, lmax = ls[nl - 1], ltext = 512;

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

    printf("level %s, precision %s: linear with %s weights%s; attention %s\n", vk_isa_name(isa),
           pn, wt == VT_BF16 ? "bf16" : "fp32",
           prec == VK_PREC_BF16 ? " (bf16 operands, fp32 accumulation)" : "",
           att_f32 ? "computed in fp32 (no bf16 attention at this level yet)" : pn);
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
    double peak[2] = { 0, 0 };
    for (int ti = 0; ti < o.n_threads; ti++) {
        char how[256];
        double mhz;
        peak[ti] = vk_peak_gflops(isa, prec, o.threads[ti], &mhz, how, sizeof(how));
        printf("%s peak, %d thread%s: %.1f GFLOP/s (%s)\n", pn, o.threads[ti],
               o.threads[ti] == 1 ? "" : "s", peak[ti], how);
    }
    printf("  (/proc/cpuinfo says %.0f MHz)\n", cpuinfo_mhz());
    printf("GFLOP/s and %% of peak from wall time; cpu = process CPU time / (threads x wall),\n"
           "below 100%% when other programs shared the cores; per CPU-s = GFLOP per second of\n"
           "CPU time (the rate per busy core, against the per-core peak; OpenMP spin-waits\n"
           "count as busy)\n");
    printf("%-36s %7s %9s %7s %5s %10s %6s\n", "kernel", "threads", "GFLOP/s", "% peak", "cpu",
           "per CPU-s", "% core");
    double lin_gf = 0, att_gf = 0;
    for (int ti = 0; ti < o.n_threads; ti++) {
        int nt = o.threads[ti];
        vd_log lg = { 0 };
        vk_ctx *c = vk_ctx_new_ex(nt, isa, prec, &lg);
        if (!c) {
            fprintf(stderr, "vdit bench kernels: %s\n", lg.msg);
            goto done;
        }
        double lin_fl = 0, lin_s = 0;
        for (int a = 0; a < nm; a++)
            for (int b = 0; b < nkn; b++) {
                int64_t m = ms[a], kk = kn[b][0], n = kn[b][1];
                double cpu;
                double s = time_linear(c, wt, m, kk, n, x, y, min_s, &cpu);
                char name[64];
                snprintf(name, sizeof(name), "linear %lldx%lldx%lld", (long long)m, (long long)kk,
                         (long long)n);
                row(name, nt, 2.0 * m * kk * n, s, cpu, peak[ti]);
                if (a == 0) {
                    lin_fl += 2.0 * m * kk * n;
                    lin_s += s;
                }
            }
        lin_gf = lin_fl / lin_s * 1e-9;
        for (int a = 0; a < nl; a++) {
            att_arg aa = { c, q, k, v, ao, ls[a], ls[a], heads, hd };
            double cpu;
            double s = time_it(run_attention, &aa, !o.quick, min_s, &cpu);
            char name[64];
            snprintf(name, sizeof(name), "attention %lldx%lld seq %lld", (long long)heads,
                     (long long)hd, (long long)ls[a]);
            /* q kᵀ and p v: 2 products of 2 lq lk hd flops per head */
            double gf = row(name, nt, 4.0 * ls[a] * ls[a] * hd * heads, s, cpu, peak[ti]);
            if (a == 0)
                att_gf = gf;
        }
        for (int a = 0; a < nl; a++) {
            att_arg aa = { c, q, k, v, ao, ls[a], ltext, heads, hd };
            double cpu;
            double s = time_it(run_attention, &aa, !o.quick, min_s, &cpu);
            char name[64];
            snprintf(name, sizeof(name), "cross-attention %lld over %lld", (long long)ls[a],
                     (long long)ltext);
            row(name, nt, 4.0 * ls[a] * ltext * hd * heads, s, cpu, peak[ti]);
        }
        /* stored fp16 / bf16 weights against fp32 ones, prepared as at load
         * (fp32 contexts widen 16-bit weights per call): their cost, in wall
         * and in CPU time (the latter is what other load does not disturb) */
        double c32 = 0, c16 = 0, cb16 = 0;
        double s32 = time_linear(c, VT_F32, 1200, 1536, 8960, x, y, min_s, &c32);
        double s16 = time_linear(c, VT_F16, 1200, 1536, 8960, x, y, min_s, &c16);
        double sb16 = time_linear(c, VT_BF16, 1200, 1536, 8960, x, y, min_s, &cb16);
        printf("%-36s %7d  time %.2fx  CPU time %.2fx\n", "linear 1200x1536x8960 f16 / f32 w",
               nt, s16 / s32, c16 / c32);
        printf("%-36s %7d  time %.2fx  CPU time %.2fx\n", "linear 1200x1536x8960 bf16 / f32 w",
               nt, sb16 / s32, cb16 / c32);
        vk_ctx_free(&c);
    }
    {
        int nt = o.threads[o.n_threads - 1];
        double pk = peak[o.n_threads - 1];
        printf("kernels %s: linear %.0f GFLOP/s (%.0f%% of the %s peak %.0f GFLOP/s, %s, %d "
               "thread%s), attention 1200 %.0f GFLOP/s (%.0f%% of linear%s)\n",
               pn, lin_gf, 100 * lin_gf / pk, pn, pk, vk_isa_name(isa), nt, nt == 1 ? "" : "s",
               att_gf, 100 * att_gf / lin_gf, att_f32 ? ", attention in fp32" : "");
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
        printf("usage: vdit bench kernels|dit|vae|tae|t5|cache|steps [options]   "
               "(vdit bench X --help)\n");
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
    else if (!strcmp(what, "cache"))
        fn = bench_cache;
    else if (!strcmp(what, "steps"))
        fn = bench_steps;
    else if (!strcmp(what, "tae"))
        fn = bench_tae;
    else {
        fprintf(stderr, "vdit bench: unknown subject '%s' (kernels, dit, vae, tae, t5, cache, steps)\n",
                what);
        return 2;
    }
    /* `vdit bench vae --tae ...`: the TAEHV decoder beside the Wan-VAE's,
     * which is `vdit bench tae` (its options) */
    if (fn == bench_vae)
        for (int i = 2; i < argc; i++)
            if (!strcmp(argv[i], "--tae")) {
                for (int k = i; k + 1 < argc; k++)
                    argv[k] = argv[k + 1];
                return bench_tae(argc - 2, argv + 1);
            }
    return fn(argc - 1, argv + 1);
}

/* ---- Python baselines (bench dit / bench vae --torch) ---- */

/* "2.15.0+cu132" -> "2.15.0", or with mm "2.15" */
const char *bench_short_ver(const char *v, int mm, char *buf, size_t n)
{
    snprintf(buf, n, "%s", v);
    buf[strcspn(buf, "+")] = 0;
    char *d = mm ? strchr(buf, '.') : NULL;
    if (d && (d = strchr(d + 1, '.')))
        *d = 0;
    return buf;
}

/* The source tree of the torch script (models/bench/bench_dit_torch.py). */
void bench_src_root(const char *script, char *root, size_t n)
{
    snprintf(root, n, "%s", script);
    for (int i = 0; i < 3; i++) {
        char *s = strrchr(root, '/');
        if (!s) {
            snprintf(root, n, ".");
            return;
        }
        *s = 0;
    }
    if (!*root)
        snprintf(root, n, "/");
}

/* The PyTorch 2 / diffusers interpreter: scripts/bench-venv.sh of the source
 * tree (which creates the venv when missing; its last line of stdout), or
 * with create 0 the venv's python if it exists. 0, or -1 with why set. */
int bench_venv_python(const char *root, int create, char *py, size_t n, char *why, size_t wn)
{
    char sh[1100], cmd[1200], line[1100]; /* root < 1024, py and why hold 1100 and 1400 */
    if (!create) {
        const char *v = getenv("VDIT_BENCH_VENV");
        if (v && *v)
            snprintf(py, n, "%s/bin/python", v);
        else
            snprintf(py, n, "%s/.venv-bench/bin/python", root);
        if (access(py, X_OK)) {
            snprintf(why, wn, "--no-venv and no %s (scripts/bench-venv.sh makes it)", py);
            return -1;
        }
        return 0;
    }
    snprintf(sh, sizeof(sh), "%s/scripts/bench-venv.sh", root);
    if (access(sh, R_OK)) {
        snprintf(why, wn, "no %s (run from the source tree, or give --python)", sh);
        return -1;
    }
    printf("  %s  (the PyTorch 2 (+ diffusers) venv; when missing it is created: about 2.7 GB "
           "from PyPI, a minute or two; --no-venv: never)\n", sh);
    fflush(stdout);
    snprintf(cmd, sizeof(cmd), "bash '%s'", sh);
    FILE *p = popen(cmd, "r");
    py[0] = 0;
    while (p && fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = 0;
        if (*line)
            snprintf(py, n, "%s", line);
    }
    if (!p || pclose(p) || !*py || access(py, X_OK)) {
        snprintf(why, wn, "scripts/bench-venv.sh failed (see above; --python PATH or --no-venv)");
        return -1;
    }
    return 0;
}

int bench_torch_python(const char *root, const char *python, int create, char *py, size_t n,
                       char *why, size_t wn)
{
    if (python) {
        snprintf(py, n, "%s", python);
        if (!access(py, X_OK))
            return 0;
        snprintf(why, wn, "--python %s is not executable", python);
    } else if (!bench_venv_python(root, create, py, n, why, wn)) {
        return 0;
    }
    py[0] = 0;
    return -1;
}
