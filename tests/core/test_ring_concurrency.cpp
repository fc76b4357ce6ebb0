// ByteRingBuffer with a producer and a consumer running at the same time: two
// threads, two forked processes, and two exec'ed processes in different fence
// modes; >= 1 M messages of random sizes with sequence numbers and checksums
// through the copying and the zero-copy APIs; blocking waits (wake-up, timeout,
// interrupt). Timeouts are hang guards only; nothing asserts how fast anything is.
#include <gtest/gtest.h>
#ifndef _WIN32
#include <sys/mman.h>
#endif

#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/shared_memory.hpp"
#include "shm/wait.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;
using namespace std::chrono_literals;
using shmtest::PayloadModel;
using shmtest::RingImage;

constexpr uint64_t kMessages = 1'000'000;
constexpr uint32_t kCapacity = 32 * 1024;
constexpr uint32_t kMaxLen = kCapacity - 4;   // the largest payload the ring can hold
constexpr int64_t kGuardNs = 30'000'000'000;  // hang guard for every blocking call
constexpr uint64_t kPayloadKey = 0x5A17C0DEull;

// A thread that is joined when it goes out of scope (also when an ASSERT returns early).
struct Joining {
  template <typename F>
  explicit Joining(F&& f) : t(std::forward<F>(f)) {}
  ~Joining() {
    if (t.joinable()) t.join();
  }
  void join() { t.join(); }
  std::thread t;
};

enum class WriteApi { kCopy, kReserveCommit };
enum class ReadApi { kCopy, kPeekRelease, kAcquireReleaseTo };

const PayloadModel& Model() {
  static const PayloadModel model(kMaxLen, kPayloadKey);
  return model;
}

// Writes messages 0..n-1, sleeping in WaitWritable when full, then sets CLOSED.
// Returns "" or what went wrong.
std::string Produce(ByteRingBuffer& p, uint64_t n, WriteApi api) {
  const PayloadModel& m = Model();
  std::vector<uint8_t> buf(kMaxLen);
  for (uint64_t seq = 0; seq < n; ++seq) {
    const uint32_t len = m.SizeFor(seq);
    // The zero-copy path sometimes reserves more than it commits.
    uint32_t want = len;
    if (api == WriteApi::kReserveCommit && seq % 5 == 0) want = std::min(len + 100, kMaxLen);
    if (api == WriteApi::kCopy) m.Fill(seq, buf.data(), len);
    for (;;) {
      Status s;
      uint8_t* payload = nullptr;
      if (api == WriteApi::kCopy) {
        s = p.TryWrite(buf.data(), len);
      } else {
        s = p.Reserve(want, &payload);
        if (s == Status::kOk) {
          m.Fill(seq, payload, len);
          p.Commit(len);
        }
      }
      if (s == Status::kOk) break;
      if (s != Status::kFull) return "write " + std::to_string(seq) + ": " + StatusName(s);
      s = p.WaitWritable(want, kGuardNs, nullptr);
      if (s != Status::kOk) return "WaitWritable " + std::to_string(seq) + ": " + StatusName(s);
    }
  }
  p.SetClosed();
  return "";
}

// Reads until CLOSED, checking that exactly messages 0..n-1 arrive, in order and intact.
std::string Consume(ByteRingBuffer& c, uint64_t n, ReadApi api) {
  const PayloadModel& m = Model();
  std::vector<uint8_t> buf(kMaxLen);
  uint64_t seq = 0;
  // Acquire/ReleaseTo: messages held at once, finished out of order; the caller
  // (this code) releases in ring order up to the longest finished prefix.
  struct Held {
    MessageView v;
    uint64_t seq;
    bool done;
  };
  std::deque<Held> held;
  uint64_t rng = kPayloadKey;
  auto release_done_prefix = [&]() -> std::string {
    uint32_t end = 0;
    bool any = false;
    while (!held.empty() && held.front().done) {
      const Held& h = held.front();
      const std::string bad = m.Check(h.seq, h.v.data, h.v.len);  // still intact?
      if (!bad.empty()) return "held message overwritten: " + bad;
      end = h.v.end;
      any = true;
      held.pop_front();
    }
    if (any) c.ReleaseTo(end);
    return "";
  };
  for (;;) {
    Status s;
    if (api == ReadApi::kCopy) {
      const uint32_t expect = m.SizeFor(seq);
      uint32_t max = kMaxLen;
      if (seq % 97 == 1 && expect > 0) max = expect - 1;  // exercise kBufferTooSmall
      const ReadResult r = c.TryRead(buf.data(), max);
      s = r.status;
      if (s == Status::kBufferTooSmall) {
        if (r.len != expect) return "kBufferTooSmall reported " + std::to_string(r.len);
        const ReadResult again = c.TryRead(buf.data(), kMaxLen);
        if (again.status != Status::kOk) return "re-read after kBufferTooSmall failed";
        s = Status::kOk;
        const std::string bad = m.Check(seq, buf.data(), again.len);
        if (!bad.empty()) return bad;
        ++seq;
        continue;
      }
      if (s == Status::kOk) {
        const std::string bad = m.Check(seq, buf.data(), r.len);
        if (!bad.empty()) return bad;
        ++seq;
        continue;
      }
    } else if (api == ReadApi::kPeekRelease) {
      MessageView v;
      s = c.Peek(&v);
      if (s == Status::kOk) {
        const std::string bad = m.Check(seq, v.data, v.len);
        if (!bad.empty()) return bad;
        c.Release();
        ++seq;
        continue;
      }
    } else {
      MessageView v;
      s = c.Acquire(&v);
      if (s == Status::kOk) {
        const std::string bad = m.Check(seq, v.data, v.len);
        if (!bad.empty()) return bad;
        held.push_back({v, seq, false});
        ++seq;
        // Finish a random held message (out of order), or all when 8 are held.
        rng = shmtest::SplitMix64(rng);
        if (held.size() >= 8) {
          for (Held& h : held) h.done = true;
        } else {
          held[rng % held.size()].done = true;
        }
        const std::string bad2 = release_done_prefix();
        if (!bad2.empty()) return bad2;
        continue;
      }
      // Nothing new: finish everything held so a producer waiting for space can go on.
      for (Held& h : held) h.done = true;
      const std::string bad = release_done_prefix();
      if (!bad.empty()) return bad;
    }
    if (s == Status::kEmpty) {
      s = c.WaitReadable(kGuardNs, nullptr);
      if (s == Status::kOk || s == Status::kClosed) continue;
      return "WaitReadable at " + std::to_string(seq) + ": " + StatusName(s);
    }
    if (s == Status::kClosed) {
      if (seq != n) return "closed after " + std::to_string(seq) + " messages";
      if (c.ReadableBytes() != 0) return "closed with unreleased bytes";
      return "";
    }
    return "read " + std::to_string(seq) + ": " + StatusName(s) + " " + c.error();
  }
}

// The fence mode this process uses; in the SHMRING_NO_MEMBARRIER=1 re-exec it
// must be the symmetric fallback.
void CheckFenceMode(const ByteRingBuffer& ring, bool producer) {
  const uint32_t bit = producer ? layout::kProducerMembarrier : layout::kConsumerMembarrier;
  const uint32_t flags = producer ? ring.ProducerFlags() : ring.ConsumerFlags();
  EXPECT_EQ((flags & bit) != 0, wait::UseMembarrier());
  if (shmtest::Env("SHMRING_NO_MEMBARRIER") == "1") {
    EXPECT_FALSE(wait::UseMembarrier());
    EXPECT_EQ(flags & bit, 0u);
  }
}

struct TransferCase {
  WriteApi write;
  ReadApi read;
};

std::string CaseName(const ::testing::TestParamInfo<TransferCase>& info) {
  std::string w = info.param.write == WriteApi::kCopy ? "TryWrite" : "ReserveCommit";
  switch (info.param.read) {
    case ReadApi::kCopy:
      return w + "_Read";
    case ReadApi::kPeekRelease:
      return w + "_PeekRelease";
    case ReadApi::kAcquireReleaseTo:
      return w + "_AcquireReleaseTo";
  }
  return w;
}

const TransferCase kCases[] = {
    {WriteApi::kCopy, ReadApi::kCopy},
    {WriteApi::kReserveCommit, ReadApi::kPeekRelease},
    {WriteApi::kReserveCommit, ReadApi::kAcquireReleaseTo},
};

class Transfer : public ::testing::TestWithParam<TransferCase> {};

TEST_P(Transfer, TwoThreads) {
  RingImage img(kCapacity);
  ASSERT_EQ(img.Init(), "");
  ByteRingBuffer prod(img.base(), img.size(), true);
  ByteRingBuffer cons(img.base(), img.size(), false);
  ASSERT_TRUE(prod.valid() && cons.valid());
  CheckFenceMode(prod, true);
  CheckFenceMode(cons, false);
  std::string produced;
  Joining producer([&] { produced = Produce(prod, kMessages, GetParam().write); });
  const std::string consumed = Consume(cons, kMessages, GetParam().read);
  producer.join();
  EXPECT_EQ(produced, "");
  EXPECT_EQ(consumed, "");
  EXPECT_TRUE(img.GuardIntact());
}

// The ring in MAP_SHARED memory; the forked child produces while the parent consumes.
TEST_P(Transfer, TwoProcesses) {
#ifdef _WIN32
  SHMTEST_NOT_ON_WINDOWS(
      "fork and MAP_SHARED anonymous memory (FenceModes.Mixed* run two processes)");
#else
  const uint64_t size = layout::kHeaderSize + kCapacity;
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  ASSERT_EQ(ByteRingBuffer::Initialize(mem, size, kCapacity, 0, 7), "");
  const WriteApi write = GetParam().write;
  const pid_t child = shmtest::ForkChild([&] {
    ByteRingBuffer prod(mem, size, true);
    if (!prod.valid()) return 2;
    const std::string err = Produce(prod, kMessages, write);
    if (!err.empty()) std::fprintf(stderr, "producer child: %s\n", err.c_str());
    return err.empty() ? 0 : 1;
  });
  ASSERT_GT(child, 0);
  ByteRingBuffer cons(mem, size, false);
  ASSERT_TRUE(cons.valid());
  const std::string consumed = Consume(cons, kMessages, GetParam().read);
  EXPECT_EQ(consumed, "");
  EXPECT_EQ(shmtest::WaitChild(child), 0);
  munmap(mem, size);
#endif
}

INSTANTIATE_TEST_SUITE_P(Api, Transfer, ::testing::ValuesIn(kCases), CaseName);

// Runs the Transfer and Wake tests again in a child process started with
// SHMRING_NO_MEMBARRIER=1 (the variable is read once per process).
TEST(FenceModes, NoMembarrierReExec) {
  if (shmtest::Env("SHMRING_NO_MEMBARRIER") == "1") GTEST_SKIP() << "already the re-exec";
  const pid_t child = shmtest::SpawnSelf("Api/Transfer.*:Wake.*", {"SHMRING_NO_MEMBARRIER=1"});
  ASSERT_GT(child, 0);
  EXPECT_EQ(shmtest::WaitChild(child, 240s), 0) << "the SHMRING_NO_MEMBARRIER=1 run failed";
}

// Mixed modes across processes: this process keeps its mode (membarrier where the
// kernel has it), the exec'ed peer uses the symmetric fallback. Each side must do
// the right thing for the other's flags bit. The peer runs ChildRole.* below.
void RunMixed(bool child_produces) {
  const std::string name = shmtest::UniqueName("mixed");
  const size_t size = layout::kHeaderSize + kCapacity;
  SharedMemory mem(name, size, true, false);
  ASSERT_TRUE(mem.valid()) << mem.error_message();
  ASSERT_EQ(ByteRingBuffer::Initialize(mem.data(), size, kCapacity, 0, 9), "");
  const pid_t child = shmtest::SpawnSelf(
      child_produces ? "ChildRole.DISABLED_Producer" : "ChildRole.DISABLED_Consumer",
      {"SHMRING_NO_MEMBARRIER=1", "SHMRING_TEST_RING=" + name});
  ASSERT_GT(child, 0);
  ByteRingBuffer ring(mem.data(), uint64_t{size}, !child_produces);
  ASSERT_TRUE(ring.valid());
  const std::string err = child_produces ? Consume(ring, kMessages, ReadApi::kCopy)
                                         : Produce(ring, kMessages, WriteApi::kReserveCommit);
  EXPECT_EQ(err, "");
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

TEST(FenceModes, MixedProducerHereConsumerFallback) { RunMixed(false); }
TEST(FenceModes, MixedConsumerHereProducerFallback) { RunMixed(true); }

void RunChildRole(bool producer) {
  const std::string name = shmtest::Env("SHMRING_TEST_RING");
  if (name.empty()) GTEST_SKIP() << "only run by FenceModes.Mixed*";
  SharedMemory mem(name, 0, false);
  ASSERT_TRUE(mem.valid()) << mem.error_message();
  ByteRingBuffer ring(mem.data(), uint64_t{mem.size()}, producer);
  ASSERT_TRUE(ring.valid()) << ring.error();
  CheckFenceMode(ring, producer);
  const std::string err = producer ? Produce(ring, kMessages, WriteApi::kCopy)
                                   : Consume(ring, kMessages, ReadApi::kPeekRelease);
  EXPECT_EQ(err, "");
}

TEST(ChildRole, DISABLED_Producer) { RunChildRole(true); }  // run only by SpawnSelf
TEST(ChildRole, DISABLED_Consumer) { RunChildRole(false); }

// ---- blocking waits --------------------------------------------------------------

struct WaitRing {
  explicit WaitRing(uint32_t capacity = 64) : img(capacity) {
    EXPECT_EQ(img.Init(), "");
    prod = std::make_unique<ByteRingBuffer>(img.base(), img.size(), true);
    cons = std::make_unique<ByteRingBuffer>(img.base(), img.size(), false);
  }
  bool ConsumerWaiting() const { return (cons->ConsumerFlags() & layout::kConsumerWaiting) != 0; }
  bool ProducerWaiting() const { return (prod->ProducerFlags() & layout::kProducerWaiting) != 0; }
  void Fill() {
    while (prod->TryWrite("12345678", 4) == Status::kOk) {
    }
  }
  RingImage img;
  std::unique_ptr<ByteRingBuffer> prod, cons;
};

TEST(Wake, SleepingConsumerWokenByWrite) {
  WaitRing r;
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> result{-1};
    Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, nullptr)); });
    ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ConsumerWaiting(); })) << "consumer never slept";
    ASSERT_TRUE(r.prod->Write("wake", 4));
    consumer.join();
    EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk) << round;
    EXPECT_FALSE(r.ConsumerWaiting()) << "WAITING cleared after the wake";
    char out[8];
    ASSERT_TRUE(r.cons->TryRead(out, sizeof out));
  }
}

// The ring is empty and the consumer asleep; the producer needs a record that only
// fits once the consumer has skipped a fresh WRAP marker. Publishing that marker must
// wake the consumer (else both sleep forever), yet the marker alone is not a message.
TEST(Wake, ProducerNeedingMarkerSkipWakesSleepingConsumer) {
  WaitRing r;
  ASSERT_TRUE(r.prod->Write(std::string(44, 'a').data(), 44));  // 0..48
  char out[64];
  ASSERT_TRUE(r.cons->TryRead(out, sizeof out));
  std::atomic<int> result{-1};
  Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, nullptr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ConsumerWaiting(); }));
  uint8_t* p = nullptr;
  Status s = r.prod->Reserve(60, &p);  // publishes the marker only
  if (s == Status::kFull) s = r.prod->WaitWritable(60, kGuardNs, nullptr);
  ASSERT_EQ(s, Status::kOk) << "the consumer never skipped the marker";
  EXPECT_EQ(result.load(), -1) << "a WRAP marker is not a message";
  ASSERT_EQ(r.prod->Reserve(60, &p), Status::kOk);
  std::memset(p, 'z', 60);
  r.prod->Commit(60);
  consumer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk);
  EXPECT_EQ(r.cons->TryRead(out, sizeof out).len, 60u);
}

// Same through WaitWritable alone (it publishes the marker itself).
TEST(Wake, WaitWritablePublishingMarkerWakesSleepingConsumer) {
  WaitRing r;
  ASSERT_TRUE(r.prod->Write(std::string(44, 'a').data(), 44));  // 0..48
  char out[64];
  ASSERT_TRUE(r.cons->TryRead(out, sizeof out));
  std::atomic<int> result{-1};
  Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, nullptr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ConsumerWaiting(); }));
  ASSERT_EQ(r.prod->WaitWritable(60, kGuardNs, nullptr), Status::kOk);
  ASSERT_TRUE(r.prod->Write(std::string(60, 'b').data(), 60));
  consumer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk);
  EXPECT_EQ(r.cons->TryRead(out, sizeof out).len, 60u);
}

TEST(Wake, Timeout) {
  WaitRing r;
  EXPECT_EQ(r.cons->WaitReadable(20'000'000, nullptr), Status::kTimeout);
  EXPECT_FALSE(r.ConsumerWaiting());
  EXPECT_EQ(r.cons->WaitReadable(0, nullptr), Status::kTimeout);
  r.Fill();
  EXPECT_EQ(r.prod->WaitWritable(4, 20'000'000, nullptr), Status::kTimeout);
  EXPECT_FALSE(r.ProducerWaiting());
  EXPECT_EQ(r.prod->WaitWritable(4, 0, nullptr), Status::kTimeout);
  EXPECT_EQ(r.prod->WaitWritable(61, kForever, nullptr), Status::kTooLarge);
}

TEST(Wake, InterrupterWakesBlockedRead) {
  WaitRing r;
  Interrupter intr;
  std::atomic<int> result{-1};
  Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, &intr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ConsumerWaiting(); }));
  intr.Interrupt();
  consumer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kInterrupted);
  // Sticky until cleared.
  EXPECT_EQ(r.cons->WaitReadable(kForever, &intr), Status::kInterrupted);
  intr.Clear();
  EXPECT_EQ(r.cons->WaitReadable(1'000'000, &intr), Status::kTimeout);
  ASSERT_TRUE(r.prod->Write("x", 1));
  EXPECT_EQ(r.cons->WaitReadable(kGuardNs, &intr), Status::kOk);
}

TEST(Wake, InterrupterWakesBlockedWrite) {
  WaitRing r;
  r.Fill();
  Interrupter intr;
  std::atomic<int> result{-1};
  Joining producer([&] { result = static_cast<int>(r.prod->WaitWritable(4, kGuardNs, &intr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ProducerWaiting(); }));
  intr.Interrupt();
  producer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kInterrupted);
  EXPECT_EQ(r.prod->WaitWritable(4, kForever, &intr), Status::kInterrupted);
  intr.Clear();
  EXPECT_EQ(r.prod->WaitWritable(4, 1'000'000, &intr), Status::kTimeout);
}

// Interrupts racing with the moment the waiter goes to sleep are never lost.
TEST(Wake, InterruptRacingWithSleep) {
  WaitRing r;
  for (int round = 0; round < 300; ++round) {
    Interrupter intr;
    std::atomic<int> result{-1};
    Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, &intr)); });
    std::this_thread::sleep_for(std::chrono::microseconds(round % 50));
    intr.Interrupt();
    consumer.join();
    ASSERT_EQ(static_cast<Status>(result.load()), Status::kInterrupted) << round;
  }
}

TEST(Wake, ProducerBlockedOnFullRingWakesWhenConsumerReads) {
  WaitRing r;
  for (int round = 0; round < 20; ++round) {
    r.Fill();
    std::atomic<int> result{-1};
    Joining producer(
        [&] { result = static_cast<int>(r.prod->WaitWritable(4, kGuardNs, nullptr)); });
    ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ProducerWaiting(); })) << "producer never slept";
    char out[8];
    ASSERT_TRUE(r.cons->TryRead(out, sizeof out));
    producer.join();
    EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk) << round;
    EXPECT_FALSE(r.ProducerWaiting());
    while (r.cons->TryRead(out, sizeof out)) {
    }
  }
}

// A producer waiting for a max-size record while the bytes to the end are still
// held: freeing them lets the waiting producer publish the WRAP marker; the consumer
// skipping that marker frees the rest and wakes it.
TEST(Wake, ProducerWaitingForMaxPayloadAcrossMarker) {
  WaitRing r;
  char out[64];
  ASSERT_TRUE(r.prod->Write(std::string(44, 'a').data(), 44));  // 0..48
  ASSERT_TRUE(r.cons->TryRead(out, sizeof out));                // tail 48
  ASSERT_TRUE(r.prod->Write(std::string(20, 'b').data(), 20));  // marker at 48, record 0..24
  ASSERT_EQ(r.prod->LoadHead(), 88u);
  std::atomic<int> result{-1};
  Joining producer([&] { result = static_cast<int>(r.prod->WaitWritable(60, kGuardNs, nullptr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ProducerWaiting(); }));
  MessageView v;
  ASSERT_EQ(r.cons->Peek(&v), Status::kOk);  // skips the first marker: tail 64
  EXPECT_EQ(v.len, 20u);
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.prod->LoadHead() == 128u; }))
      << "the waiting producer should publish its marker once the bytes to the end are free";
  EXPECT_EQ(result.load(), -1);
  r.cons->Release();                            // tail 88
  ASSERT_EQ(r.cons->Peek(&v), Status::kEmpty);  // skips the second marker: tail 128
  producer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kOk);
  ASSERT_TRUE(r.prod->Write(std::string(60, 'c').data(), 60));
  EXPECT_EQ(r.cons->TryRead(out, sizeof out).len, 60u);
}

TEST(Wake, CloseWakesSleepingConsumer) {
  WaitRing r;
  std::atomic<int> result{-1};
  Joining consumer([&] { result = static_cast<int>(r.cons->WaitReadable(kGuardNs, nullptr)); });
  ASSERT_TRUE(shmtest::WaitUntil([&] { return r.ConsumerWaiting(); }));
  r.prod->SetClosed();
  consumer.join();
  EXPECT_EQ(static_cast<Status>(result.load()), Status::kClosed);
}

// CLOSED set while the consumer is between its last look and its futex call must
// still end the wait promptly, not only when the wait's own timeout expires (the
// wait then returns kClosed too, so the symptom is only that it ran into its
// timeout). One consumer thread, many rounds on fresh rings, the close issued at a
// sweeping delay. The long timeout is a hang guard, not a speed requirement: a
// wait that lasts half of it has missed the close.
TEST(Wake, CloseRacingWithSleep) {
  constexpr int kRounds = 400;
  constexpr int64_t kWaitNs = 10'000'000'000;
  std::atomic<int> go{-1}, done{-1};
  std::atomic<int> missed{0};
  WaitRing* current = nullptr;
  Joining consumer([&] {
    for (int round = 0; round < kRounds; ++round) {
      while (go.load(std::memory_order_acquire) != round) std::this_thread::yield();
      const auto start = std::chrono::steady_clock::now();
      const Status s = current->cons->WaitReadable(kWaitNs, nullptr);
      const auto waited = std::chrono::steady_clock::now() - start;
      if (s != Status::kClosed || waited > std::chrono::nanoseconds(kWaitNs / 2)) {
        missed.fetch_add(1);
      }
      done.store(round, std::memory_order_release);
    }
  });
  int round = 0;
  for (; round < kRounds; ++round) {
    auto ring = std::make_unique<WaitRing>();
    current = ring.get();
    go.store(round, std::memory_order_release);
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::nanoseconds(round % 1000 * 100);
    while (std::chrono::steady_clock::now() < until) {
    }
    current->prod->SetClosed();
    while (done.load(std::memory_order_acquire) != round) std::this_thread::yield();
    if (missed.load() != 0) break;
  }
  EXPECT_EQ(missed.load(), 0) << "round " << round << ": a wait missed CLOSED";
  // Let the consumer thread run out its remaining rounds on closed rings.
  for (++round; round < kRounds; ++round) {
    auto ring = std::make_unique<WaitRing>();
    ring->prod->SetClosed();
    current = ring.get();
    go.store(round, std::memory_order_release);
    while (done.load(std::memory_order_acquire) != round) std::this_thread::yield();
  }
}

}  // namespace
