// The small-message fast paths (ByteRingBuffer::TryWrite / ShmProducer::WriteFor's
// inline write, ShmConsumer::ReadFor's inline read) against the general paths
// (Reserve + Commit, Peek + Release): the same bytes in the ring and the header,
// the same messages out, whatever the length, sync flag, wrap or record type.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ring_name_test.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"

namespace {

using namespace shm;
using shmtest::RingImage;

std::vector<uint8_t> Bytes(uint32_t len, uint32_t salt) {
  std::vector<uint8_t> v(len);
  for (uint32_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(salt * 13 + i * 7 + 1);
  return v;
}

struct Pair {
  explicit Pair(uint32_t capacity, uint32_t start_index) : img(capacity) {
    init_error = img.Init(start_index);
    if (!init_error.empty()) return;
    prod = std::make_unique<ByteRingBuffer>(img.base(), img.size(), true);
    cons = std::make_unique<ByteRingBuffer>(img.base(), img.size(), false);
  }
  RingImage img;
  std::string init_error;
  std::unique_ptr<ByteRingBuffer> prod, cons;
};

// Every message length a 64-byte record holds and a few past it, sync and not,
// across many wraps of a small ring (records that need a WRAP marker, a full ring):
// TryWrite leaves every byte of the image (header words, marks, records, padding)
// as Reserve + memcpy + Commit does, and reads back the same.
TEST(FastPaths, TryWriteLeavesTheBytesOfReserveAndCommit) {
  for (const uint32_t start : {0u, 0xFFFFFF00u}) {  // and across the 2^32 index wrap
    Pair fast(256, start), general(256, start);
    ASSERT_EQ(fast.init_error, "");
    ASSERT_EQ(general.init_error, "");
    // A stale byte pattern everywhere in the data area: padding must be written.
    std::memset(fast.img.data(), 0xEE, 256);
    std::memset(general.img.data(), 0xEE, 256);
    uint32_t written = 0, read = 0;
    for (uint32_t i = 0; i < 600; ++i) {
      const uint32_t len = (i * 5) % 71;
      const bool sync = i % 3 != 0;
      const std::vector<uint8_t> msg = Bytes(len, i);
      const Status a = fast.prod->TryWrite(msg.data(), len, sync);
      uint8_t* payload = nullptr;
      Status b = general.prod->Reserve(len, &payload);
      if (b == Status::kOk) {
        if (len != 0) std::memcpy(payload, msg.data(), len);
        general.prod->Commit(len, sync);
      }
      ASSERT_EQ(a, b) << "message " << i << " len " << len;
      if (a == Status::kOk) ++written;
      ASSERT_EQ(std::memcmp(fast.img.base(), general.img.base(), fast.img.size()), 0)
          << "after writing message " << i << " (len " << len << ", sync " << sync << ")";
      // Read every other step, or whenever the ring is full, so the ring wraps often.
      while (read < written && (a != Status::kOk || i % 2 == 0)) {
        std::vector<uint8_t> x(80), y(80);
        const ReadResult rx = fast.cons->TryRead(x.data(), 80);
        const ReadResult ry = general.cons->TryRead(y.data(), 80);
        ASSERT_EQ(rx.status, Status::kOk);
        ASSERT_EQ(ry.status, Status::kOk);
        ASSERT_EQ(rx.len, ry.len);
        ASSERT_EQ(std::memcmp(x.data(), y.data(), rx.len), 0);
        ++read;
        if (a == Status::kOk) break;
      }
      ASSERT_TRUE(fast.img.GuardIntact());
    }
    EXPECT_GT(written, 300u);
  }
}

class FastReadTest : public shmtest::RingNameTest {
 protected:
  FastReadTest() : RingNameTest("fast") {}
};

// ReadFor over a mix the inline read takes (small records) and leaves to the
// general path (records past 64 bytes, a message larger than the buffer, PAD
// records, WRAP markers): every message in order, a too-large one kept until a
// large enough buffer comes, nothing lost, and at the end the tail word is the
// head (everything read is released).
TEST_F(FastReadTest, ReadForGivesEveryRecordKindInOrder) {
  const std::string name = Name();
  ShmProducer p(name, 1024);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  uint32_t sent = 0, got = 0;
  for (uint32_t round = 0; round < 40; ++round) {
    // A batch: small and large messages, an abandoned reservation (a PAD record).
    std::vector<uint32_t> lens;
    for (uint32_t k = 0; k < 6; ++k) {
      const uint32_t len = (round * 11 + k * 17) % 100;
      ASSERT_EQ(p.WriteFor(Bytes(len, sent).data(), len, shmtest::kGuardNs), Status::kOk);
      lens.push_back(len);
      ++sent;
      if (k == 2) {
        Reservation r;
        ASSERT_EQ(p.ReserveNext(24, &r, shmtest::kGuardNs), Status::kOk);
        p.Abandon(r);
      }
    }
    for (const uint32_t len : lens) {
      std::vector<uint8_t> out(100);
      // A buffer of 64 bytes first: longer messages stay and say their size.
      ReadResult r = c.ReadFor(out.data(), 64, shmtest::kGuardNs);
      if (len > 64) {
        ASSERT_EQ(r.status, Status::kBufferTooSmall);
        ASSERT_EQ(r.len, len);
        r = c.ReadFor(out.data(), 100, shmtest::kGuardNs);
      }
      ASSERT_EQ(r.status, Status::kOk) << StatusName(r.status);
      ASSERT_EQ(r.len, len);
      out.resize(len);
      ASSERT_EQ(out, Bytes(len, got)) << "message " << got;
      ++got;
    }
  }
  EXPECT_EQ(got, sent);
  EXPECT_EQ(p.ring()->LoadTail(), p.ring()->LoadHead());
  std::vector<uint8_t> out(100);
  EXPECT_EQ(c.ReadFor(out.data(), 100, 0).status, Status::kEmpty);
}

// ReadFor's inline read takes only records it has checked: a head more than a lap
// ahead, a misaligned head, or a small record whose length passes the head goes to
// the general path, which says the ring is corrupt; nothing is copied out.
TEST_F(FastReadTest, HostileIndicesAndLengthsAreCorruptNotRead) {
  enum class Plant { kHeadPastALap, kMisalignedHead, kRecordPassesHead };
  for (const Plant plant :
       {Plant::kHeadPastALap, Plant::kMisalignedHead, Plant::kRecordPassesHead}) {
    const std::string name = Name();
    ShmProducer p(name, 1024);
    ASSERT_TRUE(p.IsValid()) << p.error();
    const std::vector<uint8_t> msg = Bytes(8, 3);
    ASSERT_EQ(p.WriteFor(msg.data(), 8, 0), Status::kOk);  // one 16-byte record at 0
    uint8_t* base = p.ring()->base();
    auto* head = reinterpret_cast<uint32_t*>(base + layout::kHeadOffset);
    // Planted before the consumer attaches, so its first look sees them.
    switch (plant) {
      case Plant::kHeadPastALap:
        __atomic_store_n(head, 16u + 1024u, __ATOMIC_RELEASE);
        break;
      case Plant::kMisalignedHead:
        __atomic_store_n(head, 12u, __ATOMIC_RELEASE);
        break;
      case Plant::kRecordPassesHead: {
        const uint32_t len = 40;  // a 48-byte record behind a head 16 bytes on
        std::memcpy(base + layout::kHeaderSize, &len, 4);
        break;
      }
    }
    ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    std::vector<uint8_t> out(64, 0xAB);
    const ReadResult r = c.ReadFor(out.data(), 64, 0);
    EXPECT_EQ(r.status, Status::kCorrupt)
        << "plant " << static_cast<int>(plant) << ": " << StatusName(r.status);
    EXPECT_EQ(out, std::vector<uint8_t>(64, 0xAB)) << "plant " << static_cast<int>(plant);
  }
}

}  // namespace
