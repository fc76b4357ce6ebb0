// Sender process for bench/bench.py's several-receivers rows (a benchmark helper, not a test).
//
//     gst_fanout_sender CLIENTS 'videotestsrc ... ! shmsink name=sink ...'
//     gst_fanout_sender 0 'videotestsrc ... ! shmringsink shm-name=X max-receivers=N ...'
//
// Runs a gst-launch-1.0 style pipeline description as gst-launch-1.0 -q does, with one
// difference: the pipeline waits in PAUSED (the first frame prerolled, not yet sent) until
// every receiver is attached, and only then goes to PLAYING, so every receiver gets the
// stream from its first buffer:
// - with CLIENTS > 0, until the element named "sink" (a shmsink) has emitted
//   "client-connected" CLIENTS times (shmsink's wait-for-connection waits for the first
//   client only: a later shmsrc client would miss the first buffers);
// - for every shmringsink in the pipeline, until all max-receivers receiver slots of its ring
//   are attached (the ATTACHED flag of each slot, docs/PROTOCOL.md; a lossless receiver that
//   attaches after the stream started would miss the records the others already released).
// bench.py runs every variant of a row with this program and charges its whole CPU time
// (wait4) to the sender; the waits sleep (the ring check: one look every 2 ms).
//
// Prints "connected K" on stdout (flushed) when the K-th shmsink client connected and
// "streaming" when it sets PLAYING. Exits 0 at end of stream; 1 on a pipeline error (message
// on stderr); 2 on bad arguments; 3 when the receivers did not attach within 60 s.
#include <fcntl.h>
#include <gst/gst.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shm/layout.hpp"

// A shmringsink of the pipeline: its ring's name and receiver slots.
struct Ring {
  std::string name;
  guint receivers;
};

struct Sender {
  GstElement *pipeline = nullptr;
  GMainLoop *loop = nullptr;
  gint wanted = 0;
  gint connected = 0;  // g_atomic_int_* only: written from shmsink's poll thread
  int status = 0;
  std::vector<Ring> rings;
  bool started = false;  // main loop only
};

// Whether every receiver slot of the ring is attached: maps the segment read-only and
// loads each slot's flags word (acquire: the receiver's attach stores it). False while the
// segment does not exist yet (shmringsink creates it at the first caps). Never blocks.
static bool ring_attached(const Ring &ring) {
  const std::string path = "/dev/shm/" + ring.name;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st = {};
  const size_t need = shm::layout::SlotOffset(ring.receivers);
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < need) {
    close(fd);
    return false;
  }
  void *map = mmap(nullptr, need, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return false;
  bool all = true;
  for (guint k = 0; k < ring.receivers && all; ++k) {
    const auto *flags = reinterpret_cast<const uint32_t *>(
        static_cast<const char *>(map) + shm::layout::SlotOffset(k) + shm::layout::kSlotFlags);
    all = (__atomic_load_n(flags, __ATOMIC_ACQUIRE) & shm::layout::kConsumerAttached) != 0;
  }
  munmap(map, need);
  return all;
}

// Main loop: sets PLAYING (never from shmsink's poll thread, which would deadlock).
static gboolean start_streaming(gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  if (s->started) return G_SOURCE_REMOVE;
  s->started = true;
  printf("streaming\n");
  fflush(stdout);
  if (gst_element_set_state(s->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fprintf(stderr, "gst_fanout_sender: gst_element_set_state(PLAYING) failed\n");
    s->status = 1;
    g_main_loop_quit(s->loop);
  }
  return G_SOURCE_REMOVE;
}

// Main loop, every 2 ms: starts the stream once every shmsink client connected and every
// ring's receivers attached.
static gboolean check_receivers(gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  if (g_atomic_int_get(&s->connected) < s->wanted) return G_SOURCE_CONTINUE;
  for (const Ring &ring : s->rings) {
    if (!ring_attached(ring)) return G_SOURCE_CONTINUE;
  }
  start_streaming(s);
  return G_SOURCE_REMOVE;
}

// shmsink's poll thread, once per accepted client.
static void on_client_connected(GstElement *sink, gint fd, gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  (void)sink;
  (void)fd;
  gint k = g_atomic_int_add(&s->connected, 1) + 1;
  printf("connected %d\n", k);
  fflush(stdout);
  if (k == s->wanted) g_idle_add(start_streaming, s);
}

static gboolean receivers_timeout(gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  if (!s->started) {
    fprintf(stderr,
            "gst_fanout_sender: not every receiver attached within 60 s (%d of %d shmsink "
            "clients)\n",
            g_atomic_int_get(&s->connected), s->wanted);
    s->status = 3;
    g_main_loop_quit(s->loop);
  }
  return G_SOURCE_REMOVE;
}

// The shmringsinks of the pipeline (any depth), with their names and receiver slots.
static std::vector<Ring> find_rings(GstElement *pipeline) {
  std::vector<Ring> rings;
  GstIterator *it = gst_bin_iterate_recurse(GST_BIN(pipeline));
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    GstElement *e = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory *f = gst_element_get_factory(e);
    if (f != nullptr && g_strcmp0(GST_OBJECT_NAME(f), "shmringsink") == 0) {
      gchar *name = nullptr;
      guint receivers = 0;
      g_object_get(e, "shm-name", &name, "max-receivers", &receivers, nullptr);
      rings.push_back({name ? name : "", receivers});
      g_free(name);
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  return rings;
}

static gboolean on_message(GstBus *bus, GstMessage *msg, gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  (void)bus;
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    g_main_loop_quit(s->loop);
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError *err = nullptr;
    gst_message_parse_error(msg, &err, nullptr);
    fprintf(stderr, "gst_fanout_sender: %s: %s\n", GST_OBJECT_NAME(msg->src), err->message);
    g_error_free(err);
    s->status = 1;
    g_main_loop_quit(s->loop);
  }
  return TRUE;
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  char *end = nullptr;
  long clients = argc == 3 ? strtol(argv[1], &end, 10) : -1;
  if (argc != 3 || *end != '\0' || clients < 0 || clients > 1000) {
    fprintf(stderr,
            "usage: gst_fanout_sender CLIENTS PIPELINE (CLIENTS > 0: a shmsink name=sink)\n");
    return 2;
  }
  GError *err = nullptr;
  Sender s;
  s.wanted = static_cast<gint>(clients);
  s.pipeline = gst_parse_launch(argv[2], &err);
  if (s.pipeline == nullptr || err != nullptr) {
    fprintf(stderr, "gst_fanout_sender: gst_parse_launch: %s\n", err ? err->message : "?");
    return 2;
  }
  s.loop = g_main_loop_new(nullptr, FALSE);
  GstBus *bus = gst_element_get_bus(s.pipeline);
  gst_bus_add_watch(bus, on_message, &s);
  gst_object_unref(bus);
  if (clients > 0) {
    GstElement *sink = gst_bin_get_by_name(GST_BIN(s.pipeline), "sink");
    if (sink == nullptr || g_signal_lookup("client-connected", G_OBJECT_TYPE(sink)) == 0) {
      fprintf(stderr, "gst_fanout_sender: CLIENTS > 0 needs a shmsink name=sink\n");
      return 2;
    }
    // Connected before the socket exists (shmsink creates it going READY -> PAUSED).
    g_signal_connect(sink, "client-connected", G_CALLBACK(on_client_connected), &s);
    gst_object_unref(sink);
  }
  s.rings = find_rings(s.pipeline);
  g_timeout_add_seconds(60, receivers_timeout, &s);
  g_timeout_add(2, check_receivers, &s);
  if (gst_element_set_state(s.pipeline, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE) {
    fprintf(stderr, "gst_fanout_sender: gst_element_set_state(PAUSED) failed\n");
    s.status = 1;
  }
  if (s.status == 0) g_main_loop_run(s.loop);
  gst_element_set_state(s.pipeline, GST_STATE_NULL);
  gst_object_unref(s.pipeline);
  g_main_loop_unref(s.loop);
  return s.status;
}
