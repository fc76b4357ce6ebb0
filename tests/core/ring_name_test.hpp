// The fixture of the core tests that make named rings: unique names, the ends a
// test opens on them kept until it ends, and whatever is left under the names
// removed when the test ends.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "vectors.hpp"

namespace shmtest {

// A hang guard for waits that must end (30 s).
constexpr int64_t kGuardNs = 30'000'000'000;

class RingNameTest : public ::testing::Test {
 protected:
  explicit RingNameTest(std::string tag) : tag_(std::move(tag)) {}
  // A fresh ring name ("<tag>-..."), removed (if it still exists) in TearDown.
  std::string Name() {
    names_.push_back(UniqueName(tag_));
    return names_.back();
  }
  // A producer of a fresh name, kept until the test ends. It may have failed to
  // open: check AllOpen() before using it.
  shm::ShmProducer& Producer(const shm::ProducerOptions& options) {
    producers_.push_back(std::make_unique<shm::ShmProducer>(Name(), options));
    return *producers_.back();
  }
  shm::ShmProducer& Producer(uint32_t capacity) {
    shm::ProducerOptions o;
    o.capacity = capacity;
    return Producer(o);
  }
  // A consumer of the newest Producer()'s ring, kept until the test ends (closed
  // before the producers). It may have failed to open: check AllOpen().
  shm::ShmConsumer& Consumer(const shm::ConsumerOptions& options = {}) {
    consumers_.push_back(std::make_unique<shm::ShmConsumer>(producers_.back()->name(), options));
    return *consumers_.back();
  }
  // Success when every end Producer() and Consumer() opened is valid; otherwise
  // the errors of those that are not.
  ::testing::AssertionResult AllOpen() const {
    std::string errors;
    for (const auto& p : producers_) {
      if (!p->IsValid()) errors += "\nproducer " + p->name() + ": " + p->error();
    }
    for (const auto& c : consumers_) {
      if (!c->IsValid()) errors += "\nconsumer " + c->name() + ": " + c->error();
    }
    if (errors.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "not open:" << errors;
  }
  void TearDown() override {
    while (!consumers_.empty()) consumers_.pop_back();
    while (!producers_.empty()) producers_.pop_back();
    for (const std::string& n : names_) shm::SharedMemory::Unlink(n, nullptr);
  }

 private:
  std::string tag_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<shm::ShmProducer>> producers_;
  std::vector<std::unique_ptr<shm::ShmConsumer>> consumers_;
};

}  // namespace shmtest
