// C++ ring benchmarks between two processes, each against its peer measured in the same run.
// A benchmark program, not a test: it prints numbers and checks nothing about them.
//
//   ring_bench [--rounds 7] [--small-count 2000000] [--frames 300] [--caps 16,32,64,128]
//              [--latency-samples 20000] [--wake-samples 2000] [--only small,frames,latency]
//              [--variants shmring,minimal] [--pin] [--counters] [--full-fences]
//
// Every row runs its two variants in interleaved rounds (A B A B ...); each round prints one
// JSON line on stdout (bench/bench.py collects them):
//   {"row": "...", "variant": "...", "round": i, "value": x, "unit": "..."}
// Latency rows print one line with percentiles instead:
//   {"row": "...", "variant": "...", "p50_ns": x, "p99_ns": y, "samples": n}
//
// --variants limits the small row to the variants named (e.g. `--variants shmring` to
// profile one side alone with `perf record`); by default both run, interleaved.
// `--variants shmring,minimal,minimal_split` adds the minimal ring laid out and batched
// as shmring is (see MinimalSmall), to check that the comparison is a fair one.
// Diagnostic variants (never in the default list) split shmring's distance from the
// minimal ring into the protocol's price, the layout's and the implementation's:
//   minimal_protocol  the minimal ring plus exactly the per-message work shmring's protocol
//                     needs and the minimal ring lacks (see MinimalSmall): what keeping the
//                     protocol costs, whatever our code around it does.
//   minimal_lines, minimal_batch, minimal_pause  the minimal ring with one of
//                     minimal_split's three differences each (see MinimalSmall): head and
//                     tail on 128-byte blocks of their own; shmring's batched tail stores;
//                     a PAUSE in both spins.
//   minimal_protocol_split  minimal_protocol's per-message work in shmring's layout
//                     (producer block, tail block, flags block), batched and with PAUSE:
//                     the closest thing to shmring without shmring's code.
//   minimal_protocol_lines  the same in shmring's layout without the batching and the
//                     PAUSE: the layout's price with the protocol's stores alone.
//   minimal_protocol_own  minimal_protocol_lines plus the stores WriteFor makes to the
//                     producer's own memory per message (kOwnStores, see MinimalSmall):
//                     whether those stores are the producer's distance (mixed pairs).
//   shmring_inline    shmring's ring driven by ByteRingBuffer::WriteFast / ReadFast inline
//                     in the benchmark's loops (core/src/byte_ring_fast.hpp), the public
//                     calls only as the fallback (see ShmringInlineSmall): what the call
//                     into WriteFor / ReadFor and the ShmProducer / ShmConsumer layer (the
//                     consumer's mutex, its Wait loop) cost.
//   shmring_inline_write, shmring_inline_read  the same with one side inline and the
//                     other calling WriteFor / ReadFor as shmring does: each side's share.
//   mixed_shmring_write, mixed_shmring_read  mixed pairs on one real shmring segment (see
//                     MixedSmall): shmring's producer (WriteFor) with minimal_protocol_lines's
//                     consumer loop, and minimal_protocol_lines's producer loop with
//                     shmring's consumer (ReadFor); which side holds shmring's distance
//                     from minimal_protocol_lines.
// Names are matched whole: `--variants shmring` does not run shmring_inline.
// --pin puts each row's consumer process on CPU 0 and its producer on CPU 1
// (sched_setaffinity), so the scheduler never runs both on one CPU.
// --full-fences makes the latency and frames rows' producer fence every publication
// fully (ProducerOptions::full_fences, as shmringsink's), so its receiver issues no
// membarrier when it goes to sleep.
// --counters prints each shmring small-row process's wait counters (sleeps, wakes,
// WAITING sets, heavy barriers; shm::wait::GetCounters) to stderr when it ends, and for
// shmring_inline how many messages took the fallback (the public call) on each side;
// in the frames rows, one JSON line per ring run on stderr with the per-frame split of
// the time (see ReportFrameTimes): the producer's Reserve (without / after a sleep),
// memcpy and Commit, the consumer's sleeps, membarriers and wake delay, whether it
// woke on the producer's CPU, the places the frames went to, and the same memcpy timed
// again into the ring's mapping and into a fresh two-destination one (the memcpy row's
// peer), in the producer process after the run.
//
// Rows:
//   small       64-byte records (4-byte length + 60-byte body), producer and consumer in two
//               processes: shmring (ShmProducer::WriteFor -> ShmConsumer::ReadFor, the public
//               blocking API with its wait protocol) vs a minimal ring (only a head and a tail
//               word, adjacent as in the original design, no flags, no wait protocol, both
//               sides spinning) with the same record format; and minimal_split, the same
//               minimal ring laid out and batched as shmring is (head and tail on lines of
//               their own, batched tail stores, PAUSE in the spins): see MinimalSmall.
//               minimal_protocol and shmring_inline on request only (above).
//   frames_CAP  1080p BGR frames (6,220,800 bytes) through a CAP MiB ring: ShmProducer::Reserve
//               + memcpy + Commit -> ShmConsumer::PeekFor + touch + Release, vs one process
//               memcpy-ing the same frame into two destinations in turn (double buffering;
//               faulted in before timing, as the ring is prefaulted by its producer): the
//               same peer at every capacity; and "memcpy_one", into one destination.
//   latency     one-way latency of a 64-byte message with the consumer polling (TryRead in a
//               loop; a message 20 us after the previous one was read), and wake-up latency
//               with the consumer asleep in ReadFor (a message 1 ms after the previous one was
//               read); the message carries the producer's CLOCK_MONOTONIC time, the consumer
//               subtracts it from its own.
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "byte_ring_fast.hpp"  // core/src (bench/meson.build): shmring_inline only
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kOpenTimeoutNs = 10'000'000'000;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string RingName() {
  static int n = 0;
  return "kbench" + std::to_string(getpid()) + "_" + std::to_string(++n);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "ring_bench: %s\n", what.c_str());
  _exit(1);
}

void* MapShared(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die("mmap failed");
  return p;
}

bool g_pin = false;          // --pin
bool g_counters = false;     // --counters
bool g_full_fences = false;  // --full-fences

void PrintCounters(const char* side) {
  if (!g_counters) return;
  const shm::wait::Counters c = shm::wait::GetCounters();
  std::fprintf(stderr,
               "%s: sleeps %llu, wakes %llu, waiting sets %llu, heavy barriers %llu, "
               "timeouts %llu\n",
               side, static_cast<unsigned long long>(c.sleeps),
               static_cast<unsigned long long>(c.wakes),
               static_cast<unsigned long long>(c.waiting_sets),
               static_cast<unsigned long long>(c.heavy_barriers),
               static_cast<unsigned long long>(c.timeouts));
}

void PinTo(int cpu) {
  if (!g_pin) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) Die("sched_setaffinity failed");
}

// Runs producer and consumer in two child processes at the same time; returns what the
// consumer returned (a double it computed, e.g. seconds from its first to its last message).
double RunPair(const std::function<void()>& producer, const std::function<double()>& consumer) {
  auto* slot = static_cast<double*>(MapShared(4096));
  *slot = -1;
  const pid_t c = fork();
  if (c == 0) {
    PinTo(0);
    *slot = consumer();
    _exit(0);
  }
  const pid_t p = fork();
  if (p == 0) {
    PinTo(1);
    producer();
    _exit(0);
  }
  int sp = 0, sc = 0;
  waitpid(p, &sp, 0);
  waitpid(c, &sc, 0);
  if (!WIFEXITED(sp) || WEXITSTATUS(sp) || !WIFEXITED(sc) || WEXITSTATUS(sc))
    Die("a child process failed");
  const double v = *slot;
  munmap(slot, 4096);
  return v;
}

// Untimed: the consumer opens the ring by name after the producer created it.
void WaitForConsumer(const shm::ShmProducer& p) {
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (!p.ConsumerAttached()) {
    if (Clock::now() > give_up) Die("no consumer attached within 10 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Emit(const std::string& row, const char* variant, int round, double value, const char* unit) {
  std::printf(
      "{\"row\": \"%s\", \"variant\": \"%s\", \"round\": %d, \"value\": %.6g, "
      "\"unit\": \"%s\"}\n",
      row.c_str(), variant, round, value, unit);
  std::fflush(stdout);
}

// ---- small messages ---------------------------------------------------------------

constexpr uint32_t kSmallBody = 60;            // + 4-byte length = 64-byte records
constexpr uint32_t kSmallCapacity = 1u << 16;  // 64 KiB, both rings

// A shmring producer's loop: creates ring `name`, waits for its consumer, writes
// `count` messages whose first 8 bytes are their sequence number, each by
// `write(producer, buf)` (inlined, as below), then closes the ring and keeps its name
// until the consumer has read everything (the destructor unlinks).
template <typename Write>
void WriteSmall(const std::string& name, uint64_t count, Write&& write) {
  shm::ShmProducer p(name, kSmallCapacity);
  if (!p.IsValid()) Die("producer: " + p.error());
  WaitForConsumer(p);
  uint8_t buf[kSmallBody];
  std::memset(buf, 0x5a, sizeof buf);
  for (uint64_t i = 0; i < count; ++i) {
    std::memcpy(buf, &i, 8);
    write(p, buf);
  }
  PrintCounters("producer");
  p.Close();
  while (p.ConsumerAttached()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// A shmring consumer's timed loop: `count` messages, each read into a buffer by
// `read(buf)` (inlined: a template, not a std::function, so the loop is what the
// caller wrote), checked to carry its sequence number in its first 8 bytes; the
// seconds from the first message to the last.
template <typename Read>
double TimeSmallReads(uint64_t count, const char* what, Read&& read) {
  uint8_t buf[kSmallBody];
  uint64_t got = 0, bad = 0;
  Clock::time_point start;
  while (got < count) {
    read(buf);
    if (got == 0) start = Clock::now();
    uint64_t seq;
    std::memcpy(&seq, buf, 8);
    bad += seq != got;
    ++got;
  }
  if (bad) Die(std::string(what) + ": messages out of order");
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// shmring's two sides of the small row, each a process's whole work: the producer
// writes by ShmProducer::WriteFor, the consumer reads by ShmConsumer::ReadFor (`what`
// names the variant in its order check's message); ShmringSmall pairs them, MixedSmall
// pairs each with a minimal loop.
void ShmringWriter(const std::string& name, uint64_t count) {
  WriteSmall(name, count, [](shm::ShmProducer& p, const uint8_t* buf) {
    if (p.WriteFor(buf, kSmallBody, shm::kForever) != shm::Status::kOk) Die("WriteFor");
  });
}

double ShmringReader(const std::string& name, uint64_t count, const char* what) {
  shm::ShmConsumer c(name, kOpenTimeoutNs);
  if (!c.IsValid()) Die("consumer: " + c.error());
  const double secs = TimeSmallReads(count, what, [&](uint8_t* buf) {
    const shm::ReadResult r = c.ReadFor(buf, kSmallBody, shm::kForever);
    if (r.status != shm::Status::kOk) Die("ReadFor");
  });
  PrintCounters("consumer");
  return secs;
}

double ShmringSmall(uint64_t count) {
  const std::string name = RingName();
  const double s = RunPair([&] { ShmringWriter(name, count); },
                           [&] { return ShmringReader(name, count, "shmring"); });
  return static_cast<double>(count - 1) / s;
}

// shmring_inline: ShmringSmall's ring and messages, but each side runs the ring's fast
// path inline in its loop (shm::fast::Access) and calls the public API only when the fast
// path declines: the producer's WakeAfterWrite when a receiver was seen WAITING, its
// WriteFor (Reserve + copy + Commit, waiting) when the record does not fit by the cached
// tail; the consumer's ReadFor (its Wait loop: lock, spin, sleep) when the fast read finds
// nothing. Neither side is closed or concurrent, so the checks WriteFor makes before its
// fast path are left out here; beyond that, only the fallback counts and the consumer's
// length check differ from ShmringSmall. With
// `inline_write` or `inline_read` false, that side calls WriteFor / ReadFor for every
// message, as ShmringSmall does.
double ShmringInlineSmall(uint64_t count, bool inline_write, bool inline_read) {
  using shm::fast::Access;
  const std::string name = RingName();
  const double s = RunPair(
      [&] {
        uint64_t wakes = 0, general = 0;
        WriteSmall(name, count, [&](shm::ShmProducer& p, const uint8_t* buf) {
          if (!inline_write) {
            if (p.WriteFor(buf, kSmallBody, shm::kForever) != shm::Status::kOk) Die("WriteFor");
            return;
          }
          shm::ByteRingBuffer* const ring = p.ring();
          switch (Access::WriteFast(ring, buf, kSmallBody, true)) {
            case Access::FastWrite::kWritten:
              break;
            case Access::FastWrite::kWake:
              ++wakes;
              if (Access::WakeAfterWrite(ring) != shm::Status::kOk) Die("WakeAfterWrite");
              break;
            case Access::FastWrite::kNotWritten:
              ++general;
              if (p.WriteFor(buf, kSmallBody, shm::kForever) != shm::Status::kOk) Die("WriteFor");
              break;
          }
        });
        if (g_counters) {
          std::fprintf(stderr, "producer (inline): WakeAfterWrite %llu, WriteFor %llu\n",
                       static_cast<unsigned long long>(wakes),
                       static_cast<unsigned long long>(general));
        }
      },
      [&] {
        shm::ShmConsumer c(name, kOpenTimeoutNs);
        if (!c.IsValid()) Die("consumer: " + c.error());
        shm::ByteRingBuffer* const ring = c.ring();
        uint64_t general = 0;
        const double secs = TimeSmallReads(count, "shmring_inline", [&](uint8_t* buf) {
          uint32_t len = 0;
          if (!inline_read || !Access::ReadFast(ring, buf, kSmallBody, &len)) {
            ++general;
            const shm::ReadResult r = c.ReadFor(buf, kSmallBody, shm::kForever);
            if (r.status != shm::Status::kOk) Die("ReadFor");
            len = r.len;
          }
          if (len != kSmallBody) Die("shmring_inline: wrong length");
        });
        if (g_counters) {
          std::fprintf(stderr, "consumer (inline): ReadFor %llu\n",
                       static_cast<unsigned long long>(general));
        }
        PrintCounters("consumer");
        return secs;
      });
  return static_cast<double>(count - 1) / s;
}

// The minimal ring: head at byte 0, tail at byte 4 (the original design's header), data
// after a 64-byte header; each side caches the other's index and spins, and the consumer
// stores its tail after every record.
// Its variants add independent features (MinimalFeature bits, a template parameter):
//   kLines     head and tail each on a 128-byte block of its own (head at 0, tail at
//              128), data after a 256-byte header: one writer per block, as shmring.
//   kBatch     the consumer's tail stored only when it caught up with the head it knows
//              or an eighth of the ring was freed since its last store (shmring's
//              lossless tail batching, ReadFast / LazyRelease).
//   kPause     a PAUSE (YIELD) before each poll of the other side's index in both spins,
//              as shmring's consumer spin (atomics::CpuRelax).
//   kProtocol  exactly the per-message work shmring's wait protocol and marks need and
//              the minimal ring lacks, the header words in WriteFast's order and memory
//              orders: the record's last 8 bytes zeroed first (the padding store, held
//              first by a compiler barrier as CopySmall holds it), then the minimal
//              ring's copy (its len word before the payload, where WriteFast stores it
//              after); last_start (relaxed) just before the head (release) store and the
//              head mark, the last mark and the sync mark (release, 8 bytes each) just
//              after it, all on the head's line; then the wait check: a compiler barrier
//              (shmring's fence in membarrier mode) and a relaxed load of a flags word on
//              a line of its own, which the consumer never writes here (it never sleeps).
//              Without kLines these words share the head's line with the consumer's tail
//              (last_start at 8, the marks at 16, 24, 32, flags at 64, data after 128);
//              with kLines they sit as in shmring's producer block (head 0, last_start 4,
//              head mark 8, sync mark 16, last mark 24), the tail on the next block (128),
//              flags on the one after (256), data after 384.
// The variants (main()'s table): minimal (none), minimal_lines, minimal_batch,
// minimal_pause (one each), minimal_split (lines + batch + pause: a stronger peer built
// the way shmring lays out and batches its own words), minimal_protocol (protocol alone),
// minimal_protocol_split (all four: the closest thing to shmring without its code) and
// minimal_protocol_lines (protocol + lines); minimal_protocol_own (those + kOwnStores).
//   kOwnStores (with kProtocol; minimal_protocol_own, a diagnostic) the stores WriteFor makes
//              to the producer's own memory each message and the minimal loop does not,
//              at their places: four 8-byte stores after the sequence number's (the
//              call's return address and its three saved registers) and two between the
//              record and last_start (ByteRingBuffer's head_ with reserve_, one 8-byte
//              store, and pub_seq_, 4 bytes), each a volatile store to the loop's own
//              stack, held in place by compiler barriers.
enum MinimalFeature : unsigned {
  kLines = 1,
  kBatch = 2,
  kPause = 4,
  kProtocol = 8,
  kOwnStores = 16
};
constexpr unsigned kSplit = kLines | kBatch | kPause;
inline void SpinPause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// The words a minimal ring's loops use: MinimalSmall's own mapping, or a real shmring
// segment's at shm::layout's offsets (MixedSmall).
struct MinimalWords {
  std::atomic<uint32_t>* head;
  std::atomic<uint32_t>* tail;
  uint8_t* data;  // kSmallCapacity bytes
  // kProtocol's words.
  std::atomic<uint32_t>* last_start;
  std::atomic<uint64_t>* head_mark;
  std::atomic<uint64_t>* last_mark;
  std::atomic<uint64_t>* sync_mark;
};

constexpr uint32_t kMinimalRecord = (4 + kSmallBody + 7) & ~7u;  // 64: divides the capacity
static_assert(kSmallCapacity % kMinimalRecord == 0, "minimal records never cross the end");

// The minimal ring's producer loop: `count` records at the head, each carrying its
// sequence number in its first 8 bytes, the tail polled (acquire) only when the ring
// is full by the cached one. With kProtocol, `wait_check()` after each publish: the
// protocol's look at the consumer's flags, fence included (MinimalSmall: a compiler
// barrier, and a WAITING consumer is a bug since its consumer never sleeps; MixedSmall:
// a real consumer that may sleep, woken). Loops compiled per variant (the features and
// the check are template parameters: see below).
template <unsigned kFeatures, typename WaitCheck>
void MinimalWrite(const MinimalWords w, uint64_t count, WaitCheck&& wait_check) {
  constexpr bool pause = (kFeatures & kPause) != 0;
  constexpr bool protocol = (kFeatures & kProtocol) != 0;
  constexpr bool own = (kFeatures & kOwnStores) != 0;
  constexpr uint32_t mask = kSmallCapacity - 1;
  constexpr uint32_t rec = kMinimalRecord;
  uint32_t h = 0, tail_cache = 0, seq = 0;
  uint8_t buf[kSmallBody];
  std::memset(buf, 0x5a, sizeof buf);
  volatile uint64_t frame[4] = {};     // kOwnStores: the call's return address and saves
  volatile uint64_t head_reserve = 0;  // kOwnStores: head_ with reserve_
  volatile uint32_t pub_seq = 0;       // kOwnStores: pub_seq_
  for (uint64_t i = 0; i < count; ++i) {
    while (kSmallCapacity - (h - tail_cache) < rec) {
      if constexpr (pause) SpinPause();
      tail_cache = w.tail->load(std::memory_order_acquire);
    }
    std::memcpy(buf, &i, 8);
    if constexpr (own) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      for (int k = 0; k < 4; ++k) frame[k] = i + k;
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    uint8_t* at = w.data + (h & mask);
    if constexpr (protocol) {
      const uint64_t zero = 0;
      std::memcpy(at + rec - 8, &zero, 8);
      // First, as CopySmall keeps it (the payload covers these bytes: without the
      // barrier the compiler may move or drop the store).
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    const uint32_t len = kSmallBody;
    std::memcpy(at, &len, 4);
    std::memcpy(at + 4, buf, kSmallBody);
    const uint32_t start = h;
    h += rec;
    if constexpr (own) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      head_reserve = uint64_t{h} | (uint64_t{h} << 32);
      pub_seq = seq + 1;
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    if constexpr (protocol) w.last_start->store(start, std::memory_order_relaxed);
    w.head->store(h, std::memory_order_release);
    if constexpr (protocol) {
      w.head_mark->store(shm::layout::Mark(h, seq + 1), std::memory_order_release);
      w.last_mark->store(shm::layout::Mark(start, seq), std::memory_order_release);
      w.sync_mark->store(shm::layout::Mark(start, seq), std::memory_order_release);
      ++seq;
      wait_check();
    }
  }
}

// The minimal ring's consumer loop: `count` records, each checked to carry its
// sequence number; the head polled (acquire) only when caught up with the cached one;
// the tail stored (release) after every record (kBatch: when caught up or an eighth of
// the ring was freed), then `after_tail_store()` (MinimalSmall: nothing, its producer
// never sleeps; MixedSmall: the protocol's fence and look at a real producer's
// WAITING). Returns the seconds from the first record to the last.
template <unsigned kFeatures, typename AfterTailStore>
double MinimalRead(const MinimalWords w, uint64_t count, AfterTailStore&& after_tail_store) {
  constexpr bool batched = (kFeatures & kBatch) != 0;
  constexpr bool pause = (kFeatures & kPause) != 0;
  constexpr uint32_t mask = kSmallCapacity - 1;
  constexpr uint32_t rec = kMinimalRecord;
  constexpr uint32_t batch = kSmallCapacity / 8;
  uint32_t t = 0, head_cache = 0, stored = 0;
  uint8_t buf[kSmallBody];
  uint64_t got = 0, bad = 0;
  Clock::time_point start;
  while (got < count) {
    while (head_cache == t) {
      if constexpr (pause) SpinPause();
      head_cache = w.head->load(std::memory_order_acquire);
    }
    if (got == 0) start = Clock::now();
    const uint8_t* at = w.data + (t & mask);
    uint32_t len;
    std::memcpy(&len, at, 4);
    std::memcpy(buf, at + 4, len <= kSmallBody ? len : kSmallBody);
    t += rec;
    if (!batched || t == head_cache || t - stored >= batch) {
      w.tail->store(t, std::memory_order_release);
      stored = t;
      after_tail_store();
    }
    uint64_t seq;
    std::memcpy(&seq, buf, 8);
    bad += seq != got;
    ++got;
  }
  if (bad) Die("minimal ring: messages out of order");
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The features are a template parameter: each variant's loops are compiled with only its
// own work (a runtime flag would be reloaded and tested in the plain ring's loop too: its
// byte stores may alias the lambda's captures).
template <unsigned kFeatures>
double MinimalSmall(uint64_t count) {
  constexpr bool lines = (kFeatures & kLines) != 0;
  constexpr bool protocol = (kFeatures & kProtocol) != 0;
  // Byte offsets of the words (see above) and of the data area.
  constexpr uint32_t kTailAt = lines ? 128 : 4;
  constexpr uint32_t kLastStartAt = lines ? 4 : 8;
  constexpr uint32_t kHeadMarkAt = lines ? 8 : 16;
  constexpr uint32_t kLastMarkAt = 24;  // both layouts
  constexpr uint32_t kSyncMarkAt = lines ? 16 : 32;
  constexpr uint32_t kFlagsAt = lines ? 256 : 64;
  constexpr uint32_t header = lines ? (protocol ? 384 : 256) : (protocol ? 128 : 64);
  const size_t size = header + kSmallCapacity;
  auto* base = static_cast<uint8_t*>(MapShared(size));
  const MinimalWords w{reinterpret_cast<std::atomic<uint32_t>*>(base),
                       reinterpret_cast<std::atomic<uint32_t>*>(base + kTailAt),
                       base + header,
                       reinterpret_cast<std::atomic<uint32_t>*>(base + kLastStartAt),
                       reinterpret_cast<std::atomic<uint64_t>*>(base + kHeadMarkAt),
                       reinterpret_cast<std::atomic<uint64_t>*>(base + kLastMarkAt),
                       reinterpret_cast<std::atomic<uint64_t>*>(base + kSyncMarkAt)};
  auto* flags = reinterpret_cast<std::atomic<uint32_t>*>(base + kFlagsAt);
  constexpr uint32_t kWaiting = 1;
  const double s = RunPair(
      [&] {
        MinimalWrite<kFeatures>(w, count, [flags] {
          // The wait check: shmring's fence in membarrier mode, then the flags.
          std::atomic_signal_fence(std::memory_order_seq_cst);
          if (flags->load(std::memory_order_relaxed) & kWaiting) Die("minimal_protocol: WAITING");
        });
      },
      [&] { return MinimalRead<kFeatures>(w, count, [] {}); });
  munmap(base, size);
  return static_cast<double>(count - 1) / s;
}

// Mixed pairs: one side of the pair is shmring's own (ShmringWriter or ShmringReader,
// as in ShmringSmall), the other minimal_protocol_lines's loop (MinimalWrite or
// MinimalRead) run on the same real segment at shm::layout's offsets (head, last_start
// and the marks on the producer's block, the tail on slot 0's, the data after the
// header), which is minimal_protocol_lines's own layout with the blocks renumbered.
// The minimal side attaches as shmring's would (a real ShmConsumer or ShmProducer
// object opens the segment and holds its role; the loop then writes or reads the
// words directly, past that object) and keeps the wait protocol's half that the
// shmring side relies on, since that side may sleep: the minimal consumer, after each
// tail store, fences and wakes a producer seen WAITING for space (ByteRingBuffer::
// StoreTail's look, waking on every WAITING seen); the minimal producer, after each
// publish, fences and wakes a consumer seen WAITING (WakeConsumerIfWaiting's look,
// likewise). The fence is a compiler barrier when the shmring side's role registered
// membarrier (its MEMBARRIER flag: the sleeper then issues the heavy barrier), a full
// fence otherwise, chosen once per run.
//   shmring_writes (variant mixed_shmring_write): ShmProducer::WriteFor -> MinimalRead.
//   !shmring_writes (variant mixed_shmring_read): MinimalWrite -> ShmConsumer::ReadFor.
// Both check every message's sequence number (MinimalRead, TimeSmallReads).
MinimalWords SegmentWords(uint8_t* base) {
  using namespace shm::layout;
  return {reinterpret_cast<std::atomic<uint32_t>*>(base + kHeadOffset),
          reinterpret_cast<std::atomic<uint32_t>*>(base + kTailOffset),
          base + kHeaderSize,
          reinterpret_cast<std::atomic<uint32_t>*>(base + kLastStartOffset),
          reinterpret_cast<std::atomic<uint64_t>*>(base + kHeadMarkOffset),
          reinterpret_cast<std::atomic<uint64_t>*>(base + kLastMarkOffset),
          reinterpret_cast<std::atomic<uint64_t>*>(base + kSyncMarkOffset)};
}

// The minimal loops' index arithmetic assumes the segment's capacity is theirs.
void CheckMixedCapacity(shm::ByteRingBuffer* ring) {
  if (ring->capacity() != kSmallCapacity) Die("mixed: ring capacity is not kSmallCapacity");
}

template <bool kFullFence>
inline void WaitCheckFence() {
  if constexpr (kFullFence) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
}

// minimal_protocol_lines's consumer on the segment of a shmring producer: the tail
// store's wait check as above.
template <bool kFullFence>
double MinimalReadSegment(shm::ShmConsumer& c, uint64_t count) {
  uint8_t* const base = c.ring()->base();
  const MinimalWords w = SegmentWords(base);
  auto* pflags = reinterpret_cast<std::atomic<uint32_t>*>(base + shm::layout::kProducerFlagsOffset);
  const auto* tail = reinterpret_cast<const uint32_t*>(base + shm::layout::kTailOffset);
  return MinimalRead<kProtocol | kLines>(w, count, [pflags, tail] {
    WaitCheckFence<kFullFence>();
    if (pflags->load(std::memory_order_relaxed) & shm::layout::kProducerWaiting) {
      shm::wait::WakeWord(tail);
    }
  });
}

// minimal_protocol_lines's producer on the segment of `p`: the publish's wait check as
// above.
template <bool kFullFence>
void MinimalWriteSegment(shm::ShmProducer& p, uint64_t count) {
  uint8_t* const base = p.ring()->base();
  const MinimalWords w = SegmentWords(base);
  auto* cflags = reinterpret_cast<std::atomic<uint32_t>*>(base + shm::layout::kConsumerFlagsOffset);
  const auto* head = reinterpret_cast<const uint32_t*>(base + shm::layout::kHeadOffset);
  MinimalWrite<kProtocol | kLines>(w, count, [cflags, head] {
    WaitCheckFence<kFullFence>();
    if (cflags->load(std::memory_order_relaxed) & shm::layout::kConsumerWaiting) {
      shm::wait::WakeWord(head);
    }
  });
}

double MixedSmall(uint64_t count, bool shmring_writes) {
  const std::string name = RingName();
  using namespace shm::layout;
  const double s = RunPair(
      [&] {
        if (shmring_writes) {
          ShmringWriter(name, count);
          return;
        }
        shm::ShmProducer p(name, kSmallCapacity);
        if (!p.IsValid()) Die("producer: " + p.error());
        CheckMixedCapacity(p.ring());
        WaitForConsumer(p);
        const auto* pflags =
            reinterpret_cast<std::atomic<uint32_t>*>(p.ring()->base() + kProducerFlagsOffset);
        const bool light = (pflags->load(std::memory_order_relaxed) & kProducerMembarrier) != 0;
        if (light) {
          MinimalWriteSegment<false>(p, count);
        } else {
          MinimalWriteSegment<true>(p, count);
        }
        PrintCounters("producer");
        p.Close();
        while (p.ConsumerAttached()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      [&] {
        if (!shmring_writes) return ShmringReader(name, count, "mixed_shmring_read");
        shm::ShmConsumer c(name, kOpenTimeoutNs);
        if (!c.IsValid()) Die("consumer: " + c.error());
        CheckMixedCapacity(c.ring());
        const auto* cflags =
            reinterpret_cast<std::atomic<uint32_t>*>(c.ring()->base() + kConsumerFlagsOffset);
        const bool light = (cflags->load(std::memory_order_relaxed) & kConsumerMembarrier) != 0;
        const double secs =
            light ? MinimalReadSegment<false>(c, count) : MinimalReadSegment<true>(c, count);
        PrintCounters("consumer");
        return secs;
      });
  return static_cast<double>(count - 1) / s;
}

// ---- frames -----------------------------------------------------------------------

constexpr uint32_t kFrame = 1920 * 1080 * 3;

// --counters in the frames rows: per frame, where each side's time goes. Filled by
// both processes in a shared mapping (CLOCK_MONOTONIC is one clock for both), read by
// the producer at the end. Diagnostic only: the clock reads add ~0.1 us per frame.
struct FrameTimes {
  int64_t reserve_start, reserve_end, copy_end, commit_end;  // producer
  uint64_t reserve_sleeps;                                   // producer sleeps in Reserve
  uint8_t* dst;                                              // where the frame went
  int64_t peek_end, release_end;                             // consumer
  uint64_t peek_sleeps;                                      // consumer sleeps in PeekFor
  uint64_t peek_barriers;  // consumer membarriers (wait::Counters::heavy_barriers) in PeekFor
  int producer_cpu, consumer_cpu;  // sched_getcpu() after Commit / after PeekFor
};

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (const double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// Copies the frame `frames` times to dst[i % dst.size()], returns us per copy.
double TimeCopies(const std::vector<uint8_t*>& dst, const uint8_t* src, uint64_t frames) {
  const int64_t t0 = NowNs();
  for (uint64_t i = 0; i < frames; ++i) {
    std::memcpy(dst[i % dst.size()], src, kFrame);
    // The copies are not dead stores: the compiler must make each one.
    __asm__ __volatile__("" : : "r"(dst[i % dst.size()]) : "memory");
  }
  return static_cast<double>(NowNs() - t0) / 1e3 / static_cast<double>(frames);
}

// The peers of every frames row: one process copying the frame into `slots`
// destinations in turn, frame after frame, the same at every ring capacity.
// "memcpy" (2 slots, the goal's peer): double buffering, the least a hand-over of
// frames needs, since a producer writes frame N + 1 while its receiver may still
// hold frame N. "memcpy_one" (1 slot, information): the same destination every
// time, the bound no hand-over reaches unless the receiver is done with a frame
// before the next one is started. A destination walking the ring's whole capacity
// would be a weaker peer at large capacities: it pays the cache and TLB footprint
// that the ring avoids by going back to the front.
double MemcpyFrames(uint64_t frames, uint32_t slots) {
  auto* dst = static_cast<uint8_t*>(MapShared(size_t{kFrame} * slots));
  std::vector<uint8_t> src(kFrame, 0x33);
  // Faulted in before the clock starts, as the shmring producer prefaults its ring
  // before its consumer attaches: both sides time copies, not first-touch faults.
  std::memset(dst, 0, size_t{kFrame} * slots);
  std::vector<uint8_t*> places;
  for (uint32_t k = 0; k < slots; ++k) places.push_back(dst + size_t{k} * kFrame);
  const double us = TimeCopies(places, src.data(), frames);
  munmap(dst, size_t{kFrame} * slots);
  return 1e6 / us;
}

// The producer's report (stderr, one JSON line per run): per-frame means in us.
// reserve_fast/_waited: Reserve calls that returned without / after a sleep;
// wake_us: the consumer's PeekFor return minus the producer's memcpy end (Commit's
// start), median and 90th percentile; places: distinct record addresses;
// front_share: frames at the lowest address; copy_ring_same: the same memcpy into the
// ring's mapping at the addresses the run used, in the same order, after the
// consumer is done; copy_ring_two: into the ring's first two places alternately;
// copy_peer_two: the memcpy row's peer itself (MemcpyFrames with two destinations);
// same_cpu_share: frames the consumer got (PeekFor returned) on the CPU the producer
// was on after its Commit (the receiver woken on the producer's CPU).
void ReportFrameTimes(uint32_t capacity, const FrameTimes* t, uint64_t frames, const uint8_t* src) {
  std::vector<double> res_fast, res_wait, copy, commit, wake, period;
  std::vector<uint8_t*> places;
  uint64_t front = 0, psleeps = 0, csleeps = 0, same_cpu = 0, cbarriers = 0;
  uint8_t* lowest = t[0].dst;
  for (uint64_t i = 0; i < frames; ++i) lowest = std::min(lowest, t[i].dst);
  for (uint64_t i = 1; i < frames; ++i) {  // frame 0: the consumer was still attaching
    const FrameTimes& f = t[i];
    (f.reserve_sleeps ? res_wait : res_fast).push_back((f.reserve_end - f.reserve_start) / 1e3);
    copy.push_back((f.copy_end - f.reserve_end) / 1e3);
    commit.push_back((f.commit_end - f.copy_end) / 1e3);
    wake.push_back((f.peek_end - f.copy_end) / 1e3);
    period.push_back((f.reserve_start - t[i - 1].reserve_start) / 1e3);
    if (std::find(places.begin(), places.end(), f.dst) == places.end()) places.push_back(f.dst);
    front += f.dst == lowest;
    psleeps += f.reserve_sleeps;
    same_cpu += f.producer_cpu == f.consumer_cpu;
    csleeps += f.peek_sleeps;
    cbarriers += f.peek_barriers;
  }
  std::vector<double> w = wake;
  std::sort(w.begin(), w.end());
  const double n = static_cast<double>(frames - 1);
  std::vector<uint8_t*> used;
  for (uint64_t i = 0; i < frames; ++i) used.push_back(t[i].dst);
  std::vector<uint8_t*> two{lowest, lowest};
  for (uint8_t* p : places) {
    if (p != lowest) {
      two[1] = p;
      break;
    }
  }
  const double ring_same = TimeCopies(used, src, frames);
  const double peer_two_us = 1e6 / MemcpyFrames(frames, 2);
  const double ring_two = TimeCopies(two, src, frames);
  // Huge pages in play (the ring's mapping is the process's only large shared one).
  long long pmd_kb = 0;
  if (FILE* f = std::fopen("/proc/self/smaps_rollup", "r")) {
    char line[256];
    long long kb = 0;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "FilePmdMapped: %lld", &kb) == 1 ||
          std::sscanf(line, "ShmemPmdMapped: %lld", &kb) == 1) {
        pmd_kb += kb;
      }
    }
    std::fclose(f);
  }
  std::fprintf(stderr, "{\"frames_pmd_mapped_kb\": %lld}\n", pmd_kb);
  std::fprintf(stderr,
               "{\"frames_counters\": %u, \"period_us\": %.1f, \"reserve_fast_n\": %zu, "
               "\"reserve_fast_us\": %.2f, \"reserve_waited_n\": %zu, \"reserve_waited_us\": %.1f, "
               "\"reserve_sleeps_per_frame\": %.2f, \"copy_us\": %.1f, \"commit_us\": %.2f, "
               "\"wake_p50_us\": %.1f, \"wake_p90_us\": %.1f, \"peek_sleeps_per_frame\": %.2f, "
               "\"places\": %zu, \"front_share\": %.2f, \"copy_ring_same_us\": %.1f, "
               "\"copy_ring_two_us\": %.1f, \"copy_peer_two_us\": %.1f, \"same_cpu_share\": %.2f, "
               "\"peek_membarriers_per_frame\": %.2f}\n",
               capacity >> 20, Mean(period), res_fast.size(), Mean(res_fast), res_wait.size(),
               Mean(res_wait), static_cast<double>(psleeps) / n, Mean(copy), Mean(commit),
               w[w.size() / 2], w[w.size() * 9 / 10], static_cast<double>(csleeps) / n,
               places.size(), static_cast<double>(front) / n, ring_same, ring_two, peer_two_us,
               static_cast<double>(same_cpu) / n, static_cast<double>(cbarriers) / n);
}

double ShmringFrames(uint32_t capacity, uint64_t frames) {
  const std::string name = RingName();
  const size_t times_size = sizeof(FrameTimes) * frames + 64;
  auto* times = g_counters ? static_cast<FrameTimes*>(MapShared(times_size)) : nullptr;
  auto* consumer_done = static_cast<std::atomic<int>*>(MapShared(4096));
  const double s = RunPair(
      [&] {
        // A default producer unless --full-fences (ProducerOptions::full_fences, as
        // shmringsink sets it): then the receiver, asleep before every frame, issues no
        // membarrier (an interrupt to the producer's CPU in mid-copy) before each sleep.
        // DESIGN.md section 7 has both measured.
        shm::ProducerOptions opts;
        opts.capacity = capacity;
        opts.full_fences = g_full_fences;
        shm::ShmProducer p(name, opts);
        if (!p.IsValid()) Die("producer: " + p.error());
        WaitForConsumer(p);
        std::vector<uint8_t> src(kFrame, 0x33);
        for (uint64_t i = 0; i < frames; ++i) {
          uint8_t* dst = nullptr;
          const uint64_t sleeps = times ? shm::wait::GetCounters().sleeps : 0;
          if (times) times[i].reserve_start = NowNs();
          // Copied in from a buffer of our own (a camera's, say): shm::FillHint::kCopied.
          if (p.Reserve(kFrame, &dst, shm::kForever, shm::FillHint::kCopied) != shm::Status::kOk) {
            Die("Reserve");
          }
          if (times) {
            times[i].reserve_end = NowNs();
            times[i].reserve_sleeps = shm::wait::GetCounters().sleeps - sleeps;
            times[i].dst = dst;
          }
          std::memcpy(dst, src.data(), kFrame);
          if (times) times[i].copy_end = NowNs();
          p.Commit(kFrame);
          if (times) {
            times[i].commit_end = NowNs();
            times[i].producer_cpu = sched_getcpu();
          }
        }
        if (times) {
          // The consumer has released every frame: the ring's memory is ours to time.
          while (consumer_done->load(std::memory_order_acquire) == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          ReportFrameTimes(capacity, times, frames, src.data());
        }
        p.Close();
        while (p.ConsumerAttached()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      [&] {
        shm::ShmConsumer c(name, kOpenTimeoutNs);
        if (!c.IsValid()) Die("consumer: " + c.error());
        uint64_t got = 0, sum = 0;
        Clock::time_point start;
        while (got < frames) {
          shm::MessageView v;
          const shm::wait::Counters before =
              times ? shm::wait::GetCounters() : shm::wait::Counters{};
          if (c.PeekFor(&v, shm::kForever) != shm::Status::kOk) Die("PeekFor");
          if (times) {
            times[got].peek_end = NowNs();
            const shm::wait::Counters after = shm::wait::GetCounters();
            times[got].peek_sleeps = after.sleeps - before.sleeps;
            times[got].peek_barriers = after.heavy_barriers - before.heavy_barriers;
            times[got].consumer_cpu = sched_getcpu();
          }
          if (got == 0) start = Clock::now();
          sum += v.data[v.len / 2];  // touch the frame, as a consumer would
          c.Release();
          if (times) times[got].release_end = NowNs();
          ++got;
        }
        if (sum == 0) Die("frames: nothing read");
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        consumer_done->store(1, std::memory_order_release);
        return secs;
      });
  if (times) munmap(times, times_size);
  munmap(consumer_done, 4096);
  return static_cast<double>(frames - 1) / s;
}

// ---- latency ----------------------------------------------------------------------

void EmitPercentiles(const char* row, const char* variant, std::vector<int64_t> v) {
  if (v.empty()) return;
  std::sort(v.begin(), v.end());
  const int64_t p50 = v[v.size() / 2];
  const int64_t p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  std::printf(
      "{\"row\": \"%s\", \"variant\": \"%s\", \"p50_ns\": %lld, \"p99_ns\": %lld, "
      "\"max_ns\": %lld, \"samples\": %zu}\n",
      row, variant, static_cast<long long>(p50), static_cast<long long>(p99),
      static_cast<long long>(v.back()), v.size());
  std::fflush(stdout);
}

// The producer writes `samples` time-stamped messages, `gap_ns` apart (busy-waiting the gap
// when `spin_gap`, sleeping otherwise); the consumer polls (`poll`) or sleeps in ReadFor.
void Latency(const char* row, uint64_t samples, int64_t gap_ns, bool spin_gap, bool poll) {
  const std::string name = RingName();
  auto* out = static_cast<int64_t*>(MapShared(sizeof(int64_t) * (samples + 1)));
  // The consumer counts the messages it has read here; the producer sends message i only
  // after message i - 1 was read, so no message waits behind another (no queueing counted).
  auto* read = new (MapShared(64)) std::atomic<uint64_t>(0);
  RunPair(
      [&] {
        shm::ProducerOptions opts;
        opts.capacity = kSmallCapacity;
        opts.full_fences = g_full_fences;
        shm::ShmProducer p(name, opts);
        if (!p.IsValid()) Die("producer: " + p.error());
        WaitForConsumer(p);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it settle
        uint8_t buf[kSmallBody] = {};
        for (uint64_t i = 0; i < samples; ++i) {
          while (read->load(std::memory_order_acquire) < i) {
          }
          const int64_t next = NowNs() + gap_ns;
          if (spin_gap) {
            while (NowNs() < next) {
            }
          } else {
            const timespec ts{static_cast<time_t>(next / 1'000'000'000),
                              static_cast<long>(next % 1'000'000'000)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
          }
          const int64_t now = NowNs();
          std::memcpy(buf, &now, 8);
          if (p.WriteFor(buf, kSmallBody, shm::kForever) != shm::Status::kOk) Die("WriteFor");
        }
        p.Close();
        while (p.ConsumerAttached()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      [&] {
        shm::ShmConsumer c(name, kOpenTimeoutNs);
        if (!c.IsValid()) Die("consumer: " + c.error());
        uint8_t buf[kSmallBody];
        for (uint64_t got = 0; got < samples;) {
          shm::ReadResult r;
          if (poll) {
            r = c.TryRead(buf, sizeof buf);
            if (r.status == shm::Status::kEmpty) continue;
          } else {
            r = c.ReadFor(buf, sizeof buf, shm::kForever);
          }
          const int64_t now = NowNs();
          if (r.status != shm::Status::kOk) Die("read");
          int64_t sent;
          std::memcpy(&sent, buf, 8);
          out[got++] = now - sent;
          read->store(got, std::memory_order_release);
        }
        return 0.0;
      });
  EmitPercentiles(row, "shmring", std::vector<int64_t>(out, out + samples));
  munmap(out, sizeof(int64_t) * (samples + 1));
  munmap(read, 64);
}

std::vector<uint32_t> ParseList(const std::string& s) {
  std::vector<uint32_t> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(static_cast<uint32_t>(std::strtoul(s.substr(i, j - i).c_str(), nullptr, 10)));
    i = j + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7;
  uint64_t small = 2'000'000, frames = 300, lat = 20'000, wake = 2'000;
  std::string caps = "16,32,64,128", only = "small,frames,latency";
  std::string variants = "shmring,minimal";
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--pin" || a == "--counters" || a == "--full-fences") {
      (a == "--pin" ? g_pin : a == "--counters" ? g_counters : g_full_fences) = true;
      --i;  // no value
      continue;
    }
    if (i + 1 >= argc) Die("option " + a + " needs a value");
    const char* v = argv[i + 1];
    if (a == "--rounds")
      rounds = std::atoi(v);
    else if (a == "--small-count")
      small = std::strtoull(v, nullptr, 10);
    else if (a == "--frames")
      frames = std::strtoull(v, nullptr, 10);
    else if (a == "--caps")
      caps = v;
    else if (a == "--latency-samples")
      lat = std::strtoull(v, nullptr, 10);
    else if (a == "--wake-samples")
      wake = std::strtoull(v, nullptr, 10);
    else if (a == "--only")
      only = v;
    else if (a == "--variants")
      variants = v;
    else
      Die("unknown option " + a);
  }
  if (rounds < 1 || small < 2 || frames < 2) Die("--rounds >= 1, counts >= 2");
  const auto want = [&](const char* what) { return only.find(what) != std::string::npos; };
  // Whole names from the comma-separated list: "minimal" does not select minimal_split.
  const auto variant = [&](const char* name) {
    return ("," + variants + ",").find("," + std::string(name) + ",") != std::string::npos;
  };
  // The small row's variants in the order a round runs them; a name in --variants that
  // is none of them is a mistake (a typo, or a binary older than the variant): refused,
  // rather than a run that silently measures less than was asked.
  struct SmallVariant {
    const char* name;
    std::function<double(uint64_t)> run;
  };
  const SmallVariant kSmall[] = {
      {"shmring", ShmringSmall},
      {"minimal", MinimalSmall<0>},
      {"minimal_split", MinimalSmall<kSplit>},
      {"minimal_protocol", MinimalSmall<kProtocol>},
      {"minimal_lines", MinimalSmall<kLines>},
      {"minimal_batch", MinimalSmall<kBatch>},
      {"minimal_pause", MinimalSmall<kPause>},
      {"minimal_protocol_split", MinimalSmall<kProtocol | kSplit>},
      {"minimal_protocol_lines", MinimalSmall<kProtocol | kLines>},
      {"minimal_protocol_own", MinimalSmall<kProtocol | kLines | kOwnStores>},
      {"shmring_inline", [](uint64_t n) { return ShmringInlineSmall(n, true, true); }},
      {"shmring_inline_write", [](uint64_t n) { return ShmringInlineSmall(n, true, false); }},
      {"shmring_inline_read", [](uint64_t n) { return ShmringInlineSmall(n, false, true); }},
      {"mixed_shmring_write", [](uint64_t n) { return MixedSmall(n, true); }},
      {"mixed_shmring_read", [](uint64_t n) { return MixedSmall(n, false); }},
  };
  for (size_t at = 0; at <= variants.size();) {
    const size_t comma = std::min(variants.find(',', at), variants.size());
    const std::string name = variants.substr(at, comma - at);
    bool known = false;
    for (const SmallVariant& v : kSmall) known = known || name == v.name;
    if (!known) Die("--variants: unknown variant '" + name + "'");
    at = comma + 1;
  }
  if (want("small")) {
    for (int r = 0; r < rounds; ++r) {
      for (const SmallVariant& v : kSmall) {
        if (variant(v.name)) Emit("small", v.name, r, v.run(small), "msg/s");
      }
    }
  }
  if (want("frames")) {
    for (const uint32_t mib : ParseList(caps)) {
      const std::string row = "frames_" + std::to_string(mib);
      for (int r = 0; r < rounds; ++r) {
        Emit(row, "shmring", r, ShmringFrames(mib << 20, frames), "frames/s");
        Emit(row, "memcpy", r, MemcpyFrames(frames, 2), "frames/s");
        Emit(row, "memcpy_one", r, MemcpyFrames(frames, 1), "frames/s");
      }
    }
  }
  if (want("latency")) {
    Latency("latency_oneway", lat, 20'000, true, true);
    Latency("latency_wakeup", wake, 1'000'000, false, false);
  }
  return 0;
}
