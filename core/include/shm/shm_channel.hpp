// ShmProducer / ShmConsumer: a named ring with its lifecycle (create, replace a
// stale segment, attach, end of stream, dead or replaced producer). The API
// plain C++ programs use; the GStreamer elements and tests build on it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "shm/byte_ring_buffer.hpp"
#include "shm/process.hpp"
#include "shm/shared_memory.hpp"
#include "shm/status.hpp"
#include "shm/wait.hpp"

namespace shm {

namespace owner {
class Arm;  // core/src/owner_word.hpp: arms the producer's owner word
}  // namespace owner

struct ProducerOptions {
  uint32_t capacity = 1u << 20;  // bytes of data area, rounded UP to a power of two
  uint32_t profile = layout::kProfileOpaque;
  uint32_t mode = 0600;      // permissions of the segment
  uint32_t start_index = 0;  // test hook: initial head/tail (multiple of 8)
  // Replace a stale segment at the name even when another user owns it (default:
  // refused; see SharedMemory::Options::allow_foreign_owner).
  bool allow_foreign_owner = false;
  // The stream is live: set producer_flags bit LIVE from creation (see SetLive).
  bool live = false;
  // Fault every page of the new segment in once at creation (MADV_POPULATE_WRITE,
  // else a write per page; huge pages asked for where the tmpfs offers them), so
  // the first lap of writes takes no page faults.
  bool prefault = true;
  // Receivers that may read the ring at the same time (1..16). 1 is the
  // single-consumer ring; with more, each receiver claims a slot of its own.
  uint32_t max_receivers = 1;
  // Fence every publication fully instead of letting a receiver that goes to
  // sleep issue membarrier(GLOBAL_EXPEDITED) (an interrupt to every CPU) for us:
  // for rings of large messages (video frames), where receivers sleep between
  // messages and a fence costs nothing next to a message (shmringsink sets it).
  // Without effect where membarrier is not used (fences are full anyway).
  bool full_fences = false;
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
  // kForever = no limit): kOk, kFull (timeout 0, or a consumer had attached to the
  // ring and none is attached now or it died or detached during the wait: nobody is
  // left to make room; noticed at once for a detach, within a liveness slice (0.5 s)
  // for a death; before any consumer ever attached, the wait goes on), kTimeout,
  // kTooLarge, kInterrupted, kClosed (after Close), kCorrupt (the consumer's tail
  // is impossible; error() says how), kInvalid. Producer thread; blocks.
  [[nodiscard]] Status WriteFor(const void* data, uint32_t len, int64_t timeout_ns);
  // The same, saying whether the message is a sync point (a record a receiver can
  // start decoding at, e.g. a key frame; the overload above says yes): a live
  // receiver that fell behind resumes at the newest sync point still in the ring.
  // Producer thread; blocks.
  [[nodiscard]] Status WriteFor(const void* data, uint32_t len, int64_t timeout_ns, bool sync);
  // Zero-copy: waits like WriteFor for room for `len` bytes and points *payload at
  // it; then Commit(final_len). `fill` says how the caller fills the payload and
  // only decides where a large record goes (shm::FillHint, byte_ring_buffer.hpp):
  // kInPlace, the default, for a caller that writes the message into *payload
  // itself (what Reserve is for: a frame painted in the ring); kCopied for one that
  // memcpy's it in from a buffer of its own (as WriteFor does: its source buffer
  // then shares the CPU's cache with the ring's places, and a large record restarts
  // at the front after fewer of them). A wrong hint costs speed only. Producer
  // thread; blocks.
  [[nodiscard]] Status Reserve(uint32_t len, uint8_t** payload, int64_t timeout_ns,
                               FillHint fill = FillHint::kInPlace);
  // Publishes the message of the last kOk Reserve with its final length (cut to the
  // reserved length; nothing happens without an open reservation) and wakes a
  // sleeping consumer. Producer thread; never blocks.
  void Commit(uint32_t len);
  // The same, saying whether the message is a sync point (see WriteFor). Producer
  // thread; never blocks.
  void Commit(uint32_t len, bool sync);
  // ---- several reservations in flight (zero-copy buffers handed to other code) --
  // Once SetConcurrent(true) was called (before other threads use the producer),
  // every producer call below and above may come from any thread: they are
  // serialised by an internal lock that no call holds while it sleeps. Without it,
  // the producer thread rule holds (and no lock is taken).
  void SetConcurrent(bool on) { concurrent_ = on; }
  // Reserves the next record for a `len`-byte payload after every open reservation,
  // waiting up to timeout_ns for space (0 = no wait, kForever = no limit) or until
  // `intr` (nullptr: this producer's Interrupt()) fires. The reservations are
  // published in the order they were made: Publish/Abandon may finish them in any
  // order. kOk, kFull (timeout 0), kTimeout, kTooLarge, kInterrupted, kClosed,
  // kCorrupt, kInvalid. `fill` as Reserve's (kInPlace by default: a zero-copy
  // buffer handed to code that writes into it). Blocks.
  [[nodiscard]] Status ReserveNext(uint32_t len, Reservation* out, int64_t timeout_ns,
                                   Interrupter* intr = nullptr, FillHint fill = FillHint::kInPlace);
  // Publishes `r` as a message of `len` bytes (see ByteRingBuffer::Publish; with
  // `keep` its space is not reused before Unkeep; `sync`: a sync point, see WriteFor).
  // Nothing after Close(). Never blocks.
  void Publish(const Reservation& r, uint32_t len, bool keep = false, bool sync = true);
  // Turns `r` into a PAD record that every reader skips (with `keep`, its space is
  // not reused before Unkeep). Never blocks.
  void Abandon(const Reservation& r, bool keep = false);
  // Takes `r` back when it is the newest reservation and still open (no record;
  // the next reservation gets its place); false otherwise (Abandon it then), and
  // after Close(). See ByteRingBuffer::Retract. The room it frees wakes a thread of
  // this producer waiting for space (as Unkeep does). Called by the thread that
  // reserved `r`, or, after SetConcurrent(true), by any thread (the sink's ring
  // pool gives up its buffers' reservations from upstream threads). Never blocks.
  bool Retract(const Reservation& r);
  // The bytes of kept reservation `r` are no longer used. Never blocks.
  void Unkeep(const Reservation& r);
  // Whether a `len`-byte reservation does not fit because of kept reservations
  // (waiting for the consumer would not help). Never blocks.
  bool HeldBackByKept(uint32_t len);
  // Whether waiting can make room for a `len`-byte reservation: a receiver that
  // holds the producer back has something unread, and kept reservations do not
  // hold the space. Never blocks.
  bool WaitingHelps(uint32_t len);
  // Whether publishing `r` now keeps the records in the order they were finished
  // (nothing reserved after it was published yet). Never blocks.
  bool InOrder(const Reservation& r);
  // Ends the ring like the destructor does (unlinks the name if it still holds
  // this ring, sets CLOSED, gives up the producer's role lock) but keeps the mapping
  // until the destructor, for zero-copy buffers still referenced. Open
  // reservations are abandoned. Never blocks.
  void Retire();
  // Hands the ring's name on to a successor (a larger ring for the same stream):
  // removes the name while it still names this ring, and keeps everything else
  // (the producer role lock, the consumers, what they have yet to read). Create
  // the successor under the name, then Close() this ring while this object (and
  // so its role lock) lives on: a consumer that drains it then tells the handover
  // from an early stop (ShmConsumer::HandedOver). False with *error set (the OS
  // call and errno) when the name could not be removed. Windows: always false
  // (*error says why: a mapping's name lasts while any process holds a handle, so
  // shmringsink's move to a larger ring fails there with that error). Producer
  // thread; blocks only while another process removes a ring's name (their
  // shared flock).
  bool ReleaseName(std::string* error);

  // Counts `n` messages dropped on purpose (the header's `dropped`). Producer
  // thread; never blocks.
  void CountDropped(uint64_t n = 1);
  // The header's `dropped` counter. Any thread; never blocks.
  uint64_t Dropped() const;
  // Whether a consumer is attached now: its role lock is held (without OFD locks:
  // its ATTACHED flag and a live pid). Any thread; never blocks (one fcntl).
  bool ConsumerAttached() const;
  // Receiver slots of the ring (ProducerOptions::max_receivers).
  uint32_t max_receivers() const { return ring_ ? ring_->max_receivers() : 0; }
  // Whether receiver slot `slot` is held now: its role byte is held (without OFD
  // locks: its ATTACHED flag and a live pid). A receiver holds the byte from its claim,
  // before it stores its start and sets ATTACHED (the slot's flags): true here does not
  // mean it finished attaching (Python's HeaderSnapshot calls the two `claimed` and
  // `attached`). Any thread; never blocks (one fcntl).
  bool ReceiverAttached(uint32_t slot) const;
  // Looks at every slot whose ATTACHED flag is set and whose role byte is free (a
  // receiver killed without detaching): it stops holding the producer back.
  // Returns how many it found. Reserve does this on its own every liveness slice
  // while it waits, and when the ring is full. Producer thread; never blocks.
  uint32_t ReapDeadReceivers();
  // Publishes stream information for receivers that attach later (profile 1: the
  // current CAPS payload, written by the record at ring index `index`). False when
  // longer than layout::kInfoMax. Producer thread; never blocks.
  bool SetStreamInfo(const std::string& info, uint32_t index);

  // End of stream: sets CLOSED and wakes the consumer; later writes return kClosed.
  // Open reservations (ReserveNext) are abandoned first, so everything finished
  // before is published. Producer thread; never blocks.
  void Close();
  // Marks the stream live or not (producer_flags bit LIVE): a consumer that
  // attaches to a live ring starts at what is published after its attach, never at
  // the backlog. Producer thread; never blocks.
  void SetLive(bool live);
  // Whether the LIVE bit is set. Any thread; never blocks.
  bool live() const { return ring_ != nullptr && ring_->ProducerLive(); }

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
  template <typename Attempt>
  Status ReserveWaiting(uint32_t len, int64_t timeout_ns, Interrupter* intr, Attempt attempt);
  // WriteFor's path when the message does not fit at once: Reserve (waiting) +
  // copy + Commit.
  Status WriteReserving(const void* data, uint32_t len, int64_t timeout_ns, bool sync);
  uint32_t ReapDeadReceiversLocked();  // ReapDeadReceivers with mu_ held (when concurrent_)

  std::string name_;
  std::string error_;
  std::unique_ptr<SharedMemory> memory_;
  std::unique_ptr<ByteRingBuffer> ring_;
  Interrupter interrupter_;
  bool closed_ = false;
  bool retired_ = false;
  bool concurrent_ = false;
  std::mutex mu_;             // the ring's producer state, when concurrent_
  int64_t last_reap_ns_ = 0;  // when ReapDeadReceivers last looked (steady clock)
  // Arms the owner word (its thread) while we are the ring's producer. Declared
  // last: destroyed (disarmed, joined) before ring_ and memory_ are unmapped.
  std::unique_ptr<owner::Arm> owner_arm_;
};

// Where a consumer starts reading when it attaches.
enum class StartAt {
  kOldest,        // the oldest record still in the ring (lossless; the default)
  kNewest,        // what is published after the attach: the backlog is freed unread
  kNewestIfLive,  // kNewest when the producer marks its stream live, else kOldest
};

// ConsumerOptions::mode: live on a LIVE ring with several receiver slots (a
// preview of a shared camera never holds the sender back), lossless otherwise (a
// file stream, or the single receiver of a default ring, as before fan-out).
constexpr uint32_t kModeAuto = 2;

// How a ShmConsumer attaches.
struct ConsumerOptions {
  // How long the constructor waits for a producer to create the ring: 0 = look
  // once, kForever = no limit. Only a missing name, or a ring still being created,
  // is waited for; anything else (permissions, a foreign or bad segment, another
  // consumer) is refused at once.
  int64_t open_timeout_ns = 0;
  // Interrupts the wait for the ring and every later wait of this consumer (as
  // Interrupt() does); lets a thread interrupt a consumer still being constructed.
  // Not owned: must outlive the consumer. nullptr = the consumer's own.
  Interrupter* interrupter = nullptr;
  // A ring whose producer died without closing it counts as not there yet: wait
  // for a new producer to replace it instead of attaching to the dead stream.
  bool wait_for_live_producer = false;
  // A ring that is CLOSED and already drained (tail == head: a finished stream
  // another receiver read) counts as not there yet: wait for the producer's next
  // ring instead of attaching to an empty, ended stream.
  bool wait_for_open_producer = false;
  // Where reading starts (see StartAt). A receiver of a live stream (producer_flags
  // LIVE) must not start on the backlog: kNewestIfLive.
  StartAt start_at = StartAt::kOldest;
  // Attach to a segment owned by another user (default: refused; see
  // SharedMemory::Options::allow_foreign_owner).
  bool allow_foreign_owner = false;
  // Receiver mode on a ring with several receivers (any ring, in fact):
  // layout::kModeLossless (the producer waits for this receiver) or
  // layout::kModeLive (never holds the producer back: when it falls behind, the
  // producer reuses what it has not read and it resumes at the newest sync point
  // still in the ring, else at the head; skipped() counts the records it lost). Records it holds
  // are never reused. kModeAuto: decided at attach (see kModeAuto).
  uint32_t mode = layout::kModeLossless;
};

// The consumer side of a named ring: attach (waiting for the producer if asked),
// read in ring order, liveness (end of stream, dead or replaced producer).
//
// Two styles, not to be mixed while records are held:
// - one at a time: Read / ReadFor / PeekFor + Release();
// - held records: AcquireFor hands out records in ring order and leaves them in
//   place; Release(view) gives one back from any thread, in any order, and the
//   tail advances to the oldest record still held (zero-copy buffers).
//
// Threading: the reading calls (Read, HasData, ReadFor, PeekFor, Release(),
// AcquireFor, CheckProducer) come from one thread at a time, "the consumer
// thread". Release(view), ReleaseTo, HeldBytes, Interrupt and ClearInterrupt may
// come from any thread at any time; Detach from any thread while no reading call
// runs. See docs/DESIGN.md, "Consumer engine".
class ShmConsumer {
 public:
  // Original API: attaches to ring `name` now; IsValid() false (error() says why,
  // naming the field) when it does not exist or is not a valid v1 ring. Any
  // thread; never blocks.
  explicit ShmConsumer(const char* name);
  explicit ShmConsumer(const std::string& name);
  // Waits up to open_timeout_ns (kForever = no limit) for a producer to create the
  // ring; an existing but unusable ring is refused at once. Blocks.
  ShmConsumer(const std::string& name, int64_t open_timeout_ns);
  // As above, with options (an external interrupter, ...). Blocks.
  ShmConsumer(const std::string& name, const ConsumerOptions& options);
  // Detach(), then unmaps. Never unlinks. Must not run while another thread is
  // inside a call of this consumer; never blocks.
  ~ShmConsumer();
  ShmConsumer(const ShmConsumer&) = delete;
  ShmConsumer& operator=(const ShmConsumer&) = delete;

  // Accessors: the consumer thread (or any thread while no call changes the
  // consumer); never block.
  bool IsValid() const { return ring_ != nullptr; }  // the original API
  // Why the consumer is not valid: kTimeout (no ring appeared), kInterrupted, or
  // kInvalid (bad name, refused segment, another live consumer); error() says more.
  [[nodiscard]] Status open_status() const { return open_status_; }
  // Why the consumer is not valid, or where the record a reading call reported
  // kCorrupt for is wrong. Consumer thread; never blocks.
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  uint32_t capacity() const { return ring_ ? ring_->capacity() : 0; }
  uint32_t profile() const { return ring_ ? ring_->profile() : 0; }
  uint64_t generation() const { return ring_ ? ring_->generation() : 0; }
  // The producer's pid as its header records it (information only). Never blocks.
  uint32_t producer_pid() const { return ring_ ? ring_->ProducerPid() : 0; }
  // When the open was refused because another consumer is attached: its pid as
  // the header records it (0 if unknown or another reason). Never blocks.
  uint32_t busy_consumer_pid() const { return busy_pid_; }
  // Whether the producer marked its stream live (producer_flags LIVE) at attach.
  bool live() const { return live_; }
  // The receiver slot this consumer claimed (the lowest free one) and its mode.
  uint32_t slot() const { return ring_ ? ring_->slot() : 0; }
  uint32_t mode() const { return ring_ ? ring_->mode() : 0; }
  // Live mode: how many records (messages) this receiver skipped because the
  // producer reused them before it read them (it changes exactly when records were
  // lost: the next record read is a discontinuity). Never blocks.
  uint64_t skipped() const { return ring_ ? ring_->Skipped() : 0; }
  // The producer's stream information (SetStreamInfo) and the ring index of the
  // record it came with; false when there is none. Never blocks.
  bool StreamInfo(std::string* info, uint32_t* index) const {
    return ring_ && ring_->ReadStreamInfo(info, index);
  }
  // The ring index of the head at attach: records ending at or before it were
  // published before this consumer attached (the backlog). With a framing that
  // needs state from the backlog (caps), attach with kOldest and skip the backlog's
  // data records with this. Never blocks.
  uint32_t attach_head() const { return attach_head_; }

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
  // Whatever a dead producer finished writing is delivered before kPeerDead.
  // Consumer thread; blocks.
  [[nodiscard]] ReadResult ReadFor(void* out, uint32_t max_len, int64_t timeout_ns);
  // Zero-copy, one at a time: the next message, left in place until Release().
  // Same statuses as ReadFor (kEmpty when timeout_ns is 0); repeated calls return
  // the same message until Release. Consumer thread; blocks.
  [[nodiscard]] Status PeekFor(MessageView* out, int64_t timeout_ns);
  // Frees the message PeekFor returned (nothing without one). Consumer thread;
  // never blocks.
  void Release();

  // Held records: the next message not yet acquired, left in place until released
  // (Release(view) / ReleaseTo). Same statuses as PeekFor. While waiting it never
  // holds the lock releases take, so releases from other threads go on (and wake a
  // producer waiting for space). Consumer thread; blocks.
  [[nodiscard]] Status AcquireFor(MessageView* out, int64_t timeout_ns);
  // The acquired message `view` is no longer used. Any thread, any order; the tail
  // advances to the oldest message still held. Never blocks (a short lock).
  void Release(const MessageView& view);
  // Releases every acquired message up to the one ending at `end` (a
  // MessageView::end). Any thread; never blocks (a short lock).
  void ReleaseTo(uint32_t end);
  // Ring bytes held by acquired messages not yet freed (including released ones
  // waiting behind an older held one). Any thread; never blocks (a short lock).
  uint32_t HeldBytes() const;
  // Called from a waiting AcquireFor (consumer thread, no lock held) when the
  // producer has been waiting for space for a whole liveness slice while the
  // oldest held message is still in use: held records are stalling the sender.
  // Once per episode. Set before the first AcquireFor.
  void SetStallCallback(std::function<void()> callback) { on_stall_ = std::move(callback); }

  // Gives up the consumer role now (clears ATTACHED, drops the role lock) but
  // keeps the mapping, so held messages stay readable; later releases (from any
  // thread) no longer move the tail (a new consumer may own it), and reading calls
  // return kInvalid. Any thread while no reading call is running (a sleeping one
  // still owns the WAITING bit); never blocks (a short lock).
  void Detach();

  // Producer liveness and identity: kOk, kClosed (CLOSED and drained), kPeerDead
  // (producer gone without CLOSED: its lock byte is free) or kReplaced (gone, and
  // the name now holds another generation). While the producer lives it costs one
  // fcntl; the name is looked at only once it is gone. Consumer thread; never blocks.
  [[nodiscard]] Status CheckProducer();
  // Whether this CLOSED ring was handed over (ShmProducer::ReleaseName): the name
  // now holds a ring of another generation created by the same process (the
  // header's producer pid is this ring's), where the stream goes on, and either its
  // producer still holds its role lock, or the ring was already CLOSED when this
  // consumer claimed its slot and that same ring was under the name then (it opened
  // the old ring just before the move; its producer, seeing no receiver, may have
  // let go since). A heuristic (PROTOCOL.md section 5, "Handing a stream over"): a
  // ring another process put under the name is never taken for a handover, nor is
  // one the same process made after a real end. Meaningful once CLOSED was seen and
  // the ring drained (kClosed). Consumer thread; never blocks (one fcntl, one read
  // of the name's header).
  bool HandedOver();

  // Wakes a blocking call of this consumer at once (the wait for the ring
  // included, when the interrupter was given in the options); it returns
  // kInterrupted, and so do later blocking calls until ClearInterrupt(). Any
  // thread; returns once the sleeper is awake.
  void Interrupt() { interrupter_->Interrupt(); }
  // Lets blocking calls wait again. Any thread; never blocks.
  void ClearInterrupt() { interrupter_->Clear(); }

  // The ring itself (nullptr when not valid), for header looks. Its consumer calls
  // must not be mixed with this object's. Consumer thread; never blocks.
  ByteRingBuffer* ring() { return ring_.get(); }

 private:
  enum class Op { kPeek, kAcquire };
  enum class Attempt { kAttached, kNotYet, kRefused };
  bool Open(const ConsumerOptions& options);
  Attempt TryOpen(const ConsumerOptions& options);
  void Nap(int64_t ns);
  bool Claim(const SharedMemory& mem, uint32_t max_receivers);
  void ReleaseClaim();
  // `copy` (optional): where a peeked record is copied to and released, under the
  // same lock hold as the peek (ReadFor).
  struct CopyOut {
    void* buf;
    uint32_t max_len;
    ReadResult result;
  };
  Status Wait(int64_t timeout_ns, Op op, MessageView* out, CopyOut* copy = nullptr);
  // mu_ held: copies the peeked record `v` into `copy` and releases it.
  void CopyLocked(const MessageView& v, CopyOut* copy);
  Status TakeLocked(Op op, MessageView* out);
  void ReportStall();
  void AdvanceLocked();
  bool OwnerNewlyDied();          // consumer thread (Wait)
  int64_t SliceNs(bool holding);  // consumer thread (Wait)

  struct Held {
    uint32_t end;
    bool released;
  };

  std::string name_;
  std::string error_;
  Status open_status_ = Status::kInvalid;
  uint32_t busy_pid_ = 0;
  bool live_ = false;
  uint32_t attach_head_ = 0;
  // The ring was CLOSED when this consumer claimed its slot and the name then held
  // a ring of the same process, of generation successor_gen_ (HandedOver).
  bool successor_at_claim_ = false;
  uint64_t successor_gen_ = 0;
  std::unique_ptr<SharedMemory> memory_;
  std::unique_ptr<ByteRingBuffer> ring_;
  Interrupter own_interrupter_;
  Interrupter* interrupter_ = &own_interrupter_;
  uint32_t nap_word_ = 0;   // what the open wait sleeps on (never changes)
  int claim_fd_ = -1;       // memory_'s descriptor while it holds the consumer byte
  int64_t claim_byte_ = 1;  // the role byte it holds: 1 + slot
  uint32_t claim_slot_ = 0;

  // The ring's consumer state, the held records and detached_ (mu_).
  mutable std::mutex mu_;
  std::deque<Held> held_;     // acquired records in ring order
  uint32_t released_to_ = 0;  // tail as we last set it
  uint32_t acquired_to_ = 0;  // end of the newest acquired record
  bool detached_ = false;
  // A Wait found nothing and may be asleep: a release from another thread then
  // stores the tail at once (Flush) instead of batching it, since the consumer
  // thread will not store it before it wakes.
  bool in_wait_ = false;
  bool stall_reported_ = false;  // consumer thread
  uint32_t owner_seen_ = 0;      // consumer thread: the owner word at the last look
  int64_t owner_look_ns_ = 0;    // consumer thread: next short look after OWNER_DIED
  std::function<void()> on_stall_;
};

}  // namespace shm
