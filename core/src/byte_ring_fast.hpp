// The producer's fast write (ByteRingBuffer::WriteFast), inline so that both
// ByteRingBuffer::TryWrite and ShmProducer::WriteFor run it without a call: on the
// path of every small message, each call, saved register and spilled argument is
// a store of our own that waits behind the stores to the shared lines (x86 commits
// stores in order). Internal header: core/src only.
#pragma once

#include <cstdint>
#include <cstring>

#include "atomics.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"

namespace shm {
namespace fast {

// WriteFast takes records of at most this many bytes (a cache line).
constexpr uint32_t kFastRecord = 64;

// Writes the payload of a record of `record` bytes (<= kFastRecord) at `rec`: zeroes
// the record's last 8 bytes (its padding must read zero; PROTOCOL.md), then copies
// the `len` payload bytes with a few wide moves inline (no call). The len word
// (the record's first 4 bytes) is the caller's. The zero store comes first and is
// made even when the payload covers those bytes: its address and data are ready at
// once, so it claims the record's line before the copy's loads; skipped for a
// 64-byte record the two-process rate halved (docs/DESIGN.md section 3, "What is
// left").
inline void CopySmall(uint8_t* rec, uint32_t record, const uint8_t* src, uint32_t len) {
  const uint64_t zero = 0;
  std::memcpy(rec + record - 8, &zero, 8);
  // Kept first whatever the caller lets the compiler see: inlined into a loop with a
  // constant `len` (ring_bench's shmring_inline), GCC 12 emitted the copy's first
  // 16-byte store before it, and the rate fell to 0.42x of the minimal ring (0.84x
  // with this barrier; docs/DESIGN.md section 3, "What is left"). A compiler barrier
  // only, no instruction: it fixes the order of the stores the compiler emits, and
  // no memory order changes. The library's own WriteFor and TryWrite compile to the
  // same instructions with or without it.
  atomics::CompilerBarrier();
  uint8_t* dst = rec + layout::kLenSize;
  if (len >= 16) {
    for (uint32_t i = 0; i + 16 < len; i += 16) std::memcpy(dst + i, src + i, 16);
    std::memcpy(dst + len - 16, src + len - 16, 16);  // the last 16, overlapping
  } else if (len >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + len - 8, src + len - 8, 8);
  } else if (len >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + len - 4, src + len - 4, 4);
  } else {
    for (uint32_t i = 0; i < len; ++i) dst[i] = src[i];
  }
}

}  // namespace fast

// Nothing in flight (so reserve_ == head_), nobody seen waiting, a record of at
// most kFastRecord bytes that fits before the end and by the cached tail: the
// record goes straight behind the head and is published at once, with the shared
// stores of Reserve + Commit in their order but no reservation entry, no call and
// few stores of its own. Anything else: kNotWritten, nothing touched (the caller
// takes the general path).
inline ByteRingBuffer::FastWrite ByteRingBuffer::WriteFast(const void* data, uint32_t len,
                                                           bool sync) {
  using namespace layout;
  const uint32_t start = head_;
  const uint32_t record = (kLenSize + len + 7) & ~uint32_t{7};
  if (!(len <= fast::kFastRecord - kLenSize && valid_ && is_producer_ && !reserved_ &&
        !consumer_waiting_seen_ && pending_.empty() && record <= capacity_ - (start & mask_) &&
        record <= capacity_ - (start - tail_cache_))) {
    return FastWrite::kNotWritten;
  }
  uint8_t* const base = base_;  // one load: the stores below may alias members
  uint8_t* at = base + kHeaderSize + (start & mask_);
  fast::CopySmall(at, record, static_cast<const uint8_t*>(data), len);
  std::memcpy(at, &len, 4);  // the len word (little-endian host)
  const uint32_t end = start + record;
  const uint32_t seq = pub_seq_;
  reserve_ = end;
  head_ = end;
  pub_seq_ = seq + 1;
  // order_mark_ (InOrder) is left alone: no reservation was open, and any made
  // later starts at or after `end`, so its answer does not change.
  // PublishHead's stores in its order (see there: last_start relaxed before the
  // head, the head release, then the marks release); no sleep counts to load
  // first (nobody was seen waiting at the last look).
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kLastStartOffset), start);
  atomics::StoreRelease(reinterpret_cast<uint32_t*>(base + kHeadOffset), end);
  atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base + kHeadMarkOffset), Mark(end, seq + 1));
  atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base + kLastMarkOffset), Mark(start, seq));
  if (sync) {
    atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base + kSyncMarkOffset), Mark(start, seq));
  }
  // WakeConsumerIfWaiting's fence and first look: one receiver slot that is not
  // WAITING needs nothing more (and consumer_waiting_seen_ stays false, as there).
  if (light_fences_) {
    atomics::CompilerBarrier();
  } else {
    atomics::FullFence();
  }
  if (max_receivers_ != 1 ||
      (atomics::LoadRelaxed(reinterpret_cast<uint32_t*>(base + kConsumerFlagsOffset)) &
       kConsumerWaiting)) {
    return FastWrite::kWake;
  }
  return FastWrite::kWritten;
}

inline bool ByteRingBuffer::ReadFast(void* out, uint32_t max_len, uint32_t* len_out) {
  using namespace layout;
  const uint32_t pos = read_pos_;
  if (!(valid_ && !is_producer_ && mode_ == kModeLossless && !check_floor_ && !peeked_ &&
        pos == released_)) {
    return false;
  }
  uint32_t head = head_cache_;
  if (head == pos) {
    // Acquire: the record's bytes happen-before our reads below (as NextRecord).
    head = atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(base_ + kHeadOffset));
    head_cache_ = head;
  }
  const uint32_t avail = head - pos;
  // The checks of NextRecord for an ordinary record (anything else: the general
  // path, which says what is wrong): a head within a lap and 8-aligned, a len
  // that is not WRAP or PAD (their high bit is set), a record that neither
  // crosses the end nor passes the head.
  if (avail == 0 || avail > capacity_ || ((head | pos) % kRecordAlign) != 0) return false;
  const uint32_t off = pos & mask_;
  const uint8_t* rec = base_ + kHeaderSize + off;
  uint32_t len;
  std::memcpy(&len, rec, 4);
  if (len > fast::kFastRecord - kLenSize || len > max_len) return false;
  const uint32_t record = (kLenSize + len + 7) & ~uint32_t{7};
  if (record > avail || record > capacity_ - off) return false;
  if (len != 0) std::memcpy(out, rec + kLenSize, len);
  const uint32_t end = pos + record;
  read_pos_ = end;
  ++read_seq_;  // one message read
  *len_out = len;
  // Release's lossless path (LazyRelease): store the tail at once when the batch is
  // full or we caught up with the head we know.
  released_ = end;
  if (end - stored_ >= tail_batch_ || end == head) StoreTail(end);
  return true;
}

namespace fast {

// The fast paths called directly, without the ShmProducer / ShmConsumer layer
// around them (its call, its checks, the consumer's mutex): for in-tree
// diagnostics only (bench/ring_bench's shmring_inline variant). Callers, blocking
// and results are those of the functions they forward to: WriteFast and
// WakeAfterWrite from the producer thread (WakeAfterWrite may make a futex wake
// call; neither blocks), ReadFast from the consumer thread, never blocking, and
// only while no other consumer call of the same ring runs (ShmConsumer's own
// calls included: the caller serialises them).
struct Access {
  using FastWrite = ByteRingBuffer::FastWrite;
  static FastWrite WriteFast(ByteRingBuffer* ring, const void* data, uint32_t len, bool sync) {
    return ring->WriteFast(data, len, sync);
  }
  static Status WakeAfterWrite(ByteRingBuffer* ring) { return ring->WakeAfterWrite(); }
  static bool ReadFast(ByteRingBuffer* ring, void* out, uint32_t max_len, uint32_t* len) {
    return ring->ReadFast(out, max_len, len);
  }
};

}  // namespace fast
}  // namespace shm
