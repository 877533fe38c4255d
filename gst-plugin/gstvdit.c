/* The vdit GStreamer plugin: `vdit` (edit a stream) and `vditsrc`
 * (generate video from a prompt). */
#include <gst/gst.h>

#include "gstvditcommon.h"
#include "gstvditfilter.h"
#include "gstvditsrc.h"

static gboolean plugin_init(GstPlugin *plugin)
{
    GST_DEBUG_CATEGORY_INIT(gst_vdit_debug, "vdit", 0, "vdit video diffusion elements");
    gboolean ok = GST_ELEMENT_REGISTER(vdit, plugin);
    ok &= GST_ELEMENT_REGISTER(vditsrc, plugin);
    return ok;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, vdit,
                  "Video diffusion transformer: generate and edit video from text prompts",
                  plugin_init, VDIT_PLUGIN_VERSION, "MIT", "vdit", "vdit")
