#include "cache_size.hpp"

#include <atomic>
#include <cstdio>
#include <string>

#include "tuning.hpp"

namespace shm {
namespace {

std::atomic<uint64_t> g_test_bytes{0};

#if defined(__linux__)
// The size file's bytes; 0 when unreadable.
uint64_t ReadSizeFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return 0;
  char buf[32] = {};
  const size_t got = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  return ParseCacheSize(std::string(buf, got));
}
#endif

uint64_t ReadLargestCache() {
  uint64_t largest = 0;
#if defined(__linux__)
  for (int i = 0; i < 8; ++i) {
    const uint64_t n =
        ReadSizeFile("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    if (n > largest) largest = n;
  }
#endif
  return largest != 0 ? largest : tuning::kAssumedCacheBytes;
}

}  // namespace

uint64_t ParseCacheSize(const std::string& text) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
    if (n > (uint64_t{1} << 32)) return 0;  // no cache is 4 G units large
  }
  if (i == 0) return 0;
  const std::string unit = text.substr(i);
  if (unit.empty() || unit == "\n") return n;
  if (unit == "K" || unit == "K\n") return n << 10;
  if (unit == "M" || unit == "M\n") return n << 20;
  if (unit == "G" || unit == "G\n") return n << 30;
  return 0;
}

uint64_t LargestCacheBytes() {
  // Relaxed: a plain value, no other memory published with it.
  const uint64_t test = g_test_bytes.load(std::memory_order_relaxed);
  if (test != 0) return test;
  static const uint64_t bytes = ReadLargestCache();  // thread-safe once
  return bytes;
}

void SetLargestCacheBytesForTest(uint64_t bytes) {
  g_test_bytes.store(bytes, std::memory_order_relaxed);
}

}  // namespace shm
