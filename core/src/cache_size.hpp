// How much the CPU's largest cache holds: a producer decides by it how many places
// its large records cycle through (ByteRingBuffer::RestartLapEarly). Not part of
// the protocol.
#pragma once

#include <cstdint>
#include <string>

namespace shm {

// Bytes of the largest cache of CPU 0 as the kernel describes it
// (/sys/devices/system/cpu/cpu0/cache/index*/size; glibc's sysconf is not used: in
// some VMs it reports the host's whole L3, 320 MiB on the 32 MiB machine the
// benchmarks ran on), read once per process; tuning::kAssumedCacheBytes where it
// cannot be read (not Linux, no sysfs). Any thread; does not block (the first call
// reads a few small files).
uint64_t LargestCacheBytes();

// The bytes a sysfs cache `size` file's text says ("32768K", "1M", "512"); 0 for
// anything else (empty, not a number, an absurd one). Any thread; never blocks.
uint64_t ParseCacheSize(const std::string& text);

// Tests only: rings constructed after this call use `bytes` instead (0: the
// machine's value again). Any thread.
void SetLargestCacheBytesForTest(uint64_t bytes);

}  // namespace shm
