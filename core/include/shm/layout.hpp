// Shared-memory layout version 2: the one C++ definition of every offset,
// size and constant. docs/PROTOCOL.md describes it; tests/vectors/ pins it.
// Every function here is constexpr and pure: any thread; never blocks.
#pragma once

#include <cstdint>

namespace shm {
namespace layout {

// The header is built from 128-byte blocks: each side's frequently written words
// and each side's flags sit in blocks of their own, so a store by one side never
// invalidates the line the other side polls (128, not 64: adjacent-line prefetchers
// fetch 64-byte lines in pairs). See docs/PROTOCOL.md section 2.
constexpr uint32_t kBlockSize = 128;

// Block 0 (offset 0): written by the creator before the magic, immutable after.
// Offsets 0..7 are zero (head and tail in version 1).
constexpr uint32_t kCapacityOffset = 8;       // u32, creator
constexpr uint32_t kMagicOffset = 12;         // u32, creator, stored last
constexpr uint32_t kVersionOffset = 16;       // u16, creator
constexpr uint32_t kHeaderSizeOffset = 18;    // u16, creator
constexpr uint32_t kProfileOffset = 20;       // u32, creator
constexpr uint32_t kGenerationOffset = 24;    // u64, creator
constexpr uint32_t kMaxReceiversOffset = 32;  // u32, creator: receiver slots in use, 1..16
// Block 1 (offset 128): the producer's index, alone on its lines.
constexpr uint32_t kHeadOffset = 128;  // u32, producer
// Ring index of the newest published record (not a WRAP marker): where a live
// receiver that fell behind jumps to. Stored before the head that publishes it.
constexpr uint32_t kLastStartOffset = 132;  // u32, producer
// Record sequence numbers: the n-th message the producer publishes (PAD records and
// WRAP markers are not messages) has sequence n - 1, wrapping at 2^32. Each mark is
// one u64 (ring index | sequence << 32) stored with release AFTER the head store
// that published what it names, so one acquire load gives a consistent pair that
// the head already covers. A receiver that knows the sequence of its position
// counts the records a skip passes over: sequence(new) - sequence(old).
// The head as published, with the number of messages published before it.
constexpr uint32_t kHeadMarkOffset = 136;  // u64, producer
// The newest published sync point (a record the producer marked as a place to start
// decoding: a key frame; profile 0 and unmarked writes: every message) and its
// sequence number. Where a live receiver that fell behind resumes when it is still
// in the ring.
constexpr uint32_t kSyncMarkOffset = 144;  // u64, producer
// The newest published record (last_start) and its sequence number (a PAD record has
// the sequence number of the message after it): where a lapped live receiver
// resumes when no sync point is left.
constexpr uint32_t kLastMarkOffset = 152;  // u64, producer
// Ring index (low 32 bits) and sequence number (high 32 bits) of a mark word.
constexpr uint32_t MarkIndex(uint64_t mark) { return static_cast<uint32_t>(mark); }
constexpr uint32_t MarkSeq(uint64_t mark) { return static_cast<uint32_t>(mark >> 32); }
constexpr uint64_t Mark(uint32_t index, uint32_t seq) {
  return uint64_t{index} | (uint64_t{seq} << 32);
}
// Block 2 (offset 256): the producer's flags and rarely written words.
constexpr uint32_t kProducerFlagsOffset = 256;  // u32, producer
constexpr uint32_t kProducerPidOffset = 260;    // u32, producer
constexpr uint32_t kDroppedOffset = 264;        // u64, producer
// Reuse floor: the producer may overwrite the bytes of ring indices below it (it
// stores the floor, fences, then reads the slots again before it reuses them). A
// receiver that takes a position stores it, fences, reads the floor: a position
// below the floor may be overwritten already. See docs/DESIGN.md "Fan-out".
constexpr uint32_t kFloorOffset = 272;  // u32, producer
// The producer's sleeps for space so far (wrapping), bumped before each sleep's
// fence while kProducerCountsSleeps is set (docs/DESIGN.md "Wake once per sleep").
constexpr uint32_t kProducerSleepsOffset = 276;  // u32, producer
// The producer's owner word: a robust-futex word (Linux). A producer that arms it
// stores its arming thread's id | kOwnerWaiters; when that process dies (any way)
// or execs, the kernel stores kOwnerWaiters | kOwnerDied and wakes one sleeper on
// it. 0 = not armed (older producers, Python ones included, other systems, a failed
// arming). A wake-up trigger only: the producer's lock byte stays the verdict
// (docs/PROTOCOL.md).
constexpr uint32_t kProducerOwnerOffset = 280;   // u32, producer (the kernel at its death)
constexpr uint32_t kOwnerWaiters = 0x80000000u;  // FUTEX_WAITERS
constexpr uint32_t kOwnerDied = 0x40000000u;     // FUTEX_OWNER_DIED
constexpr uint32_t kOwnerTidMask = 0x3FFFFFFFu;  // FUTEX_TID_MASK
// Block 3 (offset 384): reserved, zero.
// Receiver slots from offset 512, 256 bytes each: a block with the slot's index
// (written by its receiver on release) and a block with the slot's flags, pid,
// mode and counters (written by its receiver when it attaches, sleeps or skips).
constexpr uint32_t kSlotsOffset = 512;
constexpr uint32_t kSlotSize = 2 * kBlockSize;
constexpr uint32_t kMaxReceiversLimit = 16;
constexpr uint32_t kSlotTail = 0;       // u32, receiver: its tail
constexpr uint32_t kSlotFlags = 128;    // u32, receiver: ATTACHED/WAITING/MEMBARRIER, count
constexpr uint32_t kSlotPid = 132;      // u32, receiver: information only on Linux
constexpr uint32_t kSlotMode = 136;     // u32, receiver: kModeLossless or kModeLive
constexpr uint32_t kSlotSkipped = 144;  // u64, receiver: records it skipped (live mode)
// u32, receiver: its sleeps so far (wrapping), bumped before each sleep's fence by a
// receiver that sets kConsumerCountsSleeps; lets the producer skip a wake it already
// issued for the same sleep (docs/DESIGN.md "Wake once per sleep").
constexpr uint32_t kSlotSleeps = 152;
// A live receiver's tail word holds its pin: the start of the oldest record it
// holds. With nothing held it holds its read position | kSlotIdle, and the
// producer does not wait for it.
constexpr uint32_t kSlotIdle = 1;
constexpr uint32_t SlotOffset(uint32_t k) { return kSlotsOffset + k * kSlotSize; }
// The single consumer of a ring with max_receivers 1 uses slot 0: these names are
// slot 0's words.
constexpr uint32_t kTailOffset = kSlotsOffset + kSlotTail;                // 512
constexpr uint32_t kConsumerFlagsOffset = kSlotsOffset + kSlotFlags;      // 640
constexpr uint32_t kConsumerPidOffset = kSlotsOffset + kSlotPid;          // 644
constexpr uint32_t kConsumerModeOffset = kSlotsOffset + kSlotMode;        // 648
constexpr uint32_t kConsumerSkippedOffset = kSlotsOffset + kSlotSkipped;  // 656
// Zero from here up to kHeaderSize.
constexpr uint32_t kReservedOffset = kSlotsOffset + kMaxReceiversLimit * kSlotSize;
// Stream-info side area (producer): the latest stream description (profile 1: the
// last CAPS record's payload) for receivers that attach after that record is gone.
// [u32 seq (odd while written)][u32 ring index of its record][u32 len][u32 0][bytes].
constexpr uint32_t kInfoOffset = kReservedOffset;  // 4608
constexpr uint32_t kInfoSeq = 0;
constexpr uint32_t kInfoIndex = 4;
constexpr uint32_t kInfoLen = 8;
constexpr uint32_t kInfoData = 16;

// Offset of the data area: two pages, so the data area starts page-aligned.
constexpr uint32_t kHeaderSize = 8192;
constexpr uint16_t kVersion = 2;
// The bytes 'S' 'R' 'N' 'G' read as a little-endian u32.
constexpr uint32_t kMagic = 0x474E5253u;
// An opener needs this many bytes to read the magic and the version (both stay at
// these offsets in every version, so each version names the other in its error).
constexpr uint32_t kIdentSize = 20;

constexpr uint32_t kInfoMax = kHeaderSize - kInfoOffset - kInfoData;  // 3568 bytes

// Receiver modes (slot mode word).
constexpr uint32_t kModeLossless = 0;
constexpr uint32_t kModeLive = 1;

constexpr uint32_t kMinCapacity = 64;
constexpr uint32_t kMaxCapacity = 0x80000000u;  // 2^31

// Profiles: what the payloads mean.
constexpr uint32_t kProfileOpaque = 0;
constexpr uint32_t kProfileGstFraming = 1;

// producer_flags bits (written by the producer only).
constexpr uint32_t kProducerClosed = 1u << 0;      // end of stream
constexpr uint32_t kProducerWaiting = 1u << 1;     // asleep on the tail word
constexpr uint32_t kProducerMembarrier = 1u << 2;  // fast path uses a compiler barrier only
// The stream is live (a camera, not a file): a consumer that attaches starts at what
// is published after its attach, never at the backlog already in the ring.
constexpr uint32_t kProducerLive = 1u << 3;
// Set with WAITING by a producer that bumps its sleeps word before every sleep
// (cleared with WAITING); without it a receiver wakes it at every tail store while
// WAITING is set.
constexpr uint32_t kProducerCountsSleeps = 1u << 4;
// Slot flags bits (consumer_flags for slot 0; written by the slot's receiver only).
constexpr uint32_t kConsumerAttached = 1u << 0;
constexpr uint32_t kConsumerWaiting = 1u << 1;     // asleep on the head word
constexpr uint32_t kConsumerMembarrier = 1u << 2;  // fast path uses a compiler barrier only
// Set with WAITING by a receiver that bumps its kSlotSleeps word before every sleep
// (cleared with WAITING); without it the producer wakes on every publish while
// WAITING is set.
constexpr uint32_t kConsumerCountsSleeps = 1u << 3;
// consumer_flags bits 16..31: how many times a consumer attached (each attach adds
// one, wrapping), so the producer can tell a new consumer from the one it saw
// before even when both have the same pid (a pipeline restarted in one process).
constexpr uint32_t kConsumerAttachCountShift = 16;
constexpr uint32_t kConsumerAttachCountOne = 1u << kConsumerAttachCountShift;

// Records: [u32 len][payload], padded to kRecordAlign, never split at the end.
constexpr uint32_t kLenSize = 4;
constexpr uint32_t kRecordAlign = 8;
constexpr uint32_t kWrapMarker = 0xFFFFFFFFu;
constexpr uint32_t kMaxValidLen = 0x7FFFFFFFu;  // largest payload length a record may say
// PAD record: len = kPadFlag | n (n = payload bytes, < 2^31) is a record of
// RecordSize(n) bytes that every reader skips silently (a reservation the producer
// gave up, or the unused end of one published shorter). 0xFFFFFFFF stays WRAP.
constexpr uint32_t kPadFlag = 0x80000000u;
constexpr bool IsPad(uint32_t len) { return (len & kPadFlag) != 0 && len != kWrapMarker; }

// Size of the record holding a payload of `len` bytes (len <= kMaxValidLen).
constexpr uint64_t RecordSize(uint32_t len) {
  return (uint64_t{kLenSize} + len + (kRecordAlign - 1)) & ~uint64_t{kRecordAlign - 1};
}

// Largest payload a ring of `capacity` bytes can ever hold.
constexpr uint32_t MaxPayload(uint32_t capacity) { return capacity - kLenSize; }

constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

constexpr bool IsValidCapacity(uint64_t capacity) {
  return capacity >= kMinCapacity && capacity <= kMaxCapacity && IsPowerOfTwo(capacity);
}

// Smallest valid capacity >= `requested` (never rounds down); 0 if none exists.
constexpr uint32_t RoundUpCapacity(uint64_t requested) {
  if (requested > kMaxCapacity) return 0;
  uint64_t c = kMinCapacity;
  while (c < requested) c <<= 1;
  return static_cast<uint32_t>(c);
}

// Whether a segment of `size` bytes without a magic can be a ring whose creator is
// still between shm_open and its magic store: creators size the segment in one
// ftruncate, so it is empty or exactly header + a valid capacity. Anything else
// (a POSIX semaphore, another program's data) is foreign and never ours to remove.
constexpr bool MayBeRingInCreation(uint64_t size) {
  return size == 0 || (size >= kHeaderSize && IsValidCapacity(size - kHeaderSize));
}

static_assert(kReservedOffset == 512 + 16 * 256 && kReservedOffset <= kHeaderSize,
              "the receiver slots fit the header");
static_assert(kHeaderSize % 4096 == 0, "data area must be page aligned");
static_assert(kHeadOffset / kBlockSize != kProducerFlagsOffset / kBlockSize &&
                  kTailOffset / kBlockSize != kConsumerFlagsOffset / kBlockSize,
              "indices and flags on separate blocks");
static_assert(kHeadMarkOffset / kBlockSize == kHeadOffset / kBlockSize &&
                  kSyncMarkOffset / kBlockSize == kHeadOffset / kBlockSize &&
                  kLastMarkOffset / kBlockSize == kHeadOffset / kBlockSize &&
                  kHeadMarkOffset % 8 == 0 && kSyncMarkOffset % 8 == 0 && kLastMarkOffset % 8 == 0,
              "the marks are aligned u64 words of the producer's index block");
static_assert(kProducerOwnerOffset / kBlockSize == kProducerFlagsOffset / kBlockSize &&
                  kProducerOwnerOffset % 4 == 0,
              "the owner word is an aligned u32 of the producer's flags block");
static_assert(RecordSize(0) == 8 && RecordSize(4) == 8 && RecordSize(5) == 16, "record padding");
static_assert(RecordSize(MaxPayload(kMinCapacity)) == kMinCapacity, "max payload fills the ring");
static_assert(RoundUpCapacity(65) == 128 && RoundUpCapacity(1) == 64, "capacity rounds up");

}  // namespace layout
}  // namespace shm
