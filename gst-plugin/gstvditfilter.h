#ifndef GST_VDIT_FILTER_H
#define GST_VDIT_FILTER_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_VDIT (gst_vdit_get_type())
G_DECLARE_FINAL_TYPE(GstVdit, gst_vdit, GST, VDIT, GstElement)
GST_ELEMENT_REGISTER_DECLARE(vdit);

G_END_DECLS
#endif
