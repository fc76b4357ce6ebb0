#include "cache_size.hpp"

#include <atomic>
#include <cstdio>
#include <string>

#include "tuning.hpp"

namespace shm {
namespace {

std::atomic<uint64_t> g_test_bytes{0};

#if defined(__linux__)
// "32768K", "1M", "512" (bytes) -> bytes; 0 when unreadable.
uint64_t ReadSizeFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return 0;
  unsigned long long n = 0;
  char unit = 0;
  const int got = std::fscanf(f, "%llu%c", &n, &unit);
  std::fclose(f);
  if (got < 1 || n > (uint64_t{1} << 32)) return 0;  // no cache is 4 G units large
  if (unit == 'K') return n << 10;
  if (unit == 'M') return n << 20;
  if (unit == 'G') return n << 30;
  return n;
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
