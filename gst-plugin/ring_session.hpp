// RingSession: the consumer side of a ring as shmringsrc uses it, with zero-copy
// in mind. Messages are acquired in ring order and stay in place while buffers
// wrap them; they may be released in any order from any thread, and the ring's
// tail advances to the oldest message still held. The session (and so the
// mapping) lives as long as the element or any buffer still references it.
//
// ByteRingBuffer's consumer state is single-threaded, so every call into it is
// made under mu_, except the blocking WaitReadable in Next(): while the streaming
// thread sleeps there, releases from other threads are parked and the sleeper is
// woken to apply them (the producer may be waiting for exactly that space).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "shm/shm_channel.hpp"

namespace shmring_gst {

class RingSession {
 public:
  // Takes a valid, attached consumer.
  explicit RingSession(std::unique_ptr<shm::ShmConsumer> consumer);
  ~RingSession();
  RingSession(const RingSession&) = delete;
  RingSession& operator=(const RingSession&) = delete;

  // The next message, acquired (call Release(out->end) when done with it), waiting
  // up to timeout_ns (0 = do not wait, shm::kForever = no limit). kOk, kEmpty
  // (timeout 0 and nothing there), kTimeout, kClosed (end of stream, drained),
  // kPeerDead, kReplaced, kCorrupt (error() says where) or kInterrupted (by
  // Interrupt()). Whatever a dead producer finished writing is delivered first.
  // Streaming thread only; blocks.
  shm::Status Next(shm::MessageView* out, int64_t timeout_ns);

  // The message ending at ring index `end` (a MessageView::end from Next) is no
  // longer used. Any thread, any order; never blocks for long.
  void Release(uint32_t end);

  // Bytes of the ring held by messages acquired and not yet released (including
  // those waiting behind an older held one). Any thread; never blocks.
  uint32_t HeldBytes();

  // Makes Next() return kInterrupted now and until ClearInterrupt(). Any thread.
  void Interrupt();
  void ClearInterrupt();

  // Called (from Next, streaming thread) when the producer has waited for space
  // for a whole liveness slice while the oldest held message is still in use
  // downstream: zero-copy buffers are stalling the sender. Once per episode.
  void SetStallCallback(std::function<void()> cb) { on_stall_ = std::move(cb); }

  // The element stopped using the ring: later releases no longer move the tail
  // (a new consumer may own it by then). Any thread.
  void Detach();

  uint32_t capacity() const { return capacity_; }
  uint32_t profile() const { return profile_; }
  const std::string& name() const { return consumer_->name(); }
  uint32_t producer_pid() const;
  // Why the last Next() returned kCorrupt.
  std::string error();

 private:
  struct Held {
    uint32_t end;
    bool released;
  };
  void Track(const shm::MessageView& v);  // mu_ held
  void ReleaseLocked(uint32_t end, bool* need_kick);

  std::unique_ptr<shm::ShmConsumer> consumer_;
  shm::ByteRingBuffer* ring_;
  const uint32_t capacity_;
  const uint32_t profile_;

  std::mutex mu_;
  std::deque<Held> held_;         // acquired messages in ring order (mu_)
  uint32_t released_to_ = 0;      // tail as we last set it (mu_)
  uint32_t acquired_to_ = 0;      // end of the newest acquired message (mu_)
  bool in_wait_ = false;          // streaming thread is in WaitReadable (mu_)
  bool pending_release_ = false;  // a release arrived during the wait (mu_)
  uint32_t pending_release_to_ = 0;
  bool detached_ = false;        // (mu_)
  bool stall_reported_ = false;  // streaming thread
  std::function<void()> on_stall_;

  shm::Interrupter wake_;                 // wakes WaitReadable: unlock or a parked release
  std::atomic<bool> interrupted_{false};  // Interrupt() requested (vs. a release kick)
  std::atomic<int> kicks_in_flight_{0};   // Release() threads inside wake_.Interrupt()
};

}  // namespace shmring_gst
