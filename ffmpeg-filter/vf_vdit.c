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
 * The stream keeps its pixel format: the filter takes the common YUV and RGB
 * formats (8 to 16 bits) and gives back the one it got, so a yuv420p H.264
 * input is re-encoded as yuv420p and 10-bit video stays 10-bit. Each frame
 * is converted by swscale to the engine's packed RGB (8 bits a sample for
 * 8-bit RGB inputs, 16 bits for everything else, so deep video keeps its
 * precision) with the frame's own matrix and range, and the edited frame back
 * with the same ones. Both conversions run where the engine runs (the worker,
 * or activate() with async=0): the swscale contexts are that thread's alone.
 *
 * Frame properties (pts, duration, SAR, colour tags, side data) are kept
 * aside while the pixels are in the engine and put back on the edited
 * frames, so timing is exactly the input's. Frames outside the timeline's
 * range (enable=...) are kept whole instead and given back as they came, bit
 * for bit; the engine skips the model for windows made only of them.
 */

#include <stdatomic.h>

#include "libavutil/common.h"
#include "libavutil/fifo.h"
#include "libavutil/mem.h"
#include "libavutil/pixdesc.h"
#include "libavutil/pixfmt.h"
#include "libavutil/thread.h"
#include "libavutil/time.h"
#include "libswscale/swscale.h"

#include "vdit_common.h"

/* One entry of the input queue: a frame to edit, or a command. */
typedef struct VditItem {
    AVFrame *frame;   /* a frame, or NULL for a command */
    int keep;         /* frame: outside the timeline's range (enable=...) */
    char *prompt;     /* command: the new prompt (owned), NULL: keep */
    float strength;   /* command: the new strength, < 0: keep */
} VditItem;

/* What the worker holds of a frame while its pixels are in the engine. */
typedef struct VditHeld {
    AVFrame *frame;   /* keep: the input frame itself, given back unchanged;
                         else its properties only (no pixels) */
    int keep;
} VditHeld;

/* accept= flags: inputs edited as they are instead of being refused */
#define ACCEPT_INTERLACED (1 << 0)
#define ACCEPT_HDR        (1 << 1)

/* The conversions to and from the engine's RGB: bicubic, exact rounding, and
 * chroma interpolated at full horizontal resolution on both sides, so a
 * round trip through RGB loses as little as swscale allows. */
#define VDIT_SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP)

typedef struct VditContext {
    const AVClass *class;

    /* options */
    char *prompt, *negative_prompt, *model_path, *decoder, *lora, *device;
    double strength;
    int steps, sampler, window, overlap, async, precision, cache;
    int bypass, fade, accept;
    float guidance, shift, cache_threshold;
    int64_t seed;

    vdit_model *model;
    vdit_ctx *vctx;
    vdit_stream *stream;
    int64_t nb_in, nb_out;
    int in_status;     /* the status that ended the input */
    int64_t in_status_pts;
    int eof_sent;      /* the end of input was queued */

    /* The link's format, set by config_input() before the worker starts. */
    enum AVPixelFormat pix_fmt;    /* of the frames in and out */
    enum AVPixelFormat sws_fmt;    /* pix_fmt as swscale is told it (yuvj: yuv) */
    enum AVPixelFormat engine_fmt; /* AV_PIX_FMT_RGB24 or AV_PIX_FMT_RGB48 */
    int w, h;          /* the link's size: the worker never reads the links, which
                          the graph may free while uninit() waits for it */
    int is_rgb;        /* pix_fmt is RGB: no matrix, full range */
    int full_range;    /* pix_fmt is a yuvj format: full range whatever the tag */

    /* The engine side: the worker (async) or activate() (async=0). */
    AVFifo *held;      /* VditHeld: frames in the engine, in order */
    struct SwsContext *sws_in, *sws_out; /* pix_fmt to engine_fmt and back */
    int in_cs, in_full, out_cs, out_full; /* the matrix and range each is set to, -1: none */
    AVFrame *rgb;      /* one frame of engine_fmt: what is sent (the engine copies it) */
    int warned_cs;     /* a matrix swscale does not know was reported */

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
    { "bypass", "convert to the engine's pixel format and back without the model (a check)",
      OFFSET(bypass), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, VDIT_FLAGS },
    { "fade", "frames over which the edit fades in and out next to frames outside enable",
      OFFSET(fade), AV_OPT_TYPE_INT, { .i64 = 4 }, 0, 64, VDIT_FLAGS },
    { "accept", "inputs to edit as they are instead of refusing them", OFFSET(accept),
      AV_OPT_TYPE_FLAGS, { .i64 = 0 }, 0, ACCEPT_INTERLACED | ACCEPT_HDR, VDIT_FLAGS, "accept" },
        { "interlaced", "interlaced frames (else: deinterlace first)", 0, AV_OPT_TYPE_CONST,
          { .i64 = ACCEPT_INTERLACED }, 0, 0, VDIT_FLAGS, "accept" },
        { "hdr", "PQ and HLG frames (else: tonemap first)", 0, AV_OPT_TYPE_CONST,
          { .i64 = ACCEPT_HDR }, 0, 0, VDIT_FLAGS, "accept" },
    { NULL }
};

AVFILTER_DEFINE_CLASS(vdit);

/* The same list on the input and the output, set as common formats: FFmpeg
 * negotiates one format for both, so the output is in the input's format.
 * Anything else is converted to the closest of these by FFmpeg's scaler. */
static const enum AVPixelFormat vdit_pix_fmts[] = {
    AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUV422P, AV_PIX_FMT_YUVJ422P,
    AV_PIX_FMT_YUV444P, AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_NV12, AV_PIX_FMT_NV21,
    AV_PIX_FMT_P010LE, AV_PIX_FMT_YUV420P10LE, AV_PIX_FMT_YUV422P10LE, AV_PIX_FMT_YUV444P10LE,
    AV_PIX_FMT_YUV420P12LE, AV_PIX_FMT_YUV422P12LE, AV_PIX_FMT_YUV444P12LE,
    AV_PIX_FMT_YUV420P16LE, AV_PIX_FMT_YUV444P16LE,
    AV_PIX_FMT_GBRP, AV_PIX_FMT_GBRP10LE, AV_PIX_FMT_GBRP12LE, AV_PIX_FMT_GBRP16LE,
    AV_PIX_FMT_RGB24, AV_PIX_FMT_BGR24, AV_PIX_FMT_RGB48LE, AV_PIX_FMT_BGR48LE,
    AV_PIX_FMT_NONE
};

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
    s->held = av_fifo_alloc2(16, sizeof(VditHeld), AV_FIFO_FLAG_AUTO_GROW);
    s->inq = av_fifo_alloc2(16, sizeof(VditItem), AV_FIFO_FLAG_AUTO_GROW);
    s->outq = av_fifo_alloc2(16, sizeof(AVFrame *), AV_FIFO_FLAG_AUTO_GROW);
    if (!s->held || !s->inq || !s->outq)
        return AVERROR(ENOMEM);
    if (pthread_mutex_init(&s->lock, NULL))
        return AVERROR(ENOMEM);
    if (pthread_cond_init(&s->cond, NULL)) {
        pthread_mutex_destroy(&s->lock);
        return AVERROR(ENOMEM);
    }
    s->lock_init = 1;
    if (s->bypass) {
        av_log(ctx, AV_LOG_VERBOSE, "bypass: frames are converted and back, no model\n");
        return 0;
    }
    return vdit_open_model(ctx, s->model_path, s->decoder, s->lora, s->device, s->precision, on_progress,
                           &s->model, &s->vctx);
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
    VditHeld h;
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
    while (s->held && av_fifo_read(s->held, &h, 1) >= 0)
        av_frame_free(&h.frame);
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
    sws_freeContext(s->sws_in);
    sws_freeContext(s->sws_out);
    av_frame_free(&s->rgb);
    av_fifo_freep2(&s->held);
    av_fifo_freep2(&s->inq);
    av_fifo_freep2(&s->outq);
    if (s->lock_init) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
    }
}

/* ---- conversions: the engine side ---------------------------------------- */

/* The matrix (an AVColorSpace, which is also swscale's SWS_CS_* number for
 * the matrices it has) and range (1: full) a frame of `height` lines is
 * converted with: its own tags. An unspecified matrix is BT.601 below 720
 * lines and BT.709 from 720 (what players assume), an unspecified YUV range
 * is limited (what YUV video is unless it says otherwise); the yuvj formats
 * are full range whatever their tag says. */
static void frame_colour(AVFilterContext *ctx, const AVFrame *f, int height, int *cs, int *full)
{
    VditContext *s = ctx->priv;

    *full = s->full_range || f->color_range == AVCOL_RANGE_JPEG;
    switch (f->colorspace) {
    case AVCOL_SPC_BT709:
    case AVCOL_SPC_FCC:
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M:
    case AVCOL_SPC_SMPTE240M:
    case AVCOL_SPC_BT2020_NCL:
        *cs = f->colorspace;
        return;
    case AVCOL_SPC_UNSPECIFIED:
    case AVCOL_SPC_RESERVED:
        break;
    default:
        /* YCgCo, BT.2020 CL, ICtCp...: no swscale matrix; convert as if
         * untagged rather than fail, and say so once. */
        if (!s->warned_cs)
            av_log(ctx, AV_LOG_WARNING, "matrix %s not supported by swscale: converted as %s\n",
                   av_color_space_name(f->colorspace), height >= 720 ? "BT.709" : "BT.601");
        s->warned_cs = 1;
        break;
    }
    *cs = height >= 720 ? AVCOL_SPC_BT709 : AVCOL_SPC_SMPTE170M;
}

/* Gives a YUV <-> RGB context the matrix and range of frame f when they are
 * not those it has (*cur_cs, *cur_full): set on the first frame and again
 * only if the tags change mid-stream, and each choice is logged once. The
 * RGB side is full range. */
static int set_colour(AVFilterContext *ctx, struct SwsContext *sws, int to_rgb, const AVFrame *f,
                      int *cur_cs, int *cur_full)
{
    VditContext *s = ctx->priv;
    const int *coefs;
    int cs, full, ret;

    if (s->is_rgb)
        return 0;
    frame_colour(ctx, f, s->h, &cs, &full);
    if (cs == *cur_cs && full == *cur_full)
        return 0;
    coefs = sws_getCoefficients(cs);
    ret = to_rgb ? sws_setColorspaceDetails(sws, coefs, full, coefs, 1, 0, 1 << 16, 1 << 16)
                 : sws_setColorspaceDetails(sws, coefs, 1, coefs, full, 0, 1 << 16, 1 << 16);
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "swscale refused the %s matrix in %s range\n",
               av_color_space_name(cs), full ? "full" : "limited");
        return AVERROR(EINVAL);
    }
    if (to_rgb)
        av_log(ctx, AV_LOG_VERBOSE, "converting with the %s matrix, %s range\n",
               av_color_space_name(cs), full ? "full" : "limited");
    *cur_cs = cs;
    *cur_full = full;
    return 0;
}

/* Converts frame in to the engine's format, into s->rgb. */
static int to_engine(AVFilterContext *ctx, const AVFrame *in)
{
    VditContext *s = ctx->priv;
    int ret = set_colour(ctx, s->sws_in, 1, in, &s->in_cs, &s->in_full);

    if (ret < 0)
        return ret;
    ret = sws_scale(s->sws_in, (const uint8_t *const *)in->data, in->linesize, 0, in->height,
                    s->rgb->data, s->rgb->linesize);
    return ret < 0 ? ret : 0;
}

/* Queues the output frame of h (taken): the input frame itself if it was
 * kept, else a new frame in the input's format and with its properties,
 * converted from the engine's pixels rgb. */
static int emit(AVFilterContext *ctx, VditHeld *h, const uint8_t *rgb, ptrdiff_t stride)
{
    VditContext *s = ctx->priv;
    AVFrame *out;
    int ret = 0;

    if (h->keep) {
        out = h->frame; /* bit-exact, as it came */
        h->frame = NULL;
    } else {
        const uint8_t *src[4] = { rgb };
        const int src_stride[4] = { (int)stride };

        /* A plain buffer, not the link's pool: this may be the worker thread. */
        out = av_frame_alloc();
        if (!out) {
            ret = AVERROR(ENOMEM);
        } else {
            out->format = s->pix_fmt;
            out->width = s->w;
            out->height = s->h;
            ret = av_frame_get_buffer(out, 0);
            if (ret >= 0)
                ret = av_frame_copy_props(out, h->frame);
        }
        av_frame_free(&h->frame);
        /* back with the matrix and range it came with (copied above) */
        if (ret >= 0)
            ret = set_colour(ctx, s->sws_out, 0, out, &s->out_cs, &s->out_full);
        if (ret >= 0)
            ret = sws_scale(s->sws_out, src, src_stride, 0, out->height, out->data,
                            out->linesize);
        if (ret < 0) {
            av_frame_free(&out);
            return ret;
        }
    }
    pthread_mutex_lock(&s->lock);
    ret = av_fifo_write(s->outq, &out, 1);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (ret < 0)
        av_frame_free(&out);
    return ret;
}

/* ---- the engine side: runs in the worker (async) or in activate() ---------- */

/* Moves every frame the engine has ready into the output queue. Returns 0
 * when it needs more input, AVERROR_EOF once the drained stream is empty, or
 * an error. Processes a window when one is complete (the expensive part). */
static int collect(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    int64_t t0 = av_gettime_relative();
    int first = 1;

    for (;;) {
        vdit_frame vf = { 0 };
        VditHeld h;
        int err = vdit_stream_receive(s->stream, &vf), ret;

        if (err == VDIT_ERR_AGAIN)
            return 0;
        if (err == VDIT_ERR_EOF)
            return AVERROR_EOF;
        if (err == VDIT_ERR_CANCELLED && atomic_load(&s->abort))
            return AVERROR_EXIT; /* uninit stopped it: nobody waits for the frames */
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "editing a window", err);
        if (av_fifo_read(s->held, &h, 1) < 0 || h.frame != vf.user) {
            av_log(ctx, AV_LOG_ERROR, "libvdit returned a frame out of order\n");
            return AVERROR_BUG;
        }
        if (vf.width != s->w || vf.height != s->h) {
            av_log(ctx, AV_LOG_ERROR, "libvdit returned %dx%d for a %dx%d stream\n", vf.width,
                   vf.height, s->w, s->h);
            av_frame_free(&h.frame);
            return AVERROR_BUG;
        }
        if (first && av_gettime_relative() - t0 > 100000)
            av_log(ctx, AV_LOG_VERBOSE, "window done in %.2f s\n",
                   (av_gettime_relative() - t0) / 1e6);
        first = 0;
        ret = emit(ctx, &h, vf.rgb, vf.stride);
        if (ret < 0)
            return ret;
    }
}

/* Hands one frame (taken) or command to the engine, then collects output. */
static int handle_item(AVFilterContext *ctx, VditItem *it)
{
    VditContext *s = ctx->priv;
    vdit_frame vf = { 0 };
    VditHeld h = { 0 };
    int err, ret;

    if (!it->frame) {
        if (!s->stream) { /* bypass: nothing to update */
            av_freep(&it->prompt);
            return 0;
        }
        err = vdit_stream_update(s->stream, it->prompt, it->strength);
        av_freep(&it->prompt);
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "updating the stream", err);
        av_log(ctx, AV_LOG_VERBOSE, "%s set for the next window\n",
               it->strength < 0 ? "prompt" : "strength");
        return 0;
    }
    h.keep = it->keep;
    if (h.keep && s->bypass) { /* nothing to convert: given back as it came */
        h.frame = it->frame;
        it->frame = NULL;
        return emit(ctx, &h, NULL, 0);
    }
    /* Kept frames are converted and sent too: a window they share with
     * frames to edit is edited whole, so the edit stays consistent. */
    ret = to_engine(ctx, it->frame);
    if (ret < 0)
        goto fail;
    if (s->bypass) {
        h.frame = it->frame; /* its properties for the output */
        it->frame = NULL;
        return emit(ctx, &h, s->rgb->data[0], s->rgb->linesize[0]);
    }
    if (h.keep) {
        h.frame = it->frame;
        it->frame = NULL;
    } else {
        /* Only the properties wait with the engine, not the input's pixels. */
        h.frame = av_frame_alloc();
        if (!h.frame) {
            ret = AVERROR(ENOMEM);
            goto fail;
        }
        ret = av_frame_copy_props(h.frame, it->frame);
        if (ret < 0)
            goto fail;
    }
    vf.width = s->rgb->width;
    vf.height = s->rgb->height;
    vf.rgb = s->rgb->data[0];
    vf.stride = s->rgb->linesize[0];
    vf.pts = h.frame->pts;
    vf.user = h.frame;
    /* A full window is edited by collect() right after its last frame, so
     * a refused frame means the window was not collected: send after that. */
    while ((err = vdit_stream_send_flags(s->stream, &vf, h.keep ? VDIT_FRAME_KEEP : 0)) ==
           VDIT_ERR_AGAIN) {
        ret = collect(ctx);
        if (ret < 0)
            goto fail;
    }
    if (err < 0) {
        ret = vdit_fail(ctx, s->vctx, "sending a frame", err);
        goto fail;
    }
    ret = av_fifo_write(s->held, &h, 1);
    if (ret < 0)
        goto fail;
    av_frame_free(&it->frame);
    return collect(ctx);
fail:
    av_frame_free(&h.frame);
    item_free(it);
    return ret;
}

/* The end of input: the last partial window, then every frame left. */
static int finish(AVFilterContext *ctx)
{
    VditContext *s = ctx->priv;
    int err, ret;

    if (!s->stream) /* bypass: every frame went out as it came */
        return 0;
    err = vdit_stream_drain(s->stream);
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

/* swscale's name for a format: the yuvj formats are their yuv twins with the
 * range given apart (swscale warns about them otherwise). */
static enum AVPixelFormat sws_format(enum AVPixelFormat fmt, int *full_range)
{
    *full_range = 1;
    switch (fmt) {
    case AV_PIX_FMT_YUVJ420P: return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: return AV_PIX_FMT_YUV444P;
    default: *full_range = 0; return fmt;
    }
}

/* Conversions set up for the link's format and size. */
static int config_conversions(AVFilterContext *ctx, AVFilterLink *inlink)
{
    VditContext *s = ctx->priv;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(inlink->format);

    s->pix_fmt = inlink->format;
    s->w = inlink->w;
    s->h = inlink->h;
    s->sws_fmt = sws_format(s->pix_fmt, &s->full_range);
    s->is_rgb = !!(desc->flags & AV_PIX_FMT_FLAG_RGB);
    /* 8-bit RGB loses nothing in 8-bit RGB; YUV (even 8-bit: its RGB values
     * fall between 8-bit codes) and deeper RGB go through 16 bits. */
    s->engine_fmt = s->is_rgb && desc->comp[0].depth == 8 ? AV_PIX_FMT_RGB24
                                                          : AV_PIX_FMT_RGB48;
    s->sws_in = sws_getCachedContext(s->sws_in, inlink->w, inlink->h, s->sws_fmt, inlink->w,
                                     inlink->h, s->engine_fmt, VDIT_SWS_FLAGS, NULL, NULL, NULL);
    s->sws_out = sws_getCachedContext(s->sws_out, inlink->w, inlink->h, s->engine_fmt,
                                      inlink->w, inlink->h, s->sws_fmt, VDIT_SWS_FLAGS, NULL,
                                      NULL, NULL);
    if (!s->sws_in || !s->sws_out) {
        av_log(ctx, AV_LOG_ERROR, "swscale cannot convert %s to %s and back\n",
               av_get_pix_fmt_name(s->pix_fmt), av_get_pix_fmt_name(s->engine_fmt));
        return AVERROR(EINVAL);
    }
    s->in_cs = s->in_full = s->out_cs = s->out_full = -1; /* set on the first frame */
    av_frame_free(&s->rgb);
    s->rgb = av_frame_alloc();
    if (!s->rgb)
        return AVERROR(ENOMEM);
    s->rgb->format = s->engine_fmt;
    s->rgb->width = inlink->w;
    s->rgb->height = inlink->h;
    return av_frame_get_buffer(s->rgb, 0);
}

/* The stream is opened, and the worker started, once the frame size is known. */
static int config_input(AVFilterLink *inlink)
{
    AVFilterContext *ctx = inlink->dst;
    VditContext *s = ctx->priv;
    vdit_stream_params sp;
    int err, ret;

    stop_worker(ctx);
    vdit_stream_close(&s->stream);
    s->eof_sent = 0;
    ret = config_conversions(ctx, inlink);
    if (ret < 0)
        return ret;
    if (s->bypass) {
        s->inq_max = 16;
    } else {
        vdit_stream_params_default(&sp);
        vdit_fill_gen_params(&sp.gen, s->prompt, s->negative_prompt, s->steps, s->guidance,
                             s->shift, s->sampler, s->seed, s->cache, s->cache_threshold);
        sp.gen.strength = (float)s->strength;
        sp.window = s->window;
        sp.overlap = s->overlap;
        sp.format = s->engine_fmt == AV_PIX_FMT_RGB24 ? VDIT_PIXFMT_RGB24 : VDIT_PIXFMT_RGB48;
        /* Fading needs frames outside the range, which only a timeline
         * makes; without one it would only delay the output. */
        sp.fade = ctx->enable_str ? s->fade : 0;
        err = vdit_stream_open(s->vctx, &sp, inlink->w, inlink->h, &s->stream);
        if (err < 0)
            return vdit_fail(ctx, s->vctx, "opening the edit stream", err);
        /* Two windows queued ahead: the next window is ready when the worker
         * finishes one even if FFmpeg's thread was held up (encoding), and
         * memory stays bounded (measured: 0.90 of async=0's time against 0.93
         * with one window, docs/ffmpeg.md). */
        s->inq_max = 2 * vdit_stream_latency(s->stream);
    }
    if (s->bypass)
        av_log(ctx, AV_LOG_VERBOSE, "%dx%d %s to %s and back, no model (bypass), %s\n",
               inlink->w, inlink->h, av_get_pix_fmt_name(s->pix_fmt),
               av_get_pix_fmt_name(s->engine_fmt),
               s->async ? "in a worker thread" : "in the filter thread");
    else
        av_log(ctx, AV_LOG_VERBOSE, "%dx%d %s edited as %s, strength %.3f, latency %d frames, "
               "%s\n", inlink->w, inlink->h, av_get_pix_fmt_name(s->pix_fmt),
               av_get_pix_fmt_name(s->engine_fmt), s->strength,
               vdit_stream_latency(s->stream),
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

/* Refuses, with what to do instead, an input frame that is not what the
 * filter can take (any frame) or the model can edit (frames to edit, unless
 * accept= says otherwise). */
static int check_frame(AVFilterContext *ctx, const AVFrame *in, int keep)
{
    AVFilterLink *inlink = ctx->inputs[0];
    VditContext *s = ctx->priv;

    if (in->width != inlink->w || in->height != inlink->h) {
        av_log(ctx, AV_LOG_ERROR, "frame size changed from %dx%d to %dx%d mid-stream\n",
               inlink->w, inlink->h, in->width, in->height);
        return AVERROR(EINVAL);
    }
    if (in->format != inlink->format) {
        av_log(ctx, AV_LOG_ERROR, "pixel format changed from %s to %s mid-stream\n",
               av_get_pix_fmt_name(inlink->format), av_get_pix_fmt_name(in->format));
        return AVERROR(EINVAL);
    }
    if (keep)
        return 0;
    /* The model saw whole progressive frames: two fields woven into one
     * frame would be edited as combing. */
    if (VDIT_FRAME_INTERLACED(in) && !(s->accept & ACCEPT_INTERLACED)) {
        av_log(ctx, AV_LOG_ERROR, "interlaced input: deinterlace first (-vf bwdif,vdit=... or "
               "yadif), or set accept=interlaced to edit the frames as they are\n");
        return AVERROR(EINVAL);
    }
    /* The model saw SDR video: PQ or HLG code values would be edited as if
     * they were BT.709's, shifting brightness and colour. */
    if ((in->color_trc == AVCOL_TRC_SMPTE2084 || in->color_trc == AVCOL_TRC_ARIB_STD_B67) &&
        !(s->accept & ACCEPT_HDR)) {
        av_log(ctx, AV_LOG_ERROR, "HDR input (%s transfer): tonemap to SDR first (zscale and "
               "tonemap, e.g. zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
               "tonemap=hable,zscale=t=bt709:m=bt709:r=tv,vdit=...; or libplacebo), or set "
               "accept=hdr to edit the frames as they are\n",
               in->color_trc == AVCOL_TRC_SMPTE2084 ? "PQ" : "HLG");
        return AVERROR(EINVAL);
    }
    return 0;
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
        /* Consuming evaluated enable= at this frame (timeline support is
         * internal: libavfilter calls activate() for every frame). */
        it.keep = ctx->is_disabled;
        ret = check_frame(ctx, in, it.keep);
        if (ret < 0) {
            av_frame_free(&in);
            return ret;
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
    .flags           = AVFILTER_FLAG_SUPPORT_TIMELINE_INTERNAL,
    FILTER_INPUTS(vdit_inputs),
    FILTER_OUTPUTS(vdit_outputs),
    FILTER_PIXFMTS_ARRAY(vdit_pix_fmts),
};
