#include "shm/shm_channel.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "atomics.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace shm {
namespace {

using Clock = std::chrono::steady_clock;

// How often a waiting consumer looks at the producer's pid and the name's
// generation. Bounds the time to notice a crash; idle cost is one wake-up per slice.
constexpr int64_t kLivenessSliceNs = 200'000'000;

// A segment without a magic this much older than its creation is abandoned debris.
constexpr double kAbandonedAfterS = 5.0;
// How often a creator looks again at a name another creator is still setting up.
constexpr int kCreateAttempts = 20;

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
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    SharedMemory::Options mo;
    mo.mode = options.mode;
    auto mem = std::make_unique<SharedMemory>(name_, total, true, mo);
    if (mem->valid()) {
      const std::string err =
          ByteRingBuffer::Initialize(mem->data(), mem->size(), capacity, options.profile,
                                     NewGeneration(), options.start_index, CurrentPid());
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
    const bool whole = info.header_bytes == static_cast<long>(sizeof hdr);
    const uint32_t magic = whole ? HeaderField<uint32_t>(hdr, layout::kMagicOffset) : 0;
    if (magic == 0 && !layout::MayBeRingInCreation(info.size)) {
      error_ = "segment '" + name_ + "' exists and is not a shmring ring (" +
               std::to_string(info.size) + " bytes, no magic); remove it first";
      return false;
    }
    if (magic == 0) {
      // No magic yet: another creator may be between shm_open and its magic store.
      // Only debris older than kAbandonedAfterS is stale.
      if (info.age_seconds < kAbandonedAfterS) {
        if (attempt + 1 < kCreateAttempts) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        error_ = "ring '" + name_ + "' is being created by another process (magic still 0)";
        return false;
      }
    } else if (magic == layout::kMagic) {
      const uint32_t flags = HeaderField<uint32_t>(hdr, layout::kProducerFlagsOffset);
      const uint32_t pid = HeaderField<uint32_t>(hdr, layout::kProducerPidOffset);
      if (!(flags & layout::kProducerClosed) && ProcessAlive(pid)) {  // pid 0: unknown, alive
        error_ = "ring '" + name_ + "' is in use by live producer pid " + std::to_string(pid);
        return false;
      }
    } else {
      error_ = "segment '" + name_ +
               "' exists and is not a shmring ring (magic mismatch); "
               "remove it first";
      return false;
    }
    std::string err;
    if (!SharedMemory::Unlink(name_, &err) && errno != ENOENT) {
      error_ = "cannot replace stale ring '" + name_ + "': " + err;
      return false;
    }
  }
  error_ = "could not create ring '" + name_ + "': the name kept reappearing";
  return false;
}

ShmProducer::~ShmProducer() {
  if (!ring_) return;
  // Unlink first, then CLOSED: while we are alive and not CLOSED nobody replaces the
  // name, so the generation we check is still the one we unlink. (After an earlier
  // explicit Close() a successor may replace us at any time; the check then keeps
  // us off its name except in the instant between check and unlink.)
  uint8_t hdr[layout::kHeaderSize];
  if (ReadHeader(name_, hdr) &&
      HeaderField<uint64_t>(hdr, layout::kGenerationOffset) == ring_->generation()) {
    memory_->destroy();
  }
  Close();
}

bool ShmProducer::Write(const void* data, uint32_t len) {
  return WriteFor(data, len, 0) == Status::kOk;
}

Status ShmProducer::WriteFor(const void* data, uint32_t len, int64_t timeout_ns) {
  uint8_t* payload = nullptr;
  const Status s = Reserve(len, &payload, timeout_ns);
  if (s != Status::kOk) return s;
  if (len != 0) std::memcpy(payload, data, len);
  Commit(len);
  return Status::kOk;
}

Status ShmProducer::Reserve(uint32_t len, uint8_t** payload, int64_t timeout_ns) {
  if (!ring_) return Status::kInvalid;
  if (closed_) return Status::kClosed;
  Status s = ring_->Reserve(len, payload);
  if (s == Status::kFull && timeout_ns != 0) {
    s = ring_->WaitWritable(len, timeout_ns, &interrupter_);
    if (s == Status::kOk) s = ring_->Reserve(len, payload);
  }
  if (s == Status::kCorrupt) error_ = "ring '" + name_ + "': " + ring_->error();
  return s;
}

void ShmProducer::Commit(uint32_t len) {
  if (ring_) ring_->Commit(len);
}

void ShmProducer::CountDropped(uint64_t n) {
  if (ring_) ring_->AddDropped(n);
}

uint64_t ShmProducer::Dropped() const { return ring_ ? ring_->Dropped() : 0; }

bool ShmProducer::ConsumerAttached() const {
  if (!ring_) return false;
  if (!(ring_->ConsumerFlags() & layout::kConsumerAttached)) return false;
  return ProcessAlive(ring_->ConsumerPid());
}

void ShmProducer::Close() {
  if (!ring_ || closed_) return;
  closed_ = true;
  ring_->SetClosed();
}

// ---- ShmConsumer -------------------------------------------------------------

ShmConsumer::ShmConsumer(const char* name)
    : ShmConsumer(std::string(name != nullptr ? name : "")) {}

ShmConsumer::ShmConsumer(const std::string& name) : name_(name) { Open(0); }

ShmConsumer::ShmConsumer(const std::string& name, int64_t open_timeout_ns) : name_(name) {
  Open(open_timeout_ns);
}

ShmConsumer::~ShmConsumer() {
  if (ring_) ring_->SetConsumerAttached(false, 0);
  ReleaseClaim();
}

// Takes the consumer role: an exclusive flock on the segment (POSIX), held for our
// lifetime, so two consumers racing to attach cannot both win. Returns false (with
// error_) when another consumer holds it. Where flock is unsupported, falls back to
// the ATTACHED flag and the pid of its holder.
bool ShmConsumer::Claim(const uint8_t* base) {
#ifndef _WIN32
  const int fd = shm_open(OsName(name_).c_str(), O_RDONLY, 0);
  if (fd >= 0) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      claim_fd_ = fd;
      return true;  // any ATTACHED flag left behind is a dead consumer's
    }
    const int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
      error_ = "ring '" + name_ + "' already has a consumer (pid " +
               std::to_string(atomics::LoadRelaxed(
                   reinterpret_cast<const uint32_t*>(base + layout::kConsumerPidOffset))) +
               "); a ring has one consumer";
      return false;
    }
  }
#endif
  const uint32_t cflags =
      atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(base + layout::kConsumerFlagsOffset));
  const uint32_t cpid =
      atomics::LoadRelaxed(reinterpret_cast<const uint32_t*>(base + layout::kConsumerPidOffset));
  if ((cflags & layout::kConsumerAttached) && cpid != 0 && ProcessAlive(cpid)) {
    error_ = "ring '" + name_ + "' already has a consumer (pid " + std::to_string(cpid) +
             "); a ring has one consumer";
    return false;
  }
  return true;
}

void ShmConsumer::ReleaseClaim() {
#ifndef _WIN32
  if (claim_fd_ >= 0) close(claim_fd_);  // drops the flock
#endif
  claim_fd_ = -1;
}

bool ShmConsumer::Open(int64_t open_timeout_ns) {
  error_ = ValidateName(name_);
  if (!error_.empty()) {
    open_status_ = Status::kInvalid;
    return false;
  }
  const auto start = Clock::now();
  int64_t pause_ms = 1;
  for (;;) {
    auto mem = std::make_unique<SharedMemory>(name_, 0, false);
    bool retry = false;
    if (!mem->valid()) {
#ifdef _WIN32
      retry = mem->os_error() == ERROR_FILE_NOT_FOUND;
#else
      retry = mem->missing();  // ENOENT or an empty segment; all else is final
#endif
      error_ = "no ring '" + name_ + "': " + mem->error_message();
    } else {
      const std::string bad = ByteRingBuffer::ValidateSegment(mem->data(), mem->size());
      if (bad.empty()) {
        // Claim the role before writing any consumer word.
        if (!Claim(static_cast<const uint8_t*>(mem->data()))) {
          open_status_ = Status::kInvalid;
          return false;
        }
        auto ring = std::make_unique<ByteRingBuffer>(mem->data(), uint64_t{mem->size()}, false);
        ring->SetConsumerAttached(true, CurrentPid());
        ring_ = std::move(ring);
        memory_ = std::move(mem);
        error_.clear();
        open_status_ = Status::kOk;
        return true;
      }
      // magic 0 in a full-size header: created but not initialized yet; anything else
      // (a segment smaller than the header can never become valid) is refused at once.
      const uint32_t magic = mem->size() >= layout::kHeaderSize
                                 ? atomics::LoadAcquire(reinterpret_cast<const uint32_t*>(
                                       static_cast<uint8_t*>(mem->data()) + layout::kMagicOffset))
                                 : 1;
      error_ = "ring '" + name_ + "' is not usable: " + bad;
      if (magic != 0) {
        open_status_ = Status::kInvalid;
        return false;
      }
      retry = true;
    }
    if (!retry) {
      open_status_ = Status::kInvalid;
      return false;
    }
    if (interrupter_.interrupted()) {
      open_status_ = Status::kInterrupted;
      return false;
    }
    const int64_t elapsed = ElapsedNs(start);
    if (open_timeout_ns >= 0 && elapsed >= open_timeout_ns) {
      open_status_ = Status::kTimeout;
      return false;
    }
    int64_t step = pause_ms * 1'000'000;
    if (open_timeout_ns >= 0 && open_timeout_ns - elapsed < step) step = open_timeout_ns - elapsed;
    std::this_thread::sleep_for(std::chrono::nanoseconds(step));
    if (pause_ms < 20) pause_ms *= 2;  // poll the name at most every 20 ms
  }
}

uint32_t ShmConsumer::Read(void* out, uint32_t max_len) {
  return ring_ ? ring_->Read(out, max_len) : 0;
}

ReadResult ShmConsumer::TryRead(void* out, uint32_t max_len) {
  if (!ring_) return {Status::kInvalid, 0};
  return ring_->TryRead(out, max_len);
}

bool ShmConsumer::HasData() const { return ring_ && ring_->HasData(); }

Status ShmConsumer::CheckProducer() {
  if (!ring_) return Status::kInvalid;
  const bool closed = ring_->ProducerClosed();
  // A re-created name says more (re-open it) than a dead pid, so it goes first (as in Python).
  uint8_t hdr[layout::kHeaderSize];
  if (ReadHeader(name_, hdr) &&
      HeaderField<uint32_t>(hdr, layout::kMagicOffset) == layout::kMagic &&
      HeaderField<uint64_t>(hdr, layout::kGenerationOffset) != ring_->generation()) {
    return Status::kReplaced;
  }
  if (!closed && !ProcessAlive(ring_->ProducerPid())) return Status::kPeerDead;
  if (closed && !ring_->HasData()) return Status::kClosed;
  return Status::kOk;
}

Status ShmConsumer::WaitForMessage(int64_t timeout_ns, bool acquire, MessageView* out) {
  if (!ring_) return Status::kInvalid;
  const auto start = Clock::now();
  for (;;) {
    int64_t slice = kLivenessSliceNs;
    if (timeout_ns >= 0) {
      const int64_t left = timeout_ns - ElapsedNs(start);
      slice = left < slice ? (left > 0 ? left : 0) : slice;
    }
    Status s = ring_->WaitReadable(slice, &interrupter_);
    if (s == Status::kOk) {
      return acquire ? ring_->Acquire(out) : ring_->Peek(out);
    }
    if (s != Status::kTimeout) return s;         // kClosed, kCorrupt, kInterrupted
    if (timeout_ns == 0) return Status::kEmpty;  // non-blocking: no liveness look
    const Status peer = CheckProducer();
    if (peer == Status::kPeerDead || peer == Status::kReplaced) {
      // Whatever the producer finished writing is still delivered first.
      s = acquire ? ring_->Acquire(out) : ring_->Peek(out);
      return s == Status::kEmpty ? peer : s;
    }
    if (timeout_ns >= 0 && ElapsedNs(start) >= timeout_ns) return Status::kTimeout;
  }
}

ReadResult ShmConsumer::ReadFor(void* out, uint32_t max_len, int64_t timeout_ns) {
  MessageView v;
  const Status s = WaitForMessage(timeout_ns, false, &v);
  if (s != Status::kOk) return {s, 0};
  return ring_->TryRead(out, max_len);
}

Status ShmConsumer::PeekFor(MessageView* out, int64_t timeout_ns) {
  return WaitForMessage(timeout_ns, false, out);
}

void ShmConsumer::Release() {
  if (ring_) ring_->Release();
}

Status ShmConsumer::AcquireFor(MessageView* out, int64_t timeout_ns) {
  return WaitForMessage(timeout_ns, true, out);
}

void ShmConsumer::ReleaseTo(uint32_t end) {
  if (ring_) ring_->ReleaseTo(end);
}

}  // namespace shm
