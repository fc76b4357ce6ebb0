// libFuzzer target: the consumer side of ByteRingBuffer over arbitrary segment bytes,
// with a hostile peer rewriting header words and record lens between the calls.
//
// The input is a script:
//   u8  capacity selector: capacity = 64 << (sel % 7)  (64 .. 4096)
//   u8  flags: 1 = segment flush against the trailing guard page (else the leading one)
//              2 = stamp magic, version and header_size (so most inputs attach)
//              4 = stamp the capacity word with the selected capacity
//              8 = several receivers: a u8 follows, max_receivers = 1 + u8 % 16 is
//                  stamped, and the consumer view binds slot u8' % 16 (another u8) in
//                  mode live when flag 16 is set (a slot past max_receivers is refused)
//   u16 n, then n bytes: the start of the segment (n is taken modulo size + 1; the rest is 0)
//   then operations until the input ends: a u8 opcode (modulo kOps) and its arguments.
// The segment (8192-byte header + capacity) sits in a mapping with PROT_NONE pages on
// both sides. Invariants: no access outside the segment (a fault or an ASan report is a
// crash), every message handed out lies inside the data area, a copying read never
// reports more bytes than the caller's buffer holds.
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "guarded_mapping.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/framing.hpp"
#include "shm/layout.hpp"

namespace {

using shm::ByteRingBuffer;
using shm::MessageView;
using shm::Status;
namespace layout = shm::layout;

// The copying read with a status: TryRead where the ring has it (beside the original
// API's Read returning the length), else Read returning ReadResult.
template <typename Ring>
auto CopyReadImpl(Ring& ring, void* out, uint32_t max_len, int)
    -> decltype(ring.TryRead(out, max_len)) {
  return ring.TryRead(out, max_len);
}
template <typename Ring>
shm::ReadResult CopyReadImpl(Ring& ring, void* out, uint32_t max_len, long) {
  return ring.Read(out, max_len);
}
shm::ReadResult CopyRead(ByteRingBuffer& ring, void* out, uint32_t max_len) {
  return CopyReadImpl(ring, out, max_len, 0);
}

enum Op : uint8_t {
  kPokeAnywhere,  // u16 offset, u32 value: the peer writes any 4 bytes of the segment
  kPokeHeader,    // u8 word, u32 value: the peer rewrites one of the first 16 header words
  kPokeLen,       // u8 records, u32 value: the peer rewrites a len word near the tail
  kPublish,       // u16 len: the peer appends a well-formed record (or a WRAP marker)
  kPeek,
  kRelease,
  kAcquire,
  kReleaseHeld,  // u8 which: ReleaseTo the end of a message Acquire returned
  kReleaseTo,    // u32 end: ReleaseTo any index
  kHasData,
  kReadableBytes,
  kCopyRead,  // u16 max_len
  // Fan-out: hostile receivers next to ours, a hostile floor / last_start, and a
  // producer view that must stay inside the data area whatever the slots say.
  kPokeSlot,       // u8 slot, u8 field, u32 value: another receiver's tail/flags/mode
  kPokeProducer,   // u8 which, u32 value (+ u32 seq): floor, last_start or a mark
  kAttachSlot,     // u8 newest: AttachSlot (start at head or at the oldest receiver)
  kProducerWrite,  // u16 len: a producer view over the segment writes a message
  kSkipped,
  kOps
};

struct Segment {
  uint8_t* base;
  uint32_t size;
  uint32_t capacity;
  uint32_t Load(uint32_t off) const {
    uint32_t v;
    std::memcpy(&v, base + off, 4);
    return v;
  }
  void Store(uint32_t off, uint32_t v) const { std::memcpy(base + off, &v, 4); }
  uint64_t Load64(uint32_t off) const {
    uint64_t v;
    std::memcpy(&v, base + off, 8);
    return v;
  }
  void Store64(uint32_t off, uint64_t v) const { std::memcpy(base + off, &v, 8); }
};

// A message handed out must lie inside the data area; reads every byte of it, and
// decodes it as a profile-1 message (what shmringsrc does with it).
void CheckView(const Segment& seg, Status s, const MessageView& v) {
  if (s != Status::kOk) return;
  const uint8_t* lo = seg.base + layout::kHeaderSize;
  const uint8_t* hi = seg.base + seg.size;
  if (v.data < lo || v.data > hi || v.len > static_cast<size_t>(hi - v.data)) __builtin_trap();
  volatile uint8_t sum = 0;
  for (uint32_t i = 0; i < v.len; ++i) sum = static_cast<uint8_t>(sum + v.data[i]);
  shm::framing::Header h;
  const uint8_t* body = nullptr;
  uint32_t body_len = 0;
  const char* error = nullptr;
  if (shm::framing::DecodeMessage(v.data, v.len, &h, &body, &body_len, &error)) {
    if (body < v.data || body + body_len != v.data + v.len) __builtin_trap();
  }
}

// The peer's producer side, without any checks of its own: the len word at head, then
// head moves on (a WRAP marker first when the record does not fit before the end).
// Bit 15 of len_arg makes the record a PAD record; last_start names the record, as a
// sound producer's (a PAD record included) before head; the head, last and (bit 14,
// not for a PAD record) sync marks follow the head as a sound producer's do.
void Publish(const Segment& seg, uint16_t len_arg) {
  const uint32_t len = len_arg % seg.capacity;
  const uint32_t pad = (len_arg & 0x8000u) != 0 ? layout::kPadFlag : 0;
  const uint32_t head = seg.Load(layout::kHeadOffset);
  const uint32_t pos = head & (seg.capacity - 1) & ~7u;
  const uint32_t to_end = seg.capacity - pos;
  const uint64_t record = layout::RecordSize(len);
  const uint32_t seq = layout::MarkSeq(seg.Load64(layout::kHeadMarkOffset));
  if (record > to_end) {
    seg.Store(layout::kHeaderSize + pos, layout::kWrapMarker);
    seg.Store(layout::kHeadOffset, head + to_end);
    seg.Store64(layout::kHeadMarkOffset, layout::Mark(head + to_end, seq));
    return;
  }
  seg.Store(layout::kHeaderSize + pos, len | pad);
  seg.Store(layout::kLastStartOffset, head);
  seg.Store(layout::kHeadOffset, head + static_cast<uint32_t>(record));
  seg.Store64(layout::kHeadMarkOffset,
              layout::Mark(head + static_cast<uint32_t>(record), pad ? seq : seq + 1));
  seg.Store64(layout::kLastMarkOffset, layout::Mark(head, seq));
  if (!pad && (len_arg & 0x4000u) != 0)
    seg.Store64(layout::kSyncMarkOffset, layout::Mark(head, seq));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shmfuzz::Script in(data, size);
  const uint32_t capacity = 64u << (in.U8() % 7);
  const uint8_t flags = in.U8();
  const uint32_t seg_size = layout::kHeaderSize + capacity;
  shmfuzz::GuardedMapping map(seg_size, (flags & 1) != 0);
  const Segment seg{map.data(), seg_size, capacity};
  const uint16_t n = in.U16();
  in.Take(seg.base, n % (seg_size + 1));
  if (flags & 2) {
    seg.Store(layout::kMagicOffset, layout::kMagic);
    const uint16_t version = layout::kVersion, header_size = layout::kHeaderSize;
    std::memcpy(seg.base + layout::kVersionOffset, &version, 2);
    std::memcpy(seg.base + layout::kHeaderSizeOffset, &header_size, 2);
  }
  if (flags & 4) seg.Store(layout::kCapacityOffset, capacity);
  uint32_t slot = 0;
  const uint32_t mode = (flags & 16) ? layout::kModeLive : layout::kModeLossless;
  if (flags & 8) {
    seg.Store(layout::kMaxReceiversOffset, 1u + in.U8() % 16);
    slot = in.U8() % 16;
  }

  uint32_t checked = 0;
  const std::string why = ByteRingBuffer::ValidateHeader(seg.base, seg_size, &checked);
  if (why.empty() && (checked < layout::kMinCapacity || checked > capacity)) __builtin_trap();
  const bool slot_ok = slot < seg.Load(layout::kMaxReceiversOffset);

  ByteRingBuffer ring(seg.base, uint64_t{seg_size}, slot, mode);
  // The constructor validates the same, and refuses a slot past max_receivers.
  if (ring.valid() != (why.empty() && slot_ok)) __builtin_trap();
  std::unique_ptr<ByteRingBuffer> producer;
  std::vector<uint32_t> held;
  while (!in.done()) {
    switch (static_cast<Op>(in.U8() % kOps)) {
      case kPokeAnywhere: {
        const uint32_t off = in.U16() % (seg_size - 3);
        seg.Store(off, in.U32());
        break;
      }
      case kPokeHeader: {
        const uint32_t off = (in.U8() % 16) * 4;
        seg.Store(off, in.U32());
        break;
      }
      case kPokeLen: {
        const uint32_t at = (seg.Load(layout::kTailOffset) + 8u * in.U8()) & (capacity - 1) & ~3u;
        seg.Store(layout::kHeaderSize + at, in.U32());
        break;
      }
      case kPublish:
        Publish(seg, in.U16());
        break;
      case kPeek: {
        MessageView v;
        const Status s = ring.Peek(&v);
        CheckView(seg, s, v);
        break;
      }
      case kRelease:
        ring.Release();
        break;
      case kAcquire: {
        MessageView v;
        const Status s = ring.Acquire(&v);
        CheckView(seg, s, v);
        if (s == Status::kOk && held.size() < 64) held.push_back(v.end);
        break;
      }
      case kReleaseHeld: {
        const uint8_t which = in.U8();
        if (!held.empty()) ring.ReleaseTo(held[which % held.size()]);
        break;
      }
      case kReleaseTo:
        ring.ReleaseTo(in.U32());
        break;
      case kHasData:
        (void)ring.HasData();
        break;
      case kReadableBytes: {
        volatile uint32_t r = ring.ReadableBytes();
        (void)r;
        break;
      }
      case kCopyRead: {
        const uint32_t max_len = in.U16();
        std::unique_ptr<uint8_t[]> out(new uint8_t[max_len]);  // ASan-guarded, exact size
        const shm::ReadResult r = CopyRead(ring, out.get(), max_len);
        if (r.status == Status::kOk && r.len > max_len) __builtin_trap();
        break;
      }
      case kPokeSlot: {
        const uint32_t k = in.U8() % layout::kMaxReceiversLimit;
        static constexpr uint32_t kFields[] = {layout::kSlotTail, layout::kSlotFlags,
                                               layout::kSlotMode};
        const uint32_t field = kFields[in.U8() % 3];
        seg.Store(layout::SlotOffset(k) + field, in.U32());
        break;
      }
      case kPokeProducer: {
        // Hostile producer words a receiver resumes or starts by: none may make it
        // read outside the data area or loop.
        static constexpr uint32_t kMarks[] = {layout::kHeadMarkOffset, layout::kSyncMarkOffset,
                                              layout::kLastMarkOffset};
        const uint32_t which = in.U8() % 6;
        if (which < 2) {
          seg.Store(which == 1 ? layout::kFloorOffset : layout::kLastStartOffset, in.U32());
        } else if (which == 5) {
          // The owner word (a robust-futex word): any value, then one sleep with no
          // time to sleep, expecting what is there now (must return at once).
          seg.Store(layout::kProducerOwnerOffset, in.U32());
          ring.SleepWhileHeadIs(ring.HeadSeen(), ring.ProducerOwner(), 0, nullptr);
          ring.EndSleep();
        } else {
          const uint32_t index = in.U32();
          seg.Store64(kMarks[which - 2], layout::Mark(index, in.U32()));
        }
        break;
      }
      case kAttachSlot:
        (void)ring.AttachSlot((in.U8() & 1) != 0, 1);
        break;
      case kProducerWrite: {
        const uint32_t len = in.U16() % capacity;
        if (!producer) producer = std::make_unique<ByteRingBuffer>(seg.base, seg_size, true);
        std::unique_ptr<uint8_t[]> msg(new uint8_t[len + 1]());
        (void)producer->TryWrite(msg.get(), len);
        (void)producer->WriteableBytes();
        break;
      }
      case kSkipped: {
        volatile uint64_t n = ring.Skipped() + ring.SlotSkipped(in.U8() % 16);
        (void)n;
        break;
      }
      case kOps:
        break;
    }
  }
  return 0;
}
