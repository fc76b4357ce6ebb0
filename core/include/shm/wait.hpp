// Sleeping on a shared 32-bit word and the fences around it (the wait protocol
// of docs/DESIGN.md). Linux: futex + membarrier. Windows: a named auto-reset event
// per word of a named ring ("Local\<name>:wake:<offset>", opened by every process
// that maps the ring), WaitOnAddress for private memory. Elsewhere (macOS, BSD):
// bounded back-off poll.
#pragma once

#include <atomic>
#include <cstdint>

namespace shm {

// Lets one thread interrupt another thread's blocking ring call in the same
// process (GStreamer's unlock). Interrupt() is sticky until Clear().
class Interrupter {
 public:
  // Any thread. Wakes the blocked call, which returns Status::kInterrupted; later
  // blocking calls return at once until Clear(). Blocks only until the sleeper is
  // awake, or until another thread calls Clear().
  void Interrupt();
  // Any thread; never blocks.
  void Clear() { flag_.store(false, std::memory_order_seq_cst); }
  // Whether Interrupt() was called and not yet cleared. Any thread; never blocks.
  bool interrupted() const { return flag_.load(std::memory_order_seq_cst); }

  // The waiting thread only (ByteRingBuffer's waits), around its sleep on `word`:
  // BeginSleep counts it in so Interrupt() knows which word to wake; EndSleep
  // counts it out. Never block.
  void BeginSleep(const uint32_t* word);
  void EndSleep();

 private:
  std::atomic<bool> flag_{false};
  std::atomic<int> sleepers_{0};
  std::atomic<const uint32_t*> word_{nullptr};
};

namespace wait {

enum class Result { kWoken, kTimeout };

// Sleeps while *word == expected, at most timeout_ns (kForever = no limit).
// Spurious wake-ups are possible; callers re-check. Any thread; blocks.
Result WaitOnWord(const uint32_t* word, uint32_t expected, int64_t timeout_ns);
// Wakes every sleeper on `word`, in any process. Any thread; never blocks.
void WakeWord(const uint32_t* word);

// Registers this process for asymmetric fences once (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
// and says whether the fast path may use a compiler barrier only. False where
// membarrier is missing or SHMRING_NO_MEMBARRIER=1 is set. Thread-safe; never blocks.
bool UseMembarrier();
// The heavy side of an asymmetric fence: MEMBARRIER_CMD_GLOBAL_EXPEDITED. Returns false
// when the system call failed: then only a local full fence was issued, which does not
// order a light-fenced peer, and the caller must not sleep long. Blocks for the IPI
// round (about 0.4 us).
bool HeavyBarrier();

}  // namespace wait
}  // namespace shm
