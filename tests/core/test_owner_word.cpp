// The producer's owner word (layout::kProducerOwnerOffset): a robust-futex word the
// kernel marks OWNER_DIED, and wakes, when the producer process dies. A consumer
// asleep in a blocking read with a long timeout hears a kill -9 through it (not
// through a liveness slice's expiry), fans the wake out to the ring's other
// receivers, falls back to slices when the word is not armed, and survives
// hostile values. A clean close marks nothing and leaves no thread. Timeouts are
// hang guards only; what ended a sleep is read from wait::GetCounters().
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"
#include "test_util.hpp"
#include "tuning.hpp"

namespace {

using namespace shm;
using shmtest::kGuardNs;

class OwnerWordTest : public shmtest::RingNameTest {
 protected:
  OwnerWordTest() : RingNameTest("owner") {}
};

uint32_t* OwnerWord(SharedMemory& m) {
  return reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(m.data()) +
                                     layout::kProducerOwnerOffset);
}
uint32_t Load(const uint32_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }

// Whether thread `tid` of this process exists (sanitizers start threads of their
// own, so thread counts would not do).
bool ThreadExists(uint32_t tid) {
  return access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0;
}

// A forked producer of `name` that arms its word (or, with `disarm`, zeroes it as
// a producer that predates the word would leave it) and holds until killed.
pid_t ForkProducer(const std::string& name, uint32_t max_receivers, bool disarm) {
  return shmtest::ForkHolding([=]() -> int {
    ProducerOptions o;
    o.capacity = 4096;
    o.max_receivers = max_receivers;
    ShmProducer p(name, o);
    if (!p.IsValid()) return 2;
    SharedMemory m(name, 0, false);
    if (!m.valid()) return 3;
    if (disarm) __atomic_store_n(OwnerWord(m), 0u, __ATOMIC_RELEASE);
    shmtest::HoldUntilKilled();
  });
}

// Resets the wait counters, kills the forked producer `child` while `c` sleeps in
// PeekFor, and returns what the read said.
Status KillWhileAsleepInPeek(ShmConsumer& c, pid_t child) {
  wait::ResetCounters();
  shmtest::BlockingCall reader([&] {
    MessageView v;
    return c.PeekFor(&v, kGuardNs);
  });
  EXPECT_TRUE(shmtest::WaitUntilAsleep(c));
  EXPECT_EQ(kill(child, SIGKILL), 0);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  return reader.Join();
}

TEST_F(OwnerWordTest, ProducerArmsItsWordWithAThreadOfItsOwn) {
  const std::string name = Name();
  auto p = std::make_unique<ShmProducer>(name, 4096);
  ASSERT_TRUE(p->IsValid()) << p->error();
  SharedMemory m(name, 0, false);  // outlives the producer's mapping
  ASSERT_TRUE(m.valid());
  const uint32_t armed = Load(OwnerWord(m));
  EXPECT_EQ(armed & (layout::kOwnerWaiters | layout::kOwnerDied), layout::kOwnerWaiters);
  const uint32_t tid = armed & layout::kOwnerTidMask;
  EXPECT_NE(tid, static_cast<uint32_t>(syscall(SYS_gettid))) << "not the caller's thread";
  EXPECT_TRUE(ThreadExists(tid)) << "a thread of this process";
  p.reset();  // clean close: disarmed (0, not OWNER_DIED), thread joined, then unmapped
  EXPECT_EQ(Load(OwnerWord(m)), 0u);
  // Joined, then gone: the kernel wakes the joiner (the thread's tid word cleared as
  // its memory goes) a little before it removes the thread's /proc entry, so the
  // entry is waited for (a hang guard: a thread still running keeps it forever).
  EXPECT_TRUE(shmtest::WaitUntil([&] { return !ThreadExists(tid); })) << "joined";
}

TEST_F(OwnerWordTest, CleanExitOfAProducerProcessMarksNothing) {
  const std::string name = Name();
  const pid_t child = shmtest::ForkChild([&]() -> int {
    auto p = std::make_unique<ShmProducer>(name, 4096);
    if (!p->IsValid()) return 2;
    SharedMemory keep(name, 0, false);
    if (!keep.valid()) return 3;
    p.reset();
    (void)SharedMemory::Unlink(name, nullptr);
    return Load(OwnerWord(keep)) == 0 ? 0 : 4;  // disarmed before its unmap
  });
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

TEST_F(OwnerWordTest, KilledProducerWakesAConsumerAsleepInABlockingRead) {
  const std::string name = Name();
  const pid_t child = ForkProducer(name, 1, false);
  ASSERT_GT(child, 0);
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(KillWhileAsleepInPeek(c, child), Status::kPeerDead);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.owner_wakes, 1u) << "woken through the owner word";
  EXPECT_EQ(n.owner_deaths, 1u);
  EXPECT_GT(n.longest_timeout_ns, tuning::kLivenessSliceNs) << "an armed word lets the slice grow";
}

// Two receivers asleep on one ring: the kernel wakes one sleeper of the word; the
// one it woke wakes the other (without that, the other would sleep out its slice).
TEST_F(OwnerWordTest, BothReceiversOfAFanOutRingHearTheDeath) {
  const std::string name = Name();
  const pid_t child = ForkProducer(name, 2, false);
  ASSERT_GT(child, 0);
  ShmConsumer a(name);
  ShmConsumer b(name);
  ASSERT_TRUE(a.IsValid() && b.IsValid()) << a.error() << b.error();
  wait::ResetCounters();
  shmtest::BlockingCall ra([&] {
    MessageView v;
    return a.PeekFor(&v, kGuardNs);
  });
  shmtest::BlockingCall rb([&] {
    MessageView v;
    return b.PeekFor(&v, kGuardNs);
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(a));
  ASSERT_TRUE(shmtest::WaitUntilAsleep(b));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  EXPECT_EQ(ra.Join(), Status::kPeerDead);
  EXPECT_EQ(rb.Join(), Status::kPeerDead);
  const wait::Counters n = wait::GetCounters();
  EXPECT_GE(n.owner_wakes, 2u) << "both sleeps ended through the owner word";
  EXPECT_EQ(n.owner_deaths, 2u);
}

// Whoever the kernel's one wake reaches passes it on, even a sleeper with no
// liveness look of its own (here a bare WaitOnWords, queued first, so the kernel
// picks it): the consumer behind it hears the death through the word too.
TEST_F(OwnerWordTest, ASleeperWithoutALivenessLookPassesTheWakeOn) {
  const std::string name = Name();
  const pid_t child = ForkProducer(name, 2, false);
  ASSERT_GT(child, 0);
  SharedMemory m(name, 0, false);
  ASSERT_TRUE(m.valid());
  auto* base = static_cast<uint8_t*>(m.data());
  const auto* head = reinterpret_cast<const uint32_t*>(base + layout::kHeadOffset);
  const auto* pflags = reinterpret_cast<const uint32_t*>(base + layout::kProducerFlagsOffset);
  const uint32_t* owner = OwnerWord(m);
  std::atomic<long> bare_tid{0};
  std::thread bare([&] {
    bare_tid = syscall(SYS_gettid);
    wait::WaitOnWords(head, Load(head), pflags, Load(pflags), owner, Load(owner), kGuardNs);
  });
  ASSERT_TRUE(shmtest::WaitUntil([&] {  // asleep in futex_waitv (syscall 449)
    if (bare_tid == 0) return false;
    FILE* f = std::fopen(
        ("/proc/self/task/" + std::to_string(bare_tid.load()) + "/syscall").c_str(), "r");
    long nr = -1;
    if (f != nullptr) {
      if (std::fscanf(f, "%ld", &nr) != 1) nr = -1;
      std::fclose(f);
    }
    return nr == 449;
  }));
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(KillWhileAsleepInPeek(c, child), Status::kPeerDead);
  bare.join();
  EXPECT_GE(wait::GetCounters().owner_wakes, 2u) << "the consumer's sleep ended through the word";
}

// Receivers asleep on a word already judged OWNER_DIED while the lock byte is still
// held (just after a death, or a forked child keeps the ring; here a live producer
// with the word stored DIED): one outside wake ends each sleep once and is not passed
// on again, so the four receivers do not wake each other in a loop. Fails when every
// sleep woken on the word passes the wake on whatever value it expected (hundreds of
// owner wakes). The sleeps only give a storm time to show; the assertion is a count.
TEST_F(OwnerWordTest, SleepersOnADiedWordDoNotWakeEachOtherInALoop) {
  const std::string name = Name();
  ProducerOptions o;
  o.capacity = 4096;
  o.max_receivers = 4;
  ShmProducer p(name, o);
  ASSERT_TRUE(p.IsValid()) << p.error();
  SharedMemory m(name, 0, false);
  ASSERT_TRUE(m.valid());
  std::vector<std::unique_ptr<ShmConsumer>> cs;
  std::vector<std::unique_ptr<shmtest::BlockingCall>> rs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<ShmConsumer>(name));
    ASSERT_TRUE(cs.back()->IsValid()) << cs.back()->error();
  }
  __atomic_store_n(OwnerWord(m), layout::kOwnerWaiters | layout::kOwnerDied, __ATOMIC_RELEASE);
  for (auto& c : cs) {
    ShmConsumer* cp = c.get();
    rs.push_back(std::make_unique<shmtest::BlockingCall>([cp] {
      MessageView v;
      return cp->PeekFor(&v, kGuardNs);
    }));
  }
  for (auto& c : cs) ASSERT_TRUE(shmtest::WaitUntilAsleep(*c));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // past their first looks
  const wait::Counters before = wait::GetCounters();
  wait::WakeWord(OwnerWord(m));  // one outside wake (a late fan-out, or a hostile poke)
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const wait::Counters after = wait::GetCounters();
  ASSERT_TRUE(p.Write("x", 1));
  for (auto& r : rs) EXPECT_EQ(r->Join(), Status::kOk);
  EXPECT_LE(after.owner_wakes - before.owner_wakes, 4u)
      << "the receivers woke each other in a loop";
}

// The real case of the test above: the producer forked a child that keeps the ring
// (the lock byte belongs to the open file description, which the child shares), then
// is killed: the word is marked OWNER_DIED while the lock stays held. The wakes of the
// word are a bounded burst: the kernel's one wake, at most one pass-on per receiver
// (only a sleep that expected the armed value passes on) and one wake per receiver
// that finds the word newly marked: 9 wakes, each ending each of the 4 sleeps at most
// once, plus at most one sleep per receiver that starts after the mark and ends at
// once (EAGAIN): 40 owner wakes at most (8-10 seen). Without the rule the receivers
// may wake each other in a loop (46 and 113 in two of three runs; the deterministic
// check is the test above).
TEST_F(OwnerWordTest, AForkedChildKeepingTheRingAfterTheProducerDiedStartsNoWakeLoop) {
  const std::string name = Name();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = shmtest::ForkHolding([=]() -> int {
    ProducerOptions o;
    o.capacity = 4096;
    o.max_receivers = 4;
    ShmProducer p(name, o);
    if (!p.IsValid()) return 2;
    const pid_t gc = fork();
    if (gc == 0) {  // the grandchild keeps the fds (and so the producer's lock byte)
      for (;;) pause();
    }
    if (write(pipefd[1], &gc, sizeof gc) != static_cast<ssize_t>(sizeof gc)) return 3;
    shmtest::HoldUntilKilled();
  });
  ASSERT_GT(child, 0);
  close(pipefd[1]);
  pid_t grandchild = 0;
  ASSERT_EQ(read(pipefd[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  close(pipefd[0]);
  std::vector<std::unique_ptr<ShmConsumer>> cs;
  std::vector<std::unique_ptr<shmtest::BlockingCall>> rs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<ShmConsumer>(name));
    ASSERT_TRUE(cs.back()->IsValid()) << cs.back()->error();
  }
  for (auto& c : cs) {
    ShmConsumer* cp = c.get();
    rs.push_back(std::make_unique<shmtest::BlockingCall>([cp] {
      MessageView v;
      return cp->PeekFor(&v, 2'500'000'000);
    }));
  }
  for (auto& c : cs) ASSERT_TRUE(shmtest::WaitUntilAsleep(*c));
  wait::ResetCounters();
  ASSERT_EQ(kill(child, SIGKILL), 0);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // time for a loop to show
  const wait::Counters n = wait::GetCounters();
  for (auto& r : rs) EXPECT_EQ(r->Join(), Status::kTimeout);  // the lock is still held
  kill(grandchild, SIGKILL);
  EXPECT_EQ(n.owner_deaths, 4u);
  EXPECT_LE(n.owner_wakes, 40u) << "the receivers woke each other in a loop";
}

// A liveness look that takes longer than the next slice (here the stall callback,
// user code run inside the look, takes 5 ms; the slices after OWNER_DIED start at
// 1 ms) must not turn the next sleep into one without limit: AcquireFor(300 ms)
// times out. Fails when the nap after such a look goes negative (no limit): the call
// then returns only when the guard frees space and the head moves.
TEST_F(OwnerWordTest, ALookLongerThanTheSliceKeepsTheTimeout) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  SharedMemory m(name, 0, false);
  ASSERT_TRUE(m.valid());
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  std::atomic<int> stalls{0};
  c.SetStallCallback([&] {
    stalls.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  const char msg[1000] = {};
  while (p.WriteFor(msg, sizeof msg, 0) == Status::kOk) {
  }
  MessageView v;
  MessageView last;
  int held = 0;
  while (c.AcquireFor(&v, 0) == Status::kOk) {  // hold every record: the producer waits
    ++held;
    last = v;
  }
  ASSERT_GT(held, 0);
  std::atomic<bool> wrote{false};
  std::thread writer([&] { wrote = p.WriteFor(msg, sizeof msg, kGuardNs) == Status::kOk; });
  ASSERT_TRUE(shmtest::WaitUntil(
      [&] { return (c.ring()->ProducerFlags() & layout::kProducerWaiting) != 0; }));
  __atomic_store_n(OwnerWord(m), layout::kOwnerWaiters | layout::kOwnerDied, __ATOMIC_RELEASE);
  std::atomic<bool> returned{false};
  std::atomic<bool> freed{false};
  std::thread guard([&] {  // a hang guard: frees space (the head moves) after 3 s
    for (int i = 0; i < 300 && !returned.load(std::memory_order_acquire); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!returned.load(std::memory_order_acquire)) {
      c.ReleaseTo(last.end);
      freed.store(true, std::memory_order_release);
    }
  });
  const Status s = c.AcquireFor(&v, 300'000'000);
  returned.store(true, std::memory_order_release);
  guard.join();
  if (!freed.load(std::memory_order_acquire)) c.ReleaseTo(last.end);
  writer.join();
  EXPECT_TRUE(wrote.load());
  EXPECT_GE(stalls.load(), 1);
  EXPECT_EQ(s, Status::kTimeout) << "slept past its timeout until the head moved";
}

// A producer that does not arm the word (0: older builds, Python ones included;
// other systems; a failed arming): the consumer keeps its liveness slice, and a
// slice's expiry is how it notices.
TEST_F(OwnerWordTest, UnarmedWordFallsBackToLivenessSlices) {
  const std::string name = Name();
  const pid_t child = ForkProducer(name, 1, true);
  ASSERT_GT(child, 0);
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  ASSERT_EQ(c.ring()->ProducerOwner(), 0u);
  EXPECT_EQ(KillWhileAsleepInPeek(c, child), Status::kPeerDead);
  const wait::Counters n = wait::GetCounters();
  EXPECT_EQ(n.owner_wakes, 0u);
  EXPECT_EQ(n.owner_deaths, 0u);
  EXPECT_GE(n.timeouts, 1u) << "noticed at a slice's end";
  EXPECT_LE(n.longest_timeout_ns, tuning::kLivenessSliceNs);
}

// Without futex_waitv the sleep is on the head word alone: the owner word is not
// heard, so an armed word must not stretch the slice (death and a racing CLOSED
// are then seen at the 500 ms looks, as before).
TEST_F(OwnerWordTest, ArmedWordKeepsShortSlicesWhenSleepsCannotIncludeIt) {
  ShmProducer& p = Producer(4096);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  ASSERT_NE(c.ring()->ProducerOwner(), 0u);
  wait::SetWaitVMissingForTest(true);
  wait::ResetCounters();
  MessageView v;
  EXPECT_EQ(c.PeekFor(&v, 1'200'000'000), Status::kTimeout);
  const wait::Counters n = wait::GetCounters();
  wait::SetWaitVMissingForTest(false);
  EXPECT_GE(n.sleeps, 2u);
  EXPECT_LE(n.longest_timeout_ns, tuning::kLivenessSliceNs);
  ASSERT_TRUE(p.Write("z", 1));
  EXPECT_EQ(c.PeekFor(&v, kGuardNs), Status::kOk);
}

// A seccomp profile that refuses futex_waitv with EPERM (container runtimes older
// than the call): the consumer falls back to the one-word sleep instead of
// re-trying a failing call in a loop (a busy spin).
TEST_F(OwnerWordTest, FutexWaitvRefusedWithEpermFallsBackInsteadOfSpinning) {
  const std::string name = Name();
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmProducer p(name, 4096);
    ShmConsumer c(name);
    if (!p.IsValid() || !c.IsValid()) return 2;
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 449 /* futex_waitv */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]),
                              filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 3;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 4;
    wait::ResetCounters();
    MessageView v;
    if (c.PeekFor(&v, 300'000'000) != Status::kTimeout) return 5;
    if (wait::HaveWaitV()) return 6;
    return wait::GetCounters().sleeps <= 10 ? 0 : 7;  // a spin makes millions
  });
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

// Hostile or odd values never hang or fail a consumer of a live producer: a word
// marked OWNER_DIED while the lock byte is held (as after a fork whose parent died)
// costs a few looks, then slices; a garbage thread id reads as armed.
TEST_F(OwnerWordTest, HostileValuesNeitherHangNorFailAConsumer) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  SharedMemory m(name, 0, false);
  ASSERT_TRUE(m.valid());
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  const uint32_t values[] = {layout::kOwnerWaiters | layout::kOwnerDied,
                             layout::kOwnerDied | 12345u,
                             0xFFFFFFFFu,
                             layout::kOwnerWaiters | layout::kOwnerTidMask,
                             1u,
                             0u};
  for (const uint32_t value : values) {
    __atomic_store_n(OwnerWord(m), value, __ATOMIC_RELEASE);
    wait::WakeWord(OwnerWord(m));
    MessageView v;
    EXPECT_EQ(c.PeekFor(&v, 20'000'000), Status::kTimeout) << std::hex << value;
    ASSERT_TRUE(p.Write("x", 1));
    ASSERT_EQ(c.PeekFor(&v, kGuardNs), Status::kOk) << std::hex << value;
    c.Release();
  }
  // A marked word while a consumer sleeps: it wakes, looks (alive), sleeps again.
  wait::ResetCounters();
  shmtest::BlockingCall reader([&] {
    MessageView v;
    const Status s = c.PeekFor(&v, kGuardNs);
    if (s == Status::kOk) c.Release();
    return s;
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  __atomic_store_n(OwnerWord(m), layout::kOwnerWaiters | layout::kOwnerDied, __ATOMIC_RELEASE);
  wait::WakeWord(OwnerWord(m));
  ASSERT_TRUE(shmtest::WaitUntil([] { return wait::GetCounters().owner_deaths >= 1; }));
  ASSERT_TRUE(p.Write("y", 1));
  EXPECT_EQ(reader.Join(), Status::kOk);
}

}  // namespace
