// Layout v2 and profile-1 framing, pinned byte for byte by tests/vectors/.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;
using shmtest::LoadVector;

constexpr uint64_t kGen = 0x1122334455667788ull;

static_assert(layout::kMagicOffset == 12 && layout::kVersionOffset == 16 &&
                  layout::kCapacityOffset == 8,
              "magic and version where every version has them");
static_assert(layout::kGenerationOffset % 8 == 0 && layout::kDroppedOffset % 8 == 0 &&
                  layout::kConsumerSkippedOffset % 8 == 0,
              "64-bit fields are 8-aligned");
static_assert(layout::kHeaderSize == 8192 && layout::kHeaderSize % 4096 == 0,
              "data area page-aligned at 8192");
// Each hot word and each flags word alone in its 128-byte block.
static_assert(layout::kHeadOffset / 128 == 1 && layout::kProducerFlagsOffset / 128 == 2 &&
                  layout::kTailOffset / 128 == 4 && layout::kConsumerFlagsOffset / 128 == 5,
              "head, producer flags, tail, consumer flags in blocks 1, 2, 4, 5");
static_assert(layout::SlotOffset(15) + layout::kSlotSize <= layout::kHeaderSize,
              "16 receiver slots fit the header");

struct Image {
  explicit Image(uint32_t capacity) : bytes(layout::kHeaderSize + capacity, 0) {}
  std::vector<uint8_t> bytes;
  void* data() { return bytes.data(); }
  uint64_t size() const { return bytes.size(); }
};

TEST(GoldenVectors, EmptyRing) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen), "");
  EXPECT_EQ(img.bytes, LoadVector("v2_empty_cap64.hex"));
}

// The owner word after the kernel's robust-futex walk at the producer's death.
TEST(GoldenVectors, OwnerDied) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen), "");
  EXPECT_EQ(layout::kProducerOwnerOffset, 0x118u);
  const uint32_t died = layout::kOwnerWaiters | layout::kOwnerDied;
  std::memcpy(img.bytes.data() + layout::kProducerOwnerOffset, &died, 4);
  std::vector<uint8_t> v = LoadVector("v2_owner_died_cap64.hex");
  EXPECT_EQ(img.bytes, v);
  ByteRingBuffer c(v.data(), v.size(), false);  // an ordinary ring to open
  ASSERT_TRUE(c.valid()) << c.error();
  EXPECT_EQ(c.ProducerOwner(), 0xC0000000u);
}

TEST(GoldenVectors, Records) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen), "");
  std::vector<uint8_t> twenty(20);
  for (int i = 0; i < 20; ++i) twenty[i] = static_cast<uint8_t>(i);
  {
    ByteRingBuffer p(img.data(), img.size(), true);
    ASSERT_TRUE(p.valid()) << p.error();
    ASSERT_TRUE(p.Write("hello", 5));
    ASSERT_TRUE(p.Write(nullptr, 0));
    ASSERT_TRUE(p.Write(twenty.data(), 20));
  }
  // Our own fence-mode bit is not part of the vector.
  img.bytes[layout::kProducerFlagsOffset] &= ~layout::kProducerMembarrier;
  EXPECT_EQ(img.bytes, LoadVector("v2_records_cap64.hex"));
}

TEST(GoldenVectors, WrapMarker) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen), "");
  ByteRingBuffer p(img.data(), img.size(), true);
  ByteRingBuffer c(img.data(), img.size(), false);
  std::vector<uint8_t> aa(40, 0xaa), bb(16, 0xbb), out(64);
  ASSERT_TRUE(p.Write(aa.data(), 40));
  ReadResult r = c.TryRead(out.data(), 64);
  ASSERT_TRUE(r);
  ASSERT_EQ(r.len, 40u);
  ASSERT_TRUE(p.Write(bb.data(), 16));
  img.bytes[layout::kProducerFlagsOffset] &= ~layout::kProducerMembarrier;
  img.bytes[layout::kConsumerFlagsOffset] &= ~layout::kConsumerMembarrier;
  EXPECT_EQ(img.bytes, LoadVector("v2_wrap_marker_cap64.hex"));
}

// A reservation given up becomes a PAD record; readers skip it silently.
TEST(GoldenVectors, PadRecord) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen), "");
  ByteRingBuffer p(img.data(), img.size(), true);
  ASSERT_TRUE(p.Write("hello", 5));
  Reservation r;
  ASSERT_EQ(p.ReserveNext(20, &r), Status::kOk);
  p.Abandon(r);
  const uint8_t two[] = {1, 2};
  ASSERT_TRUE(p.Write(two, 2));
  img.bytes[layout::kProducerFlagsOffset] &= ~layout::kProducerMembarrier;
  EXPECT_EQ(img.bytes, LoadVector("v2_pad_cap64.hex"));
  // A reader of the vector gets "hello", then 01 02, then nothing.
  std::vector<uint8_t> copy = LoadVector("v2_pad_cap64.hex");
  ByteRingBuffer c(copy.data(), copy.size(), false);
  ASSERT_TRUE(c.valid()) << c.error();
  std::vector<uint8_t> out(64);
  ReadResult rr = c.TryRead(out.data(), 64);
  ASSERT_EQ(rr.status, Status::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out.data()), rr.len), "hello");
  rr = c.TryRead(out.data(), 64);
  ASSERT_EQ(rr.status, Status::kOk);
  ASSERT_EQ(rr.len, 2u);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[1], 2);
  EXPECT_EQ(c.TryRead(out.data(), 64).status, Status::kEmpty);
  EXPECT_EQ(c.LoadTail(), 48u);
}

TEST(GoldenVectors, IndexWrapAt2To32) {
  Image img(64);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 64, 0, kGen, 0xFFFFFFE8u), "");
  ByteRingBuffer p(img.data(), img.size(), true);
  std::vector<uint8_t> cc(12, 0xcc), dd(4, 0xdd), ee(1, 0xee);
  ASSERT_TRUE(p.Write(cc.data(), 12));
  ASSERT_TRUE(p.Write(dd.data(), 4));
  ASSERT_TRUE(p.Write(ee.data(), 1));
  img.bytes[layout::kProducerFlagsOffset] &= ~layout::kProducerMembarrier;
  EXPECT_EQ(img.bytes, LoadVector("v2_index_wrap_cap64.hex"));
}

std::vector<uint8_t> Message(const framing::Header& h, const std::string& body) {
  std::vector<uint8_t> m(framing::kHeaderSize + body.size());
  framing::EncodeHeader(h, m.data());
  std::memcpy(m.data() + framing::kHeaderSize, body.data(), body.size());
  return m;
}

const char kCaps[] =
    "video/x-raw, format=(string)GRAY8, width=(int)4, height=(int)2, framerate=(fraction)30/1";

framing::Header CapsHeader() {
  framing::Header h;
  h.kind = framing::Kind::kCaps;
  return h;
}

framing::Header BufferHeader() {
  framing::Header h;
  h.kind = framing::Kind::kBuffer;
  h.flags = 0x40;
  h.pts = 1000000000;
  h.duration = 33333333;
  h.offset = 7;
  h.offset_end = 8;
  return h;
}

framing::Header EosHeader() {
  framing::Header h;
  h.kind = framing::Kind::kEos;
  return h;
}

const std::string kBody8("\x00\x01\x02\x03\x04\x05\x06\x07", 8);

// A version 1 ring is refused naming both versions (magic and version stay at 12
// and 16 in every version).
TEST(GoldenVectors, Version1RingRefused) {
  std::vector<uint8_t> v1 = LoadVector("v1_empty_cap64.hex");
  ASSERT_EQ(v1.size(), 192u);
  uint32_t capacity = 0;
  EXPECT_EQ(ByteRingBuffer::ValidateSegment(v1.data(), v1.size(), &capacity),
            "version is 1; this build reads version 2");
  ByteRingBuffer c(v1.data(), v1.size(), false);
  EXPECT_FALSE(c.valid());
  EXPECT_EQ(c.error(), "version is 1; this build reads version 2");
  ByteRingBuffer p(v1.data(), v1.size(), true);  // never rewritten: it has a magic
  EXPECT_FALSE(p.valid());
  EXPECT_EQ(v1, LoadVector("v1_empty_cap64.hex"));
}

TEST(GoldenVectors, MaxReceiversOutOfRangeRefused) {
  std::vector<uint8_t> img = LoadVector("v2_empty_cap64.hex");
  for (uint32_t bad : {0u, 17u}) {
    std::memcpy(img.data() + layout::kMaxReceiversOffset, &bad, 4);
    EXPECT_EQ(ByteRingBuffer::ValidateSegment(img.data(), img.size(), nullptr),
              "max_receivers is " + std::to_string(bad) + ", not between 1 and 16");
  }
}

TEST(GoldenVectors, Profile1Messages) {
  EXPECT_EQ(Message(CapsHeader(), kCaps), LoadVector("p1_caps.hex"));
  EXPECT_EQ(Message(BufferHeader(), kBody8), LoadVector("p1_buffer.hex"));
  EXPECT_EQ(Message(EosHeader(), ""), LoadVector("p1_eos.hex"));
}

TEST(GoldenVectors, Profile1Ring) {
  Image img(512);
  ASSERT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), 512, 1, 0x0123456789ABCDEFull), "");
  ByteRingBuffer p(img.data(), img.size(), true);
  for (const auto& m :
       {Message(CapsHeader(), kCaps), Message(BufferHeader(), kBody8), Message(EosHeader(), "")}) {
    ASSERT_TRUE(p.Write(m.data(), static_cast<uint32_t>(m.size())));
  }
  img.bytes[layout::kProducerFlagsOffset] &= ~layout::kProducerMembarrier;
  EXPECT_EQ(img.bytes, LoadVector("p1_ring_cap512.hex"));
}

TEST(GoldenVectors, Profile1DecodeRoundTrip) {
  const std::vector<uint8_t> v = LoadVector("p1_buffer.hex");
  framing::Header h;
  const uint8_t* body = nullptr;
  uint32_t body_len = 0;
  const char* err = nullptr;
  ASSERT_TRUE(framing::DecodeMessage(v.data(), static_cast<uint32_t>(v.size()), &h, &body,
                                     &body_len, &err));
  EXPECT_EQ(h.kind, framing::Kind::kBuffer);
  EXPECT_EQ(h.flags, 0x40u);
  EXPECT_EQ(h.pts, 1000000000u);
  EXPECT_EQ(h.dts, framing::kTimeNone);
  EXPECT_EQ(h.duration, 33333333u);
  EXPECT_EQ(h.offset, 7u);
  EXPECT_EQ(h.offset_end, 8u);
  ASSERT_EQ(body_len, 8u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(body), 8), kBody8);
}

// Extensions: the writer's ExtensionWriter + EncodeHeader rebuild the vector; the
// reader gets every field back (and a reader that ignores extensions sees dts none).
framing::ExtensionWriter ExtVectorExtensions() {
  framing::ExtensionWriter w;
  w.AddNegativeDts(66666667);
  w.AddAudioClipping({2, 312, 0});
  framing::VideoMeta vm;
  vm.format = 25;  // GST_VIDEO_FORMAT_GRAY8
  vm.width = 4;
  vm.height = 2;
  vm.n_planes = 1;
  vm.stride[0] = 8;
  w.AddVideoMeta(vm);
  w.AddReferenceTimestamp({"timestamp/x-ntp", 3900000000000000000ull, framing::kTimeNone});
  return w;
}

TEST(GoldenVectors, Profile1BufferWithExtensions) {
  framing::Header h;
  h.kind = framing::Kind::kBuffer;
  h.flags = 0x40;
  h.pts = 0;
  h.duration = 33333333;
  h.offset = 0;
  const framing::ExtensionWriter w = ExtVectorExtensions();
  ASSERT_TRUE(w.fits());
  const uint32_t body_at = framing::BodyOffsetWithExtensions(w.size());
  std::vector<uint8_t> m(body_at + 16, 0xEE);
  framing::EncodeHeader(h, w, m.data());
  for (uint8_t i = 0; i < 16; ++i) m[body_at + i] = i;
  EXPECT_EQ(m, LoadVector("p1_buffer_ext.hex"));
}

TEST(GoldenVectors, Profile1BufferWithExtensionsDecodes) {
  const std::vector<uint8_t> v = LoadVector("p1_buffer_ext.hex");
  framing::Header h;
  const uint8_t* body = nullptr;
  uint32_t body_len = 0;
  const char* err = nullptr;
  ASSERT_TRUE(framing::DecodeMessage(v.data(), static_cast<uint32_t>(v.size()), &h, &body,
                                     &body_len, &err));
  EXPECT_EQ(h.header_size, 212u);
  EXPECT_EQ(h.dts, framing::kTimeNone);  // what a reader without extensions sees
  ASSERT_EQ(body_len, 16u);
  EXPECT_EQ(body, v.data() + 212);
  framing::Extensions x;
  ASSERT_TRUE(framing::DecodeExtensions(v.data(), h, &x, &err)) << err;
  EXPECT_EQ(x.negative_dts, 66666667u);
  ASSERT_TRUE(x.has_audio_clipping);
  EXPECT_EQ(x.audio_clipping.format, 2u);
  EXPECT_EQ(x.audio_clipping.start, 312u);
  EXPECT_EQ(x.audio_clipping.end, 0u);
  ASSERT_TRUE(x.has_video_meta);
  EXPECT_EQ(x.video_meta.format, 25u);
  EXPECT_EQ(x.video_meta.width, 4u);
  EXPECT_EQ(x.video_meta.height, 2u);
  EXPECT_EQ(x.video_meta.n_planes, 1u);
  EXPECT_EQ(x.video_meta.stride[0], 8);
  ASSERT_EQ(x.reference_timestamps.size(), 1u);
  EXPECT_EQ(x.reference_timestamps[0].reference, "timestamp/x-ntp");
  EXPECT_EQ(x.reference_timestamps[0].timestamp, 3900000000000000000ull);
  EXPECT_EQ(x.reference_timestamps[0].duration, framing::kTimeNone);
}

TEST(Framing, ExtensionsSkipUnknownTypesAndRefuseOverruns) {
  framing::ExtensionWriter w;
  const uint8_t future[5] = {1, 2, 3, 4, 5};
  w.Add(static_cast<framing::Ext>(999), future, sizeof future);
  w.AddNegativeDts(5);
  framing::Header h;
  std::vector<uint8_t> m(framing::BodyOffsetWithExtensions(w.size()));
  framing::EncodeHeader(h, w, m.data());
  framing::Header d;
  const uint8_t* body;
  uint32_t body_len;
  const char* err = nullptr;
  ASSERT_TRUE(framing::DecodeMessage(m.data(), static_cast<uint32_t>(m.size()), &d, &body,
                                     &body_len, &err));
  framing::Extensions x;
  ASSERT_TRUE(framing::DecodeExtensions(m.data(), d, &x, &err)) << err;
  EXPECT_EQ(x.negative_dts, 5u);
  m[framing::kHeaderSize + 2] = 200;  // the unknown entry now claims 200 bytes
  EXPECT_FALSE(framing::DecodeExtensions(m.data(), d, &x, &err));
  EXPECT_STREQ(err, "a header extension entry runs past header_size");
  m[framing::kHeaderSize + 2] = 5;
  m[framing::kHeaderSize + 14] = 4;  // the negative-DTS entry now holds 4 bytes
  EXPECT_FALSE(framing::DecodeExtensions(m.data(), d, &x, &err));
}

TEST(Framing, DecodeRefusesShortOrLyingHeaders) {
  std::vector<uint8_t> v = LoadVector("p1_eos.hex");
  framing::Header h;
  const uint8_t* body;
  uint32_t body_len;
  const char* err = nullptr;
  EXPECT_FALSE(framing::DecodeMessage(v.data(), 59, &h, &body, &body_len, &err));
  v[2] = 56;  // header_size below the minimum
  EXPECT_FALSE(framing::DecodeMessage(v.data(), 60, &h, &body, &body_len, &err));
  v[2] = 200;  // header_size past the end
  EXPECT_FALSE(framing::DecodeMessage(v.data(), 60, &h, &body, &body_len, &err));
  EXPECT_NE(err, nullptr);
}

}  // namespace
