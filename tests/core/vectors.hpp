// Loads the golden vectors of tests/vectors/ (hex text, '#' comments).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shmtest {

// Bytes of vector `file` (e.g. "v1_empty_cap64.hex") from $SHMRING_VECTORS.
// Fails the calling test (ADD_FAILURE) and returns {} when it cannot be read.
std::vector<uint8_t> LoadVector(const std::string& file);

// Unique ring name for this test process: prefix + pid + counter.
std::string UniqueName(const std::string& prefix);

}  // namespace shmtest
