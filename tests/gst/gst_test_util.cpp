#include "gst_test_util.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "shm/shared_memory.hpp"

namespace {

// gst_init once for every test binary (gtest provides main).
class GstEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { gst_init(nullptr, nullptr); }
};
::testing::Environment* const gst_env = ::testing::AddGlobalTestEnvironment(new GstEnvironment);

}  // namespace

namespace gsttest {

void UnlinkRing(const std::string& name) {
  std::string err;
  shm::SharedMemory::Unlink(name, &err);
}

std::vector<uint8_t> Message(const shm::framing::Header& h, const void* body, size_t len) {
  std::vector<uint8_t> m(shm::framing::kHeaderSize + len);
  shm::framing::EncodeHeader(h, m.data());
  if (len != 0) std::memcpy(m.data() + shm::framing::kHeaderSize, body, len);
  return m;
}

std::vector<uint8_t> CapsMessage(const std::string& caps) {
  shm::framing::Header h;
  h.kind = shm::framing::Kind::kCaps;
  return Message(h, caps.data(), caps.size());
}

std::vector<uint8_t> BufferMessage(const std::vector<uint8_t>& body, uint64_t pts,
                                   uint64_t duration, uint32_t flags, uint64_t dts, uint64_t offset,
                                   uint64_t offset_end) {
  shm::framing::Header h;
  h.kind = shm::framing::Kind::kBuffer;
  h.pts = pts;
  h.dts = dts;
  h.duration = duration;
  h.flags = flags;
  h.offset = offset;
  h.offset_end = offset_end;
  h.send_time_ns = shm::framing::MonotonicNowNs();
  return Message(h, body.data(), body.size());
}

std::vector<uint8_t> EosMessage() {
  shm::framing::Header h;
  h.kind = shm::framing::Kind::kEos;
  return Message(h, nullptr, 0);
}

void Put(shm::ShmProducer& p, const std::vector<uint8_t>& msg) {
  const shm::Status s = p.WriteFor(msg.data(), static_cast<uint32_t>(msg.size()), shm::kForever);
  ASSERT_EQ(s, shm::Status::kOk) << shm::StatusName(s);
}

void WaitForConsumer(shm::ShmProducer& p) {
  while (!p.ConsumerAttached()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

GstMessage* WaitForError(GstBus* bus) {
  return gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_ERROR);
}

std::string ErrorText(GstMessage* msg) {
  GError* err = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  std::string text = std::string(err ? err->message : "") + " | " + (debug ? debug : "");
  g_clear_error(&err);
  g_free(debug);
  return text;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(salt * 31 + i * 7);
  return v;
}

GstElement* Element(GstHarness* h, const char* name) {
  GstElement* e = gst_bin_get_by_name(GST_BIN(h->element), name);
  gst_object_unref(e);  // the bin keeps it alive
  return e;
}

GstHarness* NewSinkHarness(const std::string& name, const std::string& extra, bool live) {
  const std::string desc = "shmringsink name=sink shm-name=" + name + " " + extra;
  GstHarness* h = gst_harness_new_parse(desc.c_str());
  gst_harness_set_live(h, live);
  return h;
}

std::vector<std::vector<uint8_t>> ReadAllMessages(const std::string& name) {
  std::vector<std::vector<uint8_t>> out;
  shm::ShmConsumer c(name);
  EXPECT_TRUE(c.IsValid()) << c.error();
  if (!c.IsValid()) return out;
  std::vector<uint8_t> buf(c.capacity());
  for (;;) {
    const shm::ReadResult r = c.TryRead(buf.data(), static_cast<uint32_t>(buf.size()));
    if (r.status != shm::Status::kOk) break;
    out.emplace_back(buf.begin(), buf.begin() + r.len);
  }
  return out;
}

PooledSink::PooledSink(const std::string& name, const std::string& extra, const char* caps)
    : h(NewSinkHarness(name, extra)) {
  gst_harness_set_src_caps_str(h, caps);
  GstCaps* c = gst_caps_from_string(caps);
  GstQuery* q = gst_query_new_allocation(c, TRUE);
  gst_caps_unref(c);
  if (gst_pad_peer_query(h->srcpad, q) && gst_query_get_n_allocation_pools(q) > 0) {
    guint min = 0;
    gst_query_parse_nth_allocation_pool(q, 0, &pool, &size, &min, &max);
  }
  gst_query_unref(q);
  if (pool != nullptr) {
    EXPECT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  }
}

PooledSink::~PooledSink() {
  if (pool != nullptr) {
    gst_buffer_pool_set_active(pool, FALSE);
    gst_object_unref(pool);
  }
  TeardownHarness();
}

GstBuffer* PooledSink::Acquire() {
  GstBuffer* b = nullptr;
  EXPECT_EQ(gst_buffer_pool_acquire_buffer(pool, &b, nullptr), GST_FLOW_OK);
  return b;
}

void PooledSink::TeardownHarness() {
  if (h != nullptr) gst_harness_teardown(h);
  h = nullptr;
}

LogWatch::LogWatch(const char* category, GstDebugLevel threshold) : category_(category) {
  gst_debug_remove_log_function(gst_debug_log_default);
  gst_debug_set_threshold_for_name(category, threshold);
  gst_debug_add_log_function(&LogWatch::Record, this, nullptr);
}

LogWatch::~LogWatch() {
  gst_debug_remove_log_function_by_data(this);
  gst_debug_unset_threshold_for_name(category_.c_str());
  gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
}

void LogWatch::Record(GstDebugCategory* cat, GstDebugLevel level, const gchar*, const gchar*, gint,
                      GObject*, GstDebugMessage* message, gpointer self) {
  auto* watch = static_cast<LogWatch*>(self);
  const gchar* text = gst_debug_message_get(message);
  if (text == nullptr || watch->category_ != gst_debug_category_get_name(cat)) return;
  std::lock_guard<std::mutex> lock(watch->mutex_);
  watch->lines_.emplace_back(level, text);
}

int LogWatch::Count(GstDebugLevel level, const char* text) const {
  std::lock_guard<std::mutex> lock(mutex_);
  int n = 0;
  for (const auto& [l, line] : lines_) {
    if (l == level && line.find(text) != std::string::npos) ++n;
  }
  return n;
}

void LogWatch::WaitFor(GstDebugLevel level, const char* text, int n) const {
  while (Count(level, text) < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace gsttest
