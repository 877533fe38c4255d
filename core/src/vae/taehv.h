/*
 * TAEHV: the tiny video autoencoder of madebyollin/taehv (taehv.py, MIT
 * licence), decoder only, as an alternative to the Wan-VAE's decoder.
 * Published files: taew2_1.pth / taew2_1.safetensors (Wan2.1 latents, 16
 * channels, 8x spatial), taew2_2.pth / .safetensors (Wan2.2 TI2V-5B latents,
 * 48 channels, output pixel-shuffled 2x2: 16x spatial). Both 4x temporal.
 *
 * The decoder (taehv.py's TAEHV.decoder, arch_variant None), with the layer
 * indices that name its tensors (decoder.N.*):
 *   0 Clamp (tanh(x / 3) * 3), 1 conv3x3 z -> n0 (+bias), 2 ReLU,
 *   3-5 MemBlock(n0), 6 nearest x2, 7 TGrow(n0, 1), 8 conv3x3 n0 -> n1,
 *   9-11 MemBlock(n1), 12 nearest x2, 13 TGrow(n1, 2), 14 conv3x3 n1 -> n2,
 *   15-17 MemBlock(n2), 18 nearest x2, 19 TGrow(n2, 2), 20 conv3x3 n2 -> n3,
 *   21 ReLU, 22 conv3x3 n3 -> 3 p^2 (+bias), then pixel shuffle p, clamp [0, 1].
 * (released widths 256, 128, 64, 64; every width is read from the shapes.)
 * MemBlock(x, past) = ReLU(conv3x3(ReLU(conv3x3(ReLU(conv3x3(cat(x, past))))))
 * + x) with past = the block's input one frame earlier (zeros at frame 0);
 * TGrow(C, s) = a 1x1 conv C -> s C whose channel groups become s frames.
 * T latent frames give 4 T raw frames; the first 3 are dropped
 * (frames_to_trim), so 1 + 4 (T - 1) frames, the Wan-VAE's count.
 *
 * Latents are the diffusion model's (normalised, as vd_vae takes them:
 * TAEHV uses no scale or shift); frames come out as the Wan-VAE's,
 * [3, H, W] in [-1, 1] (taehv's [0, 1] times 2 minus 1).
 *
 * Evaluation: frame by frame, as StreamingTAEHV / taehv.py's sequential mode
 * (depth first, each MemBlock keeping its previous input frame), so memory
 * does not depend on the number of frames.
 *
 * Threads: a vd_taehv is read-only after vd_taehv_detach and may be shared;
 * a stream and its vk_ctx belong to one thread at a time.
 */
#ifndef VDIT_TAEHV_H
#define VDIT_TAEHV_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

typedef struct vd_taehv vd_taehv;

typedef struct vd_taehv_config {
    int z_dim;       /* latent channels (decoder.1.weight's inputs): 16 or 48 */
    int patch;       /* output pixel shuffle (1, or 2 for 12 output channels) */
    int width[4];    /* n0..n3 */
    int t_stride[3]; /* TGrow strides: 1, 2, 2 */
    int s_factor;    /* 8 * patch */
    int t_factor;    /* 4 */
    int64_t n_params;
} vd_taehv_config;

/* Reads the decoder from a checkpoint holding taehv.py's state dict
 * (decoder.N.* under an optional common prefix; encoder tensors are
 * ignored). The weights are copied (fp32), so ck may be freed afterwards.
 * Errors name the file and the tensor: a missing or mis-shaped tensor, the
 * "super" variant (unsupported), a decoder whose temporal upscaling is not
 * 4x. */
int vd_taehv_load(const vd_ckpt *ck, vd_log *lg, vd_taehv **out);
/* vd_ckpt_open + vd_taehv_load + vd_ckpt_free. */
int vd_taehv_load_file(const char *path, vd_log *lg, vd_taehv **out);
void vd_taehv_free(vd_taehv **t);
const vd_taehv_config *vd_taehv_get_config(const vd_taehv *t);
/* Prepares every convolution for kc's kernels (latent frames of lh x lw;
 * 0: 64) and drops the fp32 copies; results do not change. The last write:
 * call before sharing the model. */
int vd_taehv_detach(vd_taehv *t, vk_ctx *kc, int lh, int lw);

/* Decoder stream over latent frames of lh x lw: each push of one latent
 * frame [z_dim, lh, lw] writes *n_out frames [n_out][3, s lh, s lw] (1 for
 * the first latent frame, then 4). raw: 0 = [-1, 1] clamped (the Wan-VAE's
 * convention); 1 = the decoder's output after the pixel shuffle, in taehv's
 * [0, 1] scale and not clamped (conformance). */
typedef struct vd_taehv_stream vd_taehv_stream;
int vd_taehv_stream_new(const vd_taehv *t, vk_ctx *kc, int lh, int lw, int raw,
                        vd_taehv_stream **out);
int vd_taehv_stream_push(vd_taehv_stream *s, const float *lat, float *frames, int *n_out);
void vd_taehv_stream_free(vd_taehv_stream **s);
/* Bytes a stream holds (state + working buffers). */
size_t vd_taehv_stream_bytes(const vd_taehv_stream *s);

/* One-shot: z [z_dim, tl, lh, lw] -> video [3, 1 + 4 (tl - 1), s lh, s lw]
 * in [-1, 1], through a stream. */
int vd_taehv_decode(const vd_taehv *t, vk_ctx *kc, const float *z, int tl, int lh, int lw,
                    float *video);

#endif
