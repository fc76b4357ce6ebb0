// shmringsink under GstHarness: the bytes it writes (golden vectors), caps
// changes, oversize buffers, dropping when full, unblocking a full ring,
// timestamps across flushes, system-memory-only caps, re-sending caps to a new
// receiver, and data after a failed ring re-creation.
#include <fcntl.h>
#include <gst/base/gstbasesink.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gst_test_util.hpp"
#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/liveness.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"

namespace {

using gsttest::LoadVector;
using gsttest::UniqueName;

constexpr const char* kGrayCaps = "video/x-raw,format=GRAY8,width=4,height=2,framerate=30/1";

using gsttest::Element;

// A sink whose upstream (the harness) answers the latency query with `live`.
GstHarness* NewSink(const std::string& name, const std::string& extra = "", bool live = false) {
  // An explicit capacity creates the ring in start(); tests of capacity=0 (sized
  // from the caps at the first caps) are in test_ring_pool.cpp.
  const std::string cap = extra.find("capacity=") == std::string::npos ? "capacity=1048576 " : "";
  return gsttest::NewSinkHarness(name, cap + extra, live);
}

GstBuffer* NewBuffer(const std::vector<uint8_t>& bytes) {
  GstBuffer* b = gst_buffer_new_allocate(nullptr, bytes.size(), nullptr);
  gst_buffer_fill(b, 0, bytes.data(), bytes.size());
  return b;
}

shm::framing::Header Decode(const std::vector<uint8_t>& m, std::string* body = nullptr) {
  shm::framing::Header h;
  const uint8_t* b = nullptr;
  uint32_t n = 0;
  const char* err = nullptr;
  EXPECT_TRUE(
      shm::framing::DecodeMessage(m.data(), static_cast<uint32_t>(m.size()), &h, &b, &n, &err));
  if (body != nullptr) body->assign(reinterpret_cast<const char*>(b), n);
  return h;
}

// Compares a message with a golden vector, except send_time (which must be set).
void ExpectMatchesVector(const std::vector<uint8_t>& got, const std::string& vector) {
  std::vector<uint8_t> want = LoadVector(vector);
  ASSERT_EQ(got.size(), want.size()) << vector;
  std::vector<uint8_t> masked = got;
  uint64_t send_time = 0;
  std::memcpy(&send_time, got.data() + shm::framing::kSendTimeOffset, 8);
  EXPECT_NE(send_time, 0u) << vector << ": send_time_ns must be the writer's clock";
  std::memset(masked.data() + shm::framing::kSendTimeOffset, 0, 8);
  EXPECT_EQ(masked, want) << vector;
}

TEST(ShmringSink, WritesGoldenVectorBytes) {
  const std::string name = UniqueName("gsink-vec");
  GstHarness* h = NewSink(name, "capacity=4096");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  GstBuffer* b = NewBuffer({0, 1, 2, 3, 4, 5, 6, 7});
  GST_BUFFER_PTS(b) = GST_SECOND;
  GST_BUFFER_DURATION(b) = 33333333;
  GST_BUFFER_OFFSET(b) = 7;
  GST_BUFFER_OFFSET_END(b) = 8;
  GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
  ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));

  {
    shm::ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    EXPECT_EQ(c.profile(), shm::layout::kProfileGstFraming);
    EXPECT_EQ(c.capacity(), 4096u);
    EXPECT_TRUE(c.ring()->ProducerClosed()) << "EOS must set CLOSED";
  }
  const auto msgs = gsttest::ReadAllMessages(name);
  ASSERT_EQ(msgs.size(), 3u);
  ExpectMatchesVector(msgs[0], "p1_caps.hex");
  ExpectMatchesVector(msgs[1], "p1_buffer.hex");
  ExpectMatchesVector(msgs[2], "p1_eos.hex");
  gst_harness_teardown(h);
}

TEST(ShmringSink, CapacityRoundsUp) {
  const std::string name = UniqueName("gsink-cap");
  GstHarness* h = NewSink(name, "capacity=5000");
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.capacity(), 8192u);
  gst_harness_teardown(h);
}

// The sink's producer fences every frame itself (ProducerOptions::full_fences):
// its MEMBARRIER bit is clear, so a receiver sleeping between frames issues no
// membarrier (an interrupt to every CPU) per frame.
TEST(ShmringSink, RingIsFullyFencedSoReceiversIssueNoMembarrier) {
  const std::string name = UniqueName("gsink-fence");
  GstHarness* h = NewSink(name, "capacity=65536");
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.ring()->ProducerFlags() & shm::layout::kProducerMembarrier, 0u);
  gst_harness_teardown(h);
}

#ifdef __linux__
TEST(ShmringSink, PermsSetTheSegmentMode) {
  const std::string name = UniqueName("gsink-perms");
  GstHarness* h = NewSink(name, "perms=0660");  // group write: the umask must not apply
  struct stat st {};
  ASSERT_EQ(stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  gst_harness_teardown(h);
  EXPECT_NE(stat(("/dev/shm/" + name).c_str(), &st), 0) << "stopping unlinks the ring";
}
#endif

TEST(ShmringSink, CapsChangeWritesNewCapsRecord) {
  const std::string name = UniqueName("gsink-caps");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  gst_harness_set_src_caps_str(h, "video/x-raw,format=GRAY8,width=2,height=2,framerate=30/1");
  ASSERT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2})), GST_FLOW_OK);
  // The same caps again: no new record.
  gst_harness_set_src_caps_str(h, "video/x-raw,format=GRAY8,width=2,height=2,framerate=30/1");
  ASSERT_EQ(gst_harness_push(h, NewBuffer({3, 3, 3, 3})), GST_FLOW_OK);

  const auto msgs = gsttest::ReadAllMessages(name);
  ASSERT_EQ(msgs.size(), 5u);
  std::string body;
  EXPECT_EQ(Decode(msgs[0], &body).kind, shm::framing::Kind::kCaps);
  EXPECT_NE(body.find("width=(int)4"), std::string::npos) << body;
  EXPECT_EQ(Decode(msgs[1], &body).kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(body, std::string(8, '\1'));
  EXPECT_EQ(Decode(msgs[2], &body).kind, shm::framing::Kind::kCaps);
  EXPECT_NE(body.find("width=(int)2"), std::string::npos) << body;
  EXPECT_EQ(Decode(msgs[3], &body).kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(body, std::string(4, '\2'));
  EXPECT_EQ(Decode(msgs[4], &body).kind, shm::framing::Kind::kBuffer);
  EXPECT_EQ(body, std::string(4, '\3'));
  gst_harness_teardown(h);
}

TEST(ShmringSink, TimestampsTravelAsRunningTime) {
  const std::string name = UniqueName("gsink-rt");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.start = 10 * GST_SECOND;
  seg.base = 2 * GST_SECOND;
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&seg)));
  GstBuffer* b = NewBuffer({9, 9, 9, 9});
  GST_BUFFER_PTS(b) = 11 * GST_SECOND;
  GST_BUFFER_DTS(b) = 11 * GST_SECOND;
  ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  const auto msgs = gsttest::ReadAllMessages(name);
  ASSERT_EQ(msgs.size(), 2u);
  const shm::framing::Header hd = Decode(msgs[1]);
  EXPECT_EQ(hd.pts, 3 * GST_SECOND);  // 11 s - start 10 s + base 2 s
  EXPECT_EQ(hd.dts, 3 * GST_SECOND);
  gst_harness_teardown(h);
}

TEST(ShmringSink, OversizeBufferIsAnErrorNamingBothSizes) {
  const std::string name = UniqueName("gsink-big");
  GstHarness* h = NewSink(name, "capacity=256");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, "video/x-raw");
  EXPECT_EQ(gst_harness_push(h, NewBuffer(std::vector<uint8_t>(1000, 7))), GST_FLOW_ERROR);
  GstMessage* msg = gsttest::WaitForError(bus);
  const std::string text = gsttest::ErrorText(msg);
  EXPECT_NE(text.find("1000"), std::string::npos) << text;
  EXPECT_NE(text.find("256"), std::string::npos) << text;
  gst_message_unref(msg);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(ShmringSink, InvalidNameIsAnError) {
  GstElement* sink = gst_element_factory_make("shmringsink", nullptr);
  ASSERT_NE(sink, nullptr);
  g_object_set(sink, "shm-name", "no/slashes", nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(sink, bus);
  EXPECT_EQ(gst_element_set_state(sink, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GstMessage* msg = gsttest::WaitForError(bus);
  EXPECT_NE(gsttest::ErrorText(msg).find("no/slashes"), std::string::npos);
  gst_message_unref(msg);
  gst_element_set_state(sink, GST_STATE_NULL);
  gst_element_set_bus(sink, nullptr);
  gst_object_unref(bus);
  gst_object_unref(sink);
}

TEST(ShmringSink, RefusesANameALiveProducerOwns) {
  const std::string name = UniqueName("gsink-busy");
  shm::ShmProducer other(name, 1024);
  ASSERT_TRUE(other.IsValid()) << other.error();
  GstElement* sink = gst_element_factory_make("shmringsink", nullptr);
  g_object_set(sink, "shm-name", name.c_str(), "capacity", 1u << 20, nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(sink, bus);
  EXPECT_EQ(gst_element_set_state(sink, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GstMessage* msg = gsttest::WaitForError(bus);
  EXPECT_NE(gsttest::ErrorText(msg).find("live producer"), std::string::npos)
      << gsttest::ErrorText(msg);
  gst_message_unref(msg);
  gst_element_set_state(sink, GST_STATE_NULL);
  gst_element_set_bus(sink, nullptr);
  gst_object_unref(bus);
  gst_object_unref(sink);
}

// A stale ring (its sender finished) owned by another user is left alone unless
// allow-foreign-owner is set; then it is replaced.
TEST(ShmringSink, StaleRingOfAnotherOwnerIsReplacedOnlyWhenAllowed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the segment to another uid";
  const std::string name = UniqueName("gsink-owner");
  shm::ShmProducer old(name, 1024);
  ASSERT_TRUE(old.IsValid()) << old.error();
  old.Close();  // finished: replaceable, were it ours
  ASSERT_EQ(chown(("/dev/shm/" + name).c_str(), 65534, 65534), 0);
  const uint64_t old_generation = old.generation();
  for (const bool allow : {false, true}) {
    GstElement* sink = gst_element_factory_make("shmringsink", nullptr);
    g_object_set(sink, "shm-name", name.c_str(), "allow-foreign-owner", allow, "capacity", 1u << 20,
                 nullptr);
    GstBus* bus = gst_bus_new();
    gst_element_set_bus(sink, bus);
    const GstStateChangeReturn r = gst_element_set_state(sink, GST_STATE_PAUSED);
    if (!allow) {
      EXPECT_EQ(r, GST_STATE_CHANGE_FAILURE);
      GstMessage* msg = gsttest::WaitForError(bus);
      EXPECT_NE(gsttest::ErrorText(msg).find("owned by uid 65534"), std::string::npos)
          << gsttest::ErrorText(msg);
      gst_message_unref(msg);
      struct stat st;
      ASSERT_EQ(stat(("/dev/shm/" + name).c_str(), &st), 0) << "the segment was left alone";
      EXPECT_EQ(st.st_uid, 65534u);
    } else {
      EXPECT_NE(r, GST_STATE_CHANGE_FAILURE);
      shm::ShmConsumer c(name);
      ASSERT_TRUE(c.IsValid()) << c.error();
      EXPECT_NE(c.generation(), old_generation) << "replaced by a new ring";
    }
    gst_element_set_state(sink, GST_STATE_NULL);
    gst_element_set_bus(sink, nullptr);
    gst_object_unref(bus);
    gst_object_unref(sink);
  }
}

TEST(ShmringSink, DropsAndCountsWhenFullWithoutWaiting) {
  const std::string name = UniqueName("gsink-drop");
  GstHarness* h = NewSink(name, "capacity=1024 wait-for-space=false");
  gst_harness_set_src_caps_str(h, "video/x-raw,format=GRAY8,width=10,height=10");
  constexpr int kPushed = 20;
  for (int i = 0; i < kPushed; ++i) {
    GstBuffer* b = NewBuffer(std::vector<uint8_t>(100, static_cast<uint8_t>(i)));
    GST_BUFFER_PTS(b) = i * GST_MSECOND;
    ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK) << "dropping is not an error";
  }
  guint64 dropped = 0;
  g_object_get(Element(h), "dropped", &dropped, nullptr);
  EXPECT_GT(dropped, 0u);

  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid());
  EXPECT_EQ(c.ring()->Dropped(), dropped) << "the header's dropped counter";
  std::vector<uint8_t> buf(1024);
  ASSERT_EQ(c.TryRead(buf.data(), 1024).status, shm::Status::kOk);  // caps
  int buffers = 0;
  for (;;) {
    const shm::ReadResult r = c.TryRead(buf.data(), 1024);
    if (r.status != shm::Status::kOk) break;
    std::vector<uint8_t> m(buf.begin(), buf.begin() + r.len);
    std::string body;
    const shm::framing::Header hd = Decode(m, &body);
    EXPECT_EQ(hd.pts, static_cast<uint64_t>(buffers) * GST_MSECOND) << "the oldest are kept";
    EXPECT_EQ(body, std::string(100, static_cast<char>(buffers)));
    ++buffers;
  }
  EXPECT_EQ(static_cast<guint64>(buffers) + dropped, static_cast<guint64>(kPushed));
  gst_harness_teardown(h);
}

// Attaches a consumer that never reads (the sink blocks only while a receiver is
// attached), then pushes buffers from a thread until the ring is full and the
// sink blocks in its write; returns once the sink sleeps for space.
struct BlockedPusher {
  GstHarness* h;
  std::string name;
  std::thread thread;
  GstFlowReturn last = GST_FLOW_OK;
  std::unique_ptr<shm::ShmConsumer> watcher;

  void Start() {
    watcher = std::make_unique<shm::ShmConsumer>(name);
    ASSERT_TRUE(watcher->IsValid()) << watcher->error();
    thread = std::thread([this] {
      for (int i = 0; i < 1000; ++i) {
        last = gst_harness_push(h, NewBuffer(std::vector<uint8_t>(200, 1)));
        if (last != GST_FLOW_OK) return;
      }
    });
    while (!(watcher->ring()->ProducerFlags() & shm::layout::kProducerWaiting)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

// The sink's INFO line saying that it waits on a full ring, and its LOG line at the
// end of each wait slice that found the ring still full.
constexpr const char* kFullLine = "full: waiting for the receiver to make room";
constexpr const char* kSliceLine = "still full after a";

// A sink blocked on a full ring says so at INFO, once for the whole wait (not per
// slice): after the line, the sink goes through three more slices of the same wait
// (counted by its per-slice LOG line, never by the clock) and says nothing more.
TEST(ShmringSink, BlockedOnAFullRingSaysSoOnceAtInfo) {
  const std::string name = UniqueName("gsink-info");
  gsttest::LogWatch log("shmringsink", GST_LEVEL_LOG);
  GstHarness* h = NewSink(name, "capacity=1024");
  gst_harness_set_src_caps_str(h, "video/x-raw");
  BlockedPusher p{h, name, {}, GST_FLOW_OK, nullptr};
  p.Start();
  // The line comes after the first slice of waiting (a missing line fails by the test timeout).
  log.WaitFor(GST_LEVEL_INFO, kFullLine);
  log.WaitFor(GST_LEVEL_LOG, kSliceLine, log.Count(GST_LEVEL_LOG, kSliceLine) + 3);
  EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  p.thread.join();
  EXPECT_EQ(log.Count(GST_LEVEL_INFO, kFullLine), 1)
      << "one INFO line per wait, however many slices it lasted";
  gst_harness_teardown(h);
}

TEST(ShmringSink, NullWhileBlockedOnAFullRingReturns) {
  const std::string name = UniqueName("gsink-null");
  GstHarness* h = NewSink(name, "capacity=1024");
  gst_harness_set_src_caps_str(h, "video/x-raw");
  BlockedPusher p{h, name, {}, GST_FLOW_OK, nullptr};
  p.Start();
  // Never hangs: unlock interrupts the write (a hang fails by the test timeout).
  EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  p.thread.join();
  EXPECT_EQ(p.last, GST_FLOW_FLUSHING);
  gst_harness_teardown(h);
}

TEST(ShmringSink, FlushUnblocksAFullRingAndStreamingGoesOn) {
  const std::string name = UniqueName("gsink-flush");
  GstHarness* h = NewSink(name, "capacity=1024");
  gst_harness_set_src_caps_str(h, "video/x-raw");
  BlockedPusher p{h, name, {}, GST_FLOW_OK, nullptr};
  p.Start();
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  p.thread.join();
  EXPECT_EQ(p.last, GST_FLOW_FLUSHING);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&seg)));

  // Drain the ring from a reader; the next push must get through.
  // (A receiver must be attached: without one, a full ring drops the buffer.)
  p.watcher.reset();
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  std::thread reader([&] {
    std::vector<uint8_t> buf(1024);
    int buffers_after_flush = 0;
    while (buffers_after_flush == 0) {
      const shm::ReadResult r = c.ReadFor(buf.data(), 1024, shm::kForever);
      ASSERT_EQ(r.status, shm::Status::kOk);
      std::vector<uint8_t> m(buf.begin(), buf.begin() + r.len);
      std::string body;
      if (Decode(m, &body).kind == shm::framing::Kind::kBuffer && body == "after") {
        ++buffers_after_flush;
      }
    }
  });
  GstBuffer* b = gst_buffer_new_wrapped(g_strdup("after"), 5);
  EXPECT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  reader.join();
  gst_harness_teardown(h);
}

}  // namespace

namespace {

std::vector<shm::framing::Kind> Kinds(shm::ShmConsumer& c) {
  std::vector<shm::framing::Kind> kinds;
  std::vector<uint8_t> buf(c.capacity());
  for (;;) {
    const shm::ReadResult r = c.TryRead(buf.data(), static_cast<uint32_t>(buf.size()));
    if (r.status != shm::Status::kOk) break;
    kinds.push_back(Decode(std::vector<uint8_t>(buf.begin(), buf.begin() + r.len)).kind);
  }
  return kinds;
}

using K = shm::framing::Kind;

// A receiver that attaches after the first buffers finds the CAPS record in the
// ring: the sink must not write a second one for it.
TEST(ShmringSink, LateFirstConsumerGetsOneCapsRecord) {
  const std::string name = UniqueName("gsink-late");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(Kinds(c), (std::vector<K>{K::kCaps, K::kBuffer}));
  ASSERT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2, 2, 2, 2, 2})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(c), (std::vector<K>{K::kBuffer}));
  gst_harness_teardown(h);
}

// A receiver that replaces one that already read the caps (a restart mid-stream)
// gets the CAPS record again before the next buffer.
TEST(ShmringSink, ReplacedConsumerGetsCapsAgain) {
  const std::string name = UniqueName("gsink-again");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the first receiver, in another process
    shm::ShmConsumer c(name);
    if (!c.IsValid() || Kinds(c) != std::vector<K>{K::kCaps, K::kBuffer}) _exit(2);
    char b = 1;
    if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 1) _exit(3);
    _exit(Kinds(c) == std::vector<K>{K::kBuffer} ? 0 : 4);
  }
  char b = 0;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2, 2, 2, 2, 2})), GST_FLOW_OK);
  ASSERT_EQ(write(go[1], &b, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the first receiver saw one CAPS record";
  shm::ShmConsumer second(name);  // this process: another pid
  ASSERT_TRUE(second.IsValid()) << second.error();
  ASSERT_EQ(gst_harness_push(h, NewBuffer({3, 3, 3, 3, 3, 3, 3, 3})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(second), (std::vector<K>{K::kCaps, K::kBuffer}));
  gst_harness_teardown(h);
}

// A flushing seek resets the sender's running time to 0; the receiver's segment
// goes on, so the timestamps written must go on increasing from where they got
// to, and the first buffer after the flush carries DISCONT.
TEST(ShmringSink, FlushingSeekKeepsTimestampsIncreasing) {
  const std::string name = UniqueName("gsink-fseek");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  constexpr GstClockTime kDur = 33333333;
  for (int i = 0; i < 3; ++i) {
    GstBuffer* b = NewBuffer(std::vector<uint8_t>(8, static_cast<uint8_t>(i)));
    GST_BUFFER_PTS(b) = i * kDur;
    GST_BUFFER_DURATION(b) = kDur;
    ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  }
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&seg)));
  for (int i = 0; i < 2; ++i) {  // running time from 0 again
    GstBuffer* b = NewBuffer(std::vector<uint8_t>(8, static_cast<uint8_t>(10 + i)));
    GST_BUFFER_PTS(b) = i * kDur;
    GST_BUFFER_DURATION(b) = kDur;
    ASSERT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
  }
  const auto msgs = gsttest::ReadAllMessages(name);
  ASSERT_EQ(msgs.size(), 6u);
  EXPECT_EQ(Decode(msgs[0]).kind, shm::framing::Kind::kCaps);
  std::vector<shm::framing::Header> bufs;
  for (size_t i = 1; i < msgs.size(); ++i) bufs.push_back(Decode(msgs[i]));
  for (size_t i = 1; i < bufs.size(); ++i) {
    EXPECT_GT(bufs[i].pts, bufs[i - 1].pts) << "buffer " << i << ": PTS must keep increasing";
  }
  EXPECT_EQ(bufs[3].pts, 3 * kDur) << "goes on at the end of the last buffer written";
  EXPECT_EQ(bufs[4].pts, 4 * kDur) << "keeps the sender's spacing";
  EXPECT_TRUE(bufs[3].flags & GST_BUFFER_FLAG_DISCONT) << "first buffer after the flush";
  EXPECT_FALSE(bufs[4].flags & GST_BUFFER_FLAG_DISCONT);
  EXPECT_FALSE(bufs[2].flags & GST_BUFFER_FLAG_DISCONT);
  gst_harness_teardown(h);
}

// A receiving pipeline restarted in the same process (same pid) is a new
// consumer too: it gets the CAPS record again before the next buffer.
TEST(ShmringSink, ConsumerRestartedInTheSameProcessGetsCapsAgain) {
  const std::string name = UniqueName("gsink-samepid");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  auto a = std::make_unique<shm::ShmConsumer>(name);
  ASSERT_TRUE(a->IsValid()) << a->error();
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(*a), (std::vector<K>{K::kCaps, K::kBuffer}));
  ASSERT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2, 2, 2, 2, 2})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(*a), (std::vector<K>{K::kBuffer})) << "no second CAPS for the same consumer";
  a.reset();  // consumer A detaches
  shm::ShmConsumer b(name);
  ASSERT_TRUE(b.IsValid()) << b.error();
  ASSERT_EQ(gst_harness_push(h, NewBuffer({3, 3, 3, 3, 3, 3, 3, 3})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(b), (std::vector<K>{K::kCaps, K::kBuffer}));
  gst_harness_teardown(h);
}

// The sink copies mapped bytes: caps with GL/DMABuf memory features would tell
// receivers the wrong thing, so they are refused.
TEST(ShmringSink, RefusesCapsNotInSystemMemory) {
  const std::string name = UniqueName("gsink-glmem");
  GstHarness* h = NewSink(name, "capacity=8192");
  GstCaps* gl = gst_caps_from_string("video/x-raw(memory:GLMemory),format=RGBA,width=2,height=2");
  GstPad* sinkpad = gst_element_get_static_pad(Element(h), "sink");
  EXPECT_FALSE(gst_pad_query_accept_caps(sinkpad, gl));
  gst_object_unref(sinkpad);
  gst_harness_push_event(h, gst_event_new_caps(gl));  // stored on the harness pad, refused
  EXPECT_EQ(gst_harness_push(h, NewBuffer(std::vector<uint8_t>(16, 1))), GST_FLOW_NOT_NEGOTIATED);

  // A caps query offers only system memory.
  GstCaps* filter = gst_caps_from_string(
      "video/x-raw(memory:GLMemory),format=RGBA; video/x-raw,format=RGBA; "
      "video/x-raw(memory:DMABuf),format=RGBA");
  GstCaps* offered = gst_pad_peer_query_caps(h->srcpad, filter);
  GstCaps* want = gst_caps_from_string("video/x-raw,format=RGBA");
  EXPECT_TRUE(gst_caps_is_equal(offered, want)) << gst_caps_to_string(offered);
  for (GstCaps* c : {filter, offered, want}) gst_caps_unref(c);

  // set_caps itself (reached if accept-caps is bypassed) errors with a hint.
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(Element(h), bus);
  GstCaps* caps = gst_caps_from_string("video/x-raw(memory:GLMemory),format=RGBA,width=2,height=2");
  const gboolean accepted =
      GST_BASE_SINK_GET_CLASS(Element(h))->set_caps(GST_BASE_SINK(Element(h)), caps);
  gst_caps_unref(caps);
  EXPECT_FALSE(accepted);
  if (!accepted) {
    GstMessage* msg = gsttest::WaitForError(bus);
    const std::string text = gsttest::ErrorText(msg);
    EXPECT_NE(text.find("gldownload"), std::string::npos) << text;
    EXPECT_NE(text.find("memory:GLMemory"), std::string::npos) << text;
    gst_message_unref(msg);
  }
  gst_element_set_bus(Element(h), nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// Pushes buffers from a thread while no receiver has ever attached; returns once
// the sink waits for space (seen in the header, without attaching).
struct FirstReceiverWait {
  GstHarness* h;
  std::string name;
  std::thread thread;
  GstFlowReturn last = GST_FLOW_OK;

  void Start() {
    thread = std::thread([this] {
      for (int i = 0; i < 1000; ++i) {
        last = gst_harness_push(h, NewBuffer(std::vector<uint8_t>(200, 1)));
        if (last != GST_FLOW_OK) return;
      }
    });
    shm::SharedMemory mem(name, shm::layout::kHeaderSize, false);
    ASSERT_TRUE(mem.valid()) << mem.error_message();
    const auto* flags = reinterpret_cast<const volatile uint32_t*>(
        static_cast<const uint8_t*>(mem.data()) + shm::layout::kProducerFlagsOffset);
    while (!(*flags & shm::layout::kProducerWaiting)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

// wait-for-space=true: before the first receiver a full ring blocks (either side
// may start first); once the receiver has left, nobody will make room, so a full
// ring drops (counted) instead of wedging the sender (it could not even take an
// EOS, e.g. from gst-launch -e); a new receiver brings back-pressure.
TEST(ShmringSink, FullRingBlocksForAReceiverButDropsAfterItLeft) {
  const std::string name = UniqueName("gsink-norecv");
  GstHarness* h = NewSink(name, "capacity=1024 wait-for-space=true");
  gst_harness_set_src_caps_str(h, "video/x-raw");
  FirstReceiverWait w{h, name, {}, GST_FLOW_OK};
  w.Start();  // the sink waits for its first receiver
  guint64 dropped = 0;
  g_object_get(Element(h), "dropped", &dropped, nullptr);
  EXPECT_EQ(dropped, 0u);
  {
    shm::ShmConsumer gone(name);  // a receiver that reads one message and leaves
    ASSERT_TRUE(gone.IsValid()) << gone.error();
    std::vector<uint8_t> buf(1024);
    ASSERT_EQ(gone.ReadFor(buf.data(), 1024, shm::kForever).status, shm::Status::kOk);
  }
  // The waiting push gets through, and the rest (more than fits) are dropped
  // instead of blocking: a hang here is the bug (caught by the test timeout).
  w.thread.join();
  EXPECT_EQ(w.last, GST_FLOW_OK);
  g_object_get(Element(h), "dropped", &dropped, nullptr);
  EXPECT_GT(dropped, 0u);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos())) << "EOS does not wedge either";
  {
    shm::ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    EXPECT_TRUE(c.ring()->ProducerClosed());
  }
  gst_harness_teardown(h);
}

TEST(ShmringSink, FullRingBlocksAgainWhenANewReceiverAttaches) {
  const std::string name = UniqueName("gsink-newrecv");
  GstHarness* h = NewSink(name, "capacity=1024 wait-for-space=true");
  gst_harness_set_src_caps_str(h, "video/x-raw");
  { shm::ShmConsumer gone(name); }  // came and left
  for (int i = 0; i < 20; ++i) {    // 20 x 200 bytes: far more than 1024
    ASSERT_EQ(gst_harness_push(h, NewBuffer(std::vector<uint8_t>(200, 1))), GST_FLOW_OK);
  }
  guint64 dropped = 0;
  g_object_get(Element(h), "dropped", &dropped, nullptr);
  EXPECT_GT(dropped, 0u);
  BlockedPusher p{h, name, {}, GST_FLOW_OK, nullptr};
  p.Start();  // a receiver attached (never reading): returns once the sink waits for space
  guint64 dropped_now = 0;
  g_object_get(Element(h), "dropped", &dropped_now, nullptr);
  EXPECT_EQ(dropped_now, dropped) << "nothing dropped while a receiver is attached";
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  p.thread.join();
  EXPECT_EQ(p.last, GST_FLOW_FLUSHING);
  gst_harness_teardown(h);
}

// Data after EOS re-creates the ring; if that fails, later buffers are an error,
// not a crash on the missing ring.
TEST(ShmringSink, FailedRingRecreationThenMoreDataIsAnError) {
  const std::string name = UniqueName("gsink-recreate");
  GstHarness* h = NewSink(name, "capacity=4096");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(Element(h), bus);
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&seg)));
  g_object_set(Element(h), "shm-name", "no/slashes", nullptr);  // the re-creation fails
  EXPECT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2, 2, 2, 2, 2})), GST_FLOW_ERROR);
  GstMessage* msg = gsttest::WaitForError(bus);
  EXPECT_NE(gsttest::ErrorText(msg).find("no/slashes"), std::string::npos);
  gst_message_unref(msg);
  EXPECT_EQ(gst_harness_push(h, NewBuffer({3, 3, 3, 3, 3, 3, 3, 3})), GST_FLOW_ERROR);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos())) << "EOS without a ring";
  gst_element_set_bus(Element(h), nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// Properties read for every buffer may change while PLAYING.
// Every property reads back what was set and setting one never changes another.
TEST(ShmringSink, PropertiesAreIndependent) {
  GstElement* sink = gst_element_factory_make("shmringsink", nullptr);
  g_object_set(sink, "linger", 3u, nullptr);
  gboolean allow = TRUE;
  guint linger = 0;
  g_object_get(sink, "allow-foreign-owner", &allow, "linger", &linger, nullptr);
  EXPECT_FALSE(allow) << "setting linger changed allow-foreign-owner";
  EXPECT_EQ(linger, 3u);
  g_object_set(sink, "allow-foreign-owner", TRUE, nullptr);
  g_object_get(sink, "allow-foreign-owner", &allow, "linger", &linger, nullptr);
  EXPECT_TRUE(allow);
  EXPECT_EQ(linger, 3u);
  guint64 not_received = 1;
  g_object_get(sink, "not-received", &not_received, nullptr);
  EXPECT_EQ(not_received, 0u);
  gst_object_unref(sink);
}

TEST(ShmringSink, PerBufferPropertiesAreMutableInPlaying) {
  GstElement* sink = gst_element_factory_make("shmringsink", nullptr);
  ASSERT_NE(sink, nullptr);
  GParamSpec* ps = g_object_class_find_property(G_OBJECT_GET_CLASS(sink), "wait-for-space");
  ASSERT_NE(ps, nullptr);
  EXPECT_TRUE(ps->flags & GST_PARAM_MUTABLE_PLAYING);
  ps = g_object_class_find_property(G_OBJECT_GET_CLASS(sink), "capacity");
  EXPECT_FALSE(ps->flags & GST_PARAM_MUTABLE_PLAYING) << "used at start only";
  gst_object_unref(sink);
}

// The element messages posted so far on `bus` named `name`, in order.
std::vector<GstMessage*> ElementMessages(GstBus* bus, const char* name) {
  std::vector<GstMessage*> out;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    if (gst_structure_has_name(gst_message_get_structure(m), name)) {
      out.push_back(m);
    } else {
      gst_message_unref(m);
    }
  }
  return out;
}

// A live upstream (latency query says live): the ring is marked LIVE, nothing is
// written while no receiver is attached (counted in not-received, not dropped),
// and a receiver that attaches gets caps and the buffers from then on, an element
// message with its pid, and (encoded stream) a force-key-unit request upstream.
TEST(ShmringSink, LiveStreamKeepsNoBacklogAndAsksForAKeyframeForANewReceiver) {
  const std::string name = UniqueName("gsink-live");
  GstHarness* h = NewSink(name, "capacity=8192", /*live=*/true);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, "video/x-h264,stream-format=byte-stream,alignment=au");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 2, 3, 4})), GST_FLOW_OK);
  }
  guint64 not_received = 0, dropped = 0;
  g_object_get(Element(h), "not-received", &not_received, "dropped", &dropped, nullptr);
  EXPECT_EQ(not_received, 3u);
  EXPECT_EQ(dropped, 0u);
  // Drain the events the harness queued upstream so far.
  while (GstEvent* e = gst_harness_try_pull_upstream_event(h)) gst_event_unref(e);

  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_TRUE(c.ring()->ProducerLive());
  EXPECT_EQ(Kinds(c), std::vector<K>{}) << "no backlog for a late receiver";
  ASSERT_EQ(gst_harness_push(h, NewBuffer({5, 6, 7, 8})), GST_FLOW_OK);
  EXPECT_EQ(Kinds(c), (std::vector<K>{K::kCaps, K::kBuffer}));

  bool asked = false;
  while (GstEvent* e = gst_harness_try_pull_upstream_event(h)) {
    asked = asked || gst_video_event_is_force_key_unit(e);
    gst_event_unref(e);
  }
  EXPECT_TRUE(asked) << "no force-key-unit event upstream for the new receiver";
  std::vector<GstMessage*> msgs = ElementMessages(bus, "shmringsink-receiver-attached");
  ASSERT_EQ(msgs.size(), 1u);
  guint pid = 0;
  EXPECT_TRUE(gst_structure_get_uint(gst_message_get_structure(msgs[0]), "pid", &pid));
  EXPECT_EQ(pid, static_cast<guint>(getpid()));
  for (GstMessage* m : msgs) gst_message_unref(m);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// A live shmringsink in a harness with a bus of its own, past its caps and one
// buffer: pushes, its not-received count and the pids of its element messages.
struct LiveSinkOnABus {
  explicit LiveSinkOnABus(const std::string& name)
      : h(NewSink(name, "capacity=8192", /*live=*/true)), bus(gst_bus_new()) {
    gst_element_set_bus(h->element, bus);
    gst_harness_set_src_caps_str(h, kGrayCaps);
    EXPECT_EQ(Push(1), GST_FLOW_OK);
  }
  ~LiveSinkOnABus() {
    gst_element_set_bus(h->element, nullptr);
    gst_object_unref(bus);
    gst_harness_teardown(h);
  }
  LiveSinkOnABus(const LiveSinkOnABus&) = delete;
  LiveSinkOnABus& operator=(const LiveSinkOnABus&) = delete;
  GstFlowReturn Push(uint8_t v) { return gst_harness_push(h, NewBuffer({v, v, v, v, v, v, v, v})); }
  guint64 NotReceived() const {
    guint64 n = 0;
    g_object_get(Element(h), "not-received", &n, nullptr);
    return n;
  }
  // The "pid" of each `what` message posted since the last look (0 without one).
  std::vector<guint> Messages(const char* what) {
    std::vector<guint> pids;
    for (GstMessage* x : ElementMessages(bus, what)) {
      guint pid = 0;
      gst_structure_get_uint(gst_message_get_structure(x), "pid", &pid);
      pids.push_back(pid);
      gst_message_unref(x);
    }
    return pids;
  }
  GstHarness* h;
  GstBus* bus;
};

// Forks a receiver that attaches to `name`, says so and is SIGKILLed (its ATTACHED
// flag stays set). `between` runs while it is attached. Returns its pid.
template <typename Between>
pid_t AttachThenKill(const std::string& name, Between between) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    shm::ShmConsumer c(name);
    char x = 1;
    if (!c.IsValid() || write(fds[1], &x, 1) != 1) _exit(2);
    pause();
    _exit(3);
  }
  close(fds[1]);
  char x = 0;
  const bool ok = read(fds[0], &x, 1) == 1;
  close(fds[0]);
  if (ok) between(child);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  return ok ? child : -1;
}

// The first step of a receiver's attach, by hand: the role byte of slot 0, then
// (`clear_stale`, PROTOCOL.md section 7; a receiver of an older build does not) a
// dead receiver's ATTACHED flag cleared. Returns the fd that holds the claim
// (closing it gives the claim up), -1 on failure.
int ClaimSlot0(const std::string& name, bool clear_stale) {
  const int fd = open(("/dev/shm/" + name).c_str(), O_RDWR);
  if (fd < 0 ||
      shm::liveness::Take(fd, shm::liveness::kConsumerByte) != shm::liveness::Lock::kHeld) {
    return -1;
  }
  if (!clear_stale) return fd;
  void* m = mmap(nullptr, shm::layout::kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return -1;
  auto* flags = reinterpret_cast<std::atomic<uint32_t>*>(
      static_cast<uint8_t*>(m) + shm::layout::SlotOffset(0) + shm::layout::kSlotFlags);
  flags->fetch_and(~shm::layout::kConsumerAttached, std::memory_order_relaxed);
  munmap(m, shm::layout::kHeaderSize);
  return fd;
}

// A receiver is announced (and, live, written for) once it finished attaching, not
// when it claimed its slot: a receiver claims the slot's role byte first, then
// stores its pid and start and sets ATTACHED. A slot only claimed gets no message
// and no frames, also when a killed receiver's ATTACHED flag is still set there
// (a claimant of an older build that does not clear it: the attach count tells);
// the receiver that then attaches gets exactly one message, with its pid.
TEST(ShmringSink, AnnouncesAReceiverOnceItFinishedAttachingNotWhenItClaimedItsSlot) {
  const std::string name = UniqueName("gsink-claim");
  LiveSinkOnABus s(name);
  const auto claim_push_release = [&](uint8_t fill) {
    const int fd = ClaimSlot0(name, /*clear_stale=*/false);
    ASSERT_GE(fd, 0);
    const guint64 before = s.NotReceived();
    ASSERT_EQ(s.Push(fill), GST_FLOW_OK);
    EXPECT_EQ(s.NotReceived(), before + 1) << "written for a receiver still attaching";
    EXPECT_TRUE(s.Messages("shmringsink-receiver-attached").empty())
        << "a claimed slot was announced";
    close(fd);  // the claim ends (a receiver that gave up)
  };
  claim_push_release(2);
  const pid_t killed = AttachThenKill(name, [&](pid_t child) {
    ASSERT_EQ(s.Push(3), GST_FLOW_OK);
    EXPECT_EQ(s.Messages("shmringsink-receiver-attached"), std::vector<guint>{guint(child)});
  });
  ASSERT_GT(killed, 0);
  ASSERT_EQ(s.Push(4), GST_FLOW_OK);
  EXPECT_EQ(s.Messages("shmringsink-receiver-left").size(), 1u);
  claim_push_release(5);     // the dead receiver's ATTACHED flag is still set
  shm::ShmConsumer c(name);  // this process attaches: one message, our pid
  ASSERT_TRUE(c.IsValid()) << c.error();
  ASSERT_EQ(s.Push(6), GST_FLOW_OK);
  EXPECT_EQ(s.Messages("shmringsink-receiver-attached"), std::vector<guint>{guint(getpid())});
}

// A slot claimed over a killed receiver (its flag cleared by the claim, as
// receivers do) is not announced nor written for, whether the sink saw that
// receiver (then it posts that it left) or never did (it attached and died between
// two looks); the receiver that then attaches gets one message.
TEST(ShmringSink, ClaimOverAKilledReceiverIsNotAnnouncedSeenOrNot) {
  const std::string name = UniqueName("gsink-reclaim");
  LiveSinkOnABus s(name);
  // Seen: announced, killed, the slot claimed before the sink looks again.
  const pid_t seen = AttachThenKill(name, [&](pid_t child) {
    ASSERT_EQ(s.Push(2), GST_FLOW_OK);
    EXPECT_EQ(s.Messages("shmringsink-receiver-attached"), std::vector<guint>{guint(child)});
  });
  ASSERT_GT(seen, 0);
  int fd = ClaimSlot0(name, /*clear_stale=*/true);
  ASSERT_GE(fd, 0);
  guint64 before = s.NotReceived();
  ASSERT_EQ(s.Push(3), GST_FLOW_OK);
  EXPECT_EQ(s.NotReceived(), before + 1) << "written for a receiver still attaching";
  EXPECT_EQ(s.Messages("shmringsink-receiver-left").size(), 1u) << "the killed one's leaving";
  EXPECT_TRUE(s.Messages("shmringsink-receiver-attached").empty());
  close(fd);
  // Unseen: attached and killed with no look in between, then the slot claimed.
  ASSERT_GT(AttachThenKill(name, [](pid_t) {}), 0);
  fd = ClaimSlot0(name, /*clear_stale=*/true);
  ASSERT_GE(fd, 0);
  before = s.NotReceived();
  ASSERT_EQ(s.Push(4), GST_FLOW_OK);
  EXPECT_EQ(s.NotReceived(), before + 1) << "written for a receiver still attaching";
  EXPECT_TRUE(s.Messages("shmringsink-receiver-attached").empty())
      << "a claim over a receiver the sink never saw was announced";
  close(fd);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  ASSERT_EQ(s.Push(5), GST_FLOW_OK);
  EXPECT_EQ(s.Messages("shmringsink-receiver-attached"), std::vector<guint>{guint(getpid())});
}

// A non-live upstream keeps everything for its receiver and leaves LIVE clear.
TEST(ShmringSink, NonLiveStreamKeepsItsBacklog) {
  const std::string name = UniqueName("gsink-nonlive");
  GstHarness* h = NewSink(name, "capacity=8192", /*live=*/false);
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_FALSE(c.ring()->ProducerLive());
  EXPECT_EQ(Kinds(c), (std::vector<K>{K::kCaps, K::kBuffer}));
  guint64 not_received = 0;
  g_object_get(Element(h), "not-received", &not_received, nullptr);
  EXPECT_EQ(not_received, 0u);
  gst_harness_teardown(h);
}

// Attach and leave are element messages; the leave one once the receiver is gone,
// with the pid and slot it was announced with.
TEST(ShmringSink, PostsReceiverAttachedAndLeftMessages) {
  const std::string name = UniqueName("gsink-msgs");
  GstHarness* h = NewSink(name, "capacity=8192");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  EXPECT_TRUE(ElementMessages(bus, "shmringsink-receiver-attached").empty());
  {
    shm::ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    ASSERT_EQ(gst_harness_push(h, NewBuffer({2, 2, 2, 2, 2, 2, 2, 2})), GST_FLOW_OK);
    std::vector<GstMessage*> m = ElementMessages(bus, "shmringsink-receiver-attached");
    EXPECT_EQ(m.size(), 1u);
    for (GstMessage* x : m) gst_message_unref(x);
  }
  ASSERT_EQ(gst_harness_push(h, NewBuffer({3, 3, 3, 3, 3, 3, 3, 3})), GST_FLOW_OK);
  std::vector<GstMessage*> m = ElementMessages(bus, "shmringsink-receiver-left");
  ASSERT_EQ(m.size(), 1u);
  guint pid = 0, slot = 99;
  EXPECT_TRUE(gst_structure_get_uint(gst_message_get_structure(m[0]), "pid", &pid));
  EXPECT_EQ(pid, static_cast<guint>(getpid())) << "the pid it was announced with";
  EXPECT_TRUE(gst_structure_get_uint(gst_message_get_structure(m[0]), "slot", &slot));
  EXPECT_EQ(slot, 0u);
  for (GstMessage* x : m) gst_message_unref(x);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// Stopping without EOS (an error upstream, or a state change) closes the ring
// with no EOS record: the receiver can tell the stream was cut short.
TEST(ShmringSink, StopWithoutEosWritesNoEosRecord) {
  const std::string name = UniqueName("gsink-noeos");
  GstHarness* h = NewSink(name, "capacity=8192");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  shm::ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  gst_harness_teardown(h);  // stop without EOS
  EXPECT_TRUE(c.ring()->ProducerClosed());
  EXPECT_EQ(Kinds(c), (std::vector<K>{K::kCaps, K::kBuffer})) << "no EOS record";
}

// A stream that ended before any receiver attached stays for the first receiver
// after the sink stopped (linger), and a receiver then gets all of it with EOS.
TEST(ShmringSink, LingerKeepsAnEndedStreamForTheFirstReceiver) {
  const std::string name = UniqueName("gsink-linger");
  GstHarness* h = NewSink(name, "capacity=8192 linger=600");
  gst_harness_set_src_caps_str(h, kGrayCaps);
  ASSERT_EQ(gst_harness_push(h, NewBuffer({1, 1, 1, 1, 1, 1, 1, 1})), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  std::vector<K> got;
  std::thread receiver([&] {
    // Attaches only once the sink is stopping (teardown below is running or done
    // waiting): without linger the ring would be gone by then.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    shm::ConsumerOptions o;
    o.open_timeout_ns = 60'000'000'000;  // a minute: the ring is there at once with linger
    shm::ShmConsumer c(name, o);
    ASSERT_TRUE(c.IsValid()) << c.error();
    got = Kinds(c);
  });
  gst_harness_teardown(h);  // stop: lingers until the receiver attached
  receiver.join();
  EXPECT_EQ(got, (std::vector<K>{K::kCaps, K::kBuffer, K::kEos}));
}

}  // namespace
