// Wake once per sleep and the one producer-side sleep for space (Linux: futex,
// OFD locks). Counts come from wait::GetCounters() and the header's flags words,
// never from the clock.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"
#include "test_util.hpp"

using namespace shm;

namespace {

constexpr int64_t kGuardNs = 60'000'000'000;  // hang guard only, never reached when it works
// 1.2 s: two whole liveness slices (0.5 s) and a part of a third.
constexpr int64_t kThreeSlicesNs = 1'200'000'000;

struct Views {
  explicit Views(uint32_t capacity) : img(capacity) {
    EXPECT_EQ(img.Init(), "");
    p = std::make_unique<ByteRingBuffer>(img.base(), img.size(), true);
    c = std::make_unique<ByteRingBuffer>(img.base(), img.size(), false);
  }
  shmtest::RingImage img;
  std::unique_ptr<ByteRingBuffer> p, c;
};

class SpaceWaitTest : public shmtest::RingNameTest {
 protected:
  SpaceWaitTest() : RingNameTest("spw") {}

  // A concurrent producer on a 4 KiB ring holding one 4000-byte record its consumer
  // never reads: the next 4000-byte reservation waits for space. Counters reset.
  // Failures are EXPECTs: callers ASSERT_FALSE(HasFailure()) before using the ring.
  ShmProducer& FullRing() {
    ShmProducer& p = Producer(4096);
    Consumer();
    const ::testing::AssertionResult open = AllOpen();
    EXPECT_TRUE(open);
    if (!open) return p;  // the test stops at its ASSERT_FALSE(HasFailure())
    p.SetConcurrent(true);
    Reservation r;
    EXPECT_EQ(p.ReserveNext(4000, &r, 0), Status::kOk);
    p.Publish(r, 4000);
    wait::ResetCounters();
    return p;
  }
};

}  // namespace

// A consumer asleep on the head (WAITING, its sleep counted) is woken by the first
// two publishes only (the first one has no count read before its store, so it
// records nothing; the second records the count it read before its store): the
// later publishes see that count and skip the system call. A new sleep (a new
// count) gets one new wake. Before: one wake per publish while WAITING was set (1.7 M
// wake calls for 2 M 64-byte messages under load).
TEST(WakeOncePerSleep, ProducerWakesASleepingConsumerOncePerSleep) {
  Views v(4096);
  const char msg[8] = "message";
  // One sleep that returns at once (timeout 0): WAITING stays set until EndSleep.
  v.c->SleepWhileHeadIs(v.c->LoadHead(), 0, nullptr);
  ASSERT_NE(v.c->ConsumerFlags() & layout::kConsumerWaiting, 0u);
  wait::ResetCounters();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  EXPECT_EQ(wait::GetCounters().wakes, 2u) << "two wakes for the sleep, not one per publish";
  // A re-sleep within the same wait: the next publish wakes it, once.
  v.c->SleepWhileHeadIs(v.c->LoadHead(), 0, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  EXPECT_EQ(wait::GetCounters().wakes, 3u);
  v.c->EndSleep();
  ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  EXPECT_EQ(wait::GetCounters().wakes, 3u) << "no wake for a consumer that is not waiting";
}

// A receiver that dies asleep leaves WAITING | COUNTS_SLEEPS in its slot's flags (and
// the producer remembers the count it woke). A receiver that does not count its sleeps
// (the Python package, its native wait) then attaches to the slot and sleeps, setting
// WAITING only: the producer must wake it at every publish, not skip every wake on the
// dead receiver's count (a stall of a liveness slice per sleep). Attaching clears the
// dead receiver's WAITING and COUNTS_SLEEPS.
TEST(WakeOncePerSleep, ReceiverThatDoesNotCountIsWokenAfterADeadCountingOne) {
  Views v(4096);
  const char msg[8] = "message";
  v.c->SleepWhileHeadIs(v.c->LoadHead(), 0, nullptr);  // a counted sleep
  ASSERT_TRUE(v.p->Write(msg, sizeof msg));            // woken: the producer keeps its count
  // The receiver dies asleep (its flags stay as they are); another view takes the slot.
  ByteRingBuffer next(v.img.base(), v.img.size(), false);
  next.AttachSlot(/*at_newest=*/true, 4242);
  EXPECT_EQ(next.ConsumerFlags() & (layout::kConsumerWaiting | layout::kConsumerCountsSleeps), 0u)
      << "a dead receiver's WAITING / COUNTS_SLEEPS survive the attach";
  // It sleeps as a receiver that does not count: WAITING only, full fence, look, sleep.
  auto* flags = reinterpret_cast<std::atomic<uint32_t>*>(v.img.base() + layout::SlotOffset(0) +
                                                         layout::kSlotFlags);
  flags->fetch_or(layout::kConsumerWaiting, std::memory_order_seq_cst);
  wait::ResetCounters();
  ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  EXPECT_EQ(wait::GetCounters().wakes, 1u) << "the non-counting sleeper's wake was skipped";
  ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  EXPECT_EQ(wait::GetCounters().wakes, 2u) << "a non-counting sleeper is woken at every publish";
}

// The same with a receiver that does not know COUNTS_SLEEPS at all (a build from
// before it, same layout version): its attach bumps the attach count and sets ATTACHED
// but leaves the dead receiver's COUNTS_SLEEPS, and it sleeps with WAITING only, never
// bumping the count. Every publish must wake it: the producer trusts a slot's count only
// once it moved since the attach count it belongs to appeared. (Remembering the attach
// count with the woken count instead wakes it once, then skips on the pair it recorded.)
TEST(WakeOncePerSleep, ReceiverUnawareOfCountsIsWokenAtEveryPublishAfterADeadCountingOne) {
  Views v(4096);
  const char msg[8] = "message";
  v.c->SleepWhileHeadIs(v.c->LoadHead(), 0, nullptr);                    // a counted sleep
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(v.p->Write(msg, sizeof msg));  // count remembered
  wait::ResetCounters();
  ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  ASSERT_EQ(wait::GetCounters().wakes, 0u) << "a counted sleep already woken is skipped";
  // The receiver dies asleep; an older receiver attaches as it always did (attach count
  // bumped after a full fence, ATTACHED), then sleeps as it always did: WAITING only.
  auto* flags = reinterpret_cast<std::atomic<uint32_t>*>(v.img.base() + layout::SlotOffset(0) +
                                                         layout::kSlotFlags);
  flags->fetch_add(layout::kConsumerAttachCountOne, std::memory_order_seq_cst);
  flags->fetch_or(layout::kConsumerAttached | layout::kConsumerWaiting, std::memory_order_seq_cst);
  ASSERT_NE(flags->load() & layout::kConsumerCountsSleeps, 0u) << "left as the dead one left it";
  for (uint32_t i = 1; i <= 4; ++i) {
    ASSERT_TRUE(v.p->Write(msg, sizeof msg));
    EXPECT_EQ(wait::GetCounters().wakes, i) << "publish " << i << ": the older receiver's wake "
                                            << "was skipped on the dead receiver's count";
  }
}

// The mirror: a producer asleep for space is woken by the first two tail stores only.
TEST(WakeOncePerSleep, ConsumerWakesASleepingProducerOncePerSleep) {
  Views v(4096);  // < 64 KiB: the consumer stores its tail at every release
  const char msg[8] = "message";
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(v.p->Write(msg, sizeof msg));
  char out[8];
  v.p->BeginSpaceWait();
  // One sleep that returns at once (the tail is not what it "saw").
  v.p->SleepForSpace(0, v.c->LoadTail() + 8, 0, nullptr);
  ASSERT_NE(v.p->ProducerFlags() & layout::kProducerWaiting, 0u);
  wait::ResetCounters();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(v.c->Read(out, sizeof out), 8u);
  EXPECT_EQ(wait::GetCounters().wakes, 2u) << "two wakes for the sleep, not one per release";
  v.p->SleepForSpace(0, v.c->LoadTail() + 8, 0, nullptr);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(v.c->Read(out, sizeof out), 8u);
  EXPECT_EQ(wait::GetCounters().wakes, 3u);
  v.p->EndSpaceWait();
  EXPECT_EQ(v.p->ProducerFlags() & layout::kProducerWaiting, 0u);
  ASSERT_EQ(v.c->Read(out, sizeof out), 8u);
  EXPECT_EQ(wait::GetCounters().wakes, 3u) << "no wake for a producer that is not waiting";
}

// A reservation wait over several liveness slices sets WAITING (and fences) once
// for the whole wait, as WaitWritable does (before: set and cleared around every
// slice's sleep).
TEST_F(SpaceWaitTest, ReservationWaitSetsWaitingOnceAcrossSlices) {
  ShmProducer& p = FullRing();
  ASSERT_FALSE(HasFailure());
  Reservation r;
  EXPECT_EQ(p.ReserveNext(4000, &r, kThreeSlicesNs), Status::kTimeout);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.sleeps, 2u) << "the wait spans several slices";
  EXPECT_EQ(n.waiting_sets, 1u) << "WAITING set once for the whole wait";
  EXPECT_LE(n.heavy_barriers, 1u);
  EXPECT_EQ(p.ring()->ProducerFlags() & layout::kProducerWaiting, 0u) << "cleared on return";
}

// Two threads of one producer wait for space at the same time: WAITING stays set
// while either sleeps; the first one to leave does not clear it under the other.
TEST_F(SpaceWaitTest, WaitingStaysSetWhileAnotherThreadStillWaits) {
  ShmProducer& p = FullRing();
  ASSERT_FALSE(HasFailure());
  Interrupter first, second;
  Reservation x, y;
  shmtest::BlockingCall a([&] { return p.ReserveNext(4000, &x, kGuardNs, &first); });
  shmtest::BlockingCall b([&] { return p.ReserveNext(4000, &y, kGuardNs, &second); });
  // Both asleep (each sleep is counted as it starts; spurious re-sleeps only add).
  ASSERT_TRUE(shmtest::WaitUntil([] { return wait::GetCounters().sleeps >= 2; }));
  first.Interrupt();
  EXPECT_EQ(a.Join(), Status::kInterrupted);
  EXPECT_NE(p.ring()->ProducerFlags() & layout::kProducerWaiting, 0u)
      << "the other thread still waits for space";
  second.Interrupt();
  EXPECT_EQ(b.Join(), Status::kInterrupted);
  EXPECT_EQ(p.ring()->ProducerFlags() & layout::kProducerWaiting, 0u) << "the last one clears it";
  EXPECT_EQ(wait::GetCounters().waiting_sets, 1u);
}

// A reservation held back only by a kept one (a buffer still used upstream) sleeps
// until Unkeep wakes it: its sleeps are counted wait-protocol sleeps and Unkeep
// issues the wake (before: a 1 ms nap loop, no sleep or wake counted).
TEST_F(SpaceWaitTest, WaiterOnKeptSpaceWakesOnUnkeep) {
  ShmProducer& p = Producer(256);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  Reservation kept;
  ASSERT_EQ(p.ReserveNext(100, &kept, 0), Status::kOk);  // record 104
  p.Publish(kept, 100, /*keep=*/true);
  char buf[256];
  ASSERT_EQ(c.ReadFor(buf, sizeof buf, kGuardNs).len, 100u);  // the consumer is done with it
  wait::ResetCounters();
  std::atomic<int> got{-1};
  std::thread t([&] {
    Reservation big;
    const Status s = p.ReserveNext(200, &big, kGuardNs);
    if (s == Status::kOk) p.Abandon(big);
    got = static_cast<int>(s);
  });
  // Bounded look for the sleep (it never comes with a nap loop: then the checks fail).
  const bool slept =
      shmtest::WaitUntil([] { return wait::GetCounters().sleeps >= 1; }, std::chrono::seconds(10));
  EXPECT_TRUE(slept) << "the waiter sleeps in the wait protocol";
  EXPECT_TRUE(p.HeldBackByKept(200));
  const uint64_t wakes_before = wait::GetCounters().wakes;
  p.Unkeep(kept);
  if (slept) {
    EXPECT_GT(wait::GetCounters().wakes, wakes_before) << "Unkeep wakes the sleeper";
  }
  // The freed room lies behind the WRAP marker the first try published: the
  // consumer skipping it (a read that finds nothing) frees it and wakes the waiter.
  ASSERT_TRUE(shmtest::WaitUntil([&] {
    (void)c.ReadFor(buf, sizeof buf, 0);
    return got.load() != -1;
  }));
  t.join();
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
}

// Retract frees room as Unkeep does: a reservation held back by a kept record
// (asleep for an Unkeep) is woken when the last, never published reservation is
// retracted and the room it took lies free again (before: it slept on until its
// own timeout).
TEST_F(SpaceWaitTest, WaiterOnKeptSpaceWakesOnRetract) {
  ShmProducer& p = Producer(256);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  Reservation kept, last;
  ASSERT_EQ(p.ReserveNext(100, &kept, 0), Status::kOk);  // record 104 at 0
  p.Publish(kept, 100, /*keep=*/true);
  char buf[256];
  ASSERT_EQ(c.ReadFor(buf, sizeof buf, kGuardNs).len, 100u);  // the consumer is done with it
  ASSERT_EQ(p.ReserveNext(148, &last, 0), Status::kOk);       // record 152: to the lap's end
  wait::ResetCounters();
  Interrupter intr;
  std::atomic<int> got{-1};
  std::thread t([&] {
    Reservation r;  // 104 bytes: only at the lap's start, where the kept record is
    const Status s = p.ReserveNext(100, &r, kGuardNs, &intr);
    if (s == Status::kOk) p.Abandon(r);
    got = static_cast<int>(s);
  });
  const bool slept =
      shmtest::WaitUntil([] { return wait::GetCounters().sleeps >= 1; }, std::chrono::seconds(10));
  EXPECT_TRUE(slept) << "the waiter sleeps in the wait protocol";
  EXPECT_TRUE(p.HeldBackByKept(100));
  const uint64_t wakes_before = wait::GetCounters().wakes;
  ASSERT_TRUE(p.Retract(last));
  if (slept) {
    EXPECT_GT(wait::GetCounters().wakes, wakes_before) << "Retract wakes the sleeper";
  }
  // Bounded look; without the wake the waiter would sleep up to kGuardNs.
  const bool done = shmtest::WaitUntil([&] { return got.load() != -1; }, std::chrono::seconds(10));
  if (!done) intr.Interrupt();
  t.join();
  EXPECT_TRUE(done) << "the waiter got the room Retract freed";
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
}

// Stress for the skipped wakes: a producer and a consumer thread on a 128-byte ring
// (both sides sleep often) with sleeps that only a wake ends (a 60 s guard): a lost
// wake would show as a sleep that timed out. Every message is checked. Also run
// under TSan (build-tsan).
TEST(WakeOncePerSleep, BlockingPairLosesNoWake) {
  Views v(128);
  constexpr uint32_t kCount = 20000;
  wait::ResetCounters();
  std::thread producer([&] {
    uint8_t msg[40];
    for (uint32_t i = 0; i < kCount; ++i) {
      const uint32_t len = 8 + i % 33;
      std::memset(msg, static_cast<int>(i & 0xff), len);
      std::memcpy(msg, &i, 4);
      while (v.p->TryWrite(msg, len) == Status::kFull) {
        ASSERT_EQ(v.p->WaitWritable(len, kGuardNs, nullptr), Status::kOk);
      }
    }
  });
  uint8_t out[64];
  uint32_t got = 0, bad = 0;
  while (got < kCount) {
    const ReadResult r = v.c->TryRead(out, sizeof out);
    if (r.status == Status::kEmpty) {
      v.c->SleepWhileHeadIs(v.c->HeadSeen(), kGuardNs, nullptr);
      continue;
    }
    v.c->EndSleep();
    ASSERT_EQ(r.status, Status::kOk);
    uint32_t seq;
    std::memcpy(&seq, out, 4);
    bad += seq != got || r.len != 8 + got % 33 || out[r.len - 1] != (got & 0xff);
    ++got;
  }
  v.c->EndSleep();
  producer.join();
  EXPECT_EQ(bad, 0u);
  const wait::Counters n = wait::GetCounters();
  EXPECT_EQ(n.timeouts, 0u) << "every sleep was ended by a wake (or a changed word)";
  std::printf("%llu sleeps, %llu wakes\n", static_cast<unsigned long long>(n.sleeps),
              static_cast<unsigned long long>(n.wakes));
}
