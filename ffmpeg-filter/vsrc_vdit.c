/*
 * vditsrc: generates video from a text prompt, or from an image and a prompt,
 * with a video diffusion model.
 * Part of vdit (MIT license); built into FFmpeg's libavfilter with
 * --enable-libvdit (see patches/ and docs/ffmpeg.md in the vdit sources).
 *
 * Frames are made a chunk at a time: the first chunk (one window) by
 * libvdit's vdit_generate(), each later one by vdit_extend() from the end of
 * the previous chunk, window after window, so a long duration comes out as
 * one continuous shot with memory bounded by a few windows. With loop=1 a
 * single seamlessly looping window is generated and repeated. activate()
 * hands out frames of the current chunk and makes the next one only when the
 * output wants a frame. Defaults (size, length, rate) are the model's own,
 * from vdit_model_get_info().
 *
 * With image=FILE the first chunk is image-to-video (vdit_gen_params.image):
 * the file is decoded once, at init, by lavfutils' ff_load_image() (the
 * helper removelogo uses: libavformat and libavcodec, so PNG, JPEG or
 * whatever this FFmpeg decodes) and converted to the engine's packed RGB by
 * swscale. Without a size the output takes the size libvdit's vdit_gen_size()
 * gives for the image (its aspect at the model's area), known at init, so
 * config_props can announce it before anything is generated.
 *
 * The engine makes 8-bit RGB; the filter offers YUV 4:2:0 first (what
 * encoders and players expect, as testsrc2 does), then 4:4:4, NV12, 4:2:2
 * and 10-bit YUV for 10-bit encodes (8 bits of precision in them), and
 * packed RGB when the output asks for it. YUV frames are converted by
 * swscale with the BT.709 matrix in limited range and tagged so (BT.709
 * primaries and transfer); RGB frames are tagged full range.
 */

#include "libavutil/common.h"
#include "libavutil/imgutils.h"
#include "libavutil/mathematics.h"
#include "libavutil/mem.h"
#include "libavutil/parseutils.h"
#include "libavutil/pixdesc.h"
#include "libavutil/pixfmt.h"
#include "libavutil/time.h"
#include "libswscale/swscale.h"

#include "lavfutils.h"
#include "vdit_common.h"

typedef struct VditSrcContext {
    const AVClass *class;

    /* options */
    char *prompt, *negative_prompt, *model_path, *image_path, *decoder, *lora, *device;
    int w, h;
    AVRational frame_rate;
    int64_t duration;
    int steps, sampler, window, loop, precision, cache;
    float guidance, shift, cache_threshold;
    int64_t seed;

    vdit_model *model;
    vdit_ctx *vctx;
    vdit_model_info info;
    vdit_video *image;   /* image= decoded, until the first chunk is made */
    int win;             /* frames per window: window, else the model's length */
    vdit_video *chunk;   /* frames being handed out */
    int chunk_pos;       /* next frame of chunk to output */
    int nb_chunks;       /* chunks generated so far */
    int64_t nb_frames;   /* frames to output in all, -1: one window */
    int64_t pts;         /* next frame's pts (= its index, time base 1/rate) */
    struct SwsContext *sws; /* RGB to the output's YUV format; NULL for RGB */
} VditSrcContext;

#define OFFSET(x) offsetof(VditSrcContext, x)

static const AVOption vditsrc_options[] = {
    VDIT_COMMON_OPTIONS(VditSrcContext),
    { "size", "frame size (default: the model's native size)", OFFSET(w),
      AV_OPT_TYPE_IMAGE_SIZE, { .str = NULL }, 0, 0, VDIT_FLAGS },
    { "s", "frame size (default: the model's native size)", OFFSET(w),
      AV_OPT_TYPE_IMAGE_SIZE, { .str = NULL }, 0, 0, VDIT_FLAGS },
    /* "16" stands for "the model's rate" (Wan's is 16): a rate option
     * cannot default to "unset". */
    { "rate", "frame rate (default: the model's)", OFFSET(frame_rate), AV_OPT_TYPE_VIDEO_RATE,
      { .str = "16" }, 0, INT_MAX, VDIT_FLAGS },
    { "r", "frame rate (default: the model's)", OFFSET(frame_rate), AV_OPT_TYPE_VIDEO_RATE,
      { .str = "16" }, 0, INT_MAX, VDIT_FLAGS },
    { "duration", "length (default: one window)", OFFSET(duration), AV_OPT_TYPE_DURATION,
      { .i64 = -1 }, -1, INT64_MAX, VDIT_FLAGS },
    { "d", "length (default: one window)", OFFSET(duration), AV_OPT_TYPE_DURATION,
      { .i64 = -1 }, -1, INT64_MAX, VDIT_FLAGS },
    { "window", "frames generated together (0: the model's native length)", OFFSET(window),
      AV_OPT_TYPE_INT, { .i64 = VDIT_DEFAULT_WINDOW }, 0, 100000, VDIT_FLAGS },
    { "loop", "generate one seamlessly looping window and repeat it", OFFSET(loop),
      AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, VDIT_FLAGS },
    { "image", "image file the video starts from (image to video)", OFFSET(image_path),
      AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VDIT_FLAGS },
    { NULL }
};

AVFILTER_DEFINE_CLASS(vditsrc);

/* Decodes image= into s->image (its first picture, packed RGB). The file's
 * name and the cause go to the log on failure: ff_load_image() says which
 * step failed, not why. */
static int load_image(AVFilterContext *ctx)
{
    VditSrcContext *s = ctx->priv;
    uint8_t *data[4] = { NULL };
    int linesize[4], w = 0, h = 0, ret;
    enum AVPixelFormat fmt = AV_PIX_FMT_NONE;
    struct SwsContext *sws = NULL;

    ret = ff_load_image(data, linesize, &w, &h, &fmt, s->image_path, ctx);
    if (ret < 0) {
        /* a file that opens but yields no picture comes back as EINVAL
         * (no decoder found) or INVALIDDATA (the decoder refused it) */
        int opened = ret == AVERROR(EINVAL) || ret == AVERROR_INVALIDDATA ||
                     ret == AVERROR_DECODER_NOT_FOUND || ret == AVERROR_EOF;
        av_log(ctx, AV_LOG_ERROR, "cannot read the image '%s': %s%s\n", s->image_path,
               av_err2str(ret), opened ? " (not a picture this FFmpeg can decode: PNG, "
               "JPEG or another format it was built with)" : "");
        return ret;
    }
    if (w < 1 || h < 1 || w > 8192 || h > 8192) {
        av_log(ctx, AV_LOG_ERROR, "the image '%s' is %dx%d: sides of 1 to 8192 pixels only\n",
               s->image_path, w, h);
        ret = AVERROR(EINVAL);
        goto end;
    }
    /* Full-range RGB out; YUV in (a JPEG) with the matrix and range swscale
     * assumes for its format: the yuvj formats JPEG decodes to are BT.601
     * full range, as JFIF says. */
    sws = sws_getContext(w, h, fmt, w, h, AV_PIX_FMT_RGB24,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!sws) {
        av_log(ctx, AV_LOG_ERROR, "the image '%s' is %s, which swscale cannot convert to RGB\n",
               s->image_path, av_get_pix_fmt_name(fmt) ? av_get_pix_fmt_name(fmt) : "?");
        ret = AVERROR(EINVAL);
        goto end;
    }
    s->image = vdit_video_new(w, h, 1);
    if (!s->image) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    {
        uint8_t *dst[4] = { s->image->rgb };
        const int dst_stride[4] = { w * 3 };

        ret = sws_scale(sws, (const uint8_t *const *)data, linesize, 0, h, dst, dst_stride);
    }
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "converting the image '%s' to RGB failed: %s\n",
               s->image_path, av_err2str(ret));
        vdit_video_free(&s->image);
        goto end;
    }
    av_log(ctx, AV_LOG_VERBOSE, "image '%s': %dx%d %s\n", s->image_path, w, h,
           av_get_pix_fmt_name(fmt));
    ret = 0;
end:
    sws_freeContext(sws);
    av_freep(&data[0]);
    return ret;
}

static av_cold int init(AVFilterContext *ctx)
{
    VditSrcContext *s = ctx->priv;
    int ret, err;

    if ((s->w || s->h) && (s->w < 2 || s->h < 2)) {
        av_log(ctx, AV_LOG_ERROR, "size %dx%d is too small\n", s->w, s->h);
        return AVERROR(EINVAL);
    }
    if (s->image_path && *s->image_path) { /* image= (empty: none, as for model=) */
        if (s->loop) {
            /* libvdit makes a loop from noise: no frame of it is given */
            av_log(ctx, AV_LOG_ERROR, "image and loop=1 cannot be combined: leave one out\n");
            return AVERROR(EINVAL);
        }
        /* the image before the model: a wrong path fails at once */
        if ((ret = load_image(ctx)) < 0)
            return ret;
    }
    ret = vdit_open_model(ctx, s->model_path, s->decoder, s->lora, s->device, s->precision,
                          vdit_progress_log, &s->model, &s->vctx);
    if (ret < 0)
        return ret;
    err = vdit_model_get_info(s->model, &s->info);
    if (err < 0)
        return vdit_fail(ctx, NULL, "reading the model's defaults", err);
    if (s->image && !s->w) {
        /* the size the first vdit_generate() makes for this image, so that
         * config_props can announce it; every later chunk keeps it */
        vdit_gen_params g;

        vdit_gen_params_default(&g);
        g.image = s->image;
        err = vdit_gen_size(s->model, &g, &s->w, &s->h);
        if (err < 0) {
            av_log(ctx, AV_LOG_ERROR, "no frame size in the aspect of the image '%s' (%dx%d) "
                   "suits the model: give one with size=WxH\n", s->image_path,
                   s->image->width, s->image->height);
            return vdit_averror(err);
        }
        av_log(ctx, AV_LOG_VERBOSE, "frame size %dx%d, from the image's aspect\n", s->w, s->h);
    }
    s->win = s->window ? s->window : s->info.n_frames;
    if (av_opt_is_set_to_default_by_name(s, "rate", 0) > 0 && s->info.fps > 0)
        s->frame_rate = av_d2q(s->info.fps, 1001000);
    if (s->frame_rate.num <= 0 || s->frame_rate.den <= 0) {
        av_log(ctx, AV_LOG_ERROR, "rate must be positive\n");
        return AVERROR(EINVAL);
    }
    /* Frames whose start lies before the duration, as testsrc counts them. */
    s->nb_frames = s->duration < 0 ? -1
                 : av_rescale_rnd(s->duration, s->frame_rate.num,
                                  (int64_t)s->frame_rate.den * AV_TIME_BASE, AV_ROUND_UP);
    if (s->nb_frames == 0) {
        av_log(ctx, AV_LOG_ERROR, "duration is shorter than one frame\n");
        return AVERROR(EINVAL);
    }
    if (s->nb_frames > INT_MAX / 2) {
        av_log(ctx, AV_LOG_ERROR, "duration is too long\n");
        return AVERROR(EINVAL);
    }
    av_log(ctx, AV_LOG_VERBOSE, "%" PRId64 " frames (-1: one window) at %d/%d fps, windows of %d\n",
           s->nb_frames, s->frame_rate.num, s->frame_rate.den, s->win);
    return 0;
}

static av_cold void uninit(AVFilterContext *ctx)
{
    VditSrcContext *s = ctx->priv;

    sws_freeContext(s->sws);
    s->sws = NULL;
    vdit_video_free(&s->image);
    vdit_video_free(&s->chunk);
    vdit_ctx_free(&s->vctx);
    vdit_model_free(&s->model);
}

/* Makes the next chunk: generated from the prompt (the first, from the image
 * if there is one, or the loop), or extended from the end of the previous
 * chunk. */
static int next_chunk(AVFilterContext *ctx)
{
    VditSrcContext *s = ctx->priv;
    int64_t left = s->nb_frames < 0 ? -1 : s->nb_frames - s->pts;
    vdit_gen_params g;
    vdit_video *out = NULL;
    int64_t t0 = av_gettime_relative();
    int n, err, skip = 0;

    if (s->loop && s->chunk) { /* the loop repeats as is */
        s->chunk_pos = 0;
        return 0;
    }
    vdit_fill_gen_params(&g, s->prompt, s->negative_prompt, s->steps, s->guidance, s->shift,
                         s->sampler, s->seed, s->cache, s->cache_threshold);
    g.seed = (uint64_t)s->seed + (uint64_t)s->nb_chunks; /* fresh noise per chunk */
    g.width = s->w;
    g.height = s->h;
    g.loop = s->loop;
    if (!s->chunk) {
        /* One window; shorter when that is all the duration asks for. */
        n = left > 0 && left < s->win ? (int)left : s->win;
        g.n_frames = n;
        g.image = s->image;
        av_log(ctx, AV_LOG_VERBOSE, "generating %d frames%s\n", n,
               s->image ? " from the image" : "");
        err = vdit_generate(s->vctx, &g, &out);
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "generating", err);
        vdit_video_free(&s->image); /* later chunks continue from the frames */
    } else {
        /* Several windows per call: each window re-makes the context it
         * continues from, so the last, partly filled one is the only waste. */
        n = (int)FFMIN(left, 4LL * s->win);
        g.n_frames = s->win;
        av_log(ctx, AV_LOG_VERBOSE, "extending by %d frames\n", n);
        err = vdit_extend(s->vctx, &g, s->chunk, n, 0, &out);
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "extending", err);
        skip = s->chunk->n_frames; /* the output starts with the given frames */
    }
    if (out->n_frames <= skip || (s->w && (out->width != s->w || out->height != s->h)) ||
        (s->chunk && (out->width != s->chunk->width || out->height != s->chunk->height))) {
        av_log(ctx, AV_LOG_ERROR, "libvdit returned %d frames of %dx%d\n", out->n_frames,
               out->width, out->height);
        vdit_video_free(&out);
        return AVERROR_BUG;
    }
    av_log(ctx, AV_LOG_VERBOSE, "chunk %d: %d frames in %.2f s\n", s->nb_chunks,
           out->n_frames - skip, (av_gettime_relative() - t0) / 1e6);
    vdit_video_free(&s->chunk);
    s->chunk = out;
    s->chunk_pos = skip;
    s->nb_chunks++;
    return 0;
}

static int config_props(AVFilterLink *outlink)
{
    AVFilterContext *ctx = outlink->src;
    VditSrcContext *s = ctx->priv;

    outlink->w = s->w ? s->w : s->info.width;
    outlink->h = s->h ? s->h : s->info.height;
    outlink->sample_aspect_ratio = (AVRational){ 1, 1 };
    outlink->time_base = av_inv_q(s->frame_rate);
    VDIT_LINK_FRAME_RATE(outlink) = s->frame_rate;
    sws_freeContext(s->sws);
    s->sws = NULL;
    if (outlink->format != AV_PIX_FMT_RGB24) {
        const int *bt709 = sws_getCoefficients(SWS_CS_ITU709);
        s->sws = sws_getContext(outlink->w, outlink->h, AV_PIX_FMT_RGB24, outlink->w, outlink->h,
                                outlink->format, SWS_BICUBIC | SWS_ACCURATE_RND |
                                SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
        if (!s->sws) {
            av_log(ctx, AV_LOG_ERROR, "cannot convert RGB to %s\n",
                   av_get_pix_fmt_name(outlink->format));
            return AVERROR(EINVAL);
        }
        /* Source: full-range RGB; destination: BT.709, limited range. */
        if (sws_setColorspaceDetails(s->sws, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16) < 0) {
            av_log(ctx, AV_LOG_ERROR, "swscale refused the BT.709 matrix\n");
            return AVERROR(EINVAL);
        }
    }
    return 0;
}

static int activate(AVFilterContext *ctx)
{
    AVFilterLink *outlink = ctx->outputs[0];
    VditSrcContext *s = ctx->priv;
    const vdit_video *c;
    const uint8_t *src;
    AVFrame *frame;
    int ret;

    if (!ff_outlink_frame_wanted(outlink))
        return FFERROR_NOT_READY;
    if ((s->nb_frames >= 0 && s->pts >= s->nb_frames) ||
        (s->nb_frames < 0 && s->chunk && s->chunk_pos >= s->chunk->n_frames)) {
        ff_outlink_set_status(outlink, AVERROR_EOF, s->pts);
        return 0;
    }
    if (!s->chunk || s->chunk_pos >= s->chunk->n_frames) {
        ret = next_chunk(ctx);
        if (ret < 0)
            return ret;
    }
    c = s->chunk;
    if (c->width != outlink->w || c->height != outlink->h) { /* the model ignored the size */
        av_log(ctx, AV_LOG_ERROR, "libvdit made %dx%d frames for a %dx%d output\n", c->width,
               c->height, outlink->w, outlink->h);
        return AVERROR_BUG;
    }
    frame = ff_get_video_buffer(outlink, outlink->w, outlink->h);
    if (!frame)
        return AVERROR(ENOMEM);
    src = c->rgb + (size_t)s->chunk_pos * c->width * c->height * 3;
    if (s->sws) {
        const uint8_t *planes[4] = { src };
        const int strides[4] = { c->width * 3 };

        ret = sws_scale(s->sws, planes, strides, 0, c->height, frame->data, frame->linesize);
        if (ret < 0) {
            av_frame_free(&frame);
            return ret;
        }
        frame->colorspace = AVCOL_SPC_BT709;
        frame->color_range = AVCOL_RANGE_MPEG;
    } else {
        av_image_copy_plane(frame->data[0], frame->linesize[0], src, c->width * 3,
                            c->width * 3, c->height);
        frame->colorspace = AVCOL_SPC_RGB;
        frame->color_range = AVCOL_RANGE_JPEG;
    }
    frame->color_primaries = AVCOL_PRI_BT709;
    frame->color_trc = AVCOL_TRC_BT709;
    frame->pts = s->pts++;
    frame->sample_aspect_ratio = outlink->sample_aspect_ratio;
#if LIBAVUTIL_VERSION_MAJOR >= 58
    frame->duration = 1;
#endif
    s->chunk_pos++;
    return ff_filter_frame(outlink, frame);
}

static const AVFilterPad vditsrc_outputs[] = {
    {
        .name          = "default",
        .type          = AVMEDIA_TYPE_VIDEO,
        .config_props  = config_props,
    },
};

const AVFilter ff_vsrc_vditsrc = {
    .name            = "vditsrc",
    .description     = NULL_IF_CONFIG_SMALL("Generate video from a text prompt or an image with a diffusion model (libvdit)."),
    .priv_size       = sizeof(VditSrcContext),
    .priv_class      = &vditsrc_class,
    .init            = init,
    .uninit          = uninit,
    .activate        = activate,
    .process_command = ff_filter_process_command,
    .inputs          = NULL,
    FILTER_OUTPUTS(vditsrc_outputs),
    FILTER_PIXFMTS(AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUV444P, AV_PIX_FMT_NV12, AV_PIX_FMT_RGB24,
                   AV_PIX_FMT_YUV422P, AV_PIX_FMT_YUV420P10LE, AV_PIX_FMT_YUV422P10LE,
                   AV_PIX_FMT_YUV444P10LE, AV_PIX_FMT_P010LE),
};
