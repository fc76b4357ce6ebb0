// ShmConsumer as a held-records engine: acquire in ring order, release from any
// thread in any order (the tail follows the oldest record still held), a
// producer blocked for space woken by a release from another thread while the
// consumer sleeps, interrupts (of a wait, and of the wait for the ring itself
// through an external Interrupter), timeouts, a dead producer drained then
// reported, detach, HeldBytes and the stall notice. Timeouts are hang guards.
#include <gtest/gtest.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;
using namespace std::chrono_literals;

using shmtest::kGuardNs;

class EngineTest : public shmtest::RingNameTest {
 protected:
  EngineTest() : RingNameTest("eng") {}
};

std::string Text(const MessageView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.len);
}

std::string Msg(int i) { return "msg-" + std::to_string(i); }

TEST_F(EngineTest, AcquiresInRingOrderAndHoldsUntilReleased) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid()) << p.error() << c.error();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(p.Write(Msg(i).data(), 5));
  std::vector<MessageView> views(5);
  uint32_t held = 0;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(c.AcquireFor(&views[i], kGuardNs), Status::kOk);
    EXPECT_EQ(Text(views[i]), Msg(i));
    held += static_cast<uint32_t>(layout::RecordSize(5));
    EXPECT_EQ(c.HeldBytes(), held);
  }
  MessageView none;
  EXPECT_EQ(c.AcquireFor(&none, 0), Status::kEmpty);
  EXPECT_EQ(p.ring()->LoadTail(), 0u) << "nothing released yet";
  for (const MessageView& v : views) c.Release(v);
  EXPECT_EQ(c.HeldBytes(), 0u);
  EXPECT_EQ(p.ring()->LoadTail(), p.ring()->LoadHead());
}

// Releases arrive from several threads in a shuffled order; after each one the
// tail sits exactly at the end of the oldest record still held.
TEST_F(EngineTest, OutOfOrderReleasesFromOtherThreadsFreeTheRingInOrder) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  constexpr int kN = 16;
  std::vector<MessageView> views(kN);
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(p.Write(Msg(i).data(), 5));
    ASSERT_EQ(c.AcquireFor(&views[i], kGuardNs), Status::kOk);
  }
  std::vector<int> order(kN);
  for (int i = 0; i < kN; ++i) order[i] = i;
  std::mt19937 rng(7);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> released(kN, false);
  for (int i : order) {
    std::thread([&c, v = views[i]] { c.Release(v); }).join();
    released[i] = true;
    int oldest = 0;
    while (oldest < kN && released[oldest]) ++oldest;
    const uint32_t expect_tail = oldest == 0 ? 0 : views[oldest - 1].end;
    EXPECT_EQ(p.ring()->LoadTail(), expect_tail) << "after releasing " << i;
    EXPECT_EQ(c.HeldBytes(), (oldest == kN ? views[kN - 1].end : views[kN - 1].end) - expect_tail);
  }
  // Many threads at once, too.
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(p.Write(Msg(i).data(), 5));
    ASSERT_EQ(c.AcquireFor(&views[i], kGuardNs), Status::kOk);
  }
  std::vector<std::thread> threads;
  for (int i = kN - 1; i >= 0; --i) threads.emplace_back([&c, v = views[i]] { c.Release(v); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(p.ring()->LoadTail(), p.ring()->LoadHead());
  EXPECT_EQ(c.HeldBytes(), 0u);
}

// The one engine case the old single-threaded consumer could not do: the consumer
// thread sleeps in AcquireFor (everything is acquired), the producer sleeps
// waiting for space, and another thread's release wakes the producer, whose write
// then wakes the consumer.
TEST_F(EngineTest, ReleaseFromAnotherThreadWakesProducerWhileConsumerSleeps) {
  const std::string name = Name();
  ShmProducer p(name, 64);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  std::vector<MessageView> held;
  while (p.Write("12345678", 8)) {
  }
  for (;;) {
    MessageView v;
    if (c.AcquireFor(&v, 0) != Status::kOk) break;
    held.push_back(v);
  }
  ASSERT_FALSE(held.empty());
  std::atomic<int> got{-1};
  std::string got_text;
  std::thread consumer([&] {
    MessageView v;
    const Status s = c.AcquireFor(&v, kGuardNs);
    if (s == Status::kOk) got_text = Text(v);
    got = static_cast<int>(s);
  });
  std::atomic<int> wrote{-1};
  std::thread producer([&] { wrote = static_cast<int>(p.WriteFor("abcdefgh", 8, kGuardNs)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return shmtest::Asleep(c) && shmtest::Asleep(p); }));
  std::thread releaser([&] {
    for (const MessageView& v : held) c.Release(v);
  });
  releaser.join();
  producer.join();
  consumer.join();
  EXPECT_EQ(static_cast<Status>(wrote.load()), Status::kOk);
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
  EXPECT_EQ(got_text, "abcdefgh");
}

// Releasing everything up to a published WRAP marker frees the marker's lap too:
// a producer waiting for a record that fits only after the marker must not wait
// for the consumer's next read.
TEST_F(EngineTest, ReleasingUpToAWrapMarkerFreesItsLap) {
  const std::string name = Name();
  ShmProducer p(name, 128);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  std::vector<MessageView> held;
  for (int i = 0; i < 5; ++i) {  // 5 x 16 bytes: 48 bytes left before the end
    ASSERT_TRUE(p.Write("0123456789", 10));
    MessageView v;
    ASSERT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk);
    held.push_back(v);
  }
  uint8_t* w = nullptr;
  // 60 bytes do not fit before the end: the marker is published, the record does not fit.
  ASSERT_EQ(p.Reserve(60, &w, 0), Status::kFull);
  ASSERT_EQ(p.ring()->LoadHead(), 128u) << "the WRAP marker is published";
  MessageView none;
  EXPECT_EQ(c.AcquireFor(&none, 0), Status::kEmpty);
  for (const MessageView& v : held) c.Release(v);
  EXPECT_EQ(p.ring()->LoadTail(), 128u) << "the marker's lap is free";
  EXPECT_EQ(p.Reserve(60, &w, 0), Status::kOk);
  p.Commit(60);
  ASSERT_EQ(c.AcquireFor(&none, kGuardNs), Status::kOk);
  EXPECT_EQ(none.len, 60u);
}

TEST_F(EngineTest, ReleaseToReleasesEverythingUpToThatRecordFromAnyThread) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  std::vector<MessageView> v(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(p.Write(Msg(i).data(), 5));
    ASSERT_EQ(c.AcquireFor(&v[i], kGuardNs), Status::kOk);
  }
  std::thread([&] { c.ReleaseTo(v[2].end); }).join();
  EXPECT_EQ(p.ring()->LoadTail(), v[2].end);
  c.ReleaseTo(v[1].end);  // already released: nothing moves
  EXPECT_EQ(p.ring()->LoadTail(), v[2].end);
  c.ReleaseTo(12345);  // not a held record: ignored
  EXPECT_EQ(p.ring()->LoadTail(), v[2].end);
  c.Release(v[3]);
  EXPECT_EQ(p.ring()->LoadTail(), v[3].end);
}

TEST_F(EngineTest, InterruptWakesAWaitAndIsStickyUntilCleared) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  shmtest::BlockingCall reader([&] {
    MessageView v;
    return c.AcquireFor(&v, kForever);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  c.Interrupt();
  EXPECT_EQ(reader.Join(), Status::kInterrupted);
  MessageView v;
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kInterrupted) << "sticky";
  c.ClearInterrupt();
  ASSERT_TRUE(p.Write("x", 1));
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk);
}

TEST_F(EngineTest, TimeoutWhenNothingArrives) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  MessageView v;
  EXPECT_EQ(c.AcquireFor(&v, 30'000'000), Status::kTimeout);
  EXPECT_EQ(c.AcquireFor(&v, 0), Status::kEmpty);
  char buf[8];
  EXPECT_EQ(c.ReadFor(buf, sizeof buf, 1'000'000).status, Status::kTimeout);
}

// An external Interrupter reaches a consumer that does not exist yet: the wait
// for the ring ends with kInterrupted.
TEST_F(EngineTest, ExternalInterrupterInterruptsTheWaitForTheRing) {
  const std::string name = Name();
  Interrupter intr;
  std::atomic<int> status{-1};
  std::thread opener([&] {
    ConsumerOptions o;
    o.open_timeout_ns = kForever;
    o.interrupter = &intr;
    ShmConsumer c(name, o);
    status = static_cast<int>(c.open_status());
  });
  std::this_thread::sleep_for(50ms);  // let it start waiting (not required: sticky)
  intr.Interrupt();
  opener.join();
  EXPECT_EQ(static_cast<Status>(status.load()), Status::kInterrupted);
  // Sticky: a new open with the same interrupter returns at once, until cleared.
  ConsumerOptions o;
  o.open_timeout_ns = kForever;
  o.interrupter = &intr;
  ShmConsumer again(name, o);
  EXPECT_EQ(again.open_status(), Status::kInterrupted);
  intr.Clear();
  ShmProducer p(name, 4096);
  ShmConsumer c(name, o);
  ASSERT_TRUE(c.IsValid()) << c.error();
  // The same interrupter then interrupts the consumer's waits.
  shmtest::BlockingCall reader([&] {
    MessageView v;
    return c.AcquireFor(&v, kForever);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  intr.Interrupt();
  EXPECT_EQ(reader.Join(), Status::kInterrupted);
}

// The producer is killed with records written and some still held: the rest is
// delivered, then kPeerDead; held records stay readable.
TEST_F(EngineTest, DeadProducerIsDrainedThenReported) {
#ifdef _WIN32
  SHMTEST_NOT_ON_WINDOWS(
      "fork and SIGKILL (WindowsLiveness.ConsumerSeesAKilledProducerAsDead covers it)");
#else
  const std::string name = Name();
  const pid_t child = shmtest::ForkHolding([&]() -> int {
    ShmProducer p(name, 4096);
    if (!p.IsValid()) return 2;
    for (int i = 0; i < 4; ++i) p.Write(Msg(i).data(), 5);
    shmtest::HoldUntilKilled();
  });
  ASSERT_GT(child, 0);
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  MessageView first;
  ASSERT_EQ(c.AcquireFor(&first, kGuardNs), Status::kOk);
  kill(child, SIGKILL);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  for (int i = 1; i < 4; ++i) {
    MessageView v;
    ASSERT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk) << i;
    EXPECT_EQ(Text(v), Msg(i));
    c.Release(v);
  }
  MessageView v;
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kPeerDead);
  EXPECT_EQ(Text(first), Msg(0)) << "a held record stays readable";
  c.Release(first);
  EXPECT_EQ(c.HeldBytes(), 0u);
#endif
}

// Detach gives up the role at once (a new consumer may attach) while held records
// stay readable; their later release no longer moves the tail.
TEST_F(EngineTest, DetachKeepsHeldRecordsReadableAndLeavesTheTailAlone) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid());
  auto c = std::make_unique<ShmConsumer>(name);
  ASSERT_TRUE(c->IsValid());
  ASSERT_TRUE(p.Write("held", 4));
  MessageView v;
  ASSERT_EQ(c->AcquireFor(&v, kGuardNs), Status::kOk);
  EXPECT_TRUE(p.ConsumerAttached());
  c->Detach();
  EXPECT_FALSE(p.ConsumerAttached());
  MessageView w;
  EXPECT_EQ(c->AcquireFor(&w, 0), Status::kInvalid);
  ShmConsumer next(name);
  ASSERT_TRUE(next.IsValid()) << next.error();
  ASSERT_EQ(next.AcquireFor(&w, kGuardNs), Status::kOk);
  EXPECT_EQ(Text(v), "held");
  c->Release(v);  // the old consumer's release: the tail is the new one's now
  EXPECT_EQ(p.ring()->LoadTail(), 0u);
  c.reset();
  EXPECT_TRUE(p.ConsumerAttached()) << "the old consumer's destructor leaves the new one alone";
  next.Release(w);
  EXPECT_EQ(p.ring()->LoadTail(), w.end);
}

// A held record keeps the producer waiting for space: the callback says so once,
// and releasing the record lets the producer go on.
TEST_F(EngineTest, StallCallbackWhenHeldRecordsKeepTheProducerWaiting) {
  const std::string name = Name();
  ShmProducer p(name, 64);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  std::atomic<int> stalls{0};
  c.SetStallCallback([&] { stalls.fetch_add(1); });
  std::vector<MessageView> held;
  while (p.Write("12345678", 8)) {
  }
  for (;;) {
    MessageView v;
    if (c.AcquireFor(&v, 0) != Status::kOk) break;
    held.push_back(v);
  }
  std::atomic<int> wrote{-1};
  std::thread producer([&] { wrote = static_cast<int>(p.WriteFor("abcdefgh", 8, kGuardNs)); });
  std::atomic<int> got{-1};
  std::thread consumer([&] {  // one long wait: it looks at the producer every slice
    MessageView v;
    got = static_cast<int>(c.AcquireFor(&v, kGuardNs));
  });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return stalls.load() > 0; }));
  for (const MessageView& v : held) c.Release(v);
  producer.join();
  consumer.join();
  EXPECT_EQ(static_cast<Status>(wrote.load()), Status::kOk);
  EXPECT_EQ(static_cast<Status>(got.load()), Status::kOk);
  EXPECT_EQ(stalls.load(), 1) << "once per episode";
}

// wait_for_live_producer: a dead producer's ring is not attached to; the consumer
// waits until a new producer replaces it.
TEST_F(EngineTest, WaitForLiveProducerSkipsADeadProducersRing) {
#ifdef _WIN32
  SHMTEST_NOT_ON_WINDOWS("fork; a dead producer's ring outlives it only on POSIX");
#else
  const std::string name = Name();
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmProducer p(name, 4096);
    if (!p.IsValid()) _exit(2);
    p.Write("old", 3);
    _exit(0);  // dies without closing
  });
  ASSERT_EQ(shmtest::WaitChild(child), 0);
  ConsumerOptions o;
  o.wait_for_live_producer = true;
  o.open_timeout_ns = 20'000'000;
  {
    ShmConsumer c(name, o);
    EXPECT_EQ(c.open_status(), Status::kTimeout) << c.error();
    EXPECT_NE(c.error().find("stale"), std::string::npos) << c.error();
  }
  std::unique_ptr<ShmProducer> p;
  std::thread creator([&] {
    std::this_thread::sleep_for(30ms);
    p = std::make_unique<ShmProducer>(name, 4096);
    p->Write("new", 3);
  });
  o.open_timeout_ns = kGuardNs;
  ShmConsumer c(name, o);
  creator.join();
  ASSERT_TRUE(c.IsValid()) << c.error();
  MessageView v;
  ASSERT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk);
  EXPECT_EQ(Text(v), "new");
#endif
}

// A second consumer is refused with the first one's pid.
TEST_F(EngineTest, SecondConsumerRefusedWithTheHoldersPid) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer first(name);
  ASSERT_TRUE(p.IsValid() && first.IsValid());
  ConsumerOptions o;
  o.open_timeout_ns = kForever;  // refused at once anyway: not "not there yet"
  ShmConsumer second(name, o);
  EXPECT_EQ(second.open_status(), Status::kInvalid);
  EXPECT_EQ(second.busy_consumer_pid(), CurrentPid());
  EXPECT_NE(second.error().find("already has a consumer"), std::string::npos) << second.error();
}

}  // namespace

namespace {

// Only a missing name (or a ring still being created) is "not there yet": a ring
// this user may not open is refused at once, even when told to wait forever.
TEST_F(EngineTest, PermissionDeniedIsRefusedAtOnceNotWaitedFor) {
#ifdef _WIN32
  SHMTEST_NOT_ON_WINDOWS("/dev/shm modes and uids");
#else
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  const bool root = geteuid() == 0;
  // Root may open anything: open as nobody; others cannot open a 0000 segment.
  if (!root) {
    ASSERT_EQ(chmod(("/dev/shm/" + name).c_str(), 0), 0);
  }
  const pid_t child = shmtest::ForkChild([&]() -> int {
    if (root && (setgid(65534) != 0 || setuid(65534) != 0)) return 2;
    ConsumerOptions o;
    o.open_timeout_ns = kGuardNs;  // a hang guard: must not be waited out
    ShmConsumer c(name, o);
    if (c.open_status() != Status::kInvalid) return 3;
    if (c.error().find("ermission denied") == std::string::npos) return 4;
    return 0;
  });
  EXPECT_EQ(shmtest::WaitChild(child), 0) << "3: waited for (or attached to) the ring; 4: the "
                                             "error does not say permission denied";
#endif
}

// Consumer and producer started together, many times: the consumer either finds
// nothing yet, finds a ring in creation (waits) or attaches; it never refuses a
// ring because its magic appeared between two looks. Bounded by a count.
TEST_F(EngineTest, ConsumerAndProducerStartedTogetherNeverRefuse) {
  constexpr int kRounds = 2000;
  int in_creation_seen = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = shmtest::UniqueName("race");
    std::atomic<bool> go{false};
    std::unique_ptr<ShmProducer> p;
    std::thread producer([&] {
      while (!go.load()) {
      }
      p = std::make_unique<ShmProducer>(name, 4096);
    });
    go.store(true);
    // One look at a time, as fast as possible, so the looks land inside the
    // producer's creation (ftruncate .. magic store) as often as they can.
    std::unique_ptr<ShmConsumer> c;
    for (int look = 0;; ++look) {
      c = std::make_unique<ShmConsumer>(name, 0);
      if (c->IsValid()) break;
      ASSERT_EQ(c->open_status(), Status::kTimeout)
          << "round " << round << " look " << look << ": " << c->error();
      if (c->error().find("magic is 0") != std::string::npos) ++in_creation_seen;
      ASSERT_LT(look, 10'000'000) << "hang guard";
    }
    producer.join();
    ASSERT_TRUE(p->IsValid()) << p->error();
    ASSERT_TRUE(p->Write("hi", 2));
    MessageView v;
    ASSERT_EQ(c->AcquireFor(&v, kGuardNs), Status::kOk);
    c.reset();
    p.reset();
  }
  RecordProperty("rings_seen_in_creation", in_creation_seen);
}

}  // namespace
