/*
 * Wan2.1 diffusion transformer (WanModel, t2v and i2v).
 *
 * vd_dit      weights + configuration (read-only, shared). Configuration is
 *             read from tensor shapes; only text_len (512 for the released
 *             models) is given by the caller since no shape carries it.
 * vd_dit_run  per-context activations and scratch, reused across calls.
 * vd_dit_cond a prepared text (and image) condition: the embedded,
 *             padded context and every block's cross-attention K/V, computed
 *             once per prompt and reused for every step.
 *
 * Layouts: latents are [C, F, H, W] fp32 (PyTorch CFHW, batch 1).
 */
#ifndef VDIT_DIT_H
#define VDIT_DIT_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

typedef struct vd_dit_config {
    int64_t dim, ffn_dim, freq_dim, text_dim, in_dim, out_dim;
    int64_t n_heads, n_layers, text_len;
    int64_t patch[3];   /* (1, 2, 2) */
    int i2v;            /* image-to-video variant (img_emb present) */
    float eps;          /* 1e-6 */
} vd_dit_config;

typedef struct vd_dit vd_dit;
typedef struct vd_dit_run vd_dit_run;
typedef struct vd_dit_cond vd_dit_cond;

/* Renames diffusers / prefixed key layouts in `ck` onto the original names
 * (in place). Safe to call on an already-original checkpoint. */
int vd_dit_canonicalize(vd_ckpt *ck, vd_log *lg);

/* `ck` must outlive the model (weights are used in place). */
int vd_dit_load(const vd_ckpt *ck, int64_t text_len, vd_log *lg, vd_dit **out);
void vd_dit_free(vd_dit **d);
const vd_dit_config *vd_dit_get_config(const vd_dit *d);

vd_dit_run *vd_dit_run_new(const vd_dit *d, vk_ctx *kc);
void vd_dit_run_free(vd_dit_run **r);

/* context: [n_ctx, text_dim] (n_ctx <= text_len; zero-padded to text_len as
 * the reference does). clip_fea: [n_clip, 1280] for i2v, else NULL. */
int vd_dit_cond_new(vd_dit_run *r, const float *context, int64_t n_ctx, const float *clip_fea,
                    int64_t n_clip, vd_dit_cond **out);
void vd_dit_cond_free(vd_dit_cond **c);

/* One forward pass. x: [in_dim - y_ch, F, H, W]; y: NULL (t2v) or
 * [y_ch, F, H, W] concatenated after x on channels (i2v); t: timestep as
 * the sampler gives it; out: [out_dim, F, H, W]. H, W divisible by the patch.
 * Returns 0 or VDIT_ERR_*. */
int vd_dit_forward(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                   int64_t w, float t, const vd_dit_cond *cond, float *out);

#endif
