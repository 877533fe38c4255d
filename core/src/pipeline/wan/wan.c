/* The Wan families (wan.h): defaults, file names, and the operations the
 * engine calls, on the umT5 encoder, the WanModel DiT and the Wan VAEs. */
#include <stdio.h>
#include <string.h>

#include "../pipeline.h"
#include "wan.h"

/* wan/configs/shared_config.py: the negative prompt of every Wan model. */
static const char wan_neg_prompt[] =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
    "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

/* The release's names, then ComfyUI's repackaged ones. */
static const char *const dit_names[] = { "diffusion_pytorch_model.safetensors.index.json",
                                         "diffusion_pytorch_model.safetensors", NULL };
static const char *const t5_names[] = { "models_t5_umt5-xxl-enc.safetensors",
                                        "models_t5_umt5-xxl-enc-bf16.safetensors",
                                        "models_t5_umt5-xxl-enc-bf16.pth",
                                        "umt5_xxl_fp16.safetensors",
                                        "umt5_xxl_fp8_e4m3fn_scaled.safetensors", NULL };
static const char *const tok_names[] = { "tokenizer/spiece.model",       "tokenizer/tokenizer.json",
                                         "google/umt5-xxl/spiece.model", "google/umt5-xxl/tokenizer.json",
                                         "spiece.model",                 "tokenizer.json", NULL };
static const char *const vae21_names[] = { "Wan2.1_VAE.safetensors", "Wan2.1_VAE.pth",
                                           "wan_2.1_vae.safetensors", NULL };
static const char *const vae22_names[] = { "Wan2.2_VAE.safetensors", "Wan2.2_VAE.pth",
                                           "wan2.2_vae.safetensors", NULL };
/* madebyollin/taehv's published names (repository root: .pth, safetensors/:
 * .safetensors). */
static const char *const tae21_names[] = { "taew2_1.safetensors", "taew2_1.pth", NULL };
static const char *const tae22_names[] = { "taew2_2.safetensors", "taew2_2.pth", NULL };

vd_wan_parts *vd_wan_parts_of(const vdit_model *m)
{
    return m && (m->fam == &vd_family_wan21 || m->fam == &vd_family_wan22_ti2v) ? m->parts : NULL;
}

vd_dit_run *vd_wan_dit_run(vd_run *r)
{
    return (vd_dit_run *)r;
}

const vd_dit_cond *vd_wan_dit_cond(const vd_cond *c)
{
    return (const vd_dit_cond *)c;
}

static vd_wan_parts *P(const vdit_model *m)
{
    return m->parts;
}

/* Opens one part's checkpoint (vd_ckpt_open recognises the format) with the
 * threads its conversions at load may use. */
static int open_part(const char *path, vd_log *lg, int n_threads, int flags, vd_ckpt **out)
{
    int ret = vd_ckpt_open_ex(path, flags, lg, out);
    if (!ret)
        vd_ckpt_set_threads(*out, n_threads);
    return ret;
}

/* vd_vae_detach's and vd_dit_prepare_ex's release: the part no longer reads
 * this stored tensor (or not until an fp32 context of a bf16-prepared DiT). */
static void release_tensor(void *ck, const void *data)
{
    vd_ckpt_release(ck, data);
}

/* The VAE's weights are held once, prepared for the kernels, not also as the
 * mapped checkpoint: both halves are detached from it while the model loads
 * (each tensor's pages go back as soon as its layer is prepared) and the
 * checkpoint is freed. Prepared for frames of the model's default size
 * (oneDNN's layout for the weights can depend on it; other sizes ask for the
 * same layout). A model on a CUDA device puts the VAE's nets there instead
 * (vd_vae_upload). After this the model is read-only: contexts share it
 * without locks. */
static int vae_detach(vdit_model *m, vk_prec prec, int n_threads)
{
    vd_wan_parts *w = P(m);
    vk_ctx *kc = vk_ctx_new_ex(n_threads, -1, prec, &m->log);
    if (!kc)
        return VDIT_ERR_NOMEM;
    /* on the model's device: the nets go there, the 1x1 ends are detached for
     * the host as below */
    int ret = m->cuda ? vd_vae_upload(w->vae, m->cuda, m->cuda_bf16 ? VK_PREC_BF16 : VK_PREC_F32,
                                      kc, release_tensor, w->ck_vae, &m->log)
                      : vd_vae_detach_part(w->vae, kc, VD_VAE_ENCODER | VD_VAE_DECODER,
                                           m->info.height, m->info.width, release_tensor,
                                           w->ck_vae);
    vk_ctx_free(&kc);
    if (!ret)
        vd_ckpt_free(&w->ck_vae);
    return ret;
}

static const vd_family *identify(const vdit_model *m)
{
    const vd_vae_config *vc = vd_vae_get_config(P(m)->vae);
    if (vc->z_dim == 48 && vc->s_factor == 16)
        return &vd_family_wan22_ti2v;
    if (vc->z_dim == 16 && vc->s_factor == 8)
        return &vd_family_wan21;
    return NULL;
}

static void wan_free(vdit_model *m)
{
    vd_wan_parts *w = P(m);
    if (!w)
        return;
    vd_dit_free(&w->dit);
    vd_vae_free(&w->vae);
    vd_t5_free(&w->t5);
    vd_tok_free(&w->tok);
    vd_ckpt_free(&w->ck_dit);
    vd_ckpt_free(&w->ck_vae);
    vd_ckpt_free(&w->ck_t5);
    free(w);
    m->parts = NULL;
}

static int wan_load(vdit_model *m, const vd_files *f, vk_prec prep, int n_threads, int ck_flags)
{
    vd_wan_parts *w = calloc(1, sizeof(*w));
    if (!w)
        return vd_err(&m->log, VDIT_ERR_NOMEM, "out of memory");
    m->parts = w;
    int64_t text_len = f->text_len > 0 ? f->text_len : m->fam->defaults.text_len;
    int ret;
    if ((ret = open_part(f->dit, &m->log, n_threads, ck_flags, &w->ck_dit)) ||
        (ret = vd_dit_canonicalize(w->ck_dit, &m->log)) ||
        (ret = vd_dit_merge_loras(w->ck_dit, f->loras, f->n_loras, n_threads, &m->log)) ||
        (ret = vd_dit_load_ex(w->ck_dit, text_len, f->n_heads, &m->log, &w->dit)))
        return ret;
    /* the DiT's blocks on the model's device, or its weights in the CPU
     * matmul's layout, made once here: bf16 contexts read a bf16 copy, fp32
     * ones a packed copy of fp32 weights */
    if (m->cuda) {
        if ((ret = vd_dit_upload(w->dit, m->cuda, m->cuda_bf16 ? VK_PREC_BF16 : VK_PREC_F32,
                                 release_tensor, w->ck_dit, &m->log)))
            return ret;
    } else if ((ret = vd_dit_prepare_ex(w->dit, prep, n_threads, release_tensor, w->ck_dit)))
        return vd_err(&m->log, ret, "%s: out of memory for the %s copy of the weights%s", f->dit,
                      prep == VK_PREC_BF16 ? "bf16" : "packed fp32",
                      prep == VK_PREC_BF16 ? " (load with precision fp32 to do without it)" : "");
    if ((ret = open_part(f->vae, &m->log, n_threads, ck_flags, &w->ck_vae)) ||
        (ret = vd_vae_canonicalize(w->ck_vae, &m->log)) ||
        (ret = vd_vae_load(w->ck_vae, &m->log, &w->vae)) ||
        (ret = vae_detach(m, prep, n_threads)))
        return ret;
    if ((ret = open_part(f->t5, &m->log, n_threads, ck_flags, &w->ck_t5)) ||
        (ret = vd_t5_canonicalize(w->ck_t5, &m->log)) ||
        (ret = vd_t5_load(w->ck_t5, &m->log, &w->t5)))
        return ret;
    /* on the model's device: the layers go there, the embedding stays */
    if (m->cuda && (ret = vd_t5_upload(w->t5, m->cuda, m->cuda_bf16 ? VK_PREC_BF16 : VK_PREC_F32,
                                       release_tensor, w->ck_t5, &m->log)))
        return ret;
    if ((ret = vd_tok_load(f->tok, &m->log, &w->tok)))
        return ret;
    const vd_dit_config *dc = vd_dit_get_config(w->dit);
    const vd_vae_config *vc = vd_vae_get_config(w->vae);
    const vd_t5_config *tc = vd_t5_get_config(w->t5);
    if (dc->i2v)
        return vd_err(&m->log, VDIT_ERR_UNSUPPORTED,
                      "%s: Wan2.1 image-to-video (i2v, with a CLIP image branch) DiT checkpoints "
                      "are not supported; use a text-to-video model (image-to-video runs on any "
                      "of them, and natively on Wan2.2 TI2V-5B)", f->dit);
    if (dc->in_dim != vc->z_dim || dc->out_dim != vc->z_dim || dc->text_dim != tc->dim)
        return vd_err(&m->log, VDIT_ERR_FORMAT,
                      "parts do not fit together: DiT %s takes %lld latent channels (out %lld) "
                      "and text of width %lld, VAE %s has %d latent channels, text encoder %s "
                      "width %lld",
                      f->dit, (long long)dc->in_dim, (long long)dc->out_dim,
                      (long long)dc->text_dim, f->vae, vc->z_dim, f->t5, (long long)tc->dim);
    if (vd_tok_vocab_size(w->tok) > tc->vocab)
        return vd_err(&m->log, VDIT_ERR_FORMAT,
                      "%s: tokenizer has %d pieces but the text encoder only %lld embeddings",
                      f->tok, vd_tok_vocab_size(w->tok), (long long)tc->vocab);
    if (!identify(m))
        return vd_err(&m->log, VDIT_ERR_UNSUPPORTED,
                      "%s: a VAE of %d latent channels at 1/%d size is neither Wan2.1's (16, 1/8) "
                      "nor Wan2.2's (48, 1/16)", f->vae, vc->z_dim, vc->s_factor);
    m->info.text_len = (int)dc->text_len;
    m->info.dim = dc->dim;
    m->info.n_layers = dc->n_layers;
    m->info.n_heads = dc->n_heads;
    return 0;
}

static vd_geom geom(const vdit_model *m)
{
    const vd_vae_config *vc = vd_vae_get_config(P(m)->vae);
    const vd_dit_config *dc = vd_dit_get_config(P(m)->dit);
    vd_geom g = { vc->z_dim, vc->s_factor, vc->t_factor,
                  vc->s_factor * (int)VD_MAX(dc->patch[1], dc->patch[2]) };
    return g;
}

static int check_files(const vdit_model *m, vd_log *lg)
{
    int ret = vd_ckpt_check(P(m)->ck_dit, lg);
    return ret ? ret : vd_ckpt_check(P(m)->ck_t5, lg);
}

static vd_run *run_new(const vdit_model *m, vk_ctx *kc)
{
    return (vd_run *)vd_dit_run_new(P(m)->dit, kc);
}

static void run_free(vd_run **r)
{
    vd_dit_run_free((vd_dit_run **)r);
}

/* umT5 embedding of a prompt: the ids Wan's tokenizer gives
 * (vd_tok_encode_padded: cleaned, EOS appended, at most text_len tokens with
 * the EOS kept last), the real tokens only encoded (the reference masks the
 * padding keys, so the real rows do not depend on it) and those rows kept;
 * the DiT pads the context with zeros to text_len. */
static int encode_text(vdit_ctx *c, const char *text, float **emb, int64_t *n_out, int *n_all)
{
    vdit_model *m = c->model;
    vd_wan_parts *w = P(m);
    int max = m->info.text_len, ret = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)max);
    float *out = NULL;
    if (!ids)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    int n = vd_tok_encode_padded_n(w->tok, text, max, ids, n_all);
    if (n < 0) {
        ret = vd_err(&c->log, n, "cannot tokenise the prompt: %s", vdit_strerror(n));
        goto done;
    }
    if ((ret = check_files(m, &c->log)))
        goto done;
    const vd_t5_config *tc = vd_t5_get_config(w->t5);
    if (!(out = vd_malloc(sizeof(float) * (size_t)n * (size_t)tc->dim))) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((ret = vd_t5_encode(w->t5, c->kc, ids, n, n, out)))
        goto done;
    *emb = out;
    *n_out = n;
    out = NULL;
done:
    free(ids);
    vd_free(out);
    return ret;
}

static int cond_new(vd_run *r, const float *emb, int64_t n, vd_cond **out)
{
    return vd_dit_cond_new((vd_dit_run *)r, emb, n, NULL, 0, (vd_dit_cond **)out);
}

static void cond_free(vd_cond **cd)
{
    vd_dit_cond_free((vd_dit_cond **)cd);
}

static vd_step_cache *cache_new(int mode, float threshold, int max_skip)
{
    int m = mode == VDIT_CACHE_EASY ? VD_CACHE_EASY : mode == VDIT_CACHE_TEA ? VD_CACHE_TEA : -1;
    return m < 0 ? NULL : (vd_step_cache *)vd_dit_cache_new(m, threshold, max_skip);
}

static void cache_free(vd_step_cache **sc)
{
    vd_dit_cache_free((vd_dit_cache **)sc);
}

/* Guidance's branches run as one batched pass when its activations fit in
 * this (else one after the other, with the same result). */
#define VD_GUIDANCE_BATCH_BYTES ((size_t)3 << 30)

static int forward(vd_run *r, const vd_forward_args *a)
{
    return vd_dit_forward_batch_tok((vd_dit_run *)r, a->x, NULL, a->f, a->h, a->w, a->t,
                                    a->t_tok, a->nb, (const vd_dit_cond *const *)a->conds,
                                    a->outs, VD_GUIDANCE_BATCH_BYTES, (vd_dit_cache *)a->cache,
                                    a->may_skip, a->computed);
}

static int vae_encode(const vdit_model *m, vk_ctx *kc, const float *px, int t, int h, int w,
                      float *lat)
{
    return vd_vae_encode(P(m)->vae, kc, px, t, h, w, lat, NULL);
}

static int vae_decode(const vdit_model *m, vk_ctx *kc, const float *z, int tl, int lh, int lw,
                      float *px)
{
    return vd_vae_decode(P(m)->vae, kc, z, tl, lh, lw, px);
}

static void *enc_stream_new(const vdit_model *m, vk_ctx *kc, int h, int w, vd_log *lg)
{
    vd_vae_stream *s = NULL;
    if (vd_vae_enc_stream_new(P(m)->vae, kc, h, w, 0, &s))
        vd_err(lg, VDIT_ERR_NOMEM, "out of memory (VAE encoder stream, %dx%d)", w, h);
    return s;
}

static void *dec_stream_new(const vdit_model *m, vk_ctx *kc, int lh, int lw, vd_log *lg)
{
    vd_vae_stream *s = NULL;
    if (vd_vae_dec_stream_new(P(m)->vae, kc, lh, lw, 0, &s))
        vd_err(lg, VDIT_ERR_NOMEM, "out of memory (VAE decoder stream, latent %dx%d)", lw, lh);
    return s;
}

static int enc_stream_push(void *s, const float *frame, float *lat, int *n_out)
{
    return vd_vae_enc_stream_push(s, frame, lat, n_out);
}

static int dec_stream_push(void *s, const float *lat, float *frames, int *n_out)
{
    return vd_vae_dec_stream_push(s, lat, frames, n_out);
}

static void stream_free(void **s)
{
    vd_vae_stream_free((vd_vae_stream **)s);
}

#define WAN_OPS                                                                             \
    .neg_prompt = wan_neg_prompt, .dit_names = dit_names, .t5_names = t5_names,             \
    .tok_names = tok_names, .load = wan_load, .free = wan_free, .identify = identify,        \
    .geom = geom, .check_files = check_files, .run_new = run_new, .run_free = run_free,     \
    .encode_text = encode_text, .cond_new = cond_new, .cond_free = cond_free,               \
    .cache_new = cache_new, .cache_free = cache_free, .forward = forward,                   \
    .vae_encode = vae_encode, .vae_decode = vae_decode, .enc_stream_new = enc_stream_new,   \
    .dec_stream_new = dec_stream_new, .enc_stream_push = enc_stream_push,                   \
    .dec_stream_push = dec_stream_push, .stream_free = stream_free

/* wan/configs/wan_t2v_1_3B.py, wan_t2v_14B.py, shared_config.py */
const vd_family vd_family_wan21 = {
    .name = "wan2.1",
    .title = "Wan2.1 text-to-video (Wan2.1-VAE, 16 latent channels at 1/8 size)",
    .defaults = { .width = 832, .height = 480, .n_frames = 81, .fps = 16.0f, .steps = 50,
                  .guidance = 5.0f, .shift = 5.0f, .sampler = VDIT_SAMPLER_UNIPC,
                  .text_len = 512, .spatial_align = 16 },
    .given_t0 = 0,
    .vae_names = vae21_names,
    .tae_names = tae21_names,
    WAN_OPS,
};

/* wan/configs/wan_ti2v_5B.py: 1280x704, 121 frames at 24 fps; image to
 * video at up to the default's 704 * 1280 pixels in the image's aspect. */
const vd_family vd_family_wan22_ti2v = {
    .name = "wan2.2-ti2v",
    .title = "Wan2.2 TI2V text-and-image-to-video (Wan2.2-VAE, 48 latent channels at 1/16 size)",
    .defaults = { .width = 1280, .height = 704, .n_frames = 121, .fps = 24.0f, .steps = 50,
                  .guidance = 5.0f, .shift = 5.0f, .sampler = VDIT_SAMPLER_UNIPC,
                  .text_len = 512, .spatial_align = 32 },
    .given_t0 = 1,
    .vae_names = vae22_names,
    .tae_names = tae22_names,
    WAN_OPS,
};
