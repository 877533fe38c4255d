/* Glue shared by the vdit elements: the log bridge, progress messages, the
 * property types and the RGB side of format conversion. Everything
 * model-related lives in libvdit. */
#ifndef GST_VDIT_COMMON_H
#define GST_VDIT_COMMON_H

#include <gst/gst.h>
#include <gst/video/video.h>
#include <vdit/vdit.h>

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN(gst_vdit_debug);

#define GST_TYPE_VDIT_SAMPLER (gst_vdit_sampler_get_type())
GType gst_vdit_sampler_get_type(void);
#define GST_TYPE_VDIT_PRECISION (gst_vdit_precision_get_type())
GType gst_vdit_precision_get_type(void);
#define GST_TYPE_VDIT_CACHE (gst_vdit_cache_get_type())
GType gst_vdit_cache_get_type(void);

/* What the vdit element edits although it was not made for it (property
 * "accept"): without the flag such streams are refused at caps time. */
typedef enum {
    GST_VDIT_ACCEPT_INTERLACED = 1 << 0,
    GST_VDIT_ACCEPT_HDR = 1 << 1,
} GstVditAccept;
#define GST_TYPE_VDIT_ACCEPT (gst_vdit_accept_get_type())
GType gst_vdit_accept_get_type(void);

/* 16-bit RGB with alpha in host byte order: the GStreamer format whose
 * samples are those of VDIT_PIXFMT_RGB48 (with an alpha sample after each
 * pixel). */
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
#define GST_VDIT_RGBA64 GST_VIDEO_FORMAT_RGBA64_LE
#else
#define GST_VDIT_RGBA64 GST_VIDEO_FORMAT_RGBA64_BE
#endif

/* Fills `rgb` with `format` (an RGB format) at the size, rate, aspect and
 * interlacing of `video`, coloured so that a GstVideoConverter between the
 * two changes only the matrix and range: the primaries and transfer are
 * video's, the matrix RGB, the range full. */
void gst_vdit_rgb_info(GstVideoInfo *rgb, GstVideoFormat format, const GstVideoInfo *video);

/* The step-caching properties both elements have ("cache", "cache-threshold"). */
void gst_vdit_install_cache_props(GObjectClass *oc, guint cache_id, guint threshold_id);

/* The "device" property both elements have (a string, NULL: the CPU). */
void gst_vdit_install_device_prop(GObjectClass *oc, guint id);

/* vdit_log_fn forwarding to the GStreamer debug log of the element in `user`. */
void gst_vdit_log(void *user, int level, const char *msg);

/* Loads the model at `path` (NULL or "": the bundled default) with the
 * decoder `decoder` (vdit_model_params.decoder: NULL, "" or "vae", "tae", a
 * TAEHV file) and the LoRAs of `lora` ("FILE[:SCALE]|...", vdit_lora_parse;
 * NULL or "": none) merged into it, on `device` (vdit_model_params.device:
 * NULL, "" or "cpu", "cuda", "cuda:N", "auto"; the context follows the
 * model), and makes a context (precision: enum vdit_precision). On failure
 * posts an element error and returns FALSE. */
gboolean gst_vdit_open(GstElement *el, const gchar *path, const gchar *decoder,
                       const gchar *lora, const gchar *device, gint threads, gint precision,
                       vdit_progress_fn progress, void *progress_user, vdit_model **model,
                       vdit_ctx **ctx);

/* Posts a "vdit-progress" element message (stage, step, total, window). */
void gst_vdit_post_progress(GstElement *el, int stage, int step, int total, guint window);

G_END_DECLS
#endif
