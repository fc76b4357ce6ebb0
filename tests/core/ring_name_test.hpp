// The fixture of the core tests that make named rings: unique names, and whatever
// is left under them removed when the test ends.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shm/shared_memory.hpp"
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
  void TearDown() override {
    for (const std::string& n : names_) shm::SharedMemory::Unlink(n, nullptr);
  }

 private:
  std::string tag_;
  std::vector<std::string> names_;
};

}  // namespace shmtest
