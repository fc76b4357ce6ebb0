// Shared-memory layout version 1: the one C++ definition of every offset,
// size and constant. docs/PROTOCOL.md describes it; tests/vectors/ pins it.
// Every function here is constexpr and pure: any thread; never blocks.
#pragma once

#include <cstdint>

namespace shm {
namespace layout {

// Header field offsets (bytes from the start of the segment).
constexpr uint32_t kHeadOffset = 0;            // u32, producer
constexpr uint32_t kTailOffset = 4;            // u32, consumer
constexpr uint32_t kCapacityOffset = 8;        // u32, creator
constexpr uint32_t kMagicOffset = 12;          // u32, creator, stored last
constexpr uint32_t kVersionOffset = 16;        // u16, creator
constexpr uint32_t kHeaderSizeOffset = 18;     // u16, creator
constexpr uint32_t kProfileOffset = 20;        // u32, creator
constexpr uint32_t kGenerationOffset = 24;     // u64, creator
constexpr uint32_t kProducerFlagsOffset = 32;  // u32, producer
constexpr uint32_t kProducerPidOffset = 36;    // u32, producer
constexpr uint32_t kConsumerFlagsOffset = 40;  // u32, consumer
constexpr uint32_t kConsumerPidOffset = 44;    // u32, consumer
constexpr uint32_t kDroppedOffset = 48;        // u64, producer
constexpr uint32_t kReservedOffset = 56;       // zero up to kHeaderSize

constexpr uint32_t kHeaderSize = 128;  // offset of the data area
constexpr uint16_t kVersion = 1;
// The bytes 'S' 'R' 'N' 'G' read as a little-endian u32.
constexpr uint32_t kMagic = 0x474E5253u;

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
// consumer_flags bits (written by the consumer only).
constexpr uint32_t kConsumerAttached = 1u << 0;
constexpr uint32_t kConsumerWaiting = 1u << 1;     // asleep on the head word
constexpr uint32_t kConsumerMembarrier = 1u << 2;  // fast path uses a compiler barrier only
// consumer_flags bits 16..31: how many times a consumer attached (each attach adds
// one, wrapping), so the producer can tell a new consumer from the one it saw
// before even when both have the same pid (a pipeline restarted in one process).
constexpr uint32_t kConsumerAttachCountShift = 16;
constexpr uint32_t kConsumerAttachCountOne = 1u << kConsumerAttachCountShift;

// Records: [u32 len][payload], padded to kRecordAlign, never split at the end.
constexpr uint32_t kLenSize = 4;
constexpr uint32_t kRecordAlign = 8;
constexpr uint32_t kWrapMarker = 0xFFFFFFFFu;
constexpr uint32_t kMaxValidLen = 0x7FFFFFFFu;  // 0x80000000..0xFFFFFFFE are invalid

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

static_assert(kReservedOffset == kDroppedOffset + 8, "dropped is the last used field");
static_assert(kHeaderSize % kRecordAlign == 0, "data area must be record aligned");
static_assert(RecordSize(0) == 8 && RecordSize(4) == 8 && RecordSize(5) == 16, "record padding");
static_assert(RecordSize(MaxPayload(kMinCapacity)) == kMinCapacity, "max payload fills the ring");
static_assert(RoundUpCapacity(65) == 128 && RoundUpCapacity(1) == 64, "capacity rounds up");

}  // namespace layout
}  // namespace shm
