// The wait protocol's idle costs and its peers' disappearance (Linux: futex,
// futex_waitv, membarrier, OFD locks, fork). Counts come from wait::GetCounters(),
// never from the clock: each test bounds how many sleeps or barriers a wait of a
// known number of liveness slices makes, with room to spare.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

class WaitProtocolTest : public ::testing::Test {
 protected:
  std::string Name() {
    names_.push_back(shmtest::UniqueName("wait"));
    return names_.back();
  }
  void TearDown() override {
    for (const std::string& n : names_) shm_unlink(OsName(n).c_str());
  }

 private:
  std::vector<std::string> names_;
};

// Fills the ring with 56-byte messages until the next one does not fit.
void Fill(ShmProducer& p) {
  const std::string msg(56, 'x');
  while (p.Write(msg.data(), static_cast<uint32_t>(msg.size()))) {
  }
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
TEST_F(WaitProtocolTest, IdleConsumerSleepsWholeSlicesAndFencesOnce) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
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

// The same for the ring-level wait of the original API.
TEST_F(WaitProtocolTest, RingWaitReadableFencesOnceAcrossSlices) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
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
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
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
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  auto c = std::make_unique<ShmConsumer>(name);
  ASSERT_TRUE(c->IsValid()) << c->error();
  Fill(p);
  std::atomic<int> result{-1};
  std::thread writer([&] {
    const std::string msg(56, 'y');
    result = static_cast<int>(p.WriteFor(msg.data(), 56, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (p.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  c.reset();  // detach
  writer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kFull);
}

// The consumer process is killed while the producer waits for space: kFull
// within a liveness slice (one lock probe per slice notices it).
TEST_F(WaitProtocolTest, ConsumerKilledEndsAProducerWaitWithFull) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmConsumer c(name);
    if (!c.IsValid()) return 2;
    char b = 1;
    if (write(ready[1], &b, 1) != 1) return 3;
    for (;;) pause();
  });
  char b;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  close(ready[0]);
  close(ready[1]);
  Fill(p);
  std::atomic<int> result{-1};
  std::thread writer([&] {
    const std::string msg(56, 'y');
    result = static_cast<int>(p.WriteFor(msg.data(), 56, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (p.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  kill(child, SIGKILL);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  writer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kFull);
}

// Before any consumer attached, a producer waiting for space goes on waiting
// (either side may start first): the first consumer that attaches and reads
// lets the write through.
TEST_F(WaitProtocolTest, ProducerWaitBeforeAnyConsumerKeepsWaiting) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  Fill(p);
  std::atomic<int> result{-1};
  std::thread writer([&] {
    const std::string msg(56, 'y');
    result = static_cast<int>(p.WriteFor(msg.data(), 56, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (p.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  char buf[64];
  EXPECT_EQ(c.ReadFor(buf, sizeof buf, kGuardNs).status, Status::kOk);
  writer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk);
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
  const std::string name = Name();
  ShmProducer p(name, kBigRing);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  int count = 0;
  FillSmall(p, &count);
  const uint32_t big = 600u << 10;
  std::atomic<int> result{-1};
  std::thread writer([&] {
    const std::string msg(big, 'B');
    result = static_cast<int>(p.WriteFor(msg.data(), big, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (p.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  wait::ResetCounters();
  std::vector<char> buf(big);
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(c.ReadFor(buf.data(), kSmall, kGuardNs).status, Status::kOk) << i;
  }
  writer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk);
  EXPECT_LE(wait::GetCounters().wakes, 16u) << "one wake per batch of released bytes";
  EXPECT_EQ(c.ReadFor(buf.data(), big, kGuardNs).len, big);
}

// One thread owning both ends of a big ring: after reading everything it can write
// at once (the caught-up release is stored, never batched away), and after reading
// only part, Flush() hands the space over.
TEST_F(WaitProtocolTest, SingleThreadOwningBothEndsNeverWaitsForItsOwnReleases) {
  const std::string name = Name();
  ShmProducer p(name, kBigRing);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
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
  const std::string name = Name();
  ShmProducer p(name, kBigRing);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  int count = 0;
  FillSmall(p, &count);
  std::vector<MessageView> held(count);
  for (int i = 0; i < count; ++i) ASSERT_EQ(c.AcquireFor(&held[i], 0), Status::kOk);
  std::atomic<int> got{-1};
  MessageView next;
  std::thread reader([&] { got = static_cast<int>(c.AcquireFor(&next, kGuardNs)); });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (c.ring()->ConsumerFlags() & layout::kConsumerWaiting) != 0; }));
  std::atomic<int> wrote{-1};
  std::thread writer([&] {
    const std::string msg(2 * kSmall, 'w');
    wrote = static_cast<int>(p.WriteFor(msg.data(), 2 * kSmall, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (p.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  c.Release(held[0]);  // 3 KiB of 1 MiB: far below a batch
  c.Release(held[1]);
  c.Release(held[2]);
  writer.join();
  reader.join();
  EXPECT_EQ(static_cast<Status>(wrote.load()), Status::kOk);
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
  EXPECT_EQ(next.len, 2 * kSmall);
}

// A consumer came and left before the producer had to wait: the wait ends at once
// with kFull (nobody is left to make room), as shmringsink drops in that case.
TEST_F(WaitProtocolTest, ConsumerGoneBeforeTheWaitEndsItAtOnceWithFull) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  {
    ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
  }
  Fill(p);
  const std::string msg(56, 'y');
  EXPECT_EQ(p.WriteFor(msg.data(), 56, kGuardNs), Status::kFull);
}

// A wait that slept and then got its record leaves WAITING clear (the producer
// would otherwise make a futex call on every later commit).
TEST_F(WaitProtocolTest, WaitingIsClearedWhenASleepEndsWithARecord) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  std::atomic<int> got{-1};
  std::thread reader([&] {
    MessageView v;
    got = static_cast<int>(c.PeekFor(&v, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (c.ring()->ConsumerFlags() & layout::kConsumerWaiting) != 0; }));
  ASSERT_TRUE(p.Write("x", 1));
  reader.join();
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
  EXPECT_EQ(c.ring()->ConsumerFlags() & layout::kConsumerWaiting, 0u);
}
