// Faulting a new ring's pages in once, when the producer creates it, so the first
// lap of writes does not take a page fault (and a zeroing) per 4 KiB page.
#pragma once

#include <cstddef>

namespace shm {

// How PrefaultForWrite did it.
enum class Prefault { kPopulated, kTouched, kNone };

// Asks for transparent huge pages on [addr, addr + len) where the system offers
// them for shared memory (Linux: MADV_HUGEPAGE; takes effect only when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is advise/always or the tmpfs is
// mounted with huge=), then makes every page present and writable:
// madvise(MADV_POPULATE_WRITE) (Linux 5.14+), else one write per page of the byte
// already there. Only for memory nobody else uses yet (the bytes must be zero or
// stable). Any thread; blocks while the pages are allocated.
Prefault PrefaultForWrite(void* addr, std::size_t len);

}  // namespace shm
