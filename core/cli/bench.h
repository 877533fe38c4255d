/* `vdit bench SUBJECT`: kernels live in bench.c, model benchmarks in their
 * own files (bench_dit.c, bench_vae.c, bench_t5.c, bench_cache.c, bench_steps.c). Each gets the
 * arguments after the subject (argv[0] is the subject) and returns the exit
 * status. */
#ifndef VDIT_CLI_BENCH_H
#define VDIT_CLI_BENCH_H

#include <stdint.h>

#include "kernels/kernels.h"

int bench_kernels(int argc, char **argv);
int bench_dit(int argc, char **argv);
int bench_vae(int argc, char **argv);
int bench_t5(int argc, char **argv);
int bench_cache(int argc, char **argv);
int bench_steps(int argc, char **argv); /* bench_steps.c: default vs few-step recipe */
int bench_tae(int argc, char **argv); /* bench_tae.c: TAEHV beside the Wan-VAE decoder */

/* Shared helpers for bench files: --threads N parsing (a bad value sets
 * *bad); --precision fp32|bf16|auto and --isa LEVEL (0, or -1 for an
 * unknown value); the level and precision a kernel context for them gets
 * (isa < 0: the default level; AUTO resolved), or -1 with the reason
 * printed as "vdit bench WHO: ...". The peak to compare with is
 * vk_peak_gflops of that level and precision (measured). */
int bench_parse_threads(const char *arg, int *bad);
int bench_parse_prec(const char *arg, vk_prec *p);
int bench_parse_isa(const char *arg, int *isa);
int bench_resolve(const char *who, int threads, int isa, vk_prec prec, vk_isa *isa_out,
                  vk_prec *prec_out);

/* The 1.3B DiT with random fp16 weights (bench_dit.c's), written to a
 * temporary file, loaded and the file unlinked. 0 or VDIT_ERR_*. */
struct vd_ckpt;
struct vd_dit;
int bench_random_dit(struct vd_ckpt **ck, struct vd_dit **d, vd_log *lg);

/* splitmix64: the next value of the generator whose state is *s. */
uint64_t bench_rng_next(uint64_t *s);
/* CPU seconds of the process, all threads, user + system (with other jobs
 * on the machine the wall time is inflated, the CPU time much less). */
double bench_cpu_seconds(void);
/* Peak resident set size of the process, in bytes. */
double bench_peak_rss(void);

/* Python baselines: "2.15.0+cu132" -> "2.15.0" (mm: "2.15"); the source
 * tree of a script under models/bench/; the PyTorch 2 venv's interpreter
 * (scripts/bench-venv.sh, which creates it when missing unless create is 0):
 * 0, or -1 with why set. */
const char *bench_short_ver(const char *v, int mm, char *buf, size_t n);
void bench_src_root(const char *script, char *root, size_t n);
int bench_venv_python(const char *root, int create, char *py, size_t n, char *why, size_t wn);
/* The PyTorch 2 interpreter of the --torch rows: python (--python) if it is
 * executable, else the venv's (bench_venv_python). 0, or -1 with py empty
 * and why set. */
int bench_torch_python(const char *root, const char *python, int create, char *py, size_t n,
                       char *why, size_t wn);

#endif
