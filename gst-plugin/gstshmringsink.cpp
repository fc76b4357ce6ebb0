// shmringsink: a GstBaseSink that creates a profile-1 ring (core: shm::ShmProducer)
// and writes a CAPS record before the first buffer and on every caps change, one
// BUFFER record per buffer (timestamps, offsets and flags in the message header)
// and an EOS record on end of stream, after which the ring is marked CLOSED.
//
// Threads: render/event run in the streaming thread; unlock/unlock_stop come
// from the application or a flushing thread and interrupt a blocked write.
//
// Timestamps travel as running time plus an offset that a flush moves to the end
// of what was already written, so the receiver (whose segment started at the
// first buffer) never sees them go back after a flushing seek.

#include "gstshmringsink.h"

#include <gst/audio/audio.h>
#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ring_pool.h"
#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"

GST_DEBUG_CATEGORY_STATIC(gst_shmring_sink_debug);
#define GST_CAT_DEFAULT gst_shmring_sink_debug

namespace {

// 0: the ring is sized from the caps (ring_pool.h AutoCapacity) and created at the
// first caps rather than in start().
constexpr guint kDefaultCapacity = 0;
constexpr gboolean kDefaultWaitForSpace = TRUE;
constexpr guint kDefaultPerms = 0600;
constexpr guint kDefaultLingerS = 5;
constexpr guint kDefaultMaxReceivers = 1;
// How often stop() looks for a receiver while lingering.
constexpr gulong kLingerPollUs = 10000;
// A receiver that drained a ring the stream moved out of leaves it (HandedOver)
// and then opens the name and claims a slot of the current ring: a few system
// calls. Waits for such a hop end after this long even if the receiver never
// arrives (it may have stopped instead of following); such a receiver is announced
// as left then. A constant, not `linger` (whose 0 means off): docs/DESIGN.md.
constexpr gint64 kFollowGraceUs = 2 * G_USEC_PER_SEC;
// With wait-for-space, how long one wait for space lasts before checking again
// that a receiver is still attached (without one, a full ring drops instead).
constexpr gint64 kWaitSliceNs = 100 * GST_MSECOND;

// Buffer flags worth carrying to the receiver: everything but the mini-object
// bits and TAG_MEMORY (which describes this process's memory, not the data).
constexpr guint32 kCarriedFlags =
    ~(static_cast<guint32>(GST_MINI_OBJECT_FLAG_LAST) - 1u) & ~guint32{GST_BUFFER_FLAG_TAG_MEMORY};

enum {
  PROP_0,
  PROP_SHM_NAME,
  PROP_CAPACITY,
  PROP_WAIT_FOR_SPACE,
  PROP_PERMS,
  PROP_DROPPED,
  PROP_LINGER,
  PROP_NOT_RECEIVED,
  PROP_ALLOW_FOREIGN_OWNER,
  PROP_STATS,
  PROP_MAX_RECEIVERS,
};

// What a write did.
enum class WriteResult { kWritten, kDropped, kFlushing, kError };

// The element's C++ state (allocated in init, freed in finalize), as in shmringsrc.
struct SinkState {
  // Between start and stop. Set and cleared under OBJECT_LOCK; unlock takes a
  // reference under the lock and interrupts outside it.
  std::shared_ptr<shm::ShmProducer> producer;
  // Buffers written: published in place from the ring pool, or copied (stats).
  std::atomic<guint64> in_place{0};
  std::atomic<guint64> copied{0};
  // wait-for-space, for the ring pool (which may outlive the element).
  std::shared_ptr<std::atomic<bool>> wait_flag = std::make_shared<std::atomic<bool>>(true);
  // capacity 0: the ring waits for the first caps (streaming thread; start/stop).
  bool ring_pending = false;
  guint auto_capacity = 0;  // from the last caps (0 = none yet)
  // capacity 0: rings the stream moved out of for larger caps (grow_ring), CLOSED
  // and kept, with their producer role lock, until their receivers detach: a
  // receiver tells the handover from a stream cut short by that lock
  // (ShmConsumer::HandedOver). Streaming thread; cleared by stop.
  std::vector<std::shared_ptr<shm::ShmProducer>> previous;
  // Receivers attached to the ring the stream last moved out of, when it moved:
  // that many are expected to attach to the current ring (streaming thread, stop).
  guint32 followers_expected = 0;
  // Receivers announced (shmringsink-receiver-attached) in a ring the stream moved
  // out of and not seen in the current ring yet, by pid: one that attaches there is
  // the same receiver following the stream (track_receiver announces it no second
  // time); one that left its ring and has not arrived kFollowGraceUs later is
  // announced as left (settle_movers). Streaming thread; cleared by stop.
  struct Mover {
    guint pid;
    guint slot;                            // in the ring it was announced in
    std::weak_ptr<shm::ShmProducer> ring;  // that ring, while it is kept
    gint64 left_at;                        // when first seen gone (0 = not yet)
  };
  std::vector<Mover> movers;
  // Set by unlock, cleared by unlock_stop: grow_ring's wait for a first receiver
  // gives up (relaxed: a flag polled on its own, ordering nothing else).
  std::atomic<bool> unlocked{false};
};

}  // namespace

struct _GstShmringSink {
  GstBaseSink parent;

  // Properties (OBJECT_LOCK).
  gchar* shm_name;
  guint capacity;
  gboolean wait_for_space;
  guint perms;
  guint linger;  // seconds
  gboolean allow_foreign_owner;
  guint max_receivers;

  SinkState* st;
  // Streaming thread only.
  gchar* caps_string;          // caps of the stream (set_caps)
  gchar* written_caps_string;  // caps last written to the ring
  guint32 last_attach_count;   // consumer attach count last seen attached (0 = none yet)
  GstClockTime ts_offset;      // added to every PTS/DTS written (moved by FLUSH_STOP)
  GstClockTime written_end;    // highest end (PTS/DTS + duration) written, offset included
  gboolean discont_next;       // mark the next BUFFER written DISCONT (after a flush)
  gboolean live_known;         // the latency query was asked for this ring
  gboolean live;               // upstream is live: LIVE set, nothing written without a receiver
  gboolean encoded;            // the caps are not raw audio/video (keyframes matter)
  gboolean receiver_attached;  // a receiver was attached when last looked at (any slot)
  guint32 receiver_count;      // slot 0's attach count
  // Per receiver slot: attached when last looked at, its attach count then, and the
  // pid it was announced with.
  gboolean slot_attached[shm::layout::kMaxReceiversLimit];
  guint32 slot_count[shm::layout::kMaxReceiversLimit];
  guint slot_pid[shm::layout::kMaxReceiversLimit];
  guint32 last_record_index;   // ring index of the last record written
  guint64 buffers_in_ring;     // BUFFER records written to this ring
  gboolean eos_written;        // this ring ended with a real EOS
  guint force_key_unit_count;  // running count of force-key-unit requests sent
  guint64 not_received;        // buffers not written: live, no receiver (OBJECT_LOCK)
  gint warned_memory;          // the not-in-system-memory warning was posted (atomic)
  // The pipeline's bus while started (its sync-message::error handler is ours),
  // and whether an ERROR was posted on it since start (atomic: any thread).
  GstBus* pipeline_bus;
  gulong error_handler;
  gint pipeline_error;
};

// Any format, in system memory. Template caps cannot say that: ANY carries no
// caps features and there is no wildcard media type ("ANY(memory:SystemMemory)"
// parses as a structure NAMED "ANY", which accepts nothing real). So the template
// is ANY, like every any-format system-memory sink (filesink, fdsink, udpsink,
// appsink), and the caps query (get_caps) and accept-caps answer with system
// memory only; when upstream offers nothing else, a warning says why.
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

#define gst_shmring_sink_parent_class parent_class
G_DEFINE_TYPE(GstShmringSink, gst_shmring_sink, GST_TYPE_BASE_SINK);
GST_ELEMENT_REGISTER_DEFINE(shmringsink, "shmringsink", GST_RANK_NONE, GST_TYPE_SHMRING_SINK);

static void gst_shmring_sink_set_property(GObject* object, guint prop_id, const GValue* value,
                                          GParamSpec* pspec);
static void gst_shmring_sink_get_property(GObject* object, guint prop_id, GValue* value,
                                          GParamSpec* pspec);
static void gst_shmring_sink_finalize(GObject* object);
static gboolean gst_shmring_sink_start(GstBaseSink* bsink);
static GstCaps* gst_shmring_sink_get_caps(GstBaseSink* bsink, GstCaps* filter);
static gboolean gst_shmring_sink_query(GstBaseSink* bsink, GstQuery* query);
static gboolean gst_shmring_sink_set_caps(GstBaseSink* bsink, GstCaps* caps);
// The receiver never sees this pipeline's segments, so timestamps travel as
// running time: equal to PTS/DTS for the usual segment that starts at 0, and
// still increasing across segment changes (concat, seeks, looping sources).
// `*dts_before_zero` is set when the DTS lies that far before running time 0.
static void stream_times_raw(GstBaseSink* bsink, GstBuffer* buffer, shm::framing::Header* h,
                             guint64* dts_before_zero) {
  const GstSegment* seg = &bsink->segment;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  const GstClockTime dts = GST_BUFFER_DTS(buffer);
  const GstClockTime duration = GST_BUFFER_DURATION(buffer);
  if (seg->format != GST_FORMAT_TIME) {
    h->pts = pts;
    h->dts = dts;
    h->duration = duration;
    return;
  }
  auto running = [seg](GstClockTime t) -> guint64 {
    if (!GST_CLOCK_TIME_IS_VALID(t)) return GST_CLOCK_TIME_NONE;
    guint64 rt = 0;
    // Before the segment start: unknown (a PTS there is clipped anyway).
    return gst_segment_to_running_time_full(seg, GST_FORMAT_TIME, t, &rt) > 0 ? rt
                                                                              : GST_CLOCK_TIME_NONE;
  };
  h->pts = running(pts);
  h->dts = running(dts);
  // A DTS before the segment start (an encoder's B-frame delay: the first DTS lie
  // before the first PTS) is a negative running time: kept as its magnitude.
  if (GST_CLOCK_TIME_IS_VALID(dts) && !GST_CLOCK_TIME_IS_VALID(h->dts)) {
    guint64 rt = 0;
    if (gst_segment_to_running_time_full(seg, GST_FORMAT_TIME, dts, &rt) < 0) *dts_before_zero = rt;
  }
  h->duration = duration;
  if (GST_CLOCK_TIME_IS_VALID(duration) && seg->rate != 1.0 && seg->rate > 0) {
    h->duration = static_cast<guint64>(duration / seg->rate);
  }
}

// A flushing seek resets the running time to 0, but the receiver's segment goes
// on: ts_offset (the end of what was written before the flush) keeps the times
// it sees increasing.
// A DTS that stays before 0 after the offset travels as a kNegativeDts extension
// (dts none), which shmringsrc turns back into a DTS before its segment start.
static void stream_times(GstShmringSink* self, GstBuffer* buffer, shm::framing::Header* h,
                         shm::framing::ExtensionWriter* ext) {
  guint64 dts_before_zero = GST_CLOCK_TIME_NONE;
  stream_times_raw(GST_BASE_SINK(self), buffer, h, &dts_before_zero);
  if (GST_CLOCK_TIME_IS_VALID(h->pts)) h->pts += self->ts_offset;
  if (GST_CLOCK_TIME_IS_VALID(h->dts)) h->dts += self->ts_offset;
  if (GST_CLOCK_TIME_IS_VALID(dts_before_zero)) {
    if (dts_before_zero <= self->ts_offset) {
      h->dts = self->ts_offset - dts_before_zero;
    } else {
      ext->AddNegativeDts(dts_before_zero - self->ts_offset);
    }
  }
}

// The metas whose loss would change what the buffer means, as header extensions:
// audio clipping (encoder priming/padding), the video layout (strides and plane
// offsets of padded frames) and reference timestamps. Others are dropped (see
// gst-plugin/README.md).
static void carried_metas(GstBuffer* buffer, shm::framing::ExtensionWriter* ext) {
  if (const GstAudioClippingMeta* c = gst_buffer_get_audio_clipping_meta(buffer)) {
    ext->AddAudioClipping({static_cast<uint32_t>(c->format), c->start, c->end});
  }
  if (const GstVideoMeta* v = gst_buffer_get_video_meta(buffer)) {
    shm::framing::VideoMeta m;
    m.flags = static_cast<uint32_t>(v->flags);
    m.format = static_cast<uint32_t>(v->format);
    m.width = v->width;
    m.height = v->height;
    m.n_planes = std::min<guint>(v->n_planes, shm::framing::kVideoMaxPlanes);
    for (guint i = 0; i < m.n_planes; ++i) {
      m.offset[i] = v->offset[i];
      m.stride[i] = v->stride[i];
    }
    ext->AddVideoMeta(m);
  }
  gpointer state = nullptr;
  while (GstMeta* meta = gst_buffer_iterate_meta_filtered(buffer, &state,
                                                          GST_REFERENCE_TIMESTAMP_META_API_TYPE)) {
    const auto* r = reinterpret_cast<const GstReferenceTimestampMeta*>(meta);
    gchar* ref = r->reference ? gst_caps_to_string(r->reference) : g_strdup("");
    ext->AddReferenceTimestamp({ref, r->timestamp, r->duration});
    g_free(ref);
  }
}

// Remembers how far the written timestamps got (for the next flush).
static void note_written_end(GstShmringSink* self, const shm::framing::Header& h) {
  const guint64 dur = GST_CLOCK_TIME_IS_VALID(h.duration) ? h.duration : 0;
  for (const guint64 t : {h.pts, h.dts}) {
    if (GST_CLOCK_TIME_IS_VALID(t)) self->written_end = std::max(self->written_end, t + dur);
  }
}

static GstFlowReturn gst_shmring_sink_render(GstBaseSink* bsink, GstBuffer* buffer);
static gboolean gst_shmring_sink_event(GstBaseSink* bsink, GstEvent* event);
static gboolean gst_shmring_sink_unlock(GstBaseSink* bsink);
static gboolean gst_shmring_sink_unlock_stop(GstBaseSink* bsink);
static gboolean gst_shmring_sink_stop(GstBaseSink* bsink);
static gboolean gst_shmring_sink_propose_allocation(GstBaseSink* bsink, GstQuery* query);

static void gst_shmring_sink_class_init(GstShmringSinkClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstBaseSinkClass* basesink_class = GST_BASE_SINK_CLASS(klass);

  gobject_class->set_property = gst_shmring_sink_set_property;
  gobject_class->get_property = gst_shmring_sink_get_property;
  gobject_class->finalize = gst_shmring_sink_finalize;

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                           GST_PARAM_MUTABLE_READY);
  /**
   * GstShmringSink:shm-name:
   *
   * Name of the ring to create, e.g. cam0: 1-30 characters of A-Z a-z 0-9 . _ -,
   * not starting with . or -. Give shmringsrc the same name. A ring of that name
   * left by a sender that crashed or finished is replaced; one whose sender still
   * runs is an error.
   */
  g_object_class_install_property(
      gobject_class, PROP_SHM_NAME,
      g_param_spec_string("shm-name", "Ring name",
                          "Name of the ring to create (e.g. cam0); give shmringsrc the same name",
                          nullptr, rw));
  /**
   * GstShmringSink:capacity:
   *
   * Size of the ring's data area in bytes, rounded up to a power of two. It must
   * hold the largest buffer plus its framing: 64 bytes, a few hundred with carried
   * metas or a DTS before the segment start (a 1920x1080 BGR frame is
   * 6220800 bytes); a few frames' worth lets the receiver fall behind briefly
   * without stalling or dropping.
   *
   * 0 (the default) sizes the ring from the caps: the ring is created when the
   * first caps arrive (not when the element starts; a receiver started first waits
   * for the name as always), with room for four frames of raw video rounded up to
   * a power of two (at least 1 MiB, at most 1 GiB: 32 MiB for 1080p BGR, 16 MiB for
   * 720p BGR), or 32 MiB for other caps (encoded video, audio) and for a stream
   * without caps. A smaller ring keeps the frames in the CPU caches and TLB; set a
   * capacity for more slack. When later caps need a larger ring, the stream moves to
   * a new ring of that size under the same name at that caps change: shmringsrc reads
   * everything the old ring holds, then follows (no frame lost, same segment). The
   * ring never shrinks. A capacity set here is kept as it is: a buffer that does not
   * fit it is an error.
   */
  g_object_class_install_property(
      gobject_class, PROP_CAPACITY,
      g_param_spec_uint("capacity", "Ring capacity",
                        "Bytes of ring data area, rounded up to a power of two; must hold the "
                        "largest buffer plus 64 bytes, more with metas (0 = four frames of "
                        "the caps, grown when larger frames come)",
                        0, shm::layout::kMaxCapacity, kDefaultCapacity, rw));
  /**
   * GstShmringSink:wait-for-space:
   *
   * What to do when the ring is full. TRUE blocks while a receiver is attached,
   * until it makes room (back-pressure, nothing is lost), and before the first
   * receiver attaches (so either side may start first); once the receiver has
   * left and none is attached, new buffers are dropped, so the sender never
   * wedges on a departed receiver. FALSE always drops the new buffer (for live
   * sources that must not block; also the way to stop a sender that never had a
   * receiver with EOS). Dropped buffers are counted in the ring's dropped
   * counter (the #GstShmringSink:dropped property). May be changed while PLAYING.
   */
  g_object_class_install_property(
      gobject_class, PROP_WAIT_FOR_SPACE,
      g_param_spec_boolean("wait-for-space", "Wait for space",
                           "Block while the ring is full and a receiver is attached (or none "
                           "has attached yet) instead of dropping the new buffer",
                           kDefaultWaitForSpace,
                           static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  /**
   * GstShmringSink:perms:
   *
   * Access permissions of the shared-memory segment, in octal as for chmod:
   * 0600 = only this user, 0660 = also the group, 0666 = every user.
   * gst-launch-1.0 reads perms=0660 as octal; from code pass 0660 (or 432).
   */
  g_object_class_install_property(
      gobject_class, PROP_PERMS,
      g_param_spec_uint("perms", "Permissions",
                        "Permissions of the shared-memory segment, octal as for chmod (0600 = "
                        "this user only)",
                        0, 0777, kDefaultPerms, rw));
  /**
   * GstShmringSink:dropped:
   *
   * Buffers dropped so far because the ring was full: with wait-for-space=false,
   * or after the receiver left. The ring header's dropped counter, which
   * receivers and `python3 -m shmring ls` see too.
   */
  g_object_class_install_property(
      gobject_class, PROP_DROPPED,
      g_param_spec_uint64("dropped", "Dropped buffers",
                          "Buffers dropped so far because the ring was full: the current "
                          "ring's count (0 again in each new ring, as after a move to a larger "
                          "ring or a new stream after EOS; 0 once stopped)",
                          0, G_MAXUINT64, 0,
                          static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstShmringSink:linger:
   *
   * Seconds a sender that reached end of stream before any receiver attached keeps
   * its ring (with its data and EOS) when stopped, so that a receiver started at
   * the same time still gets the whole stream: stop() (the state change to READY)
   * waits until a receiver has attached or linger expires. 0 = off. Not used for a
   * live stream (it keeps no backlog) nor after a stop without EOS.
   */
  g_object_class_install_property(
      gobject_class, PROP_LINGER,
      g_param_spec_uint("linger", "Linger",
                        "Seconds a stream that ended before any receiver attached stays "
                        "available for the first receiver when the sink stops, and that "
                        "receivers still draining rings the stream moved out of for larger "
                        "caps get to follow it (0 = off)",
                        0, G_MAXUINT, kDefaultLingerS,
                        static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  /**
   * GstShmringSink:not-received:
   *
   * Buffers of a live stream not written because no receiver was attached (a live
   * sender keeps no backlog for a late receiver). Counted apart from dropped.
   */
  g_object_class_install_property(
      gobject_class, PROP_NOT_RECEIVED,
      g_param_spec_uint64("not-received", "Not received",
                          "Buffers of a live stream not written because no receiver was attached",
                          0, G_MAXUINT64, 0,
                          static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  /**
   * GstShmringSink:allow-foreign-owner:
   *
   * Replace a stale ring (its sender dead or finished) whose segment is owned by
   * another user. By default such a segment is refused and left alone, whatever
   * this process may delete; set this only when that user is trusted.
   */
  g_object_class_install_property(
      gobject_class, PROP_ALLOW_FOREIGN_OWNER,
      g_param_spec_boolean("allow-foreign-owner", "Allow a foreign owner",
                           "Replace a stale ring owned by another user (refused by default)", FALSE,
                           rw));

  /**
   * GstShmringSink:stats:
   *
   * Counters of this sink's buffers (a GstStructure "shmringsink-stats"):
   * "in-place" (guint64) buffers upstream wrote straight into the ring through the
   * sink's buffer pool and that were sent without a copy; "copied" (guint64)
   * buffers copied into the ring (from elsewhere, or pool buffers that could not
   * be sent in place).
   */
  g_object_class_install_property(
      gobject_class, PROP_STATS,
      g_param_spec_boxed(
          "stats", "Statistics", "Buffers sent in place from the ring pool and buffers copied",
          GST_TYPE_STRUCTURE, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstShmringSink:max-receivers:
   *
   * How many receivers may read the ring at the same time (1..16), each frame
   * written once. 1 (the default) is the single-receiver ring. A lossless receiver
   * (shmringsrc mode=lossless) holds the sender back like the single receiver; a
   * live one never does (it skips ahead when it falls behind). A receiver killed
   * without detaching stops holding the sender back within a liveness slice (0.2 s).
   */
  g_object_class_install_property(
      gobject_class, PROP_MAX_RECEIVERS,
      g_param_spec_uint("max-receivers", "Max receivers",
                        "Receivers that may read the ring at the same time (1..16)", 1,
                        shm::layout::kMaxReceiversLimit, kDefaultMaxReceivers, rw));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_set_static_metadata(
      element_class, "Shared-memory ring sink", "Sink/Network",
      "Writes buffers, their caps, timestamps and end of stream into a lock-free "
      "single-producer/single-consumer ring in shared memory, for shmringsrc (or the "
      "shmring C++/Python readers) in another process on this machine",
      "shmring developers");

  basesink_class->start = GST_DEBUG_FUNCPTR(gst_shmring_sink_start);
  basesink_class->get_caps = GST_DEBUG_FUNCPTR(gst_shmring_sink_get_caps);
  basesink_class->query = GST_DEBUG_FUNCPTR(gst_shmring_sink_query);
  basesink_class->set_caps = GST_DEBUG_FUNCPTR(gst_shmring_sink_set_caps);
  basesink_class->render = GST_DEBUG_FUNCPTR(gst_shmring_sink_render);
  basesink_class->event = GST_DEBUG_FUNCPTR(gst_shmring_sink_event);
  basesink_class->unlock = GST_DEBUG_FUNCPTR(gst_shmring_sink_unlock);
  basesink_class->unlock_stop = GST_DEBUG_FUNCPTR(gst_shmring_sink_unlock_stop);
  basesink_class->propose_allocation = GST_DEBUG_FUNCPTR(gst_shmring_sink_propose_allocation);
  basesink_class->stop = GST_DEBUG_FUNCPTR(gst_shmring_sink_stop);

  GST_DEBUG_CATEGORY_INIT(gst_shmring_sink_debug, "shmringsink", 0, "shared-memory ring sink");
}

static void gst_shmring_sink_init(GstShmringSink* self) {
  self->shm_name = nullptr;
  self->capacity = kDefaultCapacity;
  self->wait_for_space = kDefaultWaitForSpace;
  self->perms = kDefaultPerms;
  self->linger = kDefaultLingerS;
  self->not_received = 0;
  self->allow_foreign_owner = FALSE;
  self->max_receivers = kDefaultMaxReceivers;
  self->st = new SinkState();
  self->caps_string = nullptr;
  self->written_caps_string = nullptr;
  self->last_attach_count = 0;
  self->ts_offset = 0;
  self->written_end = 0;
  self->discont_next = FALSE;
  self->warned_memory = 0;
  self->pipeline_bus = nullptr;
  self->error_handler = 0;
  self->pipeline_error = 0;
}

static void gst_shmring_sink_finalize(GObject* object) {
  GstShmringSink* self = GST_SHMRING_SINK(object);
  delete self->st;
  g_free(self->shm_name);
  g_free(self->caps_string);
  g_free(self->written_caps_string);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_shmring_sink_set_property(GObject* object, guint prop_id, const GValue* value,
                                          GParamSpec* pspec) {
  GstShmringSink* self = GST_SHMRING_SINK(object);
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_SHM_NAME:
      g_free(self->shm_name);
      self->shm_name = g_value_dup_string(value);
      break;
    case PROP_CAPACITY:
      self->capacity = g_value_get_uint(value);
      break;
    case PROP_WAIT_FOR_SPACE:
      self->wait_for_space = g_value_get_boolean(value);
      self->st->wait_flag->store(self->wait_for_space != FALSE);
      break;
    case PROP_PERMS:
      self->perms = g_value_get_uint(value);
      break;
    case PROP_LINGER:
      self->linger = g_value_get_uint(value);
      break;
    case PROP_MAX_RECEIVERS:
      self->max_receivers = g_value_get_uint(value);
      break;
    case PROP_ALLOW_FOREIGN_OWNER:
      self->allow_foreign_owner = g_value_get_boolean(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_shmring_sink_get_property(GObject* object, guint prop_id, GValue* value,
                                          GParamSpec* pspec) {
  GstShmringSink* self = GST_SHMRING_SINK(object);
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_SHM_NAME:
      g_value_set_string(value, self->shm_name);
      break;
    case PROP_CAPACITY:
      g_value_set_uint(value, self->capacity);
      break;
    case PROP_WAIT_FOR_SPACE:
      g_value_set_boolean(value, self->wait_for_space);
      break;
    case PROP_PERMS:
      g_value_set_uint(value, self->perms);
      break;
    case PROP_LINGER:
      g_value_set_uint(value, self->linger);
      break;
    case PROP_NOT_RECEIVED:
      g_value_set_uint64(value, self->not_received);
      break;
    case PROP_MAX_RECEIVERS:
      g_value_set_uint(value, self->max_receivers);
      break;
    case PROP_ALLOW_FOREIGN_OWNER:
      g_value_set_boolean(value, self->allow_foreign_owner);
      break;
    case PROP_DROPPED:
      g_value_set_uint64(value, self->st->producer ? self->st->producer->Dropped() : 0);
      break;
    case PROP_STATS:
      g_value_take_boxed(value, gst_structure_new("shmringsink-stats", "in-place", G_TYPE_UINT64,
                                                  self->st->in_place.load(), "copied",
                                                  G_TYPE_UINT64, self->st->copied.load(), nullptr));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
}

// ---- the ring's lifetime (start/stop, and a new ring after EOS in render) --------

// Creates the ring and resets the per-stream state. False with an error posted.
static bool create_ring(GstShmringSink* self) {
  GST_OBJECT_LOCK(self);
  const std::string name = self->shm_name ? self->shm_name : "";
  shm::ProducerOptions options;
  options.capacity = self->capacity != 0            ? self->capacity
                     : self->st->auto_capacity != 0 ? self->st->auto_capacity
                                                    : shmring::kAutoFallbackCapacity;
  options.profile = shm::layout::kProfileGstFraming;
  options.mode = self->perms;
  options.allow_foreign_owner = self->allow_foreign_owner;
  options.max_receivers = self->max_receivers;
  // A fence per buffer costs nothing next to a frame; a receiver's membarrier per
  // sleep (it sleeps between frames) interrupts every CPU, the sender's included.
  options.full_fences = true;
  GST_OBJECT_UNLOCK(self);

  if (name.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No ring name given: set the shm-name property (e.g. shm-name=cam0)."),
                      (nullptr));
    return false;
  }
  const std::string bad_name = shm::ValidateName(name);
  if (!bad_name.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Invalid ring name '%s'.", name.c_str()),
                      ("%s", bad_name.c_str()));
    return false;
  }

  auto producer = std::make_unique<shm::ShmProducer>(name, options);
  if (!producer->IsValid()) {
    GST_ELEMENT_ERROR(
        self, RESOURCE, OPEN_WRITE, ("Could not create ring '%s'.", name.c_str()),
        ("%s (capacity %u, perms 0%o)", producer->error().c_str(), options.capacity, options.mode));
    return false;
  }
  GST_INFO_OBJECT(self,
                  "created ring '%s': capacity %u bytes, generation %016" G_GINT64_MODIFIER "x",
                  name.c_str(), producer->capacity(), static_cast<guint64>(producer->generation()));

  g_clear_pointer(&self->written_caps_string, g_free);
  self->last_attach_count = 0;
  self->ts_offset = 0;
  self->written_end = 0;
  self->discont_next = FALSE;
  self->live_known = FALSE;
  self->live = FALSE;
  self->receiver_attached = FALSE;
  self->receiver_count = 0;
  for (guint k = 0; k < shm::layout::kMaxReceiversLimit; ++k) {
    self->slot_attached[k] = FALSE;
    self->slot_count[k] = 0;
    self->slot_pid[k] = 0;
  }
  self->eos_written = FALSE;
  self->buffers_in_ring = 0;
  // Buffers of the ring pool reserve, publish and give up records from upstream's
  // threads too.
  producer->SetConcurrent(true);
  GST_OBJECT_LOCK(self);
  self->st->producer = std::move(producer);
  GST_OBJECT_UNLOCK(self);
  return true;
}

// Ends the ring: CLOSED (a receiver drains what is left, then ends with EOS) and
// the name unlinked, once an unlock() still holding a reference lets go.
static void destroy_ring(GstShmringSink* self) {
  GST_OBJECT_LOCK(self);
  std::shared_ptr<shm::ShmProducer> producer = std::move(self->st->producer);
  self->st->producer.reset();
  GST_OBJECT_UNLOCK(self);
  // Ends the ring now even while ring-pool buffers upstream still hold the
  // producer (its mapping lives until the last of them is freed).
  if (producer) producer->Retire();
  producer.reset();  // not under OBJECT_LOCK
  // Their role locks go (a receiver still in one is cut short): Retire() drops the
  // lock even while ring-pool buffers upstream still hold the producer.
  for (const auto& p : self->st->previous) p->Retire();
  self->st->previous.clear();
  self->st->followers_expected = 0;
  self->st->movers.clear();
  g_clear_pointer(&self->written_caps_string, g_free);
}

// grow_ring, before the old ring loses its name: a sender that waits for space also
// waits for its first receiver, so that a receiver started later still gets the
// frames of the ring it would otherwise never see. Polls (kLingerPollUs) until one
// attached or unlock(). Not for a live stream (it keeps no backlog) nor when the
// ring holds no buffer. Streaming thread; blocks.
static void wait_for_first_receiver(GstShmringSink* self, shm::ShmProducer* producer) {
  GST_OBJECT_LOCK(self);
  const gboolean wait = self->wait_for_space;
  GST_OBJECT_UNLOCK(self);
  if (!wait || self->live || self->buffers_in_ring == 0 ||
      producer->ring()->ConsumerAttachCount() != 0) {
    return;
  }
  GST_INFO_OBJECT(self, "ring '%s': waiting for a first receiver before moving to a larger ring",
                  producer->name().c_str());
  while (producer->ring()->ConsumerAttachCount() == 0 &&
         !self->st->unlocked.load(std::memory_order_relaxed)) {
    g_usleep(kLingerPollUs);
  }
}

// Attaches so far over all receiver slots of a ring (each slot's attach count).
static guint64 total_attaches(shm::ShmProducer* producer) {
  guint64 n = 0;
  for (guint k = 0; k < producer->max_receivers(); ++k) {
    n += producer->ring()->SlotFlags(k) >> shm::layout::kConsumerAttachCountShift;
  }
  return n;
}

// Forgets the rings handed over earlier (grow_ring) that no receiver is attached to
// any more (their role locks go with the last reference). Streaming thread.
static void drop_left_rings(GstShmringSink* self) {
  auto& prev = self->st->previous;
  prev.erase(std::remove_if(
                 prev.begin(), prev.end(),
                 [](const std::shared_ptr<shm::ShmProducer>& p) { return !p->ConsumerAttached(); }),
             prev.end());
}

// Whether a receiver is still on its way from a ring the stream moved out of
// (grow_ring) into the current one: attached to one of `previous` with something
// there not yet released, or, for up to kFollowGraceUs after the last of them
// drained or left (*left_at, 0 = not yet), fewer attaches on the current ring than
// receivers were in the ring it replaced. (A receiver that drained an old ring and
// stays attached without following (a ShmConsumer whose program does not follow:
// only shmringsrc and Python's FrameReader do) holds nothing
// up past that grace.) Streaming thread or stop.
static bool followers_pending(GstShmringSink* self, gint64* left_at) {
  for (const auto& p : self->st->previous) {
    if (p->ConsumerAttached() && p->ring()->ReceiversBehind()) {
      *left_at = 0;
      return true;
    }
  }
  shm::ShmProducer* producer = self->st->producer.get();
  if (producer == nullptr || total_attaches(producer) >= self->st->followers_expected) {
    return false;
  }
  const gint64 now = g_get_monotonic_time();
  if (*left_at == 0) *left_at = now;
  return now - *left_at < kFollowGraceUs;
}

// Waits while followers_pending(), or until unlock(): a sender that waits for space
// also waits for its receivers to follow it into a new ring. Streaming thread;
// blocks (polls every kLingerPollUs).
static void wait_for_followers(GstShmringSink* self) {
  gint64 left_at = 0;
  if (!followers_pending(self, &left_at)) return;
  GST_INFO_OBJECT(self, "waiting for the receivers of the previous ring to follow the stream");
  while (followers_pending(self, &left_at) && !self->st->unlocked.load(std::memory_order_relaxed)) {
    g_usleep(kLingerPollUs);
  }
}

// Receivers attached to the ring's slots now.
static guint32 attached_receivers(shm::ShmProducer* producer) {
  guint32 n = 0;
  for (guint k = 0; k < producer->max_receivers(); ++k) {
    if (producer->ReceiverAttached(k)) ++n;
  }
  return n;
}

// capacity 0, a caps change whose frames need a larger ring than the one sized from
// earlier caps: the stream moves to a new ring of the new size under the same name.
// The old ring's name is released, the new ring created under it, then the old ring
// is CLOSED while its producer role lock is still held (kept in `previous`): its
// receiver reads everything it holds, then follows the stream into the new ring
// (shmringsrc; ShmConsumer::HandedOver). Timestamps go on as in one ring. Upstream
// is asked to renegotiate (RECONFIGURE) so its pool moves to the new ring. The ring
// never shrinks at a caps change: every move makes the receiver re-attach and
// upstream renegotiate, and a stream that went back to smaller frames may well grow
// again; the larger ring only costs address space and the pages the frames touch.
// False with an error posted. Streaming thread (set_caps).
static bool grow_ring(GstShmringSink* self, guint capacity) {
  const std::shared_ptr<shm::ShmProducer> old = self->st->producer;
  wait_for_first_receiver(self, old.get());
  GST_OBJECT_LOCK(self);
  const gboolean lossless = self->wait_for_space && !self->live;
  GST_OBJECT_UNLOCK(self);
  // At most one move pending: a receiver still draining the ring before `old` (or
  // on its way out of it) must reach `old` before `old` loses its name, or it would
  // follow the stream into the next ring and skip all of `old` unmarked. (Usually
  // done already: the previous move waited for its followers below.)
  if (lossless) wait_for_followers(self);
  GST_INFO_OBJECT(self,
                  "the caps need a ring of %u bytes, ring '%s' has %u: moving to a larger ring",
                  capacity, old->name().c_str(), old->capacity());
  std::string err;
  if (!old->ReleaseName(&err)) {
    GST_ELEMENT_ERROR(
        self, RESOURCE, OPEN_WRITE,
        ("Could not replace ring '%s' with a larger one for the new caps.", old->name().c_str()),
        ("%s", err.c_str()));
    return false;
  }
  drop_left_rings(self);
  auto& prev = self->st->previous;
  const GstClockTime ts_offset = self->ts_offset;
  const GstClockTime written_end = self->written_end;
  const gboolean discont_next = self->discont_next;
  // The receivers announced in `old` (before create_ring forgets them) follow the
  // stream as the same receivers (track_receiver).
  for (guint k = 0; k < old->max_receivers(); ++k) {
    if (self->slot_attached[k]) self->st->movers.push_back({self->slot_pid[k], k, old, 0});
  }
  const bool ok = create_ring(self);
  self->st->followers_expected = attached_receivers(old.get());
  old->Close();  // after the new ring holds the name
  prev.push_back(old);
  if (!ok) {
    GST_OBJECT_LOCK(self);
    self->st->producer.reset();
    GST_OBJECT_UNLOCK(self);
    return false;
  }
  self->ts_offset = ts_offset;
  self->written_end = written_end;
  self->discont_next = discont_next;
  // Nothing goes into the new ring before every receiver of the old one is in it:
  // with several receivers, one that followed first would otherwise read and free
  // frames a slower one, still draining the old ring, then never gets (it attaches
  // where the first one is, and a ring read to its end is not attached to at all).
  // (One receiver slot: nobody frees what the one receiver has not read.)
  if (lossless && old->max_receivers() > 1) wait_for_followers(self);
  gst_pad_push_event(GST_BASE_SINK_PAD(self), gst_event_new_reconfigure());
  return true;
}

// ---- vfuncs, in the order GStreamer calls them ----------------------------------

// An ERROR on the pipeline's bus (emitted synchronously in the posting thread).
static void on_pipeline_error(GstBus*, GstMessage* msg, gpointer user_data) {
  auto* self = static_cast<GstShmringSink*>(user_data);
  if (g_atomic_int_compare_and_exchange(&self->pipeline_error, 0, 1)) {
    GST_INFO_OBJECT(self, "error posted by %s: an end of stream after it is not a real one",
                    GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "(unknown)");
  }
}

// Watches the top-level pipeline's bus for errors while started. A source whose
// downstream failed (identity error-after=N, a failing encoder) posts its error
// and then pushes EOS (GstBaseSrc does this after a flow error): the ERROR message
// is posted, synchronously and in the thread that then pushes (or queues) that
// EOS, before the EOS can reach this sink. So an EOS that arrives after an error
// of the pipeline is told from a real one without looking at timing. The bus's
// sync-message signal allows several listeners (emission is reference-counted),
// unlike the bus's single sync handler, which stays the application's.
static void watch_pipeline_errors(GstShmringSink* self) {
  g_atomic_int_set(&self->pipeline_error, 0);
  GstObject* top = GST_OBJECT(gst_object_ref(self));
  while (GstObject* parent = gst_object_get_parent(top)) {
    gst_object_unref(top);
    top = parent;
  }
  GstBus* bus = (top != GST_OBJECT(self) && GST_IS_ELEMENT(top))
                    ? gst_element_get_bus(GST_ELEMENT(top))
                    : nullptr;
  gst_object_unref(top);
  if (bus == nullptr) return;  // no pipeline (e.g. a harness): EOS is EOS
  gst_bus_enable_sync_message_emission(bus);
  self->error_handler =
      g_signal_connect(bus, "sync-message::error", G_CALLBACK(on_pipeline_error), self);
  self->pipeline_bus = bus;
}

static void unwatch_pipeline_errors(GstShmringSink* self) {
  if (self->pipeline_bus == nullptr) return;
  g_signal_handler_disconnect(self->pipeline_bus, self->error_handler);
  gst_bus_disable_sync_message_emission(self->pipeline_bus);
  gst_clear_object(&self->pipeline_bus);
  self->error_handler = 0;
}

static gboolean gst_shmring_sink_start(GstBaseSink* bsink) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  g_atomic_int_set(&self->warned_memory, 0);
  GST_OBJECT_LOCK(self);
  const bool auto_size = self->capacity == 0;
  const std::string name = self->shm_name ? self->shm_name : "";
  GST_OBJECT_UNLOCK(self);
  self->st->auto_capacity = 0;
  self->st->ring_pending = false;
  if (!auto_size || name.empty() || !shm::ValidateName(name).empty()) {
    if (!create_ring(self)) return FALSE;  // now (or the error about the name, now)
  } else {
    self->st->ring_pending = true;  // sized from the first caps
    GST_DEBUG_OBJECT(self, "ring '%s' will be created at the first caps", name.c_str());
  }
  watch_pipeline_errors(self);
  return TRUE;
}

// capacity=0: creates the ring the first time it is needed (first caps, or data /
// end of stream without caps). False with an error posted. Streaming thread.
static bool ensure_ring(GstShmringSink* self) {
  if (!self->st->ring_pending) return true;
  self->st->ring_pending = false;
  return create_ring(self);
}

// Upstream offered only caps in another memory (GL, DMABuf, ...): negotiation
// will fail with not-negotiated, which alone does not say why. Posted once per
// start as a warning, not an error: caps and accept-caps queries are also asked
// speculatively, and upstream may still find another way. Any thread.
static void warn_not_system_memory(GstShmringSink* self, const GstCaps* offered, guint index) {
  if (!g_atomic_int_compare_and_exchange(&self->warned_memory, 0, 1)) return;
  gchar* features = gst_caps_features_to_string(gst_caps_get_features(offered, index));
  GST_ELEMENT_WARNING(self, STREAM, FORMAT,
                      ("shmringsink needs buffers in system memory, but upstream offers only %s: "
                       "insert gldownload (GL memory) or another conversion to system memory "
                       "(e.g. videoconvert) before it.",
                       features),
                      ("offered caps %" GST_PTR_FORMAT, offered));
  g_free(features);
}

// The sink copies mapped bytes, so only system memory means what the receiver
// will get: a structure's features must be memory:SystemMemory (or ANY).
static bool system_memory_only(const GstCaps* caps, guint* bad_index) {
  for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
    GstCapsFeatures* f = gst_caps_get_features(caps, i);
    if (f == nullptr || gst_caps_features_is_any(f) ||
        gst_caps_features_is_equal(f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
      continue;
    }
    if (bad_index != nullptr) *bad_index = i;
    return false;
  }
  return true;
}

// Any format, in system memory: of upstream's structures (the filter), keep those
// in system memory (ANY features become system memory); GL/DMABuf producers then
// negotiate system memory or must download first.
static GstCaps* gst_shmring_sink_get_caps(GstBaseSink* bsink, GstCaps* filter) {
  if (filter == nullptr || gst_caps_is_any(filter)) {
    return gst_pad_get_pad_template_caps(GST_BASE_SINK_PAD(bsink));
  }
  GstCaps* caps = gst_caps_new_empty();
  for (guint i = 0; i < gst_caps_get_size(filter); ++i) {
    GstCapsFeatures* f = gst_caps_get_features(filter, i);
    if (f != nullptr && !gst_caps_features_is_any(f) &&
        !gst_caps_features_is_equal(f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
      continue;
    }
    gst_caps_append_structure_full(caps, gst_structure_copy(gst_caps_get_structure(filter, i)),
                                   gst_caps_features_copy(GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY));
  }
  if (gst_caps_is_empty(caps) && !gst_caps_is_empty(filter)) {
    warn_not_system_memory(GST_SHMRING_SINK(bsink), filter, 0);
  }
  return caps;
}

static gboolean gst_shmring_sink_query(GstBaseSink* bsink, GstQuery* query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
    GstCaps* caps = nullptr;
    gst_query_parse_accept_caps(query, &caps);
    guint bad = 0;
    if (caps != nullptr && !system_memory_only(caps, &bad)) {
      GST_DEBUG_OBJECT(bsink, "refusing caps not in system memory: %" GST_PTR_FORMAT, caps);
      warn_not_system_memory(GST_SHMRING_SINK(bsink), caps, bad);
      gst_query_set_accept_caps_result(query, FALSE);
      return TRUE;
    }
  }
  return GST_BASE_SINK_CLASS(parent_class)->query(bsink, query);
}

static gboolean gst_shmring_sink_set_caps(GstBaseSink* bsink, GstCaps* caps) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  guint bad = 0;
  if (!system_memory_only(caps, &bad)) {
    gchar* features = gst_caps_features_to_string(gst_caps_get_features(caps, bad));
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("shmringsink needs buffers in system memory, not %s: insert gldownload "
                       "(GL) or another conversion to system memory before it.",
                       features),
                      ("caps %" GST_PTR_FORMAT, caps));
    g_free(features);
    return FALSE;
  }
  // Written lazily before the next buffer, so that caps changes without data in
  // between collapse and a receiver never sees caps without their buffers' order.
  g_free(self->caps_string);
  self->caps_string = gst_caps_to_string(caps);
  const GstStructure* s = gst_caps_get_structure(caps, 0);
  self->encoded = s != nullptr && !gst_structure_has_name(s, "video/x-raw") &&
                  !gst_structure_has_name(s, "audio/x-raw");
  self->st->auto_capacity = shmring::AutoCapacity(caps);
  GST_OBJECT_LOCK(self);
  const bool auto_size = self->capacity == 0;
  GST_OBJECT_UNLOCK(self);
  if (self->st->ring_pending) {
    GST_INFO_OBJECT(self, "sizing the ring from the caps: %u bytes", self->st->auto_capacity);
    if (!ensure_ring(self)) return FALSE;
  } else if (auto_size && self->st->producer &&
             self->st->auto_capacity > self->st->producer->capacity() &&
             !self->st->producer->ring()->ProducerClosed()) {
    // (A CLOSED ring is re-created by render anyway, at the size of these caps.)
    if (!grow_ring(self, self->st->auto_capacity)) return FALSE;
  }
  GST_DEBUG_OBJECT(self, "caps %s", self->caps_string);
  return TRUE;
}

// Whether upstream is live, asked once per ring (the latency query), and the
// ring's LIVE bit set to match. Streaming thread.
static void learn_liveness(GstShmringSink* self) {
  if (self->live_known) return;
  self->live_known = TRUE;
  gboolean live = FALSE;
  GstQuery* q = gst_query_new_latency();
  if (gst_pad_peer_query(GST_BASE_SINK_PAD(self), q)) {
    gst_query_parse_latency(q, &live, nullptr, nullptr);
  }
  gst_query_unref(q);
  self->live = live;
  self->st->producer->SetLive(live);
  GST_INFO_OBJECT(self, "upstream is %s: ring '%s' %s", live ? "live" : "not live",
                  self->st->producer->name().c_str(),
                  live ? "marked LIVE; no backlog is kept while no receiver is attached"
                       : "keeps everything for its receiver");
}

// Posts shmringsink-receiver-left for the receiver of pid `pid` (as announced) that
// left `slot` of ring `name`. Streaming thread.
static void post_receiver_left(GstShmringSink* self, guint slot, guint pid,
                               const std::string& name) {
  GST_INFO_OBJECT(self, "receiver (pid %u) left slot %u of ring '%s'", pid, slot, name.c_str());
  gst_element_post_message(
      GST_ELEMENT(self),
      gst_message_new_element(
          GST_OBJECT(self),
          gst_structure_new("shmringsink-receiver-left", "pid", G_TYPE_UINT, pid, "slot",
                            G_TYPE_UINT, slot, "name", G_TYPE_STRING, name.c_str(), nullptr)));
}

// Whether the mover `m` still holds its slot in the ring it was announced in (the
// slot claimed, with its pid there). One fcntl. Streaming thread.
static bool mover_still_there(const SinkState::Mover& m) {
  const std::shared_ptr<shm::ShmProducer> in = m.ring.lock();
  return in && in->ReceiverAttached(m.slot) && in->ring()->SlotPid(m.slot) == m.pid;
}

// Whether a receiver of pid `pid` that just attached to the current ring is one
// announced in a ring the stream moved out of (st->movers): the same receiver,
// following the stream. Takes it off the list. Several receivers may share a pid
// (two shmringsrc in one process, in-process consumers, pid namespaces): a mover
// gone from its old slot is the one that moved; else the first of that pid (a
// receiver may open the new ring before it lets go of the old one, as FrameReader
// does). A new receiver of that pid arriving while one is on its way is taken for
// it (its attached message is not posted; the keyframe is still asked for).
// Streaming thread.
static bool take_mover(GstShmringSink* self, guint pid) {
  auto& movers = self->st->movers;
  auto first = movers.end();
  for (auto it = movers.begin(); it != movers.end(); ++it) {
    if (it->pid != pid) continue;
    if (!mover_still_there(*it)) {
      movers.erase(it);
      return true;
    }
    if (first == movers.end()) first = it;
  }
  if (first == movers.end()) return false;
  movers.erase(first);
  return true;
}

// The receivers still on their way from a ring the stream moved out of: one still
// attached to its slot there (same pid) is draining it; one gone from it that has
// not reached the current ring within kFollowGraceUs (the hop is a few system
// calls) stopped instead of following, and is announced as left (slot and name of
// the ring it was announced in). One fcntl per receiver on its way. Streaming thread.
static void settle_movers(GstShmringSink* self) {
  auto& movers = self->st->movers;
  if (movers.empty()) return;
  const gint64 now = g_get_monotonic_time();
  for (auto it = movers.begin(); it != movers.end();) {
    if (mover_still_there(*it)) {
      it->left_at = 0;
      ++it;
      continue;
    }
    if (it->left_at == 0) it->left_at = now;
    if (now - it->left_at < kFollowGraceUs) {
      ++it;
      continue;
    }
    post_receiver_left(self, it->slot, it->pid, self->st->producer->name());
    it = movers.erase(it);
  }
}

// Looks whether a receiver attached or left since the last look, slot by slot:
// posts the element messages shmringsink-receiver-attached (fields "pid",
// G_TYPE_UINT, "slot", G_TYPE_UINT, "name") / shmringsink-receiver-left ("pid",
// "slot", "name") and, when one attached to a live encoded stream, asks upstream for a
// keyframe. A receiver killed without detaching counts as left (its role byte is
// free). A receiver that follows the stream into a new ring (grow_ring) is the same
// receiver, matched by pid (take_mover): announced once, in the ring it first
// attached to (its slot may differ in the new ring), though a keyframe is asked for
// it again; one that does not follow is announced as left with its old slot
// (settle_movers). Streaming thread.
static void track_receiver(GstShmringSink* self) {
  shm::ShmProducer* producer = self->st->producer.get();
  shm::ByteRingBuffer* ring = producer->ring();
  bool any = false;
  for (guint k = 0; k < producer->max_receivers(); ++k) {
    // Attached = finished attaching: the slot is claimed (role byte) and its ATTACHED
    // flag set. A receiver clears a dead one's flag right after its claim, then
    // stores its pid and start, bumps the attach count and sets the flag (PROTOCOL.md
    // section 7, "Claiming a slot"). A slot only claimed is not announced (its pid
    // may still be 0 or a dead receiver's) and a live stream does not write for it
    // (the receiver would not read what comes before its start). The role byte is
    // probed before the flags are read, so a receiver that detached and another that
    // claimed in between show as attaching. The count also keeps a stale flag from a
    // receiver left before the claim clears it from counting as a new one.
    const bool claimed = producer->ReceiverAttached(k);
    const guint32 flags = claimed ? ring->SlotFlags(k) : 0;
    const guint32 count = flags >> shm::layout::kConsumerAttachCountShift;
    const bool flagged = (flags & shm::layout::kConsumerAttached) != 0;
    // One not announced yet: its attach count is not the last announced receiver's.
    const bool newcomer = flagged && count != self->slot_count[k];
    const bool attached = newcomer || (flagged && self->slot_attached[k]);
    any = any || attached;
    if (newcomer) {
      const guint pid = ring->SlotPid(k);
      if (take_mover(self, pid)) {
        GST_INFO_OBJECT(self, "receiver (pid %u) followed the stream into slot %u of ring '%s'",
                        pid, k, producer->name().c_str());
      } else {
        GST_INFO_OBJECT(self, "receiver (pid %u) attached to slot %u of ring '%s'", pid, k,
                        producer->name().c_str());
        gst_element_post_message(
            GST_ELEMENT(self),
            gst_message_new_element(
                GST_OBJECT(self),
                gst_structure_new("shmringsink-receiver-attached", "pid", G_TYPE_UINT, pid, "slot",
                                  G_TYPE_UINT, k, "name", G_TYPE_STRING, producer->name().c_str(),
                                  nullptr)));
      }
      // Also for a follower: one extra key unit per move is cheap, and a receiver
      // of the same pid taken for a follower may be a new one waiting for a keyframe.
      if (self->live && self->encoded) {
        GST_INFO_OBJECT(self, "asking upstream for a keyframe for the receiver in slot %u", k);
        gst_pad_push_event(GST_BASE_SINK_PAD(self),
                           gst_video_event_new_upstream_force_key_unit(
                               GST_CLOCK_TIME_NONE, TRUE, ++self->force_key_unit_count));
      }
      self->slot_attached[k] = TRUE;
      self->slot_count[k] = count;
      self->slot_pid[k] = pid;
    } else if (!attached && self->slot_attached[k]) {
      post_receiver_left(self, k, self->slot_pid[k], producer->name());
      self->slot_attached[k] = FALSE;
    }
  }
  settle_movers(self);
  self->receiver_attached = any;
  self->receiver_count = self->slot_count[0];
}

// Writes one message: a profile-1 header `h` followed by `body_size` bytes that
// `fill` copies into place. When the ring is full: with `wait`, blocks for space
// while a receiver is attached or none has attached yet (in slices, re-checking;
// interruptible by unlock, after which it waits for PLAYING like any prerolling
// sink); otherwise (no `wait`, or the receiver left) drops.
// `ext` (may be empty) is the header's extension area.
// Called with the PREROLL_LOCK held (render, serialized events).
template <typename Fill>
static WriteResult write_message(GstShmringSink* self, shm::framing::Header h,
                                 const shm::framing::ExtensionWriter& ext, gsize body_size,
                                 gboolean wait, const char* what, Fill fill) {
  shm::ShmProducer* producer = self->st->producer.get();
  const guint32 body_at = shm::framing::BodyOffsetWithExtensions(ext.size());
  const guint64 len64 = guint64{body_at} + body_size;
  if (len64 > producer->MaxMessageSize()) {
    GST_ELEMENT_ERROR(
        self, RESOURCE, NO_SPACE_LEFT,
        ("A %s of %" G_GSIZE_FORMAT " bytes does not fit in ring '%s' of %u bytes.", what,
         body_size, producer->name().c_str(), producer->capacity()),
        ("the message needs %" G_GUINT64_FORMAT " bytes (%u-byte header + body) but the largest "
         "message a %u-byte ring holds is %u bytes: raise the capacity property to at least "
         "%" G_GUINT64_FORMAT,
         len64, body_at, producer->capacity(), producer->MaxMessageSize(),
         len64 + shm::layout::kLenSize));
    return WriteResult::kError;
  }
  const auto len = static_cast<uint32_t>(len64);
  bool told = false;  // the INFO line for this wait was logged
  for (;;) {
    uint8_t* payload = nullptr;
    // Block while a receiver is attached, and for the first one (either side may
    // start first without losing data). Once receivers have come and gone and
    // none is attached, nobody will make room: a full ring drops, so the sender
    // does not wedge (it could not even take an EOS).
    // Only a full ring asks whether to wait: a message that fits at once needs no
    // look at the receivers (ConsumerAttached probes every slot's role byte, one
    // fcntl each; render's track_receiver has already probed them for a buffer).
    const bool first_receiver_pending = producer->ring()->ConsumerAttachCount() == 0;
    // Copied in from the caller's buffer (a large one shares the cache with the
    // ring's places: shm::FillHint).
    shm::Status st = producer->Reserve(len, &payload, 0, shm::FillHint::kCopied);
    if (st == shm::Status::kFull && wait &&
        (first_receiver_pending || producer->ConsumerAttached())) {
      st = producer->Reserve(len, &payload, kWaitSliceNs, shm::FillHint::kCopied);
    }
    switch (st) {
      case shm::Status::kOk:
        fill(payload + body_at);
        h.send_time_ns = shm::framing::MonotonicNowNs();
        shm::framing::EncodeHeader(h, ext, payload);
        self->last_record_index = producer->ring()->ProducerHead();
        // A buffer a decoder can start at is a sync point: where a live receiver
        // that fell behind resumes (caps and EOS records are not).
        producer->Commit(
            len, h.kind == shm::framing::Kind::kBuffer && !(h.flags & GST_BUFFER_FLAG_DELTA_UNIT));
        return WriteResult::kWritten;
      case shm::Status::kFull:
        if (wait) GST_DEBUG_OBJECT(self, "ring full and the receiver left: dropping %s", what);
        return WriteResult::kDropped;
      case shm::Status::kTimeout:
        // Still full after a slice: check for the receiver again.
        GST_LOG_OBJECT(self, "ring '%s' still full after a %" G_GINT64_FORMAT " ms slice",
                       producer->name().c_str(), kWaitSliceNs / GST_MSECOND);
        if (!told) {
          told = true;
          if (first_receiver_pending) {
            GST_INFO_OBJECT(self, "ring '%s' full: waiting for a receiver to attach",
                            producer->name().c_str());
          } else {
            GST_INFO_OBJECT(self, "ring '%s' full: waiting for the receiver to make room",
                            producer->name().c_str());
          }
        }
        track_receiver(self);
        continue;
      case shm::Status::kInterrupted: {
        // unlock(): flushing, or PLAYING->PAUSED. Wait like a prerolled sink; go on
        // writing when PLAYING again, give up when flushing.
        GST_DEBUG_OBJECT(self, "write of %s interrupted", what);
        const GstFlowReturn ret = gst_base_sink_wait_preroll(GST_BASE_SINK(self));
        if (ret != GST_FLOW_OK) return WriteResult::kFlushing;
        continue;
      }
      default:
        GST_ELEMENT_ERROR(self, RESOURCE, WRITE,
                          ("Could not write to ring '%s'.", producer->name().c_str()),
                          ("writing a %u-byte %s message: %s", len, what, shm::StatusName(st)));
        return WriteResult::kError;
    }
  }
}

// Writes the stream's caps if the ring does not carry them yet, or if another
// consumer replaced the one that was reading them (a receiver restarted mid-stream
// missed them). Consumers are told apart by the ring's attach count, which every
// attach bumps (so a receiver restarted in the same process counts as new). The
// first consumer, attached before or after the CAPS record was written, finds it
// in the ring: no second record for it, unless consumers the sink never saw
// attached before it (its attach count is above 1: they may have read the
// record). last_attach_count keeps the last consumer seen (0 = none yet), not a
// momentary absence.
static WriteResult write_caps_if_needed(GstShmringSink* self, gboolean wait) {
  if (self->caps_string == nullptr) return WriteResult::kWritten;  // no caps: opaque data
  const guint32 flags = self->st->producer->ring()->ConsumerFlags();
  const guint32 count = (flags & shm::layout::kConsumerAttached)
                            ? flags >> shm::layout::kConsumerAttachCountShift
                            : 0;
  const bool new_consumer =
      count != 0 && count != self->last_attach_count && (self->last_attach_count != 0 || count > 1);
  if (self->written_caps_string != nullptr &&
      std::strcmp(self->written_caps_string, self->caps_string) == 0 && !new_consumer) {
    if (count != 0) self->last_attach_count = count;
    return WriteResult::kWritten;
  }
  shm::framing::Header h;
  h.kind = shm::framing::Kind::kCaps;
  const gchar* caps = self->caps_string;
  const gsize n = std::strlen(caps);
  const WriteResult r = write_message(self, h, {}, n, wait, "caps record",
                                      [caps, n](uint8_t* body) { std::memcpy(body, caps, n); });
  if (r == WriteResult::kWritten) {
    GST_DEBUG_OBJECT(self, "wrote caps %s%s", caps, new_consumer ? " (for a new receiver)" : "");
    // Also in the header's stream-info area: a receiver that attaches after this
    // record was reused (several receivers, live ones) starts with these caps.
    if (!self->st->producer->SetStreamInfo(caps, self->last_record_index)) {
      GST_WARNING_OBJECT(self,
                         "caps of %" G_GSIZE_FORMAT
                         " bytes do not fit the header's "
                         "stream-info area: receivers attaching later rely on the ring",
                         n);
    }
    g_free(self->written_caps_string);
    self->written_caps_string = g_strdup(caps);
    if (count != 0) self->last_attach_count = count;
  }
  return r;
}

static GstFlowReturn drop_buffer(GstShmringSink* self, GstBuffer* buffer) {
  self->st->producer->CountDropped(1);
  self->discont_next = TRUE;  // the receiver learns where the gap is from the next buffer
  GST_LOG_OBJECT(
      self, "ring full: dropped buffer %" GST_TIME_FORMAT " (%" G_GUINT64_FORMAT " dropped so far)",
      GST_TIME_ARGS(GST_BUFFER_PTS(buffer)), static_cast<guint64>(self->st->producer->Dropped()));
  return GST_FLOW_OK;
}

static GstFlowReturn gst_shmring_sink_render(GstBaseSink* bsink, GstBuffer* buffer) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  GST_OBJECT_LOCK(self);
  const gboolean wait = self->wait_for_space;
  GST_OBJECT_UNLOCK(self);

  if (!ensure_ring(self)) return GST_FLOW_ERROR;
  drop_left_rings(self);
  if (!self->st->producer) {
    // Re-creating the ring (below) failed earlier, with an error posted then.
    GST_DEBUG_OBJECT(self, "no ring: refusing buffer");
    return GST_FLOW_ERROR;
  }
  if (self->st->producer->ring()->ProducerClosed()) {
    // Data after EOS (a new stream after a seek, say): the old ring told its
    // receiver the stream ended; start a new incarnation under the same name.
    GST_INFO_OBJECT(self, "data after end of stream: re-creating the ring");
    destroy_ring(self);
    if (!create_ring(self)) return GST_FLOW_ERROR;
    // The ring pool upstream holds belongs to the old ring: ask for a new one.
    gst_pad_push_event(GST_BASE_SINK_PAD(self), gst_event_new_reconfigure());
  }

  learn_liveness(self);
  track_receiver(self);
  if (self->live && !self->receiver_attached) {
    // A live stream keeps no backlog a late receiver would start on.
    GST_OBJECT_LOCK(self);
    const guint64 n = ++self->not_received;
    GST_OBJECT_UNLOCK(self);
    GST_LOG_OBJECT(self, "live, no receiver: buffer not written (%" G_GUINT64_FORMAT " so far)", n);
    return GST_FLOW_OK;
  }

  switch (write_caps_if_needed(self, wait)) {
    case WriteResult::kWritten:
      break;
    case WriteResult::kDropped:
      return drop_buffer(self, buffer);  // the caps go out before the next buffer instead
    case WriteResult::kFlushing:
      return GST_FLOW_FLUSHING;
    case WriteResult::kError:
      return GST_FLOW_ERROR;
  }

  shm::framing::Header h;
  h.kind = shm::framing::Kind::kBuffer;
  h.flags = GST_BUFFER_FLAGS(buffer) & kCarriedFlags;
  if (self->discont_next) h.flags |= GST_BUFFER_FLAG_DISCONT;
  shm::framing::ExtensionWriter ext;
  stream_times(self, buffer, &h, &ext);
  carried_metas(buffer, &ext);
  if (!ext.fits()) {
    GST_WARNING_OBJECT(self, "metas of %u bytes do not fit a message header: dropped", ext.size());
    shm::framing::ExtensionWriter dts_only;
    stream_times(self, buffer, &h, &dts_only);
    ext = std::move(dts_only);
  }
  h.offset = GST_BUFFER_OFFSET(buffer);
  h.offset_end = GST_BUFFER_OFFSET_END(buffer);
  // In place only with the fixed header (the pool leaves room for no extensions).
  if (shmring::RingPoolPublishInPlace(
          buffer, self->st->producer.get(),
          [&h](uint8_t* payload) {
            h.send_time_ns = shm::framing::MonotonicNowNs();
            shm::framing::EncodeHeader(h, payload);
          },
          ext.empty())) {
    // Upstream wrote the body into the ring through our pool: header only.
    self->st->in_place.fetch_add(1, std::memory_order_relaxed);
    ++self->buffers_in_ring;
    self->discont_next = FALSE;
    note_written_end(self, h);
    return GST_FLOW_OK;
  }
  self->st->copied.fetch_add(1, std::memory_order_relaxed);
  const gsize size = gst_buffer_get_size(buffer);
  const WriteResult r =
      write_message(self, h, ext, size, wait, "buffer", [buffer, size](uint8_t* body) {
        gst_buffer_extract(buffer, 0, body, size);  // the one copy
      });
  switch (r) {
    case WriteResult::kWritten:
      ++self->buffers_in_ring;
      self->discont_next = FALSE;
      note_written_end(self, h);
      return GST_FLOW_OK;
    case WriteResult::kDropped:
      return drop_buffer(self, buffer);
    case WriteResult::kFlushing:
      return GST_FLOW_FLUSHING;
    case WriteResult::kError:
      break;
  }
  return GST_FLOW_ERROR;
}

static gboolean gst_shmring_sink_event(GstBaseSink* bsink, GstEvent* event) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    gboolean reset_time = FALSE;
    gst_event_parse_flush_stop(event, &reset_time);
    if (reset_time) {
      // Running time starts again at 0; the receiver's segment does not.
      self->ts_offset = self->written_end;
      self->discont_next = TRUE;
      GST_DEBUG_OBJECT(self, "flush: timestamps go on from %" GST_TIME_FORMAT,
                       GST_TIME_ARGS(self->ts_offset));
    }
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) ensure_ring(self);  // the receiver sees the end
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS && self->st->producer &&
      !self->st->producer->ring()->ProducerClosed()) {
    GST_OBJECT_LOCK(self);
    const gboolean wait = self->wait_for_space;
    GST_OBJECT_UNLOCK(self);
    if (g_atomic_int_get(&self->pipeline_error)) {
      // The EOS a source pushes after its flow error: the stream was cut short.
      // CLOSED without an EOS record tells the receiver so.
      GST_WARNING_OBJECT(self,
                         "end of stream after an error in this pipeline: ring '%s' closed "
                         "without an end-of-stream record (the receiver reports it cut short)",
                         self->st->producer->name().c_str());
      self->eos_written = FALSE;
      self->st->producer->Close();
      return GST_BASE_SINK_CLASS(parent_class)->event(bsink, event);
    }
    shm::framing::Header h;
    h.kind = shm::framing::Kind::kEos;
    const WriteResult r =
        write_message(self, h, {}, 0, wait, "end-of-stream record", [](uint8_t*) {});
    if (r == WriteResult::kFlushing) {
      gst_event_unref(event);
      return FALSE;
    }
    // Even without room for the EOS record, CLOSED tells the receiver the stream
    // ended once it has drained the ring.
    if (r == WriteResult::kDropped) GST_INFO_OBJECT(self, "ring full: EOS marked by CLOSED only");
    self->eos_written = (r == WriteResult::kWritten);
    self->st->producer->Close();
    GST_DEBUG_OBJECT(self, "end of stream: ring closed");
  }
  return GST_BASE_SINK_CLASS(parent_class)->event(bsink, event);
}

// Interrupt() returns only once the writer is awake: not under OBJECT_LOCK. The
// reference keeps the producer alive should stop() run meanwhile.
static gboolean gst_shmring_sink_unlock(GstBaseSink* bsink) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  GST_OBJECT_LOCK(self);
  const std::shared_ptr<shm::ShmProducer> producer = self->st->producer;
  GST_OBJECT_UNLOCK(self);
  self->st->unlocked.store(true, std::memory_order_relaxed);
  if (producer) producer->Interrupt();
  return TRUE;
}

static gboolean gst_shmring_sink_unlock_stop(GstBaseSink* bsink) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  GST_OBJECT_LOCK(self);
  const std::shared_ptr<shm::ShmProducer> producer = self->st->producer;
  GST_OBJECT_UNLOCK(self);
  self->st->unlocked.store(false, std::memory_order_relaxed);
  if (producer) producer->ClearInterrupt();
  return TRUE;
}

// A stream that ended (real EOS) before any receiver attached keeps its ring for
// up to `linger` seconds, until a receiver attaches (it then holds the mapping and
// drains it on its own). Streaming has stopped; the application's thread.
static void linger_for_first_receiver(GstShmringSink* self, guint linger, gint64 deadline) {
  shm::ShmProducer* producer = self->st->producer.get();
  if (producer == nullptr || linger == 0 || !self->eos_written || self->live ||
      producer->ring()->ConsumerAttachCount() != 0) {
    return;
  }
  GST_INFO_OBJECT(self, "stream ended before any receiver attached: keeping ring '%s' up to %u s",
                  producer->name().c_str(), linger);
  while (producer->ring()->ConsumerAttachCount() == 0 && g_get_monotonic_time() < deadline) {
    g_usleep(kLingerPollUs);
  }
  GST_INFO_OBJECT(self, "%s",
                  producer->ring()->ConsumerAttachCount() != 0
                      ? "a receiver attached: ring handed over"
                      : "linger expired without a receiver");
}

// A stream that ended (real EOS) while receivers were still in rings it moved out
// of (grow_ring): until `deadline`, waits while one of them is still draining such
// a ring or on its way to the current one (followers_pending), so that stop does
// not cut it short. Streaming has stopped; the application's thread.
static void linger_for_followers(GstShmringSink* self, guint linger, gint64 deadline) {
  if (linger == 0 || !self->eos_written || self->st->previous.empty()) return;
  gint64 left_at = 0;
  if (!followers_pending(self, &left_at)) return;
  GST_INFO_OBJECT(
      self, "stream ended while receivers still drain earlier rings: waiting up to %u s", linger);
  while (followers_pending(self, &left_at) && g_get_monotonic_time() < deadline) {
    g_usleep(kLingerPollUs);
  }
}

// Ends the ring without an EOS record unless a real EOS wrote one: a receiver
// tells a stream cut short (error, stop without EOS) by CLOSED without EOS. After
// a real EOS, keeps the rings up to `linger` seconds for receivers still on their
// way (linger_for_followers, linger_for_first_receiver). The application's
// thread; blocks up to `linger` seconds.
static gboolean gst_shmring_sink_stop(GstBaseSink* bsink) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  GST_INFO_OBJECT(self, "buffers sent in place: %" G_GUINT64_FORMAT ", copied: %" G_GUINT64_FORMAT,
                  self->st->in_place.load(), self->st->copied.load());
  unwatch_pipeline_errors(self);
  GST_OBJECT_LOCK(self);
  const guint linger = self->linger;
  GST_OBJECT_UNLOCK(self);
  const gint64 deadline = g_get_monotonic_time() + gint64{linger} * G_USEC_PER_SEC;
  linger_for_followers(self, linger, deadline);
  linger_for_first_receiver(self, linger, deadline);
  destroy_ring(self);
  return TRUE;
}

// Offers upstream a pool whose buffers live in the ring (ring_pool.h): raw video
// of a known frame size only (the pool needs the buffer size up front). The caps
// record goes into the ring first, so the pool's buffers are reserved after it and
// can be sent in place. Streaming thread (a serialized query).
static gboolean gst_shmring_sink_propose_allocation(GstBaseSink* bsink, GstQuery* query) {
  GstShmringSink* self = GST_SHMRING_SINK(bsink);
  GstCaps* caps = nullptr;
  gboolean need_pool = FALSE;
  gst_query_parse_allocation(query, &caps, &need_pool);
  GST_OBJECT_LOCK(self);
  const std::shared_ptr<shm::ShmProducer> producer = self->st->producer;
  GST_OBJECT_UNLOCK(self);
  GstVideoInfo info;
  if (caps == nullptr || producer == nullptr || !gst_video_info_from_caps(&info, caps) ||
      info.size == 0) {
    return TRUE;  // nothing to offer: upstream allocates, render copies
  }
  const guint size = static_cast<guint>(info.size);
  const guint max = shmring::RingPoolMaxBuffers(producer->capacity(), size);
  if (max == 0) {
    GST_DEBUG_OBJECT(self, "a %u-byte frame does not fit ring '%s' twice: no pool", size,
                     producer->name().c_str());
    return TRUE;
  }
  if (self->caps_string != nullptr && !producer->ring()->ProducerClosed()) {
    write_caps_if_needed(self, FALSE);  // never blocks a query; else before the next buffer
  }
  GstBufferPool* pool = shmring::RingPoolNew(producer, caps, size,
                                             [flag = self->st->wait_flag] { return flag->load(); });
  if (pool == nullptr) return TRUE;
  gst_query_add_allocation_pool(query, pool, size, 0, max);
  GST_DEBUG_OBJECT(self, "offering a ring pool: %u-byte buffers, at most %u in flight", size, max);
  gst_object_unref(pool);
  return TRUE;
}
