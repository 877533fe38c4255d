/* `vdit conform DIR`: runs one component on the inputs stored in a
 * conformance folder (config.json, io.safetensors, weights.safetensors) and
 * compares every output with the stored reference.
 *
 * The component is chosen from config.json's "reference" field, never from
 * the folder name. Each component provides one handler (conform_<name>.c). */
#ifndef VDIT_CLI_CONFORM_H
#define VDIT_CLI_CONFORM_H

#include "ckpt.h"
#include "json.h"
#include "kernels/kernels.h"

typedef struct conform_ctx {
    const char *dir;
    const vj_val *cfg;  /* parsed config.json */
    vd_ckpt *io;        /* io.safetensors */
    vd_ckpt *weights;   /* weights.safetensors, NULL if the folder has none */
    int n_threads;
    vk_prec prec;       /* VK_PREC_F32 (exact) or VK_PREC_BF16 (looser bounds) */
    int verbose;        /* also compare inter/ tensors and print them */
    const char *device; /* NULL: the CPU; else the DiT, VAE or umT5 runs there (--device) */
    int n_pass, n_fail;
    double tol_abs, tol_rel; /* defaults for this folder (README's criteria) */
    vd_log log;
} conform_ctx;

/* Compares got (n floats) with the io tensor `name` (must exist, same element
 * count); prints "name max_abs=... rel=... PASS|FAIL" and counts it.
 * tol_abs/tol_rel <= 0 mean the folder defaults. */
void conform_check(conform_ctx *c, const char *name, const float *got, size_t n, double tol_abs,
                   double tol_rel);
/* Integer comparison (exact). */
/* The same for a result against values in hand (a part of a stored
 * tensor), printed under `label`. */
void conform_check_values(conform_ctx *c, const char *label, const float *got, const float *ref,
                          size_t n, double tol_abs, double tol_rel);
void conform_check_i64(conform_ctx *c, const char *name, const int64_t *got, size_t n);
/* Records a failure that is not a comparison (load error...). */
void conform_fail(conform_ctx *c, const char *what, const char *msg);
/* An io tensor as freshly allocated fp32 (vd_free), NULL + failure if absent. */
float *conform_input(conform_ctx *c, const char *name, const vt_tensor **t);

/* The kernel context of a handler into *kc: at the folder's precision;
 * with --device, also that device's context (kc->cuda, computing in the
 * folder's precision), the host's kernels beside it in fp32 for an fp32
 * folder (the small parts run on the CPU, and fp32 is exact), else at the
 * CPU's best. 0, or VDIT_ERR_* said in c->log (*kc NULL). */
int conform_kc(conform_ctx *c, vk_ctx **kc);

/* Handlers, one per component (conform_<x>.c). Each
 * returns 0 when it ran (pass/fail counted in c) or <0 when it could not. */
int conform_dit(conform_ctx *c);
int conform_vae(conform_ctx *c);
int conform_umt5(conform_ctx *c);
int conform_sampler(conform_ctx *c);
int conform_fewstep(conform_ctx *c); /* few-step DMD samplers (conform_sampler.c) */
int conform_t2v_loop(conform_ctx *c);
int conform_ti2v_t2v_loop(conform_ctx *c); /* Wan2.2 WanTI2V.t2v (conform_loop.c) */
int conform_ti2v_geometry(conform_ctx *c);
int conform_ti2v_loop(conform_ctx *c);
int conform_taehv(conform_ctx *c); /* madebyollin/taehv TAEHV.decode_video */

int cmd_conform(int argc, char **argv);

#endif
