// ShmProducer / ShmConsumer: a named ring with its lifecycle (create, replace a
// stale segment, attach, end of stream, dead or replaced producer). The API
// plain C++ programs use; the GStreamer elements and tests build on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "shm/byte_ring_buffer.hpp"
#include "shm/shared_memory.hpp"
#include "shm/status.hpp"
#include "shm/wait.hpp"

namespace shm {

struct ProducerOptions {
  uint32_t capacity = 1u << 20;  // bytes of data area, rounded UP to a power of two
  uint32_t profile = layout::kProfileOpaque;
  uint32_t mode = 0600;      // permissions of the segment
  uint32_t start_index = 0;  // test hook: initial head/tail (multiple of 8)
};

class ShmProducer {
 public:
  // Creates ring `name` (capacity rounded up to a power of two, >= 64). Refuses
  // (IsValid() false, error() says why) if a live producer owns the name; replaces
  // a stale segment whose producer is dead or CLOSED. Blocks only in OS calls.
  ShmProducer(const std::string& name, uint32_t capacity);
  ShmProducer(const std::string& name, const ProducerOptions& options);
  // Sets CLOSED (if not yet) and unlinks the name.
  ~ShmProducer();
  ShmProducer(const ShmProducer&) = delete;
  ShmProducer& operator=(const ShmProducer&) = delete;

  bool IsValid() const { return ring_ != nullptr; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uint32_t capacity() const { return ring_ ? ring_->capacity() : 0; }
  uint32_t MaxMessageSize() const { return ring_ ? ring_->MaxMessageSize() : 0; }
  uint64_t generation() const { return ring_ ? ring_->generation() : 0; }

  // Seed API: writes one message if it fits now; false when full, too large or
  // invalid. Producer thread; never blocks.
  bool Write(const void* data, uint32_t len);
  // Writes one message, waiting up to timeout_ns for space (0 = no wait,
  // kForever = no limit): kOk, kFull (timeout 0), kTimeout, kTooLarge, kInterrupted,
  // kClosed (after Close), kInvalid. Producer thread; blocks.
  Status WriteFor(const void* data, uint32_t len, int64_t timeout_ns);
  // Zero-copy: waits like WriteFor for room for `len` bytes and points *payload at
  // it; then Commit(final_len). Producer thread; blocks.
  Status Reserve(uint32_t len, uint8_t** payload, int64_t timeout_ns);
  void Commit(uint32_t len);
  // Counts `n` messages dropped on purpose (the header's `dropped`). Never blocks.
  void CountDropped(uint64_t n = 1);
  uint64_t Dropped() const;
  // Whether a consumer is attached now (its ATTACHED flag). Never blocks.
  bool ConsumerAttached() const;

  // End of stream: sets CLOSED and wakes the consumer; later writes return kClosed.
  // Producer thread; never blocks.
  void Close();
  // Interrupts a blocking call from another thread; sticky until ClearInterrupt().
  // Any thread; returns once the sleeper is awake.
  void Interrupt() { interrupter_.Interrupt(); }
  void ClearInterrupt() { interrupter_.Clear(); }

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
  // Seed API: attaches to ring `name` now; IsValid() false (error() says why, naming
  // the field) when it does not exist or is not a valid v1 ring. Never blocks.
  explicit ShmConsumer(const std::string& name);
  // Waits up to open_timeout_ns (kForever = no limit) for a producer to create the
  // ring; an existing but invalid ring is refused at once. Blocks.
  ShmConsumer(const std::string& name, int64_t open_timeout_ns);
  // Clears ATTACHED. Never unlinks.
  ~ShmConsumer();
  ShmConsumer(const ShmConsumer&) = delete;
  ShmConsumer& operator=(const ShmConsumer&) = delete;

  bool IsValid() const { return ring_ != nullptr; }
  // Why the consumer is not valid: kTimeout (no ring appeared), kInterrupted, or
  // kInvalid (bad name, refused segment, another live consumer); error() says more.
  Status open_status() const { return open_status_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uint32_t capacity() const { return ring_ ? ring_->capacity() : 0; }
  uint32_t profile() const { return ring_ ? ring_->profile() : 0; }
  uint64_t generation() const { return ring_ ? ring_->generation() : 0; }

  // Seed API: copies the next message into `out`; see ByteRingBuffer::Read.
  // Consumer thread; never blocks.
  ReadResult Read(void* out, uint32_t max_len);
  // Seed API. Consumer thread; never blocks.
  bool HasData();
  // Reads the next message, waiting up to timeout_ns: kOk, kBufferTooSmall,
  // kClosed (end of stream), kPeerDead, kReplaced, kTimeout, kInterrupted, kCorrupt.
  // Consumer thread; blocks.
  ReadResult ReadFor(void* out, uint32_t max_len, int64_t timeout_ns);
  // Zero-copy variants with the same statuses; see ByteRingBuffer. Consumer thread; blocks.
  Status PeekFor(MessageView* out, int64_t timeout_ns);
  void Release();
  Status AcquireFor(MessageView* out, int64_t timeout_ns);
  void ReleaseTo(uint32_t end);

  // Producer liveness and identity: kOk, kClosed (CLOSED and drained), kPeerDead
  // (producer pid gone without CLOSED) or kReplaced (the name now holds another
  // generation). Consumer thread; never blocks (one shm_open + read).
  Status CheckProducer();

  void Interrupt() { interrupter_.Interrupt(); }
  void ClearInterrupt() { interrupter_.Clear(); }

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

// Whether process `pid` exists (kill(pid, 0) / OpenProcess). Never blocks.
bool ProcessAlive(uint32_t pid);
// This process's id.
uint32_t CurrentPid();

}  // namespace shm
