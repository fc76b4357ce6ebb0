// A call that is expected to block, run on a thread of its own, and whether a
// ring's producer or consumer is asleep in a wait (its WAITING flag): the set-up
// of the core tests that make one side wait and then act from the test thread.
#pragma once

#include <functional>
#include <thread>
#include <utility>

#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"

namespace shmtest {

// Runs `call` on a new thread at once; Join() waits for it to return and gives its
// status. Join before the object goes (a joinable thread left behind terminates).
class BlockingCall {
 public:
  explicit BlockingCall(std::function<shm::Status()> call)
      : thread_([this, call = std::move(call)] { status_ = call(); }) {}
  shm::Status Join() {
    thread_.join();
    return status_;
  }

 private:
  shm::Status status_ = shm::Status::kInvalid;  // written by the thread, read after join
  std::thread thread_;
};

// Whether the producer / consumer has set its WAITING flag (it sleeps, or is about to).
inline bool Asleep(shm::ShmProducer& p) {
  return (p.ring()->ProducerFlags() & shm::layout::kProducerWaiting) != 0;
}
inline bool Asleep(shm::ShmConsumer& c) {
  return (c.ring()->ConsumerFlags() & shm::layout::kConsumerWaiting) != 0;
}

// Polls until `end` sleeps in a wait; false after the hang guard of WaitUntil.
template <class End>
bool WaitUntilAsleep(End& end) {
  return WaitUntil([&] { return Asleep(end); });
}

}  // namespace shmtest
