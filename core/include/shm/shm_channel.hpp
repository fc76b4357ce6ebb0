// ShmProducer / ShmConsumer: a named ring with its lifecycle (create, replace a
// stale segment, attach, end of stream, dead or replaced producer). The API
// plain C++ programs use; the GStreamer elements and tests build on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "shm/byte_ring_buffer.hpp"
#include "shm/process.hpp"
#include "shm/shared_memory.hpp"
#include "shm/status.hpp"
#include "shm/wait.hpp"

namespace shm {

struct ProducerOptions {
  uint32_t capacity = 1u << 20;  // bytes of data area, rounded UP to a power of two
  uint32_t profile = layout::kProfileOpaque;
  uint32_t mode = 0600;      // permissions of the segment
  uint32_t start_index = 0;  // test hook: initial head/tail (multiple of 8)
  // Replace a stale segment at the name even when another user owns it (default:
  // refused; see SharedMemory::Options::allow_foreign_owner).
  bool allow_foreign_owner = false;
};

class ShmProducer {
 public:
  // Creates ring `name` (capacity rounded up to a power of two, >= 64). Refuses
  // (IsValid() false, error() says why) if a live producer owns the name, or the
  // name holds anything that is not a readable regular file of this user (never
  // removed: "... is a FIFO, not a ring", "permission denied: ... is owned by uid N");
  // replaces a stale segment whose producer is dead or CLOSED. Any thread; blocks
  // only in OS calls (and up to 1 s while another creator is setting the name up).
  ShmProducer(const char* name, uint32_t capacity);  // the original API
  ShmProducer(const std::string& name, uint32_t capacity);
  ShmProducer(const std::string& name, const ProducerOptions& options);
  // Unlinks the name (if it still holds this ring) and sets CLOSED (if not yet).
  // The producer thread, with no call of this producer still running; never blocks.
  ~ShmProducer();
  ShmProducer(const ShmProducer&) = delete;
  ShmProducer& operator=(const ShmProducer&) = delete;

  // Accessors: the producer thread (or any thread once construction is over and
  // while no call changes the producer); never block.
  bool IsValid() const { return ring_ != nullptr; }  // the original API
  // Why the producer is not valid, or why the last call returned kCorrupt.
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uint32_t capacity() const { return ring_ ? ring_->capacity() : 0; }
  uint32_t MaxMessageSize() const { return ring_ ? ring_->MaxMessageSize() : 0; }
  uint64_t generation() const { return ring_ ? ring_->generation() : 0; }

  // Original API: writes one message if it fits now; false when full, too large,
  // closed, corrupt or invalid (WriteFor with timeout 0 says which). Producer
  // thread; never blocks.
  bool Write(const void* data, uint32_t len);
  // Writes one message, waiting up to timeout_ns for space (0 = no wait,
  // kForever = no limit): kOk, kFull (timeout 0), kTimeout, kTooLarge, kInterrupted,
  // kClosed (after Close), kCorrupt (the consumer's tail is impossible; error()
  // says how), kInvalid. Producer thread; blocks.
  [[nodiscard]] Status WriteFor(const void* data, uint32_t len, int64_t timeout_ns);
  // Zero-copy: waits like WriteFor for room for `len` bytes and points *payload at
  // it; then Commit(final_len). Producer thread; blocks.
  [[nodiscard]] Status Reserve(uint32_t len, uint8_t** payload, int64_t timeout_ns);
  // Publishes the message of the last kOk Reserve with its final length (cut to the
  // reserved length; nothing happens without an open reservation) and wakes a
  // sleeping consumer. Producer thread; never blocks.
  void Commit(uint32_t len);
  // Counts `n` messages dropped on purpose (the header's `dropped`). Producer
  // thread; never blocks.
  void CountDropped(uint64_t n = 1);
  // The header's `dropped` counter. Any thread; never blocks.
  uint64_t Dropped() const;
  // Whether a consumer is attached now (its ATTACHED flag). Any thread; never blocks.
  bool ConsumerAttached() const;

  // End of stream: sets CLOSED and wakes the consumer; later writes return kClosed.
  // Producer thread; never blocks.
  void Close();
  // Interrupts a blocking call from another thread; sticky until ClearInterrupt().
  // Any thread; returns once the sleeper is awake.
  void Interrupt() { interrupter_.Interrupt(); }
  // Lets blocking calls wait again. Any thread; never blocks.
  void ClearInterrupt() { interrupter_.Clear(); }

  // The ring itself (nullptr when not valid), for the calls of its producer side.
  // Producer thread; never blocks.
  ByteRingBuffer* ring() { return ring_.get(); }

 private:
  bool Create(const ProducerOptions& options);

  std::string name_;
  std::string error_;
  std::unique_ptr<SharedMemory> memory_;
  std::unique_ptr<ByteRingBuffer> ring_;
  Interrupter interrupter_;
  bool closed_ = false;
};

class ShmConsumer {
 public:
  // Original API: attaches to ring `name` now; IsValid() false (error() says why,
  // naming the field) when it does not exist or is not a valid v1 ring. Any
  // thread; never blocks.
  explicit ShmConsumer(const char* name);
  explicit ShmConsumer(const std::string& name);
  // Waits up to open_timeout_ns (kForever = no limit) for a producer to create the
  // ring; an existing but invalid ring is refused at once. Blocks.
  ShmConsumer(const std::string& name, int64_t open_timeout_ns);
  // Clears ATTACHED. Never unlinks. The consumer thread, with no call of this
  // consumer still running; never blocks.
  ~ShmConsumer();
  ShmConsumer(const ShmConsumer&) = delete;
  ShmConsumer& operator=(const ShmConsumer&) = delete;

  // Accessors: the consumer thread (or any thread while no call changes the
  // consumer); never block.
  bool IsValid() const { return ring_ != nullptr; }  // the original API
  // Why the consumer is not valid: kTimeout (no ring appeared), kInterrupted, or
  // kInvalid (bad name, refused segment, another live consumer); error() says more.
  [[nodiscard]] Status open_status() const { return open_status_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uint32_t capacity() const { return ring_ ? ring_->capacity() : 0; }
  uint32_t profile() const { return ring_ ? ring_->profile() : 0; }
  uint64_t generation() const { return ring_ ? ring_->generation() : 0; }

  // Original API: copies the next message into `out` and returns its length; 0 when
  // there is nothing to read (or the consumer is not valid). A zero-length message
  // is consumed and returns 0; a message longer than max_len stays in place and 0 is
  // returned (TryRead says kBufferTooSmall and its size). Consumer thread; never blocks.
  uint32_t Read(void* out, uint32_t max_len);
  // The same with its status: kOk with the length, kEmpty, kClosed,
  // kBufferTooSmall (message stays; len = its size), kCorrupt, kInvalid.
  // Consumer thread; never blocks.
  [[nodiscard]] ReadResult TryRead(void* out, uint32_t max_len);
  // Original API: whether a message is waiting. Consumer thread; never blocks.
  bool HasData() const;
  // Reads the next message, waiting up to timeout_ns: kOk, kBufferTooSmall,
  // kClosed (end of stream), kPeerDead, kReplaced, kTimeout, kInterrupted, kCorrupt.
  // Consumer thread; blocks.
  [[nodiscard]] ReadResult ReadFor(void* out, uint32_t max_len, int64_t timeout_ns);
  // Zero-copy: the next message in place, waiting like ReadFor (same statuses);
  // repeated calls return the same message until Release. Consumer thread; blocks.
  [[nodiscard]] Status PeekFor(MessageView* out, int64_t timeout_ns);
  // Frees the message PeekFor returned (nothing without one). Consumer thread;
  // never blocks.
  void Release();
  // Zero-copy with several messages held: the next message not yet acquired,
  // waiting like ReadFor. Consumer thread; blocks.
  [[nodiscard]] Status AcquireFor(MessageView* out, int64_t timeout_ns);
  // Frees the ring up to `end` (a MessageView::end from AcquireFor, in order).
  // Consumer thread, or any thread serialised with the consumer calls by the
  // caller's lock; never blocks.
  void ReleaseTo(uint32_t end);

  // Producer liveness and identity: kOk, kClosed (CLOSED and drained), kPeerDead
  // (producer pid gone without CLOSED) or kReplaced (the name now holds another
  // generation). Consumer thread; never blocks (one shm_open + read).
  [[nodiscard]] Status CheckProducer();

  // Wakes a blocking call of this consumer at once; it returns kInterrupted, and so
  // do later blocking calls until ClearInterrupt(). Any thread; returns once the
  // sleeper is awake.
  void Interrupt() { interrupter_.Interrupt(); }
  // Lets blocking calls wait again. Any thread; never blocks.
  void ClearInterrupt() { interrupter_.Clear(); }

  // The ring itself (nullptr when not valid), for the calls of its consumer side.
  // Consumer thread; never blocks.
  ByteRingBuffer* ring() { return ring_.get(); }

 private:
  bool Open(int64_t open_timeout_ns);
  bool Claim(const uint8_t* base);
  void ReleaseClaim();
  Status WaitForMessage(int64_t timeout_ns, bool acquire, MessageView* out);

  std::string name_;
  std::string error_;
  Status open_status_ = Status::kInvalid;
  std::unique_ptr<SharedMemory> memory_;
  std::unique_ptr<ByteRingBuffer> ring_;
  Interrupter interrupter_;
  int claim_fd_ = -1;  // holds the consumer flock (POSIX)
};

}  // namespace shm
