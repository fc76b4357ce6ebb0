// Where a consumer starts (ConsumerOptions::start_at) and which rings it waits past
// (wait_for_open_producer): a live stream's backlog is never read, a non-live
// ring is read from its oldest record, and a CLOSED ring already read to its end
// is not a new stream. Timeouts are hang guards or the short "nothing came" looks.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ring_name_test.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;

using shmtest::kGuardNs;

class ConsumerStartTest : public shmtest::RingNameTest {
 protected:
  ConsumerStartTest() : RingNameTest("start") {}
  // Sets producer_flags LIVE on `name` the way a live producer does (an atomic OR).
  static void MarkLive(const std::string& name) {
    SharedMemory mem(name, 0, false);
    ASSERT_TRUE(mem.valid()) << mem.error_message();
    auto* flags = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(mem.data()) +
                                              layout::kProducerFlagsOffset);
    __atomic_fetch_or(flags, layout::kProducerLive, __ATOMIC_RELEASE);
  }
  static void WriteSeq(ShmProducer& p, uint32_t from, uint32_t to) {
    for (uint32_t i = from; i < to; ++i) ASSERT_EQ(p.WriteFor(&i, sizeof i, kGuardNs), Status::kOk);
  }
  static uint32_t ReadOne(ShmConsumer& c) {
    uint32_t v = 0;
    const ReadResult r = c.ReadFor(&v, sizeof v, kGuardNs);
    EXPECT_EQ(r.status, Status::kOk);
    return v;
  }
};

TEST_F(ConsumerStartTest, NewestIfLiveSkipsTheBacklogOfALiveRing) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  MarkLive(name);
  WriteSeq(p, 0, 10);  // the backlog, published before the consumer attaches
  ConsumerOptions o;
  o.start_at = StartAt::kNewestIfLive;
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_TRUE(c.live());
  EXPECT_FALSE(c.HasData());
  EXPECT_EQ(c.ring()->LoadTail(), c.ring()->LoadHead());  // the space is free again
  WriteSeq(p, 10, 12);
  EXPECT_EQ(ReadOne(c), 10u);
  EXPECT_EQ(ReadOne(c), 11u);
}

TEST_F(ConsumerStartTest, NewestIfLiveReadsANonLiveRingFromItsOldestRecord) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  WriteSeq(p, 0, 3);
  ConsumerOptions o;
  o.start_at = StartAt::kNewestIfLive;
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_FALSE(c.live());
  EXPECT_EQ(ReadOne(c), 0u);
  EXPECT_EQ(ReadOne(c), 1u);
  EXPECT_EQ(ReadOne(c), 2u);
}

TEST_F(ConsumerStartTest, NewestSkipsAnyBacklogAndOldestKeepsIt) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  MarkLive(name);
  WriteSeq(p, 0, 4);
  {
    ConsumerOptions o;  // kOldest: the backlog is there, attach_head marks its end
    ShmConsumer c(name, o);
    ASSERT_TRUE(c.IsValid()) << c.error();
    EXPECT_EQ(c.attach_head(), c.ring()->LoadHead());
    EXPECT_EQ(ReadOne(c), 0u);
  }
  ConsumerOptions o;
  o.start_at = StartAt::kNewest;
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_FALSE(c.HasData());
  WriteSeq(p, 4, 5);
  EXPECT_EQ(ReadOne(c), 4u);
}

TEST_F(ConsumerStartTest, ADrainedClosedRingIsNotANewStream) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  WriteSeq(p, 0, 2);
  p.Close();  // CLOSED; the segment stays at the name
  {
    ShmConsumer first(name);
    ASSERT_TRUE(first.IsValid()) << first.error();
    EXPECT_EQ(ReadOne(first), 0u);
    EXPECT_EQ(ReadOne(first), 1u);
    uint32_t v;
    EXPECT_EQ(first.ReadFor(&v, sizeof v, 0).status, Status::kClosed);
  }
  ConsumerOptions o;
  o.wait_for_open_producer = true;
  o.open_timeout_ns = 100'000'000;  // "nothing came" look, not a timing assertion
  ShmConsumer again(name, o);
  EXPECT_FALSE(again.IsValid());
  EXPECT_EQ(again.open_status(), Status::kTimeout);
  EXPECT_NE(again.error().find("read to its end"), std::string::npos) << again.error();

  // Without the option the old behaviour stays: it attaches and sees the end.
  ShmConsumer plain(name);
  EXPECT_TRUE(plain.IsValid()) << plain.error();
}

TEST_F(ConsumerStartTest, AClosedRingWithUnreadDataIsStillAStream) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  WriteSeq(p, 0, 2);
  p.Close();  // finished before any consumer came: its data is still to be read
  ConsumerOptions o;
  o.wait_for_open_producer = true;
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(ReadOne(c), 0u);
  EXPECT_EQ(ReadOne(c), 1u);
}

TEST_F(ConsumerStartTest, WaitForOpenProducerAttachesToTheNextRing) {
  const std::string name = Name();
  auto old = std::make_unique<ShmProducer>(name, 4096);
  ASSERT_TRUE(old->IsValid()) << old->error();
  old->Close();  // CLOSED and empty: an ended stream
  ConsumerOptions o;
  o.wait_for_open_producer = true;
  o.open_timeout_ns = 0;
  EXPECT_EQ(ShmConsumer(name, o).open_status(), Status::kTimeout);
  ShmProducer next(name, 4096);  // replaces the CLOSED ring
  ASSERT_TRUE(next.IsValid()) << next.error();
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.generation(), next.generation());
}

}  // namespace
