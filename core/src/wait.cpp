#include "shm/wait.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "atomics.hpp"
#include "tuning.hpp"

#if defined(__linux__)
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

namespace shm {

void Interrupter::Interrupt() {
  flag_.store(true, std::memory_order_seq_cst);
  // Either the sleeper sees the flag before it sleeps, or we see it counted as a
  // sleeper here and keep waking its word until it has left the wait. Stops as soon
  // as someone Clear()s the flag: a woken sleeper that clears it and waits again
  // is a new wait, not ours to end.
  while (flag_.load(std::memory_order_seq_cst) && sleepers_.load(std::memory_order_seq_cst) > 0) {
    const uint32_t* w = word_.load(std::memory_order_seq_cst);
    if (w != nullptr) wait::WakeWord(w);
    std::this_thread::sleep_for(std::chrono::nanoseconds(tuning::kInterruptRewakeNs));
  }
}

void Interrupter::BeginSleep(const uint32_t* word) {
  word_.store(word, std::memory_order_seq_cst);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
}

void Interrupter::EndSleep() { sleepers_.fetch_sub(1, std::memory_order_seq_cst); }

namespace wait {

#if defined(__linux__)

Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000);
    tsp = &ts;
  }
  // Shared (not FUTEX_PRIVATE_FLAG): the waker is another process.
  const long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (r != 0 && errno == ETIMEDOUT) return Result::kTimeout;
  return Result::kWoken;  // woken, value changed (EAGAIN) or a signal (EINTR)
}

void WakeWord(const uint32_t* word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

namespace {
bool RegisterMembarrier() {
  const char* env = std::getenv("SHMRING_NO_MEMBARRIER");
  if (env != nullptr && std::strcmp(env, "1") == 0) return false;
  const long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 ||
      (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0) {
    return false;
  }
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}
}  // namespace

bool UseMembarrier() {
  static const bool registered = RegisterMembarrier();  // thread-safe static init
  return registered;
}

bool HeavyBarrier() {
  const bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
  atomics::FullFence();
  return ok;
}

#else  // no cross-process address wait: bounded back-off poll

Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int64_t pause_ns = tuning::kPollNapMinNs;
  while (atomics::LoadAcquire(word) == expected) {
    const int64_t elapsed =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
    if (timeout_ns >= 0 && elapsed >= timeout_ns) return Result::kTimeout;
    int64_t step = pause_ns;
    if (timeout_ns >= 0 && timeout_ns - elapsed < step) step = timeout_ns - elapsed;
    std::this_thread::sleep_for(std::chrono::nanoseconds(step));
    pause_ns = pause_ns * 2 < tuning::kPollNapMaxNs ? pause_ns * 2 : tuning::kPollNapMaxNs;
    // A poll returns regularly so callers can look at interrupts and peers.
    if (elapsed > tuning::kPollReturnNs) return Result::kWoken;
  }
  return Result::kWoken;
}

void WakeWord(const uint32_t*) {}

bool UseMembarrier() { return false; }

bool HeavyBarrier() {
  atomics::FullFence();
  return false;  // no membarrier here (and no peer relies on it: UseMembarrier() is false)
}

#endif

}  // namespace wait
}  // namespace shm
