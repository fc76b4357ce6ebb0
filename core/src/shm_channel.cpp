#include "shm/shm_channel.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "atomics.hpp"
#include "byte_ring_fast.hpp"
#include "owner_word.hpp"
#include "prefault.hpp"
#include "shm/liveness.hpp"
#include "test_seams.hpp"
#include "tuning.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>
#endif

// Keeps a slow path out of the fast path that calls it (fewer saved registers).
#if defined(__GNUC__) || defined(__clang__)
#define SHM_CHANNEL_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SHM_CHANNEL_NOINLINE __declspec(noinline)
#else
#define SHM_CHANNEL_NOINLINE
#endif

namespace shm {
namespace {

// Whether a segment of `size` bytes without a magic may be a ring still being
// created. Windows reports a section's size rounded up to whole pages (VirtualQuery
// of the view), so a creator's kHeaderSize + capacity bytes show as the next page multiple.
bool MayBeRingInCreation(uint64_t size) {
#ifdef _WIN32
  if (size == 0) return true;
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  const uint64_t page = si.dwPageSize;
  for (uint64_t c = layout::kMinCapacity; c <= layout::kMaxCapacity; c *= 2) {
    if ((layout::kHeaderSize + c + page - 1) / page * page == size) return true;
  }
  return false;
#else
  return layout::MayBeRingInCreation(size);
#endif
}

using Clock = std::chrono::steady_clock;

uint64_t NewGeneration() {
  std::random_device rd;
  uint64_t g = (uint64_t{rd()} << 32) ^ rd();
  g ^= static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  g ^= uint64_t{CurrentPid()} << 17;
  return g == 0 ? 1 : g;
}

int64_t ElapsedNs(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
}

// The header of segment `name` read without mapping it; false when absent.
bool ReadHeader(const std::string& name, uint8_t (&hdr)[layout::kHeaderSize]) {
  std::memset(hdr, 0, sizeof hdr);
  return SharedMemory::PeekHeader(name, hdr, sizeof hdr, nullptr) == static_cast<long>(sizeof hdr);
}

template <typename T>
T HeaderField(const uint8_t* hdr, uint32_t offset) {
  T v;
  std::memcpy(&v, hdr + offset, sizeof v);
  return v;
}

// Whether the name now holds a ring other than the one of generation `ours` that the
// same process created (the header's producer pid is `pid`): a ring this process
// handed its stream over to, or made after a real end. Its generation in `*under`.
bool SameProcessRingUnderName(const std::string& name, uint64_t ours, uint32_t pid,
                              uint64_t* under) {
  uint8_t hdr[layout::kHeaderSize];
  if (!ReadHeader(name, hdr) ||
      HeaderField<uint32_t>(hdr, layout::kMagicOffset) != layout::kMagic ||
      HeaderField<uint64_t>(hdr, layout::kGenerationOffset) == ours ||
      HeaderField<uint32_t>(hdr, layout::kProducerPidOffset) != pid) {
    return false;
  }
  *under = HeaderField<uint64_t>(hdr, layout::kGenerationOffset);
  return true;
}

// Whether the file of `fd` still holds the ring whose header `seen` (`seen_bytes`
// of it read) was judged stale: the same magic, version and generation (a stale
// ring stays stale: its producer is dead or it is CLOSED), and for a segment
// without magic or of another layout version, still no producer byte held.
bool StillTheStaleRing(int fd, const uint8_t* seen, long seen_bytes) {
#ifdef _WIN32
  (void)fd;
  (void)seen;
  (void)seen_bytes;
  return true;
#else
  constexpr size_t kIdentity = 32;  // magic, version, header size, profile, generation
  uint8_t now[kIdentity] = {};
  const ssize_t n = pread(fd, now, sizeof now, 0);
  const size_t want = static_cast<size_t>(std::min<long>(seen_bytes, kIdentity));
  if (n < 0 || static_cast<size_t>(n) < want || std::memcmp(now, seen, want) != 0) return false;
  const bool v2 = want == kIdentity &&
                  HeaderField<uint32_t>(seen, layout::kMagicOffset) == layout::kMagic &&
                  HeaderField<uint16_t>(seen, layout::kVersionOffset) == layout::kVersion;
  return v2 || liveness::Probe(fd, liveness::kProducerByte) != liveness::Lock::kHeld;
#endif
}

// Whether the holder of a role byte is alive: the byte's lock when the platform
// has OFD locks (a free byte is a dead or finished holder, whatever its pid
// says), else the pid recorded in the header (0 = unknown counts as alive).
bool HolderAlive(liveness::Lock probe, uint32_t pid) {
  if (probe == liveness::Lock::kHeld) return true;
  if (probe == liveness::Lock::kFree) return false;
  return ProcessAlive(pid);
}

bool ProducerAlive(const SharedMemory& mem, uint32_t pid) {
  return HolderAlive(liveness::Probe(mem.fd(), liveness::kProducerByte), pid);
}

}  // namespace

// ---- ShmProducer -------------------------------------------------------------

ShmProducer::ShmProducer(const char* name, uint32_t capacity)
    : ShmProducer(std::string(name != nullptr ? name : ""), capacity) {}

ShmProducer::ShmProducer(const std::string& name, uint32_t capacity) : name_(name) {
  ProducerOptions o;
  o.capacity = capacity;
  Create(o);
}

ShmProducer::ShmProducer(const std::string& name, const ProducerOptions& options) : name_(name) {
  Create(options);
}

bool ShmProducer::Create(const ProducerOptions& options) {
  error_ = ValidateName(name_);
  if (!error_.empty()) return false;
  const uint32_t capacity = layout::RoundUpCapacity(options.capacity);
  if (capacity == 0) {
    error_ = "capacity " + std::to_string(options.capacity) + " exceeds the maximum 2^31";
    return false;
  }
  const size_t total = size_t{layout::kHeaderSize} + capacity;
  for (int attempt = 0; attempt < tuning::kCreateAttempts; ++attempt) {
    SharedMemory::Options mo;
    mo.mode = options.mode;
    auto mem = std::make_unique<SharedMemory>(name_, total, true, mo);
    if (mem->valid()) {
      // The producer byte, held from before the magic store until we are done with
      // the ring (the descriptor closes after CLOSED and unlink): see liveness.hpp.
      std::string lock_error;
      const liveness::Lock held = liveness::Take(mem->fd(), liveness::kProducerByte, &lock_error);
      if (held == liveness::Lock::kFree || held == liveness::Lock::kError) {
        error_ = "cannot lock the producer byte of new ring '" + name_ +
                 "': " + (held == liveness::Lock::kFree ? "another process holds it" : lock_error);
        mem->destroy();
        return false;
      }
      if (options.prefault) PrefaultForWrite(mem->data(), mem->size());  // still all zero
      const std::string err = ByteRingBuffer::Initialize(
          mem->data(), mem->size(), capacity, options.profile, NewGeneration(), options.start_index,
          CurrentPid(), options.max_receivers);
      if (!err.empty()) {
        error_ = err;
        mem->destroy();
        return false;
      }
      ring_ = std::make_unique<ByteRingBuffer>(mem->data(), uint64_t{mem->size()}, true);
      if (!ring_->valid()) {
        error_ = ring_->error();
        ring_.reset();
        mem->destroy();
        return false;
      }
      memory_ = std::move(mem);
      if (options.live) ring_->SetLive(true);
      if (options.full_fences) ring_->UseFullFences();
      // Our death wakes sleeping receivers at once (layout::kProducerOwnerOffset).
      owner_arm_ = std::make_unique<owner::Arm>(ring_->ProducerOwnerWord());
      return true;
    }
#ifndef _WIN32
    if (mem->os_error() != EEXIST) {
      error_ = mem->error_message();
      return false;
    }
#else
    if (mem->os_error() != ERROR_ALREADY_EXISTS) {
      error_ = mem->error_message();
      return false;
    }
#endif
    // The name exists: replace it only if it is a stale ring we may replace (producer
    // dead or CLOSED, or a creation abandoned long ago). Whatever we cannot read, or
    // is not a regular file, or belongs to another user, is never removed.
    using Kind = SharedMemory::SegmentInfo::Kind;
    uint8_t hdr[layout::kHeaderSize] = {};
    const SharedMemory::SegmentInfo info = SharedMemory::Inspect(name_, hdr, sizeof hdr);
    if (info.kind == Kind::kMissing) continue;  // removed meanwhile: create again
    if (info.kind != Kind::kSegment) {
      error_ = "ring '" + name_ + "': " + info.error;
      return false;
    }
    if (!info.owned_by_us && !options.allow_foreign_owner) {
      error_ = "ring '" + name_ + "': " + DisplayPath(name_) + " is owned by " + info.owner +
               ", not by this process's user; refused (ProducerOptions::allow_foreign_owner "
               "lets a producer replace it)";
      return false;
    }
    if (info.size % layout::kRecordAlign != 0) {
      error_ = "ring '" + name_ + "': segment size " + std::to_string(info.size) +
               " is not a multiple of 8: not a shmring segment; remove it first";
      return false;
    }
    // The magic and version are readable in a segment of any version's size; the
    // rest of our header only in a whole one.
    const bool ident = info.header_bytes >= static_cast<long>(layout::kIdentSize);
    const bool whole = info.header_bytes == static_cast<long>(sizeof hdr);
    const uint32_t magic = ident ? HeaderField<uint32_t>(hdr, layout::kMagicOffset) : 0;
    const uint16_t version = ident ? HeaderField<uint16_t>(hdr, layout::kVersionOffset) : 0;
    if (magic == 0 && !MayBeRingInCreation(info.size)) {
      error_ = "segment '" + name_ + "' exists and is not a shmring ring (" +
               std::to_string(info.size) + " bytes, no magic); remove it first";
      return false;
    }
    // The producer byte of what is there: held = a live creator or producer.
    const liveness::Lock probe = liveness::ProbeName(name_, liveness::kProducerByte);
    if (magic == 0) {
      // No magic yet: another creator may be between shm_open and its magic store
      // (it holds the producer byte from before that store, or is about to take it).
      // Only unlocked debris older than tuning::kAbandonedAfterS is stale.
      if (probe == liveness::Lock::kHeld || info.age_seconds < tuning::kAbandonedAfterS) {
        if (attempt + 1 < tuning::kCreateAttempts) {
          std::this_thread::sleep_for(std::chrono::nanoseconds(tuning::kCreateRetryNs));
          continue;
        }
        error_ = "ring '" + name_ + "' is being created by another process (magic still 0)";
        return false;
      }
    } else if (magic == layout::kMagic && (version != layout::kVersion || !whole)) {
      // A ring of another layout version: only its producer byte says whether it is
      // in use (its flags are elsewhere); a free byte is a stale ring.
      if (probe != liveness::Lock::kFree) {
        error_ = "ring '" + name_ + "' is a version " + std::to_string(version) +
                 " ring in use by a live producer (this build writes version " +
                 std::to_string(layout::kVersion) + ")";
        return false;
      }
    } else if (magic == layout::kMagic) {
      const uint32_t flags = HeaderField<uint32_t>(hdr, layout::kProducerFlagsOffset);
      const uint32_t pid = HeaderField<uint32_t>(hdr, layout::kProducerPidOffset);
      if (!(flags & layout::kProducerClosed) && HolderAlive(probe, pid)) {
        error_ =
            "ring '" + name_ + "' is in use by a live producer (pid " + std::to_string(pid) + ")";
        return false;
      }
    } else {
      error_ = "segment '" + name_ +
               "' exists and is not a shmring ring (magic mismatch); "
               "remove it first";
      return false;
    }
    // Removed only while the name still names the ring judged stale: a ring another
    // producer put there meanwhile (after removing this one itself) stays.
    std::string err;
    const auto still = [&](int fd) { return StillTheStaleRing(fd, hdr, info.header_bytes); };
    switch (SharedMemory::UnlinkIfStill(name_, -1, false, still, &err)) {
      case SharedMemory::Unlinked::kYes:
      case SharedMemory::Unlinked::kNo:
        break;  // create again (or look again at what is there now)
      case SharedMemory::Unlinked::kBusy:
        std::this_thread::sleep_for(std::chrono::nanoseconds(tuning::kCreateRetryNs));
        break;
      case SharedMemory::Unlinked::kError:
        error_ = "cannot replace stale ring '" + name_ + "': " + err;
        return false;
    }
  }
  error_ = "could not create ring '" + name_ + "': the name kept reappearing";
  return false;
}

ShmProducer::~ShmProducer() {
  if (!ring_ || retired_) return;
  // Unlink first, then CLOSED. After an earlier explicit Close() a successor may
  // have replaced us: the name is removed only while it still names our own file
  // (SharedMemory::UnlinkIfStill; a successor removing us holds the same flock).
  std::string err;
  (void)SharedMemory::UnlinkIfStill(
      name_, memory_->fd(), true, [](int) { return true; }, &err);
  Close();
}

bool ShmProducer::Write(const void* data, uint32_t len) {
  return WriteFor(data, len, 0) == Status::kOk;
}

Status ShmProducer::WriteFor(const void* data, uint32_t len, int64_t timeout_ns) {
  return WriteFor(data, len, timeout_ns, true);
}

Status ShmProducer::WriteFor(const void* data, uint32_t len, int64_t timeout_ns, bool sync) {
  // A message that fits now is written and published in one ring call (no
  // reservation entry, no clock read); anything else (full, too large, closed, an
  // open reservation, a concurrent producer) takes the reservation path.
  if (ring_ && !concurrent_ && !closed_) {
    switch (ring_->WriteFast(data, len, sync)) {
      case ByteRingBuffer::FastWrite::kWritten:
        return Status::kOk;
      case ByteRingBuffer::FastWrite::kWake:
        return ring_->WakeAfterWrite();
      case ByteRingBuffer::FastWrite::kNotWritten:
        break;
    }
  }
  return WriteReserving(data, len, timeout_ns, sync);
}

SHM_CHANNEL_NOINLINE Status ShmProducer::WriteReserving(const void* data, uint32_t len,
                                                        int64_t timeout_ns, bool sync) {
  uint8_t* payload = nullptr;
  const Status s = Reserve(len, &payload, timeout_ns, FillHint::kCopied);
  if (s != Status::kOk) return s;
  if (len != 0) std::memcpy(payload, data, len);
  Commit(len, sync);
  return Status::kOk;
}

// The lock of a concurrent producer (no lock otherwise).
namespace {
std::unique_lock<std::mutex> LockIf(std::mutex& mu, bool on) {
  return on ? std::unique_lock<std::mutex>(mu) : std::unique_lock<std::mutex>(mu, std::defer_lock);
}
int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// One reservation attempt under the lock, then (without it) the wait protocol's
// sleep on the limiting receiver slot's tail and flags, until it fits, times out or
// is interrupted. The rules of Reserve's wait hold: several receivers: dead ones are
// reaped when full and once per liveness slice; one consumer: once a consumer had
// attached, its death or detach ends the wait with kFull. When the space is held by
// kept reservations (freed by other threads, without a tail change) it sleeps until
// Unkeep wakes it.
template <typename Attempt>
Status ShmProducer::ReserveWaiting(uint32_t len, int64_t timeout_ns, Interrupter* intr,
                                   Attempt attempt) {
  const int64_t deadline = timeout_ns < 0 ? 0 : SteadyNowNs() + timeout_ns;
  const bool fan_out = ring_->max_receivers() > 1;
  // WAITING is set on the first sleep for space and cleared when this wait ends (and
  // no other thread of ours still waits): one fence per wait, not per slice.
  ByteRingBuffer::SpaceWaitScope scope(ring_.get());
  bool had_consumer = false;
  bool looked = false;    // the one-consumer probe ran at least once
  int64_t next_look = 0;  // next liveness look (steady clock)
  for (int spin = 0;; ++spin) {
    uint32_t seen = 0;
    uint32_t slot = 0;
    uint32_t unkeeps = 0;
    bool kept = false;
    {
      auto lock = LockIf(mu_, true);
      if (closed_) return Status::kClosed;
      Status s = attempt();
      if (s == Status::kFull && fan_out &&
          ElapsedNs(Clock::time_point{}) - last_reap_ns_ >= tuning::kLivenessSliceNs &&
          ReapDeadReceiversLocked() > 0) {
        s = attempt();  // a receiver that died without detaching held us back
      }
      if (s != Status::kFull) {
        if (s == Status::kCorrupt) error_ = "ring '" + name_ + "': " + ring_->error();
        return s;
      }
      seen = ring_->TailSeen();
      slot = ring_->LimitSlot();
      kept = ring_->FullOfKept(len);
      unkeeps = ring_->UnkeepCount();  // under the lock: an Unkeep after it wakes us
      if (!looked) had_consumer = ring_->ConsumerAttachCount() != 0;
    }
    if (timeout_ns == 0) return Status::kFull;
    if (intr->interrupted()) return Status::kInterrupted;
    int64_t left = kForever;
    const int64_t now = SteadyNowNs();
    if (timeout_ns > 0) {
      left = deadline - now;
      if (left <= 0) return Status::kTimeout;
    }
    if (now >= next_look) {
      if (fan_out) {
        auto lock = LockIf(mu_, true);
        ReapDeadReceiversLocked();
      } else {
        const bool attached = ConsumerAttached();
        if (had_consumer && !attached) return Status::kFull;  // nobody left to make room
        had_consumer = had_consumer || attached;
      }
      looked = true;
      next_look = now + tuning::kLivenessSliceNs;
    }
    if (spin < tuning::kSpinPolls) continue;
    int64_t nap = next_look - now;
    if (left >= 0 && left < nap) nap = left;
    if (kept) {
      // No receiver release helps: Unkeep from another thread does, and wakes us.
      ring_->SleepWhileKept(unkeeps, nap, intr);
      continue;
    }
    scope.Enter();
    if (ring_->SleepForSpace(slot, seen, nap, intr)) next_look = 0;  // (de)attach: look now
  }
}

Status ShmProducer::ReserveNext(uint32_t len, Reservation* out, int64_t timeout_ns,
                                Interrupter* intr, FillHint fill) {
  if (!ring_) return Status::kInvalid;
  return ReserveWaiting(len, timeout_ns, intr != nullptr ? intr : &interrupter_,
                        [&] { return ring_->ReserveNext(len, out, fill); });
}

void ShmProducer::Publish(const Reservation& r, uint32_t len, bool keep, bool sync) {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  if (!closed_) ring_->Publish(r, len, keep, sync);
}

void ShmProducer::Abandon(const Reservation& r, bool keep) {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  if (!closed_) ring_->Abandon(r, keep);
}

bool ShmProducer::Retract(const Reservation& r) {
  if (!ring_) return false;
  auto lock = LockIf(mu_, concurrent_);
  return !closed_ && ring_->Retract(r);
}

void ShmProducer::Unkeep(const Reservation& r) {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  if (!closed_) ring_->Unkeep(r);
}

bool ShmProducer::HeldBackByKept(uint32_t len) {
  if (!ring_) return false;
  auto lock = LockIf(mu_, concurrent_);
  return ring_->FullOfKept(len);
}

bool ShmProducer::WaitingHelps(uint32_t len) {
  if (!ring_) return false;
  auto lock = LockIf(mu_, concurrent_);
  return ring_->ReceiversBehind() && !ring_->FullOfKept(len);
}

bool ShmProducer::InOrder(const Reservation& r) {
  if (!ring_) return false;
  auto lock = LockIf(mu_, concurrent_);
  return ring_->InOrder(r);
}

void ShmProducer::Retire() {
  if (!ring_ || retired_) return;
  std::string err;  // as the destructor: only while the name still names our file
  (void)SharedMemory::UnlinkIfStill(
      name_, memory_->fd(), true, [](int) { return true; }, &err);
  Close();
  owner_arm_.reset();  // disarmed: our later death is no longer this ring's news
  liveness::Drop(memory_->fd(), liveness::kProducerByte);
  retired_ = true;
}

bool ShmProducer::ReleaseName(std::string* error) {
  if (!ring_ || retired_) {
    if (error != nullptr) *error = "ring '" + name_ + "' is not open";
    return false;
  }
#ifdef _WIN32
  // A Win32 mapping's name lasts while any process holds a handle to it (the old
  // ring's consumers do): there is no removing it for a successor, and
  // UnlinkIfStill's kYes there means nothing was done.
  if (error != nullptr) {
    *error = "ring '" + name_ +
             "': a name cannot be handed on to a new ring on Windows (a mapping's name lasts "
             "while any process holds a handle to it)";
  }
  return false;
#else
  std::string err;
  const SharedMemory::Unlinked u = SharedMemory::UnlinkIfStill(
      name_, memory_->fd(), true, [](int) { return true; }, &err);
  if (u == SharedMemory::Unlinked::kYes) return true;
  if (error != nullptr) {
    *error = err.empty() ? "ring '" + name_ + "': the name no longer names this ring" : err;
  }
  return false;
#endif
}

Status ShmProducer::Reserve(uint32_t len, uint8_t** payload, int64_t timeout_ns, FillHint fill) {
  if (!ring_) return Status::kInvalid;
  if (concurrent_) {
    return ReserveWaiting(len, timeout_ns, &interrupter_,
                          [&] { return ring_->Reserve(len, payload, fill); });
  }
  if (closed_) return Status::kClosed;
  Status s = ring_->Reserve(len, payload, fill);
  if (s == Status::kFull && ring_->max_receivers() > 1) {
    // Full: a receiver that died without detaching must not hold us back. Looked
    // at once per liveness slice (one fcntl per attached slot).
    const int64_t now = ElapsedNs(Clock::time_point{});
    if (now - last_reap_ns_ >= tuning::kLivenessSliceNs && ReapDeadReceivers() > 0) {
      s = ring_->Reserve(len, payload, fill);
    }
  }
  if (s == Status::kFull && timeout_ns != 0) {
    // One consumer: once a consumer had attached to the ring (before the wait or
    // during it), its death or detach ends the wait with kFull: nobody is left to
    // make room. Before any consumer ever came, the wait goes on (either side may
    // start first). Several receivers: a receiver that died without detaching must
    // not hold us back; dead ones are reaped once per liveness slice. One lock
    // probe (per slot) at the start, per slice, and when a consumer's flags say it
    // attached or detached.
    const bool fan_out = ring_->max_receivers() > 1;
    bool had_consumer = ring_->ConsumerAttachCount() != 0;
    if (!fan_out && had_consumer && !ConsumerAttached()) return Status::kFull;
    const auto start = Clock::now();
    for (;;) {
      int64_t left = timeout_ns;
      if (timeout_ns > 0) {
        left = timeout_ns - ElapsedNs(start);
        if (left <= 0) {
          s = Status::kTimeout;
          break;
        }
      }
      s = ring_->WaitWritable(len, left, &interrupter_, [this, fan_out, &had_consumer] {
        if (fan_out) {
          ReapDeadReceivers();
          return Status::kOk;
        }
        const bool attached = ConsumerAttached();
        if (had_consumer && !attached) return Status::kFull;
        had_consumer = had_consumer || attached;
        return Status::kOk;
      });
      if (s != Status::kOk) break;
      s = ring_->Reserve(len, payload, fill);
      if (s != Status::kFull) break;
    }
  }
  if (s == Status::kCorrupt) error_ = "ring '" + name_ + "': " + ring_->error();
  return s;
}

uint32_t ShmProducer::ReapDeadReceivers() {
  if (!ring_) return 0;
  auto lock = LockIf(mu_, concurrent_);
  return ReapDeadReceiversLocked();
}

uint32_t ShmProducer::ReapDeadReceiversLocked() {
  last_reap_ns_ = ElapsedNs(Clock::time_point{});
  uint32_t found = 0;
  for (uint32_t k = 0; k < ring_->max_receivers(); ++k) {
    // The flags (attach count) before the probe: see MarkSlotDead.
    const uint32_t flags = ring_->SlotFlags(k);
    if (!(flags & layout::kConsumerAttached)) continue;
    if (ReceiverAttached(k)) continue;
    ring_->MarkSlotDead(k, flags);
    ++found;
  }
  return found;
}

bool ShmProducer::ReceiverAttached(uint32_t slot) const {
  if (!ring_ || slot >= ring_->max_receivers()) return false;
  const liveness::Lock probe = liveness::Probe(memory_->fd(), liveness::kConsumerByte + slot);
  if (probe == liveness::Lock::kHeld || probe == liveness::Lock::kFree) {
    return probe == liveness::Lock::kHeld;
  }
  // No OFD locks here: the ATTACHED flag and a live pid.
  if (!(ring_->SlotFlags(slot) & layout::kConsumerAttached)) return false;
  return ProcessAlive(ring_->SlotPid(slot));
}

bool ShmProducer::SetStreamInfo(const std::string& info, uint32_t index) {
  if (!ring_) return false;
  return ring_->SetStreamInfo(info.data(), static_cast<uint32_t>(info.size()), index);
}

void ShmProducer::Commit(uint32_t len) { Commit(len, true); }

void ShmProducer::Commit(uint32_t len, bool sync) {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  if (!closed_) ring_->Commit(len, sync);
}

void ShmProducer::CountDropped(uint64_t n) {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  ring_->AddDropped(n);
}

uint64_t ShmProducer::Dropped() const { return ring_ ? ring_->Dropped() : 0; }

bool ShmProducer::ConsumerAttached() const {
  if (!ring_) return false;
  for (uint32_t k = 0; k < ring_->max_receivers(); ++k) {
    if (ReceiverAttached(k)) return true;
  }
  return false;
}

void ShmProducer::SetLive(bool live) {
  if (ring_) ring_->SetLive(live);
}

void ShmProducer::Close() {
  if (!ring_) return;
  auto lock = LockIf(mu_, concurrent_);
  if (closed_) return;
  closed_ = true;
  ring_->AbandonOpen();  // what was finished before reaches the consumer
  ring_->SetClosed();
}

// ---- ShmConsumer -------------------------------------------------------------

#ifdef SHMRING_TEST_SEAMS
void (*test_seams::before_claim)() = nullptr;
#endif

ShmConsumer::ShmConsumer(const char* name)
    : ShmConsumer(std::string(name != nullptr ? name : "")) {}

ShmConsumer::ShmConsumer(const std::string& name) : name_(name) { Open(ConsumerOptions()); }

ShmConsumer::ShmConsumer(const std::string& name, int64_t open_timeout_ns) : name_(name) {
  ConsumerOptions o;
  o.open_timeout_ns = open_timeout_ns;
  Open(o);
}

ShmConsumer::ShmConsumer(const std::string& name, const ConsumerOptions& options) : name_(name) {
  Open(options);
}

ShmConsumer::~ShmConsumer() { Detach(); }

// Takes the consumer role: an OFD write lock on the consumer byte of our own
// descriptor, held until Detach, so two consumers racing to attach cannot both win
// (see liveness.hpp). Returns false (with error_) when another consumer holds it.
// Without OFD locks, falls back to the ATTACHED flag and the pid of its holder.
// Receiver slot k is claimed by the lock on byte 1 + k; the lowest free slot wins.
bool ShmConsumer::Claim(const SharedMemory& mem, uint32_t max_receivers) {
  const auto* base = static_cast<const uint8_t*>(mem.data());
  auto slot_word = [&](uint32_t k, uint32_t field) {
    return atomics::LoadAcquire(
        reinterpret_cast<const uint32_t*>(base + layout::SlotOffset(k) + field));
  };
  auto refuse = [&]() {
    if (max_receivers == 1) {
      busy_pid_ = slot_word(0, layout::kSlotPid);
      error_ = "ring '" + name_ + "' already has a consumer (pid " + std::to_string(busy_pid_) +
               "); a ring has one consumer";
    } else {
      std::string pids;
      for (uint32_t k = 0; k < max_receivers; ++k) {
        pids += (k ? ", " : "") + std::to_string(slot_word(k, layout::kSlotPid));
      }
      busy_pid_ = slot_word(0, layout::kSlotPid);
      error_ = "ring '" + name_ + "' already has " + std::to_string(max_receivers) +
               " receivers (pids " + pids + "), its producer's max_receivers";
    }
    return false;
  };
  // Claimed: an ATTACHED flag left in the slot is a dead receiver's; cleared at once,
  // before any other word of the slot, so that "claimed, ATTACHED clear" means
  // attaching (PROTOCOL.md section 7, "Claiming a slot"). Relaxed: our later stores
  // are ordered after it by SetConsumerAttached's full fence; the attach count stays.
  auto claimed = [&](uint32_t k) {
    atomics::FetchAndRelaxed(
        reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(mem.data()) + layout::SlotOffset(k) +
                                    layout::kSlotFlags),
        ~layout::kConsumerAttached);
    claim_slot_ = k;
    return true;
  };
  for (uint32_t k = 0; k < max_receivers; ++k) {
    std::string lock_error;
    switch (liveness::Take(mem.fd(), liveness::kConsumerByte + k, &lock_error)) {
      case liveness::Lock::kHeld:
        claim_fd_ = mem.fd();
        claim_byte_ = liveness::kConsumerByte + k;
        return claimed(k);
      case liveness::Lock::kFree:
        continue;  // taken: try the next slot
      case liveness::Lock::kError:
        error_ = "cannot claim receiver slot " + std::to_string(k) + " of ring '" + name_ +
                 "': " + lock_error;
        return false;
      case liveness::Lock::kUnsupported: {
        // No OFD locks: the ATTACHED flag and the pid of its holder.
        const uint32_t holder = slot_word(k, layout::kSlotPid);
        if ((slot_word(k, layout::kSlotFlags) & layout::kConsumerAttached) && holder != 0 &&
            ProcessAlive(holder)) {
          continue;
        }
        return claimed(k);
      }
    }
  }
  return refuse();
}

void ShmConsumer::ReleaseClaim() {
  if (claim_fd_ >= 0) liveness::Drop(claim_fd_, claim_byte_);
  claim_fd_ = -1;
}

// One look at the name. kAttached: ring_ and memory_ set. kNotYet: nothing there
// yet (or, if asked, only a dead producer's ring). kRefused: error_ says why.
ShmConsumer::Attempt ShmConsumer::TryOpen(const ConsumerOptions& options) {
  SharedMemory::Options mo;
  mo.allow_foreign_owner = options.allow_foreign_owner;
  auto mem = std::make_unique<SharedMemory>(name_, 0, false, mo);
  if (!mem->valid()) {
#ifdef _WIN32
    const bool not_yet = mem->os_error() == ERROR_FILE_NOT_FOUND;
#else
    // ENOENT, or a creator between shm_open and ftruncate; anything else is final.
    const bool not_yet = mem->missing();
#endif
    error_ =
        (not_yet ? "no ring '" + name_ + "' yet: " : "ring '" + name_ + "' cannot be opened: ") +
        mem->error_message();
    return not_yet ? Attempt::kNotYet : Attempt::kRefused;
  }
  bool uninitialized = false;
  const std::string bad =
      ByteRingBuffer::ValidateSegment(mem->data(), mem->size(), nullptr, &uninitialized);
  if (!bad.empty()) {
    error_ = "ring '" + name_ + "' is not usable: " + bad;
    // Decided from the one magic load the validation made: a ring still being
    // created has no magic and the size its creator gave it in one ftruncate.
    return uninitialized && MayBeRingInCreation(mem->size()) ? Attempt::kNotYet : Attempt::kRefused;
  }
  const auto* base = static_cast<const uint8_t*>(mem->data());
  if (options.wait_for_live_producer) {
    const uint32_t pflags = atomics::LoadAcquire(
        reinterpret_cast<const uint32_t*>(base + layout::kProducerFlagsOffset));
    const uint32_t pid =
        atomics::LoadRelaxed(reinterpret_cast<const uint32_t*>(base + layout::kProducerPidOffset));
    if (!(pflags & layout::kProducerClosed) && !ProducerAlive(*mem, pid)) {
      error_ = "ring '" + name_ + "' is stale: its producer (pid " + std::to_string(pid) +
               ") died; waiting for a new one";
      return Attempt::kNotYet;
    }
  }
  if (options.wait_for_open_producer) {
    const uint32_t pflags = atomics::LoadAcquire(
        reinterpret_cast<const uint32_t*>(base + layout::kProducerFlagsOffset));
    // Acquire on both: CLOSED is stored after the last publish, so a head read
    // after it is final.
    const uint32_t head =
        atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(base + layout::kHeadOffset));
    const uint32_t tail =
        atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(base + layout::kTailOffset));
    if ((pflags & layout::kProducerClosed) && head == tail) {
      error_ = "ring '" + name_ +
               "' holds a stream that ended and was read to its end; waiting for the "
               "producer's next ring";
      return Attempt::kNotYet;
    }
  }
  // Claim a slot before writing any of its words.
  uint32_t max_receivers = 0;
  std::memcpy(&max_receivers, base + layout::kMaxReceiversOffset, 4);  // validated
  SHMRING_SEAM(before_claim);  // nothing outside a test build (test_seams.hpp)
  if (!Claim(*mem, max_receivers)) return Attempt::kRefused;
  uint32_t mode = options.mode;
  if (mode == kModeAuto) {
    const uint32_t pflags = atomics::LoadAcquire(
        reinterpret_cast<const uint32_t*>(base + layout::kProducerFlagsOffset));
    mode = (pflags & layout::kProducerLive) && max_receivers > 1 ? layout::kModeLive
                                                                 : layout::kModeLossless;
  }
  auto ring =
      std::make_unique<ByteRingBuffer>(mem->data(), uint64_t{mem->size()}, claim_slot_, mode);
  if (!ring->valid()) {  // a hostile peer changed the header since the check
    error_ = "ring '" + name_ + "' is not usable: " + ring->error();
    ReleaseClaim();
    return Attempt::kRefused;
  }
  live_ = (ring->ProducerFlags() & layout::kProducerLive) != 0;
  // The backlog is freed unread when starting at the newest.
  const bool newest =
      options.start_at == StartAt::kNewest || (options.start_at == StartAt::kNewestIfLive && live_);
  released_to_ = ring->AttachSlot(newest, CurrentPid());
  attach_head_ = ring->LoadHead();
  // After the claim (an fcntl on our slot byte): a producer that stored CLOSED and
  // then found this slot free (ShmProducer::ReceiverAttached probes that byte, and
  // the kernel orders the two calls on the lock) had it before our claim, so this
  // acquire load sees CLOSED. Either the producer counted us (and keeps its role
  // lock for us) or the ring was over before we came. Then a hand-over's successor
  // is already under the name (it is created before the old ring is CLOSED), while
  // a ring made after a real end comes only after CLOSED and the unlink: the name's
  // ring of this process, seen now, is the only one HandedOver may follow without
  // the old producer's lock. One read of the name's header, only on a CLOSED ring.
  successor_at_claim_ = false;
  if (ring->ProducerClosed()) {
    successor_at_claim_ =
        SameProcessRingUnderName(name_, ring->generation(), ring->ProducerPid(), &successor_gen_);
  }
  acquired_to_ = released_to_;
  ring_ = std::move(ring);
  memory_ = std::move(mem);
  return Attempt::kAttached;
}

// Sleeps `ns` or until the interrupter fires.
void ShmConsumer::Nap(int64_t ns) {
  interrupter_->BeginSleep(&nap_word_);
  if (!interrupter_->interrupted()) wait::WaitOnWord(&nap_word_, 0, ns);
  interrupter_->EndSleep();
}

bool ShmConsumer::Open(const ConsumerOptions& options) {
  if (options.interrupter != nullptr) interrupter_ = options.interrupter;
  error_ = ValidateName(name_);
  if (!error_.empty()) {
    open_status_ = Status::kInvalid;
    return false;
  }
  const int64_t timeout = options.open_timeout_ns;
  const auto start = Clock::now();
  int64_t pause = tuning::kOpenPollMinNs;
  for (;;) {
    switch (TryOpen(options)) {
      case Attempt::kAttached:
        error_.clear();
        open_status_ = Status::kOk;
        return true;
      case Attempt::kRefused:
        open_status_ = Status::kInvalid;
        return false;
      case Attempt::kNotYet:
        break;
    }
    if (interrupter_->interrupted()) {
      open_status_ = Status::kInterrupted;
      return false;
    }
    const int64_t elapsed = ElapsedNs(start);
    if (timeout >= 0 && elapsed >= timeout) {
      open_status_ = Status::kTimeout;
      return false;
    }
    Nap(timeout >= 0 && timeout - elapsed < pause ? timeout - elapsed : pause);
    pause = pause * 2 < tuning::kOpenPollMaxNs ? pause * 2 : tuning::kOpenPollMaxNs;
  }
}

void ShmConsumer::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ring_ || detached_) return;
  detached_ = true;
  ring_->Flush();  // batched releases reach the producer before we go
  ring_->SetConsumerAttached(false, 0);
  ReleaseClaim();
}

uint32_t ShmConsumer::Read(void* out, uint32_t max_len) {
  if (!ring_) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  return detached_ ? 0 : ring_->Read(out, max_len);
}

ReadResult ShmConsumer::TryRead(void* out, uint32_t max_len) {
  if (!ring_) return {Status::kInvalid, 0};
  std::lock_guard<std::mutex> lock(mu_);
  if (detached_) return {Status::kInvalid, 0};
  return ring_->TryRead(out, max_len);
}

bool ShmConsumer::HasData() const {
  if (!ring_) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return !detached_ && ring_->HasData();
}

Status ShmConsumer::CheckProducer() {
  if (!ring_) return Status::kInvalid;
  if (!ring_->ProducerClosed()) {
    // The idle path: one probe of the producer byte, no look at the name.
    if (ProducerAlive(*memory_, ring_->ProducerPid())) return Status::kOk;
    // Gone without CLOSED. A successor that took the name says more (re-open it)
    // than a death, so the name's generation decides between the two.
    uint8_t hdr[layout::kHeaderSize];
    if (ReadHeader(name_, hdr) &&
        HeaderField<uint32_t>(hdr, layout::kMagicOffset) == layout::kMagic &&
        HeaderField<uint64_t>(hdr, layout::kGenerationOffset) != ring_->generation()) {
      return Status::kReplaced;
    }
    return Status::kPeerDead;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return ring_->HasData() ? Status::kOk : Status::kClosed;
}

bool ShmConsumer::HandedOver() {
  if (!ring_ || !ring_->ProducerClosed()) return false;
  // The role lock is probed before the name is read: a producer that let go of
  // its lock after its successor took the name is an ended stream, not a handover.
  // (Without OFD locks: its pid, as for CheckProducer.) Unless the ring was CLOSED
  // before we claimed our slot with its successor already under the name: a
  // producer that moved may have let go of a ring it saw no receiver in, and then
  // only that successor (still under the name) is followed, not a ring of a
  // restart in the same process after a real end.
  const bool held = ProducerAlive(*memory_, ring_->ProducerPid());
  if (!held && !successor_at_claim_) return false;
  // A handover stays within one process: a ring of another process under the name
  // (say, one that replaced a ring CLOSED after an error while its producer still
  // held the lock) is an unrelated stream.
  uint64_t under = 0;
  return SameProcessRingUnderName(name_, ring_->generation(), ring_->ProducerPid(), &under) &&
         (held || under == successor_gen_);
}

// One step under mu_: the next record, acquired (and tracked) or peeked.
Status ShmConsumer::TakeLocked(Op op, MessageView* out) {
  if (detached_) return Status::kInvalid;
  const Status s = op == Op::kPeek ? ring_->Peek(out) : ring_->Acquire(out);
  if (s == Status::kCorrupt) error_ = ring_->error();
  if (s == Status::kOk && op == Op::kAcquire) {
    // With nothing held, the tail may have moved past a WRAP marker on its own:
    // count held bytes from this record's start.
    if (held_.empty()) {
      released_to_ = out->end - static_cast<uint32_t>(layout::RecordSize(out->len));
    }
    held_.push_back(Held{out->end, false});
    acquired_to_ = out->end;
  }
  return s;
}

// Held records stall the sender: the producer waits for space while the oldest
// acquired record is still in use. Tells the callback once per episode.
void ShmConsumer::ReportStall() {
  bool stalled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stalled = !held_.empty() && !held_.front().released &&
              (ring_->ProducerFlags() & layout::kProducerWaiting) != 0;
  }
  if (!stalled) {
    stall_reported_ = false;
  } else if (!stall_reported_ && on_stall_) {
    stall_reported_ = true;
    on_stall_();
  }
}

// The one wait loop of the consumer: take a record under mu_; when there is none,
// spin, then sleep on the head word without mu_ (releases go on meanwhile); every
// liveness slice, look at the producer. A dead or replaced producer's finished
// records are delivered before it is reported.
Status ShmConsumer::Wait(int64_t timeout_ns, Op op, MessageView* out, CopyOut* copy) {
  if (!ring_) return Status::kInvalid;
  // WAITING, once set by the first sleep, stays set across the slices' re-sleeps
  // and is cleared on the way out, whatever the return.
  // The record-at-once path takes no clock reading and no second lock.
  struct EndSleep {
    ShmConsumer* self;
    bool marked = false;  // in_wait_ may be set (the last look found nothing)
    ~EndSleep() {
      self->ring_->EndSleep();  // WAITING, if a sleep set it (a plain bool check if not)
      if (!marked) return;
      std::lock_guard<std::mutex> lock(self->mu_);
      self->in_wait_ = false;
    }
  } end_sleep{this};
  // The clock is read once the spin is over (or, with a finite timeout, at the first
  // look that finds nothing): a record that comes during the spin costs no clock read.
  Clock::time_point start;
  bool started = false;
  int64_t next_look = -1;  // since start; set at the first sleep
  int64_t last_look = 0;   // since start: when the current slice began
  int spins = 0;
  uint32_t spun_to = 0;  // the head the spin saw move (valid: spun)
  bool spun = false;
  bool holding = false;
  for (;;) {
    uint32_t seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_wait_ = false;
      end_sleep.marked = false;
      if (spun) ring_->NoteHead(spun_to);  // no second load of the word the spin just read
      spun = false;
      // ReadFor on an ordinary small record: copied and released inline.
      if (copy != nullptr && !detached_ &&
          ring_->ReadFast(copy->buf, copy->max_len, &copy->result.len)) {
        copy->result.status = Status::kOk;
        return Status::kOk;
      }
      const Status s = TakeLocked(op, out);
      if (s == Status::kOk && copy != nullptr) CopyLocked(*out, copy);
      if (s != Status::kEmpty) return s;  // kOk, kClosed, kCorrupt, kInvalid
      seen = ring_->HeadSeen();
      // Records we hold may stall the producer (reported once per slice, ReportStall):
      // it waits for space already, or we hold half the ring.
      holding = !held_.empty() && ((ring_->ProducerFlags() & layout::kProducerWaiting) != 0 ||
                                   acquired_to_ - released_to_ >= ring_->capacity() / 2);
      // Nothing to read: TakeLocked stored pending releases (going idle); later
      // releases from other threads store at once while we wait.
      in_wait_ = true;
      end_sleep.marked = true;
    }
    if (interrupter_->interrupted()) return Status::kInterrupted;
    if (timeout_ns == 0) return Status::kEmpty;  // non-blocking: no liveness look
    if (!started && (timeout_ns > 0 || spins >= tuning::kSpinPolls)) {
      start = Clock::now();
      started = true;
    }
    if (spins < tuning::kSpinPolls) {
      // The spin polls the head word alone (one load, no lock, no clock) and takes
      // the lock again only when the head moved or an interrupt came: the minimal
      // ring's poll. CLOSED (a flags change, not a head change) is seen at the
      // latest when the spin ends (kSpinPolls polls, a few microseconds).
      do {
        ++spins;
        atomics::CpuRelax();
        spun_to = ring_->LoadHead();
      } while (spins < tuning::kSpinPolls && spun_to == seen && !interrupter_->interrupted());
      spun = spun_to != seen;
      continue;
    }
    int64_t elapsed = ElapsedNs(start);
    if (OwnerNewlyDied()) {
      next_look = elapsed;  // look at the producer now
    } else if (next_look < 0) {
      next_look = SliceNs(holding);
    } else if (!wait::HaveWaitV() && next_look - last_look > tuning::kLivenessSliceNs) {
      // A long slice chosen before this process learnt that futex_waitv is missing:
      // the sleeps do not hear the owner word, so look within a liveness slice.
      next_look = last_look + tuning::kLivenessSliceNs;
    }
    if (elapsed >= next_look) {
      if (op == Op::kAcquire) ReportStall();
      const Status peer = CheckProducer();
      if (peer == Status::kPeerDead || peer == Status::kReplaced) {
        std::lock_guard<std::mutex> lock(mu_);
        const Status s = TakeLocked(op, out);  // what it finished writing comes first
        if (s == Status::kOk && copy != nullptr) CopyLocked(*out, copy);
        return s == Status::kEmpty ? peer : s;
      }
      last_look = elapsed;
      next_look = elapsed + SliceNs(holding);
      elapsed = ElapsedNs(start);
    }
    if (timeout_ns > 0 && elapsed >= timeout_ns) return Status::kTimeout;
    // A look (the stall callback, the lock query, a preemption) that outlasted the
    // slice chosen after it leaves next_look behind: sleep 0 and look again, never a
    // negative nap (a negative timeout is a sleep without limit).
    int64_t nap = next_look > elapsed ? next_look - elapsed : 0;
    if (timeout_ns > 0 && timeout_ns - elapsed < nap) nap = timeout_ns - elapsed;
    ring_->SleepWhileHeadIs(seen, owner_seen_, nap, interrupter_);
  }
}

// The owner word (layout::kProducerOwnerOffset) as the consumer thread last saw
// it. Newly marked OWNER_DIED: the kernel woke one sleeper of the word (maybe us,
// maybe another receiver of the ring), so we wake them all (fan-out), and the
// producer is looked at now, then again after kOwnerDiedLookNs, doubling: the
// kernel marks the word before the dying process's files (and lock) are released,
// and a forked child may still hold the ring (the lock byte is the verdict).
bool ShmConsumer::OwnerNewlyDied() {
  const uint32_t ov = ring_->ProducerOwner();
  if (ov == owner_seen_) return false;
  owner_seen_ = ov;
  if (owner::Classify(ov) != owner::State::kDied) return false;
  wait::NoteOwnerDied();
  wait::WakeWord(ring_->ProducerOwnerWord());
  owner_look_ns_ = tuning::kOwnerDiedLookNs;
  return true;
}

// Time to the next liveness look: the long safety-net slice while the producer's
// owner word is armed (its death wakes us), unless what we hold may stall the
// producer (`holding`: a stall is reported once per slice); a short, doubling one
// right after the word was marked OWNER_DIED; else the liveness slice.
int64_t ShmConsumer::SliceNs(bool holding) {
  switch (owner::Classify(owner_seen_)) {
    case owner::State::kArmed:
      // Only while the sleep really includes the owner word (futex_waitv works).
      return holding || !wait::HaveWaitV() ? tuning::kLivenessSliceNs
                                           : tuning::kArmedLivenessSliceNs;
    case owner::State::kDied:
      if (owner_look_ns_ < tuning::kLivenessSliceNs) {
        const int64_t look = owner_look_ns_;
        owner_look_ns_ *= 2;
        return look;
      }
      return tuning::kLivenessSliceNs;
    case owner::State::kUnarmed:
      break;
  }
  return tuning::kLivenessSliceNs;
}

void ShmConsumer::CopyLocked(const MessageView& v, CopyOut* copy) {
  if (v.len > copy->max_len) {
    copy->result = {Status::kBufferTooSmall, v.len};  // the message stays (as TryRead)
    return;
  }
  if (v.len != 0) std::memcpy(copy->buf, v.data, v.len);
  ring_->Release();
  copy->result = {Status::kOk, v.len};
}

ReadResult ShmConsumer::ReadFor(void* out, uint32_t max_len, int64_t timeout_ns) {
  MessageView v;
  // Peek, copy and release under one hold of mu_ (one look at the record).
  CopyOut copy{out, max_len, {Status::kOk, 0}};
  const Status s = Wait(timeout_ns, Op::kPeek, &v, &copy);
  if (s != Status::kOk) return {s, 0};
  return copy.result;
}

Status ShmConsumer::PeekFor(MessageView* out, int64_t timeout_ns) {
  return Wait(timeout_ns, Op::kPeek, out);
}

void ShmConsumer::Release() {
  if (!ring_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (detached_) return;
  ring_->Release();
  if (in_wait_) ring_->Flush();  // another thread's Wait sleeps: nobody else stores it
}

Status ShmConsumer::AcquireFor(MessageView* out, int64_t timeout_ns) {
  return Wait(timeout_ns, Op::kAcquire, out);
}

// Frees the released records at the front of held_ (mu_ held).
void ShmConsumer::AdvanceLocked() {
  bool advanced = false;
  while (!held_.empty() && held_.front().released) {
    released_to_ = held_.front().end;
    held_.pop_front();
    advanced = true;
  }
  if (advanced && !detached_) {
    ring_->ReleaseTo(released_to_);
    if (in_wait_) ring_->Flush();  // the consumer thread sleeps: nobody else stores it
  }
}

void ShmConsumer::Release(const MessageView& view) {
  if (!ring_) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (Held& h : held_) {
    if (h.end == view.end) {
      h.released = true;
      break;
    }
  }
  AdvanceLocked();
}

void ShmConsumer::ReleaseTo(uint32_t end) {
  if (!ring_) return;
  std::lock_guard<std::mutex> lock(mu_);
  // Only records actually held, in ring order, up to the one ending at `end`.
  bool found = false;
  for (const Held& h : held_) found = found || h.end == end;
  if (!found) return;
  for (Held& h : held_) {
    h.released = true;
    if (h.end == end) break;
  }
  AdvanceLocked();
}

uint32_t ShmConsumer::HeldBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return acquired_to_ - released_to_;
}

}  // namespace shm
