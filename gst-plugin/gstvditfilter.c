/**
 * SECTION:element-vdit
 * @title: vdit
 *
 * Edits a video stream with a video diffusion model (SDEdit): each window of
 * frames is encoded, noised to the level `strength` selects and denoised
 * under `prompt`. Every window after the first continues from the tail of
 * the previous output, so no seam shows; memory stays bounded on an endless
 * stream. The element holds back one window of frames (reported in the
 * LATENCY query); one buffer comes out for every buffer that goes in, with
 * its timestamps, duration and flags.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=48 ! video/x-raw,width=320,height=192 ! \
 *     vdit prompt="a watercolor painting" strength=0.5 ! videoconvert ! autovideosink
 * ]|
 *
 * `prompt` and `strength` may change while PLAYING: they apply from the next
 * window. Other settings apply when the element next starts. Progress is
 * posted as "vdit-progress" element messages (stage, step, total, window).
 *
 * The stream keeps its format: the same caps on both pads, 8-bit and deeper
 * (10-, 12-bit) YUV and RGB, so no videoconvert is needed around the element.
 * The model works on RGB: 8-bit formats are converted to packed 8-bit RGB,
 * deeper ones to 16-bit RGB, with GstVideoConverter and the matrix and range
 * of the caps' colorimetry, and back the same way. With `bypass=true` frames
 * make that round trip without the model (which is then not loaded), to
 * check a pipeline's formats.
 *
 * Interlaced and HDR (PQ, HLG) streams are refused at caps time with an
 * error naming the fix (deinterlace, tone-map to SDR), unless `accept` lets
 * them through.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstvditfilter.h"

#include <gst/video/video.h>
#include <string.h>

#include "gstvditcommon.h"

#define GST_CAT_DEFAULT gst_vdit_debug

enum {
    PROP_0,
    PROP_PROMPT,
    PROP_NEGATIVE_PROMPT,
    PROP_STRENGTH,
    PROP_STEPS,
    PROP_GUIDANCE,
    PROP_SHIFT,
    PROP_SEED,
    PROP_SAMPLER,
    PROP_WINDOW,
    PROP_OVERLAP,
    PROP_MODEL,
    PROP_DECODER,
    PROP_LORA,
    PROP_THREADS,
    PROP_PRECISION,
    PROP_DEVICE,
    PROP_CACHE,
    PROP_CACHE_THRESHOLD,
    PROP_BYPASS,
    PROP_ACCEPT,
};

/* 8-bit formats first (edited as 8-bit RGB), then the deeper ones broadcast
 * and mastering use (edited as 16-bit RGB, so they keep their precision) */
#define VDIT_CAPS GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBA, BGRA, ARGB, ABGR, RGBx, BGRx, xRGB, xBGR, " \
                                      "I420, YV12, NV12, NV21, Y42B, Y444, YUY2, UYVY, GRAY8, " \
                                      "I420_10LE, I422_10LE, Y444_10LE, P010_10LE, v210, "     \
                                      "I420_12LE, Y444_12LE, GBR_10LE }")

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(VDIT_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(VDIT_CAPS));

struct _GstVdit {
    GstElement parent;
    GstPad *sinkpad, *srcpad;

    /* properties, under the object lock */
    gchar *prompt, *negative_prompt, *model_path, *decoder, *lora, *device;
    gdouble strength, guidance, shift;
    gint steps, sampler, window, overlap, threads, precision, cache;
    gfloat cache_threshold;
    guint64 seed;
    gboolean update_pending;
    gboolean bypass;
    guint accept; /* GstVditAccept */

    /* model: made in NULL->READY, freed in READY->NULL */
    vdit_model *model;
    vdit_ctx *ctx;

    /* streaming state: the streaming thread (chain, serialized events) and
     * state changes after the pads are deactivated */
    vdit_stream *stream;   /* NULL when bypassing */
    gboolean bypassing;    /* bypass as it was when the format was set */
    GstVideoInfo info;     /* negotiated format (in = out) */
    gboolean have_info;    /* info is set and the conversions are ready */
    gint engine_format;    /* enum vdit_pixel_format of the frames the engine sees */
    /* the converters' side of the engine's frames: packed RGB for RGB24; for
     * RGB48, RGBA64 (GStreamer has no packed 16-bit RGB without alpha), which
     * a repack loop turns into RGB48 and back */
    GstVideoInfo rgb_info;
    GstVideoConverter *to_rgb, *from_rgb; /* info <-> rgb_info; NULL when info is RGB */
    guint8 *rgb;           /* one frame as rgb_info */
    guint8 *rgb48;         /* one packed RGB48 frame for the engine: the frame being sent
                            * stays there while edited ones go out through rgb */
    GQueue pending;        /* input buffers waiting for their output, in order */
    GstCaps *refused;      /* caps set_caps failed on, its error posted */
    guint window_index;
    gint flushing;         /* atomic: set between FLUSH_START and FLUSH_STOP */
};

G_DEFINE_TYPE(GstVdit, gst_vdit, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(vdit, "vdit", GST_RANK_NONE, GST_TYPE_VDIT);

static int on_progress(void *user, int stage, int step, int total)
{
    GstVdit *self = user;
    if (stage == VDIT_STAGE_DENOISE && step == 0)
        self->window_index++;
    gst_vdit_post_progress(GST_ELEMENT(self), stage, step, total, self->window_index);
    return 0;
}

static void clear_pending(GstVdit *self)
{
    GstBuffer *b;
    while ((b = g_queue_pop_head(&self->pending)))
        gst_buffer_unref(b);
}

static void close_stream(GstVdit *self)
{
    vdit_stream_close(&self->stream);
    clear_pending(self);
    if (self->to_rgb)
        gst_video_converter_free(self->to_rgb);
    if (self->from_rgb)
        gst_video_converter_free(self->from_rgb);
    self->to_rgb = self->from_rgb = NULL;
    g_free(self->rgb);
    g_free(self->rgb48);
    self->rgb = self->rgb48 = NULL;
    self->have_info = FALSE;
}

/* Refuses streams the model was not made for, unless `accept` says
 * otherwise, with an error that names the fix. */
static gboolean check_format(GstVdit *self, const GstVideoInfo *info, GstCaps *caps)
{
    GST_OBJECT_LOCK(self);
    guint accept = self->accept;
    GST_OBJECT_UNLOCK(self);
    /* the model sees whole frames: woven fields would be edited as one
     * picture, their combing taken for content */
    if (GST_VIDEO_INFO_IS_INTERLACED(info) && !(accept & GST_VDIT_ACCEPT_INTERLACED)) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("The video is interlaced (interlace-mode=%s): "
                          "deinterlace first (deinterlace element), or set accept=interlaced",
                          gst_video_interlace_mode_to_string(GST_VIDEO_INFO_INTERLACE_MODE(info))),
                          ("caps %" GST_PTR_FORMAT, caps));
        return FALSE;
    }
    /* the model knows SDR pictures: PQ and HLG code values mean other light */
    GstVideoTransferFunction tf = GST_VIDEO_INFO_COLORIMETRY(info).transfer;
    if ((tf == GST_VIDEO_TRANSFER_SMPTE2084 || tf == GST_VIDEO_TRANSFER_ARIB_STD_B67)
        && !(accept & GST_VDIT_ACCEPT_HDR)) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("The video is HDR (%s transfer): tone-map it to "
                          "SDR first, or set accept=hdr to edit its code values as they are",
                          tf == GST_VIDEO_TRANSFER_SMPTE2084 ? "PQ" : "HLG"),
                          ("caps %" GST_PTR_FORMAT, caps));
        return FALSE;
    }
    return TRUE;
}

/* Sets up the conversions between info and the engine's format. */
static gboolean open_conversion(GstVdit *self)
{
    int w = GST_VIDEO_INFO_WIDTH(&self->info), h = GST_VIDEO_INFO_HEIGHT(&self->info);
    GstVideoFormat fmt = GST_VIDEO_INFO_FORMAT(&self->info);
    /* deeper than 8 bits: 16-bit RGB, so that 10- and 12-bit video reaches
     * the model and comes back without rounding to 8 bits */
    gboolean deep = GST_VIDEO_FORMAT_INFO_DEPTH(self->info.finfo, 0) > 8;
    self->engine_format = deep ? VDIT_PIXFMT_RGB48 : VDIT_PIXFMT_RGB24;
    if (fmt == GST_VIDEO_FORMAT_RGB)
        return TRUE; /* the engine's own format: no conversion */
    gst_vdit_rgb_info(&self->rgb_info, deep ? GST_VDIT_RGBA64 : GST_VIDEO_FORMAT_RGB, &self->info);
    /* the converters take the matrix and range from info, that is from the
     * caps' colorimetry, and do all the colour math (with their default
     * chroma resampling and dithering, those of videoconvert); the engine
     * side only repacks */
    self->to_rgb = gst_video_converter_new(&self->info, &self->rgb_info, NULL);
    self->from_rgb = gst_video_converter_new(&self->rgb_info, &self->info, NULL);
    self->rgb = g_malloc(GST_VIDEO_INFO_SIZE(&self->rgb_info));
    if (deep)
        self->rgb48 = g_malloc((gsize)w * 6 * (gsize)h);
    if (!self->to_rgb || !self->from_rgb) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert %s to %s",
                          gst_video_format_to_string(fmt),
                          gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&self->rgb_info))),
                          (NULL));
        return FALSE;
    }
    return TRUE;
}

static gboolean open_stream(GstVdit *self)
{
    if (!open_conversion(self)) {
        close_stream(self);
        return FALSE;
    }
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    GST_OBJECT_LOCK(self);
    self->bypassing = self->bypass;
    gchar *prompt = g_strdup(self->prompt), *neg = g_strdup(self->negative_prompt);
    sp.gen.strength = (float)self->strength;
    sp.gen.steps = self->steps;
    sp.gen.guidance = (float)self->guidance;
    sp.gen.shift = (float)self->shift;
    sp.gen.seed = self->seed;
    sp.gen.sampler = self->sampler;
    sp.gen.cache = self->cache;
    sp.gen.cache_threshold = self->cache_threshold;
    sp.window = self->window;
    sp.overlap = self->overlap;
    sp.format = self->engine_format;
    self->update_pending = FALSE;
    GST_OBJECT_UNLOCK(self);
    sp.gen.prompt = prompt;
    sp.gen.negative_prompt = neg;

    int w = GST_VIDEO_INFO_WIDTH(&self->info), h = GST_VIDEO_INFO_HEIGHT(&self->info);
    int err = 0;
    if (!self->bypassing && !self->ctx) {
        /* READY->PAUSED loads the model unless bypass is set: none here
         * means bypass was switched off while PAUSED or PLAYING */
        GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model loaded"),
                          ("bypass changed after the element started"));
        err = -1;
    } else if (!self->bypassing) {
        err = vdit_stream_open(self->ctx, &sp, w, h, &self->stream);
        if (err < 0)
            GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Could not start editing %dx%d video", w,
                              h), ("%s", vdit_ctx_last_error(self->ctx)));
    }
    g_free(prompt);
    g_free(neg);
    if (err < 0) {
        close_stream(self);
        return FALSE;
    }
    GST_INFO_OBJECT(self, "%s %s as %s", self->bypassing ? "bypassing" : "editing",
                    gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&self->info)),
                    self->engine_format == VDIT_PIXFMT_RGB48 ? "RGB48" : "RGB24");
    self->have_info = TRUE;
    return TRUE;
}

/* Maps `data`, one frame laid out as `info`, as a video frame (the frame
 * holds the only reference to the buffer wrapping it). */
static gboolean map_raw(GstVideoFrame *f, const GstVideoInfo *info, gconstpointer data,
                        GstMapFlags flags)
{
    gsize sz = GST_VIDEO_INFO_SIZE(info);
    GstBuffer *b = gst_buffer_new_wrapped_full(flags & GST_MAP_WRITE ? 0 : GST_MEMORY_FLAG_READONLY,
                                               (gpointer)data, sz, 0, sz, NULL, NULL);
    gboolean ok = gst_video_frame_map(f, info, b, flags);
    gst_buffer_unref(b);
    return ok;
}

/* Converts the input frame `in` to the engine's format: fills f's pixels,
 * which point into `in` itself when it is packed RGB already. */
static gboolean to_engine(GstVdit *self, GstVideoFrame *in, vdit_frame *f)
{
    int w = GST_VIDEO_INFO_WIDTH(&self->info), h = GST_VIDEO_INFO_HEIGHT(&self->info);
    f->width = w;
    f->height = h;
    if (!self->to_rgb) {
        f->rgb = GST_VIDEO_FRAME_PLANE_DATA(in, 0);
        f->stride = GST_VIDEO_FRAME_PLANE_STRIDE(in, 0);
        return TRUE;
    }
    GstVideoFrame rf;
    if (!map_raw(&rf, &self->rgb_info, self->rgb, GST_MAP_WRITE))
        return FALSE;
    gst_video_converter_frame(self->to_rgb, in, &rf);
    gst_video_frame_unmap(&rf);
    if (self->engine_format == VDIT_PIXFMT_RGB24) {
        f->rgb = self->rgb;
        f->stride = GST_VIDEO_INFO_PLANE_STRIDE(&self->rgb_info, 0);
        return TRUE;
    }
    /* RGBA64 -> RGB48: the same samples less alpha */
    gint ss = GST_VIDEO_INFO_PLANE_STRIDE(&self->rgb_info, 0);
    for (int y = 0; y < h; y++) {
        const guint16 *s = (const guint16 *)(self->rgb + (gsize)y * ss);
        guint16 *d = (guint16 *)(self->rgb48 + (gsize)y * w * 6);
        for (int x = 0; x < w; x++, s += 4, d += 3) {
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    f->rgb = self->rgb48;
    f->stride = (ptrdiff_t)w * 6;
    return TRUE;
}

/* Converts one frame in the engine's format (rows `stride` bytes apart)
 * into `dst`. */
static gboolean from_engine(GstVdit *self, const guint8 *rgb, ptrdiff_t stride,
                            GstVideoFrame *dst)
{
    int w = GST_VIDEO_INFO_WIDTH(&self->info), h = GST_VIDEO_INFO_HEIGHT(&self->info);
    if (!self->from_rgb) {
        guint8 *d = GST_VIDEO_FRAME_PLANE_DATA(dst, 0);
        gint ds = GST_VIDEO_FRAME_PLANE_STRIDE(dst, 0);
        for (int y = 0; y < h; y++)
            memcpy(d + (gsize)y * ds, rgb + y * stride, (gsize)w * 3);
        return TRUE;
    }
    GstVideoInfo ri = self->rgb_info;
    const guint8 *src = rgb;
    if (self->engine_format == VDIT_PIXFMT_RGB48) {
        /* RGB48 -> RGBA64, opaque */
        gint ds = GST_VIDEO_INFO_PLANE_STRIDE(&ri, 0);
        for (int y = 0; y < h; y++) {
            const guint16 *s = (const guint16 *)(rgb + y * stride);
            guint16 *d = (guint16 *)(self->rgb + (gsize)y * ds);
            for (int x = 0; x < w; x++, s += 3, d += 4) {
                d[0] = s[0];
                d[1] = s[1];
                d[2] = s[2];
                d[3] = 0xffff;
            }
        }
        src = self->rgb;
    } else {
        /* the engine's rows, read where they are */
        GST_VIDEO_INFO_PLANE_STRIDE(&ri, 0) = (gint)stride;
        GST_VIDEO_INFO_SIZE(&ri) = (gsize)stride * (gsize)h;
    }
    GstVideoFrame sf;
    if (!map_raw(&sf, &ri, src, GST_MAP_READ))
        return FALSE;
    gst_video_converter_frame(self->from_rgb, &sf, dst);
    gst_video_frame_unmap(&sf);
    return TRUE;
}

/* The output buffer for input `in` (its timestamps and flags) holding the
 * frame `rgb` in the engine's format. */
static GstBuffer *make_output(GstVdit *self, GstBuffer *in, const guint8 *rgb, ptrdiff_t stride)
{
    GstBuffer *ob = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&self->info), NULL);
    gst_buffer_copy_into(ob, in, GST_BUFFER_COPY_FLAGS | GST_BUFFER_COPY_TIMESTAMPS, 0, -1);
    GstVideoFrame dst;
    if (!gst_video_frame_map(&dst, &self->info, ob, GST_MAP_WRITE)) {
        gst_buffer_unref(ob);
        GST_ELEMENT_ERROR(self, CORE, FAILED, ("Cannot map output buffer"), (NULL));
        return NULL;
    }
    gboolean ok = from_engine(self, rgb, stride, &dst);
    gst_video_frame_unmap(&dst);
    if (!ok) {
        gst_buffer_unref(ob);
        GST_ELEMENT_ERROR(self, CORE, FAILED, ("Cannot map an edited frame"), (NULL));
        return NULL;
    }
    return ob;
}

/* Pushes every edited frame the stream has ready. */
static GstFlowReturn push_ready(GstVdit *self)
{
    for (;;) {
        vdit_frame out;
        int r = vdit_stream_receive(self->stream, &out);
        if (r == VDIT_ERR_AGAIN || r == VDIT_ERR_EOF)
            return GST_FLOW_OK;
        if (r == VDIT_ERR_CANCELLED || g_atomic_int_get(&self->flushing))
            return GST_FLOW_FLUSHING;
        if (r < 0) {
            GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit failed while editing"),
                              ("%s (%s)", vdit_ctx_last_error(self->ctx), vdit_strerror(r)));
            return GST_FLOW_ERROR;
        }
        GstBuffer *in = g_queue_pop_head(&self->pending);
        if (!in) {
            GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit returned more frames than it got"),
                              (NULL));
            return GST_FLOW_ERROR;
        }
        GstBuffer *ob = make_output(self, in, out.rgb, out.stride);
        gst_buffer_unref(in);
        if (!ob)
            return GST_FLOW_ERROR;
        GstFlowReturn fr = gst_pad_push(self->srcpad, ob);
        if (fr != GST_FLOW_OK)
            return fr;
    }
}

/* Processes the partial last window and pushes everything. */
static GstFlowReturn drain(GstVdit *self)
{
    if (!self->stream)
        return GST_FLOW_OK;
    int r = vdit_stream_drain(self->stream);
    if (r < 0) {
        GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit failed to drain"), ("%s",
                          vdit_ctx_last_error(self->ctx)));
        return GST_FLOW_ERROR;
    }
    return push_ready(self);
}

static GstFlowReturn gst_vdit_chain(GstPad *pad, GstObject *parent, GstBuffer *buf)
{
    GstVdit *self = GST_VDIT(parent);
    if (!self->have_info) {
        gst_buffer_unref(buf);
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No caps before the first buffer"), (NULL));
        return GST_FLOW_NOT_NEGOTIATED;
    }

    GST_OBJECT_LOCK(self);
    if (self->update_pending && self->stream) {
        vdit_stream_update(self->stream, self->prompt ? self->prompt : "", (float)self->strength);
        self->update_pending = FALSE;
    }
    GST_OBJECT_UNLOCK(self);

    GstVideoFrame in;
    if (!gst_video_frame_map(&in, &self->info, buf, GST_MAP_READ)) {
        gst_buffer_unref(buf);
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Buffer does not match the caps"), (NULL));
        return GST_FLOW_ERROR;
    }
    vdit_frame f = { 0 };
    f.pts = (int64_t)GST_BUFFER_PTS(buf);
    if (!to_engine(self, &in, &f)) {
        gst_video_frame_unmap(&in);
        gst_buffer_unref(buf);
        GST_ELEMENT_ERROR(self, CORE, FAILED, ("Cannot convert a frame"), (NULL));
        return GST_FLOW_ERROR;
    }
    if (self->bypassing) {
        /* the round trip to the engine's format and back, without the model */
        GstBuffer *ob = make_output(self, buf, f.rgb, f.stride);
        gst_video_frame_unmap(&in);
        gst_buffer_unref(buf);
        return ob ? gst_pad_push(self->srcpad, ob) : GST_FLOW_ERROR;
    }

    GstFlowReturn fr = GST_FLOW_OK;
    for (;;) {
        int r = vdit_stream_send(self->stream, &f);
        if (r == VDIT_ERR_AGAIN) {
            fr = push_ready(self);
            if (fr != GST_FLOW_OK)
                break;
            continue;
        }
        if (r < 0) {
            GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit rejected a frame"), ("%s",
                              vdit_ctx_last_error(self->ctx)));
            fr = GST_FLOW_ERROR;
        }
        break;
    }
    gst_video_frame_unmap(&in);
    if (fr != GST_FLOW_OK) {
        gst_buffer_unref(buf);
        return fr;
    }
    g_queue_push_tail(&self->pending, buf);
    return push_ready(self);
}

static gboolean set_caps(GstVdit *self, GstCaps *caps)
{
    /* the pad sends its sticky caps again before every buffer and event:
     * one error is enough */
    if (self->refused && gst_caps_is_equal(caps, self->refused))
        return FALSE;
    GstVideoInfo info;
    if (!gst_video_info_from_caps(&info, caps)) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Invalid caps"), ("%" GST_PTR_FORMAT, caps));
        return FALSE;
    }
    if (self->have_info && gst_video_info_is_equal(&info, &self->info))
        return TRUE;
    if (!check_format(self, &info, caps))
        return FALSE;
    if (self->have_info) {
        /* format change mid-stream: finish what was sent with the old format */
        GST_INFO_OBJECT(self, "caps changed, draining the current window");
        if (drain(self) != GST_FLOW_OK)
            return FALSE;
        close_stream(self);
    }
    self->info = info;
    return open_stream(self);
}

static gboolean gst_vdit_sink_event(GstPad *pad, GstObject *parent, GstEvent *event)
{
    GstVdit *self = GST_VDIT(parent);
    switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
        GstCaps *caps;
        gst_event_parse_caps(event, &caps);
        if (!set_caps(self, caps)) {
            gst_caps_replace(&self->refused, caps);
            gst_event_unref(event);
            return FALSE;
        }
        gst_caps_replace(&self->refused, NULL);
        break;
    }
    case GST_EVENT_EOS:
        if (drain(self) == GST_FLOW_ERROR) {
            gst_event_unref(event);
            return FALSE;
        }
        break;
    case GST_EVENT_FLUSH_START:
        g_atomic_int_set(&self->flushing, 1);
        if (self->ctx)
            vdit_ctx_cancel(self->ctx);
        break;
    case GST_EVENT_FLUSH_STOP:
        if (self->stream)
            vdit_stream_flush(self->stream);
        clear_pending(self);
        g_atomic_int_set(&self->flushing, 0);
        break;
    default:
        break;
    }
    return gst_pad_event_default(pad, parent, event);
}

static gboolean gst_vdit_src_query(GstPad *pad, GstObject *parent, GstQuery *query)
{
    GstVdit *self = GST_VDIT(parent);
    if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
        if (!gst_pad_peer_query(self->sinkpad, query))
            return FALSE;
        gboolean live;
        GstClockTime min, max;
        gst_query_parse_latency(query, &live, &min, &max);
        GstClockTime ours = 0;
        if (self->stream && self->have_info && GST_VIDEO_INFO_FPS_N(&self->info) > 0)
            ours = gst_util_uint64_scale_int((guint64)vdit_stream_latency(self->stream) * GST_SECOND,
                                             GST_VIDEO_INFO_FPS_D(&self->info),
                                             GST_VIDEO_INFO_FPS_N(&self->info));
        GST_DEBUG_OBJECT(self, "latency %" GST_TIME_FORMAT, GST_TIME_ARGS(ours));
        min += ours;
        if (GST_CLOCK_TIME_IS_VALID(max))
            max += ours;
        gst_query_set_latency(query, live, min, max);
        return TRUE;
    }
    return gst_pad_query_default(pad, parent, query);
}

static GstStateChangeReturn gst_vdit_change_state(GstElement *el, GstStateChange t)
{
    GstVdit *self = GST_VDIT(el);
    if (t == GST_STATE_CHANGE_NULL_TO_READY || t == GST_STATE_CHANGE_READY_TO_PAUSED) {
        /* the model loads in NULL->READY, or in READY->PAUSED when bypass was
         * switched off in READY; bypassing needs none */
        GST_OBJECT_LOCK(self);
        gboolean load = !self->ctx && !self->bypass;
        gchar *path = g_strdup(self->model_path), *decoder = g_strdup(self->decoder);
        gchar *lora = g_strdup(self->lora), *device = g_strdup(self->device);
        gint threads = self->threads, precision = self->precision;
        GST_OBJECT_UNLOCK(self);
        gboolean ok = !load || gst_vdit_open(el, path, decoder, lora, device, threads, precision,
                                             on_progress, self, &self->model, &self->ctx);
        g_free(path);
        g_free(decoder);
        g_free(lora);
        g_free(device);
        if (!ok)
            return GST_STATE_CHANGE_FAILURE;
    }
    if (t == GST_STATE_CHANGE_PAUSED_TO_READY && self->ctx)
        vdit_ctx_cancel(self->ctx); /* a window in progress ends at its next step */

    GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_vdit_parent_class)->change_state(el, t);
    if (ret == GST_STATE_CHANGE_FAILURE)
        return ret;

    if (t == GST_STATE_CHANGE_PAUSED_TO_READY) {
        close_stream(self);
        gst_caps_replace(&self->refused, NULL);
        self->window_index = 0;
        g_atomic_int_set(&self->flushing, 0);
    } else if (t == GST_STATE_CHANGE_READY_TO_NULL) {
        vdit_ctx_free(&self->ctx);
        vdit_model_free(&self->model);
    }
    return ret;
}

static void gst_vdit_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps)
{
    GstVdit *self = GST_VDIT(obj);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_PROMPT:
        g_free(self->prompt);
        self->prompt = g_value_dup_string(v);
        self->update_pending = TRUE;
        break;
    case PROP_NEGATIVE_PROMPT:
        g_free(self->negative_prompt);
        self->negative_prompt = g_value_dup_string(v);
        break;
    case PROP_STRENGTH:
        self->strength = g_value_get_double(v);
        self->update_pending = TRUE;
        break;
    case PROP_STEPS: self->steps = g_value_get_int(v); break;
    case PROP_GUIDANCE: self->guidance = g_value_get_double(v); break;
    case PROP_SHIFT: self->shift = g_value_get_double(v); break;
    case PROP_SEED: self->seed = g_value_get_uint64(v); break;
    case PROP_SAMPLER: self->sampler = g_value_get_enum(v); break;
    case PROP_WINDOW: self->window = g_value_get_int(v); break;
    case PROP_OVERLAP: self->overlap = g_value_get_int(v); break;
    case PROP_MODEL:
        g_free(self->model_path);
        self->model_path = g_value_dup_string(v);
        break;
    case PROP_DECODER:
        g_free(self->decoder);
        self->decoder = g_value_dup_string(v);
        break;
    case PROP_LORA:
        g_free(self->lora);
        self->lora = g_value_dup_string(v);
        break;
    case PROP_THREADS: self->threads = g_value_get_int(v); break;
    case PROP_PRECISION: self->precision = g_value_get_enum(v); break;
    case PROP_DEVICE:
        g_free(self->device);
        self->device = g_value_dup_string(v);
        break;
    case PROP_CACHE: self->cache = g_value_get_enum(v); break;
    case PROP_CACHE_THRESHOLD: self->cache_threshold = g_value_get_float(v); break;
    case PROP_BYPASS: self->bypass = g_value_get_boolean(v); break;
    case PROP_ACCEPT: self->accept = g_value_get_flags(v); break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_vdit_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps)
{
    GstVdit *self = GST_VDIT(obj);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_PROMPT: g_value_set_string(v, self->prompt); break;
    case PROP_NEGATIVE_PROMPT: g_value_set_string(v, self->negative_prompt); break;
    case PROP_STRENGTH: g_value_set_double(v, self->strength); break;
    case PROP_STEPS: g_value_set_int(v, self->steps); break;
    case PROP_GUIDANCE: g_value_set_double(v, self->guidance); break;
    case PROP_SHIFT: g_value_set_double(v, self->shift); break;
    case PROP_SEED: g_value_set_uint64(v, self->seed); break;
    case PROP_SAMPLER: g_value_set_enum(v, self->sampler); break;
    case PROP_WINDOW: g_value_set_int(v, self->window); break;
    case PROP_OVERLAP: g_value_set_int(v, self->overlap); break;
    case PROP_MODEL: g_value_set_string(v, self->model_path); break;
    case PROP_DECODER: g_value_set_string(v, self->decoder); break;
    case PROP_LORA: g_value_set_string(v, self->lora); break;
    case PROP_THREADS: g_value_set_int(v, self->threads); break;
    case PROP_PRECISION: g_value_set_enum(v, self->precision); break;
    case PROP_DEVICE: g_value_set_string(v, self->device); break;
    case PROP_CACHE: g_value_set_enum(v, self->cache); break;
    case PROP_CACHE_THRESHOLD: g_value_set_float(v, self->cache_threshold); break;
    case PROP_BYPASS: g_value_set_boolean(v, self->bypass); break;
    case PROP_ACCEPT: g_value_set_flags(v, self->accept); break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_vdit_finalize(GObject *obj)
{
    GstVdit *self = GST_VDIT(obj);
    close_stream(self);
    gst_caps_replace(&self->refused, NULL);
    vdit_ctx_free(&self->ctx);
    vdit_model_free(&self->model);
    g_free(self->prompt);
    g_free(self->negative_prompt);
    g_free(self->model_path);
    g_free(self->decoder);
    g_free(self->lora);
    g_free(self->device);
    G_OBJECT_CLASS(gst_vdit_parent_class)->finalize(obj);
}

static void gst_vdit_class_init(GstVditClass *klass)
{
    GObjectClass *oc = G_OBJECT_CLASS(klass);
    GstElementClass *ec = GST_ELEMENT_CLASS(klass);
    oc->set_property = gst_vdit_set_property;
    oc->get_property = gst_vdit_get_property;
    oc->finalize = gst_vdit_finalize;
    ec->change_state = gst_vdit_change_state;

    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
    const GParamFlags live = rw | GST_PARAM_MUTABLE_PLAYING;
    const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;
    g_object_class_install_property(oc, PROP_PROMPT,
        g_param_spec_string("prompt", "Prompt", "What the edited video should show "
                            "(changes apply from the next window)", NULL, live));
    g_object_class_install_property(oc, PROP_NEGATIVE_PROMPT,
        g_param_spec_string("negative-prompt", "Negative prompt", "What to steer away from "
                            "(NULL: the model's default negative prompt)", NULL, ready));
    g_object_class_install_property(oc, PROP_STRENGTH,
        g_param_spec_double("strength", "Strength", "How far the edit may move from the input: "
                            "0 keeps it, 1 ignores it (changes apply from the next window)",
                            0.0, 1.0, VDIT_DEFAULT_STRENGTH, live));
    g_object_class_install_property(oc, PROP_STEPS,
        g_param_spec_int("steps", "Steps", "Sampling steps of the full schedule (0: model default)",
                         0, 1000, VDIT_DEFAULT_STEPS, ready));
    g_object_class_install_property(oc, PROP_GUIDANCE,
        g_param_spec_double("guidance", "Guidance", "Classifier-free guidance scale "
                            "(-1: model default, 1: no guidance)", -1.0, 50.0,
                            VDIT_DEFAULT_GUIDANCE, ready));
    g_object_class_install_property(oc, PROP_SHIFT,
        g_param_spec_double("shift", "Shift", "Timestep shift of the schedule (-1: model default)",
                            -1.0, 100.0, VDIT_DEFAULT_SHIFT, ready));
    g_object_class_install_property(oc, PROP_SEED,
        g_param_spec_uint64("seed", "Seed", "Noise seed", 0, G_MAXUINT64,
                            VDIT_DEFAULT_SEED, ready));
    g_object_class_install_property(oc, PROP_SAMPLER,
        g_param_spec_enum("sampler", "Sampler", "Flow-matching sampler", GST_TYPE_VDIT_SAMPLER,
                          VDIT_DEFAULT_SAMPLER, ready));
    g_object_class_install_property(oc, PROP_WINDOW,
        g_param_spec_int("window", "Window", "Frames per window (0: the model's native length)",
                         0, 1024, VDIT_DEFAULT_WINDOW, ready));
    g_object_class_install_property(oc, PROP_OVERLAP,
        g_param_spec_int("overlap", "Overlap", "Frames of the previous output each window "
                         "continues from (0: automatic)", 0, 1024, VDIT_DEFAULT_OVERLAP, ready));
    g_object_class_install_property(oc, PROP_MODEL,
        g_param_spec_string("model", "Model", "Model folder or checkpoint (NULL: the bundled "
                            "default model)", NULL, rw | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(oc, PROP_DECODER,
        g_param_spec_string("decoder", "Decoder", "Latents to frames: vae (NULL: the model's "
                            "VAE), tae (TAEHV from the model's folder, faster, lower quality) "
                            "or a TAEHV file", NULL, rw | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(oc, PROP_LORA,
        g_param_spec_string("lora", "LoRA", "LoRA files merged into the DiT at load: "
                            "FILE[:SCALE][|FILE[:SCALE]...] (SCALE default 1; NULL: none)", NULL,
                            rw | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(oc, PROP_THREADS,
        g_param_spec_int("threads", "Threads", "Worker threads (0: all cores)", 0, 1024,
                         VDIT_DEFAULT_THREADS, ready));
    g_object_class_install_property(oc, PROP_PRECISION,
        g_param_spec_enum("precision", "Precision", "Arithmetic of the products (auto: bf16 "
                          "where the CPU has bf16 instructions, else fp32)",
                          GST_TYPE_VDIT_PRECISION, VDIT_DEFAULT_PRECISION, ready));
    gst_vdit_install_device_prop(oc, PROP_DEVICE);
    gst_vdit_install_cache_props(oc, PROP_CACHE, PROP_CACHE_THRESHOLD);
    g_object_class_install_property(oc, PROP_BYPASS,
        g_param_spec_boolean("bypass", "Bypass", "Convert frames to the model's RGB and back "
                             "without editing them (no model is loaded): checks a pipeline's "
                             "formats", FALSE, ready));
    g_object_class_install_property(oc, PROP_ACCEPT,
        g_param_spec_flags("accept", "Accept", "Streams to edit although the model was not made "
                           "for them (refused otherwise)", GST_TYPE_VDIT_ACCEPT, 0, ready));

    gst_element_class_add_static_pad_template(ec, &sink_template);
    gst_element_class_add_static_pad_template(ec, &src_template);
    gst_element_class_set_static_metadata(ec, "vdit video editor", "Filter/Effect/Video",
        "Edits video with a video diffusion transformer (SDEdit over windows of frames)",
        "vdit developers");
    gst_type_mark_as_plugin_api(GST_TYPE_VDIT_SAMPLER, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_VDIT_ACCEPT, 0);
}

static void gst_vdit_init(GstVdit *self)
{
    self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
    gst_pad_set_chain_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_vdit_chain));
    gst_pad_set_event_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_vdit_sink_event));
    GST_PAD_SET_PROXY_CAPS(self->sinkpad);
    gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

    self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
    gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_vdit_src_query));
    GST_PAD_SET_PROXY_CAPS(self->srcpad);
    gst_element_add_pad(GST_ELEMENT(self), self->srcpad);

    self->strength = VDIT_DEFAULT_STRENGTH;
    self->steps = VDIT_DEFAULT_STEPS;
    self->guidance = VDIT_DEFAULT_GUIDANCE;
    self->shift = VDIT_DEFAULT_SHIFT;
    self->seed = VDIT_DEFAULT_SEED;
    self->sampler = VDIT_DEFAULT_SAMPLER;
    self->window = VDIT_DEFAULT_WINDOW;
    self->overlap = VDIT_DEFAULT_OVERLAP;
    self->threads = VDIT_DEFAULT_THREADS;
    self->precision = VDIT_DEFAULT_PRECISION;
    g_queue_init(&self->pending);
}
