// A buffer of exactly `size` bytes in its own mapping, with a PROT_NONE page on both
// sides: the fuzz targets put segments and payloads in one so that any read or write
// outside them faults (AddressSanitizer does not watch mmap'd memory).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace shmfuzz {

class GuardedMapping {
 public:
  // The buffer starts right after the leading guard page (`at_end` false) or ends
  // right before the trailing one (`at_end` true); the other side has the slack of
  // the last page. Aborts if the mapping cannot be made. Zero-filled.
  GuardedMapping(size_t size, bool at_end) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t body = size == 0 ? page : (size + page - 1) / page * page;
    total_ = body + 2 * page;
    void* m = mmap(nullptr, total_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(m);
    if (mprotect(base_ + page, body, PROT_READ | PROT_WRITE) != 0) std::abort();
    data_ = at_end ? base_ + page + body - size : base_ + page;
  }
  ~GuardedMapping() { munmap(base_, total_); }
  GuardedMapping(const GuardedMapping&) = delete;
  GuardedMapping& operator=(const GuardedMapping&) = delete;

  uint8_t* data() const { return data_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t total_ = 0;
};

// Reads the fuzz input front to back; past its end every value is 0 and done() is true.
class Script {
 public:
  Script(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool done() const { return n_ == 0; }
  size_t left() const { return n_; }
  // Copies up to `k` bytes to `out`; returns how many it copied.
  size_t Take(uint8_t* out, size_t k) {
    const size_t m = k < n_ ? k : n_;
    for (size_t i = 0; i < m; ++i) out[i] = p_[i];
    p_ += m;
    n_ -= m;
    return m;
  }
  uint8_t U8() {
    uint8_t v = 0;
    Take(&v, 1);
    return v;
  }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return U16() | (static_cast<uint32_t>(U16()) << 16); }

 private:
  const uint8_t* p_;
  size_t n_;
};

}  // namespace shmfuzz
