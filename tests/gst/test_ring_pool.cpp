// shmringsink's ring-backed buffer pool under GstHarness: propose_allocation offers
// it, its buffers are written into the ring and sent without a copy, a buffer
// dropped unsent becomes a PAD record the receiver never sees, flushing and caps
// changes with buffers in flight, wait-for-space=false without a receiver, buffers
// kept upstream after they were sent or after the sink stopped, reconfiguration, a
// ring grown for larger caps. The same in real two-process pipelines (caps changes,
// a grown ring, a flushing seek, renegotiation): test_zero_copy_pipelines.py.
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache_size.hpp"
#include "gst_test_util.hpp"
#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"

namespace {

using gsttest::UniqueName;

// 64x48 GRAY8: 3072-byte frames.
constexpr const char* kCaps = "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1";
constexpr const char* kCaps2 = "video/x-raw,format=GRAY8,width=32,height=48,framerate=30/1";
constexpr gsize kFrame = 64 * 48;
constexpr const char* kRingMemType = "ShmringRingMemory";

using gsttest::Element;

// A sink whose upstream set kCaps and took the pool the sink offers for them.
struct Sink : gsttest::PooledSink {
  Sink(const std::string& name, const std::string& extra) : PooledSink(name, extra, kCaps) {
    if (pool != nullptr) {
      EXPECT_EQ(size, kFrame);
      EXPECT_GE(max, 1u);
    }
  }
};

bool IsRingMemory(GstBuffer* b) {
  return gst_buffer_n_memory(b) == 1 &&
         gst_memory_is_type(gst_buffer_peek_memory(b, 0), kRingMemType);
}

void Fill(GstBuffer* b, uint8_t salt) {
  const std::vector<uint8_t> bytes = gsttest::Pattern(gst_buffer_get_size(b), salt);
  gst_buffer_fill(b, 0, bytes.data(), bytes.size());
}

guint64 Stat(GstHarness* h, const char* field) {
  GstStructure* s = nullptr;
  g_object_get(Element(h), "stats", &s, nullptr);
  guint64 v = 0;
  EXPECT_TRUE(gst_structure_get_uint64(s, field, &v)) << field;
  gst_structure_free(s);
  return v;
}

struct Msg {
  shm::framing::Kind kind;
  std::string body;
};

// Every message a fresh consumer of ring `name` reads now.
std::vector<Msg> ReadAll(const std::string& name) {
  std::vector<Msg> out;
  for (const std::vector<uint8_t>& m : gsttest::ReadAllMessages(name)) {
    shm::framing::Header hd;
    const uint8_t* body = nullptr;
    uint32_t n = 0;
    const char* err = nullptr;
    EXPECT_TRUE(shm::framing::DecodeMessage(m.data(), static_cast<uint32_t>(m.size()), &hd, &body,
                                            &n, &err))
        << err;
    out.push_back({hd.kind, std::string(reinterpret_cast<const char*>(body), n)});
  }
  return out;
}

// The body of the next message `c` reads, waiting for it ("<status>" when none comes).
std::string NextBody(shm::ShmConsumer& c) {
  std::vector<uint8_t> buf(c.capacity());
  const shm::ReadResult r = c.ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), shm::kForever);
  if (r.status != shm::Status::kOk) return std::string("<") + shm::StatusName(r.status) + ">";
  return std::string(reinterpret_cast<char*>(buf.data()) + shm::framing::kHeaderSize,
                     r.len - shm::framing::kHeaderSize);
}

std::string PatternString(uint8_t salt, gsize n = kFrame) {
  const std::vector<uint8_t> v = gsttest::Pattern(n, salt);
  return std::string(v.begin(), v.end());
}

// Whether `needle` occurs in ring `name`'s data area (published or not).
bool InRingBytes(const std::string& name, const std::string& needle) {
  shm::SharedMemory mem(name, 0, false);
  if (!mem.valid()) return false;
  const auto* data = static_cast<const char*>(mem.data()) + shm::layout::kHeaderSize;
  const std::string area(data, mem.size() - shm::layout::kHeaderSize);
  return area.find(needle) != std::string::npos;
}

TEST(RingPool, OfferedPoolWritesIntoTheRingAndSendsWithoutACopy) {
  const std::string name = UniqueName("gpool-zc");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr) << "propose_allocation must offer a pool for raw video";
  GstBuffer* b = s.Acquire();
  ASSERT_TRUE(IsRingMemory(b));
  Fill(b, 7);
  // The frame's bytes are in the shared segment before the sink ever sees the buffer.
  EXPECT_TRUE(InRingBytes(name, PatternString(7)));
  ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  EXPECT_EQ(Stat(s.h, "in-place"), 1u);
  EXPECT_EQ(Stat(s.h, "copied"), 0u);
  // A buffer from elsewhere is still copied.
  GstBuffer* other = gst_buffer_new_allocate(nullptr, kFrame, nullptr);
  Fill(other, 8);
  ASSERT_EQ(gst_harness_push(s.h, other), GST_FLOW_OK);
  EXPECT_EQ(Stat(s.h, "copied"), 1u);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].kind, shm::framing::Kind::kCaps);
  EXPECT_EQ(msgs[1].kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(msgs[1].body, PatternString(7));
  EXPECT_EQ(msgs[2].body, PatternString(8));
}

TEST(RingPool, DroppedBufferBecomesPadAndTheNextFrameIsIntact) {
  const std::string name = UniqueName("gpool-pad");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr);
  GstBuffer* dropped = s.Acquire();
  GstBuffer* sent = s.Acquire();
  Fill(dropped, 1);
  Fill(sent, 2);
  gst_buffer_unref(dropped);  // never rendered (QoS, say)
  ASSERT_EQ(gst_harness_push(s.h, sent), GST_FLOW_OK);
  EXPECT_EQ(Stat(s.h, "in-place"), 1u);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].kind, shm::framing::Kind::kCaps);
  EXPECT_EQ(msgs[1].body, PatternString(2));
}

// A buffer still open when the stream is flushed is given up (PAD); streaming goes
// on with new buffers; an acquire blocked on a full ring returns FLUSHING.
TEST(RingPool, FlushWithBuffersInFlight) {
  const std::string name = UniqueName("gpool-flush");
  // 16384 bytes: the caps record and 5 records of a 3072-byte frame (3136 bytes each).
  Sink s(name, "capacity=16384");
  ASSERT_NE(s.pool, nullptr);
  shm::ShmConsumer c(name);  // attached, reading nothing yet: the ring fills
  ASSERT_TRUE(c.IsValid()) << c.error();
  GstBuffer* in_flight = s.Acquire();
  ASSERT_TRUE(IsRingMemory(in_flight));
  for (int i = 0; i < 4; ++i) {
    GstBuffer* b = s.Acquire();
    ASSERT_TRUE(IsRingMemory(b));
    Fill(b, static_cast<uint8_t>(10 + i));
    ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);  // published behind in_flight
  }
  // The ring is full now, and a receiver is attached: the next acquire waits.
  GstFlowReturn blocked = GST_FLOW_OK;
  std::thread t([&] {
    GstBuffer* b = nullptr;
    blocked = gst_buffer_pool_acquire_buffer(s.pool, &b, nullptr);
    if (b != nullptr) gst_buffer_unref(b);
  });
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_flush_start()));
  gst_buffer_pool_set_flushing(s.pool, TRUE);  // what upstream does on a flush
  t.join();
  EXPECT_EQ(blocked, GST_FLOW_FLUSHING);
  gst_buffer_unref(in_flight);  // flushed away unsent: PAD
  gst_buffer_pool_set_flushing(s.pool, FALSE);
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_segment(&seg)));
  // The receiver gets everything after the PAD, in order.
  std::vector<uint8_t> buf(c.capacity());
  std::vector<std::string> bodies;
  for (;;) {
    const shm::ReadResult r = c.TryRead(buf.data(), static_cast<uint32_t>(buf.size()));
    if (r.status != shm::Status::kOk) break;
    shm::framing::Header hd;
    const uint8_t* body = nullptr;
    uint32_t n = 0;
    const char* err = nullptr;
    ASSERT_TRUE(shm::framing::DecodeMessage(buf.data(), r.len, &hd, &body, &n, &err)) << err;
    if (hd.kind == shm::framing::Kind::kBuffer) {
      bodies.emplace_back(reinterpret_cast<const char*>(body), n);
    }
  }
  ASSERT_EQ(bodies.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(bodies[i], PatternString(static_cast<uint8_t>(10 + i)));
  GstBuffer* after = s.Acquire();
  EXPECT_TRUE(IsRingMemory(after));
  Fill(after, 20);
  ASSERT_EQ(gst_harness_push(s.h, after), GST_FLOW_OK);
  EXPECT_EQ(NextBody(c), PatternString(20));
}

// A buffer acquired under the old caps and sent after the caps changed must come
// after the new CAPS record: it is copied there, and its reservation becomes PAD.
TEST(RingPool, CapsChangeWithBuffersInFlight) {
  const std::string name = UniqueName("gpool-caps");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr);
  GstBuffer* old_caps = s.Acquire();
  Fill(old_caps, 3);
  gst_harness_set_src_caps_str(s.h, kCaps2);
  GstCaps* caps2 = gst_caps_from_string(kCaps2);
  GstQuery* q = gst_query_new_allocation(caps2, TRUE);  // renegotiation: CAPS record now
  gst_caps_unref(caps2);
  gst_pad_peer_query(s.h->srcpad, q);
  gst_query_unref(q);
  ASSERT_EQ(gst_harness_push(s.h, old_caps), GST_FLOW_OK);
  EXPECT_EQ(Stat(s.h, "in-place"), 0u);
  EXPECT_EQ(Stat(s.h, "copied"), 1u);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].kind, shm::framing::Kind::kCaps);
  EXPECT_EQ(msgs[1].kind, shm::framing::Kind::kCaps);
  EXPECT_NE(msgs[1].body.find("width=(int)32"), std::string::npos) << msgs[1].body;
  EXPECT_EQ(msgs[2].kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(msgs[2].body, PatternString(3));
}

// wait-for-space=false without a receiver: acquire never blocks; once the ring is
// full it hands out system memory, which the sink drops and counts as before.
TEST(RingPool, NoWaitWithoutReceiverFallsBackToSystemMemory) {
  const std::string name = UniqueName("gpool-nowait");
  Sink s(name, "capacity=16384 wait-for-space=false");
  ASSERT_NE(s.pool, nullptr);
  int ring_buffers = 0, system_buffers = 0;
  for (int i = 0; i < 12; ++i) {
    GstBuffer* b = s.Acquire();
    ASSERT_NE(b, nullptr);
    (IsRingMemory(b) ? ring_buffers : system_buffers)++;
    Fill(b, static_cast<uint8_t>(i));
    ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  }
  EXPECT_GE(ring_buffers, 1);
  EXPECT_GE(system_buffers, 1);
  guint64 dropped = 0;
  g_object_get(Element(s.h), "dropped", &dropped, nullptr);
  EXPECT_EQ(dropped, static_cast<guint64>(system_buffers));
  // What is in the ring is the first frames, intact.
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_EQ(msgs.size(), 1u + ring_buffers);
  for (int i = 0; i < ring_buffers; ++i) {
    EXPECT_EQ(msgs[1 + i].body, PatternString(static_cast<uint8_t>(i)));
  }
}

// A buffer upstream keeps after it was sent (videorate's previous frame, say) is
// never overwritten: once the ring has gone round to it, new frames get system
// memory (here dropped: wait-for-space=false) until it is freed.
TEST(RingPool, BufferKeptAfterSendingIsNotOverwritten) {
  const std::string name = UniqueName("gpool-kept");
  // 16384 bytes hold 5 records of a 3072-byte frame (3136 bytes each).
  Sink s(name, "capacity=16384 wait-for-space=false");
  ASSERT_NE(s.pool, nullptr);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  std::vector<uint8_t> buf(c.capacity());
  auto drain = [&] {
    int n = 0;
    while (c.TryRead(buf.data(), static_cast<uint32_t>(buf.size())).status == shm::Status::kOk) {
      ++n;
    }
    return n;
  };
  GstBuffer* kept = s.Acquire();
  Fill(kept, 42);
  ASSERT_EQ(gst_harness_push(s.h, gst_buffer_ref(kept)), GST_FLOW_OK);
  for (int i = 0; i < 4; ++i) {  // the rest of the lap
    drain();
    GstBuffer* b = s.Acquire();
    EXPECT_TRUE(IsRingMemory(b)) << i;
    Fill(b, static_cast<uint8_t>(100 + i));
    ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  }
  drain();
  // The next frame would go where the kept one is.
  GstBuffer* next = s.Acquire();
  EXPECT_FALSE(IsRingMemory(next));
  Fill(next, 7);
  ASSERT_EQ(gst_harness_push(s.h, next), GST_FLOW_OK);
  guint64 dropped = 0;
  g_object_get(Element(s.h), "dropped", &dropped, nullptr);
  EXPECT_EQ(dropped, 1u);
  GstMapInfo map;
  ASSERT_TRUE(gst_buffer_map(kept, &map, GST_MAP_READ));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(map.data), map.size), PatternString(42));
  gst_buffer_unmap(kept, &map);
  gst_buffer_unref(kept);
  // Freed: its room is the ring's again.
  drain();
  GstBuffer* again = s.Acquire();
  EXPECT_TRUE(IsRingMemory(again));
  Fill(again, 8);
  ASSERT_EQ(gst_harness_push(s.h, again), GST_FLOW_OK);
  EXPECT_EQ(NextBody(c), PatternString(8));
}

// The sink stops (ring unlinked, CLOSED) with buffers still upstream: their memory
// stays mapped and usable until the last one is freed.
TEST(RingPool, BuffersOutliveTheSink) {
  const std::string name = UniqueName("gpool-stop");
  Sink s(name, "capacity=65536 linger=0");
  ASSERT_NE(s.pool, nullptr);
  GstBuffer* b = s.Acquire();
  ASSERT_TRUE(IsRingMemory(b));
  s.TeardownHarness();  // the sink stops and is freed
  EXPECT_FALSE(shm::ShmConsumer(name).IsValid()) << "the ring is gone";
  Fill(b, 9);  // still mapped
  GstMapInfo map;
  ASSERT_TRUE(gst_buffer_map(b, &map, GST_MAP_READ));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(map.data), map.size), PatternString(9));
  gst_buffer_unmap(b, &map);
  gst_buffer_unref(b);
}

// Upstream reconfigures the pool (inactive, new size, active): buffers of the new
// size come from the ring.
TEST(RingPool, Reconfiguration) {
  const std::string name = UniqueName("gpool-conf");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr);
  ASSERT_TRUE(gst_buffer_pool_set_active(s.pool, FALSE));
  GstStructure* config = gst_buffer_pool_get_config(s.pool);
  GstCaps* caps2 = gst_caps_from_string(kCaps2);
  gst_buffer_pool_config_set_params(config, caps2, kFrame / 2, 1, 4);
  gst_caps_unref(caps2);
  ASSERT_TRUE(gst_buffer_pool_set_config(s.pool, config));
  ASSERT_TRUE(gst_buffer_pool_set_active(s.pool, TRUE));
  gst_harness_set_src_caps_str(s.h, kCaps2);
  GstBuffer* b = s.Acquire();
  EXPECT_TRUE(IsRingMemory(b));
  EXPECT_EQ(gst_buffer_get_size(b), kFrame / 2);
  Fill(b, 5);
  ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(msgs.back().body, PatternString(5, kFrame / 2));
}

// Data after end of stream starts a new ring: upstream is asked to renegotiate
// (RECONFIGURE), so it takes a pool of the new ring; the old pool's buffers are
// copied meanwhile.
TEST(RingPool, NewRingAfterEosAsksUpstreamToReconfigure) {
  const std::string name = UniqueName("gpool-reconf");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr);
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_eos()));
  // A flushing seek after the end: the same sink streams again.
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(s.h, gst_event_new_segment(&seg)));
  while (GstEvent* e = gst_harness_try_pull_upstream_event(s.h)) gst_event_unref(e);
  GstBuffer* old = s.Acquire();
  Fill(old, 4);
  ASSERT_EQ(gst_harness_push(s.h, old), GST_FLOW_OK);
  bool reconfigure = false;
  while (GstEvent* e = gst_harness_try_pull_upstream_event(s.h)) {
    reconfigure = reconfigure || GST_EVENT_TYPE(e) == GST_EVENT_RECONFIGURE;
    gst_event_unref(e);
  }
  EXPECT_TRUE(reconfigure);
  EXPECT_EQ(Stat(s.h, "copied"), 1u);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().body, PatternString(4));
}

// A pool buffer whose message needs header extensions (a carried meta) is copied;
// the receiver gets its bytes intact.
TEST(RingPool, BufferWithACarriedMetaIsCopied) {
  const std::string name = UniqueName("gpool-meta");
  Sink s(name, "capacity=65536");
  ASSERT_NE(s.pool, nullptr);
  GstBuffer* b = s.Acquire();
  Fill(b, 6);
  GstCaps* ntp = gst_caps_from_string("timestamp/x-ntp");
  gst_buffer_add_reference_timestamp_meta(b, ntp, 5 * GST_SECOND, GST_CLOCK_TIME_NONE);
  gst_caps_unref(ntp);
  ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  EXPECT_EQ(Stat(s.h, "in-place"), 0u);
  EXPECT_EQ(Stat(s.h, "copied"), 1u);
  const std::vector<Msg> msgs = ReadAll(name);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1].body, PatternString(6));
}

// capacity=0 (the default): no ring at start; the first caps create it, sized for
// four frames rounded up to a power of two (at least 1 MiB); a receiver started
// first waits for it.
TEST(AutoCapacity, RingIsCreatedAtTheFirstCapsAndSizedFromThem) {
  const std::string name = UniqueName("gpool-auto");
  GstHarness* h = gsttest::NewSinkHarness(name);
  guint capacity = 1;
  g_object_get(Element(h), "capacity", &capacity, nullptr);
  EXPECT_EQ(capacity, 0u) << "the default sizes the ring from the caps";
  EXPECT_FALSE(shm::ShmConsumer(name).IsValid()) << "no ring before the caps";
  std::unique_ptr<shm::ShmConsumer> early;
  std::thread receiver([&] { early = std::make_unique<shm::ShmConsumer>(name, shm::kForever); });
  gst_harness_set_src_caps_str(h, "video/x-raw,format=BGR,width=1920,height=1080,framerate=30/1");
  receiver.join();
  ASSERT_TRUE(early->IsValid()) << early->error();
  // 4 x (6220800 + 64) bytes round up to 32 MiB.
  EXPECT_EQ(early->capacity(), 32u << 20);
  GstBuffer* b = gst_buffer_new_allocate(nullptr, 1920 * 1080 * 3, nullptr);
  gst_buffer_memset(b, 0, 0x5a, 1920 * 1080 * 3);
  ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  std::vector<uint8_t> out(early->capacity());
  int buffers = 0;
  for (;;) {
    const shm::ReadResult r =
        early->ReadFor(out.data(), static_cast<uint32_t>(out.size()), shm::kForever);
    ASSERT_EQ(r.status, shm::Status::kOk);
    if (r.len == shm::framing::kHeaderSize + 1920 * 1080 * 3) {
      ++buffers;
      break;
    }
  }
  EXPECT_EQ(buffers, 1);
  early.reset();
  gst_harness_teardown(h);
}

// Room for two frames in half the ring: a receiver whose sink keeps the last frame
// while the next is pushed stays zero-copy. 1280x720 BGR: three frames would fit
// 8 MiB, so the ring is 16 MiB.
TEST(AutoCapacity, HalfTheRingHoldsTheFrameASinkKeepsAndTheNext) {
  const std::string name = UniqueName("gpool-auto-720");
  GstHarness* h = gsttest::NewSinkHarness(name);
  gst_harness_set_src_caps_str(h, "video/x-raw,format=BGR,width=1280,height=720,framerate=30/1");
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.capacity(), 16u << 20);
  EXPECT_LE(2 * shm::layout::RecordSize(shm::framing::kHeaderSize + 1280 * 720 * 3),
            c.capacity() / 2);
  gst_harness_teardown(h);
}

// capacity=0 and caps that need a larger ring (64x48 GRAY8 in 1 MiB, then 1280x720
// BGR): the stream moves to a ring of the new size under the same name, and upstream
// is asked to renegotiate (RECONFIGURE) so that it takes that ring's pool. A
// consumer of the old ring reads what it held, then finds it CLOSED and handed over;
// the new ring carries the new caps and the large frames.
TEST(AutoCapacity, LargerCapsMoveTheStreamToALargerRing) {
  const std::string name = UniqueName("gpool-grow");
  Sink s(name, "");
  ASSERT_NE(s.pool, nullptr);
  shm::ShmConsumer old(name);
  ASSERT_TRUE(old.IsValid()) << old.error();
  EXPECT_EQ(old.capacity(), 1u << 20);
  GstBuffer* b = s.Acquire();
  Fill(b, 3);
  ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
  while (GstEvent* e = gst_harness_try_pull_upstream_event(s.h)) gst_event_unref(e);
  gst_harness_set_src_caps_str(s.h, "video/x-raw,format=BGR,width=1280,height=720,framerate=30/1");
  bool reconfigure = false;
  while (GstEvent* e = gst_harness_try_pull_upstream_event(s.h)) {
    reconfigure = reconfigure || GST_EVENT_TYPE(e) == GST_EVENT_RECONFIGURE;
    gst_event_unref(e);
  }
  EXPECT_TRUE(reconfigure);
  NextBody(old);  // the first caps
  EXPECT_EQ(NextBody(old), PatternString(3));
  EXPECT_EQ(NextBody(old), std::string("<") + shm::StatusName(shm::Status::kClosed) + ">");
  EXPECT_TRUE(old.HandedOver());
  shm::ShmConsumer next(name);
  ASSERT_TRUE(next.IsValid()) << next.error();
  EXPECT_EQ(next.capacity(), 16u << 20);
  const gsize big = 1280 * 720 * 3;
  GstBuffer* frame = gst_buffer_new_allocate(nullptr, big, nullptr);
  gst_buffer_memset(frame, 0, 0x5a, big);
  ASSERT_EQ(gst_harness_push(s.h, frame), GST_FLOW_OK);
  EXPECT_NE(NextBody(next).find("width=(int)1280"), std::string::npos);
  EXPECT_EQ(NextBody(next), std::string(big, '\x5a'));
}

// The shmringsink-receiver-attached and -left messages posted on `bus` since the last
// look: how many attached, and each left's (slot, pid).
struct ReceiverMessages {
  size_t attached = 0;
  std::vector<std::pair<guint, guint>> left;
};
ReceiverMessages TakeReceiverMessages(GstBus* bus) {
  ReceiverMessages n;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    const GstStructure* st = gst_message_get_structure(m);
    if (gst_structure_has_name(st, "shmringsink-receiver-attached")) ++n.attached;
    if (gst_structure_has_name(st, "shmringsink-receiver-left")) {
      guint slot = 99, pid = 0;
      EXPECT_TRUE(gst_structure_get_uint(st, "slot", &slot));
      EXPECT_TRUE(gst_structure_get_uint(st, "pid", &pid)) << "receiver-left without a pid";
      n.left.emplace_back(slot, pid);
    }
    gst_message_unref(m);
  }
  return n;
}

// Two receivers of one process (one pid) announced in the ring sized from small caps;
// at the move to a larger ring one follows the stream and the other stops. The
// follower is the same receiver: no second shmringsink-receiver-attached. It is told
// from the other by its old slot, which it no longer holds when it arrives while the
// other still holds its own: the one that stops (created first, so that the first
// receiver of that pid in the list is not the follower) is announced as left with
// its own slot and pid once it has been gone from the old ring for the follow grace
// (before: the follower's slot, a pid match taking the first mover). The sink looks
// at each buffer, so buffers are pushed until that message comes (a hang guard, not a
// timing).
TEST(AutoCapacity, AFollowerIsAnnouncedOnceAndOneThatStopsAsLeft) {
  const std::string name = UniqueName("gpool-movers");
  GstHarness* h = gsttest::NewSinkHarness(name, "max-receivers=2 wait-for-space=false");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, kCaps);
  auto stopper = std::make_unique<shm::ShmConsumer>(name);
  auto follower = std::make_unique<shm::ShmConsumer>(name);
  ASSERT_TRUE(follower->IsValid() && stopper->IsValid());
  const guint stopper_slot = stopper->slot();
  const guint pid = static_cast<guint>(getpid());
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, kFrame, nullptr)), GST_FLOW_OK);
  ReceiverMessages m = TakeReceiverMessages(bus);
  EXPECT_EQ(m.attached, 2u);
  EXPECT_TRUE(m.left.empty());
  gst_harness_set_src_caps_str(h, "video/x-raw,format=BGR,width=1280,height=720,framerate=30/1");
  const gsize big = 1280 * 720 * 3;
  std::vector<uint8_t> buf(big);
  shm::ReadResult r;
  while ((r = follower->ReadFor(buf.data(), big, 0)).status == shm::Status::kOk) {
  }
  ASSERT_EQ(r.status, shm::Status::kClosed);
  ASSERT_TRUE(follower->HandedOver());
  follower = std::make_unique<shm::ShmConsumer>(name);  // into the new ring
  ASSERT_TRUE(follower->IsValid()) << follower->error();
  // The sink sees the follower arrive while the stopper still holds its old slot.
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, big, nullptr)), GST_FLOW_OK);
  stopper.reset();                                   // leaves without following
  for (int i = 0; i < 600 && m.left.empty(); ++i) {  // hang guard: 30 s
    ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, big, nullptr)), GST_FLOW_OK);
    m = TakeReceiverMessages(bus);
    EXPECT_EQ(m.attached, 0u) << "the follower was announced again";
    if (m.left.empty()) g_usleep(50000);
  }
  ASSERT_EQ(m.left.size(), 1u) << "the receiver that stopped at the move";
  EXPECT_EQ(m.left[0], std::make_pair(stopper_slot, pid)) << "left: the stopper's slot";
  const guint follower_slot = follower->slot();
  follower.reset();
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, big, nullptr)), GST_FLOW_OK);
  m = TakeReceiverMessages(bus);
  EXPECT_EQ(m.attached, 0u);
  ASSERT_EQ(m.left.size(), 1u) << "the follower's leaving";
  EXPECT_EQ(m.left[0], std::make_pair(follower_slot, pid));
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// A live encoded stream moves to a larger ring (small GRAY8 caps, then H.264 caps,
// sized by the fallback): the receiver that follows is announced once, but upstream
// is asked for a keyframe for it again (before: none; a receiver of the same pid
// taken for a follower may be a new one that waits for a keyframe).
TEST(AutoCapacity, AFollowerOfALiveEncodedStreamGetsAKeyframeAskedFor) {
  const std::string name = UniqueName("gpool-follow-key");
  GstHarness* h = gsttest::NewSinkHarness(name, "", /*live=*/true);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, kCaps);
  auto c = std::make_unique<shm::ShmConsumer>(name);
  ASSERT_TRUE(c->IsValid()) << c->error();
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, kFrame, nullptr)), GST_FLOW_OK);
  EXPECT_EQ(TakeReceiverMessages(bus).attached, 1u);
  gst_harness_set_src_caps_str(h, "video/x-h264,stream-format=byte-stream,alignment=au");
  std::vector<uint8_t> buf(1u << 20);
  shm::ReadResult r;
  while ((r = c->ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), 0)).status ==
         shm::Status::kOk) {
  }
  ASSERT_EQ(r.status, shm::Status::kClosed);
  ASSERT_TRUE(c->HandedOver());
  c = std::make_unique<shm::ShmConsumer>(name);  // into the new ring
  ASSERT_TRUE(c->IsValid()) << c->error();
  EXPECT_EQ(c->capacity(), 32u << 20);
  while (GstEvent* e = gst_harness_try_pull_upstream_event(h)) gst_event_unref(e);
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, 16, nullptr)), GST_FLOW_OK);
  bool asked = false;
  while (GstEvent* e = gst_harness_try_pull_upstream_event(h)) {
    asked = asked || gst_video_event_is_force_key_unit(e);
    gst_event_unref(e);
  }
  EXPECT_TRUE(asked) << "no force-key-unit event upstream for the follower";
  EXPECT_EQ(TakeReceiverMessages(bus).attached, 0u) << "the follower was announced again";
  c.reset();
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(AutoCapacity, SmallFramesGetTheMinimum) {
  const std::string name = UniqueName("gpool-auto-s");
  GstHarness* h = gsttest::NewSinkHarness(name);
  gst_harness_set_src_caps_str(h, kCaps);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.capacity(), 1u << 20);
  gst_harness_teardown(h);
}

// Where the sink's large records go (core: ByteRingBuffer::RestartLapEarly, DESIGN.md
// "Where a large record goes"): frames painted into the sink's pool are reserved as
// shm::FillHint::kInPlace, frames the sink copies in render as kCopied, and frames of
// a size between the two limits cycle through three places in the ring when painted
// and through two when copied. GRAY8 frames of about a fifth of this machine's
// largest cache, as the plugin reads it: three fit in all of it (in place) but not
// in a fifth of it (copied). A receiver reads each frame as the next one is sent.
class FramePlaces : public ::testing::Test {
 protected:
  FramePlaces() {
    const uint64_t cache = shm::LargestCacheBytes();
    height_ = static_cast<guint>(cache / 5 / kWidth);
    frame_ = gsize{kWidth} * height_;
    record_ = static_cast<uint32_t>(
        shm::layout::RecordSize(static_cast<uint32_t>(shm::framing::kHeaderSize + frame_)));
    // Room for the caps record and four frames: the fourth reaches the front only by
    // a restart, never by the end of the ring.
    capacity_ = 1u << 20;
    while (capacity_ < 4ull * record_ + (64u << 10)) capacity_ <<= 1;
  }
  std::string Caps() const {
    return "video/x-raw,format=GRAY8,width=" + std::to_string(kWidth) +
           ",height=" + std::to_string(height_) + ",framerate=30/1";
  }
  // The ring offsets of frames 4..8 (after the first lap) of ten frames sent by
  // `send(i)` (which pushes frame i), each followed by reading the message before.
  std::set<uint32_t> Places(shm::ShmConsumer& c, const std::function<void(int)>& send) {
    std::set<uint32_t> places;
    for (int i = 0; i < 10; ++i) {
      send(i);
      shm::MessageView v;
      EXPECT_EQ(c.AcquireFor(&v, shm::kForever), shm::Status::kOk);  // caps, frame i - 1
      if (i > 4) places.insert((v.end - record_) & (c.capacity() - 1));
      c.Release(v);
    }
    return places;
  }
  std::set<uint32_t> ThreePlaces() const { return {0, record_, 2 * record_}; }
  std::set<uint32_t> TwoPlaces() const { return {0, record_}; }

  static constexpr guint kWidth = 1024;
  guint height_ = 0;
  gsize frame_ = 0;
  uint32_t record_ = 0;
  uint32_t capacity_ = 0;
};

TEST_F(FramePlaces, PaintedInThePoolThreePlacesCopiedInRenderTwo) {
  if (frame_ < (gsize{64} << 10)) {  // a cache under 320 KiB: no large frame fits the band
    GTEST_SKIP() << "frames of a fifth of this cache are below the size that restarts";
  }
  const std::string caps = Caps();
  {
    const std::string name = UniqueName("gpool-places-pool");
    gsttest::PooledSink s(name, "capacity=" + std::to_string(capacity_), caps.c_str());
    ASSERT_NE(s.pool, nullptr);
    shm::ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    const auto places = Places(c, [&](int i) {
      GstBuffer* b = s.Acquire();
      ASSERT_TRUE(IsRingMemory(b));
      gst_buffer_memset(b, 0, static_cast<guint8>(i), frame_);
      ASSERT_EQ(gst_harness_push(s.h, b), GST_FLOW_OK);
    });
    EXPECT_EQ(Stat(s.h, "in-place"), 10u);
    EXPECT_EQ(places, ThreePlaces()) << "painted in the pool";
  }
  {
    const std::string name = UniqueName("gpool-places-copy");
    GstHarness* h = gsttest::NewSinkHarness(name, "capacity=" + std::to_string(capacity_));
    gst_harness_set_src_caps_str(h, caps.c_str());
    shm::ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    const auto places = Places(c, [&](int i) {
      GstBuffer* b = gst_buffer_new_allocate(nullptr, frame_, nullptr);
      gst_buffer_memset(b, 0, static_cast<guint8>(i), frame_);
      ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
    });
    EXPECT_EQ(Stat(h, "copied"), 10u);
    EXPECT_EQ(places, TwoPlaces()) << "copied in render";
    gst_harness_teardown(h);
  }
}

}  // namespace
