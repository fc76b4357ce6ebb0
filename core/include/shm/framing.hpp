// Profile 1 ("GStreamer framing"): every ring payload is a fixed little-endian
// message header followed by a body that is 8-aligned in the ring (payloads start
// 4 bytes into their 8-aligned record, so the body offset within the payload is 4 mod 8).
// GStreamer-agnostic on purpose: the elements, C++ apps and (mirrored) Python all speak it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shm {
namespace framing {

enum class Kind : uint16_t {
  kCaps = 1,    // body: caps string (gst_caps_to_string), UTF-8, no NUL
  kBuffer = 2,  // body: buffer bytes
  kEos = 3,     // body: empty
};

// Header field offsets within a payload.
constexpr uint32_t kKindOffset = 0;        // u16
constexpr uint32_t kHeaderSizeOffset = 2;  // u16, bytes; body at BodyOffset(header_size)
constexpr uint32_t kFlagsOffset = 4;       // u32, GstBufferFlags (BUFFER), else 0
constexpr uint32_t kPtsOffset = 8;         // u64 ns, kTimeNone = unset
constexpr uint32_t kDtsOffset = 16;        // u64 ns
constexpr uint32_t kDurationOffset = 24;   // u64 ns
constexpr uint32_t kOffsetOffset = 32;     // u64, kOffsetNone = unset
constexpr uint32_t kOffsetEndOffset = 40;  // u64
constexpr uint32_t kSendTimeOffset = 48;   // u64 ns, writer's CLOCK_MONOTONIC at write; 0 = unknown
constexpr uint32_t kReservedOffset = 56;   // u32, zero
constexpr uint32_t kHeaderSize = 60;       // what this version writes
constexpr uint32_t kMinHeaderSize = 60;    // what this version requires to read

constexpr uint64_t kTimeNone = ~uint64_t{0};    // GST_CLOCK_TIME_NONE
constexpr uint64_t kOffsetNone = ~uint64_t{0};  // GST_BUFFER_OFFSET_NONE

struct Header {
  Kind kind = Kind::kBuffer;
  uint32_t flags = 0;
  uint64_t pts = kTimeNone;
  uint64_t dts = kTimeNone;
  uint64_t duration = kTimeNone;
  uint64_t offset = kOffsetNone;
  uint64_t offset_end = kOffsetNone;
  uint64_t send_time_ns = 0;
};

// Offset of the body in a payload whose header declares `header_size` bytes: the
// first offset >= header_size that is 4 mod 8, i.e. 8-aligned in the ring.
// Any thread; never blocks.
constexpr uint32_t BodyOffset(uint32_t header_size) { return ((header_size + 4u + 7u) & ~7u) - 4u; }
static_assert(BodyOffset(kHeaderSize) == kHeaderSize,
              "writers put the body right after the header");
static_assert((BodyOffset(57) + 4) % 8 == 0 && BodyOffset(57) >= 57, "body 8-aligned in the ring");

// Writes the kHeaderSize-byte header (reserved bytes zero) into `out`, which must hold
// kHeaderSize bytes; the body follows at offset kHeaderSize.
// Any side, any thread; never blocks.
void EncodeHeader(const Header& h, void* out);

// Parses a payload. On success fills `h`, points `body`/`body_len` into `payload`
// and returns true. Returns false (and sets `*error` to a static text naming the
// field) when the payload is shorter than its header, declares a header smaller
// than kMinHeaderSize, or a body offset past its end. Unknown kinds parse fine:
// callers skip what they do not understand. Never reads outside `payload`.
// Any thread; never blocks.
bool DecodeMessage(const void* payload, uint32_t len, Header* h, const uint8_t** body,
                   uint32_t* body_len, const char** error);

// Monotonic clock in ns, the clock send_time_ns is taken from (CLOCK_MONOTONIC on
// POSIX, QueryPerformanceCounter on Windows): comparable across processes.
// Any thread; never blocks.
uint64_t MonotonicNowNs();

}  // namespace framing
}  // namespace shm
