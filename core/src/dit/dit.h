/*
 * Wan diffusion transformer (WanModel): Wan2.1 t2v and i2v, and Wan2.2
 * TI2V-5B (model_type "ti2v": in_dim = out_dim = 48, no image branch, one
 * timestep per token; see vd_dit_forward_tok).
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
 *
 * Threads: a vd_dit is read-only once loaded and may be shared; a vd_dit_run
 * (and the conds made from it) is used by one thread at a time.
 */
#ifndef VDIT_DIT_H
#define VDIT_DIT_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

typedef struct vd_dit_config {
    int64_t dim, ffn_dim, freq_dim, text_dim, in_dim, out_dim;
    int64_t n_heads, n_layers, text_len;
    int64_t patch[3];   /* (1, 2, 2) */
    int64_t head_dim;   /* dim / n_heads */
    int64_t clip_dim;   /* i2v: CLIP feature width (1280), else 0 */
    int i2v;            /* image-to-video variant (img_emb present) */
    int qk_norm;        /* q/k RMSNorm present (all released models) */
    int cross_attn_norm; /* norm3 (affine LayerNorm before cross-attention) present */
    float eps;          /* 1e-6 */
} vd_dit_config;

typedef struct vd_dit vd_dit;
typedef struct vd_dit_run vd_dit_run;
typedef struct vd_dit_cond vd_dit_cond;

/* Renames diffusers / prefixed key layouts in `ck` onto the original names
 * (in place). Safe to call on an already-original checkpoint. */
int vd_dit_canonicalize(vd_ckpt *ck, vd_log *lg);

/* Drops the module wrappers training code saves into names
 * (_fsdp_wrapped_module., _checkpoint_wrapped_module., _orig_mod.) wherever
 * they stand (vd_dit_canonicalize does it first). *dropped (may be NULL): 1
 * if there were any. */
int vd_dit_drop_wrappers(vd_ckpt *ck, vd_log *lg, int *dropped);

/* `ck` must outlive the model (weights are used in place, in their stored
 * type). The head count is not visible in any tensor shape: vd_dit_load
 * assumes head_dim 128 (every released model: Wan2.1 1.3B = 12 x 128,
 * 14B = 40 x 128, Wan2.2 TI2V-5B = 24 x 128); vd_dit_load_ex takes it
 * (n_heads <= 0: the same default). Layouts (after vd_dit_canonicalize):
 * the official release (single or sharded + index), the repackaged single
 * files ("model.diffusion_model." prefix), diffusers; F32 / F16 / BF16 /
 * F8_E4M3 (with or without scales). A Wan2.2 TI2V checkpoint loads as a
 * text-to-video model with in_dim = out_dim = 48 (cfg->i2v = 0): it is the
 * caller that hands it per-token timesteps (vd_dit_forward_tok).
 * Errors (VDIT_ERR_MISSING / VDIT_ERR_FORMAT / VDIT_ERR_NOMEM / VDIT_ERR_INVALID_ARG)
 * name the checkpoint file and the tensor. */
int vd_dit_load(const vd_ckpt *ck, int64_t text_len, vd_log *lg, vd_dit **out);
int vd_dit_load_ex(const vd_ckpt *ck, int64_t text_len, int64_t n_heads, vd_log *lg,
                   vd_dit **out);
/* Prepares the blocks' weights for contexts of precision prec (bf16: a bf16
 * copy of fp32/fp16 weights, vk_linear_prepare), on n_threads threads.
 * While the model is private (loading). Returns 0 or VDIT_ERR_NOMEM. */
int vd_dit_prepare(vd_dit *d, vk_prec prec, int n_threads);
/* Puts the blocks' weights on a CUDA device (vc: a vkc_ctx of
 * kernels/cuda/vkc.h, which must outlive the model) in precision prec (bf16
 * unless VK_PREC_F32), for contexts with that device (vk_ctx.cuda) to run
 * the blocks and the condition's K/V there. release(user, data), when given,
 * gets each stored weight right after its upload (see vd_dit_prepare_ex).
 * While the model is private (loading). 0, or VDIT_ERR_* said in lg
 * (VDIT_ERR_UNSUPPORTED in a build without CUDA). */
int vd_dit_upload(vd_dit *d, void *vc, vk_prec prec, void (*release)(void *user, const void *data),
                  void *user, vd_log *lg);
/* The same; release(user, data) is called with each stored weight a copy was
 * made of, right after it (the loader hands back the pages of a mapped
 * checkpoint: vd_ckpt_release, re-read from the file if an fp32 context
 * reads them later), so a load does not hold both at once. */
int vd_dit_prepare_ex(vd_dit *d, vk_prec prec, int n_threads,
                      void (*release)(void *user, const void *data), void *user);
void vd_dit_free(vd_dit **d);

/* Merges the n LoRA files of `loras` (lora.c; docs/lora.md) into the
 * weights of `ck`, a DiT checkpoint already canonicalized and not yet
 * loaded: every tensor a LoRA changes is replaced in ck by an owned merged
 * copy (F32 stays F32, F16/BF16 are rounded back, fp8 becomes BF16), on
 * n_threads threads (the result does not depend on it). Every file is read
 * and checked before anything changes. Errors: VDIT_ERR_FORMAT (no key
 * names a tensor of this DiT, shapes of another model, a pair missing a
 * half, several models' LoRAs under different prefixes), the reader's
 * errors for a missing or malformed file, VDIT_ERR_INVALID_ARG,
 * VDIT_ERR_NOMEM; each message names the file. Memory running out during
 * the merge itself may leave some weights merged: the caller drops ck. */
int vd_dit_merge_loras(vd_ckpt *ck, const vdit_lora *loras, int n, int n_threads, vd_log *lg);
/* The same with LoRAs already read into sets (the caller keeps them;
 * labels name them in messages): for the fuzzer. */
int vd_dit_merge_lora_sets(vd_ckpt *ck, vd_ckpt *const *sets, const char *const *labels,
                           const float *scales, int n, int n_threads, vd_log *lg);

/* Whether the set `c` is a LoRA file (1) and, if so, a line describing it
 * into out: the layout, the rank, the entries, the width of the DiT it was
 * made for when a self-attention pair shows it. For `vdit info`. */
int vd_lora_describe(const vd_ckpt *c, char *out, size_t outsz);

/* The original name of a diffusers DiT tensor name (1), or 0 when no rule
 * of the diffusers layout matches; and the other way round. */
int vd_dit_key_from_diffusers(const char *name, char *out, size_t outsz);
int vd_dit_key_to_diffusers(const char *name, char *out, size_t outsz);
const vd_dit_config *vd_dit_get_config(const vd_dit *d);

/* kc must outlive the run. Activation buffers grow on the first forward
 * pass of a given token count and are then reused. NULL on allocation
 * failure. */
vd_dit_run *vd_dit_run_new(const vd_dit *d, vk_ctx *kc);
void vd_dit_run_free(vd_dit_run **r);

/* Debug taps: when set, fn receives every intermediate the conformance
 * vectors store, named as there ("inter/e", "inter/block3_out", ...), in
 * fp32 with batch 1 squeezed. Costs nothing when unset. */
typedef void (*vd_dit_tap_fn)(void *user, const char *name, const float *data, size_t n);
void vd_dit_run_set_tap(vd_dit_run *r, vd_dit_tap_fn fn, void *user);

/* Optional time profile: when set, seconds spent in each kind of work are
 * added to acc[VD_DIT_PROF_*] on every forward pass (costs a clock read per
 * operation). */
enum {
    VD_DIT_PROF_PROJ = 0, /* q/k/v/o and cross q/o projections */
    VD_DIT_PROF_ATTN,     /* self-attention */
    VD_DIT_PROF_XATTN,    /* cross-attention */
    VD_DIT_PROF_FFN,      /* feed-forward matmuls */
    VD_DIT_PROF_ELEM,     /* norms, modulation, RoPE, residual adds */
    VD_DIT_PROF_OTHER,    /* time embedding, patches, head */
    VD_DIT_PROF_COUNT
};
void vd_dit_run_set_profile(vd_dit_run *r, double *acc);

/* Bytes of activation memory a forward pass over n_tok tokens uses (for
 * planning and the benchmark), and bytes a cond holds. */
size_t vd_dit_run_bytes(const vd_dit *d, int64_t n_tok);
size_t vd_dit_cond_bytes(const vd_dit *d, int64_t n_clip);

/* context: [n_ctx, text_dim] (n_ctx <= text_len; zero-padded to text_len as
 * the reference does). clip_fea: [n_clip, 1280] for i2v, else NULL. */
int vd_dit_cond_new(vd_dit_run *r, const float *context, int64_t n_ctx, const float *clip_fea,
                    int64_t n_clip, vd_dit_cond **out);
void vd_dit_cond_free(vd_dit_cond **c);

/* One forward pass. t2v: x [in_dim, F, H, W], y NULL. i2v: x is the noisy
 * latent [out_dim, F, H, W] and y [in_dim - out_dim, F, H, W] (4 mask + 16
 * image-latent channels for Wan2.1) is concatenated after it on channels.
 * t: timestep as the sampler gives it; out: [out_dim, F, H, W]. F, H, W
 * multiples of the patch. The cond must come from a run of the same model;
 * one cond serves any number of calls and grids. Returns 0 or VDIT_ERR_*. */
int vd_dit_forward(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                   int64_t w, float t, const vd_dit_cond *cond, float *out);

/* vd_dit_forward with one timestep per token (Wan2.2, model_type "ti2v":
 * WanModel.forward with t of shape [1, seq_len]). t_tok: L = (F/pt)(H/ph)
 * (W/pw) values, one per token in (f, h, w) raster order over the patch grid
 * (the first (H/ph)(W/pw) tokens are latent frame 0: 0 there and t elsewhere
 * in image-to-video); NULL: every token gets t (t is ignored otherwise).
 * Each token's time embedding e, projection e0, block and head modulation
 * come from its own timestep. The time MLPs run once per distinct value and
 * the modulation is applied per run of equal values (one kernel call per
 * run), so frame-wise constant timesteps cost what one timestep costs; when
 * all values are equal the pass is the scalar one, bit for bit. Memory: 12
 * x dim floats per distinct value. Non-finite values: VDIT_ERR_INVALID_ARG.
 * Debug taps (per-token path): inter/t_sinusoid [L, freq_dim], inter/e
 * [L, dim], inter/e0 [L, 6, dim] (the scalar path taps one row of each). */
int vd_dit_forward_tok(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                       int64_t w, float t, const float *t_tok, const vd_dit_cond *cond,
                       float *out);

/* Step cache: the residual the blocks add to the patch tokens (output
 * tokens minus input tokens, before the head), kept per guidance branch at
 * the last step computed, and reused instead of running the blocks while an
 * estimate of how much the output would have changed since stays under a
 * threshold (docs/sampling.md, Step caching).
 *   VD_CACHE_EASY  EasyCache: the output's relative change over the input's
 *                  (the transformation rate k), measured between the last
 *                  two steps computed; each step adds k times the input's
 *                  relative change (L1) to the estimate.
 *   VD_CACHE_TEA   TeaCache-style: each step adds the relative L1 change of
 *                  the first block's timestep-modulated input (no per-model
 *                  rescaling polynomial).
 * Skip decisions are made on the first branch and apply to all. A cache
 * serves one denoising loop (one grid, one set of branches); reset it for
 * another. */
enum { VD_CACHE_OFF = 0, VD_CACHE_EASY = 1, VD_CACHE_TEA = 2 };
typedef struct vd_dit_cache vd_dit_cache;
/* max_skip: consecutive steps reused at most (>= 1). NULL: out of memory. */
vd_dit_cache *vd_dit_cache_new(int mode, float threshold, int max_skip);
void vd_dit_cache_reset(vd_dit_cache *c);
void vd_dit_cache_free(vd_dit_cache **c);

/* One forward pass of nb branches (1 or 2: the conditional and
 * unconditional passes of guidance) over the same x and t, each under its
 * cond, into outs[b]. The branches share every matmul (their rows stacked,
 * the weights read once) when the activations of nb * tokens fit in
 * `max_bytes` (0: no limit), else run one after the other; the result is
 * the same either way. cache (may be NULL) with may_skip set lets the step
 * reuse the cached residuals; *computed (may be NULL) says whether the
 * blocks ran. */
int vd_dit_forward_batch(vd_dit_run *r, const float *x, const float *y, int64_t f, int64_t h,
                         int64_t w, float t, int nb, const vd_dit_cond *const *conds,
                         float *const *outs, size_t max_bytes, vd_dit_cache *cache,
                         int may_skip, int *computed);
/* vd_dit_forward_batch with per-token timesteps t_tok (as vd_dit_forward_tok,
 * the same for every branch; NULL: every token gets t). The step cache's TEA
 * metric measures the first block's input modulated per token. */
int vd_dit_forward_batch_tok(vd_dit_run *r, const float *x, const float *y, int64_t f,
                             int64_t h, int64_t w, float t, const float *t_tok, int nb,
                             const vd_dit_cond *const *conds, float *const *outs,
                             size_t max_bytes, vd_dit_cache *cache, int may_skip,
                             int *computed);

/* Patch (un)packing, exposed for tests. Latent x: [c, f, h, w]; tokens in
 * (f, h, w) raster order over the patch grid. chan_last = 0: each token row is
 * [c, pt, ph, pw] (the Conv3d weight order, patchify); chan_last = 1: it is
 * [pt, ph, pw, c] (the head's output order, unpatchify). f, h, w must be
 * multiples of the patch. */
void vd_dit_patchify(const float *x, int64_t c, int64_t f, int64_t h, int64_t w,
                     const int64_t patch[3], int chan_last, float *tok);
void vd_dit_unpatchify(const float *tok, int64_t c, int64_t f, int64_t h, int64_t w,
                       const int64_t patch[3], int chan_last, float *x);

/* Multiply-adds x2 of one forward pass (without the cond), for benchmarks. */
double vd_dit_flops(const vd_dit_config *cfg, int64_t n_tok);

#endif
