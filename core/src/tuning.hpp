// Every tuning value of the core, in one place. None of them is part of the
// protocol: each is a trade between latency, idle cost and patience, argued in
// docs/DESIGN.md. python/shmring/_tuning.py holds the same values under the
// same names (SPIN_POLLS, LIVENESS_SLICE_S, ...); a test checks they are equal.
#pragma once

#include <cstdint>

namespace shm {
namespace tuning {

// On a one-receiver ring, records of at least this many bytes go at offset 0 of
// the next lap, behind a WRAP marker, when the front of the ring is already free
// for it (the receiver keeps up): big messages then reuse two or three cache-warm
// places instead of walking the whole ring (DESIGN.md "Where a large record
// goes"). Below it the extra look at the receiver's position and the marker would
// cost more than the cache saves.
constexpr uint32_t kEarlyWrapMinRecord = 64u << 10;

// How many places such records cycle through (a record restarts at the front once
// it is that many records into the lap and the front has room for it): three while
// three records fit in the CPU's largest cache divided by the share below, two
// above. Three places: the sender never waits for a zero-copy receiver still holding
// the two records before. Two: the record after a restart waits for the receiver
// there, but fewer cache lines are in play. Which fill a reservation has is the
// caller's hint (shm::FillHint). Measured in DESIGN.md "Where a large record goes".
//
// Painted in place (the sink's buffer pool: the source writes straight into the
// ring): nothing but the places competes for the cache, so three places while three
// records fit in all of it (1080p BGR, 6.2 MB, on a 32 MiB L3: three).
constexpr uint32_t kThreePlacesCacheShareInPlace = 1;  // three records <= cache / this
// Copied in (Write, WriteFor, the sink's render copy): the source's own buffers
// (videotestsrc: a cached frame and two pool buffers) share the cache with the
// places, and two places were faster in forced copy from 2.76 MB records up
// (1280x720 BGR; 2.36 and 1.56 MB were ties, 0.92 MB faster with three) on a
// 32 MiB L3: three places only while three records fit in a fifth of the cache
// (records up to 2.2 MB there). Above it a copied record goes back to the front as
// soon as the front is free (a first fit: one place while the receiver lets each
// record go before the next, two while it holds the one before).
constexpr uint32_t kThreePlacesCacheShareCopied = 5;  // three records <= cache / this
// The cache size assumed where the machine's cannot be read (cache_size.hpp).
constexpr uint64_t kAssumedCacheBytes = 16u << 20;

// Polls of the peer's index before a side sets WAITING and sleeps: a message a
// few microseconds away is cheaper to spin for than to sleep and be woken.
constexpr int kSpinPolls = 256;

// How often a waiting side probes its peer's liveness (one F_OFD_GETLK on the
// peer's lock byte; when the producer is gone, the name's generation too) when
// nothing wakes it at the peer's death: a producer waiting for space, a consumer
// whose producer did not arm its owner word (kArmedLivenessSliceNs otherwise), a
// sleep that cannot include the owner word (no futex_waitv). There it is the
// longest single sleep, and bounds the time to notice a crash (0.5 s) and the idle
// wake-ups (2 per second); see DESIGN.md "wait protocol".
constexpr int64_t kLivenessSliceNs = 500'000'000;

// The liveness slice of a consumer whose producer armed its owner word (a
// robust-futex word the kernel marks and wakes at the producer's death): death is
// then an event, and the slice only a safety net (a hostile or broken producer, an
// unforeseen kernel path). 5 s: an idle consumer wakes 0.2 times a second for it.
constexpr int64_t kArmedLivenessSliceNs = 5'000'000'000;

// After the owner word says the producer died while its lock byte is still held
// (the kernel marks the word before it releases the dying process's files, or a
// forked child holds the ring), the consumer looks again after this long, doubling
// up to kLivenessSliceNs.
constexpr int64_t kOwnerDiedLookNs = 1'000'000;

// Longest sleep when the peer relies on our membarrier and it failed (seccomp, a
// kernel without it): the peer's wake check is then unordered, so we poll.
constexpr int64_t kUnfencedNapNs = 1'000'000;

// A segment without a magic this many seconds older than its creation is the
// debris of a creator that died mid-way, not a creation in progress.
constexpr double kAbandonedAfterS = 5.0;

// How often a creator looks again at a name another creator is still setting
// up, and how long it pauses between looks.
constexpr int kCreateAttempts = 20;
constexpr int64_t kCreateRetryNs = 50'000'000;

// Longest pause between two looks of a consumer waiting for a ring to appear
// (it starts at 1 ms and doubles up to this).
constexpr int64_t kOpenPollMaxNs = 20'000'000;
constexpr int64_t kOpenPollMinNs = 1'000'000;

// C++ only. Where no address-wait primitive exists (not Linux), a sleeper polls
// the word, backing off from kPollNapMinNs to kPollNapMaxNs, and returns to its
// caller at least every kPollReturnNs so interrupts and peers are looked at.
constexpr int64_t kPollNapMinNs = 50'000;
constexpr int64_t kPollNapMaxNs = 2'000'000;
constexpr int64_t kPollReturnNs = 20'000'000;

// C++ only. How often Interrupter::Interrupt() wakes a sleeper's word again
// until the sleeper has left its wait.
constexpr int64_t kInterruptRewakeNs = 50'000;

}  // namespace tuning
}  // namespace shm
