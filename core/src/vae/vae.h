/*
 * Wan VAEs: causal 3D video autoencoders. Two models, told apart at load by
 * their tensor names and shapes:
 *   Wan2.1 VAE (wan.modules.vae.WanVAE_): 8x spatial, 4x temporal
 *     compression, z_dim 16;
 *   Wan2.2 VAE (wan.modules.vae2_2.WanVAE_, TI2V-5B): frames patchified 2x2
 *     first, residual blocks with space/time-to-channel shortcuts, 16x
 *     spatial and 4x temporal compression, z_dim 48, decoder width
 *     different from the encoder's.
 * Latents handed in and out are normalised with the published per-channel
 * mean / std, as the WanVAE / Wan2_2_VAE wrappers do.
 *
 * Frames are [3, T, H, W] fp32 in [-1, 1] (PyTorch CTHW, batch 1). A video of
 * T = 1 + 4k frames has 1 + k latent frames. H, W multiples of the spatial
 * factor s = cfg.s_factor (8 or 16; callers pad); latent frames are
 * [z_dim, H/s, W/s].
 *
 * Frame counts that are not 1 + 4k: the reference encoder silently drops the
 * trailing 1..3 frames. vdit instead completes the last chunk by repeating
 * the last frame (vd_vae_encode does it; streams do it in
 * vd_vae_enc_stream_flush), so T frames give 1 + ceil((T - 1) / 4) latent
 * frames and decoding gives 1 + 4 * ceil((T - 1) / 4) >= T frames: callers
 * keep the first T. Encoding T = 1 + 4k frames is exactly the reference.
 *
 * Evaluation order: every layer keeps, per causal convolution, the last two
 * frames of its input (zeros before the start), and frames flow through the
 * network one at a time. This is the reference's chunked computation (frame
 * 0, then chunks of 4) re-associated frame by frame, so results equal the
 * reference up to fp32 rounding and memory does not depend on T.
 *
 * Threads: a vd_vae is read-only after load and may be shared; a stream and
 * the vk_ctx it uses belong to one thread at a time.
 */
#ifndef VDIT_VAE_H
#define VDIT_VAE_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

typedef struct vd_vae vd_vae;

/* The most latent channels a model may have (Wan2.2: 48). */
#define VD_VAE_MAX_Z 64

/* Read from the tensor shapes at load. dim_mult / temporal_down list the
 * first 4 / 3 levels (Wan2.1: 96, 16, 2, [1,2,4,4], [F,T,T]; Wan2.2: 160,
 * 48, 2, [1,2,4,4], [F,T,T], dec_dim 256). n_attn counts attention blocks
 * outside the middle (0 for both). mean/std: the official constants (the
 * checkpoint does not store them; z_dim values). */
typedef struct vd_vae_config {
    int dim, z_dim, num_res_blocks;
    int dim_mult[4];
    int temporal_down[3];
    float mean[VD_VAE_MAX_Z], std[VD_VAE_MAX_Z];
    int n_levels;        /* len(dim_mult) */
    int n_attn;          /* attention blocks outside the middle, encoder + decoder */
    int s_factor;        /* spatial compression (Wan2.1 8, Wan2.2 16) */
    int t_factor;        /* temporal compression (4) */
    int version;         /* 21: Wan2.1 VAE layout; 22: Wan2.2 (residual up/down blocks) */
    int dec_dim;         /* decoder base width (Wan2.1: = dim; Wan2.2: 256 vs dim 160) */
    int patch;           /* (un)patchify factor at the ends (Wan2.1 1, Wan2.2 2) */
} vd_vae_config;

/* Renames diffusers (AutoencoderKLWan) / prefixed key layouts onto the
 * original names (encoder.downsamples.N.residual.0.gamma, Wan2.2:
 * encoder.downsamples.B.downsamples.N.residual.0.gamma, ...). Layouts:
 * original (Wan2.1_VAE.pth / wan_2.1_vae.safetensors, Wan2.2_VAE.pth /
 * wan2.2_vae.safetensors), the same under a prefix ("vae.",
 * "first_stage_model.", "model.", "module."), diffusers vae/ (both models). */
int vd_vae_canonicalize(vd_ckpt *ck, vd_log *lg);
/* `ck` must outlive the model. Errors name the checkpoint and tensor. */
int vd_vae_load(const vd_ckpt *ck, vd_log *lg, vd_vae **out);
void vd_vae_free(vd_vae **v);
/* Prepares every convolution now for the kernels of kc and drops the
 * model's references into the checkpoint, which may then be freed: the fp32
 * weights are held once (prepared) instead of twice. Call before sharing
 * the model; results do not change. release (may be NULL) is called with
 * each stored weight tensor's data as soon as the model no longer refers to
 * it, so that the caller can return that memory at once (free it, or
 * madvise a mapped file's pages) and the weights never exist twice in full. */
int vd_vae_detach(vd_vae *v, vk_ctx *kc, void (*release)(void *ctx, const void *data),
                  void *ctx);
/* The same for one half (or both): VD_VAE_ENCODER (the encoder and conv1),
 * VD_VAE_DECODER (conv2 and the decoder), prepared for frames of h x w
 * pixels (0: 512; vd_vae_detach uses 512 x 512): oneDNN's layout for the
 * weights is the one it picks at that size, and runs at every size ask for
 * it. The last write to the layers: runs only read them. The halves share
 * no layer, so one may be detached while the other runs on another thread
 * (not while the detached half runs). The checkpoint may be freed once both
 * are. */
enum { VD_VAE_ENCODER = 1, VD_VAE_DECODER = 2 };
int vd_vae_detach_part(vd_vae *v, vk_ctx *kc, int parts, int h, int w,
                       void (*release)(void *ctx, const void *data), void *ctx);
/* Puts both nets' convolutions and norms on a CUDA device (vc: a vkc_ctx,
 * kernels/cuda/vkc.h) once, in prec (VK_PREC_BF16: bf16 weights and
 * products with fp32 accumulation; otherwise fp32 without TF32); conv1 and
 * conv2 (1x1 on the latent) stay on the host, detached for kc. Streams and
 * one-shot calls then run on the device of the vk_ctx they are given
 * (kc->cuda, in the same precision: kc->cuda_bf16), each frame going up and
 * its output coming back once, the caches resident there; a vk_ctx without
 * a device is refused. Called instead of vd_vae_detach, with the same
 * release. 0 or VDIT_ERR_* said in lg (VDIT_ERR_UNSUPPORTED: no CUDA backend
 * in this build). */
int vd_vae_upload(vd_vae *v, void *vc, vk_prec prec, vk_ctx *kc,
                  void (*release)(void *ctx, const void *data), void *ctx, vd_log *lg);
/* Device memory the uploaded weights hold (0: on the host). */
size_t vd_vae_device_bytes(const vd_vae *v);
const vd_vae_config *vd_vae_get_config(const vd_vae *v);
/* Bytes held in the convolutions' prepared forms (vk_conv_prepared_bytes). */
size_t vd_vae_prepared_bytes(const vd_vae *v);

/* One-shot. Any T >= 1 (see the frame-count rule above): mu is
 * [z_dim, 1 + ceil((T-1)/4), H/s, W/s] normalised. log_var may be NULL. */
int vd_vae_encode(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h, int w,
                  float *mu, float *log_var);
/* z: [z_dim, tl, h, w] normalised -> video [3, 1 + 4(tl - 1), s h, s w],
 * clamped to [-1, 1]. */
int vd_vae_decode(const vd_vae *v, vk_ctx *kc, const float *z, int tl, int h, int w,
                  float *video);

/* As above with spatial tiling (tile = tile edge in pixels, 0 = none) and
 * raw output. Tiled one-shot calls run tile by tile over all frames, so peak
 * memory is bounded by the tile size (plus the caller's buffers).
 * Encoder raw: 0 = mu (normalised) and log_var; 1 = mu_raw (un-normalised)
 * and log_var; 2 = the encoder output before conv1 [2 z_dim, ...] in mu
 * (log_var unused). Decoder raw: 0 clamps, 1 does not, 2 = the decoder's
 * output before unpatchify [3 p^2, T, s h / p, s w / p] (p = cfg.patch; the
 * same as 1 for Wan2.1). */
int vd_vae_encode_ex(const vd_vae *v, vk_ctx *kc, const float *video, int t, int h, int w,
                     int tile, int raw, float *mu, float *log_var);
int vd_vae_decode_ex(const vd_vae *v, vk_ctx *kc, const float *z, int tl, int h, int w,
                     int tile, int raw, float *video);

/* conv2(z * std + mean) for one latent frame [z_dim, h, w]: the decoder's
 * input (debugging / conformance). */
int vd_vae_decoder_input(const vd_vae *v, vk_ctx *kc, const float *lat, int h, int w,
                         float *out);

/* Number of latent frames for t video frames, and video frames for tl latent
 * frames (0 for t / tl < 1). */
int vd_vae_latent_frames(const vd_vae *v, int t);
/* The 3x3 convolution after a nearest x2 upsampling as four 2x2 convs of
 * the low-resolution frame (vae_load.c, "make_subpixel"): output parity
 * (a, b) of the n = c_out * c_in 3x3 kernels w [n, 3, 3] into d [n, 2, 2],
 * taps summed in double and rounded once. The Wan-VAE's and TAEHV's
 * upsamplers both run this way. */
void vd_subpixel_fold(const float *w, size_t n, int a, int b, float *d);

/* Replaces the latent mean / std (z_dim values each; e.g. a conformance
 * folder's). Call before sharing the model. */
int vd_vae_set_latent_stats(vd_vae *v, const float *mean, const float *std);
int vd_vae_video_frames(const vd_vae *v, int tl);

/* Streaming, memory constant in the number of frames. The encoder takes
 * frames one at a time and emits a latent frame whenever one is determined
 * (after frame 0, then after every 4 frames). The decoder takes latent
 * frames one at a time and emits 1 (first) or 4 pixel frames.
 * tile: 0 = no spatial tiling; else the tile edge in pixels (overlapping
 * tiles, 1/4 overlap, blended linearly). In a stream every tile keeps its own
 * causal caches, so tiling bounds the per-frame working memory but not the
 * caches (about the untiled size); the tiled one-shot calls above bound both.
 * h, w: pixel size for the encoder, latent size for the decoder. Tiles of
 * the encoder start on the s-pixel grid (the tile edge is rounded down to a
 * multiple of s). */
typedef struct vd_vae_stream vd_vae_stream;
int vd_vae_enc_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out);
/* frame: [3, H, W]. *n_out (0 or 1) latent frames written to lat [z_dim, H/s, W/s]. */
int vd_vae_enc_stream_push(vd_vae_stream *s, const float *frame, float *lat, int *n_out);
/* Completes a partial chunk by repeating the last pushed frame; *n_out is 1
 * if that produced a latent frame, 0 if there was nothing pending. */
int vd_vae_enc_stream_flush(vd_vae_stream *s, float *lat, int *n_out);
int vd_vae_dec_stream_new(const vd_vae *v, vk_ctx *kc, int h, int w, int tile,
                          vd_vae_stream **out);
/* lat: [z_dim, h, w]; writes *n_out (1 or 4) frames [n_out][3, s h, s w] to frames. */
int vd_vae_dec_stream_push(vd_vae_stream *s, const float *lat, float *frames, int *n_out);
/* Raw output for a stream (see vd_vae_encode_ex); set before the first push.
 * Encoder raw 1/2 writes [2 z_dim, ...] per latent frame; decoder streams
 * take 0 or 1 (raw 2 is for vd_vae_decode_ex only). */
int vd_vae_stream_set_raw(vd_vae_stream *s, int raw);
void vd_vae_stream_free(vd_vae_stream **s);

/* Bytes held by a stream (caches + working buffers), for benchmarks. */
size_t vd_vae_stream_bytes(const vd_vae_stream *s);

#endif
