// The producer's owner word (layout::kProducerOwnerOffset): a robust-futex word
// that the kernel marks, and wakes one sleeper of, when the producer process dies
// in any way (kill -9 included) or execs. See docs/DESIGN.md "Producer death wakes
// the receivers" and docs/PROTOCOL.md.
#pragma once

#include <cstdint>
#include <memory>

namespace shm {
namespace owner {

// Consumers' reading of an owner word value (any thread; never blocks).
enum class State {
  kUnarmed,  // 0: a producer that does not arm it (old, Python, not Linux)
  kArmed,    // a thread id with FUTEX_WAITERS: the producer's death will mark it
  kDied,     // FUTEX_OWNER_DIED set: the arming process died or exec'd (or forked away)
};
State Classify(uint32_t value);

// Arms one owner word for as long as it lives: a small thread registers a robust
// list whose only entry is the word, stores gettid() | FUTEX_WAITERS into it and
// sleeps until the destructor. Linux only; elsewhere (or when set_robust_list or
// the thread cannot be had) nothing is armed and the word stays 0.
class Arm {
 public:
  // Producer, once, after the word's mapping exists (MAP_SHARED) and before the
  // magic is stored or right after; blocks until the word is armed (or not).
  explicit Arm(uint32_t* word);
  // Disarms (the list is emptied and the word set to 0, so a clean exit marks
  // nothing) and joins the thread: afterwards the kernel holds no pointer into
  // the mapping, which may then be unmapped. Blocks for the join.
  ~Arm();
  Arm(const Arm&) = delete;
  Arm& operator=(const Arm&) = delete;

  // Whether the word was armed. Any thread; never blocks.
  bool armed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace owner
}  // namespace shm
