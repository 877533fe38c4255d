/* Glue shared by the vdit elements: the log bridge, progress messages and
 * the sampler enum. Everything model-related lives in libvdit. */
#ifndef GST_VDIT_COMMON_H
#define GST_VDIT_COMMON_H

#include <gst/gst.h>
#include <vdit/vdit.h>

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN(gst_vdit_debug);

#define GST_TYPE_VDIT_SAMPLER (gst_vdit_sampler_get_type())
GType gst_vdit_sampler_get_type(void);
#define GST_TYPE_VDIT_PRECISION (gst_vdit_precision_get_type())
GType gst_vdit_precision_get_type(void);
#define GST_TYPE_VDIT_CACHE (gst_vdit_cache_get_type())
GType gst_vdit_cache_get_type(void);

/* The step-caching properties both elements have ("cache", "cache-threshold"). */
void gst_vdit_install_cache_props(GObjectClass *oc, guint cache_id, guint threshold_id);

/* vdit_log_fn forwarding to the GStreamer debug log of the element in `user`. */
void gst_vdit_log(void *user, int level, const char *msg);

/* Loads the model at `path` (NULL or "": the bundled default) and makes a
 * context (precision: enum vdit_precision). On failure posts an element error and returns FALSE. */
gboolean gst_vdit_open(GstElement *el, const gchar *path, gint threads, gint precision,
                       vdit_progress_fn progress, void *progress_user, vdit_model **model,
                       vdit_ctx **ctx);

/* Posts a "vdit-progress" element message (stage, step, total, window). */
void gst_vdit_post_progress(GstElement *el, int stage, int step, int total, guint window);

G_END_DECLS
#endif
