/*
 * vdit: edits a video stream by SDEdit with a video diffusion model.
 * Part of vdit (MIT license); built into FFmpeg's libavfilter with
 * --enable-libvdit (see patches/ and docs/ffmpeg.md in the vdit sources).
 *
 * The work happens in libvdit's streaming edit API: frames go in one by one,
 * the engine gathers a window of them, edits it conditioned on the tail of
 * the previous window's output (so windows join without a seam) and hands the
 * frames back in order, one out for each in.
 *
 * With async=1 (the default) the engine runs in a worker thread of this
 * filter, the sole user of the vdit stream and context: activate() only moves
 * frames between FFmpeg's links and two queues. Input frames go into a queue
 * of at most two windows, so while the worker edits window k, FFmpeg's own
 * thread keeps decoding the frames of window k+1 and encoding those of window
 * k-1. Only when that queue is full, or at EOF, does activate() wait on a
 * condition variable for the worker (never a sleep). Commands (prompt,
 * strength) travel in the same queue, so they apply in stream order. With
 * async=0 the same steps run inline in activate().
 *
 * Frame properties (pts, duration, SAR, colour tags, side data) are kept
 * aside while the pixels are in the engine and put back on the edited
 * frames, so timing is exactly the input's.
 */

#include <stdatomic.h>

#include "libavutil/common.h"
#include "libavutil/fifo.h"
#include "libavutil/imgutils.h"
#include "libavutil/mem.h"
#include "libavutil/pixfmt.h"
#include "libavutil/thread.h"
#include "libavutil/time.h"

#include "vdit_common.h"

/* One entry of the input queue: a frame to edit, or a command. */
typedef struct VditItem {
    AVFrame *frame;   /* a frame, or NULL for a command */
    char *prompt;     /* command: the new prompt (owned), NULL: keep */
    float strength;   /* command: the new strength, < 0: keep */
} VditItem;

typedef struct VditContext {
    const AVClass *class;

    /* options */
    char *prompt, *negative_prompt, *model_path;
    double strength;
    int steps, sampler, window, overlap, async, precision, cache;
    float guidance, shift, cache_threshold;
    int64_t seed;

    vdit_model *model;
    vdit_ctx *vctx;
    vdit_stream *stream;
    AVFifo *props;     /* worker side: AVFrame* without data, frames in the engine */
    int64_t nb_in, nb_out;
    int in_status;     /* the status that ended the input */
    int64_t in_status_pts;
    int eof_sent;      /* the end of input was queued */

    /* Shared between activate() and the worker, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* any change below: broadcast */
    pthread_t worker;
    int lock_init, worker_running;
    AVFifo *inq;          /* VditItem: input frames and commands, for the worker */
    AVFifo *outq;         /* AVFrame*: edited frames, for activate() */
    int inq_max;          /* frames the input queue holds before activate() waits */
    int inq_frames;       /* frames in inq */
    int worker_done;      /* the worker drained the stream and stopped */
    int worker_err;       /* an AVERROR that stopped the worker */
    atomic_int abort;     /* uninit: stop now (also cancels the running window) */
} VditContext;

#define OFFSET(x) offsetof(VditContext, x)

static const AVOption vdit_options[] = {
    VDIT_COMMON_OPTIONS(VditContext),
    { "strength", "how much to change: 0 keeps the input, 1 ignores it", OFFSET(strength),
      AV_OPT_TYPE_DOUBLE, { .dbl = VDIT_DEFAULT_STRENGTH }, 0, 1, VDIT_TFLAGS },
    { "window", "frames edited together (0: the model's native length)", OFFSET(window),
      AV_OPT_TYPE_INT, { .i64 = VDIT_DEFAULT_WINDOW }, 0, 100000, VDIT_FLAGS },
    { "overlap", "frames of the previous output each window continues from (0: automatic)",
      OFFSET(overlap), AV_OPT_TYPE_INT, { .i64 = VDIT_DEFAULT_OVERLAP }, 0, 100000, VDIT_FLAGS },
    { "async", "edit in a worker thread while the filter keeps taking frames",
      OFFSET(async), AV_OPT_TYPE_BOOL, { .i64 = 1 }, 0, 1, VDIT_FLAGS },
    { NULL }
};

AVFILTER_DEFINE_CLASS(vdit);

/* Progress to av_log; stops the running window once uninit asks. Called
 * from the thread running the engine. */
static int on_progress(void *user, int stage, int step, int total)
{
    AVFilterContext *ctx = user;
    VditContext *s = ctx->priv;

    vdit_progress_log(ctx, stage, step, total);
    return atomic_load(&s->abort);
}

static av_cold int init(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;

    if (s->window && s->overlap >= s->window) {
        av_log(ctx, AV_LOG_ERROR, "overlap (%d) must be smaller than window (%d)\n",
               s->overlap, s->window);
        return AVERROR(EINVAL);
    }
    atomic_init(&s->abort, 0);
    s->props = av_fifo_alloc2(16, sizeof(AVFrame *), AV_FIFO_FLAG_AUTO_GROW);
    s->inq = av_fifo_alloc2(16, sizeof(VditItem), AV_FIFO_FLAG_AUTO_GROW);
    s->outq = av_fifo_alloc2(16, sizeof(AVFrame *), AV_FIFO_FLAG_AUTO_GROW);
    if (!s->props || !s->inq || !s->outq)
        return AVERROR(ENOMEM);
    if (pthread_mutex_init(&s->lock, NULL))
        return AVERROR(ENOMEM);
    if (pthread_cond_init(&s->cond, NULL)) {
        pthread_mutex_destroy(&s->lock);
        return AVERROR(ENOMEM);
    }
    s->lock_init = 1;
    return vdit_open_model(ctx, s->model_path, s->precision, on_progress, &s->model, &s->vctx);
}

static void item_free(VditItem *it)
{
    av_frame_free(&it->frame);
    av_freep(&it->prompt);
}

/* Stops the worker (cancelling the window it edits) and drops both queues. */
static void stop_worker(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    VditItem it;
    AVFrame *f;

    if (s->worker_running) {
        atomic_store(&s->abort, 1);
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->worker, NULL);
        s->worker_running = 0;
        atomic_store(&s->abort, 0);
    }
    while (s->inq && av_fifo_read(s->inq, &it, 1) >= 0)
        item_free(&it);
    while (s->outq && av_fifo_read(s->outq, &f, 1) >= 0)
        av_frame_free(&f);
    while (s->props && av_fifo_read(s->props, &f, 1) >= 0)
        av_frame_free(&f);
    s->inq_frames = 0;
    s->worker_done = s->worker_err = 0;
}

static av_cold void uninit(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;

    stop_worker(ctx);
    vdit_stream_close(&s->stream);
    vdit_ctx_free(&s->vctx);
    vdit_model_free(&s->model);
    av_fifo_freep2(&s->props);
    av_fifo_freep2(&s->inq);
    av_fifo_freep2(&s->outq);
    if (s->lock_init) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
    }
}

/* ---- the engine side: runs in the worker (async) or in activate() ---------- */

/* Moves every frame the engine has ready into the output queue. Returns 0
 * when it needs more input, AVERROR_EOF once the drained stream is empty, or
 * an error. Processes a window when one is complete (the expensive part). */
static int collect(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    AVFilterLink *outlink = ctx->outputs[0];
    int64_t t0 = av_gettime_relative();
    int first = 1;

    for (;;) {
        vdit_frame vf = { 0 };
        AVFrame *props, *out;
        int err = vdit_stream_receive(s->stream, &vf), ret;

        if (err == VDIT_ERR_AGAIN)
            return 0;
        if (err == VDIT_ERR_EOF)
            return AVERROR_EOF;
        if (err == VDIT_ERR_CANCELLED && atomic_load(&s->abort))
            return AVERROR_EXIT; /* uninit stopped it: nobody waits for the frames */
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
        if (first && av_gettime_relative() - t0 > 100000)
            av_log(ctx, AV_LOG_VERBOSE, "window done in %.2f s\n",
                   (av_gettime_relative() - t0) / 1e6);
        first = 0;
        /* A plain buffer, not the link's pool: this may be the worker thread. */
        out = av_frame_alloc();
        if (!out) {
            av_frame_free(&props);
            return AVERROR(ENOMEM);
        }
        out->format = AV_PIX_FMT_RGB24;
        out->width = vf.width;
        out->height = vf.height;
        ret = av_frame_get_buffer(out, 0);
        if (ret >= 0)
            ret = av_frame_copy_props(out, props);
        av_frame_free(&props);
        if (ret < 0) {
            av_frame_free(&out);
            return ret;
        }
        av_image_copy_plane(out->data[0], out->linesize[0], vf.rgb, (int)vf.stride,
                            vf.width * 3, vf.height);
        pthread_mutex_lock(&s->lock);
        ret = av_fifo_write(s->outq, &out, 1);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0) {
            av_frame_free(&out);
            return ret;
        }
    }
}

/* Hands one frame (taken) or command to the engine, then collects output. */
static int handle_item(AVFilterContext *ctx, VditItem *it)
{
    VditContext *s = ctx->priv;
    vdit_frame vf = { 0 };
    AVFrame *props;
    int err, ret;

    if (!it->frame) {
        err = vdit_stream_update(s->stream, it->prompt, it->strength);
        av_freep(&it->prompt);
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "updating the stream", err);
        av_log(ctx, AV_LOG_VERBOSE, "%s set for the next window\n",
               it->strength < 0 ? "prompt" : "strength");
        return 0;
    }
    props = av_frame_alloc();
    if (!props) {
        item_free(it);
        return AVERROR(ENOMEM);
    }
    ret = av_frame_copy_props(props, it->frame);
    if (ret < 0)
        goto fail;
    vf.width = it->frame->width;
    vf.height = it->frame->height;
    vf.rgb = it->frame->data[0];
    vf.stride = it->frame->linesize[0];
    vf.pts = it->frame->pts;
    vf.user = props;
    /* A full window is edited by collect() right after its last frame, so
     * a refused frame means the window was not collected: send after that. */
    while ((err = vdit_stream_send(s->stream, &vf)) == VDIT_ERR_AGAIN) {
        ret = collect(ctx);
        if (ret < 0)
            goto fail;
    }
    if (err < 0) {
        ret = vdit_fail(ctx, s->vctx, "sending a frame", err);
        goto fail;
    }
    ret = av_fifo_write(s->props, &props, 1);
    if (ret < 0)
        goto fail;
    av_frame_free(&it->frame);
    return collect(ctx);
fail:
    av_frame_free(&props);
    item_free(it);
    return ret;
}

/* The end of input: the last partial window, then every frame left. */
static int finish(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    int err = vdit_stream_drain(s->stream), ret;

    if (err < 0)
        return vdit_fail(ctx, s->vctx, "draining", err);
    ret = collect(ctx);
    return ret == AVERROR_EOF ? 0 : ret < 0 ? ret : AVERROR_BUG;
}

static void *worker(void *arg)
{
    AVFilterContext *ctx = arg;
    VditContext *s = ctx->priv;
    VditItem it;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!atomic_load(&s->abort) && !av_fifo_can_read(s->inq) && !s->eof_sent)
            pthread_cond_wait(&s->cond, &s->lock);
        if (atomic_load(&s->abort))
            break;
        if (av_fifo_read(s->inq, &it, 1) >= 0) {
            s->inq_frames -= !!it.frame;
            pthread_cond_broadcast(&s->cond); /* room in the queue */
            pthread_mutex_unlock(&s->lock);
            ret = handle_item(ctx, &it);
            pthread_mutex_lock(&s->lock);
        } else { /* input ended and everything before it is in the engine */
            pthread_mutex_unlock(&s->lock);
            ret = finish(ctx);
            pthread_mutex_lock(&s->lock);
            s->worker_done = 1;
        }
        if (ret < 0 || s->worker_done)
            break;
    }
    s->worker_err = ret < 0 ? ret : 0;
    s->worker_done = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the filter side: FFmpeg's thread --------------------------------------- */

/* Queues an item for the worker, or handles it at once without one. */
static int submit(AVFilterContext *ctx, VditItem *it)
{
    VditContext *s = ctx->priv;
    int ret;

    if (!s->async)
        return handle_item(ctx, it);
    pthread_mutex_lock(&s->lock);
    ret = av_fifo_write(s->inq, it, 1);
    if (ret >= 0) {
        s->inq_frames += !!it->frame;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0)
        item_free(it);
    return ret;
}

/* The stream is opened, and the worker started, once the frame size is known. */
static int config_input(AVFilterLink *inlink)
{
    AVFilterContext *ctx = inlink->dst;
    VditContext *s = ctx->priv;
    vdit_stream_params sp;
    int err;

    stop_worker(ctx);
    vdit_stream_close(&s->stream);
    s->eof_sent = 0;
    vdit_stream_params_default(&sp);
    vdit_fill_gen_params(&sp.gen, s->prompt, s->negative_prompt, s->steps, s->guidance,
                         s->shift, s->sampler, s->seed, s->cache, s->cache_threshold);
    sp.gen.strength = (float)s->strength;
    sp.window = s->window;
    sp.overlap = s->overlap;
    err = vdit_stream_open(s->vctx, &sp, inlink->w, inlink->h, &s->stream);
    if (err < 0)
        return vdit_fail(ctx, s->vctx, "opening the edit stream", err);
    /* Two windows queued ahead: the next window is ready when the worker
     * finishes one even if FFmpeg's thread was held up (encoding), and
     * memory stays bounded (measured: 0.90 of async=0's time against 0.93
     * with one window, docs/ffmpeg.md). */
    s->inq_max = 2 * vdit_stream_latency(s->stream);
    av_log(ctx, AV_LOG_VERBOSE, "%dx%d, strength %.3f, latency %d frames, %s\n", inlink->w,
           inlink->h, s->strength, vdit_stream_latency(s->stream),
           s->async ? "edited in a worker thread" : "edited in the filter thread");
    if (s->async) {
        err = pthread_create(&s->worker, NULL, worker, ctx);
        if (err) {
            av_log(ctx, AV_LOG_ERROR, "cannot start the worker thread\n");
            return AVERROR(err);
        }
        s->worker_running = 1;
    }
    return 0;
}

/* Pushes out every edited frame ready. Returns the number pushed or an error. */
static int push_outputs(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    AVFilterLink *outlink = ctx->outputs[0];
    AVFrame *out;
    int n = 0, ret, got;

    for (;;) {
        pthread_mutex_lock(&s->lock);
        got = av_fifo_read(s->outq, &out, 1) >= 0;
        pthread_mutex_unlock(&s->lock);
        if (!got)
            return n;
        s->nb_out++;
        ret = ff_filter_frame(outlink, out);
        if (ret < 0)
            return ret;
        n++;
    }
}

/* Waits until the worker made room in the input queue, output is ready, or
 * it stopped. */
static void wait_worker(VditContext *s, int for_room)
{
    pthread_mutex_lock(&s->lock);
    while (!s->worker_done && !av_fifo_can_read(s->outq) &&
           !(for_room && s->inq_frames < s->inq_max))
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static int activate(AVFilterContext *ctx)
{
    AVFilterLink *inlink = ctx->inputs[0];
    AVFilterLink *outlink = ctx->outputs[0];
    VditContext *s = ctx->priv;
    AVFrame *in;
    int ret, nb_out, status, done, err, full;
    int64_t pts;

    FF_FILTER_FORWARD_STATUS_BACK(outlink, inlink);

    nb_out = push_outputs(ctx);
    if (nb_out < 0)
        return nb_out;
    pthread_mutex_lock(&s->lock);
    done = s->worker_done;
    err = s->worker_err;
    pthread_mutex_unlock(&s->lock);
    if (err < 0)
        return err;

    if (s->eof_sent) {
        if (done) {
            nb_out = push_outputs(ctx); /* the last ones, queued before done */
            if (nb_out < 0)
                return nb_out;
            av_log(ctx, AV_LOG_VERBOSE, "%" PRId64 " frames in, %" PRId64 " out\n", s->nb_in,
                   s->nb_out);
            ff_outlink_set_status(outlink, s->in_status, s->in_status_pts);
            return 0;
        }
        if (!nb_out)
            wait_worker(s, 0);
        ff_filter_set_ready(ctx, 100);
        return 0;
    }

    for (;;) {
        VditItem it = { 0 };

        if (s->async) {
            pthread_mutex_lock(&s->lock);
            full = s->inq_frames >= s->inq_max;
            pthread_mutex_unlock(&s->lock);
            if (full)
                break;
        }
        ret = ff_inlink_consume_frame(inlink, &in);
        if (ret < 0)
            return ret;
        if (!ret)
            break;
        if (in->width != inlink->w || in->height != inlink->h) {
            av_log(ctx, AV_LOG_ERROR, "frame size changed from %dx%d to %dx%d mid-stream\n",
                   inlink->w, inlink->h, in->width, in->height);
            av_frame_free(&in);
            return AVERROR(EINVAL);
        }
        s->nb_in++;
        it.frame = in;
        it.strength = -1;
        ret = submit(ctx, &it);
        if (ret < 0)
            return ret;
    }
    ret = push_outputs(ctx);
    if (ret < 0)
        return ret;
    nb_out += ret;

    if (ff_inlink_queued_frames(inlink)) {
        /* The queue is full: the worker is a window behind the input. */
        if (!nb_out)
            wait_worker(s, 1);
        ff_filter_set_ready(ctx, 100);
        return 0;
    }
    if (ff_inlink_acknowledge_status(inlink, &status, &pts)) {
        s->in_status = status;
        s->in_status_pts = pts;
        s->eof_sent = 1;
        if (s->async) {
            pthread_mutex_lock(&s->lock);
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
        } else {
            ret = finish(ctx);
            if (ret < 0)
                return ret;
            s->worker_done = 1;
        }
        ff_filter_set_ready(ctx, 100);
        return 0;
    }
    if (nb_out)
        return 0;
    FF_FILTER_FORWARD_WANTED(outlink, inlink);
    return FFERROR_NOT_READY;
}

/* prompt and strength change from the next window (the engine copies the
 * prompt); queued behind the frames already taken. */
static int process_command(AVFilterContext *ctx, const char *cmd, const char *args, char *res,
                           int res_len, int flags)
{
    VditContext *s = ctx->priv;
    VditItem it = { 0 };
    int ret;

    ret = ff_filter_process_command(ctx, cmd, args, res, res_len, flags);
    if (ret < 0 || !s->stream)
        return ret;
    it.strength = -1;
    if (!strcmp(cmd, "prompt")) {
        it.prompt = av_strdup(s->prompt ? s->prompt : "");
        if (!it.prompt)
            return AVERROR(ENOMEM);
    } else {
        it.strength = (float)s->strength;
    }
    return submit(ctx, &it);
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
