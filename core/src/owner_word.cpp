#include "owner_word.hpp"

#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include "atomics.hpp"
#include "shm/layout.hpp"

#if defined(__linux__)
#include <linux/futex.h>  // struct robust_list_head, FUTEX_WAITERS, FUTEX_OWNER_DIED
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace shm {
namespace owner {

State Classify(uint32_t value) {
  if (value == 0) return State::kUnarmed;
  if (value & layout::kOwnerDied) return State::kDied;
  return State::kArmed;
}

#if defined(__linux__)

static_assert(layout::kOwnerDied == FUTEX_OWNER_DIED && layout::kOwnerWaiters == FUTEX_WAITERS &&
                  layout::kOwnerTidMask == FUTEX_TID_MASK,
              "the owner word's bits are the kernel's robust-futex bits");

// The robust list lives here (heap, not the thread's stack) and is registered by
// the thread below for itself only: that thread runs nothing but this code (no
// robust pthread mutex), so replacing glibc's list for it loses nothing; it puts
// glibc's list back before it returns.
struct Arm::Impl {
  uint32_t* word = nullptr;
  pid_t pid = 0;  // the arming process: a forked child has no thread to stop
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  bool armed = false;
  bool stop = false;
  struct robust_list_head head {};
  struct robust_list entry {};

  void Run() {
    struct robust_list_head* old_head = nullptr;
    size_t old_len = 0;
    bool ok = syscall(SYS_get_robust_list, 0, &old_head, &old_len) == 0;
    if (ok) {
      // A list of one entry: head -> entry -> head (the kernel stops when it is back
      // at the head). The word is at entry + futex_offset: aligned (u32 at a multiple
      // of 4 in a MAP_SHARED mapping, as the kernel's handle_futex_death requires).
      entry.next = &head.list;
      head.list.next = &entry;
      head.futex_offset = reinterpret_cast<intptr_t>(word) - reinterpret_cast<intptr_t>(&entry);
      head.list_op_pending = nullptr;
      ok = syscall(SYS_set_robust_list, &head, sizeof head) == 0;
    }
    if (ok) {
      // At this thread's exit (the process dies, or execs) the kernel finds its own
      // TID in the word, stores FUTEX_WAITERS | FUTEX_OWNER_DIED and, WAITERS being
      // set, wakes one shared-futex sleeper on the word.
      const uint32_t tid = static_cast<uint32_t>(syscall(SYS_gettid)) & FUTEX_TID_MASK;
      atomics::StoreRelease(word, tid | FUTEX_WAITERS);
    }
    std::unique_lock<std::mutex> lock(mu);
    ready = true;
    armed = ok;
    cv.notify_all();
    cv.wait(lock, [this] { return stop; });
    if (ok) {
      // Clean close: the word to 0 first (not armed: a death from here on finds no
      // thread id of ours in it and marks nothing, and consumers use ordinary
      // slices), then glibc's list back. CLOSED, stored before, is the end of stream.
      atomics::StoreRelease(word, 0);
      syscall(SYS_set_robust_list, old_head, old_len);
    }
  }
};

Arm::Arm(uint32_t* word) : impl_(new Impl) {
  impl_->word = word;
  impl_->pid = getpid();
  try {
    impl_->thread = std::thread([p = impl_.get()] { p->Run(); });
  } catch (const std::system_error&) {
    return;  // no thread: the word stays 0, consumers keep their liveness slices
  }
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->ready; });
}

Arm::~Arm() {
  if (!impl_->thread.joinable()) return;
  if (getpid() != impl_->pid) {
    // A forked child: the thread (and the word) belong to the parent, whose copy
    // of this memory the thread uses. Neither joined nor touched: left as it is.
    (void)impl_.release();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

bool Arm::armed() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->armed;
}

#else  // no robust futexes: nothing armed

struct Arm::Impl {};
Arm::Arm(uint32_t*) : impl_(new Impl) {}
Arm::~Arm() = default;
bool Arm::armed() const { return false; }

#endif

}  // namespace owner
}  // namespace shm
