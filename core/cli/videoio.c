/* Video and image files for the vdit command through FFmpeg 5.1's libraries.
 * Everything is converted to or from packed RGB24 with libswscale; the
 * container and codec of an output follow its file name's extension. */
#include "videoio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef VDIT_HAVE_LIBAV

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

/* Accurate rounding and full chroma interpolation: conversions used for
 * lossless-ish round trips (y4m yuv444p) stay within a level or two. */
#define SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP)

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* FFmpeg's encoders chat at INFO level (x264 prints its whole settings);
 * a command-line tool keeps only errors unless the user raised the level. */
static void quiet_libav(void)
{
    if (av_log_get_level() == AV_LOG_INFO)
        av_log_set_level(AV_LOG_ERROR);
}

static const char *averr(int e, char *buf, size_t n)
{
    av_strerror(e, buf, n);
    return buf;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct reader {
    vdit_video *v;
    size_t cap_frames;
    struct SwsContext *sws;
} reader;

static int append_frame(reader *r, const AVFrame *f, char *err, size_t errlen, const char *path)
{
    if (!r->v) {
        r->v = vdit_video_new(f->width, f->height, 0);
        if (!r->v)
            return fail(err, errlen, VDIT_ERR_NOMEM, "%s: cannot hold %dx%d frames", path,
                        f->width, f->height);
        r->cap_frames = 1;
    }
    vdit_video *v = r->v;
    size_t fb = (size_t)v->width * v->height * 3;
    if ((size_t)v->n_frames == r->cap_frames || v->n_frames == 0) {
        size_t nc = v->n_frames ? r->cap_frames * 2 : 1;
        if (nc > SIZE_MAX / fb)
            return fail(err, errlen, VDIT_ERR_NOMEM, "%s: too many frames", path);
        uint8_t *nb = realloc(v->rgb, nc * fb);
        if (!nb)
            return fail(err, errlen, VDIT_ERR_NOMEM, "%s: out of memory after %d frames", path,
                        v->n_frames);
        v->rgb = nb;
        r->cap_frames = nc;
    }
    /* frames of another size (rare: streams that change resolution) are
     * scaled to the first frame's size */
    r->sws = sws_getCachedContext(r->sws, f->width, f->height, (enum AVPixelFormat)f->format,
                                  v->width, v->height, AV_PIX_FMT_RGB24, SWS_FLAGS, NULL, NULL,
                                  NULL);
    if (!r->sws)
        return fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s to RGB",
                    path, av_get_pix_fmt_name((enum AVPixelFormat)f->format));
    uint8_t *dst[4] = { v->rgb + (size_t)v->n_frames * fb };
    int dst_ls[4] = { v->width * 3 };
    sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_ls);
    v->n_frames++;
    return 0;
}

int vio_read(const char *path, vdit_video **out, double *fps, char *err, size_t errlen)
{
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = NULL;
    AVFrame *frame = NULL;
    reader r = { 0 };
    char eb[128];
    int ret = 0, e;
    *out = NULL;
    if (fps)
        *fps = 25;
    quiet_libav();
    if (!path)
        return fail(err, errlen, VDIT_ERR_INVALID_ARG, "no input file");
    if ((e = avformat_open_input(&fmt, path, NULL, NULL)) < 0)
        return fail(err, errlen, e == AVERROR(ENOENT) ? VDIT_ERR_MISSING : VDIT_ERR_IO,
                    "%s: cannot open: %s", path, averr(e, eb, sizeof(eb)));
    if ((e = avformat_find_stream_info(fmt, NULL)) < 0) {
        ret = fail(err, errlen, VDIT_ERR_FORMAT, "%s: cannot read stream info: %s", path,
                   averr(e, eb, sizeof(eb)));
        goto done;
    }
    int si = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (si < 0) {
        ret = fail(err, errlen, VDIT_ERR_FORMAT, "%s: no video stream", path);
        goto done;
    }
    AVStream *st = fmt->streams[si];
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: no decoder for %s", path,
                   avcodec_get_name(st->codecpar->codec_id));
        goto done;
    }
    dec = avcodec_alloc_context3(codec);
    pkt = av_packet_alloc();
    frame = av_frame_alloc();
    if (!dec || !pkt || !frame) {
        ret = fail(err, errlen, VDIT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    avcodec_parameters_to_context(dec, st->codecpar);
    dec->thread_count = 2;
    if ((e = avcodec_open2(dec, codec, NULL)) < 0) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: cannot open the %s decoder: %s", path,
                   codec->name, averr(e, eb, sizeof(eb)));
        goto done;
    }
    AVRational fr = av_guess_frame_rate(fmt, st, NULL);
    if (fps && fr.num > 0 && fr.den > 0)
        *fps = av_q2d(fr);
    int eof = 0;
    while (!ret) {
        if (!eof) {
            e = av_read_frame(fmt, pkt);
            if (e == AVERROR_EOF) {
                eof = 1;
                e = avcodec_send_packet(dec, NULL);
            } else if (e < 0) {
                ret = fail(err, errlen, VDIT_ERR_IO, "%s: read error: %s", path,
                           averr(e, eb, sizeof(eb)));
                break;
            } else {
                if (pkt->stream_index == si)
                    e = avcodec_send_packet(dec, pkt);
                av_packet_unref(pkt);
            }
            if (e < 0 && e != AVERROR(EAGAIN) && e != AVERROR_EOF) {
                ret = fail(err, errlen, VDIT_ERR_FORMAT, "%s: cannot decode: %s", path,
                           averr(e, eb, sizeof(eb)));
                break;
            }
        }
        for (;;) {
            e = avcodec_receive_frame(dec, frame);
            if (e == AVERROR(EAGAIN))
                break;
            if (e == AVERROR_EOF)
                goto finished;
            if (e < 0) {
                ret = fail(err, errlen, VDIT_ERR_FORMAT, "%s: decoding failed: %s", path,
                           averr(e, eb, sizeof(eb)));
                break;
            }
            ret = append_frame(&r, frame, err, errlen, path);
            av_frame_unref(frame);
            if (ret)
                break;
        }
        if (eof && !ret) /* decoder drained without EOF: nothing more will come */
            break;
    }
finished:
    if (!ret && (!r.v || r.v->n_frames == 0))
        ret = fail(err, errlen, VDIT_ERR_FORMAT, "%s: no frames decoded", path);
done:
    if (!ret) {
        *out = r.v;
        r.v = NULL;
    }
    vdit_video_free(&r.v);
    sws_freeContext(r.sws);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return ret;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct target {
    const char *muxer;
    enum AVCodecID codec;
    const char *encoder; /* preferred encoder by name, or NULL */
    enum AVPixelFormat pix;
} target;

static const char *ext_of(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

static int pick_target(const char *path, const vdit_video *v, target *t, char *err, size_t errlen)
{
    const char *ext = ext_of(path);
    int odd = (v->width | v->height) & 1;
    memset(t, 0, sizeof(*t));
    if (!strcasecmp(ext, "y4m")) {
        *t = (target){ "yuv4mpegpipe", AV_CODEC_ID_WRAPPED_AVFRAME, NULL, AV_PIX_FMT_YUV444P };
    } else if (!strcasecmp(ext, "mp4") || !strcasecmp(ext, "mkv") || !strcasecmp(ext, "mov")) {
        const char *mux = !strcasecmp(ext, "mkv") ? "matroska" : !strcasecmp(ext, "mov") ? "mov"
                                                                                       : "mp4";
        if (avcodec_find_encoder_by_name("libx264")) {
            /* 4:2:0 needs even sizes; odd ones keep full chroma */
            *t = (target){ mux, AV_CODEC_ID_H264, "libx264",
                           odd ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_YUV420P };
        } else {
            if (odd)
                return fail(err, errlen, VDIT_ERR_UNSUPPORTED,
                            "%s: %dx%d: MPEG-4 needs even width and height", path, v->width,
                            v->height);
            *t = (target){ mux, AV_CODEC_ID_MPEG4, NULL, AV_PIX_FMT_YUV420P };
        }
    } else if (!strcasecmp(ext, "png")) {
        if (v->n_frames > 1 && !strchr(path, '%'))
            return fail(err, errlen, VDIT_ERR_INVALID_ARG,
                        "%s: %d frames need a %%d pattern in the name (frame_%%04d.png)", path,
                        v->n_frames);
        *t = (target){ "image2", AV_CODEC_ID_PNG, NULL, AV_PIX_FMT_RGB24 };
    } else if (!strcasecmp(ext, "gif")) {
        *t = (target){ "gif", AV_CODEC_ID_GIF, NULL, AV_PIX_FMT_RGB8 };
    } else {
        return fail(err, errlen, VDIT_ERR_UNSUPPORTED,
                    "%s: %s%s%s (use .mp4, .mkv, .mov, .y4m, .png or .gif)", path,
                    ext[0] ? "unknown output type '." : "no extension to pick the format from",
                    ext, ext[0] ? "'" : "");
    }
    return 0;
}

/* The folder of `path` ("." when it has none) exists and is writable. */
static int folder_writable(const char *path, char *err, size_t errlen)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof(dir))
        return fail(err, errlen, VDIT_ERR_IO, "%s: path too long", path);
    if (n)
        memcpy(dir, path, n);
    else
        dir[n++] = '.';
    dir[n] = 0;
    if (access(dir, W_OK))
        return fail(err, errlen, VDIT_ERR_IO, "%s: cannot write into folder '%s': %s", path, dir,
                    strerror(errno));
    return 0;
}

int vio_check_output(const char *path, int n_frames, char *err, size_t errlen)
{
    if (!path || !path[0])
        return fail(err, errlen, VDIT_ERR_INVALID_ARG, "no output file");
    /* the size does not matter for the choice of format: an even one */
    vdit_video v = { .width = 2, .height = 2, .n_frames = n_frames > 0 ? n_frames : 1 };
    target t;
    int ret = pick_target(path, &v, &t, err, errlen);
    return ret ? ret : folder_writable(path, err, errlen);
}

/* What to add to a write error: a full disk or a file-size limit leaves a
 * file that is finished (its trailer written as far as it goes) and holds
 * the frames written before. */
static const char *full_hint(int e)
{
    return e == AVERROR(ENOSPC) || e == AVERROR(EFBIG) || e == AVERROR(EDQUOT)
               ? " (disk full or file size limit: the file holds the frames written before)"
               : "";
}

static int drain(AVFormatContext *fmt, AVCodecContext *enc, AVStream *st, AVPacket *pkt,
                 const char *path, char *err, size_t errlen)
{
    char eb[128];
    for (;;) {
        int e = avcodec_receive_packet(enc, pkt);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
            return 0;
        if (e < 0)
            return fail(err, errlen, VDIT_ERR_INTERNAL, "%s: encoding failed: %s", path,
                        averr(e, eb, sizeof(eb)));
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        e = av_interleaved_write_frame(fmt, pkt);
        if (e < 0)
            return fail(err, errlen, VDIT_ERR_IO, "%s: write error: %s%s", path,
                        averr(e, eb, sizeof(eb)), full_hint(e));
    }
}

struct vio_writer {
    char *path;
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    enum AVPixelFormat pix;
    int width, height, header, n, failed;
};

static void writer_free(vio_writer *w)
{
    if (w->fmt && !(w->fmt->oformat->flags & AVFMT_NOFILE))
        avio_closep(&w->fmt->pb);
    sws_freeContext(w->sws);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    avcodec_free_context(&w->enc);
    avformat_free_context(w->fmt);
    free(w->path);
    free(w);
}

int vio_writer_open(const char *path, int width, int height, int n_frames, double fps,
                    vio_writer **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path || width <= 0 || height <= 0 || n_frames <= 0)
        return fail(err, errlen, VDIT_ERR_INVALID_ARG, "%s: nothing to write",
                    path ? path : "(no file)");
    if (!(fps > 0 && fps < 1000))
        fps = 16;
    quiet_libav();
    target t;
    vdit_video shape = { .width = width, .height = height, .n_frames = n_frames };
    int ret = pick_target(path, &shape, &t, err, errlen);
    if (ret)
        return ret;
    vio_writer *w = calloc(1, sizeof(*w));
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return fail(err, errlen, VDIT_ERR_NOMEM, "%s: out of memory", path);
    }
    w->width = width;
    w->height = height;
    w->pix = t.pix;
    AVDictionary *opts = NULL, *mux_opts = NULL;
    char eb[128];
    int e;
    if ((e = avformat_alloc_output_context2(&w->fmt, NULL, t.muxer, path)) < 0 || !w->fmt) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: no %s muxer: %s", path, t.muxer,
                   averr(e, eb, sizeof(eb)));
        goto fail;
    }
    const AVCodec *codec = t.encoder ? avcodec_find_encoder_by_name(t.encoder)
                                     : avcodec_find_encoder(t.codec);
    if (!codec) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: no %s encoder in this FFmpeg", path,
                   avcodec_get_name(t.codec));
        goto fail;
    }
    w->st = avformat_new_stream(w->fmt, NULL);
    w->enc = avcodec_alloc_context3(codec);
    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->st || !w->enc || !w->frame || !w->pkt) {
        ret = fail(err, errlen, VDIT_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    AVRational rate = av_d2q(fps, 100000);
    AVCodecContext *enc = w->enc;
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = t.pix;
    enc->time_base = av_inv_q(rate);
    enc->framerate = rate;
    enc->sample_aspect_ratio = (AVRational){ 1, 1 };
    enc->thread_count = 2;
    if (t.codec == AV_CODEC_ID_H264) {
        av_dict_set(&opts, "preset", "fast", 0);
        av_dict_set(&opts, "crf", "18", 0);
    } else if (t.codec == AV_CODEC_ID_MPEG4) {
        enc->bit_rate = 0;
        enc->global_quality = FF_QP2LAMBDA * 3;
        enc->flags |= AV_CODEC_FLAG_QSCALE;
    }
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((e = avcodec_open2(enc, codec, &opts)) < 0) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: cannot open the %s encoder: %s", path,
                   codec->name, averr(e, eb, sizeof(eb)));
        goto fail;
    }
    avcodec_parameters_from_context(w->st->codecpar, enc);
    w->st->time_base = enc->time_base;
    w->st->avg_frame_rate = rate;
    w->st->r_frame_rate = rate;
    if (!(w->fmt->oformat->flags & AVFMT_NOFILE)
        && (e = avio_open(&w->fmt->pb, path, AVIO_FLAG_WRITE)) < 0) {
        ret = fail(err, errlen, VDIT_ERR_IO, "%s: cannot create: %s", path,
                   averr(e, eb, sizeof(eb)));
        goto fail;
    }
    if (t.codec == AV_CODEC_ID_PNG && n_frames == 1 && !strchr(path, '%'))
        av_dict_set(&mux_opts, "update", "1", 0); /* one image, no pattern */
    if ((e = avformat_write_header(w->fmt, &mux_opts)) < 0) {
        ret = fail(err, errlen, VDIT_ERR_IO, "%s: cannot write the header: %s", path,
                   averr(e, eb, sizeof(eb)));
        goto fail;
    }
    w->header = 1;
    w->sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, t.pix, SWS_FLAGS,
                            NULL, NULL, NULL);
    if (!w->sws) {
        ret = fail(err, errlen, VDIT_ERR_UNSUPPORTED, "%s: no RGB to %s conversion", path,
                   av_get_pix_fmt_name(t.pix));
        goto fail;
    }
    av_dict_free(&opts);
    av_dict_free(&mux_opts);
    *out = w;
    return 0;
fail:
    av_dict_free(&opts);
    av_dict_free(&mux_opts);
    if (w->header)
        av_write_trailer(w->fmt);
    writer_free(w);
    return ret;
}

int vio_writer_put(vio_writer *w, const uint8_t *rgb, char *err, size_t errlen)
{
    if (w->failed)
        return fail(err, errlen, VDIT_ERR_IO, "%s: an earlier write failed", w->path);
    char eb[128];
    int e, ret;
    /* a fresh buffer per frame: wrapped_avframe (y4m) keeps a reference */
    av_frame_unref(w->frame);
    w->frame->format = w->pix;
    w->frame->width = w->width;
    w->frame->height = w->height;
    if ((e = av_frame_get_buffer(w->frame, 0)) < 0) {
        w->failed = 1;
        return fail(err, errlen, VDIT_ERR_NOMEM, "%s: out of memory", w->path);
    }
    const uint8_t *src[4] = { rgb };
    int src_ls[4] = { w->width * 3 };
    sws_scale(w->sws, src, src_ls, 0, w->height, w->frame->data, w->frame->linesize);
    w->frame->pts = w->n;
    if ((e = avcodec_send_frame(w->enc, w->frame)) < 0) {
        w->failed = 1;
        return fail(err, errlen, VDIT_ERR_INTERNAL, "%s: encoding frame %d failed: %s", w->path,
                    w->n, averr(e, eb, sizeof(eb)));
    }
    w->n++;
    ret = drain(w->fmt, w->enc, w->st, w->pkt, w->path, err, errlen);
    w->failed = ret != 0;
    return ret;
}

int vio_writer_close(vio_writer **pw, char *err, size_t errlen)
{
    vio_writer *w = pw ? *pw : NULL;
    if (!w)
        return 0;
    char eb[128];
    int ret = 0, e;
    if (!w->failed) { /* what the encoder holds back */
        avcodec_send_frame(w->enc, NULL);
        ret = drain(w->fmt, w->enc, w->st, w->pkt, w->path, err, errlen);
    }
    /* finished even after a failed write: what was written still plays */
    if (w->header && (e = av_write_trailer(w->fmt)) < 0 && !ret && !w->failed)
        ret = fail(err, errlen, VDIT_ERR_IO, "%s: cannot finish the file: %s%s", w->path,
                   averr(e, eb, sizeof(eb)), full_hint(e));
    writer_free(w);
    *pw = NULL;
    return ret;
}

int vio_writer_frames(const vio_writer *w)
{
    return w ? w->n : 0;
}

int vio_write(const char *path, const vdit_video *v, double fps, char *err, size_t errlen)
{
    if (!path || !v || !v->rgb || v->width <= 0 || v->height <= 0 || v->n_frames <= 0)
        return fail(err, errlen, VDIT_ERR_INVALID_ARG, "%s: nothing to write",
                    path ? path : "(no file)");
    vio_writer *w = NULL;
    int ret = vio_writer_open(path, v->width, v->height, v->n_frames, fps, &w, err, errlen);
    size_t fb = (size_t)v->width * v->height * 3;
    for (int i = 0; i < v->n_frames && !ret; i++)
        ret = vio_writer_put(w, v->rgb + (size_t)i * fb, err, errlen);
    /* the first error is the one reported */
    char err2[512];
    int r2 = vio_writer_close(&w, ret ? err2 : err, ret ? sizeof(err2) : errlen);
    return ret ? ret : r2;
}

#else /* !VDIT_HAVE_LIBAV */

int vio_check_output(const char *path, int n_frames, char *err, size_t errlen)
{
    (void)n_frames;
    snprintf(err, errlen, "%s: this vdit was built without FFmpeg (libavformat)", path);
    return VDIT_ERR_UNSUPPORTED;
}

int vio_read(const char *path, vdit_video **out, double *fps, char *err, size_t errlen)
{
    *out = NULL;
    snprintf(err, errlen, "%s: this vdit was built without FFmpeg (libavformat)", path);
    return VDIT_ERR_UNSUPPORTED;
}

int vio_write(const char *path, const vdit_video *v, double fps, char *err, size_t errlen)
{
    (void)v;
    (void)fps;
    snprintf(err, errlen, "%s: this vdit was built without FFmpeg (libavformat)", path);
    return VDIT_ERR_UNSUPPORTED;
}

int vio_writer_open(const char *path, int width, int height, int n_frames, double fps,
                    vio_writer **out, char *err, size_t errlen)
{
    (void)width;
    (void)height;
    (void)n_frames;
    (void)fps;
    *out = NULL;
    snprintf(err, errlen, "%s: this vdit was built without FFmpeg (libavformat)", path);
    return VDIT_ERR_UNSUPPORTED;
}

int vio_writer_put(vio_writer *w, const uint8_t *rgb, char *err, size_t errlen)
{
    (void)w;
    (void)rgb;
    snprintf(err, errlen, "this vdit was built without FFmpeg (libavformat)");
    return VDIT_ERR_UNSUPPORTED;
}

int vio_writer_close(vio_writer **w, char *err, size_t errlen)
{
    (void)w;
    (void)err;
    (void)errlen;
    return 0;
}

int vio_writer_frames(const vio_writer *w)
{
    (void)w;
    return 0;
}

#endif
