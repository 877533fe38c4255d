/* Model families: what the engine needs from a model and nothing else.
 *
 * The engine (engine.c) and the operations (ops.c) see a model only through
 * this interface: where its files are, its defaults, its latent geometry,
 * and the five things it does (encode text, prepare a condition, run the
 * denoiser, VAE-encode, VAE-decode). A family's code lives in its own folder
 * (wan/: Wan2.1 T2V and Wan2.2 TI2V-5B). Adding a family means a new folder,
 * one entry in vd_families[] (family.c), and nothing in the adapters, the
 * public API or the engine.
 *
 * Latent geometry: a timeline of T = 1 + t_factor * k pixel frames maps to
 * 1 + k latent frames of z_dim channels, s_factor times smaller in space;
 * the denoiser takes latents whose sides are multiples of `patch` latent
 * pixels, so frames are padded to multiples of `align` = s_factor * patch
 * pixels. */
#ifndef VDIT_FAMILY_H
#define VDIT_FAMILY_H

#include "vdit/vdit.h"
#include "../common.h"
#include "../kernels/kernels.h"

typedef struct vdit_model vdit_model;
typedef struct vdit_ctx vdit_ctx;

typedef struct vd_geom {
    int z_dim;    /* latent channels */
    int s_factor; /* pixels per latent pixel, each side */
    int t_factor; /* pixel frames per latent frame after the first */
    int align;    /* frame sides are padded to multiples of this (pixels) */
} vd_geom;

/* A family's prepared text condition and per-context denoiser state:
 * opaque to the engine. */
typedef struct vd_cond vd_cond;
typedef struct vd_run vd_run;
typedef struct vd_step_cache vd_step_cache;

/* Paths of a model's parts, as found on disk (model.c). */
typedef struct vd_files {
    char dit[4096], vae[4096], t5[4096], tok[4096];
    int64_t n_heads, text_len; /* from the folder's config files; 0: unknown */
    const vdit_lora *loras;    /* merged into the DiT at load (the caller's array) */
    int n_loras;
} vd_files;

typedef struct vd_family vd_family;

/* One denoiser call over nb guidance branches (1 or 2) of the same latent x
 * [z, f, h, w] (latent units). t_tok: one timestep per token, or NULL (all
 * t). The step cache (may be NULL) may reuse the last residuals when
 * may_skip; *computed says whether the network ran. */
typedef struct vd_forward_args {
    const float *x;
    int64_t f, h, w;
    float t;
    const float *t_tok;
    int nb;
    const vd_cond *const *conds;
    float *const *outs;
    vd_step_cache *cache;
    int may_skip;
    int *computed;
} vd_forward_args;

struct vd_family {
    const char *name;  /* "wan2.1", "wan2.2-ti2v" (vdit info, logs) */
    const char *title; /* one line for people */
    /* Defaults: width, height, n_frames, fps, steps, guidance, shift,
     * sampler, text_len, spatial_align (the rest is filled at load). */
    vdit_model_info defaults;
    const char *neg_prompt;
    /* Given latent frames (an image, an extension's context) enter the
     * denoiser clean with timestep 0 for their tokens, as the family was
     * trained (Wan2.2 TI2V); 0: they are re-noised to each step's level
     * (replacement, which any text-to-video model accepts). */
    int given_t0;
    /* File discovery: names of each part in a folder, NULL-terminated, most
     * specific first. A folder is the family's when its VAE is found under
     * one of its names. */
    const char *const *dit_names, *const *vae_names, *const *t5_names, *const *tok_names;
    /* TAEHV decoders of this family's latents (madebyollin/taehv), looked for
     * in the folder when the model is loaded with decoder "tae"; NULL: none. */
    const char *const *tae_names;

    /* ---- operations (the family's folder implements them) ---- */
    /* Loads the parts named in f into m (m->parts), prepared for contexts of
     * precision prep; checks that they fit together and are this family's
     * (VDIT_ERR_FORMAT naming the part otherwise). */
    int (*load)(vdit_model *m, const vd_files *f, vk_prec prep, int n_threads, int ck_flags);
    void (*free)(vdit_model *m);
    /* Which family the loaded parts are (a folder found under one family's
     * names may hold another's checkpoints): the family, or NULL. */
    const vd_family *(*identify)(const vdit_model *m);
    vd_geom (*geom)(const vdit_model *m);
    /* The files the model maps are unchanged on disk since load. */
    int (*check_files)(const vdit_model *m, vd_log *lg);
    /* Per-context state (c->run). */
    vd_run *(*run_new)(const vdit_model *m, vk_ctx *kc);
    void (*run_free)(vd_run **r);
    /* Prompt -> token ids (at most max, *n_all before truncation) ->
     * embedding [n, dim] (vd_malloc'd). */
    int (*encode_text)(vdit_ctx *c, const char *text, float **emb, int64_t *n, int *n_all);
    int (*cond_new)(vd_run *r, const float *emb, int64_t n, vd_cond **out);
    void (*cond_free)(vd_cond **cd);
    /* mode: enum vdit_cache (not OFF); NULL: out of memory */
    vd_step_cache *(*cache_new)(int mode, float threshold, int max_skip);
    void (*cache_free)(vd_step_cache **sc);
    int (*forward)(vd_run *r, const vd_forward_args *a);
    /* Pixels [3, T, H, W] in [-1, 1] <-> normalised latents [z, T', H', W']. */
    int (*vae_encode)(const vdit_model *m, vk_ctx *kc, const float *px, int t, int h, int w,
                      float *lat);
    int (*vae_decode)(const vdit_model *m, vk_ctx *kc, const float *z, int tl, int lh, int lw,
                      float *px);
    /* Frame-at-a-time VAE streams (memory independent of length): the
     * encoder emits 0 or 1 latent frames per pixel frame, the decoder 1 or
     * t_factor pixel frames per latent frame. */
    void *(*enc_stream_new)(const vdit_model *m, vk_ctx *kc, int h, int w, vd_log *lg);
    void *(*dec_stream_new)(const vdit_model *m, vk_ctx *kc, int lh, int lw, vd_log *lg);
    int (*enc_stream_push)(void *s, const float *frame, float *lat, int *n_out);
    int (*dec_stream_push)(void *s, const float *lat, float *frames, int *n_out);
    void (*stream_free)(void **s);
};

/* Every family vdit knows, NULL-terminated, in the order folders are tried. */
extern const vd_family *const vd_families[];

/* Wan2.2's image-to-video output size (best_output_size in the reference):
 * the largest (ow, oh), multiples of `align`, with ow * oh <= area and the
 * aspect of iw x ih as closely as the reference picks it. 0, or
 * VDIT_ERR_INVALID_ARG when none fits. */
int vd_best_output_size(int iw, int ih, int align, int64_t area, int *ow, int *oh);

/* How an image of iw x ih becomes the first frame of an ow x oh clip (Wan2.2
 * TI2V): resized to rw x rh = (round(iw s), round(ih s)) with s = max(ow / iw,
 * oh / ih) (round half to even, as Python), then cropped at (x0, y0) =
 * ((rw - ow) / 2, (rh - oh) / 2). */
void vd_image_fit(int iw, int ih, int ow, int oh, int *rw, int *rh, int *x0, int *y0);

#endif
