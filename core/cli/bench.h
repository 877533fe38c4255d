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
 * temporary file, loaded as the models load it for precision prec (in bf16
 * with the bf16 copy, made on `threads` threads) and the file unlinked.
 * 0 or VDIT_ERR_*. */
struct vd_ckpt;
struct vd_dit;
int bench_random_dit(vk_prec prec, int threads, struct vd_ckpt **ck, struct vd_dit **d,
                     vd_log *lg);
/* That DiT prepared for kc's precision, a run of it on kc, and the
 * conditions of a 40-token prompt and of the empty one (random text rows):
 * what a guided sampling loop needs. 0, or VDIT_ERR_* said in lg (nothing
 * kept). bench_guided_free frees all of it (NULL-safe parts). */
struct vd_dit_run;
struct vd_dit_cond;
typedef struct bench_guided {
    struct vd_ckpt *ck;
    struct vd_dit *d;
    struct vd_dit_run *r;
    struct vd_dit_cond *cc, *cu; /* the prompt's, the empty prompt's */
} bench_guided;
int bench_guided_new(vk_ctx *kc, vd_log *lg, bench_guided *g);
void bench_guided_free(bench_guided *g);

/* Random fp32 weights added by name to a checkpoint (bench_vae_weights.c):
 * kind 0 a weight, uniform with the variance of 1/fan_in (sh[0] outputs);
 * 1 a bias; 2 a norm's gamma around 1. The first failure stays in err;
 * bytes counts what was added. */
typedef struct bench_wgen {
    struct vd_ckpt *ck;
    uint64_t rng;
    int err;
    size_t bytes;
} bench_wgen;
void bench_wgen_tensor(bench_wgen *g, const char *name, int kind, int ndim, const int64_t *sh);
/* Uniform in [-1, 1) from the splitmix64 state *s. */
float bench_urand(uint64_t *s);
/* WanVAE_ (dim, z, [1,2,4,4], 2 res blocks, [F,T,T]; Wan2.1_VAE.pth's names)
 * and Wan2_2_VAE's (dim, decoder dim dd, z, patch 2; Wan2.2_VAE.pth's) with
 * random weights; *bytes (may be NULL): their size. NULL when out of memory. */
struct vd_ckpt *bench_vae21_weights(int dim, int z, size_t *bytes);
struct vd_ckpt *bench_vae22_weights(int dim, int dd, int z, size_t *bytes);
/* vd_vae_detach's release for those checkpoints (ctx: the vd_ckpt): the
 * tensor's whole pages go back to the system now (the buffer is freed with
 * the checkpoint), so the weights are never held twice in full. */
void bench_release_pages(void *ctx, const void *data);

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
