// Atomic access to the shared header words. Every load and store names its
// memory order; nothing touches a shared word non-atomically.
#pragma once

#include <atomic>
#include <cstdint>
#if defined(_MSC_VER)
#include <intrin.h>  // _mm_pause
#endif

namespace shm {
namespace atomics {

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free,
              "shared header words must be lock-free 4-byte atomics");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free,
              "shared 64-bit header words must be lock-free 8-byte atomics");

#if defined(__GNUC__) || defined(__clang__)
inline uint32_t LoadRelaxed(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline uint32_t LoadAcquire(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void StoreRelaxed(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void StoreRelease(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline uint32_t FetchOrRelaxed(uint32_t* p, uint32_t v) {
  return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}
inline uint32_t FetchAndRelaxed(uint32_t* p, uint32_t v) {
  return __atomic_fetch_and(p, v, __ATOMIC_RELAXED);
}
inline uint32_t FetchAddRelaxed(uint32_t* p, uint32_t v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline uint32_t FetchOrRelease(uint32_t* p, uint32_t v) {
  return __atomic_fetch_or(p, v, __ATOMIC_RELEASE);
}
inline uint32_t FetchOrSeqCst(uint32_t* p, uint32_t v) {
  return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}
inline uint64_t LoadRelaxed64(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void StoreRelaxed64(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline uint64_t LoadAcquire64(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void StoreRelease64(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
// A compiler-only barrier: the light side of an asymmetric fence.
inline void CompilerBarrier() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
#else  // MSVC: std::atomic objects overlaid on the mapping (layout-compatible, asserted above)
template <typename T>
inline std::atomic<T>* A(const T* p) {
  return reinterpret_cast<std::atomic<T>*>(const_cast<T*>(p));
}
inline uint32_t LoadRelaxed(const uint32_t* p) { return A(p)->load(std::memory_order_relaxed); }
inline uint32_t LoadAcquire(const uint32_t* p) { return A(p)->load(std::memory_order_acquire); }
inline void StoreRelaxed(uint32_t* p, uint32_t v) { A(p)->store(v, std::memory_order_relaxed); }
inline void StoreRelease(uint32_t* p, uint32_t v) { A(p)->store(v, std::memory_order_release); }
inline uint32_t FetchOrRelaxed(uint32_t* p, uint32_t v) {
  return A(p)->fetch_or(v, std::memory_order_relaxed);
}
inline uint32_t FetchAndRelaxed(uint32_t* p, uint32_t v) {
  return A(p)->fetch_and(v, std::memory_order_relaxed);
}
inline uint32_t FetchAddRelaxed(uint32_t* p, uint32_t v) {
  return A(p)->fetch_add(v, std::memory_order_relaxed);
}
inline uint32_t FetchOrRelease(uint32_t* p, uint32_t v) {
  return A(p)->fetch_or(v, std::memory_order_release);
}
inline uint32_t FetchOrSeqCst(uint32_t* p, uint32_t v) {
  return A(p)->fetch_or(v, std::memory_order_seq_cst);
}
inline uint64_t LoadRelaxed64(const uint64_t* p) { return A(p)->load(std::memory_order_relaxed); }
inline void StoreRelaxed64(uint64_t* p, uint64_t v) { A(p)->store(v, std::memory_order_relaxed); }
inline uint64_t LoadAcquire64(const uint64_t* p) { return A(p)->load(std::memory_order_acquire); }
inline void StoreRelease64(uint64_t* p, uint64_t v) { A(p)->store(v, std::memory_order_release); }
inline void CompilerBarrier() { std::atomic_signal_fence(std::memory_order_seq_cst); }
#endif

// A spin-wait hint between two polls of a word another process writes (x86 PAUSE,
// ARM YIELD; nothing elsewhere): not a fence, orders nothing.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
  _mm_pause();
#endif
}

// The full (store-load) fence of the symmetric protocol.
inline void FullFence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace atomics
}  // namespace shm
