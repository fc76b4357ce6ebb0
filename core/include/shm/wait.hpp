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
// Sleeps while *word == expected AND *also == also_expected, at most timeout_ns:
// a store to either word followed by WakeWord on either word ends the sleep, and
// a store made before the call ends it at once (both values are compared inside
// the kernel, after the sleeper is queued). This is how a sleeper on an index
// word also hears a flag that does not change the index (CLOSED, a detach).
// Linux >= 5.16: futex_waitv. Elsewhere (and on older kernels): WaitOnWord(word)
// alone, so a change of `also` is seen only at the caller's next look (its
// timeout). Spurious wake-ups are possible; callers re-check. Any thread; blocks.
Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t* also,
                   uint32_t also_expected, int64_t timeout_ns);
// The same with a third word, `owner`, at `owner_expected` (the producer's owner
// word as the caller read it: the kernel wakes it when the producer dies). A
// sleep that ends because `owner` was woken or no longer held `owner_expected`
// is counted in Counters::owner_wakes; one woken on `owner` while `owner_expected`
// lacked layout::kOwnerDied wakes its other sleepers (the kernel wakes only one; a
// sleep that expected OWNER_DIED does not pass it on, so sleepers on a dead word do
// not wake each other in a loop). Without futex_waitv: WaitOnWord(word).
// Any thread; blocks.
Result WaitOnWords(const uint32_t* word, uint32_t expected, const uint32_t* also,
                   uint32_t also_expected, const uint32_t* owner, uint32_t owner_expected,
                   int64_t timeout_ns);
// Whether WaitOnWords really sleeps on all its words (Linux futex_waitv, not found
// missing or refused so far): only then does a sleeper hear the owner word. Any
// thread; never blocks.
bool HaveWaitV();
// Test seam: makes WaitOnWords behave as on a kernel without futex_waitv (true)
// or lets it try again (false). Any thread; never blocks.
void SetWaitVMissingForTest(bool missing);
// Wakes every sleeper on `word`, in any process (with WaitOnWords, also those
// whose second word it is). Any thread; never blocks.
void WakeWord(const uint32_t* word);

// Test seam and benchmark aid: process-wide counts of the sleep calls above,
// the heavy barriers issued and the longest timeout a sleep was given (kForever
// counts as the longest). Relaxed atomics, touched only on the sleeping path.
struct Counters {
  uint64_t sleeps = 0;          // WaitOnWord / WaitOnWords calls
  uint64_t heavy_barriers = 0;  // HeavyBarrier calls
  uint64_t wakes = 0;           // WakeWord calls
  uint64_t waiting_sets = 0;    // a side set its WAITING flag (a wait's first sleep)
  uint64_t timeouts = 0;        // sleeps that ended by their timeout (Linux futex paths)
  int64_t longest_timeout_ns = 0;
  uint64_t owner_wakes = 0;   // sleeps ended by the owner word (WaitOnWords' third word)
  uint64_t owner_deaths = 0;  // a consumer saw the owner word newly marked OWNER_DIED
};
// Any thread; never blocks.
Counters GetCounters();
void ResetCounters();
// Counts one setting of a WAITING flag (ByteRingBuffer's waits). Any thread; never blocks.
void NoteWaitingSet();
// Counts one owner word newly seen marked OWNER_DIED by a consumer (which then
// wakes the word's other sleepers and looks at the producer). Any thread; never blocks.
void NoteOwnerDied();

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
