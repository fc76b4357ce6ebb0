// shmringsink: writes each buffer as one profile-1 record into a shared-memory ring.
#pragma once

#include <gst/base/gstbasesink.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_SHMRING_SINK (gst_shmring_sink_get_type())
G_DECLARE_FINAL_TYPE(GstShmringSink, gst_shmring_sink, GST, SHMRING_SINK, GstBaseSink)

GST_ELEMENT_REGISTER_DECLARE(shmringsink);

G_END_DECLS
