// The wait protocol's idle costs and its peers' disappearance (Linux: futex,
// futex_waitv, membarrier, OFD locks, fork). Counts come from wait::GetCounters(),
// never from the clock: each test bounds how many sleeps or barriers a wait of a
// known number of liveness slices makes, with room to spare.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

using namespace shm;

namespace {

constexpr int64_t kGuardNs = 60'000'000'000;  // hang guard only, never reached when it works
// 1.2 s: two whole liveness slices (0.5 s) and a part of a third.
constexpr int64_t kThreeSlicesNs = 1'200'000'000;

class WaitProtocolTest : public shmtest::RingNameTest {
 protected:
  WaitProtocolTest() : RingNameTest("wait") {}
};

// Fills the ring with 56-byte messages until the next one does not fit.
void Fill(ShmProducer& p) {
  const std::string msg(56, 'x');
  while (p.Write(msg.data(), static_cast<uint32_t>(msg.size()))) {
  }
}

// One more 56-byte message, waiting up to the hang guard for space.
Status WriteOneMore(ShmProducer& p) {
  const std::string msg(56, 'y');
  return p.WriteFor(msg.data(), 56, kGuardNs);
}

}  // namespace

// A sleep that finds the second word already changed returns at once: CLOSED
// (producer_flags) or a detach (consumer_flags) stored between a sleeper's last
// look and its sleep is not lost, though the index word it sleeps on is unchanged.
// (A plain futex wait on the first word would sleep out its whole timeout.)
TEST(WaitOnWords, SecondWordAlreadyChangedEndsTheSleepAtOnce) {
  uint32_t index = 8;
  uint32_t flags = 4;  // the sleeper last saw 0
  EXPECT_EQ(wait::WaitOnWords(&index, 8, &flags, 0, kGuardNs), wait::Result::kWoken);
}

// An idle consumer sleeps whole liveness slices (no 50 ms cap: ~24 sleeps in
// 1.2 s before) and fences once for the whole wait (WAITING stays set across
// the re-sleeps; before, one membarrier per sleep).
// The producer's owner word is zeroed (as a producer that does not arm it leaves
// it): an armed word makes the slice 5 s, and one sleep would cover the wait.
TEST_F(WaitProtocolTest, IdleConsumerSleepsWholeSlicesAndFencesOnce) {
  ShmProducer& p = Producer(4096);
  __atomic_store_n(p.ring()->ProducerOwnerWord(), 0u, __ATOMIC_RELEASE);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  wait::ResetCounters();
  MessageView v;
  EXPECT_EQ(c.PeekFor(&v, kThreeSlicesNs), Status::kTimeout);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.sleeps, 2u);
  EXPECT_LE(n.sleeps, 8u) << "an idle consumer wakes about once per liveness slice";
  EXPECT_GT(n.longest_timeout_ns, 100'000'000) << "no 50 ms nap cap";
  EXPECT_LE(n.heavy_barriers, 1u) << "one fence per running -> sleeping transition";
  EXPECT_EQ(c.ring()->ConsumerFlags() & layout::kConsumerWaiting, 0u) << "cleared on return";
}

// A producer with full_fences fences its publications itself: its MEMBARRIER bit
// is clear, so a receiver going to sleep issues no membarrier (an interrupt to
// every CPU), and the wake-up still arrives.
TEST_F(WaitProtocolTest, FullFencesProducerSparesTheSleepingReceiversMembarrier) {
  ProducerOptions o;
  o.capacity = 4096;
  o.full_fences = true;
  ShmProducer& p = Producer(o);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  EXPECT_EQ(p.ring()->ProducerFlags() & layout::kProducerMembarrier, 0u);
  wait::ResetCounters();
  MessageView v;
  shmtest::BlockingCall peek([&] { return c.PeekFor(&v, kGuardNs); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  ASSERT_TRUE(p.Write("frame", 5));
  EXPECT_EQ(peek.Join(), Status::kOk);
  EXPECT_EQ(v.len, 5u);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.sleeps, 1u);
  EXPECT_EQ(n.heavy_barriers, 0u) << "no membarrier for a fully fenced producer";
}

// The same for the ring-level wait of the original API.
TEST_F(WaitProtocolTest, RingWaitReadableFencesOnceAcrossSlices) {
  Producer(4096);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  wait::ResetCounters();
  EXPECT_EQ(c.ring()->WaitReadable(kThreeSlicesNs, nullptr), Status::kTimeout);
  const wait::Counters n = wait::GetCounters();
  EXPECT_LE(n.sleeps, 8u);
  EXPECT_LE(n.heavy_barriers, 1u);
  EXPECT_EQ(c.ring()->ConsumerFlags() & layout::kConsumerWaiting, 0u);
}

// A producer waiting for space with a live consumer attached: one fence for the
// whole wait, sleeps of a liveness slice.
TEST_F(WaitProtocolTest, ProducerWaitingForSpaceFencesOnceAcrossSlices) {
  ShmProducer& p = Producer(4096);
  Consumer();
  ASSERT_TRUE(AllOpen());
  Fill(p);
  wait::ResetCounters();
  const std::string msg(56, 'y');
  EXPECT_EQ(p.WriteFor(msg.data(), 56, kThreeSlicesNs), Status::kTimeout);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.sleeps, 2u);
  EXPECT_LE(n.sleeps, 8u);
  EXPECT_LE(n.heavy_barriers, 1u);
  EXPECT_EQ(p.ring()->ProducerFlags() & layout::kProducerWaiting, 0u) << "cleared on return";
}

// The consumer detaches while the producer waits for space: nobody is left to
// make room, the wait ends with kFull (at once: the detach wakes the producer).
TEST_F(WaitProtocolTest, ConsumerDetachEndsAProducerWaitWithFull) {
  ShmProducer& p = Producer(4096);
  ASSERT_TRUE(AllOpen());
  auto c = std::make_unique<ShmConsumer>(p.name());
  ASSERT_TRUE(c->IsValid()) << c->error();
  Fill(p);
  shmtest::BlockingCall writer([&] { return WriteOneMore(p); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  c.reset();  // detach
  EXPECT_EQ(writer.Join(), Status::kFull);
}

// The consumer process is killed while the producer waits for space: kFull
// within a liveness slice (one lock probe per slice notices it).
TEST_F(WaitProtocolTest, ConsumerKilledEndsAProducerWaitWithFull) {
  ShmProducer& p = Producer(4096);
  ASSERT_TRUE(AllOpen());
  const pid_t child = shmtest::ForkHolding([&]() -> int {
    ShmConsumer c(p.name());
    if (!c.IsValid()) return 2;
    shmtest::HoldUntilKilled();
  });
  ASSERT_GT(child, 0);
  Fill(p);
  shmtest::BlockingCall writer([&] { return WriteOneMore(p); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  kill(child, SIGKILL);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  EXPECT_EQ(writer.Join(), Status::kFull);
}

// Before any consumer attached, a producer waiting for space goes on waiting
// (either side may start first): the first consumer that attaches and reads
// lets the write through.
TEST_F(WaitProtocolTest, ProducerWaitBeforeAnyConsumerKeepsWaiting) {
  ShmProducer& p = Producer(4096);
  ASSERT_TRUE(AllOpen());
  Fill(p);
  shmtest::BlockingCall writer([&] { return WriteOneMore(p); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  char buf[64];
  EXPECT_EQ(c.ReadFor(buf, sizeof buf, kGuardNs).status, Status::kOk);
  EXPECT_EQ(writer.Join(), Status::kOk);
}

// ---- release wake batching ---------------------------------------------------

namespace {
constexpr uint32_t kBigRing = 1u << 20;  // batch: capacity / 8 = 128 KiB
constexpr uint32_t kSmall = 1016;        // 1 KiB records

void FillSmall(ShmProducer& p, int* count) {
  const std::string msg(kSmall, 's');
  while (p.Write(msg.data(), kSmall)) ++*count;
}
}  // namespace

// A producer asleep for 600 KiB while the consumer reads 1 KiB messages one by
// one: it is woken once per 128 KiB batch of releases, not once per message
// (before: ~600 wake-ups).
TEST_F(WaitProtocolTest, SmallReleasesWakeASleepingProducerOncePerBatch) {
  ShmProducer& p = Producer(kBigRing);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  int count = 0;
  FillSmall(p, &count);
  const uint32_t big = 600u << 10;
  shmtest::BlockingCall writer([&] {
    const std::string msg(big, 'B');
    return p.WriteFor(msg.data(), big, kGuardNs);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  wait::ResetCounters();
  std::vector<char> buf(big);
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(c.ReadFor(buf.data(), kSmall, kGuardNs).status, Status::kOk) << i;
  }
  EXPECT_EQ(writer.Join(), Status::kOk);
  EXPECT_LE(wait::GetCounters().wakes, 16u) << "one wake per batch of released bytes";
  EXPECT_EQ(c.ReadFor(buf.data(), big, kGuardNs).len, big);
}

// One thread owning both ends of a big ring: after reading everything it can write
// at once (the caught-up release is stored, never batched away), and after reading
// only part, Flush() hands the space over.
TEST_F(WaitProtocolTest, SingleThreadOwningBothEndsNeverWaitsForItsOwnReleases) {
  ShmProducer& p = Producer(kBigRing);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  int count = 0;
  FillSmall(p, &count);
  std::vector<char> buf(kSmall);
  for (int i = 0; i < count; ++i) ASSERT_EQ(c.TryRead(buf.data(), kSmall).status, Status::kOk);
  const std::string msg(kSmall, 'n');
  EXPECT_EQ(p.WriteFor(msg.data(), kSmall, kGuardNs), Status::kOk) << "no self-deadlock";
  FillSmall(p, &count);
  ASSERT_EQ(c.ring()->Read(buf.data(), kSmall), kSmall);  // one read: batched
  EXPECT_FALSE(p.Write(msg.data(), kSmall)) << "the release is batched, not yet stored";
  c.ring()->Flush();
  EXPECT_TRUE(p.Write(msg.data(), kSmall)) << "Flush stores it";
}

// Records held by another thread and released while the consumer thread sleeps in
// AcquireFor: the release is stored at once (the sleeping thread would not store
// it), so a producer waiting for exactly that space goes on.
TEST_F(WaitProtocolTest, ReleasesWhileTheConsumerSleepsReachAWaitingProducer) {
  ShmProducer& p = Producer(kBigRing);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  int count = 0;
  FillSmall(p, &count);
  std::vector<MessageView> held(count);
  for (int i = 0; i < count; ++i) ASSERT_EQ(c.AcquireFor(&held[i], 0), Status::kOk);
  MessageView next;
  shmtest::BlockingCall reader([&] { return c.AcquireFor(&next, kGuardNs); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  shmtest::BlockingCall writer([&] {
    const std::string msg(2 * kSmall, 'w');
    return p.WriteFor(msg.data(), 2 * kSmall, kGuardNs);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  c.Release(held[0]);  // 3 KiB of 1 MiB: far below a batch
  c.Release(held[1]);
  c.Release(held[2]);
  EXPECT_EQ(writer.Join(), Status::kOk);
  EXPECT_EQ(reader.Join(), Status::kOk);
  EXPECT_EQ(next.len, 2 * kSmall);
}

// A consumer came and left before the producer had to wait: the wait ends at once
// with kFull (nobody is left to make room), as shmringsink drops in that case.
TEST_F(WaitProtocolTest, ConsumerGoneBeforeTheWaitEndsItAtOnceWithFull) {
  ShmProducer& p = Producer(4096);
  ASSERT_TRUE(AllOpen());
  {
    ShmConsumer c(p.name());
    ASSERT_TRUE(c.IsValid()) << c.error();
  }
  Fill(p);
  EXPECT_EQ(WriteOneMore(p), Status::kFull);
}

// A wait that slept and then got its record leaves WAITING clear (the producer
// would otherwise make a futex call on every later commit).
TEST_F(WaitProtocolTest, WaitingIsClearedWhenASleepEndsWithARecord) {
  ShmProducer& p = Producer(4096);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  shmtest::BlockingCall reader([&] {
    MessageView v;
    return c.PeekFor(&v, kGuardNs);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  ASSERT_TRUE(p.Write("x", 1));
  EXPECT_EQ(reader.Join(), Status::kOk);
  EXPECT_EQ(c.ring()->ConsumerFlags() & layout::kConsumerWaiting, 0u);
}
