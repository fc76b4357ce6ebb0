// shmringsrc: reads profile-1 (or opaque profile-0) records from a shared-memory
// ring and pushes them downstream as buffers with their caps and timestamps.
#pragma once

#include <gst/base/gstpushsrc.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_SHMRING_SRC (gst_shmring_src_get_type())
G_DECLARE_FINAL_TYPE(GstShmringSrc, gst_shmring_src, GST, SHMRING_SRC, GstPushSrc)

GST_ELEMENT_REGISTER_DECLARE(shmringsrc);

G_END_DECLS
