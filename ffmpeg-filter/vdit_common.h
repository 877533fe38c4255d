/*
 * vdit filters for FFmpeg: glue shared by vf_vdit.c and vsrc_vdit.c.
 * Part of vdit (MIT license); copied into libavfilter/ by
 * scripts/build-ffmpeg.sh and built when FFmpeg is configured with
 * --enable-libvdit (patches/ffmpeg-<version>/).
 *
 * Compiles against FFmpeg 5.1 (libavfilter 8) and 7.1 (libavfilter 10): the
 * only differences the filters meet are which header holds the filter-
 * definition macros (internal.h until 7.0, filters.h since), where the
 * link frame rate lives (AVFilterLink until 7.0, FilterLink since 7.1) and
 * how a frame says it is interlaced (AVFrame.interlaced_frame until 6.0,
 * AV_FRAME_FLAG_INTERLACED in AVFrame.flags since 6.1).
 */
#ifndef AVFILTER_VDIT_COMMON_H
#define AVFILTER_VDIT_COMMON_H

#include <vdit/vdit.h>

#include "libavutil/avstring.h"
#include "libavutil/common.h"
#include "libavutil/error.h"
#include "libavutil/log.h"
#include "libavutil/opt.h"
#include "libavutil/version.h"
#include "avfilter.h"
#include "version.h"

#if LIBAVFILTER_VERSION_INT >= AV_VERSION_INT(10, 4, 100)
#include "filters.h"
#define VDIT_LINK_FRAME_RATE(link) (ff_filter_link(link)->frame_rate)
#else
#include "internal.h"
#include "filters.h"
#define VDIT_LINK_FRAME_RATE(link) ((link)->frame_rate)
#endif
#include "video.h"

#ifdef AV_FRAME_FLAG_INTERLACED
#define VDIT_FRAME_INTERLACED(f) (!!((f)->flags & AV_FRAME_FLAG_INTERLACED))
#else
#define VDIT_FRAME_INTERLACED(f) ((f)->interlaced_frame)
#endif

#define VDIT_FLAGS (AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM)
#define VDIT_TFLAGS (VDIT_FLAGS | AV_OPT_FLAG_RUNTIME_PARAM)

/* Options both filters share; `type` is the private context struct. */
#define VDIT_COMMON_OPTIONS(type)                                                             \
    { "prompt", "text describing the wanted video",                                           \
      offsetof(type, prompt), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VDIT_TFLAGS },       \
    { "negative_prompt", "what to steer away from (default: the model's own)",                \
      offsetof(type, negative_prompt), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VDIT_FLAGS },\
    { "steps", "denoising steps (0: the model's default, 50 for Wan)",                        \
      offsetof(type, steps), AV_OPT_TYPE_INT, { .i64 = VDIT_DEFAULT_STEPS }, 0, 1000,         \
      VDIT_FLAGS },                                                                           \
    { "guidance", "classifier-free guidance scale (-1: the model's default, 1: off)",         \
      offsetof(type, guidance), AV_OPT_TYPE_FLOAT, { .dbl = VDIT_DEFAULT_GUIDANCE }, -1, 100, \
      VDIT_FLAGS },                                                                           \
    { "shift", "flow-matching schedule shift (-1: the model's default)",                      \
      offsetof(type, shift), AV_OPT_TYPE_FLOAT, { .dbl = VDIT_DEFAULT_SHIFT }, -1, 100,       \
      VDIT_FLAGS },                                                                           \
    { "seed", "noise seed", offsetof(type, seed), AV_OPT_TYPE_INT64,                          \
      { .i64 = VDIT_DEFAULT_SEED }, 0, INT64_MAX, VDIT_FLAGS },                               \
    { "sampler", "sampling method", offsetof(type, sampler), AV_OPT_TYPE_INT,                 \
      { .i64 = VDIT_DEFAULT_SAMPLER }, -1, VDIT_SAMPLER_COUNT - 1, VDIT_FLAGS, "sampler" },   \
        { "auto", "the model's default (UniPC for Wan)", 0, AV_OPT_TYPE_CONST,                \
          { .i64 = VDIT_DEFAULT_SAMPLER }, 0, 0, VDIT_FLAGS, "sampler" },                     \
        { "unipc", "UniPC", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_SAMPLER_UNIPC }, 0, 0,        \
          VDIT_FLAGS, "sampler" },                                                            \
        { "dpm++", "DPM++ 2M", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_SAMPLER_DPMPP }, 0, 0,     \
          VDIT_FLAGS, "sampler" },                                                            \
        { "dpmpp", "same as dpm++", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_SAMPLER_DPMPP }, 0, 0,\
          VDIT_FLAGS, "sampler" },                                                            \
        { "euler", "Euler", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_SAMPLER_EULER }, 0, 0,        \
          VDIT_FLAGS, "sampler" },                                                            \
        { "fewstep", "distilled models: the model's timesteps, re-noised", 0,                 \
          AV_OPT_TYPE_CONST, { .i64 = VDIT_SAMPLER_FEWSTEP }, 0, 0, VDIT_FLAGS, "sampler" },  \
    { "precision", "arithmetic of the products", offsetof(type, precision), AV_OPT_TYPE_INT,  \
      { .i64 = VDIT_DEFAULT_PRECISION }, VDIT_PRECISION_AUTO, VDIT_PRECISION_BF16, VDIT_FLAGS,  \
      "precision" },                                                                          \
        { "auto", "bf16 where the CPU has bf16 instructions, else fp32", 0, AV_OPT_TYPE_CONST,\
          { .i64 = VDIT_PRECISION_AUTO }, 0, 0, VDIT_FLAGS, "precision" },                    \
        { "fp32", "exact", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_PRECISION_FP32 }, 0, 0,        \
          VDIT_FLAGS, "precision" },                                                          \
        { "bf16", "bf16 operands, fp32 accumulation", 0, AV_OPT_TYPE_CONST,                   \
          { .i64 = VDIT_PRECISION_BF16 }, 0, 0, VDIT_FLAGS, "precision" },                    \
    { "device", "where the model runs: cpu, cuda, cuda:N (an NVIDIA GPU) or auto (cuda:0 if "   \
      "one answers, else the CPU)", offsetof(type, device), AV_OPT_TYPE_STRING,               \
      { .str = "cpu" }, 0, 0, VDIT_FLAGS },                                                   \
    { "cache", "step caching: steps reuse the DiT's last residual while it barely changes",   \
      offsetof(type, cache), AV_OPT_TYPE_INT, { .i64 = VDIT_DEFAULT_CACHE }, VDIT_CACHE_OFF,  \
      VDIT_CACHE_COUNT - 1, VDIT_FLAGS, "cache" },                                            \
        { "off", "every step computed", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_CACHE_OFF }, 0, 0,\
          VDIT_FLAGS, "cache" },                                                              \
        { "easy", "EasyCache", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_CACHE_EASY }, 0, 0,        \
          VDIT_FLAGS, "cache" },                                                              \
        { "tea", "TeaCache-style", 0, AV_OPT_TYPE_CONST, { .i64 = VDIT_CACHE_TEA }, 0, 0,     \
          VDIT_FLAGS, "cache" },                                                              \
    { "cache_threshold", "step caching threshold, higher skips more (0: the mode's default)", \
      offsetof(type, cache_threshold), AV_OPT_TYPE_FLOAT,                                     \
      { .dbl = VDIT_DEFAULT_CACHE_THRESHOLD }, 0, 1000, VDIT_FLAGS },                         \
    { "model", "model folder or checkpoint (default: the bundled model)",                     \
      offsetof(type, model_path), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VDIT_FLAGS },     \
    { "decoder", "latents to frames: vae (default), tae (TAEHV from the model's folder) or "  \
      "a TAEHV file", offsetof(type, decoder), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0,     \
      VDIT_FLAGS },                                                                           \
    { "lora", "LoRA files merged into the DiT at load: FILE[:SCALE][|FILE[:SCALE]...]",        \
      offsetof(type, lora), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VDIT_FLAGS }
/* No private "threads": libavfilter gives an option of that name to every
 * filter (AVFilterContext.nb_threads) and sets it before the private ones, so
 * a private one would never be reached. The engine's threads are that option's
 * value (vdit_open_model). */

/* The engine's error codes as AVERROR codes. */
static inline int vdit_averror(int err)
{
    switch (err) {
    case VDIT_OK:              return 0;
    case VDIT_ERR_INVALID_ARG: return AVERROR(EINVAL);
    case VDIT_ERR_NOMEM:       return AVERROR(ENOMEM);
    case VDIT_ERR_IO:          return AVERROR(EIO);
    case VDIT_ERR_FORMAT:      return AVERROR_INVALIDDATA;
    /* valid input this build or machine cannot run (no CUDA device, bf16 on
     * a CPU without it): not FFmpeg's "patches welcome" */
    case VDIT_ERR_UNSUPPORTED: return AVERROR(ENOSYS);
    case VDIT_ERR_CANCELLED:   return AVERROR_EXIT;
    case VDIT_ERR_AGAIN:       return AVERROR(EAGAIN);
    case VDIT_ERR_EOF:         return AVERROR_EOF;
    case VDIT_ERR_MISSING:     return AVERROR(ENOENT);
    default:                   return AVERROR_BUG;
    }
}

/* vdit messages go to av_log on the filter instance, at the matching level. */
static inline void vdit_log_bridge(void *user, int level, const char *msg)
{
    static const int lv[VDIT_LOG_COUNT] = {
        AV_LOG_ERROR, AV_LOG_WARNING, AV_LOG_INFO, AV_LOG_VERBOSE, AV_LOG_DEBUG,
    };
    av_log(user, lv[av_clip(level, 0, VDIT_LOG_COUNT - 1)], "%s\n", msg);
}

/* The most verbose vdit level worth producing at FFmpeg's current level. */
static inline int vdit_log_level(void)
{
    int l = av_log_get_level();
    return l >= AV_LOG_DEBUG   ? VDIT_LOG_DEBUG
         : l >= AV_LOG_VERBOSE ? VDIT_LOG_VERBOSE
         : l >= AV_LOG_INFO    ? VDIT_LOG_INFO
         : l >= AV_LOG_WARNING ? VDIT_LOG_WARNING
                               : VDIT_LOG_ERROR;
}

/* Progress: stage starts and denoising steps at the verbose level, the
 * finer-grained units (VAE slices...) at debug. Never cancels. */
static inline int vdit_progress_log(void *user, int stage, int step, int total)
{
    int lvl = (step == 0 || stage == VDIT_STAGE_DENOISE) ? AV_LOG_VERBOSE : AV_LOG_DEBUG;
    av_log(user, lvl, "%s %d/%d\n", vdit_stage_name(stage), step, total);
    return 0;
}

/* Loads the model (path NULL: the bundled one) with the decoder `decoder`
 * (vdit_model_params.decoder: NULL or "vae", "tae", a TAEHV file) and the
 * LoRAs of `lora` ("FILE[:SCALE]|...", vdit_lora_parse; NULL or "": none)
 * merged into it, on `device` (vdit_model_params.device: NULL or "cpu",
 * "cuda", "cuda:N", "auto"; the context follows the model), and makes a
 * context on it computing at `precision` (enum vdit_precision) whose
 * progress goes to `progress` (user: ctx), with the filter's generic
 * `threads` option as the engine's thread count (0: all cores). On failure
 * logs what to do and returns an AVERROR; the caller's uninit frees whatever
 * was made. */
static inline int vdit_open_model(AVFilterContext *ctx, const char *path, const char *decoder,
                                  const char *lora, const char *device,
                                  int precision, vdit_progress_fn progress, vdit_model **model,
                                  vdit_ctx **vctx)
{
    int threads = ctx->nb_threads > 0 ? ctx->nb_threads : VDIT_DEFAULT_THREADS;
    vdit_model_params mp;
    vdit_ctx_params cp;
    vdit_lora loras[64];
    char *lora_buf = NULL;
    int err, n_loras = 0;

    if (!path || !*path)
        path = vdit_default_model_path();
    if (!path) {
        av_log(ctx, AV_LOG_ERROR, "no model: this libvdit has no bundled model; "
               "give one with model=/path/to/model\n");
        return AVERROR(EINVAL);
    }
    vdit_model_params_default(&mp);
    mp.log_cb = vdit_log_bridge;
    mp.log_user = ctx;
    mp.log_level = vdit_log_level();
    mp.n_threads = threads;
    mp.precision = precision;
    mp.device = device && *device ? device : NULL; /* the context's: NULL, the model's */
    mp.decoder = decoder && *decoder ? decoder : NULL;
    if (lora && *lora) {
        if (!(lora_buf = av_malloc(strlen(lora) + 1)))
            return AVERROR(ENOMEM);
        n_loras = vdit_lora_parse(lora, loras, FF_ARRAY_ELEMS(loras), lora_buf, strlen(lora) + 1);
        if (n_loras < 0) {
            av_log(ctx, AV_LOG_ERROR, "bad lora '%s': want FILE[:SCALE][|FILE[:SCALE]...] (at "
                   "most %d; in a filtergraph escape each ':' twice, '\\\\:', or quote the value)\n", lora,
                   (int)FF_ARRAY_ELEMS(loras));
            av_free(lora_buf);
            return AVERROR(EINVAL);
        }
        mp.loras = loras;
        mp.n_loras = n_loras;
    }
    av_log(ctx, AV_LOG_VERBOSE, "loading model %s (libvdit %s), %d threads (0: all cores), "
           "%d LoRA(s), device %s\n", path, vdit_version(), threads, n_loras,
           mp.device ? mp.device : "cpu");
    err = vdit_model_load(path, &mp, model);
    av_free(lora_buf);
    if (err < 0) {
        av_log(ctx, AV_LOG_ERROR, "cannot load the model '%s': %s%s%s\n", path,
               vdit_strerror(err), mp.error[0] ? ": " : "", mp.error);
        return vdit_averror(err);
    }
    vdit_ctx_params_default(&cp);
    cp.n_threads = threads;
    cp.precision = precision;
    cp.log_cb = vdit_log_bridge;
    cp.log_user = ctx;
    cp.log_level = mp.log_level;
    cp.progress_cb = progress;
    cp.progress_user = ctx;
    err = vdit_ctx_init(*model, &cp, vctx);
    if (err < 0) {
        /* the reason (e.g. bf16 on a CPU without it) went to the log above */
        av_log(ctx, AV_LOG_ERROR, "cannot make a vdit context: %s\n", vdit_strerror(err));
        return vdit_averror(err);
    }
    av_log(ctx, AV_LOG_VERBOSE, "computing in %s\n", vdit_ctx_compute(*vctx));
    return 0;
}

/* Logs the context's last error after a failed call and returns it as AVERROR. */
static inline int vdit_fail(AVFilterContext *ctx, vdit_ctx *vctx, const char *what, int err)
{
    const char *msg = vctx ? vdit_ctx_last_error(vctx) : "";
    av_log(ctx, AV_LOG_ERROR, "%s failed: %s%s%s\n", what, vdit_strerror(err),
           msg && *msg ? ": " : "", msg ? msg : "");
    return vdit_averror(err);
}

/* Generation parameters from the options; those left at their "model's
 * default" value keep what vdit_gen_params_default() chose. */
static inline void vdit_fill_gen_params(vdit_gen_params *g, const char *prompt,
                                        const char *negative_prompt, int steps, float guidance,
                                        float shift, int sampler, int64_t seed, int cache,
                                        float cache_threshold)
{
    vdit_gen_params_default(g);
    g->prompt = prompt;
    g->negative_prompt = negative_prompt;
    if (steps > 0)
        g->steps = steps;
    if (guidance != (float)VDIT_DEFAULT_GUIDANCE)
        g->guidance = guidance;
    if (shift != (float)VDIT_DEFAULT_SHIFT)
        g->shift = shift;
    if (sampler >= 0)
        g->sampler = sampler;
    g->seed = (uint64_t)seed;
    g->cache = cache;
    g->cache_threshold = cache_threshold;
}

#endif /* AVFILTER_VDIT_COMMON_H */
