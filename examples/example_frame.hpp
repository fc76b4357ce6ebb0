// The frame format the two C++ examples agree on: a 16-byte prefix (u64 frame
// number, u64 FNV-1a of the pixels, host byte order) followed by the pixels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace example {

constexpr uint32_t kPrefixSize = 16;

inline uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace example
