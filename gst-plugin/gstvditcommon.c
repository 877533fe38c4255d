#include "gstvditcommon.h"

#include <string.h>

GST_DEBUG_CATEGORY(gst_vdit_debug);
#define GST_CAT_DEFAULT gst_vdit_debug

GType gst_vdit_sampler_get_type(void)
{
    static gsize id = 0;
    static const GEnumValue values[] = {
        { VDIT_DEFAULT_SAMPLER, "The model's default (vdit.json; UniPC for Wan2.1)", "auto" },
        { VDIT_SAMPLER_UNIPC, "UniPC multistep (Wan's default)", "unipc" },
        { VDIT_SAMPLER_DPMPP, "DPM++ 2M multistep", "dpm++" },
        { VDIT_SAMPLER_EULER, "Euler", "euler" },
        { VDIT_SAMPLER_FEWSTEP, "Few-step (distilled models: their timestep list, re-noised)",
          "fewstep" },
        { 0, NULL, NULL },
    };
    if (g_once_init_enter(&id)) {
        GType t = g_enum_register_static("GstVditSampler", values);
        g_once_init_leave(&id, t);
    }
    return (GType)id;
}

GType gst_vdit_precision_get_type(void)
{
    static gsize id = 0;
    static const GEnumValue values[] = {
        { VDIT_PRECISION_AUTO, "bf16 where the CPU has bf16 instructions, else fp32", "auto" },
        { VDIT_PRECISION_FP32, "fp32 (exact)", "fp32" },
        { VDIT_PRECISION_BF16, "bf16 operands, fp32 accumulation", "bf16" },
        { 0, NULL, NULL },
    };
    if (g_once_init_enter(&id)) {
        GType t = g_enum_register_static("GstVditPrecision", values);
        g_once_init_leave(&id, t);
    }
    return (GType)id;
}

GType gst_vdit_cache_get_type(void)
{
    static gsize id = 0;
    static const GEnumValue values[] = {
        { VDIT_CACHE_OFF, "every step computed", "off" },
        { VDIT_CACHE_EASY, "EasyCache", "easy" },
        { VDIT_CACHE_TEA, "TeaCache-style", "tea" },
        { 0, NULL, NULL },
    };
    if (g_once_init_enter(&id)) {
        GType t = g_enum_register_static("GstVditCache", values);
        g_once_init_leave(&id, t);
    }
    return (GType)id;
}

GType gst_vdit_accept_get_type(void)
{
    static gsize id = 0;
    static const GFlagsValue values[] = {
        { GST_VDIT_ACCEPT_INTERLACED, "Interlaced video: each frame (both fields) is edited "
          "as one progressive picture", "interlaced" },
        { GST_VDIT_ACCEPT_HDR, "HDR video (PQ or HLG transfer): its code values are edited as "
          "if they were SDR", "hdr" },
        { 0, NULL, NULL },
    };
    if (g_once_init_enter(&id)) {
        GType t = g_flags_register_static("GstVditAccept", values);
        g_once_init_leave(&id, t);
    }
    return (GType)id;
}

void gst_vdit_rgb_info(GstVideoInfo *rgb, GstVideoFormat format, const GstVideoInfo *video)
{
    gst_video_info_set_format(rgb, format, GST_VIDEO_INFO_WIDTH(video),
                              GST_VIDEO_INFO_HEIGHT(video));
    /* the converter wants everything but the format and colour to match */
    GST_VIDEO_INFO_FPS_N(rgb) = GST_VIDEO_INFO_FPS_N(video);
    GST_VIDEO_INFO_FPS_D(rgb) = GST_VIDEO_INFO_FPS_D(video);
    GST_VIDEO_INFO_PAR_N(rgb) = GST_VIDEO_INFO_PAR_N(video);
    GST_VIDEO_INFO_PAR_D(rgb) = GST_VIDEO_INFO_PAR_D(video);
    GST_VIDEO_INFO_INTERLACE_MODE(rgb) = GST_VIDEO_INFO_INTERLACE_MODE(video);
    /* set_format gives RGB the sRGB colorimetry; with the video's primaries
     * and transfer instead, the converter has no primaries or gamma to
     * convert whatever its options, and the model sees the video's own
     * (gamma-encoded) RGB. The YUV matrix and range are video's, from its
     * caps. */
    GstVideoColorimetry *c = &GST_VIDEO_INFO_COLORIMETRY(rgb);
    c->primaries = GST_VIDEO_INFO_COLORIMETRY(video).primaries;
    c->transfer = GST_VIDEO_INFO_COLORIMETRY(video).transfer;
    c->matrix = GST_VIDEO_COLOR_MATRIX_RGB;
    c->range = GST_VIDEO_COLOR_RANGE_0_255;
}

void gst_vdit_install_cache_props(GObjectClass *oc, guint cache_id, guint threshold_id)
{
    const GParamFlags ready = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
    g_object_class_install_property(oc, cache_id,
        g_param_spec_enum("cache", "Step cache", "Step caching: steps reuse the DiT's last "
                          "residual while it barely changes (fewer forwards, a small change "
                          "to the result)", GST_TYPE_VDIT_CACHE, VDIT_DEFAULT_CACHE, ready));
    g_object_class_install_property(oc, threshold_id,
        g_param_spec_float("cache-threshold", "Step cache threshold", "Higher skips more "
                           "(0: the mode's default)", 0.0f, 1000.0f,
                           (float)VDIT_DEFAULT_CACHE_THRESHOLD, ready));
}

void gst_vdit_install_device_prop(GObjectClass *oc, guint id)
{
    const GParamFlags ready = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
    g_object_class_install_property(oc, id,
        g_param_spec_string("device", "Device", "Where the model runs: cpu, cuda, cuda:N or auto "
                            "(NULL: cpu; cuda: an NVIDIA GPU, its weights uploaded when the "
                            "model loads; auto: cuda:0 where one answers, else the CPU)", NULL,
                            ready));
}

/* The last error vdit logged on an element, kept to name the reason when a
 * call fails without a context to ask (vdit_ctx_init). */
static GQuark last_error_quark(void)
{
    return g_quark_from_static_string("gst-vdit-last-error");
}

void gst_vdit_log(void *user, int level, const char *msg)
{
    if (level <= VDIT_LOG_ERROR && user)
        g_object_set_qdata_full(G_OBJECT(user), last_error_quark(), g_strdup(msg), g_free);
    GstDebugLevel l = level <= VDIT_LOG_ERROR     ? GST_LEVEL_ERROR
                      : level == VDIT_LOG_WARNING ? GST_LEVEL_WARNING
                      : level == VDIT_LOG_INFO    ? GST_LEVEL_INFO
                      : level == VDIT_LOG_VERBOSE ? GST_LEVEL_DEBUG
                                                  : GST_LEVEL_LOG;
    GST_CAT_LEVEL_LOG(gst_vdit_debug, l, user, "%s", msg);
}

gboolean gst_vdit_open(GstElement *el, const gchar *path, const gchar *decoder,
                       const gchar *lora, const gchar *device, gint threads, gint precision,
                       vdit_progress_fn progress, void *progress_user, vdit_model **model,
                       vdit_ctx **ctx)
{
    if (!path || !*path)
        path = vdit_default_model_path();
    if (!path) {
        GST_ELEMENT_ERROR(el, RESOURCE, NOT_FOUND, ("No model given"),
                          ("set the 'model' property: this build has no bundled model"));
        return FALSE;
    }
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.log_cb = gst_vdit_log;
    mp.log_user = el;
    mp.log_level = VDIT_LOG_DEBUG;
    mp.n_threads = threads;
    mp.precision = precision;
    mp.device = device && *device ? device : NULL; /* the context's: NULL, the model's */
    mp.decoder = decoder && *decoder ? decoder : NULL;
    vdit_lora loras[64];
    gchar *lora_buf = NULL;
    if (lora && *lora) {
        lora_buf = g_malloc(strlen(lora) + 1);
        int n = vdit_lora_parse(lora, loras, G_N_ELEMENTS(loras), lora_buf, strlen(lora) + 1);
        if (n < 0) {
            GST_ELEMENT_ERROR(el, RESOURCE, SETTINGS, ("Bad 'lora' property '%s'", lora),
                              ("want FILE[:SCALE][|FILE[:SCALE]...], at most %d",
                               (int)G_N_ELEMENTS(loras)));
            g_free(lora_buf);
            return FALSE;
        }
        mp.loras = loras;
        mp.n_loras = n;
    }
    int err = vdit_model_load(path, &mp, model);
    g_free(lora_buf);
    if (err < 0) {
        /* the cause in the message itself, where applications show it (a
         * device that cannot be used is no fault of the model's files) */
        GST_ELEMENT_ERROR(el, RESOURCE, OPEN_READ, ("Could not load the vdit model '%s': %s",
                          path, mp.error[0] ? mp.error : vdit_strerror(err)),
                          ("%s", vdit_strerror(err)));
        return FALSE;
    }
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = threads;
    cp.precision = precision;
    cp.log_cb = gst_vdit_log;
    cp.log_user = el;
    cp.log_level = VDIT_LOG_DEBUG;
    cp.progress_cb = progress;
    cp.progress_user = progress_user;
    g_object_set_qdata(G_OBJECT(el), last_error_quark(), NULL);
    err = vdit_ctx_init(*model, &cp, ctx);
    if (err < 0) {
        const gchar *why = g_object_get_qdata(G_OBJECT(el), last_error_quark());
        GST_ELEMENT_ERROR(el, RESOURCE, FAILED, ("Could not start vdit: %s", why ? why :
                          vdit_strerror(err)), ("%s", vdit_strerror(err)));
        vdit_model_free(model);
        return FALSE;
    }
    GST_INFO_OBJECT(el, "computing in %s", vdit_ctx_compute(*ctx));
    return TRUE;
}

void gst_vdit_post_progress(GstElement *el, int stage, int step, int total, guint window)
{
    GstStructure *s = gst_structure_new("vdit-progress", "stage", G_TYPE_STRING,
                                        vdit_stage_name(stage), "step", G_TYPE_INT, step, "total",
                                        G_TYPE_INT, total, "window", G_TYPE_UINT, window, NULL);
    gst_element_post_message(el, gst_message_new_element(GST_OBJECT(el), s));
}
