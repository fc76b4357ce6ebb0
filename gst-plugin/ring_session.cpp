#include "ring_session.hpp"

#include <chrono>
#include <thread>

#include "shm/layout.hpp"

namespace shmring_gst {
namespace {

using Clock = std::chrono::steady_clock;

// How often a waiting reader checks that the producer is alive and still owns
// the name (a crash cannot wake it). Idle cost: one wake-up per slice.
constexpr int64_t kLivenessSliceNs = 200'000'000;

int64_t ElapsedNs(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
}

}  // namespace

RingSession::RingSession(std::unique_ptr<shm::ShmConsumer> consumer)
    : consumer_(std::move(consumer)),
      ring_(consumer_->ring()),
      capacity_(consumer_->capacity()),
      profile_(consumer_->profile()) {
  released_to_ = ring_->LoadTail();
  acquired_to_ = released_to_;
}

RingSession::~RingSession() = default;

uint32_t RingSession::producer_pid() const { return ring_->ProducerPid(); }

std::string RingSession::error() {
  std::lock_guard<std::mutex> lock(mu_);
  return ring_->error();
}

shm::Status RingSession::Next(shm::MessageView* out, int64_t timeout_ns) {
  const auto start = Clock::now();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_release_) {
        pending_release_ = false;
        if (!detached_) ring_->ReleaseTo(pending_release_to_);
      }
      if (interrupted_.load()) return shm::Status::kInterrupted;
      const shm::Status s = ring_->Acquire(out);
      if (s == shm::Status::kOk) {
        Track(*out);
        return s;
      }
      if (s != shm::Status::kEmpty) return s;  // kClosed, kCorrupt
      if (timeout_ns == 0) return shm::Status::kEmpty;
      in_wait_ = true;
    }
    int64_t slice = kLivenessSliceNs;
    if (timeout_ns >= 0) {
      const int64_t left = timeout_ns - ElapsedNs(start);
      slice = left < slice ? (left > 0 ? left : 0) : slice;
    }
    // The only ring call made without mu_: no other thread touches the ring
    // while in_wait_ is set (Release parks and kicks instead).
    const shm::Status s = ring_->WaitReadable(slice, &wake_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_wait_ = false;
    }
    switch (s) {
      case shm::Status::kInterrupted:
        if (interrupted_.load()) return s;
        // A release kick. Interrupter::Interrupt() keeps waking while it sees a
        // sleeper, so clear only once every kicker has returned (they return as
        // soon as we are out of the wait). A kick after the Clear parked its
        // release first, which the top of the loop applies; an Interrupt() sets
        // interrupted_ first, which the top of the loop sees.
        while (kicks_in_flight_.load() != 0) std::this_thread::yield();
        wake_.Clear();
        continue;
      case shm::Status::kTimeout: {
        std::unique_lock<std::mutex> lock(mu_);
        const bool stalled = !held_.empty() && !held_.front().released &&
                             (ring_->ProducerFlags() & shm::layout::kProducerWaiting) != 0;
        if (!stalled) stall_reported_ = false;
        if (stalled && !stall_reported_ && on_stall_) {
          stall_reported_ = true;
          lock.unlock();
          on_stall_();
          lock.lock();
        }
        const shm::Status peer = consumer_->CheckProducer();
        if (peer == shm::Status::kPeerDead || peer == shm::Status::kReplaced) {
          const shm::Status a = ring_->Acquire(out);
          if (a == shm::Status::kOk) {
            Track(*out);
            return a;
          }
          return a == shm::Status::kEmpty ? peer : a;
        }
        if (timeout_ns >= 0 && ElapsedNs(start) >= timeout_ns) return shm::Status::kTimeout;
        continue;
      }
      default:
        continue;  // kOk, kClosed, kCorrupt: Acquire at the top reports it
    }
  }
}

void RingSession::Track(const shm::MessageView& v) {
  // With nothing held, the tail may have moved past a WRAP marker on its own:
  // count held bytes from this record's start.
  if (held_.empty()) {
    released_to_ = v.end - static_cast<uint32_t>(shm::layout::RecordSize(v.len));
  }
  held_.push_back(Held{v.end, false});
  acquired_to_ = v.end;
}

void RingSession::ReleaseLocked(uint32_t end, bool* need_kick) {
  for (Held& h : held_) {
    if (h.end == end && !h.released) {
      h.released = true;
      break;
    }
  }
  bool advanced = false;
  uint32_t to = released_to_;
  while (!held_.empty() && held_.front().released) {
    to = held_.front().end;
    held_.pop_front();
    advanced = true;
  }
  if (!advanced) return;
  released_to_ = to;
  if (detached_) return;
  if (in_wait_) {
    pending_release_ = true;
    pending_release_to_ = to;
    *need_kick = true;
  } else {
    ring_->ReleaseTo(to);
  }
}

void RingSession::Release(uint32_t end) {
  bool kick = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReleaseLocked(end, &kick);
  }
  if (kick) {
    kicks_in_flight_.fetch_add(1);
    wake_.Interrupt();
    kicks_in_flight_.fetch_sub(1);
  }
}

uint32_t RingSession::HeldBytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return acquired_to_ - released_to_;
}

void RingSession::Interrupt() {
  interrupted_.store(true);
  wake_.Interrupt();
}

void RingSession::ClearInterrupt() {
  interrupted_.store(false);
  wake_.Clear();
}

void RingSession::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  detached_ = true;
}

}  // namespace shmring_gst
