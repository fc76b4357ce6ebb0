// Helpers shared by the core tests: ring images with guards, payload patterns,
// polling with a hang guard, and child processes (fork, or fork+exec of this test
// binary with a gtest filter and extra environment; Windows: CreateProcess of this
// test binary, no fork).
//
// Tests that cannot run on Windows (fork, MAP_SHARED anonymous memory, /dev/shm,
// uids, OFD locks) are not compiled there: their body sits in `#ifndef _WIN32` and
// the Windows build compiles SHMTEST_NOT_ON_WINDOWS("why") in its place, a GTEST_SKIP
// that names the reason, so a Windows run reports them as skipped, never as passed.
// Whole files of such tests are left out of the Windows build in tests/core/meson.build.
#pragma once

#define SHMTEST_NOT_ON_WINDOWS(why) GTEST_SKIP() << "not on Windows: " << (why)

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace shmtest {

// A ring segment image in private anonymous memory, followed (and, with kPage,
// preceded) by guard bytes. kPage also places the end of the data area exactly at
// a PROT_NONE page, so any read or write past the data area faults at once.
class RingImage {
 public:
  enum class Guard { kBytes, kPage };
  static constexpr uint8_t kGuardByte = 0xA5;
  static constexpr size_t kGuardBytes = 256;

  // Not initialized: call Init() (or plant a header by hand).
  explicit RingImage(uint32_t capacity, Guard guard = Guard::kBytes);
  ~RingImage();
  RingImage(const RingImage&) = delete;
  RingImage& operator=(const RingImage&) = delete;

  // ByteRingBuffer::Initialize with generation 1; returns its error text.
  std::string Init(uint32_t start_index = 0, uint32_t profile = 0);

  uint8_t* base() const { return base_; }
  uint8_t* data() const;                   // the data area
  uint64_t size() const { return size_; }  // header + capacity
  uint32_t capacity() const { return capacity_; }
  // Whether every guard byte still holds kGuardByte.
  bool GuardIntact() const;

  // Raw header pokes for corruption tests (single-threaded use only).
  uint32_t U32(uint32_t offset) const;
  void SetU32(uint32_t offset, uint32_t v);
  void SetU16(uint32_t offset, uint16_t v);

 private:
  uint32_t capacity_;
  Guard guard_;
  uint8_t* map_ = nullptr;
  size_t map_len_ = 0;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  size_t guarded_len_ = 0;  // readable bytes of the mapping
};

// Deterministic test payloads: message `seq` has length SizeFor(seq) and known
// bytes. Layout when long enough: [u64 seq][u32 checksum of the rest][rest...].
class PayloadModel {
 public:
  // Sizes 0..max_len: mostly small, some medium, about 1 in 64 large (up to max_len).
  PayloadModel(uint32_t max_len, uint64_t key);
  uint32_t SizeFor(uint64_t seq) const;
  void Fill(uint64_t seq, uint8_t* out, uint32_t len) const;
  // "" when `msg` is message `seq`, else what is wrong.
  std::string Check(uint64_t seq, const uint8_t* msg, uint32_t len) const;
  uint32_t max_len() const { return max_len_; }

 private:
  const uint8_t* Pool(uint64_t seq) const;
  uint32_t max_len_;
  uint64_t key_;
  std::vector<uint8_t> pool_;  // 2 * max_len random bytes, slices start at seq-derived offsets
};

uint64_t SplitMix64(uint64_t x);

// Polls `pred` every ~100 us until it holds; false after `guard` (a hang guard,
// never a performance assertion).
bool WaitUntil(const std::function<bool()>& pred,
               std::chrono::milliseconds guard = std::chrono::seconds(30));

#ifndef _WIN32
// Forks a child that runs `body` and _exits with its return value (0 = success).
pid_t ForkChild(const std::function<int()>& body);
// Forks a child that runs `body`, which sets something up (opens a ring end, say)
// and then calls HoldUntilKilled(). Returns the child's pid once it is that far,
// or -1 when `body` returned instead (the child is reaped then).
pid_t ForkHolding(const std::function<int()>& body);
// In a ForkHolding child: tells the parent the set-up is done, then waits to be
// killed (what it holds stays held until then). Never returns.
[[noreturn]] void HoldUntilKilled();
// A child process forked at construction (before the caller starts any thread: a
// producer arms its owner word from a thread of its own, and under ThreadSanitizer a
// fork of a threaded process cannot start threads) that makes something only on
// Cue(), at the exact point of a test where another process must (another process's
// ring under a name, say), and keeps it until Release(). `make` runs in the child;
// it builds what it holds and calls `made(ok)`, which reports `ok` to the parent and
// returns once the parent released the child. Caller: the test's thread.
class CuedChild {
 public:
  explicit CuedChild(const std::function<void(const std::function<void(bool)>& made)>& make);
  ~CuedChild();
  CuedChild(const CuedChild&) = delete;
  CuedChild& operator=(const CuedChild&) = delete;
  // Lets the child make its thing and waits until it did: what `made` got. Blocks.
  bool Cue();
  // Lets the child drop what it made and exit; its exit code (WaitChild; 2 for a
  // child never cued). The destructor releases a child not released yet. Blocks.
  int Release();

 private:
  pid_t pid_ = -1;
  int go_ = -1, made_ = -1, done_ = -1;  // this side's ends of the three pipes
};
#endif
// Forks and execs this test binary with --gtest_filter=`filter` and `env` added
// to the environment (KEY=VALUE pairs). The child runs concurrently with the caller.
// Windows: CreateProcess of this executable (the child's pid is returned; its
// handle is kept for WaitChild).
pid_t SpawnSelf(const std::string& filter, const std::vector<std::string>& env);
// waitpid with a hang guard; returns the exit code, 128+signal, or -1 (still running
// after `guard`: the child is killed with SIGKILL; Windows: TerminateProcess).
int WaitChild(pid_t pid, std::chrono::milliseconds guard = std::chrono::seconds(90));

// Kept as is across a re-exec: the value of env var `name` or "".
std::string Env(const char* name);

}  // namespace shmtest
