/* Internals shared by the pipeline files: the model and context objects
 * behind the public handles, the text-condition cache, the noise generator
 * and the denoising engine every operation is built on. */
#ifndef VDIT_PIPELINE_H
#define VDIT_PIPELINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "../common.h"
#include "family.h"
#include "sampler.h"

struct vdit_model {
    vd_log log;
    const vd_family *fam; /* what the parts are (family.h) */
    void *parts;          /* the family's loaded parts (wan: vd_wan_parts) */
    vd_geom geom;         /* latent geometry */
    vdit_model_info info;
    char *neg_prompt; /* default negative prompt (malloc'd) */
    int clean_context; /* given latent frames enter the denoiser clean at every step:
                          vdit.json "context": "clean" (a model trained so), or the
                          family's way (Wan2.2 TI2V: clean, at timestep 0); else
                          re-noised to the step's sigma (replacement, any t2v model) */
    int given_t0;      /* given latent frames' tokens get timestep 0 (per-token timesteps) */
    int circular_loop; /* vdit.json "loop": "circular": loops of any length denoise a
                          circular timeline (a model trained on periodic clips seen as
                          that sampler shows them); else (bridge) loops of 8 frames or
                          more are a clip whose tail is made again as a bridge back */
    int loop_turns, loop_history; /* vdit.json "loop_turns" (default 1) > 0: a bridge-back
                          loop (4k frames) is re-decoded so that its first frame follows
                          its last (vd_loop_decode), "loop_history" (default 0) */
    struct vd_taehv *tae; /* the decoder vdit_model_params.decoder chose (NULL: the
                          family's VAE decodes), read-only after load */
    vk_device dev;        /* vdit_model_params.device, resolved */
    void *cuda;           /* dev's context holding the uploaded weights (vkc_ctx), or NULL */
    int cuda_bf16;        /* the device weights are bf16 (else fp32) */
};

/* A prompt's embedding (the text encoder's real rows), cached per context. */
typedef struct vd_text_entry {
    char *text;
    float *emb; /* [n, text_dim] */
    int64_t n;
    uint64_t used;
} vd_text_entry;

#define VD_TEXT_CACHE 8

struct vdit_ctx {
    vdit_model *model;
    vd_log log;
    vdit_progress_fn progress_cb;
    void *progress_user;
    int n_threads;
    atomic_int cancel;
    char compute[192]; /* vdit_ctx_compute */
    vk_ctx *kc;
    vd_run *run;                    /* the family's per-context denoiser state */
    vd_text_entry text[VD_TEXT_CACHE];
    uint64_t text_clock;
    /* Denoiser conditions of the last prompt pair (cross-attention K/V). */
    char *cond_text[2];
    vd_cond *cond[2];
    vdit_stats stats;               /* of the last operation (vd_ctx_begin clears) */
};

/* ---- the decoder (decoder.c): the family's VAE, or TAEHV ---- */

/* Loads what vdit_model_params.decoder names (NULL / "vae": nothing to do;
 * "tae": the family's tae_names in the model's folder dir; else a file),
 * checks that it decodes this model's latents, prepares it for contexts of
 * precision prep. Call after the family is known (m->geom set). */
int vd_decoder_load(vdit_model *m, const char *decoder, const char *dir, vk_prec prep,
                    int n_threads);
void vd_decoder_free(vdit_model *m);
/* The family's vae_decode / dec_stream_* or TAEHV's, whichever the model
 * decodes with: same arguments, same frames ([-1, 1], 1 + 4 (T - 1)). */
int vd_decode(const vdit_model *m, vk_ctx *kc, const float *z, int tl, int lh, int lw, float *px);
void *vd_dec_stream_new(const vdit_model *m, vk_ctx *kc, int lh, int lw, vd_log *lg);
int vd_dec_stream_push(const vdit_model *m, void *s, const float *lat, float *frames, int *n_out);
void vd_dec_stream_free(const vdit_model *m, void **s);

/* ---- context helpers (ctx.c) ---- */

/* Starts a public call: clears the message and the cancel flag. */
void vd_ctx_begin(vdit_ctx *c);
/* Progress report; returns VDIT_ERR_CANCELLED if asked to stop. */
int vd_ctx_progress(vdit_ctx *c, int stage, int step, int total);
/* The DiT condition of `text` (slot 0: prompt, 1: negative prompt). The
 * returned cond belongs to the context. */
int vd_ctx_cond(vdit_ctx *c, int slot, const char *text, const vd_cond **out);

/* Standard normal noise, counter based (docs/sampling.md): element k of
 * stream `stream` for `seed` is a fixed function of (seed, stream, k). */
void vd_noise_fill(uint64_t seed, uint64_t stream, float *x, int64_t n);

/* ---- the denoising engine (generate.c) ---- */

/* Resolved parameters of one run. */
typedef struct vd_run_params {
    const char *prompt, *negative;
    int steps;
    float guidance, shift;
    vd_sampler_kind sampler;
    uint64_t seed;
    int cache;                      /* enum vdit_cache */
    float cache_threshold, cache_start, cache_end;
    int cache_max_skip;
    float guidance_end;             /* (0, 1] */
    /* VD_SAMPLER_FEWSTEP: the listed timesteps (steps of them) and whether
     * they are warped through the shifted table (sampler.h) */
    int list[1000];
    int warp;
} vd_run_params;

int vd_resolve_params(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp);
/* The first step an SDEdit of `strength` runs (< 0: 0, from noise; steps:
 * none): diffusers' steps - int(strength * steps), or, few-step, the first
 * listed timestep at or below 1000 * strength. */
int vd_first_step(const vd_run_params *rp, float strength);
/* The sampler of a run (few-step: on the run's list). NULL: no memory. */
vd_sampler *vd_run_sampler(const vd_run_params *rp, int64_t n);
/* 0 when s is an SDEdit / crossfade strength in [0, 1], else
 * VDIT_ERR_INVALID_ARG with the message in lg. */
int vd_check_strength(vd_log *lg, float s);

/* A clip in the VAE's layout: [3, T, H, W] floats in [-1, 1]. */
typedef struct vd_clip {
    int t, h, w;
    float *px;
} vd_clip;

/* Frames fixed during generation: known[i] != 0 marks pixel frame i of the
 * timeline as given. A latent frame is held fixed when all the pixel frames
 * it covers are given. */
typedef struct vd_job {
    int t, h, w;          /* timeline: T = 1 + 4k frames, H, W multiples of 16 */
    const float *px;      /* [3, T, H, W] pixels (given frames; others filled), or NULL */
    const uint8_t *known; /* [T] or NULL (nothing fixed) */
    float strength;       /* SDEdit strength of px (< 0: no SDEdit, start from noise) */
    int circular;         /* seamless loop: time treated as circular */
    uint64_t stream;      /* noise stream (window index) */
} vd_job;

/* Whether the model's mapped checkpoint files are unchanged on disk since
 * load (vd_ckpt_check): checked before anything reads the weights. */
int vd_model_check_files(const vdit_model *m, vd_log *lg);

/* The denoising loop on its own (vd_run_job's core; conformance runs it
 * with its own parts): from noise (or SDEdit from lat0 at `strength` in
 * [0, 1)), steps first .. rp->steps - 1 of the sampler, guidance when
 * uncond, fixed latent frames held from lat0 (re-noised to each step's
 * sigma, or clean; given_t0: their tokens at timestep 0), the time axis
 * circular for a loop. x [z, lt, lh, lw] receives the result. ctx (may be
 * NULL) gets progress and cancellation; tap (may be NULL) sees, at every
 * step i, "latents" (the denoiser's input), "noise_pred_cond",
 * "noise_pred_uncond", "noise_pred_guided", "step_out" (the sampler's
 * output before given frames are put back) and, with per-token timesteps,
 * "t_tokens". VDIT_ERR_NOMEM has no message. */
typedef struct vd_denoise_args {
    const vd_family *fam;
    vd_run *run;
    vd_geom g;
    const vd_cond *cond, *uncond;
    const vd_run_params *rp;
    int first;
    float strength;
    int64_t lt, lh, lw;
    float *x;
    const float *lat0, *noise;
    const uint8_t *fixed;
    int clean_context, given_t0, circular;
    vdit_ctx *ctx;
    void (*tap)(void *user, int step, const char *what, const float *data, int64_t n);
    void *tap_user;
    int64_t forwards, forwards_total; /* out: DiT forwards computed / asked */
    uint64_t stream; /* noise stream of the run: the few-step sampler's fresh noise
                        at step i is stream | (i + 1) << 32 of rp->seed */
} vd_denoise_args;
int vd_denoise(vd_denoise_args *a);

/* Runs a job; *out receives the decoded timeline [3, T', H, W] (vd_free).
 * For circular jobs T' = 4 * latent frames, else T. */
int vd_run_job(vdit_ctx *c, const vd_run_params *rp, const vd_job *job, float **out, int *t_out);

/* Replaces the loop v[f0 .. f0 + 4p - 1] by a VAE round trip in which its
 * first frame follows its last: encoded after its last frame and `turns`
 * turns of itself; hist 0: all of that decoded as it comes, the last turn
 * kept; hist > 0: the last turn's latent frames decoded after hist latent
 * frames of their own cycle (the periodic steady state). h, w: the padded
 * size, multiples of 16. */
int vd_loop_decode(vdit_ctx *c, vdit_video *v, int f0, int p, int turns, int hist,
                            int h, int w);

/* One frame of packed pixels (enum vdit_pixel_format fmt, sw x sh, rows
 * stride bytes apart) into / out of timeline position tpos of px, as
 * vd_put_frame / vd_get_frame do for an 8-bit clip. */
void vd_put_pixels(const uint8_t *src, ptrdiff_t stride, int fmt, int sw, int sh, float *px,
                   int t, int h, int w, int tpos);
void vd_get_pixels(const float *px, int t, int h, int w, int tpos, uint8_t *dst,
                   ptrdiff_t stride, int fmt, int dw, int dh);
/* Frame vf of v (clamped to the clip) into timeline position tpos of px
 * [3, T, H, W] in [-1, 1], centred, edges replicated (H, W >= v's size). */
void vd_put_frame(const vdit_video *v, int vf, float *px, int t, int h, int w, int tpos);
/* Timeline position tpos of px into frame vf of v, centre-cropped, rounded. */
void vd_get_frame(const float *px, int t, int h, int w, int tpos, vdit_video *v, int vf);
/* x rounded up to the model's frame-side alignment (geom.align). */
int vd_align(const vdit_model *m, int x);
int vd_align_frames(int n);

/* vdit_stream_open / send / receive without starting a new call on the
 * context (the cancel flag and message are kept): for operations built on
 * streams. */
int vd_stream_open(vdit_ctx *c, const vdit_stream_params *p, int width, int height,
                   vdit_stream **out);
int vd_stream_send(vdit_stream *s, const vdit_frame *in, unsigned flags);
int vd_stream_receive(vdit_stream *s, vdit_frame *out);

#endif
