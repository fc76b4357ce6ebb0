// Plugin shmring: registers shmringsink and shmringsrc.
#include <gst/gst.h>

#include "gstshmringsink.h"
#include "gstshmringsrc.h"

static gboolean plugin_init(GstPlugin* plugin) {
  gboolean ok = FALSE;
  ok |= GST_ELEMENT_REGISTER(shmringsink, plugin);
  ok |= GST_ELEMENT_REGISTER(shmringsrc, plugin);
  return ok;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, shmring,
                  "Move buffers between processes through a lock-free ring in shared memory "
                  "(caps, timestamps and EOS carried in-band)",
                  plugin_init, VERSION, GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
