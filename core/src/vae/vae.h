/*
 * Wan2.1 VAE (WanVAE_): causal 3D video autoencoder, 8x spatial and 4x
 * temporal compression, z_dim 16. Latents handed in and out are normalised
 * with the published per-channel mean / std, as the WanVAE wrapper does.
 *
 * Frames are [3, T, H, W] fp32 in [-1, 1] (PyTorch CTHW, batch 1). A video of
 * T = 1 + 4k frames has 1 + k latent frames. H, W multiples of 8 (callers
 * pad).
 */
#ifndef VDIT_VAE_H
#define VDIT_VAE_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

typedef struct vd_vae vd_vae;

typedef struct vd_vae_config {
    int dim, z_dim, num_res_blocks;
    int dim_mult[4];
    int temporal_down[3];
    float mean[16], std[16];
} vd_vae_config;

/* Renames diffusers / prefixed key layouts onto the original names. */
int vd_vae_canonicalize(vd_ckpt *ck, vd_log *lg);
/* `ck` must outlive the model. */
int vd_vae_load(const vd_ckpt *ck, vd_log *lg, vd_vae **out);
void vd_vae_free(vd_vae **v);
const vd_vae_config *vd_vae_get_config(const vd_vae *v);

/* One-shot. T = 1 + 4k. mu: [z_dim, 1 + k, H/8, W/8] normalised.
 * log_var may be NULL. */
int vd_vae_encode(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h, int w,
                  float *mu, float *log_var);
/* z: [z_dim, tl, h, w] normalised -> video [3, 1 + 4(tl - 1), 8h, 8w],
 * clamped to [-1, 1]. */
int vd_vae_decode(const vd_vae *v, vk_ctx *kc, const float *z, int tl, int h, int w,
                  float *video);

/* Streaming, memory constant in the number of frames. The encoder takes
 * frames one at a time and emits a latent frame whenever one is determined
 * (after frame 0, then after every 4 frames). The decoder takes latent
 * frames one at a time and emits 1 (first) or 4 pixel frames.
 * tile: 0 = no spatial tiling; else the tile edge in pixels (overlapping
 * tiles blended) to bound memory on large frames. */
typedef struct vd_vae_stream vd_vae_stream;
int vd_vae_enc_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out);
/* frame: [3, H, W]. *n_out (0 or 1) latent frames written to lat [z_dim, H/8, W/8]. */
int vd_vae_enc_stream_push(vd_vae_stream *s, const float *frame, float *lat, int *n_out);
int vd_vae_dec_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out);
/* lat: [z_dim, h, w]; writes *n_out (1 or 4) frames [n_out][3, 8h, 8w] to frames. */
int vd_vae_dec_stream_push(vd_vae_stream *s, const float *lat, float *frames, int *n_out);
void vd_vae_stream_free(vd_vae_stream **s);

#endif
