#include "shm/framing.hpp"

#include <chrono>
#include <cstring>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <time.h>
#endif

namespace shm {
namespace framing {
namespace {

template <typename T>
void Put(uint8_t* out, uint32_t offset, T v) {
  std::memcpy(out + offset, &v, sizeof v);  // little-endian host (layout.hpp rule)
}

template <typename T>
T Get(const uint8_t* in, uint32_t offset) {
  T v;
  std::memcpy(&v, in + offset, sizeof v);
  return v;
}

}  // namespace

void EncodeHeader(const Header& h, void* out_ptr) {
  auto* out = static_cast<uint8_t*>(out_ptr);
  Put<uint16_t>(out, kKindOffset, static_cast<uint16_t>(h.kind));
  Put<uint16_t>(out, kHeaderSizeOffset, static_cast<uint16_t>(kHeaderSize));
  Put<uint32_t>(out, kFlagsOffset, h.flags);
  Put<uint64_t>(out, kPtsOffset, h.pts);
  Put<uint64_t>(out, kDtsOffset, h.dts);
  Put<uint64_t>(out, kDurationOffset, h.duration);
  Put<uint64_t>(out, kOffsetOffset, h.offset);
  Put<uint64_t>(out, kOffsetEndOffset, h.offset_end);
  Put<uint64_t>(out, kSendTimeOffset, h.send_time_ns);
  Put<uint32_t>(out, kReservedOffset, 0);
}

bool DecodeMessage(const void* payload, uint32_t len, Header* h, const uint8_t** body,
                   uint32_t* body_len, const char** error) {
  const auto* in = static_cast<const uint8_t*>(payload);
  if (len < kMinHeaderSize) {
    *error = "message is shorter than the 60-byte profile-1 header";
    return false;
  }
  const uint32_t header_size = Get<uint16_t>(in, kHeaderSizeOffset);
  if (header_size < kMinHeaderSize) {
    *error = "header_size is smaller than 60";
    return false;
  }
  const uint32_t body_offset = BodyOffset(header_size);
  if (body_offset > len) {
    *error = "header_size points past the end of the message";
    return false;
  }
  h->kind = static_cast<Kind>(Get<uint16_t>(in, kKindOffset));
  h->flags = Get<uint32_t>(in, kFlagsOffset);
  h->pts = Get<uint64_t>(in, kPtsOffset);
  h->dts = Get<uint64_t>(in, kDtsOffset);
  h->duration = Get<uint64_t>(in, kDurationOffset);
  h->offset = Get<uint64_t>(in, kOffsetOffset);
  h->offset_end = Get<uint64_t>(in, kOffsetEndOffset);
  h->send_time_ns = Get<uint64_t>(in, kSendTimeOffset);
  *body = in + body_offset;
  *body_len = len - body_offset;
  return true;
}

uint64_t MonotonicNowNs() {
#ifdef _WIN32
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  return static_cast<uint64_t>(c.QuadPart / f.QuadPart * 1000000000ull +
                               (c.QuadPart % f.QuadPart) * 1000000000ull / f.QuadPart);
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
#endif
}

}  // namespace framing
}  // namespace shm
