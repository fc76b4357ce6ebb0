// Test seams: points in the core where a test compiled with SHMRING_TEST_SEAMS can run
// code of its own (the other side's steps of an interleaving, driven from one thread).
// In every other build SHMRING_SEAM expands to nothing: no cost, no symbol. Only a test
// executable that compiles the core source it needs with -DSHMRING_TEST_SEAMS sees the
// hooks (tests/core/meson.build, core_wake_order, core_handover_window).
#pragma once

#ifdef SHMRING_TEST_SEAMS
namespace shm::test_seams {
// Producer, WakeConsumerIfWaiting: after the head store (and marks), before the
// wake decision. nullptr = none.
extern void (*before_wake_check)();
// Consumer, StoreTail: right after the tail store, before the wake decision about a
// producer waiting for space. nullptr = none.
extern void (*after_tail_store)();
// Consumer, ShmConsumer::TryOpen: the segment is open and its header validated,
// no receiver slot claimed yet. nullptr = none.
extern void (*before_claim)();
}  // namespace shm::test_seams
#define SHMRING_SEAM(name)                                             \
  do {                                                                 \
    if (::shm::test_seams::name != nullptr) ::shm::test_seams::name(); \
  } while (0)
#else
#define SHMRING_SEAM(name) \
  do {                     \
  } while (0)
#endif
