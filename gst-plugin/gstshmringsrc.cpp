// shmringsrc: a GstPushSrc that waits for a ring (started before or after the
// sender), negotiates from the CAPS records (renegotiating on change), pushes
// BUFFER records with the sender's timestamps, offsets and flags in a TIME
// segment, and ends with EOS when the stream ends. Buffers wrap the ring memory
// (no copy) unless it is a live receiver or the buffers downstream still holds
// would, with the next one, take more than half the ring.
//
// Threads: start tries to attach once (so a refused ring fails the state
// change); create runs in the streaming thread, is the only reader of the ring
// and waits for the sender if start did not find it; unlock/unlock_stop come
// from other threads and only fire/clear the element's interrupter, which
// reaches both waits; buffers are released from whichever thread frees them
// (shm::ShmConsumer takes releases from any thread, in any order).

#include "gstshmringsrc.h"

#include <gst/audio/audio.h>
#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"

GST_DEBUG_CATEGORY_STATIC(gst_shmring_src_debug);
#define GST_CAT_DEFAULT gst_shmring_src_debug

namespace {

constexpr gboolean kDefaultIsLive = FALSE;
constexpr guint64 kDefaultTimeout = 0;  // wait forever
constexpr gboolean kDefaultLatest = FALSE;
constexpr gboolean kDefaultReconnect = FALSE;
constexpr gboolean kDefaultZeroCopy = TRUE;
constexpr gboolean kDefaultAllowForeignOwner = FALSE;
// latest=true: how far from due a skipped-to buffer may be before it gets a new
// segment (see rebase_skip).
constexpr GstClockTimeDiff kRebaseTolerance = 20 * GST_MSECOND;

// Flags the sender carried that mean something here (see shmringsink).
constexpr guint32 kCarriedFlags =
    ~(static_cast<guint32>(GST_MINI_OBJECT_FLAG_LAST) - 1u) & ~guint32{GST_BUFFER_FLAG_TAG_MEMORY};

enum {
  PROP_0,
  PROP_SHM_NAME,
  PROP_IS_LIVE,
  PROP_CAPS,
  PROP_TIMEOUT,
  PROP_LATEST,
  PROP_RECONNECT,
  PROP_ZERO_COPY,
  PROP_SKIPPED,
  PROP_ALLOW_FOREIGN_OWNER,
  PROP_MODE,
};

// One decoded message, still held in the ring.
struct Message {
  shm::MessageView view;
  shm::framing::Header header;
  shm::framing::Extensions ext;  // the header's extensions (negative DTS, metas)
  const uint8_t* body = nullptr;
  uint32_t body_len = 0;
};

// Flow returns of create's helpers that are not GStreamer's own: the consumer was
// dropped to follow a restarted sender (go on), and a record to skip (go on).
#define SHMRING_FLOW_RECONNECTED GST_FLOW_CUSTOM_SUCCESS
#define SHMRING_FLOW_SKIP GST_FLOW_CUSTOM_SUCCESS_1

// latest=true pacing (OBJECT_LOCK: the QoS events that feed it may come from a
// downstream thread). For each recent buffer: its running time and this
// pipeline's running time when create took it from the ring; the sink's QoS
// event for a buffer then tells when it reached the sink, so the offset below is
// how far after being taken a buffer is due to render it on arrival
// (= downstream delay - latency, whatever the pipeline's latency is).
struct Pacing {
  struct Taken {
    GstClockTime running_time;  // in the segment it was pushed in
    GstClockTime taken_at;      // the pipeline clock's time in create (not running
                                // time: a non-live stream's second buffer may be
                                // taken before this element has its base time)
  };
  static constexpr size_t kRemembered = 32;
  std::deque<Taken> taken;
  GstClockTimeDiff due_offset = 0;  // arrival at the sink (less latency) - taken (running)
  bool due_offset_known = false;

  void Reset() {
    taken.clear();
    due_offset = 0;
    due_offset_known = false;
  }
};

// The element's C++ state (allocated in init, freed in finalize). The interrupter
// lives as long as the element; the rest is streaming-thread state, reset by
// start/stop (no other thread touches it).
struct SrcState {
  shm::Interrupter interrupter;  // fired by unlock, cleared by unlock_stop
  // Shared with the buffers that wrap its records: the mapping lives until the
  // last of them is freed.
  std::shared_ptr<shm::ShmConsumer> consumer;
  // Ring bytes (whole records) of the buffers wrapping this consumer's records
  // that downstream has not freed yet: what it actually holds, not the free gap
  // a wrap leaves. Shared with those buffers
  // (freed from any thread); a new one with every consumer.
  std::shared_ptr<std::atomic<uint64_t>> held_downstream;
  std::deque<shm::MessageView> lookahead;  // acquired, not yet processed (latest mode)
  GstCaps* pending_caps = nullptr;         // from a CAPS record; set before the next buffer
  bool need_segment = true;                // the next buffer starts a new segment
  bool discont = false;                    // the next buffer follows skipped ones
  bool warned_no_caps = false;
  std::string not_there;         // why the last attach found no usable ring
  GstClockTime running_end = 0;  // running time at the end of the last buffer
  bool rebase = false;           // the next segment starts at this pipeline's "now"
  // Added to the sender's running times in this segment: the magnitude of a DTS
  // before running time 0 on the segment's first buffer, so that such DTS (an
  // encoder's B-frame delay) stay valid times before the segment start.
  GstClockTime ts_shift = 0;
  // A live ring: records ending at or before backlog_end were there before we
  // attached; their data is skipped (caps still apply), and an encoded stream
  // starts at its first key frame.
  bool skip_backlog = false;
  uint32_t backlog_end = 0;
  bool need_keyframe = false;
  // The ring was handed over (ShmConsumer::HandedOver): the next ring under the name
  // carries the rest of the same stream, backlog included (a live one too).
  bool following = false;
  uint64_t ring_skips_seen = 0;  // the slot's skipped counter (live mode) at the last buffer
  bool skipped_ahead = false;    // latest=true just skipped: rebase the next buffer
  Pacing pacing;                 // OBJECT_LOCK (see Pacing)

  void Reset() {
    if (consumer) consumer->Detach();  // a new receiver may attach at once
    consumer.reset();
    held_downstream.reset();
    lookahead.clear();
    gst_clear_caps(&pending_caps);
    need_segment = true;
    discont = false;
    warned_no_caps = false;
    running_end = 0;
    rebase = false;
    ts_shift = 0;
    skip_backlog = false;
    backlog_end = 0;
    need_keyframe = false;
    following = false;
    ring_skips_seen = 0;
    skipped_ahead = false;
  }
};

// What a buffer wrapping ring memory keeps alive and gives back.
struct RingRef {
  std::shared_ptr<shm::ShmConsumer> consumer;
  std::shared_ptr<std::atomic<uint64_t>> held_downstream;  // SrcState::held_downstream
  shm::MessageView view;
  uint64_t record_bytes;  // counted in held_downstream while the buffer lives
};

void release_ring_ref(gpointer data) {
  auto* ref = static_cast<RingRef*>(data);
  // relaxed: a count for a heuristic (copy or wrap), ordered with nothing else.
  ref->held_downstream->fetch_sub(ref->record_bytes, std::memory_order_relaxed);
  ref->consumer->Release(ref->view);
  delete ref;
}

}  // namespace

struct _GstShmringSrc {
  GstPushSrc parent;

  // Properties (OBJECT_LOCK); is-live and do-timestamp live in GstBaseSrc.
  gchar* shm_name;
  GstCaps* caps;
  guint64 timeout;
  gboolean latest;
  gboolean reconnect;
  gboolean zero_copy;
  gboolean allow_foreign_owner;
  gint mode;        // GstShmringSrcMode
  guint64 skipped;  // buffers skipped: latest=true, a live backlog (OBJECT_LOCK)
  // Live latency: one frame of the current caps' framerate, else the duration of
  // the last buffer (OBJECT_LOCK).
  GstClockTime frame_latency;
  GstClockTime last_duration;

  SrcState* st;
};

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

#define gst_shmring_src_parent_class parent_class
G_DEFINE_TYPE(GstShmringSrc, gst_shmring_src, GST_TYPE_PUSH_SRC);

// The receiver modes of the mode property (values = shm::ConsumerOptions::mode).
enum GstShmringSrcMode {
  GST_SHMRING_SRC_MODE_LOSSLESS = shm::layout::kModeLossless,
  GST_SHMRING_SRC_MODE_LIVE = shm::layout::kModeLive,
  GST_SHMRING_SRC_MODE_AUTO = shm::kModeAuto,
};

static GType gst_shmring_src_mode_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_SHMRING_SRC_MODE_AUTO, "live on a live ring with several receiver slots, else lossless",
       "auto"},
      {GST_SHMRING_SRC_MODE_LOSSLESS, "the sender waits for this receiver", "lossless"},
      {GST_SHMRING_SRC_MODE_LIVE, "never holds the sender back; skips ahead when behind", "live"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) {
    g_once_init_leave(&type, g_enum_register_static("GstShmringSrcMode", values));
  }
  return type;
}
GST_ELEMENT_REGISTER_DEFINE(shmringsrc, "shmringsrc", GST_RANK_NONE, GST_TYPE_SHMRING_SRC);

static void gst_shmring_src_set_property(GObject* object, guint prop_id, const GValue* value,
                                         GParamSpec* pspec);
static void gst_shmring_src_get_property(GObject* object, guint prop_id, GValue* value,
                                         GParamSpec* pspec);
static void gst_shmring_src_finalize(GObject* object);
static gboolean gst_shmring_src_start(GstBaseSrc* bsrc);
static gboolean gst_shmring_src_is_seekable(GstBaseSrc* bsrc);
static gboolean gst_shmring_src_query(GstBaseSrc* bsrc, GstQuery* query);
static gboolean gst_shmring_src_event(GstBaseSrc* bsrc, GstEvent* event);
static GstCaps* gst_shmring_src_get_caps(GstBaseSrc* bsrc, GstCaps* filter);
static GstFlowReturn gst_shmring_src_create(GstPushSrc* psrc, GstBuffer** outbuf);
static gboolean gst_shmring_src_unlock(GstBaseSrc* bsrc);
static gboolean gst_shmring_src_unlock_stop(GstBaseSrc* bsrc);
static gboolean gst_shmring_src_stop(GstBaseSrc* bsrc);

static void gst_shmring_src_class_init(GstShmringSrcClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstBaseSrcClass* basesrc_class = GST_BASE_SRC_CLASS(klass);
  GstPushSrcClass* pushsrc_class = GST_PUSH_SRC_CLASS(klass);

  gobject_class->set_property = gst_shmring_src_set_property;
  gobject_class->get_property = gst_shmring_src_get_property;
  gobject_class->finalize = gst_shmring_src_finalize;

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                           GST_PARAM_MUTABLE_READY);
  /**
   * GstShmringSrc:shm-name:
   *
   * Name of the ring to read, as given to the sender's shmringsink shm-name
   * (e.g. cam0). The sender may start before or after this element: until it
   * creates the ring, this element waits (see #GstShmringSrc:timeout). A ring
   * left by a sender that died is waited on until a new sender replaces it.
   */
  g_object_class_install_property(
      gobject_class, PROP_SHM_NAME,
      g_param_spec_string("shm-name", "Ring name",
                          "Name of the ring to read, as given to the sender's shmringsink "
                          "(e.g. cam0)",
                          nullptr, rw));
  /**
   * GstShmringSrc:is-live:
   *
   * Act as a live source: produce data only in PLAYING and map the sender's
   * timestamps to this pipeline's clock from the first buffer on (use for live
   * video). With do-timestamp=true buffers get this pipeline's capture times
   * instead.
   */
  g_object_class_install_property(
      gobject_class, PROP_IS_LIVE,
      g_param_spec_boolean("is-live", "Is live",
                           "Act as a live source, mapping the sender's timestamps onto this "
                           "pipeline's clock",
                           kDefaultIsLive, rw));
  /**
   * GstShmringSrc:caps:
   *
   * What the bytes are, for rings written by a plain C++/Python ShmProducer
   * (profile 0, no in-band caps), e.g.
   * video/x-raw,format=GRAY8,width=640,height=480,framerate=30/1. Rings from
   * shmringsink carry their caps: this is then only used until the first caps
   * arrive. Caps in system memory only.
   */
  g_object_class_install_property(
      gobject_class, PROP_CAPS,
      g_param_spec_boxed("caps", "Caps",
                         "Caps of the messages of a ring without in-band caps (profile 0)",
                         GST_TYPE_CAPS, rw));
  /**
   * GstShmringSrc:timeout:
   *
   * How long to wait for a sender to create the ring, in nanoseconds (0 =
   * forever); an error after that. A ring that exists but can never be read
   * (another receiver attached, no permission, not a valid ring) is an error at
   * once, whatever the timeout.
   */
  g_object_class_install_property(
      gobject_class, PROP_TIMEOUT,
      g_param_spec_uint64("timeout", "Producer timeout",
                          "Nanoseconds to wait for a sender to create the ring (0 = forever)", 0,
                          G_MAXUINT64, kDefaultTimeout, rw));
  /**
   * GstShmringSrc:latest:
   *
   * When behind the sender, skip to the newest buffer in the ring (the newest
   * key frame for compressed video), like a leaky queue; caps changes in between
   * still apply. For live viewing where freshness beats completeness; counted in
   * #GstShmringSrc:skipped. May be changed while PLAYING.
   */
  g_object_class_install_property(
      gobject_class, PROP_LATEST,
      g_param_spec_boolean("latest", "Latest buffer only",
                           "When behind the sender, skip to the newest (key) buffer in the ring",
                           kDefaultLatest,
                           static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  /**
   * GstShmringSrc:reconnect:
   *
   * When the sender dies or a new sender re-creates the ring, wait for the new
   * one and go on (the next buffer is DISCONT) instead of failing with an error.
   * A stream that ends normally still ends with EOS.
   */
  g_object_class_install_property(
      gobject_class, PROP_RECONNECT,
      g_param_spec_boolean("reconnect", "Reconnect",
                           "Follow a restarted sender instead of failing when the sender dies "
                           "or the ring is re-created",
                           kDefaultReconnect, rw));
  /**
   * GstShmringSrc:zero-copy:
   *
   * Push buffers that point into the ring instead of copies (the default, as
   * shmsrc hands out shared memory). The ring space of a buffer is reused only
   * after downstream frees it and every older one: elements that keep many
   * frames (encoders with lookahead, unbounded queues, apps keeping samples)
   * hold the sender back while they keep them. Once the buffers downstream
   * still holds would take more than half the ring, buffers are copied, and
   * a sender stalled by held buffers is reported with a warning; set it to
   * false to copy every buffer out. A live receiver (#GstShmringSrc:mode)
   * always copies: it promises never to hold the sender back, and a buffer held
   * downstream would. May be changed while PLAYING (applies to the next buffer).
   */
  g_object_class_install_property(
      gobject_class, PROP_ZERO_COPY,
      g_param_spec_boolean(
          "zero-copy", "Zero copy", "Push buffers that point into the ring instead of copies",
          kDefaultZeroCopy, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  /**
   * GstShmringSrc:skipped:
   *
   * Buffers skipped so far: to catch up with the sender (#GstShmringSrc:latest);
   * on a live stream, those already in the ring when this element attached (and
   * delta units before the first key frame); in live mode, the buffers the sender
   * overwrote before this receiver read them (and delta units up to the next key
   * frame when no key frame was left in the ring). Every buffer counts once, so
   * sent = received + skipped for the buffers published while attached (a skipped
   * caps record counts as one too).
   */
  g_object_class_install_property(
      gobject_class, PROP_SKIPPED,
      g_param_spec_uint64(
          "skipped", "Skipped buffers",
          "Buffers this receiver skipped so far (latest=true, a live stream's backlog, "
          "buffers overwritten before it read them in live mode)",
          0, G_MAXUINT64, 0, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstShmringSrc:mode:
   *
   * How this receiver shares a ring with others (shmringsink max-receivers > 1):
   * lossless (the sender waits for it: recorders), live (never holds the sender
   * back: when it falls behind it skips to the newest buffer, counted in
   * #GstShmringSrc:skipped, the next buffer DISCONT; buffers are copied out of the
   * ring, so downstream never pins ring space), or auto (the default): live on a
   * live ring with several receiver slots, lossless otherwise (a file stream, or
   * the single receiver of a default ring).
   */
  g_object_class_install_property(
      gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode",
                        "lossless: the sender waits for this receiver; live: never holds the "
                        "sender back, skips ahead when behind; auto: live on a live ring "
                        "with several receivers, else lossless",
                        gst_shmring_src_mode_get_type(), GST_SHMRING_SRC_MODE_AUTO, rw));
  /**
   * GstShmringSrc:allow-foreign-owner:
   *
   * Attach to a ring whose segment is owned by another user. By default such a
   * segment is refused (another user could feed or truncate it), as ssh's
   * StrictModes refuses files others own; set this only when the other user is
   * trusted (e.g. a sender running as a different service account with perms=0660).
   */
  g_object_class_install_property(
      gobject_class, PROP_ALLOW_FOREIGN_OWNER,
      g_param_spec_boolean("allow-foreign-owner", "Allow a foreign owner",
                           "Attach to a ring owned by another user (refused by default)",
                           kDefaultAllowForeignOwner, rw));

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Shared-memory ring source", "Source/Network",
      "Reads buffers from a lock-free single-producer/single-consumer ring in shared memory "
      "written by shmringsink (or a shmring C++/Python producer) in another process, with "
      "their caps, timestamps and end of stream; waits for the sender to appear",
      "shmring developers");

  basesrc_class->start = GST_DEBUG_FUNCPTR(gst_shmring_src_start);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR(gst_shmring_src_is_seekable);
  basesrc_class->query = GST_DEBUG_FUNCPTR(gst_shmring_src_query);
  basesrc_class->event = GST_DEBUG_FUNCPTR(gst_shmring_src_event);
  basesrc_class->get_caps = GST_DEBUG_FUNCPTR(gst_shmring_src_get_caps);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR(gst_shmring_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR(gst_shmring_src_unlock_stop);
  basesrc_class->stop = GST_DEBUG_FUNCPTR(gst_shmring_src_stop);
  pushsrc_class->create = GST_DEBUG_FUNCPTR(gst_shmring_src_create);

  GST_DEBUG_CATEGORY_INIT(gst_shmring_src_debug, "shmringsrc", 0, "shared-memory ring source");
}

static void gst_shmring_src_init(GstShmringSrc* self) {
  self->shm_name = nullptr;
  self->caps = nullptr;
  self->timeout = kDefaultTimeout;
  self->latest = kDefaultLatest;
  self->reconnect = kDefaultReconnect;
  self->zero_copy = kDefaultZeroCopy;
  self->allow_foreign_owner = kDefaultAllowForeignOwner;
  self->mode = GST_SHMRING_SRC_MODE_AUTO;
  self->skipped = 0;
  self->frame_latency = GST_CLOCK_TIME_NONE;
  self->last_duration = GST_CLOCK_TIME_NONE;
  self->st = new SrcState();

  gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
  gst_base_src_set_live(GST_BASE_SRC(self), kDefaultIsLive);
}

static void gst_shmring_src_finalize(GObject* object) {
  GstShmringSrc* self = GST_SHMRING_SRC(object);
  self->st->Reset();
  delete self->st;
  g_free(self->shm_name);
  gst_clear_caps(&self->caps);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_shmring_src_set_property(GObject* object, guint prop_id, const GValue* value,
                                         GParamSpec* pspec) {
  GstShmringSrc* self = GST_SHMRING_SRC(object);
  switch (prop_id) {
    case PROP_IS_LIVE:
      gst_base_src_set_live(GST_BASE_SRC(self), g_value_get_boolean(value));
      return;
    default:
      break;
  }
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_SHM_NAME:
      g_free(self->shm_name);
      self->shm_name = g_value_dup_string(value);
      break;
    case PROP_CAPS: {
      const GstCaps* caps = gst_value_get_caps(value);
      gst_clear_caps(&self->caps);
      if (caps != nullptr && !gst_caps_is_any(caps) && !gst_caps_is_empty(caps)) {
        self->caps = gst_caps_copy(caps);
      }
      break;
    }
    case PROP_TIMEOUT:
      self->timeout = g_value_get_uint64(value);
      break;
    case PROP_LATEST:
      self->latest = g_value_get_boolean(value);
      break;
    case PROP_RECONNECT:
      self->reconnect = g_value_get_boolean(value);
      break;
    case PROP_ZERO_COPY:
      self->zero_copy = g_value_get_boolean(value);
      break;
    case PROP_MODE:
      self->mode = g_value_get_enum(value);
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

static void gst_shmring_src_get_property(GObject* object, guint prop_id, GValue* value,
                                         GParamSpec* pspec) {
  GstShmringSrc* self = GST_SHMRING_SRC(object);
  if (prop_id == PROP_IS_LIVE) {
    g_value_set_boolean(value, gst_base_src_is_live(GST_BASE_SRC(self)));
    return;
  }
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_SHM_NAME:
      g_value_set_string(value, self->shm_name);
      break;
    case PROP_CAPS:
      gst_value_set_caps(value, self->caps);
      break;
    case PROP_TIMEOUT:
      g_value_set_uint64(value, self->timeout);
      break;
    case PROP_LATEST:
      g_value_set_boolean(value, self->latest);
      break;
    case PROP_RECONNECT:
      g_value_set_boolean(value, self->reconnect);
      break;
    case PROP_ZERO_COPY:
      g_value_set_boolean(value, self->zero_copy);
      break;
    case PROP_MODE:
      g_value_set_enum(value, self->mode);
      break;
    case PROP_ALLOW_FOREIGN_OWNER:
      g_value_set_boolean(value, self->allow_foreign_owner);
      break;
    case PROP_SKIPPED:
      g_value_set_uint64(value, self->skipped);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
}

// ---- attaching to the ring -------------------------------------------------------

// The ring name from the property, checked: "" (error posted) when unusable.
static std::string ring_name(GstShmringSrc* self) {
  GST_OBJECT_LOCK(self);
  const std::string name = self->shm_name ? self->shm_name : "";
  GST_OBJECT_UNLOCK(self);
  if (name.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No ring name given: set the shm-name property (e.g. shm-name=cam0)."),
                      (nullptr));
    return "";
  }
  const std::string bad_name = shm::ValidateName(name);
  if (!bad_name.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Invalid ring name '%s'.", name.c_str()),
                      ("%s", bad_name.c_str()));
    return "";
  }
  return name;
}

// The sender's current caps from the ring header (stream info), when the CAPS
// record they came from is before `before` (a ring index): reused, or before a
// live start, so this receiver never reads it. They become the pending caps (set
// before the next buffer); a CAPS record ahead of `before` replaces them when read.
// Streaming thread (or start).
static void caps_from_header(GstShmringSrc* self, const shm::ShmConsumer& consumer,
                             uint32_t before) {
  std::string info;
  uint32_t index = 0;
  // Ring indices run freely: the record at `index` is before `before`.
  if (!consumer.StreamInfo(&info, &index) || static_cast<int32_t>(index - before) >= 0) return;
  GstCaps* caps = gst_caps_from_string(info.c_str());
  if (caps != nullptr && gst_caps_is_fixed(caps)) {
    GST_INFO_OBJECT(self, "caps from the ring header: %" GST_PTR_FORMAT, caps);
    gst_caps_replace(&self->st->pending_caps, caps);
  } else {
    GST_WARNING_OBJECT(self, "ignoring caps in the ring header that are not fixed caps: %s",
                       info.c_str());
  }
  gst_clear_caps(&caps);
}
// Keeps an attached consumer if this element can read what its ring carries.
// False with an error posted.
static bool take_consumer(GstShmringSrc* self, std::unique_ptr<shm::ShmConsumer> consumer) {
  const std::string& name = consumer->name();
  const uint32_t profile = consumer->profile();
  GST_OBJECT_LOCK(self);
  const bool have_caps = self->caps != nullptr;
  GST_OBJECT_UNLOCK(self);
  if (profile != shm::layout::kProfileGstFraming && profile != shm::layout::kProfileOpaque) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ,
                      ("Ring '%s' uses a framing this version does not understand.", name.c_str()),
                      ("profile %u; this build reads profiles 0 and 1", profile));
    return false;
  }
  if (profile == shm::layout::kProfileOpaque && !have_caps) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("Ring '%s' carries opaque messages without caps: set the caps "
                       "property to say what they are.",
                       name.c_str()),
                      ("profile 0 ring (written by a plain ShmProducer), e.g. "
                       "caps=\"video/x-raw,format=GRAY8,width=640,height=480,"
                       "framerate=30/1\""));
    return false;
  }
  GST_INFO_OBJECT(self, "attached to ring '%s': capacity %u, profile %u, producer pid %u",
                  name.c_str(), consumer->capacity(), profile, consumer->producer_pid());
  consumer->SetStallCallback([self, name] {
    GST_ELEMENT_WARNING(self, RESOURCE, BUSY,
                        ("Downstream holds buffers of ring '%s' and the sender is "
                         "waiting for that space.",
                         name.c_str()),
                        ("zero-copy buffers are freed in ring order; an element that "
                         "keeps many frames stalls the sender: set zero-copy=false"));
  });
  SrcState* st = self->st;
  // A live stream starts at what is published from now on (data already in the
  // ring is stale); a non-live one from its oldest record, losing nothing. A ring
  // we follow into after a hand-over holds the rest of the stream we were reading:
  // nothing in it is stale, and the stream goes on without waiting for a key frame.
  const bool stale_backlog = consumer->live() && !st->following;
  st->following = false;
  st->skip_backlog = stale_backlog;
  st->backlog_end = consumer->attach_head();
  st->need_keyframe = stale_backlog;
  st->ring_skips_seen = consumer->skipped();
  if (profile == shm::layout::kProfileGstFraming) {
    // A receiver joining mid-stream of a ring with several receivers.
    caps_from_header(self, *consumer, consumer->ring()->LoadTail());
  }
  GST_INFO_OBJECT(self, "receiver slot %u, mode %s", consumer->slot(),
                  consumer->mode() == shm::layout::kModeLive ? "live" : "lossless");
  if (consumer->live()) {
    GST_INFO_OBJECT(self, "live stream: skipping the %u bytes already in the ring",
                    consumer->attach_head() - consumer->ring()->LoadTail());
  }
  st->consumer = std::move(consumer);
  st->held_downstream = std::make_shared<std::atomic<uint64_t>>(0);
  return true;
}

enum class Attach { kAttached, kNotThere, kFlushing, kError };

// Attaches to ring `name`, waiting up to timeout_ns (0 = one look, shm::kForever)
// for a live sender; unlock interrupts the wait. kError: posted.
static Attach attach(GstShmringSrc* self, const std::string& name, int64_t timeout_ns) {
  shm::ConsumerOptions options;
  options.open_timeout_ns = timeout_ns;
  options.interrupter = &self->st->interrupter;
  // A ring left by a sender that died is not a stream to play: wait for its successor.
  options.wait_for_live_producer = true;
  // Nor is a finished stream already read to its end (a pipeline restarted after
  // EOS): wait for the sender's next ring.
  options.wait_for_open_producer = true;
  // Kept from the start: the backlog's caps records still apply (see take_consumer).
  options.start_at = shm::StartAt::kOldest;
  GST_OBJECT_LOCK(self);
  options.allow_foreign_owner = self->allow_foreign_owner;
  options.mode = static_cast<uint32_t>(self->mode);
  GST_OBJECT_UNLOCK(self);
  auto consumer = std::make_unique<shm::ShmConsumer>(name, options);
  switch (consumer->open_status()) {
    case shm::Status::kOk:
      return take_consumer(self, std::move(consumer)) ? Attach::kAttached : Attach::kError;
    case shm::Status::kTimeout:
      GST_DEBUG_OBJECT(self, "no usable ring yet: %s", consumer->error().c_str());
      self->st->not_there = consumer->error();
      return Attach::kNotThere;
    case shm::Status::kInterrupted:
      return Attach::kFlushing;
    default:
      break;
  }
  if (consumer->busy_consumer_pid() != 0) {
    GST_ELEMENT_ERROR(
        self, RESOURCE, BUSY,
        ("Ring '%s' already has a receiver (pid %u).", name.c_str(), consumer->busy_consumer_pid()),
        ("%s", consumer->error().c_str()));
  } else {
    GST_ELEMENT_ERROR(
        self, RESOURCE, OPEN_READ,
        ("Ring '%s' exists but cannot be read: %s", name.c_str(), consumer->error().c_str()),
        ("%s", consumer->error().c_str()));
  }
  return Attach::kError;
}

// In create, when start did not find the ring (or after a reconnect): waits for a
// sender. OK with st->consumer set, FLUSHING when unlocked, ERROR (posted).
static GstFlowReturn open_ring(GstShmringSrc* self) {
  const std::string name = ring_name(self);
  if (name.empty()) return GST_FLOW_ERROR;
  GST_OBJECT_LOCK(self);
  const guint64 timeout = self->timeout;
  GST_OBJECT_UNLOCK(self);
  Attach a = attach(self, name, 0);
  if (a == Attach::kNotThere) {
    GST_INFO_OBJECT(self, "waiting for a producer to create ring '%s'", name.c_str());
    const int64_t wait_ns = (timeout == 0 || timeout > static_cast<guint64>(G_MAXINT64))
                                ? shm::kForever
                                : static_cast<int64_t>(timeout);
    a = attach(self, name, wait_ns);
  }
  switch (a) {
    case Attach::kAttached:
      return GST_FLOW_OK;
    case Attach::kFlushing:
      return GST_FLOW_FLUSHING;
    case Attach::kError:
      return GST_FLOW_ERROR;
    case Attach::kNotThere:
      break;
  }
  GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                    ("No sender created ring '%s' within %.3f s.", name.c_str(),
                     static_cast<double>(timeout) / GST_SECOND),
                    ("waited for a shmringsink (or ShmProducer) with shm-name=%s; "
                     "timeout=0 waits forever; last look: %s",
                     name.c_str(), self->st->not_there.c_str()));
  return GST_FLOW_ERROR;
}

// ---- helpers for create ----------------------------------------------------------

// The next message: a looked-ahead one first, else from the ring (blocking).
static shm::Status next_view(GstShmringSrc* self, shm::MessageView* out) {
  SrcState* st = self->st;
  if (!st->lookahead.empty()) {
    *out = st->lookahead.front();
    st->lookahead.pop_front();
    return shm::Status::kOk;
  }
  return st->consumer->AcquireFor(out, shm::kForever);
}

static bool decode(GstShmringSrc* self, const shm::MessageView& v, Message* m) {
  m->view = v;
  const char* why = nullptr;
  if (!shm::framing::DecodeMessage(v.data, v.len, &m->header, &m->body, &m->body_len, &why) ||
      (m->header.header_size > shm::framing::kHeaderSize &&
       !shm::framing::DecodeExtensions(v.data, m->header, &m->ext, &why))) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ,
                      ("Ring '%s' holds a corrupt record.", self->st->consumer->name().c_str()),
                      ("profile-1 message of %u bytes: %s", v.len, why));
    return false;
  }
  if (m->header.header_size <= shm::framing::kHeaderSize) m->ext = shm::framing::Extensions();
  return true;
}

// A CAPS record: parsed now, applied before the next buffer.
static bool take_caps(GstShmringSrc* self, const Message& m) {
  std::string text(reinterpret_cast<const char*>(m.body), m.body_len);
  GstCaps* caps = gst_caps_from_string(text.c_str());
  if (caps == nullptr || !gst_caps_is_fixed(caps)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("The sender's caps cannot be used."),
                      ("caps record \"%s\"", text.c_str()));
    gst_clear_caps(&caps);
    return false;
  }
  // The buffers are copies of (or views into) the ring: system memory, whatever
  // the sender's caps say. Caps that promise other memory (DMABuf, GL) would lie.
  GstCapsFeatures* features = gst_caps_get_features(caps, 0);
  if (features != nullptr && !gst_caps_features_is_any(features) &&
      !gst_caps_features_is_equal(features, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
    gchar* f = gst_caps_features_to_string(features);
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("The sender's caps ask for %s, but shmringsrc delivers system memory "
                       "only.",
                       f),
                      ("caps record \"%s\"; the sender must download to system memory "
                       "(e.g. gldownload) before shmringsink",
                       text.c_str()));
    g_free(f);
    gst_caps_unref(caps);
    return false;
  }
  GST_DEBUG_OBJECT(self, "caps record %" GST_PTR_FORMAT, caps);
  gst_caps_replace(&self->st->pending_caps, caps);
  gst_caps_unref(caps);
  return true;
}

// One frame at the framerate of `caps` (NONE if it has none). A live src
// reports it as its latency and tells the pipeline when it changes.
static void update_frame_latency(GstShmringSrc* self, const GstCaps* caps) {
  GstClockTime frame = GST_CLOCK_TIME_NONE;
  gint n = 0, d = 0;
  if (gst_caps_get_size(caps) > 0 &&
      gst_structure_get_fraction(gst_caps_get_structure(caps, 0), "framerate", &n, &d) && n > 0 &&
      d > 0) {
    frame = gst_util_uint64_scale_int(GST_SECOND, d, n);
  }
  GST_OBJECT_LOCK(self);
  const bool changed = frame != self->frame_latency;
  self->frame_latency = frame;
  GST_OBJECT_UNLOCK(self);
  if (changed && gst_base_src_is_live(GST_BASE_SRC(self))) {
    GST_DEBUG_OBJECT(self, "latency now %" GST_TIME_FORMAT, GST_TIME_ARGS(frame));
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  }
}

// Makes the pad's caps what the next buffer needs. OK, NOT_NEGOTIATED (posted),
// or SHMRING_FLOW_SKIP when there are no caps to give the buffer yet (skip it).
static GstFlowReturn ensure_caps(GstShmringSrc* self) {
  SrcState* st = self->st;
  GstBaseSrc* bsrc = GST_BASE_SRC(self);
  GstCaps* want = st->pending_caps ? gst_caps_ref(st->pending_caps) : nullptr;
  gst_clear_caps(&st->pending_caps);
  GstCaps* current = gst_pad_get_current_caps(GST_BASE_SRC_PAD(bsrc));
  if (want == nullptr && current == nullptr) {
    GST_OBJECT_LOCK(self);
    if (self->caps != nullptr) want = gst_caps_ref(self->caps);
    GST_OBJECT_UNLOCK(self);
    if (want == nullptr) {
      if (!st->warned_no_caps) {
        GST_WARNING_OBJECT(self,
                           "skipping buffers until the stream's caps arrive (joined "
                           "mid-stream); set the caps property to use them at once");
        st->warned_no_caps = true;
      }
      return SHMRING_FLOW_SKIP;
    }
  }
  GstFlowReturn ret = GST_FLOW_OK;
  if (want != nullptr && (current == nullptr || !gst_caps_is_equal(want, current))) {
    GST_INFO_OBJECT(self, "caps %" GST_PTR_FORMAT, want);
    if (!gst_base_src_set_caps(bsrc, want)) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Downstream does not accept the sender's caps."),
                        ("caps %" GST_PTR_FORMAT, want));
      ret = GST_FLOW_NOT_NEGOTIATED;
    } else {
      update_frame_latency(self, want);
    }
  }
  gst_clear_caps(&want);
  gst_clear_caps(&current);
  return ret;
}

static void count_skipped(GstShmringSrc* self, guint64 n) {
  GST_OBJECT_LOCK(self);
  self->skipped += n;
  GST_OBJECT_UNLOCK(self);
}

// A live receiver skipped records since the last message (the sender reused them
// before we read them): each lost record counts in skipped, and the next buffer is
// DISCONT. The ring resumes at the newest key frame still in it when there is one;
// otherwise delta units are dropped (and counted) until the next key frame, so a
// decoder never gets a delta without its reference. A CAPS record among the lost
// ones is recovered from the ring header: the sender's current caps, when their
// record is before `end` (the end of the record the receiver resumed at), apply
// from the next buffer on. Streaming thread.
static void note_ring_skips(GstShmringSrc* self, uint32_t end) {
  SrcState* st = self->st;
  const uint64_t ring_skips = st->consumer->skipped();
  if (ring_skips == st->ring_skips_seen) return;
  if (st->consumer->profile() == shm::layout::kProfileGstFraming) {
    caps_from_header(self, *st->consumer, end);
  }
  GST_LOG_OBJECT(self, "skipped %" G_GUINT64_FORMAT " records (live receiver fell behind)",
                 ring_skips - st->ring_skips_seen);
  count_skipped(self, ring_skips - st->ring_skips_seen);
  st->ring_skips_seen = ring_skips;
  st->discont = true;
  st->need_keyframe = true;
}

// latest=true: replaces `m` (a BUFFER) by the newest buffer that can start
// decoding (no DELTA_UNIT flag) among the messages already in the ring, applying
// the caps records in between. False on a corrupt record (posted).
static bool skip_to_latest(GstShmringSrc* self, Message* m) {
  SrcState* st = self->st;
  for (;;) {
    shm::MessageView w;
    if (st->consumer->AcquireFor(&w, 0) != shm::Status::kOk) break;
    st->lookahead.push_back(w);
  }
  int chosen = -1;
  for (size_t i = 0; i < st->lookahead.size(); ++i) {
    Message a;
    if (!decode(self, st->lookahead[i], &a)) return false;
    if (a.header.kind == shm::framing::Kind::kEos) break;
    if (a.header.kind == shm::framing::Kind::kBuffer &&
        !(a.header.flags & GST_BUFFER_FLAG_DELTA_UNIT)) {
      chosen = static_cast<int>(i);
    }
  }
  if (chosen < 0) return true;
  guint64 skipped = 1;
  st->consumer->Release(m->view);
  for (int i = 0; i < chosen; ++i) {
    const shm::MessageView w = st->lookahead.front();
    st->lookahead.pop_front();
    Message a;
    decode(self, w, &a);
    if (a.header.kind == shm::framing::Kind::kCaps && !take_caps(self, a)) return false;
    if (a.header.kind == shm::framing::Kind::kBuffer) ++skipped;
    st->consumer->Release(w);
  }
  const shm::MessageView w = st->lookahead.front();
  st->lookahead.pop_front();
  decode(self, w, m);
  count_skipped(self, skipped);
  st->discont = true;
  st->skipped_ahead = true;
  GST_LOG_OBJECT(self, "skipped %" G_GUINT64_FORMAT " buffers to catch up", skipped);
  return true;
}

// Wraps a body (zero-copy=true, the default), or copies it: with zero-copy=false,
// for a live receiver, or when the ring-backed buffers downstream still holds,
// with this one, would take more than half the ring (whole records; the gaps a
// wrap leaves are not held and do not count: a receiver whose downstream keeps
// one frame, as fakesink does, wraps every frame of a ring of four frames or
// more). Half the ring held leaves the sender room for its next frame.
static GstBuffer* make_buffer(GstShmringSrc* self, const shm::MessageView& v, const uint8_t* body,
                              uint32_t len) {
  SrcState* st = self->st;
  const std::shared_ptr<shm::ShmConsumer>& consumer = st->consumer;
  if (len == 0) {
    consumer->Release(v);
    return gst_buffer_new();
  }
  GST_OBJECT_LOCK(self);
  const gboolean zero_copy = self->zero_copy;
  GST_OBJECT_UNLOCK(self);
  // A live receiver copies: ring space it held downstream would hold the sender back.
  // relaxed: see release_ring_ref.
  const uint64_t record = shm::layout::RecordSize(v.len);
  if (!zero_copy || consumer->mode() == shm::layout::kModeLive ||
      st->held_downstream->load(std::memory_order_relaxed) + record > consumer->capacity() / 2) {
    GstBuffer* buf = gst_buffer_new_allocate(nullptr, len, nullptr);
    gst_buffer_fill(buf, 0, body, len);
    consumer->Release(v);
    return buf;
  }
  st->held_downstream->fetch_add(record, std::memory_order_relaxed);
  auto* ref = new RingRef{consumer, st->held_downstream, v, record};
  return gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, const_cast<uint8_t*>(body), len, 0,
                                     len, ref, release_ring_ref);
}

// The pipeline clock's time now (NONE without a clock). Any thread.
static GstClockTime clock_time_now(GstShmringSrc* self) {
  GstClock* clock = gst_element_get_clock(GST_ELEMENT(self));
  if (clock == nullptr) return GST_CLOCK_TIME_NONE;
  const GstClockTime t = gst_clock_get_time(clock);
  gst_object_unref(clock);
  return t;
}

// The running time of clock time `t`; NONE until this element is asked to go to
// PLAYING (a bin sets an element's base time just before that, and does it to
// the sinks first: a non-live stream's second buffer may be created earlier).
// Call with the OBJECT_LOCK held.
static GstClockTime running_time_of_locked(GstShmringSrc* self, GstClockTime t) {
  const GstClockTime base = GST_ELEMENT_CAST(self)->base_time;
  if (GST_STATE_TARGET(self) != GST_STATE_PLAYING || !GST_CLOCK_TIME_IS_VALID(t) || t < base) {
    return GST_CLOCK_TIME_NONE;
  }
  return t - base;
}

static GstClockTime running_time_of(GstShmringSrc* self, GstClockTime t) {
  GST_OBJECT_LOCK(self);
  const GstClockTime rt = running_time_of_locked(self, t);
  GST_OBJECT_UNLOCK(self);
  return rt;
}

// This pipeline's running time now (see running_time_of).
static GstClockTime running_time_now(GstShmringSrc* self) {
  return running_time_of(self, clock_time_now(self));
}

// Segment for the first buffer of a stream: starts at its timestamp, so that
// a receiver joining mid-stream does not wait for the sender's running time.
static void start_segment(GstShmringSrc* self, const Message& m) {
  SrcState* st = self->st;
  GstBaseSrc* bsrc = GST_BASE_SRC(self);
  const shm::framing::Header& h = m.header;
  st->need_segment = false;
  st->ts_shift = 0;
  if (gst_base_src_get_do_timestamp(bsrc)) return;  // this pipeline's times
  GstClockTime ts = GST_CLOCK_TIME_IS_VALID(h.dts) ? h.dts : h.pts;
  if (!GST_CLOCK_TIME_IS_VALID(h.dts) && GST_CLOCK_TIME_IS_VALID(m.ext.negative_dts)) {
    // The DTS is before the sender's running time 0: shift this segment's times so
    // that it is a valid time before the segment start, as upstream of the sender.
    st->ts_shift = m.ext.negative_dts;
    ts = st->ts_shift + (GST_CLOCK_TIME_IS_VALID(h.pts) ? h.pts : 0);
  }
  if (!GST_CLOCK_TIME_IS_VALID(ts)) return;
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.start = ts;
  seg.time = ts;
  seg.position = ts;
  seg.base = st->running_end;  // continue after what was pushed so far
  // Live, or after a gap (reconnect, latest skip): the buffer renders now, not
  // where the previous timeline would put it.
  const bool rebase = st->rebase;
  st->rebase = false;
  if (gst_base_src_is_live(bsrc) || rebase) {
    const GstClockTime now = running_time_now(self);
    if (GST_CLOCK_TIME_IS_VALID(now) && (gst_base_src_is_live(bsrc) || now > seg.base)) {
      seg.base = now;
    }
  }
  GST_DEBUG_OBJECT(self, "new segment %" GST_SEGMENT_FORMAT, &seg);
  gst_base_src_new_segment(bsrc, &seg);
}

// latest=true skipped to this buffer: the sender's spacing from the buffer
// before says nothing about now (the skipped-to buffer would be early and waited
// for, or late). It is due when it reaches the sink: taken now plus the offset
// the sink's QoS reported for earlier buffers (see Pacing). When the sender's
// spacing puts it further than kRebaseTolerance (or half its duration) from
// that, a new segment makes it due then. Before this pipeline plays, or without
// QoS from downstream, the sender's spacing stays. (Not a new segment on every
// skip: a sink resets its QoS state on each segment and sends no QoS for the
// segment's first buffer.)
static void rebase_skip(GstShmringSrc* self, const Message& m, GstClockTime taken_clock) {
  GstBaseSrc* bsrc = GST_BASE_SRC(self);
  if (gst_base_src_get_do_timestamp(bsrc)) return;  // this pipeline's times already
  const shm::framing::Header& h = m.header;
  // The buffer's time as stamp() gives it (shifted like this segment's times).
  GstClockTime ts = GST_CLOCK_TIME_IS_VALID(h.dts) ? h.dts : h.pts;
  if (GST_CLOCK_TIME_IS_VALID(ts)) ts += self->st->ts_shift;
  const GstClockTime taken_at = running_time_of(self, taken_clock);
  if (!GST_CLOCK_TIME_IS_VALID(ts) || !GST_CLOCK_TIME_IS_VALID(taken_at)) return;
  GST_OBJECT_LOCK(self);
  const bool known = self->st->pacing.due_offset_known;
  const GstClockTimeDiff offset = self->st->pacing.due_offset;
  GST_OBJECT_UNLOCK(self);
  if (!known) {
    GST_LOG_OBJECT(self, "skip keeps the sender's spacing (no QoS from downstream yet)");
    return;
  }
  const GstClockTimeDiff due = static_cast<GstClockTimeDiff>(taken_at) + offset;
  GstClockTimeDiff tolerance = kRebaseTolerance;
  if (GST_CLOCK_TIME_IS_VALID(h.duration)) {
    tolerance = std::min(tolerance, static_cast<GstClockTimeDiff>(h.duration / 2));
  }
  GST_OBJECT_LOCK(self);
  const guint64 spaced = gst_segment_to_running_time(&bsrc->segment, GST_FORMAT_TIME, ts);
  GST_OBJECT_UNLOCK(self);
  if (GST_CLOCK_TIME_IS_VALID(spaced) &&
      std::abs(static_cast<GstClockTimeDiff>(spaced) - due) <= tolerance) {
    return;  // the sender's spacing is on time
  }
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.start = ts;
  seg.time = ts;
  seg.position = ts;
  seg.base = due > 0 ? static_cast<GstClockTime>(due) : 0;
  GST_DEBUG_OBJECT(self, "skipped ahead: new segment %" GST_SEGMENT_FORMAT, &seg);
  gst_base_src_new_segment(bsrc, &seg);
}

// latest=true: remembers when `buf` was taken from the ring, for its QoS event.
static void remember_taken(GstShmringSrc* self, GstBuffer* buf, GstClockTime taken_clock) {
  if (!GST_CLOCK_TIME_IS_VALID(taken_clock)) return;
  const GstClockTime t = GST_BUFFER_PTS_IS_VALID(buf) ? GST_BUFFER_PTS(buf) : GST_BUFFER_DTS(buf);
  if (!GST_CLOCK_TIME_IS_VALID(t)) return;
  GST_OBJECT_LOCK(self);
  const guint64 rt = gst_segment_to_running_time(&GST_BASE_SRC(self)->segment, GST_FORMAT_TIME, t);
  Pacing& pacing = self->st->pacing;
  if (GST_CLOCK_TIME_IS_VALID(rt)) {
    pacing.taken.push_back(Pacing::Taken{rt, taken_clock});
    if (pacing.taken.size() > Pacing::kRemembered) pacing.taken.pop_front();
  }
  GST_OBJECT_UNLOCK(self);
}

// A QoS event from the sink about the buffer of running time `ts`: it reached
// the sink `jitter` after it was due (negative: before). Any thread.
static void note_qos(GstShmringSrc* self, GstClockTime ts, GstClockTimeDiff jitter) {
  if (!GST_CLOCK_TIME_IS_VALID(ts)) return;
  GST_OBJECT_LOCK(self);
  Pacing& pacing = self->st->pacing;
  for (auto it = pacing.taken.rbegin(); it != pacing.taken.rend(); ++it) {
    if (it->running_time == ts) {
      const GstClockTime taken = running_time_of_locked(self, it->taken_at);
      if (!GST_CLOCK_TIME_IS_VALID(taken)) break;
      pacing.due_offset =
          static_cast<GstClockTimeDiff>(ts) + jitter - static_cast<GstClockTimeDiff>(taken);
      pacing.due_offset_known = true;
      GST_LOG_OBJECT(self, "QoS: due %" GST_STIME_FORMAT " after being taken",
                     GST_STIME_ARGS(pacing.due_offset));
      break;
    }
  }
  GST_OBJECT_UNLOCK(self);
}

// The metas the sender carried in header extensions.
static void add_metas(GstBuffer* buf, const shm::framing::Extensions& x) {
  if (x.has_audio_clipping) {
    gst_buffer_add_audio_clipping_meta(buf, static_cast<GstFormat>(x.audio_clipping.format),
                                       x.audio_clipping.start, x.audio_clipping.end);
  }
  if (x.has_video_meta) {
    const shm::framing::VideoMeta& v = x.video_meta;
    gsize offset[GST_VIDEO_MAX_PLANES] = {};
    gint stride[GST_VIDEO_MAX_PLANES] = {};
    for (guint i = 0; i < v.n_planes && i < GST_VIDEO_MAX_PLANES; ++i) {
      offset[i] = static_cast<gsize>(v.offset[i]);
      stride[i] = v.stride[i];
    }
    gst_buffer_add_video_meta_full(buf, static_cast<GstVideoFrameFlags>(v.flags),
                                   static_cast<GstVideoFormat>(v.format), v.width, v.height,
                                   v.n_planes, offset, stride);
  }
  for (const shm::framing::ReferenceTimestamp& r : x.reference_timestamps) {
    GstCaps* ref = gst_caps_from_string(r.reference.c_str());
    if (ref == nullptr) continue;
    gst_buffer_add_reference_timestamp_meta(buf, ref, r.timestamp, r.duration);
    gst_caps_unref(ref);
  }
}

static void stamp(GstShmringSrc* self, GstBuffer* buf, const Message& m) {
  SrcState* st = self->st;
  const shm::framing::Header& h = m.header;
  if (!gst_base_src_get_do_timestamp(GST_BASE_SRC(self))) {
    const GstClockTime shift = st->ts_shift;
    GST_BUFFER_PTS(buf) = GST_CLOCK_TIME_IS_VALID(h.pts) ? h.pts + shift : h.pts;
    GST_BUFFER_DTS(buf) = GST_CLOCK_TIME_IS_VALID(h.dts) ? h.dts + shift : h.dts;
    const GstClockTime before = m.ext.negative_dts;
    if (!GST_CLOCK_TIME_IS_VALID(h.dts) && GST_CLOCK_TIME_IS_VALID(before)) {
      if (before <= shift) {
        GST_BUFFER_DTS(buf) = shift - before;
      } else {
        GST_DEBUG_OBJECT(self, "DTS %" GST_STIME_FORMAT " is before this segment's times: none",
                         GST_STIME_ARGS(-static_cast<GstClockTimeDiff>(before)));
      }
    }
  }
  add_metas(buf, m.ext);
  GST_BUFFER_DURATION(buf) = h.duration;
  if (GST_CLOCK_TIME_IS_VALID(h.duration)) {
    GST_OBJECT_LOCK(self);
    self->last_duration = h.duration;
    GST_OBJECT_UNLOCK(self);
  }
  GST_BUFFER_OFFSET(buf) = h.offset;
  GST_BUFFER_OFFSET_END(buf) = h.offset_end;
  GST_BUFFER_FLAG_SET(buf, h.flags & kCarriedFlags);
  // A gap the sender made (it dropped buffers: wait-for-space=false) arrives as
  // the DISCONT flag of the buffer after it, carried above. (The header's dropped
  // counter says how many, not where: it rises before the reader reaches the gap.)
  note_ring_skips(self, m.view.end);
  if (st->discont) {
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
    st->discont = false;
  }
  // Remember where this stream's running time got to (for a reconnect).
  GstClockTime end = GST_BUFFER_PTS_IS_VALID(buf) ? GST_BUFFER_PTS(buf) : GST_BUFFER_DTS(buf);
  if (GST_CLOCK_TIME_IS_VALID(end)) {
    if (GST_BUFFER_DURATION_IS_VALID(buf)) end += GST_BUFFER_DURATION(buf);
    GST_OBJECT_LOCK(self);
    const guint64 rt =
        gst_segment_to_running_time(&GST_BASE_SRC(self)->segment, GST_FORMAT_TIME, end);
    GST_OBJECT_UNLOCK(self);
    if (GST_CLOCK_TIME_IS_VALID(rt)) st->running_end = std::max(st->running_end, rt);
  }
}

// A status other than kOk from the ring. SHMRING_FLOW_RECONNECTED: the consumer
// was dropped to wait for a restarted sender; go on.
static GstFlowReturn handle_status(GstShmringSrc* self, shm::Status s) {
  SrcState* st = self->st;
  const std::string name = st->consumer->name();
  const guint32 pid = st->consumer->producer_pid();
  GST_OBJECT_LOCK(self);
  const gboolean reconnect = self->reconnect;
  GST_OBJECT_UNLOCK(self);
  switch (s) {
    case shm::Status::kInterrupted:
      GST_DEBUG_OBJECT(self, "interrupted (flushing)");
      return GST_FLOW_FLUSHING;
    case shm::Status::kClosed:
      if (st->consumer->HandedOver()) {
        // The sender moved the stream to a new ring under the same name (a larger
        // one for larger frames, ShmProducer::ReleaseName) after everything in this
        // one, which we have read: the stream goes on there, same segment and times.
        GST_INFO_OBJECT(self, "ring '%s' was handed over to a new ring: following the stream",
                        name.c_str());
        st->consumer->Detach();
        st->consumer.reset();  // unmaps once no buffer holds it
        st->held_downstream.reset();
        st->lookahead.clear();
        st->following = true;
        return SHMRING_FLOW_RECONNECTED;
      }
      if (st->consumer->profile() == shm::layout::kProfileGstFraming) {
        // shmringsink writes an EOS record before CLOSED at a real end of stream
        // (create returns EOS there): CLOSED alone means the sender stopped early.
        GST_ELEMENT_ERROR(self, STREAM, FAILED,
                          ("The sender of ring '%s' stopped without ending the stream: the "
                           "stream was cut short.",
                           name.c_str()),
                          ("ring CLOSED without an end-of-stream record (sender error or "
                           "stop before EOS; producer pid %u)",
                           pid));
        return GST_FLOW_ERROR;
      }
      GST_INFO_OBJECT(self, "ring '%s' closed by its producer: end of stream", name.c_str());
      return GST_FLOW_EOS;
    case shm::Status::kPeerDead:
    case shm::Status::kReplaced:
      if (reconnect) {
        GST_WARNING_OBJECT(self, "producer of ring '%s' %s; waiting for a new one", name.c_str(),
                           s == shm::Status::kPeerDead ? "died" : "re-created the ring");
        st->consumer->Detach();
        st->consumer.reset();  // unmaps once no buffer holds it
        st->held_downstream.reset();
        st->lookahead.clear();
        st->need_segment = true;
        st->rebase = true;  // the new stream renders now, not after the old one's end
        st->discont = true;
        return SHMRING_FLOW_RECONNECTED;
      }
      if (s == shm::Status::kPeerDead) {
        GST_ELEMENT_ERROR(self, RESOURCE, READ,
                          ("The sender of ring '%s' died without ending the stream.", name.c_str()),
                          ("producer pid %u is gone and the ring is not CLOSED; set "
                           "reconnect=true to wait for a restarted sender",
                           pid));
      } else {
        GST_ELEMENT_ERROR(self, RESOURCE, READ,
                          ("Ring '%s' was re-created by another sender.", name.c_str()),
                          ("the name now holds a new generation; set reconnect=true to "
                           "follow it"));
      }
      return GST_FLOW_ERROR;
    case shm::Status::kCorrupt:
      GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Ring '%s' holds a corrupt record.", name.c_str()),
                        ("%s", st->consumer->error().c_str()));
      return GST_FLOW_ERROR;
    default:
      GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not read ring '%s'.", name.c_str()),
                        ("status %s", shm::StatusName(s)));
      return GST_FLOW_ERROR;
  }
}

// A live ring's data record `v` that was already there when we attached, or (for
// encoded streams) a delta unit before the first key frame: not to be pushed.
// Counts it as skipped.
static bool skip_stale(GstShmringSrc* self, const shm::MessageView& v, guint32 flags) {
  SrcState* st = self->st;
  if (st->skip_backlog) {
    // Ring indices run freely; a record's end at or before backlog_end is older.
    if (static_cast<int32_t>(st->backlog_end - v.end) >= 0) {
      count_skipped(self, 1);
      return true;
    }
    st->skip_backlog = false;
  }
  if (st->need_keyframe) {
    if (flags & GST_BUFFER_FLAG_DELTA_UNIT) {
      count_skipped(self, 1);
      return true;
    }
    st->need_keyframe = false;
    st->discont = true;  // the first buffer of what this receiver gets
  }
  return false;
}

// ---- vfuncs, in the order GStreamer calls them ----------------------------------

static gboolean gst_shmring_src_start(GstBaseSrc* bsrc) {
  GstShmringSrc* self = GST_SHMRING_SRC(bsrc);
  GST_OBJECT_LOCK(self);
  self->skipped = 0;
  self->frame_latency = GST_CLOCK_TIME_NONE;
  self->last_duration = GST_CLOCK_TIME_NONE;
  self->st->pacing.Reset();
  GST_OBJECT_UNLOCK(self);
  self->st->Reset();
  // One look now, so that a ring we can never read (another receiver, no
  // permission, not a ring) fails the state change here. A ring that is not
  // there yet is waited for in create, where unlock can interrupt the wait.
  const std::string name = ring_name(self);
  if (name.empty()) return FALSE;
  return attach(self, name, 0) != Attach::kError;
}

// Live: latency is one frame (the sender delivers a frame once it is complete),
// from the caps' framerate, else the last buffer's duration, else 0; no maximum.
static gboolean gst_shmring_src_query(GstBaseSrc* bsrc, GstQuery* query) {
  GstShmringSrc* self = GST_SHMRING_SRC(bsrc);
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY && gst_base_src_is_live(bsrc)) {
    GST_OBJECT_LOCK(self);
    GstClockTime min = self->frame_latency;
    if (!GST_CLOCK_TIME_IS_VALID(min)) min = self->last_duration;
    GST_OBJECT_UNLOCK(self);
    if (!GST_CLOCK_TIME_IS_VALID(min)) min = 0;
    GST_DEBUG_OBJECT(self, "latency: live, min %" GST_TIME_FORMAT, GST_TIME_ARGS(min));
    gst_query_set_latency(query, TRUE, min, GST_CLOCK_TIME_NONE);
    return TRUE;
  }
  return GST_BASE_SRC_CLASS(parent_class)->query(bsrc, query);
}

static gboolean gst_shmring_src_is_seekable(GstBaseSrc*) { return FALSE; }

// Upstream events: QoS from the sink paces latest=true (see Pacing).
static gboolean gst_shmring_src_event(GstBaseSrc* bsrc, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_QOS) {
    GstQOSType type;
    gdouble proportion;
    GstClockTimeDiff jitter;
    GstClockTime ts;
    gst_event_parse_qos(event, &type, &proportion, &jitter, &ts);
    note_qos(GST_SHMRING_SRC(bsrc), ts, jitter);
  }
  return GST_BASE_SRC_CLASS(parent_class)->event(bsrc, event);
}

static GstCaps* gst_shmring_src_get_caps(GstBaseSrc* bsrc, GstCaps* filter) {
  GstShmringSrc* self = GST_SHMRING_SRC(bsrc);
  GstCaps* caps = gst_pad_get_current_caps(GST_BASE_SRC_PAD(bsrc));
  if (caps == nullptr) {
    GST_OBJECT_LOCK(self);
    if (self->caps != nullptr) caps = gst_caps_ref(self->caps);
    GST_OBJECT_UNLOCK(self);
  }
  if (caps == nullptr) caps = gst_pad_get_pad_template_caps(GST_BASE_SRC_PAD(bsrc));
  if (filter != nullptr) {
    GstCaps* both = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref(caps);
    caps = both;
  }
  return caps;
}

static GstFlowReturn gst_shmring_src_create(GstPushSrc* psrc, GstBuffer** outbuf) {
  GstShmringSrc* self = GST_SHMRING_SRC(psrc);
  SrcState* st = self->st;
  for (;;) {
    if (!st->consumer) {
      const GstFlowReturn ret = open_ring(self);
      if (ret != GST_FLOW_OK) return ret;
    }
    shm::MessageView v;
    const shm::Status s = next_view(self, &v);
    if (s != shm::Status::kOk) {
      const GstFlowReturn ret = handle_status(self, s);
      if (ret == SHMRING_FLOW_RECONNECTED) continue;
      return ret;
    }
    note_ring_skips(self, v.end);  // also when the skip lands on a CAPS or EOS record

    if (st->consumer->profile() == shm::layout::kProfileOpaque) {
      // Opaque bytes: caps from the property, times from this pipeline if asked.
      if (skip_stale(self, v, 0)) {
        st->consumer->Release(v);
        continue;
      }
      const GstFlowReturn ret = ensure_caps(self);
      if (ret != GST_FLOW_OK) {
        st->consumer->Release(v);
        if (ret == SHMRING_FLOW_SKIP) continue;
        return ret;
      }
      *outbuf = make_buffer(self, v, v.data, v.len);
      return GST_FLOW_OK;
    }

    Message m;
    if (!decode(self, v, &m)) return GST_FLOW_ERROR;
    switch (m.header.kind) {
      case shm::framing::Kind::kCaps: {
        const bool ok = take_caps(self, m);
        st->consumer->Release(v);
        if (!ok) return GST_FLOW_ERROR;
        continue;
      }
      case shm::framing::Kind::kEos:
        st->consumer->Release(v);
        GST_INFO_OBJECT(self, "end-of-stream record");
        return GST_FLOW_EOS;
      case shm::framing::Kind::kBuffer:
        if (skip_stale(self, v, m.header.flags)) {
          st->consumer->Release(v);
          continue;
        }
        break;
      default:
        GST_LOG_OBJECT(self, "skipping message of unknown kind %u",
                       static_cast<unsigned>(m.header.kind));
        st->consumer->Release(v);
        continue;
    }

    GST_OBJECT_LOCK(self);
    const gboolean latest = self->latest;
    GST_OBJECT_UNLOCK(self);
    if (latest) {
      if (!skip_to_latest(self, &m)) return GST_FLOW_ERROR;
      note_ring_skips(self, m.view.end);  // lapped while looking ahead: caps before ensure_caps
    }
    const GstClockTime taken_clock = latest ? clock_time_now(self) : GST_CLOCK_TIME_NONE;

    const GstFlowReturn ret = ensure_caps(self);
    if (ret != GST_FLOW_OK) {
      st->consumer->Release(m.view);
      if (ret == SHMRING_FLOW_SKIP) continue;
      return ret;
    }
    if (st->need_segment) {
      start_segment(self, m);
    } else if (st->skipped_ahead) {
      rebase_skip(self, m, taken_clock);
    }
    st->skipped_ahead = false;
    GstBuffer* buf = make_buffer(self, m.view, m.body, m.body_len);
    stamp(self, buf, m);
    remember_taken(self, buf, taken_clock);
    GST_LOG_OBJECT(self, "buffer %" GST_PTR_FORMAT, buf);
    *outbuf = buf;
    return GST_FLOW_OK;
  }
}

// unlock/unlock_stop only fire and clear the interrupter that every wait of the
// consumer (the wait for the ring included) listens to.
static gboolean gst_shmring_src_unlock(GstBaseSrc* bsrc) {
  GST_SHMRING_SRC(bsrc)->st->interrupter.Interrupt();
  return TRUE;
}

static gboolean gst_shmring_src_unlock_stop(GstBaseSrc* bsrc) {
  GST_SHMRING_SRC(bsrc)->st->interrupter.Clear();
  return TRUE;
}

// Detaches at once (a new receiver may attach); buffers still downstream keep
// the mapping alive but no longer move the tail.
static gboolean gst_shmring_src_stop(GstBaseSrc* bsrc) {
  GST_SHMRING_SRC(bsrc)->st->Reset();
  return TRUE;
}
