/*
 * vdit: edits a video stream by SDEdit with a video diffusion model.
 * Part of vdit (MIT license); built into FFmpeg's libavfilter with
 * --enable-libvdit (see patches/ and docs/ffmpeg.md in the vdit sources).
 *
 * The work happens in libvdit's streaming edit API: frames go in one by one,
 * the engine gathers a window of them, edits it conditioned on the tail of
 * the previous window's output (so windows join without a seam) and hands the
 * frames back in order, one out for each in. This filter only moves frames:
 * activate() sends input frames until the engine says a window is full,
 * receives what is ready, and at EOF drains the last partial window.
 * Frame properties (pts, duration, SAR, colour tags, side data) are kept
 * aside in a FIFO while the pixels are in the engine and put back on the
 * edited frames, so timing is exactly the input's.
 */

#include "libavutil/common.h"
#include "libavutil/fifo.h"
#include "libavutil/imgutils.h"
#include "libavutil/mem.h"
#include "libavutil/pixfmt.h"
#include "libavutil/time.h"

#include "vdit_common.h"

typedef struct VditContext {
    const AVClass *class;

    /* options */
    char *prompt, *negative_prompt, *model_path;
    double strength;
    int steps, sampler, threads, window, overlap;
    float guidance, shift;
    int64_t seed;

    vdit_model *model;
    vdit_ctx *vctx;
    vdit_stream *stream;
    AVFifo *props;     /* AVFrame* without data: properties of frames in the engine */
    AVFrame *pending;  /* a frame the engine refused (window full): sent next time */
    int draining;      /* input ended, drain was called */
    int in_status;     /* the status that ended the input */
    int64_t in_status_pts;
    int64_t nb_in, nb_out;
} VditContext;

#define OFFSET(x) offsetof(VditContext, x)

static const AVOption vdit_options[] = {
    VDIT_COMMON_OPTIONS(VditContext),
    { "strength", "how much to change: 0 keeps the input, 1 ignores it", OFFSET(strength),
      AV_OPT_TYPE_DOUBLE, { .dbl = 0.6 }, 0, 1, VDIT_TFLAGS },
    { "window", "frames edited together (0: the model's native length)", OFFSET(window),
      AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 100000, VDIT_FLAGS },
    { "overlap", "frames of the previous output each window continues from (0: automatic)",
      OFFSET(overlap), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 100000, VDIT_FLAGS },
    { NULL }
};

AVFILTER_DEFINE_CLASS(vdit);

static av_cold int init(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;

    if (s->window && s->overlap >= s->window) {
        av_log(ctx, AV_LOG_ERROR, "overlap (%d) must be smaller than window (%d)\n",
               s->overlap, s->window);
        return AVERROR(EINVAL);
    }
    s->props = av_fifo_alloc2(16, sizeof(AVFrame *), AV_FIFO_FLAG_AUTO_GROW);
    if (!s->props)
        return AVERROR(ENOMEM);
    return vdit_open_model(ctx, s->model_path, s->threads, &s->model, &s->vctx);
}

static av_cold void uninit(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    AVFrame *f;

    vdit_stream_close(&s->stream);
    vdit_ctx_free(&s->vctx);
    vdit_model_free(&s->model);
    if (s->props) {
        while (av_fifo_read(s->props, &f, 1) >= 0)
            av_frame_free(&f);
        av_fifo_freep2(&s->props);
    }
    av_frame_free(&s->pending);
}

/* The stream is opened once the frame size is known. */
static int config_input(AVFilterLink *inlink)
{
    AVFilterContext *ctx = inlink->dst;
    VditContext *s = ctx->priv;
    vdit_stream_params sp;
    int err;

    vdit_stream_close(&s->stream);
    vdit_stream_params_default(&sp);
    vdit_fill_gen_params(&sp.gen, s->prompt, s->negative_prompt, s->steps, s->guidance,
                         s->shift, s->sampler, s->seed);
    sp.gen.strength = (float)s->strength;
    sp.window = s->window;
    sp.overlap = s->overlap;
    err = vdit_stream_open(s->vctx, &sp, inlink->w, inlink->h, &s->stream);
    if (err < 0)
        return vdit_fail(ctx, s->vctx, "opening the edit stream", err);
    av_log(ctx, AV_LOG_VERBOSE, "%dx%d, strength %.3f, latency %d frames\n", inlink->w,
           inlink->h, s->strength, vdit_stream_latency(s->stream));
    return 0;
}

/* Hands one frame to the engine, keeping its properties. Returns 0 when taken
 * (the frame is freed), AVERROR(EAGAIN) when the window is full (the frame
 * stays with the caller), another AVERROR on failure. */
static int send_frame(AVFilterContext *ctx, AVFrame *in)
{
    VditContext *s = ctx->priv;
    vdit_frame vf = { 0 };
    AVFrame *props;
    int err, ret;

    if (in->width != ctx->inputs[0]->w || in->height != ctx->inputs[0]->h) {
        av_log(ctx, AV_LOG_ERROR, "frame size changed from %dx%d to %dx%d mid-stream\n",
               ctx->inputs[0]->w, ctx->inputs[0]->h, in->width, in->height);
        return AVERROR(EINVAL);
    }
    props = av_frame_alloc();
    if (!props)
        return AVERROR(ENOMEM);
    ret = av_frame_copy_props(props, in);
    if (ret < 0)
        goto fail;
    vf.width = in->width;
    vf.height = in->height;
    vf.rgb = in->data[0];
    vf.stride = in->linesize[0];
    vf.pts = in->pts;
    vf.user = props;
    err = vdit_stream_send(s->stream, &vf);
    if (err == VDIT_ERR_AGAIN) {
        ret = AVERROR(EAGAIN);
        goto fail;
    }
    if (err < 0) {
        ret = vdit_fail(ctx, s->vctx, "sending a frame", err);
        goto fail;
    }
    ret = av_fifo_write(s->props, &props, 1);
    if (ret < 0) /* cannot happen with AUTO_GROW short of ENOMEM */
        goto fail;
    s->nb_in++;
    av_frame_free(&in);
    return 0;
fail:
    av_frame_free(&props);
    return ret;
}

/* Pushes out every frame the engine has ready. Returns the number pushed,
 * AVERROR_EOF once the drained stream is empty, or an error. */
static int receive_frames(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    AVFilterLink *outlink = ctx->outputs[0];
    int n = 0;

    for (;;) {
        vdit_frame vf = { 0 };
        AVFrame *props, *out;
        int64_t t0 = av_gettime_relative();
        int err = vdit_stream_receive(s->stream, &vf), ret;

        if (err == VDIT_ERR_AGAIN)
            return n;
        if (err == VDIT_ERR_EOF)
            return n ? n : AVERROR_EOF;
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "editing a window", err);
        if (av_fifo_read(s->props, &props, 1) < 0 || props != vf.user) {
            av_log(ctx, AV_LOG_ERROR, "libvdit returned a frame out of order\n");
            return AVERROR_BUG;
        }
        if (vf.width != outlink->w || vf.height != outlink->h) {
            av_log(ctx, AV_LOG_ERROR, "libvdit returned %dx%d for a %dx%d stream\n", vf.width,
                   vf.height, outlink->w, outlink->h);
            av_frame_free(&props);
            return AVERROR_BUG;
        }
        if (n == 0 && av_gettime_relative() - t0 > 100000)
            av_log(ctx, AV_LOG_VERBOSE, "window done in %.2f s (%" PRId64 " frames in, %" PRId64
                   " out)\n", (av_gettime_relative() - t0) / 1e6, s->nb_in, s->nb_out + 1);
        out = ff_get_video_buffer(outlink, outlink->w, outlink->h);
        if (!out) {
            av_frame_free(&props);
            return AVERROR(ENOMEM);
        }
        ret = av_frame_copy_props(out, props);
        av_frame_free(&props);
        if (ret < 0) {
            av_frame_free(&out);
            return ret;
        }
        av_image_copy_plane(out->data[0], out->linesize[0], vf.rgb, (int)vf.stride,
                            outlink->w * 3, outlink->h);
        s->nb_out++;
        ret = ff_filter_frame(outlink, out);
        if (ret < 0)
            return ret;
        n++;
    }
}

static int activate(AVFilterContext *ctx)
{
    AVFilterLink *inlink = ctx->inputs[0];
    AVFilterLink *outlink = ctx->outputs[0];
    VditContext *s = ctx->priv;
    AVFrame *in;
    int ret, nb_out, status;
    int64_t pts;

    FF_FILTER_FORWARD_STATUS_BACK(outlink, inlink);

    /* Output first: when a window is full this is where it gets edited. */
    nb_out = receive_frames(ctx);
    if (nb_out == AVERROR_EOF) {
        av_log(ctx, AV_LOG_VERBOSE, "%" PRId64 " frames in, %" PRId64 " out\n", s->nb_in,
               s->nb_out);
        ff_outlink_set_status(outlink, s->in_status, s->in_status_pts);
        return 0;
    }
    if (nb_out < 0)
        return nb_out;
    if (s->draining) {
        /* After drain the engine gives frames until EOF, never EAGAIN. */
        if (!nb_out) {
            av_log(ctx, AV_LOG_ERROR, "libvdit stalled while draining\n");
            return AVERROR_BUG;
        }
        ff_filter_set_ready(ctx, 100);
        return 0;
    }

    if (s->pending) {
        ret = send_frame(ctx, s->pending);
        if (ret == AVERROR(EAGAIN)) {
            if (!nb_out) { /* full, yet nothing came out: would spin forever */
                av_log(ctx, AV_LOG_ERROR, "libvdit refused a frame with no output ready\n");
                return AVERROR_BUG;
            }
            ff_filter_set_ready(ctx, 100);
            return 0;
        }
        if (ret < 0)
            return ret;
        s->pending = NULL;
    }

    while ((ret = ff_inlink_consume_frame(inlink, &in)) > 0) {
        ret = send_frame(ctx, in);
        if (ret == AVERROR(EAGAIN)) {
            s->pending = in; /* window complete: the next activation edits it */
            ff_filter_set_ready(ctx, 100);
            return 0;
        }
        if (ret < 0) {
            av_frame_free(&in);
            return ret;
        }
    }
    if (ret < 0)
        return ret;

    if (ff_inlink_acknowledge_status(inlink, &status, &pts)) {
        s->draining = 1;
        s->in_status = status;
        s->in_status_pts = pts;
        ret = vdit_stream_drain(s->stream);
        if (ret < 0)
            return vdit_fail(ctx, s->vctx, "draining", ret);
        ff_filter_set_ready(ctx, 100);
        return 0;
    }
    if (nb_out)
        return 0;
    FF_FILTER_FORWARD_WANTED(outlink, inlink);
    return FFERROR_NOT_READY;
}

/* prompt and strength change from the next window (the engine copies the
 * prompt). */
static int process_command(AVFilterContext *ctx, const char *cmd, const char *args, char *res,
                           int res_len, int flags)
{
    VditContext *s = ctx->priv;
    int is_prompt = !strcmp(cmd, "prompt"), ret, err;

    ret = ff_filter_process_command(ctx, cmd, args, res, res_len, flags);
    if (ret < 0 || !s->stream)
        return ret;
    err = vdit_stream_update(s->stream, is_prompt ? (s->prompt ? s->prompt : "") : NULL,
                             is_prompt ? -1.0f : (float)s->strength);
    if (err < 0)
        return vdit_fail(ctx, s->vctx, "updating the stream", err);
    av_log(ctx, AV_LOG_VERBOSE, "%s set for the next window\n", cmd);
    return 0;
}

static const AVFilterPad vdit_inputs[] = {
    {
        .name         = "default",
        .type         = AVMEDIA_TYPE_VIDEO,
        .config_props = config_input,
    },
};

static const AVFilterPad vdit_outputs[] = {
    {
        .name = "default",
        .type = AVMEDIA_TYPE_VIDEO,
    },
};

const AVFilter ff_vf_vdit = {
    .name            = "vdit",
    .description     = NULL_IF_CONFIG_SMALL("Edit video with a diffusion model (libvdit, SDEdit)."),
    .priv_size       = sizeof(VditContext),
    .priv_class      = &vdit_class,
    .init            = init,
    .uninit          = uninit,
    .activate        = activate,
    .process_command = process_command,
    FILTER_INPUTS(vdit_inputs),
    FILTER_OUTPUTS(vdit_outputs),
    FILTER_SINGLE_PIXFMT(AV_PIX_FMT_RGB24),
};
