#ifndef GST_VDIT_SRC_H
#define GST_VDIT_SRC_H

#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_VDIT_SRC (gst_vdit_src_get_type())
G_DECLARE_FINAL_TYPE(GstVditSrc, gst_vdit_src, GST, VDIT_SRC, GstPushSrc)
GST_ELEMENT_REGISTER_DECLARE(vditsrc);

G_END_DECLS
#endif
