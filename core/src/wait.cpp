#include "shm/wait.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "atomics.hpp"
#include "shm/layout.hpp"
#include "tuning.hpp"
#include "wait_views.hpp"

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>  // WaitOnAddress: synchapi.h, library synchronization

#include <map>
#include <mutex>
#include <string>
#endif

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

namespace {
std::atomic<uint64_t> sleeps_{0};
std::atomic<uint64_t> heavy_barriers_{0};
std::atomic<uint64_t> wakes_{0};
std::atomic<uint64_t> waiting_sets_{0};
std::atomic<uint64_t> timeouts_{0};
std::atomic<int64_t> longest_timeout_ns_{0};
std::atomic<uint64_t> owner_wakes_{0};
std::atomic<uint64_t> owner_deaths_{0};

void CountSleep(int64_t timeout_ns) {
  sleeps_.fetch_add(1, std::memory_order_relaxed);
  const int64_t t = timeout_ns < 0 ? INT64_MAX : timeout_ns;
  int64_t seen = longest_timeout_ns_.load(std::memory_order_relaxed);
  while (t > seen &&
         !longest_timeout_ns_.compare_exchange_weak(seen, t, std::memory_order_relaxed)) {
  }
}
}  // namespace

Counters GetCounters() {
  Counters c;
  c.sleeps = sleeps_.load(std::memory_order_relaxed);
  c.heavy_barriers = heavy_barriers_.load(std::memory_order_relaxed);
  c.wakes = wakes_.load(std::memory_order_relaxed);
  c.waiting_sets = waiting_sets_.load(std::memory_order_relaxed);
  c.timeouts = timeouts_.load(std::memory_order_relaxed);
  c.longest_timeout_ns = longest_timeout_ns_.load(std::memory_order_relaxed);
  c.owner_wakes = owner_wakes_.load(std::memory_order_relaxed);
  c.owner_deaths = owner_deaths_.load(std::memory_order_relaxed);
  return c;
}

void NoteWaitingSet() { waiting_sets_.fetch_add(1, std::memory_order_relaxed); }

void NoteOwnerDied() { owner_deaths_.fetch_add(1, std::memory_order_relaxed); }

void ResetCounters() {
  sleeps_.store(0, std::memory_order_relaxed);
  heavy_barriers_.store(0, std::memory_order_relaxed);
  wakes_.store(0, std::memory_order_relaxed);
  waiting_sets_.store(0, std::memory_order_relaxed);
  timeouts_.store(0, std::memory_order_relaxed);
  longest_timeout_ns_.store(0, std::memory_order_relaxed);
  owner_wakes_.store(0, std::memory_order_relaxed);
  owner_deaths_.store(0, std::memory_order_relaxed);
}

#if defined(__linux__)

Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  CountSleep(timeout_ns);
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000);
    tsp = &ts;
  }
  // Shared (not FUTEX_PRIVATE_FLAG): the waker is another process.
  const long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (r != 0 && errno == ETIMEDOUT) {
    timeouts_.fetch_add(1, std::memory_order_relaxed);
    return Result::kTimeout;
  }
  return Result::kWoken;  // woken, value changed (EAGAIN) or a signal (EINTR)
}

void WakeWord(const uint32_t* word) {
  wakes_.fetch_add(1, std::memory_order_relaxed);
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // the same number on every architecture (asm-generic)
#endif

namespace {
// One slot of futex_waitv's array (struct futex_waitv of <linux/futex.h>, spelled
// out so older headers build too).
struct WaitV {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
constexpr uint32_t kFutex32 = 2;  // FUTEX_32; without FUTEX_PRIVATE_FLAG: shared
std::atomic<bool> waitv_missing{false};
}  // namespace

namespace {
// futex_waitv on n (2 or 3) words; the third, when present, is the owner word.
Result SleepV(const uint32_t* word, uint32_t expected, const uint32_t* also, uint32_t also_expected,
              const uint32_t* owner, uint32_t owner_expected, int64_t timeout_ns) {
  // The one-word sleep does not hear the owner word (nor CLOSED): a caller that chose
  // a long slice because of the owner word (before it learnt futex_waitv is missing)
  // gets at most a liveness slice.
  const int64_t one_word_ns =
      owner != nullptr && (timeout_ns < 0 || timeout_ns > tuning::kLivenessSliceNs)
          ? tuning::kLivenessSliceNs
          : timeout_ns;
  if (waitv_missing.load(std::memory_order_relaxed)) {
    return WaitOnWord(word, expected, one_word_ns);
  }
  CountSleep(timeout_ns);
  WaitV v[3] = {{expected, reinterpret_cast<uintptr_t>(word), kFutex32, 0},
                {also_expected, reinterpret_cast<uintptr_t>(also), kFutex32, 0},
                {owner_expected, reinterpret_cast<uintptr_t>(owner), kFutex32, 0}};
  const unsigned n = owner != nullptr ? 3 : 2;
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ns >= 0) {  // futex_waitv takes an absolute CLOCK_MONOTONIC deadline
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const int64_t ns = ts.tv_nsec + timeout_ns % 1000000000;
    ts.tv_sec += static_cast<time_t>(timeout_ns / 1000000000 + ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    tsp = &ts;
  }
  const long r = syscall(SYS_futex_waitv, v, n, 0, tsp, CLOCK_MONOTONIC);
  const int e = r < 0 ? errno : 0;
  if (r < 0 && e != EAGAIN && e != EINTR && e != ETIMEDOUT) {
    // ENOSYS: kernel < 5.16; EPERM (or ENOSYS) from a seccomp profile that predates the
    // call; anything else it refuses: one word from now on, never a spin on an error.
    waitv_missing.store(true, std::memory_order_relaxed);
    sleeps_.fetch_sub(1, std::memory_order_relaxed);  // counted again by the one-word sleep
    return WaitOnWord(word, expected, one_word_ns);
  }
  if (r < 0 && e == ETIMEDOUT) {
    timeouts_.fetch_add(1, std::memory_order_relaxed);
    return Result::kTimeout;
  }
  // Woken on word r (its index), a value differed (EAGAIN) or a signal (EINTR).
  if (owner != nullptr && r == 2) {
    owner_wakes_.fetch_add(1, std::memory_order_relaxed);
    // A sleep that expected a value without OWNER_DIED may have taken the kernel's one
    // wake at the producer's death: pass it on to the word's other sleepers (the ring's
    // other receivers). One that expected OWNER_DIED already was woken by such a
    // pass-on (or by anyone): passing it on again would make the receivers asleep on a
    // dead word wake each other in a loop.
    if ((owner_expected & layout::kOwnerDied) == 0) WakeWord(owner);
  } else if (owner != nullptr && e == EAGAIN && atomics::LoadRelaxed(owner) != owner_expected) {
    owner_wakes_.fetch_add(1, std::memory_order_relaxed);
  }
  return Result::kWoken;
}
}  // namespace

bool HaveWaitV() { return !waitv_missing.load(std::memory_order_relaxed); }

void SetWaitVMissingForTest(bool missing) {
  waitv_missing.store(missing, std::memory_order_relaxed);
}

Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t* also,
                   uint32_t also_expected, int64_t timeout_ns) {
  return SleepV(word, expected, also, also_expected, nullptr, 0, timeout_ns);
}

Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t* also,
                   uint32_t also_expected, const uint32_t* owner, uint32_t owner_expected,
                   int64_t timeout_ns) {
  return SleepV(word, expected, also, also_expected, owner, owner_expected, timeout_ns);
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
  heavy_barriers_.fetch_add(1, std::memory_order_relaxed);
  const bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
  atomics::FullFence();
  return ok;
}

#elif defined(_WIN32)

namespace {

// One registered view: its extent and the events opened for words in it, by offset.
struct View {
  size_t size = 0;
  std::string name;
  std::map<size_t, HANDLE> events;
};

std::mutex views_mu;
std::map<const uint8_t*, View>& Views() {
  static std::map<const uint8_t*, View> views;  // by base address
  return views;
}

// The named event for `word` when it lies in a registered view (*in_view = true);
// nullptr for private memory (*in_view = false) or when the event cannot be
// created (the sleeper then naps in short steps (tuning::kPollNapMaxNs)).
HANDLE EventFor(const uint32_t* word, bool* in_view) {
  const auto* p = reinterpret_cast<const uint8_t*>(word);
  std::lock_guard<std::mutex> lock(views_mu);
  auto& views = Views();
  auto it = views.upper_bound(p);
  *in_view = false;
  if (it == views.begin()) return nullptr;
  --it;
  if (p >= it->first + it->second.size) return nullptr;
  *in_view = true;
  const size_t offset = static_cast<size_t>(p - it->first);
  HANDLE& h = it->second.events[offset];
  if (h == nullptr) {
    // Auto-reset: a SetEvent with nobody asleep stays signalled until the next
    // wait, so a wake between the sleeper's last look and its wait is not lost.
    const std::string ev = "Local\\" + it->second.name + ":wake:" + std::to_string(offset);
    h = CreateEventA(nullptr, FALSE, FALSE, ev.c_str());
    if (h == nullptr) h = INVALID_HANDLE_VALUE;  // not again for this view
  }
  return h == INVALID_HANDLE_VALUE ? nullptr : h;
}

DWORD Millis(int64_t timeout_ns) {
  if (timeout_ns < 0) return INFINITE;
  const int64_t ms = (timeout_ns + 999'999) / 1'000'000;  // never 0 for a non-zero wait
  return ms >= static_cast<int64_t>(INFINITE) ? INFINITE - 1 : static_cast<DWORD>(ms);
}

// A bounded nap for a word whose event could not be created (resources exhausted).
Result Nap(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  const int64_t step = tuning::kPollNapMaxNs;
  const int64_t nap = timeout_ns >= 0 && timeout_ns < step ? timeout_ns : step;
  if (atomics::LoadAcquire(word) != expected) return Result::kWoken;
  std::this_thread::sleep_for(std::chrono::nanoseconds(nap));
  return nap == timeout_ns ? Result::kTimeout : Result::kWoken;
}

}  // namespace

void RegisterView(const void* base, size_t size, const std::string& name) {
  std::lock_guard<std::mutex> lock(views_mu);
  View& v = Views()[static_cast<const uint8_t*>(base)];
  v.size = size;
  v.name = name;
}

void UnregisterView(const void* base) {
  std::lock_guard<std::mutex> lock(views_mu);
  auto& views = Views();
  auto it = views.find(static_cast<const uint8_t*>(base));
  if (it == views.end()) return;
  for (auto& e : it->second.events) {
    if (e.second != INVALID_HANDLE_VALUE) CloseHandle(e.second);
  }
  views.erase(it);
}

Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  CountSleep(timeout_ns);
  if (atomics::LoadAcquire(word) != expected) return Result::kWoken;
  bool shared = false;
  HANDLE ev = EventFor(word, &shared);
  if (!shared) {
    // Private memory: only threads of this process can store to it.
    uint32_t cmp = expected;
    if (WaitOnAddress(const_cast<uint32_t*>(word), &cmp, sizeof cmp, Millis(timeout_ns))) {
      return Result::kWoken;
    }
    return GetLastError() == ERROR_TIMEOUT ? Result::kTimeout : Result::kWoken;
  }
  if (ev == nullptr) return Nap(word, expected, timeout_ns);
  // A wake that came before this call left the event signalled: no lost wake-up.
  // One that was meant for an earlier sleep may end this one early (spurious; the
  // caller re-checks).
  return WaitForSingleObject(ev, Millis(timeout_ns)) == WAIT_TIMEOUT ? Result::kTimeout
                                                                     : Result::kWoken;
}

void WakeWord(const uint32_t* word) {
  wakes_.fetch_add(1, std::memory_order_relaxed);
  bool shared = false;
  HANDLE ev = EventFor(word, &shared);
  if (ev != nullptr) {
    SetEvent(ev);
  } else if (!shared) {
    WakeByAddressAll(const_cast<uint32_t*>(word));
  }  // else: no event; the sleeper naps in short steps (tuning::kPollNapMaxNs)
}

bool UseMembarrier() { return false; }

bool HeavyBarrier() {
  heavy_barriers_.fetch_add(1, std::memory_order_relaxed);
  atomics::FullFence();
  return false;  // no asymmetric fences on Windows: UseMembarrier() is false
}

#else  // no cross-process address wait: bounded back-off poll

Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  CountSleep(timeout_ns);
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

void WakeWord(const uint32_t*) { wakes_.fetch_add(1, std::memory_order_relaxed); }

bool UseMembarrier() { return false; }

bool HeavyBarrier() {
  heavy_barriers_.fetch_add(1, std::memory_order_relaxed);
  atomics::FullFence();
  return false;  // no membarrier here (and no peer relies on it: UseMembarrier() is false)
}

#endif

#if !defined(__linux__)
// Windows: a wake on the first word's event is never lost (auto-reset events keep
// the signal), and callers wake that word for the second word's changes too.
// Polls return regularly. Either way the first word alone is enough.
Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t*, uint32_t,
                   int64_t timeout_ns) {
  return WaitOnWord(word, expected, timeout_ns);
}
bool HaveWaitV() { return false; }
void SetWaitVMissingForTest(bool) {}
// No robust futexes here: nobody arms or wakes an owner word.
Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t*, uint32_t,
                   const uint32_t*, uint32_t, int64_t timeout_ns) {
  return WaitOnWord(word, expected, timeout_ns);
}
#endif

#if !defined(_WIN32)
void RegisterView(const void*, size_t, const std::string&) {}
void UnregisterView(const void*) {}
#endif

}  // namespace wait
}  // namespace shm
