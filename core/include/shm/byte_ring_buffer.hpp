// The SPSC byte ring over layout v1 (layout.hpp). One producer, one consumer,
// each in its own thread or process; the header words each have a single writer.
// Non-blocking operations plus the blocking waits of the wait protocol.
#pragma once

#include <cstdint>
#include <string>

#include "shm/layout.hpp"
#include "shm/status.hpp"
#include "shm/wait.hpp"

namespace shm {

// A message seen in place. `data` stays valid until the record is released.
struct MessageView {
  const uint8_t* data = nullptr;
  uint32_t len = 0;
  uint32_t end = 0;  // ring index just past the record (pass to ReleaseTo)
};

// Threading: the producer calls come from one thread at a time, and so do the
// consumer calls (one thread, or several serialised by the caller's lock, as
// ShmConsumer does). SleepWhileHeadIs is the exception: it touches only the
// consumer's flags word, so it may run while another thread makes serialised
// consumer calls. Interrupter is the one cross-thread entry.
class ByteRingBuffer {
 public:
  // Attaches to an initialized segment of `total_size` bytes at `base` as the
  // producer or the consumer. Validates the header first: check valid()/error().
  // Never blocks.
  ByteRingBuffer(void* base, uint32_t total_size, bool is_producer);
  ByteRingBuffer(void* base, uint64_t total_size, bool is_producer);

  // Creator side, before anyone attaches: writes a v1 header (producer_pid, then
  // magic stored last with release) with head = tail = start_index (a multiple of 8;
  // non-zero only as a test hook for the 2^32 index wrap). Returns "" or the reason
  // it refused.
  static std::string Initialize(void* base, uint64_t total_size, uint32_t capacity,
                                uint32_t profile, uint64_t generation, uint32_t start_index = 0,
                                uint32_t producer_pid = 0);
  // Returns "" when `base` holds a v1 header that fits `total_size` bytes, else a
  // sentence naming the field (magic, version, header_size, capacity, size). The
  // capacity it checked goes to *capacity: use that value, never a re-read (a
  // hostile peer could change the word after the check). *uninitialized says
  // whether the refusal was "no magic yet" (decided from the one magic load the
  // check made: an opener must not re-read it, the creator may store it meanwhile).
  static std::string ValidateHeader(const void* base, uint64_t total_size,
                                    uint32_t* capacity = nullptr, bool* uninitialized = nullptr);

  bool valid() const { return valid_; }
  const std::string& error() const { return error_; }
  uint32_t capacity() const { return capacity_; }
  uint32_t profile() const;
  uint64_t generation() const;
  uint32_t MaxMessageSize() const { return layout::MaxPayload(capacity_); }
  uint8_t* base() const { return base_; }

  // ---- producer side --------------------------------------------------------
  // Seed API: writes one message if it fits now. Producer; never blocks.
  bool Write(const void* data, uint32_t len);
  // kOk, kFull (try again later) or kTooLarge. Producer; never blocks.
  Status TryWrite(const void* data, uint32_t len);
  // Zero-copy: makes room for a `len`-byte payload (writing a WRAP marker first if
  // needed) and points *payload at it. kOk, kFull or kTooLarge. Producer; never blocks.
  Status Reserve(uint32_t len, uint8_t** payload);
  // Publishes the reserved message with its final length (<= the reserved length).
  // Wakes a sleeping consumer. Producer; never blocks.
  void Commit(uint32_t len);
  // Free bytes in the ring (records and padding included). Producer; never blocks.
  uint32_t WriteableBytes() const;
  // Sleeps until a `len`-byte message fits, the timeout expires or `intr` fires:
  // kOk, kTooLarge, kTimeout, kInterrupted. Producer; blocks.
  Status WaitWritable(uint32_t len, int64_t timeout_ns, Interrupter* intr);
  // Sets CLOSED (end of stream) and wakes the consumer. Producer; never blocks.
  void SetClosed();
  // Adds to the header's `dropped` counter. Producer; never blocks.
  void AddDropped(uint64_t n);

  // ---- consumer side --------------------------------------------------------
  // Seed API: copies the next message into `out`. kOk with its length, kEmpty,
  // kClosed, kBufferTooSmall (message stays; len = its size) or kCorrupt.
  // Consumer; never blocks.
  ReadResult Read(void* out, uint32_t max_len);
  // Zero-copy: the next message, left in place; repeated calls return the same one.
  // kOk, kEmpty, kClosed or kCorrupt; kInvalid while Acquire'd records are held
  // (do not mix the two styles). Consumer; never blocks.
  Status Peek(MessageView* out);
  // Releases the message returned by Peek (it may be overwritten from now on).
  // Consumer; never blocks.
  void Release();
  // Zero-copy with several messages held: returns the next message not yet
  // acquired without releasing it. Consumer; never blocks.
  Status Acquire(MessageView* out);
  // Frees the ring up to `end` (a MessageView::end, in order). When that frees
  // everything handed out and a published WRAP marker follows, frees the marker's
  // lap too (a producer may be waiting for exactly that). Consumer; never blocks.
  void ReleaseTo(uint32_t end);
  // Bytes written and not yet released (records and padding included). Consumer; never blocks.
  uint32_t ReadableBytes() const;
  // Seed API: whether a message (not just a WRAP marker) is waiting. Consumer; never blocks.
  bool HasData();
  // Sleeps until a message is readable, the producer closes, the timeout expires
  // or `intr` fires: kOk, kClosed, kTimeout, kInterrupted. Consumer; blocks.
  Status WaitReadable(int64_t timeout_ns, Interrupter* intr);
  // The head index the last consumer call saw: after kEmpty, the value to pass to
  // SleepWhileHeadIs. Consumer; never blocks.
  uint32_t HeadSeen() const { return head_cache_; }
  // One sleep of the wait protocol: sets WAITING, fences, and sleeps while the
  // head word still holds `seen` and CLOSED is not set, for at most timeout_ns
  // (and at most 50 ms: see tuning.hpp) or until `intr` fires; then clears
  // WAITING. Returns without saying why: the caller looks again. Touches no
  // consumer state but the flags word, so other consumer calls may run meanwhile
  // (serialised among themselves). The consumer's one sleeping thread; blocks.
  void SleepWhileHeadIs(uint32_t seen, int64_t timeout_ns, Interrupter* intr) const;
  // Sets/clears the consumer's ATTACHED flag and pid. Consumer; never blocks.
  void SetConsumerAttached(bool attached, uint32_t pid);

  // ---- either side (read-only looks at the header) ---------------------------
  bool ProducerClosed() const;
  uint32_t ProducerPid() const;
  uint32_t ConsumerFlags() const;
  uint32_t ConsumerPid() const;
  // Attaches so far (consumer_flags bits 16..31, wrapping): changes whenever a new
  // consumer attaches. Either side; never blocks.
  uint32_t ConsumerAttachCount() const {
    return ConsumerFlags() >> layout::kConsumerAttachCountShift;
  }
  uint32_t ProducerFlags() const;
  uint64_t Dropped() const;
  uint32_t LoadHead() const;
  uint32_t LoadTail() const;

 private:
  uint32_t* word(uint32_t offset) const { return reinterpret_cast<uint32_t*>(base_ + offset); }
  uint8_t* data() const { return base_ + layout::kHeaderSize; }
  void PublishHead(uint32_t new_head);
  void WakeConsumerIfWaiting();
  Status NextRecord(uint32_t from, MessageView* out);
  Status EmptyOrClosed(uint32_t at);
  void PublishWrapMarker();
  void StoreTail(uint32_t t);
  uint32_t SkipPublishedMarker(uint32_t at);

  uint8_t* base_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t mask_ = 0;
  bool is_producer_ = false;
  bool valid_ = false;
  bool light_fences_ = false;  // this side registered for membarrier
  std::string error_;
  // Producer state.
  uint32_t head_ = 0;          // next write index (own copy of the head word)
  uint32_t tail_cache_ = 0;    // producer's cached copy of tail
  uint32_t reserved_len_ = 0;  // payload length of the open reservation
  bool reserved_ = false;
  // Consumer state.
  uint32_t read_pos_ = 0;    // next record to hand out (>= the tail word)
  uint32_t released_ = 0;    // own copy of the tail word
  uint32_t head_cache_ = 0;  // consumer's cached copy of head
  uint32_t peek_end_ = 0;    // end of the record returned by Peek
  bool peeked_ = false;
};

}  // namespace shm
