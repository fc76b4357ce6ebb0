#include "prefault.hpp"

#include <cstdint>

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace shm {

Prefault PrefaultForWrite(void* addr, std::size_t len) {
  if (addr == nullptr || len == 0) return Prefault::kNone;
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack the name
#endif
  // Huge pages where the tmpfs allows them: fewer TLB entries for a ring that is
  // walked end to end. Ignored (EINVAL) where it does not apply.
  if (len >= (std::size_t{2} << 20)) (void)madvise(addr, len, MADV_HUGEPAGE);
  if (madvise(addr, len, MADV_POPULATE_WRITE) == 0) return Prefault::kPopulated;
#endif
#ifdef _WIN32
  const std::size_t page = 4096;
#else
  const long ps = sysconf(_SC_PAGESIZE);
  const std::size_t page = ps > 0 ? static_cast<std::size_t>(ps) : 4096;
#endif
  volatile uint8_t* p = static_cast<volatile uint8_t*>(addr);
  for (std::size_t i = 0; i < len; i += page) p[i] = p[i];  // a write faults the page in
  return Prefault::kTouched;
}

}  // namespace shm
