#include "shm/byte_ring_buffer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>

#include "atomics.hpp"
#include "byte_ring_fast.hpp"
#include "cache_size.hpp"
#include "shm/process.hpp"
#include "test_seams.hpp"
#include "tuning.hpp"

// Keeps a slow path out of the fast path that calls it, so the fast path needs no
// stack frame.
#if defined(__GNUC__) || defined(__clang__)
#define SHM_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SHM_NOINLINE __declspec(noinline)
#else
#define SHM_NOINLINE
#endif

namespace shm {
namespace {

using namespace layout;

using tuning::kLivenessSliceNs;
using tuning::kSpinPolls;
using tuning::kUnfencedNapNs;

// A sleep of at most `cap`; `left` may be kForever.
int64_t CapNap(int64_t left, int64_t cap) { return (left < 0 || left > cap) ? cap : left; }

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // little-endian host (checked below)
}

void StoreU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

static_assert(sizeof(uint32_t) == 4, "u32");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "layout v1 is little-endian; this host is not"
#endif

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Remaining time of a deadline-based wait; kForever stays kForever.
int64_t Remaining(int64_t deadline, int64_t timeout_ns) {
  if (timeout_ns < 0) return kForever;
  const int64_t left = deadline - NowNs();
  return left > 0 ? left : 0;
}

// A random non-zero generation for a ring a producer view initializes itself.
uint64_t RandomGeneration() {
  std::random_device rd;
  uint64_t g = (uint64_t{rd()} << 32) ^ rd();
  g ^= static_cast<uint64_t>(NowNs());
  return g == 0 ? 1 : g;
}

// Largest valid capacity that fits `total_size` bytes with the header; 0 if none.
uint32_t LargestCapacityFor(uint64_t total_size) {
  if (total_size < uint64_t{kHeaderSize} + kMinCapacity) return 0;
  uint64_t c = kMinCapacity;
  while (c * 2 <= total_size - kHeaderSize && c * 2 <= kMaxCapacity) c *= 2;
  return static_cast<uint32_t>(c);
}

}  // namespace

std::string ByteRingBuffer::ValidateSegment(const void* base, uint64_t segment_size,
                                            uint32_t* capacity_out, bool* uninitialized) {
  if (uninitialized != nullptr) *uninitialized = false;
  if (segment_size % kRecordAlign != 0) {
    return "segment size " + std::to_string(segment_size) +
           " is not a multiple of 8: not a shmring segment";
  }
  return ValidateHeader(base, segment_size, capacity_out, uninitialized);
}

std::string ByteRingBuffer::ValidateHeader(const void* base_ptr, uint64_t total_size,
                                           uint32_t* capacity_out, bool* uninitialized) {
  if (uninitialized != nullptr) *uninitialized = false;
  const auto* base = static_cast<const uint8_t*>(base_ptr);
  if (base == nullptr) return "segment is not mapped";
  if (total_size < kIdentSize) {
    return "segment size " + std::to_string(total_size) + " is smaller than the " +
           std::to_string(kHeaderSize) + "-byte header";
  }
  const uint32_t magic =
      atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(base + kMagicOffset));
  if (total_size < kHeaderSize && magic == 0) {  // a magic (ours or not) says more
    return "segment size " + std::to_string(total_size) + " is smaller than the " +
           std::to_string(kHeaderSize) + "-byte header";
  }
  if (magic == 0) {
    if (uninitialized != nullptr) *uninitialized = true;
    return "magic is 0: the segment is not initialized yet";
  }
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", magic);
    return std::string("magic is ") + hex + ", not 'SRNG': not a shmring segment";
  }
  uint16_t version, header_size;
  std::memcpy(&version, base + kVersionOffset, 2);
  std::memcpy(&header_size, base + kHeaderSizeOffset, 2);
  if (version != kVersion) {
    return "version is " + std::to_string(version) + "; this build reads version " +
           std::to_string(kVersion);
  }
  if (total_size < kHeaderSize) {
    return "segment size " + std::to_string(total_size) + " is smaller than the " +
           std::to_string(kHeaderSize) + "-byte header";
  }
  if (header_size != kHeaderSize) {
    return "header_size is " + std::to_string(header_size) + ", expected " +
           std::to_string(kHeaderSize);
  }
  const uint32_t max_receivers = LoadU32(base + kMaxReceiversOffset);
  if (max_receivers < 1 || max_receivers > kMaxReceiversLimit) {
    return "max_receivers is " + std::to_string(max_receivers) + ", not between 1 and " +
           std::to_string(kMaxReceiversLimit);
  }
  const uint32_t capacity = LoadU32(base + kCapacityOffset);
  if (!IsValidCapacity(capacity)) {
    return "capacity " + std::to_string(capacity) + " is not a power of two between 64 and 2^31";
  }
  if (uint64_t{kHeaderSize} + capacity > total_size) {
    return "capacity " + std::to_string(capacity) + " does not fit the segment size " +
           std::to_string(total_size);
  }
  if (capacity_out != nullptr) *capacity_out = capacity;
  return "";
}

std::string ByteRingBuffer::Initialize(void* base_ptr, uint64_t total_size, uint32_t capacity,
                                       uint32_t profile, uint64_t generation, uint32_t start_index,
                                       uint32_t producer_pid, uint32_t max_receivers) {
  auto* base = static_cast<uint8_t*>(base_ptr);
  if (!IsValidCapacity(capacity)) {
    return "capacity " + std::to_string(capacity) + " is not a power of two between 64 and 2^31";
  }
  if (uint64_t{kHeaderSize} + capacity > total_size) {
    return "capacity " + std::to_string(capacity) + " does not fit the segment size " +
           std::to_string(total_size);
  }
  if (start_index % kRecordAlign != 0) return "start_index must be a multiple of 8";
  if (max_receivers < 1 || max_receivers > kMaxReceiversLimit) {
    return "max_receivers " + std::to_string(max_receivers) + " is not between 1 and " +
           std::to_string(kMaxReceiversLimit);
  }
  auto* magic = reinterpret_cast<uint32_t*>(base + kMagicOffset);
  atomics::StoreRelaxed(magic, 0);
  std::memset(base, 0, kMagicOffset);
  std::memset(base + kVersionOffset, 0, kHeaderSize - kVersionOffset);
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kHeadOffset), start_index);
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kLastStartOffset), start_index);
  // No message yet: both marks name the start with sequence number 0.
  atomics::StoreRelaxed64(reinterpret_cast<uint64_t*>(base + kHeadMarkOffset),
                          Mark(start_index, 0));
  atomics::StoreRelaxed64(reinterpret_cast<uint64_t*>(base + kSyncMarkOffset),
                          Mark(start_index, 0));
  atomics::StoreRelaxed64(reinterpret_cast<uint64_t*>(base + kLastMarkOffset),
                          Mark(start_index, 0));
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kFloorOffset), start_index);
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kTailOffset), start_index);
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kCapacityOffset), capacity);
  const uint16_t version = kVersion, header_size = kHeaderSize;
  std::memcpy(base + kVersionOffset, &version, 2);
  std::memcpy(base + kHeaderSizeOffset, &header_size, 2);
  std::memcpy(base + kProfileOffset, &profile, 4);
  std::memcpy(base + kGenerationOffset, &generation, 8);
  std::memcpy(base + kMaxReceiversOffset, &max_receivers, 4);
  // The pid before the magic: a segment with a magic always names its producer, so
  // a second creator never mistakes a half-made ring for a stale one.
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(base + kProducerPidOffset), producer_pid);
  // Everything above happens-before any opener that acquires a non-zero magic.
  atomics::StoreRelease(magic, kMagic);
  return "";
}

ByteRingBuffer::ByteRingBuffer(void* base, uint32_t total_size, bool is_producer)
    : ByteRingBuffer(base, uint64_t{total_size}, is_producer, Bind{}) {}

ByteRingBuffer::ByteRingBuffer(void* base, uint64_t total_size, uint32_t slot, uint32_t mode)
    : ByteRingBuffer(base, total_size, false, Bind{}, slot, mode) {}

ByteRingBuffer::ByteRingBuffer(void* base, uint64_t total_size, bool is_producer, Bind,
                               uint32_t slot, uint32_t mode)
    : base_(static_cast<uint8_t*>(base)), is_producer_(is_producer) {
  if (base_ != nullptr && total_size >= kHeaderSize && is_producer_ &&
      atomics::LoadAcquire(word(kMagicOffset)) == 0) {
    // No ring here yet: the producer view makes one (the original API's two views
    // of one buffer). A region with any magic is attached or refused, never rewritten.
    const uint32_t capacity = LargestCapacityFor(total_size);
    if (capacity == 0) {
      error_ = "region of " + std::to_string(total_size) +
               " bytes is too small for a ring: " + "it needs at least " +
               std::to_string(kHeaderSize) + " header bytes + " + std::to_string(kMinCapacity);
      return;
    }
    error_ = Initialize(base_, total_size, capacity, kProfileOpaque, RandomGeneration(), 0,
                        CurrentPid());
    if (!error_.empty()) return;
  }
  error_ = ValidateHeader(base_, total_size, &capacity_);
  if (!error_.empty()) return;
  mask_ = capacity_ - 1;
  max_receivers_ = LoadU32(base_ + kMaxReceiversOffset);  // validated above, immutable
  if (max_receivers_ < 1 || max_receivers_ > kMaxReceiversLimit) max_receivers_ = 1;
  if (!is_producer_) {
    if (slot >= max_receivers_ || (mode != kModeLossless && mode != kModeLive)) {
      error_ = "receiver slot " + std::to_string(slot) + " (mode " + std::to_string(mode) +
               ") is not one of the ring's " + std::to_string(max_receivers_) + " slots";
      return;
    }
    slot_ = slot;
    mode_ = mode;
    tail_off_ = SlotOffset(slot) + kSlotTail;
    flags_off_ = SlotOffset(slot) + kSlotFlags;
  }
  light_fences_ = wait::UseMembarrier();
  if (is_producer_) {
    space_ = std::make_shared<SpaceWait>();
    head_ = atomics::LoadRelaxed(word(kHeadOffset));  // own word
    if (head_ % kRecordAlign != 0) {                  // would make us write across the end
      error_ = "head " + std::to_string(head_) + " is not a multiple of 8";
      return;
    }
    reserve_ = head_;
    order_mark_ = head_;
    floor_ = atomics::LoadRelaxed(word(kFloorOffset));  // own word
    pub_seq_ = MarkSeq(HeadMark());                     // own word
    // Per fill: three records fit in the cache divided by that fill's share.
    const uint64_t cache = LargestCacheBytes();
    const auto three_below = [cache](uint32_t share) {
      return static_cast<uint32_t>(std::min<uint64_t>(cache / share / 3, UINT32_MAX));
    };
    three_places_below_[static_cast<int>(FillHint::kInPlace)] =
        three_below(tuning::kThreePlacesCacheShareInPlace);
    three_places_below_[static_cast<int>(FillHint::kCopied)] =
        three_below(tuning::kThreePlacesCacheShareCopied);
    if (!LoadTailChecked()) return;
    // Set, then fenced, before our first publish; see DESIGN.md "mode bits".
    if (light_fences_) atomics::FetchOrSeqCst(word(kProducerFlagsOffset), kProducerMembarrier);
    atomics::FullFence();
    // Each slot's attach count and sleeps now (CountedSinceAttach's base).
    for (uint32_t k = 0; k < max_receivers_; ++k) {
      attach_seen_[k] =
          atomics::LoadAcquire(word(SlotOffset(k) + kSlotFlags)) >> kConsumerAttachCountShift;
      attach_sleeps_[k] = atomics::LoadRelaxed(word(SlotOffset(k) + kSlotSleeps));
    }
  } else {
    released_ = atomics::LoadRelaxed(word(tail_off_)) & ~kSlotIdle;  // own word
    stored_ = released_;
    read_pos_ = released_;
    // Rings of 64 KiB and more store the tail (and wake a producer waiting for
    // space) once per batch of freed bytes; smaller rings at every release.
    tail_batch_ = capacity_ >= (1u << 16) ? std::min(capacity_ / 8, 1u << 18) : 0;
    head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
    if (light_fences_) atomics::FetchOrSeqCst(word(flags_off_), kConsumerMembarrier);
    atomics::FullFence();
  }
  valid_ = true;
}

uint32_t ByteRingBuffer::profile() const {
  uint32_t p;
  std::memcpy(&p, base_ + kProfileOffset, 4);  // written before magic, immutable after
  return p;
}

uint64_t ByteRingBuffer::generation() const {
  uint64_t g;
  std::memcpy(&g, base_ + kGenerationOffset, 8);  // written before magic, immutable after
  return g;
}

// ---- producer ---------------------------------------------------------------

bool ByteRingBuffer::Write(const void* data, uint32_t len) {
  return TryWrite(data, len) == Status::kOk;
}

Status ByteRingBuffer::TryWrite(const void* data, uint32_t len) {
  return TryWrite(data, len, true);
}

Status ByteRingBuffer::TryWrite(const void* data, uint32_t len, bool sync) {
  switch (WriteFast(data, len, sync)) {
    case FastWrite::kNotWritten:
      return TryWriteSlow(data, len, sync);
    case FastWrite::kWake:
      return WakeAfterWrite();  // a tail call: no frame here
    case FastWrite::kWritten:
      break;
  }
  return Status::kOk;
}

SHM_NOINLINE Status ByteRingBuffer::WakeAfterWrite() {
  // WriteFast ran only while nobody was seen waiting, where PublishHead's
  // LoadCountsBeforeStore loads no counts: no count from before this head store
  // (a value left from an earlier publish must not stand in for one; every wake
  // check also leaves pre_valid_ false, so this only restates it).
  pre_valid_ = false;
  WakeConsumerIfWaiting();  // fences again: harmless
  return Status::kOk;
}

SHM_NOINLINE Status ByteRingBuffer::TryWriteSlow(const void* data, uint32_t len, bool sync) {
  uint8_t* payload = nullptr;
  const Status s = Reserve(len, &payload, FillHint::kCopied);
  if (s != Status::kOk) return s;
  if (len != 0) std::memcpy(payload, data, len);
  Commit(len, sync);
  return Status::kOk;
}

uint32_t ByteRingBuffer::WriteableBytes() const {
  if (!valid_ || !is_producer_) return 0;
  uint32_t lowest, slot;
  if (!ScanSlots(&lowest, &slot)) return 0;  // corrupt tail: nothing is free
  return FreeBytesFrom(lowest);
}

// One receiver slot's protected position, folded into *lowest.
bool ByteRingBuffer::CountSlot(uint32_t k, uint32_t* lowest, uint32_t* limiting_slot,
                               bool* found) const {
  // Acquire: the receiver's reads of what it released happen-before our reuse.
  const uint32_t tail = atomics::LoadAcquire(word(SlotOffset(k) + kSlotTail));
  if (tail & kSlotIdle) return true;  // a live receiver holding nothing: never waited for
  // A receiver may only have released what we wrote: head - tail <= capacity, and
  // every record starts 8-aligned. Anything else would make us overwrite unread data.
  if (head_ - tail > capacity_ || tail % kRecordAlign != 0) {
    // A receiver takes a position (a live pin, a lossless start while it attaches)
    // before it checks the floor: a position we already lapped is one it is about to
    // see as reused and leave (it sees our floor: DESIGN.md "Fan-out"). A lossless
    // tail behind the head and below our floor exists only in that window (a counted
    // one never falls below the floor), so it is skipped too rather than called
    // corrupt. One slot: the floor does not move and such a tail is corrupt.
    if (tail % kRecordAlign == 0 &&
        (atomics::LoadRelaxed(word(SlotOffset(k) + kSlotMode)) == kModeLive ||
         (max_receivers_ > 1 && static_cast<int32_t>(tail - floor_) < 0 &&
          static_cast<int32_t>(head_ - tail) > 0))) {
      return true;
    }
    error_ = "tail " + std::to_string(tail) + " is not valid for head " + std::to_string(head_) +
             " (capacity " + std::to_string(capacity_) + ", receiver slot " + std::to_string(k) +
             "): the consumer is corrupt";
    return false;
  }
  if (!*found || head_ - tail > head_ - *lowest) {
    *lowest = tail;
    *limiting_slot = k;
    *found = true;
  }
  return true;
}

// Which slots hold the producer back: a ring with one receiver slot keeps today's
// single-consumer rule (slot 0 always counts, attached or not: its tail keeps the
// backlog for the next consumer). With several slots, the attached ones that are
// not known dead count; when none is attached, slot 0 keeps the backlog.
bool ByteRingBuffer::ScanSlots(uint32_t* lowest, uint32_t* limiting_slot, bool* counted) const {
  *lowest = head_;
  *limiting_slot = 0;
  bool found = false;
  if (counted != nullptr) *counted = false;
  if (max_receivers_ == 1) {
    const bool ok = CountSlot(0, lowest, limiting_slot, &found);
    if (counted != nullptr) *counted = found;
    return ok;
  }
  bool any = false;
  for (uint32_t k = 0; k < max_receivers_; ++k) {
    const uint32_t flags = atomics::LoadAcquire(word(SlotOffset(k) + kSlotFlags));
    if (dead_[k]) {
      if ((flags >> kConsumerAttachCountShift) == dead_count_[k]) continue;
      dead_[k] = false;  // a new receiver attached since
    }
    if (!(flags & kConsumerAttached)) continue;
    any = true;
    if (!CountSlot(k, lowest, limiting_slot, &found)) return false;
  }
  if (!any) return CountSlot(0, lowest, limiting_slot, &found);
  return true;
}

bool ByteRingBuffer::ReceiversBehind() const {
  if (!valid_ || !is_producer_) return false;
  uint32_t lowest, slot;
  return ScanSlots(&lowest, &slot) && lowest != head_;
}

bool ByteRingBuffer::LoadTailChecked(uint32_t need) {
  uint32_t lowest, slot;
  bool counted = false;
  if (!ScanSlots(&lowest, &slot, &counted)) return false;
  // One receiver slot holding a position (a lossless tail, or a live receiver's pin):
  // nobody can take a position below it (its own pin only moves forward), so the
  // floor need not move: the default ring's slow path stays one load.
  const bool need_floor = max_receivers_ > 1 || !counted;
  if (need_floor && need <= capacity_ - capacity_ / 4) {
    // What nobody holds is free, but a lapped live receiver resumes only at or above
    // the floor (the newest sync point still there): free what this reservation
    // needs plus a quarter of the ring, not everything up to the head, so the newest
    // three quarters of a lap stay readable. (One more slot scan per quarter lap.)
    uint32_t at_least = reserve_ + need + capacity_ / 4 - capacity_;
    if (static_cast<int32_t>(at_least - floor_) < 0) at_least = floor_;  // floors only grow
    if (static_cast<int32_t>(at_least - head_) > 0) at_least = head_;    // never past the head
    if (reserve_ - at_least > reserve_ - lowest) lowest = at_least;  // an older limit: keep more
  }
  if (need_floor && static_cast<int32_t>(lowest - floor_) > 0) {
    // Publish the floor before reusing anything below it, then look again: a
    // receiver that took a position meanwhile either is seen now or sees the floor
    // (store, full fence, load on both sides; docs/DESIGN.md "Fan-out").
    floor_ = lowest;
    atomics::StoreRelease(word(kFloorOffset), floor_);
    atomics::FullFence();
    uint32_t again, slot2;
    if (!ScanSlots(&again, &slot2)) return false;
    if (head_ - again > head_ - lowest) {
      lowest = again;
      slot = slot2;
    }
  }
  tail_cache_ = lowest;
  limit_slot_ = slot;
  return true;
}

void ByteRingBuffer::MarkSlotDead(uint32_t slot, uint32_t flags_seen) {
  if (!valid_ || !is_producer_ || slot >= max_receivers_) return;
  // The count seen before the probe, not a fresh load: a receiver that claimed the
  // byte after the probe has already bumped it, and a fresh load would bury it.
  dead_count_[slot] = flags_seen >> kConsumerAttachCountShift;
  dead_[slot] = true;
}

bool ByteRingBuffer::SetStreamInfo(const void* data, uint32_t len, uint32_t index) {
  if (!valid_ || !is_producer_ || len > kInfoMax) return false;
  uint32_t* seq = word(kInfoOffset + kInfoSeq);
  const uint32_t s = atomics::LoadRelaxed(seq);  // own word
  // A sequence lock: odd while written; readers retry when it changed.
  atomics::StoreRelaxed(seq, s + 1);
  atomics::FullFence();
  atomics::StoreRelaxed(word(kInfoOffset + kInfoIndex), index);
  atomics::StoreRelaxed(word(kInfoOffset + kInfoLen), len);
  for (uint32_t i = 0; i < len; ++i) {
    __atomic_store_n(base_ + kInfoOffset + kInfoData + i, static_cast<const uint8_t*>(data)[i],
                     __ATOMIC_RELAXED);
  }
  atomics::StoreRelease(seq, s + 2);
  return true;
}

bool ByteRingBuffer::ReadStreamInfo(std::string* out, uint32_t* index) const {
  if (!valid_) return false;
  const uint32_t* seq = word(kInfoOffset + kInfoSeq);
  for (int attempt = 0; attempt < 64; ++attempt) {
    const uint32_t s1 = atomics::LoadAcquire(seq);
    if (s1 == 0) return false;  // never written
    if (s1 & 1) continue;
    const uint32_t len = atomics::LoadRelaxed(word(kInfoOffset + kInfoLen));
    const uint32_t at = atomics::LoadRelaxed(word(kInfoOffset + kInfoIndex));
    if (len > kInfoMax) continue;  // torn: look again
    std::string text(len, '\0');
    for (uint32_t i = 0; i < len; ++i) {
      text[i] =
          static_cast<char>(__atomic_load_n(base_ + kInfoOffset + kInfoData + i, __ATOMIC_RELAXED));
    }
    atomics::FullFence();  // the copy happens-before the second look at seq
    if (atomics::LoadRelaxed(seq) != s1) continue;
    *out = std::move(text);
    if (index != nullptr) *index = at;
    return true;
  }
  return false;
}

// Free bytes for the next reservation: the receivers' limit (LoadTailChecked: the
// slowest counted slot, live pins, the floor) and the oldest kept reservation both
// hold space back.
uint32_t ByteRingBuffer::FreeBytes() const { return FreeBytesFrom(tail_cache_); }

// The same for a receiver limit `lowest` (the slowest counted slot, or the head).
uint32_t ByteRingBuffer::FreeBytesFrom(uint32_t lowest) const {
  uint32_t used = reserve_ - lowest;
  if (!pending_.empty() && reserve_ - pending_.front().start > used) {
    used = reserve_ - pending_.front().start;
  }
  return capacity_ - used;
}

bool ByteRingBuffer::FullOfKept(uint32_t len) const {
  if (pending_.empty() || !pending_.front().kept) return false;
  const uint32_t by_tail = capacity_ - (reserve_ - tail_cache_);
  return FreeBytes() < by_tail && len <= MaxMessageSize();
}

// Reserves the record of a `len`-byte payload at reserve_ (a WRAP marker first if
// it would cross the end) and appends it to pending_. *start: its ring index.
Status ByteRingBuffer::ReserveRecord(uint32_t len, uint32_t* start, FillHint fill) {
  if (!valid_ || !is_producer_) return Status::kInvalid;
  if (len > MaxMessageSize()) return Status::kTooLarge;
  const uint32_t record = static_cast<uint32_t>(RecordSize(len));
  const uint32_t to_end = capacity_ - (reserve_ & mask_);
  bool marker = false;
  if (record <= to_end && RestartLapEarly(record, to_end, fill)) {
    PublishWrapMarker();  // the record goes at offset 0 of the next lap
    return ReserveRecordAt(record, start);
  }
  if (record > to_end) {
    // The record would cross the end: a WRAP marker fills the rest of this lap.
    if (FreeBytes() < to_end) {
      if (!LoadTailChecked(to_end + record)) return Status::kCorrupt;
      if (FreeBytes() < to_end) return Status::kFull;
    }
    PublishWrapMarker();
    marker = true;
  }
  if (FreeBytes() < record) {
    if (!LoadTailChecked(record)) return Status::kCorrupt;
    if (FreeBytes() < record) {
      // Only the consumer skipping the marker can free the rest: it must not sleep through it.
      if (marker) WakeConsumerIfWaiting();
      return Status::kFull;
    }
  }
  return ReserveRecordAt(record, start);
}

Status ByteRingBuffer::ReserveRecordAt(uint32_t record, uint32_t* start) {
  *start = reserve_;
  reserve_ += record;
  pending_.push_back(Pending{*start, reserve_, false, false, false, false, false});
  return Status::kOk;
}

// A large record goes at offset 0 of the next lap instead of at reserve_ when it
// is at least `places` records into the lap and the front of the data area is
// free for it (everything the receivers read there is done with, nothing of the
// producer's is kept there): a sender whose receivers keep up then writes its big
// messages into `places` places, lap after lap, that the CPU's caches still hold,
// instead of walking the whole ring (a 32 MiB ring of 1080p frames is as large as
// this machine's L3; a copy into lines not in cache first reads them from memory).
// Three places while three such records fit in the share of the CPU's largest
// cache that `fill` leaves them (all of it painted in place, a fifth copied in,
// where the source's own buffers compete for it: tuning.hpp): the sender then never
// waits for a receiver that still holds the two records before (a zero-copy
// receiver whose sink keeps the last frame while the next is pushed). Above that,
// painted in place two (the record after a restart goes in the second place and
// waits there for the receiver as any record does, but fewer lines are in play),
// copied in one: such a record goes back to the front as soon as the receiver is
// done with everything there, so a receiver that lets each frame go before the next
// is copied gets every frame in the same cache-warm lines, and one still on the
// frame before gets them in two places, as above (a first fit, as shmsink's block
// allocator does; 1080p BGR forced copy to a receiver that lets each frame go:
// 1.09-1.13x two places, DESIGN.md). Only room for the
// record itself is asked for: asking for the next one's as well sent records past
// the third place while the receiver held the one before. DESIGN.md "Where a large
// record goes". Until the receivers pass the WRAP marker, the rest of the lap
// counts as used. Receivers skip the marker as any other (PROTOCOL.md section 3,
// producer rule 1). Costs one look at the receivers' positions (ScanSlots) per
// large record that could restart.
bool ByteRingBuffer::RestartLapEarly(uint32_t record, uint32_t to_end, FillHint fill) {
  const uint32_t pos = reserve_ & mask_;
  const uint32_t places = record < three_places_below_[static_cast<int>(fill)] ? 3
                          : fill == FillHint::kCopied                          ? 1
                                                                               : 2;
  // One receiver slot only: with several, a lagging live receiver resumes at the
  // newest sync point still in the ring (the floor keeps three quarters of a lap
  // for it), which restarting early would shorten.
  if (max_receivers_ != 1 || record < tuning::kEarlyWrapMinRecord || pos / places < record) {
    return false;
  }
  const uint32_t need = to_end + record;  // <= capacity_: pos >= record
  if (FreeBytes() < need && !LoadTailChecked(need)) return false;
  return FreeBytes() >= need;
}

Status ByteRingBuffer::Reserve(uint32_t len, uint8_t** payload, FillHint fill) {
  if (reserved_) {
    // A second Reserve replaces the open one (the original API's behaviour): taken
    // back when it is the newest, else abandoned.
    reserved_ = false;
    if (!Retract(legacy_)) Abandon(legacy_);
  }
  Reservation r;
  const Status s = ReserveNext(len, &r, fill);
  if (s != Status::kOk) return s;
  legacy_ = r;
  reserved_ = true;
  *payload = r.payload;
  return Status::kOk;
}

Status ByteRingBuffer::ReserveNext(uint32_t len, Reservation* out, FillHint fill) {
  uint32_t start = 0;
  const Status s = ReserveRecord(len, &start, fill);
  if (s != Status::kOk) return s;
  out->payload = data() + (start & mask_) + kLenSize;
  out->len = len;
  out->start = start;
  out->end = start + static_cast<uint32_t>(RecordSize(len));
  return Status::kOk;
}

void ByteRingBuffer::PublishWrapMarker() {
  const uint32_t pos = reserve_ & mask_;
  StoreU32(data() + pos, kWrapMarker);
  const uint32_t start = reserve_;
  reserve_ += capacity_ - pos;
  if (head_ == start) {
    // Published alone so the consumer can free this lap at once. No wake here (a
    // marker is not a message); callers wake only when the record does not fit behind it.
    head_ = reserve_;
    LoadCountsBeforeStore();
    atomics::StoreRelease(word(kHeadOffset), head_);
    // The head mark follows (no new message: the same sequence number).
    atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base_ + kHeadMarkOffset),
                            Mark(head_, pub_seq_));
  } else {
    // After older reservations.
    pending_.push_back(Pending{start, reserve_, true, false, true, false, false});
  }
}

void ByteRingBuffer::Commit(uint32_t len) { Commit(len, true); }

void ByteRingBuffer::Commit(uint32_t len, bool sync) {
  if (!reserved_) return;
  reserved_ = false;
  Publish(legacy_, len, false, sync);
}

void ByteRingBuffer::Publish(const Reservation& r, uint32_t len, bool keep, bool sync) {
  if (!valid_ || !is_producer_) return;
  for (Pending& e : pending_) {
    if (e.start != r.start || e.done) continue;
    if (len > r.len) len = r.len;
    const uint32_t pos = r.start & mask_;
    const uint32_t record = static_cast<uint32_t>(RecordSize(len));
    StoreU32(data() + pos, len);
    const uint32_t pad = record - kLenSize - len;
    if (pad != 0) std::memset(data() + pos + kLenSize + len, 0, pad);
    if (r.end - r.start > record) {
      if (&e == &pending_.back() && reserve_ == r.end) {
        // The newest reservation: the record shrinks (the original API's Commit).
        e.end = r.start + record;
        reserve_ = e.end;
      } else {
        // Something was reserved behind it: the rest of the record is skipped.
        StoreU32(data() + pos + record, kPadFlag | (r.end - r.start - record - kLenSize));
      }
    }
    e.done = true;
    e.kept = keep;
    e.sync = sync;
    if (static_cast<int32_t>(e.end - order_mark_) > 0) order_mark_ = e.end;
    AdvanceHead();
    return;
  }
}

void ByteRingBuffer::Abandon(const Reservation& r, bool keep) {
  if (!valid_ || !is_producer_) return;
  for (Pending& e : pending_) {
    if (e.start != r.start || e.done) continue;
    StoreU32(data() + (r.start & mask_), kPadFlag | (r.end - r.start - kLenSize));
    e.done = true;
    e.kept = keep;
    e.pad = true;
    AdvanceHead();
    return;
  }
}

bool ByteRingBuffer::Retract(const Reservation& r) {
  if (!valid_ || !is_producer_ || pending_.empty()) return false;
  const Pending& e = pending_.back();
  if (e.start != r.start || e.done || e.end != reserve_) return false;
  // Never published, so the head is at or before r.start and no reader looked at
  // its bytes; a WRAP marker before it stays (the place is then a lap's start).
  pending_.pop_back();
  reserve_ = r.start;
  WakeKeptSleepers();  // as Unkeep: a thread of ours may sleep for this room
  return true;
}

void ByteRingBuffer::Unkeep(const Reservation& r) {
  if (!valid_ || !is_producer_) return;
  for (Pending& e : pending_) {
    if (e.start != r.start || !e.kept) continue;
    e.kept = false;
    AdvanceHead();
    WakeKeptSleepers();  // a thread of ours may sleep for exactly this room
    return;
  }
}

void ByteRingBuffer::AbandonOpen() {
  if (!valid_ || !is_producer_) return;
  reserved_ = false;
  for (Pending& e : pending_) {
    if (e.done) continue;
    StoreU32(data() + (e.start & mask_), kPadFlag | (e.end - e.start - kLenSize));
    e.done = true;
    e.pad = true;
  }
  AdvanceHead();
}

bool ByteRingBuffer::InOrder(const Reservation& r) const {
  return static_cast<int32_t>(r.start - order_mark_) >= 0;
}

// Moves the head over the leading finished entries of pending_ (publishing them)
// and forgets the leading ones nobody needs any more.
void ByteRingBuffer::AdvanceHead() {
  uint32_t h = head_;
  uint32_t newest = 0;  // start of the newest record it publishes (a PAD record counts)
  bool any = false;
  uint32_t seq = pub_seq_;  // sequence numbers of the messages it publishes
  uint32_t newest_seq = 0;  // the newest record's (a PAD record: the next message's)
  uint64_t sync_mark = 0;   // the newest sync point among them
  bool any_sync = false;
  for (const Pending& e : pending_) {
    if (!e.done) break;
    if (static_cast<int32_t>(e.end - h) > 0) {
      h = e.end;
      if (!e.marker) {
        newest = e.start;
        newest_seq = seq;
        any = true;
      }
      if (!e.marker && !e.pad) {
        if (e.sync) {
          sync_mark = Mark(e.start, seq);
          any_sync = true;
        }
        ++seq;
      }
    }
  }
  while (!pending_.empty() && pending_.front().done && !pending_.front().kept) {
    pending_.pop_front();
  }
  if (h == head_) return;
  PublishHead(h, seq, any, newest, newest_seq, any_sync, sync_mark);
}

// Publishes head `h` with `seq` messages before it: last_start (`newest`, when
// `any` record was published), the head, the marks, then the wake check.
void ByteRingBuffer::PublishHead(uint32_t h, uint32_t seq, bool any, uint32_t newest,
                                 uint32_t newest_seq, bool any_sync, uint64_t sync_mark) {
  // Published by the head's release store: last_start always names a record <= head.
  if (any) atomics::StoreRelaxed(word(kLastStartOffset), newest);
  pub_seq_ = seq;
  head_ = h;
  LoadCountsBeforeStore();  // the receivers' sleep counts before the store that may wake them
  // Payload and len happen-before the consumer's acquire load of head.
  atomics::StoreRelease(word(kHeadOffset), head_);
  // The marks after the head (release): a receiver that acquires a mark sees a head
  // that covers what it names. Same cache line as the head.
  atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base_ + kHeadMarkOffset), Mark(h, seq));
  if (any) {
    atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base_ + kLastMarkOffset),
                            Mark(newest, newest_seq));
  }
  if (any_sync) {
    atomics::StoreRelease64(reinterpret_cast<uint64_t*>(base_ + kSyncMarkOffset), sync_mark);
  }
  WakeConsumerIfWaiting();
}

// While a receiver was seen waiting: its sleep counts, loaded (acquire) before the
// head store that may wake it. A wake ends a sleep only if that sleep's look at the
// head came before our store; a count read before the store proves it (the sleeper
// fences between its look and its bump), a count read after does not.
void ByteRingBuffer::LoadCountsBeforeStore() {
  pre_valid_ = consumer_waiting_seen_;
  if (!pre_valid_) return;
  for (uint32_t k = 0; k < max_receivers_; ++k) {
    pre_sleeps_[k] = atomics::LoadAcquire(word(SlotOffset(k) + kSlotSleeps));
  }
}

// Whether slot k's COUNTS_SLEEPS (set in `f`, its flags; `*n` its sleeps) belongs to
// the receiver attached now: only if its sleeps word moved since we first saw this
// attach count. A receiver that does not know COUNTS_SLEEPS (a build from before it)
// attaching to the slot of a counting receiver that died asleep leaves the dead one's
// bit set and never bumps the count: without this, every wake of it would be skipped
// on the dead receiver's count. A counting receiver bumps before its first sleep, so
// it loses at most the skips of that sleep. Producer; on the wake path only (a slot
// seen WAITING | COUNTS_SLEEPS).
bool ByteRingBuffer::CountedSinceAttach(uint32_t k, uint32_t f, uint32_t* n) {
  if ((f >> kConsumerAttachCountShift) != attach_seen_[k]) {
    // A new attach: the count now is its base. Acquire on the flags: the attach
    // count bump follows the new receiver's full fence, which follows (through the
    // role lock the kernel handed over) the dead receiver's last bump, so the count
    // loaded after it is not an older one that would "move" later.
    f = atomics::LoadAcquire(word(SlotOffset(k) + kSlotFlags));
    *n = atomics::LoadRelaxed(word(SlotOffset(k) + kSlotSleeps));
    attach_seen_[k] = f >> kConsumerAttachCountShift;
    attach_sleeps_[k] = *n;
    counted_[k] = false;
    return false;
  }
  if (!counted_[k]) counted_[k] = *n != attach_sleeps_[k];
  return counted_[k];
}

#ifdef SHMRING_TEST_SEAMS
void (*test_seams::before_wake_check)() = nullptr;
void (*test_seams::after_tail_store)() = nullptr;
#endif

void ByteRingBuffer::WakeConsumerIfWaiting() {
  SHMRING_SEAM(before_wake_check);  // nothing outside a test build (test_seams.hpp)
  // Store-load fence against the consumer's "set WAITING, fence, re-check head".
  if (light_fences_) {
    atomics::CompilerBarrier();  // the sleeper issues membarrier for us
  } else {
    atomics::FullFence();
  }
  // Every receiver sleeps on the head word: one wake if any of them needs it.
  // A receiver that counts its sleeps (COUNTS_SLEEPS) needs none while its count
  // is the one we woke last: that sleep is over or ends by the wake we issued
  // (DESIGN.md "Wake once per sleep"). The skip is decided on loads made after a
  // full fence: either we see a newer count, or its look at the head after its
  // own count bump and fence sees the head we stored above.
  bool need = false;
  bool fenced = !light_fences_;
  bool any_waiting = false;
  for (uint32_t k = 0; k < max_receivers_ && !need; ++k) {
    const uint32_t* fw = word(SlotOffset(k) + kSlotFlags);
    uint32_t f = atomics::LoadRelaxed(fw);
    if (!(f & kConsumerWaiting)) continue;
    any_waiting = true;
    if (!(f & kConsumerCountsSleeps)) {
      need = true;
      break;
    }
    uint32_t n = atomics::LoadRelaxed(word(SlotOffset(k) + kSlotSleeps));
    if (!CountedSinceAttach(k, f, &n)) {
      need = true;
      break;
    }
    if (woken_valid_[k] && n == woken_sleeps_[k] && !fenced) {
      atomics::FullFence();
      fenced = true;
      f = atomics::LoadRelaxed(fw);
      n = atomics::LoadRelaxed(word(SlotOffset(k) + kSlotSleeps));
      if (!(f & kConsumerWaiting)) continue;
      if (!(f & kConsumerCountsSleeps) || !CountedSinceAttach(k, f, &n)) {
        need = true;
        break;
      }
    }
    if (!woken_valid_[k] || n != woken_sleeps_[k]) need = true;
  }
  consumer_waiting_seen_ = any_waiting || need;
  if (!need) {
    // No wake: the counts loaded before this store are spent. A later wake that
    // follows no LoadCountsBeforeStore of its own (a WRAP marker left pending,
    // WriteFast's) then records nothing rather than counts from an older store.
    pre_valid_ = false;
    return;
  }
  // Record, per counting sleeper, the count loaded BEFORE the head store: that
  // sleep looked at the head before the store, so this wake ends it. (A count
  // loaded after the store may belong to a sleep that already saw the new head and
  // waits for the next one.) Without a count from before the store: nothing is
  // recorded and the next publish wakes again.
  for (uint32_t k = 0; k < max_receivers_; ++k) {
    const uint32_t f = atomics::LoadRelaxed(word(SlotOffset(k) + kSlotFlags));
    woken_valid_[k] = pre_valid_ && (f & kConsumerCountsSleeps) != 0;
    woken_sleeps_[k] = pre_sleeps_[k];
  }
  pre_valid_ = false;
  wait::WakeWord(word(kHeadOffset));
}

Status ByteRingBuffer::WaitWritable(uint32_t len, int64_t timeout_ns, Interrupter* intr) {
  return WaitWritable(len, timeout_ns, intr, nullptr);
}

Status ByteRingBuffer::WaitWritable(uint32_t len, int64_t timeout_ns, Interrupter* intr,
                                    const std::function<Status()>& each_slice) {
  if (!valid_ || !is_producer_) return Status::kInvalid;
  if (len > MaxMessageSize()) return Status::kTooLarge;
  const uint32_t record = static_cast<uint32_t>(RecordSize(len));
  const int64_t start = NowNs();
  const int64_t deadline = timeout_ns < 0 ? 0 : start + timeout_ns;
  int64_t next_look = start + kLivenessSliceNs;
  // Counted in as a waiter for space on the first sleep (WAITING set and fenced
  // once for the whole wait, DESIGN.md "Sleeping for space"), counted out on return.
  SpaceWaitScope scope(this);
  for (int spin = 0;; ++spin) {
    const uint32_t to_end = capacity_ - (reserve_ & mask_);
    if (!LoadTailChecked(record <= to_end ? record : to_end + record)) return Status::kCorrupt;
    const uint32_t free = FreeBytes();
    if (record <= to_end) {
      if (free >= record) return Status::kOk;
    } else if (free >= to_end) {
      PublishWrapMarker();  // the record goes at offset 0 of the next lap
      // If it does not fit behind the marker yet, only the consumer skipping the
      // marker can free the rest: it must not sleep through it.
      if (free - to_end < record) WakeConsumerIfWaiting();
      continue;
    }
    if (intr != nullptr && intr->interrupted()) return Status::kInterrupted;
    const int64_t left = Remaining(deadline, timeout_ns);
    if (left == 0) return Status::kTimeout;
    if (spin < kSpinPolls) continue;
    int64_t nap = left;
    if (each_slice) {
      const int64_t now = NowNs();
      if (now >= next_look) {
        const Status s = each_slice();
        if (s != Status::kOk) return s;
        next_look = now + kLivenessSliceNs;
      }
      nap = CapNap(left, next_look - now);
    }
    // The count before the look: an Unkeep after it ends the sleep below.
    const uint32_t unkeeps = UnkeepCount();
    if (FullOfKept(len)) {
      // Only Unkeep (another thread of ours) makes room: sleep until it does.
      SleepWhileKept(unkeeps, nap, intr);
      continue;
    }
    scope.Enter();
    // On the tail of the receiver that holds us back (its tail now is what we saw)
    // and on its flags (a detach): the consumer attached or detached meanwhile: ask
    // `each_slice` now.
    if (SleepForSpace(limit_slot_, tail_cache_, nap, intr)) next_look = 0;
  }
}

// ---- sleeping for space (any producer thread) ----------------------------------

struct ByteRingBuffer::SpaceWait {
  std::mutex mu;
  int waiters = 0;     // threads between BeginSpaceWait and EndSpaceWait (mu)
  bool heavy = false;  // a heavy barrier was issued since WAITING was set (mu)
  // Unkeep count and the threads asleep on it (SleepWhileKept): seq_cst RMW and
  // loads on both sides, so either the sleeper sees the new count or Unkeep sees
  // the sleeper.
  std::atomic<uint32_t> unkeeps{0};
  std::atomic<int> kept_sleepers{0};
};

void ByteRingBuffer::BeginSpaceWait() const {
  if (!valid_ || !is_producer_) return;
  std::lock_guard<std::mutex> lock(space_->mu);
  if (space_->waiters++ != 0) return;  // already set (and fenced) for another thread
  // The first waiter: WAITING (with COUNTS_SLEEPS: every sleep bumps the sleeps word
  // before its fence), then a full fence before any look at a tail.
  atomics::FetchOrRelaxed(word(kProducerFlagsOffset), kProducerWaiting | kProducerCountsSleeps);
  atomics::FullFence();
  space_->heavy = false;
  wait::NoteWaitingSet();
}

void ByteRingBuffer::EndSpaceWait() const {
  if (!valid_ || !is_producer_) return;
  std::lock_guard<std::mutex> lock(space_->mu);
  if (space_->waiters == 0 || --space_->waiters != 0) return;  // another thread still sleeps
  atomics::FetchAndRelaxed(word(kProducerFlagsOffset), ~(kProducerWaiting | kProducerCountsSleeps));
}

bool ByteRingBuffer::SleepForSpace(uint32_t slot, uint32_t seen, int64_t timeout_ns,
                                   Interrupter* intr) const {
  if (!valid_ || !is_producer_ || slot >= max_receivers_) return false;
  uint32_t* tail = word(SlotOffset(slot) + kSlotTail);
  uint32_t* cflags = word(SlotOffset(slot) + kSlotFlags);
  // A new sleep: bump the count, full fence, then the look at the tail below. A
  // receiver that already woke an earlier sleep of ours skips its wake only when
  // it sees the old count after its own full fence, so then it is our look that
  // sees its tail (DESIGN.md "Wake once per sleep").
  // A fence before the bump as well: the look that gave `seen` comes before it
  // (LoadCountsBeforeStore's argument, mirrored).
  atomics::FullFence();
  atomics::FetchAddRelaxed(word(kProducerSleepsOffset), 1);  // several threads of ours
  atomics::FullFence();
  int64_t nap = timeout_ns;
  if ((atomics::LoadRelaxed(cflags) & kConsumerMembarrier) != 0) {
    // The receiver's fast path is a compiler barrier only: once per WAITING (the
    // first sleeper that needs it) a heavy barrier orders its tail store before its
    // look at WAITING.
    std::lock_guard<std::mutex> lock(space_->mu);
    if (!space_->heavy) space_->heavy = wait::HeavyBarrier();
    if (!space_->heavy) nap = CapNap(timeout_ns, kUnfencedNapNs);  // unordered: poll
  }
  const uint32_t cf = atomics::LoadAcquire(cflags);
  if (atomics::LoadAcquire(tail) == seen) {
    if (intr != nullptr) intr->BeginSleep(tail);
    // Also on the receiver's flags: a detach (ATTACHED cleared, then a wake) ends it.
    if (intr == nullptr || !intr->interrupted()) wait::WaitOnWords(tail, seen, cflags, cf, nap);
    if (intr != nullptr) intr->EndSleep();
  }
  return ((atomics::LoadRelaxed(cflags) ^ cf) & kConsumerAttached) != 0;
}

uint32_t ByteRingBuffer::UnkeepCount() const {
  return space_ ? space_->unkeeps.load(std::memory_order_seq_cst) : 0;
}

void ByteRingBuffer::SleepWhileKept(uint32_t seen, int64_t timeout_ns, Interrupter* intr) const {
  if (!valid_ || !is_producer_) return;
  auto* count = reinterpret_cast<uint32_t*>(&space_->unkeeps);
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word");
  space_->kept_sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (space_->unkeeps.load(std::memory_order_seq_cst) == seen) {
    if (intr != nullptr) intr->BeginSleep(count);
    if (intr == nullptr || !intr->interrupted()) wait::WaitOnWord(count, seen, timeout_ns);
    if (intr != nullptr) intr->EndSleep();
  }
  space_->kept_sleepers.fetch_sub(1, std::memory_order_seq_cst);
}

void ByteRingBuffer::WakeKeptSleepers() {
  space_->unkeeps.fetch_add(1, std::memory_order_seq_cst);
  if (space_->kept_sleepers.load(std::memory_order_seq_cst) != 0) {
    wait::WakeWord(reinterpret_cast<uint32_t*>(&space_->unkeeps));
  }
}

void ByteRingBuffer::SetClosed() {
  if (!valid_) return;
  // Release: every published record happens-before a consumer that sees CLOSED.
  atomics::FetchOrRelease(word(kProducerFlagsOffset), kProducerClosed);
  atomics::FullFence();
  wait::WakeWord(word(kHeadOffset));  // a sleeping consumer must see end of stream
}

void ByteRingBuffer::SetLive(bool live) {
  if (!valid_ || !is_producer_) return;
  if (live) {
    atomics::FetchOrRelease(word(kProducerFlagsOffset), kProducerLive);
  } else {
    atomics::FetchAndRelaxed(word(kProducerFlagsOffset), ~kProducerLive);  // nothing to publish
  }
}

void ByteRingBuffer::UseFullFences() {
  if (!valid_ || !is_producer_ || !light_fences_) return;
  // Our fast path fences fully before any receiver stops fencing for us: nothing
  // was published light (we are before the first publication), and a receiver
  // that still sees the bit only issues a membarrier it no longer needs.
  light_fences_ = false;
  atomics::FullFence();
  atomics::FetchAndRelaxed(word(kProducerFlagsOffset), ~kProducerMembarrier);
  atomics::FullFence();  // as when the bit was set: after the store it publishes
}

void ByteRingBuffer::AddDropped(uint64_t n) {
  if (!valid_) return;
  auto* d = reinterpret_cast<uint64_t*>(base_ + kDroppedOffset);
  atomics::StoreRelaxed64(d, atomics::LoadRelaxed64(d) + n);  // single writer
}

// ---- consumer ---------------------------------------------------------------

Status ByteRingBuffer::EmptyOrClosed(uint32_t at) {
  if (atomics::LoadAcquire(word(kProducerFlagsOffset)) & kProducerClosed) {
    // CLOSED was stored after the last publish: re-read head before concluding.
    head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
    if (head_cache_ == at) return Status::kClosed;
    return Status::kOk;
  }
  return Status::kEmpty;
}

void ByteRingBuffer::LazyRelease(uint32_t end) const {
  released_ = end;
  // Stored now when the batch is full or the reader caught up with the head it
  // knows (nothing more to read: a producer in this very thread may be about to
  // wait for that space, so it must never stay unstored). Otherwise the next
  // release, Flush(), or the reader going idle (NextRecord finding nothing) stores it.
  // A live receiver's tail word is its pin: always stored at once.
  if (live_mode() || end - stored_ >= tail_batch_ || end == head_cache_) StoreTail(end);
}

void ByteRingBuffer::Flush() const {
  if (valid_ && !is_producer_ && released_ != stored_) StoreTail(released_);
}

uint32_t ByteRingBuffer::TailWordValue(uint32_t t) const {
  if (!live_mode()) return t;
  // A live receiver holds its pin only while it holds (or peeked) a record.
  pinned_ = read_pos_ != t || peeked_;
  return pinned_ ? t : (t | kSlotIdle);
}

void ByteRingBuffer::StoreTail(uint32_t t) const {
  released_ = t;
  stored_ = t;
  // While the producer was seen waiting: its sleep count before our store (see
  // LoadCountsBeforeStore: only such a count proves which sleep a wake ends).
  const bool pre_valid = producer_waiting_seen_;
  const uint32_t pre = pre_valid ? atomics::LoadAcquire(word(kProducerSleepsOffset)) : 0;
  // Our reads of the released records happen-before the producer reuses them.
  atomics::StoreRelease(word(tail_off_), TailWordValue(t));
  SHMRING_SEAM(after_tail_store);  // nothing outside a test build (test_seams.hpp)
  // Store-load fence against the producer's "set WAITING, fence, re-check tail".
  if (light_fences_) {
    atomics::CompilerBarrier();  // the sleeper issues membarrier for us
  } else {
    atomics::FullFence();
  }
  uint32_t f = atomics::LoadRelaxed(word(kProducerFlagsOffset));
  producer_waiting_seen_ = (f & kProducerWaiting) != 0;
  if (!(f & kProducerWaiting)) return;
  if (f & kProducerCountsSleeps) {
    // The producer counts its sleeps: no wake while the count is the one we woke
    // last, decided on loads after a full fence (DESIGN.md "Wake once per sleep").
    uint32_t n = atomics::LoadRelaxed(word(kProducerSleepsOffset));
    if (producer_woken_valid_ && n == producer_woken_) {
      if (light_fences_) {
        atomics::FullFence();
        f = atomics::LoadRelaxed(word(kProducerFlagsOffset));
        n = atomics::LoadRelaxed(word(kProducerSleepsOffset));
      }
      if (!(f & kProducerWaiting)) return;
      if ((f & kProducerCountsSleeps) && n == producer_woken_) return;
    }
    producer_woken_ = pre;
    producer_woken_valid_ = pre_valid && (f & kProducerCountsSleeps) != 0;
  } else {
    producer_woken_valid_ = false;
  }
  wait::WakeWord(word(tail_off_));
}

// Parses the record at ring index `from`, skipping WRAP markers (and releasing
// them when nothing is held before them). Validates everything it reads.
Status ByteRingBuffer::NextRecord(uint32_t from, MessageView* out) {
  const Status s = NextRecordPinned(from, out);
  if (s != Status::kOk && pinned_ && read_pos_ == released_ && !peeked_) {
    StoreTail(released_);  // nothing handed out: a live receiver unpins
  }
  return s;
}

Status ByteRingBuffer::NextRecordPinned(uint32_t from, MessageView* out) {
  if (!valid_ || is_producer_) return Status::kInvalid;
  uint32_t pos_index = from;
  for (;;) {
    uint32_t avail = head_cache_ - pos_index;
    if (avail == 0) {
      head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
      avail = head_cache_ - pos_index;
      if (avail == 0) {
        if (released_ != stored_) StoreTail(released_);  // going idle: free everything
        const Status s = EmptyOrClosed(pos_index);
        if (s != Status::kOk) return s;
        avail = head_cache_ - pos_index;
      }
    }
    if ((live_mode() && !pinned_) || check_floor_) {
      // Nothing held: pin the position before reading its bytes (or skip ahead
      // when the producer may have reused them already).
      uint32_t at = pos_index;
      // Lapped on every look: no byte at `at` is safe yet (nothing is read).
      if (!PinForRead(&at)) return Status::kEmpty;
      check_floor_ = false;
      if (!live_mode()) pinned_ = false;  // a lossless tail is not a pin
      if (at != pos_index) {
        from = pos_index = at;
        continue;  // look at the new position (maybe nothing yet)
      }
    }
    // A misaligned head or tail could put a len word across the end of the data area.
    if (avail > capacity_ || ((head_cache_ | pos_index) % kRecordAlign) != 0) {
      error_ = "head " + std::to_string(head_cache_) + " is not a valid index for tail " +
               std::to_string(pos_index);
      return Status::kCorrupt;
    }
    const uint32_t pos = pos_index & mask_;
    const uint32_t to_end = capacity_ - pos;
    const uint32_t len = LoadU32(data() + pos);
    if (len == kWrapMarker) {
      if (to_end > avail) {
        error_ = "WRAP marker at offset " + std::to_string(pos) + " skips past head";
        return Status::kCorrupt;
      }
      pos_index += to_end;
      if (from == read_pos_ && read_pos_ == released_) {
        read_pos_ = pos_index;
        StoreTail(pos_index);  // nothing held before the marker: free the lap now
        from = pos_index;
      }
      continue;
    }
    if (IsPad(len)) {
      // A reservation the producer gave up (or the unused end of one): skipped
      // silently, and freed at once when nothing is held before it.
      const uint64_t pad = RecordSize(len & ~kPadFlag);
      if (pad > to_end || pad > avail) {
        error_ = "PAD record at offset " + std::to_string(pos) + " of len " +
                 std::to_string(len & ~kPadFlag) + " passes " + (pad > to_end ? "the end" : "head");
        return Status::kCorrupt;
      }
      pos_index += static_cast<uint32_t>(pad);
      if (from == read_pos_ && read_pos_ == released_) {
        read_pos_ = pos_index;
        StoreTail(pos_index);
        from = pos_index;
      }
      continue;
    }
    const uint64_t record = RecordSize(len);
    if (record > to_end) {
      error_ = "record at offset " + std::to_string(pos) + " of len " + std::to_string(len) +
               " crosses the end of the data area";
      return Status::kCorrupt;
    }
    if (record > avail) {
      error_ = "record at offset " + std::to_string(pos) + " of len " + std::to_string(len) +
               " passes head";
      return Status::kCorrupt;
    }
    out->data = data() + pos + kLenSize;
    out->len = len;
    out->end = pos_index + static_cast<uint32_t>(record);
    return Status::kOk;
  }
}

uint32_t ByteRingBuffer::Read(void* out, uint32_t max_len) {
  const ReadResult r = TryRead(out, max_len);
  return r.status == Status::kOk ? r.len : 0;  // a too-large message stays for TryRead
}

ReadResult ByteRingBuffer::TryRead(void* out, uint32_t max_len) {
  MessageView v;
  const Status s = Peek(&v);
  if (s != Status::kOk) return {s, 0};
  if (v.len > max_len) return {Status::kBufferTooSmall, v.len};
  if (v.len != 0) std::memcpy(out, v.data, v.len);
  Release();
  return {Status::kOk, v.len};
}

Status ByteRingBuffer::Peek(MessageView* out) {
  if (read_pos_ != released_) return Status::kInvalid;  // Acquire'd records held
  const Status s = NextRecord(read_pos_, out);
  if (s == Status::kOk) {
    peeked_ = true;
    peek_end_ = out->end;
  }
  return s;
}

void ByteRingBuffer::Release() {
  if (!peeked_) return;
  peeked_ = false;
  read_pos_ = peek_end_;
  ++read_seq_;  // one message read
  if (pinned_) {
    StoreTail(read_pos_);  // a live receiver's pin moves at once
  } else if (released_ != read_pos_) {
    LazyRelease(read_pos_);
  }
}

Status ByteRingBuffer::Acquire(MessageView* out) {
  const Status s = NextRecord(read_pos_, out);
  if (s == Status::kOk) {
    read_pos_ = out->end;
    ++read_seq_;  // one message read
    peeked_ = false;
  }
  return s;
}

uint32_t ByteRingBuffer::AttachSlot(bool at_newest, uint32_t pid) {
  if (!valid_ || is_producer_) return 0;
  uint8_t* slot = base_ + SlotOffset(slot_);
  uint32_t* tail = word(tail_off_);
  // The head mark first, then the head: a sound producer's mark is covered by it.
  const uint64_t head_mark = HeadMark();
  const uint32_t head = atomics::LoadAcquire(word(kHeadOffset));
  uint32_t start = atomics::LoadRelaxed(tail) & ~kSlotIdle;  // own word
  const uint32_t marked = MarkIndex(head_mark);
  const bool mark_ok = marked % kRecordAlign == 0 && head - marked <= capacity_;
  read_seq_known_ = false;
  if (at_newest) {
    // The published head whose sequence number the producer gave with it.
    start = mark_ok ? marked : head;
    read_seq_ = MarkSeq(head_mark);
    read_seq_known_ = mark_ok;
  } else if (max_receivers_ > 1) {
    // Others read the ring: the producer kept what the oldest of them protects,
    // not this slot's old tail. Alone: this slot's tail (slot 0 keeps the backlog).
    bool any = false;
    uint32_t oldest = head;
    for (uint32_t k = 0; k < max_receivers_; ++k) {
      if (k == slot_ || !(SlotFlags(k) & kConsumerAttached)) continue;
      const uint32_t t = SlotTail(k) & ~kSlotIdle;
      if (head - t > capacity_ || t % kRecordAlign != 0) continue;
      if (!any || head - t > head - oldest) oldest = t;
      any = true;
    }
    if (any || head - start > capacity_ || start % kRecordAlign != 0) start = oldest;
  }
  atomics::StoreRelaxed(reinterpret_cast<uint32_t*>(slot + kSlotMode), mode_);
  atomics::StoreRelaxed64(reinterpret_cast<uint64_t*>(slot + kSlotSkipped), 0);
  read_pos_ = released_ = stored_ = start;
  peeked_ = false;
  pinned_ = false;
  check_floor_ = false;
  for (int attempt = 0;; ++attempt) {
    // Lossless: the start is a tail the producer must honour; store it, full fence,
    // load the floor (as PinForRead). Live: idle until its first read pins.
    atomics::StoreRelease(tail, live_mode() ? (start | kSlotIdle) : start);
    if (attempt == 0) SetConsumerAttached(true, pid);
    atomics::FullFence();
    const uint32_t floor = atomics::LoadAcquire(word(kFloorOffset));
    if (live_mode() || static_cast<int32_t>(start - floor) >= 0) break;
    // Bounded: a floor above the head is impossible for a sound producer (a hostile
    // one gains nothing from a never-ending attach). A start that never passed the
    // check is not read from before the first read checks it again.
    if (attempt >= 5) {
      check_floor_ = true;
      break;
    }
    const uint32_t now = atomics::LoadAcquire(word(kHeadOffset));
    const uint32_t newest = atomics::LoadAcquire(word(kLastStartOffset));
    start = (static_cast<int32_t>(newest - floor) >= 0 && now - newest <= capacity_ && attempt < 4)
                ? newest
                : now;
    read_pos_ = released_ = stored_ = start;
    read_seq_known_ = false;  // a lossless receiver never skips: not needed
  }
  if (live_mode() && !read_seq_known_) {
    // A live receiver may skip later and counts the records it skips by sequence
    // numbers: learn the one of its start (or, when that cannot be done, start at
    // the head mark as a lapped receiver would).
    uint32_t seq = 0;
    if (SeqOfStart(start, &seq)) {
      read_seq_ = seq;
      read_seq_known_ = true;
    } else if (mark_ok) {
      const uint64_t now_mark = HeadMark();
      const uint32_t now = atomics::LoadAcquire(word(kHeadOffset));
      start = MarkIndex(now_mark);
      read_seq_ = MarkSeq(now_mark);
      read_seq_known_ = start % kRecordAlign == 0 && now - start <= capacity_;
      if (!read_seq_known_) start = now;
      read_pos_ = released_ = stored_ = start;
      atomics::StoreRelease(tail, start | kSlotIdle);
    }
  }
  head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
  return start;
}

bool ByteRingBuffer::SeqOfStart(uint32_t start, uint32_t* seq) {
  uint32_t* tail = word(tail_off_);
  // Pin the start (store, full fence, floor: as PinForRead) so that nothing from
  // it on is reused while we walk.
  atomics::StoreRelaxed(tail, start);
  atomics::FullFence();
  const uint32_t floor = atomics::LoadAcquire(word(kFloorOffset));
  const uint64_t mark = HeadMark();  // acquire: the records up to it are published
  const uint32_t end = MarkIndex(mark);
  bool ok = static_cast<int32_t>(start - floor) >= 0 && end - start <= capacity_ &&
            ((start | end) % kRecordAlign) == 0;
  uint32_t at = start;
  uint32_t messages = 0;
  // Every step moves at least 8 bytes and never past `end`: at most capacity/8 steps.
  while (ok && at != end) {
    const uint32_t avail = end - at;
    const uint32_t pos = at & mask_;
    const uint32_t to_end = capacity_ - pos;
    const uint32_t len = LoadU32(data() + pos);
    uint64_t size;
    if (len == kWrapMarker) {
      size = to_end;
    } else if (IsPad(len)) {
      size = RecordSize(len & ~kPadFlag);
    } else {
      size = RecordSize(len);
      ++messages;
    }
    ok = size <= to_end && size <= avail;
    if (ok) at += static_cast<uint32_t>(size);
  }
  atomics::StoreRelease(tail, start | kSlotIdle);  // unpinned again: nothing held
  pinned_ = false;
  *seq = MarkSeq(mark) - messages;
  return ok;
}

uint32_t ByteRingBuffer::ResumeTarget(uint32_t floor, bool allow_sync, bool allow_last,
                                      uint32_t* seq, bool* seq_known) {
  // The marks first, then the head (acquire): the producer stores each mark after
  // the head store that published what it names, so a sound mark is covered.
  const uint64_t sync = SyncMark();
  const uint64_t last = LastMark();
  const uint64_t head_mark = HeadMark();
  const uint32_t head = atomics::LoadAcquire(word(kHeadOffset));
  head_cache_ = head;
  // A mark from a hostile or broken producer is only ever a position to pin and
  // check again: aligned, published, not below the floor.
  const auto usable = [&](uint32_t at) {
    return at % kRecordAlign == 0 && head - at <= capacity_ &&
           static_cast<int32_t>(at - floor) >= 0;
  };
  *seq_known = true;
  if (allow_sync && usable(MarkIndex(sync))) {
    *seq = MarkSeq(sync);
    return MarkIndex(sync);
  }
  if (allow_last && usable(MarkIndex(last))) {
    *seq = MarkSeq(last);
    return MarkIndex(last);
  }
  if (usable(MarkIndex(head_mark))) {
    *seq = MarkSeq(head_mark);
    return MarkIndex(head_mark);
  }
  *seq_known = false;
  return head;
}

bool ByteRingBuffer::PinForRead(uint32_t* at_io) {
  uint32_t* tail = word(tail_off_);
  uint32_t at = *at_io;
  for (int attempt = 0;; ++attempt) {
    // Store the pin, full fence, load the floor; the producer stores the floor,
    // fences and reads the pins: one of the two sees the other.
    atomics::StoreRelaxed(tail, at);
    pinned_ = true;
    atomics::FullFence();
    const uint32_t floor = atomics::LoadAcquire(word(kFloorOffset));
    *at_io = at;
    if (static_cast<int32_t>(at - floor) >= 0) return true;
    // Bounded (a hostile floor above the head fails every look), and never unsafe:
    // `at` may be overwritten under a cached limit the producer computed before it
    // saw our pin, so a receiver that gives up reads nothing (the caller's kEmpty).
    if (attempt >= 5) return false;
    // `at` may be a WRAP marker (or PAD records) before the lap's start: the floor
    // passing it reused nothing this receiver needs when the next lap's start is at
    // or above the floor and no message lies between (its sequence number is ours).
    // Go on there, losing nothing (SeqOfStart pins it while it counts).
    const uint32_t pos = at & mask_;
    if (attempt == 0 && pos != 0 && read_seq_known_) {
      const uint32_t lap = at + (capacity_ - pos);
      uint32_t lap_seq = 0;
      if (static_cast<int32_t>(lap - floor) >= 0 && SeqOfStart(lap, &lap_seq) &&
          lap_seq == read_seq_) {
        at = lap;
        read_pos_ = at;
        released_ = at;
        stored_ = at;
        // (SeqOfStart left the tail at `lap`, unpinned.) A producer asleep on our old
        // pin must look again.
        atomics::FullFence();
        if (atomics::LoadRelaxed(word(kProducerFlagsOffset)) & kProducerWaiting) {
          wait::WakeWord(tail);
        }
        continue;
      }
    }
    // The producer may have reused `at`: resume at the newest sync point (a key
    // frame) still in the ring, or, when there is none, at the newest record, or,
    // while that is being reused too, at the published head: wait for what comes next.
    uint32_t seq = 0;
    bool seq_known = false;
    at = ResumeTarget(floor, attempt < 2, attempt < 4, &seq, &seq_known);
    read_pos_ = at;
    released_ = at;
    stored_ = at;
    // Records skipped: the sequence numbers say how many; without them, at least one.
    uint64_t lost = 1;
    if (seq_known && read_seq_known_) {
      lost = static_cast<int32_t>(seq - read_seq_) > 0 ? seq - read_seq_ : 0;
    }
    read_seq_ = seq;
    read_seq_known_ = seq_known;
    auto* skipped = reinterpret_cast<uint64_t*>(base_ + SlotOffset(slot_) + kSlotSkipped);
    atomics::StoreRelaxed64(skipped, atomics::LoadRelaxed64(skipped) + lost);  // own word
    // A producer asleep on our old pin must look again (it may wait for that word).
    atomics::StoreRelease(tail, at);
    atomics::FullFence();
    if (atomics::LoadRelaxed(word(kProducerFlagsOffset)) & kProducerWaiting) {
      wait::WakeWord(tail);
    }
  }
}

uint32_t ByteRingBuffer::SkipToHead() {
  if (!valid_ || is_producer_ || read_pos_ != released_) return read_pos_;
  // Acquire: pairs with the producer's release of the head (nothing is read here,
  // but NextRecord reads from this index on). The head mark's head when sound (its
  // sequence number comes with it), else the head.
  const uint64_t mark = HeadMark();
  head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
  const uint32_t marked = MarkIndex(mark);
  // Never behind our position: between the producer's head store and its mark
  // store the mark names the previous head, which we may have read past.
  read_seq_known_ = marked % kRecordAlign == 0 && head_cache_ - marked <= capacity_ &&
                    static_cast<int32_t>(marked - read_pos_) >= 0;
  read_seq_ = MarkSeq(mark);
  read_pos_ = read_seq_known_ ? marked : head_cache_;
  peeked_ = false;
  StoreTail(read_pos_);  // wakes a producer waiting for the space
  return read_pos_;
}

void ByteRingBuffer::ReleaseTo(uint32_t end) {
  // Only forward, never past what was handed out.
  if (end - released_ == 0 || end - released_ > read_pos_ - released_) return;
  if (end == read_pos_) {
    const uint32_t past_marker = SkipPublishedMarker(end);
    if (past_marker != end) {
      StoreTail(past_marker);  // a producer may wait for exactly that lap: at once
      return;
    }
  }
  LazyRelease(end);
}

// Everything before `at` (== read_pos_) is being freed: if a published WRAP marker
// sits at `at`, the consumer has nothing to do before it, so its lap is freed with
// the rest (NextRecord does the same when nothing is held). Returns the new tail.
// Anything that does not look right is left for NextRecord to report.
uint32_t ByteRingBuffer::SkipPublishedMarker(uint32_t at) {
  if (live_mode()) return at;  // unpinned bytes may be reused: NextRecord skips it pinned
  head_cache_ = atomics::LoadAcquire(word(kHeadOffset));
  for (;;) {
    const uint32_t avail = head_cache_ - at;
    if (avail == 0 || avail > capacity_ || ((head_cache_ | at) % kRecordAlign) != 0) return at;
    const uint32_t pos = at & mask_;
    const uint32_t to_end = capacity_ - pos;
    const uint32_t len = LoadU32(data() + pos);
    uint64_t skip = 0;
    if (len == kWrapMarker) {
      skip = to_end;
    } else if (IsPad(len)) {
      skip = RecordSize(len & ~kPadFlag);  // PAD records after the freed ones go too
    } else {
      return at;
    }
    if (skip > to_end || skip > avail) return at;
    at += static_cast<uint32_t>(skip);
    read_pos_ = at;
  }
}

uint32_t ByteRingBuffer::ReadableBytes() const {
  if (!valid_) return 0;
  return atomics::LoadAcquire(word(kHeadOffset)) - released_;
}

bool ByteRingBuffer::HasData() const {
  if (!valid_ || is_producer_) return false;
  // The same checks as NextRecord, on a fresh head; only WRAP markers and PAD
  // records are acted on (skipped, and freed when nothing is held before them).
  const uint32_t head = atomics::LoadAcquire(word(kHeadOffset));
  // A live receiver reads record bytes only pinned (NextRecord): anything published
  // past its position counts (a WRAP marker alone is rare and harmless here).
  if (live_mode()) return head != read_pos_;
  uint32_t at = read_pos_;
  bool after_marker = false;
  for (;;) {
    const uint32_t avail = head - at;
    if (avail == 0 || avail > capacity_ || ((head | at) % kRecordAlign) != 0) return false;
    const uint32_t pos = at & mask_;
    const uint32_t to_end = capacity_ - pos;
    const uint32_t len = LoadU32(data() + pos);
    uint32_t skip = 0;
    if (len == kWrapMarker) {
      if (to_end > avail || after_marker) return false;  // a marker right after a marker is corrupt
      skip = to_end;  // the record after the marker starts the next lap
      after_marker = true;
    } else if (IsPad(len)) {
      const uint64_t pad = RecordSize(len & ~kPadFlag);
      if (pad > to_end || pad > avail) return false;
      skip = static_cast<uint32_t>(pad);
      after_marker = false;
    } else {
      return RecordSize(len) <= to_end && RecordSize(len) <= avail;
    }
    if (at == read_pos_ && read_pos_ == released_ && !peeked_) {
      head_cache_ = head;  // acquired just now; the cursor moves within it
      read_pos_ = at + skip;
      StoreTail(read_pos_);  // nothing held before it: free it now
    }
    at += skip;
  }
}

Status ByteRingBuffer::WaitReadable(int64_t timeout_ns, Interrupter* intr) {
  if (!valid_ || is_producer_) return Status::kInvalid;
  const int64_t deadline = timeout_ns < 0 ? 0 : NowNs() + timeout_ns;
  MessageView v;
  struct End {
    const ByteRingBuffer* ring;
    ~End() { ring->EndSleep(); }
  } end{this};
  for (int spin = 0;; ++spin) {
    const Status s = NextRecord(read_pos_, &v);
    if (s != Status::kEmpty) return s;  // kOk, kClosed or kCorrupt
    if (intr != nullptr && intr->interrupted()) return Status::kInterrupted;
    const int64_t left = Remaining(deadline, timeout_ns);
    if (left == 0) return Status::kTimeout;
    if (spin < kSpinPolls) continue;
    // Capped at the liveness slice: on a kernel without futex_waitv a CLOSED that
    // lands between our last look and the sleep is seen at the next look.
    SleepWhileHeadIs(head_cache_, CapNap(left, kLivenessSliceNs), intr);
  }
}

void ByteRingBuffer::SleepWhileHeadIs(uint32_t seen, int64_t timeout_ns, Interrupter* intr) const {
  if (!valid_ || is_producer_) return;
  SleepWhileHeadIs(seen, atomics::LoadAcquire(word(kProducerOwnerOffset)), timeout_ns, intr);
}

void ByteRingBuffer::SleepWhileHeadIs(uint32_t seen, uint32_t owner_seen, int64_t timeout_ns,
                                      Interrupter* intr) const {
  if (!valid_ || is_producer_) return;
  uint32_t* head = word(kHeadOffset);
  uint32_t* pflags = word(kProducerFlagsOffset);
  if (!sleeping_) {
    // The running -> sleeping transition: set WAITING, fence, then look again
    // (below): either the producer's wake check sees WAITING, or we see its new
    // head (or CLOSED). RMWs on our own flags word are atomic, so another thread
    // of ours touching ATTACHED meanwhile is safe. WAITING then stays set, and
    // fenced, for every re-sleep until EndSleep().
    // The sleep count first (below), then WAITING | COUNTS_SLEEPS, then the fence.
    // A fence before the bump too: our look at the head (`seen`) comes before it, so
    // a waker that reads the new count before its head store knows we looked earlier.
    atomics::FullFence();
    BumpSleeps();
    atomics::FetchOrRelaxed(word(flags_off_), kConsumerWaiting | kConsumerCountsSleeps);
    atomics::FullFence();
    wait::NoteWaitingSet();
    sleeping_ = true;
    fenced_ = false;
  } else {
    // A re-sleep: a producer that already woke this wait's previous sleep skips the
    // wake unless it sees a new count after its own full fence (DESIGN.md "Wake once
    // per sleep"): fence (after the look that gave `seen`), bump, full fence, then
    // the look at the head below.
    atomics::FullFence();
    BumpSleeps();
    atomics::FullFence();
  }
  int64_t nap = timeout_ns;
  if (!fenced_) {
    // Once per transition: a producer whose fast path has only a compiler barrier
    // needs our membarrier to order its head store before its WAITING load.
    if (!(atomics::LoadRelaxed(pflags) & kProducerMembarrier) || wait::HeavyBarrier()) {
      fenced_ = true;
    } else {
      nap = CapNap(timeout_ns, kUnfencedNapNs);  // the waker's fast path is unordered: poll
    }
  }
  const uint32_t pf = atomics::LoadAcquire(pflags);
  // The owner word: the kernel's wake at the producer's death, or any change since
  // the caller's look (`owner_seen`), ends the sleep; the caller looks again.
  const uint32_t* owner = word(kProducerOwnerOffset);
  if (atomics::LoadAcquire(head) == seen && !(pf & kProducerClosed)) {
    if (intr != nullptr) intr->BeginSleep(head);
    // On the head and the producer's flags together: CLOSED changes the flags, not
    // the head, and its wake must not be lost between our look and the sleep.
    if (intr == nullptr || !intr->interrupted()) {
      wait::WaitOnWords(head, seen, pflags, pf, owner, owner_seen, nap);
    }
    if (intr != nullptr) intr->EndSleep();
  }
}

void ByteRingBuffer::EndSleep() const {
  if (!sleeping_) return;
  sleeping_ = false;
  atomics::FetchAndRelaxed(word(flags_off_), ~(kConsumerWaiting | kConsumerCountsSleeps));
}

void ByteRingBuffer::BumpSleeps() const {
  uint32_t* sleeps = word(SlotOffset(slot_) + kSlotSleeps);
  atomics::StoreRelaxed(sleeps, atomics::LoadRelaxed(sleeps) + 1);  // own word, wraps
}

void ByteRingBuffer::SetConsumerAttached(bool attached, uint32_t pid) {
  if (!valid_) return;
  if (attached) {
    atomics::StoreRelaxed(word(SlotOffset(slot_) + kSlotPid), pid);
    // A producer that acquires the new count sees the slot's reset words and new
    // tail (stored before): the fence makes the relaxed count bump a release. Without
    // it a weakly ordered CPU may show the count first, and the producer would count
    // the dead receiver's old (lapped) tail left in the slot.
    // A receiver that died asleep left WAITING (and COUNTS_SLEEPS) set: cleared, so
    // a producer does not skip the wakes of a receiver here that does not count its
    // sleeps on the dead one's count (PROTOCOL.md section 4, "Wake once per sleep").
    atomics::FetchAndRelaxed(word(flags_off_), ~(kConsumerWaiting | kConsumerCountsSleeps));
    sleeping_ = false;
    atomics::FullFence();
    atomics::FetchAddRelaxed(word(flags_off_), kConsumerAttachCountOne);  // wraps
    atomics::FetchOrRelease(word(flags_off_), kConsumerAttached);
  } else {
    if (live_mode()) {
      // Leaving: a live slot's position becomes a plain tail again (slot 0 of a ring
      // nobody else reads keeps the backlog from here, as a lossless slot does).
      atomics::StoreRelease(word(SlotOffset(slot_) + kSlotMode), kModeLossless);
      atomics::StoreRelease(word(tail_off_), released_);
      stored_ = released_;
    }
    atomics::FetchAndRelaxed(word(flags_off_), ~kConsumerAttached);
    atomics::StoreRelease(word(SlotOffset(slot_) + kSlotPid), 0);
    // A producer asleep for space sleeps on our flags word too: it hears the
    // detach at once (the flags changed) instead of at its next liveness look.
    atomics::FullFence();
    if (atomics::LoadRelaxed(word(kProducerFlagsOffset)) & kProducerWaiting) {
      wait::WakeWord(word(tail_off_));
    }
  }
}

// ---- header looks -------------------------------------------------------------

bool ByteRingBuffer::ProducerClosed() const { return (ProducerFlags() & kProducerClosed) != 0; }
bool ByteRingBuffer::ProducerLive() const { return (ProducerFlags() & kProducerLive) != 0; }
uint32_t ByteRingBuffer::ProducerFlags() const {
  return atomics::LoadAcquire(word(kProducerFlagsOffset));
}
uint32_t ByteRingBuffer::ProducerOwner() const {
  return atomics::LoadAcquire(word(kProducerOwnerOffset));
}
uint32_t* ByteRingBuffer::ProducerOwnerWord() const {
  return valid_ ? word(kProducerOwnerOffset) : nullptr;
}
uint32_t ByteRingBuffer::ProducerPid() const {
  return atomics::LoadRelaxed(word(kProducerPidOffset));
}
uint32_t ByteRingBuffer::ConsumerFlags() const { return atomics::LoadAcquire(word(flags_off_)); }
uint32_t ByteRingBuffer::ConsumerPid() const {
  return atomics::LoadRelaxed(word(SlotOffset(slot_) + kSlotPid));
}
uint32_t ByteRingBuffer::SlotFlags(uint32_t k) const {
  return k < max_receivers_ ? atomics::LoadAcquire(word(SlotOffset(k) + kSlotFlags)) : 0;
}
uint32_t ByteRingBuffer::SlotPid(uint32_t k) const {
  return k < max_receivers_ ? atomics::LoadRelaxed(word(SlotOffset(k) + kSlotPid)) : 0;
}
uint32_t ByteRingBuffer::SlotMode(uint32_t k) const {
  return k < max_receivers_ ? atomics::LoadRelaxed(word(SlotOffset(k) + kSlotMode)) : 0;
}
uint32_t ByteRingBuffer::SlotTail(uint32_t k) const {
  return k < max_receivers_ ? atomics::LoadAcquire(word(SlotOffset(k) + kSlotTail)) : 0;
}
uint64_t ByteRingBuffer::SlotSkipped(uint32_t k) const {
  return k < max_receivers_ ? atomics::LoadRelaxed64(reinterpret_cast<const uint64_t*>(
                                  base_ + SlotOffset(k) + kSlotSkipped))
                            : 0;
}
uint64_t ByteRingBuffer::Skipped() const { return SlotSkipped(slot_); }
uint64_t ByteRingBuffer::HeadMark() const {
  return atomics::LoadAcquire64(reinterpret_cast<const uint64_t*>(base_ + kHeadMarkOffset));
}
uint64_t ByteRingBuffer::SyncMark() const {
  return atomics::LoadAcquire64(reinterpret_cast<const uint64_t*>(base_ + kSyncMarkOffset));
}
uint64_t ByteRingBuffer::LastMark() const {
  return atomics::LoadAcquire64(reinterpret_cast<const uint64_t*>(base_ + kLastMarkOffset));
}
uint64_t ByteRingBuffer::Dropped() const {
  return atomics::LoadRelaxed64(reinterpret_cast<const uint64_t*>(base_ + kDroppedOffset));
}
uint32_t ByteRingBuffer::LoadHead() const { return atomics::LoadAcquire(word(kHeadOffset)); }
uint32_t ByteRingBuffer::LoadTail() const {
  return atomics::LoadAcquire(word(tail_off_)) & ~kSlotIdle;
}

}  // namespace shm
