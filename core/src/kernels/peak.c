/* The machine's measured peak (vk_peak_gflops): the per-ISA loops live in
 * x86/peak_*.c, compiled with their level's flags; this file, built for the
 * baseline, only times them and measures the clock. */
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "impl.h"
#if VK_HAVE_X86
#include "x86/x86.h"
#endif

typedef double (*peak_loop)(int64_t iters, float a, float b, float *sink);

/* VK_ISA_C: whatever the compiler makes of plain C for the baseline of the
 * target (SSE2 on x86-64, no FMA there: a multiply and an add, 2 flops). */
static double peak_c(int64_t iters, float a, float b, float *sink)
{
    float c[16];
    for (int j = 0; j < 16; j++)
        c[j] = 1.0f + 0.1f * (float)j;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 16; j++)
            c[j] = c[j] * a + b;
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += c[j];
    *sink = s;
    return (double)iters * 16 * 2;
}

static volatile float peak_sink;

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The clock this core really runs at (boost included): a chain of dependent
 * one-cycle adds, timed in thread CPU time so other processes do not count.
 * Best of eight tries; 0 when not on x86-64. */
static double chain_mhz(void)
{
#if defined(__x86_64__)
    double best = 0;
    for (int t = 0; t < 8; t++) {
        uint64_t n = 2000000, acc = 0; /* 16 adds per iteration */
        double t0 = thread_cpu();
        __asm__ volatile("1:\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "add $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\t"
                         "dec %0\n\tjnz 1b"
                         : "+r"(n), "+r"(acc));
        double dt = thread_cpu() - t0;
        if (dt > 0 && 2000000 * 16 / dt * 1e-6 > best)
            best = 2000000 * 16 / dt * 1e-6;
    }
    return best;
#else
    return 0;
#endif
}

/* The clock with all threads busy at once (all-core boost): the best
 * thread's (on a virtual machine, time the host took shows as a lower
 * clock; other load only lowers it). */
static double measure_mhz(int threads)
{
    double best = 0;
#pragma omp parallel num_threads(threads) reduction(max : best)
    best = chain_mhz();
    return best;
}

/* One run of fn on every thread at once: the sum of the threads' rates,
 * each timed in its own CPU time (as the clock: other processes sharing
 * the cores do not count); *span: the longest thread's time. */
static double run_once(peak_loop fn, int threads, int64_t iters, double *span)
{
    double rate = 0, t = 0;
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate, sink) reduction(max : t)
    {
        float s = 0;
#pragma omp barrier
        double a = thread_cpu();
        double fl = fn(iters, 0.999999f, 1e-6f, &s);
        double dt = thread_cpu() - a;
        rate += dt > 0 ? fl / dt : 0;
        t = dt;
        sink += s;
    }
    peak_sink = sink;
    *span = t;
    return rate;
}

enum { PEAK_RUNS = 7 };

/* GFLOP/s of fn on `threads` threads: calibrated to runs of about 15 ms,
 * the best run (other load only lowers a run: more short runs give more
 * chances of a clean one). */
static double measure(peak_loop fn, int threads)
{
    int64_t iters = 1 << 12;
    double rate, dt;
    for (;;) {
        rate = run_once(fn, threads, iters, &dt);
        if (dt >= 0.005 || iters >= ((int64_t)1 << 34))
            break;
        iters *= 4;
    }
    double want = dt > 0 ? (double)iters * 0.015 / dt : 0; /* dt >= 5 ms unless iters is huge */
    iters = want < (double)iters ? iters : (int64_t)want;
    /* at least PEAK_RUNS runs, spread over 0.4 s at least: on a shared
     * virtual machine the host's other guests can take a core for a tenth
     * of a second, which shows as CPU time and lowers every run in it (a
     * bf16 peak of 238 instead of 468 GFLOP/s was seen with 8 runs alone) */
    double t0 = vd_time();
    for (int r = 0; r < PEAK_RUNS || (r < 8 * PEAK_RUNS && vd_time() - t0 < 0.4); r++) {
        double x = run_once(fn, threads, iters, &dt);
        if (x > rate)
            rate = x;
    }
    /* more threads than cores take turns: each one's CPU-time rate is a
     * whole core's */
    int ncpu = vd_cpu_count();
    if (threads > ncpu)
        rate *= (double)ncpu / threads;
    return rate * 1e-9;
}

double vk_peak_gflops(vk_isa isa, vk_prec prec, int threads, double *mhz, char *how,
                      size_t how_len)
{
    if ((int)isa < 0)
        isa = vk_isa_default();
    if (isa > vk_isa_cpu())
        isa = vk_isa_cpu();
    if (threads <= 0)
        threads = vd_cpu_count();
    const char *note = "";
    if (prec == VK_PREC_AUTO)
        prec = vk_isa_native_bf16(isa) ? VK_PREC_BF16 : VK_PREC_F32;
    if (prec == VK_PREC_BF16 && !vk_isa_native_bf16(isa)) {
        prec = VK_PREC_F32;
        note = "bf16 not native at this level, fp32 figure: ";
    }
    double gf = 0;
    char what[128];
#if VK_HAVE_X86
    if (isa >= VK_ISA_AVX512_BF16 && prec == VK_PREC_BF16) {
        gf = measure(vk_bf16_peak_dot, threads);
        snprintf(what, sizeof(what), "vdpbf16ps zmm");
    } else if (isa >= VK_ISA_AVX512) {
        double y = measure(vk_avx2_peak_fma, threads), z = measure(vk_avx512_peak_fma, threads);
        gf = y > z ? y : z;
        snprintf(what, sizeof(what), "fp32 FMA %s (ymm %.0f, zmm %.0f GFLOP/s)",
                 y > z ? "ymm" : "zmm", y, z);
    } else if (isa >= VK_ISA_AVX2) {
        gf = measure(vk_avx2_peak_fma, threads);
        snprintf(what, sizeof(what), "fp32 FMA ymm");
    } else
#endif
    {
        gf = measure(peak_c, threads);
        snprintf(what, sizeof(what), "plain C multiply-add loop built for the baseline (the "
                 "level has no SIMD code)");
    }
    double m = measure_mhz(threads);
    if (mhz)
        *mhz = m;
    if (how && how_len) {
        char clk[96];
        if (m > 0)
            snprintf(clk, sizeof(clk), "%.0f flops/cycle/core at %.2f GHz measured",
                     gf * 1e3 / m / threads, m * 1e-3);
        else
            snprintf(clk, sizeof(clk), "clock not measured");
        snprintf(how, how_len, "%s%s %s: %s (%d thread%s, thread CPU time, best of runs over "
                 "0.4 s)", note, vk_isa_name(isa), what, clk, threads, threads == 1 ? "" : "s");
    }
    return gf;
}
