/**
 * SECTION:element-vditsrc
 * @title: vditsrc
 *
 * Generates video from a text prompt, or from an image and a prompt, with a
 * video diffusion model. Frames are generated a clip (`num-frames`) at a
 * time; each further clip extends the previous one so the stream continues
 * without a cut, or, with `loop=true`, one seamless loop is generated and
 * repeated. Width, height and frame rate are negotiated with downstream,
 * preferring the model's native size.
 *
 * With `image=FILE` the first clip starts from that picture (image to
 * video): the file is decoded when the element starts (READY to PAUSED) by
 * a pipeline of its own, `filesrc ! decodebin ! videoconvert ! appsink`, so
 * any format an installed decoder reads (PNG, JPEG...) works. The preferred
 * size is then the one libvdit picks for the image (vdit_gen_size(): the
 * image's aspect at about the model's native area); a size downstream fixes
 * wins, the image being resized to cover it and centre-cropped. A missing
 * or undecodable file is an element error naming it.
 *
 * The output format is negotiated too: I420 unless downstream asks for
 * another one (NV12, Y444, packed RGB, the format the model generates, or a
 * 10-bit one: I420_10LE, P010_10LE, I422_10LE, v210, Y444_10LE). YUV output
 * is BT.709 limited range (`colorimetry=bt709`) at every size, unless
 * downstream's caps ask for other colorimetry (bt2020...); the conversion
 * from the model's RGB follows whatever colorimetry the caps carry. The
 * model generates 8-bit RGB, so 10-bit output carries 8 bits of precision.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 vditsrc prompt="a red circle moves left" num-buffers=17 ! \
 *     x264enc ! mp4mux ! filesink location=out.mp4
 * gst-launch-1.0 vditsrc image=boat.png prompt="the boat sails away" num-buffers=33 ! \
 *     videoconvert ! x264enc ! mp4mux ! filesink location=boat.mp4
 * ]|
 */
#include "gstvditsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <gst/video/video.h>
#include <string.h>

#include "gstvditcommon.h"

#define GST_CAT_DEFAULT gst_vdit_debug

enum {
    PROP_0,
    PROP_PROMPT,
    PROP_NEGATIVE_PROMPT,
    PROP_STEPS,
    PROP_GUIDANCE,
    PROP_SHIFT,
    PROP_SEED,
    PROP_SAMPLER,
    PROP_NUM_FRAMES,
    PROP_LOOP,
    PROP_MODEL,
    PROP_DECODER,
    PROP_LORA,
    PROP_THREADS,
    PROP_PRECISION,
    PROP_DEVICE,
    PROP_CACHE,
    PROP_CACHE_THRESHOLD,
    PROP_IMAGE,
};

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-raw, format = (string) { I420, NV12, Y444, RGB, I420_10LE, "
                    "P010_10LE, I422_10LE, v210, Y444_10LE }, "
                    "width = (int) [ 16, 8192 ], height = (int) [ 16, 8192 ], "
                    "framerate = (fraction) [ 1/1, 240/1 ]"));

struct _GstVditSrc {
    GstPushSrc parent;

    /* properties, under the object lock */
    gchar *prompt, *negative_prompt, *model_path, *image_path, *decoder, *lora, *device;
    gint steps, sampler, num_frames, threads, precision, cache;
    gfloat cache_threshold;
    gdouble guidance, shift;
    guint64 seed;
    gboolean loop;

    /* made in start(), freed in stop() */
    vdit_model *model;
    vdit_ctx *ctx;
    vdit_model_info minfo;
    vdit_video *image;  /* image= decoded; the first clip starts from it */
    gint pref_w, pref_h; /* preferred size: the model's, or vdit_gen_size's for image */

    GstVideoInfo info;
    GstVideoInfo rgb_info;   /* one frame of clip, packed RGB (stride width * 3) */
    GstVideoConverter *conv; /* rgb_info -> info; NULL when info is RGB */
    vdit_video *clip;   /* the clip being played out */
    gint clip_pos;      /* next frame of clip to push */
    guint64 n_out;      /* frames pushed so far */
    guint clip_index;
};

G_DEFINE_TYPE(GstVditSrc, gst_vdit_src, GST_TYPE_PUSH_SRC);
GST_ELEMENT_REGISTER_DEFINE(vditsrc, "vditsrc", GST_RANK_NONE, GST_TYPE_VDIT_SRC);

static int on_progress(void *user, int stage, int step, int total)
{
    GstVditSrc *self = user;
    gst_vdit_post_progress(GST_ELEMENT(self), stage, step, total, self->clip_index);
    return 0;
}

/* The first picture of the file at `path` as packed RGB, decoded by a
 * pipeline of its own run to preroll (its appsink is driven through its
 * action signals, so the plugin needs no gstreamer-app library). On failure
 * NULL, with the cause in *why (g_free) and in *code the GstResourceError
 * that fits it. */
static vdit_video *read_image(const gchar *path, gchar **why, GstResourceError *code)
{
    /* Missing and unreadable files first, with the system's reason: the
     * pipeline's filesrc words them less precisely. */
    int fd = g_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        *code = e == ENOENT ? GST_RESOURCE_ERROR_NOT_FOUND : GST_RESOURCE_ERROR_OPEN_READ;
        *why = g_strdup(g_strerror(e));
        return NULL;
    }
    g_close(fd, NULL);
    *code = GST_RESOURCE_ERROR_READ;
    GError *err = NULL;
    GstElement *pipe = gst_parse_launch("filesrc name=src ! decodebin ! videoconvert ! "
                                        "video/x-raw,format=RGB ! appsink name=sink sync=false "
                                        "max-buffers=1", &err);
    if (!pipe || err) {
        /* a missing element (decodebin, videoconvert: gst-plugins-base) */
        *why = g_strdup_printf("cannot make a decoding pipeline: %s",
                               err ? err->message : "unknown error");
        g_clear_error(&err);
        if (pipe)
            gst_object_unref(pipe);
        return NULL;
    }
    gst_object_ref_sink(pipe); /* parse_launch's reference is floating */
    GstElement *src = gst_bin_get_by_name(GST_BIN(pipe), "src");
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipe), "sink");
    g_object_set(src, "location", path, NULL);
    vdit_video *v = NULL;
    GstBus *bus = gst_element_get_bus(pipe);
    if (gst_element_set_state(pipe, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE)
        GST_DEBUG("image pipeline: PAUSED refused (the error follows on its bus)");
    /* The decode of one picture: an error, the preroll or the end comes
     * quickly; the timeout only guards against a decoder that hangs. */
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                               GST_MESSAGE_ERROR | GST_MESSAGE_ASYNC_DONE |
                                               GST_MESSAGE_EOS);
    if (!m) {
        *why = g_strdup("no picture decoded within 60 s");
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
        gst_message_parse_error(m, &err, NULL);
        gchar *msg = g_strdup(err && err->message ? err->message : "decoding failed");
        gsize n = strlen(msg);
        if (n && msg[n - 1] == '.') /* "Could not determine type of stream." */
            msg[n - 1] = 0;
        *why = g_strdup_printf("%s; not a picture an installed GStreamer decoder reads "
                               "(PNG, JPEG...)", msg);
        g_free(msg);
        g_clear_error(&err);
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
        *why = g_strdup("the file holds no picture");
    } else {
        GstSample *sample = NULL;
        GstVideoInfo vi;
        GstVideoFrame f;
        g_signal_emit_by_name(sink, "pull-preroll", &sample);
        GstCaps *caps = sample ? gst_sample_get_caps(sample) : NULL;
        GstBuffer *buf = sample ? gst_sample_get_buffer(sample) : NULL;
        if (!caps || !buf || !gst_video_info_from_caps(&vi, caps)) {
            *why = g_strdup("the decoder gave no picture");
        } else if (GST_VIDEO_INFO_WIDTH(&vi) > 8192 || GST_VIDEO_INFO_HEIGHT(&vi) > 8192) {
            *why = g_strdup_printf("%dx%d: sides of 1 to 8192 pixels only",
                                   GST_VIDEO_INFO_WIDTH(&vi), GST_VIDEO_INFO_HEIGHT(&vi));
        } else if (!gst_video_frame_map(&f, &vi, buf, GST_MAP_READ)) {
            *why = g_strdup("cannot map the decoded picture");
        } else {
            int w = GST_VIDEO_INFO_WIDTH(&vi), h = GST_VIDEO_INFO_HEIGHT(&vi);
            v = vdit_video_new(w, h, 1);
            if (v) {
                const guint8 *s = GST_VIDEO_FRAME_PLANE_DATA(&f, 0);
                gint ss = GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
                for (int y = 0; y < h; y++)
                    memcpy(v->rgb + (size_t)y * w * 3, s + (gsize)y * ss, (size_t)w * 3);
            } else {
                *why = g_strdup("out of memory");
            }
            gst_video_frame_unmap(&f);
        }
        if (sample)
            gst_sample_unref(sample);
    }
    if (m)
        gst_message_unref(m);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(src);
    gst_object_unref(sink);
    gst_object_unref(pipe);
    return v;
}

static gboolean gst_vdit_src_start(GstBaseSrc *bs)
{
    GstVditSrc *self = GST_VDIT_SRC(bs);
    GST_OBJECT_LOCK(self);
    gchar *path = g_strdup(self->model_path), *decoder = g_strdup(self->decoder);
    gchar *image = self->image_path && *self->image_path ? g_strdup(self->image_path) : NULL;
    gchar *lora = g_strdup(self->lora), *device = g_strdup(self->device);
    gint threads = self->threads, precision = self->precision;
    gboolean loop = self->loop;
    GST_OBJECT_UNLOCK(self);
    gboolean ok = FALSE;
    /* basesrc calls no stop() after a failed start: nothing may stay behind */
    vdit_video_free(&self->image);
    if (image && loop) {
        /* libvdit makes a loop from noise: no frame of it is given */
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
                          ("image and loop=true cannot be combined: leave one out"), (NULL));
        goto done;
    }
    /* the image before the model: a wrong path fails at once */
    if (image) {
        gchar *why = NULL;
        GstResourceError code = GST_RESOURCE_ERROR_READ;
        self->image = read_image(image, &why, &code);
        if (!self->image) {
            /* GST_ELEMENT_ERROR with the code read_image chose; the cause in
             * the message itself, where gst-launch-1.0 and applications show it */
            gst_element_message_full(GST_ELEMENT(self), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR,
                                     code, g_strdup_printf("Could not read the image \"%s\": "
                                     "%s.", image, why ? why : "unknown error"), NULL,
                                     __FILE__, GST_FUNCTION, __LINE__);
            g_free(why);
            goto done;
        }
    }
    if (!gst_vdit_open(GST_ELEMENT(self), path, decoder, lora, device, threads, precision,
                       on_progress, self, &self->model, &self->ctx))
        goto done;
    vdit_model_get_info(self->model, &self->minfo);
    self->pref_w = self->minfo.width;
    self->pref_h = self->minfo.height;
    if (self->image) {
        /* the size the first vdit_generate() makes for this image when
         * downstream leaves the size open (fixate); an aspect too extreme
         * for the model's area falls back to its native size, which the
         * image is then cropped to */
        vdit_gen_params g;
        vdit_gen_params_default(&g);
        g.image = self->image;
        if (vdit_gen_size(self->model, &g, &self->pref_w, &self->pref_h) < 0)
            GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
                                ("No frame size in the aspect of the image \"%s\" (%dx%d) suits "
                                 "the model: the image is cropped to %dx%d unless the caps "
                                 "downstream set another size.", image, self->image->width,
                                 self->image->height, self->pref_w, self->pref_h), (NULL));
        GST_INFO_OBJECT(self, "image %s: %dx%d, preferred size %dx%d", image,
                        self->image->width, self->image->height, self->pref_w, self->pref_h);
    }
    self->clip_pos = 0;
    self->n_out = 0;
    self->clip_index = 0;
    ok = TRUE;
done:
    if (!ok)
        vdit_video_free(&self->image);
    g_free(path);
    g_free(decoder);
    g_free(lora);
    g_free(device);
    g_free(image);
    return ok;
}

static void free_converter(GstVditSrc *self)
{
    if (self->conv)
        gst_video_converter_free(self->conv);
    self->conv = NULL;
}

static gboolean gst_vdit_src_stop(GstBaseSrc *bs)
{
    GstVditSrc *self = GST_VDIT_SRC(bs);
    free_converter(self);
    vdit_video_free(&self->clip);
    vdit_video_free(&self->image);
    vdit_ctx_free(&self->ctx);
    vdit_model_free(&self->model);
    return TRUE;
}

static GstCaps *gst_vdit_src_fixate(GstBaseSrc *bs, GstCaps *caps)
{
    GstVditSrc *self = GST_VDIT_SRC(bs);
    caps = gst_caps_make_writable(caps);
    caps = gst_caps_truncate(caps);
    GstStructure *s = gst_caps_get_structure(caps, 0);
    /* start() filled minfo and the preferred size: the model's native size
     * and rate, or for image= the size libvdit picks for the image */
    int w = self->pref_w, h = self->pref_h;
    int fps = MAX(1, (int)(self->minfo.fps + 0.5f));
    gst_structure_fixate_field_nearest_int(s, "width", w);
    gst_structure_fixate_field_nearest_int(s, "height", h);
    gst_structure_fixate_field_nearest_fraction(s, "framerate", fps, 1);
    /* I420 unless downstream leaves no choice; YUV is BT.709 limited range
     * unless downstream asks for other colorimetry */
    gst_structure_fixate_field_string(s, "format", "I420");
    const gchar *fmt = gst_structure_get_string(s, "format");
    const GstVideoFormatInfo *fi =
        gst_video_format_get_info(fmt ? gst_video_format_from_string(fmt)
                                      : GST_VIDEO_FORMAT_UNKNOWN);
    if (fi && GST_VIDEO_FORMAT_INFO_IS_YUV(fi)) {
        if (gst_structure_has_field(s, "colorimetry"))
            gst_structure_fixate_field_string(s, "colorimetry", GST_VIDEO_COLORIMETRY_BT709);
        else
            gst_structure_set(s, "colorimetry", G_TYPE_STRING, GST_VIDEO_COLORIMETRY_BT709,
                              NULL);
    }
    return GST_BASE_SRC_CLASS(gst_vdit_src_parent_class)->fixate(bs, caps);
}

static gboolean gst_vdit_src_set_caps(GstBaseSrc *bs, GstCaps *caps)
{
    GstVditSrc *self = GST_VDIT_SRC(bs);
    GstVideoInfo info;
    if (!gst_video_info_from_caps(&info, caps) || GST_VIDEO_INFO_FPS_N(&info) <= 0)
        return FALSE;
    if (self->clip && (GST_VIDEO_INFO_WIDTH(&info) != self->clip->width
                       || GST_VIDEO_INFO_HEIGHT(&info) != self->clip->height)) {
        vdit_video_free(&self->clip); /* a new size starts a new clip */
        self->clip_pos = 0;
    }
    /* the model's frames are packed 8-bit RGB rows of width * 3 bytes, in
     * the primaries and transfer of the caps */
    gint w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
    GstVideoInfo ri;
    gst_vdit_rgb_info(&ri, GST_VIDEO_FORMAT_RGB, &info);
    GST_VIDEO_INFO_PLANE_STRIDE(&ri, 0) = w * 3;
    GST_VIDEO_INFO_SIZE(&ri) = (gsize)w * 3 * (gsize)h;
    GstVideoConverter *conv = NULL;
    if (GST_VIDEO_INFO_FORMAT(&info) != GST_VIDEO_FORMAT_RGB) {
        /* the output info comes from the caps, so the matrix and range are
         * theirs; 10-bit output is converted straight from the 8-bit RGB */
        conv = gst_video_converter_new(&ri, &info, NULL);
        if (!conv) {
            GST_ERROR_OBJECT(self, "cannot convert RGB to %" GST_PTR_FORMAT, caps);
            return FALSE;
        }
    }
    free_converter(self);
    self->conv = conv;
    self->rgb_info = ri;
    self->info = info;
    return TRUE;
}

static void fill_params(GstVditSrc *self, vdit_gen_params *p, gchar **prompt, gchar **neg)
{
    vdit_gen_params_default(p);
    GST_OBJECT_LOCK(self);
    *prompt = g_strdup(self->prompt);
    *neg = g_strdup(self->negative_prompt);
    p->steps = self->steps;
    p->guidance = (float)self->guidance;
    p->shift = (float)self->shift;
    p->seed = self->seed;
    p->sampler = self->sampler;
    p->cache = self->cache;
    p->cache_threshold = self->cache_threshold;
    p->n_frames = self->num_frames;
    p->loop = self->loop;
    GST_OBJECT_UNLOCK(self);
    p->prompt = *prompt;
    p->negative_prompt = *neg;
    p->width = GST_VIDEO_INFO_WIDTH(&self->info);
    p->height = GST_VIDEO_INFO_HEIGHT(&self->info);
}

/* Makes the next clip: the first from the prompt; later ones repeat the loop
 * or extend the previous clip so the stream has no cut. */
static GstFlowReturn next_clip(GstVditSrc *self)
{
    vdit_gen_params p;
    gchar *prompt, *neg;
    fill_params(self, &p, &prompt, &neg);
    int err = 0;
    if (self->clip && p.loop) {
        self->clip_pos = 0; /* a seamless loop repeats itself */
    } else if (self->clip) {
        vdit_video *ext = NULL;
        int n_new = p.n_frames > 0 ? p.n_frames : self->clip->n_frames;
        p.n_frames = 0;
        err = vdit_extend(self->ctx, &p, self->clip, n_new, 0, &ext);
        if (err >= 0) {
            /* keep only the new frames: the extension holds the old ones first */
            int old = ext->n_frames - n_new;
            vdit_video *clip = vdit_video_new(ext->width, ext->height, n_new);
            if (!clip) {
                err = VDIT_ERR_NOMEM;
            } else {
                size_t fb = (size_t)ext->width * ext->height * 3;
                memcpy(clip->rgb, ext->rgb + fb * (size_t)old, fb * (size_t)n_new);
                vdit_video_free(&self->clip);
                self->clip = clip;
                self->clip_pos = 0;
            }
            vdit_video_free(&ext);
        }
    } else {
        /* the first clip (or the first at a new size) starts from image= */
        p.image = self->image;
        err = vdit_generate(self->ctx, &p, &self->clip);
        self->clip_pos = 0;
    }
    g_free(prompt);
    g_free(neg);
    self->clip_index++;
    if (err == VDIT_ERR_CANCELLED)
        return GST_FLOW_FLUSHING;
    if (err < 0) {
        GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit failed to generate video"),
                          ("%s (%s)", vdit_ctx_last_error(self->ctx), vdit_strerror(err)));
        return GST_FLOW_ERROR;
    }
    if (self->clip->width != GST_VIDEO_INFO_WIDTH(&self->info)
        || self->clip->height != GST_VIDEO_INFO_HEIGHT(&self->info) || self->clip->n_frames < 1) {
        GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("vdit returned a clip of the wrong size"),
                          ("%dx%d, expected %dx%d", self->clip->width, self->clip->height,
                           GST_VIDEO_INFO_WIDTH(&self->info), GST_VIDEO_INFO_HEIGHT(&self->info)));
        return GST_FLOW_ERROR;
    }
    return GST_FLOW_OK;
}

static GstFlowReturn gst_vdit_src_create(GstPushSrc *ps, GstBuffer **out)
{
    GstVditSrc *self = GST_VDIT_SRC(ps);
    if (!self->clip || self->clip_pos >= self->clip->n_frames) {
        GstFlowReturn fr = next_clip(self);
        if (fr != GST_FLOW_OK)
            return fr;
    }
    GstBuffer *buf = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&self->info), NULL);
    GstVideoFrame f;
    if (!gst_video_frame_map(&f, &self->info, buf, GST_MAP_WRITE)) {
        gst_buffer_unref(buf);
        return GST_FLOW_ERROR;
    }
    int w = self->clip->width, h = self->clip->height;
    const guint8 *src = self->clip->rgb + (size_t)self->clip_pos * w * h * 3;
    if (!self->conv) {
        guint8 *dst = GST_VIDEO_FRAME_PLANE_DATA(&f, 0);
        gint ds = GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
        for (int y = 0; y < h; y++)
            memcpy(dst + (gsize)y * ds, src + (gsize)y * w * 3, (gsize)w * 3);
    } else {
        gsize sz = (gsize)w * h * 3;
        GstBuffer *wrap = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, (gpointer)src,
                                                      sz, 0, sz, NULL, NULL);
        GstVideoFrame sf;
        gboolean ok = gst_video_frame_map(&sf, &self->rgb_info, wrap, GST_MAP_READ);
        if (ok) {
            gst_video_converter_frame(self->conv, &sf, &f);
            gst_video_frame_unmap(&sf);
        }
        gst_buffer_unref(wrap);
        if (!ok) {
            gst_video_frame_unmap(&f);
            gst_buffer_unref(buf);
            GST_ELEMENT_ERROR(self, CORE, FAILED, ("Cannot map a generated frame"), (NULL));
            return GST_FLOW_ERROR;
        }
    }
    gst_video_frame_unmap(&f);

    gint fn = GST_VIDEO_INFO_FPS_N(&self->info), fd = GST_VIDEO_INFO_FPS_D(&self->info);
    GstClockTime t0 = gst_util_uint64_scale_int(self->n_out * GST_SECOND, fd, fn);
    GstClockTime t1 = gst_util_uint64_scale_int((self->n_out + 1) * GST_SECOND, fd, fn);
    GST_BUFFER_PTS(buf) = t0;
    GST_BUFFER_DTS(buf) = t0;
    GST_BUFFER_DURATION(buf) = t1 - t0;
    GST_BUFFER_OFFSET(buf) = self->n_out;
    GST_BUFFER_OFFSET_END(buf) = self->n_out + 1;
    self->n_out++;
    self->clip_pos++;
    *out = buf;
    return GST_FLOW_OK;
}

static gboolean gst_vdit_src_unlock(GstBaseSrc *bs)
{
    GstVditSrc *self = GST_VDIT_SRC(bs);
    if (self->ctx)
        vdit_ctx_cancel(self->ctx); /* generation stops at its next step */
    return TRUE;
}

static gboolean gst_vdit_src_unlock_stop(GstBaseSrc *bs)
{
    return TRUE; /* the cancel flag clears when the next call starts */
}

static void gst_vdit_src_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps)
{
    GstVditSrc *self = GST_VDIT_SRC(obj);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_PROMPT:
        g_free(self->prompt);
        self->prompt = g_value_dup_string(v);
        break;
    case PROP_NEGATIVE_PROMPT:
        g_free(self->negative_prompt);
        self->negative_prompt = g_value_dup_string(v);
        break;
    case PROP_STEPS: self->steps = g_value_get_int(v); break;
    case PROP_GUIDANCE: self->guidance = g_value_get_double(v); break;
    case PROP_SHIFT: self->shift = g_value_get_double(v); break;
    case PROP_SEED: self->seed = g_value_get_uint64(v); break;
    case PROP_SAMPLER: self->sampler = g_value_get_enum(v); break;
    case PROP_NUM_FRAMES: self->num_frames = g_value_get_int(v); break;
    case PROP_LOOP: self->loop = g_value_get_boolean(v); break;
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
    case PROP_IMAGE:
        g_free(self->image_path);
        self->image_path = g_value_dup_string(v);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_vdit_src_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps)
{
    GstVditSrc *self = GST_VDIT_SRC(obj);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_PROMPT: g_value_set_string(v, self->prompt); break;
    case PROP_NEGATIVE_PROMPT: g_value_set_string(v, self->negative_prompt); break;
    case PROP_STEPS: g_value_set_int(v, self->steps); break;
    case PROP_GUIDANCE: g_value_set_double(v, self->guidance); break;
    case PROP_SHIFT: g_value_set_double(v, self->shift); break;
    case PROP_SEED: g_value_set_uint64(v, self->seed); break;
    case PROP_SAMPLER: g_value_set_enum(v, self->sampler); break;
    case PROP_NUM_FRAMES: g_value_set_int(v, self->num_frames); break;
    case PROP_LOOP: g_value_set_boolean(v, self->loop); break;
    case PROP_MODEL: g_value_set_string(v, self->model_path); break;
    case PROP_DECODER: g_value_set_string(v, self->decoder); break;
    case PROP_LORA: g_value_set_string(v, self->lora); break;
    case PROP_THREADS: g_value_set_int(v, self->threads); break;
    case PROP_PRECISION: g_value_set_enum(v, self->precision); break;
    case PROP_DEVICE: g_value_set_string(v, self->device); break;
    case PROP_CACHE: g_value_set_enum(v, self->cache); break;
    case PROP_CACHE_THRESHOLD: g_value_set_float(v, self->cache_threshold); break;
    case PROP_IMAGE: g_value_set_string(v, self->image_path); break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_vdit_src_finalize(GObject *obj)
{
    GstVditSrc *self = GST_VDIT_SRC(obj);
    free_converter(self);
    vdit_video_free(&self->clip);
    vdit_video_free(&self->image);
    vdit_ctx_free(&self->ctx);
    vdit_model_free(&self->model);
    g_free(self->prompt);
    g_free(self->negative_prompt);
    g_free(self->model_path);
    g_free(self->image_path);
    g_free(self->decoder);
    g_free(self->lora);
    g_free(self->device);
    G_OBJECT_CLASS(gst_vdit_src_parent_class)->finalize(obj);
}

static void gst_vdit_src_class_init(GstVditSrcClass *klass)
{
    GObjectClass *oc = G_OBJECT_CLASS(klass);
    GstElementClass *ec = GST_ELEMENT_CLASS(klass);
    GstBaseSrcClass *bc = GST_BASE_SRC_CLASS(klass);
    GstPushSrcClass *pc = GST_PUSH_SRC_CLASS(klass);
    oc->set_property = gst_vdit_src_set_property;
    oc->get_property = gst_vdit_src_get_property;
    oc->finalize = gst_vdit_src_finalize;
    bc->start = gst_vdit_src_start;
    bc->stop = gst_vdit_src_stop;
    bc->fixate = gst_vdit_src_fixate;
    bc->set_caps = gst_vdit_src_set_caps;
    bc->unlock = gst_vdit_src_unlock;
    bc->unlock_stop = gst_vdit_src_unlock_stop;
    pc->create = gst_vdit_src_create;

    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
    const GParamFlags live = rw | GST_PARAM_MUTABLE_PLAYING;
    const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;
    g_object_class_install_property(oc, PROP_PROMPT,
        g_param_spec_string("prompt", "Prompt", "What the video should show (changes apply "
                            "from the next clip)", NULL, live));
    g_object_class_install_property(oc, PROP_NEGATIVE_PROMPT,
        g_param_spec_string("negative-prompt", "Negative prompt", "What to steer away from "
                            "(NULL: the model's default negative prompt)", NULL, live));
    g_object_class_install_property(oc, PROP_STEPS,
        g_param_spec_int("steps", "Steps", "Sampling steps (0: model default)", 0, 1000,
                         VDIT_DEFAULT_STEPS, live));
    g_object_class_install_property(oc, PROP_GUIDANCE,
        g_param_spec_double("guidance", "Guidance", "Classifier-free guidance scale "
                            "(-1: model default, 1: no guidance)", -1.0, 50.0,
                            VDIT_DEFAULT_GUIDANCE, live));
    g_object_class_install_property(oc, PROP_SHIFT,
        g_param_spec_double("shift", "Shift", "Timestep shift (-1: model default)", -1.0, 100.0,
                            VDIT_DEFAULT_SHIFT, live));
    g_object_class_install_property(oc, PROP_SEED,
        g_param_spec_uint64("seed", "Seed", "Noise seed", 0, G_MAXUINT64,
                            VDIT_DEFAULT_SEED, live));
    g_object_class_install_property(oc, PROP_SAMPLER,
        g_param_spec_enum("sampler", "Sampler", "Flow-matching sampler", GST_TYPE_VDIT_SAMPLER,
                          VDIT_DEFAULT_SAMPLER, live));
    g_object_class_install_property(oc, PROP_NUM_FRAMES,
        g_param_spec_int("num-frames", "Frames per clip", "Frames generated at a time "
                         "(0: the model's native length)", 0, 100000,
                         VDIT_DEFAULT_WINDOW, live));
    g_object_class_install_property(oc, PROP_LOOP,
        g_param_spec_boolean("loop", "Loop", "Generate one seamless loop and repeat it", FALSE,
                             ready));
    g_object_class_install_property(oc, PROP_MODEL,
        g_param_spec_string("model", "Model", "Model folder or checkpoint (NULL: the bundled "
                            "default model)", NULL, ready));
    g_object_class_install_property(oc, PROP_DECODER,
        g_param_spec_string("decoder", "Decoder", "Latents to frames: vae (NULL: the model's "
                            "VAE), tae (TAEHV from the model's folder, faster, lower quality) "
                            "or a TAEHV file", NULL, ready));
    g_object_class_install_property(oc, PROP_LORA,
        g_param_spec_string("lora", "LoRA", "LoRA files merged into the DiT at load: "
                            "FILE[:SCALE][|FILE[:SCALE]...] (SCALE default 1; NULL: none)", NULL,
                            ready));
    g_object_class_install_property(oc, PROP_THREADS,
        g_param_spec_int("threads", "Threads", "Worker threads (0: all cores)", 0, 1024,
                         VDIT_DEFAULT_THREADS, ready));
    g_object_class_install_property(oc, PROP_PRECISION,
        g_param_spec_enum("precision", "Precision", "Arithmetic of the products (auto: bf16 "
                          "where the CPU has bf16 instructions, else fp32)",
                          GST_TYPE_VDIT_PRECISION, VDIT_DEFAULT_PRECISION, ready));
    gst_vdit_install_device_prop(oc, PROP_DEVICE);
    gst_vdit_install_cache_props(oc, PROP_CACHE, PROP_CACHE_THRESHOLD);
    g_object_class_install_property(oc, PROP_IMAGE,
        g_param_spec_string("image", "Image", "Image file the video starts from (image to "
                            "video; read when the element starts; NULL: from the prompt alone)",
                            NULL, ready));

    gst_element_class_add_static_pad_template(ec, &src_template);
    gst_element_class_set_static_metadata(ec, "vdit video generator", "Source/Video",
        "Generates video from a text prompt or an image with a video diffusion transformer",
        "vdit developers");
}

static void gst_vdit_src_init(GstVditSrc *self)
{
    self->guidance = VDIT_DEFAULT_GUIDANCE;
    self->shift = VDIT_DEFAULT_SHIFT;
    self->sampler = VDIT_DEFAULT_SAMPLER; /* auto: the model's default */
    gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
    gst_base_src_set_live(GST_BASE_SRC(self), FALSE);
}
