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

}  // namespace gsttest
