/* `vdit bench SUBJECT`: kernels live in bench.c, model benchmarks in their
 * own files (bench_dit.c, bench_vae.c, bench_t5.c). Each gets the
 * arguments after the subject (argv[0] is the subject) and returns the exit
 * status. */
#ifndef VDIT_CLI_BENCH_H
#define VDIT_CLI_BENCH_H

#include <stdint.h>

int bench_kernels(int argc, char **argv);
int bench_dit(int argc, char **argv);
int bench_vae(int argc, char **argv);
int bench_t5(int argc, char **argv);

/* Shared helpers for bench files: --threads N parsing (a bad value sets
 * *bad), and the machine's fp32 peak in GFLOP/s for n cores (AVX2: 2 FMA
 * pipes x 8 lanes x 2 flops per cycle), with *how set to a constant string
 * saying how the clock was found (measured, including boost, when possible). */
int bench_parse_threads(const char *arg, int *bad);
double bench_peak_gflops(int cores, const char **how);

/* splitmix64: the next value of the generator whose state is *s. */
uint64_t bench_rng_next(uint64_t *s);
/* CPU seconds of the process, all threads, user + system (with other jobs
 * on the machine the wall time is inflated, the CPU time much less). */
double bench_cpu_seconds(void);
/* Peak resident set size of the process, in bytes. */
double bench_peak_rss(void);

#endif
