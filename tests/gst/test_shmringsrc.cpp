// shmringsrc under GstHarness, fed by rings written with the C++ API: profile 1
// (caps, buffers, timestamps, EOS) and profile 0 with the caps property, latest
// mode, zero-copy release order and copying past half the ring, flushing and
// state changes while blocked, timeouts, invalid rings, corrupt records, dead
// producers, and live mode (latency, timestamps on this pipeline's clock).
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gst_test_util.hpp"
#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"

namespace {

using gsttest::BufferMessage;
using gsttest::CapsMessage;
using gsttest::EosMessage;
using gsttest::Pattern;
using gsttest::Put;
using gsttest::UniqueName;

constexpr const char* kCapsA =
    "video/x-raw, format=(string)GRAY8, width=(int)4, height=(int)2, "
    "framerate=(fraction)30/1";
constexpr const char* kCapsB =
    "video/x-raw, format=(string)GRAY8, width=(int)2, height=(int)2, "
    "framerate=(fraction)30/1";

shm::ShmProducer* NewProducer(const std::string& name, uint32_t capacity,
                              uint32_t profile = shm::layout::kProfileGstFraming) {
  shm::ProducerOptions o;
  o.capacity = capacity;
  o.profile = profile;
  auto* p = new shm::ShmProducer(name, o);
  EXPECT_TRUE(p->IsValid()) << p->error();
  return p;
}

// The element inside the harness's bin (gst_harness_new_parse wraps it).
GstElement* Element(GstHarness* h) {
  GstElement* e = gst_bin_get_by_name(GST_BIN(h->element), "src");
  gst_object_unref(e);  // the bin keeps it alive
  return e;
}

GstHarness* NewSrc(const std::string& name, const std::string& extra = "") {
  const std::string desc = "shmringsrc name=src shm-name=" + name + " " + extra;
  return gst_harness_new_parse(desc.c_str());
}

std::vector<uint8_t> Bytes(GstBuffer* b) {
  std::vector<uint8_t> v(gst_buffer_get_size(b));
  gst_buffer_extract(b, 0, v.data(), v.size());
  return v;
}

// The next event of type `t` (others skipped); nullptr after the harness's 60 s.
GstEvent* PullEvent(GstHarness* h, GstEventType t) {
  for (;;) {
    GstEvent* e = gst_harness_pull_event(h);
    if (e == nullptr || GST_EVENT_TYPE(e) == t) return e;
    gst_event_unref(e);
  }
}

std::string CapsOf(GstEvent* e) {
  GstCaps* caps = nullptr;
  gst_event_parse_caps(e, &caps);
  gchar* s = gst_caps_to_string(caps);
  std::string out(s);
  g_free(s);
  return out;
}

// A bus on a harnessed element, for its error messages.
struct Bus {
  GstElement* element;
  GstBus* bus;
  explicit Bus(GstElement* e) : element(e), bus(gst_bus_new()) { gst_element_set_bus(e, bus); }
  ~Bus() {
    gst_element_set_bus(element, nullptr);
    gst_object_unref(bus);
  }
  std::string WaitForError() {
    GstMessage* m = gsttest::WaitForError(bus);
    std::string t = gsttest::ErrorText(m);
    gst_message_unref(m);
    return t;
  }
};

// Starts the harness expecting start() to refuse: the state change fails at
// once (not later, from the streaming thread) with the error on the bus.
std::string PlayExpectingStartError(GstHarness* h, Bus& bus) {
  EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  return bus.WaitForError();
}

TEST(ShmringSrc, Profile1CapsBuffersTimestampsAndEos) {
  const std::string name = UniqueName("gsrc-p1");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 1), GST_SECOND, 33333333, GST_BUFFER_FLAG_DISCONT,
                        GST_SECOND - 10, 7, 8));
  Put(*p,
      BufferMessage(Pattern(8, 2), GST_SECOND + 33333333, 33333333, GST_BUFFER_FLAG_DELTA_UNIT));
  Put(*p, CapsMessage(kCapsB));
  Put(*p, BufferMessage(Pattern(4, 3), GST_SECOND + 66666666, 33333333));
  Put(*p, EosMessage());

  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  GstBuffer* b1 = gst_harness_pull(h);
  ASSERT_NE(b1, nullptr);
  EXPECT_EQ(Bytes(b1), Pattern(8, 1));
  EXPECT_EQ(GST_BUFFER_PTS(b1), GST_SECOND);
  EXPECT_EQ(GST_BUFFER_DTS(b1), GST_SECOND - 10);
  EXPECT_EQ(GST_BUFFER_DURATION(b1), 33333333u);
  EXPECT_EQ(GST_BUFFER_OFFSET(b1), 7u);
  EXPECT_EQ(GST_BUFFER_OFFSET_END(b1), 8u);
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(b1, GST_BUFFER_FLAG_DISCONT));
  GstBuffer* b2 = gst_harness_pull(h);
  ASSERT_NE(b2, nullptr);
  EXPECT_EQ(Bytes(b2), Pattern(8, 2));
  EXPECT_EQ(GST_BUFFER_PTS(b2), GST_SECOND + 33333333);
  EXPECT_FALSE(GST_BUFFER_DTS_IS_VALID(b2));
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(b2, GST_BUFFER_FLAG_DELTA_UNIT));
  EXPECT_FALSE(GST_BUFFER_OFFSET_IS_VALID(b2));
  GstBuffer* b3 = gst_harness_pull(h);
  ASSERT_NE(b3, nullptr);
  EXPECT_EQ(Bytes(b3), Pattern(4, 3));
  EXPECT_EQ(GST_BUFFER_PTS(b3), GST_SECOND + 66666666);

  GstEvent* caps1 = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps1, nullptr);
  EXPECT_EQ(CapsOf(caps1), kCapsA);
  GstEvent* seg = PullEvent(h, GST_EVENT_SEGMENT);
  ASSERT_NE(seg, nullptr);
  const GstSegment* s = nullptr;
  gst_event_parse_segment(seg, &s);
  EXPECT_EQ(s->format, GST_FORMAT_TIME);
  EXPECT_EQ(s->start, GST_SECOND - 10) << "the segment starts at the first buffer";
  EXPECT_EQ(gst_segment_to_running_time(s, GST_FORMAT_TIME, GST_SECOND - 10), 0u);
  GstEvent* caps2 = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps2, nullptr);
  EXPECT_EQ(CapsOf(caps2), kCapsB);
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  EXPECT_NE(eos, nullptr) << "the EOS record ends the stream with EOS";
  for (GstEvent* e : {caps1, seg, caps2, eos}) gst_clear_event(&e);
  for (GstBuffer* b : {b1, b2, b3}) gst_buffer_unref(b);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, StartsBeforeTheProducerAndWaits) {
  const std::string name = UniqueName("gsrc-first");
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 5), 0));
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 5));
  gst_buffer_unref(b);
  p.reset();  // CLOSED without an EOS record: still a clean end of stream
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  EXPECT_NE(eos, nullptr);
  gst_clear_event(&eos);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, Profile0UsesTheCapsProperty) {
  const std::string name = UniqueName("gsrc-p0");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096, shm::layout::kProfileOpaque));
  for (uint8_t i = 0; i < 3; ++i) Put(*p, Pattern(4, i));
  p->Close();
  GstHarness* h = NewSrc(name, "caps=\"video/x-raw,format=GRAY8,width=2,height=2,framerate=1/1\"");
  gst_harness_play(h);
  for (uint8_t i = 0; i < 3; ++i) {
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Bytes(b), Pattern(4, i));
    gst_buffer_unref(b);
  }
  GstEvent* caps = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps, nullptr);
  EXPECT_EQ(CapsOf(caps),
            "video/x-raw, format=(string)GRAY8, width=(int)2, height=(int)2, "
            "framerate=(fraction)1/1");
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  EXPECT_NE(eos, nullptr);
  gst_clear_event(&caps);
  gst_clear_event(&eos);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, Profile0WithoutCapsIsAnError) {
  const std::string name = UniqueName("gsrc-p0nc");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096, shm::layout::kProfileOpaque));
  GstHarness* h = NewSrc(name);
  Bus bus(h->element);
  const std::string err = PlayExpectingStartError(h, bus);
  EXPECT_NE(err.find("caps property"), std::string::npos) << err;
  gst_harness_teardown(h);
}

TEST(ShmringSrc, DoTimestampUsesThisPipelinesClock) {
  const std::string name = UniqueName("gsrc-dots");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 1), 100 * GST_SECOND, 33333333));
  GstHarness* h = NewSrc(name, "do-timestamp=true");
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(GST_BUFFER_PTS_IS_VALID(b));
  EXPECT_LT(GST_BUFFER_PTS(b), 100 * GST_SECOND) << "receiver time, not the sender's";
  gst_buffer_unref(b);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, LatestSkipsToTheNewestBufferKeepingCaps) {
  const std::string name = UniqueName("gsrc-latest");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 1), 0));
  Put(*p, BufferMessage(Pattern(8, 2), 1));
  Put(*p, CapsMessage(kCapsB));
  Put(*p, BufferMessage(Pattern(4, 3), 2));
  Put(*p, BufferMessage(Pattern(4, 4), 3));
  GstHarness* h = NewSrc(name, "latest=true");
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(4, 4)) << "the newest buffer";
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT));
  gst_buffer_unref(b);
  GstEvent* caps = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps, nullptr);
  EXPECT_EQ(CapsOf(caps), kCapsB) << "caps skipped over still apply";
  gst_clear_event(&caps);
  guint64 skipped = 0;
  g_object_get(Element(h), "skipped", &skipped, nullptr);
  EXPECT_EQ(skipped, 3u);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, LatestSkipsOnlyToAKeyFrame) {
  const std::string name = UniqueName("gsrc-key");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage("video/x-h264, stream-format=(string)byte-stream, alignment=(string)au"));
  Put(*p, BufferMessage(Pattern(8, 1), 0));
  Put(*p, BufferMessage(Pattern(8, 2), 1, 1, GST_BUFFER_FLAG_DELTA_UNIT));
  Put(*p, BufferMessage(Pattern(8, 3), 2));  // key frame
  Put(*p, BufferMessage(Pattern(8, 4), 3, 1, GST_BUFFER_FLAG_DELTA_UNIT));
  Put(*p, EosMessage());
  GstHarness* h = NewSrc(name, "latest=true");
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 3)) << "newest key frame, not the newest delta";
  gst_buffer_unref(b);
  b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 4)) << "then on in order";
  gst_buffer_unref(b);
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  EXPECT_NE(eos, nullptr);
  gst_clear_event(&eos);
  gst_harness_teardown(h);
}

// Buffers wrap ring memory; freeing them out of order frees the ring in order.
TEST(ShmringSrc, ZeroCopyBuffersReleaseTheRingInOrder) {
  const std::string name = UniqueName("gsrc-zc");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 16384));
  std::vector<uint32_t> head;  // head after each message
  auto put = [&](const std::vector<uint8_t>& m) {
    Put(*p, m);
    head.push_back(p->ring()->LoadHead());
  };
  put(CapsMessage(kCapsA));
  for (uint8_t i = 1; i <= 4; ++i) put(BufferMessage(Pattern(1000, i), i));
  GstHarness* h = NewSrc(name, "zero-copy=true");
  gst_harness_play(h);
  GstBuffer* b[6] = {};
  for (int i = 1; i <= 4; ++i) {
    b[i] = gst_harness_pull(h);
    ASSERT_NE(b[i], nullptr);
    EXPECT_EQ(Bytes(b[i]), Pattern(1000, static_cast<uint8_t>(i)));
    EXPECT_TRUE(GST_MEMORY_IS_READONLY(gst_buffer_peek_memory(b[i], 0)))
        << "buffer " << i << " wraps the ring (read-only) instead of a copy";
  }
  gst_buffer_unref(b[2]);  // out of order: nothing can be freed yet
  put(BufferMessage(Pattern(1000, 5), 5));
  b[5] = gst_harness_pull(h);  // the src has handled every release by now
  ASSERT_NE(b[5], nullptr);
  EXPECT_EQ(p->ring()->LoadTail(), head[0]) << "buffer 1 still holds the ring";
  gst_buffer_unref(b[1]);
  while (p->ring()->LoadTail() != head[2])
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int i : {3, 4, 5}) gst_buffer_unref(b[i]);
  while (p->ring()->LoadTail() != head[5])
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  gst_harness_teardown(h);
}

// Downstream holding every buffer must not stall the sender with zero-copy=false:
// the src copies and frees each record at once.
TEST(ShmringSrc, BuffersHeldDownstreamDoNotStallTheRingWithoutZeroCopy) {
  const std::string name = UniqueName("gsrc-hold");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  constexpr int kCount = 30;
  std::thread writer([&] {
    Put(*p, CapsMessage(kCapsA));
    for (int i = 0; i < kCount; ++i)
      Put(*p, BufferMessage(Pattern(1000, static_cast<uint8_t>(i)), i));
    Put(*p, EosMessage());
  });
  GstHarness* h = NewSrc(name, "zero-copy=false");
  gst_harness_play(h);
  std::vector<GstBuffer*> held;
  for (int i = 0; i < kCount; ++i) {
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Bytes(b), Pattern(1000, static_cast<uint8_t>(i)));
    EXPECT_FALSE(GST_MEMORY_IS_READONLY(gst_buffer_peek_memory(b, 0))) << "a copy";
    held.push_back(b);
  }
  writer.join();
  for (GstBuffer* b : held) gst_buffer_unref(b);
  gst_harness_teardown(h);
}

// With zero-copy, a buffer held downstream pins the ring behind it: the sender
// stalls, the src says so with a warning, and freeing the buffer resumes flow.
TEST(ShmringSrc, ZeroCopyStallIsReportedAndEndsWhenBuffersAreFreed) {
  const std::string name = UniqueName("gsrc-stall");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  constexpr int kCount = 10;
  std::thread writer([&] {
    Put(*p, CapsMessage(kCapsA));
    for (int i = 0; i < kCount; ++i)
      Put(*p, BufferMessage(Pattern(1000, static_cast<uint8_t>(i)), i));
    Put(*p, EosMessage());
  });
  GstHarness* h = NewSrc(name, "zero-copy=true");
  Bus bus(h->element);
  gst_harness_play(h);
  std::vector<GstBuffer*> held;
  for (int i = 0; i < 3; ++i) {  // what fits in the ring behind the first buffer
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    held.push_back(b);
  }
  GstMessage* warning =
      gst_bus_timed_pop_filtered(bus.bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_WARNING);
  GError* err = nullptr;
  gst_message_parse_warning(warning, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("Downstream holds buffers"), std::string::npos)
      << err->message;
  g_clear_error(&err);
  gst_message_unref(warning);
  for (GstBuffer* b : held) gst_buffer_unref(b);
  for (int i = 3; i < kCount; ++i) {
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Bytes(b), Pattern(1000, static_cast<uint8_t>(i)));
    gst_buffer_unref(b);
  }
  writer.join();
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  EXPECT_NE(eos, nullptr);
  gst_clear_event(&eos);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, TimeoutWithoutProducerIsAnError) {
  const std::string name = UniqueName("gsrc-to");
  GstHarness* h = NewSrc(name, "timeout=50000000");
  Bus bus(h->element);
  gst_harness_play(h);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("No sender created ring"), std::string::npos) << err;
  EXPECT_NE(err.find(name), std::string::npos) << err;
  gst_harness_teardown(h);
}

TEST(ShmringSrc, InvalidRingIsAnErrorAtOnceWhateverTheTimeout) {
  const std::string name = UniqueName("gsrc-bad");
  {
    shm::SharedMemory mem(name, 4096, true);
    ASSERT_TRUE(mem.valid()) << mem.error_message();
    std::memcpy(static_cast<uint8_t*>(mem.data()) + shm::layout::kMagicOffset, "JUNK", 4);
  }
  GstHarness* h = NewSrc(name, "timeout=0");  // would wait forever for a missing ring
  Bus bus(h->element);
  const std::string err = PlayExpectingStartError(h, bus);
  EXPECT_NE(err.find("cannot be read"), std::string::npos) << err;
  EXPECT_NE(err.find("magic"), std::string::npos) << err;
  gst_harness_teardown(h);
  gsttest::UnlinkRing(name);
}

// A second receiver on a ring that has one fails its state change in start()
// with the first one's pid in the main message (never waits, never hangs).
TEST(ShmringSrc, SecondReceiverFailsInStartNamingTheFirst) {
  const std::string name = UniqueName("gsrc-second");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  GstHarness* first = NewSrc(name);
  gst_harness_play(first);
  gsttest::WaitForConsumer(*p);
  GstHarness* second = NewSrc(name, "timeout=0");
  Bus bus(second->element);
  const std::string err = PlayExpectingStartError(second, bus);
  const std::string want =
      "already has a receiver (pid " + std::to_string(static_cast<unsigned>(getpid())) + ")";
  const size_t at = err.find(want);
  ASSERT_NE(at, std::string::npos) << err;
  EXPECT_LT(at, err.find(" | ")) << "in the main message, not only the debug text: " << err;
  gst_harness_teardown(second);
  gst_harness_teardown(first);
}

// A CAPS record with a memory feature other than system memory is refused: the
// buffers pushed are system memory, whatever the record says.
TEST(ShmringSrc, CapsRecordWithAnotherMemoryFeatureIsRefused) {
  const std::string name = UniqueName("gsrc-dmabuf");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage("video/x-raw(memory:DMABuf), format=(string)GRAY8, width=(int)4, "
                      "height=(int)2, framerate=(fraction)30/1"));
  Put(*p, BufferMessage(Pattern(8, 1), 0));
  GstHarness* h = NewSrc(name);
  Bus bus(h->element);
  gst_harness_play(h);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("memory:DMABuf"), std::string::npos) << err;
  EXPECT_NE(err.find("system memory"), std::string::npos) << err;
  gst_harness_teardown(h);
  // A caps record in system memory, spelled out, is fine.
  const std::string name2 = UniqueName("gsrc-sysmem");
  std::unique_ptr<shm::ShmProducer> p2(NewProducer(name2, 4096));
  Put(*p2, CapsMessage("video/x-raw(memory:SystemMemory), format=(string)GRAY8, width=(int)4, "
                       "height=(int)2, framerate=(fraction)30/1"));
  Put(*p2, BufferMessage(Pattern(8, 1), 0));
  GstHarness* h2 = NewSrc(name2);
  gst_harness_play(h2);
  GstBuffer* b = gst_harness_pull(h2);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 1));
  gst_buffer_unref(b);
  gst_harness_teardown(h2);
}

// A ring this user may not open is refused at once, even with timeout=0 (wait
// forever): permission denied is not "not there yet".
TEST(ShmringSrc, RingWithoutPermissionFailsInStartEvenWithoutTimeout) {
  const std::string name = UniqueName("gsrc-perm");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  const bool root = geteuid() == 0;
  // Root may open anything: act as nobody for the open; others cannot open 0000.
  if (!root) {
    ASSERT_EQ(chmod(("/dev/shm/" + name).c_str(), 0), 0);
  }
  GstHarness* h = NewSrc(name, "timeout=0");
  Bus bus(h->element);
  if (root) {
    ASSERT_EQ(seteuid(65534), 0);
  }
  const GstStateChangeReturn r = gst_element_set_state(h->element, GST_STATE_PLAYING);
  if (root) {
    ASSERT_EQ(seteuid(0), 0);
  }
  EXPECT_EQ(r, GST_STATE_CHANGE_FAILURE);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("ermission denied"), std::string::npos) << err;  // either case
  gst_harness_teardown(h);
}

// A ring owned by another user is refused in start() unless allow-foreign-owner is
// set (issue: a world-writable ring squatted by another user was read silently).
TEST(ShmringSrc, RingOfAnotherOwnerIsRefusedUnlessAllowed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the segment to another uid";
  const std::string name = UniqueName("gsrc-owner");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  ASSERT_EQ(chown(("/dev/shm/" + name).c_str(), 65534, 65534), 0);
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 3), 0));
  GstHarness* h = NewSrc(name, "timeout=0");
  Bus bus(h->element);
  const std::string err = PlayExpectingStartError(h, bus);
  EXPECT_NE(err.find("owned by uid 65534"), std::string::npos) << err;
  gst_harness_teardown(h);
  GstHarness* allowed = NewSrc(name, "timeout=0 allow-foreign-owner=true");
  gst_harness_play(allowed);
  GstBuffer* b = gst_harness_pull(allowed);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 3));
  gst_buffer_unref(b);
  gst_harness_teardown(allowed);
}

TEST(ShmringSrc, CorruptRecordIsAnError) {
  const std::string name = UniqueName("gsrc-corrupt");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  const char junk[10] = "too short";
  ASSERT_TRUE(p->Write(junk, sizeof junk));  // shorter than a profile-1 header
  GstHarness* h = NewSrc(name);
  Bus bus(h->element);
  gst_harness_play(h);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("corrupt record"), std::string::npos) << err;
  gst_harness_teardown(h);
}

TEST(ShmringSrc, NullWhileWaitingForTheProducerReturns) {
  const std::string name = UniqueName("gsrc-nullp");
  gsttest::LogWatch log("shmringsrc", GST_LEVEL_INFO);
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  log.WaitFor(GST_LEVEL_INFO, "waiting for a producer");
  // Never hangs (a hang fails by the test timeout).
  EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, NullWhileWaitingForDataReturnsAndDetaches) {
  const std::string name = UniqueName("gsrc-nulld");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  gsttest::WaitForConsumer(*p);
  EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  EXPECT_FALSE(p->ConsumerAttached()) << "stopping detaches from the ring";
  gst_harness_teardown(h);
}

TEST(ShmringSrc, FlushWhileWaitingForDataThenStreamingGoesOn) {
  const std::string name = UniqueName("gsrc-flush");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 1), 0));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  gst_buffer_unref(b);
  // The src now waits for data. Flush it, then go on.
  EXPECT_TRUE(gst_element_send_event(Element(h), gst_event_new_flush_start()));
  EXPECT_NE(PullEvent(h, GST_EVENT_FLUSH_START), nullptr);
  EXPECT_TRUE(gst_element_send_event(Element(h), gst_event_new_flush_stop(TRUE)));
  Put(*p, BufferMessage(Pattern(8, 2), 1));
  b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 2));
  gst_buffer_unref(b);
  gst_harness_teardown(h);
}

// A producer in a child process that writes caps and one buffer, then waits for
// a byte on `go` and dies without closing the ring.
pid_t SpawnDyingProducer(const std::string& name, int* go_fd) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  int ready[2];
  EXPECT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[1]);
    close(ready[0]);
    shm::ProducerOptions o;
    o.capacity = 4096;
    o.profile = shm::layout::kProfileGstFraming;
    auto* p = new shm::ShmProducer(name, o);  // leaked on purpose: no Close, no unlink
    const auto caps = CapsMessage(kCapsA);
    const auto buf = BufferMessage(Pattern(8, 9), 0);
    const bool ok = p->IsValid() && p->Write(caps.data(), static_cast<uint32_t>(caps.size())) &&
                    p->Write(buf.data(), static_cast<uint32_t>(buf.size()));
    char c = ok ? 1 : 0;
    if (write(ready[1], &c, 1) != 1) _exit(2);
    if (read(fds[0], &c, 1) < 0) _exit(3);
    _exit(0);
  }
  close(fds[0]);
  close(ready[1]);
  char c = 0;
  EXPECT_EQ(read(ready[0], &c, 1), 1);
  EXPECT_EQ(c, 1) << "child producer failed";
  close(ready[0]);
  *go_fd = fds[1];
  return pid;
}

void KillProducer(pid_t pid, int go_fd) {
  char c = 0;
  EXPECT_EQ(write(go_fd, &c, 1), 1);
  close(go_fd);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);  // reaped: its pid is really gone
}

TEST(ShmringSrc, ProducerDeathIsAnError) {
  const std::string name = UniqueName("gsrc-dead");
  int go = -1;
  const pid_t child = SpawnDyingProducer(name, &go);
  GstHarness* h = NewSrc(name);
  Bus bus(h->element);
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(8, 9));
  gst_buffer_unref(b);
  KillProducer(child, go);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("died"), std::string::npos) << err;
  gst_harness_teardown(h);
  gsttest::UnlinkRing(name);
}

TEST(ShmringSrc, ReconnectFollowsARestartedProducer) {
  const std::string name = UniqueName("gsrc-reconn");
  int go = -1;
  const pid_t child = SpawnDyingProducer(name, &go);
  GstHarness* h = NewSrc(name, "reconnect=true");
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  gst_buffer_unref(b);
  KillProducer(child, go);
  // A new sender replaces the stale ring under the same name.
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsB));
  Put(*p, BufferMessage(Pattern(4, 7), 0));
  b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(4, 7));
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT));
  gst_buffer_unref(b);
  GstEvent* caps = PullEvent(h, GST_EVENT_CAPS);  // kCapsA
  gst_clear_event(&caps);
  caps = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps, nullptr);
  EXPECT_EQ(CapsOf(caps), kCapsB);
  gst_clear_event(&caps);
  gst_harness_teardown(h);
}

GstClockTime RunningTime(GstEvent* segment_event, GstClockTime t) {
  const GstSegment* seg = nullptr;
  gst_event_parse_segment(segment_event, &seg);
  return gst_segment_to_running_time(seg, GST_FORMAT_TIME, t);
}

// A live src reports its latency: one frame of the caps' framerate, no maximum,
// and tells the pipeline (a LATENCY message) once it knows the framerate.
TEST(ShmringSrc, LiveSrcReportsOneFrameOfLatency) {
  const std::string name = UniqueName("gsrc-lat");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));  // framerate 30/1
  Put(*p, BufferMessage(Pattern(8, 1), 0, 33333333));
  GstHarness* h = NewSrc(name, "is-live=true");
  Bus bus(h->element);
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  gst_buffer_unref(b);
  // Posted in the streaming thread before the buffer was pushed: already there.
  GstMessage* m = gst_bus_pop_filtered(bus.bus, GST_MESSAGE_LATENCY);
  EXPECT_NE(m, nullptr) << "a LATENCY message once the framerate is known";
  if (m != nullptr) gst_message_unref(m);

  GstPad* pad = gst_element_get_static_pad(Element(h), "src");
  GstQuery* q = gst_query_new_latency();
  ASSERT_TRUE(gst_pad_query(pad, q));
  gboolean live = FALSE;
  GstClockTime min = 0, max = 0;
  gst_query_parse_latency(q, &live, &min, &max);
  EXPECT_TRUE(live);
  EXPECT_EQ(min, 33333333u) << "one frame at 30/1";
  EXPECT_EQ(max, GST_CLOCK_TIME_NONE);
  gst_query_unref(q);
  gst_object_unref(pad);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, NonLiveSrcReportsNotLive) {
  const std::string name = UniqueName("gsrc-nlat");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(8, 1), 0, 33333333));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  gst_buffer_unref(b);
  GstPad* pad = gst_element_get_static_pad(Element(h), "src");
  GstQuery* q = gst_query_new_latency();
  ASSERT_TRUE(gst_pad_query(pad, q));
  gboolean live = TRUE;
  gst_query_parse_latency(q, &live, nullptr, nullptr);
  EXPECT_FALSE(live);
  gst_query_unref(q);
  gst_object_unref(pad);
  gst_harness_teardown(h);
}

// is-live=true maps the sender's timestamps onto this pipeline's clock: the
// first buffer plays at the running time it arrived at, later ones keep the
// sender's spacing exactly. (The harness's test clock stands still: exact.)
TEST(ShmringSrc, IsLiveMapsSenderTimestampsOntoThisClock) {
  const std::string name = UniqueName("gsrc-live");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  constexpr GstClockTime kT0 = 100 * GST_SECOND;  // the sender's running time
  constexpr GstClockTime kStep = 40 * GST_MSECOND;
  Put(*p, CapsMessage(kCapsA));
  for (int i = 0; i < 3; ++i) {
    Put(*p, BufferMessage(Pattern(8, static_cast<uint8_t>(i)), kT0 + i * kStep, kStep));
  }
  GstHarness* h = NewSrc(name, "is-live=true");
  constexpr GstClockTime kNow = 5 * GST_SECOND;  // this pipeline's clock (base time 0)
  ASSERT_TRUE(gst_harness_set_time(h, kNow));
  gst_harness_play(h);
  GstBuffer* b[3] = {};
  for (auto& buf : b) {
    buf = gst_harness_pull(h);
    ASSERT_NE(buf, nullptr);
  }
  GstEvent* seg = PullEvent(h, GST_EVENT_SEGMENT);
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(RunningTime(seg, GST_BUFFER_PTS(b[0])), kNow) << "first buffer: arrival time";
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(RunningTime(seg, GST_BUFFER_PTS(b[i])), kNow + i * kStep)
        << "buffer " << i << " keeps the sender's spacing";
  }
  gst_event_unref(seg);
  for (GstBuffer* buf : b) gst_buffer_unref(buf);
  gst_harness_teardown(h);
}

// zero-copy=true: buffers wrap the ring (read-only memory) while the buffers
// downstream holds, with the new one, take at most half of it; past that copies
// (writable memory of their own), and once the held buffers are freed they wrap
// the ring again.
TEST(ShmringSrc, ZeroCopyCopiesOnceMoreThanHalfTheRingIsHeld) {
  const std::string name = UniqueName("gsrc-half");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  // Each 600-byte buffer takes a 664-byte record: 3 held = 1992 <= 2048 < 4 held.
  Put(*p, CapsMessage(kCapsA));
  for (uint8_t i = 0; i < 5; ++i) Put(*p, BufferMessage(Pattern(600, i), i));
  GstHarness* h = NewSrc(name, "zero-copy=true");
  gst_harness_play(h);
  std::vector<GstBuffer*> held;
  for (int i = 0; i < 5; ++i) {
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Bytes(b), Pattern(600, static_cast<uint8_t>(i)));
    const bool ring_backed = GST_MEMORY_IS_READONLY(gst_buffer_peek_memory(b, 0));
    EXPECT_EQ(ring_backed, i < 3) << "buffer " << i << " with " << i << " held before it";
    held.push_back(b);
  }
  for (GstBuffer* b : held) gst_buffer_unref(b);
  Put(*p, BufferMessage(Pattern(600, 9), 9));
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(600, 9));
  EXPECT_TRUE(GST_MEMORY_IS_READONLY(gst_buffer_peek_memory(b, 0))) << "ring-backed again";
  gst_buffer_unref(b);
  gst_harness_teardown(h);
}

// What counts is what downstream holds: a downstream that keeps only the last
// buffer (fakesink) gets every buffer ring-backed, also when a record does not fit
// before the ring's end and leaves a gap (the gap is not held by anyone).
// 836-byte buffers take 904-byte records: four fit before the end of a 4096-byte
// ring, the fifth wraps behind a 480-byte gap (previous + gap + this = 2288 >
// 2048, but previous + this = 1808).
TEST(ShmringSrc, ZeroCopyCountsOnlyWhatDownstreamHolds) {
  const std::string name = UniqueName("gsrc-last");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 4096));
  Put(*p, CapsMessage(kCapsA));
  GstHarness* h = NewSrc(name, "zero-copy=true");
  gst_harness_play(h);
  GstBuffer* last = nullptr;
  for (int i = 0; i < 12; ++i) {
    Put(*p, BufferMessage(Pattern(836, static_cast<uint8_t>(i)), i));
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Bytes(b), Pattern(836, static_cast<uint8_t>(i)));
    EXPECT_TRUE(GST_MEMORY_IS_READONLY(gst_buffer_peek_memory(b, 0)))
        << "buffer " << i << " is a copy with one buffer held downstream";
    if (last != nullptr) gst_buffer_unref(last);  // downstream keeps only the last one
    last = b;
  }
  gst_buffer_unref(last);
  gst_harness_teardown(h);
}

// Like shmsrc, the src hands out the ring's memory unless told to copy
// (tests/gst/test_zero_copy_pipelines.py checks it in two-process pipelines).
TEST(ShmringSrc, ZeroCopyIsTheDefault) {
  GstElement* src = gst_element_factory_make("shmringsrc", nullptr);
  ASSERT_NE(src, nullptr);
  gboolean zero_copy = FALSE;
  g_object_get(src, "zero-copy", &zero_copy, nullptr);
  EXPECT_TRUE(zero_copy);
  gst_object_unref(src);
}

// Properties read for every buffer may change while PLAYING.
TEST(ShmringSrc, PerBufferPropertiesAreMutableInPlaying) {
  GstElement* src = gst_element_factory_make("shmringsrc", nullptr);
  ASSERT_NE(src, nullptr);
  for (const char* prop : {"latest", "zero-copy"}) {
    GParamSpec* ps = g_object_class_find_property(G_OBJECT_GET_CLASS(src), prop);
    ASSERT_NE(ps, nullptr) << prop;
    EXPECT_TRUE(ps->flags & GST_PARAM_MUTABLE_PLAYING) << prop;
  }
  GParamSpec* ps = g_object_class_find_property(G_OBJECT_GET_CLASS(src), "shm-name");
  EXPECT_FALSE(ps->flags & GST_PARAM_MUTABLE_PLAYING) << "used when opening the ring only";
  gst_object_unref(src);
}

// Sets producer_flags LIVE on ring `name` the way a live producer does (atomic OR).
void MarkLive(const std::string& name) {
  shm::SharedMemory mem(name, 0, false);
  ASSERT_TRUE(mem.valid()) << mem.error_message();
  auto* flags = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(mem.data()) +
                                            shm::layout::kProducerFlagsOffset);
  __atomic_fetch_or(flags, shm::layout::kProducerLive, __ATOMIC_RELEASE);
}

TEST(ShmringSrc, LiveRingSkipsTheBacklogKeepsItsCapsAndStartsAtAKeyFrame) {
  const std::string name = UniqueName("gsrc-live");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  MarkLive(name);
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(4, 1), 0));  // the backlog
  Put(*p, BufferMessage(Pattern(4, 2), 1));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  gsttest::WaitForConsumer(*p);
  Put(*p, BufferMessage(Pattern(4, 3), 2, shm::framing::kTimeNone, GST_BUFFER_FLAG_DELTA_UNIT));
  Put(*p, BufferMessage(Pattern(4, 4), 3));
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(4, 4)) << "the first key frame published after the attach";
  EXPECT_EQ(GST_BUFFER_PTS(b), 3u);
  gst_buffer_unref(b);
  GstEvent* caps = PullEvent(h, GST_EVENT_CAPS);
  ASSERT_NE(caps, nullptr);
  EXPECT_EQ(CapsOf(caps), kCapsA) << "the backlog's caps still apply";
  gst_clear_event(&caps);
  GstEvent* seg = PullEvent(h, GST_EVENT_SEGMENT);
  ASSERT_NE(seg, nullptr);
  const GstSegment* s = nullptr;
  gst_event_parse_segment(seg, &s);
  EXPECT_EQ(s->start, 3u) << "the segment starts at the buffer actually pushed";
  gst_event_unref(seg);
  guint64 skipped = 0;
  g_object_get(Element(h), "skipped", &skipped, nullptr);
  EXPECT_EQ(skipped, 3u);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, NonLiveRingIsReadFromItsOldestRecord) {
  const std::string name = UniqueName("gsrc-nonlive");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(4, 1), 0, shm::framing::kTimeNone, GST_BUFFER_FLAG_DELTA_UNIT));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  GstBuffer* b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bytes(b), Pattern(4, 1));
  gst_buffer_unref(b);
  gst_harness_teardown(h);
}

// A sender that dropped buffers (ring full) marks the next one it writes DISCONT
// (shmringsink, FrameWriter): that buffer is DISCONT here, and only that one. The
// header's dropped counter rises before the reader reaches the gap: a buffer
// written before the drop but read after the counter rose is not DISCONT.
TEST(ShmringSrc, TheBufferAfterSenderDropsIsDiscont) {
  const std::string name = UniqueName("gsrc-drop");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(4, 1), 0));
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  gst_buffer_unref(gst_harness_pull(h));
  Put(*p, BufferMessage(Pattern(4, 2), 1));  // written before the drop
  p->CountDropped(2);                        // what shmringsink does for a full ring
  Put(*p, BufferMessage(Pattern(4, 3), 4, 33333333, GST_BUFFER_FLAG_DISCONT));
  Put(*p, BufferMessage(Pattern(4, 4), 5));
  const bool want[] = {false, true, false};
  for (int i = 0; i < 3; ++i) {
    GstBuffer* b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT), want[i])
        << "buffer " << i + 2 << (want[i] ? ": first after the gap" : ": no gap before it");
    gst_buffer_unref(b);
  }
  gst_harness_teardown(h);
}

TEST(ShmringSrc, ClosedWithoutAnEosRecordIsACutShortError) {
  const std::string name = UniqueName("gsrc-cut");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(4, 1), 0));
  p->Close();  // CLOSED, no EOS record: the sender stopped early
  GstHarness* h = NewSrc(name);
  Bus bus(h->element);
  gst_harness_play(h);
  gst_buffer_unref(gst_harness_pull(h));
  EXPECT_NE(bus.WaitForError().find("cut short"), std::string::npos);
  gst_harness_teardown(h);
}

TEST(ShmringSrc, ARingAlreadyReadToItsEndIsNotANewStream) {
  const std::string name = UniqueName("gsrc-drained");
  std::unique_ptr<shm::ShmProducer> p(NewProducer(name, 65536));
  Put(*p, CapsMessage(kCapsA));
  Put(*p, BufferMessage(Pattern(4, 1), 0));
  Put(*p, EosMessage());
  p->Close();  // the name stays until the producer is destroyed
  GstHarness* h = NewSrc(name);
  gst_harness_play(h);
  gst_buffer_unref(gst_harness_pull(h));
  GstEvent* eos = PullEvent(h, GST_EVENT_EOS);
  ASSERT_NE(eos, nullptr);
  gst_event_unref(eos);
  gst_harness_teardown(h);
  // The same receiver restarted right after EOS: waits for a next ring (none comes).
  GstHarness* again = NewSrc(name, "timeout=200000000");
  Bus bus(again->element);
  gst_harness_play(again);
  const std::string err = bus.WaitForError();
  EXPECT_NE(err.find("read to its end"), std::string::npos) << err;
  gst_harness_teardown(again);
}

}  // namespace
