// Profile 1 ("GStreamer framing"): every ring payload is a fixed little-endian
// message header followed by a body that is 8-aligned in the ring (payloads start
// 4 bytes into their 8-aligned record, so the body offset within the payload is 4 mod 8).
// GStreamer-agnostic on purpose: the elements, C++ apps and (mirrored) Python all speak it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
constexpr uint32_t kHeaderSize = 60;       // the fixed part; extensions follow it
constexpr uint32_t kMinHeaderSize = 60;    // what this version requires to read
constexpr uint32_t kMaxHeaderSize = 65532;  // header_size is a u16; entries are 4-aligned

// Header extension: entries between byte kHeaderSize and header_size, each
// [u16 type][u16 length][length bytes of value][zero padding to a multiple of 4].
// A reader that does not know a type skips it; a reader reads the fields it knows
// of a longer value and ignores the rest. Readers that predate extensions skip the
// whole area (the body starts at BodyOffset(header_size)) and so see what a record
// without them says: a BUFFER whose DTS is before running time 0 has dts = none.
enum class Ext : uint16_t {
  kNegativeDts = 1,         // u64 ns: the DTS is this far before running time 0 (dts is none)
  kAudioClipping = 2,       // GstAudioClippingMeta: u32 format, u32 0, u64 start, u64 end
  kVideoMeta = 3,           // GstVideoMeta: see VideoMeta (strides and offsets of padded frames)
  kReferenceTimestamp = 4,  // GstReferenceTimestampMeta: u64 timestamp, u64 duration, caps text
};
constexpr uint32_t kExtEntryHeaderSize = 4;  // u16 type, u16 length
constexpr uint32_t kExtAlign = 4;            // entries start 4-aligned
constexpr uint32_t kNegativeDtsSize = 8;
constexpr uint32_t kAudioClippingSize = 24;
constexpr uint32_t kVideoMaxPlanes = 4;                // GST_VIDEO_MAX_PLANES
constexpr uint32_t kVideoMetaSize = 72;                // 6 u32, 4 u64 offsets, 4 i32 strides
constexpr uint32_t kReferenceTimestampFixedSize = 16;  // then the reference caps, UTF-8, no NUL

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
  // Bytes of header, extensions included (DecodeMessage fills it; EncodeHeader
  // writes kHeaderSize plus the extension bytes it is given).
  uint32_t header_size = kHeaderSize;
};

// GstAudioClippingMeta: `start` and `end` units of `format` (a GstFormat: 2 =
// default, i.e. samples; 3 = time in ns) to clip from the start and end of the buffer.
struct AudioClipping {
  uint32_t format = 0;
  uint64_t start = 0;
  uint64_t end = 0;
};

// GstVideoMeta: the layout of a frame in the body (offsets from the body's start,
// strides in bytes), for frames whose planes are padded or not where the caps
// alone would put them. `format` is the GstVideoFormat value, `flags` the
// GstVideoFrameFlags.
struct VideoMeta {
  uint32_t flags = 0;
  uint32_t format = 0;
  uint32_t width = 0;
  uint32_t height = 0;
  uint32_t n_planes = 0;
  uint64_t offset[kVideoMaxPlanes] = {0, 0, 0, 0};
  int32_t stride[kVideoMaxPlanes] = {0, 0, 0, 0};
};

// GstReferenceTimestampMeta: `timestamp` (ns) of the buffer on the clock named
// by the caps text `reference` (e.g. "timestamp/x-ntp"), over `duration`.
struct ReferenceTimestamp {
  std::string reference;
  uint64_t timestamp = kTimeNone;
  uint64_t duration = kTimeNone;
};

// The extensions of one message, decoded.
struct Extensions {
  uint64_t negative_dts = kTimeNone;  // kTimeNone: no kNegativeDts entry
  bool has_audio_clipping = false;
  AudioClipping audio_clipping;
  bool has_video_meta = false;
  VideoMeta video_meta;
  std::vector<ReferenceTimestamp> reference_timestamps;
};

// Builds the extension area of one message. Single thread; never blocks.
class ExtensionWriter {
 public:
  void AddNegativeDts(uint64_t ns_before_zero);
  void AddAudioClipping(const AudioClipping& c);
  void AddVideoMeta(const VideoMeta& m);
  void AddReferenceTimestamp(const ReferenceTimestamp& r);
  // Appends one entry of `len` bytes (padded to kExtAlign).
  void Add(Ext type, const void* value, uint32_t len);
  // False when the entries would make header_size exceed kMaxHeaderSize (a
  // writer then leaves them out) or a value exceeds 65535 bytes.
  bool fits() const { return ok_ && kHeaderSize + bytes_.size() <= kMaxHeaderSize; }
  const uint8_t* data() const { return bytes_.data(); }
  uint32_t size() const { return static_cast<uint32_t>(bytes_.size()); }
  bool empty() const { return bytes_.empty(); }

 private:
  std::vector<uint8_t> bytes_;
  bool ok_ = true;
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

// Offset of the body in a message with `ext_len` bytes of extensions.
constexpr uint32_t BodyOffsetWithExtensions(uint32_t ext_len) {
  return BodyOffset(kHeaderSize + ext_len);
}

// Writes the header with the extension area `ext` (from a fitting ExtensionWriter)
// into `out`, which must hold BodyOffsetWithExtensions(ext.size()) bytes: header_size
// is kHeaderSize + ext.size(), the gap up to the body is zeroed.
// Any side, any thread; never blocks.
void EncodeHeader(const Header& h, const ExtensionWriter& ext, void* out);

// Decodes the extension area of a message DecodeMessage accepted (`h` is its
// header). Unknown types are skipped. Returns false, with `*error` naming the
// problem, when an entry runs past header_size or a known entry is shorter than
// its fields. Never reads outside the header. Any thread; never blocks.
bool DecodeExtensions(const void* payload, const Header& h, Extensions* out, const char** error);

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
