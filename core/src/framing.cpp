#include "shm/framing.hpp"

#include <chrono>
#include <cstring>
#include <utility>

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
  h->header_size = header_size;
  *body = in + body_offset;
  *body_len = len - body_offset;
  return true;
}

void ExtensionWriter::Add(Ext type, const void* value, uint32_t len) {
  if (len > 0xFFFFu) {
    ok_ = false;
    return;
  }
  const size_t at = bytes_.size();
  const size_t padded = (kExtEntryHeaderSize + len + kExtAlign - 1) & ~size_t{kExtAlign - 1};
  bytes_.resize(at + padded, 0);
  Put<uint16_t>(bytes_.data() + at, 0, static_cast<uint16_t>(type));
  Put<uint16_t>(bytes_.data() + at, 2, static_cast<uint16_t>(len));
  if (len > 0) std::memcpy(bytes_.data() + at + kExtEntryHeaderSize, value, len);
}

void ExtensionWriter::AddNegativeDts(uint64_t ns_before_zero) {
  uint8_t v[kNegativeDtsSize];
  Put<uint64_t>(v, 0, ns_before_zero);
  Add(Ext::kNegativeDts, v, sizeof v);
}

void ExtensionWriter::AddAudioClipping(const AudioClipping& c) {
  uint8_t v[kAudioClippingSize] = {};
  Put<uint32_t>(v, 0, c.format);
  Put<uint64_t>(v, 8, c.start);
  Put<uint64_t>(v, 16, c.end);
  Add(Ext::kAudioClipping, v, sizeof v);
}

void ExtensionWriter::AddVideoMeta(const VideoMeta& m) {
  uint8_t v[kVideoMetaSize] = {};
  Put<uint32_t>(v, 0, m.flags);
  Put<uint32_t>(v, 4, m.format);
  Put<uint32_t>(v, 8, m.width);
  Put<uint32_t>(v, 12, m.height);
  Put<uint32_t>(v, 16, m.n_planes);
  for (uint32_t i = 0; i < kVideoMaxPlanes; ++i) {
    Put<uint64_t>(v, 24 + 8 * i, m.offset[i]);
    Put<int32_t>(v, 56 + 4 * i, m.stride[i]);
  }
  Add(Ext::kVideoMeta, v, sizeof v);
}

void ExtensionWriter::AddReferenceTimestamp(const ReferenceTimestamp& r) {
  std::vector<uint8_t> v(kReferenceTimestampFixedSize + r.reference.size());
  Put<uint64_t>(v.data(), 0, r.timestamp);
  Put<uint64_t>(v.data(), 8, r.duration);
  if (!r.reference.empty()) {
    std::memcpy(v.data() + kReferenceTimestampFixedSize, r.reference.data(), r.reference.size());
  }
  Add(Ext::kReferenceTimestamp, v.data(), static_cast<uint32_t>(v.size()));
}

void EncodeHeader(const Header& h, const ExtensionWriter& ext, void* out_ptr) {
  auto* out = static_cast<uint8_t*>(out_ptr);
  EncodeHeader(h, out);
  Put<uint16_t>(out, kHeaderSizeOffset, static_cast<uint16_t>(kHeaderSize + ext.size()));
  if (!ext.empty()) std::memcpy(out + kHeaderSize, ext.data(), ext.size());
  const uint32_t end = kHeaderSize + ext.size();
  std::memset(out + end, 0, BodyOffset(end) - end);
}

bool DecodeExtensions(const void* payload, const Header& h, Extensions* out, const char** error) {
  const auto* in = static_cast<const uint8_t*>(payload);
  *out = Extensions();
  uint32_t at = kHeaderSize;
  // Fewer than an entry header's bytes left: padding, ignored.
  while (h.header_size >= at + kExtEntryHeaderSize) {
    const auto type = static_cast<Ext>(Get<uint16_t>(in, at));
    const uint32_t len = Get<uint16_t>(in, at + 2);
    const uint32_t value = at + kExtEntryHeaderSize;
    if (len > h.header_size - value) {
      *error = "a header extension entry runs past header_size";
      return false;
    }
    const uint8_t* v = in + value;
    switch (type) {
      case Ext::kNegativeDts:
        if (len < kNegativeDtsSize) {
          *error = "negative-DTS extension shorter than 8 bytes";
          return false;
        }
        out->negative_dts = Get<uint64_t>(v, 0);
        break;
      case Ext::kAudioClipping:
        if (len < kAudioClippingSize) {
          *error = "audio-clipping extension shorter than 24 bytes";
          return false;
        }
        out->has_audio_clipping = true;
        out->audio_clipping.format = Get<uint32_t>(v, 0);
        out->audio_clipping.start = Get<uint64_t>(v, 8);
        out->audio_clipping.end = Get<uint64_t>(v, 16);
        break;
      case Ext::kVideoMeta: {
        if (len < kVideoMetaSize) {
          *error = "video-meta extension shorter than 72 bytes";
          return false;
        }
        VideoMeta& m = out->video_meta;
        m.flags = Get<uint32_t>(v, 0);
        m.format = Get<uint32_t>(v, 4);
        m.width = Get<uint32_t>(v, 8);
        m.height = Get<uint32_t>(v, 12);
        m.n_planes = Get<uint32_t>(v, 16);
        if (m.n_planes > kVideoMaxPlanes) {
          *error = "video-meta extension with more than 4 planes";
          return false;
        }
        for (uint32_t i = 0; i < kVideoMaxPlanes; ++i) {
          m.offset[i] = Get<uint64_t>(v, 24 + 8 * i);
          m.stride[i] = Get<int32_t>(v, 56 + 4 * i);
        }
        out->has_video_meta = true;
        break;
      }
      case Ext::kReferenceTimestamp: {
        if (len < kReferenceTimestampFixedSize) {
          *error = "reference-timestamp extension shorter than 16 bytes";
          return false;
        }
        ReferenceTimestamp r;
        r.timestamp = Get<uint64_t>(v, 0);
        r.duration = Get<uint64_t>(v, 8);
        r.reference.assign(reinterpret_cast<const char*>(v) + kReferenceTimestampFixedSize,
                           len - kReferenceTimestampFixedSize);
        out->reference_timestamps.push_back(std::move(r));
        break;
      }
      default:
        break;  // a later version's entry: skipped
    }
    at = value + ((len + kExtAlign - 1) & ~(kExtAlign - 1));
  }
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
