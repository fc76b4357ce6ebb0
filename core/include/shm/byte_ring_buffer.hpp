// The SPSC byte ring over layout v1 (layout.hpp). One producer, one consumer,
// each in its own thread or process; the header words each have a single writer.
// Non-blocking operations plus the blocking waits of the wait protocol.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>

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

// One of several reservations a producer may have in flight (ReserveNext). The
// records are published in ring order: the head moves over the leading finished
// ones, so a reservation finished early waits for the older ones.
struct Reservation {
  uint8_t* payload = nullptr;  // where the payload goes (len bytes)
  uint32_t len = 0;            // reserved payload bytes
  uint32_t start = 0;          // ring index of the record
  uint32_t end = 0;            // ring index just past the record
};

// How the caller fills a reservation's payload, which decides where a large record
// goes (a hint: what the reservation holds, how it is published and what readers see
// are the same either way). A record of at least 64 KiB
// (tuning::kEarlyWrapMinRecord) on a one-receiver ring restarts at the front of the
// ring once it is three records into the lap, or two, so that big messages reuse a few
// places the CPU's caches still hold (DESIGN.md "Where a large record goes"). With
// three places the sender never waits for a zero-copy receiver still holding the two
// records before; with two, fewer cache lines are in play. Which pays depends on what
// else competes with the places for the cache, so each fill has its own limit.
enum class FillHint : uint8_t {
  // The caller writes the payload straight into the reservation (a zero-copy
  // buffer painted by its producer, the sink's buffer pool): only the places are in
  // play, so three places while three records fit in the whole largest cache
  // (tuning::kThreePlacesCacheShareInPlace). The default of Reserve and ReserveNext:
  // writing in place is what they are for (a caller that memcpy's its message in
  // says kCopied, or calls Write). A wrong hint costs speed only (about a tenth
  // either way in DESIGN.md's measurements), never correctness.
  kInPlace,
  // The caller copies the payload in from a buffer of its own (Write, TryWrite,
  // WriteFor, a sink's render copy): the source's buffers share the cache with the
  // places, so three places only while three records fit in a fifth of it
  // (tuning::kThreePlacesCacheShareCopied), two above.
  kCopied,
};

// shm::kHeaderSize: the header size of layout v1 (the offset of the data area), for
// sizing a buffer that holds a ring of a given capacity: kHeaderSize + capacity bytes.
using layout::kHeaderSize;

namespace fast {
struct Access;  // core/src/byte_ring_fast.hpp: in-tree diagnostics only, not part of the API
}  // namespace fast

// Threading: the producer calls come from one thread at a time, and so do the
// consumer calls (one thread, or several serialised by the caller's lock, as
// ShmConsumer does). SleepWhileHeadIs is the exception: it touches only the
// consumer's flags word, so it may run while another thread makes serialised
// consumer calls. Interrupter is the one cross-thread entry. The header accessors
// at the end may be called from any thread.
class ByteRingBuffer {
 public:
  // Binds a view of the ring at `base` (total_size bytes) as the producer or the
  // consumer. Check valid()/error(). Never blocks.
  // - A region holding a valid v1 ring (our magic) is attached, never rewritten.
  // - Producer view over a region without a magic (the word is 0, e.g. zeroed
  //   memory): initializes the header first, with capacity = the largest power of
  //   two <= total_size - kHeaderSize (at least 64, at most 2^31; smaller regions
  //   are refused), then attaches. Only the producer view initializes.
  // - Consumer view over a region without a magic: refused ("not initialized").
  // - A non-zero magic that is not ours: refused; the region is left untouched.
  ByteRingBuffer(void* base, uint32_t total_size, bool is_producer);
  // The same for a size of another integer type (size_t, uint64_t: a segment may be
  // larger than 4 GiB), so `ByteRingBuffer(mem.data(), mem.size(), true)` compiles
  // on every platform.
  template <typename Size, typename std::enable_if<std::is_integral<Size>::value &&
                                                       !std::is_same<Size, uint32_t>::value,
                                                   int>::type = 0>
  ByteRingBuffer(void* base, Size total_size, bool is_producer)
      : ByteRingBuffer(base, static_cast<uint64_t>(total_size), is_producer, Bind{}) {}
  // A consumer view of receiver slot `slot` (< the ring's max_receivers, else not
  // valid) in `mode` (layout::kModeLossless or kModeLive), for a caller that holds
  // the slot's role byte (ShmConsumer); then AttachSlot. Never blocks.
  ByteRingBuffer(void* base, uint64_t total_size, uint32_t slot, uint32_t mode);

  // Creator side, before anyone attaches: writes a v1 header (producer_pid, then
  // magic stored last with release) with head = tail = start_index (a multiple of 8;
  // non-zero only as a test hook for the 2^32 index wrap). Returns "" or the reason
  // it refused. Any thread; never blocks.
  // max_receivers: receiver slots in use (1..16); 1 is the single-consumer ring.
  static std::string Initialize(void* base, uint64_t total_size, uint32_t capacity,
                                uint32_t profile, uint64_t generation, uint32_t start_index = 0,
                                uint32_t producer_pid = 0, uint32_t max_receivers = 1);
  // Returns "" when `base` holds a v1 header that fits `total_size` bytes, else a
  // sentence naming the field (magic, version, header_size, capacity, size). The
  // capacity it checked goes to *capacity: use that value, never a re-read (a
  // hostile peer could change the word after the check). *uninitialized says
  // whether the refusal was "no magic yet" (decided from the one magic load the
  // check made: an opener must not re-read it, the creator may store it meanwhile).
  // Any thread; never blocks.
  static std::string ValidateHeader(const void* base, uint64_t total_size,
                                    uint32_t* capacity = nullptr, bool* uninitialized = nullptr);
  // ValidateHeader plus the rule for named segments (PROTOCOL.md "Segment size"): an
  // opener refuses a segment whose size is not a multiple of 8. Any thread; never blocks.
  static std::string ValidateSegment(const void* base, uint64_t segment_size,
                                     uint32_t* capacity = nullptr, bool* uninitialized = nullptr);

  // Accessors: any thread (error(): the thread of the side whose call failed, as
  // calls of that side rewrite it); never block.
  bool valid() const { return valid_; }
  // Why the view is not valid, or why the last call returned kCorrupt.
  const std::string& error() const { return error_; }
  uint32_t capacity() const { return capacity_; }
  uint32_t profile() const;
  uint64_t generation() const;
  uint32_t MaxMessageSize() const { return layout::MaxPayload(capacity_); }
  // Receiver slots of this ring (block 0's max_receivers, 1..16).
  uint32_t max_receivers() const { return max_receivers_; }
  uint8_t* base() const { return base_; }

  // ---- producer side --------------------------------------------------------
  // Original API: writes one message if it fits now; false when the ring is full,
  // the message can never fit, the consumer's tail is corrupt or this is not a valid
  // producer view (TryWrite says which). Producer; never blocks.
  bool Write(const void* data, uint32_t len);
  // kOk, kFull (try again later), kTooLarge, kCorrupt (the consumer's tail is not
  // valid; error() says how) or kInvalid. Producer; never blocks.
  [[nodiscard]] Status TryWrite(const void* data, uint32_t len);
  // The same, saying whether the message is a sync point (see Commit). Producer;
  // never blocks.
  [[nodiscard]] Status TryWrite(const void* data, uint32_t len, bool sync);
  // Zero-copy: makes room for a `len`-byte payload (writing a WRAP marker first if
  // needed) and points *payload at it. kOk, kFull, kTooLarge, kCorrupt or kInvalid.
  // `fill`: how the caller fills the payload (see FillHint; it only decides where a
  // large record goes): kInPlace, the default, for a caller that writes it in place,
  // kCopied for one that copies it in from a buffer of its own. Producer; never
  // blocks.
  [[nodiscard]] Status Reserve(uint32_t len, uint8_t** payload, FillHint fill = FillHint::kInPlace);
  // Publishes the reserved message with its final length (a larger `len` is cut to
  // the reserved length; without an open reservation it does nothing). Wakes a
  // sleeping consumer. Producer, after a kOk Reserve; never blocks.
  void Commit(uint32_t len);
  // The same, saying whether the message is a sync point (a record a receiver can
  // start decoding at, e.g. a key frame; Commit(len) says yes): a live receiver that
  // fell behind resumes at the newest sync point still in the ring. Producer; never
  // blocks.
  void Commit(uint32_t len, bool sync);
  // Several reservations in flight: reserves the record after every open one (a
  // WRAP marker first if it would cross the end) and describes it in *out. The
  // reservations are published in the order they were made (Publish/Abandon finish
  // them in any order; the head moves over the leading finished ones). kOk, kFull,
  // kTooLarge, kCorrupt or kInvalid. `fill` as Reserve's. Producer; never blocks.
  [[nodiscard]] Status ReserveNext(uint32_t len, Reservation* out,
                                   FillHint fill = FillHint::kInPlace);
  // Finishes `r` as a message of `len` bytes (cut to the reserved length; the rest
  // of the reserved record becomes a PAD record). With `keep`, the bytes stay
  // readable for the producer after the consumer has released them: the space is
  // not reused until Unkeep(r) (a zero-copy buffer still referenced after it was
  // sent). `sync`: whether the message is a sync point (see Commit). Producer;
  // never blocks.
  void Publish(const Reservation& r, uint32_t len, bool keep = false, bool sync = true);
  // Finishes `r` as a PAD record: consumers skip it silently. With `keep`, its
  // space is not reused before Unkeep(r) (its bytes are still read by the
  // producer's side, e.g. copied into a later record). Producer; never blocks.
  void Abandon(const Reservation& r, bool keep = false);
  // Takes `r` back when it is the newest reservation (nothing reserved after it)
  // and still open: no record is written and its place is the next reservation's.
  // False (nothing done) otherwise: Abandon it instead. A PAD record holds its
  // place until the readers pass it, so a run of given-up reservations could fill
  // a small ring while a reader holds the record before them and waits for a
  // message (see ring_pool.h). On success wakes a thread of ours asleep for room
  // held by a kept record (WakeKeptSleepers). Producer; never blocks.
  bool Retract(const Reservation& r);
  // Abandons every open reservation (Reserve's and ReserveNext's): end of stream.
  // Producer; never blocks.
  void AbandonOpen();
  // The bytes of a kept reservation are no longer used: its space may be reused.
  // Producer; never blocks.
  void Unkeep(const Reservation& r);
  // Whether every record reserved after `r` (by ReserveNext, Reserve) is still
  // unpublished, so publishing `r` keeps the order in which records were finished.
  // Producer; never blocks.
  bool InOrder(const Reservation& r) const;
  // Reservations not yet published or abandoned, plus kept ones. Producer; never blocks.
  uint32_t InFlight() const { return static_cast<uint32_t>(pending_.size()); }
  // Whether the ring is full because of kept reservations rather than the consumer
  // (waiting for the consumer would not help). Producer; never blocks.
  bool FullOfKept(uint32_t len) const;
  // ---- sleeping for space: any producer thread --------------------------------
  // Several threads of one producer may wait for space at the same time (a sink's
  // streaming thread in WaitWritable and an upstream thread in ReserveNext): the
  // shared WAITING flag is wait-scoped and counted per process. BeginSpaceWait
  // counts the calling thread in (the first one in sets WAITING and COUNTS_SLEEPS
  // and fences), EndSpaceWait counts it out (the last one out clears both); a
  // process-local lock serialises the two, so WAITING is never cleared while
  // another thread of ours still sleeps. Any producer thread; never block (beyond
  // that lock).
  void BeginSpaceWait() const;
  void EndSpaceWait() const;
  // Counts in on the first Enter(), out on destruction (if it entered).
  class SpaceWaitScope {
   public:
    explicit SpaceWaitScope(const ByteRingBuffer* ring) : ring_(ring) {}
    ~SpaceWaitScope() {
      if (entered_) ring_->EndSpaceWait();
    }
    SpaceWaitScope(const SpaceWaitScope&) = delete;
    SpaceWaitScope& operator=(const SpaceWaitScope&) = delete;
    void Enter() {
      if (!entered_) ring_->BeginSpaceWait();
      entered_ = true;
    }

   private:
    const ByteRingBuffer* ring_;
    bool entered_ = false;
  };
  // One sleep for space, between BeginSpaceWait and EndSpaceWait (the one sleep of
  // WaitWritable and ShmProducer's reservation waits): bumps the producer's sleeps
  // word and fences (a receiver that woke an earlier sleep needs the new count),
  // issues the heavy barrier once per WAITING when the slot's receiver relies on
  // it, then sleeps while receiver slot `slot`'s tail word still holds `seen` and
  // its flags do not change, for at most timeout_ns or until `intr` fires. Returns
  // whether the slot's ATTACHED flag changed meanwhile (a receiver attached or
  // left). Touches no producer state but the header's flags and sleeps words and
  // the process-local wait state, so other (serialised) producer calls may run
  // meanwhile. A producer thread, with the values of TailSeen()/LimitSlot(); blocks.
  bool SleepForSpace(uint32_t slot, uint32_t seen, int64_t timeout_ns, Interrupter* intr) const;
  // Unkeep calls so far (process-local): read it where FullOfKept() said the kept
  // reservations hold the room, then pass it to SleepWhileKept. Any producer
  // thread; never blocks.
  uint32_t UnkeepCount() const;
  // Sleeps until Unkeep is called (by any thread) after UnkeepCount() returned
  // `seen`, for at most timeout_ns or until `intr` fires. Spurious returns are
  // possible: the caller looks again. A producer thread; blocks.
  void SleepWhileKept(uint32_t seen, int64_t timeout_ns, Interrupter* intr) const;
  // The receiver limit the last producer call saw (the slowest counted slot's
  // position, or the head when no slot holds the producer back): after kFull, the
  // value for SleepForSpace. Producer; never blocks.
  uint32_t TailSeen() const { return tail_cache_; }
  // Whether a counted receiver (the slots LoadTailChecked scans) has not yet
  // released everything published: only then can waiting for it make room.
  // Producer (serialised with the other producer calls); never blocks.
  bool ReceiversBehind() const;
  // The receiver slot that limited the last producer call (whose release can make
  // room). Producer; never blocks.
  uint32_t LimitSlot() const { return limit_slot_; }
  // Original API: free bytes in the ring (records and padding included); 0 when the
  // consumer's tail is not valid. Producer; never blocks.
  uint32_t WriteableBytes() const;
  // Sleeps until a `len`-byte message fits, the timeout expires or `intr` fires:
  // kOk, kTooLarge, kTimeout, kInterrupted, kCorrupt, kInvalid. Producer; blocks.
  // Sets WAITING once and fences once per call, however many times it sleeps.
  // With several receiver slots it does not reap dead receivers (ShmProducer does,
  // through the overload below): a caller of this one should pass a bounded timeout.
  [[nodiscard]] Status WaitWritable(uint32_t len, int64_t timeout_ns, Interrupter* intr);
  // The same, calling `each_slice` at least once per liveness slice
  // (tuning::kLivenessSliceNs, 0.5 s) while it waits, never more often; a status
  // other than kOk from it ends the wait with that status (ShmProducer: "the
  // consumer is gone"). Never a periodic wake-up without it. Producer; blocks.
  [[nodiscard]] Status WaitWritable(uint32_t len, int64_t timeout_ns, Interrupter* intr,
                                    const std::function<Status()>& each_slice);
  // Sets CLOSED (end of stream) and wakes the consumer. Producer; never blocks.
  void SetClosed();
  // Sets or clears producer_flags bit LIVE (release: a consumer that sees it also
  // sees the records published before). Producer; never blocks.
  void SetLive(bool live);
  // Fences every publication fully from now on and clears producer_flags bit
  // MEMBARRIER, so a receiver going to sleep issues no membarrier for this
  // producer (DESIGN.md "Full fences for frame rings"). Producer, before its
  // first publication (ShmProducer: ProducerOptions::full_fences); never blocks.
  void UseFullFences();
  // Adds to the header's `dropped` counter. Producer; never blocks.
  void AddDropped(uint64_t n);
  // The producer found receiver slot `slot` dead (its role byte is free while its
  // ATTACHED flag is set): its position no longer holds the producer back until a
  // new receiver attaches to the slot (its attach count changes). `flags_seen` is the
  // slot's flags word as read (SlotFlags) BEFORE the role byte was probed: a receiver
  // that claims the slot between the probe and this call has bumped the count past
  // it and is counted. Producer; never blocks.
  void MarkSlotDead(uint32_t slot, uint32_t flags_seen);
  // The ring index the next Commit publishes its record at (after Reserve; before
  // it, where the next reservation starts unless a WRAP marker goes first).
  // Producer; never blocks.
  uint32_t ProducerHead() const { return reserved_ ? legacy_.start : reserve_; }
  // Stores `len` bytes of stream information (profile 1: the latest CAPS payload,
  // published by the record at ring index `index`) in the header's side area, for
  // receivers that attach after that record is gone. False when len > kInfoMax.
  // Producer; never blocks.
  bool SetStreamInfo(const void* data, uint32_t len, uint32_t index);

  // ---- consumer side --------------------------------------------------------
  // Original API: copies the next message into `out` and returns its length; 0 when
  // there is nothing to read. A zero-length message is consumed and also returns 0.
  // A message longer than max_len is left in place (never dropped) and 0 is
  // returned; TryRead says why (kBufferTooSmall with the size). Consumer; never blocks.
  uint32_t Read(void* out, uint32_t max_len);
  // Copies the next message into `out`: kOk with its length, kEmpty, kClosed,
  // kBufferTooSmall (message stays; len = its size), kCorrupt or kInvalid.
  // Consumer; never blocks.
  [[nodiscard]] ReadResult TryRead(void* out, uint32_t max_len);
  // Zero-copy: the next message, left in place; repeated calls return the same one.
  // kOk, kEmpty, kClosed or kCorrupt; kInvalid while Acquire'd records are held
  // (do not mix the two styles). Consumer; never blocks.
  [[nodiscard]] Status Peek(MessageView* out);
  // Releases the message returned by Peek (it may be overwritten from now on);
  // without a Peek'd message it does nothing. Consumer; never blocks.
  void Release();
  // Zero-copy with several messages held: returns the next message not yet
  // acquired without releasing it. Consumer; never blocks.
  [[nodiscard]] Status Acquire(MessageView* out);
  // Frees the ring up to `end` (a MessageView::end, in order); an `end` that is not
  // ahead of the released position or past what was acquired is ignored. When that
  // frees everything handed out and a published WRAP marker follows, frees the
  // marker's lap too (a producer may be waiting for exactly that).
  // Consumer (serialised with the other consumer calls); never blocks.
  void ReleaseTo(uint32_t end);
  // Stores the tail word now if releases are pending. Releases (Release, ReleaseTo,
  // Read) on a ring of 64 KiB or more store it once per batch of capacity/8 bytes
  // (at most 256 KiB): one wake-up of a producer waiting for space per batch, not
  // per message. They store at once when the reader caught up with the head it
  // knows, when a WRAP marker's lap is freed, and when the reader finds nothing to
  // read (going idle), so a single thread owning both ends that read everything
  // never waits for its own space. Call it when you stop reading with releases
  // pending. Consumer (serialised with the other consumer calls); never blocks.
  void Flush() const;
  // Original API: bytes written and not yet released (records and padding
  // included). Consumer; never blocks.
  uint32_t ReadableBytes() const;
  // Original API: whether a whole valid message (not just a WRAP marker) is waiting.
  // A WRAP marker at the read position with nothing held before it is skipped and
  // its lap freed (a tail store, as a Read would do), so a producer waiting for room
  // behind it goes on even when the consumer only polls HasData. Consumer; never blocks.
  bool HasData() const;
  // Sleeps until a message is readable, the producer closes, the timeout expires
  // or `intr` fires: kOk, kClosed, kTimeout, kInterrupted, kCorrupt, kInvalid.
  // Consumer; blocks.
  [[nodiscard]] Status WaitReadable(int64_t timeout_ns, Interrupter* intr);
  // The head index the last consumer call saw: after kEmpty, the value to pass to
  // SleepWhileHeadIs. Consumer; never blocks.
  uint32_t HeadSeen() const { return head_cache_; }
  // A head this consumer loaded itself (LoadHead, an acquire load, e.g. while it
  // spun on the head word): the next consumer call uses it instead of loading the
  // word again when it is newer than the head it knows. Validated as a loaded head
  // is. Consumer (serialised with the other consumer calls); never blocks.
  void NoteHead(uint32_t head) {
    if (head - read_pos_ > head_cache_ - read_pos_) head_cache_ = head;
  }
  // One sleep of the wait protocol: on the first sleep since EndSleep() sets
  // WAITING and fences (membarrier when the producer relies on it); then sleeps
  // while the head word still holds `seen` and CLOSED is not set, for at most
  // timeout_ns (no cap: the caller's liveness slice is the only periodic wake-up)
  // or until `intr` fires. Leaves WAITING set, so a re-sleep after a timeout
  // needs no new fence; call EndSleep() when the wait is over. Returns without
  // saying why: the caller looks again. Touches no consumer state but the flags
  // word, so other consumer calls may run meanwhile (serialised among themselves).
  // The consumer's one sleeping thread; blocks.
  void SleepWhileHeadIs(uint32_t seen, int64_t timeout_ns, Interrupter* intr) const;
  // The same, also ending when the producer's owner word no longer holds
  // `owner_seen` (the value the caller last judged) or is woken (the kernel's wake
  // at the producer's death): a mark made before the sleep is never slept through.
  void SleepWhileHeadIs(uint32_t seen, uint32_t owner_seen, int64_t timeout_ns,
                        Interrupter* intr) const;
  // Clears WAITING after SleepWhileHeadIs (no-op when not set). The sleeping
  // thread, when its wait returns; never blocks.
  void EndSleep() const;
  // Sets/clears the consumer's ATTACHED flag and pid. Consumer; never blocks.
  void SetConsumerAttached(bool attached, uint32_t pid);

  // ---- receiver slots (fan-out) ------------------------------------------------
  uint32_t slot() const { return slot_; }
  uint32_t mode() const { return mode_; }
  // Attaches to the bound slot: resets it (mode, pid, skipped), picks the start
  // (the head when `at_newest`, else the oldest position still in the ring: the
  // slot's own tail on a ring nobody else reads, else the oldest attached
  // receiver's), publishes it and sets ATTACHED; a start the producer may already
  // be reusing (below the reuse floor) is moved to the newest record. Returns the
  // start. Consumer; never blocks.
  uint32_t AttachSlot(bool at_newest, uint32_t pid);
  // Records (messages) this (live) receiver skipped because the producer reused
  // them before it read them. Consumer; never blocks.
  uint64_t Skipped() const;
  // The sequence number of the next message this receiver reads (the count of
  // messages the producer published before its read position), and whether it is
  // known (a producer that follows the protocol always gives it). Consumer; never
  // blocks.
  uint32_t ReadSeq() const { return read_seq_; }
  bool ReadSeqKnown() const { return read_seq_known_; }
  // Reads the stream-information side area: false when empty or when the producer
  // kept rewriting it. *index: the ring index of the record it came from. Any
  // thread; never blocks.
  bool ReadStreamInfo(std::string* out, uint32_t* index) const;

  // ---- either side: read-only looks at the header words ---------------------
  // Any thread; never block. Each is one atomic load (acquire for flags and
  // indices, relaxed for pids and counters); the value may be stale at once.
  bool ProducerClosed() const;
  // producer_flags bit LIVE (see layout::kProducerLive).
  bool ProducerLive() const;
  uint32_t ProducerPid() const;
  uint32_t ConsumerFlags() const;
  uint32_t ConsumerPid() const;
  // Attaches so far (consumer_flags bits 16..31, wrapping): changes whenever a new
  // consumer attaches.
  uint32_t ConsumerAttachCount() const {
    return ConsumerFlags() >> layout::kConsumerAttachCountShift;
  }
  uint32_t ProducerFlags() const;
  // The producer's owner word (layout::kProducerOwnerOffset; acquire) and its
  // address (for the wake a consumer passes on when it finds the word newly marked
  // OWNER_DIED; nullptr when not valid). Any thread; never block.
  uint32_t ProducerOwner() const;
  uint32_t* ProducerOwnerWord() const;
  uint64_t Dropped() const;
  uint32_t LoadHead() const;
  uint32_t LoadTail() const;
  // Slot `k`'s words (k < max_receivers; 0 otherwise): flags, pid, mode, tail
  // (a live receiver's pin, or its position | kSlotIdle), skipped.
  uint32_t SlotFlags(uint32_t k) const;
  uint32_t SlotPid(uint32_t k) const;
  uint32_t SlotMode(uint32_t k) const;
  uint32_t SlotTail(uint32_t k) const;
  uint64_t SlotSkipped(uint32_t k) const;
  // The producer's mark words (layout::kHeadMarkOffset, kSyncMarkOffset,
  // kLastMarkOffset): ring index
  // | sequence number << 32. Acquire loads; any thread; never block.
  uint64_t HeadMark() const;
  uint64_t SyncMark() const;
  uint64_t LastMark() const;
  // Consumer with nothing held or peeked: frees everything published so far (the
  // tail jumps to the head) and returns the new read position. Consumer thread;
  // never blocks.
  uint32_t SkipToHead();

 private:
  struct Bind {};
  ByteRingBuffer(void* base, uint64_t total_size, bool is_producer, Bind, uint32_t slot = 0,
                 uint32_t mode = layout::kModeLossless);
  uint32_t* word(uint32_t offset) const { return reinterpret_cast<uint32_t*>(base_ + offset); }
  uint8_t* data() const { return base_ + layout::kHeaderSize; }
  void WakeConsumerIfWaiting();
  Status NextRecord(uint32_t from, MessageView* out);
  Status NextRecordPinned(uint32_t from, MessageView* out);
  // Loads the tail word (acquire) into tail_cache_ after checking it against head_;
  // false (error_ set) when the consumer stored an impossible value. `need`: the
  // bytes the caller is about to reserve (on rings with a reuse floor, only that
  // plus a quarter of the ring is freed of what nobody holds).
  bool LoadTailChecked(uint32_t need = ~uint32_t{0});
  // The lowest position any counted receiver slot protects (head_ when none):
  // false (error_ set) when a slot holds an impossible value.
  // *counted (optional): with one slot, whether its position counted (not idle).
  bool ScanSlots(uint32_t* lowest, uint32_t* limiting_slot, bool* counted = nullptr) const;
  bool CountSlot(uint32_t k, uint32_t* lowest, uint32_t* limiting_slot, bool* found) const;
  bool live_mode() const { return mode_ == layout::kModeLive; }
  // What the tail word of a live receiver says now: its pin while it holds (or
  // peeked) a record, else its position | kSlotIdle.
  uint32_t TailWordValue(uint32_t t) const;
  // Live receiver about to read at `*at` with nothing held (or a lossless one whose
  // attach could not settle its start): pins `*at`, fences, and checks the reuse
  // floor; sets `*at` to the position to read from (`*at`, or the newest record
  // after a skip). False when the producer lapped every pin it tried (a few looks):
  // `*at` is not safe to read yet; the caller reports kEmpty and looks again later.
  bool PinForRead(uint32_t* at);
  // Where a lapped live receiver resumes when the floor passed `floor`: the newest
  // sync point when it is still in the ring (`allow_sync`), else the newest record
  // (`allow_last`), else the published head of the head mark, else the head; *seq
  // and *seq_known say its sequence number.
  uint32_t ResumeTarget(uint32_t floor, bool allow_sync, bool allow_last, uint32_t* seq,
                        bool* seq_known);
  // Counts the messages from `start` to the head mark (pinned at `start` while it
  // walks): the sequence number of `start`. False when the walk could not finish
  // (lapped, or a record that does not check out).
  bool SeqOfStart(uint32_t start, uint32_t* seq);
  Status EmptyOrClosed(uint32_t at);
  void PublishWrapMarker();
  // Producer thread. ReserveRecord's end: appends the record of `record` bytes at
  // reserve_ to pending_.
  Status ReserveRecordAt(uint32_t record, uint32_t* start);
  // Producer thread. Whether a `record`-byte record that fits before the end
  // (`to_end` bytes left), filled as `fill` says, goes at offset 0 of the next lap
  // instead (see the .cpp).
  bool RestartLapEarly(uint32_t record, uint32_t to_end, FillHint fill);
  Status ReserveRecord(uint32_t len, uint32_t* pos, FillHint fill);
  uint32_t FreeBytes() const;
  uint32_t FreeBytesFrom(uint32_t lowest) const;
  void Finish(uint32_t start, bool keep);
  void AdvanceHead();
  // The producer's fast write (core/src/byte_ring_fast.hpp, inline there):
  // kWritten, kWake (written; call WakeAfterWrite) or kNotWritten (nothing
  // touched: take the general path).
  enum class FastWrite { kNotWritten, kWritten, kWake };
  inline FastWrite WriteFast(const void* data, uint32_t len, bool sync);
  friend class ShmProducer;  // runs WriteFast inline in WriteFor
  // The consumer's fast read (byte_ring_fast.hpp): copies the next message into
  // `out` and releases it, when it is an ordinary record of at most kFastRecord
  // bytes that fits `max_len` and this lossless view holds nothing; true with
  // *len set. False: nothing consumed (take the general path).
  inline bool ReadFast(void* out, uint32_t max_len, uint32_t* len);
  friend class ShmConsumer;    // runs ReadFast inline in ReadFor
  friend struct fast::Access;  // the fast paths without ShmProducer/ShmConsumer (a benchmark)
  Status TryWriteSlow(const void* data, uint32_t len, bool sync);
  Status WakeAfterWrite();
  void PublishHead(uint32_t h, uint32_t seq, bool any, uint32_t newest, uint32_t newest_seq,
                   bool any_sync, uint64_t sync_mark);
  struct Pending {
    uint32_t start;
    uint32_t end;
    bool done;    // published, abandoned or a WRAP marker
    bool kept;    // published, bytes still in use by the producer
    bool marker;  // a WRAP marker (never what last_start names)
    bool pad;     // abandoned: a PAD record (no sequence number)
    bool sync;    // a message marked as a sync point
  };
  void StoreTail(uint32_t t) const;
  void LazyRelease(uint32_t end) const;
  uint32_t SkipPublishedMarker(uint32_t at);

  uint8_t* base_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t mask_ = 0;
  bool is_producer_ = false;
  bool valid_ = false;
  bool light_fences_ = false;  // this side registered for membarrier
  mutable std::string error_;  // mutable: the const slot scan names a corrupt tail
  // Producer state.
  uint32_t head_ = 0;        // published head (own copy of the head word)
  uint32_t reserve_ = 0;     // next reservation index (>= head_)
  uint32_t order_mark_ = 0;  // end of the newest record published (InOrder)
  uint32_t pub_seq_ = 0;     // messages published so far (the next one's sequence)
  // Reservations and markers from the oldest unfinished or kept one to reserve_, in
  // ring order (empty when everything reserved is published and not kept).
  std::deque<Pending> pending_;
  Reservation legacy_;       // the open Reserve/Commit reservation (if reserved_)
  uint32_t tail_cache_ = 0;  // producer's cached copy of tail
  bool reserved_ = false;    // legacy_ is open
  // Consumer state. The positions are mutable for HasData() const (the original
  // API's signature), which may skip a WRAP marker; no message is consumed by that.
  mutable uint32_t read_pos_ = 0;    // next record to hand out (>= the tail word)
  mutable uint32_t released_ = 0;    // released by the caller (the tail to be)
  mutable uint32_t stored_ = 0;      // own copy of the tail word (last stored)
  uint32_t tail_batch_ = 0;          // bytes freed before a tail store (0: every release)
  mutable uint32_t head_cache_ = 0;  // consumer's cached copy of head
  uint32_t peek_end_ = 0;            // end of the record returned by Peek
  bool peeked_ = false;
  // Sequence number of the message at read_pos_ (messages published before it).
  uint32_t read_seq_ = 0;
  bool read_seq_known_ = false;
  // The sleeping thread's own state: WAITING is set (since the last EndSleep) and
  // fenced (membarrier issued when the producer needs it).
  mutable bool sleeping_ = false;
  mutable bool fenced_ = false;
  void BumpSleeps() const;
  // Consumer: the producer's sleeps count when we last woke it (valid: it counted).
  mutable uint32_t producer_woken_ = 0;
  mutable bool producer_woken_valid_ = false;
  // Producer: process-local state of the threads waiting for space (shared by
  // copies of this view).
  struct SpaceWait;
  std::shared_ptr<SpaceWait> space_;
  void WakeKeptSleepers();
  // Producer: each slot's sleep count when we last woke the head word (valid: the
  // slot counted its sleeps then); a publish skips the wake while it is unchanged.
  uint32_t woken_sleeps_[layout::kMaxReceiversLimit] = {};
  bool woken_valid_[layout::kMaxReceiversLimit] = {};
  // Producer: the slots' counts loaded before the current head store (pre_valid_:
  // loaded, because a receiver was seen waiting at the last wake check).
  uint32_t pre_sleeps_[layout::kMaxReceiversLimit] = {};
  bool pre_valid_ = false;
  bool consumer_waiting_seen_ = false;
  void LoadCountsBeforeStore();
  // Producer: each slot's attach count when we first saw it, its sleeps then, and
  // whether they moved since (the slot's COUNTS_SLEEPS is its receiver's own).
  uint32_t attach_seen_[layout::kMaxReceiversLimit] = {};
  uint32_t attach_sleeps_[layout::kMaxReceiversLimit] = {};
  bool counted_[layout::kMaxReceiversLimit] = {};
  bool CountedSinceAttach(uint32_t k, uint32_t f, uint32_t* n);
  // Consumer: the producer's WAITING was set at our last tail store.
  mutable bool producer_waiting_seen_ = false;
  // Slot state: which slot's words this view uses (slot 0 unless UseSlot).
  uint32_t max_receivers_ = 1;
  // Producer: large records smaller than this cycle through three places at the
  // front of the ring, larger ones through two (RestartLapEarly); indexed by FillHint.
  uint32_t three_places_below_[2] = {};
  uint32_t slot_ = 0;
  uint32_t mode_ = layout::kModeLossless;
  uint32_t tail_off_ = layout::kTailOffset;
  uint32_t flags_off_ = layout::kConsumerFlagsOffset;
  mutable bool pinned_ = false;  // live: the tail word holds a pin (not idle)
  // Lossless: the attach gave up before its start passed the floor check; the
  // first read checks again (PinForRead) before it reads any byte.
  bool check_floor_ = false;
  // Producer: its published reuse floor, the slot that limits it, dead slots.
  uint32_t floor_ = 0;
  uint32_t limit_slot_ = 0;
  mutable uint32_t dead_count_[layout::kMaxReceiversLimit] = {};
  mutable bool dead_[layout::kMaxReceiversLimit] = {};
};

}  // namespace shm
