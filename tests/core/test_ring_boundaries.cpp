// ByteRingBuffer boundaries, one test per boundary it pins. Single-threaded: the
// producer and the consumer attach to the same image in turn.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

namespace {

using namespace shm;
using shmtest::RingImage;

std::vector<uint8_t> Bytes(uint32_t len, uint8_t salt) {
  std::vector<uint8_t> v(len);
  for (uint32_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(salt + i * 7);
  return v;
}

// A producer and a consumer over one guarded image.
struct Ring {
  explicit Ring(uint32_t capacity, uint32_t start_index = 0,
                RingImage::Guard guard = RingImage::Guard::kBytes)
      : img(capacity, guard) {
    init_error = img.Init(start_index);
    if (init_error.empty()) {
      prod = std::make_unique<ByteRingBuffer>(img.base(), img.size(), true);
      cons = std::make_unique<ByteRingBuffer>(img.base(), img.size(), false);
    }
  }
  ByteRingBuffer& p() { return *prod; }
  ByteRingBuffer& c() { return *cons; }
  Status Put(uint32_t len, uint8_t salt = 1) {
    const std::vector<uint8_t> b = Bytes(len, salt);
    return p().TryWrite(b.data(), len);
  }
  // Reads one message and checks it is Bytes(len, salt).
  void Get(uint32_t len, uint8_t salt = 1) {
    std::vector<uint8_t> out(len + 1);
    const ReadResult r = c().TryRead(out.data(), len + 1);
    ASSERT_EQ(r.status, Status::kOk) << StatusName(r.status) << " " << c().error();
    ASSERT_EQ(r.len, len);
    out.resize(len);
    ASSERT_EQ(out, Bytes(len, salt));
  }
  RingImage img;
  std::string init_error;
  std::unique_ptr<ByteRingBuffer> prod, cons;
};

class RingTest : public ::testing::Test {
 protected:
  Ring& Make(uint32_t capacity, uint32_t start_index = 0,
             RingImage::Guard guard = RingImage::Guard::kBytes) {
    rings_.push_back(std::make_unique<Ring>(capacity, start_index, guard));
    Ring& r = *rings_.back();
    EXPECT_EQ(r.init_error, "");
    EXPECT_TRUE(r.prod && r.prod->valid()) << (r.prod ? r.prod->error() : "");
    EXPECT_TRUE(r.cons && r.cons->valid()) << (r.cons ? r.cons->error() : "");
    return r;
  }
  void CheckGuardsAndClear() {
    for (auto& r : rings_) EXPECT_TRUE(r->img.GuardIntact()) << "bytes outside the image changed";
    rings_.clear();
  }
  void TearDown() override { CheckGuardsAndClear(); }
  std::vector<std::unique_ptr<Ring>> rings_;
};

TEST_F(RingTest, Empty) {
  Ring& r = Make(64);
  uint8_t buf[8];
  EXPECT_EQ(r.c().TryRead(buf, sizeof buf).status, Status::kEmpty);
  MessageView v;
  EXPECT_EQ(r.c().Peek(&v), Status::kEmpty);
  EXPECT_EQ(r.c().Acquire(&v), Status::kEmpty);
  EXPECT_FALSE(r.c().HasData());
  EXPECT_EQ(r.c().ReadableBytes(), 0u);
  EXPECT_EQ(r.p().WriteableBytes(), 64u);
  EXPECT_EQ(r.c().WaitReadable(0, nullptr), Status::kTimeout);
  // Drained again after traffic.
  ASSERT_EQ(r.Put(3), Status::kOk);
  r.Get(3);
  EXPECT_EQ(r.c().TryRead(buf, sizeof buf).status, Status::kEmpty);
  EXPECT_EQ(r.c().ReadableBytes(), 0u);
  EXPECT_EQ(r.p().WriteableBytes(), 64u);
}

TEST_F(RingTest, Full) {
  Ring& r = Make(64);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(r.Put(4, static_cast<uint8_t>(i)), Status::kOk) << i;
  EXPECT_EQ(r.p().WriteableBytes(), 0u);
  EXPECT_EQ(r.c().ReadableBytes(), 64u);
  EXPECT_EQ(r.Put(0), Status::kFull);
  EXPECT_FALSE(r.p().Write("x", 1));
  uint8_t* payload = nullptr;
  EXPECT_EQ(r.p().Reserve(0, &payload), Status::kFull);
  EXPECT_EQ(r.p().WaitWritable(0, 0, nullptr), Status::kTimeout);
  EXPECT_EQ(r.p().LoadHead(), 64u) << "a refused write must not move head";
  r.Get(4, 0);
  EXPECT_EQ(r.p().WriteableBytes(), 8u);
  ASSERT_EQ(r.Put(4, 8), Status::kOk);
  EXPECT_EQ(r.Put(0), Status::kFull);
  for (int i = 1; i <= 8; ++i) r.Get(4, static_cast<uint8_t>(i));
  EXPECT_FALSE(r.c().HasData());
}

TEST_F(RingTest, ExactFit) {
  Ring& r = Make(64);
  // 24 + 40 bytes of records fill the ring exactly; the second ends at the end.
  ASSERT_EQ(r.Put(20, 1), Status::kOk);
  ASSERT_EQ(r.Put(36, 2), Status::kOk);
  EXPECT_EQ(r.p().LoadHead(), 64u);
  EXPECT_EQ(r.p().WriteableBytes(), 0u);
  EXPECT_EQ(r.Put(0), Status::kFull);
  r.Get(20, 1);
  // Exactly the freed 24 bytes, at offset 0 of the next lap: no marker.
  ASSERT_EQ(r.Put(20, 3), Status::kOk);
  EXPECT_EQ(r.p().LoadHead(), 88u);
  r.Get(36, 2);
  r.Get(20, 3);
  // A record ending exactly at the end of the data area needs no WRAP marker.
  ASSERT_EQ(r.Put(36, 4), Status::kOk);  // offset 24..64
  EXPECT_EQ(r.p().LoadHead(), 128u);
  EXPECT_EQ(r.img.U32(layout::kHeaderSize + 24), 36u);
  r.Get(36, 4);
  EXPECT_EQ(r.c().ReadableBytes(), 0u);
}

// For every 8-byte distance d of head from the end: a record of d bytes fits with
// no marker; a record of d+8 bytes gets a WRAP marker at the old head and lands
// at offset 0; the largest record that fits behind the marker fits exactly.
TEST_F(RingTest, WrapMarkerAtEveryDistanceFromEnd) {
  constexpr uint32_t kCap = 256;
  for (uint32_t d = 8; d <= kCap - 8; d += 8) {
    SCOPED_TRACE("distance from end " + std::to_string(d));
    for (int variant = 0; variant < 3; ++variant) {
      Ring& r = Make(kCap);
      const uint32_t filler = kCap - d;  // record size that leaves head d from the end
      ASSERT_EQ(r.Put(filler - 4, 9), Status::kOk);
      r.Get(filler - 4, 9);
      ASSERT_EQ(r.p().LoadHead(), filler);
      if (variant == 0) {  // fits exactly before the end: no marker
        ASSERT_EQ(r.Put(d - 4, 5), Status::kOk);
        EXPECT_EQ(r.img.U32(layout::kHeaderSize + filler), d - 4);
        EXPECT_EQ(r.p().LoadHead(), kCap);
        r.Get(d - 4, 5);
      } else {
        // variant 1: one record-size step too big; variant 2: the largest that fits
        // behind the marker right now (it fills the ring exactly).
        const uint32_t len = variant == 1 ? d - 3 : filler - 4;
        if (layout::RecordSize(len) <= d || layout::RecordSize(len) > filler) continue;
        ASSERT_EQ(r.Put(len, 6), Status::kOk);
        EXPECT_EQ(r.img.U32(layout::kHeaderSize + filler), layout::kWrapMarker);
        EXPECT_EQ(r.img.U32(layout::kHeaderSize + 0), len);
        EXPECT_EQ(r.p().LoadHead(), kCap + layout::RecordSize(len));
        EXPECT_EQ(r.c().ReadableBytes(), d + layout::RecordSize(len));
        r.Get(len, 6);
        EXPECT_EQ(r.c().LoadTail(), r.p().LoadHead()) << "marker and record both released";
      }
      uint8_t b;
      EXPECT_EQ(r.c().TryRead(&b, 1).status, Status::kEmpty);
    }
    CheckGuardsAndClear();
  }
}

TEST_F(RingTest, ZeroLength) {
  Ring& r = Make(64);
  // A ring full of zero-length messages (8 bytes each), read with no buffer at all.
  for (int i = 0; i < 8; ++i) ASSERT_EQ(r.p().TryWrite(nullptr, 0), Status::kOk);
  EXPECT_EQ(r.p().TryWrite(nullptr, 0), Status::kFull);
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(r.c().HasData());
    const ReadResult res = r.c().TryRead(nullptr, 0);
    ASSERT_EQ(res.status, Status::kOk);
    EXPECT_EQ(res.len, 0u);
  }
  EXPECT_EQ(r.c().TryRead(nullptr, 0).status, Status::kEmpty);
  // Zero-length messages never block what follows (mistake 5 of the original design).
  for (int lap = 0; lap < 20; ++lap) {
    ASSERT_EQ(r.Put(0), Status::kOk);
    ASSERT_EQ(r.Put(13, static_cast<uint8_t>(lap)), Status::kOk);
    ASSERT_EQ(r.Put(0), Status::kOk);
    r.Get(0);
    r.Get(13, static_cast<uint8_t>(lap));
    MessageView v;
    ASSERT_EQ(r.c().Peek(&v), Status::kOk);
    EXPECT_EQ(v.len, 0u);
    r.c().Release();
  }
  EXPECT_FALSE(r.c().HasData());
}

TEST_F(RingTest, MaxLength) {
  for (uint32_t cap : {64u, 256u, 4096u}) {
    Ring& r = Make(cap);
    ASSERT_EQ(r.p().MaxMessageSize(), cap - 4);
    ASSERT_EQ(r.Put(cap - 4, 3), Status::kOk);
    EXPECT_EQ(r.p().WriteableBytes(), 0u);
    EXPECT_EQ(r.Put(0), Status::kFull);
    r.Get(cap - 4, 3);
    // Again at offset 0 of the next lap.
    ASSERT_EQ(r.Put(cap - 4, 4), Status::kOk);
    r.Get(cap - 4, 4);
    EXPECT_EQ(r.c().LoadTail(), 2 * cap);
  }
}

TEST_F(RingTest, TooLarge) {
  Ring& r = Make(64);
  std::vector<uint8_t> big(128);
  uint8_t* payload = nullptr;
  for (uint32_t len : {61u, 64u, 65u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu}) {
    SCOPED_TRACE(len);
    EXPECT_EQ(r.p().TryWrite(big.data(), len), Status::kTooLarge);
    EXPECT_FALSE(r.p().Write(big.data(), len));
    EXPECT_EQ(r.p().Reserve(len, &payload), Status::kTooLarge);
    EXPECT_EQ(r.p().WaitWritable(len, 0, nullptr), Status::kTooLarge);
  }
  EXPECT_EQ(r.p().LoadHead(), 0u);
  // Too large is permanent, full is not: after filling, a 61-byte message is still too large.
  ASSERT_EQ(r.Put(60), Status::kOk);
  EXPECT_EQ(r.p().TryWrite(big.data(), 61), Status::kTooLarge);
  EXPECT_EQ(r.p().TryWrite(big.data(), 60), Status::kFull);
}

TEST_F(RingTest, CallerBufferTooSmall) {
  Ring& r = Make(256);
  ASSERT_EQ(r.Put(100, 7), Status::kOk);
  ASSERT_EQ(r.Put(5, 8), Status::kOk);
  std::vector<uint8_t> small(99, 0xEE);
  for (uint32_t max : {99u, 1u, 0u}) {
    const ReadResult res = r.c().TryRead(small.data(), max);
    EXPECT_EQ(res.status, Status::kBufferTooSmall);
    EXPECT_FALSE(res);
    EXPECT_EQ(res.len, 100u) << "the message's size is reported";
  }
  EXPECT_EQ(small, std::vector<uint8_t>(99, 0xEE)) << "nothing copied into a too-small buffer";
  EXPECT_TRUE(r.c().HasData()) << "the message stays";
  EXPECT_EQ(r.c().LoadTail(), 0u);
  r.Get(100, 7);
  r.Get(5, 8);
}

// Index arithmetic is mod 2^32: start a fresh ring just below 2^32 (the test hook)
// and run many laps across the wrap, with and without WRAP markers at the crossing.
TEST_F(RingTest, IndexWrapAt2To32) {
  constexpr uint32_t kCap = 256;
  for (uint32_t start : {0xFFFFFFF8u, 0xFFFFFFF0u, 0xFFFFFF00u, 0xFFFFFE08u, 0xFFFFFFC8u}) {
    SCOPED_TRACE(start);
    Ring& r = Make(kCap, start);
    EXPECT_EQ(r.p().LoadHead(), start);
    EXPECT_EQ(r.p().WriteableBytes(), kCap);
    uint64_t written = 0, read = 0;
    uint32_t salt = start;
    for (int i = 0; i < 4000; ++i) {
      salt = salt * 1103515245u + 12345u;
      const uint32_t len = (salt >> 8) % (kCap - 3);
      // Write what fits now, then drain part of the ring.
      if (r.Put(len, static_cast<uint8_t>(written)) == Status::kOk) {
        ASSERT_LE(r.c().ReadableBytes(), kCap);
        r.Get(len, static_cast<uint8_t>(written));
        ++written;
        ++read;
      } else {
        ASSERT_EQ(r.c().TryRead(nullptr, 0).status, Status::kEmpty);
      }
      ASSERT_EQ(r.c().ReadableBytes() + r.p().WriteableBytes(), kCap);
    }
    EXPECT_EQ(written, read);
    EXPECT_GT(written, 1000u);
    EXPECT_LT(r.p().LoadHead(), start) << "head should have wrapped past 2^32";
    // Several messages in flight across the crossing.
    Ring& q = Make(kCap, start);
    for (int lap = 0; lap < 200; ++lap) {
      for (uint8_t k = 0; k < 5; ++k) ASSERT_EQ(q.Put(20 + k, k), Status::kOk);
      for (uint8_t k = 0; k < 5; ++k) q.Get(20 + k, k);
    }
    EXPECT_LT(q.p().LoadHead(), start);
  }
}

// ---- corruption: kCorrupt, nothing touched outside the data area ---------------

class CorruptTest : public RingTest, public ::testing::WithParamInterface<RingImage::Guard> {
 protected:
  // All consumer entry points must say kCorrupt.
  void ExpectCorrupt(Ring& r, const char* why) {
    SCOPED_TRACE(why);
    std::vector<uint8_t> out(r.img.capacity());
    EXPECT_EQ(r.c().TryRead(out.data(), r.img.capacity()).status, Status::kCorrupt);
    EXPECT_FALSE(r.c().error().empty());
    MessageView v;
    EXPECT_EQ(r.c().Peek(&v), Status::kCorrupt);
    EXPECT_EQ(r.c().Acquire(&v), Status::kCorrupt);
    EXPECT_FALSE(r.c().HasData());
    EXPECT_EQ(r.c().WaitReadable(1000000, nullptr), Status::kCorrupt);
    EXPECT_TRUE(r.img.GuardIntact());
  }
  uint32_t LenAt(uint32_t data_off) { return layout::kHeaderSize + data_off; }
};

// len words with the top bit set (but 0xFFFFFFFF) are PAD records: one whose size
// passes head or the end of the data area is corrupt.
TEST_P(CorruptTest, CorruptLen) {
  for (uint32_t bad :
       {0x80000005u, 0x80000038u, 0x9ABCDEF0u, 0xC0000000u, 0xFFFFFFF8u, 0xFFFFFFFEu}) {
    Ring& r = Make(64, 0, GetParam());
    ASSERT_EQ(r.Put(4), Status::kOk);
    r.img.SetU32(LenAt(0), bad);
    ExpectCorrupt(r, "PAD record");
    EXPECT_NE(r.c().error().find("PAD record"), std::string::npos) << r.c().error();
  }
}

TEST_P(CorruptTest, RecordPastHead) {
  for (uint32_t bad : {5u, 12u, 56u, 60u}) {
    Ring& r = Make(64, 0, GetParam());
    ASSERT_EQ(r.Put(4), Status::kOk);  // 8 bytes published
    r.img.SetU32(LenAt(0), bad);
    ExpectCorrupt(r, "record past head");
    EXPECT_NE(r.c().error().find("passes head"), std::string::npos) << r.c().error();
  }
  // A WRAP marker whose skip would pass head.
  Ring& r = Make(64, 0, GetParam());
  ASSERT_EQ(r.Put(4), Status::kOk);
  r.img.SetU32(LenAt(0), layout::kWrapMarker);
  ExpectCorrupt(r, "marker past head");
}

TEST_P(CorruptTest, RecordCrossingEnd) {
  // tail at 56 (8 bytes from the end); records published up to the next lap.
  for (uint32_t bad : {5u, 20u, 60u, 0x7FFFFFFFu}) {
    Ring& r = Make(64, 0, GetParam());
    ASSERT_EQ(r.Put(52), Status::kOk);
    r.Get(52);
    ASSERT_EQ(r.Put(4, 2), Status::kOk);   // at 56
    ASSERT_EQ(r.Put(20, 3), Status::kOk);  // at 0 of the next lap (no marker needed)
    ASSERT_EQ(r.p().LoadHead(), 64u + 24u);
    r.img.SetU32(LenAt(56), bad);
    ExpectCorrupt(r, "record crossing the end");
    EXPECT_NE(r.c().error().find("crosses the end"), std::string::npos) << r.c().error();
  }
}

TEST_P(CorruptTest, BadHeadAlignment) {
  // head not a multiple of 8, or further from tail than the capacity, or behind it.
  for (uint32_t bad_head : {4u, 12u, 1u, 63u, 72u, 0xFFFFFFF8u, 0x80000000u}) {
    SCOPED_TRACE(bad_head);
    Ring& r = Make(64, 0, GetParam());
    ASSERT_EQ(r.Put(4), Status::kOk);
    r.img.SetU32(layout::kHeadOffset, bad_head);
    ExpectCorrupt(r, "bad head");
    EXPECT_NE(r.c().error().find("head"), std::string::npos) << r.c().error();
  }
}

TEST_P(CorruptTest, BadTailAlignment) {
  // The consumer's own index, corrupted before it attaches (e.g. by a crashed peer).
  for (uint32_t bad_tail : {62u, 60u, 4u, 1u}) {
    SCOPED_TRACE(bad_tail);
    RingImage img(64, GetParam());
    ASSERT_EQ(img.Init(), "");
    {
      ByteRingBuffer p(img.base(), img.size(), true);
      ASSERT_TRUE(p.Write("abcd", 4));
      ASSERT_TRUE(p.Write("abcd", 4));
    }
    img.SetU32(layout::kTailOffset, bad_tail);
    img.SetU32(layout::kHeadOffset, 64 + 8);
    ByteRingBuffer c(img.base(), img.size(), false);
    uint8_t out[64];
    if (c.valid()) {
      EXPECT_EQ(c.TryRead(out, sizeof out).status, Status::kCorrupt);
      MessageView v;
      EXPECT_EQ(c.Peek(&v), Status::kCorrupt);
      EXPECT_FALSE(c.HasData());
    }
    EXPECT_TRUE(img.GuardIntact());
  }
}

TEST_P(CorruptTest, ProducerRefusesMisalignedHead) {
  RingImage img(64, GetParam());
  ASSERT_EQ(img.Init(), "");
  img.SetU32(layout::kHeadOffset, 62);
  img.SetU32(layout::kTailOffset, 62);
  ByteRingBuffer p(img.base(), img.size(), true);
  if (p.valid()) {
    for (uint32_t len : {0u, 4u, 8u, 60u}) {
      EXPECT_NE(p.TryWrite("0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab", len),
                Status::kOk)
          << "a producer with a misaligned head would write across the end";
    }
  } else {
    EXPECT_NE(p.error().find("head"), std::string::npos) << p.error();
  }
  EXPECT_TRUE(img.GuardIntact());
}

INSTANTIATE_TEST_SUITE_P(Guards, CorruptTest,
                         ::testing::Values(RingImage::Guard::kBytes, RingImage::Guard::kPage),
                         [](const ::testing::TestParamInfo<RingImage::Guard>& info) {
                           return info.param == RingImage::Guard::kBytes ? "GuardBytes"
                                                                         : "GuardPage";
                         });

// ---- zero-copy --------------------------------------------------------------------

TEST_F(RingTest, ReserveCommitShrink) {
  Ring& r = Make(256);
  uint8_t* p = nullptr;
  ASSERT_EQ(r.p().Reserve(100, &p), Status::kOk);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, r.img.data() + 4);
  EXPECT_FALSE(r.c().HasData()) << "nothing is visible before Commit";
  std::memset(p, 0xEE, 100);
  std::memcpy(p, Bytes(10, 4).data(), 10);
  r.p().Commit(10);
  EXPECT_EQ(r.p().LoadHead(), 16u) << "the record shrinks to the committed length";
  // Padding after the payload is zero.
  for (uint32_t i = 14; i < 16; ++i) EXPECT_EQ(r.img.data()[i], 0) << i;
  // Commit longer than reserved clamps; Commit without Reserve does nothing.
  ASSERT_EQ(r.p().Reserve(8, &p), Status::kOk);
  std::memcpy(p, Bytes(8, 5).data(), 8);
  r.p().Commit(200);
  EXPECT_EQ(r.p().LoadHead(), 32u);
  r.p().Commit(8);
  EXPECT_EQ(r.p().LoadHead(), 32u);
  // Shrink to zero.
  ASSERT_EQ(r.p().Reserve(200, &p), Status::kOk);
  r.p().Commit(0);
  EXPECT_EQ(r.p().LoadHead(), 40u);
  r.Get(10, 4);
  r.Get(8, 5);
  r.Get(0);
  EXPECT_FALSE(r.c().HasData());
  // A reservation that needed a WRAP marker, then shrunk.
  ASSERT_EQ(r.Put(200, 6), Status::kOk);  // 40..248
  r.Get(200, 6);
  ASSERT_EQ(r.p().Reserve(100, &p), Status::kOk);  // marker at 248, record at 0
  EXPECT_EQ(p, r.img.data() + 4);
  std::memcpy(p, Bytes(3, 7).data(), 3);
  r.p().Commit(3);
  r.Get(3, 7);
}

TEST_F(RingTest, PeekRelease) {
  Ring& r = Make(128);
  ASSERT_EQ(r.Put(10, 1), Status::kOk);
  ASSERT_EQ(r.Put(20, 2), Status::kOk);
  MessageView a, b;
  ASSERT_EQ(r.c().Peek(&a), Status::kOk);
  ASSERT_EQ(r.c().Peek(&b), Status::kOk);
  EXPECT_EQ(a.data, b.data) << "repeated Peek returns the same message";
  EXPECT_EQ(a.len, 10u);
  EXPECT_EQ(a.data, r.img.data() + 4) << "in place, no copy";
  EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.len), Bytes(10, 1));
  EXPECT_EQ(r.c().LoadTail(), 0u) << "Peek does not free";
  r.c().Release();
  EXPECT_EQ(r.c().LoadTail(), 16u);
  r.c().Release();  // no Peek outstanding: nothing happens
  EXPECT_EQ(r.c().LoadTail(), 16u);
  ASSERT_EQ(r.c().Peek(&a), Status::kOk);
  EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.len), Bytes(20, 2));
  EXPECT_EQ(a.end, 16u + 24u);
  r.c().Release();
  EXPECT_EQ(r.c().Peek(&a), Status::kEmpty);
  EXPECT_EQ(r.c().LoadTail(), 40u);
}

TEST_F(RingTest, AcquireReleaseToSeveralHeld) {
  Ring& r = Make(128);
  for (uint8_t i = 0; i < 4; ++i) ASSERT_EQ(r.Put(12, i), Status::kOk);  // 16 bytes each
  MessageView m[4];
  for (int i = 0; i < 4; ++i) ASSERT_EQ(r.c().Acquire(&m[i]), Status::kOk) << i;
  MessageView none;
  EXPECT_EQ(r.c().Acquire(&none), Status::kEmpty);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(m[i].data, m[i - 1].data + 16);
  EXPECT_EQ(r.c().LoadTail(), 0u) << "Acquire frees nothing";
  EXPECT_EQ(r.p().WriteableBytes(), 128u - 64u);
  // Held messages stay intact while the producer fills the rest of the ring.
  while (r.Put(4, 0x55) == Status::kOk) {
  }
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(std::vector<uint8_t>(m[i].data, m[i].data + 12), Bytes(12, static_cast<uint8_t>(i)));
  }
  // Caller releases out of order: it must release in ring order, so ReleaseTo takes
  // the furthest contiguous end; an end behind what is already released is ignored.
  r.c().ReleaseTo(m[1].end);  // frees messages 0 and 1
  EXPECT_EQ(r.c().LoadTail(), 32u);
  r.c().ReleaseTo(m[0].end);  // behind the tail: ignored
  EXPECT_EQ(r.c().LoadTail(), 32u);
  r.c().ReleaseTo(m[3].end + 64);  // past what was handed out: ignored
  EXPECT_EQ(r.c().LoadTail(), 32u);
  r.c().ReleaseTo(m[3].end);
  EXPECT_EQ(r.c().LoadTail(), 64u);
  // The filler messages are still readable in order after the held ones.
  MessageView f;
  int fillers = 0;
  while (r.c().Acquire(&f) == Status::kOk) {
    EXPECT_EQ(f.len, 4u);
    ++fillers;
  }
  EXPECT_EQ(fillers, 8);
  r.c().ReleaseTo(f.end);  // f kept the last good view
  EXPECT_EQ(r.c().ReadableBytes(), 0u);
}

TEST_F(RingTest, AcquireAcrossWrapMarkerWhileHolding) {
  Ring& r = Make(64);
  ASSERT_EQ(r.Put(28, 1), Status::kOk);  // 0..32
  ASSERT_EQ(r.Put(12, 2), Status::kOk);  // 32..48
  MessageView a, b, c;
  ASSERT_EQ(r.c().Acquire(&a), Status::kOk);
  r.c().ReleaseTo(a.end);                     // tail 32
  ASSERT_EQ(r.c().Acquire(&b), Status::kOk);  // held: 32..48
  ASSERT_EQ(r.Put(20, 3), Status::kOk);       // marker at 48, record at 0..24 of lap 2
  EXPECT_EQ(r.img.U32(layout::kHeaderSize + 48), layout::kWrapMarker);
  ASSERT_EQ(r.c().Acquire(&c), Status::kOk);
  EXPECT_EQ(c.len, 20u);
  EXPECT_EQ(c.end, 64u + 24u);
  EXPECT_EQ(r.c().LoadTail(), 32u) << "the marker stays held behind b";
  EXPECT_EQ(std::vector<uint8_t>(b.data, b.data + 12), Bytes(12, 2));
  r.c().ReleaseTo(b.end);
  EXPECT_EQ(r.c().LoadTail(), 48u);
  r.c().ReleaseTo(c.end);
  EXPECT_EQ(r.c().LoadTail(), 88u);
}

// The producer publishes the WRAP marker as soon as the bytes to the end are free,
// even when the record behind it does not fit yet; so a max-size payload fits once
// the consumer has skipped the marker.
TEST_F(RingTest, MaxPayloadFitsOnlyAfterMarkerPublish) {
  Ring& r = Make(64);
  ASSERT_EQ(r.Put(4, 1), Status::kOk);
  r.Get(4, 1);  // head = tail = 8
  uint8_t* p = nullptr;
  EXPECT_EQ(r.p().Reserve(60, &p), Status::kFull);
  EXPECT_EQ(r.img.U32(layout::kHeaderSize + 8), layout::kWrapMarker);
  EXPECT_EQ(r.p().LoadHead(), 64u) << "the marker is published alone";
  EXPECT_EQ(r.p().Reserve(60, &p), Status::kFull) << "still waiting for the consumer";
  EXPECT_EQ(r.p().LoadHead(), 64u) << "no second marker";
  EXPECT_FALSE(r.c().HasData()) << "a marker is not a message";
  EXPECT_EQ(r.c().LoadTail(), 64u) << "skipping the marker frees the lap";
  const std::vector<uint8_t> big = Bytes(60, 2);
  ASSERT_EQ(r.p().TryWrite(big.data(), 60), Status::kOk);
  r.Get(60, 2);
  // Same through the blocking call: WaitWritable publishes the marker too.
  Ring& q = Make(64);
  ASSERT_EQ(q.Put(4, 1), Status::kOk);
  q.Get(4, 1);
  EXPECT_EQ(q.p().WaitWritable(60, 0, nullptr), Status::kTimeout);
  EXPECT_EQ(q.p().LoadHead(), 64u);
  EXPECT_FALSE(q.c().HasData());
  EXPECT_EQ(q.p().WaitWritable(60, 0, nullptr), Status::kOk);
}

TEST_F(RingTest, HasDataFalseWhenOnlyMarker) {
  uint8_t* p = nullptr;
  Ring& q = Make(64);
  ASSERT_EQ(q.Put(44, 1), Status::kOk);  // 0..48
  q.Get(44, 1);
  ASSERT_EQ(q.p().Reserve(60, &p), Status::kFull);  // marker at 48 published
  EXPECT_EQ(q.c().ReadableBytes(), 16u);
  EXPECT_FALSE(q.c().HasData());
  uint8_t buf[64];
  EXPECT_EQ(q.c().TryRead(buf, 64).status, Status::kEmpty);
  MessageView v;
  EXPECT_EQ(q.c().Peek(&v), Status::kEmpty);
  EXPECT_EQ(q.c().WaitReadable(0, nullptr), Status::kTimeout);
}

TEST_F(RingTest, ClosedAfterDrain) {
  Ring& r = Make(64);
  ASSERT_EQ(r.Put(5, 1), Status::kOk);
  r.p().SetClosed();
  EXPECT_TRUE(r.c().ProducerClosed());
  EXPECT_TRUE(r.c().HasData());
  EXPECT_EQ(r.c().WaitReadable(0, nullptr), Status::kOk);
  r.Get(5, 1);
  uint8_t b;
  EXPECT_EQ(r.c().TryRead(&b, 1).status, Status::kClosed);
  EXPECT_EQ(r.c().WaitReadable(kForever, nullptr), Status::kClosed);
}

TEST_F(RingTest, OriginalApi) {
  Ring& r = Make(64);
  EXPECT_FALSE(r.c().HasData());
  EXPECT_TRUE(r.p().Write("hello", 5));
  EXPECT_TRUE(r.c().HasData());
  char out[8] = {};
  const uint32_t n = r.c().Read(out, sizeof out);
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(std::string(out, n), "hello");
  EXPECT_FALSE(r.c().HasData());
  EXPECT_EQ(r.c().Read(out, sizeof out), 0u) << "nothing to read";
  r.p().AddDropped(3);
  r.p().AddDropped(2);
  EXPECT_EQ(r.c().Dropped(), 5u);
}

// Read returns 0 for a message larger than the buffer and leaves it in place;
// TryRead says why; a larger buffer then gets it.
TEST_F(RingTest, OriginalReadLeavesATooLargeMessage) {
  Ring& r = Make(64);
  ASSERT_TRUE(r.p().Write("0123456789", 10));
  char small[4] = {};
  EXPECT_EQ(r.c().Read(small, sizeof small), 0u);
  EXPECT_TRUE(r.c().HasData()) << "the message must not be dropped";
  const ReadResult why = r.c().TryRead(small, sizeof small);
  EXPECT_EQ(why.status, Status::kBufferTooSmall);
  EXPECT_EQ(why.len, 10u);
  char big[16] = {};
  EXPECT_EQ(r.c().Read(big, sizeof big), 10u);
  EXPECT_EQ(std::string(big, 10), "0123456789");
}

// A zero-length message is consumed by Read (which returns 0 for it): the next
// Read returns the message after it.
TEST_F(RingTest, OriginalReadConsumesAnEmptyMessage) {
  Ring& r = Make(64);
  ASSERT_TRUE(r.p().Write(nullptr, 0));
  ASSERT_TRUE(r.p().Write("ab", 2));
  char out[4] = {};
  EXPECT_EQ(r.c().Read(out, sizeof out), 0u);
  EXPECT_EQ(r.c().Read(out, sizeof out), 2u);
  EXPECT_EQ(std::string(out, 2), "ab");
  EXPECT_FALSE(r.c().HasData());
}

// HasData (const, as in the original API) answers across a WRAP marker, frees the
// marker's lap like a Read would, and consumes no message.
TEST_F(RingTest, HasDataLooksAcrossAMarkerWithoutConsuming) {
  Ring& r = Make(64);
  ASSERT_EQ(r.Put(40), Status::kOk);  // record of 48 bytes
  r.Get(40);
  ASSERT_EQ(r.Put(20), Status::kOk);  // 24 bytes: does not fit the 16 to the end
  const ByteRingBuffer& view = r.c();
  EXPECT_TRUE(view.HasData());
  EXPECT_EQ(r.c().LoadTail(), 64u) << "the marker's lap is free";
  EXPECT_TRUE(view.HasData()) << "the message is still there";
  r.Get(20);
  EXPECT_FALSE(view.HasData());
}

TEST_F(RingTest, RolesAreEnforced) {
  Ring& r = Make(64);
  uint8_t* p = nullptr;
  MessageView v;
  EXPECT_EQ(r.c().Reserve(4, &p), Status::kInvalid);
  EXPECT_EQ(r.c().TryWrite("x", 1), Status::kInvalid);
  EXPECT_EQ(r.p().Peek(&v), Status::kInvalid);
  EXPECT_EQ(r.p().TryRead(&v, 0).status, Status::kInvalid);
  EXPECT_EQ(r.p().WaitReadable(0, nullptr), Status::kInvalid);
  EXPECT_EQ(r.c().WaitWritable(0, 0, nullptr), Status::kInvalid);
}

// ---- header validation -------------------------------------------------------------

TEST(RingHeader, ValidateHeaderNamesTheField) {
  constexpr uint32_t kCap = 256;
  const uint64_t size = layout::kHeaderSize + kCap;
  auto fresh = [&]() {
    auto img = std::make_unique<RingImage>(kCap);
    EXPECT_EQ(img->Init(), "");
    return img;
  };
  auto expect_field = [&](RingImage& img, uint64_t total, const std::string& field) {
    const std::string err = ByteRingBuffer::ValidateHeader(img.base(), total);
    EXPECT_NE(err.find(field), std::string::npos) << "error '" << err << "' should name " << field;
    ByteRingBuffer ring(img.base(), total, false);
    EXPECT_FALSE(ring.valid());
    EXPECT_EQ(ring.error(), err);
    uint8_t b;
    EXPECT_EQ(ring.TryRead(&b, 1).status, Status::kInvalid);
    EXPECT_FALSE(ring.HasData());
  };
  {
    auto img = fresh();
    EXPECT_EQ(ByteRingBuffer::ValidateHeader(img->base(), size), "");
    EXPECT_EQ(ByteRingBuffer::ValidateHeader(img->base(), size + 4096), "") << "bigger is fine";
  }
  {
    auto img = fresh();
    img->SetU32(layout::kMagicOffset, 0);
    expect_field(*img, size, "magic");
    img->SetU32(layout::kMagicOffset, 0x53524E47);  // byte-swapped
    expect_field(*img, size, "magic");
  }
  {
    auto img = fresh();
    img->SetU16(layout::kVersionOffset, 1);
    expect_field(*img, size, "version is 1; this build reads version 2");
    img->SetU16(layout::kVersionOffset, 3);
    expect_field(*img, size, "version");
    img->SetU16(layout::kVersionOffset, 0);
    expect_field(*img, size, "version");
  }
  {
    auto img = fresh();
    img->SetU16(layout::kHeaderSizeOffset, 64);
    expect_field(*img, size, "header_size");
    img->SetU16(layout::kHeaderSizeOffset, 256);
    expect_field(*img, size, "header_size");
  }
  for (uint32_t bad : {0u, 8u, 32u, 100u, 255u, 0x80000001u, 0xFFFFFFFFu}) {
    auto img = fresh();
    img->SetU32(layout::kCapacityOffset, bad);
    SCOPED_TRACE(bad);
    expect_field(*img, size, "capacity");
  }
  {
    auto img = fresh();
    img->SetU32(layout::kCapacityOffset, 512);  // valid, but larger than the segment
    expect_field(*img, size, "capacity");
    img->SetU32(layout::kCapacityOffset, 0x80000000u);
    expect_field(*img, size, "capacity");
  }
  {
    auto img = fresh();
    expect_field(*img, size - 1, "capacity");  // the segment is one byte short
    expect_field(*img, 127, "size");
    expect_field(*img, 0, "size");
  }
  EXPECT_NE(ByteRingBuffer::ValidateHeader(nullptr, size), "");
}

TEST(RingHeader, InitializeRefusesBadParameters) {
  RingImage img(256);
  EXPECT_NE(img.Init(4).find("start_index"), std::string::npos);
  for (uint32_t bad : {0u, 32u, 100u, 512u}) {
    const std::string err = ByteRingBuffer::Initialize(img.base(), img.size(), bad, 0, 1, 0);
    EXPECT_NE(err.find("capacity"), std::string::npos) << bad << ": " << err;
  }
  EXPECT_TRUE(img.GuardIntact());
  ASSERT_EQ(img.Init(0, 1), "");
  ByteRingBuffer r(img.base(), img.size(), false);
  ASSERT_TRUE(r.valid());
  EXPECT_EQ(r.profile(), 1u);
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_EQ(r.capacity(), 256u);
}

// ---- the producer view initializes a region without a ring (original API) -----------

TEST(ProducerView, InitializesZeroedMemory) {
  RingImage img(256);  // zeroed, no header yet
  ByteRingBuffer p(img.base(), img.size(), true);
  ASSERT_TRUE(p.valid()) << p.error();
  EXPECT_EQ(p.capacity(), 256u);
  EXPECT_EQ(img.U32(layout::kMagicOffset), layout::kMagic);
  EXPECT_NE(p.generation(), 0u);
  ByteRingBuffer c(img.base(), img.size(), false);
  ASSERT_TRUE(c.valid()) << c.error();
  ASSERT_TRUE(p.Write("abc", 3));
  char out[4] = {};
  EXPECT_EQ(c.Read(out, sizeof out), 3u);
  EXPECT_EQ(std::string(out, 3), "abc");
  EXPECT_TRUE(img.GuardIntact());
}

TEST(ProducerView, CapacityIsTheLargestPowerOfTwoThatFits) {
  for (const auto& [extra, cap] : std::vector<std::pair<uint32_t, uint32_t>>{
           {64, 64}, {127, 64}, {128, 128}, {1000, 512}, {4096, 4096}, {4097 + 7, 4096}}) {
    std::vector<uint8_t> mem(kHeaderSize + extra, 0);
    ByteRingBuffer p(mem.data(), mem.size(), true);
    ASSERT_TRUE(p.valid()) << extra << ": " << p.error();
    EXPECT_EQ(p.capacity(), cap) << extra;
  }
}

TEST(ProducerView, RefusesARegionTooSmallAndLeavesItAlone) {
  std::vector<uint8_t> mem(kHeaderSize + 63, 0);
  ByteRingBuffer p(mem.data(), mem.size(), true);
  EXPECT_FALSE(p.valid());
  EXPECT_NE(p.error().find("too small"), std::string::npos) << p.error();
  EXPECT_EQ(std::count(mem.begin(), mem.end(), 0), static_cast<long>(mem.size()));
  EXPECT_FALSE(p.Write("x", 1));
}

TEST(ProducerView, AttachesToALiveRingWithoutClobberingIt) {
  RingImage img(256);
  ASSERT_EQ(img.Init(), "");
  ByteRingBuffer first(img.base(), img.size(), true);
  ASSERT_TRUE(first.Write("kept", 4));
  const uint32_t head = img.U32(layout::kHeadOffset);
  const uint64_t generation = first.generation();
  ByteRingBuffer second(img.base(), img.size(), true);
  ASSERT_TRUE(second.valid()) << second.error();
  EXPECT_EQ(img.U32(layout::kHeadOffset), head) << "the header was rewritten";
  EXPECT_EQ(second.generation(), generation);
  ByteRingBuffer c(img.base(), img.size(), false);
  char out[8] = {};
  EXPECT_EQ(c.Read(out, sizeof out), 4u);
  EXPECT_EQ(std::string(out, 4), "kept");
}

TEST(ProducerView, RefusesAForeignMagicAndLeavesItAlone) {
  RingImage img(256);
  img.SetU32(layout::kMagicOffset, 0x12345678);
  img.SetU32(layout::kHeadOffset, 77);
  ByteRingBuffer p(img.base(), img.size(), true);
  EXPECT_FALSE(p.valid());
  EXPECT_NE(p.error().find("magic"), std::string::npos) << p.error();
  EXPECT_EQ(img.U32(layout::kMagicOffset), 0x12345678u);
  EXPECT_EQ(img.U32(layout::kHeadOffset), 77u);
}

TEST(ProducerView, ConsumerViewOverMemoryWithoutARingIsInvalid) {
  RingImage img(256);
  ByteRingBuffer c(img.base(), img.size(), false);
  EXPECT_FALSE(c.valid());
  EXPECT_NE(c.error().find("not initialized"), std::string::npos) << c.error();
  EXPECT_EQ(img.U32(layout::kMagicOffset), 0u) << "a consumer view never initializes";
  char out[4];
  EXPECT_EQ(c.Read(out, sizeof out), 0u);
  EXPECT_EQ(c.TryRead(out, sizeof out).status, Status::kInvalid);
}

// ---- the producer checks the consumer's tail -------------------------------------

// A tail the consumer could not have stored (past head, more than a capacity behind,
// misaligned) is reported as kCorrupt with both indices; no byte of unread data is
// overwritten.
TEST(ProducerChecksTail, ImpossibleTailIsCorruptNotOverwritten) {
  for (const uint32_t bad_tail : {264u, 0u - 8u, 4u}) {
    SCOPED_TRACE(bad_tail);
    RingImage img(256);
    ASSERT_EQ(img.Init(), "");
    ByteRingBuffer p(img.base(), img.size(), true);
    ASSERT_TRUE(p.valid());
    std::vector<uint8_t> msg(100, 0x42);
    ASSERT_TRUE(p.Write(msg.data(), 100));  // head 104
    ASSERT_TRUE(p.Write(msg.data(), 100));  // head 208
    ASSERT_TRUE(p.Write(msg.data(), 40));   // head 256: full, nothing read (tail 0)
    const std::vector<uint8_t> before(img.data(), img.data() + img.capacity());
    img.SetU32(layout::kTailOffset, bad_tail);
    uint8_t* where = nullptr;
    EXPECT_EQ(p.Reserve(4, &where), Status::kCorrupt);
    EXPECT_NE(p.error().find("tail " + std::to_string(bad_tail) + " is not valid for head 256"),
              std::string::npos)
        << p.error();
    EXPECT_EQ(p.TryWrite(msg.data(), 4), Status::kCorrupt);
    EXPECT_FALSE(p.Write(msg.data(), 4));
    EXPECT_EQ(p.WaitWritable(4, 0, nullptr), Status::kCorrupt);
    EXPECT_EQ(p.WaitWritable(4, kForever, nullptr), Status::kCorrupt) << "never sleeps on it";
    EXPECT_EQ(p.WriteableBytes(), 0u);
    EXPECT_EQ(std::vector<uint8_t>(img.data(), img.data() + img.capacity()), before)
        << "unread data was overwritten";
    EXPECT_EQ(img.U32(layout::kHeadOffset), 256u);
    // A valid tail again: the producer goes on.
    img.SetU32(layout::kTailOffset, 104);
    EXPECT_EQ(p.TryWrite(msg.data(), 100), Status::kOk);
  }
}

TEST(ProducerChecksTail, ProducerViewRefusesARingWithAnImpossibleTail) {
  RingImage img(256);
  ASSERT_EQ(img.Init(), "");
  img.SetU32(layout::kTailOffset, 16);  // past head 0
  ByteRingBuffer p(img.base(), img.size(), true);
  EXPECT_FALSE(p.valid());
  EXPECT_NE(p.error().find("tail 16 is not valid for head 0"), std::string::npos) << p.error();
}

}  // namespace

namespace {

// Review fix: Peek/Release must not free records still held through Acquire.
TEST(RingReviewFixes, PeekWhileAcquiredRecordsHeldIsInvalid) {
  std::vector<uint8_t> img(shm::layout::kHeaderSize + 256, 0);
  ASSERT_EQ(shm::ByteRingBuffer::Initialize(img.data(), img.size(), 256, 0, 7), "");
  shm::ByteRingBuffer p(img.data(), uint64_t{img.size()}, true);
  shm::ByteRingBuffer c(img.data(), uint64_t{img.size()}, false);
  ASSERT_TRUE(p.Write("a", 1));
  ASSERT_TRUE(p.Write("b", 1));
  shm::MessageView held, v;
  ASSERT_EQ(c.Acquire(&held), shm::Status::kOk);
  EXPECT_EQ(c.Peek(&v), shm::Status::kInvalid);
  c.Release();  // nothing peeked: must not move tail
  EXPECT_EQ(c.LoadTail(), 0u);
  c.ReleaseTo(held.end);
  ASSERT_EQ(c.Peek(&v), shm::Status::kOk);
  EXPECT_EQ(v.data[0], 'b');
}

// Review fix: the constructor uses the capacity ValidateHeader checked, never a re-read.
TEST(RingReviewFixes, ValidateHeaderReportsTheCapacityItChecked) {
  std::vector<uint8_t> img(shm::layout::kHeaderSize + 128, 0);
  ASSERT_EQ(shm::ByteRingBuffer::Initialize(img.data(), img.size(), 128, 0, 7), "");
  uint32_t cap = 0;
  EXPECT_EQ(shm::ByteRingBuffer::ValidateHeader(img.data(), img.size(), &cap), "");
  EXPECT_EQ(cap, 128u);
}

}  // namespace

// A consumer that read up to the head while the producer had stored that head but not
// yet the head mark that follows it must not move back to the mark's older head when it
// skips to the head: it would hand out again a record it has read (and a lossless
// receiver's tail would go backwards). Planted: the mark as it is between the two stores.
TEST(SkipToHead, NeverMovesBackToAHeadMarkThatLagsTheHead) {
  RingImage img(256);
  ASSERT_EQ(img.Init(), "");
  ByteRingBuffer p(img.base(), img.size(), true);
  ByteRingBuffer c(img.base(), img.size(), false);
  const char msg[8] = "message";
  ASSERT_TRUE(p.Write(msg, sizeof msg));
  const uint64_t lagging = p.HeadMark();  // the head after the first message
  ASSERT_TRUE(p.Write(msg, sizeof msg));
  char out[8];
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  std::memcpy(img.base() + layout::kHeadMarkOffset, &lagging, sizeof lagging);
  EXPECT_EQ(c.SkipToHead(), c.LoadHead());
  EXPECT_EQ(c.Read(out, sizeof out), 0u) << "a record already read is handed out again";
}
