// Sender process for bench/bench.py's several-receivers rows (a benchmark helper, not a test).
//
//     gst_fanout_sender CLIENTS 'videotestsrc ... ! shmsink name=sink ...'
//
// Runs a gst-launch-1.0 style pipeline description as gst-launch-1.0 -q does, with one
// difference: with CLIENTS > 0 the pipeline waits in PAUSED (the first frame prerolled, not yet
// sent) until the element named "sink" (a shmsink) has emitted "client-connected" CLIENTS
// times, and only then goes to PLAYING: every client gets the stream from its first buffer.
// (shmsink's wait-for-connection waits for one client only: a later shmsrc client misses the
// first buffers.) With CLIENTS = 0 it goes to PLAYING at once (shmringsink, whose receivers
// are started first and wait for the ring). bench.py runs every variant of a row with this
// program and charges its whole CPU time (wait4) to the sender; the wait sleeps.
//
// Prints "connected K" on stdout (flushed) when the K-th client connected and "streaming"
// when it sets PLAYING. Exits 0 at end of stream; 1 on a pipeline error (message on stderr);
// 2 on bad arguments; 3 when CLIENTS clients did not connect within 60 s.
#include <gst/gst.h>

#include <cstdio>
#include <cstdlib>

typedef struct {
  GstElement *pipeline;
  GMainLoop *loop;
  gint wanted;
  gint connected; /* g_atomic_int_* only: written from shmsink's poll thread */
  int status;
} Sender;

/* Main loop: sets PLAYING (never from shmsink's poll thread, which would deadlock). */
static gboolean start_streaming(gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  printf("streaming\n");
  fflush(stdout);
  if (gst_element_set_state(s->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fprintf(stderr, "gst_fanout_sender: gst_element_set_state(PLAYING) failed\n");
    s->status = 1;
    g_main_loop_quit(s->loop);
  }
  return G_SOURCE_REMOVE;
}

/* shmsink's poll thread, once per accepted client. */
static void on_client_connected(GstElement *sink, gint fd, gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  (void)sink;
  (void)fd;
  gint k = g_atomic_int_add(&s->connected, 1) + 1;
  printf("connected %d\n", k);
  fflush(stdout);
  if (k == s->wanted) g_idle_add(start_streaming, s);
}

static gboolean clients_timeout(gpointer data) {
  Sender *s = static_cast<Sender *>(data);
  if (g_atomic_int_get(&s->connected) < s->wanted) {
    fprintf(stderr, "gst_fanout_sender: %d of %d clients connected within 60 s\n",
            g_atomic_int_get(&s->connected), s->wanted);
    s->status = 3;
    g_main_loop_quit(s->loop);
  }
  return G_SOURCE_REMOVE;
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
    fprintf(stderr, "usage: gst_fanout_sender CLIENTS 'PIPELINE with a shmsink name=sink'\n");
    return 2;
  }
  GError *err = nullptr;
  Sender s = {nullptr, nullptr, static_cast<gint>(clients), 0, 0};
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
    /* Connected before the socket exists (shmsink creates it going READY -> PAUSED). */
    g_signal_connect(sink, "client-connected", G_CALLBACK(on_client_connected), &s);
    gst_object_unref(sink);
    g_timeout_add_seconds(60, clients_timeout, &s);
    if (gst_element_set_state(s.pipeline, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE) {
      fprintf(stderr, "gst_fanout_sender: gst_element_set_state(PAUSED) failed\n");
      s.status = 1;
    }
  } else {
    g_idle_add(start_streaming, &s);
  }
  if (s.status == 0) g_main_loop_run(s.loop);
  gst_element_set_state(s.pipeline, GST_STATE_NULL);
  gst_object_unref(s.pipeline);
  g_main_loop_unref(s.loop);
  return s.status;
}
