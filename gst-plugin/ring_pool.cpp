// The ring-backed allocator and buffer pool of shmringsink (see ring_pool.h).
//
// GstShmringAllocator makes one GstMemory per reservation: its bytes are the
// message body inside the ring (after the kHeaderSize bytes of profile-1 header),
// it cannot be shared (GST_MEMORY_FLAG_NO_SHARE: sub-buffers copy), and freeing it
// finishes the reservation (Abandon when it was never published, Unkeep when it
// was). GstShmringPool hands out buffers holding one such memory; buffers are not
// recycled (every acquire needs a new place in the ring), only their reservations.

#include "ring_pool.h"

#include <gst/video/video.h>

#include <atomic>
#include <utility>

#include "shm/framing.hpp"
#include "shm/layout.hpp"

GST_DEBUG_CATEGORY_STATIC(shmring_pool_debug);
#define GST_CAT_DEFAULT shmring_pool_debug

namespace {

constexpr const char* kMemType = "ShmringRingMemory";
// With a receiver attached and wait-for-space, how long one wait for room lasts
// before the pool looks again whether waiting still makes sense.
constexpr gint64 kAcquireSliceNs = 100 * GST_MSECOND;

struct RingMemory {
  GstMemory mem;  // first: GStreamer sees a GstMemory
  std::shared_ptr<shm::ShmProducer> producer;
  shm::Reservation res;
  std::atomic<bool> published{false};
};

}  // namespace

// ---- the allocator ---------------------------------------------------------------

G_BEGIN_DECLS
#define GST_TYPE_SHMRING_ALLOCATOR (gst_shmring_allocator_get_type())
G_DECLARE_FINAL_TYPE(GstShmringAllocator, gst_shmring_allocator, GST, SHMRING_ALLOCATOR,
                     GstAllocator)
G_END_DECLS

struct _GstShmringAllocator {
  GstAllocator parent;
};

G_DEFINE_TYPE(GstShmringAllocator, gst_shmring_allocator, GST_TYPE_ALLOCATOR);

// Plain allocations (someone calling gst_allocator_alloc on us) are system memory:
// only the pool makes ring memory.
static GstMemory* ring_alloc(GstAllocator*, gsize size, GstAllocationParams* params) {
  return gst_allocator_alloc(nullptr, size, params);
}

static void ring_free(GstAllocator*, GstMemory* gmem) {
  auto* m = reinterpret_cast<RingMemory*>(gmem);
  if (m->published.load(std::memory_order_acquire)) {
    m->producer->Unkeep(m->res);
  } else if (m->producer->Retract(m->res)) {
    // The newest reservation (a flushed or dropped buffer, the last one acquired):
    // the next buffer gets its place, no PAD record (see ByteRingBuffer::Retract).
    GST_LOG("ring buffer at index %u freed unsent: place taken back", m->res.start);
  } else {
    GST_LOG("ring buffer at index %u freed unsent: PAD record", m->res.start);
    m->producer->Abandon(m->res);
  }
  delete m;
}

static gpointer ring_map(GstMemory* gmem, gsize, GstMapFlags) {
  auto* m = reinterpret_cast<RingMemory*>(gmem);
  return m->res.payload + shm::framing::kHeaderSize;
}

static void ring_unmap(GstMemory*) {}

static GstMemory* ring_share(GstMemory*, gssize, gssize) { return nullptr; }  // NO_SHARE

static void gst_shmring_allocator_class_init(GstShmringAllocatorClass* klass) {
  GstAllocatorClass* ac = GST_ALLOCATOR_CLASS(klass);
  ac->alloc = ring_alloc;
  ac->free = ring_free;
}

static void gst_shmring_allocator_init(GstShmringAllocator* self) {
  GstAllocator* a = GST_ALLOCATOR(self);
  a->mem_type = kMemType;
  a->mem_map = ring_map;
  a->mem_unmap = ring_unmap;
  a->mem_share = ring_share;
  GST_OBJECT_FLAG_SET(self, GST_ALLOCATOR_FLAG_CUSTOM_ALLOC);
}

// ---- the pool --------------------------------------------------------------------

namespace {
struct PoolState {
  std::shared_ptr<shm::ShmProducer> producer;
  GstAllocator* allocator = nullptr;
  guint size = 0;
  std::function<bool()> wait_for_space;
  shm::Interrupter interrupter;  // flush_start wakes a waiting acquire
};
}  // namespace

G_BEGIN_DECLS
#define GST_TYPE_SHMRING_POOL (gst_shmring_pool_get_type())
G_DECLARE_FINAL_TYPE(GstShmringPool, gst_shmring_pool, GST, SHMRING_POOL, GstBufferPool)
G_END_DECLS

struct _GstShmringPool {
  GstBufferPool parent;
  PoolState* st;
};

G_DEFINE_TYPE(GstShmringPool, gst_shmring_pool, GST_TYPE_BUFFER_POOL);

static gboolean pool_set_config(GstBufferPool* pool, GstStructure* config) {
  GstShmringPool* self = GST_SHMRING_POOL(pool);
  GstCaps* caps = nullptr;
  guint size = 0, min = 0, max = 0;
  if (!gst_buffer_pool_config_get_params(config, &caps, &size, &min, &max) || size == 0) {
    GST_WARNING_OBJECT(pool, "invalid config (no size)");
    return FALSE;
  }
  self->st->size = size;
  GST_DEBUG_OBJECT(pool, "buffers of %u bytes (min %u, max %u)", size, min, max);
  return GST_BUFFER_POOL_CLASS(gst_shmring_pool_parent_class)->set_config(pool, config);
}

// Shells for the base class's preallocation; acquire never takes them.
static GstFlowReturn pool_alloc_buffer(GstBufferPool*, GstBuffer** buffer,
                                       GstBufferPoolAcquireParams*) {
  *buffer = gst_buffer_new();
  return GST_FLOW_OK;
}

// Waiting for room helps only while a receiver is attached and reading: not when
// the ring holds nothing unread (everything in it is in flight) or the room is
// held by buffers kept upstream (the waiting thread may be the one keeping them).
static bool worth_waiting(shm::ShmProducer* producer, uint32_t len) {
  // Every receiver slot that holds the sender back counts (several receivers).
  return producer->ConsumerAttached() && producer->WaitingHelps(len);
}

static GstFlowReturn pool_acquire_buffer(GstBufferPool* pool, GstBuffer** buffer,
                                         GstBufferPoolAcquireParams*) {
  GstShmringPool* self = GST_SHMRING_POOL(pool);
  PoolState* st = self->st;
  if (GST_BUFFER_POOL_IS_FLUSHING(pool)) return GST_FLOW_FLUSHING;
  const guint64 len64 = guint64{shm::framing::kHeaderSize} + st->size;
  shm::Reservation res;
  shm::Status s = shm::Status::kTooLarge;
  if (len64 <= st->producer->MaxMessageSize()) {
    const auto len = static_cast<uint32_t>(len64);
    // Painted in place by the buffer's producer upstream (shm::FillHint).
    s = st->producer->ReserveNext(len, &res, 0, &st->interrupter, shm::FillHint::kInPlace);
    while ((s == shm::Status::kFull || s == shm::Status::kTimeout) && st->wait_for_space() &&
           worth_waiting(st->producer.get(), len)) {
      s = st->producer->ReserveNext(len, &res, kAcquireSliceNs, &st->interrupter,
                                    shm::FillHint::kInPlace);
    }
  }
  if (s == shm::Status::kInterrupted) return GST_FLOW_FLUSHING;
  if (s != shm::Status::kOk) {
    // The sink copies (or drops) this one like any buffer from elsewhere.
    GST_LOG_OBJECT(pool, "ring has no room (%s): a system-memory buffer", shm::StatusName(s));
    *buffer = gst_buffer_new_allocate(nullptr, st->size, nullptr);
    return *buffer != nullptr ? GST_FLOW_OK : GST_FLOW_ERROR;
  }
  auto* m = new RingMemory();
  m->producer = st->producer;
  m->res = res;
  gst_memory_init(&m->mem, GST_MEMORY_FLAG_NO_SHARE, st->allocator, nullptr, st->size, 0, 0,
                  st->size);
  *buffer = gst_buffer_new();
  gst_buffer_append_memory(*buffer, &m->mem);
  return GST_FLOW_OK;
}

// Buffers are not recycled: their memory (the reservation) is finished when it is
// freed, and the next acquire reserves anew.
static void pool_reset_buffer(GstBufferPool*, GstBuffer*) {}

static void pool_release_buffer(GstBufferPool*, GstBuffer* buffer) { gst_buffer_unref(buffer); }

static void pool_flush_start(GstBufferPool* pool) {
  GST_SHMRING_POOL(pool)->st->interrupter.Interrupt();
}

static void pool_flush_stop(GstBufferPool* pool) {
  GST_SHMRING_POOL(pool)->st->interrupter.Clear();
}

static const gchar** pool_get_options(GstBufferPool*) {
  static const gchar* options[] = {nullptr};
  return options;
}

static void pool_finalize(GObject* object) {
  GstShmringPool* self = GST_SHMRING_POOL(object);
  if (self->st->allocator != nullptr) gst_object_unref(self->st->allocator);
  delete self->st;
  G_OBJECT_CLASS(gst_shmring_pool_parent_class)->finalize(object);
}

static void gst_shmring_pool_class_init(GstShmringPoolClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstBufferPoolClass* pc = GST_BUFFER_POOL_CLASS(klass);
  gobject_class->finalize = pool_finalize;
  pc->get_options = pool_get_options;
  pc->set_config = pool_set_config;
  pc->alloc_buffer = pool_alloc_buffer;
  pc->acquire_buffer = pool_acquire_buffer;
  pc->reset_buffer = pool_reset_buffer;
  pc->release_buffer = pool_release_buffer;
  pc->flush_start = pool_flush_start;
  pc->flush_stop = pool_flush_stop;
  GST_DEBUG_CATEGORY_INIT(shmring_pool_debug, "shmringpool", 0, "shmringsink's ring buffer pool");
}

static void gst_shmring_pool_init(GstShmringPool* self) { self->st = new PoolState(); }

// ---- the API the sink uses ---------------------------------------------------------

namespace shmring {

uint64_t RecordBytesFor(uint64_t size) {
  return (uint64_t{shm::layout::kLenSize} + shm::framing::kHeaderSize + size + 7) & ~uint64_t{7};
}

uint32_t AutoCapacity(GstCaps* caps) {
  GstVideoInfo info;
  if (caps == nullptr || !gst_caps_is_fixed(caps) || !gst_video_info_from_caps(&info, caps) ||
      info.size == 0) {
    return kAutoFallbackCapacity;
  }
  const uint64_t want = kAutoFrames * RecordBytesFor(info.size) + 4096;  // + caps record
  uint64_t c = kAutoMinCapacity;
  while (c < want && c < kAutoMaxCapacity) c <<= 1;
  return static_cast<uint32_t>(c);
}

guint RingPoolMaxBuffers(uint32_t capacity, guint size) {
  const uint64_t record = RecordBytesFor(size);
  // A record never straddles the end, so a lap holds floor(capacity / record).
  const uint64_t fit = capacity / record;
  return fit <= 1 ? static_cast<guint>(fit) : static_cast<guint>(fit - 1);
}

GstBufferPool* RingPoolNew(std::shared_ptr<shm::ShmProducer> producer, GstCaps* caps, guint size,
                           std::function<bool()> wait_for_space) {
  auto* self = static_cast<GstShmringPool*>(g_object_new(GST_TYPE_SHMRING_POOL, nullptr));
  gst_object_ref_sink(self);
  self->st->producer = std::move(producer);
  self->st->allocator =
      static_cast<GstAllocator*>(g_object_new(GST_TYPE_SHMRING_ALLOCATOR, nullptr));
  gst_object_ref_sink(self->st->allocator);
  self->st->wait_for_space = std::move(wait_for_space);
  GstBufferPool* pool = GST_BUFFER_POOL(self);
  GstStructure* config = gst_buffer_pool_get_config(pool);
  const guint max = RingPoolMaxBuffers(self->st->producer->capacity(), size);
  gst_buffer_pool_config_set_params(config, caps, size, 0, max);
  gst_buffer_pool_config_set_allocator(config, self->st->allocator, nullptr);
  if (!gst_buffer_pool_set_config(pool, config)) {
    gst_object_unref(pool);
    return nullptr;
  }
  return pool;
}

static RingMemory* ring_memory_of(GstBuffer* buffer) {
  if (gst_buffer_n_memory(buffer) != 1) return nullptr;
  GstMemory* mem = gst_buffer_peek_memory(buffer, 0);
  if (mem == nullptr || mem->allocator == nullptr || !GST_IS_SHMRING_ALLOCATOR(mem->allocator)) {
    return nullptr;
  }
  return reinterpret_cast<RingMemory*>(mem);
}

bool RingPoolIsRingBuffer(GstBuffer* buffer) { return ring_memory_of(buffer) != nullptr; }

bool RingPoolPublishInPlace(GstBuffer* buffer, shm::ShmProducer* producer,
                            const std::function<void(uint8_t* payload)>& encode, bool allowed) {
  RingMemory* m = ring_memory_of(buffer);
  if (m == nullptr || m->producer.get() != producer) return false;
  if (m->published.load(std::memory_order_relaxed)) return false;  // sent before: copy
  // The body must still start where the reservation put it (no offset) and fit.
  if (m->mem.offset != 0 || m->mem.size > m->mem.maxsize) return false;
  if (!allowed || !producer->InOrder(m->res)) {
    // Something was sent after it (a new caps record, say), or the message needs
    // header extensions (metas) the reservation has no room for: the caller copies
    // it. Its own record is given up now (PAD), so the records after it
    // are not held back while the buffer lives on (a sink's last sample); the
    // bytes stay untouched until it is freed.
    GST_LOG("ring buffer at index %u not sent in place (%s): PAD record, copied", m->res.start,
            allowed ? "something was sent after it was reserved" : "metas");
    producer->Abandon(m->res, /*keep=*/true);
    m->published.store(true, std::memory_order_release);  // freed: Unkeep
    return false;
  }
  encode(m->res.payload);
  m->published.store(true, std::memory_order_release);
  producer->Publish(m->res, static_cast<uint32_t>(shm::framing::kHeaderSize + m->mem.size),
                    /*keep=*/true,
                    /*sync=*/!GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT));
  return true;
}

}  // namespace shmring
